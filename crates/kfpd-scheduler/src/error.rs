use std::fmt;

/// Why a trigger was rejected. Messages are meant to be shown to API users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cron expression that cannot be used; `spec` is the input verbatim.
    #[error("cron {spec:?}: {problem}")]
    Cron { spec: String, problem: CronProblem },
    /// A periodic interval below one second (upstream rejects these too).
    #[error("periodic interval {interval_seconds} is invalid: it must be at least 1 second")]
    Interval { interval_seconds: i64 },
}

impl Error {
    pub(crate) fn cron(spec: &str, problem: CronProblem) -> Self {
        Error::Cron {
            spec: spec.to_owned(),
            problem,
        }
    }

    /// The cron problem, if this is a cron error (lets callers and tests
    /// match on the cause without parsing the message).
    pub fn cron_problem(&self) -> Option<&CronProblem> {
        match self {
            Error::Cron { problem, .. } => Some(problem),
            Error::Interval { .. } => None,
        }
    }
}

/// What is wrong with a cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CronProblem {
    #[error("empty expression")]
    Empty,
    #[error("expected 6 fields (sec min hour dom month dow; dow may be omitted), found {found}")]
    FieldCount { found: usize },
    /// Only [`crate::cron::parse_strict`] reports this.
    #[error(
        "5 fields given, but the first field is seconds, so 6 are required \
         (sec min hour dom month dow){}",
        hint_suffix(.hint)
    )]
    FiveFields { hint: Option<String> },
    #[error("{field} {value} out of range {min}-{max}")]
    OutOfRange {
        field: Field,
        value: u64,
        min: u32,
        max: u32,
    },
    #[error("{field} range {start}-{end} starts after it ends")]
    ReversedRange { field: Field, start: u64, end: u64 },
    #[error("{field} {value:?} is not a number{}", names_suffix(*.field))]
    NotANumber { field: Field, value: String },
    #[error("{field} {expr:?}: step {value:?} is not a number")]
    BadStep {
        field: Field,
        expr: String,
        value: String,
    },
    #[error("{field} {expr:?}: step must be at least 1")]
    ZeroStep { field: Field, expr: String },
    #[error("{field} {expr:?}: too many '-'")]
    TooManyHyphens { field: Field, expr: String },
    #[error("{field} {expr:?}: too many '/'")]
    TooManySlashes { field: Field, expr: String },
    #[error(
        "unknown descriptor {0:?} (known: @yearly, @annually, @monthly, @weekly, \
         @daily, @midnight, @hourly, @every <duration>)"
    )]
    UnknownDescriptor(String),
    #[error("@every: invalid duration {value:?}: {reason}")]
    InvalidDuration { value: String, reason: String },
    /// Only [`crate::cron::parse_strict`] reports this.
    #[error("@every {value:?} is shorter than 1s")]
    SubSecondInterval { value: String },
    /// Only [`crate::cron::parse_strict`] reports this.
    #[error("the schedule never fires: no calendar date matches it")]
    NeverFires,
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("; did you mean {h:?}?"),
        None => String::new(),
    }
}

fn names_suffix(field: Field) -> &'static str {
    match field {
        Field::Month => " or month name (jan-dec)",
        Field::DayOfWeek => " or weekday name (sun-sat)",
        _ => "",
    }
}

/// A field of a cron expression, in expression order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    pub(crate) const ALL: [Field; 6] = [
        Field::Second,
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    /// Inclusive bounds of the field's values.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 6),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day of month",
            Field::Month => "month",
            Field::DayOfWeek => "day of week",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
