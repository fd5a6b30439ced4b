//! Server-sent event streams the web UI reads instead of polling: one run with its
//! nodes (the run page), and one page of ListRuns (the runs tables). Each reads the
//! rows again only when the store reports a committed write that concerns it (at
//! most once per interval, however many writes come), or after a long fallback
//! for writers in other processes; it sends only what changed, and ends once
//! everything it shows is final.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures::Stream;
use kfpd_api::v2beta1 as api;
use kfpd_ir::spec::PipelineSpec;
use kfpd_store::Change;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};

use super::extract::Query;
use super::openapi::{EventStream, Routes};
use crate::error::{Code, Result};
use crate::metrics::{StreamGuard, StreamKind};
use crate::service::{Api, Node, RunView};

pub fn routes(routes: Routes) -> Routes {
    routes
        .get("/apis/v2beta1/runs/{run_id}/events", run_events)
        .get("/apis/v2beta1/runs:watch", watch_runs)
}

/// The shortest time between two reads of a run's stream: a busy run's writes
/// within it are sent as one update. A read costs one run read and one task-list
/// read.
const RUN_INTERVAL: Duration = Duration::from_millis(500);

/// The shortest time between two reads of a runs table's stream.
const LIST_INTERVAL: Duration = Duration::from_secs(1);

/// How long a stream of something live waits without hearing of a change before
/// it reads anyway: the store reports only the writes of this process, and a
/// second server on the same database writes too.
const FALLBACK: Duration = Duration::from_secs(10);

/// Waits until a change for which `concerns` holds arrived (or changes were
/// missed), or `FALLBACK` passed; then drops what else is queued, since the read
/// that follows sees it.
async fn changed(receiver: &mut broadcast::Receiver<Change>, concerns: impl Fn(&Change) -> bool) {
    let fallback = tokio::time::sleep(FALLBACK);
    tokio::pin!(fallback);
    loop {
        tokio::select! {
            () = &mut fallback => break,
            received = receiver.recv() => match received {
                Ok(change) if concerns(&change) => break,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                // No store to hear from any more: only the fallback is left.
                Err(RecvError::Closed) => {
                    fallback.as_mut().await;
                    break;
                }
            },
        }
    }
    while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = receiver.try_recv() {}
}

type Events = EventStream;

fn sse<S>(stream: S) -> Events
where
    S: Stream<Item = std::result::Result<Event, Infallible>> + Send + 'static,
{
    EventStream(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

/// `GET /apis/v2beta1/runs/{run_id}/events`: `event: run` with `{"run", "nodes"}`
/// at once; then `event: update` with the run and only the nodes that are new or
/// changed (`removed` lists ids no longer there) whenever something changed. After
/// the run reaches a final state (or was deleted: `event: gone`) the stream ends.
async fn run_events(State(api): State<Api>, Path(run_id): Path<String>) -> Result<Events> {
    let spec = api.parsed_run_spec(&run_id).await;
    // Listening before the first read, so no write after it goes unheard.
    let changes = api.store().changes().subscribe();
    // A missing run answers 404 before the stream starts; what was read is the
    // stream's first event.
    let view = api.run_view(&run_id, spec.as_ref()).await?;
    let guard = api.metrics().open_stream(StreamKind::Run);
    let mut watch = RunWatch {
        api,
        changes,
        run_id,
        spec,
        run: String::new(),
        nodes: HashMap::new(),
        done: false,
        first_event: None,
        guard,
    };
    watch.first_event = watch.event_of(view);
    Ok(sse(futures::stream::unfold(
        watch,
        |mut watch| async move {
            let event = watch.next().await?;
            Some((Ok(event), watch))
        },
    )))
}

struct RunWatch {
    api: Api,
    changes: broadcast::Receiver<Change>,
    run_id: String,
    spec: Option<PipelineSpec>,
    /// The run as last sent.
    run: String,
    /// Each node as last sent, by task id.
    nodes: HashMap<String, String>,
    done: bool,
    first_event: Option<Event>,
    guard: StreamGuard,
}

/// An `update` event: the run, and the nodes that are new or changed.
#[derive(Serialize)]
struct RunUpdate<'a> {
    run: &'a api::Run,
    nodes: Vec<&'a Node>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed: Vec<String>,
}

impl RunWatch {
    async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.first_event.take() {
            return Some(event);
        }
        loop {
            if self.done {
                return None;
            }
            tokio::time::sleep(RUN_INTERVAL).await;
            let run_id = self.run_id.as_str();
            changed(&mut self.changes, |change| change.touches(run_id)).await;
            self.guard.count_read();
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
            if let Some(event) = self.event_of(view) {
                return Some(event);
            }
        }
    }

    /// The event for a view: everything the first time, then only what changed;
    /// None when nothing did.
    fn event_of(&mut self, view: RunView) -> Option<Event> {
        self.done = is_final(view.run.state);
        let first = self.run.is_empty();
        let run = serde_json::to_string(&view.run).ok()?;
        let mut changed = Vec::new();
        let mut seen = HashSet::with_capacity(view.nodes.len());
        for node in &view.nodes {
            seen.insert(node.task_id.as_str());
            let Ok(text) = serde_json::to_string(node) else {
                continue;
            };
            if self.nodes.get(&node.task_id) != Some(&text) {
                self.nodes.insert(node.task_id.clone(), text);
                changed.push(node);
            }
        }
        let removed: Vec<String> = self
            .nodes
            .keys()
            .filter(|id| !seen.contains(id.as_str()))
            .cloned()
            .collect();
        for id in &removed {
            self.nodes.remove(id);
        }
        if first {
            self.run = run;
            let payload = serde_json::to_string(&view).ok()?;
            return Some(Event::default().event("run").data(payload));
        }
        if run == self.run && changed.is_empty() && removed.is_empty() {
            return None;
        }
        self.run = run;
        let update = RunUpdate {
            run: &view.run,
            nodes: changed,
            removed,
        };
        let payload = serde_json::to_string(&update).ok()?;
        Some(Event::default().event("update").data(payload))
    }
}

/// `GET /apis/v2beta1/runs:watch` with ListRuns' query parameters: `event: runs`
/// with the ListRuns answer at once, and again whenever that page changes while a
/// run on it is live. Once no run on the page is live the stream ends, so a page
/// of finished runs holds no connection. A bad filter or an unknown experiment is
/// answered as ListRuns answers it, before the stream starts.
async fn watch_runs(
    State(api): State<Api>,
    Query(request): Query<api::ListRunsRequest>,
) -> Result<Events> {
    let changes = api.store().changes().subscribe();
    let page = api.list_runs(request.clone()).await?;
    let guard = api.metrics().open_stream(StreamKind::Runs);
    let mut watch = ListWatch {
        api,
        changes,
        request,
        last: String::new(),
        done: false,
        first_event: None,
        guard,
    };
    watch.first_event = watch.event_of(&page);
    Ok(sse(futures::stream::unfold(
        watch,
        |mut watch| async move {
            let event = watch.next().await?;
            Some((Ok(event), watch))
        },
    )))
}

struct ListWatch {
    api: Api,
    changes: broadcast::Receiver<Change>,
    request: api::ListRunsRequest,
    /// The page as last sent.
    last: String,
    done: bool,
    first_event: Option<Event>,
    guard: StreamGuard,
}

impl ListWatch {
    async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.first_event.take() {
            return Some(event);
        }
        loop {
            if self.done {
                return None;
            }
            tokio::time::sleep(LIST_INTERVAL).await;
            // Any run's write may move a run onto, off or within the page.
            changed(&mut self.changes, |_| true).await;
            self.guard.count_read();
            let page = match self.api.list_runs(self.request.clone()).await {
                Ok(page) => page,
                Err(error) if error.code == Code::NotFound => {
                    self.done = true;
                    return Some(Event::default().event("gone").data(error.to_string()));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the runs for their event stream");
                    continue;
                }
            };
            if let Some(event) = self.event_of(&page) {
                return Some(event);
            }
        }
    }

    fn event_of(&mut self, page: &api::ListRunsResponse) -> Option<Event> {
        self.done = !page.runs.iter().any(|run| !is_final(run.state));
        let payload = serde_json::to_string(page).ok()?;
        if payload == self.last {
            return None;
        }
        self.last = payload;
        Some(Event::default().event("runs").data(self.last.clone()))
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
