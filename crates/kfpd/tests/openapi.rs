//! `GET /openapi.json` against the real server: the document lists every route
//! the server answers, and every operation it lists is answered by a handler (not
//! by the router's fallback for unknown paths or methods).

mod common;

use common::{read, Server};
use reqwest::Method;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The path with every `{param}` filled in.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str("probe");
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// What the router's fallbacks answer: 404 "Not Found" for an unknown path, 501
/// "Method Not Allowed" for an unknown method on a known path.
fn is_fallback(status: u16, body: &Value) -> bool {
    let message = body["message"].as_str().unwrap_or_default();
    (status == 404 && message == "Not Found") || (status == 501 && message == "Method Not Allowed")
}

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    operation: Option<&Value>,
) -> (u16, Value) {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
    let url = format!("{}{path}", server.base);
    let mut request = server.client.request(method, url);
    let content = operation.and_then(|operation| operation["requestBody"]["content"].as_object());
    if content.is_some_and(|content| content.contains_key("multipart/form-data")) {
        let part = reqwest::multipart::Part::bytes(b"{}".to_vec()).file_name("probe.yaml");
        request = request.multipart(reqwest::multipart::Form::new().part("uploadfile", part));
    } else if content.is_some() {
        request = request.json(&serde_json::json!({}));
    }
    read(request.send().await.expect("request")).await
}

#[tokio::test]
async fn every_documented_operation_is_answered_and_nothing_else_is() {
    let server = Server::start();
    let response = server
        .client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("openapi.json");
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.expect("document");
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() > 30, "only {} paths", paths.len());

    let mut answered = 0;
    for (template, operations) in paths {
        let operations = operations.as_object().expect("operations");
        // `/runs/{run_id}:archive` shares its router path with `/runs/{run_id}`,
        // whose methods answer it too.
        let base_methods: Vec<&String> = match template.rsplit_once(':') {
            Some((base, _)) => paths
                .get(base)
                .and_then(Value::as_object)
                .map(|base| base.keys().collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        for method in METHODS {
            let path = concrete(template);
            let operation = operations.get(method);
            let (status, body) = call(&server, method, &path, operation).await;
            match operation {
                Some(operation) => {
                    assert!(
                        !is_fallback(status, &body),
                        "{method} {template} is documented but not answered: {status} {body}"
                    );
                    // A call kfpd does not serve says so in the document (501).
                    let listed = operation["responses"][status.to_string()].is_object();
                    assert!(
                        status < 500 || listed,
                        "{method} {template}: {status} {body}"
                    );
                    answered += 1;
                }
                None if base_methods.iter().any(|base| base.as_str() == method) => {}
                // A custom-method handler answers a path without its verb as the
                // fallback does.
                None => assert!(
                    is_fallback(status, &body),
                    "{method} {template} is answered ({status} {body}) but not documented"
                ),
            }
        }
    }
    assert!(answered > 40, "only {answered} operations");

    // Paths the document does not list reach the fallback.
    for (method, path) in [
        ("get", "/apis/v2beta1/nothing"),
        ("get", "/apis/v1beta1/runs"),
        (
            "get",
            "/apis/v2beta1/runs/probe/nodes/probe/artifacts/probe:write",
        ),
        ("post", "/apis/v2beta1/experiments/probe:explode"),
        ("get", "/ui"),
    ] {
        let (status, body) = call(&server, method, path, None).await;
        assert!(
            status == 404 && body["message"] == "Not Found",
            "{path} is answered: {status} {body}"
        );
    }
}

/// Every schema a document refers to is in it.
#[tokio::test]
async fn every_reference_resolves() {
    let server = Server::start();
    let document: Value = server
        .client
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("openapi.json")
        .json()
        .await
        .expect("document");
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    let mut stack = vec![&document];
    let mut references = 0;
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    let name = target
                        .strip_prefix("#/components/schemas/")
                        .expect("local reference");
                    assert!(schemas.contains_key(name), "{target} is not defined");
                    references += 1;
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(references > 50, "only {references} references");
    let run = &schemas["v2beta1.Run"]["properties"];
    assert_eq!(run["state"]["type"], "string");
    assert_eq!(run["created_at"]["format"], "date-time");
}
