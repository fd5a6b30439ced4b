//! A task's inputs, resolved from the enclosing DAG's scope and its siblings'
//! results: producer outputs, constants, job placeholders, final statuses and
//! selectors, typed as the component declares them; defaults for the rest.

use crate::error::Error;
use std::collections::HashMap;

use kfpd_ir::spec::{
    ArtifactSource, ComponentSpec, ParameterSource, PipelineSpec, PipelineTaskSpec,
};
use kfpd_store::TaskState;
use serde_json::{json, Map, Value};

use crate::cel;
use crate::results::{Artifacts, Scope, TaskResult};
use crate::run::RunFacts;
use crate::values::coerce;

/// A task's inputs, resolved from its scope and its siblings' results.
#[derive(Clone, Debug, Default)]
pub struct ResolvedInputs {
    pub parameters: Map<String, Value>,
    pub artifacts: Artifacts,
    /// Inputs of a task that runs on completion whose producer gave nothing (it
    /// failed or was skipped): input name → why. Component defaults may fill them.
    pub missing: Vec<(String, String)>,
}

/// What a DAG task needs to resolve its inputs.
pub struct Siblings<'a> {
    pub spec: &'a PipelineSpec,
    pub run: &'a RunFacts,
    /// The inputs of the DAG the task is in.
    pub scope: &'a Scope,
    /// The results of the DAG's tasks that ended, by task name.
    pub results: &'a HashMap<String, TaskResult>,
}

/// One output of a sibling, looked up for an input.
enum Lookup<T> {
    Found(T),
    /// The producer ended without it and the consumer runs anyway: why.
    Missing(String),
}

impl Siblings<'_> {
    /// Output `key` of `producer`, parameters and artifacts alike (`what` names
    /// which in messages): an error unless the producer gave it, or the consumer
    /// runs on completion and the producer did not succeed.
    fn output<'r, T>(
        &'r self,
        producer: &str,
        key: &str,
        what: &str,
        outputs: impl Fn(&'r TaskResult) -> Option<&'r T>,
        runs_on_completion: bool,
    ) -> Result<Lookup<&'r T>, String> {
        let result = self
            .results
            .get(producer)
            .ok_or_else(|| format!("producer task {producer:?} has not run"))?;
        match outputs(result) {
            Some(found) => Ok(Lookup::Found(found)),
            None if runs_on_completion && !result.state.is_done() => Ok(Lookup::Missing(format!(
                "its producer {producer:?} is {}",
                result.state.as_str()
            ))),
            None => Err(format!(
                "task {producer:?} did not produce output {what} {key:?}"
            )),
        }
    }
}

/// Resolves the inputs of `task` (named `task_name` in its DAG).
pub fn resolve(
    siblings: &Siblings<'_>,
    task: &PipelineTaskSpec,
    task_name: &str,
    runs_on_completion: bool,
) -> Result<ResolvedInputs, Error> {
    (|| -> Result<ResolvedInputs, String> {
        let component = siblings
            .spec
            .component(&task.component_ref.name)
            .ok_or_else(|| format!("unknown component {:?}", task.component_ref.name))?;
        let declared = &component.input_definitions;
        let scope = siblings.scope;
        let mut resolved = ResolvedInputs::default();
        for (name, input) in &task.inputs.parameters {
            let value = match input.source() {
                Some(ParameterSource::ComponentInput(outer)) => match scope.parameters.get(outer) {
                    Some(value) => value.clone(),
                    None => continue,
                },
                Some(ParameterSource::TaskOutput(output)) => {
                    let found = siblings.output(
                        &output.producer_task,
                        &output.output_parameter_key,
                        "parameter",
                        |result| result.parameters.get(&output.output_parameter_key),
                        runs_on_completion,
                    )?;
                    match found {
                        Lookup::Found(value) => value.clone(),
                        Lookup::Missing(reason) => {
                            resolved.missing.push((name.clone(), reason));
                            continue;
                        }
                    }
                }
                Some(ParameterSource::RuntimeValue(runtime)) => match runtime.constant_json() {
                    Some(constant) => siblings.run.runtime_constant(constant, task_name),
                    None => match &runtime.runtime_parameter {
                        Some(outer) => scope.parameters.get(outer).cloned().unwrap_or(Value::Null),
                        None => Value::Null,
                    },
                },
                Some(ParameterSource::TaskFinalStatus(status)) => {
                    let producer = siblings
                        .results
                        .get(&status.producer_task)
                        .ok_or_else(|| format!("task {:?} has not ended", status.producer_task))?;
                    final_status(siblings.run, &status.producer_task, producer)
                }
                None => continue,
            };
            if value.is_null() {
                continue;
            }
            let value = if input.parameter_expression_selector.is_empty() {
                value
            } else {
                cel::select(&input.parameter_expression_selector, &value)
                    .map_err(|error| format!("input parameter {name:?}: {error}"))?
            };
            let value = match declared.parameters.get(name) {
                Some(definition) => coerce(name, definition.effective_type(), value)?,
                None => value,
            };
            resolved.parameters.insert(name.clone(), value);
        }
        for (name, input) in &task.inputs.artifacts {
            let list = match input.source() {
                Some(ArtifactSource::ComponentInput(outer)) => match scope.artifacts.get(outer) {
                    Some(list) => list.clone(),
                    None => continue,
                },
                Some(ArtifactSource::TaskOutput(output)) => {
                    let found = siblings.output(
                        &output.producer_task,
                        &output.output_artifact_key,
                        "artifact",
                        |result| result.artifacts.get(&output.output_artifact_key),
                        runs_on_completion,
                    )?;
                    match found {
                        Lookup::Found(list) => list.clone(),
                        Lookup::Missing(reason) => {
                            resolved.missing.push((name.clone(), reason));
                            continue;
                        }
                    }
                }
                None => continue,
            };
            resolved.artifacts.insert(name.clone(), list);
        }
        Ok(resolved)
    })()
    .map_err(Error::Inputs)
}

/// A `PipelineTaskFinalStatus` struct for the task `producer_name`, with upstream's
/// Go backend state names (`COMPLETE`, `FAILED`, `CANCELED`, …) and the error that
/// ended it.
pub fn final_status(run: &RunFacts, producer_name: &str, producer: &TaskResult) -> Value {
    let state = match producer.state {
        TaskState::Succeeded => "COMPLETE",
        TaskState::Cached => "CACHED",
        TaskState::Failed => "FAILED",
        TaskState::Canceled | TaskState::Skipped => "CANCELED",
        TaskState::Pending | TaskState::Running => "RUNNING",
    };
    let error = match (producer.state, &producer.error) {
        // google.rpc.Code: UNKNOWN for a failure, CANCELLED for a stop.
        (TaskState::Failed, Some(message)) => json!({"code": 2, "message": message}),
        (TaskState::Canceled | TaskState::Skipped, Some(message)) => {
            json!({"code": 1, "message": message})
        }
        _ => json!({}),
    };
    json!({
        "state": state,
        "pipelineJobResourceName": run.resource_name(),
        "pipelineTaskName": producer_name,
        "error": error,
    })
}

/// Component defaults for inputs the task left unbound.
pub fn apply_defaults(component: &ComponentSpec, parameters: &mut Map<String, Value>) {
    for (name, definition) in &component.input_definitions.parameters {
        if parameters.contains_key(name) {
            continue;
        }
        if let Some(default) = &definition.default_value {
            if let Ok(value) = coerce(name, definition.effective_type(), default.clone()) {
                parameters.insert(name.clone(), value);
            }
        }
    }
}

/// The first required input that its producer left without a value and no default
/// filled (after [`apply_defaults`]), as an error naming it and why.
pub fn unfilled_required(
    component: &ComponentSpec,
    parameters: &Map<String, Value>,
    artifacts: &Artifacts,
    missing: &[(String, String)],
) -> Option<String> {
    let definitions = &component.input_definitions;
    missing.iter().find_map(|(input, reason)| {
        let required = definitions
            .parameters
            .get(input)
            .map(|definition| !definition.is_optional)
            .or_else(|| {
                definitions
                    .artifacts
                    .get(input)
                    .map(|definition| !definition.is_optional)
            })
            .unwrap_or(false);
        let bound = parameters.contains_key(input) || artifacts.contains_key(input);
        (required && !bound).then(|| format!("input {input:?} has no value: {reason}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::ArtifactRef;
    use std::collections::BTreeMap;

    fn spec() -> PipelineSpec {
        serde_json::from_value(json!({
            "pipelineInfo": {"name": "p"},
            "components": {"comp-use": {"inputDefinitions": {
                "parameters": {
                    "n": {"parameterType": "NUMBER_INTEGER"},
                    "text": {"parameterType": "STRING", "defaultValue": "d"},
                    "status": {"parameterType": "TASK_FINAL_STATUS"}
                },
                "artifacts": {"data": {"artifactType": {"schemaTitle": "system.Dataset"}}}
            }, "executorLabel": "exec-use"}},
            "root": {"dag": {"tasks": {}}}
        }))
        .unwrap()
    }

    fn task(inputs: Value) -> PipelineTaskSpec {
        serde_json::from_value(json!({"componentRef": {"name": "comp-use"}, "inputs": inputs}))
            .unwrap()
    }

    fn artifact(id: i64) -> ArtifactRef {
        ArtifactRef {
            id,
            name: "data".into(),
            uri: format!("file:///a/{id}"),
            schema_title: "system.Dataset".into(),
            schema_version: String::new(),
            metadata: Map::new(),
        }
    }

    fn produced(state: TaskState) -> TaskResult {
        let mut result = TaskResult::ended(state, Some("it broke".into()));
        if state.is_done() {
            result.parameters.insert("Output".into(), json!(4.0));
            result.artifacts.insert("out".into(), vec![artifact(7)]);
        }
        result
    }

    fn resolve_with(
        inputs: Value,
        results: &[(&str, TaskResult)],
        runs_on_completion: bool,
    ) -> Result<ResolvedInputs, String> {
        let spec = spec();
        let run = RunFacts {
            run_id: "run1".into(),
            pipeline_name: "p".into(),
            ..RunFacts::default()
        };
        let scope = Scope {
            parameters: json!({"outer": "from scope"}).as_object().cloned().unwrap(),
            artifacts: BTreeMap::from([("outer_data".to_string(), vec![artifact(1)])]),
        };
        let results: HashMap<String, TaskResult> = results
            .iter()
            .map(|(name, result)| (name.to_string(), result.clone()))
            .collect();
        let siblings = Siblings {
            spec: &spec,
            run: &run,
            scope: &scope,
            results: &results,
        };
        Ok(resolve(
            &siblings,
            &task(inputs),
            "use",
            runs_on_completion,
        )?)
    }

    #[test]
    fn parameters_and_artifacts_come_from_producers_and_scope() {
        let resolved = resolve_with(
            json!({
                "parameters": {
                    "n": {"taskOutputParameter": {"producerTask": "make", "outputParameterKey": "Output"}},
                    "text": {"componentInputParameter": "outer"},
                    "job": {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}
                },
                "artifacts": {
                    "data": {"taskOutputArtifact": {"producerTask": "make", "outputArtifactKey": "out"}},
                    "more": {"componentInputArtifact": "outer_data"}
                }
            }),
            &[("make", produced(TaskState::Succeeded))],
            false,
        )
        .unwrap();
        assert_eq!(resolved.parameters["n"], json!(4), "typed as declared");
        assert_eq!(resolved.parameters["text"], json!("from scope"));
        assert_eq!(resolved.parameters["job"], json!("run1"));
        assert_eq!(resolved.artifacts["data"][0].id, 7);
        assert_eq!(resolved.artifacts["more"][0].id, 1);
        assert!(resolved.missing.is_empty());
    }

    #[test]
    fn a_missing_output_is_an_error_unless_the_task_runs_on_completion() {
        let inputs = json!({
            "parameters": {"n": {"taskOutputParameter": {"producerTask": "make", "outputParameterKey": "Output"}}},
            "artifacts": {"data": {"taskOutputArtifact": {"producerTask": "make", "outputArtifactKey": "out"}}}
        });
        let failed = [("make", produced(TaskState::Failed))];
        let error = resolve_with(inputs.clone(), &failed, false).unwrap_err();
        assert_eq!(
            error,
            "task \"make\" did not produce output parameter \"Output\""
        );
        let resolved = resolve_with(inputs.clone(), &failed, true).unwrap();
        assert_eq!(
            resolved.missing,
            vec![
                (
                    "n".to_string(),
                    "its producer \"make\" is FAILED".to_string()
                ),
                (
                    "data".to_string(),
                    "its producer \"make\" is FAILED".to_string()
                )
            ]
        );
        let only_artifact = json!({
            "artifacts": {"data": {"taskOutputArtifact": {"producerTask": "make", "outputArtifactKey": "gone"}}}
        });
        let error = resolve_with(
            only_artifact,
            &[("make", produced(TaskState::Succeeded))],
            true,
        )
        .unwrap_err();
        assert_eq!(
            error,
            "task \"make\" did not produce output artifact \"gone\""
        );
        let error = resolve_with(inputs, &[], false).unwrap_err();
        assert_eq!(error, "producer task \"make\" has not run");
    }

    #[test]
    fn final_status_and_selectors() {
        let resolved = resolve_with(
            json!({"parameters": {
                "status": {"taskFinalStatus": {"producerTask": "make"}},
                "pick": {
                    "componentInputParameter": "outer",
                    "parameterExpressionSelector": "string_value + '!'"
                }
            }}),
            &[("make", produced(TaskState::Failed))],
            true,
        )
        .unwrap();
        assert_eq!(
            resolved.parameters["status"],
            json!({
                "state": "FAILED",
                "pipelineJobResourceName": "p-run1",
                "pipelineTaskName": "make",
                "error": {"code": 2, "message": "it broke"}
            })
        );
        assert_eq!(resolved.parameters["pick"], json!("from scope!"));
    }

    #[test]
    fn defaults_fill_what_producers_left_out() {
        let spec = spec();
        let component = spec.component("comp-use").unwrap();
        let mut parameters = Map::new();
        apply_defaults(component, &mut parameters);
        assert_eq!(parameters["text"], json!("d"));
        let missing = vec![
            (
                "text".to_string(),
                "its producer \"a\" is FAILED".to_string(),
            ),
            ("n".to_string(), "its producer \"b\" is SKIPPED".to_string()),
        ];
        let error = unfilled_required(component, &parameters, &BTreeMap::new(), &missing);
        assert_eq!(
            error.as_deref(),
            Some("input \"n\" has no value: its producer \"b\" is SKIPPED")
        );
    }
}
