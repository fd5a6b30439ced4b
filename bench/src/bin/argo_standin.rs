//! `argo_standin`: what running on Argo's pod interface costs per task, through the
//! stand-in for Argo the tests use (crates/kfpd/tests/standin): each run's Workflow
//! is compiled as the server compiles it, its driver requests sent as `kfpd driver`
//! processes and its pods run as `kfpd launcher` processes, against a real
//! `kfpd serve --executor none`. The same pipelines on `kfpd serve --executor local`
//! give the local engine's time for comparison. Prints numbers; asserts nothing.
//!
//! Pipelines: a chain of `--chain` trivial `sh` tasks (one after another: the
//! per-task cost without contention) and a `ParallelFor` of `--items` such tasks.
//!
//! `cargo run --release -p kfpd-bench --bin argo_standin -- --help`

#[path = "../../../crates/kfpd/tests/standin/mod.rs"]
mod standin;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::{json, Map, Value};

#[derive(Parser, Debug)]
#[command(
    name = "argo_standin",
    about = "Measures driver + launcher per task through the stand-in for Argo"
)]
struct Args {
    /// The kfpd binary [default: $CARGO_TARGET_DIR/release/kfpd, else target/release/kfpd].
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
    /// Tasks in the sequential chain.
    #[arg(long, default_value_t = 10)]
    chain: usize,
    /// Loop sizes, one run each.
    #[arg(long, value_delimiter = ',', default_value = "20,100")]
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let data = tempfile::Builder::new()
        .prefix("kfpd-bench-standin-")
        .tempdir()
        .context("cannot make a temp dir")?;
    let argo = Server::start(&kfpd, &data.path().join("argo"), "none")?;
    let local = Server::start(&kfpd, &data.path().join("local"), "local")?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("# Driver + launcher per task, through the stand-in for Argo\n");
    println!("Machine: {cpus} CPUs; SQLite and the local artifact directory. Every task is `sh -c 'echo …'`.\n");
    println!("| pipeline | tasks | stand-in wall | per task | driver request p50 / p95 | pod (launcher) p50 / p95 | local engine wall | per task |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut cases = vec![(
        format!("chain of {}", args.chain),
        chain(args.chain),
        args.chain,
    )];
    for &items in &args.items {
        cases.push((format!("loop of {items}"), parallel_for(items), items));
    }
    // One cluster for every case, warmed by a first run that is not reported: the
    // init container's copy of kfpd and the image's environment are made once.
    let cluster_dir = data.path().join("cluster");
    runtime.block_on(async {
        let spec = chain(1);
        let run_id = argo.create_run(&spec).await?;
        run_on_standin(&argo, &kfpd, &run_id, &spec, &cluster_dir).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    for (name, spec, tasks) in cases {
        let (wall, outcome) = runtime.block_on(async {
            let run_id = argo.create_run(&spec).await?;
            let started = Instant::now();
            let outcome = run_on_standin(&argo, &kfpd, &run_id, &spec, &cluster_dir).await?;
            let wall = started.elapsed();
            let state = argo.state(&run_id).await?;
            if state != "SUCCEEDED" {
                bail!("{name}: the run ended {state}:\n{}", outcome.summary());
            }
            Ok::<_, anyhow::Error>((wall, outcome))
        })?;
        let local_wall = runtime.block_on(async {
            let run_id = local.create_run(&spec).await?;
            let started = Instant::now();
            loop {
                let state = local.state(&run_id).await?;
                if state == "SUCCEEDED" {
                    return Ok::<_, anyhow::Error>(started.elapsed());
                }
                if matches!(state.as_str(), "FAILED" | "CANCELED") {
                    bail!("{name}: the local run ended {state}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })?;
        let of_kind = |kind: standin::Kind| -> Vec<Duration> {
            outcome
                .nodes
                .iter()
                .filter(|node| node.kind == kind)
                .map(|node| node.elapsed)
                .collect()
        };
        let drivers = of_kind(standin::Kind::Http);
        let pods = of_kind(standin::Kind::Pod);
        println!(
            "| {name} | {tasks} | {} | {} | {} / {} | {} / {} | {} | {} |",
            ms(wall),
            ms(wall / tasks as u32),
            ms(percentile(&drivers, 50)),
            ms(percentile(&drivers, 95)),
            ms(percentile(&pods, 50)),
            ms(percentile(&pods, 95)),
            ms(local_wall),
            ms(local_wall / tasks as u32),
        );
    }
    println!("\nPer task: the stand-in's wall time over the number of tasks. Driver request: one `kfpd driver` process (spawn, HTTP request, the server's decision). Pod: the init container's link and one `kfpd launcher` process (gRPC GetTask, the command, uploads, FinishAttempt). The loop's tasks run side by side.");
    Ok(())
}

async fn run_on_standin(
    server: &Server,
    kfpd: &Path,
    run_id: &str,
    spec: &Value,
    dir: &Path,
) -> Result<standin::Outcome> {
    let package = kfpd_ir::parse_spec_value(spec).map_err(|error| anyhow!("{error}"))?;
    let options = kfpd_argo::Options {
        run_id: Some(run_id.to_string()),
        parameters: Map::new(),
        server_url: server.http.clone(),
        server_grpc: server.grpc.clone(),
        ..kfpd_argo::Options::default()
    };
    let yaml = kfpd_argo::compile_yaml(&package, &options)?;
    let workflow: Value = serde_yaml::from_str(&yaml)?;
    let cluster = standin::Cluster {
        kfpd: kfpd.to_path_buf(),
        kfpd_image: options.kfpd_image.clone(),
        namespace: "kubeflow".into(),
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
        dir: dir.to_path_buf(),
        images: kfpd_runtime::Runtime::new(kfpd_runtime::Options::new(envs_dir())),
        image_environments: BTreeMap::new(),
    };
    Ok(standin::run(&workflow, Arc::new(cluster)).await)
}

/// Where `kfpd serve` keeps its Python environments by default, so the image's
/// stand-in is the one the local engine uses.
fn envs_dir() -> PathBuf {
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(cache).join("kfpd").join("envs");
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache").join("kfpd").join("envs")
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

fn echo_component() -> Value {
    json!({
        "executorLabel": "exec-echo",
        "inputDefinitions": {"parameters": {"item": {"parameterType": "NUMBER_INTEGER"}}}
    })
}

fn executors() -> Value {
    json!({"executors": {"exec-echo": {"container": {
        "image": "alpine",
        "command": ["sh", "-c", "echo \"$0\"", "{{$.inputs.parameters['item']}}"]
    }}}})
}

/// `n` tasks, each after the one before.
fn chain(n: usize) -> Value {
    let mut tasks = Map::new();
    for index in 0..n {
        let mut task = json!({
            "componentRef": {"name": "comp-echo"},
            "inputs": {"parameters": {"item": {"runtimeValue": {"constant": index}}}},
            "taskInfo": {"name": format!("echo-{index}")}
        });
        if index > 0 {
            task["dependentTasks"] = json!([format!("echo-{}", index - 1)]);
        }
        tasks.insert(format!("echo-{index}"), task);
    }
    json!({
        "pipelineInfo": {"name": "bench-standin-chain"},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.15.0",
        "components": {"comp-echo": echo_component()},
        "deploymentSpec": executors(),
        "root": {"dag": {"tasks": tasks}}
    })
}

/// A `ParallelFor` of `items` tasks.
fn parallel_for(items: usize) -> Value {
    let list: Vec<Value> = (0..items).map(|n| json!(n)).collect();
    json!({
        "pipelineInfo": {"name": "bench-standin-loop"},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.15.0",
        "components": {
            "comp-echo": echo_component(),
            "comp-for-loop-1": {
                "inputDefinitions": {"parameters": {"pipelinechannel--loop-item": {"parameterType": "NUMBER_INTEGER"}}},
                "dag": {"tasks": {"echo": {
                    "componentRef": {"name": "comp-echo"},
                    "inputs": {"parameters": {"item": {"componentInputParameter": "pipelinechannel--loop-item"}}},
                    "taskInfo": {"name": "echo"}
                }}}
            }
        },
        "deploymentSpec": executors(),
        "root": {"dag": {"tasks": {"for-loop-1": {
            "componentRef": {"name": "comp-for-loop-1"},
            "parameterIterator": {
                "itemInput": "pipelinechannel--loop-item",
                "items": {"raw": Value::Array(list).to_string()}
            },
            "taskInfo": {"name": "for-loop-1"}
        }}}}
    })
}

/// `kfpd serve` on free ports.
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
    fn start(binary: &Path, data: &Path, executor: &str) -> Result<Server> {
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
            ])
            .args(["--executor", executor, "--max-parallel-tasks", "16"])
            .arg("--data-dir")
            .arg(data)
            .env("KFPD_LOG", "warn")
            .env_remove("OBJECTSTORECONFIG_HOST")
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

    async fn create_run(&self, spec: &Value) -> Result<String> {
        let body = json!({"display_name": "bench", "pipeline_spec": spec});
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

    async fn state(&self, run_id: &str) -> Result<String> {
        let run: Value = self
            .client
            .get(format!("{}/apis/v2beta1/runs/{run_id}", self.http))
            .send()
            .await?
            .json()
            .await?;
        Ok(run["state"].as_str().unwrap_or_default().to_string())
    }
}
