//! Test support: the shared corpus and the Argo CRD schemas.

#![allow(dead_code)]

pub mod schema;

use std::path::PathBuf;

/// Where the corpus and Argo's schemas are (see `kfpd-testdata`).
pub struct Shared {
    pub corpus: PathBuf,
    pub schemas: PathBuf,
}

/// The corpus and schemas, or `None` after saying why the test is skipped
/// (under `CI=true` they are required and this panics).
pub fn shared_dir() -> Option<Shared> {
    let test = kfpd_testdata::current_test();
    let corpus = kfpd_testdata::Dir::Corpus.require(&test)?;
    let schemas = kfpd_testdata::Dir::ArgoSchemas.require(&test)?;
    Some(Shared { corpus, schemas })
}

/// One row of `testdata/pipelines/MANIFEST.tsv`.
#[derive(Debug, Clone)]
pub struct Row {
    pub path: String,
    pub expect: String,
    pub local: String,
    pub features: String,
    pub golden: String,
}

pub fn manifest(shared: &Shared) -> Vec<Row> {
    let text =
        std::fs::read_to_string(shared.corpus.join("MANIFEST.tsv")).expect("read MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            let column = |i: usize| columns.get(i).copied().unwrap_or_default().to_string();
            Row {
                path: column(0),
                expect: column(1),
                local: column(2),
                features: column(3),
                golden: column(5),
            }
        })
        .collect()
}

/// Reads a corpus file as a package, `None` for the rows that must be rejected.
pub fn package(shared: &Shared, row: &Row) -> Option<kfpd_ir::Package> {
    if row.expect == "REJECTED" {
        return None;
    }
    let path = shared.corpus.join(&row.path);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    Some(kfpd_ir::read_package(&name, &bytes).unwrap_or_else(|e| panic!("{}: {e}", row.path)))
}

/// YAML text → JSON.
pub fn yaml_to_json(text: &str) -> serde_json::Value {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("yaml");
    serde_json::to_value(yaml).expect("yaml as json")
}
