//! Rows as the store keeps them. Times are Unix seconds, as upstream stores them,
//! so filters written against upstream (`created_at < 1700000000`) mean the same here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Tags on pipelines and pipeline versions; ordered so that output is stable.
pub type Tags = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageState {
    Available,
    Archived,
}

impl StorageState {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageState::Available => "AVAILABLE",
            StorageState::Archived => "ARCHIVED",
        }
    }

    /// Unknown or legacy values read back as available, as upstream does for experiments.
    pub fn parse(text: &str) -> StorageState {
        match text {
            "ARCHIVED" | "STORAGESTATE_ARCHIVED" => StorageState::Archived,
            _ => StorageState::Available,
        }
    }
}

/// The v2beta1 `RuntimeState` of a run, stored by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunState {
    Unspecified,
    Pending,
    Running,
    Succeeded,
    Skipped,
    Failed,
    Canceling,
    Canceled,
    Paused,
}

impl RunState {
    pub const ALL: [RunState; 9] = [
        RunState::Unspecified,
        RunState::Pending,
        RunState::Running,
        RunState::Succeeded,
        RunState::Skipped,
        RunState::Failed,
        RunState::Canceling,
        RunState::Canceled,
        RunState::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Unspecified => "RUNTIME_STATE_UNSPECIFIED",
            RunState::Pending => "PENDING",
            RunState::Running => "RUNNING",
            RunState::Succeeded => "SUCCEEDED",
            RunState::Skipped => "SKIPPED",
            RunState::Failed => "FAILED",
            RunState::Canceling => "CANCELING",
            RunState::Canceled => "CANCELED",
            RunState::Paused => "PAUSED",
        }
    }

    /// Reads v2 names and the legacy v1 condition strings upstream still has in old rows.
    pub fn parse(text: &str) -> RunState {
        match text {
            "PENDING" | "Pending" => RunState::Pending,
            "RUNNING" | "Running" | "ENABLED" | "Ready" => RunState::Running,
            "SUCCEEDED" | "Succeeded" | "Done" => RunState::Succeeded,
            "SKIPPED" | "Skipped" => RunState::Skipped,
            "FAILED" | "Failed" | "Error" => RunState::Failed,
            "CANCELING" | "Terminating" => RunState::Canceling,
            "CANCELED" | "DISABLED" => RunState::Canceled,
            "PAUSED" => RunState::Paused,
            _ => RunState::Unspecified,
        }
    }

    /// The v1 condition string upstream keeps next to the state (filter key `status`).
    pub fn condition(self) -> &'static str {
        match self {
            RunState::Unspecified => "Unknown",
            RunState::Pending | RunState::Paused => "Pending",
            RunState::Running => "Running",
            RunState::Succeeded => "Succeeded",
            RunState::Skipped => "Skipped",
            RunState::Failed => "Failed",
            RunState::Canceling => "Terminating",
            RunState::Canceled => "Canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Skipped | RunState::Canceled
        )
    }

    /// States from which a terminate request moves the run to CANCELING.
    pub fn is_terminable(self) -> bool {
        matches!(
            self,
            RunState::Unspecified | RunState::Pending | RunState::Running | RunState::Paused
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    #[serde(rename = "t")]
    pub time: i64,
    #[serde(rename = "s")]
    pub state: RunState,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    pub id: String,
    pub name: String,
    pub description: String,
    pub namespace: String,
    pub created_at: i64,
    pub last_run_created_at: i64,
    pub storage_state: StorageState,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewExperiment {
    pub name: String,
    pub description: String,
    pub namespace: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub namespace: String,
    pub created_at: i64,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewPipeline {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub namespace: String,
    pub created_at: i64,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineVersion {
    pub id: String,
    pub pipeline_id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub created_at: i64,
    pub code_source_url: String,
    /// Where the package came from (`package_url.pipeline_url`), empty for uploads.
    pub package_url: String,
    /// The `pipeline_spec` JSON document as the API returns it.
    pub pipeline_spec: String,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewPipelineVersion {
    pub pipeline_id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub created_at: i64,
    pub code_source_url: String,
    pub package_url: String,
    pub pipeline_spec: String,
    pub tags: Tags,
}

/// A partial update: `None` leaves a field as it is; `Some(tags)` replaces all tags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineUpdate {
    pub display_name: Option<String>,
    pub tags: Option<Tags>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub id: String,
    pub experiment_id: String,
    pub namespace: String,
    pub display_name: String,
    pub description: String,
    pub storage_state: StorageState,
    pub service_account: String,
    pub created_at: i64,
    pub scheduled_at: i64,
    pub finished_at: i64,
    pub state: RunState,
    pub error: Option<String>,
    pub pipeline_id: String,
    pub pipeline_version_id: String,
    pub recurring_run_id: String,
    /// `runtime_config` as JSON (`{"parameters":{…},"pipeline_root":"…"}`), empty when not given.
    pub runtime_config: String,
    pub state_history: Vec<StateChange>,
    /// The inline `pipeline_spec` JSON of runs not made from a stored version; only
    /// filled by `get_run`, never by lists, because specs can be megabytes.
    pub pipeline_spec: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    pub experiment_id: String,
    pub namespace: String,
    pub display_name: String,
    pub description: String,
    pub service_account: String,
    pub created_at: i64,
    pub scheduled_at: i64,
    pub pipeline_id: String,
    pub pipeline_version_id: String,
    pub recurring_run_id: String,
    pub runtime_config: String,
    /// The spec the run executes, always stored (also for version references), so a
    /// run keeps working when its pipeline version is deleted.
    pub pipeline_spec: String,
    /// Whether `pipeline_spec` was given inline (and is echoed back as such).
    pub inline_spec: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    None,
    Cron {
        cron: String,
        start_time: Option<i64>,
        end_time: Option<i64>,
    },
    Periodic {
        interval_second: i64,
        start_time: Option<i64>,
        end_time: Option<i64>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct RecurringRun {
    pub id: String,
    pub display_name: String,
    pub description: String,
    pub namespace: String,
    pub experiment_id: String,
    pub service_account: String,
    pub max_concurrency: i64,
    pub no_catchup: bool,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub trigger: Trigger,
    pub pipeline_id: String,
    pub pipeline_version_id: String,
    /// Inline spec JSON when the recurring run was created from a spec.
    pub pipeline_spec: Option<String>,
    pub runtime_config: String,
    /// The last tick fired, or skipped when the recurring run was enabled again
    /// or its trigger edited; `None` before the first.
    pub last_fired_at: Option<i64>,
    /// When the recurring run is due next (a lower bound: the scheduler checks
    /// the trigger); `None` when its trigger will not fire again.
    pub next_fire_at: Option<i64>,
    /// Runs fired so far; the next run's index is `fired_count + 1`.
    pub fired_count: i64,
    /// Counts edits, enables and disables.
    pub revision: i64,
}

impl RecurringRun {
    /// The schedule state a conditional write of this row expects.
    pub fn guard(&self) -> ScheduleGuard {
        ScheduleGuard {
            revision: self.revision,
            last_fired_at: self.last_fired_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewRecurringRun {
    pub display_name: String,
    pub description: String,
    pub namespace: String,
    pub experiment_id: String,
    pub service_account: String,
    pub max_concurrency: i64,
    pub no_catchup: bool,
    pub enabled: bool,
    pub created_at: i64,
    pub trigger: Trigger,
    pub pipeline_id: String,
    pub pipeline_version_id: String,
    pub pipeline_spec: Option<String>,
    pub runtime_config: String,
    /// When the new recurring run is first due (see [`RecurringRun::next_fire_at`]).
    pub next_fire_at: Option<i64>,
}

/// What a conditional write of a recurring run expects to find: no edit and no
/// fired tick since the row was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleGuard {
    pub revision: i64,
    pub last_fired_at: Option<i64>,
}

/// Where a recurring run's schedule stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleState {
    pub last_fired_at: Option<i64>,
    pub next_fire_at: Option<i64>,
}

/// The pipeline a recurring run executes.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurringRunSource {
    pub pipeline_id: String,
    /// Empty: the newest version of the pipeline at each tick.
    pub pipeline_version_id: String,
    /// Inline spec JSON.
    pub pipeline_spec: Option<String>,
}

/// Changes to a recurring run; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecurringRunUpdate {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub service_account: Option<String>,
    pub max_concurrency: Option<i64>,
    pub no_catchup: Option<bool>,
    pub enabled: Option<bool>,
    pub trigger: Option<Trigger>,
    pub source: Option<RecurringRunSource>,
    pub runtime_config: Option<String>,
    pub schedule: Option<ScheduleState>,
    pub updated_at: i64,
}

/// One tick of a recurring run to fire: the claim and the run it creates.
#[derive(Clone, Debug, PartialEq)]
pub struct Fire {
    pub recurring_run_id: String,
    /// The row as the scheduler read it; the claim fails if it changed.
    pub guard: ScheduleGuard,
    /// The tick, which becomes `last_fired_at` (always later than the guard's).
    pub tick: i64,
    /// When the recurring run is due after this tick.
    pub next_fire_at: Option<i64>,
    /// No run is created while this many runs of the recurring run are active.
    pub max_concurrency: i64,
    /// Derived from the recurring run and the tick, so a tick can only ever
    /// have one run.
    pub run_id: String,
    pub run: NewRun,
}

/// What became of a [`Fire`].
#[derive(Clone, Debug, PartialEq)]
pub enum FireOutcome {
    /// The tick was claimed and its run created.
    Fired(Box<Run>),
    /// The tick's run already existed (a claim was lost after its run was
    /// written); the tick is now claimed, nothing else changed.
    AlreadyFired,
    /// The row changed since it was read (fired by someone else, edited,
    /// disabled or deleted); nothing was written.
    Lost,
    /// The recurring run has `max_concurrency` active runs; nothing was written.
    AtCapacity { active_runs: i64 },
}

/// What a task row stands for in the pipeline's DAG (after upstream's MLMD-removal
/// proposal): the container or importer that ran, or the DAG node around tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// The pipeline's root DAG.
    Root,
    /// A container task (a process).
    Runtime,
    /// An importer task.
    Importer,
    /// A nested pipeline.
    Dag,
    /// A `ParallelFor` over items.
    Loop,
    /// One item of a `ParallelFor`.
    LoopIteration,
    /// The DAG of a `dsl.If`/`Elif`/`Else` group.
    Condition,
    /// One branch inside a condition group.
    ConditionBranch,
    /// The guarded body of a `dsl.ExitHandler`.
    ExitHandler,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Root => "ROOT",
            TaskKind::Runtime => "RUNTIME",
            TaskKind::Importer => "IMPORTER",
            TaskKind::Dag => "DAG",
            TaskKind::Loop => "LOOP",
            TaskKind::LoopIteration => "LOOP_ITERATION",
            TaskKind::Condition => "CONDITION",
            TaskKind::ConditionBranch => "CONDITION_BRANCH",
            TaskKind::ExitHandler => "EXIT_HANDLER",
        }
    }

    pub fn parse(text: &str) -> TaskKind {
        match text {
            "ROOT" => TaskKind::Root,
            "IMPORTER" => TaskKind::Importer,
            "DAG" => TaskKind::Dag,
            "LOOP" => TaskKind::Loop,
            "LOOP_ITERATION" => TaskKind::LoopIteration,
            "CONDITION" => TaskKind::Condition,
            "CONDITION_BRANCH" => TaskKind::ConditionBranch,
            "EXIT_HANDLER" => TaskKind::ExitHandler,
            _ => TaskKind::Runtime,
        }
    }
}

/// A task's state; `Cached` means its outputs were reused from an earlier run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Canceled,
    Cached,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Running => "RUNNING",
            TaskState::Succeeded => "SUCCEEDED",
            TaskState::Failed => "FAILED",
            TaskState::Skipped => "SKIPPED",
            TaskState::Canceled => "CANCELED",
            TaskState::Cached => "CACHED",
        }
    }

    pub fn parse(text: &str) -> TaskState {
        match text {
            "RUNNING" => TaskState::Running,
            "SUCCEEDED" => TaskState::Succeeded,
            "FAILED" => TaskState::Failed,
            "SKIPPED" => TaskState::Skipped,
            "CANCELED" => TaskState::Canceled,
            "CACHED" => TaskState::Cached,
            _ => TaskState::Pending,
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Pending | TaskState::Running)
    }

    /// Finished with usable outputs.
    pub fn is_done(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Cached)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStateChange {
    #[serde(rename = "t")]
    pub time: i64,
    #[serde(rename = "s")]
    pub state: TaskState,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub id: String,
    pub run_id: String,
    /// Empty for the root task.
    pub parent_id: String,
    /// Unique within the run, stable across retries (`root/for-loop-2/1/add`).
    pub path: String,
    pub kind: TaskKind,
    /// The task's key in its DAG.
    pub name: String,
    /// `taskInfo.name`.
    pub display_name: String,
    pub iteration_index: i64,
    pub state: TaskState,
    pub state_history: Vec<TaskStateChange>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub attempts: i64,
    /// Input parameter values as a JSON object.
    pub inputs: String,
    /// Output parameter values as a JSON object.
    pub outputs: String,
    /// Executor details as a JSON object (command, log object, exit code, …).
    pub details: String,
    /// Cache fingerprint; empty when the task is not cacheable.
    pub fingerprint: String,
    /// For cached tasks: the task whose outputs were reused.
    pub cached_from: String,
    /// Who may reuse this task's outputs (`<namespace>/<pipeline name>`); with a
    /// fingerprint, a successful task is a cache entry for that scope only.
    pub cache_scope: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    /// Numeric, as the API's `artifact_ids` are int64.
    pub id: i64,
    pub run_id: String,
    pub producer_task_id: String,
    pub output_key: String,
    pub name: String,
    pub uri: String,
    pub schema_title: String,
    pub schema_version: String,
    /// JSON object.
    pub metadata: String,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Input => "INPUT",
            Direction::Output => "OUTPUT",
        }
    }
}

/// A task consumed (`Input`) or produced (`Output`) an artifact under `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactLink {
    pub task_id: String,
    pub artifact_id: i64,
    pub direction: Direction,
    pub key: String,
}
