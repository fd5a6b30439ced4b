//! `adopt`: how fast `kfpd adopt` brings an upstream KFP database into kfpd's
//! store. Prints numbers; asserts nothing.
//!
//! Builds upstream's tables (tests/adopt/upstream-*.sql) in a database of its own
//! on a MySQL/MariaDB or PostgreSQL server, fills it with `--runs` finished runs
//! (each with a pipeline spec, runtime parameters, a state history, a workflow
//! manifest naming one object, and `--tasks-per-run` task rows), then adopts it
//! into SQLite in a temporary directory (or `--target-server`) three times:
//! the first pass (everything), a pass with nothing changed, a pass after 1%
//! of the runs changed, and a pass after 1% of the runs were deleted upstream.
//! For each: time, upstream runs per second, runs brought and deleted, and the
//! process's peak resident memory so far.
//!
//! `cargo run --release -p kfpd-bench --bin adopt -- --source mysql://root@127.0.0.1:3306`

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use kfpd_store::sql::{Options, SqlStore};
use sqlx::{AnyConnection, Connection, Executor};

#[derive(Parser)]
#[command(about = "Benchmark of kfpd adopt")]
struct Args {
    /// The server upstream's database is made on, without a database name:
    /// `mysql://root@127.0.0.1:3306` or `postgres://postgres@127.0.0.1:5432`.
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    source: String,
    /// kfpd's database server (a database is made there); SQLite when not given.
    #[arg(long)]
    target_server: Option<String>,
    /// Upstream runs.
    #[arg(long, default_value_t = 100_000)]
    runs: usize,
    #[arg(long, default_value_t = 2)]
    tasks_per_run: usize,
    /// Upstream rows per adoption transaction.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn fixture(name: &str) -> Result<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/adopt")
        .join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

fn statements(script: &str) -> Vec<String> {
    script
        .split(";\n")
        .map(|chunk| {
            chunk
                .lines()
                .filter(|line| !line.trim_start().starts_with("-- "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|chunk| !chunk.trim().is_empty())
        .collect()
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn fill(conn: &mut AnyConnection, args: &Args, spec: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO \"experiments\" VALUES ('bench-experiment', 'bench', '', 1700000000, 1700000000, '', 'AVAILABLE')",
    )
    .await?;
    conn.execute("INSERT INTO \"default_experiments\" VALUES ('bench-experiment')")
        .await?;
    conn.execute("INSERT INTO \"db_statuses\" VALUES (true)")
        .await?;
    let spec = quote(spec);
    const PER_STATEMENT: usize = 200;
    let mut index = 0;
    while index < args.runs {
        let end = (index + PER_STATEMENT).min(args.runs);
        let mut runs = String::from(
            "INSERT INTO \"run_details\" (\"UUID\", \"ExperimentUUID\", \"DisplayName\", \"Name\", \"StorageState\", \"Namespace\", \"ServiceAccount\", \"Description\", \"CreatedAtInSec\", \"ScheduledAtInSec\", \"FinishedAtInSec\", \"Conditions\", \"PipelineId\", \"PipelineName\", \"PipelineSpecManifest\", \"RuntimeParameters\", \"PipelineRoot\", \"PipelineRuntimeManifest\", \"WorkflowRuntimeManifest\", \"State\", \"StateHistory\") VALUES ",
        );
        let mut tasks = String::from(
            "INSERT INTO \"tasks\" (\"UUID\", \"Namespace\", \"PipelineName\", \"RunUUID\", \"PodName\", \"MLMDExecutionID\", \"CreatedTimestamp\", \"StartedTimestamp\", \"FinishedTimestamp\", \"Fingerprint\", \"Name\", \"State\", \"StateHistory\", \"MLMDInputs\", \"MLMDOutputs\", \"ChildrenPods\") VALUES ",
        );
        for number in index..end {
            let id = format!("{:08x}-0000-4000-8000-{number:012}", number);
            let created = 1_700_000_000 + number as i64;
            let history = format!(
                "[{{\"UpdateTimeInSec\":{created},\"State\":\"PENDING\"}},{{\"UpdateTimeInSec\":{},\"State\":\"SUCCEEDED\"}}]",
                created + 60
            );
            let workflow = format!(
                "{{\"metadata\":{{\"name\":\"run-{number}\"}},\"status\":{{\"phase\":\"Succeeded\",\"nodes\":{{\"run-{number}-1\":{{\"outputs\":{{\"artifacts\":[{{\"name\":\"main-logs\",\"s3\":{{\"key\":\"artifacts/run-{number}/main.log\"}}}}]}}}}}}}}}}"
            );
            if number > index {
                runs.push_str(", ");
            }
            runs.push_str(&format!(
                "({}, 'bench-experiment', {}, {}, 'AVAILABLE', '', 'pipeline-runner', '', {created}, {created}, {}, 'Succeeded', '', '', {spec}, '{{\"n\": {number}, \"text\": \"hello\"}}', 'minio://mlpipeline/v2/artifacts', '', {}, 'SUCCEEDED', {})",
                quote(&id),
                quote(&format!("run {number}")),
                quote(&format!("run-{number}")),
                created + 60,
                quote(&workflow),
                quote(&history),
            ));
            for task in 0..args.tasks_per_run {
                if number > index || task > 0 {
                    tasks.push_str(", ");
                }
                tasks.push_str(&format!(
                    "({}, '', '', {}, {}, '{}', {created}, {created}, {}, '', 'task-{task}', 'SUCCEEDED', NULL, '{{\"in\":{{\"artifact_ids\":[{}]}}}}', '{{\"out\":{{\"artifact_ids\":[{}]}}}}', NULL)",
                    quote(&format!("{id}-t{task}")),
                    quote(&id),
                    quote(&format!("run-{number}-{task}")),
                    number * 10 + task,
                    created + 50,
                    number * 10 + task,
                    number * 10 + task + 1,
                ));
            }
        }
        conn.execute(runs.as_str()).await?;
        if args.tasks_per_run > 0 {
            conn.execute(tasks.as_str()).await?;
        }
        index = end;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    sqlx::any::install_default_drivers();
    let postgres = args.source.starts_with("postgres");
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let database = format!("kfp_upstream_bench_{suffix}");
    let admin = if postgres {
        format!("{}/postgres", args.source)
    } else {
        args.source.clone()
    };
    let mut conn = AnyConnection::connect(&admin).await?;
    conn.execute(format!("CREATE DATABASE {database}").as_str())
        .await?;
    let source_url = format!("{}/{database}", args.source);
    let result = run(&args, &source_url, postgres).await;
    let drop = if postgres {
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    } else {
        format!("DROP DATABASE IF EXISTS {database}")
    };
    conn.execute(drop.as_str()).await?;
    result
}

async fn run(args: &Args, source_url: &str, postgres: bool) -> Result<()> {
    let mut conn = AnyConnection::connect(source_url).await?;
    if !postgres {
        conn.execute(
            "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,NO_BACKSLASH_ESCAPES')",
        )
        .await?;
    }
    let ddl = fixture(if postgres {
        "upstream-postgres.sql"
    } else {
        "upstream-mysql.sql"
    })?;
    for statement in statements(&ddl) {
        conn.execute(statement.as_str()).await?;
    }
    let spec = std::fs::read_to_string(kfpd_testdata::pipeline("parameters.yaml"))?;
    let started = Instant::now();
    fill(&mut conn, args, &spec).await?;
    println!(
        "upstream: {} runs, {} tasks, {} source, filled in {:.1} s",
        args.runs,
        args.runs * args.tasks_per_run,
        if postgres { "postgres" } else { "mysql" },
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let (target_url, target_db) = match &args.target_server {
        Some(server) => {
            let name = format!(
                "kfpd_adopt_bench_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..10]
            );
            (format!("{server}/{name}"), Some(name))
        }
        None => (
            format!("sqlite://{}", dir.path().join("kfpd.db").display()),
            None,
        ),
    };
    let store = SqlStore::connect(&Options::new(&target_url)).await?;
    let options = kfpd_adopt::Options {
        batch_size: args.batch_size,
        ..kfpd_adopt::Options::default()
    };
    println!("target: {}", kfpd_adopt::redact(&target_url));
    println!(
        "{:<24} {:>10} {:>12} {:>12} {:>12} {:>14}",
        "pass", "seconds", "runs/s", "runs brought", "runs deleted", "peak RSS MiB"
    );
    let pass = |name: &'static str, seconds: f64, report: &kfpd_adopt::Report| {
        let brought = report
            .table("run_details")
            .map(|table| table.new + table.changed)
            .unwrap_or(0);
        let deleted = report
            .table("run_details")
            .map(|table| table.deleted)
            .unwrap_or(0);
        println!(
            "{name:<24} {seconds:>10.2} {:>12.0} {brought:>12} {deleted:>12} {:>14.0}",
            args.runs as f64 / seconds,
            peak_rss_mib()
        );
    };
    let started = Instant::now();
    let report = kfpd_adopt::adopt(source_url, &store, &options).await?;
    pass(
        "first (everything)",
        started.elapsed().as_secs_f64(),
        &report,
    );
    let started = Instant::now();
    let report = kfpd_adopt::adopt(source_url, &store, &options).await?;
    pass(
        "again, nothing changed",
        started.elapsed().as_secs_f64(),
        &report,
    );
    let changed = (args.runs / 100).max(1);
    conn.execute(
        format!(
            "UPDATE \"run_details\" SET \"Description\" = 'changed' WHERE \"CreatedAtInSec\" < {}",
            1_700_000_000 + changed as i64
        )
        .as_str(),
    )
    .await?;
    let started = Instant::now();
    let report = kfpd_adopt::adopt(source_url, &store, &options).await?;
    pass(
        "again, 1% changed",
        started.elapsed().as_secs_f64(),
        &report,
    );
    // The newest 1% deleted upstream, tasks first as upstream's DeleteRun does.
    let newest = 1_700_000_000 + (args.runs - changed) as i64;
    for statement in [
        format!("DELETE FROM \"tasks\" WHERE \"CreatedTimestamp\" >= {newest}"),
        format!("DELETE FROM \"run_details\" WHERE \"CreatedAtInSec\" >= {newest}"),
    ] {
        conn.execute(statement.as_str()).await?;
    }
    let started = Instant::now();
    let report = kfpd_adopt::adopt(source_url, &store, &options).await?;
    pass(
        "again, 1% deleted",
        started.elapsed().as_secs_f64(),
        &report,
    );
    drop(store);
    if let (Some(server), Some(name)) = (&args.target_server, target_db) {
        kfpd_store::sql::drop_database(&format!("{server}/{name}"))
            .await
            .ok();
    }
    Ok(())
}
