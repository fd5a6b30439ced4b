//! Pipeline IR → Argo Workflow (`argoproj.io/v1alpha1`).
//!
//! [`compile`] makes the Workflow the API server submits for a run; `kfpd compile
//! --target argo` prints the same for a run with default parameters. The layout
//! (one pod per container task that runs, driver requests without pods) and the
//! contract with `kfpd driver` / `kfpd launcher` are described in docs/argo.md.
//!
//! * [`compile`] / [`to_yaml`]: the Workflow and its YAML.
//! * [`lint`]: the checks Argo's own validator makes beyond the CRD schema.
//! * [`pods`]: how many pods a Workflow starts (for the layout comparison).
//! * [`patch`]: the pod spec patch a driver answer carries for settings known
//!   only when a task is driven.

mod compile;
mod error;
pub mod lint;
mod options;
pub mod patch;
mod platform;
pub mod pods;
mod resources;
mod scope;
pub mod workflow;

pub use compile::{compile, DRIVER_TEMPLATE, ROOT_TEMPLATE, WORKSPACE_VOLUME};
pub use error::Error;
pub use options::{ArgoVersion, Options};
pub use workflow::Workflow;

/// The Workflow as YAML.
pub fn to_yaml(workflow: &Workflow) -> Result<String, Error> {
    serde_yaml::to_string(workflow).map_err(|e| Error::Output(e.to_string()))
}

/// Compiles `package` and writes it as YAML.
pub fn compile_yaml(package: &kfpd_ir::Package, options: &Options) -> Result<String, Error> {
    to_yaml(&compile(package, options)?)
}
