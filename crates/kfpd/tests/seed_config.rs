//! `kfpd serve` configured the way upstream's Kubernetes manifests configure their API
//! server (`DBCONFIG_*`, `OBJECTSTORECONFIG_*`), against the real MariaDB, PostgreSQL
//! and a moto S3 server: the seed's common failures end in messages that say what to
//! do, or heal themselves.

mod common;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;

/// `host`, `port` and the database name of a test database URL from
/// [`common::database_url`].
fn parts(url: &str) -> (String, String, String) {
    let rest = url.rsplit('@').next().unwrap_or_default();
    let (address, name) = rest.split_once('/').expect("host:port/name");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    (host.to_string(), port.to_string(), name.to_string())
}

/// A `kfpd serve` whose stdout and stderr lines arrive on channels, for tests that
/// watch it before it is ready.
struct Watched {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Watched {
    fn spawn(env: &[(&str, &str)]) -> Watched {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kfpd"))
            .args(["serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "off"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("KFPD_LOG", "warn")
            .env("KFPD_EXECUTOR", "none")
            .env_remove("DBCONFIG_HOST")
            .env_remove("DBDRIVERNAME")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kfpd");
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (sender, receiver) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            receiver
        };
        let stdout = lines(Box::new(child.stdout.take().expect("stdout")));
        let stderr = lines(Box::new(child.stderr.take().expect("stderr")));
        Watched {
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// The first line of `from` containing every one of `needles`; panics after 60 s.
    fn wait_for(from: &mpsc::Receiver<String>, needles: &[&str], what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match from.recv_timeout(left) {
                Ok(line) if needles.iter().all(|needle| line.contains(needle)) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no {what} line with {needles:?}; saw:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards every connection accepted on `listener` to `target`.
async fn forward(listener: tokio::net::TcpListener, target: String) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_that_starts_late_is_waited_for_then_served() {
    let Some(url) = common::database_url("mysql").await else {
        return;
    };
    let (host, port, name) = parts(&url);
    // A port nobody listens on yet: the database "is still starting".
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let late_port = probe.local_addr().expect("addr").port().to_string();
    drop(probe);
    let server = Watched::spawn(&[
        ("DBCONFIG_HOST", "127.0.0.1"),
        ("DBCONFIG_PORT", &late_port),
        ("DBCONFIG_USER", "root"),
        ("DBCONFIG_PASSWORD", ""),
        ("DBCONFIG_DBNAME", &name),
        ("DBCONFIG_CONMAXLIFETIME", "120s"),
        ("DB_DRIVER_NAME", "mysql"),
    ]);
    let retry = Watched::wait_for(
        &server.stderr,
        &[
            "database not reachable, retrying",
            &format!("127.0.0.1:{late_port}"),
        ],
        "retry",
    );
    assert!(retry.contains("retry_in_ms"), "{retry}");
    // Not listening yet: a readiness probe on healthz has nothing to reach.
    assert!(
        server.stdout.try_recv().is_err(),
        "announced before the database answered"
    );

    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{late_port}"))
        .await
        .expect("bind the late port");
    tokio::spawn(forward(listener, format!("{host}:{port}")));
    let announced = Watched::wait_for(&server.stdout, &["kfpd listening on http://"], "listening");
    let base = announced.trim_start_matches("kfpd listening on ").trim();
    let response = reqwest::get(format!("{base}/apis/v1beta1/healthz"))
        .await
        .expect("healthz");
    assert_eq!(response.status(), 200);
    drop(server);
    let _ = kfpd_store::sql::drop_database(&url).await;
}

#[tokio::test]
async fn refused_mysql_password_names_the_user_and_the_secret() {
    let Some(url) = common::database_url("mysql").await else {
        return;
    };
    let (host, port, name) = parts(&url);
    let server = Watched::spawn(&[
        ("DBCONFIG_MYSQLCONFIG_HOST", &host),
        ("DBCONFIG_MYSQLCONFIG_PORT", &port),
        ("DBCONFIG_MYSQLCONFIG_USER", "root"),
        (
            "DBCONFIG_MYSQLCONFIG_PASSWORD",
            "certainly-not-the-password",
        ),
        ("DBCONFIG_MYSQLCONFIG_DBNAME", &name),
        ("KFPD_DB_INIT_TIMEOUT", "60s"),
    ]);
    let line = Watched::wait_for(&server.stderr, &["refused user"], "refusal");
    assert!(line.contains("\"root\""), "{line}");
    assert!(line.contains("Secret mysql-secret"), "{line}");
    assert!(line.contains(&format!("{host}:{port}")), "{line}");
}

#[tokio::test]
async fn refused_postgres_role_names_the_user_and_the_secret() {
    let Some(url) = common::database_url("postgres").await else {
        return;
    };
    let (host, port, name) = parts(&url);
    let server = Watched::spawn(&[
        ("DB_DRIVER_NAME", "postgres"),
        ("DBCONFIG_POSTGRESQLCONFIG_HOST", &host),
        ("DBCONFIG_POSTGRESQLCONFIG_PORT", &port),
        ("DBCONFIG_POSTGRESQLCONFIG_USER", "kfpd_no_such_role"),
        ("DBCONFIG_POSTGRESQLCONFIG_PASSWORD", "x"),
        ("DBCONFIG_POSTGRESQLCONFIG_DBNAME", &name),
        ("KFPD_DB_INIT_TIMEOUT", "60s"),
    ]);
    let line = Watched::wait_for(&server.stderr, &["refused user"], "refusal");
    assert!(line.contains("\"kfpd_no_such_role\""), "{line}");
    assert!(line.contains("Secret postgres-secret-extended"), "{line}");
}

/// Closes every session of database `name` from the server side, as a database
/// restart, a proxy's idle timeout or MySQL's `wait_timeout` would.
async fn close_sessions(kind: &str, server_url: &str, name: &str) -> u64 {
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(server_url)
        .await
        .expect("admin connection");
    let closed = match kind {
        "postgres" => sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .fetch_all(&mut admin)
        .await
        .expect("terminate sessions")
        .len() as u64,
        _ => {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
            )
            .bind(name)
            .fetch_all(&mut admin)
            .await
            .expect("list sessions");
            for id in &ids {
                sqlx::query(&format!("KILL CONNECTION {id}"))
                    .execute(&mut admin)
                    .await
                    .expect("kill session");
            }
            ids.len() as u64
        }
    };
    let _ = admin.close().await;
    closed
}

async fn closed_connections_are_replaced(kind: &str) {
    let Some(url) = common::database_url(kind).await else {
        return;
    };
    let (_, _, name) = parts(&url);
    let server_url = url.rsplit_once('/').expect("url/name").0.to_string();
    let admin_url = match kind {
        "postgres" => format!("{server_url}/postgres"),
        _ => format!("{server_url}/"),
    };
    let server = common::Server::start_with(&["--database-url", &url]);
    for round in 0..3 {
        let (status, body) = server
            .post(
                "/experiments",
                &json!({"display_name": format!("before-{round}")}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let closed = close_sessions(kind, &admin_url, &name).await;
    assert!(closed > 0, "kfpd should hold pooled sessions on {name}");
    // Every request after the cut gets a working connection: the pool replaces
    // the dead ones instead of answering errors until they age out.
    for round in 0..8 {
        let (status, body) = server.get("/experiments?page_size=5").await;
        assert_eq!(status, 200, "round {round}: {body}\n{}", server.stderr());
    }
    let (status, body) = server
        .post("/experiments", &json!({"display_name": "after"}))
        .await;
    assert_eq!(status, 200, "{body}");
    drop(server);
    let _ = kfpd_store::sql::drop_database(&url).await;
}

#[tokio::test]
async fn mysql_connections_closed_by_the_server_are_replaced() {
    closed_connections_are_replaced("mysql").await;
}

#[tokio::test]
async fn postgres_connections_closed_by_the_server_are_replaced() {
    closed_connections_are_replaced("postgres").await;
}

fn s3_env<'a>(address: &'a str, bucket: &'a str) -> Vec<(&'a str, &'a str)> {
    let (host, port) = address.rsplit_once(':').expect("host:port");
    vec![
        ("OBJECTSTORECONFIG_HOST", host),
        ("OBJECTSTORECONFIG_PORT", port),
        ("OBJECTSTORECONFIG_SECURE", "false"),
        ("OBJECTSTORECONFIG_BUCKETNAME", bucket),
        // The keys of upstream's mlpipeline-minio-artifact Secret, as `envFrom` gives them.
        ("accesskey", "kfpd-test"),
        ("secretkey", "kfpd-test-secret"),
    ]
}

#[tokio::test]
async fn missing_bucket_is_named_when_kfpd_may_not_create_it() {
    let Some(moto) = moto::moto() else {
        return;
    };
    let address = moto.endpoint.trim_start_matches("http://").to_string();
    let bucket = moto::unique_bucket("absent");
    let mut env = s3_env(&address, &bucket);
    env.push(("KFPD_CREATE_BUCKET", "false"));
    let server = Watched::spawn(&env);
    let line = Watched::wait_for(&server.stderr, &["bucket"], "bucket");
    assert!(line.contains(&bucket), "{line}");
    assert!(line.contains("--create-bucket"), "{line}");
    let store = moto::s3_options(&moto.endpoint, &bucket, false);
    let opened = kfpd_artifacts::ArtifactStore::open(store).await;
    assert!(
        opened.is_err(),
        "kfpd created the bucket although told not to"
    );
}

#[tokio::test]
async fn missing_bucket_is_created_by_default() {
    let Some(moto) = moto::moto() else {
        return;
    };
    let address = moto.endpoint.trim_start_matches("http://").to_string();
    let bucket = moto::unique_bucket("created");
    let env = s3_env(&address, &bucket);
    let server = common::Server::start_with_env(&[], &env);
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    let store = moto::s3_options(&moto.endpoint, &bucket, false);
    kfpd_artifacts::ArtifactStore::open(store)
        .await
        .expect("the bucket kfpd created at start");
}

#[tokio::test]
async fn upstream_kfp_database_is_refused_with_what_to_do() {
    let Some(url) = common::database_url("mysql").await else {
        return;
    };
    let (host, port, name) = parts(&url);
    let server_url = url.rsplit_once('/').expect("url/name").0.to_string();
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&format!("{server_url}/"))
        .await
        .expect("admin connection");
    sqlx::query(&format!("CREATE DATABASE `{name}`"))
        .execute(&mut admin)
        .await
        .expect("create database");
    // The table upstream's API server keeps runs in; its presence marks the layout.
    sqlx::query(&format!(
        "CREATE TABLE `{name}`.run_details (UUID VARCHAR(191) NOT NULL PRIMARY KEY)"
    ))
    .execute(&mut admin)
    .await
    .expect("create upstream table");
    let _ = admin.close().await;
    let server = Watched::spawn(&[
        ("DBCONFIG_HOST", &host),
        ("DBCONFIG_PORT", &port),
        ("DBCONFIG_USER", "root"),
        ("DBCONFIG_DBNAME", &name),
    ]);
    let line = Watched::wait_for(&server.stderr, &["run_details"], "refusal");
    assert!(line.contains("pipelineDb"), "{line}");
    assert!(line.contains("database of its own"), "{line}");
    drop(server);
    let _ = kfpd_store::sql::drop_database(&url).await;
}
