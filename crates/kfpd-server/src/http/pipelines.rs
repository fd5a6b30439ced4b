//! REST routes of PipelineService and the multipart upload endpoints.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::Json;
use kfpd_api::v2beta1 as api;
use kfpd_api::wkt::Empty;
use serde_json::{Map, Value};

use super::empty;
use super::extract::{clears_tags, named_fields, JsonBody, Query, QueryField, QueryShape};
use super::openapi::Routes;
use crate::error::{Error, Result, UploadError};
use crate::service::{Api, Upload, UploadVersion};

type Reply<T> = Result<Json<T>>;

pub fn routes(routes: Routes, v2: &str) -> Routes {
    let pipeline = format!("{v2}/pipelines/{{pipeline_id}}");
    let versions = format!("{pipeline}/versions");
    let version = format!("{versions}/{{pipeline_version_id}}");
    routes
        .post(&format!("{v2}/pipelines"), create_pipeline)
        .get(&format!("{v2}/pipelines"), list_pipelines)
        .post(
            &format!("{v2}/pipelines/create"),
            create_pipeline_and_version,
        )
        .post(&format!("{v2}/pipelines/upload"), upload_pipeline)
        .post(
            &format!("{v2}/pipelines/upload_version"),
            upload_pipeline_version,
        )
        .get(
            &format!("{v2}/pipelines/names/{{name}}"),
            get_pipeline_by_name,
        )
        .get(&pipeline, get_pipeline)
        .delete(&pipeline, delete_pipeline)
        .patch(&pipeline, update_pipeline)
        .post(&versions, create_pipeline_version)
        .get(&versions, list_pipeline_versions)
        .get(&version, get_pipeline_version)
        .delete(&version, delete_pipeline_version)
        .patch(&version, update_pipeline_version)
}

async fn create_pipeline(
    State(api): State<Api>,
    JsonBody {
        value: pipeline, ..
    }: JsonBody<api::Pipeline>,
) -> Reply<api::Pipeline> {
    let request = api::CreatePipelineRequest {
        pipeline: Some(pipeline),
    };
    Ok(Json(api.create_pipeline(request).await?))
}

async fn create_pipeline_and_version(
    State(api): State<Api>,
    JsonBody { value: request, .. }: JsonBody<api::CreatePipelineAndVersionRequest>,
) -> Reply<api::Pipeline> {
    Ok(Json(api.create_pipeline_and_version(request).await?))
}

async fn list_pipelines(
    State(api): State<Api>,
    Query(request): Query<api::ListPipelinesRequest>,
) -> Reply<api::ListPipelinesResponse> {
    Ok(Json(api.list_pipelines(request).await?))
}

async fn get_pipeline(State(api): State<Api>, Path(id): Path<String>) -> Reply<api::Pipeline> {
    let request = api::GetPipelineRequest { pipeline_id: id };
    Ok(Json(api.get_pipeline(request).await?))
}

async fn get_pipeline_by_name(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(mut request): Query<api::GetPipelineByNameRequest>,
) -> Reply<api::Pipeline> {
    request.name = name;
    Ok(Json(api.get_pipeline_by_name(request).await?))
}

async fn delete_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(mut request): Query<api::DeletePipelineRequest>,
) -> Reply<Empty> {
    request.pipeline_id = id;
    api.delete_pipeline(request).await?;
    Ok(empty())
}

async fn update_pipeline(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonBody {
        value: mut pipeline,
        raw,
    }: JsonBody<api::Pipeline>,
) -> Reply<api::Pipeline> {
    pipeline.pipeline_id = id;
    let request = api::UpdatePipelineRequest {
        pipeline: Some(pipeline),
    };
    Ok(Json(api.update_pipeline(request, clears_tags(&raw)).await?))
}

async fn create_pipeline_version(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonBody { value: version, .. }: JsonBody<api::PipelineVersion>,
) -> Reply<api::PipelineVersion> {
    let request = api::CreatePipelineVersionRequest {
        pipeline_id: id,
        pipeline_version: Some(version),
    };
    Ok(Json(api.create_pipeline_version(request).await?))
}

async fn list_pipeline_versions(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(mut request): Query<api::ListPipelineVersionsRequest>,
) -> Reply<api::ListPipelineVersionsResponse> {
    request.pipeline_id = id;
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
) -> Reply<Empty> {
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
    JsonBody {
        value: mut version,
        raw,
    }: JsonBody<api::PipelineVersion>,
) -> Reply<api::PipelineVersion> {
    version.pipeline_id = pipeline_id;
    version.pipeline_version_id = version_id;
    let request = api::UpdatePipelineVersionRequest {
        pipeline_version: Some(version),
    };
    Ok(Json(
        api.update_pipeline_version(request, clears_tags(&raw))
            .await?,
    ))
}

/// The query parameters of an upload: the new pipeline's (or version's) fields,
/// and for a version the pipeline it belongs to.
#[derive(Default)]
struct UploadQuery(Map<String, Value>);

const UPLOAD_FIELDS: &[&str] = &[
    "name",
    "display_name",
    "description",
    "namespace",
    "tags",
    "code_source_url",
    "pipelineid",
    "pipeline_id",
];

impl QueryShape for UploadQuery {
    fn fields() -> Vec<QueryField> {
        named_fields(UPLOAD_FIELDS, &[])
    }

    fn decode(object: Map<String, Value>) -> Result<Self> {
        Ok(UploadQuery(object))
    }
}

impl UploadQuery {
    fn text(&self, name: &str) -> String {
        debug_assert!(
            UPLOAD_FIELDS.contains(&name),
            "{name} is not an upload field"
        );
        self.0
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// Reads the `uploadfile` part of an upload request.
async fn read_upload(
    params: &UploadQuery,
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
    Query(params): Query<UploadQuery>,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> std::result::Result<Json<api::Pipeline>, UploadError> {
    let upload = read_upload(&params, multipart).await?;
    Ok(Json(api.upload_pipeline(upload).await?))
}

async fn upload_pipeline_version(
    State(api): State<Api>,
    Query(params): Query<UploadQuery>,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> std::result::Result<Json<api::PipelineVersion>, UploadError> {
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
