//! Getting the pipeline text out of an upload: a plain YAML/JSON file, a zip
//! archive or a gzip-compressed tarball, following the KFP API server's rules.

use std::cell::Cell;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use crate::error::Error;
use crate::package::MAX_PACKAGE_SIZE;

/// The pipeline text found in an upload, with the syntax to parse it as.
#[derive(Debug)]
pub(crate) enum Text {
    /// YAML (possibly several documents; JSON is accepted too).
    Yaml(Vec<u8>),
    /// A `.json` file: exactly one JSON object.
    Json(Vec<u8>),
}

/// The member a pipeline archive is expected to contain.
const PIPELINE_MEMBER: &str = "pipeline.yaml";

fn has_suffix(name: &str, suffixes: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    suffixes.iter().any(|s| lower.ends_with(s))
}

fn is_yaml_name(name: &str) -> bool {
    has_suffix(name, &[".yaml", ".yml"])
}

fn is_pipeline_member(name: &str) -> bool {
    name == PIPELINE_MEMBER || name.strip_prefix("./") == Some(PIPELINE_MEMBER)
}

fn too_large(size: u64) -> Error {
    Error::TooLarge {
        size,
        limit: MAX_PACKAGE_SIZE as u64,
    }
}

/// Picks the pipeline text out of an upload.
///
/// The file name decides first (`.yaml`, `.yml`, `.json` are taken as text), as
/// upstream does, except that content which is unmistakably a zip or gzip
/// archive is unpacked even under a text name. Otherwise the content's
/// signature decides: `PK` is a zip, `1F 8B` a tar.gz; anything else is refused.
pub(crate) fn extract(file_name: &str, bytes: &[u8]) -> Result<Text, Error> {
    if bytes.len() > MAX_PACKAGE_SIZE {
        return Err(too_large(bytes.len() as u64));
    }
    let zip_signature = bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06");
    let gzip_signature = bytes.starts_with(&[0x1f, 0x8b]);
    let binary = zip_signature || gzip_signature;
    if !binary && is_yaml_name(file_name) {
        return Ok(Text::Yaml(bytes.to_vec()));
    }
    if !binary && has_suffix(file_name, &[".json"]) {
        return Ok(Text::Json(bytes.to_vec()));
    }
    if bytes.starts_with(b"PK") {
        return unzip(bytes).map(Text::Yaml);
    }
    if gzip_signature {
        return untar(bytes).map(Text::Yaml);
    }
    Err(Error::UnsupportedFormat {
        file_name: file_name.to_string(),
    })
}

/// Reads at most the size limit from `reader`.
fn read_limited(reader: impl Read) -> io::Result<Result<Vec<u8>, Error>> {
    let mut out = Vec::new();
    reader
        .take(MAX_PACKAGE_SIZE as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > MAX_PACKAGE_SIZE {
        return Ok(Err(too_large(out.len() as u64)));
    }
    Ok(Ok(out))
}

fn unzip(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let zip_err =
        |what: &str, e: &dyn std::fmt::Display| Error::Archive(format!("zip archive: {what}: {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| zip_err("not a valid zip file", &e))?;
    if archive.is_empty() {
        return Err(Error::Archive("zip archive is empty".into()));
    }
    let mut chosen: Option<usize> = None;
    let mut first_file: Option<usize> = None;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| zip_err("cannot read the member list", &e))?;
        if entry.is_dir() {
            continue;
        }
        if is_pipeline_member(entry.name()) {
            chosen = Some(index);
            break;
        }
        first_file.get_or_insert(index);
    }
    let index = chosen
        .or(first_file)
        .ok_or_else(|| Error::Archive("zip archive contains no file".into()))?;
    let mut entry = archive
        .by_index(index)
        .map_err(|e| zip_err("cannot open its pipeline file", &e))?;
    let name = entry.name().to_string();
    if !is_yaml_name(&name) {
        return Err(Error::Archive(format!(
            "zip archive: expected a member named {PIPELINE_MEMBER} or a .yaml/.yml file as the first \
             member, found {name:?}"
        )));
    }
    if entry.size() > MAX_PACKAGE_SIZE as u64 {
        return Err(too_large(entry.size()));
    }
    read_limited(&mut entry).map_err(|e| zip_err(&format!("cannot read {name:?}"), &e))?
}

/// Counts bytes read through it and fails once more than `limit` were read, so
/// a small tarball cannot make the server decompress gigabytes.
struct Budget<R> {
    inner: R,
    used: Rc<Cell<u64>>,
    limit: u64,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let used = self.used.get() + n as u64;
        self.used.set(used);
        if used > self.limit {
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        Ok(n)
    }
}

fn untar(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    // Headers and padding add to the members' sizes; allow some room for them.
    let limit = 2 * MAX_PACKAGE_SIZE as u64;
    let used = Rc::new(Cell::new(0));
    let reader = Budget {
        inner: flate2::read::GzDecoder::new(bytes),
        used: Rc::clone(&used),
        limit,
    };
    let tar_err = |e: io::Error| {
        if used.get() > limit {
            too_large(used.get())
        } else {
            Error::Archive(format!(
                "tar.gz archive: not a valid gzip-compressed tarball: {e}"
            ))
        }
    };
    let mut archive = tar::Archive::new(reader);
    let mut first: Option<(String, Vec<u8>)> = None;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map(|p| display_path(&p)).map_err(tar_err)?;
        let pipeline = is_pipeline_member(&name);
        if !pipeline && first.is_some() {
            continue;
        }
        let content = read_limited(&mut entry).map_err(tar_err)??;
        if pipeline {
            return Ok(content);
        }
        first = Some((name, content));
    }
    let (name, content) =
        first.ok_or_else(|| Error::Archive("tar.gz archive contains no file".into()))?;
    if !is_yaml_name(&name) {
        return Err(Error::Archive(format!(
            "tar.gz archive: expected a member named {PIPELINE_MEMBER} or a .yaml/.yml file as the \
             first file, found {name:?}"
        )));
    }
    Ok(content)
}

fn display_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut out);
            for (name, data) in members {
                if name.ends_with('/') {
                    w.add_directory(*name, zip::write::SimpleFileOptions::default())
                        .unwrap();
                    continue;
                }
                w.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                w.write_all(data).unwrap();
            }
            w.finish().unwrap();
        }
        out.into_inner()
    }

    pub(crate) fn tgz_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            if name.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
            } else {
                header.set_size(data.len() as u64);
            }
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn yaml(text: Text) -> Vec<u8> {
        match text {
            Text::Yaml(b) => b,
            Text::Json(_) => panic!("expected YAML"),
        }
    }

    #[test]
    fn text_files_by_name() {
        assert!(matches!(extract("p.yaml", b"a: 1").unwrap(), Text::Yaml(_)));
        assert!(matches!(extract("p.YML", b"a: 1").unwrap(), Text::Yaml(_)));
        assert!(matches!(extract("p.json", b"{}").unwrap(), Text::Json(_)));
        let err = extract("p.txt", b"a: 1").unwrap_err();
        assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("unexpected pipeline file format"));
    }

    #[test]
    fn zip_prefers_pipeline_yaml() {
        let z = zip_of(&[("other.yaml", b"a: 1"), ("pipeline.yaml", b"b: 2")]);
        assert_eq!(yaml(extract("x.zip", &z).unwrap()), b"b: 2");
        let z = zip_of(&[
            ("dir/", b""),
            ("first.yml", b"a: 1"),
            ("second.yaml", b"b: 2"),
        ]);
        assert_eq!(yaml(extract("x.zip", &z).unwrap()), b"a: 1");
        // Mislabelled archives are still unpacked.
        assert_eq!(yaml(extract("x.yaml", &z).unwrap()), b"a: 1");
    }

    #[test]
    fn zip_errors() {
        let z = zip_of(&[("readme.txt", b"hi"), ("p.yaml", b"a: 1")]);
        let err = extract("x.zip", &z).unwrap_err().to_string();
        assert!(err.contains("found \"readme.txt\""), "{err}");
        let z = zip_of(&[]);
        assert_eq!(
            extract("x.zip", &z).unwrap_err().to_string(),
            "zip archive is empty"
        );
        let err = extract("x.zip", b"PK garbage").unwrap_err().to_string();
        assert!(
            err.starts_with("zip archive: not a valid zip file"),
            "{err}"
        );
    }

    #[test]
    fn tarball_prefers_pipeline_yaml() {
        let t = tgz_of(&[("a.yaml", b"a: 1"), ("pipeline.yaml", b"b: 2")]);
        assert_eq!(yaml(extract("x.tar.gz", &t).unwrap()), b"b: 2");
        let t = tgz_of(&[("d/", b""), ("a.yaml", b"a: 1"), ("b.yaml", b"b: 2")]);
        assert_eq!(yaml(extract("x.tgz", &t).unwrap()), b"a: 1");
    }

    #[test]
    fn tarball_errors() {
        let t = tgz_of(&[("a.txt", b"a: 1"), ("b.yaml", b"b: 2")]);
        let err = extract("x.tar.gz", &t).unwrap_err().to_string();
        assert!(err.contains("found \"a.txt\""), "{err}");
        let t = tgz_of(&[]);
        let err = extract("x.tar.gz", &t).unwrap_err().to_string();
        assert_eq!(err, "tar.gz archive contains no file");
        let err = extract("x.tar.gz", &[0x1f, 0x8b, 0, 1, 2])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tar.gz archive: not a valid"), "{err}");
    }

    #[test]
    fn size_limit() {
        let big = vec![b' '; MAX_PACKAGE_SIZE + 1];
        assert!(matches!(
            extract("p.yaml", &big),
            Err(Error::TooLarge { .. })
        ));
        // A small tarball that expands past the limit.
        let zeros = vec![b'#'; MAX_PACKAGE_SIZE + 10];
        let t = tgz_of(&[("pipeline.yaml", &zeros)]);
        assert!(t.len() < MAX_PACKAGE_SIZE);
        assert!(matches!(
            extract("x.tar.gz", &t),
            Err(Error::TooLarge { .. })
        ));
        let z = zip_of(&[("pipeline.yaml", &zeros)]);
        assert!(matches!(extract("x.zip", &z), Err(Error::TooLarge { .. })));
    }
}
