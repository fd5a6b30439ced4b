-- Upstream KFP's API server tables (KFP 2.15/2.17) on MySQL, as its GORM models
-- create them: CamelCase columns, varchar(255) strings, LONGTEXT large text,
-- bigint integers. Used by the adoption tests to build an upstream database.
CREATE TABLE db_statuses (
  HaveSamplesLoaded tinyint(1) NOT NULL,
  PRIMARY KEY (HaveSamplesLoaded)
);
CREATE TABLE default_experiments (
  DefaultExperimentId varchar(191) NOT NULL,
  PRIMARY KEY (DefaultExperimentId)
);
CREATE TABLE experiments (
  UUID varchar(191) NOT NULL,
  Name varchar(128) NOT NULL,
  Description varchar(255) NOT NULL,
  CreatedAtInSec bigint NOT NULL,
  LastRunCreatedAtInSec bigint NOT NULL,
  Namespace varchar(63) NOT NULL,
  StorageState varchar(255) NOT NULL,
  PRIMARY KEY (UUID),
  UNIQUE KEY idx_name_namespace (Name, Namespace)
);
CREATE TABLE pipelines (
  UUID varchar(64) NOT NULL,
  CreatedAtInSec bigint NOT NULL,
  Name varchar(128) NOT NULL,
  DisplayName varchar(255) NOT NULL,
  Description longtext NOT NULL,
  Parameters longtext,
  Status varchar(255) NOT NULL,
  DefaultVersionId varchar(255),
  Namespace varchar(63),
  PRIMARY KEY (UUID),
  UNIQUE KEY namespace_name (Name, Namespace)
);
CREATE TABLE pipeline_versions (
  UUID varchar(191) NOT NULL,
  CreatedAtInSec bigint NOT NULL,
  Name varchar(127) NOT NULL,
  DisplayName varchar(255) NOT NULL,
  Parameters longtext NOT NULL,
  PipelineId varchar(64) NOT NULL,
  Status varchar(255) NOT NULL,
  CodeSourceUrl varchar(255),
  Description longtext,
  PipelineSpec longtext NOT NULL,
  PipelineSpecURI longtext NOT NULL,
  PRIMARY KEY (UUID),
  UNIQUE KEY idx_pipelineid_name (Name, PipelineId),
  KEY idx_pipeline_versions_CreatedAtInSec (CreatedAtInSec),
  KEY idx_pipeline_versions_PipelineId (PipelineId),
  CONSTRAINT pipeline_versions_PipelineId_pipelines_UUID_foreign FOREIGN KEY (PipelineId) REFERENCES pipelines (UUID) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE pipeline_tags (
  PipelineId varchar(64) NOT NULL,
  TagKey varchar(63) NOT NULL,
  TagValue varchar(63) NOT NULL,
  PRIMARY KEY (PipelineId, TagKey),
  KEY idx_pipeline_tags_key_value_id (TagKey, TagValue, PipelineId),
  FOREIGN KEY (PipelineId) REFERENCES pipelines (UUID) ON DELETE CASCADE
);
CREATE TABLE pipeline_version_tags (
  PipelineVersionId varchar(191) NOT NULL,
  TagKey varchar(63) NOT NULL,
  TagValue varchar(63) NOT NULL,
  PRIMARY KEY (PipelineVersionId, TagKey),
  KEY idx_pv_tags_key_value_id (TagKey, TagValue, PipelineVersionId),
  CONSTRAINT pv_tags_PipelineVersionId_pv_UUID_fk FOREIGN KEY (PipelineVersionId) REFERENCES pipeline_versions (UUID) ON DELETE CASCADE
);
CREATE TABLE jobs (
  UUID varchar(191) NOT NULL,
  DisplayName varchar(255) NOT NULL,
  Name varchar(255) NOT NULL,
  Namespace varchar(255) NOT NULL,
  ServiceAccount varchar(255) NOT NULL,
  Description varchar(255) NOT NULL,
  MaxConcurrency bigint NOT NULL,
  NoCatchup tinyint(1) NOT NULL,
  CreatedAtInSec bigint NOT NULL,
  UpdatedAtInSec bigint DEFAULT 0,
  Enabled tinyint(1) NOT NULL,
  ExperimentUUID varchar(255) NOT NULL,
  CronScheduleStartTimeInSec bigint,
  CronScheduleEndTimeInSec bigint,
  Schedule varchar(255),
  PeriodicScheduleStartTimeInSec bigint,
  PeriodicScheduleEndTimeInSec bigint,
  IntervalSecond bigint,
  PipelineId varchar(255) NOT NULL,
  PipelineVersionId varchar(255),
  PipelineName varchar(255) NOT NULL,
  PipelineSpecManifest longtext,
  WorkflowSpecManifest longtext,
  Parameters longtext,
  RuntimeParameters longtext,
  PipelineRoot longtext,
  Conditions varchar(255) NOT NULL,
  PluginsInput longtext,
  PRIMARY KEY (UUID)
);
CREATE TABLE run_details (
  UUID varchar(191) NOT NULL,
  ExperimentUUID varchar(64) NOT NULL,
  DisplayName varchar(255) NOT NULL,
  Name varchar(255) NOT NULL,
  StorageState varchar(255) NOT NULL,
  Namespace varchar(63) NOT NULL,
  ServiceAccount varchar(255) NOT NULL,
  Description varchar(255) NOT NULL,
  CreatedAtInSec bigint NOT NULL,
  ScheduledAtInSec bigint DEFAULT 0,
  FinishedAtInSec bigint DEFAULT 0,
  Conditions varchar(125) NOT NULL,
  PipelineId varchar(255) NOT NULL,
  PipelineVersionId varchar(255),
  PipelineName varchar(255) NOT NULL,
  PipelineSpecManifest longtext,
  WorkflowSpecManifest longtext,
  Parameters longtext,
  RuntimeParameters longtext,
  PipelineRoot longtext,
  PipelineRuntimeManifest longtext NOT NULL,
  WorkflowRuntimeManifest longtext NOT NULL,
  JobUUID varchar(255),
  State varchar(255),
  StateHistory longtext,
  PluginsInput longtext,
  PluginsOutput longtext,
  PipelineContextId bigint DEFAULT 0,
  PipelineRunContextId bigint DEFAULT 0,
  RetryGeneration bigint DEFAULT 0,
  RetryClaimedAtInSec bigint DEFAULT 0,
  ArchivedAtInSec bigint DEFAULT 0,
  PRIMARY KEY (UUID),
  KEY experimentuuid_createatinsec (ExperimentUUID, CreatedAtInSec),
  KEY experimentuuid_conditions_finishedatinsec (ExperimentUUID, Conditions, FinishedAtInSec),
  KEY namespace_createatinsec (Namespace, CreatedAtInSec),
  KEY namespace_conditions_finishedatinsec (Namespace, Conditions, FinishedAtInSec)
);
CREATE TABLE run_metrics (
  RunUUID varchar(191) NOT NULL,
  NodeID varchar(191) NOT NULL,
  Name varchar(191) NOT NULL,
  NumberValue double,
  Format varchar(255),
  Payload longtext NOT NULL,
  PRIMARY KEY (RunUUID, NodeID, Name),
  CONSTRAINT run_metrics_RunUUID_run_details_UUID_foreign FOREIGN KEY (RunUUID) REFERENCES run_details (UUID) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE tasks (
  UUID varchar(191) NOT NULL,
  Namespace varchar(255) NOT NULL,
  PipelineName varchar(255) NOT NULL,
  RunUUID varchar(191) NOT NULL,
  PodName varchar(255) NOT NULL,
  MLMDExecutionID varchar(255) NOT NULL,
  CreatedTimestamp bigint NOT NULL,
  StartedTimestamp bigint DEFAULT 0,
  FinishedTimestamp bigint DEFAULT 0,
  Fingerprint varchar(255) NOT NULL,
  Name varchar(255),
  ParentTaskUUID varchar(255),
  State varchar(255),
  StateHistory longtext,
  MLMDInputs longtext,
  MLMDOutputs longtext,
  ChildrenPods longtext,
  Payload longtext,
  PRIMARY KEY (UUID),
  KEY tasks_RunUUID_run_details_UUID_foreign (RunUUID),
  CONSTRAINT tasks_RunUUID_run_details_UUID_foreign FOREIGN KEY (RunUUID) REFERENCES run_details (UUID) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE resource_references (
  ResourceUUID varchar(191) NOT NULL,
  ResourceType varchar(191) NOT NULL,
  ReferenceUUID varchar(191) NOT NULL,
  ReferenceName varchar(255) NOT NULL,
  ReferenceType varchar(191) NOT NULL,
  Relationship varchar(255) NOT NULL,
  Payload longtext NOT NULL,
  PRIMARY KEY (ResourceUUID, ResourceType, ReferenceType),
  KEY referencefilter (ResourceType, ReferenceUUID, ReferenceType)
);
