//! Per-image Python environments.
//!
//! An image name such as `python:3.11` maps to a virtual environment under
//! `<envs_dir>/<sanitized image>-<short hash>`, made with `--system-site-packages` from the host
//! interpreter so packages installed on the host stay importable underneath while
//! `pip install` inside a task only ever writes into the environment.
//!
//! Layout of an environment:
//!
//! - `bin/.kfpd-python`: the real interpreter (the link `venv` made as `bin/python3`). Python
//!   finds `pyvenv.cfg` next to the path it was started as, so starting it under this name
//!   still gives `sys.prefix` = the environment.
//! - `bin/.kfpd-shim`: a `/bin/sh` front; `python`, `python3`, `pip` and `pip3` link to it. A
//!   `pip install <args>` whose exact arguments already succeeded here exits at once; other
//!   pip changes run under a lock through `.kfpd/pip_shim.py`; everything else execs the real
//!   interpreter.
//! - `.kfpd/pip/<key>`: markers of successful installs, `.kfpd/pip.lock`: the install lock,
//!   `.kfpd/layout`: written last, says the environment is complete and which layout it has.
//!
//! An environment is built in a temporary sibling directory and renamed into place, so a
//! crash never leaves a half-made one under the final name and several processes racing to
//! make the same one agree on the first that lands.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::Error;

/// Bumped whenever the shims or the layout change, so older environments are rebuilt.
const LAYOUT: &str = "kfpd-env 1";
const SHIM: &str = include_str!("shim/shim.sh");
const PIP_SHIM: &str = include_str!("shim/pip_shim.py");
/// Name the real interpreter keeps in `bin/`.
pub(crate) const REAL_PYTHON: &str = ".kfpd-python";
const SHIM_NAME: &str = ".kfpd-shim";
/// Commands in `bin/` that become links to the shim.
const FRONTED: [&str; 4] = ["python", "python3", "pip", "pip3"];
const STATE_DIR: &str = ".kfpd";
/// Printed by the probe: the prefix the interpreter sees and whether pip is importable.
const PROBE: &str = "import sys, importlib.util\nprint(sys.prefix)\nprint(importlib.util.find_spec('pip') is not None)";

/// A ready Python environment for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The environment's root (`VIRTUAL_ENV`).
    pub root: PathBuf,
    /// Its `bin/` directory, to go first on the task's `PATH`.
    pub bin: PathBuf,
}

impl Environment {
    fn at(root: PathBuf) -> Environment {
        let bin = root.join("bin");
        Environment { root, bin }
    }

    /// `PATH` for a task: this environment's `bin/` followed by `inherited`.
    pub fn search_path(&self, inherited: Option<&OsStr>) -> io::Result<OsString> {
        let mut dirs = vec![self.bin.clone()];
        if let Some(inherited) = inherited {
            dirs.extend(std::env::split_paths(inherited).filter(|dir| *dir != self.bin));
        }
        std::env::join_paths(dirs).map_err(io::Error::other)
    }
}

/// Directory name for an image: readable prefix plus a hash, so distinct names never collide.
pub(crate) fn dir_name(image: &str) -> String {
    let readable: String = image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    // A leading dot would hide the environment and could clash with the temporary names.
    let readable = readable.trim_start_matches('.');
    let readable = if readable.is_empty() {
        "image"
    } else {
        readable
    };
    let hash = hex::encode(Sha256::digest(image.as_bytes()));
    format!("{readable}-{}", &hash[..12])
}

/// Whether `root` holds a complete environment of the current layout whose interpreter exists.
pub(crate) fn is_ready(root: &Path) -> bool {
    let layout_ok = fs::read_to_string(root.join(STATE_DIR).join("layout"))
        .map(|layout| layout.trim() == LAYOUT)
        .unwrap_or(false);
    // metadata() follows the link: a host interpreter that went away makes the environment stale.
    layout_ok && fs::metadata(root.join("bin").join(REAL_PYTHON)).is_ok()
}

/// Makes (or finds) the environment for `image`. Blocking; run it off the async threads.
pub(crate) fn ensure(envs_dir: &Path, python: &Path, image: &str) -> Result<Environment, Error> {
    // The shims hold the environment's path and run from any working directory.
    let envs_dir = &std::path::absolute(envs_dir).map_err(|source| Error::Environment {
        image: image.to_string(),
        path: envs_dir.to_path_buf(),
        source,
    })?;
    let name = dir_name(image);
    let root = envs_dir.join(&name);
    if is_ready(&root) {
        return Ok(Environment::at(root));
    }
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Environment {
            image: image.to_string(),
            path,
            source,
        }
    };
    fs::create_dir_all(envs_dir).map_err(io_error(envs_dir))?;
    remove_abandoned(envs_dir, &name);

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = envs_dir.join(format!(
        ".tmp-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let started = Instant::now();
    let built = build(python, image, &tmp, &root);
    if built.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    built?;
    install(&tmp, &root).map_err(io_error(&root))?;
    tracing::info!(
        image,
        path = %root.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "python environment ready"
    );
    Ok(Environment::at(root))
}

/// Builds a complete environment in `tmp` whose shims refer to its final place `root`.
fn build(python: &Path, image: &str, tmp: &Path, root: &Path) -> Result<(), Error> {
    let create_error = |detail: String| Error::CreateEnvironment {
        image: image.to_string(),
        python: python.to_path_buf(),
        detail,
    };
    let io_error = |source| Error::Environment {
        image: image.to_string(),
        path: tmp.to_path_buf(),
        source,
    };

    make_venv(python, tmp, false).map_err(create_error)?;
    keep_real_interpreter(tmp).map_err(io_error)?;
    let (prefix, has_pip) = probe(tmp).map_err(create_error)?;
    if !has_pip {
        // The host has no pip module to lend: give the environment its own.
        tracing::info!(
            image,
            "host python has no pip; creating the environment with pip"
        );
        fs::remove_dir_all(tmp).map_err(io_error)?;
        make_venv(python, tmp, true).map_err(create_error)?;
        keep_real_interpreter(tmp).map_err(io_error)?;
        let (_, has_pip) = probe(tmp).map_err(create_error)?;
        if !has_pip {
            return Err(create_error(
                "pip is not importable in the new environment".into(),
            ));
        }
    }
    let expected = fs::canonicalize(tmp).map_err(io_error)?;
    if fs::canonicalize(&prefix).ok().as_deref() != Some(expected.as_path()) {
        return Err(create_error(format!(
            "interpreter started as bin/{REAL_PYTHON} reports sys.prefix {}, not the environment",
            prefix.display()
        )));
    }
    write_shims(tmp, root, image).map_err(io_error)
}

fn make_venv(python: &Path, dir: &Path, with_pip: bool) -> Result<(), String> {
    let mut command = Command::new(python);
    command.args(["-m", "venv", "--system-site-packages"]);
    if !with_pip {
        command.arg("--without-pip");
    }
    let output = command
        .arg(dir)
        .env_remove("PYTHONHOME")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting {}: {e}", python.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`-m venv` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Links `bin/.kfpd-python` to the interpreter behind `bin/python3`.
fn keep_real_interpreter(dir: &Path) -> io::Result<()> {
    let bin = dir.join("bin");
    let python3 = bin.join("python3");
    let real = bin.join(REAL_PYTHON);
    if fs::symlink_metadata(&python3)?.file_type().is_symlink() {
        // Resolved fully: a link chain through bin/python would otherwise end at the shim.
        symlink(fs::canonicalize(&python3)?, &real)
    } else {
        // A copied interpreter (`--copies`): move it, the shim takes its name.
        fs::rename(&python3, &real)
    }
}

/// Starts the real interpreter as the task will and reports its `sys.prefix` and whether pip imports.
fn probe(dir: &Path) -> Result<(PathBuf, bool), String> {
    let real = dir.join("bin").join(REAL_PYTHON);
    let output = Command::new(&real)
        .args(["-c", PROBE])
        .env_remove("PYTHONHOME")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting {}: {e}", real.display()))?;
    if !output.status.success() {
        return Err(format!(
            "probing the new environment failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    match (lines.next(), lines.next()) {
        (Some(prefix), Some(pip)) => Ok((PathBuf::from(prefix), pip.trim() == "True")),
        _ => Err(format!("unexpected probe output {stdout:?}")),
    }
}

fn write_shims(dir: &Path, root: &Path, image: &str) -> io::Result<()> {
    let bin = dir.join("bin");
    let root_str = root
        .to_str()
        .ok_or_else(|| io::Error::other("environment path is not valid UTF-8"))?;
    let tmp_str = dir
        .to_str()
        .ok_or_else(|| io::Error::other("environment path is not valid UTF-8"))?;

    // Scripts venv or pip wrote (activate, pip's entry points) name the temporary path.
    for entry in fs::read_dir(&bin)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Ok(text) = fs::read_to_string(entry.path()) {
            if text.contains(tmp_str) {
                fs::write(entry.path(), text.replace(tmp_str, root_str))?;
            }
        }
    }

    let shim = bin.join(SHIM_NAME);
    fs::write(&shim, SHIM.replace("@VENV@", &sh_quote(root_str)))?;
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755))?;
    let mut fronted: Vec<OsString> = FRONTED.iter().map(OsString::from).collect();
    for entry in fs::read_dir(&bin)? {
        let name = entry?.file_name();
        // pip3.X entry points of an environment made with its own pip.
        if name.to_string_lossy().starts_with("pip") && !fronted.contains(&name) {
            fronted.push(name);
        }
    }
    for name in fronted {
        let link = bin.join(&name);
        match fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        symlink(SHIM_NAME, &link)?;
    }

    let state = dir.join(STATE_DIR);
    fs::create_dir_all(state.join("pip"))?;
    fs::write(state.join("pip_shim.py"), PIP_SHIM)?;
    fs::write(state.join("image"), format!("{image}\n"))?;
    fs::write(state.join("layout"), format!("{LAYOUT}\n"))
}

/// Moves the finished `tmp` to `root`, unless another process got there first with a good one.
fn install(tmp: &Path, root: &Path) -> io::Result<()> {
    let err = match fs::rename(tmp, root) {
        Ok(()) => return Ok(()),
        Err(err) => err,
    };
    if is_ready(root) {
        tracing::debug!(path = %root.display(), "environment made concurrently elsewhere; using it");
        return fs::remove_dir_all(tmp);
    }
    if fs::symlink_metadata(root).is_err() {
        let _ = fs::remove_dir_all(tmp);
        return Err(err);
    }
    // A stale environment (older layout, vanished interpreter): set it aside, then replace it.
    let trash = tmp.with_file_name(format!(
        ".old-{}",
        tmp.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    tracing::info!(path = %root.display(), "replacing stale python environment");
    fs::rename(root, &trash)?;
    fs::rename(tmp, root)?;
    if let Err(e) = fs::remove_dir_all(&trash) {
        tracing::warn!(path = %trash.display(), error = %e, "could not remove stale environment");
    }
    Ok(())
}

/// Removes temporary directories of `name` left by processes that no longer exist.
fn remove_abandoned(envs_dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(envs_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let Some(rest) = file_name
            .strip_prefix(".tmp-")
            .or_else(|| file_name.strip_prefix(".old-.tmp-"))
            .and_then(|rest| rest.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('-'))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid != std::process::id() as i32 && !crate::process::pid_exists(pid) {
            tracing::debug!(path = %entry.path().display(), "removing abandoned environment build");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Quotes `s` as one `/bin/sh` word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_are_readable_distinct_and_safe() {
        let a = dir_name("python:3.11");
        assert!(a.starts_with("python_3.11-"), "{a}");
        assert_eq!(a.len(), "python_3.11-".len() + 12);
        assert_ne!(dir_name("python:3.11"), dir_name("python_3.11"));
        assert!(!dir_name("../../etc").contains('/'));
        assert!(!dir_name(".hidden").starts_with('.'));
        assert!(dir_name("").starts_with("image-"));
        assert!(dir_name(&"x".repeat(500)).len() < 70);
    }

    #[test]
    fn sh_quote_survives_quotes() {
        assert_eq!(sh_quote("/a b/c'd"), r"'/a b/c'\''d'");
    }

    #[test]
    fn search_path_puts_bin_first_once() {
        let env = Environment::at(PathBuf::from("/envs/x"));
        let path = env
            .search_path(Some(OsStr::new("/usr/bin:/envs/x/bin:/bin")))
            .expect("join");
        assert_eq!(path, OsString::from("/envs/x/bin:/usr/bin:/bin"));
        assert_eq!(
            env.search_path(None).expect("join"),
            OsString::from("/envs/x/bin")
        );
    }
}
