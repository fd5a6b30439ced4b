//! The store's error kinds; the server maps each kind to one HTTP status and gRPC code.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is valid but the resource is in the wrong state for it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A request that upstream answers with ABORTED/409 (for example deleting the
    /// default experiment).
    #[error("{0}")]
    Aborted(String),
    /// The database cannot be reached; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Other writers held the database past the busy timeout (SQLite), or a deadlock
    /// or serialization conflict outlasted the store's retries; worth retrying later.
    #[error("database busy: {0}")]
    Busy(String),
    /// The database aborted the transaction to break a deadlock or a serialization
    /// conflict (PostgreSQL, MySQL); running the transaction again usually succeeds,
    /// and the store's write paths do so before giving up with `Busy`.
    #[error("database conflict: {0}")]
    Conflict(String),
    /// The database refused our credentials; retrying will not help.
    #[error("database refused the credentials: {0}")]
    Unauthenticated(String),
    #[error("database error: {0}")]
    Internal(String),
}

impl Error {
    pub fn not_found(kind: &str, id: &str) -> Error {
        Error::NotFound(format!("{kind} {id} not found"))
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument(message.into())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Busy(_) | Error::Conflict(_)
        )
    }
}

/// Database errors seen by this process, by the kind they were mapped to. Counted
/// where every driver error passes (the `From` below), so the metrics cover the API,
/// the engine and the scheduler alike without wrapping each call.
static QUERY_ERRORS: [std::sync::atomic::AtomicU64; QUERY_ERROR_KINDS.len()] =
    [const { std::sync::atomic::AtomicU64::new(0) }; QUERY_ERROR_KINDS.len()];

/// The kinds [`query_errors`] reports, in its order.
pub const QUERY_ERROR_KINDS: [&str; 6] = [
    "unavailable",
    "unauthenticated",
    "conflict",
    "busy",
    "unique_violation",
    "other",
];

/// How many database errors of each of [`QUERY_ERROR_KINDS`] this process has seen.
pub fn query_errors() -> [(&'static str, u64); QUERY_ERROR_KINDS.len()] {
    std::array::from_fn(|index| {
        (
            QUERY_ERROR_KINDS[index],
            QUERY_ERRORS[index].load(std::sync::atomic::Ordering::Relaxed),
        )
    })
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        let mapped = map_sqlx(error);
        let kind = match &mapped {
            Error::Unavailable(_) => 0,
            Error::Unauthenticated(_) => 1,
            Error::Conflict(_) => 2,
            Error::Busy(_) => 3,
            Error::AlreadyExists(_) => 4,
            _ => 5,
        };
        QUERY_ERRORS[kind].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        mapped
    }
}

fn map_sqlx(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::PoolTimedOut => Error::Unavailable(format!(
            "no database connection within {} s: the database is not reachable, or every connection is in use",
            crate::sql::ACQUIRE_TIMEOUT.as_secs()
        )),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Error::Unavailable(error.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|code| code.to_string()).unwrap_or_default();
            if is_going_away(db.as_ref(), &code) {
                return Error::Unavailable(db.message().to_string());
            }
            // 28P01/28000: PostgreSQL bad password or role; 1045: MySQL access denied.
            if matches!(code.as_str(), "28P01" | "28000" | "1045") {
                return Error::Unauthenticated(db.message().to_string());
            }
            if is_conflict(db.as_ref(), &code) {
                return Error::Conflict(db.message().to_string());
            }
            if is_busy(db.as_ref(), &code) {
                return Error::Busy(format!(
                    "{}: other writers held the database for longer than the busy timeout",
                    db.message()
                ));
            }
            if db.is_unique_violation() {
                return Error::AlreadyExists(db.message().to_string());
            }
            Error::Internal(error.to_string())
        }
        _ => Error::Internal(error.to_string()),
    }
}

/// 40001 serialization failure, 40P01 deadlock (PostgreSQL); MySQL reports deadlocks
/// (1213) with SQLSTATE 40001 and lock wait timeouts (1205) with HY000, so its
/// numbers are read too.
fn is_conflict(db: &dyn sqlx::error::DatabaseError, code: &str) -> bool {
    if matches!(code, "40001" | "40P01") {
        return true;
    }
    db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .is_some_and(|mysql| matches!(mysql.number(), 1205 | 1213))
}

/// The server is shutting down, restarting, or dropped the connection: PostgreSQL's
/// connection exceptions (class 08), admin or crash shutdown and "cannot connect
/// now" (57P01–57P03), too many connections (53300); MySQL's server shutdown (1053),
/// too many connections (1040), killed or lost connections (1927, 2006, 2013, 4031).
fn is_going_away(db: &dyn sqlx::error::DatabaseError, code: &str) -> bool {
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .is_some_and(|mysql| matches!(mysql.number(), 1040 | 1053 | 1927 | 2006 | 2013 | 4031))
}

/// SQLITE_BUSY (5) and SQLITE_LOCKED (6) with their extended codes: the primary code
/// is the low byte.
fn is_busy(db: &dyn sqlx::error::DatabaseError, code: &str) -> bool {
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_none() {
        return false;
    }
    code.parse::<i64>()
        .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6))
}
