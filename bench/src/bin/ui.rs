//! `ui`: the web UI against a million runs, in headless Chromium. Prints numbers;
//! asserts nothing.
//!
//! Seeds a SQLite database with `--runs` runs (the same seeding as `kfpd-bench`),
//! adds two runs of a ParallelFor of 1,000 container tasks (2,002 task rows each,
//! written through the store: one SUCCEEDED, one still RUNNING), starts the real
//! `kfpd serve --executor none` on it, and drives Debian's `chromium` through
//! `chromedriver`'s WebDriver protocol (plain HTTP, no client library):
//!
//! - time to first render: from navigation start to the first paint after a view
//!   drew its content (the page's `kfpd:rendered` performance mark), for the runs
//!   page, the 1,000-task run's page, and that page opened onto the loop's 1,000
//!   iterations; the first load with an empty cache, then the median of
//!   `--repeats` loads;
//! - bytes per page: the page and its assets on a first visit and when revalidated
//!   (Resource Timing's `transferSize`), and each page's API answer (its stream's
//!   first event or its JSON, read by this program);
//! - server CPU: kfpd's CPU time (from /proc) over `--cpu-seconds` with no page
//!   open, with `--pages` windows on finished pages (nothing runs), on a live run's
//!   page, on the live 1,000-task run's page, and on the runs page while runs on it
//!   are live; per page is the difference from no page, divided by the pages.
//!
//! `cargo build --release -p kfpd -p kfpd-bench --bin kfpd --bin ui`, then
//! `$CARGO_TARGET_DIR/release/ui` (`--runs 20000` for a quick look).

#[allow(dead_code)]
#[path = "../seed.rs"]
mod seed;
#[allow(dead_code)]
#[path = "../server.rs"]
mod server;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use kfpd_store::sql::{Options, SqlStore};
use kfpd_store::{
    ExecutionStore, NewRun, RunState, RunStore, Task, TaskKind, TaskState, TaskStateChange,
};
use serde_json::{json, Value};

/// A render slower than this has its request timings printed (stderr).
const SLOW_RENDER_MS: f64 = 5_000.0;

#[derive(Parser, Debug)]
#[command(
    about = "Time to first render, bytes per page and server CPU per open page of the web UI"
)]
struct Args {
    /// Runs seeded before the measurement.
    #[arg(long, default_value_t = 1_000_000)]
    runs: usize,
    #[arg(long, default_value_t = 100)]
    experiments: usize,
    /// Items of the ParallelFor of the two large runs.
    #[arg(long, default_value_t = 1_000)]
    items: usize,
    /// Loads per page after the first.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Browser windows open at once in each CPU scenario.
    #[arg(long, default_value_t = 4)]
    pages: usize,
    /// Seconds each CPU scenario is measured.
    #[arg(long, default_value_t = 20)]
    cpu_seconds: u64,
    /// The pipeline every seeded run carries [default: the upstream corpus's
    /// hello_world.yaml, found as the tests find it].
    #[arg(long)]
    spec: Option<PathBuf>,
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
    #[arg(long, default_value = "chromium")]
    chromium: String,
    #[arg(long, default_value = "chromedriver")]
    chromedriver: String,
    /// Only the server's part of the 1,000-task run's first load, step by step
    /// (GetRun, its nodes, its stream's first event, each first and again); no
    /// browser.
    #[arg(long)]
    server_only: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let work = tempfile::Builder::new()
        .prefix("kfpd-bench-ui-")
        .tempdir()
        .context("creating a temporary directory")?;
    let url = format!("sqlite://{}/kfpd.db", work.path().display());
    let spec_json = load_spec(&args)?;

    eprintln!("seeding {} runs ...", args.runs);
    let store = SqlStore::connect(&Options::new(&url)).await?;
    let plan = seed::Plan {
        runs: args.runs,
        experiments: args.experiments,
        span_days: 365,
        spec_json,
        seed: 42,
    };
    let seeded = seed::seed(&store, &plan).await?;
    eprintln!("seeded in {:.1} s", seeded.time_total.as_secs_f64());
    let experiment = seeded
        .experiments
        .first()
        .map(|(id, _)| id.clone())
        .ok_or_else(|| anyhow!("no experiment seeded"))?;
    let finished = large_run(&store, &experiment, args.items, true).await?;
    let live = large_run(&store, &experiment, args.items, false).await?;
    let live_small = seeded_live_run(&store).await?;
    store.pool().close().await;
    let _ = tokio::process::Command::new("sync").status().await;

    let bin = args.kfpd_bin.clone().unwrap_or_else(server::default_bin);
    let launch = server::Launch {
        bin,
        args: [
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--executor",
            "none",
            "--data-dir",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .chain([work.path().display().to_string()])
        .collect(),
        log: work.path().join("kfpd.log"),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let kfpd = launch.start(&client).await?;
    let base = kfpd.base.clone();
    if args.server_only {
        let result = server_steps(&client, &base, &finished.run_id).await;
        kfpd.stop().await?;
        println!("{}", result?);
        return Ok(());
    }
    let browser = Browser::start(&args.chromium, &args.chromedriver).await?;
    let result = measure(
        &args,
        &client,
        &browser,
        &base,
        kfpd.pid,
        &finished,
        &live,
        &live_small,
    )
    .await;
    browser.quit().await;
    kfpd.stop().await?;
    // What kfpd complained about while measured, if anything.
    let log = std::fs::read_to_string(work.path().join("kfpd.log")).unwrap_or_default();
    for line in log
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
    {
        eprintln!("kfpd: {line}");
    }
    let report = result?;
    println!("{report}");
    Ok(())
}

/// The reads of a run page's first load one by one, each timed the first time
/// after kfpd started and then twice more.
async fn server_steps(client: &reqwest::Client, base: &str, run_id: &str) -> Result<String> {
    let steps = [
        (
            "GetRun (JSON)",
            format!("{base}/apis/v2beta1/runs/{run_id}"),
            false,
        ),
        (
            "its nodes (JSON)",
            format!("{base}/apis/v2beta1/runs/{run_id}/nodes"),
            false,
        ),
        (
            "its stream's first event",
            format!("{base}/apis/v2beta1/runs/{run_id}/events"),
            true,
        ),
    ];
    let mut out =
        String::from("| step | bytes | first | second | third |\n|---|---:|---:|---:|---:|\n");
    for (label, url, stream) in steps {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..3 {
            let started = Instant::now();
            bytes = answer_bytes(client, &url, stream).await?;
            times.push(started.elapsed().as_millis());
            eprintln!("{label}: {} ms", started.elapsed().as_millis());
        }
        out.push_str(&format!(
            "| {label} | {} | {} ms | {} ms | {} ms |\n",
            thousands(bytes as u64),
            times[0],
            times[1],
            times[2]
        ));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    client: &reqwest::Client,
    browser: &Browser,
    base: &str,
    pid: u32,
    finished: &LargeRun,
    live: &LargeRun,
    live_small: &str,
) -> Result<String> {
    let version = browser.version.clone();
    let mut out = format!(
        "## Web UI at {} runs (SQLite), {} in headless mode\n\n",
        thousands(args.runs as u64),
        version
    );

    // The 1,000-task run's stream as the first reader of its rows since kfpd
    // started, read by this program: the server's part of a first load.
    let started = Instant::now();
    let first_event = answer_bytes(
        client,
        &format!("{base}/apis/v2beta1/runs/{}/events", finished.run_id),
        true,
    )
    .await?;
    out.push_str(&format!(
        "The 1,000-task run's first event ({} bytes), the first read of its rows since kfpd started: {} ms.\n\n",
        thousands(first_event as u64),
        started.elapsed().as_millis()
    ));

    // Time to first render.
    let pages = [
        ("runs page (`#/runs`)", format!("{base}/#/runs")),
        (
            "1,000-task run, graph (`#/runs/details/<id>`)",
            format!("{base}/#/runs/details/{}", finished.run_id),
        ),
        (
            "1,000-task run, the loop's 1,000 iterations (`?scope=<loop>`)",
            format!(
                "{base}/#/runs/details/{}?scope={}",
                finished.run_id, finished.loop_id
            ),
        ),
        (
            "1,000-task run, task table (`?view=tasks`)",
            format!("{base}/#/runs/details/{}?view=tasks", finished.run_id),
        ),
    ];
    out.push_str("| page | first load (empty cache) | median of later loads | min | max |\n|---|---|---|---|---|\n");
    let mut cold_assets = None;
    for (index, (label, url)) in pages.iter().enumerate() {
        let first = browser.render_time(url).await?;
        if index == 0 {
            cold_assets = Some(browser.transfer().await?);
        }
        let mut later = Vec::new();
        for _ in 0..args.repeats {
            later.push(browser.render_time(url).await?);
        }
        later.sort_by(f64::total_cmp);
        let median = later.get(later.len() / 2).copied().unwrap_or(first);
        out.push_str(&format!(
            "| {label} | {first:.0} ms | {median:.0} ms | {:.0} ms | {:.0} ms |\n",
            later.first().copied().unwrap_or(first),
            later.last().copied().unwrap_or(first)
        ));
    }
    let warm_assets = browser.transfer().await?;

    // Bytes per page.
    out.push_str("\n| what | bytes |\n|---|---|\n");
    if let Some(cold) = cold_assets {
        out.push_str(&format!(
            "| page and assets, first visit (HTML, 5 scripts, CSS, icon) | {} |\n",
            thousands(cold)
        ));
    }
    out.push_str(&format!(
        "| page and assets, later visits (revalidated: 304s) | {} |\n",
        thousands(warm_assets)
    ));
    let answers = [
        (
            "runs page: first event of `runs:watch` (20 runs)",
            format!("{base}/apis/v2beta1/runs:watch?page_size=20&sort_by=created_at%20desc"),
            true,
        ),
        (
            "runs page as `ListRuns` JSON (the same 20 runs)",
            format!("{base}/apis/v2beta1/runs?page_size=20&sort_by=created_at%20desc"),
            false,
        ),
        (
            "1,000-task run: its stream (one event, 2,002 nodes)",
            format!("{base}/apis/v2beta1/runs/{}/events", finished.run_id),
            true,
        ),
        (
            "1,000-task run as `GetRun` JSON (what upstream's UI reads)",
            format!("{base}/apis/v2beta1/runs/{}", finished.run_id),
            false,
        ),
        (
            "one task's record (`/nodes/{id}`)",
            format!(
                "{base}/apis/v2beta1/runs/{}/nodes/{}",
                finished.run_id, finished.loop_id
            ),
            false,
        ),
    ];
    for (label, url, stream) in answers {
        let bytes = answer_bytes(client, &url, stream).await?;
        out.push_str(&format!("| {label} | {} |\n", thousands(bytes as u64)));
    }

    // Server CPU per open page.
    out.push_str(&format!(
        "\n| kfpd CPU over {} s | pages open | kfpd CPU | per open page | open streams |\n|---|---|---|---|---|\n",
        args.cpu_seconds
    ));
    let idle = cpu_share(pid, args.cpu_seconds).await?;
    out.push_str(&format!(
        "| no page open | 0 | {:.2} % | | 0 |\n",
        idle * 100.0
    ));
    let scenarios = [
        (
            "nothing runs: finished runs' pages and the runs page filtered to SUCCEEDED",
            vec![
                format!("{base}/#/runs/details/{}", finished.run_id),
                format!("{base}/#/runs?state=SUCCEEDED"),
            ],
        ),
        (
            "a live run's page (RUNNING, no tasks)",
            vec![format!("{base}/#/runs/details/{live_small}")],
        ),
        (
            "the live 1,000-task run's page",
            vec![format!("{base}/#/runs/details/{}", live.run_id)],
        ),
        (
            "the runs page, live runs on it (page 1 of a million)",
            vec![format!("{base}/#/runs")],
        ),
    ];
    for (label, urls) in scenarios {
        let handles = browser.open_windows(args.pages, &urls).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let streams = open_streams(client, base).await.unwrap_or(-1);
        let share = cpu_share(pid, args.cpu_seconds).await?;
        browser.close_windows(handles).await?;
        out.push_str(&format!(
            "| {label} | {} | {:.2} % | {:.2} % | {streams} |\n",
            args.pages,
            share * 100.0,
            (share - idle) * 100.0 / args.pages as f64
        ));
    }
    out.push_str("\nCPU is the share of one core. Load average before measuring: ");
    out.push_str(&std::fs::read_to_string("/proc/loadavg").unwrap_or_default());
    Ok(out)
}

/// The ids of a seeded large run.
struct LargeRun {
    run_id: String,
    loop_id: String,
}

/// A ParallelFor of `items` container tasks, written through the store as the local
/// engine leaves it: finished (every task SUCCEEDED) or live (the run RUNNING, the
/// first 64 tasks RUNNING, the rest PENDING).
async fn large_run(
    store: &SqlStore,
    experiment: &str,
    items: usize,
    finished: bool,
) -> Result<LargeRun> {
    let spec = loop_spec(items);
    let now = seed::unix_now();
    let run = store
        .create_run(NewRun {
            experiment_id: experiment.to_string(),
            namespace: String::new(),
            display_name: format!(
                "ui-bench-{items}-{}",
                if finished { "finished" } else { "live" }
            ),
            description: String::new(),
            service_account: String::new(),
            created_at: now,
            scheduled_at: now,
            pipeline_id: String::new(),
            pipeline_version_id: String::new(),
            recurring_run_id: String::new(),
            runtime_config: String::new(),
            pipeline_spec: serde_json::to_string(&spec)?,
            inline_spec: true,
        })
        .await?;
    store
        .transition_run(&run.id, &[RunState::Pending], RunState::Running, None, now)
        .await?;
    let state_of = |index: usize| {
        if finished {
            TaskState::Succeeded
        } else if index < 64 {
            TaskState::Running
        } else {
            TaskState::Pending
        }
    };
    let group_state = if finished {
        TaskState::Succeeded
    } else {
        TaskState::Running
    };
    let root_id = uuid::Uuid::new_v4().to_string();
    let loop_id = uuid::Uuid::new_v4().to_string();
    let mut tasks = vec![
        task(
            &run.id,
            &root_id,
            "",
            "root",
            TaskKind::Root,
            "bench-parallelfor",
            -1,
            group_state,
            now,
            finished,
        ),
        task(
            &run.id,
            &loop_id,
            &root_id,
            "root/for-loop-1",
            TaskKind::Loop,
            "for-loop-1",
            -1,
            group_state,
            now,
            finished,
        ),
    ];
    for index in 0..items {
        let iteration_id = uuid::Uuid::new_v4().to_string();
        let state = state_of(index);
        let ended = state == TaskState::Succeeded;
        let iteration_state = if ended { TaskState::Succeeded } else { state };
        let index_value = i64::try_from(index).unwrap_or(i64::MAX);
        let mut iteration = task(
            &run.id,
            &iteration_id,
            &loop_id,
            &format!("root/for-loop-1/{index}"),
            TaskKind::LoopIteration,
            "for-loop-1",
            index_value,
            iteration_state,
            now,
            ended,
        );
        iteration.display_name = format!("for-loop-1-iteration-{index}");
        tasks.push(iteration);
        let mut echo = task(
            &run.id,
            &uuid::Uuid::new_v4().to_string(),
            &iteration_id,
            &format!("root/for-loop-1/{index}/echo"),
            TaskKind::Runtime,
            "echo",
            -1,
            state,
            now,
            ended,
        );
        echo.inputs = json!({"n": index}).to_string();
        tasks.push(echo);
    }
    store.save_tasks(&tasks).await?;
    if finished {
        store
            .transition_run(
                &run.id,
                &[RunState::Running],
                RunState::Succeeded,
                None,
                now + 3,
            )
            .await?;
    }
    Ok(LargeRun {
        run_id: run.id,
        loop_id,
    })
}

#[allow(clippy::too_many_arguments)]
fn task(
    run_id: &str,
    id: &str,
    parent_id: &str,
    path: &str,
    kind: TaskKind,
    name: &str,
    iteration_index: i64,
    state: TaskState,
    now: i64,
    ended: bool,
) -> Task {
    let mut history = vec![TaskStateChange {
        time: now,
        state: TaskState::Running,
    }];
    if ended {
        history.push(TaskStateChange {
            time: now + 2,
            state,
        });
    }
    let started = if state == TaskState::Pending { 0 } else { now };
    Task {
        id: id.to_string(),
        run_id: run_id.to_string(),
        parent_id: parent_id.to_string(),
        path: path.to_string(),
        kind,
        name: name.to_string(),
        display_name: name.to_string(),
        iteration_index,
        state,
        state_history: if state == TaskState::Pending {
            Vec::new()
        } else {
            history
        },
        error: None,
        created_at: now,
        started_at: started,
        finished_at: if ended { now + 2 } else { 0 },
        attempts: i64::from(state != TaskState::Pending),
        inputs: "{}".to_string(),
        outputs: "{}".to_string(),
        details: "{}".to_string(),
        fingerprint: String::new(),
        cached_from: String::new(),
        cache_scope: String::new(),
    }
}

/// One seeded RUNNING run (the seeding leaves 10% of the runs RUNNING, without tasks).
async fn seeded_live_run(store: &SqlStore) -> Result<String> {
    let row = sqlx::query("SELECT uuid FROM runs WHERE state = 'RUNNING' LIMIT 1")
        .fetch_one(store.pool())
        .await
        .context("finding a RUNNING run")?;
    Ok(sqlx::Row::try_get(&row, 0)?)
}

/// A pipeline whose root is one ParallelFor of `items` `sh` tasks (the engine
/// benchmark's shape).
fn loop_spec(items: usize) -> Value {
    let list: Vec<usize> = (0..items).collect();
    json!({
        "pipelineInfo": {"name": "bench-parallelfor"},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.15.0",
        "components": {
            "comp-for-loop-1": {
                "dag": {"tasks": {"echo": {
                    "componentRef": {"name": "comp-echo"},
                    "inputs": {"parameters": {"n": {"componentInputParameter": "pipelinechannel--loop-item-param-1"}}},
                    "taskInfo": {"name": "echo"}
                }}},
                "inputDefinitions": {"parameters": {"pipelinechannel--loop-item-param-1": {"parameterType": "NUMBER_INTEGER"}}}
            },
            "comp-echo": {
                "executorLabel": "exec-echo",
                "inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}
            }
        },
        "deploymentSpec": {"executors": {"exec-echo": {"container": {
            "image": "alpine",
            "command": ["sh", "-c", "echo item $0"],
            "args": ["{{$.inputs.parameters['n']}}"]
        }}}},
        "root": {"dag": {"tasks": {"for-loop-1": {
            "componentRef": {"name": "comp-for-loop-1"},
            "parameterIterator": {
                "itemInput": "pipelinechannel--loop-item-param-1",
                "items": {"raw": serde_json::to_string(&list).unwrap_or_default()}
            },
            "taskInfo": {"name": "for-loop-1"}
        }}}}
    })
}

fn load_spec(args: &Args) -> Result<String> {
    let path = match &args.spec {
        Some(path) => path.clone(),
        None => kfpd_testdata::Dir::Corpus
            .find()
            .map_err(|missing| anyhow!("the seeded runs carry the corpus's hello_world.yaml: {missing}; or pass --spec"))?
            .join("hello_world.yaml"),
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(serde_json::to_string(&value)?)
}

/// Bytes of an API answer: the whole JSON body, or a stream's first event.
async fn answer_bytes(client: &reqwest::Client, url: &str, stream: bool) -> Result<usize> {
    let mut response = client.get(url).send().await?.error_for_status()?;
    if !stream {
        return Ok(response.bytes().await?.len());
    }
    let mut text = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        text.extend_from_slice(&chunk);
        if let Some(end) = text.windows(2).position(|pair| pair == b"\n\n") {
            return Ok(end + 2);
        }
    }
    Ok(text.len())
}

async fn open_streams(client: &reqwest::Client, base: &str) -> Result<i64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("kfpd_event_streams{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<i64>().ok())
        .sum())
}

/// kfpd's CPU time over `seconds`, as a share of one core.
async fn cpu_share(pid: u32, seconds: u64) -> Result<f64> {
    let before = process_ticks(pid)?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = process_ticks(pid)?;
    let ticks_per_second = 100.0;
    Ok((after - before) as f64 / ticks_per_second / started.elapsed().as_secs_f64())
}

fn process_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |index: usize| -> Result<u64> {
        fields
            .get(index)
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| anyhow!("no field {index} in /proc/{pid}/stat"))
    };
    Ok(field(11)? + field(12)?)
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Chromium driven through chromedriver's WebDriver endpoint.
struct Browser {
    client: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
    version: String,
}

impl Browser {
    async fn start(chromium: &str, chromedriver: &str) -> Result<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {chromedriver} (Debian's chromium-driver)"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{root}/status")).send().await.is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let binary = which(chromium).unwrap_or_else(|| chromium.to_string());
        let created: Value = client
            .post(format!("{root}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"],
            }}}}))
            .send()
            .await?
            .json()
            .await?;
        let id = created["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no WebDriver session: {created}"))?;
        let version = format!(
            "{} {}",
            created["value"]["capabilities"]["browserName"]
                .as_str()
                .unwrap_or("chromium"),
            created["value"]["capabilities"]["browserVersion"]
                .as_str()
                .unwrap_or("?")
        );
        Ok(Browser {
            client,
            session: format!("{root}/session/{id}"),
            driver,
            version,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let get = method == reqwest::Method::GET;
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.session));
        if !get {
            request = request.json(&body);
        }
        let answer: Value = request.send().await?.json().await?;
        if answer["value"].get("error").is_some() {
            bail!("webdriver {path}: {}", answer["value"]);
        }
        Ok(answer["value"].clone())
    }

    async fn goto(&self, url: &str) -> Result<()> {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await?;
        Ok(())
    }

    async fn script(&self, source: &str) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": source, "args": []}),
        )
        .await
    }

    /// Loads `url` as a new document; milliseconds from navigation start to the
    /// view's first paint.
    async fn render_time(&self, url: &str) -> Result<f64> {
        self.goto("about:blank").await?;
        self.goto(url).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mark = self
                .script("const m = performance.getEntriesByName('kfpd:rendered')[0]; return m ? m.startTime : null;")
                .await?;
            if let Some(ms) = mark.as_f64() {
                if ms > SLOW_RENDER_MS {
                    self.explain_slow_render(url, ms).await;
                }
                return Ok(ms);
            }
            if Instant::now() > deadline {
                bail!("{url} never rendered");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Prints where a slow first render's time went: the document's and every
    /// request's timing (Resource Timing), to stderr.
    async fn explain_slow_render(&self, url: &str, ms: f64) {
        let entries = self
            .script(
                "return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource'), ...performance.getEntriesByType('mark')]
                   .map((e) => [e.entryType, e.name, Math.round(e.startTime), Math.round(e.requestStart || 0), Math.round(e.responseStart || 0), Math.round(e.responseEnd || 0), e.transferSize || 0]);",
            )
            .await;
        eprintln!("slow render of {url}: {ms:.0} ms; entries [type, name, start, request start, response start, response end, bytes]:");
        match entries {
            Ok(Value::Array(rows)) => rows.iter().for_each(|row| eprintln!("  {row}")),
            other => eprintln!("  cannot read the entries: {other:?}"),
        }
    }

    /// Bytes the current document and its assets took on the wire.
    async fn transfer(&self) -> Result<u64> {
        let total = self
            .script(
                "return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
                   .filter((e) => !e.name.includes('/apis/')).reduce((sum, e) => sum + e.transferSize, 0);",
            )
            .await?;
        total
            .as_u64()
            .ok_or_else(|| anyhow!("no transfer size: {total}"))
    }

    /// Opens `count` windows, each on the next of `urls` in turn; returns their handles.
    async fn open_windows(&self, count: usize, urls: &[String]) -> Result<Vec<String>> {
        let mut handles = Vec::new();
        for index in 0..count {
            let made = self
                .call(
                    reqwest::Method::POST,
                    "/window/new",
                    json!({"type": "window"}),
                )
                .await?;
            let handle = made["handle"]
                .as_str()
                .ok_or_else(|| anyhow!("no window handle"))?
                .to_string();
            self.call(reqwest::Method::POST, "/window", json!({"handle": handle}))
                .await?;
            self.goto(&urls[index % urls.len()]).await?;
            handles.push(handle);
        }
        Ok(handles)
    }

    async fn close_windows(&self, handles: Vec<String>) -> Result<()> {
        for handle in handles {
            self.call(reqwest::Method::POST, "/window", json!({"handle": handle}))
                .await?;
            self.call(reqwest::Method::DELETE, "/window", json!({}))
                .await?;
        }
        let left = self
            .call(reqwest::Method::GET, "/window/handles", json!({}))
            .await?;
        if let Some(first) = left.as_array().and_then(|list| list.first()) {
            self.call(reqwest::Method::POST, "/window", json!({"handle": first}))
                .await?;
        }
        Ok(())
    }

    async fn quit(mut self) {
        let _ = self.client.delete(&self.session).send().await;
        let _ = self.driver.kill().await;
    }
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
            .map(|path| path.display().to_string())
    })
}
