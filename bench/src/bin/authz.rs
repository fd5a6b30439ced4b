//! `authz`: what identity and authorization cost per request in multi-user mode.
//! Prints numbers; asserts nothing.
//!
//! 1. SubjectAccessReview through kube-rs against a scripted Kubernetes API server
//!    on 127.0.0.1 (in this process; a real API server adds its own RBAC
//!    evaluation and network time): every request reviewed, then behind the
//!    decision cache, for one repeated access and for a mix of `--distinct`
//!    accesses drawn at random, sequentially and from `--callers` concurrent tasks.
//!    The policy-file authorizer over the same mix, one binding per user and namespace.
//! 2. TokenReview per request against the same server, and behind its cache.
//! 3. OIDC: verifying one RS256 and one ES256 token per request with the keys
//!    cached, and the first request's discovery and key set fetch.
//!
//! `cargo run --release -p kfpd-bench --bin authz -- --help`

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::Parser;
use kfpd_auth::cache::Cached;
use kfpd_auth::oidc::{Settings, Verifier};
use kfpd_auth::{Access, Authenticator, Authorizer, Identity, Resource, Verb};
use kfpd_cluster::review::{AccessReviewer, TokenReviewer};
use rand::Rng;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "authz",
    about = "Measures authentication and authorization per request"
)]
struct Args {
    /// Requests measured for each row.
    #[arg(long, default_value_t = 5_000)]
    requests: usize,
    /// Distinct (user, namespace, verb) accesses of the mixed rows.
    #[arg(long, default_value_t = 200)]
    distinct: usize,
    /// Concurrent callers of the concurrent row.
    #[arg(long, default_value_t = 16)]
    callers: usize,
    /// Decision cache TTL of the cached rows (ms).
    #[arg(long, default_value_t = 5_000)]
    ttl_ms: u64,
}

/// Per-request times of one row.
struct Row {
    what: String,
    samples: Vec<Duration>,
    note: String,
}

impl Row {
    fn print(&self) {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
        let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            self.what,
            sorted.len(),
            micros(mean),
            micros(at(0.5)),
            micros(at(0.99)),
            self.note
        );
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

async fn measure<F, Fut>(what: &str, requests: usize, note: &str, mut call: F) -> Result<Row>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    // A few calls first: connections, allocator, caches of the code itself.
    for i in 0..requests.min(50) {
        call(i).await?;
    }
    let mut samples = Vec::with_capacity(requests);
    for i in 0..requests {
        let start = Instant::now();
        call(i).await?;
        samples.push(start.elapsed());
    }
    Ok(Row {
        what: what.into(),
        samples,
        note: note.into(),
    })
}

/// A Kubernetes API server answering TokenReviews and SubjectAccessReviews:
/// namespaces starting with `team-` are allowed, tokens starting with `sa-` valid.
async fn api_server() -> Result<(String, Arc<std::sync::atomic::AtomicUsize>)> {
    let reviews = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reviews.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(move |Json(mut body): Json<Value>| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let namespace = body["spec"]["resourceAttributes"]["namespace"]
                        .as_str()
                        .unwrap_or_default();
                    body["status"] = json!({"allowed": namespace.starts_with("team-")});
                    (axum::http::StatusCode::CREATED, Json(body))
                }
            }),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(|Json(mut body): Json<Value>| async move {
                let token = body["spec"]["token"].as_str().unwrap_or_default();
                body["status"] = if token.starts_with("sa-") {
                    json!({"authenticated": true, "audiences": body["spec"]["audiences"].clone(),
                           "user": {"username": "system:serviceaccount:team-a:default-editor",
                                    "groups": ["system:serviceaccounts", "system:authenticated"]}})
                } else {
                    json!({"authenticated": false, "error": "invalid bearer token"})
                };
                (axum::http::StatusCode::CREATED, Json(body))
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, reviews))
}

/// An OIDC issuer on 127.0.0.1 publishing the given JWKs.
async fn issuer(keys: Vec<Value>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/keys")});
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let discovery = discovery.clone();
                async move { Json(discovery) }
            }),
        )
        .route(
            "/keys",
            get(move || {
                let keys = keys.clone();
                async move { Json(json!({ "keys": keys })) }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

fn kube_client(url: &str) -> Result<kube::Client> {
    let config = kube::Config::new(url.parse().context("api server url")?);
    kube::Client::try_from(config).context("kube client")
}

fn identity(user: usize) -> Identity {
    Identity {
        user: format!("user-{user}@example.com"),
        groups: vec!["ml-team".into(), "system:authenticated".into()],
    }
}

const VERBS: [Verb; 4] = [Verb::Get, Verb::List, Verb::ReadArtifact, Verb::ReadLog];

/// The accesses of the mixed rows: `distinct` (user, namespace, verb) triples.
fn mix(distinct: usize) -> Vec<(Identity, String, Verb)> {
    (0..distinct)
        .map(|i| {
            (
                identity(i % 50),
                format!("team-{}", i / 50),
                VERBS[i % VERBS.len()],
            )
        })
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let requests = args.requests.max(1);
    let ttl = Duration::from_millis(args.ttl_ms);
    let (url, reviews) = api_server().await?;
    let client = kube_client(&url)?;
    let mut rows = Vec::new();

    let alice = identity(0);
    let one = Access {
        namespace: "team-0",
        resource: Resource::Runs,
        verb: Verb::Get,
        name: Some("run-1"),
    };
    let reviewer = AccessReviewer::new(client.clone());
    let before = reviews.load(std::sync::atomic::Ordering::Relaxed);
    rows.push(
        measure(
            "SubjectAccessReview, no cache",
            requests,
            "one review each",
            |_| async {
                reviewer.authorize(&alice, &one).await?;
                Ok(())
            },
        )
        .await?,
    );
    let sent = reviews.load(std::sync::atomic::Ordering::Relaxed) - before;
    eprintln!("authz: {sent} reviews for the uncached row");

    let cached = Cached::new(AccessReviewer::new(client.clone()), ttl, 10_000);
    let before = reviews.load(std::sync::atomic::Ordering::Relaxed);
    rows.push(
        measure(
            "SubjectAccessReview, cached, one access",
            requests,
            "",
            |_| async {
                cached.authorize(&alice, &one).await?;
                Ok(())
            },
        )
        .await?,
    );
    let sent = reviews.load(std::sync::atomic::Ordering::Relaxed) - before;
    rows.last_mut().expect("row").note = format!("{sent} reviews sent");

    let accesses = mix(args.distinct.max(1));
    let picks: Vec<usize> = {
        let mut rng = rand::thread_rng();
        (0..requests + 50)
            .map(|_| rng.gen_range(0..accesses.len()))
            .collect()
    };
    let mixed_cache = Cached::new(AccessReviewer::new(client.clone()), ttl, 10_000);
    let before = reviews.load(std::sync::atomic::Ordering::Relaxed);
    rows.push(
        measure(
            &format!(
                "SubjectAccessReview, cached, {} accesses at random",
                accesses.len()
            ),
            requests,
            "",
            |i| {
                let (who, namespace, verb) = &accesses[picks[i % picks.len()]];
                let cache = &mixed_cache;
                async move {
                    let access = Access {
                        namespace,
                        resource: Resource::Runs,
                        verb: *verb,
                        name: None,
                    };
                    cache.authorize(who, &access).await?;
                    Ok(())
                }
            },
        )
        .await?,
    );
    let sent = reviews.load(std::sync::atomic::Ordering::Relaxed) - before;
    rows.last_mut().expect("row").note = format!(
        "{sent} reviews sent for {} calls (warm-up included)",
        requests + requests.min(50)
    );

    // The same mix from concurrent callers, as a server's request tasks would.
    let shared = Arc::new(Cached::new(
        AccessReviewer::new(client.clone()),
        ttl,
        10_000,
    ));
    let accesses = Arc::new(accesses);
    let before = reviews.load(std::sync::atomic::Ordering::Relaxed);
    let callers = args.callers.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let (cache, accesses) = (shared.clone(), accesses.clone());
        let count = requests / callers;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(count);
            let mut pick = caller * 7919;
            for _ in 0..count {
                pick = (pick * 31 + 17) % accesses.len();
                let (who, namespace, verb) = &accesses[pick];
                let access = Access {
                    namespace,
                    resource: Resource::Runs,
                    verb: *verb,
                    name: None,
                };
                let start = Instant::now();
                cache.authorize(who, &access).await?;
                samples.push(start.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let sent = reviews.load(std::sync::atomic::Ordering::Relaxed) - before;
    rows.push(Row {
        what: format!(
            "SubjectAccessReview, cached, {} accesses, {callers} concurrent callers",
            accesses.len()
        ),
        note: format!(
            "{:.0} checks/s in all; {sent} reviews sent",
            samples.len() as f64 / elapsed.as_secs_f64()
        ),
        samples,
    });

    // The policy file: one binding per (user, namespace) of the mix.
    let dir = tempfile::tempdir()?;
    let policy_path = dir.path().join("policy.yaml");
    let mut policy = String::from("bindings:\n");
    let mut bindings = 0;
    for (who, namespace, _) in accesses.iter() {
        let line = format!(
            "  - {{namespace: {namespace}, role: viewer, users: [\"{}\"]}}\n",
            who.user
        );
        if !policy.contains(&line) {
            policy.push_str(&line);
            bindings += 1;
        }
    }
    std::fs::write(&policy_path, policy)?;
    let policy_file = kfpd_auth::PolicyFile::open(&policy_path)?;
    rows.push(
        measure(
            &format!(
                "policy file, {bindings} bindings, {} accesses at random",
                accesses.len()
            ),
            requests,
            "no cache",
            |i| {
                let (who, namespace, verb) = &accesses[picks[i % picks.len()]];
                let policy_file = &policy_file;
                async move {
                    let access = Access {
                        namespace,
                        resource: Resource::Runs,
                        verb: *verb,
                        name: None,
                    };
                    policy_file.authorize(who, &access).await?;
                    Ok(())
                }
            },
        )
        .await?,
    );

    let token_reviewer = TokenReviewer::new(client.clone());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        "Bearer sa-benchmark-token".parse()?,
    );
    rows.push(
        measure("TokenReview", requests, "one review each", |_| async {
            token_reviewer
                .authenticate(&headers, None)
                .await?
                .ok_or_else(|| anyhow!("token not accepted"))?;
            Ok(())
        })
        .await?,
    );

    let cached_reviewer = TokenReviewer::new(client.clone()).with_cache(ttl, 10_000);
    rows.push(
        measure("TokenReview, cached", requests, "one token", |_| async {
            cached_reviewer
                .authenticate(&headers, None)
                .await?
                .ok_or_else(|| anyhow!("token not accepted"))?;
            Ok(())
        })
        .await?,
    );

    // OIDC: keys made here, tokens signed once and verified per request.
    eprintln!("authz: making an RSA-2048 and a P-256 key");
    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let p256_key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let rsa_jwk = {
        use rsa::traits::PublicKeyParts;
        let public = rsa_key.to_public_key();
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "rsa",
               "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
               "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())})
    };
    let ec_jwk = {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let point = p256_key.public_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": "ec",
               "x": URL_SAFE_NO_PAD.encode(point.x().ok_or_else(|| anyhow!("no x"))?),
               "y": URL_SAFE_NO_PAD.encode(point.y().ok_or_else(|| anyhow!("no y"))?)})
    };
    let issuer_url = issuer(vec![rsa_jwk, ec_jwk]).await?;
    let claims = json!({"iss": issuer_url, "aud": "kfpd", "sub": "alice",
                        "groups": ["ml-team"], "exp": now() + 3600});
    let sign = |kid: &str, algorithm, key: jsonwebtoken::EncodingKey| {
        let mut header = jsonwebtoken::Header::new(algorithm);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, &claims, &key)
    };
    let rs256 = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let der = rsa_key.to_pkcs1_der()?;
        sign(
            "rsa",
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        )?
    };
    let es256 = {
        use p256::pkcs8::EncodePrivateKey;
        let der = p256_key.to_pkcs8_der()?;
        sign(
            "ec",
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
        )?
    };
    let settings = Settings::new(issuer_url.clone(), vec!["kfpd".into()]);
    let first = Verifier::new(settings.clone())?;
    let start = Instant::now();
    first.verify(&rs256).await?;
    rows.push(Row {
        what: "OIDC RS256, first token (discovery and key set fetched)".into(),
        samples: vec![start.elapsed()],
        note: "once per process".into(),
    });
    let verifier = Verifier::new(settings)?;
    for (what, token) in [("OIDC RS256 verify", &rs256), ("OIDC ES256 verify", &es256)] {
        rows.push(
            measure(what, requests, "keys cached", |_| async {
                verifier.verify(token).await?;
                Ok(())
            })
            .await?,
        );
    }

    println!("| per request | requests | mean µs | p50 µs | p99 µs | note |");
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        row.print();
    }
    Ok(())
}
