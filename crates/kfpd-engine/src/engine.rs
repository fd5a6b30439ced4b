//! Executing one run: its root DAG, recorded task by task in the store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kfpd_artifacts::ArtifactStore;
use kfpd_ir::spec::PipelineSpec;
use kfpd_runtime::Runtime;
use kfpd_store::{MetadataStore, Run, RunState, Task, TaskKind, TaskState};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dag::{self, Scope};
use crate::records::TaskRecord;
use crate::values::coerce;
use crate::writer::TaskWriter;

#[derive(Clone, Debug)]
pub struct Options {
    /// Per-task working directories (`<work_dir>/<run>/<task>`), logs included.
    pub work_dir: PathBuf,
    /// How many task processes run at once, over all runs.
    pub max_parallel_tasks: usize,
    /// Whether tasks may reuse earlier results, and how old those may be.
    pub cache: crate::cache::CacheOptions,
    /// Installed instead of the `kfp==X` a lightweight component's pip preamble
    /// pins (`kfp==2.15.0`, a wheel's path); `None` honours the pin.
    pub kfp_package: Option<String>,
}

/// Shared by every run the executor starts.
pub struct Engine {
    pub(crate) store: Arc<dyn MetadataStore>,
    pub(crate) runtime: Runtime,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) options: Options,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) writer: Arc<TaskWriter>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub state: RunState,
    pub error: Option<String>,
}

/// Everything a task of one run needs to know about the run.
pub(crate) struct RunContext {
    pub engine: Arc<Engine>,
    pub run: Run,
    pub spec: PipelineSpec,
    /// The package's platform spec (per-task Kubernetes settings such as the
    /// cache-staleness annotation).
    pub platform: Option<kfpd_ir::spec::PlatformSpec>,
    pub pipeline_name: String,
    pub pipeline_root: String,
    pub cancel: CancellationToken,
    /// Tasks of earlier attempts by path, so a retry keeps what succeeded.
    pub previous: HashMap<String, Task>,
    /// The first failure, which becomes the run's error.
    pub first_error: Mutex<Option<String>>,
    /// Task logs on their way to the artifact store; the run ends after them.
    pub log_uploads: Mutex<JoinSet<()>>,
}

impl RunContext {
    pub fn record_failure(&self, message: &str) {
        if let Ok(mut first) = self.first_error.lock() {
            if first.is_none() {
                *first = Some(message.to_string());
            }
        }
    }

    /// Runs `upload` beside the run's tasks; [`Engine::execute`] waits for it.
    pub fn upload_log(&self, upload: impl std::future::Future<Output = ()> + Send + 'static) {
        match self.log_uploads.lock() {
            Ok(mut uploads) => {
                uploads.spawn(upload);
            }
            Err(_) => {
                tokio::spawn(upload);
            }
        }
    }

    pub fn work_dir(&self, task_id: &str) -> PathBuf {
        self.engine
            .options
            .work_dir
            .join(&self.run.id)
            .join(task_id)
    }

    /// The `TMPDIR` of the run's tasks (names made by `mktemp` and `tempfile`
    /// never collide, so one per run will do).
    pub fn temp_dir(&self) -> PathBuf {
        self.engine.options.work_dir.join(&self.run.id).join("tmp")
    }

    pub fn workspace_dir(&self) -> PathBuf {
        self.engine
            .options
            .work_dir
            .join(&self.run.id)
            .join("workspace")
    }
}

impl Engine {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        runtime: Runtime,
        artifacts: ArtifactStore,
        options: Options,
    ) -> Engine {
        let slots = Arc::new(Semaphore::new(options.max_parallel_tasks.max(1)));
        let writer = TaskWriter::new(Arc::clone(&store));
        Engine {
            store,
            runtime,
            artifacts,
            options,
            slots,
            writer,
        }
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Executes a run that is already RUNNING (claimed by the caller) to its end.
    /// Tasks that succeeded in an earlier attempt of the same run are kept.
    pub async fn execute(self: &Arc<Engine>, run: Run, cancel: CancellationToken) -> Outcome {
        let run_id = run.id.clone();
        let outcome = match self.try_execute(run, cancel).await {
            Ok(outcome) => outcome,
            Err(message) => Outcome {
                state: RunState::Failed,
                error: Some(message),
            },
        };
        // Every task row is stored before the caller records the run's end.
        if let Err(error) = self.writer.flush().await {
            tracing::warn!(run = %run_id, %error, "cannot record the run's last tasks");
        }
        outcome
    }

    async fn try_execute(
        self: &Arc<Engine>,
        run: Run,
        cancel: CancellationToken,
    ) -> Result<Outcome, String> {
        let spec_json = self
            .store
            .run_spec(&run.id)
            .await
            .map_err(|error| format!("cannot read the run's pipeline spec: {error}"))?;
        let spec_value: Value = serde_json::from_str(&spec_json)
            .map_err(|error| format!("the run's pipeline spec is not JSON: {error}"))?;
        let package = kfpd_ir::parse_spec_value(&spec_value).map_err(|error| error.to_string())?;
        let spec = package.spec().clone();
        let pipeline_name = package.pipeline_name().to_string();

        let (parameters, requested_root) = runtime_config(&run.runtime_config)?;
        let pipeline_root = self.pipeline_root(&requested_root)?;
        let root_parameters = root_inputs(&spec, parameters)?;

        let previous: HashMap<String, Task> = self
            .store
            .list_tasks(&run.id)
            .await
            .map_err(|error| format!("cannot read the run's tasks: {error}"))?
            .into_iter()
            .map(|task| (task.path.clone(), task))
            .collect();

        let context = Arc::new(RunContext {
            engine: Arc::clone(self),
            spec: spec.clone(),
            platform: package.platform().cloned(),
            pipeline_name: pipeline_name.clone(),
            pipeline_root,
            cancel: cancel.clone(),
            previous,
            first_error: Mutex::new(None),
            log_uploads: Mutex::new(JoinSet::new()),
            run,
        });
        // Shared by the run's tasks (`{{$.workspace_path}}`, `TMPDIR`); made once, here.
        for dir in [context.workspace_dir(), context.temp_dir()] {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        }

        let display_name = if spec.pipeline_info.display_name.is_empty() {
            pipeline_name.clone()
        } else {
            spec.pipeline_info.display_name.clone()
        };
        let mut root = TaskRecord::start(
            &context,
            "",
            "root",
            TaskKind::Root,
            &pipeline_name,
            &display_name,
            -1,
            &root_parameters,
        );
        let scope = Scope {
            parameters: root_parameters,
            artifacts: Default::default(),
        };
        let result = dag::run_dag(
            Arc::clone(&context),
            spec.root.clone(),
            scope,
            root.task.id.clone(),
            "root".to_string(),
        )
        .await;
        root.finish(
            &context,
            result.state,
            result.error.clone(),
            &result.parameters,
        );
        let uploads = context
            .log_uploads
            .lock()
            .map(|mut uploads| std::mem::take(&mut *uploads))
            .unwrap_or_default();
        uploads.join_all().await;

        let canceled = cancel.is_cancelled();
        let state = match result.state {
            _ if canceled => RunState::Canceled,
            TaskState::Succeeded | TaskState::Cached | TaskState::Skipped => RunState::Succeeded,
            TaskState::Canceled => RunState::Canceled,
            _ => RunState::Failed,
        };
        let error = match state {
            RunState::Succeeded => None,
            RunState::Canceled => Some("run was terminated".to_string()),
            _ => context
                .first_error
                .lock()
                .ok()
                .and_then(|first| first.clone())
                .or(result.error),
        };
        Ok(Outcome { state, error })
    }

    /// The pipeline root of a run: the one it asked for (a local path counts as
    /// `file://`), else the store's default root. CreateRun checked it already; this
    /// checks again in case the server's allowed roots changed since.
    fn pipeline_root(&self, requested: &str) -> Result<String, String> {
        self.artifacts
            .pipeline_root(requested)
            .map_err(|error| error.to_string())
    }
}

fn runtime_config(json: &str) -> Result<(Map<String, Value>, String), String> {
    if json.trim().is_empty() {
        return Ok((Map::new(), String::new()));
    }
    let value: Value = serde_json::from_str(json)
        .map_err(|error| format!("the run's runtime config is not JSON: {error}"))?;
    let parameters = value
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let root = value
        .get("pipeline_root")
        .or_else(|| value.get("pipelineRoot"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((parameters, root))
}

/// Root inputs: given values (typed as declared) and the defaults of the rest.
fn root_inputs(
    spec: &PipelineSpec,
    mut given: Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut parameters = Map::new();
    for (name, definition) in &spec.root.input_definitions.parameters {
        let value = match given.remove(name) {
            Some(value) if !value.is_null() => value,
            _ => match &definition.default_value {
                Some(default) => default.clone(),
                None if definition.is_optional => continue,
                None => return Err(format!("pipeline input parameter {name:?} has no value")),
            },
        };
        parameters.insert(
            name.clone(),
            coerce(name, definition.effective_type(), value)?,
        );
    }
    Ok(parameters)
}
