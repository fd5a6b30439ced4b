//! How busy the machine is with work that is not ours: the benchmark shares its
//! cores with whatever else runs, so it waits for a quiet moment before measuring
//! and reports the CPU others used while it measured.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// CPU time counters at one moment, in clock ticks.
#[derive(Clone, Debug)]
pub struct Snapshot {
    busy: u64,
    total: u64,
    /// Ticks of the processes that belong to the measurement (this one, kfpd,
    /// the database server).
    ours: HashMap<u32, u64>,
}

/// Whether a process takes part in the measurement.
fn is_ours(pid: u32, own: &[u32]) -> bool {
    if own.contains(&pid) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| matches!(name.trim(), "postgres" | "postmaster"))
        .unwrap_or(false)
}

fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3 of stat; utime and stime are 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Reads the counters; `own` are the pids of this process and kfpd.
pub fn snapshot(own: &[u32]) -> Option<Snapshot> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .filter_map(|value| value.parse().ok())
        .collect();
    if values.len() < 5 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values[4];
    let mut ours = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if is_ours(pid, own) {
                if let Some(ticks) = process_ticks(pid) {
                    ours.insert(pid, ticks);
                }
            }
        }
    }
    Some(Snapshot {
        busy: total - idle,
        total,
        ours,
    })
}

/// Share of all cores that other work used between two snapshots (0.0–1.0).
pub fn others_share(before: &Snapshot, after: &Snapshot) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let busy = after.busy.saturating_sub(before.busy);
    let ours: u64 = after
        .ours
        .iter()
        .map(|(pid, ticks)| ticks.saturating_sub(before.ours.get(pid).copied().unwrap_or(*ticks)))
        .sum();
    busy.saturating_sub(ours) as f64 / total as f64
}

/// Waits until other work uses less than `threshold` of the machine over a
/// 2-second window, for at most `max_wait`. Returns how long it waited and the
/// share seen last.
pub async fn wait_for_quiet(own: &[u32], threshold: f64, max_wait: Duration) -> (Duration, f64) {
    let started = Instant::now();
    let mut share = 0.0;
    let rounds = (max_wait.as_secs() / 2).max(1);
    for _ in 0..rounds {
        let Some(before) = snapshot(own) else {
            break;
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(after) = snapshot(own) else {
            break;
        };
        share = others_share(&before, &after);
        if share < threshold {
            break;
        }
    }
    (started.elapsed(), share)
}
