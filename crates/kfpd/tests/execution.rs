//! Corpus pipelines executed by `kfpd serve`'s local executor through the REST
//! API, each reaching the state MANIFEST.tsv expects.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{corpus_dir, Server};
use serde_json::{json, Value};

/// One server for the whole file: runs of different tests execute side by side.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER
        .get_or_init(|| Server::start_with(&["--executor", "local", "--max-parallel-tasks", "16"]))
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
    let server = server();
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
    wait_for_end(&client, &run_id, limit).await
}

async fn wait_for_end(client: &reqwest::Client, run_id: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let response = client
            .get(server().url(&format!("/runs/{run_id}")))
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
                server().stderr()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_artifact_needs_a_newer_kfp_than_it_installs() {
    check_sdk_too_old("essential/embedded_artifact.yaml", "EmbeddedInput").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_custom_path_needs_a_newer_kfp_than_it_installs() {
    check_sdk_too_old("critical/pipeline_with_artifact_custom_path.yaml", "set_path").await;
}
