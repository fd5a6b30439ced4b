//! `kfpd run PIPELINE.yaml`: one pipeline, executed here without a server, with
//! live task progress.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kfpd_api::v2beta1 as api;
use kfpd_api::wkt::{Struct, Value as ProtoValue};
use kfpd_ir::spec::ParameterType;
use kfpd_store::sql::{Options as StoreOptions, SqlStore};
use kfpd_store::{ExecutionStore, RunState, RunStore, TaskState};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::service::{self, Api};

/// What `kfpd run` needs.
#[derive(Clone, Debug)]
pub struct RunArgs {
    pub pipeline: PathBuf,
    /// `name=value` pairs; values are JSON where the input is not a string.
    pub params: Vec<String>,
    /// Keeps the database, artifacts and logs here (a temp dir when `None`).
    pub data_dir: Option<PathBuf>,
    pub max_parallel_tasks: usize,
    /// Replaces the `kfp==<version>` of lightweight components' install preamble
    /// (as `kfpd serve --kfp-package`).
    pub kfp_package: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Setup(String),
}

/// Runs the pipeline to its end; returns the final state and error.
pub async fn run(args: RunArgs) -> Result<(RunState, Option<String>), Error> {
    let bytes = std::fs::read(&args.pipeline).map_err(|error| {
        Error::Input(format!("cannot read {}: {error}", args.pipeline.display()))
    })?;
    let file_name = args
        .pipeline
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default();
    let package = kfpd_ir::read_package(&file_name, &bytes)
        .map_err(|error| Error::Input(error.to_string()))?;
    let parameters = parse_params(&package, &args.params)?;

    let temp;
    let data_dir: &Path = match &args.data_dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir()
                .map_err(|error| Error::Setup(format!("cannot make a temp dir: {error}")))?;
            temp.path()
        }
    };
    std::fs::create_dir_all(data_dir)
        .map_err(|error| Error::Setup(format!("cannot create {}: {error}", data_dir.display())))?;
    let url = format!("sqlite://{}", data_dir.join("kfpd.db").display());
    let store = Arc::new(
        SqlStore::connect(&StoreOptions::new(url))
            .await
            .map_err(|error| Error::Setup(error.to_string()))?,
    );
    let kfp_package = match args.kfp_package.as_deref() {
        Some(text) => crate::config::parse_kfp_package(text)
            .map_err(|error| Error::Input(error.to_string()))?,
        None => None,
    };
    let engine = crate::engine::build(
        store.clone(),
        data_dir,
        args.max_parallel_tasks,
        kfp_package,
    )
    .await
    .map_err(Error::Setup)?;
    let settings = service::Settings {
        multi_user: false,
        pod_namespace: "kubeflow".into(),
        default_service_account: "pipeline-runner".into(),
    };
    let api = Api::new(store.clone(), settings, service::system_clock());

    let spec = Struct::try_from(package.api_pipeline_spec())
        .map_err(|error| Error::Input(format!("pipeline spec is not an object: {error:?}")))?;
    let runtime_config = api::RuntimeConfig {
        parameters: parameters
            .into_iter()
            .map(|(name, value)| (name, ProtoValue::from(value)))
            .collect(),
        pipeline_root: String::new(),
    };
    let request = api::CreateRunRequest {
        run: Some(api::Run {
            display_name: format!("{} (kfpd run)", package.pipeline_name()),
            pipeline_source: Some(api::run::PipelineSource::PipelineSpec(spec)),
            runtime_config: Some(runtime_config),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = api
        .create_run(request)
        .await
        .map_err(|error| Error::Input(error.to_string()))?;
    let run = store
        .transition_run(
            &created.run_id,
            &[RunState::Pending],
            RunState::Running,
            None,
            now(),
        )
        .await
        .map_err(|error| Error::Setup(error.to_string()))?;

    let cancel = CancellationToken::new();
    let interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let progress = tokio::spawn(show_progress(store.clone(), run.id.clone()));
    let outcome = engine.execute(run.clone(), cancel).await;
    store
        .transition_run(
            &run.id,
            &[RunState::Running],
            outcome.state,
            outcome.error.clone(),
            now(),
        )
        .await
        .map_err(|error| Error::Setup(error.to_string()))?;
    progress.abort();
    print_changes(&*store, &run.id, &mut HashMap::new(), false).await;
    if let Some(dir) = &args.data_dir {
        eprintln!("run {} kept in {}", run.id, dir.display());
    }
    Ok((outcome.state, outcome.error))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `name=value`: the raw text for STRING inputs, JSON otherwise (a bare word that
/// is not JSON stays a string and is then checked against the declared type).
fn parse_params(
    package: &kfpd_ir::Package,
    given: &[String],
) -> Result<serde_json::Map<String, Value>, Error> {
    let declared = package.root_parameters();
    let mut parameters = serde_json::Map::new();
    for pair in given {
        let (name, text) = pair
            .split_once('=')
            .ok_or_else(|| Error::Input(format!("--param {pair:?}: expected name=value")))?;
        let is_string = declared
            .get(name)
            .is_some_and(|definition| definition.effective_type() == ParameterType::String);
        let value = if is_string {
            Value::String(text.to_string())
        } else {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        };
        parameters.insert(name.to_string(), value);
    }
    Ok(parameters)
}

async fn show_progress(store: Arc<SqlStore>, run_id: String) {
    let mut seen = HashMap::new();
    let terminal = std::io::stderr().is_terminal();
    // Bounded by the run: the caller aborts this task when the run ends.
    loop {
        print_changes(&*store, &run_id, &mut seen, terminal).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints one line per task state change; on a terminal also a summary line that
/// is redrawn in place.
async fn print_changes(
    store: &dyn ExecutionStore,
    run_id: &str,
    seen: &mut HashMap<String, TaskState>,
    terminal: bool,
) {
    let Ok(tasks) = store.list_tasks(run_id).await else {
        return;
    };
    let mut out = std::io::stderr().lock();
    if terminal {
        let _ = write!(out, "\r\x1b[2K");
    }
    for task in &tasks {
        if seen.get(&task.id) == Some(&task.state) {
            continue;
        }
        seen.insert(task.id.clone(), task.state);
        let error = match (&task.error, task.state) {
            (Some(error), TaskState::Failed | TaskState::Skipped) => format!(" ({error})"),
            _ => String::new(),
        };
        let _ = writeln!(out, "{:<10} {}{error}", task.state.as_str(), task.path);
    }
    if terminal {
        let running = tasks
            .iter()
            .filter(|task| task.state == TaskState::Running)
            .count();
        let done = tasks.iter().filter(|task| task.state.is_final()).count();
        let _ = write!(out, "[{done} done, {running} running]");
    }
    let _ = out.flush();
}
