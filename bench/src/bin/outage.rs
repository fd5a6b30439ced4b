//! `outage`: the database stopped for 30 s (`--seconds`) under the real `kfpd serve
//! --executor local` while runs execute and clients call the API; a PostgreSQL and a
//! MariaDB server this program starts itself (own data directory and port, see
//! crates/kfpd/tests/dbserver). Prints what the clients got during the outage, how
//! long kfpd took to answer again and to finish every run, and whether anything was
//! lost; asserts nothing. The test suite's version (crates/kfpd/tests/outage.rs)
//! stops the database for 6 s and asserts the outcomes.
//!
//! `cargo run --release -p kfpd-bench --bin outage -- --help`

#[path = "../../../crates/kfpd/tests/dbserver/mod.rs"]
mod dbserver;
// Shared with the main benchmark, which uses the parts these programs do not.
#[allow(dead_code)]
#[path = "../server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../stats.rs"]
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use dbserver::{DbServer, Kind};
use serde_json::{json, Value};
use stats::{ms, Samples};

#[derive(Parser)]
struct Args {
    /// How long the database stays down.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Clients calling the API during the outage.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Runs in flight when the database stops.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
}

fn sleeper(seconds: u32) -> Result<Value> {
    let path = kfpd_testdata::pipeline("hello.yaml");
    let yaml =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let yaml = yaml
        .replace("- echo\n", "- sleep\n")
        .replace("- hello world", &format!("- '{seconds}'"))
        .replace("enableCache: true", "enableCache: false");
    Ok(kfpd_ir::read_package("sleep.yaml", yaml.as_bytes())?.api_pipeline_spec())
}

#[derive(Default)]
struct During {
    statuses: BTreeMap<String, usize>,
    latency_503: Samples,
    first_503: String,
}

async fn states(
    client: &reqwest::Client,
    base: &str,
    ids: &[String],
) -> Option<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for id in ids {
        let response = client
            .get(format!("{base}/apis/v2beta1/runs/{id}"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let run: Value = response.json().await.ok()?;
        *counts
            .entry(run["state"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    Some(counts)
}

async fn measure(kind: Kind, args: &Args) -> Result<()> {
    let Some(mut database) = DbServer::start(kind) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let launch = server::Launch {
        bin: args.kfpd_bin.clone().unwrap_or_else(server::default_bin),
        args: [
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "off",
            "--executor",
            "local",
            "--max-parallel-tasks",
            "6",
            "--data-dir",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .chain([
            dir.path().display().to_string(),
            "--database-url".into(),
            database.url("kfpd_outage"),
        ])
        .collect(),
        log: dir.path().join("kfpd.log"),
    };
    let kfpd = launch.start(&client).await?;
    let base = kfpd.base.clone();
    let spec = sleeper(5)?;
    let mut ids = Vec::new();
    for index in 0..args.runs {
        let run: Value = client
            .post(format!("{base}/apis/v2beta1/runs"))
            .json(&json!({"display_name": format!("outage {index}"), "pipeline_spec": spec}))
            .send()
            .await?
            .json()
            .await?;
        ids.push(run["run_id"].as_str().unwrap_or_default().to_string());
    }
    loop {
        let counts = states(&client, &base, &ids).await.unwrap_or_default();
        if counts.get("RUNNING").copied().unwrap_or(0) >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    database.stop();
    let down = Instant::now();
    let until = down + Duration::from_secs(args.seconds);
    let during = Arc::new(Mutex::new(During::default()));
    let workers: Vec<_> = (0..args.clients)
        .map(|index| {
            let client = client.clone();
            let base = base.clone();
            let during = Arc::clone(&during);
            let spec = spec.clone();
            let some_run = ids[index % ids.len()].clone();
            tokio::spawn(async move {
                let mut turn = 0usize;
                while Instant::now() < until {
                    turn += 1;
                    let request = match turn % 3 {
                        0 => client.get(format!("{base}/apis/v2beta1/runs")),
                        1 => client.get(format!("{base}/apis/v2beta1/runs/{some_run}")),
                        _ => client
                            .post(format!("{base}/apis/v2beta1/runs"))
                            .json(&json!({"display_name": "during", "pipeline_spec": spec})),
                    };
                    let started = Instant::now();
                    let result = request.send().await;
                    let elapsed = started.elapsed();
                    let (answer, body) = match result {
                        Err(error) if error.is_timeout() => ("timeout".to_string(), String::new()),
                        Err(_) => ("transport error".to_string(), String::new()),
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body = response.text().await.unwrap_or_default();
                            (status.to_string(), body)
                        }
                    };
                    let Ok(mut during) = during.lock() else {
                        return;
                    };
                    *during.statuses.entry(answer.clone()).or_insert(0) += 1;
                    if answer == "503" {
                        during.latency_503.push(elapsed);
                        if during.first_503.is_empty() {
                            during.first_503 = body;
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let outage = down.elapsed();
    database.resume();
    let back = Instant::now();
    let mut first_ok = None;
    let mut all_done = None;
    let mut last_counts = BTreeMap::new();
    while back.elapsed() < Duration::from_secs(300) {
        let answered = client
            .get(format!("{base}/apis/v2beta1/runs"))
            .send()
            .await
            .map(|response| response.status().is_success())
            .unwrap_or(false);
        if answered && first_ok.is_none() {
            first_ok = Some(back.elapsed());
        }
        if let Some(counts) = states(&client, &base, &ids).await {
            let done = counts.get("SUCCEEDED").copied().unwrap_or(0) == ids.len();
            last_counts = counts;
            if done {
                all_done = Some(back.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = client
        .get(format!("{base}/apis/v2beta1/runs/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0);
    let alive = std::path::Path::new(&format!("/proc/{}", kfpd.pid)).exists();
    let log = std::fs::read_to_string(dir.path().join("kfpd.log")).unwrap_or_default();
    kfpd.stop().await?;

    let during = during.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let name = match kind {
        Kind::Postgres => "PostgreSQL",
        Kind::Mariadb => "MariaDB",
    };
    println!(
        "### {name}, stopped for {:.1} s, {} clients\n",
        outage.as_secs_f64(),
        args.clients
    );
    println!("| | value |\n|---|---:|");
    println!(
        "| calls during the outage, by answer | {:?} |",
        during.statuses
    );
    println!(
        "| the first 503's body | `{}` |",
        during.first_503.replace('|', "\\|")
    );
    if let Some(summary) = during.latency_503.summary() {
        println!(
            "| 503 answer time p50 / p99 / max, ms | {} / {} / {} |",
            ms(summary.p50),
            ms(summary.p99),
            ms(summary.max)
        );
    }
    println!(
        "| database back → first 200 from GET /runs | {} |",
        first_ok.map_or("never".to_string(), |at| format!("{} ms", ms(at)))
    );
    println!(
        "| database back → all {} runs SUCCEEDED | {} ({last_counts:?}) |",
        ids.len(),
        all_done.map_or("not within 300 s".to_string(), |at| format!(
            "{:.1} s",
            at.as_secs_f64()
        ))
    );
    println!("| an unknown run after recovery answers | {body} |");
    println!("| kfpd still running, without a restart | {alive} |");
    println!(
        "| panics in kfpd's log | {} |",
        log.matches("panicked").count()
    );
    println!();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    measure(Kind::Postgres, &args).await?;
    measure(Kind::Mariadb, &args).await?;
    Ok(())
}
