//! The database stopped while runs execute and clients call the API, on a PostgreSQL
//! and a MariaDB server the test starts itself: the API answers 503 naming the
//! database, nothing panics, and once the database is back — without restarting
//! kfpd — the API answers again and every run finishes. The suite stops the
//! database for a few seconds; `bench/src/bin/outage.rs` for 30 s with figures.

mod common;
mod dbserver;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Server;
use dbserver::{DbServer, Kind};
use serde_json::{json, Value};

/// How long the suite keeps the database down.
const OUTAGE: Duration = Duration::from_secs(6);

fn sleeper(seconds: u32) -> Value {
    let yaml = std::fs::read_to_string(common::pipeline("hello.yaml")).expect("hello.yaml");
    let yaml = yaml
        .replace("- echo\n", "- sleep\n")
        .replace("- hello world", &format!("- '{seconds}'"))
        .replace("enableCache: true", "enableCache: false");
    kfpd_ir::read_package("sleep.yaml", yaml.as_bytes())
        .expect("sleep package")
        .api_pipeline_spec()
}

async fn runs_by_state(server: &Server) -> Option<BTreeMap<String, usize>> {
    let (status, page) = server.get("/runs?page_size=200").await;
    if status != 200 {
        return None;
    }
    let mut states = BTreeMap::new();
    for run in page["runs"].as_array().cloned().unwrap_or_default() {
        *states
            .entry(run["state"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    Some(states)
}

async fn outage(kind: Kind) {
    let Some(mut database) = DbServer::start(kind) else {
        return;
    };
    let url = database.url("kfpd_outage");
    let server = Server::start_with(&[
        "--executor",
        "local",
        "--max-parallel-tasks",
        "6",
        "--database-url",
        &url,
    ]);
    let spec = sleeper(3);
    let mut run_ids = Vec::new();
    for index in 0..12 {
        let (status, run) = server
            .post(
                "/runs",
                &json!({"display_name": format!("outage {index}"), "pipeline_spec": spec}),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        run_ids.push(run["run_id"].as_str().unwrap_or_default().to_string());
    }
    let started = Instant::now();
    loop {
        let states = runs_by_state(&server).await.unwrap_or_default();
        if states.get("RUNNING").copied().unwrap_or(0) >= 6 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    database.stop();
    let down = Instant::now();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut unavailable_body = String::new();
    while down.elapsed() < OUTAGE {
        let calls = [
            server.get("/runs").await,
            server.get(&format!("/runs/{}", run_ids[0])).await,
            server
                .post(
                    "/runs",
                    &json!({"display_name": "during the outage", "pipeline_spec": spec}),
                )
                .await,
            server.get("/experiments").await,
        ];
        for (status, body) in calls {
            *statuses.entry(status).or_insert(0) += 1;
            assert!(
                status == 503 || status == 200,
                "{status} during the outage: {body}\nstderr:\n{}",
                server.stderr()
            );
            if status == 503 && unavailable_body.is_empty() {
                unavailable_body = body.to_string();
            }
        }
    }
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "no call noticed the outage: {statuses:?}"
    );
    assert!(
        unavailable_body.contains("database unavailable"),
        "the 503 does not say what is wrong: {unavailable_body}"
    );
    database.resume();

    let back = Instant::now();
    loop {
        let states = runs_by_state(&server).await;
        let unfinished = states
            .as_ref()
            .map(|states| {
                states
                    .iter()
                    .filter(|(state, _)| state.as_str() != "SUCCEEDED")
                    .map(|(_, count)| count)
                    .sum::<usize>()
            })
            .unwrap_or(usize::MAX);
        if unfinished == 0 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(120),
            "runs not finished after the database came back: {states:?}\nstderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for id in &run_ids {
        let (status, run) = server.get(&format!("/runs/{id}")).await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["state"], "SUCCEEDED", "{run}");
    }
    let (status, run) = server
        .post(
            "/runs",
            &json!({"display_name": "after the outage", "pipeline_spec": sleeper(0)}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("{kind:?}: calls during the outage by status {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_again() {
    outage(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_stopped_and_started_again() {
    outage(Kind::Mariadb).await;
}
