//! The configuration the Kubernetes manifests give the API server starts the real
//! `kfpd serve`: each overlay is rendered with `kubectl kustomize`, the `ml-pipeline`
//! container's environment is resolved from the rendered ConfigMaps and Secrets as the
//! kubelet would, and kfpd runs with it against the local MariaDB or PostgreSQL and a
//! moto S3 server standing in for the in-cluster services.
//!
//! kubectl is the one on PATH, else the one `scripts/check-manifests` installs
//! (`$KFPD_TOOLS_DIR/kubectl-v1.33/kubectl`); without either the tests skip with a
//! message, except under `CI=true`.

mod common;
mod kube;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde_yaml::Value;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kubectl() -> Option<PathBuf> {
    let works = |path: &PathBuf| {
        Command::new(path)
            .args(["kustomize", "--help"])
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false)
    };
    let on_path = PathBuf::from("kubectl");
    if works(&on_path) {
        return Some(on_path);
    }
    let tools = std::env::var_os("KFPD_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kfpd-tools"))
        })?;
    let installed = tools.join("kubectl-v1.33/kubectl");
    if works(&installed) {
        return Some(installed);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("kubectl is required under CI=true: scripts/check-manifests installs it");
    }
    eprintln!("skipping manifest test: no kubectl; run scripts/check-manifests to install one");
    None
}

/// The rendered objects of `manifests/<overlay>`.
fn render(kubectl: &PathBuf, overlay: &str) -> Vec<Value> {
    let dir = repository().join("manifests").join(overlay);
    let output = Command::new(kubectl)
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        output.status.success(),
        "{overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    text.split("\n---\n")
        .map(|document| serde_yaml::from_str(document).expect("rendered YAML"))
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A Secret's or ConfigMap's key, as the kubelet hands it to a container.
fn data_key(object: &Value, key: &str) -> Option<String> {
    if let Some(value) = text(&object["stringData"][key]) {
        return Some(value);
    }
    let encoded = text(&object["data"][key])?;
    if object["kind"] == "Secret" {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("secret data is base64");
        return Some(String::from_utf8(bytes).expect("utf-8 secret"));
    }
    Some(encoded)
}

/// The environment of container `container` of Deployment `deployment`: `envFrom`
/// first, then `env`, later entries winning, as the kubelet builds it.
fn container_env(objects: &[Value], deployment: &str, container: &str) -> BTreeMap<String, String> {
    let spec = &find(objects, "Deployment", deployment)["spec"]["template"]["spec"];
    let containers = spec["containers"].as_sequence().expect("containers");
    let main = containers
        .iter()
        .find(|candidate| candidate["name"] == container)
        .unwrap_or_else(|| panic!("no container {container}"));
    let mut env = BTreeMap::new();
    for source in main["envFrom"].as_sequence().into_iter().flatten() {
        let map = &source["configMapRef"]["name"];
        let name = text(map).expect("configMapRef name");
        let config = find(objects, "ConfigMap", &name);
        for (key, _) in config["data"].as_mapping().into_iter().flatten() {
            let key = text(key).expect("key");
            if let Some(value) = data_key(config, &key) {
                env.insert(key, value);
            }
        }
    }
    for variable in main["env"].as_sequence().into_iter().flatten() {
        let name = text(&variable["name"]).expect("env name");
        if let Some(value) = text(&variable["value"]) {
            env.insert(name, value);
            continue;
        }
        let from = &variable["valueFrom"];
        if from["fieldRef"]["fieldPath"] == "metadata.namespace" {
            env.insert(name, "kubeflow".into());
            continue;
        }
        let (kind, reference) = if from["configMapKeyRef"].is_mapping() {
            ("ConfigMap", &from["configMapKeyRef"])
        } else {
            ("Secret", &from["secretKeyRef"])
        };
        let object_name = text(&reference["name"]).expect("ref name");
        let key = text(&reference["key"]).expect("ref key");
        let optional = reference["optional"] == true;
        let object = objects.iter().find(|object| {
            object["kind"] == kind && object["metadata"]["name"] == object_name.as_str()
        });
        match object.and_then(|object| data_key(object, &key)) {
            Some(value) => {
                env.insert(name, value);
            }
            None if optional => {}
            None => panic!("{name}: {kind} {object_name} has no key {key}"),
        }
    }
    env
}

/// Points the in-cluster names at what runs here and starts kfpd with the result.
/// `kfpd serve` started with the environment an overlay gives the API server, on
/// the test's database, moto and a scripted Kubernetes API server; `None` where the
/// tools or servers are missing (outside CI).
async fn overlay_server(overlay: &str, kind: &str) -> Option<(common::Server, kube::Kube, String)> {
    let kubectl = kubectl()?;
    let url = common::database_url(kind).await?;
    let moto = moto::moto()?;
    let objects = render(&kubectl, overlay);
    let mut env = container_env(&objects, "ml-pipeline", "ml-pipeline-api-server");
    assert_eq!(
        env.get("V2_LAUNCHER_IMAGE").map(String::as_str),
        Some("ghcr.io/kfpd/kfpd:latest")
    );
    assert_eq!(env.get("KFPD_EXECUTOR").map(String::as_str), Some("argo"));

    let database = url.rsplit('/').next().expect("name").to_string();
    let address = url.rsplit('@').next().unwrap_or_default();
    let (db_host, db_port) = address
        .split('/')
        .next()
        .and_then(|a| a.rsplit_once(':'))
        .expect("host:port");
    let (s3_host, s3_port) = moto
        .endpoint
        .trim_start_matches("http://")
        .rsplit_once(':')
        .expect("host:port");
    let prefix = if kind == "postgres" {
        "DBCONFIG_POSTGRESQLCONFIG_"
    } else {
        "DBCONFIG_MYSQLCONFIG_"
    };
    for (suffix, value) in [
        ("HOST", db_host),
        ("PORT", db_port),
        ("DBNAME", database.as_str()),
    ] {
        let key = format!("{prefix}{suffix}");
        assert!(env.contains_key(&key), "{overlay} sets no {key}");
        env.insert(key, value.to_string());
    }
    if kind == "postgres" {
        // The local server trusts its `postgres` role; the Secret's `user` is the
        // in-cluster PostgreSQL's.
        env.insert(format!("{prefix}USER"), "postgres".into());
    }
    for (key, value) in [
        ("OBJECTSTORECONFIG_HOST", s3_host),
        ("OBJECTSTORECONFIG_PORT", s3_port),
    ] {
        assert!(env.contains_key(key), "{overlay} sets no {key}");
        env.insert(key.to_string(), value.to_string());
    }
    // moto speaks plain HTTP; the external S3 component's endpoint would be https.
    env.insert("OBJECTSTORECONFIG_SECURE".into(), "false".into());
    let bucket = moto::unique_bucket("manifest");
    if env.get("KFPD_CREATE_BUCKET").map(String::as_str) == Some("false") {
        // Made by its owner, as an external store's bucket would be.
        kfpd_artifacts::ArtifactStore::open(moto::s3_options(&moto.endpoint, &bucket, true))
            .await
            .expect("create the bucket");
    }
    env.insert("OBJECTSTORECONFIG_BUCKETNAME".into(), bucket);
    // Loopback ports for the test, and a scripted Kubernetes API server in place
    // of the cluster's (the executor stays the manifests' `argo`).
    env.insert("KFPD_HTTP_ADDR".into(), "127.0.0.1:0".into());
    env.remove("KFPD_GRPC_ADDR");
    env.remove("KFPD_DATA_DIR");
    let cluster = kube::Kube::start().await;
    env.insert("KUBECONFIG".into(), cluster.kubeconfig().to_string());
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = common::Server::start_with_env(&[], &pairs);
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200, "{}", server.stderr());
    Some((server, cluster, url))
}

async fn serves_with_overlay_env(overlay: &str, kind: &str) {
    let Some((server, cluster, url)) = overlay_server(overlay, kind).await else {
        return;
    };
    let (status, body) = server
        .post(
            "/experiments",
            &serde_json::json!({"display_name": "from the manifests"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A run's Workflow goes to POD_NAMESPACE with the manifests' image and Secret.
    let run = serde_json::json!({
        "display_name": "from the manifests",
        "pipeline_spec": common::pipeline_spec("hello.yaml"),
    });
    let (status, run) = server.post("/runs", &run).await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().expect("run_id");
    let workflow = cluster
        .of_run(run_id)
        .pop()
        .unwrap_or_else(|| panic!("no workflow for {run}; {}", server.stderr()));
    assert_eq!(workflow["metadata"]["namespace"], "kubeflow");
    let text = workflow.to_string();
    assert!(text.contains("ghcr.io/kfpd/kfpd:latest"), "{text}");
    assert!(text.contains("\"mlpipeline-minio-artifact\""), "{text}");
    assert!(
        text.contains("ml-pipeline.kubeflow.svc.cluster.local:8887"),
        "{text}"
    );
    drop(server);
    let _ = kfpd_store::sql::drop_database(&url).await;
}

#[tokio::test]
async fn multi_user_overlay_checks_callers_through_the_cluster() {
    let Some((server, cluster, url)) = overlay_server("overlays/multi-user", "mysql").await else {
        return;
    };
    let experiment = serde_json::json!({"display_name": "mine", "namespace": "team-a"});
    // No identity: refused before anything is looked at.
    let (status, body) = server.post("/experiments", &experiment).await;
    assert_eq!(status, 401, "{body}");
    // The user header from the pod's own sidecar (loopback here), allowed by a
    // SubjectAccessReview the scripted cluster answers.
    cluster.allow("alice@example.com", "team-a", "experiments", "create");
    let client = reqwest::Client::new();
    let create = |user: &'static str| {
        client
            .post(server.url("/experiments"))
            .header("kubeflow-userid", user)
            .json(&experiment)
            .send()
    };
    let (status, body) = common::read(create("bob@example.com").await.expect("post")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = common::read(create("alice@example.com").await.expect("post")).await;
    assert_eq!(status, 200, "{body}");
    let reviews = cluster.reviews(kube::ACCESS_REVIEWS);
    assert!(
        reviews
            .iter()
            .any(|review| review["spec"]["user"] == "alice@example.com"
                && review["spec"]["resourceAttributes"]["namespace"] == "team-a"),
        "{reviews:?}"
    );
    // Runs' pods report as their namespace's default-editor: `report` on runs is
    // added to Kubeflow's kubeflow-edit, which profiles bind it to.
    if let Some(kubectl) = kubectl() {
        let objects = render(&kubectl, "overlays/multi-user");
        let role = find(&objects, "ClusterRole", "kfpd-pipelines-report");
        assert_eq!(
            role["metadata"]["labels"]
                ["rbac.authorization.kubeflow.org/aggregate-to-kubeflow-edit"],
            "true"
        );
        assert_eq!(role["rules"][0]["apiGroups"][0], "pipelines.kubeflow.org");
        assert_eq!(role["rules"][0]["resources"][0], "runs");
        assert_eq!(role["rules"][0]["verbs"][0], "report");
        let env = container_env(&objects, "ml-pipeline", "ml-pipeline-api-server");
        assert!(
            !env.contains_key("KFPD_DEFAULT_SERVICE_ACCOUNT")
                && !env.contains_key("DEFAULTPIPELINERUNNERSERVICEACCOUNT"),
            "multi-user mode's own default, default-editor, applies"
        );
    }
    drop(server);
    let _ = kfpd_store::sql::drop_database(&url).await;
}

#[tokio::test]
async fn mysql_overlay_configuration_starts_kfpd() {
    serves_with_overlay_env("overlays/mysql", "mysql").await;
}

#[tokio::test]
async fn postgresql_overlay_configuration_starts_kfpd() {
    serves_with_overlay_env("overlays/postgresql", "postgres").await;
}

#[tokio::test]
async fn external_s3_overlay_configuration_starts_kfpd() {
    serves_with_overlay_env("overlays/external-s3", "mysql").await;
}

#[tokio::test]
async fn split_overlay_scheduler_configuration_starts_kfpd_scheduler() {
    let Some(kubectl) = kubectl() else {
        return;
    };
    let Some(url) = common::database_url("mysql").await else {
        return;
    };
    let objects = render(&kubectl, "overlays/split");
    let server = container_env(&objects, "ml-pipeline", "ml-pipeline-api-server");
    assert_eq!(
        server.get("KFPD_SCHEDULER").map(String::as_str),
        Some("off")
    );
    assert_eq!(server.get("KFPD_AGENT").map(String::as_str), Some("off"));
    let mut env = container_env(&objects, "ml-pipeline-scheduledworkflow", "kfpd");
    let database = url.rsplit('/').next().expect("name").to_string();
    let address = url.rsplit('@').next().unwrap_or_default();
    let (host, port) = address
        .split('/')
        .next()
        .and_then(|a| a.rsplit_once(':'))
        .expect("host:port");
    env.insert("DBCONFIG_MYSQLCONFIG_HOST".into(), host.into());
    env.insert("DBCONFIG_MYSQLCONFIG_PORT".into(), port.into());
    env.insert("DBCONFIG_MYSQLCONFIG_DBNAME".into(), database);
    let dir = tempfile::tempdir().expect("temp dir");
    env.insert("KFPD_DATA_DIR".into(), dir.path().display().to_string());
    let deployment = find(&objects, "Deployment", "ml-pipeline-scheduledworkflow");
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(text)
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .args(&args)
        .env_clear()
        .envs(&env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kfpd scheduler");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = sender.send(line);
        }
    });
    let running = receiver
        .recv_timeout(std::time::Duration::from_secs(30))
        .map(|line| line.contains("kfpd scheduler running"));
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    assert_eq!(
        running,
        Ok(true),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = kfpd_store::sql::drop_database(&url).await;
}

#[tokio::test]
async fn split_overlay_agent_configuration_starts_kfpd_agent() {
    let Some(kubectl) = kubectl() else {
        return;
    };
    let objects = render(&kubectl, "overlays/split");
    let mut env = container_env(&objects, "ml-pipeline-persistenceagent", "kfpd");
    let deployment = find(&objects, "Deployment", "ml-pipeline-persistenceagent");
    // The agent's projected token (audience pipelines.kubeflow.org) where
    // KF_PIPELINES_SA_TOKEN_PATH says; here a file holding a token stands in.
    let pod = &deployment["spec"]["template"]["spec"];
    let token_path = env
        .get("KF_PIPELINES_SA_TOKEN_PATH")
        .cloned()
        .expect("the agent sends its token");
    let mount = &pod["containers"][0]["volumeMounts"][0];
    let volume = &pod["volumes"][0];
    assert_eq!(mount["name"], volume["name"]);
    let source = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(source["audience"], "pipelines.kubeflow.org");
    assert_eq!(
        format!(
            "{}/{}",
            text(&mount["mountPath"]).expect("mount path"),
            text(&source["path"]).expect("token path")
        ),
        token_path
    );
    let token_dir = tempfile::tempdir().expect("temp dir");
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, "agent-token").expect("token");
    env.insert(
        "KF_PIPELINES_SA_TOKEN_PATH".into(),
        token_file.display().to_string(),
    );
    let mut args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(text)
        .collect();
    assert_eq!(args, ["agent", "--server", "http://ml-pipeline:8888"]);
    // The in-cluster Service name points at a server here.
    let server = common::Server::start();
    args[2] = server.base.clone();
    let cluster = kube::Kube::start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .args(&args)
        .env_clear()
        .envs(&env)
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kfpd agent");
    let started = std::time::Instant::now();
    let watching = loop {
        let watched = cluster.requests().iter().any(|request| {
            request.path == "/namespaces/kubeflow/workflows"
                && request.query.get("watch").map(String::as_str) == Some("true")
        });
        if watched || started.elapsed() > std::time::Duration::from_secs(30) {
            break watched;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    assert!(watching, "{}", String::from_utf8_lossy(&output.stderr));
}

/// The verbs `rules` grant on core `resource`.
fn granted(rules: &Value, resource: &str) -> Vec<String> {
    rules
        .as_sequence()
        .expect("rules")
        .iter()
        .filter(|rule| {
            let listed = |key: &str, value: &str| {
                rule[key]
                    .as_sequence()
                    .is_some_and(|items| items.iter().any(|item| item == value))
            };
            listed("apiGroups", "") && listed("resources", resource)
        })
        .flat_map(|rule| rule["verbs"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|verb| text(&verb))
        .collect()
}

/// A retry hands a run's workspace claim from the failed Workflow to the new one
/// (get it, patch its owner) and DeleteRun deletes a claim left unowned (list,
/// delete): the API server's Role, and the ClusterRole of the all-namespaces
/// overlay, allow exactly that on persistentvolumeclaims.
#[test]
fn the_api_server_may_hand_over_workspace_claims() {
    let Some(kubectl) = kubectl() else {
        return;
    };
    for (overlay, kind, name) in [
        ("overlays/mysql", "Role", "ml-pipeline"),
        (
            "overlays/all-namespaces",
            "ClusterRole",
            "ml-pipeline-all-namespaces",
        ),
    ] {
        let objects = render(&kubectl, overlay);
        let mut verbs = granted(
            &find(&objects, kind, name)["rules"],
            "persistentvolumeclaims",
        );
        verbs.sort();
        assert_eq!(
            verbs,
            ["delete", "get", "list", "patch"],
            "{overlay}: {kind} {name}"
        );
    }
}
