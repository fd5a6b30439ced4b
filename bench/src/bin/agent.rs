//! `agent`: the persistence agent's start with many existing Workflows and its
//! report rate, against the scripted Kubernetes API server the tests use
//! (crates/kfpd/tests/kube, in this process) and a real `kfpd serve --executor
//! argo --agent off` on SQLite. Prints numbers; asserts nothing.
//!
//! 1. `--runs` runs are created through the API (each one's Workflow is submitted
//!    to the scripted server); `--workflows` minus that many recorded, finished
//!    Workflows of earlier runs are added, so the agent lists `--workflows` at start.
//! 2. `kfpd agent` starts: time until it has listed them all and watches, and its
//!    memory then.
//! 3. Every run's Workflow goes Running, then Succeeded (Argo-shaped statuses, one
//!    pod node each): the time until the server recorded all of them gives the
//!    reports per second; then the agent's memory again.
//!
//! `cargo run --release -p kfpd-bench --bin agent -- --help`

#[path = "../../../crates/kfpd/tests/kube/mod.rs"]
mod kube;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(name = "agent", about = "Measures the persistence agent")]
struct Args {
    /// The kfpd binary [default: $CARGO_TARGET_DIR/release/kfpd, else target/release/kfpd].
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
    /// Workflows in the cluster when the agent starts.
    #[arg(long, default_value_t = 20_000)]
    workflows: usize,
    /// Of those, Workflows of runs that have not ended (reported at start and
    /// then updated twice each).
    #[arg(long, default_value_t = 2_000)]
    runs: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs > args.workflows {
        bail!("--runs must not exceed --workflows");
    }
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
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(&args, &kfpd))
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn measure(args: &Args, kfpd: &PathBuf) -> Result<()> {
    let cluster = kube::Kube::start().await;
    let dir = tempfile::tempdir()?;
    let mut serve = Command::new(kfpd);
    serve
        .args(["serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "off"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("KFPD_EXECUTOR", "argo")
        .env("KFPD_AGENT", "off")
        .env("KFPD_AGENT_RECONCILE_GRACE", "1h")
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("KFPD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let spawned = Instant::now();
    let mut child = serve.spawn().context("start kfpd serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let server = Process(child);
    let base = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("kfpd listening on ").map(str::to_string))
        .ok_or_else(|| anyhow!("kfpd serve did not start"))?;
    let serve_start_seconds = spawned.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    let spec: Value = serde_yaml::from_str(&std::fs::read_to_string(kfpd_testdata::pipeline(
        "hello.yaml",
    ))?)?;

    eprintln!("creating {} runs on the argo executor", args.runs);
    let started = Instant::now();
    let mut run_ids = Vec::with_capacity(args.runs);
    let batches: Vec<Vec<usize>> = (0..args.runs)
        .collect::<Vec<_>>()
        .chunks(16)
        .map(<[usize]>::to_vec)
        .collect();
    for batch in batches {
        let created = futures::future::join_all(batch.iter().map(|index| {
            let http = http.clone();
            let body = json!({"display_name": format!("bench-{index}"), "pipeline_spec": spec});
            let url = format!("{base}/apis/v2beta1/runs");
            async move {
                let run: Value = http.post(url).json(&body).send().await?.json().await?;
                let id = run["run_id"].as_str().unwrap_or_default();
                if id.is_empty() || run["state"] == "FAILED" {
                    bail!("run {index} not created on the argo executor: {run}");
                }
                anyhow::Ok(id.to_string())
            }
        }))
        .await;
        for id in created {
            run_ids.push(id?);
        }
    }
    let create_seconds = started.elapsed().as_secs_f64();
    // One pass over the cluster's Workflows (a look-up per run copied them all).
    let by_run = cluster.names_by_run();
    let names: Vec<String> = run_ids
        .iter()
        .map(|id| {
            by_run
                .get(id)
                .cloned()
                .ok_or_else(|| anyhow!("run {id} has no workflow"))
        })
        .collect::<Result<_>>()?;

    let finished = kube::rfc3339(now());
    let old = args.workflows - args.runs;
    cluster.preload((0..old).map(|index| {
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {
                "name": format!("earlier-{index:06}"), "namespace": "kubeflow",
                "uid": format!("uid-{index}"),
                "labels": {"pipeline/runid": format!("earlier-run-{index}"),
                           "pipeline/persistedFinalState": "true"},
            },
            "spec": {"entrypoint": "root", "templates": [{"name": "root", "dag": {"tasks": []}}]},
            "status": {"phase": "Succeeded", "startedAt": finished, "finishedAt": finished,
                       "nodes": {format!("earlier-{index:06}"): {"id": format!("earlier-{index:06}"),
                                 "type": "DAG", "phase": "Succeeded"}}},
        })
    }));

    eprintln!(
        "starting kfpd agent with {} workflows listed",
        args.workflows
    );
    let lists_before = watch_requests(&cluster);
    let started = Instant::now();
    let agent = Process(
        Command::new(kfpd)
            .args(["agent", "--server", &base])
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("POD_NAMESPACE", "kubeflow")
            .env("KFPD_AGENT_RECONCILE_GRACE", "1h")
            .env("KFPD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start kfpd agent")?,
    );
    let pid = agent.0.id();
    while watch_requests(&cluster) == lists_before {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the agent did not watch within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start_seconds = started.elapsed().as_secs_f64();
    let (rss_listed, hwm_listed) = memory_kib(pid);

    let mut rates = Vec::new();
    for (phase, state) in [("Running", "RUNNING"), ("Succeeded", "SUCCEEDED")] {
        let started = Instant::now();
        for name in &names {
            cluster.set_status(name, status(name, phase));
        }
        loop {
            if count(&http, &base, state).await? >= args.runs {
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("not every run {state} within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rates.push((phase, args.runs as f64 / started.elapsed().as_secs_f64()));
    }
    let (rss_end, hwm_end) = memory_kib(pid);
    drop(agent);
    drop(server);

    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| kfpd serve --executor argo, spawn to listening (empty SQLite) | {:.2} s |",
        serve_start_seconds
    );
    println!(
        "| CreateRun on the argo executor (compile + submit), 16 clients | {:.0} runs/s |",
        args.runs as f64 / create_seconds
    );
    println!(
        "| agent start to watching, {} Workflows listed ({} of unfinished runs reported) | {:.2} s |",
        args.workflows, args.runs, start_seconds
    );
    println!(
        "| agent memory after the list (RSS / peak) | {:.1} / {:.1} MiB |",
        rss_listed as f64 / 1024.0,
        hwm_listed as f64 / 1024.0
    );
    for (phase, rate) in rates {
        println!("| Workflow updates reported and recorded, to {phase} | {rate:.0} /s |");
    }
    println!(
        "| agent memory at the end (RSS / peak) | {:.1} / {:.1} MiB |",
        rss_end as f64 / 1024.0,
        hwm_end as f64 / 1024.0
    );
    Ok(())
}

fn watch_requests(cluster: &kube::Kube) -> usize {
    cluster
        .requests()
        .iter()
        .filter(|r| r.query.get("watch").map(String::as_str) == Some("true"))
        .count()
}

fn status(name: &str, phase: &str) -> Value {
    let now = kube::rfc3339(now());
    let node_phase = if phase == "Running" {
        "Running"
    } else {
        "Succeeded"
    };
    let mut status = json!({
        "phase": phase, "startedAt": now, "progress": "1/1",
        "nodes": {
            name: {"id": name, "name": name, "type": "DAG", "templateName": "root",
                   "phase": node_phase, "children": [format!("{name}-1")]},
            format!("{name}-1"): {"id": format!("{name}-1"), "name": format!("{name}.echo"),
                   "type": "Pod", "templateName": "exec-echo", "phase": node_phase,
                   "inputs": {"parameters": [{"name": "task-path", "value": "root/echo"}]}},
        },
    });
    if phase != "Running" {
        status["finishedAt"] = json!(now);
    }
    status
}

async fn count(http: &reqwest::Client, base: &str, state: &str) -> Result<usize> {
    let filter =
        json!({"predicates": [{"key": "state", "operation": "EQUALS", "string_value": state}]});
    let page: Value = http
        .get(format!("{base}/apis/v2beta1/runs"))
        .query(&[
            ("filter", filter.to_string()),
            ("page_size", "1".to_string()),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(page["total_size"].as_u64().unwrap_or(0) as usize)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
