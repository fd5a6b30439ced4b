//! The kfpd API server: configuration, the KFP services and their REST and gRPC
//! transports, started by `kfpd serve`.

pub mod access;
pub mod agent;
pub mod argo;
pub mod auth;
pub mod config;
pub mod connections;
mod convert;
pub mod driver;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod http;
pub mod launcher;
pub mod local_run;
pub mod logging;
pub mod metrics;
pub mod namespace_key;
pub mod retention;
pub mod scheduler;
pub mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use kfpd_store::sql::{Options as StoreOptions, SqlStore};

pub use config::{Config, ServeArgs};
pub use kfpd_store::RunState;
pub use service::Api;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database at {location} is not reachable after {waited:?}: {message}")]
    DatabaseUnreachable {
        location: String,
        waited: Duration,
        message: String,
    },
    #[error(
        "database at {location} refused user {user:?}: wrong credentials? check that user's password (on Kubernetes: Secret {secret}, keys username and password) ({message})"
    )]
    DatabaseCredentials {
        location: String,
        user: String,
        secret: &'static str,
        message: String,
    },
    #[error("database at {location}: {message}")]
    Database { location: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Grpc(#[from] grpc::ServeError),
    #[error("startup: {0}")]
    Startup(String),
}

/// Connects to the configured database, retrying with backoff while it is not
/// reachable (for example while its container is still starting), failing fast
/// on wrong credentials.
pub async fn open_store(config: &Config) -> Result<SqlStore, StartError> {
    let database = &config.database;
    let options = StoreOptions {
        url: database.url.clone(),
        max_connections: 16,
        conn_max_lifetime: config.conn_max_lifetime,
        busy_timeout: config.busy_timeout,
        create_database: true,
    };
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let error = match SqlStore::connect(&options).await {
            Ok(store) => return Ok(store),
            Err(error) => error,
        };
        let location = database.location.clone();
        match &error {
            kfpd_store::Error::Unauthenticated(message) => {
                return Err(StartError::DatabaseCredentials {
                    location,
                    user: database.user.clone(),
                    secret: database.credentials_secret(),
                    message: message.clone(),
                })
            }
            error if error.is_retryable() => {
                let waited = started.elapsed();
                if waited >= config.init_timeout {
                    return Err(StartError::DatabaseUnreachable {
                        location,
                        waited,
                        message: error.to_string(),
                    });
                }
                tracing::warn!(
                    location = %location,
                    error = %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "database not reachable, retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            _ => {
                return Err(StartError::Database {
                    location,
                    message: error.to_string(),
                })
            }
        }
    }
}

/// Runs `kfpd serve` until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let store = open_store(&config).await?;
    if let Some(source) = &config.adopt_from {
        adopt_before_serving(&store, source).await?;
    }
    if config.argo.is_none() {
        end_adopted_unfinished(&store).await?;
    }
    let settings = service::Settings {
        multi_user: config.multi_user,
        pod_namespace: config.namespace.clone(),
        default_service_account: config.default_service_account.clone(),
    };
    let sql_store = store.clone();
    let store: Arc<dyn kfpd_store::MetadataStore> = Arc::new(store);
    let roots = if config.allowed_pipeline_roots.is_empty() {
        kfpd_artifacts::Roots::Any
    } else {
        kfpd_artifacts::Roots::Listed(config.allowed_pipeline_roots.clone())
    };
    let artifacts = engine::open_artifacts(&config.data_dir, roots, config.create_bucket)
        .await
        .map_err(StartError::Startup)?;
    let collector = (!config.retention.is_off()).then(|| {
        retention::Collector::new(
            Arc::clone(&store),
            artifacts.clone(),
            &config.data_dir,
            config.retention,
        )
    });
    // The executor waits out a database that went away (a restart, a failover)
    // instead of losing task rows and run ends; the API answers 503 meanwhile.
    let engine_store: Arc<dyn kfpd_store::MetadataStore> =
        Arc::new(sql_store.with_patience(ENGINE_DATABASE_PATIENCE));
    let engine = engine::build_with(
        engine_store,
        artifacts.clone(),
        &config.data_dir,
        config.max_parallel_tasks,
        config.cache.clone(),
        config.kfp_package.clone(),
        // A task of one namespace must not hold the object store's keys to all.
        if config.multi_user {
            kfpd_runtime::Inherit::NoCredentials
        } else {
            kfpd_runtime::Inherit::AllButSettings
        },
    )
    .map_err(StartError::Startup)?;
    let mut api = Api::new(store, settings, service::system_clock());
    if config.multi_user {
        api = api.with_guard(
            access::guard_for(&config)
                .await
                .map_err(StartError::Startup)?,
        );
    }
    api.metrics().attach_store(sql_store);
    api.metrics().attach_engine(Arc::clone(&engine));
    if !config.local_executor {
        api = api.with_driver(Arc::clone(&engine), config.driver_patience);
    }
    let argo = match &config.argo {
        Some(settings) => Some(
            argo::Argo::connect(&config, settings)
                .await
                .map_err(StartError::Startup)?,
        ),
        None => None,
    };
    if let Some(argo) = &argo {
        api = api.with_argo(Arc::clone(argo));
    }
    let executor = config
        .local_executor
        .then(|| kfpd_engine::executor::spawn(engine));
    if let Some(executor) = &executor {
        api = api.with_execution(artifacts, executor.clone());
    }
    let scheduler = config.scheduler.then(scheduler::Scheduler::handle);
    if let Some(scheduler) = &scheduler {
        api = api.with_scheduler_wake(scheduler.wake_signal());
    }
    api.ensure_default_experiment()
        .await
        .map_err(|error| StartError::Startup(error.to_string()))?;
    if let Some(handle) = &scheduler {
        scheduler::Scheduler::new(
            api.clone(),
            scheduler::Options::default(),
            Arc::new(scheduler::SystemClock),
        )
        .spawn(handle);
    }

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.http_addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(StartError::Serve)?;
    // Both ports are bound before either is announced, so a client that read
    // the lines below can use both.
    let grpc_listener = match config.grpc_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: addr.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    tracing::info!(
        addr = %local,
        database = %config.database.location,
        driver = ?config.database.driver,
        "kfpd serving REST"
    );
    // A line tests and scripts can wait for, also when logs are filtered.
    println!("kfpd listening on http://{local}");
    // One future, awaited by both servers and the executor, so one signal stops all.
    let shutdown = shutdown.shared();
    if let Some(collector) = collector {
        tokio::spawn(collector.run_every(config.retention_interval, shutdown.clone()));
    }
    if let Some(scheduler) = scheduler {
        let scheduler_shutdown = shutdown.clone();
        tokio::spawn(async move {
            scheduler_shutdown.await;
            scheduler.shutdown();
        });
    }
    if let (Some(argo), Some(settings)) = (&argo, &config.argo) {
        if settings.agent {
            agent::spawn(
                api.clone(),
                argo.cluster.clone(),
                &argo.namespace,
                settings,
                shutdown.clone(),
            );
        }
    }
    let executor_stopped = executor.clone();
    let executor_shutdown = shutdown.clone();
    tokio::spawn(async move {
        executor_shutdown.await;
        if let Some(executor) = executor {
            executor.shutdown();
        }
    });
    let grpc = match grpc_listener {
        Some(grpc_listener) => {
            let grpc_local = grpc_listener.local_addr().map_err(StartError::Serve)?;
            tracing::info!(addr = %grpc_local, "kfpd serving gRPC");
            // Printed after the REST line, which existing scripts read first.
            println!("kfpd listening on grpc://{grpc_local}");
            grpc::serve(
                grpc_listener,
                api.clone(),
                config.grpc_max_message_bytes,
                config.connections,
                shutdown.clone(),
            )
            .map(|result| result.map_err(StartError::from))
            .boxed()
        }
        None => futures::future::ready(Ok(())).boxed(),
    };
    let app = http::router(api, config.max_body_bytes);
    let rest_shutdown = shutdown.clone();
    let rest_limits = config.connections;
    let rest = async move {
        connections::serve_rest(listener, app, rest_limits, rest_shutdown).await;
        Ok::<(), StartError>(())
    };
    // Ends once both servers have answered their last call and the executor has
    // stopped its task processes and written their rows (runs stay RUNNING and
    // the next start resumes them; runs not claimed yet stay PENDING).
    let serving = async {
        let served = tokio::try_join!(rest, grpc);
        if let Some(executor) = executor_stopped {
            executor.stopped().await;
            tracing::info!("executor stopped");
        }
        served
    };
    // Draining waits for every client, and a client that has gone silent (an
    // HTTP/2 peer that never acknowledges the shutdown PING, a stalled upload)
    // would keep the process alive until it is killed. Bound the wait instead.
    let drain_deadline = async {
        shutdown.await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    tokio::select! {
        result = serving => {
            result?;
        }
        () = drain_deadline => {
            tracing::warn!(
                limit = ?DRAIN_LIMIT,
                "connections still open after shutdown began; stopping anyway"
            );
        }
    }
    Ok(())
}

/// `kfpd gc`: one retention pass over the configured database and artifact store,
/// or with `dry_run` a report of what it would delete.
pub async fn gc(config: Config, dry_run: bool) -> Result<retention::Report, StartError> {
    let store = open_store(&config).await?;
    let store: Arc<dyn kfpd_store::MetadataStore> = Arc::new(store);
    let roots = if config.allowed_pipeline_roots.is_empty() {
        kfpd_artifacts::Roots::Any
    } else {
        kfpd_artifacts::Roots::Listed(config.allowed_pipeline_roots.clone())
    };
    let artifacts = engine::open_artifacts(&config.data_dir, roots, config.create_bucket)
        .await
        .map_err(StartError::Startup)?;
    let collector = retention::Collector::new(store, artifacts, &config.data_dir, config.retention);
    collector
        .run_once(retention::unix_now(), dry_run)
        .await
        .map_err(|error| StartError::Startup(error.to_string()))
}

/// What an adoption pass takes from the configuration: the bucket upstream's
/// object store keys are in (upstream's `OBJECTSTORECONFIG_BUCKETNAME`).
pub fn adopt_options(dry_run: bool, batch_size: usize) -> kfpd_adopt::Options {
    let bucket = std::env::var("OBJECTSTORECONFIG_BUCKETNAME")
        .ok()
        .filter(|bucket| !bucket.is_empty())
        .unwrap_or_else(|| kfpd_artifacts::DEFAULT_BUCKET.to_string());
    kfpd_adopt::Options {
        dry_run,
        batch_size,
        bucket,
    }
}

/// `kfpd adopt`: one pass from the upstream database at `source` into the
/// configured database (docs/upgrade.md).
pub async fn adopt(
    config: &Config,
    source: &str,
    options: &kfpd_adopt::Options,
) -> Result<kfpd_adopt::Report, StartError> {
    let store = open_store(config).await?;
    kfpd_adopt::adopt(source, &store, options)
        .await
        .map_err(|error| {
            StartError::Startup(format!(
                "adopting from {}: {error}",
                kfpd_adopt::redact(source)
            ))
        })
}

/// The pass `kfpd serve --adopt-from` makes before it serves.
async fn adopt_before_serving(store: &SqlStore, source: &str) -> Result<(), StartError> {
    let options = adopt_options(false, 500);
    let report = kfpd_adopt::adopt(source, store, &options)
        .await
        .map_err(|error| {
            StartError::Startup(format!(
                "adopting from {}: {error}",
                kfpd_adopt::redact(source)
            ))
        })?;
    tracing::info!(
        source = %report.source,
        brought = report.brought(),
        unchanged = report.unchanged(),
        refused = report.refused.len(),
        "adopted what changed upstream"
    );
    for problem in &report.refused {
        tracing::warn!(table = problem.table, id = %problem.id, reason = %problem.reason, "upstream row not adopted");
    }
    Ok(())
}

/// Runs adopted unfinished have no kfpd executor behind them, and kfpd's own
/// executor must not run them again (their tasks ran, or still run, under
/// upstream): where nothing follows upstream's Workflows (no `--executor argo`,
/// whose persistence agent follows them by their `pipeline/runid` label), they
/// end FAILED, saying why, before the executor starts. A later pass brings
/// upstream's state if upstream's row changes (docs/upgrade.md).
async fn end_adopted_unfinished(store: &SqlStore) -> Result<(), StartError> {
    let reason = |state: kfpd_store::RunState| {
        format!(
            "adopted from upstream KFP while {}: kfpd did not start this run and does not follow upstream's workflows, so it ended it; an adoption pass brings the state upstream records for it",
            state.as_str()
        )
    };
    let ended = store
        .end_adopted_unfinished(reason, retention::unix_now())
        .await
        .map_err(|error| StartError::Startup(format!("ending adopted unfinished runs: {error}")))?;
    for (run, state) in &ended {
        tracing::warn!(run = %run, was = state.as_str(), "adopted run was unfinished upstream; ended it");
    }
    Ok(())
}

/// How long the executor's database calls wait out an unreachable database.
pub const ENGINE_DATABASE_PATIENCE: Duration = Duration::from_secs(600);

/// How long `serve` lets calls in flight finish after shutdown begins: under
/// the 30 s Kubernetes waits between SIGTERM and SIGKILL.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15);
