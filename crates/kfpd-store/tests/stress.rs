//! Many writers on one database at once: recurring-run claims, run state changes,
//! task-row batches, CreateRun batches and experiment archive cascades, from many
//! tasks over several stores on one SQLite file, from two processes on one SQLite
//! file, and on PostgreSQL and MySQL (MariaDB). No write may fail: SQLite writers
//! wait for the write lock, and deadlocks or serialization failures on the servers
//! are retried inside the store.
//!
//! The servers come from `KFPD_TEST_POSTGRES_URL` / `KFPD_TEST_MYSQL_URL`, as in
//! `conformance.rs`; without one its test is skipped, except under `CI=true`.

use std::sync::Arc;
use std::time::Duration;

use kfpd_store::sql::{drop_database, Options, SqlStore};
use kfpd_store::*;

/// Workers per store and loop turns per worker; each turn is one of the workloads.
const WORKERS: usize = 4;
const TURNS: usize = 30;

/// The environment variable that turns [`stress_child`] into the second process.
const CHILD_VARIABLE: &str = "KFPD_STRESS_CHILD";

/// What every worker shares: the recurring run they race to fire, the experiment
/// their runs go to, and the experiments that are archived while runs join them.
#[derive(Clone, Debug)]
struct Shared {
    recurring_run_id: String,
    experiment_id: String,
    archived_ids: Vec<String>,
}

impl Shared {
    fn encode(&self) -> String {
        let mut parts = vec![self.recurring_run_id.clone(), self.experiment_id.clone()];
        parts.extend(self.archived_ids.iter().cloned());
        parts.join(",")
    }

    fn decode(text: &str) -> Shared {
        let parts: Vec<&str> = text.split(',').collect();
        assert!(parts.len() >= 3, "bad shared ids {text:?}");
        Shared {
            recurring_run_id: parts[0].to_string(),
            experiment_id: parts[1].to_string(),
            archived_ids: parts[2..].iter().map(|id| id.to_string()).collect(),
        }
    }
}

/// Failed operations, by name and error, of one run of the workload.
#[derive(Default)]
struct Tally {
    operations: usize,
    errors: Vec<String>,
}

impl Tally {
    fn record<T>(&mut self, operation: &str, result: Result<T, Error>) -> Option<T> {
        self.operations += 1;
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push(format!("{operation}: {error}"));
                None
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.operations += other.operations;
        self.errors.extend(other.errors);
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn new_run(experiment_id: &str, name: &str) -> NewRun {
    let at = now();
    NewRun {
        experiment_id: experiment_id.to_string(),
        namespace: String::new(),
        display_name: name.to_string(),
        description: String::new(),
        service_account: "pipeline-runner".into(),
        created_at: at,
        scheduled_at: at,
        pipeline_id: String::new(),
        pipeline_version_id: String::new(),
        recurring_run_id: String::new(),
        runtime_config: "{}".into(),
        pipeline_spec: r#"{"pipelineInfo":{"name":"stress"}}"#.into(),
        inline_spec: true,
    }
}

fn new_task(run_id: &str, path: &str, state: TaskState) -> Task {
    let at = now();
    Task {
        id: new_id(),
        run_id: run_id.to_string(),
        parent_id: String::new(),
        path: path.to_string(),
        kind: TaskKind::Runtime,
        name: path.to_string(),
        display_name: path.to_string(),
        iteration_index: -1,
        state,
        state_history: vec![TaskStateChange { time: at, state }],
        error: None,
        created_at: at,
        started_at: at,
        finished_at: 0,
        attempts: 1,
        inputs: "{}".into(),
        outputs: "{}".into(),
        details: "{}".into(),
        fingerprint: String::new(),
        cached_from: String::new(),
        cache_scope: String::new(),
    }
}

async fn setup(store: &SqlStore) -> Shared {
    let experiment = |name: &str| NewExperiment {
        name: format!("{name}-{}", new_id()),
        description: String::new(),
        namespace: String::new(),
        created_at: now(),
    };
    let shared = store
        .create_experiment(experiment("stress"))
        .await
        .expect("shared experiment");
    let mut archived_ids = Vec::new();
    for index in 0..2 {
        let created = store
            .create_experiment(experiment(&format!("archived-{index}")))
            .await
            .expect("archived experiment");
        archived_ids.push(created.id);
    }
    let recurring = store
        .create_recurring_run(NewRecurringRun {
            display_name: "stress".into(),
            description: String::new(),
            namespace: String::new(),
            experiment_id: shared.id.clone(),
            service_account: String::new(),
            max_concurrency: 1_000_000,
            no_catchup: true,
            enabled: true,
            created_at: 0,
            trigger: Trigger::Periodic {
                interval_second: 60,
                start_time: Some(0),
                end_time: None,
            },
            pipeline_id: "p".into(),
            pipeline_version_id: String::new(),
            pipeline_spec: None,
            runtime_config: String::new(),
            next_fire_at: Some(1),
        })
        .await
        .expect("recurring run");
    Shared {
        recurring_run_id: recurring.id,
        experiment_id: shared.id,
        archived_ids,
    }
}

/// Claims the next tick of the shared recurring run and finishes its run.
async fn claim(store: &SqlStore, shared: &Shared, tally: &mut Tally) {
    let Some(row) = tally.record(
        "get recurring run",
        store.get_recurring_run(&shared.recurring_run_id).await,
    ) else {
        return;
    };
    let tick = row.last_fired_at.map_or(1, |last| last + 1);
    let mut run = new_run(&row.experiment_id, &format!("tick-{tick}"));
    run.scheduled_at = tick;
    run.recurring_run_id = row.id.clone();
    let fire = Fire {
        recurring_run_id: row.id.clone(),
        guard: row.guard(),
        tick,
        next_fire_at: Some(tick + 1),
        max_concurrency: row.max_concurrency,
        run_id: format!("{}-{tick}", row.id),
        run,
    };
    let outcome = tally.record("fire recurring run", store.fire_recurring_run(fire).await);
    if let Some(FireOutcome::Fired(run)) = outcome {
        finish(store, &run.id, tally).await;
    }
}

async fn finish(store: &SqlStore, run_id: &str, tally: &mut Tally) {
    let running = store
        .transition_run(run_id, &[RunState::Pending], RunState::Running, None, now())
        .await;
    tally.record("run to running", running);
    let done = store
        .transition_run(
            run_id,
            &[RunState::Running],
            RunState::Succeeded,
            None,
            now(),
        )
        .await;
    tally.record("run to succeeded", done);
}

/// A run as the engine drives it: state changes, task batches, an artifact,
/// archive and unarchive.
async fn drive_run(store: &SqlStore, shared: &Shared, tally: &mut Tally) {
    let created = store
        .create_run(new_run(&shared.experiment_id, "driven"))
        .await;
    let Some(run) = tally.record("create run", created) else {
        return;
    };
    let running = store
        .transition_run(
            &run.id,
            &[RunState::Pending],
            RunState::Running,
            None,
            now(),
        )
        .await;
    tally.record("run to running", running);
    let mut tasks: Vec<Task> = ["root", "root/a", "root/b", "root/c"]
        .iter()
        .map(|path| new_task(&run.id, path, TaskState::Running))
        .collect();
    tally.record("save tasks", store.save_tasks(&tasks).await);
    for task in &mut tasks {
        task.state = TaskState::Succeeded;
        task.finished_at = now();
    }
    tally.record("save tasks again", store.save_tasks(&tasks).await);
    let artifact = Artifact {
        id: rand::random::<i64>().abs(),
        run_id: run.id.clone(),
        producer_task_id: tasks[1].id.clone(),
        output_key: "out".into(),
        name: "out".into(),
        uri: format!("file:///stress/{}", run.id),
        schema_title: "system.Artifact".into(),
        schema_version: "0.0.1".into(),
        metadata: "{}".into(),
        created_at: now(),
    };
    tally.record("create artifact", store.create_artifact(&artifact).await);
    let link = ArtifactLink {
        task_id: tasks[2].id.clone(),
        artifact_id: artifact.id,
        direction: Direction::Input,
        key: "in".into(),
    };
    tally.record("link artifact", store.link_artifact(&run.id, &link).await);
    let done = store
        .transition_run(
            &run.id,
            &[RunState::Running],
            RunState::Succeeded,
            None,
            now(),
        )
        .await;
    tally.record("run to succeeded", done);
    let archived = store
        .set_run_storage_state(&run.id, StorageState::Archived, now())
        .await;
    tally.record("archive run", archived);
    let restored = store
        .set_run_storage_state(&run.id, StorageState::Available, now())
        .await;
    tally.record("unarchive run", restored);
}

/// Concurrent CreateRun calls, which share transactions, into an experiment that
/// other workers archive meanwhile.
async fn create_batch(store: &SqlStore, experiment_id: &str, tally: &mut Tally) {
    let creates =
        (0..8).map(|index| store.create_run(new_run(experiment_id, &format!("b{index}"))));
    for created in futures::future::join_all(creates).await {
        tally.record("create run in batch", created);
    }
}

/// Archives an experiment with its runs, then brings it back.
async fn archive_cycle(store: &SqlStore, experiment_id: &str, tally: &mut Tally) {
    for state in [StorageState::Archived, StorageState::Available] {
        let changed = store
            .set_experiment_storage_state(experiment_id, state, now())
            .await;
        tally.record("archive experiment", changed);
    }
}

async fn worker(store: Arc<SqlStore>, shared: Shared, worker: usize) -> Tally {
    let mut tally = Tally::default();
    for turn in 0..TURNS {
        let archived = &shared.archived_ids[turn % shared.archived_ids.len()];
        match (worker + turn) % 5 {
            0 | 1 => claim(&store, &shared, &mut tally).await,
            2 => drive_run(&store, &shared, &mut tally).await,
            3 => create_batch(&store, archived, &mut tally).await,
            _ => archive_cycle(&store, archived, &mut tally).await,
        }
    }
    tally
}

/// Runs [`WORKERS`] workers on each store and sums what they saw.
async fn run_workers(stores: &[Arc<SqlStore>], shared: &Shared) -> Tally {
    let mut handles = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        for number in 0..WORKERS {
            let store = Arc::clone(store);
            let shared = shared.clone();
            handles.push(tokio::spawn(worker(
                store,
                shared,
                index * WORKERS + number,
            )));
        }
    }
    let mut tally = Tally::default();
    for handle in handles {
        tally.merge(handle.await.expect("worker panicked"));
    }
    tally
}

/// What must hold after the storm: every tick claimed once and contiguously, and
/// run totals (kept in `run_counts`) equal to the runs really listed.
async fn check_invariants(store: &SqlStore, shared: &Shared) {
    let row = store
        .get_recurring_run(&shared.recurring_run_id)
        .await
        .expect("recurring run");
    let fired = row.last_fired_at.unwrap_or(0);
    assert_eq!(row.fired_count, fired, "every claimed tick fired once");
    let mut experiments = vec![shared.experiment_id.clone()];
    experiments.extend(shared.archived_ids.iter().cloned());
    for experiment_id in experiments {
        let scope = Scope {
            experiment_id: Some(experiment_id.clone()),
            ..Scope::default()
        };
        let mut listed = 0;
        let mut token = String::new();
        let mut total = None;
        loop {
            let query = ListQuery::new(list::Resource::Run, 200, &token, "", None).expect("query");
            let page = store.list_runs(&scope, &query).await.expect("list runs");
            listed += page.items.len() as i64;
            total.get_or_insert(page.total_size);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(
            total,
            Some(listed),
            "run total of experiment {experiment_id}"
        );
    }
}

fn assert_no_errors(label: &str, tally: &Tally) {
    let shown: Vec<&String> = tally.errors.iter().take(10).collect();
    println!(
        "{label}: {} errors in {} operations",
        tally.errors.len(),
        tally.operations
    );
    assert!(
        tally.errors.is_empty(),
        "{label}: {} of {} operations failed, first ones: {shown:#?}",
        tally.errors.len(),
        tally.operations
    );
}

async fn sqlite_store(url: &str) -> Arc<SqlStore> {
    Arc::new(
        SqlStore::connect(&Options::new(url))
            .await
            .expect("sqlite store"),
    )
}

/// Several stores (each its own pool, as separate servers in one process would
/// have) with several workers each, on one SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_many_tasks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("kfpd.db").display());
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(sqlite_store(&url).await);
    }
    let shared = setup(&stores[0]).await;
    let tally = run_workers(&stores, &shared).await;
    check_invariants(&stores[0], &shared).await;
    assert_no_errors("sqlite, 3 stores in one process", &tally);
}

/// The same workload from this process and a second one (this test binary again,
/// running [`stress_child`]) on one SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_processes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("kfpd.db").display());
    let store = sqlite_store(&url).await;
    let shared = setup(&store).await;
    let ready = dir.path().join("child-ready");
    let binary = std::env::current_exe().expect("test binary path");
    let child = tokio::process::Command::new(binary)
        .args(["--exact", "stress_child", "--ignored", "--nocapture"])
        .env(
            CHILD_VARIABLE,
            format!("{url}|{}|{}", shared.encode(), ready.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the second process");
    // Start together: the child connects first, then both run the workload.
    let mut waited = Duration::ZERO;
    while !ready.exists() {
        assert!(
            waited < Duration::from_secs(30),
            "second process never got ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    let tally = run_workers(std::slice::from_ref(&store), &shared).await;
    let output = child.wait_with_output().await.expect("second process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "second process failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let child_line = stdout
        .lines()
        .find(|line| line.starts_with("stress child: "))
        .unwrap_or_else(|| panic!("second process printed no tally:\n{stdout}"));
    println!("sqlite, second process of two: {child_line}");
    check_invariants(&store, &shared).await;
    assert!(
        child_line.starts_with("stress child: 0 errors"),
        "second process saw errors:\n{stdout}"
    );
    assert_no_errors("sqlite, this process of two", &tally);
}

/// The second process of [`sqlite_two_processes`]; ignored unless that test starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "started by sqlite_two_processes as its second process"]
async fn stress_child() {
    let spec = std::env::var(CHILD_VARIABLE).expect("run by sqlite_two_processes");
    let mut parts = spec.splitn(3, '|');
    let (Some(url), Some(shared), Some(ready)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("bad {CHILD_VARIABLE} value {spec:?}");
    };
    let store = sqlite_store(url).await;
    let shared = Shared::decode(shared);
    std::fs::write(ready, b"ready").expect("ready file");
    let tally = run_workers(&[store], &shared).await;
    for error in tally.errors.iter().take(10) {
        println!("stress child error: {error}");
    }
    println!(
        "stress child: {} errors in {} operations",
        tally.errors.len(),
        tally.operations
    );
}

fn server_url(kind: &str) -> String {
    let (variable, default) = match kind {
        "postgres" => (
            "KFPD_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432",
        ),
        _ => ("KFPD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
    };
    std::env::var(variable).unwrap_or_else(|_| default.to_string())
}

/// Three stores (as three servers would have) with several workers each, on one
/// PostgreSQL or MySQL database of the test's own; `params` go on the URL.
async fn server_stress(kind: &str, params: &str) {
    let database = format!("kfpd_stress_{}", &new_id().replace('-', "")[..16]);
    let url = format!("{}/{database}{params}", server_url(kind));
    let first = match SqlStore::connect(&Options::new(url.clone())).await {
        Ok(store) => Arc::new(store),
        Err(error) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{kind} is required under CI=true but not usable: {error}");
            }
            eprintln!(
                "skipping {kind} stress test: {error}. Start {kind} locally or set KFPD_TEST_{}_URL to run it.",
                kind.to_uppercase()
            );
            return;
        }
    };
    let mut stores = vec![first];
    for _ in 0..2 {
        let store = SqlStore::connect(&Options::new(url.clone()))
            .await
            .expect("second store");
        stores.push(Arc::new(store));
    }
    let shared = setup(&stores[0]).await;
    let tally = run_workers(&stores, &shared).await;
    check_invariants(&stores[0], &shared).await;
    for store in &stores {
        store.pool().close().await;
    }
    drop_database(&url).await.expect("drop test database");
    assert_no_errors(&format!("{kind}{params}, 3 stores"), &tally);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_many_tasks() {
    server_stress("postgres", "").await;
}

/// At SERIALIZABLE isolation (a setting some deployments choose) PostgreSQL aborts
/// concurrent read-write transactions with serialization failures (40001).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_serializable() {
    server_stress(
        "postgres",
        "?options[default_transaction_isolation]=serializable",
    )
    .await;
}

/// InnoDB's gap locks make concurrent upserts deadlock (1213) now and then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_many_tasks() {
    server_stress("mysql", "").await;
}

/// A deadlock between a state change and another session, which PostgreSQL breaks
/// by aborting the state change (it waited first, so its deadlock check runs
/// first): the store must run the transaction again and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deadlock_is_retried() {
    use sqlx::{Connection, Executor, Row};

    let database = format!("kfpd_stress_{}", &new_id().replace('-', "")[..16]);
    let url = format!("{}/{database}", server_url("postgres"));
    let store = match SqlStore::connect(&Options::new(url.clone())).await {
        Ok(store) => Arc::new(store),
        Err(error) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("postgres is required under CI=true but not usable: {error}");
            }
            eprintln!("skipping postgres deadlock test: {error}. Start postgres locally or set KFPD_TEST_POSTGRES_URL to run it.");
            return;
        }
    };
    let shared = setup(&store).await;
    let run = store
        .create_run(new_run(&shared.experiment_id, "deadlocked"))
        .await
        .expect("run");

    // The other session locks the run's PENDING count rows, which the state change
    // updates after locking the run.
    let mut other = sqlx::AnyConnection::connect(&url)
        .await
        .expect("other session");
    other.execute("BEGIN").await.expect("begin");
    // Its own deadlock check waits long, so PostgreSQL aborts the store's side.
    other
        .execute("SET LOCAL deadlock_timeout = '30s'")
        .await
        .expect("deadlock_timeout");
    sqlx::query("UPDATE run_counts SET run_count = run_count WHERE experiment_uuid = $1 AND state = 'PENDING'")
        .bind(&shared.experiment_id)
        .execute(&mut other)
        .await
        .expect("lock the count rows");

    let changing = {
        let store = Arc::clone(&store);
        let id = run.id.clone();
        tokio::spawn(async move {
            store
                .transition_run(&id, &[RunState::Pending], RunState::Running, None, now())
                .await
        })
    };
    // Wait until the state change holds the run and waits for the count rows.
    let mut watcher = sqlx::AnyConnection::connect(&url).await.expect("watcher");
    let mut waited = Duration::ZERO;
    loop {
        let row = sqlx::query("SELECT COUNT(*) FROM pg_locks WHERE NOT granted")
            .fetch_one(&mut watcher)
            .await
            .expect("pg_locks");
        if row.try_get::<i64, _>(0).expect("count") > 0 {
            break;
        }
        assert!(
            waited < Duration::from_secs(30),
            "the state change never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    // Now wait for the run: a cycle, which PostgreSQL breaks after a second.
    sqlx::query("SELECT uuid FROM runs WHERE uuid = $1 FOR UPDATE")
        .bind(&run.id)
        .execute(&mut other)
        .await
        .expect("the other session gets the run once the store's side is aborted");
    other.execute("COMMIT").await.expect("commit");

    let changed = changing.await.expect("state change task");
    let changed = changed.expect("the deadlocked state change is run again and succeeds");
    assert_eq!(changed.state, RunState::Running);
    assert_eq!(
        store.get_run(&run.id).await.expect("run").state,
        RunState::Running
    );
    check_invariants(&store, &shared).await;
    store.pool().close().await;
    drop(watcher);
    drop(other);
    drop_database(&url).await.expect("drop test database");
}

/// A writer that waits longer than the busy timeout for another process's write
/// lock fails with `Busy` (which the server answers with 503), not `Internal`, and
/// writes again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_busy_beyond_the_timeout_is_busy() {
    use sqlx::{Connection, Executor};

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("kfpd.db").display());
    let mut options = Options::new(url.clone());
    options.busy_timeout = Duration::from_millis(200);
    let store = SqlStore::connect(&options).await.expect("sqlite store");
    let new = || NewExperiment {
        name: format!("busy-{}", new_id()),
        description: String::new(),
        namespace: String::new(),
        created_at: now(),
    };

    let mut holder = sqlx::AnyConnection::connect(&url).await.expect("holder");
    holder
        .execute("BEGIN IMMEDIATE")
        .await
        .expect("take the write lock");
    let refused = store.create_experiment(new()).await;
    match &refused {
        Err(Error::Busy(message)) => assert!(
            message.contains("busy timeout"),
            "message names the cause: {message}"
        ),
        other => panic!("expected Busy, got {other:?}"),
    }
    holder
        .execute("ROLLBACK")
        .await
        .expect("release the write lock");
    store
        .create_experiment(new())
        .await
        .expect("writes again once the lock is released");
}
