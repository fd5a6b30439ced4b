//! The upstream database: a read-only connection, which of upstream's tables and
//! columns it has, fingerprints of its rows computed by the server, and rows read
//! by id. Every column is read as text (or NULL) and parsed here, so MySQL's and
//! PostgreSQL's types for the same column read alike.

use std::collections::{HashMap, HashSet};

use kfpd_store::sql::{Arg, Dialect, Sql};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::tables::{Table, OPTIONAL_TABLES, REQUIRED_TABLES};
use crate::Error;

/// Ids per `IN (…)` list when reading rows.
const IDS_PER_STATEMENT: usize = 200;

/// One upstream row: column → value as text (None for NULL or a missing column).
pub type SourceRow = HashMap<&'static str, Option<String>>;

pub struct Source {
    pool: AnyPool,
    pub dialect: Dialect,
    /// Table → its columns, for upstream's tables only.
    columns: HashMap<String, HashSet<String>>,
    /// The URL without its password, for reports.
    pub display: String,
}

/// The URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Takes `schema=NAME` out of a PostgreSQL URL's parameters.
fn split_schema(url: &str) -> Result<(String, Option<String>), Error> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = Some(name.to_string()),
            None => kept.push(pair),
        }
    }
    if let Some(name) = &schema {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !valid {
            return Err(Error::Source(format!(
                "schema {name:?} in the source url must be 1-63 letters, digits or '_'"
            )));
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rebuilt, schema))
}

impl Source {
    /// Connects read-only: every session refuses writes, so adoption cannot
    /// change upstream's tables whatever it runs.
    pub async fn open(url: &str) -> Result<Source, Error> {
        sqlx::any::install_default_drivers();
        let scheme = url.split("://").next().unwrap_or_default();
        let dialect = match scheme {
            "mysql" | "mariadb" => Dialect::Mysql,
            "postgres" | "postgresql" => Dialect::Postgres,
            _ => {
                return Err(Error::Source(format!(
                    "unsupported source url scheme {scheme:?}: upstream KFP keeps its data in mysql:// or postgres://"
                )))
            }
        };
        let (url, schema) = split_schema(url)?;
        if schema.is_some() && dialect == Dialect::Mysql {
            return Err(Error::Source(
                "schema= is for PostgreSQL sources; on MySQL name the database in the url path"
                    .into(),
            ));
        }
        let display = redact(&url);
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .after_connect(move |conn, _meta| {
                let schema = schema.clone();
                Box::pin(async move {
                    match dialect {
                        Dialect::Mysql => {
                            conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                            // Fingerprints of child rows are concatenated server side.
                            conn.execute("SET SESSION group_concat_max_len = 1073741824")
                                .await?;
                        }
                        Dialect::Postgres => {
                            conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                                .await?;
                            if let Some(schema) = schema {
                                // Checked to be a plain identifier above.
                                let statement = format!("SET search_path TO \"{schema}\"");
                                conn.execute(statement.as_str()).await?;
                            }
                        }
                        Dialect::Sqlite => {}
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|error| Error::Source(format!("cannot connect to {display}: {error}")))?;
        let mut source = Source {
            pool,
            dialect,
            columns: HashMap::new(),
            display,
        };
        source.discover().await?;
        Ok(source)
    }

    async fn discover(&mut self) -> Result<(), Error> {
        let query = match self.dialect {
            Dialect::Mysql => {
                "SELECT CAST(table_name AS CHAR), CAST(column_name AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE()"
            }
            _ => {
                "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_schema = current_schema()"
            }
        };
        let rows = sqlx::query(query)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| self.failed("reading its tables", error))?;
        let mut columns: HashMap<String, HashSet<String>> = HashMap::new();
        for row in &rows {
            let table = get_text(row, 0)?.unwrap_or_default();
            let column = get_text(row, 1)?.unwrap_or_default();
            columns.entry(table).or_default().insert(column);
        }
        if columns.contains_key("kfpd_schema_migrations") {
            return Err(Error::Source(format!(
                "{} is a kfpd database, not upstream KFP's: give the database upstream's API server uses (mlpipeline by default)",
                self.display
            )));
        }
        let mut problems = Vec::new();
        for table in REQUIRED_TABLES {
            match columns.get(table.name) {
                None => problems.push(format!("table {} is missing", table.name)),
                Some(present) => {
                    for column in table.required {
                        if !present.contains(*column) {
                            problems.push(format!("{}.{column} is missing", table.name));
                        }
                    }
                }
            }
        }
        for table in OPTIONAL_TABLES {
            if let Some(present) = columns.get(table.name) {
                for column in table.required {
                    if !present.contains(*column) {
                        problems.push(format!("{}.{column} is missing", table.name));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Source(format!(
                "{} does not hold the tables of upstream KFP 2.15 or later: {}",
                self.display,
                problems.join("; ")
            )));
        }
        self.columns = columns;
        Ok(())
    }

    fn failed(&self, what: &str, error: sqlx::Error) -> Error {
        Error::Source(format!("{what} of {}: {error}", self.display))
    }

    pub fn has_table(&self, table: &Table) -> bool {
        self.columns.contains_key(table.name)
    }

    fn has_column(&self, table: &Table, column: &str) -> bool {
        self.columns
            .get(table.name)
            .is_some_and(|present| present.contains(column))
    }

    /// A column name quoted for the dialect (names come from [`crate::tables`]).
    pub fn quote(&self, name: &str) -> String {
        match self.dialect {
            Dialect::Mysql => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    fn as_text(&self, expression: &str) -> String {
        match self.dialect {
            Dialect::Mysql => format!("CAST({expression} AS CHAR)"),
            _ => format!("CAST({expression} AS TEXT)"),
        }
    }

    /// The server-side digest of a row's columns (NULL told apart from '').
    fn row_digest(&self, table: &Table) -> String {
        let parts: Vec<String> = table
            .columns()
            .filter(|column| self.has_column(table, column))
            .map(|column| {
                let text = self.as_text(&self.quote(column));
                match self.dialect {
                    Dialect::Mysql => format!("COALESCE({text}, CHAR(1))"),
                    _ => format!("COALESCE({text}, chr(1))"),
                }
            })
            .collect();
        match self.dialect {
            Dialect::Mysql => format!("MD5(CONCAT_WS(CHAR(31), {}))", parts.join(", ")),
            _ => format!("md5(concat_ws(chr(31), {}))", parts.join(", ")),
        }
    }

    /// Fingerprints of a table's rows by primary key, computed by the server.
    pub async fn fingerprints(&self, table: &Table) -> Result<HashMap<String, String>, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(&self.as_text(&self.quote(table.key)))
            .push(", ")
            .push(&self.row_digest(table))
            .push(" FROM ")
            .push(table.name);
        self.pairs(&sql, table.name).await
    }

    /// Fingerprints of child rows grouped by `group_by` (their owner), one digest
    /// per owner over its rows in a stable order; `filter` narrows the rows.
    pub async fn group_fingerprints(
        &self,
        table: &Table,
        group_by: &str,
        filter: Option<(&str, &[&str])>,
    ) -> Result<HashMap<String, String>, Error> {
        if !self.has_table(table) {
            return Ok(HashMap::new());
        }
        let digest = self.row_digest(table);
        let owner = self.quote(group_by);
        let mut sql = Sql::new("SELECT ");
        sql.push(&self.as_text(&owner)).push(", ");
        match self.dialect {
            Dialect::Mysql => sql
                .push("MD5(GROUP_CONCAT(")
                .push(&digest)
                .push(" ORDER BY ")
                .push(&digest)
                .push(" SEPARATOR ','))"),
            _ => sql
                .push("md5(string_agg(")
                .push(&digest)
                .push(", ',' ORDER BY ")
                .push(&digest)
                .push("))"),
        };
        sql.push(" FROM ").push(table.name);
        if let Some((column, values)) = filter {
            sql.push(" WHERE ").push(&self.quote(column)).push(" IN (");
            for (index, value) in values.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.bind(*value);
            }
            sql.push(")");
        }
        sql.push(" GROUP BY ").push(&owner);
        self.pairs(&sql, table.name).await
    }

    /// Rows of two text columns as a map (first → second).
    pub async fn pairs(&self, sql: &Sql, what: &str) -> Result<HashMap<String, String>, Error> {
        let rows = self.fetch(sql, what).await?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in &rows {
            let key = get_text(row, 0)?.unwrap_or_default();
            let value = get_text(row, 1)?.unwrap_or_default();
            found.insert(key, value);
        }
        Ok(found)
    }

    async fn fetch(&self, sql: &Sql, what: &str) -> Result<Vec<AnyRow>, Error> {
        let (text, args) = sql.build(self.dialect);
        sqlx::query_with(&text, args)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| self.failed(&format!("reading {what}"), error))
    }

    /// The rows of `table` whose `column` is one of `ids` (every row without ids).
    pub async fn rows_where(
        &self,
        table: &Table,
        column: &str,
        ids: Option<&[String]>,
    ) -> Result<Vec<SourceRow>, Error> {
        let present: Vec<&'static str> = table
            .columns()
            .filter(|name| self.has_column(table, name))
            .collect();
        let select = |chunk: Option<&[String]>| {
            let mut sql = Sql::new("SELECT ");
            for (index, name) in present.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.push(&self.as_text(&self.quote(name)));
            }
            sql.push(" FROM ").push(table.name);
            if let Some(chunk) = chunk {
                sql.push(" WHERE ").push(&self.quote(column)).push(" IN (");
                for (index, id) in chunk.iter().enumerate() {
                    if index > 0 {
                        sql.push(", ");
                    }
                    sql.bind(Arg::Str(id.clone()));
                }
                sql.push(")");
            }
            sql
        };
        let mut statements = Vec::new();
        match ids {
            None => statements.push(select(None)),
            Some(ids) => {
                for chunk in ids.chunks(IDS_PER_STATEMENT) {
                    statements.push(select(Some(chunk)));
                }
            }
        }
        let mut rows = Vec::new();
        for sql in statements {
            for row in self.fetch(&sql, table.name).await? {
                let mut values: SourceRow = HashMap::with_capacity(present.len());
                for (index, name) in present.iter().enumerate() {
                    values.insert(*name, get_text(&row, index)?);
                }
                rows.push(values);
            }
        }
        Ok(rows)
    }

    /// Per recurring run: the latest `ScheduledAtInSec` of its runs and how many
    /// runs it has, from `run_details`.
    pub async fn job_run_marks(&self) -> Result<HashMap<String, (i64, i64)>, Error> {
        let job = self.quote("JobUUID");
        let mut sql = Sql::new("SELECT ");
        sql.push(&self.as_text(&job))
            .push(", ")
            .push(&self.as_text(&format!("MAX({})", self.quote("ScheduledAtInSec"))))
            .push(", ")
            .push(&self.as_text("COUNT(*)"))
            .push(" FROM run_details WHERE ")
            .push(&job)
            .push(" IS NOT NULL AND ")
            .push(&job)
            .push(" <> '' GROUP BY ")
            .push(&job);
        let mut marks = HashMap::new();
        if !self.has_column(&crate::tables::RUNS, "JobUUID") {
            return Ok(marks);
        }
        for row in self.fetch(&sql, "run_details").await? {
            let id = get_text(&row, 0)?.unwrap_or_default();
            let latest = parse_int(get_text(&row, 1)?.as_deref());
            let count = parse_int(get_text(&row, 2)?.as_deref());
            marks.insert(id, (latest, count));
        }
        Ok(marks)
    }
}

/// A text column, also when the server sends it as bytes (MySQL's binary
/// collations).
fn get_text(row: &AnyRow, index: usize) -> Result<Option<String>, Error> {
    match row.try_get::<Option<String>, _>(index) {
        Ok(value) => Ok(value),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let bytes = row
                .try_get::<Option<Vec<u8>>, _>(index)
                .map_err(|error| Error::Source(format!("reading column {index}: {error}")))?;
            Ok(bytes.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
        }
        Err(error) => Err(Error::Source(format!("reading column {index}: {error}"))),
    }
}

/// An integer column read as text; NULL, '' and garbage read as 0, as upstream's
/// zero values.
pub fn parse_int(text: Option<&str>) -> i64 {
    text.map(str::trim)
        .and_then(|text| {
            text.parse::<i64>()
                .ok()
                .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_schemas_split() {
        assert_eq!(
            redact("mysql://root:secret@db:3306/mlpipeline"),
            "mysql://root:***@db:3306/mlpipeline"
        );
        assert_eq!(redact("mysql://root@db/x"), "mysql://root@db/x");
        let (url, schema) = split_schema("postgres://u@h/db?sslmode=disable&schema=kfp").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable");
        assert_eq!(schema.as_deref(), Some("kfp"));
        assert!(split_schema("postgres://u@h/db?schema=a;drop").is_err());
        assert_eq!(parse_int(Some("12")), 12);
        assert_eq!(parse_int(Some("")), 0);
        assert_eq!(parse_int(None), 0);
    }
}
