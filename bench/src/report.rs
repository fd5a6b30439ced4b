//! The results as markdown.

use std::fmt::Write;
use std::time::Duration;

use crate::scenarios::{Breakdown, Measured, Throughput, OP_DEEP};
use crate::seed::Seeded;
use crate::stats::{ms, Samples};

/// Targets from the API server issue.
pub const LIST_P99_TARGET: Duration = Duration::from_millis(10);
pub const CREATE_PER_SECOND_TARGET: f64 = 1_000.0;
pub const IDLE_RSS_TARGET_MIB: f64 = 30.0;
pub const START_TARGET: Duration = Duration::from_millis(200);

pub struct Machine {
    pub cores: String,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
}

pub struct Server {
    pub starts: Vec<Duration>,
    pub listening: Vec<Duration>,
    pub idle_rss_kib: u64,
    pub after_lists_rss_kib: u64,
    pub after_load_rss_kib: u64,
    pub peak_rss_kib: u64,
    /// Share of the machine other processes used during each phase.
    pub background: Vec<(String, f64)>,
    pub waited_for_quiet: Duration,
}

pub struct Report<'a> {
    pub date: String,
    pub machine: &'a Machine,
    pub backend: String,
    /// The `kfpd serve` flags used.
    pub serve_args: Vec<String>,
    /// How long `sync` took after seeding.
    pub flushed: Duration,
    pub runs: usize,
    pub experiments: usize,
    pub seeded: &'a Seeded,
    pub server: &'a Server,
    pub http: &'a Measured,
    pub store: &'a Measured,
    pub create: &'a Throughput,
    pub store_create: &'a Throughput,
    pub breakdown: &'a [Breakdown],
    pub show_plans: bool,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**MISSED**"
    }
}

fn thousands(number: usize) -> String {
    let digits = number.to_string();
    let mut out = String::new();
    for (index, ch) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn secs(value: Duration) -> String {
    format!("{:.1} s", value.as_secs_f64())
}

impl Report<'_> {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let seeded = self.seeded;
        let _ = writeln!(
            out,
            "### kfpd-bench: {} backend, {} runs\n",
            self.backend,
            thousands(self.runs)
        );
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| date | {} |", self.date);
        let _ = writeln!(
            out,
            "| machine | {} cores (nproc), {}, {} RAM, Linux {} |",
            self.machine.cores, self.machine.cpu, self.machine.memory, self.machine.kernel
        );
        let _ = writeln!(out, "| backend | {} |", self.backend);
        // The data directory and database URL vary per run and may name a password.
        let mut shown = Vec::new();
        let mut flags = self.serve_args.iter();
        while let Some(flag) = flags.next() {
            match flag.as_str() {
                "--data-dir" | "--database-url" => {
                    flags.next();
                    shown.push(format!("{flag} …"));
                }
                _ => shown.push(flag.clone()),
            }
        }
        let _ = writeln!(out, "| server | `kfpd serve {}` |", shown.join(" "));
        let states: Vec<String> = seeded
            .state_counts
            .iter()
            .map(|(state, count)| format!("{state} {}", thousands(*count)))
            .collect();
        let _ = writeln!(
            out,
            "| data | {} runs in {} experiments (largest {}, smallest {} runs), {} distinct created_at seconds over {:.0} days; {} |",
            thousands(self.runs),
            self.experiments,
            thousands(seeded.experiments.first().map_or(0, |e| e.1)),
            thousands(seeded.experiments.last().map_or(0, |e| e.1)),
            thousands(seeded.distinct_times),
            (seeded.last_created - seeded.first_created) as f64 / 86_400.0,
            states.join(", ")
        );
        let _ = writeln!(
            out,
            "| seeding | {} total ({} experiments via the store, {} run + spec inserts, {} finishing) |",
            secs(seeded.time_total),
            secs(seeded.time_experiments),
            secs(seeded.time_inserts),
            secs(seeded.time_finish)
        );
        let _ = writeln!(
            out,
            "| flush | `sync` after seeding, before the first start: {} |",
            secs(self.flushed)
        );

        let server = self.server;
        let background: Vec<String> = server
            .background
            .iter()
            .map(|(phase, share)| format!("{phase} {:.0}%", share * 100.0))
            .collect();
        let _ = writeln!(
            out,
            "| other load | CPU used by other processes while measuring (share of all cores; not this benchmark, kfpd or the database server): {} (waited {:.0} s for quiet) |",
            background.join(", "),
            server.waited_for_quiet.as_secs_f64()
        );
        let mut starts = server.starts.clone();
        starts.sort();
        let first = server.starts.first().copied().unwrap_or_default();
        let median = starts.get(starts.len() / 2).copied().unwrap_or_default();
        let worst = starts.last().copied().unwrap_or_default();
        let mut listening = server.listening.clone();
        listening.sort();
        let listening_median = listening
            .get(listening.len() / 2)
            .copied()
            .unwrap_or_default();
        let _ = writeln!(out, "\n#### Server process\n");
        let _ = writeln!(out, "| metric | value | target | |\n|---|---|---|---|");
        let _ = writeln!(
            out,
            "| start to healthy (spawn → first 200 from healthz), {} starts | first {} ms, median {} ms, max {} ms (listening line at median {} ms) | ≤ 200 ms | {} |",
            server.starts.len(),
            ms(first),
            ms(median),
            ms(worst),
            ms(listening_median),
            verdict(worst <= START_TARGET)
        );
        let idle = mib(server.idle_rss_kib);
        let _ = writeln!(
            out,
            "| idle RSS (1 s after healthy, before load) | {idle:.1} MiB | ≤ 30 MB | {} |",
            verdict(idle <= IDLE_RSS_TARGET_MIB)
        );
        let _ = writeln!(
            out,
            "| RSS after the list/get phases | {:.1} MiB | | |",
            mib(server.after_lists_rss_kib)
        );
        let _ = writeln!(
            out,
            "| RSS after CreateRun load | {:.1} MiB (peak VmHWM {:.1} MiB) | | |",
            mib(server.after_load_rss_kib),
            mib(server.peak_rss_kib)
        );

        let _ = writeln!(
            out,
            "\n#### Latency, one request at a time (ms; HTTP = keep-alive reqwest → kfpd serve; store = `SqlStore` in-process)\n"
        );
        let _ = writeln!(
            out,
            "| operation | HTTP p50 | HTTP p99 | HTTP max | n | store p50 | store p99 | store max | n | target p99 ≤ 10 ms |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for (name, samples) in &self.http.rows {
            let store = self.store.get(name);
            let is_list = name.starts_with("ListRuns");
            let cells = |samples: Option<&Samples>| match samples.and_then(Samples::summary) {
                Some(s) => format!(
                    "{} | {} | {} | {}",
                    ms(s.p50),
                    ms(s.p99),
                    ms(s.max),
                    s.count
                ),
                None => "– | – | – | 0".to_string(),
            };
            let target = match (is_list, samples.summary()) {
                (true, Some(s)) => verdict(s.p99 <= LIST_P99_TARGET).to_string(),
                _ => String::new(),
            };
            let name = if name == OP_DEEP {
                format!("**{name}**")
            } else {
                name.clone()
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {target} |",
                cells(Some(samples)),
                cells(store)
            );
        }
        if self.http.short_walks > 0 || self.store.short_walks > 0 {
            let _ = writeln!(
                out,
                "\n{} HTTP and {} store page-50 walks ended before page 50 and are not counted.",
                self.http.short_walks, self.store.short_walks
            );
        }

        let _ = writeln!(
            out,
            "\n#### CreateRun throughput (inline hello_world spec)\n"
        );
        let _ = writeln!(
            out,
            "| path | clients | duration | created | errors | runs/s | p50 ms | p99 ms | max ms | target ≥ 1,000/s |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for (path, create) in [
            ("HTTP → kfpd serve (whole CreateRun)", self.create),
            (
                "store only (`SqlStore::create_run` in-process)",
                self.store_create,
            ),
        ] {
            let per_second = create.per_second();
            let summary = create.latency.summary();
            let _ = writeln!(
                out,
                "| {path} | {} | {} | {} | {} | {per_second:.0} | {} | {} | {} | {} |",
                create.clients,
                secs(create.wall),
                thousands(create.created),
                create.errors,
                summary.map_or("–".into(), |s| ms(s.p50)),
                summary.map_or("–".into(), |s| ms(s.p99)),
                summary.map_or("–".into(), |s| ms(s.max)),
                verdict(per_second >= CREATE_PER_SECOND_TARGET)
            );
            if let Some(error) = &create.first_error {
                let _ = writeln!(out, "\nFirst error ({path}): `{error}`\n");
            }
        }

        let _ = writeln!(
            out,
            "\n#### Where list time goes: the statements of `list_runs`, timed apart (page 1, ms)\n"
        );
        let _ = writeln!(
            out,
            "`total_size` comes from the run counts; `COUNT(*)` over runs is what it would cost \
             without them (and checks that both agree).\n"
        );
        let _ = writeln!(
            out,
            "| variant | page query p50 | page query p99 | total from run counts p50 | p99 | COUNT(*) p50 | COUNT(*) p99 | total_size |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in self.breakdown {
            let page = row.page.summary();
            let counted = row.counted.as_ref().and_then(|samples| samples.summary());
            let count = row.count.summary();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.variant,
                page.map_or("–".into(), |s| ms(s.p50)),
                page.map_or("–".into(), |s| ms(s.p99)),
                counted.map_or("–".into(), |s| ms(s.p50)),
                counted.map_or("–".into(), |s| ms(s.p99)),
                count.map_or("–".into(), |s| ms(s.p50)),
                count.map_or("–".into(), |s| ms(s.p99)),
                thousands(row.total.max(0) as usize)
            );
        }
        if self.show_plans {
            let _ = writeln!(out, "\n#### Query plans\n");
            for row in self.breakdown {
                let _ = writeln!(
                    out,
                    "{}, page:\n```\n{}\n```\n{}, count:\n```\n{}\n```",
                    row.variant, row.plans.0, row.variant, row.plans.1
                );
            }
        }
        out
    }
}
