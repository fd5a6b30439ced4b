//! A scripted Kubernetes API server, for tests only (there is no cluster here):
//! a real HTTP server on 127.0.0.1 answering the subset of the API kfpd calls —
//! Workflows (`argoproj.io/v1alpha1`) created, listed in pages with label
//! selectors, watched (newline-delimited events, bookmarks, 410 Gone once the
//! watched version is compacted away), merge-patched and deleted; pod logs. Every
//! request is recorded. The test plays Argo's controller by writing statuses
//! with [`Kube::set_status`] and the claims of its volume claim templates with
//! [`Kube::insert_claim`]. PersistentVolumeClaims are got, listed by label,
//! merge-patched (a stale `resourceVersion` is refused with 409) and deleted;
//! deleting a Workflow deletes the claims it alone owns, as Kubernetes' garbage
//! collector does. TokenReviews and SubjectAccessReviews are answered for the
//! tokens and role bindings a test scripts (reviews.rs).

#![allow(dead_code)]

mod reviews;

pub use reviews::{ACCESS_REVIEWS, TOKEN_REVIEWS};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

const WORKFLOWS: &str = "/apis/argoproj.io/v1alpha1/namespaces/{namespace}/workflows";
/// Every namespace's Workflows (a cluster-scoped list or watch).
const ALL_WORKFLOWS: &str = "/apis/argoproj.io/v1alpha1/workflows";
const CLAIMS: &str = "/api/v1/namespaces/{namespace}/persistentvolumeclaims";

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct Cluster {
    workflows: BTreeMap<String, Value>,
    version: u64,
    /// (resourceVersion, type, object); versions at or below `compacted` are gone.
    events: Vec<(u64, String, Value)>,
    compacted: u64,
    requests: Vec<Request>,
    /// Answered to the next creates instead of creating: (code, reason, message).
    refuse_creates: Vec<(u16, String, String)>,
    /// The next generated names taken from existing Workflows (a collision).
    collide_names: usize,
    pod_logs: HashMap<String, String>,
    /// PersistentVolumeClaims by name.
    claims: BTreeMap<String, Value>,
    /// Answered to the next claim patches instead of patching: (code, reason, message).
    refuse_claim_patches: Vec<(u16, String, String)>,
    /// Open watches are closed when this changes.
    watch_epoch: u64,
    /// Set by a compaction: every watch answers 410 Gone until the next list.
    expired: bool,
    reviews: reviews::Script,
}

#[derive(Clone)]
pub struct Kube {
    cluster: Arc<Mutex<Cluster>>,
    changed: Arc<tokio::sync::Notify>,
    pub url: String,
    /// A kubeconfig naming this server; give it to kfpd as KUBECONFIG.
    pub kubeconfig: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

impl Kube {
    pub async fn start() -> Kube {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: scripted\n  cluster:\n    server: {url}\nusers:\n- name: scripted\n  user:\n    token: scripted-token\ncontexts:\n- name: scripted\n  context:\n    cluster: scripted\n    user: scripted\n    namespace: kubeflow\ncurrent-context: scripted\n"
            ),
        )
        .expect("kubeconfig");
        let kube = Kube {
            cluster: Arc::default(),
            changed: Arc::default(),
            url,
            kubeconfig,
            _dir: Arc::new(dir),
        };
        let app = Router::new()
            .route(WORKFLOWS, get(list_or_watch).post(create))
            .route(ALL_WORKFLOWS, get(list_or_watch_all))
            .route(
                &format!("{WORKFLOWS}/{{name}}"),
                get(get_one).patch(patch).delete(delete),
            )
            .route(
                "/api/v1/namespaces/{namespace}/pods/{pod}/log",
                get(pod_log),
            )
            .route(CLAIMS, get(list_claims))
            .route(
                &format!("{CLAIMS}/{{name}}"),
                get(get_claim).patch(patch_claim).delete(delete_claim),
            )
            .route(TOKEN_REVIEWS, axum::routing::post(reviews::token_review))
            .route(ACCESS_REVIEWS, axum::routing::post(reviews::access_review))
            .fallback(unknown)
            .with_state(kube.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        kube
    }

    pub fn kubeconfig(&self) -> &str {
        self.kubeconfig.to_str().expect("utf-8 path")
    }

    fn record(&self, method: &str, path: &str, query: &BTreeMap<String, String>, body: Value) {
        self.cluster.lock().unwrap().requests.push(Request {
            method: method.into(),
            path: path.into(),
            query: query.clone(),
            body,
        });
    }

    pub fn requests(&self) -> Vec<Request> {
        self.cluster.lock().unwrap().requests.clone()
    }

    pub fn workflows(&self) -> BTreeMap<String, Value> {
        self.cluster.lock().unwrap().workflows.clone()
    }

    /// The name of a Workflow of each run (by its run id label), read in one pass
    /// without copying the Workflows.
    pub fn names_by_run(&self) -> BTreeMap<String, String> {
        let cluster = self.cluster.lock().unwrap();
        cluster
            .workflows
            .values()
            .filter_map(|workflow| {
                let run_id = workflow["metadata"]["labels"]["pipeline/runid"].as_str()?;
                let name = workflow["metadata"]["name"].as_str()?;
                Some((run_id.to_string(), name.to_string()))
            })
            .collect()
    }

    /// The Workflows labelled with `run_id`.
    pub fn of_run(&self, run_id: &str) -> Vec<Value> {
        let cluster = self.cluster.lock().unwrap();
        cluster
            .workflows
            .values()
            .filter(|workflow| workflow["metadata"]["labels"]["pipeline/runid"] == run_id)
            .cloned()
            .collect()
    }

    pub fn refuse_next_create(&self, code: u16, reason: &str, message: &str) {
        self.cluster.lock().unwrap().refuse_creates.push((
            code,
            reason.to_string(),
            message.to_string(),
        ));
    }

    /// The next `count` creates with `generateName` draw the name of an existing
    /// Workflow, as a real API server's random suffix now and then does.
    pub fn collide_next_names(&self, count: usize) {
        self.cluster.lock().unwrap().collide_names = count;
    }

    pub fn set_pod_log(&self, pod: &str, text: &str) {
        self.cluster
            .lock()
            .unwrap()
            .pod_logs
            .insert(pod.to_string(), text.to_string());
    }

    /// Creates a claim as Argo's controller does for a Workflow's volume claim
    /// template: named `<workflow>-<template>`, labelled with the Workflow and
    /// owned by it (a controller reference); returns the claim's name.
    pub fn insert_claim(&self, workflow: &str, template: &str) -> String {
        let mut cluster = self.cluster.lock().unwrap();
        let owner = cluster.workflows.get(workflow).expect("workflow exists");
        let name = format!("{workflow}-{template}");
        let claim = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": name, "namespace": owner["metadata"]["namespace"],
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": chrono_now(),
                "labels": {"workflows.argoproj.io/workflow": workflow},
                "ownerReferences": [{
                    "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                    "name": workflow, "uid": owner["metadata"]["uid"],
                    "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound"},
        });
        store_claim(&mut cluster, claim);
        name
    }

    pub fn claims(&self) -> BTreeMap<String, Value> {
        self.cluster.lock().unwrap().claims.clone()
    }

    pub fn refuse_next_claim_patch(&self, code: u16, reason: &str, message: &str) {
        self.cluster.lock().unwrap().refuse_claim_patches.push((
            code,
            reason.to_string(),
            message.to_string(),
        ));
    }

    /// Adds a Workflow as if someone else created it.
    pub fn insert(&self, workflow: Value) {
        let mut cluster = self.cluster.lock().unwrap();
        store(&mut cluster, workflow, "ADDED");
        drop(cluster);
        self.changed.notify_waiters();
    }

    /// Adds many Workflows without events (as if they existed before anyone watched).
    pub fn preload(&self, workflows: impl IntoIterator<Item = Value>) {
        let mut cluster = self.cluster.lock().unwrap();
        for mut workflow in workflows {
            cluster.version += 1;
            workflow["metadata"]["resourceVersion"] = json!(cluster.version.to_string());
            let name = workflow["metadata"]["name"].as_str().unwrap().to_string();
            cluster.workflows.insert(name, workflow);
        }
        cluster.compacted = cluster.version;
    }

    /// Writes `status` as Argo's controller would (a MODIFIED event).
    pub fn set_status(&self, name: &str, status: Value) {
        let mut cluster = self.cluster.lock().unwrap();
        let mut workflow = cluster
            .workflows
            .get(name)
            .cloned()
            .expect("workflow exists");
        workflow["status"] = status;
        store(&mut cluster, workflow, "MODIFIED");
        drop(cluster);
        self.changed.notify_waiters();
    }

    /// Deletes as `kubectl delete` would (a DELETED event).
    pub fn remove(&self, name: &str) {
        let mut cluster = self.cluster.lock().unwrap();
        remove(&mut cluster, name);
        drop(cluster);
        self.changed.notify_waiters();
    }

    /// Forgets every event so far: open watches are closed and every watch gets
    /// 410 Gone until the client lists again.
    pub fn compact(&self) {
        let mut cluster = self.cluster.lock().unwrap();
        cluster.compacted = cluster.version;
        cluster.expired = true;
        cluster.watch_epoch += 1;
        drop(cluster);
        self.changed.notify_waiters();
    }

    /// Closes open watches, as an API server does when its watch timeout ends.
    pub fn close_watches(&self) {
        self.cluster.lock().unwrap().watch_epoch += 1;
        self.changed.notify_waiters();
    }
}

fn store(cluster: &mut Cluster, mut workflow: Value, kind: &str) {
    cluster.version += 1;
    let version = cluster.version;
    workflow["metadata"]["resourceVersion"] = json!(version.to_string());
    let name = workflow["metadata"]["name"].as_str().unwrap().to_string();
    cluster.workflows.insert(name, workflow.clone());
    cluster.events.push((version, kind.into(), workflow));
}

fn store_claim(cluster: &mut Cluster, mut claim: Value) {
    cluster.version += 1;
    claim["metadata"]["resourceVersion"] = json!(cluster.version.to_string());
    let name = claim["metadata"]["name"].as_str().unwrap().to_string();
    cluster.claims.insert(name, claim);
}

/// What the garbage collector does once a Workflow is gone: claims whose every
/// owner is gone are deleted.
fn collect_claims(cluster: &mut Cluster) {
    let live: Vec<Value> = cluster
        .workflows
        .values()
        .map(|workflow| workflow["metadata"]["uid"].clone())
        .collect();
    cluster.claims.retain(|_, claim| {
        let owners = claim["metadata"]["ownerReferences"].as_array();
        owners.is_none_or(|owners| {
            owners.is_empty() || owners.iter().any(|owner| live.contains(&owner["uid"]))
        })
    });
}

fn remove(cluster: &mut Cluster, name: &str) -> Option<Value> {
    let mut workflow = cluster.workflows.remove(name)?;
    collect_claims(cluster);
    cluster.version += 1;
    let version = cluster.version;
    workflow["metadata"]["resourceVersion"] = json!(version.to_string());
    cluster
        .events
        .push((version, "DELETED".into(), workflow.clone()));
    Some(workflow)
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

fn matches(selector: &str, workflow: &Value) -> bool {
    let labels = &workflow["metadata"]["labels"];
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((key, value)) => labels[key].as_str() == Some(value),
            None => labels.get(term).is_some(),
        })
}

async fn create(
    State(kube): State<Kube>,
    Path(namespace): Path<String>,
    Json(mut workflow): Json<Value>,
) -> Response {
    kube.record(
        "POST",
        &format!("/namespaces/{namespace}/workflows"),
        &BTreeMap::new(),
        workflow.clone(),
    );
    let mut cluster = kube.cluster.lock().unwrap();
    if !cluster.refuse_creates.is_empty() {
        let (code, reason, message) = cluster.refuse_creates.remove(0);
        return status(code, &reason, &message);
    }
    let name = match workflow["metadata"]["name"].as_str() {
        Some(name) => name.to_string(),
        None => {
            let prefix = workflow["metadata"]["generateName"]
                .as_str()
                .unwrap_or("workflow-")
                .to_string();
            let existing = cluster
                .workflows
                .keys()
                .find(|name| name.starts_with(&prefix))
                .cloned();
            match existing {
                Some(existing) if cluster.collide_names > 0 => {
                    cluster.collide_names -= 1;
                    existing
                }
                _ => format!("{prefix}{}", generated_suffix()),
            }
        }
    };
    // A taken name is refused, never overwritten (API servers before
    // Kubernetes 1.30 do not retry a generated name themselves).
    if cluster.workflows.contains_key(&name) {
        return status(
            409,
            "AlreadyExists",
            &format!("workflows.argoproj.io \"{name}\" already exists"),
        );
    }
    workflow["metadata"]["name"] = json!(name);
    workflow["metadata"]["namespace"] = json!(namespace);
    workflow["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    workflow["metadata"]["creationTimestamp"] = json!(chrono_now());
    store(&mut cluster, workflow.clone(), "ADDED");
    let created = cluster.workflows[&name].clone();
    drop(cluster);
    kube.changed.notify_waiters();
    (StatusCode::CREATED, Json(created)).into_response()
}

/// Five characters of the alphabet Kubernetes draws generated names from.
fn generated_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect()
}

fn chrono_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(seconds as i64)
}

/// Unix seconds as RFC 3339 UTC, as Kubernetes writes times.
pub fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

async fn get_one(State(kube): State<Kube>, Path((_, name)): Path<(String, String)>) -> Response {
    match kube.workflows().get(&name) {
        Some(workflow) => Json(workflow.clone()).into_response(),
        None => status(
            404,
            "NotFound",
            &format!("workflows.argoproj.io \"{name}\" not found"),
        ),
    }
}

async fn patch(
    State(kube): State<Kube>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    kube.record(
        "PATCH",
        &format!("/namespaces/{namespace}/workflows/{name}"),
        &BTreeMap::new(),
        body.clone(),
    );
    let mut cluster = kube.cluster.lock().unwrap();
    let Some(mut workflow) = cluster.workflows.get(&name).cloned() else {
        return status(
            404,
            "NotFound",
            &format!("workflows.argoproj.io \"{name}\" not found"),
        );
    };
    merge(&mut workflow, &body);
    store(&mut cluster, workflow, "MODIFIED");
    let patched = cluster.workflows[&name].clone();
    drop(cluster);
    kube.changed.notify_waiters();
    Json(patched).into_response()
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            target.as_object_mut().unwrap().remove(key);
        } else {
            merge(&mut target[key], value);
        }
    }
}

async fn delete(
    State(kube): State<Kube>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    kube.record(
        "DELETE",
        &format!("/namespaces/{namespace}/workflows/{name}"),
        &BTreeMap::new(),
        Value::Null,
    );
    let mut cluster = kube.cluster.lock().unwrap();
    let removed = remove(&mut cluster, &name);
    drop(cluster);
    kube.changed.notify_waiters();
    match removed {
        Some(_) => {
            Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}))
                .into_response()
        }
        None => status(
            404,
            "NotFound",
            &format!("workflows.argoproj.io \"{name}\" not found"),
        ),
    }
}

async fn list_or_watch(
    State(kube): State<Kube>,
    Path(namespace): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    kube.record(
        "GET",
        &format!("/namespaces/{namespace}/workflows"),
        &query,
        Value::Null,
    );
    list_or_watch_in(kube, Some(namespace), query)
}

async fn list_or_watch_all(
    State(kube): State<Kube>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    kube.record("GET", "/workflows", &query, Value::Null);
    list_or_watch_in(kube, None, query)
}

/// Whether `workflow` is in `namespace` (`None`: every namespace).
fn in_namespace(namespace: &Option<String>, workflow: &Value) -> bool {
    namespace
        .as_deref()
        .is_none_or(|namespace| workflow["metadata"]["namespace"].as_str() == Some(namespace))
}

fn list_or_watch_in(
    kube: Kube,
    namespace: Option<String>,
    query: BTreeMap<String, String>,
) -> Response {
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    if query.get("watch").map(String::as_str) == Some("true") {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return watch(kube, namespace, selector, from);
    }
    let mut cluster = kube.cluster.lock().unwrap();
    cluster.expired = false;
    let limit: usize = query
        .get("limit")
        .and_then(|v| v.parse().ok())
        .filter(|limit| *limit > 0)
        .unwrap_or(usize::MAX);
    // The continue token is the last name sent, so deletions between pages
    // neither skip nor repeat items (as the real API server's snapshot).
    let after = query.get("continue").cloned().unwrap_or_default();
    let matching: Vec<&Value> = cluster
        .workflows
        .iter()
        .filter(|(name, _)| after.is_empty() || name.as_str() > after.as_str())
        .map(|(_, workflow)| workflow)
        .filter(|workflow| matches(&selector, workflow) && in_namespace(&namespace, workflow))
        .collect();
    let end = limit.min(matching.len());
    let items: Vec<Value> = matching[..end].iter().map(|w| (*w).clone()).collect();
    let next = if end < matching.len() {
        items
            .last()
            .and_then(|w| w["metadata"]["name"].as_str())
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    };
    Json(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowList",
        "metadata": {"resourceVersion": cluster.version.to_string(), "continue": next},
        "items": items,
    }))
    .into_response()
}

fn watch(kube: Kube, namespace: Option<String>, selector: String, from: u64) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::spawn(async move {
        let epoch = kube.cluster.lock().unwrap().watch_epoch;
        let mut sent = from;
        loop {
            let changed = kube.changed.notified();
            let (lines, closed) = {
                let cluster = kube.cluster.lock().unwrap();
                if sent < cluster.compacted || cluster.expired {
                    let gone = json!({"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "Expired", "code": 410,
                        "message": format!("too old resource version: {sent} ({})", cluster.compacted),
                    }});
                    (vec![gone.to_string()], true)
                } else {
                    let mut lines = Vec::new();
                    let first = cluster
                        .events
                        .partition_point(|(version, _, _)| *version <= sent);
                    for (_, kind, object) in &cluster.events[first..] {
                        if matches(&selector, object) && in_namespace(&namespace, object) {
                            lines.push(json!({"type": kind, "object": object}).to_string());
                        }
                    }
                    if cluster.version > sent {
                        sent = cluster.version;
                        lines.push(
                            json!({"type": "BOOKMARK", "object": {
                                "kind": "Workflow", "apiVersion": "argoproj.io/v1alpha1",
                                "metadata": {"resourceVersion": sent.to_string()},
                            }})
                            .to_string(),
                        );
                    }
                    (lines, cluster.watch_epoch != epoch)
                }
            };
            for line in lines {
                if sender.send(Ok(format!("{line}\n"))).await.is_err() {
                    return;
                }
            }
            if closed {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), changed).await;
        }
    });
    let stream = tokio_stream_from(receiver);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn tokio_stream_from(
    mut receiver: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    futures::stream::poll_fn(move |context| receiver.poll_recv(context))
}

async fn pod_log(
    State(kube): State<Kube>,
    Path((namespace, pod)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    kube.record(
        "GET",
        &format!("/namespaces/{namespace}/pods/{pod}/log"),
        &query,
        Value::Null,
    );
    match kube.cluster.lock().unwrap().pod_logs.get(&pod) {
        Some(text) => text.clone().into_response(),
        None => status(404, "NotFound", &format!("pods \"{pod}\" not found")),
    }
}

fn claim_not_found(name: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("persistentvolumeclaims \"{name}\" not found"),
    )
}

async fn list_claims(
    State(kube): State<Kube>,
    Path(namespace): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    kube.record(
        "GET",
        &format!("/namespaces/{namespace}/persistentvolumeclaims"),
        &query,
        Value::Null,
    );
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let cluster = kube.cluster.lock().unwrap();
    let items: Vec<Value> = cluster
        .claims
        .values()
        .filter(|claim| claim["metadata"]["namespace"] == namespace.as_str())
        .filter(|claim| matches(&selector, claim))
        .cloned()
        .collect();
    Json(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaimList",
        "metadata": {"resourceVersion": cluster.version.to_string()},
        "items": items,
    }))
    .into_response()
}

async fn get_claim(
    State(kube): State<Kube>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    kube.record(
        "GET",
        &format!("/namespaces/{namespace}/persistentvolumeclaims/{name}"),
        &BTreeMap::new(),
        Value::Null,
    );
    match kube.claims().get(&name) {
        Some(claim) => Json(claim.clone()).into_response(),
        None => claim_not_found(&name),
    }
}

async fn patch_claim(
    State(kube): State<Kube>,
    Path((namespace, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    kube.record(
        "PATCH",
        &format!("/namespaces/{namespace}/persistentvolumeclaims/{name}"),
        &BTreeMap::new(),
        body.clone(),
    );
    let mut cluster = kube.cluster.lock().unwrap();
    if !cluster.refuse_claim_patches.is_empty() {
        let (code, reason, message) = cluster.refuse_claim_patches.remove(0);
        return status(code, &reason, &message);
    }
    let Some(mut claim) = cluster.claims.get(&name).cloned() else {
        return claim_not_found(&name);
    };
    let expected = &body["metadata"]["resourceVersion"];
    if !expected.is_null() && *expected != claim["metadata"]["resourceVersion"] {
        return status(
            409,
            "Conflict",
            &format!("Operation cannot be fulfilled on persistentvolumeclaims \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
        );
    }
    merge(&mut claim, &body);
    store_claim(&mut cluster, claim);
    Json(cluster.claims[&name].clone()).into_response()
}

async fn delete_claim(
    State(kube): State<Kube>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    kube.record(
        "DELETE",
        &format!("/namespaces/{namespace}/persistentvolumeclaims/{name}"),
        &BTreeMap::new(),
        Value::Null,
    );
    match kube.cluster.lock().unwrap().claims.remove(&name) {
        Some(claim) => Json(claim).into_response(),
        None => claim_not_found(&name),
    }
}

async fn unknown(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    status(
        404,
        "NotFound",
        &format!("the scripted API server does not serve {method} {uri}"),
    )
}
