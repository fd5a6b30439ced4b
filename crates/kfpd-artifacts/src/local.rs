//! The local-directory backend.
//!
//! Objects are regular files under the root; a key `a/b/c` is the file `<root>/a/b/c`. On a
//! filesystem a key cannot be both an object and a prefix (S3 allows `a` and `a/b` side by
//! side); uploading one over the other replaces it.
//!
//! Copies use `std::fs::copy`, which on Linux is `copy_file_range`: the kernel copies (or, on
//! copy-on-write filesystems such as btrfs and XFS, shares extents) without passing the data
//! through user space. Downloads are always such copies, never hard links, so a task that
//! writes into its inputs cannot alter the store. Uploads copy too by default. With
//! [`UploadMode::Move`] a regular file with a single link is renamed into the store when it is
//! on the same filesystem: no data moves, and since the local name is gone nothing in the
//! task's directory still refers to the stored object. Files with more than one link are
//! copied, since another name could still be used to write to them.
//!
//! Writes are staged under a hidden name (`.kfpd-staging-*`) next to the target and renamed
//! into place, so readers never see a partly written object.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::{validate_key, validate_segment, DirectoryEntry, Error};

/// How [`crate::ArtifactStore::upload_with`] treats the local path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadMode {
    /// Leave the local path as it is.
    #[default]
    Copy,
    /// Give the local files to the store and remove the local path afterwards. On the local
    /// backend, regular files on the same filesystem are renamed instead of copied.
    Move,
}

const STAGING_PREFIX: &str = ".kfpd-staging-";

#[derive(Clone)]
pub(crate) struct LocalStore {
    root: PathBuf,
    /// `file://<root>/`, the prefix every URI of this store starts with.
    prefix: String,
}

async fn blocking<T, F>(uri: &str, path: &Path, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(Error::io(path, uri, io::Error::other(e))),
    }
}

impl LocalStore {
    pub(crate) async fn open(root: PathBuf) -> Result<LocalStore, Error> {
        let r = root.clone();
        blocking("", &root, move || {
            fs::create_dir_all(&r).map_err(|e| Error::io(&r, "", e))?;
            let root = fs::canonicalize(&r).map_err(|e| Error::io(&r, "", e))?;
            let Some(s) = root.to_str() else {
                return Err(Error::Config(format!(
                    "artifact root {} is not valid UTF-8",
                    root.display()
                )));
            };
            let prefix = format!("file://{}/", s.trim_end_matches('/'));
            Ok(LocalStore { root, prefix })
        })
        .await
    }

    /// The whole filesystem: `file:///<absolute path>` for any path, for pipeline roots
    /// outside the default one.
    pub(crate) fn filesystem() -> LocalStore {
        LocalStore {
            root: PathBuf::from("/"),
            prefix: "file:///".to_string(),
        }
    }

    /// The root as an absolute path without a trailing `/` (empty for `/`).
    pub(crate) fn root_path(&self) -> String {
        self.prefix
            .trim_start_matches("file://")
            .trim_end_matches('/')
            .to_string()
    }

    pub(crate) fn root_uri(&self) -> String {
        let p = self.prefix.trim_end_matches('/');
        if p == "file://" {
            "file:///".to_string()
        } else {
            p.to_string()
        }
    }

    pub(crate) fn handles(&self, uri: &str) -> bool {
        uri.starts_with(&self.prefix) || uri == self.root_uri()
    }

    fn key<'a>(&self, uri: &'a str) -> Result<&'a str, Error> {
        let Some(rest) = uri.strip_prefix(&self.prefix) else {
            return Err(Error::Unsupported {
                uri: uri.to_string(),
                reason: format!("this store keeps artifacts under {} only", self.root_uri()),
            });
        };
        validate_key(uri, rest)
    }

    fn path(&self, uri: &str) -> Result<PathBuf, Error> {
        let key = self.key(uri)?;
        let mut p = self.root.clone();
        for seg in key.split('/') {
            p.push(seg);
        }
        Ok(p)
    }

    pub(crate) async fn download(&self, uri: &str, local: &Path) -> Result<(), Error> {
        let src = self.path(uri)?;
        let local = local.to_path_buf();
        let u = uri.to_string();
        blocking(uri, &src.clone(), move || {
            let meta = match fs::metadata(&src) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::NotFound { uri: u })
                }
                Err(e) => return Err(Error::io(&src, &u, e)),
            };
            if meta.is_file() {
                ensure_parent(&local, &u)?;
                return copy_file(&src, &local, &u);
            }
            let files = walk_files(&src, true, &u)?;
            if files.is_empty() {
                return Err(Error::NotFound { uri: u });
            }
            for (abs, rel) in files {
                let dst = join_rel(&local, &rel);
                ensure_parent(&dst, &u)?;
                copy_file(&abs, &dst, &u)?;
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn upload(
        &self,
        local: &Path,
        uri: &str,
        mode: UploadMode,
    ) -> Result<bool, Error> {
        let target = self.path(uri)?;
        let local = local.to_path_buf();
        let u = uri.to_string();
        blocking(uri, &target.clone(), move || {
            let meta = match fs::metadata(&local) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(path = %local.display(), uri = %u, "local artifact path does not exist; nothing uploaded");
                    return Ok(false);
                }
                Err(e) => return Err(Error::io(&local, &u, e)),
            };
            if !meta.is_file() && !meta.is_dir() {
                return Err(Error::io(
                    &local,
                    &u,
                    io::Error::other("not a regular file or directory"),
                ));
            }
            let parent = target.parent().unwrap_or(&target).to_path_buf();
            fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, &u, e))?;
            let staging = parent.join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple()));
            let staged = if meta.is_file() {
                transfer(&local, &staging, mode, &u)
            } else {
                stage_dir(&local, &staging, mode, &u)
            };
            if let Err(e) = staged {
                remove_any(&staging);
                return Err(e);
            }
            if let Err(e) = replace(&staging, &target, &u) {
                remove_any(&staging);
                return Err(e);
            }
            if mode == UploadMode::Move {
                remove_any(&local);
            }
            Ok(true)
        })
        .await
    }

    pub(crate) async fn read(&self, uri: &str, max_bytes: usize) -> Result<Bytes, Error> {
        let src = self.path(uri)?;
        let u = uri.to_string();
        blocking(uri, &src.clone(), move || {
            let meta = match fs::metadata(&src) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::NotFound { uri: u })
                }
                Err(e) => return Err(Error::io(&src, &u, e)),
            };
            if meta.is_dir() {
                return if dir_has_file(&src, &u)? {
                    Err(Error::IsDirectory { uri: u })
                } else {
                    Err(Error::NotFound { uri: u })
                };
            }
            if meta.len() > max_bytes as u64 {
                return Err(Error::TooLarge {
                    uri: u,
                    size: meta.len(),
                    limit: max_bytes,
                });
            }
            let file = fs::File::open(&src).map_err(|e| Error::io(&src, &u, e))?;
            let mut buf = Vec::with_capacity(meta.len() as usize);
            file.take(max_bytes as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(&src, &u, e))?;
            if buf.len() > max_bytes {
                return Err(Error::TooLarge {
                    uri: u,
                    size: buf.len() as u64,
                    limit: max_bytes,
                });
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    pub(crate) async fn list_directory(&self, uri: &str) -> Result<Vec<DirectoryEntry>, Error> {
        let dir = self.path(uri)?;
        let u = uri.to_string();
        blocking(uri, &dir.clone(), move || {
            match fs::metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(Error::NotFound { uri: u }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::NotFound { uri: u })
                }
                Err(e) => return Err(Error::io(&dir, &u, e)),
            }
            let mut entries = Vec::new();
            for (abs, rel) in walk_files(&dir, true, &u)? {
                let meta = fs::metadata(&abs).map_err(|e| Error::io(&abs, &u, e))?;
                entries.push(DirectoryEntry {
                    path: rel,
                    size: meta.len(),
                });
            }
            if entries.is_empty() {
                return Err(Error::NotFound { uri: u });
            }
            Ok(entries)
        })
        .await
    }

    pub(crate) async fn exists(&self, uri: &str) -> Result<bool, Error> {
        let src = self.path(uri)?;
        let u = uri.to_string();
        blocking(uri, &src.clone(), move || match fs::metadata(&src) {
            Ok(m) if m.is_dir() => dir_has_file(&src, &u),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&src, &u, e)),
        })
        .await
    }

    pub(crate) async fn delete(&self, uri: &str) -> Result<(), Error> {
        let target = self.path(uri)?;
        let u = uri.to_string();
        blocking(uri, &target.clone(), move || {
            let r = match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&target),
                Ok(_) => fs::remove_file(&target),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(&target, &u, e)),
            }
        })
        .await
    }
}

fn join_rel(base: &Path, rel: &str) -> PathBuf {
    let mut p = base.to_path_buf();
    for seg in rel.split('/') {
        p.push(seg);
    }
    p
}

fn ensure_parent(path: &Path, uri: &str) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, uri, e))?;
        }
    }
    Ok(())
}

/// Copies `src` to a fresh `dst`: an existing file (or symbolic link) at `dst` is removed
/// first, so the copy never writes through a link the task left there.
fn copy_file(src: &Path, dst: &Path, uri: &str) -> Result<(), Error> {
    if let Ok(m) = fs::symlink_metadata(dst) {
        if !m.is_dir() {
            fs::remove_file(dst).map_err(|e| Error::io(dst, uri, e))?;
        }
    }
    fs::copy(src, dst).map_err(|e| Error::io(src, uri, e))?;
    Ok(())
}

/// Puts the local file `src` at the new path `dst`, by rename when allowed, else by copy.
fn transfer(src: &Path, dst: &Path, mode: UploadMode, uri: &str) -> Result<(), Error> {
    if mode == UploadMode::Move {
        if let Ok(m) = fs::symlink_metadata(src) {
            if m.file_type().is_file() && m.nlink() == 1 {
                match fs::rename(src, dst) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {}
                    Err(e) => return Err(Error::io(src, uri, e)),
                }
            }
        }
    }
    fs::copy(src, dst).map_err(|e| Error::io(src, uri, e))?;
    Ok(())
}

fn stage_dir(local: &Path, staging: &Path, mode: UploadMode, uri: &str) -> Result<(), Error> {
    fs::create_dir(staging).map_err(|e| Error::io(staging, uri, e))?;
    for (abs, rel) in walk_files(local, false, uri)? {
        for seg in rel.split('/') {
            validate_segment(uri, seg)?;
        }
        let dst = join_rel(staging, &rel);
        ensure_parent(&dst, uri)?;
        transfer(&abs, &dst, mode, uri)?;
    }
    Ok(())
}

/// Renames `staging` to `target`, replacing what is there.
fn replace(staging: &Path, target: &Path, uri: &str) -> Result<(), Error> {
    let staged_is_file = fs::symlink_metadata(staging)
        .map(|m| m.is_file())
        .unwrap_or(false);
    match fs::symlink_metadata(target) {
        // rename(2) replaces a file atomically.
        Ok(m) if m.is_file() && staged_is_file => {}
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(target).map_err(|e| Error::io(target, uri, e))?;
        }
        Ok(_) => fs::remove_file(target).map_err(|e| Error::io(target, uri, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(target, uri, e)),
    }
    fs::rename(staging, target).map_err(|e| Error::io(target, uri, e))
}

fn remove_any(path: &Path) {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return,
    };
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove");
    }
}

/// Every file under `dir`, with its path relative to `dir` (`/`-separated), sorted.
/// Symbolic links to files count as files; links to directories and dangling links are
/// skipped with a warning. With `skip_staging`, entries named `.kfpd-staging-*` are left out.
pub(crate) fn walk_files(
    dir: &Path,
    skip_staging: bool,
    uri: &str,
) -> Result<Vec<(PathBuf, String)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries = fs::read_dir(&path).map_err(|e| Error::io(&path, uri, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&path, uri, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(Error::io(
                    &entry.path(),
                    uri,
                    io::Error::new(io::ErrorKind::InvalidData, "file name is not valid UTF-8"),
                ));
            };
            if skip_staging && name.starts_with(STAGING_PREFIX) {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let child = entry.path();
            let ft = entry.file_type().map_err(|e| Error::io(&child, uri, e))?;
            if ft.is_dir() {
                stack.push((child, child_rel));
            } else if ft.is_file() {
                out.push((child, child_rel));
            } else if ft.is_symlink() {
                match fs::metadata(&child) {
                    Ok(m) if m.is_file() => out.push((child, child_rel)),
                    Ok(_) => {
                        tracing::warn!(path = %child.display(), "skipping symbolic link to a directory")
                    }
                    Err(e) => {
                        tracing::warn!(path = %child.display(), error = %e, "skipping dangling symbolic link")
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn dir_has_file(dir: &Path, uri: &str) -> Result<bool, Error> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, uri, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&path, uri, e))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                continue;
            }
            let ft = entry.file_type().map_err(|e| Error::io(&path, uri, e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
