//! `engine`: measures kfpd's local execution engine through the real `kfpd serve`
//! over REST. Prints numbers; asserts nothing.
//!
//! - overhead: chains of 1 and N `sh -c true` container tasks; the time per task the
//!   engine adds beyond the process itself: the chain's slope minus the process time
//!   the runtime measured (its `task process ended` debug lines carry it), with a
//!   bare spawn from this small process for comparison, and kfpd's CPU per task;
//! - chain: a chain of 100 such tasks end to end;
//! - python: a chain of 10 lightweight Python components compiled with the SDK's
//!   defaults (each task begins with `pip install kfp==…`), on kfpd and under the
//!   SDK's `kfp.local.SubprocessRunner`, and what checking a remembered install
//!   costs each such task;
//! - python-bare: the same chain compiled with `install_kfp_package=False` (no pip
//!   preamble; kfp comes from the virtualenv kfpd runs from), on kfpd and under
//!   `kfp.local.SubprocessRunner(use_venv=False)`, side by side;
//! - memory: RSS of `kfpd serve` with 500 `sleep` tasks running at once;
//! - ceiling (opt-in): how many of 600 parallel tasks actually run at once.
//!
//! `cargo run --release -p kfpd-bench --bin engine -- --help`

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Overhead,
    Chain,
    Python,
    PythonBare,
    Memory,
    Ceiling,
}

#[derive(Parser, Debug)]
#[command(
    name = "engine",
    about = "Measures kfpd's local execution engine through kfpd serve"
)]
struct Args {
    /// The kfpd binary [default: $CARGO_TARGET_DIR/release/kfpd, else target/release/kfpd].
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
    /// Python with kfp 2.15.0 for compiling and for kfp.local
    /// [default: $KFPD_E2E_VENV/bin/python, else ~/.cache/kfpd-e2e-venv/bin/python].
    #[arg(long)]
    python: Option<PathBuf>,
    /// What to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "overhead,chain,python,python-bare,memory"
    )]
    only: Vec<Scenario>,
    /// Tasks in the long shell chain.
    #[arg(long, default_value_t = 100)]
    chain: usize,
    /// Measured runs of each shell chain length.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Bare `sh -c true` spawns timed for the process cost.
    #[arg(long, default_value_t = 200)]
    spawn_samples: usize,
    /// Tasks in the Python chain.
    #[arg(long, default_value_t = 10)]
    python_chain: usize,
    /// Also run the SDK's SubprocessRunner with use_venv=True (its default; a new venv
    /// and a pip install per task, minutes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sdk_venv: bool,
    /// Tasks running at once for the memory measurement.
    #[arg(long, default_value_t = 500)]
    parallel: usize,
    /// Tasks for the concurrency ceiling measurement.
    #[arg(long, default_value_t = 600)]
    ceiling_tasks: usize,
    /// How long each parallel task sleeps.
    #[arg(long, default_value_t = 20)]
    sleep_seconds: u64,
    /// `--max-parallel-tasks` of the server for the memory and ceiling measurements.
    #[arg(long, default_value_t = 600)]
    max_parallel_tasks: usize,
    /// Keep the servers' data directories (printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = kfpd_bin(&args)?;
    let scratch = tempfile::Builder::new()
        .prefix("kfpd-bench-engine-")
        .tempdir()?;
    let scratch_path = scratch.path().to_path_buf();
    if args.keep {
        let _ = scratch.keep();
        println!("scratch directory: {}", scratch_path.display());
    }
    println!("kfpd: {}", bin.display());
    println!("machine: {}", machine());
    println!();

    let mut report = Report::default();
    let wants = |scenario| args.only.contains(&scenario);
    if wants(Scenario::Overhead) || wants(Scenario::Chain) {
        shell_chains(&args, &bin, &scratch_path, &mut report).await?;
    }
    if wants(Scenario::Python) {
        python_chain(&args, &bin, &scratch_path, &mut report).await?;
    }
    if wants(Scenario::PythonBare) {
        python_bare_chain(&args, &bin, &scratch_path, &mut report).await?;
    }
    if wants(Scenario::Memory) {
        parallel_sleeps(
            &args,
            &bin,
            &scratch_path,
            args.parallel,
            "memory",
            &mut report,
        )
        .await?;
    }
    if wants(Scenario::Ceiling) {
        parallel_sleeps(
            &args,
            &bin,
            &scratch_path,
            args.ceiling_tasks,
            "ceiling",
            &mut report,
        )
        .await?;
    }
    println!();
    report.print();
    Ok(())
}

fn kfpd_bin(args: &Args) -> Result<PathBuf> {
    let bin = match &args.kfpd_bin {
        Some(bin) => bin.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("release")
            .join("kfpd"),
    };
    if !bin.is_file() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p kfpd` or pass --kfpd-bin",
            bin.display()
        );
    }
    Ok(bin)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} cpus ({model}), Linux {}", kernel.trim())
}

// --------------------------------------------------------------------------- report

#[derive(Default)]
struct Report {
    rows: Vec<(String, String, String)>,
}

impl Report {
    fn add(
        &mut self,
        what: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
    ) {
        let (what, value, target) = (what.into(), value.into(), target.into());
        println!("  {what}: {value}");
        self.rows.push((what, value, target));
    }

    fn print(&self) {
        println!("| measurement | value | target |");
        println!("|---|---|---|");
        for (what, value, target) in &self.rows {
            println!("| {what} | {value} | {target} |");
        }
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

// --------------------------------------------------------------------------- server

/// A `kfpd serve` with the local executor on a free port, its own data directory and
/// its own environments directory (so the user's cache is neither used nor touched).
struct Server {
    child: Child,
    pid: u32,
    api: Api,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, dir: &Path, log_filter: &str, extra: &[String]) -> Result<Server> {
        Server::start_with_path(bin, dir, log_filter, extra, None)
    }

    /// [`Server::start`] with `path` first on kfpd's `PATH` (its `python3` is the host
    /// interpreter task environments are made from).
    fn start_with_path(
        bin: &Path,
        dir: &Path,
        log_filter: &str,
        extra: &[String],
        path: Option<&Path>,
    ) -> Result<Server> {
        fs::create_dir_all(dir)?;
        let log = dir.join("kfpd.log");
        let stderr = fs::File::create(&log)?;
        let mut command = Command::new(bin);
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("KFPD_")
                || key_text.starts_with("DBCONFIG_")
                || key_text.starts_with("OBJECTSTORECONFIG_")
            {
                command.env_remove(&key);
            }
        }
        command
            .arg("serve")
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "off",
                "--data-dir",
            ])
            .arg(dir.join("data"))
            .args(extra)
            .env("KFPD_EXECUTOR", "local")
            .env("KFPD_LOG", log_filter)
            .env("KFPD_ENVS_DIR", dir.join("envs"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if let Some(first) = path {
            let inherited = std::env::var_os("PATH").unwrap_or_default();
            let joined = std::env::join_paths(
                std::iter::once(first.to_path_buf()).chain(std::env::split_paths(&inherited)),
            )?;
            command.env("PATH", joined);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let Some(line) = lines.next() else {
                let tail = fs::read_to_string(&log).unwrap_or_default();
                bail!("kfpd exited before listening:\n{tail}");
            };
            if let Some(address) = line?.trim().strip_prefix("kfpd listening on ") {
                break address.to_string();
            }
        };
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Ok(Server {
            child,
            pid,
            api: Api::new(base),
            log,
        })
    }

    fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("kfpd did not stop within 30 s of SIGTERM")
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

/// A run that ended, with its time as the client saw it (create to observed end).
struct Finished {
    id: String,
    elapsed: Duration,
}

impl Api {
    fn new(base: String) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Api { http, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/apis/v2beta1/{path}", self.base)
    }

    async fn create_run(&self, name: &str, spec: &Value, parameters: Value) -> Result<String> {
        let body = json!({
            "display_name": name,
            "pipeline_spec": spec,
            "runtime_config": {"parameters": parameters},
        });
        let response = self.http.post(self.url("runs")).json(&body).send().await?;
        let status = response.status();
        let run: Value = response.json().await?;
        if !status.is_success() {
            bail!("create run {name}: HTTP {status}: {run}");
        }
        run["run_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("create run {name}: no run_id in {run}"))
    }

    /// The run's state through ListRuns filtered by name: cheap for the server,
    /// unlike GetRun, which also assembles every task's details.
    async fn state_by_name(&self, name: &str) -> Result<(String, Value)> {
        let filter = json!({"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": name}]});
        let response = self
            .http
            .get(self.url("runs"))
            .query(&[("filter", filter.to_string()), ("page_size", "1".into())])
            .send()
            .await?;
        let body: Value = response.json().await?;
        let run = body["runs"][0].clone();
        Ok((run["state"].as_str().unwrap_or_default().to_string(), run))
    }

    async fn get_run(&self, id: &str) -> Result<Value> {
        Ok(self
            .http
            .get(self.url(&format!("runs/{id}")))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Creates a run and polls (every `poll`) until it ends; fails unless it succeeded.
    async fn run(
        &self,
        name: &str,
        spec: &Value,
        parameters: Value,
        poll: Duration,
        limit: Duration,
    ) -> Result<Finished> {
        let started = Instant::now();
        let id = self.create_run(name, spec, parameters).await?;
        loop {
            let (state, run) = self.state_by_name(name).await?;
            match state.as_str() {
                "SUCCEEDED" => {
                    return Ok(Finished {
                        id,
                        elapsed: started.elapsed(),
                    })
                }
                "FAILED" | "CANCELED" | "SKIPPED" => {
                    bail!("run {name} ended {state}: {}", run["error"])
                }
                _ => {}
            }
            if started.elapsed() > limit {
                bail!("run {name} still {state} after {limit:?}");
            }
            tokio::time::sleep(poll).await;
        }
    }
}

// --------------------------------------------------------------------------- pipelines

fn container(command: &[&str]) -> Value {
    json!({"container": {"image": "alpine", "command": command}})
}

fn spec_with(name: &str, tasks: serde_json::Map<String, Value>, executor: Value) -> Value {
    json!({
        "pipelineInfo": {"name": name},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.15.0",
        "components": {"comp-step": {"executorLabel": "exec-step"}},
        "deploymentSpec": {"executors": {"exec-step": executor}},
        "root": {"dag": {"tasks": tasks}},
    })
}

/// `n` tasks, each depending on the one before.
fn chain_spec(n: usize, command: &[&str]) -> Value {
    let mut tasks = serde_json::Map::new();
    for i in 0..n {
        let mut task = json!({"componentRef": {"name": "comp-step"}, "taskInfo": {"name": format!("step-{i}")}});
        if i > 0 {
            task["dependentTasks"] = json!([format!("step-{}", i - 1)]);
        }
        tasks.insert(format!("step-{i}"), task);
    }
    spec_with("bench-chain", tasks, container(command))
}

/// `n` independent tasks in one DAG.
fn fanout_spec(n: usize, command: &[&str]) -> Value {
    let mut tasks = serde_json::Map::new();
    for i in 0..n {
        tasks.insert(
            format!("task-{i}"),
            json!({"componentRef": {"name": "comp-step"}, "taskInfo": {"name": format!("task-{i}")}}),
        );
    }
    spec_with("bench-fanout", tasks, container(command))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

// --------------------------------------------------------------------------- (a), (b)

/// Time of day in seconds from a log line's leading RFC 3339 timestamp.
fn log_seconds(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// What the server's log says about one run: its time from claim to end, and the
/// time its task processes took as the runtime measured them (`Exit::duration`,
/// spawn to exit).
struct ServerTimes {
    run: f64,
    processes: f64,
    tasks: usize,
}

/// Seconds of a `Duration` printed with `{:?}` (`1.2ms`, `950.1µs`, `2.5s`).
fn debug_duration(text: &str) -> Option<f64> {
    let digits = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let value: f64 = text[..digits].parse().ok()?;
    let scale = match text[digits..].trim_end_matches([' ', '}', ',']) {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" | "us" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(value * scale)
}

fn server_times(log: &str, run_id: &str) -> Option<ServerTimes> {
    let started_marker = format!("run started run={run_id}");
    let finished_marker = format!("run={run_id}");
    let mut run_start = None;
    let mut run_end = None;
    let mut processes = 0.0;
    let mut tasks = 0;
    let mut day_offset = 0.0;
    let mut last = 0.0;
    for line in log.lines() {
        let Some(mut at) = log_seconds(line) else {
            continue;
        };
        at += day_offset;
        if at < last - 43_200.0 {
            day_offset += 86_400.0;
            at += 86_400.0;
        }
        last = at;
        if run_start.is_none() {
            if line.contains(&started_marker) {
                run_start = Some(at);
            }
            continue;
        }
        if line.contains("task process ended") {
            let duration = line
                .split("duration: ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(debug_duration);
            if let Some(duration) = duration {
                processes += duration;
                tasks += 1;
            }
        } else if line.contains("run finished") && line.contains(&finished_marker) {
            run_end = Some(at);
            break;
        }
    }
    Some(ServerTimes {
        run: run_end? - run_start?,
        processes,
        tasks,
    })
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux for every architecture this runs on.
    Some(ticks / 100.0)
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Median wall time of a bare `sh -c true` with its output piped, as the runtime
/// starts task processes.
fn bare_spawn(samples: usize) -> Result<f64> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        let output = Command::new("sh")
            .args(["-c", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        times.push(started.elapsed().as_secs_f64());
        if !output.status.success() {
            bail!("sh -c true failed");
        }
    }
    Ok(median(&times))
}

async fn shell_chains(args: &Args, bin: &Path, scratch: &Path, report: &mut Report) -> Result<()> {
    let n = args.chain.max(2);
    println!(
        "shell chains: 1 and {n} `sh -c true` tasks, {} runs each (load average {})",
        args.repeats,
        load_average()
    );
    let filter = "warn,kfpd_engine::executor=info,kfpd_runtime::process=debug";
    let server = Server::start(bin, &scratch.join("chains"), filter, &[])?;
    let result = measure_chains(args, &server, n, report).await;
    server.stop()?;
    result
}

async fn measure_chains(args: &Args, server: &Server, n: usize, report: &mut Report) -> Result<()> {
    let short = chain_spec(1, &["sh", "-c", "true"]);
    let long = chain_spec(n, &["sh", "-c", "true"]);
    let poll = Duration::from_millis(5);
    let limit = Duration::from_secs(600);
    // Warm-up: the environment of the image is made once, the database pages are hot.
    server
        .api
        .run(
            &unique("warmup"),
            &chain_spec(3, &["sh", "-c", "true"]),
            json!({}),
            poll,
            limit,
        )
        .await?;

    let mut client_short = Vec::new();
    let mut client_long = Vec::new();
    let mut runs_short = Vec::new();
    let mut runs_long = Vec::new();
    let mut cpu_per_task = Vec::new();
    for _ in 0..args.repeats.max(1) {
        let one = server
            .api
            .run(&unique("chain-1"), &short, json!({}), poll, limit)
            .await?;
        let cpu_before = cpu_seconds(server.pid);
        let many = server
            .api
            .run(
                &unique(&format!("chain-{n}")),
                &long,
                json!({}),
                poll,
                limit,
            )
            .await?;
        if let (Some(before), Some(after)) = (cpu_before, cpu_seconds(server.pid)) {
            cpu_per_task.push((after - before) / n as f64);
        }
        client_short.push(one.elapsed.as_secs_f64());
        client_long.push(many.elapsed.as_secs_f64());
        runs_short.push(one.id);
        runs_long.push(many.id);
    }
    let log = server.log_text();
    let times = |ids: &[String]| -> Vec<ServerTimes> {
        ids.iter().filter_map(|id| server_times(&log, id)).collect()
    };
    let server_short = times(&runs_short);
    let server_long = times(&runs_long);
    let spawn = bare_spawn(args.spawn_samples)?;
    println!("  load average after: {}", load_average());

    // Per task: the slope between the short and the long chain, per repeat.
    let per = |long: f64, short: f64| (long - short) / (n - 1) as f64;
    let client_slopes: Vec<f64> = client_long
        .iter()
        .zip(&client_short)
        .map(|(l, s)| per(*l, *s))
        .collect();
    let complete = server_long.len() == runs_long.len()
        && server_short.len() == runs_short.len()
        && server_long.iter().all(|times| times.tasks == n);
    if complete {
        let server_slopes: Vec<f64> = server_long
            .iter()
            .zip(&server_short)
            .map(|(l, s)| per(l.run, s.run))
            .collect();
        let process_per_task: Vec<f64> = server_long
            .iter()
            .map(|times| times.processes / n as f64)
            .collect();
        let overhead: Vec<f64> = server_slopes
            .iter()
            .zip(&process_per_task)
            .map(|(slope, process)| slope - process)
            .collect();
        report.add(
            "(a) time per task in a chain of `sh -c true` (server log, slope 1→N: median, best)",
            format!(
                "{:.2} ms, {:.2} ms",
                median(&server_slopes) * 1e3,
                min(&server_slopes) * 1e3
            ),
            "",
        );
        report.add(
            "(a) the task's process as the runtime timed it (spawn to exit: median, best)",
            format!(
                "{:.2} ms, {:.2} ms (a bare `sh -c true` spawn from a small process: {:.2} ms)",
                median(&process_per_task) * 1e3,
                min(&process_per_task) * 1e3,
                spawn * 1e3
            ),
            "",
        );
        report.add(
            "(a) orchestration overhead per task (slope minus process time: median, best)",
            format!(
                "{:.2} ms, {:.2} ms",
                median(&overhead) * 1e3,
                min(&overhead) * 1e3
            ),
            "≤ 2 ms",
        );
        report.add(
            format!("(b) chain of {n} `sh` tasks, server claim to end (median, min)"),
            format!(
                "{} ({})",
                secs(Duration::from_secs_f64(median(
                    &server_long.iter().map(|t| t.run).collect::<Vec<_>>()
                ))),
                secs(Duration::from_secs_f64(min(&server_long
                    .iter()
                    .map(|t| t.run)
                    .collect::<Vec<_>>())))
            ),
            "",
        );
    } else {
        println!("  (the server log lacks run or task timing lines; client times only)");
    }
    report.add(
        "(a) time per task in a chain (client, slope 1→N, median)",
        format!("{:.2} ms", median(&client_slopes) * 1e3),
        "",
    );
    if !cpu_per_task.is_empty() {
        report.add(
            "(a) kfpd CPU time per task (user+system: median, best)",
            format!(
                "{:.2} ms, {:.2} ms",
                median(&cpu_per_task) * 1e3,
                min(&cpu_per_task) * 1e3
            ),
            "",
        );
    }
    report.add(
        format!("(b) chain of {n} `sh` tasks, create to observed end (median, min)"),
        format!(
            "{} ({})",
            secs(Duration::from_secs_f64(median(&client_long))),
            secs(Duration::from_secs_f64(min(&client_long)))
        ),
        "",
    );
    report.add(
        "(b) one-task run, create to observed end (median)",
        ms(Duration::from_secs_f64(median(&client_short))),
        "",
    );
    Ok(())
}

// --------------------------------------------------------------------------- (c)

const PYTHON_HELPER: &str = r#"
import json
import sys
import time

from kfp import compiler, dsl

LENGTH = int(sys.argv[2])
# "-bare" modes: compiled with install_kfp_package=False, so no pip preamble.
BARE = sys.argv[1].endswith("-bare")


@dsl.component(install_kfp_package=not BARE)
def step(x: int) -> int:
    return x + 1


@dsl.pipeline(name="bench-python-chain")
def chain(start: int = 0) -> int:
    # Caching off: every run really executes its tasks.
    value = step(x=start).set_caching_options(False)
    for _ in range(LENGTH - 1):
        value = step(x=value.output).set_caching_options(False)
    return value.output


if sys.argv[1].startswith("compile"):
    compiler.Compiler().compile(chain, sys.argv[3])
else:
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=sys.argv[1] == "local-venv"), pipeline_root=sys.argv[3])
    started = time.perf_counter()
    result = chain(start=0).output
    took = time.perf_counter() - started
    print("BENCH-RESULT " + json.dumps({"seconds": took, "output": result}))
"#;

fn python(args: &Args) -> Option<PathBuf> {
    let candidate = match &args.python {
        Some(path) => path.clone(),
        None => std::env::var_os("KFPD_E2E_VENV")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|home| PathBuf::from(home).join(".cache").join("kfpd-e2e-venv"))
            })?
            .join("bin")
            .join("python"),
    };
    candidate.is_file().then_some(candidate)
}

/// Runs the SDK's local runner on the chain; returns (seconds inside the SDK call,
/// seconds of the whole process).
fn sdk_local(
    python: &Path,
    helper: &Path,
    mode: &str,
    length: usize,
    root: &Path,
) -> Result<(f64, f64)> {
    let started = Instant::now();
    let output = Command::new(python)
        .arg(helper)
        .arg(mode)
        .arg(length.to_string())
        .arg(root)
        .env("PYTHONWARNINGS", "ignore")
        .stdin(Stdio::null())
        .output()?;
    let whole = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout
        .lines()
        .find_map(|line| line.strip_prefix("BENCH-RESULT "))
    else {
        bail!(
            "kfp.local ({mode}) failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    let result: Value = serde_json::from_str(line)?;
    if result["output"] != json!(length) {
        bail!(
            "kfp.local ({mode}) returned {} instead of {length}",
            result["output"]
        );
    }
    Ok((result["seconds"].as_f64().unwrap_or(f64::NAN), whole))
}

async fn python_chain(args: &Args, bin: &Path, scratch: &Path, report: &mut Report) -> Result<()> {
    let length = args.python_chain.max(1);
    println!(
        "python chain: {length} SDK-compiled lightweight components (load average {})",
        load_average()
    );
    let Some(python) = python(args) else {
        println!("  skipped: no e2e venv python (create it with `bash tests/e2e/run.sh --co -q`, or pass --python)");
        return Ok(());
    };
    let dir = scratch.join("python");
    fs::create_dir_all(&dir)?;
    let helper = dir.join("chain.py");
    fs::write(&helper, PYTHON_HELPER)?;
    let compiled = dir.join("chain.json");
    let status = Command::new(&python)
        .arg(&helper)
        .args(["compile", &length.to_string()])
        .arg(&compiled)
        .env("PYTHONWARNINGS", "ignore")
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("compiling the python chain failed: {status}");
    }
    let spec: Value = serde_json::from_slice(&fs::read(&compiled)?)?;

    // kfpd: a fresh environments directory, so the first run pays for making the
    // python:3.11 environment and the real `pip install kfp==…`; the second run is
    // the steady state.
    let server = Server::start(
        bin,
        &dir.join("server"),
        "warn,kfpd_engine::executor=info",
        &[],
    )?;
    let poll = Duration::from_millis(20);
    let limit = Duration::from_secs(900);
    let cold = server
        .api
        .run(&unique("python-cold"), &spec, json!({}), poll, limit)
        .await;
    let warm = match &cold {
        Ok(_) => {
            server
                .api
                .run(&unique("python-warm"), &spec, json!({}), poll, limit)
                .await
        }
        Err(_) => Err(anyhow!("not run")),
    };
    let warm_again = match &warm {
        Ok(_) => {
            server
                .api
                .run(&unique("python-warm"), &spec, json!({}), poll, limit)
                .await
        }
        Err(_) => Err(anyhow!("not run")),
    };
    let finished_task_count = match &warm {
        Ok(run) => server.api.get_run(&run.id).await.ok().map(|run| {
            run["run_details"]["task_details"]
                .as_array()
                .map(|tasks| tasks.iter().filter(|t| t["state"] == "SUCCEEDED").count())
                .unwrap_or(0)
        }),
        Err(_) => None,
    };
    let check = match &warm {
        Ok(_) => remembered_install_cost(&dir.join("server").join("envs")),
        Err(_) => Err(anyhow!("not run")),
    };
    server.stop()?;
    let cold = cold?;
    let warm = warm?;
    let warm_again = warm_again?;
    if let Some(count) = finished_task_count {
        println!("  kfpd run: {count} tasks SUCCEEDED (root included)");
    }
    let kfpd_warm = warm
        .elapsed
        .as_secs_f64()
        .min(warm_again.elapsed.as_secs_f64());

    let (sdk_plain, sdk_plain_whole) =
        sdk_local(&python, &helper, "local", length, &dir.join("local"))?;
    report.add(
        format!("(c) {length} Python tasks on kfpd, first run (new environment, real pip install)"),
        secs(cold.elapsed),
        "",
    );
    report.add(
        format!("(c) {length} Python tasks on kfpd, later runs (best of 2)"),
        format!(
            "{} ({:.0} ms per task)",
            secs(Duration::from_secs_f64(kfpd_warm)),
            kfpd_warm * 1e3 / length as f64
        ),
        "",
    );
    report.add(
        format!("(c) {length} Python tasks, kfp.local.SubprocessRunner(use_venv=False)"),
        format!(
            "{:.2} s in the SDK call ({:.2} s with interpreter start)",
            sdk_plain, sdk_plain_whole
        ),
        "",
    );
    report.add(
        "(c) ratio SubprocessRunner(use_venv=False) / kfpd",
        format!("{:.1}×", sdk_plain / kfpd_warm),
        "",
    );
    match check {
        Ok(cost) => {
            report.add(
                format!(
                    "(c) a task's remembered `pip install kfp==…` through the pip front, files checked ({})",
                    cost.files
                ),
                format!(
                    "{} per task (mean of {})",
                    ms(cost.checked),
                    cost.samples
                ),
                "",
            );
            report.add(
                "(c) the same without the check (the marker's existence alone, as before)",
                format!(
                    "{}; the check costs {}",
                    ms(cost.unchecked),
                    ms(cost.checked.saturating_sub(cost.unchecked))
                ),
                "",
            );
        }
        Err(error) => println!("  remembered install cost not measured: {error}"),
    }
    if args.sdk_venv {
        let (sdk_venv, sdk_venv_whole) = sdk_local(
            &python,
            &helper,
            "local-venv",
            length,
            &dir.join("local-venv"),
        )?;
        report.add(
            format!(
                "(c) {length} Python tasks, kfp.local.SubprocessRunner() (default use_venv=True)"
            ),
            format!(
                "{:.2} s in the SDK call ({:.2} s with interpreter start)",
                sdk_venv, sdk_venv_whole
            ),
            "",
        );
        report.add(
            "(c) ratio SubprocessRunner() / kfpd",
            format!("{:.1}×", sdk_venv / kfpd_warm),
            "≥ 8×",
        );
    }
    Ok(())
}

/// What answering a remembered `pip install` costs a task, with the check that what it
/// installed is still there and without it.
struct CheckCost {
    checked: Duration,
    unchecked: Duration,
    files: usize,
    samples: u32,
}

/// Times the environment's pip front answering the install its marker remembers, as a
/// task's preamble calls it, then the same with the marker's file list emptied (what the
/// front did before it checked anything), then puts the marker back.
fn remembered_install_cost(envs_dir: &Path) -> Result<CheckCost> {
    const SAMPLES: u32 = 200;
    let env = fs::read_dir(envs_dir)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().contains("kfp__"))
        })
        .ok_or_else(|| anyhow!("no kfp environment under {}", envs_dir.display()))?;
    let marker = fs::read_dir(env.join(".kfpd").join("pip"))?
        .flatten()
        .map(|entry| entry.path())
        .next()
        .ok_or_else(|| anyhow!("no remembered install in {}", env.display()))?;
    let text = fs::read_to_string(&marker)?;
    let header = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# pip "))
        .ok_or_else(|| anyhow!("unexpected marker {}", marker.display()))?
        .to_string();
    let files = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count();
    // The marker's first line is `# pip <its arguments as a JSON list>`.
    let args: Vec<String> = serde_json::from_str(&header)
        .with_context(|| format!("unexpected marker header in {}", marker.display()))?;
    let python = env.join("bin").join("python3");
    let time = || -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..SAMPLES {
            let status = Command::new(&python)
                .args(["-m", "pip"])
                .args(&args)
                .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
                .stdin(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("the remembered install failed: {status}");
            }
        }
        Ok(started.elapsed() / SAMPLES)
    };
    let checked = time()?;
    fs::write(&marker, format!("# pip {header}\n"))?;
    let unchecked = time();
    fs::write(&marker, &text)?;
    Ok(CheckCost {
        checked,
        unchecked: unchecked?,
        files,
        samples: SAMPLES,
    })
}

/// The chain compiled with `install_kfp_package=False`: no pip preamble, kfp from the
/// virtualenv kfpd runs from (the e2e venv first on its PATH). kfpd's steady state
/// against `kfp.local.SubprocessRunner(use_venv=False)`, in the same session.
async fn python_bare_chain(
    args: &Args,
    bin: &Path,
    scratch: &Path,
    report: &mut Report,
) -> Result<()> {
    let length = args.python_chain.max(1);
    println!(
        "python chain without the pip preamble: {length} components (load average {})",
        load_average()
    );
    let Some(python) = python(args) else {
        println!("  skipped: no e2e venv python (create it with `bash tests/e2e/run.sh --co -q`, or pass --python)");
        return Ok(());
    };
    let venv_bin = python
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", python.display()))?
        .to_path_buf();
    let dir = scratch.join("python-bare");
    fs::create_dir_all(&dir)?;
    let helper = dir.join("chain.py");
    fs::write(&helper, PYTHON_HELPER)?;
    let compiled = dir.join("chain.json");
    let status = Command::new(&python)
        .arg(&helper)
        .args(["compile-bare", &length.to_string()])
        .arg(&compiled)
        .env("PYTHONWARNINGS", "ignore")
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("compiling the bare python chain failed: {status}");
    }
    let spec: Value = serde_json::from_slice(&fs::read(&compiled)?)?;

    let server = Server::start_with_path(
        bin,
        &dir.join("server"),
        "warn,kfpd_engine::executor=info",
        &[],
        Some(&venv_bin),
    )?;
    let poll = Duration::from_millis(5);
    let limit = Duration::from_secs(600);
    let first = server
        .api
        .run(&unique("bare-first"), &spec, json!({}), poll, limit)
        .await;
    let mut client = Vec::new();
    let mut ids = Vec::new();
    let mut failure = first.as_ref().err().map(|error| anyhow!("{error}"));
    if failure.is_none() {
        for _ in 0..args.repeats.max(1) {
            match server
                .api
                .run(&unique("bare"), &spec, json!({}), poll, limit)
                .await
            {
                Ok(run) => {
                    client.push(run.elapsed.as_secs_f64());
                    ids.push(run.id);
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
    }
    let log = server.log_text();
    server.stop()?;
    if let Some(error) = failure {
        return Err(error);
    }
    let first = first?;
    let server_side: Vec<f64> = ids
        .iter()
        .filter_map(|id| server_times(&log, id))
        .map(|times| times.run)
        .collect();

    let mut sdk = Vec::new();
    for round in 0..3 {
        let (seconds, _) = sdk_local(
            &python,
            &helper,
            "local-bare",
            length,
            &dir.join(format!("local-{round}")),
        )?;
        sdk.push(seconds);
    }
    let kfpd = median(&client);
    report.add(
        format!("(c') {length} Python tasks without the pip preamble on kfpd, first run (new environment and warm interpreter)"),
        secs(first.elapsed),
        "",
    );
    report.add(
        format!(
            "(c') the same, later runs: CreateRun to observed end, median (best) of {}",
            client.len()
        ),
        format!(
            "{} ({}), {:.1} ms per task",
            ms(Duration::from_secs_f64(kfpd)),
            ms(Duration::from_secs_f64(min(&client))),
            kfpd * 1e3 / length as f64
        ),
        "",
    );
    report.add(
        "(c') the same, server claim to end, median (best)",
        format!(
            "{} ({})",
            ms(Duration::from_secs_f64(median(&server_side))),
            ms(Duration::from_secs_f64(min(&server_side)))
        ),
        "",
    );
    report.add(
        format!(
            "(c') {length} Python tasks without the preamble, kfp.local.SubprocessRunner(use_venv=False), median (best) of 3"
        ),
        format!(
            "{} ({}) in the SDK call",
            secs(Duration::from_secs_f64(median(&sdk))),
            secs(Duration::from_secs_f64(min(&sdk)))
        ),
        "",
    );
    report.add(
        "(c') ratio SubprocessRunner(use_venv=False) / kfpd (medians)",
        format!("{:.1}×", median(&sdk) / kfpd),
        "≥ 8×",
    );
    Ok(())
}

// --------------------------------------------------------------------------- (d)

/// VmRSS and VmHWM of a process in KiB.
fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn threads_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

fn open_files_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Live (not zombie) children of `parent` whose command name is `name`.
fn children_named(parent: u32, name: &str) -> usize {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if !file_name
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if comm == name && ppid == Some(parent) && !matches!(state, Some("Z") | Some("X")) {
            count += 1;
        }
    }
    count
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn parallel_sleeps(
    args: &Args,
    bin: &Path,
    scratch: &Path,
    tasks: usize,
    label: &str,
    report: &mut Report,
) -> Result<()> {
    println!(
        "{label}: {tasks} parallel `sleep {}` tasks in one DAG, --max-parallel-tasks {} (load average {})",
        args.sleep_seconds,
        args.max_parallel_tasks,
        load_average()
    );
    let extra = vec![
        "--max-parallel-tasks".to_string(),
        args.max_parallel_tasks.to_string(),
    ];
    let server = Server::start(
        bin,
        &scratch.join(label),
        "warn,kfpd_engine::executor=info",
        &extra,
    )?;
    let result = measure_parallel(args, &server, tasks, label, report).await;
    server.stop()?;
    result
}

async fn measure_parallel(
    args: &Args,
    server: &Server,
    tasks: usize,
    label: &str,
    report: &mut Report,
) -> Result<()> {
    let poll = Duration::from_millis(20);
    server
        .api
        .run(
            &unique("warmup"),
            &chain_spec(2, &["sh", "-c", "true"]),
            json!({}),
            poll,
            Duration::from_secs(300),
        )
        .await?;
    let (idle_rss, _) = memory_of(server.pid).ok_or_else(|| anyhow!("no /proc status for kfpd"))?;
    let idle_threads = threads_of(server.pid);

    let seconds = args.sleep_seconds.to_string();
    let spec = fanout_spec(tasks, &["sleep", &seconds]);
    let name = unique(label);
    let started = Instant::now();
    server.api.create_run(&name, &spec, json!({})).await?;
    let limit = Duration::from_secs(args.sleep_seconds * 10 + 300);
    let mut most_running = 0;
    let mut all_running_after = None;
    let mut at_most = (0, 0, 0);
    let mut peak_rss = 0;
    let mut last_state_check = Instant::now();
    let state = loop {
        let running = children_named(server.pid, "sleep");
        let (rss, _) = memory_of(server.pid).unwrap_or_default();
        peak_rss = peak_rss.max(rss);
        if running > most_running {
            most_running = running;
            at_most = (rss, threads_of(server.pid), open_files_of(server.pid));
        }
        if running >= tasks && all_running_after.is_none() {
            all_running_after = Some(started.elapsed());
        }
        if last_state_check.elapsed() > Duration::from_millis(500) {
            last_state_check = Instant::now();
            let (state, _) = server.api.state_by_name(&name).await?;
            if matches!(state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELED") {
                break state;
            }
        }
        if started.elapsed() > limit {
            bail!("{label} run did not end within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total = started.elapsed();
    let (after_rss, hwm) = memory_of(server.pid).unwrap_or_default();
    let (rss_at_most, threads_at_most, files_at_most) = at_most;
    println!("  run ended {state} after {}", secs(total));
    if label == "memory" {
        report.add(
            "(d) kfpd serve VmRSS idle (after a warm-up run)",
            mib(idle_rss),
            "",
        );
        report.add(
            format!("(d) VmRSS with {most_running} tasks running at once"),
            format!(
                "{} ({} threads, {} open files; idle {} threads)",
                mib(rss_at_most),
                threads_at_most,
                files_at_most,
                idle_threads
            ),
            "",
        );
        report.add(
            "(d) highest VmRSS sampled / VmHWM at the end",
            format!("{} / {}", mib(peak_rss), mib(hwm)),
            "",
        );
        report.add("(d) VmRSS after the run", mib(after_rss), "");
        report.add(
            format!(
                "(d) time until all {tasks} tasks ran / whole run ({}s sleeps)",
                args.sleep_seconds
            ),
            format!(
                "{} / {}",
                all_running_after
                    .map(secs)
                    .unwrap_or_else(|| "never".into()),
                secs(total)
            ),
            "",
        );
    } else {
        report.add(
            format!(
                "ceiling: most of {tasks} tasks running at once (--max-parallel-tasks {})",
                args.max_parallel_tasks
            ),
            format!("{most_running} (run {state} after {})", secs(total)),
            format!("{}", tasks.min(args.max_parallel_tasks)),
        );
    }
    Ok(())
}
