//! Recurring runs fired by the real binary: the scheduler inside `kfpd serve`,
//! and two `kfpd scheduler` processes sharing a PostgreSQL or MySQL (MariaDB)
//! database, each tick fired once over hundreds of ticks and a crash.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use kfpd_store::list::Resource;
use kfpd_store::sql::{Options, SqlStore};
use kfpd_store::{ListQuery, Run, RunState, RunStore, Scope};
use serde_json::{json, Value};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

fn rfc3339(seconds: i64) -> String {
    // Enough for test times: UTC, whole seconds.
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn adder_spec() -> Value {
    let path = common::pipeline("add.yaml");
    let bytes = std::fs::read(&path).expect("pipeline file");
    kfpd_ir::read_package("add_numbers.yaml", &bytes)
        .expect("package")
        .api_pipeline_spec()
}

fn every_second(name: &str, start: i64) -> Value {
    json!({
        "display_name": name,
        "pipeline_spec": adder_spec(),
        "runtime_config": {"parameters": {"a": 1, "b": 2}},
        "max_concurrency": 10,
        "mode": "ENABLE",
        "trigger": {"periodic_schedule": {"interval_second": 1, "start_time": rfc3339(start)}},
    })
}

async fn runs_of(server: &Server, recurring_run_id: &str) -> Vec<Value> {
    let filter = json!({"predicates": [{
        "operation": "EQUALS", "key": "recurring_run_id", "string_value": recurring_run_id
    }]})
    .to_string();
    let mut runs = Vec::new();
    let mut token = String::new();
    loop {
        let path = format!(
            "/runs?page_size=200&page_token={token}&filter={}",
            urlencode(&filter)
        );
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        runs.extend(page["runs"].as_array().cloned().unwrap_or_default());
        token = page["next_page_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            return runs;
        }
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn scheduled_at(run: &Value) -> i64 {
    let text = run["scheduled_at"].as_str().expect("scheduled_at");
    parse_rfc3339(text)
}

fn parse_rfc3339(text: &str) -> i64 {
    // `YYYY-MM-DDTHH:MM:SSZ` as the API writes whole-second times.
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().expect("digits");
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3_600 + minute * 60 + second
}

#[test]
fn rfc3339_helpers_agree() {
    for seconds in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
        assert_eq!(parse_rfc3339(&rfc3339(seconds)), seconds);
    }
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
}

async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The scheduler inside `kfpd serve`: a one-second periodic recurring run
/// catches up its missed ticks, keeps firing, stops when disabled, resumes
/// without backfill when enabled, and can be edited in place.
#[tokio::test]
async fn serve_fires_recurring_runs() {
    let server = Server::start();
    let start = now() - 3;
    let (status, created) = server
        .post("/recurringruns", &every_second("every second", start))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["recurring_run_id"].as_str().unwrap().to_string();

    wait_for(Duration::from_secs(20), "five runs", || async {
        runs_of(&server, &id).await.len() >= 5
    })
    .await;
    let runs = runs_of(&server, &id).await;
    let ticks: BTreeSet<i64> = runs.iter().map(scheduled_at).collect();
    assert_eq!(ticks.len(), runs.len(), "one run per tick");
    assert_eq!(
        *ticks.first().unwrap(),
        start + 1,
        "catch-up from the start time"
    );
    assert!(ticks
        .iter()
        .zip(ticks.iter().skip(1))
        .all(|(a, b)| b - a == 1));
    for run in &runs {
        assert_eq!(run["recurring_run_id"], id.as_str());
        assert_eq!(run["experiment_id"], created["experiment_id"]);
        let name = run["display_name"].as_str().unwrap();
        assert!(name.starts_with("everysecond"), "{name}");
    }

    // Edits: a five-field cron is refused with the six-field form …
    let response = server
        .client
        .patch(server.url(&format!("/recurringruns/{id}")))
        .json(&json!({"trigger": {"cron_schedule": {"cron": "*/5 * * * *"}}}))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("0 */5 * * * *"),
        "{body}"
    );
    // … and a description and concurrency change are kept.
    let response = server
        .client
        .patch(server.url(&format!("/recurringruns/{id}")))
        .json(&json!({"description": "edited", "maxConcurrency": 5}))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["description"], "edited");
    assert_eq!(body["max_concurrency"], "5");

    let (status, _) = server
        .post(&format!("/recurringruns/{id}:disable"), &json!({}))
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stopped = runs_of(&server, &id).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        runs_of(&server, &id).await.len(),
        stopped,
        "disabled: no runs"
    );
    // Nothing executes runs here: end them, or max_concurrency holds new ticks back.
    for run in runs_of(&server, &id).await {
        let run_id = run["run_id"].as_str().unwrap();
        let (status, body) = server
            .post(&format!("/runs/{run_id}:terminate"), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let enabled_at = now();
    let (status, _) = server
        .post(&format!("/recurringruns/{id}:enable"), &json!({}))
        .await;
    assert_eq!(status, 200);
    wait_for(Duration::from_secs(15), "a run after enabling", || async {
        runs_of(&server, &id).await.len() > stopped + 1
    })
    .await;
    let resumed: Vec<i64> = runs_of(&server, &id)
        .await
        .iter()
        .map(scheduled_at)
        .collect();
    let last_before = *resumed[..stopped].iter().max().unwrap();
    let first_after = *resumed[stopped..].iter().min().unwrap();
    assert!(
        first_after > enabled_at - 1 && first_after - last_before > 3,
        "no backfill of the disabled period: {last_before} then {first_after} (enabled at {enabled_at})"
    );

    let (status, _) = server.delete(&format!("/recurringruns/{id}")).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let left = runs_of(&server, &id).await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs_of(&server, &id).await.len(), left, "deleted: no runs");
}

/// One `kfpd scheduler` process.
struct SchedulerProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl SchedulerProcess {
    fn start(database_url: &str) -> SchedulerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kfpd"))
            .arg("scheduler")
            .arg("--database-url")
            .arg(database_url)
            .arg("--data-dir")
            .arg(dir.path())
            // One line per fired run, to see that both schedulers fire.
            .env("KFPD_LOG", "warn,kfpd_server::service::schedules=info")
            .env_remove("DBCONFIG_HOST")
            .env_remove("DBDRIVERNAME")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kfpd scheduler");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let (sender, receiver) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("kfpd scheduler running") {
                    let _ = sender.send(());
                }
            }
        });
        if receiver.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let text = stderr.lock().map(|t| t.clone()).unwrap_or_default();
            panic!("kfpd scheduler did not start within 30 s; stderr:\n{text}");
        }
        SchedulerProcess {
            child,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Kills the process without warning, as a crash would.
    fn crash(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr()
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn all_runs(store: &SqlStore) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut token = String::new();
    loop {
        let query = ListQuery::new(Resource::Run, 200, &token, "", None).unwrap();
        let page = store.list_runs(&Scope::default(), &query).await.unwrap();
        runs.extend(page.items);
        if page.next_page_token.is_empty() {
            return runs;
        }
        token = page.next_page_token;
    }
}

/// Two `kfpd scheduler` processes on one database, ten one-second recurring
/// runs that start behind (catch-up), runs ended as they appear so the
/// concurrency limit does not hold ticks back, one scheduler killed and
/// restarted halfway: every tick from the start on has exactly one run.
async fn two_schedulers_fire_each_tick_once(kind: &str) {
    let Some(url) = common::database_url(kind).await else {
        return;
    };
    let server = Server::start_with(&["--database-url", &url, "--scheduler", "off"]);
    let store = SqlStore::connect(&Options::new(url.clone()))
        .await
        .expect("test connection");
    const RECURRING_RUNS: usize = 10;
    const TICKS_EACH: usize = 40;
    let start = now() - 20;
    let mut ids = Vec::new();
    for index in 0..RECURRING_RUNS {
        let (status, created) = server
            .post(
                "/recurringruns",
                &every_second(&format!("raced {index}"), start),
            )
            .await;
        assert_eq!(status, 200, "{created}");
        ids.push(created["recurring_run_id"].as_str().unwrap().to_string());
    }

    let first = SchedulerProcess::start(&url);
    let mut second = Some(SchedulerProcess::start(&url));
    let mut crashed_logs = String::new();
    let mut restarted = false;
    let started = Instant::now();
    loop {
        let runs = all_runs(&store).await;
        for run in runs.iter().filter(|run| run.state == RunState::Pending) {
            let _ = store
                .transition_run(
                    &run.id,
                    &[RunState::Pending],
                    RunState::Canceled,
                    None,
                    now(),
                )
                .await;
        }
        let total = runs.len();
        if total >= RECURRING_RUNS * TICKS_EACH {
            break;
        }
        if !restarted && total >= RECURRING_RUNS * TICKS_EACH / 2 {
            // A crash in the middle, then the same scheduler back.
            crashed_logs = second.take().expect("second scheduler").crash();
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            second = Some(SchedulerProcess::start(&url));
            restarted = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {total} runs after 120 s; scheduler stderr:\n{}\n{}",
            first.stderr(),
            second
                .as_ref()
                .map(SchedulerProcess::stderr)
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        let (status, _) = server
            .post(&format!("/recurringruns/{id}:disable"), &json!({}))
            .await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let second_logs = second
        .as_ref()
        .map(SchedulerProcess::stderr)
        .unwrap_or_default();
    let fired_by = |logs: &str| logs.matches("recurring run fired").count();
    let by_first = fired_by(&first.stderr());
    let by_second = fired_by(&crashed_logs) + fired_by(&second_logs);
    let logs = format!("{}{second_logs}{crashed_logs}", first.stderr());
    drop(first);
    drop(second);

    let runs = all_runs(&store).await;
    let mut ticks: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for run in &runs {
        ticks
            .entry(run.recurring_run_id.as_str())
            .or_default()
            .push(run.scheduled_at);
    }
    let mut total_ticks = 0;
    for id in &ids {
        let mut fired = ticks.remove(id.as_str()).unwrap_or_default();
        fired.sort_unstable();
        let expected: Vec<i64> = (start + 1..start + 1 + fired.len() as i64).collect();
        assert_eq!(
            fired, expected,
            "recurring run {id}: each tick once, none lost, in order"
        );
        let row = kfpd_store::RecurringRunStore::get_recurring_run(&store, id)
            .await
            .unwrap();
        assert_eq!(row.fired_count, fired.len() as i64);
        assert_eq!(row.last_fired_at, fired.last().copied());
        total_ticks += fired.len();
    }
    assert!(
        ticks.is_empty(),
        "runs of unknown recurring runs: {ticks:?}"
    );
    let names: BTreeSet<&str> = runs.iter().map(|run| run.display_name.as_str()).collect();
    assert_eq!(names.len(), runs.len(), "run names are unique");
    assert!(
        !logs.contains("already existed"),
        "no claim was ever lost after its run was written:\n{logs}"
    );
    eprintln!(
        "{kind}: {total_ticks} ticks over {RECURRING_RUNS} recurring runs fired exactly once by two \
         schedulers ({by_first} and {by_second} runs; the second crashed and restarted)"
    );
    assert!(by_first > 0 && by_second > 0, "both schedulers fired runs");
    assert!(total_ticks >= RECURRING_RUNS * TICKS_EACH);

    drop(server);
    store.pool().close().await;
    kfpd_store::sql::drop_database(&url)
        .await
        .expect("drop test database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_postgres_fire_each_tick_once() {
    two_schedulers_fire_each_tick_once("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_mysql_fire_each_tick_once() {
    two_schedulers_fire_each_tick_once("mysql").await;
}
