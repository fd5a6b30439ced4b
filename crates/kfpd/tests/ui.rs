//! The embedded web UI as the real binary serves it: the page, the assets it names,
//! their headers and revalidation, and the REST API beside it.

mod common;

use common::Server;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use reqwest::StatusCode;
use serde_json::json;

async fn fetch(server: &Server, path: &str) -> reqwest::Response {
    server
        .client
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(&name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Every `/ui/...` path the page refers to in a `src` or `href` attribute.
fn referenced_assets(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let rest = &html[start + attribute.len()..];
            let value = &rest[..rest.find('"').unwrap_or(0)];
            if value.starts_with("/ui/") {
                found.push(value.to_string());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn root_serves_the_page_with_its_headers() {
    let server = Server::start();
    let response = fetch(&server, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&response, CACHE_CONTROL), "no-cache");
    assert_eq!(header(&response, X_CONTENT_TYPE_OPTIONS), "nosniff");
    let policy = header(&response, CONTENT_SECURITY_POLICY);
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let etag = header(&response, ETAG);
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag:?}");
    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<main id=\"page\""), "{html}");
    assert_eq!(
        referenced_assets(&html),
        ["/ui/app.css", "/ui/app.js", "/ui/favicon.svg"]
    );

    let head = server
        .client
        .head(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, ETAG), etag);
}

#[tokio::test]
async fn assets_have_their_types_and_revalidate_by_etag() {
    let server = Server::start();
    let cases = [
        ("/ui/app.js", "text/javascript; charset=utf-8", "hashchange"),
        ("/ui/app.css", "text/css; charset=utf-8", ".state"),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
        ("/", "text/html; charset=utf-8", "/ui/app.js"),
    ];
    let mut etags = Vec::new();
    for (path, content_type, marker) in cases {
        let response = fetch(&server, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, CONTENT_TYPE), content_type, "{path}");
        assert_eq!(header(&response, CACHE_CONTROL), "no-cache", "{path}");
        let etag = header(&response, ETAG);
        let body = response.text().await.unwrap();
        assert!(body.contains(marker), "{path} lacks {marker:?}");

        let unchanged = server
            .client
            .get(format!("{}{path}", server.base))
            .header(IF_NONE_MATCH, format!("\"other\", {etag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&unchanged, ETAG), etag, "{path}");
        assert!(unchanged.bytes().await.unwrap().is_empty(), "{path}");

        let stale = server
            .client
            .get(format!("{}{path}", server.base))
            .header(IF_NONE_MATCH, "\"0000000000000000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::OK, "{path}");
        etags.push(etag);
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), cases.len(), "each file has its own etag");
}

#[tokio::test]
async fn unknown_assets_are_not_found() {
    let server = Server::start();
    for path in ["/ui/missing.js", "/ui/", "/ui/app.js/more", "/index.html"] {
        let (status, body) = common::read(fetch(&server, path).await).await;
        assert_eq!(
            (status, body["code"].clone()),
            (404, json!(5)),
            "{path}: {body}"
        );
    }
    let (status, body) = common::read(fetch(&server, "/ui/missing.js").await).await;
    assert_eq!(status, 404);
    assert!(
        body["message"].as_str().unwrap().contains("missing.js"),
        "{body}"
    );
}

#[tokio::test]
async fn api_routes_are_unaffected() {
    let server = Server::start();
    let (status, health) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["pipeline_store"], "database");
    let (status, created) = server
        .post("/experiments", &json!({"display_name": "beside the ui"}))
        .await;
    assert_eq!(status, 200, "{created}");
    let (status, listed) = server.get("/experiments").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|experiment| experiment["display_name"].as_str())
        .collect();
    assert!(names.contains(&"beside the ui"), "{listed}");
    let (status, body) = server.get("/no/such/route").await;
    assert_eq!((status, body["code"].clone()), (404, json!(5)));

    let post = server
        .client
        .post(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(post).await;
    assert_eq!((status, body["code"].clone()), (501, json!(12)), "{body}");
}
