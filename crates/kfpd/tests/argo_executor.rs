//! `kfpd serve --executor argo` and the persistence agent against a scripted
//! Kubernetes API server (tests/kube: a real HTTP server on 127.0.0.1; there is
//! no cluster here). The test plays Argo's controller: it writes Workflow
//! statuses shaped as Argo writes them (node phases, compressed and offloaded
//! nodes), deletes Workflows, expires watches, and checks what the real server
//! records in its real database.

mod common;
mod kube;

use std::time::{Duration, Instant};

use common::Server;
use kube::{rfc3339, Kube};
use serde_json::{json, Map, Value};

const LIMIT: Duration = Duration::from_secs(60);

fn serve(kube: &Kube, env: &[(&str, &str)], args: &[&str]) -> Server {
    let mut all = vec![
        ("KUBECONFIG", kube.kubeconfig()),
        ("POD_NAMESPACE", "kubeflow"),
        ("KFPD_EXECUTOR", "argo"),
        // Short, but longer than a CreateRun takes: with 0 s an agent listing while
        // a run is being submitted would count it as having no Workflow.
        ("KFPD_AGENT_RECONCILE_GRACE", "2s"),
    ];
    all.extend_from_slice(env);
    Server::start_with_env(args, &all)
}

async fn create_run(server: &Server, pipeline: &str) -> Value {
    let body = json!({
        "display_name": "on argo",
        "pipeline_spec": common::pipeline_spec(pipeline),
    });
    let (status, run) = server.post("/runs", &body).await;
    assert_eq!(status, 200, "{run}");
    run
}

async fn wait_until<T>(
    what: &str,
    server: &Server,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{what}: not within {LIMIT:?}; server stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_state(server: &Server, run_id: &str, state: &str) -> Value {
    wait_until(&format!("run {run_id} {state}"), server, async || {
        let (_, run) = server.get(&format!("/runs/{run_id}")).await;
        (run["state"] == state).then_some(run)
    })
    .await
}

/// The run's Workflow once the server created it: (name, object).
async fn workflow_of(kube: &Kube, server: &Server, run_id: &str) -> (String, Value) {
    wait_until("the run's workflow", server, async || {
        let workflow = kube.of_run(run_id).into_iter().next()?;
        let name = workflow["metadata"]["name"].as_str()?.to_string();
        Some((name, workflow))
    })
    .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A pod node as Argo's controller writes it for a kfpd task template.
fn pod_node(workflow: &str, task: &str, phase: &str, message: &str) -> (String, Value) {
    let id = format!("{workflow}-{}", 1_000_000 + task.len());
    let node = json!({
        "id": id, "name": format!("{workflow}.{task}"), "displayName": task,
        "type": "Pod", "templateName": format!("exec-{task}"),
        "templateScope": format!("local/{workflow}"), "phase": phase,
        "boundaryID": workflow, "message": message,
        "startedAt": rfc3339(now() - 5), "finishedAt": rfc3339(now()),
        "progress": "0/1", "hostNodeName": "node-1",
        "inputs": {"parameters": [{"name": "task-path", "value": format!("root/{task}")}]},
    });
    (id, node)
}

fn dag_node(workflow: &str, phase: &str, children: &[&str]) -> Value {
    json!({
        "id": workflow, "name": workflow, "displayName": workflow, "type": "DAG",
        "templateName": "root", "phase": phase, "children": children,
        "startedAt": rfc3339(now() - 10), "finishedAt": rfc3339(now()), "progress": "0/1",
    })
}

fn status(phase: &str, message: &str, nodes: Map<String, Value>) -> Value {
    let mut status = json!({
        "phase": phase, "startedAt": rfc3339(now() - 10), "progress": "0/1",
        "nodes": nodes,
    });
    if !message.is_empty() {
        status["message"] = json!(message);
    }
    if matches!(phase, "Succeeded" | "Failed" | "Error") {
        status["finishedAt"] = json!(rfc3339(now()));
    }
    status
}

fn nodes(list: Vec<(String, Value)>) -> Map<String, Value> {
    list.into_iter().collect()
}

async fn drive(server: &Server, run_id: &str, task_path: &str) {
    let response = server
        .client
        .post(format!("{}/apis/v2beta1/runs/{run_id}/drive", server.base))
        .json(&json!({"task_path": task_path}))
        .send()
        .await
        .expect("drive");
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn task_of(server: &Server, run_id: &str, display_name: &str) -> Value {
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    run["run_details"]["task_details"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|task| task["display_name"] == display_name)
        .cloned()
        .unwrap_or_else(|| panic!("no task {display_name} in {run}"))
}

#[tokio::test]
async fn create_run_submits_the_compiled_workflow_labelled_with_the_run() {
    let kube = Kube::start().await;
    let server = serve(
        &kube,
        &[("V2_LAUNCHER_IMAGE", "registry.example/kfpd:1.2")],
        &[],
    );
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap();
    assert_eq!(run["state"], "PENDING", "{run}");
    let (_, workflow) = workflow_of(&kube, &server, run_id).await;
    assert_eq!(workflow["metadata"]["namespace"], "kubeflow");
    assert_eq!(workflow["metadata"]["labels"]["pipeline/runid"], run_id);

    // The body sent is the compiler's output for this run with the server's settings.
    let created = kube
        .requests()
        .into_iter()
        .find(|request| request.method == "POST")
        .expect("a create request");
    assert_eq!(created.path, "/namespaces/kubeflow/workflows");
    let bytes = std::fs::read(common::pipeline("hello.yaml")).unwrap();
    let package = kfpd_ir::read_package("hello.yaml", &bytes).unwrap();
    let options = kfpd_argo::Options {
        run_id: Some(run_id.to_string()),
        server_url: "http://ml-pipeline.kubeflow.svc.cluster.local:8888".into(),
        server_grpc: "ml-pipeline.kubeflow.svc.cluster.local:8887".into(),
        kfpd_image: "registry.example/kfpd:1.2".into(),
        artifact_secret: "mlpipeline-minio-artifact".into(),
        ..kfpd_argo::Options::default()
    };
    let expected = serde_json::to_value(kfpd_argo::compile(&package, &options).unwrap()).unwrap();
    assert_eq!(created.body, expected);
    let text = created.body.to_string();
    assert!(text.contains("registry.example/kfpd:1.2"), "{text}");
    assert!(text.contains("\"mlpipeline-minio-artifact\""), "{text}");
    assert!(!text.contains("kfpd-artifacts"), "{text}");

    // The driver's first request moves the run on, as on a cluster.
    drive(&server, run_id, "root").await;
    wait_state(&server, run_id, "RUNNING").await;
}

#[tokio::test]
async fn refused_or_unreachable_submissions_end_the_run_failed_with_kubernetes_message() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[("KFPD_AGENT", "off")], &[]);
    kube.refuse_next_create(
        403,
        "Forbidden",
        "workflows.argoproj.io \"echo-x\" is forbidden: exceeded quota: pods, requested: 1, used: 10, limited: 10",
    );
    let run = create_run(&server, "hello.yaml").await;
    assert_eq!(run["state"], "FAILED", "{run}");
    let error = run["error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("exceeded quota"), "{run}");
    assert!(error.contains("403"), "{run}");

    kube.refuse_next_create(
        400,
        "BadRequest",
        "admission webhook \"validate.policy.example\" denied the request: images must come from registry.example",
    );
    let run = create_run(&server, "hello.yaml").await;
    assert_eq!(run["state"], "FAILED", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admission webhook"),
        "{run}"
    );
    // Stored so, not only answered so.
    let (_, stored) = server
        .get(&format!("/runs/{}", run["run_id"].as_str().unwrap()))
        .await;
    assert_eq!(stored["state"], "FAILED");

    // An API server that does not answer.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let text = std::fs::read_to_string(&kube.kubeconfig)
        .unwrap()
        .replace(&kube.url, &format!("http://{address}"));
    std::fs::write(&kubeconfig, text).unwrap();
    let down = Server::start_with_env(
        &[],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("KFPD_EXECUTOR", "argo"),
        ],
    );
    let run = create_run(&down, "hello.yaml").await;
    assert_eq!(run["state"], "FAILED", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not reachable"),
        "{run}"
    );
}

/// Every run's Workflow has the same `generateName`; the API server's random
/// suffix sometimes repeats one (409 AlreadyExists). The name is drawn again:
/// the run is neither failed nor left without its Workflow, and the earlier
/// run keeps its own.
#[tokio::test]
async fn a_generated_name_already_taken_is_drawn_again() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[("KFPD_AGENT", "off")], &[]);
    let first = create_run(&server, "hello.yaml").await;
    let first_id = first["run_id"].as_str().unwrap().to_string();
    let (first_name, _) = workflow_of(&kube, &server, &first_id).await;

    kube.collide_next_names(2);
    let second = create_run(&server, "hello.yaml").await;
    let second_id = second["run_id"].as_str().unwrap().to_string();
    assert_eq!(second["state"], "PENDING", "{second}");
    let (second_name, _) = workflow_of(&kube, &server, &second_id).await;
    assert_ne!(first_name, second_name);
    assert_eq!(
        kube.of_run(&first_id).len(),
        1,
        "the first run's workflow stays"
    );
    assert_eq!(
        kube.workflows()[&first_name]["metadata"]["labels"]["pipeline/runid"],
        first_id.as_str()
    );
    let creates = kube
        .requests()
        .iter()
        .filter(|request| request.method == "POST")
        .count();
    assert_eq!(creates, 4, "one create, then two refused and one created");
}

#[tokio::test]
async fn the_agent_records_what_argo_writes_failed_pods_compressed_and_offloaded_nodes() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);

    // Running, then a pod Argo failed before the launcher could report.
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, _) = workflow_of(&kube, &server, &run_id).await;
    kube.set_status(&name, status("Running", "", nodes(vec![])));
    wait_state(&server, &run_id, "RUNNING").await;
    drive(&server, &run_id, "root").await;
    drive(&server, &run_id, "root/echo").await;
    let (id, pod) = pod_node(
        &name,
        "echo",
        "Failed",
        "ImagePullBackOff: image alpine:nope not found",
    );
    let mut listed = nodes(vec![(id, pod)]);
    listed.insert(name.clone(), dag_node(&name, "Failed", &[]));
    kube.set_status(&name, status("Failed", "child failed", listed));
    let ended = wait_state(&server, &run_id, "FAILED").await;
    let echo = task_of(&server, &run_id, "echo").await;
    assert_eq!(echo["state"], "FAILED", "{echo}");
    assert!(
        echo["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ImagePullBackOff"),
        "{echo}"
    );
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ImagePullBackOff"),
        "{ended}"
    );
    // Recorded, so labelled: a restarted agent does not report it again.
    wait_until("persisted label", &server, async || {
        (kube.workflows()[&name]["metadata"]["labels"]["pipeline/persistedFinalState"] == "true")
            .then_some(())
    })
    .await;

    // The same Workflow status with compressed nodes.
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, _) = workflow_of(&kube, &server, &run_id).await;
    drive(&server, &run_id, "root").await;
    drive(&server, &run_id, "root/echo").await;
    let (id, pod) = pod_node(&name, "echo", "Error", "pod deleted");
    let mut compressed = status("Error", "pod deleted", nodes(vec![]));
    compressed.as_object_mut().unwrap().remove("nodes");
    compressed["compressedNodes"] = json!(kfpd_cluster::status::compress(&nodes(vec![(id, pod)])));
    kube.set_status(&name, compressed);
    wait_state(&server, &run_id, "FAILED").await;
    let echo = task_of(&server, &run_id, "echo").await;
    assert!(
        echo["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("pod deleted"),
        "{echo}"
    );

    // Offloaded nodes (in Argo's database, which kfpd does not read): the run
    // ends from the Workflow's phase and message.
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, _) = workflow_of(&kube, &server, &run_id).await;
    let mut offloaded = status("Failed", "node ran out of memory", nodes(vec![]));
    offloaded.as_object_mut().unwrap().remove("nodes");
    offloaded["offloadNodeStatusVersion"] = json!("fnv:1234567");
    kube.set_status(&name, offloaded);
    let ended = wait_state(&server, &run_id, "FAILED").await;
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out of memory"),
        "{ended}"
    );
}

#[tokio::test]
async fn watch_restarts_410_gone_and_deleted_workflows_are_survived() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let first = create_run(&server, "hello.yaml").await;
    let first_id = first["run_id"].as_str().unwrap().to_string();
    let (first_name, _) = workflow_of(&kube, &server, &first_id).await;
    kube.set_status(&first_name, status("Running", "", nodes(vec![])));
    wait_state(&server, &first_id, "RUNNING").await;

    // The API server closes the watch: the agent watches again from where it was.
    kube.close_watches();
    kube.set_status(&first_name, status("Succeeded", "", nodes(vec![])));
    wait_state(&server, &first_id, "SUCCEEDED").await;

    // The change happens and its event is compacted away before the agent
    // watches again: 410 Gone, a new list, and the change is seen.
    let second = create_run(&server, "hello.yaml").await;
    let second_id = second["run_id"].as_str().unwrap().to_string();
    let (second_name, _) = workflow_of(&kube, &server, &second_id).await;
    wait_state(&server, &second_id, "PENDING").await;
    let lists_before = list_requests(&kube);
    kube.set_status(
        &second_name,
        status("Failed", "workflow deadline exceeded", nodes(vec![])),
    );
    kube.compact();
    let ended = wait_state(&server, &second_id, "FAILED").await;
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deadline"),
        "{ended}"
    );
    assert!(list_requests(&kube) > lists_before, "a new list after 410");

    // Deleted while running.
    let third = create_run(&server, "hello.yaml").await;
    let third_id = third["run_id"].as_str().unwrap().to_string();
    let (third_name, _) = workflow_of(&kube, &server, &third_id).await;
    kube.set_status(&third_name, status("Running", "", nodes(vec![])));
    wait_state(&server, &third_id, "RUNNING").await;
    kube.remove(&third_name);
    let ended = wait_state(&server, &third_id, "FAILED").await;
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deleted before the run ended"),
        "{ended}"
    );

    // Only Workflows kfpd labelled were ever asked for.
    for request in kube.requests().iter().filter(|r| r.method == "GET") {
        if request.path.ends_with("/workflows") {
            assert_eq!(
                request.query.get("labelSelector").map(String::as_str),
                Some("pipeline/runid")
            );
        }
    }
}

fn list_requests(kube: &Kube) -> usize {
    kube.requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path.ends_with("/workflows") && !r.query.contains_key("watch")
        })
        .count()
}

fn agent(server: &Server, kube: &Kube, env: &[(&str, &str)]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .args(["agent", "--server", &server.base])
        .env("KUBECONFIG", kube.kubeconfig())
        .env("POD_NAMESPACE", "kubeflow")
        .env("KFPD_AGENT_RECONCILE_GRACE", "2s")
        .env("KFPD_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn kfpd agent")
}

#[tokio::test]
async fn a_separate_agent_restarted_mid_run_reconciles_what_happened_meanwhile() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[("KFPD_AGENT", "off")], &[]);
    let mut agent_process = agent(&server, &kube, &[]);
    let finished = create_run(&server, "hello.yaml").await;
    let finished_id = finished["run_id"].as_str().unwrap().to_string();
    let (finished_name, _) = workflow_of(&kube, &server, &finished_id).await;
    let vanished = create_run(&server, "hello.yaml").await;
    let vanished_id = vanished["run_id"].as_str().unwrap().to_string();
    let (vanished_name, _) = workflow_of(&kube, &server, &vanished_id).await;
    kube.set_status(&finished_name, status("Running", "", nodes(vec![])));
    kube.set_status(&vanished_name, status("Running", "", nodes(vec![])));
    wait_state(&server, &finished_id, "RUNNING").await;
    wait_state(&server, &vanished_id, "RUNNING").await;

    // The agent is down while one Workflow succeeds and the other is deleted.
    agent_process.kill().unwrap();
    agent_process.wait().unwrap();
    kube.set_status(&finished_name, status("Succeeded", "", nodes(vec![])));
    kube.remove(&vanished_name);
    kube.compact();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, still) = server.get(&format!("/runs/{finished_id}")).await;
    assert_eq!(
        still["state"], "RUNNING",
        "nothing reports while the agent is down"
    );

    // Older than the reconcile grace when the agent lists again.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut agent_process = agent(&server, &kube, &[]);
    wait_state(&server, &finished_id, "SUCCEEDED").await;
    let ended = wait_state(&server, &vanished_id, "FAILED").await;
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deleted before the run ended"),
        "{ended}"
    );
    // The separate agent reports over REST; the server labels what it recorded.
    wait_until("persisted label", &server, async || {
        (kube.workflows()[&finished_name]["metadata"]["labels"]["pipeline/persistedFinalState"]
            == "true")
            .then_some(())
    })
    .await;
    agent_process.kill().unwrap();
    agent_process.wait().unwrap();
}

#[tokio::test]
async fn terminate_delete_archive_and_ttl_clean_up_workflows_but_keep_runs() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[("KFPD_WORKFLOW_TTL", "1s")], &[]);

    // Terminate: Argo's shutdown, then the Workflow's end makes the run CANCELED.
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, _) = workflow_of(&kube, &server, &run_id).await;
    kube.set_status(&name, status("Running", "", nodes(vec![])));
    wait_state(&server, &run_id, "RUNNING").await;
    drive(&server, &run_id, "root").await;
    drive(&server, &run_id, "root/echo").await;
    let (code, body) = server
        .post(&format!("/runs/{run_id}:terminate"), &json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    wait_state(&server, &run_id, "CANCELING").await;
    let patched = kube
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with(&name))
        .expect("a patch of the workflow");
    assert_eq!(patched.body, json!({"spec": {"shutdown": "Terminate"}}));
    assert_eq!(kube.workflows()[&name]["spec"]["shutdown"], "Terminate");
    kube.set_status(
        &name,
        status("Failed", "Stopped with strategy 'Terminate'", nodes(vec![])),
    );
    wait_state(&server, &run_id, "CANCELED").await;
    // The task whose pod was killed will not report: it ends with the run.
    let echo = task_of(&server, &run_id, "echo").await;
    assert_eq!(echo["state"], "CANCELED", "{echo}");

    // Recorded and past its TTL: deleted from the cluster, kept in the database.
    wait_until("ttl deletion", &server, async || {
        (!kube.workflows().contains_key(&name)).then_some(())
    })
    .await;
    let (code, kept) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!((code, kept["state"].as_str()), (200, Some("CANCELED")));

    // Delete: the Workflow goes with the run.
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, _) = workflow_of(&kube, &server, &run_id).await;
    let (code, body) = server.delete(&format!("/runs/{run_id}")).await;
    assert_eq!(code, 200, "{body}");
    assert!(!kube.workflows().contains_key(&name));

    // Archive: a finished run's Workflow is deleted, the run stays (archived).
    // The first server's agent would delete the Workflows of runs it does not
    // know (the second server's): it goes first.
    drop(server);
    let server_no_ttl = serve(&kube, &[("KFPD_AGENT", "off")], &[]);
    let run = create_run(&server_no_ttl, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, _) = workflow_of(&kube, &server_no_ttl, &run_id).await;
    let (code, body) = server_no_ttl
        .post(&format!("/runs/{run_id}:terminate"), &json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    wait_state(&server_no_ttl, &run_id, "CANCELED").await;
    assert!(kube.workflows().contains_key(&name));
    let (code, body) = server_no_ttl
        .post(&format!("/runs/{run_id}:archive"), &json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(!kube.workflows().contains_key(&name));
    let (_, archived) = server_no_ttl.get(&format!("/runs/{run_id}")).await;
    assert_eq!(archived["storage_state"], "ARCHIVED");
}

/// A Workflow as listed, labelled with `run_id`, created `age` seconds ago.
fn foreign_workflow(name: &str, namespace: &str, run_id: &str, age: i64) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {
            "name": name, "namespace": namespace, "uid": format!("uid-{name}"),
            "creationTimestamp": rfc3339(now() - age),
            "labels": {"pipeline/runid": run_id},
        },
        "spec": {"entrypoint": "root", "templates": [{"name": "root", "dag": {"tasks": []}}]},
        "status": {"phase": "Running", "startedAt": rfc3339(now() - age)},
    })
}

fn deletes_of(kube: &Kube, name: &str) -> usize {
    kube.requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with(&format!("/workflows/{name}")))
        .count()
}

#[tokio::test]
async fn workflows_of_runs_that_do_not_exist_are_deleted_and_logged() {
    // Seen by the agent inside serve: one created long ago goes at once, one
    // created just now once the grace (2 s) has passed.
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (kept, _) = workflow_of(&kube, &server, &run_id).await;
    kube.insert(foreign_workflow(
        "orphan-old",
        "kubeflow",
        "no-such-run",
        3_600,
    ));
    wait_until("the old orphan deleted", &server, async || {
        (!kube.workflows().contains_key("orphan-old")).then_some(())
    })
    .await;
    assert_eq!(deletes_of(&kube, "orphan-old"), 1);
    wait_until("the deletion logged", &server, async || {
        let log = server.stderr();
        (log.contains("deleted the workflow of a run that does not exist")
            && log.contains("orphan-old"))
        .then_some(())
    })
    .await;
    kube.insert(foreign_workflow(
        "orphan-new",
        "kubeflow",
        "no-such-run-either",
        0,
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        kube.workflows().contains_key("orphan-new"),
        "an orphan younger than the grace stays for now"
    );
    wait_until(
        "the new orphan deleted after its grace",
        &server,
        async || (!kube.workflows().contains_key("orphan-new")).then_some(()),
    )
    .await;
    // The run that exists keeps its Workflow.
    assert!(kube.workflows().contains_key(&kept));
    assert_eq!(deletes_of(&kube, &kept), 0);

    // A run deleted while the agent was down: its Workflow (the delete never
    // reached the cluster) is found by the separate agent's first list.
    let kube = Kube::start().await;
    let server = serve(&kube, &[("KFPD_AGENT", "off")], &[]);
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, workflow) = workflow_of(&kube, &server, &run_id).await;
    let (code, body) = server.delete(&format!("/runs/{run_id}")).await;
    assert_eq!(code, 200, "{body}");
    let mut left_behind = workflow;
    left_behind["metadata"]["creationTimestamp"] = json!(rfc3339(now() - 3_600));
    kube.preload([left_behind]);
    let deletes_before = deletes_of(&kube, &name);
    let mut agent_process = agent(&server, &kube, &[]);
    wait_until("the deleted run's workflow deleted", &server, async || {
        (!kube.workflows().contains_key(&name)).then_some(())
    })
    .await;
    assert_eq!(deletes_of(&kube, &name), deletes_before + 1);
    agent_process.kill().unwrap();
    agent_process.wait().unwrap();
}

/// Multi-user mode: a policy making one user admin of three namespaces, the
/// user header trusted from 127.0.0.1.
const MULTI_USER_POLICY: &str = "bindings:\n- namespace: team-a\n  role: admin\n  users: [alice@example.com]\n- namespace: team-b\n  role: admin\n  users: [alice@example.com]\n- namespace: team-c\n  role: admin\n  users: [alice@example.com]\n";

fn serve_multi_user(kube: &Kube, policy_dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Server {
    let policy = policy_dir.path().join("policy.yaml");
    std::fs::write(&policy, MULTI_USER_POLICY).unwrap();
    let policy = policy.display().to_string();
    serve(
        kube,
        env,
        &[
            "--multi-user",
            "true",
            "--policy-file",
            &policy,
            "--trusted-proxies",
            "127.0.0.1/32",
        ],
    )
}

async fn post_as_alice(server: &Server, path: &str, body: &Value) -> Value {
    let response = server
        .client
        .post(format!("{}/apis/v2beta1{path}", server.base))
        .header("kubeflow-userid", "alice@example.com")
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn create_run_in(server: &Server, experiment_id: &str) -> Value {
    let body = json!({
        "display_name": "in a namespace",
        "experiment_id": experiment_id,
        "pipeline_spec": common::pipeline_spec("hello.yaml"),
    });
    post_as_alice(server, "/runs", &body).await
}

async fn experiment_in(server: &Server, namespace: &str) -> String {
    let body = json!({"display_name": format!("work of {namespace}"), "namespace": namespace});
    let experiment = post_as_alice(server, "/experiments", &body).await;
    experiment["experiment_id"].as_str().unwrap().to_string()
}

async fn state_as_alice(server: &Server, run_id: &str) -> Value {
    let response = server
        .client
        .get(format!("{}/apis/v2beta1/runs/{run_id}", server.base))
        .header("kubeflow-userid", "alice@example.com")
        .send()
        .await
        .expect("GET");
    response.json::<Value>().await.unwrap_or_default()["state"].clone()
}

async fn wait_state_as_alice(server: &Server, run_id: &str, state: &str) {
    wait_until(&format!("run {run_id} {state}"), server, async || {
        (state_as_alice(server, run_id).await == state).then_some(())
    })
    .await;
}

#[tokio::test]
async fn runs_go_to_their_namespace_and_the_agent_watches_all_or_a_list() {
    // Multi-user: a run goes to its experiment's namespace; the agent inside
    // serve watches every namespace with one cluster-scoped list and watch.
    let kube = Kube::start().await;
    let policy_dir = tempfile::tempdir().unwrap();
    let server = serve_multi_user(&kube, &policy_dir, &[("KFPD_AGENT_NAMESPACES", "*")]);
    let team_a = experiment_in(&server, "team-a").await;
    let run = create_run_in(&server, &team_a).await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, workflow) = workflow_of(&kube, &server, &run_id).await;
    assert_eq!(workflow["metadata"]["namespace"], "team-a");
    assert!(kube
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path == "/namespaces/team-a/workflows"));
    kube.set_status(&name, status("Succeeded", "", nodes(vec![])));
    wait_state_as_alice(&server, &run_id, "SUCCEEDED").await;
    let watched: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/workflows"))
        .collect();
    assert!(!watched.is_empty());
    for request in &watched {
        assert_eq!(request.path, "/workflows", "cluster-scoped only");
        assert_eq!(
            request.query.get("labelSelector").map(String::as_str),
            Some("pipeline/runid")
        );
    }
    drop(server);

    // An agent given a list watches each namespace in it, and leaves alone the
    // runs of namespaces it does not watch. (In serve: a separate `kfpd agent`
    // has no identity to report with in multi-user mode yet.)
    let kube = Kube::start().await;
    let server = serve_multi_user(
        &kube,
        &policy_dir,
        &[("KFPD_AGENT_NAMESPACES", "team-a,team-b")],
    );
    let mut ids = Vec::new();
    for namespace in ["team-a", "team-b", "team-c"] {
        let experiment = experiment_in(&server, namespace).await;
        let run = create_run_in(&server, &experiment).await;
        let run_id = run["run_id"].as_str().unwrap().to_string();
        let (name, _) = workflow_of(&kube, &server, &run_id).await;
        ids.push((namespace, run_id, name));
    }
    for (_, run_id, name) in &ids[..2] {
        kube.set_status(name, status("Running", "", nodes(vec![])));
        wait_state_as_alice(&server, run_id, "RUNNING").await;
    }
    // Past the grace, and listed again: team-c's run is not taken for gone.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let lists_before = list_requests(&kube);
    kube.compact();
    wait_until("a new list", &server, async || {
        (list_requests(&kube) >= lists_before + 2).then_some(())
    })
    .await;
    kube.set_status(&ids[1].2, status("Succeeded", "", nodes(vec![])));
    wait_state_as_alice(&server, &ids[1].1, "SUCCEEDED").await;
    assert_eq!(state_as_alice(&server, &ids[2].1).await, "PENDING");
    let paths: std::collections::BTreeSet<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/workflows"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        paths.into_iter().collect::<Vec<_>>(),
        [
            "/namespaces/team-a/workflows",
            "/namespaces/team-b/workflows"
        ]
    );
}

#[tokio::test]
async fn recurring_runs_fire_through_the_same_submission() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let body = json!({
        "display_name": "every second",
        "pipeline_spec": common::pipeline_spec("hello.yaml"),
        "trigger": {"periodic_schedule": {"interval_second": "1"}},
        "mode": "ENABLE",
        "max_concurrency": "10",
    });
    let (code, recurring) = server.post("/recurringruns", &body).await;
    assert_eq!(code, 200, "{recurring}");
    let recurring_id = recurring["recurring_run_id"].as_str().unwrap().to_string();
    let fired = wait_until("a fired run's workflow", &server, async || {
        let (_, runs) = server.get("/runs").await;
        let run = runs["runs"]
            .as_array()?
            .iter()
            .find(|run| run["recurring_run_id"] == recurring_id.as_str())?
            .clone();
        let id = run["run_id"].as_str()?.to_string();
        (!kube.of_run(&id).is_empty()).then_some(id)
    })
    .await;
    let (name, _) = workflow_of(&kube, &server, &fired).await;
    kube.set_status(&name, status("Succeeded", "", nodes(vec![])));
    wait_state(&server, &fired, "SUCCEEDED").await;
}

#[tokio::test]
async fn thousands_of_existing_workflows_are_listed_in_pages_and_gc_scheduled() {
    let kube = Kube::start().await;
    // Recorded Workflows of earlier runs, finished long ago.
    let old = rfc3339(now() - 3 * 86_400);
    kube.preload((0..1_200).map(|index| {
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {
                "name": format!("old-{index:05}"), "namespace": "kubeflow",
                "uid": format!("uid-{index}"),
                "labels": {"pipeline/runid": format!("old-run-{index}"),
                           "pipeline/persistedFinalState": "true"},
            },
            "spec": {},
            "status": {"phase": "Succeeded", "finishedAt": old},
        })
    }));
    let server = serve(&kube, &[], &[]);
    // Past the default TTL of a day: deleted, without the runs being reported.
    wait_until("old workflows deleted", &server, async || {
        kube.workflows().is_empty().then_some(())
    })
    .await;
    let pages: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "GET" && r.path.ends_with("/workflows") && !r.query.contains_key("watch")
        })
        .collect();
    assert!(pages.len() >= 3, "{} list requests", pages.len());
    assert_eq!(pages[0].query.get("limit").map(String::as_str), Some("500"));
    assert!(pages[1].query.contains_key("continue"));
    // And the agent went on to watch: a new run is followed.
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (name, _) = workflow_of(&kube, &server, &run_id).await;
    kube.set_status(&name, status("Succeeded", "", nodes(vec![])));
    wait_state(&server, &run_id, "SUCCEEDED").await;
}

#[tokio::test]
async fn the_executor_works_on_postgresql_and_mysql() {
    for kind in ["postgres", "mysql"] {
        let Some(url) = common::database_url(kind).await else {
            continue;
        };
        let kube = Kube::start().await;
        let server = serve(&kube, &[], &["--database-url", &url]);
        let run = create_run(&server, "hello.yaml").await;
        let run_id = run["run_id"].as_str().unwrap().to_string();
        let (name, _) = workflow_of(&kube, &server, &run_id).await;
        drive(&server, &run_id, "root").await;
        drive(&server, &run_id, "root/echo").await;
        let (id, pod) = pod_node(&name, "echo", "Failed", "OOMKilled");
        kube.set_status(&name, status("Failed", "", nodes(vec![(id, pod)])));
        let ended = wait_state(&server, &run_id, "FAILED").await;
        assert!(
            ended["error"]["message"]
                .as_str()
                .unwrap()
                .contains("OOMKilled"),
            "{kind}: {ended}"
        );
    }
}

#[tokio::test]
async fn a_running_tasks_log_streams_from_its_pod_then_from_the_launchers_copy() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    workflow_of(&kube, &server, &run_id).await;
    drive(&server, &run_id, "root").await;
    drive(&server, &run_id, "root/echo").await;

    // The launcher in pod `echo-pod-1` asks for its task: the server notes the pod.
    let grpc = server.grpc.clone().expect("grpc");
    let mut launcher =
        kfpd_api::kfpd_v1::launcher_service_client::LauncherServiceClient::connect(grpc.clone())
            .await
            .expect("connect");
    let task = launcher
        .get_task(kfpd_api::kfpd_v1::GetTaskRequest {
            run_id: run_id.clone(),
            task_path: "root/echo".into(),
            pod_name: "echo-pod-1".into(),
            pod_namespace: "kubeflow".into(),
        })
        .await
        .expect("get task")
        .into_inner();
    kube.set_pod_log("echo-pod-1", "line one from the pod\nline two\n");
    let log_url = format!(
        "{}/apis/v1alpha1/runs/{run_id}/nodes/{}/log",
        server.base, task.task_id
    );
    for follow in ["false", "true"] {
        let response = server
            .client
            .get(format!("{log_url}?follow={follow}"))
            .send()
            .await
            .expect("log");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.text().await.unwrap(),
            "line one from the pod\nline two\n"
        );
    }
    let asked: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| r.path == "/namespaces/kubeflow/pods/echo-pod-1/log")
        .collect();
    assert_eq!(asked.len(), 2);
    assert_eq!(
        asked[0].query.get("container").map(String::as_str),
        Some("main")
    );
    assert_eq!(
        asked[1].query.get("follow").map(String::as_str),
        Some("true")
    );

    // The real launcher runs the command (its output also on its own stdout, which
    // is what the pod log shows), uploads the log and reports; then the pod is gone
    // and the stored copy is served.
    let work = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .args([
            "launcher",
            "--server",
            grpc.trim_start_matches("http://"),
            "--run-id",
            &run_id,
            "--task-path",
            "root/echo",
            "--work-dir",
            work.path().to_str().unwrap(),
        ])
        .env("KFPD_POD_NAME", "echo-pod-1")
        .env("KFPD_NAMESPACE", "kubeflow")
        .env("KFPD_LOG", "warn")
        .output()
        .expect("run the launcher");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("hello world"));
    wait_state(&server, &run_id, "SUCCEEDED").await;
    let stored = server
        .client
        .get(format!("{log_url}?follow=true"))
        .send()
        .await
        .expect("log")
        .text()
        .await
        .unwrap();
    assert_eq!(stored, "hello world\n");
    let asked = kube
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/log"))
        .count();
    assert_eq!(asked, 2, "a finished task's log is not asked of the pod");
}

fn launcher(server: &Server, run_id: &str, task_path: &str) -> std::process::Output {
    let grpc = server.grpc.clone().expect("grpc");
    let work = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .args([
            "launcher",
            "--server",
            grpc.trim_start_matches("http://"),
            "--run-id",
            run_id,
            "--task-path",
            task_path,
            "--work-dir",
            work.path().to_str().unwrap(),
        ])
        .env("KFPD_LOG", "warn")
        .output()
        .expect("run the launcher")
}

async fn drive_answer(server: &Server, run_id: &str, task_path: &str) -> Value {
    server
        .client
        .post(format!("{}/apis/v2beta1/runs/{run_id}/drive", server.base))
        .json(&json!({"task_path": task_path}))
        .send()
        .await
        .expect("drive")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn retry_runs_the_failed_part_in_a_new_workflow() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let run = create_run(&server, "hello.yaml").await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (first, _) = workflow_of(&kube, &server, &run_id).await;
    drive(&server, &run_id, "root").await;
    drive(&server, &run_id, "root/echo").await;
    let (id, pod) = pod_node(&first, "echo", "Failed", "ImagePullBackOff");
    kube.set_status(&first, status("Failed", "", nodes(vec![(id, pod)])));
    wait_state(&server, &run_id, "FAILED").await;

    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    // The old Workflow is gone; a new one carries the run's label.
    assert!(!kube.workflows().contains_key(&first));
    let (second, workflow) = workflow_of(&kube, &server, &run_id).await;
    assert_ne!(first, second);
    // Without a workspace no claim is asked for or mounted.
    assert!(workflow["spec"]["volumes"].is_null(), "{workflow}");
    assert!(
        workflow["spec"]["volumeClaimTemplates"].is_null(),
        "{workflow}"
    );
    assert_eq!(
        claim_requests(&kube).len(),
        0,
        "{:?}",
        claim_requests(&kube)
    );
    let (_, pending) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(pending["state"], "PENDING", "{pending}");
    // Argo runs it again: the failed task is driven and launched afresh.
    drive(&server, &run_id, "root").await;
    let answer = drive_answer(&server, &run_id, "root/echo").await;
    assert_eq!(answer["execute"], "true", "{answer}");
    let output = launcher(&server, &run_id, "root/echo");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_state(&server, &run_id, "SUCCEEDED").await;
    let echo = task_of(&server, &run_id, "echo").await;
    assert_eq!(echo["state"], "SUCCEEDED", "{echo}");
    // A task that succeeded is not run again by a later Workflow of the run.
    let answer = drive_answer(&server, &run_id, "root/echo").await;
    assert_eq!(answer["execute"], "false", "{answer}");
    // Only a finished run can be retried.
    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_ne!(code, 200, "{body}");
}

/// `two-step-artifact.yaml` with a workspace (`pipelineConfig.workspace`), as the
/// SDK sends a package with a platform spec.
async fn create_workspace_run(server: &Server) -> String {
    let body = json!({
        "display_name": "with a workspace",
        "pipeline_spec": {
            "pipeline_spec": common::pipeline_spec("two-step-artifact.yaml"),
            "platform_spec": {"platforms": {"kubernetes": {"pipelineConfig": {
                "workspace": {"size": "1Gi"},
            }}}},
        },
    });
    let (status, run) = server.post("/runs", &body).await;
    assert_eq!(status, 200, "{run}");
    run["run_id"].as_str().unwrap().to_string()
}

/// Plays Argo's controller for a run's Workflow: `write` runs (unless the
/// server skips it), then `read` fails; a Workflow with the workspace claim
/// template records claim `claim` in `status.persistentVolumeClaims`.
async fn fail_read(kube: &Kube, server: &Server, run_id: &str, workflow: &str, claim: &str) {
    drive(server, run_id, "root").await;
    if drive_answer(server, run_id, "root/write").await["execute"] == "true" {
        let output = launcher(server, run_id, "root/write");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drive(server, run_id, "root/read").await;
    let (id, pod) = pod_node(workflow, "read", "Failed", "OOMKilled");
    let mut failed = status("Failed", "", nodes(vec![(id, pod)]));
    // Argo records only the claims it made from templates.
    if !kube.workflows()[workflow]["spec"]["volumeClaimTemplates"].is_null() {
        failed["persistentVolumeClaims"] = json!([{
            "name": "kfp-workspace", "persistentVolumeClaim": {"claimName": claim},
        }]);
    }
    kube.set_status(workflow, failed);
    wait_state(server, run_id, "FAILED").await;
}

/// The new Workflow of a retry (not `old`), once the server created it.
async fn next_workflow(kube: &Kube, server: &Server, run_id: &str, old: &str) -> (String, Value) {
    wait_until("the retry's workflow", server, async || {
        let workflow = kube
            .of_run(run_id)
            .into_iter()
            .find(|workflow| workflow["metadata"]["name"] != old)?;
        Some((workflow["metadata"]["name"].as_str()?.to_string(), workflow))
    })
    .await
}

fn claim_requests(kube: &Kube) -> Vec<kube::Request> {
    kube.requests()
        .into_iter()
        .filter(|request| request.path.contains("/persistentvolumeclaims"))
        .collect()
}

#[tokio::test]
async fn a_retried_run_keeps_its_workspace_claim() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let run_id = create_workspace_run(&server).await;
    let (first, workflow) = workflow_of(&kube, &server, &run_id).await;
    assert_eq!(
        workflow["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "kfp-workspace"
    );
    assert!(workflow["spec"]["volumes"].is_null(), "{workflow}");
    let claim = kube.insert_claim(&first, "kfp-workspace");
    let first_uid = workflow["metadata"]["uid"].clone();
    fail_read(&kube, &server, &run_id, &first, &claim).await;

    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    // The claim was taken off the old Workflow before it was deleted, so the
    // garbage collector left it.
    let requests = kube.requests();
    let released = requests
        .iter()
        .position(|request| {
            request.method == "PATCH"
                && request.path == format!("/namespaces/kubeflow/persistentvolumeclaims/{claim}")
        })
        .expect("a patch of the claim");
    let deleted = requests
        .iter()
        .position(|request| {
            request.method == "DELETE"
                && request.path == format!("/namespaces/kubeflow/workflows/{first}")
        })
        .expect("the old workflow deleted");
    assert!(released < deleted, "{requests:?}");
    let owners = &requests[released].body["metadata"]["ownerReferences"];
    assert_eq!(owners, &json!([]), "{}", requests[released].body);
    assert!(!kube.workflows().contains_key(&first));
    // The new Workflow mounts that claim by name and makes no claim of its own.
    let (second, workflow) = next_workflow(&kube, &server, &run_id, &first).await;
    assert_eq!(
        workflow["spec"]["volumes"],
        json!([{"name": "kfp-workspace", "persistentVolumeClaim": {"claimName": claim}}]),
        "{workflow}"
    );
    assert!(
        workflow["spec"]["volumeClaimTemplates"].is_null(),
        "{workflow}"
    );
    // ... and owns it, so the claim goes when it goes.
    let kept = kube.claims()[&claim].clone();
    let owners = kept["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(owners.len(), 1, "{kept}");
    assert_eq!(owners[0]["name"], second.as_str(), "{kept}");
    assert_eq!(owners[0]["uid"], workflow["metadata"]["uid"], "{kept}");
    assert_ne!(owners[0]["uid"], first_uid);
    assert_eq!(
        kept["metadata"]["labels"]["pipeline/runid"],
        run_id.as_str()
    );
    // The succeeded task is skipped; the failed one runs again, in the same workspace.
    drive(&server, &run_id, "root").await;
    assert_eq!(
        drive_answer(&server, &run_id, "root/write").await["execute"],
        "false"
    );
    assert_eq!(
        drive_answer(&server, &run_id, "root/read").await["execute"],
        "true"
    );

    // A second retry hands the claim from the retry's Workflow to the next one.
    fail_read(&kube, &server, &run_id, &second, &claim).await;
    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    let (third, workflow) = next_workflow(&kube, &server, &run_id, &second).await;
    assert_ne!(third, first);
    assert_eq!(
        workflow["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        claim.as_str()
    );
    let kept = kube.claims()[&claim].clone();
    assert_eq!(
        kept["metadata"]["ownerReferences"][0]["uid"], workflow["metadata"]["uid"],
        "{kept}"
    );

    // Deleting the run deletes its Workflow, and the claim with it.
    let (code, body) = server.delete(&format!("/runs/{run_id}")).await;
    assert_eq!(code, 200, "{body}");
    assert!(kube.of_run(&run_id).is_empty());
    assert!(!kube.claims().contains_key(&claim), "{:?}", kube.claims());
}

#[tokio::test]
async fn a_refused_claim_patch_ends_the_retry_with_the_reason_and_keeps_the_run() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let run_id = create_workspace_run(&server).await;
    let (first, _) = workflow_of(&kube, &server, &run_id).await;
    let claim = kube.insert_claim(&first, "kfp-workspace");
    fail_read(&kube, &server, &run_id, &first, &claim).await;
    let owned = kube.claims()[&claim].clone();

    kube.refuse_next_claim_patch(
        403,
        "Forbidden",
        &format!("persistentvolumeclaims \"{claim}\" is forbidden: User \"system:serviceaccount:kubeflow:ml-pipeline\" cannot patch resource \"persistentvolumeclaims\" in API group \"\" in the namespace \"kubeflow\""),
    );
    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(code, 503, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "retry run {run_id}: the run's workspace cannot be kept"
        )) && message.contains(&format!("volume claim {claim}"))
            && message.contains("cannot patch resource")
            && message.contains("Forbidden, HTTP 403"),
        "{body}"
    );
    // Nothing changed: the run, its tasks, its Workflow and the claim's owner.
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(run["state"], "FAILED", "{run}");
    assert_eq!(
        task_of(&server, &run_id, "write").await["state"],
        "SUCCEEDED"
    );
    assert_eq!(task_of(&server, &run_id, "read").await["state"], "FAILED");
    assert!(kube.workflows().contains_key(&first));
    assert_eq!(kube.of_run(&run_id).len(), 1);
    assert_eq!(
        kube.claims()[&claim]["metadata"]["ownerReferences"],
        owned["metadata"]["ownerReferences"]
    );

    // Once the patch is allowed the same run is retried with its workspace.
    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    let (_, workflow) = next_workflow(&kube, &server, &run_id, &first).await;
    assert_eq!(
        workflow["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        claim.as_str()
    );
}

#[tokio::test]
async fn a_workspace_whose_claim_is_gone_is_not_retried_empty() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let run_id = create_workspace_run(&server).await;
    let (first, _) = workflow_of(&kube, &server, &run_id).await;
    let claim = kube.insert_claim(&first, "kfp-workspace");
    fail_read(&kube, &server, &run_id, &first, &claim).await;
    // The Workflow is deleted (its TTL) and its claim with it.
    kube.remove(&first);
    assert!(kube.claims().is_empty());
    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.to_string()
            .contains("workspace volume claim no longer exists")
            && body.to_string().contains("root/write"),
        "{body}"
    );
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(run["state"], "FAILED", "{run}");
}

#[tokio::test]
async fn a_claim_left_without_an_owner_is_taken_again_and_deleted_with_the_run() {
    let kube = Kube::start().await;
    let server = serve(&kube, &[], &[]);
    let run_id = create_workspace_run(&server).await;
    let (first, _) = workflow_of(&kube, &server, &run_id).await;
    let claim = kube.insert_claim(&first, "kfp-workspace");
    fail_read(&kube, &server, &run_id, &first, &claim).await;

    // The claim is taken off the old Workflow, then the new one is refused.
    kube.refuse_next_create(403, "Forbidden", "exceeded quota: workflows");
    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(code, 503, "{body}");
    wait_state(&server, &run_id, "FAILED").await;
    assert!(kube.of_run(&run_id).is_empty());
    let left = kube.claims()[&claim].clone();
    assert_eq!(left["metadata"]["ownerReferences"], json!([]), "{left}");
    assert_eq!(
        left["metadata"]["labels"]["pipeline/runid"],
        run_id.as_str()
    );

    // The next retry finds it by the run's label (no Workflow names it, and it
    // has no owner to drop); making the new Workflow its owner is refused, and
    // the run goes on without that.
    kube.refuse_next_claim_patch(503, "ServiceUnavailable", "etcd leader changed");
    let (code, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    let (_, workflow) = workflow_of(&kube, &server, &run_id).await;
    assert_eq!(
        workflow["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        claim.as_str()
    );
    let left = kube.claims()[&claim].clone();
    assert_eq!(left["metadata"]["ownerReferences"], json!([]), "{left}");
    // The server's stderr is read by a thread: wait for the line.
    wait_until("the unowned claim logged", &server, async || {
        server
            .stderr()
            .contains("workspace claim left without an owner")
            .then_some(())
    })
    .await;

    // Deleting the run deletes the Workflow and, explicitly, the unowned claim.
    let (code, body) = server.delete(&format!("/runs/{run_id}")).await;
    assert_eq!(code, 200, "{body}");
    assert!(kube.of_run(&run_id).is_empty());
    assert!(claim_requests(&kube)
        .iter()
        .any(|request| request.method == "DELETE"
            && request.path == format!("/namespaces/kubeflow/persistentvolumeclaims/{claim}")));
    assert!(kube.claims().is_empty(), "{:?}", kube.claims());
}
