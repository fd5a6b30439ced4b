//! kfpd's metadata store: experiments, pipelines and their versions, runs and
//! recurring runs, behind one trait per concern. [`sql::SqlStore`] implements them on
//! SQLite, PostgreSQL and MySQL; `tests/conformance.rs` holds every backend to the
//! same behaviour.

pub mod adopt;
pub mod changes;
mod error;
pub mod list;
pub mod model;
pub mod sql;

use async_trait::async_trait;

pub use changes::{Change, Changes};
pub use error::{query_errors, Error, QUERY_ERROR_KINDS};
pub use list::{ListQuery, Page};
pub use model::*;

/// Which runs or recurring runs a list covers, besides the filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only rows in this namespace (multi-user mode).
    pub namespace: Option<String>,
    /// Only rows of this experiment.
    pub experiment_id: Option<String>,
}

#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Fails with `AlreadyExists` when the namespace already has an experiment of that name.
    async fn create_experiment(&self, new: NewExperiment) -> Result<Experiment, Error>;
    async fn get_experiment(&self, id: &str) -> Result<Experiment, Error>;
    async fn list_experiments(
        &self,
        namespace: Option<&str>,
        query: &ListQuery,
    ) -> Result<Page<Experiment>, Error>;
    /// Archives the experiment with its runs (and disables its recurring runs), or
    /// unarchives the experiment alone, as upstream does.
    async fn set_experiment_storage_state(
        &self,
        id: &str,
        state: StorageState,
        now: i64,
    ) -> Result<(), Error>;
    /// Deletes the experiment; its runs and recurring runs stay. Refuses the default
    /// experiment with `Aborted`.
    async fn delete_experiment(&self, id: &str) -> Result<(), Error>;
    /// The id of the default experiment, created on first use (single-user mode).
    async fn default_experiment(&self, now: i64) -> Result<Experiment, Error>;
}

#[async_trait]
pub trait PipelineStore: Send + Sync {
    /// Creates a pipeline, and its first version when given, in one transaction.
    async fn create_pipeline(
        &self,
        pipeline: NewPipeline,
        version: Option<NewPipelineVersion>,
    ) -> Result<(Pipeline, Option<PipelineVersion>), Error>;
    async fn get_pipeline(&self, id: &str) -> Result<Pipeline, Error>;
    async fn get_pipeline_by_name(&self, namespace: &str, name: &str) -> Result<Pipeline, Error>;
    async fn list_pipelines(
        &self,
        namespace: Option<&str>,
        query: &ListQuery,
    ) -> Result<Page<Pipeline>, Error>;
    async fn update_pipeline(&self, id: &str, update: PipelineUpdate) -> Result<Pipeline, Error>;
    /// Without `cascade`, a pipeline that still has versions is not deleted
    /// (`FailedPrecondition`).
    async fn delete_pipeline(&self, id: &str, cascade: bool) -> Result<(), Error>;

    async fn create_pipeline_version(
        &self,
        version: NewPipelineVersion,
    ) -> Result<PipelineVersion, Error>;
    async fn get_pipeline_version(&self, id: &str) -> Result<PipelineVersion, Error>;
    /// The newest version of a pipeline (by creation time, then id).
    async fn latest_pipeline_version(&self, pipeline_id: &str) -> Result<PipelineVersion, Error>;
    async fn list_pipeline_versions(
        &self,
        pipeline_id: &str,
        query: &ListQuery,
    ) -> Result<Page<PipelineVersion>, Error>;
    async fn update_pipeline_version(
        &self,
        id: &str,
        update: PipelineUpdate,
    ) -> Result<PipelineVersion, Error>;
    async fn delete_pipeline_version(&self, id: &str) -> Result<(), Error>;
}

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a PENDING run and bumps its experiment's `last_run_created_at`.
    async fn create_run(&self, new: NewRun) -> Result<Run, Error>;
    /// A run with its pipeline spec.
    async fn get_run(&self, id: &str) -> Result<Run, Error>;
    /// Runs without their pipeline specs.
    async fn list_runs(&self, scope: &Scope, query: &ListQuery) -> Result<Page<Run>, Error>;
    /// Unarchiving a run of an archived experiment fails with `FailedPrecondition`.
    async fn set_run_storage_state(
        &self,
        id: &str,
        state: StorageState,
        now: i64,
    ) -> Result<(), Error>;
    async fn delete_run(&self, id: &str) -> Result<(), Error>;
    /// Moves a run to `state` (recording history and, for terminal states, the
    /// finish time) if it is currently in one of `from`; returns the run after the
    /// change, or `FailedPrecondition` naming its current state.
    async fn transition_run(
        &self,
        id: &str,
        from: &[RunState],
        state: RunState,
        error: Option<String>,
        now: i64,
    ) -> Result<Run, Error>;
    /// The feed of run and task writes committed through this store (and its
    /// clones), for watchers that would otherwise read on a timer.
    fn changes(&self) -> &Changes;
}

#[async_trait]
pub trait RecurringRunStore: Send + Sync {
    async fn create_recurring_run(&self, new: NewRecurringRun) -> Result<RecurringRun, Error>;
    async fn get_recurring_run(&self, id: &str) -> Result<RecurringRun, Error>;
    async fn list_recurring_runs(
        &self,
        scope: &Scope,
        query: &ListQuery,
    ) -> Result<Page<RecurringRun>, Error>;
    async fn set_recurring_run_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<(), Error>;
    async fn delete_recurring_run(&self, id: &str) -> Result<(), Error>;

    /// Applies `update` and bumps the revision, if the row still matches
    /// `guard`; `Aborted` when it changed since it was read (read it again and
    /// retry), `NotFound` when it is gone.
    async fn update_recurring_run(
        &self,
        id: &str,
        guard: ScheduleGuard,
        update: RecurringRunUpdate,
    ) -> Result<RecurringRun, Error>;
    /// Enabled recurring runs with `next_fire_at <= now`, earliest first.
    async fn due_recurring_runs(&self, now: i64, limit: usize) -> Result<Vec<RecurringRun>, Error>;
    /// The earliest `next_fire_at` of an enabled recurring run.
    async fn next_recurring_run_due(&self) -> Result<Option<i64>, Error>;
    /// Claims `fire.tick` (moves `last_fired_at` from the guard's value to the
    /// tick) and creates its run, in one transaction: a tick has exactly one
    /// run however many schedulers try, and a crash loses neither.
    async fn fire_recurring_run(&self, fire: Fire) -> Result<FireOutcome, Error>;
    /// Sets `next_fire_at` without claiming a tick, if the row still matches
    /// `guard`; returns whether it did.
    async fn reschedule_recurring_run(
        &self,
        id: &str,
        guard: ScheduleGuard,
        next_fire_at: Option<i64>,
    ) -> Result<bool, Error>;
    /// Runs of the recurring run that have not finished.
    async fn active_run_count(&self, recurring_run_id: &str) -> Result<i64, Error>;
}

/// Tasks and artifacts of runs: what the engine records while executing.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Inserts the task, or updates the row with the same id.
    async fn save_task(&self, task: &Task) -> Result<(), Error> {
        self.save_tasks(std::slice::from_ref(task)).await
    }
    /// [`ExecutionStore::save_task`] for several rows in one transaction, in order.
    async fn save_tasks(&self, tasks: &[Task]) -> Result<(), Error>;
    async fn get_task(&self, id: &str) -> Result<Task, Error>;
    /// All tasks of a run, oldest first.
    async fn list_tasks(&self, run_id: &str) -> Result<Vec<Task>, Error>;
    /// The newest task with this fingerprint and cache scope that succeeded (ran,
    /// not itself cached) at or after `not_before` and whose run still exists.
    async fn find_cached_task(
        &self,
        fingerprint: &str,
        scope: &str,
        not_before: i64,
    ) -> Result<Option<Task>, Error>;
    /// Records an artifact and the link from the task that produced it, in one transaction.
    async fn create_artifact(&self, artifact: &Artifact) -> Result<(), Error>;
    async fn link_artifact(&self, run_id: &str, link: &ArtifactLink) -> Result<(), Error>;
    async fn get_artifact(&self, id: i64) -> Result<Artifact, Error>;
    /// Artifacts recorded with this URI and schema title, oldest first (at most
    /// `limit`): what an importer without `reimport` may reuse.
    async fn find_artifacts_by_uri(
        &self,
        uri: &str,
        schema_title: &str,
        limit: i64,
    ) -> Result<Vec<Artifact>, Error>;
    /// Artifacts a run recorded, and those its tasks are linked to although another
    /// run recorded them (an importer reusing an artifact, a cache hit).
    async fn list_artifacts(&self, run_id: &str) -> Result<Vec<Artifact>, Error>;
    /// Links of one run (for task inputs/outputs) or of one artifact (for lineage).
    async fn run_artifact_links(&self, run_id: &str) -> Result<Vec<ArtifactLink>, Error>;
    async fn artifact_links(&self, artifact_id: i64) -> Result<Vec<ArtifactLink>, Error>;
    /// The pipeline spec JSON a run executes (also for runs made from a version).
    async fn run_spec(&self, run_id: &str) -> Result<String, Error>;
}

/// A run retention looks at, with where a scan over such runs stands.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetainedRun {
    pub finished_at: i64,
    pub id: String,
}

/// Which finished runs retention deletes; a rule left `None` deletes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunRetention {
    /// Runs that finished before this time (Unix seconds).
    pub finished_before: Option<i64>,
    /// Runs older (by creation) than the newest this many of their experiment.
    pub keep_per_experiment: Option<u64>,
}

/// What retention reads and deletes. Lists are ordered by finish time, then id, and
/// continue after `after`, so a scan that skips rows (a dry run, a run whose objects
/// could not be deleted) still ends.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Finished runs (`0 < finished_at < finished_before`) whose artifacts are still kept.
    async fn runs_with_expired_artifacts(
        &self,
        finished_before: i64,
        after: Option<&RetainedRun>,
        limit: usize,
    ) -> Result<Vec<RetainedRun>, Error>;
    /// The artifacts still kept that run `run_id` recorded or links and that every
    /// stored run holding them (the recorder, each run linking one) finished before
    /// `finished_before`: deleting their objects leaves no kept run without its inputs.
    async fn expired_artifacts(
        &self,
        run_id: &str,
        finished_before: i64,
    ) -> Result<Vec<Artifact>, Error>;
    /// Marks the artifacts deleted and, of the runs, those in a final state as having
    /// lost their artifacts and logs, at `now`, in one transaction. Returns the runs
    /// that are marked afterwards (also those marked before).
    async fn mark_artifacts_deleted(
        &self,
        run_ids: &[String],
        artifact_ids: &[i64],
        now: i64,
    ) -> Result<Vec<String>, Error>;
    /// Runs in a final state that `rule` deletes.
    async fn runs_to_delete(
        &self,
        rule: RunRetention,
        after: Option<&RetainedRun>,
        limit: usize,
    ) -> Result<Vec<RetainedRun>, Error>;
    /// The artifacts still kept that the runs recorded or link and that no other
    /// stored run holds: what deleting the runs leaves without an owner.
    async fn artifacts_freed_by(&self, run_ids: &[String]) -> Result<Vec<Artifact>, Error>;
    /// Deletes those of the runs that are in a final state and marked by
    /// [`RetentionStore::mark_artifacts_deleted`], with their specs, tasks and links,
    /// and the artifacts no stored run holds any more, in one transaction. Returns
    /// the ids of the runs deleted.
    async fn delete_retained_runs(&self, run_ids: &[String]) -> Result<Vec<String>, Error>;
    /// When the artifacts' objects were deleted, for those of `ids` whose were.
    async fn artifacts_deleted_at(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, i64>, Error>;
    /// When retention deleted the run's artifacts and logs; 0 while they are kept.
    async fn run_artifacts_deleted_at(&self, run_id: &str) -> Result<i64, Error>;
}

/// Everything the API server needs from its database.
pub trait MetadataStore:
    ExperimentStore + PipelineStore + RunStore + RecurringRunStore + ExecutionStore + RetentionStore
{
}

impl<T> MetadataStore for T where
    T: ExperimentStore
        + PipelineStore
        + RunStore
        + RecurringRunStore
        + ExecutionStore
        + RetentionStore
{
}

/// A fresh random resource id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
