//! The service-account token a caller inside the cluster shows the API server in
//! multi-user mode: a projected token of audience `pipelines.kubeflow.org` at the
//! path `KF_PIPELINES_SA_TOKEN_PATH` names, as upstream's SDK reads it. Task pods
//! (`kfpd driver`, `kfpd launcher`) and `kfpd agent` send it as `Authorization:
//! Bearer …`. It is read again for every call: the kubelet replaces the file
//! before the token expires.

use std::path::{Path, PathBuf};

/// The variable naming the token file (upstream's SDK reads the same one).
pub const TOKEN_PATH_ENV: &str = "KF_PIPELINES_SA_TOKEN_PATH";

/// Why the configured token could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the service-account token at {path} ({TOKEN_PATH_ENV}): {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("the service-account token at {path} ({TOKEN_PATH_ENV}) is empty")]
    Empty { path: String },
    #[error(
        "the service-account token at {path} ({TOKEN_PATH_ENV}) holds characters a header cannot carry"
    )]
    Invalid { path: String },
}

/// Where the token is, if anywhere. Without a path nothing is sent (single-user
/// mode, or a caller outside the cluster).
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    path: Option<PathBuf>,
}

impl TokenFile {
    /// An empty path counts as none.
    pub fn new(path: Option<PathBuf>) -> TokenFile {
        TokenFile {
            path: path.filter(|path| !path.as_os_str().is_empty()),
        }
    }

    /// The path `KF_PIPELINES_SA_TOKEN_PATH` names.
    pub fn from_env() -> TokenFile {
        TokenFile::new(std::env::var_os(TOKEN_PATH_ENV).map(PathBuf::from))
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The `Authorization` header value (`Bearer <token>`), read now; `None`
    /// without a configured path. A configured file that cannot be read is an
    /// error, never a call without identity.
    pub fn authorization(&self) -> Result<Option<http::HeaderValue>, TokenError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Unreadable {
            path: shown.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty { path: shown });
        }
        let mut value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| TokenError::Invalid { path: shown })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_on_every_call_and_refuses_a_missing_or_empty_one() {
        assert!(TokenFile::new(None).authorization().unwrap().is_none());
        assert!(TokenFile::new(Some(PathBuf::new()))
            .authorization()
            .unwrap()
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let file = TokenFile::new(Some(path.clone()));
        let missing = file.authorization().unwrap_err().to_string();
        assert!(
            missing.contains("cannot read the service-account token at"),
            "{missing}"
        );
        assert!(missing.contains(TOKEN_PATH_ENV), "{missing}");
        std::fs::write(&path, "\n").unwrap();
        assert!(file
            .authorization()
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(file.authorization().unwrap().unwrap(), "Bearer first");
        // The kubelet rotates the token: the next call sends the new one.
        std::fs::write(&path, "second").unwrap();
        assert_eq!(file.authorization().unwrap().unwrap(), "Bearer second");
        std::fs::write(&path, "bad\u{1}token").unwrap();
        assert!(file
            .authorization()
            .unwrap_err()
            .to_string()
            .contains("characters a header cannot carry"));
    }
}
