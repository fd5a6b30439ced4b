//! Writing adopted upstream rows (`kfpd adopt`): upserts by id, so a batch that
//! is written again (a pass resumed after a crash) changes nothing twice, with the
//! run counts moved by exactly the runs that changed and the upstream rows'
//! marks in the same transaction.

use std::collections::HashMap;

use super::rows::{int, text};
use super::run_counts::{self, CountKey};
use super::{Arg, Dialect, Sql, SqlStore, Tx};
use crate::adopt::{
    AdoptBatch, AdoptPass, AdoptedKind, AdoptedRun, GoneRow, NameScope, RowMark, ENDED_RUNS,
};
use crate::{
    Error, Experiment, Pipeline, PipelineVersion, RecurringRun, RunState, RunStore, Tags, Trigger,
};

/// Marks per `SELECT` when reading them back, and ids per `IN (…)` list.
const IDS_PER_STATEMENT: usize = 500;

/// `INSERT … VALUES (…)` that overwrites every non-key column of the row with the
/// same `key`, in the dialect's words.
fn upsert(dialect: Dialect, table: &str, columns: &[&str], key: &[&str], values: Vec<Arg>) -> Sql {
    let mut sql = Sql::new("INSERT INTO ");
    sql.push(table)
        .push(" (")
        .push(&columns.join(", "))
        .push(") VALUES (");
    for (index, value) in values.into_iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.bind(value);
    }
    sql.push(")");
    let updated: Vec<&&str> = columns
        .iter()
        .filter(|column| !key.contains(column))
        .collect();
    match dialect {
        Dialect::Sqlite | Dialect::Postgres => {
            sql.push(" ON CONFLICT (")
                .push(&key.join(", "))
                .push(") DO ");
            if updated.is_empty() {
                sql.push("NOTHING");
                return sql;
            }
            sql.push("UPDATE SET ");
            for (index, column) in updated.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.push(column).push(" = excluded.").push(column);
            }
        }
        Dialect::Mysql => {
            sql.push(" ON DUPLICATE KEY UPDATE ");
            let updated = if updated.is_empty() {
                vec![&key[0]]
            } else {
                updated
            };
            for (index, column) in updated.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.push(column).push(" = VALUES(").push(column).push(")");
            }
        }
    }
    sql
}

fn trigger_values(trigger: &Trigger) -> (&'static str, String, i64, Option<i64>, Option<i64>) {
    match trigger {
        Trigger::None => ("none", String::new(), 0, None, None),
        Trigger::Cron {
            cron,
            start_time,
            end_time,
        } => ("cron", cron.clone(), 0, *start_time, *end_time),
        Trigger::Periodic {
            interval_second,
            start_time,
            end_time,
        } => (
            "periodic",
            String::new(),
            *interval_second,
            *start_time,
            *end_time,
        ),
    }
}

async fn write_experiment(tx: &mut Tx<'_>, experiment: &Experiment) -> Result<(), Error> {
    replace_unused_namesake(tx, experiment).await?;
    let sql = upsert(
        tx.dialect,
        "experiments",
        &[
            "uuid",
            "name",
            "description",
            "namespace",
            "created_at",
            "last_run_created_at",
            "storage_state",
        ],
        &["uuid"],
        vec![
            (&experiment.id).into(),
            (&experiment.name).into(),
            (&experiment.description).into(),
            (&experiment.namespace).into(),
            experiment.created_at.into(),
            experiment.last_run_created_at.into(),
            experiment.storage_state.as_str().into(),
        ],
    );
    tx.execute(&sql).await?;
    Ok(())
}

/// kfpd makes its own `Default` experiment on first use; when upstream's default
/// experiment has the same name and kfpd's holds nothing yet, upstream's takes its
/// place instead of being refused.
async fn replace_unused_namesake(tx: &mut Tx<'_>, experiment: &Experiment) -> Result<(), Error> {
    let mut sql = Sql::new("SELECT uuid FROM experiments WHERE namespace = ");
    sql.bind(&experiment.namespace)
        .push(" AND name = ")
        .bind(&experiment.name)
        .push(" AND uuid <> ")
        .bind(&experiment.id);
    let Some(row) = tx.fetch_optional(&sql).await? else {
        return Ok(());
    };
    let other = text(&row, "uuid")?;
    if !experiment_is_unused(tx, &other).await? {
        return Err(Error::AlreadyExists(format!(
            "experiment {other} already has the name {:?} in namespace {:?}",
            experiment.name, experiment.namespace
        )));
    }
    for statement in [
        "DELETE FROM default_experiment WHERE experiment_uuid = ",
        "DELETE FROM experiments WHERE uuid = ",
    ] {
        let mut delete = Sql::new(statement);
        delete.bind(&other);
        tx.execute(&delete).await?;
    }
    Ok(())
}

/// The checks that an experiment is unused: no runs, no recurring runs, and not
/// itself adopted. Unused when none finds a row.
fn unused_checks(id: &str) -> Vec<Sql> {
    let mut checks = Vec::new();
    for statement in [
        "SELECT uuid FROM runs WHERE experiment_uuid = ",
        "SELECT uuid FROM recurring_runs WHERE experiment_uuid = ",
    ] {
        let mut sql = Sql::new(statement);
        sql.bind(id).push(" LIMIT 1");
        checks.push(sql);
    }
    let mut adopted = Sql::new(
        "SELECT source_id FROM adopted_rows WHERE source_table = 'experiments' AND source_id = ",
    );
    adopted.bind(id);
    checks.push(adopted);
    checks
}

async fn experiment_is_unused(tx: &mut Tx<'_>, id: &str) -> Result<bool, Error> {
    for check in unused_checks(id) {
        if tx.fetch_optional(&check).await?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn write_tags(
    tx: &mut Tx<'_>,
    table: &str,
    owner_column: &str,
    owner: &str,
    tags: &Tags,
) -> Result<(), Error> {
    let mut delete = Sql::new("DELETE FROM ");
    delete
        .push(table)
        .push(" WHERE ")
        .push(owner_column)
        .push(" = ")
        .bind(owner);
    tx.execute(&delete).await?;
    for (key, value) in tags {
        let mut insert = Sql::new("INSERT INTO ");
        insert
            .push(table)
            .push(" (")
            .push(owner_column)
            .push(", tag_key, tag_value) VALUES (")
            .bind(owner)
            .push(", ")
            .bind(key)
            .push(", ")
            .bind(value)
            .push(")");
        tx.execute(&insert).await?;
    }
    Ok(())
}

async fn write_pipeline(tx: &mut Tx<'_>, pipeline: &Pipeline) -> Result<(), Error> {
    let sql = upsert(
        tx.dialect,
        "pipelines",
        &[
            "uuid",
            "name",
            "display_name",
            "description",
            "namespace",
            "created_at",
            "status",
        ],
        &["uuid"],
        vec![
            (&pipeline.id).into(),
            (&pipeline.name).into(),
            (&pipeline.display_name).into(),
            (&pipeline.description).into(),
            (&pipeline.namespace).into(),
            pipeline.created_at.into(),
            "READY".into(),
        ],
    );
    tx.execute(&sql).await?;
    write_tags(
        tx,
        "pipeline_tags",
        "pipeline_uuid",
        &pipeline.id,
        &pipeline.tags,
    )
    .await
}

async fn write_version(tx: &mut Tx<'_>, version: &PipelineVersion) -> Result<(), Error> {
    let sql = upsert(
        tx.dialect,
        "pipeline_versions",
        &[
            "uuid",
            "pipeline_uuid",
            "name",
            "display_name",
            "description",
            "created_at",
            "status",
            "code_source_url",
            "package_url",
            "pipeline_spec",
        ],
        &["uuid"],
        vec![
            (&version.id).into(),
            (&version.pipeline_id).into(),
            (&version.name).into(),
            (&version.display_name).into(),
            (&version.description).into(),
            version.created_at.into(),
            "READY".into(),
            (&version.code_source_url).into(),
            (&version.package_url).into(),
            (&version.pipeline_spec).into(),
        ],
    );
    tx.execute(&sql).await?;
    write_tags(
        tx,
        "pipeline_version_tags",
        "version_uuid",
        &version.id,
        &version.tags,
    )
    .await
}

async fn write_recurring_run(tx: &mut Tx<'_>, recurring: &RecurringRun) -> Result<(), Error> {
    let (kind, cron, interval, start, end) = trigger_values(&recurring.trigger);
    // An edit of a row a scheduler may have read: its revision moves on, so a
    // tick computed from the old row cannot be claimed.
    let mut revision = Sql::new("SELECT revision FROM recurring_runs WHERE uuid = ");
    revision.bind(&recurring.id);
    let revision = match tx.fetch_optional(&revision).await? {
        Some(row) => int(&row, "revision")? + 1,
        None => recurring.revision,
    };
    let sql = upsert(
        tx.dialect,
        "recurring_runs",
        &[
            "uuid",
            "display_name",
            "description",
            "namespace",
            "experiment_uuid",
            "service_account",
            "max_concurrency",
            "no_catchup",
            "enabled",
            "created_at",
            "updated_at",
            "trigger_kind",
            "cron",
            "interval_second",
            "start_time",
            "end_time",
            "pipeline_uuid",
            "pipeline_version_uuid",
            "pipeline_spec",
            "runtime_config",
            "last_fired_at",
            "next_fire_at",
            "fired_count",
            "revision",
        ],
        &["uuid"],
        vec![
            (&recurring.id).into(),
            (&recurring.display_name).into(),
            (&recurring.description).into(),
            (&recurring.namespace).into(),
            (&recurring.experiment_id).into(),
            (&recurring.service_account).into(),
            recurring.max_concurrency.into(),
            recurring.no_catchup.into(),
            recurring.enabled.into(),
            recurring.created_at.into(),
            recurring.updated_at.into(),
            kind.into(),
            cron.into(),
            interval.into(),
            start.into(),
            end.into(),
            (&recurring.pipeline_id).into(),
            (&recurring.pipeline_version_id).into(),
            recurring.pipeline_spec.as_ref().into(),
            (&recurring.runtime_config).into(),
            recurring.last_fired_at.into(),
            recurring.next_fire_at.into(),
            recurring.fired_count.into(),
            revision.into(),
        ],
    );
    tx.execute(&sql).await?;
    Ok(())
}

/// The count rows the runs of `ids` are counted in now.
async fn current_count_keys(
    tx: &mut Tx<'_>,
    ids: &[&str],
) -> Result<HashMap<String, CountKey>, Error> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let mut sql = Sql::new(
            "SELECT uuid, namespace, experiment_uuid, storage_state, state FROM runs WHERE uuid IN (",
        );
        for (index, id) in chunk.iter().enumerate() {
            if index > 0 {
                sql.push(", ");
            }
            sql.bind(*id);
        }
        sql.push(")").push(tx.for_update());
        for row in tx.fetch_all(&sql).await? {
            let id = text(&row, "uuid")?;
            let key = CountKey::of_run(
                &id,
                &text(&row, "namespace")?,
                &text(&row, "experiment_uuid")?,
                &text(&row, "storage_state")?,
                &text(&row, "state")?,
            );
            found.insert(id, key);
        }
    }
    Ok(found)
}

fn history_json<T: serde::Serialize>(history: &T, what: &str) -> Result<String, Error> {
    serde_json::to_string(history)
        .map_err(|error| Error::Internal(format!("encoding {what} state history: {error}")))
}

/// `existed`: kfpd already has the run (so it may have tasks to replace).
async fn write_run(tx: &mut Tx<'_>, adopted: &AdoptedRun, existed: bool) -> Result<(), Error> {
    let run = &adopted.run;
    let sql = upsert(
        tx.dialect,
        "runs",
        &[
            "uuid",
            "experiment_uuid",
            "namespace",
            "display_name",
            "description",
            "storage_state",
            "service_account",
            "created_at",
            "scheduled_at",
            "finished_at",
            "archived_at",
            "state",
            "conditions",
            "error",
            "pipeline_uuid",
            "pipeline_version_uuid",
            "recurring_run_uuid",
            "runtime_config",
            "state_history",
            "runtime_details",
            "inline_spec",
        ],
        &["uuid"],
        vec![
            (&run.id).into(),
            (&run.experiment_id).into(),
            (&run.namespace).into(),
            (&run.display_name).into(),
            (&run.description).into(),
            run.storage_state.as_str().into(),
            (&run.service_account).into(),
            run.created_at.into(),
            run.scheduled_at.into(),
            run.finished_at.into(),
            adopted.archived_at.into(),
            run.state.as_str().into(),
            run.state.condition().into(),
            run.error.as_ref().into(),
            (&run.pipeline_id).into(),
            (&run.pipeline_version_id).into(),
            (&run.recurring_run_id).into(),
            (&run.runtime_config).into(),
            history_json(&run.state_history, "run")?.into(),
            "".into(),
            adopted.inline_spec.into(),
        ],
    );
    tx.execute(&sql).await?;
    let spec = upsert(
        tx.dialect,
        "run_specs",
        &["run_uuid", "pipeline_spec"],
        &["run_uuid"],
        vec![(&run.id).into(), (&adopted.pipeline_spec).into()],
    );
    tx.execute(&spec).await?;

    // What upstream recorded about the run's tasks replaces what kfpd had.
    let replaced: &[&str] = if existed {
        &[
            "DELETE FROM artifact_links WHERE run_uuid = ",
            "DELETE FROM artifacts WHERE run_uuid = ",
            "DELETE FROM tasks WHERE run_uuid = ",
        ]
    } else {
        &[]
    };
    for statement in replaced {
        let mut delete = Sql::new(statement);
        delete.bind(&run.id);
        tx.execute(&delete).await?;
    }
    for task in &adopted.tasks {
        let sql = upsert(
            tx.dialect,
            "tasks",
            &[
                "uuid",
                "run_uuid",
                "parent_uuid",
                "path",
                "kind",
                "name",
                "display_name",
                "iteration_index",
                "state",
                "state_history",
                "error",
                "created_at",
                "started_at",
                "finished_at",
                "attempts",
                "inputs",
                "outputs",
                "details",
                "fingerprint",
                "cached_from",
                "cache_scope",
            ],
            &["uuid"],
            vec![
                (&task.id).into(),
                (&task.run_id).into(),
                (&task.parent_id).into(),
                (&task.path).into(),
                task.kind.as_str().into(),
                (&task.name).into(),
                (&task.display_name).into(),
                task.iteration_index.into(),
                task.state.as_str().into(),
                history_json(&task.state_history, "task")?.into(),
                task.error.as_ref().into(),
                task.created_at.into(),
                task.started_at.into(),
                task.finished_at.into(),
                task.attempts.into(),
                (&task.inputs).into(),
                (&task.outputs).into(),
                (&task.details).into(),
                (&task.fingerprint).into(),
                (&task.cached_from).into(),
                (&task.cache_scope).into(),
            ],
        );
        tx.execute(&sql).await?;
    }
    for artifact in &adopted.artifacts {
        let sql = upsert(
            tx.dialect,
            "artifacts",
            &[
                "id",
                "run_uuid",
                "producer_task_uuid",
                "output_key",
                "name",
                "uri",
                "schema_title",
                "schema_version",
                "metadata",
                "created_at",
            ],
            &["id"],
            vec![
                artifact.id.into(),
                (&artifact.run_id).into(),
                (&artifact.producer_task_id).into(),
                (&artifact.output_key).into(),
                (&artifact.name).into(),
                (&artifact.uri).into(),
                (&artifact.schema_title).into(),
                (&artifact.schema_version).into(),
                (&artifact.metadata).into(),
                artifact.created_at.into(),
            ],
        );
        tx.execute(&sql).await?;
    }
    for link in &adopted.links {
        let sql = upsert(
            tx.dialect,
            "artifact_links",
            &[
                "task_uuid",
                "artifact_id",
                "direction",
                "io_key",
                "run_uuid",
            ],
            &["task_uuid", "artifact_id", "direction", "io_key"],
            vec![
                (&link.task_id).into(),
                link.artifact_id.into(),
                link.direction.as_str().into(),
                (&link.key).into(),
                (&run.id).into(),
            ],
        );
        tx.execute(&sql).await?;
    }
    Ok(())
}

fn bind_ids(sql: &mut Sql, ids: &[String]) {
    sql.bind_list(ids.iter().map(Arg::from).collect());
}

/// `DELETE FROM <table> WHERE <column> IN (ids)`.
async fn delete_in(
    tx: &mut Tx<'_>,
    table: &str,
    column: &str,
    ids: &[String],
) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new("DELETE FROM ");
    sql.push(table).push(" WHERE ").push(column).push(" IN ");
    bind_ids(&mut sql, ids);
    tx.execute(&sql).await?;
    Ok(())
}

/// Where an adopted kind lives in kfpd: table and the column that names a row.
fn kfpd_table(kind: AdoptedKind) -> (&'static str, &'static str) {
    match kind {
        AdoptedKind::Experiment => ("experiments", "name"),
        AdoptedKind::Pipeline => ("pipelines", "name"),
        AdoptedKind::Version => ("pipeline_versions", "name"),
        AdoptedKind::RecurringRun => ("recurring_runs", "display_name"),
        AdoptedKind::Run => ("runs", "display_name"),
    }
}

/// Rows made in kfpd itself (not adopted) that depend on each of `ids`, as
/// `(owner id, what)`: they keep the adopted row in place.
async fn kfpd_dependents(
    tx: &mut Tx<'_>,
    kind: AdoptedKind,
    ids: &[String],
) -> Result<HashMap<String, String>, Error> {
    let checks: &[(&str, &str, &str, &str)] = match kind {
        AdoptedKind::Experiment => &[
            ("runs", "experiment_uuid", "run_details", "run(s)"),
            (
                "recurring_runs",
                "experiment_uuid",
                "jobs",
                "recurring run(s)",
            ),
        ],
        AdoptedKind::Pipeline => &[(
            "pipeline_versions",
            "pipeline_uuid",
            "pipeline_versions",
            "pipeline version(s)",
        )],
        _ => &[],
    };
    let mut found: HashMap<String, String> = HashMap::new();
    for (table, owner, marks, what) in checks {
        let mut sql = Sql::new("SELECT ");
        sql.push(owner)
            .push(" AS owner, COUNT(*) AS made FROM ")
            .push(table)
            .push(" WHERE ")
            .push(owner)
            .push(" IN ");
        bind_ids(&mut sql, ids);
        sql.push(" AND uuid NOT IN (SELECT source_id FROM adopted_rows WHERE source_table = ")
            .bind(*marks)
            .push(") GROUP BY ")
            .push(owner);
        for row in tx.fetch_all(&sql).await? {
            let id = text(&row, "owner")?;
            let made = int(&row, "made")?;
            let entry = found.entry(id).or_default();
            if !entry.is_empty() {
                entry.push_str(" and ");
            }
            entry.push_str(&format!("{made} {what}"));
        }
    }
    Ok(found
        .into_iter()
        .map(|(id, made)| (id, format!("{made} made in kfpd depend on it")))
        .collect())
}

/// Deletes the kfpd rows of `ids` (all of them adopted, none kept) and what
/// belongs to them.
async fn delete_adopted_rows(
    tx: &mut Tx<'_>,
    kind: AdoptedKind,
    ids: &[String],
) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    match kind {
        AdoptedKind::Experiment => {
            delete_in(tx, "default_experiment", "experiment_uuid", ids).await?;
            delete_in(tx, "experiments", "uuid", ids).await?;
        }
        AdoptedKind::Pipeline => {
            // Its versions are all adopted (else it is kept); they go with it,
            // marks included, as upstream's foreign keys take them.
            let mut versions =
                Sql::new("SELECT uuid FROM pipeline_versions WHERE pipeline_uuid IN ");
            bind_ids(&mut versions, ids);
            let versions = tx
                .fetch_all(&versions)
                .await?
                .iter()
                .map(|row| text(row, "uuid"))
                .collect::<Result<Vec<_>, _>>()?;
            for chunk in versions.chunks(IDS_PER_STATEMENT) {
                delete_in(tx, "pipeline_version_tags", "version_uuid", chunk).await?;
                delete_in(tx, "pipeline_versions", "uuid", chunk).await?;
                delete_marks(tx, "pipeline_versions", chunk).await?;
            }
            delete_in(tx, "pipeline_tags", "pipeline_uuid", ids).await?;
            delete_in(tx, "pipelines", "uuid", ids).await?;
        }
        AdoptedKind::Version => {
            delete_in(tx, "pipeline_version_tags", "version_uuid", ids).await?;
            delete_in(tx, "pipeline_versions", "uuid", ids).await?;
        }
        AdoptedKind::RecurringRun => {
            delete_in(tx, "recurring_runs", "uuid", ids).await?;
        }
        AdoptedKind::Run => {
            let mut locked = Sql::new("SELECT ");
            locked
                .push(super::runs::COLUMNS)
                .push(" FROM runs WHERE uuid IN ");
            bind_ids(&mut locked, ids);
            let lock = tx.for_update();
            locked.push(" ORDER BY uuid").push(lock);
            let runs = tx
                .fetch_all(&locked)
                .await?
                .iter()
                .map(super::runs::run)
                .collect::<Result<Vec<_>, _>>()?;
            for (table, column) in [
                ("artifact_links", "run_uuid"),
                ("artifacts", "run_uuid"),
                ("tasks", "run_uuid"),
                ("run_specs", "run_uuid"),
                ("runs", "uuid"),
            ] {
                delete_in(tx, table, column, ids).await?;
            }
            delete_marks(tx, ENDED_RUNS, ids).await?;
            let counts = runs
                .iter()
                .map(|run| (super::runs::count_key(run), -1))
                .collect();
            run_counts::adjust(tx, counts).await?;
        }
    }
    Ok(())
}

async fn delete_marks(tx: &mut Tx<'_>, table: &str, ids: &[String]) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new("DELETE FROM adopted_rows WHERE source_table = ");
    sql.bind(table).push(" AND source_id IN ");
    bind_ids(&mut sql, ids);
    tx.execute(&sql).await?;
    Ok(())
}

async fn write_marks(tx: &mut Tx<'_>, marks: &[RowMark], now: i64) -> Result<(), Error> {
    for mark in marks {
        let sql = upsert(
            tx.dialect,
            "adopted_rows",
            &["source_table", "source_id", "fingerprint", "adopted_at"],
            &["source_table", "source_id"],
            vec![
                (&mark.table).into(),
                (&mark.id).into(),
                (&mark.fingerprint).into(),
                now.into(),
            ],
        );
        tx.execute(&sql).await?;
    }
    Ok(())
}

impl SqlStore {
    /// Writes one batch of adopted rows and their marks in one transaction.
    /// Experiments, pipelines and versions go first, so the rows that refer to
    /// them find them.
    pub async fn write_adopted(&self, batch: &AdoptBatch, now: i64) -> Result<(), Error> {
        self.write("adopt batch", || async {
            let mut tx = self.begin_write().await?;
            for experiment in &batch.experiments {
                write_experiment(&mut tx, experiment).await?;
            }
            if let Some(default) = &batch.default_experiment {
                let sql = upsert(
                    tx.dialect,
                    "default_experiment",
                    &["id", "experiment_uuid"],
                    &["id"],
                    vec![1.into(), default.into()],
                );
                tx.execute(&sql).await?;
            }
            for pipeline in &batch.pipelines {
                write_pipeline(&mut tx, pipeline).await?;
            }
            for version in &batch.versions {
                write_version(&mut tx, version).await?;
            }
            for recurring in &batch.recurring_runs {
                write_recurring_run(&mut tx, recurring).await?;
            }
            let ids: Vec<&str> = batch
                .runs
                .iter()
                .map(|adopted| adopted.run.id.as_str())
                .collect();
            let before = current_count_keys(&mut tx, &ids).await?;
            let mut counts = Vec::with_capacity(batch.runs.len() * 2);
            for adopted in &batch.runs {
                let existed = before.contains_key(&adopted.run.id);
                write_run(&mut tx, adopted, existed).await?;
                if let Some(key) = before.get(&adopted.run.id) {
                    counts.push((key.clone(), -1));
                }
                counts.push((super::runs::count_key(&adopted.run), 1));
            }
            run_counts::adjust(&mut tx, counts).await?;
            write_marks(&mut tx, &batch.marks, now).await?;
            tx.commit().await
        })
        .await?;
        self.changes.runs();
        Ok(())
    }

    /// The marks of one upstream table: row id → fingerprint.
    pub async fn adopted_marks(&self, table: &str) -> Result<HashMap<String, String>, Error> {
        let mut sql =
            Sql::new("SELECT source_id, fingerprint FROM adopted_rows WHERE source_table = ");
        sql.bind(table);
        let rows = self.fetch_all(&sql).await?;
        let mut marks = HashMap::with_capacity(rows.len());
        for row in rows {
            marks.insert(text(&row, "source_id")?, text(&row, "fingerprint")?);
        }
        Ok(marks)
    }

    /// Removes the adopted rows of `ids` (marked under upstream's `table`, gone
    /// from upstream) in one transaction: the kfpd rows with what belongs to them
    /// and their marks. A row that rows made in kfpd depend on (an experiment
    /// with kfpd's own runs, a pipeline with kfpd's own versions) is kept with its
    /// mark and the reason, so every pass reports it. Rows made in kfpd are never
    /// removed. `dry_run` rolls the transaction back: the answer is the same,
    /// nothing changes.
    pub async fn remove_adopted(
        &self,
        kind: AdoptedKind,
        table: &str,
        ids: &[String],
        dry_run: bool,
    ) -> Result<Vec<GoneRow>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.write("remove adopted rows", || async {
            let mut tx = self.begin_write().await?;
            let (kfpd, name_column) = kfpd_table(kind);
            let mut names = Sql::new("SELECT uuid, ");
            names
                .push(name_column)
                .push(" AS name FROM ")
                .push(kfpd)
                .push(" WHERE uuid IN ");
            bind_ids(&mut names, ids);
            let mut present = HashMap::new();
            for row in tx.fetch_all(&names).await? {
                present.insert(text(&row, "uuid")?, text(&row, "name")?);
            }
            let kept = kfpd_dependents(&mut tx, kind, ids).await?;
            let mut gone = Vec::new();
            let mut removed = Vec::new();
            for id in ids {
                let reason = kept.get(id).cloned();
                if reason.is_none() {
                    removed.push(id.clone());
                }
                // Deleted in kfpd already: only the mark goes.
                if let Some(name) = present.get(id) {
                    gone.push(GoneRow {
                        id: id.clone(),
                        name: name.clone(),
                        kept: reason,
                    });
                }
            }
            delete_adopted_rows(&mut tx, kind, &removed).await?;
            delete_marks(&mut tx, table, &removed).await?;
            if dry_run {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            Ok(gone)
        })
        .await
    }

    /// Ends the adopted runs kfpd holds unfinished as upstream had them (PENDING,
    /// RUNNING: FAILED with `reason`; CANCELING: CANCELED). Used where nothing in
    /// kfpd follows upstream's Workflows: kfpd did not start these runs and must
    /// not run them again. A run kfpd moved on itself after it was ended (a retry)
    /// is kfpd's: the mark of its ending keeps it from being ended again, until a
    /// pass brings a changed upstream row. Returns the ids and states ended.
    pub async fn end_adopted_unfinished(
        &self,
        reason: impl Fn(RunState) -> String,
        now: i64,
    ) -> Result<Vec<(String, RunState)>, Error> {
        let mut sql = Sql::new(
            "SELECT r.uuid, r.state, a.fingerprint FROM runs r \
             JOIN adopted_rows a ON a.source_table = 'run_details' AND a.source_id = r.uuid \
             LEFT JOIN adopted_rows e ON e.source_table = ",
        );
        sql.bind(ENDED_RUNS)
            .push(" AND e.source_id = r.uuid WHERE r.state IN ");
        sql.bind_list(
            [RunState::Pending, RunState::Running, RunState::Canceling]
                .iter()
                .map(|state| state.as_str().into())
                .collect(),
        );
        sql.push(" AND (e.fingerprint IS NULL OR e.fingerprint <> a.fingerprint) ORDER BY r.uuid");
        let mut ended = Vec::new();
        for row in self.fetch_all(&sql).await? {
            let id = text(&row, "uuid")?;
            let state = RunState::parse(&text(&row, "state")?);
            let fingerprint = text(&row, "fingerprint")?;
            let (to, error) = match state {
                RunState::Canceling => (RunState::Canceled, None),
                _ => (RunState::Failed, Some(reason(state))),
            };
            match self.transition_run(&id, &[state], to, error, now).await {
                Ok(_) => {}
                // Moved meanwhile: that state stands.
                Err(Error::FailedPrecondition(_) | Error::NotFound(_)) => continue,
                Err(error) => return Err(error),
            }
            let mark = RowMark {
                table: ENDED_RUNS.into(),
                id: id.clone(),
                fingerprint,
            };
            self.write("mark an ended adopted run", || async {
                let mut tx = self.begin_write().await?;
                write_marks(&mut tx, std::slice::from_ref(&mark), now).await?;
                tx.commit().await
            })
            .await?;
            ended.push((id, state));
        }
        Ok(ended)
    }

    /// The kfpd row of another id that holds the name an adopted row brings, if
    /// any; kfpd's own unused `Default` experiment does not count (the adopted
    /// one replaces it).
    pub async fn adopt_name_holder(
        &self,
        scope: NameScope<'_>,
        name: &str,
        id: &str,
    ) -> Result<Option<String>, Error> {
        let mut sql = match scope {
            NameScope::Experiment { namespace } => {
                let mut sql = Sql::new("SELECT uuid FROM experiments WHERE namespace = ");
                sql.bind(namespace);
                sql
            }
            NameScope::Pipeline { namespace } => {
                let mut sql = Sql::new("SELECT uuid FROM pipelines WHERE namespace = ");
                sql.bind(namespace);
                sql
            }
            NameScope::Version { pipeline_id } => {
                let mut sql = Sql::new("SELECT uuid FROM pipeline_versions WHERE pipeline_uuid = ");
                sql.bind(pipeline_id);
                sql
            }
        };
        sql.push(" AND name = ")
            .bind(name)
            .push(" AND uuid <> ")
            .bind(id);
        let Some(row) = self.fetch_optional(&sql).await? else {
            return Ok(None);
        };
        let holder = text(&row, "uuid")?;
        if let NameScope::Experiment { .. } = scope {
            let mut unused = true;
            for check in unused_checks(&holder) {
                if self.fetch_optional(&check).await?.is_some() {
                    unused = false;
                    break;
                }
            }
            if unused {
                return Ok(None);
            }
        }
        Ok(Some(holder))
    }

    /// Records a finished pass.
    pub async fn record_adopt_pass(&self, pass: &AdoptPass) -> Result<(), Error> {
        self.write("record adopt pass", || async {
            let mut tx = self.begin_write().await?;
            let mut sql = Sql::new(
                "INSERT INTO adopt_passes (started_at, finished_at, source, brought, unchanged, refused) VALUES (",
            );
            sql.bind(pass.started_at)
                .push(", ")
                .bind(pass.finished_at)
                .push(", ")
                .bind(&pass.source)
                .push(", ")
                .bind(pass.brought)
                .push(", ")
                .bind(pass.unchanged)
                .push(", ")
                .bind(pass.refused)
                .push(")");
            tx.execute(&sql).await?;
            tx.commit().await
        })
        .await
    }

    /// Finished passes, newest first.
    pub async fn adopt_passes(&self) -> Result<Vec<AdoptPass>, Error> {
        let sql = Sql::new(
            "SELECT started_at, finished_at, source, brought, unchanged, refused FROM adopt_passes \
             ORDER BY finished_at DESC",
        );
        let rows = self.fetch_all(&sql).await?;
        rows.iter()
            .map(|row| {
                Ok(AdoptPass {
                    started_at: int(row, "started_at")?,
                    finished_at: int(row, "finished_at")?,
                    source: text(row, "source")?,
                    brought: int(row, "brought")?,
                    unchanged: int(row, "unchanged")?,
                    refused: int(row, "refused")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Options;
    use crate::{RunStore, StateChange, StorageState};

    fn adopted_running(id: &str) -> AdoptedRun {
        AdoptedRun {
            run: crate::Run {
                id: id.into(),
                experiment_id: String::new(),
                namespace: String::new(),
                display_name: "running upstream".into(),
                description: String::new(),
                storage_state: StorageState::Available,
                service_account: String::new(),
                created_at: 10,
                scheduled_at: 10,
                finished_at: 0,
                state: RunState::Running,
                error: None,
                pipeline_id: String::new(),
                pipeline_version_id: String::new(),
                recurring_run_id: String::new(),
                runtime_config: String::new(),
                state_history: vec![StateChange {
                    time: 10,
                    state: RunState::Running,
                    error: None,
                }],
                pipeline_spec: None,
            },
            pipeline_spec: "{}".into(),
            inline_spec: true,
            archived_at: 0,
            tasks: Vec::new(),
            artifacts: Vec::new(),
            links: Vec::new(),
        }
    }

    fn batch(id: &str, fingerprint: &str) -> AdoptBatch {
        AdoptBatch {
            runs: vec![adopted_running(id)],
            marks: vec![RowMark {
                table: "run_details".into(),
                id: id.into(),
                fingerprint: fingerprint.into(),
            }],
            ..AdoptBatch::default()
        }
    }

    /// An adopted run ended once and then retried in kfpd is kfpd's own: the next
    /// start leaves it running; a pass that brings a changed upstream row makes
    /// it adopted (and endable) again.
    #[tokio::test]
    async fn a_run_kfpd_retried_after_ending_it_is_not_ended_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("kfpd.db").display());
        let store = SqlStore::connect(&Options::new(url)).await.expect("store");
        let id = "2d9e7c40-0000-4000-8000-000000000001";
        let why = |state: RunState| format!("adopted while {}", state.as_str());
        store
            .write_adopted(&batch(id, "f1"), 20)
            .await
            .expect("adopt");
        let ended = store.end_adopted_unfinished(why, 30).await.expect("end");
        assert_eq!(ended, vec![(id.to_string(), RunState::Running)]);
        let run = store.get_run(id).await.expect("run");
        assert_eq!(run.state, RunState::Failed);
        assert_eq!(run.error.as_deref(), Some("adopted while RUNNING"));

        store
            .transition_run(id, &[RunState::Failed], RunState::Pending, None, 40)
            .await
            .expect("retry");
        store
            .transition_run(id, &[RunState::Pending], RunState::Running, None, 41)
            .await
            .expect("claim");
        let ended = store.end_adopted_unfinished(why, 50).await.expect("end");
        assert!(ended.is_empty(), "{ended:?}");
        assert_eq!(
            store.get_run(id).await.expect("run").state,
            RunState::Running
        );

        store
            .write_adopted(&batch(id, "f2"), 60)
            .await
            .expect("adopt");
        let ended = store.end_adopted_unfinished(why, 70).await.expect("end");
        assert_eq!(ended.len(), 1);
    }
}
