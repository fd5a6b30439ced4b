//! Running one container or importer task: inputs downloaded, the process run in
//! its image's environment, outputs read back and artifacts uploaded and recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kfpd_artifacts::ArtifactStore;
use kfpd_ir::spec::{
    ComponentSpec, ExecutorKind, ExecutorSpec, ImporterSpec, PipelineContainerSpec,
    PipelineTaskSpec, RetryPolicy,
};
use kfpd_runtime::ProcessSpec;
use kfpd_store::{Artifact, ArtifactLink, Direction, TaskKind, TaskState, TaskStateChange};
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::cache;
use crate::dag::{job_resource_name, ArtifactRef, TaskResult};
use crate::engine::RunContext;
use crate::executor_input::{
    resolve_command, resolve_self_references, substitute, ExecutorInput, JobInfo, RuntimeArtifact,
};
use crate::outputs::read_outputs;
use crate::records::{now, TaskRecord};
use crate::warm;

/// A task ready to run, with its inputs resolved.
pub(crate) struct TaskCall {
    pub name: String,
    pub display_name: String,
    pub path: String,
    pub parent_id: String,
    pub task: PipelineTaskSpec,
    pub component: ComponentSpec,
    pub parameters: Map<String, Value>,
    pub artifacts: BTreeMap<String, Vec<ArtifactRef>>,
}

pub(crate) async fn run_executor(
    context: Arc<RunContext>,
    call: TaskCall,
    executor: ExecutorSpec,
) -> TaskResult {
    if let Some(reused) = reuse_previous(&context, &call).await {
        return reused;
    }
    let cache_key = match executor.kind() {
        Some(ExecutorKind::Container(container)) => cache::key_for(&context, &call, container),
        _ => None,
    };
    if let Some(key) = &cache_key {
        if let Some(hit) = cache::find(&context, key, &call.display_name).await {
            return cache::reuse(&context, &call, key, hit).await;
        }
    }
    let kind = match executor.kind() {
        Some(ExecutorKind::Importer(_)) => TaskKind::Importer,
        _ => TaskKind::Runtime,
    };
    // A container's row is written when its process is about to start, an
    // importer's only when it ends.
    let mut record = TaskRecord::begin(
        &context,
        &call.parent_id,
        &call.path,
        kind,
        &call.name,
        &call.display_name,
        -1,
        &call.parameters,
    );
    // Written with the row, but only a SUCCEEDED row with a fingerprint is a cache entry.
    if let Some(key) = &cache_key {
        record.task.fingerprint = key.fingerprint.clone();
        record.task.cache_scope = key.scope.clone();
    }
    let result = match executor.kind() {
        Some(ExecutorKind::Container(container)) => {
            run_container(&context, &call, container, &mut record).await
        }
        Some(ExecutorKind::Importer(importer)) => {
            run_importer(&context, &call, importer, &record).await
        }
        Some(ExecutorKind::Resolver(_)) => {
            Err("resolver executors are not supported by kfpd".to_string())
        }
        Some(ExecutorKind::CustomJob(_)) => {
            Err("custom job executors (Vertex AI) are not supported by kfpd".to_string())
        }
        None => Err("the executor has no implementation".to_string()),
    };
    match result {
        Ok(result) => {
            record.finish(
                &context,
                result.state,
                result.error.clone(),
                &result.parameters,
            );
            if let (TaskState::Failed, Some(error)) = (result.state, &result.error) {
                context.record_failure(error);
            }
            result
        }
        Err(error) => {
            let message = format!("task {:?}: {error}", call.display_name);
            context.record_failure(&message);
            record.finish(
                &context,
                TaskState::Failed,
                Some(message.clone()),
                &Map::new(),
            );
            TaskResult::failed(message)
        }
    }
}

/// On a retry, a task that already succeeded keeps its outputs.
async fn reuse_previous(context: &RunContext, call: &TaskCall) -> Option<TaskResult> {
    let previous = context.previous.get(&call.path)?;
    if !previous.state.is_done() {
        return None;
    }
    let parameters: Map<String, Value> = serde_json::from_str(&previous.outputs).ok()?;
    // Output links, not producers: a cached task's outputs were made by another task.
    let links = context
        .engine
        .store
        .run_artifact_links(&context.run.id)
        .await
        .ok()?;
    let mut artifacts: BTreeMap<String, Vec<ArtifactRef>> = BTreeMap::new();
    for link in links
        .iter()
        .filter(|link| link.task_id == previous.id && link.direction == Direction::Output)
    {
        let artifact = context
            .engine
            .store
            .get_artifact(link.artifact_id)
            .await
            .ok()?;
        artifacts
            .entry(link.key.clone())
            .or_default()
            .push(artifact_ref(&artifact));
    }
    Some(TaskResult {
        state: previous.state,
        error: None,
        parameters,
        artifacts,
    })
}

pub(crate) fn artifact_ref(artifact: &Artifact) -> ArtifactRef {
    ArtifactRef {
        id: artifact.id,
        name: artifact.name.clone(),
        uri: artifact.uri.clone(),
        schema_title: artifact.schema_title.clone(),
        schema_version: artifact.schema_version.clone(),
        metadata: serde_json::from_str(&artifact.metadata).unwrap_or_default(),
    }
}

fn new_artifact_id() -> i64 {
    // JS-safe positive integers: the API's artifact ids are int64 and UIs parse them as numbers.
    rand::thread_rng().gen_range(1..(1_i64 << 53))
}

fn job_info(context: &RunContext, call: &TaskCall, task_id: &str, workspace: &Path) -> JobInfo {
    let run = &context.run;
    let created = chrono::DateTime::from_timestamp(run.created_at, 0)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    JobInfo {
        job_name: run.display_name.clone(),
        job_resource_name: job_resource_name(context),
        job_uuid: run.id.clone(),
        task_name: call.name.clone(),
        task_uuid: task_id.to_string(),
        create_time: created.clone(),
        schedule_time: created,
        pipeline_root: context.pipeline_root.clone(),
        workspace_path: workspace.display().to_string(),
    }
}

fn local_name(uri: &str) -> String {
    let last = uri
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("artifact");
    if last.is_empty() || last == ".." || last == "." {
        "artifact".to_string()
    } else {
        last.to_string()
    }
}

async fn run_container(
    context: &Arc<RunContext>,
    call: &TaskCall,
    container: &PipelineContainerSpec,
    record: &mut TaskRecord,
) -> Result<TaskResult, String> {
    let engine = &context.engine;
    let task_id = record.task.id.clone();
    let work = context.work_dir(&task_id);
    let inputs_dir = work.join("inputs");
    let outputs_dir = work.join("outputs");
    let workspace = context.workspace_dir();
    let outputs = &call.component.output_definitions;
    let parameter_dir = outputs_dir.join("parameters");
    let artifact_dir = outputs_dir.join("artifacts");
    // Only what this task uses: most tasks need their directory alone (downloads
    // make their own directories, the SDK makes `outputs/` when it writes its
    // output file, `TMPDIR` is the run's). Every inode costs: on a filesystem that
    // has seen many files come and go, finding a free one dominates a task's cost.
    let mut dirs = vec![work.clone()];
    if !outputs.parameters.is_empty() {
        dirs.push(parameter_dir.clone());
    }
    if !outputs.artifacts.is_empty() {
        dirs.push(artifact_dir.clone());
    }
    make_dirs(dirs).await?;
    // Inputs: every artifact downloaded to a local path, which is the URI the task sees.
    let mut input = ExecutorInput {
        parameters: call.parameters.clone(),
        ..ExecutorInput::default()
    };
    for (name, list) in &call.artifacts {
        let mut seen = Vec::with_capacity(list.len());
        for (index, artifact) in list.iter().enumerate() {
            let local = inputs_dir
                .join(name)
                .join(index.to_string())
                .join(local_name(&artifact.uri));
            download(&engine.artifacts, &artifact.uri, &local).await?;
            seen.push(RuntimeArtifact {
                name: artifact.name.clone(),
                uri: local.display().to_string(),
                schema_title: artifact.schema_title.clone(),
                schema_version: artifact.schema_version.clone(),
                metadata: artifact.metadata.clone(),
            });
            let link = ArtifactLink {
                task_id: task_id.clone(),
                artifact_id: artifact.id,
                direction: Direction::Input,
                key: name.clone(),
            };
            if let Err(error) = engine.store.link_artifact(&context.run.id, &link).await {
                tracing::warn!(%error, "cannot record artifact input");
            }
        }
        input.artifacts.insert(name.clone(), seen);
    }

    // Outputs: files for parameters, local paths for artifacts, their final URIs.
    for name in outputs.parameters.keys() {
        let file = parameter_dir.join(name);
        input
            .output_parameters
            .insert(name.clone(), file.display().to_string());
    }
    let mut destinations: BTreeMap<String, String> = BTreeMap::new();
    for (name, spec) in &outputs.artifacts {
        let local = artifact_dir.join(name);
        let uri = ArtifactStore::output_uri(
            &context.pipeline_root,
            &context.pipeline_name,
            &context.run.id,
            &call.name,
            &task_id,
            name,
        );
        destinations.insert(name.clone(), uri);
        input.output_artifacts.insert(
            name.clone(),
            RuntimeArtifact {
                name: name.clone(),
                uri: local.display().to_string(),
                schema_title: spec
                    .artifact_type
                    .schema_title
                    .clone()
                    .unwrap_or_else(|| "system.Artifact".into()),
                schema_version: spec.artifact_type.schema_version.clone(),
                metadata: spec.metadata.clone().unwrap_or_default(),
            },
        );
    }
    let output_file = outputs_dir.join("output_metadata.json");
    input.output_file = output_file.display().to_string();

    let job = job_info(context, call, &task_id, &workspace);
    resolve_self_references(&mut input.parameters, &job)?;
    let mut items = container.command.clone();
    items.extend(container.args.iter().cloned());
    let mut argv = resolve_command(&items, &input, &job)?;
    if argv.is_empty() {
        return Err("the container has no command".to_string());
    }
    let installed_kfp = replace_kfp_pin(&mut argv, engine.options.kfp_package.as_deref());
    let image = environment_key(&container.image, installed_kfp.as_deref());
    let whole = input.to_json().to_string();
    let mut env = Vec::with_capacity(container.env.len() + 2);
    for variable in &container.env {
        env.push((
            variable.name.clone(),
            substitute(&variable.value, &input, &job, &whole)?,
        ));
    }
    env.push((
        "TMPDIR".to_string(),
        context.temp_dir().display().to_string(),
    ));
    env.push((
        "HOME".to_string(),
        std::env::var("HOME").unwrap_or_else(|_| work.display().to_string()),
    ));

    record.set_detail("image", json!(container.image));
    record.set_detail("command", json!(argv));
    let log_path = work.join("main.log");
    record.set_detail("log", json!(log_path.display().to_string()));

    let plan = RetryPlan::of(call.task.retry_policy.as_ref());
    let max_attempts = plan.max_retries + 1;
    let first_start = Instant::now();
    let log_uri = log_object_uri(&engine.artifacts, &context.run.id, &task_id);
    let mut attempts: Vec<Value> = Vec::new();
    let mut last_upload: Option<tokio::sync::oneshot::Receiver<()>> = None;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            // A fresh start, as a retried pod gets: nothing left from the last attempt.
            reset_outputs(&outputs_dir, &input).await?;
            let header = format!("\n--- kfpd: attempt {attempt} of {max_attempts} ---\n");
            append_log(&log_path, &header).await;
            record.task.state = TaskState::Running;
            record.task.state_history.push(TaskStateChange {
                time: now(),
                state: TaskState::Running,
            });
        }
        let started_at = now();
        let log_offset = log_size(&log_path).unwrap_or(0);
        record.task.attempts += 1;
        record.set_detail("attempt", json!(attempt));
        attempts.push(json!({
            "attempt": attempt,
            "state": "RUNNING",
            "started_at": started_at,
            "log_offset": log_offset,
        }));
        record.set_detail("attempts", Value::Array(attempts.clone()));
        // The one write waited for: the row says RUNNING before the process runs.
        record.write(context).await?;
        let spec = ProcessSpec {
            image: image.clone(),
            argv: argv.clone(),
            env: env.clone(),
            cwd: work.clone(),
            log_path: log_path.clone(),
        };
        let outcome = run_attempt(
            context,
            call,
            spec,
            &input,
            &destinations,
            &output_file,
            &task_id,
            &log_path,
        )
        .await;
        if let Some(log_end) = log_size(&log_path) {
            if let Some(entry) = attempts.last_mut() {
                entry["log_length"] = json!(log_end.saturating_sub(log_offset));
            }
            last_upload = Some(upload_log(context, &log_path, &log_uri, last_upload.take()));
            record.set_detail("log_uri", json!(log_uri));
        }
        let (state, error) = match &outcome {
            Attempt::Canceled => ("CANCELED", None),
            Attempt::Succeeded(_) => ("SUCCEEDED", None),
            Attempt::Failed { reason, .. } => ("FAILED", Some(reason.clone())),
        };
        if let Some(Value::Object(entry)) = attempts.last_mut() {
            entry.insert("finished_at".into(), json!(now()));
            entry.insert("state".into(), json!(state));
            if let Some(error) = error {
                entry.insert("error".into(), json!(error));
            }
        }
        record.set_detail("attempts", Value::Array(attempts.clone()));
        let failure = match outcome {
            Attempt::Canceled => return Ok(TaskResult::canceled()),
            Attempt::Succeeded(result) => return Ok(result),
            Attempt::Failed { reason, exit_code } => {
                record.set_detail("exit_code", json!(exit_code));
                reason
            }
        };
        let Some(wait) = plan.wait_before_retry(attempt, first_start.elapsed()) else {
            let tried = if attempt > 1 {
                format!(" (attempt {attempt} of {max_attempts})")
            } else {
                String::new()
            };
            return Ok(TaskResult::failed(format!(
                "task {:?}{tried}: {failure}",
                call.display_name
            )));
        };
        tracing::info!(run = %context.run.id, task = %call.name, attempt, wait_secs = wait.as_secs_f64(), "task failed, retrying");
        record.task.state = TaskState::Failed;
        record.task.state_history.push(TaskStateChange {
            time: now(),
            state: TaskState::Failed,
        });
        record.save(context);
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {},
                _ = context.cancel.cancelled() => return Ok(TaskResult::canceled()),
            }
        }
    }
}

/// Where a task's log is kept once its process ended: beside the artifacts, in
/// the spirit of upstream's archived pod logs (`<bucket>/artifacts/<workflow>/<pod>/main.log`).
fn log_object_uri(store: &ArtifactStore, run_id: &str, task_id: &str) -> String {
    format!(
        "{}/logs/{run_id}/{task_id}/main.log",
        store.default_root().trim_end_matches('/')
    )
}

/// Copies the log as it is now to `uri` beside the run (the run ends after it),
/// after the previous upload of the same log; returns what the next one waits for.
fn upload_log(
    context: &RunContext,
    log_path: &Path,
    uri: &str,
    after: Option<tokio::sync::oneshot::Receiver<()>>,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let store = context.engine.artifacts.clone();
    let run_id = context.run.id.clone();
    let log_path = log_path.to_path_buf();
    let uri = uri.to_string();
    context.upload_log(async move {
        if let Some(after) = after {
            let _ = after.await;
        }
        if let Err(error) = store.upload(&log_path, &uri).await {
            tracing::warn!(run = %run_id, %uri, %error, "cannot store a task log");
        }
        let _ = done.send(());
    });
    finished
}

/// The log's size in bytes, `None` when there is none. A single `stat` of a local
/// file, not worth a trip to the blocking pool.
fn log_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|meta| meta.len())
}

/// Creates directories in one trip to the blocking pool.
async fn make_dirs(dirs: Vec<PathBuf>) -> Result<(), String> {
    let made = tokio::task::spawn_blocking(move || {
        for dir in &dirs {
            std::fs::create_dir_all(dir)
                .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        }
        Ok(())
    })
    .await;
    made.unwrap_or_else(|error| Err(format!("cannot create task directories: {error}")))
}

/// How one attempt of a container task ended.
enum Attempt {
    Succeeded(TaskResult),
    Failed {
        reason: String,
        exit_code: Option<i32>,
    },
    Canceled,
}

/// Runs the process once and, if it exits 0, reads and stores its outputs. Anything
/// that goes wrong fails the attempt, which a retry policy may repeat (upstream's
/// launcher fails its pod the same way, and Argo retries the pod).
#[allow(clippy::too_many_arguments)]
async fn run_attempt(
    context: &Arc<RunContext>,
    call: &TaskCall,
    spec: ProcessSpec,
    input: &ExecutorInput,
    destinations: &BTreeMap<String, String>,
    output_file: &Path,
    task_id: &str,
    log_path: &Path,
) -> Attempt {
    let engine = &context.engine;
    let permit = tokio::select! {
        permit = engine.slots.clone().acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_) => return Attempt::Failed { reason: "the engine is shutting down".into(), exit_code: None },
        },
        _ = context.cancel.cancelled() => return Attempt::Canceled,
    };
    let exit = run_process(context, spec).await;
    drop(permit);
    let exit = match exit {
        Ok(exit) => exit,
        Err(reason) => {
            return Attempt::Failed {
                reason,
                exit_code: None,
            }
        }
    };
    if exit.canceled {
        return Attempt::Canceled;
    }
    if !exit.success() {
        let reason = match (exit.code, exit.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "unknown exit".to_string(),
        };
        let reason = match last_log_line(log_path).await {
            Some(line) => format!("failed with {reason}: {line}"),
            None => format!("failed with {reason}"),
        };
        return Attempt::Failed {
            reason,
            exit_code: exit.code,
        };
    }
    match collect_outputs(context, call, input, destinations, output_file, task_id).await {
        Ok(result) => Attempt::Succeeded(result),
        Err(reason) => Attempt::Failed {
            reason,
            exit_code: exit.code,
        },
    }
}

/// How a task's process ended, whichever way it ran.
struct Ended {
    code: Option<i32>,
    signal: Option<i32>,
    canceled: bool,
}

impl Ended {
    fn success(&self) -> bool {
        !self.canceled && self.code == Some(0)
    }
}

impl From<kfpd_runtime::Exit> for Ended {
    fn from(exit: kfpd_runtime::Exit) -> Ended {
        Ended {
            code: exit.code,
            signal: exit.signal,
            canceled: exit.canceled,
        }
    }
}

/// Runs the task's command: a lightweight Python component in its environment's
/// warm interpreter (after its pip preamble ran as usual), anything else — or a
/// lightweight task the warm interpreter could not take — as its own process.
async fn run_process(context: &RunContext, spec: ProcessSpec) -> Result<Ended, String> {
    let runtime = &context.engine.runtime;
    let cancel = &context.cancel;
    let lightweight = warm::allowed(&spec.env)
        .then(|| warm::recognize(&spec.argv))
        .flatten();
    let Some(call) = lightweight else {
        return runtime
            .run(spec, cancel.clone())
            .await
            .map(Ended::from)
            .map_err(|error| error.to_string());
    };
    let preamble = ProcessSpec {
        argv: call.preamble.clone(),
        ..spec.clone()
    };
    let installed = runtime
        .run(preamble, cancel.clone())
        .await
        .map_err(|error| error.to_string())?;
    if !installed.success() {
        return Ok(Ended::from(installed));
    }
    let environment = runtime
        .environment(&spec.image)
        .await
        .map_err(|error| error.to_string())?;
    let task = warm::WarmTask {
        cwd: &spec.cwd,
        log: &spec.log_path,
        env: &spec.env,
        call: &call,
    };
    match warm::run(&environment, task, cancel).await {
        Ok(exit) => Ok(Ended {
            code: exit.code,
            signal: exit.signal,
            canceled: exit.canceled,
        }),
        Err(warm::WarmError::NotStarted(reason)) => {
            tracing::debug!(run = %context.run.id, %reason, "warm python not used");
            runtime
                .run(spec, cancel.clone())
                .await
                .map(Ended::from)
                .map_err(|error| error.to_string())
        }
        Err(warm::WarmError::Lost(reason)) => Err(reason),
    }
}

/// Reads what a successful process produced, uploads its output artifacts and
/// records them.
async fn collect_outputs(
    context: &Arc<RunContext>,
    call: &TaskCall,
    input: &ExecutorInput,
    destinations: &BTreeMap<String, String>,
    output_file: &Path,
    task_id: &str,
) -> Result<TaskResult, String> {
    let engine = &context.engine;
    let outputs = read_outputs(
        &call.component.output_definitions,
        output_file,
        &input.output_parameters,
    )?;
    let mut artifacts = BTreeMap::new();
    for (name, destination) in destinations {
        let Some(local) = input.output_artifacts.get(name) else {
            continue;
        };
        let reported = outputs.artifacts.get(name);
        let source = content_path(&local.uri, reported);
        let uploaded = engine
            .artifacts
            .upload(&source, destination)
            .await
            .map_err(|error| format!("cannot store output artifact {name:?}: {error}"))?;
        if !uploaded {
            tracing::warn!(run = %context.run.id, task = %call.name, artifact = %name, path = %source.display(), "task wrote no file for its output artifact");
        }
        let mut metadata = local.metadata.clone();
        if let Some(reported) = reported {
            metadata.extend(reported.metadata.clone());
        }
        let artifact = Artifact {
            id: new_artifact_id(),
            run_id: context.run.id.clone(),
            producer_task_id: task_id.to_string(),
            output_key: name.clone(),
            name: name.clone(),
            uri: destination.clone(),
            schema_title: local.schema_title.clone(),
            schema_version: local.schema_version.clone(),
            metadata: Value::Object(metadata).to_string(),
            created_at: now(),
        };
        engine
            .store
            .create_artifact(&artifact)
            .await
            .map_err(|error| format!("cannot record output artifact {name:?}: {error}"))?;
        artifacts.insert(name.clone(), vec![artifact_ref(&artifact)]);
    }
    Ok(TaskResult {
        state: TaskState::Succeeded,
        error: None,
        parameters: outputs.parameters,
        artifacts,
    })
}

/// Empties the outputs directory and makes again the directories a task writes into.
async fn reset_outputs(outputs_dir: &Path, input: &ExecutorInput) -> Result<(), String> {
    if let Err(error) = tokio::fs::remove_dir_all(outputs_dir).await {
        if error.kind() != std::io::ErrorKind::NotFound {
            return Err(format!("cannot clear {}: {error}", outputs_dir.display()));
        }
    }
    let mut dirs = Vec::new();
    if !input.output_parameters.is_empty() {
        dirs.push(outputs_dir.join("parameters"));
    }
    for artifact in input.output_artifacts.values() {
        if let Some(parent) = Path::new(&artifact.uri).parent() {
            dirs.push(parent.to_path_buf());
        }
    }
    for dir in dirs {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    }
    Ok(())
}

/// Appends to the log and returns once the bytes are in the file (a tokio file
/// would still be writing them when `write_all` returns), so the next attempt's
/// output and its recorded offset come after them.
async fn append_log(path: &Path, text: &str) {
    use tokio::io::AsyncWriteExt;
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await;
    if let Ok(mut file) = file {
        if file.write_all(text.as_bytes()).await.is_ok() {
            let _ = file.flush().await;
        }
    }
}

/// A task's retry policy with upstream's defaults, applied as Argo's
/// `retryStrategy` does: before retry `n` wait `backoff * factor^(n-1)`, and retry
/// only while the wait ends within `max duration` of the first attempt's start.
#[derive(Clone, Debug, PartialEq)]
struct RetryPlan {
    max_retries: u32,
    backoff: Duration,
    factor: f64,
    max_duration: Duration,
}

impl RetryPlan {
    /// Backoff factor when the policy sets none (the IR's documented default).
    const DEFAULT_FACTOR: f64 = 2.0;
    /// Limit when the policy sets none (the IR's documented default, 1 h).
    const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(3600);

    fn of(policy: Option<&RetryPolicy>) -> RetryPlan {
        let Some(policy) = policy else {
            return RetryPlan {
                max_retries: 0,
                backoff: Duration::ZERO,
                factor: Self::DEFAULT_FACTOR,
                max_duration: Self::DEFAULT_MAX_DURATION,
            };
        };
        let seconds = |text: &Option<String>| {
            text.as_deref()
                .and_then(kfpd_ir::spec::parse_duration_secs)
                .filter(|secs| *secs >= 0.0)
                .map(Duration::from_secs_f64)
        };
        RetryPlan {
            max_retries: u32::try_from(policy.max_retry_count).unwrap_or(0),
            backoff: seconds(&policy.backoff_duration).unwrap_or(Duration::ZERO),
            factor: policy
                .backoff_factor
                .filter(|factor| *factor > 0.0)
                .unwrap_or(Self::DEFAULT_FACTOR),
            max_duration: seconds(&policy.backoff_max_duration)
                .filter(|limit| !limit.is_zero())
                .unwrap_or(Self::DEFAULT_MAX_DURATION),
        }
    }

    /// How long to wait before retrying after failed attempt `attempt` (1-based),
    /// `elapsed` after the first attempt started; `None` when there is no retry left.
    fn wait_before_retry(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt > self.max_retries {
            return None;
        }
        let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
        let wait = self.backoff.as_secs_f64() * self.factor.powi(exponent);
        let wait = Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX);
        let deadline_passed = elapsed
            .checked_add(wait)
            .is_none_or(|end| end > self.max_duration);
        if deadline_passed {
            return None;
        }
        Some(wait)
    }
}

/// Where a task left an output artifact's content: its `set_path` location, the
/// local path it reported (pythonic artifacts), or the path it was given.
fn content_path(provisioned: &str, reported: Option<&crate::outputs::ReportedArtifact>) -> PathBuf {
    let Some(reported) = reported else {
        return PathBuf::from(provisioned);
    };
    if let Some(custom) = &reported.custom_path {
        return PathBuf::from(custom);
    }
    match reported.uri.as_deref() {
        Some(uri) if uri.starts_with('/') => PathBuf::from(uri),
        Some(uri) if uri.starts_with("file://") => PathBuf::from(uri.trim_start_matches("file://")),
        _ => PathBuf::from(provisioned),
    }
}

/// The environment a container runs in: its image, and the kfp its command
/// installs, so components pinning different kfp versions never share (and
/// overwrite) one environment.
fn environment_key(image: &str, installed_kfp: Option<&str>) -> String {
    match installed_kfp {
        Some(requirement) => format!("{image}+{requirement}"),
        None => image.to_string(),
    }
}

/// The SDK's pin in a lightweight component's pip preamble, always single-quoted:
/// `'kfp==2.14.3'`.
const KFP_PIN: &str = "'kfp==";

/// Finds the `kfp==X` requirement the command installs and, with `replacement`,
/// puts that requirement in its place. Returns what gets installed.
fn replace_kfp_pin(argv: &mut [String], replacement: Option<&str>) -> Option<String> {
    for item in argv.iter_mut() {
        let Some(start) = item.find(KFP_PIN) else {
            continue;
        };
        let rest = &item[start + 1..];
        let Some(length) = rest.find('\'') else {
            continue;
        };
        let pinned = rest[..length].to_string();
        let Some(replacement) = replacement else {
            return Some(pinned);
        };
        // Quoted as the SDK quotes it; the option was checked to hold no quote.
        let quoted = format!("'{replacement}'");
        item.replace_range(start..start + length + 2, &quoted);
        return Some(replacement.to_string());
    }
    None
}

async fn download(store: &ArtifactStore, uri: &str, local: &Path) -> Result<(), String> {
    store
        .download(uri, local)
        .await
        .map_err(|error| format!("cannot fetch input artifact {uri}: {error}"))
}

async fn last_log_line(path: &Path) -> Option<String> {
    let text = tokio::fs::read_to_string(path).await.ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| line.chars().take(500).collect())
}

/// An importer records an existing object as an artifact; nothing is copied.
async fn run_importer(
    context: &Arc<RunContext>,
    call: &TaskCall,
    importer: &ImporterSpec,
    record: &TaskRecord,
) -> Result<TaskResult, String> {
    let uri = match importer.artifact_uri.constant_json() {
        Some(Value::String(uri)) => uri,
        Some(other) => other.to_string(),
        None => {
            let name = importer
                .artifact_uri
                .runtime_parameter
                .as_deref()
                .ok_or_else(|| "the importer has no artifact_uri".to_string())?;
            match call.parameters.get(name) {
                Some(Value::String(uri)) => uri.clone(),
                Some(other) => other.to_string(),
                None => return Err(format!("importer input {name:?} has no value")),
            }
        }
    };
    let input = ExecutorInput {
        parameters: call.parameters.clone(),
        ..ExecutorInput::default()
    };
    let job = JobInfo::default();
    let mut metadata = Map::new();
    for (key, value) in importer.metadata.clone().unwrap_or_default() {
        let resolved_key = substitute(&key, &input, &job, "")?;
        let resolved = match value {
            Value::String(text) => {
                let whole_placeholder = text.starts_with("{{$.inputs.parameters[")
                    && text.ends_with("]}}")
                    && text.matches("{{").count() == 1;
                match (
                    whole_placeholder,
                    call.parameters
                        .iter()
                        .find(|(name, _)| text.contains(name.as_str())),
                ) {
                    (true, Some((_, typed))) => typed.clone(),
                    _ => Value::String(substitute(&text, &input, &job, "")?),
                }
            }
            other => other,
        };
        metadata.insert(resolved_key, resolved);
    }
    let output_key = call
        .component
        .output_definitions
        .artifacts
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "artifact".to_string());
    let schema_title = importer
        .type_schema
        .schema_title
        .clone()
        .unwrap_or_else(|| "system.Artifact".into());
    if !importer.reimport {
        if let Some(existing) = find_imported(context, &uri, &schema_title, &metadata).await? {
            let link = ArtifactLink {
                task_id: record.task.id.clone(),
                artifact_id: existing.id,
                direction: Direction::Output,
                key: output_key.clone(),
            };
            context
                .engine
                .store
                .link_artifact(&context.run.id, &link)
                .await
                .map_err(|error| format!("cannot record the imported artifact: {error}"))?;
            return Ok(TaskResult {
                state: TaskState::Succeeded,
                error: None,
                parameters: Map::new(),
                artifacts: BTreeMap::from([(output_key, vec![artifact_ref(&existing)])]),
            });
        }
    }
    let artifact = Artifact {
        id: new_artifact_id(),
        run_id: context.run.id.clone(),
        producer_task_id: record.task.id.clone(),
        output_key: output_key.clone(),
        name: output_key.clone(),
        uri,
        schema_title,
        schema_version: importer.type_schema.schema_version.clone(),
        metadata: Value::Object(metadata).to_string(),
        created_at: now(),
    };
    context
        .engine
        .store
        .create_artifact(&artifact)
        .await
        .map_err(|error| format!("cannot record the imported artifact: {error}"))?;
    Ok(TaskResult {
        state: TaskState::Succeeded,
        error: None,
        parameters: Map::new(),
        artifacts: BTreeMap::from([(output_key, vec![artifact_ref(&artifact)])]),
    })
}

/// Artifacts with the same URI looked at for reuse; more than this many imports
/// of one URI with different metadata are not expected.
const REIMPORT_CANDIDATES: i64 = 100;

/// An artifact recorded earlier with this URI, type and metadata, which an
/// importer without `reimport` gives out again (as upstream's driver does).
async fn find_imported(
    context: &RunContext,
    uri: &str,
    schema_title: &str,
    metadata: &Map<String, Value>,
) -> Result<Option<Artifact>, String> {
    let candidates = context
        .engine
        .store
        .find_artifacts_by_uri(uri, schema_title, REIMPORT_CANDIDATES)
        .await
        .map_err(|error| format!("cannot look up artifacts imported before: {error}"))?;
    Ok(candidates.into_iter().find(|candidate| {
        serde_json::from_str::<Map<String, Value>>(&candidate.metadata)
            .is_ok_and(|recorded| &recorded == metadata)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kfp_pin_is_found_and_replaced_in_place() {
        let preamble = "python3 -m pip install --quiet 'kfp==2.14.3' '--no-deps' && \"$0\" \"$@\"";
        let mut argv = vec!["sh".to_string(), "-c".to_string(), preamble.to_string()];
        assert_eq!(
            replace_kfp_pin(&mut argv.clone(), None).as_deref(),
            Some("kfp==2.14.3")
        );
        let installed = replace_kfp_pin(&mut argv, Some("kfp==2.15.0"));
        assert_eq!(installed.as_deref(), Some("kfp==2.15.0"));
        assert_eq!(
            argv[2],
            "python3 -m pip install --quiet 'kfp==2.15.0' '--no-deps' && \"$0\" \"$@\""
        );
        assert_eq!(
            environment_key("python:3.11", installed.as_deref()),
            "python:3.11+kfp==2.15.0"
        );
        let mut plain = vec![
            "sh".to_string(),
            "-c".to_string(),
            "echo kfp==1".to_string(),
        ];
        assert_eq!(replace_kfp_pin(&mut plain, Some("kfp==2.15.0")), None);
        assert_eq!(plain[2], "echo kfp==1");
        assert_eq!(environment_key("alpine", None), "alpine");
    }

    fn plan(policy: Value) -> RetryPlan {
        let policy: RetryPolicy = serde_json::from_value(policy).unwrap();
        RetryPlan::of(Some(&policy))
    }

    #[test]
    fn no_policy_means_one_attempt() {
        assert_eq!(
            RetryPlan::of(None).wait_before_retry(1, Duration::ZERO),
            None
        );
    }

    #[test]
    fn backoff_grows_by_the_factor() {
        let plan = plan(json!({"maxRetryCount": 3, "backoffDuration": "1s", "backoffFactor": 2.0}));
        let waits: Vec<Option<Duration>> = (1..=4)
            .map(|attempt| plan.wait_before_retry(attempt, Duration::ZERO))
            .collect();
        assert_eq!(
            waits,
            [
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                None
            ]
        );
    }

    #[test]
    fn max_duration_bounds_the_whole_retry_window() {
        let plan = plan(json!({
            "maxRetryCount": 5, "backoffDuration": "10s", "backoffFactor": 1.0, "backoffMaxDuration": "30s"
        }));
        assert_eq!(
            plan.wait_before_retry(1, Duration::from_secs(5)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            plan.wait_before_retry(2, Duration::from_secs(25)),
            None,
            "the wait would end after 30 s"
        );
    }

    #[test]
    fn defaults_as_upstream() {
        let plan = plan(json!({"maxRetryCount": 2}));
        assert_eq!(plan.backoff, Duration::ZERO);
        assert_eq!(plan.factor, 2.0);
        assert_eq!(plan.max_duration, Duration::from_secs(3600));
        assert_eq!(
            plan.wait_before_retry(2, Duration::ZERO),
            Some(Duration::ZERO)
        );
    }
}
