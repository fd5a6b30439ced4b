//! A container task's image and CPU, memory and accelerator amounts, which may be
//! `{{$.inputs.parameters['x']}}` placeholders over the task's inputs.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kfpd_ir::spec::{ComponentSpec, PipelineContainerSpec, PipelineTaskSpec};
use regex::Regex;
use serde_json::Value;

use crate::scope::{Bound, Scope};
use crate::workflow::Resources;

/// The image and resources, as far as they are known when the run is compiled.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// `None`: the image is decided at run time.
    pub image: Option<String>,
    pub resources: Resources,
    /// Something is decided at run time (the driver's pod spec patch sets it).
    pub needs_patch: bool,
}

fn placeholder() -> &'static Regex {
    static PLACEHOLDER: OnceLock<Regex> = OnceLock::new();
    PLACEHOLDER.get_or_init(|| {
        Regex::new(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}").expect("placeholder pattern")
    })
}

/// Substitutes input placeholders; `Ok(None)` when one is known only at run time.
fn substitute(
    text: &str,
    task: &PipelineTaskSpec,
    component: &ComponentSpec,
    scope: &Scope,
) -> Result<Option<String>, String> {
    if !text.contains("{{") {
        return Ok(Some(text.to_string()));
    }
    let mut out = String::new();
    let mut last = 0;
    for captures in placeholder().captures_iter(text) {
        let (Some(whole), Some(name)) = (captures.get(0), captures.get(1)) else {
            continue;
        };
        out.push_str(&text[last..whole.start()]);
        match scope.task_input(task, component, name.as_str()) {
            Bound::Known(Value::String(s)) => out.push_str(&s),
            Bound::Known(Value::Null) => {}
            Bound::Known(Value::Number(n)) => out.push_str(&n.to_string()),
            Bound::Known(other) => {
                return Err(format!(
                    "input {:?} used in {text:?} must be a string or a number, found {other}",
                    name.as_str()
                ))
            }
            Bound::Runtime => return Ok(None),
        }
        last = whole.end();
    }
    out.push_str(&text[last..]);
    if out.contains("{{") {
        // Another placeholder kind: only the driver can resolve it.
        return Ok(None);
    }
    Ok(Some(out))
}

/// A quantity of the deprecated numeric fields: cores, or GB (`"%vG"` upstream).
fn number(value: f64, unit: &str) -> Option<String> {
    (value > 0.0).then(|| format!("{value}{unit}"))
}

pub fn resolve(
    container: &PipelineContainerSpec,
    task: &PipelineTaskSpec,
    component: &ComponentSpec,
    scope: &Scope,
) -> Result<Resolved, String> {
    let image = substitute(&container.image, task, component, scope)?;
    let mut out = Resolved {
        needs_patch: image.is_none(),
        image,
        ..Resolved::default()
    };
    let Some(spec) = &container.resources else {
        return Ok(out);
    };
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    let mut put = |map: &mut BTreeMap<String, String>,
                   key: &str,
                   text: &str,
                   fallback: Option<String>|
     -> Result<(), String> {
        let value = if text.is_empty() {
            fallback
        } else {
            match substitute(text, task, component, scope)? {
                Some(v) => Some(v),
                None => {
                    out.needs_patch = true;
                    None
                }
            }
        };
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            map.insert(key.to_string(), v);
        }
        Ok(())
    };
    put(
        &mut limits,
        "cpu",
        &spec.resource_cpu_limit,
        number(spec.cpu_limit, ""),
    )?;
    put(
        &mut limits,
        "memory",
        &spec.resource_memory_limit,
        number(spec.memory_limit, "G"),
    )?;
    put(
        &mut requests,
        "cpu",
        &spec.resource_cpu_request,
        number(spec.cpu_request, ""),
    )?;
    put(
        &mut requests,
        "memory",
        &spec.resource_memory_request,
        number(spec.memory_request, "G"),
    )?;
    if let Some(accelerator) = &spec.accelerator {
        let kind_text = if accelerator.resource_type.is_empty() {
            accelerator.accelerator_type.as_str()
        } else {
            accelerator.resource_type.as_str()
        };
        let count_text = if accelerator.resource_count.is_empty() {
            if accelerator.count > 0 {
                accelerator.count.to_string()
            } else {
                String::new()
            }
        } else {
            accelerator.resource_count.clone()
        };
        let kind = substitute(kind_text, task, component, scope)?;
        let count = substitute(&count_text, task, component, scope)?;
        match (kind, count) {
            (Some(kind), Some(count)) if !kind.is_empty() && !count.is_empty() => {
                if count != "0" {
                    limits.insert(kind, count);
                }
            }
            (Some(_), Some(_)) => {}
            _ => out.needs_patch = true,
        }
    }
    out.resources = Resources { limits, requests };
    Ok(out)
}
