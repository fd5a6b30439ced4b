//! Measurements, not checks: environment creation time and the per-task cost of the
//! `pip install` every lightweight component starts with, with and without the shim.
//! Run with `cargo test --release -p kfpd-runtime --test overhead -- --ignored --nocapture`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kfpd_runtime::{Options, ProcessSpec, Runtime};
use tokio_util::sync::CancellationToken;

const RUNS: usize = 10;

fn build_wheel(dir: &Path, python: &Path) {
    std::fs::create_dir_all(dir).expect("wheel dir");
    let script = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + '/kfpdprobe-0.1-py3-none-any.whl', 'w') as z:
    z.writestr('kfpdprobe/__init__.py', 'VALUE = 42\n')
    z.writestr('kfpdprobe-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\nName: kfpdprobe\nVersion: 0.1\n')
    z.writestr('kfpdprobe-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\nGenerator: kfpd-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
    z.writestr('kfpdprobe-0.1.dist-info/RECORD', '')
"#;
    let status = Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .status()
        .expect("host python");
    assert!(status.success());
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    format!(
        "median {:>7.1} ms, mean {:>7.1} ms, min {:>7.1} ms",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3
    )
}

#[tokio::test]
#[ignore = "measurement; prints numbers"]
async fn measure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options::new(dir.path().join("envs"));
    let python = options.python.clone();
    let runtime = Runtime::new(options);

    let mut creation = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        runtime
            .environment(&format!("python:measure-{i}"))
            .await
            .expect("environment");
        creation.push(started.elapsed());
    }
    println!("environment creation: {}", summary(&mut creation));

    let wheels = dir.path().join("wheels");
    build_wheel(&wheels, &python);
    let install = format!(
        "-m pip install --quiet --no-warn-script-location --no-index --find-links {} 'kfpdprobe==0.1' \
         'typing-extensions>=3.7.4,<5; python_version<\"3.9\"'",
        wheels.display()
    );
    let variants = [
        ("python3 -c pass (baseline)", "python3 -c pass".to_string()),
        (
            "shim: satisfied install && python3 -c pass",
            format!("python3 {install} && python3 -c pass"),
        ),
        (
            "real pip: satisfied install && python -c pass",
            format!(
                "\"$VIRTUAL_ENV/bin/.kfpd-python\" {install} && \"$VIRTUAL_ENV/bin/.kfpd-python\" -c pass"
            ),
        ),
    ];
    for (name, script) in variants {
        let mut samples = Vec::new();
        for run in 0..=RUNS {
            let cwd = dir.path().join(format!("task-{run}"));
            std::fs::create_dir_all(&cwd).expect("cwd");
            let spec = ProcessSpec {
                image: "python:measure-0".into(),
                argv: vec!["sh".into(), "-c".into(), script.clone()],
                env: Vec::new(),
                cwd: cwd.clone(),
                log_path: cwd.join("task.log"),
            };
            let started = Instant::now();
            let exit = runtime
                .run(spec, CancellationToken::new())
                .await
                .expect("run");
            let took = started.elapsed();
            assert!(
                exit.success(),
                "{}",
                std::fs::read_to_string(cwd.join("task.log")).unwrap_or_default()
            );
            // The first run installs (or warms caches); the rest are the steady state.
            if run > 0 {
                samples.push(took);
            }
        }
        println!("{name:<48} {}", summary(&mut samples));
    }
}
