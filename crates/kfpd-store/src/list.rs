//! List requests: filter predicates, sort keys and page tokens, checked against an
//! allow-list of fields per resource before anything reaches SQL.
//!
//! Pages are keyset pages: a token carries the sort value and the id of the first row
//! of the next page, so page 50 costs what page 1 costs.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::Error;

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 200;

/// The type a column holds, which decides how filter values are coerced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Str,
}

/// One filterable and sortable column of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name the API uses (`created_at`).
    pub key: &'static str,
    /// The column in our schema; only ever one of these constants reaches SQL.
    pub column: &'static str,
    pub kind: Kind,
    /// For enum columns, every value the column can hold; empty: any value. A
    /// filter naming another value is refused instead of matching nothing.
    pub values: &'static [&'static str],
}

const fn int(key: &'static str, column: &'static str) -> Field {
    Field {
        key,
        column,
        kind: Kind::Int,
        values: &[],
    }
}

const fn text(key: &'static str, column: &'static str) -> Field {
    Field {
        key,
        column,
        kind: Kind::Str,
        values: &[],
    }
}

const fn one_of(key: &'static str, column: &'static str, values: &'static [&'static str]) -> Field {
    Field {
        key,
        column,
        kind: Kind::Str,
        values,
    }
}

/// `RuntimeState` names, as runs store them.
const RUN_STATES: &[&str] = &[
    "RUNTIME_STATE_UNSPECIFIED",
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "SKIPPED",
    "FAILED",
    "CANCELING",
    "CANCELED",
    "PAUSED",
];

/// `StorageState` names, and the `STORAGESTATE_` forms rows from older upstream
/// databases may hold.
const STORAGE_STATES: &[&str] = &[
    "AVAILABLE",
    "ARCHIVED",
    "STORAGE_STATE_UNSPECIFIED",
    "STORAGESTATE_AVAILABLE",
    "STORAGESTATE_ARCHIVED",
];

/// A listable resource: its fields and whether it has tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Experiment,
    Pipeline,
    PipelineVersion,
    Run,
    RecurringRun,
}

const EXPERIMENT_FIELDS: &[Field] = &[
    text("experiment_id", "uuid"),
    text("id", "uuid"),
    text("name", "name"),
    text("display_name", "name"),
    int("created_at", "created_at"),
    int("last_run_created_at", "last_run_created_at"),
    text("description", "description"),
    text("namespace", "namespace"),
    one_of("storage_state", "storage_state", STORAGE_STATES),
];

const PIPELINE_FIELDS: &[Field] = &[
    text("pipeline_id", "uuid"),
    text("id", "uuid"),
    text("name", "name"),
    text("display_name", "display_name"),
    int("created_at", "created_at"),
    text("description", "description"),
    text("namespace", "namespace"),
];

const VERSION_FIELDS: &[Field] = &[
    text("pipeline_version_id", "uuid"),
    text("id", "uuid"),
    text("name", "name"),
    text("display_name", "display_name"),
    int("created_at", "created_at"),
    text("status", "status"),
    text("description", "description"),
    text("pipeline_spec", "pipeline_spec"),
];

const RUN_FIELDS: &[Field] = &[
    text("run_id", "uuid"),
    text("id", "uuid"),
    text("display_name", "display_name"),
    text("name", "display_name"),
    int("created_at", "created_at"),
    int("finished_at", "finished_at"),
    int("scheduled_at", "scheduled_at"),
    text("description", "description"),
    one_of("storage_state", "storage_state", STORAGE_STATES),
    text("status", "conditions"),
    text("namespace", "namespace"),
    text("experiment_id", "experiment_uuid"),
    one_of("state", "state", RUN_STATES),
    text("state_history", "state_history"),
    text("runtime_details", "runtime_details"),
    text("recurring_run_id", "recurring_run_uuid"),
];

const RECURRING_RUN_FIELDS: &[Field] = &[
    text("recurring_run_id", "uuid"),
    text("id", "uuid"),
    text("display_name", "display_name"),
    text("name", "display_name"),
    int("created_at", "created_at"),
    int("updated_at", "updated_at"),
    text("description", "description"),
];

impl Resource {
    pub fn fields(self) -> &'static [Field] {
        match self {
            Resource::Experiment => EXPERIMENT_FIELDS,
            Resource::Pipeline => PIPELINE_FIELDS,
            Resource::PipelineVersion => VERSION_FIELDS,
            Resource::Run => RUN_FIELDS,
            Resource::RecurringRun => RECURRING_RUN_FIELDS,
        }
    }

    pub fn has_tags(self) -> bool {
        matches!(self, Resource::Pipeline | Resource::PipelineVersion)
    }

    pub fn field(self, key: &str) -> Option<Field> {
        self.fields().iter().copied().find(|field| field.key == key)
    }

    fn default_sort(self) -> Field {
        int("created_at", "created_at")
    }

    fn name(self) -> &'static str {
        match self {
            Resource::Experiment => "experiment",
            Resource::Pipeline => "pipeline",
            Resource::PipelineVersion => "pipeline version",
            Resource::Run => "run",
            Resource::RecurringRun => "recurring run",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    Substring,
}

impl Op {
    pub fn is_list(self) -> bool {
        self == Op::In
    }
}

/// A filter value after protojson decoding; timestamps arrive as Unix seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Str(String),
    Ints(Vec<i64>),
    Strs(Vec<String>),
}

impl Value {
    fn is_list(&self) -> bool {
        matches!(self, Value::Ints(_) | Value::Strs(_))
    }
}

/// A predicate as the client sent it (key by name), before it is checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Predicate {
    pub key: String,
    pub op: Op,
    pub value: Value,
}

/// A checked predicate: a known column with a value of the column's kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Column {
        field: Field,
        op: Op,
        value: Value,
    },
    /// `tags.<key>` EQUALS value.
    Tag {
        key: String,
        value: String,
    },
}

/// Position of the first row of the next page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub sort_value: Value,
    pub id: String,
}

#[derive(Serialize, Deserialize)]
struct Token {
    #[serde(rename = "sort")]
    sort_key: String,
    desc: bool,
    #[serde(rename = "filter")]
    predicates: Vec<Predicate>,
    #[serde(rename = "value")]
    sort_value: Value,
    id: String,
}

/// A validated list request.
#[derive(Clone, Debug, PartialEq)]
pub struct ListQuery {
    pub resource: Resource,
    pub predicates: Vec<Predicate>,
    pub conditions: Vec<Condition>,
    pub sort: Field,
    pub desc: bool,
    pub page_size: usize,
    pub cursor: Option<Cursor>,
}

/// One page of results; `next_page_token` is empty on the last page.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_size: i64,
    pub next_page_token: String,
}

impl ListQuery {
    /// Checks a list request as the API receives it. `sort_by` is `"field"`,
    /// `"field asc"` or `"field desc"`; a token carries sort and filter, which must
    /// match those given alongside it.
    pub fn new(
        resource: Resource,
        page_size: i32,
        page_token: &str,
        sort_by: &str,
        predicates: Option<Vec<Predicate>>,
    ) -> Result<ListQuery, Error> {
        if page_size < 0 {
            return Err(Error::invalid(format!(
                "page_size must not be negative, got {page_size}"
            )));
        }
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        } as usize;
        let sort_by = sort_by.trim();
        let token = if page_token.is_empty() {
            None
        } else {
            Some(decode_token(page_token)?)
        };
        let (sort, desc) = match (&token, sort_by.is_empty()) {
            (Some(token), true) => (token_sort_field(resource, &token.sort_key)?, token.desc),
            (_, false) => parse_sort(resource, sort_by)?,
            (None, true) => (resource.default_sort(), false),
        };
        let predicates = match (&token, predicates) {
            (Some(token), None) => token.predicates.clone(),
            (_, Some(given)) => given,
            (None, None) => Vec::new(),
        };
        let cursor = match token {
            None => None,
            Some(token) => {
                if token.sort_key != sort.key || token.desc != desc {
                    return Err(Error::invalid(
                        "invalid page token: sort_by differs from the one the token was made with",
                    ));
                }
                if token.predicates != predicates {
                    return Err(Error::invalid(
                        "invalid page token: filter differs from the one the token was made with",
                    ));
                }
                let kind_matches = matches!(
                    (&token.sort_value, sort.kind),
                    (Value::Int(_), Kind::Int) | (Value::Str(_), Kind::Str)
                );
                if !kind_matches {
                    return Err(Error::invalid("invalid page token: bad sort value"));
                }
                Some(Cursor {
                    sort_value: token.sort_value,
                    id: token.id,
                })
            }
        };
        let conditions = predicates
            .iter()
            .map(|predicate| check_predicate(resource, predicate))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ListQuery {
            resource,
            predicates,
            conditions,
            sort,
            desc,
            page_size,
            cursor,
        })
    }

    /// The token for a page that starts at the row with this sort value and id.
    pub fn next_token(&self, sort_value: Value, id: &str) -> String {
        let token = Token {
            sort_key: self.sort.key.to_string(),
            desc: self.desc,
            predicates: self.predicates.clone(),
            sort_value,
            id: id.to_string(),
        };
        // Serialising these plain types cannot fail.
        let json = serde_json::to_vec(&token).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }
}

fn decode_token(token: &str) -> Result<Token, Error> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| Error::invalid("invalid page token: not base64"))?;
    serde_json::from_slice(&bytes).map_err(|_| Error::invalid("invalid page token"))
}

fn token_sort_field(resource: Resource, key: &str) -> Result<Field, Error> {
    resource
        .field(key)
        .ok_or_else(|| Error::invalid("invalid page token: unknown sort field"))
}

fn parse_sort(resource: Resource, sort_by: &str) -> Result<(Field, bool), Error> {
    let lowered = sort_by.to_lowercase();
    let words: Vec<&str> = lowered.split_whitespace().collect();
    let desc = match words.as_slice() {
        [_] => false,
        [_, "asc"] => false,
        [_, "desc"] => true,
        _ => {
            return Err(Error::invalid(format!(
                "invalid sort_by {sort_by:?}: expected \"field\", \"field asc\" or \"field desc\""
            )))
        }
    };
    let key = words[0];
    let field = resource.field(key).ok_or_else(|| {
        Error::invalid(format!(
            "invalid sort_by {sort_by:?}: cannot sort {}s by {key:?}",
            resource.name()
        ))
    })?;
    Ok((field, desc))
}

fn check_predicate(resource: Resource, predicate: &Predicate) -> Result<Condition, Error> {
    let key = predicate.key.as_str();
    if key.is_empty() {
        return Err(Error::invalid("invalid filter: predicate has an empty key"));
    }
    if let Some(tag_key) = key.strip_prefix("tags.") {
        if !resource.has_tags() {
            return Err(Error::invalid(format!(
                "invalid filter: {}s have no tags (key {key:?})",
                resource.name()
            )));
        }
        return match (&predicate.op, &predicate.value) {
            (Op::Eq, Value::Str(value)) => Ok(Condition::Tag {
                key: tag_key.to_string(),
                value: value.clone(),
            }),
            _ => Err(Error::invalid(format!(
                "invalid filter: tag key {key:?} supports only EQUALS with a string value"
            ))),
        };
    }
    let field = resource.field(key).ok_or_else(|| {
        Error::invalid(format!(
            "invalid filter: no support for filtering {}s on unrecognized field {key:?}",
            resource.name()
        ))
    })?;
    if predicate.op.is_list() != predicate.value.is_list() {
        let message = if predicate.op.is_list() {
            format!("invalid filter: IN on {key:?} needs a list value (string_values, int_values or long_values)")
        } else {
            format!(
                "invalid filter: {:?} on {key:?} needs a single value, not a list",
                predicate.op
            )
        };
        return Err(Error::invalid(message));
    }
    if predicate.op == Op::Substring && !matches!(predicate.value, Value::Str(_)) {
        return Err(Error::invalid(format!(
            "invalid filter: IS_SUBSTRING on {key:?} needs a string value"
        )));
    }
    let value = coerce(field, &predicate.value)?;
    if predicate.op != Op::Substring {
        check_enum_values(field, &value)?;
    }
    Ok(Condition::Column {
        field,
        op: predicate.op,
        value,
    })
}

/// An enum column holds only its names: an unknown one is a mistake to report (a
/// typo, a lowercase name), not a filter that matches nothing.
fn check_enum_values(field: Field, value: &Value) -> Result<(), Error> {
    if field.values.is_empty() {
        return Ok(());
    }
    let given: Vec<&str> = match value {
        Value::Str(text) => vec![text.as_str()],
        Value::Strs(texts) => texts.iter().map(String::as_str).collect(),
        Value::Int(_) | Value::Ints(_) => Vec::new(),
    };
    match given.into_iter().find(|text| !field.values.contains(text)) {
        None => Ok(()),
        Some(unknown) => Err(Error::invalid(format!(
            "invalid filter: {:?} has no value {unknown:?}; use one of {}",
            field.key,
            field.values.join(", ")
        ))),
    }
}

/// Brings a value to the column's kind. Upstream binds values untyped and lets the
/// database coerce, so `created_at < "1700000000"` works there; we coerce up front,
/// and also read RFC 3339 strings as times.
fn coerce(field: Field, value: &Value) -> Result<Value, Error> {
    let as_int = |text: &str| -> Result<i64, Error> {
        if let Ok(number) = text.trim().parse::<i64>() {
            return Ok(number);
        }
        if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
            return Ok(time.timestamp());
        }
        Err(Error::invalid(format!(
            "invalid filter: {:?} takes a number or an RFC 3339 time, got {text:?}",
            field.key
        )))
    };
    let coerced = match (field.kind, value) {
        (Kind::Int, Value::Int(number)) => Value::Int(*number),
        (Kind::Int, Value::Str(text)) => Value::Int(as_int(text)?),
        (Kind::Int, Value::Ints(numbers)) => Value::Ints(numbers.clone()),
        (Kind::Int, Value::Strs(texts)) => Value::Ints(
            texts
                .iter()
                .map(|text| as_int(text))
                .collect::<Result<_, _>>()?,
        ),
        (Kind::Str, Value::Str(text)) => Value::Str(text.clone()),
        (Kind::Str, Value::Int(number)) => Value::Str(number.to_string()),
        (Kind::Str, Value::Strs(texts)) => Value::Strs(texts.clone()),
        (Kind::Str, Value::Ints(numbers)) => {
            Value::Strs(numbers.iter().map(|number| number.to_string()).collect())
        }
    };
    Ok(coerced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(key: &str, value: Value) -> Predicate {
        Predicate {
            key: key.to_string(),
            op: Op::Eq,
            value,
        }
    }

    #[test]
    fn page_size_defaults_and_clamps() {
        let query = ListQuery::new(Resource::Run, 0, "", "", None).unwrap();
        assert_eq!(query.page_size, 20);
        let query = ListQuery::new(Resource::Run, 5000, "", "", None).unwrap();
        assert_eq!(query.page_size, 200);
        assert!(ListQuery::new(Resource::Run, -1, "", "", None).is_err());
    }

    #[test]
    fn sort_parsing() {
        let query = ListQuery::new(Resource::Run, 10, "", "created_at desc", None).unwrap();
        assert_eq!(query.sort.column, "created_at");
        assert!(query.desc);
        let query = ListQuery::new(Resource::Pipeline, 10, "", "Name", None).unwrap();
        assert_eq!(query.sort.column, "name");
        assert!(!query.desc);
        for bad in ["nope", "created_at sideways", "created_at desc extra"] {
            let error = ListQuery::new(Resource::Run, 10, "", bad, None).unwrap_err();
            assert!(error.to_string().contains("sort_by"), "{error}");
        }
    }

    #[test]
    fn filter_checks() {
        let unknown = ListQuery::new(
            Resource::Run,
            10,
            "",
            "",
            Some(vec![eq("x", Value::Int(1))]),
        );
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("unrecognized field"));
        let in_scalar = Predicate {
            key: "name".into(),
            op: Op::In,
            value: Value::Str("a".into()),
        };
        assert!(ListQuery::new(Resource::Pipeline, 10, "", "", Some(vec![in_scalar])).is_err());
        let coerced = ListQuery::new(
            Resource::Run,
            10,
            "",
            "",
            Some(vec![eq(
                "created_at",
                Value::Str("2000-01-01T00:00:00Z".into()),
            )]),
        )
        .unwrap();
        assert_eq!(
            coerced.conditions[0],
            Condition::Column {
                field: int("created_at", "created_at"),
                op: Op::Eq,
                value: Value::Int(946684800)
            }
        );
        let tag = eq("tags.team", Value::Str("ml".into()));
        assert!(ListQuery::new(Resource::Pipeline, 10, "", "", Some(vec![tag.clone()])).is_ok());
        assert!(ListQuery::new(Resource::Run, 10, "", "", Some(vec![tag])).is_err());
    }

    #[test]
    fn enum_fields_refuse_unknown_values() {
        let query =
            |resource, predicate| ListQuery::new(resource, 10, "", "", Some(vec![predicate]));
        assert!(query(Resource::Run, eq("state", Value::Str("FAILED".into()))).is_ok());
        let error = query(Resource::Run, eq("state", Value::Str("DONE".into()))).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("\"state\" has no value \"DONE\"") && message.contains("SUCCEEDED"),
            "{message}"
        );
        assert!(query(Resource::Run, eq("state", Value::Str("failed".into()))).is_err());
        assert!(query(Resource::Run, eq("state", Value::Int(3))).is_err());
        let listed = Predicate {
            key: "state".into(),
            op: Op::In,
            value: Value::Strs(vec!["RUNNING".into(), "WAITING".into()]),
        };
        let message = query(Resource::Run, listed).unwrap_err().to_string();
        assert!(message.contains("\"WAITING\""), "{message}");
        for resource in [Resource::Run, Resource::Experiment] {
            assert!(query(resource, eq("storage_state", Value::Str("ARCHIVED".into()))).is_ok());
            assert!(query(resource, eq("storage_state", Value::Str("DELETED".into()))).is_err());
        }
        // A substring of a name is not a name.
        let part = Predicate {
            key: "state".into(),
            op: Op::Substring,
            value: Value::Str("RUN".into()),
        };
        assert!(query(Resource::Run, part).is_ok());
    }

    #[test]
    fn token_round_trip_and_mismatch() {
        let filter = vec![eq("state", Value::Str("PENDING".into()))];
        let first = ListQuery::new(
            Resource::Run,
            2,
            "",
            "created_at desc",
            Some(filter.clone()),
        )
        .unwrap();
        let token = first.next_token(Value::Int(42), "abc");
        let next = ListQuery::new(Resource::Run, 2, &token, "", None).unwrap();
        assert!(next.desc);
        assert_eq!(next.predicates, filter);
        assert_eq!(
            next.cursor,
            Some(Cursor {
                sort_value: Value::Int(42),
                id: "abc".into()
            })
        );
        let mismatch = ListQuery::new(Resource::Run, 2, &token, "display_name", None);
        assert!(mismatch.is_err());
        assert!(ListQuery::new(Resource::Run, 2, "%%%", "", None).is_err());
        assert!(ListQuery::new(Resource::Run, 2, "e30", "", None).is_err());
    }
}
