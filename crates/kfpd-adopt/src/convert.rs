//! Upstream rows → kfpd rows, with upstream's reading rules: empty strings and
//! NULLs alike, legacy state names, specs as YAML in text columns, parameters
//! as JSON (or the v1 `[{name, value}]` list), namespaces and experiments from
//! `resource_references` when the row's own columns are empty.

use std::collections::{BTreeMap, HashMap};

use kfpd_store::{
    Artifact, ArtifactLink, Direction, Experiment, Pipeline, PipelineVersion, RecurringRun, Run,
    RunState, StateChange, StorageState, Tags, Task, TaskKind, TaskState, TaskStateChange, Trigger,
};
use serde_json::{json, Map, Value};

use crate::source::{parse_int, SourceRow};

/// kfpd's ids are at most this long (upstream allows 191 for most).
const MAX_ID: usize = 64;

/// Deterministic artifact ids of objects a run's workflow recorded: v5 UUIDs in
/// this namespace cut to 53 bits (JS-safe, as kfpd's own), so a pass run again
/// gives the same ids.
const ARTIFACT_NAMESPACE: uuid::Uuid = uuid::uuid!("6f0c7a52-91d4-4c4e-8b1e-2a0d7f5b9c31");

/// Why a row cannot be brought.
pub type Refusal = String;

/// A row's text column, with upstream's NULL and '' alike.
fn text(row: &SourceRow, column: &str) -> String {
    row.get(column).cloned().flatten().unwrap_or_default()
}

fn opt_text(row: &SourceRow, column: &str) -> Option<String> {
    row.get(column)
        .cloned()
        .flatten()
        .filter(|value| !value.is_empty())
}

fn int(row: &SourceRow, column: &str) -> i64 {
    parse_int(row.get(column).and_then(|value| value.as_deref()))
}

fn opt_int(row: &SourceRow, column: &str) -> Option<i64> {
    row.get(column)
        .and_then(|value| value.as_deref())
        .filter(|value| !value.trim().is_empty())
        .map(|value| parse_int(Some(value)))
}

/// MySQL's booleans read `1`/`0`, PostgreSQL's `true`/`false`.
fn boolean(row: &SourceRow, column: &str) -> bool {
    matches!(
        text(row, column).trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "t"
    )
}

fn check_id(what: &str, id: &str) -> Result<(), Refusal> {
    if id.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.len() > MAX_ID {
        return Err(format!(
            "{what} {id:?} is longer than the {MAX_ID} characters kfpd keeps"
        ));
    }
    Ok(())
}

/// An upstream row's legacy references, by reference type.
#[derive(Debug, Default, Clone)]
pub struct References {
    pub namespace: Option<String>,
    pub experiment: Option<String>,
    pub job: Option<String>,
    pub pipeline: Option<String>,
    pub pipeline_version: Option<String>,
}

impl References {
    /// Groups `resource_references` rows by the resource they belong to.
    pub fn group(rows: &[SourceRow]) -> HashMap<String, References> {
        let mut grouped: HashMap<String, References> = HashMap::new();
        for row in rows {
            let owner = text(row, "ResourceUUID");
            let reference = text(row, "ReferenceUUID");
            if reference.is_empty() {
                continue;
            }
            let entry = grouped.entry(owner).or_default();
            match text(row, "ReferenceType").as_str() {
                "Namespace" => entry.namespace = Some(reference),
                "Experiment" => entry.experiment = Some(reference),
                "Job" | "RecurringRun" => entry.job = Some(reference),
                "pipeline" | "Pipeline" => entry.pipeline = Some(reference),
                "PipelineVersion" => entry.pipeline_version = Some(reference),
                _ => {}
            }
        }
        grouped
    }
}

/// Upstream's `ToV2` of run states: case-insensitive, legacy v1 and job names.
pub fn run_state(text: &str) -> RunState {
    match text.trim().to_ascii_uppercase().as_str() {
        "PENDING" => RunState::Pending,
        "RUNNING" | "ENABLED" | "READY" => RunState::Running,
        "SUCCEEDED" | "DONE" => RunState::Succeeded,
        "SKIPPED" => RunState::Skipped,
        "FAILED" | "ERROR" => RunState::Failed,
        "CANCELING" | "TERMINATING" => RunState::Canceling,
        "CANCELED" | "DISABLED" => RunState::Canceled,
        "PAUSED" => RunState::Paused,
        _ => RunState::Unspecified,
    }
}

/// Upstream's `ToV2` of storage states (an unspecified one reads as available).
pub fn storage_state(text: &str) -> StorageState {
    match text.trim().to_ascii_uppercase().as_str() {
        "ARCHIVED" | "STORAGESTATE_ARCHIVED" | "DISABLED" => StorageState::Archived,
        _ => StorageState::Available,
    }
}

/// A task's state in kfpd's task states (the API shows upstream's own, kept in
/// the task's details).
fn task_state(state: RunState) -> TaskState {
    match state {
        RunState::Unspecified | RunState::Pending | RunState::Paused => TaskState::Pending,
        RunState::Running => TaskState::Running,
        RunState::Succeeded => TaskState::Succeeded,
        RunState::Skipped => TaskState::Skipped,
        RunState::Failed => TaskState::Failed,
        RunState::Canceling | RunState::Canceled => TaskState::Canceled,
    }
}

/// Upstream's `StateHistory` JSON (`[{"UpdateTimeInSec":…,"State":…,"Error":…}]`);
/// what does not parse is left out, as upstream shows no history for it.
fn state_history(json: &str) -> Vec<(i64, RunState, Option<String>)> {
    let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let time = entry
                .get("UpdateTimeInSec")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let state = entry.get("State").and_then(Value::as_str).map(run_state)?;
            let error = match entry.get("Error") {
                Some(Value::String(message)) if !message.is_empty() => Some(message.clone()),
                Some(Value::Object(object)) => object
                    .get("message")
                    .or_else(|| object.get("Message"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            };
            Some((time, state, error))
        })
        .collect()
}

/// A spec kept as YAML (or JSON) text → the JSON the API shows: the first
/// document, wrapped with the platform spec when a second document has one.
pub fn spec_json(text: &str) -> Result<Value, String> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|error| format!("is neither YAML nor JSON: {error}"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    let mut spec = None;
    let mut platform = None;
    for document in documents {
        if document.get("platforms").is_some() && platform.is_none() {
            platform = Some(document);
        } else if spec.is_none() {
            spec = Some(document);
        }
    }
    let Some(spec) = spec else {
        return Err("holds no document".into());
    };
    if !spec.is_object() {
        return Err("is not an object".into());
    }
    Ok(match platform {
        Some(platform) => json!({"pipeline_spec": spec, "platform_spec": platform}),
        None => spec,
    })
}

/// Upstream's runtime config columns → kfpd's `runtime_config` JSON: the
/// parameters map of `RuntimeParameters`, else the v1 `Parameters` list as
/// strings, and the pipeline root; empty when neither has anything.
fn runtime_config(row: &SourceRow) -> Result<String, Refusal> {
    let mut parameters = Map::new();
    let runtime = text(row, "RuntimeParameters");
    if !matches!(runtime.trim(), "" | "null" | "[]" | "{}") {
        match serde_json::from_str::<Value>(&runtime) {
            Ok(Value::Object(map)) => parameters = map,
            _ => {
                return Err(format!(
                    "RuntimeParameters is not a JSON object: {}",
                    clip(&runtime)
                ))
            }
        }
    }
    let root = text(row, "PipelineRoot");
    if parameters.is_empty() && root.is_empty() {
        let legacy = text(row, "Parameters");
        if !matches!(legacy.trim(), "" | "null" | "[]") {
            match serde_json::from_str::<Value>(&legacy) {
                Ok(Value::Object(map)) => parameters = map,
                Ok(Value::Array(list)) => {
                    for item in list {
                        let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
                        let value = match item.get("value") {
                            Some(Value::String(text)) => text.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(other) => other.to_string(),
                        };
                        if !name.is_empty() {
                            parameters.insert(name.to_string(), Value::String(value));
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "Parameters is neither a JSON object nor a list: {}",
                        clip(&legacy)
                    ))
                }
            }
        }
    }
    if parameters.is_empty() && root.is_empty() {
        return Ok(String::new());
    }
    let mut config = Map::new();
    if !parameters.is_empty() {
        config.insert("parameters".into(), Value::Object(parameters));
    }
    if !root.is_empty() {
        config.insert("pipeline_root".into(), Value::String(root));
    }
    Ok(Value::Object(config).to_string())
}

fn clip(text: &str) -> String {
    let mut clipped: String = text.chars().take(80).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

pub fn experiment(row: &SourceRow, references: Option<&References>) -> Result<Experiment, Refusal> {
    let id = text(row, "UUID");
    check_id("UUID", &id)?;
    let name = text(row, "Name");
    if name.is_empty() {
        return Err("Name is empty".into());
    }
    let namespace = opt_text(row, "Namespace")
        .or_else(|| references.and_then(|refs| refs.namespace.clone()))
        .unwrap_or_default();
    Ok(Experiment {
        id,
        name,
        description: text(row, "Description"),
        namespace,
        created_at: int(row, "CreatedAtInSec"),
        last_run_created_at: int(row, "LastRunCreatedAtInSec"),
        storage_state: storage_state(&text(row, "StorageState")),
    })
}

/// Whether upstream lists the pipeline or version (`Status` READY).
pub fn is_listed(row: &SourceRow) -> Result<(), Refusal> {
    let status = text(row, "Status");
    if status.is_empty() || status.eq_ignore_ascii_case("READY") {
        return Ok(());
    }
    Err(format!("Status is {status}: upstream does not list it"))
}

fn tags_of(rows: Option<&Vec<SourceRow>>) -> Tags {
    let mut tags = Tags::new();
    for row in rows.into_iter().flatten() {
        tags.insert(text(row, "TagKey"), text(row, "TagValue"));
    }
    tags
}

pub fn pipeline(row: &SourceRow, tags: Option<&Vec<SourceRow>>) -> Result<Pipeline, Refusal> {
    let id = text(row, "UUID");
    check_id("UUID", &id)?;
    is_listed(row)?;
    let name = text(row, "Name");
    if name.is_empty() {
        return Err("Name is empty".into());
    }
    let display_name = opt_text(row, "DisplayName").unwrap_or_else(|| name.clone());
    Ok(Pipeline {
        id,
        name,
        display_name,
        description: text(row, "Description"),
        namespace: text(row, "Namespace"),
        created_at: int(row, "CreatedAtInSec"),
        tags: tags_of(tags),
    })
}

pub fn pipeline_version(
    row: &SourceRow,
    tags: Option<&Vec<SourceRow>>,
) -> Result<PipelineVersion, Refusal> {
    let id = text(row, "UUID");
    check_id("UUID", &id)?;
    is_listed(row)?;
    let pipeline_id = text(row, "PipelineId");
    check_id("PipelineId", &pipeline_id)?;
    let name = text(row, "Name");
    if name.is_empty() {
        return Err("Name is empty".into());
    }
    let spec_text = text(row, "PipelineSpec");
    if spec_text.trim().is_empty() {
        return Err(
            "PipelineSpec is empty (a legacy version whose spec is only in the object store)"
                .into(),
        );
    }
    let spec = spec_json(&spec_text).map_err(|reason| format!("PipelineSpec {reason}"))?;
    let display_name = opt_text(row, "DisplayName").unwrap_or_else(|| name.clone());
    Ok(PipelineVersion {
        id,
        pipeline_id,
        name,
        display_name,
        description: text(row, "Description"),
        created_at: int(row, "CreatedAtInSec"),
        code_source_url: text(row, "CodeSourceUrl"),
        package_url: text(row, "PipelineSpecURI"),
        pipeline_spec: spec.to_string(),
        tags: tags_of(tags),
    })
}

/// Where a run or recurring run's pipeline comes from.
struct Source {
    pipeline_id: String,
    pipeline_version_id: String,
    /// The spec JSON the row holds, if any.
    spec: Option<String>,
}

/// Upstream's order: a version reference, else the pinned spec, else the v1
/// workflow manifest.
fn pipeline_source(row: &SourceRow, references: Option<&References>) -> Result<Source, Refusal> {
    let pipeline_version_id = opt_text(row, "PipelineVersionId")
        .or_else(|| references.and_then(|refs| refs.pipeline_version.clone()))
        .unwrap_or_default();
    let pipeline_id = opt_text(row, "PipelineId")
        .or_else(|| references.and_then(|refs| refs.pipeline.clone()))
        .unwrap_or_default();
    let mut spec = None;
    for column in ["PipelineSpecManifest", "WorkflowSpecManifest"] {
        let manifest = text(row, column);
        if manifest.trim().is_empty() {
            continue;
        }
        match spec_json(&manifest) {
            Ok(value) => {
                spec = Some(value.to_string());
                break;
            }
            Err(reason) if pipeline_version_id.is_empty() => {
                return Err(format!("{column} {reason}"))
            }
            Err(_) => {}
        }
    }
    Ok(Source {
        pipeline_id,
        pipeline_version_id,
        spec,
    })
}

pub struct AdoptedRun {
    pub run: Run,
    pub spec: String,
    pub inline_spec: bool,
    pub archived_at: i64,
}

pub fn run(row: &SourceRow, references: Option<&References>) -> Result<AdoptedRun, Refusal> {
    let id = text(row, "UUID");
    check_id("UUID", &id)?;
    let display_name = text(row, "DisplayName");
    let experiment_id = opt_text(row, "ExperimentUUID")
        .or_else(|| references.and_then(|refs| refs.experiment.clone()))
        .unwrap_or_default();
    let namespace = opt_text(row, "Namespace")
        .or_else(|| references.and_then(|refs| refs.namespace.clone()))
        .unwrap_or_default();
    let recurring_run_id = opt_text(row, "JobUUID")
        .or_else(|| references.and_then(|refs| refs.job.clone()))
        .unwrap_or_default();
    for (what, value) in [
        ("ExperimentUUID", &experiment_id),
        ("JobUUID", &recurring_run_id),
    ] {
        if value.len() > MAX_ID {
            return Err(format!(
                "{what} {value:?} is longer than the {MAX_ID} characters kfpd keeps"
            ));
        }
    }
    // The v2 state, else the v1 condition.
    let state = match opt_text(row, "State") {
        Some(state) => run_state(&state),
        None => run_state(&text(row, "Conditions")),
    };
    let source = pipeline_source(row, references)?;
    let inline_spec = source.pipeline_version_id.is_empty() && source.spec.is_some();
    let history = state_history(&text(row, "StateHistory"))
        .into_iter()
        .map(|(time, state, error)| StateChange { time, state, error })
        .collect();
    let run = Run {
        id,
        experiment_id,
        namespace,
        display_name,
        description: text(row, "Description"),
        storage_state: storage_state(&text(row, "StorageState")),
        service_account: text(row, "ServiceAccount"),
        created_at: int(row, "CreatedAtInSec"),
        scheduled_at: int(row, "ScheduledAtInSec"),
        finished_at: int(row, "FinishedAtInSec"),
        state,
        error: None,
        pipeline_id: source.pipeline_id,
        pipeline_version_id: source.pipeline_version_id,
        recurring_run_id,
        runtime_config: runtime_config(row)?,
        state_history: history,
        pipeline_spec: None,
    };
    Ok(AdoptedRun {
        run,
        spec: source.spec.unwrap_or_else(|| "{}".into()),
        inline_spec,
        archived_at: int(row, "ArchivedAtInSec"),
    })
}

/// Upstream's `{"<key>": {"artifact_ids": [1, 2]}}`.
fn artifact_ids(json: &str, column: &str) -> Result<BTreeMap<String, Vec<i64>>, Refusal> {
    let mut found = BTreeMap::new();
    if matches!(json.trim(), "" | "null" | "{}") {
        return Ok(found);
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else {
        return Err(format!("{column} is not a JSON object: {}", clip(json)));
    };
    for (key, list) in map {
        let ids = list
            .get("artifact_ids")
            .or_else(|| list.get("artifactIds"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ids: Vec<i64> = ids
            .iter()
            .filter_map(|id| match id {
                Value::Number(number) => number.as_i64(),
                Value::String(text) => text.parse().ok(),
                _ => None,
            })
            .collect();
        found.insert(key, ids);
    }
    Ok(found)
}

/// Tasks of one run, with the artifact links their `MLMDInputs`/`MLMDOutputs`
/// name. What the API shows that kfpd's columns do not hold (pod name, ML
/// Metadata execution id, child pods, upstream's exact state) goes in the
/// task's details under `adopted`.
pub fn tasks(
    run_id: &str,
    rows: &[SourceRow],
) -> Result<(Vec<Task>, Vec<ArtifactLink>), (String, Refusal)> {
    let mut tasks = Vec::with_capacity(rows.len());
    let mut links = Vec::new();
    for row in rows {
        let id = text(row, "UUID");
        check_id("UUID", &id).map_err(|reason| (id.clone(), reason))?;
        let state_text = text(row, "State");
        let state = run_state(&state_text);
        let children: Vec<String> = match opt_text(row, "ChildrenPods") {
            Some(json) => serde_json::from_str(&json).map_err(|_| {
                (
                    id.clone(),
                    format!("ChildrenPods is not a JSON list of names: {}", clip(&json)),
                )
            })?,
            None => Vec::new(),
        };
        let history = state_history(&text(row, "StateHistory"));
        let adopted = json!({
            "state": state.as_str(),
            "history": history
                .iter()
                .map(|(time, state, _)| json!({"t": time, "s": state.as_str()}))
                .collect::<Vec<_>>(),
            "pod_name": text(row, "PodName"),
            "execution_id": parse_int(Some(&text(row, "MLMDExecutionID"))),
            "children_pods": children,
            "namespace": text(row, "Namespace"),
            "pipeline_name": text(row, "PipelineName"),
            "fingerprint": text(row, "Fingerprint"),
        });
        for (column, direction) in [
            ("MLMDInputs", Direction::Input),
            ("MLMDOutputs", Direction::Output),
        ] {
            let ids =
                artifact_ids(&text(row, column), column).map_err(|reason| (id.clone(), reason))?;
            for (key, ids) in ids {
                for artifact_id in ids {
                    links.push(ArtifactLink {
                        task_id: id.clone(),
                        artifact_id,
                        direction,
                        key: key.clone(),
                    });
                }
            }
        }
        let name = opt_text(row, "Name").unwrap_or_else(|| text(row, "PodName"));
        tasks.push(Task {
            path: format!("adopted/{id}"),
            id,
            run_id: run_id.to_string(),
            parent_id: text(row, "ParentTaskUUID"),
            kind: TaskKind::Runtime,
            display_name: text(row, "Name"),
            name,
            iteration_index: -1,
            state: task_state(state),
            state_history: history
                .iter()
                .map(|(time, state, _)| TaskStateChange {
                    time: *time,
                    state: task_state(*state),
                })
                .collect(),
            error: None,
            created_at: int(row, "CreatedTimestamp"),
            started_at: int(row, "StartedTimestamp"),
            finished_at: int(row, "FinishedTimestamp"),
            attempts: 0,
            inputs: "{}".into(),
            outputs: "{}".into(),
            details: json!({ "adopted": adopted }).to_string(),
            // Upstream's fingerprints are not kfpd's cache keys: never a cache hit.
            fingerprint: String::new(),
            cached_from: String::new(),
            cache_scope: String::new(),
        });
    }
    Ok((tasks, links))
}

/// The objects the run's last reported workflow names as node outputs (Argo's
/// `status.nodes.*.outputs.artifacts[].s3.key`), which upstream's artifact read
/// endpoint serves from its bucket: recorded with the node id as producer, so
/// `…/nodes/{node_id}/artifacts/{name}:read` finds them.
pub fn workflow_artifacts(run: &Run, manifest: &str, bucket: &str) -> Vec<Artifact> {
    if manifest.trim().is_empty() {
        return Vec::new();
    }
    let Ok(workflow) = serde_json::from_str::<Value>(manifest)
        .or_else(|_| serde_yaml::from_str::<Value>(manifest))
    else {
        return Vec::new();
    };
    let Some(Value::Object(nodes)) = workflow.pointer("/status/nodes") else {
        return Vec::new();
    };
    let mut artifacts = Vec::new();
    for (node_id, node) in nodes {
        let Some(Value::Array(outputs)) = node.pointer("/outputs/artifacts") else {
            continue;
        };
        for output in outputs {
            let name = output
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(key) = output.pointer("/s3/key").and_then(Value::as_str) else {
                continue;
            };
            if name.is_empty() || key.is_empty() {
                continue;
            }
            let bucket = output
                .pointer("/s3/bucket")
                .and_then(Value::as_str)
                .filter(|bucket| !bucket.is_empty())
                .unwrap_or(bucket);
            let seed = format!("{}/{node_id}/{name}", run.id);
            let digest = uuid::Uuid::new_v5(&ARTIFACT_NAMESPACE, seed.as_bytes());
            let bits = u64::from_be_bytes(digest.as_bytes()[..8].try_into().unwrap_or([0; 8]));
            let id = (bits >> 11).max(1) as i64;
            artifacts.push(Artifact {
                id,
                run_id: run.id.clone(),
                producer_task_id: node_id.clone(),
                output_key: name.to_string(),
                name: name.to_string(),
                uri: format!("s3://{bucket}/{}", key.trim_start_matches('/')),
                schema_title: "system.Artifact".into(),
                schema_version: String::new(),
                metadata: "{}".into(),
                created_at: run.finished_at.max(run.created_at),
            });
        }
    }
    artifacts.sort_by_key(|artifact| artifact.id);
    artifacts
}

/// Schedule facts that are not in the `jobs` row: the latest tick upstream fired
/// and how many runs it made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fired {
    pub latest_scheduled_at: Option<i64>,
    pub count: i64,
}

fn trigger(row: &SourceRow) -> Trigger {
    if let Some(cron) = opt_text(row, "Schedule") {
        return Trigger::Cron {
            cron,
            start_time: opt_int(row, "CronScheduleStartTimeInSec"),
            end_time: opt_int(row, "CronScheduleEndTimeInSec"),
        };
    }
    if let Some(interval_second) = opt_int(row, "IntervalSecond").filter(|interval| *interval > 0) {
        return Trigger::Periodic {
            interval_second,
            start_time: opt_int(row, "PeriodicScheduleStartTimeInSec"),
            end_time: opt_int(row, "PeriodicScheduleEndTimeInSec"),
        };
    }
    Trigger::None
}

/// The schedule math's view of a trigger; None when kfpd cannot read it.
fn schedule_of(trigger: &Trigger) -> Result<kfpd_scheduler::Trigger, String> {
    match trigger {
        Trigger::None => Ok(kfpd_scheduler::Trigger::once()),
        Trigger::Cron {
            cron,
            start_time,
            end_time,
        } => {
            let schedule = kfpd_scheduler::parse(cron).map_err(|error| error.to_string())?;
            Ok(kfpd_scheduler::Trigger::cron(
                schedule,
                *start_time,
                *end_time,
            ))
        }
        Trigger::Periodic {
            interval_second,
            start_time,
            end_time,
        } => kfpd_scheduler::Trigger::periodic(*interval_second, *start_time, *end_time)
            .map_err(|error| error.to_string()),
    }
}

/// A recurring run, with where its schedule stands: the last tick is the
/// trigger's latest tick at or before the newest run upstream fired (runs are
/// made a moment after their tick), so kfpd's scheduler neither fires that tick
/// again nor skips the ones after it; catch-up then follows `no_catchup`.
/// Returns the row and, when kfpd cannot read the trigger, a warning.
pub fn recurring_run(
    row: &SourceRow,
    references: Option<&References>,
    fired: Fired,
) -> Result<(RecurringRun, Option<String>), Refusal> {
    let id = text(row, "UUID");
    check_id("UUID", &id)?;
    let experiment_id = opt_text(row, "ExperimentUUID")
        .or_else(|| references.and_then(|refs| refs.experiment.clone()))
        .unwrap_or_default();
    let namespace = opt_text(row, "Namespace")
        .or_else(|| references.and_then(|refs| refs.namespace.clone()))
        .unwrap_or_default();
    let source = pipeline_source(row, references)?;
    let trigger = trigger(row);
    let created_at = int(row, "CreatedAtInSec");
    let mut warning = None;
    let last_fired_at = match (schedule_of(&trigger), fired.latest_scheduled_at) {
        (_, None) => None,
        (Ok(schedule), Some(latest)) => match trigger {
            // A one-off run that made a run is done.
            Trigger::None => Some(latest),
            _ => schedule
                .latest_due(created_at, None, latest)
                .or(Some(latest)),
        },
        (Err(error), Some(latest)) => {
            warning = Some(format!(
                "kfpd cannot read its trigger and will not fire it: {error}"
            ));
            Some(latest)
        }
    };
    if warning.is_none() {
        if let Err(error) = schedule_of(&trigger) {
            warning = Some(format!(
                "kfpd cannot read its trigger and will not fire it: {error}"
            ));
        }
    }
    let inline = source.pipeline_version_id.is_empty() && source.spec.is_some();
    let recurring = RecurringRun {
        id,
        display_name: text(row, "DisplayName"),
        description: text(row, "Description"),
        namespace,
        experiment_id,
        service_account: text(row, "ServiceAccount"),
        max_concurrency: int(row, "MaxConcurrency"),
        no_catchup: boolean(row, "NoCatchup"),
        enabled: boolean(row, "Enabled"),
        created_at,
        updated_at: int(row, "UpdatedAtInSec"),
        trigger,
        pipeline_id: source.pipeline_id,
        pipeline_version_id: source.pipeline_version_id,
        pipeline_spec: if inline { source.spec } else { None },
        runtime_config: runtime_config(row)?,
        last_fired_at,
        // Zero: the scheduler looks at the row once and stores its real next tick.
        next_fire_at: Some(0),
        fired_count: fired.count,
        revision: 0,
    };
    Ok((recurring, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&'static str, &str)]) -> SourceRow {
        pairs
            .iter()
            .map(|(key, value)| (*key, Some(value.to_string())))
            .collect()
    }

    #[test]
    fn legacy_states_read_as_upstream_reads_them() {
        assert_eq!(run_state("Succeeded"), RunState::Succeeded);
        assert_eq!(run_state("done"), RunState::Succeeded);
        assert_eq!(run_state("Error"), RunState::Failed);
        assert_eq!(run_state("Terminating"), RunState::Canceling);
        assert_eq!(run_state(""), RunState::Unspecified);
        assert_eq!(run_state("NO_STATUS"), RunState::Unspecified);
        assert_eq!(
            storage_state("STORAGESTATE_ARCHIVED"),
            StorageState::Archived
        );
        assert_eq!(storage_state(""), StorageState::Available);
    }

    #[test]
    fn specs_with_a_platform_document_are_wrapped() {
        let spec =
            spec_json("pipelineInfo:\n  name: p\n---\nplatforms:\n  kubernetes: {}\n").unwrap();
        assert_eq!(spec["pipeline_spec"]["pipelineInfo"]["name"], "p");
        assert!(spec["platform_spec"]["platforms"].is_object());
        assert!(spec_json("- a\n- b\n").is_err());
    }

    #[test]
    fn runtime_config_prefers_runtime_parameters_then_v1_parameters() {
        let config = runtime_config(&row(&[
            ("RuntimeParameters", r#"{"n": 3}"#),
            ("PipelineRoot", "minio://mlpipeline/v2/artifacts"),
        ]))
        .unwrap();
        let value: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(value["parameters"]["n"], 3);
        assert_eq!(value["pipeline_root"], "minio://mlpipeline/v2/artifacts");
        let legacy = runtime_config(&row(&[
            ("RuntimeParameters", ""),
            ("Parameters", r#"[{"name":"x","value":"1"}]"#),
        ]))
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&legacy).unwrap()["parameters"]["x"],
            "1"
        );
        assert_eq!(
            runtime_config(&row(&[("RuntimeParameters", "null")])).unwrap(),
            ""
        );
        assert!(runtime_config(&row(&[("RuntimeParameters", "{broken")])).is_err());
    }
}
