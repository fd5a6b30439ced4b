//! Firing recurring runs: which are due, and claiming a tick together with the
//! run it creates.
//!
//! A claim is `UPDATE recurring_runs SET last_fired_at = <tick> … WHERE uuid = …
//! AND enabled = 1 AND revision = <read> AND last_fired_at = <read>` in the
//! transaction that inserts the run. Of several schedulers that read the same
//! row, the first to update it wins; the others' updates match no row (on
//! PostgreSQL and MySQL they wait for the winner's commit and then see the new
//! `last_fired_at`; SQLite has one writer). The run's id is derived from the
//! recurring run and the tick and is the primary key of `runs`, so even a claim
//! bug could not give a tick two runs.

use sqlx::any::AnyRow;

use super::recurring_runs::{push_guard, recurring_run, COLUMNS};
use super::rows::{int, opt_int};
use super::runs::{insert_run, lock_experiments};
use super::{Sql, SqlStore, Tx};
use crate::{Error, Fire, FireOutcome, RecurringRun, RunState, ScheduleGuard};

pub(super) async fn due(
    store: &SqlStore,
    now: i64,
    limit: usize,
) -> Result<Vec<RecurringRun>, Error> {
    let mut sql = Sql::new("SELECT ");
    sql.push(COLUMNS)
        .push(" FROM recurring_runs WHERE enabled = 1 AND next_fire_at <= ")
        .bind(now)
        .push(" ORDER BY next_fire_at, uuid LIMIT ")
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let rows: Vec<AnyRow> = store.fetch_all(&sql).await?;
    rows.iter().map(recurring_run).collect()
}

pub(super) async fn next_due(store: &SqlStore) -> Result<Option<i64>, Error> {
    // ORDER BY … LIMIT 1 rather than MIN(): every engine reads it off the
    // (enabled, next_fire_at) index.
    let sql = Sql::new(
        "SELECT next_fire_at FROM recurring_runs WHERE enabled = 1 \
         AND next_fire_at IS NOT NULL ORDER BY next_fire_at LIMIT 1",
    );
    match store.fetch_optional(&sql).await? {
        Some(row) => opt_int(&row, "next_fire_at"),
        None => Ok(None),
    }
}

pub(super) async fn reschedule(
    store: &SqlStore,
    id: &str,
    guard: ScheduleGuard,
    next_fire_at: Option<i64>,
) -> Result<bool, Error> {
    let mut sql = Sql::new("UPDATE recurring_runs SET next_fire_at = ");
    sql.bind(next_fire_at).push(" WHERE uuid = ").bind(id);
    push_guard(&mut sql, guard);
    store
        .write("reschedule recurring run", || async {
            let mut tx = store.begin_write().await?;
            let changed = tx.execute(&sql).await?;
            tx.commit().await?;
            Ok(changed > 0)
        })
        .await
}

pub(super) async fn active_runs(store: &SqlStore, recurring_run_id: &str) -> Result<i64, Error> {
    let sql = active_runs_query(recurring_run_id);
    match store.fetch_optional(&sql).await? {
        Some(row) => int(&row, 0),
        None => Ok(0),
    }
}

fn active_runs_query(recurring_run_id: &str) -> Sql {
    let mut sql = Sql::new("SELECT COUNT(*) FROM runs WHERE recurring_run_uuid = ");
    sql.bind(recurring_run_id).push(" AND state NOT IN (");
    let terminal = RunState::ALL.iter().filter(|state| state.is_terminal());
    for (index, state) in terminal.enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.bind(state.as_str());
    }
    sql.push(")");
    sql
}

/// Moves `last_fired_at` from the guard's value to the tick; false when the
/// row changed, was disabled or is gone.
async fn claim(tx: &mut Tx<'_>, fire: &Fire, count_it: bool) -> Result<bool, Error> {
    let mut sql = Sql::new("UPDATE recurring_runs SET last_fired_at = ");
    sql.bind(fire.tick)
        .push(", next_fire_at = ")
        .bind(fire.next_fire_at);
    if count_it {
        sql.push(", fired_count = fired_count + 1");
    }
    sql.push(" WHERE uuid = ")
        .bind(&fire.recurring_run_id)
        .push(" AND enabled = 1");
    push_guard(&mut sql, fire.guard);
    Ok(tx.execute(&sql).await? > 0)
}

pub(super) async fn fire(store: &SqlStore, fire: Fire) -> Result<FireOutcome, Error> {
    if fire
        .guard
        .last_fired_at
        .is_some_and(|last| last >= fire.tick)
    {
        return Err(Error::invalid(format!(
            "recurring run {}: tick {} is not after the last fired tick {:?}",
            fire.recurring_run_id, fire.tick, fire.guard.last_fired_at
        )));
    }
    // The claim comes first: it takes the row lock (SQLite: the transaction holds
    // the write lock) before anything is read, so the count below sees every run
    // of earlier claims. Only the experiment's row is locked before it, in the
    // order every writer of runs takes its locks. Returning early rolls the transaction back (an error drops it,
    // which rolls it back too).
    store
        .write("fire recurring run", || async {
            let mut tx = store.begin_write().await?;
            lock_experiments(&mut tx, &[fire.run.experiment_id.as_str()]).await?;
            if !claim(&mut tx, &fire, true).await? {
                tx.rollback().await?;
                return Ok(FireOutcome::Lost);
            }
            let active = active_runs_in(&mut tx, &fire.recurring_run_id).await?;
            if active >= fire.max_concurrency {
                tx.rollback().await?;
                return Ok(FireOutcome::AtCapacity {
                    active_runs: active,
                });
            }
            match insert_run(&mut tx, fire.run_id.clone(), fire.run.clone()).await {
                Ok(run) => {
                    tx.commit().await?;
                    Ok(FireOutcome::Fired(Box::new(run)))
                }
                Err(Error::AlreadyExists(_)) => {
                    drop(tx);
                    claim_existing(store, &fire).await
                }
                Err(error) => Err(error),
            }
        })
        .await
}

/// The tick's run exists already: claim the tick without a second run.
async fn claim_existing(store: &SqlStore, fire: &Fire) -> Result<FireOutcome, Error> {
    store
        .write("claim a fired tick", || async {
            let mut tx = store.begin_write().await?;
            if !claim(&mut tx, fire, false).await? {
                return Ok(FireOutcome::Lost);
            }
            tx.commit().await?;
            tracing::warn!(
                recurring_run = %fire.recurring_run_id,
                tick = fire.tick,
                run = %fire.run_id,
                "the run of this tick already existed; claimed the tick without another run"
            );
            Ok(FireOutcome::AlreadyFired)
        })
        .await
}

async fn active_runs_in(tx: &mut Tx<'_>, recurring_run_id: &str) -> Result<i64, Error> {
    let sql = active_runs_query(recurring_run_id);
    match tx.fetch_optional(&sql).await? {
        Some(row) => int(&row, 0),
        None => Ok(0),
    }
}
