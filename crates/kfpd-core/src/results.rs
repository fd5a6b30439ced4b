//! What tasks hand each other: artifacts by reference, the inputs visible in a DAG,
//! and how a task ended with what it produced.

use std::collections::BTreeMap;

use kfpd_store::{Artifact, TaskState};
use serde_json::{Map, Value};

/// An artifact as the orchestrator passes it between tasks (store URI, not a local path).
#[derive(Clone, Debug, PartialEq)]
pub struct ArtifactRef {
    pub id: i64,
    pub name: String,
    pub uri: String,
    pub schema_title: String,
    pub schema_version: String,
    pub metadata: Map<String, Value>,
}

impl From<&Artifact> for ArtifactRef {
    fn from(artifact: &Artifact) -> ArtifactRef {
        ArtifactRef {
            id: artifact.id,
            name: artifact.name.clone(),
            uri: artifact.uri.clone(),
            schema_title: artifact.schema_title.clone(),
            schema_version: artifact.schema_version.clone(),
            metadata: serde_json::from_str(&artifact.metadata).unwrap_or_default(),
        }
    }
}

/// Artifacts by input or output name; a name may hold several (`dsl.Collected`).
pub type Artifacts = BTreeMap<String, Vec<ArtifactRef>>;

/// The inputs visible inside a DAG.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub parameters: Map<String, Value>,
    pub artifacts: Artifacts,
}

/// How a task (or DAG) ended and what it produced.
#[derive(Clone, Debug)]
pub struct TaskResult {
    pub state: TaskState,
    pub error: Option<String>,
    pub parameters: Map<String, Value>,
    pub artifacts: Artifacts,
}

impl TaskResult {
    pub fn ended(state: TaskState, error: Option<String>) -> TaskResult {
        TaskResult {
            state,
            error,
            parameters: Map::new(),
            artifacts: BTreeMap::new(),
        }
    }

    pub fn failed(error: String) -> TaskResult {
        TaskResult::ended(TaskState::Failed, Some(error))
    }

    pub fn canceled() -> TaskResult {
        TaskResult::ended(TaskState::Canceled, Some("run was terminated".into()))
    }

    pub fn succeeded(parameters: Map<String, Value>, artifacts: Artifacts) -> TaskResult {
        TaskResult {
            state: TaskState::Succeeded,
            error: None,
            parameters,
            artifacts,
        }
    }
}
