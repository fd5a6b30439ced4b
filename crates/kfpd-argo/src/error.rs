//! The one error type of this crate.

use thiserror::Error as ThisError;

/// Why a pipeline cannot be compiled into a Workflow. Messages name the task or
/// setting at fault so a user can act on them.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
pub enum Error {
    /// The pipeline uses something Argo cannot run (as upstream's compiler refuses it).
    #[error("cannot compile for argo: {0}")]
    Unsupported(String),
    /// The pipeline spec is inconsistent (a missing component or executor).
    #[error("pipeline spec: {0}")]
    Spec(String),
    /// A `platforms.kubernetes` setting cannot be applied.
    #[error("platform spec: {0}")]
    Platform(String),
    /// The Workflow cannot be written out.
    #[error("cannot write the workflow: {0}")]
    Output(String),
}
