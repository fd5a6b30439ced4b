//! The persistence agent: watches the Workflows kfpd labelled (selector
//! `pipeline/runid`, never every Workflow of the namespace) and reports each
//! change to the API server, which records run and task states.
//!
//! - Lists in pages (`limit`), handling each page as it arrives, so 20,000
//!   existing Workflows cost a page of memory, not 20,000 objects.
//! - Watches from the list's resourceVersion; a watch the API server closes is
//!   reopened from the last version seen (bookmarks included); 410 Gone, or an
//!   expired continue token, starts a new list.
//! - Workflows labelled `pipeline/persistedFinalState=true` are not reported again;
//!   they are deleted once `ttl` has passed since they finished.
//! - After each complete list, runs the server still counts as unfinished whose
//!   Workflow is in no page (deleted while nobody watched) are reported as gone.
//!   A Workflow deleted while watched is reported from its Deleted event.
//! - A Workflow whose run the server does not know (deleted, perhaps while the
//!   agent was down) is deleted once it is older than `grace`, and logged.
//! - One namespace, a list of them (one list each, their watches merged), or
//!   every namespace (one cluster-scoped list and watch), always by label.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::client::{Cluster, Error, Event, RUN_ID_LABEL};
use crate::status;
use crate::token::TokenFile;

/// Why a report was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The server refused it for good (a Workflow it cannot read): not retried.
    #[error("refused: {0}")]
    Permanent(String),
    /// The server has no run with the Workflow's run id: the Workflow is an orphan.
    #[error("unknown run: {0}")]
    UnknownRun(String),
    /// Worth retrying (server unavailable, database busy).
    #[error("{0}")]
    Transient(String),
}

/// Where the agent sends what it sees: the API server over HTTP (`kfpd agent`),
/// or the service layer itself (the loop inside `kfpd serve`).
#[async_trait::async_trait]
pub trait Reporter: Send + Sync {
    /// Records the Workflow, given as JSON text (ReportWorkflow's `workflow`).
    async fn report(&self, workflow: &str) -> Result<(), ReportError>;
    /// Runs that have not ended (PENDING, RUNNING, CANCELING) whose Workflow
    /// goes to `namespace` (`None`: every run): id and creation time (Unix seconds).
    async fn unfinished_runs(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<(String, i64)>, ReportError>;
}

/// Which Workflows the agent watches (always by the run id label).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    /// These namespaces, each listed and watched on its own (namespaced RBAC).
    Namespaces(Vec<String>),
    /// Every namespace: one cluster-scoped list and watch (a ClusterRole).
    All,
}

impl Watch {
    /// Reads a setting: empty means `default` alone, `*` every namespace, else
    /// a comma-separated list of namespace names.
    pub fn parse(text: &str, default: &str) -> Result<Watch, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Watch::All);
        }
        if text.is_empty() {
            return Ok(Watch::Namespaces(vec![default.to_string()]));
        }
        let mut names: Vec<String> = Vec::new();
        for name in text.split(',').map(str::trim) {
            let valid = !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            if !valid {
                return Err(format!(
                    "{name:?} is not a namespace name (lowercase letters, digits and '-', at most 63); use * for every namespace"
                ));
            }
            if !names.iter().any(|known| known == name) {
                names.push(name.to_string());
            }
        }
        Ok(Watch::Namespaces(names))
    }

    /// The scopes listed and watched: a namespace each, or `None` for all.
    fn scopes(&self) -> Vec<Option<String>> {
        match self {
            Watch::All => vec![None],
            Watch::Namespaces(names) => names.iter().cloned().map(Some).collect(),
        }
    }
}

impl std::fmt::Display for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watch::All => f.write_str("*"),
            Watch::Namespaces(names) => f.write_str(&names.join(",")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub watch: Watch,
    /// How long a finished, recorded Workflow stays in the cluster.
    pub ttl: Duration,
    pub page_size: u32,
    /// How long one watch request stays open before it is reopened.
    pub watch_timeout: Duration,
    /// A run younger than this may still be getting its Workflow: not reconciled.
    pub grace: Duration,
}

impl Options {
    pub fn new(namespace: &str) -> Options {
        Options {
            watch: Watch::Namespaces(vec![namespace.to_string()]),
            ttl: Duration::from_secs(24 * 3600),
            page_size: 500,
            watch_timeout: Duration::from_secs(290),
            grace: Duration::from_secs(120),
        }
    }
}

/// Counters, for logs and benchmarks.
#[derive(Default, Debug)]
pub struct Stats {
    pub listed: AtomicU64,
    pub reported: AtomicU64,
    pub refused: AtomicU64,
    pub deleted: AtomicU64,
    pub relists: AtomicU64,
    pub reconciled: AtomicU64,
    /// Workflows deleted because their run does not exist.
    pub orphans: AtomicU64,
}

/// What became of one report.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Recorded,
    Refused,
    UnknownRun,
    /// Still failing after the retries: the next list reports it again.
    Failed,
}

/// A Workflow to delete at a time: (deadline, namespace, name).
type Expiry = (i64, String, String);

pub struct Agent {
    cluster: Cluster,
    reporter: Arc<dyn Reporter>,
    options: Options,
    stats: Arc<Stats>,
    /// Recorded Workflows waiting for their TTL, orphans for their grace.
    expiries: tokio::sync::Mutex<BTreeSet<Expiry>>,
}

impl Agent {
    pub fn new(cluster: Cluster, reporter: Arc<dyn Reporter>, options: Options) -> Agent {
        Agent {
            cluster,
            reporter,
            options,
            stats: Arc::default(),
            expiries: tokio::sync::Mutex::new(BTreeSet::new()),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Watches until `shutdown` completes; errors are logged and retried with
    /// backoff, never fatal.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(namespaces = %self.options.watch, "persistence agent watching workflows");
        tokio::select! {
            () = shutdown => {}
            () = self.run_forever() => {}
        }
    }

    async fn run_forever(&self) {
        let mut delay = Duration::from_millis(250);
        loop {
            match self.list_and_watch().await {
                Ok(()) => delay = Duration::from_millis(250),
                Err(error) => {
                    tracing::warn!(
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "persistence agent: kubernetes call failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
            self.stats.relists.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One list of every scope, then their watches merged until the API server
    /// says a version is gone.
    async fn list_and_watch(&self) -> Result<(), Error> {
        let scopes = self.options.watch.scopes();
        let list_started = now();
        let mut seen = HashSet::new();
        let mut versions = Vec::with_capacity(scopes.len());
        for scope in &scopes {
            versions.push(self.list(scope.as_deref(), &mut seen).await?);
        }
        tracing::info!(workflows = seen.len(), "persistence agent listed workflows");
        self.reconcile(&scopes, &seen, list_started).await;
        drop(seen);
        // Often enough for both what waits for its TTL and orphans for their grace.
        let mut sweep =
            tokio::time::interval(sweep_period(self.options.ttl.min(self.options.grace)));
        let mut watches = SelectAll::new();
        for (index, scope) in scopes.iter().enumerate() {
            watches.push(
                self.open_watch(index, scope.as_deref(), &versions[index])
                    .await?,
            );
        }
        loop {
            let item = tokio::select! {
                item = watches.next() => item,
                _ = sweep.tick() => {
                    if self.collect_garbage().await == GC_BATCH {
                        sweep.reset_immediately();
                    }
                    continue;
                }
            };
            let Some((index, event)) = item else {
                return Ok(());
            };
            let Some(event) = event else {
                // The API server closed this watch: reopen it where it was.
                let scope = scopes[index].as_deref();
                watches.push(self.open_watch(index, scope, &versions[index]).await?);
                continue;
            };
            match event? {
                Event::Applied(object) => {
                    if let Some(version) = object.metadata.resource_version.clone() {
                        versions[index] = version;
                    }
                    self.applied(object).await;
                }
                Event::Deleted(object) => {
                    if let Some(version) = object.metadata.resource_version.clone() {
                        versions[index] = version;
                    }
                    self.deleted(object).await;
                }
                Event::Bookmark(bookmark) => versions[index] = bookmark,
                Event::Error { code: 410, message } => {
                    tracing::info!(%message, "persistence agent: watch expired, listing again");
                    return Ok(());
                }
                Event::Error { code, message } => {
                    return Err(Error::Refused {
                        action: "watch of Workflows".into(),
                        code,
                        reason: String::new(),
                        message,
                    })
                }
            }
        }
    }

    /// Lists one scope page by page, handling each page as it comes; returns
    /// the version its watch starts from.
    async fn list(
        &self,
        namespace: Option<&str>,
        seen: &mut HashSet<String>,
    ) -> Result<String, Error> {
        let mut token = String::new();
        loop {
            let page = self
                .cluster
                .list_page(namespace, RUN_ID_LABEL, self.options.page_size, &token)
                .await?;
            self.stats
                .listed
                .fetch_add(page.items.len() as u64, Ordering::Relaxed);
            for object in page.items {
                if let Some(run_id) = self.applied(object).await {
                    seen.insert(run_id);
                }
            }
            if page.continue_token.is_empty() {
                return Ok(page.resource_version);
            }
            token = page.continue_token;
        }
    }

    /// The watch of one scope, its events tagged with the scope's index and a
    /// `None` when the API server closes it.
    async fn open_watch(
        &self,
        index: usize,
        namespace: Option<&str>,
        version: &str,
    ) -> Result<TaggedEvents, Error> {
        let events = self
            .cluster
            .watch(
                namespace,
                RUN_ID_LABEL,
                version,
                self.options.watch_timeout.as_secs().max(1) as u32,
            )
            .await?;
        Ok(events
            .map(move |event| (index, Some(event)))
            .chain(futures::stream::once(async move { (index, None) }))
            .boxed())
    }

    /// A Workflow as listed or changed; returns its run id.
    async fn applied(&self, object: kube::api::DynamicObject) -> Option<String> {
        let value = match serde_json::to_value(&object) {
            Ok(value) => value,
            Err(error) => {
                tracing::warn!(%error, "persistence agent: cannot encode a workflow");
                return None;
            }
        };
        let workflow = match status::parse(&value) {
            Ok(workflow) => workflow,
            Err(error) => {
                tracing::warn!(%error, name = ?object.metadata.name, "persistence agent: workflow skipped");
                return None;
            }
        };
        if workflow.persisted {
            let finished = workflow.finished_at.unwrap_or_else(now);
            let deadline = finished + self.options.ttl.as_secs() as i64;
            // Deleted by the sweep of the watch loop, not here: a start with
            // thousands of old Workflows lists them all before deleting any.
            self.expiries.lock().await.insert((
                deadline,
                workflow.namespace.clone(),
                workflow.name.clone(),
            ));
            return Some(workflow.run_id);
        }
        if self.report(&value).await == Outcome::UnknownRun && !workflow.deleting {
            self.orphaned(&workflow, &value).await;
        }
        Some(workflow.run_id)
    }

    /// A Workflow whose run the server does not know: deleted once it is older
    /// than the grace (until then its run may be on its way from a restored or
    /// lagging database), by the sweep if it is younger.
    async fn orphaned(&self, workflow: &status::Workflow, value: &Value) {
        let created = value["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.timestamp())
            .unwrap_or(0);
        let due = created + self.options.grace.as_secs() as i64;
        if due > now() {
            tracing::info!(
                run_id = %workflow.run_id,
                namespace = %workflow.namespace,
                name = %workflow.name,
                "persistence agent: workflow of an unknown run, deleted once its grace has passed"
            );
            self.expiries.lock().await.insert((
                due,
                workflow.namespace.clone(),
                workflow.name.clone(),
            ));
            return;
        }
        match self
            .cluster
            .delete(&workflow.namespace, &workflow.name)
            .await
        {
            Ok(()) => {
                self.stats.orphans.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    run_id = %workflow.run_id,
                    namespace = %workflow.namespace,
                    name = %workflow.name,
                    "persistence agent: deleted the workflow of a run that does not exist"
                );
            }
            Err(error) => {
                tracing::warn!(%error, name = %workflow.name, "persistence agent: cannot delete the workflow of an unknown run");
            }
        }
    }

    /// A Workflow deleted: one not recorded as finished is reported as going away.
    async fn deleted(&self, object: kube::api::DynamicObject) {
        let Ok(mut value) = serde_json::to_value(&object) else {
            return;
        };
        let Ok(workflow) = status::parse(&value) else {
            return;
        };
        if workflow.persisted {
            return;
        }
        if value["metadata"]["deletionTimestamp"].is_null() {
            value["metadata"]["deletionTimestamp"] = json!(rfc3339_now());
        }
        self.report(&value).await;
    }

    /// Reports with a few retries; after them the next list reports it again.
    async fn report(&self, workflow: &Value) -> Outcome {
        let text = workflow.to_string();
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            match self.reporter.report(&text).await {
                Ok(()) => {
                    self.stats.reported.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Recorded;
                }
                Err(ReportError::UnknownRun(message)) => {
                    tracing::debug!(%message, name = %workflow["metadata"]["name"], "persistence agent: run unknown");
                    return Outcome::UnknownRun;
                }
                Err(ReportError::Permanent(message)) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%message, name = %workflow["metadata"]["name"], "persistence agent: report refused");
                    return Outcome::Refused;
                }
                Err(ReportError::Transient(message)) => {
                    tracing::warn!(%message, attempt, name = %workflow["metadata"]["name"], "persistence agent: report failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        Outcome::Failed
    }

    /// Unfinished runs old enough to have a Workflow but without one in any
    /// watched scope are reported as gone, so the server can end them. Runs
    /// whose Workflows go to namespaces not watched are not asked for.
    async fn reconcile(
        &self,
        scopes: &[Option<String>],
        seen: &HashSet<String>,
        list_started: i64,
    ) {
        let mut runs: HashMap<String, (i64, String)> = HashMap::new();
        for scope in scopes {
            match self.reporter.unfinished_runs(scope.as_deref()).await {
                Ok(found) => {
                    for (run_id, created_at) in found {
                        let namespace = scope.clone().unwrap_or_default();
                        runs.entry(run_id).or_insert((created_at, namespace));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, namespace = ?scope, "persistence agent: cannot list unfinished runs");
                    return;
                }
            }
        }
        let old_enough = list_started - self.options.grace.as_secs() as i64;
        for (run_id, (created_at, namespace)) in runs {
            if seen.contains(&run_id) || created_at > old_enough {
                continue;
            }
            tracing::info!(run_id = %run_id, "persistence agent: run has no workflow");
            let gone = json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "metadata": {
                    "namespace": namespace,
                    "labels": {RUN_ID_LABEL: run_id},
                    "deletionTimestamp": rfc3339_now(),
                },
            });
            self.report(&gone).await;
            self.stats.reconciled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Deletes recorded Workflows whose TTL has passed (and orphans whose grace
    /// has), a batch at a time so events are not held up behind thousands of
    /// deletions.
    async fn collect_garbage(&self) -> usize {
        let now = now();
        let due: Vec<Expiry> = {
            let expiries = self.expiries.lock().await;
            expiries
                .iter()
                .take_while(|(deadline, _, _)| *deadline <= now)
                .take(GC_BATCH)
                .cloned()
                .collect()
        };
        let count = due.len();
        for entry in due {
            match self.cluster.delete(&entry.1, &entry.2).await {
                Ok(()) => {
                    self.stats.deleted.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(namespace = %entry.1, name = %entry.2, "persistence agent: deleted workflow past its ttl");
                    self.expiries.lock().await.remove(&entry);
                }
                Err(error) => {
                    tracing::warn!(%error, "persistence agent: cannot delete workflow past its ttl");
                    return 0;
                }
            }
        }
        count
    }
}

/// One scope's watch events, tagged with the scope's index; `None` once closed.
type TaggedEvents = BoxStream<'static, (usize, Option<Result<Event, Error>>)>;

/// Deletions per sweep; a full batch sweeps again at once.
const GC_BATCH: usize = 200;

/// How often Workflows waiting to be deleted are checked.
fn sweep_period(wait: Duration) -> Duration {
    (wait / 4).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Reports to a kfpd API server over REST (`POST /apis/v2beta1/workflows`).
pub struct HttpReporter {
    base: String,
    http: reqwest::Client,
    /// The agent's own service-account token, sent with every call (multi-user
    /// mode checks `report` for its identity).
    token: TokenFile,
}

impl HttpReporter {
    /// Whether GetRun answers 404 for `run_id`.
    async fn run_missing(&self, run_id: &str) -> Result<bool, ReportError> {
        let response = self
            .authorized(
                self.http
                    .get(format!("{}/apis/v2beta1/runs/{run_id}", self.base)),
            )?
            .send()
            .await
            .map_err(|error| ReportError::Transient(error.to_string()))?;
        Ok(response.status() == reqwest::StatusCode::NOT_FOUND)
    }

    pub fn new(base: &str) -> HttpReporter {
        HttpReporter {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            token: TokenFile::default(),
        }
    }

    /// Sends the token at `token` with every call.
    pub fn with_token(mut self, token: TokenFile) -> HttpReporter {
        self.token = token;
        self
    }

    /// The request with the token read now. A token that cannot be read is
    /// transient: the kubelet may be replacing it.
    fn authorized(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ReportError> {
        match self.token.authorization() {
            Ok(Some(value)) => Ok(request.header(http::header::AUTHORIZATION, value)),
            Ok(None) => Ok(request),
            Err(error) => Err(ReportError::Transient(error.to_string())),
        }
    }
}

fn classify(status: reqwest::StatusCode, body: String) -> ReportError {
    // A report refused for who sent it (no token, a token not accepted, no role)
    // says nothing about the Workflow: retried and logged loudly until the
    // agent's identity or role is fixed.
    let identity = matches!(
        status,
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
    );
    if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS && !identity {
        ReportError::Permanent(format!("HTTP {status}: {body}"))
    } else {
        ReportError::Transient(format!("HTTP {status}: {body}"))
    }
}

#[async_trait::async_trait]
impl Reporter for HttpReporter {
    async fn report(&self, workflow: &str) -> Result<(), ReportError> {
        let response = self
            .authorized(
                self.http
                    .post(format!("{}/apis/v2beta1/workflows", self.base)),
            )?
            .json(&workflow)
            .send()
            .await
            .map_err(|error| ReportError::Transient(error.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND {
            // A 404 may be the route; only GetRun's own 404 makes an orphan.
            let run_id = serde_json::from_str::<Value>(workflow)
                .ok()
                .and_then(|value| {
                    value["metadata"]["labels"][RUN_ID_LABEL]
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_default();
            if !run_id.is_empty() && self.run_missing(&run_id).await? {
                return Err(ReportError::UnknownRun(format!("run {run_id}: {body}")));
            }
        }
        Err(classify(status, body))
    }

    async fn unfinished_runs(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<(String, i64)>, ReportError> {
        let filter = json!({"predicates": [{
            "key": "state",
            "operation": "IN",
            "string_values": {"values": ["PENDING", "RUNNING", "CANCELING"]},
        }]})
        .to_string();
        let mut runs = Vec::new();
        let mut token = String::new();
        loop {
            let response = self
                .authorized(self.http.get(format!("{}/apis/v2beta1/runs", self.base)))?
                .query(&[
                    ("filter", filter.as_str()),
                    ("page_size", "500"),
                    ("page_token", token.as_str()),
                    ("namespace", namespace.unwrap_or_default()),
                ])
                .send()
                .await
                .map_err(|error| ReportError::Transient(error.to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(classify(status, response.text().await.unwrap_or_default()));
            }
            let page: Value = response
                .json()
                .await
                .map_err(|error| ReportError::Transient(error.to_string()))?;
            for run in page["runs"].as_array().into_iter().flatten() {
                let id = run["run_id"].as_str().unwrap_or_default().to_string();
                let created = run["created_at"]
                    .as_str()
                    .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
                    .map(|time| time.timestamp())
                    .unwrap_or(0);
                if !id.is_empty() {
                    runs.push((id, created));
                }
            }
            token = page["next_page_token"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if token.is_empty() {
                return Ok(runs);
            }
        }
    }
}
