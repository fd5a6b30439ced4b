//! Warm Python for lightweight components: a per-environment "zygote" interpreter
//! that has imported `kfp.dsl.executor_main` once and forks one child per task.
//!
//! Why: a lightweight component's process spends most of its CPU importing kfp
//! (about 0.1 s), which dwarfs the engine's own cost per task and caps fan-outs on
//! small machines. The zygote (`zygote.py`, beside this file) keeps two children forked
//! ahead, each waiting for a task on a pipe, with the imported objects frozen out of
//! the garbage collector so the children copy fewer pages; while it waits, a child
//! rehearses the executor's work on a throwaway component, which takes the
//! copy-on-write faults of first touching shared objects off the task's path. The
//! fork inherits the imported modules; what runs in the child is
//! exactly what the task's own `sh -ec` program would run — the component source
//! written to a fresh temp dir, then `python3 -m kfp.dsl.executor_main
//! --component_module_path <it> <args>` — in the task's directory, environment and
//! log file, in its own process group.
//!
//! Only commands of the exact shape the SDK compiles are taken this way: with the
//! `pip install` preamble of its defaults, which still runs for real first (as
//! `sh -c <preamble> true`), so installs behave as before, or without one
//! (`install_kfp_package=False` and no `packages_to_install`), where kfp comes from
//! the host's packages underneath the environment. Not those compiled with
//! `use_venv=True`, whose preamble makes and activates the interpreter the program
//! runs with. Anything else, a task environment that sets
//! `PYTHON*` or `PATH` variables, or a zygote that cannot start, takes the normal
//! process path. `KFPD_WARM_PYTHON=off` turns the fast path off.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use kfpd_runtime::{Environment, Inherit};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The `sh -ec` program of every lightweight component (whitespace-normalised).
const PROGRAM: &str =
    "program_path=$(mktemp -d) printf \"%s\" \"$0\" > \"$program_path/ephemeral_component.py\" \
     _KFP_RUNTIME=true python3 -m kfp.dsl.executor_main --component_module_path \
     \"$program_path/ephemeral_component.py\" \"$@\"";
/// How the `sh -c` pip preamble hands over to the program.
const PREAMBLE_END: &str = "&& \"$0\" \"$@\"";
/// What the preamble of a component compiled with `use_venv=True` runs before its
/// pinned kfp install: a new virtual environment, activated for the program.
const MAKES_A_VENV: &str = "python3 -m venv";
const ACTIVATES_IT: &str = "/venv/bin/activate";
/// Time a canceled task gets between SIGTERM and SIGKILL (as the process runtime).
const GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a child's exit report after SIGKILL.
const REAP_LIMIT: Duration = Duration::from_secs(10);
/// How long an environment whose zygote could not start runs tasks the normal way.
const RETRY_BROKEN: Duration = Duration::from_secs(60);

/// The zygote itself (a Python program run with `python3 -c`).
const ZYGOTE: &str = include_str!("zygote.py");

/// A lightweight component's command, taken apart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Lightweight {
    /// `sh -c <preamble> true`: the pip installs, without the program after them;
    /// none for a component compiled without them.
    pub preamble: Option<Vec<String>>,
    pub source: String,
    pub args: Vec<String>,
}

/// Recognises the exact commands the SDK compiles for a lightweight component:
/// `sh -c <pip preamble> sh -ec <program> <source> <args>`, or, compiled with
/// `install_kfp_package=False` and nothing to install, `sh -ec <program> <source> <args>`;
/// not those compiled with `use_venv=True`, whose preamble makes the interpreter.
pub(crate) fn recognize(argv: &[String]) -> Option<Lightweight> {
    if let [sh, dash_ec, program, source, args @ ..] = argv {
        if sh == "sh" && dash_ec == "-ec" && is_program(program) {
            return Some(Lightweight {
                preamble: None,
                source: source.clone(),
                args: args.to_vec(),
            });
        }
    }
    let [sh, dash_c, preamble, sh2, dash_ec, program, source, args @ ..] = argv else {
        return None;
    };
    let shape = sh == "sh" && dash_c == "-c" && sh2 == "sh" && dash_ec == "-ec";
    if !shape || !preamble.trim_end().ends_with(PREAMBLE_END) || !is_program(program) {
        return None;
    }
    // `use_venv=True`: the program runs with the interpreter and the kfp of the
    // virtual environment the preamble makes, which a zygote of the image's
    // environment is not.
    if preamble.contains(MAKES_A_VENV) && preamble.contains(ACTIVATES_IT) {
        return None;
    }
    Some(Lightweight {
        preamble: Some(vec![
            sh.clone(),
            dash_c.clone(),
            preamble.clone(),
            "true".to_string(),
        ]),
        source: source.clone(),
        args: args.to_vec(),
    })
}

/// Whether `program` is the SDK's `sh -ec` program, whitespace aside.
fn is_program(program: &str) -> bool {
    program.split_whitespace().eq(PROGRAM.split_whitespace())
}

/// Whether the fast path may be used at all (`KFPD_WARM_PYTHON=off` says no) and
/// for a task with this component environment (no `PYTHON*` or `PATH` variables,
/// which change how an interpreter starts).
pub(crate) fn allowed(component_env: &[(String, String)]) -> bool {
    let off = std::env::var("KFPD_WARM_PYTHON")
        .map(|value| {
            matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "off" | "0" | "false" | "no"
            )
        })
        .unwrap_or(false);
    !off && !component_env
        .iter()
        .any(|(name, _)| name.starts_with("PYTHON") || name == "PATH")
}

/// How a task run in a zygote child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WarmExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub canceled: bool,
}

/// Why the fast path did not run the task.
#[derive(Debug)]
pub(crate) enum WarmError {
    /// Nothing of the task ran: the caller runs it the normal way.
    NotStarted(String),
    /// The zygote went away while the task ran.
    Lost(String),
}

/// One task for a zygote.
pub(crate) struct WarmTask<'a> {
    /// Which of kfpd's variables the task inherits.
    pub inherit: Inherit,
    pub cwd: &'a Path,
    pub log: &'a Path,
    pub env: &'a [(String, String)],
    pub call: &'a Lightweight,
}

/// Runs a recognised lightweight task in its environment's zygote.
pub(crate) async fn run(
    environment: &Environment,
    task: WarmTask<'_>,
    cancel: &CancellationToken,
) -> Result<WarmExit, WarmError> {
    let worker = pool()
        .worker(environment)
        .await
        .map_err(WarmError::NotStarted)?;
    worker.run(environment, task, cancel).await
}

/// Zygotes by environment root, shared by every engine of the process (a zygote
/// serves one environment, whoever asks).
struct Pool {
    workers: tokio::sync::Mutex<HashMap<PathBuf, Arc<Worker>>>,
    /// Environments whose zygote could not start, and when: not tried again for
    /// [`RETRY_BROKEN`] (the host may get the missing kfp meanwhile).
    broken: Mutex<HashMap<PathBuf, (String, Instant)>>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        workers: tokio::sync::Mutex::new(HashMap::new()),
        broken: Mutex::new(HashMap::new()),
    })
}

impl Pool {
    async fn worker(&self, environment: &Environment) -> Result<Arc<Worker>, String> {
        if let Some((reason, since)) = self
            .broken
            .lock()
            .ok()
            .and_then(|broken| broken.get(&environment.root).cloned())
        {
            if since.elapsed() < RETRY_BROKEN {
                return Err(reason);
            }
        }
        let signature = packages_signature(&environment.root);
        let mut workers = self.workers.lock().await;
        if let Some(worker) = workers.get(&environment.root) {
            // Packages changed since the zygote imported them (a task's pip install
            // did real work): a new zygote, so no task sees stale modules.
            if worker.alive.load(Ordering::SeqCst) && worker.signature == signature {
                return Ok(Arc::clone(worker));
            }
        }
        match Worker::start(environment, signature).await {
            Ok(worker) => {
                let worker = Arc::new(worker);
                workers.insert(environment.root.clone(), Arc::clone(&worker));
                Ok(worker)
            }
            Err(reason) => {
                tracing::warn!(environment = %environment.root.display(), %reason, "warm python unavailable; tasks start their own interpreter");
                if let Ok(mut broken) = self.broken.lock() {
                    broken.insert(environment.root.clone(), (reason.clone(), Instant::now()));
                }
                Err(reason)
            }
        }
    }
}

/// Modification times of the environment's site-packages directories: they change
/// when pip adds, removes or replaces a package.
fn packages_signature(root: &Path) -> Vec<(PathBuf, Option<SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(root.join("lib")) else {
        return Vec::new();
    };
    let mut signature: Vec<(PathBuf, Option<SystemTime>)> = entries
        .flatten()
        .map(|entry| entry.path().join("site-packages"))
        .map(|dir| {
            let modified = std::fs::metadata(&dir)
                .and_then(|meta| meta.modified())
                .ok();
            (dir, modified)
        })
        .collect();
    signature.sort();
    signature
}

/// What the zygote reports about one request.
enum Event {
    Started(i32),
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    Failed(String),
}

struct Worker {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Event>>>>,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
    signature: Vec<(PathBuf, Option<SystemTime>)>,
    /// Kept so the zygote is killed when the worker is dropped.
    _child: Child,
}

impl Worker {
    async fn start(
        environment: &Environment,
        signature: Vec<(PathBuf, Option<SystemTime>)>,
    ) -> Result<Worker, String> {
        let path = environment
            .search_path(std::env::var_os("PATH").as_deref())
            .map_err(|error| format!("cannot build PATH: {error}"))?;
        let python = environment.bin.join("python3");
        let mut child = tokio::process::Command::new(&python)
            .args(["-c", ZYGOTE])
            .current_dir(&environment.root)
            // The strictest inheritance whatever the task's: a forked task's
            // /proc/self/environ shows the zygote's environment as it started.
            .env_clear()
            .envs(Inherit::NoCredentials.environment())
            .env_remove("PYTHONHOME")
            .env("PATH", &path)
            .env("VIRTUAL_ENV", &environment.root)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Not in kfpd's process group: a terminal's Ctrl-C is for kfpd, which
            // stops tasks itself; the zygote ends when its stdin closes.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", python.display()))?;
        let stdin = child.stdin.take().ok_or("the zygote has no stdin")?;
        let stdout = child.stdout.take().ok_or("the zygote has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.contains("\"ready\"") => {}
            Ok(Ok(other)) => return Err(format!("the zygote did not start (said {other:?})")),
            Ok(Err(error)) => return Err(format!("cannot read from the zygote: {error}")),
            Err(_) => return Err("the zygote did not start within 60 s".to_string()),
        }
        let pending: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Event>>>> =
            Arc::new(Mutex::new(HashMap::new()));
        let alive = Arc::new(AtomicBool::new(true));
        let reader_pending = Arc::clone(&pending);
        let reader_alive = Arc::clone(&alive);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                dispatch(&reader_pending, &line);
            }
            reader_alive.store(false, Ordering::SeqCst);
            let waiting: Vec<mpsc::UnboundedSender<Event>> = reader_pending
                .lock()
                .map(|mut pending| pending.drain().map(|(_, sender)| sender).collect())
                .unwrap_or_default();
            for sender in waiting {
                let _ = sender.send(Event::Failed("the warm python process exited".to_string()));
            }
        });
        Ok(Worker {
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            next_id: AtomicU64::new(1),
            alive,
            signature,
            _child: child,
        })
    }

    async fn run(
        &self,
        environment: &Environment,
        task: WarmTask<'_>,
        cancel: &CancellationToken,
    ) -> Result<WarmExit, WarmError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (sender, mut events) = mpsc::unbounded_channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id, sender);
        }
        let request = json!({
            "cwd": task.cwd.display().to_string(),
            "log": task.log.display().to_string(),
            "env": Value::Object(task_env(environment, task.inherit, task.env)),
            "source": task.call.source,
            "args": task.call.args,
        });
        // The id before the JSON: the zygote reads it without parsing the request.
        let line = format!("{id} {request}\n");
        let written = self.stdin.lock().await.write_all(line.as_bytes()).await;
        if let Err(error) = written {
            self.forget(id);
            self.alive.store(false, Ordering::SeqCst);
            return Err(WarmError::NotStarted(format!(
                "cannot reach the warm python process: {error}"
            )));
        }
        let pid = match events.recv().await {
            Some(Event::Started(pid)) => pid,
            Some(Event::Failed(reason)) => {
                self.forget(id);
                return Err(WarmError::NotStarted(reason));
            }
            Some(Event::Exited { .. }) | None => {
                self.forget(id);
                return Err(WarmError::NotStarted(
                    "the warm python process did not start the task".to_string(),
                ));
            }
        };
        let result = tokio::select! {
            event = events.recv() => exit_of(event, false),
            _ = cancel.cancelled() => {
                signal_group(pid, libc::SIGTERM);
                let exited = tokio::time::timeout(GRACE, events.recv()).await;
                match exited {
                    Ok(event) => exit_of(event, true),
                    Err(_) => {
                        signal_group(pid, libc::SIGKILL);
                        let event = tokio::time::timeout(REAP_LIMIT, events.recv()).await.ok().flatten();
                        exit_of(event, true)
                    }
                }
            }
        };
        // The task ends with its main process, as a container does: stragglers go with it.
        signal_group(pid, libc::SIGKILL);
        self.forget(id);
        result
    }

    fn forget(&self, id: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&id);
        }
    }
}

fn exit_of(event: Option<Event>, canceled: bool) -> Result<WarmExit, WarmError> {
    match event {
        Some(Event::Exited { code, signal }) => Ok(WarmExit {
            code,
            signal,
            canceled,
        }),
        Some(Event::Failed(reason)) => Err(WarmError::Lost(reason)),
        Some(Event::Started(_)) => Err(WarmError::Lost(
            "the warm python process reported the task twice".to_string(),
        )),
        None if canceled => Ok(WarmExit {
            code: None,
            signal: Some(libc::SIGKILL),
            canceled,
        }),
        None => Err(WarmError::Lost(
            "the warm python process went away".to_string(),
        )),
    }
}

fn dispatch(pending: &Mutex<HashMap<u64, mpsc::UnboundedSender<Event>>>, line: &str) {
    let Ok(message) = serde_json::from_str::<Value>(line) else {
        tracing::warn!(%line, "unexpected line from the warm python process");
        return;
    };
    let Some(id) = message.get("id").and_then(Value::as_u64) else {
        return;
    };
    let as_i32 = |key: &str| {
        message
            .get(key)
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
    };
    let event = if let Some(pid) = as_i32("pid") {
        Event::Started(pid)
    } else if let Some(error) = message.get("error").and_then(Value::as_str) {
        Event::Failed(format!("the warm python process cannot fork: {error}"))
    } else {
        Event::Exited {
            code: as_i32("exit"),
            signal: as_i32("signal"),
        }
    };
    let sender = pending
        .lock()
        .ok()
        .and_then(|pending| pending.get(&id).cloned());
    if let Some(sender) = sender {
        let _ = sender.send(event);
    }
}

/// The environment a task process gets from the runtime: what it inherits of kfpd's,
/// without `PYTHONHOME`, the environment's `bin/` first on `PATH`, the component's
/// variables, and what the program sets (`_KFP_RUNTIME=true`).
fn task_env(
    environment: &Environment,
    inherit: Inherit,
    component_env: &[(String, String)],
) -> Map<String, Value> {
    let mut env: Map<String, Value> = inherit
        .environment()
        .into_iter()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(key, _)| key != "PYTHONHOME")
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    let inherited: Option<OsString> = std::env::var_os("PATH");
    if let Ok(path) = environment.search_path(inherited.as_deref()) {
        env.insert(
            "PATH".into(),
            Value::String(path.to_string_lossy().into_owned()),
        );
    }
    env.insert("PIP_DISABLE_PIP_VERSION_CHECK".into(), json!("1"));
    for (key, value) in component_env {
        env.insert(key.clone(), json!(value));
    }
    env.insert(
        "VIRTUAL_ENV".into(),
        json!(environment.root.display().to_string()),
    );
    env.insert("_KFP_RUNTIME".into(), json!("true"));
    env
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lightweight_argv() -> Vec<String> {
        [
            "sh",
            "-c",
            "\nif ! [ -x \"$(command -v pip)\" ]; then\n    python3 -m ensurepip || python3 -m ensurepip --user || apt-get install python3-pip\nfi\n\nPIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet --no-warn-script-location 'kfp==2.15.0' '--no-deps' && \"$0\" \"$@\"\n",
            "sh",
            "-ec",
            "program_path=$(mktemp -d)\n\nprintf \"%s\" \"$0\" > \"$program_path/ephemeral_component.py\"\n_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main                         --component_module_path                         \"$program_path/ephemeral_component.py\"                         \"$@\"\n",
            "def square(x: int) -> int:\n    return x * x\n",
            "--executor_input",
            "{}",
            "--function_to_execute",
            "square",
        ]
        .iter()
        .map(|item| item.to_string())
        .collect()
    }

    #[test]
    fn recognizes_the_sdk_command_only() {
        let argv = lightweight_argv();
        let call = recognize(&argv).expect("the SDK's shape");
        let preamble = call.preamble.as_ref().expect("a preamble");
        assert_eq!(preamble.len(), 4);
        assert_eq!(preamble[3], "true", "the preamble runs without the program");
        assert_eq!(call.source, argv[6]);
        assert_eq!(
            call.args,
            ["--executor_input", "{}", "--function_to_execute", "square"]
        );

        let mut other_program = argv.clone();
        other_program[5] = other_program[5].replace("executor_main", "other_main");
        assert_eq!(recognize(&other_program), None);
        let mut no_handover = argv.clone();
        no_handover[2] = "pip install x".into();
        assert_eq!(recognize(&no_handover), None);
        assert_eq!(recognize(&argv[..6]), None);
        let container = vec!["sh".to_string(), "-c".into(), "echo hi".into()];
        assert_eq!(recognize(&container), None);

        // Compiled with install_kfp_package=False: the program alone.
        let bare = argv[3..].to_vec();
        let call = recognize(&bare).expect("the SDK's shape without a preamble");
        assert_eq!(call.preamble, None);
        assert_eq!(call.source, argv[6]);
        assert_eq!(call.args, argv[7..]);
        let mut other = bare.clone();
        other[2] = other[2].replace("executor_main", "other_main");
        assert_eq!(recognize(&other), None);
        // Compiled with use_venv=True: the preamble's own virtual environment runs it.
        let mut venv = argv.clone();
        venv[2] = venv[2].replace(
            "PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip",
            "PIP_DISABLE_PIP_VERSION_CHECK=1 \nexport PIP_DISABLE_PIP_VERSION_CHECK=1\ntmp=$(mktemp -d)\npython3 -m venv \"$tmp/venv\" --system-site-packages\n. \"$tmp/venv/bin/activate\"\n python3 -m pip",
        );
        assert_ne!(venv[2], argv[2]);
        assert_eq!(recognize(&venv), None);

        let mut not_ec = bare.clone();
        not_ec[1] = "-c".into();
        assert_eq!(recognize(&not_ec), None);
        assert_eq!(recognize(&bare[..3]), None);
    }

    #[test]
    fn python_settings_in_the_task_env_take_the_normal_path() {
        assert!(!allowed(&[("PYTHONPATH".into(), "/x".into())]));
        assert!(!allowed(&[("PATH".into(), "/x".into())]));
    }
}
