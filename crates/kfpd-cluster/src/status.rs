//! Reading a Workflow as Argo's controller writes it: phase, message, times and
//! node statuses, whether listed in `status.nodes`, compressed into
//! `status.compressedNodes` (base64 of gzipped JSON) or offloaded to Argo's own
//! database (`status.offloadNodeStatusVersion`), which kfpd does not read.

use std::io::Read;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::client::{PERSISTED_LABEL, RUN_ID_LABEL};

/// Why a reported Workflow cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("workflow is not JSON: {0}")]
    Json(String),
    #[error("workflow has no {0}")]
    Missing(&'static str),
    #[error("workflow {name}: status.compressedNodes cannot be read: {message}")]
    Compressed { name: String, message: String },
}

/// A Workflow's phase (`status.phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not picked up by the controller yet (no phase, or `Pending`).
    Pending,
    Running,
    Succeeded,
    Failed,
    Error,
}

impl Phase {
    fn parse(text: &str) -> Phase {
        match text {
            "Running" => Phase::Running,
            "Succeeded" => Phase::Succeeded,
            "Failed" => Phase::Failed,
            "Error" => Phase::Error,
            _ => Phase::Pending,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Error)
    }
}

/// Where the node statuses were.
#[derive(Clone, Debug, PartialEq)]
pub enum Nodes {
    /// In `status.nodes` or `status.compressedNodes`.
    Listed(Vec<Node>),
    /// In Argo's offload database, which kfpd does not read.
    Offloaded { version: String },
}

/// One node of `status.nodes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: String,
    pub name: String,
    /// `Pod`, `DAG`, `Retry`, `HTTP`, `Skipped`, `TaskGroup`, …
    pub kind: String,
    pub template: String,
    /// Argo's node phase: `Pending`, `Running`, `Succeeded`, `Skipped`, `Failed`,
    /// `Error`, `Omitted`.
    pub phase: String,
    pub message: String,
    /// The `task-path` input kfpd's templates take: which task the node runs.
    pub task_path: Option<String>,
    /// Its template is a `resource` template (kfp-kubernetes' `CreatePVC` and
    /// `DeletePVC`), which no launcher reports on: the node's phase is the task's.
    pub resource: bool,
    pub finished_at: Option<i64>,
}

impl Node {
    pub fn failed(&self) -> bool {
        matches!(self.phase.as_str(), "Failed" | "Error")
    }
}

/// What kfpd reads from a Workflow.
#[derive(Clone, Debug)]
pub struct Workflow {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub run_id: String,
    pub phase: Phase,
    pub message: String,
    pub finished_at: Option<i64>,
    /// `spec.shutdown` is set (`Terminate` or `Stop`).
    pub shutdown: bool,
    /// `metadata.deletionTimestamp` is set: the Workflow is going away.
    pub deleting: bool,
    /// Labelled `pipeline/persistedFinalState=true`.
    pub persisted: bool,
    pub nodes: Nodes,
}

/// Reads a Workflow object. The run id label is required: kfpd watches only
/// Workflows it labelled.
pub fn parse(object: &Value) -> Result<Workflow, Error> {
    let metadata = &object["metadata"];
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let run_id = text(&metadata["labels"][RUN_ID_LABEL]);
    if run_id.is_empty() {
        return Err(Error::Missing("pipeline/runid label"));
    }
    let namespace = text(&metadata["namespace"]);
    if namespace.is_empty() {
        return Err(Error::Missing("metadata.namespace"));
    }
    let deleting = !metadata["deletionTimestamp"].is_null();
    let name = text(&metadata["name"]);
    // A Workflow that is gone may be reported by its run id alone.
    if name.is_empty() && !deleting {
        return Err(Error::Missing("metadata.name"));
    }
    let status = &object["status"];
    let resource_templates: std::collections::BTreeSet<&str> = object["spec"]["templates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|template| template.get("resource").is_some())
        .filter_map(|template| template["name"].as_str())
        .collect();
    let mut nodes = nodes(&name, status)?;
    if let Nodes::Listed(listed) = &mut nodes {
        for node in listed {
            node.resource = resource_templates.contains(node.template.as_str());
        }
    }
    Ok(Workflow {
        uid: text(&metadata["uid"]),
        run_id,
        namespace,
        phase: Phase::parse(status["phase"].as_str().unwrap_or_default()),
        message: text(&status["message"]),
        finished_at: timestamp(&status["finishedAt"]),
        shutdown: !object["spec"]["shutdown"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        deleting,
        persisted: metadata["labels"][PERSISTED_LABEL].as_str() == Some("true"),
        nodes,
        name,
    })
}

/// Parses the JSON text a report carries.
pub fn parse_text(text: &str) -> Result<Workflow, Error> {
    let object: Value = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    if !object.is_object() {
        return Err(Error::Json("not a JSON object".into()));
    }
    parse(&object)
}

fn nodes(name: &str, status: &Value) -> Result<Nodes, Error> {
    if let Some(listed) = status["nodes"]
        .as_object()
        .filter(|nodes| !nodes.is_empty())
    {
        return Ok(Nodes::Listed(listed.values().map(node).collect()));
    }
    if let Some(compressed) = status["compressedNodes"].as_str().filter(|t| !t.is_empty()) {
        let listed = decompress(compressed).map_err(|message| Error::Compressed {
            name: name.to_string(),
            message,
        })?;
        return Ok(Nodes::Listed(listed.values().map(node).collect()));
    }
    if let Some(version) = status["offloadNodeStatusVersion"]
        .as_str()
        .filter(|t| !t.is_empty())
    {
        return Ok(Nodes::Offloaded {
            version: version.to_string(),
        });
    }
    Ok(Nodes::Listed(Vec::new()))
}

/// `status.compressedNodes`: the nodes map as JSON, gzipped, base64 (standard).
pub fn decompress(text: &str) -> Result<Map<String, Value>, String> {
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|error| format!("not base64: {error}"))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .read_to_end(&mut json)
        .map_err(|error| format!("not gzip: {error}"))?;
    serde_json::from_slice(&json).map_err(|error| format!("not a JSON object of nodes: {error}"))
}

/// The inverse of [`decompress`], as Argo's controller writes it (for tests and
/// benchmarks that play the controller).
pub fn compress(nodes: &Map<String, Value>) -> String {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let json = serde_json::to_vec(nodes).unwrap_or_default();
    let gzipped = encoder
        .write_all(&json)
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(gzipped)
}

fn node(value: &Value) -> Node {
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
    let task_path = value["inputs"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|parameter| parameter["name"] == "task-path")
        .and_then(|parameter| parameter["value"].as_str())
        .map(str::to_string);
    Node {
        id: text("id"),
        name: text("name"),
        kind: text("type"),
        template: text("templateName"),
        phase: text("phase"),
        message: text("message"),
        task_path,
        resource: false,
        finished_at: timestamp(&value["finishedAt"]),
    }
}

fn timestamp(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workflow(status: Value) -> Value {
        json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "name": "hello-abcde",
                "namespace": "kubeflow",
                "uid": "u-1",
                "labels": {"pipeline/runid": "run-1"},
            },
            "spec": {},
            "status": status,
        })
    }

    fn pod(phase: &str, message: &str) -> Value {
        json!({
            "id": "hello-abcde-1", "name": "hello-abcde.print", "type": "Pod",
            "templateName": "exec-print", "phase": phase, "message": message,
            "finishedAt": "2026-01-02T03:04:05Z",
            "inputs": {"parameters": [{"name": "task-path", "value": "root/print"}]},
        })
    }

    #[test]
    fn listed_and_compressed_nodes_read_the_same() {
        let mut nodes = Map::new();
        nodes.insert("hello-abcde-1".into(), pod("Failed", "ImagePullBackOff"));
        let listed = parse(&workflow(json!({"phase": "Failed", "nodes": nodes}))).unwrap();
        let compressed = parse(&workflow(
            json!({"phase": "Failed", "compressedNodes": compress(&nodes)}),
        ))
        .unwrap();
        assert_eq!(listed.nodes, compressed.nodes);
        let Nodes::Listed(nodes) = listed.nodes else {
            panic!("nodes are listed")
        };
        assert_eq!(nodes[0].task_path.as_deref(), Some("root/print"));
        assert!(nodes[0].failed());
        assert_eq!(nodes[0].finished_at, Some(1767323045));
        assert_eq!(listed.phase, Phase::Failed);
    }

    #[test]
    fn nodes_of_resource_templates_are_told_apart() {
        let mut object = workflow(json!({"phase": "Running", "nodes": {
            "hello-abcde-1": pod("Succeeded", ""),
            "hello-abcde-2": {
                "id": "hello-abcde-2", "name": "hello-abcde.createpvc", "type": "Pod",
                "templateName": "createpvc-create", "phase": "Failed",
                "message": "persistentvolumeclaims \"data\" already exists",
                "inputs": {"parameters": [{"name": "task-path", "value": "root/createpvc"}]},
            },
        }}));
        object["spec"]["templates"] = json!([
            {"name": "exec-print", "container": {"image": "alpine"}},
            {"name": "createpvc-create", "resource": {"action": "create", "manifest": "{}"}},
        ]);
        let Nodes::Listed(nodes) = parse(&object).unwrap().nodes else {
            panic!("nodes are listed")
        };
        let resource: Vec<(&str, bool)> = nodes
            .iter()
            .map(|node| (node.task_path.as_deref().unwrap_or_default(), node.resource))
            .collect();
        assert!(resource.contains(&("root/createpvc", true)), "{resource:?}");
        assert!(resource.contains(&("root/print", false)), "{resource:?}");
    }

    #[test]
    fn offloaded_nodes_are_named_and_bad_compression_refused() {
        let offloaded = parse(&workflow(
            json!({"phase": "Running", "offloadNodeStatusVersion": "fnv:123"}),
        ))
        .unwrap();
        assert_eq!(
            offloaded.nodes,
            Nodes::Offloaded {
                version: "fnv:123".into()
            }
        );
        let error = parse(&workflow(json!({"compressedNodes": "not*base64"}))).unwrap_err();
        assert!(error.to_string().contains("compressedNodes"), "{error}");
        let gzip_of_junk = base64::engine::general_purpose::STANDARD.encode(b"plain");
        let error = parse(&workflow(json!({"compressedNodes": gzip_of_junk}))).unwrap_err();
        assert!(error.to_string().contains("not gzip"), "{error}");
    }

    #[test]
    fn a_workflow_without_the_run_label_or_name_is_refused() {
        let mut object = workflow(json!({}));
        object["metadata"]["labels"] = json!({});
        assert!(parse(&object).unwrap_err().to_string().contains("runid"));
        let mut object = workflow(json!({}));
        object["metadata"]["name"] = json!("");
        assert!(parse(&object).unwrap_err().to_string().contains("name"));
        object["metadata"]["deletionTimestamp"] = json!("2026-01-02T03:04:05Z");
        assert!(parse(&object).unwrap().deleting);
        assert_eq!(parse(&workflow(json!({}))).unwrap().phase, Phase::Pending);
    }
}
