//! The `kfpd` binary: subcommands and nothing else.

use clap::{Parser, Subcommand};
use kfpd_server::logging::LogFormat;

#[derive(Parser)]
#[command(
    name = "kfpd",
    version,
    about = "Kubeflow Pipelines backend in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the KFP v2beta1 REST API (SQLite under ./kfpd-data unless configured).
    Serve(kfpd_server::ServeArgs),
    /// Fire recurring runs, without serving the API: for a scheduler of its own
    /// next to `kfpd serve --scheduler off`, or several for availability (each
    /// tick fires once). Takes the same database settings as `serve`.
    Scheduler(kfpd_server::ServeArgs),
    /// Watch the Argo Workflows of runs and report their states to the API server
    /// (the persistence agent), for an agent of its own next to `kfpd serve
    /// --executor argo` with KFPD_AGENT=off.
    Agent(kfpd_server::agent::AgentArgs),
    /// Run one compiled pipeline here, without a server, showing task progress;
    /// exits non-zero when the run does not succeed.
    Run(RunCommand),
    /// Print the workflow the server would submit for a run of a pipeline with its
    /// default parameters (`--target argo`: an Argo Workflow, see docs/argo.md).
    Compile(CompileCommand),
    /// Ask the API server to decide one task of a run executed on Argo (the driver
    /// request of docs/argo.md) and print its JSON answer; exits 1 when refused.
    Driver(kfpd_server::driver::DriverArgs),
    /// Run one container task of a run executed on Argo, as its pod's main process
    /// (docs/argo.md); exits with the task's status.
    Launcher(kfpd_server::launcher::LauncherArgs),
    /// Show or clean the per-image Python environments tasks run in.
    Envs(EnvsCommand),
    /// Apply the retention settings once (`--artifact-retention-days`,
    /// `--run-retention-days`, `--run-retention-per-experiment`) and print what was
    /// deleted; `kfpd serve` does the same every `--retention-interval`.
    Gc(GcCommand),
    /// Bring an upstream KFP database (its experiments, pipelines, runs, recurring
    /// runs and tasks) into kfpd's database, keeping ids, names, states and times;
    /// run again to bring only what changed since (docs/upgrade.md).
    Adopt(AdoptCommand),
    /// Make a namespace's own object store key, reaching only that namespace's
    /// artifacts, through the store's IAM API, and print it as the Secret the
    /// namespace's workflow pods read (docs/multi-user.md); `--print-policy` shows
    /// the key's policy and makes nothing.
    NamespaceKey(kfpd_server::namespace_key::NamespaceKeyArgs),
}

#[derive(clap::Args)]
struct AdoptCommand {
    /// The upstream database: `mysql://user:password@host:3306/mlpipeline`, or
    /// `postgres://user:password@host:5432/mlpipeline` (add `?schema=NAME` for a
    /// schema other than the user's default). It is only read. [default: --adopt-from]
    #[arg(long = "from", value_name = "URL")]
    from: Option<String>,
    /// Print what would be brought and every row that cannot be, writing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Upstream rows per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch_size: u64,
    #[command(flatten)]
    settings: kfpd_server::ServeArgs,
}

#[derive(clap::Args)]
struct GcCommand {
    /// Print what would be deleted, deleting nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    settings: kfpd_server::ServeArgs,
}

#[derive(clap::Args)]
struct EnvsCommand {
    /// Where the environments live [default: $XDG_CACHE_HOME/kfpd/envs, else ~/.cache/kfpd/envs].
    #[arg(long, env = "KFPD_ENVS_DIR", global = true, value_name = "DIR")]
    envs_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    action: EnvsAction,
}

#[derive(Subcommand)]
enum EnvsAction {
    /// List the environments: image, interpreter, size, last use and whether it is usable.
    List,
    /// Remove stale environments (interpreter gone or changed, made by another kfpd
    /// version, half made) and abandoned builds; with options, more.
    Prune {
        /// Also remove environments no kfpd used for this long: 30d, 12h, 90m, 45s.
        #[arg(long, value_name = "AGE", value_parser = kfpd_runtime::cache::parse_age)]
        unused_for: Option<std::time::Duration>,
        /// Remove every environment (they are made again when a task needs one).
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Args)]
struct CompileCommand {
    /// Compiled pipeline: YAML, JSON, zip or tar.gz.
    pipeline: std::path::PathBuf,
    /// What to compile for; `argo` is the only target.
    #[arg(long, value_parser = ["argo"])]
    target: String,
    /// The Argo Workflows version the Workflow is for: 3.7 or 4.0 (the output is
    /// valid for both).
    #[arg(long, default_value = "3.7", value_parser = ["3.7", "4.0"])]
    argo_version: String,
    /// The Workflow as a multi-user server submits it: pods carry a projected
    /// service-account token, driver requests are `kfpd driver` pods.
    #[arg(long)]
    multi_user: bool,
    /// Write the Workflow to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct RunCommand {
    /// Compiled pipeline: YAML, JSON, zip or tar.gz.
    pipeline: std::path::PathBuf,
    /// A pipeline parameter, `name=value` (JSON for non-string inputs); repeatable.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Keep the run's database, artifacts and logs in this directory
    /// (default: a temporary directory removed afterwards).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// How many task processes may run at once.
    #[arg(long, default_value_t = 64)]
    max_parallel_tasks: usize,
    /// Install this pip requirement instead of the `kfp==<version>` a lightweight
    /// component pins, e.g. `kfp==2.15.0` (see `kfpd serve --help`).
    #[arg(long, env = "KFPD_KFP_PACKAGE", value_name = "REQUIREMENT")]
    kfp_package: Option<String>,
    /// Log lines as `text` (coloured only on a terminal, never with NO_COLOR set)
    /// or `json` (one object a line). [default: text]
    #[arg(long, env = "KFPD_LOG_FORMAT", value_name = "text|json")]
    log_format: Option<String>,
}

/// A subcommand with its settings resolved.
enum Loaded {
    Serve(kfpd_server::Config),
    Scheduler(kfpd_server::Config),
    Agent(kfpd_server::agent::AgentArgs),
    Run(RunCommand),
    Gc(kfpd_server::Config, bool),
    Adopt(kfpd_server::Config, String, kfpd_adopt::Options),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Settings are read before logging starts: they choose the log format.
    let (command, log_format) = match cli.command {
        // Pure: no runtime, no logging set-up, only errors on stderr.
        Command::Compile(command) => return compile(&command),
        Command::Driver(args) => return driver(&args),
        Command::Launcher(args) => return launcher(&args),
        Command::NamespaceKey(args) => return namespace_key(&args),
        Command::Envs(command) => return envs(command),
        Command::Serve(args) => {
            let config = kfpd_server::Config::load(&args)?;
            let format = config.log_format;
            (Loaded::Serve(config), format)
        }
        Command::Scheduler(args) => {
            let config = kfpd_server::Config::load(&args)?;
            let format = config.log_format;
            (Loaded::Scheduler(config), format)
        }
        Command::Gc(command) => {
            let config = kfpd_server::Config::load(&command.settings)?;
            let format = config.log_format;
            (Loaded::Gc(config, command.dry_run), format)
        }
        Command::Adopt(command) => {
            let config = kfpd_server::Config::load(&command.settings)?;
            let format = config.log_format;
            let source = command
                .from
                .clone()
                .or_else(|| config.adopt_from.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!("kfpd adopt needs the upstream database: --from mysql://…/mlpipeline or postgres://…/mlpipeline")
                })?;
            let options = kfpd_server::adopt_options(command.dry_run, command.batch_size as usize);
            (Loaded::Adopt(config, source, options), format)
        }
        Command::Agent(args) => {
            let format = match &args.log_format {
                Some(text) => text
                    .parse()
                    .map_err(|message| anyhow::anyhow!("invalid setting log_format: {message}"))?,
                None => LogFormat::default(),
            };
            (Loaded::Agent(args), format)
        }
        Command::Run(command) => {
            let format = match &command.log_format {
                Some(text) => text
                    .parse()
                    .map_err(|message| anyhow::anyhow!("invalid setting log_format: {message}"))?,
                None => LogFormat::default(),
            };
            (Loaded::Run(command), format)
        }
    };
    kfpd_server::logging::init(log_format);
    // Every subcommand may run tasks or serve many clients; each task holds a few
    // descriptors, more than the usual soft limit of 1024 allows for hundreds.
    match kfpd_runtime::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        Loaded::Serve(config) => runtime.block_on(serve(config)),
        Loaded::Scheduler(config) => runtime.block_on(scheduler(config)),
        Loaded::Gc(config, dry_run) => {
            let report = runtime.block_on(kfpd_server::gc(config, dry_run))?;
            print!("{report}");
            if report.failures > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Loaded::Adopt(config, source, options) => {
            let report = runtime.block_on(kfpd_server::adopt(&config, &source, &options))?;
            print!("{report}");
            Ok(())
        }
        Loaded::Agent(args) => runtime.block_on(async {
            kfpd_server::agent::run_alone(&args, shutdown_signal())
                .await
                .map_err(anyhow::Error::msg)
        }),
        Loaded::Run(command) => {
            let succeeded = runtime.block_on(run(command))?;
            if !succeeded {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn compile(command: &CompileCommand) -> anyhow::Result<()> {
    use anyhow::Context;
    let bytes = std::fs::read(&command.pipeline)
        .with_context(|| format!("cannot read {}", command.pipeline.display()))?;
    let file_name = command
        .pipeline
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let package = kfpd_ir::read_package(&file_name, &bytes).with_context(|| {
        format!(
            "{} is not a pipeline kfpd can run",
            command.pipeline.display()
        )
    })?;
    let options = kfpd_argo::Options {
        argo_version: command.argo_version.parse()?,
        service_account_token: command.multi_user,
        ..kfpd_argo::Options::default()
    };
    let yaml = kfpd_argo::compile_yaml(&package, &options)
        .with_context(|| format!("cannot compile {}", command.pipeline.display()))?;
    match &command.output {
        Some(path) => std::fs::write(path, yaml)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{yaml}"),
    }
    Ok(())
}

/// Prints the server's answer on stdout, or its refusal on stderr with exit status 1.
fn driver(args: &kfpd_server::driver::DriverArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(kfpd_server::driver::drive(args)) {
        Ok(answer) => {
            print!("{answer}");
            Ok(())
        }
        Err(error) => {
            eprintln!("kfpd driver: {error}");
            std::process::exit(1);
        }
    }
}

/// Prints the Secret (or the policy); exits 1 with the reason on stderr.
fn namespace_key(args: &kfpd_server::namespace_key::NamespaceKeyArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(kfpd_server::namespace_key::run(args)) {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(error) => {
            eprintln!("kfpd namespace-key: {error}");
            std::process::exit(1);
        }
    }
}

/// Runs the task; exits with its status, or 1 with the reason on stderr.
fn launcher(args: &kfpd_server::launcher::LauncherArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(kfpd_server::launcher::launch(args)) {
        Ok(0) => Ok(()),
        Ok(status) => std::process::exit(status),
        Err(error) => {
            eprintln!("kfpd launcher: {error}");
            std::process::exit(1);
        }
    }
}

fn envs(command: EnvsCommand) -> anyhow::Result<()> {
    let envs_dir = command
        .envs_dir
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(kfpd_server::engine::default_envs_dir);
    let now = std::time::SystemTime::now();
    match command.action {
        EnvsAction::List => {
            let entries = kfpd_runtime::cache::list(&envs_dir)?;
            println!("{}", envs_dir.display());
            print!("{}", kfpd_runtime::cache::table(&entries, now));
        }
        EnvsAction::Prune { unused_for, all } => {
            let options = kfpd_runtime::cache::Prune { unused_for, all };
            let removed = kfpd_runtime::cache::prune(&envs_dir, options, now)?;
            let freed: u64 = removed.iter().map(|entry| entry.size).sum();
            for entry in &removed {
                println!("removed {}", entry.path.display());
            }
            println!(
                "{} environment(s) removed, {} freed",
                removed.len(),
                kfpd_runtime::cache::human_size(freed)
            );
        }
    }
    Ok(())
}

async fn run(command: RunCommand) -> anyhow::Result<bool> {
    let args = kfpd_server::local_run::RunArgs {
        pipeline: command.pipeline,
        params: command.params,
        data_dir: command.data_dir,
        max_parallel_tasks: command.max_parallel_tasks,
        kfp_package: command.kfp_package,
    };
    let (state, error) = kfpd_server::local_run::run(args).await?;
    match &error {
        Some(error) => eprintln!("run {}: {error}", state.as_str()),
        None => eprintln!("run {}", state.as_str()),
    }
    Ok(state == kfpd_server::RunState::Succeeded)
}

async fn serve(config: kfpd_server::Config) -> anyhow::Result<()> {
    kfpd_server::serve(config, shutdown_signal()).await?;
    Ok(())
}

async fn scheduler(config: kfpd_server::Config) -> anyhow::Result<()> {
    kfpd_server::scheduler::run_alone(config, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not
/// when the future is first polled, so a signal sent as soon as the `listening` line
/// appears still shuts down cleanly instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let (mut interrupt, mut terminate) = match (interrupt, terminate) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGTERM or ctrl-c");
                std::future::pending::<()>().await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down");
    }
}
