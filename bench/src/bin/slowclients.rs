//! `slowclients`: the latency of normal REST calls to the real `kfpd serve` while
//! it holds many idle and slow connections, and its memory. Prints and asserts
//! nothing.
//!
//! Phases: (1) a few normal clients alone; (2) the same while `--idle` REST and
//! `--idle-grpc` gRPC connections sit idle, `--slow-headers` clients drip a request
//! head and `--slow-bodies` clients drip a request body, one byte a second each;
//! (3) waiting past the server's header and body timeouts, how many of the
//! dripping clients it cut off, and whether it still answers.
//!
//! `cargo run --release -p kfpd-bench --bin slowclients -- --help`

#[allow(dead_code)]
#[path = "../server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../stats.rs"]
mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use stats::{ms, Samples};

#[derive(Parser)]
struct Args {
    /// Idle REST connections held in phase 2.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Idle gRPC connections held in phase 2.
    #[arg(long, default_value_t = 500)]
    idle_grpc: usize,
    /// Clients dripping a request head, one byte a second.
    #[arg(long, default_value_t = 250)]
    slow_headers: usize,
    /// Clients dripping a request body, one byte a second.
    #[arg(long, default_value_t = 250)]
    slow_bodies: usize,
    /// Concurrent normal clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seconds each measuring phase lasts.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The server's `--header-read-timeout` (phase 3 waits past it).
    #[arg(long, default_value = "10s")]
    header_read_timeout: String,
    /// The server's `--body-read-timeout`.
    #[arg(long, default_value = "20s")]
    body_read_timeout: String,
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
}

/// Raises the soft limit on open files to the hard limit: this program holds
/// every client socket.
fn raise_open_files() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Normal clients calling GET /runs and healthz for `seconds`.
async fn measure(
    client: &reqwest::Client,
    base: &str,
    clients: usize,
    seconds: u64,
) -> (Samples, usize) {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for index in 0..clients {
        let client = client.clone();
        let base = base.to_string();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut errors = 0;
            let mut turn = index;
            while Instant::now() < until {
                let path = if turn % 2 == 0 {
                    "/apis/v2beta1/runs?page_size=20"
                } else {
                    "/apis/v2beta1/healthz"
                };
                turn += 1;
                let started = Instant::now();
                let ok = match client.get(format!("{base}{path}")).send().await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.bytes().await;
                        status == reqwest::StatusCode::OK
                    }
                    Err(_) => false,
                };
                if ok {
                    samples.push(started.elapsed());
                } else {
                    errors += 1;
                }
            }
            (samples, errors)
        }));
    }
    let mut all = Samples::default();
    let mut errors = 0;
    for task in tasks {
        if let Ok((samples, failed)) = task.await {
            all.extend(&samples);
            errors += failed;
        }
    }
    (all, errors)
}

fn print_latency(label: &str, samples: &Samples, errors: usize, seconds: u64) {
    match samples.summary() {
        Some(summary) => println!(
            "| {label} | {} | {errors} | {:.0} | {} | {} | {} |",
            summary.count,
            summary.count as f64 / seconds as f64,
            ms(summary.p50),
            ms(summary.p99),
            ms(summary.max)
        ),
        None => println!("| {label} | 0 | {errors} | | | | |"),
    }
}

/// A client that writes `prefix`, then `drip` one byte a second until the
/// server closes the connection; counts itself in `cut` when it was cut off.
fn dripper(
    address: String,
    prefix: Vec<u8>,
    drip: Vec<u8>,
    cut: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
) {
    tokio::spawn(async move {
        let Ok(stream) = TcpStream::connect(&address).await else {
            return;
        };
        open.fetch_add(1, Ordering::Relaxed);
        let (mut reader, mut writer) = stream.into_split();
        if writer.write_all(&prefix).await.is_err() {
            return;
        }
        let closed = tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            while let Ok(read) = reader.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
            }
        });
        for byte in drip {
            if closed.is_finished() || writer.write_all(&[byte]).await.is_err() {
                cut.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn metric(text: &str, name: &str) -> String {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .unwrap_or("?")
        .to_string()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let soft = raise_open_files();
    let dir = tempfile::tempdir()?;
    let bin = args.kfpd_bin.clone().unwrap_or_else(server::default_bin);
    let launch = server::Launch {
        bin: bin.clone(),
        args: vec![
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            "--grpc-addr".into(),
            "127.0.0.1:0".into(),
            "--executor".into(),
            "none".into(),
            "--data-dir".into(),
            dir.path().display().to_string(),
            "--header-read-timeout".into(),
            args.header_read_timeout.clone(),
            "--body-read-timeout".into(),
            args.body_read_timeout.clone(),
        ],
        log: dir.path().join("kfpd.log"),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let kfpd = launch.start(&client).await?;
    let base = kfpd.base.clone();
    let rest = base.trim_start_matches("http://").to_string();
    // The gRPC port is on the second "listening" line, which Launch does not
    // keep; it is the one open TCP listener of the process other than REST's.
    let grpc = grpc_address(kfpd.pid, &rest).context("finding the gRPC port")?;

    // Some rows for GET /runs to page through.
    let spec = {
        let path = kfpd_testdata::pipeline("hello.yaml");
        let bytes = std::fs::read(&path)?;
        kfpd_ir::read_package("hello.yaml", &bytes)?.api_pipeline_spec()
    };
    for index in 0..200 {
        let body =
            serde_json::json!({"display_name": format!("run {index}"), "pipeline_spec": spec});
        client
            .post(format!("{base}/apis/v2beta1/runs"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }

    println!(
        "kfpd {} (pid {}), open files soft limit of this program {soft}",
        bin.display(),
        kfpd.pid
    );
    println!();
    println!("| phase | calls | errors | calls/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (alone, errors) = measure(&client, &base, args.clients, args.seconds).await;
    print_latency("normal clients alone", &alone, errors, args.seconds);
    let (rss_alone, _) = kfpd.memory_kib()?;

    let held_at = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..args.idle {
        idle.push(TcpStream::connect(&rest).await?);
    }
    for _ in 0..args.idle_grpc {
        idle.push(TcpStream::connect(&grpc).await?);
    }
    let header_cut = Arc::new(AtomicUsize::new(0));
    let body_cut = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    for _ in 0..args.slow_headers {
        let prefix = b"GET /apis/v2beta1/healthz HTTP/1.1\r\n".to_vec();
        let drip = "x-drip: a\r\n".repeat(60).into_bytes();
        dripper(
            rest.clone(),
            prefix,
            drip,
            Arc::clone(&header_cut),
            Arc::clone(&opened),
        );
    }
    for _ in 0..args.slow_bodies {
        let prefix = format!(
            "POST /apis/v2beta1/experiments HTTP/1.1\r\nHost: {rest}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{"
        )
        .into_bytes();
        let drip = vec![b' '; 600];
        dripper(
            rest.clone(),
            prefix,
            drip,
            Arc::clone(&body_cut),
            Arc::clone(&opened),
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics_text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let open_rest = metric(&metrics_text, "kfpd_connections_open{listener=\"rest\"}");
    let open_grpc = metric(&metrics_text, "kfpd_connections_open{listener=\"grpc\"}");
    let (held, errors) = measure(&client, &base, args.clients, args.seconds).await;
    let label = format!(
        "with {} idle REST, {} idle gRPC, {} slow-header and {} slow-body connections",
        args.idle, args.idle_grpc, args.slow_headers, args.slow_bodies
    );
    print_latency(&label, &held, errors, args.seconds);
    let (rss_held, hwm) = kfpd.memory_kib()?;

    // Past both timeouts (plus the body's one second per min-rate bytes, at
    // most one here), every dripping client must have been cut off.
    let header_timeout = kfpd_duration(&args.header_read_timeout)?;
    let body_timeout = kfpd_duration(&args.body_read_timeout)?;
    let wait_until = held_at + header_timeout.max(body_timeout) + Duration::from_secs(10);
    tokio::time::sleep_until(wait_until.into()).await;
    let healthz = client
        .get(format!("{base}/apis/v2beta1/healthz"))
        .send()
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0);
    let metrics_text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    println!();
    println!("| | value |");
    println!("|---|---:|");
    println!("| connections open at kfpd while held (REST / gRPC, from /metrics) | {open_rest} / {open_grpc} |");
    println!(
        "| kfpd resident memory: normal clients alone / while held / high-water mark | {:.1} / {:.1} / {:.1} MiB |",
        rss_alone as f64 / 1024.0,
        rss_held as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "| memory per held connection | {:.1} KiB |",
        (rss_held.saturating_sub(rss_alone)) as f64
            / (args.idle + args.idle_grpc + args.slow_headers + args.slow_bodies).max(1) as f64
    );
    println!(
        "| slow-header clients cut off after --header-read-timeout {} | {} of {} |",
        args.header_read_timeout,
        header_cut.load(Ordering::Relaxed),
        args.slow_headers
    );
    println!(
        "| slow-body clients cut off after --body-read-timeout {} | {} of {} |",
        args.body_read_timeout,
        body_cut.load(Ordering::Relaxed),
        args.slow_bodies
    );
    println!(
        "| connections closed by a timeout (REST / gRPC, from /metrics) | {} / {} |",
        metric(
            &metrics_text,
            "kfpd_connections_timed_out_total{listener=\"rest\"}"
        ),
        metric(
            &metrics_text,
            "kfpd_connections_timed_out_total{listener=\"grpc\"}"
        )
    );
    println!("| healthz afterwards | {healthz} |");
    drop(idle);
    kfpd.stop().await?;
    Ok(())
}

/// The same duration syntax kfpd reads, for the few forms used here (`10s`, `1m`).
fn kfpd_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|ch: char| !ch.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .with_context(|| format!("duration {text:?}"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value * 60),
        other => anyhow::bail!("duration {text:?}: unit {other:?} is not s or m"),
    })
}

/// The listening TCP port of `pid` that is not `rest`'s, from /proc/net/tcp and
/// the process's socket inodes.
fn grpc_address(pid: u32, rest: &str) -> Result<String> {
    let rest_port: u16 = rest.rsplit(':').next().unwrap_or_default().parse()?;
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let text = target.display().to_string();
        if let Some(inode) = text
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        // 0A: LISTEN.
        if *state != "0A" || !inodes.contains(*inode) {
            continue;
        }
        let port = local
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            .unwrap_or(0);
        if port != rest_port && port != 0 {
            return Ok(format!("127.0.0.1:{port}"));
        }
    }
    anyhow::bail!("no second listening port of pid {pid}")
}
