//! `engine_control_flow`: control-flow scenarios of kfpd's engine, end to end
//! through the real `kfpd serve` over REST. Prints numbers; asserts nothing.
//!
//! - parallelfor: one run whose `ParallelFor` has 1,000 trivial `sh` tasks, from
//!   CreateRun until GetRun says SUCCEEDED;
//! - fanout: a `ParallelFor` of 50 lightweight Python components with a
//!   `dsl.Collected` fan-in (compiled with the SDK), on kfpd, next to the SDK's
//!   `kfp.local.SubprocessRunner` running the same 51 tasks (it has no ParallelFor
//!   in kfp 2.15.0, so the 50 calls and the fan-in run one after another).
//!
//! `cargo run --release -p kfpd-bench --bin engine_control_flow -- --help`

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Parallelfor,
    Fanout,
}

#[derive(Parser, Debug)]
#[command(
    name = "engine_control_flow",
    about = "Measures kfpd's ParallelFor and fan-out/fan-in through kfpd serve"
)]
struct Args {
    /// The kfpd binary [default: $CARGO_TARGET_DIR/release/kfpd, else target/release/kfpd].
    #[arg(long)]
    kfpd_bin: Option<PathBuf>,
    /// Python with kfp 2.15.0, for compiling and for kfp.local
    /// [default: $KFPD_E2E_VENV/bin/python, else ~/.cache/kfpd-e2e-venv/bin/python].
    #[arg(long)]
    python: Option<PathBuf>,
    /// What to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "parallelfor,fanout"
    )]
    only: Vec<Scenario>,
    /// Iterations of the `sh` ParallelFor.
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// Measured runs of the `sh` ParallelFor.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Items of the Python fan-out.
    #[arg(long, default_value_t = 50)]
    fanout: usize,
    /// `--max-parallel-tasks` of the server.
    #[arg(long, default_value_t = 64)]
    max_parallel_tasks: usize,
    /// Keep the server's data directory (printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let kfpd = args.kfpd_bin.clone().unwrap_or_else(default_kfpd);
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
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("# kfpd engine: control flow\n");
    println!(
        "Machine: {cpus} CPUs; server `--max-parallel-tasks {}`.\n",
        args.max_parallel_tasks
    );
    let data = tempfile::Builder::new()
        .prefix("kfpd-bench-cf-")
        .tempdir()
        .context("cannot make a temp dir")?;
    let server = Server::start(&kfpd, data.path(), args.max_parallel_tasks)?;
    let outcome = runtime.block_on(async {
        if args.only.contains(&Scenario::Parallelfor) {
            parallelfor(&server, &args).await?;
        }
        if args.only.contains(&Scenario::Fanout) {
            fanout(&server, &args, data.path()).await?;
        }
        Ok::<(), anyhow::Error>(())
    });
    drop(server);
    if args.keep {
        let kept = data.keep();
        eprintln!("data kept in {}", kept.display());
    }
    outcome
}

fn default_kfpd() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("release").join("kfpd"),
        None => PathBuf::from("target/release/kfpd"),
    }
}

fn default_python() -> PathBuf {
    let venv = std::env::var_os("KFPD_E2E_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kfpd-e2e-venv"))
        })
        .unwrap_or_else(|| PathBuf::from(".venv"));
    venv.join("bin").join("python")
}

/// `kfpd serve` on a free port with its own data directory.
struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Server {
    fn start(binary: &Path, data: &Path, max_parallel_tasks: usize) -> Result<Server> {
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "off",
                "--executor",
                "local",
            ])
            .arg("--data-dir")
            .arg(data)
            .arg("--max-parallel-tasks")
            .arg(max_parallel_tasks.to_string())
            .env("KFPD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("kfpd has no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("kfpd exited before it listened");
            };
            let line = line.context("cannot read kfpd's stdout")?;
            if let Some(address) = line.strip_prefix("kfpd listening on ") {
                break address.trim().to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Server {
            child,
            base,
            client,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/apis/v2beta1{path}", self.base)
    }

    /// Creates a run of `spec` and returns (its id, when it was created).
    async fn create_run(&self, name: &str, spec: &Value) -> Result<(String, Instant)> {
        let body = json!({"display_name": name, "pipeline_spec": spec, "runtime_config": {"parameters": {}}});
        let started = Instant::now();
        let response = self
            .client
            .post(self.url("/runs"))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let run: Value = response.json().await?;
        if !status.is_success() {
            bail!("CreateRun answered {status}: {run}");
        }
        let id = run["run_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no run_id in {run}"))?;
        Ok((id.to_string(), started))
    }

    /// Polls every 20 ms until the run ends; returns the run (with its task details)
    /// and the time since `started`. Polls ListRuns, which leaves out the task
    /// details, so that watching a run of 2,000 tasks does not load the server.
    async fn wait(
        &self,
        run_id: &str,
        started: Instant,
        limit: Duration,
    ) -> Result<(Value, Duration)> {
        let filter = json!({"predicates": [{"key": "run_id", "operation": "EQUALS", "string_value": run_id}]});
        let filter = filter.to_string();
        loop {
            let page: Value = self
                .client
                .get(self.url("/runs"))
                .query(&[("filter", filter.as_str()), ("page_size", "1")])
                .send()
                .await?
                .json()
                .await?;
            let state = page["runs"][0]["state"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if matches!(
                state.as_str(),
                "SUCCEEDED" | "FAILED" | "CANCELED" | "SKIPPED"
            ) {
                let elapsed = started.elapsed();
                let run: Value = self
                    .client
                    .get(self.url(&format!("/runs/{run_id}")))
                    .send()
                    .await?
                    .json()
                    .await?;
                if state != "SUCCEEDED" {
                    bail!("run {run_id} ended {state}: {}", run["error"]);
                }
                return Ok((run, elapsed));
            }
            if started.elapsed() > limit {
                bail!("run {run_id} still {state:?} after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// CPU seconds used by the server itself and by the task processes it ran
    /// (reaped children), from /proc.
    fn cpu(&self) -> Option<(f64, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|field| field.parse::<f64>().ok())
        };
        // After the command name: utime 11, stime 12, cutime 13, cstime 14 (0-based from state).
        let hz = 100.0;
        Some((
            (ticks(11)? + ticks(12)?) / hz,
            (ticks(13)? + ticks(14)?) / hz,
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipeline whose root is one ParallelFor of `items` `sh` tasks.
fn sh_loop_spec(items: usize) -> Value {
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

async fn parallelfor(server: &Server, args: &Args) -> Result<()> {
    eprintln!("parallelfor: warming up (creates the image's environment once)");
    let (warm, started) = server.create_run("warm-up", &sh_loop_spec(4)).await?;
    server
        .wait(&warm, started, Duration::from_secs(300))
        .await?;
    let spec = sh_loop_spec(args.items);
    let mut times = Vec::with_capacity(args.repeats);
    let mut cpu = Vec::with_capacity(args.repeats);
    for repeat in 1..=args.repeats.max(1) {
        eprintln!("parallelfor: run {repeat} of {}", args.repeats.max(1));
        let before = server.cpu();
        let (run_id, started) = server
            .create_run(&format!("parallelfor-{repeat}"), &spec)
            .await?;
        let (run, elapsed) = server
            .wait(&run_id, started, Duration::from_secs(1800))
            .await?;
        let after = server.cpu();
        cpu.push(before.zip(after).map(|(b, a)| (a.0 - b.0, a.1 - b.1)));
        let tasks = run["run_details"]["task_details"]
            .as_array()
            .map_or(0, Vec::len);
        let expected = 1 + 1 + 2 * args.items; // root, loop, per item an iteration and its task
        if tasks != expected {
            bail!("run {run_id} recorded {tasks} tasks, expected {expected}");
        }
        times.push(elapsed);
    }
    println!(
        "## ParallelFor of {} `sh` tasks (CreateRun → SUCCEEDED)\n",
        args.items
    );
    println!("| run | seconds | tasks/s | CPU s: kfpd | CPU s: task processes |");
    println!("|---|---|---|---|---|");
    for (index, time) in times.iter().enumerate() {
        let (own, tasks) = match cpu[index] {
            Some((own, tasks)) => (format!("{own:.2}"), format!("{tasks:.2}")),
            None => ("?".to_string(), "?".to_string()),
        };
        println!(
            "| {} | {:.2} | {:.0} | {own} | {tasks} |",
            index + 1,
            time.as_secs_f64(),
            args.items as f64 / time.as_secs_f64()
        );
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "\nMedian {:.2} s for {} tasks ({:.1} ms per task); target ≤ 10 s.\n",
        median.as_secs_f64(),
        args.items,
        median.as_secs_f64() * 1000.0 / args.items as f64
    );
    Ok(())
}

/// Compiles the fan-out pipeline and, with `local`, runs the same tasks under
/// kfp.local.SubprocessRunner, printing one JSON line.
const FANOUT_SCRIPT: &str = r#"
import json, sys, time, warnings
from typing import List
warnings.filterwarnings("ignore")
from kfp import compiler, dsl, local

@dsl.component
def square(x: int) -> int:
    return x * x

@dsl.component
def total(xs: List[int]) -> int:
    # kfp.local passes list items as floats (protobuf Values); kfpd as integers.
    return int(sum(xs))

mode, n = sys.argv[1], int(sys.argv[2])
if mode == "compile":
    @dsl.pipeline(name="bench-fanout")
    def fanout():
        with dsl.ParallelFor(items=list(range(n))) as item:
            squared = square(x=item).set_caching_options(False)
        total(xs=dsl.Collected(squared.output)).set_caching_options(False)
    compiler.Compiler().compile(fanout, sys.argv[3])
else:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[3])
    started = time.monotonic()
    values = [square(x=i).output for i in range(n)]
    result = total(xs=values).output
    print(json.dumps({"seconds": time.monotonic() - started, "total": result}))
"#;

async fn fanout(server: &Server, args: &Args, data: &Path) -> Result<()> {
    let python = args.python.clone().unwrap_or_else(default_python);
    let script = data.join("fanout.py");
    std::fs::write(&script, FANOUT_SCRIPT).context("cannot write the fan-out script")?;
    let compiled = data.join("fanout.yaml");
    let status = Command::new(&python)
        .arg(&script)
        .args(["compile", &args.fanout.to_string()])
        .arg(&compiled)
        .status()
        .with_context(|| {
            format!(
                "cannot run {} (set --python to a venv with kfp 2.15.0)",
                python.display()
            )
        })?;
    if !status.success() {
        bail!("compiling the fan-out pipeline failed");
    }
    let yaml = std::fs::read_to_string(&compiled).context("cannot read the compiled pipeline")?;
    let spec: Value = serde_yaml::from_str(&yaml).context("the compiled pipeline is not YAML")?;

    eprintln!("fanout: warming up kfpd (the python:3.11 environment and its kfp install)");
    let (warm, started) = server.create_run("fanout-warm-up", &spec).await?;
    server
        .wait(&warm, started, Duration::from_secs(900))
        .await?;
    eprintln!("fanout: measuring kfpd");
    let (run_id, started) = server.create_run("fanout", &spec).await?;
    let (_, kfpd_time) = server
        .wait(&run_id, started, Duration::from_secs(900))
        .await?;

    eprintln!("fanout: measuring kfp.local.SubprocessRunner (tasks one at a time)");
    let output = Command::new(&python)
        .arg(&script)
        .args(["local", &args.fanout.to_string()])
        .arg(data.join("local-outputs"))
        .stderr(Stdio::null())
        .output()
        .context("cannot run kfp.local")?;
    let line = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let local: Value =
        serde_json::from_str(&line).with_context(|| format!("kfp.local printed {line:?}"))?;
    let local_secs = local["seconds"]
        .as_f64()
        .ok_or_else(|| anyhow!("no seconds in {local}"))?;
    let expected: usize = (0..args.fanout).map(|x| x * x).sum();
    if local["total"].as_u64() != Some(expected as u64) {
        bail!(
            "kfp.local computed {} instead of {expected}",
            local["total"]
        );
    }
    let tasks = args.fanout + 1;
    println!(
        "## Fan-out of {} lightweight Python components with a fan-in ({tasks} tasks)\n",
        args.fanout
    );
    println!("| runner | seconds | per task |");
    println!("|---|---|---|");
    println!(
        "| kfpd (ParallelFor + Collected, through REST) | {:.2} | {:.0} ms |",
        kfpd_time.as_secs_f64(),
        kfpd_time.as_secs_f64() * 1000.0 / tasks as f64
    );
    println!(
        "| kfp.local.SubprocessRunner(use_venv=False), one at a time | {:.2} | {:.0} ms |",
        local_secs,
        local_secs * 1000.0 / tasks as f64
    );
    println!(
        "\nkfpd is {:.1}× faster (one run each); target ≥ 15×.\n",
        local_secs / kfpd_time.as_secs_f64()
    );
    Ok(())
}
