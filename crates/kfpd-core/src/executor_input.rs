//! The ExecutorInput a task process receives (`{{$}}`), and the placeholders of
//! its command line resolved against it: every placeholder of the IR, including
//! `Concat` and `IfPresent`, which upstream's Go backend lacks.

use crate::error::Error;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kfpd_ir::spec::{ComponentOutputsSpec, PipelineContainerSpec};

use serde_json::{json, Map, Value};

use crate::results::ArtifactRef;
use crate::values::format_for_command;

/// An artifact as a task sees it: `uri` is a local path (the SDK uses a URI without
/// a known scheme as the path), so nothing is written to `/minio` or `/gcs`.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeArtifact {
    pub name: String,
    pub uri: String,
    pub schema_title: String,
    pub schema_version: String,
    pub metadata: Map<String, Value>,
}

impl RuntimeArtifact {
    pub fn to_json(&self) -> Value {
        let mut artifact = Map::new();
        artifact.insert("name".into(), json!(self.name));
        let mut kind = Map::new();
        kind.insert("schemaTitle".into(), json!(self.schema_title));
        if !self.schema_version.is_empty() {
            kind.insert("schemaVersion".into(), json!(self.schema_version));
        }
        artifact.insert("type".into(), Value::Object(kind));
        artifact.insert("uri".into(), json!(self.uri));
        artifact.insert("metadata".into(), Value::Object(self.metadata.clone()));
        Value::Object(artifact)
    }
}

/// Run and task facts for the `{{$.pipeline_*}}` placeholders.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobInfo {
    /// The run's display name.
    pub job_name: String,
    /// The run's resource name (upstream: the Argo workflow name).
    pub job_resource_name: String,
    /// The run id.
    pub job_uuid: String,
    pub task_name: String,
    pub task_uuid: String,
    /// RFC 3339.
    pub create_time: String,
    pub schedule_time: String,
    pub pipeline_root: String,
    pub workspace_path: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecutorInput {
    pub parameters: Map<String, Value>,
    pub artifacts: BTreeMap<String, Vec<RuntimeArtifact>>,
    /// Output parameter name → file the task writes the value into.
    pub output_parameters: BTreeMap<String, String>,
    pub output_artifacts: BTreeMap<String, RuntimeArtifact>,
    /// Where the task may write an ExecutorOutput JSON.
    pub output_file: String,
}

impl ExecutorInput {
    /// The protobuf-JSON form of ExecutorInput (lowerCamel names, empty maps left out).
    pub fn to_json(&self) -> Value {
        let mut inputs = Map::new();
        if !self.parameters.is_empty() {
            inputs.insert(
                "parameterValues".into(),
                Value::Object(self.parameters.clone()),
            );
        }
        if !self.artifacts.is_empty() {
            let artifacts: Map<String, Value> = self
                .artifacts
                .iter()
                .map(|(name, list)| {
                    let items: Vec<Value> = list.iter().map(RuntimeArtifact::to_json).collect();
                    (name.clone(), json!({ "artifacts": items }))
                })
                .collect();
            inputs.insert("artifacts".into(), Value::Object(artifacts));
        }
        let mut outputs = Map::new();
        if !self.output_parameters.is_empty() {
            let parameters: Map<String, Value> = self
                .output_parameters
                .iter()
                .map(|(name, file)| (name.clone(), json!({ "outputFile": file })))
                .collect();
            outputs.insert("parameters".into(), Value::Object(parameters));
        }
        if !self.output_artifacts.is_empty() {
            let artifacts: Map<String, Value> = self
                .output_artifacts
                .iter()
                .map(|(name, artifact)| {
                    (name.clone(), json!({ "artifacts": [artifact.to_json()] }))
                })
                .collect();
            outputs.insert("artifacts".into(), Value::Object(artifacts));
        }
        outputs.insert("outputFile".into(), json!(self.output_file));
        json!({ "inputs": Value::Object(inputs), "outputs": Value::Object(outputs) })
    }

    fn is_present(&self, name: &str) -> bool {
        let parameter = self
            .parameters
            .get(name)
            .is_some_and(|value| !value.is_null());
        let artifact = self
            .artifacts
            .get(name)
            .is_some_and(|list| !list.is_empty());
        parameter || artifact
    }
}

/// Resolves a component's command and args into argv.
pub fn resolve_command(
    items: &[String],
    input: &ExecutorInput,
    job: &JobInfo,
) -> Result<Vec<String>, String> {
    let whole = input.to_json().to_string();
    let mut argv = Vec::with_capacity(items.len());
    for item in items {
        expand(item, input, job, &whole, &mut argv)?;
    }
    Ok(argv)
}

/// One command element: a `Concat`/`IfPresent` structure (a JSON string in the IR)
/// or a plain string with placeholders.
fn expand(
    item: &str,
    input: &ExecutorInput,
    job: &JobInfo,
    whole: &str,
    argv: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(structure) = structure_of(item) {
        return expand_structure(&structure, input, job, whole, argv);
    }
    argv.push(substitute(item, input, job, whole)?);
    Ok(())
}

fn structure_of(item: &str) -> Option<Value> {
    let trimmed = item.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    let value: Value = serde_json::from_str(trimmed).ok()?;
    let object = value.as_object()?;
    let is_structure =
        object.len() == 1 && (object.contains_key("Concat") || object.contains_key("IfPresent"));
    is_structure.then_some(value)
}

fn expand_structure(
    structure: &Value,
    input: &ExecutorInput,
    job: &JobInfo,
    whole: &str,
    argv: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(parts) = structure.get("Concat") {
        let parts = parts
            .as_array()
            .ok_or_else(|| format!("Concat placeholder needs a list: {structure}"))?;
        let mut joined = String::new();
        for part in parts {
            let mut pieces = Vec::new();
            expand_value(part, input, job, whole, &mut pieces)?;
            joined.push_str(&pieces.concat());
        }
        argv.push(joined);
        return Ok(());
    }
    let Some(condition) = structure.get("IfPresent") else {
        return Err(format!("unknown placeholder structure: {structure}"));
    };
    let name = condition
        .get("InputName")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("IfPresent placeholder needs an InputName: {structure}"))?;
    let branch = if input.is_present(name) {
        condition.get("Then")
    } else {
        condition.get("Else")
    };
    match branch {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            for item in items {
                expand_value(item, input, job, whole, argv)?;
            }
            Ok(())
        }
        Some(single) => expand_value(single, input, job, whole, argv),
    }
}

fn expand_value(
    value: &Value,
    input: &ExecutorInput,
    job: &JobInfo,
    whole: &str,
    argv: &mut Vec<String>,
) -> Result<(), String> {
    match value {
        Value::String(text) => expand(text, input, job, whole, argv),
        Value::Object(_) => expand_structure(value, input, job, whole, argv),
        other => {
            argv.push(format_for_command(other));
            Ok(())
        }
    }
}

/// Replaces every `{{$…}}` in `text`. Unknown placeholders (cloud-specific ones)
/// are left as they are.
pub fn substitute(
    text: &str,
    input: &ExecutorInput,
    job: &JobInfo,
    whole: &str,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{$") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let token = &after[..end];
        match resolve_token(token, input, job, whole)? {
            Some(replacement) => out.push_str(&replacement),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `['name']` or `["name"]` at the start of `text`: the name and what follows.
fn bracketed(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('[')?;
    let quote = inner
        .chars()
        .next()
        .filter(|ch| *ch == '\'' || *ch == '"')?;
    let inner = &inner[1..];
    let close = inner.find(quote)?;
    let name = &inner[..close];
    let rest = inner[close + 1..].strip_prefix(']')?;
    Some((name, rest))
}

fn resolve_token(
    token: &str,
    input: &ExecutorInput,
    job: &JobInfo,
    whole: &str,
) -> Result<Option<String>, String> {
    let job_value = match token {
        "$" => Some(whole.to_string()),
        "$.pipeline_job_name" => Some(job.job_name.clone()),
        "$.pipeline_job_resource_name" => Some(job.job_resource_name.clone()),
        "$.pipeline_job_uuid" => Some(job.job_uuid.clone()),
        "$.pipeline_task_name" => Some(job.task_name.clone()),
        "$.pipeline_task_uuid" => Some(job.task_uuid.clone()),
        "$.pipeline_job_create_time_utc" => Some(job.create_time.clone()),
        "$.pipeline_job_schedule_time_utc" => Some(job.schedule_time.clone()),
        "$.pipeline_root" => Some(job.pipeline_root.clone()),
        "$.workspace_path" => Some(job.workspace_path.clone()),
        "$.outputs.output_file" | "$.outputMetadataUri" => Some(input.output_file.clone()),
        _ => None,
    };
    if job_value.is_some() {
        return Ok(job_value);
    }
    if let Some(rest) = token.strip_prefix("$.inputs.parameters") {
        let Some((name, "")) = bracketed(rest) else {
            return Ok(None);
        };
        return match input.parameters.get(name) {
            Some(value) => Ok(Some(format_for_command(value))),
            None => Err(format!(
                "input parameter {name:?} has no value and no default"
            )),
        };
    }
    if let Some(rest) = token.strip_prefix("$.inputs.artifacts") {
        let Some((name, field)) = bracketed(rest) else {
            return Ok(None);
        };
        let list = input
            .artifacts
            .get(name)
            .ok_or_else(|| format!("input artifact {name:?} was not provided"))?;
        if field.is_empty() {
            let items: Vec<Value> = list.iter().map(RuntimeArtifact::to_json).collect();
            let value = if items.len() == 1 {
                items[0].clone()
            } else {
                Value::Array(items)
            };
            return Ok(Some(value.to_string()));
        }
        let first = list
            .first()
            .ok_or_else(|| format!("input artifact {name:?} is an empty list"))?;
        return Ok(artifact_field(first, field));
    }
    if let Some(rest) = token.strip_prefix("$.outputs.parameters") {
        let Some((name, ".output_file")) = bracketed(rest) else {
            return Ok(None);
        };
        return match input.output_parameters.get(name) {
            Some(file) => Ok(Some(file.clone())),
            None => Err(format!("component has no output parameter {name:?}")),
        };
    }
    if let Some(rest) = token.strip_prefix("$.outputs.artifacts") {
        let Some((name, field)) = bracketed(rest) else {
            return Ok(None);
        };
        let artifact = input
            .output_artifacts
            .get(name)
            .ok_or_else(|| format!("component has no output artifact {name:?}"))?;
        if field.is_empty() {
            return Ok(Some(artifact.to_json().to_string()));
        }
        return Ok(artifact_field(artifact, field));
    }
    Ok(None)
}

fn artifact_field(artifact: &RuntimeArtifact, field: &str) -> Option<String> {
    match field {
        ".uri" | ".path" => Some(artifact.uri.clone()),
        ".metadata" => Some(Value::Object(artifact.metadata.clone()).to_string()),
        _ => {
            let key = field.strip_prefix(".metadata")?;
            let (key, "") = bracketed(key)? else {
                return None;
            };
            Some(
                artifact
                    .metadata
                    .get(key)
                    .map(format_for_command)
                    .unwrap_or_default(),
            )
        }
    }
}

/// Resolves placeholders inside string parameter values against their sibling
/// parameters (f-strings in pipelines compile to such values).
pub fn resolve_self_references(
    parameters: &mut Map<String, Value>,
    job: &JobInfo,
) -> Result<(), Error> {
    (|| -> Result<(), String> {
        let snapshot = ExecutorInput {
            parameters: parameters.clone(),
            ..ExecutorInput::default()
        };
        for value in parameters.values_mut() {
            let Value::String(text) = value else { continue };
            if !text.contains("{{$") {
                continue;
            }
            *text = substitute(text, &snapshot, job, "")?;
        }
        Ok(())
    })()
    .map_err(Error::Command)
}

/// Where a task's files are on the machine that runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// Input artifacts are downloaded under it (`<name>/<index>/<last URI segment>`).
    pub inputs_dir: PathBuf,
    /// One file per output parameter.
    pub parameter_dir: PathBuf,
    /// One path per output artifact.
    pub artifact_dir: PathBuf,
    /// Where the task may write its ExecutorOutput.
    pub output_file: PathBuf,
}

/// An input artifact to fetch before the task starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Download {
    /// The task input it is for.
    pub input: String,
    pub artifact_id: i64,
    pub uri: String,
    pub local: PathBuf,
}

/// A task's ExecutorInput with local paths, what to fetch before it runs, and
/// where each output artifact goes once it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub input: ExecutorInput,
    /// In input order; every one must be fetched.
    pub downloads: Vec<Download>,
    /// Output artifact name → store URI (from `output_uri(name)`).
    pub destinations: BTreeMap<String, String>,
}

/// Builds the ExecutorInput of a task with resolved inputs: artifacts as local
/// paths under `layout` (the URI the task sees is the path), output parameters as
/// files, output artifacts as local paths with their declared type and metadata.
pub fn prepare(
    parameters: &Map<String, Value>,
    artifacts: &BTreeMap<String, Vec<ArtifactRef>>,
    outputs: &ComponentOutputsSpec,
    layout: &Layout,
    output_uri: impl Fn(&str) -> String,
) -> Prepared {
    let mut input = ExecutorInput {
        parameters: parameters.clone(),
        ..ExecutorInput::default()
    };
    let mut downloads = Vec::new();
    for (name, list) in artifacts {
        let mut seen = Vec::with_capacity(list.len());
        for (index, artifact) in list.iter().enumerate() {
            let local = layout
                .inputs_dir
                .join(name)
                .join(index.to_string())
                .join(local_name(&artifact.uri));
            seen.push(RuntimeArtifact {
                name: artifact.name.clone(),
                uri: local.display().to_string(),
                schema_title: artifact.schema_title.clone(),
                schema_version: artifact.schema_version.clone(),
                metadata: artifact.metadata.clone(),
            });
            downloads.push(Download {
                input: name.clone(),
                artifact_id: artifact.id,
                uri: artifact.uri.clone(),
                local,
            });
        }
        input.artifacts.insert(name.clone(), seen);
    }
    for name in outputs.parameters.keys() {
        let file = layout.parameter_dir.join(name);
        input
            .output_parameters
            .insert(name.clone(), file.display().to_string());
    }
    let mut destinations = BTreeMap::new();
    for (name, spec) in &outputs.artifacts {
        let local = layout.artifact_dir.join(name);
        destinations.insert(name.clone(), output_uri(name));
        input.output_artifacts.insert(
            name.clone(),
            RuntimeArtifact {
                name: name.clone(),
                uri: local.display().to_string(),
                schema_title: spec
                    .artifact_type
                    .schema_title
                    .clone()
                    .unwrap_or_else(|| "system.Artifact".into()),
                schema_version: spec.artifact_type.schema_version.clone(),
                metadata: spec.metadata.clone().unwrap_or_default(),
            },
        );
    }
    input.output_file = layout.output_file.display().to_string();
    Prepared {
        input,
        downloads,
        destinations,
    }
}

/// Where an artifact an importer copied into the run's workspace is:
/// `<workspace>/.artifacts/<its URI as a local path>`, the remote schemes mapped as
/// upstream maps them (`gs://b/k` → `gcs/b/k`, `minio://` → `minio/`, `s3://` →
/// `s3/`) and a `file://` URI or a path taken as it is. A URI with `..` in it
/// would leave the workspace and is refused.
pub fn workspace_artifact_path(workspace: &Path, uri: &str) -> Result<PathBuf, String> {
    let schemes = [
        ("gs://", "gcs/"),
        ("minio://", "minio/"),
        ("s3://", "s3/"),
        ("file://", ""),
    ];
    let relative = schemes
        .iter()
        .find_map(|(scheme, prefix)| {
            uri.strip_prefix(scheme)
                .map(|rest| format!("{prefix}{}", rest.trim_start_matches('/')))
        })
        .unwrap_or_else(|| uri.trim_start_matches('/').to_string());
    let relative = relative.trim_end_matches('/');
    if relative.is_empty() || relative.split('/').any(|part| part == "..") {
        return Err(format!(
            "artifact URI {uri:?} does not name a place inside the workspace"
        ));
    }
    Ok(workspace.join(".artifacts").join(relative))
}

/// The file name an input artifact is downloaded as: its URI's last segment.
fn local_name(uri: &str) -> String {
    let last = uri
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("artifact");
    if last.is_empty() || last == ".." || last == "." {
        "artifact".to_string()
    } else {
        last.to_string()
    }
}

/// A container's command line and its own environment variables, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Resolves a container's command, args and environment against its ExecutorInput.
pub fn resolve_container(
    container: &PipelineContainerSpec,
    input: &ExecutorInput,
    job: &JobInfo,
) -> Result<Command, Error> {
    (|| -> Result<Command, String> {
        let mut items = container.command.clone();
        items.extend(container.args.iter().cloned());
        let argv = resolve_command(&items, input, job)?;
        if argv.is_empty() {
            return Err("the container has no command".to_string());
        }
        let whole = input.to_json().to_string();
        let mut env = Vec::with_capacity(container.env.len() + 2);
        for variable in &container.env {
            env.push((
                variable.name.clone(),
                substitute(&variable.value, input, job, &whole)?,
            ));
        }
        Ok(Command { argv, env })
    })()
    .map_err(Error::Command)
}

#[cfg(test)]
mod tests {
    #[test]
    fn workspace_paths_map_uris_as_upstream_and_stay_inside() {
        let workspace = std::path::Path::new("/kfp-workspace");
        let path = |uri: &str| super::workspace_artifact_path(workspace, uri);
        assert_eq!(
            path("minio://mlpipeline/sample/sample.txt").unwrap(),
            workspace.join(".artifacts/minio/mlpipeline/sample/sample.txt")
        );
        assert_eq!(
            path("s3://b/k/").unwrap(),
            workspace.join(".artifacts/s3/b/k")
        );
        assert_eq!(
            path("gs://b/k").unwrap(),
            workspace.join(".artifacts/gcs/b/k")
        );
        assert_eq!(
            path("file:///data/in.csv").unwrap(),
            workspace.join(".artifacts/data/in.csv")
        );
        assert!(path("s3://b/../../etc/passwd").is_err());
        assert!(path("file:///").is_err());
    }

    use super::*;

    fn input() -> ExecutorInput {
        let mut parameters = Map::new();
        parameters.insert("text1".into(), json!("hello"));
        parameters.insert("count".into(), json!(3));
        parameters.insert("none".into(), Value::Null);
        let data = RuntimeArtifact {
            name: "data".into(),
            uri: "/task/in/data".into(),
            schema_title: "system.Dataset".into(),
            schema_version: "0.0.1".into(),
            metadata: json!({"rows": 3}).as_object().cloned().unwrap_or_default(),
        };
        let out = RuntimeArtifact {
            name: "model".into(),
            uri: "/task/out/model".into(),
            schema_title: "system.Model".into(),
            schema_version: String::new(),
            metadata: Map::new(),
        };
        ExecutorInput {
            parameters,
            artifacts: BTreeMap::from([("data".to_string(), vec![data])]),
            output_parameters: BTreeMap::from([(
                "Output".to_string(),
                "/task/out/Output".to_string(),
            )]),
            output_artifacts: BTreeMap::from([("model".to_string(), out)]),
            output_file: "/task/executor_output.json".into(),
        }
    }

    fn job() -> JobInfo {
        JobInfo {
            job_name: "my run".into(),
            job_uuid: "run-1".into(),
            task_name: "train".into(),
            ..JobInfo::default()
        }
    }

    fn resolve(items: &[&str]) -> Vec<String> {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        resolve_command(&items, &input(), &job()).unwrap()
    }

    #[test]
    fn plain_placeholders() {
        let argv = resolve(&[
            "echo",
            "{{$.inputs.parameters['text1']}}-{{$.inputs.parameters['count']}}",
            "{{$.inputs.artifacts['data'].path}}",
            "{{$.inputs.artifacts['data'].metadata['rows']}}",
            "{{$.outputs.parameters['Output'].output_file}}",
            "{{$.outputs.artifacts['model'].uri}}",
            "{{$.outputs.output_file}}",
            "{{$.pipeline_job_name}}/{{$.pipeline_task_name}}",
            "{{$.pipeline_google_cloud_project_id}}",
        ]);
        assert_eq!(
            argv,
            [
                "echo",
                "hello-3",
                "/task/in/data",
                "3",
                "/task/out/Output",
                "/task/out/model",
                "/task/executor_output.json",
                "my run/train",
                "{{$.pipeline_google_cloud_project_id}}",
            ]
        );
    }

    #[test]
    fn whole_executor_input() {
        let argv = resolve(&["--executor_input", "{{$}}"]);
        let parsed: Value = serde_json::from_str(&argv[1]).unwrap();
        assert_eq!(parsed["inputs"]["parameterValues"]["count"], 3);
        assert_eq!(
            parsed["outputs"]["parameters"]["Output"]["outputFile"],
            "/task/out/Output"
        );
        assert_eq!(
            parsed["inputs"]["artifacts"]["data"]["artifacts"][0]["type"]["schemaTitle"],
            "system.Dataset"
        );
    }

    #[test]
    fn concat_and_if_present() {
        let argv = resolve(&[
            r#"{"Concat": ["prefix-", "{{$.inputs.parameters['text1']}}", "{{$.outputs.artifacts['model'].uri}}"]}"#,
            r#"{"IfPresent": {"InputName": "text1", "Then": ["--t", "{{$.inputs.parameters['text1']}}"]}}"#,
            r#"{"IfPresent": {"InputName": "none", "Then": ["--n"], "Else": ["--no-n"]}}"#,
            r#"{"IfPresent": {"InputName": "missing", "Then": ["--m"]}}"#,
            r#"{"IfPresent": {"InputName": "data", "Then": [{"Concat": ["a=", "{{$.inputs.artifacts['data'].uri}}"]}]}}"#,
        ]);
        assert_eq!(
            argv,
            [
                "prefix-hello/task/out/model",
                "--t",
                "hello",
                "--no-n",
                "a=/task/in/data"
            ]
        );
    }

    #[test]
    fn missing_parameter_is_an_error_naming_it() {
        let items = vec!["{{$.inputs.parameters['nope']}}".to_string()];
        let error = resolve_command(&items, &input(), &job()).unwrap_err();
        assert!(error.contains("nope"), "{error}");
    }

    #[test]
    fn f_string_values_resolve_against_siblings() {
        let mut parameters = Map::new();
        parameters.insert("pipelinechannel--name".into(), json!("world"));
        parameters.insert(
            "greeting".into(),
            json!("hello {{$.inputs.parameters['pipelinechannel--name']}}!"),
        );
        resolve_self_references(&mut parameters, &job()).unwrap();
        assert_eq!(parameters["greeting"], "hello world!");
    }

    #[test]
    fn prepare_gives_local_paths_and_downloads() {
        let data = ArtifactRef {
            id: 7,
            name: "data".into(),
            uri: "minio://b/run/make/1/data/".into(),
            schema_title: "system.Dataset".into(),
            schema_version: String::new(),
            metadata: Map::new(),
        };
        let artifacts = BTreeMap::from([("data".to_string(), vec![data])]);
        let outputs: ComponentOutputsSpec = serde_json::from_value(json!({
            "parameters": {"Output": {"parameterType": "STRING"}},
            "artifacts": {"model": {"artifactType": {"schemaTitle": "system.Model"}}}
        }))
        .unwrap();
        let layout = Layout {
            inputs_dir: "/w/inputs".into(),
            parameter_dir: "/w/outputs/parameters".into(),
            artifact_dir: "/w/outputs/artifacts".into(),
            output_file: "/w/outputs/output_metadata.json".into(),
        };
        let prepared = prepare(&Map::new(), &artifacts, &outputs, &layout, |name| {
            format!("minio://b/out/{name}")
        });
        assert_eq!(
            prepared.downloads,
            vec![Download {
                input: "data".into(),
                artifact_id: 7,
                uri: "minio://b/run/make/1/data/".into(),
                local: "/w/inputs/data/0/data".into(),
            }]
        );
        assert_eq!(
            prepared.input.artifacts["data"][0].uri,
            "/w/inputs/data/0/data"
        );
        assert_eq!(
            prepared.input.output_parameters["Output"],
            "/w/outputs/parameters/Output"
        );
        assert_eq!(
            prepared.input.output_artifacts["model"].uri,
            "/w/outputs/artifacts/model"
        );
        assert_eq!(prepared.destinations["model"], "minio://b/out/model");
        assert_eq!(local_name("s3://b/.."), "artifact");
    }

    #[test]
    fn containers_resolve_argv_and_env() {
        let container: PipelineContainerSpec = serde_json::from_value(json!({
            "image": "alpine",
            "command": ["echo"],
            "args": ["{{$.inputs.parameters['text1']}}"],
            "env": [{"name": "GREETING", "value": "{{$.inputs.parameters['text1']}}"}]
        }))
        .unwrap();
        let command = resolve_container(&container, &input(), &job()).unwrap();
        assert_eq!(command.argv, ["echo", "hello"]);
        assert_eq!(command.env, [("GREETING".to_string(), "hello".to_string())]);
        let empty = PipelineContainerSpec::default();
        let error = resolve_container(&empty, &input(), &job()).unwrap_err();
        assert_eq!(
            error,
            Error::Command("the container has no command".to_string())
        );
    }
}
