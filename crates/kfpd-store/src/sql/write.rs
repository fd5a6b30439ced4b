//! Write transactions: taking SQLite's write lock when they begin, and running
//! again when PostgreSQL or MySQL aborted them to break a deadlock.
//!
//! A SQLite transaction that begins as a reader and then writes fails at once with
//! "database is locked" when another connection wrote in between, whatever the busy
//! timeout says. `BEGIN IMMEDIATE` takes the write lock first, so a writer either
//! waits its turn (up to the busy timeout) or never starts. On the servers, two
//! transactions that lock rows in different orders can deadlock; the database
//! aborts one, and the store runs that one again after a short pause.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::{Dialect, SqlStore, Tx};
use crate::Error;

/// Tries of one write transaction before a conflict becomes `Error::Busy`.
const ATTEMPTS: u32 = 6;
/// The pause after the first conflict; it doubles with each further one (plus up
/// to as much again at random, so the transactions that collided spread out).
const FIRST_PAUSE: Duration = Duration::from_millis(5);

impl SqlStore {
    /// Begins a write transaction: `BEGIN IMMEDIATE` behind this store's writer lock
    /// on SQLite, a plain `BEGIN` on PostgreSQL and MySQL (whose writers lock rows).
    pub(crate) async fn begin_write(&self) -> Result<Tx<'_>, Error> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres | Dialect::Mysql => self.pool.begin().await?,
        };
        Ok(Tx {
            tx,
            dialect: self.dialect,
            _guard: guard,
        })
    }

    /// Runs `attempt` (one whole write transaction, from `begin_write` to commit)
    /// and runs it again while the database answers with a deadlock or
    /// serialization conflict, up to [`ATTEMPTS`] times. `what` names the write in
    /// logs and in the final error.
    pub(crate) async fn write<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut pause = FIRST_PAUSE;
        let mut number = 1;
        loop {
            // A store with patience waits out an unreachable database first.
            let message = match self.patiently(&mut attempt).await {
                Err(Error::Conflict(message)) => message,
                done => return done,
            };
            if number == ATTEMPTS {
                return Err(Error::Busy(format!(
                    "{what} conflicted with other writers {ATTEMPTS} times in a row: {message}"
                )));
            }
            let jitter = rand::thread_rng().gen_range(0..=pause.as_micros() as u64);
            let wait = pause + Duration::from_micros(jitter);
            tracing::debug!(
                write = what,
                attempt = number,
                wait_ms = wait.as_millis() as u64,
                error = %message,
                "write transaction conflicted, running it again"
            );
            tokio::time::sleep(wait).await;
            pause *= 2;
            number += 1;
        }
    }
}
