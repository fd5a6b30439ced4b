//! kfpd raises its soft limit on open files to the hard limit at start, whichever
//! subcommand it runs: started with a soft limit of 256, it ends up with the hard
//! limit (and so do its tasks, which inherit it).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Soft and hard "Max open files" of a process, from `/proc/<pid>/limits`.
fn open_files_limits(pid: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace();
    Some((values.next()?.to_string(), values.next()?.to_string()))
}

/// The hard limit, if there is room below it to lower the soft one to 256.
fn hard_limit() -> Option<String> {
    let (_, hard) = open_files_limits("self")?;
    let room = hard == "unlimited" || hard.parse::<u64>().is_ok_and(|hard| hard > 256);
    if !room {
        eprintln!("skipping: the hard limit on open files is {hard}");
        return None;
    }
    Some(hard)
}

/// `sh` lowers the soft limit and then becomes kfpd, keeping its pid.
fn kfpd_with_low_soft_limit(args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -S -n 256 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kfpd"))
        .args(args)
        .env("KFPD_LOG", "warn");
    command
}

#[test]
fn serve_raises_the_soft_limit_to_the_hard_limit() {
    let Some(hard) = hard_limit() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().display().to_string();
    let mut child = kfpd_with_low_soft_limit(&[
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "off",
        "--executor",
        "none",
        "--data-dir",
        &data_dir,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn kfpd");
    let pid = child.id().to_string();
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let started = Instant::now();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.starts_with("kfpd listening on"));
    let limits = open_files_limits(&pid);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        listening && started.elapsed() < Duration::from_secs(60),
        "kfpd serve did not start"
    );
    assert_eq!(limits, Some((hard.clone(), hard)));
}

#[test]
fn run_gives_its_tasks_the_raised_limit() {
    let Some(hard) = hard_limit() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = dir.path().join("limit.txt");
    let pipeline = dir.path().join("limit.yaml");
    std::fs::write(
        &pipeline,
        r#"pipelineInfo:
  name: open-files-limit
schemaVersion: 2.1.0
sdkVersion: kfp-2.15.0
components:
  comp-limit:
    executorLabel: exec-limit
    inputDefinitions:
      parameters:
        path:
          parameterType: STRING
deploymentSpec:
  executors:
    exec-limit:
      container:
        image: alpine
        command: [sh, -c, 'ulimit -S -n > "$0"', "{{$.inputs.parameters['path']}}"]
root:
  inputDefinitions:
    parameters:
      path:
        parameterType: STRING
  dag:
    tasks:
      limit:
        componentRef:
          name: comp-limit
        inputs:
          parameters:
            path:
              componentInputParameter: path
        taskInfo:
          name: limit
"#,
    )
    .expect("pipeline");
    let param = format!("path={}", seen.display());
    let status = kfpd_with_low_soft_limit(&["run", &pipeline.display().to_string(), "-p", &param])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kfpd run");
    assert!(status.success(), "kfpd run failed");
    let limit = std::fs::read_to_string(&seen).expect("the task wrote its limit");
    assert_eq!(limit.trim(), hard);
}
