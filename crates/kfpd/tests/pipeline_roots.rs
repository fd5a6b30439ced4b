//! Runs that name their own `pipeline_root`: a directory elsewhere on the machine or a
//! bucket other than the default on the S3 endpoint (moto on loopback), artifacts listed
//! and read back from there; roots refused by name at CreateRun; and the setting that
//! restricts roots on a shared server.

mod common;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Server;
use serde_json::{json, Value};

fn two_step_spec() -> Value {
    common::pipeline_spec("two-step-artifact.yaml")
}

fn run_body(name: &str, root: &str) -> Value {
    json!({
        "display_name": name,
        "pipeline_spec": two_step_spec(),
        // A text of its own per run, so that no run reuses another's cached outputs
        // (which stay where that run wrote them).
        "runtime_config": {"pipeline_root": root, "parameters": {"text": format!("{name} {root}")}},
    })
}

async fn start_run(server: &Server, name: &str, root: &str) -> String {
    let (status, run) = server.post("/runs", &run_body(name, root)).await;
    assert_eq!(status, 200, "{root}: {run}");
    run["run_id"].as_str().expect("run_id").to_string()
}

async fn wait_for_end(server: &Server, run_id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, run) = server.get(&format!("/runs/{run_id}")).await;
        let state = run["state"].as_str().unwrap_or_default().to_string();
        if matches!(state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELED") {
            return run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "run {run_id} still {state}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every artifact of the run, each checked to lie under `prefix`, with the content
/// `:read` serves for it.
async fn artifacts_under(server: &Server, run_id: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let (status, listed) = server.get(&format!("/artifacts?run_id={run_id}")).await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["artifacts"].as_array().cloned().unwrap_or_default();
    assert!(!listed.is_empty(), "run {run_id} recorded no artifacts");
    let mut read = Vec::new();
    for artifact in listed {
        let uri = artifact["uri"].as_str().unwrap_or_default().to_string();
        assert!(uri.starts_with(prefix), "{uri} should be under {prefix}");
        let task_id = artifact["producer"]["task_id"].as_str().expect("task_id");
        let name = artifact["name"].as_str().expect("name");
        let (status, body) = server
            .get(&format!(
                "/runs/{run_id}/nodes/{task_id}/artifacts/{name}:read"
            ))
            .await;
        assert_eq!(status, 200, "{uri}: {body}");
        let data = base64::engine::general_purpose::STANDARD
            .decode(body["data"].as_str().unwrap_or_default())
            .expect("base64");
        read.push((uri, data));
    }
    read
}

async fn refused(server: &Server, root: &str) -> String {
    let (status, body) = server.post("/runs", &run_body("refused", root)).await;
    assert_eq!(status, 400, "{root}: {body}");
    let message = body["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(root), "{root}: {message}");
    message
}

async fn run_count(server: &Server) -> usize {
    let (status, runs) = server.get("/runs").await;
    assert_eq!(status, 200, "{runs}");
    runs["runs"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_in_another_directory_holds_the_artifacts() {
    let server = Server::start_with(&["--executor", "local"]);
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let as_path = elsewhere.path().join("experiments").display().to_string();
    let as_uri = format!("file://{}/second/", elsewhere.path().display());
    let first = start_run(&server, "plain path", &as_path).await;
    let second = start_run(&server, "file uri", &as_uri).await;
    for (run_id, prefix) in [
        (&first, format!("file://{as_path}/")),
        (&second, as_uri.clone()),
    ] {
        let run = wait_for_end(&server, run_id).await;
        assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());
        for (uri, data) in artifacts_under(&server, run_id, &prefix).await {
            // What was served is what lies in the directory the run named.
            let path = uri.strip_prefix("file://").expect("file uri");
            let on_disk = std::fs::read(path).unwrap_or_else(|error| panic!("{path}: {error}"));
            assert_eq!(data, on_disk, "{uri}");
        }
    }
    // Nothing of those runs went to the data dir's artifact store.
    let default_root = server.dir.path().join("artifacts");
    let stored: Vec<_> = std::fs::read_dir(&default_root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        stored.iter().all(|name| name == "logs"),
        "{stored:?} under {}",
        default_root.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_roots_are_400s_naming_the_root_and_store_nothing() {
    let server = Server::start_with(&["--executor", "local"]);
    let scratch = tempfile::tempdir().expect("temp dir");
    let file = scratch.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let under_a_file = format!("{}/sub", file.display());
    for (root, words) in [
        ("experiments/relative", "absolute path"),
        ("gs://bucket/root", "gs://"),
        ("s3://bucket/root", "no object store is configured"),
        ("/data/../etc", "traversal"),
        (under_a_file.as_str(), "cannot be written"),
    ] {
        let message = refused(&server, root).await;
        assert!(message.contains(words), "{root}: {message}");
    }
    assert_eq!(run_count(&server).await, 0, "a refused run was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_roots_restrict_what_runs_may_name() {
    let allowed = tempfile::tempdir().expect("temp dir");
    let other = tempfile::tempdir().expect("temp dir");
    let listed = allowed.path().display().to_string();
    let server = Server::start_with_env(
        &["--executor", "local"],
        &[(
            "KFPD_ALLOWED_PIPELINE_ROOTS",
            &format!("/nonexistent-kfpd,{listed}"),
        )],
    );
    let inside = format!("{listed}/team-a");
    let run_id = start_run(&server, "inside", &inside).await;
    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());
    let artifacts = artifacts_under(&server, &run_id, &format!("file://{inside}/")).await;
    assert!(!artifacts.is_empty());

    let outside = other.path().display().to_string();
    let message = refused(&server, &outside).await;
    assert!(message.contains("not allowed"), "{message}");
    assert!(message.contains(&listed), "{message}");
    // A name that merely starts like an allowed root is not under it.
    refused(&server, &format!("{listed}-sibling")).await;
    // Recurring runs are held to the same list.
    let (status, body) = server
        .post(
            "/recurringruns",
            &json!({
                "display_name": "outside",
                "pipeline_spec": two_step_spec(),
                "runtime_config": {"pipeline_root": outside},
                "max_concurrency": 1,
                "mode": "DISABLE",
                "trigger": {"periodic_schedule": {"interval_second": 3600}},
            }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&outside),
        "{body}"
    );
    assert_eq!(run_count(&server).await, 1);

    // A listed root that is not a root at all stops the server at start, named.
    let (started, stderr) = common::run_to_exit(
        &["--allowed-pipeline-roots", "relative/dir"],
        Duration::from_secs(30),
    )
    .expect("kfpd exits");
    assert!(!started);
    assert!(stderr.contains("\"relative/dir\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_in_another_bucket_holds_the_artifacts() {
    let Some(moto) = moto::moto() else {
        return;
    };
    let default_bucket = moto::unique_bucket("default");
    let other_bucket = moto::unique_bucket("team");
    kfpd_artifacts::ArtifactStore::open(moto::s3_options(&moto.endpoint, &other_bucket, true))
        .await
        .expect("create the other bucket");
    let server = common::start_on_s3(&moto.endpoint, &default_bucket);
    let root = format!("s3://{other_bucket}/experiments");
    let run_id = start_run(&server, "other bucket", &root).await;
    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());
    let direct =
        kfpd_artifacts::ArtifactStore::open(moto::s3_options(&moto.endpoint, &other_bucket, false))
            .await
            .expect("open the other bucket");
    for (uri, data) in artifacts_under(&server, &run_id, &format!("{root}/")).await {
        // Served from the bucket the run named: a store on that bucket alone has it.
        let in_bucket = uri.replacen("s3://", "minio://", 1);
        match direct.read(&in_bucket, 1 << 20).await {
            Ok(stored) => assert_eq!(data, stored.to_vec(), "{uri}"),
            // A directory artifact is served as an archive of its objects.
            Err(kfpd_artifacts::Error::IsDirectory { .. }) => {
                assert!(!direct
                    .list_directory(&in_bucket)
                    .await
                    .expect("list")
                    .is_empty())
            }
            Err(error) => panic!("{uri}: {error}"),
        }
    }
    let missing = moto::unique_bucket("missing");
    let message = refused(&server, &format!("minio://{missing}/x")).await;
    assert!(message.contains("does not exist"), "{message}");
    assert_eq!(run_count(&server).await, 1);
}
