//! ReportService over gRPC, in both forms upstream has: v2beta1's
//! `ReportWorkflow` and v1beta1's `/api.ReportService/ReportWorkflowV1`, which
//! upstream's persistence agent calls. Both record the Workflow through
//! `Api::report_workflow`. kfpd keeps recurring runs in its own tables, not as
//! ScheduledWorkflow objects, so ReportScheduledWorkflow has nothing to update
//! and answers UNIMPLEMENTED saying so.

use kfpd_api::v1beta1;
use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::report_service_server::ReportService;
use kfpd_api::wkt;
use tonic::{Request, Response};

use super::{status, Reply};
use crate::error::{Code, Error};
use crate::service::Api;

/// The answer to ReportScheduledWorkflow.
pub const NO_SCHEDULED_WORKFLOWS: &str =
    "kfpd fires recurring runs from its own tables and has no ScheduledWorkflow objects to report";

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
        _request: Request<api::ReportScheduledWorkflowRequest>,
    ) -> Reply<wkt::Empty> {
        Err(status(Error::new(
            Code::Unimplemented,
            NO_SCHEDULED_WORKFLOWS,
        )))
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
        _request: Request<v1beta1::ReportScheduledWorkflowRequest>,
    ) -> Reply<wkt::Empty> {
        Err(status(Error::new(
            Code::Unimplemented,
            NO_SCHEDULED_WORKFLOWS,
        )))
    }
}
