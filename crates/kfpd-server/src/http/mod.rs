//! The REST transport: upstream's `/apis/v2beta1/...` routes over the service layer,
//! and the embedded web UI at `/`.

mod events;
mod execution;
mod extract;
mod nodes;
pub mod openapi;
mod pipelines;
mod report;
mod resources;
mod ui;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use openapi::{Document, Routes, Slot, Text};

use crate::error::{Code, Error};
use crate::service::Api;

/// Version reported by healthz (upstream's `tag_name`).
const TAG_NAME: &str = env!("CARGO_PKG_VERSION");

/// Every REST route, in the one table the OpenAPI document is made from.
fn table(document: Slot) -> Routes {
    let v2 = "/apis/v2beta1";
    let routes = Routes::default()
        .get(&format!("{v2}/healthz"), healthz_v2)
        .get("/apis/v1beta1/healthz", healthz_v1)
        .get("/metrics", metrics)
        .get("/openapi.json", move || {
            let document = document.clone();
            async move { Json(Document(document.get().cloned().unwrap_or_default())) }
        });
    let routes = resources::routes(routes, v2);
    let routes = pipelines::routes(routes, v2);
    let routes = execution::routes(routes);
    let routes = nodes::routes(routes);
    let routes = events::routes(routes);
    let routes = report::routes(routes);
    ui::routes(routes)
}

/// The OpenAPI 3 document of every REST route kfpd serves.
pub fn document() -> serde_json::Value {
    table(Slot::default()).finish().1
}

/// All REST routes, answering JSON errors for unknown paths and methods.
pub fn router(api: Api, max_body_bytes: usize) -> Router {
    let slot = Slot::default();
    let (routes, document) = table(slot.clone()).finish();
    // Set once, right here, on a slot nobody else holds yet.
    let _ = slot.set(document);
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            reject_oversized,
        ))
        // gzip for clients that ask (assets, large JSON); never event streams,
        // whose events must leave as they happen, nor answers under 32 bytes.
        .layer(tower_http::compression::CompressionLayer::new())
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

async fn healthz_v2(axum::extract::State(api): axum::extract::State<Api>) -> Json<Health> {
    let mut body = health_body(&api);
    body["pipeline_store"] = json!("database");
    Json(Health(body))
}

async fn healthz_v1(axum::extract::State(api): axum::extract::State<Api>) -> Json<Health> {
    Json(Health(health_body(&api)))
}

/// Upstream's healthz body: `{commit_sha, tag_name, multi_user[, pipeline_store]}`.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct Health(serde_json::Value);

impl openapi::Schema for Health {
    fn schema(components: &mut openapi::Components) -> serde_json::Value {
        components.named("kfpd.Health", |_| {
            json!({
                "type": "object",
                "properties": {
                    "commit_sha": { "type": "string" },
                    "tag_name": { "type": "string" },
                    "multi_user": { "type": "boolean" },
                    "pipeline_store": { "type": "string" },
                },
                "required": ["commit_sha", "tag_name", "multi_user"],
                "additionalProperties": false,
            })
        })
    }
}

async fn metrics(axum::extract::State(api): axum::extract::State<Api>) -> Text {
    let body = api.metrics().render().await;
    Text(
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
    )
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

/// Routes that answer without an identity in multi-user mode: health, metrics,
/// the API description and the web UI's static files, none of which holds
/// anyone's data (the UI reads that through the API routes, which are checked).
pub const OPEN_ROUTES: &[&str] = &[
    "/apis/v2beta1/healthz",
    "/apis/v1beta1/healthz",
    "/metrics",
    "/openapi.json",
    "/",
    "/ui/{name}",
];

/// Multi-user mode: finds who is calling (401 when nobody) and serves the
/// request as them; a successful answer from a route that checked no access
/// is refused (see [`crate::access`]).
async fn authenticate(
    axum::extract::State(api): axum::extract::State<Api>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(guard) = api.guard().cloned() else {
        return next.run(request).await;
    };
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_string());
    // Unknown paths answer 404 whoever asks.
    let Some(route) = route else {
        return next.run(request).await;
    };
    if OPEN_ROUTES.contains(&route.as_str()) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let identity = match guard.authenticate(request.headers(), peer).await {
        Ok(identity) => identity,
        Err(error) => return error.into_response(),
    };
    let caller = crate::access::Caller::new(identity);
    let response = std::sync::Arc::clone(&caller)
        .scope(next.run(request))
        .await;
    if response.status().is_success() && !caller.was_checked() {
        return crate::access::unchecked(&route).into_response();
    }
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
fn empty() -> Json<kfpd_api::wkt::Empty> {
    Json(kfpd_api::wkt::Empty::default())
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
    let upload = request.uri().path().contains("/pipelines/upload");
    let too_large = |message: String| {
        let error = Error::new(Code::ResourceExhausted, message);
        if upload {
            return crate::error::UploadError(error).into_response();
        }
        error.into_response()
    };
    match declared {
        Some(length) if length > limit as u64 => too_large(format!(
            "request body of {length} bytes is larger than the limit of {limit} bytes (--max-body-bytes)"
        )),
        Some(_) => next.run(request).await,
        None => {
            // A body of undeclared length was cut off while it was read; the
            // handler's message cannot say the limit, this one does.
            let response = next.run(request).await;
            if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
                return response;
            }
            too_large(format!(
                "request body is larger than the limit of {limit} bytes (--max-body-bytes)"
            ))
        }
    }
}
