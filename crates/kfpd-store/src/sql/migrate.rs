//! Versioned schema migrations, one `.sql` file per version and dialect, applied in
//! order at start. Several servers starting together take a database lock first.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Executor, Row};

use super::{Dialect, SqlStore};
use crate::Error;

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    mysql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../../migrations/postgres/0001_init.sql"),
        mysql: include_str!("../../migrations/mysql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "tasks_artifacts",
        sqlite: include_str!("../../migrations/sqlite/0002_tasks_artifacts.sql"),
        postgres: include_str!("../../migrations/postgres/0002_tasks_artifacts.sql"),
        mysql: include_str!("../../migrations/mysql/0002_tasks_artifacts.sql"),
    },
    Migration {
        version: 3,
        name: "task_cache_scope",
        sqlite: include_str!("../../migrations/sqlite/0003_task_cache_scope.sql"),
        postgres: include_str!("../../migrations/postgres/0003_task_cache_scope.sql"),
        mysql: include_str!("../../migrations/mysql/0003_task_cache_scope.sql"),
    },
    Migration {
        version: 4,
        name: "schedules",
        sqlite: include_str!("../../migrations/sqlite/0004_schedules.sql"),
        postgres: include_str!("../../migrations/postgres/0004_schedules.sql"),
        mysql: include_str!("../../migrations/mysql/0004_schedules.sql"),
    },
    Migration {
        version: 5,
        name: "artifact_uri",
        sqlite: include_str!("../../migrations/sqlite/0005_artifact_uri.sql"),
        postgres: include_str!("../../migrations/postgres/0005_artifact_uri.sql"),
        mysql: include_str!("../../migrations/mysql/0005_artifact_uri.sql"),
    },
    Migration {
        version: 6,
        name: "run_counts",
        sqlite: include_str!("../../migrations/sqlite/0006_run_counts.sql"),
        postgres: include_str!("../../migrations/postgres/0006_run_counts.sql"),
        mysql: include_str!("../../migrations/mysql/0006_run_counts.sql"),
    },
    Migration {
        version: 7,
        name: "retention",
        sqlite: include_str!("../../migrations/sqlite/0007_retention.sql"),
        postgres: include_str!("../../migrations/postgres/0007_retention.sql"),
        mysql: include_str!("../../migrations/mysql/0007_retention.sql"),
    },
    Migration {
        version: 9,
        name: "adopt",
        sqlite: include_str!("../../migrations/sqlite/0009_adopt.sql"),
        postgres: include_str!("../../migrations/postgres/0009_adopt.sql"),
        mysql: include_str!("../../migrations/mysql/0009_adopt.sql"),
    },
];

/// The newest schema version this build knows.
pub const LATEST_VERSION: i64 = 9;

const LOCK_NAME: &str = "kfpd_migrations";

pub(super) async fn run(store: &SqlStore) -> Result<(), Error> {
    let mut conn = store.pool.acquire().await?;
    lock(store.dialect, &mut conn).await?;
    let result = apply_pending(store.dialect, &mut conn).await;
    let unlocked = unlock(store.dialect, &mut conn).await;
    result?;
    unlocked
}

/// A database upstream KFP's API server created has tables of the same names as
/// kfpd's (`experiments`, `pipelines`, `tasks`) in another layout; creating kfpd's
/// would fail halfway with a confusing error, so a first start on one stops early
/// and says what to do instead.
async fn refuse_upstream_tables(dialect: Dialect, conn: &mut AnyConnection) -> Result<(), Error> {
    let query = match dialect {
        Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'run_details'",
        Dialect::Postgres => {
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'run_details'"
        }
        Dialect::Mysql => {
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'run_details'"
        }
    };
    if sqlx::query(query)
        .fetch_optional(&mut *conn)
        .await?
        .is_none()
    {
        return Ok(());
    }
    Err(Error::FailedPrecondition(
        "this database holds upstream KFP's tables (run_details, ...), which kfpd neither reads nor converts: give kfpd a database of its own on the same server (pipelineDb in pipeline-install-config, DBCONFIG_*_DBNAME or --db-name, e.g. kfpd); kfpd creates it".into(),
    ))
}

async fn apply_pending(dialect: Dialect, conn: &mut AnyConnection) -> Result<(), Error> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS kfpd_schema_migrations (\
         version BIGINT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, \
         applied_at BIGINT NOT NULL)",
    )
    .await?;
    let rows: Vec<AnyRow> = sqlx::query("SELECT version FROM kfpd_schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    let applied: Vec<i64> = rows
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    if applied.is_empty() {
        refuse_upstream_tables(dialect, conn).await?;
    }
    if let Some(newest) = applied.iter().max() {
        if *newest > LATEST_VERSION {
            return Err(Error::FailedPrecondition(format!(
                "database schema version {newest} is newer than this kfpd knows ({LATEST_VERSION}); upgrade kfpd"
            )));
        }
    }
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        let script = match dialect {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
            Dialect::Mysql => migration.mysql,
        };
        tracing::info!(
            version = migration.version,
            name = migration.name,
            dialect = dialect.name(),
            "applying schema migration"
        );
        // PostgreSQL and SQLite roll DDL back with the transaction; MySQL commits DDL
        // implicitly, so a failed MySQL migration needs a manual look (the error says which).
        // SQLite has no advisory lock: the write lock taken by BEGIN IMMEDIATE is the
        // migration lock, and the version is checked again under it, since another
        // process may have applied it meanwhile.
        let mut tx = match dialect {
            Dialect::Sqlite => sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?,
            Dialect::Postgres | Dialect::Mysql => sqlx::Connection::begin(&mut *conn).await?,
        };
        if dialect == Dialect::Sqlite {
            let applied_meanwhile =
                sqlx::query("SELECT version FROM kfpd_schema_migrations WHERE version = ?")
                    .bind(migration.version)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
            if applied_meanwhile {
                tx.rollback().await?;
                continue;
            }
        }
        for statement in statements(script) {
            tx.execute(statement).await.map_err(|error| {
                Error::Internal(format!(
                    "migration {} ({}) failed: {error}; statement: {statement}",
                    migration.version, migration.name
                ))
            })?;
        }
        let now = chrono::Utc::now().timestamp();
        let record = match dialect {
            Dialect::Postgres => {
                "INSERT INTO kfpd_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)"
            }
            Dialect::Sqlite | Dialect::Mysql => {
                "INSERT INTO kfpd_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
            }
        };
        sqlx::query(record)
            .bind(migration.version)
            .bind(migration.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Splits a script into statements at semicolons that end a line; comments dropped.
fn statements(script: &str) -> Vec<&str> {
    script
        .split(";\n")
        .map(|chunk| chunk.trim())
        .map(|chunk| chunk.trim_end_matches(';'))
        .filter(|chunk| {
            chunk
                .lines()
                .any(|line| !line.trim().is_empty() && !line.trim_start().starts_with("--"))
        })
        .collect()
}

async fn lock(dialect: Dialect, conn: &mut AnyConnection) -> Result<(), Error> {
    match dialect {
        Dialect::Postgres => {
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(LOCK_NAME)
                .execute(&mut *conn)
                .await?;
        }
        Dialect::Mysql => {
            sqlx::query("SELECT GET_LOCK(?, 120)")
                .bind(LOCK_NAME)
                .execute(&mut *conn)
                .await?;
        }
        Dialect::Sqlite => {}
    }
    Ok(())
}

async fn unlock(dialect: Dialect, conn: &mut AnyConnection) -> Result<(), Error> {
    match dialect {
        Dialect::Postgres => {
            sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
                .bind(LOCK_NAME)
                .execute(&mut *conn)
                .await?;
        }
        Dialect::Mysql => {
            sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(LOCK_NAME)
                .execute(&mut *conn)
                .await?;
        }
        Dialect::Sqlite => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialect_has_the_same_tables() {
        for migration in MIGRATIONS {
            let count = |script: &str| script.matches("CREATE TABLE").count();
            assert_eq!(count(migration.sqlite), count(migration.postgres));
            assert_eq!(count(migration.sqlite), count(migration.mysql));
            let index = |script: &str| script.matches("CREATE INDEX").count();
            assert_eq!(index(migration.sqlite), index(migration.mysql));
            assert!(!statements(migration.sqlite).is_empty());
        }
    }
}
