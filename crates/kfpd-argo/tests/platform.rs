//! `platforms.kubernetes` settings land on the pod templates: the corpus files
//! that use them (MANIFEST `local` = K and the other kfp-kubernetes users), and one
//! pipeline made here with the settings the corpus does not cover.

mod support;

use kfpd_argo::{compile, Options};
use serde_json::{json, Map, Value};

fn workflow(path: &str, parameters: Value) -> Option<Value> {
    let shared = support::shared_dir()?;
    let row = support::manifest(&shared)
        .into_iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("{path} is not in the manifest"));
    let package = support::package(&shared, &row).expect("a pipeline");
    let options = Options {
        parameters: parameters.as_object().cloned().unwrap_or_default(),
        ..Options::default()
    };
    let workflow = compile(&package, &options).unwrap_or_else(|e| panic!("{path}: {e}"));
    Some(serde_json::to_value(workflow).expect("json"))
}

fn template<'w>(workflow: &'w Value, name: &str) -> &'w Value {
    workflow["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no template {name}"))
}

/// The DAG task `task` of DAG template `dag`.
fn task<'w>(workflow: &'w Value, dag: &str, task: &str) -> &'w Value {
    template(workflow, dag)["dag"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task)
        .unwrap_or_else(|| panic!("no task {task} in {dag}"))
}

/// The pod template task `name` of DAG `dag` runs.
fn pod<'w>(workflow: &'w Value, dag: &str, name: &str) -> &'w Value {
    let template_name = task(workflow, dag, name)["template"].as_str().unwrap();
    template(workflow, template_name)
}

fn env<'p>(pod: &'p Value, name: &str) -> &'p Value {
    pod["container"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name} in {pod}"))
}

fn takes_patch(workflow: &Value, dag: &str, name: &str) -> bool {
    let pod = pod(workflow, dag, name);
    let input = pod["inputs"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "pod-spec-patch");
    let driver = &task(workflow, dag, &format!("{name}-driver"))["arguments"]["parameters"];
    let asks = driver
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "patch" && p["value"] == "true");
    assert_eq!(input, asks, "{name}: pod input and driver request disagree");
    if input {
        assert_eq!(pod["podSpecPatch"], "{{inputs.parameters.pod-spec-patch}}");
    }
    input
}

#[test]
fn secrets_as_env_from_a_constant_a_parameter_and_a_task_output() {
    let Some(wf) = workflow("critical/pipeline_with_secret_as_env.yaml", json!({})) else {
        return;
    };
    let comp = pod(&wf, "root", "comp");
    assert_eq!(
        env(comp, "USER_NAME")["valueFrom"]["secretKeyRef"],
        json!({"name": "test-secret-1", "key": "username", "optional": false})
    );
    assert_eq!(
        env(comp, "PASSWORD_VAR1")["valueFrom"]["secretKeyRef"]["name"],
        "test-secret-2"
    );
    // The third name is another task's output: decided by the driver request.
    assert!(takes_patch(&wf, "root", "comp"));

    // A run parameter replaces the default.
    let wf = workflow(
        "critical/pipeline_with_secret_as_env.yaml",
        json!({"secret_parm": "from-the-run"}),
    )
    .unwrap();
    assert_eq!(
        env(pod(&wf, "root", "comp"), "USER_NAME")["valueFrom"]["secretKeyRef"]["name"],
        "from-the-run"
    );
}

#[test]
fn secret_as_volume_and_secrets_inside_loops() {
    let Some(wf) = workflow("pipeline_with_secret_as_volume.yaml", json!({})) else {
        return;
    };
    let comp = pod(&wf, "root", "comp");
    let volume = comp["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v.get("secret").is_some())
        .expect("a secret volume");
    assert_eq!(
        volume["secret"],
        json!({"secretName": "test-secret-1", "optional": false})
    );
    let mount = comp["container"]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("its mount");
    assert_eq!(mount["mountPath"], "/mnt/my_vol");
    assert!(!takes_patch(&wf, "root", "comp"));

    // A loop body's secret from a run parameter is known; from a task output it is not.
    let wf = workflow("parallel_and_nested/parallel_for_secret.yaml", json!({})).unwrap();
    let body = loop_body(&wf, "root");
    let worker = first_pod_task(&wf, &body);
    assert_eq!(
        env(pod(&wf, &body, &worker), "MY_SECRET_KEY")["valueFrom"]["secretKeyRef"]["name"],
        "test-secret-1"
    );
    let wf = workflow(
        "parallel_and_nested/nested_parallel_for_secret.yaml",
        json!({}),
    )
    .unwrap();
    let body = loop_body(&wf, "root");
    let worker = first_pod_task(&wf, &body);
    assert!(takes_patch(&wf, &body, &worker));
}

/// The DAG template a loop of `dag` runs per item (through its parallelism DAG).
fn loop_body(wf: &Value, dag: &str) -> String {
    let tasks = template(wf, dag)["dag"]["tasks"].as_array().unwrap();
    let looping = tasks
        .iter()
        .find(|t| {
            t["name"].as_str().unwrap().starts_with("for-loop")
                && !t["name"].as_str().unwrap().ends_with("-driver")
        })
        .expect("a loop task");
    let name = looping["template"].as_str().unwrap();
    let inner = template(wf, name);
    if inner.get("parallelism").is_some() {
        return inner["dag"]["tasks"][0]["template"]
            .as_str()
            .unwrap()
            .to_string();
    }
    name.to_string()
}

fn first_pod_task(wf: &Value, dag: &str) -> String {
    template(wf, dag)["dag"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            template(wf, t["template"].as_str().unwrap())
                .get("container")
                .is_some()
        })
        .and_then(|t| t["name"].as_str())
        .expect("a pod task")
        .to_string()
}

#[test]
fn pod_metadata_and_field_path_env() {
    let Some(wf) = workflow("create_pod_metadata_complex.yaml", json!({})) else {
        return;
    };
    let tasks = template(&wf, "root")["dag"]["tasks"]
        .as_array()
        .unwrap()
        .clone();
    let mut seen = 0;
    for t in tasks
        .iter()
        .filter(|t| !t["name"].as_str().unwrap().ends_with("-driver"))
    {
        let pod = template(&wf, t["template"].as_str().unwrap());
        let Some(fields) = pod["container"]["env"].as_array() else {
            continue;
        };
        for var in fields
            .iter()
            .filter(|e| e["name"].as_str().unwrap().starts_with("POD_TASK_"))
        {
            let path = var["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap();
            // Every label or annotation a task reads is one its pod carries.
            let key = path.split('\'').nth(1).unwrap();
            let kind = if path.starts_with("metadata.labels") {
                "labels"
            } else {
                "annotations"
            };
            assert!(
                pod["metadata"][kind].get(key).is_some(),
                "{}: {path} not in {}",
                t["name"],
                pod["metadata"]
            );
            seen += 1;
        }
    }
    assert!(seen >= 4, "only {seen} field-path variables");
    let validate = pod(&wf, "root", "validate-pod-metadata");
    assert_eq!(validate["metadata"]["labels"]["task-label-1"], "label-1");
    assert_eq!(
        validate["metadata"]["annotations"]["task-annotation"],
        "annotation"
    );
}

#[test]
fn pvc_create_mount_and_delete() {
    let Some(wf) = workflow("pipeline_with_volume.yaml", json!({})) else {
        return;
    };
    let name = "{{workflow.name}}-my-pvc";
    let create = pod(&wf, "root", "createpvc");
    assert_eq!(create["resource"]["action"], "create");
    let manifest = support::yaml_to_json(create["resource"]["manifest"].as_str().unwrap());
    assert_eq!(
        manifest,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                        "resources": {"requests": {"storage": "5Mi"}}}})
    );
    let delete = pod(&wf, "root", "deletepvc");
    assert_eq!(delete["resource"]["action"], "delete");
    let manifest = support::yaml_to_json(delete["resource"]["manifest"].as_str().unwrap());
    assert_eq!(manifest["metadata"]["name"], name);
    for user in ["producer", "consumer"] {
        let pod = pod(&wf, "root", user);
        let claim = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .expect("a claim");
        assert_eq!(claim, name);
        assert!(pod["container"]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/data"));
    }
    // deletepvc waits for the consumer.
    let depends = task(&wf, "root", "deletepvc-driver")["depends"]
        .as_str()
        .unwrap();
    assert!(depends.contains("consumer.Succeeded"), "{depends}");

    // Through a loop's input.
    let wf = workflow("parallel_and_nested/parallel_for_mount_pvc.yaml", json!({})).unwrap();
    let body = loop_body(&wf, "root");
    let worker = first_pod_task(&wf, &body);
    let claim = pod(&wf, &body, &worker)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .map(str::to_string);
    assert_eq!(claim.as_deref(), Some("{{workflow.name}}-my-pvc"));

    // A required PVC name: known once the run gives it.
    let wf = workflow("pvc_mount.yaml", json!({})).unwrap();
    assert!(takes_patch(&wf, "root", "producer"));
    let wf = workflow("pvc_mount.yaml", json!({"pvc_name": "shared-data"})).unwrap();
    assert!(!takes_patch(&wf, "root", "producer"));
    let claim =
        pod(&wf, "root", "producer")["volumes"][1]["persistentVolumeClaim"]["claimName"].clone();
    assert_eq!(claim, "shared-data");
}

#[test]
fn accelerators_tolerations_and_resources() {
    let Some(wf) = workflow("gpu-scheduling/nvidia_gpu_scheduling_check.yaml", json!({})) else {
        return;
    };
    let gpu = pod(&wf, "root", "verify-gpu-scheduled");
    assert_eq!(
        gpu["container"]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(
        gpu["tolerations"],
        json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    );
    // The pod exists only after the driver said so: a cache hit never schedules it.
    let node = task(&wf, "root", "verify-gpu-scheduled");
    assert_eq!(node["depends"], "verify-gpu-scheduled-driver.Succeeded");
    assert!(node["when"].as_str().unwrap().contains("$.execute"));

    let wf = workflow(
        "local_execution/local_execution_pipeline_with_k8s_only_methods.yaml",
        json!({}),
    )
    .unwrap();
    let echo = pod(&wf, "root", "echo");
    assert_eq!(
        echo["container"]["resources"],
        json!({"limits": {"cpu": "1000m", "memory": "256Mi", "nvidia.com/gpu": "1"}})
    );

    let wf = workflow(
        "pipeline_with_string_machine_fields_pipeline_input.yaml",
        json!({"cpu_limit": "2500m"}),
    )
    .unwrap();
    let sum = pod(&wf, "root", "sum-numbers");
    let limits = &sum["container"]["resources"]["limits"];
    assert_eq!(limits["cpu"], "2500m");
    assert_eq!(limits["NVIDIA_TESLA_P4"], "1");
    assert!(limits.get("memory").is_some(), "{limits}");
    assert!(!takes_patch(&wf, "root", "sum-numbers"));
    let wf = workflow(
        "pipeline_with_string_machine_fields_task_output.yaml",
        json!({}),
    )
    .unwrap();
    assert!(takes_patch(&wf, "root", "sum-numbers"));
}

#[test]
fn null_optional_settings_are_left_out() {
    let Some(wf) = workflow(
        "critical/missing_kubernetes_optional_inputs.yaml",
        json!({}),
    ) else {
        return;
    };
    let tasks = template(&wf, "root")["dag"]["tasks"]
        .as_array()
        .unwrap()
        .clone();
    let node = tasks
        .iter()
        .find(|t| {
            template(&wf, t["template"].as_str().unwrap())
                .get("container")
                .is_some()
        })
        .unwrap();
    let pod = template(&wf, node["template"].as_str().unwrap());
    for field in ["nodeSelector", "tolerations", "affinity", "podSpecPatch"] {
        assert!(pod.get(field).is_none(), "{field}: {pod}");
    }
    assert_eq!(pod["volumes"].as_array().unwrap().len(), 1, "{pod}");
    assert!(pod["container"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["name"].as_str().unwrap().starts_with("KFPD_")));
}

#[test]
fn workspace_retries_and_timeouts() {
    let Some(wf) = workflow("critical/pipeline_with_workspace.yaml", json!({})) else {
        return;
    };
    assert_eq!(
        wf["spec"]["volumeClaimTemplates"],
        json!([{"metadata": {"name": "kfp-workspace"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                         "resources": {"requests": {"storage": "1Gi"}}}}])
    );
    let pods: Vec<&Value> = wf["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.get("container").is_some())
        .collect();
    assert!(!pods.is_empty());
    for pod in pods {
        assert!(pod["container"]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "kfp-workspace" && m["mountPath"] == "/kfp-workspace"));
        // The launcher resolves `{{$.workspace_path}}` to the shared volume.
        assert_eq!(env(pod, "KFPD_WORKSPACE")["value"], "/kfp-workspace");
    }

    let wf = workflow("critical/pipeline_with_retry.yaml", json!({})).unwrap();
    let retried: Vec<&Value> = wf["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t.get("retryStrategy").is_some())
        .collect();
    assert!(!retried.is_empty());
    for pod in retried {
        assert!(pod["retryStrategy"]["limit"].as_i64().unwrap() > 0);
        assert_eq!(env(pod, "KFPD_RETRY_INDEX")["value"], "{{retries}}");
    }
}

/// Settings no corpus file uses, on a pipeline made here.
#[test]
fn settings_beyond_the_corpus() {
    let spec = json!({
        "components": {"comp-echo": {"executorLabel": "exec-echo",
            "inputDefinitions": {"parameters": {"zone": {"parameterType": "STRING"}}}}},
        "deploymentSpec": {"executors": {"exec-echo": {"container": {
            "image": "alpine", "command": ["echo", "hi"],
            "env": [{"name": "PLAIN", "value": "yes"}, {"name": "TEMPLATED", "value": "{{x}}"}],
            "resources": {"resourceCpuRequest": "250m", "resourceMemoryRequest": "64Mi"}}}}},
        "pipelineInfo": {"name": "settings"},
        "root": {
            "inputDefinitions": {"parameters": {"zone": {"parameterType": "STRING", "defaultValue": "eu-1"}}},
            "dag": {"tasks": {"echo": {
                "componentRef": {"name": "comp-echo"}, "taskInfo": {"name": "echo"},
                "inputs": {"parameters": {"zone": {"componentInputParameter": "zone"}}}}}}},
        "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.15.0"
    });
    let platform = json!({"platforms": {"kubernetes": {
        "pipelineConfig": {"activeDeadlineSeconds": 3600, "resourceTtlOnSuccess": 60},
        "deploymentSpec": {"executors": {"exec-echo": {
            "activeDeadlineSeconds": "120",
            "imagePullPolicy": "Always",
            "imagePullSecret": [{"secretName": "registry"}],
            "nodeSelector": {"nodeSelectorJson": {"componentInputParameter": "zone"}},
            "configMapAsEnv": [{"configMapName": "settings", "keyToEnv": [{"configMapKey": "k", "envVar": "K"}]}],
            "configMapAsVolume": [{"configMapName": "settings", "mountPath": "/etc/settings", "optional": true}],
            "emptyDirMounts": [{"volumeName": "scratch", "mountPath": "/scratch", "medium": "Memory"}],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute", "tolerationSeconds": "30"}],
            "nodeAffinity": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}], "weight": 10}
            ]
        }}}
    }}});
    let package = kfpd_ir::Package::from_parts(spec, Some(platform)).expect("valid package");
    let options = Options {
        parameters: Map::from_iter([("zone".to_string(), json!("{\"zone\": \"eu-2\"}"))]),
        ..Options::default()
    };
    let wf = serde_json::to_value(compile(&package, &options).unwrap()).unwrap();
    let pod = pod(&wf, "root", "echo");
    assert_eq!(pod["activeDeadlineSeconds"], 120);
    assert_eq!(pod["container"]["imagePullPolicy"], "Always");
    assert_eq!(
        serde_json::from_str::<Value>(pod["podSpecPatch"].as_str().unwrap()).unwrap(),
        json!({"imagePullSecrets": [{"name": "registry"}]})
    );
    assert_eq!(pod["nodeSelector"], json!({"zone": "eu-2"}));
    assert_eq!(
        env(pod, "K")["valueFrom"]["configMapKeyRef"]["name"],
        "settings"
    );
    assert_eq!(env(pod, "PLAIN")["value"], "yes");
    assert!(pod["container"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["name"] != "TEMPLATED"));
    assert_eq!(
        pod["container"]["resources"],
        json!({"requests": {"cpu": "250m", "memory": "64Mi"}})
    );
    assert_eq!(pod["tolerations"][0]["tolerationSeconds"], 30);
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["key"],
        "zone"
    );
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
            ["weight"],
        10
    );
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["configMap"]["name"] == "settings"));
    assert!(volumes.iter().any(|v| v["emptyDir"]["medium"] == "Memory"));
    assert_eq!(wf["spec"]["activeDeadlineSeconds"], 3600);
    assert_eq!(
        wf["spec"]["ttlStrategy"],
        json!({"secondsAfterSuccess": 60})
    );

    // The Workflow passes both CRDs and the lint too.
    assert_valid(&wf);
}

/// The Workflow passes both versions' CRD schemas (when the shared schemas are
/// there) and the lint.
fn assert_valid(wf: &Value) {
    if let Some(shared) = support::shared_dir() {
        for v in ["v3.7.8", "v4.0.5"] {
            let crd = support::schema::Crd::load(
                &shared.schemas.join(format!("crd-workflows-full-{v}.yaml")),
                v,
            );
            assert_eq!(crd.validate(wf), Vec::<String>::new(), "{v}");
        }
    }
    assert_eq!(kfpd_argo::lint::lint(wf), Vec::<String>::new());
}

/// One task with the given kubernetes executor config, compiled.
fn compile_with(config: Value) -> Result<Value, String> {
    let spec = json!({
        "components": {"comp-echo": {"executorLabel": "exec-echo",
            "inputDefinitions": {"parameters": {"claim": {"parameterType": "STRING"}}}}},
        "deploymentSpec": {"executors": {"exec-echo": {"container": {
            "image": "alpine", "command": ["echo", "hi"]}}}},
        "pipelineInfo": {"name": "init-and-affinity"},
        "root": {
            "inputDefinitions": {"parameters": {"claim": {"parameterType": "STRING", "defaultValue": "data-claim"}}},
            "dag": {"tasks": {"echo": {
                "componentRef": {"name": "comp-echo"}, "taskInfo": {"name": "echo"},
                "inputs": {"parameters": {"claim": {"componentInputParameter": "claim"}}}}}}},
        "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.15.0"
    });
    let platform = json!({"platforms": {"kubernetes": {
        "deploymentSpec": {"executors": {"exec-echo": config}}}}});
    let package = kfpd_ir::Package::from_parts(spec, Some(platform)).expect("valid package");
    let workflow = compile(&package, &Options::default()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(workflow).expect("json"))
}

/// The fields of kfp-kubernetes' `init_containers` and `pod_affinity`, as the
/// platform spec's JSON names them.
#[test]
fn init_containers_and_pod_affinity() {
    let wf = compile_with(json!({
        "emptyDirMounts": [{"volumeName": "scratch", "mountPath": "/scratch"}],
        "pvcMount": [{"pvcNameParameter": {"componentInputParameter": "claim"}, "mountPath": "/data"}],
        "initContainers": [
            {"name": "fetch", "image": "busybox", "command": ["sh", "-c"], "args": ["echo hi > /prep/hello"],
             "env": [{"name": "MODE", "value": "fast"}],
             "volumeMounts": [{"volumeName": "scratch", "mountPath": "/prep"},
                              {"volumeName": "data-claim", "mountPath": "/in"}],
             "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}}},
            {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}
        ],
        "podAffinity": [
            {"matchPodLabels": {"app": "cache"}, "topologyKey": "kubernetes.io/hostname"},
            {"matchPodExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]}],
             "matchNamespaceLabels": {"team": "ml"}, "topologyKey": "zone", "weight": 20},
            {"matchPodLabels": {"app": "noisy"}, "topologyKey": "kubernetes.io/hostname", "anti": true}
        ]
    }))
    .expect("compiles");
    let pod = pod(&wf, "root", "echo");
    let inits = pod["initContainers"].as_array().unwrap();
    let names: Vec<&str> = inits.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["kfpd-init", "fetch", "proxy"],
        "kfpd's own copy step runs first"
    );
    let fetch = &inits[1];
    assert_eq!(fetch["image"], "busybox");
    assert_eq!(fetch["args"], json!(["echo hi > /prep/hello"]));
    assert_eq!(fetch["env"], json!([{"name": "MODE", "value": "fast"}]));
    assert_eq!(
        fetch["resources"],
        json!({"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}})
    );
    // Mounts name the pod's volumes: the empty dir by its name, the PVC by its claim.
    let volumes = pod["volumes"].as_array().unwrap();
    let claim_volume = volumes
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"] == "data-claim")
        .expect("the PVC volume")["name"]
        .clone();
    assert_eq!(
        fetch["volumeMounts"],
        json!([{"name": "scratch", "mountPath": "/prep"}, {"name": claim_volume, "mountPath": "/in"}])
    );
    assert_eq!(inits[2]["restartPolicy"], "Always");
    assert!(inits[2].get("volumeMounts").is_none());

    let affinity = &pod["affinity"];
    assert_eq!(
        affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!([{"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}])
    );
    assert_eq!(
        affinity["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
        json!([{"weight": 20, "podAffinityTerm": {
            "labelSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]}]},
            "namespaceSelector": {"matchLabels": {"team": "ml"}},
            "topologyKey": "zone"}}])
    );
    assert_eq!(
        affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
            ["labelSelector"]["matchLabels"]["app"],
        "noisy"
    );
    assert!(affinity.get("nodeAffinity").is_none());

    assert_valid(&wf);
}

#[test]
fn init_containers_and_pod_affinity_that_cannot_work_are_refused_by_name() {
    let refused = |config: Value, expected: &[&str]| {
        let error = compile_with(config).expect_err("refused");
        for part in expected {
            assert!(error.contains(part), "{error} should name {part}");
        }
    };
    refused(
        json!({"initContainers": [{"name": "fetch", "image": "busybox",
            "volumeMounts": [{"volumeName": "missing", "mountPath": "/x"}]}]}),
        &["\"fetch\"", "\"missing\""],
    );
    refused(
        json!({"initContainers": [{"name": "main", "image": "busybox"}]}),
        &["\"main\"", "taken"],
    );
    refused(
        json!({"initContainers": [{"name": "fetch", "image": ""}]}),
        &["\"fetch\"", "no image"],
    );
    refused(
        json!({"initContainers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}),
        &["\"a\"", "two init containers"],
    );
    refused(
        json!({"initContainers": [{"name": "a", "image": "x", "restartPolicy": "OnFailure"}]}),
        &["\"a\"", "OnFailure"],
    );
    refused(
        json!({"podAffinity": [{"matchPodLabels": {"app": "x"}}]}),
        &["topology key"],
    );
}

/// A PVC named by an upstream task's output is known only when the task is
/// driven: the init container that mounts it gets the mount in the driver's patch.
#[test]
fn an_init_container_mounting_a_pvc_named_at_run_time_gets_it_in_the_patch() {
    let spec = json!({
        "components": {
            "comp-make": {"executorLabel": "exec-make",
                "outputDefinitions": {"parameters": {"Output": {"parameterType": "STRING"}}}},
            "comp-use": {"executorLabel": "exec-use",
                "inputDefinitions": {"parameters": {"claim": {"parameterType": "STRING"}}}}},
        "deploymentSpec": {"executors": {
            "exec-make": {"container": {"image": "alpine", "command": ["echo"]}},
            "exec-use": {"container": {"image": "alpine", "command": ["echo"]}}}},
        "pipelineInfo": {"name": "runtime-claim"},
        "root": {"dag": {"tasks": {
            "make": {"componentRef": {"name": "comp-make"}, "taskInfo": {"name": "make"}},
            "use": {"componentRef": {"name": "comp-use"}, "taskInfo": {"name": "use"},
                "dependentTasks": ["make"],
                "inputs": {"parameters": {"claim": {"taskOutputParameter":
                    {"producerTask": "make", "outputParameterKey": "Output"}}}}}}}},
        "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.15.0"
    });
    let platform = json!({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-use": {
        "pvcMount": [{"pvcNameParameter": {"taskOutputParameter":
            {"producerTask": "make", "outputParameterKey": "Output"}}, "mountPath": "/data"}],
        "initContainers": [{"name": "fetch", "image": "busybox",
            "volumeMounts": [{"volumeName": "claim-7", "mountPath": "/in"}]}]
    }}}}}});
    let package = kfpd_ir::Package::from_parts(spec, Some(platform)).expect("valid package");
    let wf = serde_json::to_value(compile(&package, &Options::default()).unwrap()).unwrap();
    assert!(takes_patch(&wf, "root", "use"));
    let template_fetch = &pod(&wf, "root", "use")["initContainers"][1];
    assert_eq!(template_fetch["name"], "fetch");
    assert!(template_fetch.get("volumeMounts").is_none());

    let ir = package.spec();
    let dag = ir.root.dag.as_ref().unwrap();
    let mut sibling_outputs = std::collections::BTreeMap::new();
    sibling_outputs.insert(
        "make".to_string(),
        Map::from_iter([("Output".to_string(), json!("claim-7"))]),
    );
    let patch = kfpd_argo::patch::pod_spec_patch(kfpd_argo::patch::Driven {
        spec: ir,
        platform: package.platform(),
        name: "use",
        task: &dag.tasks["use"],
        component: ir.component("comp-use").unwrap(),
        dag,
        dag_inputs: &Map::new(),
        sibling_outputs,
        task_inputs: Map::from_iter([("claim".to_string(), json!("claim-7"))]),
    })
    .expect("patch");
    let volume = patch["volumes"][0]["name"].clone();
    assert_eq!(
        patch["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "claim-7"
    );
    assert_eq!(
        patch["initContainers"],
        json!([{"name": "fetch", "image": "busybox",
            "volumeMounts": [{"name": volume, "mountPath": "/in"}]}])
    );
}
