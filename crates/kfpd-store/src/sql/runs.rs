//! Runs: creation with their spec, state transitions with history, archive and delete.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::pipelines::push_values;
use super::rows::{int, opt_text, text};
use super::run_counts::{self, CountKey};
use super::{Arg, Dialect, Sql, SqlStore, Tx};
use crate::list::{ListQuery, Page};
use crate::{new_id, Error, NewRun, Run, RunState, RunStore, Scope, StateChange, StorageState};

pub(super) const COLUMNS: &str =
    "uuid, experiment_uuid, namespace, display_name, description, storage_state, \
     service_account, created_at, scheduled_at, finished_at, state, error, pipeline_uuid, \
     pipeline_version_uuid, recurring_run_uuid, runtime_config, state_history, inline_spec";

pub(super) fn run(row: &AnyRow) -> Result<Run, Error> {
    let history_json = text(row, "state_history")?;
    let state_history: Vec<StateChange> = serde_json::from_str(&history_json).map_err(|error| {
        Error::Internal(format!("run state history is not valid JSON: {error}"))
    })?;
    Ok(Run {
        id: text(row, "uuid")?,
        experiment_id: text(row, "experiment_uuid")?,
        namespace: text(row, "namespace")?,
        display_name: text(row, "display_name")?,
        description: text(row, "description")?,
        storage_state: StorageState::parse(&text(row, "storage_state")?),
        service_account: text(row, "service_account")?,
        created_at: int(row, "created_at")?,
        scheduled_at: int(row, "scheduled_at")?,
        finished_at: int(row, "finished_at")?,
        state: RunState::parse(&text(row, "state")?),
        error: opt_text(row, "error")?,
        pipeline_id: text(row, "pipeline_uuid")?,
        pipeline_version_id: text(row, "pipeline_version_uuid")?,
        recurring_run_id: text(row, "recurring_run_uuid")?,
        runtime_config: text(row, "runtime_config")?,
        state_history,
        pipeline_spec: None,
    })
}

/// The `run_counts` row a run is counted in.
pub(super) fn count_key(run: &Run) -> CountKey {
    CountKey::of_run(
        &run.id,
        &run.namespace,
        &run.experiment_id,
        run.storage_state.as_str(),
        run.state.as_str(),
    )
}

fn history_json(history: &[StateChange]) -> Result<String, Error> {
    serde_json::to_string(history)
        .map_err(|error| Error::Internal(format!("encoding run state history: {error}")))
}

async fn locked_run(tx: &mut Tx<'_>, id: &str) -> Result<Run, Error> {
    let lock = tx.for_update();
    let mut sql = Sql::new("SELECT ");
    sql.push(COLUMNS)
        .push(" FROM runs WHERE uuid = ")
        .bind(id)
        .push(lock);
    let row = tx.fetch_optional(&sql).await?;
    let row = row.ok_or_else(|| Error::not_found("run", id))?;
    run(&row)
}

/// Bind parameters per `runs` row, and rows per multi-row `INSERT` (well under every
/// backend's parameter limit).
const RUN_VALUES: usize = 21;
const RUNS_PER_STATEMENT: usize = 50;
/// Pipeline specs per `INSERT` stop growing past this many bytes, so one statement
/// stays far below MySQL's `max_allowed_packet`.
const SPEC_BYTES_PER_STATEMENT: usize = 4 << 20;

/// Inserts a PENDING run with its spec and bumps its experiment's
/// `last_run_created_at`, inside the caller's transaction.
pub(super) async fn insert_run(tx: &mut Tx<'_>, id: String, new: NewRun) -> Result<Run, Error> {
    let mut created = insert_runs(tx, &[(id, new)]).await?;
    created
        .pop()
        .ok_or_else(|| Error::Internal("run insert returned nothing".into()))
}

/// [`insert_run`] for many runs at once: multi-row inserts, one experiment update per
/// experiment and one count change per counted row. Returns the runs in order.
pub(super) async fn insert_runs(
    tx: &mut Tx<'_>,
    runs: &[(String, NewRun)],
) -> Result<Vec<Run>, Error> {
    let experiments: Vec<&str> = runs
        .iter()
        .map(|(_, new)| new.experiment_id.as_str())
        .collect();
    lock_experiments(tx, &experiments).await?;
    let mut created = Vec::with_capacity(runs.len());
    for (id, new) in runs {
        let state = RunState::Pending;
        let history = vec![StateChange {
            time: new.created_at,
            state,
            error: None,
        }];
        created.push(Run {
            id: id.clone(),
            experiment_id: new.experiment_id.clone(),
            namespace: new.namespace.clone(),
            display_name: new.display_name.clone(),
            description: new.description.clone(),
            storage_state: StorageState::Available,
            service_account: new.service_account.clone(),
            created_at: new.created_at,
            scheduled_at: new.scheduled_at,
            finished_at: 0,
            state,
            error: None,
            pipeline_id: new.pipeline_id.clone(),
            pipeline_version_id: new.pipeline_version_id.clone(),
            recurring_run_id: new.recurring_run_id.clone(),
            runtime_config: new.runtime_config.clone(),
            state_history: history,
            pipeline_spec: new.inline_spec.then(|| new.pipeline_spec.clone()),
        });
    }

    for (chunk, requests) in created
        .chunks(RUNS_PER_STATEMENT)
        .zip(runs.chunks(RUNS_PER_STATEMENT))
    {
        let mut sql = Sql::new("INSERT INTO runs (");
        sql.push(COLUMNS)
            .push(", archived_at, conditions, runtime_details) VALUES ");
        for (index, (run, (_, new))) in chunk.iter().zip(requests).enumerate() {
            if index > 0 {
                sql.push(", ");
            }
            sql.push("(");
            let values: [Arg; RUN_VALUES] = [
                (&run.id).into(),
                (&run.experiment_id).into(),
                (&run.namespace).into(),
                (&run.display_name).into(),
                (&run.description).into(),
                run.storage_state.as_str().into(),
                (&run.service_account).into(),
                run.created_at.into(),
                run.scheduled_at.into(),
                0.into(),
                run.state.as_str().into(),
                Arg::NullStr,
                (&run.pipeline_id).into(),
                (&run.pipeline_version_id).into(),
                (&run.recurring_run_id).into(),
                (&run.runtime_config).into(),
                history_json(&run.state_history)?.into(),
                new.inline_spec.into(),
                0.into(),
                run.state.condition().into(),
                "".into(),
            ];
            push_values(&mut sql, values);
        }
        tx.execute(&sql).await?;
    }

    let mut pending_specs = Vec::new();
    let mut pending_bytes = 0;
    for (id, new) in runs {
        pending_bytes += new.pipeline_spec.len();
        pending_specs.push((id, &new.pipeline_spec));
        if pending_specs.len() == RUNS_PER_STATEMENT || pending_bytes >= SPEC_BYTES_PER_STATEMENT {
            insert_specs(tx, &pending_specs).await?;
            pending_specs.clear();
            pending_bytes = 0;
        }
    }
    insert_specs(tx, &pending_specs).await?;

    let mut newest: Vec<(&str, i64)> = Vec::new();
    for run in &created {
        match newest
            .iter_mut()
            .find(|(experiment, _)| *experiment == run.experiment_id)
        {
            Some((_, at)) => *at = (*at).max(run.created_at),
            None => newest.push((&run.experiment_id, run.created_at)),
        }
    }
    newest.sort();
    for (experiment_id, at) in newest {
        let mut experiment = Sql::new("UPDATE experiments SET last_run_created_at = ");
        experiment
            .bind(at)
            .push(" WHERE uuid = ")
            .bind(experiment_id)
            .push(" AND last_run_created_at < ")
            .bind(at);
        tx.execute(&experiment).await?;
    }

    let counts = created.iter().map(|run| (count_key(run), 1)).collect();
    run_counts::adjust(tx, counts).await?;
    Ok(created)
}

/// Locks the rows of these experiments (PostgreSQL, MySQL), in id order, before a
/// transaction adds runs to them. Archiving an experiment locks its row first too,
/// so creates and archives of one experiment queue on that row instead of
/// deadlocking on the runs index (InnoDB's gap locks) and the counts.
pub(super) async fn lock_experiments(tx: &mut Tx<'_>, ids: &[&str]) -> Result<(), Error> {
    if tx.dialect == Dialect::Sqlite || ids.is_empty() {
        return Ok(());
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut sql = Sql::new("SELECT uuid FROM experiments WHERE uuid IN (");
    for (index, id) in sorted.iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.bind(*id);
    }
    sql.push(") ORDER BY uuid").push(tx.for_update());
    tx.fetch_all(&sql).await?;
    Ok(())
}

async fn insert_specs(tx: &mut Tx<'_>, specs: &[(&String, &String)]) -> Result<(), Error> {
    if specs.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new("INSERT INTO run_specs (run_uuid, pipeline_spec) VALUES ");
    for (index, (id, spec)) in specs.iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.push("(").bind(*id).push(", ").bind(*spec).push(")");
    }
    tx.execute(&sql).await?;
    Ok(())
}

#[async_trait]
impl RunStore for SqlStore {
    async fn create_run(&self, new: NewRun) -> Result<Run, Error> {
        let created = self.run_batches.create(self, new_id(), new).await?;
        self.changes.run(&created.id);
        Ok(created)
    }

    async fn get_run(&self, id: &str) -> Result<Run, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(COLUMNS).push(" FROM runs WHERE uuid = ").bind(id);
        let row = self.fetch_optional(&sql).await?;
        let row = row.ok_or_else(|| Error::not_found("run", id))?;
        let mut found = run(&row)?;
        if int(&row, "inline_spec")? != 0 {
            let mut spec = Sql::new("SELECT pipeline_spec FROM run_specs WHERE run_uuid = ");
            spec.bind(id);
            if let Some(row) = self.fetch_optional(&spec).await? {
                found.pipeline_spec = Some(text(&row, "pipeline_spec")?);
            }
        }
        Ok(found)
    }

    async fn list_runs(&self, scope: &Scope, query: &ListQuery) -> Result<Page<Run>, Error> {
        let mut from = Sql::new(" FROM runs WHERE 1 = 1");
        if let Some(namespace) = &scope.namespace {
            from.push(" AND namespace = ").bind(namespace);
        }
        if let Some(experiment_id) = &scope.experiment_id {
            from.push(" AND experiment_uuid = ").bind(experiment_id);
        }
        from.push_conditions(self.dialect, &query.conditions, None);
        let counted = run_counts::total_statement(
            self.dialect,
            scope.namespace.as_deref(),
            scope.experiment_id.as_deref(),
            &query.conditions,
        );
        let Some(count) = counted else {
            return self.list_page(COLUMNS, &from, query, run).await;
        };
        self.list_page_counted(COLUMNS, &from, &count, query, run)
            .await
    }

    async fn set_run_storage_state(
        &self,
        id: &str,
        state: StorageState,
        now: i64,
    ) -> Result<(), Error> {
        self.write("archive run", || async {
            let mut tx = self.begin_write().await?;
            let current = locked_run(&mut tx, id).await?;
            if state == StorageState::Available {
                let mut experiment = Sql::new("SELECT storage_state FROM experiments WHERE uuid = ");
                experiment.bind(&current.experiment_id);
                if let Some(row) = tx.fetch_optional(&experiment).await? {
                    let archived =
                        StorageState::parse(&text(&row, "storage_state")?) == StorageState::Archived;
                    if archived {
                        return Err(Error::FailedPrecondition(format!(
                            "cannot unarchive run {id}: its experiment {} is archived; unarchive the experiment first",
                            current.experiment_id
                        )));
                    }
                }
            }
            let archived_at = if state == StorageState::Archived {
                now
            } else {
                0
            };
            let mut sql = Sql::new("UPDATE runs SET storage_state = ");
            sql.bind(state.as_str())
                .push(", archived_at = ")
                .bind(archived_at)
                .push(" WHERE uuid = ")
                .bind(id);
            tx.execute(&sql).await?;
            let after = Run {
                storage_state: state,
                ..current.clone()
            };
            run_counts::moved(&mut tx, count_key(&current), count_key(&after)).await?;
            tx.commit().await
        })
        .await?;
        self.changes.run(id);
        Ok(())
    }

    async fn delete_run(&self, id: &str) -> Result<(), Error> {
        self.write("delete run", || async {
            let mut tx = self.begin_write().await?;
            let current = locked_run(&mut tx, id).await?;
            for statement in [
                "DELETE FROM artifact_links WHERE run_uuid = ",
                "DELETE FROM artifacts WHERE run_uuid = ",
                "DELETE FROM tasks WHERE run_uuid = ",
                "DELETE FROM run_specs WHERE run_uuid = ",
            ] {
                let mut sql = Sql::new(statement);
                sql.bind(id);
                tx.execute(&sql).await?;
            }
            let mut sql = Sql::new("DELETE FROM runs WHERE uuid = ");
            sql.bind(id);
            if tx.execute(&sql).await? == 0 {
                return Err(Error::not_found("run", id));
            }
            run_counts::adjust(&mut tx, vec![(count_key(&current), -1)]).await?;
            tx.commit().await
        })
        .await?;
        self.changes.run(id);
        Ok(())
    }

    async fn transition_run(
        &self,
        id: &str,
        from: &[RunState],
        state: RunState,
        error: Option<String>,
        now: i64,
    ) -> Result<Run, Error> {
        let changed = self
            .write("change run state", || async {
                let mut tx = self.begin_write().await?;
                let mut current = locked_run(&mut tx, id).await?;
                if !from.contains(&current.state) {
                    return Err(Error::FailedPrecondition(format!(
                        "run {id} is {}, which cannot change to {}",
                        current.state.as_str(),
                        state.as_str()
                    )));
                }
                if current.state_history.last().map(|change| change.state) != Some(state) {
                    current.state_history.push(StateChange {
                        time: now,
                        state,
                        error: error.clone(),
                    });
                }
                let finished_at = if state.is_terminal() { now } else { 0 };
                let mut sql = Sql::new("UPDATE runs SET state = ");
                sql.bind(state.as_str())
                    .push(", conditions = ")
                    .bind(state.condition())
                    .push(", finished_at = ")
                    .bind(finished_at)
                    .push(", error = ");
                sql.bind(error.as_ref());
                sql.push(", state_history = ")
                    .bind(history_json(&current.state_history)?)
                    .push(" WHERE uuid = ")
                    .bind(id);
                tx.execute(&sql).await?;
                let before = count_key(&current);
                current.state = state;
                run_counts::moved(&mut tx, before, count_key(&current)).await?;
                tx.commit().await?;
                current.finished_at = finished_at;
                current.error = error.clone();
                Ok(current)
            })
            .await?;
        self.changes.run(id);
        Ok(changed)
    }

    fn changes(&self) -> &crate::Changes {
        &self.changes
    }
}
