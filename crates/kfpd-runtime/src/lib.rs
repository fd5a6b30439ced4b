//! Local process runtime for kfpd: runs each pipeline task as a process on this machine.
//!
//! A task's container image becomes a Python virtual environment, made once per image name and
//! layered over the host interpreter's packages, whose `python3`/`pip` are small shell fronts that
//! make the `pip install kfp==…` every lightweight component begins with instant after its first
//! success (see [`Environment`]). Each task runs in its own process group with its output
//! captured line by line into a log file, and cancellation takes down the whole group.

mod env;
mod limits;
mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use env::Environment;
pub use limits::raise_open_files_limit;

/// How the runtime finds and keeps its Python environments.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where per-image Python environments live, e.g. `<data-dir>/envs`. Created if missing.
    pub envs_dir: PathBuf,
    /// The host interpreter whose packages stay importable underneath (first `python3` on PATH by default).
    pub python: PathBuf,
}

impl Options {
    /// Options with the first `python3` on `PATH` as the host interpreter (plain `python3` if
    /// none is found, so the failure surfaces when an environment is first needed).
    pub fn new(envs_dir: impl Into<PathBuf>) -> Options {
        let python = std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("python3"))
                    .find(|candidate| process::is_executable(candidate))
            })
            .unwrap_or_else(|| PathBuf::from("python3"));
        Options {
            envs_dir: envs_dir.into(),
            python,
        }
    }
}

/// One task process to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Selects the environment.
    pub image: String,
    /// Fully resolved command and arguments; `argv[0]` is looked up on the task's `PATH`.
    pub argv: Vec<String>,
    /// Component environment, applied over the inherited environment.
    pub env: Vec<(String, String)>,
    /// Per-task working directory (created by the caller).
    pub cwd: PathBuf,
    /// Stdout and stderr interleaved, appended line by line as they come.
    pub log_path: PathBuf,
}

/// How a task process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, if the process exited on its own.
    pub code: Option<i32>,
    /// Terminating signal, if the process was killed by one.
    pub signal: Option<i32>,
    /// The run was canceled (the process group was terminated, or never started).
    pub canceled: bool,
    /// Wall time from start to exit.
    pub duration: Duration,
}

impl Exit {
    /// Exit code 0 and not canceled: the only outcome that makes a task succeed.
    pub fn success(&self) -> bool {
        !self.canceled && self.code == Some(0)
    }

    fn canceled_before_start() -> Exit {
        Exit {
            code: None,
            signal: None,
            canceled: true,
            duration: Duration::ZERO,
        }
    }
}

/// Why a task could not be run (a process that ran and failed is an [`Exit`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating python environment for image {image:?} with {}: {detail}", python.display())]
    CreateEnvironment {
        image: String,
        python: PathBuf,
        detail: String,
    },
    #[error("preparing python environment for image {image:?} at {}: {source}", path.display())]
    Environment {
        image: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("empty command for image {image:?}")]
    EmptyCommand { image: String },
    #[error("command {command:?} not found on PATH of image {image:?}")]
    CommandNotFound { image: String, command: String },
    #[error("working directory {} of command {command:?}: {source}", path.display())]
    WorkingDir {
        command: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening log file {}: {source}", path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting command {command:?} for image {image:?}: {source}")]
    Spawn {
        image: String,
        command: String,
        source: std::io::Error,
    },
    #[error("waiting for command {command:?}: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
}

/// Runs task processes; cheap to clone, clones share environments and their creation guards.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Environment>>>;

struct Inner {
    options: Options,
    /// One slot per image name: its mutex makes concurrent callers wait for a single creation.
    envs: Mutex<HashMap<String, Slot>>,
}

impl Runtime {
    pub fn new(options: Options) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                options,
                envs: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Ensures the environment for `image` exists (created once per image name, concurrent
    /// callers wait for one creation), and returns it; its [`Environment::bin`] goes first on PATH.
    pub async fn environment(&self, image: &str) -> Result<Environment, Error> {
        let slot = {
            let mut envs = self
                .inner
                .envs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            envs.entry(image.to_string()).or_default().clone()
        };
        let mut known = slot.lock().await;
        if let Some(environment) = known.as_ref() {
            // Cheap re-check, so an environment removed behind our back is made again.
            if env::is_ready(&environment.root) {
                return Ok(environment.clone());
            }
        }
        let envs_dir = self.inner.options.envs_dir.clone();
        let python = self.inner.options.python.clone();
        let name = image.to_string();
        let environment =
            tokio::task::spawn_blocking(move || env::ensure(&envs_dir, &python, &name))
                .await
                .map_err(|join| Error::CreateEnvironment {
                    image: image.to_string(),
                    python: self.inner.options.python.clone(),
                    detail: format!("creation task failed: {join}"),
                })??;
        *known = Some(environment.clone());
        Ok(environment)
    }

    /// Runs one task process to completion or until `cancel` fires.
    pub async fn run(&self, spec: ProcessSpec, cancel: CancellationToken) -> Result<Exit, Error> {
        if spec.argv.is_empty() {
            return Err(Error::EmptyCommand { image: spec.image });
        }
        let environment = tokio::select! {
            environment = self.environment(&spec.image) => environment?,
            () = cancel.cancelled() => return Ok(Exit::canceled_before_start()),
        };
        process::run(&environment, spec, cancel).await
    }
}
