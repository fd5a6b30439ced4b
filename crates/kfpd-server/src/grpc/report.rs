//! ReportService over gRPC. Upstream's persistence agent and ScheduledWorkflow
//! controller call it to write Argo Workflow and ScheduledWorkflow objects back
//! into the database. kfpd has no Argo: it runs pipelines and schedules itself
//! and records their state directly, so there is nothing such a report could
//! correctly update. The service is registered (so the method exists, as
//! upstream's does) and answers UNIMPLEMENTED with that reason.

use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::report_service_server::ReportService;
use kfpd_api::wkt;
use tonic::Request;

use super::{status, Reply};
use crate::error::{Code, Error};

/// The answer to every ReportService call.
pub const NOT_ACCEPTED: &str = "kfpd runs pipelines itself and does not accept Argo workflow \
     reports: ReportWorkflow and ReportScheduledWorkflow are for upstream's persistence agent";

pub struct Report;

#[tonic::async_trait]
impl ReportService for Report {
    async fn report_workflow(
        &self,
        _request: Request<api::ReportWorkflowRequest>,
    ) -> Reply<wkt::Empty> {
        Err(status(Error::new(Code::Unimplemented, NOT_ACCEPTED)))
    }

    async fn report_scheduled_workflow(
        &self,
        _request: Request<api::ReportScheduledWorkflowRequest>,
    ) -> Reply<wkt::Empty> {
        Err(status(Error::new(Code::Unimplemented, NOT_ACCEPTED)))
    }
}
