//! `scheduler`: measures the recurring-run scheduler through the real
//! `kfpd scheduler` process. Prints numbers; asserts nothing.
//!
//! - idle: 10,000 enabled recurring runs none of which is due for a day; the
//!   scheduler's CPU time and memory while it waits;
//! - spread: 10,000 enabled periodic recurring runs whose ticks are spread over
//!   the interval (10,000 / interval ticks a second); for every fired run the
//!   delay from its tick to the commit of its run (p50, p99), which the
//!   scheduler logs as `lag_ms`, and its CPU time under that load;
//! - burst: 10,000 recurring runs due in the same second; how long the scheduler
//!   takes to fire them all (the worst case, not a target).
//!
//! Each scenario seeds its own database through the store (SQLite in a temporary
//! directory unless `--database-server` names a PostgreSQL or MySQL server), with
//! the first ticks far in the future; once the scheduler is up, one UPDATE moves
//! them to a few seconds from now, so seeding time does not count.
//!
//! Needs the upstream pipeline corpus (its `critical/add_numbers.yaml` is stored with
//! every recurring run): `KFPD_CORPUS_DIR`, else `../shared/testdata/pipelines` beside
//! the repository, as for the tests.
//!
//! `cargo run --release -p kfpd-bench --bin scheduler -- --help`

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use kfpd_store::sql::{drop_database, Dialect, Options, SqlStore};
use kfpd_store::{ExperimentStore, NewRecurringRun, RecurringRunStore, Trigger};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Idle,
    Spread,
    Burst,
}

#[derive(Parser)]
#[command(about = "Benchmark of kfpd's recurring-run scheduler")]
struct Args {
    /// The kfpd binary [default: $CARGO_TARGET_DIR/release/kfpd, else target/release/kfpd].
    #[arg(long)]
    kfpd: Option<PathBuf>,
    /// A PostgreSQL or MySQL server URL without a database (one is created per
    /// scenario and dropped afterwards); SQLite in a temporary directory if not given.
    #[arg(long)]
    database_server: Option<String>,
    /// Scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "idle,spread,burst"
    )]
    scenarios: Vec<Scenario>,
    /// Enabled recurring runs in every scenario.
    #[arg(long, default_value_t = 10_000)]
    recurring_runs: usize,
    /// Interval of the periodic recurring runs of `spread`, in seconds.
    #[arg(long, default_value_t = 600)]
    interval: i64,
    /// Seconds of ticks measured in `spread`.
    #[arg(long, default_value_t = 60)]
    duration: i64,
    /// Seconds the idle scheduler is watched.
    #[arg(long, default_value_t = 30)]
    idle: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let kfpd = match &args.kfpd {
        Some(path) => path.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("release/kfpd"),
    };
    if !kfpd.is_file() {
        bail!(
            "{} not found; build it with `cargo build --release -p kfpd` or pass --kfpd",
            kfpd.display()
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let backend = args
        .database_server
        .as_deref()
        .map_or("sqlite", |url| url.split("://").next().unwrap_or("?"));
    println!(
        "kfpd scheduler benchmark: {} recurring runs, {backend}, {} cores",
        args.recurring_runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for scenario in &args.scenarios {
        runtime.block_on(run_scenario(&args, &kfpd, *scenario))?;
    }
    Ok(())
}

/// A database for one scenario.
struct Database {
    url: String,
    drop_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn database(args: &Args) -> Result<Database> {
    if let Some(server) = &args.database_server {
        let name = format!(
            "kfpd_bench_sched_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let url = format!("{}/{name}", server.trim_end_matches('/'));
        return Ok(Database {
            url: url.clone(),
            drop_url: Some(url),
            _dir: None,
        });
    }
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("kfpd.db").display());
    Ok(Database {
        url,
        drop_url: None,
        _dir: Some(dir),
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// The upstream corpus's add_numbers pipeline, stored with every recurring run.
fn adder_spec() -> Result<String> {
    let corpus = kfpd_testdata::Dir::Corpus.find().map_err(|missing| {
        anyhow::anyhow!(
            "the benchmark stores the upstream corpus's critical/add_numbers.yaml: {missing}"
        )
    })?;
    let path = corpus.join("critical/add_numbers.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let spec: serde_json::Value = serde_yaml::from_str(&text)?;
    Ok(serde_json::to_string(&spec)?)
}

/// Inserts the recurring runs, each with the trigger and first due time
/// `schedule(index)` gives, in parallel batches.
async fn seed(
    store: &Arc<SqlStore>,
    count: usize,
    schedule: impl Fn(usize) -> (Trigger, i64),
) -> Result<Duration> {
    let started = Instant::now();
    let created_at = now();
    let experiment = store.default_experiment(created_at).await?;
    let spec = adder_spec()?;
    let mut pending = Vec::new();
    for index in 0..count {
        let (trigger, next_fire_at) = schedule(index);
        let new = NewRecurringRun {
            display_name: format!("bench {index}"),
            description: String::new(),
            namespace: "kubeflow".into(),
            experiment_id: experiment.id.clone(),
            service_account: String::new(),
            max_concurrency: 10,
            no_catchup: false,
            enabled: true,
            created_at,
            trigger,
            pipeline_id: String::new(),
            pipeline_version_id: String::new(),
            pipeline_spec: Some(spec.clone()),
            runtime_config: r#"{"parameters":{"a":1,"b":2}}"#.into(),
            next_fire_at: Some(next_fire_at),
        };
        let store = Arc::clone(store);
        pending.push(tokio::spawn(async move {
            store.create_recurring_run(new).await
        }));
        if pending.len() == 16 {
            for task in pending.drain(..) {
                task.await??;
            }
        }
    }
    for task in pending {
        task.await??;
    }
    Ok(started.elapsed())
}

/// Where seeded schedules start: far enough ahead that nothing is due while seeding.
const PARKED: i64 = 30 * 86_400;

/// Moves every recurring run's start and due time by `delta` seconds.
async fn shift(store: &SqlStore, delta: i64) -> Result<()> {
    let text = match store.dialect() {
        Dialect::Postgres => {
            "UPDATE recurring_runs SET start_time = start_time + $1, next_fire_at = next_fire_at + $2"
        }
        Dialect::Sqlite | Dialect::Mysql => {
            "UPDATE recurring_runs SET start_time = start_time + ?, next_fire_at = next_fire_at + ?"
        }
    };
    sqlx::query(text)
        .bind(delta)
        .bind(delta)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A running `kfpd scheduler` whose fired-run log lines are collected.
struct SchedulerProcess {
    child: Child,
    fired: mpsc::Receiver<(i64, i64)>,
}

impl SchedulerProcess {
    fn start(kfpd: &PathBuf, url: &str) -> Result<SchedulerProcess> {
        let data_dir = std::env::temp_dir();
        let mut child = Command::new(kfpd)
            .arg("scheduler")
            .arg("--database-url")
            .arg(url)
            .arg("--data-dir")
            .arg(&data_dir)
            .env("KFPD_LOG", "warn,kfpd_server::service::schedules=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn kfpd scheduler")?;
        let (sender, fired) = mpsc::channel();
        let stderr = child.stderr.take().context("stderr")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if !line.contains("recurring run fired") {
                    if line.contains("WARN") || line.contains("ERROR") {
                        eprintln!("scheduler: {line}");
                    }
                    continue;
                }
                if let (Some(tick), Some(lag)) = (field(&line, "tick"), field(&line, "lag_ms")) {
                    let _ = sender.send((tick, lag));
                }
            }
        });
        let stdout = child.stdout.take().context("stdout")?;
        let (ready, started) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("kfpd scheduler running") {
                    let _ = ready.send(());
                }
            }
        });
        started
            .recv_timeout(Duration::from_secs(60))
            .context("kfpd scheduler did not start")?;
        Ok(SchedulerProcess { child, fired })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(ch);
    }
    out
}

/// The integer value of ` name=value` in a log line.
fn field(line: &str, name: &str) -> Option<i64> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let digits: String = line[start..]
        .chars()
        .take_while(|ch| ch.is_ascii_digit() || *ch == '-')
        .collect();
    digits.parse().ok()
}

/// CPU time (user + system) of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[i64], fraction: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn run_scenario(args: &Args, kfpd: &PathBuf, scenario: Scenario) -> Result<()> {
    let database = database(args)?;
    let store = Arc::new(SqlStore::connect(&Options::new(database.url.clone())).await?);
    let count = args.recurring_runs;
    let result = match scenario {
        Scenario::Idle => idle(args, kfpd, &database, &store, count).await,
        Scenario::Spread => spread(args, kfpd, &database, &store, count).await,
        Scenario::Burst => burst(kfpd, &database, &store, count).await,
    };
    store.pool().close().await;
    if let Some(url) = &database.drop_url {
        drop_database(url).await?;
    }
    result
}

async fn idle(
    args: &Args,
    kfpd: &PathBuf,
    database: &Database,
    store: &Arc<SqlStore>,
    count: usize,
) -> Result<()> {
    let tomorrow = now() + 86_400;
    let seeded = seed(store, count, |index| {
        let start = tomorrow + (index % 3_600) as i64;
        let trigger = Trigger::Periodic {
            interval_second: 3_600,
            start_time: Some(start),
            end_time: None,
        };
        (trigger, start + 3_600)
    })
    .await?;
    let scheduler = SchedulerProcess::start(kfpd, &database.url)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cpu_seconds(scheduler.pid()).context("read scheduler cpu")?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let after = cpu_seconds(scheduler.pid()).context("read scheduler cpu")?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = after - before;
    println!(
        "\nidle: {count} enabled recurring runs (seeded in {:.1} s), none due for a day, watched {wall:.0} s",
        seeded.as_secs_f64()
    );
    println!(
        "  scheduler CPU {:.1} ms per second ({:.3} % of one core), RSS {:.1} MiB",
        cpu * 1000.0 / wall,
        cpu * 100.0 / wall,
        rss_mib(scheduler.pid()).unwrap_or(0.0)
    );
    Ok(())
}

async fn spread(
    args: &Args,
    kfpd: &PathBuf,
    database: &Database,
    store: &Arc<SqlStore>,
    count: usize,
) -> Result<()> {
    let interval = args.interval.max(1);
    let parked = now() + PARKED;
    let seeded = seed(store, count, |index| {
        let offset = (index as i64 * interval) / count as i64;
        let start = parked + offset - interval;
        let trigger = Trigger::Periodic {
            interval_second: interval,
            start_time: Some(start),
            end_time: None,
        };
        (trigger, start + interval)
    })
    .await?;
    let scheduler = SchedulerProcess::start(kfpd, &database.url)?;
    let first_tick = now() + 3;
    shift(store, first_tick - parked).await?;
    let wait = (first_tick * 1000 - now_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let window_end = first_tick + args.duration;
    let before = cpu_seconds(scheduler.pid()).context("read scheduler cpu")?;
    let started = Instant::now();
    let mut lags = Vec::new();
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(args.duration as u64 + 30);
    while Instant::now() < deadline {
        match scheduler.fired.recv_timeout(Duration::from_millis(200)) {
            Ok((tick, lag)) => {
                if tick < window_end {
                    lags.push(lag);
                    *per_second.entry(tick).or_default() += 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if now() > window_end + 2 {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("kfpd scheduler exited"),
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(scheduler.pid()).context("read scheduler cpu")? - before;
    let expected = (args.duration * count as i64 / interval) as usize;
    lags.sort_unstable();
    println!(
        "\nspread: {count} enabled periodic recurring runs every {interval} s (seeded in {:.1} s), \
         {:.1} ticks a second, measured over {} s",
        seeded.as_secs_f64(),
        count as f64 / interval as f64,
        args.duration
    );
    println!(
        "  fired {} of {expected} due runs; tick → run created: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        lags.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.90),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0)
    );
    println!(
        "  scheduler CPU {:.0} ms per second ({:.1} % of one core) while firing, RSS {:.1} MiB",
        cpu * 1000.0 / wall,
        cpu * 100.0 / wall,
        rss_mib(scheduler.pid()).unwrap_or(0.0)
    );
    Ok(())
}

async fn burst(
    kfpd: &PathBuf,
    database: &Database,
    store: &Arc<SqlStore>,
    count: usize,
) -> Result<()> {
    let parked = now() + PARKED;
    let seeded = seed(store, count, |_| {
        let trigger = Trigger::Periodic {
            interval_second: 86_400,
            start_time: Some(parked - 86_400),
            end_time: None,
        };
        (trigger, parked)
    })
    .await?;
    let scheduler = SchedulerProcess::start(kfpd, &database.url)?;
    shift(store, now() + 3 - parked).await?;
    let mut lags = Vec::with_capacity(count);
    let deadline = Instant::now() + Duration::from_secs(600);
    while lags.len() < count && Instant::now() < deadline {
        match scheduler.fired.recv_timeout(Duration::from_secs(5)) {
            Ok((_, lag)) => lags.push(lag),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("kfpd scheduler exited"),
        }
    }
    lags.sort_unstable();
    println!(
        "\nburst: {count} recurring runs due in the same second (seeded in {:.1} s)",
        seeded.as_secs_f64()
    );
    println!(
        "  fired {} runs; tick → run created: p50 {} ms, p99 {} ms, last {} ms ({:.0} runs a second)",
        lags.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0),
        lags.len() as f64 / (lags.last().copied().unwrap_or(1).max(1) as f64 / 1000.0)
    );
    Ok(())
}
