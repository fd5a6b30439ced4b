//! The `kfpd` binary: subcommands and nothing else.

use clap::{Parser, Subcommand};

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
    /// Run one compiled pipeline here, without a server, showing task progress;
    /// exits non-zero when the run does not succeed.
    Run(RunCommand),
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KFPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Every subcommand may run tasks or serve many clients; each task holds a few
    // descriptors, more than the usual soft limit of 1024 allows for hundreds.
    match kfpd_runtime::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Scheduler(args) => runtime.block_on(scheduler(args)),
        Command::Run(command) => {
            let succeeded = runtime.block_on(run(command))?;
            if !succeeded {
                std::process::exit(1);
            }
            Ok(())
        }
    }
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

async fn serve(args: kfpd_server::ServeArgs) -> anyhow::Result<()> {
    let config = kfpd_server::Config::load(&args)?;
    kfpd_server::serve(config, shutdown_signal()).await?;
    Ok(())
}

async fn scheduler(args: kfpd_server::ServeArgs) -> anyhow::Result<()> {
    let config = kfpd_server::Config::load(&args)?;
    kfpd_server::scheduler::run_alone(config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
