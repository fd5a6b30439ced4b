//! Test support: the shared corpus and the Argo CRD schemas.

#![allow(dead_code)]

pub mod schema;

use std::path::PathBuf;

/// The shared test data directory: `KFPD_SHARED_DIR`, else `../shared` beside the
/// repository. `None` (with a message) when it is absent; under `CI=true` it must
/// be there.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("KFPD_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("testdata/pipelines/MANIFEST.tsv").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "the shared corpus is required under CI=true but {} has none; set KFPD_SHARED_DIR",
            dir.display()
        );
    }
    eprintln!(
        "skipped: no shared corpus at {} (set KFPD_SHARED_DIR to run this test)",
        dir.display()
    );
    None
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

pub fn manifest(shared: &std::path::Path) -> Vec<Row> {
    let text = std::fs::read_to_string(shared.join("testdata/pipelines/MANIFEST.tsv"))
        .expect("read MANIFEST.tsv");
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
pub fn package(shared: &std::path::Path, row: &Row) -> Option<kfpd_ir::Package> {
    if row.expect == "REJECTED" {
        return None;
    }
    let path = shared.join("testdata/pipelines").join(&row.path);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    Some(kfpd_ir::read_package(&name, &bytes).unwrap_or_else(|e| panic!("{}: {e}", row.path)))
}

/// YAML text → JSON.
pub fn yaml_to_json(text: &str) -> serde_json::Value {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("yaml");
    serde_json::to_value(yaml).expect("yaml as json")
}
