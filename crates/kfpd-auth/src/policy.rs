//! Authorization without Kubernetes: a YAML file binding users and groups to
//! roles in namespaces. The file is read again when it changes (its modification
//! time or size, looked at no more than once a second); a file that does not
//! read or parse is logged and the last good policy stays in force.
//!
//! ```yaml
//! roles:                 # optional; viewer, editor and admin are built in
//!   runner: [get, list, create, readLog]
//! bindings:
//!   - namespace: team-a  # "*" binds in every namespace
//!     role: editor
//!     users: [alice@example.com]
//!     groups: [team-a-devs]
//!     resources: [runs, experiments]   # optional; upstream's names, default all
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::{Access, Authorizer, Error, Identity, Resource, Verb};

/// How often the file's metadata is looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What viewers may do: read, never change.
const VIEWER: &[Verb] = &[Verb::Get, Verb::List, Verb::ReadArtifact, Verb::ReadLog];

/// What editors may do: everything a user does to their own work.
const EDITOR: &[Verb] = &[
    Verb::Get,
    Verb::List,
    Verb::ReadArtifact,
    Verb::ReadLog,
    Verb::Create,
    Verb::Update,
    Verb::Delete,
    Verb::Archive,
    Verb::Unarchive,
    Verb::Terminate,
    Verb::Retry,
    Verb::Enable,
    Verb::Disable,
];

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyText {
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    bindings: Vec<BindingText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingText {
    namespace: String,
    role: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    resources: Option<Vec<String>>,
}

/// A checked policy: every role resolved to its verbs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Policy {
    bindings: Vec<Binding>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    /// `None`: every namespace.
    namespace: Option<String>,
    verbs: BTreeSet<&'static str>,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    /// RBAC resource names; `None`: all.
    resources: Option<BTreeSet<String>>,
}

impl Policy {
    /// Parses and checks the text of a policy file; the error names what is wrong.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let parsed: PolicyText = serde_yaml::from_str(text).map_err(|error| error.to_string())?;
        let mut roles: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        roles.insert("viewer".into(), VIEWER.iter().map(|v| v.as_str()).collect());
        roles.insert("editor".into(), EDITOR.iter().map(|v| v.as_str()).collect());
        roles.insert(
            "admin".into(),
            Verb::ALL.iter().map(|verb| verb.as_str()).collect(),
        );
        for (name, verbs) in parsed.roles {
            let mut resolved = BTreeSet::new();
            for verb in &verbs {
                let known = Verb::parse(verb).ok_or_else(|| {
                    format!(
                        "role {name:?}: unknown verb {verb:?} (known: {})",
                        Verb::ALL.map(Verb::as_str).join(", ")
                    )
                })?;
                resolved.insert(known.as_str());
            }
            roles.insert(name, resolved);
        }
        let known_resources: BTreeSet<&str> = Resource::ALL.iter().map(|r| r.as_str()).collect();
        let mut bindings = Vec::new();
        for (index, binding) in parsed.bindings.into_iter().enumerate() {
            let at = format!("binding {} (namespace {:?})", index + 1, binding.namespace);
            let namespace = binding.namespace.trim();
            if namespace.is_empty() {
                return Err(format!("{at}: namespace is empty (use \"*\" for all)"));
            }
            let verbs = roles
                .get(&binding.role)
                .ok_or_else(|| {
                    format!(
                        "{at}: unknown role {:?} (defined: {})",
                        binding.role,
                        roles.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?
                .clone();
            if binding.users.is_empty() && binding.groups.is_empty() {
                return Err(format!("{at}: names no users and no groups"));
            }
            let resources = match binding.resources {
                None => None,
                Some(list) => {
                    for resource in &list {
                        if !known_resources.contains(resource.as_str()) {
                            return Err(format!(
                                "{at}: unknown resource {resource:?} (known: {})",
                                known_resources
                                    .iter()
                                    .copied()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                        }
                    }
                    Some(list.into_iter().collect())
                }
            };
            bindings.push(Binding {
                namespace: (namespace != "*").then(|| namespace.to_string()),
                verbs,
                users: binding.users.into_iter().collect(),
                groups: binding.groups.into_iter().collect(),
                resources,
            });
        }
        Ok(Policy { bindings })
    }

    /// Whether some binding lets `who` make `access`.
    pub fn allows(&self, who: &Identity, access: &Access<'_>) -> bool {
        self.bindings.iter().any(|binding| {
            let in_namespace = binding
                .namespace
                .as_deref()
                .is_none_or(|namespace| namespace == access.namespace);
            let names_caller = binding.users.contains(&who.user)
                || who
                    .groups
                    .iter()
                    .any(|group| binding.groups.contains(group));
            let covers_resource = binding
                .resources
                .as_ref()
                .is_none_or(|resources| resources.contains(access.resource.as_str()));
            in_namespace
                && names_caller
                && covers_resource
                && binding.verbs.contains(access.verb.as_str())
        })
    }
}

/// The policy file and what was last read from it.
pub struct PolicyFile {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// Shared with the checks in progress: a check takes a reference, not a copy.
    policy: Arc<Policy>,
    /// Modification time and size of the file the policy came from (or of the
    /// last bad version, so it is not parsed and logged again until it changes).
    seen: Option<(SystemTime, u64)>,
    checked_at: Instant,
}

impl PolicyFile {
    /// Reads the file; a missing or bad file is an error naming what is wrong.
    pub fn open(path: impl Into<PathBuf>) -> Result<PolicyFile, Error> {
        let path = path.into();
        let seen = stamp(&path).map_err(|error| config_error(&path, &error))?;
        let policy = read(&path).map_err(|error| config_error(&path, &error))?;
        tracing::info!(path = %path.display(), bindings = policy.bindings.len(), "policy file read");
        Ok(PolicyFile {
            path,
            state: Mutex::new(State {
                policy: Arc::new(policy),
                seen: Some(seen),
                checked_at: Instant::now(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policy in force, after reading the file again if it changed.
    pub fn current(&self) -> Arc<Policy> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked_at.elapsed() >= CHECK_EVERY {
            state.checked_at = Instant::now();
            self.reload_if_changed(&mut state);
        }
        Arc::clone(&state.policy)
    }

    /// Reads the file again now if it changed, whatever the time since the last look.
    pub fn refresh(&self) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        state.checked_at = Instant::now();
        self.reload_if_changed(&mut state);
    }

    fn reload_if_changed(&self, state: &mut State) {
        let now = match stamp(&self.path) {
            Ok(now) => now,
            Err(error) => {
                if state.seen.is_some() {
                    tracing::error!(path = %self.path.display(), %error, "policy file cannot be read; keeping the last good policy");
                    state.seen = None;
                }
                return;
            }
        };
        if state.seen == Some(now) {
            return;
        }
        state.seen = Some(now);
        match read(&self.path) {
            Ok(policy) => {
                tracing::info!(path = %self.path.display(), bindings = policy.bindings.len(), "policy file read again");
                state.policy = Arc::new(policy);
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "policy file is not valid; keeping the last good policy");
            }
        }
    }
}

fn config_error(path: &Path, error: &str) -> Error {
    Error::Config(format!("policy file {}: {error}", path.display()))
}

fn stamp(path: &Path) -> Result<(SystemTime, u64), String> {
    let metadata = std::fs::metadata(path).map_err(|error| error.to_string())?;
    let modified = metadata.modified().map_err(|error| error.to_string())?;
    Ok((modified, metadata.len()))
}

fn read(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    Policy::parse(&text)
}

#[async_trait::async_trait]
impl Authorizer for PolicyFile {
    async fn authorize(&self, who: &Identity, access: &Access<'_>) -> Result<bool, Error> {
        Ok(self.current().allows(who, access))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: name.to_string(),
            groups: groups.iter().map(|group| group.to_string()).collect(),
        }
    }

    fn access(namespace: &str, resource: Resource, verb: Verb) -> Access<'_> {
        Access {
            namespace,
            resource,
            verb,
            name: None,
        }
    }

    const TEXT: &str = r#"
roles:
  runner: [get, list, create]
bindings:
  - namespace: team-a
    role: editor
    users: [alice]
  - namespace: team-b
    role: viewer
    groups: [auditors]
  - namespace: "*"
    role: runner
    users: [ci]
    resources: [runs]
"#;

    #[test]
    fn roles_namespaces_groups_and_resources_decide() {
        let policy = Policy::parse(TEXT).unwrap();
        let alice = user("alice", &[]);
        assert!(policy.allows(&alice, &access("team-a", Resource::Runs, Verb::Delete)));
        assert!(!policy.allows(&alice, &access("team-b", Resource::Runs, Verb::Get)));
        assert!(!policy.allows(&alice, &access("team-a", Resource::Runs, Verb::Report)));
        let auditor = user("bob", &["auditors"]);
        assert!(policy.allows(
            &auditor,
            &access("team-b", Resource::Experiments, Verb::List)
        ));
        assert!(!policy.allows(&auditor, &access("team-b", Resource::Runs, Verb::Create)));
        let ci = user("ci", &[]);
        assert!(policy.allows(&ci, &access("anywhere", Resource::Runs, Verb::Create)));
        assert!(!policy.allows(&ci, &access("anywhere", Resource::Experiments, Verb::Get)));
        assert!(!policy.allows(&ci, &access("anywhere", Resource::Runs, Verb::Delete)));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            (
                "bindings: [{namespace: a, role: boss, users: [x]}]",
                "unknown role \"boss\"",
            ),
            ("roles: {r: [fly]}", "unknown verb \"fly\""),
            (
                "bindings: [{namespace: a, role: viewer}]",
                "names no users and no groups",
            ),
            (
                "bindings: [{namespace: '', role: viewer, users: [x]}]",
                "namespace is empty",
            ),
            (
                "bindings: [{namespace: a, role: viewer, users: [x], resources: [cats]}]",
                "unknown resource \"cats\"",
            ),
            (
                "bindings: [{namespace: a, role: viewer, user: [x]}]",
                "unknown field",
            ),
        ] {
            let error = Policy::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[tokio::test]
    async fn the_file_is_read_again_and_a_bad_version_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            "bindings: [{namespace: a, role: viewer, users: [x]}]",
        )
        .unwrap();
        let file = PolicyFile::open(&path).unwrap();
        let x = user("x", &[]);
        assert!(file
            .authorize(&x, &access("a", Resource::Runs, Verb::Get))
            .await
            .unwrap());
        assert!(!file
            .authorize(&x, &access("b", Resource::Runs, Verb::Get))
            .await
            .unwrap());

        std::fs::write(
            &path,
            "bindings: [{namespace: b, role: viewer, users: [x]}]\n",
        )
        .unwrap();
        file.refresh();
        assert!(file
            .authorize(&x, &access("b", Resource::Runs, Verb::Get))
            .await
            .unwrap());
        assert!(!file
            .authorize(&x, &access("a", Resource::Runs, Verb::Get))
            .await
            .unwrap());

        std::fs::write(
            &path,
            "bindings: [{namespace: c, role: nobody, users: [x]}]",
        )
        .unwrap();
        file.refresh();
        assert!(file
            .authorize(&x, &access("b", Resource::Runs, Verb::Get))
            .await
            .unwrap());

        std::fs::remove_file(&path).unwrap();
        file.refresh();
        assert!(file
            .authorize(&x, &access("b", Resource::Runs, Verb::Get))
            .await
            .unwrap());
    }

    #[test]
    fn a_bad_file_at_start_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "bindings: [{namespace: a, role: boss, users: [x]}]").unwrap();
        let error = PolicyFile::open(&path).err().unwrap().to_string();
        assert!(
            error.contains("policy.yaml") && error.contains("boss"),
            "{error}"
        );
        let missing = PolicyFile::open(dir.path().join("nope.yaml"))
            .err()
            .unwrap();
        assert!(missing.to_string().contains("nope.yaml"), "{missing}");
    }
}
