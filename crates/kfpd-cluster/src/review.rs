//! Identity and authorization from the Kubernetes API server, as upstream's API
//! server in multi-user mode: a bearer service-account token (the SDK sends the
//! one at `KF_PIPELINES_SA_TOKEN_PATH`) is checked with a TokenReview for the
//! audience `pipelines.kubeflow.org`, and each access with a SubjectAccessReview
//! of upstream's resource attributes, so Kubeflow's RBAC roles decide.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kfpd_auth::cache::Memory;
use kfpd_auth::{Access, Authenticator, Authorizer, Error, Identity};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

/// A client for the reviews: the in-cluster service account, else KUBECONFIG or
/// ~/.kube/config. Nothing is sent yet.
pub async fn connect() -> Result<kube::Client, Error> {
    let config = kube::Config::infer().await.map_err(|error| {
        Error::Config(format!(
            "no Kubernetes configuration for token and access reviews ({error}): in a cluster kfpd uses its service account; elsewhere set KUBECONFIG"
        ))
    })?;
    kube::Client::try_from(config)
        .map_err(|error| Error::Config(format!("kubernetes client for reviews: {error}")))
}

/// Why a review could not be had, in the words an operator can act on.
fn unavailable(action: &str, error: kube::Error) -> Error {
    match error {
        kube::Error::Api(response) if response.code == 401 || response.code == 403 => {
            Error::Unavailable(format!(
                "{action}: kfpd's own credentials were refused ({}, HTTP {}): its service account needs the system:auth-delegator cluster role",
                response.message, response.code
            ))
        }
        kube::Error::Api(response) => Error::Unavailable(format!(
            "{action}: {} ({}, HTTP {})",
            response.message, response.reason, response.code
        )),
        other => Error::Unavailable(format!(
            "{action}: kubernetes API server not reachable: {other}"
        )),
    }
}

/// Authenticates bearer tokens with TokenReview.
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
    /// Identities of tokens reviewed lately, by the token's SHA-256 (the token
    /// itself is not kept). Only accepted tokens are remembered.
    reviewed: Memory<[u8; 32], Identity>,
}

impl TokenReviewer {
    /// Reviews tokens for upstream's audience, `pipelines.kubeflow.org`.
    pub fn new(client: kube::Client) -> TokenReviewer {
        TokenReviewer::with_audiences(client, vec![kfpd_auth::TOKEN_AUDIENCE.to_string()])
    }

    pub fn with_audiences(client: kube::Client, audiences: Vec<String>) -> TokenReviewer {
        TokenReviewer {
            client,
            audiences,
            reviewed: Memory::new(Duration::ZERO, 1),
        }
    }

    /// Reuses an accepted token's identity for `ttl` (SDK clients send the same
    /// token with every request), keeping at most `capacity` of them.
    pub fn with_cache(mut self, ttl: Duration, capacity: usize) -> TokenReviewer {
        self.reviewed = Memory::new(ttl, capacity);
        self
    }

    /// The identity the API server finds in `token` (or found within the cache's TTL).
    pub async fn review(&self, token: &str) -> Result<Identity, Error> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.reviewed.get_or_fetch(digest, || self.ask(token)).await
    }

    async fn ask(&self, token: &str) -> Result<Identity, Error> {
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &request)
            .await
            .map_err(|error| unavailable("cannot review the bearer token", error))?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let reason = status
                .error
                .filter(|error| !error.is_empty())
                .unwrap_or_else(|| "the token is not valid".into());
            return Err(Error::Unauthenticated(format!(
                "kubernetes token review: {reason}"
            )));
        }
        // An API server that reports audiences says which of ours the token is
        // for; none in common means a token meant for someone else.
        if let Some(granted) = status.audiences.as_ref().filter(|list| !list.is_empty()) {
            if !granted
                .iter()
                .any(|audience| self.audiences.contains(audience))
            {
                return Err(Error::Unauthenticated(format!(
                    "the token is for audience {}, not {}",
                    granted.join(", "),
                    self.audiences.join(", ")
                )));
            }
        }
        let user = status.user.unwrap_or_default();
        let name = user.username.unwrap_or_default();
        if name.is_empty() {
            return Err(Error::Unauthenticated(
                "kubernetes token review named no user".into(),
            ));
        }
        Ok(Identity {
            user: name,
            groups: user.groups.unwrap_or_default(),
        })
    }
}

/// Every bearer token that reaches it is reviewed: it comes after the
/// authenticators that recognise their own tokens (OIDC).
#[async_trait::async_trait]
impl Authenticator for TokenReviewer {
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        _peer: Option<std::net::SocketAddr>,
    ) -> Result<Option<Identity>, Error> {
        match kfpd_auth::oidc::bearer(headers) {
            Some(token) => self.review(token).await.map(Some),
            None => Ok(None),
        }
    }
}

/// Authorizes accesses with SubjectAccessReview.
pub struct AccessReviewer {
    client: kube::Client,
}

impl AccessReviewer {
    pub fn new(client: kube::Client) -> AccessReviewer {
        AccessReviewer { client }
    }

    /// The resource attributes upstream asks about for `access`.
    pub fn attributes(access: &Access<'_>) -> ResourceAttributes {
        ResourceAttributes {
            group: Some(access.resource.group().to_string()),
            version: Some(kfpd_auth::VERSION.to_string()),
            resource: Some(access.resource.as_str().to_string()),
            verb: Some(access.verb.as_str().to_string()),
            namespace: Some(access.namespace.to_string()),
            name: access.name.map(str::to_string),
            ..ResourceAttributes::default()
        }
    }
}

#[async_trait::async_trait]
impl Authorizer for AccessReviewer {
    async fn authorize(&self, who: &Identity, access: &Access<'_>) -> Result<bool, Error> {
        let request = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                groups: Some(who.groups.clone()),
                resource_attributes: Some(AccessReviewer::attributes(access)),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let action = format!(
            "cannot review whether {} may {} {} in namespace {}",
            who.user, access.verb, access.resource, access.namespace
        );
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &request)
            .await
            .map_err(|error| unavailable(&action, error))?;
        let Some(status) = reviewed.status else {
            return Err(Error::Unavailable(format!(
                "{action}: the answer has no status"
            )));
        };
        if !status.allowed {
            tracing::debug!(
                user = %who.user,
                verb = %access.verb,
                resource = %access.resource,
                namespace = access.namespace,
                reason = status.reason.as_deref().unwrap_or(""),
                evaluation_error = status.evaluation_error.as_deref().unwrap_or(""),
                "subject access review denied"
            );
        }
        Ok(status.allowed && status.denied != Some(true))
    }
}
