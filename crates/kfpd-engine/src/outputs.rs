//! Reading what a finished task produced: the ExecutorOutput file and the output
//! parameter files, with upstream's precedence (ExecutorOutput wins).

use std::collections::BTreeMap;
use std::path::Path;

use kfpd_ir::spec::ComponentOutputsSpec;
use serde_json::{Map, Value};

use crate::values::{normalize_number, parse_output};

/// What the task reported, before artifacts are uploaded.
#[derive(Debug, Default, PartialEq)]
pub struct TaskOutputs {
    pub parameters: Map<String, Value>,
    /// What the task reported per output artifact.
    pub artifacts: BTreeMap<String, ReportedArtifact>,
}

/// An output artifact as the task's ExecutorOutput describes it.
#[derive(Debug, Default, PartialEq)]
pub struct ReportedArtifact {
    pub metadata: Map<String, Value>,
    /// The URI the task reported (pythonic artifacts return their own).
    pub uri: Option<String>,
    /// `Artifact.set_path(...)`: where the task wrote the content instead.
    pub custom_path: Option<String>,
}

/// Reads `output_file` (if the task wrote one) and each declared output parameter
/// not given there from its own file. A declared parameter found nowhere is an error.
pub fn read_outputs(
    outputs: &ComponentOutputsSpec,
    output_file: &Path,
    parameter_files: &BTreeMap<String, String>,
) -> Result<TaskOutputs, String> {
    let executor_output: Value = match std::fs::read_to_string(output_file) {
        Ok(text) if !text.trim().is_empty() => serde_json::from_str(&text).map_err(|error| {
            format!(
                "the task's executor output {} is not JSON: {error}",
                output_file.display()
            )
        })?,
        _ => Value::Null,
    };
    let given_parameters = executor_output
        .get("parameterValues")
        .or_else(|| executor_output.get("parameter_values"))
        .and_then(Value::as_object);
    let mut parameters = Map::new();
    for (name, spec) in &outputs.parameters {
        if let Some(value) = given_parameters.and_then(|given| given.get(name)) {
            parameters.insert(name.clone(), normalize_number(value.clone()));
            continue;
        }
        let Some(file) = parameter_files.get(name) else {
            continue;
        };
        let text = std::fs::read_to_string(file).map_err(|_| {
            format!("the task did not write output parameter {name:?} (expected file {file})")
        })?;
        parameters.insert(
            name.clone(),
            parse_output(name, spec.effective_type(), &text)?,
        );
    }
    let mut reported = BTreeMap::new();
    if let Some(artifacts) = executor_output.get("artifacts").and_then(Value::as_object) {
        for (name, list) in artifacts {
            let first = list
                .get("artifacts")
                .and_then(Value::as_array)
                .and_then(|items| items.first());
            let text = |key: &str, alternative: &str| {
                first
                    .and_then(|artifact| artifact.get(key).or_else(|| artifact.get(alternative)))
                    .and_then(Value::as_str)
                    .filter(|text| !text.is_empty())
                    .map(str::to_string)
            };
            let metadata = first
                .and_then(|artifact| artifact.get("metadata"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            reported.insert(
                name.clone(),
                ReportedArtifact {
                    metadata,
                    uri: text("uri", "uri"),
                    custom_path: text("customPath", "custom_path"),
                },
            );
        }
    }
    Ok(TaskOutputs {
        parameters,
        artifacts: reported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outputs() -> ComponentOutputsSpec {
        serde_json::from_value(json!({
            "parameters": {
                "Output": {"parameterType": "NUMBER_INTEGER"},
                "text": {"parameterType": "STRING"}
            }
        }))
        .unwrap()
    }

    #[test]
    fn executor_output_wins_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let output_file = dir.path().join("output_metadata.json");
        std::fs::write(
            &output_file,
            r#"{"parameterValues": {"Output": 5.0}, "artifacts": {"m": {"artifacts": [{"metadata": {"acc": 0.9}}]}}}"#,
        )
        .unwrap();
        let output_path = dir.path().join("Output");
        std::fs::write(&output_path, "4").unwrap();
        let text_path = dir.path().join("text");
        std::fs::write(&text_path, "hi").unwrap();
        let files = BTreeMap::from([
            ("Output".to_string(), output_path.display().to_string()),
            ("text".to_string(), text_path.display().to_string()),
        ]);
        let read = read_outputs(&outputs(), &output_file, &files).unwrap();
        assert_eq!(read.parameters["Output"], json!(5));
        assert_eq!(read.parameters["text"], json!("hi"));
        assert_eq!(read.artifacts["m"].metadata["acc"], json!(0.9));
    }

    #[test]
    fn a_missing_parameter_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = BTreeMap::from([(
            "Output".to_string(),
            dir.path().join("Output").display().to_string(),
        )]);
        let error = read_outputs(&outputs(), &dir.path().join("none.json"), &files).unwrap_err();
        assert!(error.contains("Output"), "{error}");
    }
}
