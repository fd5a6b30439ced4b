//! The pod spec patch of a driver answer (docs/argo.md, "The driver request"): a
//! task whose image, resources or kfp-kubernetes settings depend on an upstream
//! output or a loop item gets them from the server when it is driven, made by the
//! same code that fills the pod template when the values are known at compile time.

use std::collections::BTreeMap;

use kfpd_ir::spec::{
    ComponentSpec, DagSpec, ExecutorKind, PipelineSpec, PipelineTaskSpec, PlatformSpec,
};
use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::platform::{self, ExecutorConfig};
use crate::resources;
use crate::scope::Scope;

/// What the server knows about a task when it drives it.
pub struct Driven<'a> {
    pub spec: &'a PipelineSpec,
    pub platform: Option<&'a PlatformSpec>,
    /// The task's name in its DAG, for messages.
    pub name: &'a str,
    pub task: &'a PipelineTaskSpec,
    pub component: &'a ComponentSpec,
    /// The DAG the task is in.
    pub dag: &'a DagSpec,
    /// The input parameters of the DAG instance (a loop item included).
    pub dag_inputs: &'a Map<String, Value>,
    /// The output parameters of the tasks beside it that ended.
    pub sibling_outputs: BTreeMap<String, Map<String, Value>>,
    /// The task's own resolved input parameters.
    pub task_inputs: Map<String, Value>,
}

/// The strategic-merge patch over the task's pod (container `main`) with all of
/// its settings resolved.
pub fn pod_spec_patch(driven: Driven<'_>) -> Result<Value, Error> {
    let name = driven.name;
    let Some(label) = driven.component.executor_label.as_deref() else {
        return Err(Error::Spec(format!("task {name:?} has no executor")));
    };
    let Some(ExecutorKind::Container(container)) = driven
        .spec
        .executor(label)
        .and_then(|executor| executor.kind())
    else {
        return Err(Error::Spec(format!(
            "task {name:?} does not run a container: it has no pod to patch"
        )));
    };
    let config = match driven
        .platform
        .and_then(|platform| platform.kubernetes())
        .and_then(|kubernetes| kubernetes.deployment_spec.executors.get(label))
    {
        Some(raw) => ExecutorConfig::parse(label, raw)?,
        None => ExecutorConfig::default(),
    };
    let scope = Scope::driven(
        driven.spec,
        driven.dag,
        driven.dag_inputs,
        driven.sibling_outputs,
        driven.task_inputs,
    );
    let settings = platform::settings(&config, &scope)
        .map_err(|error| Error::Platform(format!("task {name:?}: {error}")))?;
    let resolved = resources::resolve(container, driven.task, driven.component, &scope)
        .map_err(|error| Error::Spec(format!("task {name:?}: {error}")))?;
    let image = resolved.image.ok_or_else(|| {
        Error::Spec(format!(
            "task {name:?}: the image {:?} names a value that is not an input",
            container.image
        ))
    })?;
    let mut main = json!({"name": "main", "image": image, "resources": resolved.resources});
    if !settings.env.is_empty() {
        main["env"] = json!(settings.env);
    }
    if !settings.mounts.is_empty() {
        main["volumeMounts"] = json!(settings.mounts);
    }
    if let Some(context) = &settings.security_context {
        main["securityContext"] = json!(context);
    }
    if let Some(policy) = &settings.image_pull_policy {
        main["imagePullPolicy"] = json!(policy);
    }
    let mut patch = json!({"containers": [main]});
    if !settings.init_containers.is_empty() {
        patch["initContainers"] = json!(settings.init_containers);
    }
    if !settings.volumes.is_empty() {
        patch["volumes"] = json!(settings.volumes);
    }
    if !settings.node_selector.is_empty() {
        patch["nodeSelector"] = json!(settings.node_selector);
    }
    if !settings.tolerations.is_empty() {
        patch["tolerations"] = json!(settings.tolerations);
    }
    if let Some(affinity) = &settings.affinity {
        patch["affinity"] = json!(affinity);
    }
    if !settings.image_pull_secrets.is_empty() {
        let secrets: Vec<Value> = settings
            .image_pull_secrets
            .iter()
            .map(|secret| json!({ "name": secret }))
            .collect();
        patch["imagePullSecrets"] = Value::Array(secrets);
    }
    if let Some(seconds) = settings.active_deadline_seconds {
        patch["activeDeadlineSeconds"] = json!(seconds);
    }
    Ok(patch)
}
