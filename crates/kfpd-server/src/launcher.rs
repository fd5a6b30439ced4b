//! `kfpd launcher`: the main process of an Argo task pod (docs/argo.md, "Pod
//! interface"). It asks the API server for the task the driver request started,
//! fetches its input artifacts, runs the user's command, uploads the outputs and the
//! log, and reports the attempt. The command line, ExecutorInput and outputs are
//! resolved and read by `kfpd_core`, as the local engine does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use kfpd_api::kfpd_v1::launcher_service_client::LauncherServiceClient;
use kfpd_api::kfpd_v1::{FinishAttemptRequest, GetTaskRequest, OutputArtifact, TaskExecution};
use kfpd_artifacts::{ArtifactStore, Options as ArtifactOptions};
use kfpd_cluster::token::TokenFile;
use kfpd_core::attempts::{exit_reason, last_line};
use kfpd_core::executor_input::{
    self, resolve_self_references, workspace_artifact_path, JobInfo, Layout,
};
use kfpd_core::outputs::{content_path, read_outputs};
use kfpd_core::{ArtifactRef, Artifacts};
use kfpd_ir::spec::{ComponentOutputsSpec, PipelineContainerSpec};
use serde_json::{Map, Value};

/// Settings of `kfpd launcher`, as the compiled Workflow passes them.
#[derive(clap::Args, Clone, Debug)]
pub struct LauncherArgs {
    /// Copy this `kfpd` executable to PATH and exit (the pod's init container).
    #[arg(long, value_name = "PATH")]
    pub copy: Option<PathBuf>,
    /// The API server's gRPC address, `host:port`.
    #[arg(long, required_unless_present = "copy")]
    pub server: Option<String>,
    /// The KFP run id.
    #[arg(long, required_unless_present = "copy")]
    pub run_id: Option<String>,
    /// The task to run: `root/<task>`, `root/for-loop-2/3/<task>` …
    #[arg(long, required_unless_present = "copy")]
    pub task_path: Option<String>,
    /// Where the task's inputs, outputs and log are kept while it runs.
    #[arg(long, env = "KFPD_WORK_DIR", default_value = "/tmp/kfpd")]
    pub work_dir: PathBuf,
    /// The run's shared workspace (`{{$.workspace_path}}`), mounted in every task
    /// pod when the pipeline has one; without it, a directory of the task's own.
    #[arg(long, env = "KFPD_WORKSPACE")]
    pub workspace: Option<PathBuf>,
    /// The pod's projected service-account token (audience
    /// `pipelines.kubeflow.org`), sent as `authorization: Bearer …` with every
    /// call and read again for each (the kubelet rotates it); a multi-user server
    /// checks `report` on the run for its identity. Upstream's SDK variable.
    /// Without it no identity is sent.
    #[arg(long, env = "KF_PIPELINES_SA_TOKEN_PATH", value_name = "PATH")]
    pub token_path: Option<PathBuf>,
}

/// Why the launcher could not run the task or report it; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot copy the kfpd executable to {path}: {source}")]
    Copy {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot reach the API server's gRPC at {address}: {source} (is the server running, and is --server its gRPC host:port?)")]
    Unreachable {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("the API server refused to {what} ({code:?}): {message}")]
    Refused {
        what: String,
        code: tonic::Code,
        message: String,
    },
    #[error("the artifact store refused: {0}")]
    ObjectStore(String),
    #[error(transparent)]
    Token(#[from] kfpd_cluster::token::TokenError),
    #[error("{0}")]
    Task(String),
}

/// Runs the launcher; returns the exit status the pod should end with.
pub async fn launch(args: &LauncherArgs) -> Result<i32, Error> {
    if let Some(path) = &args.copy {
        copy_self(path)?;
        return Ok(0);
    }
    let (Some(server), Some(run_id), Some(task_path)) =
        (&args.server, &args.run_id, &args.task_path)
    else {
        return Err(Error::Task(
            "--server, --run-id and --task-path are required".to_string(),
        ));
    };
    let address = if server.contains("://") {
        server.clone()
    } else {
        format!("http://{server}")
    };
    let mut client = LauncherServiceClient::connect(address.clone())
        .await
        .map_err(|source| Error::Unreachable {
            address: address.clone(),
            source,
        })?;
    let token = TokenFile::new(args.token_path.clone());
    let task = client
        .get_task(authorized(
            &token,
            GetTaskRequest {
                run_id: run_id.clone(),
                task_path: task_path.clone(),
                // From the template's field refs (docs/argo.md).
                pod_name: std::env::var("KFPD_POD_NAME").unwrap_or_default(),
                pod_namespace: std::env::var("KFPD_NAMESPACE").unwrap_or_default(),
            },
        )?)
        .await
        .map_err(|status| refused(format!("give task {task_path:?} of run {run_id}"), status))?
        .into_inner();
    let store = open_store(&task.artifact_root).await?;
    // Argo's `{{retries}}`: 0 for the first attempt.
    let attempt = std::env::var("KFPD_RETRY_INDEX")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    let work = args
        .work_dir
        .join(&task.task_id)
        .join(format!("attempt-{attempt}"));
    let started_at = now();
    let ran = if task.download_to_workspace {
        import_to_workspace(&task, &store, args.workspace.as_deref(), &work).await
    } else {
        let workspace = args
            .workspace
            .clone()
            .unwrap_or_else(|| work.join("workspace"));
        run_task(&task, run_id, &store, &work, &workspace).await
    };
    let log_path = work.join("main.log");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    // The pod's own log shows the task's output too.
    print!("{log}");
    let (log_uri, log_offset) = store_log(&store, &task, attempt, &work, &log).await;
    let mut report = FinishAttemptRequest {
        run_id: run_id.clone(),
        task_path: task_path.clone(),
        attempt,
        started_at,
        finished_at: now(),
        log_uri,
        log_offset,
        log_length: log.len() as u64,
        ..FinishAttemptRequest::default()
    };
    let exit = match ran {
        Ok(done) => {
            report.command = done.command;
            report.exit_code = done.exit_code;
            match done.outcome {
                Ok((parameters, artifacts)) => {
                    report.succeeded = true;
                    report.parameters_json = Value::Object(parameters).to_string();
                    report.artifacts = artifacts;
                    0
                }
                Err(reason) => {
                    report.error = reason;
                    done.exit_code.filter(|code| *code != 0).unwrap_or(1)
                }
            }
        }
        Err(reason) => {
            report.error = reason;
            1
        }
    };
    if !report.error.is_empty() {
        eprintln!(
            "kfpd launcher: task {:?}: {}",
            task.display_name, report.error
        );
    }
    // Read again: the task may have run longer than the token lives.
    client
        .finish_attempt(authorized(&token, report)?)
        .await
        .map_err(|status| refused(format!("record task {task_path:?} of run {run_id}"), status))?;
    Ok(exit)
}

/// `message` with the pod's token (if it has one) read now.
fn authorized<T>(token: &TokenFile, message: T) -> Result<tonic::Request<T>, Error> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = token.authorization()? {
        let value = value
            .to_str()
            .ok()
            .and_then(|text| tonic::metadata::MetadataValue::try_from(text).ok())
            .ok_or_else(|| {
                Error::Task(
                    "the service-account token holds characters gRPC metadata cannot carry"
                        .to_string(),
                )
            })?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Stores the task's log as the local engine keeps it: one object for all attempts,
/// a later attempt after a `--- kfpd: attempt n of m ---` line. Returns where it is
/// (empty when it could not be stored) and the byte offset this attempt starts at.
async fn store_log(
    store: &ArtifactStore,
    task: &TaskExecution,
    attempt: u32,
    work: &Path,
    log: &str,
) -> (String, u64) {
    let mut whole = String::new();
    if attempt > 1 {
        let earlier = work.join("earlier.log");
        if store.download(&task.log_uri, &earlier).await.is_ok() {
            whole = std::fs::read_to_string(&earlier).unwrap_or_default();
        }
        whole.push_str(&format!(
            "\n--- kfpd: attempt {attempt} of {} ---\n",
            task.max_attempts.max(attempt)
        ));
    }
    let offset = whole.len() as u64;
    whole.push_str(log);
    let combined = work.join("combined.log");
    if let Err(error) = std::fs::write(&combined, &whole) {
        eprintln!(
            "kfpd launcher: cannot write {}: {error}",
            combined.display()
        );
        return (String::new(), 0);
    }
    match store.upload(&combined, &task.log_uri).await {
        Ok(true) => (task.log_uri.clone(), offset),
        Ok(false) => (String::new(), 0),
        Err(error) => {
            eprintln!(
                "kfpd launcher: cannot store the task's log at {}: {error}",
                task.log_uri
            );
            (String::new(), 0)
        }
    }
}

fn refused(what: String, status: tonic::Status) -> Error {
    if status.code() == tonic::Code::Unavailable {
        return Error::Refused {
            what,
            code: status.code(),
            message: format!("{} (is the API server running?)", status.message()),
        };
    }
    Error::Refused {
        what,
        code: status.code(),
        message: status.message().to_string(),
    }
}

/// The artifact store: S3 from the `OBJECTSTORECONFIG_*` variables, else the
/// server's local directory, mounted in the pod at the same path.
async fn open_store(server_root: &str) -> Result<ArtifactStore, Error> {
    let from_env = ArtifactOptions::from_env(&|name| std::env::var(name).ok())
        .map_err(|error| Error::ObjectStore(format!("object store configuration: {error}")))?;
    let options = match from_env {
        Some(options) => options,
        None => match server_root.strip_prefix("file://") {
            Some(path) => ArtifactOptions::Local {
                root: PathBuf::from(path),
            },
            None => {
                return Err(Error::ObjectStore(format!(
                    "the server keeps artifacts at {server_root}; set OBJECTSTORECONFIG_HOST (and the other OBJECTSTORECONFIG_* variables) for the pod"
                )))
            }
        },
    };
    // The pod's keys may reach its namespace's prefix only (multi-user mode), and the
    // API server has made sure of the bucket.
    ArtifactStore::open_trusting_bucket(options)
        .await
        .map_err(|error| Error::ObjectStore(error.to_string()))
}

fn copy_self(path: &Path) -> Result<(), Error> {
    let failed = |source| Error::Copy {
        path: path.display().to_string(),
        source,
    };
    let exe = std::env::current_exe().map_err(failed)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    std::fs::copy(&exe, path).map_err(failed)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(failed)?;
    Ok(())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// What one attempt did: the command it ran, its exit code, and its outputs or
/// why it failed.
struct Done {
    command: Vec<String>,
    exit_code: Option<i32>,
    outcome: Result<(Map<String, Value>, Vec<OutputArtifact>), String>,
}

/// An importer's pod: copies the artifact it imported into the run's workspace,
/// where the tasks after it read it.
async fn import_to_workspace(
    task: &TaskExecution,
    store: &ArtifactStore,
    workspace: Option<&Path>,
    work: &Path,
) -> Result<Done, String> {
    let Some(workspace) = workspace else {
        return Err(format!(
            "importer {:?} copies its artifact into the workspace, but the pod has none (KFPD_WORKSPACE is not set: give the pipeline a workspace with pipelineConfig.workspace)",
            task.display_name
        ));
    };
    let (artifacts, _) = input_artifacts(&task.artifacts_json)
        .map_err(|error| format!("the server's artifacts are not valid: {error}"))?;
    std::fs::create_dir_all(work)
        .map_err(|error| format!("cannot create {}: {error}", work.display()))?;
    let mut log = String::new();
    for artifact in artifacts.values().flatten() {
        let local = workspace_artifact_path(workspace, &artifact.uri)?;
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        store
            .download(&artifact.uri, &local)
            .await
            .map_err(|error| format!("cannot copy {} into the workspace: {error}", artifact.uri))?;
        log.push_str(&format!("copied {} to {}\n", artifact.uri, local.display()));
    }
    let log_path = work.join("main.log");
    std::fs::write(&log_path, log)
        .map_err(|error| format!("cannot write {}: {error}", log_path.display()))?;
    Ok(Done {
        command: Vec::new(),
        exit_code: Some(0),
        outcome: Ok((Map::new(), Vec::new())),
    })
}

/// Prepares, runs and collects the task; `Err` when it could not even start.
async fn run_task(
    task: &TaskExecution,
    run_id: &str,
    store: &ArtifactStore,
    work: &Path,
    workspace: &Path,
) -> Result<Done, String> {
    let bad = |field: &str, error: serde_json::Error| {
        format!("the server's {field} is not valid: {error}")
    };
    let parameters: Map<String, Value> =
        serde_json::from_str(&task.parameters_json).map_err(|error| bad("parameters", error))?;
    let (artifacts, in_workspace) =
        input_artifacts(&task.artifacts_json).map_err(|error| bad("artifacts", error))?;
    let container: PipelineContainerSpec =
        serde_json::from_str(&task.container_json).map_err(|error| bad("container", error))?;
    let outputs: ComponentOutputsSpec =
        serde_json::from_str(&task.outputs_json).map_err(|error| bad("outputs", error))?;
    let layout = Layout {
        inputs_dir: work.join("inputs"),
        parameter_dir: work.join("outputs").join("parameters"),
        artifact_dir: work.join("outputs").join("artifacts"),
        output_file: work.join("outputs").join("output_metadata.json"),
    };
    for dir in [work, &layout.parameter_dir, &layout.artifact_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    }
    let uris: &BTreeMap<String, String> = &task.output_uris.clone().into_iter().collect();
    let mut prepared =
        executor_input::prepare(&parameters, &artifacts, &outputs, &layout, |name| {
            uris.get(name).cloned().unwrap_or_default()
        });
    // Artifacts an importer copied into the workspace are read there.
    for (name, list) in &artifacts {
        for (index, artifact) in list.iter().enumerate() {
            if !in_workspace.contains(&artifact.id) {
                continue;
            }
            let local = workspace_artifact_path(workspace, &artifact.uri)?;
            if let Some(runtime) = prepared
                .input
                .artifacts
                .get_mut(name)
                .and_then(|runtime| runtime.get_mut(index))
            {
                runtime.uri = local.display().to_string();
            }
            prepared.downloads.retain(|download| {
                !(download.input == *name && download.artifact_id == artifact.id)
            });
        }
    }
    for download in &prepared.downloads {
        store
            .download(&download.uri, &download.local)
            .await
            .map_err(|error| format!("cannot fetch input artifact {}: {error}", download.uri))?;
    }
    let mut input = prepared.input;
    let job = JobInfo {
        job_name: task.job_name.clone(),
        job_resource_name: task.job_resource_name.clone(),
        job_uuid: run_id.to_string(),
        task_name: task.task_name.clone(),
        task_uuid: task.task_id.clone(),
        create_time: task.job_create_time.clone(),
        schedule_time: task.job_create_time.clone(),
        pipeline_root: task.pipeline_root.clone(),
        workspace_path: workspace.display().to_string(),
    };
    resolve_self_references(&mut input.parameters, &job)?;
    let command = executor_input::resolve_container(&container, &input, &job)?;
    let log_path = work.join("main.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
    // stdout and stderr share one pipe, so their lines keep their order; what
    // comes through goes to the log file and to the pod's own output, where the
    // Kubernetes log API shows it while the task runs.
    let (reader, writer) =
        rustix::pipe::pipe().map_err(|error| format!("cannot make the log pipe: {error}"))?;
    let writer_err = writer
        .try_clone()
        .map_err(|error| format!("cannot make the log pipe: {error}"))?;
    let mut process = tokio::process::Command::new(&command.argv[0]);
    process
        .args(&command.argv[1..])
        .env("PYTHONUNBUFFERED", "1")
        .envs(command.env.iter().map(|(name, value)| (name, value)))
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer_err));
    let spawned = process.spawn();
    // The command holds the pipe's writing end: dropped, the copy ends with the process.
    drop(process);
    let copier = std::thread::spawn(move || copy_log(std::fs::File::from(reader), log));
    let status = match spawned {
        Ok(mut child) => child.wait().await,
        Err(error) => Err(error),
    };
    // A background process the command left behind may hold the pipe open: its
    // output after this point is not waited for.
    let copied = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::task::spawn_blocking(move || copier.join()),
    )
    .await;
    let status = match status {
        Ok(status) => status,
        Err(error) => {
            return Ok(Done {
                command: command.argv.clone(),
                exit_code: None,
                outcome: Err(format!("cannot start {:?}: {error}", command.argv[0])),
            })
        }
    };
    if let Ok(Ok(Ok(Err(error)))) = copied {
        return Err(format!("cannot write {}: {error}", log_path.display()));
    }
    use std::os::unix::process::ExitStatusExt;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let final_line = last_line(&text);
        return Ok(Done {
            command: command.argv,
            exit_code: status.code(),
            outcome: Err(exit_reason(
                status.code(),
                status.signal(),
                final_line.as_deref(),
            )),
        });
    }
    let outcome = collect(&outputs, &input, &prepared.destinations, store).await;
    Ok(Done {
        command: command.argv,
        exit_code: status.code(),
        outcome,
    })
}

/// Copies the task's output to its log file and to this process's stdout.
fn copy_log(mut from: std::fs::File, mut log: std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut buffer = [0u8; 16 * 1024];
    let mut stdout = std::io::stdout();
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => return log.flush(),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        log.write_all(&buffer[..read])?;
        // The pod's output is a convenience; a closed stdout must not fail the task.
        let _ = stdout
            .write_all(&buffer[..read])
            .and_then(|()| stdout.flush());
    }
}

/// Reads the outputs back and uploads the output artifacts.
async fn collect(
    outputs: &ComponentOutputsSpec,
    input: &executor_input::ExecutorInput,
    destinations: &BTreeMap<String, String>,
    store: &ArtifactStore,
) -> Result<(Map<String, Value>, Vec<OutputArtifact>), String> {
    let read = read_outputs(
        outputs,
        &input.output_file,
        &input.output_parameters,
        |path| std::fs::read_to_string(path).ok(),
    )?;
    let mut artifacts = Vec::new();
    for (name, destination) in destinations {
        let Some(local) = input.output_artifacts.get(name) else {
            continue;
        };
        let reported = read.artifacts.get(name);
        let source = content_path(&local.uri, reported);
        store
            .upload(&source, destination)
            .await
            .map_err(|error| format!("cannot store output artifact {name:?}: {error}"))?;
        let metadata = reported.map(|r| r.metadata.clone()).unwrap_or_default();
        artifacts.push(OutputArtifact {
            name: name.clone(),
            uri: destination.clone(),
            metadata_json: Value::Object(metadata).to_string(),
        });
    }
    Ok((read.parameters, artifacts))
}

/// Input artifacts as the server lists them, and the ids of those in the workspace.
fn input_artifacts(json: &str) -> Result<(Artifacts, BTreeSet<i64>), serde_json::Error> {
    let by_name: BTreeMap<String, Vec<Value>> = serde_json::from_str(json)?;
    let in_workspace = by_name
        .values()
        .flatten()
        .filter(|item| item["in_workspace"] == Value::Bool(true))
        .filter_map(|item| item["id"].as_i64())
        .collect();
    let artifacts = by_name
        .into_iter()
        .map(|(name, list)| {
            let refs = list
                .iter()
                .map(|item| ArtifactRef {
                    id: item["id"].as_i64().unwrap_or_default(),
                    name: item["name"].as_str().unwrap_or_default().to_string(),
                    uri: item["uri"].as_str().unwrap_or_default().to_string(),
                    schema_title: item["schema_title"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    schema_version: item["schema_version"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    metadata: item["metadata"].as_object().cloned().unwrap_or_default(),
                })
                .collect();
            (name, refs)
        })
        .collect();
    Ok((artifacts, in_workspace))
}
