//! REST routes of PipelineService and the multipart upload endpoints.

use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use kfpd_api::v2beta1 as api;
use serde_json::Value;

use super::empty;
use super::extract::{clears_tags, json_body, Params};
use crate::error::{Error, Result, UploadError};
use crate::service::{Api, Upload, UploadVersion};

type Reply<T> = Result<Json<T>>;

pub fn routes(v2: &str) -> Router<Api> {
    Router::new()
        .route(
            &format!("{v2}/pipelines"),
            post(create_pipeline).get(list_pipelines),
        )
        .route(
            &format!("{v2}/pipelines/create"),
            post(create_pipeline_and_version),
        )
        .route(&format!("{v2}/pipelines/upload"), post(upload_pipeline))
        .route(
            &format!("{v2}/pipelines/upload_version"),
            post(upload_pipeline_version),
        )
        .route(
            &format!("{v2}/pipelines/names/{{name}}"),
            get(get_pipeline_by_name),
        )
        .route(
            &format!("{v2}/pipelines/{{id}}"),
            get(get_pipeline)
                .delete(delete_pipeline)
                .patch(update_pipeline),
        )
        .route(
            &format!("{v2}/pipelines/{{id}}/versions"),
            post(create_pipeline_version).get(list_pipeline_versions),
        )
        .route(
            &format!("{v2}/pipelines/{{id}}/versions/{{version_id}}"),
            get(get_pipeline_version)
                .delete(delete_pipeline_version)
                .patch(update_pipeline_version),
        )
}

async fn create_pipeline(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::Pipeline> {
    let pipeline = json_body(&headers, &body)?;
    let request = api::CreatePipelineRequest {
        pipeline: Some(pipeline),
    };
    Ok(Json(api.create_pipeline(request).await?))
}

async fn create_pipeline_and_version(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::Pipeline> {
    let request: api::CreatePipelineAndVersionRequest = json_body(&headers, &body)?;
    Ok(Json(api.create_pipeline_and_version(request).await?))
}

async fn list_pipelines(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
) -> Reply<api::ListPipelinesResponse> {
    let params = Params::parse(query.as_deref());
    let request = api::ListPipelinesRequest {
        namespace: params.text("namespace"),
        page_token: params.text("page_token"),
        page_size: params.int32("page_size")?,
        sort_by: params.text("sort_by"),
        filter: params.text("filter"),
    };
    Ok(Json(api.list_pipelines(request).await?))
}

async fn get_pipeline(State(api): State<Api>, Path(id): Path<String>) -> Reply<api::Pipeline> {
    let request = api::GetPipelineRequest { pipeline_id: id };
    Ok(Json(api.get_pipeline(request).await?))
}

async fn get_pipeline_by_name(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Reply<api::Pipeline> {
    let params = Params::parse(query.as_deref());
    let request = api::GetPipelineByNameRequest {
        namespace: params.text("namespace"),
        name,
    };
    Ok(Json(api.get_pipeline_by_name(request).await?))
}

async fn delete_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Reply<Value> {
    let params = Params::parse(query.as_deref());
    let request = api::DeletePipelineRequest {
        pipeline_id: id,
        cascade: params.bool("cascade")?,
    };
    api.delete_pipeline(request).await?;
    Ok(empty())
}

async fn update_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::Pipeline> {
    let mut pipeline: api::Pipeline = json_body(&headers, &body)?;
    pipeline.pipeline_id = id;
    let request = api::UpdatePipelineRequest {
        pipeline: Some(pipeline),
    };
    Ok(Json(
        api.update_pipeline(request, clears_tags(&body)).await?,
    ))
}

async fn create_pipeline_version(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::PipelineVersion> {
    let version = json_body(&headers, &body)?;
    let request = api::CreatePipelineVersionRequest {
        pipeline_id: id,
        pipeline_version: Some(version),
    };
    Ok(Json(api.create_pipeline_version(request).await?))
}

async fn list_pipeline_versions(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Reply<api::ListPipelineVersionsResponse> {
    let params = Params::parse(query.as_deref());
    let request = api::ListPipelineVersionsRequest {
        pipeline_id: id,
        page_token: params.text("page_token"),
        page_size: params.int32("page_size")?,
        sort_by: params.text("sort_by"),
        filter: params.text("filter"),
    };
    Ok(Json(api.list_pipeline_versions(request).await?))
}

async fn get_pipeline_version(
    State(api): State<Api>,
    Path((pipeline_id, version_id)): Path<(String, String)>,
) -> Reply<api::PipelineVersion> {
    let request = api::GetPipelineVersionRequest {
        pipeline_id,
        pipeline_version_id: version_id,
    };
    Ok(Json(api.get_pipeline_version(request).await?))
}

async fn delete_pipeline_version(
    State(api): State<Api>,
    Path((pipeline_id, version_id)): Path<(String, String)>,
) -> Reply<Value> {
    let request = api::DeletePipelineVersionRequest {
        pipeline_id,
        pipeline_version_id: version_id,
    };
    api.delete_pipeline_version(request).await?;
    Ok(empty())
}

async fn update_pipeline_version(
    State(api): State<Api>,
    Path((pipeline_id, version_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<api::PipelineVersion> {
    let mut version: api::PipelineVersion = json_body(&headers, &body)?;
    version.pipeline_id = pipeline_id;
    version.pipeline_version_id = version_id;
    let request = api::UpdatePipelineVersionRequest {
        pipeline_version: Some(version),
    };
    Ok(Json(
        api.update_pipeline_version(request, clears_tags(&body))
            .await?,
    ))
}

/// Reads the `uploadfile` part of an upload request.
async fn read_upload(
    params: &Params,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Upload> {
    let mut multipart = multipart.map_err(|rejection| {
        Error::invalid(format!(
            "expected a multipart/form-data body with an uploadfile part: {rejection}"
        ))
    })?;
    let mut file = None;
    loop {
        let field = multipart.next_field().await.map_err(|error| {
            let status = error.status();
            let message = format!("cannot read the uploaded file: {}", error.body_text());
            if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                return Error::new(crate::error::Code::ResourceExhausted, message);
            }
            Error::invalid(message)
        })?;
        let Some(field) = field else { break };
        if field.name() != Some("uploadfile") {
            continue;
        }
        let file_name = field.file_name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|error| {
            let code = if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                crate::error::Code::ResourceExhausted
            } else {
                crate::error::Code::InvalidArgument
            };
            Error::new(
                code,
                format!("cannot read the uploaded file: {}", error.body_text()),
            )
        })?;
        file = Some((file_name, bytes));
    }
    let Some((file_name, bytes)) = file else {
        return Err(Error::invalid("the upload has no uploadfile part"));
    };
    Ok(Upload {
        file_name,
        bytes: bytes.to_vec(),
        name: params.text("name"),
        display_name: params.text("display_name"),
        description: params.text("description"),
        namespace: params.text("namespace"),
        tags: params.text("tags"),
        code_source_url: params.text("code_source_url"),
    })
}

async fn upload_pipeline(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> std::result::Result<Json<api::Pipeline>, UploadError> {
    let params = Params::parse(query.as_deref());
    let upload = read_upload(&params, multipart).await?;
    Ok(Json(api.upload_pipeline(upload).await?))
}

async fn upload_pipeline_version(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> std::result::Result<Json<api::PipelineVersion>, UploadError> {
    let params = Params::parse(query.as_deref());
    let upload = read_upload(&params, multipart).await?;
    let pipeline_id = match params.text("pipelineid") {
        id if id.is_empty() => params.text("pipeline_id"),
        id => id,
    };
    let request = UploadVersion {
        pipeline_id,
        upload,
    };
    Ok(Json(api.upload_pipeline_version(request).await?))
}
