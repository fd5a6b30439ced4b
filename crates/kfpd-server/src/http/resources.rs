//! REST routes of ExperimentService, RunService and RecurringRunService.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use kfpd_api::v2beta1 as api;
use serde_json::Value;

use super::empty;
use super::extract::{id_and_verb, json_body, Params};
use crate::error::Result;
use crate::service::Api;

type Reply<T> = Result<Json<T>>;

pub fn routes(v2: &str) -> Router<Api> {
    Router::new()
        .route(
            &format!("{v2}/experiments"),
            post(create_experiment).get(list_experiments),
        )
        .route(
            &format!("{v2}/experiments/{{id}}"),
            get(get_experiment)
                .delete(delete_experiment)
                .post(experiment_action),
        )
        .route(&format!("{v2}/runs"), post(create_run).get(list_runs))
        .route(
            &format!("{v2}/runs/{{id}}"),
            get(get_run).delete(delete_run).post(run_action),
        )
        .route(
            &format!("{v2}/recurringruns"),
            post(create_recurring_run).get(list_recurring_runs),
        )
        .route(
            &format!("{v2}/recurringruns/{{id}}"),
            get(get_recurring_run)
                .delete(delete_recurring_run)
                .patch(update_recurring_run)
                .post(recurring_run_action),
        )
}

async fn create_experiment(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::Experiment> {
    let experiment = json_body(&headers, &body)?;
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
    RawQuery(query): RawQuery,
) -> Reply<api::ListExperimentsResponse> {
    let params = Params::parse(query.as_deref());
    let request = api::ListExperimentsRequest {
        page_token: params.text("page_token"),
        page_size: params.int32("page_size")?,
        sort_by: params.text("sort_by"),
        filter: params.text("filter"),
        namespace: params.text("namespace"),
    };
    Ok(Json(api.list_experiments(request).await?))
}

async fn delete_experiment(State(api): State<Api>, Path(id): Path<String>) -> Reply<Value> {
    api.delete_experiment(api::DeleteExperimentRequest { experiment_id: id })
        .await?;
    Ok(empty())
}

/// `POST /experiments/{id}:archive` and `:unarchive`.
async fn experiment_action(State(api): State<Api>, Path(segment): Path<String>) -> Reply<Value> {
    let (id, verb) = id_and_verb(&segment, &["archive", "unarchive"])?;
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
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::Run> {
    let params = Params::parse(query.as_deref());
    let run = json_body(&headers, &body)?;
    let request = api::CreateRunRequest {
        experiment_id: params.text("experiment_id"),
        run: Some(run),
    };
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
    RawQuery(query): RawQuery,
) -> Reply<api::ListRunsResponse> {
    let params = Params::parse(query.as_deref());
    let request = api::ListRunsRequest {
        namespace: params.text("namespace"),
        experiment_id: params.text("experiment_id"),
        page_token: params.text("page_token"),
        page_size: params.int32("page_size")?,
        sort_by: params.text("sort_by"),
        filter: params.text("filter"),
    };
    Ok(Json(api.list_runs(request).await?))
}

async fn delete_run(State(api): State<Api>, Path(id): Path<String>) -> Reply<Value> {
    let request = api::DeleteRunRequest {
        run_id: id,
        ..Default::default()
    };
    api.delete_run(request).await?;
    Ok(empty())
}

/// `POST /runs/{id}:archive`, `:unarchive`, `:terminate` and `:retry`.
async fn run_action(State(api): State<Api>, Path(segment): Path<String>) -> Reply<Value> {
    let (id, verb) = id_and_verb(&segment, &["archive", "unarchive", "terminate", "retry"])?;
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
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::RecurringRun> {
    let recurring_run = json_body(&headers, &body)?;
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
    RawQuery(query): RawQuery,
) -> Reply<api::ListRecurringRunsResponse> {
    let params = Params::parse(query.as_deref());
    let request = api::ListRecurringRunsRequest {
        page_token: params.text("page_token"),
        page_size: params.int32("page_size")?,
        sort_by: params.text("sort_by"),
        namespace: params.text("namespace"),
        filter: params.text("filter"),
        experiment_id: params.text("experiment_id"),
    };
    Ok(Json(api.list_recurring_runs(request).await?))
}

async fn delete_recurring_run(State(api): State<Api>, Path(id): Path<String>) -> Reply<Value> {
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
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::RecurringRun> {
    let recurring_run: api::RecurringRun = json_body(&headers, &body)?;
    let named: serde_json::Map<String, Value> = json_body(&headers, &body)?;
    let fields: Vec<String> = named.keys().cloned().collect();
    Ok(Json(
        api.update_recurring_run(&id, recurring_run, &fields)
            .await?,
    ))
}

/// `POST /recurringruns/{id}:enable` and `:disable`.
async fn recurring_run_action(State(api): State<Api>, Path(segment): Path<String>) -> Reply<Value> {
    let (id, verb) = id_and_verb(&segment, &["enable", "disable"])?;
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
