//! `GET /metrics` of the real `kfpd serve`: the exposition parses, every family is
//! declared, and the numbers move with real requests, runs and schedules.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};

/// One sample: metric name and its labels.
type Series = (String, BTreeMap<String, String>);

/// A parsed scrape: every sample, and the declared type of every family.
struct Scrape {
    samples: BTreeMap<Series, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|((sample, _), _)| sample == name)
            .map(|((_, labels), value)| (labels, *value))
            .collect()
    }
}

/// Parses the text exposition format strictly enough to catch broken output: every
/// sample belongs to a family declared with `# TYPE` before it, label values are
/// quoted, values are numbers, and no series appears twice.
fn parse(text: &str) -> Scrape {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
            assert!(
                matches!(kind, "counter" | "gauge" | "histogram"),
                "unknown type in {line:?}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "family {name} declared twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?} is not a number"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name, parse_labels(body, line))
            }
            None => (series, BTreeMap::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|kind| kind == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample {name} before its # TYPE"
        );
        assert!(
            samples.insert((name.to_string(), labels), value).is_none(),
            "series repeated: {line:?}"
        );
    }
    Scrape { samples, types }
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label has =\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => panic!("dangling escape in {line:?}"),
                },
                Some((index, '"')) => break index,
                Some((_, other)) => value.push(other),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_string(), value);
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    labels
}

async fn scrape(server: &Server) -> Scrape {
    let response = server
        .client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("metrics body");
    let scrape = parse(&text);
    check_histograms(&scrape);
    scrape
}

/// Buckets are cumulative and end with `+Inf` equal to `_count`.
fn check_histograms(scrape: &Scrape) {
    for (family, kind) in &scrape.types {
        if kind != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for (labels, value) in scrape.series(&format!("{family}_bucket")) {
            let mut rest = labels.clone();
            let le = rest.remove("le").expect("bucket has le");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            by_series.entry(rest).or_default().push((bound, value));
        }
        for (labels, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
                "{family} {labels:?} buckets not cumulative: {buckets:?}"
            );
            let last = buckets.last().expect("a bucket");
            assert!(last.0.is_infinite(), "{family} {labels:?} lacks +Inf");
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            assert_eq!(
                scrape.value(&format!("{family}_count"), &pairs),
                Some(last.1),
                "{family} {labels:?} count"
            );
        }
    }
}

/// A one-task pipeline whose task sleeps, with caching off so each run executes.
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

async fn create_run(server: &Server, name: &str, spec: &Value) -> String {
    let (status, run) = server
        .post(
            "/runs",
            &json!({"display_name": name, "pipeline_spec": spec}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    run["run_id"].as_str().expect("run_id").to_string()
}

async fn wait_until<F, Fut>(limit: Duration, what: &str, server: &Server, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > limit {
            panic!(
                "{what} not seen within {limit:?}; stderr:\n{}",
                server.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_requests_runs_and_schedules() {
    let server = Server::start_with(&["--executor", "local", "--max-parallel-tasks", "1"]);

    let first = scrape(&server).await;
    assert!(
        first
            .value("process_resident_memory_bytes", &[])
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(first.value("process_open_fds", &[]).unwrap_or(0.0) > 0.0);
    assert_eq!(first.value("kfpd_task_slots", &[]), Some(1.0));
    assert_eq!(first.value("kfpd_tasks_running", &[]), Some(0.0));
    assert_eq!(first.value("kfpd_db_pool_max_connections", &[]), Some(16.0));
    assert!(first
        .value("kfpd_db_pool_connections", &[("state", "idle")])
        .is_some());
    assert_eq!(
        first.value("kfpd_artifact_store_errors_total", &[]),
        Some(0.0)
    );
    for kind in kfpd_store::QUERY_ERROR_KINDS {
        assert!(
            first
                .value("kfpd_db_query_errors_total", &[("kind", kind)])
                .is_some(),
            "query error kind {kind}"
        );
    }
    assert_eq!(
        first
            .types
            .get("kfpd_scheduler_lag_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        first.value("kfpd_scheduler_lag_seconds_count", &[]),
        Some(0.0)
    );

    // Requests are counted under their route template, never their raw path.
    for id in ["no-such-run-1", "no-such-run-2"] {
        let (status, _) = server.get(&format!("/runs/{id}")).await;
        assert_eq!(status, 404);
    }
    let (status, _) = server.get("/no/such/route").await;
    assert_eq!(status, 404);
    let after = scrape(&server).await;
    let series = after.series("kfpd_http_request_duration_seconds_count");
    assert!(
        series
            .iter()
            .all(|(labels, _)| !labels["route"].contains("no-such-run")
                && !labels["route"].contains("/no/such")),
        "raw paths in labels: {series:?}"
    );
    let run_route = series
        .iter()
        .find(|(labels, _)| {
            labels["route"].starts_with("/apis/v2beta1/runs/{")
                && labels["method"] == "GET"
                && labels["status"] == "404"
        })
        .unwrap_or_else(|| panic!("no GetRun series: {series:?}"));
    assert_eq!(run_route.1, 2.0, "{run_route:?}");
    assert_eq!(
        after.value(
            "kfpd_http_request_duration_seconds_count",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        Some(1.0)
    );
    // The scrape before this one is counted too.
    assert!(
        after
            .value(
                "kfpd_http_request_duration_seconds_count",
                &[("route", "/metrics"), ("method", "GET"), ("status", "200")]
            )
            .unwrap_or(0.0)
            >= 1.0
    );

    // Two runs on one slot: one task runs, the other waits.
    let spec = sleeper(5);
    let runs = [
        create_run(&server, "sleep a", &spec).await,
        create_run(&server, "sleep b", &spec).await,
    ];
    wait_until(
        Duration::from_secs(60),
        "one task running and one waiting",
        &server,
        || async {
            let now = scrape(&server).await;
            now.value("kfpd_tasks_running", &[]) == Some(1.0)
                && now.value("kfpd_tasks_waiting", &[]) == Some(1.0)
        },
    )
    .await;
    let during = scrape(&server).await;
    assert!(
        during
            .value("kfpd_runs", &[("state", "RUNNING")])
            .unwrap_or(0.0)
            >= 1.0,
        "{:?}",
        during.series("kfpd_runs")
    );
    wait_until(
        Duration::from_secs(120),
        "both runs succeeded",
        &server,
        || async {
            let mut done = true;
            for run in &runs {
                let (_, body) = server.get(&format!("/runs/{run}")).await;
                done &= body["state"] == "SUCCEEDED";
            }
            done
        },
    )
    .await;
    let finished = scrape(&server).await;
    assert_eq!(
        finished.value("kfpd_runs", &[("state", "SUCCEEDED")]),
        Some(2.0)
    );
    assert_eq!(
        finished
            .value("kfpd_runs", &[("state", "RUNNING")])
            .unwrap_or(0.0),
        0.0
    );
    assert_eq!(finished.value("kfpd_tasks_running", &[]), Some(0.0));
    assert_eq!(finished.value("kfpd_tasks_waiting", &[]), Some(0.0));

    // A recurring run that is already due: its ticks are measured.
    let start = chrono_free_rfc3339_seconds_ago(3);
    let (status, recurring) = server
        .post(
            "/recurringruns",
            &json!({
                "display_name": "every second",
                "pipeline_spec": sleeper(0),
                "max_concurrency": 10,
                "mode": "ENABLE",
                "trigger": {"periodic_schedule": {"interval_second": 1, "start_time": start}},
            }),
        )
        .await;
    assert_eq!(status, 200, "{recurring}");
    wait_until(
        Duration::from_secs(30),
        "scheduler lag observed",
        &server,
        || async {
            scrape(&server)
                .await
                .value("kfpd_scheduler_lag_seconds_count", &[])
                .unwrap_or(0.0)
                >= 2.0
        },
    )
    .await;
    let id = recurring["recurring_run_id"].as_str().expect("id");
    let (status, _) = server
        .post(&format!("/recurringruns/{id}:disable"), &json!({}))
        .await;
    assert_eq!(status, 200);
}

/// An RFC 3339 UTC time `seconds` ago, from the system clock.
fn chrono_free_rfc3339_seconds_ago(seconds: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
        - seconds;
    let days = now.div_euclid(86_400);
    let rest = now.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60
    )
}
