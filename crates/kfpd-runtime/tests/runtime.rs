//! Real processes, real virtual environments: the runtime against the host's `python3`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kfpd_runtime::{Error, Exit, Options, ProcessSpec, Runtime};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "python:3.11";

struct Fixture {
    dir: tempfile::TempDir,
    runtime: Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new(Options::new(dir.path().join("envs")));
        Fixture { dir, runtime }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A task spec with its own working directory and log under the fixture.
    fn spec(&self, name: &str, argv: &[&str]) -> ProcessSpec {
        let cwd = self.path(name);
        std::fs::create_dir_all(&cwd).expect("cwd");
        ProcessSpec {
            image: IMAGE.to_string(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            cwd,
            log_path: self.path(&format!("{name}.log")),
        }
    }

    async fn run(&self, spec: ProcessSpec) -> Exit {
        self.runtime
            .run(spec, CancellationToken::new())
            .await
            .expect("run")
    }

    async fn sh(&self, name: &str, script: &str) -> (Exit, String) {
        let spec = self.spec(name, &["sh", "-c", script]);
        let log = spec.log_path.clone();
        let exit = self.run(spec).await;
        (exit, read(&log))
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn host_python() -> PathBuf {
    Options::new("unused").python
}

/// Builds `kfpdprobe-0.1-py3-none-any.whl` (module `kfpdprobe`, `VALUE = 42`) into `dir`.
fn build_wheel(dir: &Path) {
    std::fs::create_dir_all(dir).expect("wheel dir");
    let script = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + '/kfpdprobe-0.1-py3-none-any.whl', 'w') as z:
    z.writestr('kfpdprobe/__init__.py', 'VALUE = 42\n')
    z.writestr('kfpdprobe-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\nName: kfpdprobe\nVersion: 0.1\n')
    z.writestr('kfpdprobe-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\nGenerator: kfpd-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
    z.writestr('kfpdprobe-0.1.dist-info/RECORD', '')
"#;
    let status = Command::new(host_python())
        .args(["-c", script])
        .arg(dir)
        .status()
        .expect("host python");
    assert!(status.success());
}

/// Whether `pid` is a running process (a zombie is not: it only waits to be reaped).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
            !matches!(state.as_deref(), Some("Z") | Some("X"))
        }
        Err(_) => Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
    }
}

async fn wait_for_lines(path: &Path, lines: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids: Vec<i32> = read(path)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= lines {
            return pids;
        }
        assert!(Instant::now() < deadline, "no pids in {}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn environment_is_created_once_under_concurrency_and_reused() {
    let fx = Fixture::new();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let runtime = fx.runtime.clone();
            tokio::spawn(async move { runtime.environment(IMAGE).await })
        })
        .collect();
    let mut envs = Vec::new();
    for call in calls {
        envs.push(call.await.expect("join").expect("environment"));
    }
    assert!(envs.windows(2).all(|w| w[0] == w[1]));
    let env = &envs[0];
    assert_eq!(env.bin, env.root.join("bin"));
    let entries: Vec<_> = std::fs::read_dir(fx.path("envs"))
        .expect("envs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].starts_with("python_3.11-"), "{entries:?}");

    // A restarted server (a new runtime on the same directory) reuses it as it is.
    let layout = env.root.join(".kfpd/layout");
    let before = std::fs::metadata(&layout)
        .and_then(|m| m.modified())
        .expect("layout");
    let again = Runtime::new(Options::new(fx.path("envs")))
        .environment(IMAGE)
        .await
        .expect("environment");
    assert_eq!(&again, env);
    let after = std::fs::metadata(&layout)
        .and_then(|m| m.modified())
        .expect("layout");
    assert_eq!(before, after);

    // Two runtimes racing (as two processes would) still end with one environment.
    let first = Runtime::new(Options::new(fx.path("envs")));
    let second = Runtime::new(Options::new(fx.path("envs")));
    let (a, b) = tokio::join!(
        first.environment("python:3.12"),
        second.environment("python:3.12"),
    );
    assert_eq!(a.expect("a"), b.expect("b"));
    assert_eq!(std::fs::read_dir(fx.path("envs")).expect("envs").count(), 2);
}

#[tokio::test]
async fn stale_or_removed_environment_is_rebuilt() {
    let fx = Fixture::new();
    let env = fx.runtime.environment(IMAGE).await.expect("environment");
    std::fs::remove_file(env.root.join(".kfpd/layout")).expect("remove layout");
    let rebuilt = fx.runtime.environment(IMAGE).await.expect("rebuilt");
    assert_eq!(rebuilt, env);
    assert!(env.root.join(".kfpd/layout").exists());

    std::fs::remove_dir_all(&env.root).expect("remove env");
    let (exit, log) = fx.sh("after-removal", "python3 -c 'print(1 + 1)'").await;
    assert!(exit.success(), "{log}");
    assert_eq!(log, "2\n");
    let leftovers: Vec<_> = std::fs::read_dir(fx.path("envs"))
        .expect("envs")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[tokio::test]
async fn task_python_is_the_environment_over_host_packages() {
    let fx = Fixture::new();
    let env = fx.runtime.environment(IMAGE).await.expect("environment");
    let script = r#"
import json, os, sys, importlib.util
print(json.dumps({
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "virtual_env": os.environ.get("VIRTUAL_ENV"),
    "pip": importlib.util.find_spec("pip") is not None,
    "path0": os.environ["PATH"].split(":")[0],
    "nocheck": os.environ.get("PIP_DISABLE_PIP_VERSION_CHECK"),
    "component": os.environ.get("COMPONENT_VAR"),
}))
"#;
    for python in ["python3", "python"] {
        let mut spec = fx.spec(python, &[python, "-c", script]);
        spec.env
            .push(("COMPONENT_VAR".into(), "from-component".into()));
        let log = spec.log_path.clone();
        let exit = fx.run(spec).await;
        assert!(exit.success(), "{}", read(&log));
        let seen: serde_json::Value = serde_json::from_str(&read(&log)).expect("json");
        let root = std::fs::canonicalize(&env.root).expect("root");
        let prefix = std::fs::canonicalize(seen["prefix"].as_str().expect("prefix")).expect("p");
        assert_eq!(prefix, root);
        assert_ne!(seen["base_prefix"], seen["prefix"]);
        assert_eq!(seen["virtual_env"], env.root.to_str().expect("utf-8"));
        assert_eq!(seen["pip"], true, "host pip importable underneath");
        assert_eq!(seen["path0"], env.bin.to_str().expect("utf-8"));
        assert_eq!(seen["nocheck"], "1");
        assert_eq!(seen["component"], "from-component");
    }

    // python, python3, pip and pip3 on the task's PATH are the environment's.
    let (exit, log) = fx
        .sh(
            "which",
            "for c in python python3 pip pip3; do command -v $c; done",
        )
        .await;
    assert!(exit.success());
    for (line, name) in log.lines().zip(["python", "python3", "pip", "pip3"]) {
        assert_eq!(Path::new(line), env.bin.join(name));
    }

    // Plain pip commands pass through to the real pip.
    let (exit, log) = fx
        .sh("pip-version", "python3 -m pip --version && pip --version")
        .await;
    assert!(exit.success(), "{log}");
    assert_eq!(
        log.lines().filter(|l| l.starts_with("pip ")).count(),
        2,
        "{log}"
    );
}

#[tokio::test]
async fn pip_install_is_remembered_serialised_and_stays_in_the_environment() {
    let fx = Fixture::new();
    let wheels = fx.path("wheels");
    build_wheel(&wheels);
    let env = fx.runtime.environment(IMAGE).await.expect("environment");
    let wheels = wheels.to_str().expect("utf-8");
    let install =
        format!("python3 -m pip install --quiet --no-index --find-links {wheels} kfpdprobe");
    let markers = env.root.join(".kfpd/pip");

    // Four tasks install at once: pip runs once, the others wait on the lock and find the marker.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let mut spec = fx.spec(
                &format!("first-{i}"),
                &[
                    "sh",
                    "-c",
                    &format!("{install} && python3 -c 'import kfpdprobe; print(kfpdprobe.VALUE)'"),
                ],
            );
            let pip_log = fx.path(&format!("first-{i}.pip.log"));
            spec.env
                .push(("PIP_LOG".into(), pip_log.to_string_lossy().into_owned()));
            let runtime = fx.runtime.clone();
            tokio::spawn(async move {
                let log = spec.log_path.clone();
                let exit = runtime
                    .run(spec, CancellationToken::new())
                    .await
                    .expect("run");
                (exit, read(&log), pip_log.exists())
            })
        })
        .collect();
    let mut pip_runs = 0;
    for task in tasks {
        let (exit, log, ran_pip) = task.await.expect("join");
        assert!(exit.success(), "{log}");
        assert_eq!(log, "42\n");
        pip_runs += usize::from(ran_pip);
    }
    assert_eq!(pip_runs, 1, "pip ran once for four identical installs");
    assert_eq!(std::fs::read_dir(&markers).expect("markers").count(), 1);

    // Later tasks, by `python3 -m pip` or `pip`, never start pip; the host never saw the package.
    for (name, command) in [
        ("again", install.clone()),
        ("again-pip", install.replacen("python3 -m pip", "pip", 1)),
        ("again-pip3", install.replacen("python3 -m pip", "pip3", 1)),
    ] {
        let mut spec = fx.spec(name, &["sh", "-c", &command]);
        let pip_log = fx.path(&format!("{name}.pip.log"));
        spec.env
            .push(("PIP_LOG".into(), pip_log.to_string_lossy().into_owned()));
        let started = Instant::now();
        let exit = fx.run(spec).await;
        assert!(exit.success());
        assert!(!pip_log.exists(), "{name}: pip was started");
        eprintln!("{name}: satisfied install took {:?}", started.elapsed());
    }
    let host = Command::new(host_python())
        .args(["-c", "import kfpdprobe"])
        .output()
        .expect("host python");
    assert!(
        !host.status.success(),
        "package leaked into the host python"
    );
    assert!(env.root.join("lib").read_dir().expect("lib").any(|d| d
        .map(|d| d.path().join("site-packages/kfpdprobe").exists())
        .unwrap_or(false)));

    // A different install really runs pip and drops the markers it may have invalidated.
    let (exit, log) = fx
        .sh(
            "other",
            &format!("pip install --quiet --no-index --find-links {wheels} 'kfpdprobe==0.1'"),
        )
        .await;
    assert!(exit.success(), "{log}");
    assert_eq!(std::fs::read_dir(&markers).expect("markers").count(), 1);
    let mut spec = fx.spec("after-other", &["sh", "-c", &install]);
    let pip_log = fx.path("after-other.pip.log");
    spec.env
        .push(("PIP_LOG".into(), pip_log.to_string_lossy().into_owned()));
    assert!(fx.run(spec).await.success());
    assert!(pip_log.exists(), "marker should have been dropped");

    // A failing install reports pip's failure and leaves no marker (it may have changed
    // things, so the earlier markers go too).
    let (exit, _) = fx
        .sh("missing", &format!("python3 -m pip install --quiet --no-index --find-links {wheels} no-such-package-kfpd"))
        .await;
    assert!(!exit.success());
    assert_eq!(std::fs::read_dir(&markers).expect("markers").count(), 0);

    // Installs from requirement files or local paths are never taken as done.
    std::fs::write(fx.path("reqs.txt"), "kfpdprobe\n").expect("reqs");
    let reqs = format!(
        "pip install --quiet --no-index --find-links {wheels} -r {}",
        fx.path("reqs.txt").display()
    );
    assert!(fx.sh("reqs-1", &reqs).await.0.success());
    assert_eq!(std::fs::read_dir(&markers).expect("markers").count(), 0);
}

#[tokio::test]
async fn output_is_logged_interleaved_line_by_line_while_running() {
    let fx = Fixture::new();
    let spec = fx.spec(
        "interleave",
        &[
            "sh",
            "-c",
            "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; \
             printf 'err2 no newline' >&2; sleep 0.2; echo out3; sleep 1.5",
        ],
    );
    let log = spec.log_path.clone();
    std::fs::write(&log, "earlier\n").expect("seed log");
    let runtime = fx.runtime.clone();
    let task = tokio::spawn(async move { runtime.run(spec, CancellationToken::new()).await });
    // Readers tail the file while the task runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read(&log).contains("out3") {
        assert!(
            Instant::now() < deadline,
            "log not written while running: {:?}",
            read(&log)
        );
        assert!(!task.is_finished(), "task ended before its output showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = task.await.expect("join").expect("run");
    assert!(exit.success());
    assert_eq!(
        read(&log),
        "earlier\nout1\nerr1\nout2\nerr2 no newlineout3\n",
        "one stream for both, as `2>&1`: a line without its newline runs on"
    );
}

#[tokio::test]
async fn stdout_and_stderr_keep_the_order_they_were_written_in() {
    let fx = Fixture::new();
    let (exit, log) = fx
        .sh(
            "order",
            "i=0; while [ $i -lt 300 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; echo last >&2",
        )
        .await;
    assert!(exit.success());
    let mut expected = String::new();
    for i in 0..300 {
        expected.push_str(&format!("out{i}\nerr{i}\n"));
    }
    expected.push_str("last\n");
    assert_eq!(log, expected);
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let fx = Fixture::new();
    let (ok, _) = fx.sh("ok", "true").await;
    assert_eq!((ok.code, ok.signal, ok.canceled), (Some(0), None, false));
    assert!(ok.success());
    let (failed, _) = fx.sh("failed", "exit 3").await;
    assert_eq!((failed.code, failed.signal), (Some(3), None));
    assert!(!failed.success());
    let (killed, _) = fx.sh("killed", "kill -TERM $$").await;
    assert_eq!((killed.code, killed.signal), (None, Some(15)));
    assert!(!killed.success());
}

#[tokio::test]
async fn processes_left_behind_die_with_the_task() {
    let fx = Fixture::new();
    let pid_file = fx.path("straggler.pid");
    let started = Instant::now();
    let (exit, _) = fx
        .sh(
            "straggler",
            &format!("sleep 100 & echo $! > {}; echo done", pid_file.display()),
        )
        .await;
    assert!(exit.success());
    // The straggler sleeps 100 s: a task that waited for it would take that long.
    assert!(started.elapsed() < Duration::from_secs(60));
    let pid: i32 = read(&pid_file).trim().parse().expect("pid");
    assert!(
        gone_within(pid, Duration::from_secs(5)).await,
        "background process outlived the task"
    );
}

/// A killed process needs a moment to die on a loaded machine.
async fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while running(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn cancel_kills_the_whole_process_tree() {
    let fx = Fixture::new();
    let pids = fx.path("tree.pids");
    let spec = fx.spec(
        "tree",
        &[
            "sh",
            "-c",
            &format!(
                "sleep 100 & echo $! >> {p}; sleep 100 & echo $! >> {p}; echo $$ >> {p}; wait",
                p = pids.display()
            ),
        ],
    );
    let cancel = CancellationToken::new();
    let runtime = fx.runtime.clone();
    let token = cancel.clone();
    let task = tokio::spawn(async move { runtime.run(spec, token).await });
    let recorded = wait_for_lines(&pids, 3).await;
    let canceled_at = Instant::now();
    cancel.cancel();
    let exit = task.await.expect("join").expect("run");
    assert!(canceled_at.elapsed() < Duration::from_secs(5));
    assert!(exit.canceled && !exit.success());
    assert_eq!(exit.signal, Some(libc_sigterm()));
    for pid in recorded {
        assert!(
            gone_within(pid, Duration::from_secs(5)).await,
            "pid {pid} survived cancel"
        );
    }
}

#[tokio::test]
async fn cancel_escalates_to_sigkill_for_processes_ignoring_sigterm() {
    let fx = Fixture::new();
    let pids = fx.path("stubborn.pids");
    let spec = fx.spec(
        "stubborn",
        &[
            "sh",
            "-c",
            &format!(
                "trap '' TERM; sleep 100 & echo $! >> {p}; echo $$ >> {p}; wait; wait",
                p = pids.display()
            ),
        ],
    );
    let cancel = CancellationToken::new();
    let runtime = fx.runtime.clone();
    let token = cancel.clone();
    let task = tokio::spawn(async move { runtime.run(spec, token).await });
    let recorded = wait_for_lines(&pids, 2).await;
    let canceled_at = Instant::now();
    cancel.cancel();
    let exit = task.await.expect("join").expect("run");
    let took = canceled_at.elapsed();
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(exit.canceled);
    assert_eq!(exit.signal, Some(9));
    for pid in recorded {
        assert!(
            gone_within(pid, Duration::from_secs(5)).await,
            "pid {pid} survived cancel"
        );
    }
}

#[tokio::test]
async fn cancel_before_start_runs_nothing() {
    let fx = Fixture::new();
    let marker = fx.path("ran");
    let spec = fx.spec(
        "never",
        &["sh", "-c", &format!("touch {}", marker.display())],
    );
    let cancel = CancellationToken::new();
    cancel.cancel();
    let exit = fx.runtime.run(spec, cancel).await.expect("run");
    assert!(exit.canceled && exit.code.is_none());
    assert!(!marker.exists());
}

#[tokio::test]
async fn unusable_commands_are_errors_that_say_why() {
    let fx = Fixture::new();
    let err = fx
        .runtime
        .run(
            fx.spec("missing", &["no-such-command-kfpd", "x"]),
            CancellationToken::new(),
        )
        .await
        .expect_err("missing command");
    assert!(matches!(err, Error::CommandNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("no-such-command-kfpd") && message.contains(IMAGE),
        "{message}"
    );

    let err = fx
        .runtime
        .run(fx.spec("empty", &[]), CancellationToken::new())
        .await
        .expect_err("empty argv");
    assert!(matches!(err, Error::EmptyCommand { .. }), "{err:?}");

    let mut spec = fx.spec("nocwd", &["true"]);
    spec.cwd = fx.path("does-not-exist");
    let err = fx
        .runtime
        .run(spec, CancellationToken::new())
        .await
        .expect_err("missing cwd");
    assert!(err.to_string().contains("does-not-exist"), "{err}");

    let mut spec = fx.spec("nolog", &["true"]);
    spec.log_path = fx.path("no-dir/task.log");
    let err = fx
        .runtime
        .run(spec, CancellationToken::new())
        .await
        .expect_err("unwritable log");
    assert!(err.to_string().contains("no-dir/task.log"), "{err}");
}

#[tokio::test]
async fn unusable_python_is_an_error_naming_image_and_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Options {
        envs_dir: dir.path().join("envs"),
        python: dir.path().join("no-python"),
        inherit: Default::default(),
    });
    let err = runtime.environment(IMAGE).await.expect_err("no python");
    let message = err.to_string();
    assert!(
        message.contains(IMAGE) && message.contains("no-python"),
        "{message}"
    );
    let leftovers = std::fs::read_dir(dir.path().join("envs"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "a failed build leaves nothing behind");
}

fn libc_sigterm() -> i32 {
    15
}
