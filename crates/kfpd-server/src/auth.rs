//! Settings of multi-user mode's identity providers and authorizer, and what
//! builds them: OIDC bearer tokens of a configured issuer, Kubernetes TokenReview
//! for service-account tokens, and SubjectAccessReview (cached briefly), a policy
//! file, or no checks, to decide accesses (docs/configuration.md).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kfpd_auth::cache::{Cached, DEFAULT_CAPACITY, DEFAULT_TTL};
use kfpd_auth::{oidc, Authenticator, Authorizer, Chain};

use crate::config::{parse_duration, Error, FileSettings};

/// Flags of `kfpd serve` for identities and access checks (multi-user mode).
#[derive(Args, Debug, Clone, Default)]
pub struct AuthArgs {
    /// OIDC issuer whose bearer JWTs identify callers (`https://dex.example.com`),
    /// exactly as its tokens carry it in `iss`. Unset: no OIDC.
    #[arg(long, env = "KFPD_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Audiences (client ids) OIDC tokens must name, comma-separated. Required
    /// with --oidc-issuer.
    #[arg(
        long,
        env = "KFPD_OIDC_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUDIENCES"
    )]
    pub oidc_audience: Option<Vec<String>>,
    /// The OIDC claim holding the user name. [default: sub]
    #[arg(long, env = "KFPD_OIDC_USERNAME_CLAIM")]
    pub oidc_username_claim: Option<String>,
    /// Put before OIDC user names (`oidc:`), so they cannot pass for other users.
    /// [default: none]
    #[arg(long, env = "KFPD_OIDC_USERNAME_PREFIX")]
    pub oidc_username_prefix: Option<String>,
    /// The OIDC claim holding the groups, or empty for none. [default: groups]
    #[arg(long, env = "KFPD_OIDC_GROUPS_CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// Put before OIDC group names. [default: none]
    #[arg(long, env = "KFPD_OIDC_GROUPS_PREFIX")]
    pub oidc_groups_prefix: Option<String>,
    /// Whether bearer tokens other than OIDC ones are reviewed by the Kubernetes
    /// API server (TokenReview, audience pipelines.kubeflow.org): `on` or `off`.
    /// [default: on inside a Kubernetes pod, else off]
    #[arg(long, env = "KFPD_TOKEN_REVIEW")]
    pub token_review: Option<String>,
    /// What decides accesses in multi-user mode: `kubernetes`
    /// (SubjectAccessReview), `policy` (the policy file) or `none` (every
    /// authenticated caller may do everything). [default: kubernetes inside a
    /// Kubernetes pod, else unset]
    #[arg(long, env = "KFPD_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// How long a SubjectAccessReview decision is reused for the same caller and
    /// access, and a reviewed token's identity for the same token (`5s`,
    /// `500ms`; `0` asks every time). [default: 5s]
    #[arg(long, env = "KFPD_AUTHZ_CACHE_TTL")]
    pub authz_cache_ttl: Option<String>,
}

/// What decides accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizerKind {
    /// SubjectAccessReview with upstream's resource attributes.
    Kubernetes,
    /// The policy file.
    Policy,
    /// No checks: every authenticated caller may do everything.
    None,
}

/// Resolved identity and authorization settings.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub oidc: Option<oidc::Settings>,
    pub token_review: bool,
    /// `None`: not configured (multi-user mode then cannot start).
    pub authorizer: Option<AuthorizerKind>,
    pub cache_ttl: Duration,
}

/// A Kubernetes pod has this variable; it tells the defaults where kfpd runs.
const IN_CLUSTER_VARIABLE: &str = "KUBERNETES_SERVICE_HOST";

pub(crate) fn resolve(
    args: &AuthArgs,
    file: &FileSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AuthSettings, Error> {
    let in_cluster = env(IN_CLUSTER_VARIABLE).is_some();
    let pick = |flag: &Option<String>, from_file: &Option<String>| {
        flag.clone()
            .or(from_file.clone())
            .map(|text| text.trim().to_string())
    };

    let issuer = pick(&args.oidc_issuer, &file.oidc_issuer).filter(|text| !text.is_empty());
    let audiences: Vec<String> = args
        .oidc_audience
        .clone()
        .or(file.oidc_audience.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|audience| audience.trim().to_string())
        .filter(|audience| !audience.is_empty())
        .collect();
    let oidc = match issuer {
        None if !audiences.is_empty() => {
            return Err(Error::Invalid {
                key: "oidc_audience",
                message: "is set but oidc_issuer is not".into(),
            })
        }
        None => None,
        Some(issuer) => {
            if audiences.is_empty() {
                return Err(Error::Invalid {
                    key: "oidc_audience",
                    message: format!(
                        "oidc_issuer {issuer} needs the audience its tokens are issued for (the client id)"
                    ),
                });
            }
            let mut settings = oidc::Settings::new(issuer, audiences);
            if let Some(claim) = pick(&args.oidc_username_claim, &file.oidc_username_claim) {
                if claim.is_empty() {
                    return Err(Error::Invalid {
                        key: "oidc_username_claim",
                        message: "is empty".into(),
                    });
                }
                settings.username_claim = claim;
            }
            if let Some(claim) = pick(&args.oidc_groups_claim, &file.oidc_groups_claim) {
                settings.groups_claim = claim;
            }
            if let Some(prefix) = pick(&args.oidc_username_prefix, &file.oidc_username_prefix) {
                settings.username_prefix = prefix;
            }
            if let Some(prefix) = pick(&args.oidc_groups_prefix, &file.oidc_groups_prefix) {
                settings.groups_prefix = prefix;
            }
            // The same checks the verifier makes, so a bad URL stops the start.
            oidc::Verifier::new(settings.clone()).map_err(|error| Error::Invalid {
                key: "oidc_issuer",
                message: error.to_string(),
            })?;
            Some(settings)
        }
    };

    let token_review = match pick(&args.token_review, &file.token_review).as_deref() {
        None | Some("") => in_cluster,
        Some(text) => match text.to_lowercase().as_str() {
            "on" | "true" | "1" => true,
            "off" | "false" | "0" => false,
            other => {
                return Err(Error::Invalid {
                    key: "token_review",
                    message: format!("{other:?} is not on or off"),
                })
            }
        },
    };

    let authorizer = match pick(&args.authorizer, &file.authorizer).as_deref() {
        None | Some("") => in_cluster.then_some(AuthorizerKind::Kubernetes),
        Some(text) => Some(match text.to_lowercase().as_str() {
            "kubernetes" | "subjectaccessreview" => AuthorizerKind::Kubernetes,
            "policy" | "policy-file" | "policy_file" => AuthorizerKind::Policy,
            "none" => AuthorizerKind::None,
            other => {
                return Err(Error::Invalid {
                    key: "authorizer",
                    message: format!("{other:?} is not kubernetes, policy or none"),
                })
            }
        }),
    };

    let cache_ttl = match pick(&args.authz_cache_ttl, &file.authz_cache_ttl) {
        None => DEFAULT_TTL,
        Some(text) => parse_duration(&text).map_err(|message| Error::Invalid {
            key: "authz_cache_ttl",
            message,
        })?,
    };

    Ok(AuthSettings {
        oidc,
        token_review,
        authorizer,
        cache_ttl,
    })
}

/// The configured authenticators as one, in order: `first` (the trusted user
/// header), OIDC tokens of the configured issuer, then TokenReview for any other
/// bearer token.
pub async fn authenticator(
    settings: &AuthSettings,
    first: Vec<Arc<dyn Authenticator>>,
) -> Result<Arc<dyn Authenticator>, kfpd_auth::Error> {
    let mut links = first;
    if let Some(oidc) = &settings.oidc {
        links.push(Arc::new(oidc::Verifier::new(oidc.clone())?));
    }
    if settings.token_review {
        let client = kfpd_cluster::review::connect().await?;
        let reviewer = kfpd_cluster::review::TokenReviewer::new(client)
            .with_cache(settings.cache_ttl, DEFAULT_CAPACITY);
        links.push(Arc::new(reviewer));
    }
    Ok(Arc::new(Chain::new(links)))
}

/// The configured authorizer. `policy` is the policy-file authorizer, built by
/// the caller from its own settings; SubjectAccessReview is put behind the
/// decision cache.
pub async fn authorizer(
    settings: &AuthSettings,
    policy: Option<Arc<dyn Authorizer>>,
) -> Result<Arc<dyn Authorizer>, kfpd_auth::Error> {
    match settings.authorizer {
        None => Err(kfpd_auth::Error::Config(
            "multi-user mode needs an authorizer: set --authorizer (KFPD_AUTHORIZER) to kubernetes, policy or none".into(),
        )),
        Some(AuthorizerKind::None) => Ok(Arc::new(kfpd_auth::AllowAll)),
        Some(AuthorizerKind::Policy) => policy.ok_or_else(|| {
            kfpd_auth::Error::Config("authorizer policy needs a policy file".into())
        }),
        Some(AuthorizerKind::Kubernetes) => {
            let client = kfpd_cluster::review::connect().await?;
            let reviewer = kfpd_cluster::review::AccessReviewer::new(client);
            Ok(Arc::new(Cached::new(
                reviewer,
                settings.cache_ttl,
                DEFAULT_CAPACITY,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_with(
        args: AuthArgs,
        file: &str,
        vars: &[(&str, &str)],
    ) -> Result<AuthSettings, Error> {
        let file: FileSettings = toml::from_str(file).expect("file settings");
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&args, &file, &|name| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn defaults_depend_on_whether_kfpd_runs_in_a_pod() {
        let outside = resolve_with(AuthArgs::default(), "", &[]).unwrap();
        assert!(outside.oidc.is_none());
        assert!(!outside.token_review);
        assert_eq!(outside.authorizer, None);
        assert_eq!(outside.cache_ttl, DEFAULT_TTL);

        let inside = resolve_with(
            AuthArgs::default(),
            "",
            &[(IN_CLUSTER_VARIABLE, "10.0.0.1")],
        )
        .unwrap();
        assert!(inside.token_review);
        assert_eq!(inside.authorizer, Some(AuthorizerKind::Kubernetes));
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = r#"
            oidc_issuer = "https://file.example"
            oidc_audience = ["kfp"]
            oidc_username_claim = "email"
            oidc_groups_prefix = "oidc:"
            token_review = "on"
            authorizer = "none"
            authz_cache_ttl = "30s"
        "#;
        let from_file = resolve_with(AuthArgs::default(), file, &[]).unwrap();
        let oidc = from_file.oidc.unwrap();
        assert_eq!(oidc.issuer, "https://file.example");
        assert_eq!(oidc.audiences, vec!["kfp"]);
        assert_eq!(oidc.username_claim, "email");
        assert_eq!(oidc.groups_claim, "groups");
        assert_eq!(oidc.groups_prefix, "oidc:");
        assert!(from_file.token_review);
        assert_eq!(from_file.authorizer, Some(AuthorizerKind::None));
        assert_eq!(from_file.cache_ttl, Duration::from_secs(30));

        let args = AuthArgs {
            oidc_issuer: Some("https://flag.example".into()),
            oidc_audience: Some(vec!["a".into(), " b ".into()]),
            token_review: Some("off".into()),
            authorizer: Some("kubernetes".into()),
            authz_cache_ttl: Some("0".into()),
            ..AuthArgs::default()
        };
        let from_flags = resolve_with(args, file, &[]).unwrap();
        let oidc = from_flags.oidc.unwrap();
        assert_eq!(oidc.issuer, "https://flag.example");
        assert_eq!(oidc.audiences, vec!["a", "b"]);
        assert!(!from_flags.token_review);
        assert_eq!(from_flags.authorizer, Some(AuthorizerKind::Kubernetes));
        assert_eq!(from_flags.cache_ttl, Duration::ZERO);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases: Vec<(AuthArgs, &str)> = vec![
            (
                AuthArgs {
                    oidc_issuer: Some("https://idp.example".into()),
                    ..AuthArgs::default()
                },
                "oidc_audience",
            ),
            (
                AuthArgs {
                    oidc_audience: Some(vec!["kfp".into()]),
                    ..AuthArgs::default()
                },
                "oidc_audience",
            ),
            (
                AuthArgs {
                    oidc_issuer: Some("idp.example".into()),
                    oidc_audience: Some(vec!["kfp".into()]),
                    ..AuthArgs::default()
                },
                "oidc_issuer",
            ),
            (
                AuthArgs {
                    token_review: Some("maybe".into()),
                    ..AuthArgs::default()
                },
                "token_review",
            ),
            (
                AuthArgs {
                    authorizer: Some("ldap".into()),
                    ..AuthArgs::default()
                },
                "authorizer",
            ),
            (
                AuthArgs {
                    authz_cache_ttl: Some("soon".into()),
                    ..AuthArgs::default()
                },
                "authz_cache_ttl",
            ),
        ];
        for (args, expected) in cases {
            match resolve_with(args, "", &[]) {
                Err(Error::Invalid { key, .. }) => assert_eq!(key, expected),
                other => panic!("expected an invalid {expected}, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_authorizer_kind_picks_the_authorizer() {
        let settings = |authorizer| AuthSettings {
            oidc: None,
            token_review: false,
            authorizer,
            cache_ttl: DEFAULT_TTL,
        };
        assert!(matches!(
            authorizer(&settings(None), None).await,
            Err(kfpd_auth::Error::Config(_))
        ));
        assert!(matches!(
            authorizer(&settings(Some(AuthorizerKind::Policy)), None).await,
            Err(kfpd_auth::Error::Config(_))
        ));
        let anyone = authorizer(&settings(Some(AuthorizerKind::None)), None)
            .await
            .expect("none");
        let who = kfpd_auth::Identity {
            user: "alice".into(),
            groups: vec![],
        };
        let access = kfpd_auth::Access {
            namespace: "team-b",
            resource: kfpd_auth::Resource::Runs,
            verb: kfpd_auth::Verb::Delete,
            name: None,
        };
        assert!(anyone.authorize(&who, &access).await.unwrap());
        let chain = authenticator(&settings(None), vec![])
            .await
            .expect("no authenticators");
        assert!(chain
            .authenticate(&http::HeaderMap::new(), None)
            .await
            .unwrap()
            .is_none());
    }
}
