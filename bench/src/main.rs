//! `kfpd-bench`: seeds a large database, starts the real `kfpd serve` on it and
//! measures start time, memory, list/get latency (over HTTP and directly against
//! the store) and CreateRun throughput. Prints a markdown table; asserts nothing.
//!
//! See `bench/README.md`.

mod cpu;
mod report;
mod scenarios;
mod seed;
mod server;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use kfpd_store::sql::{drop_database, split_database_url, Options, SqlStore};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::scenarios::{Target, Variant, Workload, DEEP_PAGE, PAGE_SIZE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Parser, Debug)]
#[command(
    name = "kfpd-bench",
    about = "Seeds runs into a fresh database, starts kfpd serve on it and measures it"
)]
struct Args {
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// PostgreSQL server; the benchmark creates (and drops) its own database there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    url: String,
    /// Runs to seed.
    #[arg(long, default_value_t = 1_000_000)]
    runs: usize,
    /// Experiments the runs are spread over (unevenly).
    #[arg(long, default_value_t = 100)]
    experiments: usize,
    /// Days the runs' creation times are spread over.
    #[arg(long, default_value_t = 365)]
    span_days: u64,
    /// The kfpd binary [default: $CARGO_TARGET_DIR/release/kfpd, else target/release/kfpd].
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
    /// Compiled pipeline (YAML) sent inline by CreateRun and stored with every seeded run
    /// [default: hello_world.yaml of the upstream pipeline corpus, found as the tests
    /// find it: $KFPD_CORPUS_DIR, else ../shared/testdata/pipelines beside the repository].
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Measured requests per latency row (after the warm-up).
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Measured page-50 fetches (each after 49 unmeasured pages), spread over
    /// no filter, one experiment, state=RUNNING and state=SUCCEEDED.
    #[arg(long, default_value_t = 60)]
    deep_samples: usize,
    /// Unmeasured requests before each latency row.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// How often kfpd is started for the start-to-healthy time.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Concurrent CreateRun clients.
    #[arg(long, default_value_t = 16)]
    create_clients: usize,
    /// Seconds of CreateRun load.
    #[arg(long, default_value_t = 10)]
    create_seconds: u64,
    /// Samples per statement in the COUNT(*)-versus-page breakdown.
    #[arg(long, default_value_t = 30)]
    breakdown_samples: usize,
    /// Print the query plans of the list statements (EXPLAIN QUERY PLAN on SQLite,
    /// EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL).
    #[arg(long)]
    explain: bool,
    /// Keep the database (and the temporary directory) afterwards, for inspection.
    #[arg(long)]
    keep: bool,
    /// Before each measured phase, wait until other processes use less than this
    /// share of the machine (0.0-1.0) ...
    #[arg(long, default_value_t = 0.10)]
    quiet_below: f64,
    /// ... for at most this many seconds.
    #[arg(long, default_value_t = 600)]
    quiet_wait: u64,
    /// Extra arguments for `kfpd serve` (repeatable), after the benchmark's own
    /// `--http-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --executor none` and the
    /// database flags.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs == 0 || args.experiments == 0 {
        bail!("--runs and --experiments must be positive");
    }
    let work = tempfile::Builder::new()
        .prefix("kfpd-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let (url, created_database) = match args.backend {
        Backend::Sqlite => (format!("sqlite://{}/kfpd.db", work.path().display()), None),
        Backend::Postgres => {
            let (server, _, params) = split_database_url(&args.url)?;
            let name = format!("kfpd_bench_{:08x}", rand::random::<u32>());
            let query = if params.is_empty() {
                String::new()
            } else {
                format!("?{params}")
            };
            let url = format!("{server}/{name}{query}");
            (url.clone(), Some(url))
        }
    };
    let result = run(&args, &url, work.path()).await;
    if args.keep {
        let kept = work.keep();
        eprintln!("kept {} (database {url})", kept.display());
    } else if let Some(database) = created_database {
        if let Err(error) = drop_database(&database).await {
            eprintln!("could not drop {database}: {error}");
        }
    }
    let report = result?;
    println!("{report}");
    Ok(())
}

async fn run(args: &Args, url: &str, work: &Path) -> Result<String> {
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let spec_json = load_spec(args)?;
    let machine = machine();

    eprintln!("seeding {} runs into {} ...", args.runs, redact(url));
    let store = SqlStore::connect(&Options::new(url))
        .await
        .context("opening the store")?;
    let backend = backend_name(&store).await?;
    let plan = seed::Plan {
        runs: args.runs,
        experiments: args.experiments,
        span_days: args.span_days,
        spec_json: spec_json.clone(),
        seed: args.seed,
    };
    let seeded = seed::seed(&store, &plan).await?;
    store.pool().close().await;
    eprintln!("seeded in {:.1} s", seeded.time_total.as_secs_f64());
    // Write the freshly seeded database back to disk now, so that the first start
    // does not wait for the kernel to flush a gigabyte of dirty pages.
    let flushing = std::time::Instant::now();
    let _ = tokio::process::Command::new("sync").status().await;
    let flushed = flushing.elapsed();

    let bin = args.kfpd_bin.clone().unwrap_or_else(server::default_bin);
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p kfpd` or pass --kfpd-bin",
            bin.display()
        );
    }
    // The API server alone: the seeded PENDING and RUNNING runs must not be
    // executed, and the gRPC port must not clash with another server's.
    let mut serve_args: Vec<String> = [
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
    .collect();
    serve_args.push(work.display().to_string());
    if !url.starts_with("sqlite:") {
        serve_args.push("--database-url".into());
        serve_args.push(url.to_string());
    }
    serve_args.extend(args.serve_args.iter().cloned());
    let launch = server::Launch {
        bin,
        args: serve_args,
        log: work.join("kfpd.log"),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()?;

    let mut quiet = Quiet::new(args);
    quiet.wait(&[]).await;
    let phase = quiet.begin(&[]);
    eprintln!("starting kfpd {} times ...", args.starts.max(1));
    let mut starts = Vec::new();
    let mut listening = Vec::new();
    let mut kfpd = None;
    for index in 0..args.starts.max(1) {
        // A fresh client each time, so no connection outlives its server.
        let probe = reqwest::Client::new();
        let started = launch.start(&probe).await?;
        starts.push(started.start_to_healthy);
        listening.push(started.start_to_listening);
        if index + 1 < args.starts.max(1) {
            started.stop().await?;
        } else {
            kfpd = Some(started);
        }
    }
    let kfpd = kfpd.context("kfpd was not started")?;
    quiet.end("starts", phase, &[kfpd.pid]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss_kib, _) = kfpd.memory_kib()?;
    let own = [kfpd.pid];

    let experiments: Vec<String> = seeded.experiments.iter().map(|e| e.0.clone()).collect();
    let deep_experiments: Vec<String> = seeded
        .experiments
        .iter()
        .filter(|e| e.1 > DEEP_PAGE * PAGE_SIZE as usize)
        .map(|e| e.0.clone())
        .collect();
    let workload = Workload {
        experiments: experiments.clone(),
        deep_experiments: if deep_experiments.is_empty() {
            experiments.clone()
        } else {
            deep_experiments
        },
        run_ids: seeded.sample_run_ids.clone(),
        samples: args.samples,
        deep_samples: args.deep_samples,
        warmup: args.warmup,
    };

    quiet.wait(&own).await;
    eprintln!("measuring over HTTP ({}) ...", kfpd.base);
    let http = Target::Http {
        client: client.clone(),
        base: kfpd.base.clone(),
    };
    let phase = quiet.begin(&own);
    let http_measured = scenarios::measure(&http, &workload, &mut rng).await?;
    quiet.end("HTTP lists/get", phase, &own);
    let (after_lists_rss_kib, _) = kfpd.memory_kib()?;

    eprintln!("measuring the store directly ...");
    let mut options = Options::new(url);
    // As kfpd serve opens it.
    options.max_connections = 16;
    options.create_database = false;
    let store = SqlStore::connect(&options).await?;
    let direct = Target::Store(store.clone());
    quiet.wait(&own).await;
    let phase = quiet.begin(&own);
    let store_measured = scenarios::measure(&direct, &workload, &mut rng).await?;
    quiet.end("store lists/get", phase, &own);
    eprintln!("timing the page and COUNT(*) statements apart ...");
    let largest = seeded
        .experiments
        .first()
        .map(|e| e.0.clone())
        .unwrap_or_default();
    let mut breakdown = Vec::new();
    for (variant, label) in [
        (Variant::All, "no filter".to_string()),
        (
            Variant::Experiment(largest),
            format!(
                "largest experiment ({} runs)",
                seeded.experiments.first().map_or(0, |e| e.1)
            ),
        ),
        (Variant::State("RUNNING"), "state=RUNNING".to_string()),
        (Variant::State("SUCCEEDED"), "state=SUCCEEDED".to_string()),
    ] {
        let mut row =
            scenarios::breakdown(&store, &variant, args.breakdown_samples, args.explain).await?;
        row.variant = label;
        breakdown.push(row);
    }
    store.pool().close().await;

    quiet.wait(&own).await;
    eprintln!(
        "CreateRun load: {} clients for {} s ...",
        args.create_clients, args.create_seconds
    );
    let phase = quiet.begin(&own);
    let create = scenarios::create_runs(
        &scenarios::Creator::http(&client, &kfpd.base),
        &experiments,
        &spec_json,
        args.create_clients.max(1),
        Duration::from_secs(args.create_seconds),
        args.warmup,
    )
    .await?;
    quiet.end("CreateRun", phase, &own);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after_load_rss_kib, peak_rss_kib) = kfpd.memory_kib()?;

    quiet.wait(&own).await;
    eprintln!(
        "CreateRun on the store alone: {} clients for {} s ...",
        args.create_clients, args.create_seconds
    );
    let store = SqlStore::connect(&options).await?;
    let phase = quiet.begin(&own);
    let store_create = scenarios::create_runs(
        &scenarios::Creator::Store(store.clone()),
        &experiments,
        &spec_json,
        args.create_clients.max(1),
        Duration::from_secs(args.create_seconds),
        args.warmup,
    )
    .await?;
    quiet.end("store CreateRun", phase, &own);
    store.pool().close().await;
    kfpd.stop().await?;

    let server = report::Server {
        starts,
        listening,
        idle_rss_kib,
        after_lists_rss_kib,
        after_load_rss_kib,
        peak_rss_kib,
        background: quiet.phases,
        waited_for_quiet: quiet.waited,
    };
    let report = report::Report {
        date: utc_now(),
        machine: &machine,
        backend,
        serve_args: launch.args.clone(),
        flushed,
        runs: args.runs,
        experiments: args.experiments,
        seeded: &seeded,
        server: &server,
        http: &http_measured,
        store: &store_measured,
        create: &create,
        store_create: &store_create,
        breakdown: &breakdown,
        show_plans: args.explain,
    };
    Ok(report.markdown())
}

/// Waiting for, and recording, CPU use by other processes around each phase.
struct Quiet {
    below: f64,
    max_wait: Duration,
    waited: Duration,
    phases: Vec<(String, f64)>,
}

impl Quiet {
    fn new(args: &Args) -> Quiet {
        Quiet {
            below: args.quiet_below,
            max_wait: Duration::from_secs(args.quiet_wait),
            waited: Duration::ZERO,
            phases: Vec::new(),
        }
    }

    fn pids(other: &[u32]) -> Vec<u32> {
        let mut pids = vec![std::process::id()];
        pids.extend_from_slice(other);
        pids
    }

    async fn wait(&mut self, other: &[u32]) {
        let (waited, share) =
            cpu::wait_for_quiet(&Quiet::pids(other), self.below, self.max_wait).await;
        self.waited += waited;
        if share >= self.below {
            eprintln!(
                "  other processes still use {:.0}% of the machine after {:.0} s; measuring anyway",
                share * 100.0,
                waited.as_secs_f64()
            );
        }
    }

    fn begin(&self, other: &[u32]) -> Option<cpu::Snapshot> {
        cpu::snapshot(&Quiet::pids(other))
    }

    fn end(&mut self, name: &str, before: Option<cpu::Snapshot>, other: &[u32]) {
        if let (Some(before), Some(after)) = (before, cpu::snapshot(&Quiet::pids(other))) {
            self.phases
                .push((name.to_string(), cpu::others_share(&before, &after)));
        }
    }
}

/// The compiled pipeline as compact JSON, as kfpd stores an inline spec.
fn load_spec(args: &Args) -> Result<String> {
    let path = match &args.spec {
        Some(path) => path.clone(),
        None => kfpd_testdata::Dir::Corpus
            .find()
            .map_err(|missing| {
                anyhow::anyhow!(
                    "the benchmark's default pipeline is the upstream corpus's hello_world.yaml: {missing}; or pass --spec"
                )
            })?
            .join("hello_world.yaml"),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the pipeline spec {} (pass --spec)", path.display()))?;
    let value: serde_json::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if !value.is_object() {
        bail!("{} is not a single pipeline spec document", path.display());
    }
    Ok(serde_json::to_string(&value)?)
}

async fn backend_name(store: &SqlStore) -> Result<String> {
    use kfpd_store::sql::Dialect;
    let (query, name) = match store.dialect() {
        Dialect::Sqlite => ("SELECT sqlite_version()", "SQLite"),
        Dialect::Postgres => ("SHOW server_version", "PostgreSQL"),
        Dialect::Mysql => ("SELECT VERSION()", "MySQL"),
    };
    let row = sqlx::query(query).fetch_one(store.pool()).await?;
    let version: String = sqlx::Row::try_get(&row, 0)?;
    Ok(format!("{name} {version}"))
}

fn machine() -> report::Machine {
    let cores = std::process::Command::new("nproc")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into())
        });
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    report::Machine {
        cores,
        cpu,
        memory,
        kernel,
    }
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let seconds = seed::unix_now();
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        of_day / 3_600,
        (of_day % 3_600) / 60
    )
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (credentials, host) = rest.rsplit_once('@').unwrap_or(("", rest));
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            redact("postgres://u:secret@127.0.0.1:5432/db"),
            "postgres://u@127.0.0.1:5432/db"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert!(utc_now().ends_with("UTC"));
    }
}
