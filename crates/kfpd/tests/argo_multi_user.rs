//! Multi-user mode on Argo, through real processes: `kfpd serve --executor argo
//! --multi-user true` reviewing bearer tokens (TokenReview) and checking every
//! access (SubjectAccessReview) against the scripted Kubernetes API server
//! (tests/kube), the run's Workflow submitted into the run's namespace with its
//! service account, and the real `kfpd driver`, `kfpd launcher` and `kfpd agent`
//! sending the service-account token a projected volume would hold (a file here).
//! The scripted cluster lets only team-a's `default-editor` report on team-a's
//! runs, so a pod of team-b gets the answer for a run that does not exist.

mod common;
mod kube;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Server;
use kube::Kube;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);
const ALICE: &str = "alice@example.com";
const TEAM_A_RUNNER: &str = "system:serviceaccount:team-a:default-editor";
const TEAM_B_RUNNER: &str = "system:serviceaccount:team-b:default-editor";
const AGENT: &str = "system:serviceaccount:kubeflow:ml-pipeline-persistenceagent";
const AUDIENCE: &str = "pipelines.kubeflow.org";

/// The cluster: alice may do anything in team-a; each namespace's runner account
/// has a token of the pipelines audience, but only team-a's may report; the agent
/// may read and report on team-a's runs. One more token has the API server's
/// audience only, as a pod's default token would.
async fn cluster() -> Kube {
    let kube = Kube::start().await;
    kube.add_token(
        "token-of-team-a",
        TEAM_A_RUNNER,
        &["system:serviceaccounts", "system:serviceaccounts:team-a"],
        &[AUDIENCE],
    );
    kube.add_token(
        "token-of-team-b",
        TEAM_B_RUNNER,
        &["system:serviceaccounts", "system:serviceaccounts:team-b"],
        &[AUDIENCE],
    );
    kube.add_token(
        "token-of-the-agent",
        AGENT,
        &["system:serviceaccounts"],
        &[AUDIENCE],
    );
    kube.add_token(
        "default-token-of-team-a",
        TEAM_A_RUNNER,
        &["system:serviceaccounts"],
        &["https://kubernetes.default.svc"],
    );
    kube.allow(ALICE, "team-a", "*", "*");
    kube.allow(TEAM_A_RUNNER, "team-a", "runs", "report");
    for verb in ["get", "list", "report"] {
        kube.allow(AGENT, "team-a", "runs", verb);
    }
    kube
}

fn serve(kube: &Kube, env: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("KUBECONFIG", kube.kubeconfig()),
        ("POD_NAMESPACE", "kubeflow"),
        ("KFPD_EXECUTOR", "argo"),
        ("KFPD_AGENT_RECONCILE_GRACE", "2s"),
    ];
    all.extend_from_slice(env);
    Server::start_with_env(
        &[
            "--multi-user",
            "true",
            "--token-review",
            "on",
            "--authorizer",
            "kubernetes",
            "--trusted-proxies",
            "127.0.0.1/32",
        ],
        &all,
    )
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

async fn as_alice(server: &Server, method: reqwest::Method, path: &str, body: &Value) -> Value {
    let mut request = server
        .client
        .request(method, format!("{}/apis/v2beta1{path}", server.base))
        .header("kubeflow-userid", ALICE);
    if !body.is_null() {
        request = request.json(body);
    }
    let (status, body) = common::read(request.send().await.expect("request")).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// A run of hello.yaml (one task, `echo`) in team-a, and its submitted Workflow.
async fn run_in_team_a(kube: &Kube, server: &Server) -> (String, Value) {
    let experiment = as_alice(
        server,
        reqwest::Method::POST,
        "/experiments",
        &json!({"display_name": "team a's", "namespace": "team-a"}),
    )
    .await;
    let run = as_alice(
        server,
        reqwest::Method::POST,
        "/runs",
        &json!({
            "display_name": "as team a",
            "experiment_id": experiment["experiment_id"],
            "pipeline_spec": common::pipeline_spec("hello.yaml"),
        }),
    )
    .await;
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    let workflow = wait_until("the run's workflow", server, async || {
        kube.of_run(&run_id).into_iter().next()
    })
    .await;
    (run_id, workflow)
}

async fn state(server: &Server, run_id: &str) -> Value {
    as_alice(
        server,
        reqwest::Method::GET,
        &format!("/runs/{run_id}"),
        &Value::Null,
    )
    .await["state"]
        .clone()
}

fn token_file(dir: &Path, name: &str, token: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).expect("write token");
    path.display().to_string()
}

/// `kfpd driver` as the driver pod runs it, with `KF_PIPELINES_SA_TOKEN_PATH`
/// set as the compiler sets it (or not at all).
fn driver(server: &Server, run_id: &str, task_path: &str, token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kfpd"));
    command
        .args(["driver", "--server", &server.base, "--run-id", run_id])
        .args(["--task-path", task_path, "--workflow", "hello-abcde"])
        .arg("--pod-spec-patch=false")
        .env_remove("KF_PIPELINES_SA_TOKEN_PATH")
        .env("KFPD_LOG", "warn");
    if let Some(path) = token {
        command.env("KF_PIPELINES_SA_TOKEN_PATH", path);
    }
    command.output().expect("run kfpd driver")
}

fn launcher(server: &Server, run_id: &str, work: &Path, token: Option<&str>) -> Output {
    let grpc = server.grpc.clone().expect("grpc");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kfpd"));
    command
        .args(["launcher", "--server", grpc.trim_start_matches("http://")])
        .args(["--run-id", run_id, "--task-path", "root/echo"])
        .arg("--work-dir")
        .arg(work)
        .env_remove("KF_PIPELINES_SA_TOKEN_PATH")
        .env("KFPD_POD_NAME", "echo-pod")
        .env("KFPD_NAMESPACE", "team-a")
        .env("KFPD_LOG", "warn");
    if let Some(path) = token {
        command.env("KF_PIPELINES_SA_TOKEN_PATH", path);
    }
    command.output().expect("run kfpd launcher")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The user the scripted cluster was asked about in each SubjectAccessReview
/// for `verb` on runs.
fn reviewed_users(kube: &Kube, verb: &str) -> Vec<String> {
    kube.reviews(kube::ACCESS_REVIEWS)
        .into_iter()
        .filter(|review| {
            review["spec"]["resourceAttributes"]["verb"] == verb
                && review["spec"]["resourceAttributes"]["resource"] == "runs"
        })
        .filter_map(|review| review["spec"]["user"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_pods_of_a_namespace_report_with_their_token_and_only_on_its_runs() {
    let kube = cluster().await;
    let server = serve(&kube, &[("KFPD_AGENT", "off")]);
    let (run_id, workflow) = run_in_team_a(&kube, &server).await;

    // Submitted into the run's namespace, as its namespace's runner account, and
    // every pod that calls the server carries the projected token.
    assert_eq!(workflow["metadata"]["namespace"], "team-a");
    assert_eq!(workflow["spec"]["serviceAccountName"], "default-editor");
    let templates = workflow["spec"]["templates"].as_array().expect("templates");
    let driver_template = templates
        .iter()
        .find(|template| template["name"] == "kfpd-driver")
        .expect("driver template");
    assert!(driver_template.get("http").is_none(), "{driver_template}");
    assert_eq!(
        driver_template["container"]["command"],
        json!(["kfpd", "driver"])
    );
    for template in templates
        .iter()
        .filter(|template| template.get("container").is_some())
    {
        let token = template["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|volume| volume["name"] == "kfpd-sa-token")
            .unwrap_or_else(|| panic!("no token volume: {template}"));
        assert_eq!(
            token["projected"]["sources"][0]["serviceAccountToken"],
            json!({"audience": AUDIENCE, "expirationSeconds": 7200, "path": "token"}),
            "{template}"
        );
        assert!(template["container"]["env"]
            .as_array()
            .expect("env")
            .contains(&json!({"name": "KF_PIPELINES_SA_TOKEN_PATH",
                "value": "/var/run/secrets/kubeflow/pipelines/token"})));
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let team_a = token_file(dir.path(), "a", "token-of-team-a");
    let team_b = token_file(dir.path(), "b", "token-of-team-b");
    let default_token = token_file(dir.path(), "default", "default-token-of-team-a");
    let missing = dir.path().join("absent").display().to_string();

    // Without a token: no identity, refused before anything is looked at.
    let output = driver(&server, &run_id, "root", None);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("(401)"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("User identity is empty"),
        "{}",
        stderr(&output)
    );
    // A token of the API server's own audience is not one for kfpd.
    let output = driver(&server, &run_id, "root", Some(&default_token));
    assert!(stderr(&output).contains("(401)"), "{}", stderr(&output));
    // A configured token that is not there is an error of its own; nothing is sent.
    let output = driver(&server, &run_id, "root", Some(&missing));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(&format!(
            "cannot read the service-account token at {missing} (KF_PIPELINES_SA_TOKEN_PATH)"
        )),
        "{}",
        stderr(&output)
    );

    // team-b's pod may not report on team-a's run: the answer is that of a run
    // that does not exist, word for word.
    let other = driver(&server, &run_id, "root", Some(&team_b));
    let guessed_id = "0b6f7a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
    let guessed = driver(&server, guessed_id, "root", Some(&team_b));
    assert!(!other.status.success() && !guessed.status.success());
    assert!(stderr(&other).contains("(404)"), "{}", stderr(&other));
    assert_eq!(
        stderr(&other).replace(&run_id, "ID"),
        stderr(&guessed).replace(guessed_id, "ID")
    );
    assert_eq!(
        state(&server, &run_id).await,
        "PENDING",
        "nothing was driven"
    );

    // team-a's pod drives the run: the root, then its task.
    for path in ["root", "root/echo"] {
        let output = driver(&server, &run_id, path, Some(&team_a));
        assert!(output.status.success(), "{path}: {}", stderr(&output));
        let answer: Value = serde_json::from_slice(&output.stdout).expect("json answer");
        assert_eq!(answer["execute"], "true", "{answer}");
    }
    assert!(reviewed_users(&kube, "report").contains(&TEAM_A_RUNNER.to_string()));
    let reviews = kube.reviews(kube::TOKEN_REVIEWS);
    assert!(reviews
        .iter()
        .all(|review| review["spec"]["audiences"] == json!([AUDIENCE])));

    // The launcher: refused without a token and with team-b's, runs with team-a's.
    let work = tempfile::tempdir().expect("work dir");
    let output = launcher(&server, &run_id, work.path(), None);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Unauthenticated"),
        "{}",
        stderr(&output)
    );
    let output = launcher(&server, &run_id, work.path(), Some(&team_b));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("NotFound"), "{}", stderr(&output));
    let output = launcher(&server, &run_id, work.path(), Some(&missing));
    assert!(
        stderr(&output).contains("cannot read the service-account token"),
        "{}",
        stderr(&output)
    );
    let output = launcher(&server, &run_id, work.path(), Some(&team_a));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("hello world"));
    // Its report (FinishAttempt) ended the task and so the run.
    wait_until("run succeeded", &server, async || {
        (state(&server, &run_id).await == "SUCCEEDED").then_some(())
    })
    .await;
    drop(server);
}

/// `kfpd agent` watching team-a; its log goes to `log`.
fn agent(server: &Server, kube: &Kube, token: Option<&str>, log: &Path) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kfpd"));
    command
        .args(["agent", "--server", &server.base])
        .env("KUBECONFIG", kube.kubeconfig())
        .env("POD_NAMESPACE", "kubeflow")
        .env("KFPD_AGENT_NAMESPACES", "team-a")
        .env("KFPD_AGENT_RECONCILE_GRACE", "2s")
        .env("KFPD_LOG", "warn")
        .env_remove("KF_PIPELINES_SA_TOKEN_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    if let Some(path) = token {
        command.env("KF_PIPELINES_SA_TOKEN_PATH", path);
    }
    command.spawn().expect("spawn kfpd agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_separate_agent_reports_with_its_own_token() {
    let kube = cluster().await;
    let server = serve(&kube, &[("KFPD_AGENT", "off")]);
    let (run_id, workflow) = run_in_team_a(&kube, &server).await;
    let name = workflow["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    kube.set_status(
        &name,
        json!({"phase": "Running", "startedAt": kube::rfc3339(0), "progress": "0/1", "nodes": {}}),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("agent.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // A configured token that is not there: the agent does not start.
    let missing = dir.path().join("absent").display().to_string();
    let mut refused = agent(&server, &kube, Some(&missing), &log);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = refused.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = refused.kill();
            let _ = refused.wait();
            panic!("the agent started without its token: {}", read_log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    assert!(
        read_log().contains(&format!(
            "cannot read the service-account token at {missing}"
        )),
        "{}",
        read_log()
    );

    // Without a token its reports are refused for want of an identity (retried,
    // logged), and the run stays PENDING; the Workflow is left alone.
    let mut without = agent(&server, &kube, None, &log);
    wait_until("a report refused", &server, async || {
        let text = read_log();
        (text.contains("report failed") && text.contains("401")).then_some(())
    })
    .await;
    let _ = without.kill();
    let _ = without.wait();
    assert_eq!(state(&server, &run_id).await, "PENDING");
    assert!(kube.workflows().contains_key(&name));

    // With its token: SubjectAccessReview for its account decides, and the run
    // follows the Workflow.
    let token = token_file(dir.path(), "agent", "token-of-the-agent");
    let mut with = agent(&server, &kube, Some(&token), &log);
    wait_until("run running", &server, async || {
        (state(&server, &run_id).await == "RUNNING").then_some(())
    })
    .await;
    assert!(reviewed_users(&kube, "report").contains(&AGENT.to_string()));
    let _ = with.kill();
    let _ = with.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refused_in_a_namespace_leaves_its_workflows_alone() {
    // A second agent account with a token but no role in team-a: the server must
    // refuse its reports there as forbidden, never answer "no such run", or the
    // agent would take team-a's Workflows for orphans and delete them.
    let kube = cluster().await;
    const STRANGER: &str = "system:serviceaccount:kubeflow:stranger";
    kube.add_token(
        "token-of-a-stranger",
        STRANGER,
        &["system:serviceaccounts"],
        &[AUDIENCE],
    );
    let server = serve(&kube, &[("KFPD_AGENT", "off")]);
    let (run_id, workflow) = run_in_team_a(&kube, &server).await;
    let name = workflow["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    kube.set_status(
        &name,
        json!({"phase": "Running", "startedAt": kube::rfc3339(0), "progress": "0/1", "nodes": {}}),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("agent.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let token = token_file(dir.path(), "stranger", "token-of-a-stranger");
    let mut stranger = agent(&server, &kube, Some(&token), &log);
    // Refused reports, until well past the orphan grace (2 s).
    let started = Instant::now();
    wait_until(
        "refused reports past the grace, or the workflow deleted",
        &server,
        async || {
            let refused = read_log().matches("403").count();
            let past_grace = refused >= 2 && started.elapsed() > Duration::from_secs(5);
            (past_grace || !kube.workflows().contains_key(&name)).then_some(())
        },
    )
    .await;
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(
        kube.workflows().contains_key(&name),
        "the workflow was deleted: {}",
        read_log()
    );
    assert!(!read_log().contains("does not exist"), "{}", read_log());
    assert_eq!(state(&server, &run_id).await, "PENDING");
}
