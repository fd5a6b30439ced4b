//! Retention: finding the runs whose artifacts or whole records have outlived their
//! limits, and marking or deleting them in short transactions.
//!
//! An artifact is held by the run that recorded it and by every run linking it (a
//! cache hit, an importer reusing it). Its object is deleted only once every run
//! holding it may lose it, so a run that is kept never loses an input.

use std::collections::HashMap;

use async_trait::async_trait;

use super::rows::{int, text};
use super::run_counts;
use super::runs::{count_key, run, COLUMNS as RUN_COLUMNS};
use super::tasks::{artifact, ARTIFACT_COLUMNS};
use super::{Arg, Sql, SqlStore};
use crate::{Artifact, Error, RetainedRun, RetentionStore, RunRetention, RunState};

/// The states a run ends in; only such runs are ever collected or deleted.
const FINAL_STATES: [RunState; 4] = [
    RunState::Succeeded,
    RunState::Failed,
    RunState::Skipped,
    RunState::Canceled,
];

fn bind_ids(sql: &mut Sql, ids: &[String]) {
    sql.bind_list(ids.iter().map(Arg::from).collect());
}

fn push_final_states(sql: &mut Sql) {
    sql.push("state IN ");
    sql.bind_list(
        FINAL_STATES
            .iter()
            .map(|state| state.as_str().into())
            .collect(),
    );
}

/// ` AND (finished_at, uuid) > (after)`, spelled out for every dialect.
fn push_after(sql: &mut Sql, after: Option<&RetainedRun>) {
    let Some(after) = after else {
        return;
    };
    sql.push(" AND (finished_at > ")
        .bind(after.finished_at)
        .push(" OR (finished_at = ")
        .bind(after.finished_at)
        .push(" AND uuid > ")
        .bind(&after.id)
        .push("))");
}

fn push_order(sql: &mut Sql, limit: usize) {
    sql.push(" ORDER BY finished_at, uuid LIMIT ")
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
}

fn retained(row: &sqlx::any::AnyRow) -> Result<RetainedRun, Error> {
    Ok(RetainedRun {
        finished_at: int(row, "finished_at")?,
        id: text(row, "uuid")?,
    })
}

#[async_trait]
impl RetentionStore for SqlStore {
    async fn runs_with_expired_artifacts(
        &self,
        finished_before: i64,
        after: Option<&RetainedRun>,
        limit: usize,
    ) -> Result<Vec<RetainedRun>, Error> {
        let mut sql = Sql::new(
            "SELECT uuid, finished_at FROM runs WHERE artifacts_deleted_at = 0 AND finished_at > 0 AND finished_at < ",
        );
        sql.bind(finished_before);
        push_after(&mut sql, after);
        push_order(&mut sql, limit);
        self.fetch_all(&sql).await?.iter().map(retained).collect()
    }

    async fn expired_artifacts(
        &self,
        run_id: &str,
        finished_before: i64,
    ) -> Result<Vec<Artifact>, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(ARTIFACT_COLUMNS)
            .push(" FROM artifacts a WHERE a.deleted_at = 0 AND (a.run_uuid = ")
            .bind(run_id)
            .push(" OR a.id IN (SELECT artifact_id FROM artifact_links WHERE run_uuid = ")
            .bind(run_id)
            .push("))")
            .push(" AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.uuid = a.run_uuid AND NOT (r.finished_at > 0 AND r.finished_at < ")
            .bind(finished_before)
            .push("))")
            .push(" AND NOT EXISTS (SELECT 1 FROM artifact_links l, runs r WHERE l.artifact_id = a.id AND r.uuid = l.run_uuid AND NOT (r.finished_at > 0 AND r.finished_at < ")
            .bind(finished_before)
            .push(")) ORDER BY a.id");
        self.fetch_all(&sql).await?.iter().map(artifact).collect()
    }

    async fn mark_artifacts_deleted(
        &self,
        run_ids: &[String],
        artifact_ids: &[i64],
        now: i64,
    ) -> Result<Vec<String>, Error> {
        self.write("mark artifacts deleted", || async {
            let mut tx = self.begin_write().await?;
            if !artifact_ids.is_empty() {
                let mut sql = Sql::new("UPDATE artifacts SET deleted_at = ");
                sql.bind(now).push(" WHERE deleted_at = 0 AND id IN ");
                sql.bind_list(artifact_ids.iter().map(|id| Arg::Int(*id)).collect());
                tx.execute(&sql).await?;
            }
            if run_ids.is_empty() {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            let mut sql = Sql::new("UPDATE runs SET artifacts_deleted_at = ");
            sql.bind(now).push(" WHERE artifacts_deleted_at = 0 AND ");
            push_final_states(&mut sql);
            sql.push(" AND uuid IN ");
            bind_ids(&mut sql, run_ids);
            tx.execute(&sql).await?;
            let mut marked =
                Sql::new("SELECT uuid FROM runs WHERE artifacts_deleted_at > 0 AND uuid IN ");
            bind_ids(&mut marked, run_ids);
            let rows = tx.fetch_all(&marked).await?;
            tx.commit().await?;
            rows.iter().map(|row| text(row, "uuid")).collect()
        })
        .await
    }

    async fn runs_to_delete(
        &self,
        rule: RunRetention,
        after: Option<&RetainedRun>,
        limit: usize,
    ) -> Result<Vec<RetainedRun>, Error> {
        if rule.finished_before.is_none() && rule.keep_per_experiment.is_none() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new("SELECT uuid, finished_at FROM runs WHERE finished_at > 0 AND ");
        push_final_states(&mut sql);
        sql.push(" AND (");
        let mut rules = 0;
        if let Some(before) = rule.finished_before {
            sql.push("finished_at < ").bind(before);
            rules += 1;
        }
        if let Some(keep) = rule.keep_per_experiment {
            if rules > 0 {
                sql.push(" OR ");
            }
            // Window functions: SQLite 3.25+, PostgreSQL, MySQL 8, MariaDB 10.2+.
            sql.push(
                "uuid IN (SELECT ranked.uuid FROM (SELECT uuid, ROW_NUMBER() OVER (PARTITION BY experiment_uuid ORDER BY created_at DESC, uuid DESC) AS position FROM runs) ranked WHERE ranked.position > ",
            )
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .push(")");
        }
        sql.push(")");
        push_after(&mut sql, after);
        push_order(&mut sql, limit);
        self.fetch_all(&sql).await?.iter().map(retained).collect()
    }

    async fn artifacts_freed_by(&self, run_ids: &[String]) -> Result<Vec<Artifact>, Error> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new("SELECT ");
        sql.push(ARTIFACT_COLUMNS)
            .push(" FROM artifacts a WHERE a.deleted_at = 0 AND (a.run_uuid IN ");
        bind_ids(&mut sql, run_ids);
        sql.push(" OR a.id IN (SELECT artifact_id FROM artifact_links WHERE run_uuid IN ");
        bind_ids(&mut sql, run_ids);
        sql.push(
            ")) AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.uuid = a.run_uuid AND r.uuid NOT IN ",
        );
        bind_ids(&mut sql, run_ids);
        sql.push(") AND NOT EXISTS (SELECT 1 FROM artifact_links l, runs r WHERE l.artifact_id = a.id AND r.uuid = l.run_uuid AND l.run_uuid NOT IN ");
        bind_ids(&mut sql, run_ids);
        sql.push(") ORDER BY a.id");
        self.fetch_all(&sql).await?.iter().map(artifact).collect()
    }

    async fn delete_retained_runs(&self, run_ids: &[String]) -> Result<Vec<String>, Error> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sorted = run_ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let deleted = self.write("delete runs by retention", || async {
            let mut tx = self.begin_write().await?;
            let mut locked = Sql::new("SELECT ");
            locked
                .push(RUN_COLUMNS)
                .push(" FROM runs WHERE artifacts_deleted_at > 0 AND ");
            push_final_states(&mut locked);
            locked.push(" AND uuid IN ");
            bind_ids(&mut locked, &sorted);
            let lock = tx.for_update();
            locked.push(" ORDER BY uuid").push(lock);
            let runs = tx
                .fetch_all(&locked)
                .await?
                .iter()
                .map(run)
                .collect::<Result<Vec<_>, _>>()?;
            if runs.is_empty() {
                tx.rollback().await?;
                return Ok(Vec::new());
            }
            let ids: Vec<String> = runs.iter().map(|run| run.id.clone()).collect();

            // The artifacts these runs hold, found before their links go.
            let mut held = Sql::new("SELECT id FROM artifacts WHERE run_uuid IN ");
            bind_ids(&mut held, &ids);
            held.push(" UNION SELECT artifact_id AS id FROM artifact_links WHERE run_uuid IN ");
            bind_ids(&mut held, &ids);
            let artifact_ids = tx
                .fetch_all(&held)
                .await?
                .iter()
                .map(|row| int(row, "id"))
                .collect::<Result<Vec<_>, _>>()?;

            for statement in [
                "DELETE FROM artifact_links WHERE run_uuid IN ",
                "DELETE FROM tasks WHERE run_uuid IN ",
                "DELETE FROM run_specs WHERE run_uuid IN ",
                "DELETE FROM runs WHERE uuid IN ",
            ] {
                let mut sql = Sql::new(statement);
                bind_ids(&mut sql, &ids);
                tx.execute(&sql).await?;
            }
            for chunk in artifact_ids.chunks(500) {
                let mut sql = Sql::new("DELETE FROM artifacts WHERE id IN ");
                sql.bind_list(chunk.iter().map(|id| Arg::Int(*id)).collect());
                sql.push(" AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.uuid = artifacts.run_uuid)")
                    .push(" AND NOT EXISTS (SELECT 1 FROM artifact_links l WHERE l.artifact_id = artifacts.id)");
                tx.execute(&sql).await?;
            }
            let counts = runs.iter().map(|run| (count_key(run), -1)).collect();
            run_counts::adjust(&mut tx, counts).await?;
            tx.commit().await?;
            Ok(ids)
        })
        .await?;
        if !deleted.is_empty() {
            self.changes.runs();
        }
        Ok(deleted)
    }

    async fn artifacts_deleted_at(&self, ids: &[i64]) -> Result<HashMap<i64, i64>, Error> {
        let mut deleted = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut sql =
                Sql::new("SELECT id, deleted_at FROM artifacts WHERE deleted_at > 0 AND id IN ");
            sql.bind_list(chunk.iter().map(|id| Arg::Int(*id)).collect());
            for row in self.fetch_all(&sql).await? {
                deleted.insert(int(&row, "id")?, int(&row, "deleted_at")?);
            }
        }
        Ok(deleted)
    }

    async fn run_artifacts_deleted_at(&self, run_id: &str) -> Result<i64, Error> {
        let mut sql = Sql::new("SELECT artifacts_deleted_at FROM runs WHERE uuid = ");
        sql.bind(run_id);
        let row = self.fetch_optional(&sql).await?;
        let row = row.ok_or_else(|| Error::not_found("run", run_id))?;
        int(&row, "artifacts_deleted_at")
    }
}
