//! The decisions a KFP task needs, without I/O, shared by the local engine and the
//! in-pod driver and launcher so a pipeline behaves the same wherever it runs.
//!
//! - [`inputs`]: a task's inputs from its scope and its producers;
//! - [`dag`]: when a task starts or is skipped, its condition, a DAG's result;
//! - [`loops`]: loop items, iteration scopes, collected outputs;
//! - [`cache`]: the cache key and what a hit gives;
//! - [`executor_input`]: the ExecutorInput and the resolved command line;
//! - [`outputs`]: reading a finished task's outputs back;
//! - [`attempts`], [`importer`], [`run`]: retries, imports, the run's outcome;
//! - [`cel`], [`values`]: CEL expressions and typed parameter values;
//! - [`Error`]: why a decision cannot be made, by step.
//!
//! Files are read through closures the caller passes; nothing here touches the
//! network, the store or the clock (callers pass `now`).

pub mod attempts;
pub mod cache;
pub mod cel;
pub mod dag;
mod error;
pub mod executor_input;
pub mod importer;
pub mod inputs;
pub mod loops;
pub mod outputs;
pub mod results;
pub mod run;
pub mod values;

pub use error::Error;
pub use results::{ArtifactRef, Artifacts, Scope, TaskResult};
