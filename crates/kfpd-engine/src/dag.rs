//! Running a DAG: its tasks in dependency order, independent ones in parallel, each
//! recorded as it ends. Which task starts, is skipped or fails, and what the DAG
//! reports, is `kfpd_core::dag`'s to decide.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kfpd_core::inputs::{self, ResolvedInputs, Siblings};
use kfpd_core::{dag as rules, Scope, TaskResult};
use kfpd_ir::spec::{ComponentSpec, DagSpec, Implementation, PipelineTaskSpec, RetryPolicy};
use kfpd_store::TaskState;
use tokio::task::JoinSet;

use crate::container;
use crate::context::{RunContext, TaskCall};
use crate::loops::{self, LoopCall};
use crate::records::TaskRecord;

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
        rules::result(&dag, &results)
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
    let upstream = rules::upstream(dag);
    let mut results: HashMap<String, TaskResult> = HashMap::new();
    let mut waiting: BTreeSet<&str> = dag.tasks.keys().map(String::as_str).collect();
    let mut running: JoinSet<(String, TaskResult)> = JoinSet::new();
    let mut dag_failed = false;
    loop {
        for name in rules::ready(&waiting, &upstream, &results) {
            waiting.remove(name);
            let task = &dag.tasks[name];
            let child_path = format!("{path}/{name}");
            let display_name = rules::display_name(name, task);
            let runs_on_completion = rules::runs_on_completion(task);
            let not_started = rules::not_started(
                context.cancel.is_cancelled(),
                dag_failed,
                runs_on_completion,
                &upstream[name],
                &results,
            );
            if let Some((state, reason)) = not_started {
                let kind = rules::task_kind(&context.spec, task);
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
            let siblings = Siblings {
                spec: &context.spec,
                run: &context.facts,
                scope,
                results: &results,
            };
            let inputs = match inputs::resolve(&siblings, &task, name, runs_on_completion) {
                Ok(inputs) => inputs,
                Err(error) => {
                    let message = format!("task {display_name:?}: {error}");
                    context.record_failure(&message);
                    let kind = rules::task_kind(&context.spec, &task);
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
    let kind = rules::task_kind(&context.spec, &task);
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
    match rules::skipped_by_condition(&task, &inputs) {
        Ok(None) => {}
        Ok(Some(reason)) => {
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
    let mut parameters = inputs.parameters;
    inputs::apply_defaults(&component, &mut parameters);
    if let Some(error) =
        inputs::unfilled_required(&component, &parameters, &inputs.artifacts, &inputs.missing)
    {
        return fail(format!("task {display_name:?}: {error}")).await;
    }
    if task.parameter_iterator.is_some() || task.artifact_iterator.is_some() {
        let call = LoopCall {
            name,
            display_name,
            path,
            parent_id,
            task,
            component,
            parameters,
            artifacts: inputs.artifacts,
        };
        return loops::run_loop(context, call, run_dag_with).await;
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
            let call = TaskCall {
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
