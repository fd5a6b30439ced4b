//! Where a pipeline root or an artifact URI points (a local path, or a key prefix in a
//! bucket), so that roots can be checked against a list and URIs sent to the right store.

use crate::{validate_key, Error};

/// Which pipeline roots a store serves besides its default root (and what lies under it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Roots {
    /// Only the default root: URIs anywhere else are refused.
    #[default]
    DefaultOnly,
    /// Any absolute local path, and any bucket of the configured S3 endpoint.
    Any,
    /// These roots and what lies under them: absolute paths, `file:///…`, `s3://` or
    /// `minio://bucket[/prefix]`.
    Listed(Vec<String>),
}

/// A parsed root or URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// An absolute local path without a trailing `/`; empty for the filesystem root.
    Path(String),
    /// A key prefix in a bucket of the configured endpoint; empty for the whole bucket.
    Bucket { bucket: String, key: String },
}

/// Why a text is not a location.
pub(crate) enum Refusal {
    /// Not a kind of location kfpd stores artifacts in.
    Unsupported(String),
    /// The right kind, but malformed (traversal, empty segments, …).
    Invalid(String),
}

impl Refusal {
    pub(crate) fn reason(self) -> String {
        match self {
            Refusal::Unsupported(reason) | Refusal::Invalid(reason) => reason,
        }
    }

    pub(crate) fn into_error(self, uri: &str) -> Error {
        match self {
            Refusal::Unsupported(reason) => Error::Unsupported {
                uri: uri.to_string(),
                reason,
            },
            Refusal::Invalid(reason) => Error::InvalidUri {
                uri: uri.to_string(),
                reason,
            },
        }
    }
}

const KINDS: &str = "an absolute path, a file:/// URI, or an s3:// or minio:// bucket";

impl Location {
    /// Parses an absolute path, `file:///path`, `s3://bucket[/key]` or `minio://bucket[/key]`.
    /// One or more trailing `/` are ignored.
    pub(crate) fn parse(text: &str) -> Result<Location, Refusal> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(Refusal::Invalid(
                    "a file:// URI needs an absolute path (file:///dir), not a host".into(),
                ));
            }
            return path_location(text, path);
        }
        if text.starts_with('/') {
            return path_location(text, text);
        }
        let bucket_and_key = text
            .strip_prefix("s3://")
            .or_else(|| text.strip_prefix("minio://"));
        let Some(rest) = bucket_and_key else {
            return Err(match text.split_once("://") {
                Some((scheme, _)) => Refusal::Unsupported(format!(
                    "{scheme}:// is not served by kfpd, which stores artifacts under {KINDS}"
                )),
                None => Refusal::Unsupported(format!("must be {KINDS}")),
            });
        };
        let rest = rest.trim_end_matches('/');
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = !bucket.is_empty()
            && bucket
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'));
        if !bucket_ok {
            return Err(Refusal::Invalid(format!(
                "{bucket:?} is not a bucket name (letters, digits, '.', '-', '_')"
            )));
        }
        if !key.is_empty() {
            checked_key(text, key)?;
        }
        Ok(Location::Bucket {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// Whether `other` is this location or lies under it, segment by segment
    /// (`/data` holds `/data/x`, not `/database`).
    pub(crate) fn contains(&self, other: &Location) -> bool {
        match (self, other) {
            (Location::Path(outer), Location::Path(inner)) => under(outer, inner),
            (
                Location::Bucket { bucket, key },
                Location::Bucket {
                    bucket: other_bucket,
                    key: other_key,
                },
            ) => bucket == other_bucket && under(key, other_key),
            _ => false,
        }
    }
}

fn under(outer: &str, inner: &str) -> bool {
    outer.is_empty()
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn path_location(text: &str, path: &str) -> Result<Location, Refusal> {
    let path = path.trim_end_matches('/');
    if let Some(relative) = path.strip_prefix('/') {
        checked_key(text, relative)?;
    }
    Ok(Location::Path(path.to_string()))
}

fn checked_key(text: &str, key: &str) -> Result<(), Refusal> {
    match validate_key(text, key) {
        Ok(_) => Ok(()),
        Err(Error::InvalidUri { reason, .. }) => Err(Refusal::Invalid(reason)),
        Err(other) => Err(Refusal::Invalid(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Location {
        match Location::parse(text) {
            Ok(location) => location,
            Err(refusal) => panic!("{text}: {}", refusal.reason()),
        }
    }

    #[test]
    fn paths_and_buckets() {
        assert_eq!(parse("/data/x/"), Location::Path("/data/x".into()));
        assert_eq!(parse("file:///data/x"), Location::Path("/data/x".into()));
        assert_eq!(parse("/"), Location::Path(String::new()));
        assert_eq!(
            parse("s3://team/kfp/"),
            Location::Bucket {
                bucket: "team".into(),
                key: "kfp".into()
            }
        );
        assert_eq!(
            parse("minio://team"),
            Location::Bucket {
                bucket: "team".into(),
                key: String::new()
            }
        );
    }

    #[test]
    fn refusals() {
        for (text, unsupported) in [
            ("gs://b/x", true),
            ("relative/dir", true),
            ("https://example.com/x", true),
            ("file://host/x", false),
            ("/data/../etc", false),
            ("/data//x", false),
            ("s3:///x", false),
            ("s3://b/../x", false),
            ("s3://b c/x", false),
        ] {
            match Location::parse(text) {
                Ok(location) => panic!("{text} accepted as {location:?}"),
                Err(Refusal::Unsupported(_)) => assert!(unsupported, "{text}"),
                Err(Refusal::Invalid(_)) => assert!(!unsupported, "{text}"),
            }
        }
    }

    #[test]
    fn containment_is_by_segment() {
        assert!(parse("/data").contains(&parse("/data")));
        assert!(parse("/data").contains(&parse("file:///data/run/x")));
        assert!(!parse("/data").contains(&parse("/database")));
        assert!(parse("/").contains(&parse("/anything")));
        assert!(parse("s3://b").contains(&parse("minio://b/k/x")));
        assert!(parse("s3://b/k").contains(&parse("s3://b/k/x")));
        assert!(!parse("s3://b/k").contains(&parse("s3://b/kx")));
        assert!(!parse("s3://b/k").contains(&parse("s3://c/k")));
        assert!(!parse("/b/k").contains(&parse("s3://b/k")));
    }
}
