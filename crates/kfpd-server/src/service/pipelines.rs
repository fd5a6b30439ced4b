//! PipelineService and the multipart upload endpoints.

use std::collections::BTreeMap;

use kfpd_api::v2beta1 as api;
use kfpd_auth::Verb;
use kfpd_ir::Package;
use kfpd_store::list::Resource;
use kfpd_store::{NewPipeline, NewPipelineVersion, PipelineUpdate, Tags};

use super::list::{query, total};
use super::{check_length, Api};
use crate::convert;
use crate::error::{Error, Result};

/// A package file posted to `/pipelines/upload`.
#[derive(Debug, Default)]
pub struct Upload {
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub namespace: String,
    /// The `tags` query parameter: a JSON object of strings.
    pub tags: String,
    pub code_source_url: String,
}

/// A package file posted to `/pipelines/upload_version`.
#[derive(Debug, Default)]
pub struct UploadVersion {
    pub pipeline_id: String,
    pub upload: Upload,
}

/// A package downloaded from a URL.
pub struct PackageSource {
    pub url: String,
    pub file_name: String,
    pub package: Package,
}

const MAX_TAGS: usize = 20;
const MAX_TAG_LENGTH: usize = 63;

fn check_tags(tags: &BTreeMap<String, String>) -> Result<Tags> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(format!(
            "too many tags: {} given, at most {MAX_TAGS} allowed",
            tags.len()
        )));
    }
    for (key, value) in tags {
        if key.is_empty() {
            return Err(Error::invalid("tag key must not be empty"));
        }
        if key.contains('.') {
            return Err(Error::invalid(format!(
                "tag key {key:?} must not contain '.'"
            )));
        }
        if key.chars().count() > MAX_TAG_LENGTH {
            return Err(Error::invalid(format!(
                "tag key {key:?} is longer than {MAX_TAG_LENGTH} characters"
            )));
        }
        if value.chars().count() > MAX_TAG_LENGTH {
            return Err(Error::invalid(format!(
                "value of tag {key:?} is longer than {MAX_TAG_LENGTH} characters"
            )));
        }
    }
    Ok(tags.clone())
}

fn parse_tags_param(text: &str) -> Result<Tags> {
    if text.trim().is_empty() {
        return Ok(Tags::new());
    }
    let tags: BTreeMap<String, String> = serde_json::from_str(text).map_err(|error| {
        Error::invalid(format!(
            "invalid tags {text:?}: expected a JSON object of strings ({error})"
        ))
    })?;
    check_tags(&tags)
}

fn first_non_empty<'a>(candidates: &[&'a str]) -> &'a str {
    candidates
        .iter()
        .copied()
        .find(|text| !text.trim().is_empty())
        .unwrap_or_default()
}

fn spec_json(package: &Package) -> Result<String> {
    serde_json::to_string(&package.api_pipeline_spec())
        .map_err(|error| Error::internal(format!("encoding pipeline spec: {error}")))
}

fn check_pipeline_fields(name: &str, namespace: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("pipeline name is required"));
    }
    check_length("Pipeline.Name", name, 128)?;
    check_length("Pipeline.Namespace", namespace, 63)
}

fn check_version_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("pipeline version name is required"));
    }
    check_length("PipelineVersion.Name", name, 127)
}

impl Api {
    pub async fn create_pipeline(
        &self,
        request: api::CreatePipelineRequest,
    ) -> Result<api::Pipeline> {
        let Some(pipeline) = request.pipeline else {
            return Err(Error::invalid("pipeline is required"));
        };
        let name = first_non_empty(&[&pipeline.name, &pipeline.display_name]).to_string();
        let display_name = first_non_empty(&[&pipeline.display_name, &name]).to_string();
        check_pipeline_fields(&name, &pipeline.namespace)?;
        let namespace = self.namespace_for_pipeline(&pipeline.namespace)?;
        self.check_pipeline_namespace(&namespace, Verb::Create)
            .await?;
        let tags = check_tags(&pipeline.tags.into_iter().collect())?;
        let (created, _) = self
            .store
            .create_pipeline(
                NewPipeline {
                    name,
                    display_name,
                    description: pipeline.description,
                    namespace,
                    created_at: self.now(),
                    tags,
                },
                None,
            )
            .await?;
        Ok(convert::pipeline(created))
    }

    /// Pipelines may live in the shared namespace "" also in multi-user mode.
    fn namespace_for_pipeline(&self, given: &str) -> Result<String> {
        if !self.settings.multi_user {
            return Ok(String::new());
        }
        if !given.is_empty() {
            super::access::check_namespace_name(given)?;
        }
        Ok(given.to_string())
    }

    pub async fn create_pipeline_and_version(
        &self,
        request: api::CreatePipelineAndVersionRequest,
    ) -> Result<api::Pipeline> {
        let Some(pipeline) = request.pipeline else {
            return Err(Error::invalid("pipeline is required"));
        };
        let version = request.pipeline_version.unwrap_or_default();
        let url = version
            .package_url
            .as_ref()
            .map(|url| url.pipeline_url.clone())
            .unwrap_or_default();
        let requested_namespace = self.namespace_for_pipeline(&pipeline.namespace)?;
        self.check_pipeline_namespace(&requested_namespace, Verb::Create)
            .await?;
        let source = self.download(&url).await?;
        let url_base = source.file_name.clone();
        let name =
            first_non_empty(&[&pipeline.name, &pipeline.display_name, &url_base]).to_string();
        let display_name = first_non_empty(&[&pipeline.display_name, &name]).to_string();
        check_pipeline_fields(&name, &pipeline.namespace)?;
        let namespace = self.namespace_for_pipeline(&pipeline.namespace)?;
        let tags = check_tags(&pipeline.tags.into_iter().collect())?;
        let version_tags = check_tags(&version.tags.into_iter().collect())?;
        let now = self.now();
        let first = NewPipelineVersion {
            pipeline_id: String::new(),
            name: name.clone(),
            display_name: display_name.clone(),
            description: pipeline.description.clone(),
            created_at: now,
            code_source_url: version.code_source_url,
            package_url: source.url,
            pipeline_spec: spec_json(&source.package)?,
            tags: version_tags,
        };
        let (created, _) = self
            .store
            .create_pipeline(
                NewPipeline {
                    name,
                    display_name,
                    description: pipeline.description,
                    namespace,
                    created_at: now,
                    tags,
                },
                Some(first),
            )
            .await?;
        Ok(convert::pipeline(created))
    }

    pub async fn get_pipeline(&self, request: api::GetPipelineRequest) -> Result<api::Pipeline> {
        Ok(convert::pipeline(
            self.pipeline_for(&request.pipeline_id, Verb::Get).await?,
        ))
    }

    pub async fn get_pipeline_by_name(
        &self,
        request: api::GetPipelineByNameRequest,
    ) -> Result<api::Pipeline> {
        let namespace = self.namespace_for_pipeline(&request.namespace)?;
        let found = self
            .store
            .get_pipeline_by_name(&namespace, &request.name)
            .await?;
        let name = &request.name;
        self.check_pipeline(&namespace, Verb::Get, name, || {
            // Word for word the store's answer for a missing name.
            Error::from(kfpd_store::Error::NotFound(format!(
                "pipeline named {name:?} not found in namespace {namespace:?}"
            )))
        })
        .await?;
        Ok(convert::pipeline(found))
    }

    pub async fn list_pipelines(
        &self,
        request: api::ListPipelinesRequest,
    ) -> Result<api::ListPipelinesResponse> {
        let list = query(
            Resource::Pipeline,
            request.page_size,
            &request.page_token,
            &request.sort_by,
            &request.filter,
        )?;
        let namespace = self.namespace_for_pipeline(&request.namespace)?;
        self.check_pipeline_namespace(&namespace, Verb::List)
            .await?;
        let page = self.store.list_pipelines(Some(&namespace), &list).await?;
        Ok(api::ListPipelinesResponse {
            pipelines: page.items.into_iter().map(convert::pipeline).collect(),
            total_size: total(page.total_size),
            next_page_token: page.next_page_token,
        })
    }

    pub async fn delete_pipeline(&self, request: api::DeletePipelineRequest) -> Result<()> {
        self.pipeline_for(&request.pipeline_id, Verb::Delete)
            .await?;
        self.store
            .delete_pipeline(&request.pipeline_id, request.cascade)
            .await?;
        Ok(())
    }

    /// `clear_tags`: the body said `"tags": {}` (protobuf cannot tell that from absent).
    pub async fn update_pipeline(
        &self,
        request: api::UpdatePipelineRequest,
        clear_tags: bool,
    ) -> Result<api::Pipeline> {
        let Some(pipeline) = request.pipeline else {
            return Err(Error::invalid("pipeline is required"));
        };
        let update = update_of(
            &pipeline.display_name,
            pipeline.tags.into_iter().collect(),
            clear_tags,
        )?;
        self.pipeline_for(&pipeline.pipeline_id, Verb::Update)
            .await?;
        let updated = self
            .store
            .update_pipeline(&pipeline.pipeline_id, update)
            .await?;
        Ok(convert::pipeline(updated))
    }

    pub async fn create_pipeline_version(
        &self,
        request: api::CreatePipelineVersionRequest,
    ) -> Result<api::PipelineVersion> {
        let Some(version) = request.pipeline_version else {
            return Err(Error::invalid("pipeline_version is required"));
        };
        let pipeline_id =
            first_non_empty(&[&request.pipeline_id, &version.pipeline_id]).to_string();
        if pipeline_id.is_empty() {
            return Err(Error::invalid("pipeline_id is required"));
        }
        let name = first_non_empty(&[&version.name, &version.display_name]).to_string();
        let display_name = first_non_empty(&[&version.display_name, &name]).to_string();
        check_version_name(&name)?;
        let tags = check_tags(&version.tags.into_iter().collect())?;
        let url = version
            .package_url
            .as_ref()
            .map(|url| url.pipeline_url.clone())
            .unwrap_or_default();
        // Fail on a missing pipeline before downloading anything.
        self.pipeline_for(&pipeline_id, Verb::Create).await?;
        let source = self.download(&url).await?;
        let created = self
            .store
            .create_pipeline_version(NewPipelineVersion {
                pipeline_id,
                name,
                display_name,
                description: version.description,
                created_at: self.now(),
                code_source_url: version.code_source_url,
                package_url: source.url,
                pipeline_spec: spec_json(&source.package)?,
                tags,
            })
            .await?;
        convert::pipeline_version(created)
    }

    pub async fn get_pipeline_version(
        &self,
        request: api::GetPipelineVersionRequest,
    ) -> Result<api::PipelineVersion> {
        let found = self
            .version_for(&request.pipeline_version_id, Verb::Get)
            .await?;
        convert::pipeline_version(found)
    }

    pub async fn list_pipeline_versions(
        &self,
        request: api::ListPipelineVersionsRequest,
    ) -> Result<api::ListPipelineVersionsResponse> {
        let list = query(
            Resource::PipelineVersion,
            request.page_size,
            &request.page_token,
            &request.sort_by,
            &request.filter,
        )?;
        // A missing pipeline is a 404, not an empty list.
        self.pipeline_for(&request.pipeline_id, Verb::List).await?;
        let page = self
            .store
            .list_pipeline_versions(&request.pipeline_id, &list)
            .await?;
        Ok(api::ListPipelineVersionsResponse {
            pipeline_versions: page
                .items
                .into_iter()
                .map(convert::pipeline_version)
                .collect::<Result<_>>()?,
            next_page_token: page.next_page_token,
            total_size: total(page.total_size),
        })
    }

    pub async fn delete_pipeline_version(
        &self,
        request: api::DeletePipelineVersionRequest,
    ) -> Result<()> {
        self.version_for(&request.pipeline_version_id, Verb::Delete)
            .await?;
        self.store
            .delete_pipeline_version(&request.pipeline_version_id)
            .await?;
        Ok(())
    }

    pub async fn update_pipeline_version(
        &self,
        request: api::UpdatePipelineVersionRequest,
        clear_tags: bool,
    ) -> Result<api::PipelineVersion> {
        let Some(version) = request.pipeline_version else {
            return Err(Error::invalid("pipeline_version is required"));
        };
        let update = update_of(
            &version.display_name,
            version.tags.into_iter().collect(),
            clear_tags,
        )?;
        self.version_for(&version.pipeline_version_id, Verb::Update)
            .await?;
        let updated = self
            .store
            .update_pipeline_version(&version.pipeline_version_id, update)
            .await?;
        convert::pipeline_version(updated)
    }

    /// `POST /pipelines/upload`: a pipeline and its first version from a file.
    pub async fn upload_pipeline(&self, upload: Upload) -> Result<api::Pipeline> {
        let package = kfpd_ir::read_package(&upload.file_name, &upload.bytes)?;
        let name =
            first_non_empty(&[&upload.name, &upload.display_name, &upload.file_name]).to_string();
        let display_name = first_non_empty(&[&upload.display_name, &name]).to_string();
        check_pipeline_fields(&name, &upload.namespace)?;
        let namespace = self.namespace_for_pipeline(&upload.namespace)?;
        self.check_pipeline_namespace(&namespace, Verb::Create)
            .await?;
        let tags = parse_tags_param(&upload.tags)?;
        let now = self.now();
        let first = NewPipelineVersion {
            pipeline_id: String::new(),
            name: name.clone(),
            display_name: display_name.clone(),
            description: upload.description.clone(),
            created_at: now,
            code_source_url: upload.code_source_url,
            package_url: String::new(),
            pipeline_spec: spec_json(&package)?,
            tags: Tags::new(),
        };
        let (created, _) = self
            .store
            .create_pipeline(
                NewPipeline {
                    name,
                    display_name,
                    description: upload.description,
                    namespace,
                    created_at: now,
                    tags,
                },
                Some(first),
            )
            .await?;
        Ok(convert::pipeline(created))
    }

    /// `POST /pipelines/upload_version`: a new version of an existing pipeline.
    pub async fn upload_pipeline_version(
        &self,
        request: UploadVersion,
    ) -> Result<api::PipelineVersion> {
        let upload = request.upload;
        if request.pipeline_id.is_empty() {
            return Err(Error::invalid("pipelineid is required"));
        }
        let package = kfpd_ir::read_package(&upload.file_name, &upload.bytes)?;
        let name =
            first_non_empty(&[&upload.name, &upload.display_name, &upload.file_name]).to_string();
        let display_name = first_non_empty(&[&upload.display_name, &name]).to_string();
        check_version_name(&name)?;
        let tags = parse_tags_param(&upload.tags)?;
        self.pipeline_for(&request.pipeline_id, Verb::Create)
            .await?;
        let created = self
            .store
            .create_pipeline_version(NewPipelineVersion {
                pipeline_id: request.pipeline_id,
                name,
                display_name,
                description: upload.description,
                created_at: self.now(),
                code_source_url: upload.code_source_url,
                package_url: String::new(),
                pipeline_spec: spec_json(&package)?,
                tags,
            })
            .await?;
        convert::pipeline_version(created)
    }

    /// Fetches a package from `package_url` (http or https), at most 32 MiB.
    async fn download(&self, url: &str) -> Result<PackageSource> {
        if url.trim().is_empty() {
            return Err(Error::invalid("package_url.pipeline_url is required"));
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|error| Error::invalid(format!("invalid pipeline_url {url:?}: {error}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid(format!(
                "invalid pipeline_url {url:?}: only http and https URLs can be downloaded"
            )));
        }
        let file_name = parsed
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .unwrap_or_default()
            .to_string();
        let response = self
            .http
            .get(parsed)
            .timeout(std::time::Duration::from_secs(60))
            .send()
            .await
            .map_err(|error| Error::invalid(format!("cannot download {url:?}: {error}")))?;
        if !response.status().is_success() {
            return Err(Error::invalid(format!(
                "cannot download {url:?}: the server answered {}",
                response.status()
            )));
        }
        let bytes = read_limited(response, kfpd_ir::MAX_PACKAGE_SIZE)
            .await
            .map_err(|message| Error::invalid(format!("cannot download {url:?}: {message}")))?;
        let package = kfpd_ir::read_package(&file_name, &bytes)?;
        Ok(PackageSource {
            url: url.to_string(),
            file_name,
            package,
        })
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
        if bytes.len() + chunk.len() > limit {
            return Err(format!("the package is larger than {limit} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn update_of(
    display_name: &str,
    tags: BTreeMap<String, String>,
    clear_tags: bool,
) -> Result<PipelineUpdate> {
    let tags = if clear_tags {
        Some(Tags::new())
    } else if tags.is_empty() {
        None
    } else {
        Some(check_tags(&tags)?)
    };
    let display_name = (!display_name.trim().is_empty()).then(|| display_name.to_string());
    Ok(PipelineUpdate { display_name, tags })
}
