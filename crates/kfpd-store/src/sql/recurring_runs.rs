//! Recurring runs (upstream's `jobs`): their trigger, source and enabled flag.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::pipelines::push_values;
use super::rows::{int, opt_int, opt_text, text};
use super::{Arg, Sql, SqlStore};
use crate::list::{ListQuery, Page};
use crate::{new_id, Error, NewRecurringRun, RecurringRun, RecurringRunStore, Scope, Trigger};

const COLUMNS: &str =
    "uuid, display_name, description, namespace, experiment_uuid, service_account, \
     max_concurrency, no_catchup, enabled, created_at, updated_at, trigger_kind, cron, \
     interval_second, start_time, end_time, pipeline_uuid, pipeline_version_uuid, pipeline_spec, \
     runtime_config";

fn recurring_run(row: &AnyRow) -> Result<RecurringRun, Error> {
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
        };
        let (kind, cron, interval, start, end) = match &created.trigger {
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
        };
        let spec: Arg = created.pipeline_spec.as_ref().into();
        let mut sql = Sql::new("INSERT INTO recurring_runs (");
        sql.push(COLUMNS).push(") VALUES (");
        let values: [Arg; 20] = [
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
        ];
        push_values(&mut sql, values);
        let mut tx = self.begin().await?;
        tx.execute(&sql).await?;
        tx.commit().await?;
        Ok(created)
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
        let mut sql = Sql::new("UPDATE recurring_runs SET enabled = ");
        sql.bind(enabled)
            .push(", updated_at = ")
            .bind(now)
            .push(" WHERE uuid = ")
            .bind(id);
        let mut tx = self.begin().await?;
        let changed = tx.execute(&sql).await?;
        if changed == 0 {
            // MySQL counts only changed rows; tell "missing" from "already so".
            let mut check = Sql::new("SELECT uuid FROM recurring_runs WHERE uuid = ");
            check.bind(id);
            if tx.fetch_optional(&check).await?.is_none() {
                return Err(Error::not_found("recurring run", id));
            }
        }
        tx.commit().await
    }

    async fn delete_recurring_run(&self, id: &str) -> Result<(), Error> {
        let mut sql = Sql::new("DELETE FROM recurring_runs WHERE uuid = ");
        sql.bind(id);
        let mut tx = self.begin().await?;
        if tx.execute(&sql).await? == 0 {
            return Err(Error::not_found("recurring run", id));
        }
        tx.commit().await
    }
}
