//! Retention through the real binary: runs execute in `kfpd serve`, some are made to
//! have finished 40 days ago in the database, then `kfpd gc --dry-run` reports and
//! deletes nothing, `kfpd gc` deletes the expired runs' artifacts and logs (but not an
//! artifact a young run still links), the API says they are gone, and `kfpd serve`'s
//! own loop deletes runs beyond the newest per experiment. On SQLite with the local
//! store and with S3 (moto), on PostgreSQL and on MariaDB.

mod common;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use kfpd_store::sql::{Options, Sql, SqlStore};
use serde_json::{json, Value};

const DAY: i64 = 86_400;

/// Where the runs' data lives, for the server and for `kfpd gc`.
struct Setup {
    /// `--database-url` for PostgreSQL or MySQL; None: SQLite in the data dir.
    database_url: Option<String>,
    /// Upstream's object store variables; empty: the local store.
    env: Vec<(String, String)>,
    /// The S3 endpoint and bucket those variables name.
    s3: Option<(String, String)>,
}

impl Setup {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--executor".to_string(), "local".to_string()];
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_string(), url.clone()]);
        }
        args
    }

    fn start(&self, dir: tempfile::TempDir, extra: &[&str], extra_env: &[(&str, &str)]) -> Server {
        let mut args = self.args();
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        env.extend_from_slice(extra_env);
        Server::start_full_in(dir, &args, &env)
    }

    /// Runs `kfpd gc` on the server's data; returns its stdout.
    fn gc(&self, server: &Server, extra: &[&str]) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kfpd"));
        command
            .arg("gc")
            .arg("--data-dir")
            .arg(server.dir.path())
            .args(extra)
            .env("KFPD_LOG", "warn")
            .env_remove("DBCONFIG_HOST")
            .env_remove("DBDRIVERNAME");
        if let Some(url) = &self.database_url {
            command.args(["--database-url", url]);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let output = command.output().expect("run kfpd gc");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "kfpd gc {extra:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn store_url(&self, server: &Server) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", server.dir.path().join("kfpd.db").display()),
        }
    }
}

async fn wait_for(server: &Server, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{what} not seen; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_to_success(server: &Server, name: &str, text: &str) -> String {
    let (status, run) = server
        .post(
            "/runs",
            &json!({
                "display_name": name,
                "pipeline_spec": common::pipeline_spec("two-step-artifact.yaml"),
                "runtime_config": {"parameters": {"text": text}},
            }),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    wait_for(server, &format!("run {name} ended"), async || {
        let (_, run) = server.get(&format!("/runs/{run_id}")).await;
        matches!(
            run["state"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "CANCELED")
        )
    })
    .await;
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());
    run_id
}

/// The run's `data` artifact as the artifact API lists it.
async fn data_artifact(server: &Server, run_id: &str) -> Value {
    let (status, listed) = server.get(&format!("/artifacts?run_id={run_id}")).await;
    assert_eq!(status, 200, "{listed}");
    listed["artifacts"]
        .as_array()
        .and_then(|all| all.iter().find(|artifact| artifact["name"] == "data"))
        .cloned()
        .unwrap_or_else(|| panic!("run {run_id} lists no data artifact: {listed}"))
}

/// Reads the artifact a run's `write` task produced (or reused) through `:read`.
async fn read_data(server: &Server, run_id: &str) -> (u16, Value) {
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    let tasks = run["run_details"]["task_details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let write = tasks
        .iter()
        .find(|task| task["display_name"] == "write")
        .unwrap_or_else(|| panic!("no write task in {run}"));
    let task_id = write["task_id"].as_str().unwrap_or_default();
    server
        .get(&format!(
            "/runs/{run_id}/nodes/{task_id}/artifacts/data:read"
        ))
        .await
}

/// The status and body of the log of the run's `read` task.
async fn read_log(server: &Server, run_id: &str) -> (u16, String) {
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    let tasks = run["run_details"]["task_details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let task = tasks
        .iter()
        .find(|task| task["display_name"] == "read")
        .unwrap_or_else(|| panic!("no read task in {run}"));
    let url = format!(
        "{}/apis/v1alpha1/runs/{run_id}/nodes/{}/log",
        server.base,
        task["task_id"].as_str().unwrap_or_default()
    );
    let response = server.client.get(url).send().await.expect("log");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Makes runs look as if they finished `days` ago (and were created a day earlier).
async fn age(store: &SqlStore, run_ids: &[&str], days: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    for run_id in run_ids {
        let mut sql = Sql::new("UPDATE runs SET finished_at = ");
        sql.bind(now - days * DAY)
            .push(", created_at = ")
            .bind(now - (days + 1) * DAY)
            .push(" WHERE uuid = ")
            .bind(*run_id);
        let (text, args) = sql.build(store.dialect());
        let done = sqlx::query_with(&text, args)
            .execute(store.pool())
            .await
            .expect("age a run");
        assert_eq!(done.rows_affected(), 1);
    }
}

async fn retention_end_to_end(setup: Setup) {
    let server = setup.start(tempfile::tempdir().expect("temp dir"), &[], &[]);
    let old = run_to_success(&server, "old", "kept by a young run").await;
    let older = run_to_success(&server, "older", "all gone").await;
    // The same input as `old`: its write task is a cache hit and links old's artifact.
    let young = run_to_success(&server, "young", "kept by a young run").await;
    assert_eq!(
        data_artifact(&server, &young).await["artifact_id"],
        data_artifact(&server, &old).await["artifact_id"],
        "the young run reuses old's artifact"
    );
    let store = SqlStore::connect(&Options::new(setup.store_url(&server)))
        .await
        .expect("store");
    age(&store, &[&old, &older], 40).await;

    let report = setup.gc(&server, &["--dry-run", "--artifact-retention-days", "30"]);
    assert!(
        report.contains(
            "would delete the artifacts and logs of 2 run(s): 1 artifact(s) (0 left in place"
        ),
        "{report}"
    );
    assert_eq!(
        read_data(&server, &older).await.0,
        200,
        "a dry run deletes nothing"
    );

    let report = setup.gc(&server, &["--artifact-retention-days", "30"]);
    assert!(
        report.contains("deleted the artifacts and logs of 2 run(s): 1 artifact(s)"),
        "{report}"
    );
    let gone = data_artifact(&server, &older).await;
    assert_eq!(gone["state"], "DELETED", "{gone}");
    assert!(gone["deleted_at"].as_str().is_some(), "{gone}");
    let (status, body) = read_data(&server, &older).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.to_string().contains("deleted by retention"), "{body}");
    let uri = gone["uri"].as_str().unwrap_or_default();
    match &setup.s3 {
        None => {
            let path = uri.trim_start_matches("file://");
            assert!(!std::path::Path::new(path).exists(), "{path} still exists");
        }
        Some((endpoint, bucket)) => {
            let objects =
                kfpd_artifacts::ArtifactStore::open(moto::s3_options(endpoint, bucket, false))
                    .await
                    .expect("open the bucket");
            assert!(
                !objects.exists(uri).await.expect("exists"),
                "{uri} still exists"
            );
            let kept = data_artifact(&server, &old).await;
            let kept = kept["uri"].as_str().unwrap_or_default();
            assert!(
                objects.exists(kept).await.expect("exists"),
                "{kept} was deleted"
            );
        }
    }
    assert!(!server.dir.path().join("work").join(&older).exists());
    let (status, log) = read_log(&server, &older).await;
    assert_eq!(status, 404, "{log}");
    assert!(log.contains("deleted by retention"), "{log}");
    // old's logs went, its artifact stays: the young run holds it.
    assert_eq!(read_log(&server, &old).await.0, 404);
    assert_eq!(data_artifact(&server, &old).await.get("state"), None);
    let (status, body) = read_data(&server, &young).await;
    assert_eq!(status, 200, "{body}");
    let again = setup.gc(&server, &["--artifact-retention-days", "30"]);
    assert!(
        again.contains("of 0 run(s)"),
        "a second pass finds nothing: {again}"
    );

    let report = setup.gc(
        &server,
        &["--dry-run", "--run-retention-per-experiment", "1"],
    );
    assert!(report.contains("would delete 2 run(s)"), "{report}");
    // kfpd serve's loop: one run per experiment is kept, the newest (set through
    // the environment this time).
    let dir = server.stop();
    let server = setup.start(
        dir,
        &["--retention-interval", "1s"],
        &[("KFPD_RUN_RETENTION_PER_EXPERIMENT", "1")],
    );
    wait_for(&server, "old runs deleted", async || {
        let (older_status, _) = server.get(&format!("/runs/{older}")).await;
        let (old_status, _) = server.get(&format!("/runs/{old}")).await;
        older_status == 404 && old_status == 404
    })
    .await;
    let (status, body) = read_data(&server, &young).await;
    assert_eq!(status, 200, "the kept run's input stays: {body}");
    let (_, runs) = server.get("/runs").await;
    assert_eq!(runs["total_size"], 1, "{runs}");
    assert_eq!(runs["runs"][0]["run_id"], json!(young));
    drop(server);
    store.pool().close().await;
    if let Some(url) = &setup.database_url {
        kfpd_store::sql::drop_database(url)
            .await
            .expect("drop test database");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_local_store() {
    retention_end_to_end(Setup {
        database_url: None,
        env: Vec::new(),
        s3: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_s3_store() {
    let Some(moto) = moto::moto() else {
        return;
    };
    let bucket = moto::unique_bucket("retention");
    let address = moto.endpoint.trim_start_matches("http://");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let env = [
        ("OBJECTSTORECONFIG_HOST", host),
        ("OBJECTSTORECONFIG_PORT", port),
        ("OBJECTSTORECONFIG_SECURE", "false"),
        ("OBJECTSTORECONFIG_BUCKETNAME", bucket.as_str()),
        ("OBJECTSTORECONFIG_ACCESSKEY", "kfpd-test"),
        ("OBJECTSTORECONFIG_SECRETACCESSKEY", "kfpd-test-secret"),
    ];
    retention_end_to_end(Setup {
        database_url: None,
        env: env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        s3: Some((moto.endpoint.clone(), bucket.clone())),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Some(url) = common::database_url("postgres").await else {
        return;
    };
    retention_end_to_end(Setup {
        database_url: Some(url),
        env: Vec::new(),
        s3: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb() {
    let Some(url) = common::database_url("mysql").await else {
        return;
    };
    retention_end_to_end(Setup {
        database_url: Some(url),
        env: Vec::new(),
        s3: None,
    })
    .await;
}

#[test]
fn bad_settings_are_refused_by_name() {
    for (flag, value) in [
        ("--run-retention-days", "0"),
        ("--run-retention-per-experiment", "many"),
        ("--retention-interval", "0s"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_kfpd"))
            .args(["gc", "--dry-run", flag, value])
            .output()
            .expect("run kfpd gc");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let key = flag.trim_start_matches("--").replace('-', "_");
        assert!(stderr.contains(&key), "{flag} {value}: {stderr}");
    }
}
