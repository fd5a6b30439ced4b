//! Running one container or importer task: inputs downloaded, the process run in
//! its image's environment, outputs read back and artifacts uploaded and recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kfpd_artifacts::ArtifactStore;
use kfpd_core::attempts::{exit_reason, last_line, task_failure, RetryPlan};
use kfpd_core::executor_input::{
    resolve_self_references, workspace_artifact_path, ExecutorInput, Layout,
};
use kfpd_core::outputs::{content_path, read_outputs};
use kfpd_core::{executor_input, ArtifactRef, TaskResult};
use kfpd_ir::spec::{ExecutorKind, ExecutorSpec, PipelineContainerSpec};
use kfpd_runtime::ProcessSpec;
use kfpd_store::{Artifact, ArtifactLink, Direction, TaskKind, TaskState, TaskStateChange};
use serde_json::{json, Map, Value};

use crate::cache;
use crate::context::{RunContext, TaskCall};
use crate::drive::DOWNLOAD_TO_WORKSPACE;
use crate::importer::{self, new_artifact_id};
use crate::records::{now, TaskRecord};
use crate::warm;

pub(crate) async fn run_executor(
    context: Arc<RunContext>,
    call: TaskCall,
    executor: ExecutorSpec,
) -> TaskResult {
    if let Some(reused) = reuse_previous(&context, &call).await {
        // A retried run's importer: the tasks after it read the copy again.
        if let Some(ExecutorKind::Importer(importer)) = executor.kind() {
            if importer.download_to_workspace && reused.state.is_done() {
                if let Err(error) = importer::copy_to_workspace(&context, &reused).await {
                    tracing::warn!(run = %context.run.id, task = %call.name, %error, "importer's artifact not copied again: the tasks after it fetch it");
                }
            }
        }
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
            match importer::run(&context, &call, importer, &record).await {
                // Copied where the Argo launcher copies it; the tasks after it read
                // it there.
                Ok(result) if importer.download_to_workspace => {
                    record.set_detail(DOWNLOAD_TO_WORKSPACE, json!(true));
                    importer::copy_to_workspace(&context, &result)
                        .await
                        .map(|()| result)
                }
                other => other,
            }
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
            .push(ArtifactRef::from(&artifact));
    }
    Some(TaskResult {
        state: previous.state,
        error: None,
        parameters,
        artifacts,
    })
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
    let layout = Layout {
        inputs_dir,
        parameter_dir,
        artifact_dir,
        output_file: outputs_dir.join("output_metadata.json"),
    };
    let mut prepared = executor_input::prepare(
        &call.parameters,
        &call.artifacts,
        outputs,
        &layout,
        |name| {
            ArtifactStore::output_uri(
                &context.facts.pipeline_root,
                &context.facts.pipeline_name,
                &context.run.id,
                &call.name,
                &task_id,
                name,
            )
        },
    );
    // Artifacts an importer copied into the workspace are read there, as the Argo
    // launcher reads them: not fetched, the URI the task sees is the copy.
    let in_workspace = context
        .in_workspace
        .lock()
        .map(|ids| ids.clone())
        .unwrap_or_default();
    for (name, list) in &call.artifacts {
        for (index, artifact) in list.iter().enumerate() {
            if !in_workspace.contains(&artifact.id) {
                continue;
            }
            let local = workspace_artifact_path(&workspace, &artifact.uri)?;
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
    }
    for download in &prepared.downloads {
        fetch(&engine.artifacts, &download.uri, &download.local).await?;
        let link = ArtifactLink {
            task_id: task_id.clone(),
            artifact_id: download.artifact_id,
            direction: Direction::Input,
            key: download.input.clone(),
        };
        if let Err(error) = engine.store.link_artifact(&context.run.id, &link).await {
            tracing::warn!(%error, "cannot record artifact input");
        }
    }
    let mut input = prepared.input;
    let destinations = prepared.destinations;
    let output_file = layout.output_file;

    let job = context
        .facts
        .job_info(&call.name, &task_id, &workspace.display().to_string());
    resolve_self_references(&mut input.parameters, &job)?;
    let command = executor_input::resolve_container(container, &input, &job)?;
    let (mut argv, mut env) = (command.argv, command.env);
    let installed_kfp = replace_kfp_pin(&mut argv, engine.options.kfp_package.as_deref());
    let image = environment_key(&container.image, installed_kfp.as_deref());
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
    let log_uri = log_object_uri(
        &engine.artifacts,
        &context.run.namespace,
        &context.run.id,
        &task_id,
    );
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
            return Ok(TaskResult::failed(task_failure(
                &call.display_name,
                attempt,
                max_attempts,
                &failure,
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
/// the spirit of upstream's archived pod logs (`<bucket>/artifacts/<workflow>/<pod>/main.log`);
/// a run in a namespace (multi-user mode) keeps it under its namespace's root.
pub(crate) fn log_object_uri(
    store: &ArtifactStore,
    namespace: &str,
    run_id: &str,
    task_id: &str,
) -> String {
    let root = if namespace.is_empty() {
        store.default_root()
    } else {
        store.namespace_root(namespace)
    };
    format!(
        "{}/logs/{run_id}/{task_id}/main.log",
        root.trim_end_matches('/')
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
    let waiting = Waiting::start(&engine.waiting);
    let permit = tokio::select! {
        permit = engine.slots.clone().acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_) => return Attempt::Failed { reason: "the engine is shutting down".into(), exit_code: None },
        },
        _ = context.cancel.cancelled() => return Attempt::Canceled,
    };
    drop(waiting);
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
        let log = tokio::fs::read_to_string(log_path).await.ok();
        let final_line = log.as_deref().and_then(last_line);
        let reason = exit_reason(exit.code, exit.signal, final_line.as_deref());
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
/// warm interpreter (after its pip preamble, if it has one, ran as usual), anything
/// else — or a lightweight task the warm interpreter could not take — as its own
/// process.
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
    if let Some(preamble) = &call.preamble {
        let preamble = ProcessSpec {
            argv: preamble.clone(),
            ..spec.clone()
        };
        let installed = runtime
            .run(preamble, cancel.clone())
            .await
            .map_err(|error| error.to_string())?;
        if !installed.success() {
            return Ok(Ended::from(installed));
        }
    }
    let environment = runtime
        .environment(&spec.image)
        .await
        .map_err(|error| error.to_string())?;
    let task = warm::WarmTask {
        inherit: runtime.options().inherit,
        cwd: &spec.cwd,
        log: &spec.log_path,
        env: &spec.env,
        call: &call,
    };
    tracing::debug!(run = %context.run.id, cwd = %spec.cwd.display(), environment = %environment.root.display(), "task runs in the warm python");
    match warm::run(&environment, task, cancel).await {
        Ok(exit) => {
            tracing::debug!(run = %context.run.id, cwd = %spec.cwd.display(), code = ?exit.code, signal = ?exit.signal, "warm task ended");
            Ok(Ended {
                code: exit.code,
                signal: exit.signal,
                canceled: exit.canceled,
            })
        }
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
        &output_file.display().to_string(),
        &input.output_parameters,
        |path| std::fs::read_to_string(path).ok(),
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
        artifacts.insert(name.clone(), vec![ArtifactRef::from(&artifact)]);
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
pub(crate) fn replace_kfp_pin(argv: &mut [String], replacement: Option<&str>) -> Option<String> {
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

async fn fetch(store: &ArtifactStore, uri: &str, local: &Path) -> Result<(), String> {
    store
        .download(uri, local)
        .await
        .map_err(|error| format!("cannot fetch input artifact {uri}: {error}"))
}

/// Counts an attempt as waiting for a slot until dropped, also when the wait is
/// cancelled.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(counter: &'a std::sync::atomic::AtomicUsize) -> Waiting<'a> {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
