//! How many pods a Workflow starts for one run, by walking it from the entrypoint
//! as Argo would, with every `when` true (nothing cached, every branch taken),
//! lifecycle hooks and `onExit` included.
//!
//! Works on any Workflow as JSON, so upstream's compiled Workflows are counted by
//! the same rules as kfpd's.

use serde_json::Value;

/// Pods of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Pods of container, script and resource templates.
    pub pods: u64,
    /// Whether an `http` template runs, which adds Argo's agent pod (one per Workflow).
    pub agent: bool,
}

impl Count {
    /// Pods including the agent.
    pub fn total(&self) -> u64 {
        self.pods + u64::from(self.agent)
    }
}

/// How many times a task expanded with `withSequence`/`withParam` runs, given the
/// DAG task names from the entrypoint down to it.
pub type Items<'a> = dyn Fn(&[String]) -> u64 + 'a;
/// Whether the pod of a template reached through these DAG task names is skipped
/// (a cache hit, say).
pub type Skip<'a> = dyn Fn(&[String], &Value) -> bool + 'a;

/// Counts the pods of a run. A literal item count is used when there is one, else
/// `items`; a pod `skip` says yes to is not counted.
pub fn count(workflow: &Value, items: &Items, skip: &Skip) -> Count {
    let templates = workflow["spec"]["templates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let entry = workflow["spec"]["entrypoint"].as_str().unwrap_or("");
    let mut out = Count::default();
    let mut path = Vec::new();
    out.pods = walk(entry, &templates, items, skip, &mut path, &mut out.agent, 0);
    if let Some(exit) = workflow["spec"]["onExit"].as_str() {
        out.pods += walk(exit, &templates, items, skip, &mut path, &mut out.agent, 0);
    }
    out
}

fn walk(
    name: &str,
    templates: &[Value],
    items: &Items,
    skip: &Skip,
    path: &mut Vec<String>,
    agent: &mut bool,
    depth: usize,
) -> u64 {
    // A Workflow that recurses would be counted forever; none of ours does.
    if depth > 64 {
        return 0;
    }
    let Some(template) = templates.iter().find(|t| t["name"].as_str() == Some(name)) else {
        return 0;
    };
    if template.get("http").is_some() {
        *agent = true;
        return 0;
    }
    if ["container", "script", "resource", "containerSet"]
        .iter()
        .any(|k| template.get(*k).is_some())
    {
        return u64::from(!skip(path, template));
    }
    let Some(tasks) = template["dag"]["tasks"].as_array() else {
        return 0;
    };
    let mut total = 0;
    for task in tasks {
        let task_name = task["name"].as_str().unwrap_or("").to_string();
        path.push(task_name);
        let times = if let Some(list) = task["withItems"].as_array() {
            list.len() as u64
        } else if let Some(count) = task["withSequence"]["count"]
            .as_u64()
            .or_else(|| task["withSequence"]["count"].as_str()?.parse().ok())
        {
            count
        } else if task.get("withSequence").is_some() || task.get("withParam").is_some() {
            items(path)
        } else {
            1
        };
        let target = task["template"].as_str().unwrap_or("");
        if times > 0 {
            total += times * walk(target, templates, items, skip, path, agent, depth + 1);
            // Lifecycle hooks (upstream's exit tasks) run once per execution of the task.
            if let Some(hooks) = task["hooks"].as_object() {
                for hook in hooks.values() {
                    let hook_template = hook["template"].as_str().unwrap_or("");
                    total += times
                        * walk(
                            hook_template,
                            templates,
                            items,
                            skip,
                            path,
                            agent,
                            depth + 1,
                        );
                }
            }
        }
        path.pop();
    }
    total
}
