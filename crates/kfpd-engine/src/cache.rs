//! Task caching as upstream's driver does it: a fingerprint of the task's cache key
//! (upstream's `CacheKey` fields), looked up among earlier successful executions of
//! the same pipeline and namespace; a hit reuses their outputs instead of running.
//!
//! Additions to upstream v2, with upstream's v1 names: how old a reusable execution
//! may be (`DEFAULT_CACHE_STALENESS`, `MAXIMUM_CACHE_STALENESS` and a task's
//! `pipelines.kubeflow.org/max_cache_staleness` pod annotation), and a hit is refused
//! when an artifact it would reuse is gone from the store (upstream bug #7939).

use std::collections::BTreeMap;
use std::time::Duration;

use kfpd_ir::spec::{ComponentSpec, PipelineContainerSpec, PipelineTaskSpec};
use kfpd_store::{Artifact, ArtifactLink, Direction, Task, TaskKind, TaskState};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::container::{artifact_ref, TaskCall};
use crate::dag::{ArtifactRef, TaskResult};
use crate::engine::RunContext;
use crate::records::{now, TaskRecord};

/// The pod annotation upstream's v1 cache server reads a task's staleness from;
/// kfpd reads it from the task's Kubernetes platform config (`podMetadata`).
pub const STALENESS_ANNOTATION: &str = "pipelines.kubeflow.org/max_cache_staleness";

/// Server-wide cache settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheOptions {
    /// Upstream's `CacheEnabled`: when off, no task reads or writes the cache,
    /// whatever its `enable_cache` says.
    pub enabled: bool,
    /// Staleness limit for tasks that set none (`DEFAULT_CACHE_STALENESS`); `None`
    /// means any age.
    pub default_staleness: Option<Duration>,
    /// Upper bound on every task's limit (`MAXIMUM_CACHE_STALENESS`); `None` means
    /// no bound.
    pub maximum_staleness: Option<Duration>,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions {
            enabled: true,
            default_staleness: None,
            maximum_staleness: None,
        }
    }
}

/// Parses an ISO 8601 duration such as `P30D`, `PT12H` or `P1Y2M3DT4H5M6.5S` (a
/// year is 365 days, a month 30, a week 7), as upstream's staleness settings take.
pub fn parse_iso8601_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not an ISO 8601 duration such as P30D or PT12H");
    let rest = text.trim().strip_prefix('P').ok_or_else(invalid)?;
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut seconds = 0.0_f64;
    let mut in_time = false;
    let mut number = String::new();
    let mut saw_unit = false;
    let mut saw_time_unit = false;
    for ch in rest.chars() {
        if ch == 'T' {
            if in_time || !number.is_empty() {
                return Err(invalid());
            }
            in_time = true;
            continue;
        }
        if ch.is_ascii_digit() || ch == '.' || ch == ',' {
            number.push(if ch == ',' { '.' } else { ch });
            continue;
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit = match (in_time, ch) {
            (false, 'Y') => 365.0 * 86_400.0,
            (false, 'M') => 30.0 * 86_400.0,
            (false, 'W') => 7.0 * 86_400.0,
            (false, 'D') => 86_400.0,
            (true, 'H') => 3_600.0,
            (true, 'M') => 60.0,
            (true, 'S') => 1.0,
            _ => return Err(invalid()),
        };
        seconds += value * unit;
        number.clear();
        saw_unit = true;
        saw_time_unit |= in_time;
    }
    if !number.is_empty() || !saw_unit || (in_time && !saw_time_unit) || !seconds.is_finite() {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What identifies a task's results for reuse.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CacheKey {
    pub fingerprint: String,
    /// `<namespace>/<pipeline name>`: entries are shared within it only.
    pub scope: String,
    /// Oldest usable entry (seconds since the epoch).
    pub not_before: i64,
}

/// A usable earlier execution.
pub(crate) struct Hit {
    pub task: Task,
    pub parameters: Map<String, Value>,
    pub artifacts: Vec<Artifact>,
}

/// The cache key of a container task, or `None` when it must not use the cache
/// (caching off on the server or for the task).
pub(crate) fn key_for(
    context: &RunContext,
    call: &TaskCall,
    container: &PipelineContainerSpec,
) -> Option<CacheKey> {
    let options = &context.engine.options.cache;
    if !options.enabled || !call.task.caching_options.enable_cache {
        return None;
    }
    let staleness = staleness_limit(options, task_staleness(context, &call.component));
    let not_before = match staleness {
        // `P0D` means "never reuse", not "reuse what finished this very second".
        Some(limit) if limit.is_zero() => i64::MAX,
        Some(limit) => now().saturating_sub(i64::try_from(limit.as_secs()).unwrap_or(i64::MAX)),
        None => 0,
    };
    Some(CacheKey {
        fingerprint: fingerprint(
            &call.task,
            &call.component,
            container,
            &call.parameters,
            &call.artifacts,
        ),
        scope: format!("{}/{}", context.run.namespace, context.pipeline_name),
        not_before,
    })
}

/// A task's own staleness limit from its platform config; an unreadable value is
/// ignored (with a warning), as upstream ignores an unparsable annotation.
fn task_staleness(context: &RunContext, component: &ComponentSpec) -> Option<Duration> {
    let label = component.executor_label.as_deref()?;
    let config = context
        .platform
        .as_ref()?
        .kubernetes()?
        .deployment_spec
        .executors
        .get(label)?;
    let text = config
        .get("podMetadata")
        .and_then(|metadata| metadata.get("annotations"))
        .and_then(|annotations| annotations.get(STALENESS_ANNOTATION))
        .and_then(Value::as_str)?;
    match parse_iso8601_duration(text) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(executor = label, %error, "ignoring the task's {STALENESS_ANNOTATION} annotation");
            None
        }
    }
}

/// The task's limit, else the default; never above the maximum.
fn staleness_limit(options: &CacheOptions, task: Option<Duration>) -> Option<Duration> {
    let chosen = task.or(options.default_staleness);
    match (chosen, options.maximum_staleness) {
        (Some(limit), Some(maximum)) => Some(limit.min(maximum)),
        (None, Some(maximum)) => Some(maximum),
        (limit, None) => limit,
    }
}

/// sha256 of upstream's `CacheKey` as canonical JSON (sorted keys, no spaces), or of
/// the component name and the task's custom `cache_key` when it sets one.
pub(crate) fn fingerprint(
    task: &PipelineTaskSpec,
    component: &ComponentSpec,
    container: &PipelineContainerSpec,
    parameters: &Map<String, Value>,
    artifacts: &BTreeMap<String, Vec<ArtifactRef>>,
) -> String {
    let custom = &task.caching_options.cache_key;
    if !custom.is_empty() {
        let text = format!("{}\u{0}{custom}", task.component_ref.name);
        return hex::encode(Sha256::digest(text.as_bytes()));
    }
    let input_artifact_names: Map<String, Value> = artifacts
        .iter()
        .map(|(name, list)| {
            let ids: Vec<Value> = list
                .iter()
                .map(|artifact| json!(artifact.id.to_string()))
                .collect();
            (name.clone(), json!({ "artifactNames": ids }))
        })
        .collect();
    let output_artifacts: Map<String, Value> = component
        .output_definitions
        .artifacts
        .iter()
        .map(|(name, spec)| {
            let mut kind = Map::new();
            if let Some(title) = &spec.artifact_type.schema_title {
                kind.insert("schemaTitle".into(), json!(title));
            }
            if !spec.artifact_type.schema_version.is_empty() {
                kind.insert(
                    "schemaVersion".into(),
                    json!(spec.artifact_type.schema_version),
                );
            }
            let mut artifact = Map::new();
            artifact.insert("name".into(), json!(name));
            artifact.insert("type".into(), Value::Object(kind));
            if let Some(metadata) = &spec.metadata {
                artifact.insert("metadata".into(), Value::Object(metadata.clone()));
            }
            (name.clone(), Value::Object(artifact))
        })
        .collect();
    let output_parameters: Map<String, Value> = component
        .output_definitions
        .parameters
        .iter()
        .map(|(name, spec)| (name.clone(), json!(spec.effective_type().as_str())))
        .collect();
    let mut command = container.command.clone();
    command.extend(container.args.iter().cloned());
    let mut key = Map::new();
    if !input_artifact_names.is_empty() {
        key.insert(
            "inputArtifactNames".into(),
            Value::Object(input_artifact_names),
        );
    }
    if !parameters.is_empty() {
        key.insert(
            "inputParameterValues".into(),
            Value::Object(parameters.clone()),
        );
    }
    if !output_artifacts.is_empty() {
        key.insert(
            "outputArtifactsSpec".into(),
            Value::Object(output_artifacts),
        );
    }
    if !output_parameters.is_empty() {
        key.insert(
            "outputParametersSpec".into(),
            Value::Object(output_parameters),
        );
    }
    key.insert(
        "containerSpec".into(),
        json!({ "image": container.image, "cmdArgs": command }),
    );
    let mut text = String::new();
    canonical_json(&Value::Object(key), &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// JSON with object keys sorted at every level, whatever map type serde_json uses.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
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
    let mut artifacts: BTreeMap<String, Vec<ArtifactRef>> = BTreeMap::new();
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
        artifacts
            .entry(artifact.output_key.clone())
            .or_default()
            .push(artifact_ref(artifact));
    }
    let note = format!(
        "cached: outputs reused from task {} of run {}",
        hit.task.id, hit.task.run_id
    );
    record.finish(
        context,
        TaskState::Cached,
        Some(note.clone()),
        &hit.parameters,
    );
    TaskResult {
        state: TaskState::Cached,
        error: Some(note),
        parameters: hit.parameters,
        artifacts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iso8601_durations() {
        let secs = |text: &str| parse_iso8601_duration(text).map(|d| d.as_secs_f64());
        assert_eq!(secs("P30D"), Ok(30.0 * 86_400.0));
        assert_eq!(secs("PT12H"), Ok(43_200.0));
        assert_eq!(secs("P1DT1M"), Ok(86_460.0));
        assert_eq!(secs("PT0.5S"), Ok(0.5));
        assert_eq!(secs("P0D"), Ok(0.0));
        assert_eq!(secs("P1Y"), Ok(365.0 * 86_400.0));
        assert_eq!(secs("P2W"), Ok(14.0 * 86_400.0));
        for bad in ["", "P", "30D", "PT", "P1H", "PT1D", "P1DT", "P1.5", "PXD"] {
            let error = parse_iso8601_duration(bad).unwrap_err();
            assert!(error.contains("ISO 8601"), "{bad}: {error}");
        }
    }

    #[test]
    fn staleness_default_and_maximum() {
        let day = Duration::from_secs(86_400);
        let options = |default, maximum| CacheOptions {
            enabled: true,
            default_staleness: default,
            maximum_staleness: maximum,
        };
        assert_eq!(staleness_limit(&options(None, None), None), None);
        assert_eq!(staleness_limit(&options(Some(day), None), None), Some(day));
        assert_eq!(
            staleness_limit(&options(Some(day), None), Some(2 * day)),
            Some(2 * day)
        );
        assert_eq!(
            staleness_limit(&options(None, Some(day)), Some(2 * day)),
            Some(day)
        );
        assert_eq!(staleness_limit(&options(None, Some(day)), None), Some(day));
    }

    fn parts() -> (PipelineTaskSpec, ComponentSpec, PipelineContainerSpec) {
        let task: PipelineTaskSpec = serde_json::from_value(json!({
            "componentRef": {"name": "comp-add"},
            "cachingOptions": {"enableCache": true}
        }))
        .unwrap();
        let component: ComponentSpec = serde_json::from_value(json!({
            "executorLabel": "exec-add",
            "outputDefinitions": {
                "parameters": {"Output": {"parameterType": "NUMBER_INTEGER"}},
                "artifacts": {"model": {"artifactType": {"schemaTitle": "system.Model", "schemaVersion": "0.0.1"}}}
            }
        }))
        .unwrap();
        let container: PipelineContainerSpec = serde_json::from_value(json!({
            "image": "python:3.11",
            "command": ["sh", "-c"],
            "args": ["echo {{$.inputs.parameters['a']}}"]
        }))
        .unwrap();
        (task, component, container)
    }

    #[test]
    fn fingerprints_follow_the_cache_key() {
        let (task, component, container) = parts();
        let parameters = json!({"a": 1}).as_object().cloned().unwrap();
        let none = BTreeMap::new();
        let base = fingerprint(&task, &component, &container, &parameters, &none);
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            fingerprint(&task, &component, &container, &parameters, &none)
        );
        let other = json!({"a": 2}).as_object().cloned().unwrap();
        assert_ne!(
            base,
            fingerprint(&task, &component, &container, &other, &none)
        );
        let mut image = container.clone();
        image.image = "python:3.12".into();
        assert_ne!(
            base,
            fingerprint(&task, &component, &image, &parameters, &none)
        );
        let artifact = ArtifactRef {
            id: 7,
            name: "data".into(),
            uri: "file:///a".into(),
            schema_title: "system.Dataset".into(),
            schema_version: String::new(),
            metadata: Map::new(),
        };
        let with_input = BTreeMap::from([("data".to_string(), vec![artifact])]);
        assert_ne!(
            base,
            fingerprint(&task, &component, &container, &parameters, &with_input)
        );

        let mut custom = task.clone();
        custom.caching_options.cache_key = "v1".into();
        let keyed = fingerprint(&custom, &component, &container, &parameters, &none);
        assert_eq!(
            keyed,
            fingerprint(&custom, &component, &image, &other, &none),
            "a custom key is all that counts"
        );
        assert_ne!(keyed, base);
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut out = String::new();
        canonical_json(&json!({"b": [1, {"d": 1, "c": "x"}], "a": null}), &mut out);
        assert_eq!(out, r#"{"a":null,"b":[1,{"c":"x","d":1}]}"#);
    }
}
