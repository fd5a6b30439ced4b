//! What the server exposes about executing runs: every retry attempt as a node of its
//! own (GetRun's `executor_detail`, errors in the state history, a log per attempt),
//! following the log of a task that waits to start, and reading directory artifacts.
//! Each test has its own `kfpd serve` with the local executor; tasks are `sh` scripts.

mod common;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Server;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(300);

fn executing_server(extra: &[&str]) -> Server {
    let mut args = vec!["--executor", "local"];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

/// A directory the server's tasks (processes of this machine) can write into.
fn scratch(server: &Server, name: &str) -> PathBuf {
    let dir = server
        .dir
        .path()
        .join("scratch")
        .join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

async fn submit(server: &Server, yaml: &str, parameters: Value) -> String {
    let package = kfpd_ir::read_package("inline.yaml", yaml.as_bytes()).expect("inline package");
    let body = json!({
        "display_name": "execution api",
        "pipeline_spec": package.api_pipeline_spec(),
        "runtime_config": {"parameters": parameters},
    });
    let (status, run) = server.post("/runs", &body).await;
    assert_eq!(status, 200, "{run}");
    run["run_id"].as_str().expect("run_id").to_string()
}

async fn wait_for_end(server: &Server, run_id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, run) = server.get(&format!("/runs/{run_id}")).await;
        let state = run["state"].as_str().unwrap_or_default();
        if matches!(state, "SUCCEEDED" | "FAILED" | "CANCELED") {
            return run;
        }
        assert!(
            started.elapsed() < LIMIT,
            "run {run_id} still {state}; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until `check` finds what it waits for in the run.
async fn wait_for<T>(
    server: &Server,
    run_id: &str,
    what: &str,
    check: impl Fn(&Value) -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        let (_, run) = server.get(&format!("/runs/{run_id}")).await;
        if let Some(found) = check(&run) {
            return found;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{what} did not happen: {run}\nstderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn task_named<'a>(run: &'a Value, name: &str) -> Option<&'a Value> {
    run["run_details"]["task_details"]
        .as_array()?
        .iter()
        .find(|task| task["display_name"] == name)
}

fn log_url(server: &Server, run_id: &str, node_id: &str) -> String {
    format!(
        "{}/apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log",
        server.base
    )
}

async fn log_of(server: &Server, run_id: &str, node_id: &str) -> (u16, String) {
    let response = server
        .client
        .get(log_url(server, run_id, node_id))
        .send()
        .await
        .expect("log");
    let status = response.status().as_u16();
    (status, response.text().await.expect("log text"))
}

/// Starts following a node's log; the response's headers have arrived.
async fn follow(server: &Server, run_id: &str, node_id: &str) -> reqwest::Response {
    let response = server
        .client
        .get(log_url(server, run_id, node_id))
        .query(&[("follow", "true")])
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("follow");
    assert_eq!(response.status(), 200, "follow {node_id}");
    response
}

async fn read_to_end(mut response: reqwest::Response) -> String {
    let mut received = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        received.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// Every file called `name` under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|file| file == name) {
                found.push(path);
            }
        }
    }
    found
}

// --------------------------------------------------------------------------- attempts

/// Fails its first two attempts; the third says it started, waits for `release` (at
/// most 60 s) and succeeds.
const THIRD_TIME_LUCKY: &str = r#"
components:
  comp-flaky:
    executorLabel: exec-flaky
    inputDefinitions:
      parameters:
        dir: {parameterType: STRING}
deploymentSpec:
  executors:
    exec-flaky:
      container:
        image: alpine
        command: [sh, -c]
        args:
          - 'echo x >> "$0/tries"; n=$(wc -l < "$0/tries" | tr -d " "); echo "try $n starts"; if [ "$n" -lt 3 ]; then echo "try $n fails"; exit 1; fi; touch "$0/third"; i=0; while [ ! -e "$0/release" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo "try $n done"'
          - "{{$.inputs.parameters['dir']}}"
pipelineInfo: {name: third-time-lucky}
root:
  dag:
    tasks:
      flaky:
        componentRef: {name: comp-flaky}
        inputs:
          parameters:
            dir: {componentInputParameter: dir}
        retryPolicy: {backoffDuration: 0s, backoffFactor: 1.0, backoffMaxDuration: 3600s, maxRetryCount: 3}
        taskInfo: {name: flaky}
  inputDefinitions:
    parameters:
      dir: {parameterType: STRING}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retry_attempt_is_a_node_with_its_own_log() {
    let server = executing_server(&[]);
    let dir = scratch(&server, "lucky");
    let run_id = submit(
        &server,
        THIRD_TIME_LUCKY,
        json!({"dir": dir.display().to_string()}),
    )
    .await;
    let third = dir.join("third");
    let task = wait_for(&server, &run_id, "the third attempt running", |run| {
        let task = task_named(run, "flaky")?;
        (third.exists() && task["state"] == "RUNNING").then(|| task.clone())
    })
    .await;
    let task_id = task["task_id"].as_str().expect("task_id").to_string();
    let attempt = |n: u32| format!("{task_id}-attempt-{n}");
    let detail = &task["executor_detail"];
    assert_eq!(detail["main_job"], attempt(3), "{task}");
    assert_eq!(
        detail["failed_main_jobs"],
        json!([attempt(1), attempt(2)]),
        "{task}"
    );

    // The running attempt, followed while it runs.
    let (status, so_far) = log_of(&server, &run_id, &attempt(3)).await;
    assert_eq!(status, 200, "{so_far}");
    let followed = follow(&server, &run_id, &attempt(3)).await;
    std::fs::write(dir.join("release"), b"").expect("release");
    let followed = read_to_end(followed).await;
    assert!(followed.contains("try 3 starts"), "{followed}");
    assert!(followed.contains("try 3 done"), "{followed}");

    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let task = task_named(&run, "flaky").expect("flaky");
    assert_eq!(task["executor_detail"]["main_job"], attempt(3));
    assert_eq!(
        task["executor_detail"]["failed_main_jobs"],
        json!([attempt(1), attempt(2)])
    );

    // Each failed attempt's error is on the FAILED entry that ended it.
    let history = task["state_history"].as_array().expect("state_history");
    let states: Vec<&str> = history
        .iter()
        .filter_map(|change| change["state"].as_str())
        .collect();
    assert_eq!(
        states,
        [
            "RUNNING",
            "FAILED",
            "RUNNING",
            "FAILED",
            "RUNNING",
            "SUCCEEDED"
        ],
        "{task}"
    );
    for (index, n) in [(1, 1), (3, 2)] {
        let error = history[index]["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            error.contains(&format!("try {n} fails")),
            "entry {index} has attempt {n}'s error: {task}"
        );
    }
    for index in [0, 2, 4, 5] {
        assert!(history[index].get("error").is_none(), "{task}");
    }

    // Each attempt's log has its own lines; the task's log has them all.
    let (status, whole) = log_of(&server, &run_id, &task_id).await;
    assert_eq!(status, 200, "{whole}");
    let mut parts = Vec::new();
    for n in 1..=3 {
        let (status, text) = log_of(&server, &run_id, &attempt(n)).await;
        assert_eq!(status, 200, "attempt {n}: {text}");
        assert!(text.contains(&format!("try {n} starts")), "{n}: {text}");
        parts.push(text);
    }
    for n in 1..=3 {
        assert!(whole.contains(&format!("try {n} starts")), "{whole}");
    }
    // With the attempts' byte ranges recorded (an engine without them gives every
    // attempt the whole log) the attempts' logs are disjoint parts of the log.
    if parts[0] != whole {
        for (index, part) in parts.iter().enumerate() {
            for other in (1..=3).filter(|other| *other != index + 1) {
                assert!(
                    !part.contains(&format!("try {other} starts")),
                    "attempt {} has attempt {other}'s lines: {part}",
                    index + 1
                );
            }
        }
        assert!(
            !followed.contains("try 1 starts"),
            "the follower of attempt 3 got attempt 1's lines: {followed}"
        );
    }
    // Once the local log is gone the copy in the artifact store is served, cut the
    // same way.
    let local_logs = files_named(&server.dir.path().join("work").join(&run_id), "main.log");
    assert_eq!(local_logs.len(), 1, "{local_logs:?}");
    std::fs::remove_file(&local_logs[0]).expect("remove the local log");
    assert_eq!(
        log_of(&server, &run_id, &task_id).await,
        (200, whole.clone())
    );
    for (index, part) in parts.iter().enumerate() {
        let n = index as u32 + 1;
        assert_eq!(
            log_of(&server, &run_id, &attempt(n)).await,
            (200, part.clone())
        );
    }
    // An attempt that never ran, and attempt ids of another run, are not found.
    for (run, node) in [
        (run_id.as_str(), attempt(4)),
        (run_id.as_str(), attempt(0)),
        ("00000000-0000-0000-0000-000000000000", attempt(1)),
        (run_id.as_str(), "nothing-attempt-1".to_string()),
    ] {
        let (status, body) = log_of(&server, run, &node).await;
        assert_eq!(status, 404, "{run} {node}: {body}");
    }
}

/// The first attempt says so, waits for `release` (at most 60 s) and fails; after a
/// 2 s pause the second one succeeds.
const RETRY_AFTER_A_PAUSE: &str = r#"
components:
  comp-paused:
    executorLabel: exec-paused
    inputDefinitions:
      parameters:
        dir: {parameterType: STRING}
deploymentSpec:
  executors:
    exec-paused:
      container:
        image: alpine
        command: [sh, -c]
        args:
          - 'echo x >> "$0/tries"; n=$(wc -l < "$0/tries" | tr -d " "); echo "try $n"; if [ "$n" -lt 2 ]; then touch "$0/first"; i=0; while [ ! -e "$0/release" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; exit 1; fi'
          - "{{$.inputs.parameters['dir']}}"
pipelineInfo: {name: retry-after-a-pause}
root:
  dag:
    tasks:
      paused:
        componentRef: {name: comp-paused}
        inputs:
          parameters:
            dir: {componentInputParameter: dir}
        retryPolicy: {backoffDuration: 2s, backoffFactor: 1.0, backoffMaxDuration: 3600s, maxRetryCount: 1}
        taskInfo: {name: paused}
  inputDefinitions:
    parameters:
      dir: {parameterType: STRING}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
"#;

/// Between two attempts the task's row is FAILED for the backoff; a follower of the
/// task stays on until the last attempt has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_task_spans_the_pause_between_attempts() {
    let server = executing_server(&[]);
    let dir = scratch(&server, "paused");
    let run_id = submit(
        &server,
        RETRY_AFTER_A_PAUSE,
        json!({"dir": dir.display().to_string()}),
    )
    .await;
    let first = dir.join("first");
    let task_id = wait_for(&server, &run_id, "the first attempt running", |run| {
        let task = task_named(run, "paused")?;
        first
            .exists()
            .then(|| task["task_id"].as_str().map(str::to_string))?
    })
    .await;
    let followed = follow(&server, &run_id, &task_id).await;
    std::fs::write(dir.join("release"), b"").expect("release");
    let received = read_to_end(followed).await;
    assert!(received.contains("try 1"), "{received:?}");
    assert!(received.contains("try 2"), "{received:?}");
    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let (_, whole) = log_of(&server, &run_id, &task_id).await;
    assert_eq!(received, whole);
}

// --------------------------------------------------------------------------- waiting tasks

/// Two tasks in parallel; each says hello and waits for `release` (at most 60 s).
const TWO_HELD: &str = r#"
components:
  comp-held:
    executorLabel: exec-held
    inputDefinitions:
      parameters:
        name: {parameterType: STRING}
        dir: {parameterType: STRING}
deploymentSpec:
  executors:
    exec-held:
      container:
        image: alpine
        command: [sh, -c]
        args:
          - 'touch "$1/$0.started"; echo "hello $0"; i=0; while [ ! -e "$1/release" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done'
          - "{{$.inputs.parameters['name']}}"
          - "{{$.inputs.parameters['dir']}}"
pipelineInfo: {name: two-held}
root:
  dag:
    tasks:
      one:
        componentRef: {name: comp-held}
        inputs:
          parameters:
            name: {runtimeValue: {constant: one}}
            dir: {componentInputParameter: dir}
        taskInfo: {name: one}
      two:
        componentRef: {name: comp-held}
        inputs:
          parameters:
            name: {runtimeValue: {constant: two}}
            dir: {componentInputParameter: dir}
        taskInfo: {name: two}
  inputDefinitions:
    parameters:
      dir: {parameterType: STRING}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
"#;

/// Waits until one task holds the only slot and the other is RUNNING but has not
/// started its process; returns the waiting one's id and name.
async fn queued_task(server: &Server, run_id: &str, dir: &Path) -> (String, String) {
    wait_for(server, run_id, "one task holding the slot", |run| {
        for (name, other) in [("one", "two"), ("two", "one")] {
            let task = task_named(run, name)?;
            let waiting = task["state"] == "RUNNING"
                && dir.join(format!("{other}.started")).exists()
                && !dir.join(format!("{name}.started")).exists();
            if waiting {
                let id = task["task_id"].as_str()?.to_string();
                return Some((id, name.to_string()));
            }
        }
        None
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_a_task_that_waits_for_a_slot() {
    let server = executing_server(&["--max-parallel-tasks", "1"]);
    let dir = scratch(&server, "held");
    let run_id = submit(&server, TWO_HELD, json!({"dir": dir.display().to_string()})).await;
    let (task_id, name) = queued_task(&server, &run_id, &dir).await;

    // Without follow: nothing written yet.
    let (status, text) = log_of(&server, &run_id, &task_id).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "");
    // Unknown tasks and runs stay unknown.
    let (status, _) = log_of(&server, &run_id, "00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, 404);
    let (status, _) = log_of(&server, "00000000-0000-0000-0000-000000000000", &task_id).await;
    assert_eq!(status, 404);

    let followed = follow(&server, &run_id, &task_id).await;
    std::fs::write(dir.join("release"), b"").expect("release");
    let received = read_to_end(followed).await;
    assert!(received.contains(&format!("hello {name}")), "{received:?}");
    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let (_, whole) = log_of(&server, &run_id, &task_id).await;
    assert_eq!(received, whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ends_when_a_waiting_task_ends_without_a_log() {
    let server = executing_server(&["--max-parallel-tasks", "1"]);
    let dir = scratch(&server, "canceled");
    let run_id = submit(&server, TWO_HELD, json!({"dir": dir.display().to_string()})).await;
    let (task_id, name) = queued_task(&server, &run_id, &dir).await;

    let followed = follow(&server, &run_id, &task_id).await;
    let (status, body) = server
        .post(&format!("/runs/{run_id}:terminate"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let received = read_to_end(followed).await;
    assert!(!received.contains(&format!("hello {name}")), "{received:?}");
    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "CANCELED", "{run}");
    assert!(
        !dir.join(format!("{name}.started")).exists(),
        "the waiting task never started"
    );
}

// --------------------------------------------------------------------------- directories

/// Writes a directory artifact `tree` (`$0`: bytes of padding in `big/pad-*`) and a
/// file artifact `note`.
const DIRECTORY_OUTPUT: &str = r#"
components:
  comp-make:
    executorLabel: exec-make
    inputDefinitions:
      parameters:
        pad: {parameterType: NUMBER_INTEGER}
    outputDefinitions:
      artifacts:
        tree: {artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}}
        note: {artifactType: {schemaTitle: system.Artifact, schemaVersion: 0.0.1}}
deploymentSpec:
  executors:
    exec-make:
      container:
        image: alpine
        command: [sh, -c]
        args:
          - 'mkdir -p "$1/sub/deeper" "$1/big"; echo alpha > "$1/a.txt"; printf beta > "$1/sub/b.txt"; : > "$1/sub/deeper/empty"; if [ "$0" -gt 0 ]; then head -c "$0" /dev/zero > "$1/big/pad-1"; head -c "$0" /dev/zero > "$1/big/pad-2"; fi; printf "just a file" > "$2"'
          - "{{$.inputs.parameters['pad']}}"
          - "{{$.outputs.artifacts['tree'].path}}"
          - "{{$.outputs.artifacts['note'].path}}"
pipelineInfo: {name: directory-output}
root:
  dag:
    tasks:
      make:
        componentRef: {name: comp-make}
        inputs:
          parameters:
            pad: {componentInputParameter: pad}
        taskInfo: {name: make}
  inputDefinitions:
    parameters:
      pad: {parameterType: NUMBER_INTEGER}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
"#;

async fn read_artifact(server: &Server, run_id: &str, task_id: &str, name: &str) -> (u16, Value) {
    server
        .get(&format!(
            "/runs/{run_id}/nodes/{task_id}/artifacts/{name}:read"
        ))
        .await
}

fn decoded(body: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(body["data"].as_str().expect("data"))
        .expect("base64")
}

/// Unpacks a tar.gz with the system's `tar` and returns its files and contents.
fn unpack(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tree.tar.gz");
    std::fs::write(&file, archive).expect("write archive");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out");
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&file)
        .arg("-C")
        .arg(&out)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar could not unpack the archive");
    let mut files = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(&out).expect("relative");
                files.push((
                    relative.to_string_lossy().into_owned(),
                    std::fs::read(&path).expect("read"),
                ));
            }
        }
    }
    files.sort();
    files
}

/// Runs DIRECTORY_OUTPUT and checks what `:read` returns for both artifacts.
async fn check_directory_read(server: &Server) {
    let run_id = submit(server, DIRECTORY_OUTPUT, json!({"pad": 0})).await;
    let run = wait_for_end(server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());
    let task = task_named(&run, "make").expect("make");
    let task_id = task["task_id"].as_str().expect("task_id");

    let (status, body) = read_artifact(server, &run_id, task_id, "tree").await;
    assert_eq!(status, 200, "{body}");
    let files = unpack(&decoded(&body));
    assert_eq!(
        files,
        [
            ("a.txt".to_string(), b"alpha\n".to_vec()),
            ("sub/b.txt".to_string(), b"beta".to_vec()),
            ("sub/deeper/empty".to_string(), Vec::new()),
        ]
    );
    // A single file stays its bytes.
    let (status, body) = read_artifact(server, &run_id, task_id, "note").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(decoded(&body), b"just a file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_artifact_reads_as_a_tar_gz() {
    let server = executing_server(&[]);
    check_directory_read(&server).await;

    // Two files of 17 MiB: each under the 32 MiB limit, together over it.
    let run_id = submit(&server, DIRECTORY_OUTPUT, json!({"pad": 17 << 20})).await;
    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let task_id = task_named(&run, "make").expect("make")["task_id"]
        .as_str()
        .expect("task_id")
        .to_string();
    let (status, body) = read_artifact(&server, &run_id, &task_id, "tree").await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("5 files") && message.contains("more than the limit"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_artifact_in_s3_reads_as_a_tar_gz() {
    let Some(moto) = moto::moto() else {
        return;
    };
    let bucket = moto::unique_bucket("dirread");
    let server = common::start_on_s3(&moto.endpoint, &bucket);
    check_directory_read(&server).await;
}

// --------------------------------------------------------------------------- big logs

/// Writes 34 MB of output, more than the 32 MiB the log endpoint sends from an object.
const LOUD: &str = r#"
components:
  comp-loud:
    executorLabel: exec-loud
deploymentSpec:
  executors:
    exec-loud:
      container:
        image: alpine
        command: [sh, -c, 'head -c 34000000 /dev/zero | tr "\0" x; echo; echo loud done']
pipelineInfo: {name: loud-pipeline}
root:
  dag:
    tasks:
      loud:
        componentRef: {name: comp-loud}
        taskInfo: {name: loud}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
"#;

/// Once the local log is gone, a copy too big to send whole is a clear refusal that
/// names the copy, never a server error; the local log itself is still served whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_copy_too_big_to_send_is_refused_clearly() {
    let server = executing_server(&[]);
    let run_id = submit(&server, LOUD, json!({})).await;
    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let task_id = task_named(&run, "loud")
        .and_then(|task| task["task_id"].as_str())
        .expect("loud task")
        .to_string();
    let (status, body) = log_of(&server, &run_id, &task_id).await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    assert!(body.len() > 34_000_000 && body.ends_with("loud done\n"));

    let work = server.dir.path().join("work");
    for log in files_named(&work, "main.log") {
        std::fs::remove_file(&log).expect("remove local log");
    }
    let (status, body) = log_of(&server, &run_id, &task_id).await;
    assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
    assert!(
        body.contains("more than the") && body.contains("main.log"),
        "{body}"
    );
}
