//! PipelineService over gRPC. The multipart upload endpoints have no RPC, as
//! upstream: gRPC clients create versions from a `package_url` instead.

use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::pipeline_service_server::PipelineService;
use kfpd_api::wkt;
use tonic::Request;

use super::{clear_tags, empty, reply, Reply};
use crate::service::Api;

pub struct Pipelines(pub Api);

#[tonic::async_trait]
impl PipelineService for Pipelines {
    async fn create_pipeline(
        &self,
        request: Request<api::CreatePipelineRequest>,
    ) -> Reply<api::Pipeline> {
        reply(self.0.create_pipeline(request.into_inner()).await)
    }

    async fn get_pipeline(
        &self,
        request: Request<api::GetPipelineRequest>,
    ) -> Reply<api::Pipeline> {
        reply(self.0.get_pipeline(request.into_inner()).await)
    }

    async fn get_pipeline_by_name(
        &self,
        request: Request<api::GetPipelineByNameRequest>,
    ) -> Reply<api::Pipeline> {
        reply(self.0.get_pipeline_by_name(request.into_inner()).await)
    }

    async fn list_pipelines(
        &self,
        request: Request<api::ListPipelinesRequest>,
    ) -> Reply<api::ListPipelinesResponse> {
        reply(self.0.list_pipelines(request.into_inner()).await)
    }

    async fn delete_pipeline(
        &self,
        request: Request<api::DeletePipelineRequest>,
    ) -> Reply<wkt::Empty> {
        empty(self.0.delete_pipeline(request.into_inner()).await)
    }

    async fn create_pipeline_and_version(
        &self,
        request: Request<api::CreatePipelineAndVersionRequest>,
    ) -> Reply<api::Pipeline> {
        reply(
            self.0
                .create_pipeline_and_version(request.into_inner())
                .await,
        )
    }

    async fn create_pipeline_version(
        &self,
        request: Request<api::CreatePipelineVersionRequest>,
    ) -> Reply<api::PipelineVersion> {
        reply(self.0.create_pipeline_version(request.into_inner()).await)
    }

    async fn get_pipeline_version(
        &self,
        request: Request<api::GetPipelineVersionRequest>,
    ) -> Reply<api::PipelineVersion> {
        reply(self.0.get_pipeline_version(request.into_inner()).await)
    }

    async fn list_pipeline_versions(
        &self,
        request: Request<api::ListPipelineVersionsRequest>,
    ) -> Reply<api::ListPipelineVersionsResponse> {
        reply(self.0.list_pipeline_versions(request.into_inner()).await)
    }

    async fn delete_pipeline_version(
        &self,
        request: Request<api::DeletePipelineVersionRequest>,
    ) -> Reply<wkt::Empty> {
        empty(self.0.delete_pipeline_version(request.into_inner()).await)
    }

    async fn update_pipeline(
        &self,
        request: Request<api::UpdatePipelineRequest>,
    ) -> Reply<api::Pipeline> {
        let clear = clear_tags::requested(request.metadata());
        reply(self.0.update_pipeline(request.into_inner(), clear).await)
    }

    async fn update_pipeline_version(
        &self,
        request: Request<api::UpdatePipelineVersionRequest>,
    ) -> Reply<api::PipelineVersion> {
        let clear = clear_tags::requested(request.metadata());
        reply(
            self.0
                .update_pipeline_version(request.into_inner(), clear)
                .await,
        )
    }
}
