//! `load`: many concurrent clients with mixed reads and writes against the real
//! `kfpd serve --executor local` while the runs they create execute. Prints errors,
//! p50/p99 per route, and kfpd's CPU and memory; asserts nothing.
//!
//! Each client loops until the time is up, picking an operation at random: list
//! runs (30%), get a run (20%), list experiments (10%), list pipelines (5%), get the
//! pipeline (5%), list a run's artifacts (5%), healthz (5%), create a run of a
//! one-task pipeline (15%, so runs execute throughout), create an experiment (5%).
//! An error is a transport failure or any status other than 200.
//!
//! `cargo run --release -p kfpd-bench --bin load -- --help`

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

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::Rng;
use serde_json::{json, Value};

use stats::{ms, Samples};

#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// How long they run, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Database URL of a PostgreSQL or MySQL server (a database of its own is made
    /// there, named `kfpd_bench_load_<random>`); SQLite in a temporary directory if
    /// not given.
    #[arg(long)]
    database_server: Option<String>,
    /// Task processes at once (`--max-parallel-tasks`).
    #[arg(long, default_value_t = 8)]
    max_parallel_tasks: usize,
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
}

/// One finished call: route, latency, and whether it failed (with why).
type Outcome = (&'static str, Duration, Option<String>);

#[derive(Default)]
struct Tally {
    latency: BTreeMap<&'static str, Samples>,
    errors: BTreeMap<&'static str, usize>,
    first_errors: Vec<String>,
}

/// A one-task pipeline whose task prints a line: runs that finish in a moment.
fn echo_spec() -> Result<Value> {
    let path = kfpd_testdata::pipeline("hello.yaml");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let yaml = String::from_utf8_lossy(&bytes).replace("enableCache: true", "enableCache: false");
    Ok(kfpd_ir::read_package("hello.yaml", yaml.as_bytes())?.api_pipeline_spec())
}

/// `/proc/<pid>/stat` user + system time in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

struct Shared {
    client: reqwest::Client,
    base: String,
    spec: Value,
    pipeline_id: String,
    experiment_id: String,
    /// Runs created so far, for the reads that need one.
    runs: Mutex<Vec<String>>,
}

impl Shared {
    fn url(&self, path: &str) -> String {
        format!("{}/apis/v2beta1{path}", self.base)
    }

    fn some_run(&self) -> Option<String> {
        let runs = self.runs.lock().ok()?;
        if runs.is_empty() {
            return None;
        }
        let index = rand::thread_rng().gen_range(0..runs.len());
        Some(runs[index].clone())
    }

    async fn call(
        &self,
        route: &'static str,
        request: reqwest::RequestBuilder,
    ) -> (Outcome, Option<Value>) {
        let started = Instant::now();
        let result = request.send().await;
        let elapsed_then = |error: Option<String>| (route, started.elapsed(), error);
        match result {
            Err(error) => (elapsed_then(Some(format!("{route}: {error}"))), None),
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let outcome = elapsed_then(
                    (status != reqwest::StatusCode::OK)
                        .then(|| format!("{route}: {status} {body}")),
                );
                (outcome, serde_json::from_str(&body).ok())
            }
        }
    }

    async fn one(&self, client_index: usize) -> Outcome {
        let pick = rand::thread_rng().gen_range(0..100);
        let get = |path: String| self.client.get(self.url(&path));
        match pick {
            0..30 => {
                self.call("GET /runs", get("/runs?page_size=20".into()))
                    .await
                    .0
            }
            30..50 => match self.some_run() {
                Some(id) => {
                    self.call("GET /runs/{id}", get(format!("/runs/{id}")))
                        .await
                        .0
                }
                None => {
                    self.call("GET /runs", get("/runs?page_size=20".into()))
                        .await
                        .0
                }
            },
            50..60 => {
                self.call("GET /experiments", get("/experiments".into()))
                    .await
                    .0
            }
            60..65 => {
                self.call("GET /pipelines", get("/pipelines".into()))
                    .await
                    .0
            }
            65..70 => {
                let path = format!("/pipelines/{}", self.pipeline_id);
                self.call("GET /pipelines/{id}", get(path)).await.0
            }
            70..75 => match self.some_run() {
                Some(id) => {
                    self.call(
                        "GET /artifacts?run_id",
                        get(format!("/artifacts?run_id={id}")),
                    )
                    .await
                    .0
                }
                None => {
                    self.call("GET /experiments", get("/experiments".into()))
                        .await
                        .0
                }
            },
            75..80 => self.call("GET /healthz", get("/healthz".into())).await.0,
            80..95 => {
                let body = json!({
                    "display_name": format!("load {client_index}"),
                    "experiment_id": self.experiment_id,
                    "pipeline_spec": self.spec,
                });
                let request = self.client.post(self.url("/runs")).json(&body);
                let (outcome, created) = self.call("POST /runs", request).await;
                if let Some(id) = created.as_ref().and_then(|run| run["run_id"].as_str()) {
                    if let Ok(mut runs) = self.runs.lock() {
                        runs.push(id.to_string());
                    }
                }
                outcome
            }
            _ => {
                let body = json!({"display_name": format!("load-{}", uuid::Uuid::new_v4())});
                let request = self.client.post(self.url("/experiments")).json(&body);
                self.call("POST /experiments", request).await.0
            }
        }
    }
}

async fn upload(client: &reqwest::Client, base: &str) -> Result<String> {
    let path = kfpd_testdata::pipeline("hello.yaml");
    let bytes = std::fs::read(&path)?;
    let part = reqwest::multipart::Part::bytes(bytes).file_name("hello.yaml");
    let form = reqwest::multipart::Form::new().part("uploadfile", part);
    let response = client
        .post(format!("{base}/apis/v2beta1/pipelines/upload?name=load"))
        .multipart(form)
        .send()
        .await?;
    let body: Value = response.json().await?;
    match body["pipeline_id"].as_str() {
        Some(id) => Ok(id.to_string()),
        None => bail!("upload failed: {body}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut server_args = vec![
        "--http-addr".to_string(),
        "127.0.0.1:0".to_string(),
        "--grpc-addr".to_string(),
        "off".to_string(),
        "--executor".to_string(),
        "local".to_string(),
        "--max-parallel-tasks".to_string(),
        args.max_parallel_tasks.to_string(),
        "--data-dir".to_string(),
        dir.path().display().to_string(),
    ];
    let database = args.database_server.as_ref().map(|server| {
        let name = format!(
            "kfpd_bench_load_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        format!("{}/{name}", server.trim_end_matches('/'))
    });
    if let Some(url) = &database {
        server_args.extend(["--database-url".to_string(), url.clone()]);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let launch = server::Launch {
        bin: args.kfpd_bin.clone().unwrap_or_else(server::default_bin),
        args: server_args,
        log: dir.path().join("kfpd.log"),
    };
    eprintln!("starting {}", launch.bin.display());
    let kfpd = launch.start(&client).await?;
    let pipeline_id = upload(&client, &kfpd.base).await?;
    let experiment: Value = client
        .post(format!("{}/apis/v2beta1/experiments", kfpd.base))
        .json(&json!({"display_name": "load"}))
        .send()
        .await?
        .json()
        .await?;
    let shared = Arc::new(Shared {
        client: client.clone(),
        base: kfpd.base.clone(),
        spec: echo_spec()?,
        pipeline_id,
        experiment_id: experiment["experiment_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        runs: Mutex::new(Vec::new()),
    });

    let ticks_per_second = 100.0;
    let cpu_before = cpu_ticks(kfpd.pid).unwrap_or(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let peak_rss = Arc::new(Mutex::new(0u64));
    let sampler = {
        let peak = Arc::clone(&peak_rss);
        let pid = kfpd.pid;
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss = status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|rest| {
                        rest.trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                    .unwrap_or(0);
                if let Ok(mut peak) = peak.lock() {
                    *peak = (*peak).max(rss);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let workers: Vec<_> = (0..args.clients)
        .map(|index| {
            let shared = Arc::clone(&shared);
            let tally = Arc::clone(&tally);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let (route, latency, error) = shared.one(index).await;
                    let Ok(mut tally) = tally.lock() else { return };
                    tally.latency.entry(route).or_default().push(latency);
                    if let Some(error) = error {
                        *tally.errors.entry(route).or_insert(0) += 1;
                        if tally.first_errors.len() < 5 {
                            tally.first_errors.push(error);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed();
    let _ = sampler.await;
    let cpu_after = cpu_ticks(kfpd.pid).unwrap_or(0);
    let (rss_end, hwm) = kfpd.memory_kib().unwrap_or((0, 0));

    let created: Vec<String> = shared
        .runs
        .lock()
        .map(|runs| runs.clone())
        .unwrap_or_default();
    let mut finished = BTreeMap::new();
    let settle = Instant::now();
    loop {
        finished.clear();
        for id in &created {
            let run: Value = client
                .get(format!("{}/apis/v2beta1/runs/{id}", kfpd.base))
                .send()
                .await?
                .json()
                .await?;
            *finished
                .entry(run["state"].as_str().unwrap_or("?").to_string())
                .or_insert(0usize) += 1;
        }
        let done = finished.get("SUCCEEDED").copied().unwrap_or(0);
        if done == created.len() || settle.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let settled_in = settle.elapsed();
    kfpd.stop().await?;
    if let Some(url) = &database {
        kfpd_store::sql::drop_database(url).await?;
    }

    let tally = tally
        .lock()
        .map_err(|_| anyhow::anyhow!("tally poisoned"))?;
    let backend = match &args.database_server {
        None => "SQLite".to_string(),
        Some(server) if server.starts_with("postgres") => "PostgreSQL".to_string(),
        Some(_) => "MySQL/MariaDB".to_string(),
    };
    let total: usize = tally.latency.values().map(Samples::len).sum();
    let errors: usize = tally.errors.values().sum();
    println!(
        "### {} clients for {:.0} s, {backend}, `--max-parallel-tasks {}`\n",
        args.clients,
        elapsed.as_secs_f64(),
        args.max_parallel_tasks
    );
    println!("| route | calls | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (route, samples) in &tally.latency {
        if let Some(summary) = samples.summary() {
            println!(
                "| {route} | {} | {} | {} | {} | {} |",
                summary.count,
                tally.errors.get(route).copied().unwrap_or(0),
                ms(summary.p50),
                ms(summary.p99),
                ms(summary.max)
            );
        }
    }
    println!(
        "| all | {total} | {errors} | | | |\n\n| | value |\n|---|---:|\n| calls per second | {:.0} |",
        total as f64 / elapsed.as_secs_f64()
    );
    let cpu_seconds = cpu_after.saturating_sub(cpu_before) as f64 / ticks_per_second;
    println!(
        "| kfpd CPU (its own process, not the tasks'), average of one core | {:.0}% |",
        100.0 * cpu_seconds / elapsed.as_secs_f64()
    );
    let peak = peak_rss.lock().map(|peak| *peak).unwrap_or(0);
    println!(
        "| kfpd resident memory: peak sampled / at the end / high-water mark | {:.1} / {:.1} / {:.1} MiB |",
        peak as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!("| runs created during the load | {} |", created.len());
    println!(
        "| of them SUCCEEDED at most {:.0} s after the load ended (the rest still queued for a task slot) | {} ({finished:?}) |",
        settled_in.as_secs_f64(),
        finished.get("SUCCEEDED").copied().unwrap_or(0)
    );
    for error in &tally.first_errors {
        eprintln!("error: {error}");
    }
    Ok(())
}
