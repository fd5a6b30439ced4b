//! Building the execution engine from configuration: the artifact store (local
//! directory, or S3 from upstream's OBJECTSTORECONFIG_* variables), the per-image
//! Python environments and the engine itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kfpd_artifacts::{ArtifactStore, Options as ArtifactOptions, Roots};
use kfpd_engine::{CacheOptions, Engine, Options as EngineOptions};
use kfpd_runtime::{Inherit, Options as RuntimeOptions, Runtime};
use kfpd_store::MetadataStore;

/// Where per-image Python environments live unless configured: shared by every
/// data dir of the user, so `pip install` in a component is paid once per image.
pub fn default_envs_dir() -> PathBuf {
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|value| !value.is_empty()) {
        return PathBuf::from(cache).join("kfpd").join("envs");
    }
    match std::env::var_os("HOME").filter(|value| !value.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("kfpd").join("envs"),
        None => PathBuf::from("kfpd-envs"),
    }
}

/// Opens the artifact store: S3 when OBJECTSTORECONFIG_HOST is set, else
/// `<data_dir>/artifacts`; it serves the pipeline roots `roots` allows. A missing
/// bucket is created when `create_bucket` says so, else named in the error.
pub async fn open_artifacts(
    data_dir: &Path,
    roots: Roots,
    create_bucket: bool,
) -> Result<ArtifactStore, String> {
    let from_env = ArtifactOptions::from_env(&|name| std::env::var(name).ok())
        .map_err(|error| format!("object store configuration: {error}"))?;
    let options = match from_env {
        Some(mut options) => {
            if let ArtifactOptions::S3 {
                create_bucket: create,
                ..
            } = &mut options
            {
                *create = create_bucket;
            }
            options
        }
        None => ArtifactOptions::Local {
            root: absolute(&data_dir.join("artifacts")),
        },
    };
    ArtifactStore::open(options)
        .await
        .and_then(|store| store.with_roots(roots))
        .map_err(|error| match error {
            kfpd_artifacts::Error::BucketNotFound { .. } => format!(
                "{error}: create it (OBJECTSTORECONFIG_BUCKETNAME names it), or let kfpd create it with --create-bucket true"
            ),
            other => other.to_string(),
        })
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

pub async fn build(
    store: Arc<dyn MetadataStore>,
    data_dir: &Path,
    max_parallel_tasks: usize,
    kfp_package: Option<String>,
) -> Result<Arc<Engine>, String> {
    let artifacts = open_artifacts(data_dir, Roots::Any, true).await?;
    build_with(
        store,
        artifacts,
        data_dir,
        max_parallel_tasks,
        CacheOptions::default(),
        kfp_package,
        Inherit::default(),
    )
}

pub fn build_with(
    store: Arc<dyn MetadataStore>,
    artifacts: ArtifactStore,
    data_dir: &Path,
    max_parallel_tasks: usize,
    cache: CacheOptions,
    kfp_package: Option<String>,
    inherit: Inherit,
) -> Result<Arc<Engine>, String> {
    let envs_dir = std::env::var_os("KFPD_ENVS_DIR")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(default_envs_dir);
    let runtime = Runtime::new(RuntimeOptions {
        inherit,
        ..RuntimeOptions::new(envs_dir)
    });
    let options = EngineOptions {
        work_dir: absolute(&data_dir.join("work")),
        max_parallel_tasks,
        cache,
        kfp_package,
    };
    Ok(Arc::new(Engine::new(store, runtime, artifacts, options)))
}
