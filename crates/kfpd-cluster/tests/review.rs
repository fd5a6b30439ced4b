//! TokenReview and SubjectAccessReview through kube-rs against the scripted
//! Kubernetes API server of the kfpd tests (crates/kfpd/tests/kube), on
//! 127.0.0.1: it answers as the real one does for the tokens and role bindings
//! the test gives it, and records every request so the test can read what was asked.

#[path = "../../kfpd/tests/kube/mod.rs"]
mod scripted;

use std::time::Duration;

use kfpd_auth::cache::Cached;
use kfpd_auth::{Access, Authenticator, Authorizer, Error, Identity, Resource, Verb};
use kfpd_cluster::review::{AccessReviewer, TokenReviewer};
use scripted::{Kube, ACCESS_REVIEWS, TOKEN_REVIEWS};
use serde_json::json;

fn client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

/// The scripted API server with two service-account tokens: one for pipelines,
/// one for the Kubernetes API itself.
async fn api_server() -> (Kube, kube::Client) {
    let server = Kube::start().await;
    server.add_token(
        "sa-token-alice",
        "system:serviceaccount:team-a:default-editor",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated",
        ],
        &["pipelines.kubeflow.org"],
    );
    server.add_token(
        "sa-token-for-the-api-server",
        "system:serviceaccount:team-a:default",
        &["system:authenticated"],
        &["https://kubernetes.default.svc"],
    );
    let client = client(&server.url);
    (server, client)
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
    let (server, client) = api_server().await;
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

    let sent = server.reviews(TOKEN_REVIEWS);
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
    let (server, client) = api_server().await;
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
    let before = server.reviews(TOKEN_REVIEWS).len();
    let mut basic = http::HeaderMap::new();
    basic.insert(http::header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
    for headers in [http::HeaderMap::new(), basic] {
        assert!(reviewer
            .authenticate(&headers, None)
            .await
            .expect("no error")
            .is_none());
    }
    assert_eq!(server.reviews(TOKEN_REVIEWS).len(), before);
}

#[tokio::test]
async fn access_review_sends_upstreams_attributes_and_tells_allowed_from_denied() {
    let (server, client) = api_server().await;
    server.allow("alice@example.com", "team-a", "runs", "get");
    server.allow("team-a-members", "team-a", "runs", "readArtifact");
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

    let sent = server.reviews(ACCESS_REVIEWS);
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
    let sent = server.reviews(ACCESS_REVIEWS);
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

    let (server, client) = api_server().await;
    server.refuse_reviews(Some(403));
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
    let (server, client) = api_server().await;
    server.allow("alice@example.com", "team-a", "runs", "get");
    let ttl = Duration::from_millis(300);
    let cached = Cached::new(AccessReviewer::new(client), ttl, 100);
    let reviews = || server.reviews(ACCESS_REVIEWS).len();

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
    server.refuse_reviews(Some(503));
    let fresh = access("team-a", Verb::Get, Some("run-9"));
    for _ in 0..2 {
        assert!(cached.authorize(&alice(), &fresh).await.is_err());
    }
    assert_eq!(reviews(), 5);
}

#[tokio::test]
async fn reviewed_tokens_are_remembered_for_the_ttl_rejected_ones_never() {
    let (server, client) = api_server().await;
    let ttl = Duration::from_millis(300);
    let reviewer = TokenReviewer::new(client).with_cache(ttl, 100);
    let reviews = || server.reviews(TOKEN_REVIEWS).len();

    for _ in 0..5 {
        let identity = reviewer
            .authenticate(&bearer("sa-token-alice"), None)
            .await
            .expect("reviewed")
            .expect("an identity");
        assert_eq!(identity.user, "system:serviceaccount:team-a:default-editor");
    }
    assert_eq!(reviews(), 1);
    for _ in 0..3 {
        assert!(reviewer
            .authenticate(&bearer("forged"), None)
            .await
            .is_err());
    }
    assert_eq!(reviews(), 4);

    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    reviewer
        .authenticate(&bearer("sa-token-alice"), None)
        .await
        .expect("reviewed again");
    assert_eq!(reviews(), 5);
}
