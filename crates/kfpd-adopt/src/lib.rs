//! Adopting an upstream KFP database: reads the tables upstream's API server
//! (KFP 2.15 and 2.17) keeps in MySQL or PostgreSQL and brings every row into
//! kfpd's store with the same ids, names, states, times, specs and runtime
//! configs, so `kfp.Client` lists and gets what it did from upstream.
//!
//! Upstream's database is opened read-only. Each pass compares server-side
//! fingerprints of upstream's rows (with their references, tags and tasks) with
//! the marks of the previous passes and brings only rows that are new or
//! changed, in batches of one transaction each that write the rows and their
//! marks together: a pass stopped halfway resumes after its last batch. Rows
//! adopted earlier that upstream no longer has are removed from kfpd the same
//! way, never rows made in kfpd itself.

mod convert;
mod report;
mod source;
mod tables;

use std::collections::{HashMap, HashSet};

use kfpd_store::adopt::{AdoptBatch, AdoptPass, AdoptedKind, AdoptedRun, NameScope, RowMark};
use kfpd_store::sql::SqlStore;
use kfpd_store::PipelineStore;
use sha2::{Digest, Sha256};

pub use convert::{run_state, spec_json, storage_state};
pub use report::{Gone, Problem, Report, TableReport};
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

/// What differs between the upstream tables a pass brings row by row: how a
/// row is fingerprinted, what a batch reads besides its rows, and what kfpd row
/// it becomes. The pass over each (compare, batch, write, remove what upstream
/// deleted) is [`Pass::table`], the same for all.
trait Rows {
    /// The kfpd row one upstream row becomes.
    type Item;
    /// What a batch reads besides its rows (references, tags, tasks).
    type Extra;
    const TABLE: &'static Table;
    const KIND: AdoptedKind;

    /// Every upstream row's id and fingerprint, with what belongs to it folded in.
    async fn fingerprints(&self, pass: &Pass<'_>) -> Result<HashMap<String, String>, Error>;

    async fn extra(&self, pass: &Pass<'_>, ids: &[String]) -> Result<Self::Extra, Error>;

    /// The kfpd row, or (inner `Err`) why the upstream row cannot be brought.
    async fn convert(
        &mut self,
        pass: &mut Pass<'_>,
        row: &SourceRow,
        id: &str,
        extra: &mut Self::Extra,
    ) -> Result<Result<Self::Item, String>, Error>;

    fn add(batch: &mut AdoptBatch, item: Self::Item);
}

/// A pass in progress.
struct Pass<'a> {
    source: Source,
    store: &'a SqlStore,
    options: &'a Options,
    report: Report,
    now: i64,
    /// Per table brought: the adopted rows upstream no longer has, and where
    /// the table's counts are in the report.
    gone: Vec<(AdoptedKind, usize, Vec<String>)>,
}

impl Pass<'_> {
    async fn write(&mut self, batch: AdoptBatch) -> Result<(), Error> {
        if self.options.dry_run || batch.is_empty() {
            return Ok(());
        }
        self.store.write_adopted(&batch, self.now).await?;
        Ok(())
    }

    fn batch_size(&self) -> usize {
        self.options.batch_size.max(1)
    }

    /// One upstream table: brings its new and changed rows in batches, then
    /// removes the adopted rows upstream no longer has.
    async fn table<T: Rows>(&mut self, rows: &mut T) -> Result<(), Error> {
        let table = T::TABLE;
        let fingerprints = rows.fingerprints(self).await?;
        let marks = self.store.adopted_marks(table.name).await?;
        let (ids, new) = changed(&fingerprints, &marks);
        let mut counts = TableReport::new(table.name, fingerprints.len(), &ids, new);
        for chunk in ids.chunks(self.batch_size()) {
            let found = self
                .source
                .rows_where(table, table.key, Some(chunk))
                .await?;
            let mut extra = rows.extra(self, chunk).await?;
            let mut batch = AdoptBatch::default();
            for row in &found {
                let id = column(row, table.key);
                match rows.convert(self, row, &id, &mut extra).await? {
                    Ok(item) => {
                        batch.marks.push(RowMark {
                            table: table.name.into(),
                            fingerprint: fingerprints.get(&id).cloned().unwrap_or_default(),
                            id,
                        });
                        T::add(&mut batch, item);
                    }
                    Err(reason) => {
                        let was_new = !marks.contains_key(&id);
                        counts.refuse(&mut self.report, &id, Some(was_new), reason);
                    }
                }
            }
            let brought = batch.marks.len();
            self.write(batch).await?;
            tracing::debug!(table = table.name, rows = brought, "adopted a batch");
        }
        // Adopted rows whose upstream row is gone (deleted in upstream's UI
        // during the switch): the marks upstream's fingerprints no longer list,
        // a set difference over what the pass read anyway.
        let mut gone: Vec<String> = marks
            .into_keys()
            .filter(|id| !fingerprints.contains_key(id))
            .collect();
        gone.sort();
        self.gone.push((T::KIND, self.report.tables.len(), gone));
        self.report.tables.push(counts);
        Ok(())
    }

    /// Removes the rows upstream deleted, after every table was brought and in
    /// the reverse order (runs before the experiments they are in, versions
    /// before their pipelines), in batches of one transaction each; a dry run
    /// reports what it would remove.
    async fn remove_gone(&mut self) -> Result<(), Error> {
        while let Some((kind, index, ids)) = self.gone.pop() {
            let table = self.report.tables[index].table;
            for chunk in ids.chunks(self.batch_size()) {
                let removed = self
                    .store
                    .remove_adopted(kind, table, chunk, self.options.dry_run)
                    .await?;
                for row in removed {
                    let gone = self.report.tables[index].remove(row);
                    self.report.gone.push(gone);
                }
            }
        }
        Ok(())
    }

    /// Why an adopted row cannot take its name: a kfpd row of another id has it.
    async fn name_taken(
        &self,
        scope: NameScope<'_>,
        name: &str,
        id: &str,
    ) -> Result<Option<String>, Error> {
        let Some(holder) = self.store.adopt_name_holder(scope, name, id).await? else {
            return Ok(None);
        };
        Ok(Some(match scope {
            NameScope::Experiment { namespace } => format!(
                "kfpd experiment {holder} already has the name {name:?} in namespace {namespace:?}"
            ),
            NameScope::Pipeline { namespace } => format!(
                "kfpd pipeline {holder} already has the name {name:?} in namespace {namespace:?}"
            ),
            NameScope::Version { pipeline_id } => format!(
                "kfpd pipeline version {holder} of pipeline {pipeline_id} already has the name {name:?}"
            ),
        }))
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
        Ok(fold(own, &references))
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

    /// The default experiment: one row, one mark.
    async fn default_experiment(&mut self) -> Result<(), Error> {
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
        Ok(fold(own, &tagged))
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

/// Each row's fingerprint combined with the digest of what belongs to it.
fn fold(
    own: HashMap<String, String>,
    belonging: &HashMap<String, String>,
) -> HashMap<String, String> {
    own.into_iter()
        .map(|(id, fingerprint)| {
            let digest = belonging.get(&id).map(String::as_str).unwrap_or("");
            let combined = combine(&[&fingerprint, digest]);
            (id, combined)
        })
        .collect()
}

struct Experiments;

impl Rows for Experiments {
    type Item = kfpd_store::Experiment;
    type Extra = HashMap<String, convert::References>;
    const TABLE: &'static Table = &tables::EXPERIMENTS;
    const KIND: AdoptedKind = AdoptedKind::Experiment;

    async fn fingerprints(&self, pass: &Pass<'_>) -> Result<HashMap<String, String>, Error> {
        pass.fingerprints_with_references(Self::TABLE, &["Experiment"])
            .await
    }

    async fn extra(&self, pass: &Pass<'_>, ids: &[String]) -> Result<Self::Extra, Error> {
        pass.references(ids, &["Experiment"]).await
    }

    async fn convert(
        &mut self,
        pass: &mut Pass<'_>,
        row: &SourceRow,
        id: &str,
        references: &mut Self::Extra,
    ) -> Result<Result<Self::Item, String>, Error> {
        let experiment = match convert::experiment(row, references.get(id)) {
            Ok(experiment) => experiment,
            Err(reason) => return Ok(Err(reason)),
        };
        let scope = NameScope::Experiment {
            namespace: &experiment.namespace,
        };
        Ok(match pass.name_taken(scope, &experiment.name, id).await? {
            Some(reason) => Err(reason),
            None => Ok(experiment),
        })
    }

    fn add(batch: &mut AdoptBatch, item: Self::Item) {
        batch.experiments.push(item);
    }
}

/// Pipelines; `present` gathers the ids kfpd will have after the pass, for
/// the versions to find their pipeline in a dry run too.
#[derive(Default)]
struct Pipelines {
    present: HashSet<String>,
}

impl Rows for Pipelines {
    type Item = kfpd_store::Pipeline;
    type Extra = HashMap<String, Vec<SourceRow>>;
    const TABLE: &'static Table = &tables::PIPELINES;
    const KIND: AdoptedKind = AdoptedKind::Pipeline;

    async fn fingerprints(&self, pass: &Pass<'_>) -> Result<HashMap<String, String>, Error> {
        pass.with_tags(Self::TABLE, &tables::PIPELINE_TAGS, "PipelineId")
            .await
    }

    async fn extra(&self, pass: &Pass<'_>, ids: &[String]) -> Result<Self::Extra, Error> {
        pass.tag_rows(&tables::PIPELINE_TAGS, "PipelineId", ids)
            .await
    }

    async fn convert(
        &mut self,
        pass: &mut Pass<'_>,
        row: &SourceRow,
        id: &str,
        tags: &mut Self::Extra,
    ) -> Result<Result<Self::Item, String>, Error> {
        let pipeline = match convert::pipeline(row, tags.get(id)) {
            Ok(pipeline) => pipeline,
            Err(reason) => return Ok(Err(reason)),
        };
        let scope = NameScope::Pipeline {
            namespace: &pipeline.namespace,
        };
        if let Some(reason) = pass.name_taken(scope, &pipeline.name, id).await? {
            return Ok(Err(reason));
        }
        self.present.insert(id.to_string());
        Ok(Ok(pipeline))
    }

    fn add(batch: &mut AdoptBatch, item: Self::Item) {
        batch.pipelines.push(item);
    }
}

struct Versions<'p> {
    pipelines: &'p HashSet<String>,
}

impl Rows for Versions<'_> {
    type Item = kfpd_store::PipelineVersion;
    type Extra = HashMap<String, Vec<SourceRow>>;
    const TABLE: &'static Table = &tables::PIPELINE_VERSIONS;
    const KIND: AdoptedKind = AdoptedKind::Version;

    async fn fingerprints(&self, pass: &Pass<'_>) -> Result<HashMap<String, String>, Error> {
        pass.with_tags(
            Self::TABLE,
            &tables::PIPELINE_VERSION_TAGS,
            "PipelineVersionId",
        )
        .await
    }

    async fn extra(&self, pass: &Pass<'_>, ids: &[String]) -> Result<Self::Extra, Error> {
        pass.tag_rows(&tables::PIPELINE_VERSION_TAGS, "PipelineVersionId", ids)
            .await
    }

    async fn convert(
        &mut self,
        pass: &mut Pass<'_>,
        row: &SourceRow,
        id: &str,
        tags: &mut Self::Extra,
    ) -> Result<Result<Self::Item, String>, Error> {
        let version = match convert::pipeline_version(row, tags.get(id)) {
            Ok(version) => version,
            Err(reason) => return Ok(Err(reason)),
        };
        let known = self.pipelines.contains(&version.pipeline_id)
            || pass.store.get_pipeline(&version.pipeline_id).await.is_ok();
        if !known {
            return Ok(Err(format!(
                "its pipeline {} is not in kfpd (not brought over)",
                version.pipeline_id
            )));
        }
        let scope = NameScope::Version {
            pipeline_id: &version.pipeline_id,
        };
        Ok(match pass.name_taken(scope, &version.name, id).await? {
            Some(reason) => Err(reason),
            None => Ok(version),
        })
    }

    fn add(batch: &mut AdoptBatch, item: Self::Item) {
        batch.versions.push(item);
    }
}

struct RecurringRuns {
    fired: HashMap<String, convert::Fired>,
}

const JOB_TYPES: &[&str] = &["Job", "RecurringRun"];

impl Rows for RecurringRuns {
    type Item = kfpd_store::RecurringRun;
    type Extra = HashMap<String, convert::References>;
    const TABLE: &'static Table = &tables::JOBS;
    const KIND: AdoptedKind = AdoptedKind::RecurringRun;

    async fn fingerprints(&self, pass: &Pass<'_>) -> Result<HashMap<String, String>, Error> {
        let own = pass
            .fingerprints_with_references(Self::TABLE, JOB_TYPES)
            .await?;
        let schedules = own
            .keys()
            .map(|id| {
                let fired = self.fired.get(id).copied().unwrap_or_default();
                let schedule = format!("{:?}/{}", fired.latest_scheduled_at, fired.count);
                (id.clone(), schedule)
            })
            .collect();
        Ok(fold(own, &schedules))
    }

    async fn extra(&self, pass: &Pass<'_>, ids: &[String]) -> Result<Self::Extra, Error> {
        pass.references(ids, JOB_TYPES).await
    }

    async fn convert(
        &mut self,
        pass: &mut Pass<'_>,
        row: &SourceRow,
        id: &str,
        references: &mut Self::Extra,
    ) -> Result<Result<Self::Item, String>, Error> {
        let fired = self.fired.get(id).copied().unwrap_or_default();
        let (recurring, warning) = match convert::recurring_run(row, references.get(id), fired) {
            Ok(converted) => converted,
            Err(reason) => return Ok(Err(reason)),
        };
        if let Some(warning) = warning {
            pass.report.warn(Self::TABLE.name, id, warning);
        }
        Ok(Ok(recurring))
    }

    fn add(batch: &mut AdoptBatch, item: Self::Item) {
        batch.recurring_runs.push(item);
    }
}

/// Runs with their task rows, counted apart in `tasks`.
struct Runs {
    tasks: TableReport,
    /// Runs brought unfinished (PENDING, RUNNING, CANCELING upstream).
    in_flight: usize,
}

/// What a batch of runs reads besides their rows.
struct RunExtra {
    references: HashMap<String, convert::References>,
    tasks: HashMap<String, Vec<SourceRow>>,
}

impl Rows for Runs {
    type Item = AdoptedRun;
    type Extra = RunExtra;
    const TABLE: &'static Table = &tables::RUNS;
    const KIND: AdoptedKind = AdoptedKind::Run;

    async fn fingerprints(&self, pass: &Pass<'_>) -> Result<HashMap<String, String>, Error> {
        let task_digests = pass
            .source
            .group_fingerprints(&tables::TASKS, "RunUUID", None)
            .await?;
        let own = pass
            .fingerprints_with_references(Self::TABLE, &["Run"])
            .await?;
        Ok(fold(own, &task_digests))
    }

    async fn extra(&self, pass: &Pass<'_>, ids: &[String]) -> Result<Self::Extra, Error> {
        let references = pass.references(ids, &["Run"]).await?;
        let tasks = pass
            .source
            .rows_where(&tables::TASKS, "RunUUID", Some(ids))
            .await?;
        Ok(RunExtra {
            references,
            tasks: group_by_column(tasks, "RunUUID"),
        })
    }

    async fn convert(
        &mut self,
        pass: &mut Pass<'_>,
        row: &SourceRow,
        id: &str,
        extra: &mut Self::Extra,
    ) -> Result<Result<Self::Item, String>, Error> {
        let converted = match convert::run(row, extra.references.get(id)) {
            Ok(converted) => converted,
            Err(reason) => return Ok(Err(reason)),
        };
        if !converted.run.state.is_terminal() {
            self.in_flight += 1;
        }
        let task_rows = extra.tasks.remove(id).unwrap_or_default();
        self.tasks.upstream += task_rows.len();
        let mut kept_rows = Vec::with_capacity(task_rows.len());
        for task_row in task_rows {
            match convert::tasks(id, std::slice::from_ref(&task_row)) {
                Ok(_) => kept_rows.push(task_row),
                Err((task_id, reason)) => {
                    self.tasks.refuse(&mut pass.report, &task_id, None, reason);
                }
            }
        }
        let (run_tasks, links) = match convert::tasks(id, &kept_rows) {
            Ok(converted) => converted,
            Err((task_id, reason)) => {
                self.tasks.refuse(&mut pass.report, &task_id, None, reason);
                (Vec::new(), Vec::new())
            }
        };
        self.tasks.new += run_tasks.len();
        let artifacts = convert::workflow_artifacts(
            &converted.run,
            &column(row, "WorkflowRuntimeManifest"),
            &pass.options.bucket,
        );
        Ok(Ok(AdoptedRun {
            run: converted.run,
            pipeline_spec: converted.spec,
            inline_spec: converted.inline_spec,
            archived_at: converted.archived_at,
            tasks: run_tasks,
            artifacts,
            links,
        }))
    }

    fn add(batch: &mut AdoptBatch, item: Self::Item) {
        batch.runs.push(item);
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
        gone: Vec::new(),
    };
    pass.db_status().await?;
    pass.table(&mut Experiments).await?;
    pass.default_experiment().await?;
    let mut pipelines = Pipelines::default();
    pass.table(&mut pipelines).await?;
    pass.table(&mut Versions {
        pipelines: &pipelines.present,
    })
    .await?;
    let fired = pass.fired().await?;
    pass.table(&mut RecurringRuns { fired }).await?;
    let mut runs = Runs {
        tasks: TableReport {
            table: tables::TASKS.name,
            ..TableReport::default()
        },
        in_flight: 0,
    };
    pass.table(&mut runs).await?;
    if runs.in_flight > 0 {
        pass.report.warn(
            tables::RUNS.name,
            "*",
            format!(
                "{} run(s) brought were not finished upstream: a later pass brings their changes while upstream runs them; a kfpd serving with its own executor ends them FAILED at start (docs/upgrade.md)",
                runs.in_flight
            ),
        );
    }
    pass.report.tables.push(runs.tasks);
    pass.remove_gone().await?;
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
