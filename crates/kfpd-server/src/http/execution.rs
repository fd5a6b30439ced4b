//! REST routes over what the engine recorded: task logs (streamed while the task
//! runs), the artifact read endpoint, and the artifact API.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::extract::{id_and_verb, Params};
use crate::error::Result;
use crate::service::{Api, ArtifactView, ListArtifactsResponse};

pub fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log",
            get(task_log),
        )
        .route(
            "/apis/v2beta1/runs/{run_id}/nodes/{node_id}/artifacts/{artifact}",
            get(read_artifact),
        )
        .route(
            "/apis/v1beta1/runs/{run_id}/nodes/{node_id}/artifacts/{artifact}",
            get(read_artifact),
        )
        .route("/apis/v2beta1/artifacts", get(list_artifacts))
        .route("/apis/v2beta1/artifacts/{artifact_id}", get(get_artifact))
}

/// `?follow=true` keeps the response open and sends new lines as the task writes
/// them, until the task has finished.
async fn task_log(
    State(api): State<Api>,
    Path((run_id, node_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let params = Params::parse(query.as_deref());
    let follow = params.bool("follow")?;
    let log = api.task_log(&run_id, &node_id).await?;
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let Some(path) = log.local_path else {
        let uri = log.object_uri.unwrap_or_default();
        let bytes = api.read_object(&uri).await?;
        return Ok((text_plain, bytes).into_response());
    };
    if !follow || log.finished {
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|error| crate::error::Error::internal(format!("cannot read log: {error}")))?;
        return Ok((text_plain, bytes).into_response());
    }
    let stream = follow_file(api, node_id, path);
    Ok((text_plain, Body::from_stream(stream)).into_response())
}

/// Yields the file's content, then whatever is appended, until the task ends.
fn follow_file(
    api: Api,
    node_id: String,
    path: PathBuf,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures::stream::unfold((0_u64, false), move |(offset, done)| {
        let api = api.clone();
        let node_id = node_id.clone();
        let path = path.clone();
        async move {
            if done {
                return None;
            }
            // Bounded: a task that never finishes is still followed at most a day.
            for _ in 0..(24 * 3600 * 5) {
                let chunk = read_from(&path, offset).await;
                match chunk {
                    Ok(bytes) if !bytes.is_empty() => {
                        let next = offset + bytes.len() as u64;
                        return Some((Ok(bytes), (next, false)));
                    }
                    Ok(_) => {}
                    Err(error) => return Some((Err(error), (offset, true))),
                }
                let finished = api.task_finished(&node_id).await.unwrap_or(true);
                if finished {
                    let rest = read_from(&path, offset).await.unwrap_or_default();
                    if rest.is_empty() {
                        return None;
                    }
                    let next = offset + rest.len() as u64;
                    return Some((Ok(rest), (next, true)));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None
        }
    })
}

async fn read_from(path: &PathBuf, offset: u64) -> std::io::Result<bytes::Bytes> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buffer = vec![0u8; 64 * 1024];
    let read = file.read(&mut buffer).await?;
    buffer.truncate(read);
    Ok(bytes::Bytes::from(buffer))
}

/// `GET …/artifacts/{name}:read` → `{"data": "<base64>"}`, as upstream.
async fn read_artifact(
    State(api): State<Api>,
    Path((run_id, node_id, segment)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>> {
    let (name, _) = id_and_verb(&segment, &["read"])?;
    let bytes = api.read_artifact(&run_id, &node_id, name).await?;
    let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
    Ok(Json(json!({ "data": data })))
}

async fn list_artifacts(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
) -> Result<Json<ListArtifactsResponse>> {
    let params = Params::parse(query.as_deref());
    Ok(Json(api.list_artifacts(&params.text("run_id")).await?))
}

async fn get_artifact(
    State(api): State<Api>,
    Path(artifact_id): Path<String>,
) -> Result<Json<ArtifactView>> {
    Ok(Json(api.get_artifact(&artifact_id).await?))
}
