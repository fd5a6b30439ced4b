//! Runs whose artifacts live in an S3-compatible store: `kfpd serve` configured with
//! upstream's OBJECTSTORECONFIG_* variables against a moto server on loopback.

mod common;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Server;
use kfpd_store::sql::{Options, SqlStore};
use kfpd_store::ExecutionStore;
use serde_json::{json, Value};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_go_to_the_s3_store() {
    let Some(moto) = moto::moto() else {
        return;
    };
    let bucket = moto::unique_bucket("serve");
    let server = common::start_on_s3(&moto.endpoint, &bucket);
    let spec = common::pipeline_spec("two-step-artifact.yaml");
    let (status, run) = server
        .post(
            "/runs",
            &json!({"display_name": "s3", "pipeline_spec": spec}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let run = wait_for_end(&server, &run_id).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}\n{}", server.stderr());

    let (status, artifacts) = server.get(&format!("/artifacts?run_id={run_id}")).await;
    assert_eq!(status, 200, "{artifacts}");
    let listed = artifacts["artifacts"].as_array().expect("artifacts");
    assert!(!listed.is_empty());
    let prefix = format!("minio://{bucket}/v2/artifacts/");
    for artifact in listed {
        let uri = artifact["uri"].as_str().unwrap_or_default();
        assert!(uri.starts_with(&prefix), "{uri} should be under {prefix}");
    }
    // The produced artifact is readable back through upstream's read endpoint.
    let produced = &listed[0];
    let task_id = produced["producer"]["task_id"].as_str().unwrap();
    let name = produced["name"].as_str().unwrap();
    let (status, read) = server
        .get(&format!(
            "/runs/{run_id}/nodes/{task_id}/artifacts/{name}:read"
        ))
        .await;
    assert_eq!(status, 200, "{read}");
    let data = base64::engine::general_purpose::STANDARD
        .decode(read["data"].as_str().unwrap())
        .unwrap();
    assert!(!data.is_empty());
    // Nothing of the run's artifacts was written under the data dir.
    assert!(!server
        .dir
        .path()
        .join("artifacts")
        .join("two-step-artifact")
        .exists());

    // Every task's log went to the bucket too, and is served from there once the
    // task's work dir is gone.
    let url = format!("sqlite://{}", server.dir.path().join("kfpd.db").display());
    let store = SqlStore::connect(&Options::new(url)).await.unwrap();
    let tasks = store.list_tasks(&run_id).await.unwrap();
    let containers: Vec<_> = tasks
        .iter()
        .filter(|task| task.kind == kfpd_store::TaskKind::Runtime)
        .collect();
    assert!(!containers.is_empty());
    let mut logged = String::new();
    for task in containers {
        let details: Value = serde_json::from_str(&task.details).unwrap();
        let expected = format!(
            "minio://{bucket}/v2/artifacts/logs/{run_id}/{}/main.log",
            task.id
        );
        assert_eq!(details["log_uri"], json!(expected), "{details}");
        let log_url = format!(
            "{}/apis/v1alpha1/runs/{run_id}/nodes/{}/log",
            server.base, task.id
        );
        let before = server.client.get(&log_url).send().await.unwrap();
        assert_eq!(before.status(), 200);
        let before = before.text().await.unwrap();
        logged.push_str(&before);
        let work = server.dir.path().join("work").join(&run_id).join(&task.id);
        std::fs::remove_dir_all(&work).unwrap();
        let after = server.client.get(&log_url).send().await.unwrap();
        assert_eq!(after.status(), 200);
        assert_eq!(
            after.text().await.unwrap(),
            before,
            "served from the bucket"
        );
    }
    assert!(!logged.is_empty(), "component2 cats its input into its log");
}
