//! Multi-user mode through the real binary: the user header from a trusted proxy,
//! the policy-file authorizer, two users in two namespaces. Every REST route of
//! `/openapi.json` (the test fails on a route it has no case for) and every gRPC
//! method of the served services (read from the descriptor set) is called across
//! namespaces, with guessed ids, without identity and on the caller's own
//! resources: every cross-namespace access is answered exactly as a missing
//! resource (or 403 for lists and creates in a foreign namespace), every own
//! access is allowed. Runs execute locally, so logs and artifacts are real.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{read, Server};
use kfpd_api::v2beta1 as api;
use prost::Message;
use serde_json::{json, Value};

const HEADER: &str = "kubeflow-userid";

const POLICY: &str = r#"
bindings:
  - namespace: team-a
    role: admin
    users: [alice@example.com]
  - namespace: team-b
    role: admin
    users: [bob@example.com]
  - namespace: team-a
    role: viewer
    users: [carol@example.com]
"#;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";

/// Routes answered without identity.
const OPEN: &[&str] = &[
    "/",
    "/ui/{name}",
    "/apis/v2beta1/healthz",
    "/apis/v1beta1/healthz",
    "/metrics",
    "/openapi.json",
];

fn start() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy file");
    let policy = policy.display().to_string();
    Server::start_in(
        dir,
        &[
            "--executor",
            "local",
            "--multi-user",
            "true",
            "--policy-file",
            &policy,
            "--trusted-proxies",
            "127.0.0.1/32",
        ],
    )
}

/// One user's resources in their namespace.
#[derive(Clone, Debug)]
struct Fixture {
    namespace: String,
    experiment: String,
    pipeline: String,
    pipeline_name: String,
    version: String,
    run: String,
    /// The task that wrote artifact `data` (and has a log).
    node: String,
    artifact: String,
    artifact_uri: String,
    recurring: String,
}

impl Fixture {
    /// The same shape with fresh ids nothing has: what a guesser would send.
    fn guessed(&self) -> Fixture {
        let id = || uuid::Uuid::new_v4().to_string();
        Fixture {
            namespace: self.namespace.clone(),
            experiment: id(),
            pipeline: id(),
            pipeline_name: format!("guess-{}", uuid::Uuid::new_v4().simple()),
            version: id(),
            run: id(),
            node: id(),
            artifact: (rand_artifact_id()).to_string(),
            artifact_uri: String::new(),
            recurring: id(),
        }
    }

    /// (guessed, real) id pairs, to compare a denial with a guess's answer.
    fn ids_of<'a>(&'a self, guessed: &'a Fixture) -> Vec<(&'a str, &'a str)> {
        vec![
            (&guessed.experiment, &self.experiment),
            (&guessed.pipeline, &self.pipeline),
            (&guessed.pipeline_name, &self.pipeline_name),
            (&guessed.version, &self.version),
            (&guessed.run, &self.run),
            (&guessed.node, &self.node),
            (&guessed.artifact, &self.artifact),
            (&guessed.recurring, &self.recurring),
        ]
    }
}

fn rand_artifact_id() -> i64 {
    // Ids are positive below 2^53; this one was never handed out.
    (uuid::Uuid::new_v4().as_u128() % (1u128 << 50)) as i64 + 1
}

async fn call(
    server: &Server,
    user: Option<&str>,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &Body,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = server
        .client
        .request(method, format!("{}{path}", server.base))
        .query(query)
        .timeout(Duration::from_secs(60));
    if let Some(user) = user {
        request = request.header(HEADER, user);
    }
    request = match body {
        Body::None => request,
        Body::Json(value) => request.json(value),
        Body::Package => {
            let bytes = std::fs::read(common::pipeline("two-step-artifact.yaml")).expect("package");
            let part = reqwest::multipart::Part::bytes(bytes).file_name("pipeline.yaml");
            request.multipart(reqwest::multipart::Form::new().part("uploadfile", part))
        }
    };
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let is_stream = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    if is_stream {
        // Only the answer matters; the stream is dropped.
        return (status, Value::Null);
    }
    read(response).await
}

#[derive(Clone, Debug)]
enum Body {
    None,
    Json(Value),
    Package,
}

/// A concrete request for one route against `fx`'s resources.
struct Request {
    path: String,
    query: Vec<(String, String)>,
    body: Body,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The request each documented route gets, or None for a route this test does
/// not know (the test fails then, naming it).
fn request_for(method: &str, template: &str, fx: &Fixture) -> Option<Request> {
    let path = template
        .replace("{experiment_id}", &fx.experiment)
        .replace("{pipeline_version_id}", &fx.version)
        .replace("{pipeline_id}", &fx.pipeline)
        .replace("{recurring_run_id}", &fx.recurring)
        .replace("{run_id}", &fx.run)
        .replace("{node_id}", &fx.node)
        .replace("{artifact_id}", &fx.artifact)
        .replace("{artifact}", "data")
        .replace("{name}", &fx.pipeline_name);
    let ns = || vec![("namespace".to_string(), fx.namespace.clone())];
    let reference = json!({"pipeline_id": fx.pipeline, "pipeline_version_id": fx.version});
    let unreachable = json!({"pipeline_url": "http://127.0.0.1:9/pipeline.yaml"});
    let v2 = template.strip_prefix("/apis/v2beta1").unwrap_or(template);
    let (query, body) = match (method, v2) {
        ("GET", "/experiments" | "/pipelines" | "/recurringruns" | "/runs" | "/runs:watch") => {
            (ns(), Body::None)
        }
        ("GET", "/pipelines/names/{name}") => (ns(), Body::None),
        ("GET", "/artifacts") => (vec![("run_id".into(), fx.run.clone())], Body::None),
        ("POST", "/experiments") => (
            vec![],
            Body::Json(json!({"display_name": unique("exp"), "namespace": fx.namespace})),
        ),
        ("POST", "/pipelines") => (
            vec![],
            Body::Json(json!({"name": unique("pipe"), "namespace": fx.namespace})),
        ),
        ("POST", "/pipelines/create") => (
            vec![],
            Body::Json(json!({
                "pipeline": {"name": unique("pipe"), "namespace": fx.namespace},
                "pipeline_version": {"package_url": unreachable},
            })),
        ),
        ("POST", "/pipelines/upload") => (
            vec![
                ("name".into(), unique("pipe")),
                ("namespace".into(), fx.namespace.clone()),
            ],
            Body::Package,
        ),
        ("POST", "/pipelines/upload_version") => (
            vec![
                ("pipelineid".into(), fx.pipeline.clone()),
                ("name".into(), unique("version")),
            ],
            Body::Package,
        ),
        ("POST", "/pipelines/{pipeline_id}/versions") => (
            vec![],
            Body::Json(json!({"name": unique("version"), "package_url": unreachable})),
        ),
        (
            "PATCH",
            "/pipelines/{pipeline_id}" | "/pipelines/{pipeline_id}/versions/{pipeline_version_id}",
        ) => (
            vec![],
            Body::Json(json!({"display_name": unique("renamed")})),
        ),
        ("DELETE", "/pipelines/{pipeline_id}") => {
            (vec![("cascade".into(), "true".into())], Body::None)
        }
        ("POST", "/runs") => (
            vec![],
            Body::Json(json!({
                "display_name": unique("run"),
                "experiment_id": fx.experiment,
                "pipeline_version_reference": reference,
            })),
        ),
        ("POST", "/recurringruns") => (
            vec![],
            Body::Json(json!({
                "display_name": unique("recurring"),
                "experiment_id": fx.experiment,
                "pipeline_version_reference": reference,
                "trigger": {"periodic_schedule": {"interval_second": 86400}},
                "mode": "DISABLE",
                "max_concurrency": 1,
            })),
        ),
        ("PATCH", "/recurringruns/{recurring_run_id}") => {
            (vec![], Body::Json(json!({"description": "changed"})))
        }
        ("POST", "/runs/{run_id}/drive") => (vec![], Body::Json(json!({"task_path": "write"}))),
        ("POST", _) if template.ends_with("/workflows") => {
            let workflow = json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "metadata": {
                    "name": "wf",
                    "namespace": fx.namespace,
                    "uid": "uid-1",
                    "labels": {"pipeline/runid": fx.run},
                },
                "status": {"phase": "Running"},
            });
            // The body is the Workflow (upstream sends it as a JSON string).
            (vec![], Body::Json(json!(workflow.to_string())))
        }
        ("POST", _) if template.ends_with("/scheduledworkflows") => (vec![], Body::None),
        (
            "GET",
            "/experiments/{experiment_id}"
            | "/pipelines/{pipeline_id}"
            | "/pipelines/{pipeline_id}/versions"
            | "/pipelines/{pipeline_id}/versions/{pipeline_version_id}"
            | "/recurringruns/{recurring_run_id}"
            | "/runs/{run_id}"
            | "/runs/{run_id}/events"
            | "/runs/{run_id}/nodes"
            | "/runs/{run_id}/nodes/{node_id}"
            | "/artifacts/{artifact_id}",
        ) => (vec![], Body::None),
        ("GET", _) if template.ends_with("/log") || template.ends_with(":read") => {
            (vec![], Body::None)
        }
        (
            "DELETE",
            "/experiments/{experiment_id}"
            | "/pipelines/{pipeline_id}/versions/{pipeline_version_id}"
            | "/recurringruns/{recurring_run_id}"
            | "/runs/{run_id}",
        ) => (vec![], Body::None),
        ("POST", _)
            if [
                ":archive",
                ":unarchive",
                ":terminate",
                ":retry",
                ":enable",
                ":disable",
            ]
            .iter()
            .any(|verb| template.ends_with(verb)) =>
        {
            (vec![], Body::None)
        }
        _ => return None,
    };
    Some(Request { path, query, body })
}

/// Routes whose request names a namespace rather than an object: denied with 403.
fn names_a_namespace(method: &str, template: &str) -> bool {
    // A reported Workflow names its namespace (metadata.namespace).
    if method == "POST" && template.ends_with("/workflows") {
        return true;
    }
    let v2 = template.strip_prefix("/apis/v2beta1").unwrap_or(template);
    matches!(
        (method, v2),
        (
            "GET",
            "/experiments" | "/pipelines" | "/recurringruns" | "/runs" | "/runs:watch"
        ) | (
            "POST",
            "/experiments" | "/pipelines" | "/pipelines/create" | "/pipelines/upload"
        )
    )
}

async fn seed(server: &Server, user: &str, namespace: &str) -> Fixture {
    let empty = Body::None;
    let (status, experiment) = call(
        server,
        Some(user),
        "POST",
        "/apis/v2beta1/experiments",
        &[],
        &Body::Json(json!({"display_name": format!("exp of {user}"), "namespace": namespace})),
    )
    .await;
    assert_eq!(status, 200, "{experiment}");
    let pipeline_name = unique("two-step");
    let (status, pipeline) = call(
        server,
        Some(user),
        "POST",
        "/apis/v2beta1/pipelines/upload",
        &[
            ("name".into(), pipeline_name.clone()),
            ("namespace".into(), namespace.into()),
        ],
        &Body::Package,
    )
    .await;
    assert_eq!(status, 200, "{pipeline}");
    let pipeline_id = pipeline["pipeline_id"]
        .as_str()
        .expect("pipeline_id")
        .to_string();
    let (status, versions) = call(
        server,
        Some(user),
        "GET",
        &format!("/apis/v2beta1/pipelines/{pipeline_id}/versions"),
        &[],
        &empty,
    )
    .await;
    assert_eq!(status, 200, "{versions}");
    let version = versions["pipeline_versions"][0]["pipeline_version_id"]
        .as_str()
        .expect("version id")
        .to_string();
    let experiment_id = experiment["experiment_id"].as_str().expect("experiment_id");
    let (status, run) = call(
        server,
        Some(user),
        "POST",
        "/apis/v2beta1/runs",
        &[],
        &Body::Json(json!({
            "display_name": format!("run of {user}"),
            "experiment_id": experiment_id,
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version},
        })),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    let started = Instant::now();
    let run = loop {
        let (_, run) = call(
            server,
            Some(user),
            "GET",
            &format!("/apis/v2beta1/runs/{run_id}"),
            &[],
            &empty,
        )
        .await;
        if run["state"] == "SUCCEEDED" {
            break run;
        }
        assert!(
            !matches!(run["state"].as_str(), Some("FAILED" | "CANCELED")),
            "{run}\n{}",
            server.stderr()
        );
        assert!(started.elapsed() < Duration::from_secs(300), "{run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let node = run["run_details"]["task_details"]
        .as_array()
        .expect("task details")
        .iter()
        .find(|task| task["display_name"] == "write")
        .and_then(|task| task["task_id"].as_str())
        .expect("write task")
        .to_string();
    let (status, artifacts) = call(
        server,
        Some(user),
        "GET",
        "/apis/v2beta1/artifacts",
        &[("run_id".into(), run_id.clone())],
        &empty,
    )
    .await;
    assert_eq!(status, 200, "{artifacts}");
    let artifact = &artifacts["artifacts"][0];
    let (status, recurring) = call(
        server,
        Some(user),
        "POST",
        "/apis/v2beta1/recurringruns",
        &[],
        &Body::Json(json!({
            "display_name": format!("recurring of {user}"),
            "experiment_id": experiment_id,
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version},
            "trigger": {"periodic_schedule": {"interval_second": 86400}},
            "mode": "DISABLE",
            "max_concurrency": 1,
        })),
    )
    .await;
    assert_eq!(status, 200, "{recurring}");
    Fixture {
        namespace: namespace.to_string(),
        experiment: experiment_id.to_string(),
        pipeline: pipeline_id,
        pipeline_name,
        version,
        run: run_id,
        node,
        artifact: artifact["artifact_id"]
            .as_str()
            .expect("artifact id")
            .to_string(),
        artifact_uri: artifact["uri"].as_str().expect("artifact uri").to_string(),
        recurring: recurring["recurring_run_id"]
            .as_str()
            .expect("recurring run id")
            .to_string(),
    }
}

/// The message with every guessed id written as the real one.
fn as_real(message: &str, pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .fold(message.to_string(), |text, (guessed, real)| {
            text.replace(guessed, real)
        })
}

/// The error message in either of the API's error shapes (uploads answer
/// `{error_message, error_details}`).
fn message_of(body: &Value) -> &str {
    body["message"]
        .as_str()
        .or_else(|| body["error_message"].as_str())
        .unwrap_or_default()
}

fn is_denial(status: u16, body: &Value) -> bool {
    let message = message_of(body);
    matches!(status, 401 | 403 | 404) || message.contains("without an access check")
}

#[tokio::test]
async fn every_route_keeps_namespaces_apart() {
    let server = start();
    let (status, health) = call(
        &server,
        None,
        "GET",
        "/apis/v2beta1/healthz",
        &[],
        &Body::None,
    )
    .await;
    assert_eq!((status, &health["multi_user"]), (200, &json!(true)));

    let alice = seed(&server, ALICE, "team-a").await;
    let bob = seed(&server, BOB, "team-b").await;

    // Artifacts and logs of a namespace's runs live under its own prefix.
    let artifacts_root = format!("file://{}/artifacts", server.dir.path().display());
    for fx in [&alice, &bob] {
        let prefix = format!("{artifacts_root}/namespaces/{}/", fx.namespace);
        assert!(
            fx.artifact_uri.starts_with(&prefix),
            "{} not under {prefix}",
            fx.artifact_uri
        );
    }

    let (status, document) = call(&server, None, "GET", "/openapi.json", &[], &Body::None).await;
    assert_eq!(status, 200);
    let mut routes: Vec<(String, String)> = Vec::new();
    for (template, operations) in document["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            routes.push((method.to_ascii_uppercase(), template.clone()));
        }
    }
    let unknown: Vec<String> = routes
        .iter()
        .filter(|(method, template)| {
            !OPEN.contains(&template.as_str()) && request_for(method, template, &alice).is_none()
        })
        .map(|(method, template)| format!("{method} {template}"))
        .collect();
    assert!(unknown.is_empty(), "routes without a case: {unknown:?}");

    let mut cases = 0usize;
    let mut failures: Vec<String> = Vec::new();

    // Open routes answer without identity.
    for (method, template) in routes.iter().filter(|(_, t)| OPEN.contains(&t.as_str())) {
        let path = template.replace("{name}", "probe.js");
        let (status, body) = call(&server, None, method, &path, &[], &Body::None).await;
        cases += 1;
        if status == 401 {
            failures.push(format!("open {method} {template}: {status} {body}"));
        }
    }
    let checked: Vec<&(String, String)> = routes
        .iter()
        .filter(|(_, template)| !OPEN.contains(&template.as_str()))
        .collect();

    // Without identity, and with a user header from an untrusted peer elsewhere
    // (tested below), every other route answers 401.
    for (method, template) in &checked {
        let request = request_for(method, template, &alice).expect("case");
        let (status, body) = call(
            &server,
            None,
            method,
            &request.path,
            &request.query,
            &request.body,
        )
        .await;
        cases += 1;
        if status != 401 || body["code"] != 16 {
            failures.push(format!("anonymous {method} {template}: {status} {body}"));
        }
    }

    // Across namespaces: as the guess of an id nothing has, or 403 for a
    // namespace named outright. Nothing here changes anything.
    for (caller, target) in [(ALICE, &bob), (BOB, &alice)] {
        let guessed = target.guessed();
        let pairs = target.ids_of(&guessed);
        for (method, template) in &checked {
            let request = request_for(method, template, target).expect("case");
            let (status, body) = call(
                &server,
                Some(caller),
                method,
                &request.path,
                &request.query,
                &request.body,
            )
            .await;
            cases += 1;
            if template.ends_with("/scheduledworkflows") {
                // The case sends no ScheduledWorkflow: refused as invalid before
                // anything is looked up, whoever asks (nothing to leak). Access to a
                // real one is checked in the agent's namespace test.
                if status != 400 {
                    failures.push(format!("{caller} {method} {template}: {status} {body}"));
                }
                continue;
            }
            if names_a_namespace(method, template) {
                let is_upload = template.ends_with("/upload");
                if status != 403 || (!is_upload && body["code"] != 7) {
                    failures.push(format!(
                        "{caller} {method} {template}: wanted 403, got {status} {body}"
                    ));
                }
                continue;
            }
            let guess = request_for(method, template, &guessed).expect("case");
            let (guess_status, guess_body) = call(
                &server,
                Some(caller),
                method,
                &guess.path,
                &guess.query,
                &guess.body,
            )
            .await;
            cases += 1;
            let guess_message = as_real(message_of(&guess_body), &pairs);
            if status != 404
                || guess_status != 404
                || message_of(&body) != guess_message
                || body["code"] != guess_body["code"]
            {
                failures.push(format!(
                    "{caller} {method} {template}: denied {status} {body} but a guessed id got {guess_status} {guess_body}"
                ));
            }
        }
    }

    // Nothing of the other namespace changed.
    for (owner, fx) in [(ALICE, &alice), (BOB, &bob)] {
        let (status, run) = call(
            &server,
            Some(owner),
            "GET",
            &format!("/apis/v2beta1/runs/{}", fx.run),
            &[],
            &Body::None,
        )
        .await;
        assert_eq!(
            (status, &run["storage_state"]),
            (200, &json!("AVAILABLE")),
            "{run}"
        );
        let (status, recurring) = call(
            &server,
            Some(owner),
            "GET",
            &format!("/apis/v2beta1/recurringruns/{}", fx.recurring),
            &[],
            &Body::None,
        )
        .await;
        assert_eq!(
            (status, &recurring["status"]),
            (200, &json!("DISABLED")),
            "{recurring}"
        );
    }

    // Lists show the caller's namespace only.
    let (_, runs) = call(
        &server,
        Some(ALICE),
        "GET",
        "/apis/v2beta1/runs",
        &[("namespace".into(), "team-a".into())],
        &Body::None,
    )
    .await;
    let listed: BTreeSet<&str> = runs["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|run| run["run_id"].as_str())
        .collect();
    assert!(
        listed.contains(alice.run.as_str()) && !listed.contains(bob.run.as_str()),
        "{runs}"
    );

    // A viewer of team-a sees alice's run but may not change it: 403, since
    // the run's existence is no secret to them.
    let viewer_cases = [
        ("GET", format!("/apis/v2beta1/runs/{}", alice.run), 200),
        (
            "GET",
            format!("/apis/v1alpha1/runs/{}/nodes/{}/log", alice.run, alice.node),
            200,
        ),
        ("DELETE", format!("/apis/v2beta1/runs/{}", alice.run), 403),
        (
            "POST",
            format!("/apis/v2beta1/experiments/{}:archive", alice.experiment),
            403,
        ),
        ("GET", format!("/apis/v2beta1/runs/{}", bob.run), 404),
    ];
    for (method, path, expected) in &viewer_cases {
        let (status, body) = call(&server, Some(CAROL), method, path, &[], &Body::None).await;
        cases += 1;
        if status != *expected {
            failures.push(format!(
                "viewer {method} {path}: wanted {expected}, got {status} {body}"
            ));
        }
    }

    // Own resources: every route allowed. Reads first, then changes, deletes last
    // (longest path first, so versions go before their pipeline).
    let mut own: Vec<&(String, String)> = checked.clone();
    own.sort_by_key(|(method, template)| {
        let rank = match method.as_str() {
            "GET" => 0,
            "DELETE" => 2,
            _ => 1,
        };
        let order = if rank == 2 {
            usize::MAX - template.len()
        } else {
            0
        };
        (rank, order, template.clone())
    });
    for (owner, fx) in [(ALICE, &alice), (BOB, &bob)] {
        for (method, template) in &own {
            let request = request_for(method, template, fx).expect("case");
            let (status, body) = call(
                &server,
                Some(owner),
                method,
                &request.path,
                &request.query,
                &request.body,
            )
            .await;
            cases += 1;
            let wrong = if method == "GET" {
                status != 200
            } else {
                is_denial(status, &body)
            };
            if wrong && !template.ends_with("/scheduledworkflows") {
                failures.push(format!("own {owner} {method} {template}: {status} {body}"));
            }
        }
    }

    println!(
        "multi-user matrix: {} REST routes ({} open, {} checked), {cases} REST cases",
        routes.len(),
        routes.len() - checked.len(),
        checked.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_user_header_counts_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy file");
    let policy = policy.display().to_string();
    let server = Server::start_in(
        dir,
        &[
            "--multi-user",
            "true",
            "--policy-file",
            &policy,
            "--trusted-proxies",
            "10.1.2.3",
        ],
    );
    let (status, body) = call(
        &server,
        Some(ALICE),
        "GET",
        "/apis/v2beta1/experiments",
        &[("namespace".into(), "team-a".into())],
        &Body::None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("trusted proxy") && message.contains("127.0.0.1"),
        "{message}"
    );
}

#[tokio::test]
async fn lists_and_creates_need_a_namespace_with_upstreams_words() {
    let server = start();
    let cases = [
        (
            "GET",
            "/apis/v2beta1/experiments",
            Body::None,
            "An experiment cannot have an empty namespace in multi-user mode",
        ),
        (
            "POST",
            "/apis/v2beta1/experiments",
            Body::Json(json!({"display_name": "x"})),
            "An experiment cannot have an empty namespace in multi-user mode",
        ),
        (
            "GET",
            "/apis/v2beta1/runs",
            Body::None,
            "A run cannot have an empty namespace in multi-user mode",
        ),
        (
            "GET",
            "/apis/v2beta1/recurringruns",
            Body::None,
            "a recurring run cannot have an empty namespace in multi-user mode",
        ),
        (
            "POST",
            "/apis/v2beta1/runs",
            Body::Json(
                json!({"display_name": "x", "pipeline_spec": common::pipeline_spec("hello.yaml")}),
            ),
            "Experiment id can not be empty in multi-user mode",
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = call(&server, Some(ALICE), method, path, &[], &body).await;
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert_eq!(answer["message"], expected, "{method} {path}");
    }
    let (status, answer) = call(
        &server,
        Some(ALICE),
        "POST",
        "/apis/v2beta1/experiments",
        &[],
        &Body::Json(json!({"display_name": "x", "namespace": "../team-b"})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not a valid namespace name"),
        "{answer}"
    );
}

/// gRPC: every method of the served services, across namespaces, without identity.
#[tokio::test]
async fn every_grpc_method_keeps_namespaces_apart() {
    let server = start();
    let alice = seed(&server, ALICE, "team-a").await;
    let bob = seed(&server, BOB, "team-b").await;
    let address = server.grpc.clone().expect("grpc address");
    let channel = tonic::transport::Channel::from_shared(address)
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    let methods = served_methods();
    let known: BTreeSet<&str> = GRPC_CASES.iter().map(|(name, _)| *name).collect();
    let missing: Vec<&String> = methods
        .iter()
        .filter(|m| !known.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "gRPC methods without a case: {missing:?}"
    );

    let mut cases = 0usize;
    let mut failures = Vec::new();
    for (method, kind) in GRPC_CASES {
        let (code, message) = grpc_call(&channel, method, &bob, None).await;
        cases += 1;
        if code != tonic::Code::Unauthenticated && *kind != GrpcKind::Invalid {
            failures.push(format!("anonymous {method}: {code:?} {message}"));
        }
        let (code, message) = grpc_call(&channel, method, &bob, Some(ALICE)).await;
        cases += 1;
        match kind {
            GrpcKind::Invalid => {
                if code != tonic::Code::InvalidArgument {
                    failures.push(format!("{method}: {code:?} {message}"));
                }
            }
            GrpcKind::Namespace => {
                if code != tonic::Code::PermissionDenied {
                    failures.push(format!(
                        "{method}: wanted PERMISSION_DENIED, got {code:?} {message}"
                    ));
                }
            }
            GrpcKind::Object => {
                let guessed = bob.guessed();
                let (guess_code, guess_message) =
                    grpc_call(&channel, method, &guessed, Some(ALICE)).await;
                cases += 1;
                let guess_message = as_real(&guess_message, &bob.ids_of(&guessed));
                if code != tonic::Code::NotFound
                    || guess_code != tonic::Code::NotFound
                    || message != guess_message
                {
                    failures.push(format!("{method}: denied {code:?} {message:?}, guessed {guess_code:?} {guess_message:?}"));
                }
            }
        }
    }
    // Own reads go through.
    for method in [
        "kubeflow.pipelines.backend.api.v2beta1.RunService/GetRun",
        "kubeflow.pipelines.backend.api.v2beta1.RunService/ListRuns",
        "kubeflow.pipelines.backend.api.v2beta1.ExperimentService/GetExperiment",
        "kubeflow.pipelines.backend.api.v2beta1.ExperimentService/ListExperiments",
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/GetPipeline",
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/ListPipelineVersions",
        "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService/GetRecurringRun",
        "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService/ListRecurringRuns",
    ] {
        let (code, message) = grpc_call(&channel, method, &alice, Some(ALICE)).await;
        cases += 1;
        if code != tonic::Code::Ok {
            failures.push(format!("own {method}: {code:?} {message}"));
        }
    }
    println!(
        "multi-user matrix: {} gRPC methods, {cases} gRPC cases",
        methods.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum GrpcKind {
    /// Names an object: denied as not found.
    Object,
    /// Names a namespace: PERMISSION_DENIED.
    Namespace,
    /// Sent without its object: INVALID_ARGUMENT to every identified caller,
    /// before anything is looked up.
    Invalid,
}

const P: &str = "kubeflow.pipelines.backend.api.v2beta1";

const GRPC_CASES: &[(&str, GrpcKind)] = &[
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/CreatePipeline",
        GrpcKind::Namespace,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/GetPipeline",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/GetPipelineByName",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/ListPipelines",
        GrpcKind::Namespace,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/DeletePipeline",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/CreatePipelineAndVersion",
        GrpcKind::Namespace,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/CreatePipelineVersion",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/GetPipelineVersion",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/ListPipelineVersions",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/DeletePipelineVersion",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/UpdatePipeline",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.PipelineService/UpdatePipelineVersion",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.ExperimentService/CreateExperiment",
        GrpcKind::Namespace,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.ExperimentService/GetExperiment",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.ExperimentService/ListExperiments",
        GrpcKind::Namespace,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.ExperimentService/ArchiveExperiment",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.ExperimentService/UnarchiveExperiment",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.ExperimentService/DeleteExperiment",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RunService/CreateRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RunService/GetRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RunService/ListRuns",
        GrpcKind::Namespace,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RunService/ArchiveRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RunService/UnarchiveRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RunService/DeleteRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RunService/TerminateRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RunService/RetryRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService/CreateRecurringRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService/GetRecurringRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService/ListRecurringRuns",
        GrpcKind::Namespace,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService/EnableRecurringRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService/DisableRecurringRun",
        GrpcKind::Object,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.RecurringRunService/DeleteRecurringRun",
        GrpcKind::Object,
    ),
    // A reported Workflow names its namespace.
    (
        "kubeflow.pipelines.backend.api.v2beta1.ReportService/ReportWorkflow",
        GrpcKind::Namespace,
    ),
    (
        "kubeflow.pipelines.backend.api.v2beta1.ReportService/ReportScheduledWorkflow",
        GrpcKind::Invalid,
    ),
    ("api.ReportService/ReportWorkflowV1", GrpcKind::Namespace),
    (
        "api.ReportService/ReportScheduledWorkflowV1",
        GrpcKind::Invalid,
    ),
    ("kfpd.v1.LauncherService/GetTask", GrpcKind::Object),
    ("kfpd.v1.LauncherService/FinishAttempt", GrpcKind::Object),
];

/// `Service/Method` of every method of the services kfpd serves, from the
/// descriptor set the server's reflection publishes.
fn served_methods() -> Vec<String> {
    let served = [
        format!("{P}.PipelineService"),
        format!("{P}.ExperimentService"),
        format!("{P}.RunService"),
        format!("{P}.RecurringRunService"),
        format!("{P}.ReportService"),
        "api.ReportService".to_string(),
        "kfpd.v1.LauncherService".to_string(),
    ];
    let set = prost_types::FileDescriptorSet::decode(kfpd_api::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut methods = Vec::new();
    for file in set.file {
        let package = file.package.clone().unwrap_or_default();
        for service in &file.service {
            let name = format!("{package}.{}", service.name.clone().unwrap_or_default());
            if !served.contains(&name) {
                continue;
            }
            for method in &service.method {
                methods.push(format!(
                    "{name}/{}",
                    method.name.clone().unwrap_or_default()
                ));
            }
        }
    }
    methods.sort();
    methods
}

fn with_user<T>(message: T, user: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(user) = user {
        request
            .metadata_mut()
            .insert(HEADER, user.parse().expect("metadata value"));
    }
    request
}

fn outcome<T>(result: Result<tonic::Response<T>, tonic::Status>) -> (tonic::Code, String) {
    match result {
        Ok(_) => (tonic::Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_string()),
    }
}

fn workflow_json(fx: &Fixture) -> String {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": "wf",
            "namespace": fx.namespace,
            "uid": "uid-1",
            "labels": {"pipeline/runid": fx.run},
        },
        "status": {"phase": "Running"},
    })
    .to_string()
}

#[allow(deprecated)]
async fn grpc_call(
    channel: &tonic::transport::Channel,
    method: &str,
    fx: &Fixture,
    user: Option<&str>,
) -> (tonic::Code, String) {
    use api::experiment_service_client::ExperimentServiceClient;
    use api::pipeline_service_client::PipelineServiceClient;
    use api::recurring_run_service_client::RecurringRunServiceClient;
    use api::report_service_client::ReportServiceClient;
    use api::run_service_client::RunServiceClient;
    let mut pipelines = PipelineServiceClient::new(channel.clone());
    let mut experiments = ExperimentServiceClient::new(channel.clone());
    let mut runs = RunServiceClient::new(channel.clone());
    let mut recurring = RecurringRunServiceClient::new(channel.clone());
    let mut report = ReportServiceClient::new(channel.clone());
    let mut report_v1 =
        kfpd_api::v1beta1::report_service_client::ReportServiceClient::new(channel.clone());
    let mut launcher =
        kfpd_api::kfpd_v1::launcher_service_client::LauncherServiceClient::new(channel.clone());
    let reference = || api::PipelineVersionReference {
        pipeline_id: fx.pipeline.clone(),
        pipeline_version_id: fx.version.clone(),
    };
    let name = method.rsplit('/').next().unwrap_or_default();
    let service = method.split('/').next().unwrap_or_default();
    match (service, name) {
        (_, "CreatePipeline") => outcome(
            pipelines
                .create_pipeline(with_user(
                    api::CreatePipelineRequest {
                        pipeline: Some(api::Pipeline {
                            name: unique("p"),
                            namespace: fx.namespace.clone(),
                            ..Default::default()
                        }),
                    },
                    user,
                ))
                .await,
        ),
        (_, "GetPipeline") => outcome(
            pipelines
                .get_pipeline(with_user(
                    api::GetPipelineRequest {
                        pipeline_id: fx.pipeline.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "GetPipelineByName") => outcome(
            pipelines
                .get_pipeline_by_name(with_user(
                    api::GetPipelineByNameRequest {
                        namespace: fx.namespace.clone(),
                        name: fx.pipeline_name.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "ListPipelines") => outcome(
            pipelines
                .list_pipelines(with_user(
                    api::ListPipelinesRequest {
                        namespace: fx.namespace.clone(),
                        ..Default::default()
                    },
                    user,
                ))
                .await,
        ),
        (_, "DeletePipeline") => outcome(
            pipelines
                .delete_pipeline(with_user(
                    api::DeletePipelineRequest {
                        pipeline_id: fx.pipeline.clone(),
                        cascade: true,
                    },
                    user,
                ))
                .await,
        ),
        (_, "CreatePipelineAndVersion") => outcome(
            pipelines
                .create_pipeline_and_version(with_user(
                    api::CreatePipelineAndVersionRequest {
                        pipeline: Some(api::Pipeline {
                            name: unique("p"),
                            namespace: fx.namespace.clone(),
                            ..Default::default()
                        }),
                        pipeline_version: Some(api::PipelineVersion {
                            package_url: Some(api::Url {
                                pipeline_url: "http://127.0.0.1:9/p.yaml".into(),
                            }),
                            ..Default::default()
                        }),
                    },
                    user,
                ))
                .await,
        ),
        (_, "CreatePipelineVersion") => outcome(
            pipelines
                .create_pipeline_version(with_user(
                    api::CreatePipelineVersionRequest {
                        pipeline_id: fx.pipeline.clone(),
                        pipeline_version: Some(api::PipelineVersion {
                            name: unique("v"),
                            package_url: Some(api::Url {
                                pipeline_url: "http://127.0.0.1:9/p.yaml".into(),
                            }),
                            ..Default::default()
                        }),
                    },
                    user,
                ))
                .await,
        ),
        (_, "GetPipelineVersion") => outcome(
            pipelines
                .get_pipeline_version(with_user(
                    api::GetPipelineVersionRequest {
                        pipeline_id: fx.pipeline.clone(),
                        pipeline_version_id: fx.version.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "ListPipelineVersions") => outcome(
            pipelines
                .list_pipeline_versions(with_user(
                    api::ListPipelineVersionsRequest {
                        pipeline_id: fx.pipeline.clone(),
                        ..Default::default()
                    },
                    user,
                ))
                .await,
        ),
        (_, "DeletePipelineVersion") => outcome(
            pipelines
                .delete_pipeline_version(with_user(
                    api::DeletePipelineVersionRequest {
                        pipeline_id: fx.pipeline.clone(),
                        pipeline_version_id: fx.version.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "UpdatePipeline") => outcome(
            pipelines
                .update_pipeline(with_user(
                    api::UpdatePipelineRequest {
                        pipeline: Some(api::Pipeline {
                            pipeline_id: fx.pipeline.clone(),
                            display_name: unique("d"),
                            ..Default::default()
                        }),
                    },
                    user,
                ))
                .await,
        ),
        (_, "UpdatePipelineVersion") => outcome(
            pipelines
                .update_pipeline_version(with_user(
                    api::UpdatePipelineVersionRequest {
                        pipeline_version: Some(api::PipelineVersion {
                            pipeline_id: fx.pipeline.clone(),
                            pipeline_version_id: fx.version.clone(),
                            display_name: unique("d"),
                            ..Default::default()
                        }),
                    },
                    user,
                ))
                .await,
        ),
        (_, "CreateExperiment") => outcome(
            experiments
                .create_experiment(with_user(
                    api::CreateExperimentRequest {
                        experiment: Some(api::Experiment {
                            display_name: unique("e"),
                            namespace: fx.namespace.clone(),
                            ..Default::default()
                        }),
                    },
                    user,
                ))
                .await,
        ),
        (_, "GetExperiment") => outcome(
            experiments
                .get_experiment(with_user(
                    api::GetExperimentRequest {
                        experiment_id: fx.experiment.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "ListExperiments") => outcome(
            experiments
                .list_experiments(with_user(
                    api::ListExperimentsRequest {
                        namespace: fx.namespace.clone(),
                        ..Default::default()
                    },
                    user,
                ))
                .await,
        ),
        (_, "ArchiveExperiment") => outcome(
            experiments
                .archive_experiment(with_user(
                    api::ArchiveExperimentRequest {
                        experiment_id: fx.experiment.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "UnarchiveExperiment") => outcome(
            experiments
                .unarchive_experiment(with_user(
                    api::UnarchiveExperimentRequest {
                        experiment_id: fx.experiment.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "DeleteExperiment") => outcome(
            experiments
                .delete_experiment(with_user(
                    api::DeleteExperimentRequest {
                        experiment_id: fx.experiment.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "CreateRun") => outcome(
            runs.create_run(with_user(
                api::CreateRunRequest {
                    run: Some(api::Run {
                        display_name: unique("r"),
                        experiment_id: fx.experiment.clone(),
                        pipeline_source: Some(api::run::PipelineSource::PipelineVersionReference(
                            reference(),
                        )),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                user,
            ))
            .await,
        ),
        (_, "GetRun") => outcome(
            runs.get_run(with_user(
                api::GetRunRequest {
                    run_id: fx.run.clone(),
                    ..Default::default()
                },
                user,
            ))
            .await,
        ),
        (_, "ListRuns") => outcome(
            runs.list_runs(with_user(
                api::ListRunsRequest {
                    namespace: fx.namespace.clone(),
                    ..Default::default()
                },
                user,
            ))
            .await,
        ),
        (_, "ArchiveRun") => outcome(
            runs.archive_run(with_user(
                api::ArchiveRunRequest {
                    run_id: fx.run.clone(),
                    ..Default::default()
                },
                user,
            ))
            .await,
        ),
        (_, "UnarchiveRun") => outcome(
            runs.unarchive_run(with_user(
                api::UnarchiveRunRequest {
                    run_id: fx.run.clone(),
                    ..Default::default()
                },
                user,
            ))
            .await,
        ),
        (_, "DeleteRun") => outcome(
            runs.delete_run(with_user(
                api::DeleteRunRequest {
                    run_id: fx.run.clone(),
                    ..Default::default()
                },
                user,
            ))
            .await,
        ),
        (_, "TerminateRun") => outcome(
            runs.terminate_run(with_user(
                api::TerminateRunRequest {
                    run_id: fx.run.clone(),
                    ..Default::default()
                },
                user,
            ))
            .await,
        ),
        (_, "RetryRun") => outcome(
            runs.retry_run(with_user(
                api::RetryRunRequest {
                    run_id: fx.run.clone(),
                    ..Default::default()
                },
                user,
            ))
            .await,
        ),
        (_, "CreateRecurringRun") => outcome(
            recurring
                .create_recurring_run(with_user(
                    api::CreateRecurringRunRequest {
                        recurring_run: Some(api::RecurringRun {
                            display_name: unique("rr"),
                            experiment_id: fx.experiment.clone(),
                            max_concurrency: 1,
                            mode: api::recurring_run::Mode::Disable as i32,
                            trigger: Some(api::Trigger {
                                trigger: Some(api::trigger::Trigger::PeriodicSchedule(
                                    api::PeriodicSchedule {
                                        interval_second: 86400,
                                        ..Default::default()
                                    },
                                )),
                            }),
                            pipeline_source: Some(
                                api::recurring_run::PipelineSource::PipelineVersionReference(
                                    reference(),
                                ),
                            ),
                            ..Default::default()
                        }),
                    },
                    user,
                ))
                .await,
        ),
        (_, "GetRecurringRun") => outcome(
            recurring
                .get_recurring_run(with_user(
                    api::GetRecurringRunRequest {
                        recurring_run_id: fx.recurring.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "ListRecurringRuns") => outcome(
            recurring
                .list_recurring_runs(with_user(
                    api::ListRecurringRunsRequest {
                        namespace: fx.namespace.clone(),
                        ..Default::default()
                    },
                    user,
                ))
                .await,
        ),
        (_, "EnableRecurringRun") => outcome(
            recurring
                .enable_recurring_run(with_user(
                    api::EnableRecurringRunRequest {
                        recurring_run_id: fx.recurring.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "DisableRecurringRun") => outcome(
            recurring
                .disable_recurring_run(with_user(
                    api::DisableRecurringRunRequest {
                        recurring_run_id: fx.recurring.clone(),
                    },
                    user,
                ))
                .await,
        ),
        (_, "DeleteRecurringRun") => outcome(
            recurring
                .delete_recurring_run(with_user(
                    api::DeleteRecurringRunRequest {
                        recurring_run_id: fx.recurring.clone(),
                        ..Default::default()
                    },
                    user,
                ))
                .await,
        ),
        (_, "ReportWorkflow") => outcome(
            report
                .report_workflow(with_user(
                    api::ReportWorkflowRequest {
                        workflow: workflow_json(fx),
                    },
                    user,
                ))
                .await,
        ),
        (_, "ReportScheduledWorkflow") => outcome(
            report
                .report_scheduled_workflow(with_user(
                    api::ReportScheduledWorkflowRequest::default(),
                    user,
                ))
                .await,
        ),
        (_, "ReportWorkflowV1") => outcome(
            report_v1
                .report_workflow_v1(with_user(
                    kfpd_api::v1beta1::ReportWorkflowRequest {
                        workflow: workflow_json(fx),
                    },
                    user,
                ))
                .await,
        ),
        (_, "ReportScheduledWorkflowV1") => outcome(
            report_v1
                .report_scheduled_workflow_v1(with_user(
                    kfpd_api::v1beta1::ReportScheduledWorkflowRequest::default(),
                    user,
                ))
                .await,
        ),
        (_, "GetTask") => outcome(
            launcher
                .get_task(with_user(
                    kfpd_api::kfpd_v1::GetTaskRequest {
                        run_id: fx.run.clone(),
                        task_path: "write".into(),
                        ..Default::default()
                    },
                    user,
                ))
                .await,
        ),
        (_, "FinishAttempt") => outcome(
            launcher
                .finish_attempt(with_user(
                    kfpd_api::kfpd_v1::FinishAttemptRequest {
                        run_id: fx.run.clone(),
                        task_path: "write".into(),
                        ..Default::default()
                    },
                    user,
                ))
                .await,
        ),
        other => panic!("no gRPC case for {other:?}"),
    }
}

const IMPORTER: &str = r#"pipelineInfo:
  name: import-one
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
        reimport: true
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
"#;

/// References inside a request, pipeline roots and importers cannot reach into
/// another namespace.
#[tokio::test]
async fn references_roots_and_imports_stay_in_the_namespace() {
    let server = start();
    let alice = seed(&server, ALICE, "team-a").await;
    let bob = seed(&server, BOB, "team-b").await;
    let create = |reference: Value, root: &str| {
        Body::Json(json!({
            "display_name": unique("run"),
            "experiment_id": alice.experiment,
            "pipeline_version_reference": reference,
            "runtime_config": {"pipeline_root": root},
        }))
    };
    let runs = "/apis/v2beta1/runs";

    // Bob's pipeline version is not there for alice, word for word as a guess.
    let (status, body) = call(
        &server,
        Some(ALICE),
        "POST",
        runs,
        &[],
        &create(json!({"pipeline_version_id": bob.version}), ""),
    )
    .await;
    let guess = uuid::Uuid::new_v4().to_string();
    let (guess_status, guess_body) = call(
        &server,
        Some(ALICE),
        "POST",
        runs,
        &[],
        &create(json!({"pipeline_version_id": guess}), ""),
    )
    .await;
    assert_eq!((status, guess_status), (404, 404), "{body} {guess_body}");
    assert_eq!(
        message_of(&body),
        message_of(&guess_body).replace(&guess, &bob.version)
    );
    let (status, body) = call(
        &server,
        Some(ALICE),
        "POST",
        runs,
        &[],
        &create(json!({"pipeline_id": bob.pipeline}), ""),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // A root in bob's prefix is refused; one in alice's own is taken.
    let artifacts = format!("file://{}/artifacts", server.dir.path().display());
    let own_version = json!({"pipeline_version_id": alice.version});
    let (status, body) = call(
        &server,
        Some(ALICE),
        "POST",
        runs,
        &[],
        &create(
            own_version.clone(),
            &format!("{artifacts}/namespaces/team-b"),
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        message_of(&body).contains("outside the artifacts of namespace team-a"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        Some(ALICE),
        "POST",
        runs,
        &[],
        &create(
            own_version.clone(),
            &format!("{artifacts}/namespaces/team-a/../team-b"),
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &server,
        Some(ALICE),
        "POST",
        runs,
        &[],
        &create(own_version, &format!("{artifacts}/namespaces/team-a/mine")),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // An importer of bob's artifact fails, naming the URI.
    let package =
        kfpd_ir::read_package("import.yaml", IMPORTER.as_bytes()).expect("importer package");
    let (status, run) = call(
        &server,
        Some(ALICE),
        "POST",
        runs,
        &[],
        &Body::Json(json!({
            "display_name": "import bob's",
            "experiment_id": alice.experiment,
            "pipeline_spec": package.api_pipeline_spec(),
            "runtime_config": {"parameters": {"uri": bob.artifact_uri}},
        })),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().expect("run id");
    let started = Instant::now();
    let ended = loop {
        let (_, run) = call(
            &server,
            Some(ALICE),
            "GET",
            &format!("{runs}/{run_id}"),
            &[],
            &Body::None,
        )
        .await;
        if matches!(
            run["state"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "CANCELED")
        ) {
            break run;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ended["state"], "FAILED", "{ended}");
    assert!(
        ended
            .to_string()
            .contains("lies outside the artifacts of namespace team-a"),
        "{ended}"
    );
}
