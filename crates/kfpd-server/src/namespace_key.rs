//! `kfpd namespace-key`: a namespace's own object store key, reaching only that
//! namespace's artifact prefix, made through the store's IAM API and printed as
//! the Secret workflow pods of that namespace read (docs/multi-user.md).

use kfpd_artifacts::iam::{self, Admin};
use kfpd_artifacts::{Options as ArtifactOptions, DEFAULT_ROOT_PREFIX};

use crate::config::DEFAULT_ARTIFACT_SECRET;

/// Settings of `kfpd namespace-key`; the object store and its administrator's key
/// come from the `OBJECTSTORECONFIG_*` variables, as for `kfpd serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct NamespaceKeyArgs {
    /// The namespace (a Kubeflow profile) the key is for.
    #[arg(long)]
    pub namespace: String,
    /// The IAM API the key is made with: SeaweedFS's `weed iam` (its own port,
    /// 8111 by default), `https://iam.amazonaws.com`, Ceph RGW's endpoint.
    /// [default: the object store's endpoint]
    #[arg(long, env = "KFPD_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
    /// The Secret's name in the namespace, as `kfpd serve --artifact-secret`.
    #[arg(long, env = "KFPD_ARTIFACT_SECRET", default_value = DEFAULT_ARTIFACT_SECRET)]
    pub secret: String,
    /// Print the key's policy (JSON) and make nothing: for stores administered
    /// otherwise (MinIO: `mc admin policy create`).
    #[arg(long)]
    pub print_policy: bool,
}

/// Why no key was made; the message says what to set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no object store is configured: set OBJECTSTORECONFIG_HOST (and the other OBJECTSTORECONFIG_* variables) as for kfpd serve")]
    NoObjectStore,
    #[error("object store configuration: {0}")]
    Config(String),
    #[error("no administrator key: set OBJECTSTORECONFIG_ACCESSKEY and OBJECTSTORECONFIG_SECRETACCESSKEY to a key that may create IAM users")]
    NoAdminKey,
    #[error(transparent)]
    Iam(#[from] iam::Error),
    #[error("cannot write the Secret: {0}")]
    Secret(String),
}

/// The text to print: the policy (`--print-policy`), else the Secret holding the
/// new key, as a manifest for `kubectl apply -f -`.
pub async fn run(args: &NamespaceKeyArgs) -> Result<String, Error> {
    iam::check_namespace(&args.namespace)?;
    let options = ArtifactOptions::from_env(&|name| std::env::var(name).ok())
        .map_err(|error| Error::Config(error.to_string()))?;
    let Some(ArtifactOptions::S3 {
        endpoint,
        region,
        bucket,
        access_key,
        secret_key,
        ..
    }) = options
    else {
        return Err(Error::NoObjectStore);
    };
    let prefix = format!("{DEFAULT_ROOT_PREFIX}/namespaces/{}/", args.namespace);
    let policy = iam::prefix_policy(&bucket, &prefix);
    if args.print_policy {
        return Ok(format!("{policy}\n"));
    }
    let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
        return Err(Error::NoAdminKey);
    };
    let admin = Admin {
        endpoint: args.iam_endpoint.clone().unwrap_or(endpoint),
        region,
        access_key,
        secret_key,
    };
    let key = admin.namespace_key(&args.namespace, &policy).await?;
    eprintln!(
        "kfpd namespace-key: user {} has a new key reaching minio://{bucket}/{prefix} only; apply the Secret below to namespace {}",
        key.user, args.namespace
    );
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": args.secret,
            "namespace": args.namespace,
            "labels": {"app.kubernetes.io/managed-by": "kfpd"},
            "annotations": {"kfpd/iam-user": key.user},
        },
        "type": "Opaque",
        "stringData": {"accesskey": key.access_key, "secretkey": key.secret_key},
    });
    serde_yaml::to_string(&secret).map_err(|error| Error::Secret(error.to_string()))
}
