//! The argo executor (`--executor argo`): each run's Workflow, compiled as
//! `kfpd compile --target argo` compiles it, is created in the cluster with the
//! run's id as label; stopping, deleting and log reads go to the same cluster.
//! The server still decides every task (driver requests, launcher calls); the
//! Workflow's status matters only for what the server cannot see, which the
//! persistence agent reports (service/report.rs).

use std::sync::Arc;

use kfpd_cluster::Cluster;
use serde_json::{Map, Value};

use crate::config::{ArgoSettings, Config};

/// The cluster and what every compile of this server shares.
pub struct Argo {
    pub cluster: Cluster,
    /// The namespace Workflows go to when a run names none (POD_NAMESPACE).
    pub namespace: String,
    base: kfpd_argo::Options,
}

impl Argo {
    /// Reads the cluster's configuration (in-cluster service account or
    /// KUBECONFIG); nothing is sent yet, so an API server that is down shows as
    /// failed submissions, not as a server that does not start.
    pub async fn connect(config: &Config, settings: &ArgoSettings) -> Result<Arc<Argo>, String> {
        let cluster = Cluster::connect()
            .await
            .map_err(|error| format!("--executor argo: {error}"))?;
        Ok(Arc::new(Argo::new(cluster, config, settings)?))
    }

    pub fn new(cluster: Cluster, config: &Config, settings: &ArgoSettings) -> Result<Argo, String> {
        let argo_version = settings
            .version
            .parse()
            .map_err(|error: kfpd_argo::Error| error.to_string())?;
        let base = kfpd_argo::Options {
            argo_version,
            server_url: format!("http://{}:8888", settings.server_host),
            server_grpc: format!("{}:8887", settings.server_host),
            kfpd_image: config.kfpd_image.clone(),
            artifact_secret: config.artifact_secret.clone(),
            // Each pod proves who it is to a multi-user server (docs/multi-user.md).
            service_account_token: config.multi_user,
            ..kfpd_argo::Options::default()
        };
        Ok(Argo {
            cluster,
            namespace: config.namespace.clone(),
            base,
        })
    }

    /// The namespace of a run's Workflow: the run's own (multi-user), else ours.
    pub fn namespace_of<'a>(&'a self, run_namespace: &'a str) -> &'a str {
        if run_namespace.is_empty() {
            &self.namespace
        } else {
            run_namespace
        }
    }

    /// The Workflow of one run, as JSON; with `workspace_claim` its workspace
    /// mounts that existing claim (a retry) instead of a new one.
    pub fn compile(
        &self,
        package: &kfpd_ir::Package,
        run_id: &str,
        parameters: Map<String, Value>,
        service_account: &str,
        workspace_claim: Option<&str>,
    ) -> Result<Value, String> {
        let mut options = self.base.clone();
        options.run_id = Some(run_id.to_string());
        options.workspace_claim = workspace_claim.map(str::to_string);
        options.parameters = parameters;
        if !service_account.is_empty() {
            options.service_account = service_account.to_string();
        }
        let workflow = kfpd_argo::compile(package, &options)
            .map_err(|error| format!("cannot compile the run's Workflow: {error}"))?;
        serde_json::to_value(&workflow)
            .map_err(|error| format!("cannot encode the run's Workflow: {error}"))
    }
}
