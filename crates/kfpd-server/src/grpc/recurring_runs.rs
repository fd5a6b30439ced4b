//! RecurringRunService over gRPC.

use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::recurring_run_service_server::RecurringRunService;
use kfpd_api::wkt;
use tonic::Request;

use super::{empty, reply, Reply};
use crate::service::Api;

pub struct RecurringRuns(pub Api);

#[tonic::async_trait]
impl RecurringRunService for RecurringRuns {
    async fn create_recurring_run(
        &self,
        request: Request<api::CreateRecurringRunRequest>,
    ) -> Reply<api::RecurringRun> {
        reply(self.0.create_recurring_run(request.into_inner()).await)
    }

    async fn get_recurring_run(
        &self,
        request: Request<api::GetRecurringRunRequest>,
    ) -> Reply<api::RecurringRun> {
        reply(self.0.get_recurring_run(request.into_inner()).await)
    }

    async fn list_recurring_runs(
        &self,
        request: Request<api::ListRecurringRunsRequest>,
    ) -> Reply<api::ListRecurringRunsResponse> {
        reply(self.0.list_recurring_runs(request.into_inner()).await)
    }

    async fn enable_recurring_run(
        &self,
        request: Request<api::EnableRecurringRunRequest>,
    ) -> Reply<wkt::Empty> {
        empty(self.0.enable_recurring_run(request.into_inner()).await)
    }

    async fn disable_recurring_run(
        &self,
        request: Request<api::DisableRecurringRunRequest>,
    ) -> Reply<wkt::Empty> {
        empty(self.0.disable_recurring_run(request.into_inner()).await)
    }

    async fn delete_recurring_run(
        &self,
        request: Request<api::DeleteRecurringRunRequest>,
    ) -> Reply<wkt::Empty> {
        empty(self.0.delete_recurring_run(request.into_inner()).await)
    }
}
