//! Who is calling and what they may do, for multi-user mode: the identity an
//! [`Authenticator`] finds in a request, the [`Access`] a route asks for in
//! upstream KFP's RBAC terms, and the [`Authorizer`] that decides it.
//!
//! The verb and resource names are upstream's (`pipelines.kubeflow.org`, version
//! `v1beta1`), so Kubernetes roles written for upstream's API server hold for kfpd.

use std::fmt;

pub use chain::Chain;
pub use header::{Cidr, TrustedHeader};
pub use policy::PolicyFile;

pub mod cache;
pub mod chain;
pub mod header;
pub mod oidc;
pub mod policy;

/// The API group of upstream's pipeline resources in RBAC rules.
pub const GROUP: &str = "pipelines.kubeflow.org";
/// The API group upstream checks viewer resources against.
pub const KUBEFLOW_GROUP: &str = "kubeflow.org";
/// The version upstream puts in its SubjectAccessReview resource attributes.
pub const VERSION: &str = "v1beta1";
/// The audience upstream's SDK tokens are issued for and TokenReview checks.
pub const TOKEN_AUDIENCE: &str = "pipelines.kubeflow.org";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// What a request does to a resource, as upstream names RBAC verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Create,
    Update,
    Delete,
    Archive,
    Unarchive,
    Terminate,
    Retry,
    ReadArtifact,
    ReadLog,
    Enable,
    Disable,
    Report,
}

impl Verb {
    /// Every verb, for tables and tests.
    pub const ALL: [Verb; 14] = [
        Verb::Get,
        Verb::List,
        Verb::Create,
        Verb::Update,
        Verb::Delete,
        Verb::Archive,
        Verb::Unarchive,
        Verb::Terminate,
        Verb::Retry,
        Verb::ReadArtifact,
        Verb::ReadLog,
        Verb::Enable,
        Verb::Disable,
        Verb::Report,
    ];

    /// The verb as RBAC rules spell it. `readLog` has no upstream constant (upstream
    /// reads logs under `get`); it follows the spelling of `readArtifact`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Archive => "archive",
            Verb::Unarchive => "unarchive",
            Verb::Terminate => "terminate",
            Verb::Retry => "retry",
            Verb::ReadArtifact => "readArtifact",
            Verb::ReadLog => "readLog",
            Verb::Enable => "enable",
            Verb::Disable => "disable",
            Verb::Report => "report",
        }
    }

    /// The verb named as RBAC rules spell it, `None` for an unknown name.
    pub fn parse(name: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|verb| verb.as_str() == name)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of object a request touches, as kfpd's API has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Runs,
    Experiments,
    Pipelines,
    PipelineVersions,
    RecurringRuns,
    Jobs,
    Viewers,
    Visualizations,
}

impl Resource {
    /// Every resource kind, for tables and tests.
    pub const ALL: [Resource; 8] = [
        Resource::Runs,
        Resource::Experiments,
        Resource::Pipelines,
        Resource::PipelineVersions,
        Resource::RecurringRuns,
        Resource::Jobs,
        Resource::Viewers,
        Resource::Visualizations,
    ];

    /// The RBAC resource name upstream checks this kind against. Upstream has no
    /// resource of its own for pipeline versions (they are checked as `pipelines`)
    /// nor for recurring runs (checked as `jobs`, their v1 name), so roles written
    /// for upstream keep working.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Runs => "runs",
            Resource::Experiments => "experiments",
            Resource::Pipelines | Resource::PipelineVersions => "pipelines",
            Resource::RecurringRuns | Resource::Jobs => "jobs",
            Resource::Viewers => "viewers",
            Resource::Visualizations => "visualizations",
        }
    }

    /// The API group of the resource in RBAC rules: upstream checks viewers in
    /// `kubeflow.org`, everything else in `pipelines.kubeflow.org`.
    pub fn group(self) -> &'static str {
        match self {
            Resource::Viewers => KUBEFLOW_GROUP,
            _ => GROUP,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One access a request needs: a verb on a resource kind in a namespace, and the
/// object's name where the request names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access<'a> {
    pub namespace: &'a str,
    pub resource: Resource,
    pub verb: Verb,
    pub name: Option<&'a str>,
}

/// Finds who is calling. `Ok(None)` means the request carries nothing this
/// authenticator understands, so the next one may try; a credential it
/// understands but rejects is [`Error::Unauthenticated`].
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<Option<Identity>, Error>;
}

/// Decides whether an identity may make an access: `Ok(false)` is a denial,
/// `Err` means no decision could be had.
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(&self, who: &Identity, access: &Access<'_>) -> Result<bool, Error>;
}

/// Allows every access: multi-user mode with namespaces and identities but no
/// access checks (`authorizer = none`), for installs that trust every caller.
pub struct AllowAll;

#[async_trait::async_trait]
impl Authorizer for AllowAll {
    async fn authorize(&self, _who: &Identity, _access: &Access<'_>) -> Result<bool, Error> {
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request carried a credential that does not prove who is calling.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// What decides (identity provider, Kubernetes API server, policy) cannot be
    /// reached or answered nonsense; the request may succeed later.
    #[error("authentication or authorization unavailable: {0}")]
    Unavailable(String),
    /// The provider's settings are wrong; the operator must fix them.
    #[error("invalid authentication or authorization settings: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_round_trip_through_their_names() {
        for verb in Verb::ALL {
            assert_eq!(Verb::parse(verb.as_str()), Some(verb));
        }
        assert_eq!(Verb::parse("Get"), None);
        assert_eq!(Verb::ReadArtifact.as_str(), "readArtifact");
    }

    #[test]
    fn resources_use_upstream_names_and_groups() {
        assert_eq!(Resource::RecurringRuns.as_str(), "jobs");
        assert_eq!(Resource::PipelineVersions.as_str(), "pipelines");
        assert_eq!(Resource::Viewers.group(), KUBEFLOW_GROUP);
        assert_eq!(Resource::Runs.group(), "pipelines.kubeflow.org");
    }
}
