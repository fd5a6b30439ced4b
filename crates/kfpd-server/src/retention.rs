//! Retention: deleting the artifacts and task logs of runs that finished longer ago
//! than `artifact_retention_days`, and whole runs by age or beyond the newest N of
//! their experiment. `kfpd gc` runs one pass; `kfpd serve` runs one every
//! `retention_interval`.
//!
//! Work goes in batches of [`BATCH`] runs, each ending in one short transaction, so
//! API requests wait at most for one batch's rows. Objects are deleted before the rows
//! that point at them are marked or removed: a pass that stops half way leaves rows
//! saying an object exists that may not, and the next pass finishes the job, never
//! objects nobody knows about.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kfpd_artifacts::ArtifactStore;
use kfpd_store::{Artifact, MetadataStore, RetainedRun, RunRetention};

/// Runs per batch: one page read, one transaction written.
pub const BATCH: usize = 50;

/// Seconds in a retention day.
const DAY: i64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("retention: {0}")]
    Store(#[from] kfpd_store::Error),
}

/// What retention keeps; `None` keeps everything of that kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Artifacts and task logs of runs that finished more than this many days ago go.
    pub artifact_days: Option<u32>,
    /// Runs that finished more than this many days ago go, with everything they hold.
    pub run_days: Option<u32>,
    /// Of each experiment's runs, only the newest this many are kept.
    pub runs_per_experiment: Option<u64>,
}

impl Policy {
    pub fn is_off(&self) -> bool {
        self.artifact_days.is_none()
            && self.run_days.is_none()
            && self.runs_per_experiment.is_none()
    }

    fn run_rule(&self, now: i64) -> RunRetention {
        RunRetention {
            finished_before: self.run_days.map(|days| now - i64::from(days) * DAY),
            keep_per_experiment: self.runs_per_experiment,
        }
    }
}

/// What one pass did, or with `dry_run` would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    pub policy: Policy,
    /// Runs whose artifacts and logs went (the runs stay).
    pub runs_collected: u64,
    /// Artifact objects deleted, by either rule.
    pub artifacts_deleted: u64,
    /// Artifacts of expired runs left in place: imported by an importer (the data
    /// is not kfpd's), or outside the roots this server serves.
    pub artifacts_left: u64,
    /// Runs deleted with their tasks and artifacts.
    pub runs_deleted: u64,
    /// Runs skipped because a delete failed (left for the next pass).
    pub failures: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let days = |value: Option<u32>| match value {
            Some(days) => format!("{days} days"),
            None => "off".to_string(),
        };
        writeln!(
            f,
            "artifact retention: {}; run retention by age: {}; runs kept per experiment: {}",
            days(self.policy.artifact_days),
            days(self.policy.run_days),
            self.policy
                .runs_per_experiment
                .map_or("all".to_string(), |count| count.to_string())
        )?;
        writeln!(
            f,
            "{verb} the artifacts and logs of {} run(s): {} artifact(s) ({} left in place: imported or outside this server's roots)",
            self.runs_collected, self.artifacts_deleted, self.artifacts_left
        )?;
        writeln!(
            f,
            "{verb} {} run(s) with their tasks and artifacts",
            self.runs_deleted
        )?;
        if self.failures > 0 {
            writeln!(
                f,
                "{} run(s) skipped: deleting from the artifact store failed (see the log); the next pass tries again",
                self.failures
            )?;
        }
        Ok(())
    }
}

/// Deletes what the policy no longer keeps.
#[derive(Clone)]
pub struct Collector {
    store: Arc<dyn MetadataStore>,
    artifacts: ArtifactStore,
    /// `<data dir>/work`: per-run working directories, local task logs included.
    work_dir: PathBuf,
    policy: Policy,
    /// Pause between batches, so a long pass leaves room for other writers.
    pause: Duration,
}

impl Collector {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        artifacts: ArtifactStore,
        data_dir: &std::path::Path,
        policy: Policy,
    ) -> Collector {
        Collector {
            store,
            artifacts,
            work_dir: data_dir.join("work"),
            policy,
            pause: Duration::from_millis(20),
        }
    }

    /// One pass over every rule, at time `now` (Unix seconds).
    pub async fn run_once(&self, now: i64, dry_run: bool) -> Result<Report, Error> {
        let mut report = Report {
            dry_run,
            policy: self.policy,
            ..Report::default()
        };
        if let Some(days) = self.policy.artifact_days {
            self.collect_artifacts(now - i64::from(days) * DAY, now, &mut report)
                .await?;
        }
        let rule = self.policy.run_rule(now);
        if rule != RunRetention::default() {
            self.delete_runs(rule, now, &mut report).await?;
        }
        Ok(report)
    }

    async fn collect_artifacts(
        &self,
        finished_before: i64,
        now: i64,
        report: &mut Report,
    ) -> Result<(), Error> {
        let dry_run = report.dry_run;
        // An artifact two expired runs hold is listed for both; it counts once.
        let mut seen = std::collections::HashSet::new();
        let mut after: Option<RetainedRun> = None;
        loop {
            let page = self
                .store
                .runs_with_expired_artifacts(finished_before, after.as_ref(), BATCH)
                .await?;
            let Some(last) = page.last().cloned() else {
                return Ok(());
            };
            let mut done_runs = Vec::new();
            let mut done_artifacts = Vec::new();
            for run in &page {
                let mut expired = self
                    .store
                    .expired_artifacts(&run.id, finished_before)
                    .await?;
                expired.retain(|artifact| !seen.contains(&artifact.id));
                let (deleted, left) = self.delete_objects(&expired, dry_run).await;
                let Some(deleted) = deleted else {
                    report.failures += 1;
                    continue;
                };
                if !self.delete_logs(&run.id, dry_run).await {
                    report.failures += 1;
                    continue;
                }
                report.runs_collected += 1;
                report.artifacts_deleted += deleted.len() as u64;
                report.artifacts_left += left;
                done_runs.push(run.id.clone());
                seen.extend(deleted.iter().copied());
                done_artifacts.extend(deleted);
            }
            if !dry_run {
                self.store
                    .mark_artifacts_deleted(&done_runs, &done_artifacts, now)
                    .await?;
                tracing::info!(
                    runs = done_runs.len(),
                    artifacts = done_artifacts.len(),
                    "retention deleted the artifacts and logs of expired runs"
                );
            }
            after = Some(last);
            tokio::time::sleep(self.pause).await;
        }
    }

    async fn delete_runs(
        &self,
        rule: RunRetention,
        now: i64,
        report: &mut Report,
    ) -> Result<(), Error> {
        let mut after: Option<RetainedRun> = None;
        loop {
            let page = self
                .store
                .runs_to_delete(rule, after.as_ref(), BATCH)
                .await?;
            let Some(last) = page.last().cloned() else {
                return Ok(());
            };
            let ids: Vec<String> = page.iter().map(|run| run.id.clone()).collect();
            if report.dry_run {
                let freed = self.store.artifacts_freed_by(&ids).await?;
                let owned = freed.iter().filter(|artifact| is_kfpd_output(artifact));
                report.artifacts_deleted += owned.count() as u64;
                report.runs_deleted += ids.len() as u64;
            } else {
                // Marked first: a marked run is no cache entry and cannot be retried,
                // so nothing starts using what is about to go.
                let claimed = self.store.mark_artifacts_deleted(&ids, &[], now).await?;
                let mut deletable = Vec::new();
                for id in &claimed {
                    let freed = self
                        .store
                        .artifacts_freed_by(std::slice::from_ref(id))
                        .await?;
                    let (deleted, _) = self.delete_objects(&freed, false).await;
                    let Some(deleted) = deleted else {
                        report.failures += 1;
                        continue;
                    };
                    if !self.delete_logs(id, false).await {
                        report.failures += 1;
                        continue;
                    }
                    report.artifacts_deleted += deleted.len() as u64;
                    deletable.push(id.clone());
                }
                let deleted = self.store.delete_retained_runs(&deletable).await?;
                report.runs_deleted += deleted.len() as u64;
                tracing::info!(runs = deleted.len(), "retention deleted runs");
            }
            after = Some(last);
            tokio::time::sleep(self.pause).await;
        }
    }

    /// Deletes the objects kfpd wrote for these artifacts. Returns the ids deleted
    /// (None when a delete failed) and how many were left in place.
    async fn delete_objects(
        &self,
        artifacts: &[Artifact],
        dry_run: bool,
    ) -> (Option<Vec<i64>>, u64) {
        let mut deleted = Vec::new();
        let mut left = 0;
        for artifact in artifacts {
            if !is_kfpd_output(artifact) || !self.artifacts.handles(&artifact.uri) {
                left += 1;
                continue;
            }
            if !dry_run {
                if let Err(error) = self.artifacts.delete(&artifact.uri).await {
                    tracing::warn!(
                        artifact = artifact.id,
                        uri = %artifact.uri,
                        %error,
                        "retention cannot delete an artifact"
                    );
                    return (None, left);
                }
            }
            deleted.push(artifact.id);
        }
        (Some(deleted), left)
    }

    /// Deletes a run's task log copies in the artifact store and its working
    /// directory; returns whether both are gone.
    async fn delete_logs(&self, run_id: &str, dry_run: bool) -> bool {
        if dry_run {
            return true;
        }
        // A run in a namespace (multi-user mode) keeps its logs under the
        // namespace's root; the run row is still there when its logs go.
        let root = match self.store.get_run(run_id).await {
            Ok(run) if !run.namespace.is_empty() => self.artifacts.namespace_root(&run.namespace),
            _ => self.artifacts.default_root(),
        };
        let logs = format!("{}/logs/{run_id}", root.trim_end_matches('/'));
        if let Err(error) = self.artifacts.delete(&logs).await {
            tracing::warn!(run = %run_id, uri = %logs, %error, "retention cannot delete task logs");
            return false;
        }
        let work = self.work_dir.join(run_id);
        match tokio::fs::remove_dir_all(&work).await {
            Ok(()) => true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
            Err(error) => {
                tracing::warn!(run = %run_id, path = %work.display(), %error, "retention cannot delete a run's working directory");
                false
            }
        }
    }

    /// Runs a pass every `interval` until `shutdown` resolves; a failed pass is
    /// logged and the next one tries again.
    pub async fn run_every(
        self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            match self.run_once(unix_now(), false).await {
                Ok(report) => {
                    if report.runs_collected + report.runs_deleted + report.failures > 0 {
                        tracing::info!(
                            runs_collected = report.runs_collected,
                            artifacts_deleted = report.artifacts_deleted,
                            runs_deleted = report.runs_deleted,
                            failures = report.failures,
                            "retention pass done"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "retention pass failed; trying again later"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(interval) => {},
            }
        }
    }
}

/// Whether kfpd wrote the artifact's object: a task's output lies at
/// `<root>/<pipeline>/<run id>/<task>/<task id>/<output key>`. An importer records
/// somebody else's URI, which retention never deletes.
pub fn is_kfpd_output(artifact: &Artifact) -> bool {
    let segments: Vec<&str> = artifact.uri.trim_end_matches('/').rsplit('/').collect();
    segments.len() > 4
        && !artifact.producer_task_id.is_empty()
        && segments[0] == artifact.output_key
        && segments[1] == artifact.producer_task_id
        && segments[3] == artifact.run_id
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(uri: &str) -> Artifact {
        Artifact {
            id: 1,
            run_id: "run-1".into(),
            producer_task_id: "task-9".into(),
            output_key: "model".into(),
            name: "model".into(),
            uri: uri.into(),
            schema_title: "system.Model".into(),
            schema_version: String::new(),
            metadata: "{}".into(),
            created_at: 0,
        }
    }

    #[test]
    fn only_outputs_kfpd_wrote_are_deleted() {
        assert!(is_kfpd_output(&artifact(
            "minio://mlpipeline/v2/artifacts/p/run-1/train/task-9/model"
        )));
        assert!(is_kfpd_output(&artifact(
            "file:///data/artifacts/p/run-1/train/task-9/model/"
        )));
        assert!(!is_kfpd_output(&artifact("s3://team/datasets/2026/model")));
        assert!(!is_kfpd_output(&artifact(
            "minio://mlpipeline/v2/artifacts/p/run-2/train/task-9/model"
        )));
        assert!(!is_kfpd_output(&artifact("run-1/x/task-9/model")));
    }
}
