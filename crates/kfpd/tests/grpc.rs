//! The gRPC API of `kfpd serve` through the real binary: every method of the
//! four CRUD services, REST and gRPC returning the same resource for the same
//! request, errors with the codes and messages REST gives, multi-MiB messages,
//! health checking, reflection and shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Server;
use kfpd_api::v2beta1 as api;
use kfpd_api::v2beta1::experiment_service_client::ExperimentServiceClient;
use kfpd_api::v2beta1::pipeline_service_client::PipelineServiceClient;
use kfpd_api::v2beta1::recurring_run_service_client::RecurringRunServiceClient;
use kfpd_api::v2beta1::report_service_client::ReportServiceClient;
use kfpd_api::v2beta1::run_service_client::RunServiceClient;
use kfpd_api::{google_rpc, wkt};
use prost::Message;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::Code;

/// What the test clients accept and send; the server's default limit.
const LIMIT: usize = 64 << 20;

const SERVICES: [&str; 7] = [
    "kubeflow.pipelines.backend.api.v2beta1.PipelineService",
    "kubeflow.pipelines.backend.api.v2beta1.ExperimentService",
    "kubeflow.pipelines.backend.api.v2beta1.RunService",
    "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService",
    "kubeflow.pipelines.backend.api.v2beta1.ReportService",
    "api.ReportService",
    "kfpd.v1.LauncherService",
];

struct Grpc {
    channel: Channel,
    pipelines: PipelineServiceClient<Channel>,
    experiments: ExperimentServiceClient<Channel>,
    runs: RunServiceClient<Channel>,
    recurring_runs: RecurringRunServiceClient<Channel>,
    report: ReportServiceClient<Channel>,
}

async fn connect(server: &Server) -> Grpc {
    let address = server.grpc.clone().expect("kfpd announced a gRPC address");
    let channel = Channel::from_shared(address)
        .expect("gRPC address is a URI")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .expect("connect to the gRPC port");
    Grpc {
        pipelines: PipelineServiceClient::new(channel.clone())
            .max_decoding_message_size(LIMIT)
            .max_encoding_message_size(LIMIT),
        experiments: ExperimentServiceClient::new(channel.clone()),
        runs: RunServiceClient::new(channel.clone())
            .max_decoding_message_size(LIMIT)
            .max_encoding_message_size(LIMIT),
        recurring_runs: RecurringRunServiceClient::new(channel.clone()),
        report: ReportServiceClient::new(channel.clone()),
        channel,
    }
}

/// The protobuf-JSON form of a message, as REST would write it.
fn json_of(message: &impl serde::Serialize) -> Value {
    serde_json::to_value(message).expect("message serializes")
}

/// A committed pipeline's spec as JSON.
fn spec_of(relative: &str) -> Value {
    common::pipeline_spec(relative)
}

fn to_struct(value: &Value) -> wkt::Struct {
    serde_json::from_value(value.clone()).expect("a JSON object is a Struct")
}

/// hello.yaml with its container arguments padded to about `bytes` bytes:
/// a valid spec whose size the server keeps.
fn padded_spec(bytes: usize) -> Value {
    let mut spec = spec_of("hello.yaml");
    let chunk = "x".repeat(1024);
    let args: Vec<Value> = (0..bytes / 1024)
        .map(|_| Value::String(chunk.clone()))
        .collect();
    spec["deploymentSpec"]["executors"]["exec-echo"]["container"]["args"] = Value::Array(args);
    spec
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Percent-encodes a query parameter value.
fn form_urlencoded_byte_serialize(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn name_filter(key: &str, value: &str) -> String {
    json!({"predicates": [{"operation": "EQUALS", "key": key, "string_value": value}]}).to_string()
}

fn inline_run(experiment_id: &str, spec: &Value) -> api::Run {
    api::Run {
        experiment_id: experiment_id.to_string(),
        display_name: unique("grpc-run"),
        pipeline_source: Some(api::run::PipelineSource::PipelineSpec(to_struct(spec))),
        ..Default::default()
    }
}

fn cron_recurring_run(experiment_id: &str) -> api::RecurringRun {
    api::RecurringRun {
        experiment_id: experiment_id.to_string(),
        display_name: unique("grpc-recurring"),
        max_concurrency: 1,
        mode: api::recurring_run::Mode::Enable as i32,
        trigger: Some(api::Trigger {
            trigger: Some(api::trigger::Trigger::CronSchedule(api::CronSchedule {
                cron: "0 0 * * * *".into(),
                ..Default::default()
            })),
        }),
        pipeline_source: Some(api::recurring_run::PipelineSource::PipelineSpec(to_struct(
            &spec_of("hello.yaml"),
        ))),
        ..Default::default()
    }
}

/// Plain HTTP on loopback serving fixed files, for `package_url` downloads.
struct FileServer {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    async fn start(files: Vec<(&str, Vec<u8>)>) -> FileServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind file server");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let files: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
            files
                .into_iter()
                .map(|(path, bytes)| (path.to_string(), bytes))
                .collect(),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, files.clone()));
            }
        });
        FileServer { base, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(mut stream: tokio::net::TcpStream, files: Arc<Vec<(String, Vec<u8>)>>) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body) = match files.iter().find(|(served, _)| *served == path) {
        Some((_, bytes)) => ("200 OK", bytes.clone()),
        None => ("404 Not Found", b"not found".to_vec()),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

/// Asserts the status and that its `google.rpc.Status` detail repeats code and
/// message, as upstream's does.
fn assert_status(status: &tonic::Status, code: Code) {
    assert_eq!(status.code(), code, "{status:?}");
    let details = google_rpc::Status::decode(status.details()).expect("status details decode");
    assert_eq!(details.code, code as i32);
    assert_eq!(details.message, status.message());
    let inner = details.details.first().expect("one detail");
    assert_eq!(inner.type_url, "type.googleapis.com/google.rpc.Status");
    let inner = google_rpc::Status::decode(inner.value.as_slice()).expect("inner status");
    assert_eq!(
        (inner.code, inner.message.as_str()),
        (code as i32, status.message())
    );
}

fn clear_tags<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-clear-tags", "true".parse().expect("metadata value"));
    request
}

// ------------------------------------------------------------------ every method

#[tokio::test]
async fn pipeline_service_every_method() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let hello = std::fs::read(common::pipeline("hello.yaml")).expect("pipeline file");
    let files = FileServer::start(vec![("/hello_world.yaml", hello)]).await;
    let pipelines = &mut grpc.pipelines;
    let name = unique("grpc-pipeline");

    let created = pipelines
        .create_pipeline(api::CreatePipelineRequest {
            pipeline: Some(api::Pipeline {
                name: name.clone(),
                description: "made over gRPC".into(),
                tags: [("team".to_string(), "ml".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .expect("CreatePipeline")
        .into_inner();
    assert!(!created.pipeline_id.is_empty());
    assert_eq!(created.display_name, name, "display name defaults to name");
    assert!(created.created_at.is_some());
    let id = created.pipeline_id.clone();

    let fetched = pipelines
        .get_pipeline(api::GetPipelineRequest {
            pipeline_id: id.clone(),
        })
        .await
        .expect("GetPipeline")
        .into_inner();
    assert_eq!(fetched, created);
    let by_name = pipelines
        .get_pipeline_by_name(api::GetPipelineByNameRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .expect("GetPipelineByName")
        .into_inner();
    assert_eq!(by_name, created);
    let listed = pipelines
        .list_pipelines(api::ListPipelinesRequest {
            filter: name_filter("name", &name),
            ..Default::default()
        })
        .await
        .expect("ListPipelines")
        .into_inner();
    assert_eq!(listed.total_size, 1);
    assert_eq!(listed.pipelines, vec![created.clone()]);

    let version = pipelines
        .create_pipeline_version(api::CreatePipelineVersionRequest {
            pipeline_id: id.clone(),
            pipeline_version: Some(api::PipelineVersion {
                pipeline_id: id.clone(),
                name: "v1".into(),
                package_url: Some(api::Url {
                    pipeline_url: files.url("/hello_world.yaml"),
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("CreatePipelineVersion")
        .into_inner();
    assert_eq!(version.pipeline_id, id);
    assert_eq!(version.display_name, "v1");
    let spec = json_of(&version.pipeline_spec);
    assert_eq!(spec["pipelineInfo"]["name"], "echo", "{spec}");
    let version_id = version.pipeline_version_id.clone();

    let fetched_version = pipelines
        .get_pipeline_version(api::GetPipelineVersionRequest {
            pipeline_id: id.clone(),
            pipeline_version_id: version_id.clone(),
        })
        .await
        .expect("GetPipelineVersion")
        .into_inner();
    assert_eq!(fetched_version, version);
    let versions = pipelines
        .list_pipeline_versions(api::ListPipelineVersionsRequest {
            pipeline_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("ListPipelineVersions")
        .into_inner();
    assert_eq!(versions.total_size, 1);
    assert_eq!(versions.pipeline_versions, vec![version.clone()]);

    let updated = pipelines
        .update_pipeline(api::UpdatePipelineRequest {
            pipeline: Some(api::Pipeline {
                pipeline_id: id.clone(),
                display_name: "Renamed".into(),
                tags: [("stage".to_string(), "prod".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .expect("UpdatePipeline")
        .into_inner();
    assert_eq!(updated.display_name, "Renamed");
    assert_eq!(updated.tags.get("stage").map(String::as_str), Some("prod"));
    // Without x-clear-tags an empty map means "leave the tags alone".
    let untouched = pipelines
        .update_pipeline(api::UpdatePipelineRequest {
            pipeline: Some(api::Pipeline {
                pipeline_id: id.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("UpdatePipeline without changes")
        .into_inner();
    assert_eq!(untouched.tags, updated.tags);
    let cleared = pipelines
        .update_pipeline(clear_tags(api::UpdatePipelineRequest {
            pipeline: Some(api::Pipeline {
                pipeline_id: id.clone(),
                ..Default::default()
            }),
        }))
        .await
        .expect("UpdatePipeline with x-clear-tags")
        .into_inner();
    assert!(cleared.tags.is_empty(), "{cleared:?}");
    assert_eq!(cleared.display_name, "Renamed");

    let updated_version = pipelines
        .update_pipeline_version(api::UpdatePipelineVersionRequest {
            pipeline_version: Some(api::PipelineVersion {
                pipeline_id: id.clone(),
                pipeline_version_id: version_id.clone(),
                display_name: "First".into(),
                tags: [("ok".to_string(), "yes".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .expect("UpdatePipelineVersion")
        .into_inner();
    assert_eq!(updated_version.display_name, "First");
    assert_eq!(updated_version.tags.len(), 1);
    let cleared_version = pipelines
        .update_pipeline_version(clear_tags(api::UpdatePipelineVersionRequest {
            pipeline_version: Some(api::PipelineVersion {
                pipeline_id: id.clone(),
                pipeline_version_id: version_id.clone(),
                ..Default::default()
            }),
        }))
        .await
        .expect("UpdatePipelineVersion with x-clear-tags")
        .into_inner();
    assert!(cleared_version.tags.is_empty());

    let refused = pipelines
        .delete_pipeline(api::DeletePipelineRequest {
            pipeline_id: id.clone(),
            cascade: false,
        })
        .await
        .expect_err("a pipeline with versions needs cascade");
    assert_ne!(refused.code(), Code::Ok);
    pipelines
        .delete_pipeline_version(api::DeletePipelineVersionRequest {
            pipeline_id: id.clone(),
            pipeline_version_id: version_id.clone(),
        })
        .await
        .expect("DeletePipelineVersion");
    let error = pipelines
        .get_pipeline_version(api::GetPipelineVersionRequest {
            pipeline_id: id.clone(),
            pipeline_version_id: version_id,
        })
        .await
        .expect_err("version is gone");
    assert_status(&error, Code::NotFound);
    pipelines
        .delete_pipeline(api::DeletePipelineRequest {
            pipeline_id: id.clone(),
            cascade: false,
        })
        .await
        .expect("DeletePipeline without versions");

    let both = pipelines
        .create_pipeline_and_version(api::CreatePipelineAndVersionRequest {
            pipeline: Some(api::Pipeline {
                name: unique("grpc-both"),
                ..Default::default()
            }),
            pipeline_version: Some(api::PipelineVersion {
                package_url: Some(api::Url {
                    pipeline_url: files.url("/hello_world.yaml"),
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("CreatePipelineAndVersion")
        .into_inner();
    let versions = pipelines
        .list_pipeline_versions(api::ListPipelineVersionsRequest {
            pipeline_id: both.pipeline_id.clone(),
            ..Default::default()
        })
        .await
        .expect("ListPipelineVersions")
        .into_inner();
    assert_eq!(versions.total_size, 1);
    assert_eq!(versions.pipeline_versions[0].name, both.name);
    pipelines
        .delete_pipeline(api::DeletePipelineRequest {
            pipeline_id: both.pipeline_id.clone(),
            cascade: true,
        })
        .await
        .expect("DeletePipeline with cascade");
    for pipeline_id in [id, both.pipeline_id] {
        let error = pipelines
            .get_pipeline(api::GetPipelineRequest { pipeline_id })
            .await
            .expect_err("pipeline is gone");
        assert_status(&error, Code::NotFound);
    }
}

#[tokio::test]
async fn experiment_service_every_method() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let experiments = &mut grpc.experiments;
    let name = unique("grpc-experiment");

    let created = experiments
        .create_experiment(api::CreateExperimentRequest {
            experiment: Some(api::Experiment {
                display_name: name.clone(),
                description: "made over gRPC".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("CreateExperiment")
        .into_inner();
    assert!(!created.experiment_id.is_empty());
    assert_eq!(
        created.storage_state,
        api::experiment::StorageState::Available as i32
    );
    let id = created.experiment_id.clone();
    let get = |experiments: &mut ExperimentServiceClient<Channel>| {
        let request = api::GetExperimentRequest {
            experiment_id: id.clone(),
        };
        let mut client = experiments.clone();
        async move { client.get_experiment(request).await }
    };
    assert_eq!(
        get(experiments).await.expect("GetExperiment").into_inner(),
        created
    );

    let listed = experiments
        .list_experiments(api::ListExperimentsRequest {
            filter: name_filter("display_name", &name),
            ..Default::default()
        })
        .await
        .expect("ListExperiments")
        .into_inner();
    assert_eq!(listed.experiments, vec![created.clone()]);
    let all = experiments
        .list_experiments(api::ListExperimentsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("ListExperiments paged")
        .into_inner();
    assert_eq!(all.total_size, 2, "the default experiment and ours");
    assert_eq!(all.experiments.len(), 1);
    assert!(!all.next_page_token.is_empty());

    experiments
        .archive_experiment(api::ArchiveExperimentRequest {
            experiment_id: id.clone(),
        })
        .await
        .expect("ArchiveExperiment");
    let archived = get(experiments).await.expect("get").into_inner();
    assert_eq!(
        archived.storage_state,
        api::experiment::StorageState::Archived as i32
    );
    experiments
        .unarchive_experiment(api::UnarchiveExperimentRequest {
            experiment_id: id.clone(),
        })
        .await
        .expect("UnarchiveExperiment");
    let available = get(experiments).await.expect("get").into_inner();
    assert_eq!(
        available.storage_state,
        api::experiment::StorageState::Available as i32
    );

    experiments
        .delete_experiment(api::DeleteExperimentRequest {
            experiment_id: id.clone(),
        })
        .await
        .expect("DeleteExperiment");
    let error = get(experiments).await.expect_err("experiment is gone");
    assert_status(&error, Code::NotFound);
}

/// Waits until the run is in a final state and returns it.
async fn wait_until_finished(runs: &RunServiceClient<Channel>, id: &str) -> i32 {
    let finished = [
        api::RuntimeState::Succeeded,
        api::RuntimeState::Skipped,
        api::RuntimeState::Failed,
        api::RuntimeState::Canceled,
    ]
    .map(|state| state as i32);
    let mut client = runs.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run = client
            .get_run(api::GetRunRequest {
                run_id: id.to_string(),
                ..Default::default()
            })
            .await
            .expect("GetRun")
            .into_inner();
        if finished.contains(&run.state) {
            return run.state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {id} still {:?} after 30 s",
            run.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Compares a REST read with a gRPC read of something that may be changing
/// meanwhile (an executor may be running the run): REST, gRPC, REST again,
/// until both REST reads agree; the gRPC read between them must then match.
async fn assert_same_reads<R, RF, G, GF>(mut rest: R, mut grpc: G)
where
    R: FnMut() -> RF,
    RF: std::future::Future<Output = Value>,
    G: FnMut() -> GF,
    GF: std::future::Future<Output = Value>,
{
    for _ in 0..100 {
        let before = rest().await;
        let over_grpc = grpc().await;
        let after = rest().await;
        if before == after {
            assert_eq!(over_grpc, before, "gRPC and REST disagree");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the resource kept changing for 10 s");
}

#[tokio::test]
async fn run_service_every_method() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let experiment = grpc
        .experiments
        .create_experiment(api::CreateExperimentRequest {
            experiment: Some(api::Experiment {
                display_name: unique("grpc-runs"),
                ..Default::default()
            }),
        })
        .await
        .expect("CreateExperiment")
        .into_inner();
    let runs = &mut grpc.runs;

    let spec = spec_of("hello.yaml");
    let created = runs
        .create_run(api::CreateRunRequest {
            run: Some(inline_run(&experiment.experiment_id, &spec)),
            ..Default::default()
        })
        .await
        .expect("CreateRun")
        .into_inner();
    assert!(!created.run_id.is_empty());
    assert_eq!(created.experiment_id, experiment.experiment_id);
    assert_eq!(created.state, api::RuntimeState::Pending as i32);
    assert!(created.created_at.is_some());
    let Some(api::run::PipelineSource::PipelineSpec(stored)) = &created.pipeline_source else {
        panic!("an inline run keeps its spec: {created:?}");
    };
    assert_eq!(json_of(stored), spec);
    let id = created.run_id.clone();
    let get = |runs: &RunServiceClient<Channel>| {
        let request = api::GetRunRequest {
            run_id: id.clone(),
            ..Default::default()
        };
        let mut client = runs.clone();
        async move { client.get_run(request).await.map(|r| r.into_inner()) }
    };
    // An executor may already be running it: compare what does not change.
    let fetched = get(runs).await.expect("GetRun");
    assert_eq!(
        (&fetched.run_id, &fetched.display_name, &fetched.created_at),
        (&created.run_id, &created.display_name, &created.created_at)
    );
    assert_eq!(fetched.pipeline_source, created.pipeline_source);

    let listed = runs
        .list_runs(api::ListRunsRequest {
            experiment_id: experiment.experiment_id.clone(),
            ..Default::default()
        })
        .await
        .expect("ListRuns")
        .into_inner();
    assert_eq!(listed.total_size, 1);
    assert_eq!(listed.runs[0].run_id, id);
    assert_eq!(listed.runs[0].display_name, created.display_name);

    runs.archive_run(api::ArchiveRunRequest {
        run_id: id.clone(),
        ..Default::default()
    })
    .await
    .expect("ArchiveRun");
    assert_eq!(
        get(runs).await.expect("get").storage_state,
        api::run::StorageState::Archived as i32
    );
    runs.unarchive_run(api::UnarchiveRunRequest {
        run_id: id.clone(),
        ..Default::default()
    })
    .await
    .expect("UnarchiveRun");
    assert_eq!(
        get(runs).await.expect("get").storage_state,
        api::run::StorageState::Available as i32
    );

    // Without an executor the run is still PENDING and terminating cancels it;
    // with one it may have succeeded already, which cannot be terminated.
    let terminated = runs
        .terminate_run(api::TerminateRunRequest {
            run_id: id.clone(),
            ..Default::default()
        })
        .await;
    let settled = wait_until_finished(runs, &id).await;
    match terminated {
        Ok(_) => assert_eq!(settled, api::RuntimeState::Canceled as i32),
        Err(error) => {
            assert_status(&error, Code::FailedPrecondition);
            assert_eq!(settled, api::RuntimeState::Succeeded as i32);
        }
    }
    let retried = runs
        .retry_run(api::RetryRunRequest {
            run_id: id.clone(),
            ..Default::default()
        })
        .await;
    if settled == api::RuntimeState::Canceled as i32 {
        retried.expect("RetryRun of a canceled run");
        let history = get(runs).await.expect("get").state_history;
        assert!(
            history
                .iter()
                .skip_while(|status| status.state != api::RuntimeState::Canceled as i32)
                .any(|status| status.state == api::RuntimeState::Pending as i32),
            "a retried run goes back to PENDING: {history:?}"
        );
    } else {
        assert_status(
            &retried.expect_err("nothing to retry"),
            Code::FailedPrecondition,
        );
    }

    runs.delete_run(api::DeleteRunRequest {
        run_id: id.clone(),
        ..Default::default()
    })
    .await
    .expect("DeleteRun");
    let error = get(runs).await.expect_err("run is gone");
    assert_status(&error, Code::NotFound);
}

#[tokio::test]
async fn recurring_run_service_every_method() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let experiment = grpc
        .experiments
        .create_experiment(api::CreateExperimentRequest {
            experiment: Some(api::Experiment {
                display_name: unique("grpc-recurring"),
                ..Default::default()
            }),
        })
        .await
        .expect("CreateExperiment")
        .into_inner();
    let recurring_runs = &mut grpc.recurring_runs;

    let created = recurring_runs
        .create_recurring_run(api::CreateRecurringRunRequest {
            recurring_run: Some(cron_recurring_run(&experiment.experiment_id)),
        })
        .await
        .expect("CreateRecurringRun")
        .into_inner();
    assert!(!created.recurring_run_id.is_empty());
    assert_eq!(created.status, api::recurring_run::Status::Enabled as i32);
    let id = created.recurring_run_id.clone();
    let get = |client: &RecurringRunServiceClient<Channel>| {
        let request = api::GetRecurringRunRequest {
            recurring_run_id: id.clone(),
        };
        let mut client = client.clone();
        async move {
            client
                .get_recurring_run(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    assert_eq!(get(recurring_runs).await.expect("GetRecurringRun"), created);

    let listed = recurring_runs
        .list_recurring_runs(api::ListRecurringRunsRequest {
            experiment_id: experiment.experiment_id.clone(),
            ..Default::default()
        })
        .await
        .expect("ListRecurringRuns")
        .into_inner();
    assert_eq!(listed.total_size, 1);
    assert_eq!(listed.recurring_runs, vec![created.clone()]);

    recurring_runs
        .disable_recurring_run(api::DisableRecurringRunRequest {
            recurring_run_id: id.clone(),
        })
        .await
        .expect("DisableRecurringRun");
    assert_eq!(
        get(recurring_runs).await.expect("get").status,
        api::recurring_run::Status::Disabled as i32
    );
    recurring_runs
        .enable_recurring_run(api::EnableRecurringRunRequest {
            recurring_run_id: id.clone(),
        })
        .await
        .expect("EnableRecurringRun");
    assert_eq!(
        get(recurring_runs).await.expect("get").status,
        api::recurring_run::Status::Enabled as i32
    );

    recurring_runs
        .delete_recurring_run(api::DeleteRecurringRunRequest {
            recurring_run_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("DeleteRecurringRun");
    let error = get(recurring_runs)
        .await
        .expect_err("recurring run is gone");
    assert_status(&error, Code::NotFound);
}

#[tokio::test]
async fn report_service_checks_workflows_in_both_forms() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let error = grpc
        .report
        .report_workflow(api::ReportWorkflowRequest {
            workflow: "{}".into(),
        })
        .await
        .expect_err("a workflow without a run id is refused");
    assert_status(&error, Code::InvalidArgument);
    assert!(error.message().contains("runid"), "{}", error.message());
    let unknown = json!({
        "metadata": {"name": "w", "namespace": "kubeflow", "uid": "u",
                     "labels": {"pipeline/runid": "no-such-run"}},
        "status": {"phase": "Running"},
    });
    let mut v1 =
        kfpd_api::v1beta1::report_service_client::ReportServiceClient::new(grpc.channel.clone());
    let error = v1
        .report_workflow_v1(kfpd_api::v1beta1::ReportWorkflowRequest {
            workflow: unknown.to_string(),
        })
        .await
        .expect_err("an unknown run is not found");
    assert_status(&error, Code::NotFound);
}

/// ReportScheduledWorkflow as upstream's persistence agent sends it: the
/// ScheduledWorkflow's JSON, whose UID is the recurring run's id, brings the
/// recurring run's schedule, concurrency and parameters up to date, over gRPC
/// (v2beta1 and v1beta1) and REST; what cannot be recorded is refused by name.
#[tokio::test]
async fn report_scheduled_workflow_updates_its_recurring_run() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let body = json!({
        "display_name": "hourly sums",
        "pipeline_spec": common::pipeline_spec("add.yaml"),
        "runtime_config": {"parameters": {"a": 1, "b": 2}},
        "trigger": {"periodic_schedule": {"interval_second": "3600"}},
        "mode": "ENABLE",
        "max_concurrency": "1",
    });
    let (code, created) = server.post("/recurringruns", &body).await;
    assert_eq!(code, 200, "{created}");
    let id = created["recurring_run_id"].as_str().unwrap().to_string();
    let swf = |spec: Value| {
        json!({
            "apiVersion": "kubeflow.org/v2beta1", "kind": "ScheduledWorkflow",
            "metadata": {"name": "hourly-sums-x", "namespace": "kubeflow", "uid": id},
            "spec": spec,
        })
        .to_string()
    };

    grpc.report
        .report_scheduled_workflow(api::ReportScheduledWorkflowRequest {
            scheduled_workflow: swf(json!({
                "enabled": false, "maxConcurrency": 4, "noCatchup": true,
                "trigger": {"cronSchedule": {"cron": "0 30 * * * *"}},
                "workflow": {"parameters": [{"name": "a", "value": "5"}, {"name": "b", "value": "7"}]},
            })),
        })
        .await
        .expect("ReportScheduledWorkflow");
    let (_, updated) = server.get(&format!("/recurringruns/{id}")).await;
    assert_eq!(updated["status"], "DISABLED", "{updated}");
    assert_eq!(updated["mode"], "DISABLE", "{updated}");
    assert_eq!(updated["max_concurrency"], "4", "{updated}");
    assert_eq!(updated["no_catchup"], true, "{updated}");
    assert_eq!(updated["trigger"]["cron_schedule"]["cron"], "0 30 * * * *");
    assert_eq!(
        updated["runtime_config"]["parameters"],
        json!({"a": 5, "b": 7}),
        "{updated}"
    );

    // v1beta1, as upstream's agent calls it.
    let mut v1 =
        kfpd_api::v1beta1::report_service_client::ReportServiceClient::new(grpc.channel.clone());
    v1.report_scheduled_workflow_v1(kfpd_api::v1beta1::ReportScheduledWorkflowRequest {
        scheduled_workflow: swf(json!({"enabled": true})),
    })
    .await
    .expect("ReportScheduledWorkflowV1");
    let (_, enabled) = server.get(&format!("/recurringruns/{id}")).await;
    assert_eq!(enabled["mode"], "ENABLE", "{enabled}");
    assert_eq!(enabled["max_concurrency"], "4", "fields not given stay");

    // REST: the body is the object's JSON as a JSON string.
    let text = swf(json!({"trigger": {"periodicSchedule": {"intervalSecond": 120}}}));
    let (code, answer) = server
        .post("/scheduledworkflows", &Value::String(text))
        .await;
    assert_eq!(code, 200, "{answer}");
    let (_, periodic) = server.get(&format!("/recurringruns/{id}")).await;
    assert_eq!(
        periodic["trigger"]["periodic_schedule"]["interval_second"],
        "120"
    );

    // Refused, naming what is wrong, and nothing changed.
    for (text, code, expected) in [
        ("not json".to_string(), Code::InvalidArgument, "not a JSON"),
        (
            json!({"metadata": {"name": "x", "namespace": "kubeflow"}}).to_string(),
            Code::InvalidArgument,
            "metadata.uid",
        ),
        (
            json!({"metadata": {"name": "x", "namespace": "kubeflow", "uid": "no-such-uid"},
                   "spec": {"enabled": true}})
            .to_string(),
            Code::NotFound,
            "no-such-uid",
        ),
        (
            swf(json!({"maxConcurrency": 11})),
            Code::InvalidArgument,
            "max_concurrency",
        ),
        (
            swf(json!({"trigger": {"cronSchedule": {"cron": "every day"}}})),
            Code::InvalidArgument,
            "cron",
        ),
        (
            swf(json!({"workflow": {"parameters": [{"name": "c", "value": "1"}]}})),
            Code::InvalidArgument,
            "\"c\"",
        ),
        (swf(json!({})), Code::InvalidArgument, "nothing to record"),
    ] {
        let error = grpc
            .report
            .report_scheduled_workflow(api::ReportScheduledWorkflowRequest {
                scheduled_workflow: text.clone(),
            })
            .await
            .expect_err("refused");
        assert_status(&error, code);
        assert!(
            error.message().contains(expected),
            "{text}: {}",
            error.message()
        );
    }
    let (code, answer) = server.post("/scheduledworkflows", &json!(42)).await;
    assert_eq!(code, 400, "{answer}");
    let (_, after) = server.get(&format!("/recurringruns/{id}")).await;
    assert_eq!(after, periodic);
}

// ------------------------------------------------------ REST and gRPC agree

#[tokio::test]
async fn pipelines_are_the_same_over_rest_and_grpc() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let uploaded = server
        .upload_pipeline("hello.yaml", &unique("rest-upload"))
        .await;
    let id = uploaded["pipeline_id"].as_str().expect("pipeline_id");

    let (status, rest) = server.get(&format!("/pipelines/{id}")).await;
    assert_eq!(status, 200);
    let over_grpc = grpc
        .pipelines
        .get_pipeline(api::GetPipelineRequest {
            pipeline_id: id.to_string(),
        })
        .await
        .expect("GetPipeline")
        .into_inner();
    assert_eq!(json_of(&over_grpc), rest);
    assert_eq!(json_of(&over_grpc), uploaded);

    let (status, rest_versions) = server.get(&format!("/pipelines/{id}/versions")).await;
    assert_eq!(status, 200);
    let versions = grpc
        .pipelines
        .list_pipeline_versions(api::ListPipelineVersionsRequest {
            pipeline_id: id.to_string(),
            ..Default::default()
        })
        .await
        .expect("ListPipelineVersions")
        .into_inner();
    assert_eq!(json_of(&versions), rest_versions);
    let version_id = versions.pipeline_versions[0].pipeline_version_id.clone();
    let (status, rest_version) = server
        .get(&format!("/pipelines/{id}/versions/{version_id}"))
        .await;
    assert_eq!(status, 200);
    let version = grpc
        .pipelines
        .get_pipeline_version(api::GetPipelineVersionRequest {
            pipeline_id: id.to_string(),
            pipeline_version_id: version_id,
        })
        .await
        .expect("GetPipelineVersion")
        .into_inner();
    assert_eq!(json_of(&version), rest_version);

    // And the other way round: created over gRPC, read over REST.
    let created = grpc
        .pipelines
        .create_pipeline(api::CreatePipelineRequest {
            pipeline: Some(api::Pipeline {
                name: unique("grpc-made"),
                tags: [("k".to_string(), "v".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .expect("CreatePipeline")
        .into_inner();
    let (status, rest) = server
        .get(&format!("/pipelines/{}", created.pipeline_id))
        .await;
    assert_eq!(status, 200);
    assert_eq!(rest, json_of(&created));
    let (status, rest_list) = server.get("/pipelines").await;
    assert_eq!(status, 200);
    let list = grpc
        .pipelines
        .list_pipelines(api::ListPipelinesRequest::default())
        .await
        .expect("ListPipelines")
        .into_inner();
    assert_eq!(json_of(&list), rest_list);
}

#[tokio::test]
async fn experiments_are_the_same_over_rest_and_grpc() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let (status, created) = server
        .post(
            "/experiments",
            &json!({"display_name": unique("rest-made"), "description": "d"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["experiment_id"].as_str().expect("experiment_id");
    let over_grpc = grpc
        .experiments
        .get_experiment(api::GetExperimentRequest {
            experiment_id: id.to_string(),
        })
        .await
        .expect("GetExperiment")
        .into_inner();
    let (_, rest) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(json_of(&over_grpc), rest);
    assert_eq!(json_of(&over_grpc), created);

    let (_, rest_list) = server.get("/experiments?sort_by=name").await;
    let list = grpc
        .experiments
        .list_experiments(api::ListExperimentsRequest {
            sort_by: "name".into(),
            ..Default::default()
        })
        .await
        .expect("ListExperiments")
        .into_inner();
    assert_eq!(json_of(&list), rest_list);
}

#[tokio::test]
async fn runs_are_the_same_over_rest_and_grpc() {
    let server = Server::start();
    let grpc = connect(&server).await;
    let spec = spec_of("hello.yaml");
    let (status, rest_created) = server
        .post(
            "/runs",
            &json!({"display_name": unique("rest-run"), "pipeline_spec": spec}),
        )
        .await;
    assert_eq!(status, 200, "{rest_created}");
    let rest_id = rest_created["run_id"].as_str().expect("run_id").to_string();

    let grpc_created = grpc
        .runs
        .clone()
        .create_run(api::CreateRunRequest {
            run: Some(inline_run("", &spec)),
            ..Default::default()
        })
        .await
        .expect("CreateRun")
        .into_inner();
    assert_eq!(
        grpc_created.experiment_id,
        rest_created["experiment_id"].as_str().unwrap_or_default(),
        "both went to the default experiment"
    );

    for id in [rest_id, grpc_created.run_id.clone()] {
        let path = format!("/runs/{id}");
        assert_same_reads(
            || {
                let path = path.clone();
                let server = &server;
                async move { server.get(&path).await.1 }
            },
            || {
                let mut client = grpc.runs.clone();
                let request = api::GetRunRequest {
                    run_id: id.clone(),
                    ..Default::default()
                };
                async move { json_of(&client.get_run(request).await.expect("GetRun").into_inner()) }
            },
        )
        .await;
    }
    assert_same_reads(
        || async { server.get("/runs").await.1 },
        || {
            let mut client = grpc.runs.clone();
            async move {
                let list = client
                    .list_runs(api::ListRunsRequest::default())
                    .await
                    .expect("ListRuns")
                    .into_inner();
                assert_eq!(list.total_size, 2);
                json_of(&list)
            }
        },
    )
    .await;
}

#[tokio::test]
async fn recurring_runs_are_the_same_over_rest_and_grpc() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let body = json!({
        "display_name": unique("rest-recurring"),
        "max_concurrency": "2",
        "mode": "ENABLE",
        "trigger": {"periodic_schedule": {"interval_second": "3600"}},
        "pipeline_spec": spec_of("hello.yaml"),
    });
    let (status, rest_created) = server.post("/recurringruns", &body).await;
    assert_eq!(status, 200, "{rest_created}");
    let id = rest_created["recurring_run_id"]
        .as_str()
        .expect("recurring_run_id");
    let over_grpc = grpc
        .recurring_runs
        .get_recurring_run(api::GetRecurringRunRequest {
            recurring_run_id: id.to_string(),
        })
        .await
        .expect("GetRecurringRun")
        .into_inner();
    assert_eq!(json_of(&over_grpc), rest_created);

    let grpc_created = grpc
        .recurring_runs
        .create_recurring_run(api::CreateRecurringRunRequest {
            recurring_run: Some(cron_recurring_run("")),
        })
        .await
        .expect("CreateRecurringRun")
        .into_inner();
    let (_, rest) = server
        .get(&format!("/recurringruns/{}", grpc_created.recurring_run_id))
        .await;
    assert_eq!(rest, json_of(&grpc_created));

    let (_, rest_list) = server.get("/recurringruns").await;
    let list = grpc
        .recurring_runs
        .list_recurring_runs(api::ListRecurringRunsRequest::default())
        .await
        .expect("ListRecurringRuns")
        .into_inner();
    assert_eq!(list.total_size, 2);
    assert_eq!(json_of(&list), rest_list);
}

// ------------------------------------------------------------------ errors

/// The REST error body's code and message for a request.
fn rest_error(status: u16, body: &Value) -> (u16, i64, String) {
    (
        status,
        body["code"].as_i64().unwrap_or_default(),
        body["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn same_error(rest: (u16, i64, String), grpc: &tonic::Status, code: Code, http: u16) {
    assert_status(grpc, code);
    assert_eq!(rest.0, http, "REST status for {code:?}");
    assert_eq!(rest.1, code as i64, "REST body code");
    assert!(!rest.2.is_empty());
    assert_eq!(grpc.message(), rest.2, "gRPC and REST messages differ");
}

#[tokio::test]
async fn errors_carry_the_codes_and_messages_rest_gives() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let missing = "00000000-0000-0000-0000-000000000000";

    // NOT_FOUND
    let (status, body) = server.get(&format!("/experiments/{missing}")).await;
    let error = grpc
        .experiments
        .get_experiment(api::GetExperimentRequest {
            experiment_id: missing.into(),
        })
        .await
        .expect_err("missing experiment");
    same_error(rest_error(status, &body), &error, Code::NotFound, 404);
    let (status, body) = server.get(&format!("/pipelines/{missing}")).await;
    let error = grpc
        .pipelines
        .get_pipeline(api::GetPipelineRequest {
            pipeline_id: missing.into(),
        })
        .await
        .expect_err("missing pipeline");
    same_error(rest_error(status, &body), &error, Code::NotFound, 404);
    let (status, body) = server.get(&format!("/runs/{missing}")).await;
    let error = grpc
        .runs
        .get_run(api::GetRunRequest {
            run_id: missing.into(),
            ..Default::default()
        })
        .await
        .expect_err("missing run");
    same_error(rest_error(status, &body), &error, Code::NotFound, 404);

    // INVALID_ARGUMENT
    let (status, body) = server
        .post("/experiments", &json!({"description": "no name"}))
        .await;
    let error = grpc
        .experiments
        .create_experiment(api::CreateExperimentRequest {
            experiment: Some(api::Experiment {
                description: "no name".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("experiment without a name");
    same_error(
        rest_error(status, &body),
        &error,
        Code::InvalidArgument,
        400,
    );
    let (status, body) = server.get("/runs?filter=not-json").await;
    let error = grpc
        .runs
        .list_runs(api::ListRunsRequest {
            filter: "not-json".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad filter");
    same_error(
        rest_error(status, &body),
        &error,
        Code::InvalidArgument,
        400,
    );
    // An unknown enum value is refused naming it, not answered with an empty list.
    for (filter, unknown) in [
        (name_filter("state", "DONE"), "\"DONE\""),
        (name_filter("storage_state", "archived"), "\"archived\""),
    ] {
        let encoded: String = form_urlencoded_byte_serialize(&filter);
        let (status, body) = server.get(&format!("/runs?filter={encoded}")).await;
        let error = grpc
            .runs
            .list_runs(api::ListRunsRequest {
                filter: filter.clone(),
                ..Default::default()
            })
            .await
            .expect_err("unknown enum value");
        assert!(error.message().contains(unknown), "{error:?}");
        same_error(
            rest_error(status, &body),
            &error,
            Code::InvalidArgument,
            400,
        );
    }
    let filter = name_filter("storage_state", "DELETED");
    let (status, body) = server
        .get(&format!(
            "/experiments?filter={}",
            form_urlencoded_byte_serialize(&filter)
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("\"DELETED\""),
        "{body}"
    );
    let (status, body) = server
        .post("/pipelines", &json!({"description": "no name"}))
        .await;
    let error = grpc
        .pipelines
        .create_pipeline(api::CreatePipelineRequest {
            pipeline: Some(api::Pipeline {
                description: "no name".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("pipeline without a name");
    same_error(
        rest_error(status, &body),
        &error,
        Code::InvalidArgument,
        400,
    );

    // ALREADY_EXISTS
    let name = unique("taken");
    let (status, _) = server
        .post("/experiments", &json!({"display_name": name}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post("/experiments", &json!({"display_name": name}))
        .await;
    let error = grpc
        .experiments
        .create_experiment(api::CreateExperimentRequest {
            experiment: Some(api::Experiment {
                display_name: name.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("duplicate experiment");
    same_error(rest_error(status, &body), &error, Code::AlreadyExists, 409);
    let (status, _) = server.post("/pipelines", &json!({"name": name})).await;
    assert_eq!(status, 200);
    let (status, body) = server.post("/pipelines", &json!({"name": name})).await;
    let error = grpc
        .pipelines
        .create_pipeline(api::CreatePipelineRequest {
            pipeline: Some(api::Pipeline {
                name: name.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("duplicate pipeline");
    same_error(rest_error(status, &body), &error, Code::AlreadyExists, 409);
}

// ------------------------------------------------------------ large messages

#[tokio::test]
async fn pipeline_specs_of_several_mib_pass_both_ways() {
    let server = Server::start();
    let mut grpc = connect(&server).await;
    let spec = padded_spec(5 << 20);
    let bytes = serde_json::to_vec(&spec).expect("spec JSON");
    assert!(bytes.len() > 5 << 20);
    let files = FileServer::start(vec![("/big.json", bytes)]).await;

    // Sent: a 5 MiB response to CreatePipelineVersion and GetPipelineVersion.
    let pipeline = grpc
        .pipelines
        .create_pipeline(api::CreatePipelineRequest {
            pipeline: Some(api::Pipeline {
                name: unique("big"),
                ..Default::default()
            }),
        })
        .await
        .expect("CreatePipeline")
        .into_inner();
    let version = grpc
        .pipelines
        .create_pipeline_version(api::CreatePipelineVersionRequest {
            pipeline_id: pipeline.pipeline_id.clone(),
            pipeline_version: Some(api::PipelineVersion {
                pipeline_id: pipeline.pipeline_id.clone(),
                name: "big".into(),
                package_url: Some(api::Url {
                    pipeline_url: files.url("/big.json"),
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("CreatePipelineVersion with a 5 MiB spec")
        .into_inner();
    let fetched = grpc
        .pipelines
        .get_pipeline_version(api::GetPipelineVersionRequest {
            pipeline_id: pipeline.pipeline_id.clone(),
            pipeline_version_id: version.pipeline_version_id.clone(),
        })
        .await
        .expect("GetPipelineVersion with a 5 MiB spec")
        .into_inner();
    assert!(fetched.encoded_len() > 5 << 20, "{}", fetched.encoded_len());
    assert_eq!(json_of(&fetched.pipeline_spec), spec);

    // Received: a 5 MiB CreateRun.
    let run = grpc
        .runs
        .create_run(api::CreateRunRequest {
            run: Some(inline_run("", &spec)),
            ..Default::default()
        })
        .await
        .expect("CreateRun with a 5 MiB inline spec")
        .into_inner();
    assert!(run.encoded_len() > 5 << 20);
}

#[tokio::test]
async fn the_message_limit_is_configurable() {
    let server = Server::start_with(&["--grpc-max-message-bytes", "1048576"]);
    let mut grpc = connect(&server).await;
    let spec = padded_spec(2 << 20);
    let error = grpc
        .runs
        .create_run(api::CreateRunRequest {
            run: Some(inline_run("", &spec)),
            ..Default::default()
        })
        .await
        .expect_err("a 2 MiB request is over a 1 MiB limit");
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(
        error.message().contains("limit of 1048576 bytes"),
        "{error:?}"
    );
    // Small calls still work on the same server.
    grpc.runs
        .list_runs(api::ListRunsRequest::default())
        .await
        .expect("ListRuns");
}

// ------------------------------------------------- health, reflection, shutdown

#[tokio::test]
async fn health_reports_every_service_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let server = Server::start();
    let grpc = connect(&server).await;
    let mut health = HealthClient::new(grpc.channel.clone());
    for service in SERVICES.into_iter().chain([""]) {
        let answer = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|error| panic!("health of {service:?}: {error:?}"))
            .into_inner();
        assert_eq!(answer.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_and_describes_the_services() {
    use futures::StreamExt;
    use tonic_reflection::pb::{v1, v1alpha};

    let server = Server::start();
    let grpc = connect(&server).await;
    let mut expected: Vec<String> = SERVICES.iter().map(|name| name.to_string()).collect();
    expected.extend(
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
        .map(String::from),
    );
    expected.sort();

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(grpc.channel.clone());
    let requests = vec![
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "kubeflow.pipelines.backend.api.v2beta1.RunService".into(),
                ),
            ),
        },
    ];
    let mut answers = client
        .server_reflection_info(futures::stream::iter(requests))
        .await
        .expect("reflection v1")
        .into_inner();
    let listed = answers.next().await.expect("a list answer").expect("ok");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("unexpected answer {listed:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected);
    let described = answers.next().await.expect("a file answer").expect("ok");
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        described.message_response
    else {
        panic!("unexpected answer {described:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    let text = String::from_utf8_lossy(&files.file_descriptor_proto[0]).to_string();
    assert!(
        text.contains("run.proto") && text.contains("CreateRun"),
        "{text}"
    );

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(grpc.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = alpha
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let listed = answers.next().await.expect("a list answer").expect("ok");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("unexpected answer {listed:?}");
    };
    assert_eq!(list.service.len(), expected.len());
}

// Several worker threads: the test thread blocks while it waits for the exit,
// and the channel's connection must still answer the server meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_promptly_with_a_client_connected() {
    let mut server = Server::start();
    let mut grpc = connect(&server).await;
    grpc.experiments
        .list_experiments(api::ListExperimentsRequest::default())
        .await
        .expect("ListExperiments");
    let started = std::time::Instant::now();
    let status = server
        .terminate(Duration::from_secs(30))
        .expect("kfpd exits after SIGTERM while a gRPC channel is open");
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert!(
        started.elapsed() < kfpd_server_drain_limit(),
        "an idle, responsive client delayed shutdown by {:?}",
        started.elapsed()
    );
}

/// The server's drain limit (`kfpd_server::DRAIN_LIMIT`; the test crate does
/// not link the server library).
fn kfpd_server_drain_limit() -> Duration {
    Duration::from_secs(15)
}

#[tokio::test]
async fn a_silent_client_cannot_hold_shutdown_forever() {
    let mut server = Server::start();
    let address = server
        .grpc
        .clone()
        .expect("gRPC address")
        .replacen("http://", "", 1);
    // An HTTP/2 client that says hello and then never answers anything, so it
    // never acknowledges the server's shutdown PING.
    let mut silent = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = server
        .terminate(kfpd_server_drain_limit() + Duration::from_secs(15))
        .expect("kfpd exits within its drain limit despite a silent client");
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    drop(silent);
}

#[tokio::test]
async fn grpc_can_be_turned_off() {
    let server = Server::start_with(&["--grpc-addr", "off"]);
    assert!(server.grpc.is_none());
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
}
