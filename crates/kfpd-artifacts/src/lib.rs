//! Artifact storage for kfpd.
//!
//! Artifacts live either under a local directory (the default) or in an S3-compatible object
//! store (SeaweedFS, MinIO, AWS S3, ...) configured the way the upstream KFP API server is
//! configured (`OBJECTSTORECONFIG_*`, see [`Options::from_env`]).
//!
//! URIs:
//! * local: `file://<absolute root>/<key>` — the path is literal, not percent-encoded;
//! * S3: `minio://<bucket>/<key>` (`s3://<bucket>/<key>` is accepted on input).
//!
//! A store opened with [`ArtifactStore::open`] serves its default root only;
//! [`ArtifactStore::with_roots`] widens that to any local path and any bucket of the same S3
//! endpoint, or to a list of roots ([`Roots`]), and routes each URI to the right place.
//!
//! A key is a relative path of `/`-separated segments; empty, `.` and `..` segments (also
//! percent-encoded ones), backslashes and control characters are refused, so no URI can reach
//! outside the roots a store serves. One trailing `/` is ignored.
//!
//! Tasks only ever see local paths: the executor downloads inputs before a task and uploads
//! outputs after it ([`ArtifactStore::download`], [`ArtifactStore::upload`]);
//! [`local_path_for_uri`] gives upstream's `LocalPathForURI` layout under a directory of the
//! caller's choice, so nothing is written to `/minio`, `/s3` or `/gcs`.
//!
//! A "directory" artifact is the set of objects under `<uri>/`. Empty directories are not
//! stored (object stores have none), on either backend.

pub mod iam;
mod local;
mod roots;
mod s3;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

pub use local::UploadMode;
pub use roots::Roots;

use roots::Location;

/// The default bucket name, as upstream.
pub const DEFAULT_BUCKET: &str = "mlpipeline";
/// The default region, as upstream.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The pipeline root under the bucket, as upstream's default `minio://mlpipeline/v2/artifacts`.
pub const DEFAULT_ROOT_PREFIX: &str = "v2/artifacts";

/// Errors of the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid object store configuration: {0}")]
    Config(String),
    #[error("invalid artifact uri {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("artifact uri {uri:?} is not served here: {reason}")]
    Unsupported { uri: String, reason: String },
    #[error("pipeline root {root:?} {reason}")]
    RootRefused { root: String, reason: String },
    #[error("object store bucket not found: bucket {bucket} at endpoint {endpoint}")]
    BucketNotFound { bucket: String, endpoint: String },
    #[error(
        "object store bucket not found: bucket {bucket} at endpoint {endpoint} (creating it failed: {reason})"
    )]
    BucketCreate {
        bucket: String,
        endpoint: String,
        reason: String,
    },
    #[error("object store bucket {bucket} at endpoint {endpoint}: {reason}")]
    Bucket {
        bucket: String,
        endpoint: String,
        reason: String,
    },
    #[error("artifact not found: {uri}")]
    NotFound { uri: String },
    #[error("artifact {uri} is a directory, not a single object")]
    IsDirectory { uri: String },
    #[error("artifact {uri} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        uri: String,
        size: u64,
        limit: usize,
    },
    #[error("artifact io error on {path} (uri {uri}): {source}")]
    Io {
        path: PathBuf,
        uri: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store error for {uri}: {source}")]
    Store {
        uri: String,
        #[source]
        source: object_store::Error,
    },
}

/// Failed reads and writes of the backing storage (local files or the object store),
/// counted where those errors are made so the server's metrics see every caller.
static BACKEND_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many storage operations of this process failed in the backend (not refusals of
/// bad URIs, nor objects that do not exist).
pub fn backend_errors() -> u64 {
    BACKEND_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_backend_error() {
    BACKEND_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

impl Error {
    fn io(path: &Path, uri: &str, source: std::io::Error) -> Error {
        if source.kind() != std::io::ErrorKind::NotFound {
            count_backend_error();
        }
        Error::Io {
            path: path.to_path_buf(),
            uri: uri.to_string(),
            source,
        }
    }

    fn invalid(uri: &str, reason: impl Into<String>) -> Error {
        Error::InvalidUri {
            uri: uri.to_string(),
            reason: reason.into(),
        }
    }
}

/// One object of a directory artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// Relative to the directory, `/`-separated.
    pub path: String,
    pub size: u64,
}

/// Where artifacts are stored.
#[derive(Clone, PartialEq, Eq)]
pub enum Options {
    /// Artifacts under a local directory; URIs are `file://<abs dir>/<key>`.
    /// The directory is created when missing.
    Local { root: PathBuf },
    /// An S3-compatible store; URIs are `minio://<bucket>/<key>` (also `s3://` on input).
    /// Requests are path-style (`<endpoint>/<bucket>/<key>`), as upstream's MinIO client.
    S3 {
        /// `http://host:port` or `https://host:port`.
        endpoint: String,
        region: String,
        bucket: String,
        /// Static credentials; both or neither. Without them the standard `AWS_*` variables of
        /// the process (keys, web identity, container credentials) are used, and when none is
        /// set requests go unsigned (the instance metadata service is never asked).
        access_key: Option<String>,
        secret_key: Option<String>,
        /// Create the bucket when it does not exist (upstream does).
        create_bucket: bool,
    },
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Options::Local { root } => f.debug_struct("Local").field("root", root).finish(),
            Options::S3 {
                endpoint,
                region,
                bucket,
                access_key,
                secret_key,
                create_bucket,
            } => f
                .debug_struct("S3")
                .field("endpoint", endpoint)
                .field("region", region)
                .field("bucket", bucket)
                .field("access_key", access_key)
                .field("secret_key", &secret_key.as_ref().map(|_| "******"))
                .field("create_bucket", create_bucket)
                .finish(),
        }
    }
}

impl Options {
    /// Reads upstream's object store configuration from `env`.
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `OBJECTSTORECONFIG_HOST` | host name or address (a `http://`/`https://` prefix is honoured) | none: returns `Ok(None)`, i.e. local storage |
    /// | `OBJECTSTORECONFIG_PORT` | port | the scheme's default |
    /// | `OBJECTSTORECONFIG_SECURE` | `true`/`false` (also `1`/`0`, `yes`/`no`): https or http | `false` |
    /// | `OBJECTSTORECONFIG_REGION` | region | `us-east-1` |
    /// | `OBJECTSTORECONFIG_BUCKETNAME` | bucket | `mlpipeline` |
    /// | `OBJECTSTORECONFIG_ACCESSKEY`, else `accesskey` | access key id | none |
    /// | `OBJECTSTORECONFIG_SECRETACCESSKEY`, else `secretkey` | secret access key | none |
    ///
    /// `accesskey` and `secretkey` are the keys of upstream's `mlpipeline-minio-artifact` secret,
    /// so the secret can be given as environment as it is (`envFrom`). The two keys go together:
    /// one without the other is an error. Empty values count as unset. The bucket is created
    /// when missing, as upstream does.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Options>, Error> {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(host) = get("OBJECTSTORECONFIG_HOST") else {
            return Ok(None);
        };
        let secure = match get("OBJECTSTORECONFIG_SECURE") {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| {
                Error::Config(format!(
                    "OBJECTSTORECONFIG_SECURE must be true or false, not {v:?}"
                ))
            })?,
        };
        let (scheme, host) = if let Some(rest) = host.strip_prefix("http://") {
            ("http", rest.trim_end_matches('/').to_string())
        } else if let Some(rest) = host.strip_prefix("https://") {
            ("https", rest.trim_end_matches('/').to_string())
        } else {
            (if secure { "https" } else { "http" }, host)
        };
        if host.is_empty() || host.contains('/') {
            return Err(Error::Config(format!(
                "OBJECTSTORECONFIG_HOST must be a host name, not {host:?}"
            )));
        }
        // A bare IPv6 address needs brackets in a URL.
        let host = if host.contains(':') && !host.starts_with('[') && host.matches(':').count() > 1
        {
            format!("[{host}]")
        } else {
            host
        };
        let endpoint = match get("OBJECTSTORECONFIG_PORT") {
            None => format!("{scheme}://{host}"),
            Some(port) => {
                let port: u16 = port.parse().map_err(|_| {
                    Error::Config(format!(
                        "OBJECTSTORECONFIG_PORT must be a port number, not {port:?}"
                    ))
                })?;
                format!("{scheme}://{host}:{port}")
            }
        };
        let access_key = get("OBJECTSTORECONFIG_ACCESSKEY").or_else(|| get("accesskey"));
        let secret_key = get("OBJECTSTORECONFIG_SECRETACCESSKEY").or_else(|| get("secretkey"));
        if access_key.is_some() != secret_key.is_some() {
            return Err(Error::Config(
                "OBJECTSTORECONFIG_ACCESSKEY (accesskey) and OBJECTSTORECONFIG_SECRETACCESSKEY (secretkey) must be set together"
                    .to_string(),
            ));
        }
        Ok(Some(Options::S3 {
            endpoint,
            region: get("OBJECTSTORECONFIG_REGION").unwrap_or_else(|| DEFAULT_REGION.to_string()),
            bucket: get("OBJECTSTORECONFIG_BUCKETNAME")
                .unwrap_or_else(|| DEFAULT_BUCKET.to_string()),
            access_key,
            secret_key,
            create_bucket: true,
        }))
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[derive(Clone)]
enum Backend {
    Local(local::LocalStore),
    S3(s3::S3Store),
}

impl Backend {
    fn handles(&self, uri: &str) -> bool {
        match self {
            Backend::Local(l) => l.handles(uri),
            Backend::S3(s) => s.handles(uri),
        }
    }
}

/// An open artifact store. Cheap to clone.
#[derive(Clone)]
pub struct ArtifactStore {
    backend: Backend,
    elsewhere: Arc<Elsewhere>,
}

/// What a store needs to serve roots other than its default one.
struct Elsewhere {
    roots: Roots,
    /// `roots` parsed (empty unless [`Roots::Listed`]).
    listed: Vec<Location>,
    /// The default root, which is always served.
    default: Location,
    /// Every local path, for `file://` URIs outside the default root.
    files: local::LocalStore,
    /// Stores for other buckets of the S3 endpoint, made when first needed.
    buckets: Mutex<HashMap<String, s3::S3Store>>,
    /// Buckets seen to exist, so that a pipeline root in one is checked once.
    checked_buckets: Mutex<HashSet<String>>,
}

impl Elsewhere {
    fn new(roots: Roots, listed: Vec<Location>, default: Location) -> Elsewhere {
        Elsewhere {
            roots,
            listed,
            default,
            files: local::LocalStore::filesystem(),
            buckets: Mutex::new(HashMap::new()),
            checked_buckets: Mutex::new(HashSet::new()),
        }
    }
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("root", &self.default_root())
            .field("roots", &self.elsewhere.roots)
            .finish()
    }
}

impl ArtifactStore {
    /// Opens the store, serving its default root only (see [`ArtifactStore::with_roots`]).
    /// For S3, checks that the bucket exists and creates it when it does not and
    /// `create_bucket` is set; otherwise fails with
    /// "object store bucket not found: bucket X at endpoint Y".
    pub async fn open(options: Options) -> Result<ArtifactStore, Error> {
        ArtifactStore::open_checking(options, true).await
    }

    /// Opens the store without asking anything of an S3 bucket: for a task's launcher,
    /// whose credentials may reach its namespace's prefix only (checking a bucket takes
    /// rights on the whole bucket). The API server checked or created the bucket when
    /// it started; a bucket gone since fails the first upload or download, naming it.
    pub async fn open_trusting_bucket(options: Options) -> Result<ArtifactStore, Error> {
        ArtifactStore::open_checking(options, false).await
    }

    async fn open_checking(options: Options, check_bucket: bool) -> Result<ArtifactStore, Error> {
        let backend = match options {
            Options::Local { root } => Backend::Local(local::LocalStore::open(root).await?),
            Options::S3 {
                endpoint,
                region,
                bucket,
                access_key,
                secret_key,
                create_bucket,
            } => {
                let config = s3::S3Config {
                    endpoint,
                    region,
                    bucket,
                    access_key,
                    secret_key,
                    create_bucket,
                };
                let store = if check_bucket {
                    s3::S3Store::open(config).await?
                } else {
                    s3::S3Store::build(config)?
                };
                Backend::S3(store)
            }
        };
        let default = match &backend {
            Backend::Local(l) => Location::Path(l.root_path()),
            Backend::S3(s) => Location::Bucket {
                bucket: s.bucket().to_string(),
                key: DEFAULT_ROOT_PREFIX.to_string(),
            },
        };
        Ok(ArtifactStore {
            backend,
            elsewhere: Arc::new(Elsewhere::new(Roots::DefaultOnly, Vec::new(), default)),
        })
    }

    /// The same store serving `roots` as well as its default root. Listed roots must be
    /// absolute paths, `file:///` URIs, or buckets (`s3://`, `minio://`) of the configured
    /// endpoint; a bucket without an S3 endpoint is a configuration error.
    pub fn with_roots(self, roots: Roots) -> Result<ArtifactStore, Error> {
        let mut listed = Vec::new();
        if let Roots::Listed(texts) = &roots {
            for text in texts {
                let location = Location::parse(text).map_err(|refusal| {
                    Error::Config(format!(
                        "allowed pipeline root {text:?}: {}",
                        refusal.reason()
                    ))
                })?;
                if matches!(location, Location::Bucket { .. })
                    && matches!(self.backend, Backend::Local(_))
                {
                    return Err(Error::Config(format!(
                        "allowed pipeline root {text:?} is a bucket, but no object store is configured (OBJECTSTORECONFIG_HOST)"
                    )));
                }
                listed.push(location);
            }
        }
        let default = self.elsewhere.default.clone();
        Ok(ArtifactStore {
            backend: self.backend,
            elsewhere: Arc::new(Elsewhere::new(roots, listed, default)),
        })
    }

    /// The default pipeline root: `file://<root>` or `minio://<bucket>/v2/artifacts`.
    pub fn default_root(&self) -> String {
        match &self.backend {
            Backend::Local(l) => l.root_uri(),
            Backend::S3(s) => format!("minio://{}/{DEFAULT_ROOT_PREFIX}", s.bucket()),
        }
    }

    /// Where runs of `namespace` keep their artifacts and logs in multi-user mode:
    /// `<default root>/namespaces/<namespace>`. The namespace must be a checked
    /// namespace name (no `/`, no `..`).
    pub fn namespace_root(&self, namespace: &str) -> String {
        format!(
            "{}/namespaces/{namespace}",
            self.default_root().trim_end_matches('/')
        )
    }

    /// The root a run writes under: the one it asked for, else its namespace's
    /// (a run in a namespace, multi-user mode), else the default root.
    pub fn run_root(&self, requested: &str, namespace: &str) -> Result<String, Error> {
        if requested.trim().is_empty() && !namespace.is_empty() {
            return Ok(self.namespace_root(namespace));
        }
        self.pipeline_root(requested)
    }

    /// Whether `uri` lies in `root` (a root as [`ArtifactStore::pipeline_root`]
    /// gives it): equal to it or below it, with no `..` step that could climb out.
    pub fn is_within(root: &str, uri: &str) -> bool {
        let root = root.trim_end_matches('/');
        let Some(rest) = uri.strip_prefix(root) else {
            return false;
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            return false;
        }
        !rest.split('/').any(|step| step == ".." || step == ".")
    }

    /// `<root>/<pipeline>/<run>/<task>/<id>/<output>` (root without trailing slash), as
    /// upstream's driver provisions output artifacts.
    pub fn output_uri(
        root: &str,
        pipeline: &str,
        run_id: &str,
        task: &str,
        id: &str,
        output: &str,
    ) -> String {
        format!(
            "{}/{pipeline}/{run_id}/{task}/{id}/{output}",
            root.trim_end_matches('/')
        )
    }

    /// Whether this store can serve the URI (scheme, place and the allowed roots). The key
    /// itself is checked by the operations.
    pub fn handles(&self, uri: &str) -> bool {
        self.backend.handles(uri)
            || (self.elsewhere.roots != Roots::DefaultOnly && self.route(uri).is_ok())
    }

    /// The pipeline root a run asked for as a URI (`/dir` becomes `file:///dir`; no
    /// trailing `/`), or the default root when it asked for none. Checks what can be
    /// checked without I/O: the kind of root and the allowed roots.
    pub fn pipeline_root(&self, requested: &str) -> Result<String, Error> {
        let requested = requested.trim();
        if requested.is_empty() {
            return Ok(self.default_root());
        }
        let refused = |reason: String| Error::RootRefused {
            root: requested.to_string(),
            reason,
        };
        let trimmed = requested.trim_end_matches('/');
        let root = if requested.starts_with('/') {
            // `/` itself keeps its slash: `file:///`.
            format!("file://{}", if trimmed.is_empty() { "/" } else { trimmed })
        } else if trimmed.ends_with(':') {
            // `file:///` (or a scheme and nothing else, refused below).
            requested.to_string()
        } else {
            trimmed.to_string()
        };
        if self.backend.handles(&root) {
            return Ok(root);
        }
        if self.elsewhere.roots == Roots::DefaultOnly {
            return Err(refused(format!(
                "is not served by this store, which keeps artifacts under {} only",
                self.default_root()
            )));
        }
        let location = Location::parse(&root).map_err(|refusal| refused(refusal.reason()))?;
        self.allow(&location).map_err(refused)?;
        self.backend_for(&location, false).map_err(refused)?;
        Ok(root)
    }

    /// [`ArtifactStore::pipeline_root`], and also that the root can be used now: a local
    /// directory is created when missing and must be writable, a bucket must exist.
    pub async fn check_root(&self, requested: &str) -> Result<String, Error> {
        let root = self.pipeline_root(requested)?;
        if self.backend.handles(&root) {
            // The default store was checked when it was opened.
            return Ok(root);
        }
        let refused = |reason: String| Error::RootRefused {
            root: requested.trim().to_string(),
            reason,
        };
        let location = Location::parse(&root).map_err(|refusal| refused(refusal.reason()))?;
        match location {
            Location::Path(path) => {
                let dir = PathBuf::from(if path.is_empty() { "/" } else { &path });
                let probe = dir.clone();
                let written = tokio::task::spawn_blocking(move || probe_writable(&probe))
                    .await
                    .map_err(|error| Error::io(&dir, &root, std::io::Error::other(error)))?;
                written.map_err(|error| {
                    refused(format!(
                        "cannot be written by this server ({}): {error}",
                        dir.display()
                    ))
                })?;
            }
            Location::Bucket { bucket, .. } => {
                let known = self
                    .elsewhere
                    .checked_buckets
                    .lock()
                    .is_ok_and(|checked| checked.contains(&bucket));
                if !known {
                    let store = self.bucket_store(&bucket, false).map_err(refused)?;
                    match store.check_bucket().await {
                        Ok(()) => {}
                        Err(Error::BucketNotFound { bucket, endpoint }) => {
                            return Err(refused(format!(
                                "names bucket {bucket}, which does not exist at {endpoint}"
                            )))
                        }
                        Err(other) => return Err(other),
                    }
                    if let Ok(mut checked) = self.elsewhere.checked_buckets.lock() {
                        checked.insert(bucket);
                    }
                }
            }
        }
        Ok(root)
    }

    /// Whether the allowed roots hold `location`.
    fn allow(&self, location: &Location) -> Result<(), String> {
        let listed = match &self.elsewhere.roots {
            Roots::DefaultOnly => {
                return Err(format!(
                    "is outside this store, which serves {} only",
                    self.default_root()
                ))
            }
            Roots::Any => return Ok(()),
            Roots::Listed(listed) => listed,
        };
        let inside = self.elsewhere.default.contains(location)
            || self
                .elsewhere
                .listed
                .iter()
                .any(|root| root.contains(location));
        if inside {
            return Ok(());
        }
        Err(format!(
            "is not allowed on this server: roots must lie under {} or the default root {}",
            listed.join(", "),
            self.default_root()
        ))
    }

    /// The backend that stores `location`; `remember` as in [`ArtifactStore::bucket_store`].
    fn backend_for(&self, location: &Location, remember: bool) -> Result<Backend, String> {
        match location {
            Location::Path(_) => Ok(Backend::Local(self.elsewhere.files.clone())),
            Location::Bucket { bucket, .. } => self.bucket_store(bucket, remember).map(Backend::S3),
        }
    }

    /// The store of `bucket` on the configured endpoint. Only stores used for artifacts
    /// are kept (`remember`), so that roots naming many buckets that do not exist do not
    /// fill the table.
    fn bucket_store(&self, bucket: &str, remember: bool) -> Result<s3::S3Store, String> {
        let Backend::S3(default) = &self.backend else {
            return Err(format!(
                "is in bucket {bucket}, but no object store is configured (OBJECTSTORECONFIG_HOST)"
            ));
        };
        if default.bucket() == bucket {
            return Ok(default.clone());
        }
        let mut buckets = self
            .elsewhere
            .buckets
            .lock()
            .map_err(|_| "the bucket table is unusable after a panic".to_string())?;
        if let Some(store) = buckets.get(bucket) {
            return Ok(store.clone());
        }
        let store = default
            .with_bucket(bucket)
            .map_err(|error| format!("cannot use bucket {bucket}: {error}"))?;
        if remember {
            buckets.insert(bucket.to_string(), store.clone());
        }
        Ok(store)
    }

    /// The backend that serves `uri`, or why none does.
    fn route(&self, uri: &str) -> Result<Backend, Error> {
        if self.backend.handles(uri) || self.elsewhere.roots == Roots::DefaultOnly {
            // The default backend refuses what it does not serve, naming its root.
            return Ok(self.backend.clone());
        }
        let location = Location::parse(uri).map_err(|refusal| refusal.into_error(uri))?;
        let refused = |reason: String| Error::Unsupported {
            uri: uri.to_string(),
            reason: format!("it {reason}"),
        };
        self.allow(&location).map_err(refused)?;
        self.backend_for(&location, true).map_err(refused)
    }

    /// Copies the object at `uri` — a single object, or every object under `uri/` as a
    /// directory tree — to `local`. Parent directories of `local` are created. The task gets
    /// its own copy: nothing at `local` shares storage with the store that a write could alter.
    pub async fn download(&self, uri: &str, local: &Path) -> Result<(), Error> {
        match self.route(uri)? {
            Backend::Local(l) => l.download(uri, local).await,
            Backend::S3(s) => s.download(uri, local).await,
        }
    }

    /// Uploads a local file, or a directory recursively, to `uri`, replacing whatever was
    /// there. A missing local path is `Ok(false)` (upstream only warns). The local path is
    /// left as it is; see [`ArtifactStore::upload_with`] to move it instead.
    ///
    /// Symbolic links to files are uploaded as the files' contents; symbolic links to
    /// directories inside a directory are skipped (with a warning) so that loops cannot occur.
    pub async fn upload(&self, local: &Path, uri: &str) -> Result<bool, Error> {
        self.upload_with(local, uri, UploadMode::Copy).await
    }

    /// [`ArtifactStore::upload`] with a choice of [`UploadMode`]: `Move` gives the local files
    /// to the store (a rename on the local backend when on the same filesystem), for callers
    /// that discard the local path afterwards.
    pub async fn upload_with(
        &self,
        local: &Path,
        uri: &str,
        mode: UploadMode,
    ) -> Result<bool, Error> {
        match self.route(uri)? {
            Backend::Local(l) => l.upload(local, uri, mode).await,
            Backend::S3(s) => s.upload(local, uri, mode).await,
        }
    }

    /// Reads one object fully (for the `:read` endpoint). Objects larger than `max_bytes` are
    /// refused with [`Error::TooLarge`] without reading them.
    pub async fn read(&self, uri: &str, max_bytes: usize) -> Result<Bytes, Error> {
        match self.route(uri)? {
            Backend::Local(l) => l.read(uri, max_bytes).await,
            Backend::S3(s) => s.read(uri, max_bytes).await,
        }
    }

    /// Every object under `uri/` (a directory artifact), sorted by path, so a caller can
    /// size and read a directory object by object. Nothing under `uri/` (also when `uri`
    /// is a single object) is [`Error::NotFound`].
    pub async fn list_directory(&self, uri: &str) -> Result<Vec<DirectoryEntry>, Error> {
        match self.route(uri)? {
            Backend::Local(l) => l.list_directory(uri).await,
            Backend::S3(s) => s.list_directory(uri).await,
        }
    }

    /// Whether anything exists at `uri` (an object, or objects under `uri/`).
    pub async fn exists(&self, uri: &str) -> Result<bool, Error> {
        match self.route(uri)? {
            Backend::Local(l) => l.exists(uri).await,
            Backend::S3(s) => s.exists(uri).await,
        }
    }

    /// Deletes the object at `uri` and every object under `uri/`. Deleting nothing is not an
    /// error.
    pub async fn delete(&self, uri: &str) -> Result<(), Error> {
        match self.route(uri)? {
            Backend::Local(l) => l.delete(uri).await,
            Backend::S3(s) => s.delete(uri).await,
        }
    }
}

/// Creates `dir` when missing and writes (then removes) a file in it.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(
        ".kfpd-write-check-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Upstream's `LocalPathForURI` under `base` instead of the filesystem root:
/// `minio://b/k` → `<base>/minio/b/k`, `s3://b/k` → `<base>/s3/b/k`, `gs://b/k` →
/// `<base>/gcs/b/k`, `file:///abs/k` → `<base>/file/abs/k`. Traversal is refused.
pub fn local_path_for_uri(base: &Path, uri: &str) -> Result<PathBuf, Error> {
    let (dir, rest) = if let Some(rest) = uri.strip_prefix("minio://") {
        ("minio", rest)
    } else if let Some(rest) = uri.strip_prefix("s3://") {
        ("s3", rest)
    } else if let Some(rest) = uri.strip_prefix("gs://") {
        ("gcs", rest)
    } else if let Some(rest) = uri.strip_prefix("file://") {
        ("file", rest.trim_start_matches('/'))
    } else {
        return Err(Error::invalid(uri, "unknown scheme"));
    };
    let key = validate_key(uri, rest)?;
    let mut path = base.join(dir);
    for seg in key.split('/') {
        path.push(seg);
    }
    Ok(path)
}

/// Checks a key (relative `/`-separated path) and returns it without a trailing `/`.
pub(crate) fn validate_key<'a>(uri: &str, key: &'a str) -> Result<&'a str, Error> {
    let key = key.strip_suffix('/').unwrap_or(key);
    if key.is_empty() {
        return Err(Error::invalid(uri, "empty object key"));
    }
    if key.starts_with('/') {
        return Err(Error::invalid(uri, "object key must be a relative path"));
    }
    for seg in key.split('/') {
        validate_segment(uri, seg)?;
    }
    Ok(key)
}

pub(crate) fn validate_segment(uri: &str, seg: &str) -> Result<(), Error> {
    if seg.is_empty() {
        return Err(Error::invalid(uri, "empty path segment"));
    }
    let decoded = seg
        .replace("%2e", ".")
        .replace("%2E", ".")
        .replace("%2f", "/")
        .replace("%2F", "/")
        .replace("%5c", "\\")
        .replace("%5C", "\\");
    if seg == "." || seg == ".." || decoded == "." || decoded == ".." || decoded.contains('/') {
        return Err(Error::invalid(uri, "path traversal is not allowed"));
    }
    if seg.contains('\\') || decoded.contains('\\') {
        return Err(Error::invalid(uri, "backslash in path"));
    }
    if seg.chars().any(char::is_control) {
        return Err(Error::invalid(uri, "control character in path"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from_map(pairs: &[(&str, &str)]) -> Result<Option<Options>, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::from_env(&|k| map.get(k).cloned())
    }

    #[test]
    fn from_env_without_host_is_local() {
        assert_eq!(from_map(&[]).unwrap(), None);
        assert_eq!(from_map(&[("OBJECTSTORECONFIG_HOST", " ")]).unwrap(), None);
        assert_eq!(
            from_map(&[("OBJECTSTORECONFIG_PORT", "9000")]).unwrap(),
            None
        );
    }

    #[test]
    fn from_env_upstream_manifest() {
        let o = from_map(&[
            ("OBJECTSTORECONFIG_HOST", "seaweedfs.kubeflow"),
            ("OBJECTSTORECONFIG_PORT", "9000"),
            ("OBJECTSTORECONFIG_SECURE", "false"),
            ("OBJECTSTORECONFIG_ACCESSKEY", "minio"),
            ("OBJECTSTORECONFIG_SECRETACCESSKEY", "minio123"),
        ])
        .unwrap();
        assert_eq!(
            o,
            Some(Options::S3 {
                endpoint: "http://seaweedfs.kubeflow:9000".into(),
                region: "us-east-1".into(),
                bucket: "mlpipeline".into(),
                access_key: Some("minio".into()),
                secret_key: Some("minio123".into()),
                create_bucket: true,
            })
        );
    }

    #[test]
    fn from_env_all_keys() {
        let o = from_map(&[
            ("OBJECTSTORECONFIG_HOST", "s3.example.com"),
            ("OBJECTSTORECONFIG_PORT", "443"),
            ("OBJECTSTORECONFIG_SECURE", "True"),
            ("OBJECTSTORECONFIG_REGION", "eu-west-1"),
            ("OBJECTSTORECONFIG_BUCKETNAME", "artifacts"),
            ("accesskey", "AK"),
            ("secretkey", "SK"),
        ])
        .unwrap();
        assert_eq!(
            o,
            Some(Options::S3 {
                endpoint: "https://s3.example.com:443".into(),
                region: "eu-west-1".into(),
                bucket: "artifacts".into(),
                access_key: Some("AK".into()),
                secret_key: Some("SK".into()),
                create_bucket: true,
            })
        );
    }

    #[test]
    fn from_env_prefers_objectstoreconfig_keys_and_no_port() {
        let o = from_map(&[
            ("OBJECTSTORECONFIG_HOST", "minio"),
            ("OBJECTSTORECONFIG_ACCESSKEY", "a"),
            ("OBJECTSTORECONFIG_SECRETACCESSKEY", "b"),
            ("accesskey", "x"),
            ("secretkey", "y"),
        ])
        .unwrap();
        let Some(Options::S3 {
            endpoint,
            access_key,
            secret_key,
            ..
        }) = o
        else {
            panic!("expected s3 options");
        };
        assert_eq!(endpoint, "http://minio");
        assert_eq!(access_key.as_deref(), Some("a"));
        assert_eq!(secret_key.as_deref(), Some("b"));
    }

    #[test]
    fn from_env_without_keys_and_with_scheme_in_host() {
        let o = from_map(&[
            ("OBJECTSTORECONFIG_HOST", "https://store.local/"),
            ("OBJECTSTORECONFIG_PORT", "8333"),
        ])
        .unwrap();
        let Some(Options::S3 {
            endpoint,
            access_key,
            secret_key,
            ..
        }) = o
        else {
            panic!("expected s3 options");
        };
        assert_eq!(endpoint, "https://store.local:8333");
        assert_eq!(access_key, None);
        assert_eq!(secret_key, None);
        let o = from_map(&[
            ("OBJECTSTORECONFIG_HOST", "::1"),
            ("OBJECTSTORECONFIG_PORT", "1"),
        ])
        .unwrap();
        assert!(matches!(o, Some(Options::S3 { endpoint, .. }) if endpoint == "http://[::1]:1"));
    }

    #[test]
    fn from_env_errors() {
        let e = from_map(&[
            ("OBJECTSTORECONFIG_HOST", "h"),
            ("OBJECTSTORECONFIG_ACCESSKEY", "a"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("must be set together"), "{e}");
        let e = from_map(&[
            ("OBJECTSTORECONFIG_HOST", "h"),
            ("OBJECTSTORECONFIG_PORT", "x"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("OBJECTSTORECONFIG_PORT"), "{e}");
        let e = from_map(&[
            ("OBJECTSTORECONFIG_HOST", "h"),
            ("OBJECTSTORECONFIG_SECURE", "maybe"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("OBJECTSTORECONFIG_SECURE"), "{e}");
    }

    #[test]
    fn debug_hides_secret() {
        let o = Options::S3 {
            endpoint: "http://h".into(),
            region: "r".into(),
            bucket: "b".into(),
            access_key: Some("AK".into()),
            secret_key: Some("topsecret".into()),
            create_bucket: false,
        };
        assert!(!format!("{o:?}").contains("topsecret"));
    }

    #[test]
    fn keys() {
        assert_eq!(validate_key("u", "a/b/c/").unwrap(), "a/b/c");
        for bad in [
            "", "/a", "a//b", "a/../b", "..", "a/.", "%2e%2E/x", "a%2f..", "a\\b", "a\u{0}b",
        ] {
            assert!(validate_key("u", bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_key("u", "a.b/..c/c..").is_ok());
    }

    #[test]
    fn local_paths() {
        let base = Path::new("/tmp/task");
        assert_eq!(
            local_path_for_uri(base, "minio://mlpipeline/v2/artifacts/p/r/t/i/o").unwrap(),
            PathBuf::from("/tmp/task/minio/mlpipeline/v2/artifacts/p/r/t/i/o")
        );
        assert_eq!(
            local_path_for_uri(base, "s3://b/k").unwrap(),
            PathBuf::from("/tmp/task/s3/b/k")
        );
        assert_eq!(
            local_path_for_uri(base, "gs://b/k").unwrap(),
            PathBuf::from("/tmp/task/gcs/b/k")
        );
        assert_eq!(
            local_path_for_uri(base, "file:///data/x").unwrap(),
            PathBuf::from("/tmp/task/file/data/x")
        );
        assert!(local_path_for_uri(base, "minio://b/../../etc").is_err());
        assert!(local_path_for_uri(base, "http://b/k").is_err());
    }

    #[test]
    fn output_uri_layout() {
        assert_eq!(
            ArtifactStore::output_uri(
                "minio://mlpipeline/v2/artifacts/",
                "my-pipeline",
                "run-1",
                "train",
                "0b2c",
                "model"
            ),
            "minio://mlpipeline/v2/artifacts/my-pipeline/run-1/train/0b2c/model"
        );
    }
}
