//! Every compiled pipeline of the upstream corpus must be judged as its
//! MANIFEST.tsv says: REJECTED files fail with a clear message, all others load.
//! The corpus is not part of a clone: each test skips without it (`KFPD_CORPUS_DIR`),
//! except under `CI=true`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use kfpd_ir::{check_runtime_parameters, generate_test_parameters, read_package, Error, Package};
use serde_json::{json, Map, Value};

/// Checked present by each test's `require_or_skip!(Corpus)`.
fn corpus_dir() -> PathBuf {
    kfpd_testdata::corpus_dir().expect("the upstream corpus is absent")
}

struct Row {
    path: String,
    expect: String,
}

fn manifest() -> Vec<Row> {
    let text =
        fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).expect("MANIFEST.tsv is readable");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    let path_col = header
        .iter()
        .position(|h| *h == "path")
        .expect("path column");
    let expect_col = header
        .iter()
        .position(|h| *h == "expect")
        .expect("expect column");
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            Row {
                path: cols[path_col].to_string(),
                expect: cols[expect_col].to_string(),
            }
        })
        .collect()
}

fn load(rel: &str) -> Result<Package, Error> {
    let path = corpus_dir().join(rel);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let name = Path::new(rel)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(rel);
    read_package(name, &bytes)
}

fn pipeline_files(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).expect("corpus directory is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            pipeline_files(&path, base, out);
        } else if path.file_name().and_then(|n| n.to_str()) != Some("MANIFEST.tsv") {
            let rel = path.strip_prefix(base).expect("inside the corpus");
            out.insert(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The manifest must cover every file, so a new file cannot go unchecked.
#[test]
fn manifest_lists_every_file() {
    kfpd_testdata::require_or_skip!(Corpus);
    let mut on_disk = BTreeSet::new();
    pipeline_files(&corpus_dir(), &corpus_dir(), &mut on_disk);
    let listed: BTreeSet<String> = manifest().into_iter().map(|r| r.path).collect();
    let missing: Vec<_> = on_disk.difference(&listed).collect();
    assert!(missing.is_empty(), "files not in MANIFEST.tsv: {missing:?}");
}

#[test]
fn every_file_is_judged_as_the_manifest_says() {
    kfpd_testdata::require_or_skip!(Corpus);
    let rows = manifest();
    assert!(
        rows.len() > 100,
        "the corpus looks truncated: {} rows",
        rows.len()
    );
    let mut failures = Vec::new();
    let mut accepted = 0;
    for row in &rows {
        match (row.expect.as_str(), load(&row.path)) {
            ("REJECTED", Ok(_)) => {
                failures.push(format!("{}: accepted, expected rejection", row.path))
            }
            ("REJECTED", Err(_)) => {}
            (_, Ok(package)) => {
                accepted += 1;
                // Generated values for required inputs must pass the run-parameter check.
                let values = generate_test_parameters(&package, 42);
                if let Err(e) = check_runtime_parameters(&package, &values) {
                    // Root inputs the backend fills in cannot be generated.
                    let backend_typed = matches!(&e, Error::InvalidParameter { reason, .. }
                        if reason.contains("filled in by the backend"));
                    if !backend_typed {
                        failures.push(format!("{}: generated parameters rejected: {e}", row.path));
                    }
                }
            }
            (_, Err(e)) => failures.push(format!("{}: rejected: {e}", row.path)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(accepted > 100);
}

#[test]
fn invalid_files_have_clear_messages() {
    kfpd_testdata::require_or_skip!(Corpus);
    let expected = [
        (
            "invalid/empty_file.yaml",
            "empty pipeline file: it contains no YAML or JSON document",
        ),
        (
            "invalid/empty_zip.zip",
            "unexpected pipeline file format for \"empty_zip.zip\": upload a .yaml, .yml or .json \
             file, a .zip archive or a .tar.gz tarball",
        ),
        (
            "invalid/invalid-zip.zip",
            "pipeline spec: unknown field `components_1`, expected one of",
        ),
        (
            "invalid/invalid_yaml.yaml",
            "pipeline spec: unknown field `components_1`, expected one of",
        ),
        (
            "invalid/no_name.yaml",
            "pipeline spec: pipelineInfo.name is empty",
        ),
        (
            "invalid/wrong_format.png",
            "unexpected pipeline file format for \"wrong_format.png\"",
        ),
    ];
    let listed: BTreeSet<String> = manifest()
        .into_iter()
        .filter(|r| r.expect == "REJECTED")
        .map(|r| r.path)
        .collect();
    let checked: BTreeSet<String> = expected.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        listed, checked,
        "every REJECTED file needs an expected message here"
    );
    for (path, prefix) in expected {
        let message = load(path).expect_err(path).to_string();
        assert!(message.starts_with(prefix), "{path}: {message}");
    }
}

#[test]
fn zipped_and_json_copies_match_their_originals() {
    kfpd_testdata::require_or_skip!(Corpus);
    let zipped = load("arguments_parameters.zip").expect("zip loads");
    let plain = load("arguments_parameters.yaml").expect("yaml loads");
    // The zipped copy was compiled by another SDK version; the pipeline is the same.
    let mut zipped_spec = zipped.spec().clone();
    zipped_spec
        .sdk_version
        .clone_from(&plain.spec().sdk_version);
    assert_eq!(&zipped_spec, plain.spec());
    let json = load("pipeline_with_importer.json").expect("json loads");
    let yaml = load("pipeline_with_importer.yaml").expect("yaml loads");
    assert_eq!(json.spec(), yaml.spec());
    assert_eq!(json.pipeline_name(), "pipeline-with-importer");
}

#[test]
fn platform_specs_are_returned_in_the_wrapper() {
    kfpd_testdata::require_or_skip!(Corpus);
    let package = load("critical/missing_kubernetes_optional_inputs.yaml").expect("loads");
    let platform = package.platform_spec().expect("has a platform spec");
    assert!(platform["platforms"]["kubernetes"].is_object());
    let api = package.api_pipeline_spec();
    assert_eq!(&api["pipeline_spec"], package.pipeline_spec());
    assert_eq!(&api["platform_spec"], platform);
    assert_eq!(
        kfpd_ir::parse_spec_value(&api).expect("wrapper round-trips"),
        package
    );

    let plain = load("hello_world.yaml").expect("loads");
    assert!(plain.platform_spec().is_none());
    assert_eq!(&plain.api_pipeline_spec(), plain.pipeline_spec());
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

#[test]
fn add_numbers_parameters() {
    kfpd_testdata::require_or_skip!(Corpus);
    let package = load("critical/add_numbers.yaml").expect("loads");
    assert_eq!(package.pipeline_name(), "add-numbers");
    let declared: Vec<&str> = package
        .root_parameters()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(declared, ["a", "b"]);

    check_runtime_parameters(&package, &params(json!({"a": 5, "b": 5}))).expect("ints are fine");
    check_runtime_parameters(&package, &params(json!({"a": 5.0, "b": -3})))
        .expect("integral doubles too");
    let err = check_runtime_parameters(&package, &params(json!({"a": 5}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter \"b\" is required: it is not optional and has no default value"
    );
    let err = check_runtime_parameters(&package, &params(json!({"a": 5, "b": "5"}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter \"b\" must be an integer (NUMBER_INTEGER), got string \"5\""
    );
    let err = check_runtime_parameters(&package, &params(json!({"a": 1.5, "b": 2}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter \"a\" must be an integer (NUMBER_INTEGER), got number 1.5"
    );
    let err =
        check_runtime_parameters(&package, &params(json!({"a": 1, "b": 2, "c": 3}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter \"c\" is not an input of this pipeline; its inputs are: a, b"
    );
    let generated = generate_test_parameters(&package, 1);
    assert_eq!(generated.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert!(generated["a"].as_u64().is_some_and(|a| a < 1000));
}

#[test]
fn arguments_parameters_parameters() {
    kfpd_testdata::require_or_skip!(Corpus);
    let package = load("arguments_parameters.yaml").expect("loads");
    let defs = package.root_parameters();
    let required: Vec<&str> = defs
        .iter()
        .filter(|(_, d)| d.is_required())
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(required, ["param2"], "the manifest says param2 is required");

    let err = check_runtime_parameters(&package, &Map::new()).unwrap_err();
    assert_eq!(
        err,
        Error::MissingParameter {
            name: "param2".into()
        }
    );
    check_runtime_parameters(&package, &params(json!({"param2": "world"}))).expect("given");
    let err = check_runtime_parameters(&package, &params(json!({"param2": 3}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter \"param2\" must be a string (STRING), got number 3"
    );
    let generated = generate_test_parameters(&package, 9);
    assert_eq!(generated.len(), 1);
    assert_eq!(generated["param2"].as_str().map(str::len), Some(20));
}

#[test]
fn structured_parameters_on_preprocess() {
    kfpd_testdata::require_or_skip!(Corpus);
    // LIST, STRUCT and STRING inputs are required here.
    let package = load("preprocess.yaml").expect("loads");
    let generated = generate_test_parameters(&package, 3);
    check_runtime_parameters(&package, &generated).expect("generated values fit");
    for (name, def) in package.root_parameters() {
        if !def.is_required() {
            continue;
        }
        let mut wrong = generated.clone();
        wrong.insert(name.clone(), json!(null));
        let err = check_runtime_parameters(&package, &wrong).unwrap_err();
        assert!(matches!(err, Error::ParameterType { .. }), "{name}: {err}");
    }
}

/// Drops empty objects, which the typed model writes as "unset" (for example
/// `cachingOptions: {}`); everything else must survive a round trip.
fn without_empty_objects(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !matches!(v, Value::Object(m) if m.is_empty()))
                .map(|(k, v)| (k.clone(), without_empty_objects(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_empty_objects).collect()),
        other => other.clone(),
    }
}

/// The typed model must hold everything the corpus uses: serializing it gives
/// back the file's JSON (so later code can rely on the model alone).
#[test]
fn typed_model_round_trips_the_corpus() {
    kfpd_testdata::require_or_skip!(Corpus);
    for row in manifest() {
        if row.expect == "REJECTED" {
            continue;
        }
        let package = load(&row.path).expect("accepted");
        let back = serde_json::to_value(package.spec()).expect("serializes");
        assert_eq!(
            without_empty_objects(&back),
            without_empty_objects(package.pipeline_spec()),
            "{}",
            row.path
        );
        if let (Some(typed), Some(raw)) = (package.platform(), package.platform_spec()) {
            let back = serde_json::to_value(typed).expect("serializes");
            assert_eq!(
                without_empty_objects(&back),
                without_empty_objects(raw),
                "{}",
                row.path
            );
        }
    }
}
