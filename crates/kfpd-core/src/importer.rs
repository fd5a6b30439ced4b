//! What an importer records: the URI it names (a constant or an input), the
//! metadata with its placeholders resolved, the output it fills and the type.

use kfpd_ir::spec::{ComponentSpec, ImporterSpec};
use serde_json::{Map, Value};

use crate::executor_input::{substitute, ExecutorInput, JobInfo};

/// An artifact an importer records (or finds recorded before).
#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    pub uri: String,
    pub metadata: Map<String, Value>,
    pub output_key: String,
    pub schema_title: String,
    pub schema_version: String,
    /// Record a new artifact even when one with this URI, type and metadata exists.
    pub reimport: bool,
}

/// The import an importer task asks for, given its resolved parameters.
pub fn plan(
    importer: &ImporterSpec,
    component: &ComponentSpec,
    parameters: &Map<String, Value>,
) -> Result<Import, String> {
    let uri = match importer.artifact_uri.constant_json() {
        Some(Value::String(uri)) => uri,
        Some(other) => other.to_string(),
        None => {
            let name = importer
                .artifact_uri
                .runtime_parameter
                .as_deref()
                .ok_or_else(|| "the importer has no artifact_uri".to_string())?;
            match parameters.get(name) {
                Some(Value::String(uri)) => uri.clone(),
                Some(other) => other.to_string(),
                None => return Err(format!("importer input {name:?} has no value")),
            }
        }
    };
    let input = ExecutorInput {
        parameters: parameters.clone(),
        ..ExecutorInput::default()
    };
    let job = JobInfo::default();
    let mut metadata = Map::new();
    for (key, value) in importer.metadata.clone().unwrap_or_default() {
        let resolved_key = substitute(&key, &input, &job, "")?;
        let resolved = match value {
            Value::String(text) => {
                // A value that is one input placeholder keeps the input's type.
                let whole_placeholder = text.starts_with("{{$.inputs.parameters[")
                    && text.ends_with("]}}")
                    && text.matches("{{").count() == 1;
                match (
                    whole_placeholder,
                    parameters
                        .iter()
                        .find(|(name, _)| text.contains(name.as_str())),
                ) {
                    (true, Some((_, typed))) => typed.clone(),
                    _ => Value::String(substitute(&text, &input, &job, "")?),
                }
            }
            other => other,
        };
        metadata.insert(resolved_key, resolved);
    }
    let output_key = component
        .output_definitions
        .artifacts
        .keys()
        .next()
        .cloned()
        .unwrap_or_else(|| "artifact".to_string());
    let schema_title = importer
        .type_schema
        .schema_title
        .clone()
        .unwrap_or_else(|| "system.Artifact".into());
    Ok(Import {
        uri,
        metadata,
        output_key,
        schema_title,
        schema_version: importer.type_schema.schema_version.clone(),
        reimport: importer.reimport,
    })
}

/// Whether an artifact recorded with `recorded` metadata (JSON text) is the one an
/// import without `reimport` gives out again.
pub fn same_metadata(recorded: &str, metadata: &Map<String, Value>) -> bool {
    serde_json::from_str::<Map<String, Value>>(recorded).is_ok_and(|recorded| &recorded == metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uri_from_an_input_and_typed_metadata() {
        let importer: ImporterSpec = serde_json::from_value(json!({
            "artifactUri": {"runtimeParameter": "uri"},
            "typeSchema": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"},
            "metadata": {
                "n": "{{$.inputs.parameters['n']}}",
                "label": "n is {{$.inputs.parameters['n']}}"
            }
        }))
        .unwrap();
        let component: ComponentSpec = serde_json::from_value(json!({
            "outputDefinitions": {"artifacts": {"artifact": {"artifactType": {"schemaTitle": "system.Dataset"}}}}
        }))
        .unwrap();
        let parameters = json!({"uri": "s3://b/data.csv", "n": 3})
            .as_object()
            .cloned()
            .unwrap();
        let import = plan(&importer, &component, &parameters).unwrap();
        assert_eq!(import.uri, "s3://b/data.csv");
        assert_eq!(import.metadata["n"], json!(3));
        assert_eq!(import.metadata["label"], json!("n is 3"));
        assert_eq!(import.schema_title, "system.Dataset");
        assert_eq!(import.output_key, "artifact");
        assert!(!import.reimport);
        assert!(same_metadata(
            r#"{"label": "n is 3", "n": 3}"#,
            &import.metadata
        ));
        assert!(!same_metadata(r#"{"n": 3}"#, &import.metadata));

        let error = plan(&importer, &component, &Map::new()).unwrap_err();
        assert_eq!(error, "importer input \"uri\" has no value");
    }
}
