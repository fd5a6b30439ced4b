//! The calls kfpd makes to the Kubernetes API: Workflows of runs (create, stop,
//! delete, label, list, watch) and the logs of their pods.

use futures::stream::BoxStream;
use futures::{AsyncBufRead, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{json, Value};

/// The label that ties a Workflow to its run (upstream's name).
pub const RUN_ID_LABEL: &str = "pipeline/runid";

/// Set on a Workflow once the server recorded its final state (upstream's name),
/// so an agent restarted later does not report it again.
pub const PERSISTED_LABEL: &str = "pipeline/persistedFinalState";

/// How often a Workflow's generated name is drawn before a 409 is final.
const NAME_DRAWS: u32 = 8;

/// Why a call to the Kubernetes API failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no Kubernetes configuration found ({0}): in a cluster kfpd uses its service account; elsewhere set KUBECONFIG"
    )]
    Config(String),
    /// The API server answered with an error status (admission, quota, RBAC, …).
    #[error("{action}: {message} ({reason}, HTTP {code})")]
    Refused {
        action: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// No answer: the API server is down or unreachable.
    #[error("{action}: kubernetes API server not reachable: {message}")]
    Unreachable { action: String, message: String },
    #[error("{action}: {message}")]
    Invalid { action: String, message: String },
}

impl Error {
    fn from_kube(action: &str, error: kube::Error) -> Error {
        match error {
            kube::Error::Api(response) => Error::Refused {
                action: action.to_string(),
                code: response.code,
                reason: response.reason,
                message: response.message,
            },
            kube::Error::SerdeError(error) => Error::Invalid {
                action: action.to_string(),
                message: format!("unexpected answer: {error}"),
            },
            other => Error::Unreachable {
                action: action.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// The HTTP status the API server answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
}

/// One page of a list, with what continues it.
pub struct Page {
    pub items: Vec<DynamicObject>,
    pub resource_version: String,
    /// Empty on the last page.
    pub continue_token: String,
}

/// A watch event, the raw object kept as JSON.
pub enum Event {
    Applied(DynamicObject),
    Deleted(DynamicObject),
    Bookmark(String),
    /// The API server ended the watch with an error status (410 Gone: relist).
    Error {
        code: u16,
        message: String,
    },
}

/// A Workflow the API server created.
#[derive(Debug, Clone)]
pub struct Created {
    pub name: String,
    pub uid: String,
}

/// A client for one cluster.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    workflow: ApiResource,
}

impl Cluster {
    /// Connects with the in-cluster service account, or KUBECONFIG / ~/.kube/config.
    /// No request is made: an unreachable API server shows at the first call.
    pub async fn connect() -> Result<Cluster, Error> {
        let config = kube::Config::infer()
            .await
            .map_err(|error| Error::Config(error.to_string()))?;
        let client =
            kube::Client::try_from(config).map_err(|error| Error::Config(error.to_string()))?;
        Ok(Cluster::from_client(client))
    }

    pub fn from_client(client: kube::Client) -> Cluster {
        let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow");
        Cluster {
            client,
            workflow: ApiResource::from_gvk_with_plural(&gvk, "workflows"),
        }
    }

    fn workflows(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.workflow)
    }

    /// Workflows of one namespace, or (`None`) of every namespace, which needs a
    /// ClusterRole.
    fn workflows_in(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) => self.workflows(namespace),
            None => Api::all_with(self.client.clone(), &self.workflow),
        }
    }

    /// Creates `workflow` (the compiler's output) in `namespace`; returns its name
    /// and uid. A Workflow named by `generateName` whose drawn name is taken (409
    /// AlreadyExists: API servers before Kubernetes 1.30 do not draw again, and
    /// every run of a pipeline shares the prefix) is created again with a new draw.
    pub async fn submit(&self, namespace: &str, workflow: &Value) -> Result<Created, Error> {
        let action = format!("cannot create the Workflow in namespace {namespace}");
        let object: DynamicObject =
            serde_json::from_value(workflow.clone()).map_err(|error| Error::Invalid {
                action: action.clone(),
                message: error.to_string(),
            })?;
        let generated = object.metadata.name.is_none() && object.metadata.generate_name.is_some();
        let mut attempt = 1;
        loop {
            match self
                .workflows(namespace)
                .create(&PostParams::default(), &object)
                .await
            {
                Ok(created) => {
                    return Ok(Created {
                        name: created.metadata.name.unwrap_or_default(),
                        uid: created.metadata.uid.unwrap_or_default(),
                    })
                }
                Err(kube::Error::Api(response))
                    if generated && response.code == 409 && attempt < NAME_DRAWS =>
                {
                    tracing::info!(
                        namespace,
                        attempt,
                        message = %response.message,
                        "generated workflow name already taken, creating again"
                    );
                    attempt += 1;
                }
                Err(error) => return Err(Error::from_kube(&action, error)),
            }
        }
    }

    /// The Workflows labelled with `run_id`.
    pub async fn run_workflow_objects(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<Vec<DynamicObject>, Error> {
        let params = ListParams::default().labels(&format!("{RUN_ID_LABEL}={run_id}"));
        let list = self
            .workflows(namespace)
            .list(&params)
            .await
            .map_err(|error| {
                Error::from_kube(&format!("cannot list the Workflows of run {run_id}"), error)
            })?;
        Ok(list.items)
    }

    /// The names of the Workflows labelled with `run_id`.
    pub async fn run_workflows(&self, namespace: &str, run_id: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .run_workflow_objects(namespace, run_id)
            .await?
            .into_iter()
            .filter_map(|item| item.metadata.name)
            .collect())
    }

    /// Stops the run's Workflows as `argo terminate` does (`spec.shutdown:
    /// Terminate`): running pods are killed, exit handlers do not run.
    /// Returns how many Workflows were told.
    pub async fn terminate(&self, namespace: &str, run_id: &str) -> Result<usize, Error> {
        let names = self.run_workflows(namespace, run_id).await?;
        let patch = json!({"spec": {"shutdown": "Terminate"}});
        for name in &names {
            match self
                .workflows(namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(response)) if response.code == 404 => {}
                Err(error) => {
                    return Err(Error::from_kube(
                        &format!("cannot stop Workflow {name}"),
                        error,
                    ))
                }
            }
        }
        Ok(names.len())
    }

    /// Deletes the run's Workflows (their pods, and the claims they own, go with
    /// them).
    pub async fn delete_run(&self, namespace: &str, run_id: &str) -> Result<(), Error> {
        for name in self.run_workflows(namespace, run_id).await? {
            self.delete(namespace, &name).await?;
        }
        Ok(())
    }

    /// Deletes the claims labelled with the run that no Workflow owns (a retry's
    /// handed-over workspace whose new owner was never set); returns their names.
    pub async fn delete_unowned_run_claims(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<Vec<String>, Error> {
        let claims = self.unowned_run_claims(namespace, run_id).await?;
        for claim in &claims {
            self.delete_claim(namespace, claim).await?;
        }
        Ok(claims)
    }

    /// Deletes one Workflow; one already gone counts as deleted.
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), Error> {
        match self
            .workflows(namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
            Err(error) => Err(Error::from_kube(
                &format!("cannot delete Workflow {name}"),
                error,
            )),
        }
    }

    /// Labels the Workflow as recorded (`pipeline/persistedFinalState=true`).
    pub async fn mark_persisted(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let patch = json!({"metadata": {"labels": {PERSISTED_LABEL: "true"}}});
        match self
            .workflows(namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
            Err(error) => Err(Error::from_kube(
                &format!("cannot label Workflow {name}"),
                error,
            )),
        }
    }

    /// One page of the Workflows matching `selector` in `namespace` (`None`: all).
    pub async fn list_page(
        &self,
        namespace: Option<&str>,
        selector: &str,
        limit: u32,
        continue_token: &str,
    ) -> Result<Page, Error> {
        let mut params = ListParams::default().labels(selector).limit(limit);
        if !continue_token.is_empty() {
            params = params.continue_token(continue_token);
        }
        let list = self
            .workflows_in(namespace)
            .list(&params)
            .await
            .map_err(|error| Error::from_kube("cannot list Workflows", error))?;
        Ok(Page {
            items: list.items,
            resource_version: list.metadata.resource_version.unwrap_or_default(),
            continue_token: list.metadata.continue_.unwrap_or_default(),
        })
    }

    /// Watches the Workflows matching `selector` in `namespace` (`None`: all)
    /// from `resource_version`. The stream ends when the API server closes the
    /// watch (after `timeout_seconds`).
    pub async fn watch(
        &self,
        namespace: Option<&str>,
        selector: &str,
        resource_version: &str,
        timeout_seconds: u32,
    ) -> Result<BoxStream<'static, Result<Event, Error>>, Error> {
        let params = WatchParams::default()
            .labels(selector)
            .timeout(timeout_seconds);
        let stream = self
            .workflows_in(namespace)
            .watch(&params, resource_version)
            .await
            .map_err(|error| Error::from_kube("cannot watch Workflows", error))?;
        Ok(stream
            .map(|item| match item {
                Ok(WatchEvent::Added(object)) | Ok(WatchEvent::Modified(object)) => {
                    Ok(Event::Applied(object))
                }
                Ok(WatchEvent::Deleted(object)) => Ok(Event::Deleted(object)),
                Ok(WatchEvent::Bookmark(bookmark)) => {
                    Ok(Event::Bookmark(bookmark.metadata.resource_version))
                }
                Ok(WatchEvent::Error(response)) => Ok(Event::Error {
                    code: response.code,
                    message: response.message,
                }),
                Err(error) => Err(Error::from_kube("watch of Workflows broke", error)),
            })
            .boxed())
    }

    fn claims(&self, namespace: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The claims labelled with `run_id` (handed over from one Workflow of the
    /// run to the next by [`Cluster::release_claim`]).
    pub async fn run_claims(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<Vec<PersistentVolumeClaim>, Error> {
        let params = ListParams::default().labels(&format!("{RUN_ID_LABEL}={run_id}"));
        let list = self
            .claims(namespace)
            .list(&params)
            .await
            .map_err(|error| {
                Error::from_kube(
                    &format!("cannot list the volume claims of run {run_id}"),
                    error,
                )
            })?;
        Ok(list.items)
    }

    /// The names of the claims labelled with `run_id` that no Workflow owns:
    /// handed over by a retry whose new Workflow was not created or not made
    /// their owner.
    pub async fn unowned_run_claims(
        &self,
        namespace: &str,
        run_id: &str,
    ) -> Result<Vec<String>, Error> {
        Ok(self
            .run_claims(namespace, run_id)
            .await?
            .into_iter()
            .filter(|claim| {
                claim
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|owners| owners.is_empty())
            })
            .filter_map(|claim| claim.metadata.name)
            .collect())
    }

    /// Takes claim `name` off the Workflow with uid `owner` so that deleting
    /// that Workflow leaves it, and labels it with `run_id` so that it can be
    /// found without a Workflow. `None` when the claim does not exist.
    pub async fn release_claim(
        &self,
        namespace: &str,
        name: &str,
        owner: &str,
        run_id: &str,
    ) -> Result<Option<PersistentVolumeClaim>, Error> {
        let action = format!("cannot take volume claim {name} off its Workflow");
        let Some(claim) = self.get_claim(namespace, name, &action).await? else {
            return Ok(None);
        };
        let owners: Vec<OwnerReference> = claim
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|reference| reference.uid != owner)
            .collect();
        let patch = json!({"metadata": {
            "resourceVersion": claim.metadata.resource_version,
            "labels": {RUN_ID_LABEL: run_id},
            "ownerReferences": owners,
        }});
        self.patch_claim(namespace, name, &patch, &action)
            .await
            .map(Some)
    }

    /// Makes Workflow `owner` the owner of claim `name`, so the claim is deleted
    /// with it (DeleteRun, ArchiveRun, the agent's TTL, Argo's TTL).
    pub async fn adopt_claim(
        &self,
        namespace: &str,
        name: &str,
        owner: &Created,
    ) -> Result<(), Error> {
        let action = format!(
            "cannot make Workflow {} the owner of volume claim {name}",
            owner.name
        );
        let Some(claim) = self.get_claim(namespace, name, &action).await? else {
            return Err(Error::Invalid {
                action,
                message: "the claim does not exist".into(),
            });
        };
        let mut owners = claim.metadata.owner_references.clone().unwrap_or_default();
        owners.retain(|reference| reference.uid != owner.uid);
        owners.push(OwnerReference {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Workflow".into(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            ..OwnerReference::default()
        });
        let patch = json!({"metadata": {
            "resourceVersion": claim.metadata.resource_version,
            "ownerReferences": owners,
        }});
        self.patch_claim(namespace, name, &patch, &action).await?;
        Ok(())
    }

    /// Deletes claim `name`; one already gone counts as deleted.
    pub async fn delete_claim(&self, namespace: &str, name: &str) -> Result<(), Error> {
        match self
            .claims(namespace)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
            Err(error) => Err(Error::from_kube(
                &format!("cannot delete volume claim {name}"),
                error,
            )),
        }
    }

    async fn get_claim(
        &self,
        namespace: &str,
        name: &str,
        action: &str,
    ) -> Result<Option<PersistentVolumeClaim>, Error> {
        match self.claims(namespace).get(name).await {
            Ok(claim) => Ok(Some(claim)),
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(None),
            Err(error) => Err(Error::from_kube(action, error)),
        }
    }

    /// A merge patch carrying the claim's resourceVersion: a claim changed
    /// since it was read is refused (409) rather than overwritten.
    async fn patch_claim(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
        action: &str,
    ) -> Result<PersistentVolumeClaim, Error> {
        self.claims(namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|error| Error::from_kube(action, error))
    }

    /// The log of `container` in pod `pod`; with `follow` it goes on until the
    /// container ends.
    pub async fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        follow: bool,
    ) -> Result<impl AsyncBufRead + Send + Unpin + 'static, Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: Some(container.to_string()),
            follow,
            ..LogParams::default()
        };
        pods.log_stream(pod, &params)
            .await
            .map_err(|error| Error::from_kube(&format!("cannot read the log of pod {pod}"), error))
    }
}

/// Reads a pod log stream to its end (for tests and short logs).
pub async fn read_all(log: impl AsyncBufRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut lines = log;
    futures::AsyncReadExt::read_to_end(&mut lines, &mut bytes).await?;
    Ok(bytes)
}

/// The claim a Workflow's volume `volume` is: mounted by name (`spec.volumes`,
/// a retried run's Workflow), or made from its claim template, which Argo's
/// controller names `<workflow>-<template>` and records in
/// `status.persistentVolumeClaims`.
pub fn workflow_claim(workflow: &DynamicObject, volume: &str) -> Option<String> {
    let named = |list: &Value| {
        list.as_array()?
            .iter()
            .find(|item| item["name"] == volume)
            .and_then(|item| item["persistentVolumeClaim"]["claimName"].as_str())
            .map(str::to_string)
    };
    named(&workflow.data["spec"]["volumes"])
        .or_else(|| named(&workflow.data["status"]["persistentVolumeClaims"]))
        .or_else(|| {
            let name = workflow.metadata.name.as_deref()?;
            let templates = workflow.data["spec"]["volumeClaimTemplates"].as_array()?;
            templates
                .iter()
                .any(|template| template["metadata"]["name"] == volume)
                .then(|| format!("{name}-{volume}"))
        })
}
