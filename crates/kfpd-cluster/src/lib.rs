//! kfpd on Kubernetes, with kube-rs: the argo executor's calls (submit, stop and
//! delete a run's Workflow, read a task pod's log), reading Workflow status as
//! Argo writes it, and the persistence agent that watches Workflows and reports
//! them to the API server (docs/kubernetes.md); TokenReview and
//! SubjectAccessReview for multi-user mode ([`review`]), and the service-account
//! token callers inside the cluster send ([`token`]).

pub mod agent;
mod client;
pub mod review;
pub mod status;
pub mod token;

pub use client::{
    read_all, workflow_claim, Cluster, Created, Error, Event, Page, PERSISTED_LABEL, RUN_ID_LABEL,
};
