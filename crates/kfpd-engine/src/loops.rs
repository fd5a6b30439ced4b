//! `dsl.ParallelFor`: one run of the loop's DAG per item, at most
//! `iterator_policy.parallelism_limit` at once, and the loop's outputs collected
//! over the iterations (`dsl.Collected`).
//!
//! Items come from a static list (`items.raw`), from an input parameter holding a
//! list (or a JSON array as text), or from an input artifact list — the last one
//! upstream's Argo compiler rejects; kfpd runs it as the SDK's local runner does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kfpd_ir::spec::{ComponentSpec, PipelineTaskSpec};
use kfpd_store::{TaskKind, TaskState};
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::dag::{run_dag_with, ArtifactRef, Scope, TaskResult};
use crate::engine::RunContext;
use crate::records::TaskRecord;
use crate::values::{coerce, normalize_number};

/// A loop task ready to run, with its inputs resolved.
pub(crate) struct LoopCall {
    pub name: String,
    pub display_name: String,
    pub path: String,
    pub parent_id: String,
    pub task: PipelineTaskSpec,
    /// The loop's body: a DAG component run once per item.
    pub component: ComponentSpec,
    pub parameters: Map<String, Value>,
    pub artifacts: BTreeMap<String, Vec<ArtifactRef>>,
}

/// One item of a loop.
#[derive(Clone, Debug, PartialEq)]
enum Item {
    Parameter(Value),
    Artifact(ArtifactRef),
}

/// What every iteration shares, and the input its item goes into.
struct Body {
    component: ComponentSpec,
    scope: Scope,
    item_input: String,
    loop_id: String,
    name: String,
    display_name: String,
    path: String,
    task: PipelineTaskSpec,
}

pub(crate) async fn run_loop(context: Arc<RunContext>, call: LoopCall) -> TaskResult {
    let mut record = TaskRecord::start(
        &context,
        &call.parent_id,
        &call.path,
        TaskKind::Loop,
        &call.name,
        &call.display_name,
        -1,
        &call.parameters,
    );
    let (items, item_input, scope) = match loop_items(&call) {
        Ok(found) => found,
        Err(error) => {
            let message = format!("task {:?}: {error}", call.display_name);
            context.record_failure(&message);
            record.finish(
                &context,
                TaskState::Failed,
                Some(message.clone()),
                &Map::new(),
            );
            return TaskResult::failed(message);
        }
    };
    record.set_detail("iteration_count", json!(items.len()));
    record.save(&context);

    let limit = call
        .task
        .iterator_policy
        .as_ref()
        .map(|policy| policy.parallelism_limit)
        .filter(|limit| *limit > 0);
    let gate = limit.map(|limit| Arc::new(Semaphore::new(limit as usize)));
    let body = Arc::new(Body {
        component: call.component,
        scope,
        item_input,
        loop_id: record.task.id.clone(),
        name: call.name,
        display_name: call.display_name,
        path: call.path,
        task: call.task,
    });
    let count = items.len();
    let failed = Arc::new(AtomicBool::new(false));
    let mut running: JoinSet<(usize, Option<TaskResult>)> = JoinSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let context = Arc::clone(&context);
        let body = Arc::clone(&body);
        let gate = gate.clone();
        let failed = Arc::clone(&failed);
        running.spawn(async move {
            let _permit = match gate {
                Some(gate) => match gate.acquire_owned().await {
                    Ok(permit) => Some(permit),
                    Err(_) => return (index, None),
                },
                None => None,
            };
            // Fail-fast, as the DAG around it: no new iteration after a failure.
            if failed.load(Ordering::SeqCst) || context.cancel.is_cancelled() {
                return (index, None);
            }
            let result = run_iteration(&context, &body, index, item).await;
            if result.state == TaskState::Failed {
                failed.store(true, Ordering::SeqCst);
            }
            (index, Some(result))
        });
    }
    let mut results: Vec<Option<TaskResult>> = vec![None; count];
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = result,
            Err(error) => {
                tracing::error!(%error, "loop iteration panicked");
                failed.store(true, Ordering::SeqCst);
            }
        }
    }

    let result = if context.cancel.is_cancelled() {
        TaskResult::canceled()
    } else if let Some(failure) = results
        .iter()
        .flatten()
        .find(|result| result.state == TaskState::Failed)
    {
        TaskResult::ended(TaskState::Failed, failure.error.clone())
    } else if failed.load(Ordering::SeqCst) {
        TaskResult::failed(format!(
            "task {:?}: a loop iteration did not finish",
            body.display_name
        ))
    } else {
        let (parameters, artifacts) = collect(&body.component, &results);
        TaskResult {
            state: TaskState::Succeeded,
            error: None,
            parameters,
            artifacts,
        }
    };
    record.finish(
        &context,
        result.state,
        result.error.clone(),
        &result.parameters,
    );
    result
}

/// The items, the input each goes into, and the scope all iterations share: the
/// loop task's inputs, the list included (a loop body may declare it as an input,
/// e.g. to loop over it again inside).
fn loop_items(call: &LoopCall) -> Result<(Vec<Item>, String, Scope), String> {
    let scope = Scope {
        parameters: call.parameters.clone(),
        artifacts: call.artifacts.clone(),
    };
    if let Some(iterator) = &call.task.parameter_iterator {
        let list = match (&iterator.items.raw, &iterator.items.input_parameter) {
            (Some(raw), _) => {
                parse_list(raw).map_err(|error| format!("loop items {raw:?}: {error}"))?
            }
            (None, Some(input)) => {
                let value = scope
                    .parameters
                    .get(input)
                    .cloned()
                    .ok_or_else(|| format!("loop items input {input:?} has no value"))?;
                match value {
                    Value::Array(items) => items,
                    Value::String(text) => parse_list(&text)
                        .map_err(|error| format!("loop items input {input:?}: {error}"))?,
                    other => {
                        return Err(format!("loop items input {input:?} is not a list: {other}"))
                    }
                }
            }
            (None, None) => return Err("the loop names no items".to_string()),
        };
        let items = list
            .into_iter()
            .map(|item| Item::Parameter(normalize_number(item)))
            .collect();
        return Ok((items, iterator.item_input.clone(), scope));
    }
    if let Some(iterator) = &call.task.artifact_iterator {
        let input = &iterator.items.input_artifact;
        let list = scope
            .artifacts
            .get(input)
            .cloned()
            .ok_or_else(|| format!("loop items input artifact {input:?} has no value"))?;
        let items = list.into_iter().map(Item::Artifact).collect();
        return Ok((items, iterator.item_input.clone(), scope));
    }
    Err("the task has no iterator".to_string())
}

fn parse_list(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err("not a JSON list".to_string()),
        Err(error) => Err(format!("not a JSON list: {error}")),
    }
}

async fn run_iteration(
    context: &Arc<RunContext>,
    body: &Body,
    index: usize,
    item: Item,
) -> TaskResult {
    let mut scope = body.scope.clone();
    match item {
        Item::Parameter(value) => {
            // Typed as the loop body declares its item input; an item that does not
            // fit is passed as it is and judged by the tasks that use it.
            let declared = body
                .component
                .input_definitions
                .parameters
                .get(&body.item_input);
            let value = match declared {
                Some(definition) => {
                    coerce(&body.item_input, definition.effective_type(), value.clone())
                        .unwrap_or(value)
                }
                None => value,
            };
            scope.parameters.insert(body.item_input.clone(), value);
        }
        Item::Artifact(artifact) => {
            scope
                .artifacts
                .insert(body.item_input.clone(), vec![artifact]);
        }
    }
    let path = format!("{}/{index}", body.path);
    let display_name = format!("{}-iteration-{index}", body.display_name);
    let iteration_index = i64::try_from(index).unwrap_or(i64::MAX);
    // The row keeps only the item: the inputs all iterations share are on the
    // loop's row, and storing them per iteration would grow with items².
    let mut item_only = Map::new();
    if let Some(value) = scope.parameters.get(&body.item_input) {
        item_only.insert(body.item_input.clone(), value.clone());
    }
    let mut record = TaskRecord::start(
        context,
        &body.loop_id,
        &path,
        TaskKind::LoopIteration,
        &body.name,
        &display_name,
        iteration_index,
        &item_only,
    );
    let result = run_dag_with(
        Arc::clone(context),
        body.component.clone(),
        scope,
        record.task.id.clone(),
        path,
        body.task.retry_policy.clone(),
    )
    .await;
    record.finish(
        context,
        result.state,
        result.error.clone(),
        &result.parameters,
    );
    result
}

/// `dsl.Collected`: each output parameter of the loop body becomes the list of its
/// values over the iterations (in item order; nested loops give lists of lists),
/// each output artifact the concatenation of the iterations' artifacts.
fn collect(
    component: &ComponentSpec,
    results: &[Option<TaskResult>],
) -> (Map<String, Value>, BTreeMap<String, Vec<ArtifactRef>>) {
    let Some(dag) = &component.dag else {
        return (Map::new(), BTreeMap::new());
    };
    let mut parameters = Map::new();
    for name in dag.outputs.parameters.keys() {
        let values: Vec<Value> = results
            .iter()
            .flatten()
            .filter_map(|result| result.parameters.get(name).cloned())
            .collect();
        parameters.insert(name.clone(), Value::Array(values));
    }
    let mut artifacts = BTreeMap::new();
    for name in dag.outputs.artifacts.keys() {
        let list: Vec<ArtifactRef> = results
            .iter()
            .flatten()
            .filter_map(|result| result.artifacts.get(name))
            .flatten()
            .cloned()
            .collect();
        artifacts.insert(name.clone(), list);
    }
    (parameters, artifacts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(task: Value, parameters: Value) -> LoopCall {
        LoopCall {
            name: "for-loop-2".into(),
            display_name: "for-loop-2".into(),
            path: "root/for-loop-2".into(),
            parent_id: String::new(),
            task: serde_json::from_value(task).unwrap(),
            component: ComponentSpec::default(),
            parameters: parameters.as_object().cloned().unwrap_or_default(),
            artifacts: BTreeMap::new(),
        }
    }

    #[test]
    fn items_from_raw_and_from_inputs() {
        let raw = call(
            json!({"parameterIterator": {"itemInput": "item", "items": {"raw": "[1, 2.0, {\"a\": 3}]"}}}),
            json!({"other": 1}),
        );
        let (items, input, scope) = loop_items(&raw).unwrap();
        assert_eq!(input, "item");
        assert_eq!(
            items,
            vec![
                Item::Parameter(json!(1)),
                Item::Parameter(json!(2)),
                Item::Parameter(json!({"a": 3}))
            ]
        );
        assert_eq!(scope.parameters["other"], json!(1));

        let from_input = call(
            json!({"parameterIterator": {"itemInput": "item", "items": {"inputParameter": "list"}}}),
            json!({"list": "[\"a\", \"b\"]", "other": 1}),
        );
        let (items, _, scope) = loop_items(&from_input).unwrap();
        assert_eq!(items.len(), 2);
        assert!(
            scope.parameters.contains_key("list"),
            "iterations see the whole list too"
        );

        let bad = call(
            json!({"parameterIterator": {"itemInput": "item", "items": {"inputParameter": "list"}}}),
            json!({"list": 5}),
        );
        let error = loop_items(&bad).err().unwrap();
        assert!(
            error.contains("\"list\"") && error.contains("not a list"),
            "{error}"
        );
    }

    #[test]
    fn collected_outputs_keep_item_order_and_nesting() {
        let component: ComponentSpec = serde_json::from_value(json!({"dag": {"outputs": {"parameters": {
            "out": {"valueFromParameter": {"producerSubtask": "t", "outputParameterKey": "Output"}}
        }}}}))
        .unwrap();
        let result = |value: Value| {
            let mut result = TaskResult::ended(TaskState::Succeeded, None);
            result.parameters.insert("out".into(), value);
            Some(result)
        };
        let (parameters, _) = collect(
            &component,
            &[result(json!([1, 2])), None, result(json!([3]))],
        );
        assert_eq!(parameters["out"], json!([[1, 2], [3]]));
    }
}
