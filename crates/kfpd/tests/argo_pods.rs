//! `kfpd driver` and `kfpd launcher` against a real `kfpd serve --executor none`:
//! the driver requests and launches the compiled Workflow would make, in the
//! order Argo would make them, for a pipeline with a producer, a condition and a
//! loop over the producer's outputs; then a second run of it, cached.

mod common;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::process::Command;
use std::time::Duration;

use common::Server;
use kfpd_store::sql::{Options, SqlStore};
use kfpd_store::ExecutionStore;
use serde_json::{json, Value};

const PIPELINE: &str = r#"
pipelineInfo:
  name: NAME
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-make:
    executorLabel: exec-make
    inputDefinitions:
      parameters:
        greeting: {parameterType: STRING}
    outputDefinitions:
      parameters:
        count: {parameterType: NUMBER_INTEGER}
      artifacts:
        data: {artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}}
  comp-use:
    executorLabel: exec-use
    inputDefinitions:
      parameters:
        count: {parameterType: NUMBER_INTEGER}
        item: {parameterType: STRING}
      artifacts:
        data: {artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}}
    outputDefinitions:
      parameters:
        Output: {parameterType: STRING}
  comp-never:
    executorLabel: exec-never
    inputDefinitions:
      parameters:
        pipelinechannel--make-count: {parameterType: NUMBER_INTEGER}
  comp-for-loop-1:
    inputDefinitions:
      parameters:
        pipelinechannel--make-count: {parameterType: NUMBER_INTEGER}
        pipelinechannel--loop-item: {parameterType: STRING}
      artifacts:
        pipelinechannel--make-data: {artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}}
    dag:
      tasks:
        use:
          cachingOptions: {enableCache: true}
          componentRef: {name: comp-use}
          inputs:
            parameters:
              count: {componentInputParameter: pipelinechannel--make-count}
              item: {componentInputParameter: pipelinechannel--loop-item}
            artifacts:
              data: {componentInputArtifact: pipelinechannel--make-data}
          taskInfo: {name: use}
deploymentSpec:
  executors:
    exec-make:
      container:
        image: alpine
        command: [sh, -c, 'echo "$0" > "$1" && printf 3 > "$2"', "{{$.inputs.parameters['greeting']}}", "{{$.outputs.artifacts['data'].path}}", "{{$.outputs.parameters['count'].output_file}}"]
    exec-use:
      container:
        image: alpine
        command: [sh, -c, 'printf "%s:%s:%s" "$0" "$1" "$(cat "$2")" > "$3"', "{{$.inputs.parameters['count']}}", "{{$.inputs.parameters['item']}}", "{{$.inputs.artifacts['data'].path}}", "{{$.outputs.parameters['Output'].output_file}}"]
    exec-never:
      container:
        image: alpine
        command: [sh, -c, 'exit 1']
root:
  inputDefinitions:
    parameters:
      greeting: {parameterType: STRING}
  dag:
    tasks:
      make:
        cachingOptions: {enableCache: true}
        componentRef: {name: comp-make}
        inputs:
          parameters:
            greeting: {componentInputParameter: greeting}
        taskInfo: {name: make}
      never:
        componentRef: {name: comp-never}
        dependentTasks: [make]
        inputs:
          parameters:
            pipelinechannel--make-count:
              taskOutputParameter: {producerTask: make, outputParameterKey: count}
        triggerPolicy:
          condition: int(inputs.parameter_values['pipelinechannel--make-count']) > 5
        taskInfo: {name: never}
      for-loop-1:
        componentRef: {name: comp-for-loop-1}
        dependentTasks: [make]
        parameterIterator:
          itemInput: pipelinechannel--loop-item
          items: {raw: '["a", "b"]'}
        inputs:
          parameters:
            pipelinechannel--make-count:
              taskOutputParameter: {producerTask: make, outputParameterKey: count}
          artifacts:
            pipelinechannel--make-data:
              taskOutputArtifact: {producerTask: make, outputArtifactKey: data}
        taskInfo: {name: for-loop-1}
"#;

/// Runs `kfpd <args>`; returns (exit code, stdout, stderr).
fn kfpd(args: &[&str]) -> (i32, String, String) {
    kfpd_with(args, &[])
}

fn kfpd_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .args(args)
        .env("KFPD_LOG", "warn")
        .env_remove("OBJECTSTORECONFIG_HOST")
        .envs(env.iter().copied())
        .output()
        .expect("run kfpd");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

struct Pods<'a> {
    server: &'a Server,
    run_id: String,
    work: tempfile::TempDir,
    /// The launcher's environment (the pod's object store settings).
    env: Vec<(String, String)>,
}

impl Pods<'_> {
    /// `kfpd driver` for `path`: its JSON answer, or the failure.
    fn drive(&self, path: &str) -> Result<Value, (i32, String)> {
        self.drive_with(path, &[])
    }

    fn drive_with(&self, path: &str, extra: &[&str]) -> Result<Value, (i32, String)> {
        let mut args = vec![
            "driver",
            "--server",
            &self.server.base,
            "--run-id",
            &self.run_id,
            "--task-path",
            path,
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = kfpd(&args);
        if code != 0 {
            return Err((code, stderr));
        }
        Ok(serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("driver printed {stdout:?}")))
    }

    /// `kfpd launcher` for `path`: exit code and stderr.
    fn launch(&self, path: &str) -> (i32, String) {
        self.launch_attempt(path, None)
    }

    /// `kfpd launcher` as Argo's retry `retry_index` of the pod runs it.
    fn launch_attempt(&self, path: &str, retry_index: Option<&str>) -> (i32, String) {
        let grpc = self.server.grpc.as_deref().expect("grpc");
        let address = grpc.trim_start_matches("http://");
        let work = self.work.path().display().to_string();
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        if let Some(index) = retry_index {
            env.push(("KFPD_RETRY_INDEX", index));
        }
        let (code, _, stderr) = kfpd_with(
            &[
                "launcher",
                "--server",
                address,
                "--run-id",
                &self.run_id,
                "--task-path",
                path,
                "--work-dir",
                &work,
            ],
            &env,
        );
        (code, stderr)
    }
}

async fn create_run(server: &Server, name: &str) -> String {
    create_run_of(server, PIPELINE, name).await
}

async fn create_run_of(server: &Server, pipeline: &str, name: &str) -> String {
    let yaml = pipeline.replace("NAME", name);
    let package = kfpd_ir::read_package("pods.yaml", yaml.as_bytes()).expect("package");
    let body = json!({
        "display_name": "pods",
        "pipeline_spec": package.api_pipeline_spec(),
        "runtime_config": {"parameters": {"greeting": "hello"}},
    });
    let (status, run) = server.post("/runs", &body).await;
    assert_eq!(status, 200, "{run}");
    run["run_id"].as_str().expect("run id").to_string()
}

/// The run's task rows by path, as stored.
async fn rows(
    server: &Server,
    run_id: &str,
) -> std::collections::HashMap<String, kfpd_store::Task> {
    let url = format!("sqlite://{}", server.dir.path().join("kfpd.db").display());
    let store = SqlStore::connect(&Options::new(url))
        .await
        .expect("open the server's database");
    store
        .list_tasks(run_id)
        .await
        .expect("tasks")
        .into_iter()
        .map(|task| (task.path.clone(), task))
        .collect()
}

fn answer(execute: bool, iterations: usize) -> Value {
    json!({"execute": execute.to_string(), "iteration_count": iterations.to_string(), "pod_spec_patch": ""})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_through_driver_requests_and_launchers() {
    let server = Server::start_with(&["--driver-patience", "1s"]);
    let name = format!("pods-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let pods = Pods {
        server: &server,
        run_id: create_run(&server, &name).await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };

    assert_eq!(pods.drive("root/make").unwrap(), answer(true, 0));
    // Too early: the loop needs make's outputs.
    let (code, stderr) = pods.drive("root/for-loop-1").unwrap_err();
    assert_eq!(code, 1);
    assert!(
        stderr.contains("upstream task \"make\" has not ended"),
        "{stderr}"
    );

    let (code, stderr) = pods.launch("root/make");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        pods.drive("root/never").unwrap(),
        answer(false, 0),
        "3 > 5 is false"
    );
    assert_eq!(pods.drive("root/for-loop-1").unwrap(), answer(true, 2));
    assert_eq!(
        pods.drive("root/for-loop-1").unwrap(),
        answer(true, 2),
        "asked again, same answer"
    );
    for index in 0..2 {
        let path = format!("root/for-loop-1/{index}/use");
        assert_eq!(pods.drive(&path).unwrap(), answer(true, 0));
        let (code, stderr) = pods.launch(&path);
        assert_eq!(code, 0, "{path}: {stderr}");
    }
    let (code, stderr) = pods.launch("root/never");
    assert_eq!(code, 1);
    assert!(stderr.contains("already ended (SKIPPED)"), "{stderr}");

    let tasks = rows(&server, &pods.run_id).await;
    let make = &tasks["root/make"];
    assert_eq!(make.state, kfpd_store::TaskState::Succeeded, "{make:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&make.outputs).unwrap(),
        json!({"count": 3})
    );
    assert_eq!(tasks["root/never"].state, kfpd_store::TaskState::Skipped);
    let loop_row = &tasks["root/for-loop-1"];
    assert_eq!(loop_row.kind, kfpd_store::TaskKind::Loop);
    for (index, item) in ["a", "b"].iter().enumerate() {
        let iteration = &tasks[&format!("root/for-loop-1/{index}")];
        assert_eq!(iteration.kind, kfpd_store::TaskKind::LoopIteration);
        assert_eq!(iteration.parent_id, loop_row.id);
        let used = &tasks[&format!("root/for-loop-1/{index}/use")];
        assert_eq!(used.state, kfpd_store::TaskState::Succeeded, "{used:?}");
        assert_eq!(used.parent_id, iteration.id);
        assert_eq!(
            serde_json::from_str::<Value>(&used.outputs).unwrap(),
            json!({"Output": format!("3:{item}:hello")}),
            "the count, the item and the artifact's content reached the task"
        );
        let details: Value = serde_json::from_str(&used.details).unwrap();
        assert_eq!(details["attempts"][0]["state"], "SUCCEEDED", "{details}");
        assert!(
            details["log_uri"]
                .as_str()
                .is_some_and(|uri| uri.ends_with("/main.log")),
            "{details}"
        );
    }

    // The run as the API shows it, and the artifact make produced.
    let (status, run) = server.get(&format!("/runs/{}", pods.run_id)).await;
    assert_eq!(status, 200, "{run}");
    let details = run["run_details"]["task_details"]
        .as_array()
        .expect("task details");
    let shown = |name: &str| -> Vec<&Value> {
        details
            .iter()
            .filter(|task| task["display_name"] == name)
            .collect()
    };
    assert_eq!(shown("make")[0]["state"], "SUCCEEDED", "{run}");
    assert!(shown("make")[0]["outputs"]["data"].is_object(), "{run}");
    assert_eq!(shown("use").len(), 2, "{run}");
    assert_eq!(shown("never")[0]["state"], "SKIPPED", "{run}");
    assert_eq!(
        shown("make")[0]["executor_detail"]["main_job"],
        format!(
            "{}-attempt-1",
            shown("make")[0]["task_id"].as_str().unwrap_or_default()
        ),
        "the launcher's attempt, as the local engine shows one"
    );
    let (status, artifacts) = server
        .get(&format!("/artifacts?run_id={}", pods.run_id))
        .await;
    assert_eq!(status, 200, "{artifacts}");
    let data = &artifacts["artifacts"][0];
    assert_eq!(data["name"], "data", "{artifacts}");
    let (status, read) = server
        .get(&format!(
            "/runs/{}/nodes/{}/artifacts/data:read",
            pods.run_id, make.id
        ))
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["data"], "aGVsbG8K", "base64 of \"hello\\n\"");

    // A second run: make and the loop's tasks are cache hits, decided before any pod.
    let again = Pods {
        server: &server,
        run_id: create_run(&server, &name).await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    assert_eq!(
        again.drive("root/make").unwrap(),
        answer(false, 0),
        "cached"
    );
    assert_eq!(again.drive("root/for-loop-1").unwrap(), answer(true, 2));
    assert_eq!(
        again.drive("root/for-loop-1/1/use").unwrap(),
        answer(false, 0),
        "cached"
    );
    let tasks = rows(&server, &again.run_id).await;
    assert_eq!(tasks["root/make"].state, kfpd_store::TaskState::Cached);
    assert_eq!(
        serde_json::from_str::<Value>(&tasks["root/for-loop-1/1/use"].outputs).unwrap(),
        json!({"Output": "3:b:hello"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_and_launcher_errors_say_what_to_fix() {
    let server = Server::start();
    let pods = Pods {
        server: &server,
        run_id: "no-such-run".to_string(),
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    let (code, stderr) = pods.drive("root/make").unwrap_err();
    assert_eq!(code, 1);
    assert!(stderr.contains("run no-such-run not found"), "{stderr}");

    let run_id = create_run(&server, "pods-errors").await;
    let pods = Pods { run_id, ..pods };
    let (_, stderr) = pods.drive("root/nothing").unwrap_err();
    assert!(
        stderr.contains("\"root/nothing\" is not in the run's pipeline"),
        "{stderr}"
    );
    let (code, stderr) = pods.launch("root/make");
    assert_eq!(code, 1);
    assert!(stderr.contains("has not been driven"), "{stderr}");

    // Nothing listens on port 9 of loopback.
    let (code, _, stderr) = kfpd(&[
        "driver",
        "--server",
        "http://127.0.0.1:9",
        "--run-id",
        "r",
        "--task-path",
        "root/make",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot reach the API server at http://127.0.0.1:9"),
        "{stderr}"
    );
    let (code, _, stderr) = kfpd(&[
        "launcher",
        "--server",
        "127.0.0.1:9",
        "--run-id",
        "r",
        "--task-path",
        "root/make",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot reach the API server's gRPC at http://127.0.0.1:9"),
        "{stderr}"
    );
    let (code, _, stderr) = kfpd(&[
        "driver",
        "--server",
        "127.0.0.1:8888",
        "--run-id",
        "r",
        "--task-path",
        "root/make",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid --server"), "{stderr}");

    let copy = pods.work.path().join("bin").join("kfpd");
    let (code, _, stderr) = kfpd(&["launcher", "--copy", &copy.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = {
        let output = Command::new(&copy)
            .arg("--help")
            .output()
            .expect("run the copy");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            (),
        )
    };
    assert_eq!(code, 0);
    assert!(stdout.contains("launcher"), "{stdout}");
}

/// Retries, a failure, a task that runs on completion with its upstream's final
/// status, and a nested pipeline whose output a later task takes.
const CONTROL: &str = r#"
pipelineInfo:
  name: NAME
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-flaky:
    executorLabel: exec-flaky
  comp-broken:
    executorLabel: exec-broken
  comp-after:
    executorLabel: exec-after
    inputDefinitions:
      parameters:
        status: {parameterType: TASK_FINAL_STATUS}
  comp-leaf:
    executorLabel: exec-leaf
    inputDefinitions:
      parameters:
        text: {parameterType: STRING}
    outputDefinitions:
      parameters:
        Output: {parameterType: STRING}
  comp-inner:
    inputDefinitions:
      parameters:
        text: {parameterType: STRING}
    outputDefinitions:
      parameters:
        Output: {parameterType: STRING}
    dag:
      outputs:
        parameters:
          Output:
            valueFromParameter: {producerSubtask: leaf, outputParameterKey: Output}
      tasks:
        leaf:
          componentRef: {name: comp-leaf}
          inputs:
            parameters:
              text: {componentInputParameter: text}
          taskInfo: {name: leaf}
deploymentSpec:
  executors:
    exec-flaky:
      container:
        image: alpine
        command: [sh, -c, 'test "$KFPD_RETRY_INDEX" = 1 || { echo "not yet"; exit 3; }']
    exec-broken:
      container:
        image: alpine
        command: [sh, -c, 'echo boom; exit 2']
    exec-after:
      container:
        image: alpine
        command: [sh, -c, 'echo "$0"', "{{$.inputs.parameters['status']}}"]
    exec-leaf:
      container:
        image: alpine
        command: [sh, -c, 'printf "%s!" "$0" > "$1"', "{{$.inputs.parameters['text']}}", "{{$.outputs.parameters['Output'].output_file}}"]
root:
  inputDefinitions:
    parameters:
      greeting: {parameterType: STRING}
  dag:
    tasks:
      flaky:
        componentRef: {name: comp-flaky}
        retryPolicy: {maxRetryCount: 1}
        taskInfo: {name: flaky}
      broken:
        componentRef: {name: comp-broken}
        taskInfo: {name: broken}
      after:
        componentRef: {name: comp-after}
        dependentTasks: [broken]
        inputs:
          parameters:
            status:
              taskFinalStatus: {producerTask: broken}
        triggerPolicy: {strategy: ALL_UPSTREAM_TASKS_COMPLETED}
        taskInfo: {name: after}
      inner:
        componentRef: {name: comp-inner}
        inputs:
          parameters:
            text: {componentInputParameter: greeting}
        taskInfo: {name: inner}
      tail:
        componentRef: {name: comp-leaf}
        dependentTasks: [inner]
        inputs:
          parameters:
            text:
              taskOutputParameter: {producerTask: inner, outputParameterKey: Output}
        taskInfo: {name: tail}
      late:
        componentRef: {name: comp-leaf}
        dependentTasks: [broken]
        inputs:
          parameters:
            text: {componentInputParameter: greeting}
        taskInfo: {name: late}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_failures_final_status_and_nested_pipelines() {
    let server = Server::start_with(&["--driver-patience", "1s"]);
    let name = format!(
        "pods-control-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let pods = Pods {
        server: &server,
        run_id: create_run_of(&server, CONTROL, &name).await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    use kfpd_store::TaskState::{Failed, Running, Skipped, Succeeded};

    // Two attempts, as Argo's retryStrategy runs the pod again.
    assert_eq!(pods.drive("root/flaky").unwrap(), answer(true, 0));
    let (code, stderr) = pods.launch_attempt("root/flaky", Some("0"));
    assert_eq!(code, 3, "the command's exit status: {stderr}");
    assert_eq!(
        rows(&server, &pods.run_id).await["root/flaky"].state,
        Running,
        "a retry follows"
    );
    let (code, stderr) = pods.launch_attempt("root/flaky", Some("1"));
    assert_eq!(code, 0, "{stderr}");
    let flaky = &rows(&server, &pods.run_id).await["root/flaky"];
    assert_eq!(flaky.state, Succeeded);
    assert_eq!(flaky.attempts, 2);
    let details: Value = serde_json::from_str(&flaky.details).unwrap();
    assert_eq!(details["attempts"][0]["state"], "FAILED", "{details}");
    assert_eq!(
        details["attempts"][0]["error"],
        "failed with exit code 3: not yet"
    );
    assert_eq!(details["attempts"][1]["state"], "SUCCEEDED", "{details}");
    // One log for both attempts, each attempt's part served on its own.
    let log = |node: String| {
        let url = format!(
            "{}/apis/v1alpha1/runs/{}/nodes/{node}/log",
            server.base, pods.run_id
        );
        let client = server.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("log")
                .text()
                .await
                .expect("text")
        }
    };
    assert_eq!(
        log(flaky.id.clone()).await,
        "not yet\n\n--- kfpd: attempt 2 of 2 ---\n"
    );
    assert_eq!(log(format!("{}-attempt-1", flaky.id)).await, "not yet\n");
    assert_eq!(log(format!("{}-attempt-2", flaky.id)).await, "");

    // A nested pipeline: its DAG row, the task inside it, and its output for a sibling.
    let (_, early) = pods.drive("root/tail").unwrap_err();
    assert!(
        early.contains("upstream task \"inner\" has not ended"),
        "{early}"
    );
    assert_eq!(pods.drive("root/inner").unwrap(), answer(true, 0));
    assert_eq!(pods.drive("root/inner/leaf").unwrap(), answer(true, 0));
    assert_eq!(pods.launch("root/inner/leaf").0, 0);
    assert_eq!(pods.drive("root/tail").unwrap(), answer(true, 0));
    assert_eq!(pods.launch("root/tail").0, 0);

    // A failure: the task fails with its last log line, later tasks of the DAG are
    // skipped, and a task that runs on completion gets its final status.
    assert_eq!(pods.drive("root/broken").unwrap(), answer(true, 0));
    let (code, stderr) = pods.launch("root/broken");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("failed with exit code 2: boom"), "{stderr}");
    assert_eq!(pods.drive("root/late").unwrap(), answer(false, 0));
    assert_eq!(pods.drive("root/after").unwrap(), answer(true, 0));
    assert_eq!(pods.launch("root/after").0, 0);

    let tasks = rows(&server, &pods.run_id).await;
    let output = |path: &str| serde_json::from_str::<Value>(&tasks[path].outputs).unwrap();
    assert_eq!(tasks["root/inner"].kind, kfpd_store::TaskKind::Dag);
    assert_eq!(tasks["root/inner/leaf"].parent_id, tasks["root/inner"].id);
    assert_eq!(output("root/inner/leaf"), json!({"Output": "hello!"}));
    assert_eq!(
        output("root/tail"),
        json!({"Output": "hello!!"}),
        "the DAG's output reached tail"
    );
    let broken = &tasks["root/broken"];
    assert_eq!(broken.state, Failed);
    assert_eq!(
        broken.error.as_deref(),
        Some("task \"broken\": failed with exit code 2: boom")
    );
    assert_eq!(tasks["root/late"].state, Skipped);
    assert_eq!(
        tasks["root/late"].error.as_deref(),
        Some("not run: upstream task \"broken\" is FAILED")
    );
    let after = &tasks["root/after"];
    assert_eq!(after.state, Succeeded);
    let status = &serde_json::from_str::<Value>(&after.inputs).unwrap()["status"];
    assert_eq!(status["state"], "FAILED", "{status}");
    assert_eq!(status["pipelineTaskName"], "broken");
    assert_eq!(
        status["error"]["message"],
        "task \"broken\": failed with exit code 2: boom"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launchers_use_the_s3_store_from_the_pod_environment() {
    let Some(moto) = moto::moto() else {
        return;
    };
    let bucket = moto::unique_bucket("pods");
    let address = moto.endpoint.trim_start_matches("http://");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let store_env = [
        ("OBJECTSTORECONFIG_HOST", host),
        ("OBJECTSTORECONFIG_PORT", port),
        ("OBJECTSTORECONFIG_SECURE", "false"),
        ("OBJECTSTORECONFIG_BUCKETNAME", bucket.as_str()),
        ("OBJECTSTORECONFIG_ACCESSKEY", "kfpd-test"),
        ("OBJECTSTORECONFIG_SECRETACCESSKEY", "kfpd-test-secret"),
    ];
    let server = Server::start_with_env(&[], &store_env);
    let run_id = create_run(&server, "pods-s3").await;
    let bare = Pods {
        server: &server,
        run_id: run_id.clone(),
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    assert_eq!(bare.drive("root/make").unwrap(), answer(true, 0));
    let (code, stderr) = bare.launch("root/make");
    assert_eq!(code, 1);
    assert!(stderr.contains("set OBJECTSTORECONFIG_HOST"), "{stderr}");

    let pods = Pods {
        env: store_env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        ..bare
    };
    let (code, stderr) = pods.launch("root/make");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(pods.drive("root/for-loop-1").unwrap(), answer(true, 2));
    assert_eq!(
        pods.drive("root/for-loop-1/0/use").unwrap(),
        answer(true, 0)
    );
    let (code, stderr) = pods.launch("root/for-loop-1/0/use");
    assert_eq!(code, 0, "{stderr}");

    let tasks = rows(&server, &run_id).await;
    assert_eq!(
        serde_json::from_str::<Value>(&tasks["root/for-loop-1/0/use"].outputs).unwrap(),
        json!({"Output": "3:a:hello"}),
        "the artifact went through the bucket"
    );
    let (_, artifacts) = server.get(&format!("/artifacts?run_id={run_id}")).await;
    let uri = artifacts["artifacts"][0]["uri"]
        .as_str()
        .unwrap_or_default();
    assert!(
        uri.starts_with(&format!("minio://{bucket}/v2/artifacts/")),
        "{artifacts}"
    );
    let details: Value = serde_json::from_str(&tasks["root/make"].details).unwrap();
    let log_uri = details["log_uri"].as_str().unwrap_or_default();
    assert!(
        log_uri.starts_with(&format!("minio://{bucket}/")),
        "{details}"
    );
    let make_id = &tasks["root/make"].id;
    let response = server
        .client
        .get(format!(
            "{}/apis/v1alpha1/runs/{run_id}/nodes/{make_id}/log",
            server.base
        ))
        .send()
        .await
        .expect("log");
    assert_eq!(response.status().as_u16(), 200);
}

/// `dsl.ExitHandler`: the guarded task fails, Argo omits the task after it (no
/// driver request ever comes for it), and the exit task still runs.
const EXIT_HANDLER: &str = r#"
pipelineInfo:
  name: NAME
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-first:
    executorLabel: exec-fail
  comp-second:
    executorLabel: exec-ok
  comp-cleanup:
    executorLabel: exec-ok
  comp-exit-handler-1:
    dag:
      tasks:
        first:
          componentRef: {name: comp-first}
          taskInfo: {name: first}
        second:
          componentRef: {name: comp-second}
          dependentTasks: [first]
          taskInfo: {name: second}
deploymentSpec:
  executors:
    exec-fail:
      container:
        image: alpine
        command: [sh, -c, 'echo broke; exit 2']
    exec-ok:
      container:
        image: alpine
        command: [sh, -c, 'true']
root:
  inputDefinitions:
    parameters:
      greeting: {parameterType: STRING}
  dag:
    tasks:
      exit-handler-1:
        componentRef: {name: comp-exit-handler-1}
        taskInfo: {name: exit-handler-1}
      cleanup:
        componentRef: {name: comp-cleanup}
        dependentTasks: [exit-handler-1]
        triggerPolicy: {strategy: ALL_UPSTREAM_TASKS_COMPLETED}
        taskInfo: {name: cleanup}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_task_runs_after_a_failure_argo_omitted_the_rest_of() {
    let server = Server::start();
    let pods = Pods {
        server: &server,
        run_id: create_run_of(&server, EXIT_HANDLER, "pods-exit").await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    assert_eq!(pods.drive("root/exit-handler-1").unwrap(), answer(true, 0));
    assert_eq!(
        pods.drive("root/exit-handler-1/first").unwrap(),
        answer(true, 0)
    );
    assert_eq!(pods.launch("root/exit-handler-1/first").0, 2);
    // "second" is omitted by Argo: never driven.
    assert_eq!(pods.drive("root/cleanup").unwrap(), answer(true, 0));
    assert_eq!(pods.launch("root/cleanup").0, 0);
    let tasks = rows(&server, &pods.run_id).await;
    assert_eq!(
        tasks["root/exit-handler-1"].kind,
        kfpd_store::TaskKind::ExitHandler
    );
    assert_eq!(
        tasks["root/cleanup"].state,
        kfpd_store::TaskState::Succeeded
    );
    assert!(!tasks.contains_key("root/exit-handler-1/second"));
}

/// A task whose CPU limit and secret come from its producer's outputs.
const PATCHED: &str = r#"
pipelineInfo: {name: NAME}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-make:
    executorLabel: exec-make
    outputDefinitions:
      parameters:
        cpu: {parameterType: STRING}
        secret: {parameterType: STRING}
  comp-use:
    executorLabel: exec-use
    inputDefinitions:
      parameters:
        cpu: {parameterType: STRING}
        pipelinechannel--make-secret: {parameterType: STRING}
deploymentSpec:
  executors:
    exec-make:
      container:
        image: alpine
        command: [sh, -c, 'printf 500m > "$0" && printf creds > "$1"', "{{$.outputs.parameters['cpu'].output_file}}", "{{$.outputs.parameters['secret'].output_file}}"]
    exec-use:
      container:
        image: alpine
        command: [sh, -c, 'exit 0']
        resources:
          resourceCpuLimit: "{{$.inputs.parameters['cpu']}}"
root:
  inputDefinitions:
    parameters:
      greeting: {parameterType: STRING}
  dag:
    tasks:
      make:
        componentRef: {name: comp-make}
        taskInfo: {name: make}
      use:
        componentRef: {name: comp-use}
        dependentTasks: [make]
        inputs:
          parameters:
            cpu:
              taskOutputParameter: {producerTask: make, outputParameterKey: cpu}
            pipelinechannel--make-secret:
              taskOutputParameter: {producerTask: make, outputParameterKey: secret}
        taskInfo: {name: use}
---
platforms:
  kubernetes:
    deploymentSpec:
      executors:
        exec-use:
          secretAsEnv:
          - secretNameParameter:
              taskOutputParameter: {producerTask: make, outputParameterKey: secret}
            keyToEnv:
            - {secretKey: password, envVar: PASSWORD}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_answers_pod_settings_known_only_at_run_time_as_a_patch() {
    let server = Server::start();
    let pods = Pods {
        server: &server,
        run_id: create_run_of(&server, PATCHED, "pods-patch").await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    assert_eq!(pods.drive("root/make").unwrap(), answer(true, 0));
    let (code, stderr) = pods.launch("root/make");
    assert_eq!(code, 0, "{stderr}");
    let answered = pods
        .drive_with("root/use", &["--pod-spec-patch"])
        .expect("driven");
    assert_eq!(answered["execute"], "true");
    let patch: Value = serde_json::from_str(answered["pod_spec_patch"].as_str().unwrap())
        .expect("the patch is JSON");
    assert_eq!(
        patch,
        json!({"containers": [{
            "name": "main",
            "image": "alpine",
            "resources": {"limits": {"cpu": "500m"}},
            "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
        }]}),
        "the producer's outputs are in the pod's settings"
    );
    assert_eq!(
        pods.drive_with("root/use", &["--pod-spec-patch"]).unwrap(),
        answered,
        "asked again, the same patch"
    );
    assert_eq!(
        pods.drive("root/use").unwrap()["pod_spec_patch"],
        answered["pod_spec_patch"],
        "kept on the task's row"
    );
}

/// Driver requests of one run are answered one at a time, but a request of one run
/// that waits (here for its run's row, held by the test in PostgreSQL) does not
/// hold up another run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_request_waits_does_not_hold_up_another_run() {
    let Some(url) = common::database_url("postgres").await else {
        return;
    };
    let server = Server::start_with(&["--database-url", &url]);
    let run_a = create_run(&server, "turns-a").await;
    let run_b = create_run(&server, "turns-b").await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    // Run a's first request moves it from PENDING to RUNNING: that update waits
    // for this transaction's lock on the run's row.
    let mut held = pool.begin().await.expect("begin");
    sqlx::query("SELECT uuid FROM runs WHERE uuid = $1 FOR UPDATE")
        .bind(&run_a)
        .fetch_one(&mut *held)
        .await
        .expect("lock run a's row");
    let drive_root = |run_id: String, base: String| {
        tokio::task::spawn_blocking(move || {
            kfpd(&[
                "driver",
                "--server",
                &base,
                "--run-id",
                &run_id,
                "--task-path",
                "root/make",
                "--timeout-seconds",
                "120",
            ])
        })
    };
    let a = drive_root(run_a.clone(), server.base.clone());
    // Until the server's update of run a waits for the lock (bounded).
    let mut waits = 0;
    for _ in 0..600 {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity");
        waits = count;
        if waits > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(waits > 0, "run a's request never waited for its row");
    // Run b's request is answered while run a's still waits. (A bound, not a
    // timing: with one turn for all runs it would wait for the test to let go.)
    let b = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        drive_root(run_b.clone(), server.base.clone()),
    )
    .await
    .expect("run b's request waited for run a's")
    .expect("driver");
    assert_eq!(b.0, 0, "{}", b.2);
    assert_eq!(
        serde_json::from_str::<Value>(&b.1).unwrap(),
        answer(true, 0)
    );
    assert!(!a.is_finished(), "run a's request is still waiting");
    held.rollback().await.expect("let go of run a's row");
    let (code, stdout, stderr) = a.await.expect("driver");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        answer(true, 0)
    );
    let (_, run) = server.get(&format!("/runs/{run_a}")).await;
    assert_eq!(run["state"], "RUNNING", "{run}");
    drop(server);
    pool.close().await;
    kfpd_store::sql::drop_database(&url)
        .await
        .expect("drop test database");
}

const PVC: &str = r#"
pipelineInfo:
  name: NAME
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-createpvc:
    executorLabel: exec-createpvc
    inputDefinitions:
      parameters:
        access_modes: {parameterType: LIST}
        pvc_name_suffix: {parameterType: STRING, isOptional: true}
        size: {parameterType: STRING}
    outputDefinitions:
      parameters:
        name: {parameterType: STRING}
  comp-deletepvc:
    executorLabel: exec-deletepvc
    inputDefinitions:
      parameters:
        pvc_name: {parameterType: STRING}
  comp-use:
    executorLabel: exec-use
    inputDefinitions:
      parameters:
        claim: {parameterType: STRING}
deploymentSpec:
  executors:
    exec-createpvc:
      container: {image: argostub/createpvc}
    exec-deletepvc:
      container: {image: argostub/deletepvc}
    exec-use:
      container: {image: alpine, command: [sh, -c, 'echo "$0"', "{{$.inputs.parameters['claim']}}"]}
root:
  dag:
    tasks:
      createpvc:
        componentRef: {name: comp-createpvc}
        inputs:
          parameters:
            access_modes: {runtimeValue: {constant: [ReadWriteOnce]}}
            pvc_name_suffix: {runtimeValue: {constant: -data}}
            size: {runtimeValue: {constant: 1Gi}}
        taskInfo: {name: createpvc}
      use:
        componentRef: {name: comp-use}
        dependentTasks: [createpvc]
        inputs:
          parameters:
            claim:
              taskOutputParameter: {producerTask: createpvc, outputParameterKey: name}
        taskInfo: {name: use}
      deletepvc:
        componentRef: {name: comp-deletepvc}
        dependentTasks: [createpvc, use]
        inputs:
          parameters:
            pvc_name:
              taskOutputParameter: {producerTask: createpvc, outputParameterKey: name}
        taskInfo: {name: deletepvc}
  inputDefinitions:
    parameters:
      greeting: {parameterType: STRING}
"#;

/// The persistence agent's report of a Workflow whose nodes are `nodes`
/// (name, template, phase, message, task path).
fn report(run_id: &str, nodes: &[(&str, &str, &str, &str, &str)]) -> Value {
    let statuses: serde_json::Map<String, Value> = nodes
        .iter()
        .enumerate()
        .map(|(index, (name, template, phase, message, path))| {
            let id = format!("wf-{index}");
            let status = json!({
                "id": id, "name": name, "type": "Pod", "templateName": template,
                "phase": phase, "message": message,
                "inputs": {"parameters": [{"name": "task-path", "value": path}]},
            });
            (id, status)
        })
        .collect();
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf", "namespace": "kubeflow", "uid": "u-1",
                     "labels": {"pipeline/runid": run_id}},
        "spec": {"templates": [
            {"name": "createpvc-create", "resource": {"action": "create", "manifest": "{}"}},
            {"name": "deletepvc-delete", "resource": {"action": "delete", "manifest": "{}"}},
            {"name": "exec-use", "container": {"image": "alpine"}},
        ]},
        "status": {"phase": "Running", "nodes": statuses},
    })
}

/// A PVC task runs until Argo's `resource` node for it ended: the driver request
/// records it RUNNING; the request of a task waiting for its success ends it
/// SUCCEEDED (Argo sends that request only then); the Workflow's report of a
/// failed resource node ends it FAILED with the node's message, and the run fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_task_ends_with_its_resource_node() {
    let server = Server::start();
    let pods = Pods {
        server: &server,
        run_id: create_run_of(&server, PVC, "pods-pvc").await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    let run_id = pods.run_id.clone();
    assert_eq!(pods.drive("root/createpvc").unwrap(), answer(true, 0));
    let row = rows(&server, &run_id).await["root/createpvc"].clone();
    assert_eq!(
        row.state,
        kfpd_store::TaskState::Running,
        "not ended before Argo made the PVC"
    );
    let name: Value = serde_json::from_str(&row.outputs).expect("outputs");
    let name = name["name"].as_str().expect("the PVC's name").to_string();
    assert!(name.ends_with("-data"), "{name}");

    assert_eq!(pods.drive("root/use").unwrap(), answer(true, 0));
    let all = rows(&server, &run_id).await;
    assert_eq!(
        all["root/createpvc"].state,
        kfpd_store::TaskState::Succeeded
    );
    assert_eq!(all["root/use"].inputs, json!({"claim": name}).to_string());
    let (code, stderr) = pods.launch("root/use");
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = pods.launch("root/createpvc");
    assert_ne!(code, 0, "a PVC task has no launcher");
    assert!(stderr.contains("resource template"), "{stderr}");

    assert_eq!(pods.drive("root/deletepvc").unwrap(), answer(true, 0));
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(
        run["state"], "RUNNING",
        "the run waits for DeletePVC's node: {run}"
    );

    // A report of the container's pod alone changes nothing.
    let only_pod = report(
        &run_id,
        &[("wf.use", "exec-use", "Succeeded", "", "root/use")],
    );
    let (status, body) = server.post("/workflows", &only_pod).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rows(&server, &run_id).await["root/deletepvc"].state,
        kfpd_store::TaskState::Running
    );
    let forbidden = "persistentvolumeclaims \"x\" is forbidden";
    let failed = report(
        &run_id,
        &[
            (
                "wf.createpvc",
                "createpvc-create",
                "Succeeded",
                "",
                "root/createpvc",
            ),
            ("wf.use", "exec-use", "Succeeded", "", "root/use"),
            (
                "wf.deletepvc",
                "deletepvc-delete",
                "Failed",
                forbidden,
                "root/deletepvc",
            ),
        ],
    );
    let (status, body) = server.post("/workflows", &failed).await;
    assert_eq!(status, 200, "{body}");
    let all = rows(&server, &run_id).await;
    let delete = &all["root/deletepvc"];
    assert_eq!(delete.state, kfpd_store::TaskState::Failed);
    let error = format!("resource wf.deletepvc: {forbidden}");
    assert_eq!(delete.error.as_deref(), Some(error.as_str()));
    assert_eq!(
        all["root/createpvc"].state,
        kfpd_store::TaskState::Succeeded
    );
    assert_eq!(all["root"].state, kfpd_store::TaskState::Failed);
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(run["state"], "FAILED", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(forbidden),
        "{run}"
    );
    // Reported again (the agent repeats itself): nothing changes.
    let (status, body) = server.post("/workflows", &failed).await;
    assert_eq!(status, 200, "{body}");
    let again = rows(&server, &run_id).await;
    assert_eq!(again["root/deletepvc"].state_history, delete.state_history);
}

/// `PVC` with a task after `DeletePVC` that runs however it ended
/// (`ignore_upstream_failure`): its request cannot tell the PVC's outcome.
fn pvc_then_on_completion() -> String {
    PVC.replace(
        "  comp-use:\n",
        "  comp-note:\n    executorLabel: exec-note\n  comp-use:\n",
    )
    .replace(
        "    exec-use:\n",
        "    exec-note:\n      container: {image: alpine, command: [echo, done]}\n    exec-use:\n",
    )
    .replace(
        "        taskInfo: {name: deletepvc}\n",
        "        taskInfo: {name: deletepvc}\n      note:\n        componentRef: {name: comp-note}\n        dependentTasks: [deletepvc]\n        triggerPolicy: {strategy: ALL_UPSTREAM_TASKS_COMPLETED}\n        taskInfo: {name: note}\n",
    )
}

/// Argo drives a task that runs on completion as soon as the `DeletePVC` node
/// before it ended, often before the agent's report of that node reached kfpd: the
/// request waits for the report instead of being refused, and follows the outcome
/// it brings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_after_a_pvc_task_waits_for_the_report_of_its_node() {
    let server = Server::start_with(&["--driver-patience", "20s"]);
    let pipeline = pvc_then_on_completion();
    let pods = Pods {
        server: &server,
        run_id: create_run_of(&server, &pipeline, "pods-pvc-wait").await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    let run_id = pods.run_id.clone();
    assert_eq!(pods.drive("root/createpvc").unwrap(), answer(true, 0));
    assert_eq!(pods.drive("root/use").unwrap(), answer(true, 0));
    let (code, stderr) = pods.launch("root/use");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(pods.drive("root/deletepvc").unwrap(), answer(true, 0));

    // The agent's report that DeletePVC's node failed comes a second after Argo
    // drove the task after it.
    let nodes = [
        (
            "wf.createpvc",
            "createpvc-create",
            "Succeeded",
            "",
            "root/createpvc",
        ),
        ("wf.use", "exec-use", "Succeeded", "", "root/use"),
        (
            "wf.deletepvc",
            "deletepvc-delete",
            "Failed",
            "claim is in use",
            "root/deletepvc",
        ),
    ];
    let reported = report(&run_id, &nodes);
    let client = server.client.clone();
    let url = server.url("/workflows");
    let reporter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let response = client
            .post(url)
            .json(&reported)
            .send()
            .await
            .expect("report");
        response.status().as_u16()
    });
    let started = std::time::Instant::now();
    let driven = tokio::task::spawn_blocking({
        let server = server.base.clone();
        let run_id = run_id.clone();
        move || {
            kfpd(&[
                "driver",
                "--server",
                &server,
                "--run-id",
                &run_id,
                "--task-path",
                "root/note",
            ])
        }
    })
    .await
    .expect("driver");
    assert_eq!(reporter.await.expect("reporter"), 200);
    let (code, stdout, stderr) = driven;
    assert_eq!(code, 0, "refused instead of waiting: {stderr}");
    let decision: Value = serde_json::from_str(&stdout).expect("answer");
    assert_eq!(
        decision,
        answer(true, 0),
        "an exit task runs after a failure"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "answered before the report came"
    );
    let all = rows(&server, &run_id).await;
    assert_eq!(all["root/deletepvc"].state, kfpd_store::TaskState::Failed);
    assert_eq!(all["root/note"].state, kfpd_store::TaskState::Running);

    // With nothing to wait for, the refusal comes once the patience is spent.
    let quick = Server::start_with(&["--driver-patience", "0s"]);
    let pods = Pods {
        server: &quick,
        run_id: create_run_of(&quick, &pipeline, "pods-pvc-no-wait").await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    assert_eq!(pods.drive("root/createpvc").unwrap(), answer(true, 0));
    assert_eq!(pods.drive("root/use").unwrap(), answer(true, 0));
    assert_eq!(pods.launch("root/use").0, 0);
    assert_eq!(pods.drive("root/deletepvc").unwrap(), answer(true, 0));
    let (_, stderr) = pods.drive("root/note").unwrap_err();
    assert!(
        stderr.contains("upstream task \"deletepvc\" has not ended"),
        "{stderr}"
    );
}

/// A `CreatePVC` inside a nested pipeline, and a task after that pipeline.
const NESTED_PVC: &str = r#"
pipelineInfo:
  name: NAME
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-createpvc:
    executorLabel: exec-createpvc
    inputDefinitions:
      parameters:
        access_modes: {parameterType: LIST}
        pvc_name: {parameterType: STRING, isOptional: true}
        size: {parameterType: STRING}
    outputDefinitions:
      parameters:
        name: {parameterType: STRING}
  comp-stage:
    dag:
      tasks:
        createpvc:
          componentRef: {name: comp-createpvc}
          inputs:
            parameters:
              access_modes: {runtimeValue: {constant: [ReadWriteOnce]}}
              pvc_name: {runtimeValue: {constant: scratch}}
              size: {runtimeValue: {constant: 1Gi}}
          taskInfo: {name: createpvc}
  comp-after:
    executorLabel: exec-after
deploymentSpec:
  executors:
    exec-createpvc:
      container: {image: argostub/createpvc}
    exec-after:
      container: {image: alpine, command: [sh, -c, 'echo after']}
root:
  inputDefinitions:
    parameters:
      greeting: {parameterType: STRING}
  dag:
    tasks:
      stage:
        componentRef: {name: comp-stage}
        taskInfo: {name: stage}
      after:
        componentRef: {name: comp-after}
        dependentTasks: [stage]
        taskInfo: {name: after}
"#;

/// Argo drives the task after a nested pipeline once that pipeline's DAG node
/// succeeded, so the `CreatePVC` inside it made its PVC: that request ends it,
/// and the pipeline's DAG with it, without the Workflow's report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_task_inside_an_upstream_dag_ends_when_the_task_after_is_driven() {
    let server = Server::start();
    let pods = Pods {
        server: &server,
        run_id: create_run_of(&server, NESTED_PVC, "pods-nested-pvc").await,
        work: tempfile::tempdir().expect("work dir"),
        env: Vec::new(),
    };
    let run_id = pods.run_id.clone();
    assert_eq!(pods.drive("root/stage").unwrap(), answer(true, 0));
    assert_eq!(pods.drive("root/stage/createpvc").unwrap(), answer(true, 0));
    let all = rows(&server, &run_id).await;
    assert_eq!(
        all["root/stage/createpvc"].state,
        kfpd_store::TaskState::Running
    );
    assert_eq!(all["root/stage"].state, kfpd_store::TaskState::Running);
    assert_eq!(pods.drive("root/after").unwrap(), answer(true, 0));
    let all = rows(&server, &run_id).await;
    assert_eq!(
        all["root/stage/createpvc"].state,
        kfpd_store::TaskState::Succeeded
    );
    assert_eq!(all["root/stage"].state, kfpd_store::TaskState::Succeeded);
    let (code, stderr) = pods.launch("root/after");
    assert_eq!(code, 0, "{stderr}");
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
}
