//! End to end: a lightweight Python component (the committed `tests/pipelines/add.yaml`),
//! run as compiled.
//! Ignored by default because its first step downloads `kfp` from PyPI; run with
//! `cargo test -p kfpd-runtime --test kfp_smoke -- --ignored --nocapture`.

use std::time::Instant;

use kfpd_runtime::{Options, ProcessSpec, Runtime};
use tokio_util::sync::CancellationToken;

#[tokio::test]
#[ignore = "downloads kfp from PyPI"]
async fn add_numbers_component_runs_and_writes_its_output() {
    let text = std::fs::read_to_string(kfpd_testdata::pipeline("add.yaml")).expect("pipeline file");
    let ir: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let container = &ir["deploymentSpec"]["executors"]["exec-add-numbers"]["container"];
    let image = container["image"].as_str().expect("image");
    let strings = |v: &serde_yaml::Value| -> Vec<String> {
        v.as_sequence()
            .expect("list")
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect()
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Options::new(dir.path().join("envs")));
    for attempt in 0..2 {
        let cwd = dir.path().join(format!("task-{attempt}"));
        std::fs::create_dir_all(&cwd).expect("cwd");
        let executor_input = serde_json::json!({
            "inputs": {"parameterValues": {"a": 3, "b": 4}},
            "outputs": {
                "parameters": {"Output": {"outputFile": cwd.join("Output")}},
                "outputFile": cwd.join("executor_output.json"),
            },
        });
        let mut argv = strings(&container["command"]);
        argv.extend(strings(&container["args"]).into_iter().map(|arg| {
            if arg == "{{$}}" {
                executor_input.to_string()
            } else {
                arg
            }
        }));
        let spec = ProcessSpec {
            image: image.to_string(),
            argv,
            env: Vec::new(),
            cwd: cwd.clone(),
            log_path: cwd.join("task.log"),
        };
        let started = Instant::now();
        let exit = runtime
            .run(spec, CancellationToken::new())
            .await
            .expect("run");
        let log = std::fs::read_to_string(cwd.join("task.log")).unwrap_or_default();
        eprintln!(
            "attempt {attempt}: {exit:?} in {:?}\n{log}",
            started.elapsed()
        );
        assert!(exit.success(), "{log}");
        let output = std::fs::read_to_string(cwd.join("executor_output.json"))
            .or_else(|_| std::fs::read_to_string(cwd.join("Output")))
            .expect("an output written");
        eprintln!("output: {output}");
        assert!(output.contains('7'), "{output}");
    }
}
