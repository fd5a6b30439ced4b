//! Store rows → API messages (and the few API values stored as JSON text).

use kfpd_api::google_rpc::Status;
use kfpd_api::v2beta1 as api;
use kfpd_api::wkt::{Struct, Timestamp};
use kfpd_store as store;

use crate::error::{Error, Result};

pub fn timestamp(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp::from_unix(seconds))
}

/// Parses a stored JSON document into a protobuf `Struct`.
pub fn spec_struct(json: &str) -> Result<Struct> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|error| Error::internal(format!("stored pipeline spec is not JSON: {error}")))?;
    Struct::try_from(value).map_err(|error| {
        Error::internal(format!("stored pipeline spec is not an object: {error:?}"))
    })
}

pub fn runtime_config_json(config: &Option<api::RuntimeConfig>) -> Result<String> {
    let Some(config) = config else {
        return Ok(String::new());
    };
    if config.parameters.is_empty() && config.pipeline_root.is_empty() {
        return Ok(String::new());
    }
    serde_json::to_string(config)
        .map_err(|error| Error::internal(format!("encoding runtime config: {error}")))
}

fn runtime_config(json: &str) -> Result<Option<api::RuntimeConfig>> {
    if json.is_empty() {
        return Ok(None);
    }
    let config = serde_json::from_str(json)
        .map_err(|error| Error::internal(format!("stored runtime config is not valid: {error}")))?;
    Ok(Some(config))
}

pub fn experiment(experiment: store::Experiment) -> api::Experiment {
    let storage_state = match experiment.storage_state {
        store::StorageState::Available => api::experiment::StorageState::Available,
        store::StorageState::Archived => api::experiment::StorageState::Archived,
    };
    api::Experiment {
        experiment_id: experiment.id,
        display_name: experiment.name,
        description: experiment.description,
        created_at: timestamp(experiment.created_at),
        namespace: experiment.namespace,
        storage_state: storage_state as i32,
        last_run_created_at: timestamp(experiment.last_run_created_at),
    }
}

pub fn pipeline(pipeline: store::Pipeline) -> api::Pipeline {
    api::Pipeline {
        pipeline_id: pipeline.id,
        display_name: pipeline.display_name,
        name: pipeline.name,
        description: pipeline.description,
        created_at: timestamp(pipeline.created_at),
        namespace: pipeline.namespace,
        error: None,
        tags: pipeline.tags.into_iter().collect(),
    }
}

pub fn pipeline_version(version: store::PipelineVersion) -> Result<api::PipelineVersion> {
    let package_url = (!version.package_url.is_empty()).then(|| api::Url {
        pipeline_url: version.package_url.clone(),
    });
    Ok(api::PipelineVersion {
        pipeline_id: version.pipeline_id,
        pipeline_version_id: version.id,
        display_name: version.display_name,
        name: version.name,
        description: version.description,
        created_at: timestamp(version.created_at),
        package_url,
        code_source_url: version.code_source_url,
        pipeline_spec: Some(spec_struct(&version.pipeline_spec)?),
        error: None,
        tags: version.tags.into_iter().collect(),
    })
}

pub fn runtime_state(state: store::RunState) -> api::RuntimeState {
    match state {
        store::RunState::Unspecified => api::RuntimeState::Unspecified,
        store::RunState::Pending => api::RuntimeState::Pending,
        store::RunState::Running => api::RuntimeState::Running,
        store::RunState::Succeeded => api::RuntimeState::Succeeded,
        store::RunState::Skipped => api::RuntimeState::Skipped,
        store::RunState::Failed => api::RuntimeState::Failed,
        store::RunState::Canceling => api::RuntimeState::Canceling,
        store::RunState::Canceled => api::RuntimeState::Canceled,
        store::RunState::Paused => api::RuntimeState::Paused,
    }
}

/// Task states in the API's `RuntimeState`; a cached task counts as succeeded
/// (its `cached_from` detail says where the outputs came from).
pub fn runtime_state_of_task(state: store::TaskState) -> api::RuntimeState {
    match state {
        store::TaskState::Pending => api::RuntimeState::Pending,
        store::TaskState::Running => api::RuntimeState::Running,
        store::TaskState::Succeeded | store::TaskState::Cached => api::RuntimeState::Succeeded,
        store::TaskState::Failed => api::RuntimeState::Failed,
        store::TaskState::Skipped => api::RuntimeState::Skipped,
        store::TaskState::Canceled => api::RuntimeState::Canceled,
    }
}

/// A run failure as a `google.rpc.Status` (code 2, UNKNOWN: the failure came from
/// the pipeline, not from the API).
fn failure(message: &str) -> Status {
    Status {
        code: 2,
        message: message.to_string(),
        details: Vec::new(),
    }
}

pub fn run(run: store::Run) -> Result<api::Run> {
    let storage_state = match run.storage_state {
        store::StorageState::Available => api::run::StorageState::Available,
        store::StorageState::Archived => api::run::StorageState::Archived,
    };
    let pipeline_source = match (&run.pipeline_spec, run.pipeline_version_id.is_empty()) {
        (Some(spec), _) => Some(api::run::PipelineSource::PipelineSpec(spec_struct(spec)?)),
        (None, false) => Some(api::run::PipelineSource::PipelineVersionReference(
            api::PipelineVersionReference {
                pipeline_id: run.pipeline_id.clone(),
                pipeline_version_id: run.pipeline_version_id.clone(),
            },
        )),
        (None, true) => None,
    };
    let state_history = run
        .state_history
        .iter()
        .map(|change| api::RuntimeStatus {
            update_time: timestamp(change.time),
            state: runtime_state(change.state) as i32,
            error: change.error.as_deref().map(failure),
        })
        .collect();
    Ok(api::Run {
        experiment_id: run.experiment_id,
        run_id: run.id,
        display_name: run.display_name,
        storage_state: storage_state as i32,
        description: run.description,
        pipeline_source,
        runtime_config: runtime_config(&run.runtime_config)?,
        service_account: run.service_account,
        created_at: timestamp(run.created_at),
        scheduled_at: timestamp(run.scheduled_at),
        finished_at: timestamp(run.finished_at),
        state: runtime_state(run.state) as i32,
        error: run.error.as_deref().map(failure),
        run_details: None,
        recurring_run_id: run.recurring_run_id,
        state_history,
        plugins_input: Default::default(),
        plugins_output: Default::default(),
    })
}

pub fn recurring_run(recurring: store::RecurringRun) -> Result<api::RecurringRun> {
    let trigger = match recurring.trigger {
        store::Trigger::None => api::Trigger { trigger: None },
        store::Trigger::Cron {
            cron,
            start_time,
            end_time,
        } => api::Trigger {
            trigger: Some(api::trigger::Trigger::CronSchedule(api::CronSchedule {
                start_time: start_time.map(Timestamp::from_unix),
                end_time: end_time.map(Timestamp::from_unix),
                cron,
            })),
        },
        store::Trigger::Periodic {
            interval_second,
            start_time,
            end_time,
        } => api::Trigger {
            trigger: Some(api::trigger::Trigger::PeriodicSchedule(
                api::PeriodicSchedule {
                    start_time: start_time.map(Timestamp::from_unix),
                    end_time: end_time.map(Timestamp::from_unix),
                    interval_second,
                },
            )),
        },
    };
    let pipeline_source = match &recurring.pipeline_spec {
        Some(spec) => Some(api::recurring_run::PipelineSource::PipelineSpec(
            spec_struct(spec)?,
        )),
        None if recurring.pipeline_id.is_empty() && recurring.pipeline_version_id.is_empty() => {
            None
        }
        None => Some(
            api::recurring_run::PipelineSource::PipelineVersionReference(
                api::PipelineVersionReference {
                    pipeline_id: recurring.pipeline_id.clone(),
                    pipeline_version_id: recurring.pipeline_version_id.clone(),
                },
            ),
        ),
    };
    let (mode, status) = if recurring.enabled {
        (
            api::recurring_run::Mode::Enable,
            api::recurring_run::Status::Enabled,
        )
    } else {
        (
            api::recurring_run::Mode::Disable,
            api::recurring_run::Status::Disabled,
        )
    };
    Ok(api::RecurringRun {
        recurring_run_id: recurring.id,
        display_name: recurring.display_name,
        description: recurring.description,
        pipeline_source,
        runtime_config: runtime_config(&recurring.runtime_config)?,
        service_account: recurring.service_account,
        max_concurrency: recurring.max_concurrency,
        trigger: Some(trigger),
        mode: mode as i32,
        created_at: timestamp(recurring.created_at),
        updated_at: timestamp(recurring.updated_at),
        status: status as i32,
        error: None,
        no_catchup: recurring.no_catchup,
        namespace: recurring.namespace,
        experiment_id: recurring.experiment_id,
        plugins_input: Default::default(),
    })
}
