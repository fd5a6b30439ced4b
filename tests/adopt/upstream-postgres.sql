-- Upstream KFP's API server tables (KFP 2.15/2.17) on PostgreSQL, as its GORM
-- models create them: quoted CamelCase columns, TEXT for large text, bigint
-- integers, boolean flags. Used by the adoption tests to build an upstream schema.
CREATE TABLE db_statuses (
  "HaveSamplesLoaded" boolean NOT NULL,
  PRIMARY KEY ("HaveSamplesLoaded")
);
CREATE TABLE default_experiments (
  "DefaultExperimentId" varchar(191) NOT NULL,
  PRIMARY KEY ("DefaultExperimentId")
);
CREATE TABLE experiments (
  "UUID" varchar(191) NOT NULL,
  "Name" varchar(128) NOT NULL,
  "Description" varchar(255) NOT NULL,
  "CreatedAtInSec" bigint NOT NULL,
  "LastRunCreatedAtInSec" bigint NOT NULL,
  "Namespace" varchar(63) NOT NULL,
  "StorageState" varchar(255) NOT NULL,
  PRIMARY KEY ("UUID"),
  CONSTRAINT "idx_name_namespace" UNIQUE ("Name", "Namespace")
);
CREATE TABLE pipelines (
  "UUID" varchar(64) NOT NULL,
  "CreatedAtInSec" bigint NOT NULL,
  "Name" varchar(128) NOT NULL,
  "DisplayName" varchar(255) NOT NULL,
  "Description" text NOT NULL,
  "Parameters" text,
  "Status" varchar(255) NOT NULL,
  "DefaultVersionId" varchar(255),
  "Namespace" varchar(63),
  PRIMARY KEY ("UUID"),
  CONSTRAINT "namespace_name" UNIQUE ("Name", "Namespace")
);
CREATE TABLE pipeline_versions (
  "UUID" varchar(191) NOT NULL,
  "CreatedAtInSec" bigint NOT NULL,
  "Name" varchar(127) NOT NULL,
  "DisplayName" varchar(255) NOT NULL,
  "Parameters" text NOT NULL,
  "PipelineId" varchar(64) NOT NULL,
  "Status" varchar(255) NOT NULL,
  "CodeSourceUrl" varchar(255),
  "Description" text,
  "PipelineSpec" text NOT NULL,
  "PipelineSpecURI" text NOT NULL,
  PRIMARY KEY ("UUID"),
  CONSTRAINT "idx_pipelineid_name" UNIQUE ("Name", "PipelineId"),
  CONSTRAINT "pipeline_versions_PipelineId_pipelines_UUID_foreign" FOREIGN KEY ("PipelineId") REFERENCES pipelines ("UUID") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "idx_pipeline_versions_CreatedAtInSec" ON pipeline_versions ("CreatedAtInSec");
CREATE INDEX "idx_pipeline_versions_PipelineId" ON pipeline_versions ("PipelineId");
CREATE TABLE pipeline_tags (
  "PipelineId" varchar(64) NOT NULL,
  "TagKey" varchar(63) NOT NULL,
  "TagValue" varchar(63) NOT NULL,
  PRIMARY KEY ("PipelineId", "TagKey"),
  FOREIGN KEY ("PipelineId") REFERENCES pipelines ("UUID") ON DELETE CASCADE
);
CREATE INDEX "idx_pipeline_tags_key_value_id" ON pipeline_tags ("TagKey", "TagValue", "PipelineId");
CREATE TABLE pipeline_version_tags (
  "PipelineVersionId" varchar(191) NOT NULL,
  "TagKey" varchar(63) NOT NULL,
  "TagValue" varchar(63) NOT NULL,
  PRIMARY KEY ("PipelineVersionId", "TagKey"),
  CONSTRAINT "pv_tags_PipelineVersionId_pv_UUID_fk" FOREIGN KEY ("PipelineVersionId") REFERENCES pipeline_versions ("UUID") ON DELETE CASCADE
);
CREATE INDEX "idx_pv_tags_key_value_id" ON pipeline_version_tags ("TagKey", "TagValue", "PipelineVersionId");
CREATE TABLE jobs (
  "UUID" varchar(191) NOT NULL,
  "DisplayName" varchar(255) NOT NULL,
  "Name" varchar(255) NOT NULL,
  "Namespace" varchar(255) NOT NULL,
  "ServiceAccount" varchar(255) NOT NULL,
  "Description" varchar(255) NOT NULL,
  "MaxConcurrency" bigint NOT NULL,
  "NoCatchup" boolean NOT NULL,
  "CreatedAtInSec" bigint NOT NULL,
  "UpdatedAtInSec" bigint DEFAULT 0,
  "Enabled" boolean NOT NULL,
  "ExperimentUUID" varchar(255) NOT NULL,
  "CronScheduleStartTimeInSec" bigint,
  "CronScheduleEndTimeInSec" bigint,
  "Schedule" varchar(255),
  "PeriodicScheduleStartTimeInSec" bigint,
  "PeriodicScheduleEndTimeInSec" bigint,
  "IntervalSecond" bigint,
  "PipelineId" varchar(255) NOT NULL,
  "PipelineVersionId" varchar(255),
  "PipelineName" varchar(255) NOT NULL,
  "PipelineSpecManifest" text,
  "WorkflowSpecManifest" text,
  "Parameters" text,
  "RuntimeParameters" text,
  "PipelineRoot" text,
  "Conditions" varchar(255) NOT NULL,
  "PluginsInput" text,
  PRIMARY KEY ("UUID")
);
CREATE TABLE run_details (
  "UUID" varchar(191) NOT NULL,
  "ExperimentUUID" varchar(64) NOT NULL,
  "DisplayName" varchar(255) NOT NULL,
  "Name" varchar(255) NOT NULL,
  "StorageState" varchar(255) NOT NULL,
  "Namespace" varchar(63) NOT NULL,
  "ServiceAccount" varchar(255) NOT NULL,
  "Description" varchar(255) NOT NULL,
  "CreatedAtInSec" bigint NOT NULL,
  "ScheduledAtInSec" bigint DEFAULT 0,
  "FinishedAtInSec" bigint DEFAULT 0,
  "Conditions" varchar(125) NOT NULL,
  "PipelineId" varchar(255) NOT NULL,
  "PipelineVersionId" varchar(255),
  "PipelineName" varchar(255) NOT NULL,
  "PipelineSpecManifest" text,
  "WorkflowSpecManifest" text,
  "Parameters" text,
  "RuntimeParameters" text,
  "PipelineRoot" text,
  "PipelineRuntimeManifest" text NOT NULL,
  "WorkflowRuntimeManifest" text NOT NULL,
  "JobUUID" varchar(255),
  "State" varchar(255),
  "StateHistory" text,
  "PluginsInput" text,
  "PluginsOutput" text,
  "PipelineContextId" bigint DEFAULT 0,
  "PipelineRunContextId" bigint DEFAULT 0,
  "RetryGeneration" bigint DEFAULT 0,
  "RetryClaimedAtInSec" bigint DEFAULT 0,
  "ArchivedAtInSec" bigint DEFAULT 0,
  PRIMARY KEY ("UUID")
);
CREATE INDEX "experimentuuid_createatinsec" ON run_details ("ExperimentUUID", "CreatedAtInSec");
CREATE INDEX "experimentuuid_conditions_finishedatinsec" ON run_details ("ExperimentUUID", "Conditions", "FinishedAtInSec");
CREATE INDEX "namespace_createatinsec" ON run_details ("Namespace", "CreatedAtInSec");
CREATE INDEX "namespace_conditions_finishedatinsec" ON run_details ("Namespace", "Conditions", "FinishedAtInSec");
CREATE TABLE run_metrics (
  "RunUUID" varchar(191) NOT NULL,
  "NodeID" varchar(191) NOT NULL,
  "Name" varchar(191) NOT NULL,
  "NumberValue" double precision,
  "Format" varchar(255),
  "Payload" text NOT NULL,
  PRIMARY KEY ("RunUUID", "NodeID", "Name"),
  CONSTRAINT "run_metrics_RunUUID_run_details_UUID_foreign" FOREIGN KEY ("RunUUID") REFERENCES run_details ("UUID") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE TABLE tasks (
  "UUID" varchar(191) NOT NULL,
  "Namespace" varchar(255) NOT NULL,
  "PipelineName" varchar(255) NOT NULL,
  "RunUUID" varchar(191) NOT NULL,
  "PodName" varchar(255) NOT NULL,
  "MLMDExecutionID" varchar(255) NOT NULL,
  "CreatedTimestamp" bigint NOT NULL,
  "StartedTimestamp" bigint DEFAULT 0,
  "FinishedTimestamp" bigint DEFAULT 0,
  "Fingerprint" varchar(255) NOT NULL,
  "Name" varchar(255),
  "ParentTaskUUID" varchar(255),
  "State" varchar(255),
  "StateHistory" text,
  "MLMDInputs" text,
  "MLMDOutputs" text,
  "ChildrenPods" text,
  "Payload" text,
  PRIMARY KEY ("UUID"),
  CONSTRAINT "tasks_RunUUID_run_details_UUID_foreign" FOREIGN KEY ("RunUUID") REFERENCES run_details ("UUID") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "tasks_RunUUID_run_details_UUID_foreign" ON tasks ("RunUUID");
CREATE TABLE resource_references (
  "ResourceUUID" varchar(191) NOT NULL,
  "ResourceType" varchar(191) NOT NULL,
  "ReferenceUUID" varchar(191) NOT NULL,
  "ReferenceName" varchar(255) NOT NULL,
  "ReferenceType" varchar(191) NOT NULL,
  "Relationship" varchar(255) NOT NULL,
  "Payload" text NOT NULL,
  PRIMARY KEY ("ResourceUUID", "ResourceType", "ReferenceType")
);
CREATE INDEX "referencefilter" ON resource_references ("ResourceType", "ReferenceUUID", "ReferenceType");
