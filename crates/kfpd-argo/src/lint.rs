//! The checks Argo's validator makes beyond the CRD schema, over a Workflow as
//! JSON: names resolve and are unique, `depends` names tasks of the same DAG and
//! has no cycle, every `{{...}}` variable resolves where it is used, and every
//! template input gets a value or has a default.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// Task results `depends` may name (Argo's enhanced depends logic).
const RESULTS: &[&str] = &[
    "Succeeded",
    "Failed",
    "Errored",
    "Skipped",
    "Omitted",
    "Daemoned",
    "AnySucceeded",
    "AllFailed",
];

/// Template types; a template has exactly one.
const TYPES: &[&str] = &[
    "container",
    "script",
    "dag",
    "steps",
    "resource",
    "suspend",
    "containerSet",
    "data",
    "http",
    "plugin",
];

/// Global variables a Workflow may use anywhere.
const GLOBALS: &[&str] = &[
    "workflow.name",
    "workflow.namespace",
    "workflow.uid",
    "workflow.serviceAccountName",
    "workflow.creationTimestamp",
    "workflow.mainEntrypoint",
    "workflow.status",
    "workflow.duration",
];

fn name_pattern() -> &'static Regex {
    static P: OnceLock<Regex> = OnceLock::new();
    P.get_or_init(|| Regex::new(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$").expect("name pattern"))
}

fn tag_pattern() -> &'static Regex {
    static P: OnceLock<Regex> = OnceLock::new();
    P.get_or_init(|| Regex::new(r"\{\{(.*?)\}\}").expect("tag pattern"))
}

/// References inside an expression tag: `tasks['x'].…`, `tasks.x.…`, `inputs.parameters.x`, `item`.
fn expression_refs() -> &'static Regex {
    static P: OnceLock<Regex> = OnceLock::new();
    P.get_or_init(|| {
        Regex::new(
            r"tasks\['([^']+)'\]\.outputs\.(result|parameters\.[-a-zA-Z0-9_]+)|tasks\.([-a-zA-Z0-9_]+)\.outputs\.(result|parameters\.[-a-zA-Z0-9_]+)|inputs\.parameters\.([-a-zA-Z0-9_]+)|\bitem\b",
        )
        .expect("expression pattern")
    })
}

fn depends_token() -> &'static Regex {
    static P: OnceLock<Regex> = OnceLock::new();
    P.get_or_init(|| {
        Regex::new(r"[A-Za-z0-9][-A-Za-z0-9_]*(\.[A-Za-z]+)?|&&|\|\||!|\(|\)|\s+")
            .expect("depends pattern")
    })
}

/// Every problem found, each naming where it is; empty when the Workflow passes.
pub fn lint(workflow: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let spec = &workflow["spec"];
    let templates: Vec<&Value> = spec["templates"]
        .as_array()
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    let mut by_name: BTreeMap<&str, &Value> = BTreeMap::new();
    for template in &templates {
        let Some(name) = template["name"].as_str() else {
            problems.push("a template has no name".to_string());
            continue;
        };
        if !valid_name(name) {
            problems.push(format!("template name {name:?} is not a valid name"));
        }
        if by_name.insert(name, template).is_some() {
            problems.push(format!("template name {name:?} is used twice"));
        }
        let kinds: Vec<&str> = TYPES
            .iter()
            .copied()
            .filter(|k| template.get(*k).is_some())
            .collect();
        if kinds.len() != 1 {
            problems.push(format!(
                "template {name:?} must have exactly one type, has {kinds:?}"
            ));
        }
    }
    let globals = global_variables(spec);

    match spec["entrypoint"].as_str() {
        None => problems.push("spec.entrypoint is not set".into()),
        Some(entry) => match by_name.get(entry) {
            None => problems.push(format!("entrypoint {entry:?} is not a template")),
            Some(template) => {
                let given: BTreeSet<&str> = spec["arguments"]["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                    .unwrap_or_default();
                for input in inputs(template) {
                    if input.1.is_none() && !given.contains(input.0) {
                        problems.push(format!(
                            "entrypoint input {:?} has no default and no workflow argument",
                            input.0
                        ));
                    }
                }
            }
        },
    }

    for template in &templates {
        let name = template["name"].as_str().unwrap_or("?");
        let own_inputs: BTreeSet<&str> = inputs(template).iter().map(|i| i.0).collect();
        if let Some(dag) = template.get("dag") {
            lint_dag(name, dag, &own_inputs, &by_name, &globals, &mut problems);
            continue;
        }
        // A leaf: every variable in it must be an input, a global or `retries`.
        let mut leaf = (*template).clone();
        if let Some(map) = leaf.as_object_mut() {
            map.remove("inputs");
            map.remove("name");
        }
        let retries = template.get("retryStrategy").is_some();
        for tag in tags(&leaf) {
            let ok = globals.contains(tag.as_str())
                || tag
                    .strip_prefix("inputs.parameters.")
                    .is_some_and(|p| own_inputs.contains(p))
                || (retries && tag == "retries")
                || tag == "pod.name";
            if !ok {
                problems.push(format!("template {name:?}: {{{{{tag}}}}} does not resolve"));
            }
        }
        if let Some(patch) = template["podSpecPatch"].as_str() {
            if !patch.contains("{{") && serde_json::from_str::<Value>(patch).is_err() {
                problems.push(format!("template {name:?}: podSpecPatch is not JSON"));
            }
        }
        if let Some(manifest) = template["resource"]["manifest"].as_str() {
            if serde_yaml::from_str::<serde_yaml::Value>(manifest).is_err() {
                problems.push(format!("template {name:?}: resource manifest is not YAML"));
            }
        }
    }
    problems
}

fn valid_name(name: &str) -> bool {
    name.len() <= 128 && name_pattern().is_match(name)
}

/// `(name, default)` of a template's input parameters.
fn inputs(template: &Value) -> Vec<(&str, Option<&str>)> {
    template["inputs"]["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((p["name"].as_str()?, p["default"].as_str())))
                .collect()
        })
        .unwrap_or_default()
}

fn global_variables(spec: &Value) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = GLOBALS.iter().map(|g| g.to_string()).collect();
    if let Some(parameters) = spec["arguments"]["parameters"].as_array() {
        for p in parameters {
            if let Some(name) = p["name"].as_str() {
                out.insert(format!("workflow.parameters.{name}"));
            }
        }
    }
    out
}

/// Every `{{...}}` tag in the strings of `value`; expression tags (`{{=...}}`)
/// are expanded into the variables they reference.
fn tags(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_tags(value, &mut out);
    out
}

fn collect_tags(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            for captures in tag_pattern().captures_iter(text) {
                let tag = captures.get(1).map(|m| m.as_str().trim()).unwrap_or("");
                if let Some(expression) = tag.strip_prefix('=') {
                    for reference in expression_refs().captures_iter(expression) {
                        if let Some(task) = reference.get(1).or(reference.get(3)) {
                            let field = reference.get(2).or(reference.get(4));
                            out.push(format!(
                                "tasks.{}.outputs.{}",
                                task.as_str(),
                                field.map(|f| f.as_str()).unwrap_or("")
                            ));
                        } else if let Some(input) = reference.get(5) {
                            out.push(format!("inputs.parameters.{}", input.as_str()));
                        } else {
                            out.push("item".to_string());
                        }
                    }
                } else {
                    out.push(tag.to_string());
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_tags(i, out)),
        Value::Object(map) => map.values().for_each(|v| collect_tags(v, out)),
        _ => {}
    }
}

/// The task names a `depends` expression names, or a problem.
fn depends_names(expression: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = expression;
    while !rest.is_empty() {
        let Some(token) = depends_token().find(rest).filter(|m| m.start() == 0) else {
            return Err(format!("cannot read depends {expression:?} at {rest:?}"));
        };
        let text = token.as_str();
        if let Some(first) = text.chars().next().filter(|c| c.is_ascii_alphanumeric()) {
            let _ = first;
            let (task, result) = match text.split_once('.') {
                Some((task, result)) => (task, Some(result)),
                None => (text, None),
            };
            if let Some(result) = result {
                if !RESULTS.contains(&result) {
                    return Err(format!(
                        "depends {expression:?}: {result:?} is not a task result"
                    ));
                }
            }
            names.push(task.to_string());
        }
        rest = &rest[token.end()..];
    }
    Ok(names)
}

fn lint_dag(
    name: &str,
    dag: &Value,
    own_inputs: &BTreeSet<&str>,
    templates: &BTreeMap<&str, &Value>,
    globals: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let tasks: Vec<&Value> = dag["tasks"]
        .as_array()
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    if tasks.is_empty() {
        problems.push(format!("DAG template {name:?} has no tasks"));
    }
    let mut names = BTreeSet::new();
    for task in &tasks {
        let task_name = task["name"].as_str().unwrap_or("");
        if !valid_name(task_name) {
            problems.push(format!(
                "DAG {name:?}: task name {task_name:?} is not valid"
            ));
        }
        if !names.insert(task_name) {
            problems.push(format!("DAG {name:?}: task {task_name:?} is there twice"));
        }
    }
    if let Some(target) = dag["target"].as_str() {
        for t in target.split(' ') {
            if !names.contains(t) {
                problems.push(format!("DAG {name:?}: target {t:?} is not a task"));
            }
        }
    }

    // Dependencies, and their closure for "may this task read that one's outputs".
    let mut edges: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for task in &tasks {
        let task_name = task["name"].as_str().unwrap_or("");
        let mut deps = Vec::new();
        if let Some(expression) = task["depends"].as_str() {
            match depends_names(expression) {
                Ok(found) => {
                    for dep in found {
                        if !names.contains(dep.as_str()) {
                            problems.push(format!(
                                "DAG {name:?}: task {task_name:?} depends on {dep:?}, which is \
                                 not a task of this DAG"
                            ));
                        }
                        deps.push(dep);
                    }
                }
                Err(problem) => problems.push(format!("DAG {name:?}: {problem}")),
            }
        }
        edges.insert(task_name, deps);
    }
    let ancestors = match closure(&edges) {
        Ok(a) => a,
        Err(cycle) => {
            problems.push(format!("DAG {name:?}: dependency cycle through {cycle:?}"));
            return;
        }
    };

    for task in &tasks {
        let task_name = task["name"].as_str().unwrap_or("");
        let Some(template_name) = task["template"].as_str() else {
            problems.push(format!(
                "DAG {name:?}: task {task_name:?} names no template"
            ));
            continue;
        };
        let Some(template) = templates.get(template_name) else {
            problems.push(format!(
                "DAG {name:?}: task {task_name:?} uses template {template_name:?}, which does \
                 not exist"
            ));
            continue;
        };
        // Arguments against the template's inputs.
        let given: BTreeSet<&str> = task["arguments"]["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        let declared = inputs(template);
        for (input, default) in &declared {
            if default.is_none() && !given.contains(input) {
                problems.push(format!(
                    "DAG {name:?}: task {task_name:?} gives no value for input {input:?} of \
                     template {template_name:?}, which has no default"
                ));
            }
        }
        for argument in &given {
            if !declared.iter().any(|d| d.0 == *argument) {
                problems.push(format!(
                    "DAG {name:?}: task {task_name:?} passes {argument:?}, which template \
                     {template_name:?} does not take"
                ));
            }
        }
        // Variables in the task's fields.
        let expands = task.get("withSequence").is_some()
            || task.get("withItems").is_some()
            || task.get("withParam").is_some();
        let mut fields = (*task).clone();
        if let Some(map) = fields.as_object_mut() {
            map.remove("name");
            map.remove("template");
            map.remove("depends");
        }
        let empty = BTreeSet::new();
        let upstream = ancestors.get(task_name).unwrap_or(&empty);
        for tag in tags(&fields) {
            let ok = if globals.contains(tag.as_str()) {
                true
            } else if let Some(input) = tag.strip_prefix("inputs.parameters.") {
                own_inputs.contains(input)
            } else if tag == "item" {
                expands
            } else if let Some(rest) = tag.strip_prefix("tasks.") {
                task_output_ok(rest, upstream, &tasks, templates)
            } else {
                false
            };
            if !ok {
                problems.push(format!(
                    "DAG {name:?}: task {task_name:?}: {{{{{tag}}}}} does not resolve"
                ));
            }
        }
    }
}

/// `tasks.<t>.outputs.result` or `.parameters.<p>` of an upstream task that has it.
fn task_output_ok(
    reference: &str,
    upstream: &BTreeSet<String>,
    tasks: &[&Value],
    templates: &BTreeMap<&str, &Value>,
) -> bool {
    let Some((task, field)) = reference.split_once(".outputs.") else {
        return false;
    };
    if !upstream.contains(task) {
        return false;
    }
    let Some(producer) = tasks.iter().find(|t| t["name"].as_str() == Some(task)) else {
        return false;
    };
    let Some(template) = producer["template"].as_str().and_then(|n| templates.get(n)) else {
        return false;
    };
    if field == "result" {
        return ["container", "script", "http", "data"]
            .iter()
            .any(|k| template.get(*k).is_some());
    }
    let Some(parameter) = field.strip_prefix("parameters.") else {
        return false;
    };
    template["outputs"]["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"].as_str() == Some(parameter)))
}

/// For every task, all tasks it depends on directly or not; a cycle is an error
/// naming a task on it.
fn closure(
    edges: &BTreeMap<&str, Vec<String>>,
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut done: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for start in edges.keys() {
        visit(start, edges, &mut done, &mut Vec::new())?;
    }
    Ok(done)
}

fn visit(
    task: &str,
    edges: &BTreeMap<&str, Vec<String>>,
    done: &mut BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
) -> Result<BTreeSet<String>, String> {
    if let Some(found) = done.get(task) {
        return Ok(found.clone());
    }
    if path.iter().any(|p| p == task) {
        return Err(task.to_string());
    }
    path.push(task.to_string());
    let mut all = BTreeSet::new();
    for dep in edges.get(task).map(Vec::as_slice).unwrap_or(&[]) {
        all.insert(dep.clone());
        if edges.contains_key(dep.as_str()) {
            all.extend(visit(dep, edges, done, path)?);
        }
    }
    path.pop();
    done.insert(task.to_string(), all.clone());
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workflow(tasks: Value, extra: Value) -> Value {
        let mut templates = vec![
            json!({"name": "root", "dag": {"tasks": tasks}}),
            json!({"name": "leaf", "inputs": {"parameters": [{"name": "x"}]},
                   "container": {"image": "a", "args": ["{{inputs.parameters.x}}"]}}),
        ];
        if let Value::Array(more) = extra {
            templates.extend(more);
        }
        json!({"spec": {"entrypoint": "root", "templates": templates}})
    }

    #[test]
    fn clean_workflow_passes() {
        let wf = workflow(
            json!([
                {"name": "a", "template": "leaf", "arguments": {"parameters": [{"name": "x", "value": "1"}]}},
                {"name": "b", "template": "leaf", "depends": "a.Succeeded || a.Skipped",
                 "arguments": {"parameters": [{"name": "x", "value": "{{=jsonpath(tasks['a'].outputs.result, '$.v')}}"}]}}
            ]),
            json!([]),
        );
        assert_eq!(lint(&wf), Vec::<String>::new());
    }

    #[test]
    fn finds_each_kind_of_problem() {
        let wf = workflow(
            json!([
                {"name": "a", "template": "leaf", "depends": "b.Succeeded",
                 "arguments": {"parameters": [{"name": "x", "value": "{{tasks.c.outputs.result}}"}]}},
                {"name": "b", "template": "leaf", "depends": "a.Succeeded && ghost.Done",
                 "arguments": {"parameters": [{"name": "y", "value": "{{item}}"}]}},
                {"name": "c", "template": "missing"}
            ]),
            json!([{"name": "leaf", "container": {"image": "b"}}]),
        );
        let problems = lint(&wf).join("\n");
        for expected in [
            "template name \"leaf\" is used twice",
            "\"Done\" is not a task result",
            "uses template \"missing\"",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not in:\n{problems}"
            );
        }
        let wf = workflow(
            json!([
                {"name": "a", "template": "leaf", "depends": "b",
                 "arguments": {"parameters": [{"name": "x", "value": "1"}]}},
                {"name": "b", "template": "leaf", "depends": "a",
                 "arguments": {"parameters": [{"name": "x", "value": "1"}]}}
            ]),
            json!([]),
        );
        assert!(lint(&wf).join("\n").contains("dependency cycle"));
        let wf = workflow(
            json!([
                {"name": "a", "template": "leaf", "arguments": {"parameters": [{"name": "x", "value": "1"}]}},
                {"name": "b", "template": "leaf",
                 "arguments": {"parameters": [{"name": "x", "value": "{{tasks.a.outputs.result}}"}, {"name": "z", "value": "{{item}}"}]}},
                {"name": "c", "template": "leaf"}
            ]),
            json!([]),
        );
        let problems = lint(&wf).join("\n");
        for expected in [
            "task \"b\": {{tasks.a.outputs.result}} does not resolve",
            "task \"b\": {{item}} does not resolve",
            "passes \"z\"",
            "gives no value for input \"x\"",
        ] {
            assert!(
                problems.contains(expected),
                "{expected} not in:\n{problems}"
            );
        }
    }
}
