//! Run counts kept beside the runs table (migration 0006), so that the `total_size`
//! of a run list filtered only on namespace, experiment, storage state and state is
//! a sum over a few small rows instead of a `COUNT(*)` over a million runs.
//!
//! Every statement that inserts or deletes a run, or changes one of those columns,
//! adjusts the counts in the same transaction. Only sums over `shard` mean anything.

use std::collections::BTreeMap;

use super::rows::text;
use super::{Dialect, Sql, SqlStore, Tx};
use crate::list::Condition;
use crate::Error;

/// The runs columns `run_counts` aggregates over, with the same names there.
const COUNTED_COLUMNS: [&str; 4] = ["namespace", "experiment_uuid", "storage_state", "state"];

/// Concurrent creates in one experiment spread their increments over this many rows,
/// so they do not queue on one row lock (PostgreSQL, MySQL).
const SHARDS: u32 = 8;

/// Runs per `UPDATE … WHERE uuid IN (…)` when a whole experiment is archived.
const UUIDS_PER_STATEMENT: usize = 500;

/// One `run_counts` row's grouping columns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct CountKey {
    pub namespace: String,
    pub experiment_uuid: String,
    pub storage_state: String,
    pub state: String,
    pub shard: i64,
}

impl CountKey {
    pub fn of_run(
        run_id: &str,
        namespace: &str,
        experiment_uuid: &str,
        storage_state: &str,
        state: &str,
    ) -> CountKey {
        CountKey {
            namespace: namespace.to_string(),
            experiment_uuid: experiment_uuid.to_string(),
            storage_state: storage_state.to_string(),
            state: state.to_string(),
            shard: shard_of(run_id),
        }
    }
}

/// A stable shard for a run id (FNV-1a), so a run's increments and decrements land
/// on the same row and rows stay non-negative in practice.
fn shard_of(run_id: &str) -> i64 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in run_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i64::from(hash % SHARDS)
}

/// Applies count changes inside the caller's transaction. Changes to the same row are
/// merged and rows are touched in key order, so two transactions never wait on each
/// other's counter rows in opposite orders.
pub(super) async fn adjust(tx: &mut Tx<'_>, changes: Vec<(CountKey, i64)>) -> Result<(), Error> {
    let mut merged: Vec<(CountKey, i64)> = Vec::with_capacity(changes.len());
    let mut sorted = changes;
    sorted.sort_by(|left, right| left.0.cmp(&right.0));
    for (key, delta) in sorted {
        match merged.last_mut() {
            Some((last, total)) if *last == key => *total += delta,
            _ => merged.push((key, delta)),
        }
    }
    for (key, delta) in merged {
        if delta == 0 {
            continue;
        }
        let mut sql = Sql::new(
            "INSERT INTO run_counts (namespace, experiment_uuid, storage_state, state, shard, run_count) VALUES (",
        );
        sql.bind(&key.namespace)
            .push(", ")
            .bind(&key.experiment_uuid)
            .push(", ")
            .bind(&key.storage_state)
            .push(", ")
            .bind(&key.state)
            .push(", ")
            .bind(key.shard)
            .push(", ")
            .bind(delta)
            .push(")");
        match tx.dialect {
            Dialect::Sqlite | Dialect::Postgres => sql.push(
                " ON CONFLICT (namespace, experiment_uuid, storage_state, state, shard) \
                 DO UPDATE SET run_count = run_counts.run_count + ",
            ),
            Dialect::Mysql => sql.push(" ON DUPLICATE KEY UPDATE run_count = run_count + "),
        };
        sql.bind(delta);
        tx.execute(&sql).await?;
    }
    Ok(())
}

/// Moves one run from `before` to `after`: a no-op when the
/// counted columns did not change.
pub(super) async fn moved(tx: &mut Tx<'_>, before: CountKey, after: CountKey) -> Result<(), Error> {
    if before == after {
        return Ok(());
    }
    adjust(tx, vec![(before, -1), (after, 1)]).await
}

/// The `total_size` statement for a run list whose scope and conditions touch only
/// counted columns, or `None` when it needs a real `COUNT(*)`.
pub(super) fn total_statement(
    dialect: Dialect,
    namespace: Option<&str>,
    experiment_uuid: Option<&str>,
    conditions: &[Condition],
) -> Option<Sql> {
    let countable = conditions.iter().all(|condition| match condition {
        Condition::Column { field, .. } => COUNTED_COLUMNS.contains(&field.column),
        Condition::Tag { .. } => false,
    });
    if !countable {
        return None;
    }
    let integer = match dialect {
        Dialect::Sqlite => "INTEGER",
        Dialect::Postgres => "BIGINT",
        Dialect::Mysql => "SIGNED",
    };
    let mut sql = Sql::new("SELECT CAST(COALESCE(SUM(run_count), 0) AS ");
    sql.push(integer).push(") FROM run_counts WHERE 1 = 1");
    if let Some(namespace) = namespace {
        sql.push(" AND namespace = ").bind(namespace);
    }
    if let Some(experiment_uuid) = experiment_uuid {
        sql.push(" AND experiment_uuid = ").bind(experiment_uuid);
    }
    sql.push_conditions(dialect, conditions, None);
    Some(sql)
}

/// Archives every not yet archived run of an experiment and moves their counts, in
/// the caller's transaction. The runs are locked and read first, so the counts move
/// by exactly the runs that changed even while other runs are being created.
pub(super) async fn archive_experiment_runs(
    tx: &mut Tx<'_>,
    experiment_uuid: &str,
    archived: &str,
) -> Result<(), Error> {
    let lock = tx.for_update();
    let mut select =
        Sql::new("SELECT uuid, namespace, storage_state, state FROM runs WHERE experiment_uuid = ");
    select
        .bind(experiment_uuid)
        .push(" AND storage_state <> ")
        .bind(archived)
        .push(lock);
    let rows = tx.fetch_all(&select).await?;
    // Summed per counted row here, so a large experiment costs a few rows, not two
    // changes per run.
    let mut changes: BTreeMap<CountKey, i64> = BTreeMap::new();
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = text(row, "uuid")?;
        let namespace = text(row, "namespace")?;
        let state = text(row, "state")?;
        let before = CountKey::of_run(
            &id,
            &namespace,
            experiment_uuid,
            &text(row, "storage_state")?,
            &state,
        );
        let after = CountKey::of_run(&id, &namespace, experiment_uuid, archived, &state);
        *changes.entry(before).or_default() -= 1;
        *changes.entry(after).or_default() += 1;
        ids.push(id);
    }
    for chunk in ids.chunks(UUIDS_PER_STATEMENT) {
        let mut update = Sql::new("UPDATE runs SET storage_state = ");
        update.bind(archived).push(" WHERE uuid IN (");
        for (index, id) in chunk.iter().enumerate() {
            if index > 0 {
                update.push(", ");
            }
            update.bind(id);
        }
        update.push(")");
        tx.execute(&update).await?;
    }
    adjust(tx, changes.into_iter().collect()).await
}

impl SqlStore {
    /// The statement `list_runs` takes `total_size` from for this scope and these
    /// conditions, when they touch only counted columns (for benchmarks and plans).
    pub fn run_total_statement(
        &self,
        namespace: Option<&str>,
        experiment_uuid: Option<&str>,
        conditions: &[Condition],
    ) -> Option<Sql> {
        total_statement(self.dialect, namespace, experiment_uuid, conditions)
    }

    /// Recomputes `run_counts` from the runs table: for data written around the store
    /// (bulk loads, restores) and as a repair. Runs in one transaction.
    pub async fn rebuild_run_counts(&self) -> Result<(), Error> {
        self.write("rebuild run counts", || async {
            let mut tx = self.begin_write().await?;
            tx.execute(&Sql::new("DELETE FROM run_counts")).await?;
            tx.execute(&Sql::new(
                "INSERT INTO run_counts (namespace, experiment_uuid, storage_state, state, shard, run_count) \
                 SELECT namespace, experiment_uuid, storage_state, state, 0, COUNT(*) FROM runs \
                 GROUP BY namespace, experiment_uuid, storage_state, state",
            ))
            .await?;
            tx.commit().await
        })
        .await
    }
}

impl SqlStore {
    /// Runs per state over all namespaces and experiments, summed from the count
    /// rows: cheap enough to read on every metrics scrape.
    pub async fn runs_by_state(&self) -> Result<BTreeMap<String, i64>, Error> {
        let integer = match self.dialect() {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
            Dialect::Mysql => "SIGNED",
        };
        let mut sql = Sql::new("SELECT state, CAST(COALESCE(SUM(run_count), 0) AS ");
        sql.push(integer).push(") FROM run_counts GROUP BY state");
        let mut counts = BTreeMap::new();
        for row in self.fetch_all(&sql).await? {
            let state = text(&row, 0usize)?;
            let count = super::rows::int(&row, 1usize)?;
            *counts.entry(state).or_insert(0) += count;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_in_range() {
        let id = "0b7f3c52-6a2f-4a55-9d59-4f3c1b0a9e11";
        assert_eq!(shard_of(id), shard_of(id));
        let seen: std::collections::BTreeSet<i64> =
            (0..200).map(|n| shard_of(&format!("run-{n}"))).collect();
        assert!(seen
            .iter()
            .all(|shard| (0..i64::from(SHARDS)).contains(shard)));
        assert_eq!(
            seen.len(),
            SHARDS as usize,
            "200 ids should reach every shard"
        );
    }
}
