//! A failing Python task's log ends with its reason, even though Python buffers
//! stdout in blocks when it is a pipe. Its own test binary: it clears
//! PYTHONUNBUFFERED from the process environment, which no other test may see.

use kfpd_runtime::{Options, ProcessSpec, Runtime};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_reason_of_a_python_failure_is_the_last_line_of_its_log() {
    // The variable kfpd would otherwise inherit from whoever started it.
    std::env::remove_var("PYTHONUNBUFFERED");
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Options::new(dir.path().join("envs")));
    let cwd = dir.path().join("task");
    std::fs::create_dir_all(&cwd).expect("cwd");
    let log = dir.path().join("main.log");
    let program = "print('the last line on stdout')\nraise SystemExit('the reason')";
    let spec = ProcessSpec {
        image: "python:3.11".into(),
        argv: vec!["python3".into(), "-c".into(), program.into()],
        env: Vec::new(),
        cwd,
        log_path: log.clone(),
    };
    let exit = runtime
        .run(spec, CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(exit.code, Some(1));
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(text, "the last line on stdout\nthe reason\n");
}
