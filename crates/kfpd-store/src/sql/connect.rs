//! Opening a database: picking the dialect from the URL, creating the database when
//! it does not exist (as upstream does at start), SQLite tuning, then migrations.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Connection, Executor};
use tokio::sync::Mutex;

use super::{migrate, Dialect, SqlStore};
use crate::Error;

/// How long a call waits for a pooled connection: an unreachable database fails a
/// call within this (503 from the API) instead of holding the request; the
/// executor's store retries.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Options {
    /// `sqlite://path`, `postgres://user:pass@host:port/db` or `mysql://…/db`.
    pub url: String,
    pub max_connections: u32,
    /// Connections older than this are closed and reopened (upstream's `ConMaxLifeTime`).
    pub conn_max_lifetime: Duration,
    /// Create the database named in the URL when it is missing (PostgreSQL, MySQL).
    pub create_database: bool,
    /// SQLite: how long a writer waits for the write lock held by another
    /// connection before its write fails with `Error::Busy`.
    pub busy_timeout: Duration,
}

impl Options {
    pub fn new(url: impl Into<String>) -> Options {
        Options {
            url: url.into(),
            max_connections: 8,
            conn_max_lifetime: Duration::from_secs(120),
            create_database: true,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

pub fn dialect_of(url: &str) -> Result<Dialect, Error> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Dialect::Sqlite),
        "postgres" | "postgresql" => Ok(Dialect::Postgres),
        "mysql" | "mariadb" => Ok(Dialect::Mysql),
        _ => Err(Error::invalid(format!(
            "unsupported database url scheme {scheme:?}: expected sqlite, postgres or mysql"
        ))),
    }
}

/// Splits `scheme://authority/db?params` into the URL without the database and the
/// database name.
pub fn split_database_url(url: &str) -> Result<(String, String, String), Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::invalid(format!("database url {url:?} has no scheme")))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (database, params) = path.split_once('?').unwrap_or((path, ""));
    let server = format!("{scheme}://{authority}");
    Ok((server, database.to_string(), params.to_string()))
}

fn check_database_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    if valid {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "database name {name:?} must be 1-63 letters, digits, '_' or '-'"
    )))
}

impl SqlStore {
    /// Connects, creates the database if asked to, and applies pending migrations.
    pub async fn connect(options: &Options) -> Result<SqlStore, Error> {
        sqlx::any::install_default_drivers();
        let dialect = dialect_of(&options.url)?;
        let url = match dialect {
            Dialect::Sqlite => sqlite_url(&options.url)?,
            Dialect::Postgres | Dialect::Mysql => {
                if options.create_database {
                    create_database(dialect, &options.url).await?;
                }
                options.url.clone()
            }
        };
        let is_sqlite = dialect == Dialect::Sqlite;
        let busy_timeout = format!("PRAGMA busy_timeout = {}", options.busy_timeout.as_millis());
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .max_lifetime(options.conn_max_lifetime)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                let busy_timeout = busy_timeout.clone();
                Box::pin(async move {
                    match dialect {
                        Dialect::Sqlite => {
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute(busy_timeout.as_str()).await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                        }
                        // The store's transactions are written for READ COMMITTED with
                        // explicit row locks. A server defaulting to SERIALIZABLE would
                        // abort archive cascades over and over (SSI conflicts on shared
                        // index pages) for no gain in correctness.
                        Dialect::Postgres => {
                            conn.execute(
                                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
                            )
                            .await?;
                        }
                        Dialect::Mysql => {}
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if is_sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await?;
        }
        let store = SqlStore {
            pool,
            dialect,
            write_lock: is_sqlite.then(|| Arc::new(Mutex::new(()))),
            run_batches: Arc::default(),
            patience: Duration::ZERO,
            changes: crate::Changes::default(),
        };
        migrate::run(&store).await?;
        Ok(store)
    }
}

/// Makes sure the SQLite file is created when missing.
fn sqlite_url(url: &str) -> Result<String, Error> {
    if url.contains("mode=") {
        return Ok(url.to_string());
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}mode=rwc"))
}

async fn create_database(dialect: Dialect, url: &str) -> Result<(), Error> {
    let (server, database, params) = split_database_url(url)?;
    check_database_name(&database)?;
    let suffix = if params.is_empty() {
        String::new()
    } else {
        format!("?{params}")
    };
    match dialect {
        Dialect::Postgres => {
            let admin_url = format!("{server}/postgres{suffix}");
            let mut conn = sqlx::AnyConnection::connect(&admin_url).await?;
            let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(&database)
                .fetch_optional(&mut conn)
                .await?
                .is_some();
            if !exists {
                // The name was checked above; identifiers cannot be bound.
                let statement = format!("CREATE DATABASE \"{database}\"");
                if let Err(error) = conn.execute(statement.as_str()).await {
                    // 42P04: created by someone else in the meantime.
                    let raced = error
                        .as_database_error()
                        .and_then(|db| db.code())
                        .is_some_and(|code| code == "42P04" || code == "23505");
                    if !raced {
                        return Err(error.into());
                    }
                }
            }
            conn.close().await?;
        }
        Dialect::Mysql => {
            let mut conn = sqlx::AnyConnection::connect(&format!("{server}/{suffix}")).await?;
            let statement = format!(
                "CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            );
            conn.execute(statement.as_str()).await?;
            conn.close().await?;
        }
        Dialect::Sqlite => {}
    }
    Ok(())
}

/// Drops a PostgreSQL or MySQL database; used by tests that make their own.
pub async fn drop_database(url: &str) -> Result<(), Error> {
    sqlx::any::install_default_drivers();
    let dialect = dialect_of(url)?;
    let (server, database, params) = split_database_url(url)?;
    check_database_name(&database)?;
    let suffix = if params.is_empty() {
        String::new()
    } else {
        format!("?{params}")
    };
    match dialect {
        Dialect::Postgres => {
            let mut conn =
                sqlx::AnyConnection::connect(&format!("{server}/postgres{suffix}")).await?;
            let statement = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
            conn.execute(statement.as_str()).await?;
            conn.close().await?;
        }
        Dialect::Mysql => {
            let mut conn = sqlx::AnyConnection::connect(&format!("{server}/{suffix}")).await?;
            let statement = format!("DROP DATABASE IF EXISTS `{database}`");
            conn.execute(statement.as_str()).await?;
            conn.close().await?;
        }
        Dialect::Sqlite => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let (server, db, params) =
            split_database_url("postgres://u:p@127.0.0.1:5432/mlpipeline?sslmode=disable").unwrap();
        assert_eq!(server, "postgres://u:p@127.0.0.1:5432");
        assert_eq!(db, "mlpipeline");
        assert_eq!(params, "sslmode=disable");
        assert!(check_database_name("a;drop").is_err());
        assert!(dialect_of("oracle://x").is_err());
    }
}
