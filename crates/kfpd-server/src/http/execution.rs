//! REST routes over what the engine recorded: task logs (streamed while the task
//! runs), the artifact read endpoint, and the artifact API.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::extract::{id_and_verb, named_fields, JsonBody, Query, QueryField, QueryShape};
use super::openapi::{local, Components, Routes, Schema, Text};
use crate::error::{Error, Result};
use crate::service::{Api, ArtifactView, ListArtifactsResponse, TaskLog};

pub fn routes(routes: Routes) -> Routes {
    routes
        .get("/apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log", task_log)
        .get_verbs(
            "/apis/v2beta1/runs/{run_id}/nodes/{node_id}/artifacts/{artifact}",
            READ,
            read_artifact,
        )
        .get_verbs(
            "/apis/v1beta1/runs/{run_id}/nodes/{node_id}/artifacts/{artifact}",
            READ,
            read_artifact,
        )
        .post("/apis/v2beta1/runs/{run_id}/drive", drive)
        .get("/apis/v2beta1/artifacts", list_artifacts)
        .get("/apis/v2beta1/artifacts/{artifact_id}", get_artifact)
}

/// The one custom method on an artifact.
const READ: &[&str] = &["read"];

/// `?follow=true` on a task's log.
struct LogQuery {
    follow: bool,
}

impl QueryShape for LogQuery {
    fn fields() -> Vec<QueryField> {
        named_fields(&[], &["follow"])
    }

    fn decode(object: Map<String, Value>) -> Result<Self> {
        let follow = object.get("follow").and_then(Value::as_bool);
        Ok(LogQuery {
            follow: follow.unwrap_or_default(),
        })
    }
}

/// `?run_id=` on the artifact list.
struct ArtifactsQuery {
    run_id: String,
}

impl QueryShape for ArtifactsQuery {
    fn fields() -> Vec<QueryField> {
        named_fields(&["run_id"], &[])
    }

    fn decode(object: Map<String, Value>) -> Result<Self> {
        let run_id = object.get("run_id").and_then(Value::as_str);
        Ok(ArtifactsQuery {
            run_id: run_id.unwrap_or_default().to_string(),
        })
    }
}

/// A task's log, or one attempt's part of it (node `<task_id>-attempt-<n>`).
/// `?follow=true` keeps the response open and sends what the node writes, until it
/// has ended; a node whose process has not started yet is waited for.
async fn task_log(
    State(api): State<Api>,
    Path((run_id, node_id)): Path<(String, String)>,
    Query(LogQuery { follow }): Query<LogQuery>,
) -> Result<Text> {
    let log = api.task_log(&run_id, &node_id).await?;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if let Some(stream) = pod_log(&api, &log, follow).await {
        return Ok(Text(
            (text_plain, Body::from_stream(stream)).into_response(),
        ));
    }
    if log.local_path.is_none() {
        if let Some(uri) = &log.object_uri {
            let whole = api.read_object(uri).await?;
            return Ok(Text((text_plain, log.slice(whole)).into_response()));
        }
    }
    if !follow || log.finished {
        let bytes = match &log.local_path {
            Some(path) => read_range(path, log.start, log.end)
                .await
                .map_err(|error| {
                    Error::internal(format!("cannot read the log of node {node_id}: {error}"))
                })?,
            // Not started yet: nothing written so far.
            None => bytes::Bytes::new(),
        };
        return Ok(Text((text_plain, bytes).into_response()));
    }
    let stream = follow_log(api, run_id, node_id, log);
    Ok(Text(
        (text_plain, Body::from_stream(stream)).into_response(),
    ))
}

/// A running task's log from its pod (Kubernetes' log API, `follow` passed on).
/// None when there is no pod to ask or it cannot be read (gone already): the
/// stored copy is served instead.
async fn pod_log(
    api: &Api,
    log: &TaskLog,
    follow: bool,
) -> Option<impl futures::Stream<Item = std::io::Result<bytes::Bytes>>> {
    let (namespace, pod) = log.pod.as_ref()?;
    let argo = api.argo()?;
    let reader = match argo.cluster.pod_log(namespace, pod, "main", follow).await {
        Ok(reader) => reader,
        Err(error) => {
            tracing::debug!(%error, pod = %pod, "pod log not readable, serving the stored log");
            return None;
        }
    };
    // Fused: a body layer (compression) may poll once more after the end.
    Some(futures::StreamExt::fuse(futures::stream::unfold(
        Some(reader),
        |reader| async move {
            let mut reader = reader?;
            let mut buffer = vec![0u8; 16 * 1024];
            match futures::AsyncReadExt::read(&mut reader, &mut buffer).await {
                Ok(0) => None,
                Ok(read) => {
                    buffer.truncate(read);
                    Some((Ok(bytes::Bytes::from(buffer)), Some(reader)))
                }
                Err(error) => Some((Err(error), None)),
            }
        },
    )))
}

/// How far a follower has come.
struct Follower {
    api: Api,
    run_id: String,
    node_id: String,
    log: TaskLog,
    offset: u64,
    done: bool,
}

/// Longest a follower waits for a node that does not end: a day of 200 ms polls.
const MAX_POLLS: u32 = 24 * 3600 * 5;
const POLL: Duration = Duration::from_millis(200);

/// Yields the node's part of the log, then whatever is appended to it, until the
/// node has ended. Until the log file exists there is nothing to read; every idle
/// poll asks the store again where the log is and whether the node has ended.
fn follow_log(
    api: Api,
    run_id: String,
    node_id: String,
    log: TaskLog,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    let offset = log.start;
    let follower = Follower {
        api,
        run_id,
        node_id,
        log,
        offset,
        done: false,
    };
    // Fused: a body layer (compression) may poll once more after the end.
    let stream = futures::stream::unfold(follower, |mut follower| async move {
        if follower.done {
            return None;
        }
        for _ in 0..MAX_POLLS {
            match follower.read_next().await {
                Ok(bytes) if !bytes.is_empty() => return Some((Ok(bytes), follower)),
                Ok(_) => {}
                Err(error) => {
                    follower.done = true;
                    return Some((Err(error), follower));
                }
            }
            if follower.refresh().await {
                // Ended: what is left up to the node's end is the last chunk.
                follower.done = true;
                let rest = follower.read_rest().await;
                return (!rest.is_empty()).then_some((Ok(rest), follower));
            }
            tokio::time::sleep(POLL).await;
        }
        None
    });
    futures::StreamExt::fuse(stream)
}

impl Follower {
    async fn read_next(&mut self) -> std::io::Result<bytes::Bytes> {
        let Some(path) = &self.log.local_path else {
            return Ok(bytes::Bytes::new());
        };
        let end = self
            .log
            .end
            .map_or(self.offset + CHUNK, |end| end.min(self.offset + CHUNK));
        let bytes = read_range(path, self.offset, Some(end)).await?;
        self.offset += bytes.len() as u64;
        Ok(bytes)
    }

    /// Asks where the log is now; true when the node has ended (or is gone).
    async fn refresh(&mut self) -> bool {
        let Ok(now) = self.api.task_log(&self.run_id, &self.node_id).await else {
            return true;
        };
        if self.log.local_path.is_none() && now.local_path.is_some() {
            self.offset = self.offset.max(now.start);
        }
        let finished = now.finished;
        self.log = now;
        finished
    }

    async fn read_rest(&mut self) -> bytes::Bytes {
        if self.log.local_path.is_none() {
            // The log moved to the artifact store when the task ended.
            let Some(uri) = self.log.object_uri.clone() else {
                return bytes::Bytes::new();
            };
            let Ok(whole) = self.api.read_object(&uri).await else {
                return bytes::Bytes::new();
            };
            self.log.start = self.log.start.max(self.offset);
            return self.log.slice(whole);
        }
        let mut rest = bytes::BytesMut::new();
        loop {
            match self.read_next().await {
                Ok(bytes) if !bytes.is_empty() => rest.extend_from_slice(&bytes),
                _ => break,
            }
        }
        rest.freeze()
    }
}

/// Bytes a follower reads at a time.
const CHUNK: u64 = 64 * 1024;

/// The bytes of the file from `start` to `end` (None: its end).
async fn read_range(path: &PathBuf, start: u64, end: Option<u64>) -> std::io::Result<bytes::Bytes> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(bytes::Bytes::new())
        }
        Err(error) => return Err(error),
    };
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let mut buffer = Vec::new();
    match end {
        Some(end) => {
            file.take(end.saturating_sub(start))
                .read_to_end(&mut buffer)
                .await?;
        }
        None => {
            file.read_to_end(&mut buffer).await?;
        }
    }
    Ok(bytes::Bytes::from(buffer))
}

/// `GET …/artifacts/{name}:read` → `{"data": "<base64>"}`, as upstream; a directory
/// artifact's data is a gzip'd tar of its files.
async fn read_artifact(
    State(api): State<Api>,
    Path((run_id, node_id, segment)): Path<(String, String, String)>,
) -> Result<Json<ArtifactData>> {
    let (name, _) = id_and_verb(&segment, READ)?;
    let bytes = api.read_artifact(&run_id, &node_id, name).await?;
    let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
    Ok(Json(ArtifactData(json!({ "data": data }))))
}

/// `{"data": "<base64>"}`.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct ArtifactData(Value);

impl Schema for ArtifactData {
    fn schema(components: &mut Components) -> Value {
        components.named("kfpd.ReadArtifactResponse", |_| {
            json!({
                "type": "object",
                "properties": { "data": { "type": "string", "format": "byte" } },
                "required": ["data"],
                "additionalProperties": false,
            })
        })
    }
}

async fn list_artifacts(
    State(api): State<Api>,
    Query(ArtifactsQuery { run_id }): Query<ArtifactsQuery>,
) -> Result<Json<ListArtifactsResponse>> {
    Ok(Json(api.list_artifacts(&run_id).await?))
}

async fn get_artifact(
    State(api): State<Api>,
    Path(artifact_id): Path<String>,
) -> Result<Json<ArtifactView>> {
    Ok(Json(api.get_artifact(&artifact_id).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DriveRequest {
    #[serde(default)]
    task_path: String,
    /// The Workflow's name: the run's `{{$.pipeline_job_resource_name}}`.
    #[serde(default)]
    workflow: String,
    /// Whether the task's pod template takes a `pod_spec_patch`.
    #[serde(default)]
    pod_spec_patch: bool,
}

impl Schema for DriveRequest {
    fn schema(components: &mut Components) -> Value {
        local::drive_request_schema(components)
    }
}

/// The driver's decision for one task.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct Decision(Value);

impl Schema for Decision {
    fn schema(components: &mut Components) -> Value {
        local::drive_response_schema(components)
    }
}

/// The driver request of the Argo pod interface: decides the task at `task_path`.
async fn drive(
    State(api): State<Api>,
    Path(run_id): Path<String>,
    JsonBody { value: request, .. }: JsonBody<DriveRequest>,
) -> Result<Json<Decision>> {
    let decision = api
        .drive(
            &run_id,
            &request.task_path,
            &request.workflow,
            request.pod_spec_patch,
        )
        .await?;
    Ok(Json(Decision(decision)))
}
