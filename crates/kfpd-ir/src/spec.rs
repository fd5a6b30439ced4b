//! Typed model of the KFP pipeline IR (`ml_pipelines` package,
//! `pipeline_spec.proto`), as it appears in compiled pipeline files: protobuf's
//! JSON mapping with lowerCamelCase field names.
//!
//! Every message is strict: an unknown field is an error, because a typo such
//! as `components_1` would otherwise silently drop part of a pipeline. Fields
//! that hold `google.protobuf.Struct`/`Value` (default values, constants,
//! metadata, Kubernetes executor configs) stay `serde_json::Value`s.
//!
//! `oneof` groups are modelled as several `Option` fields plus an accessor that
//! returns an enum (`ComponentSpec::implementation`, `ExecutorSpec::kind`,
//! `TaskInputParameterSpec::source`, ...); validation guarantees exactly one is
//! set in a package that was accepted. Serialization omits default values, as
//! protobuf's JSON mapping does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::de::{self, is_default, Labeled};

/// The only IR schema version the KFP backend runs.
pub const SCHEMA_VERSION: &str = "2.1.0";

macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal, default $default:ident {
            $($(#[$vmeta:meta])* $variant:ident = $num:literal => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl Default for $name {
            fn default() -> Self {
                Self::$default
            }
        }

        impl $name {
            /// Every value, in proto number order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The proto enum value name, as written in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The proto enum number.
            pub fn number(self) -> i32 {
                match self {
                    $(Self::$variant => $num,)+
                }
            }

            /// Looks a value up by its proto name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// Looks a value up by its proto number.
            pub fn from_number(number: i64) -> Option<Self> {
                match number {
                    $($num => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            // Protobuf's JSON mapping accepts an enum by name or by number.
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let value = Value::deserialize(d)?;
                let found = match &value {
                    Value::String(s) => Self::from_name(s),
                    Value::Number(n) => n.as_i64().and_then(Self::from_number),
                    Value::Null => Some(Self::default()),
                    _ => None,
                };
                found.ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    D::Error::custom(format!(
                        concat!("unknown ", $what, " {}, expected one of {}"),
                        value,
                        names.join(", ")
                    ))
                })
            }
        }
    };
}

proto_enum! {
    /// `ParameterType.ParameterTypeEnum`: the type of a parameter value.
    ParameterType, "parameter type", default Unspecified {
        /// Not set (only valid together with the legacy `type` field).
        Unspecified = 0 => "PARAMETER_TYPE_ENUM_UNSPECIFIED",
        /// A floating point number.
        NumberDouble = 1 => "NUMBER_DOUBLE",
        /// An integer (carried as a JSON number).
        NumberInteger = 2 => "NUMBER_INTEGER",
        /// A string.
        String = 3 => "STRING",
        /// A boolean.
        Boolean = 4 => "BOOLEAN",
        /// A JSON list.
        List = 5 => "LIST",
        /// A JSON object.
        Struct = 6 => "STRUCT",
        /// `PipelineTaskFinalStatus` of an exit handler's body, filled in by the backend.
        TaskFinalStatus = 7 => "TASK_FINAL_STATUS",
        /// `dsl.TaskConfig`, filled in by the backend.
        TaskConfig = 8 => "TASK_CONFIG",
    }
}

proto_enum! {
    /// Deprecated `PrimitiveType.PrimitiveTypeEnum` (the `type` field of old specs).
    PrimitiveType, "primitive type", default Unspecified {
        /// Not set.
        Unspecified = 0 => "PRIMITIVE_TYPE_UNSPECIFIED",
        /// An integer.
        Int = 1 => "INT",
        /// A floating point number.
        Double = 2 => "DOUBLE",
        /// A string.
        String = 3 => "STRING",
    }
}

proto_enum! {
    /// `PipelineTaskSpec.TriggerPolicy.TriggerStrategy`.
    TriggerStrategy, "trigger strategy", default Unspecified {
        /// Treated like `AllUpstreamTasksSucceeded`.
        Unspecified = 0 => "TRIGGER_STRATEGY_UNSPECIFIED",
        /// Run only if every upstream task succeeded.
        AllUpstreamTasksSucceeded = 1 => "ALL_UPSTREAM_TASKS_SUCCEEDED",
        /// Run once every upstream task finished, whatever its outcome (exit handlers).
        AllUpstreamTasksCompleted = 2 => "ALL_UPSTREAM_TASKS_COMPLETED",
    }
}

proto_enum! {
    /// `TaskConfigPassthroughType.TaskConfigPassthroughTypeEnum` (`dsl.TaskConfig`).
    TaskConfigPassthroughType, "task config passthrough type", default None {
        /// Nothing.
        None = 0 => "NONE",
        /// Resource requests and limits.
        Resources = 1 => "RESOURCES",
        /// Environment variables.
        Env = 2 => "ENV",
        /// Pod affinity.
        KubernetesAffinity = 3 => "KUBERNETES_AFFINITY",
        /// Tolerations.
        KubernetesTolerations = 4 => "KUBERNETES_TOLERATIONS",
        /// Node selector.
        KubernetesNodeSelector = 5 => "KUBERNETES_NODE_SELECTOR",
        /// Volumes and mounts.
        KubernetesVolumes = 6 => "KUBERNETES_VOLUMES",
    }
}

impl ParameterType {
    /// Maps the deprecated primitive type onto the current enum.
    pub fn from_primitive(primitive: PrimitiveType) -> Self {
        match primitive {
            PrimitiveType::Unspecified => ParameterType::Unspecified,
            PrimitiveType::Int => ParameterType::NumberInteger,
            PrimitiveType::Double => ParameterType::NumberDouble,
            PrimitiveType::String => ParameterType::String,
        }
    }
}

// ---------------------------------------------------------------------------
// PipelineSpec

/// `PipelineSpec`: the first document of a compiled pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PipelineSpec {
    /// Name, display name and description.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub pipeline_info: PipelineInfo,
    /// Executors by label (a `Struct` in the proto, decoded as `PipelineDeploymentConfig`).
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub deployment_spec: PipelineDeploymentConfig,
    /// SDK that compiled the file, e.g. `kfp-2.14.6`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sdk_version: String,
    /// IR schema version; the backend accepts only [`SCHEMA_VERSION`].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub schema_version: String,
    /// Every component except the root, by name (`comp-...`).
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub components: BTreeMap<String, ComponentSpec>,
    /// The pipeline itself: a DAG component whose inputs are the run parameters.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub root: ComponentSpec,
    /// Pipeline root chosen at compile time (the backend uses its own configuration).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_pipeline_root: String,
}

impl PipelineSpec {
    /// A component by name, `None` if it does not exist.
    pub fn component(&self, name: &str) -> Option<&ComponentSpec> {
        self.components.get(name)
    }

    /// An executor by label, `None` if it does not exist.
    pub fn executor(&self, label: &str) -> Option<&ExecutorSpec> {
        self.deployment_spec.executors.get(label)
    }

    /// The executor of a component that has one.
    pub fn executor_of(&self, component: &ComponentSpec) -> Option<&ExecutorSpec> {
        match component.implementation()? {
            Implementation::Executor(label) => self.executor(label),
            Implementation::Dag(_) => None,
        }
    }
}

/// `PipelineInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PipelineInfo {
    /// Pipeline name (DNS-label-like; see the validation rules).
    #[serde(
        deserialize_with = "de::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// Human-readable name, if the author set one.
    #[serde(
        deserialize_with = "de::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub display_name: String,
    /// Description, if the author wrote one.
    #[serde(
        deserialize_with = "de::nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
}

impl Labeled for PipelineInfo {
    const FIELD: &'static str = "pipelineInfo";
}

// ---------------------------------------------------------------------------
// Components

/// `ComponentSpec`: inputs, outputs and either a DAG or an executor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComponentSpec {
    /// Declared inputs.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub input_definitions: ComponentInputsSpec,
    /// Declared outputs.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub output_definitions: ComponentOutputsSpec,
    /// `oneof implementation`: a sub-DAG ...
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub dag: Option<DagSpec>,
    /// ... or the label of an executor in `deploymentSpec.executors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor_label: Option<String>,
    /// Platform configuration attached to the component itself (rare).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub single_platform_specs: Vec<SinglePlatformSpec>,
    /// Which `dsl.TaskConfig` fields the component receives instead of the pod.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub task_config_passthroughs: Vec<TaskConfigPassthrough>,
}

impl Labeled for ComponentSpec {
    const ENTRY: &'static str = "component";
    const FIELD: &'static str = "root";
}

/// What a component runs: the `oneof implementation` of [`ComponentSpec`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Implementation<'a> {
    /// A sub-DAG of tasks.
    Dag(&'a DagSpec),
    /// A single executor, by label.
    Executor(&'a str),
}

impl ComponentSpec {
    /// The DAG or executor label; `None` if neither is set (rejected by validation).
    pub fn implementation(&self) -> Option<Implementation<'_>> {
        match (&self.dag, &self.executor_label) {
            (Some(dag), _) => Some(Implementation::Dag(dag)),
            (None, Some(label)) => Some(Implementation::Executor(label)),
            (None, None) => None,
        }
    }
}

/// `TaskConfigPassthrough`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TaskConfigPassthrough {
    /// Which field is passed through.
    #[serde(skip_serializing_if = "is_default")]
    pub field: TaskConfigPassthroughType,
    /// Whether it is also applied to the task's own pod.
    #[serde(skip_serializing_if = "is_default")]
    pub apply_to_task: bool,
}

/// `ComponentInputsSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComponentInputsSpec {
    /// Input artifacts by name.
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub artifacts: BTreeMap<String, ArtifactSpec>,
    /// Input parameters by name.
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub parameters: BTreeMap<String, ParameterSpec>,
}

impl Labeled for ComponentInputsSpec {
    const FIELD: &'static str = "inputDefinitions";
}

/// `ComponentInputsSpec.ParameterSpec`: a declared input parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ParameterSpec {
    /// Deprecated primitive type of old specs; see [`ParameterSpec::effective_type`].
    #[serde(rename = "type", skip_serializing_if = "is_default")]
    pub primitive_type: PrimitiveType,
    /// The parameter type.
    #[serde(skip_serializing_if = "is_default")]
    pub parameter_type: ParameterType,
    /// Default value; `Some(Null)` is a present null default.
    #[serde(
        deserialize_with = "de::present_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_value: Option<Value>,
    /// The input may be left unset.
    #[serde(skip_serializing_if = "is_default")]
    pub is_optional: bool,
    /// Docstring text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Allowed values (`Literal[...]` in Python); empty means unconstrained.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub literals: Vec<Value>,
}

impl Labeled for ParameterSpec {
    const ENTRY: &'static str = "input parameter";
}

impl ParameterSpec {
    /// `parameterType`, falling back to the legacy `type` field.
    pub fn effective_type(&self) -> ParameterType {
        match self.parameter_type {
            ParameterType::Unspecified => ParameterType::from_primitive(self.primitive_type),
            t => t,
        }
    }

    /// A value must be supplied: not optional and no default.
    pub fn is_required(&self) -> bool {
        !self.is_optional && self.default_value.is_none()
    }
}

/// `ComponentInputsSpec.ArtifactSpec`: a declared input artifact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ArtifactSpec {
    /// Artifact type (e.g. `system.Dataset`).
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub artifact_type: ArtifactTypeSchema,
    /// `Input[List[...]]`: the input is a list of artifacts.
    #[serde(skip_serializing_if = "is_default")]
    pub is_artifact_list: bool,
    /// The input may be left unset.
    #[serde(skip_serializing_if = "is_default")]
    pub is_optional: bool,
    /// Docstring text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Labeled for ArtifactSpec {
    const ENTRY: &'static str = "input artifact";
}

/// `ComponentOutputsSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComponentOutputsSpec {
    /// Output artifacts by name.
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub artifacts: BTreeMap<String, OutputArtifactSpec>,
    /// Output parameters by name.
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub parameters: BTreeMap<String, OutputParameterSpec>,
}

impl Labeled for ComponentOutputsSpec {
    const FIELD: &'static str = "outputDefinitions";
}

/// `ComponentOutputsSpec.ParameterSpec`: a declared output parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OutputParameterSpec {
    /// Deprecated primitive type of old specs.
    #[serde(rename = "type", skip_serializing_if = "is_default")]
    pub primitive_type: PrimitiveType,
    /// The parameter type.
    #[serde(skip_serializing_if = "is_default")]
    pub parameter_type: ParameterType,
    /// Docstring text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Labeled for OutputParameterSpec {
    const ENTRY: &'static str = "output parameter";
}

impl OutputParameterSpec {
    /// `parameterType`, falling back to the legacy `type` field.
    pub fn effective_type(&self) -> ParameterType {
        match self.parameter_type {
            ParameterType::Unspecified => ParameterType::from_primitive(self.primitive_type),
            t => t,
        }
    }
}

/// `ComponentOutputsSpec.ArtifactSpec`: a declared output artifact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OutputArtifactSpec {
    /// Artifact type.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub artifact_type: ArtifactTypeSchema,
    /// Deprecated.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, ValueOrRuntimeParameter>,
    /// Deprecated.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_properties: BTreeMap<String, ValueOrRuntimeParameter>,
    /// Metadata set at compile time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// The output is a list of artifacts (`dsl.Collected`).
    #[serde(skip_serializing_if = "is_default")]
    pub is_artifact_list: bool,
    /// Docstring text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Labeled for OutputArtifactSpec {
    const ENTRY: &'static str = "output artifact";
}

/// `ArtifactTypeSchema`: `oneof kind { schema_title | schema_uri | instance_schema }` plus a version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ArtifactTypeSchema {
    /// e.g. `system.Dataset`, `google.VertexModel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_title: Option<String>,
    /// Deprecated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_uri: Option<String>,
    /// Inline YAML schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_schema: Option<String>,
    /// Schema version, e.g. `0.0.1`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub schema_version: String,
}

impl Labeled for ArtifactTypeSchema {
    const FIELD: &'static str = "artifact type";
}

// ---------------------------------------------------------------------------
// DAGs and tasks

/// `DagSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DagSpec {
    /// Tasks by name (the name scopes dependencies within this DAG).
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tasks: BTreeMap<String, PipelineTaskSpec>,
    /// Where the DAG's declared outputs come from.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub outputs: DagOutputsSpec,
}

impl Labeled for DagSpec {
    const FIELD: &'static str = "dag";
}

/// `DagOutputsSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DagOutputsSpec {
    /// Output artifacts by name.
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub artifacts: BTreeMap<String, DagOutputArtifactSpec>,
    /// Output parameters by name.
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub parameters: BTreeMap<String, DagOutputParameterSpec>,
}

impl Labeled for DagOutputsSpec {
    const FIELD: &'static str = "outputs";
}

/// `DagOutputsSpec.DagOutputArtifactSpec`: one or more selectors (more than one = `dsl.OneOf`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DagOutputArtifactSpec {
    /// Candidate producers, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifact_selectors: Vec<ArtifactSelectorSpec>,
}

impl Labeled for DagOutputArtifactSpec {
    const ENTRY: &'static str = "output artifact";
}

/// `DagOutputsSpec.ArtifactSelectorSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ArtifactSelectorSpec {
    /// A task of this DAG.
    pub producer_subtask: String,
    /// Output artifact name of that task's component.
    pub output_artifact_key: String,
}

/// `DagOutputsSpec.DagOutputParameterSpec`: `oneof kind`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DagOutputParameterSpec {
    /// A single producer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from_parameter: Option<ParameterSelectorSpec>,
    /// `dsl.OneOf`: exactly one of the producers is expected to have run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from_oneof: Option<ParameterSelectorsSpec>,
}

impl Labeled for DagOutputParameterSpec {
    const ENTRY: &'static str = "output parameter";
}

impl DagOutputParameterSpec {
    /// The selectors, whichever form was used.
    pub fn selectors(&self) -> Vec<&ParameterSelectorSpec> {
        match (&self.value_from_parameter, &self.value_from_oneof) {
            (Some(one), _) => vec![one],
            (None, Some(many)) => many.parameter_selectors.iter().collect(),
            (None, None) => Vec::new(),
        }
    }
}

/// `DagOutputsSpec.ParameterSelectorSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ParameterSelectorSpec {
    /// A task of this DAG.
    pub producer_subtask: String,
    /// Output parameter name of that task's component.
    pub output_parameter_key: String,
}

/// `DagOutputsSpec.ParameterSelectorsSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ParameterSelectorsSpec {
    /// Candidate producers, in order.
    pub parameter_selectors: Vec<ParameterSelectorSpec>,
}

/// `PipelineTaskSpec`: one node of a DAG.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PipelineTaskSpec {
    /// Display name.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub task_info: PipelineTaskInfo,
    /// Where each input comes from.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub inputs: TaskInputsSpec,
    /// Tasks of the same DAG that must finish first (`.after()` and data producers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependent_tasks: Vec<String>,
    /// Cache settings; an absent message means caching off, as in the proto.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub caching_options: CachingOptions,
    /// The component this task instantiates.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub component_ref: ComponentRef,
    /// Condition (CEL) and upstream-outcome strategy.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub trigger_policy: Option<TriggerPolicy>,
    /// `oneof iterator`: loop over a list of artifacts ...
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_iterator: Option<ArtifactIteratorSpec>,
    /// ... or over a list of parameter values.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub parameter_iterator: Option<ParameterIteratorSpec>,
    /// Retries of a failed task.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_policy: Option<RetryPolicy>,
    /// Loop parallelism.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub iterator_policy: Option<IteratorPolicy>,
}

impl Labeled for PipelineTaskSpec {
    const ENTRY: &'static str = "task";
}

impl PipelineTaskSpec {
    /// Every task of the same DAG this task waits for: explicit `dependentTasks`
    /// plus the producers of its inputs (the Argo compiler adds those too).
    pub fn upstream_tasks(&self) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self.dependent_tasks.iter().map(String::as_str).collect();
        for param in self.inputs.parameters.values() {
            if let Some(p) = &param.task_output_parameter {
                out.insert(&p.producer_task);
            }
            if let Some(s) = &param.task_final_status {
                out.insert(&s.producer_task);
            }
        }
        for art in self.inputs.artifacts.values() {
            if let Some(a) = &art.task_output_artifact {
                out.insert(&a.producer_task);
            }
        }
        out
    }

    /// The trigger strategy, `Unspecified` when there is no trigger policy.
    pub fn trigger_strategy(&self) -> TriggerStrategy {
        self.trigger_policy
            .as_ref()
            .map(|p| p.strategy)
            .unwrap_or_default()
    }

    /// The CEL condition, if any.
    pub fn condition(&self) -> Option<&str> {
        self.trigger_policy
            .as_ref()
            .map(|p| p.condition.as_str())
            .filter(|c| !c.is_empty())
    }
}

/// `PipelineTaskInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PipelineTaskInfo {
    /// Display name of the task.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl Labeled for PipelineTaskInfo {
    const FIELD: &'static str = "taskInfo";
}

/// `ComponentRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComponentRef {
    /// Key into `PipelineSpec.components`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl Labeled for ComponentRef {
    const FIELD: &'static str = "componentRef";
}

/// `PipelineTaskSpec.CachingOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CachingOptions {
    /// Reuse a previous execution with the same fingerprint.
    #[serde(skip_serializing_if = "is_default")]
    pub enable_cache: bool,
    /// Extra cache key text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cache_key: String,
}

impl Labeled for CachingOptions {
    const FIELD: &'static str = "cachingOptions";
}

/// `PipelineTaskSpec.TriggerPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TriggerPolicy {
    /// CEL expression over the task's inputs; empty means always.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub condition: String,
    /// Which upstream outcomes allow the task to run.
    #[serde(skip_serializing_if = "is_default")]
    pub strategy: TriggerStrategy,
}

impl Labeled for TriggerPolicy {
    const FIELD: &'static str = "triggerPolicy";
}

/// `PipelineTaskSpec.RetryPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    #[serde(deserialize_with = "de::int", skip_serializing_if = "is_default")]
    pub max_retry_count: i32,
    /// `google.protobuf.Duration` text, e.g. `0s`; see [`parse_duration_secs`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_duration: Option<String>,
    /// Backoff multiplier (the backend uses 2 when unset).
    #[serde(
        deserialize_with = "de::opt_double",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff_factor: Option<f64>,
    /// Upper bound of the backoff (the backend uses 1h when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max_duration: Option<String>,
}

impl Labeled for RetryPolicy {
    const FIELD: &'static str = "retryPolicy";
}

/// `PipelineTaskSpec.IteratorPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IteratorPolicy {
    /// Iterations running at once; 0 means unlimited.
    #[serde(deserialize_with = "de::int", skip_serializing_if = "is_default")]
    pub parallelism_limit: i32,
}

impl Labeled for IteratorPolicy {
    const FIELD: &'static str = "iteratorPolicy";
}

/// `ArtifactIteratorSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ArtifactIteratorSpec {
    /// Which input artifact list to iterate.
    pub items: ArtifactIteratorItems,
    /// Input name each iteration receives its item as.
    pub item_input: String,
}

impl Labeled for ArtifactIteratorSpec {
    const FIELD: &'static str = "artifactIterator";
}

/// `ArtifactIteratorSpec.ItemsSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ArtifactIteratorItems {
    /// Name of one of the task's input artifacts.
    pub input_artifact: String,
}

/// `ParameterIteratorSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ParameterIteratorSpec {
    /// Where the list comes from.
    pub items: ParameterIteratorItems,
    /// Input name each iteration receives its item as.
    pub item_input: String,
}

impl Labeled for ParameterIteratorSpec {
    const FIELD: &'static str = "parameterIterator";
}

/// `ParameterIteratorSpec.ItemsSpec`: `oneof kind`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ParameterIteratorItems {
    /// A JSON array as text (static `ParallelFor` list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Name of one of the task's input parameters that holds the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_parameter: Option<String>,
}

/// `TaskInputsSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TaskInputsSpec {
    /// Parameter inputs by name.
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub parameters: BTreeMap<String, TaskInputParameterSpec>,
    /// Artifact inputs by name.
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub artifacts: BTreeMap<String, TaskInputArtifactSpec>,
}

impl Labeled for TaskInputsSpec {
    const FIELD: &'static str = "inputs";
}

/// `TaskInputsSpec.InputParameterSpec`: `oneof kind` plus an optional selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TaskInputParameterSpec {
    /// Output of a task of the same DAG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_output_parameter: Option<TaskOutputParameterSpec>,
    /// A constant (or, in old specs, a runtime parameter name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_value: Option<ValueOrRuntimeParameter>,
    /// Input parameter of the enclosing (parent) component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_input_parameter: Option<String>,
    /// Final status of a task of the same DAG (exit handlers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_final_status: Option<TaskFinalStatusSpec>,
    /// CEL expression applied to the resolved value (e.g. a loop item's field).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parameter_expression_selector: String,
}

impl Labeled for TaskInputParameterSpec {
    const ENTRY: &'static str = "input parameter";
}

/// Where a task's input parameter comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParameterSource<'a> {
    /// Parent component input of this name.
    ComponentInput(&'a str),
    /// Output of a sibling task.
    TaskOutput(&'a TaskOutputParameterSpec),
    /// A constant or legacy runtime parameter.
    RuntimeValue(&'a ValueOrRuntimeParameter),
    /// Final status of a sibling task.
    TaskFinalStatus(&'a TaskFinalStatusSpec),
}

impl TaskInputParameterSpec {
    /// The set member of `oneof kind`; `None` if none is set (rejected by validation).
    pub fn source(&self) -> Option<ParameterSource<'_>> {
        if let Some(p) = &self.task_output_parameter {
            Some(ParameterSource::TaskOutput(p))
        } else if let Some(v) = &self.runtime_value {
            Some(ParameterSource::RuntimeValue(v))
        } else if let Some(c) = &self.component_input_parameter {
            Some(ParameterSource::ComponentInput(c))
        } else {
            self.task_final_status
                .as_ref()
                .map(ParameterSource::TaskFinalStatus)
        }
    }

    pub(crate) fn kinds_set(&self) -> usize {
        usize::from(self.task_output_parameter.is_some())
            + usize::from(self.runtime_value.is_some())
            + usize::from(self.component_input_parameter.is_some())
            + usize::from(self.task_final_status.is_some())
    }
}

/// `TaskInputsSpec.InputParameterSpec.TaskOutputParameterSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TaskOutputParameterSpec {
    /// A task of the same DAG.
    pub producer_task: String,
    /// Output parameter name of that task's component.
    pub output_parameter_key: String,
}

/// `TaskInputsSpec.InputParameterSpec.TaskFinalStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TaskFinalStatusSpec {
    /// A task of the same DAG (usually `exit-handler-N`).
    pub producer_task: String,
}

/// `TaskInputsSpec.InputArtifactSpec`: `oneof kind`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TaskInputArtifactSpec {
    /// Output of a task of the same DAG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_output_artifact: Option<TaskOutputArtifactSpec>,
    /// Input artifact of the enclosing (parent) component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_input_artifact: Option<String>,
}

impl Labeled for TaskInputArtifactSpec {
    const ENTRY: &'static str = "input artifact";
}

/// Where a task's input artifact comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArtifactSource<'a> {
    /// Parent component input of this name.
    ComponentInput(&'a str),
    /// Output of a sibling task.
    TaskOutput(&'a TaskOutputArtifactSpec),
}

impl TaskInputArtifactSpec {
    /// The set member of `oneof kind`; `None` if none is set (rejected by validation).
    pub fn source(&self) -> Option<ArtifactSource<'_>> {
        if let Some(a) = &self.task_output_artifact {
            Some(ArtifactSource::TaskOutput(a))
        } else {
            self.component_input_artifact
                .as_deref()
                .map(ArtifactSource::ComponentInput)
        }
    }
}

/// `TaskInputsSpec.InputArtifactSpec.TaskOutputArtifactSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TaskOutputArtifactSpec {
    /// A task of the same DAG.
    pub producer_task: String,
    /// Output artifact name of that task's component.
    pub output_artifact_key: String,
}

/// `ValueOrRuntimeParameter`: `oneof value`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ValueOrRuntimeParameter {
    /// Deprecated typed constant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constant_value: Option<LegacyValue>,
    /// Name of an input (of the task, for importers) that holds the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_parameter: Option<String>,
    /// A constant; `Some(Null)` is a present null.
    #[serde(
        deserialize_with = "de::present_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub constant: Option<Value>,
}

impl ValueOrRuntimeParameter {
    /// The constant as a JSON value, converting the deprecated typed form.
    pub fn constant_json(&self) -> Option<Value> {
        if let Some(c) = &self.constant {
            return Some(c.clone());
        }
        self.constant_value.as_ref().and_then(LegacyValue::to_json)
    }

    pub(crate) fn kinds_set(&self) -> usize {
        usize::from(self.constant_value.is_some())
            + usize::from(self.runtime_parameter.is_some())
            + usize::from(self.constant.is_some())
    }
}

/// Deprecated `ml_pipelines.Value`: `oneof value { int_value | double_value | string_value }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LegacyValue {
    /// Integer form (int64; a string in JSON by protobuf convention).
    #[serde(
        deserialize_with = "de::opt_int64",
        serialize_with = "de::opt_int64_as_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub int_value: Option<i64>,
    /// Double form.
    #[serde(
        deserialize_with = "de::opt_double",
        skip_serializing_if = "Option::is_none"
    )]
    pub double_value: Option<f64>,
    /// String form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
}

impl LegacyValue {
    /// The value as JSON, `None` if no member is set.
    pub fn to_json(&self) -> Option<Value> {
        if let Some(i) = self.int_value {
            Some(Value::from(i))
        } else if let Some(d) = self.double_value {
            serde_json::Number::from_f64(d).map(Value::Number)
        } else {
            self.string_value.clone().map(Value::String)
        }
    }
}

// ---------------------------------------------------------------------------
// Executors

/// `PipelineDeploymentConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PipelineDeploymentConfig {
    /// Executors by label (`exec-...`).
    #[serde(
        deserialize_with = "de::labeled_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub executors: BTreeMap<String, ExecutorSpec>,
}

impl Labeled for PipelineDeploymentConfig {
    const FIELD: &'static str = "deploymentSpec";
}

/// `PipelineDeploymentConfig.ExecutorSpec`: `oneof spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExecutorSpec {
    /// Run a container.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub container: Option<PipelineContainerSpec>,
    /// Register an existing artifact (`dsl.importer`).
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub importer: Option<ImporterSpec>,
    /// Query artifacts from metadata (not implemented by the KFP backend).
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolver: Option<ResolverSpec>,
    /// Deprecated Vertex AI custom job.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_job: Option<CustomJobSpec>,
}

impl Labeled for ExecutorSpec {
    const ENTRY: &'static str = "executor";
}

/// What an executor does: the `oneof spec` of [`ExecutorSpec`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExecutorKind<'a> {
    /// Run a container.
    Container(&'a PipelineContainerSpec),
    /// Import an artifact.
    Importer(&'a ImporterSpec),
    /// Resolve artifacts.
    Resolver(&'a ResolverSpec),
    /// Deprecated Vertex AI custom job.
    CustomJob(&'a CustomJobSpec),
}

impl ExecutorSpec {
    /// The set member of `oneof spec`; `None` if none is set (rejected by validation).
    pub fn kind(&self) -> Option<ExecutorKind<'_>> {
        if let Some(c) = &self.container {
            Some(ExecutorKind::Container(c))
        } else if let Some(i) = &self.importer {
            Some(ExecutorKind::Importer(i))
        } else if let Some(r) = &self.resolver {
            Some(ExecutorKind::Resolver(r))
        } else {
            self.custom_job.as_ref().map(ExecutorKind::CustomJob)
        }
    }

    pub(crate) fn kinds_set(&self) -> usize {
        usize::from(self.container.is_some())
            + usize::from(self.importer.is_some())
            + usize::from(self.resolver.is_some())
            + usize::from(self.custom_job.is_some())
    }
}

/// `PipelineDeploymentConfig.PipelineContainerSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PipelineContainerSpec {
    /// Container image (may contain placeholders).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Entrypoint; elements may be placeholders or `Concat`/`IfPresent` JSON.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments; same placeholder rules as `command`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Unused by the backend.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub lifecycle: Option<Lifecycle>,
    /// Resource requests, limits and accelerators.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub resources: Option<ResourceSpec>,
    /// Environment variables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

impl Labeled for PipelineContainerSpec {
    const FIELD: &'static str = "container";
}

/// `PipelineContainerSpec.Lifecycle`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Lifecycle {
    /// Command run before the cache check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_cache_check: Option<LifecycleExec>,
}

impl Labeled for Lifecycle {
    const FIELD: &'static str = "lifecycle";
}

/// `PipelineContainerSpec.Lifecycle.Exec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LifecycleExec {
    /// Entrypoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// `PipelineContainerSpec.ResourceSpec`. The string fields are Kubernetes
/// quantities or placeholders; the numeric ones are deprecated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourceSpec {
    /// Deprecated CPU limit in cores.
    #[serde(deserialize_with = "de::double", skip_serializing_if = "is_default")]
    pub cpu_limit: f64,
    /// Deprecated memory limit in GB.
    #[serde(deserialize_with = "de::double", skip_serializing_if = "is_default")]
    pub memory_limit: f64,
    /// Deprecated CPU request in cores.
    #[serde(deserialize_with = "de::double", skip_serializing_if = "is_default")]
    pub cpu_request: f64,
    /// Deprecated memory request in GB.
    #[serde(deserialize_with = "de::double", skip_serializing_if = "is_default")]
    pub memory_request: f64,
    /// e.g. `1000m`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_cpu_limit: String,
    /// e.g. `256Mi`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_memory_limit: String,
    /// CPU request quantity.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_cpu_request: String,
    /// Memory request quantity.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_memory_request: String,
    /// GPU or other accelerator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<AcceleratorConfig>,
}

impl Labeled for ResourceSpec {
    const FIELD: &'static str = "resources";
}

/// `PipelineContainerSpec.ResourceSpec.AcceleratorConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AcceleratorConfig {
    /// Deprecated form of `resource_type`.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub accelerator_type: String,
    /// Deprecated form of `resource_count`.
    #[serde(
        deserialize_with = "de::int",
        serialize_with = "de::int64_as_string",
        skip_serializing_if = "is_default"
    )]
    pub count: i64,
    /// e.g. `nvidia.com/gpu`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_type: String,
    /// Count as a string (may be a placeholder).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_count: String,
}

/// `PipelineContainerSpec.EnvVar`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Value (may contain placeholders).
    pub value: String,
}

/// `PipelineDeploymentConfig.ImporterSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ImporterSpec {
    /// The URI, constant or from a task input (`runtimeParameter`).
    #[serde(skip_serializing_if = "is_default")]
    pub artifact_uri: ValueOrRuntimeParameter,
    /// Type of the imported artifact.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub type_schema: ArtifactTypeSchema,
    /// Deprecated.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, ValueOrRuntimeParameter>,
    /// Deprecated.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_properties: BTreeMap<String, ValueOrRuntimeParameter>,
    /// Import again even if an artifact with this URI exists.
    #[serde(skip_serializing_if = "is_default")]
    pub reimport: bool,
    /// Metadata of the artifact; values may be placeholders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Copy the artifact into the run's workspace.
    #[serde(skip_serializing_if = "is_default")]
    pub download_to_workspace: bool,
}

impl Labeled for ImporterSpec {
    const FIELD: &'static str = "importer";
}

/// `PipelineDeploymentConfig.ResolverSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResolverSpec {
    /// Queries by output artifact name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output_artifact_queries: BTreeMap<String, ArtifactQuerySpec>,
}

impl Labeled for ResolverSpec {
    const FIELD: &'static str = "resolver";
}

/// `PipelineDeploymentConfig.ResolverSpec.ArtifactQuerySpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ArtifactQuerySpec {
    /// Metadata filter expression.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Maximum number of artifacts.
    #[serde(deserialize_with = "de::int", skip_serializing_if = "is_default")]
    pub limit: i32,
}

/// `PipelineDeploymentConfig.AIPlatformCustomJobSpec` (deprecated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CustomJobSpec {
    /// The Vertex AI job, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_job: Option<Map<String, Value>>,
}

impl Labeled for CustomJobSpec {
    const FIELD: &'static str = "customJob";
}

// ---------------------------------------------------------------------------
// Platform spec

/// `PlatformSpec`: the optional second document (`platforms:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PlatformSpec {
    /// Configuration per platform; the backend reads `kubernetes`.
    #[serde(deserialize_with = "de::labeled_map")]
    pub platforms: BTreeMap<String, SinglePlatformSpec>,
}

impl PlatformSpec {
    /// The `kubernetes` platform, if present.
    pub fn kubernetes(&self) -> Option<&SinglePlatformSpec> {
        self.platforms.get("kubernetes")
    }
}

/// `SinglePlatformSpec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SinglePlatformSpec {
    /// Per-executor configuration.
    #[serde(deserialize_with = "de::labeled", skip_serializing_if = "is_default")]
    pub deployment_spec: PlatformDeploymentConfig,
    /// Platform name (used in component-level platform specs).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// Free-form configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Map<String, Value>>,
    /// Pipeline-wide settings (workspace, TTLs).
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pipeline_config: Option<PipelineConfig>,
}

impl Labeled for SinglePlatformSpec {
    const ENTRY: &'static str = "platform";
}

/// `PlatformDeploymentConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PlatformDeploymentConfig {
    /// Platform executor config (e.g. `KubernetesExecutorConfig`) by executor label.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub executors: BTreeMap<String, Map<String, Value>>,
}

impl Labeled for PlatformDeploymentConfig {
    const FIELD: &'static str = "deploymentSpec";
}

/// `PipelineConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Seconds to keep resources after completion.
    #[serde(deserialize_with = "de::int", skip_serializing_if = "is_default")]
    pub resource_ttl_on_completion: i32,
    /// Shared workspace volume.
    #[serde(
        deserialize_with = "de::labeled_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub workspace: Option<WorkspaceConfig>,
    /// Seconds to keep resources after success.
    #[serde(deserialize_with = "de::int", skip_serializing_if = "is_default")]
    pub resource_ttl_on_success: i32,
    /// Seconds to keep resources after failure.
    #[serde(deserialize_with = "de::int", skip_serializing_if = "is_default")]
    pub resource_ttl_on_failure: i32,
    /// Run deadline in seconds.
    #[serde(deserialize_with = "de::int", skip_serializing_if = "is_default")]
    pub active_deadline_seconds: i32,
}

impl Labeled for PipelineConfig {
    const FIELD: &'static str = "pipelineConfig";
}

/// `WorkspaceConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkspaceConfig {
    /// Volume size, e.g. `1Gi`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub size: String,
    /// Kubernetes specifics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesWorkspaceConfig>,
}

impl Labeled for WorkspaceConfig {
    const FIELD: &'static str = "workspace";
}

/// `KubernetesWorkspaceConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KubernetesWorkspaceConfig {
    /// Patch applied to the workspace PVC spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvc_spec_patch: Option<Map<String, Value>>,
}

// ---------------------------------------------------------------------------
// Helpers

/// Seconds in a `google.protobuf.Duration` JSON string (`"3600s"`, `"0.5s"`).
pub fn parse_duration_secs(text: &str) -> Option<f64> {
    let number = text.strip_suffix('s')?;
    if number.is_empty() || number.starts_with('+') {
        return None;
    }
    let secs: f64 = number.parse().ok()?;
    secs.is_finite().then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_accept_names_and_numbers() {
        let t: ParameterType = serde_json::from_value(json!("NUMBER_INTEGER")).unwrap();
        assert_eq!(t, ParameterType::NumberInteger);
        let t: ParameterType = serde_json::from_value(json!(6)).unwrap();
        assert_eq!(t, ParameterType::Struct);
        let err = serde_json::from_value::<ParameterType>(json!("INTEGER")).unwrap_err();
        assert!(err
            .to_string()
            .contains("unknown parameter type \"INTEGER\""));
        assert_eq!(
            serde_json::to_value(TriggerStrategy::AllUpstreamTasksCompleted).unwrap(),
            json!("ALL_UPSTREAM_TASKS_COMPLETED")
        );
    }

    #[test]
    fn legacy_type_maps_to_parameter_type() {
        let p: ParameterSpec = serde_json::from_value(json!({"type": "INT"})).unwrap();
        assert_eq!(p.effective_type(), ParameterType::NumberInteger);
        assert!(p.is_required());
        let p: ParameterSpec =
            serde_json::from_value(json!({"parameterType": "STRING", "defaultValue": null}))
                .unwrap();
        assert_eq!(p.default_value, Some(Value::Null));
        assert!(!p.is_required());
    }

    #[test]
    fn unknown_fields_name_their_place() {
        let err = serde_json::from_value::<PipelineSpec>(json!({
            "components": {"comp-a": {"dag": {"tasks": {"t": {"inputs": {"parameters": {
                "x": {"componentInputParameter": "x", "bogus": 1}}}}}}}}
        }))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "component \"comp-a\": dag: task \"t\": inputs: input parameter \"x\": unknown field `bogus`"
            ),
            "{err}"
        );
    }

    #[test]
    fn numbers_accept_protobuf_json_forms() {
        let a: AcceleratorConfig = serde_json::from_value(json!({"count": "2"})).unwrap();
        assert_eq!(a.count, 2);
        let r: RetryPolicy =
            serde_json::from_value(json!({"maxRetryCount": 3.0, "backoffFactor": "1.5"})).unwrap();
        assert_eq!((r.max_retry_count, r.backoff_factor), (3, Some(1.5)));
        assert!(serde_json::from_value::<RetryPolicy>(json!({"maxRetryCount": 1.5})).is_err());
    }

    #[test]
    fn serialization_omits_defaults() {
        let task: PipelineTaskSpec = serde_json::from_value(json!({
            "componentRef": {"name": "comp-a"},
            "cachingOptions": {},
            "taskInfo": {"name": "a"}
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&task).unwrap(),
            json!({"componentRef": {"name": "comp-a"}, "taskInfo": {"name": "a"}})
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("3600s"), Some(3600.0));
        assert_eq!(parse_duration_secs("0.5s"), Some(0.5));
        assert_eq!(parse_duration_secs("10"), None);
        assert_eq!(parse_duration_secs("s"), None);
    }
}
