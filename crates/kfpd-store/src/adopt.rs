//! Rows brought over from an upstream KFP database (`kfpd adopt`), as the store
//! writes them: with upstream's ids, states and times, not fresh ones, and with a
//! mark per upstream row so a later pass brings only what changed.

use crate::{
    Artifact, ArtifactLink, Experiment, Pipeline, PipelineVersion, RecurringRun, Run, Task,
};

/// One transaction's worth of adopted rows. Rows replace the kfpd rows of the same
/// ids; a run's tasks, artifacts and links replace all of that run's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdoptBatch {
    pub experiments: Vec<Experiment>,
    pub pipelines: Vec<Pipeline>,
    pub versions: Vec<PipelineVersion>,
    pub recurring_runs: Vec<RecurringRun>,
    pub runs: Vec<AdoptedRun>,
    /// Upstream's default experiment, which becomes kfpd's.
    pub default_experiment: Option<String>,
    /// What the batch brings, remembered in the same transaction.
    pub marks: Vec<RowMark>,
}

impl AdoptBatch {
    pub fn is_empty(&self) -> bool {
        self.experiments.is_empty()
            && self.pipelines.is_empty()
            && self.versions.is_empty()
            && self.recurring_runs.is_empty()
            && self.runs.is_empty()
            && self.default_experiment.is_none()
            && self.marks.is_empty()
    }
}

/// A run with what the run row alone does not hold.
#[derive(Clone, Debug, PartialEq)]
pub struct AdoptedRun {
    pub run: Run,
    /// The spec the run executed (JSON), kept like a created run's.
    pub pipeline_spec: String,
    /// Whether the API shows the spec (no pipeline version reference).
    pub inline_spec: bool,
    pub archived_at: i64,
    pub tasks: Vec<Task>,
    pub artifacts: Vec<Artifact>,
    pub links: Vec<ArtifactLink>,
}

/// An upstream row (table and primary key) and the fingerprint of its columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowMark {
    pub table: String,
    pub id: String,
    pub fingerprint: String,
}

/// A finished adoption pass, as `adopt_passes` keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptPass {
    pub started_at: i64,
    pub finished_at: i64,
    /// The source URL without its password.
    pub source: String,
    pub brought: i64,
    pub unchanged: i64,
    pub refused: i64,
}

/// Which unique name an adopted row would take from a kfpd row of another id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameScope<'a> {
    /// Experiments are unique by namespace and name.
    Experiment { namespace: &'a str },
    /// Pipelines are unique by namespace and name.
    Pipeline { namespace: &'a str },
    /// Versions are unique by pipeline and name.
    Version { pipeline_id: &'a str },
}

/// The kinds of adopted rows a pass removes when upstream no longer has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptedKind {
    Experiment,
    Pipeline,
    Version,
    RecurringRun,
    Run,
}

/// An adopted row upstream no longer has, and what became of it in kfpd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoneRow {
    pub id: String,
    /// The kfpd row's name (display name for runs and recurring runs).
    pub name: String,
    /// Why kfpd keeps it: rows made in kfpd itself depend on it.
    pub kept: Option<String>,
}

/// The mark table under which the ending of an adopted unfinished run is
/// remembered (fingerprint: the upstream row's at the time), so a run kfpd
/// itself moved on later (a retry) is never ended as adopted again.
pub const ENDED_RUNS: &str = "run_details:ended";
