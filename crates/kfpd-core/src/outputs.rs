//! Reading what a finished task produced: the ExecutorOutput file and the output
//! parameter files, with upstream's precedence (ExecutorOutput wins).

use crate::error::Error;
use std::collections::BTreeMap;
use std::path::PathBuf;

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

/// Reads the ExecutorOutput at `output_file` (if the task wrote one) and each
/// declared output parameter not given there from its own file. A declared parameter
/// found nowhere is an error. `read` gives a file's text, `None` when there is none:
/// the caller decides where files live (a local directory, a pod's volume).
pub fn read_outputs(
    outputs: &ComponentOutputsSpec,
    output_file: &str,
    parameter_files: &BTreeMap<String, String>,
    mut read: impl FnMut(&str) -> Option<String>,
) -> Result<TaskOutputs, Error> {
    (|| -> Result<TaskOutputs, String> {
        let executor_output: Value = match read(output_file) {
            Some(text) if !text.trim().is_empty() => {
                serde_json::from_str(&text).map_err(|error| {
                    format!("the task's executor output {output_file} is not JSON: {error}")
                })?
            }
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
            let text = read(file).ok_or_else(|| {
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
                        .and_then(|artifact| {
                            artifact.get(key).or_else(|| artifact.get(alternative))
                        })
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
    })()
    .map_err(Error::Outputs)
}

/// Where a task left an output artifact's content: its `set_path` location, the
/// local path it reported (pythonic artifacts), or the path it was given.
pub fn content_path(provisioned: &str, reported: Option<&ReportedArtifact>) -> PathBuf {
    let Some(reported) = reported else {
        return PathBuf::from(provisioned);
    };
    if let Some(custom) = &reported.custom_path {
        return PathBuf::from(custom);
    }
    match reported.uri.as_deref() {
        Some(uri) if uri.starts_with('/') => PathBuf::from(uri),
        Some(uri) if uri.starts_with("file://") => PathBuf::from(uri.trim_start_matches("file://")),
        _ => PathBuf::from(provisioned),
    }
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

    fn files(entries: &[(&str, &str)]) -> impl FnMut(&str) -> Option<String> {
        let files: BTreeMap<String, String> = entries
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string()))
            .collect();
        move |path: &str| files.get(path).cloned()
    }

    #[test]
    fn executor_output_wins_over_files() {
        let parameter_files = BTreeMap::from([
            ("Output".to_string(), "/o/Output".to_string()),
            ("text".to_string(), "/o/text".to_string()),
        ]);
        let read = files(&[
            (
                "/o/output_metadata.json",
                r#"{"parameterValues": {"Output": 5.0}, "artifacts": {"m": {"artifacts": [{"metadata": {"acc": 0.9}, "customPath": "/elsewhere"}]}}}"#,
            ),
            ("/o/Output", "4"),
            ("/o/text", "hi"),
        ]);
        let read = read_outputs(
            &outputs(),
            "/o/output_metadata.json",
            &parameter_files,
            read,
        )
        .unwrap();
        assert_eq!(read.parameters["Output"], json!(5));
        assert_eq!(read.parameters["text"], json!("hi"));
        assert_eq!(read.artifacts["m"].metadata["acc"], json!(0.9));
        assert_eq!(
            content_path("/o/m", read.artifacts.get("m")),
            PathBuf::from("/elsewhere")
        );
        assert_eq!(content_path("/o/n", None), PathBuf::from("/o/n"));
    }

    #[test]
    fn a_missing_parameter_file_is_an_error() {
        let parameter_files = BTreeMap::from([("Output".to_string(), "/o/Output".to_string())]);
        let error =
            read_outputs(&outputs(), "/o/none.json", &parameter_files, files(&[])).unwrap_err();
        assert!(matches!(error, Error::Outputs(_)), "{error:?}");
        assert!(error.to_string().contains("Output"), "{error}");
    }

    #[test]
    fn an_executor_output_that_is_not_json_is_named() {
        let error = read_outputs(
            &outputs(),
            "/o/output_metadata.json",
            &BTreeMap::new(),
            files(&[("/o/output_metadata.json", "{")]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("/o/output_metadata.json"), "{error}");
    }

    #[test]
    fn pythonic_artifacts_report_their_own_path() {
        let reported = ReportedArtifact {
            uri: Some("file:///tmp/model".into()),
            ..ReportedArtifact::default()
        };
        assert_eq!(
            content_path("/o/m", Some(&reported)),
            PathBuf::from("/tmp/model")
        );
        let remote = ReportedArtifact {
            uri: Some("minio://bucket/model".into()),
            ..ReportedArtifact::default()
        };
        assert_eq!(content_path("/o/m", Some(&remote)), PathBuf::from("/o/m"));
    }
}
