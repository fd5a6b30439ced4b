//! ReportService over REST: `POST /apis/{v2beta1,v1beta1}/workflows`, the body
//! being the `workflow` field, a JSON string holding the Workflow's JSON (a JSON
//! object is taken as the Workflow itself).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{Code, Error, Result};
use crate::grpc::NO_SCHEDULED_WORKFLOWS;
use crate::service::Api;

pub fn routes() -> Router<Api> {
    let mut router = Router::new();
    for version in ["v2beta1", "v1beta1"] {
        router = router
            .route(&format!("/apis/{version}/workflows"), post(report_workflow))
            .route(
                &format!("/apis/{version}/scheduledworkflows"),
                post(report_scheduled_workflow),
            );
    }
    router
}

async fn report_workflow(State(api): State<Api>, body: String) -> Result<Json<Value>> {
    let text = match serde_json::from_str::<Value>(&body) {
        Ok(Value::String(text)) => text,
        Ok(object @ Value::Object(_)) => object.to_string(),
        Ok(_) | Err(_) => {
            return Err(Error::invalid(
                "report workflow: the body must be the Workflow as a JSON string (or object)",
            ))
        }
    };
    api.report_workflow(&text).await?;
    Ok(Json(json!({})))
}

async fn report_scheduled_workflow() -> Result<Json<Value>> {
    Err(Error::new(Code::Unimplemented, NO_SCHEDULED_WORKFLOWS))
}
