//! A run as the API and the store show it, with what differs between two runs of
//! the same pipeline by nature (ids, times, where the data dir is) replaced, so a
//! run through the stand-in for Argo can be compared with one of the local engine.

use std::collections::BTreeMap;

use kfpd_store::sql::{Options, SqlStore};
use kfpd_store::ExecutionStore;
use serde_json::{json, Map, Value};

use crate::common::Server;

/// The run at `run_id` of `server`, normalised. `scratch` (paths a test gave the
/// run as parameters) and `resource` (the run's `pipeline_job_resource_name`: the
/// Workflow's name on Argo) are replaced too.
///
/// Tasks of one run with the same cache key that run at the same time race for
/// the cache: which one runs and which reuses its outputs is a matter of timing,
/// on either executor. For those, whether a task ran or was cached (its state,
/// history, attempts, the producer of its artifacts) is left out.
pub async fn snapshot(server: &Server, run_id: &str, given: &Normalise<'_>) -> Value {
    let (scratch, resource) = (given.scratch, given.resource);
    let (status, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(status, 200, "{run}");
    let (status, listed) = server
        .get(&format!("/artifacts?run_id={run_id}&page_size=1000"))
        .await;
    assert_eq!(status, 200, "{listed}");
    let url = format!("sqlite://{}", server.dir.path().join("kfpd.db").display());
    let store = SqlStore::connect(&Options::new(url))
        .await
        .expect("open the server's database");
    let rows = store.list_tasks(run_id).await.expect("tasks");

    let mut names = Names::default();
    names.add(run_id, "<run>");
    names.add(&server.dir.path().display().to_string(), "<data>");
    if !scratch.is_empty() {
        names.add(scratch, "<scratch>");
    }
    names.add(resource, "<resource>");
    // Where a task's files were while it ran: the local engine's work dir, or the
    // launcher's in its pod.
    let work = server.dir.path().join("work").join(run_id);
    names.add(&format!("{}/", work.display()), "<work>/");
    if let Some(pods) = given.pods {
        names.add(&format!("{}/", pods.display()), "<pods>/");
    }
    if let Some(workspace) = given.workspace {
        names.add(&format!("{}/", workspace.display()), "<work>/workspace/");
    }
    let mut by_key: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        if !row.fingerprint.is_empty() {
            *by_key.entry(row.fingerprint.as_str()).or_default() += 1;
        }
    }
    let raced: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|row| by_key.get(row.fingerprint.as_str()).is_some_and(|n| *n > 1))
        .map(|row| row.id.as_str())
        .collect();
    for row in &rows {
        names.add(&row.id, &format!("<task {}>", row.path));
    }
    let path_of: BTreeMap<&str, &str> = rows
        .iter()
        .map(|row| (row.id.as_str(), row.path.as_str()))
        .collect();

    let mut artifacts: BTreeMap<String, Value> = BTreeMap::new();
    for artifact in listed["artifacts"].as_array().into_iter().flatten() {
        let id = artifact["artifact_id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| artifact["artifact_id"].to_string());
        let producer_id = artifact["producer"]["task_id"].as_str().unwrap_or_default();
        let producer = path_of.get(producer_id).copied().unwrap_or("");
        let mut entry = json!({
            "name": artifact["name"],
            "type": artifact["type"],
            "uri": artifact["uri"],
            "metadata": artifact["metadata"],
            "producer": producer,
        });
        if given.random_metrics && artifact["type"]["schema_title"] == "system.Metrics" {
            if let Some(metadata) = entry["metadata"].as_object_mut() {
                for value in metadata.values_mut().filter(|value| value.is_number()) {
                    *value = json!("<random number>");
                }
            }
        }
        if raced.contains(producer_id) {
            entry["uri"] = json!("<one of tasks racing for the cache>");
            entry["producer"] = entry["uri"].clone();
        }
        artifacts.insert(id, entry);
    }

    let mut tasks = Map::new();
    for detail in run["run_details"]["task_details"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let id = detail["task_id"].as_str().unwrap_or_default();
        let path = path_of.get(id).copied().unwrap_or("<no row>");
        let row = rows.iter().find(|row| row.id == id);
        let links = |side: &str| -> Value {
            let mut by_key = Map::new();
            for (key, list) in detail[side].as_object().into_iter().flatten() {
                let found: Vec<Value> = list["artifact_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|id| {
                        let id = id
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| id.to_string());
                        artifacts
                            .get(&id)
                            .cloned()
                            .unwrap_or(json!("<unknown artifact>"))
                    })
                    .collect();
                by_key.insert(key.clone(), Value::Array(found));
            }
            Value::Object(by_key)
        };
        let history: Vec<Value> = detail["state_history"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|change| json!({"state": change["state"], "error": change["error"]["message"]}))
            .collect();
        let attempts = detail["executor_detail"]["main_job_attempts"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        let children = detail["child_tasks"].as_array().map(Vec::len).unwrap_or(0);
        let mut entry = json!({
            "display_name": detail["display_name"],
            "state": detail["state"],
            "error": detail["error"]["message"],
            "inputs": links("inputs"),
            "outputs": links("outputs"),
            "history": history,
            "executor_attempts": attempts,
            "has_main_job": detail["executor_detail"]["main_job"].is_string(),
            "children": children,
            "parent": detail["parent_task_id"]
                .as_str()
                .and_then(|parent| path_of.get(parent))
                .copied()
                .unwrap_or(""),
        });
        if let Some(row) = row {
            entry["kind"] = json!(row.kind.as_str());
            entry["parameters_in"] = parse(&row.inputs);
            entry["parameters_out"] = parse(&row.outputs);
            entry["row_attempts"] = json!(row.attempts);
            entry["cached"] = json!(!row.cached_from.is_empty());
            if raced.contains(row.id.as_str()) {
                let entry = entry.as_object_mut().expect("entry");
                for timing in [
                    "state",
                    "error",
                    "history",
                    "executor_attempts",
                    "has_main_job",
                    "row_attempts",
                    "cached",
                ] {
                    entry.insert(timing.to_string(), json!("<raced for the cache>"));
                }
            }
        }
        tasks.insert(path.to_string(), entry);
    }
    let snapshot = json!({
        "state": run["state"],
        "error": run["error"]["message"],
        "tasks": tasks,
    });
    names.apply(snapshot)
}

/// What two runs of a pipeline differ in by nature.
pub struct Normalise<'a> {
    /// Paths the test gave the run as parameters.
    pub scratch: &'a str,
    /// The run's `pipeline_job_resource_name`.
    pub resource: &'a str,
    /// Where the stand-in's pods keep their files.
    pub pods: Option<&'a std::path::Path>,
    /// The stand-in's directory for the run's workspace volume, which reads as the
    /// local engine's `<work>/workspace`.
    pub workspace: Option<&'a std::path::Path>,
    /// The pipeline logs random numbers as metrics.
    pub random_metrics: bool,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::String(text.to_string()))
}

/// Replacements of run-specific text, longest first.
#[derive(Default)]
struct Names {
    pairs: Vec<(String, String)>,
}

impl Names {
    fn add(&mut self, from: &str, to: &str) {
        if !from.is_empty() {
            self.pairs.push((from.to_string(), to.to_string()));
        }
    }

    fn apply(&mut self, value: Value) -> Value {
        self.pairs
            .sort_by_key(|pair| std::cmp::Reverse(pair.0.len()));
        self.walk(value)
    }

    fn walk(&self, value: Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.text(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.walk(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (self.text(&key), self.walk(value)))
                    .collect(),
            ),
            other => other,
        }
    }

    fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (from, to) in &self.pairs {
            if out.contains(from.as_str()) {
                out = out.replace(from.as_str(), to);
            }
        }
        fold_pod_paths(&out)
    }
}

/// `<pods>/<pod>/tmp/kfpd/<task x>/attempt-1/…` (the launcher's work dir in its
/// pod) → `<work>/<task x>/…`, as the local engine's work dir reads.
fn fold_pod_paths(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<pods>/") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(work) = after.find("/tmp/kfpd/") else {
            out.push_str(after);
            return out;
        };
        out.push_str("<work>/");
        let mut tail = &after[work + "/tmp/kfpd/".len()..];
        if let Some(task_end) = tail.find(">/attempt-") {
            out.push_str(&tail[..task_end + 1]);
            tail = &tail[task_end + ">/attempt-".len()..];
            tail = tail.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The differences between two snapshots, one line each (empty when equal).
pub fn differences(expected: &Value, found: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", expected, found, &mut out);
    out
}

fn diff(at: &str, expected: &Value, found: &Value, out: &mut Vec<String>) {
    match (expected, found) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{at}/{key}");
                match b.get(key) {
                    Some(other) => diff(&here, value, other, out),
                    None => out.push(format!("{here}: only in the local engine's run: {value}")),
                }
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    out.push(format!("{at}/{key}: only in the stand-in's run: {value}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{at}[{index}]"), x, y, out);
            }
        }
        _ if expected == found => {}
        _ => out.push(format!("{at}: local engine {expected}, stand-in {found}")),
    }
}
