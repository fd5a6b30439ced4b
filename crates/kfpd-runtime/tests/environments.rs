//! Environments that must not answer from memory for something no longer true: real
//! interpreters, real virtualenvs, a small wheel built here and removed underneath (no network).

use std::path::{Path, PathBuf};
use std::process::Command;

use kfpd_runtime::{Environment, Exit, Options, ProcessSpec, Runtime};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "python:3.11";

fn host_python() -> PathBuf {
    Options::new("unused").python
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("start");
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Builds `kfpdprobe-<version>-py3-none-any.whl` (module `kfpdprobe`, `VALUE = <version>`)
/// into `dir`.
fn build_wheel(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir).expect("wheel dir");
    let script = r#"
import sys, zipfile
dir, version = sys.argv[1], sys.argv[2]
info = 'kfpdprobe-%s.dist-info' % version
with zipfile.ZipFile('%s/kfpdprobe-%s-py3-none-any.whl' % (dir, version), 'w') as z:
    z.writestr('kfpdprobe/__init__.py', 'VALUE = %r\n' % version)
    z.writestr(info + '/METADATA', 'Metadata-Version: 2.1\nName: kfpdprobe\nVersion: %s\n' % version)
    z.writestr(info + '/WHEEL', 'Wheel-Version: 1.0\nGenerator: kfpd-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
    z.writestr(info + '/RECORD', '')
"#;
    run_ok(
        Command::new(host_python())
            .args(["-c", script])
            .arg(dir)
            .arg(version),
    );
}

/// The site-packages directory `python` installs into.
fn purelib(python: &Path) -> PathBuf {
    let out = run_ok(Command::new(python).args([
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
    ]));
    PathBuf::from(out.trim())
}

/// Installs the probe wheel into the host virtualenv `venv_python` with the base's pip (offline).
fn install_into(venv_python: &Path, wheels: &Path) {
    run_ok(
        Command::new(host_python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--disable-pip-version-check",
                "--find-links",
            ])
            .arg(wheels)
            .arg("--target")
            .arg(purelib(venv_python))
            .arg("kfpdprobe==0.1"),
    );
}

/// Deletes the probe package and its metadata from a site-packages directory.
fn remove_probe(site: &Path) {
    for entry in std::fs::read_dir(site).expect("site-packages") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("kfpdprobe") {
            std::fs::remove_dir_all(&path).expect("remove");
        }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    runtime: Runtime,
}

impl Fixture {
    fn with_python(dir: tempfile::TempDir, python: PathBuf) -> Fixture {
        let runtime = Runtime::new(Options {
            envs_dir: dir.path().join("envs"),
            python,
            inherit: Default::default(),
        });
        Fixture { dir, runtime }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `sh -c script` in the image's environment; the exit, the log and whether pip started.
    async fn sh(&self, name: &str, script: &str) -> (Exit, String, bool) {
        let cwd = self.path(name);
        std::fs::create_dir_all(&cwd).expect("cwd");
        let pip_log = self.path(&format!("{name}.pip.log"));
        let spec = ProcessSpec {
            image: IMAGE.to_string(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("PIP_LOG".into(), pip_log.to_string_lossy().into_owned())],
            cwd,
            log_path: self.path(&format!("{name}.log")),
        };
        let log = spec.log_path.clone();
        let exit = self
            .runtime
            .run(spec, CancellationToken::new())
            .await
            .expect("run");
        (exit, read(&log), pip_log.exists())
    }

    async fn environment(&self) -> Environment {
        self.runtime.environment(IMAGE).await.expect("environment")
    }
}

const IMPORT: &str = "python3 -c 'import kfpdprobe; print(kfpdprobe.VALUE)'";

#[tokio::test]
async fn a_remembered_install_whose_package_went_away_is_installed_again() {
    let fx = Fixture::with_python(tempfile::tempdir().expect("tempdir"), host_python());
    let wheels = fx.path("wheels");
    build_wheel(&wheels, "0.1");
    build_wheel(&wheels, "0.2");
    // Pinned, as the SDK pins kfp, with the requirement the SDK adds that only applies
    // to old Pythons (pip installs nothing for it here).
    let install = format!(
        "pip install --quiet --no-index --find-links {} kfpdprobe==0.2 \
         'typing-extensions>=3.7.4,<5; python_version<\"3.9\"'",
        wheels.display()
    );
    let env = fx.environment().await;
    let site = purelib(&env.bin.join("python3"));

    let (exit, log, ran_pip) = fx.sh("first", &format!("{install} && {IMPORT}")).await;
    assert!(exit.success(), "{log}");
    assert!(ran_pip);
    assert_eq!(log, "0.2\n");
    let (exit, log, ran_pip) = fx.sh("remembered", &format!("{install} && {IMPORT}")).await;
    assert!(exit.success(), "{log}");
    assert!(
        !ran_pip,
        "a remembered install that still holds starts no pip"
    );

    // Removed underneath (not through the environment's pip, which would forget the install).
    remove_probe(&site);
    let (exit, log, ran_pip) = fx
        .sh("after-removal", &format!("{install} && {IMPORT}"))
        .await;
    assert!(exit.success(), "{log}");
    assert!(ran_pip, "the install was replayed from memory");
    assert_eq!(log, "0.2\n");

    // Replaced by another version underneath: the marker named 0.2, so pip runs again.
    remove_probe(&site);
    run_ok(
        Command::new(host_python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--disable-pip-version-check",
                "--find-links",
            ])
            .arg(&wheels)
            .arg("--target")
            .arg(&site)
            .arg("kfpdprobe==0.1"),
    );
    let (exit, log, _) = fx.sh("swapped", IMPORT).await;
    assert!(exit.success(), "{log}");
    assert_eq!(log, "0.1\n");
    let (exit, log, ran_pip) = fx.sh("after-swap", &format!("{install} && {IMPORT}")).await;
    assert!(exit.success(), "{log}");
    assert!(ran_pip, "a marker for 0.2 vouched for 0.1");
    assert_eq!(log, "0.2\n");
}

#[tokio::test]
async fn a_virtualenv_host_lends_its_packages_but_a_component_install_is_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wheels = dir.path().join("wheels");
    build_wheel(&wheels, "0.1");
    // A virtualenv without pip over a base that has no kfpdprobe: the package is only in it.
    let venv = dir.path().join("host-venv");
    run_ok(
        Command::new(host_python())
            .args(["-m", "venv", "--without-pip", "--system-site-packages"])
            .arg(&venv),
    );
    let venv_python = venv.join("bin").join("python3");
    install_into(&venv_python, &wheels);
    let base = Command::new(host_python())
        .args(["-c", "import kfpdprobe"])
        .output()
        .expect("base python");
    assert!(!base.status.success(), "the base python must not have it");

    let fx = Fixture::with_python(dir, venv_python.clone());
    let env = fx.environment().await;
    assert_eq!(env.python, venv_python, "made from the virtualenv's python");

    // What the virtualenv has, a task imports (issue: only the base's packages were seen).
    let (exit, log, _) = fx.sh("import-from-host", IMPORT).await;
    assert!(exit.success(), "{log}");
    assert_eq!(log, "0.1\n");

    // A component's own pip install is installed into the environment, not "already satisfied".
    let install = format!(
        "pip install --quiet --no-index --find-links {} kfpdprobe==0.1",
        wheels.display()
    );
    let (exit, log, ran_pip) = fx.sh("install", &install).await;
    assert!(exit.success(), "{log}");
    assert!(ran_pip);
    let env_site = purelib(&env.bin.join("python3"));
    assert!(
        env_site.join("kfpdprobe-0.1.dist-info").is_dir(),
        "not installed into the environment: {}",
        env_site.display()
    );

    // The host losing the package breaks nothing, and the remembered install still holds.
    remove_probe(&purelib(&venv_python));
    let (exit, log, ran_pip) = fx
        .sh("after-host-removal", &format!("{install} && {IMPORT}"))
        .await;
    assert!(exit.success(), "{log}");
    assert_eq!(log, "0.1\n");
    assert!(!ran_pip, "the environment's own copy is still there");

    // pip as a task runs it sees the environment alone; python sees both.
    let (exit, log, _) = fx
        .sh(
            "views",
            "python3 -c 'import sys; print(sum(\"host-venv\" in p for p in sys.path))'",
        )
        .await;
    assert!(exit.success(), "{log}");
    assert_eq!(
        log, "1\n",
        "the virtualenv's site-packages is on the task's path"
    );
}

/// Copies the interpreter behind `python` to `dest` (a copy runs from anywhere: it finds its
/// standard library where it was installed).
fn copy_interpreter(python: &Path, dest: &Path) {
    let real = run_ok(Command::new(python).args(["-c", "import sys; print(sys.executable)"]));
    let real = std::fs::canonicalize(real.trim()).expect("real interpreter");
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("bin dir");
    let tmp = dest.with_extension("tmp");
    std::fs::copy(&real, &tmp).expect("copy interpreter");
    std::fs::rename(&tmp, dest).expect("rename");
}

/// A python3.X on PATH whose version differs from the host's, if there is one.
fn other_version() -> Option<PathBuf> {
    let version = |python: &Path| -> Option<String> {
        let out = Command::new(python)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let host = version(&host_python())?;
    let path = std::env::var_os("PATH")?;
    let mut candidates: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(&path) {
        for minor in 8..=14 {
            candidates.push(dir.join(format!("python3.{minor}")));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let versions = PathBuf::from(home).join(".pyenv/versions");
        if let Ok(entries) = std::fs::read_dir(versions) {
            for entry in entries.flatten() {
                candidates.push(entry.path().join("bin/python3"));
            }
        }
    }
    candidates.into_iter().find(|candidate| {
        candidate.is_file() && version(candidate).is_some_and(|v| v != host && v.starts_with("3."))
    })
}

#[tokio::test]
async fn an_environment_whose_interpreter_went_away_or_changed_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = dir.path().join("base").join("bin").join("python3");
    copy_interpreter(&host_python(), &python);
    let fx = Fixture::with_python(dir, python.clone());
    let wheels = fx.path("wheels");
    build_wheel(&wheels, "0.1");
    let install = format!(
        "pip install --quiet --no-index --find-links {} kfpdprobe",
        wheels.display()
    );
    let (exit, log, _) = fx.sh("first", &format!("{install} && {IMPORT}")).await;
    assert!(exit.success(), "{log}");
    let env = fx.environment().await;

    // Gone: the environment is not reused; making it again fails and names the interpreter.
    std::fs::remove_file(&python).expect("remove interpreter");
    let error = fx
        .runtime
        .environment(IMAGE)
        .await
        .expect_err("an environment over a vanished interpreter");
    assert!(
        error.to_string().contains(&*python.to_string_lossy()),
        "{error}"
    );

    // Back (another file at the same path): rebuilt, so the earlier install is gone and
    // the remembered answer with it.
    copy_interpreter(&host_python(), &python);
    let (exit, log, ran_pip) = fx
        .sh("reinstalled", &format!("{install} && {IMPORT}"))
        .await;
    assert!(exit.success(), "{log}");
    assert!(ran_pip, "a rebuilt environment remembers nothing");
    let rebuilt = fx.environment().await;
    assert_eq!(rebuilt.root, env.root, "same interpreter path, same place");

    // Changed version at the same path.
    let Some(other) = other_version() else {
        eprintln!(
            "no second python 3 version on PATH or under ~/.pyenv; version change not checked"
        );
        return;
    };
    copy_interpreter(&other, &python);
    let (exit, log, _) = fx
        .sh(
            "new-version",
            "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'",
        )
        .await;
    assert!(exit.success(), "{log}");
    let changed = fx.environment().await;
    assert_ne!(changed.version, rebuilt.version);
    assert!(
        changed.version.starts_with(log.trim()),
        "the task ran {} but the environment says {}",
        log.trim(),
        changed.version
    );
}
