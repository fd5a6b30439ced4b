//! `kfpd driver`: the driver request of the Argo pod interface (docs/argo.md) as a
//! command, for places without Argo's agent. It prints the server's answer
//! unchanged, so a container template running it gives the same `outputs.result`
//! as the `http` template.

use std::time::Duration;

/// Settings of `kfpd driver`, as the compiled Workflow passes them.
#[derive(clap::Args, Clone, Debug)]
pub struct DriverArgs {
    /// The API server's HTTP address, e.g. `http://ml-pipeline.kubeflow:8888`.
    #[arg(long, env = "KFPD_SERVER")]
    pub server: String,
    /// The KFP run id.
    #[arg(long)]
    pub run_id: String,
    /// The task to drive: `root/<task>`, `root/for-loop-2/3/<task>` …
    #[arg(long)]
    pub task_path: String,
    /// The Workflow's name (`{{workflow.name}}`), which components see as
    /// `{{$.pipeline_job_resource_name}}`.
    #[arg(long, default_value = "")]
    pub workflow: String,
    /// Ask for the task's pod settings as a PodSpec patch (`pod_spec_patch`).
    /// `--pod-spec-patch=false` is accepted too, as a driver pod passes its input.
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_name = "true|false"
    )]
    pub pod_spec_patch: bool,
    /// The pod's projected service-account token (audience
    /// `pipelines.kubeflow.org`), sent as `Authorization: Bearer …`; a
    /// multi-user server checks `report` on the run for its identity. Upstream's
    /// SDK variable. Without it no identity is sent.
    #[arg(long, env = "KF_PIPELINES_SA_TOKEN_PATH", value_name = "PATH")]
    pub token_path: Option<std::path::PathBuf>,
    /// How long to wait for the server's answer, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_seconds: u64,
}

/// Why a driver request gave no decision; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --server {server:?}: give the API server's HTTP address, e.g. http://ml-pipeline.kubeflow:8888")]
    Server { server: String },
    #[error("cannot reach the API server at {url}: {source} (is it running, and is --server its HTTP address?)")]
    Unreachable { url: String, source: reqwest::Error },
    #[error(transparent)]
    Token(#[from] kfpd_cluster::token::TokenError),
    #[error(
        "the API server refused to drive task {task_path:?} of run {run_id} ({status}): {message}"
    )]
    Refused {
        task_path: String,
        run_id: String,
        status: u16,
        message: String,
    },
}

/// Sends the request and returns the server's answer as it came.
pub async fn drive(args: &DriverArgs) -> Result<String, Error> {
    let server = args.server.trim().trim_end_matches('/');
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(Error::Server {
            server: args.server.clone(),
        });
    }
    let url = format!(
        "{server}/apis/v2beta1/runs/{}/drive",
        urlencode(&args.run_id)
    );
    let unreachable = |source| Error::Unreachable {
        url: url.clone(),
        source,
    };
    let mut request = reqwest::Client::new().post(&url);
    if let Some(authorization) =
        kfpd_cluster::token::TokenFile::new(args.token_path.clone()).authorization()?
    {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    let response = request
        .timeout(Duration::from_secs(args.timeout_seconds.max(1)))
        .json(&serde_json::json!({
            "task_path": args.task_path,
            "workflow": args.workflow,
            "pod_spec_patch": args.pod_spec_patch,
        }))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    if status.is_success() {
        return Ok(body);
    }
    // The server's errors are `{"error": …, "message": …}`; anything else is shown as it came.
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or(body);
    Err(Error::Refused {
        task_path: args.task_path.clone(),
        run_id: args.run_id.clone(),
        status: status.as_u16(),
        message,
    })
}

/// Percent-encodes a path segment (run ids are UUIDs, but a typo should not
/// turn into another path).
fn urlencode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
