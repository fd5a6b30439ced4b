//! Why a decision cannot be made. The variant says which step refused; the
//! message names the task's input, parameter or placeholder at fault, so a user
//! can act on it.

/// The error of every fallible decision in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A task's inputs cannot be resolved (a missing producer output, a bad
    /// selector, a value of the wrong type).
    #[error("{0}")]
    Inputs(String),
    /// A condition (CEL) cannot be evaluated.
    #[error("{0}")]
    Condition(String),
    /// A loop's items cannot be read.
    #[error("{0}")]
    Items(String),
    /// The command line or ExecutorInput cannot be made.
    #[error("{0}")]
    Command(String),
    /// A finished task's outputs cannot be read back.
    #[error("{0}")]
    Outputs(String),
    /// The run's runtime config or root parameters are not valid.
    #[error("{0}")]
    Run(String),
    /// A value does not fit its declared type, or a duration is malformed.
    #[error("{0}")]
    Value(String),
}

/// Callers that report errors as text keep `?`.
impl From<Error> for String {
    fn from(error: Error) -> String {
        error.to_string()
    }
}
