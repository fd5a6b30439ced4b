//! Adopting an upstream KFP database: reads the tables upstream's API server
//! (KFP 2.15 and 2.17) keeps in MySQL or PostgreSQL and brings every row into
//! kfpd's store with the same ids, names, states, times, specs and runtime
//! configs, so `kfp.Client` lists and gets what it did from upstream.
//!
//! Upstream's database is opened read-only. Each pass compares server-side
//! fingerprints of upstream's rows (with their references, tags and tasks) with
//! the marks of the previous passes and brings only rows that are new or
//! changed, in batches of one transaction each that write the rows and their
//! marks together: a pass stopped halfway resumes after its last batch.

mod convert;
mod report;
mod source;
mod tables;

use std::collections::{HashMap, HashSet};

use kfpd_store::adopt::{AdoptBatch, AdoptPass, AdoptedRun, NameScope, RowMark};
use kfpd_store::sql::SqlStore;
use kfpd_store::PipelineStore;
use sha2::{Digest, Sha256};

pub use convert::{run_state, spec_json, storage_state};
pub use report::{Problem, Report, TableReport};
pub use source::redact;

use source::{Source, SourceRow};
use tables::Table;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("source database: {0}")]
    Source(String),
    #[error(transparent)]
    Store(#[from] kfpd_store::Error),
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Report what would be brought and what cannot be, writing nothing.
    pub dry_run: bool,
    /// Upstream rows per transaction.
    pub batch_size: usize,
    /// The bucket upstream's object store keys are in (`ObjectStoreConfig.BucketName`),
    /// for artifacts whose workflow names no bucket.
    pub bucket: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            dry_run: false,
            batch_size: 500,
            bucket: "mlpipeline".into(),
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// One digest over a row's own fingerprint and those of what belongs to it.
fn combine(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    hex::encode(hasher.finalize())
}

/// The rows of `table` to bring: new or changed since the marks, in id order.
fn changed(
    fingerprints: &HashMap<String, String>,
    marks: &HashMap<String, String>,
) -> (Vec<String>, usize) {
    let mut ids: Vec<String> = fingerprints
        .iter()
        .filter(|(id, fingerprint)| marks.get(*id) != Some(*fingerprint))
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    let new = ids.iter().filter(|id| !marks.contains_key(*id)).count();
    (ids, new)
}

fn group_by_column(rows: Vec<SourceRow>, column: &str) -> HashMap<String, Vec<SourceRow>> {
    let mut grouped: HashMap<String, Vec<SourceRow>> = HashMap::new();
    for row in rows {
        let owner = row.get(column).cloned().flatten().unwrap_or_default();
        grouped.entry(owner).or_default().push(row);
    }
    grouped
}

fn column(row: &SourceRow, name: &str) -> String {
    row.get(name).cloned().flatten().unwrap_or_default()
}

/// A pass in progress.
struct Pass<'a> {
    source: Source,
    store: &'a SqlStore,
    options: &'a Options,
    report: Report,
    now: i64,
}

impl Pass<'_> {
    async fn write(&mut self, batch: AdoptBatch) -> Result<(), Error> {
        if self.options.dry_run || batch.is_empty() {
            return Ok(());
        }
        self.store.write_adopted(&batch, self.now).await?;
        Ok(())
    }

    /// Fingerprints of `table` with those of its references folded in.
    async fn fingerprints_with_references(
        &self,
        table: &Table,
        types: &[&str],
    ) -> Result<HashMap<String, String>, Error> {
        let own = self.source.fingerprints(table).await?;
        let references = self
            .source
            .group_fingerprints(
                &tables::RESOURCE_REFERENCES,
                "ResourceUUID",
                Some(("ResourceType", types)),
            )
            .await?;
        Ok(own
            .into_iter()
            .map(|(id, fingerprint)| {
                let refs = references.get(&id).map(String::as_str).unwrap_or("");
                let combined = combine(&[&fingerprint, refs]);
                (id, combined)
            })
            .collect())
    }

    async fn references(
        &self,
        ids: &[String],
        types: &[&str],
    ) -> Result<HashMap<String, convert::References>, Error> {
        let rows = self
            .source
            .rows_where(&tables::RESOURCE_REFERENCES, "ResourceUUID", Some(ids))
            .await?;
        let rows: Vec<SourceRow> = rows
            .into_iter()
            .filter(|row| types.contains(&column(row, "ResourceType").as_str()))
            .collect();
        Ok(convert::References::group(&rows))
    }

    async fn experiments(&mut self) -> Result<(), Error> {
        const TYPES: &[&str] = &["Experiment"];
        let fingerprints = self
            .fingerprints_with_references(&tables::EXPERIMENTS, TYPES)
            .await?;
        let marks = self.store.adopted_marks(tables::EXPERIMENTS.name).await?;
        let (ids, new) = changed(&fingerprints, &marks);
        let mut counts = TableReport::new(tables::EXPERIMENTS.name, fingerprints.len(), &ids, new);
        for chunk in ids.chunks(self.options.batch_size.max(1)) {
            let rows = self
                .source
                .rows_where(&tables::EXPERIMENTS, "UUID", Some(chunk))
                .await?;
            let references = self.references(chunk, TYPES).await?;
            let mut batch = AdoptBatch::default();
            for row in &rows {
                let id = column(row, "UUID");
                let converted = convert::experiment(row, references.get(&id));
                let experiment = match converted {
                    Ok(experiment) => experiment,
                    Err(reason) => {
                        counts.refuse(
                            &mut self.report,
                            &id,
                            Some(!marks.contains_key(&id)),
                            reason,
                        );
                        continue;
                    }
                };
                let scope = NameScope::Experiment {
                    namespace: &experiment.namespace,
                };
                if let Some(holder) = self
                    .store
                    .adopt_name_holder(scope, &experiment.name, &experiment.id)
                    .await?
                {
                    let reason = format!(
                        "kfpd experiment {holder} already has the name {:?} in namespace {:?}",
                        experiment.name, experiment.namespace
                    );
                    counts.refuse(
                        &mut self.report,
                        &id,
                        Some(!marks.contains_key(&id)),
                        reason,
                    );
                    continue;
                }
                batch.marks.push(RowMark {
                    table: tables::EXPERIMENTS.name.into(),
                    fingerprint: fingerprints.get(&id).cloned().unwrap_or_default(),
                    id,
                });
                batch.experiments.push(experiment);
            }
            self.write(batch).await?;
        }
        self.report.tables.push(counts);

        // The default experiment: one row, one mark.
        let rows = self
            .source
            .rows_where(&tables::DEFAULT_EXPERIMENTS, "DefaultExperimentId", None)
            .await?;
        let default = rows
            .first()
            .map(|row| column(row, "DefaultExperimentId"))
            .filter(|id| !id.is_empty());
        let marks = self
            .store
            .adopted_marks(tables::DEFAULT_EXPERIMENTS.name)
            .await?;
        let fingerprint = combine(&[default.as_deref().unwrap_or("")]);
        let unchanged = marks.get("default") == Some(&fingerprint);
        let mut counts = TableReport {
            table: tables::DEFAULT_EXPERIMENTS.name,
            upstream: rows.len(),
            ..TableReport::default()
        };
        if let Some(default) = default.filter(|_| !unchanged) {
            if marks.is_empty() {
                counts.new += 1;
            } else {
                counts.changed += 1;
            }
            let batch = AdoptBatch {
                default_experiment: Some(default),
                marks: vec![RowMark {
                    table: tables::DEFAULT_EXPERIMENTS.name.into(),
                    id: "default".into(),
                    fingerprint,
                }],
                ..AdoptBatch::default()
            };
            self.write(batch).await?;
        } else {
            counts.unchanged = rows.len();
        }
        self.report.tables.push(counts);
        Ok(())
    }

    async fn tag_rows(
        &self,
        table: &Table,
        owner: &str,
        ids: &[String],
    ) -> Result<HashMap<String, Vec<SourceRow>>, Error> {
        if !self.source.has_table(table) {
            return Ok(HashMap::new());
        }
        let rows = self.source.rows_where(table, owner, Some(ids)).await?;
        Ok(group_by_column(rows, owner))
    }

    async fn with_tags(
        &self,
        table: &Table,
        tags: &Table,
        owner: &str,
    ) -> Result<HashMap<String, String>, Error> {
        let own = self.source.fingerprints(table).await?;
        let tagged = self.source.group_fingerprints(tags, owner, None).await?;
        Ok(own
            .into_iter()
            .map(|(id, fingerprint)| {
                let tag_digest = tagged.get(&id).map(String::as_str).unwrap_or("");
                let combined = combine(&[&fingerprint, tag_digest]);
                (id, combined)
            })
            .collect())
    }

    /// Pipelines; returns the ids kfpd will have after the pass.
    async fn pipelines(&mut self) -> Result<HashSet<String>, Error> {
        let fingerprints = self
            .with_tags(&tables::PIPELINES, &tables::PIPELINE_TAGS, "PipelineId")
            .await?;
        let marks = self.store.adopted_marks(tables::PIPELINES.name).await?;
        let (ids, new) = changed(&fingerprints, &marks);
        let mut counts = TableReport::new(tables::PIPELINES.name, fingerprints.len(), &ids, new);
        let mut present: HashSet<String> = marks.keys().cloned().collect();
        for chunk in ids.chunks(self.options.batch_size.max(1)) {
            let rows = self
                .source
                .rows_where(&tables::PIPELINES, "UUID", Some(chunk))
                .await?;
            let tags = self
                .tag_rows(&tables::PIPELINE_TAGS, "PipelineId", chunk)
                .await?;
            let mut batch = AdoptBatch::default();
            for row in &rows {
                let id = column(row, "UUID");
                let pipeline = match convert::pipeline(row, tags.get(&id)) {
                    Ok(pipeline) => pipeline,
                    Err(reason) => {
                        counts.refuse(
                            &mut self.report,
                            &id,
                            Some(!marks.contains_key(&id)),
                            reason,
                        );
                        continue;
                    }
                };
                let scope = NameScope::Pipeline {
                    namespace: &pipeline.namespace,
                };
                if let Some(holder) = self
                    .store
                    .adopt_name_holder(scope, &pipeline.name, &pipeline.id)
                    .await?
                {
                    let reason = format!(
                        "kfpd pipeline {holder} already has the name {:?} in namespace {:?}",
                        pipeline.name, pipeline.namespace
                    );
                    counts.refuse(
                        &mut self.report,
                        &id,
                        Some(!marks.contains_key(&id)),
                        reason,
                    );
                    continue;
                }
                present.insert(id.clone());
                batch.marks.push(RowMark {
                    table: tables::PIPELINES.name.into(),
                    fingerprint: fingerprints.get(&id).cloned().unwrap_or_default(),
                    id,
                });
                batch.pipelines.push(pipeline);
            }
            self.write(batch).await?;
        }
        self.report.tables.push(counts);
        Ok(present)
    }

    async fn versions(&mut self, pipelines: &HashSet<String>) -> Result<(), Error> {
        let fingerprints = self
            .with_tags(
                &tables::PIPELINE_VERSIONS,
                &tables::PIPELINE_VERSION_TAGS,
                "PipelineVersionId",
            )
            .await?;
        let marks = self
            .store
            .adopted_marks(tables::PIPELINE_VERSIONS.name)
            .await?;
        let (ids, new) = changed(&fingerprints, &marks);
        let mut counts = TableReport::new(
            tables::PIPELINE_VERSIONS.name,
            fingerprints.len(),
            &ids,
            new,
        );
        for chunk in ids.chunks(self.options.batch_size.max(1)) {
            let rows = self
                .source
                .rows_where(&tables::PIPELINE_VERSIONS, "UUID", Some(chunk))
                .await?;
            let tags = self
                .tag_rows(&tables::PIPELINE_VERSION_TAGS, "PipelineVersionId", chunk)
                .await?;
            let mut batch = AdoptBatch::default();
            for row in &rows {
                let id = column(row, "UUID");
                let version = match convert::pipeline_version(row, tags.get(&id)) {
                    Ok(version) => version,
                    Err(reason) => {
                        counts.refuse(
                            &mut self.report,
                            &id,
                            Some(!marks.contains_key(&id)),
                            reason,
                        );
                        continue;
                    }
                };
                let known = pipelines.contains(&version.pipeline_id)
                    || self.store.get_pipeline(&version.pipeline_id).await.is_ok();
                if !known {
                    let reason = format!(
                        "its pipeline {} is not in kfpd (not brought over)",
                        version.pipeline_id
                    );
                    counts.refuse(
                        &mut self.report,
                        &id,
                        Some(!marks.contains_key(&id)),
                        reason,
                    );
                    continue;
                }
                let scope = NameScope::Version {
                    pipeline_id: &version.pipeline_id,
                };
                if let Some(holder) = self
                    .store
                    .adopt_name_holder(scope, &version.name, &version.id)
                    .await?
                {
                    let reason = format!(
                        "kfpd pipeline version {holder} of pipeline {} already has the name {:?}",
                        version.pipeline_id, version.name
                    );
                    counts.refuse(
                        &mut self.report,
                        &id,
                        Some(!marks.contains_key(&id)),
                        reason,
                    );
                    continue;
                }
                batch.marks.push(RowMark {
                    table: tables::PIPELINE_VERSIONS.name.into(),
                    fingerprint: fingerprints.get(&id).cloned().unwrap_or_default(),
                    id,
                });
                batch.versions.push(version);
            }
            self.write(batch).await?;
        }
        self.report.tables.push(counts);
        Ok(())
    }

    /// What upstream fired for each recurring run: the newest run's scheduled
    /// time and the run count, and newer servers' own record of the last tick.
    async fn fired(&self) -> Result<HashMap<String, convert::Fired>, Error> {
        let mut fired: HashMap<String, convert::Fired> = HashMap::new();
        for (id, (latest, count)) in self.source.job_run_marks().await? {
            fired.insert(
                id,
                convert::Fired {
                    latest_scheduled_at: Some(latest),
                    count,
                },
            );
        }
        if self.source.has_table(&tables::RECURRING_RUN_STATES) {
            let rows = self
                .source
                .rows_where(&tables::RECURRING_RUN_STATES, "JobUUID", None)
                .await?;
            for row in rows {
                let id = column(&row, "JobUUID");
                let last = source::parse_int(Some(&column(&row, "LastScheduledAtInSec")));
                let index = source::parse_int(Some(&column(&row, "LastRunIndex")));
                let entry = fired.entry(id).or_default();
                if last > 0 {
                    entry.latest_scheduled_at = Some(
                        entry
                            .latest_scheduled_at
                            .map_or(last, |seen| seen.max(last)),
                    );
                }
                entry.count = entry.count.max(index);
            }
        }
        Ok(fired)
    }

    async fn recurring_runs(&mut self) -> Result<(), Error> {
        const TYPES: &[&str] = &["Job", "RecurringRun"];
        let fired = self.fired().await?;
        let fingerprints: HashMap<String, String> = self
            .fingerprints_with_references(&tables::JOBS, TYPES)
            .await?
            .into_iter()
            .map(|(id, fingerprint)| {
                let job_fired = fired.get(&id).copied().unwrap_or_default();
                let schedule = format!("{:?}/{}", job_fired.latest_scheduled_at, job_fired.count);
                let combined = combine(&[&fingerprint, &schedule]);
                (id, combined)
            })
            .collect();
        let marks = self.store.adopted_marks(tables::JOBS.name).await?;
        let (ids, new) = changed(&fingerprints, &marks);
        let mut counts = TableReport::new(tables::JOBS.name, fingerprints.len(), &ids, new);
        for chunk in ids.chunks(self.options.batch_size.max(1)) {
            let rows = self
                .source
                .rows_where(&tables::JOBS, "UUID", Some(chunk))
                .await?;
            let references = self.references(chunk, TYPES).await?;
            let mut batch = AdoptBatch::default();
            for row in &rows {
                let id = column(row, "UUID");
                let job_fired = fired.get(&id).copied().unwrap_or_default();
                let (recurring, warning) =
                    match convert::recurring_run(row, references.get(&id), job_fired) {
                        Ok(converted) => converted,
                        Err(reason) => {
                            counts.refuse(
                                &mut self.report,
                                &id,
                                Some(!marks.contains_key(&id)),
                                reason,
                            );
                            continue;
                        }
                    };
                if let Some(warning) = warning {
                    self.report.warn(tables::JOBS.name, &id, warning);
                }
                batch.marks.push(RowMark {
                    table: tables::JOBS.name.into(),
                    fingerprint: fingerprints.get(&id).cloned().unwrap_or_default(),
                    id,
                });
                batch.recurring_runs.push(recurring);
            }
            self.write(batch).await?;
        }
        self.report.tables.push(counts);
        Ok(())
    }

    async fn runs(&mut self) -> Result<(), Error> {
        const TYPES: &[&str] = &["Run"];
        let task_digests = self
            .source
            .group_fingerprints(&tables::TASKS, "RunUUID", None)
            .await?;
        let fingerprints: HashMap<String, String> = self
            .fingerprints_with_references(&tables::RUNS, TYPES)
            .await?
            .into_iter()
            .map(|(id, fingerprint)| {
                let tasks = task_digests.get(&id).map(String::as_str).unwrap_or("");
                let combined = combine(&[&fingerprint, tasks]);
                (id, combined)
            })
            .collect();
        let marks = self.store.adopted_marks(tables::RUNS.name).await?;
        let (ids, new) = changed(&fingerprints, &marks);
        let mut counts = TableReport::new(tables::RUNS.name, fingerprints.len(), &ids, new);
        let mut tasks_counts = TableReport {
            table: tables::TASKS.name,
            ..TableReport::default()
        };
        let mut in_flight = 0usize;
        for chunk in ids.chunks(self.options.batch_size.max(1)) {
            let rows = self
                .source
                .rows_where(&tables::RUNS, "UUID", Some(chunk))
                .await?;
            let references = self.references(chunk, TYPES).await?;
            let tasks = self
                .source
                .rows_where(&tables::TASKS, "RunUUID", Some(chunk))
                .await?;
            let mut tasks = group_by_column(tasks, "RunUUID");
            let mut batch = AdoptBatch::default();
            for row in &rows {
                let id = column(row, "UUID");
                let converted = match convert::run(row, references.get(&id)) {
                    Ok(converted) => converted,
                    Err(reason) => {
                        counts.refuse(
                            &mut self.report,
                            &id,
                            Some(!marks.contains_key(&id)),
                            reason,
                        );
                        continue;
                    }
                };
                if !converted.run.state.is_terminal() {
                    in_flight += 1;
                }
                let task_rows = tasks.remove(&id).unwrap_or_default();
                tasks_counts.upstream += task_rows.len();
                let mut kept_rows = Vec::with_capacity(task_rows.len());
                for task_row in task_rows {
                    match convert::tasks(&id, std::slice::from_ref(&task_row)) {
                        Ok(_) => kept_rows.push(task_row),
                        Err((task_id, reason)) => {
                            tasks_counts.refuse(&mut self.report, &task_id, None, reason);
                        }
                    }
                }
                let (run_tasks, links) = match convert::tasks(&id, &kept_rows) {
                    Ok(converted) => converted,
                    Err((task_id, reason)) => {
                        tasks_counts.refuse(&mut self.report, &task_id, None, reason);
                        (Vec::new(), Vec::new())
                    }
                };
                tasks_counts.new += run_tasks.len();
                let artifacts = convert::workflow_artifacts(
                    &converted.run,
                    &column(row, "WorkflowRuntimeManifest"),
                    &self.options.bucket,
                );
                batch.marks.push(RowMark {
                    table: tables::RUNS.name.into(),
                    fingerprint: fingerprints.get(&id).cloned().unwrap_or_default(),
                    id,
                });
                batch.runs.push(AdoptedRun {
                    run: converted.run,
                    pipeline_spec: converted.spec,
                    inline_spec: converted.inline_spec,
                    archived_at: converted.archived_at,
                    tasks: run_tasks,
                    artifacts,
                    links,
                });
            }
            let written = batch.runs.len();
            self.write(batch).await?;
            tracing::debug!(runs = written, "adopted a batch of runs");
        }
        if in_flight > 0 {
            self.report.warn(
                tables::RUNS.name,
                "*",
                format!(
                    "{in_flight} run(s) brought were not finished upstream; kfpd does not follow upstream's Workflows: let them finish before the final pass"
                ),
            );
        }
        self.report.tables.push(counts);
        self.report.tables.push(tasks_counts);
        Ok(())
    }

    async fn db_status(&mut self) -> Result<(), Error> {
        let rows = self
            .source
            .rows_where(&tables::DB_STATUSES, "HaveSamplesLoaded", None)
            .await?;
        self.report.samples_loaded = rows.first().map(|row| {
            matches!(
                column(row, "HaveSamplesLoaded").as_str(),
                "1" | "true" | "t"
            )
        });
        Ok(())
    }
}

/// One adoption pass from the upstream database at `source_url` into `store`.
pub async fn adopt(source_url: &str, store: &SqlStore, options: &Options) -> Result<Report, Error> {
    let source = Source::open(source_url).await?;
    let started_at = now();
    let mut pass = Pass {
        report: Report {
            source: source.display.clone(),
            dry_run: options.dry_run,
            ..Report::default()
        },
        source,
        store,
        options,
        now: started_at,
    };
    pass.db_status().await?;
    pass.experiments().await?;
    let pipelines = pass.pipelines().await?;
    pass.versions(&pipelines).await?;
    pass.recurring_runs().await?;
    pass.runs().await?;
    let report = pass.report;
    if !options.dry_run {
        store
            .record_adopt_pass(&AdoptPass {
                started_at,
                finished_at: now(),
                source: report.source.clone(),
                brought: report.brought() as i64,
                unchanged: report.unchanged() as i64,
                refused: report.refused.len() as i64,
            })
            .await?;
    }
    Ok(report)
}
