//! REST routes the web UI's run page uses: a run's nodes (tasks with kinds and
//! edges), one node's record, and the run's changes as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use kfpd_api::v2beta1 as api;
use kfpd_ir::spec::PipelineSpec;

use crate::error::{Code, Result};
use crate::service::{Api, ListNodesResponse, NodeDetail, RunView};

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/apis/v2beta1/runs/{run_id}/nodes", get(list_nodes))
        .route("/apis/v2beta1/runs/{run_id}/nodes/{node_id}", get(get_node))
        .route("/apis/v2beta1/runs/{run_id}/events", get(run_events))
}

async fn list_nodes(
    State(api): State<Api>,
    Path(run_id): Path<String>,
) -> Result<Json<ListNodesResponse>> {
    Ok(Json(api.list_nodes(&run_id).await?))
}

async fn get_node(
    State(api): State<Api>,
    Path((run_id, node_id)): Path<(String, String)>,
) -> Result<Json<NodeDetail>> {
    Ok(Json(api.get_node(&run_id, &node_id).await?))
}

/// How often an open stream looks at the run's rows while the run is live. The
/// browser asks nothing; one stream per open page costs one run and one task-list
/// read per interval, and nothing once the run has ended.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// `GET /apis/v2beta1/runs/{run_id}/events`: `event: run` with `{"run", "nodes"}`
/// at once and again whenever either changes; after the run reaches a final state
/// (or was not found: `event: gone`) the stream ends.
async fn run_events(
    State(api): State<Api>,
    Path(run_id): Path<String>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let spec = api.parsed_run_spec(&run_id).await;
    // A missing run answers 404 before the stream starts; what was read is the
    // stream's first event.
    let view = api.run_view(&run_id, spec.as_ref()).await?;
    let mut watch = Watch {
        api,
        run_id,
        spec,
        last: String::new(),
        first: true,
        done: false,
        first_event: None,
    };
    watch.first_event = watch.event_of(&view);
    let stream = futures::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok(event), watch))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Watch {
    api: Api,
    run_id: String,
    spec: Option<PipelineSpec>,
    /// The last payload sent, to send only changes.
    last: String,
    first: bool,
    done: bool,
    first_event: Option<Event>,
}

impl Watch {
    async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.first_event.take() {
            return Some(event);
        }
        if self.done {
            return None;
        }
        loop {
            if !self.first {
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
            self.first = false;
            let view = match self.api.run_view(&self.run_id, self.spec.as_ref()).await {
                Ok(view) => view,
                Err(error) if error.code == Code::NotFound => {
                    self.done = true;
                    return Some(Event::default().event("gone").data(error.to_string()));
                }
                Err(error) => {
                    tracing::warn!(run_id = %self.run_id, %error, "cannot read the run for its event stream");
                    continue;
                }
            };
            if let Some(event) = self.event_of(&view) {
                return Some(event);
            }
        }
    }

    /// The event for a view, None when nothing changed since the last one sent.
    fn event_of(&mut self, view: &RunView) -> Option<Event> {
        let finished = is_final(view.run.state);
        let payload = serde_json::to_string(view).ok()?;
        if payload == self.last {
            return None;
        }
        self.done = finished;
        self.last = payload;
        Some(Event::default().event("run").data(self.last.clone()))
    }
}

fn is_final(state: i32) -> bool {
    use api::RuntimeState;
    [
        RuntimeState::Succeeded,
        RuntimeState::Skipped,
        RuntimeState::Failed,
        RuntimeState::Canceled,
    ]
    .iter()
    .any(|final_state| *final_state as i32 == state)
}
