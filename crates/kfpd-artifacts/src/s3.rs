//! The S3 backend, on `object_store`'s `AmazonS3`, path-style requests.
//!
//! `object_store` has no bucket operations, so the bucket check and creation are two plain
//! requests (`HEAD /<bucket>`, `PUT /<bucket>`) signed with `object_store`'s own SigV4
//! authorizer and the store's credentials.
//!
//! Files are streamed both ways: uploads go through `object_store`'s `BufWriter` (one `PUT`
//! for small files, a multipart upload in 10 MiB parts above that), downloads write the
//! response body to the file chunk by chunk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer};
use object_store::buffered::BufWriter;
use object_store::client::HttpRequestBody;
use object_store::path::Path as ObjPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use tokio::io::AsyncWriteExt;

use crate::local::{walk_files, UploadMode};
use crate::{validate_key, validate_segment, DirectoryEntry, Error};

/// Concurrent object transfers for directory uploads and downloads.
const CONCURRENCY: usize = 4;

#[derive(Clone)]
pub(crate) struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub create_bucket: bool,
}

#[derive(Clone)]
pub(crate) struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// What the store was built from, to build stores for other buckets of the endpoint.
    config: S3Config,
    store: Arc<AmazonS3>,
    bucket: String,
    endpoint: String,
    region: String,
    anonymous: bool,
    http: reqwest::Client,
}

/// Variables that make `object_store`'s default credential chain find credentials without
/// asking the instance metadata service.
const AWS_CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

impl S3Store {
    pub(crate) async fn open(cfg: S3Config) -> Result<S3Store, Error> {
        let create_bucket = cfg.create_bucket;
        let s = S3Store::build(cfg)?;
        s.ensure_bucket(create_bucket).await?;
        Ok(s)
    }

    /// A store for another bucket of the same endpoint, with the same credentials. The
    /// bucket is not checked: see [`S3Store::check_bucket`].
    pub(crate) fn with_bucket(&self, bucket: &str) -> Result<S3Store, Error> {
        S3Store::build(S3Config {
            bucket: bucket.to_string(),
            create_bucket: false,
            ..self.inner.config.clone()
        })
    }

    /// Whether the bucket exists: [`Error::BucketNotFound`] when it does not.
    pub(crate) async fn check_bucket(&self) -> Result<(), Error> {
        self.ensure_bucket(false).await
    }

    pub(crate) fn build(cfg: S3Config) -> Result<S3Store, Error> {
        let config = cfg.clone();
        let endpoint = cfg.endpoint.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&endpoint).map_err(|e| {
            Error::Config(format!(
                "object store endpoint {endpoint:?} is not a url: {e}"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!(
                "object store endpoint {endpoint:?} must be http(s)://host[:port]"
            )));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(Error::Config(format!(
                "object store endpoint {endpoint:?} must not have a path"
            )));
        }
        let bucket = cfg.bucket.trim().to_string();
        if bucket.is_empty() || bucket.contains('/') {
            return Err(Error::Config(format!(
                "invalid object store bucket name {bucket:?}"
            )));
        }
        let region = if cfg.region.trim().is_empty() {
            crate::DEFAULT_REGION.to_string()
        } else {
            cfg.region.trim().to_string()
        };

        let env_creds = AWS_CREDENTIAL_VARS
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
        let (builder, anonymous) = match (cfg.access_key, cfg.secret_key) {
            (Some(a), Some(s)) => (
                AmazonS3Builder::new()
                    .with_access_key_id(a)
                    .with_secret_access_key(s),
                false,
            ),
            (None, None) if env_creds => (AmazonS3Builder::from_env(), false),
            (None, None) => (AmazonS3Builder::new().with_skip_signature(true), true),
            _ => {
                return Err(Error::Config(
                    "object store access key and secret key must be given together".to_string(),
                ))
            }
        };
        let store = builder
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(Duration::from_secs(300))
                    .with_connect_timeout(Duration::from_secs(10)),
            )
            .with_allow_http(true)
            .with_endpoint(&endpoint)
            .with_region(&region)
            .with_bucket_name(&bucket)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
            })
            .build()
            .map_err(|e| Error::Config(format!("object store at {endpoint}: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?;
        Ok(S3Store {
            inner: Arc::new(Inner {
                config,
                store: Arc::new(store),
                bucket,
                endpoint,
                region,
                anonymous,
                http,
            }),
        })
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    fn bucket_error(&self, reason: String) -> Error {
        Error::Bucket {
            bucket: self.inner.bucket.clone(),
            endpoint: self.inner.endpoint.clone(),
            reason,
        }
    }

    /// A signed request on the bucket itself; returns the status and the response body.
    async fn bucket_request(
        &self,
        method: http::Method,
        body: Bytes,
    ) -> Result<(http::StatusCode, String), Error> {
        let url = format!("{}/{}", self.inner.endpoint, self.inner.bucket);
        self.signed_request(method, url, body).await
    }

    /// Deletes one object with a plain `DELETE`, which a key limited to the object's
    /// prefix may send (`object_store` deletes through the multi-object API, which
    /// some stores authorize against the whole bucket). A missing object is fine.
    async fn delete_object(&self, path: &ObjPath, uri: &str) -> Result<(), Error> {
        let key: Vec<String> = path
            .parts()
            .map(|part| {
                form_urlencoded::byte_serialize(part.as_ref().as_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            })
            .collect();
        let url = format!(
            "{}/{}/{}",
            self.inner.endpoint,
            self.inner.bucket,
            key.join("/")
        );
        let (status, body) = self
            .signed_request(http::Method::DELETE, url, Bytes::new())
            .await?;
        if status.is_success() || status == http::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.bucket_error(format!(
            "deleting {uri} failed: http {status}{}",
            s3_error_suffix(&body)
        )))
    }

    /// A signed request to `url` of this store's endpoint.
    async fn signed_request(
        &self,
        method: http::Method,
        url: String,
        body: Bytes,
    ) -> Result<(http::StatusCode, String), Error> {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(HttpRequestBody::from(body.clone()))
            .map_err(|e| self.bucket_error(format!("cannot build request: {e}")))?;
        if !self.inner.anonymous {
            let cred = self
                .inner
                .store
                .credentials()
                .get_credential()
                .await
                .map_err(|e| self.bucket_error(format!("no credentials: {e}")))?;
            AwsAuthorizer::new(&cred, "s3", &self.inner.region).authorize(&mut req, None);
        }
        let mut rb = self.inner.http.request(method, &url).body(body);
        for (name, value) in req.headers() {
            rb = rb.header(name, value);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| self.bucket_error(format!("cannot reach the object store: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, text))
    }

    async fn ensure_bucket(&self, create: bool) -> Result<(), Error> {
        let (status, body) = self
            .bucket_request(http::Method::HEAD, Bytes::new())
            .await?;
        if status.is_success() {
            return Ok(());
        }
        if status != http::StatusCode::NOT_FOUND {
            return Err(self.bucket_error(format!(
                "checking the bucket failed: http {status}{}",
                s3_error_suffix(&body)
            )));
        }
        if !create {
            return Err(Error::BucketNotFound {
                bucket: self.inner.bucket.clone(),
                endpoint: self.inner.endpoint.clone(),
            });
        }
        let body = if self.inner.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.inner.region
            ))
        };
        let (status, text) = self.bucket_request(http::Method::PUT, body).await?;
        if status.is_success() || text.contains("BucketAlreadyOwnedByYou") {
            tracing::info!(bucket = %self.inner.bucket, endpoint = %self.inner.endpoint, "created object store bucket");
            return Ok(());
        }
        Err(Error::BucketCreate {
            bucket: self.inner.bucket.clone(),
            endpoint: self.inner.endpoint.clone(),
            reason: format!("http {status}{}", s3_error_suffix(&text)),
        })
    }

    fn store_uri(&self) -> String {
        format!("minio://{}", self.inner.bucket)
    }

    fn split<'a>(&self, uri: &'a str) -> Option<&'a str> {
        let rest = uri
            .strip_prefix("minio://")
            .or_else(|| uri.strip_prefix("s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        (bucket == self.inner.bucket).then_some(key)
    }

    pub(crate) fn handles(&self, uri: &str) -> bool {
        self.split(uri).is_some()
    }

    fn path(&self, uri: &str) -> Result<ObjPath, Error> {
        let Some(key) = self.split(uri) else {
            return Err(Error::Unsupported {
                uri: uri.to_string(),
                reason: format!("this store keeps artifacts in {} only", self.store_uri()),
            });
        };
        let key = validate_key(uri, key)?;
        ObjPath::parse(key).map_err(|e| Error::InvalidUri {
            uri: uri.to_string(),
            reason: e.to_string(),
        })
    }

    fn store_err(uri: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                uri: uri.to_string(),
            },
            e => {
                crate::count_backend_error();
                Error::Store {
                    uri: uri.to_string(),
                    source: e,
                }
            }
        }
    }

    async fn list(&self, prefix: &ObjPath, uri: &str) -> Result<Vec<ObjPath>, Error> {
        self.inner
            .store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| Self::store_err(uri, e))
    }

    /// Whether any object lies under `prefix/`.
    async fn has_children(&self, prefix: &ObjPath, uri: &str) -> Result<bool, Error> {
        let mut listing = self.inner.store.list(Some(prefix));
        match listing.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(Self::store_err(uri, e)),
        }
    }

    pub(crate) async fn download(&self, uri: &str, local: &Path) -> Result<(), Error> {
        let path = self.path(uri)?;
        match self.inner.store.get(&path).await {
            Ok(res) => return write_stream(res.into_stream(), local, uri).await,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Self::store_err(uri, e)),
        }
        let objects = self.list(&path, uri).await?;
        let mut jobs = Vec::new();
        for location in objects {
            let Some(parts) = location.prefix_match(&path) else {
                continue;
            };
            let mut dst = local.to_path_buf();
            let mut empty = true;
            for part in parts {
                validate_segment(uri, part.as_ref())?;
                dst.push(part.as_ref());
                empty = false;
            }
            if !empty {
                jobs.push((location, dst));
            }
        }
        if jobs.is_empty() {
            return Err(Error::NotFound {
                uri: uri.to_string(),
            });
        }
        stream::iter(jobs)
            .map(|(location, dst)| async move {
                let object_uri = format!("{}/{}", self.store_uri(), location);
                let res = self
                    .inner
                    .store
                    .get(&location)
                    .await
                    .map_err(|e| Self::store_err(&object_uri, e))?;
                write_stream(res.into_stream(), &dst, &object_uri).await
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    pub(crate) async fn upload(
        &self,
        local: &Path,
        uri: &str,
        mode: UploadMode,
    ) -> Result<bool, Error> {
        let path = self.path(uri)?;
        let meta = match tokio::fs::metadata(local).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %local.display(), uri = %uri, "local artifact path does not exist; nothing uploaded");
                return Ok(false);
            }
            Err(e) => return Err(Error::io(local, uri, e)),
        };
        let files: Vec<(PathBuf, ObjPath)> = if meta.is_file() {
            vec![(local.to_path_buf(), path.clone())]
        } else if meta.is_dir() {
            let dir = local.to_path_buf();
            let u = uri.to_string();
            let walked = tokio::task::spawn_blocking(move || walk_files(&dir, false, &u))
                .await
                .map_err(|e| Error::io(local, uri, std::io::Error::other(e)))??;
            let mut files = Vec::with_capacity(walked.len());
            for (abs, rel) in walked {
                for seg in rel.split('/') {
                    validate_segment(uri, seg)?;
                }
                let key = format!("{path}/{rel}");
                let p = ObjPath::parse(&key).map_err(|e| Error::InvalidUri {
                    uri: uri.to_string(),
                    reason: e.to_string(),
                })?;
                files.push((abs, p));
            }
            files
        } else {
            return Err(Error::io(
                local,
                uri,
                std::io::Error::other("not a regular file or directory"),
            ));
        };
        // Replace whatever was at the uri, as the local backend does.
        self.delete(uri).await?;
        stream::iter(files)
            .map(|(src, dst)| async move { self.put_file(&src, dst).await })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        if mode == UploadMode::Move {
            let r = if meta.is_dir() {
                tokio::fs::remove_dir_all(local).await
            } else {
                tokio::fs::remove_file(local).await
            };
            if let Err(e) = r {
                tracing::warn!(path = %local.display(), error = %e, "cannot remove uploaded local artifact");
            }
        }
        Ok(true)
    }

    async fn put_file(&self, src: &Path, dst: ObjPath) -> Result<(), Error> {
        let uri = format!("{}/{}", self.store_uri(), dst);
        let mut file = tokio::fs::File::open(src)
            .await
            .map_err(|e| Error::io(src, &uri, e))?;
        let store: Arc<dyn ObjectStore> = self.inner.store.clone();
        let mut writer = BufWriter::new(store, dst);
        if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(uri = %uri, error = %abort, "cannot abort upload");
            }
            return Err(Error::io(src, &uri, e));
        }
        // A writer whose shutdown failed (the store refused the object, say) is not
        // aborted: `object_store` panics on aborting a writer that was shut down.
        writer.shutdown().await.map_err(|e| Error::io(src, &uri, e))
    }

    pub(crate) async fn read(&self, uri: &str, max_bytes: usize) -> Result<Bytes, Error> {
        let path = self.path(uri)?;
        let res = match self.inner.store.get(&path).await {
            Ok(res) => res,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(if self.has_children(&path, uri).await? {
                    Error::IsDirectory {
                        uri: uri.to_string(),
                    }
                } else {
                    Error::NotFound {
                        uri: uri.to_string(),
                    }
                });
            }
            Err(e) => return Err(Self::store_err(uri, e)),
        };
        let size = res.meta.size;
        if size > max_bytes as u64 {
            return Err(Error::TooLarge {
                uri: uri.to_string(),
                size,
                limit: max_bytes,
            });
        }
        let mut buf = BytesMut::with_capacity(size as usize);
        let mut body = res.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Self::store_err(uri, e))?;
            if buf.len() + chunk.len() > max_bytes {
                return Err(Error::TooLarge {
                    uri: uri.to_string(),
                    size: (buf.len() + chunk.len()) as u64,
                    limit: max_bytes,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    pub(crate) async fn list_directory(&self, uri: &str) -> Result<Vec<DirectoryEntry>, Error> {
        let path = self.path(uri)?;
        let objects: Vec<object_store::ObjectMeta> = self
            .inner
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| Self::store_err(uri, e))?;
        let mut entries = Vec::with_capacity(objects.len());
        for meta in objects {
            let Some(parts) = meta.location.prefix_match(&path) else {
                continue;
            };
            let mut segments = Vec::new();
            for part in parts {
                validate_segment(uri, part.as_ref())?;
                segments.push(part.as_ref().to_string());
            }
            if !segments.is_empty() {
                entries.push(DirectoryEntry {
                    path: segments.join("/"),
                    size: meta.size,
                });
            }
        }
        if entries.is_empty() {
            return Err(Error::NotFound {
                uri: uri.to_string(),
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    pub(crate) async fn exists(&self, uri: &str) -> Result<bool, Error> {
        let path = self.path(uri)?;
        match self.inner.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => self.has_children(&path, uri).await,
            Err(e) => Err(Self::store_err(uri, e)),
        }
    }

    pub(crate) async fn delete(&self, uri: &str) -> Result<(), Error> {
        let path = self.path(uri)?;
        // The object at the uri itself by a plain DELETE; what lies under it, if
        // anything, in one multi-object delete.
        self.delete_object(&path, uri).await?;
        let locations = self.list(&path, uri).await?;
        if locations.is_empty() {
            return Ok(());
        }
        let results: Vec<_> = self
            .inner
            .store
            .delete_stream(stream::iter(locations.into_iter().map(Ok)).boxed())
            .collect()
            .await;
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::store_err(uri, e)),
            }
        }
        Ok(())
    }
}

/// Writes a response body to a fresh file at `local` (an existing file or link there is
/// removed first); a partly written file is removed on error.
async fn write_stream(
    mut body: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    local: &Path,
    uri: &str,
) -> Result<(), Error> {
    if let Some(parent) = local.parent() {
        if !parent.as_os_str().is_empty() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, uri, e))?;
        }
    }
    if let Ok(m) = tokio::fs::symlink_metadata(local).await {
        if !m.is_dir() {
            tokio::fs::remove_file(local)
                .await
                .map_err(|e| Error::io(local, uri, e))?;
        }
    }
    let mut file = tokio::fs::File::create(local)
        .await
        .map_err(|e| Error::io(local, uri, e))?;
    let result = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| S3Store::store_err(uri, e))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::io(local, uri, e))?;
        }
        file.flush().await.map_err(|e| Error::io(local, uri, e))
    }
    .await;
    if result.is_err() {
        drop(file);
        let _ = tokio::fs::remove_file(local).await;
    }
    result
}

/// ` (Code: Message)` from an S3 XML error body, or nothing.
fn s3_error_suffix(body: &str) -> String {
    let tag = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&close)? + start;
        Some(body[start..end].trim().to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        _ => String::new(),
    }
}
