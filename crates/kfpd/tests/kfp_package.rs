//! `--kfp-package` replaces the kfp release a lightweight component's preamble pins:
//! a committed pipeline pinned to a release that does not exist runs with it, and
//! a requirement that could break the preamble's quoting is refused.

mod common;

use std::process::{Command, Output};

fn kfpd_run(pipeline: &std::path::Path, data: &std::path::Path, package: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .arg("run")
        .arg(pipeline)
        .arg("--data-dir")
        .arg(data)
        .args(["-p", "a=2", "-p", "b=3"])
        .arg("--kfp-package")
        .arg(package)
        .env_remove("KFPD_KFP_PACKAGE")
        .output()
        .expect("kfpd run")
}

#[test]
fn kfpd_run_replaces_the_pinned_kfp_release() {
    let pipeline = common::pipeline("add-unavailable-kfp.yaml");
    let data = tempfile::tempdir().expect("temp dir");
    let done = kfpd_run(&pipeline, data.path(), "kfp==2.15.0");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(stderr.contains("run SUCCEEDED"), "{stderr}");

    let refused = kfpd_run(&pipeline, data.path(), "kfp==2.15.0' && rm -rf x '");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("kfp_package"), "{stderr}");
}
