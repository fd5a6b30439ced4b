//! The compiler on pipelines a clone carries (tests/pipelines and pipelines made
//! here), so the crate tests itself without the upstream corpus: every committed
//! pipeline compiles and lints clean; the layout of conditions, loops, parallelism,
//! exit handlers, retries and run-time pod settings; the pod spec patch the
//! driver answers; planted lint faults; refused pipelines.

use kfpd_argo::{compile, lint::lint, to_yaml, Options};
use serde_json::{json, Map, Value};

fn package(yaml: &str) -> kfpd_ir::Package {
    kfpd_ir::read_package("inline.yaml", yaml.as_bytes()).expect("package")
}

/// The Workflow as Argo reads it: the YAML, parsed.
fn workflow(package: &kfpd_ir::Package) -> Value {
    let compiled = compile(package, &Options::default()).expect("compile");
    serde_yaml::from_str(&to_yaml(&compiled).expect("yaml")).expect("the Workflow is YAML")
}

fn template<'a>(workflow: &'a Value, name: &str) -> &'a Value {
    workflow["spec"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|template| template["name"] == name)
        .unwrap_or_else(|| panic!("no template {name}"))
}

fn task<'a>(dag: &'a Value, name: &str) -> &'a Value {
    dag["dag"]["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|task| task["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {}", dag["name"]))
}

#[test]
fn every_committed_pipeline_compiles_and_lints_clean() {
    let dir = kfpd_testdata::pipelines_dir();
    let mut compiled = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/pipelines") {
        let path = entry.expect("entry").path();
        let is_package = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "json")
        );
        if !is_package {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let package = kfpd_ir::read_package(&name, &bytes).expect("package");
        let workflow = workflow(&package);
        assert_eq!(lint(&workflow), Vec::<String>::new(), "{name}");
        compiled += 1;
    }
    assert!(
        compiled >= 5,
        "only {compiled} pipelines in {}",
        dir.display()
    );
}

/// A producer, a condition on its output, a loop of two items with parallelism 1
/// whose task's CPU limit and secret name come from the producer, an exit handler
/// around a task with a retry policy.
const CONTROL_FLOW: &str = r#"
pipelineInfo: {name: control-flow}
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
        item: {parameterType: STRING}
  comp-flaky:
    executorLabel: exec-flaky
  comp-cleanup:
    executorLabel: exec-cleanup
  comp-condition-1:
    inputDefinitions:
      parameters:
        pipelinechannel--make-cpu: {parameterType: STRING}
    dag:
      tasks:
        flaky:
          componentRef: {name: comp-flaky}
          retryPolicy: {maxRetryCount: 2, backoffDuration: 1s, backoffFactor: 2}
          taskInfo: {name: flaky}
  comp-for-loop-2:
    inputDefinitions:
      parameters:
        pipelinechannel--make-cpu: {parameterType: STRING}
        pipelinechannel--make-secret: {parameterType: STRING}
        pipelinechannel--loop-item: {parameterType: STRING}
    dag:
      tasks:
        use:
          componentRef: {name: comp-use}
          inputs:
            parameters:
              cpu: {componentInputParameter: pipelinechannel--make-cpu}
              item: {componentInputParameter: pipelinechannel--loop-item}
          taskInfo: {name: use}
  comp-exit-handler-3:
    dag:
      tasks:
        guarded:
          componentRef: {name: comp-flaky}
          taskInfo: {name: guarded}
deploymentSpec:
  executors:
    exec-make:
      container:
        image: alpine
        command: [sh, -c, 'printf 2 > "$0" && printf s > "$1"', "{{$.outputs.parameters['cpu'].output_file}}", "{{$.outputs.parameters['secret'].output_file}}"]
    exec-use:
      container:
        image: alpine
        command: [echo, "{{$.inputs.parameters['item']}}"]
        resources:
          resourceCpuLimit: "{{$.inputs.parameters['cpu']}}"
    exec-flaky:
      container: {image: alpine, command: [sh, -c, 'exit 0']}
    exec-cleanup:
      container: {image: alpine, command: [echo, done]}
root:
  dag:
    tasks:
      make:
        componentRef: {name: comp-make}
        taskInfo: {name: make}
      condition-1:
        componentRef: {name: comp-condition-1}
        dependentTasks: [make]
        inputs:
          parameters:
            pipelinechannel--make-cpu:
              taskOutputParameter: {producerTask: make, outputParameterKey: cpu}
        triggerPolicy:
          condition: inputs.parameter_values['pipelinechannel--make-cpu'] == '2'
        taskInfo: {name: condition-1}
      for-loop-2:
        componentRef: {name: comp-for-loop-2}
        dependentTasks: [make]
        parameterIterator:
          itemInput: pipelinechannel--loop-item
          items: {raw: '["a", "b"]'}
        iteratorPolicy: {parallelismLimit: 1}
        inputs:
          parameters:
            pipelinechannel--make-cpu:
              taskOutputParameter: {producerTask: make, outputParameterKey: cpu}
            pipelinechannel--make-secret:
              taskOutputParameter: {producerTask: make, outputParameterKey: secret}
        taskInfo: {name: for-loop-2}
      exit-handler-3:
        componentRef: {name: comp-exit-handler-3}
        taskInfo: {name: exit-handler-3}
      cleanup:
        componentRef: {name: comp-cleanup}
        dependentTasks: [exit-handler-3]
        triggerPolicy: {strategy: ALL_UPSTREAM_TASKS_COMPLETED}
        taskInfo: {name: cleanup}
"#;

#[test]
fn control_flow_becomes_driver_requests_conditions_sequences_and_pods() {
    let workflow = workflow(&package(CONTROL_FLOW));
    assert_eq!(lint(&workflow), Vec::<String>::new());
    let root = template(&workflow, "root");

    // Every task: its driver request first, the rest only on `execute`.
    for name in [
        "make",
        "condition-1",
        "for-loop-2",
        "exit-handler-3",
        "cleanup",
    ] {
        let driver = task(root, &format!("{name}-driver"));
        assert_eq!(driver["template"], "kfpd-driver", "{name}");
        let main = task(root, name);
        assert_eq!(
            main["depends"],
            format!("{name}-driver.Succeeded"),
            "{name}"
        );
        assert_eq!(
            main["when"],
            format!(
                "{{{{=jsonpath(tasks['{name}-driver'].outputs.result, '$.execute')}}}} == true"
            ),
            "{name}"
        );
    }
    // Upstream tasks hold a driver request back; a cached or skipped one does not.
    assert_eq!(
        task(root, "condition-1-driver")["depends"],
        "(make.Succeeded || make.Skipped)"
    );
    // The exit task waits for its upstream whatever happened, and the DAG it is in
    // neither stops at a failure nor hides one.
    let cleanup = task(root, "cleanup-driver")["depends"].as_str().unwrap();
    for result in ["Succeeded", "Skipped", "Failed", "Errored", "Omitted"] {
        assert!(
            cleanup.contains(&format!("exit-handler-3.{result}")),
            "{cleanup}"
        );
    }
    assert_eq!(root["dag"]["failFast"], false);
    assert_eq!(
        root["dag"]["target"],
        "cleanup condition-1 exit-handler-3 for-loop-2 make"
    );

    // A loop with parallelism: a DAG with Argo's `parallelism` expanding the items
    // the driver counted.
    let for_loop = task(root, "for-loop-2");
    let iterator = template(&workflow, for_loop["template"].as_str().unwrap());
    assert_eq!(iterator["parallelism"], 1);
    let arguments = for_loop["arguments"]["parameters"].as_array().unwrap();
    assert!(arguments.contains(&json!({
        "name": "count",
        "value": "{{=jsonpath(tasks['for-loop-2-driver'].outputs.result, '$.iteration_count')}}"
    })));
    let iteration = task(iterator, "iteration");
    assert_eq!(
        iteration["withSequence"]["count"],
        "{{inputs.parameters.count}}"
    );

    // The loop's task: its CPU limit is the producer's output, so the driver
    // answers a patch and the pod template takes it.
    let body = template(&workflow, iteration["template"].as_str().unwrap());
    let use_driver = task(body, "use-driver");
    assert!(use_driver["arguments"]["parameters"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "patch", "value": "true"})));
    let pod = template(&workflow, task(body, "use")["template"].as_str().unwrap());
    assert_eq!(pod["podSpecPatch"], "{{inputs.parameters.pod-spec-patch}}");
    assert_eq!(
        pod["container"]["command"],
        json!(["/kfpd/kfpd", "launcher"]),
        "the user's command is not in the Workflow"
    );

    // The retried task: Argo's retryStrategy, and the attempt number for the launcher.
    let condition = template(
        &workflow,
        task(root, "condition-1")["template"].as_str().unwrap(),
    );
    let flaky = template(
        &workflow,
        task(condition, "flaky")["template"].as_str().unwrap(),
    );
    assert_eq!(flaky["retryStrategy"]["limit"], 2);
    assert_eq!(flaky["retryStrategy"]["backoff"]["duration"], "1s");
    assert!(flaky["container"]["env"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "KFPD_RETRY_INDEX", "value": "{{retries}}"})));
}

#[test]
fn the_pod_spec_patch_resolves_settings_from_the_values_a_task_was_driven_with() {
    let package = package(CONTROL_FLOW);
    let spec = package.spec();
    let body = spec.component("comp-for-loop-2").unwrap();
    let dag = body.dag.as_ref().unwrap();
    let task = &dag.tasks["use"];
    let component = spec.component("comp-use").unwrap();
    let mut dag_inputs = Map::new();
    dag_inputs.insert("pipelinechannel--make-cpu".into(), json!("2"));
    dag_inputs.insert("pipelinechannel--loop-item".into(), json!("a"));
    let mut task_inputs = Map::new();
    task_inputs.insert("cpu".into(), json!("2"));
    task_inputs.insert("item".into(), json!("a"));
    let patch = kfpd_argo::patch::pod_spec_patch(kfpd_argo::patch::Driven {
        spec,
        platform: package.platform(),
        name: "use",
        task,
        component,
        dag,
        dag_inputs: &dag_inputs,
        sibling_outputs: Default::default(),
        task_inputs,
    })
    .expect("patch");
    assert_eq!(
        patch,
        json!({"containers": [{
            "name": "main",
            "image": "alpine",
            "resources": {"limits": {"cpu": "2"}},
        }]})
    );

    // A value that is not a string or a number is refused, naming the input.
    let mut bad = Map::new();
    bad.insert("cpu".into(), json!({"not": "a quantity"}));
    let error = kfpd_argo::patch::pod_spec_patch(kfpd_argo::patch::Driven {
        spec,
        platform: package.platform(),
        name: "use",
        task,
        component,
        dag,
        dag_inputs: &dag_inputs,
        sibling_outputs: Default::default(),
        task_inputs: bad,
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("\"use\"") && error.contains("\"cpu\""),
        "{error}"
    );
}

#[test]
fn planted_faults_are_found_by_the_lint() {
    let good = workflow(&package(CONTROL_FLOW));
    assert_eq!(lint(&good), Vec::<String>::new());
    let root_index = good["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t["name"] == "root")
        .unwrap();
    let tasks = |workflow: &mut Value| -> Vec<Value> {
        workflow["spec"]["templates"][root_index]["dag"]["tasks"]
            .as_array()
            .unwrap()
            .clone()
    };

    let mut dangling = good.clone();
    let mut list = tasks(&mut dangling);
    list[0]["depends"] = json!("nobody.Succeeded");
    dangling["spec"]["templates"][root_index]["dag"]["tasks"] = Value::Array(list);
    assert!(
        lint(&dangling).join("\n").contains("\"nobody\""),
        "{:?}",
        lint(&dangling)
    );

    let mut missing = good.clone();
    let mut list = tasks(&mut missing);
    list[0]["template"] = json!("no-such-template");
    missing["spec"]["templates"][root_index]["dag"]["tasks"] = Value::Array(list);
    assert!(
        lint(&missing).join("\n").contains("no-such-template"),
        "{:?}",
        lint(&missing)
    );

    let mut unresolved = good.clone();
    let mut list = tasks(&mut unresolved);
    list[0]["arguments"]["parameters"][0]["value"] = json!("{{inputs.parameters.nothing}}");
    unresolved["spec"]["templates"][root_index]["dag"]["tasks"] = Value::Array(list);
    assert!(
        lint(&unresolved)
            .join("\n")
            .contains("inputs.parameters.nothing"),
        "{:?}",
        lint(&unresolved)
    );

    let mut cycle = good.clone();
    let mut list = tasks(&mut cycle);
    let first = list[0]["name"].as_str().unwrap().to_string();
    let second = list[1]["name"].as_str().unwrap().to_string();
    list[0]["depends"] = json!(format!("{second}.Succeeded"));
    list[1]["depends"] = json!(format!("{first}.Succeeded"));
    cycle["spec"]["templates"][root_index]["dag"]["tasks"] = Value::Array(list);
    assert!(
        lint(&cycle).join("\n").contains("cycle"),
        "{:?}",
        lint(&cycle)
    );
}

#[test]
fn what_argo_cannot_run_is_refused_with_the_task_named() {
    let clash = CONTROL_FLOW.replace(
        "      cleanup:\n        componentRef: {name: comp-cleanup}",
        "      make-driver:\n        componentRef: {name: comp-cleanup}\n        taskInfo: {name: x}\n      cleanup:\n        componentRef: {name: comp-cleanup}",
    );
    let error = compile(&package(&clash), &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"make\"") && error.contains("\"make-driver\""),
        "{error}"
    );
}

#[test]
fn a_security_context_of_kfp_kubernetes_goes_to_the_users_container() {
    let yaml = format!(
        "{CONTROL_FLOW}---\nplatforms:\n  kubernetes:\n    deploymentSpec:\n      executors:\n        exec-make:\n          securityContext: {{runAsUser: '1000', runAsGroup: 100, runAsNonRoot: true}}\n"
    );
    let workflow = workflow(&package(&yaml));
    assert_eq!(lint(&workflow), Vec::<String>::new());
    let root = template(&workflow, "root");
    let pod = template(&workflow, task(root, "make")["template"].as_str().unwrap());
    assert_eq!(
        pod["container"]["securityContext"],
        json!({"runAsUser": 1000, "runAsGroup": 100, "runAsNonRoot": true})
    );
    let init = &pod["initContainers"][0]["securityContext"];
    assert_eq!(
        init["allowPrivilegeEscalation"], false,
        "kfpd's own container keeps its own"
    );
    let other = template(&workflow, "exec-cleanup");
    assert!(other["container"].get("securityContext").is_none());
}
