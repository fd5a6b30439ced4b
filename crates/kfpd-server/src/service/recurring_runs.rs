//! RecurringRunService.

use kfpd_api::v2beta1 as api;
use kfpd_api::wkt::Timestamp;
use kfpd_auth::{Resource as Kind, Verb};
use kfpd_store::list::Resource;
use kfpd_store::{NewRecurringRun, Trigger};

use super::list::{query, total};
use super::source::check_parameters;
use super::Api;
use crate::convert;
use crate::error::{Error, Result};

pub(super) const MAX_CONCURRENCY: i64 = 10;

fn seconds(time: &Option<Timestamp>) -> Option<i64> {
    time.as_ref().map(|time| time.seconds)
}

fn check_window(what: &str, start: Option<i64>, end: Option<i64>) -> Result<()> {
    if let (Some(start), Some(end)) = (start, end) {
        if end < start {
            return Err(Error::invalid(format!(
                "{what}: trigger end_time ({end}) is before start_time ({start})"
            )));
        }
    }
    Ok(())
}

/// Validates a trigger as upstream does (cron with a seconds field, interval ≥ 1).
pub(super) fn trigger_from_api(what: &str, given: Option<&api::Trigger>) -> Result<Trigger> {
    let Some(inner) = given.and_then(|trigger| trigger.trigger.as_ref()) else {
        return Ok(Trigger::None);
    };
    match inner {
        api::trigger::Trigger::CronSchedule(cron) => {
            kfpd_scheduler::cron::parse_strict(&cron.cron)
                .map_err(|error| Error::invalid(format!("{what}: {error}")))?;
            let (start_time, end_time) = (seconds(&cron.start_time), seconds(&cron.end_time));
            check_window(what, start_time, end_time)?;
            Ok(Trigger::Cron {
                cron: cron.cron.clone(),
                start_time,
                end_time,
            })
        }
        api::trigger::Trigger::PeriodicSchedule(periodic) => {
            if periodic.interval_second < 1 {
                return Err(Error::invalid(format!(
                    "{what}: interval_second must be at least 1, got {}",
                    periodic.interval_second
                )));
            }
            let (start_time, end_time) =
                (seconds(&periodic.start_time), seconds(&periodic.end_time));
            check_window(what, start_time, end_time)?;
            Ok(Trigger::Periodic {
                interval_second: periodic.interval_second,
                start_time,
                end_time,
            })
        }
    }
}

impl Api {
    // Deprecated request fields are still honoured for older clients.
    #[allow(deprecated)]
    pub async fn create_recurring_run(
        &self,
        request: api::CreateRecurringRunRequest,
    ) -> Result<api::RecurringRun> {
        let what = "create recurring run";
        let Some(recurring) = request.recurring_run else {
            return Err(Error::invalid("recurring_run is required"));
        };
        if recurring.display_name.trim().is_empty() {
            return Err(Error::invalid("recurring run display_name is required"));
        }
        if !(1..=MAX_CONCURRENCY).contains(&recurring.max_concurrency) {
            return Err(Error::invalid(format!(
                "{what}: max_concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                recurring.max_concurrency
            )));
        }
        let trigger = trigger_from_api(what, recurring.trigger.as_ref())?;
        let source = self
            .resolve_requested(what, recurring.pipeline_source.as_ref().into(), false)
            .await?;
        check_parameters(what, &source.package, recurring.runtime_config.as_ref())?;
        let experiment = self.experiment_for(&recurring.experiment_id).await?;
        self.check_pipeline_root(
            what,
            recurring.runtime_config.as_ref(),
            false,
            &experiment.namespace,
        )
        .await?;
        let namespace = if self.settings.multi_user {
            if experiment.namespace.is_empty() {
                return Err(Error::invalid(
                    "Recurring run cannot have an empty namespace in multi-user mode",
                ));
            }
            self.check_namespace(&experiment.namespace, Kind::RecurringRuns, Verb::Create)
                .await?;
            experiment.namespace.clone()
        } else {
            self.settings.pod_namespace.clone()
        };
        let enabled = recurring.mode == api::recurring_run::Mode::Enable as i32;
        let created_at = self.now();
        let next_fire_at = super::schedules::first_due(&trigger, created_at)?;
        let created = self
            .store
            .create_recurring_run(NewRecurringRun {
                display_name: recurring.display_name,
                description: recurring.description,
                namespace,
                experiment_id: experiment.id,
                service_account: recurring.service_account,
                max_concurrency: recurring.max_concurrency,
                no_catchup: recurring.no_catchup,
                enabled,
                created_at,
                trigger,
                pipeline_id: source.pipeline_id,
                pipeline_version_id: source.pipeline_version_id,
                pipeline_spec: source.inline.then_some(source.spec_json),
                runtime_config: convert::runtime_config_json(&recurring.runtime_config)?,
                next_fire_at,
            })
            .await?;
        self.wake_scheduler();
        convert::recurring_run(created)
    }

    pub async fn get_recurring_run(
        &self,
        request: api::GetRecurringRunRequest,
    ) -> Result<api::RecurringRun> {
        convert::recurring_run(
            self.recurring_run_for(&request.recurring_run_id, Verb::Get)
                .await?,
        )
    }

    pub async fn list_recurring_runs(
        &self,
        request: api::ListRecurringRunsRequest,
    ) -> Result<api::ListRecurringRunsResponse> {
        let list = query(
            Resource::RecurringRun,
            request.page_size,
            &request.page_token,
            &request.sort_by,
            &request.filter,
        )?;
        let scope = self
            .scope(
                &request.namespace,
                &request.experiment_id,
                Kind::RecurringRuns,
                "a recurring run cannot have an empty namespace in multi-user mode",
            )
            .await?;
        let page = self.store.list_recurring_runs(&scope, &list).await?;
        Ok(api::ListRecurringRunsResponse {
            recurring_runs: page
                .items
                .into_iter()
                .map(convert::recurring_run)
                .collect::<Result<_>>()?,
            total_size: total(page.total_size),
            next_page_token: page.next_page_token,
        })
    }

    pub async fn enable_recurring_run(
        &self,
        request: api::EnableRecurringRunRequest,
    ) -> Result<()> {
        self.recurring_run_for(&request.recurring_run_id, Verb::Enable)
            .await?;
        self.set_recurring_run_enabled(&request.recurring_run_id, true)
            .await
    }

    pub async fn disable_recurring_run(
        &self,
        request: api::DisableRecurringRunRequest,
    ) -> Result<()> {
        self.recurring_run_for(&request.recurring_run_id, Verb::Disable)
            .await?;
        self.set_recurring_run_enabled(&request.recurring_run_id, false)
            .await
    }

    pub async fn delete_recurring_run(
        &self,
        request: api::DeleteRecurringRunRequest,
    ) -> Result<()> {
        self.recurring_run_for(&request.recurring_run_id, Verb::Delete)
            .await?;
        self.store
            .delete_recurring_run(&request.recurring_run_id)
            .await?;
        Ok(())
    }
}
