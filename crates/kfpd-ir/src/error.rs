//! The one error type of this crate.
//!
//! Every variant is a problem with what the user sent (a package, an inline spec
//! or run parameters), so a server maps all of them to "invalid argument"; the
//! variants exist so callers and tests can tell the causes apart without
//! matching on message text.

use thiserror::Error as ThisError;

/// Why a pipeline package, spec or set of run parameters was rejected.
///
/// Messages start lowercase and say what is wrong and where, so they can be
/// shown to the user as they are (a server may prefix them with context).
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
pub enum Error {
    /// The upload is larger than [`crate::MAX_PACKAGE_SIZE`] (before or after decompression).
    #[error(
        "pipeline file is too large ({size} bytes, the limit is {limit} bytes); move large embedded \
         artifacts, notebooks or code into a container image or an object store"
    )]
    TooLarge {
        /// Size seen so far, in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },

    /// Neither a YAML/JSON file name nor a zip or gzip signature.
    #[error(
        "unexpected pipeline file format for {file_name:?}: upload a .yaml, .yml or .json file, \
         a .zip archive or a .tar.gz tarball"
    )]
    UnsupportedFormat {
        /// The file name as uploaded.
        file_name: String,
    },

    /// A zip or tar.gz archive that cannot be read or has no usable pipeline file.
    #[error("{0}")]
    Archive(String),

    /// The file has no document at all (empty, whitespace or comments only).
    #[error("empty pipeline file: it contains no YAML or JSON document")]
    Empty,

    /// The text is not well-formed YAML or JSON.
    #[error("{0}")]
    Syntax(String),

    /// The pipeline spec document is malformed or fails validation.
    #[error("pipeline spec: {0}")]
    InvalidSpec(String),

    /// The platform spec document is malformed or inconsistent with the pipeline spec.
    #[error("platform spec: {0}")]
    InvalidPlatformSpec(String),

    /// A root input parameter that must be given was not.
    #[error("parameter {name:?} is required: it is not optional and has no default value")]
    MissingParameter {
        /// Root input parameter name.
        name: String,
    },

    /// A run parameter the pipeline does not declare.
    #[error("parameter {name:?} is not an input of this pipeline{hint}")]
    UnknownParameter {
        /// The parameter name given by the user.
        name: String,
        /// Either empty or a short list of the declared inputs (starts with a separator).
        hint: String,
    },

    /// A run parameter value of the wrong type.
    #[error("parameter {name:?} must be {expected}, got {given}")]
    ParameterType {
        /// Root input parameter name.
        name: String,
        /// What the declared type requires, e.g. `an integer (NUMBER_INTEGER)`.
        expected: String,
        /// What was given, e.g. `string "abc"`.
        given: String,
    },

    /// A run parameter value that is well-typed but not acceptable for another reason
    /// (not one of the allowed literals, a type that cannot be supplied at the root, …).
    #[error("parameter {name:?}: {reason}")]
    InvalidParameter {
        /// Root input parameter name.
        name: String,
        /// Lowercase explanation.
        reason: String,
    },
}

impl Error {
    pub(crate) fn spec(msg: impl Into<String>) -> Self {
        Error::InvalidSpec(msg.into())
    }

    pub(crate) fn platform(msg: impl Into<String>) -> Self {
        Error::InvalidPlatformSpec(msg.into())
    }
}
