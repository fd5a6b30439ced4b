//! The interpreter kfpd was started with ("the host"): what a task environment is made from
//! and which packages it sees underneath its own.
//!
//! Probed once by running it, because a `python3` on `PATH` may be a virtualenv's, a pyenv
//! shim or a plain system interpreter, and only the interpreter itself knows its site
//! directories (a virtualenv's included).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// Printed by the probe as one JSON object.
const PROBE: &str = r#"
import importlib.util, json, os, platform, site, sys
dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
if site.ENABLE_USER_SITE:
    dirs.append(site.getusersitepackages())
seen = []
for d in dirs:
    if os.path.isdir(d) and d not in seen:
        seen.append(d)
spec = importlib.util.find_spec("pip")
pip = None
if spec is not None and spec.submodule_search_locations:
    pip = list(spec.submodule_search_locations)[0]
print(json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "site_dirs": seen,
    "pip": pip,
}))
"#;

/// What the host interpreter said about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// `sys.executable`: a virtualenv's `bin/python3` stays that, a pyenv shim becomes the
    /// interpreter behind it.
    pub executable: PathBuf,
    /// `platform.python_version()`, e.g. `3.11.7`.
    pub version: String,
    /// `sys.prefix`: the virtualenv when the host is one.
    pub prefix: PathBuf,
    /// `sys.base_prefix`: the installation behind a virtualenv.
    pub base_prefix: PathBuf,
    /// Site directories the host imports from, in its order: a virtualenv's own, its base's
    /// when it includes them, the user's when enabled.
    pub site_dirs: Vec<PathBuf>,
    /// The host's `pip` package directory, lent to environments that have no pip of their own.
    pub pip: Option<PathBuf>,
}

impl Host {
    /// Starts `python` once and asks it. The error says what failed, for the caller to wrap.
    pub fn probe(python: &Path) -> Result<Host, String> {
        let output = Command::new(python)
            .args(["-c", PROBE])
            .env_remove("PYTHONHOME")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("starting {}: {e}", python.display()))?;
        if !output.status.success() {
            return Err(format!(
                "asking {} about itself failed ({}): {}",
                python.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            format!(
                "unexpected answer from {} ({e}): {:?}",
                python.display(),
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Whether the host is a virtualenv (its packages are not its base interpreter's).
    pub fn is_virtualenv(&self) -> bool {
        self.prefix != self.base_prefix
    }

    /// What identifies the host for choosing an environment directory: the same image from
    /// another interpreter or virtualenv gets an environment of its own.
    pub(crate) fn identity(&self) -> String {
        format!("{}\0{}", self.executable.display(), self.prefix.display())
    }
}

/// Identity of a file's current content as the filesystem sees it: changes when the file is
/// replaced or rewritten (an interpreter upgraded or reinstalled in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Stamp {
    /// The stamp of what `path` leads to (links followed); `None` when it is gone.
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok()?;
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_change_with_content_and_vanish_with_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("python");
        fs::write(&file, "one").expect("write");
        let first = Stamp::of(&file).expect("stamp");
        assert_eq!(Stamp::of(&file), Some(first));
        fs::write(&file, "longer").expect("rewrite");
        assert_ne!(Stamp::of(&file), Some(first));
        fs::remove_file(&file).expect("remove");
        assert_eq!(Stamp::of(&file), None);
    }
}
