//! Checks beyond the shape of the spec: the rules upstream's API server
//! applies at upload (schema version, name, root), plus reference and cycle
//! checks that would otherwise only fail once a run is under way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::params;
use crate::spec::{
    parse_duration_secs, ArtifactTypeSchema, ComponentSpec, DagSpec, ExecutorSpec, ParameterType,
    PipelineSpec, PipelineTaskSpec, PlatformSpec, SCHEMA_VERSION,
};

/// The SDK's rule for pipeline names (also a valid Kubernetes label value).
fn name_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r"^[a-z0-9][a-z0-9-]{0,127}$").expect("the pipeline name pattern is valid")
    })
}

type Result<T = ()> = std::result::Result<T, Error>;

/// Validates a deserialized pipeline spec; `raw` is the same spec as JSON, used
/// to tell an absent `root` from an empty one.
pub(crate) fn pipeline(spec: &PipelineSpec, raw: &Map<String, Value>) -> Result {
    if spec.schema_version.is_empty() {
        return Err(Error::spec(format!(
            "schemaVersion is missing; KFP supports only schema version {SCHEMA_VERSION}"
        )));
    }
    if spec.schema_version != SCHEMA_VERSION {
        return Err(Error::spec(format!(
            "KFP supports only schema version {SCHEMA_VERSION}, but the pipeline spec has version {:?}; \
             compile the pipeline with a KFP SDK 2.x",
            spec.schema_version
        )));
    }
    let name = &spec.pipeline_info.name;
    if name.is_empty() {
        return Err(Error::spec("pipelineInfo.name is empty"));
    }
    if !name_pattern().is_match(name) {
        return Err(Error::spec(format!(
            "pipelineInfo.name {name:?} is invalid: it must be 1 to 128 characters of lowercase \
             letters, digits and '-', starting with a letter or digit"
        )));
    }
    if matches!(raw.get("root"), None | Some(Value::Null)) {
        return Err(Error::spec("root component is missing"));
    }
    if spec.root.dag.is_none() {
        return Err(Error::spec(
            "root component has no dag; the root of a pipeline must be a DAG",
        ));
    }

    for (label, executor) in &spec.deployment_spec.executors {
        check_executor(label, executor)?;
    }
    check_component(spec, None, &spec.root)?;
    for (name, component) in &spec.components {
        check_component(spec, Some(name), component)?;
    }
    check_component_cycles(spec)?;
    Ok(())
}

/// Validates a platform spec against the pipeline spec it came with.
pub(crate) fn platform(platform: &PlatformSpec, spec: &PipelineSpec) -> Result {
    for (name, single) in &platform.platforms {
        for label in single.deployment_spec.executors.keys() {
            if !spec.deployment_spec.executors.contains_key(label) {
                return Err(Error::platform(format!(
                    "{name}: configuration for unknown executor {label:?}; executors are keyed by the \
                     labels in the pipeline spec's deploymentSpec"
                )));
            }
        }
    }
    Ok(())
}

fn check_type_schema(place: &str, schema: &ArtifactTypeSchema) -> Result {
    let set = [
        &schema.schema_title,
        &schema.schema_uri,
        &schema.instance_schema,
    ]
    .iter()
    .filter(|s| s.is_some())
    .count();
    if set > 1 {
        return Err(Error::spec(format!(
            "{place}: only one of schemaTitle, schemaUri and instanceSchema may be set"
        )));
    }
    Ok(())
}

fn check_executor(label: &str, executor: &ExecutorSpec) -> Result {
    let place = format!("executor {label:?}");
    match executor.kinds_set() {
        0 => {
            return Err(Error::spec(format!(
                "{place} is empty; it needs a container, importer, resolver or customJob"
            )))
        }
        1 => {}
        _ => {
            return Err(Error::spec(format!(
                "{place} sets more than one of container, importer, resolver and customJob"
            )))
        }
    }
    if let Some(container) = &executor.container {
        if container.image.trim().is_empty() {
            return Err(Error::spec(format!("{place}: container image is empty")));
        }
        for env in &container.env {
            if env.name.is_empty() {
                return Err(Error::spec(format!(
                    "{place}: container has an environment variable without a name"
                )));
            }
        }
    }
    if let Some(importer) = &executor.importer {
        match importer.artifact_uri.kinds_set() {
            0 => {
                return Err(Error::spec(format!(
                    "{place}: importer has no artifactUri (a constant or a runtimeParameter)"
                )))
            }
            1 => {}
            _ => {
                return Err(Error::spec(format!(
                "{place}: importer artifactUri sets more than one of constant, constantValue and \
                     runtimeParameter"
            )))
            }
        }
        check_type_schema(
            &format!("{place}: importer typeSchema"),
            &importer.type_schema,
        )?;
    }
    Ok(())
}

/// How a component is named in messages: the root is "the pipeline".
fn component_place(name: Option<&str>) -> String {
    match name {
        None => "root component".to_string(),
        Some(name) => format!("component {name:?}"),
    }
}

fn check_component(spec: &PipelineSpec, name: Option<&str>, component: &ComponentSpec) -> Result {
    let place = component_place(name);
    for (param, def) in &component.input_definitions.parameters {
        let ty = def.effective_type();
        if ty == ParameterType::Unspecified {
            return Err(Error::spec(format!(
                "{place}: input parameter {param:?} has no parameterType"
            )));
        }
        if let Some(default) = &def.default_value {
            if !default.is_null() {
                if let Some(expected) = params::type_mismatch(ty, default) {
                    return Err(Error::spec(format!(
                        "{place}: input parameter {param:?} has a default value that is not {expected}: {}",
                        params::describe(default)
                    )));
                }
            }
        }
    }
    for (param, def) in &component.output_definitions.parameters {
        if def.effective_type() == ParameterType::Unspecified {
            return Err(Error::spec(format!(
                "{place}: output parameter {param:?} has no parameterType"
            )));
        }
    }
    for (artifact, def) in &component.input_definitions.artifacts {
        check_type_schema(
            &format!("{place}: input artifact {artifact:?}"),
            &def.artifact_type,
        )?;
    }
    for (artifact, def) in &component.output_definitions.artifacts {
        check_type_schema(
            &format!("{place}: output artifact {artifact:?}"),
            &def.artifact_type,
        )?;
    }

    match (&component.dag, &component.executor_label) {
        (Some(_), Some(_)) => Err(Error::spec(format!(
            "{place} has both a dag and an executorLabel; it must have exactly one"
        ))),
        (None, None) => Err(Error::spec(format!(
            "{place} has neither a dag nor an executorLabel"
        ))),
        (None, Some(label)) => {
            if spec.deployment_spec.executors.contains_key(label) {
                Ok(())
            } else {
                Err(Error::spec(format!(
                    "{place} refers to unknown executor {label:?} (not in deploymentSpec.executors)"
                )))
            }
        }
        (Some(dag), None) => Dag {
            spec,
            component: name,
            owner: component,
            dag,
        }
        .check(),
    }
}

/// One DAG being checked, with what its tasks may refer to.
struct Dag<'a> {
    spec: &'a PipelineSpec,
    /// Name of the component that owns the DAG; `None` for the root.
    component: Option<&'a str>,
    owner: &'a ComponentSpec,
    dag: &'a DagSpec,
}

impl<'a> Dag<'a> {
    fn task_place(&self, task: &str) -> String {
        match self.component {
            None => format!("task {task:?}"),
            Some(c) => format!("task {task:?} (in component {c:?})"),
        }
    }

    fn parent_inputs_name(&self) -> String {
        match self.component {
            None => "the pipeline".to_string(),
            Some(c) => format!("component {c:?}"),
        }
    }

    fn check(&self) -> Result {
        for (name, task) in &self.dag.tasks {
            self.check_task(name, task)?;
        }
        self.check_cycles()?;
        self.check_outputs()
    }

    /// The component a sibling task runs, for checking output keys.
    fn producer_component(&self, task: &str) -> Option<&'a ComponentSpec> {
        let producer = self.dag.tasks.get(task)?;
        self.spec.components.get(&producer.component_ref.name)
    }

    fn check_producer(&self, place: &str, what: &str, producer: &str, own_name: &str) -> Result {
        if producer.is_empty() {
            return Err(Error::spec(format!(
                "{place}: {what} has an empty producerTask"
            )));
        }
        if producer == own_name {
            return Err(Error::spec(format!(
                "{place}: {what} refers to the task itself"
            )));
        }
        if !self.dag.tasks.contains_key(producer) {
            return Err(Error::spec(format!(
                "{place}: {what} refers to unknown producer task {producer:?} (not a task of the same DAG)"
            )));
        }
        Ok(())
    }

    fn check_task(&self, name: &str, task: &PipelineTaskSpec) -> Result {
        let place = self.task_place(name);
        let component_name = &task.component_ref.name;
        if component_name.is_empty() {
            return Err(Error::spec(format!("{place} has no componentRef")));
        }
        if !self.spec.components.contains_key(component_name) {
            return Err(Error::spec(format!(
                "{place} refers to unknown component {component_name:?}"
            )));
        }
        for dependency in &task.dependent_tasks {
            if dependency == name {
                return Err(Error::spec(format!("{place} depends on itself")));
            }
            if !self.dag.tasks.contains_key(dependency) {
                return Err(Error::spec(format!(
                    "{place} depends on unknown task {dependency:?} (not a task of the same DAG)"
                )));
            }
        }
        let parent_inputs = &self.owner.input_definitions;
        for (input, binding) in &task.inputs.parameters {
            let what = format!("input parameter {input:?}");
            match binding.kinds_set() {
                0 => {
                    return Err(Error::spec(format!(
                        "{place}: {what} has no value source (componentInputParameter, \
                         taskOutputParameter, runtimeValue or taskFinalStatus)"
                    )))
                }
                1 => {}
                _ => {
                    return Err(Error::spec(format!(
                        "{place}: {what} sets more than one value source"
                    )))
                }
            }
            if let Some(parent_input) = &binding.component_input_parameter {
                if !parent_inputs.parameters.contains_key(parent_input) {
                    return Err(Error::spec(format!(
                        "{place}: {what} takes {parent_input:?}, which is not an input parameter of {}",
                        self.parent_inputs_name()
                    )));
                }
            }
            if let Some(output) = &binding.task_output_parameter {
                self.check_producer(&place, &what, &output.producer_task, name)?;
                let declared = self
                    .producer_component(&output.producer_task)
                    .is_some_and(|c| {
                        c.output_definitions
                            .parameters
                            .contains_key(&output.output_parameter_key)
                    });
                if !declared {
                    return Err(Error::spec(format!(
                        "{place}: {what} takes output {:?} of task {:?}, which its component does not declare",
                        output.output_parameter_key, output.producer_task
                    )));
                }
            }
            if let Some(status) = &binding.task_final_status {
                self.check_producer(&place, &what, &status.producer_task, name)?;
            }
            if let Some(value) = &binding.runtime_value {
                if value.kinds_set() != 1 {
                    return Err(Error::spec(format!(
                        "{place}: {what}: runtimeValue must set exactly one of constant, constantValue \
                         and runtimeParameter"
                    )));
                }
            }
        }
        for (input, binding) in &task.inputs.artifacts {
            let what = format!("input artifact {input:?}");
            match (
                &binding.component_input_artifact,
                &binding.task_output_artifact,
            ) {
                (None, None) => {
                    return Err(Error::spec(format!(
                    "{place}: {what} has no source (componentInputArtifact or taskOutputArtifact)"
                )))
                }
                (Some(_), Some(_)) => {
                    return Err(Error::spec(format!(
                        "{place}: {what} sets both componentInputArtifact and taskOutputArtifact"
                    )))
                }
                (Some(parent_input), None) => {
                    if !parent_inputs.artifacts.contains_key(parent_input) {
                        return Err(Error::spec(format!(
                            "{place}: {what} takes {parent_input:?}, which is not an input artifact of {}",
                            self.parent_inputs_name()
                        )));
                    }
                }
                (None, Some(output)) => {
                    self.check_producer(&place, &what, &output.producer_task, name)?;
                    let declared =
                        self.producer_component(&output.producer_task)
                            .is_some_and(|c| {
                                c.output_definitions
                                    .artifacts
                                    .contains_key(&output.output_artifact_key)
                            });
                    if !declared {
                        return Err(Error::spec(format!(
                            "{place}: {what} takes output {:?} of task {:?}, which its component does not declare",
                            output.output_artifact_key, output.producer_task
                        )));
                    }
                }
            }
        }
        self.check_iterator(&place, task)?;
        if let Some(retry) = &task.retry_policy {
            if retry.max_retry_count < 0 {
                return Err(Error::spec(format!(
                    "{place}: retryPolicy.maxRetryCount must not be negative"
                )));
            }
            for (field, value) in [
                ("backoffDuration", &retry.backoff_duration),
                ("backoffMaxDuration", &retry.backoff_max_duration),
            ] {
                if let Some(text) = value {
                    if parse_duration_secs(text).is_none_or(|s| s < 0.0) {
                        return Err(Error::spec(format!(
                            "{place}: retryPolicy.{field} {text:?} is not a duration like \"30s\""
                        )));
                    }
                }
            }
        }
        if let Some(policy) = &task.iterator_policy {
            if policy.parallelism_limit < 0 {
                return Err(Error::spec(format!(
                    "{place}: iteratorPolicy.parallelismLimit must not be negative"
                )));
            }
        }
        Ok(())
    }

    fn check_iterator(&self, place: &str, task: &PipelineTaskSpec) -> Result {
        if task.parameter_iterator.is_some() && task.artifact_iterator.is_some() {
            return Err(Error::spec(format!(
                "{place} sets both parameterIterator and artifactIterator"
            )));
        }
        if let Some(iterator) = &task.parameter_iterator {
            if iterator.item_input.is_empty() {
                return Err(Error::spec(format!(
                    "{place}: parameterIterator.itemInput is empty"
                )));
            }
            match (&iterator.items.raw, &iterator.items.input_parameter) {
                (Some(raw), None) => match serde_json::from_str::<Value>(raw) {
                    Ok(Value::Array(_)) => {}
                    Ok(other) => {
                        return Err(Error::spec(format!(
                            "{place}: parameterIterator.items.raw must be a JSON list, found {}",
                            crate::de::kind_of(&other)
                        )))
                    }
                    Err(e) => {
                        return Err(Error::spec(format!(
                            "{place}: parameterIterator.items.raw is not valid JSON: {e}"
                        )))
                    }
                },
                (None, Some(input)) => {
                    if !task.inputs.parameters.contains_key(input) {
                        return Err(Error::spec(format!(
                            "{place}: parameterIterator.items.inputParameter {input:?} is not an input \
                             parameter of the task"
                        )));
                    }
                }
                _ => {
                    return Err(Error::spec(format!(
                        "{place}: parameterIterator.items must set exactly one of raw and inputParameter"
                    )))
                }
            }
        }
        if let Some(iterator) = &task.artifact_iterator {
            if iterator.item_input.is_empty() {
                return Err(Error::spec(format!(
                    "{place}: artifactIterator.itemInput is empty"
                )));
            }
            let input = &iterator.items.input_artifact;
            if !task.inputs.artifacts.contains_key(input) {
                return Err(Error::spec(format!(
                    "{place}: artifactIterator.items.inputArtifact {input:?} is not an input artifact \
                     of the task"
                )));
            }
        }
        Ok(())
    }

    /// Rejects dependency cycles among the DAG's tasks (explicit and data).
    fn check_cycles(&self) -> Result {
        let graph: BTreeMap<&str, BTreeSet<&str>> = self
            .dag
            .tasks
            .iter()
            .map(|(name, task)| (name.as_str(), task.upstream_tasks()))
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            let place = match self.component {
                None => String::new(),
                Some(c) => format!(" in component {c:?}"),
            };
            return Err(Error::spec(format!(
                "dependency cycle among tasks{place}: {}",
                quote_path(&cycle)
            )));
        }
        Ok(())
    }

    fn check_outputs(&self) -> Result {
        let place = component_place(self.component);
        let outputs = &self.dag.outputs;
        for (name, output) in &outputs.parameters {
            let what = format!("{place}: dag output parameter {name:?}");
            match (&output.value_from_parameter, &output.value_from_oneof) {
                (Some(_), Some(_)) => {
                    return Err(Error::spec(format!(
                        "{what} sets both valueFromParameter and valueFromOneof"
                    )))
                }
                (None, None) => {
                    return Err(Error::spec(format!(
                        "{what} has no source (valueFromParameter or valueFromOneof)"
                    )))
                }
                _ => {}
            }
            for selector in output.selectors() {
                self.check_subtask(&what, &selector.producer_subtask)?;
                let declared = self
                    .producer_component(&selector.producer_subtask)
                    .is_some_and(|c| {
                        c.output_definitions
                            .parameters
                            .contains_key(&selector.output_parameter_key)
                    });
                if !declared {
                    return Err(Error::spec(format!(
                        "{what} takes output {:?} of task {:?}, which its component does not declare",
                        selector.output_parameter_key, selector.producer_subtask
                    )));
                }
            }
        }
        for (name, output) in &outputs.artifacts {
            let what = format!("{place}: dag output artifact {name:?}");
            if output.artifact_selectors.is_empty() {
                return Err(Error::spec(format!("{what} has no artifactSelectors")));
            }
            for selector in &output.artifact_selectors {
                self.check_subtask(&what, &selector.producer_subtask)?;
                let declared = self
                    .producer_component(&selector.producer_subtask)
                    .is_some_and(|c| {
                        c.output_definitions
                            .artifacts
                            .contains_key(&selector.output_artifact_key)
                    });
                if !declared {
                    return Err(Error::spec(format!(
                        "{what} takes output {:?} of task {:?}, which its component does not declare",
                        selector.output_artifact_key, selector.producer_subtask
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_subtask(&self, what: &str, producer: &str) -> Result {
        if self.dag.tasks.contains_key(producer) {
            Ok(())
        } else {
            Err(Error::spec(format!(
                "{what} refers to unknown producer task {producer:?} (not a task of this DAG)"
            )))
        }
    }
}

/// Components that use themselves (directly or not) would nest forever.
fn check_component_cycles(spec: &PipelineSpec) -> Result {
    let graph: BTreeMap<&str, BTreeSet<&str>> = spec
        .components
        .iter()
        .map(|(name, component)| {
            let used = component
                .dag
                .iter()
                .flat_map(|dag| dag.tasks.values())
                .map(|task| task.component_ref.name.as_str())
                .collect();
            (name.as_str(), used)
        })
        .collect();
    if let Some(cycle) = find_cycle(&graph) {
        return Err(Error::spec(format!(
            "components use each other in a cycle: {}",
            quote_path(&cycle)
        )));
    }
    Ok(())
}

fn quote_path(path: &[&str]) -> String {
    path.iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// Finds a cycle in a graph given as node -> successors (unknown successors
/// are ignored); returns it as a path that starts and ends at the same node.
fn find_cycle<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnStack,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = graph.keys().map(|k| (*k, Mark::Unvisited)).collect();
    for &start in graph.keys() {
        if marks.get(start) != Some(&Mark::Unvisited) {
            continue;
        }
        // Iterative depth-first search; `stack` holds (node, remaining successors).
        let mut path: Vec<&str> = vec![start];
        let mut stack: Vec<Vec<&str>> = vec![graph[start].iter().copied().collect()];
        marks.insert(start, Mark::OnStack);
        while let Some(successors) = stack.last_mut() {
            match successors.pop() {
                Some(next) => match marks.get(next).copied() {
                    Some(Mark::Unvisited) => {
                        marks.insert(next, Mark::OnStack);
                        path.push(next);
                        stack.push(graph[next].iter().copied().collect());
                    }
                    Some(Mark::OnStack) => {
                        let from = path.iter().position(|n| *n == next).unwrap_or(0);
                        let mut cycle = path[from..].to_vec();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    Some(Mark::Done) | None => {}
                },
                None => {
                    stack.pop();
                    if let Some(done) = path.pop() {
                        marks.insert(done, Mark::Done);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::parse_spec_value;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "schemaVersion": "2.1.0",
            "sdkVersion": "kfp-2.14.6",
            "pipelineInfo": {"name": "p"},
            "deploymentSpec": {"executors": {
                "exec-a": {"container": {"image": "alpine", "command": ["echo"]}}
            }},
            "components": {
                "comp-a": {
                    "executorLabel": "exec-a",
                    "inputDefinitions": {"parameters": {"x": {"parameterType": "STRING"}}},
                    "outputDefinitions": {
                        "parameters": {"out": {"parameterType": "STRING"}},
                        "artifacts": {"data": {"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}}
                    }
                }
            },
            "root": {
                "inputDefinitions": {"parameters": {"msg": {"parameterType": "STRING"}}},
                "dag": {"tasks": {
                    "a": {
                        "componentRef": {"name": "comp-a"},
                        "taskInfo": {"name": "a"},
                        "inputs": {"parameters": {"x": {"componentInputParameter": "msg"}}}
                    },
                    "b": {
                        "componentRef": {"name": "comp-a"},
                        "taskInfo": {"name": "b"},
                        "dependentTasks": ["a"],
                        "inputs": {"parameters": {"x": {"taskOutputParameter": {"producerTask": "a", "outputParameterKey": "out"}}}}
                    }
                }}
            }
        })
    }

    fn err_with(edit: impl FnOnce(&mut Value)) -> String {
        let mut spec = base();
        edit(&mut spec);
        parse_spec_value(&spec).unwrap_err().to_string()
    }

    #[test]
    fn base_is_valid() {
        parse_spec_value(&base()).unwrap();
    }

    #[test]
    fn upstream_rules() {
        assert_eq!(
            err_with(|s| s["schemaVersion"] = json!("2.0.0")),
            "pipeline spec: KFP supports only schema version 2.1.0, but the pipeline spec has version \
             \"2.0.0\"; compile the pipeline with a KFP SDK 2.x"
        );
        assert!(err_with(|s| {
            s.as_object_mut().unwrap().remove("schemaVersion");
        })
        .contains("schemaVersion is missing"));
        assert_eq!(
            err_with(|s| s["pipelineInfo"]["name"] = json!("")),
            "pipeline spec: pipelineInfo.name is empty"
        );
        assert_eq!(
            err_with(|s| s["pipelineInfo"]["name"] = Value::Null),
            "pipeline spec: pipelineInfo.name is empty"
        );
        for bad in ["My Pipeline", "-p", "a.b", &"a".repeat(129)] {
            let err = err_with(|s| s["pipelineInfo"]["name"] = json!(bad));
            assert!(
                err.contains("pipelineInfo.name") && err.contains("is invalid"),
                "{err}"
            );
        }
        assert_eq!(
            err_with(|s| {
                s.as_object_mut().unwrap().remove("root");
            }),
            "pipeline spec: root component is missing"
        );
        assert!(err_with(|s| s["root"] = json!({})).contains("root component has no dag"));
    }

    #[test]
    fn references() {
        assert_eq!(
            err_with(|s| s["root"]["dag"]["tasks"]["a"]["componentRef"]["name"] = json!("comp-x")),
            "pipeline spec: task \"a\" refers to unknown component \"comp-x\""
        );
        assert_eq!(
            err_with(|s| s["components"]["comp-a"]["executorLabel"] = json!("exec-x")),
            "pipeline spec: component \"comp-a\" refers to unknown executor \"exec-x\" (not in \
             deploymentSpec.executors)"
        );
        assert_eq!(
            err_with(|s| s["root"]["dag"]["tasks"]["b"]["dependentTasks"] = json!(["zz"])),
            "pipeline spec: task \"b\" depends on unknown task \"zz\" (not a task of the same DAG)"
        );
        assert_eq!(
            err_with(|s| s["root"]["dag"]["tasks"]["b"]["inputs"]["parameters"]["x"]
                ["taskOutputParameter"]["producerTask"] = json!("zz")),
            "pipeline spec: task \"b\": input parameter \"x\" refers to unknown producer task \"zz\" \
             (not a task of the same DAG)"
        );
        assert!(err_with(
            |s| s["root"]["dag"]["tasks"]["b"]["inputs"]["parameters"]["x"]
                ["taskOutputParameter"]["outputParameterKey"] = json!("nope")
        )
        .contains("takes output \"nope\" of task \"a\", which its component does not declare"));
        assert!(err_with(
            |s| s["root"]["dag"]["tasks"]["a"]["inputs"]["parameters"]["x"] =
                json!({"componentInputParameter": "nope"})
        )
        .contains("takes \"nope\", which is not an input parameter of the pipeline"));
        assert!(err_with(|s| s["root"]["dag"]["tasks"]["a"]["inputs"]["artifacts"] =
            json!({"d": {"taskOutputArtifact": {"producerTask": "q", "outputArtifactKey": "data"}}}))
        .contains("input artifact \"d\" refers to unknown producer task \"q\""));
        assert!(err_with(
            |s| s["root"]["dag"]["tasks"]["a"]["inputs"]["parameters"]["x"] = json!({})
        )
        .contains("has no value source"));
        assert!(err_with(
            |s| s["root"]["dag"]["tasks"]["a"]["inputs"]["parameters"]["x"] =
                json!({"componentInputParameter": "msg", "runtimeValue": {"constant": 1}})
        )
        .contains("sets more than one value source"));
        assert!(err_with(
            |s| s["root"]["dag"]["outputs"] = json!({"parameters": {"o": {
            "valueFromParameter": {"producerSubtask": "nope", "outputParameterKey": "out"}}}})
        )
        .contains("dag output parameter \"o\" refers to unknown producer task \"nope\""));
    }

    #[test]
    fn nested_dags_name_their_component() {
        let err = err_with(|s| {
            s["components"]["comp-b"] = json!({
                "inputDefinitions": {"parameters": {"y": {"parameterType": "STRING"}}},
                "dag": {"tasks": {"inner": {
                    "componentRef": {"name": "comp-a"},
                    "taskInfo": {"name": "inner"},
                    "inputs": {"parameters": {"x": {"componentInputParameter": "msg"}}}
                }}}
            });
        });
        assert_eq!(
            err,
            "pipeline spec: task \"inner\" (in component \"comp-b\"): input parameter \"x\" takes \"msg\", \
             which is not an input parameter of component \"comp-b\""
        );
    }

    #[test]
    fn cycles() {
        let err = err_with(|s| s["root"]["dag"]["tasks"]["a"]["dependentTasks"] = json!(["b"]));
        assert_eq!(
            err,
            "pipeline spec: dependency cycle among tasks: \"a\" -> \"b\" -> \"a\""
        );
        let err = err_with(|s| s["root"]["dag"]["tasks"]["a"]["dependentTasks"] = json!(["a"]));
        assert_eq!(err, "pipeline spec: task \"a\" depends on itself");
        let err = err_with(|s| {
            s["components"]["comp-loop"] = json!({"dag": {"tasks": {"inner": {
                "componentRef": {"name": "comp-loop"}, "taskInfo": {"name": "inner"}}}}});
        });
        assert_eq!(
            err,
            "pipeline spec: components use each other in a cycle: \"comp-loop\" -> \"comp-loop\""
        );
    }

    #[test]
    fn components_and_executors() {
        assert!(err_with(|s| s["components"]["comp-a"]["dag"] = json!({}))
            .contains("has both a dag and an executorLabel"));
        assert!(err_with(|s| s["components"]["comp-b"] = json!({}))
            .contains("component \"comp-b\" has neither a dag nor an executorLabel"));
        assert!(
            err_with(|s| s["deploymentSpec"]["executors"]["exec-a"] = json!({}))
                .contains("executor \"exec-a\" is empty")
        );
        assert!(err_with(
            |s| s["deploymentSpec"]["executors"]["exec-a"]["container"]["image"] = json!("")
        )
        .contains("container image is empty"));
        assert!(
            err_with(|s| s["deploymentSpec"]["executors"]["exec-a"]["importer"] =
                json!({"artifactUri": {"constant": "gs://x"}}))
            .contains("sets more than one of container, importer")
        );
        assert!(err_with(
            |s| s["components"]["comp-a"]["inputDefinitions"]["parameters"]["x"] =
                json!({"parameterType": "NUMBER_INTEGER", "defaultValue": "ten"})
        )
        .contains("has a default value that is not an integer (NUMBER_INTEGER): string \"ten\""));
        assert!(err_with(
            |s| s["components"]["comp-a"]["inputDefinitions"]["parameters"]["x"] =
                json!({"description": "no type"})
        )
        .contains("input parameter \"x\" has no parameterType"));
    }

    #[test]
    fn iterators_and_retries() {
        let mut spec = base();
        spec["root"]["dag"]["tasks"]["a"]["parameterIterator"] =
            json!({"items": {"raw": "[1, 2]"}, "itemInput": "x"});
        parse_spec_value(&spec).unwrap();
        assert!(
            err_with(|s| s["root"]["dag"]["tasks"]["a"]["parameterIterator"] =
                json!({"items": {"raw": "{\"a\": 1}"}, "itemInput": "x"}))
            .contains("must be a JSON list, found an object")
        );
        assert!(
            err_with(|s| s["root"]["dag"]["tasks"]["a"]["parameterIterator"] =
                json!({"items": {"inputParameter": "nope"}, "itemInput": "x"}))
            .contains("inputParameter \"nope\" is not an input parameter of the task")
        );
        assert!(err_with(|s| s["root"]["dag"]["tasks"]["a"]["retryPolicy"] =
            json!({"maxRetryCount": 2, "backoffDuration": "5 minutes"}))
        .contains("retryPolicy.backoffDuration \"5 minutes\" is not a duration"));
    }

    #[test]
    fn platform_executor_labels() {
        let err = crate::package::Package::from_parts(
            base(),
            Some(
                json!({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {
                "exec-zz": {"nodeSelector": {}}}}}}}),
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "platform spec: kubernetes: configuration for unknown executor \"exec-zz\""
            ),
            "{err}"
        );
    }

    #[test]
    fn find_cycle_reports_a_path() {
        let mut g: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        g.insert("a", ["b"].into());
        g.insert("b", ["c"].into());
        g.insert("c", ["a", "zz"].into());
        g.insert("d", BTreeSet::new());
        let cycle = find_cycle(&g).unwrap();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        g.insert("c", BTreeSet::new());
        assert!(find_cycle(&g).is_none());
    }
}
