//! `dsl.ParallelFor`: the items of a loop, the scope each iteration gets, and the
//! loop's result over its iterations (`dsl.Collected`).
//!
//! Items come from a static list (`items.raw`), from an input parameter holding a
//! list (or a JSON array as text), or from an input artifact list — the last one
//! upstream's Argo compiler rejects; kfpd runs it as the SDK's local runner does.

use crate::error::Error;
use std::collections::BTreeMap;

use kfpd_ir::spec::{ComponentSpec, PipelineTaskSpec};
use kfpd_store::TaskState;
use serde_json::{Map, Value};

use crate::results::{ArtifactRef, Artifacts, Scope, TaskResult};
use crate::values::{coerce, normalize_number};

/// One item of a loop.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Parameter(Value),
    Artifact(ArtifactRef),
}

/// A loop's items, the input each goes into, and the scope all iterations share.
#[derive(Clone, Debug)]
pub struct Items {
    pub items: Vec<Item>,
    pub item_input: String,
    /// The loop task's inputs, the list included (a loop body may declare it as an
    /// input, e.g. to loop over it again inside).
    pub scope: Scope,
}

/// The items of loop task `task`, given its resolved inputs.
pub fn items(
    task: &PipelineTaskSpec,
    parameters: &Map<String, Value>,
    artifacts: &Artifacts,
) -> Result<Items, Error> {
    (|| -> Result<Items, String> {
        let scope = Scope {
            parameters: parameters.clone(),
            artifacts: artifacts.clone(),
        };
        if let Some(iterator) = &task.parameter_iterator {
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
                            return Err(format!(
                                "loop items input {input:?} is not a list: {other}"
                            ))
                        }
                    }
                }
                (None, None) => return Err("the loop names no items".to_string()),
            };
            let items = list
                .into_iter()
                .map(|item| Item::Parameter(normalize_number(item)))
                .collect();
            return Ok(Items {
                items,
                item_input: iterator.item_input.clone(),
                scope,
            });
        }
        if let Some(iterator) = &task.artifact_iterator {
            let input = &iterator.items.input_artifact;
            let list = scope
                .artifacts
                .get(input)
                .cloned()
                .ok_or_else(|| format!("loop items input artifact {input:?} has no value"))?;
            let items = list.into_iter().map(Item::Artifact).collect();
            return Ok(Items {
                items,
                item_input: iterator.item_input.clone(),
                scope,
            });
        }
        Err("the task has no iterator".to_string())
    })()
    .map_err(Error::Items)
}

fn parse_list(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err("not a JSON list".to_string()),
        Err(error) => Err(format!("not a JSON list: {error}")),
    }
}

/// How many iterations may run at once; `None` for no limit.
pub fn parallelism(task: &PipelineTaskSpec) -> Option<usize> {
    task.iterator_policy
        .as_ref()
        .map(|policy| policy.parallelism_limit)
        .filter(|limit| *limit > 0)
        .map(|limit| limit as usize)
}

/// The scope of one iteration: the shared scope with its item in the item input,
/// typed as the loop body declares it (an item that does not fit is passed as it
/// is and judged by the tasks that use it).
pub fn iteration_scope(
    body: &ComponentSpec,
    shared: &Scope,
    item_input: &str,
    item: Item,
) -> Scope {
    let mut scope = shared.clone();
    match item {
        Item::Parameter(value) => {
            let declared = body.input_definitions.parameters.get(item_input);
            let value = match declared {
                Some(definition) => {
                    coerce(item_input, definition.effective_type(), value.clone()).unwrap_or(value)
                }
                None => value,
            };
            scope.parameters.insert(item_input.to_string(), value);
        }
        Item::Artifact(artifact) => {
            scope
                .artifacts
                .insert(item_input.to_string(), vec![artifact]);
        }
    }
    scope
}

/// The inputs an iteration's row keeps: only its item. The inputs all iterations
/// share are on the loop's row, and storing them per iteration would grow with items².
pub fn iteration_inputs(scope: &Scope, item_input: &str) -> Map<String, Value> {
    let mut item_only = Map::new();
    if let Some(value) = scope.parameters.get(item_input) {
        item_only.insert(item_input.to_string(), value.clone());
    }
    item_only
}

/// What a loop reports once its iterations ended (and the run was not stopped):
/// the first failure in item order; a failure when an iteration did not finish
/// (`incomplete`); else the collected outputs. `None` is an iteration not started.
pub fn result(
    body: &ComponentSpec,
    display_name: &str,
    results: &[Option<TaskResult>],
    incomplete: bool,
) -> TaskResult {
    if let Some(failure) = results
        .iter()
        .flatten()
        .find(|result| result.state == TaskState::Failed)
    {
        return TaskResult::ended(TaskState::Failed, failure.error.clone());
    }
    if incomplete {
        return TaskResult::failed(format!(
            "task {display_name:?}: a loop iteration did not finish"
        ));
    }
    let (parameters, artifacts) = collect(body, results);
    TaskResult::succeeded(parameters, artifacts)
}

/// `dsl.Collected`: each output parameter of the loop body becomes the list of its
/// values over the iterations (in item order; nested loops give lists of lists),
/// each output artifact the concatenation of the iterations' artifacts.
fn collect(
    component: &ComponentSpec,
    results: &[Option<TaskResult>],
) -> (Map<String, Value>, Artifacts) {
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

    fn task(value: Value) -> PipelineTaskSpec {
        serde_json::from_value(value).unwrap()
    }

    fn parameters(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn items_from_raw_and_from_inputs() {
        let raw = task(
            json!({"parameterIterator": {"itemInput": "item", "items": {"raw": "[1, 2.0, {\"a\": 3}]"}}}),
        );
        let found = items(&raw, &parameters(json!({"other": 1})), &BTreeMap::new()).unwrap();
        assert_eq!(found.item_input, "item");
        assert_eq!(
            found.items,
            vec![
                Item::Parameter(json!(1)),
                Item::Parameter(json!(2)),
                Item::Parameter(json!({"a": 3}))
            ]
        );
        assert_eq!(found.scope.parameters["other"], json!(1));

        let from_input = task(
            json!({"parameterIterator": {"itemInput": "item", "items": {"inputParameter": "list"}}}),
        );
        let found = items(
            &from_input,
            &parameters(json!({"list": "[\"a\", \"b\"]", "other": 1})),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(found.items.len(), 2);
        assert!(
            found.scope.parameters.contains_key("list"),
            "iterations see the whole list too"
        );

        let error = items(
            &from_input,
            &parameters(json!({"list": 5})),
            &BTreeMap::new(),
        )
        .err()
        .unwrap();
        let error = error.to_string();
        assert!(
            error.contains("\"list\"") && error.contains("not a list"),
            "{error}"
        );
    }

    #[test]
    fn iterations_get_their_item_typed_as_declared() {
        let body: ComponentSpec =
            serde_json::from_value(json!({"inputDefinitions": {"parameters": {
                "item": {"parameterType": "STRING"}
            }}}))
            .unwrap();
        let shared = Scope {
            parameters: parameters(json!({"list": [1, 2]})),
            artifacts: BTreeMap::new(),
        };
        let scope = iteration_scope(&body, &shared, "item", Item::Parameter(json!(2)));
        assert_eq!(scope.parameters["item"], json!("2"));
        assert_eq!(
            Value::Object(iteration_inputs(&scope, "item")),
            json!({"item": "2"})
        );
    }

    #[test]
    fn collected_outputs_keep_item_order_and_nesting() {
        let component: ComponentSpec = serde_json::from_value(json!({"dag": {"outputs": {"parameters": {
            "out": {"valueFromParameter": {"producerSubtask": "t", "outputParameterKey": "Output"}}
        }}}}))
        .unwrap();
        let ran = |value: Value| {
            let mut result = TaskResult::ended(TaskState::Succeeded, None);
            result.parameters.insert("out".into(), value);
            Some(result)
        };
        let results = [ran(json!([1, 2])), None, ran(json!([3]))];
        let outcome = result(&component, "loop", &results, false);
        assert_eq!(outcome.parameters["out"], json!([[1, 2], [3]]));
        let outcome = result(&component, "loop", &results, true);
        assert_eq!(
            outcome.error.as_deref(),
            Some("task \"loop\": a loop iteration did not finish")
        );
        let failed = [ran(json!(1)), Some(TaskResult::failed("boom".into()))];
        assert_eq!(
            result(&component, "loop", &failed, true).error.as_deref(),
            Some("boom")
        );
    }
}
