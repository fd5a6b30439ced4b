//! Reading and validating compiled KFP pipeline packages.
//!
//! This crate is pure: it turns the bytes of an upload (or an inline spec from
//! `CreateRun`) into a validated [`Package`], and checks run parameters against
//! it. It does no I/O, so the API server, the local engine and the cluster-side
//! driver all judge a pipeline the same way.
//!
//! * [`read_package`]: YAML, JSON, zip or tar.gz upload → [`Package`].
//! * [`parse_spec_value`]: inline `pipeline_spec` JSON → [`Package`].
//! * [`check_runtime_parameters`]: run parameters against the root inputs.
//! * [`spec`]: the typed IR model (`PipelineSpec`, `ComponentSpec`, …).
//!
//! All failures are [`Error`]s whose messages can be shown to users.

mod archive;
mod de;
mod error;
mod nesting;
mod package;
mod params;
pub mod spec;
mod validate;

pub use error::Error;
pub use package::{parse_spec_value, read_package, Package, MAX_PACKAGE_SIZE};
pub use params::{check_runtime_parameters, generate_test_parameters};
