//! REST routes of ExperimentService, RunService and RecurringRunService.

use axum::extract::{Path, State};
use axum::Json;
use kfpd_api::v2beta1 as api;
use kfpd_api::wkt::Empty;

use super::empty;
use super::extract::{id_and_verb, JsonBody, Query};
use super::openapi::Routes;
use crate::error::Result;
use crate::service::Api;

type Reply<T> = Result<Json<T>>;

/// Custom methods on one experiment, run and recurring run.
const EXPERIMENT_VERBS: &[&str] = &["archive", "unarchive"];
const RUN_VERBS: &[&str] = &["archive", "unarchive", "terminate", "retry"];
const RECURRING_RUN_VERBS: &[&str] = &["enable", "disable"];

pub fn routes(routes: Routes, v2: &str) -> Routes {
    let experiment = format!("{v2}/experiments/{{experiment_id}}");
    let run = format!("{v2}/runs/{{run_id}}");
    let recurring_run = format!("{v2}/recurringruns/{{recurring_run_id}}");
    routes
        .post(&format!("{v2}/experiments"), create_experiment)
        .get(&format!("{v2}/experiments"), list_experiments)
        .get(&experiment, get_experiment)
        .delete(&experiment, delete_experiment)
        .post_verbs(&experiment, EXPERIMENT_VERBS, experiment_action)
        .post(&format!("{v2}/runs"), create_run)
        .get(&format!("{v2}/runs"), list_runs)
        .get(&run, get_run)
        .delete(&run, delete_run)
        .post_verbs(&run, RUN_VERBS, run_action)
        .post(&format!("{v2}/recurringruns"), create_recurring_run)
        .get(&format!("{v2}/recurringruns"), list_recurring_runs)
        .get(&recurring_run, get_recurring_run)
        .delete(&recurring_run, delete_recurring_run)
        .patch(&recurring_run, update_recurring_run)
        .post_verbs(&recurring_run, RECURRING_RUN_VERBS, recurring_run_action)
}

async fn create_experiment(
    State(api): State<Api>,
    JsonBody {
        value: experiment, ..
    }: JsonBody<api::Experiment>,
) -> Reply<api::Experiment> {
    let request = api::CreateExperimentRequest {
        experiment: Some(experiment),
    };
    Ok(Json(api.create_experiment(request).await?))
}

async fn get_experiment(State(api): State<Api>, Path(id): Path<String>) -> Reply<api::Experiment> {
    let request = api::GetExperimentRequest { experiment_id: id };
    Ok(Json(api.get_experiment(request).await?))
}

async fn list_experiments(
    State(api): State<Api>,
    Query(request): Query<api::ListExperimentsRequest>,
) -> Reply<api::ListExperimentsResponse> {
    Ok(Json(api.list_experiments(request).await?))
}

async fn delete_experiment(State(api): State<Api>, Path(id): Path<String>) -> Reply<Empty> {
    api.delete_experiment(api::DeleteExperimentRequest { experiment_id: id })
        .await?;
    Ok(empty())
}

/// `POST /experiments/{id}:archive` and `:unarchive`.
async fn experiment_action(State(api): State<Api>, Path(segment): Path<String>) -> Reply<Empty> {
    let (id, verb) = id_and_verb(&segment, EXPERIMENT_VERBS)?;
    let experiment_id = id.to_string();
    match verb {
        "archive" => {
            api.archive_experiment(api::ArchiveExperimentRequest { experiment_id })
                .await?
        }
        _ => {
            api.unarchive_experiment(api::UnarchiveExperimentRequest { experiment_id })
                .await?
        }
    }
    Ok(empty())
}

#[allow(deprecated)] // the request still carries the legacy experiment_id
async fn create_run(
    State(api): State<Api>,
    Query(mut request): Query<api::CreateRunRequest>,
    JsonBody { value: run, .. }: JsonBody<api::Run>,
) -> Reply<api::Run> {
    request.run = Some(run);
    Ok(Json(api.create_run(request).await?))
}

async fn get_run(State(api): State<Api>, Path(id): Path<String>) -> Reply<api::Run> {
    let request = api::GetRunRequest {
        run_id: id,
        ..Default::default()
    };
    Ok(Json(api.get_run(request).await?))
}

async fn list_runs(
    State(api): State<Api>,
    Query(request): Query<api::ListRunsRequest>,
) -> Reply<api::ListRunsResponse> {
    Ok(Json(api.list_runs(request).await?))
}

async fn delete_run(State(api): State<Api>, Path(id): Path<String>) -> Reply<Empty> {
    let request = api::DeleteRunRequest {
        run_id: id,
        ..Default::default()
    };
    api.delete_run(request).await?;
    Ok(empty())
}

/// `POST /runs/{id}:archive`, `:unarchive`, `:terminate` and `:retry`.
async fn run_action(State(api): State<Api>, Path(segment): Path<String>) -> Reply<Empty> {
    let (id, verb) = id_and_verb(&segment, RUN_VERBS)?;
    let run_id = id.to_string();
    match verb {
        "archive" => {
            api.archive_run(api::ArchiveRunRequest {
                run_id,
                ..Default::default()
            })
            .await?
        }
        "unarchive" => {
            api.unarchive_run(api::UnarchiveRunRequest {
                run_id,
                ..Default::default()
            })
            .await?
        }
        "terminate" => {
            api.terminate_run(api::TerminateRunRequest {
                run_id,
                ..Default::default()
            })
            .await?
        }
        _ => {
            api.retry_run(api::RetryRunRequest {
                run_id,
                ..Default::default()
            })
            .await?
        }
    }
    Ok(empty())
}

async fn create_recurring_run(
    State(api): State<Api>,
    JsonBody {
        value: recurring_run,
        ..
    }: JsonBody<api::RecurringRun>,
) -> Reply<api::RecurringRun> {
    let request = api::CreateRecurringRunRequest {
        recurring_run: Some(recurring_run),
    };
    Ok(Json(api.create_recurring_run(request).await?))
}

async fn get_recurring_run(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Reply<api::RecurringRun> {
    let request = api::GetRecurringRunRequest {
        recurring_run_id: id,
    };
    Ok(Json(api.get_recurring_run(request).await?))
}

async fn list_recurring_runs(
    State(api): State<Api>,
    Query(request): Query<api::ListRecurringRunsRequest>,
) -> Reply<api::ListRecurringRunsResponse> {
    Ok(Json(api.list_recurring_runs(request).await?))
}

async fn delete_recurring_run(State(api): State<Api>, Path(id): Path<String>) -> Reply<Empty> {
    let request = api::DeleteRecurringRunRequest {
        recurring_run_id: id,
        ..Default::default()
    };
    api.delete_recurring_run(request).await?;
    Ok(empty())
}

/// `PATCH /recurringruns/{id}` (a kfpd extension): the body is a RecurringRun
/// with the fields to change.
async fn update_recurring_run(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonBody {
        value: recurring_run,
        raw,
    }: JsonBody<api::RecurringRun>,
) -> Reply<api::RecurringRun> {
    let named: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&raw)
        .map_err(|error| crate::error::Error::invalid(format!("invalid JSON body: {error}")))?;
    let fields: Vec<String> = named.keys().cloned().collect();
    Ok(Json(
        api.update_recurring_run(&id, recurring_run, &fields)
            .await?,
    ))
}

/// `POST /recurringruns/{id}:enable` and `:disable`.
async fn recurring_run_action(State(api): State<Api>, Path(segment): Path<String>) -> Reply<Empty> {
    let (id, verb) = id_and_verb(&segment, RECURRING_RUN_VERBS)?;
    let recurring_run_id = id.to_string();
    match verb {
        "enable" => {
            api.enable_recurring_run(api::EnableRecurringRunRequest { recurring_run_id })
                .await?
        }
        _ => {
            api.disable_recurring_run(api::DisableRecurringRunRequest { recurring_run_id })
                .await?
        }
    }
    Ok(empty())
}
