//! ReportService's ReportScheduledWorkflow: a ScheduledWorkflow object
//! (`kubeflow.org`, as upstream's persistence agent sends it) brings its
//! recurring run up to date. Upstream's recurring run id is the object's UID;
//! the fields it carries over are the ones upstream's report writes: enabled,
//! max concurrency, no catch-up, the trigger and the run parameters. The
//! update is checked and written as UpdateRecurringRun's.

use kfpd_api::v2beta1 as api;
use serde_json::{json, Map, Value};

use super::Api;
use crate::error::{Error, Result};

const WHAT: &str = "report scheduled workflow";

/// What a ScheduledWorkflow says about its recurring run.
#[derive(Debug, PartialEq)]
pub(super) struct Reported {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// The recurring run's fields, in the API's JSON form.
    pub fields: Map<String, Value>,
    /// Parameters given in `spec.workflow.parameters`, if that list is present.
    pub parameters: Option<Map<String, Value>>,
}

fn invalid(message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{WHAT}: {message}"))
}

/// Reads the ScheduledWorkflow's JSON, refusing what upstream refuses (not
/// JSON, no name, namespace or UID) and fields of the wrong type.
pub(super) fn parse(text: &str) -> Result<Reported> {
    let object: Value = serde_json::from_str(text)
        .map_err(|error| invalid(format!("not a JSON ScheduledWorkflow: {error}")))?;
    if !object.is_object() {
        return Err(invalid("not a JSON ScheduledWorkflow object"));
    }
    if let Some(kind) = object.get("kind").and_then(Value::as_str) {
        if kind != "ScheduledWorkflow" {
            return Err(invalid(format!("kind is {kind:?}, not ScheduledWorkflow")));
        }
    }
    let metadata = &object["metadata"];
    let text_of = |key: &str| -> Result<String> {
        match metadata[key].as_str().map(str::trim) {
            Some(value) if !value.is_empty() => Ok(value.to_string()),
            _ => Err(invalid(format!("metadata.{key} is required"))),
        }
    };
    let (name, namespace, uid) = (text_of("name")?, text_of("namespace")?, text_of("uid")?);
    let spec = match &object["spec"] {
        Value::Null => Map::new(),
        Value::Object(spec) => spec.clone(),
        _ => return Err(invalid("spec is not an object")),
    };
    let mut fields = Map::new();
    if let Some(enabled) = spec.get("enabled") {
        let enabled = enabled
            .as_bool()
            .ok_or_else(|| invalid("spec.enabled is not a boolean"))?;
        fields.insert(
            "mode".into(),
            json!(if enabled { "ENABLE" } else { "DISABLE" }),
        );
    }
    if let Some(value) = spec.get("maxConcurrency").filter(|v| !v.is_null()) {
        let count = value
            .as_i64()
            .ok_or_else(|| invalid("spec.maxConcurrency is not an integer"))?;
        fields.insert("max_concurrency".into(), json!(count.to_string()));
    }
    if let Some(value) = spec.get("noCatchup").filter(|v| !v.is_null()) {
        let no_catchup = value
            .as_bool()
            .ok_or_else(|| invalid("spec.noCatchup is not a boolean"))?;
        fields.insert("no_catchup".into(), json!(no_catchup));
    }
    if let Some(trigger) = spec.get("trigger").filter(|v| !v.is_null()) {
        fields.insert("trigger".into(), trigger_json(trigger)?);
    }
    let parameters = match spec.get("workflow").and_then(|w| w.get("parameters")) {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(parameters(list)?),
        Some(_) => return Err(invalid("spec.workflow.parameters is not a list")),
    };
    Ok(Reported {
        uid,
        name,
        namespace,
        fields,
        parameters,
    })
}

/// `{cronSchedule{cron,startTime,endTime} | periodicSchedule{intervalSecond,…}}`
/// in the API's JSON form; the values are checked by the update.
fn trigger_json(trigger: &Value) -> Result<Value> {
    let window = |schedule: &Value, into: &mut Map<String, Value>| -> Result<()> {
        for (from, to) in [("startTime", "start_time"), ("endTime", "end_time")] {
            match &schedule[from] {
                Value::Null => {}
                Value::String(time) => {
                    into.insert(to.into(), json!(time));
                }
                _ => return Err(invalid(format!("trigger {from} is not an RFC 3339 time"))),
            }
        }
        Ok(())
    };
    let cron = &trigger["cronSchedule"];
    let periodic = &trigger["periodicSchedule"];
    match (cron.is_null(), periodic.is_null()) {
        (false, false) => Err(invalid(
            "spec.trigger has both cronSchedule and periodicSchedule",
        )),
        (false, true) => {
            let expression = cron["cron"]
                .as_str()
                .ok_or_else(|| invalid("spec.trigger.cronSchedule.cron is required"))?;
            let mut schedule = Map::new();
            schedule.insert("cron".into(), json!(expression));
            window(cron, &mut schedule)?;
            Ok(json!({"cron_schedule": schedule}))
        }
        (true, false) => {
            let interval = periodic["intervalSecond"].as_i64().ok_or_else(|| {
                invalid("spec.trigger.periodicSchedule.intervalSecond is not an integer")
            })?;
            let mut schedule = Map::new();
            schedule.insert("interval_second".into(), json!(interval.to_string()));
            window(periodic, &mut schedule)?;
            Ok(json!({"periodic_schedule": schedule}))
        }
        (true, true) => Ok(json!({})),
    }
}

/// `[{name, value}]`; a value that is JSON (v2 runtime parameters) is taken as
/// that JSON, any other text as a string.
fn parameters(list: &[Value]) -> Result<Map<String, Value>> {
    let mut parameters = Map::new();
    for (index, item) in list.iter().enumerate() {
        let name = item["name"]
            .as_str()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| invalid(format!("spec.workflow.parameters[{index}] has no name")))?;
        let value = match &item["value"] {
            Value::Null => Value::Null,
            Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
            other => other.clone(),
        };
        if parameters.insert(name.to_string(), value).is_some() {
            return Err(invalid(format!(
                "spec.workflow.parameters names {name:?} twice"
            )));
        }
    }
    Ok(parameters)
}

impl Api {
    /// ReportScheduledWorkflow: the recurring run whose id is the object's UID
    /// takes the object's schedule, concurrency and parameters.
    pub async fn report_scheduled_workflow(&self, text: &str) -> Result<()> {
        let mut reported = parse(text)?;
        let row = self
            .recurring_run_for(&reported.uid, kfpd_auth::Verb::Report)
            .await?;
        if !row.namespace.is_empty() && row.namespace != reported.namespace {
            return Err(invalid(format!(
                "recurring run {} is in namespace {:?}, the ScheduledWorkflow {} in {:?}",
                row.id, row.namespace, reported.name, reported.namespace
            )));
        }
        if let Some(parameters) = reported.parameters.take() {
            // The pipeline root stays; the parameters are replaced.
            let mut config: Map<String, Value> = if row.runtime_config.is_empty() {
                Map::new()
            } else {
                serde_json::from_str(&row.runtime_config).map_err(|error| {
                    Error::internal(format!("stored runtime config is not valid: {error}"))
                })?
            };
            config.insert("parameters".into(), Value::Object(parameters));
            reported
                .fields
                .insert("runtime_config".into(), Value::Object(config));
        }
        if reported.fields.is_empty() {
            return Err(invalid(format!(
                "ScheduledWorkflow {} carries nothing to record (no enabled, maxConcurrency, noCatchup, trigger or workflow.parameters)",
                reported.name
            )));
        }
        let names: Vec<String> = reported.fields.keys().cloned().collect();
        let fields = super::schedules::PatchFields::new(&names)?;
        let given: api::RecurringRun = serde_json::from_value(Value::Object(reported.fields))
            .map_err(|error| invalid(format!("ScheduledWorkflow {}: {error}", reported.name)))?;
        self.write_recurring_run_update(&row.id, &given, &fields)
            .await
            .map_err(|error| {
                Error::new(
                    error.code,
                    format!("{WHAT} {}: {}", reported.name, error.message),
                )
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_upstreams_agent_sends() {
        let text = json!({
            "apiVersion": "kubeflow.org/v2beta1", "kind": "ScheduledWorkflow",
            "metadata": {"name": "nightly", "namespace": "kubeflow", "uid": "u-1"},
            "spec": {
                "enabled": false, "maxConcurrency": 3, "noCatchup": true,
                "trigger": {"cronSchedule": {"cron": "0 0 * * * ?", "startTime": "2026-01-01T00:00:00Z"}},
                "workflow": {"parameters": [{"name": "n", "value": "3"}, {"name": "s", "value": "plain"}]},
            },
        })
        .to_string();
        let reported = parse(&text).unwrap();
        assert_eq!(reported.uid, "u-1");
        assert_eq!(reported.fields["mode"], "DISABLE");
        assert_eq!(reported.fields["max_concurrency"], "3");
        assert_eq!(reported.fields["no_catchup"], true);
        assert_eq!(
            reported.fields["trigger"],
            json!({"cron_schedule": {"cron": "0 0 * * * ?", "start_time": "2026-01-01T00:00:00Z"}})
        );
        let parameters = reported.parameters.unwrap();
        assert_eq!(parameters["n"], 3);
        assert_eq!(parameters["s"], "plain");
    }

    #[test]
    fn refuses_what_cannot_be_a_scheduled_workflow() {
        for (text, expected) in [
            ("not json".to_string(), "not a JSON"),
            (json!({"metadata": {"name": "x", "namespace": "k"}}).to_string(), "metadata.uid"),
            (
                json!({"kind": "Workflow", "metadata": {"name": "x", "namespace": "k", "uid": "u"}})
                    .to_string(),
                "not ScheduledWorkflow",
            ),
            (
                json!({"metadata": {"name": "x", "namespace": "k", "uid": "u"},
                       "spec": {"maxConcurrency": "many"}})
                .to_string(),
                "maxConcurrency",
            ),
            (
                json!({"metadata": {"name": "x", "namespace": "k", "uid": "u"},
                       "spec": {"trigger": {"cronSchedule": {"cron": "* * * * * *"},
                                            "periodicSchedule": {"intervalSecond": 5}}}})
                .to_string(),
                "both",
            ),
            (
                json!({"metadata": {"name": "x", "namespace": "k", "uid": "u"},
                       "spec": {"workflow": {"parameters": [{"value": "1"}]}}})
                .to_string(),
                "has no name",
            ),
        ] {
            let error = parse(&text).unwrap_err();
            assert!(error.message.contains(expected), "{text}: {}", error.message);
            assert!(error.message.starts_with(WHAT), "{}", error.message);
        }
    }
}
