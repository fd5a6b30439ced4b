//! Task caching, the store's side: looking up an entry for a task's cache key (a
//! hit is refused when an artifact it would reuse is gone from the store, upstream
//! bug #7939) and recording a hit as the task's outputs. The key and what a hit
//! gives are `kfpd_core::cache`'s.

use kfpd_core::cache::{self as rules, CacheCall, CacheKey};
use kfpd_core::TaskResult;
use kfpd_ir::spec::PipelineContainerSpec;
use kfpd_store::{Artifact, ArtifactLink, Direction, Task, TaskKind, TaskState};
use serde_json::{json, Map, Value};

use crate::context::{RunContext, TaskCall};
use crate::records::{now, TaskRecord};

/// A usable earlier execution.
pub(crate) struct Hit {
    pub task: Task,
    pub parameters: Map<String, Value>,
    pub artifacts: Vec<Artifact>,
}

/// The cache key of a container task, or `None` when it must not use the cache.
pub(crate) fn key_for(
    context: &RunContext,
    call: &TaskCall,
    container: &PipelineContainerSpec,
) -> Option<CacheKey> {
    let cache_call = CacheCall {
        task: &call.task,
        component: &call.component,
        container,
        parameters: &call.parameters,
        artifacts: &call.artifacts,
    };
    rules::key(
        &context.engine.options.cache,
        &cache_call,
        context.platform.as_ref(),
        &context.facts.namespace,
        &context.facts.pipeline_name,
        now(),
    )
}

/// The newest usable entry for `key`, or `None` (with the reason logged) when there
/// is none or one of its artifacts is gone from the store.
pub(crate) async fn find(context: &RunContext, key: &CacheKey, task_name: &str) -> Option<Hit> {
    // Tasks that ended but are still queued count too (an identical earlier task of this run).
    if let Err(error) = context.engine.writer.flush().await {
        tracing::warn!(run = %context.run.id, %error, "cannot record tasks");
    }
    let store = &context.engine.store;
    let found = match store
        .find_cached_task(&key.fingerprint, &key.scope, key.not_before)
        .await
    {
        Ok(found) => found?,
        Err(error) => {
            tracing::warn!(run = %context.run.id, task = task_name, %error, "cannot look up the cache");
            return None;
        }
    };
    let parameters: Map<String, Value> = serde_json::from_str(&found.outputs).unwrap_or_default();
    let artifacts: Vec<Artifact> = match store.list_artifacts(&found.run_id).await {
        Ok(list) => list
            .into_iter()
            .filter(|artifact| artifact.producer_task_id == found.id)
            .collect(),
        Err(error) => {
            tracing::warn!(run = %context.run.id, task = task_name, %error, "cannot read a cache entry's artifacts");
            return None;
        }
    };
    for artifact in &artifacts {
        if !context.engine.artifacts.handles(&artifact.uri) {
            continue;
        }
        let present = context
            .engine
            .artifacts
            .exists(&artifact.uri)
            .await
            .unwrap_or(false);
        if !present {
            tracing::info!(
                run = %context.run.id,
                task = task_name,
                uri = %artifact.uri,
                "cache entry not used: its artifact is gone from the store"
            );
            return None;
        }
    }
    Some(Hit {
        task: found,
        parameters,
        artifacts,
    })
}

/// Records the task as CACHED with the entry's outputs, linked as its own.
pub(crate) async fn reuse(
    context: &RunContext,
    call: &TaskCall,
    key: &CacheKey,
    hit: Hit,
) -> TaskResult {
    // Nothing runs: the row is written once, CACHED.
    let mut record = TaskRecord::begin(
        context,
        &call.parent_id,
        &call.path,
        TaskKind::Runtime,
        &call.name,
        &call.display_name,
        -1,
        &call.parameters,
    );
    record.task.fingerprint = key.fingerprint.clone();
    record.task.cache_scope = key.scope.clone();
    record.task.cached_from = hit.task.id.clone();
    record.set_detail("cached_from_run", json!(hit.task.run_id));
    record.set_detail("cached_from_task", json!(hit.task.id));
    let task_id = record.task.id.clone();
    let store = &context.engine.store;
    for (name, list) in &call.artifacts {
        for artifact in list {
            let link = ArtifactLink {
                task_id: task_id.clone(),
                artifact_id: artifact.id,
                direction: Direction::Input,
                key: name.clone(),
            };
            if let Err(error) = store.link_artifact(&context.run.id, &link).await {
                tracing::warn!(%error, "cannot record artifact input");
            }
        }
    }
    for artifact in &hit.artifacts {
        let link = ArtifactLink {
            task_id: task_id.clone(),
            artifact_id: artifact.id,
            direction: Direction::Output,
            key: artifact.output_key.clone(),
        };
        if let Err(error) = store.link_artifact(&context.run.id, &link).await {
            tracing::warn!(%error, "cannot record a cached artifact as output");
        }
    }
    let result = rules::reused(
        &hit.task.id,
        &hit.task.run_id,
        hit.parameters,
        &hit.artifacts,
    );
    record.finish(
        context,
        TaskState::Cached,
        result.error.clone(),
        &result.parameters,
    );
    result
}
