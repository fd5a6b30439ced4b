//! The access checks of multi-user mode. Each service method makes one as soon
//! as it knows the namespace it acts in: the namespace a list or create names,
//! or the namespace of the object it loaded. An object the caller may not see
//! is answered exactly as a missing one, so ids cannot be probed.

use std::sync::Arc;

use kfpd_auth::{Access, Resource, Verb};

use super::Api;
use crate::access::{Caller, Guard};
use crate::error::{Code, Error, Result};

/// The answer for an object that does not exist, word for word the store's.
pub(super) fn missing(kind: &str, id: &str) -> Error {
    Error::from(kfpd_store::Error::not_found(kind, id))
}

fn forbidden(caller: &Caller, access: &Access<'_>) -> Error {
    Error::new(
        Code::PermissionDenied,
        format!(
            "User '{}' is not authorized to {} {} in namespace '{}'",
            caller.identity.user,
            access.verb.as_str(),
            access.resource.as_str(),
            access.namespace
        ),
    )
}

impl Api {
    /// The guard and caller to check, or `None` when nothing is checked: single-user
    /// mode, or a call the server makes itself (outside any request).
    fn checking(&self) -> Option<(Arc<Guard>, Arc<Caller>)> {
        if !self.settings.multi_user {
            return None;
        }
        let guard = self.guard.clone()?;
        let caller = Caller::current()?;
        Some((guard, caller))
    }

    /// Records that the request was decided without asking the guard (shared
    /// pipelines are readable by everyone).
    fn open_access(&self) {
        if let Some((_, caller)) = self.checking() {
            caller.mark_checked();
        }
    }

    /// A list or create in a namespace the caller names: 403 when not allowed.
    pub(super) async fn check_namespace(
        &self,
        namespace: &str,
        resource: Resource,
        verb: Verb,
    ) -> Result<()> {
        let Some((guard, caller)) = self.checking() else {
            return Ok(());
        };
        let access = Access {
            namespace,
            resource,
            verb,
            name: None,
        };
        let allowed = guard.allows(&caller.identity, &access).await?;
        caller.mark_checked();
        if allowed {
            return Ok(());
        }
        tracing::info!(user = %caller.identity.user, namespace, verb = %verb, resource = %resource, "access denied");
        Err(forbidden(&caller, &access))
    }

    /// A request on one object, loaded already: not allowed answers `hidden()` (the
    /// object's not-found error) unless the caller may see the object, then 403.
    pub(super) async fn check_object(
        &self,
        namespace: &str,
        resource: Resource,
        verb: Verb,
        name: &str,
        hidden: impl FnOnce() -> Error,
    ) -> Result<()> {
        let Some((guard, caller)) = self.checking() else {
            return Ok(());
        };
        let access = Access {
            namespace,
            resource,
            verb,
            name: Some(name),
        };
        let allowed = guard.allows(&caller.identity, &access).await?;
        caller.mark_checked();
        if allowed {
            return Ok(());
        }
        tracing::info!(user = %caller.identity.user, namespace, verb = %verb, resource = %resource, name, "access denied");
        if verb != Verb::Get {
            let see = Access {
                verb: Verb::Get,
                ..access
            };
            if guard.allows(&caller.identity, &see).await? {
                return Err(forbidden(&caller, &access));
            }
        }
        Err(hidden())
    }

    /// A pipeline (or one of its versions) in `namespace`: shared pipelines (no
    /// namespace) are readable by every caller, and changed by those allowed to in
    /// the server's own namespace, as upstream.
    pub(super) async fn check_pipeline(
        &self,
        namespace: &str,
        verb: Verb,
        name: &str,
        hidden: impl FnOnce() -> Error,
    ) -> Result<()> {
        if !namespace.is_empty() {
            return self
                .check_object(namespace, Resource::Pipelines, verb, name, hidden)
                .await;
        }
        if matches!(verb, Verb::Get | Verb::List) {
            self.open_access();
            return Ok(());
        }
        let own = self.settings.pod_namespace.clone();
        self.check_namespace(&own, Resource::Pipelines, verb).await
    }

    /// Lists and creates of pipelines in a namespace ("" is the shared one).
    pub(super) async fn check_pipeline_namespace(&self, namespace: &str, verb: Verb) -> Result<()> {
        if !namespace.is_empty() {
            return self
                .check_namespace(namespace, Resource::Pipelines, verb)
                .await;
        }
        if matches!(verb, Verb::Get | Verb::List) {
            self.open_access();
            return Ok(());
        }
        let own = self.settings.pod_namespace.clone();
        self.check_namespace(&own, Resource::Pipelines, verb).await
    }

    /// Loads a run and checks `verb` on it.
    pub(super) async fn run_for(&self, run_id: &str, verb: Verb) -> Result<kfpd_store::Run> {
        let run = self.store.get_run(run_id).await?;
        self.check_object(&run.namespace, Resource::Runs, verb, run_id, || {
            missing("run", run_id)
        })
        .await?;
        Ok(run)
    }

    /// Loads an experiment and checks `verb` on it.
    pub(super) async fn experiment_checked(
        &self,
        experiment_id: &str,
        verb: Verb,
    ) -> Result<kfpd_store::Experiment> {
        let experiment = self.store.get_experiment(experiment_id).await?;
        self.check_object(
            &experiment.namespace,
            Resource::Experiments,
            verb,
            experiment_id,
            || missing("experiment", experiment_id),
        )
        .await?;
        Ok(experiment)
    }

    /// Loads a recurring run and checks `verb` on it.
    pub(super) async fn recurring_run_for(
        &self,
        id: &str,
        verb: Verb,
    ) -> Result<kfpd_store::RecurringRun> {
        let row = self.store.get_recurring_run(id).await?;
        self.check_object(&row.namespace, Resource::RecurringRuns, verb, id, || {
            missing("recurring run", id)
        })
        .await?;
        Ok(row)
    }

    /// Loads a pipeline and checks `verb` on it.
    pub(super) async fn pipeline_for(&self, id: &str, verb: Verb) -> Result<kfpd_store::Pipeline> {
        let pipeline = self.store.get_pipeline(id).await?;
        self.check_pipeline(&pipeline.namespace, verb, id, || missing("pipeline", id))
            .await?;
        Ok(pipeline)
    }

    /// Loads a pipeline version and checks `verb` on its pipeline; denied, the
    /// version is not found.
    pub(super) async fn version_for(
        &self,
        id: &str,
        verb: Verb,
    ) -> Result<kfpd_store::PipelineVersion> {
        let version = self.store.get_pipeline_version(id).await?;
        let pipeline = match self.store.get_pipeline(&version.pipeline_id).await {
            Ok(pipeline) => pipeline,
            Err(kfpd_store::Error::NotFound(_)) => return Err(missing("pipeline version", id)),
            Err(error) => return Err(error.into()),
        };
        self.check_pipeline(&pipeline.namespace, verb, id, || {
            missing("pipeline version", id)
        })
        .await?;
        Ok(version)
    }
}

impl Api {
    /// Multi-user mode: an object read for a run in `namespace` must lie in the
    /// namespace's root (an importer could have named another namespace's).
    pub(super) fn check_in_namespace(
        &self,
        store: &kfpd_artifacts::ArtifactStore,
        namespace: &str,
        uri: &str,
    ) -> Result<()> {
        if !self.settings.multi_user || namespace.is_empty() {
            return Ok(());
        }
        let root = store.namespace_root(namespace);
        if kfpd_artifacts::ArtifactStore::is_within(&root, uri) {
            return Ok(());
        }
        Err(Error::new(
            Code::FailedPrecondition,
            format!("{uri} lies outside the artifacts of namespace {namespace} ({root}) and is not served"),
        ))
    }

    /// An artifact is seen through the run that recorded it; one the caller may
    /// not see (or whose run is gone, in multi-user mode) is not found.
    pub(super) async fn check_artifact_run(
        &self,
        artifact: &kfpd_store::Artifact,
        artifact_id: &str,
    ) -> Result<()> {
        if !self.settings.multi_user {
            return Ok(());
        }
        let run = match self.store.get_run(&artifact.run_id).await {
            Ok(run) => run,
            Err(kfpd_store::Error::NotFound(_)) => return Err(missing("artifact", artifact_id)),
            Err(error) => return Err(error.into()),
        };
        self.check_object(&run.namespace, Resource::Runs, Verb::Get, &run.id, || {
            missing("artifact", artifact_id)
        })
        .await
    }

    /// Multi-user mode: a pipeline root a run in `namespace` names must lie in the
    /// namespace's root, so runs cannot write into another namespace's objects.
    pub(super) fn check_root_in_namespace(
        &self,
        what: &str,
        root: &str,
        namespace: &str,
    ) -> Result<()> {
        let Some(store) = &self.artifacts else {
            return Ok(());
        };
        if !self.settings.multi_user || namespace.is_empty() {
            return Ok(());
        }
        let own = store.namespace_root(namespace);
        let normalized = store
            .pipeline_root(root)
            .map_err(|error| Error::invalid(format!("{what}: {error}")))?;
        if kfpd_artifacts::ArtifactStore::is_within(&own, &normalized) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "{what}: pipeline root {root:?} is outside the artifacts of namespace {namespace}; in multi-user mode a run's root lies under {own} (leave it empty to use that)"
        )))
    }
}

/// Namespaces are Kubernetes namespace names (RFC 1123 labels): they become a
/// prefix in the artifact store, so nothing else may pass.
pub(super) fn check_namespace_name(namespace: &str) -> Result<()> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 63
        && namespace
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    if valid {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "namespace {namespace:?} is not a valid namespace name (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_dns_labels() {
        for good in ["team-a", "a", "ns1"] {
            assert!(check_namespace_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a/b", "..", "a.b", &"x".repeat(64)] {
            let error = check_namespace_name(bad).unwrap_err();
            assert_eq!(error.code, Code::InvalidArgument, "{bad}");
        }
    }
}
