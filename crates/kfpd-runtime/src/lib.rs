//! Local process runtime for kfpd: runs each pipeline task as a process on this machine.
//!
//! A task's container image becomes a Python virtual environment, made once per image name and
//! host interpreter and layered over that interpreter's packages (a virtualenv's included), whose `python3`/`pip` are small shell fronts that
//! make the `pip install kfp==…` every lightweight component begins with instant after its first
//! success (see [`Environment`]). Each task runs in its own process group with its output
//! captured line by line into a log file, and cancellation takes down the whole group.

pub mod cache;
mod env;
mod host;
mod inherit;
mod limits;
mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use env::Environment;
pub use host::Host;
pub use inherit::Inherit;
pub use limits::raise_open_files_limit;

/// How the runtime finds and keeps its Python environments.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where per-image Python environments live, e.g. `<data-dir>/envs`. Created if missing.
    pub envs_dir: PathBuf,
    /// The host interpreter environments are made from and whose packages (a virtualenv's
    /// included) stay importable underneath (first `python3` on PATH by default).
    pub python: PathBuf,
    /// Which of kfpd's environment variables tasks inherit (never kfpd's settings).
    pub inherit: Inherit,
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
            inherit: Inherit::default(),
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
    #[error("environments directory {}: {source}", path.display())]
    EnvsDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs task processes; cheap to clone, clones share environments and their creation guards.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

/// An environment known to this process, and when its use was last recorded on disk.
type Slot = Arc<tokio::sync::Mutex<Option<(Environment, Instant)>>>;

/// How often a use of an environment is recorded in its `.kfpd/last-used`.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

struct Inner {
    options: Options,
    /// One slot per image name: its mutex makes concurrent callers wait for a single creation.
    envs: Mutex<HashMap<String, Slot>>,
    /// The host interpreter as last probed; probed again when an environment went stale.
    host: Mutex<Option<Arc<Host>>>,
}

impl Inner {
    /// The host, probed once (blocking) and again after `forget_host`.
    fn host(&self, image: &str) -> Result<Arc<Host>, Error> {
        let mut known = self.host.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(host) = known.as_ref() {
            return Ok(Arc::clone(host));
        }
        let host =
            Host::probe(&self.options.python).map_err(|detail| Error::CreateEnvironment {
                image: image.to_string(),
                python: self.options.python.clone(),
                detail,
            })?;
        tracing::debug!(
            python = %self.options.python.display(),
            executable = %host.executable.display(),
            version = %host.version,
            virtualenv = host.is_virtualenv(),
            "host python"
        );
        let host = Arc::new(host);
        *known = Some(Arc::clone(&host));
        Ok(host)
    }

    fn forget_host(&self) {
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Runtime {
    pub fn new(options: Options) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                options,
                envs: Mutex::new(HashMap::new()),
                host: Mutex::new(None),
            }),
        }
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Ensures the environment for `image` exists (created once per image name, concurrent
    /// callers wait for one creation), and returns it; its [`Environment::bin`] goes first on PATH.
    /// Every call checks cheaply that a known environment is still complete and its
    /// interpreters unchanged, and rebuilds it otherwise.
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
        if let Some((environment, touched)) = known.as_mut() {
            if environment.still_ready() {
                if touched.elapsed() >= TOUCH_EVERY {
                    environment.touch();
                    *touched = Instant::now();
                }
                return Ok(environment.clone());
            }
            // Removed, or an interpreter changed behind our back: ask the host again.
            tracing::info!(image, path = %environment.root.display(), "python environment went stale");
            self.inner.forget_host();
        }
        let inner = Arc::clone(&self.inner);
        let name = image.to_string();
        let environment = tokio::task::spawn_blocking(move || {
            let host = inner.host(&name)?;
            env::ensure(&inner.options.envs_dir, &inner.options.python, &host, &name)
        })
        .await
        .map_err(|join| Error::CreateEnvironment {
            image: image.to_string(),
            python: self.inner.options.python.clone(),
            detail: format!("creation task failed: {join}"),
        })??;
        environment.touch();
        tracing::info!(
            image,
            path = %environment.root.display(),
            python = %environment.python.display(),
            version = %environment.version,
            "python environment in use"
        );
        *known = Some((environment.clone(), Instant::now()));
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
        process::run(&environment, self.inner.options.inherit, spec, cancel).await
    }
}
