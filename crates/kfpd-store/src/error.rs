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
        matches!(self, Error::Unavailable(_))
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Error::Unavailable(error.to_string()),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|code| code.to_string()).unwrap_or_default();
                // 28P01/28000: PostgreSQL bad password or role; 1045: MySQL access denied.
                if matches!(code.as_str(), "28P01" | "28000" | "1045") {
                    return Error::Unauthenticated(db.message().to_string());
                }
                if db.is_unique_violation() {
                    return Error::AlreadyExists(db.message().to_string());
                }
                Error::Internal(error.to_string())
            }
            _ => Error::Internal(error.to_string()),
        }
    }
}
