//! OIDC bearer tokens: JWTs signed by a configured issuer, for installs without
//! Kubernetes (or beside it). The issuer's keys come from its discovery document
//! (`<issuer>/.well-known/openid-configuration` → `jwks_uri`); they are cached and
//! fetched again when a token names a key the cache lacks (at most once per
//! `refresh_interval`, so forged key ids cannot make kfpd hammer the issuer) or
//! when they are older than `max_key_age`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::{Authenticator, Error, Identity};

/// The signature algorithms accepted. Others (HMAC above all, whose "key" would be
/// public here) are refused before any key is looked at.
const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// How tokens of one issuer are checked and turned into an identity.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer URL, exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// The claim holding the user name (`sub` by default; `email` is common).
    pub username_claim: String,
    /// Put before the user name, so OIDC users cannot pass for Kubernetes ones.
    pub username_prefix: String,
    /// The claim holding the groups (a list of strings, or one string); empty for none.
    pub groups_claim: String,
    pub groups_prefix: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Least time between two fetches of the keys caused by unknown key ids.
    pub refresh_interval: Duration,
    /// Keys older than this are fetched again before use (kept if that fails).
    pub max_key_age: Duration,
    /// Time limit of each request to the issuer.
    pub timeout: Duration,
}

impl Settings {
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Settings {
        Settings {
            issuer: issuer.into(),
            audiences,
            username_claim: "sub".into(),
            username_prefix: String::new(),
            groups_claim: "groups".into(),
            groups_prefix: String::new(),
            leeway: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(10),
            max_key_age: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
        }
    }
}

/// One usable key of the issuer.
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    decoding: DecodingKey,
}

/// The issuer's keys as last fetched.
struct KeySet {
    keys: Vec<Key>,
    fetched: Instant,
}

/// Verifies the bearer JWTs of one issuer.
pub struct Verifier {
    settings: Settings,
    http: reqwest::Client,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching, so concurrent misses fetch once.
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl Verifier {
    /// Checks the settings; nothing is fetched until the first token arrives, so a
    /// server starts while its issuer is down.
    pub fn new(settings: Settings) -> Result<Verifier, Error> {
        let issuer = reqwest::Url::parse(&settings.issuer).map_err(|error| {
            Error::Config(format!(
                "oidc issuer {:?} is not a URL: {error}",
                settings.issuer
            ))
        })?;
        if !matches!(issuer.scheme(), "https" | "http") {
            return Err(Error::Config(format!(
                "oidc issuer {:?} must be an https:// (or http://) URL",
                settings.issuer
            )));
        }
        if settings
            .audiences
            .iter()
            .all(|audience| audience.is_empty())
        {
            return Err(Error::Config(
                "oidc needs at least one audience (the client id tokens are issued for)".into(),
            ));
        }
        if settings.username_claim.is_empty() {
            return Err(Error::Config("oidc username claim is empty".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|error| Error::Config(format!("oidc http client: {error}")))?;
        Ok(Verifier {
            settings,
            http,
            keys: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The identity a token proves, or why it proves none.
    pub async fn verify(&self, token: &str) -> Result<Identity, Error> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| Error::Unauthenticated(format!("malformed token: {error}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Error::Unauthenticated(format!(
                "token algorithm {:?} is not accepted (RS256 or ES256)",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway.as_secs();

        let set = self.key_set_for(header.kid.as_deref(), header.alg).await?;
        let mut last_error = None;
        for key in set.matching(header.kid.as_deref(), header.alg) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation) {
                Ok(data) => return self.identity(&data.claims),
                // Without a key id every key of the algorithm is tried in turn.
                Err(error)
                    if header.kid.is_none()
                        && matches!(
                            error.kind(),
                            jsonwebtoken::errors::ErrorKind::InvalidSignature
                        ) =>
                {
                    last_error = Some(error);
                }
                Err(error) => return Err(self.rejection(error)),
            }
        }
        Err(match last_error {
            Some(error) => self.rejection(error),
            None => unknown_key(header.kid.as_deref()),
        })
    }

    fn rejection(&self, error: jsonwebtoken::errors::Error) -> Error {
        use jsonwebtoken::errors::ErrorKind;
        let reason = match error.kind() {
            ErrorKind::ExpiredSignature => "token has expired".to_string(),
            ErrorKind::ImmatureSignature => "token is not valid yet (nbf)".to_string(),
            ErrorKind::InvalidAudience => format!(
                "token audience is none of {}",
                self.settings.audiences.join(", ")
            ),
            ErrorKind::InvalidIssuer => {
                format!("token issuer is not {}", self.settings.issuer)
            }
            ErrorKind::InvalidSignature => "token signature does not verify".to_string(),
            ErrorKind::MissingRequiredClaim(claim) => format!("token has no {claim} claim"),
            other => format!("token rejected: {other:?}"),
        };
        Error::Unauthenticated(reason)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, Error> {
        let claim = &self.settings.username_claim;
        let user = match claims.get(claim) {
            Some(Value::String(user)) if !user.is_empty() => user,
            _ => {
                return Err(Error::Unauthenticated(format!(
                    "token has no user name in claim {claim}"
                )))
            }
        };
        // An address the issuer says it did not verify names nobody.
        if claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false)) {
            return Err(Error::Unauthenticated(format!(
                "email {user} is not verified by the issuer"
            )));
        }
        let groups = match self.settings.groups_claim.as_str() {
            "" => Vec::new(),
            claim => match claims.get(claim) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(group)) => vec![group.clone()],
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(group) => Ok(group.clone()),
                        _ => Err(Error::Unauthenticated(format!(
                            "token claim {claim} must be a list of strings"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => {
                    return Err(Error::Unauthenticated(format!(
                        "token claim {claim} must be a list of strings"
                    )))
                }
            },
        };
        Ok(Identity {
            user: format!("{}{user}", self.settings.username_prefix),
            groups: groups
                .into_iter()
                .map(|group| format!("{}{group}", self.settings.groups_prefix))
                .collect(),
        })
    }

    fn cached(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Keys that hold one for `kid` and `algorithm`, fetched again when needed.
    async fn key_set_for(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Arc<KeySet>, Error> {
        if let Some(set) = self.cached() {
            let fresh = set.fetched.elapsed() < self.settings.max_key_age;
            if fresh && set.has(kid, algorithm) {
                return Ok(set);
            }
            if !fresh {
                match self.refresh().await {
                    Ok(new) => return Ok(new),
                    Err(error) => {
                        tracing::warn!(issuer = %self.settings.issuer, %error, "cannot refresh the oidc keys, using the cached ones");
                        return Ok(set);
                    }
                }
            }
        }
        self.refresh().await
    }

    /// Fetches the keys, unless that happened less than `refresh_interval` ago (a
    /// concurrent miss, or a token naming a key nobody has). A failed fetch is
    /// answered for a second to the requests behind it rather than repeated.
    async fn refresh(&self) -> Result<Arc<KeySet>, Error> {
        let mut state = self.refresh.lock().await;
        if let Some(at) = state.attempted {
            if let Some(error) = &state.failure {
                if at.elapsed() < FAILURE_BACKOFF {
                    return Err(Error::Unavailable(error.clone()));
                }
            } else if at.elapsed() < self.settings.refresh_interval {
                if let Some(set) = self.cached() {
                    return Ok(set);
                }
            }
        }
        state.attempted = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                state.failure = None;
                let set = Arc::new(set);
                *self
                    .keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(set.clone());
                tracing::debug!(issuer = %self.settings.issuer, keys = set.keys.len(), "fetched the oidc keys");
                Ok(set)
            }
            Err(error) => {
                state.failure = Some(error.to_string());
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, Error> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let discovery = self.get_json(&discovery_url, "discovery document").await?;
        if discovery.get("issuer").and_then(Value::as_str) != Some(self.settings.issuer.as_str()) {
            return Err(Error::Config(format!(
                "the oidc discovery document at {discovery_url} names issuer {}, not {}",
                discovery.get("issuer").unwrap_or(&Value::Null),
                self.settings.issuer
            )));
        }
        let Some(jwks_uri) = discovery.get("jwks_uri").and_then(Value::as_str) else {
            return Err(Error::Unavailable(format!(
                "the oidc discovery document at {discovery_url} has no jwks_uri"
            )));
        };
        let jwks = self.get_json(jwks_uri, "key set").await?;
        let Some(entries) = jwks.get("keys").and_then(Value::as_array) else {
            return Err(Error::Unavailable(format!(
                "the oidc key set at {jwks_uri} has no keys list"
            )));
        };
        let keys: Vec<Key> = entries.iter().filter_map(parse_key).collect();
        if keys.is_empty() {
            tracing::warn!(%jwks_uri, "the oidc key set holds no RS256 or ES256 signing key");
        }
        Ok(KeySet {
            keys,
            fetched: Instant::now(),
        })
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<Value, Error> {
        let unavailable = |error: String| {
            Error::Unavailable(format!("cannot fetch the oidc {what} from {url}: {error}"))
        };
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| unavailable(error.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        response
            .json::<Value>()
            .await
            .map_err(|error| unavailable(format!("not JSON: {error}")))
    }
}

/// How long a failed key fetch is answered from memory.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Default)]
struct RefreshState {
    attempted: Option<Instant>,
    failure: Option<String>,
}

impl KeySet {
    fn matching<'a>(
        &'a self,
        kid: Option<&'a str>,
        algorithm: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |key| {
            key.algorithm == algorithm && (kid.is_none() || key.kid.as_deref() == kid)
        })
    }

    fn has(&self, kid: Option<&str>, algorithm: Algorithm) -> bool {
        self.matching(kid, algorithm).next().is_some()
    }
}

fn unknown_key(kid: Option<&str>) -> Error {
    Error::Unauthenticated(match kid {
        Some(kid) => format!("token is signed with key {kid:?}, which the issuer does not publish"),
        None => "no key of the issuer fits the token".into(),
    })
}

/// A signing key of a type and algorithm kfpd accepts; others are skipped, so one
/// odd entry does not discard the issuer's whole key set.
fn parse_key(value: &Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(params), None | Some(KeyAlgorithm::ES256))
            if params.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        algorithm,
        decoding,
    })
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The `iss` a JWT claims, read without checking anything: only to tell whether
/// the token is this issuer's to judge.
fn claimed_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// A bearer JWT of another issuer (or no JWT at all) is not this verifier's to
/// reject: it answers `None`, so the next authenticator (TokenReview) may try.
#[async_trait::async_trait]
impl Authenticator for Verifier {
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        _peer: Option<std::net::SocketAddr>,
    ) -> Result<Option<Identity>, Error> {
        let Some(token) = bearer(headers) else {
            return Ok(None);
        };
        if claimed_issuer(token).as_deref() != Some(self.settings.issuer.as_str()) {
            return Ok(None);
        }
        self.verify(token).await.map(Some)
    }
}
