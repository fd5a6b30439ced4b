-- Rows shaped as upstream KFP's API server writes them, for the adoption tests.
-- Identifiers are double-quoted (MySQL runs this with ANSI_QUOTES and
-- NO_BACKSLASH_ESCAPES). Before running it the tests replace the BASE
-- placeholders (the start of the previous hour in Unix seconds, plus or minus
-- the number given) and the SPEC ones (tests/pipelines/hello.yaml and
-- parameters.yaml with their quotes doubled). Odd corners on purpose: '' and NULL for absent values, 0
-- times, legacy v1 state names, JSON in text columns, a v1 run whose only spec
-- is its Argo workflow, references only in resource_references.

INSERT INTO "db_statuses" ("HaveSamplesLoaded") VALUES (true);

INSERT INTO "experiments" ("UUID", "Name", "Description", "CreatedAtInSec", "LastRunCreatedAtInSec", "Namespace", "StorageState") VALUES
  ('8c1d0a6e-0000-4000-8000-000000000001', 'Default', 'All runs created without specifying an experiment will be grouped here.', ${BASE-90000}, ${BASE+2}, '', 'AVAILABLE'),
  ('8c1d0a6e-0000-4000-8000-000000000002', 'old results', '', ${BASE-80000}, ${BASE-70000}, '', 'ARCHIVED'),
  ('8c1d0a6e-0000-4000-8000-000000000003', 'legacy v1', 'made by a KFP 1.x server', ${BASE-85000}, 0, '', 'STORAGESTATE_AVAILABLE');

INSERT INTO "default_experiments" ("DefaultExperimentId") VALUES ('8c1d0a6e-0000-4000-8000-000000000001');

INSERT INTO "pipelines" ("UUID", "CreatedAtInSec", "Name", "DisplayName", "Description", "Parameters", "Status", "DefaultVersionId", "Namespace") VALUES
  ('5b7e2f10-0000-4000-8000-000000000001', ${BASE-89000}, 'hello-world', 'Hello world', 'echoes a line', NULL, 'READY', '', ''),
  ('5b7e2f10-0000-4000-8000-000000000002', ${BASE-88000}, 'half-deleted', 'Half deleted', '', NULL, 'DELETING', '', NULL);

INSERT INTO "pipeline_tags" ("PipelineId", "TagKey", "TagValue") VALUES
  ('5b7e2f10-0000-4000-8000-000000000001', 'team', 'ml');

INSERT INTO "pipeline_versions" ("UUID", "CreatedAtInSec", "Name", "DisplayName", "Parameters", "PipelineId", "Status", "CodeSourceUrl", "Description", "PipelineSpec", "PipelineSpecURI") VALUES
  ('6a3c9d20-0000-4000-8000-000000000001', ${BASE-89000}, 'hello-world-v1', 'v1', '[]', '5b7e2f10-0000-4000-8000-000000000001', 'READY', NULL, NULL, '${SPEC_HELLO}', ''),
  ('6a3c9d20-0000-4000-8000-000000000002', ${BASE-87000}, 'hello-world-v2', 'v2', '[]', '5b7e2f10-0000-4000-8000-000000000001', 'READY', 'https://example.com/hello.py', 'second version', '${SPEC_HELLO}', 'https://example.com/hello.yaml');

INSERT INTO "pipeline_version_tags" ("PipelineVersionId", "TagKey", "TagValue") VALUES
  ('6a3c9d20-0000-4000-8000-000000000002', 'stage', 'prod');

-- A cron job (hourly at minute 0, catching up) whose tick ${BASE} fired two
-- seconds late, and a periodic one (hourly, no catch-up) three hours behind.
INSERT INTO "jobs" ("UUID", "DisplayName", "Name", "Namespace", "ServiceAccount", "Description", "MaxConcurrency", "NoCatchup", "CreatedAtInSec", "UpdatedAtInSec", "Enabled", "ExperimentUUID", "CronScheduleStartTimeInSec", "CronScheduleEndTimeInSec", "Schedule", "PeriodicScheduleStartTimeInSec", "PeriodicScheduleEndTimeInSec", "IntervalSecond", "PipelineId", "PipelineVersionId", "PipelineName", "PipelineSpecManifest", "WorkflowSpecManifest", "Parameters", "RuntimeParameters", "PipelineRoot", "Conditions", "PluginsInput") VALUES
  ('9f4b1e30-0000-4000-8000-000000000001', 'hourly hello', 'hourly-hello', '', 'pipeline-runner', 'every hour', 2, false, ${BASE-86400}, ${BASE-86400}, true, '8c1d0a6e-0000-4000-8000-000000000001', NULL, NULL, '0 0 * * * *', NULL, NULL, NULL, '5b7e2f10-0000-4000-8000-000000000001', '6a3c9d20-0000-4000-8000-000000000001', 'pipelines/6a3c9d20-0000-4000-8000-000000000001', '', '', NULL, '{}', '', 'ENABLED', NULL),
  ('9f4b1e30-0000-4000-8000-000000000002', 'periodic hello', 'periodic-hello', '', '', '', 1, true, ${BASE-86400}, ${BASE-3600}, true, '8c1d0a6e-0000-4000-8000-000000000001', NULL, NULL, NULL, ${BASE-86400}, NULL, 3600, '', NULL, '', '${SPEC_PARAMETERS}', '', NULL, '{"text": "hi", "count": 3, "items": [1, "two"], "config": {"deep": {"x": 1.5}}}', NULL, 'ENABLED', NULL),
  ('9f4b1e30-0000-4000-8000-000000000003', 'paused nightly', 'paused-nightly', '', '', '', 1, false, ${BASE-86400}, ${BASE-80000}, false, '8c1d0a6e-0000-4000-8000-000000000001', ${BASE-86400}, ${BASE+864000}, '0 30 2 * * *', NULL, NULL, NULL, '5b7e2f10-0000-4000-8000-000000000001', '6a3c9d20-0000-4000-8000-000000000002', 'pipelines/6a3c9d20-0000-4000-8000-000000000002', NULL, NULL, NULL, NULL, NULL, 'DISABLED', NULL);

INSERT INTO "run_details" ("UUID", "ExperimentUUID", "DisplayName", "Name", "StorageState", "Namespace", "ServiceAccount", "Description", "CreatedAtInSec", "ScheduledAtInSec", "FinishedAtInSec", "Conditions", "PipelineId", "PipelineVersionId", "PipelineName", "PipelineSpecManifest", "WorkflowSpecManifest", "Parameters", "RuntimeParameters", "PipelineRoot", "PipelineRuntimeManifest", "WorkflowRuntimeManifest", "JobUUID", "State", "StateHistory", "PluginsInput", "PluginsOutput", "PipelineContextId", "PipelineRunContextId", "RetryGeneration", "RetryClaimedAtInSec", "ArchivedAtInSec") VALUES
  -- A v2 run of a pipeline version, finished, with tasks and a workflow that recorded an object.
  ('2d9e7c40-0000-4000-8000-000000000001', '8c1d0a6e-0000-4000-8000-000000000001', 'hello run', 'hello-world-abc12', 'AVAILABLE', '', 'pipeline-runner', 'first run', ${BASE-7200}, ${BASE-7200}, ${BASE-7100}, 'Succeeded', '5b7e2f10-0000-4000-8000-000000000001', '6a3c9d20-0000-4000-8000-000000000001', 'pipelines/6a3c9d20-0000-4000-8000-000000000001', '${SPEC_HELLO}', '', '', '{"message": "hi", "n": 3, "flags": {"fast": true}}', 'minio://mlpipeline/v2/artifacts', '', '{"metadata":{"name":"hello-world-abc12"},"status":{"phase":"Succeeded","nodes":{"hello-world-abc12-1111":{"id":"hello-world-abc12-1111","displayName":"echo","outputs":{"artifacts":[{"name":"main-logs","s3":{"key":"artifacts/hello-world-abc12/echo/main.log"}}]}}}}}', NULL, 'SUCCEEDED', '[{"UpdateTimeInSec":${BASE-7200},"State":"PENDING"},{"UpdateTimeInSec":${BASE-7190},"State":"RUNNING"},{"UpdateTimeInSec":${BASE-7100},"State":"SUCCEEDED"}]', NULL, NULL, 11, 12, 0, 0, 0),
  -- A v1 run: the spec is its Argo workflow, the experiment only in resource_references, the parameters a v1 list.
  ('2d9e7c40-0000-4000-8000-000000000002', '', 'v1 run', 'v1-pipeline-xyz', 'STORAGESTATE_AVAILABLE', '', '', '', ${BASE-80000}, ${BASE-80000}, ${BASE-79000}, 'Succeeded', '', NULL, '', NULL, 'apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: v1-pipeline-
spec:
  entrypoint: main
  arguments:
    parameters:
    - name: param1
  templates:
  - name: main
    container:
      image: alpine
      command: [echo, "{{inputs.parameters.param1}}"]
', '[{"name":"param1","value":"from v1"}]', NULL, NULL, '', '', NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0),
  -- An archived run of the archived experiment (archiving did not set ArchivedAtInSec).
  ('2d9e7c40-0000-4000-8000-000000000003', '8c1d0a6e-0000-4000-8000-000000000002', 'old run', 'old-run', 'ARCHIVED', '', '', '', ${BASE-75000}, ${BASE-75000}, ${BASE-74000}, 'Failed', '5b7e2f10-0000-4000-8000-000000000001', '6a3c9d20-0000-4000-8000-000000000001', 'pipelines/6a3c9d20-0000-4000-8000-000000000001', '${SPEC_HELLO}', '', '', '', '', '', '', NULL, 'FAILED', '[{"UpdateTimeInSec":${BASE-75000},"State":"PENDING"},{"UpdateTimeInSec":${BASE-74000},"State":"FAILED","Error":{}}]', NULL, NULL, 0, 0, 0, 0, 0),
  -- The cron job's run of tick ${BASE}, made two seconds after the tick.
  ('2d9e7c40-0000-4000-8000-000000000004', '8c1d0a6e-0000-4000-8000-000000000001', 'hourly-hello-5-1234567', 'hourly-hello-5-1234567', 'AVAILABLE', '', 'pipeline-runner', '', ${BASE+2}, ${BASE+2}, ${BASE+60}, 'Succeeded', '5b7e2f10-0000-4000-8000-000000000001', '6a3c9d20-0000-4000-8000-000000000001', 'pipelines/6a3c9d20-0000-4000-8000-000000000001', '${SPEC_HELLO}', '', '', '{}', '', '', '', '9f4b1e30-0000-4000-8000-000000000001', 'SUCCEEDED', '[]', NULL, NULL, 0, 0, 0, 0, 0),
  -- The periodic job's last run, three hours back; legacy empty State, condition only.
  ('2d9e7c40-0000-4000-8000-000000000005', '8c1d0a6e-0000-4000-8000-000000000001', 'periodic-hello-9-7654321', 'periodic-hello-9-7654321', 'AVAILABLE', '', '', '', ${BASE-10800}, ${BASE-10800}, ${BASE-10700}, 'Error', '', '', '', '${SPEC_HELLO}', '', '', '{"greeting": "hi", "count": 3}', 'minio://mlpipeline/v2/artifacts', '', '', '9f4b1e30-0000-4000-8000-000000000002', '', NULL, NULL, NULL, 0, 0, 0, 0, 0),
  -- Cannot be brought: its runtime parameters are not JSON.
  ('2d9e7c40-0000-4000-8000-000000000006', '8c1d0a6e-0000-4000-8000-000000000001', 'broken params', 'broken', 'AVAILABLE', '', '', '', ${BASE-5000}, 0, 0, 'Failed', '', '', '', '${SPEC_HELLO}', '', '', '{broken', '', '', '', NULL, 'FAILED', NULL, NULL, NULL, 0, 0, 0, 0, 0),
  -- Cannot be brought: an id longer than kfpd keeps.
  ('2d9e7c40-0000-4000-8000-000000000007-with-a-suffix-longer-than-sixty-four-characters', '8c1d0a6e-0000-4000-8000-000000000001', 'long id', 'long', 'AVAILABLE', '', '', '', ${BASE-4000}, 0, 0, 'Succeeded', '', '', '', '${SPEC_HELLO}', '', '', '', '', '', '', NULL, 'SUCCEEDED', NULL, NULL, NULL, 0, 0, 0, 0, 0);

INSERT INTO "resource_references" ("ResourceUUID", "ResourceType", "ReferenceUUID", "ReferenceName", "ReferenceType", "Relationship", "Payload") VALUES
  ('2d9e7c40-0000-4000-8000-000000000002', 'Run', '8c1d0a6e-0000-4000-8000-000000000003', 'legacy v1', 'Experiment', 'Owner', '{"key":{"type":"EXPERIMENT","id":"8c1d0a6e-0000-4000-8000-000000000003"},"relationship":"OWNER"}'),
  ('2d9e7c40-0000-4000-8000-000000000001', 'Run', '8c1d0a6e-0000-4000-8000-000000000001', 'Default', 'Experiment', 'Owner', '{}'),
  ('9f4b1e30-0000-4000-8000-000000000001', 'Job', '8c1d0a6e-0000-4000-8000-000000000001', 'Default', 'Experiment', 'Owner', '{}');

INSERT INTO "tasks" ("UUID", "Namespace", "PipelineName", "RunUUID", "PodName", "MLMDExecutionID", "CreatedTimestamp", "StartedTimestamp", "FinishedTimestamp", "Fingerprint", "Name", "ParentTaskUUID", "State", "StateHistory", "MLMDInputs", "MLMDOutputs", "ChildrenPods", "Payload") VALUES
  ('3e8f6a50-0000-4000-8000-000000000001', '', 'pipelines/6a3c9d20-0000-4000-8000-000000000001', '2d9e7c40-0000-4000-8000-000000000001', 'hello-world-abc12-0000', '0', ${BASE-7200}, ${BASE-7195}, ${BASE-7100}, '', 'hello-world-abc12', NULL, 'SUCCEEDED', '[{"UpdateTimeInSec":${BASE-7195},"State":"RUNNING"},{"UpdateTimeInSec":${BASE-7100},"State":"SUCCEEDED"}]', NULL, NULL, '["hello-world-abc12-1111"]', NULL),
  ('3e8f6a50-0000-4000-8000-000000000002', '', 'pipelines/6a3c9d20-0000-4000-8000-000000000001', '2d9e7c40-0000-4000-8000-000000000001', 'hello-world-abc12-1111', '21', ${BASE-7190}, ${BASE-7180}, ${BASE-7110}, 'fp-123', 'echo', '', 'SUCCEEDED', NULL, '{"input":{"artifact_ids":[5]}}', '{"output":{"artifact_ids":[7,8]}}', NULL, NULL),
  ('3e8f6a50-0000-4000-8000-000000000003', '', '', '2d9e7c40-0000-4000-8000-000000000003', 'old-run-2222', '', ${BASE-75000}, 0, 0, '', 'never started', NULL, 'CANCELED', '', '', '', '', NULL);
