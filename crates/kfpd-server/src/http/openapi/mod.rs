//! The route table of the REST API and the OpenAPI 3 document made from it.
//!
//! Every route is added through [`Routes`], which both registers the handler with
//! the router and describes it from the handler's signature: its path parameters
//! come from the path template, its query parameters from the typed query it
//! extracts (a request message's scalar fields, read from the API's descriptors),
//! its request body from the message it decodes and its answer from the type it
//! returns. A handler's types cannot change without its description changing, and
//! no route is served that the document does not list.

pub mod local;
pub mod schema;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, Method};
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

pub use schema::Components;

use super::extract::{JsonBody, Query, QueryShape};
use crate::error::{Error, UploadError};
use crate::service::Api;

/// A type with a JSON schema in the document.
pub trait Schema {
    fn schema(components: &mut Components) -> Value;
}

/// Messages of the API: their schemas come from their descriptors.
impl<T: prost::Name> Schema for T {
    fn schema(components: &mut Components) -> Value {
        components.message(&T::full_name())
    }
}

/// What one operation says about itself while it is being described.
pub struct Doc<'a> {
    components: &'a mut Components,
    path_params: Vec<String>,
    operation: Map<String, Value>,
}

impl Doc<'_> {
    /// A required `application/json` request body of this schema.
    pub fn json_body(&mut self, schema: Value) {
        self.operation.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": { "application/json": { "schema": schema } },
            }),
        );
    }

    fn parameter(&mut self, parameter: Value) {
        let list = self
            .operation
            .entry("parameters")
            .or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.push(parameter);
        }
    }

    fn response(&mut self, status: &str, response: Value) {
        let responses = self
            .operation
            .entry("responses")
            .or_insert_with(|| json!({}));
        responses[status] = response;
    }

    fn json_response(&mut self, status: &str, description: &str, schema: Value) {
        self.response(
            status,
            json!({
                "description": description,
                "content": { "application/json": { "schema": schema } },
            }),
        );
    }
}

/// An extractor a handler takes, describing what it reads from the request.
pub trait Part {
    fn describe(_doc: &mut Doc) {}
}

/// What a handler returns, describing the responses it gives.
pub trait Answer {
    fn describe(doc: &mut Doc);
}

/// A handler function, described by its arguments and its answer.
pub trait Signature<M> {
    fn describe(doc: &mut Doc);
}

macro_rules! signature {
    ($($part:ident),*) => {
        impl<F, Fut, R, $($part,)*> Signature<(R, $($part,)*)> for F
        where
            F: FnOnce($($part,)*) -> Fut,
            Fut: Future<Output = R>,
            R: Answer,
            $($part: Part,)*
        {
            fn describe(doc: &mut Doc) {
                $($part::describe(doc);)*
                R::describe(doc);
            }
        }
    };
}

signature!();
signature!(A);
signature!(A, B);
signature!(A, B, C);
signature!(A, B, C, D);

impl Part for State<Api> {}
impl Part for HeaderMap {}
impl Part for Method {}
/// Path parameters are named by the template, all strings.
impl<T> Part for Path<T> {}

impl<T: Schema> Part for JsonBody<T> {
    fn describe(doc: &mut Doc) {
        let schema = T::schema(doc.components);
        doc.json_body(schema);
    }
}

impl<T: QueryShape> Part for Query<T> {
    fn describe(doc: &mut Doc) {
        for field in T::fields() {
            if doc.path_params.contains(&field.name) {
                continue;
            }
            doc.parameter(json!({
                "name": field.name,
                "in": "query",
                "required": false,
                "schema": field.schema,
            }));
        }
    }
}

impl Part for std::result::Result<Multipart, MultipartRejection> {
    fn describe(doc: &mut Doc) {
        doc.operation.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": { "multipart/form-data": { "schema": {
                    "type": "object",
                    "properties": { "uploadfile": { "type": "string", "format": "binary" } },
                    "required": ["uploadfile"],
                } } },
            }),
        );
    }
}

impl<T: Schema> Answer for crate::error::Result<Json<T>> {
    fn describe(doc: &mut Doc) {
        let schema = T::schema(doc.components);
        doc.json_response("200", "OK", schema);
        let error = local::error_schema(doc.components);
        doc.json_response(
            "default",
            "An error: its code and a message naming what is wrong",
            error,
        );
    }
}

impl<T: Schema> Answer for std::result::Result<Json<T>, UploadError> {
    fn describe(doc: &mut Doc) {
        let schema = T::schema(doc.components);
        doc.json_response("200", "OK", schema);
        let error = local::upload_error_schema(doc.components);
        doc.json_response(
            "default",
            "An upload refused, in upstream's upload error shape",
            error,
        );
    }
}

impl<T: Schema> Answer for Json<T> {
    fn describe(doc: &mut Doc) {
        let schema = T::schema(doc.components);
        doc.json_response("200", "OK", schema);
    }
}

/// A call upstream has and kfpd answers with 501 and why, always.
pub struct Unimplemented(pub Error);

impl axum::response::IntoResponse for Unimplemented {
    fn into_response(self) -> axum::response::Response {
        self.0.into_response()
    }
}

impl Answer for Unimplemented {
    fn describe(doc: &mut Doc) {
        let error = local::error_schema(doc.components);
        doc.json_response("501", "Not served by kfpd: the message says why", error);
        doc.operation.insert("deprecated".into(), json!(true));
    }
}

/// A `text/plain` answer (task logs, metrics).
pub struct Text(pub axum::response::Response);

impl axum::response::IntoResponse for Text {
    fn into_response(self) -> axum::response::Response {
        self.0
    }
}

impl Answer for crate::error::Result<Text> {
    fn describe(doc: &mut Doc) {
        <Text as Answer>::describe(doc);
        let error = local::error_schema(doc.components);
        doc.json_response(
            "default",
            "An error: its code and a message naming what is wrong",
            error,
        );
    }
}

impl Answer for Text {
    fn describe(doc: &mut Doc) {
        doc.response(
            "200",
            json!({
                "description": "OK",
                "content": { "text/plain": { "schema": { "type": "string" } } },
            }),
        );
    }
}

/// A page or file of the web UI: revalidated with its ETag.
pub struct Page(pub axum::response::Response);

impl axum::response::IntoResponse for Page {
    fn into_response(self) -> axum::response::Response {
        self.0
    }
}

impl Answer for Page {
    fn describe(doc: &mut Doc) {
        doc.response(
            "200",
            json!({
                "description": "The file",
                "content": {
                    "text/html": { "schema": { "type": "string" } },
                    "text/javascript": { "schema": { "type": "string" } },
                    "text/css": { "schema": { "type": "string" } },
                    "image/svg+xml": { "schema": { "type": "string" } },
                },
            }),
        );
        doc.response(
            "304",
            json!({ "description": "Not modified since the ETag given" }),
        );
        let error = local::error_schema(doc.components);
        doc.json_response("404", "No such file", error);
    }
}

/// A `text/event-stream` answer.
pub struct EventStream(pub axum::response::Response);

impl axum::response::IntoResponse for EventStream {
    fn into_response(self) -> axum::response::Response {
        self.0
    }
}

impl Answer for crate::error::Result<EventStream> {
    fn describe(doc: &mut Doc) {
        doc.response(
            "200",
            json!({
                "description": "Server-sent events until what they show has ended",
                "content": { "text/event-stream": { "schema": { "type": "string" } } },
            }),
        );
        let error = local::error_schema(doc.components);
        doc.json_response(
            "default",
            "An error: its code and a message naming what is wrong",
            error,
        );
    }
}

/// The routes of the REST API with their description.
#[derive(Default)]
pub struct Routes {
    methods: BTreeMap<String, MethodRouter<Api>>,
    components: Components,
    paths: BTreeMap<String, Map<String, Value>>,
    operation_ids: std::collections::BTreeSet<String>,
}

impl Routes {
    pub fn get<H, T, M>(self, path: &str, handler: H) -> Routes
    where
        H: Handler<T, Api> + Signature<M>,
        T: 'static,
    {
        self.add(Method::GET, path, handler)
    }

    pub fn post<H, T, M>(self, path: &str, handler: H) -> Routes
    where
        H: Handler<T, Api> + Signature<M>,
        T: 'static,
    {
        self.add(Method::POST, path, handler)
    }

    pub fn patch<H, T, M>(self, path: &str, handler: H) -> Routes
    where
        H: Handler<T, Api> + Signature<M>,
        T: 'static,
    {
        self.add(Method::PATCH, path, handler)
    }

    pub fn delete<H, T, M>(self, path: &str, handler: H) -> Routes
    where
        H: Handler<T, Api> + Signature<M>,
        T: 'static,
    {
        self.add(Method::DELETE, path, handler)
    }

    /// `POST {path}:{verb}` for each verb, all answered by one handler that reads
    /// the verb from the last path segment (upstream's custom methods).
    pub fn post_verbs<H, T, M>(self, path: &str, verbs: &[&str], handler: H) -> Routes
    where
        H: Handler<T, Api> + Signature<M>,
        T: 'static,
    {
        self.verbs(Method::POST, path, verbs, handler)
    }

    /// `GET {path}:{verb}` for each verb, as [`Routes::post_verbs`].
    pub fn get_verbs<H, T, M>(self, path: &str, verbs: &[&str], handler: H) -> Routes
    where
        H: Handler<T, Api> + Signature<M>,
        T: 'static,
    {
        self.verbs(Method::GET, path, verbs, handler)
    }

    fn verbs<H, T, M>(mut self, method: Method, path: &str, verbs: &[&str], handler: H) -> Routes
    where
        H: Handler<T, Api> + Signature<M>,
        T: 'static,
    {
        for verb in verbs {
            let documented = format!("{path}:{verb}");
            let id = format!("{}_{verb}", handler_name::<H>());
            self.describe::<H, M>(&method, &documented, &id);
        }
        self.register(filter_of(&method), path, handler);
        self
    }

    fn add<H, T, M>(mut self, method: Method, path: &str, handler: H) -> Routes
    where
        H: Handler<T, Api> + Signature<M>,
        T: 'static,
    {
        let id = handler_name::<H>();
        self.describe::<H, M>(&method, path, &id);
        self.register(filter_of(&method), path, handler);
        self
    }

    fn register<H, T>(&mut self, filter: MethodFilter, path: &str, handler: H)
    where
        H: Handler<T, Api>,
        T: 'static,
    {
        let methods = match self.methods.remove(path) {
            Some(methods) => methods.on(filter, handler),
            None => axum::routing::on(filter, handler),
        };
        self.methods.insert(path.to_string(), methods);
    }

    fn describe<H: Signature<M>, M>(&mut self, method: &Method, path: &str, id: &str) {
        let path_params = template_params(path);
        let mut doc = Doc {
            components: &mut self.components,
            path_params: path_params.clone(),
            operation: Map::new(),
        };
        for name in &path_params {
            doc.parameter(json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": { "type": "string" },
            }));
        }
        H::describe(&mut doc);
        let mut operation = doc.operation;
        let mut unique = id.to_string();
        let mut counter = 2;
        while !self.operation_ids.insert(unique.clone()) {
            unique = format!("{id}_{counter}");
            counter += 1;
        }
        operation.insert("operationId".into(), json!(unique));
        operation.insert("tags".into(), json!([tag_of(path)]));
        self.paths.entry(path.to_string()).or_default().insert(
            method.as_str().to_ascii_lowercase(),
            Value::Object(operation),
        );
    }

    /// The router of every route added, and the document describing them.
    pub fn finish(mut self) -> (Router<Api>, Value) {
        let mut router = Router::new();
        for (path, methods) in std::mem::take(&mut self.methods) {
            router = router.route(&path, methods);
        }
        let schemas = std::mem::take(&mut self.components).into_map();
        add_links(&mut self.paths, &schemas);
        let document = json!({
            "openapi": "3.0.3",
            "info": {
                "title": "kfpd REST API",
                "description": "The Kubeflow Pipelines v2beta1 REST API as kfpd serves it, \
                    with kfpd's own routes (task logs, nodes, run events, artifacts, the web UI).",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "paths": self.paths,
            "components": { "schemas": schemas },
        });
        (router, document)
    }
}

/// OpenAPI links from each create call to the calls whose path parameters its
/// answer carries (`experiment_id` of a created experiment to GetExperiment, ...),
/// so clients and test generators can follow them.
fn add_links(paths: &mut BTreeMap<String, Map<String, Value>>, schemas: &Map<String, Value>) {
    let mut consumers = Vec::new();
    for (path, operations) in paths.iter() {
        let params = template_params(path);
        if params.is_empty() {
            continue;
        }
        for operation in operations.values() {
            if let Some(id) = operation["operationId"].as_str() {
                consumers.push((id.to_string(), params.clone()));
            }
        }
    }
    for operations in paths.values_mut() {
        let Some(Value::Object(create)) = operations.get_mut("post") else {
            continue;
        };
        let answer = &create["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
        let Some(name) = answer
            .as_str()
            .and_then(|answer| answer.strip_prefix("#/components/schemas/"))
        else {
            continue;
        };
        let Some(properties) = schemas
            .get(name)
            .and_then(|schema| schema["properties"].as_object())
        else {
            continue;
        };
        let mut links = Map::new();
        for (consumer, params) in &consumers {
            if !params.iter().all(|param| properties.contains_key(param)) {
                continue;
            }
            let parameters: Map<String, Value> = params
                .iter()
                .map(|param| (param.clone(), json!(format!("$response.body#/{param}"))))
                .collect();
            links.insert(
                consumer.clone(),
                json!({ "operationId": consumer, "parameters": parameters }),
            );
        }
        if !links.is_empty() {
            create["responses"]["200"]["links"] = Value::Object(links);
        }
    }
}

fn filter_of(method: &Method) -> MethodFilter {
    match *method {
        Method::POST => MethodFilter::POST,
        Method::PATCH => MethodFilter::PATCH,
        Method::DELETE => MethodFilter::DELETE,
        _ => MethodFilter::GET,
    }
}

/// The `{name}` parameters of a path template, in order.
fn template_params(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// A handler's function name, the last segment of its type's name.
fn handler_name<H>() -> String {
    let name = std::any::type_name::<H>();
    let name = name.split('<').next().unwrap_or(name);
    name.rsplit("::").next().unwrap_or(name).to_string()
}

/// Operations are grouped by the resource the path names.
fn tag_of(path: &str) -> String {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("apis"), Some(_), Some(resource)) => resource
            .split([':', '{'])
            .next()
            .unwrap_or(resource)
            .to_string(),
        (Some(""), _, _) | (Some("ui"), _, _) => "ui".to_string(),
        (Some(first), _, _) => first.to_string(),
        _ => "ui".to_string(),
    }
}

/// The document, served as it was built.
#[derive(serde::Serialize)]
#[serde(transparent)]
pub struct Document(pub Value);

impl Schema for Document {
    fn schema(_components: &mut Components) -> Value {
        json!({ "type": "object" })
    }
}

/// Where the router's own `/openapi.json` handler finds the document once the
/// table that includes it is finished.
pub type Slot = Arc<OnceLock<Value>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_their_parameters() {
        assert_eq!(
            template_params("/apis/v2beta1/pipelines/{pipeline_id}/versions/{pipeline_version_id}"),
            ["pipeline_id", "pipeline_version_id"]
        );
        assert_eq!(tag_of("/apis/v2beta1/runs/{run_id}:archive"), "runs");
        assert_eq!(tag_of("/"), "ui");
        assert_eq!(tag_of("/metrics"), "metrics");
    }
}
