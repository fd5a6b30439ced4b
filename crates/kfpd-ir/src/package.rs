//! A validated pipeline package: the pipeline spec, the optional platform
//! spec, and what the API needs to know about them.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::archive::{self, Text};
use crate::de::kind_of;
use crate::error::Error;
use crate::nesting;
use crate::spec::{ComponentInputsSpec, ParameterSpec, PipelineSpec, PlatformSpec};
use crate::validate;

/// Largest upload accepted, in bytes (the same 32 MiB as upstream). Also
/// applied to the pipeline file after decompression.
pub const MAX_PACKAGE_SIZE: usize = 32 * 1024 * 1024;

/// Key of a platform spec document.
const PLATFORMS_KEY: &str = "platforms";
/// Keys of the `{pipeline_spec, platform_spec}` wrapper the API and SDK use.
const WRAPPER_SPEC_KEY: &str = "pipeline_spec";
const WRAPPER_PLATFORM_KEY: &str = "platform_spec";

/// A compiled pipeline that passed validation.
///
/// The spec is kept as JSON exactly as given (camelCase keys, integers stay
/// integers) because that is what the API returns and stores; the typed model
/// is kept beside it for code that needs to understand the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pipeline_spec: Value,
    platform_spec: Option<Value>,
    spec: PipelineSpec,
    platform: Option<PlatformSpec>,
}

impl Package {
    /// Validates a pipeline spec object and an optional platform spec object.
    pub fn from_parts(pipeline_spec: Value, platform_spec: Option<Value>) -> Result<Self, Error> {
        let Value::Object(raw) = &pipeline_spec else {
            return Err(Error::spec(format!(
                "expected an object, found {}",
                kind_of(&pipeline_spec)
            )));
        };
        let spec =
            PipelineSpec::deserialize(&pipeline_spec).map_err(|e| Error::spec(e.to_string()))?;
        validate::pipeline(&spec, raw)?;

        let platform = match &platform_spec {
            None => None,
            Some(value @ Value::Object(_)) => {
                let platform =
                    PlatformSpec::deserialize(value).map_err(|e| Error::platform(e.to_string()))?;
                validate::platform(&platform, &spec)?;
                Some(platform)
            }
            Some(other) => {
                return Err(Error::platform(format!(
                    "expected an object, found {}",
                    kind_of(other)
                )))
            }
        };
        Ok(Package {
            pipeline_spec,
            platform_spec,
            spec,
            platform,
        })
    }

    /// The pipeline spec as given (camelCase keys).
    pub fn pipeline_spec(&self) -> &Value {
        &self.pipeline_spec
    }

    /// The platform spec (`{"platforms": ...}`), if the package has one.
    pub fn platform_spec(&self) -> Option<&Value> {
        self.platform_spec.as_ref()
    }

    /// The typed pipeline spec.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// The typed platform spec, if any.
    pub fn platform(&self) -> Option<&PlatformSpec> {
        self.platform.as_ref()
    }

    /// `pipelineInfo.name`.
    pub fn pipeline_name(&self) -> &str {
        &self.spec.pipeline_info.name
    }

    /// `pipelineInfo.displayName`, if set and not empty.
    pub fn display_name(&self) -> Option<&str> {
        Some(self.spec.pipeline_info.display_name.as_str()).filter(|s| !s.is_empty())
    }

    /// `pipelineInfo.description`, if set and not empty.
    pub fn description(&self) -> Option<&str> {
        Some(self.spec.pipeline_info.description.as_str()).filter(|s| !s.is_empty())
    }

    /// The pipeline's inputs (the root component's input definitions).
    pub fn root_inputs(&self) -> &ComponentInputsSpec {
        &self.spec.root.input_definitions
    }

    /// The run parameters the pipeline declares, by name.
    pub fn root_parameters(&self) -> &std::collections::BTreeMap<String, ParameterSpec> {
        &self.spec.root.input_definitions.parameters
    }

    /// The JSON the API returns as `pipeline_spec`: the spec itself, or
    /// `{"pipeline_spec": …, "platform_spec": …}` when there is a platform spec.
    pub fn api_pipeline_spec(&self) -> Value {
        match &self.platform_spec {
            None => self.pipeline_spec.clone(),
            Some(platform) => {
                let mut wrapper = Map::new();
                wrapper.insert(WRAPPER_SPEC_KEY.into(), self.pipeline_spec.clone());
                wrapper.insert(WRAPPER_PLATFORM_KEY.into(), platform.clone());
                Value::Object(wrapper)
            }
        }
    }
}

/// Reads an uploaded pipeline file (YAML, JSON, zip or tar.gz) and validates it.
///
/// `file_name` is the name the file was uploaded under; like upstream, a
/// `.yaml`/`.yml`/`.json` name means plain text and anything else is judged by
/// its content.
pub fn read_package(file_name: &str, bytes: &[u8]) -> Result<Package, Error> {
    let documents = match archive::extract(file_name, bytes)? {
        Text::Json(text) => vec![parse_json(&text)?],
        Text::Yaml(text) => parse_yaml(&text)?,
    };
    from_documents(documents)
}

/// Validates an inline pipeline spec, as `CreateRun` and `CreateRecurringRun`
/// receive it: the spec object itself, or the
/// `{"pipeline_spec": …, "platform_spec": …}` wrapper the SDK sends when the
/// package has a platform spec.
pub fn parse_spec_value(value: &Value) -> Result<Package, Error> {
    let Value::Object(map) = value else {
        return Err(Error::spec(format!(
            "expected an object, found {}",
            kind_of(value)
        )));
    };
    if map.contains_key(WRAPPER_SPEC_KEY) {
        let (spec, platform) = split_wrapper(map)?;
        return Package::from_parts(spec, platform);
    }
    Package::from_parts(value.clone(), None)
}

fn split_wrapper(map: &Map<String, Value>) -> Result<(Value, Option<Value>), Error> {
    if let Some(extra) = map
        .keys()
        .find(|k| *k != WRAPPER_SPEC_KEY && *k != WRAPPER_PLATFORM_KEY)
    {
        return Err(Error::spec(format!(
            "unexpected key {extra:?} next to \"pipeline_spec\"; the wrapper holds only \
             \"pipeline_spec\" and \"platform_spec\""
        )));
    }
    let spec = map.get(WRAPPER_SPEC_KEY).cloned().unwrap_or(Value::Null);
    let platform = match map.get(WRAPPER_PLATFORM_KEY) {
        None | Some(Value::Null) => None,
        Some(p) => Some(p.clone()),
    };
    Ok((spec, platform))
}

/// Sorts the documents of a file into the pipeline spec and the platform spec.
fn from_documents(documents: Vec<Map<String, Value>>) -> Result<Package, Error> {
    if documents.is_empty() {
        return Err(Error::Empty);
    }
    let mut specs = Vec::new();
    let mut platforms = Vec::new();
    for doc in documents {
        if doc.contains_key(PLATFORMS_KEY) {
            platforms.push(Value::Object(doc));
        } else if doc.contains_key(WRAPPER_SPEC_KEY) {
            let (spec, platform) = split_wrapper(&doc)?;
            specs.push(spec);
            platforms.extend(platform);
        } else {
            specs.push(Value::Object(doc));
        }
    }
    if platforms.len() > 1 {
        return Err(Error::platform(format!(
            "the file has {} platform specs (documents with a \"platforms\" key); at most one is allowed",
            platforms.len()
        )));
    }
    match specs.len() {
        0 => Err(Error::spec(
            "the file has no pipeline spec, only a platform spec".to_string(),
        )),
        1 => {
            let spec = specs.pop().unwrap_or(Value::Null);
            Package::from_parts(spec, platforms.pop())
        }
        n => Err(Error::spec(format!(
            "the file has {n} documents that are not a platform spec; expected exactly one \
             pipeline spec and at most one platform spec"
        ))),
    }
}

fn strip_bom(text: &[u8]) -> &[u8] {
    text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text)
}

fn parse_json(text: &[u8]) -> Result<Map<String, Value>, Error> {
    let text = strip_bom(text);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::Empty);
    }
    let value: Value =
        serde_json::from_slice(text).map_err(|e| Error::Syntax(format!("invalid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(Error::Syntax(format!(
            "invalid pipeline file: expected a JSON object, found {}",
            kind_of(&other)
        ))),
    }
}

/// Parses every YAML document; empty documents are skipped.
fn parse_yaml(text: &[u8]) -> Result<Vec<Map<String, Value>>, Error> {
    let text = strip_bom(text);
    if let Some(line) = nesting::too_deep(text, nesting::MAX_DEPTH) {
        return Err(Error::Syntax(format!(
            "invalid YAML: collections nest deeper than {} levels (at line {line})",
            nesting::MAX_DEPTH
        )));
    }
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_slice(text).enumerate() {
        let mut yaml = serde_yaml::Value::deserialize(document)
            .map_err(|e| Error::Syntax(format!("invalid YAML: {e}")))?;
        yaml.apply_merge()
            .map_err(|e| Error::Syntax(format!("invalid YAML: {e}")))?;
        match yaml_to_json(yaml)
            .map_err(|e| Error::Syntax(format!("invalid YAML in document {}: {e}", index + 1)))?
        {
            Value::Null => continue,
            Value::Object(map) => out.push(map),
            other => {
                return Err(Error::Syntax(format!(
                    "invalid pipeline file: document {} is {}, not a mapping",
                    index + 1,
                    kind_of(&other)
                )))
            }
        }
    }
    Ok(out)
}

/// Converts YAML to JSON the way upstream's YAML-to-JSON step does: integers
/// stay integers, floats stay floats, scalar keys become strings.
fn yaml_to_json(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("the number {n} cannot be represented in JSON"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_string(),
                    other => {
                        return Err(format!(
                            "mapping keys must be scalars, found {}",
                            yaml_kind(&other)
                        ))
                    }
                };
                map.insert(key, yaml_to_json(value)?);
            }
            Value::Object(map)
        }
        // Tags carry no meaning in a pipeline file; keep the tagged value.
        Y::Tagged(tagged) => yaml_to_json(tagged.value)?,
    })
}

fn yaml_kind(value: &serde_yaml::Value) -> &'static str {
    match value {
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        _ => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HELLO: &str = r#"
# PIPELINE DEFINITION
# Name: hello
components:
  comp-echo:
    executorLabel: exec-echo
deploymentSpec:
  executors:
    exec-echo:
      container:
        image: alpine
        command: [echo, hi]
pipelineInfo:
  name: hello
  displayName: Hello pipeline
root:
  inputDefinitions:
    parameters:
      count:
        parameterType: NUMBER_INTEGER
        defaultValue: 3
      ratio:
        parameterType: NUMBER_DOUBLE
        defaultValue: 1.0
  dag:
    tasks:
      echo:
        componentRef: {name: comp-echo}
        taskInfo: {name: echo}
schemaVersion: 2.1.0
sdkVersion: kfp-2.14.6
"#;

    const PLATFORM: &str =
        "platforms:\n  kubernetes:\n    deploymentSpec:\n      executors:\n        \
                            exec-echo:\n          nodeSelector: {labels: {a: b}}\n";

    #[test]
    fn reads_yaml_and_keeps_number_kinds() {
        let p = read_package("hello.yaml", HELLO.as_bytes()).unwrap();
        assert_eq!(p.pipeline_name(), "hello");
        assert_eq!(p.display_name(), Some("Hello pipeline"));
        assert_eq!(p.description(), None);
        let params = &p.pipeline_spec()["root"]["inputDefinitions"]["parameters"];
        assert!(params["count"]["defaultValue"].is_i64());
        assert!(params["ratio"]["defaultValue"].is_f64());
        assert_eq!(p.root_parameters().len(), 2);
        assert!(p.platform_spec().is_none());
        assert_eq!(p.api_pipeline_spec(), *p.pipeline_spec());
    }

    #[test]
    fn platform_spec_document() {
        let text = format!("{HELLO}---\n{PLATFORM}");
        let p = read_package("hello.yaml", text.as_bytes()).unwrap();
        assert!(p.platform().and_then(|s| s.kubernetes()).is_some());
        let api = p.api_pipeline_spec();
        assert_eq!(api["pipeline_spec"], *p.pipeline_spec());
        assert_eq!(
            api["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
                ["exec-echo"]["nodeSelector"]["labels"]["a"],
            "b"
        );
        // The platform spec may come first.
        let text = format!("{PLATFORM}---\n{HELLO}");
        assert!(read_package("hello.yaml", text.as_bytes()).is_ok());
    }

    #[test]
    fn document_count_errors() {
        let two = format!("{HELLO}---\n{HELLO}");
        let err = read_package("p.yaml", two.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 documents that are not a platform spec"),
            "{err}"
        );
        let two = format!("{HELLO}---\n{PLATFORM}---\n{PLATFORM}");
        let err = read_package("p.yaml", two.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("platform spec: the file has 2 platform specs"),
            "{err}"
        );
        let err = read_package("p.yaml", PLATFORM.as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "pipeline spec: the file has no pipeline spec, only a platform spec"
        );
        for empty in [
            "",
            "   \n",
            "# just a comment\n",
            "---\n---\n",
            "\u{feff}# bom\n",
        ] {
            let err = read_package("p.yaml", empty.as_bytes()).unwrap_err();
            assert_eq!(err, Error::Empty, "{empty:?}");
        }
        assert_eq!(read_package("p.json", b" \n").unwrap_err(), Error::Empty);
    }

    #[test]
    fn syntax_errors() {
        let err = read_package("p.yaml", b"a: [1, 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid YAML:"), "{err}");
        let err = read_package("p.yaml", b"just text")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid pipeline file: document 1 is a string, not a mapping"
        );
        let err = read_package("p.json", b"{\"a\": }")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid JSON:") && err.contains("line 1"),
            "{err}"
        );
        let err = read_package("p.json", b"[1]").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid pipeline file: expected a JSON object, found a list"
        );
        let err = read_package("p.yaml", b"a: 1\na: 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate"), "{err}");
        let err = read_package("p.yaml", b"a: .nan\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be represented in JSON"), "{err}");
    }

    #[test]
    fn yaml_keys_and_tags() {
        let v = yaml_to_json(serde_yaml::from_str("1: a\ntrue: !custom b\nx: [1.5, -2]").unwrap())
            .unwrap();
        assert_eq!(v, json!({"1": "a", "true": "b", "x": [1.5, -2]}));
        assert!(yaml_to_json(serde_yaml::from_str("[a]: 1").unwrap()).is_err());
    }

    #[test]
    fn json_files_and_the_wrapper_form() {
        let spec: Value = serde_yaml::from_str(HELLO).unwrap();
        let bytes = serde_json::to_vec(&spec).unwrap();
        let p = read_package("hello.json", &bytes).unwrap();
        assert_eq!(*p.pipeline_spec(), spec);

        let platform: Value = serde_yaml::from_str(PLATFORM).unwrap();
        let wrapper = json!({"pipeline_spec": spec, "platform_spec": platform});
        let p = parse_spec_value(&wrapper).unwrap();
        assert_eq!(p.platform_spec(), Some(&platform));
        assert_eq!(p.api_pipeline_spec(), wrapper);
        // What GetPipelineVersion returns can be uploaded again.
        let p2 = read_package("again.json", &serde_json::to_vec(&wrapper).unwrap()).unwrap();
        assert_eq!(p, p2);

        let p = parse_spec_value(&json!({"pipeline_spec": spec, "platform_spec": null})).unwrap();
        assert!(p.platform_spec().is_none());
        let err = parse_spec_value(&json!({"pipeline_spec": spec, "extra": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unexpected key \"extra\""), "{err}");
        let err = parse_spec_value(&json!("text")).unwrap_err().to_string();
        assert_eq!(err, "pipeline spec: expected an object, found a string");
        let err = parse_spec_value(&json!({"pipeline_spec": spec, "platform_spec": [1]}))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "platform spec: expected an object, found a list");
    }

    #[test]
    fn strict_fields() {
        let text = HELLO.replace("components:", "components_1:");
        let err = read_package("p.yaml", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("pipeline spec: unknown field `components_1`"),
            "{err}"
        );
        let text = HELLO.replace(
            "image: alpine",
            "image: alpine\n        imagePullPolicy: Always",
        );
        let err = read_package("p.yaml", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "pipeline spec: deploymentSpec: executor \"exec-echo\": container: unknown field `imagePullPolicy`"
            ),
            "{err}"
        );
        let text = format!("{HELLO}---\nplatforms:\n  kubernetes:\n    bogus: 1\n");
        let err = read_package("p.yaml", text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("platform spec: platform \"kubernetes\": unknown field `bogus`"),
            "{err}"
        );
    }
}
