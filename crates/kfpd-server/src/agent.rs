//! The persistence agent's two homes: `kfpd agent`, reporting to an API server
//! over REST, and the same loop inside `kfpd serve --executor argo`, calling the
//! service layer directly (kfpd_cluster::agent has the loop).

use std::future::Future;
use std::sync::Arc;

use kfpd_cluster::agent::{Agent, HttpReporter, Options, ReportError, Reporter, Watch};
use kfpd_cluster::token::TokenFile;
use kfpd_cluster::Cluster;

use crate::error::Code;
use crate::service::Api;

/// Flags of `kfpd agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// The API server's REST address, where Workflows are reported.
    #[arg(
        long,
        env = "KFPD_AGENT_SERVER",
        default_value = "http://ml-pipeline:8888"
    )]
    pub server: String,
    /// The namespace whose Workflows are watched. Upstream: POD_NAMESPACE.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kubeflow")]
    pub namespace: String,
    /// Where Workflows are watched instead of `--namespace` alone: a
    /// comma-separated list of namespaces, or `*` for every namespace (multi-user
    /// installs; needs the ClusterRole of manifests/components/agent-all-namespaces).
    #[arg(long, env = "KFPD_AGENT_NAMESPACES", default_value = "")]
    pub watch_namespaces: String,
    /// How long a finished Workflow stays once its run's final state is recorded.
    #[arg(long, env = "KFPD_WORKFLOW_TTL", default_value = "24h")]
    pub workflow_ttl: String,
    /// How old an unfinished run must be before, finding no Workflow for it, the
    /// agent reports it gone (its Workflow may still be on its way).
    #[arg(long, env = "KFPD_AGENT_RECONCILE_GRACE", default_value = "120s")]
    pub reconcile_grace: String,
    /// Log lines as `text` or `json`. [default: text]
    #[arg(long, env = "KFPD_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<String>,
    /// The agent's projected service-account token (audience
    /// `pipelines.kubeflow.org`), sent with every report: a multi-user server
    /// checks `report` for its identity. Read again for every call. Upstream's
    /// SDK variable.
    #[arg(long, env = "KF_PIPELINES_SA_TOKEN_PATH", value_name = "PATH")]
    pub token_path: Option<std::path::PathBuf>,
}

/// Runs `kfpd agent` until `shutdown` completes.
pub async fn run_alone(args: &AgentArgs, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let ttl = crate::config::parse_duration(&args.workflow_ttl)
        .map_err(|message| format!("invalid setting workflow_ttl: {message}"))?;
    let grace = crate::config::parse_duration(&args.reconcile_grace)
        .map_err(|message| format!("invalid setting reconcile_grace: {message}"))?;
    let watch = Watch::parse(&args.watch_namespaces, &args.namespace)
        .map_err(|message| format!("invalid setting agent_namespaces: {message}"))?;
    let cluster = Cluster::connect()
        .await
        .map_err(|error| error.to_string())?;
    let mut options = Options::new(&args.namespace);
    options.watch = watch;
    options.ttl = ttl;
    options.grace = grace;
    let token = TokenFile::new(args.token_path.clone());
    // The kubelet mounts the token before the container starts: one missing now
    // is a wrong setting, not a rotation in progress.
    token.authorization().map_err(|error| error.to_string())?;
    let reporter = Arc::new(HttpReporter::new(&args.server).with_token(token.clone()));
    tracing::info!(
        server = %args.server,
        token = ?token.path(),
        "persistence agent reporting to the api server"
    );
    Agent::new(cluster, reporter, options).run(shutdown).await;
    Ok(())
}

/// The loop inside `kfpd serve`.
pub fn spawn(
    api: Api,
    cluster: Cluster,
    namespace: &str,
    settings: &crate::config::ArgoSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut options = Options::new(namespace);
    options.watch = settings.agent_watch.clone();
    options.ttl = settings.workflow_ttl;
    options.grace = settings.reconcile_grace;
    let agent = Agent::new(cluster, Arc::new(ApiReporter(api)), options);
    tokio::spawn(agent.run(shutdown));
}

/// Reports straight to the service layer.
pub struct ApiReporter(pub Api);

fn report_error(error: crate::error::Error) -> ReportError {
    match error.code {
        // The only thing a report looks up is the Workflow's run.
        Code::NotFound => ReportError::UnknownRun(error.message),
        Code::InvalidArgument => ReportError::Permanent(error.message),
        _ => ReportError::Transient(error.message),
    }
}

#[async_trait::async_trait]
impl Reporter for ApiReporter {
    async fn report(&self, workflow: &str) -> Result<(), ReportError> {
        self.0.report_workflow(workflow).await.map_err(report_error)
    }

    async fn unfinished_runs(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<(String, i64)>, ReportError> {
        self.0
            .unfinished_runs(namespace)
            .await
            .map_err(report_error)
    }
}
