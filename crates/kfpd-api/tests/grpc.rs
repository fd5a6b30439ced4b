//! The generated tonic server and client talk to each other over a real
//! (loopback) HTTP/2 connection, using the same message types as the JSON API.

use std::net::SocketAddr;

use kfpd_api::v2beta1::experiment_service_client::ExperimentServiceClient;
use kfpd_api::v2beta1::experiment_service_server::{ExperimentService, ExperimentServiceServer};
use kfpd_api::v2beta1::{
    experiment, ArchiveExperimentRequest, CreateExperimentRequest, DeleteExperimentRequest,
    Experiment, GetExperimentRequest, ListExperimentsRequest, ListExperimentsResponse,
    UnarchiveExperimentRequest,
};
use kfpd_api::wkt::{Empty, Timestamp};
use tonic::{Request, Response, Status};

struct Fake;

#[tonic::async_trait]
impl ExperimentService for Fake {
    async fn create_experiment(
        &self,
        req: Request<CreateExperimentRequest>,
    ) -> Result<Response<Experiment>, Status> {
        let mut e = req.into_inner().experiment.unwrap_or_default();
        e.experiment_id = "e-1".into();
        e.storage_state = experiment::StorageState::Available.into();
        e.created_at = Some(Timestamp::from_unix(1_714_557_600));
        Ok(Response::new(e))
    }

    async fn get_experiment(
        &self,
        req: Request<GetExperimentRequest>,
    ) -> Result<Response<Experiment>, Status> {
        Err(Status::not_found(format!(
            "Experiment {} not found",
            req.into_inner().experiment_id
        )))
    }

    async fn list_experiments(
        &self,
        _: Request<ListExperimentsRequest>,
    ) -> Result<Response<ListExperimentsResponse>, Status> {
        Ok(Response::new(ListExperimentsResponse::default()))
    }

    async fn archive_experiment(
        &self,
        _: Request<ArchiveExperimentRequest>,
    ) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unarchive_experiment(
        &self,
        _: Request<UnarchiveExperimentRequest>,
    ) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn delete_experiment(
        &self,
        _: Request<DeleteExperimentRequest>,
    ) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

#[tokio::test]
async fn server_and_client_round_trip() {
    let incoming =
        tonic::transport::server::TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind loopback");
    let addr = incoming.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ExperimentServiceServer::new(Fake))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );

    let mut client = ExperimentServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let created = client
        .create_experiment(CreateExperimentRequest {
            experiment: Some(Experiment {
                display_name: "exp".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.experiment_id, "e-1");
    assert_eq!(created.display_name, "exp");
    assert_eq!(created.storage_state(), experiment::StorageState::Available);
    assert_eq!(
        serde_json::to_value(&created).unwrap()["created_at"],
        "2024-05-01T10:00:00Z"
    );

    let err = client
        .get_experiment(GetExperimentRequest {
            experiment_id: "nope".into(),
        })
        .await
        .expect_err("not found");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "Experiment nope not found");

    client
        .archive_experiment(ArchiveExperimentRequest {
            experiment_id: "e-1".into(),
        })
        .await
        .expect("archive");

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
