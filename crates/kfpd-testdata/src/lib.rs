//! Where tests and benchmarks find their data.
//!
//! Two kinds of data exist. The pipelines committed under `tests/pipelines/` are
//! always there. The reference directory beside the repository (`../shared`, with
//! the upstream pipeline corpus, Argo's schemas and upstream's compiled Argo
//! workflows) is not part of a clone, so it is found through settings:
//!
//! - `KFPD_SHARED_DIR`: the reference directory (default: `shared` beside the
//!   repository root);
//! - `KFPD_CORPUS_DIR`: the compiled pipeline corpus (default:
//!   `$KFPD_SHARED_DIR/testdata/pipelines`).
//!
//! A relative value is taken from the repository root, so it means the same in
//! every crate's tests. A test that needs a missing directory says it was skipped
//! and how to point at one ([`require_or_skip!`]); under `CI=true` the directory is
//! required and the test panics instead. A setting that names a directory that does
//! not exist is a mistake and always panics.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Names the reference directory beside the repository.
pub const SHARED_DIR_VAR: &str = "KFPD_SHARED_DIR";
/// Names the compiled pipeline corpus.
pub const CORPUS_DIR_VAR: &str = "KFPD_CORPUS_DIR";

/// The repository root. Under `cargo test` or `cargo run` it is found from the running
/// package's directory, which cargo sets at run time: a binary built in another
/// checkout sharing the target directory carries that checkout's path.
/// Otherwise it is where this crate was built (`crates/kfpd-testdata`).
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|dir| workspace_root_above(&dir))
    {
        return root;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The nearest directory at or above `dir` whose Cargo.toml declares a workspace.
fn workspace_root_above(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|candidate| {
            std::fs::read_to_string(candidate.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.contains("[workspace]"))
        })
        .map(Path::to_path_buf)
}

/// The pipelines committed with the project (`tests/pipelines/`), always present.
pub fn pipelines_dir() -> PathBuf {
    repo_root().join("tests").join("pipelines")
}

/// A file under [`pipelines_dir`]; panics with its path when it is missing.
pub fn pipeline(relative: &str) -> PathBuf {
    let path = pipelines_dir().join(relative);
    assert!(
        path.is_file(),
        "committed test pipeline missing: {}",
        path.display()
    );
    path
}

/// A zip package holding the file at `path` as `member`.
pub fn zip_package(path: &Path, member: &str) -> Vec<u8> {
    let content = read(path);
    let mut buffer = std::io::Cursor::new(Vec::new());
    let mut archive = zip::ZipWriter::new(&mut buffer);
    archive
        .start_file(member, zip::write::SimpleFileOptions::default())
        .expect("zip member");
    archive.write_all(&content).expect("zip content");
    archive.finish().expect("zip written");
    buffer.into_inner()
}

/// A tar.gz package holding the file at `path` as `member`.
pub fn tar_gz_package(path: &Path, member: &str) -> Vec<u8> {
    let content = read(path);
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(encoder);
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive
        .append_data(&mut header, member, content.as_slice())
        .expect("tar member");
    archive
        .into_inner()
        .and_then(|encoder| encoder.finish())
        .expect("tar.gz written")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// True when running under `CI=true`, where every optional directory is required.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A directory the tests may need that a clone does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The reference directory itself.
    Shared,
    /// Compiled upstream pipelines with `MANIFEST.tsv`.
    Corpus,
    /// Argo Workflows' published schemas.
    ArgoSchemas,
    /// Upstream's compiled Argo workflow for each corpus pipeline.
    ArgoGolden,
}

impl Dir {
    /// What the directory holds, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Dir::Shared => "the shared reference directory",
            Dir::Corpus => "the upstream pipeline corpus",
            Dir::ArgoSchemas => "the Argo Workflows schemas",
            Dir::ArgoGolden => "the upstream Argo golden files",
        }
    }

    /// Where the directory is expected, and whether a setting named that place.
    pub fn expected(self) -> (PathBuf, Option<&'static str>) {
        let (shared, shared_set) = match setting(SHARED_DIR_VAR) {
            Some(path) => (path, Some(SHARED_DIR_VAR)),
            None => (repo_root().join("..").join("shared"), None),
        };
        match self {
            Dir::Shared => (shared, shared_set),
            Dir::Corpus => match setting(CORPUS_DIR_VAR) {
                Some(path) => (path, Some(CORPUS_DIR_VAR)),
                None => (shared.join("testdata").join("pipelines"), shared_set),
            },
            Dir::ArgoSchemas => (shared.join("argo-schemas"), shared_set),
            Dir::ArgoGolden => (shared.join("testdata").join("argo-golden"), shared_set),
        }
    }

    /// The directory, or why it is not there (for binaries, which report instead of panicking).
    pub fn find(self) -> Result<PathBuf, Missing> {
        let (path, named_by) = self.expected();
        if path.is_dir() {
            return Ok(path);
        }
        Err(Missing {
            dir: self,
            path,
            named_by,
        })
    }

    /// The directory when it exists. Panics when a setting names a missing one.
    pub fn locate(self) -> Option<PathBuf> {
        match self.find() {
            Ok(path) => Some(path),
            Err(missing) if missing.named_by.is_some() => panic!("{missing}"),
            Err(_) => None,
        }
    }

    /// The directory, or None after printing why the caller skips; panics under
    /// `CI=true`, where the directory is required.
    pub fn require(self, test: &str) -> Option<PathBuf> {
        let missing = match self.find() {
            Ok(path) => return Some(path),
            Err(missing) => missing,
        };
        if missing.named_by.is_some() {
            panic!("{test}: {missing}");
        }
        if under_ci() {
            panic!("{test}: required under CI=true: {missing}");
        }
        // Straight to the process's stderr: libtest hides what a passing test prints
        // with `eprintln!`, and a skip must be seen.
        let _ = writeln!(std::io::stderr(), "skipping {test}: {missing}");
        None
    }

    fn how_to_set(self) -> String {
        match self {
            Dir::Corpus => format!(
                "set {CORPUS_DIR_VAR} to a copy of it (or {SHARED_DIR_VAR} to the reference directory holding testdata/pipelines)"
            ),
            _ => format!("set {SHARED_DIR_VAR} to the reference directory"),
        }
    }
}

/// A directory that is not where it was looked for.
#[derive(Debug, Clone)]
pub struct Missing {
    /// Which directory.
    pub dir: Dir,
    /// Where it was looked for.
    pub path: PathBuf,
    /// The variable that named that place, if one did.
    pub named_by: Option<&'static str>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = self.dir.describe();
        let path = self.path.display();
        match self.named_by {
            Some(variable) => write!(f, "{variable} is set, but {what} is not at {path}"),
            None => write!(f, "{what} is not at {path}; {}", self.dir.how_to_set()),
        }
    }
}

impl std::error::Error for Missing {}

/// [`Dir::Shared`], when present.
pub fn shared_dir() -> Option<PathBuf> {
    Dir::Shared.locate()
}

/// [`Dir::Corpus`], when present.
pub fn corpus_dir() -> Option<PathBuf> {
    Dir::Corpus.locate()
}

/// [`Dir::ArgoSchemas`], when present.
pub fn argo_schemas_dir() -> Option<PathBuf> {
    Dir::ArgoSchemas.locate()
}

/// [`Dir::ArgoGolden`], when present.
pub fn argo_golden_dir() -> Option<PathBuf> {
    Dir::ArgoGolden.locate()
}

/// The name of the running test: libtest names each test's thread after it.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("test")
        .to_string()
}

/// A set, non-empty variable as a path; relative values are taken from the repository root.
fn setting(variable: &str) -> Option<PathBuf> {
    let value = std::env::var_os(variable).filter(|value| !value.is_empty())?;
    let path = PathBuf::from(value);
    Some(if path.is_absolute() {
        path
    } else {
        repo_root().join(path)
    })
}

/// Evaluates to the directory (`Corpus`, `Shared`, `ArgoSchemas`, `ArgoGolden`), or
/// returns from the calling test after saying it was skipped (panics under `CI=true`).
///
/// ```ignore
/// let corpus = kfpd_testdata::require_or_skip!(Corpus);
/// ```
#[macro_export]
macro_rules! require_or_skip {
    ($dir:ident) => {
        match $crate::Dir::$dir.require(&$crate::current_test()) {
            Some(path) => path,
            None => return,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn the_corpus_defaults_to_the_reference_directory() {
        if std::env::var_os(CORPUS_DIR_VAR).is_some() || std::env::var_os(SHARED_DIR_VAR).is_some()
        {
            return;
        }
        let (corpus, named_by) = Dir::Corpus.expected();
        assert_eq!(named_by, None);
        assert_eq!(
            corpus,
            repo_root().join("../shared").join("testdata/pipelines")
        );
    }
}
