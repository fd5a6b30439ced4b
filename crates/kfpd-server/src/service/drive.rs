//! The Argo pod interface (docs/argo.md): the driver request, which the engine
//! decides, and what `kfpd launcher` asks for and reports. This names the errors
//! and shapes the answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kfpd_api::kfpd_v1 as launcher;
use kfpd_engine::{AttemptReport, DriveError, Engine};
use kfpd_store::{Change, TaskState};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::Api;
use crate::error::{Code, Error, Result};

impl Api {
    /// Lets the server answer driver requests for runs it does not execute itself.
    /// Task outputs are then read from the engine's artifact store, where the
    /// launchers put them. A request driving a task before this server saw its
    /// upstream tasks end waits for them up to `patience`.
    pub fn with_driver(mut self, engine: Arc<Engine>, patience: Duration) -> Api {
        self.artifacts = Some(engine.artifacts().clone());
        self.driver = Some(engine);
        self.driver_patience = patience;
        self
    }

    fn driver(&self) -> Result<&Arc<Engine>> {
        self.driver.as_ref().ok_or_else(|| {
            Error::new(
                Code::FailedPrecondition,
                "this server executes runs itself (--executor local); start it with --executor none to run them on Argo",
            )
        })
    }

    /// What `kfpd launcher` runs the container task at `task_path` with.
    /// `pod` is the launcher's (namespace, pod name), when it runs in one.
    pub async fn launch(
        &self,
        run_id: &str,
        task_path: &str,
        pod: Option<(&str, &str)>,
    ) -> Result<launcher::TaskExecution> {
        self.run_for(run_id, kfpd_auth::Verb::Report).await?;
        let launch = self
            .driver()?
            .launch(run_id, task_path.trim(), pod)
            .await
            .map_err(drive_error)?;
        let artifacts: serde_json::Map<String, Value> = launch
            .artifacts
            .iter()
            .map(|(name, list)| {
                let items: Vec<Value> = list
                    .iter()
                    .map(|artifact| {
                        let mut item = json!({
                            "id": artifact.id,
                            "name": artifact.name,
                            "uri": artifact.uri,
                            "schema_title": artifact.schema_title,
                            "schema_version": artifact.schema_version,
                            "metadata": artifact.metadata,
                        });
                        if launch.in_workspace.contains(&artifact.id) {
                            item["in_workspace"] = json!(true);
                        }
                        item
                    })
                    .collect();
                (name.clone(), Value::Array(items))
            })
            .collect();
        let to_json = |value: serde_json::Result<String>| {
            value.map_err(|error| Error::internal(format!("cannot encode the task: {error}")))
        };
        let job = launch.run.job_info(&launch.task_name, &launch.task_id, "");
        Ok(launcher::TaskExecution {
            task_id: launch.task_id,
            task_name: launch.task_name,
            display_name: launch.display_name,
            parameters_json: Value::Object(launch.parameters).to_string(),
            artifacts_json: Value::Object(artifacts).to_string(),
            container_json: match &launch.container {
                Some(container) => to_json(serde_json::to_string(container))?,
                None => String::new(),
            },
            outputs_json: to_json(serde_json::to_string(&launch.outputs))?,
            output_uris: launch.output_uris.into_iter().collect(),
            log_uri: launch.log_uri,
            artifact_root: launch.artifact_root,
            job_name: job.job_name,
            job_resource_name: job.job_resource_name,
            job_create_time: job.create_time,
            pipeline_root: job.pipeline_root,
            max_attempts: launch.max_attempts,
            download_to_workspace: launch.container.is_none(),
        })
    }

    /// Records how one attempt of a launched task ended.
    pub async fn finish_attempt(
        &self,
        run_id: &str,
        task_path: &str,
        report: AttemptReport,
    ) -> Result<TaskState> {
        self.run_for(run_id, kfpd_auth::Verb::Report).await?;
        self.driver()?
            .finish_attempt(run_id, task_path.trim(), report)
            .await
            .map_err(drive_error)
    }

    /// Drives the task at `task_path` of run `run_id`. The answer's values are all
    /// strings, as Argo's expressions read them.
    /// `workflow` names the run's resource (`{{$.pipeline_job_resource_name}}`) when
    /// given; with `pod_spec_patch` a container task that runs is answered with its
    /// pod settings resolved, as a PodSpec patch.
    pub async fn drive(
        &self,
        run_id: &str,
        task_path: &str,
        workflow: &str,
        pod_spec_patch: bool,
    ) -> Result<Value> {
        self.run_for(run_id, kfpd_auth::Verb::Report).await?;
        let engine = self.driver()?;
        let task_path = task_path.trim();
        if task_path.is_empty() {
            return Err(Error::invalid("task_path is required"));
        }
        // Subscribed before the first try, so no end recorded meanwhile is missed.
        let mut changes = self.store.changes().subscribe();
        let started = Instant::now();
        let decision = loop {
            let attempt = engine
                .drive(run_id, task_path, workflow.trim(), pod_spec_patch)
                .await;
            let waited = started.elapsed();
            match attempt {
                Err(DriveError::NotReady(message)) if waited < self.driver_patience => {
                    tracing::debug!(run = %run_id, task = %task_path, %message, "upstream not ended here yet; waiting for it");
                    let left = self.driver_patience - waited;
                    let wait = left.min(RECHECK_NOT_READY);
                    let _ = tokio::time::timeout(wait, run_changed(&mut changes, run_id)).await;
                }
                other => break other.map_err(drive_error)?,
            }
        };
        Ok(json!({
            "execute": decision.execute.to_string(),
            "iteration_count": decision.iteration_count.to_string(),
            "pod_spec_patch": decision.pod_spec_patch,
        }))
    }
}

/// How often a waiting driver request tries again without a change of its run on
/// this server's feed (a writer in another process is not on it).
const RECHECK_NOT_READY: Duration = Duration::from_secs(2);

/// Returns once a change of run `run_id` (or possibly of every run) was committed.
async fn run_changed(changes: &mut broadcast::Receiver<Change>, run_id: &str) {
    loop {
        match changes.recv().await {
            Ok(change) if change.touches(run_id) => return,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // No feed any more: the caller's timer decides when to look again.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

fn drive_error(error: DriveError) -> Error {
    match error {
        DriveError::NotFound(message) => Error::not_found(message),
        DriveError::Invalid(message) => Error::invalid(message),
        DriveError::NotReady(message) => Error::new(Code::FailedPrecondition, message),
        DriveError::Internal(message) => Error::internal(message),
    }
}
