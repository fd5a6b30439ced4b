//! Per-image Python environments.
//!
//! An image name such as `python:3.11` maps to a virtual environment under
//! `<envs_dir>/<sanitized image>-<short hash>`, made from the host interpreter (the hash covers
//! the image and which interpreter, so another virtualenv or pyenv version gets its own).
//!
//! What a task imports: the environment's own site-packages first, then the host's site
//! directories (a virtualenv's, its base's when it includes them, the user's), added by
//! `_kfpd_host.pth`. What pip sees when a task runs it: the environment alone (the `.pth`
//! adds nothing under `KFPD_HOST_PACKAGES=hidden`), so a component's `pip install` always
//! lands in the environment and the host removing a package cannot undo it.
//!
//! Layout of an environment:
//!
//! - `bin/.kfpd-python`: the real interpreter (the link `venv` made as `bin/python3`). Python
//!   finds `pyvenv.cfg` next to the path it was started as, so starting it under this name
//!   still gives `sys.prefix` = the environment.
//! - `bin/.kfpd-shim`: a `/bin/sh` front; `python`, `python3`, `pip` and `pip3` link to it. A
//!   `pip install <args>` whose exact arguments already succeeded here, and whose packages are
//!   all still in place, exits at once; other pip changes run under a lock through
//!   `.kfpd/pip_shim.py`; everything else execs the real interpreter.
//! - `.kfpd/pip/<key>`: markers of successful installs, each listing the files (relative to
//!   the environment) that must still exist for the marker to count; `.kfpd/pip.lock`: the
//!   install lock; `.kfpd/borrowed/pip`: the host's pip, for pip runs that hide the host.
//! - `.kfpd/host.json`: the host interpreter it was made from and stamps of both
//!   interpreters; an environment whose interpreter went away or changed is rebuilt.
//! - `.kfpd/last-used`: touched when a kfpd process uses it (at most once a minute).
//! - `.kfpd/layout`: written last, says the environment is complete and which layout it has.
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

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::host::{Host, Stamp};
use crate::Error;

/// Bumped whenever the shims or the layout change, so older environments are rebuilt.
pub(crate) const LAYOUT: &str = "kfpd-env 2";
const SHIM: &str = include_str!("shim/shim.sh");
const PIP_SHIM: &str = include_str!("shim/pip_shim.py");
/// Name the real interpreter keeps in `bin/`.
pub(crate) const REAL_PYTHON: &str = ".kfpd-python";
const SHIM_NAME: &str = ".kfpd-shim";
/// Commands in `bin/` that become links to the shim.
const FRONTED: [&str; 4] = ["python", "python3", "pip", "pip3"];
pub(crate) const STATE_DIR: &str = ".kfpd";
pub(crate) const RECORD: &str = "host.json";
pub(crate) const LAST_USED: &str = "last-used";
/// The `.pth` file that puts the host's site directories under the environment's own.
const HOST_PTH: &str = "_kfpd_host.pth";
/// Printed by the probe: the prefix the interpreter sees and whether pip is importable.
const PROBE: &str = "import sys, importlib.util\nprint(sys.prefix)\nprint(importlib.util.find_spec('pip') is not None)";

/// A ready Python environment for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The environment's root (`VIRTUAL_ENV`).
    pub root: PathBuf,
    /// Its `bin/` directory, to go first on the task's `PATH`.
    pub bin: PathBuf,
    /// The interpreter it runs (`sys.executable` of the host it was made from).
    pub python: PathBuf,
    /// That interpreter's version.
    pub version: String,
    record: Record,
}

/// What `.kfpd/host.json` holds: where the environment came from, to tell when it went stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub image: String,
    pub host: Host,
    /// Where `bin/.kfpd-python` leads (the base interpreter's binary).
    pub interpreter: PathBuf,
    pub interpreter_stamp: Stamp,
    /// Stamp of `host.executable` (a virtualenv's `bin/python3` is gone with the virtualenv).
    pub executable_stamp: Stamp,
}

impl Record {
    /// Why an environment made from this record cannot be used any more, if it cannot.
    pub(crate) fn stale_because(&self) -> Option<String> {
        if Stamp::of(&self.interpreter) != Some(self.interpreter_stamp) {
            return Some(match Stamp::of(&self.interpreter) {
                None => format!("interpreter {} is gone", self.interpreter.display()),
                Some(_) => format!(
                    "interpreter {} changed since the environment was made (python {})",
                    self.interpreter.display(),
                    self.host.version
                ),
            });
        }
        if Stamp::of(&self.host.executable) != Some(self.executable_stamp) {
            return Some(match Stamp::of(&self.host.executable) {
                None => format!("host python {} is gone", self.host.executable.display()),
                Some(_) => format!("host python {} changed", self.host.executable.display()),
            });
        }
        None
    }

    pub(crate) fn read(root: &Path) -> Option<Record> {
        let text = fs::read(root.join(STATE_DIR).join(RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

impl Environment {
    fn at(root: PathBuf, record: Record) -> Environment {
        let bin = root.join("bin");
        Environment {
            root,
            bin,
            python: record.host.executable.clone(),
            version: record.host.version.clone(),
            record,
        }
    }

    /// `PATH` for a task: this environment's `bin/` followed by `inherited`.
    pub fn search_path(&self, inherited: Option<&OsStr>) -> io::Result<OsString> {
        let mut dirs = vec![self.bin.clone()];
        if let Some(inherited) = inherited {
            dirs.extend(std::env::split_paths(inherited).filter(|dir| *dir != self.bin));
        }
        std::env::join_paths(dirs).map_err(io::Error::other)
    }

    /// The cheap check made before every use: still complete, and both interpreters are the
    /// files it was made with (a few `stat` calls).
    pub(crate) fn still_ready(&self) -> bool {
        has_layout(&self.root) && self.record.stale_because().is_none()
    }

    /// Records that a kfpd process is using the environment, for `kfpd envs list` and prune.
    pub(crate) fn touch(&self) {
        let path = self.root.join(STATE_DIR).join(LAST_USED);
        if let Err(error) = fs::write(&path, b"") {
            tracing::debug!(path = %path.display(), %error, "cannot record the environment's use");
        }
    }
}

/// Directory name for an image made from `host`: readable prefix plus a hash, so distinct
/// names (and the same name from different interpreters) never collide.
pub(crate) fn dir_name(image: &str, host: &str) -> String {
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
    let mut hasher = Sha256::new();
    hasher.update(image.as_bytes());
    hasher.update([0]);
    hasher.update(host.as_bytes());
    let hash = hex::encode(hasher.finalize());
    format!("{readable}-{}", &hash[..12])
}

/// Whether `root` says it is complete and of the current layout.
pub(crate) fn has_layout(root: &Path) -> bool {
    fs::read_to_string(root.join(STATE_DIR).join("layout"))
        .map(|layout| layout.trim() == LAYOUT)
        .unwrap_or(false)
}

/// The environment at `root`, when it is complete, of the current layout, made from `host`
/// as it is now, and both interpreters are still the files it was made with.
fn ready(root: &Path, host: &Host) -> Option<Environment> {
    if !has_layout(root) {
        return None;
    }
    let record = Record::read(root)?;
    if record.host != *host {
        return None;
    }
    if let Some(reason) = record.stale_because() {
        tracing::info!(path = %root.display(), %reason, "python environment is stale; rebuilding it");
        return None;
    }
    // metadata() follows the link: a vanished interpreter makes the environment stale.
    fs::metadata(root.join("bin").join(REAL_PYTHON)).ok()?;
    Some(Environment::at(root.to_path_buf(), record))
}

/// Makes (or finds) the environment for `image` over `host`. Blocking; run it off the async
/// threads. `python` is the interpreter as configured, for messages.
pub(crate) fn ensure(
    envs_dir: &Path,
    python: &Path,
    host: &Host,
    image: &str,
) -> Result<Environment, Error> {
    // The shims hold the environment's path and run from any working directory.
    let envs_dir = &std::path::absolute(envs_dir).map_err(|source| Error::Environment {
        image: image.to_string(),
        path: envs_dir.to_path_buf(),
        source,
    })?;
    let name = dir_name(image, &host.identity());
    let root = envs_dir.join(&name);
    if let Some(environment) = ready(&root, host) {
        return Ok(environment);
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
    let built = build(python, host, image, &tmp, &root);
    let record = match built {
        Ok(record) => record,
        Err(error) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(error);
        }
    };
    install(&tmp, &root, host).map_err(io_error(&root))?;
    tracing::info!(
        image,
        path = %root.display(),
        python = %host.executable.display(),
        version = %host.version,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "python environment ready"
    );
    // Another process may have landed its own first; use what is there.
    let record = Record::read(&root).unwrap_or(record);
    Ok(Environment::at(root, record))
}

/// Builds a complete environment in `tmp` whose shims refer to its final place `root`.
fn build(
    python: &Path,
    host: &Host,
    image: &str,
    tmp: &Path,
    root: &Path,
) -> Result<Record, Error> {
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

    // Without a pip to lend, the environment gets its own (slower to make, works the same).
    let own_pip = host.pip.is_none();
    if own_pip {
        tracing::info!(
            image,
            "host python has no pip; creating the environment with pip"
        );
    }
    make_venv(&host.executable, tmp, own_pip).map_err(create_error)?;
    let interpreter = keep_real_interpreter(tmp).map_err(io_error)?;
    link_host_packages(tmp, host).map_err(io_error)?;
    if let Some(pip) = &host.pip {
        let borrowed = tmp.join(STATE_DIR).join("borrowed");
        fs::create_dir_all(&borrowed).map_err(io_error)?;
        symlink(pip, borrowed.join("pip")).map_err(io_error)?;
    }
    let (prefix, has_pip) = probe(tmp).map_err(create_error)?;
    if !has_pip {
        return Err(create_error(
            "pip is not importable in the new environment".into(),
        ));
    }
    let expected = fs::canonicalize(tmp).map_err(io_error)?;
    if fs::canonicalize(&prefix).ok().as_deref() != Some(expected.as_path()) {
        return Err(create_error(format!(
            "interpreter started as bin/{REAL_PYTHON} reports sys.prefix {}, not the environment",
            prefix.display()
        )));
    }
    let stamp = |path: &Path| {
        Stamp::of(path).ok_or_else(|| create_error(format!("{} vanished", path.display())))
    };
    let record = Record {
        image: image.to_string(),
        host: host.clone(),
        interpreter_stamp: stamp(&interpreter)?,
        executable_stamp: stamp(&host.executable)?,
        interpreter,
    };
    write_shims(tmp, root, &record).map_err(io_error)?;
    Ok(record)
}

fn make_venv(python: &Path, dir: &Path, with_pip: bool) -> Result<(), String> {
    let mut command = Command::new(python);
    command.args(["-m", "venv"]);
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

/// Links `bin/.kfpd-python` to the interpreter behind `bin/python3`; returns where it leads.
fn keep_real_interpreter(dir: &Path) -> io::Result<PathBuf> {
    let bin = dir.join("bin");
    let python3 = bin.join("python3");
    let real = bin.join(REAL_PYTHON);
    if fs::symlink_metadata(&python3)?.file_type().is_symlink() {
        // Resolved fully: a link chain through bin/python would otherwise end at the shim.
        let target = fs::canonicalize(&python3)?;
        symlink(&target, &real)?;
        Ok(target)
    } else {
        // A copied interpreter (`--copies`): move it, the shim takes its name.
        fs::rename(&python3, &real)?;
        fs::canonicalize(&real)
    }
}

/// The environment's own site-packages (`lib/pythonX.Y/site-packages`).
pub(crate) fn site_packages(root: &Path) -> io::Result<PathBuf> {
    for entry in fs::read_dir(root.join("lib"))? {
        let dir = entry?.path().join("site-packages");
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "the environment has no lib/python*/site-packages",
    ))
}

/// Writes `_kfpd_host.pth`: the host's site directories, added after the environment's own
/// unless `KFPD_HOST_PACKAGES=hidden` (set for pip by the shim).
fn link_host_packages(dir: &Path, host: &Host) -> io::Result<()> {
    let mut dirs = Vec::with_capacity(host.site_dirs.len());
    for site_dir in &host.site_dirs {
        let text = site_dir
            .to_str()
            .ok_or_else(|| io::Error::other("host site directory is not valid UTF-8"))?;
        // A JSON string is a valid Python string literal.
        dirs.push(serde_json::Value::String(text.to_string()).to_string());
    }
    let line = format!(
        "import os, site; os.environ.get('KFPD_HOST_PACKAGES') == 'hidden' or list(map(site.addsitedir, [{}]))\n",
        dirs.join(", ")
    );
    fs::write(site_packages(dir)?.join(HOST_PTH), line)
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

fn write_shims(dir: &Path, root: &Path, record: &Record) -> io::Result<()> {
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
    fs::write(state.join("image"), format!("{}\n", record.image))?;
    let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    fs::write(state.join(RECORD), json)?;
    fs::write(state.join(LAST_USED), b"")?;
    fs::write(state.join("layout"), format!("{LAYOUT}\n"))
}

/// Moves the finished `tmp` to `root`, unless another process got there first with a good one.
fn install(tmp: &Path, root: &Path, host: &Host) -> io::Result<()> {
    let err = match fs::rename(tmp, root) {
        Ok(()) => return Ok(()),
        Err(err) => err,
    };
    if ready(root, host).is_some() {
        tracing::debug!(path = %root.display(), "environment made concurrently elsewhere; using it");
        return fs::remove_dir_all(tmp);
    }
    if fs::symlink_metadata(root).is_err() {
        let _ = fs::remove_dir_all(tmp);
        return Err(err);
    }
    // A stale environment (older layout, changed interpreter): set it aside, then replace it.
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
        if abandoned_pid(rest).is_some() {
            tracing::debug!(path = %entry.path().display(), "removing abandoned environment build");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// For the `<pid>-<n>` tail of a temporary name: the pid, when that process is gone.
pub(crate) fn abandoned_pid(tail: &str) -> Option<i32> {
    let pid = tail.split('-').next()?.parse::<i32>().ok()?;
    (pid != std::process::id() as i32 && !crate::process::pid_exists(pid)).then_some(pid)
}

/// Quotes `s` as one `/bin/sh` word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        dev: 0,
        ino: 0,
        size: 0,
        mtime_ns: 0,
    };

    #[test]
    fn dir_names_are_readable_distinct_and_safe() {
        let a = dir_name("python:3.11", "h");
        assert!(a.starts_with("python_3.11-"), "{a}");
        assert_eq!(a.len(), "python_3.11-".len() + 12);
        assert_ne!(dir_name("python:3.11", "h"), dir_name("python_3.11", "h"));
        assert_ne!(
            dir_name("python:3.11", "h"),
            dir_name("python:3.11", "other")
        );
        assert!(!dir_name("../../etc", "h").contains('/'));
        assert!(!dir_name(".hidden", "h").starts_with('.'));
        assert!(dir_name("", "h").starts_with("image-"));
        assert!(dir_name(&"x".repeat(500), "h").len() < 70);
    }

    #[test]
    fn sh_quote_survives_quotes() {
        assert_eq!(sh_quote("/a b/c'd"), r"'/a b/c'\''d'");
    }

    #[test]
    fn search_path_puts_bin_first_once() {
        let env = Environment {
            root: PathBuf::from("/envs/x"),
            bin: PathBuf::from("/envs/x/bin"),
            python: PathBuf::from("/usr/bin/python3"),
            version: "3.11.0".into(),
            record: Record {
                image: "x".into(),
                host: Host {
                    executable: PathBuf::from("/usr/bin/python3"),
                    version: "3.11.0".into(),
                    prefix: PathBuf::from("/usr"),
                    base_prefix: PathBuf::from("/usr"),
                    site_dirs: Vec::new(),
                    pip: None,
                },
                interpreter: PathBuf::from("/usr/bin/python3"),
                interpreter_stamp: STAMP,
                executable_stamp: STAMP,
            },
        };
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
