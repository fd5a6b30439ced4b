//! Running a DAG: tasks in dependency order, independent ones in parallel, inputs
//! resolved from the enclosing scope and from sibling outputs, trigger conditions
//! and strategies applied, DAG outputs collected (`dsl.OneOf` included).
//!
//! Upstream's rules (the Argo workflow its compiler emits): a task runs when every
//! upstream task succeeded, or — with `ALL_UPSTREAM_TASKS_COMPLETED` (exit tasks,
//! `ignore_upstream_failure`) — when they all ended, whatever the outcome. A task
//! whose upstream did not succeed is SKIPPED, as is one whose condition is false;
//! after a failure no new task of the same DAG starts (fail-fast), except those
//! that run on completion.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kfpd_ir::spec::{
    ArtifactSource, ComponentSpec, DagSpec, ExecutorKind, Implementation, ParameterSource,
    PipelineTaskSpec, RetryPolicy, TriggerStrategy,
};
use kfpd_store::{TaskKind, TaskState};
use serde_json::{json, Map, Value};
use tokio::task::JoinSet;

use crate::cel::{self, ConditionArtifact};
use crate::container;
use crate::engine::RunContext;
use crate::loops;
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

    pub fn canceled() -> TaskResult {
        TaskResult::ended(TaskState::Canceled, Some("run was terminated".into()))
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
    run_dag_with(context, component, scope, parent_id, path, None)
}

/// [`run_dag`] with the retry policy of the task that instantiated this DAG, which
/// its tasks without a policy of their own inherit (as upstream's compiler copies it).
pub(crate) fn run_dag_with(
    context: Arc<RunContext>,
    component: ComponentSpec,
    scope: Scope,
    parent_id: String,
    path: String,
    inherited_retry: Option<RetryPolicy>,
) -> BoxFuture<'static, TaskResult> {
    async move {
        let Some(dag) = component.dag.clone() else {
            return TaskResult::failed(format!("{path} is not a DAG component"));
        };
        let results = run_tasks(
            &context,
            &dag,
            &scope,
            &parent_id,
            &path,
            inherited_retry.as_ref(),
        )
        .await;
        if context.cancel.is_cancelled() {
            return TaskResult::canceled();
        }
        // In task-name order, so the error a DAG reports does not depend on timing.
        let failed = dag
            .tasks
            .keys()
            .filter_map(|name| results.get(name))
            .find(|result| result.state == TaskState::Failed);
        if let Some(failure) = failed {
            return TaskResult::ended(TaskState::Failed, failure.error.clone());
        }
        let (parameters, artifacts) = dag_outputs(&dag, &results);
        TaskResult {
            state: TaskState::Succeeded,
            error: None,
            parameters,
            artifacts,
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
    inherited_retry: Option<&RetryPolicy>,
) -> HashMap<String, TaskResult> {
    // Names outside this DAG (a malformed spec) cannot hold a task back.
    let upstream: HashMap<&str, BTreeSet<&str>> = dag
        .tasks
        .iter()
        .map(|(name, task)| {
            let known = task
                .upstream_tasks()
                .into_iter()
                .filter(|dependency| dag.tasks.contains_key(*dependency))
                .collect();
            (name.as_str(), known)
        })
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
                    .all(|dependency| results.contains_key(*dependency))
            })
            .collect();
        for name in ready {
            waiting.remove(name);
            let task = &dag.tasks[name];
            let child_path = format!("{path}/{name}");
            let display_name = display_name(name, task);
            let runs_on_completion =
                task.trigger_strategy() == TriggerStrategy::AllUpstreamTasksCompleted;
            let not_succeeded = upstream[name].iter().find(|dependency| {
                results
                    .get(**dependency)
                    .is_some_and(|result| !result.state.is_done())
            });
            let skip_reason = if context.cancel.is_cancelled() {
                Some((TaskState::Canceled, "run was terminated".to_string()))
            } else if let (Some(dependency), false) = (not_succeeded, runs_on_completion) {
                let state = results[*dependency].state;
                Some((
                    TaskState::Skipped,
                    format!(
                        "not run: upstream task {dependency:?} is {}",
                        state.as_str()
                    ),
                ))
            } else if dag_failed && !runs_on_completion {
                Some((
                    TaskState::Skipped,
                    "not run: another task of its DAG failed".to_string(),
                ))
            } else {
                None
            };
            if let Some((state, reason)) = skip_reason {
                let kind = task_kind(context, task);
                TaskRecord::not_run(
                    context,
                    parent_id,
                    &child_path,
                    kind,
                    name,
                    &display_name,
                    state,
                    &reason,
                )
                .await;
                results.insert(name.to_string(), TaskResult::ended(state, Some(reason)));
                continue;
            }
            let mut task = task.clone();
            if task.retry_policy.is_none() {
                task.retry_policy = inherited_retry.cloned();
            }
            let inputs =
                match resolve_inputs(context, &task, scope, &results, name, runs_on_completion) {
                    Ok(inputs) => inputs,
                    Err(error) => {
                        let message = format!("task {display_name:?}: {error}");
                        context.record_failure(&message);
                        let kind = task_kind(context, &task);
                        TaskRecord::not_run(
                            context,
                            parent_id,
                            &child_path,
                            kind,
                            name,
                            &display_name,
                            TaskState::Failed,
                            &message,
                        )
                        .await;
                        results.insert(name.to_string(), TaskResult::failed(message));
                        dag_failed = true;
                        continue;
                    }
                };
            let context = Arc::clone(context);
            let name = name.to_string();
            let parent_id = parent_id.to_string();
            running.spawn(async move {
                let result = run_task(
                    context,
                    task,
                    name.clone(),
                    display_name,
                    inputs,
                    parent_id,
                    child_path,
                )
                .await;
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

pub(crate) fn task_kind(context: &RunContext, task: &PipelineTaskSpec) -> TaskKind {
    let Some(component) = context.spec.component(&task.component_ref.name) else {
        return TaskKind::Runtime;
    };
    match component.implementation() {
        Some(Implementation::Dag(_)) => dag_kind(&task.component_ref.name, task),
        Some(Implementation::Executor(_)) => {
            match context.spec.executor_of(component).and_then(|e| e.kind()) {
                Some(ExecutorKind::Importer(_)) => TaskKind::Importer,
                _ => TaskKind::Runtime,
            }
        }
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
    /// Inputs of a task that runs on completion whose producer gave nothing (it
    /// failed or was skipped): input name → why. Component defaults may fill them.
    pub missing: Vec<(String, String)>,
}

fn resolve_inputs(
    context: &RunContext,
    task: &PipelineTaskSpec,
    scope: &Scope,
    results: &HashMap<String, TaskResult>,
    task_name: &str,
    runs_on_completion: bool,
) -> Result<ResolvedInputs, String> {
    let component = context
        .spec
        .component(&task.component_ref.name)
        .ok_or_else(|| format!("unknown component {:?}", task.component_ref.name))?;
    let declared = &component.input_definitions;
    let mut parameters = Map::new();
    let mut missing = Vec::new();
    for (name, input) in &task.inputs.parameters {
        let value = match input.source() {
            Some(ParameterSource::ComponentInput(outer)) => match scope.parameters.get(outer) {
                Some(value) => value.clone(),
                None => continue,
            },
            Some(ParameterSource::TaskOutput(output)) => {
                let producer = results.get(&output.producer_task).ok_or_else(|| {
                    format!("producer task {:?} has not run", output.producer_task)
                })?;
                match producer.parameters.get(&output.output_parameter_key) {
                    Some(value) => value.clone(),
                    None if runs_on_completion && !producer.state.is_done() => {
                        let reason = format!(
                            "its producer {:?} is {}",
                            output.producer_task,
                            producer.state.as_str()
                        );
                        missing.push((name.clone(), reason));
                        continue;
                    }
                    None => {
                        return Err(format!(
                            "task {:?} did not produce output parameter {:?}",
                            output.producer_task, output.output_parameter_key
                        ))
                    }
                }
            }
            Some(ParameterSource::RuntimeValue(runtime)) => match runtime.constant_json() {
                Some(constant) => runtime_constant(context, constant, task_name),
                None => match &runtime.runtime_parameter {
                    Some(outer) => scope.parameters.get(outer).cloned().unwrap_or(Value::Null),
                    None => Value::Null,
                },
            },
            Some(ParameterSource::TaskFinalStatus(status)) => {
                let producer = results
                    .get(&status.producer_task)
                    .ok_or_else(|| format!("task {:?} has not ended", status.producer_task))?;
                final_status(context, &status.producer_task, producer)
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
                let producer = results.get(&output.producer_task).ok_or_else(|| {
                    format!("producer task {:?} has not run", output.producer_task)
                })?;
                match producer.artifacts.get(&output.output_artifact_key) {
                    Some(list) => list.clone(),
                    None if runs_on_completion && !producer.state.is_done() => {
                        let reason = format!(
                            "its producer {:?} is {}",
                            output.producer_task,
                            producer.state.as_str()
                        );
                        missing.push((name.clone(), reason));
                        continue;
                    }
                    None => {
                        return Err(format!(
                            "task {:?} did not produce output artifact {:?}",
                            output.producer_task, output.output_artifact_key
                        ))
                    }
                }
            }
            None => continue,
        };
        artifacts.insert(name.clone(), list);
    }
    Ok(ResolvedInputs {
        parameters,
        artifacts,
        missing,
    })
}

/// The run's resource name, shaped like upstream's Argo workflow name
/// (`<pipeline name>-<suffix>`), which is what components see as
/// `pipeline_job_resource_name`.
pub(crate) fn job_resource_name(context: &RunContext) -> String {
    let base = context
        .pipeline_name
        .rsplit('/')
        .next()
        .unwrap_or(&context.pipeline_name);
    let suffix: String = context
        .run
        .id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("{base}-{suffix}")
}

/// A `PipelineTaskFinalStatus` struct for the task `producer_name`, with upstream's
/// Go backend state names (`COMPLETE`, `FAILED`, `CANCELED`, …) and the error that
/// ended it.
fn final_status(context: &RunContext, producer_name: &str, producer: &TaskResult) -> Value {
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
        "pipelineJobResourceName": job_resource_name(context),
        "pipelineTaskName": producer_name,
        "error": error,
    })
}

/// Constants that are whole job placeholders get the run's values, as upstream's
/// driver does. `{{$.pipeline_task_uuid}}` is left for the executor, which knows
/// the task's id.
fn runtime_constant(context: &RunContext, constant: Value, task_name: &str) -> Value {
    let Value::String(text) = &constant else {
        return constant;
    };
    let run = &context.run;
    let created = chrono::DateTime::from_timestamp(run.created_at, 0)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let scheduled = chrono::DateTime::from_timestamp(run.scheduled_at, 0)
        .filter(|_| run.scheduled_at > 0)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| created.clone());
    let replacement = match text.as_str() {
        "{{$.pipeline_job_name}}" => Some(run.display_name.clone()),
        "{{$.pipeline_job_resource_name}}" => Some(job_resource_name(context)),
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

/// Runs one task of a DAG: its condition first, then a loop, a nested DAG, a
/// container or an importer.
async fn run_task(
    context: Arc<RunContext>,
    task: PipelineTaskSpec,
    name: String,
    display_name: String,
    inputs: ResolvedInputs,
    parent_id: String,
    path: String,
) -> TaskResult {
    let kind = task_kind(&context, &task);
    let fail = |message: String| {
        let context = Arc::clone(&context);
        let (parent_id, path, name, display_name) = (
            parent_id.clone(),
            path.clone(),
            name.clone(),
            display_name.clone(),
        );
        async move {
            context.record_failure(&message);
            TaskRecord::not_run(
                &context,
                &parent_id,
                &path,
                kind,
                &name,
                &display_name,
                TaskState::Failed,
                &message,
            )
            .await;
            TaskResult::failed(message)
        }
    };
    let Some(component) = context.spec.component(&task.component_ref.name).cloned() else {
        return fail(format!(
            "task {display_name:?}: unknown component {:?}",
            task.component_ref.name
        ))
        .await;
    };
    if let Some(expression) = task.condition() {
        let artifacts: BTreeMap<String, Vec<ConditionArtifact>> = inputs
            .artifacts
            .iter()
            .map(|(input, list)| (input.clone(), list.iter().map(condition_artifact).collect()))
            .collect();
        match cel::condition(expression, &inputs.parameters, &artifacts) {
            Ok(true) => {}
            Ok(false) => {
                let reason = format!("not run: its condition is false ({expression})");
                TaskRecord::not_run(
                    &context,
                    &parent_id,
                    &path,
                    kind,
                    &name,
                    &display_name,
                    TaskState::Skipped,
                    &reason,
                )
                .await;
                return TaskResult::ended(TaskState::Skipped, Some(reason));
            }
            Err(error) => return fail(format!("task {display_name:?}: {error}")).await,
        }
    }
    let mut parameters = inputs.parameters;
    apply_defaults(&component, &mut parameters);
    for (input, reason) in &inputs.missing {
        let required = component
            .input_definitions
            .parameters
            .get(input)
            .map(|definition| !definition.is_optional)
            .or_else(|| {
                component
                    .input_definitions
                    .artifacts
                    .get(input)
                    .map(|definition| !definition.is_optional)
            })
            .unwrap_or(false);
        let bound = parameters.contains_key(input) || inputs.artifacts.contains_key(input);
        if required && !bound {
            return fail(format!(
                "task {display_name:?}: input {input:?} has no value: {reason}"
            ))
            .await;
        }
    }
    if task.parameter_iterator.is_some() || task.artifact_iterator.is_some() {
        let call = loops::LoopCall {
            name,
            display_name,
            path,
            parent_id,
            task,
            component,
            parameters,
            artifacts: inputs.artifacts,
        };
        return loops::run_loop(context, call).await;
    }
    match component.implementation() {
        Some(Implementation::Dag(_)) => {
            let mut record = TaskRecord::start(
                &context,
                &parent_id,
                &path,
                kind,
                &name,
                &display_name,
                -1,
                &parameters,
            );
            let scope = Scope {
                parameters,
                artifacts: inputs.artifacts,
            };
            let retry = task.retry_policy.clone();
            let result = run_dag_with(
                Arc::clone(&context),
                component,
                scope,
                record.task.id.clone(),
                path,
                retry,
            )
            .await;
            record.finish(
                &context,
                result.state,
                result.error.clone(),
                &result.parameters,
            );
            result
        }
        Some(Implementation::Executor(label)) => {
            let Some(executor) = context.spec.executor(label).cloned() else {
                return fail(format!("task {display_name:?}: unknown executor {label:?}")).await;
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
        None => {
            fail(format!(
                "task {display_name:?}: component {:?} has no implementation",
                task.component_ref.name
            ))
            .await
        }
    }
}

fn condition_artifact(artifact: &ArtifactRef) -> ConditionArtifact {
    ConditionArtifact {
        name: artifact.name.clone(),
        uri: artifact.uri.clone(),
        schema_title: artifact.schema_title.clone(),
        metadata: artifact.metadata.clone(),
    }
}

/// Component defaults for inputs the task left unbound.
pub(crate) fn apply_defaults(component: &ComponentSpec, parameters: &mut Map<String, Value>) {
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

/// A DAG's outputs from its tasks' results: the first selector whose task finished
/// with the value wins, which is how `dsl.OneOf` picks the branch that ran.
fn dag_outputs(dag: &DagSpec, results: &HashMap<String, TaskResult>) -> Outputs {
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
