//! Recurring runs in motion: firing a due tick (for the scheduler), enabling
//! without backfill, and editing a recurring run in place (a kfpd extension).
//!
//! A fired run is made as upstream's ScheduledWorkflow controller makes it:
//! named `<schedule>-<index>-<hash>`, in the recurring run's experiment, with
//! its runtime config (run macros such as `[[ScheduledTime]]` substituted),
//! `recurring_run_id` set, `scheduled_at` = the tick, and the pinned pipeline
//! version or spec, or the newest version of the pipeline at firing time. It
//! passes the checks of CreateRun, then the store claims the tick and inserts
//! the run in one transaction.

use std::collections::BTreeSet;

use kfpd_api::v2beta1 as api;
use kfpd_scheduler::macros::Macros;
use kfpd_scheduler::naming::{fired_run_name, schedule_name};
use kfpd_scheduler::{Decision, Gate};
use kfpd_store::{
    Fire, FireOutcome, NewRun, RecurringRun, RecurringRunSource, RecurringRunUpdate, ScheduleState,
    Trigger,
};

use super::recurring_runs::{trigger_from_api, MAX_CONCURRENCY};
use super::source::{check_parameters, Source};
use super::Api;
use crate::convert;
use crate::error::{Code, Error, Result};

/// Fired run ids are UUID v5 of `<recurring run id>/<tick>` in this namespace,
/// so a tick can only ever have one run.
const RUN_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("3b26bcda-8c3f-492a-90ed-133c113faf2d");

/// How long a recurring run at its concurrency limit waits before it is
/// looked at again (runs ending elsewhere do not wake the scheduler).
pub const CAPACITY_RETRY_SECONDS: i64 = 2;

/// How long a recurring run whose run cannot be made (its pipeline version
/// was deleted, its experiment is gone) waits before the next try; upstream's
/// controller retries at its 30-second resync.
pub const ERROR_RETRY_SECONDS: i64 = 30;

/// How often an edit is retried when a tick fires at the same moment.
const UPDATE_ATTEMPTS: usize = 5;

/// The id of the run fired for `tick`.
pub fn fired_run_id(recurring_run_id: &str, tick: i64) -> String {
    uuid::Uuid::new_v5(
        &RUN_ID_NAMESPACE,
        format!("{recurring_run_id}/{tick}").as_bytes(),
    )
    .to_string()
}

/// The schedule math's view of a stored trigger. Stored cron expressions were
/// checked strictly when stored; they are read back as robfig reads them.
pub fn schedule_trigger(trigger: &Trigger) -> Result<kfpd_scheduler::Trigger> {
    let converted = match trigger {
        Trigger::None => kfpd_scheduler::Trigger::once(),
        Trigger::Cron {
            cron,
            start_time,
            end_time,
        } => {
            let schedule = kfpd_scheduler::parse(cron)
                .map_err(|error| Error::invalid(format!("stored trigger: {error}")))?;
            kfpd_scheduler::Trigger::cron(schedule, *start_time, *end_time)
        }
        Trigger::Periodic {
            interval_second,
            start_time,
            end_time,
        } => kfpd_scheduler::Trigger::periodic(*interval_second, *start_time, *end_time)
            .map_err(|error| Error::invalid(format!("stored trigger: {error}")))?,
    };
    Ok(converted)
}

/// When a new recurring run is first due: catching up from its start time,
/// as upstream.
pub(super) fn first_due(trigger: &Trigger, created_at: i64) -> Result<Option<i64>> {
    Ok(schedule_trigger(trigger)?.wake_at(created_at, None))
}

/// The schedule after the recurring run was enabled again or its trigger
/// changed: every tick due at `now` is skipped (not backfilled), keeping the
/// trigger's phase. A one-off run that never fired still fires.
fn resumed(row: &RecurringRun, trigger: &Trigger, now: i64) -> Result<ScheduleState> {
    let schedule = schedule_trigger(trigger)?;
    let skipped = match trigger {
        Trigger::None => None,
        Trigger::Cron { .. } | Trigger::Periodic { .. } => {
            schedule.latest_due(row.created_at, row.last_fired_at, now)
        }
    };
    let last_fired_at = skipped.or(row.last_fired_at);
    Ok(ScheduleState {
        last_fired_at,
        next_fire_at: schedule.wake_at(row.created_at, last_fired_at),
    })
}

/// What one look at a due recurring run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Runs created.
    pub runs: usize,
    /// Claims lost to another scheduler or to an edit.
    pub lost: usize,
}

impl Api {
    /// Fires every tick of `row` that is due at `now`, oldest first (all of
    /// them with catch-up, the latest without), then stores when it is due
    /// next. Runs of other schedulers and edits made meanwhile win: the first
    /// lost claim ends the look, and the row is read again on the next pass.
    pub async fn fire_due(&self, mut row: RecurringRun, now: i64) -> Result<Fired> {
        let mut fired = Fired::default();
        let trigger = match schedule_trigger(&row.trigger) {
            Ok(trigger) => trigger,
            Err(error) => {
                tracing::warn!(recurring_run = %row.id, %error, "recurring run cannot fire");
                self.reschedule(&row, None).await?;
                return Ok(fired);
            }
        };
        let mut active_runs = None;
        loop {
            // Counted once per look; the store checks the limit again when it claims.
            let active = match active_runs {
                Some(count) => count,
                None => self.store.active_run_count(&row.id).await?,
            };
            active_runs = Some(active);
            let gate = Gate {
                enabled: row.enabled,
                active_runs: active,
                max_concurrency: row.max_concurrency,
            };
            let decision =
                trigger.decide(row.created_at, row.last_fired_at, now, row.no_catchup, gate);
            let tick = match decision {
                Decision::Fire(tick) => tick,
                Decision::AtCapacity(_) => {
                    self.reschedule(&row, Some(now + CAPACITY_RETRY_SECONDS))
                        .await?;
                    return Ok(fired);
                }
                Decision::Later(tick) => {
                    if row.next_fire_at != Some(tick) {
                        self.reschedule(&row, Some(tick)).await?;
                    }
                    return Ok(fired);
                }
                Decision::Finished | Decision::Disabled(_) => {
                    self.reschedule(&row, None).await?;
                    return Ok(fired);
                }
            };
            let run_id = fired_run_id(&row.id, tick);
            let run = match self.fired_run(&row, tick, now, &run_id).await {
                Ok(run) => run,
                Err(error) => {
                    tracing::warn!(
                        recurring_run = %row.id,
                        tick,
                        %error,
                        retry_in_s = ERROR_RETRY_SECONDS,
                        "cannot make the run of a due tick"
                    );
                    self.reschedule(&row, Some(now + ERROR_RETRY_SECONDS))
                        .await?;
                    return Ok(fired);
                }
            };
            let next_fire_at = trigger.wake_at(row.created_at, Some(tick));
            let fire = Fire {
                recurring_run_id: row.id.clone(),
                guard: row.guard(),
                tick,
                next_fire_at,
                max_concurrency: kfpd_scheduler::effective_max_concurrency(row.max_concurrency),
                run_id,
                run,
            };
            match self.store.fire_recurring_run(fire).await? {
                FireOutcome::Fired(run) => {
                    tracing::info!(
                        recurring_run = %row.id,
                        run = %run.id,
                        name = %run.display_name,
                        tick,
                        lag_ms = lag_ms(tick),
                        "recurring run fired"
                    );
                    self.metrics
                        .observe_scheduler_lag(std::time::Duration::from_millis(
                            lag_ms(tick).max(0) as u64,
                        ));
                    fired.runs += 1;
                    row.fired_count += 1;
                    active_runs = Some(active + 1);
                    self.submit_workflow(*run).await?;
                    self.wake_executor();
                }
                FireOutcome::AlreadyFired => {}
                FireOutcome::Lost => {
                    fired.lost += 1;
                    return Ok(fired);
                }
                FireOutcome::AtCapacity { .. } => {
                    // Runs were made meanwhile (by another scheduler); look again soon.
                    self.reschedule(&row, Some(now + CAPACITY_RETRY_SECONDS))
                        .await?;
                    return Ok(fired);
                }
            }
            row.last_fired_at = Some(tick);
            row.next_fire_at = next_fire_at;
        }
    }

    /// Moves the row's next due time; losing to a concurrent change is fine
    /// (whoever changed it stored a fresh due time).
    async fn reschedule(&self, row: &RecurringRun, next_fire_at: Option<i64>) -> Result<()> {
        self.store
            .reschedule_recurring_run(&row.id, row.guard(), next_fire_at)
            .await?;
        Ok(())
    }

    /// The run `row` fires for `tick`, checked as CreateRun checks runs.
    async fn fired_run(
        &self,
        row: &RecurringRun,
        tick: i64,
        now: i64,
        run_id: &str,
    ) -> Result<NewRun> {
        let what = "fire recurring run";
        let source = self.stored_source(row).await?;
        let index = row.fired_count + 1;
        let macros = Macros {
            run_id: run_id.to_string(),
            scheduled_at: tick,
            now,
            index,
        };
        let config = runtime_config_with_macros(&row.runtime_config, &macros)?;
        check_parameters(what, &source.package, config.as_ref())?;
        self.check_pipeline_root(what, config.as_ref(), true, &row.namespace)
            .await?;
        let experiment = self.experiment_for(&row.experiment_id).await?;
        let service_account = if row.service_account.is_empty() {
            self.settings.default_service_account.clone()
        } else {
            row.service_account.clone()
        };
        Ok(NewRun {
            experiment_id: experiment.id,
            namespace: experiment.namespace,
            display_name: fired_run_name(&schedule_name(&row.display_name, &row.id), index),
            description: String::new(),
            service_account,
            created_at: now,
            scheduled_at: tick,
            pipeline_id: source.pipeline_id,
            pipeline_version_id: source.pipeline_version_id,
            recurring_run_id: row.id.clone(),
            runtime_config: convert::runtime_config_json(&config)?,
            pipeline_spec: source.spec_json,
            inline_spec: source.inline,
        })
    }

    /// What the recurring run executes now: its spec, its pinned version, or
    /// the newest version of its pipeline.
    async fn stored_source(&self, row: &RecurringRun) -> Result<Source> {
        if let Some(spec_json) = &row.pipeline_spec {
            let value: serde_json::Value = serde_json::from_str(spec_json).map_err(|error| {
                Error::internal(format!("stored pipeline spec is not JSON: {error}"))
            })?;
            return Ok(Source {
                pipeline_id: String::new(),
                pipeline_version_id: String::new(),
                spec_json: spec_json.clone(),
                inline: true,
                package: kfpd_ir::parse_spec_value(&value)?,
            });
        }
        let reference = api::PipelineVersionReference {
            pipeline_id: row.pipeline_id.clone(),
            pipeline_version_id: row.pipeline_version_id.clone(),
        };
        self.resolve_source("fire recurring run", Some(&reference), None, true)
            .await
    }

    /// EnableRecurringRun: a recurring run enabled again does not backfill the
    /// ticks it missed while disabled; it fires from its next tick on.
    pub(super) async fn set_recurring_run_enabled(&self, id: &str, enabled: bool) -> Result<()> {
        for _ in 0..UPDATE_ATTEMPTS {
            let row = self.store.get_recurring_run(id).await?;
            let now = self.now();
            let schedule = if enabled && !row.enabled {
                Some(resumed(&row, &row.trigger, now)?)
            } else {
                None
            };
            let update = RecurringRunUpdate {
                enabled: Some(enabled),
                schedule,
                updated_at: now,
                ..Default::default()
            };
            match self
                .store
                .update_recurring_run(id, row.guard(), update)
                .await
            {
                Ok(_) => {
                    self.wake_scheduler();
                    return Ok(());
                }
                Err(kfpd_store::Error::Aborted(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(busy(id))
    }

    /// UpdateRecurringRun (`PATCH /apis/v2beta1/recurringruns/{id}`, a kfpd
    /// extension): changes the fields named in the request body, checked as
    /// CreateRecurringRun checks them. A changed trigger takes effect from now:
    /// ticks it would have had in the past are not backfilled.
    pub async fn update_recurring_run(
        &self,
        id: &str,
        given: api::RecurringRun,
        fields: &[String],
    ) -> Result<api::RecurringRun> {
        let what = "update recurring run";
        let fields = PatchFields::new(fields)?;
        if fields.has("recurring_run_id")
            && !given.recurring_run_id.is_empty()
            && given.recurring_run_id != id
        {
            return Err(Error::invalid(format!(
                "{what}: recurring_run_id {:?} in the body does not match {id:?} in the path",
                given.recurring_run_id
            )));
        }
        self.recurring_run_for(id, kfpd_auth::Verb::Update).await?;
        self.write_recurring_run_update(id, &given, &fields).await
    }

    /// The checked update of a recurring run whose access was checked, retried
    /// while the scheduler changes the row meanwhile.
    pub(super) async fn write_recurring_run_update(
        &self,
        id: &str,
        given: &api::RecurringRun,
        fields: &PatchFields,
    ) -> Result<api::RecurringRun> {
        for _ in 0..UPDATE_ATTEMPTS {
            let row = self.store.get_recurring_run(id).await?;
            let update = self.checked_update(&row, given, fields).await?;
            match self
                .store
                .update_recurring_run(id, row.guard(), update)
                .await
            {
                Ok(updated) => {
                    self.wake_scheduler();
                    return convert::recurring_run(updated);
                }
                Err(kfpd_store::Error::Aborted(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(busy(id))
    }

    // Deprecated request fields are still honoured for older clients.
    #[allow(deprecated)]
    async fn checked_update(
        &self,
        row: &RecurringRun,
        given: &api::RecurringRun,
        fields: &PatchFields,
    ) -> Result<RecurringRunUpdate> {
        let what = "update recurring run";
        let now = self.now();
        let mut update = RecurringRunUpdate {
            updated_at: now,
            ..Default::default()
        };
        if fields.has("experiment_id")
            && !given.experiment_id.is_empty()
            && given.experiment_id != row.experiment_id
        {
            return Err(Error::invalid(format!(
                "{what}: experiment_id cannot be changed; create a new recurring run in the other experiment"
            )));
        }
        if fields.is_empty() {
            return Err(Error::invalid(format!(
                "{what}: the body names no field to change (editable: {})",
                EDITABLE.join(", ")
            )));
        }
        if fields.has("display_name") {
            if given.display_name.trim().is_empty() {
                return Err(Error::invalid("recurring run display_name is required"));
            }
            update.display_name = Some(given.display_name.clone());
        }
        if fields.has("description") {
            update.description = Some(given.description.clone());
        }
        if fields.has("service_account") {
            update.service_account = Some(given.service_account.clone());
        }
        if fields.has("max_concurrency") {
            if !(1..=MAX_CONCURRENCY).contains(&given.max_concurrency) {
                return Err(Error::invalid(format!(
                    "{what}: max_concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                    given.max_concurrency
                )));
            }
            update.max_concurrency = Some(given.max_concurrency);
        }
        if fields.has("no_catchup") {
            update.no_catchup = Some(given.no_catchup);
        }
        if fields.has("mode") {
            update.enabled = Some(given.mode == api::recurring_run::Mode::Enable as i32);
        }
        if fields.has("trigger") {
            update.trigger = Some(trigger_from_api(what, given.trigger.as_ref())?);
        }
        if fields.has_source() {
            let source = self
                .resolve_requested(what, given.pipeline_source.as_ref().into(), false)
                .await?;
            update.source = Some(RecurringRunSource {
                pipeline_id: source.pipeline_id,
                pipeline_version_id: source.pipeline_version_id,
                pipeline_spec: source.inline.then_some(source.spec_json),
            });
        }
        if fields.has("runtime_config") {
            update.runtime_config = Some(convert::runtime_config_json(&given.runtime_config)?);
        }
        if update.source.is_some() || update.runtime_config.is_some() {
            self.check_updated_parameters(row, &update).await?;
        }
        let trigger = update.trigger.as_ref().unwrap_or(&row.trigger);
        let trigger_changed = *trigger != row.trigger;
        let enabled_again = update.enabled == Some(true) && !row.enabled;
        update.schedule = if trigger_changed || enabled_again {
            Some(resumed(row, trigger, now)?)
        } else {
            // Due again at its own next tick: an edit that fixes what kept a tick
            // from firing (a deleted pipeline version) takes effect at once.
            Some(ScheduleState {
                last_fired_at: row.last_fired_at,
                next_fire_at: schedule_trigger(trigger)?.wake_at(row.created_at, row.last_fired_at),
            })
        };
        Ok(update)
    }

    /// The runtime config after an update must suit the pipeline after it.
    async fn check_updated_parameters(
        &self,
        row: &RecurringRun,
        update: &RecurringRunUpdate,
    ) -> Result<()> {
        let mut merged = row.clone();
        if let Some(source) = &update.source {
            merged.pipeline_id = source.pipeline_id.clone();
            merged.pipeline_version_id = source.pipeline_version_id.clone();
            merged.pipeline_spec = source.pipeline_spec.clone();
        }
        if let Some(config) = &update.runtime_config {
            merged.runtime_config = config.clone();
        }
        let source = self.stored_source(&merged).await?;
        let config = parse_runtime_config(&merged.runtime_config)?;
        check_parameters("update recurring run", &source.package, config.as_ref())?;
        self.check_pipeline_root(
            "update recurring run",
            config.as_ref(),
            false,
            &merged.namespace,
        )
        .await
    }
}

fn busy(id: &str) -> Error {
    Error::new(
        Code::Aborted,
        format!("recurring run {id} kept changing while it was being updated; try again"),
    )
}

/// Milliseconds from a tick to now, for the log line of a fired run.
fn lag_ms(tick: i64) -> i64 {
    chrono::Utc::now().timestamp_millis() - tick.saturating_mul(1000)
}

/// Fields a PATCH may name (snake_case; lowerCamel works too).
const EDITABLE: &[&str] = &[
    "display_name",
    "description",
    "service_account",
    "max_concurrency",
    "no_catchup",
    "mode",
    "trigger",
    "pipeline_version_reference",
    "pipeline_spec",
    "runtime_config",
];

/// Output-only fields: accepted (so a fetched recurring run can be sent back
/// with changes) but ignored.
const OUTPUT_ONLY: &[&str] = &[
    "recurring_run_id",
    "experiment_id",
    "namespace",
    "created_at",
    "updated_at",
    "status",
    "error",
];

/// The fields a PATCH body names.
pub(super) struct PatchFields(BTreeSet<String>);

impl PatchFields {
    pub(super) fn new(given: &[String]) -> Result<PatchFields> {
        let mut fields = BTreeSet::new();
        for name in given {
            let name = snake_case(name);
            let name = if name == "pipeline_version_id" {
                "pipeline_version_reference".to_string()
            } else {
                name
            };
            if EDITABLE.contains(&name.as_str()) || OUTPUT_ONLY.contains(&name.as_str()) {
                fields.insert(name);
                continue;
            }
            return Err(Error::invalid(format!(
                "update recurring run: field {name:?} cannot be changed (editable: {})",
                EDITABLE.join(", ")
            )));
        }
        Ok(PatchFields(fields))
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    fn has_source(&self) -> bool {
        self.has("pipeline_version_reference") || self.has("pipeline_spec")
    }

    /// No editable field named (output-only ones do not count).
    fn is_empty(&self) -> bool {
        !self.0.iter().any(|name| EDITABLE.contains(&name.as_str()))
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for ch in name.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

fn parse_runtime_config(json: &str) -> Result<Option<api::RuntimeConfig>> {
    if json.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(json)
        .map(Some)
        .map_err(|error| Error::internal(format!("stored runtime config is not valid: {error}")))
}

/// The stored runtime config with run macros in its parameter values replaced.
fn runtime_config_with_macros(json: &str, macros: &Macros) -> Result<Option<api::RuntimeConfig>> {
    if json.is_empty() {
        return Ok(None);
    }
    let mut value: serde_json::Value = serde_json::from_str(json)
        .map_err(|error| Error::internal(format!("stored runtime config is not valid: {error}")))?;
    if let Some(parameters) = value.get_mut("parameters") {
        substitute_strings(parameters, macros);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|error| Error::internal(format!("stored runtime config is not valid: {error}")))
}

fn substitute_strings(value: &mut serde_json::Value, macros: &Macros) {
    match value {
        serde_json::Value::String(text) => *text = macros.substitute(text),
        serde_json::Value::Array(items) => items
            .iter_mut()
            .for_each(|item| substitute_strings(item, macros)),
        serde_json::Value::Object(map) => map
            .values_mut()
            .for_each(|item| substitute_strings(item, macros)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fired_run_ids_are_stable_and_distinct() {
        let first = fired_run_id("rr", 60);
        assert_eq!(first, fired_run_id("rr", 60));
        assert_ne!(first, fired_run_id("rr", 120));
        assert_ne!(first, fired_run_id("other", 60));
        assert_eq!(uuid::Uuid::parse_str(&first).unwrap().get_version_num(), 5);
    }

    #[test]
    fn patch_fields_take_both_spellings() {
        let fields = PatchFields::new(&["maxConcurrency".into(), "no_catchup".into()]).unwrap();
        assert!(fields.has("max_concurrency") && fields.has("no_catchup"));
        let only_output = PatchFields::new(&["createdAt".into(), "status".into()]).unwrap();
        assert!(only_output.is_empty());
        assert!(PatchFields::new(&["pluginsInput".into()]).is_err());
    }

    #[test]
    fn macros_apply_to_parameter_strings_only() {
        let macros = Macros {
            run_id: "id".into(),
            scheduled_at: 25,
            now: 26,
            index: 3,
        };
        let json = r#"{"parameters":{"day":"[[ScheduledTime.2006-01-02]]","n":[ "[[Index]]", 4 ]},"pipelineRoot":"s3://b/[[Index]]"}"#;
        let config = runtime_config_with_macros(json, &macros).unwrap().unwrap();
        let parameters: serde_json::Value =
            serde_json::to_value(&config).unwrap()["parameters"].clone();
        assert_eq!(
            parameters,
            serde_json::json!({"day": "1970-01-01", "n": ["3", 4]})
        );
        assert_eq!(config.pipeline_root, "s3://b/[[Index]]");
    }
}
