//! Corpus pipelines executed by `kfpd serve`'s local executor through the REST
//! API, each reaching the state MANIFEST.tsv expects. Tests of corpus files skip
//! without the corpus (`KFPD_CORPUS_DIR`), except under `CI=true`.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{corpus_dir, stop_after_this_process, Server};
use serde_json::{json, Value};

/// One server for the whole file: runs of different tests execute side by side.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = Server::start_with(&["--executor", "local", "--max-parallel-tasks", "16"]);
        stop_after_this_process(server.pid());
        server
    })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn expected_state(relative: &str) -> String {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).expect("manifest");
    text.lines()
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .find(|columns| columns.first() == Some(&relative))
        .and_then(|columns| columns.get(1).map(|state| state.to_string()))
        .unwrap_or_else(|| panic!("{relative} is not in MANIFEST.tsv"))
}

/// Creates a run of a corpus file with upstream's generated values for required
/// parameters (plus `overrides`) and waits for it to end.
async fn run_corpus(relative: &str, overrides: Value, limit: Duration) -> Value {
    run_corpus_on(server(), relative, overrides, limit).await
}

/// [`run_corpus`] on another server.
async fn run_corpus_on(
    server: &Server,
    relative: &str,
    overrides: Value,
    limit: Duration,
) -> Value {
    let bytes = std::fs::read(corpus_dir().join(relative)).expect("corpus file");
    let package = kfpd_ir::read_package(relative, &bytes).expect("package");
    let mut parameters = kfpd_ir::generate_test_parameters(&package, 7);
    if let Value::Object(extra) = overrides {
        parameters.extend(extra);
    }
    let body = json!({
        "display_name": format!("corpus {relative}"),
        "pipeline_spec": package.api_pipeline_spec(),
        "runtime_config": {"parameters": parameters},
    });
    let client = client();
    let response = client
        .post(server.url("/runs"))
        .json(&body)
        .send()
        .await
        .expect("create run");
    let (status, run) = common::read(response).await;
    assert_eq!(status, 200, "{relative}: {run}");
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    wait_for_end_on(server, &client, &run_id, limit).await
}

async fn wait_for_end(client: &reqwest::Client, run_id: &str, limit: Duration) -> Value {
    wait_for_end_on(server(), client, run_id, limit).await
}

async fn wait_for_end_on(
    server: &Server,
    client: &reqwest::Client,
    run_id: &str,
    limit: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let response = client
            .get(server.url(&format!("/runs/{run_id}")))
            .send()
            .await
            .expect("get run");
        let (_, run) = common::read(response).await;
        let state = run["state"].as_str().unwrap_or_default();
        if matches!(state, "SUCCEEDED" | "FAILED" | "CANCELED" | "SKIPPED") {
            return run;
        }
        if started.elapsed() > limit {
            panic!(
                "run {run_id} still {state} after {limit:?}; server stderr:\n{}",
                server.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn task_states(run: &Value) -> Vec<(String, String)> {
    run["run_details"]["task_details"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|task| {
                    (
                        task["display_name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        task["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn check(relative: &str, overrides: Value, limit: Duration) {
    let run = run_corpus(relative, overrides, limit).await;
    let expected = expected_state(relative);
    let state = run["state"].as_str().unwrap_or_default();
    assert_eq!(
        state,
        expected,
        "{relative}: error {:?}; tasks {:?}",
        run["error"],
        task_states(&run)
    );
    if expected == "SUCCEEDED" {
        let tasks = task_states(&run);
        assert!(!tasks.is_empty(), "{relative}: no task details");
        assert!(
            tasks
                .iter()
                .all(|(_, state)| state == "SUCCEEDED" || state == "SKIPPED"),
            "{relative}: {tasks:?}"
        );
    } else {
        assert!(
            run["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{relative}: a failed run names its failure"
        );
    }
}

const MINUTES: u64 = 60;

macro_rules! corpus_tests {
    ($($name:ident => $path:literal $(, $overrides:expr)? ;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                kfpd_testdata::require_or_skip!(Corpus);
                #[allow(unused_mut, unused_assignments)]
                let mut overrides = json!({});
                $(overrides = $overrides;)?
                check($path, overrides, Duration::from_secs(15 * MINUTES)).await;
            }
        )*
    };
}

corpus_tests! {
    arguments_parameters_yaml => "arguments_parameters.yaml";
    arguments_parameters_zip => "arguments_parameters.zip";
    add_numbers => "critical/add_numbers.yaml";
    artifact_cache => "critical/artifact_cache.yaml";
    component_with_optional_inputs => "critical/component_with_optional_inputs.yaml";
    container_component_with_no_inputs => "critical/container_component_with_no_inputs.yaml";
    missing_kubernetes_optional_inputs => "critical/missing_kubernetes_optional_inputs.yaml";
    mixed_parameters => "critical/mixed_parameters.yaml";
    multiple_parameters_namedtuple => "critical/multiple_parameters_namedtuple.yaml";
    parameter_cache => "critical/parameter_cache.yaml";
    pipeline_with_env => "critical/pipeline_with_env.yaml";
    producer_consumer_param_pipeline => "critical/producer_consumer_param_pipeline.yaml";
    pythonic_artifacts_test_pipeline => "critical/pythonic_artifacts_test_pipeline.yaml";
    two_step_pipeline_containerized => "critical/two_step_pipeline_containerized.yaml";
    component_with_env_variable => "essential/component_with_env_variable.yaml";
    concat_message => "essential/concat_message.yaml";
    container_no_input => "essential/container_no_input.yaml";
    dict_input => "essential/dict_input.yaml";
    lightweight_python_functions_pipeline => "essential/lightweight_python_functions_pipeline.yaml";
    lightweight_python_functions_with_outputs => "essential/lightweight_python_functions_with_outputs.yaml";
    pipeline_with_after => "essential/pipeline_with_after.yaml";
    pipeline_with_outputs => "essential/pipeline_with_outputs.yaml";
    pipeline_with_reused_component => "essential/pipeline_with_reused_component.yaml";
    placeholder_with_if_placeholder_none_input_value => "essential/placeholder_with_if_placeholder_none_input_value.yaml";
    fail_v2 => "failing/fail_v2.yaml";
    hello_world => "hello_world.yaml";
    identity => "identity.yaml";
    local_execution_pipeline_with_k8s_only_methods => "local_execution/local_execution_pipeline_with_k8s_only_methods.yaml";
    pipeline_with_caching => "local_execution/pipeline_with_caching.yaml";
    log_streaming_compiled => "log_streaming_compiled.yaml";
    long_running => "long-running.yaml";
    mounted_cabundle_configmap => "mounted_cabundle_configmap.yaml";
    mounted_cabundle_secret => "mounted_cabundle_secret.yaml";
    nested_return => "nested_return.yaml";
    output_metrics => "output_metrics.yaml";
    nested_pipeline_opt_input_child_level => "parallel_and_nested/nested_pipeline_opt_input_child_level_compiled.yaml";
    nested_pipeline_opt_inputs_parent_level => "parallel_and_nested/nested_pipeline_opt_inputs_parent_level_compiled.yaml";
    pipeline_in_pipeline => "parallel_and_nested/pipeline_in_pipeline.yaml";
    pipeline_with_only_display_name => "pipeline_with_only_display_name.yaml";
    pipeline_with_string_machine_fields_pipeline_input => "pipeline_with_string_machine_fields_pipeline_input.yaml";
    pipeline_with_string_machine_fields_task_output => "pipeline_with_string_machine_fields_task_output.yaml";
    pipeline_with_utils => "pipeline_with_utils.yaml";
    preprocess => "preprocess.yaml";
    pythonic_artifacts_with_multiple_returns => "pythonic_artifacts_with_multiple_returns.yaml";
    run_as_user_cache_disabled => "run_as_user_cache_disabled.yaml";
    run_as_user_cache_enabled => "run_as_user_cache_enabled.yaml";
    sequential_v1 => "sequential_v1.yaml";
    take_nap_compiled => "take_nap_compiled.yaml", json!({"naptime_secs": 2});
    take_nap_pipeline_root_compiled => "take_nap_pipeline_root_compiled.yaml", json!({"naptime_secs": 2});
    // Control flow: conditions, loops, exit handlers, retries.
    artifacts_complex => "artifacts_complex.yaml";
    collected_artifacts => "collected_artifacts.yaml";
    flip_coin => "critical/flip_coin.yaml";
    critical_if_else_with_oneof_artifacts => "critical/if_else_with_oneof_artifacts.yaml";
    parallel_for_after_dependency => "critical/parallel_for_after_dependency.yaml";
    pipeline_with_input_status_state => "critical/pipeline_with_input_status_state.yaml";
    pipeline_with_retry => "critical/pipeline_with_retry.yaml";
    pipeline_with_condition => "essential/pipeline_with_condition.yaml";
    pipeline_with_metrics_outputs => "essential/pipeline_with_metrics_outputs.yaml";
    pipeline_with_params_containing_format => "essential/pipeline_with_params_containing_format.yaml";
    if_elif_else_with_oneof_parameters => "if_elif_else_with_oneof_parameters.yaml";
    if_else_with_oneof_artifacts => "if_else_with_oneof_artifacts.yaml";
    if_else_with_oneof_parameters => "if_else_with_oneof_parameters.yaml";
    local_execution_pipeline_with_exit_handler => "local_execution/local_execution_pipeline_with_exit_handler.yaml";
    pipeline_with_collected_artifacts => "local_execution/pipeline_with_collected_artifacts.yaml";
    parameters_complex => "parameters_complex.yaml";
    pipeline_producer_consumer => "pipeline_producer_consumer.yaml";
    pipeline_with_loops_and_conditions => "pipeline_with_loops_and_conditions.yaml";
    pipeline_with_parallelfor_parallelism => "pipeline_with_parallelfor_parallelism.yaml";
    pipeline_with_parallelfor_pipeline_param => "pipeline_with_parallelfor_pipeline_param.yaml";
    pipeline_with_task_final_status_yaml => "pipeline_with_task_final_status_yaml.yaml";
}

/// Two corpus files use SDK features newer than the kfp version their own command
/// installs (`dsl.EmbeddedInput` is not in kfp 2.14.3, `Artifact.set_path` is not
/// in kfp 2.14.6; both arrived in 2.15). Run as compiled they fail inside the
/// component, here as they would anywhere the pinned release is installed; these
/// tests pin down that this, and nothing else, is why.
async fn check_sdk_too_old(relative: &str, missing: &str) {
    let run = run_corpus(relative, json!({}), Duration::from_secs(15 * MINUTES)).await;
    let message = run["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(run["state"], "FAILED", "{relative}: {run}");
    assert!(
        message.contains("AttributeError") && message.contains(missing),
        "{relative}: failed for another reason: {message}"
    );
}

/// A server that installs kfp 2.15.0 whatever kfp a component pins.
fn newer_kfp_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = Server::start_with(&["--executor", "local", "--kfp-package", "kfp==2.15.0"]);
        stop_after_this_process(server.pid());
        server
    })
}

/// The same two files on a server started with `--kfp-package kfp==2.15.0`.
async fn run_with_newer_kfp(relative: &str) -> Value {
    let server = newer_kfp_server();
    let run = run_corpus_on(
        server,
        relative,
        json!({}),
        Duration::from_secs(15 * MINUTES),
    )
    .await;
    assert_eq!(
        run["state"],
        "SUCCEEDED",
        "{relative}: error {:?}; tasks {:?}\n{}",
        run["error"],
        task_states(&run),
        server.stderr()
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_artifact_needs_a_newer_kfp_than_it_installs() {
    kfpd_testdata::require_or_skip!(Corpus);
    check_sdk_too_old("essential/embedded_artifact.yaml", "EmbeddedInput").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_artifact_runs_with_the_kfp_package_option() {
    kfpd_testdata::require_or_skip!(Corpus);
    let run = run_with_newer_kfp("essential/embedded_artifact.yaml").await;
    for name in ["read-embedded-artifact-dir", "read-embedded-artifact-file"] {
        let task = task_named(&run, name);
        assert_eq!(task["state"], "SUCCEEDED", "{task}");
    }
}

/// `kfpd run` takes the same option: the file that fails with its pinned kfp
/// succeeds, and a requirement that could break the preamble's quoting is refused.
#[test]
fn kfpd_run_takes_the_kfp_package_option() {
    kfpd_testdata::require_or_skip!(Corpus);
    let pipeline = corpus_dir().join("essential/embedded_artifact.yaml");
    let data = tempfile::tempdir().expect("temp dir");
    let run = |package: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kfpd"))
            .arg("run")
            .arg(&pipeline)
            .arg("--data-dir")
            .arg(data.path())
            .arg("--kfp-package")
            .arg(package)
            .env_remove("KFPD_KFP_PACKAGE")
            .output()
            .expect("kfpd run")
    };
    let done = run("kfp==2.15.0");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(stderr.contains("run SUCCEEDED"), "{stderr}");

    let refused = run("kfp==2.15.0' && rm -rf x '");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("kfp_package"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_custom_path_needs_a_newer_kfp_than_it_installs() {
    kfpd_testdata::require_or_skip!(Corpus);
    check_sdk_too_old(
        "critical/pipeline_with_artifact_custom_path.yaml",
        "set_path",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_custom_path_runs_with_the_kfp_package_option() {
    kfpd_testdata::require_or_skip!(Corpus);
    let server = newer_kfp_server();
    let run = run_with_newer_kfp("critical/pipeline_with_artifact_custom_path.yaml").await;
    let run_id = run["run_id"].as_str().unwrap_or_default();
    let producer = task_named(&run, "component-output-artifact");
    let task_id = producer["task_id"].as_str().unwrap_or_default();
    let (status, read) = server
        .get(&format!(
            "/runs/{run_id}/nodes/{task_id}/artifacts/out_dataset:read"
        ))
        .await;
    assert_eq!(status, 200, "{read}");
    let data = read["data"].as_str().unwrap_or_default();
    // base64 of "Hello, World!", what the component wrote at its set_path location.
    assert_eq!(data, "SGVsbG8sIFdvcmxkIQ==");
    let validate = task_named(&run, "validate-input-artifact");
    assert_eq!(validate["state"], "SUCCEEDED", "{validate}");
}

// ---------------------------------------------------------------------------
// Control flow: what ran, what was skipped, and why a run failed.

/// Every task of a run with this display name.
fn tasks_named<'a>(run: &'a Value, display_name: &str) -> Vec<&'a Value> {
    run["run_details"]["task_details"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter(|task| task["display_name"] == display_name)
                .collect()
        })
        .unwrap_or_default()
}

/// The one task of a run with this display name.
fn task_named<'a>(run: &'a Value, display_name: &str) -> &'a Value {
    let found = tasks_named(run, display_name);
    assert_eq!(
        found.len(),
        1,
        "{} tasks named {display_name:?}: {:?}",
        found.len(),
        task_states(run)
    );
    found[0]
}

fn error_of(value: &Value) -> &str {
    value["error"]["message"].as_str().unwrap_or_default()
}

/// A path under the server's data dir that tasks (processes on this machine) can write.
fn scratch_path(name: &str) -> std::path::PathBuf {
    let dir = server().dir.path().join("scratch");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(format!("{name}-{}", uuid::Uuid::new_v4()))
}

async fn task_log(run_id: &str, task_id: &str) -> String {
    let url = format!(
        "{}/apis/v1alpha1/runs/{run_id}/nodes/{task_id}/log",
        server().base
    );
    let response = client().get(url).send().await.expect("log");
    assert_eq!(response.status(), 200, "log of task {task_id}");
    response.text().await.expect("log text")
}

/// Runs an inline pipeline (YAML text) and waits for it to end.
async fn run_inline(yaml: &str, parameters: Value) -> Value {
    let package = kfpd_ir::read_package("inline.yaml", yaml.as_bytes()).expect("inline package");
    let body = json!({
        "display_name": "inline",
        "pipeline_spec": package.api_pipeline_spec(),
        "runtime_config": {"parameters": parameters},
    });
    let (status, run) = server().post("/runs", &body).await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    wait_for_end(&client(), &run_id, Duration::from_secs(5 * MINUTES)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_handler_runs_after_a_failed_body_and_the_run_fails() {
    kfpd_testdata::require_or_skip!(Corpus);
    let relative = "failing/pipeline_with_exit_handler.yaml";
    let run = run_corpus(relative, json!({}), Duration::from_secs(15 * MINUTES)).await;
    assert_eq!(
        run["state"],
        expected_state(relative),
        "{:?}",
        task_states(&run)
    );
    assert_eq!(run["state"], "FAILED");
    assert!(
        error_of(&run).contains("fail-op") && error_of(&run).contains("exit code 1"),
        "the run fails because the guarded task did: {}",
        error_of(&run)
    );
    assert_eq!(task_named(&run, "fail-op")["state"], "FAILED");
    assert_eq!(task_named(&run, "exit-handler-1")["state"], "FAILED");
    assert_eq!(
        task_named(&run, "print-op")["state"],
        "SUCCEEDED",
        "the exit task ran"
    );
}

/// MANIFEST.tsv expects SUCCEEDED, but the guarded `fail_op` calls `sys.exit(1)`:
/// upstream's backend (and its SDK runner) end this run FAILED, as kfpd does. The
/// exit task itself runs and sees the FAILED final status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_as_exit_task_sees_the_failure_and_the_run_fails() {
    kfpd_testdata::require_or_skip!(Corpus);
    let run = run_corpus(
        "pipeline_as_exit_task.yaml",
        json!({}),
        Duration::from_secs(15 * MINUTES),
    )
    .await;
    assert_eq!(run["state"], "FAILED", "{:?}", task_states(&run));
    assert!(error_of(&run).contains("fail-op"), "{}", error_of(&run));
    assert_eq!(
        task_named(&run, "conditional-notification")["state"],
        "SUCCEEDED"
    );
    assert_eq!(task_named(&run, "get-run-state")["state"], "SUCCEEDED");
    assert_eq!(
        task_named(&run, "condition-1")["state"],
        "SUCCEEDED",
        "the exit pipeline's condition `state == 'FAILED'` held"
    );
    let printed: Vec<&Value> = tasks_named(&run, "print-op")
        .into_iter()
        .filter(|task| task["state"] == "SUCCEEDED")
        .collect();
    assert_eq!(
        printed.len(),
        2,
        "the guarded print-op and the one in condition-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_upstream_failure_runs_the_task_and_the_run_fails() {
    kfpd_testdata::require_or_skip!(Corpus);
    let relative = "local_execution/local_execution_pipeline_with_ignore_upstream_failure.yaml";
    let marker = scratch_path("marker");
    let run = run_corpus(
        relative,
        json!({"marker_path": marker.display().to_string()}),
        Duration::from_secs(15 * MINUTES),
    )
    .await;
    assert_eq!(
        run["state"],
        expected_state(relative),
        "{:?}",
        task_states(&run)
    );
    assert!(
        error_of(&run).contains("fail-always") && error_of(&run).contains("upstream failed"),
        "{}",
        error_of(&run)
    );
    assert_eq!(task_named(&run, "write-marker")["state"], "SUCCEEDED");
    assert!(marker.exists(), "the downstream task wrote its marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_upstream_failure_falls_back_to_the_input_default() {
    kfpd_testdata::require_or_skip!(Corpus);
    let relative = "pipeline_with_task_using_ignore_upstream_failure.yaml";
    let run = run_corpus(relative, json!({}), Duration::from_secs(15 * MINUTES)).await;
    assert_eq!(
        run["state"],
        expected_state(relative),
        "{:?}",
        task_states(&run)
    );
    assert!(error_of(&run).contains("fail-op"), "{}", error_of(&run));
    let print = task_named(&run, "print-op");
    assert_eq!(
        print["state"], "SUCCEEDED",
        "runs without its producer's output"
    );
    let log = task_log(
        run["run_id"].as_str().unwrap_or_default(),
        print["task_id"].as_str().unwrap_or_default(),
    )
    .await;
    assert!(log.contains("default"), "print-op used its default: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runs_a_flaky_task_again_and_keeps_every_attempt() {
    kfpd_testdata::require_or_skip!(Corpus);
    let relative = "local_execution/local_execution_pipeline_with_retry.yaml";
    let counter = scratch_path("counter");
    let run = run_corpus(
        relative,
        json!({"counter_path": counter.display().to_string()}),
        Duration::from_secs(15 * MINUTES),
    )
    .await;
    assert_eq!(
        run["state"],
        expected_state(relative),
        "{:?}",
        task_states(&run)
    );
    assert_eq!(
        std::fs::read_to_string(&counter).ok().as_deref(),
        Some("2"),
        "two attempts"
    );
    let flaky = task_named(&run, "flaky");
    let history: Vec<&str> = flaky["state_history"]
        .as_array()
        .map(|changes| {
            changes
                .iter()
                .filter_map(|change| change["state"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        history,
        ["RUNNING", "FAILED", "RUNNING", "SUCCEEDED"],
        "both attempts are in the task's history"
    );
    let log = task_log(
        run["run_id"].as_str().unwrap_or_default(),
        flaky["task_id"].as_str().unwrap_or_default(),
    )
    .await;
    assert!(
        log.contains("flaky attempt 1") && log.contains("--- kfpd: attempt 2 of 4 ---"),
        "the first attempt's log is kept: {log}"
    );
}

/// Upstream's Argo compiler rejects a ParallelFor over artifacts (hence the `_GH-`
/// name and `skip` in the manifest); kfpd runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_for_over_artifacts() {
    kfpd_testdata::require_or_skip!(Corpus);
    let run = run_corpus(
        "pipeline_with_parallelfor_list_artifacts_GH-12033.yaml",
        json!({}),
        Duration::from_secs(15 * MINUTES),
    )
    .await;
    assert_eq!(
        run["state"],
        "SUCCEEDED",
        "{}: {:?}",
        error_of(&run),
        task_states(&run)
    );
    // One iteration per artifact made from the default texts `["Hello", ",", " ", "world!"]`.
    assert_eq!(tasks_named(&run, "print-artifact-name").len(), 4);
    assert_eq!(tasks_named(&run, "print-artifact-name-2").len(), 4);
}

/// A loop of `sh` tasks: each records how many iterations run beside it.
const PARALLELISM_PIPELINE: &str = r#"
components:
  comp-for-loop-1:
    dag:
      outputs:
        parameters:
          pipelinechannel--square-Output:
            valueFromParameter: {outputParameterKey: Output, producerSubtask: square}
      tasks:
        square:
          componentRef: {name: comp-square}
          inputs:
            parameters:
              n: {componentInputParameter: pipelinechannel--loop-item-param-1}
              dir: {componentInputParameter: pipelinechannel--dir}
          taskInfo: {name: square}
    inputDefinitions:
      parameters:
        pipelinechannel--dir: {parameterType: STRING}
        pipelinechannel--loop-item-param-1: {parameterType: NUMBER_INTEGER}
    outputDefinitions:
      parameters:
        pipelinechannel--square-Output: {parameterType: LIST}
  comp-square:
    executorLabel: exec-square
    inputDefinitions:
      parameters:
        n: {parameterType: NUMBER_INTEGER}
        dir: {parameterType: STRING}
    outputDefinitions:
      parameters:
        Output: {parameterType: NUMBER_INTEGER}
  comp-total:
    executorLabel: exec-total
    inputDefinitions:
      parameters:
        numbers: {parameterType: LIST}
    outputDefinitions:
      parameters:
        Output: {parameterType: NUMBER_INTEGER}
deploymentSpec:
  executors:
    exec-square:
      container:
        image: alpine
        command: [sh, -c]
        args:
          - 'mkdir -p "$1/running"; touch "$1/running/$0"; ls "$1/running" | wc -l >> "$1/$0.seen"; sleep 0.5; ls "$1/running" | wc -l >> "$1/$0.seen"; rm "$1/running/$0"; echo $(($0 * $0)) > "$2"'
          - "{{$.inputs.parameters['n']}}"
          - "{{$.inputs.parameters['dir']}}"
          - "{{$.outputs.parameters['Output'].output_file}}"
    exec-total:
      container:
        image: alpine
        command: [sh, -c]
        args:
          - 'total=$(echo "$0" | tr -d "[] " | tr "," "\n" | awk "{ s += \$1 } END { print s }"); echo "total=$total"; echo "$total" > "$1"'
          - "{{$.inputs.parameters['numbers']}}"
          - "{{$.outputs.parameters['Output'].output_file}}"
pipelineInfo: {name: parallelism-limit}
root:
  dag:
    tasks:
      for-loop-1:
        componentRef: {name: comp-for-loop-1}
        inputs:
          parameters:
            pipelinechannel--dir: {componentInputParameter: dir}
        iteratorPolicy: {parallelismLimit: 2}
        parameterIterator:
          itemInput: pipelinechannel--loop-item-param-1
          items: {raw: '[1, 2, 3, 4, 5, 6]'}
        taskInfo: {name: for-loop-1}
      total:
        componentRef: {name: comp-total}
        dependentTasks: [for-loop-1]
        inputs:
          parameters:
            numbers:
              taskOutputParameter: {outputParameterKey: pipelinechannel--square-Output, producerTask: for-loop-1}
        taskInfo: {name: total}
  inputDefinitions:
    parameters:
      dir: {parameterType: STRING}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_for_respects_its_parallelism_and_collects_in_order() {
    let dir = scratch_path("parallelism");
    let run = run_inline(
        PARALLELISM_PIPELINE,
        json!({"dir": dir.display().to_string()}),
    )
    .await;
    assert_eq!(
        run["state"],
        "SUCCEEDED",
        "{}: {:?}",
        error_of(&run),
        task_states(&run)
    );
    let mut most = 0;
    for item in 1..=6 {
        let seen = std::fs::read_to_string(dir.join(format!("{item}.seen")))
            .unwrap_or_else(|_| panic!("iteration {item} ran"));
        for count in seen.lines() {
            most = most.max(count.trim().parse::<usize>().expect("a count"));
        }
    }
    assert!(most <= 2, "at most 2 iterations at once, saw {most}");
    assert_eq!(tasks_named(&run, "square").len(), 6);
    let total = task_named(&run, "total");
    let log = task_log(
        run["run_id"].as_str().unwrap_or_default(),
        total["task_id"].as_str().unwrap_or_default(),
    )
    .await;
    assert!(log.contains("total=91"), "1+4+9+16+25+36: {log}");
}

/// Two `sh` tasks: `produce` writes an artifact, `consume` reads it.
fn cache_pipeline(name: &str, platform: &str) -> String {
    format!(
        r#"
components:
  comp-produce:
    executorLabel: exec-produce
    inputDefinitions:
      parameters:
        n: {{parameterType: NUMBER_INTEGER}}
    outputDefinitions:
      artifacts:
        data: {{artifactType: {{schemaTitle: system.Dataset, schemaVersion: 0.0.1}}}}
  comp-consume:
    executorLabel: exec-consume
    inputDefinitions:
      artifacts:
        data: {{artifactType: {{schemaTitle: system.Dataset, schemaVersion: 0.0.1}}}}
    outputDefinitions:
      parameters:
        Output: {{parameterType: STRING}}
deploymentSpec:
  executors:
    exec-produce:
      container:
        image: alpine
        command: [sh, -c, 'echo "data $0" > "$1"']
        args: ["{{{{$.inputs.parameters['n']}}}}", "{{{{$.outputs.artifacts['data'].path}}}}"]
    exec-consume:
      container:
        image: alpine
        command: [sh, -c, 'cat "$0" > "$1"']
        args: ["{{{{$.inputs.artifacts['data'].path}}}}", "{{{{$.outputs.parameters['Output'].output_file}}}}"]
pipelineInfo: {{name: {name}}}
root:
  dag:
    tasks:
      produce:
        cachingOptions: {{enableCache: true}}
        componentRef: {{name: comp-produce}}
        inputs: {{parameters: {{n: {{componentInputParameter: n}}}}}}
        taskInfo: {{name: produce}}
      consume:
        cachingOptions: {{enableCache: true}}
        componentRef: {{name: comp-consume}}
        dependentTasks: [produce]
        inputs:
          artifacts:
            data: {{taskOutputArtifact: {{producerTask: produce, outputArtifactKey: data}}}}
        taskInfo: {{name: consume}}
  inputDefinitions:
    parameters:
      n: {{parameterType: NUMBER_INTEGER}}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
{platform}"#
    )
}

fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit_on_an_identical_run_and_miss_once_the_artifact_is_gone() {
    let yaml = cache_pipeline(&unique_name("cache"), "");
    let first = run_inline(&yaml, json!({"n": 3})).await;
    assert_eq!(first["state"], "SUCCEEDED", "{:?}", task_states(&first));
    let first_id = first["run_id"].as_str().unwrap_or_default().to_string();
    for name in ["produce", "consume"] {
        assert_eq!(error_of(task_named(&first, name)), "", "{name} ran");
    }

    let second = run_inline(&yaml, json!({"n": 3})).await;
    assert_eq!(second["state"], "SUCCEEDED", "{:?}", task_states(&second));
    for name in ["produce", "consume"] {
        let task = task_named(&second, name);
        assert_eq!(task["state"], "SUCCEEDED", "cached tasks show as SUCCEEDED");
        let note = error_of(task);
        assert!(
            note.starts_with("cached:") && note.contains(&first_id),
            "{name} names the run its outputs came from: {note}"
        );
    }
    let produced = task_named(&first, "produce")["outputs"]["data"]["artifact_ids"].clone();
    assert_eq!(
        task_named(&second, "produce")["outputs"]["data"]["artifact_ids"],
        produced,
        "the hit reuses the artifact"
    );

    let other_input = run_inline(&yaml, json!({"n": 4})).await;
    assert_eq!(
        error_of(task_named(&other_input, "produce")),
        "",
        "other inputs, no hit"
    );

    // Upstream bug #7939: a cached artifact whose object was deleted must not be reused.
    let (_, artifacts) = server().get(&format!("/artifacts?run_id={first_id}")).await;
    let uri = artifacts["artifacts"]
        .as_array()
        .and_then(|list| list.iter().find(|artifact| artifact["name"] == "data"))
        .and_then(|artifact| artifact["uri"].as_str())
        .expect("the produced artifact")
        .to_string();
    let path = std::path::PathBuf::from(uri.trim_start_matches("file://"));
    if path.is_dir() {
        std::fs::remove_dir_all(&path).expect("delete artifact");
    } else {
        std::fs::remove_file(&path).expect("delete artifact");
    }
    let third = run_inline(&yaml, json!({"n": 3})).await;
    assert_eq!(third["state"], "SUCCEEDED", "{:?}", task_states(&third));
    assert_eq!(
        error_of(task_named(&third, "produce")),
        "",
        "a miss: produce ran again"
    );
    assert_ne!(
        task_named(&third, "produce")["outputs"]["data"]["artifact_ids"],
        produced
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_staleness_annotation_turns_the_cache_off_for_a_task() {
    let platform = "---\nplatforms:\n  kubernetes:\n    deploymentSpec:\n      executors:\n        exec-produce:\n          podMetadata:\n            annotations:\n              pipelines.kubeflow.org/max_cache_staleness: P0D\n";
    let yaml = cache_pipeline(&unique_name("stale"), platform);
    let first = run_inline(&yaml, json!({"n": 5})).await;
    assert_eq!(first["state"], "SUCCEEDED", "{:?}", task_states(&first));
    let second = run_inline(&yaml, json!({"n": 5})).await;
    assert_eq!(second["state"], "SUCCEEDED", "{:?}", task_states(&second));
    assert_eq!(
        error_of(task_named(&second, "produce")),
        "",
        "P0D: never reused"
    );
}
