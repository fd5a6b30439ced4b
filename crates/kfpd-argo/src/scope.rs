//! What the compiler knows about parameter values when it compiles a run.
//!
//! The server compiles each run with its parameters, so a value that comes from a
//! run parameter or a constant is known and goes into the Workflow as it is; one
//! that comes from a task's output, a loop item or run metadata is known only at
//! run time, when the driver request resolves it.

use std::collections::BTreeMap;

use kfpd_ir::spec::{
    ComponentSpec, DagSpec, ExecutorKind, ParameterSource, PipelineSpec, PipelineTaskSpec,
    TaskInputParameterSpec,
};
use serde_json::{Map, Value};

/// Image of the placeholder component `kfp.kubernetes.CreatePVC` compiles to.
pub const CREATE_PVC_IMAGE: &str = "argostub/createpvc";
/// Image of the placeholder component `kfp.kubernetes.DeletePVC` compiles to.
pub const DELETE_PVC_IMAGE: &str = "argostub/deletepvc";

/// A parameter value as the compiler sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// Known when the run is compiled (`Null`: an optional input left unset).
    Known(Value),
    /// Known only when the task is driven.
    Runtime,
}

impl Bound {
    /// A constant, unless it is a run-metadata placeholder (`{{$.pipeline_job_name}}` …)
    /// that only the driver resolves.
    pub fn constant(value: Value) -> Bound {
        match &value {
            Value::String(s) if s.contains("{{$") => Bound::Runtime,
            _ => Bound::Known(value),
        }
    }
}

/// The inputs of one DAG instance and the tasks beside them.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    spec: &'a PipelineSpec,
    dag: Option<&'a DagSpec>,
    inputs: BTreeMap<String, Bound>,
    /// When the task is driven: its sibling tasks' output parameters.
    outputs: BTreeMap<String, Map<String, Value>>,
    /// When the task is driven: its resolved input parameters.
    task_inputs: Option<Map<String, Value>>,
}

impl<'a> Scope<'a> {
    /// The root DAG's scope: run parameters, else defaults.
    pub fn root(spec: &'a PipelineSpec, parameters: &Map<String, Value>) -> Scope<'a> {
        let mut inputs = BTreeMap::new();
        for (name, declared) in &spec.root.input_definitions.parameters {
            let bound = match (parameters.get(name), &declared.default_value) {
                (Some(given), _) => Bound::Known(given.clone()),
                (None, Some(default)) => Bound::Known(default.clone()),
                (None, None) if declared.is_optional => Bound::Known(Value::Null),
                (None, None) => Bound::Runtime,
            };
            inputs.insert(name.clone(), bound);
        }
        Scope {
            spec,
            dag: spec.root.dag.as_ref(),
            inputs,
            outputs: BTreeMap::new(),
            task_inputs: None,
        }
    }

    /// The scope of one task being driven, where every value is known: the inputs
    /// of the DAG instance it is in, its siblings' outputs and its own inputs.
    pub fn driven(
        spec: &'a PipelineSpec,
        dag: &'a DagSpec,
        dag_inputs: &Map<String, Value>,
        sibling_outputs: BTreeMap<String, Map<String, Value>>,
        task_inputs: Map<String, Value>,
    ) -> Scope<'a> {
        Scope {
            spec,
            dag: Some(dag),
            inputs: dag_inputs
                .iter()
                .map(|(name, value)| (name.clone(), Bound::Known(value.clone())))
                .collect(),
            outputs: sibling_outputs,
            task_inputs: Some(task_inputs),
        }
    }

    /// The scope inside DAG task `task` (component `component`); `item_input` is the
    /// loop item's input name when the task is a loop.
    pub fn child(
        &self,
        task: &PipelineTaskSpec,
        component: &'a ComponentSpec,
        item_input: Option<&str>,
    ) -> Scope<'a> {
        let mut inputs = BTreeMap::new();
        for name in component.input_definitions.parameters.keys() {
            let bound = if Some(name.as_str()) == item_input {
                Bound::Runtime
            } else {
                self.task_input(task, component, name)
            };
            inputs.insert(name.clone(), bound);
        }
        Scope {
            spec: self.spec,
            dag: component.dag.as_ref(),
            inputs,
            outputs: BTreeMap::new(),
            task_inputs: None,
        }
    }

    /// An input of this DAG instance.
    pub fn input(&self, name: &str) -> Bound {
        self.inputs.get(name).cloned().unwrap_or(Bound::Runtime)
    }

    /// The value of input `name` of `task` (component `component`), bound in this
    /// scope, else the component's default.
    pub fn task_input(
        &self,
        task: &PipelineTaskSpec,
        component: &ComponentSpec,
        name: &str,
    ) -> Bound {
        if let Some(known) = &self.task_inputs {
            return Bound::Known(known.get(name).cloned().unwrap_or(Value::Null));
        }
        if let Some(binding) = task.inputs.parameters.get(name) {
            return self.binding(binding);
        }
        match component.input_definitions.parameters.get(name) {
            Some(declared) => match &declared.default_value {
                Some(default) => Bound::Known(default.clone()),
                None if declared.is_optional => Bound::Known(Value::Null),
                None => Bound::Runtime,
            },
            None => Bound::Runtime,
        }
    }

    fn binding(&self, binding: &TaskInputParameterSpec) -> Bound {
        if !binding.parameter_expression_selector.is_empty() {
            return Bound::Runtime;
        }
        match binding.source() {
            Some(ParameterSource::ComponentInput(name)) => self.input(name),
            Some(ParameterSource::RuntimeValue(value)) => match value.constant_json() {
                Some(constant) => Bound::constant(constant),
                None => Bound::Runtime,
            },
            Some(ParameterSource::TaskOutput(output)) => {
                self.task_output(&output.producer_task, &output.output_parameter_key)
            }
            Some(ParameterSource::TaskFinalStatus(_)) | None => Bound::Runtime,
        }
    }

    /// An output of a task of this DAG: when compiling, known only for
    /// `CreatePVC`'s `name`.
    pub fn task_output(&self, producer: &str, key: &str) -> Bound {
        if let Some(outputs) = self.outputs.get(producer) {
            return Bound::Known(outputs.get(key).cloned().unwrap_or(Value::Null));
        }
        let Some(task) = self.dag.and_then(|d| d.tasks.get(producer)) else {
            return Bound::Runtime;
        };
        let Some(component) = self.spec.component(&task.component_ref.name) else {
            return Bound::Runtime;
        };
        if key != "name" || placeholder_image(self.spec, component) != Some(CREATE_PVC_IMAGE) {
            return Bound::Runtime;
        }
        self.pvc_name(task, component)
    }

    /// The name of the PVC a `CreatePVC` task makes: `pvc_name`, else the
    /// Workflow's name followed by `pvc_name_suffix`.
    pub fn pvc_name(&self, task: &PipelineTaskSpec, component: &ComponentSpec) -> Bound {
        match self.task_input(task, component, "pvc_name") {
            Bound::Known(Value::String(name)) if !name.is_empty() => {
                return Bound::Known(Value::String(name))
            }
            Bound::Runtime => return Bound::Runtime,
            Bound::Known(_) => {}
        }
        match self.task_input(task, component, "pvc_name_suffix") {
            Bound::Known(Value::String(suffix)) => {
                Bound::Known(Value::String(format!("{{{{workflow.name}}}}{suffix}")))
            }
            Bound::Known(Value::Null) => Bound::Known(Value::String("{{workflow.name}}".into())),
            _ => Bound::Runtime,
        }
    }
}

/// The image of a container component, when it is one of the PVC placeholders.
pub fn placeholder_image<'s>(spec: &'s PipelineSpec, component: &ComponentSpec) -> Option<&'s str> {
    let executor = spec.executor_of(component)?;
    match executor.kind()? {
        ExecutorKind::Container(container)
            if container.image == CREATE_PVC_IMAGE || container.image == DELETE_PVC_IMAGE =>
        {
            Some(container.image.as_str())
        }
        _ => None,
    }
}
