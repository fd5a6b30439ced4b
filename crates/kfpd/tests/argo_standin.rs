//! Corpus pipelines run end to end on Argo's pod interface, with a stand-in for
//! Argo (tests/standin): each run's Workflow is compiled as the server compiles
//! it, walked in dependency order, its driver requests sent with `kfpd driver` and
//! its pods run as `kfpd launcher` processes against a real `kfpd serve
//! --executor none`. Each row must reach the state MANIFEST.tsv expects, with the
//! same task details, artifacts and task rows as a run of the same pipeline on the
//! local engine (`kfpd serve --executor local`), ids and times aside.
//!
//! Skipped without the corpus (`KFPD_CORPUS_DIR`), except under `CI=true`.

mod common;
#[path = "standin/compare.rs"]
mod compare;
mod standin;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{corpus_dir, Server};
use serde_json::{json, Map, Value};
use standin::{Cluster, Outcome};

const MINUTES: u64 = 60;

fn expected_state(relative: &str) -> String {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).expect("manifest");
    text.lines()
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .find(|columns| columns.first() == Some(&relative))
        .and_then(|columns| columns.get(1).map(|state| state.to_string()))
        .unwrap_or_else(|| panic!("{relative} is not in MANIFEST.tsv"))
}

/// A corpus file with upstream's generated values for its required parameters.
fn package_and_parameters(
    relative: &str,
    overrides: Value,
) -> (kfpd_ir::Package, Map<String, Value>) {
    let bytes = std::fs::read(corpus_dir().join(relative)).expect("corpus file");
    let package = kfpd_ir::read_package(relative, &bytes).expect("package");
    let mut parameters = kfpd_ir::generate_test_parameters(&package, 7);
    if let Value::Object(extra) = overrides {
        parameters.extend(extra);
    }
    (package, parameters)
}

async fn create_run(
    server: &Server,
    package: &kfpd_ir::Package,
    parameters: &Map<String, Value>,
) -> String {
    let body = json!({
        "display_name": "standin",
        "pipeline_spec": package.api_pipeline_spec(),
        "runtime_config": {"parameters": parameters},
    });
    let (status, run) = server.post("/runs", &body).await;
    assert_eq!(status, 200, "{run}");
    run["run_id"].as_str().expect("run_id").to_string()
}

async fn wait_for_end(server: &Server, run_id: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (_, run) = server.get(&format!("/runs/{run_id}")).await;
        let state = run["state"].as_str().unwrap_or_default();
        if matches!(state, "SUCCEEDED" | "FAILED" | "CANCELED" | "SKIPPED") {
            return run;
        }
        assert!(
            started.elapsed() < limit,
            "run {run_id} still {state} after {limit:?}; server stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cluster the stand-in runs pods in; `env` goes into the launcher's
/// ConfigMap (the object store settings).
fn cluster(
    dir: &Path,
    package: &kfpd_ir::Package,
    newer_kfp: bool,
    env: &[(&str, &str)],
) -> Arc<Cluster> {
    let options = kfpd_argo::Options::default();
    let mut config_maps = BTreeMap::new();
    if !env.is_empty() {
        config_maps.insert(
            options.launcher_config_map.clone(),
            env.iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        );
    }
    Arc::new(Cluster {
        kfpd: env!("CARGO_BIN_EXE_kfpd").into(),
        kfpd_image: options.kfpd_image,
        namespace: "kubeflow".into(),
        config_maps,
        secrets: BTreeMap::new(),
        dir: dir.to_path_buf(),
        images: kfpd_runtime::Runtime::new(kfpd_runtime::Options::new(
            kfpd_server::engine::default_envs_dir(),
        )),
        image_environments: image_environments(package, newer_kfp),
    })
}

/// Each image's environment as the local engine names it: the image and the kfp
/// its components' commands install (`'kfp==X'`), when they agree on one.
fn image_environments(package: &kfpd_ir::Package, newer_kfp: bool) -> BTreeMap<String, String> {
    let mut pins: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for executor in package.spec().deployment_spec.executors.values() {
        let Some(kfpd_ir::spec::ExecutorKind::Container(container)) = executor.kind() else {
            continue;
        };
        let pin = container
            .command
            .iter()
            .chain(&container.args)
            .find_map(|part| {
                let start = part.find("'kfp==")?;
                let rest = &part[start + 1..];
                Some(rest[..rest.find('\'')?].to_string())
            });
        pins.entry(container.image.clone()).or_default().extend(pin);
    }
    pins.into_iter()
        .filter(|(_, pins)| pins.len() == 1)
        .filter_map(|(image, pins)| {
            let pin = match newer_kfp {
                true => KFP_PACKAGE.to_string(),
                false => pins.into_iter().next()?,
            };
            Some((image.clone(), format!("{image}+{pin}")))
        })
        .collect()
}

/// Compiles the run's Workflow as the server does and runs it on the stand-in.
async fn run_on_standin(
    server: &Server,
    run_id: &str,
    package: &kfpd_ir::Package,
    parameters: &Map<String, Value>,
    cluster: Arc<Cluster>,
) -> Outcome {
    let grpc = server.grpc.as_deref().expect("grpc");
    let options = kfpd_argo::Options {
        run_id: Some(run_id.to_string()),
        parameters: parameters.clone(),
        server_url: server.base.clone(),
        server_grpc: grpc.trim_start_matches("http://").to_string(),
        ..kfpd_argo::Options::default()
    };
    let yaml = kfpd_argo::compile_yaml(package, &options).expect("compile");
    let workflow: Value = serde_yaml::from_str(&yaml).expect("the Workflow is YAML");
    standin::run(&workflow, cluster).await
}

/// Rows whose branches are random (a coin flip), so two runs take different ones.
const RANDOM: [&str; 5] = [
    "critical/flip_coin.yaml",
    "if_else_with_oneof_parameters.yaml",
    "if_elif_else_with_oneof_parameters.yaml",
    "essential/pipeline_with_condition.yaml",
    "pipeline_with_loops_and_conditions.yaml",
];

/// Rows that use a newer kfp than the one their components install: both servers
/// run them with `--kfp-package` (as execution.rs does).
const NEWER_KFP: [&str; 2] = [
    "essential/embedded_artifact.yaml",
    "critical/pipeline_with_artifact_custom_path.yaml",
];
const KFP_PACKAGE: &str = "kfp==2.15.0";

/// Rows that log random numbers as metrics.
const RANDOM_METRICS: [&str; 2] = [
    "output_metrics.yaml",
    "essential/pipeline_with_metrics_outputs.yaml",
];

/// What a row's two runs need: parameters naming paths under the run's scratch dir.
type Overrides = fn(&Path) -> Value;

fn no_overrides(_: &Path) -> Value {
    json!({})
}

fn naptime(_: &Path) -> Value {
    json!({"naptime_secs": 2})
}

/// A counter file the flaky task of the retry pipeline keeps its attempts in.
fn counter_path(scratch: &Path) -> Value {
    json!({"counter_path": scratch.join("counter").display().to_string()})
}

/// The marker the task after a failure writes.
fn marker_path(scratch: &Path) -> Value {
    json!({"marker_path": scratch.join("marker").display().to_string()})
}

/// Runs `relative` on the local engine and on the stand-in for Argo side by side
/// and compares them, artifacts in each server's local directory.
async fn check(relative: &str, overrides: Overrides) {
    check_on(relative, overrides, &[]).await;
}

/// [`check`] with both servers and the launchers' ConfigMap given `store_env`
/// (the `OBJECTSTORECONFIG_*` settings of an S3 store).
async fn check_on(relative: &str, overrides: Overrides, store_env: &[(&str, &str)]) {
    // Both servers replace the kfp a component installs where it is too old.
    let kfp_package: &[&str] = if NEWER_KFP.contains(&relative) {
        &["--kfp-package", KFP_PACKAGE]
    } else {
        &[]
    };
    let local_args = [
        &["--executor", "local", "--max-parallel-tasks", "16"],
        kfp_package,
    ]
    .concat();
    let local = Server::start_with_env(&local_args, store_env);
    let argo = Server::start_with_env(kfp_package, store_env);
    let scratch = tempfile::tempdir().expect("scratch");
    let local_scratch = scratch.path().join("local");
    let argo_scratch = scratch.path().join("argo");
    for dir in [&local_scratch, &argo_scratch] {
        std::fs::create_dir_all(dir).expect("scratch dir");
    }
    let (package, local_parameters) = package_and_parameters(relative, overrides(&local_scratch));
    let (_, argo_parameters) = package_and_parameters(relative, overrides(&argo_scratch));
    let local_run = async {
        let run_id = create_run(&local, &package, &local_parameters).await;
        wait_for_end(&local, &run_id, Duration::from_secs(15 * MINUTES)).await;
        run_id
    };
    let pods = scratch.path().join("cluster");
    let argo_run = async {
        let run_id = create_run(&argo, &package, &argo_parameters).await;
        let outcome = run_on_standin(
            &argo,
            &run_id,
            &package,
            &argo_parameters,
            cluster(&pods, &package, !kfp_package.is_empty(), store_env),
        )
        .await;
        (run_id, outcome)
    };
    let (local_id, (argo_id, outcome)) = tokio::join!(local_run, argo_run);
    let run = wait_for_end(&argo, &argo_id, Duration::from_secs(10)).await;
    let expected = expected_state(relative);
    assert_eq!(
        run["state"],
        expected,
        "{relative}: error {}\nworkflow {:?}:\n{}\nserver:\n{}",
        run["error"],
        outcome.phase,
        outcome.summary(),
        argo.stderr()
    );
    let want_phase = if expected == "SUCCEEDED" {
        standin::Phase::Succeeded
    } else {
        standin::Phase::Failed
    };
    assert_eq!(
        outcome.phase,
        want_phase,
        "{relative}: the Workflow's phase\n{}",
        outcome.summary()
    );
    // The local engine names the run's resource after the pipeline and the run id.
    let base = package
        .pipeline_name()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let short: String = local_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let local_resource = format!("{base}-{short}");
    let random_metrics = RANDOM_METRICS.contains(&relative);
    let local_scratch = local_scratch.display().to_string();
    let local_snapshot = compare::snapshot(
        &local,
        &local_id,
        &compare::Normalise {
            scratch: &local_scratch,
            resource: &local_resource,
            pods: None,
            workspace: None,
            random_metrics,
        },
    )
    .await;
    let argo_scratch = argo_scratch.display().to_string();
    let pod_dirs = pods.join("pods");
    let workspace = pods
        .join("claims")
        .join(&outcome.name)
        .join(kfpd_argo::WORKSPACE_VOLUME);
    let argo_snapshot = compare::snapshot(
        &argo,
        &argo_id,
        &compare::Normalise {
            scratch: &argo_scratch,
            resource: &outcome.name,
            pods: Some(&pod_dirs),
            workspace: Some(&workspace),
            random_metrics,
        },
    )
    .await;
    if RANDOM.contains(&relative) {
        // Which branch runs is random: the run's outcome is compared, and that no
        // task of the stand-in's run is left unfinished.
        assert_eq!(
            local_snapshot["state"], argo_snapshot["state"],
            "{relative}"
        );
        let unfinished: Vec<&String> = argo_snapshot["tasks"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, task)| matches!(task["state"].as_str(), Some("RUNNING" | "PENDING")))
            .map(|(path, _)| path)
            .collect();
        assert!(
            unfinished.is_empty(),
            "{relative}: unfinished {unfinished:?}"
        );
        return;
    }
    let differences = compare::differences(&local_snapshot, &argo_snapshot);
    assert!(
        differences.is_empty(),
        "{relative}: the stand-in's run differs from the local engine's:\n{}\n\nworkflow:\n{}",
        differences.join("\n"),
        outcome.summary()
    );
}

macro_rules! standin_tests {
    ($($name:ident => $path:literal $(, $overrides:expr)? ;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                kfpd_testdata::require_or_skip!(Corpus);
                #[allow(unused_mut, unused_assignments)]
                let mut overrides: Overrides = no_overrides;
                $(overrides = $overrides;)?
                check($path, overrides).await;
            }
        )*
    };
}

standin_tests! {
    arguments_parameters_yaml => "arguments_parameters.yaml";
    arguments_parameters_zip => "arguments_parameters.zip";
    artifacts_complex => "artifacts_complex.yaml";
    collected_artifacts => "collected_artifacts.yaml";
    critical_add_numbers => "critical/add_numbers.yaml";
    critical_artifact_cache => "critical/artifact_cache.yaml";
    critical_component_with_optional_inputs => "critical/component_with_optional_inputs.yaml";
    critical_container_component_with_no_inputs => "critical/container_component_with_no_inputs.yaml";
    critical_flip_coin => "critical/flip_coin.yaml";
    critical_if_else_with_oneof_artifacts => "critical/if_else_with_oneof_artifacts.yaml";
    critical_missing_kubernetes_optional_inputs => "critical/missing_kubernetes_optional_inputs.yaml";
    critical_mixed_parameters => "critical/mixed_parameters.yaml";
    critical_multiple_parameters_namedtuple => "critical/multiple_parameters_namedtuple.yaml";
    critical_parallel_for_after_dependency => "critical/parallel_for_after_dependency.yaml";
    critical_parameter_cache => "critical/parameter_cache.yaml";
    critical_pipeline_with_artifact_custom_path => "critical/pipeline_with_artifact_custom_path.yaml";
    critical_pipeline_with_env => "critical/pipeline_with_env.yaml";
    critical_pipeline_with_input_status_state => "critical/pipeline_with_input_status_state.yaml";
    critical_pipeline_with_retry => "critical/pipeline_with_retry.yaml";
    critical_pipeline_with_workspace => "critical/pipeline_with_workspace.yaml";
    critical_producer_consumer_param_pipeline => "critical/producer_consumer_param_pipeline.yaml";
    critical_pythonic_artifacts_test_pipeline => "critical/pythonic_artifacts_test_pipeline.yaml";
    critical_two_step_pipeline_containerized => "critical/two_step_pipeline_containerized.yaml";
    essential_component_with_env_variable => "essential/component_with_env_variable.yaml";
    essential_concat_message => "essential/concat_message.yaml";
    essential_container_no_input => "essential/container_no_input.yaml";
    essential_dict_input => "essential/dict_input.yaml";
    essential_embedded_artifact => "essential/embedded_artifact.yaml";
    essential_lightweight_python_functions_pipeline => "essential/lightweight_python_functions_pipeline.yaml";
    essential_lightweight_python_functions_with_outputs => "essential/lightweight_python_functions_with_outputs.yaml";
    essential_pipeline_with_after => "essential/pipeline_with_after.yaml";
    essential_pipeline_with_condition => "essential/pipeline_with_condition.yaml";
    essential_pipeline_with_metrics_outputs => "essential/pipeline_with_metrics_outputs.yaml";
    essential_pipeline_with_outputs => "essential/pipeline_with_outputs.yaml";
    essential_pipeline_with_params_containing_format => "essential/pipeline_with_params_containing_format.yaml";
    essential_pipeline_with_reused_component => "essential/pipeline_with_reused_component.yaml";
    essential_placeholder_with_if_placeholder_none_input_value => "essential/placeholder_with_if_placeholder_none_input_value.yaml";
    failing_fail_v2 => "failing/fail_v2.yaml";
    failing_pipeline_with_exit_handler => "failing/pipeline_with_exit_handler.yaml";
    hello_world => "hello_world.yaml";
    identity => "identity.yaml";
    if_elif_else_with_oneof_parameters => "if_elif_else_with_oneof_parameters.yaml";
    if_else_with_oneof_artifacts => "if_else_with_oneof_artifacts.yaml";
    if_else_with_oneof_parameters => "if_else_with_oneof_parameters.yaml";
    local_execution_local_execution_pipeline_with_exit_handler => "local_execution/local_execution_pipeline_with_exit_handler.yaml";
    local_execution_local_execution_pipeline_with_ignore_upstream_failure => "local_execution/local_execution_pipeline_with_ignore_upstream_failure.yaml", marker_path;
    local_execution_local_execution_pipeline_with_k8s_only_methods => "local_execution/local_execution_pipeline_with_k8s_only_methods.yaml";
    local_execution_local_execution_pipeline_with_retry => "local_execution/local_execution_pipeline_with_retry.yaml", counter_path;
    local_execution_pipeline_with_caching => "local_execution/pipeline_with_caching.yaml";
    local_execution_pipeline_with_collected_artifacts => "local_execution/pipeline_with_collected_artifacts.yaml";
    log_streaming_compiled => "log_streaming_compiled.yaml";
    mounted_cabundle_configmap => "mounted_cabundle_configmap.yaml";
    mounted_cabundle_secret => "mounted_cabundle_secret.yaml";
    nested_return => "nested_return.yaml";
    output_metrics => "output_metrics.yaml";
    parallel_and_nested_nested_pipeline_opt_input_child_level_compiled => "parallel_and_nested/nested_pipeline_opt_input_child_level_compiled.yaml";
    parallel_and_nested_nested_pipeline_opt_inputs_parent_level_compiled => "parallel_and_nested/nested_pipeline_opt_inputs_parent_level_compiled.yaml";
    parallel_and_nested_pipeline_in_pipeline => "parallel_and_nested/pipeline_in_pipeline.yaml";
    parameters_complex => "parameters_complex.yaml";
    pipeline_as_exit_task => "pipeline_as_exit_task.yaml";
    pipeline_producer_consumer => "pipeline_producer_consumer.yaml";
    pipeline_with_loops_and_conditions => "pipeline_with_loops_and_conditions.yaml";
    pipeline_with_only_display_name => "pipeline_with_only_display_name.yaml";
    pipeline_with_parallelfor_parallelism => "pipeline_with_parallelfor_parallelism.yaml";
    pipeline_with_parallelfor_pipeline_param => "pipeline_with_parallelfor_pipeline_param.yaml";
    pipeline_with_string_machine_fields_pipeline_input => "pipeline_with_string_machine_fields_pipeline_input.yaml";
    pipeline_with_string_machine_fields_task_output => "pipeline_with_string_machine_fields_task_output.yaml";
    pipeline_with_task_final_status_yaml => "pipeline_with_task_final_status_yaml.yaml";
    pipeline_with_task_using_ignore_upstream_failure => "pipeline_with_task_using_ignore_upstream_failure.yaml";
    pipeline_with_utils => "pipeline_with_utils.yaml";
    preprocess => "preprocess.yaml";
    pythonic_artifacts_with_multiple_returns => "pythonic_artifacts_with_multiple_returns.yaml";
    run_as_user_cache_disabled => "run_as_user_cache_disabled.yaml";
    run_as_user_cache_enabled => "run_as_user_cache_enabled.yaml";
    sequential_v1 => "sequential_v1.yaml";
    take_nap_compiled => "take_nap_compiled.yaml", naptime;
    take_nap_pipeline_root_compiled => "take_nap_pipeline_root_compiled.yaml", naptime;
}

/// Runs the rows with artifacts in S3 (a moto server): the servers and the
/// launchers' ConfigMap get the same `OBJECTSTORECONFIG_*` settings.
async fn check_on_s3(relative: &str) {
    let Some(moto) = moto::moto() else {
        return;
    };
    let bucket = moto::unique_bucket("standin");
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
    check_on(relative, no_overrides, &store_env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_two_step_pipeline_containerized() {
    kfpd_testdata::require_or_skip!(Corpus);
    check_on_s3("critical/two_step_pipeline_containerized.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_pipeline_with_collected_artifacts() {
    kfpd_testdata::require_or_skip!(Corpus);
    check_on_s3("local_execution/pipeline_with_collected_artifacts.yaml").await;
}

/// Two `sleep 300` steps: ten minutes, so only with `KFPD_STANDIN_LONG=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running() {
    kfpd_testdata::require_or_skip!(Corpus);
    if std::env::var("KFPD_STANDIN_LONG").as_deref() != Ok("1") {
        eprintln!(
            "skipping long-running.yaml (10 minutes of sleep): set KFPD_STANDIN_LONG=1 to run it"
        );
        return;
    }
    check("long-running.yaml", no_overrides).await;
}

/// kfp-kubernetes' `CreatePVC`, a task mounting it, `DeletePVC` after it.
const PVC: &str = r#"
pipelineInfo: {name: standin-pvc}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-createpvc:
    executorLabel: exec-createpvc
    inputDefinitions:
      parameters:
        access_modes: {parameterType: LIST}
        pvc_name: {parameterType: STRING, isOptional: true}
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
deploymentSpec:
  executors:
    exec-createpvc:
      container: {image: argostub/createpvc}
    exec-deletepvc:
      container: {image: argostub/deletepvc}
    exec-use:
      container: {image: alpine, command: [sh, -c, 'echo mounted']}
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
        taskInfo: {name: use}
      deletepvc:
        componentRef: {name: comp-deletepvc}
        dependentTasks: [createpvc, use]
        inputs:
          parameters:
            pvc_name:
              taskOutputParameter: {producerTask: createpvc, outputParameterKey: name}
        taskInfo: {name: deletepvc}
---
platforms:
  kubernetes:
    deploymentSpec:
      executors:
        exec-use:
          pvcMount:
          - mountPath: /data
            taskOutputParameter: {producerTask: createpvc, outputParameterKey: name}
"#;

/// The PVC tasks are driven (named as the compiler named the PVC, never cached)
/// and Argo's `resource` templates make and delete the PVC the task between them
/// mounts; each task ends with its node, as the Workflow's report says, and the
/// run ends when `DeletePVC` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvc_tasks_run_through_resource_templates() {
    let argo = Server::start();
    let package = kfpd_ir::read_package("pvc.yaml", PVC.as_bytes()).expect("package");
    let scratch = tempfile::tempdir().expect("scratch");
    let run_id = create_run(&argo, &package, &Map::new()).await;
    let outcome = run_on_standin(
        &argo,
        &run_id,
        &package,
        &Map::new(),
        cluster(scratch.path(), &package, false, &[]),
    )
    .await;
    assert_eq!(
        outcome.phase,
        standin::Phase::Succeeded,
        "{}",
        outcome.summary()
    );
    let run = wait_for_end(&argo, &run_id, Duration::from_secs(10)).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    assert!(
        outcome.objects.is_empty(),
        "DeletePVC removed the PVC: {:?}",
        outcome.objects
    );
    let resources: Vec<&standin::Node> = outcome
        .nodes
        .iter()
        .filter(|node| node.kind == standin::Kind::Resource)
        .collect();
    assert_eq!(resources.len(), 2, "{}", outcome.summary());
    let mounted = outcome
        .nodes
        .iter()
        .find(|node| node.name.ends_with(".use"))
        .expect("the task that mounts the PVC");
    assert_eq!(
        mounted.phase,
        standin::Phase::Succeeded,
        "its pod found the claim: {}",
        outcome.summary()
    );
    let url = format!("sqlite://{}", argo.dir.path().join("kfpd.db").display());
    let store = kfpd_store::sql::SqlStore::connect(&kfpd_store::sql::Options::new(url))
        .await
        .expect("store");
    let rows = kfpd_store::ExecutionStore::list_tasks(&store, &run_id)
        .await
        .expect("rows");
    let create = rows
        .iter()
        .find(|row| row.path == "root/createpvc")
        .expect("createpvc");
    assert_eq!(create.state, kfpd_store::TaskState::Succeeded);
    let outputs: Value = serde_json::from_str(&create.outputs).expect("outputs");
    assert_eq!(outputs["name"], format!("{}-data", outcome.name));
    let delete = rows
        .iter()
        .find(|row| row.path == "root/deletepvc")
        .expect("deletepvc");
    let inputs: Value = serde_json::from_str(&delete.inputs).expect("inputs");
    assert_eq!(inputs["pvc_name"], format!("{}-data", outcome.name));
    // Each ended with its resource node, after the row said RUNNING.
    for row in [create, delete] {
        let states: Vec<kfpd_store::TaskState> = row
            .state_history
            .iter()
            .map(|change| change.state)
            .collect();
        assert_eq!(
            states,
            [
                kfpd_store::TaskState::Running,
                kfpd_store::TaskState::Succeeded
            ],
            "{}",
            row.path
        );
    }
    assert_eq!(delete.state, kfpd_store::TaskState::Succeeded);
}

/// Two `CreatePVC` tasks of one PVC name: Argo's second `resource` node fails
/// (the PVC exists).
const PVC_TWICE: &str = r#"
pipelineInfo: {name: standin-pvc-twice}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-createpvc:
    executorLabel: exec-createpvc
    inputDefinitions:
      parameters:
        access_modes: {parameterType: LIST}
        pvc_name: {parameterType: STRING, isOptional: true}
        pvc_name_suffix: {parameterType: STRING, isOptional: true}
        size: {parameterType: STRING}
    outputDefinitions:
      parameters:
        name: {parameterType: STRING}
  comp-use:
    executorLabel: exec-use
deploymentSpec:
  executors:
    exec-createpvc:
      container: {image: argostub/createpvc}
    exec-use:
      container: {image: alpine, command: [sh, -c, 'echo never']}
root:
  dag:
    tasks:
      createpvc:
        componentRef: {name: comp-createpvc}
        inputs:
          parameters:
            access_modes: {runtimeValue: {constant: [ReadWriteOnce]}}
            pvc_name: {runtimeValue: {constant: shared}}
            size: {runtimeValue: {constant: 1Gi}}
        taskInfo: {name: createpvc}
      createpvc-2:
        componentRef: {name: comp-createpvc}
        dependentTasks: [createpvc]
        inputs:
          parameters:
            access_modes: {runtimeValue: {constant: [ReadWriteOnce]}}
            pvc_name: {runtimeValue: {constant: shared}}
            size: {runtimeValue: {constant: 1Gi}}
        taskInfo: {name: createpvc-2}
      use:
        componentRef: {name: comp-use}
        dependentTasks: [createpvc-2]
        taskInfo: {name: use}
"#;

/// A PVC task whose `resource` node fails ends FAILED with the node's message,
/// from the Workflow's report, and the run fails with it; the task after it
/// never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_task_whose_resource_node_fails_fails_the_run() {
    let argo = Server::start();
    let package = kfpd_ir::read_package("pvc.yaml", PVC_TWICE.as_bytes()).expect("package");
    let scratch = tempfile::tempdir().expect("scratch");
    let run_id = create_run(&argo, &package, &Map::new()).await;
    let outcome = run_on_standin(
        &argo,
        &run_id,
        &package,
        &Map::new(),
        cluster(scratch.path(), &package, false, &[]),
    )
    .await;
    assert_eq!(
        outcome.phase,
        standin::Phase::Failed,
        "{}",
        outcome.summary()
    );
    let run = wait_for_end(&argo, &run_id, Duration::from_secs(10)).await;
    assert_eq!(run["state"], "FAILED", "{run}");
    let message = run["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("createpvc-2")
            && message.contains("PersistentVolumeClaim/shared already exists"),
        "the run's error is the resource node's: {run}"
    );
    let url = format!("sqlite://{}", argo.dir.path().join("kfpd.db").display());
    let store = kfpd_store::sql::SqlStore::connect(&kfpd_store::sql::Options::new(url))
        .await
        .expect("store");
    let rows = kfpd_store::ExecutionStore::list_tasks(&store, &run_id)
        .await
        .expect("rows");
    let row = |path: &str| {
        rows.iter()
            .find(|row| row.path == path)
            .unwrap_or_else(|| panic!("no row {path}"))
    };
    assert_eq!(
        row("root/createpvc").state,
        kfpd_store::TaskState::Succeeded
    );
    let failed = row("root/createpvc-2");
    assert_eq!(failed.state, kfpd_store::TaskState::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|error| error.contains("PersistentVolumeClaim/shared already exists")),
        "{:?}",
        failed.error
    );
    let outputs: Value = serde_json::from_str(&failed.outputs).expect("outputs");
    assert_eq!(outputs, json!({}), "a PVC not made has no name");
    assert!(
        !rows
            .iter()
            .any(|row| row.path == "root/use" && row.started_at > 0),
        "the task after it never ran"
    );
    assert!(row("root").state == kfpd_store::TaskState::Failed);
}

/// An importer with `download_to_workspace`, and a task reading what it imported.
const IMPORT_TO_WORKSPACE: &str = r#"
pipelineInfo: {name: standin-import-to-workspace}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-importer:
    executorLabel: exec-importer
    inputDefinitions:
      parameters:
        uri: {parameterType: STRING}
    outputDefinitions:
      artifacts:
        artifact:
          artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}
  comp-read:
    executorLabel: exec-read
    inputDefinitions:
      artifacts:
        data:
          artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}
    outputDefinitions:
      parameters:
        Output: {parameterType: STRING}
        where: {parameterType: STRING}
deploymentSpec:
  executors:
    exec-importer:
      importer:
        artifactUri: {runtimeParameter: uri}
        downloadToWorkspace: true
        typeSchema: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}
    exec-read:
      container:
        image: alpine
        command: [sh, -c, 'cat "$0" > "$1" && printf %s "$0" > "$2"']
        args:
        - "{{$.inputs.artifacts['data'].path}}"
        - "{{$.outputs.parameters['Output'].output_file}}"
        - "{{$.outputs.parameters['where'].output_file}}"
root:
  inputDefinitions:
    parameters:
      file_uri: {parameterType: STRING}
  dag:
    tasks:
      importer:
        componentRef: {name: comp-importer}
        inputs:
          parameters:
            uri: {componentInputParameter: file_uri}
        taskInfo: {name: importer}
      read:
        componentRef: {name: comp-read}
        dependentTasks: [importer]
        inputs:
          artifacts:
            data:
              taskOutputArtifact: {producerTask: importer, outputArtifactKey: artifact}
        taskInfo: {name: read}
---
platforms:
  kubernetes:
    pipelineConfig:
      workspace:
        size: 1Gi
"#;

/// The importer's pod copies the object it imported into the run's workspace
/// volume, and the task after it reads it there (not from the store): the
/// workspace's copy is what it finds at its input's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_importer_copies_its_artifact_into_the_workspace() {
    let argo = Server::start();
    let object = argo.dir.path().join("artifacts/inputs/greeting.txt");
    std::fs::create_dir_all(object.parent().expect("parent")).expect("inputs dir");
    std::fs::write(&object, "hello from the store").expect("object");
    let uri = format!("file://{}", object.display());
    let package =
        kfpd_ir::read_package("import.yaml", IMPORT_TO_WORKSPACE.as_bytes()).expect("package");
    let parameters = Map::from_iter([("file_uri".to_string(), json!(uri))]);
    let scratch = tempfile::tempdir().expect("scratch");
    let run_id = create_run(&argo, &package, &parameters).await;
    let outcome = run_on_standin(
        &argo,
        &run_id,
        &package,
        &parameters,
        cluster(scratch.path(), &package, false, &[]),
    )
    .await;
    assert_eq!(
        outcome.phase,
        standin::Phase::Succeeded,
        "{}\n{}",
        outcome.summary(),
        argo.stderr()
    );
    let run = wait_for_end(&argo, &run_id, Duration::from_secs(10)).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    // The importer's pod ran (the driver request alone does not copy).
    let importer_pod = outcome
        .nodes
        .iter()
        .find(|node| node.name.ends_with(".importer") && node.kind == standin::Kind::Pod);
    assert!(importer_pod.is_some(), "{}", outcome.summary());

    let url = format!("sqlite://{}", argo.dir.path().join("kfpd.db").display());
    let store = kfpd_store::sql::SqlStore::connect(&kfpd_store::sql::Options::new(url))
        .await
        .expect("store");
    let rows = kfpd_store::ExecutionStore::list_tasks(&store, &run_id)
        .await
        .expect("rows");
    let row = |path: &str| {
        rows.iter()
            .find(|row| row.path == path)
            .unwrap_or_else(|| panic!("no row {path}"))
    };
    assert_eq!(row("root/importer").state, kfpd_store::TaskState::Succeeded);
    let read = row("root/read");
    assert_eq!(read.state, kfpd_store::TaskState::Succeeded);
    let outputs: Value = serde_json::from_str(&read.outputs).expect("outputs");
    assert_eq!(outputs["Output"], "hello from the store");
    let workspace = scratch
        .path()
        .join("claims")
        .join(&outcome.name)
        .join(kfpd_argo::WORKSPACE_VOLUME);
    let copy = workspace
        .join(".artifacts")
        .join(object.display().to_string().trim_start_matches('/'));
    assert_eq!(outputs["where"], copy.display().to_string());
    assert_eq!(
        std::fs::read_to_string(&copy).expect("the workspace's copy"),
        "hello from the store"
    );
    // The artifact API shows the imported URI, not the copy.
    let (_, listed) = argo.get(&format!("/artifacts?run_id={run_id}")).await;
    let uris: Vec<&str> = listed["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|artifact| artifact["uri"].as_str())
        .collect();
    assert_eq!(uris, [uri.as_str()], "{listed}");
}

/// The local engine does what the importer's pod does: the copy is in the run's
/// workspace at the same place under it (`.artifacts/<the URI as a path>`), and
/// the task after it reads that copy, not the store's object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_engine_copies_an_importers_artifact_into_the_workspace() {
    let local = Server::start_with(&["--executor", "local"]);
    let object = local.dir.path().join("artifacts/inputs/greeting.txt");
    std::fs::create_dir_all(object.parent().expect("parent")).expect("inputs dir");
    std::fs::write(&object, "hello from the store").expect("object");
    let uri = format!("file://{}", object.display());
    let package =
        kfpd_ir::read_package("import.yaml", IMPORT_TO_WORKSPACE.as_bytes()).expect("package");
    let parameters = Map::from_iter([("file_uri".to_string(), json!(uri))]);
    let run_id = create_run(&local, &package, &parameters).await;
    let run = wait_for_end(&local, &run_id, Duration::from_secs(120)).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", local.stderr());
    let url = format!("sqlite://{}", local.dir.path().join("kfpd.db").display());
    let store = kfpd_store::sql::SqlStore::connect(&kfpd_store::sql::Options::new(url))
        .await
        .expect("store");
    let rows = kfpd_store::ExecutionStore::list_tasks(&store, &run_id)
        .await
        .expect("rows");
    let read = rows
        .iter()
        .find(|row| row.path == "root/read")
        .expect("read");
    assert_eq!(read.state, kfpd_store::TaskState::Succeeded);
    let outputs: Value = serde_json::from_str(&read.outputs).expect("outputs");
    assert_eq!(outputs["Output"], "hello from the store");
    let workspace = local
        .dir
        .path()
        .join("work")
        .join(&run_id)
        .join("workspace");
    let copy = kfpd_core::executor_input::workspace_artifact_path(&workspace, &uri)
        .expect("a place in the workspace");
    assert_eq!(
        outputs["where"],
        copy.display().to_string(),
        "the task read the workspace's copy"
    );
    assert_eq!(
        std::fs::read_to_string(&copy).expect("the workspace's copy"),
        "hello from the store"
    );
}
