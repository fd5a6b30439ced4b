//! Multi-user mode: who is calling, for the length of one request, and the guard
//! that decides what they may do.
//!
//! Each transport authenticates a request once, in one layer (REST:
//! [`crate::http`]'s `authenticate`, gRPC: [`GrpcLayer`]), and runs its handler
//! inside [`Caller::scope`]. The service methods, which every route calls, check
//! each access there (`service/access.rs`). A call made outside any request
//! scope (the scheduler firing a run, the persistence agent, a log follower
//! after its request was checked) acts as the server itself.
//!
//! Both layers fail closed: a successful answer from a route that made no check
//! is replaced by an internal error, so a route added without a check cannot
//! serve data in multi-user mode.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use kfpd_auth::{Access, Authenticator, Authorizer, Identity};

use crate::error::{Code, Error, Result};

/// Upstream's answer when no identity came with the request.
pub const NO_IDENTITY: &str =
    "Failed to check authorization. User identity is empty in the request header";

/// Decides who is calling and what they may do.
pub struct Guard {
    authenticator: Arc<dyn Authenticator>,
    authorizer: Arc<dyn Authorizer>,
}

impl Guard {
    pub fn new(authenticator: Arc<dyn Authenticator>, authorizer: Arc<dyn Authorizer>) -> Guard {
        Guard {
            authenticator,
            authorizer,
        }
    }

    /// The caller of a request, or the error that answers it (401, or 503 when
    /// the identity provider cannot be asked).
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Identity> {
        match self.authenticator.authenticate(headers, peer).await {
            Ok(Some(identity)) => Ok(identity),
            Ok(None) => Err(Error::new(Code::Unauthenticated, NO_IDENTITY)),
            Err(error) => Err(auth_error(error)),
        }
    }

    pub async fn allows(&self, who: &Identity, access: &Access<'_>) -> Result<bool> {
        self.authorizer
            .authorize(who, access)
            .await
            .map_err(auth_error)
    }
}

fn auth_error(error: kfpd_auth::Error) -> Error {
    match error {
        kfpd_auth::Error::Unauthenticated(message) => {
            Error::new(Code::Unauthenticated, format!("{NO_IDENTITY}: {message}"))
        }
        kfpd_auth::Error::Unavailable(message) => {
            tracing::warn!(error = %message, "authorization unavailable");
            Error::unavailable(format!(
                "cannot check authorization now, try again later: {message}"
            ))
        }
        kfpd_auth::Error::Config(message) => {
            tracing::error!(error = %message, "authorization misconfigured");
            Error::internal(format!("authorization is misconfigured: {message}"))
        }
    }
}

/// The guard of multi-user mode from the configuration. Identity: the user
/// header from trusted proxies first (as upstream), then the bearer-token
/// verifiers `auth.rs` configures (OIDC, TokenReview). Decisions: the configured
/// authorizer; a policy file given without `--authorizer` selects the policy.
pub async fn guard_for(config: &crate::Config) -> std::result::Result<Arc<Guard>, String> {
    let settings = &config.access;
    let header = kfpd_auth::TrustedHeader::new(
        &settings.user_header,
        &settings.user_prefix,
        settings.trusted_proxies.clone(),
    )
    .map_err(|error| error.to_string())?;
    if settings.trusted_proxies.is_empty() {
        tracing::warn!(
            header = %header.header(),
            "multi-user mode without trusted proxies: the user header is refused from every peer"
        );
    }
    let authenticator = crate::auth::authenticator(&config.auth, vec![Arc::new(header)])
        .await
        .map_err(|error| error.to_string())?;
    let policy: Option<Arc<dyn Authorizer>> = match &settings.policy_file {
        Some(path) => Some(Arc::new(
            kfpd_auth::PolicyFile::open(path).map_err(|error| error.to_string())?,
        )),
        None => None,
    };
    let mut auth = config.auth.clone();
    if auth.authorizer.is_none() && policy.is_some() {
        auth.authorizer = Some(crate::auth::AuthorizerKind::Policy);
    }
    let authorizer = crate::auth::authorizer(&auth, policy)
        .await
        .map_err(|error| match error {
            kfpd_auth::Error::Config(message) if auth.authorizer.is_none() => {
                format!("{message}, or name a policy file with --policy-file (docs/multi-user.md)")
            }
            other => other.to_string(),
        })?;
    Ok(Arc::new(Guard::new(authenticator, authorizer)))
}

/// The authenticated caller of the request being served, and whether the route
/// checked an access yet.
pub struct Caller {
    pub identity: Identity,
    checked: AtomicBool,
}

tokio::task_local! {
    static CALLER: Arc<Caller>;
}

impl Caller {
    pub fn new(identity: Identity) -> Arc<Caller> {
        Arc::new(Caller {
            identity,
            checked: AtomicBool::new(false),
        })
    }

    /// Runs `future` (a request's handler) as this caller.
    pub async fn scope<F: Future>(self: Arc<Caller>, future: F) -> F::Output {
        CALLER.scope(self, future).await
    }

    /// The caller of the request this task serves; `None` outside any request.
    pub fn current() -> Option<Arc<Caller>> {
        CALLER.try_with(Arc::clone).ok()
    }

    pub fn mark_checked(&self) {
        self.checked.store(true, Ordering::Relaxed);
    }

    pub fn was_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }
}

/// The error that replaces a successful answer of a route that checked nothing.
pub fn unchecked(route: &str) -> Error {
    tracing::error!(route = %route, "route answered without an access check; refused");
    Error::internal(format!(
        "route {route} answered without an access check in multi-user mode"
    ))
}

/// gRPC methods that need no identity: health checking and reflection describe
/// the server, not anyone's data.
pub fn grpc_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// The gRPC side of authentication: a tower layer around every service.
#[derive(Clone)]
pub struct GrpcLayer {
    guard: Option<Arc<Guard>>,
}

impl GrpcLayer {
    pub fn new(guard: Option<Arc<Guard>>) -> GrpcLayer {
        GrpcLayer { guard }
    }
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcAccess<S>;

    fn layer(&self, inner: S) -> GrpcAccess<S> {
        GrpcAccess {
            inner,
            guard: self.guard.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcAccess<S> {
    inner: S,
    guard: Option<Arc<Guard>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for GrpcAccess<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<http::Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone is the one that was polled ready; keep a fresh one for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let Some(guard) = guard else {
                return inner.call(request).await;
            };
            let path = request.uri().path().to_string();
            if grpc_open(&path) {
                return inner.call(request).await;
            }
            let peer = request
                .extensions()
                .get::<crate::connections::ConnectionInfo>()
                .and_then(|info| info.remote_addr);
            let identity = match guard.authenticate(request.headers(), peer).await {
                Ok(identity) => identity,
                Err(error) => return Ok(crate::grpc::status(error).into_http()),
            };
            let caller = Caller::new(identity);
            let response = Arc::clone(&caller).scope(inner.call(request)).await?;
            // A failed call carries its status in the headers (trailers-only); a
            // successful one in the trailers after its message.
            let failed = response.headers().contains_key("grpc-status");
            if !failed && !caller.was_checked() {
                return Ok(crate::grpc::status(unchecked(&path)).into_http());
            }
            Ok(response)
        })
    }
}
