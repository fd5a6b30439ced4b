//! A run as its tasks see it: the facts placeholders name, its inputs, and how its root DAG's result becomes the run's outcome.

use crate::error::Error;
use kfpd_ir::spec::PipelineSpec;
use kfpd_store::{Run, RunState, TaskState};
use serde_json::{Map, Value};

use crate::executor_input::JobInfo;
use crate::values::coerce;

/// What a task may know about its run, wherever it executes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFacts {
    pub run_id: String,
    /// The run's display name (`{{$.pipeline_job_name}}`).
    pub display_name: String,
    pub namespace: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; 0 when the run was not scheduled.
    pub scheduled_at: i64,
    /// The pipeline's name in its spec (`pipelineInfo.name`).
    pub pipeline_name: String,
    /// Where the run's output artifacts go.
    pub pipeline_root: String,
    /// The Argo Workflow executing the run, whose name is then its resource name.
    pub workflow: Option<String>,
}

impl RunFacts {
    pub fn new(run: &Run, pipeline_name: &str, pipeline_root: &str) -> RunFacts {
        RunFacts {
            run_id: run.id.clone(),
            display_name: run.display_name.clone(),
            namespace: run.namespace.clone(),
            created_at: run.created_at,
            scheduled_at: run.scheduled_at,
            pipeline_name: pipeline_name.to_string(),
            pipeline_root: pipeline_root.to_string(),
            workflow: None,
        }
    }

    /// The run's resource name, which components see as `pipeline_job_resource_name`:
    /// its Workflow's name on Argo, else shaped like one (`<pipeline name>-<suffix>`).
    pub fn resource_name(&self) -> String {
        if let Some(workflow) = &self.workflow {
            return workflow.clone();
        }
        let base = self
            .pipeline_name
            .rsplit('/')
            .next()
            .unwrap_or(&self.pipeline_name);
        let suffix: String = self
            .run_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        format!("{base}-{suffix}")
    }

    /// `(created, scheduled)` as RFC 3339; an unscheduled run's is its creation time.
    fn times(&self) -> (String, String) {
        let created = chrono::DateTime::from_timestamp(self.created_at, 0)
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let scheduled = chrono::DateTime::from_timestamp(self.scheduled_at, 0)
            .filter(|_| self.scheduled_at > 0)
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| created.clone());
        (created, scheduled)
    }

    /// Constants that are whole job placeholders get the run's values, as upstream's
    /// driver does. `{{$.pipeline_task_uuid}}` is left for the executor, which knows
    /// the task's id.
    pub fn runtime_constant(&self, constant: Value, task_name: &str) -> Value {
        let Value::String(text) = &constant else {
            return constant;
        };
        let (created, scheduled) = self.times();
        let replacement = match text.as_str() {
            "{{$.pipeline_job_name}}" => Some(self.display_name.clone()),
            "{{$.pipeline_job_resource_name}}" => Some(self.resource_name()),
            "{{$.pipeline_job_uuid}}" => Some(self.run_id.clone()),
            "{{$.pipeline_task_name}}" => Some(task_name.to_string()),
            "{{$.pipeline_job_create_time_utc}}" => Some(created),
            "{{$.pipeline_job_schedule_time_utc}}" => Some(scheduled),
            _ => None,
        };
        match replacement {
            Some(value) => Value::String(value),
            None => constant,
        }
    }

    /// The facts of the `{{$.pipeline_*}}` placeholders in a task's command.
    pub fn job_info(&self, task_name: &str, task_id: &str, workspace_path: &str) -> JobInfo {
        let (created, _) = self.times();
        JobInfo {
            job_name: self.display_name.clone(),
            job_resource_name: self.resource_name(),
            job_uuid: self.run_id.clone(),
            task_name: task_name.to_string(),
            task_uuid: task_id.to_string(),
            create_time: created.clone(),
            schedule_time: created,
            pipeline_root: self.pipeline_root.clone(),
            workspace_path: workspace_path.to_string(),
        }
    }
}

/// A run's `runtime_config` JSON: its parameters and the pipeline root it asks for.
pub fn runtime_config(json: &str) -> Result<(Map<String, Value>, String), Error> {
    (|| -> Result<(Map<String, Value>, String), String> {
        if json.trim().is_empty() {
            return Ok((Map::new(), String::new()));
        }
        let value: Value = serde_json::from_str(json)
            .map_err(|error| format!("the run's runtime config is not JSON: {error}"))?;
        let parameters = value
            .get("parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let root = value
            .get("pipeline_root")
            .or_else(|| value.get("pipelineRoot"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok((parameters, root))
    })()
    .map_err(Error::Run)
}

/// Root inputs: given values (typed as declared) and the defaults of the rest.
pub fn root_inputs(
    spec: &PipelineSpec,
    mut given: Map<String, Value>,
) -> Result<Map<String, Value>, Error> {
    (|| -> Result<Map<String, Value>, String> {
        let mut parameters = Map::new();
        for (name, definition) in &spec.root.input_definitions.parameters {
            let value = match given.remove(name) {
                Some(value) if !value.is_null() => value,
                _ => match &definition.default_value {
                    Some(default) => default.clone(),
                    None if definition.is_optional => continue,
                    None => return Err(format!("pipeline input parameter {name:?} has no value")),
                },
            };
            parameters.insert(
                name.clone(),
                coerce(name, definition.effective_type(), value)?,
            );
        }
        Ok(parameters)
    })()
    .map_err(Error::Run)
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub state: RunState,
    pub error: Option<String>,
}

/// The run's outcome from its root DAG's: a stop wins, a skipped or cached root is a
/// success, and a failed run reports its first failure (else the root's error).
pub fn outcome(
    root_state: TaskState,
    root_error: Option<String>,
    canceled: bool,
    first_failure: Option<String>,
) -> Outcome {
    let state = match root_state {
        _ if canceled => RunState::Canceled,
        TaskState::Succeeded | TaskState::Cached | TaskState::Skipped => RunState::Succeeded,
        TaskState::Canceled => RunState::Canceled,
        _ => RunState::Failed,
    };
    let error = match state {
        RunState::Succeeded => None,
        RunState::Canceled => Some("run was terminated".to_string()),
        _ => first_failure.or(root_error),
    };
    Outcome { state, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> RunFacts {
        RunFacts {
            run_id: "0b2c-41de-9f00".into(),
            display_name: "my run".into(),
            namespace: "default".into(),
            created_at: 1_700_000_000,
            scheduled_at: 0,
            pipeline_name: "ns/my-pipeline".into(),
            pipeline_root: "file:///artifacts".into(),
            workflow: None,
        }
    }

    #[test]
    fn job_placeholders_take_the_run_facts() {
        let run = facts();
        assert_eq!(run.resource_name(), "my-pipeline-0b2c41de");
        let constant = |text: &str| run.runtime_constant(json!(text), "train");
        assert_eq!(constant("{{$.pipeline_job_name}}"), json!("my run"));
        assert_eq!(constant("{{$.pipeline_task_name}}"), json!("train"));
        assert_eq!(
            constant("{{$.pipeline_job_schedule_time_utc}}"),
            json!("2023-11-14T22:13:20Z"),
            "an unscheduled run's schedule time is its creation time"
        );
        assert_eq!(
            constant("{{$.pipeline_task_uuid}}"),
            json!("{{$.pipeline_task_uuid}}")
        );
        assert_eq!(run.runtime_constant(json!(3), "train"), json!(3));
        let scheduled = RunFacts {
            scheduled_at: 1_700_000_060,
            ..facts()
        };
        assert_eq!(
            scheduled.runtime_constant(json!("{{$.pipeline_job_schedule_time_utc}}"), "t"),
            json!("2023-11-14T22:14:20Z")
        );
        let on_argo = RunFacts {
            workflow: Some("my-pipeline-x7k2p".into()),
            ..facts()
        };
        assert_eq!(on_argo.resource_name(), "my-pipeline-x7k2p");
        let job = run.job_info("train", "t-1", "/ws");
        assert_eq!(job.job_resource_name, "my-pipeline-0b2c41de");
        assert_eq!(job.task_uuid, "t-1");
    }

    #[test]
    fn runtime_config_and_root_inputs() {
        let (parameters, root) =
            runtime_config(r#"{"parameters": {"n": 3.0}, "pipelineRoot": "s3://b/r"}"#).unwrap();
        assert_eq!(root, "s3://b/r");
        let spec: PipelineSpec = serde_json::from_value(json!({
            "pipelineInfo": {"name": "p"},
            "root": {"inputDefinitions": {"parameters": {
                "n": {"parameterType": "NUMBER_INTEGER"},
                "m": {"parameterType": "STRING", "defaultValue": "x"},
                "o": {"parameterType": "STRING", "isOptional": true}
            }}}
        }))
        .unwrap();
        let inputs = root_inputs(&spec, parameters).unwrap();
        assert_eq!(Value::Object(inputs), json!({"n": 3, "m": "x"}));
        let error = root_inputs(&spec, Map::new()).unwrap_err();
        assert!(matches!(error, Error::Run(_)), "{error:?}");
        assert!(error.to_string().contains("\"n\""), "{error}");
        assert!(runtime_config("{").is_err());
        assert_eq!(runtime_config(" ").unwrap().1, "");
    }

    #[test]
    fn outcome_rules() {
        let failed = outcome(
            TaskState::Failed,
            Some("root".into()),
            false,
            Some("first".into()),
        );
        assert_eq!(failed.state, RunState::Failed);
        assert_eq!(failed.error.as_deref(), Some("first"));
        let root_only = outcome(TaskState::Failed, Some("root".into()), false, None);
        assert_eq!(root_only.error.as_deref(), Some("root"));
        assert_eq!(
            outcome(TaskState::Skipped, None, false, None).state,
            RunState::Succeeded
        );
        let stopped = outcome(TaskState::Succeeded, None, true, Some("x".into()));
        assert_eq!(stopped.state, RunState::Canceled);
        assert_eq!(stopped.error.as_deref(), Some("run was terminated"));
    }
}
