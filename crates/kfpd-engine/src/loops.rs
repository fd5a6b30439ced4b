//! `dsl.ParallelFor`: one run of the loop's DAG per item, at most
//! `iterator_policy.parallelism_limit` at once, fail-fast as the DAG around it.
//! The items, each iteration's scope and the loop's result are `kfpd_core::loops`'.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use kfpd_core::loops::{self as rules, Item};
use kfpd_core::{Artifacts, Scope, TaskResult};
use kfpd_ir::spec::{ComponentSpec, PipelineTaskSpec, RetryPolicy};
use kfpd_store::{TaskKind, TaskState};
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::context::RunContext;
use crate::records::TaskRecord;

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
    pub artifacts: Artifacts,
}

/// Runs a loop body's DAG: (context, body, scope, parent id, path, retry policy).
/// Passed in by the DAG runner, which is what runs DAGs.
pub(crate) type RunBody = fn(
    Arc<RunContext>,
    ComponentSpec,
    Scope,
    String,
    String,
    Option<RetryPolicy>,
) -> BoxFuture<'static, TaskResult>;

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
    run_body: RunBody,
}

pub(crate) async fn run_loop(
    context: Arc<RunContext>,
    call: LoopCall,
    run_body: RunBody,
) -> TaskResult {
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
    let found = match rules::items(&call.task, &call.parameters, &call.artifacts) {
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
    record.set_detail("iteration_count", json!(found.items.len()));
    record.save(&context);

    let gate = rules::parallelism(&call.task).map(|limit| Arc::new(Semaphore::new(limit)));
    let body = Arc::new(Body {
        component: call.component,
        scope: found.scope,
        item_input: found.item_input,
        loop_id: record.task.id.clone(),
        name: call.name,
        display_name: call.display_name,
        path: call.path,
        task: call.task,
        run_body,
    });
    let count = found.items.len();
    let failed = Arc::new(AtomicBool::new(false));
    let mut running: JoinSet<(usize, Option<TaskResult>)> = JoinSet::new();
    for (index, item) in found.items.into_iter().enumerate() {
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
    } else {
        rules::result(
            &body.component,
            &body.display_name,
            &results,
            failed.load(Ordering::SeqCst),
        )
    };
    record.finish(
        &context,
        result.state,
        result.error.clone(),
        &result.parameters,
    );
    result
}

async fn run_iteration(
    context: &Arc<RunContext>,
    body: &Body,
    index: usize,
    item: Item,
) -> TaskResult {
    let scope = rules::iteration_scope(&body.component, &body.scope, &body.item_input, item);
    let path = format!("{}/{index}", body.path);
    let display_name = format!("{}-iteration-{index}", body.display_name);
    let iteration_index = i64::try_from(index).unwrap_or(i64::MAX);
    let mut record = TaskRecord::start(
        context,
        &body.loop_id,
        &path,
        TaskKind::LoopIteration,
        &body.name,
        &display_name,
        iteration_index,
        &rules::iteration_inputs(&scope, &body.item_input),
    );
    let result = (body.run_body)(
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
