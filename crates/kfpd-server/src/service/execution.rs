//! What the engine recorded about runs: task details for GetRun, task logs, the
//! artifact read endpoint and the artifact API.

mod archive;
mod attempts;
mod nodes;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use kfpd_api::google_rpc::Status;
use kfpd_api::v2beta1 as api;
use kfpd_store::{Artifact, ArtifactLink, Direction, Task, TaskKind, TaskState};
use serde::Serialize;
use serde_json::{Map, Value};

use self::attempts::Attempts;
pub use self::nodes::{nodes_of, ListNodesResponse, Node, NodeArtifact, NodeDetail, RunView};
use super::Api;
use crate::convert::{runtime_state_of_task, timestamp};
use crate::error::{Code, Error, Result};

/// Largest artifact the `:read` endpoint returns inline (it is base64 in JSON).
const MAX_READ_BYTES: usize = 32 << 20;

/// Where a node's log is, which part of it is the node's, and whether more may come.
/// A node is a task, or one attempt of a task (`<task_id>-attempt-<n>`).
pub struct TaskLog {
    /// The log file; None while the task's process has not started yet.
    pub local_path: Option<PathBuf>,
    /// The log object in the artifact store, once the task finished.
    pub object_uri: Option<String>,
    /// The node's bytes of the log: from `start` to `end` (None: the end of the log).
    pub start: u64,
    pub end: Option<u64>,
    /// Nothing more will be written for this node: its task or attempt ended.
    pub finished: bool,
    /// The pod (namespace, name) of a task running on Argo: its log is read there
    /// while it runs (the launcher uploads the copy above when it ends).
    pub pod: Option<(String, String)>,
}

impl TaskLog {
    /// The node's part of a whole log's bytes.
    pub fn slice(&self, log: bytes::Bytes) -> bytes::Bytes {
        let length = log.len() as u64;
        let start = self.start.min(length) as usize;
        let end = self.end.unwrap_or(length).clamp(start as u64, length) as usize;
        log.slice(start..end)
    }
}

/// Whether a task's row says it has ended for good. Between two attempts of a retry
/// policy the row is FAILED for a while but has no end time yet.
fn task_ended(task: &Task) -> bool {
    task.state.is_final() && task.finished_at > 0
}

fn details_of(task: &Task) -> Map<String, Value> {
    serde_json::from_str(&task.details).unwrap_or_default()
}

fn status(message: &str) -> Status {
    Status {
        code: 2,
        message: message.to_string(),
        details: Vec::new(),
    }
}

/// The artifact API's view of an artifact, with its lineage.
#[derive(Serialize)]
pub struct ArtifactView {
    pub artifact_id: String,
    pub name: String,
    pub uri: String,
    #[serde(rename = "type")]
    pub kind: ArtifactType,
    pub metadata: Value,
    pub created_at: String,
    pub run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<ArtifactUse>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ArtifactUse>,
    /// `DELETED` (ML Metadata's artifact state) once retention deleted the object;
    /// absent while it is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// When retention deleted the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
}

#[derive(Serialize)]
pub struct ArtifactType {
    pub schema_title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub schema_version: String,
}

#[derive(Serialize)]
pub struct ArtifactUse {
    pub task_id: String,
    pub task_name: String,
    /// The output key (producer) or input name (consumer).
    pub key: String,
}

#[derive(Serialize)]
pub struct ListArtifactsResponse {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<ArtifactView>,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_size: usize,
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

pub(crate) fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn view(
    artifact: &Artifact,
    links: &[ArtifactLink],
    names: &HashMap<String, String>,
    deleted: &HashMap<i64, i64>,
) -> ArtifactView {
    let deleted_at = deleted.get(&artifact.id).copied();
    let name_of = |task_id: &str| names.get(task_id).cloned().unwrap_or_default();
    let producer = links
        .iter()
        .find(|link| link.direction == Direction::Output && link.artifact_id == artifact.id)
        .map(|link| ArtifactUse {
            task_id: link.task_id.clone(),
            task_name: name_of(&link.task_id),
            key: link.key.clone(),
        });
    let consumers = links
        .iter()
        .filter(|link| link.direction == Direction::Input && link.artifact_id == artifact.id)
        .map(|link| ArtifactUse {
            task_id: link.task_id.clone(),
            task_name: name_of(&link.task_id),
            key: link.key.clone(),
        })
        .collect();
    ArtifactView {
        artifact_id: artifact.id.to_string(),
        name: artifact.name.clone(),
        uri: artifact.uri.clone(),
        kind: ArtifactType {
            schema_title: artifact.schema_title.clone(),
            schema_version: artifact.schema_version.clone(),
        },
        metadata: serde_json::from_str(&artifact.metadata)
            .unwrap_or(Value::Object(Default::default())),
        created_at: rfc3339(artifact.created_at),
        run_id: artifact.run_id.clone(),
        producer,
        consumers,
        state: deleted_at.map(|_| "DELETED"),
        deleted_at: deleted_at.map(rfc3339),
    }
}

/// Why an artifact or log retention deleted cannot be read.
fn deleted_by_retention(what: String, at: i64) -> Error {
    Error::not_found(format!(
        "{what} was deleted by retention at {} (artifact_retention_days); its record stays",
        rfc3339(at)
    ))
}

/// Artifact ids by key, as the API's `inputs`/`outputs` maps.
fn artifact_lists(map: Option<&BTreeMap<String, Vec<i64>>>) -> BTreeMap<String, api::ArtifactList> {
    map.map(|map| {
        map.iter()
            .map(|(key, ids)| {
                (
                    key.clone(),
                    api::ArtifactList {
                        artifact_ids: ids.clone(),
                    },
                )
            })
            .collect()
    })
    .unwrap_or_default()
}

/// A task adopted from upstream's `tasks` table, shown as upstream shows it:
/// its own state and history, its ML Metadata execution id, every time set (zero
/// ones too) and its children as the pod names upstream recorded.
fn adopted_task_detail(
    run_id: &str,
    task: &Task,
    adopted: &Value,
    inputs: &HashMap<&str, BTreeMap<String, Vec<i64>>>,
    outputs: &HashMap<&str, BTreeMap<String, Vec<i64>>>,
) -> api::PipelineTaskDetail {
    let state = |value: Option<&Value>| {
        let name = value.and_then(Value::as_str).unwrap_or_default();
        crate::convert::runtime_state(kfpd_store::RunState::parse(name)) as i32
    };
    let history = adopted
        .get("history")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|entry| api::RuntimeStatus {
                    update_time: timestamp(entry.get("t").and_then(Value::as_i64).unwrap_or(0)),
                    state: state(entry.get("s")),
                    error: None,
                })
                .collect()
        })
        .unwrap_or_default();
    let children = adopted
        .get("children_pods")
        .and_then(Value::as_array)
        .map(|pods| {
            pods.iter()
                .filter_map(Value::as_str)
                .map(|pod| api::pipeline_task_detail::ChildTask {
                    child_task: Some(api::pipeline_task_detail::child_task::ChildTask::PodName(
                        pod.to_string(),
                    )),
                })
                .collect()
        })
        .unwrap_or_default();
    api::PipelineTaskDetail {
        run_id: run_id.to_string(),
        task_id: task.id.clone(),
        display_name: task.display_name.clone(),
        create_time: timestamp(task.created_at),
        start_time: timestamp(task.started_at),
        end_time: timestamp(task.finished_at),
        executor_detail: None,
        state: state(adopted.get("state")),
        execution_id: adopted
            .get("execution_id")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        error: None,
        inputs: artifact_lists(inputs.get(task.id.as_str())),
        outputs: artifact_lists(outputs.get(task.id.as_str())),
        parent_task_id: task.parent_id.clone(),
        state_history: history,
        pod_name: String::new(),
        child_tasks: children,
    }
}

/// `run_details.task_details` from the run's task rows and artifact links.
pub(crate) fn run_details(
    run_id: &str,
    tasks: &[Task],
    links: &[ArtifactLink],
) -> Option<api::RunDetails> {
    if tasks.is_empty() {
        return None;
    }
    let mut inputs: HashMap<&str, BTreeMap<String, Vec<i64>>> = HashMap::new();
    let mut outputs: HashMap<&str, BTreeMap<String, Vec<i64>>> = HashMap::new();
    for link in links {
        let side = match link.direction {
            Direction::Input => &mut inputs,
            Direction::Output => &mut outputs,
        };
        side.entry(link.task_id.as_str())
            .or_default()
            .entry(link.key.clone())
            .or_default()
            .push(link.artifact_id);
    }
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for task in tasks {
        if !task.parent_id.is_empty() {
            children
                .entry(task.parent_id.as_str())
                .or_default()
                .push(task.id.as_str());
        }
    }
    let details = tasks
        .iter()
        .map(|task| {
            let details = details_of(task);
            if let Some(adopted) = details.get("adopted") {
                return adopted_task_detail(run_id, task, adopted, &inputs, &outputs);
            }
            let attempts = Attempts::of(&details);
            let history_errors = attempts.history_errors(&task.state_history);
            api::PipelineTaskDetail {
                run_id: run_id.to_string(),
                task_id: task.id.clone(),
                display_name: task.display_name.clone(),
                create_time: timestamp(task.created_at),
                start_time: (task.started_at > 0)
                    .then(|| timestamp(task.started_at))
                    .flatten(),
                end_time: (task.finished_at > 0)
                    .then(|| timestamp(task.finished_at))
                    .flatten(),
                executor_detail: attempts.executor_detail(&task.id),
                state: runtime_state_of_task(task.state) as i32,
                execution_id: 0,
                error: task
                    .error
                    .as_deref()
                    .filter(|_| task.state != TaskState::Succeeded)
                    .map(status),
                inputs: artifact_lists(inputs.get(task.id.as_str())),
                outputs: artifact_lists(outputs.get(task.id.as_str())),
                parent_task_id: task.parent_id.clone(),
                state_history: task
                    .state_history
                    .iter()
                    .enumerate()
                    .map(|(index, change)| api::RuntimeStatus {
                        update_time: timestamp(change.time),
                        state: runtime_state_of_task(change.state) as i32,
                        error: history_errors.get(&index).map(|message| status(message)),
                    })
                    .collect(),
                pod_name: String::new(),
                child_tasks: children
                    .get(task.id.as_str())
                    .map(|ids| {
                        ids.iter()
                            .map(|id| api::pipeline_task_detail::ChildTask {
                                child_task: Some(
                                    api::pipeline_task_detail::child_task::ChildTask::TaskId(
                                        (*id).to_string(),
                                    ),
                                ),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    Some(api::RunDetails {
        pipeline_context_id: 0,
        pipeline_run_context_id: 0,
        task_details: details,
    })
}

impl Api {
    /// Where the log of node `node_id` of run `run_id` is: a task, or one attempt of
    /// a task. Unknown nodes, and tasks that ended without a log (or never have one,
    /// as DAGs), are not found; a container task that has not started its process
    /// yet has a log to come.
    pub async fn task_log(&self, run_id: &str, node_id: &str) -> Result<TaskLog> {
        self.run_for(run_id, kfpd_auth::Verb::ReadLog).await?;
        let (task, attempt) = self.log_node(run_id, node_id).await?;
        let details = details_of(&task);
        let attempts = Attempts::of(&details);
        let local_path = details
            .get("log")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .filter(|path| path.exists());
        let object_uri = details
            .get("log_uri")
            .and_then(Value::as_str)
            .map(str::to_string);
        let task_finished = task_ended(&task);
        let pod = match (details.get("pod_namespace"), details.get("pod_name")) {
            (Some(Value::String(namespace)), Some(Value::String(name)))
                if !task_finished && self.argo.is_some() =>
            {
                Some((namespace.clone(), name.clone()))
            }
            _ => None,
        };
        if local_path.is_none() {
            let deleted_at = self.store.run_artifacts_deleted_at(run_id).await?;
            if deleted_at > 0 {
                return Err(deleted_by_retention(
                    format!("the log of task {} of run {run_id}", task.id),
                    deleted_at,
                ));
            }
        }
        let no_log = local_path.is_none() && object_uri.is_none();
        if no_log && (task_finished || task.kind != TaskKind::Runtime) {
            return Err(Error::not_found(format!(
                "task {} of run {run_id} has no log",
                task.id
            )));
        }
        let Some(number) = attempt else {
            return Ok(TaskLog {
                local_path,
                object_uri,
                start: 0,
                end: None,
                finished: task_finished,
                pod,
            });
        };
        if !attempts.exists(number) {
            return Err(Error::not_found(format!(
                "task {} of run {run_id} has no attempt {number}",
                task.id
            )));
        }
        let (start, end) = attempts.log_range(number);
        let attempt_finished = task_finished || attempts.ended(number);
        Ok(TaskLog {
            local_path,
            object_uri,
            start,
            end,
            finished: attempt_finished,
            // A pod holds the attempt that runs now, not the earlier ones.
            pod: pod.filter(|_| !attempt_finished),
        })
    }

    /// The task of a log node and, for an attempt's node, the attempt's number.
    async fn log_node(&self, run_id: &str, node_id: &str) -> Result<(Task, Option<u32>)> {
        let not_found =
            || Error::not_found(format!("run {run_id} has no task or attempt {node_id}"));
        let (task, attempt) = match self.store.get_task(node_id).await {
            Ok(task) => (task, None),
            Err(kfpd_store::Error::NotFound(_)) => {
                let (task_id, number) = attempts::parse_node_id(node_id).ok_or_else(not_found)?;
                match self.store.get_task(task_id).await {
                    Ok(task) => (task, Some(number)),
                    Err(kfpd_store::Error::NotFound(_)) => return Err(not_found()),
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        if task.run_id != run_id {
            return Err(not_found());
        }
        Ok((task, attempt))
    }

    /// Reads a log object from the artifact store.
    pub async fn read_object(&self, uri: &str) -> Result<bytes::Bytes> {
        let artifacts = self.artifact_store()?;
        artifacts
            .read(uri, MAX_READ_BYTES)
            .await
            .map_err(|error| match error {
                // Not a server fault: the copy is there, only too big to send whole.
                kfpd_artifacts::Error::TooLarge { size, limit, .. } => Error::new(
                    Code::FailedPrecondition,
                    format!(
                        "the log copy {uri} is {size} bytes, more than the {limit} this endpoint sends; read it from the artifact store"
                    ),
                ),
                other => Error::internal(format!("cannot read {uri}: {other}")),
            })
    }

    fn artifact_store(&self) -> Result<&kfpd_artifacts::ArtifactStore> {
        self.artifacts
            .as_ref()
            .ok_or_else(|| Error::new(Code::Unavailable, "this server has no artifact store"))
    }

    /// `GET /runs/{run_id}/nodes/{node_id}/artifacts/{artifact_name}:read`: the
    /// content of output artifact `artifact_name` of task `node_id`.
    pub async fn read_artifact(
        &self,
        run_id: &str,
        node_id: &str,
        artifact_name: &str,
    ) -> Result<bytes::Bytes> {
        let run = self.run_for(run_id, kfpd_auth::Verb::ReadArtifact).await?;
        let artifacts = self.store.list_artifacts(run_id).await?;
        // The task's output link names it also when another run recorded it (an
        // importer that reused an artifact).
        let links = self.store.run_artifact_links(run_id).await?;
        let linked = links
            .iter()
            .find(|link| {
                link.direction == Direction::Output
                    && link.task_id == node_id
                    && link.key == artifact_name
            })
            .map(|link| link.artifact_id);
        let artifact = artifacts
            .iter()
            .find(|artifact| {
                Some(artifact.id) == linked
                    || (artifact.producer_task_id == node_id
                        && artifact.output_key == artifact_name)
            })
            .ok_or_else(|| {
                Error::not_found(format!(
                    "run {run_id} has no artifact {artifact_name:?} produced by node {node_id}"
                ))
            })?;
        let deleted = self.store.artifacts_deleted_at(&[artifact.id]).await?;
        if let Some(at) = deleted.get(&artifact.id) {
            return Err(deleted_by_retention(
                format!("artifact {} ({})", artifact.id, artifact.uri),
                *at,
            ));
        }
        let store = self.artifact_store()?;
        self.check_in_namespace(store, &run.namespace, &artifact.uri)?;
        if !store.handles(&artifact.uri) {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "artifact {} is stored outside the pipeline roots this server serves",
                    artifact.uri
                ),
            ));
        }
        match store.read(&artifact.uri, MAX_READ_BYTES).await {
            Ok(content) => Ok(content),
            Err(kfpd_artifacts::Error::IsDirectory { .. }) => {
                let mtime = u64::try_from(artifact.created_at).unwrap_or(0);
                archive::directory_archive(store, &artifact.uri, MAX_READ_BYTES, mtime).await
            }
            Err(error) => Err(Error::new(
                Code::FailedPrecondition,
                format!("cannot read artifact {}: {error}", artifact.uri),
            )),
        }
    }

    /// `GET /apis/v2beta1/artifacts?run_id=…`: every artifact of a run with lineage.
    pub async fn list_artifacts(&self, run_id: &str) -> Result<ListArtifactsResponse> {
        if run_id.is_empty() {
            return Err(Error::invalid("list artifacts: run_id is required"));
        }
        self.run_for(run_id, kfpd_auth::Verb::Get).await?;
        let artifacts = self.store.list_artifacts(run_id).await?;
        let links = self.store.run_artifact_links(run_id).await?;
        let names = self.task_names(run_id).await?;
        let ids: Vec<i64> = artifacts.iter().map(|artifact| artifact.id).collect();
        let deleted = self.store.artifacts_deleted_at(&ids).await?;
        let views: Vec<ArtifactView> = artifacts
            .iter()
            .map(|artifact| view(artifact, &links, &names, &deleted))
            .collect();
        Ok(ListArtifactsResponse {
            total_size: views.len(),
            artifacts: views,
        })
    }

    /// `GET /apis/v2beta1/artifacts/{artifact_id}`.
    pub async fn get_artifact(&self, artifact_id: &str) -> Result<ArtifactView> {
        let id: i64 = artifact_id
            .parse()
            .map_err(|_| Error::invalid(format!("artifact id {artifact_id:?} is not a number")))?;
        let artifact = self.store.get_artifact(id).await?;
        self.check_artifact_run(&artifact, artifact_id).await?;
        let links = self.store.artifact_links(id).await?;
        let names = self.task_names(&artifact.run_id).await?;
        let deleted = self.store.artifacts_deleted_at(&[id]).await?;
        Ok(view(&artifact, &links, &names, &deleted))
    }

    async fn task_names(&self, run_id: &str) -> Result<HashMap<String, String>> {
        Ok(self
            .store
            .list_tasks(run_id)
            .await?
            .into_iter()
            .map(|task| (task.id, task.display_name))
            .collect())
    }
}
