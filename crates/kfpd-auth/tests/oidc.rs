//! The OIDC verifier against a real issuer on 127.0.0.1: the test makes its own
//! RSA and P-256 key pairs, serves the discovery document and the key set over
//! HTTP, signs tokens, and checks what the verifier accepts and refuses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kfpd_auth::oidc::{Settings, Verifier};
use kfpd_auth::{Authenticator, Error, Identity};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const AUDIENCE: &str = "kfpd-client";

/// A signing key the test owns, with its public half as a JWK.
struct TestKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &str) -> TestKey {
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa key");
    let der = private.to_pkcs1_der().expect("pkcs1 der");
    let public = private.to_public_key();
    TestKey {
        kid: kid.into(),
        algorithm: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }),
    }
}

fn ec_key(kid: &str) -> TestKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::EncodePrivateKey;
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = secret.to_pkcs8_der().expect("pkcs8 der");
    let point = secret.public_key().to_encoded_point(false);
    TestKey {
        kid: kid.into(),
        algorithm: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
        }),
    }
}

/// Key generation is slow in a debug build: one set for every test.
fn keys() -> &'static [TestKey; 3] {
    static KEYS: OnceLock<[TestKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| [rsa_key("rsa-1"), ec_key("ec-1"), rsa_key("rsa-rogue")])
}

/// The issuer: discovery and key set on a real HTTP server, counting key fetches.
#[derive(Clone)]
struct Issuer {
    url: String,
    published: Arc<Mutex<Vec<Value>>>,
    jwks_fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(published: Vec<Value>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let issuer = Issuer {
            url,
            published: Arc::new(Mutex::new(published)),
            jwks_fetches: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(jwks))
            .with_state(issuer.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        issuer
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.published.lock().unwrap() = keys;
    }

    fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    fn settings(&self) -> Settings {
        Settings::new(self.url.clone(), vec![AUDIENCE.to_string()])
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(self.settings()).expect("valid settings")
    }

    /// Claims valid for five minutes from this issuer to the test's audience.
    fn claims(&self, sub: &str) -> Value {
        let now = now();
        json!({"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now, "nbf": now - 1, "exp": now + 300})
    }
}

async fn discovery(State(issuer): State<Issuer>) -> Json<Value> {
    Json(json!({"issuer": issuer.url, "jwks_uri": format!("{}/keys", issuer.url)}))
}

async fn jwks(State(issuer): State<Issuer>) -> Json<Value> {
    issuer.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({"keys": issuer.published.lock().unwrap().clone()}))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

fn unauthenticated(result: Result<Identity, Error>) -> String {
    match result {
        Err(Error::Unauthenticated(reason)) => reason,
        other => panic!("expected unauthenticated, got {other:?}"),
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    headers
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_name_the_user_and_groups() {
    let [rsa, ec, _] = keys();
    let issuer = Issuer::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let verifier = issuer.verifier();

    let mut claims = issuer.claims("alice");
    claims["groups"] = json!(["team-a", "admins"]);
    let identity = verifier.verify(&sign(rsa, &claims)).await.expect("valid");
    assert_eq!(identity.user, "alice");
    assert_eq!(identity.groups, vec!["team-a", "admins"]);

    let identity = verifier
        .verify(&sign(ec, &issuer.claims("bob")))
        .await
        .expect("valid ES256");
    assert_eq!(identity.user, "bob");
    assert!(identity.groups.is_empty());
    // Both tokens were checked against one fetch of the keys.
    assert_eq!(issuer.fetches(), 1);

    let identity = verifier
        .authenticate(&bearer(&sign(rsa, &issuer.claims("carol"))), None)
        .await
        .expect("authenticated");
    assert_eq!(
        identity.map(|identity| identity.user).as_deref(),
        Some("carol")
    );
}

#[tokio::test]
async fn claims_and_prefixes_are_configurable() {
    let [rsa, _, _] = keys();
    let issuer = Issuer::start(vec![rsa.jwk.clone()]).await;
    let mut settings = issuer.settings();
    settings.username_claim = "email".into();
    settings.username_prefix = "oidc:".into();
    settings.groups_claim = "roles".into();
    settings.groups_prefix = "oidc:".into();
    let verifier = Verifier::new(settings).expect("settings");

    let mut claims = issuer.claims("id-123");
    claims["email"] = json!("alice@example.com");
    claims["email_verified"] = json!(true);
    claims["roles"] = json!("ml-team");
    claims["groups"] = json!(["ignored"]);
    let identity = verifier.verify(&sign(rsa, &claims)).await.expect("valid");
    assert_eq!(identity.user, "oidc:alice@example.com");
    assert_eq!(identity.groups, vec!["oidc:ml-team"]);

    claims["email_verified"] = json!(false);
    let reason = unauthenticated(verifier.verify(&sign(rsa, &claims)).await);
    assert!(reason.contains("not verified"), "{reason}");

    claims["email_verified"] = json!(true);
    claims["roles"] = json!([1, 2]);
    let reason = unauthenticated(verifier.verify(&sign(rsa, &claims)).await);
    assert!(reason.contains("roles"), "{reason}");

    let mut claims = issuer.claims("id-123");
    claims.as_object_mut().unwrap().remove("email");
    let reason = unauthenticated(verifier.verify(&sign(rsa, &claims)).await);
    assert!(reason.contains("claim email"), "{reason}");
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused_beyond_the_leeway() {
    let [rsa, _, _] = keys();
    let issuer = Issuer::start(vec![rsa.jwk.clone()]).await;
    let verifier = issuer.verifier();

    let mut claims = issuer.claims("alice");
    claims["exp"] = json!(now() - 120);
    let reason = unauthenticated(verifier.verify(&sign(rsa, &claims)).await);
    assert!(reason.contains("expired"), "{reason}");

    // Ten seconds past exp is within the default leeway of 30 s.
    claims["exp"] = json!(now() - 10);
    verifier
        .verify(&sign(rsa, &claims))
        .await
        .expect("within leeway");

    let mut claims = issuer.claims("alice");
    claims["nbf"] = json!(now() + 600);
    let reason = unauthenticated(verifier.verify(&sign(rsa, &claims)).await);
    assert!(reason.contains("not valid yet"), "{reason}");

    let mut claims = issuer.claims("alice");
    claims.as_object_mut().unwrap().remove("exp");
    let reason = unauthenticated(verifier.verify(&sign(rsa, &claims)).await);
    assert!(reason.contains("exp"), "{reason}");
}

#[tokio::test]
async fn wrong_audience_and_wrong_issuer_are_refused() {
    let [rsa, _, _] = keys();
    let issuer = Issuer::start(vec![rsa.jwk.clone()]).await;
    let verifier = issuer.verifier();

    let mut claims = issuer.claims("alice");
    claims["aud"] = json!(["another-client"]);
    let reason = unauthenticated(verifier.verify(&sign(rsa, &claims)).await);
    assert!(reason.contains("audience"), "{reason}");

    let mut claims = issuer.claims("alice");
    claims["iss"] = json!("https://elsewhere.example");
    let token = sign(rsa, &claims);
    let reason = unauthenticated(verifier.verify(&token).await);
    assert!(reason.contains("issuer"), "{reason}");
    // Another issuer's token is not this verifier's to judge: the next
    // authenticator in the chain gets it.
    let answer = verifier
        .authenticate(&bearer(&token), None)
        .await
        .expect("no error");
    assert!(answer.is_none());
    assert!(verifier
        .authenticate(&HeaderMap::new(), None)
        .await
        .expect("no error")
        .is_none());
}

#[tokio::test]
async fn unknown_keys_are_refused_and_fetch_the_key_set_at_most_once_per_interval() {
    let [rsa, _, rogue] = keys();
    let issuer = Issuer::start(vec![rsa.jwk.clone()]).await;
    let mut settings = issuer.settings();
    settings.refresh_interval = Duration::from_secs(3600);
    let verifier = Verifier::new(settings).expect("settings");

    verifier
        .verify(&sign(rsa, &issuer.claims("alice")))
        .await
        .expect("valid");
    assert_eq!(issuer.fetches(), 1);

    let forged = sign(rogue, &issuer.claims("alice"));
    for _ in 0..5 {
        let reason = unauthenticated(verifier.verify(&forged).await);
        assert!(reason.contains("rsa-rogue"), "{reason}");
    }
    // Within the refresh interval unknown key ids do not reach the issuer again.
    assert_eq!(issuer.fetches(), 1);

    // A rogue key claiming a published key id fails on its signature.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let impostor =
        jsonwebtoken::encode(&header, &issuer.claims("alice"), &rogue.encoding).expect("sign");
    let reason = unauthenticated(verifier.verify(&impostor).await);
    assert!(reason.contains("signature"), "{reason}");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let [rsa, ec, _] = keys();
    let issuer = Issuer::start(vec![rsa.jwk.clone()]).await;
    let mut settings = issuer.settings();
    settings.refresh_interval = Duration::ZERO;
    let verifier = Verifier::new(settings).expect("settings");
    verifier
        .verify(&sign(rsa, &issuer.claims("alice")))
        .await
        .expect("valid");

    issuer.publish(vec![ec.jwk.clone()]);
    verifier
        .verify(&sign(ec, &issuer.claims("alice")))
        .await
        .expect("the new key is fetched");
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn tampered_tokens_and_unsigned_or_hmac_tokens_are_refused() {
    let [rsa, ec, _] = keys();
    let issuer = Issuer::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let verifier = issuer.verifier();

    for key in [rsa, ec] {
        let token = sign(key, &issuer.claims("alice"));
        let parts: Vec<&str> = token.split('.').collect();
        // Another user's claims under alice's signature.
        let payload = URL_SAFE_NO_PAD.encode(issuer.claims("mallory").to_string());
        let swapped = format!("{}.{payload}.{}", parts[0], parts[2]);
        let reason = unauthenticated(verifier.verify(&swapped).await);
        assert!(reason.contains("signature"), "{reason}");

        let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64");
        signature[10] ^= 0x01;
        let flipped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(signature)
        );
        let reason = unauthenticated(verifier.verify(&flipped).await);
        assert!(reason.contains("signature"), "{reason}");
    }

    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(issuer.claims("alice").to_string());
    for unsigned in [
        format!("{none_header}.{payload}."),
        format!("{none_header}.{payload}"),
    ] {
        unauthenticated(verifier.verify(&unsigned).await);
        let answer = verifier.authenticate(&bearer(&unsigned), None).await;
        assert!(
            matches!(answer, Err(Error::Unauthenticated(_))),
            "{answer:?}"
        );
    }

    // HS256 keyed with the published RSA modulus: public material as a secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let secret = rsa.jwk["n"].as_str().unwrap().as_bytes();
    let hmac = jsonwebtoken::encode(
        &header,
        &issuer.claims("alice"),
        &EncodingKey::from_secret(secret),
    )
    .expect("sign");
    let reason = unauthenticated(verifier.verify(&hmac).await);
    assert!(reason.contains("not accepted"), "{reason}");

    let reason = unauthenticated(verifier.verify("not-a-jwt").await);
    assert!(reason.contains("malformed"), "{reason}");
}

#[tokio::test]
async fn an_unreachable_issuer_is_unavailable_not_a_refusal() {
    let [rsa, _, _] = keys();
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let mut settings = Settings::new(url.clone(), vec![AUDIENCE.into()]);
    settings.timeout = Duration::from_secs(2);
    let verifier = Verifier::new(settings).expect("settings");
    let claims = json!({"iss": url, "aud": AUDIENCE, "sub": "alice", "exp": now() + 300});
    match verifier.verify(&sign(rsa, &claims)).await {
        Err(Error::Unavailable(reason)) => {
            assert!(reason.contains("discovery document"), "{reason}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_discovery_document_of_another_issuer_is_a_configuration_error() {
    let [rsa, _, _] = keys();
    let issuer = Issuer::start(vec![rsa.jwk.clone()]).await;
    // The same server under another name: its document names the other spelling.
    let alias = issuer.url.replace("127.0.0.1", "localhost");
    let verifier =
        Verifier::new(Settings::new(alias.clone(), vec![AUDIENCE.into()])).expect("settings");
    let mut claims = issuer.claims("alice");
    claims["iss"] = json!(alias);
    match verifier.verify(&sign(rsa, &claims)).await {
        Err(Error::Config(reason)) => assert!(reason.contains("names issuer"), "{reason}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn settings_are_checked_when_the_verifier_is_made() {
    for (issuer, audiences, expected) in [
        ("not a url", vec![AUDIENCE.to_string()], "not a URL"),
        ("ftp://idp.example", vec![AUDIENCE.to_string()], "https://"),
        ("https://idp.example", vec![], "audience"),
    ] {
        match Verifier::new(Settings::new(issuer, audiences)) {
            Err(Error::Config(reason)) => assert!(reason.contains(expected), "{reason}"),
            Err(other) => panic!("expected a configuration error, got {other:?}"),
            Ok(_) => panic!("{issuer} accepted"),
        }
    }
}
