//! ExperimentService over gRPC.

use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::experiment_service_server::ExperimentService;
use kfpd_api::wkt;
use tonic::Request;

use super::{empty, reply, Reply};
use crate::service::Api;

pub struct Experiments(pub Api);

#[tonic::async_trait]
impl ExperimentService for Experiments {
    async fn create_experiment(
        &self,
        request: Request<api::CreateExperimentRequest>,
    ) -> Reply<api::Experiment> {
        reply(self.0.create_experiment(request.into_inner()).await)
    }

    async fn get_experiment(
        &self,
        request: Request<api::GetExperimentRequest>,
    ) -> Reply<api::Experiment> {
        reply(self.0.get_experiment(request.into_inner()).await)
    }

    async fn list_experiments(
        &self,
        request: Request<api::ListExperimentsRequest>,
    ) -> Reply<api::ListExperimentsResponse> {
        reply(self.0.list_experiments(request.into_inner()).await)
    }

    async fn archive_experiment(
        &self,
        request: Request<api::ArchiveExperimentRequest>,
    ) -> Reply<wkt::Empty> {
        empty(self.0.archive_experiment(request.into_inner()).await)
    }

    async fn unarchive_experiment(
        &self,
        request: Request<api::UnarchiveExperimentRequest>,
    ) -> Reply<wkt::Empty> {
        empty(self.0.unarchive_experiment(request.into_inner()).await)
    }

    async fn delete_experiment(
        &self,
        request: Request<api::DeleteExperimentRequest>,
    ) -> Reply<wkt::Empty> {
        empty(self.0.delete_experiment(request.into_inner()).await)
    }
}
