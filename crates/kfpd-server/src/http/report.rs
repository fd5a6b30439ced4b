//! ReportService over REST: `POST /apis/{v2beta1,v1beta1}/workflows` and
//! `…/scheduledworkflows`, the body being the `workflow` (`scheduled_workflow`)
//! field, a JSON string holding the object's JSON (a JSON object is taken as
//! the object itself).

use axum::extract::{FromRequest, Request, State};
use axum::Json;
use kfpd_api::wkt::Empty;
use serde_json::{json, Value};

use super::openapi::{Doc, Part, Routes};
use crate::error::{Error, Result};
use crate::service::Api;

pub fn routes(mut routes: Routes) -> Routes {
    for version in ["v2beta1", "v1beta1"] {
        routes = routes
            .post(&format!("/apis/{version}/workflows"), report_workflow)
            .post(
                &format!("/apis/{version}/scheduledworkflows"),
                report_scheduled_workflow,
            );
    }
    routes
}

/// The request body as text, whatever its content type (upstream's persistence
/// agent sends the Workflow's JSON as a JSON string).
struct Report(String);

impl<S: Send + Sync> FromRequest<S> for Report {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        String::from_request(request, state)
            .await
            .map(Report)
            .map_err(|rejection| {
                Error::invalid(format!(
                    "cannot read the request body: {}",
                    rejection.body_text()
                ))
            })
    }
}

impl Part for Report {
    fn describe(doc: &mut Doc) {
        doc.json_body(json!({
            "description": "The Workflow's JSON as a JSON string, or the Workflow object itself",
            "oneOf": [{ "type": "string" }, { "type": "object", "additionalProperties": {} }],
        }));
    }
}

/// The object's JSON text from the body: a JSON string, or the object itself.
fn object_text(body: &str, what: &str, kind: &str) -> Result<String> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::String(text)) => Ok(text),
        Ok(object @ Value::Object(_)) => Ok(object.to_string()),
        Ok(_) | Err(_) => Err(Error::invalid(format!(
            "{what}: the body must be the {kind} as a JSON string (or object)"
        ))),
    }
}

async fn report_workflow(State(api): State<Api>, Report(body): Report) -> Result<Json<Empty>> {
    let text = object_text(&body, "report workflow", "Workflow")?;
    api.report_workflow(&text).await?;
    Ok(Json(Empty::default()))
}

async fn report_scheduled_workflow(
    State(api): State<Api>,
    Report(body): Report,
) -> Result<Json<Empty>> {
    let text = object_text(&body, "report scheduled workflow", "ScheduledWorkflow")?;
    api.report_scheduled_workflow(&text).await?;
    Ok(Json(Empty::default()))
}
