//! What a compile needs to know besides the pipeline: where the server is, which
//! images to use, and the run.

use serde_json::{Map, Value};

use crate::error::Error;

/// The Argo version the Workflow is for. The output is the same for both (only
/// fields both accept are used); the version is recorded on the Workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgoVersion {
    /// Argo Workflows v3.7 (the default).
    #[default]
    V3_7,
    /// Argo Workflows v4.0.
    V4_0,
}

impl ArgoVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ArgoVersion::V3_7 => "3.7",
            ArgoVersion::V4_0 => "4.0",
        }
    }
}

impl std::str::FromStr for ArgoVersion {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "3.7" => Ok(ArgoVersion::V3_7),
            "4.0" => Ok(ArgoVersion::V4_0),
            other => Err(Error::Unsupported(format!(
                "argo version {other:?} is not supported; use 3.7 or 4.0"
            ))),
        }
    }
}

/// Compile settings. [`Options::default`] is what `kfpd compile` uses: upstream's
/// in-cluster service names, and the run parameters' defaults.
#[derive(Debug, Clone)]
pub struct Options {
    pub argo_version: ArgoVersion,
    /// The KFP run id; `None` prints `{{workflow.uid}}` in its place.
    pub run_id: Option<String>,
    /// Run parameters; a parameter not given takes its default.
    pub parameters: Map<String, Value>,
    /// The API server's HTTP address as pods see it (driver requests).
    pub server_url: String,
    /// The API server's gRPC `host:port` as pods see it (the launcher).
    pub server_grpc: String,
    /// Image holding a statically linked `kfpd` (copied into every task pod).
    pub kfpd_image: String,
    pub service_account: String,
    /// Optional ConfigMap whose keys become the launcher's environment.
    pub launcher_config_map: String,
    /// Optional Secret whose keys become the launcher's environment (object store credentials).
    pub artifact_secret: String,
    /// An existing claim the run's workspace mounts by name instead of a new one
    /// from `volumeClaimTemplates`: a retried run's Workflow replaces the failed
    /// one and must see the files its succeeded tasks left in the workspace.
    pub workspace_claim: Option<String>,
    /// Multi-user mode: every pod that calls the API server gets a projected
    /// service-account token of audience `pipelines.kubeflow.org` and sends it,
    /// and driver requests are made by `kfpd driver` pods (Argo's `http` template
    /// cannot send a pod's token).
    pub service_account_token: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            argo_version: ArgoVersion::default(),
            run_id: None,
            parameters: Map::new(),
            server_url: "http://ml-pipeline.kubeflow.svc.cluster.local:8888".into(),
            server_grpc: "ml-pipeline.kubeflow.svc.cluster.local:8887".into(),
            kfpd_image: "ghcr.io/kfpd/kfpd:latest".into(),
            service_account: "pipeline-runner".into(),
            launcher_config_map: "kfpd-launcher".into(),
            artifact_secret: "kfpd-artifacts".into(),
            workspace_claim: None,
            service_account_token: false,
        }
    }
}

impl Options {
    /// The run id as the Workflow spells it.
    pub fn run_id(&self) -> String {
        self.run_id
            .clone()
            .unwrap_or_else(|| "{{workflow.uid}}".to_string())
    }
}
