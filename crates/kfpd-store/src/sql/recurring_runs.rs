//! Recurring runs (upstream's `jobs`): their trigger, source and enabled flag,
//! and edits of them. Firing them is in `schedules.rs`.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::pipelines::push_values;
use super::rows::{int, opt_int, opt_text, text};
use super::{schedules, Arg, Sql, SqlStore, Tx};
use crate::list::{ListQuery, Page};
use crate::{
    new_id, Error, Fire, FireOutcome, NewRecurringRun, RecurringRun, RecurringRunStore,
    RecurringRunUpdate, ScheduleGuard, Scope, Trigger,
};

pub(super) const COLUMNS: &str =
    "uuid, display_name, description, namespace, experiment_uuid, service_account, \
     max_concurrency, no_catchup, enabled, created_at, updated_at, trigger_kind, cron, \
     interval_second, start_time, end_time, pipeline_uuid, pipeline_version_uuid, pipeline_spec, \
     runtime_config, last_fired_at, next_fire_at, fired_count, revision";

/// How a trigger is stored: kind, cron, interval, start and end.
fn trigger_columns(trigger: &Trigger) -> (&'static str, String, i64, Option<i64>, Option<i64>) {
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

/// Appends ` AND <the guard holds>` to a statement about one recurring run.
pub(super) fn push_guard(sql: &mut Sql, guard: ScheduleGuard) {
    sql.push(" AND revision = ").bind(guard.revision);
    match guard.last_fired_at {
        Some(last) => sql.push(" AND last_fired_at = ").bind(last),
        None => sql.push(" AND last_fired_at IS NULL"),
    };
}

/// Whether a row with this id exists (to tell "changed" from "gone").
pub(super) async fn exists(tx: &mut Tx<'_>, id: &str) -> Result<bool, Error> {
    let mut check = Sql::new("SELECT uuid FROM recurring_runs WHERE uuid = ");
    check.bind(id);
    Ok(tx.fetch_optional(&check).await?.is_some())
}

pub(super) fn recurring_run(row: &AnyRow) -> Result<RecurringRun, Error> {
    let start_time = opt_int(row, "start_time")?;
    let end_time = opt_int(row, "end_time")?;
    let trigger = match text(row, "trigger_kind")?.as_str() {
        "cron" => Trigger::Cron {
            cron: text(row, "cron")?,
            start_time,
            end_time,
        },
        "periodic" => Trigger::Periodic {
            interval_second: int(row, "interval_second")?,
            start_time,
            end_time,
        },
        _ => Trigger::None,
    };
    Ok(RecurringRun {
        id: text(row, "uuid")?,
        display_name: text(row, "display_name")?,
        description: text(row, "description")?,
        namespace: text(row, "namespace")?,
        experiment_id: text(row, "experiment_uuid")?,
        service_account: text(row, "service_account")?,
        max_concurrency: int(row, "max_concurrency")?,
        no_catchup: int(row, "no_catchup")? != 0,
        enabled: int(row, "enabled")? != 0,
        created_at: int(row, "created_at")?,
        updated_at: int(row, "updated_at")?,
        trigger,
        pipeline_id: text(row, "pipeline_uuid")?,
        pipeline_version_id: text(row, "pipeline_version_uuid")?,
        pipeline_spec: opt_text(row, "pipeline_spec")?,
        runtime_config: text(row, "runtime_config")?,
        last_fired_at: opt_int(row, "last_fired_at")?,
        next_fire_at: opt_int(row, "next_fire_at")?,
        fired_count: int(row, "fired_count")?,
        revision: int(row, "revision")?,
    })
}

#[async_trait]
impl RecurringRunStore for SqlStore {
    async fn create_recurring_run(&self, new: NewRecurringRun) -> Result<RecurringRun, Error> {
        let created = RecurringRun {
            id: new_id(),
            display_name: new.display_name,
            description: new.description,
            namespace: new.namespace,
            experiment_id: new.experiment_id,
            service_account: new.service_account,
            max_concurrency: new.max_concurrency,
            no_catchup: new.no_catchup,
            enabled: new.enabled,
            created_at: new.created_at,
            updated_at: new.created_at,
            trigger: new.trigger,
            pipeline_id: new.pipeline_id,
            pipeline_version_id: new.pipeline_version_id,
            pipeline_spec: new.pipeline_spec,
            runtime_config: new.runtime_config,
            last_fired_at: None,
            next_fire_at: new.next_fire_at,
            fired_count: 0,
            revision: 0,
        };
        let (kind, cron, interval, start, end) = trigger_columns(&created.trigger);
        let spec: Arg = created.pipeline_spec.as_ref().into();
        let mut sql = Sql::new("INSERT INTO recurring_runs (");
        sql.push(COLUMNS).push(") VALUES (");
        let values: [Arg; 24] = [
            (&created.id).into(),
            (&created.display_name).into(),
            (&created.description).into(),
            (&created.namespace).into(),
            (&created.experiment_id).into(),
            (&created.service_account).into(),
            created.max_concurrency.into(),
            created.no_catchup.into(),
            created.enabled.into(),
            created.created_at.into(),
            created.updated_at.into(),
            kind.into(),
            cron.into(),
            interval.into(),
            start.into(),
            end.into(),
            (&created.pipeline_id).into(),
            (&created.pipeline_version_id).into(),
            spec,
            (&created.runtime_config).into(),
            created.last_fired_at.into(),
            created.next_fire_at.into(),
            created.fired_count.into(),
            created.revision.into(),
        ];
        push_values(&mut sql, values);
        self.write("create recurring run", || async {
            let mut tx = self.begin_write().await?;
            tx.execute(&sql).await?;
            tx.commit().await?;
            Ok(created.clone())
        })
        .await
    }

    async fn get_recurring_run(&self, id: &str) -> Result<RecurringRun, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(COLUMNS)
            .push(" FROM recurring_runs WHERE uuid = ")
            .bind(id);
        let row = self.fetch_optional(&sql).await?;
        let row = row.ok_or_else(|| Error::not_found("recurring run", id))?;
        recurring_run(&row)
    }

    async fn list_recurring_runs(
        &self,
        scope: &Scope,
        query: &ListQuery,
    ) -> Result<Page<RecurringRun>, Error> {
        let mut from = Sql::new(" FROM recurring_runs WHERE 1 = 1");
        if let Some(namespace) = &scope.namespace {
            from.push(" AND namespace = ").bind(namespace);
        }
        if let Some(experiment_id) = &scope.experiment_id {
            from.push(" AND experiment_uuid = ").bind(experiment_id);
        }
        from.push_conditions(self.dialect, &query.conditions, None);
        self.list_page(COLUMNS, &from, query, recurring_run).await
    }

    async fn set_recurring_run_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<(), Error> {
        let mut sql = Sql::new("UPDATE recurring_runs SET revision = revision + 1, enabled = ");
        sql.bind(enabled)
            .push(", updated_at = ")
            .bind(now)
            .push(" WHERE uuid = ")
            .bind(id);
        self.write("enable recurring run", || async {
            let mut tx = self.begin_write().await?;
            if tx.execute(&sql).await? == 0 {
                return Err(Error::not_found("recurring run", id));
            }
            tx.commit().await
        })
        .await
    }

    async fn delete_recurring_run(&self, id: &str) -> Result<(), Error> {
        let mut sql = Sql::new("DELETE FROM recurring_runs WHERE uuid = ");
        sql.bind(id);
        self.write("delete recurring run", || async {
            let mut tx = self.begin_write().await?;
            if tx.execute(&sql).await? == 0 {
                return Err(Error::not_found("recurring run", id));
            }
            tx.commit().await
        })
        .await
    }

    async fn update_recurring_run(
        &self,
        id: &str,
        guard: ScheduleGuard,
        update: RecurringRunUpdate,
    ) -> Result<RecurringRun, Error> {
        let mut sql = Sql::new("UPDATE recurring_runs SET revision = revision + 1, updated_at = ");
        sql.bind(update.updated_at);
        let mut set = |column: &str, value: Arg| {
            sql.push(", ").push(column).push(" = ").bind(value);
        };
        if let Some(display_name) = &update.display_name {
            set("display_name", display_name.into());
        }
        if let Some(description) = &update.description {
            set("description", description.into());
        }
        if let Some(service_account) = &update.service_account {
            set("service_account", service_account.into());
        }
        if let Some(max_concurrency) = update.max_concurrency {
            set("max_concurrency", max_concurrency.into());
        }
        if let Some(no_catchup) = update.no_catchup {
            set("no_catchup", no_catchup.into());
        }
        if let Some(enabled) = update.enabled {
            set("enabled", enabled.into());
        }
        if let Some(trigger) = &update.trigger {
            let (kind, cron, interval, start, end) = trigger_columns(trigger);
            set("trigger_kind", kind.into());
            set("cron", cron.into());
            set("interval_second", interval.into());
            set("start_time", start.into());
            set("end_time", end.into());
        }
        if let Some(source) = &update.source {
            set("pipeline_uuid", (&source.pipeline_id).into());
            set(
                "pipeline_version_uuid",
                (&source.pipeline_version_id).into(),
            );
            set("pipeline_spec", source.pipeline_spec.as_ref().into());
        }
        if let Some(runtime_config) = &update.runtime_config {
            set("runtime_config", runtime_config.into());
        }
        if let Some(schedule) = update.schedule {
            set("last_fired_at", schedule.last_fired_at.into());
            set("next_fire_at", schedule.next_fire_at.into());
        }
        sql.push(" WHERE uuid = ").bind(id);
        push_guard(&mut sql, guard);
        self.write("update recurring run", || async {
            let mut tx = self.begin_write().await?;
            if tx.execute(&sql).await? == 0 {
                if !exists(&mut tx, id).await? {
                    return Err(Error::not_found("recurring run", id));
                }
                return Err(Error::Aborted(format!(
                    "recurring run {id} changed while it was being updated; try again"
                )));
            }
            let mut read = Sql::new("SELECT ");
            read.push(COLUMNS)
                .push(" FROM recurring_runs WHERE uuid = ")
                .bind(id);
            let row = tx.fetch_optional(&read).await?;
            let row = row.ok_or_else(|| Error::not_found("recurring run", id))?;
            let updated = recurring_run(&row)?;
            tx.commit().await?;
            Ok(updated)
        })
        .await
    }

    async fn due_recurring_runs(&self, now: i64, limit: usize) -> Result<Vec<RecurringRun>, Error> {
        schedules::due(self, now, limit).await
    }

    async fn next_recurring_run_due(&self) -> Result<Option<i64>, Error> {
        schedules::next_due(self).await
    }

    async fn fire_recurring_run(&self, fire: Fire) -> Result<FireOutcome, Error> {
        let outcome = schedules::fire(self, fire).await?;
        if let FireOutcome::Fired(run) = &outcome {
            self.changes.run(&run.id);
        }
        Ok(outcome)
    }

    async fn reschedule_recurring_run(
        &self,
        id: &str,
        guard: ScheduleGuard,
        next_fire_at: Option<i64>,
    ) -> Result<bool, Error> {
        schedules::reschedule(self, id, guard, next_fire_at).await
    }

    async fn active_run_count(&self, recurring_run_id: &str) -> Result<i64, Error> {
        schedules::active_runs(self, recurring_run_id).await
    }
}
