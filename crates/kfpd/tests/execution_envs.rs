//! `kfpd serve` started from a virtualenv that has the kfp SDK, as most users start it:
//! lightweight components compiled without the pip preamble find kfp there and run in the
//! warm interpreter, and a component's own `pip install kfp==…` lands in its environment.
//! Also `kfpd envs list` and `kfpd envs prune` on the environments those runs made.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};

/// The SDK's virtualenv (`$KFPD_E2E_VENV`, made by `tests/e2e/run.sh`), when it has kfp.
/// Without it the test is skipped with a message, except under `CI=true`.
fn sdk_venv() -> Option<PathBuf> {
    let venv = std::env::var_os("KFPD_E2E_VENV")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kfpd-e2e-venv"))
        })?;
    let python = venv.join("bin").join("python3");
    let has_kfp = Command::new(&python)
        .args(["-c", "import kfp"])
        .output()
        .is_ok_and(|output| output.status.success());
    if has_kfp {
        return Some(venv);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{} has no kfp; make it with `KFPD_E2E_SETUP_ONLY=1 bash tests/e2e/run.sh`",
            venv.display()
        );
    }
    eprintln!(
        "skipped: no virtualenv with kfp at {} (make it with `KFPD_E2E_SETUP_ONLY=1 bash tests/e2e/run.sh`)",
        venv.display()
    );
    None
}

const PIPELINE: &str = r#"
import sys
from kfp import compiler, dsl


@dsl.component(install_kfp_package=False)
def add(a: int, b: int) -> int:
    return a + b


@dsl.component(install_kfp_package=False)
def where() -> str:
    import kfp, sys
    print("kfp from " + kfp.__file__)
    return sys.prefix


@dsl.component
def pinned(a: int) -> int:
    import kfp
    print("pinned kfp from " + kfp.__file__)
    return a * 10


@dsl.pipeline(name="no-preamble")
def no_preamble(x: int = 1) -> int:
    one = add(a=x, b=1).set_caching_options(False)
    two = add(a=one.output, b=1).set_caching_options(False)
    where().set_caching_options(False)
    return pinned(a=two.output).set_caching_options(False).output


compiler.Compiler().compile(no_preamble, sys.argv[1])
"#;

fn compile(python: &Path, dir: &Path, source: &str) -> Value {
    let script = dir.join("pipeline.py");
    std::fs::write(&script, source).expect("script");
    let compiled = dir.join("pipeline.yaml");
    let output = Command::new(python)
        .arg(&script)
        .arg(&compiled)
        .output()
        .expect("compile");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&compiled).expect("compiled");
    let package = kfpd_ir::read_package("pipeline.yaml", text.as_bytes()).expect("package");
    package.api_pipeline_spec()
}

async fn run_to_end(server: &Server, spec: &Value, limit: Duration) -> Value {
    let body = json!({
        "display_name": "no preamble",
        "pipeline_spec": spec,
        "runtime_config": {"parameters": {"x": 5}},
    });
    let (status, run) = server.post("/runs", &body).await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    let started = Instant::now();
    loop {
        let (_, run) = server.get(&format!("/runs/{run_id}")).await;
        let state = run["state"].as_str().unwrap_or_default();
        if matches!(state, "SUCCEEDED" | "FAILED" | "CANCELED" | "SKIPPED") {
            return run;
        }
        assert!(
            started.elapsed() < limit,
            "run still {state} after {limit:?}:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["run_details"]["task_details"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["display_name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {run}"))
}

async fn log_of(server: &Server, run: &Value, name: &str) -> String {
    let run_id = run["run_id"].as_str().unwrap_or_default();
    let task_id = task(run, name)["task_id"].as_str().unwrap_or_default();
    let url = format!(
        "{}/apis/v1alpha1/runs/{run_id}/nodes/{task_id}/log",
        server.base
    );
    let response = server.client.get(&url).send().await.expect("log");
    assert_eq!(response.status(), 200, "{url}\n{run}");
    response.text().await.expect("log text")
}

fn kfpd_envs(envs_dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .arg("envs")
        .args(args)
        .arg("--envs-dir")
        .arg(envs_dir)
        .output()
        .expect("kfpd envs");
    assert!(
        output.status.success(),
        "kfpd envs {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_without_the_pip_preamble_use_the_virtualenv_kfpd_runs_from() {
    let Some(venv) = sdk_venv() else {
        return;
    };
    let venv_bin = venv.join("bin");
    let python = venv_bin.join("python3");
    let base_has_kfp = Command::new(&python)
        .args([
            "-c",
            "import subprocess, sys; sys.exit(subprocess.call([sys._base_executable, '-c', 'import kfp']))",
        ])
        .output()
        .is_ok_and(|output| output.status.success());
    if base_has_kfp {
        eprintln!("note: the virtualenv's base interpreter has kfp too; the test shows less");
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let spec = compile(&python, scratch.path(), PIPELINE);
    let envs_dir = scratch.path().join("envs");
    let path = std::env::join_paths(std::iter::once(venv_bin.clone()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let path = path.to_string_lossy().into_owned();
    let envs = envs_dir.to_string_lossy().into_owned();
    let server = Server::start_with_env(
        &["--executor", "local"],
        &[
            ("PATH", path.as_str()),
            ("KFPD_ENVS_DIR", envs.as_str()),
            (
                "KFPD_LOG",
                "warn,kfpd_runtime=info,kfpd_engine::container=debug",
            ),
        ],
    );

    let run = run_to_end(&server, &spec, Duration::from_secs(600)).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());

    // kfp came from the virtualenv (no preamble installs it), in an environment made from it.
    let log = log_of(&server, &run, "where").await;
    let site = venv.join("lib");
    assert!(
        log.contains(&format!("kfp from {}", site.display())),
        "{log}"
    );
    // The warm path runs the executor as `python3 -m` would, so a task's log holds only
    // what the task printed, not a warning about how it was started.
    assert!(!log.contains("RuntimeWarning"), "{log}");
    // The pinned install is the environment's own, whatever the virtualenv has.
    let log = log_of(&server, &run, "pinned").await;
    assert!(
        log.contains(&format!("pinned kfp from {}", envs_dir.display())),
        "{log}"
    );

    // That install is remembered, so later tasks of the image start no pip.
    let markers: usize = std::fs::read_dir(&envs_dir)
        .expect("envs")
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().contains("kfp__2.15.0"))
        .map(|entry| {
            std::fs::read_dir(entry.path().join(".kfpd/pip"))
                .map(|markers| markers.count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(markers, 1, "the pinned install is not remembered");

    // Every task took the warm interpreter, with or without a preamble; the log names
    // the environments.
    let stderr = server.stderr();
    let warm = stderr.matches("task runs in the warm python").count();
    assert_eq!(warm, 4, "{stderr}");
    assert!(
        stderr.contains("python environment in use") && stderr.contains(&*envs),
        "{stderr}"
    );
    drop(server);

    // Both environments are listed with the virtualenv's interpreter, and prune keeps
    // what is usable unless told otherwise.
    let listed = kfpd_envs(&envs_dir, &["list"]);
    let rows: Vec<&str> = listed.lines().filter(|l| l.contains(" ready")).collect();
    assert_eq!(rows.len(), 2, "{listed}");
    for row in &rows {
        assert!(row.contains(&*python.to_string_lossy()), "{listed}");
        assert!(row.contains("MiB") || row.contains("KiB"), "{listed}");
    }
    assert!(listed.contains("python:3.11+kfp==2.15.0"), "{listed}");

    // A stale one (made by an older kfpd) is removed by a plain prune.
    let stale = envs_dir.join("python_3.9-000000000000");
    std::fs::create_dir_all(stale.join(".kfpd")).expect("stale");
    std::fs::write(stale.join(".kfpd/layout"), "kfpd-env 1\n").expect("layout");
    std::fs::write(stale.join(".kfpd/image"), "python:3.9\n").expect("image");
    let listed = kfpd_envs(&envs_dir, &["list"]);
    assert!(
        listed.contains("python:3.9") && listed.contains("stale"),
        "{listed}"
    );
    let pruned = kfpd_envs(&envs_dir, &["prune"]);
    assert!(pruned.contains("1 environment(s) removed"), "{pruned}");
    assert!(!stale.exists());
    let pruned = kfpd_envs(&envs_dir, &["prune", "--unused-for", "1d"]);
    assert!(pruned.contains("0 environment(s) removed"), "{pruned}");
    let pruned = kfpd_envs(&envs_dir, &["prune", "--unused-for", "0s"]);
    assert!(pruned.contains("2 environment(s) removed"), "{pruned}");
    let listed = kfpd_envs(&envs_dir, &["list"]);
    assert_eq!(
        listed.lines().count(),
        2,
        "only the header is left: {listed}"
    );
}

const ENVIRONMENT_PIPELINE: &str = r#"
import sys
from kfp import compiler, dsl


@dsl.component(install_kfp_package=False)
def warm_task():
    import os
    with open("/proc/self/environ", "rb") as f:
        raw = f.read().replace(b"\0", b"\n").decode(errors="replace")
    print("os.environ:\n" + "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
    print("/proc/self/environ:\n" + raw)


@dsl.container_component
def process_task():
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", "env; tr '\\0' '\\n' < /proc/self/environ"])


@dsl.pipeline(name="environment-seen")
def environment_seen():
    warm_task().set_caching_options(False)
    process_task().set_caching_options(False)


compiler.Compiler().compile(environment_seen, sys.argv[1])
"#;

/// Variables kfpd is started with, by what a task must see of them: kfpd's settings
/// and the store keys never, a cloud key only in single-user mode, the rest always.
const WITHHELD: &[(&str, &str)] = &[
    ("KFPD_CANARY_SETTING", "kfpd-setting-canary"),
    ("DBCONFIG_PASSWORD", "database-password-canary"),
    ("accesskey", "access-key-canary"),
    ("secretkey", "secret-key-canary"),
];
const CLOUD_KEY: (&str, &str) = ("AWS_SECRET_ACCESS_KEY", "cloud-key-canary");
const PLAIN: (&str, &str) = ("INHERITED_CANARY", "plain-canary");

const POLICY: &str =
    "bindings:\n  - namespace: team-a\n    role: admin\n    users: [alice@example.com]\n";

async fn environment_logs(multi_user: bool, venv: &Path) -> Vec<(String, String)> {
    let venv_bin = venv.join("bin");
    let scratch = tempfile::tempdir().expect("tempdir");
    let spec = compile(
        &venv_bin.join("python3"),
        scratch.path(),
        ENVIRONMENT_PIPELINE,
    );
    let path = std::env::join_paths(std::iter::once(venv_bin.clone()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH")
    .to_string_lossy()
    .into_owned();
    let policy = scratch.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let policy = policy.to_string_lossy().into_owned();
    let mut args = vec!["--executor", "local"];
    if multi_user {
        args.extend([
            "--multi-user",
            "true",
            "--policy-file",
            &policy,
            "--trusted-proxies",
            "127.0.0.1/32",
        ]);
    }
    let mut env = vec![
        ("PATH", path.as_str()),
        ("KFPD_LOG", "warn,kfpd_engine::container=debug"),
        CLOUD_KEY,
        PLAIN,
    ];
    env.extend_from_slice(WITHHELD);
    let server = Server::start_with_env(&args, &env);
    let send = |request: reqwest::RequestBuilder| {
        let request = request.header("kubeflow-userid", "alice@example.com");
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            (status, text)
        }
    };
    let api = format!("{}/apis/v2beta1", server.base);
    let (status, experiment) = send(
        server
            .client
            .post(format!("{api}/experiments"))
            .json(&json!({"display_name": "environments", "namespace": "team-a"})),
    )
    .await;
    assert_eq!(status, 200, "{experiment}");
    let experiment: Value = serde_json::from_str(&experiment).expect("experiment");
    let (status, run) = send(server.client.post(format!("{api}/runs")).json(&json!({
        "display_name": "environments",
        "experiment_id": experiment["experiment_id"],
        "pipeline_spec": spec,
    })))
    .await;
    assert_eq!(status, 200, "{run}");
    let run: Value = serde_json::from_str(&run).expect("run");
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    let started = Instant::now();
    let run = loop {
        let (_, text) = send(server.client.get(format!("{api}/runs/{run_id}"))).await;
        let run: Value = serde_json::from_str(&text).expect("run");
        if matches!(
            run["state"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "CANCELED")
        ) {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{run}\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());
    let mut logs = Vec::new();
    for name in ["warm-task", "process-task"] {
        let task_id = task(&run, name)["task_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (status, log) = send(server.client.get(format!(
            "{}/apis/v1alpha1/runs/{run_id}/nodes/{task_id}/log",
            server.base
        )))
        .await;
        assert_eq!(status, 200, "{log}");
        logs.push((name.to_string(), log));
    }
    let stderr = server.stderr();
    assert!(
        stderr.contains("task runs in the warm python"),
        "the warm path was not taken:\n{stderr}"
    );
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_never_inherit_kfpds_settings_or_store_keys() {
    let Some(venv) = sdk_venv() else {
        return;
    };
    for multi_user in [false, true] {
        for (task, log) in environment_logs(multi_user, &venv).await {
            let context = format!("{task}, multi-user {multi_user}:\n{log}");
            // Seen twice (the environment and /proc/self/environ), so both are read.
            assert_eq!(log.matches(PLAIN.1).count(), 2, "{context}");
            for (name, value) in WITHHELD {
                assert!(!log.contains(value), "{name} reached {context}");
            }
            // A warm task's /proc/self/environ is its zygote's, which starts with the
            // strictest inheritance whatever the mode; its os.environ has the key.
            let cloud_key_seen = log.matches(CLOUD_KEY.1).count();
            let expected = match (multi_user, task.as_str()) {
                (true, _) => 0,
                (false, "warm-task") => 1,
                (false, _) => 2,
            };
            assert_eq!(cloud_key_seen, expected, "{context}");
        }
    }
}

const FINGERPRINT_PIPELINE: &str = r#"
import sys
from kfp import compiler, dsl


@dsl.component(install_kfp_package=False)
def fingerprint(x: int) -> int:
    # What a component can see of how its interpreter was started and prepared, with
    # this task's own paths replaced by names so two runs compare.
    import json, logging, os, sys, tempfile, warnings
    program = os.path.dirname(globals()["__file__"])
    cwd = os.getcwd()
    tmp = os.environ.get("TMPDIR", "")
    env = os.environ.get("VIRTUAL_ENV", "")
    places = [(program, "<program>"), (cwd, "<cwd>"), (tmp, "<tmp>"), (env, "<env>")]
    places.sort(key=lambda place: -len(place[0]))

    def named(value):
        text = json.dumps(value)
        for path, name in places:
            if path:
                text = text.replace(path, name)
        return json.loads(text)

    main = sys.modules["__main__"]
    seen = {
        "argv": sys.argv,
        "orig_argv": sys.orig_argv[1:],
        "path": sys.path,
        "main": [main.__name__, getattr(main, "__file__", None), main.__spec__.name if main.__spec__ else None],
        "root handlers": [[type(h).__name__, getattr(getattr(h, "stream", None), "name", None), h.formatter._fmt if h.formatter else None] for h in logging.root.handlers],
        "root level": logging.root.level,
        "dont_write_bytecode": sys.dont_write_bytecode,
        "gettempdir": tempfile.gettempdir(),
        "program dir": os.path.dirname(program),
        "program compiled": os.path.isdir(os.path.join(program, "__pycache__")),
        "warnings filters": [str(f) for f in warnings.filters],
        "rehearsal modules": sorted(m for m in sys.modules if "rehearsal" in m),
        "stdin": os.readlink("/proc/self/fd/0"),
        "stdout": [sys.stdout.encoding, sys.stdout.line_buffering, sys.stdout.isatty()],
        "environ": {k: v for k, v in os.environ.items() if k not in ("PWD", "OLDPWD", "SHLVL", "_")},
    }
    print("FINGERPRINT " + json.dumps(named(seen), sort_keys=True))
    return x + 1


@dsl.pipeline(name="interpreter-fingerprint")
def fingerprint_pipeline(x: int = 1) -> int:
    one = fingerprint(x=x).set_caching_options(False)
    return fingerprint(x=one.output).set_caching_options(False).output


compiler.Compiler().compile(fingerprint_pipeline, sys.argv[1])
"#;

/// The fingerprints the pipeline's tasks printed, by task name, and the server's log.
async fn fingerprints(venv: &Path, spec: &Value, warm: bool) -> (Vec<Value>, String) {
    let venv_bin = venv.join("bin");
    let scratch = tempfile::tempdir().expect("tempdir");
    let path = std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH")
    .to_string_lossy()
    .into_owned();
    let envs = scratch.path().join("envs").to_string_lossy().into_owned();
    let server = Server::start_with_env(
        &["--executor", "local"],
        &[
            ("PATH", path.as_str()),
            ("KFPD_ENVS_DIR", envs.as_str()),
            ("KFPD_WARM_PYTHON", if warm { "on" } else { "off" }),
            ("KFPD_LOG", "warn,kfpd_engine::container=debug"),
        ],
    );
    let run = run_to_end(&server, spec, Duration::from_secs(600)).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());
    let mut seen = Vec::new();
    for name in ["fingerprint", "fingerprint-2"] {
        let log = log_of(&server, &run, name).await;
        let line = log
            .lines()
            .find_map(|line| line.strip_prefix("FINGERPRINT "))
            .unwrap_or_else(|| panic!("{name} printed no fingerprint:\n{log}"));
        seen.push(serde_json::from_str(line).expect("fingerprint json"));
    }
    (seen, server.stderr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_task_sees_the_interpreter_a_fresh_one_would() {
    let Some(venv) = sdk_venv() else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let spec = compile(
        &venv.join("bin").join("python3"),
        scratch.path(),
        FINGERPRINT_PIPELINE,
    );
    let (fresh, fresh_log) = fingerprints(&venv, &spec, false).await;
    assert!(
        !fresh_log.contains("task runs in the warm python"),
        "{fresh_log}"
    );
    let (warm, warm_log) = fingerprints(&venv, &spec, true).await;
    assert_eq!(
        warm_log.matches("task runs in the warm python").count(),
        2,
        "{warm_log}"
    );
    // Both tasks of the warm run: the first child and one forked after a task ran.
    for (fresh, warm) in fresh.iter().zip(&warm) {
        let fields = fresh.as_object().expect("an object");
        for (field, expected) in fields {
            assert_eq!(
                &warm[field], expected,
                "a warm task sees a different {field:?}\nwarm:  {}\nfresh: {}",
                warm[field], expected
            );
        }
        let fields: Vec<&String> = fields.keys().collect();
        let warm_fields: Vec<&String> = warm.as_object().expect("an object").keys().collect();
        assert_eq!(warm_fields, fields);
    }
}

const VENV_PIPELINE: &str = r#"
import sys
from kfp import compiler, dsl


@dsl.component(use_venv=True)
def in_venv() -> str:
    import kfp, sys
    print("prefix " + sys.prefix)
    print("kfp from " + kfp.__file__)
    return sys.prefix


@dsl.pipeline(name="own-venv")
def own_venv(x: int = 1) -> str:
    return in_venv().set_caching_options(False).output


compiler.Compiler().compile(own_venv, sys.argv[1])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_venv_components_run_in_the_virtualenv_their_preamble_makes() {
    let Some(venv) = sdk_venv() else {
        return;
    };
    let venv_bin = venv.join("bin");
    let scratch = tempfile::tempdir().expect("tempdir");
    let spec = compile(&venv_bin.join("python3"), scratch.path(), VENV_PIPELINE);
    let path = std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH")
    .to_string_lossy()
    .into_owned();
    let envs_dir = scratch.path().join("envs");
    let envs = envs_dir.to_string_lossy().into_owned();
    let server = Server::start_with_env(
        &["--executor", "local"],
        &[
            ("PATH", path.as_str()),
            ("KFPD_ENVS_DIR", envs.as_str()),
            ("KFPD_LOG", "warn,kfpd_engine::container=debug"),
        ],
    );
    let run = run_to_end(&server, &spec, Duration::from_secs(600)).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());
    let log = log_of(&server, &run, "in-venv").await;
    let prefix = log
        .lines()
        .find_map(|line| line.strip_prefix("prefix "))
        .unwrap_or_else(|| panic!("no prefix in\n{log}"));
    // The interpreter and the pinned kfp are those of the virtualenv the preamble
    // made, not of kfpd's environment for the image (where a warm task would run).
    assert!(!prefix.starts_with(&*envs), "{log}");
    assert!(log.contains(&format!("kfp from {prefix}/")), "{log}");
    let stderr = server.stderr();
    assert!(!stderr.contains("task runs in the warm python"), "{stderr}");
}
