//! ReportService over gRPC, in both forms upstream has: v2beta1's
//! `ReportWorkflow` and v1beta1's `/api.ReportService/ReportWorkflowV1`, which
//! upstream's persistence agent calls. Both record the Workflow through
//! `Api::report_workflow`; ReportScheduledWorkflow(V1) records a
//! ScheduledWorkflow object's schedule on its recurring run through
//! `Api::report_scheduled_workflow`.

use kfpd_api::v1beta1;
use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::report_service_server::ReportService;
use kfpd_api::wkt;
use tonic::{Request, Response};

use super::{status, Reply};
use crate::service::Api;

pub struct Report(pub Api);

#[tonic::async_trait]
impl ReportService for Report {
    async fn report_workflow(
        &self,
        request: Request<api::ReportWorkflowRequest>,
    ) -> Reply<wkt::Empty> {
        let text = request.into_inner().workflow;
        self.0.report_workflow(&text).await.map_err(status)?;
        Ok(Response::new(wkt::Empty {}))
    }

    async fn report_scheduled_workflow(
        &self,
        request: Request<api::ReportScheduledWorkflowRequest>,
    ) -> Reply<wkt::Empty> {
        let text = request.into_inner().scheduled_workflow;
        self.0
            .report_scheduled_workflow(&text)
            .await
            .map_err(status)?;
        Ok(Response::new(wkt::Empty {}))
    }
}

#[tonic::async_trait]
impl v1beta1::report_service_server::ReportService for Report {
    async fn report_workflow_v1(
        &self,
        request: Request<v1beta1::ReportWorkflowRequest>,
    ) -> Reply<wkt::Empty> {
        let text = request.into_inner().workflow;
        self.0.report_workflow(&text).await.map_err(status)?;
        Ok(Response::new(wkt::Empty {}))
    }

    async fn report_scheduled_workflow_v1(
        &self,
        request: Request<v1beta1::ReportScheduledWorkflowRequest>,
    ) -> Reply<wkt::Empty> {
        let text = request.into_inner().scheduled_workflow;
        self.0
            .report_scheduled_workflow(&text)
            .await
            .map_err(status)?;
        Ok(Response::new(wkt::Empty {}))
    }
}
