//! `kfpd run` on the committed pipelines: parameters of every type rendered into a
//! task's command (its Kubernetes platform spec does not stop a local run), archives
//! run as their YAML does, and `--kfp-package` replaces the kfp release a
//! lightweight component pins, refusing a requirement that could break the
//! preamble's quoting.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn kfpd_run(pipeline: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .arg("run")
        .arg(pipeline)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("KFPD_KFP_PACKAGE")
        .output()
        .expect("kfpd run")
}

/// Every task log of the runs kept in `data`, concatenated.
fn logs(data: &Path) -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|name| name == "main.log") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    walk(&data.join("work"), &mut out);
    out
}

#[test]
fn parameters_of_every_type_reach_the_command() {
    let data = tempfile::tempdir().expect("temp dir");
    let done = kfpd_run(
        &common::pipeline("parameters.yaml"),
        data.path(),
        &[
            "-p",
            "text=hi there",
            "-p",
            "count=3",
            "-p",
            "items=[1,\"two\"]",
            "-p",
            "config={\"k\":{\"deep\":true}}",
        ],
    );
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(stderr.contains("run SUCCEEDED"), "{stderr}");
    assert_eq!(
        logs(data.path()).trim(),
        r#"text=hi there count=3 ratio=0.5 flag=true items=[1,"two"] config={"k":{"deep":true}}"#
    );

    let missing = kfpd_run(
        &common::pipeline("parameters.yaml"),
        data.path(),
        &["-p", "text=hi"],
    );
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{stderr}");
    assert!(stderr.contains("\"config\" is required"), "{stderr}");
}

#[test]
fn an_archive_runs_as_its_yaml_does() {
    let source = common::pipeline("two-step-artifact.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let zip = dir.path().join("two-step.zip");
    std::fs::write(&zip, kfpd_testdata::zip_package(&source, "pipeline.yaml")).expect("zip");
    let tarball = dir.path().join("two-step.tar.gz");
    std::fs::write(
        &tarball,
        kfpd_testdata::tar_gz_package(&source, "pipeline.yaml"),
    )
    .expect("tar.gz");
    for package in [&zip, &tarball] {
        let data = tempfile::tempdir().expect("temp dir");
        let done = kfpd_run(package, data.path(), &["-p", "text=carried over"]);
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert!(done.status.success(), "{}: {stderr}", package.display());
        assert_eq!(
            logs(data.path()).trim(),
            "carried over",
            "the reader printed what the writer wrote"
        );
    }
}

#[test]
fn kfpd_run_replaces_the_pinned_kfp_release() {
    let pipeline = common::pipeline("add-unavailable-kfp.yaml");
    let data = tempfile::tempdir().expect("temp dir");
    let args = ["-p", "a=2", "-p", "b=3", "--kfp-package"];
    let done = kfpd_run(
        &pipeline,
        data.path(),
        &[&args[..], &["kfp==2.15.0"]].concat(),
    );
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(stderr.contains("run SUCCEEDED"), "{stderr}");

    let refused = kfpd_run(
        &pipeline,
        data.path(),
        &[&args[..], &["kfp==2.15.0' && rm -rf x '"]].concat(),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("kfp_package"), "{stderr}");
}
