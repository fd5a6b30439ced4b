//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Counters and histograms kept here are updated on the request path with a short
//! lock; gauges (runs by state, task slots, the database pool, the process) are read
//! when scraped. Every label has a bounded set of values: routes are templates,
//! never raw paths.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the request latency buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds (seconds) of the scheduler lag buckets: ticks are whole seconds and
/// the loop polls, so lag starts near a second.
const LAG_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A cumulative histogram in the Prometheus sense.
#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more for `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[index] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (index, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[index];
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[self.bounds.len()];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {cumulative}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// What an open event stream shows: one run (its page) or a page of runs.
#[derive(Clone, Copy, Debug)]
pub enum StreamKind {
    Run = 0,
    Runs = 1,
}

impl StreamKind {
    const ALL: [StreamKind; 2] = [StreamKind::Run, StreamKind::Runs];

    fn label(self) -> &'static str {
        match self {
            StreamKind::Run => "run",
            StreamKind::Runs => "runs",
        }
    }
}

/// Held by an open event stream; dropping it (the client went away or the
/// stream ended) counts the stream as closed.
pub struct StreamGuard {
    streams: Arc<[AtomicI64; 2]>,
    reads: Arc<[AtomicU64; 2]>,
    kind: StreamKind,
}

impl StreamGuard {
    /// Counts one read of the rows after the stream's first event: what an open
    /// page costs the database.
    pub fn count_read(&self) {
        self.reads[self.kind as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.streams[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A metric with one series per stream kind.
fn write_by_stream_kind(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    values: [i64; 2],
) {
    header(out, name, kind, help);
    for (stream, value) in StreamKind::ALL.into_iter().zip(values) {
        let _ = writeln!(out, "{name}{{kind=\"{}\"}} {value}", stream.label());
    }
}

/// One series of the request histogram.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RequestKey {
    route: String,
    method: String,
    status: u16,
}

/// What the process measures itself; one per `kfpd serve`, shared by the API.
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, Histogram>>,
    /// Open event streams of the web UI, by kind.
    streams: Arc<[AtomicI64; 2]>,
    /// Reads the event streams made after their first event, by kind.
    stream_reads: Arc<[AtomicU64; 2]>,
    scheduler_lag: Mutex<Histogram>,
    sources: Mutex<Sources>,
}

/// Parts read when scraped, attached once `serve` has built them.
#[derive(Default)]
struct Sources {
    store: Option<kfpd_store::sql::SqlStore>,
    engine: Option<Arc<kfpd_engine::Engine>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            streams: Arc::new([AtomicI64::new(0), AtomicI64::new(0)]),
            stream_reads: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
            scheduler_lag: Mutex::new(Histogram::new(&LAG_BUCKETS)),
            sources: Mutex::new(Sources::default()),
        }
    }
}

impl Metrics {
    /// Lets scrapes read run counts and pool use from `store`.
    pub fn attach_store(&self, store: kfpd_store::sql::SqlStore) {
        lock(&self.sources).store = Some(store);
    }

    /// Lets scrapes read task slot use from `engine`.
    pub fn attach_engine(&self, engine: Arc<kfpd_engine::Engine>) {
        lock(&self.sources).engine = Some(engine);
    }

    /// Counts one answered request. `route` must be a route template (or
    /// [`UNMATCHED_ROUTE`]); methods outside the standard ones are folded into one
    /// label value so clients cannot grow the series.
    pub fn observe_request(&self, route: &str, method: &http::Method, status: u16, took: Duration) {
        let method = match *method {
            http::Method::GET
            | http::Method::POST
            | http::Method::PUT
            | http::Method::PATCH
            | http::Method::DELETE
            | http::Method::HEAD
            | http::Method::OPTIONS => method.as_str(),
            _ => "other",
        };
        let key = RequestKey {
            route: route.to_string(),
            method: method.to_string(),
            status,
        };
        lock(&self.requests)
            .entry(key)
            .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(took.as_secs_f64());
    }

    /// Counts an event stream as open until the returned guard is dropped.
    pub fn open_stream(&self, kind: StreamKind) -> StreamGuard {
        self.streams[kind as usize].fetch_add(1, Ordering::Relaxed);
        StreamGuard {
            streams: self.streams.clone(),
            reads: self.stream_reads.clone(),
            kind,
        }
    }

    /// Records how long after its due tick a scheduled run was created.
    pub fn observe_scheduler_lag(&self, lag: Duration) {
        lock(&self.scheduler_lag).observe(lag.as_secs_f64());
    }

    /// The exposition text of every metric.
    pub async fn render(&self) -> String {
        let (store, engine) = {
            let sources = lock(&self.sources);
            (sources.store.clone(), sources.engine.clone())
        };
        let mut out = String::new();

        header(
            &mut out,
            "kfpd_http_request_duration_seconds",
            "histogram",
            "REST requests by route template, method and status, with their latency.",
        );
        for (key, histogram) in lock(&self.requests).iter() {
            let labels = format!(
                "route=\"{}\",method=\"{}\",status=\"{}\"",
                escape(&key.route),
                key.method,
                key.status
            );
            histogram.write(&mut out, "kfpd_http_request_duration_seconds", &labels);
        }

        let open = StreamKind::ALL.map(|kind| self.streams[kind as usize].load(Ordering::Relaxed));
        write_by_stream_kind(
            &mut out,
            ("kfpd_event_streams", "gauge"),
            "Open event streams of the web UI: run pages and runs tables.",
            open,
        );
        let reads = StreamKind::ALL.map(|kind| {
            let reads = self.stream_reads[kind as usize].load(Ordering::Relaxed);
            i64::try_from(reads).unwrap_or(i64::MAX)
        });
        write_by_stream_kind(
            &mut out,
            ("kfpd_event_stream_reads_total", "counter"),
            "Reads of the rows by event streams after their first event: on a change or the fallback, never on a short timer.",
            reads,
        );

        write_connections(&mut out);

        if let Some(store) = &store {
            match store.runs_by_state().await {
                Ok(counts) => {
                    header(
                        &mut out,
                        "kfpd_runs",
                        "gauge",
                        "Runs in the database by state.",
                    );
                    for (state, count) in counts {
                        let _ = writeln!(out, "kfpd_runs{{state=\"{}\"}} {count}", escape(&state));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics cannot read run counts");
                }
            }
            let pool = store.pool();
            let size = u64::from(pool.size());
            let idle = pool.num_idle() as u64;
            header(
                &mut out,
                "kfpd_db_pool_connections",
                "gauge",
                "Database pool connections by whether they are in use or idle.",
            );
            let _ = writeln!(
                out,
                "kfpd_db_pool_connections{{state=\"in_use\"}} {}",
                size.saturating_sub(idle)
            );
            let _ = writeln!(out, "kfpd_db_pool_connections{{state=\"idle\"}} {idle}");
            header(
                &mut out,
                "kfpd_db_pool_max_connections",
                "gauge",
                "Most connections the database pool opens.",
            );
            let _ = writeln!(
                out,
                "kfpd_db_pool_max_connections {}",
                pool.options().get_max_connections()
            );
        }

        header(
            &mut out,
            "kfpd_db_query_errors_total",
            "counter",
            "Database errors by kind.",
        );
        for (kind, count) in kfpd_store::query_errors() {
            let _ = writeln!(out, "kfpd_db_query_errors_total{{kind=\"{kind}\"}} {count}");
        }

        header(
            &mut out,
            "kfpd_artifact_store_errors_total",
            "counter",
            "Failed reads and writes of the artifact store's backend.",
        );
        let _ = writeln!(
            out,
            "kfpd_artifact_store_errors_total {}",
            kfpd_artifacts::backend_errors()
        );

        if let Some(engine) = &engine {
            header(
                &mut out,
                "kfpd_tasks_running",
                "gauge",
                "Task processes holding a slot.",
            );
            let _ = writeln!(out, "kfpd_tasks_running {}", engine.tasks_running());
            header(
                &mut out,
                "kfpd_tasks_waiting",
                "gauge",
                "Task attempts waiting for a free slot.",
            );
            let _ = writeln!(out, "kfpd_tasks_waiting {}", engine.tasks_waiting());
            header(
                &mut out,
                "kfpd_task_slots",
                "gauge",
                "Task processes that may run at once.",
            );
            let _ = writeln!(
                out,
                "kfpd_task_slots {}",
                engine.options().max_parallel_tasks.max(1)
            );
        }

        header(
            &mut out,
            "kfpd_scheduler_lag_seconds",
            "histogram",
            "Time from a recurring run's due tick to the creation of its run.",
        );
        lock(&self.scheduler_lag).write(&mut out, "kfpd_scheduler_lag_seconds", "");

        process(&mut out);
        out
    }
}

/// Memory, open files and start time of this process, from /proc (Linux only; the
/// metrics are left out elsewhere).
fn process(out: &mut String) {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for (field, name, help) in [
            (
                "VmRSS:",
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            (
                "VmSize:",
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
        ] {
            let kib = status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok());
            if let Some(kib) = kib {
                header(out, name, "gauge", help);
                let _ = writeln!(out, "{name} {}", kib * 1024);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        header(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {}", entries.count());
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let max = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|value| value.parse::<u64>().ok());
        if let Some(max) = max {
            header(
                out,
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
            );
            let _ = writeln!(out, "process_max_fds {max}");
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A poisoned lock only means another scrape panicked; the numbers are still good.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Connections of both listeners: open now, shed over the cap, closed by a timeout.
fn write_connections(out: &mut String) {
    use crate::connections::{GRPC_COUNTS, REST_COUNTS};
    let listeners = [("rest", &REST_COUNTS), ("grpc", &GRPC_COUNTS)];
    header(
        out,
        "kfpd_connections_open",
        "gauge",
        "Open client connections by listener.",
    );
    for (listener, counts) in listeners {
        let open = counts.open.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "kfpd_connections_open{{listener=\"{listener}\"}} {open}"
        );
    }
    header(
        out,
        "kfpd_connections_shed_total",
        "counter",
        "Connections closed at once because the listener was at --max-connections.",
    );
    for (listener, counts) in listeners {
        let shed = counts.shed.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "kfpd_connections_shed_total{{listener=\"{listener}\"}} {shed}"
        );
    }
    header(
        out,
        "kfpd_connections_timed_out_total",
        "counter",
        "Connections closed by the idle or header read timeout.",
    );
    for (listener, counts) in listeners {
        let closed = counts.timed_out.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "kfpd_connections_timed_out_total{{listener=\"{listener}\"}} {closed}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut histogram = Histogram::new(&[1.0, 2.0]);
        for value in [0.5, 1.5, 1.5, 9.0] {
            histogram.observe(value);
        }
        let mut out = String::new();
        histogram.write(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 12.5\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 4\n"), "{out}");
    }

    #[test]
    fn odd_methods_share_one_label() {
        let metrics = Metrics::default();
        let method = http::Method::from_bytes(b"BREW").expect("valid method token");
        metrics.observe_request("/x", &method, 405, Duration::from_millis(1));
        let requests = lock(&metrics.requests);
        assert_eq!(
            requests.keys().next().map(|key| key.method.as_str()),
            Some("other")
        );
    }
}
