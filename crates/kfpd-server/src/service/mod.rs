//! The KFP services, one implementation that every transport calls. Methods take
//! the API's request messages and return its response messages.

mod access;
mod drive;
mod execution;
mod experiments;
mod list;
mod pipelines;
mod recurring_runs;
mod runs;
mod scheduled_workflows;
mod schedules;
mod source;
mod workflows;

use std::sync::Arc;

use kfpd_store::MetadataStore;

pub use execution::{
    nodes_of, ArtifactView, ListArtifactsResponse, ListNodesResponse, Node, NodeArtifact,
    NodeDetail, RunView, TaskLog,
};
pub use list::parse_filter;
pub use pipelines::{PackageSource, Upload, UploadVersion};
pub use schedules::{fired_run_id, schedule_trigger, Fired};

use crate::error::{Error, Result};

/// What the services need to know about the deployment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub multi_user: bool,
    /// Namespace recurring runs report in single-user mode (upstream's POD_NAMESPACE).
    pub pod_namespace: String,
    pub default_service_account: String,
}

/// Reads the current time; tests and the scheduler may supply their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp())
}

/// The service layer: cheap to clone, shared by all request handlers.
#[derive(Clone)]
pub struct Api {
    store: Arc<dyn MetadataStore>,
    settings: Arc<Settings>,
    clock: Clock,
    http: reqwest::Client,
    /// Where task outputs live; `None` when the server runs without an engine.
    artifacts: Option<kfpd_artifacts::ArtifactStore>,
    /// The local executor, woken when runs need it.
    executor: Option<kfpd_engine::executor::Handle>,
    /// The scheduler of this process, woken when a recurring run changes.
    scheduler: Option<Arc<tokio::sync::Notify>>,
    /// Answers driver requests for runs executed on Argo (`--executor none`).
    driver: Option<Arc<kfpd_engine::Engine>>,
    /// How long a driver request waits for an upstream task not seen ending.
    driver_patience: std::time::Duration,
    /// Submits runs as Argo Workflows (`--executor argo`).
    argo: Option<Arc<crate::argo::Argo>>,
    /// What `GET /metrics` reports.
    metrics: Arc<crate::metrics::Metrics>,
    /// Who may do what, in multi-user mode.
    guard: Option<Arc<crate::access::Guard>>,
}

impl Api {
    pub fn new(store: Arc<dyn MetadataStore>, settings: Settings, clock: Clock) -> Api {
        Api {
            store,
            settings: Arc::new(settings),
            clock,
            http: reqwest::Client::new(),
            artifacts: None,
            executor: None,
            scheduler: None,
            driver: None,
            driver_patience: std::time::Duration::ZERO,
            argo: None,
            metrics: Arc::default(),
            guard: None,
        }
    }

    /// Checks every access against `guard` (multi-user mode).
    pub fn with_guard(mut self, guard: Arc<crate::access::Guard>) -> Api {
        self.guard = Some(guard);
        self
    }

    pub fn guard(&self) -> Option<&Arc<crate::access::Guard>> {
        self.guard.as_ref()
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Lets recurring-run changes wake the scheduler at once instead of at its
    /// next poll.
    pub fn with_scheduler_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Api {
        self.scheduler = Some(wake);
        self
    }

    fn wake_scheduler(&self) {
        if let Some(wake) = &self.scheduler {
            wake.notify_one();
        }
    }

    /// The store behind the services (the scheduler reads due rows from it).
    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// Connects the service layer to the engine that executes runs.
    pub fn with_execution(
        mut self,
        artifacts: kfpd_artifacts::ArtifactStore,
        executor: kfpd_engine::executor::Handle,
    ) -> Api {
        self.artifacts = Some(artifacts);
        self.executor = Some(executor);
        self
    }

    /// Tells the executor that a run changed state.
    fn wake_executor(&self) {
        if let Some(executor) = &self.executor {
            executor.wake();
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The namespace a request acts in: always "" in single-user mode (as upstream),
    /// required in multi-user mode, where `missing` (upstream's words) answers
    /// its absence.
    fn namespace(&self, given: &str, missing: &str) -> Result<String> {
        if !self.settings.multi_user {
            return Ok(String::new());
        }
        if given.is_empty() {
            return Err(Error::invalid(missing));
        }
        access::check_namespace_name(given)?;
        Ok(given.to_string())
    }
}

/// Checks a length limit upstream enforces before writing (`X length cannot exceed N`).
fn check_length(field: &str, value: &str, max: usize) -> Result<()> {
    let length = value.chars().count();
    if length > max {
        return Err(Error::invalid(format!(
            "{field} length cannot exceed {max} (got {length})"
        )));
    }
    Ok(())
}
