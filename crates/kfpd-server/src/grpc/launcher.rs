//! kfpd's LauncherService (`kfpd.v1`), what `kfpd launcher` calls from inside a
//! task pod: the task's resolved inputs and command, and each attempt's end.

use kfpd_api::kfpd_v1 as api;
use kfpd_api::kfpd_v1::launcher_service_server::LauncherService;
use kfpd_engine::{AttemptReport, Produced};
use serde_json::{Map, Value};
use tonic::Request;

use super::{reply, Reply};
use crate::error::{Error, Result};
use crate::service::Api;

pub struct Launcher(pub Api);

fn object(field: &str, json: &str) -> Result<Map<String, Value>> {
    if json.trim().is_empty() {
        return Ok(Map::new());
    }
    serde_json::from_str(json)
        .map_err(|error| Error::invalid(format!("{field} must be a JSON object: {error}")))
}

#[tonic::async_trait]
impl LauncherService for Launcher {
    async fn get_task(&self, request: Request<api::GetTaskRequest>) -> Reply<api::TaskExecution> {
        let request = request.into_inner();
        let pod = (!request.pod_name.is_empty() && !request.pod_namespace.is_empty())
            .then_some((request.pod_namespace.as_str(), request.pod_name.as_str()));
        reply(
            self.0
                .launch(&request.run_id, &request.task_path, pod)
                .await,
        )
    }

    async fn finish_attempt(
        &self,
        request: Request<api::FinishAttemptRequest>,
    ) -> Reply<api::FinishAttemptResponse> {
        let request = request.into_inner();
        let result = async {
            let mut artifacts = Vec::with_capacity(request.artifacts.len());
            for artifact in &request.artifacts {
                artifacts.push(Produced {
                    name: artifact.name.clone(),
                    uri: artifact.uri.clone(),
                    metadata: object("artifacts.metadata_json", &artifact.metadata_json)?,
                });
            }
            let report = AttemptReport {
                attempt: request.attempt.max(1),
                succeeded: request.succeeded,
                error: request.error.clone(),
                exit_code: request.exit_code,
                parameters: object("parameters_json", &request.parameters_json)?,
                artifacts,
                command: request.command.clone(),
                started_at: request.started_at,
                finished_at: request.finished_at,
                log_uri: request.log_uri.clone(),
                log_offset: request.log_offset,
                log_length: request.log_length,
            };
            let state = self
                .0
                .finish_attempt(&request.run_id, &request.task_path, report)
                .await?;
            Ok(api::FinishAttemptResponse {
                state: state.as_str().to_string(),
            })
        }
        .await;
        reply(result)
    }
}
