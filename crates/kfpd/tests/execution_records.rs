//! What the engine records about a task beyond its state: its attempts with their
//! byte ranges in the log, the log kept in the artifact store, importers reusing
//! artifacts, and what a Python task's failure says.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{stop_after_this_process, Server};
use kfpd_store::sql::{Options, SqlStore};
use kfpd_store::ExecutionStore;
use serde_json::{json, Map, Value};

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = Server::start_with(&["--executor", "local", "--max-parallel-tasks", "8"]);
        stop_after_this_process(server.pid());
        server
    })
}

/// A client per call: the shared server outlives each test's runtime, and a pooled
/// connection must not either.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

async fn get(path: &str) -> (u16, Value) {
    let response = client().get(server().url(path)).send().await.expect("GET");
    common::read(response).await
}

async fn post(path: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(server().url(path))
        .json(body)
        .send()
        .await
        .expect("POST");
    common::read(response).await
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn run_inline(yaml: &str, parameters: Value) -> Value {
    let package = kfpd_ir::read_package("inline.yaml", yaml.as_bytes()).expect("inline package");
    let body = json!({
        "display_name": "records",
        "pipeline_spec": package.api_pipeline_spec(),
        "runtime_config": {"parameters": parameters},
    });
    let (status, run) = post("/runs", &body).await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    let started = Instant::now();
    loop {
        let (_, run) = get(&format!("/runs/{run_id}")).await;
        let state = run["state"].as_str().unwrap_or_default();
        if matches!(state, "SUCCEEDED" | "FAILED" | "CANCELED") {
            return run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "run {run_id} still {state}; server stderr:\n{}",
            server().stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn task_named<'a>(run: &'a Value, name: &str) -> &'a Value {
    let tasks = run["run_details"]["task_details"]
        .as_array()
        .expect("task details");
    let found: Vec<&Value> = tasks
        .iter()
        .filter(|task| task["display_name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one task named {name}: {run}");
    found[0]
}

/// The task's `details` as the engine stored them, read from the server's SQLite
/// database (the API shows only part of them).
async fn stored_details(task_id: &str) -> Map<String, Value> {
    let url = format!("sqlite://{}", server().dir.path().join("kfpd.db").display());
    let store = SqlStore::connect(&Options::new(url))
        .await
        .expect("open the server's database");
    let task = store.get_task(task_id).await.expect("task row");
    serde_json::from_str(&task.details).expect("details are a JSON object")
}

async fn log_of(run_id: &str, task_id: &str) -> (u16, String) {
    let url = format!(
        "{}/apis/v1alpha1/runs/{run_id}/nodes/{task_id}/log",
        server().base
    );
    let response = client().get(url).send().await.expect("log");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn shell_pipeline(name: &str, script: &str, retries: u32) -> String {
    let retry = if retries > 0 {
        format!("        retryPolicy:\n          maxRetryCount: {retries}\n")
    } else {
        String::new()
    };
    format!(
        r#"pipelineInfo:
  name: {name}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-step:
    executorLabel: exec-step
    inputDefinitions:
      parameters:
        marker:
          parameterType: STRING
        counter:
          parameterType: STRING
deploymentSpec:
  executors:
    exec-step:
      container:
        image: alpine
        command: [sh, -c, '{script}', "{{{{$.inputs.parameters['marker']}}}}", "{{{{$.inputs.parameters['counter']}}}}"]
root:
  inputDefinitions:
    parameters:
      marker:
        parameterType: STRING
      counter:
        parameterType: STRING
  dag:
    tasks:
      step:
{retry}        componentRef:
          name: comp-step
        inputs:
          parameters:
            marker:
              componentInputParameter: marker
            counter:
              componentInputParameter: counter
        taskInfo:
          name: step
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_log_is_served_from_the_artifact_store_once_its_work_dir_is_gone() {
    let marker = unique("logged");
    let yaml = shell_pipeline(&unique("log-object"), "echo out $0; echo err $0 >&2", 0);
    let run = run_inline(&yaml, json!({"marker": marker, "counter": ""})).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let run_id = run["run_id"].as_str().unwrap_or_default();
    let task_id = task_named(&run, "step")["task_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let details = stored_details(&task_id).await;
    let artifacts = server().dir.path().join("artifacts");
    let object = artifacts
        .join("logs")
        .join(run_id)
        .join(&task_id)
        .join("main.log");
    let expected_uri = format!(
        "file://{}",
        std::fs::canonicalize(&object)
            .unwrap_or_else(|_| panic!("no log object at {}", object.display()))
            .display()
    );
    assert_eq!(details["log_uri"], json!(expected_uri), "{details:?}");
    let stored = std::fs::read_to_string(&object).expect("log object");
    assert!(
        stored.contains(&format!("out {marker}")) && stored.contains(&format!("err {marker}")),
        "{stored}"
    );

    let work = server().dir.path().join("work").join(run_id).join(&task_id);
    assert!(work.join("main.log").exists());
    std::fs::remove_dir_all(&work).expect("remove the task's work dir");
    let (status, log) = log_of(run_id, &task_id).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log, stored, "served from the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_retries_records_its_one_attempt_and_makes_only_the_dirs_it_needs() {
    let marker = unique("single");
    let yaml = shell_pipeline(&unique("one-attempt"), "echo $0", 0);
    let run = run_inline(&yaml, json!({"marker": marker, "counter": ""})).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let run_id = run["run_id"].as_str().unwrap_or_default();
    let task_id = task_named(&run, "step")["task_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let details = stored_details(&task_id).await;
    let attempts = details["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{details:?}");
    let attempt = &attempts[0];
    assert_eq!(attempt["attempt"], 1);
    assert_eq!(attempt["state"], "SUCCEEDED");
    assert_eq!(attempt["log_offset"], 0);
    assert_eq!(attempt["log_length"], json!(marker.len() + 1));
    assert!(attempt["started_at"].as_i64().is_some_and(|at| at > 0));
    assert!(attempt["finished_at"].as_i64() >= attempt["started_at"].as_i64());
    assert!(attempt.get("error").is_none(), "{attempt}");

    let work = server().dir.path().join("work").join(run_id).join(&task_id);
    let mut made: Vec<String> = std::fs::read_dir(&work)
        .expect("work dir")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .collect();
    made.sort();
    assert_eq!(
        made,
        ["main.log"],
        "no inputs/, outputs/ or tmp/ for a task without artifacts or outputs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_records_where_its_output_is_in_the_log() {
    let marker = unique("flaky");
    let counter = server().dir.path().join(unique("counter"));
    // Fails twice, then succeeds; every attempt says which one it is.
    let script = r#"n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; echo "$0 attempt $n"; [ $n -ge 3 ] || { echo "not yet $n" >&2; exit 3; }"#;
    let yaml = shell_pipeline(&unique("attempts"), script, 3);
    let run = run_inline(
        &yaml,
        json!({"marker": marker, "counter": counter.display().to_string()}),
    )
    .await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let run_id = run["run_id"].as_str().unwrap_or_default();
    let task_id = task_named(&run, "step")["task_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let details = stored_details(&task_id).await;
    let attempts = details["attempts"].as_array().expect("attempts").clone();
    let states: Vec<&str> = attempts
        .iter()
        .map(|attempt| attempt["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states, ["FAILED", "FAILED", "SUCCEEDED"], "{details:?}");

    let log = std::fs::read(
        PathBuf::from(server().dir.path())
            .join("work")
            .join(run_id)
            .join(&task_id)
            .join("main.log"),
    )
    .expect("main.log");
    let mut end_of_previous = 0;
    for (index, attempt) in attempts.iter().enumerate() {
        let number = index + 1;
        assert_eq!(attempt["attempt"], json!(number));
        let offset = attempt["log_offset"].as_u64().expect("log_offset") as usize;
        let length = attempt["log_length"].as_u64().expect("log_length") as usize;
        assert!(offset >= end_of_previous, "{attempt}");
        let between = String::from_utf8_lossy(&log[end_of_previous..offset]).to_string();
        if number > 1 {
            assert!(
                between.contains(&format!("--- kfpd: attempt {number} of 4 ---")),
                "the header is not part of an attempt: {between:?}"
            );
        }
        let own = String::from_utf8_lossy(&log[offset..offset + length]).to_string();
        let mut expected = format!("{marker} attempt {number}\n");
        if number < 3 {
            expected.push_str(&format!("not yet {number}\n"));
            let error = attempt["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("exit code 3") && error.contains(&format!("not yet {number}")),
                "{attempt}"
            );
        }
        assert_eq!(own, expected, "attempt {number}");
        end_of_previous = offset + length;
    }
    assert_eq!(end_of_previous, log.len(), "the last attempt ends the log");
}

fn importer_pipeline(name: &str, reimport: bool) -> String {
    format!(
        r#"pipelineInfo:
  name: {name}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-importer:
    executorLabel: exec-importer
    inputDefinitions:
      parameters:
        uri:
          parameterType: STRING
    outputDefinitions:
      artifacts:
        artifact:
          artifactType:
            schemaTitle: system.Dataset
            schemaVersion: 0.0.1
deploymentSpec:
  executors:
    exec-importer:
      importer:
        artifactUri:
          runtimeParameter: uri
        typeSchema:
          schemaTitle: system.Dataset
          schemaVersion: 0.0.1
        reimport: {reimport}
        metadata:
          source: kfpd-test
root:
  inputDefinitions:
    parameters:
      uri:
        parameterType: STRING
  dag:
    tasks:
      importer:
        componentRef:
          name: comp-importer
        inputs:
          parameters:
            uri:
              componentInputParameter: uri
        taskInfo:
          name: importer
"#
    )
}

fn imported_ids(run: &Value) -> Value {
    task_named(run, "importer")["outputs"]["artifact"]["artifact_ids"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_importer_without_reimport_reuses_the_artifact_of_its_uri() {
    let uri = format!("minio://elsewhere/{}/data.csv", unique("imported"));
    let once = importer_pipeline(&unique("import-once"), false);
    let first = run_inline(&once, json!({"uri": uri})).await;
    let second = run_inline(&once, json!({"uri": uri})).await;
    for run in [&first, &second] {
        assert_eq!(run["state"], "SUCCEEDED", "{run}");
    }
    let ids = imported_ids(&first);
    assert_eq!(ids.as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(imported_ids(&second), ids, "one artifact for both runs");
    let id = ids[0]
        .as_str()
        .map(str::to_string)
        .unwrap_or(ids[0].to_string());
    let (status, artifact) = get(&format!("/artifacts/{id}")).await;
    assert_eq!(status, 200, "{artifact}");
    assert_eq!(artifact["uri"], json!(uri));
    assert_eq!(
        artifact["run_id"], first["run_id"],
        "recorded by the first run"
    );
    let second_id = second["run_id"].as_str().unwrap_or_default();
    let (status, listed) = get(&format!("/artifacts?run_id={second_id}")).await;
    assert_eq!(status, 200, "{listed}");
    let listed_ids: Vec<String> = listed["artifacts"]
        .as_array()
        .map(|artifacts| {
            artifacts
                .iter()
                .map(|artifact| {
                    artifact["artifact_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        listed_ids,
        std::slice::from_ref(&id),
        "the reusing run lists the artifact: {listed}"
    );

    let again = importer_pipeline(&unique("import-again"), true);
    let third = run_inline(&again, json!({"uri": uri})).await;
    let fourth = run_inline(&again, json!({"uri": uri})).await;
    for run in [&third, &fourth] {
        assert_eq!(run["state"], "SUCCEEDED", "{run}");
        assert_ne!(imported_ids(run), ids, "reimport records a new artifact");
    }
    assert_ne!(imported_ids(&third), imported_ids(&fourth));
}
