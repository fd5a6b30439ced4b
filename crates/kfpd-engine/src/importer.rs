//! Importer tasks: the object an importer names is recorded as an artifact (or an
//! artifact recorded before is given out again); it is copied only into the run's
//! workspace, with `download_to_workspace`. What it imports is
//! `kfpd_core::importer`'s.

use std::collections::BTreeMap;

use kfpd_core::executor_input::workspace_artifact_path;
use kfpd_core::importer::{self as rules, Import};
use kfpd_core::{ArtifactRef, TaskResult};
use kfpd_ir::spec::ImporterSpec;
use kfpd_store::{Artifact, ArtifactLink, Direction};
use rand::Rng;
use serde_json::{Map, Value};

use crate::context::{RunContext, TaskCall};
use crate::records::{now, TaskRecord};

/// A new artifact id: a JS-safe positive integer, since the API's artifact ids are
/// int64 and UIs parse them as numbers.
pub(crate) fn new_artifact_id() -> i64 {
    rand::thread_rng().gen_range(1..(1_i64 << 53))
}

/// Runs an importer task whose row is `record`.
pub(crate) async fn run(
    context: &RunContext,
    call: &TaskCall,
    importer: &ImporterSpec,
    record: &TaskRecord,
) -> Result<TaskResult, String> {
    let import = rules::plan(importer, &call.component, &call.parameters)?;
    check_in_namespace(context, &import.uri)?;
    if !import.reimport {
        if let Some(existing) = find_imported(context, &import).await? {
            let link = ArtifactLink {
                task_id: record.task.id.clone(),
                artifact_id: existing.id,
                direction: Direction::Output,
                key: import.output_key.clone(),
            };
            context
                .engine
                .store
                .link_artifact(&context.run.id, &link)
                .await
                .map_err(|error| format!("cannot record the imported artifact: {error}"))?;
            return Ok(imported(import.output_key, &existing));
        }
    }
    let artifact = Artifact {
        id: new_artifact_id(),
        run_id: context.run.id.clone(),
        producer_task_id: record.task.id.clone(),
        output_key: import.output_key.clone(),
        name: import.output_key.clone(),
        uri: import.uri,
        schema_title: import.schema_title,
        schema_version: import.schema_version,
        metadata: Value::Object(import.metadata).to_string(),
        created_at: now(),
    };
    context
        .engine
        .store
        .create_artifact(&artifact)
        .await
        .map_err(|error| format!("cannot record the imported artifact: {error}"))?;
    Ok(imported(import.output_key, &artifact))
}

/// A run in a namespace (multi-user mode) imports nothing this server stores
/// outside its namespace's root: the artifact API would otherwise serve another
/// namespace's objects through it.
fn check_in_namespace(context: &RunContext, uri: &str) -> Result<(), String> {
    let namespace = &context.run.namespace;
    let store = &context.engine.artifacts;
    if namespace.is_empty() || !store.handles(uri) {
        return Ok(());
    }
    let root = store.namespace_root(namespace);
    if kfpd_artifacts::ArtifactStore::is_within(&root, uri) {
        return Ok(());
    }
    Err(format!(
        "importer: {uri} lies outside the artifacts of namespace {namespace} ({root}); runs in a namespace import only from there"
    ))
}

fn imported(output_key: String, artifact: &Artifact) -> TaskResult {
    TaskResult::succeeded(
        Map::new(),
        BTreeMap::from([(output_key, vec![ArtifactRef::from(artifact)])]),
    )
}

/// Artifacts with the same URI looked at for reuse; more than this many imports
/// of one URI with different metadata are not expected.
const REIMPORT_CANDIDATES: i64 = 100;

/// An artifact recorded earlier with this URI, type and metadata, which an
/// importer without `reimport` gives out again (as upstream's driver does).
async fn find_imported(context: &RunContext, import: &Import) -> Result<Option<Artifact>, String> {
    let candidates = context
        .engine
        .store
        .find_artifacts_by_uri(&import.uri, &import.schema_title, REIMPORT_CANDIDATES)
        .await
        .map_err(|error| format!("cannot look up artifacts imported before: {error}"))?;
    Ok(candidates
        .into_iter()
        .find(|candidate| rules::same_metadata(&candidate.metadata, &import.metadata)))
}

/// An importer with `download_to_workspace` on the local engine: copies what it
/// imported into the run's workspace at the place the Argo launcher copies it
/// (`<workspace>/.artifacts/<the URI as a path>`), where the tasks after it read it.
pub(crate) async fn copy_to_workspace(
    context: &RunContext,
    result: &TaskResult,
) -> Result<(), String> {
    let workspace = context.workspace_dir();
    for artifact in result.artifacts.values().flatten() {
        let local = workspace_artifact_path(&workspace, &artifact.uri)?;
        if let Some(parent) = local.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        context
            .engine
            .artifacts
            .download(&artifact.uri, &local)
            .await
            .map_err(|error| format!("cannot copy {} into the workspace: {error}", artifact.uri))?;
        if let Ok(mut ids) = context.in_workspace.lock() {
            ids.insert(artifact.id);
        }
    }
    Ok(())
}
