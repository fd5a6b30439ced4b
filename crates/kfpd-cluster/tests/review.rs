//! TokenReview and SubjectAccessReview through kube-rs against a scripted
//! Kubernetes API server on 127.0.0.1 (there is no cluster here): the server
//! answers as the real one does for the tokens and role bindings the test gives
//! it, and records every request so the test can read what kfpd asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kfpd_auth::cache::Cached;
use kfpd_auth::{Access, Authenticator, Authorizer, Error, Identity, Resource, Verb};
use kfpd_cluster::review::{AccessReviewer, TokenReviewer};
use serde_json::{json, Value};

/// A service-account token the scripted server knows.
struct Token {
    token: &'static str,
    user: &'static str,
    groups: &'static [&'static str],
    audiences: &'static [&'static str],
}

/// Who may do what: (user or group, namespace, resource, verb).
type Binding = (&'static str, &'static str, &'static str, &'static str);

#[derive(Default)]
struct Script {
    tokens: Vec<Token>,
    bindings: Vec<Binding>,
    /// Answer every review with this status instead (kfpd itself refused).
    refuse: Option<u16>,
    requests: Vec<(String, Value)>,
}

#[derive(Clone, Default)]
struct ApiServer {
    script: Arc<Mutex<Script>>,
}

impl ApiServer {
    async fn start(tokens: Vec<Token>, bindings: Vec<Binding>) -> (ApiServer, kube::Client) {
        let server = ApiServer::default();
        {
            let mut script = server.script.lock().unwrap();
            script.tokens = tokens;
            script.bindings = bindings;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(token_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(access_review),
            )
            .with_state(server.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (server, client(&url))
    }

    fn requests(&self, path_end: &str) -> Vec<Value> {
        self.script
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(path, _)| path.ends_with(path_end))
            .map(|(_, body)| body.clone())
            .collect()
    }

    fn refuse(&self, code: u16) {
        self.script.lock().unwrap().refuse = Some(code);
    }
}

fn client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

fn refusal(code: u16) -> Response {
    let status = StatusCode::from_u16(code).expect("status");
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
        "reason": "Forbidden",
        "message": "subjectaccessreviews.authorization.k8s.io is forbidden: User \"system:serviceaccount:kubeflow:ml-pipeline\" cannot create resource",
    });
    (status, Json(body)).into_response()
}

async fn token_review(State(server): State<ApiServer>, Json(mut body): Json<Value>) -> Response {
    let mut script = server.script.lock().unwrap();
    script.requests.push(("tokenreviews".into(), body.clone()));
    if let Some(code) = script.refuse {
        return refusal(code);
    }
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    let wanted: Vec<String> = serde_json::from_value(body["spec"]["audiences"].clone())
        .unwrap_or_else(|_| vec!["https://kubernetes.default.svc".into()]);
    let status = match script.tokens.iter().find(|known| known.token == token) {
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
        Some(known) => {
            let granted: Vec<&str> = wanted
                .iter()
                .map(String::as_str)
                .filter(|audience| known.audiences.contains(audience))
                .collect();
            if granted.is_empty() {
                json!({"authenticated": false, "error": "token audiences are invalid for the target audiences"})
            } else {
                json!({
                    "authenticated": true,
                    "user": {"username": known.user, "groups": known.groups},
                    "audiences": granted,
                })
            }
        }
    };
    body["status"] = status;
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn access_review(State(server): State<ApiServer>, Json(mut body): Json<Value>) -> Response {
    let mut script = server.script.lock().unwrap();
    script
        .requests
        .push(("subjectaccessreviews".into(), body.clone()));
    if let Some(code) = script.refuse {
        return refusal(code);
    }
    let spec = &body["spec"];
    let attributes = &spec["resourceAttributes"];
    let mut subjects = vec![spec["user"].clone()];
    subjects.extend(spec["groups"].as_array().cloned().unwrap_or_default());
    let allowed = attributes["group"] == "pipelines.kubeflow.org"
        && attributes["version"] == "v1beta1"
        && script
            .bindings
            .iter()
            .any(|(subject, namespace, resource, verb)| {
                subjects.iter().any(|candidate| candidate == subject)
                    && attributes["namespace"] == *namespace
                    && attributes["resource"] == *resource
                    && attributes["verb"] == *verb
            });
    body["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding"})
    } else {
        json!({"allowed": false})
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

fn tokens() -> Vec<Token> {
    vec![
        Token {
            token: "sa-token-alice",
            user: "system:serviceaccount:team-a:default-editor",
            groups: &[
                "system:serviceaccounts",
                "system:serviceaccounts:team-a",
                "system:authenticated",
            ],
            audiences: &["pipelines.kubeflow.org"],
        },
        Token {
            token: "sa-token-for-the-api-server",
            user: "system:serviceaccount:team-a:default",
            groups: &["system:authenticated"],
            audiences: &["https://kubernetes.default.svc"],
        },
    ]
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    headers
}

fn alice() -> Identity {
    Identity {
        user: "alice@example.com".into(),
        groups: vec!["team-a-members".into()],
    }
}

fn access<'a>(namespace: &'a str, verb: Verb, name: Option<&'a str>) -> Access<'a> {
    Access {
        namespace,
        resource: Resource::Runs,
        verb,
        name,
    }
}

/// A port nothing listens on.
fn dead_client() -> kube::Client {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    client(&url)
}

#[tokio::test]
async fn token_review_asks_for_the_pipelines_audience_and_names_the_service_account() {
    let (server, client) = ApiServer::start(tokens(), vec![]).await;
    let reviewer = TokenReviewer::new(client);

    let identity = reviewer
        .authenticate(&bearer("sa-token-alice"), None)
        .await
        .expect("reviewed")
        .expect("an identity");
    assert_eq!(identity.user, "system:serviceaccount:team-a:default-editor");
    assert_eq!(
        identity.groups,
        vec![
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ]
    );

    let sent = server.requests("tokenreviews");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(sent[0]["kind"], "TokenReview");
    assert_eq!(sent[0]["spec"]["token"], "sa-token-alice");
    assert_eq!(
        sent[0]["spec"]["audiences"],
        json!(["pipelines.kubeflow.org"])
    );
}

#[tokio::test]
async fn tokens_the_api_server_rejects_are_unauthenticated() {
    let (server, client) = ApiServer::start(tokens(), vec![]).await;
    let reviewer = TokenReviewer::new(client);

    for (token, expected) in [
        ("forged", "invalid bearer token"),
        // A real token, but issued for the Kubernetes API, not for pipelines.
        ("sa-token-for-the-api-server", "audiences"),
    ] {
        match reviewer.authenticate(&bearer(token), None).await {
            Err(Error::Unauthenticated(reason)) => {
                assert!(reason.contains(expected), "{token}: {reason}")
            }
            other => panic!("{token}: expected unauthenticated, got {other:?}"),
        }
    }

    // No bearer token: nothing to review, nothing sent.
    let before = server.requests("tokenreviews").len();
    let mut basic = http::HeaderMap::new();
    basic.insert(http::header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
    for headers in [http::HeaderMap::new(), basic] {
        assert!(reviewer
            .authenticate(&headers, None)
            .await
            .expect("no error")
            .is_none());
    }
    assert_eq!(server.requests("tokenreviews").len(), before);
}

#[tokio::test]
async fn access_review_sends_upstreams_attributes_and_tells_allowed_from_denied() {
    let bindings = vec![
        ("alice@example.com", "team-a", "runs", "get"),
        ("team-a-members", "team-a", "runs", "readArtifact"),
    ];
    let (server, client) = ApiServer::start(vec![], bindings).await;
    let reviewer = AccessReviewer::new(client);

    let allowed = reviewer
        .authorize(&alice(), &access("team-a", Verb::Get, Some("run-1")))
        .await
        .expect("reviewed");
    assert!(allowed);
    // Allowed through the group binding.
    assert!(reviewer
        .authorize(
            &alice(),
            &access("team-a", Verb::ReadArtifact, Some("run-1"))
        )
        .await
        .expect("reviewed"));
    // Denied: another namespace, another verb.
    assert!(!reviewer
        .authorize(&alice(), &access("team-b", Verb::Get, Some("run-2")))
        .await
        .expect("reviewed"));
    assert!(!reviewer
        .authorize(&alice(), &access("team-a", Verb::Delete, Some("run-1")))
        .await
        .expect("reviewed"));

    let sent = server.requests("subjectaccessreviews");
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0]["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(sent[0]["kind"], "SubjectAccessReview");
    assert_eq!(sent[0]["spec"]["user"], "alice@example.com");
    assert_eq!(sent[0]["spec"]["groups"], json!(["team-a-members"]));
    assert_eq!(
        sent[1]["spec"]["resourceAttributes"],
        json!({
            "group": "pipelines.kubeflow.org",
            "version": "v1beta1",
            "resource": "runs",
            "verb": "readArtifact",
            "namespace": "team-a",
            "name": "run-1",
        })
    );

    // Recurring runs are checked as upstream's `jobs`; a list names no object.
    let list = Access {
        namespace: "team-a",
        resource: Resource::RecurringRuns,
        verb: Verb::List,
        name: None,
    };
    reviewer.authorize(&alice(), &list).await.expect("reviewed");
    let sent = server.requests("subjectaccessreviews");
    let attributes = &sent[4]["spec"]["resourceAttributes"];
    assert_eq!(attributes["resource"], "jobs");
    assert_eq!(attributes["verb"], "list");
    assert!(attributes.get("name").is_none(), "{attributes}");
}

#[tokio::test]
async fn an_api_server_that_is_down_or_refuses_kfpd_is_an_error_not_a_denial() {
    let reviewer = AccessReviewer::new(dead_client());
    match reviewer
        .authorize(&alice(), &access("team-a", Verb::Get, None))
        .await
    {
        Err(Error::Unavailable(reason)) => assert!(reason.contains("not reachable"), "{reason}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    match TokenReviewer::new(dead_client())
        .authenticate(&bearer("sa-token-alice"), None)
        .await
    {
        Err(Error::Unavailable(reason)) => assert!(reason.contains("not reachable"), "{reason}"),
        other => panic!("expected unavailable, got {other:?}"),
    }

    let (server, client) = ApiServer::start(tokens(), vec![]).await;
    server.refuse(403);
    match AccessReviewer::new(client.clone())
        .authorize(&alice(), &access("team-a", Verb::Get, None))
        .await
    {
        Err(Error::Unavailable(reason)) => {
            assert!(reason.contains("system:auth-delegator"), "{reason}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    match TokenReviewer::new(client)
        .authenticate(&bearer("sa-token-alice"), None)
        .await
    {
        Err(Error::Unavailable(reason)) => assert!(reason.contains("HTTP 403"), "{reason}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn the_decision_cache_spares_the_second_review_and_expires() {
    let bindings = vec![("alice@example.com", "team-a", "runs", "get")];
    let (server, client) = ApiServer::start(vec![], bindings).await;
    let ttl = Duration::from_millis(300);
    let cached = Cached::new(AccessReviewer::new(client), ttl, 100);
    let reviews = || server.requests("subjectaccessreviews").len();

    let own = access("team-a", Verb::Get, Some("run-1"));
    let other = access("team-b", Verb::Get, Some("run-2"));
    assert!(cached.authorize(&alice(), &own).await.expect("reviewed"));
    assert!(!cached.authorize(&alice(), &other).await.expect("reviewed"));
    assert_eq!(reviews(), 2);
    for _ in 0..10 {
        assert!(cached.authorize(&alice(), &own).await.expect("cached"));
        assert!(!cached.authorize(&alice(), &other).await.expect("cached"));
    }
    assert_eq!(reviews(), 2);

    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(cached.authorize(&alice(), &own).await.expect("reviewed"));
    assert_eq!(reviews(), 3);

    // An outage is never remembered as a decision.
    server.refuse(503);
    let fresh = access("team-a", Verb::Get, Some("run-9"));
    for _ in 0..2 {
        assert!(cached.authorize(&alice(), &fresh).await.is_err());
    }
    assert_eq!(reviews(), 5);
}
