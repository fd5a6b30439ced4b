//! A directory artifact for the `:read` endpoint, which returns one blob: a gzip'd
//! tar of the directory's files, paths relative to the directory.

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use kfpd_artifacts::ArtifactStore;

use crate::error::{Code, Error, Result};

/// Reads every file of the directory artifact at `uri` and packs them. The files
/// together (and the archive) may be at most `limit` bytes; `mtime` is given to
/// every entry (the artifact's creation time), so equal content gives equal bytes.
pub(super) async fn directory_archive(
    store: &ArtifactStore,
    uri: &str,
    limit: usize,
    mtime: u64,
) -> Result<Bytes> {
    let entries = store
        .list_directory(uri)
        .await
        .map_err(|error| unreadable(uri, &error))?;
    let total: u64 = entries.iter().map(|entry| entry.size).sum();
    if total > limit as u64 {
        let what = format!("the directory's {} files are {total} bytes", entries.len());
        return Err(too_large(uri, &what, limit));
    }
    let base = uri.trim_end_matches('/');
    let mut files = Vec::with_capacity(entries.len());
    let mut left = limit;
    for entry in entries {
        let file_uri = format!("{base}/{}", entry.path);
        let content = store
            .read(&file_uri, left)
            .await
            .map_err(|error| unreadable(uri, &error))?;
        left = left.saturating_sub(content.len());
        files.push((entry.path, content));
    }
    let count = files.len();
    let packed = tokio::task::spawn_blocking(move || pack(&files, mtime))
        .await
        .map_err(|error| Error::internal(format!("packing artifact {uri} failed: {error}")))?
        .map_err(|error| Error::internal(format!("packing artifact {uri} failed: {error}")))?;
    if packed.len() > limit {
        let what = format!(
            "the archive of the directory's {count} files is {} bytes",
            packed.len()
        );
        return Err(too_large(uri, &what, limit));
    }
    Ok(Bytes::from(packed))
}

fn pack(files: &[(String, Bytes)], mtime: u64) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        archive.append_data(&mut header, path, &content[..])?;
    }
    archive.into_inner()?.finish()
}

fn unreadable(uri: &str, error: &kfpd_artifacts::Error) -> Error {
    Error::new(
        Code::FailedPrecondition,
        format!("cannot read artifact {uri}: {error}"),
    )
}

fn too_large(uri: &str, what: &str, limit: usize) -> Error {
    Error::new(
        Code::FailedPrecondition,
        format!(
            "cannot read artifact {uri}: {what}, more than the limit of {limit} bytes \
             for reading an artifact through the api"
        ),
    )
}
