//! The server's side of `kfpd launcher` (docs/argo.md): what a driven container
//! task runs with, and recording how each of its attempts ended. The launcher
//! decides nothing the core does not: it resolves the command and reads outputs
//! back with the same `kfpd_core` functions the local engine uses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kfpd_artifacts::ArtifactStore;
use kfpd_core::attempts::{task_failure, RetryPlan};
use kfpd_core::run::RunFacts;
use kfpd_core::Artifacts;
use kfpd_ir::spec::{ComponentOutputsSpec, ExecutorKind, PipelineContainerSpec};
use kfpd_store::{Artifact, TaskKind, TaskState, TaskStateChange};
use serde_json::{json, Map, Value};

use crate::container::{log_object_uri, replace_kfp_pin};
use crate::drive::{object, DriveError, Driver, DOWNLOAD_TO_WORKSPACE};
use crate::engine::Engine;
use crate::importer::new_artifact_id;
use crate::records::{now, TaskRecord};

/// What a launcher needs to run a task.
#[derive(Clone, Debug)]
pub struct Launch {
    pub task_id: String,
    pub task_name: String,
    pub display_name: String,
    pub parameters: Map<String, Value>,
    /// A container's input artifacts; an importer's output, which it copies.
    pub artifacts: Artifacts,
    /// Of those, the ones an importer copied into the run's workspace: read
    /// there, not fetched.
    pub in_workspace: BTreeSet<i64>,
    /// None for an importer that copies its artifact into the workspace.
    pub container: Option<PipelineContainerSpec>,
    pub outputs: ComponentOutputsSpec,
    pub output_uris: BTreeMap<String, String>,
    pub log_uri: String,
    pub artifact_root: String,
    pub run: RunFacts,
    pub max_attempts: u32,
}

/// An output artifact a launcher uploaded.
#[derive(Clone, Debug)]
pub struct Produced {
    pub name: String,
    pub uri: String,
    pub metadata: Map<String, Value>,
}

/// How one attempt ended, as the launcher reports it.
#[derive(Clone, Debug, Default)]
pub struct AttemptReport {
    /// 1-based.
    pub attempt: u32,
    pub succeeded: bool,
    pub error: String,
    pub exit_code: Option<i32>,
    pub parameters: Map<String, Value>,
    pub artifacts: Vec<Produced>,
    pub command: Vec<String>,
    pub started_at: i64,
    pub finished_at: i64,
    pub log_uri: String,
    /// Where the attempt's output starts in the stored log.
    pub log_offset: u64,
    pub log_length: u64,
}

/// The task at `path` a driver request started: a container task, or an importer
/// that copies its artifact into the workspace (no container).
struct Driven {
    record: TaskRecord,
    task_name: String,
    display_name: String,
    container: Option<PipelineContainerSpec>,
    outputs: ComponentOutputsSpec,
    max_attempts: u32,
}

impl Driver {
    fn driven(&self, path: &str) -> Result<Driven, DriveError> {
        let row = self.context.previous.get(path).ok_or_else(|| {
            DriveError::NotReady(format!(
                "task {path:?} has not been driven: send its driver request first"
            ))
        })?;
        let record = TaskRecord::resume(row.clone());
        if row.kind == TaskKind::Importer
            && record.detail(DOWNLOAD_TO_WORKSPACE) == Some(&json!(true))
        {
            let located = self.locate(path)?;
            let Some((task_name, _)) = located.task else {
                return Err(DriveError::Invalid(format!("{path:?} is not a task")));
            };
            return Ok(Driven {
                record,
                task_name,
                display_name: row.display_name.clone(),
                container: None,
                outputs: located.component.output_definitions.clone(),
                max_attempts: 1,
            });
        }
        if row.kind != TaskKind::Runtime {
            return Err(DriveError::Invalid(format!(
                "task {path:?} is a {} task, not a container: it has no pod to launch",
                row.kind.as_str()
            )));
        }
        if self.is_pvc_task(path) {
            return Err(DriveError::Invalid(format!(
                "task {path:?} makes or deletes a PVC: Argo's resource template runs it, not a launcher"
            )));
        }
        let located = self.locate(path)?;
        let Some((task_name, task)) = located.task else {
            return Err(DriveError::Invalid(format!("{path:?} is not a task")));
        };
        let executor = self
            .context
            .spec
            .executor_of(&located.component)
            .and_then(|executor| executor.kind());
        let Some(ExecutorKind::Container(container)) = executor else {
            return Err(DriveError::Invalid(format!(
                "task {path:?} does not run a container"
            )));
        };
        let plan = RetryPlan::of(task.retry_policy.as_ref());
        Ok(Driven {
            record,
            task_name,
            display_name: row.display_name.clone(),
            container: Some(container.clone()),
            outputs: located.component.output_definitions.clone(),
            max_attempts: plan.max_retries + 1,
        })
    }
}

impl Driver {
    /// Ids of the artifacts importers of this run copied into its workspace.
    fn workspace_artifacts(&self) -> BTreeSet<i64> {
        self.context
            .previous
            .values()
            .filter(|row| row.kind == TaskKind::Importer)
            .filter(|row| object(&row.details).get(DOWNLOAD_TO_WORKSPACE) == Some(&json!(true)))
            .flat_map(|row| {
                self.linked(&row.id, kfpd_store::Direction::Output)
                    .into_values()
                    .flatten()
                    .map(|artifact| artifact.id)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Engine {
    /// What the launcher of the task at `task_path` runs with.
    /// `pod` (namespace, name), when given, is recorded on the task: a running
    /// task's log is read from its pod.
    pub async fn launch(
        self: &Arc<Engine>,
        run_id: &str,
        task_path: &str,
        pod: Option<(&str, &str)>,
    ) -> Result<Launch, DriveError> {
        let _turn = self.driving.take(run_id).await;
        let driver = Driver::open(self, run_id).await?;
        let mut driven = driver.driven(task_path)?;
        if driven.record.task.state.is_final() {
            return Err(DriveError::Invalid(format!(
                "task {task_path:?} already ended ({}): nothing to launch",
                driven.record.task.state.as_str()
            )));
        }
        if let Some((namespace, name)) = pod {
            driven.record.set_detail("pod_namespace", json!(namespace));
            driven.record.set_detail("pod_name", json!(name));
            driven.record.save(&driver.context);
            self.writer.flush().await.map_err(|error| {
                DriveError::Internal(format!("cannot record task {task_path:?}: {error}"))
            })?;
        }
        let task = &driven.record.task;
        let facts = &driver.context.facts;
        // The kfp a lightweight component installs, as the local engine replaces it.
        let mut container = driven.container.clone();
        if let (Some(container), Some(package)) =
            (container.as_mut(), self.options.kfp_package.as_deref())
        {
            replace_kfp_pin(&mut container.command, Some(package));
            replace_kfp_pin(&mut container.args, Some(package));
        }
        let artifacts = match container {
            Some(_) => driver.linked(&task.id, kfpd_store::Direction::Input),
            None => driver.linked(&task.id, kfpd_store::Direction::Output),
        };
        let in_workspace = driver.workspace_artifacts();
        let output_uris = driven
            .outputs
            .artifacts
            .keys()
            .map(|name| {
                let uri = ArtifactStore::output_uri(
                    &facts.pipeline_root,
                    &facts.pipeline_name,
                    run_id,
                    &driven.task_name,
                    &task.id,
                    name,
                );
                (name.clone(), uri)
            })
            .collect();
        Ok(Launch {
            task_id: task.id.clone(),
            task_name: driven.task_name.clone(),
            display_name: driven.display_name.clone(),
            parameters: object(&task.inputs),
            artifacts,
            in_workspace,
            container,
            outputs: driven.outputs.clone(),
            output_uris,
            log_uri: log_object_uri(&self.artifacts, &facts.namespace, run_id, &task.id),
            artifact_root: self.artifacts.default_root(),
            run: facts.clone(),
            max_attempts: driven.max_attempts,
        })
    }

    /// Records one attempt of the task at `task_path`; returns the task's state
    /// after it. Reporting an attempt again changes nothing.
    pub async fn finish_attempt(
        self: &Arc<Engine>,
        run_id: &str,
        task_path: &str,
        report: AttemptReport,
    ) -> Result<TaskState, DriveError> {
        let _turn = self.driving.take(run_id).await;
        let mut driver = Driver::open(self, run_id).await?;
        let Driven {
            mut record,
            display_name,
            outputs,
            container,
            max_attempts,
            ..
        } = driver.driven(task_path)?;
        let context = &driver.context;
        let mut attempts = record
            .detail("attempts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let reported_before = attempts
            .iter()
            .any(|entry| entry["attempt"] == json!(report.attempt));
        if reported_before || record.task.state.is_final() {
            return Ok(record.task.state);
        }
        let mut entry = json!({
            "attempt": report.attempt,
            "state": if report.succeeded { "SUCCEEDED" } else { "FAILED" },
            "started_at": report.started_at,
            "finished_at": report.finished_at,
            "log_offset": report.log_offset,
            "log_length": report.log_length,
        });
        if !report.succeeded {
            entry["error"] = json!(report.error);
        }
        attempts.push(entry);
        // A retry runs again: its start shows in the history as the local
        // engine's does, so each attempt's outcome pairs with its start.
        let restarted =
            record.task.state_history.last().map(|change| change.state) != Some(TaskState::Running);
        if restarted {
            record.task.state_history.push(TaskStateChange {
                time: report.started_at,
                state: TaskState::Running,
            });
        }
        record.task.attempts += 1;
        record.set_detail("attempt", json!(report.attempt));
        record.set_detail("attempts", Value::Array(attempts));
        if let Some(container) = &container {
            record.set_detail("image", json!(container.image));
        }
        record.set_detail("command", json!(report.command));
        if !report.log_uri.is_empty() {
            record.set_detail("log_uri", json!(report.log_uri));
        }
        if let Some(code) = report.exit_code {
            record.set_detail("exit_code", json!(code));
        }
        let mut produced_artifacts = Vec::new();
        if report.succeeded {
            for produced in &report.artifacts {
                let Some(spec) = outputs.artifacts.get(&produced.name) else {
                    return Err(DriveError::Invalid(format!(
                        "task {task_path:?} has no output artifact {:?}",
                        produced.name
                    )));
                };
                let mut metadata = spec.metadata.clone().unwrap_or_default();
                metadata.extend(produced.metadata.clone());
                let artifact = Artifact {
                    id: new_artifact_id(),
                    run_id: run_id.to_string(),
                    producer_task_id: record.task.id.clone(),
                    output_key: produced.name.clone(),
                    name: produced.name.clone(),
                    uri: produced.uri.clone(),
                    schema_title: spec
                        .artifact_type
                        .schema_title
                        .clone()
                        .unwrap_or_else(|| "system.Artifact".into()),
                    schema_version: spec.artifact_type.schema_version.clone(),
                    metadata: Value::Object(metadata).to_string(),
                    created_at: now(),
                };
                self.store
                    .create_artifact(&artifact)
                    .await
                    .map_err(|error| {
                        DriveError::Internal(format!(
                            "cannot record output artifact {:?}: {error}",
                            produced.name
                        ))
                    })?;
                produced_artifacts.push(artifact);
            }
            record.finish(context, TaskState::Succeeded, None, &report.parameters);
        } else if report.attempt < max_attempts {
            // Argo retries the pod; the task goes on.
            record.task.state_history.push(TaskStateChange {
                time: now(),
                state: TaskState::Failed,
            });
            record.save(context);
        } else {
            let error = task_failure(&display_name, report.attempt, max_attempts, &report.error);
            record.finish(context, TaskState::Failed, Some(error), &Map::new());
        }
        self.writer.flush().await.map_err(|error| {
            DriveError::Internal(format!("cannot record task {task_path:?}: {error}"))
        })?;
        let state = record.task.state;
        if state.is_final() {
            // The rows read above, with this one: no second read.
            driver.recorded(record.task, produced_artifacts);
            driver.settle(task_path).await?;
            self.writer.flush().await.map_err(|error| {
                DriveError::Internal(format!("cannot record the tasks of run {run_id}: {error}"))
            })?;
        }
        Ok(state)
    }

    /// Ends a container task whose pod ended without its launcher's report (the
    /// pod never started, was killed or evicted), with `error`, then the DAGs
    /// around it as a launcher's report would. Returns whether it ended it here:
    /// a task already ended, or never driven, is left alone.
    pub async fn fail_task(
        self: &Arc<Engine>,
        run_id: &str,
        task_path: &str,
        error: &str,
    ) -> Result<bool, DriveError> {
        let _turn = self.driving.take(run_id).await;
        let mut driver = Driver::open(self, run_id).await?;
        let Driven { mut record, .. } = driver.driven(task_path)?;
        if record.task.state.is_final() {
            return Ok(false);
        }
        record.finish(
            &driver.context,
            TaskState::Failed,
            Some(error.to_string()),
            &Map::new(),
        );
        self.writer.flush().await.map_err(|error| {
            DriveError::Internal(format!("cannot record task {task_path:?}: {error}"))
        })?;
        driver.recorded(record.task, Vec::new());
        driver.settle(task_path).await?;
        self.writer.flush().await.map_err(|error| {
            DriveError::Internal(format!("cannot record the tasks of run {run_id}: {error}"))
        })?;
        Ok(true)
    }
}
