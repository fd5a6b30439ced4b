//! Task caching as upstream's driver decides it: a fingerprint of the task's cache
//! key (upstream's `CacheKey` fields), the scope entries are shared in, how old a
//! reusable entry may be, and what a hit gives the task.
//!
//! Additions to upstream v2, with upstream's v1 names: how old a reusable execution
//! may be (`DEFAULT_CACHE_STALENESS`, `MAXIMUM_CACHE_STALENESS` and a task's
//! `pipelines.kubeflow.org/max_cache_staleness` pod annotation).

use crate::error::Error;
use std::collections::BTreeMap;
use std::time::Duration;

use kfpd_ir::spec::{ComponentSpec, PipelineContainerSpec, PipelineTaskSpec, PlatformSpec};
use kfpd_store::{Artifact, TaskState};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::results::{ArtifactRef, Artifacts, TaskResult};

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
pub fn parse_iso8601_duration(text: &str) -> Result<Duration, Error> {
    (|| -> Result<Duration, String> {
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
    })()
    .map_err(Error::Value)
}

/// What identifies a task's results for reuse.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheKey {
    pub fingerprint: String,
    /// `<namespace>/<pipeline name>`: entries are shared within it only.
    pub scope: String,
    /// Oldest usable entry (seconds since the epoch).
    pub not_before: i64,
}

/// A container task as the cache sees it, inputs resolved.
pub struct CacheCall<'a> {
    pub task: &'a PipelineTaskSpec,
    pub component: &'a ComponentSpec,
    pub container: &'a PipelineContainerSpec,
    pub parameters: &'a Map<String, Value>,
    pub artifacts: &'a Artifacts,
}

/// The cache key of a container task, or `None` when it must not use the cache
/// (caching off on the server or for the task). `now` is in Unix seconds.
pub fn key(
    options: &CacheOptions,
    call: &CacheCall<'_>,
    platform: Option<&PlatformSpec>,
    namespace: &str,
    pipeline_name: &str,
    now: i64,
) -> Option<CacheKey> {
    if !options.enabled || !call.task.caching_options.enable_cache {
        return None;
    }
    let staleness = staleness_limit(options, task_staleness(platform, call.component));
    let not_before = match staleness {
        // `P0D` means "never reuse", not "reuse what finished this very second".
        Some(limit) if limit.is_zero() => i64::MAX,
        Some(limit) => now.saturating_sub(i64::try_from(limit.as_secs()).unwrap_or(i64::MAX)),
        None => 0,
    };
    Some(CacheKey {
        fingerprint: fingerprint(
            call.task,
            call.component,
            call.container,
            call.parameters,
            call.artifacts,
        ),
        scope: format!("{namespace}/{pipeline_name}"),
        not_before,
    })
}

/// A task's own staleness limit from its platform config; an unreadable value is
/// ignored (with a warning), as upstream ignores an unparsable annotation.
fn task_staleness(platform: Option<&PlatformSpec>, component: &ComponentSpec) -> Option<Duration> {
    let label = component.executor_label.as_deref()?;
    let config = platform?
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
pub fn fingerprint(
    task: &PipelineTaskSpec,
    component: &ComponentSpec,
    container: &PipelineContainerSpec,
    parameters: &Map<String, Value>,
    artifacts: &Artifacts,
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

/// The result of a task whose outputs are reused from task `from_task` of run
/// `from_run`: its parameters and the artifacts it produced, by output key.
pub fn reused(
    from_task: &str,
    from_run: &str,
    parameters: Map<String, Value>,
    artifacts: &[Artifact],
) -> TaskResult {
    let mut by_key: Artifacts = BTreeMap::new();
    for artifact in artifacts {
        by_key
            .entry(artifact.output_key.clone())
            .or_default()
            .push(ArtifactRef::from(artifact));
    }
    TaskResult {
        state: TaskState::Cached,
        error: Some(reused_note(from_task, from_run)),
        parameters,
        artifacts: by_key,
    }
}

/// The note a cached task's row carries.
pub fn reused_note(from_task: &str, from_run: &str) -> String {
    format!("cached: outputs reused from task {from_task} of run {from_run}")
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
            assert!(matches!(error, Error::Value(_)), "{bad}: {error:?}");
            assert!(error.to_string().contains("ISO 8601"), "{bad}: {error}");
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

    #[test]
    fn keys_follow_options_and_the_task_annotation() {
        let (task, component, container) = parts();
        let parameters = Map::new();
        let artifacts = BTreeMap::new();
        let call = CacheCall {
            task: &task,
            component: &component,
            container: &container,
            parameters: &parameters,
            artifacts: &artifacts,
        };
        let options = CacheOptions::default();
        let now = 1_000_000;
        let key = key(&options, &call, None, "ns", "p", now).unwrap();
        assert_eq!(key.scope, "ns/p");
        assert_eq!(key.not_before, 0, "any age by default");
        let off = CacheOptions {
            enabled: false,
            ..CacheOptions::default()
        };
        assert_eq!(super::key(&off, &call, None, "ns", "p", now), None);

        let platform = |annotation: &str| -> PlatformSpec {
            serde_json::from_value(
                json!({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {
                    "exec-add": {"podMetadata": {"annotations": {STALENESS_ANNOTATION: annotation}}}
                }}}}}),
            )
            .unwrap()
        };
        let hour = platform("PT1H");
        let limited = super::key(&options, &call, Some(&hour), "ns", "p", now).unwrap();
        assert_eq!(limited.not_before, now - 3600);
        let never = platform("P0D");
        let never = super::key(&options, &call, Some(&never), "ns", "p", now).unwrap();
        assert_eq!(never.not_before, i64::MAX, "P0D reuses nothing");
        let unreadable = platform("soon");
        let ignored = super::key(&options, &call, Some(&unreadable), "ns", "p", now).unwrap();
        assert_eq!(ignored.not_before, 0);
    }

    #[test]
    fn a_hit_gives_its_artifacts_by_output_key() {
        let artifact = |id: i64, key: &str| Artifact {
            id,
            run_id: "r0".into(),
            producer_task_id: "t0".into(),
            output_key: key.into(),
            name: key.into(),
            uri: format!("file:///a/{id}"),
            schema_title: "system.Model".into(),
            schema_version: String::new(),
            metadata: r#"{"acc": 1}"#.into(),
            created_at: 0,
        };
        let parameters = json!({"Output": 3}).as_object().cloned().unwrap();
        let result = reused(
            "t0",
            "r0",
            parameters,
            &[artifact(1, "model"), artifact(2, "data")],
        );
        assert_eq!(result.state, TaskState::Cached);
        assert_eq!(
            result.error.as_deref(),
            Some("cached: outputs reused from task t0 of run r0")
        );
        assert_eq!(result.artifacts["model"][0].id, 1);
        assert_eq!(result.artifacts["data"][0].metadata["acc"], json!(1));
        assert_eq!(result.parameters["Output"], json!(3));
    }
}
