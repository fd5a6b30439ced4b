//! Which of kfpd's own environment variables task processes inherit: a task gets the
//! environment kfpd was started with, never kfpd's settings or the credentials of its
//! database and object store (the engine moves a task's artifacts itself, so a task
//! needs neither).

use std::ffi::{OsStr, OsString};

/// Prefixes of kfpd's settings and of upstream's database and object store settings.
const SETTING_PREFIXES: &[&str] = &["KFPD_", "DBCONFIG_", "OBJECTSTORECONFIG_"];

/// Upstream's object store Secret keys, which kfpd also reads as variables.
const SECRET_KEY_NAMES: &[&str] = &["accesskey", "secretkey"];

/// The standard variables of cloud credentials. kfpd's object store falls back on
/// them, so on a shared server they are keys to every namespace's artifacts.
const CLOUD_CREDENTIAL_PREFIXES: &[&str] = &["AWS_", "MINIO_"];

/// What a task process may inherit from kfpd's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Inherit {
    /// Everything but kfpd's settings (`KFPD_*`), upstream's database and object store
    /// settings (`DBCONFIG_*`, `OBJECTSTORECONFIG_*`) and `accesskey`/`secretkey`.
    /// A single user's own cloud credentials (`AWS_*`) stay: their components may
    /// read their own data with them, as under `kfp.local`.
    #[default]
    AllButSettings,
    /// Also without cloud credentials (`AWS_*`, `MINIO_*`): multi-user mode, where a
    /// task of one namespace must not hold keys that reach another's artifacts.
    NoCredentials,
}

impl Inherit {
    /// Whether a variable of kfpd's environment reaches task processes.
    pub fn allows(self, name: &OsStr) -> bool {
        let Some(name) = name.to_str() else {
            // None of the withheld names is anything but ASCII.
            return true;
        };
        if SETTING_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            return false;
        }
        if SECRET_KEY_NAMES.contains(&name) {
            return false;
        }
        let is_cloud_credential = CLOUD_CREDENTIAL_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix));
        !(self == Inherit::NoCredentials && is_cloud_credential)
    }

    /// kfpd's environment as task processes get it, before the task's own variables.
    pub fn environment(self) -> Vec<(OsString, OsString)> {
        std::env::vars_os()
            .filter(|(name, _)| self.allows(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_store_keys_never_reach_a_task() {
        for name in [
            "KFPD_DATABASE_URL",
            "KFPD_DB_PASSWORD",
            "DBCONFIG_PASSWORD",
            "DBCONFIG_MYSQLCONFIG_HOST",
            "OBJECTSTORECONFIG_SECRETACCESSKEY",
            "accesskey",
            "secretkey",
        ] {
            for inherit in [Inherit::AllButSettings, Inherit::NoCredentials] {
                assert!(
                    !inherit.allows(OsStr::new(name)),
                    "{name} under {inherit:?}"
                );
            }
        }
    }

    #[test]
    fn cloud_credentials_stay_for_a_single_user_only() {
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "MINIO_ROOT_PASSWORD",
        ] {
            assert!(Inherit::AllButSettings.allows(OsStr::new(name)), "{name}");
            assert!(!Inherit::NoCredentials.allows(OsStr::new(name)), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "PIP_INDEX_URL",
            "E2E_GREETING",
            "AWSOME",
            "KFPDX",
        ] {
            assert!(Inherit::NoCredentials.allows(OsStr::new(name)), "{name}");
        }
    }
}
