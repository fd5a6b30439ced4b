//! The engine every run of `kfpd serve` (or `kfpd run`) shares: the store, the
//! artifact store, the process runtime, task slots and the task-row writer.

use std::path::PathBuf;
use std::sync::Arc;

use kfpd_artifacts::ArtifactStore;
use kfpd_runtime::Runtime;
use kfpd_store::MetadataStore;
use tokio::sync::Semaphore;

use crate::writer::TaskWriter;

#[derive(Clone, Debug)]
pub struct Options {
    /// Per-task working directories (`<work_dir>/<run>/<task>`), logs included.
    pub work_dir: PathBuf,
    /// How many task processes run at once, over all runs.
    pub max_parallel_tasks: usize,
    /// Whether tasks may reuse earlier results, and how old those may be.
    pub cache: kfpd_core::cache::CacheOptions,
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
    /// Task attempts waiting for one of `slots`, for the metrics.
    pub(crate) waiting: std::sync::atomic::AtomicUsize,
    pub(crate) writer: Arc<TaskWriter>,
    /// Taken per run while a driver request or launcher call is answered (see
    /// `turns`).
    pub(crate) driving: crate::turns::RunTurns,
    /// Pipelines of runs driven here, by run id (see `drive`).
    pub(crate) parsed_specs:
        std::sync::Mutex<std::collections::HashMap<String, Arc<crate::drive::ParsedSpec>>>,
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
            waiting: std::sync::atomic::AtomicUsize::new(0),
            writer,
            driving: crate::turns::RunTurns::default(),
            parsed_specs: std::sync::Mutex::new(std::collections::HashMap::new()),
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

    /// Task processes holding a slot now.
    pub fn tasks_running(&self) -> usize {
        self.options
            .max_parallel_tasks
            .max(1)
            .saturating_sub(self.slots.available_permits())
    }

    /// Task attempts ready to start but waiting for a free slot.
    pub fn tasks_waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }
}
