//! Schemas of the shapes that are kfpd's own rather than API messages: the error
//! bodies and the records behind the UI's and the artifact API's routes. Each sits
//! here beside the others so one look shows what the document says about them; the
//! REST tests check served bodies against them.

use serde_json::{json, Value};

use super::{Components, Schema};
use crate::service::{ArtifactView, ListArtifactsResponse, ListNodesResponse, NodeDetail};

fn string() -> Value {
    json!({ "type": "string" })
}

fn integer() -> Value {
    json!({ "type": "integer" })
}

fn any_object() -> Value {
    json!({ "type": "object", "additionalProperties": {} })
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

/// An object with exactly these properties, `required` among them always present.
fn object(properties: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| (name.to_string(), schema.clone()))
        .collect();
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// `{code, message, details}`, the body of every error but an upload's.
pub fn error_schema(components: &mut Components) -> Value {
    components.named("kfpd.Error", |_| {
        let detail = object(
            &[
                ("@type", string()),
                ("code", integer()),
                ("message", string()),
            ],
            &[],
        );
        object(
            &[
                ("code", integer()),
                ("message", string()),
                ("details", array(detail)),
            ],
            &["code", "message"],
        )
    })
}

/// `{error_message, error_details}`, upstream's shape for refused uploads.
pub fn upload_error_schema(components: &mut Components) -> Value {
    components.named("kfpd.UploadError", |_| {
        object(
            &[("error_message", string()), ("error_details", string())],
            &["error_message"],
        )
    })
}

impl Schema for ArtifactView {
    fn schema(components: &mut Components) -> Value {
        components.named("kfpd.Artifact", |_| {
            let artifact_use = object(
                &[
                    ("task_id", string()),
                    ("task_name", string()),
                    ("key", string()),
                ],
                &["task_id", "task_name", "key"],
            );
            let kind = object(
                &[("schema_title", string()), ("schema_version", string())],
                &["schema_title"],
            );
            object(
                &[
                    ("artifact_id", string()),
                    ("name", string()),
                    ("uri", string()),
                    ("type", kind),
                    ("metadata", json!({})),
                    ("created_at", string()),
                    ("run_id", string()),
                    ("producer", artifact_use.clone()),
                    ("consumers", array(artifact_use)),
                ],
                &["artifact_id", "name", "uri", "type", "created_at", "run_id"],
            )
        })
    }
}

impl Schema for ListArtifactsResponse {
    fn schema(components: &mut Components) -> Value {
        let artifact = ArtifactView::schema(components);
        components.named("kfpd.ListArtifactsResponse", |_| {
            object(
                &[("artifacts", array(artifact)), ("total_size", integer())],
                &[],
            )
        })
    }
}

/// The properties of a node; a node's record adds to them.
fn node_properties() -> Vec<(&'static str, Value)> {
    vec![
        ("task_id", string()),
        ("parent_task_id", string()),
        ("kind", string()),
        ("name", string()),
        ("display_name", string()),
        ("iteration_index", integer()),
        ("state", string()),
        ("cached_from", string()),
        ("created_at", string()),
        ("started_at", string()),
        ("finished_at", string()),
        ("after", array(string())),
        ("error", string()),
        ("attempts", integer()),
    ]
}

const NODE_REQUIRED: &[&str] = &["task_id", "kind", "name", "display_name", "state"];

/// A task of a run as the UI draws it.
pub fn node_schema(components: &mut Components) -> Value {
    components.named("kfpd.Node", |_| object(&node_properties(), NODE_REQUIRED))
}

impl Schema for ListNodesResponse {
    fn schema(components: &mut Components) -> Value {
        let node = node_schema(components);
        components.named("kfpd.ListNodesResponse", |_| {
            object(&[("nodes", array(node))], &["nodes"])
        })
    }
}

impl Schema for NodeDetail {
    fn schema(components: &mut Components) -> Value {
        let artifact = ArtifactView::schema(components);
        components.named("kfpd.NodeDetail", |_| {
            let keyed = object(
                &[("key", string()), ("artifact", artifact)],
                &["key", "artifact"],
            );
            let mut properties = node_properties();
            properties.extend([
                ("path", string()),
                ("inputs", json!({})),
                ("outputs", json!({})),
                ("details", json!({})),
                ("fingerprint", string()),
                ("input_artifacts", array(keyed.clone())),
                ("output_artifacts", array(keyed)),
            ]);
            object(&properties, NODE_REQUIRED)
        })
    }
}

/// The driver's request of the Argo pod interface.
pub fn drive_request_schema(components: &mut Components) -> Value {
    components.named("kfpd.DriveRequest", |_| {
        object(
            &[
                ("task_path", string()),
                ("workflow", string()),
                ("pod_spec_patch", json!({ "type": "boolean" })),
            ],
            &[],
        )
    })
}

/// The driver's decision: kfpd's own shape, read by `kfpd driver`.
pub fn drive_response_schema(components: &mut Components) -> Value {
    components.named("kfpd.DriveResponse", |_| any_object())
}
