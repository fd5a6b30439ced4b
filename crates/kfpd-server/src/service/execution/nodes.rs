//! A run's tasks as the web UI draws them: one compact node per task row with its
//! kind, state, times and the sibling tasks it waits for (from the run's spec), and
//! one node's full record for the UI's side panel. GetRun's `task_details` lack the
//! kind, the edges, the parameters and the cache source.

use std::collections::{BTreeSet, HashMap};

use kfpd_ir::spec::{DagSpec, PipelineSpec, PipelineTaskSpec};
use kfpd_store::{Artifact, Direction, Task, TaskKind};
use serde::Serialize;
use serde_json::Value;

use super::{details_of, rfc3339, view, ArtifactView};
use crate::convert::runtime_state_of_task;
use crate::error::{Error, Result};
use crate::service::Api;

/// One task of a run, for the graph, the task list and the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    pub task_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parent_task_id: String,
    /// `ROOT`, `DAG`, `RUNTIME`, `IMPORTER`, `LOOP`, `LOOP_ITERATION`, `CONDITION`,
    /// `CONDITION_BRANCH` or `EXIT_HANDLER`.
    pub kind: &'static str,
    /// The task's key in its DAG.
    pub name: String,
    pub display_name: String,
    #[serde(skip_serializing_if = "is_negative")]
    pub iteration_index: i64,
    /// The API's runtime state (a cache hit is SUCCEEDED with `cached_from`).
    pub state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cached_from: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub started_at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub finished_at: String,
    /// Task ids of the siblings this task waits for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub attempts: i64,
}

fn is_negative(value: &i64) -> bool {
    *value < 0
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

#[derive(Serialize)]
pub struct ListNodesResponse {
    pub nodes: Vec<Node>,
}

/// One artifact a task reads or writes, under the key it uses.
#[derive(Serialize)]
pub struct NodeArtifact {
    pub key: String,
    pub artifact: ArtifactView,
}

/// A node with everything its record holds.
#[derive(Serialize)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub node: Node,
    pub path: String,
    /// Input parameter values by name.
    pub inputs: Value,
    /// Output parameter values by name.
    pub outputs: Value,
    /// Executor details: attempts, command, exit code, log.
    pub details: Value,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    pub input_artifacts: Vec<NodeArtifact>,
    pub output_artifacts: Vec<NodeArtifact>,
}

/// The run's task rows as nodes, edges from the spec. A spec that cannot be read
/// (or a task it does not name) leaves nodes without edges rather than failing.
pub fn nodes_of(spec: Option<&PipelineSpec>, tasks: &[Task]) -> Vec<Node> {
    let by_id: HashMap<&str, &Task> = tasks.iter().map(|task| (task.id.as_str(), task)).collect();
    let mut siblings: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for task in tasks {
        siblings
            .entry((task.parent_id.as_str(), task.name.as_str()))
            .or_default()
            .push(task.id.as_str());
    }
    let mut dags: HashMap<String, Option<&DagSpec>> = HashMap::new();
    tasks
        .iter()
        .map(|task| {
            let after = spec
                .and_then(|spec| task_spec(spec, &by_id, &mut dags, task))
                .map(|task_spec| upstream_ids(task_spec, task, &siblings))
                .unwrap_or_default();
            node(task, after)
        })
        .collect()
}

fn node(task: &Task, after: Vec<String>) -> Node {
    let seconds = |value: i64| {
        if value > 0 {
            rfc3339(value)
        } else {
            String::new()
        }
    };
    Node {
        task_id: task.id.clone(),
        parent_task_id: task.parent_id.clone(),
        kind: task.kind.as_str(),
        name: task.name.clone(),
        display_name: task.display_name.clone(),
        iteration_index: task.iteration_index,
        state: runtime_state_of_task(task.state).as_str_name(),
        cached_from: task.cached_from.clone(),
        created_at: rfc3339(task.created_at),
        started_at: seconds(task.started_at),
        finished_at: seconds(task.finished_at),
        after,
        error: task
            .error
            .clone()
            .filter(|_| task.state != kfpd_store::TaskState::Succeeded)
            .unwrap_or_default(),
        attempts: task.attempts,
    }
}

/// Sibling task ids (same parent) named by the task's upstream tasks.
fn upstream_ids(
    task_spec: &PipelineTaskSpec,
    task: &Task,
    siblings: &HashMap<(&str, &str), Vec<&str>>,
) -> Vec<String> {
    if task.kind == TaskKind::LoopIteration {
        return Vec::new();
    }
    let names: BTreeSet<&str> = task_spec.upstream_tasks();
    names
        .into_iter()
        .filter_map(|name| siblings.get(&(task.parent_id.as_str(), name)))
        .flatten()
        .map(|id| (*id).to_string())
        .collect()
}

/// The spec of a task: its entry in its parent's DAG. A loop iteration is its
/// loop's task run once more.
fn task_spec<'s>(
    spec: &'s PipelineSpec,
    by_id: &HashMap<&str, &Task>,
    dags: &mut HashMap<String, Option<&'s DagSpec>>,
    task: &Task,
) -> Option<&'s PipelineTaskSpec> {
    let parent = by_id.get(task.parent_id.as_str())?;
    if task.kind == TaskKind::LoopIteration {
        return task_spec(spec, by_id, dags, parent);
    }
    dag_of(spec, by_id, dags, parent, 0)?.tasks.get(&task.name)
}

/// The DAG a DAG-like task runs (memoised per task id; depth-limited against a
/// parent cycle in bad data).
fn dag_of<'s>(
    spec: &'s PipelineSpec,
    by_id: &HashMap<&str, &Task>,
    dags: &mut HashMap<String, Option<&'s DagSpec>>,
    task: &Task,
    depth: usize,
) -> Option<&'s DagSpec> {
    if let Some(known) = dags.get(&task.id) {
        return *known;
    }
    let found = if task.kind == TaskKind::Root {
        spec.root.dag.as_ref()
    } else if depth > 64 {
        None
    } else {
        let parent = by_id.get(task.parent_id.as_str());
        let entry = parent.and_then(|parent| {
            if task.kind == TaskKind::LoopIteration {
                let loop_parent = by_id.get(parent.parent_id.as_str())?;
                dag_of(spec, by_id, dags, loop_parent, depth + 1)?
                    .tasks
                    .get(&parent.name)
            } else {
                dag_of(spec, by_id, dags, parent, depth + 1)?
                    .tasks
                    .get(&task.name)
            }
        });
        entry
            .and_then(|entry| spec.component(&entry.component_ref.name))
            .and_then(|component| component.dag.as_ref())
    };
    dags.insert(task.id.clone(), found);
    found
}

impl Api {
    /// `GET /apis/v2beta1/runs/{run_id}/nodes`.
    pub async fn list_nodes(&self, run_id: &str) -> Result<ListNodesResponse> {
        self.run_for(run_id, kfpd_auth::Verb::Get).await?;
        let tasks = self.store.list_tasks(run_id).await?;
        let spec = self.parsed_run_spec(run_id).await;
        Ok(ListNodesResponse {
            nodes: nodes_of(spec.as_ref(), &tasks),
        })
    }

    /// The run's spec parsed, or None (logged) when it cannot be read.
    pub async fn parsed_run_spec(&self, run_id: &str) -> Option<PipelineSpec> {
        let text = match self.store.run_spec(run_id).await {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(run_id, %error, "cannot read the run's spec for its graph");
                return None;
            }
        };
        let value: Value = serde_json::from_str(&text).ok()?;
        match kfpd_ir::parse_spec_value(&value) {
            Ok(package) => Some(package.spec().clone()),
            Err(error) => {
                tracing::warn!(run_id, %error, "cannot parse the run's spec for its graph");
                None
            }
        }
    }

    /// `GET /apis/v2beta1/runs/{run_id}/nodes/{task_id}`.
    pub async fn get_node(&self, run_id: &str, task_id: &str) -> Result<NodeDetail> {
        self.run_for(run_id, kfpd_auth::Verb::Get).await?;
        let tasks = self.store.list_tasks(run_id).await?;
        let Some(task) = tasks.iter().find(|task| task.id == task_id) else {
            return Err(Error::not_found(format!(
                "run {run_id} has no task {task_id}"
            )));
        };
        let spec = self.parsed_run_spec(run_id).await;
        let after = nodes_of(spec.as_ref(), &tasks)
            .into_iter()
            .find(|node| node.task_id == task_id)
            .map(|node| node.after)
            .unwrap_or_default();
        let links = self.store.run_artifact_links(run_id).await?;
        let names: HashMap<String, String> = tasks
            .iter()
            .map(|task| (task.id.clone(), task.display_name.clone()))
            .collect();
        let artifacts: HashMap<i64, Artifact> = self
            .store
            .list_artifacts(run_id)
            .await?
            .into_iter()
            .map(|artifact| (artifact.id, artifact))
            .collect();
        let ids: Vec<i64> = artifacts.keys().copied().collect();
        let deleted = self.store.artifacts_deleted_at(&ids).await?;
        let mut input_artifacts = Vec::new();
        let mut output_artifacts = Vec::new();
        for link in links.iter().filter(|link| link.task_id == task_id) {
            let Some(artifact) = artifacts.get(&link.artifact_id) else {
                continue;
            };
            let entry = NodeArtifact {
                key: link.key.clone(),
                artifact: view(artifact, &links, &names, &deleted),
            };
            match link.direction {
                Direction::Input => input_artifacts.push(entry),
                Direction::Output => output_artifacts.push(entry),
            }
        }
        let json = |text: &str| -> Value {
            serde_json::from_str(text).unwrap_or(Value::Object(Default::default()))
        };
        let details = details_of(task);
        Ok(NodeDetail {
            node: node(task, after),
            path: task.path.clone(),
            inputs: json(&task.inputs),
            outputs: json(&task.outputs),
            details: Value::Object(details),
            fingerprint: task.fingerprint.clone(),
            input_artifacts,
            output_artifacts,
        })
    }
}

/// What the run page shows at one moment: the run (without `run_details`, which the
/// nodes replace, and without an inline spec, which can be megabytes) and its nodes.
#[derive(Serialize)]
pub struct RunView {
    pub run: kfpd_api::v2beta1::Run,
    pub nodes: Vec<Node>,
}

impl Api {
    /// The run and its nodes now; `spec` is parsed once by the caller.
    pub async fn run_view(&self, run_id: &str, spec: Option<&PipelineSpec>) -> Result<RunView> {
        let mut run = self.run_for(run_id, kfpd_auth::Verb::Get).await?;
        run.pipeline_spec = None;
        let tasks = self.store.list_tasks(run_id).await?;
        Ok(RunView {
            run: crate::convert::run(run)?,
            nodes: nodes_of(spec, &tasks),
        })
    }
}
