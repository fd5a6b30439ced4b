//! `kill -9` of the real `kfpd serve` with 100 runs in flight — tasks running, tasks
//! waiting for a slot, runs not claimed yet, a recurring run due — then a restart on
//! the same database: no run and no task row is lost, every interrupted task runs
//! again (docs/engine.md, "Terminate, retry, restart"), and every run ends SUCCEEDED,
//! the recurring run's missed ticks included, each tick once. On SQLite, PostgreSQL
//! and MariaDB.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use kfpd_store::sql::{Options, Sql, SqlStore};
use serde_json::{json, Value};
use sqlx::Row;

const RUNS: usize = 100;
const SLOTS: &str = "20";

/// A one-task pipeline whose task sleeps `seconds`, caching off.
fn sleeper(seconds: u32) -> Value {
    let yaml = std::fs::read_to_string(common::pipeline("hello.yaml")).expect("hello.yaml");
    let yaml = yaml
        .replace("- echo\n", "- sleep\n")
        .replace("- hello world", &format!("- '{seconds}'"))
        .replace("enableCache: true", "enableCache: false");
    assert!(yaml.contains("- sleep"), "hello.yaml changed shape");
    kfpd_ir::read_package("sleep.yaml", yaml.as_bytes())
        .expect("sleep package")
        .api_pipeline_spec()
}

/// Rows as the database holds them: run states, and per task its run, state and
/// how many times it started.
#[derive(Debug, Default)]
struct Snapshot {
    runs: BTreeMap<String, String>,
    tasks: HashMap<String, (String, String, usize)>,
}

impl Snapshot {
    async fn read(store: &SqlStore) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let (text, args) = Sql::new("SELECT uuid, state FROM runs").build(store.dialect());
        for row in sqlx::query_with(&text, args)
            .fetch_all(store.pool())
            .await
            .expect("runs")
        {
            snapshot
                .runs
                .insert(text_of(&row, "uuid"), text_of(&row, "state"));
        }
        let (text, args) = Sql::new("SELECT uuid, run_uuid, state, state_history FROM tasks")
            .build(store.dialect());
        for row in sqlx::query_with(&text, args)
            .fetch_all(store.pool())
            .await
            .expect("tasks")
        {
            let history: Vec<Value> =
                serde_json::from_str(&text_of(&row, "state_history")).unwrap_or_default();
            let starts = history
                .iter()
                .filter(|change| change["s"] == "Running")
                .count();
            snapshot.tasks.insert(
                text_of(&row, "uuid"),
                (text_of(&row, "run_uuid"), text_of(&row, "state"), starts),
            );
        }
        snapshot
    }

    fn count(&self, state: &str) -> usize {
        self.runs.values().filter(|value| *value == state).count()
    }
}

/// A text column; MySQL reports some as bytes.
fn text_of(row: &sqlx::any::AnyRow, column: &str) -> String {
    row.try_get::<String, _>(column).unwrap_or_else(|_| {
        let bytes: Vec<u8> = row.try_get(column).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

async fn metric(server: &Server, name: &str) -> f64 {
    let text = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn crash_and_restart(backend: &str, database_url: Option<String>) {
    let mut args = vec!["--executor", "local", "--max-parallel-tasks", SLOTS];
    if let Some(url) = &database_url {
        args.extend(["--database-url", url.as_str()]);
    }
    let server = Server::start_with(&args);
    // Long enough that on a loaded machine the slots fill before the first
    // tasks end (with 2 s they did not, with other builds on 2 cores).
    let spec = sleeper(5);
    let mut run_ids = Vec::new();
    for index in 0..RUNS - 10 {
        let (status, run) = server
            .post(
                "/runs",
                &json!({"display_name": format!("crash {index}"), "pipeline_spec": spec}),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        run_ids.push(run["run_id"].as_str().unwrap_or_default().to_string());
    }
    let (status, recurring) = server
        .post(
            "/recurringruns",
            &json!({
                "display_name": "every second",
                "pipeline_spec": spec,
                "mode": "ENABLE",
                "max_concurrency": 10,
                "no_catchup": false,
                "trigger": {"periodic_schedule": {"interval_second": 1}},
            }),
        )
        .await;
    assert_eq!(status, 200, "{recurring}");
    let recurring_id = recurring["recurring_run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let started = Instant::now();
    while metric(&server, "kfpd_tasks_running").await < 20.0
        || metric(&server, "kfpd_tasks_waiting").await < 1.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "tasks never filled the slots; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last ten arrive as the process dies: some are not claimed yet.
    let bodies: Vec<Value> = (RUNS - 10..RUNS)
        .map(|index| json!({"display_name": format!("crash {index}"), "pipeline_spec": spec}))
        .collect();
    let creates = bodies.iter().map(|body| server.post("/runs", body));
    for (status, run) in futures::future::join_all(creates).await {
        assert_eq!(status, 200, "{run}");
        run_ids.push(run["run_id"].as_str().unwrap_or_default().to_string());
    }
    let killed = Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .is_ok_and(|status| status.success());
    assert!(killed, "cannot kill kfpd");
    let dir = server.stop();

    let url = database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("kfpd.db").display()));
    let store = SqlStore::connect(&Options::new(url)).await.expect("store");
    let before = Snapshot::read(&store).await;
    let running_tasks: Vec<(&String, usize)> = before
        .tasks
        .iter()
        .filter(|(_, (_, state, _))| state == "RUNNING")
        .map(|(id, (_, _, starts))| (id, *starts))
        .collect();
    eprintln!(
        "{backend} at kill -9: {} runs ({} RUNNING, {} PENDING, {} SUCCEEDED), {} task rows ({} RUNNING)",
        before.runs.len(),
        before.count("RUNNING"),
        before.count("PENDING"),
        before.count("SUCCEEDED"),
        before.tasks.len(),
        running_tasks.len()
    );
    for id in &run_ids {
        assert!(before.runs.contains_key(id), "created run {id} not stored");
    }
    assert!(before.count("RUNNING") >= 20, "{before:?}");
    // Ticks come due while nothing runs.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let server = Server::start_in(dir, &args);
    let started = Instant::now();
    loop {
        let now = Snapshot::read(&store).await;
        let unfinished = now.runs.len() - now.count("SUCCEEDED");
        if unfinished == 0 && now.runs.len() >= before.runs.len() + 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{unfinished} runs not finished after the restart: {:?}\nstderr:\n{}",
            now.runs
                .iter()
                .filter(|(_, state)| *state != "SUCCEEDED")
                .collect::<Vec<_>>(),
            server.stderr()
        );
        if now.runs.len() > before.runs.len() + 4 {
            // Enough missed ticks fired: stop the schedule so the set can finish.
            let (status, body) = server
                .post(
                    &format!("/recurringruns/{recurring_id}:disable"),
                    &json!({}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = Snapshot::read(&store).await;
    for id in before.runs.keys() {
        assert_eq!(
            after.runs.get(id).map(String::as_str),
            Some("SUCCEEDED"),
            "run {id} was {:?} before the restart",
            before.runs.get(id)
        );
    }
    for (id, (run, _, _)) in &before.tasks {
        let (after_run, state, _) = after
            .tasks
            .get(id)
            .unwrap_or_else(|| panic!("task row {id} of run {run} lost"));
        assert_eq!(after_run, run);
        assert_eq!(state, "SUCCEEDED", "task {id}");
    }
    for (id, starts) in &running_tasks {
        let (_, _, starts_after) = &after.tasks[*id];
        assert!(
            starts_after > starts,
            "task {id} was RUNNING at the kill and did not run again"
        );
    }
    // Each tick of the recurring run has one run, and none was missed.
    let (text, args) = {
        let mut sql = Sql::new("SELECT scheduled_at FROM runs WHERE recurring_run_uuid = ");
        sql.bind(&recurring_id);
        sql.build(store.dialect())
    };
    let ticks: Vec<i64> = sqlx::query_with(&text, args)
        .fetch_all(store.pool())
        .await
        .expect("ticks")
        .iter()
        .map(|row| row.try_get::<i64, _>("scheduled_at").unwrap_or_default())
        .collect();
    let distinct: HashSet<i64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    eprintln!(
        "{backend} after restart: {} runs SUCCEEDED, {} task rows, {} interrupted tasks ran again, {} recurring ticks fired",
        after.count("SUCCEEDED"),
        after.tasks.len(),
        running_tasks.len(),
        ticks.len()
    );
    drop(server);
    store.pool().close().await;
    if let Some(url) = &database_url {
        kfpd_store::sql::drop_database(url)
            .await
            .expect("drop test database");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    crash_and_restart("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Some(url) = common::database_url("postgres").await else {
        return;
    };
    crash_and_restart("postgres", Some(url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb() {
    let Some(url) = common::database_url("mysql").await else {
        return;
    };
    crash_and_restart("mariadb", Some(url)).await;
}
