//! Running a DAG: tasks in dependency order, independent ones in parallel, inputs
//! resolved from the enclosing scope and from sibling outputs, DAG outputs collected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kfpd_ir::spec::{
    ArtifactSource, ComponentSpec, DagSpec, ExecutorKind, Implementation, ParameterSource,
    PipelineTaskSpec, TriggerStrategy,
};
use kfpd_store::{TaskKind, TaskState};
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::container;
use crate::engine::RunContext;
use crate::records::TaskRecord;
use crate::values::coerce;

/// An artifact as the orchestrator passes it between tasks (store URI, not a local path).
#[derive(Clone, Debug, PartialEq)]
pub struct ArtifactRef {
    pub id: i64,
    pub name: String,
    pub uri: String,
    pub schema_title: String,
    pub schema_version: String,
    pub metadata: Map<String, Value>,
}

/// The inputs visible inside a DAG.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub parameters: Map<String, Value>,
    pub artifacts: BTreeMap<String, Vec<ArtifactRef>>,
}

/// How a task (or DAG) ended and what it produced.
#[derive(Clone, Debug)]
pub struct TaskResult {
    pub state: TaskState,
    pub error: Option<String>,
    pub parameters: Map<String, Value>,
    pub artifacts: BTreeMap<String, Vec<ArtifactRef>>,
}

impl TaskResult {
    pub fn ended(state: TaskState, error: Option<String>) -> TaskResult {
        TaskResult {
            state,
            error,
            parameters: Map::new(),
            artifacts: BTreeMap::new(),
        }
    }

    pub fn failed(error: String) -> TaskResult {
        TaskResult::ended(TaskState::Failed, Some(error))
    }
}

/// Runs the tasks of `component`'s DAG. Boxed because DAGs nest.
pub fn run_dag(
    context: Arc<RunContext>,
    component: ComponentSpec,
    scope: Scope,
    parent_id: String,
    path: String,
) -> BoxFuture<'static, TaskResult> {
    async move {
        let Some(dag) = component.dag.clone() else {
            return TaskResult::failed(format!("{path} is not a DAG component"));
        };
        let results = run_tasks(&context, &dag, &scope, &parent_id, &path).await;
        let failed = results
            .values()
            .find(|result| result.state == TaskState::Failed);
        if context.cancel.is_cancelled() {
            return TaskResult::ended(TaskState::Canceled, Some("run was terminated".into()));
        }
        if let Some(failure) = failed {
            return TaskResult::ended(TaskState::Failed, failure.error.clone());
        }
        match dag_outputs(&dag, &results) {
            Ok((parameters, artifacts)) => TaskResult {
                state: TaskState::Succeeded,
                error: None,
                parameters,
                artifacts,
            },
            Err(error) => TaskResult::failed(format!("{path}: {error}")),
        }
    }
    .boxed()
}

/// Schedules every task of a DAG and returns each one's result.
async fn run_tasks(
    context: &Arc<RunContext>,
    dag: &DagSpec,
    scope: &Scope,
    parent_id: &str,
    path: &str,
) -> HashMap<String, TaskResult> {
    let upstream: HashMap<&str, BTreeSet<&str>> = dag
        .tasks
        .iter()
        .map(|(name, task)| (name.as_str(), task.upstream_tasks()))
        .collect();
    let mut results: HashMap<String, TaskResult> = HashMap::new();
    let mut waiting: BTreeSet<&str> = dag.tasks.keys().map(String::as_str).collect();
    let mut running: JoinSet<(String, TaskResult)> = JoinSet::new();
    let mut dag_failed = false;
    loop {
        let ready: Vec<&str> = waiting
            .iter()
            .copied()
            .filter(|name| {
                upstream[name]
                    .iter()
                    .all(|dependency| results.contains_key(*dependency) || !dag.tasks.contains_key(*dependency))
            })
            .collect();
        for name in ready {
            waiting.remove(name);
            let task = &dag.tasks[name];
            let child_path = format!("{path}/{name}");
            let display_name = display_name(name, task);
            let strategy = task.trigger_strategy();
            let runs_anyway = strategy == TriggerStrategy::AllUpstreamTasksCompleted;
            let blocked_by = upstream[name]
                .iter()
                .find(|dependency| results.get(**dependency).is_some_and(|result| !result.state.is_done()));
            let skip_reason = if context.cancel.is_cancelled() {
                Some((TaskState::Canceled, "run was terminated".to_string()))
            } else if let (Some(dependency), false) = (blocked_by, runs_anyway) {
                let state = results[*dependency].state;
                Some((TaskState::Skipped, format!("not run: upstream task {dependency:?} is {}", state.as_str())))
            } else if dag_failed && !runs_anyway {
                Some((TaskState::Skipped, "not run: another task of its DAG failed".to_string()))
            } else {
                None
            };
            if let Some((state, reason)) = skip_reason {
                let kind = task_kind(context, task);
                TaskRecord::not_run(context, parent_id, &child_path, kind, name, &display_name, state, &reason).await;
                results.insert(name.to_string(), TaskResult::ended(state, Some(reason)));
                continue;
            }
            let inputs = match resolve_inputs(context, task, scope, &results, name) {
                Ok(inputs) => inputs,
                Err(error) => {
                    let message = format!("task {display_name:?}: {error}");
                    context.record_failure(&message);
                    let kind = task_kind(context, task);
                    TaskRecord::not_run(context, parent_id, &child_path, kind, name, &display_name, TaskState::Failed, &message).await;
                    results.insert(name.to_string(), TaskResult::failed(message));
                    dag_failed = true;
                    continue;
                }
            };
            let context = Arc::clone(context);
            let task = task.clone();
            let name = name.to_string();
            let parent_id = parent_id.to_string();
            running.spawn(async move {
                let result = run_task(context, task, name.clone(), display_name, inputs, parent_id, child_path).await;
                (name, result)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (name, result) = match joined {
            Ok(done) => done,
            Err(error) => {
                tracing::error!(%error, "task panicked");
                dag_failed = true;
                continue;
            }
        };
        if result.state == TaskState::Failed {
            dag_failed = true;
        }
        results.insert(name, result);
    }
    results
}

fn display_name(name: &str, task: &PipelineTaskSpec) -> String {
    if task.task_info.name.is_empty() {
        name.to_string()
    } else {
        task.task_info.name.clone()
    }
}

fn task_kind(context: &RunContext, task: &PipelineTaskSpec) -> TaskKind {
    let Some(component) = context.spec.component(&task.component_ref.name) else {
        return TaskKind::Runtime;
    };
    match component.implementation() {
        Some(Implementation::Dag(_)) => dag_kind(&task.component_ref.name, task),
        Some(Implementation::Executor(_)) => match context.spec.executor_of(component).and_then(|e| e.kind()) {
            Some(ExecutorKind::Importer(_)) => TaskKind::Importer,
            _ => TaskKind::Runtime,
        },
        None => TaskKind::Runtime,
    }
}

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

/// A task's inputs, resolved from its scope and its siblings' results.
pub(crate) struct ResolvedInputs {
    pub parameters: Map<String, Value>,
    pub artifacts: BTreeMap<String, Vec<ArtifactRef>>,
}

fn resolve_inputs(
    context: &RunContext,
    task: &PipelineTaskSpec,
    scope: &Scope,
    results: &HashMap<String, TaskResult>,
    task_name: &str,
) -> Result<ResolvedInputs, String> {
    let component = context
        .spec
        .component(&task.component_ref.name)
        .ok_or_else(|| format!("unknown component {:?}", task.component_ref.name))?;
    let declared = &component.input_definitions;
    let mut parameters = Map::new();
    for (name, input) in &task.inputs.parameters {
        if !input.parameter_expression_selector.is_empty() {
            return Err(format!(
                "input {name:?} uses a parameter expression selector, which kfpd's engine does not evaluate yet"
            ));
        }
        let value = match input.source() {
            Some(ParameterSource::ComponentInput(outer)) => match scope.parameters.get(outer) {
                Some(value) => value.clone(),
                None => continue,
            },
            Some(ParameterSource::TaskOutput(output)) => {
                let producer = results
                    .get(&output.producer_task)
                    .ok_or_else(|| format!("producer task {:?} has not run", output.producer_task))?;
                producer
                    .parameters
                    .get(&output.output_parameter_key)
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "task {:?} did not produce output parameter {:?}",
                            output.producer_task, output.output_parameter_key
                        )
                    })?
            }
            Some(ParameterSource::RuntimeValue(runtime)) => match runtime.constant_json() {
                Some(constant) => runtime_constant(context, constant, task_name),
                None => match &runtime.runtime_parameter {
                    Some(outer) => scope.parameters.get(outer).cloned().unwrap_or(Value::Null),
                    None => Value::Null,
                },
            },
            Some(ParameterSource::TaskFinalStatus(_)) => {
                return Err(format!(
                    "input {name:?} takes a task final status, which kfpd's engine does not provide yet"
                ))
            }
            None => continue,
        };
        if value.is_null() {
            continue;
        }
        let value = match declared.parameters.get(name) {
            Some(definition) => coerce(name, definition.effective_type(), value)?,
            None => value,
        };
        parameters.insert(name.clone(), value);
    }
    let mut artifacts = BTreeMap::new();
    for (name, input) in &task.inputs.artifacts {
        let list = match input.source() {
            Some(ArtifactSource::ComponentInput(outer)) => match scope.artifacts.get(outer) {
                Some(list) => list.clone(),
                None => continue,
            },
            Some(ArtifactSource::TaskOutput(output)) => {
                let producer = results
                    .get(&output.producer_task)
                    .ok_or_else(|| format!("producer task {:?} has not run", output.producer_task))?;
                producer
                    .artifacts
                    .get(&output.output_artifact_key)
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "task {:?} did not produce output artifact {:?}",
                            output.producer_task, output.output_artifact_key
                        )
                    })?
            }
            None => continue,
        };
        artifacts.insert(name.clone(), list);
    }
    Ok(ResolvedInputs {
        parameters,
        artifacts,
    })
}

/// Constants that are whole job placeholders get the run's values, as upstream's
/// driver does.
fn runtime_constant(context: &RunContext, constant: Value, task_name: &str) -> Value {
    let Value::String(text) = &constant else {
        return constant;
    };
    let run = &context.run;
    let created = chrono::DateTime::from_timestamp(run.created_at, 0)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let scheduled = chrono::DateTime::from_timestamp(run.scheduled_at, 0)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| created.clone());
    let replacement = match text.as_str() {
        "{{$.pipeline_job_name}}" => Some(run.display_name.clone()),
        "{{$.pipeline_job_resource_name}}" => Some(format!("run-{}", run.id)),
        "{{$.pipeline_job_uuid}}" => Some(run.id.clone()),
        "{{$.pipeline_task_name}}" => Some(task_name.to_string()),
        "{{$.pipeline_job_create_time_utc}}" => Some(created),
        "{{$.pipeline_job_schedule_time_utc}}" => Some(scheduled),
        _ => None,
    };
    match replacement {
        Some(value) => Value::String(value),
        None => constant,
    }
}

/// Runs one task of a DAG: a nested DAG, a container or an importer.
async fn run_task(
    context: Arc<RunContext>,
    task: PipelineTaskSpec,
    name: String,
    display_name: String,
    inputs: ResolvedInputs,
    parent_id: String,
    path: String,
) -> TaskResult {
    let Some(component) = context.spec.component(&task.component_ref.name).cloned() else {
        return TaskResult::failed(format!("unknown component {:?}", task.component_ref.name));
    };
    if task.condition().is_some() {
        let message = format!(
            "task {display_name:?} has a condition, which kfpd's engine does not evaluate yet"
        );
        context.record_failure(&message);
        TaskRecord::not_run(&context, &parent_id, &path, TaskKind::Runtime, &name, &display_name, TaskState::Failed, &message).await;
        return TaskResult::failed(message);
    }
    if task.parameter_iterator.is_some() || task.artifact_iterator.is_some() {
        let message = format!("task {display_name:?} is a ParallelFor, which kfpd's engine does not run yet");
        context.record_failure(&message);
        TaskRecord::not_run(&context, &parent_id, &path, TaskKind::Loop, &name, &display_name, TaskState::Failed, &message).await;
        return TaskResult::failed(message);
    }
    let mut parameters = inputs.parameters;
    apply_defaults(&component, &mut parameters);
    match component.implementation() {
        Some(Implementation::Dag(_)) => {
            let kind = dag_kind(&task.component_ref.name, &task);
            let mut record = match TaskRecord::start(&context, &parent_id, &path, kind, &name, &display_name, -1, &parameters).await {
                Ok(record) => record,
                Err(error) => return TaskResult::failed(error),
            };
            let scope = Scope {
                parameters,
                artifacts: inputs.artifacts,
            };
            let result = run_dag(Arc::clone(&context), component, scope, record.task.id.clone(), path).await;
            record
                .finish(&context, result.state, result.error.clone(), &result.parameters)
                .await;
            result
        }
        Some(Implementation::Executor(label)) => {
            let Some(executor) = context.spec.executor(label).cloned() else {
                return TaskResult::failed(format!("unknown executor {label:?}"));
            };
            let call = container::TaskCall {
                name,
                display_name,
                path,
                parent_id,
                task,
                component,
                parameters,
                artifacts: inputs.artifacts,
            };
            container::run_executor(context, call, executor).await
        }
        None => TaskResult::failed(format!("component {:?} has no implementation", task.component_ref.name)),
    }
}

/// Component defaults for inputs the task left unbound.
fn apply_defaults(component: &ComponentSpec, parameters: &mut Map<String, Value>) {
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

type Outputs = (Map<String, Value>, BTreeMap<String, Vec<ArtifactRef>>);

/// A DAG's outputs from its tasks' results (the first selector whose task produced
/// the value wins, which is how `dsl.OneOf` picks its branch).
fn dag_outputs(dag: &DagSpec, results: &HashMap<String, TaskResult>) -> Result<Outputs, String> {
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
    Ok((parameters, artifacts))
}
