//! The upstream tables adoption reads, with the columns it needs and those only
//! some versions have (KFP 2.15, 2.17, and older rows migrated forward).

/// One upstream table: its name, primary key, the columns every supported
/// version has and those that may be missing (read as NULL when they are).
pub struct Table {
    pub name: &'static str,
    pub key: &'static str,
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
}

pub const EXPERIMENTS: Table = Table {
    name: "experiments",
    key: "UUID",
    required: &[
        "UUID",
        "Name",
        "Description",
        "CreatedAtInSec",
        "Namespace",
        "StorageState",
    ],
    optional: &["LastRunCreatedAtInSec"],
};

pub const PIPELINES: Table = Table {
    name: "pipelines",
    key: "UUID",
    required: &["UUID", "CreatedAtInSec", "Name", "Description", "Status"],
    // DisplayName came with 2.x (legacy rows are backfilled from Name); Namespace
    // with multi-user pipelines.
    optional: &["DisplayName", "Namespace", "DefaultVersionId", "Parameters"],
};

pub const PIPELINE_VERSIONS: Table = Table {
    name: "pipeline_versions",
    key: "UUID",
    required: &[
        "UUID",
        "CreatedAtInSec",
        "Name",
        "PipelineId",
        "Status",
        "PipelineSpec",
    ],
    optional: &[
        "DisplayName",
        "CodeSourceUrl",
        "Description",
        "PipelineSpecURI",
        "Parameters",
    ],
};

pub const JOBS: Table = Table {
    name: "jobs",
    key: "UUID",
    required: &[
        "UUID",
        "DisplayName",
        "Name",
        "Namespace",
        "ServiceAccount",
        "Description",
        "MaxConcurrency",
        "NoCatchup",
        "CreatedAtInSec",
        "UpdatedAtInSec",
        "Enabled",
        "ExperimentUUID",
        "CronScheduleStartTimeInSec",
        "CronScheduleEndTimeInSec",
        "Schedule",
        "PeriodicScheduleStartTimeInSec",
        "PeriodicScheduleEndTimeInSec",
        "IntervalSecond",
        "PipelineId",
        "PipelineName",
        "PipelineSpecManifest",
        "WorkflowSpecManifest",
        "Parameters",
        "Conditions",
    ],
    optional: &[
        "PipelineVersionId",
        "RuntimeParameters",
        "PipelineRoot",
        "PluginsInput",
    ],
};

pub const RUNS: Table = Table {
    name: "run_details",
    key: "UUID",
    required: &[
        "UUID",
        "ExperimentUUID",
        "DisplayName",
        "Name",
        "StorageState",
        "Namespace",
        "ServiceAccount",
        "Description",
        "CreatedAtInSec",
        "ScheduledAtInSec",
        "FinishedAtInSec",
        "Conditions",
        "PipelineId",
        "PipelineName",
        "PipelineSpecManifest",
        "WorkflowSpecManifest",
        "Parameters",
        "PipelineRuntimeManifest",
        "WorkflowRuntimeManifest",
    ],
    optional: &[
        "PipelineVersionId",
        "RuntimeParameters",
        "PipelineRoot",
        "JobUUID",
        "State",
        "StateHistory",
        "PluginsInput",
        "PluginsOutput",
        "PipelineContextId",
        "PipelineRunContextId",
        "RetryGeneration",
        "RetryClaimedAtInSec",
        "ArchivedAtInSec",
    ],
};

pub const TASKS: Table = Table {
    name: "tasks",
    key: "UUID",
    required: &[
        "UUID",
        "Namespace",
        "PipelineName",
        "RunUUID",
        "MLMDExecutionID",
        "CreatedTimestamp",
        "StartedTimestamp",
        "FinishedTimestamp",
        "Fingerprint",
    ],
    optional: &[
        "PodName",
        "Name",
        "ParentTaskUUID",
        "State",
        "StateHistory",
        "MLMDInputs",
        "MLMDOutputs",
        "ChildrenPods",
        "Payload",
    ],
};

pub const RESOURCE_REFERENCES: Table = Table {
    name: "resource_references",
    key: "ResourceUUID",
    required: &[
        "ResourceUUID",
        "ResourceType",
        "ReferenceUUID",
        "ReferenceName",
        "ReferenceType",
        "Relationship",
    ],
    optional: &["Payload"],
};

pub const PIPELINE_TAGS: Table = Table {
    name: "pipeline_tags",
    key: "PipelineId",
    required: &["PipelineId", "TagKey", "TagValue"],
    optional: &[],
};

pub const PIPELINE_VERSION_TAGS: Table = Table {
    name: "pipeline_version_tags",
    key: "PipelineVersionId",
    required: &["PipelineVersionId", "TagKey", "TagValue"],
    optional: &[],
};

pub const DEFAULT_EXPERIMENTS: Table = Table {
    name: "default_experiments",
    key: "DefaultExperimentId",
    required: &["DefaultExperimentId"],
    optional: &[],
};

pub const DB_STATUSES: Table = Table {
    name: "db_statuses",
    key: "HaveSamplesLoaded",
    required: &["HaveSamplesLoaded"],
    optional: &[],
};

/// Newer upstream servers keep a recurring run's last fired tick here.
pub const RECURRING_RUN_STATES: Table = Table {
    name: "recurring_run_states",
    key: "JobUUID",
    required: &["JobUUID", "LastRunIndex", "LastScheduledAtInSec"],
    optional: &[],
};

/// Tables without which the database is not one upstream's API server wrote.
pub const REQUIRED_TABLES: &[&Table] = &[
    &EXPERIMENTS,
    &PIPELINES,
    &PIPELINE_VERSIONS,
    &JOBS,
    &RUNS,
    &TASKS,
    &RESOURCE_REFERENCES,
    &DEFAULT_EXPERIMENTS,
    &DB_STATUSES,
];

/// Tables only some versions have.
pub const OPTIONAL_TABLES: &[&Table] = &[
    &PIPELINE_TAGS,
    &PIPELINE_VERSION_TAGS,
    &RECURRING_RUN_STATES,
];

impl Table {
    /// Every column adoption reads, required first.
    pub fn columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.required.iter().chain(self.optional.iter()).copied()
    }
}
