//! `argo_pods`: what `kfpd driver` and `kfpd launcher` cost per task, against a real
//! `kfpd serve --executor none`, run one after another as processes (as Argo's agent
//! and a task pod would run them). Prints numbers; asserts nothing.
//!
//! One run per `--items` value: a `ParallelFor` of trivial `sh` tasks. For every
//! iteration's task the driver request and then the launcher run; the time of each
//! is measured from spawning the process until it exited.
//!
//! `cargo run --release -p kfpd-bench --bin argo_pods -- --help`

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "argo_pods",
    about = "Measures kfpd driver and kfpd launcher per task against kfpd serve"
)]
struct Args {
    /// The kfpd binary [default: $CARGO_TARGET_DIR/release/kfpd, else target/release/kfpd].
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
    /// Loop sizes, one run each.
    #[arg(long, value_delimiter = ',', default_value = "20,200")]
    items: Vec<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let kfpd =
        args.kfpd_bin
            .clone()
            .unwrap_or_else(|| match std::env::var_os("CARGO_TARGET_DIR") {
                Some(dir) => PathBuf::from(dir).join("release").join("kfpd"),
                None => PathBuf::from("target/release/kfpd"),
            });
    if !kfpd.exists() {
        bail!(
            "kfpd binary {} not found; build it with `cargo build --release -p kfpd` or pass --kfpd-bin",
            kfpd.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let data = tempfile::Builder::new()
        .prefix("kfpd-bench-pods-")
        .tempdir()
        .context("cannot make a temp dir")?;
    let work = data.path().join("pods");
    let server = Server::start(&kfpd, &data.path().join("server"))?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("# kfpd driver and kfpd launcher per task\n");
    println!("Machine: {cpus} CPUs; SQLite and the local artifact directory.\n");
    println!("| loop items | driver p50 | driver p95 | launcher p50 | launcher p95 | driver, first 10 | driver, last 10 |");
    println!("|---|---|---|---|---|---|---|");
    for &items in &args.items {
        let run_id = runtime.block_on(server.create_run(items))?;
        let loop_answer = server.drive(&kfpd, &run_id, "root/for-loop-1")?;
        if !loop_answer.contains(&format!("\"iteration_count\":\"{items}\"")) {
            bail!("the loop's driver request answered {loop_answer}");
        }
        let mut drivers = Vec::with_capacity(items);
        let mut launchers = Vec::with_capacity(items);
        for index in 0..items {
            let path = format!("root/for-loop-1/{index}/echo");
            let started = Instant::now();
            server.drive(&kfpd, &run_id, &path)?;
            drivers.push(started.elapsed());
            let started = Instant::now();
            server.launch(&kfpd, &run_id, &path, &work)?;
            launchers.push(started.elapsed());
        }
        let first: Duration = drivers.iter().take(10).sum::<Duration>() / 10.min(items) as u32;
        let last: Duration = drivers.iter().rev().take(10).sum::<Duration>() / 10.min(items) as u32;
        println!(
            "| {items} | {} | {} | {} | {} | {} | {} |",
            ms(percentile(&drivers, 50)),
            ms(percentile(&drivers, 95)),
            ms(percentile(&launchers, 50)),
            ms(percentile(&launchers, 95)),
            ms(first),
            ms(last),
        );
    }
    Ok(())
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn percentile(samples: &[Duration], percent: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = (sorted.len().saturating_sub(1) * percent) / 100;
    sorted.get(index).copied().unwrap_or_default()
}

fn pipeline(items: usize) -> Value {
    let list: Vec<usize> = (0..items).collect();
    json!({
        "pipelineInfo": {"name": "bench-pods"},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.15.0",
        "components": {
            "comp-echo": {
                "executorLabel": "exec-echo",
                "inputDefinitions": {"parameters": {"item": {"parameterType": "NUMBER_INTEGER"}}}
            },
            "comp-for-loop-1": {
                "inputDefinitions": {"parameters": {"pipelinechannel--loop-item": {"parameterType": "NUMBER_INTEGER"}}},
                "dag": {"tasks": {"echo": {
                    "componentRef": {"name": "comp-echo"},
                    "inputs": {"parameters": {"item": {"componentInputParameter": "pipelinechannel--loop-item"}}},
                    "taskInfo": {"name": "echo"}
                }}}
            }
        },
        "deploymentSpec": {"executors": {"exec-echo": {"container": {
            "image": "alpine",
            "command": ["sh", "-c", "echo \"$0\"", "{{$.inputs.parameters['item']}}"]
        }}}},
        "root": {"dag": {"tasks": {"for-loop-1": {
            "componentRef": {"name": "comp-for-loop-1"},
            "parameterIterator": {
                "itemInput": "pipelinechannel--loop-item",
                "items": {"raw": Value::Array(list.into_iter().map(|n| json!(n)).collect()).to_string()}
            },
            "taskInfo": {"name": "for-loop-1"}
        }}}}
    })
}

/// `kfpd serve --executor none` on free ports.
struct Server {
    child: Child,
    http: String,
    grpc: String,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(binary: &Path, data: &Path) -> Result<Server> {
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
                "--executor",
                "none",
            ])
            .arg("--data-dir")
            .arg(data)
            .env("KFPD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("kfpd has no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut http, mut grpc) = (None, None);
        while http.is_none() || grpc.is_none() {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("kfpd exited before it listened");
            };
            let line = line.context("cannot read kfpd's stdout")?;
            if let Some(address) = line.strip_prefix("kfpd listening on ") {
                let address = address.trim();
                match address.strip_prefix("grpc://") {
                    Some(grpc_address) => grpc = Some(grpc_address.to_string()),
                    None => http = Some(address.to_string()),
                }
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(Server {
            child,
            http: http.unwrap_or_default(),
            grpc: grpc.unwrap_or_default(),
            client: reqwest::Client::new(),
        })
    }

    async fn create_run(&self, items: usize) -> Result<String> {
        let body =
            json!({"display_name": format!("pods-{items}"), "pipeline_spec": pipeline(items)});
        let response = self
            .client
            .post(format!("{}/apis/v2beta1/runs", self.http))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let run: Value = response.json().await?;
        if !status.is_success() {
            bail!("CreateRun answered {status}: {run}");
        }
        Ok(run["run_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no run_id in {run}"))?
            .to_string())
    }

    fn drive(&self, kfpd: &Path, run_id: &str, path: &str) -> Result<String> {
        let output = Command::new(kfpd)
            .args([
                "driver",
                "--server",
                &self.http,
                "--run-id",
                run_id,
                "--task-path",
                path,
            ])
            .output()?;
        if !output.status.success() {
            bail!(
                "kfpd driver {path}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn launch(&self, kfpd: &Path, run_id: &str, path: &str, work: &Path) -> Result<()> {
        let output = Command::new(kfpd)
            .args([
                "launcher",
                "--server",
                &self.grpc,
                "--run-id",
                run_id,
                "--task-path",
                path,
            ])
            .arg("--work-dir")
            .arg(work)
            .env_remove("OBJECTSTORECONFIG_HOST")
            .output()?;
        if !output.status.success() {
            bail!(
                "kfpd launcher {path}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}
