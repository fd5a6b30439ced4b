//! The rules of a DAG, as upstream's compiled Argo workflow applies them: when a
//! task may start, when it is skipped instead, its condition, its kind, and what
//! the DAG reports when its tasks have ended (`dsl.OneOf` included).
//!
//! A task runs when every upstream task succeeded, or — with
//! `ALL_UPSTREAM_TASKS_COMPLETED` (exit tasks, `ignore_upstream_failure`) — when
//! they all ended, whatever the outcome. A task whose upstream did not succeed is
//! SKIPPED, as is one whose condition is false; after a failure no new task of the
//! same DAG starts (fail-fast), except those that run on completion.

use crate::error::Error;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use kfpd_ir::spec::{
    DagSpec, ExecutorKind, Implementation, PipelineSpec, PipelineTaskSpec, TriggerStrategy,
};
use kfpd_store::{TaskKind, TaskState};
use serde_json::Map;

use crate::cel::{self, ConditionArtifact};
use crate::inputs::ResolvedInputs;
use crate::results::{ArtifactRef, Artifacts, TaskResult};

/// Each task's upstream tasks within the DAG; names outside it (a malformed
/// spec) cannot hold a task back.
pub fn upstream(dag: &DagSpec) -> HashMap<&str, BTreeSet<&str>> {
    dag.tasks
        .iter()
        .map(|(name, task)| {
            let known = task
                .upstream_tasks()
                .into_iter()
                .filter(|dependency| dag.tasks.contains_key(*dependency))
                .collect();
            (name.as_str(), known)
        })
        .collect()
}

/// The waiting tasks whose upstream tasks have all ended, in name order.
pub fn ready<'a>(
    waiting: &BTreeSet<&'a str>,
    upstream: &HashMap<&str, BTreeSet<&str>>,
    results: &HashMap<String, TaskResult>,
) -> Vec<&'a str> {
    waiting
        .iter()
        .copied()
        .filter(|name| {
            upstream.get(name).is_none_or(|deps| {
                deps.iter()
                    .all(|dependency| results.contains_key(*dependency))
            })
        })
        .collect()
}

/// Whether a task starts once its upstream tasks ended, whatever their outcome.
pub fn runs_on_completion(task: &PipelineTaskSpec) -> bool {
    task.trigger_strategy() == TriggerStrategy::AllUpstreamTasksCompleted
}

/// Why a ready task does not start, with the state it ends in, or `None` when it
/// starts: the run was stopped, an upstream task did not succeed, or another task
/// of the DAG failed (the last two unless it runs on completion).
pub fn not_started(
    canceled: bool,
    dag_failed: bool,
    runs_on_completion: bool,
    upstream: &BTreeSet<&str>,
    results: &HashMap<String, TaskResult>,
) -> Option<(TaskState, String)> {
    if canceled {
        return Some((TaskState::Canceled, "run was terminated".to_string()));
    }
    if runs_on_completion {
        return None;
    }
    let not_succeeded = upstream.iter().find_map(|dependency| {
        results
            .get(*dependency)
            .filter(|result| !result.state.is_done())
            .map(|result| (dependency, result.state))
    });
    if let Some((dependency, state)) = not_succeeded {
        return Some((
            TaskState::Skipped,
            format!(
                "not run: upstream task {dependency:?} is {}",
                state.as_str()
            ),
        ));
    }
    if dag_failed {
        return Some((
            TaskState::Skipped,
            "not run: another task of its DAG failed".to_string(),
        ));
    }
    None
}

/// Settles the tasks of a DAG that never started and never will, as an executor
/// that omits them (Argo) leaves them: one whose upstream task did not succeed, or
/// any when another task of the DAG failed (fail-fast), ends unrun with the state
/// and reason the local engine records (see [`not_started`]). `results` gets them;
/// returns whether every task in `never_started` was settled (the others may still
/// start: a task that runs on completion, or one whose upstream is still running).
pub fn settle_never_started(
    dag: &DagSpec,
    results: &mut HashMap<String, TaskResult>,
    never_started: &[&str],
) -> bool {
    let upstream = upstream(dag);
    let mut pending: Vec<&str> = never_started.to_vec();
    while !pending.is_empty() {
        let dag_failed = results
            .values()
            .any(|result| result.state == TaskState::Failed);
        let mut settled = Vec::new();
        for name in &pending {
            let Some(task) = dag.tasks.get(*name) else {
                continue;
            };
            let dependencies = upstream.get(name).cloned().unwrap_or_default();
            let upstream_ended = dependencies
                .iter()
                .all(|dependency| results.contains_key(*dependency));
            if !upstream_ended && !dag_failed {
                continue;
            }
            let unrun = not_started(
                false,
                dag_failed,
                runs_on_completion(task),
                &dependencies,
                results,
            );
            if let Some((state, reason)) = unrun {
                settled.push((name.to_string(), TaskResult::ended(state, Some(reason))));
            }
        }
        if settled.is_empty() {
            return false;
        }
        pending.retain(|name| settled.iter().all(|(done, _)| done != name));
        results.extend(settled);
    }
    true
}

/// A task's name as shown: its `taskInfo.name`, else its key in the DAG.
pub fn display_name(name: &str, task: &PipelineTaskSpec) -> String {
    if task.task_info.name.is_empty() {
        name.to_string()
    } else {
        task.task_info.name.clone()
    }
}

/// The kind of row a task gets.
pub fn task_kind(spec: &PipelineSpec, task: &PipelineTaskSpec) -> TaskKind {
    let Some(component) = spec.component(&task.component_ref.name) else {
        return TaskKind::Runtime;
    };
    match component.implementation() {
        Some(Implementation::Dag(_)) => dag_kind(&task.component_ref.name, task),
        Some(Implementation::Executor(_)) => {
            match spec.executor_of(component).and_then(|e| e.kind()) {
                Some(ExecutorKind::Importer(_)) => TaskKind::Importer,
                _ => TaskKind::Runtime,
            }
        }
        None => TaskKind::Runtime,
    }
}

/// A DAG task's kind, from the names the SDK gives control-flow components.
fn dag_kind(component_name: &str, task: &PipelineTaskSpec) -> TaskKind {
    let name = component_name.trim_start_matches("comp-");
    if task.parameter_iterator.is_some() || task.artifact_iterator.is_some() {
        TaskKind::Loop
    } else if name.starts_with("condition-branches-") {
        TaskKind::Condition
    } else if name.starts_with("condition-") {
        TaskKind::ConditionBranch
    } else if name.starts_with("exit-handler-") {
        TaskKind::ExitHandler
    } else {
        TaskKind::Dag
    }
}

/// Evaluates a task's condition over its resolved inputs: `Ok(None)` when it runs,
/// `Ok(Some(reason))` when it is skipped.
pub fn skipped_by_condition(
    task: &PipelineTaskSpec,
    inputs: &ResolvedInputs,
) -> Result<Option<String>, Error> {
    (|| -> Result<Option<String>, String> {
        let Some(expression) = task.condition() else {
            return Ok(None);
        };
        let artifacts: BTreeMap<String, Vec<ConditionArtifact>> = inputs
            .artifacts
            .iter()
            .map(|(input, list)| (input.clone(), list.iter().map(condition_artifact).collect()))
            .collect();
        if cel::condition(expression, &inputs.parameters, &artifacts)? {
            return Ok(None);
        }
        Ok(Some(format!(
            "not run: its condition is false ({expression})"
        )))
    })()
    .map_err(Error::Condition)
}

fn condition_artifact(artifact: &ArtifactRef) -> ConditionArtifact {
    ConditionArtifact {
        name: artifact.name.clone(),
        uri: artifact.uri.clone(),
        schema_title: artifact.schema_title.clone(),
        metadata: artifact.metadata.clone(),
    }
}

/// What a DAG reports once its tasks ended (and the run was not stopped): the
/// first failure in task-name order, so the error does not depend on timing, or
/// success with its outputs.
pub fn result(dag: &DagSpec, results: &HashMap<String, TaskResult>) -> TaskResult {
    let failed = dag
        .tasks
        .keys()
        .filter_map(|name| results.get(name))
        .find(|result| result.state == TaskState::Failed);
    if let Some(failure) = failed {
        return TaskResult::ended(TaskState::Failed, failure.error.clone());
    }
    let (parameters, artifacts) = outputs(dag, results);
    TaskResult::succeeded(parameters, artifacts)
}

/// A DAG's outputs from its tasks' results: the first selector whose task finished
/// with the value wins, which is how `dsl.OneOf` picks the branch that ran.
pub fn outputs(
    dag: &DagSpec,
    results: &HashMap<String, TaskResult>,
) -> (Map<String, serde_json::Value>, Artifacts) {
    let mut parameters = Map::new();
    for (name, output) in &dag.outputs.parameters {
        let found = output.selectors().into_iter().find_map(|selector| {
            results
                .get(&selector.producer_subtask)
                .filter(|result| result.state.is_done())
                .and_then(|result| result.parameters.get(&selector.output_parameter_key))
        });
        if let Some(value) = found {
            parameters.insert(name.clone(), value.clone());
        }
    }
    let mut artifacts = BTreeMap::new();
    for (name, output) in &dag.outputs.artifacts {
        let found = output.artifact_selectors.iter().find_map(|selector| {
            results
                .get(&selector.producer_subtask)
                .filter(|result| result.state.is_done())
                .and_then(|result| result.artifacts.get(&selector.output_artifact_key))
        });
        if let Some(list) = found {
            artifacts.insert(name.clone(), list.clone());
        }
    }
    (parameters, artifacts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn dag(value: Value) -> DagSpec {
        serde_json::from_value(value).unwrap()
    }

    fn ended(state: TaskState) -> TaskResult {
        TaskResult::ended(state, Some(format!("{} here", state.as_str())))
    }

    #[test]
    fn tasks_start_when_their_upstream_ended() {
        let dag = dag(json!({"tasks": {
            "a": {"componentRef": {"name": "c"}},
            "b": {"componentRef": {"name": "c"}, "dependentTasks": ["a", "elsewhere"]},
            "c": {"componentRef": {"name": "c"}, "inputs": {"parameters": {"x": {
                "taskOutputParameter": {"producerTask": "b", "outputParameterKey": "o"}
            }}}}
        }}));
        let upstream = upstream(&dag);
        assert_eq!(
            upstream["b"],
            BTreeSet::from(["a"]),
            "unknown names are dropped"
        );
        assert_eq!(upstream["c"], BTreeSet::from(["b"]), "data producers count");
        let waiting: BTreeSet<&str> = ["a", "b", "c"].into();
        let mut results = HashMap::new();
        assert_eq!(ready(&waiting, &upstream, &results), ["a"]);
        results.insert("a".to_string(), ended(TaskState::Succeeded));
        let waiting: BTreeSet<&str> = ["b", "c"].into();
        assert_eq!(ready(&waiting, &upstream, &results), ["b"]);
    }

    #[test]
    fn skip_rules() {
        let results = HashMap::from([
            ("ok".to_string(), ended(TaskState::Cached)),
            ("bad".to_string(), ended(TaskState::Failed)),
        ]);
        let on_ok = BTreeSet::from(["ok"]);
        let on_bad = BTreeSet::from(["ok", "bad"]);
        assert_eq!(not_started(false, false, false, &on_ok, &results), None);
        assert_eq!(
            not_started(false, false, false, &on_bad, &results),
            Some((
                TaskState::Skipped,
                "not run: upstream task \"bad\" is FAILED".to_string()
            ))
        );
        assert_eq!(not_started(false, true, true, &on_bad, &results), None);
        assert_eq!(
            not_started(false, true, false, &on_ok, &results),
            Some((
                TaskState::Skipped,
                "not run: another task of its DAG failed".to_string()
            ))
        );
        assert_eq!(
            not_started(true, false, true, &on_ok, &results).map(|(state, _)| state),
            Some(TaskState::Canceled)
        );
    }

    #[test]
    fn tasks_never_started_after_a_failure_end_unrun() {
        let dag = dag(json!({"tasks": {
            "first": {"componentRef": {"name": "c"}},
            "second": {"componentRef": {"name": "c"}, "dependentTasks": ["first"]},
            "third": {"componentRef": {"name": "c"}, "dependentTasks": ["second"]},
            "cleanup": {
                "componentRef": {"name": "c"},
                "dependentTasks": ["third"],
                "triggerPolicy": {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
            }
        }}));
        let mut results = HashMap::from([("first".to_string(), ended(TaskState::Failed))]);
        assert!(settle_never_started(
            &dag,
            &mut results,
            &["second", "third"]
        ));
        assert_eq!(
            results["second"].error.as_deref(),
            Some("not run: upstream task \"first\" is FAILED")
        );
        assert_eq!(results["third"].state, TaskState::Skipped);
        assert!(
            !settle_never_started(&dag, &mut results, &["cleanup"]),
            "a task that runs on completion may still start"
        );

        let mut running = HashMap::from([("first".to_string(), ended(TaskState::Succeeded))]);
        assert!(
            !settle_never_started(&dag, &mut running, &["third"]),
            "its upstream may still run"
        );
        assert!(!running.contains_key("third"));
    }

    #[test]
    fn conditions_skip_or_fail() {
        let task: PipelineTaskSpec = serde_json::from_value(json!({
            "componentRef": {"name": "c"},
            "triggerPolicy": {"condition": "inputs.parameter_values['n'] > 1"}
        }))
        .unwrap();
        let mut inputs = ResolvedInputs::default();
        inputs.parameters.insert("n".into(), json!(2));
        assert_eq!(skipped_by_condition(&task, &inputs), Ok(None));
        inputs.parameters.insert("n".into(), json!(0));
        let reason = skipped_by_condition(&task, &inputs).unwrap().unwrap();
        assert!(reason.contains("condition is false"), "{reason}");
        inputs.parameters.insert("n".into(), json!("x"));
        assert!(skipped_by_condition(&task, &inputs).is_err());
    }

    #[test]
    fn kinds_follow_component_names() {
        let task = |iterator: bool| -> PipelineTaskSpec {
            let mut value = json!({"componentRef": {"name": "x"}});
            if iterator {
                value["parameterIterator"] = json!({"itemInput": "i", "items": {"raw": "[1]"}});
            }
            serde_json::from_value(value).unwrap()
        };
        assert_eq!(dag_kind("comp-for-loop-2", &task(true)), TaskKind::Loop);
        assert_eq!(
            dag_kind("comp-condition-branches-1", &task(false)),
            TaskKind::Condition
        );
        assert_eq!(
            dag_kind("comp-condition-3", &task(false)),
            TaskKind::ConditionBranch
        );
        assert_eq!(
            dag_kind("comp-exit-handler-1", &task(false)),
            TaskKind::ExitHandler
        );
        assert_eq!(dag_kind("comp-inner", &task(false)), TaskKind::Dag);
    }

    #[test]
    fn one_of_takes_the_branch_that_ran_and_failures_go_by_name() {
        let dag = dag(json!({
            "tasks": {"b": {"componentRef": {"name": "c"}}, "a": {"componentRef": {"name": "c"}}},
            "outputs": {"parameters": {"out": {"valueFromOneof": {"parameterSelectors": [
                {"producerSubtask": "a", "outputParameterKey": "o"},
                {"producerSubtask": "b", "outputParameterKey": "o"}
            ]}}}}
        }));
        let mut ran = ended(TaskState::Succeeded);
        ran.parameters.insert("o".into(), json!("from b"));
        let results = HashMap::from([
            ("a".to_string(), ended(TaskState::Skipped)),
            ("b".to_string(), ran),
        ]);
        let outcome = result(&dag, &results);
        assert_eq!(outcome.state, TaskState::Succeeded);
        assert_eq!(outcome.parameters["out"], json!("from b"));

        let results = HashMap::from([
            ("a".to_string(), ended(TaskState::Failed)),
            ("b".to_string(), ended(TaskState::Failed)),
        ]);
        let outcome = result(&dag, &results);
        assert_eq!(outcome.error.as_deref(), Some("FAILED here"));
    }
}
