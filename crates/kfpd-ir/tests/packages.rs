//! The committed test packages (`tests/pipelines/`): every format loads to the same
//! pipeline, every invalid file is rejected with a message naming its problem, and
//! run parameters are checked by declared type. Needs nothing outside the repository.

use std::collections::BTreeSet;
use std::path::Path;

use kfpd_ir::{check_runtime_parameters, generate_test_parameters, read_package, Error, Package};
use kfpd_testdata::{pipeline, pipelines_dir, tar_gz_package, zip_package};
use serde_json::{json, Map, Value};

fn load(relative: &str) -> Result<Package, Error> {
    let path = pipeline(relative);
    let bytes = std::fs::read(&path).expect("readable");
    read_package(&file_name(&path), &bytes)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn params(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

/// Every invalid package and the start of the message it must be rejected with.
const INVALID: &[(&str, &str)] = &[
    (
        "bad-syntax.yaml",
        "invalid YAML: ",
    ),
    (
        "empty.yaml",
        "empty pipeline file: it contains no YAML or JSON document",
    ),
    (
        "no-name.yaml",
        "pipeline spec: pipelineInfo.name is empty",
    ),
    (
        "no-pipeline-member.tar.gz",
        "tar.gz archive: expected a member named pipeline.yaml or a .yaml/.yml file as the first file, found \"notes.txt\"",
    ),
    (
        "no-pipeline-member.zip",
        "zip archive: expected a member named pipeline.yaml or a .yaml/.yml file as the first member, found \"README.txt\"",
    ),
    (
        "not-a-pipeline.png",
        "unexpected pipeline file format for \"not-a-pipeline.png\": upload a .yaml, .yml or .json file, a .zip archive or a .tar.gz tarball",
    ),
    (
        "not-gzip.tar.gz",
        "tar.gz archive: not a valid gzip-compressed tarball",
    ),
    (
        "text-named.zip",
        "unexpected pipeline file format for \"text-named.zip\"",
    ),
    (
        "truncated.zip",
        "zip archive: not a valid zip file",
    ),
    ("unknown-component.yaml", "pipeline spec: task \"echo\" refers to unknown component \"comp-missing\""),
    (
        "unknown-field.yaml",
        "pipeline spec: unknown field `component`, expected one of",
    ),
    (
        "unknown-field.zip",
        "pipeline spec: unknown field `component`, expected one of",
    ),
];

#[test]
fn every_invalid_package_is_listed_with_its_message() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(pipelines_dir().join("invalid"))
        .expect("invalid/ is readable")
        .map(|entry| file_name(&entry.expect("entry").path()))
        .collect();
    let listed: BTreeSet<String> = INVALID.iter().map(|(name, _)| name.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "every file in invalid/ needs its message here"
    );
    for (name, prefix) in INVALID {
        let message = load(&format!("invalid/{name}"))
            .expect_err(name)
            .to_string();
        assert!(message.starts_with(prefix), "{name}: {message}");
    }
}

#[test]
fn every_format_gives_the_same_pipeline() {
    let yaml = load("add.yaml").expect("yaml loads");
    let json = load("add.json").expect("json loads");
    assert_eq!(json, yaml);
    let path = pipeline("add.yaml");
    let zipped = read_package("add.zip", &zip_package(&path, "pipeline.yaml")).expect("zip");
    assert_eq!(zipped, yaml);
    let tarred =
        read_package("add.tar.gz", &tar_gz_package(&path, "pipeline.yaml")).expect("tar.gz");
    assert_eq!(tarred, yaml);
    // Without a pipeline.yaml member the first YAML file is the pipeline.
    let other = read_package("add.zip", &zip_package(&path, "adder.yaml")).expect("zip");
    assert_eq!(other, yaml);
    let other = read_package("add.tar.gz", &tar_gz_package(&path, "adder.yml")).expect("tar.gz");
    assert_eq!(other, yaml);
}

#[test]
fn committed_pipelines_load_and_round_trip_through_the_model() {
    for (relative, name) in [
        ("hello.yaml", "echo"),
        ("add.yaml", "add-numbers"),
        ("identity.yaml", "identity"),
        ("two-step-artifact.yaml", "two-step-artifact"),
        ("parameters.yaml", "parameters"),
    ] {
        let package = load(relative).unwrap_or_else(|error| panic!("{relative}: {error}"));
        assert_eq!(package.pipeline_name(), name);
        let back = serde_json::to_value(package.spec()).expect("serializes");
        let again = kfpd_ir::parse_spec_value(&back).expect("parses back");
        assert_eq!(again.spec(), package.spec(), "{relative}");
    }
}

#[test]
fn a_platform_spec_comes_back_in_the_wrapper() {
    let package = load("parameters.yaml").expect("loads");
    let platform = package.platform_spec().expect("has a platform spec");
    assert!(platform["platforms"]["kubernetes"].is_object());
    let api = package.api_pipeline_spec();
    assert_eq!(&api["pipeline_spec"], package.pipeline_spec());
    assert_eq!(&api["platform_spec"], platform);
    assert_eq!(
        kfpd_ir::parse_spec_value(&api).expect("wrapper round-trips"),
        package
    );
    let plain = load("hello.yaml").expect("loads");
    assert!(plain.platform_spec().is_none());
    assert_eq!(&plain.api_pipeline_spec(), plain.pipeline_spec());
}

#[test]
fn integer_parameters_are_checked_by_type() {
    let package = load("add.yaml").expect("loads");
    let declared: Vec<&str> = package
        .root_parameters()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(declared, ["a", "b"]);
    check_runtime_parameters(&package, &params(json!({"a": 5, "b": 5}))).expect("ints are fine");
    check_runtime_parameters(&package, &params(json!({"a": 5.0, "b": -3})))
        .expect("integral doubles too");
    let cases = [
        (
            json!({"a": 5}),
            "parameter \"b\" is required: it is not optional and has no default value",
        ),
        (
            json!({"a": 5, "b": "5"}),
            "parameter \"b\" must be an integer (NUMBER_INTEGER), got string \"5\"",
        ),
        (
            json!({"a": 1.5, "b": 2}),
            "parameter \"a\" must be an integer (NUMBER_INTEGER), got number 1.5",
        ),
        (
            json!({"a": 1, "b": 2, "c": 3}),
            "parameter \"c\" is not an input of this pipeline; its inputs are: a, b",
        ),
    ];
    for (given, message) in cases {
        let error = check_runtime_parameters(&package, &params(given)).unwrap_err();
        assert_eq!(error.to_string(), message);
    }
    let generated = generate_test_parameters(&package, 1);
    assert_eq!(generated.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert!(generated["a"].as_u64().is_some_and(|a| a < 1000));
}

#[test]
fn parameters_of_every_type_are_required_defaulted_or_optional() {
    let package = load("parameters.yaml").expect("loads");
    let required: Vec<&str> = package
        .root_parameters()
        .iter()
        .filter(|(_, definition)| definition.is_required())
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(required, ["config", "count", "items", "text"]);
    let error = check_runtime_parameters(&package, &Map::new()).unwrap_err();
    assert!(matches!(error, Error::MissingParameter { .. }), "{error}");

    let generated = generate_test_parameters(&package, 3);
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        ["config", "count", "items", "text"]
    );
    assert_eq!(generated["text"].as_str().map(str::len), Some(20));
    check_runtime_parameters(&package, &generated).expect("generated values fit");
    for name in required {
        let mut wrong = generated.clone();
        wrong.insert(name.to_string(), json!(null));
        let error = check_runtime_parameters(&package, &wrong).unwrap_err();
        assert!(
            matches!(error, Error::ParameterType { .. }),
            "{name}: {error}"
        );
    }
    let mut wrong = generated.clone();
    wrong.insert("flag".into(), json!("yes"));
    let error = check_runtime_parameters(&package, &wrong).unwrap_err();
    assert_eq!(
        error.to_string(),
        "parameter \"flag\" must be a boolean (BOOLEAN), got string \"yes\""
    );
}
