//! `platforms.kubernetes` executor settings (what the `kfp-kubernetes` SDK
//! extension writes), typed, and applied to a task's pod template.
//!
//! A setting whose value is known when the run is compiled (a constant, a run
//! parameter) goes into the template as a real field. One that depends on an
//! upstream task's output or a loop item is left to the driver request, which
//! answers it as a pod spec patch; [`PodSettings::needs_patch`] says so.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::scope::{Bound, Scope};
use crate::workflow::{
    Affinity, ConfigMapVolume, Container, EmptyDir, EnvVar, EnvVarSource, EphemeralVolume, KeyRef,
    KeyToPath, LabelSelector, Metadata, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PodAffinity, PodAffinityTerm, PreferredSchedulingTerm, PvcResources, PvcSpec,
    PvcTemplate, PvcVolume, Resources, SecretVolume, SecurityContext, Toleration, Volume,
    VolumeMount, WeightedPodAffinityTerm,
};

/// Container names of a task pod that are not the user's to take: kfpd's own
/// containers, Argo's, and the launcher name upstream reserves.
const RESERVED_CONTAINERS: [&str; 5] = ["main", "kfpd-init", "init", "wait", "kfp-launcher"];

/// A value given as a `TaskInputsSpec.InputParameterSpec` in the platform spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParameterRef {
    pub component_input_parameter: Option<String>,
    pub task_output_parameter: Option<TaskOutputRef>,
    pub runtime_value: Option<RuntimeValue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskOutputRef {
    pub producer_task: String,
    pub output_parameter_key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuntimeValue {
    pub constant: Option<Value>,
}

/// `KubernetesExecutorConfig`, the fields this compiler applies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecutorConfig {
    pub secret_as_volume: Vec<SecretAsVolume>,
    pub secret_as_env: Vec<SecretAsEnv>,
    pub config_map_as_volume: Vec<ConfigMapAsVolume>,
    pub config_map_as_env: Vec<ConfigMapAsEnv>,
    pub pvc_mount: Vec<PvcMount>,
    pub node_selector: Option<NodeSelectorConfig>,
    pub pod_metadata: Option<PodMetadata>,
    pub image_pull_secret: Vec<ImagePullSecret>,
    pub image_pull_policy: Option<String>,
    #[serde(deserialize_with = "int_or_string")]
    pub active_deadline_seconds: Option<i64>,
    pub field_path_as_env: Vec<FieldPathAsEnv>,
    pub tolerations: Vec<TolerationConfig>,
    pub generic_ephemeral_volume: Vec<GenericEphemeralVolume>,
    pub node_affinity: Vec<NodeAffinityTerm>,
    pub pod_affinity: Vec<PodAffinityConfig>,
    pub enabled_shared_memory: Option<SharedMemory>,
    pub empty_dir_mounts: Vec<EmptyDirMount>,
    pub security_context: Option<SecurityContextConfig>,
    pub init_containers: Vec<InitContainerConfig>,
}

/// `KubernetesExecutorConfig.pod_affinity`: one term, required unless it has a
/// weight, against other pods unless `anti`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodAffinityConfig {
    pub match_pod_expressions: Vec<SelectorRequirement>,
    pub match_pod_labels: BTreeMap<String, String>,
    pub topology_key: String,
    pub namespaces: Vec<String>,
    pub match_namespace_expressions: Vec<SelectorRequirement>,
    pub match_namespace_labels: BTreeMap<String, String>,
    pub weight: Option<i32>,
    pub anti: Option<bool>,
}

/// `KubernetesExecutorConfig.init_containers`: a container that runs to its end
/// before the task's (or beside it, as a sidecar, with `restartPolicy: Always`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InitContainerConfig {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<PlainEnv>,
    pub volume_mounts: Vec<InitVolumeMount>,
    pub restart_policy: Option<String>,
    pub resources: Option<InitResources>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlainEnv {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InitVolumeMount {
    pub volume_name: String,
    pub mount_path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InitResources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

/// `KubernetesExecutorConfig.security_context`: the user and group the task's
/// container runs as.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContextConfig {
    #[serde(deserialize_with = "int_or_string")]
    pub run_as_user: Option<i64>,
    #[serde(deserialize_with = "int_or_string")]
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretAsVolume {
    pub secret_name: Option<String>,
    pub secret_name_parameter: Option<ParameterRef>,
    pub mount_path: String,
    pub optional: Option<bool>,
    pub items: Vec<ItemConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ItemConfig {
    pub key: String,
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretAsEnv {
    pub secret_name: Option<String>,
    pub secret_name_parameter: Option<ParameterRef>,
    pub key_to_env: Vec<SecretKeyToEnv>,
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretKeyToEnv {
    pub secret_key: String,
    pub env_var: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMapAsVolume {
    pub config_map_name: Option<String>,
    pub config_map_name_parameter: Option<ParameterRef>,
    pub mount_path: String,
    pub optional: Option<bool>,
    pub items: Vec<ItemConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMapAsEnv {
    pub config_map_name: Option<String>,
    pub config_map_name_parameter: Option<ParameterRef>,
    pub key_to_env: Vec<ConfigMapKeyToEnv>,
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMapKeyToEnv {
    pub config_map_key: String,
    pub env_var: String,
}

/// `PvcMount`: the name comes from `pvcNameParameter`, or from the older
/// `oneof` fields beside it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PvcMount {
    pub pvc_name_parameter: Option<ParameterRef>,
    pub task_output_parameter: Option<TaskOutputRef>,
    pub constant: Option<String>,
    pub component_input_parameter: Option<String>,
    pub mount_path: String,
    pub sub_path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSelectorConfig {
    pub labels: BTreeMap<String, String>,
    pub node_selector_json: Option<ParameterRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodMetadata {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImagePullSecret {
    pub secret_name: Option<String>,
    pub secret_name_parameter: Option<ParameterRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldPathAsEnv {
    pub name: String,
    pub field_path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TolerationConfig {
    pub key: Option<String>,
    pub operator: Option<String>,
    pub value: Option<String>,
    pub effect: Option<String>,
    #[serde(deserialize_with = "int_or_string")]
    pub toleration_seconds: Option<i64>,
    pub toleration_json: Option<ParameterRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GenericEphemeralVolume {
    pub volume_name: String,
    pub mount_path: String,
    pub access_modes: Vec<String>,
    pub default_storage_class: bool,
    pub storage_class_name: Option<String>,
    pub size: String,
    pub metadata: Option<PodMetadata>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeAffinityTerm {
    pub match_expressions: Vec<SelectorRequirement>,
    pub match_fields: Vec<SelectorRequirement>,
    pub weight: Option<i32>,
    pub node_affinity_json: Option<ParameterRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SharedMemory {
    pub volume_name: String,
    pub size: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmptyDirMount {
    pub volume_name: String,
    pub mount_path: String,
    pub medium: Option<String>,
    pub size_limit: Option<String>,
}

/// protobuf's JSON gives int64 as a string; accept both.
fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not an integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an integer"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an integer, found {other}"
        ))),
    }
}

impl ExecutorConfig {
    /// Reads the config of one executor label.
    pub fn parse(label: &str, raw: &Map<String, Value>) -> Result<Self, Error> {
        ExecutorConfig::deserialize(Value::Object(raw.clone())).map_err(|e| {
            Error::Platform(format!(
                "kubernetes config of executor {label:?} cannot be read: {e}"
            ))
        })
    }
}

/// Pod settings of one task, ready for its template.
#[derive(Debug, Clone, Default)]
pub struct PodSettings {
    pub env: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub affinity: Option<Affinity>,
    pub metadata: Metadata,
    pub image_pull_secrets: Vec<String>,
    pub image_pull_policy: Option<String>,
    pub active_deadline_seconds: Option<i64>,
    /// The user's container's security context (`security_context`).
    pub security_context: Option<SecurityContext>,
    /// The pipeline's own init containers and sidecars (`init_containers`).
    pub init_containers: Vec<Container>,
    /// Some value is only known at run time: the template takes the driver's patch.
    pub needs_patch: bool,
}

/// Resolves a platform-spec parameter in the task's DAG scope.
fn resolve(scope: &Scope, reference: &ParameterRef) -> Bound {
    if let Some(name) = &reference.component_input_parameter {
        return scope.input(name);
    }
    if let Some(output) = &reference.task_output_parameter {
        return scope.task_output(&output.producer_task, &output.output_parameter_key);
    }
    if let Some(value) = reference
        .runtime_value
        .as_ref()
        .and_then(|v| v.constant.clone())
    {
        return Bound::constant(value);
    }
    Bound::Runtime
}

/// The name a setting refers to: a literal, or a parameter. `Ok(None)` means a
/// null optional parameter (the setting is left out, as upstream's driver does).
fn name_of(
    settings: &mut PodSettings,
    scope: &Scope,
    literal: &Option<String>,
    parameter: &Option<ParameterRef>,
    what: &str,
) -> Result<Option<String>, Error> {
    if let Some(reference) = parameter {
        return match resolve(scope, reference) {
            Bound::Known(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Bound::Known(Value::Null) | Bound::Known(Value::String(_)) => Ok(None),
            Bound::Known(other) => Err(Error::Platform(format!(
                "{what} must be a string, found {other}"
            ))),
            Bound::Runtime => {
                settings.needs_patch = true;
                Ok(None)
            }
        };
    }
    Ok(literal.clone().filter(|s| !s.is_empty()))
}

/// A JSON-valued setting (`nodeSelectorJson`, `tolerationJson`, `nodeAffinityJson`).
fn json_of(settings: &mut PodSettings, scope: &Scope, reference: &ParameterRef) -> Option<Value> {
    match resolve(scope, reference) {
        Bound::Known(Value::Null) => None,
        Bound::Known(Value::String(s)) if s.trim().is_empty() => None,
        Bound::Known(Value::String(s)) => serde_json::from_str(&s).ok().or(Some(Value::String(s))),
        Bound::Known(other) => Some(other),
        Bound::Runtime => {
            settings.needs_patch = true;
            None
        }
    }
}

/// Applies an executor's kubernetes config for a task in `scope`.
pub fn settings(config: &ExecutorConfig, scope: &Scope) -> Result<PodSettings, Error> {
    let mut out = PodSettings::default();
    let mut volume_index = 0usize;
    let mut next_volume = |prefix: &str| {
        volume_index += 1;
        format!("{prefix}-{volume_index}")
    };

    for entry in &config.secret_as_env {
        let Some(name) = name_of(
            &mut out,
            scope,
            &entry.secret_name,
            &entry.secret_name_parameter,
            "a secret name",
        )?
        else {
            continue;
        };
        for key in &entry.key_to_env {
            out.env.push(EnvVar {
                name: key.env_var.clone(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(KeyRef {
                        name: name.clone(),
                        key: key.secret_key.clone(),
                        optional: entry.optional,
                    }),
                    ..EnvVarSource::default()
                }),
            });
        }
    }
    for entry in &config.config_map_as_env {
        let Some(name) = name_of(
            &mut out,
            scope,
            &entry.config_map_name,
            &entry.config_map_name_parameter,
            "a config map name",
        )?
        else {
            continue;
        };
        for key in &entry.key_to_env {
            out.env.push(EnvVar {
                name: key.env_var.clone(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(KeyRef {
                        name: name.clone(),
                        key: key.config_map_key.clone(),
                        optional: entry.optional,
                    }),
                    ..EnvVarSource::default()
                }),
            });
        }
    }
    for entry in &config.field_path_as_env {
        out.env.push(EnvVar::field(&entry.name, &entry.field_path));
    }

    for entry in &config.secret_as_volume {
        let Some(name) = name_of(
            &mut out,
            scope,
            &entry.secret_name,
            &entry.secret_name_parameter,
            "a secret name",
        )?
        else {
            continue;
        };
        let volume = next_volume("secret");
        out.volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolume {
                secret_name: name,
                optional: entry.optional,
                items: items(&entry.items),
            }),
            ..Volume::default()
        });
        out.mounts.push(mount(&volume, &entry.mount_path, None));
    }
    for entry in &config.config_map_as_volume {
        let Some(name) = name_of(
            &mut out,
            scope,
            &entry.config_map_name,
            &entry.config_map_name_parameter,
            "a config map name",
        )?
        else {
            continue;
        };
        let volume = next_volume("config-map");
        out.volumes.push(Volume {
            name: volume.clone(),
            config_map: Some(ConfigMapVolume {
                name,
                optional: entry.optional,
                items: items(&entry.items),
            }),
            ..Volume::default()
        });
        out.mounts.push(mount(&volume, &entry.mount_path, None));
    }
    for entry in &config.pvc_mount {
        let bound = if let Some(reference) = &entry.pvc_name_parameter {
            resolve(scope, reference)
        } else if let Some(output) = &entry.task_output_parameter {
            scope.task_output(&output.producer_task, &output.output_parameter_key)
        } else if let Some(constant) = &entry.constant {
            Bound::constant(Value::String(constant.clone()))
        } else if let Some(input) = &entry.component_input_parameter {
            scope.input(input)
        } else {
            return Err(Error::Platform(format!(
                "the PVC mounted at {:?} has no name",
                entry.mount_path
            )));
        };
        let claim = match bound {
            Bound::Known(Value::String(s)) if !s.is_empty() => s,
            Bound::Known(Value::Null) => continue,
            Bound::Known(other) => {
                return Err(Error::Platform(format!(
                    "the PVC name for {:?} must be a non-empty string, found {other}",
                    entry.mount_path
                )))
            }
            Bound::Runtime => {
                out.needs_patch = true;
                continue;
            }
        };
        let volume = next_volume("pvc");
        out.volumes.push(Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PvcVolume { claim_name: claim }),
            ..Volume::default()
        });
        out.mounts
            .push(mount(&volume, &entry.mount_path, entry.sub_path.clone()));
    }
    for entry in &config.generic_ephemeral_volume {
        let mut requests = BTreeMap::new();
        requests.insert("storage".to_string(), entry.size.clone());
        let metadata = entry
            .metadata
            .as_ref()
            .map(|m| Metadata {
                labels: m.labels.clone(),
                annotations: m.annotations.clone(),
            })
            .unwrap_or_default();
        out.volumes.push(Volume {
            name: entry.volume_name.clone(),
            ephemeral: Some(EphemeralVolume {
                volume_claim_template: PvcTemplate {
                    metadata,
                    spec: PvcSpec {
                        access_modes: entry.access_modes.clone(),
                        storage_class_name: if entry.default_storage_class {
                            None
                        } else {
                            entry.storage_class_name.clone()
                        },
                        volume_name: None,
                        resources: PvcResources { requests },
                    },
                },
            }),
            ..Volume::default()
        });
        out.mounts
            .push(mount(&entry.volume_name, &entry.mount_path, None));
    }
    for entry in &config.empty_dir_mounts {
        out.volumes.push(Volume {
            name: entry.volume_name.clone(),
            empty_dir: Some(EmptyDir {
                medium: entry.medium.clone().filter(|m| !m.is_empty()),
                size_limit: entry.size_limit.clone().filter(|s| !s.is_empty()),
            }),
            ..Volume::default()
        });
        out.mounts
            .push(mount(&entry.volume_name, &entry.mount_path, None));
    }
    if let Some(shm) = &config.enabled_shared_memory {
        let name = if shm.volume_name.is_empty() {
            "shm".to_string()
        } else {
            shm.volume_name.clone()
        };
        out.volumes.push(Volume {
            name: name.clone(),
            empty_dir: Some(EmptyDir {
                medium: Some("Memory".into()),
                size_limit: Some(shm.size.clone()).filter(|s| !s.is_empty()),
            }),
            ..Volume::default()
        });
        out.mounts.push(mount(&name, "/dev/shm", None));
    }

    if let Some(selector) = &config.node_selector {
        out.node_selector.extend(selector.labels.clone());
        if let Some(reference) = &selector.node_selector_json {
            if let Some(value) = json_of(&mut out, scope, reference) {
                let labels: BTreeMap<String, String> = serde_json::from_value(value.clone())
                    .map_err(|_| {
                        Error::Platform(format!(
                            "a node selector must be an object of strings, found {value}"
                        ))
                    })?;
                out.node_selector.extend(labels);
            }
        }
    }
    for entry in &config.tolerations {
        if let Some(reference) = &entry.toleration_json {
            let Some(value) = json_of(&mut out, scope, reference) else {
                continue;
            };
            let list = match value {
                Value::Array(items) => items,
                other => vec![other],
            };
            for item in list {
                let toleration: Toleration = serde_json::from_value(item.clone()).map_err(|e| {
                    Error::Platform(format!("toleration {item} cannot be read: {e}"))
                })?;
                out.tolerations.push(toleration);
            }
            continue;
        }
        out.tolerations.push(Toleration {
            key: entry.key.clone().filter(|s| !s.is_empty()),
            operator: entry.operator.clone().filter(|s| !s.is_empty()),
            value: entry.value.clone().filter(|s| !s.is_empty()),
            effect: entry.effect.clone().filter(|s| !s.is_empty()),
            toleration_seconds: entry.toleration_seconds,
        });
    }
    let mut affinity = NodeAffinity::default();
    for entry in &config.node_affinity {
        if let Some(reference) = &entry.node_affinity_json {
            let Some(value) = json_of(&mut out, scope, reference) else {
                continue;
            };
            let given: NodeAffinity = serde_json::from_value(value.clone()).map_err(|e| {
                Error::Platform(format!("node affinity {value} cannot be read: {e}"))
            })?;
            if let Some(required) = given.required_during_scheduling_ignored_during_execution {
                affinity
                    .required_during_scheduling_ignored_during_execution
                    .get_or_insert_with(NodeSelector::default)
                    .node_selector_terms
                    .extend(required.node_selector_terms);
            }
            affinity
                .preferred_during_scheduling_ignored_during_execution
                .extend(given.preferred_during_scheduling_ignored_during_execution);
            continue;
        }
        let term = NodeSelectorTerm {
            match_expressions: requirements(&entry.match_expressions),
            match_fields: requirements(&entry.match_fields),
        };
        match entry.weight {
            Some(weight) => affinity
                .preferred_during_scheduling_ignored_during_execution
                .push(PreferredSchedulingTerm {
                    weight,
                    preference: term,
                }),
            None => affinity
                .required_during_scheduling_ignored_during_execution
                .get_or_insert_with(NodeSelector::default)
                .node_selector_terms
                .push(term),
        }
    }
    let mut pods = PodAffinity::default();
    let mut anti_pods = PodAffinity::default();
    for entry in &config.pod_affinity {
        let term = pod_affinity_term(entry)?;
        let side = if entry.anti.unwrap_or(false) {
            &mut anti_pods
        } else {
            &mut pods
        };
        match entry.weight {
            Some(weight) => side
                .preferred_during_scheduling_ignored_during_execution
                .push(WeightedPodAffinityTerm {
                    weight,
                    pod_affinity_term: term,
                }),
            None => side
                .required_during_scheduling_ignored_during_execution
                .push(term),
        }
    }
    let given = |affinity: PodAffinity| Some(affinity).filter(|a| *a != PodAffinity::default());
    let affinity = Affinity {
        node_affinity: Some(affinity).filter(|a| *a != NodeAffinity::default()),
        pod_affinity: given(pods),
        pod_anti_affinity: given(anti_pods),
    };
    if affinity != Affinity::default() {
        out.affinity = Some(affinity);
    }

    if let Some(meta) = &config.pod_metadata {
        out.metadata.labels.extend(meta.labels.clone());
        out.metadata.annotations.extend(meta.annotations.clone());
    }
    for entry in &config.image_pull_secret {
        if let Some(name) = name_of(
            &mut out,
            scope,
            &entry.secret_name,
            &entry.secret_name_parameter,
            "an image pull secret name",
        )? {
            out.image_pull_secrets.push(name);
        }
    }
    out.image_pull_policy = config.image_pull_policy.clone().filter(|s| !s.is_empty());
    out.active_deadline_seconds = config.active_deadline_seconds.filter(|s| *s > 0);
    out.security_context = config
        .security_context
        .as_ref()
        .map(|context| SecurityContext {
            run_as_user: context.run_as_user,
            run_as_group: context.run_as_group,
            run_as_non_root: context.run_as_non_root,
            ..SecurityContext::default()
        })
        .filter(|context| *context != SecurityContext::default());
    out.init_containers = config
        .init_containers
        .iter()
        .map(|entry| init_container(entry, &out))
        .collect::<Result<_, _>>()?;
    let mut names: Vec<&str> = out
        .init_containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(Error::Platform(format!(
            "two init containers are named {:?}",
            pair[0]
        )));
    }
    Ok(out)
}

fn pod_affinity_term(entry: &PodAffinityConfig) -> Result<PodAffinityTerm, Error> {
    if entry.topology_key.trim().is_empty() {
        return Err(Error::Platform(
            "a pod affinity term needs a topology key (for example kubernetes.io/hostname)"
                .to_string(),
        ));
    }
    let selector = |expressions: &[SelectorRequirement], labels: &BTreeMap<String, String>| {
        let selector = LabelSelector {
            match_expressions: requirements(expressions),
            match_labels: labels.clone(),
        };
        Some(selector).filter(|s| *s != LabelSelector::default())
    };
    Ok(PodAffinityTerm {
        label_selector: selector(&entry.match_pod_expressions, &entry.match_pod_labels),
        namespace_selector: selector(
            &entry.match_namespace_expressions,
            &entry.match_namespace_labels,
        ),
        namespaces: entry.namespaces.clone(),
        topology_key: entry.topology_key.clone(),
    })
}

/// One of the pipeline's init containers. Its mounts name volumes the task's
/// other settings define (an empty dir, an ephemeral volume, a secret's or config
/// map's volume by its generated name), or a mounted PVC by its claim name.
fn init_container(entry: &InitContainerConfig, settings: &PodSettings) -> Result<Container, Error> {
    let name = entry.name.trim();
    if name.is_empty() {
        return Err(Error::Platform("an init container has no name".to_string()));
    }
    if RESERVED_CONTAINERS.contains(&name) {
        return Err(Error::Platform(format!(
            "init container {name:?}: the name is taken by the task pod's own containers ({})",
            RESERVED_CONTAINERS.join(", ")
        )));
    }
    if entry.image.trim().is_empty() {
        return Err(Error::Platform(format!(
            "init container {name:?} has no image"
        )));
    }
    if let Some(policy) = entry.restart_policy.as_deref() {
        if policy != "Always" {
            return Err(Error::Platform(format!(
                "init container {name:?}: restart policy {policy:?} is not supported (only \"Always\", which makes it a sidecar)"
            )));
        }
    }
    let mut mounts = Vec::new();
    for wanted in &entry.volume_mounts {
        let by_name = settings
            .volumes
            .iter()
            .find(|v| v.name == wanted.volume_name);
        let by_claim = || {
            settings.volumes.iter().find(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|claim| claim.claim_name == wanted.volume_name)
            })
        };
        let volume = match by_name.or_else(by_claim) {
            Some(volume) => volume.name.clone(),
            // A volume only named at run time is in the driver's patch; the
            // patch resolves this mount again once it is known.
            None if settings.needs_patch => continue,
            None => {
                return Err(Error::Platform(format!(
                    "init container {name:?} mounts volume {:?}, which the task's pod does not have (define it with a PVC mount, an empty dir or an ephemeral volume)",
                    wanted.volume_name
                )))
            }
        };
        mounts.push(mount(&volume, &wanted.mount_path, None));
    }
    let resources = entry.resources.clone().unwrap_or_default();
    Ok(Container {
        name: name.to_string(),
        image: entry.image.clone(),
        command: entry.command.clone(),
        args: entry.args.clone(),
        env: entry
            .env
            .iter()
            .map(|e| EnvVar::value(&e.name, e.value.clone()))
            .collect(),
        resources: Resources {
            limits: resources.limits,
            requests: resources.requests,
        },
        volume_mounts: mounts,
        restart_policy: entry.restart_policy.clone(),
        ..Container::default()
    })
}

fn items(list: &[ItemConfig]) -> Vec<KeyToPath> {
    list.iter()
        .map(|i| KeyToPath {
            key: i.key.clone(),
            path: i.path.clone(),
        })
        .collect()
}

fn requirements(list: &[SelectorRequirement]) -> Vec<NodeSelectorRequirement> {
    list.iter()
        .map(|r| NodeSelectorRequirement {
            key: r.key.clone(),
            operator: r.operator.clone(),
            values: r.values.clone(),
        })
        .collect()
}

fn mount(volume: &str, path: &str, sub_path: Option<String>) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        sub_path: sub_path.filter(|s| !s.is_empty()),
    }
}
