//! The kfpd API server: configuration, the KFP services and their REST transport,
//! started by `kfpd serve`.

pub mod config;
mod convert;
pub mod error;
pub mod http;
pub mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kfpd_store::sql::{Options as StoreOptions, SqlStore};

pub use config::{Config, ServeArgs};
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
    #[error("database at {location} refused user {user:?}: wrong credentials? ({message})")]
    DatabaseCredentials {
        location: String,
        user: String,
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
    let settings = service::Settings {
        multi_user: config.multi_user,
        pod_namespace: config.namespace.clone(),
        default_service_account: config.default_service_account.clone(),
    };
    let api = Api::new(Arc::new(store), settings, service::system_clock());
    api.ensure_default_experiment()
        .await
        .map_err(|error| StartError::Startup(error.to_string()))?;

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.http_addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!(
        addr = %local,
        database = %config.database.location,
        driver = ?config.database.driver,
        "kfpd serving REST"
    );
    // A line tests and scripts can wait for, also when logs are filtered.
    println!("kfpd listening on http://{local}");
    let app = http::router(api, config.max_body_bytes);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartError::Serve)
}
