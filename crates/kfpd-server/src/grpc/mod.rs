//! The gRPC transport: upstream's v2beta1 services (package
//! `kubeflow.pipelines.backend.api.v2beta1`, same service, method and message
//! names and field numbers) over the service layer the REST routes call, plus
//! the standard health checking and server reflection services, and kfpd's own
//! `kfpd.v1.LauncherService` for `kfpd launcher` inside Argo task pods.
//!
//! Handlers only unwrap the request message, call the matching [`Api`] method
//! and turn its error into a status with [`status`]. No API behaviour lives
//! here, so REST and gRPC cannot answer the same request differently; the
//! messages themselves are generated from the same `.proto` files as the REST
//! JSON types.

mod experiments;
mod launcher;
mod pipelines;
mod recurring_runs;
mod report;
mod runs;

use std::future::Future;

use kfpd_api::kfpd_v1::launcher_service_server::LauncherServiceServer;
use kfpd_api::v2beta1::experiment_service_server::ExperimentServiceServer;
use kfpd_api::v2beta1::pipeline_service_server::PipelineServiceServer;
use kfpd_api::v2beta1::recurring_run_service_server::RecurringRunServiceServer;
use kfpd_api::v2beta1::report_service_server::ReportServiceServer;
use kfpd_api::v2beta1::run_service_server::RunServiceServer;
use kfpd_api::{google_rpc, wkt};
use prost::{Message, Name};
use tonic::{Response, Status};
use tonic_health::ServingStatus;
use tower_http::classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;

use crate::error::{Error, Result};
use crate::service::Api;

pub use clear_tags::CLEAR_TAGS_HEADER;

/// Full names of the API services served, as health checking reports them.
pub const SERVICES: [&str; 7] = [
    "kubeflow.pipelines.backend.api.v2beta1.PipelineService",
    "kubeflow.pipelines.backend.api.v2beta1.ExperimentService",
    "kubeflow.pipelines.backend.api.v2beta1.RunService",
    "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService",
    "kubeflow.pipelines.backend.api.v2beta1.ReportService",
    "api.ReportService",
    "kfpd.v1.LauncherService",
];

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Why the gRPC server stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The one mapping from the API's errors to gRPC statuses: the code is the
/// error's code (its numbers are gRPC's) and the message is the one REST puts in
/// `message`. Like upstream, the status also carries a `google.rpc.Status`
/// detail with the same code and message, which is what REST's `details` holds.
pub fn status(error: Error) -> Status {
    let code = error.code as i32;
    let detail = google_rpc::Status {
        code,
        message: error.message.clone(),
        details: Vec::new(),
    };
    let details = google_rpc::Status {
        code,
        message: error.message.clone(),
        details: vec![wkt::Any {
            type_url: google_rpc::Status::type_url(),
            value: detail.encode_to_vec(),
        }],
    };
    Status::with_details(
        tonic::Code::from_i32(code),
        error.message,
        details.encode_to_vec().into(),
    )
}

type Reply<T> = std::result::Result<Response<T>, Status>;

fn reply<T>(result: Result<T>) -> Reply<T> {
    result.map(Response::new).map_err(status)
}

/// For the calls that return `google.protobuf.Empty`.
fn empty(result: Result<()>) -> Reply<wkt::Empty> {
    reply(result.map(|()| wkt::Empty {}))
}

mod clear_tags {
    use tonic::metadata::MetadataMap;

    /// Metadata that says "remove all tags" on UpdatePipeline and
    /// UpdatePipelineVersion, because protobuf cannot tell an empty `tags` map
    /// from an absent one. Upstream's REST gateway sets it for a body with
    /// `"tags": {}`; gRPC clients set it themselves.
    pub const CLEAR_TAGS_HEADER: &str = "x-clear-tags";

    pub fn requested(metadata: &MetadataMap) -> bool {
        metadata
            .get(CLEAR_TAGS_HEADER)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
    }
}

/// Client mistakes are answers, not server failures: only the remaining codes
/// (Internal, Unknown, Unavailable, …) are logged as failed calls.
fn classifier() -> SharedClassifier<GrpcErrorsAsFailures> {
    let answers = [
        GrpcCode::InvalidArgument,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::Unimplemented,
        GrpcCode::Unauthenticated,
        GrpcCode::Cancelled,
        GrpcCode::DeadlineExceeded,
    ];
    let classifier = answers
        .into_iter()
        .fold(GrpcErrorsAsFailures::new(), |classifier, code| {
            classifier.with_success(code)
        });
    SharedClassifier::new(classifier)
}

/// Serves gRPC on `listener` until `shutdown` completes, then drains: health
/// checks answer NOT_SERVING from that moment and calls in flight finish.
///
/// `max_message_bytes` limits both received and sent API messages; a pipeline
/// version carries its whole spec, so the limit must fit the largest one.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    max_message_bytes: usize,
    limits: crate::connections::Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::result::Result<(), ServeError> {
    // Advertise exactly what is served: the descriptor set also describes
    // services kfpd (like upstream) does not serve over gRPC.
    let reflection = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kfpd_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        [HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA]
            .into_iter()
            .chain(SERVICES)
            .fold(builder, |builder, name| builder.with_service_name(name))
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICES {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let draining = async move {
        shutdown.await;
        for name in SERVICES.into_iter().chain([""]) {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    };

    let access = crate::access::GrpcLayer::new(api.guard().cloned());
    let limit = max_message_bytes;
    let pipelines = PipelineServiceServer::new(pipelines::Pipelines(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let experiments = ExperimentServiceServer::new(experiments::Experiments(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let runs = RunServiceServer::new(runs::Runs(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let launcher = LauncherServiceServer::new(launcher::Launcher(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let report_v1 = kfpd_api::v1beta1::report_service_server::ReportServiceServer::new(
        report::Report(api.clone()),
    )
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    let report = ReportServiceServer::new(report::Report(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let recurring_runs = RecurringRunServiceServer::new(recurring_runs::RecurringRuns(api))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);

    // Capped and timed out like REST's connections (crate::connections).
    let incoming = crate::connections::grpc_incoming(listener, limits);
    tonic::transport::Server::builder()
        .layer(TraceLayer::new(classifier()))
        .layer(crate::connections::GrpcLayer(limits))
        .layer(access)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pipelines)
        .add_service(experiments)
        .add_service(runs)
        .add_service(recurring_runs)
        .add_service(report)
        .add_service(report_v1)
        .add_service(launcher)
        .serve_with_incoming_shutdown(incoming, draining)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn statuses_keep_code_and_message_and_carry_upstreams_detail() {
        let status = status(Error::new(Code::AlreadyExists, "name taken"));
        assert_eq!(status.code(), tonic::Code::AlreadyExists);
        assert_eq!(status.message(), "name taken");
        let details = google_rpc::Status::decode(status.details()).expect("details decode");
        assert_eq!(details.code, 6);
        assert_eq!(details.message, "name taken");
        assert_eq!(
            details.details[0].type_url,
            "type.googleapis.com/google.rpc.Status"
        );
        let inner = google_rpc::Status::decode(details.details[0].value.as_slice()).unwrap();
        assert_eq!((inner.code, inner.message.as_str()), (6, "name taken"));
    }

    #[test]
    fn clear_tags_needs_true() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert!(!clear_tags::requested(&metadata));
        metadata.insert(CLEAR_TAGS_HEADER, "false".parse().unwrap());
        assert!(!clear_tags::requested(&metadata));
        metadata.insert(CLEAR_TAGS_HEADER, "True".parse().unwrap());
        assert!(clear_tags::requested(&metadata));
    }
}
