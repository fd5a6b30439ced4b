//! A small statement builder: SQL text from constants and allow-listed column names,
//! every value bound as an argument, placeholders written for the dialect.

use sqlx::any::AnyArguments;
use sqlx::Arguments;

use crate::list::{Condition, ListQuery, Op, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Int(i64),
    Str(String),
    NullInt,
    NullStr,
}

impl From<i64> for Arg {
    fn from(value: i64) -> Arg {
        Arg::Int(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Arg {
        Arg::Str(value.to_string())
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Arg {
        Arg::Str(value)
    }
}

impl From<&String> for Arg {
    fn from(value: &String) -> Arg {
        Arg::Str(value.clone())
    }
}

impl From<bool> for Arg {
    fn from(value: bool) -> Arg {
        Arg::Int(i64::from(value))
    }
}

impl From<Option<&String>> for Arg {
    fn from(value: Option<&String>) -> Arg {
        value.map_or(Arg::NullStr, |text| Arg::Str(text.clone()))
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Arg {
        value.map_or(Arg::NullInt, Arg::Int)
    }
}

/// SQL text written with `?` placeholders plus the values they stand for.
#[derive(Clone, Debug, Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// A statement and its arguments in one go, for fixed statements.
    pub fn with(text: &str, args: impl IntoIterator<Item = Arg>) -> Sql {
        Sql {
            text: text.to_string(),
            args: args.into_iter().collect(),
        }
    }

    /// Appends trusted SQL text (constants and allow-listed identifiers only).
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends another statement fragment with its arguments.
    pub fn append(&mut self, other: &Sql) -> &mut Sql {
        self.text.push_str(&other.text);
        self.args.extend(other.args.iter().cloned());
        self
    }

    /// Appends one placeholder bound to `arg`.
    pub fn bind(&mut self, arg: impl Into<Arg>) -> &mut Sql {
        self.text.push('?');
        self.args.push(arg.into());
        self
    }

    /// Appends `(?, ?, …)` for a list of values.
    pub(crate) fn bind_list(&mut self, args: Vec<Arg>) -> &mut Sql {
        self.text.push('(');
        for (index, arg) in args.into_iter().enumerate() {
            if index > 0 {
                self.text.push_str(", ");
            }
            self.bind(arg);
        }
        self.text.push(')');
        self
    }

    /// The text for the dialect (PostgreSQL numbers its placeholders) and the arguments.
    pub fn build(&self, dialect: Dialect) -> (String, AnyArguments<'static>) {
        let text = match dialect {
            Dialect::Postgres => number_placeholders(&self.text),
            Dialect::Sqlite | Dialect::Mysql => self.text.clone(),
        };
        let mut arguments = AnyArguments::default();
        for arg in &self.args {
            // Adding owned integers and strings to AnyArguments cannot fail.
            let _ = match arg {
                Arg::Int(value) => arguments.add(*value),
                Arg::Str(value) => arguments.add(value.clone()),
                Arg::NullInt => arguments.add(Option::<i64>::None),
                Arg::NullStr => arguments.add(Option::<String>::None),
            };
        }
        (text, arguments)
    }

    /// Appends ` AND <condition>` for each checked filter condition. `tag_table` and
    /// `tag_owner` name the tag table and its owner column for `tags.<key>` filters.
    pub fn push_conditions(
        &mut self,
        dialect: Dialect,
        conditions: &[Condition],
        tags: Option<(&str, &str)>,
    ) -> &mut Sql {
        for condition in conditions {
            self.push(" AND ");
            match condition {
                Condition::Column { field, op, value } => {
                    self.push_column_condition(dialect, field.column, *op, value);
                }
                Condition::Tag { key, value } => {
                    // Checked by ListQuery: only resources with tags produce tag conditions.
                    let (table, owner) = tags.unwrap_or(("", ""));
                    self.push("uuid IN (SELECT ")
                        .push(owner)
                        .push(" FROM ")
                        .push(table)
                        .push(" WHERE tag_key = ")
                        .bind(key)
                        .push(" AND tag_value = ")
                        .bind(value)
                        .push(")");
                }
            }
        }
        self
    }

    fn push_column_condition(&mut self, dialect: Dialect, column: &str, op: Op, value: &Value) {
        if op == Op::Substring {
            let needle = match value {
                Value::Str(text) => text.clone(),
                _ => String::new(),
            };
            // A true substring test (no LIKE wildcards), case-sensitive on every backend.
            match dialect {
                Dialect::Sqlite => self.push("instr(").push(column).push(", ").bind(needle),
                Dialect::Postgres => self.push("strpos(").push(column).push(", ").bind(needle),
                Dialect::Mysql => self.push("LOCATE(").bind(needle).push(", ").push(column),
            };
            self.push(") > 0");
            return;
        }
        self.push(column);
        let operator = match op {
            Op::Eq => " = ",
            Op::Ne => " <> ",
            Op::Gt => " > ",
            Op::Ge => " >= ",
            Op::Lt => " < ",
            Op::Le => " <= ",
            Op::In => " IN ",
            // Handled above.
            Op::Substring => return,
        };
        self.push(operator);
        match value {
            Value::Int(number) => {
                self.bind(*number);
            }
            Value::Str(text) => {
                self.bind(text);
            }
            Value::Ints(numbers) if numbers.is_empty() => {
                self.push("(NULL)");
            }
            Value::Strs(texts) if texts.is_empty() => {
                self.push("(NULL)");
            }
            Value::Ints(numbers) => {
                self.bind_list(numbers.iter().map(|n| Arg::Int(*n)).collect());
            }
            Value::Strs(texts) => {
                self.bind_list(texts.iter().map(|t| Arg::Str(t.clone())).collect());
            }
        }
    }

    /// Appends the keyset bound for the query's cursor (if any), then ORDER BY and LIMIT.
    /// Written as `col >= v AND (col > v OR uuid >= id)` so every engine can range-scan
    /// the `(col, uuid)` index.
    pub fn push_page(&mut self, query: &ListQuery) -> &mut Sql {
        let column = query.sort.column;
        let (strict, loose) = if query.desc {
            (" < ", " <= ")
        } else {
            (" > ", " >= ")
        };
        if let Some(cursor) = &query.cursor {
            let value = match &cursor.sort_value {
                Value::Int(number) => Arg::Int(*number),
                Value::Str(text) => Arg::Str(text.clone()),
                // Checked when the token was decoded.
                Value::Ints(_) | Value::Strs(_) => Arg::Str(String::new()),
            };
            self.push(" AND ")
                .push(column)
                .push(loose)
                .bind(value.clone());
            self.push(" AND (").push(column).push(strict).bind(value);
            self.push(" OR uuid").push(loose).bind(&cursor.id).push(")");
        }
        let direction = if query.desc { " DESC" } else { " ASC" };
        self.push(" ORDER BY ")
            .push(column)
            .push(direction)
            .push(", uuid")
            .push(direction);
        self.push(" LIMIT ").bind((query.page_size + 1) as i64);
        self
    }
}

/// Rewrites `?` placeholders as `$1, $2, …`. Statements never contain `?` inside
/// literals because every value is bound.
fn number_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut index = 0;
    for ch in text.chars() {
        if ch == '?' {
            index += 1;
            out.push('$');
            out.push_str(&index.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind(1)
            .push(" AND b IN ")
            .bind_list(vec![Arg::Int(2), Arg::Int(3)]);
        let (text, _) = sql.build(Dialect::Postgres);
        assert_eq!(text, "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
        let (text, _) = sql.build(Dialect::Mysql);
        assert_eq!(text, "SELECT 1 WHERE a = ? AND b IN (?, ?)");
    }
}
