//! The SQL implementation of the store for SQLite, PostgreSQL and MySQL.
//!
//! One code path serves all three: statements are built with [`Sql`] and only the
//! few places where the dialects differ (placeholders, substring tests, row locks,
//! database creation, the migration files) look at [`Dialect`].

mod adopt;
mod connect;
mod experiments;
mod migrate;
mod pipelines;
mod query;
mod recurring_runs;
mod retention;
mod rows;
mod run_batch;
mod run_counts;
mod runs;
mod schedules;
mod tasks;
mod write;

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::Mutex;

pub use connect::{drop_database, split_database_url, Options, ACQUIRE_TIMEOUT};
pub use query::{Arg, Dialect, Sql};

use crate::list::{Kind, ListQuery, Page, Value};
use crate::Error;

/// A metadata store on one SQL database.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// SQLite allows one writer at a time. Writers of this store queue on this lock
    /// instead of each holding a pooled connection while SQLite's busy handler
    /// sleeps; writers of other processes are kept out by `BEGIN IMMEDIATE`.
    write_lock: Option<Arc<Mutex<()>>>,
    /// Concurrent CreateRun calls share transactions (group commit).
    run_batches: Arc<run_batch::RunBatches>,
    /// How long a call waits out an unreachable database (retrying) before it fails
    /// with `Unavailable`; zero for the API, which answers 503 at once.
    patience: std::time::Duration,
    /// Committed run and task writes, for watchers.
    changes: crate::Changes,
}

/// A write transaction, holding the SQLite writer lock while it lives. Fields drop
/// in order: a transaction dropped without commit queues its rollback before the
/// lock is released.
pub(crate) struct Tx<'a> {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
}

impl SqlStore {
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The same store (same pool) whose calls wait out an unreachable database for
    /// up to `patience`, retrying with backoff: for the executor, whose task rows and
    /// run ends must not be lost to a database restart.
    pub fn with_patience(&self, patience: std::time::Duration) -> SqlStore {
        SqlStore {
            patience,
            ..self.clone()
        }
    }

    /// Runs `call` again while it fails with `Unavailable`, for up to the store's
    /// patience (not at all without).
    pub(crate) async fn patiently<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            match call().await {
                Err(Error::Unavailable(message)) if started.elapsed() < self.patience => {
                    tracing::debug!(error = %message, wait_ms = pause.as_millis() as u64, "database unavailable, waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                done => return done,
            }
        }
    }

    pub(crate) async fn fetch_all(&self, sql: &Sql) -> Result<Vec<AnyRow>, Error> {
        self.patiently(|| async {
            let (text, args) = sql.build(self.dialect);
            Ok(sqlx::query_with(&text, args).fetch_all(&self.pool).await?)
        })
        .await
    }

    pub(crate) async fn fetch_optional(&self, sql: &Sql) -> Result<Option<AnyRow>, Error> {
        self.patiently(|| async {
            let (text, args) = sql.build(self.dialect);
            Ok(sqlx::query_with(&text, args)
                .fetch_optional(&self.pool)
                .await?)
        })
        .await
    }

    /// Runs a list query and its count in one read transaction, so `total_size`
    /// and the page agree. `scope` is `" FROM table WHERE …"` with the filter applied;
    /// `page_size + 1` rows are read and the extra one becomes the next page token.
    pub(crate) async fn list_page<T>(
        &self,
        columns: &str,
        scope: &Sql,
        query: &ListQuery,
        map: impl Fn(&AnyRow) -> Result<T, Error>,
    ) -> Result<Page<T>, Error> {
        let mut count = Sql::new("SELECT COUNT(*)");
        count.append(scope);
        self.list_page_counted(columns, scope, &count, query, map)
            .await
    }

    /// `list_page` with the statement that gives `total_size` (one row, one integer)
    /// chosen by the caller, for tables that keep their counts elsewhere.
    pub(crate) async fn list_page_counted<T>(
        &self,
        columns: &str,
        scope: &Sql,
        count: &Sql,
        query: &ListQuery,
        map: impl Fn(&AnyRow) -> Result<T, Error>,
    ) -> Result<Page<T>, Error> {
        let mut page = Sql::new("SELECT ");
        page.push(columns)
            .push(", ")
            .push(query.sort.column)
            .push(" AS kfpd_sort_value");
        page.append(scope);
        page.push_page(query);

        // A read-only transaction: it never writes, so on SQLite it cannot meet the
        // busy error of a reader that turns writer.
        let (mut rows, counted) = self
            .patiently(|| async {
                let mut tx = self.pool.begin().await?;
                let (text, args) = page.build(self.dialect);
                let rows = sqlx::query_with(&text, args).fetch_all(&mut *tx).await?;
                let (text, args) = count.build(self.dialect);
                let counted = sqlx::query_with(&text, args).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok((rows, counted))
            })
            .await?;

        let next_page_token = if rows.len() > query.page_size {
            let first_of_next = &rows[query.page_size];
            let sort_value = match query.sort.kind {
                Kind::Int => Value::Int(rows::int(first_of_next, "kfpd_sort_value")?),
                Kind::Str => Value::Str(rows::text(first_of_next, "kfpd_sort_value")?),
            };
            let id = rows::text(first_of_next, "uuid")?;
            rows.truncate(query.page_size);
            query.next_token(sort_value, &id)
        } else {
            String::new()
        };
        let items = rows.iter().map(map).collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            total_size: rows::int(&counted, 0)?,
            next_page_token,
        })
    }
}

impl Tx<'_> {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub(crate) async fn execute(&mut self, sql: &Sql) -> Result<u64, Error> {
        let (text, args) = sql.build(self.dialect);
        let done = sqlx::query_with(&text, args).execute(self.conn()).await?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn fetch_optional(&mut self, sql: &Sql) -> Result<Option<AnyRow>, Error> {
        let (text, args) = sql.build(self.dialect);
        Ok(sqlx::query_with(&text, args)
            .fetch_optional(self.conn())
            .await?)
    }

    pub(crate) async fn fetch_all(&mut self, sql: &Sql) -> Result<Vec<AnyRow>, Error> {
        let (text, args) = sql.build(self.dialect);
        Ok(sqlx::query_with(&text, args).fetch_all(self.conn()).await?)
    }

    /// ` FOR UPDATE` where the engine has row locks; on SQLite the transaction holds
    /// the database's write lock from its `BEGIN IMMEDIATE`.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres | Dialect::Mysql => " FOR UPDATE",
        }
    }

    pub(crate) async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Rolls back before the writer lock is released, which dropping the
    /// transaction does not wait for: for the paths that give up often.
    pub(crate) async fn rollback(self) -> Result<(), Error> {
        self.tx.rollback().await?;
        Ok(())
    }
}
