//! RunService over gRPC.

use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::run_service_server::RunService;
use kfpd_api::wkt;
use tonic::Request;

use super::{empty, reply, Reply};
use crate::service::Api;

pub struct Runs(pub Api);

#[tonic::async_trait]
impl RunService for Runs {
    async fn create_run(&self, request: Request<api::CreateRunRequest>) -> Reply<api::Run> {
        reply(self.0.create_run(request.into_inner()).await)
    }

    async fn get_run(&self, request: Request<api::GetRunRequest>) -> Reply<api::Run> {
        reply(self.0.get_run(request.into_inner()).await)
    }

    async fn list_runs(
        &self,
        request: Request<api::ListRunsRequest>,
    ) -> Reply<api::ListRunsResponse> {
        reply(self.0.list_runs(request.into_inner()).await)
    }

    async fn archive_run(&self, request: Request<api::ArchiveRunRequest>) -> Reply<wkt::Empty> {
        empty(self.0.archive_run(request.into_inner()).await)
    }

    async fn unarchive_run(&self, request: Request<api::UnarchiveRunRequest>) -> Reply<wkt::Empty> {
        empty(self.0.unarchive_run(request.into_inner()).await)
    }

    async fn delete_run(&self, request: Request<api::DeleteRunRequest>) -> Reply<wkt::Empty> {
        empty(self.0.delete_run(request.into_inner()).await)
    }

    async fn terminate_run(&self, request: Request<api::TerminateRunRequest>) -> Reply<wkt::Empty> {
        empty(self.0.terminate_run(request.into_inner()).await)
    }

    async fn retry_run(&self, request: Request<api::RetryRunRequest>) -> Reply<wkt::Empty> {
        empty(self.0.retry_run(request.into_inner()).await)
    }
}
