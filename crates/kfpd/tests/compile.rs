//! `kfpd compile --target argo`: the real binary prints or writes the Workflow, and
//! refuses what it cannot compile with a message naming the file.

use std::path::PathBuf;
use std::process::Command;

/// A small pipeline made here, so the test needs no shared corpus.
const PIPELINE: &str = r#"
components:
  comp-echo:
    executorLabel: exec-echo
deploymentSpec:
  executors:
    exec-echo:
      container:
        image: alpine
        command: [echo, hi]
pipelineInfo:
  name: hello-compile
root:
  dag:
    tasks:
      echo:
        componentRef: {name: comp-echo}
        taskInfo: {name: echo}
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
"#;

fn kfpd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kfpd"))
}

fn pipeline_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("hello.yaml");
    std::fs::write(&path, PIPELINE).unwrap();
    path
}

#[test]
fn prints_the_workflow_and_writes_it_with_output() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline_file(&dir);
    let out = kfpd()
        .args(["compile", "--target", "argo"])
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["kind"], "Workflow");
    assert_eq!(printed["metadata"]["generateName"], "hello-compile-");
    assert_eq!(
        printed["metadata"]["annotations"]["kfpd.io/argo-version"],
        "3.7"
    );

    let file = dir.path().join("wf.yaml");
    let out = kfpd()
        .args(["compile", "--target", "argo", "--argo-version", "4.0", "-o"])
        .arg(&file)
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let written: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        written["metadata"]["annotations"]["kfpd.io/argo-version"],
        "4.0"
    );
    assert_eq!(
        written["spec"], printed["spec"],
        "one output for both versions"
    );
}

#[test]
fn refuses_bad_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "pipelineInfo: {name: x}\n").unwrap();
    let out = kfpd()
        .args(["compile", "--target", "argo"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml"), "{stderr}");

    let pipeline = pipeline_file(&dir);
    let out = kfpd()
        .args(["compile", "--target", "argo", "--argo-version", "3.5"])
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("3.5"));

    let out = kfpd()
        .args(["compile", "--target", "argo"])
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
}
