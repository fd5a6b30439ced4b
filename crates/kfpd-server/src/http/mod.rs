//! The REST transport: upstream's `/apis/v2beta1/...` routes over the service layer,
//! and the embedded web UI at `/`.

mod events;
mod execution;
mod extract;
mod nodes;
mod pipelines;
mod report;
mod resources;
mod ui;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::json;

use crate::error::{Code, Error};
use crate::service::Api;

/// Version reported by healthz (upstream's `tag_name`).
const TAG_NAME: &str = env!("CARGO_PKG_VERSION");

/// All REST routes, answering JSON errors for unknown paths and methods.
pub fn router(api: Api, max_body_bytes: usize) -> Router {
    let v2 = "/apis/v2beta1";
    Router::new()
        .route(&format!("{v2}/healthz"), any(healthz_v2))
        .route("/apis/v1beta1/healthz", any(healthz_v1))
        .route("/metrics", axum::routing::get(metrics))
        .merge(resources::routes(v2))
        .merge(pipelines::routes(v2))
        .merge(execution::routes())
        .merge(nodes::routes())
        .merge(events::routes())
        .merge(report::routes())
        .merge(ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            reject_oversized,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            count_requests,
        ))
        .with_state(api)
}

fn health_body(api: &Api) -> serde_json::Value {
    json!({
        "commit_sha": option_env!("KFPD_COMMIT_SHA").unwrap_or("unknown"),
        "tag_name": TAG_NAME,
        "multi_user": api.settings().multi_user,
    })
}

async fn healthz_v2(
    axum::extract::State(api): axum::extract::State<Api>,
) -> Json<serde_json::Value> {
    let mut body = health_body(&api);
    body["pipeline_store"] = json!("database");
    Json(body)
}

async fn healthz_v1(
    axum::extract::State(api): axum::extract::State<Api>,
) -> Json<serde_json::Value> {
    Json(health_body(&api))
}

async fn metrics(axum::extract::State(api): axum::extract::State<Api>) -> Response {
    let body = api.metrics().render().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Counts every request by its route template (the raw path would let clients
/// grow the series without bound), method and status.
async fn count_requests(
    axum::extract::State(api): axum::extract::State<Api>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_string());
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or(crate::metrics::UNMATCHED_ROUTE);
    api.metrics().observe_request(
        route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn not_found() -> Response {
    Error::new(Code::NotFound, "Not Found").into_response()
}

async fn method_not_allowed(method: Method) -> Response {
    let error = Error::new(Code::Unimplemented, "Method Not Allowed");
    let mut response = error.into_response();
    if method == Method::OPTIONS {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// `{}`, the body of every call that returns `google.protobuf.Empty`.
fn empty() -> Json<serde_json::Value> {
    Json(json!({}))
}

/// Rewrites the plain-text errors axum produces before a handler runs (body too
/// large, unreadable body) into the API's JSON error shape.
async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::Unimplemented,
        status if status.is_server_error() => Code::Internal,
        _ => Code::InvalidArgument,
    };
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut response = Error::new(code, message).into_response();
    *response.status_mut() = status;
    response
}

/// Answers 413 from the declared `Content-Length` before any of the body is read,
/// so a client sending a too-large upload learns it at once. Bodies without a
/// declared length are cut off by the body limit while they are read.
async fn reject_oversized(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let Some(length) = declared else {
        return next.run(request).await;
    };
    if length <= limit as u64 {
        return next.run(request).await;
    }
    let error = Error::new(
        Code::ResourceExhausted,
        format!("request body of {length} bytes is larger than the limit of {limit} bytes"),
    );
    if request.uri().path().contains("/pipelines/upload") {
        return crate::error::UploadError(error).into_response();
    }
    error.into_response()
}
