//! Test support: the shared corpus and the Argo CRD schemas.

#![allow(dead_code)]

pub mod schema;

use std::path::PathBuf;

/// The shared reference directory, once the pipeline corpus and the Argo schemas
/// are both found (`KFPD_CORPUS_DIR`, `KFPD_SHARED_DIR`; see the kfpd-testdata crate).
/// `None` after a message saying the test is skipped; under `CI=true` they must be there.
pub fn shared_dir() -> Option<PathBuf> {
    let test = kfpd_testdata::current_test();
    kfpd_testdata::Dir::Corpus.require(&test)?;
    kfpd_testdata::Dir::ArgoSchemas.require(&test)?;
    kfpd_testdata::Dir::Shared.require(&test)
}

/// The pipeline corpus, found by [`shared_dir`] first.
fn corpus_dir() -> PathBuf {
    kfpd_testdata::corpus_dir().expect("shared_dir() checked for the corpus")
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

pub fn manifest(_shared: &std::path::Path) -> Vec<Row> {
    let text =
        std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).expect("read MANIFEST.tsv");
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
pub fn package(_shared: &std::path::Path, row: &Row) -> Option<kfpd_ir::Package> {
    if row.expect == "REJECTED" {
        return None;
    }
    let path = corpus_dir().join(&row.path);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    Some(kfpd_ir::read_package(&name, &bytes).unwrap_or_else(|e| panic!("{}: {e}", row.path)))
}

/// YAML text → JSON.
pub fn yaml_to_json(text: &str) -> serde_json::Value {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("yaml");
    serde_json::to_value(yaml).expect("yaml as json")
}
