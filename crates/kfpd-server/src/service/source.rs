//! Resolving what a run or recurring run executes: a stored pipeline version, the
//! newest version of a pipeline, or a spec given inline; and checking its
//! parameters before anything is stored.

use kfpd_api::v2beta1::{PipelineVersionReference, RuntimeConfig};
use kfpd_api::wkt::Struct;
use kfpd_ir::Package;

use super::Api;
use crate::error::{Error, Result};

/// The pipeline a run will execute.
pub(super) struct Source {
    pub pipeline_id: String,
    /// Empty for recurring runs that follow the newest version of a pipeline.
    pub pipeline_version_id: String,
    /// The `pipeline_spec` JSON as stored and returned.
    pub spec_json: String,
    pub inline: bool,
    pub package: Package,
}

/// What a request asked to execute, from either message's `pipeline_source` oneof.
pub(super) enum Requested<'a> {
    Reference(&'a PipelineVersionReference),
    Spec(&'a Struct),
    /// The deprecated `pipeline_version_id` member, still honoured.
    VersionId(&'a str),
    Nothing,
}

impl<'a> From<Option<&'a kfpd_api::v2beta1::run::PipelineSource>> for Requested<'a> {
    #[allow(deprecated)]
    fn from(source: Option<&'a kfpd_api::v2beta1::run::PipelineSource>) -> Requested<'a> {
        use kfpd_api::v2beta1::run::PipelineSource;
        match source {
            Some(PipelineSource::PipelineVersionReference(reference)) => {
                Requested::Reference(reference)
            }
            Some(PipelineSource::PipelineSpec(spec)) => Requested::Spec(spec),
            Some(PipelineSource::PipelineVersionId(id)) => Requested::VersionId(id),
            None => Requested::Nothing,
        }
    }
}

impl<'a> From<Option<&'a kfpd_api::v2beta1::recurring_run::PipelineSource>> for Requested<'a> {
    #[allow(deprecated)]
    fn from(source: Option<&'a kfpd_api::v2beta1::recurring_run::PipelineSource>) -> Requested<'a> {
        use kfpd_api::v2beta1::recurring_run::PipelineSource;
        match source {
            Some(PipelineSource::PipelineVersionReference(reference)) => {
                Requested::Reference(reference)
            }
            Some(PipelineSource::PipelineSpec(spec)) => Requested::Spec(spec),
            Some(PipelineSource::PipelineVersionId(id)) => Requested::VersionId(id),
            None => Requested::Nothing,
        }
    }
}

impl Api {
    /// Resolves whichever source a request gave.
    pub(super) async fn resolve_requested(
        &self,
        what: &str,
        requested: Requested<'_>,
        pin_latest: bool,
    ) -> Result<Source> {
        match requested {
            Requested::Reference(reference) => {
                self.resolve_source(what, Some(reference), None, pin_latest)
                    .await
            }
            Requested::Spec(spec) => {
                self.resolve_source(what, None, Some(spec), pin_latest)
                    .await
            }
            Requested::VersionId(version_id) => {
                let reference = PipelineVersionReference {
                    pipeline_id: String::new(),
                    pipeline_version_id: version_id.to_string(),
                };
                self.resolve_source(what, Some(&reference), None, pin_latest)
                    .await
            }
            Requested::Nothing => self.resolve_source(what, None, None, pin_latest).await,
        }
    }

    /// `pin_latest`: whether a reference without a version id is resolved to the
    /// newest version (runs) or kept open (recurring runs resolve at each trigger).
    pub(super) async fn resolve_source(
        &self,
        what: &str,
        reference: Option<&PipelineVersionReference>,
        spec: Option<&Struct>,
        pin_latest: bool,
    ) -> Result<Source> {
        if let Some(reference) = reference {
            let version = if !reference.pipeline_version_id.is_empty() {
                // A version the caller may not see is not found.
                let version = self
                    .version_for(&reference.pipeline_version_id, kfpd_auth::Verb::Get)
                    .await?;
                let pipeline_matches = reference.pipeline_id.is_empty()
                    || reference.pipeline_id == version.pipeline_id;
                if !pipeline_matches {
                    return Err(Error::invalid(format!(
                        "{what}: pipeline version {} does not belong to pipeline {}",
                        reference.pipeline_version_id, reference.pipeline_id
                    )));
                }
                version
            } else if !reference.pipeline_id.is_empty() {
                self.pipeline_for(&reference.pipeline_id, kfpd_auth::Verb::Get)
                    .await?;
                self.store
                    .latest_pipeline_version(&reference.pipeline_id)
                    .await?
            } else {
                return Err(Error::invalid(format!(
                    "{what}: pipeline_version_reference needs a pipeline_id or a pipeline_version_id"
                )));
            };
            let spec_value: serde_json::Value = serde_json::from_str(&version.pipeline_spec)
                .map_err(|error| {
                    Error::internal(format!("stored pipeline spec is not JSON: {error}"))
                })?;
            let package = kfpd_ir::parse_spec_value(&spec_value)?;
            let pinned = pin_latest || !reference.pipeline_version_id.is_empty();
            return Ok(Source {
                pipeline_id: version.pipeline_id,
                pipeline_version_id: if pinned { version.id } else { String::new() },
                spec_json: version.pipeline_spec,
                inline: false,
                package,
            });
        }
        let Some(spec) = spec else {
            return Err(Error::invalid(format!(
                "{what}: a pipeline_spec or a pipeline_version_reference is required"
            )));
        };
        let value = spec.to_json();
        let package = kfpd_ir::parse_spec_value(&value)?;
        let spec_json = serde_json::to_string(&package.api_pipeline_spec())
            .map_err(|error| Error::internal(format!("encoding pipeline spec: {error}")))?;
        Ok(Source {
            pipeline_id: String::new(),
            pipeline_version_id: String::new(),
            spec_json,
            inline: true,
            package,
        })
    }
}

/// Checks `runtime_config.parameters` against the pipeline's root inputs.
pub(super) fn check_parameters(
    what: &str,
    package: &Package,
    config: Option<&RuntimeConfig>,
) -> Result<()> {
    let parameters: serde_json::Map<String, serde_json::Value> = config
        .map(|config| {
            config
                .parameters
                .iter()
                .map(|(name, value)| (name.clone(), value.to_json()))
                .collect()
        })
        .unwrap_or_default();
    kfpd_ir::check_runtime_parameters(package, &parameters)
        .map_err(|error| Error::invalid(format!("{what}: {error}")))
}
