//! What the tasks of one run share while it executes, and a task on its way to run.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kfpd_core::run::RunFacts;
use kfpd_core::Artifacts;
use kfpd_ir::spec::{ComponentSpec, PipelineSpec, PipelineTaskSpec};
use kfpd_store::{Run, Task};
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

/// Everything a task of one run needs to know about the run.
pub(crate) struct RunContext {
    pub engine: Arc<Engine>,
    pub run: Run,
    /// The run as placeholders and the core's rules see it.
    pub facts: RunFacts,
    pub spec: PipelineSpec,
    /// The package's platform spec (per-task Kubernetes settings such as the
    /// cache-staleness annotation).
    pub platform: Option<kfpd_ir::spec::PlatformSpec>,
    pub cancel: CancellationToken,
    /// Tasks of earlier attempts by path, so a retry keeps what succeeded.
    pub previous: HashMap<String, Task>,
    /// The first failure, which becomes the run's error.
    pub first_error: Mutex<Option<String>>,
    /// Task logs on their way to the artifact store; the run ends after them.
    pub log_uploads: Mutex<JoinSet<()>>,
    /// Ids of the artifacts importers copied into the run's workspace
    /// (`download_to_workspace`): the tasks after them read the copy there.
    pub in_workspace: Mutex<BTreeSet<i64>>,
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

/// A task ready to run, with its inputs resolved.
pub(crate) struct TaskCall {
    pub name: String,
    pub display_name: String,
    pub path: String,
    pub parent_id: String,
    pub task: PipelineTaskSpec,
    pub component: ComponentSpec,
    pub parameters: Map<String, Value>,
    pub artifacts: Artifacts,
}
