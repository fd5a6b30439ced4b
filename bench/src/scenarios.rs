//! The measured operations, against the REST API or directly against the store.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kfpd_store::list::{Op, Predicate, Resource, Value};
use kfpd_store::sql::{Dialect, Sql, SqlStore};
use kfpd_store::{ListQuery, NewRun, RunStore, Scope};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::stats::Samples;

pub const PAGE_SIZE: i32 = 20;
pub const SORT_BY: &str = "created_at desc";
/// The page whose latency "page 50" measures.
pub const DEEP_PAGE: usize = 50;

/// What a list request is narrowed to.
#[derive(Clone, Debug)]
pub enum Variant {
    All,
    Experiment(String),
    State(&'static str),
}

impl Variant {
    fn predicates(&self) -> Option<Vec<Predicate>> {
        match self {
            Variant::State(state) => Some(vec![Predicate {
                key: "state".into(),
                op: Op::Eq,
                value: Value::Str((*state).into()),
            }]),
            _ => None,
        }
    }

    fn filter_json(&self) -> Option<String> {
        match self {
            Variant::State(state) => Some(format!(
                r#"{{"predicates":[{{"operation":"EQUALS","key":"state","string_value":"{state}"}}]}}"#
            )),
            _ => None,
        }
    }

    fn scope(&self) -> Scope {
        match self {
            Variant::Experiment(id) => Scope {
                namespace: None,
                experiment_id: Some(id.clone()),
            },
            _ => Scope::default(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Variant::All => "no filter",
            Variant::Experiment(_) => "by experiment",
            Variant::State("RUNNING") => "state=RUNNING",
            Variant::State("SUCCEEDED") => "state=SUCCEEDED",
            Variant::State(_) => "by state",
        }
    }
}

/// One page as the caller saw it.
pub struct Listed {
    pub took: Duration,
    pub next_page_token: String,
    pub items: usize,
}

/// Where requests go: kfpd over HTTP, or the store in this process.
pub enum Target {
    Http {
        client: reqwest::Client,
        base: String,
    },
    Store(SqlStore),
}

impl Target {
    pub async fn list(&self, variant: &Variant, token: &str) -> Result<Listed> {
        match self {
            Target::Http { client, base } => {
                let mut params: Vec<(&str, String)> = vec![
                    ("page_size", PAGE_SIZE.to_string()),
                    ("sort_by", SORT_BY.to_string()),
                ];
                if let Variant::Experiment(id) = variant {
                    params.push(("experiment_id", id.clone()));
                }
                if let Some(filter) = variant.filter_json() {
                    params.push(("filter", filter));
                }
                if !token.is_empty() {
                    params.push(("page_token", token.to_string()));
                }
                let url =
                    reqwest::Url::parse_with_params(&format!("{base}/apis/v2beta1/runs"), &params)?;
                let started = Instant::now();
                let response = client.get(url).send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                let took = started.elapsed();
                if !status.is_success() {
                    bail!(
                        "ListRuns answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                let page: serde_json::Value = serde_json::from_slice(&body)?;
                Ok(Listed {
                    took,
                    next_page_token: page["next_page_token"].as_str().unwrap_or("").to_string(),
                    items: page["runs"].as_array().map_or(0, Vec::len),
                })
            }
            Target::Store(store) => {
                let started = Instant::now();
                let query = ListQuery::new(
                    Resource::Run,
                    PAGE_SIZE,
                    token,
                    SORT_BY,
                    variant.predicates(),
                )?;
                let page = store.list_runs(&variant.scope(), &query).await?;
                Ok(Listed {
                    took: started.elapsed(),
                    next_page_token: page.next_page_token,
                    items: page.items.len(),
                })
            }
        }
    }

    pub async fn get_run(&self, id: &str) -> Result<Duration> {
        match self {
            Target::Http { client, base } => {
                let started = Instant::now();
                let response = client
                    .get(format!("{base}/apis/v2beta1/runs/{id}"))
                    .send()
                    .await?;
                let status = response.status();
                let body = response.bytes().await?;
                let took = started.elapsed();
                if !status.is_success() {
                    bail!(
                        "GetRun answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Ok(took)
            }
            Target::Store(store) => {
                let started = Instant::now();
                let run = store.get_run(id).await?;
                let took = started.elapsed();
                if run.pipeline_spec.is_none() {
                    bail!("run {id} came back without its inline spec");
                }
                Ok(took)
            }
        }
    }
}

/// Inputs every scenario draws from.
pub struct Workload {
    /// All seeded experiment ids.
    pub experiments: Vec<String>,
    /// Experiments with at least DEEP_PAGE full pages of runs.
    pub deep_experiments: Vec<String>,
    pub run_ids: Vec<String>,
    pub samples: usize,
    pub deep_samples: usize,
    pub warmup: usize,
}

/// Results of one pass over a target, in a fixed order of operations.
#[derive(Default)]
pub struct Measured {
    pub rows: Vec<(String, Samples)>,
    /// Page-50 walks that ended before page 50 (too few matching runs).
    pub short_walks: usize,
}

impl Measured {
    pub fn get(&self, name: &str) -> Option<&Samples> {
        self.rows
            .iter()
            .find(|(row, _)| row == name)
            .map(|(_, samples)| samples)
    }
}

pub const OP_LIST_ALL: &str = "ListRuns p1, no filter";
pub const OP_LIST_EXPERIMENT: &str = "ListRuns p1, by experiment";
pub const OP_LIST_RUNNING: &str = "ListRuns p1, state=RUNNING";
pub const OP_LIST_SUCCEEDED: &str = "ListRuns p1, state=SUCCEEDED";
pub const OP_DEEP: &str = "ListRuns p50 (all variants)";
pub const OP_GET: &str = "GetRun";

/// Page 1 of the four list variants, page 50 of each, GetRun.
pub async fn measure(target: &Target, work: &Workload, rng: &mut StdRng) -> Result<Measured> {
    let mut measured = Measured::default();
    let first_page: [(&str, Option<&'static str>); 4] = [
        (OP_LIST_ALL, None),
        (OP_LIST_EXPERIMENT, None),
        (OP_LIST_RUNNING, Some("RUNNING")),
        (OP_LIST_SUCCEEDED, Some("SUCCEEDED")),
    ];
    for (name, state) in first_page {
        let mut samples = Samples::default();
        for index in 0..work.warmup + work.samples {
            let variant = match (name, state) {
                (_, Some(state)) => Variant::State(state),
                (OP_LIST_EXPERIMENT, None) => Variant::Experiment(pick(&work.experiments, rng)?),
                _ => Variant::All,
            };
            let page = target.list(&variant, "").await?;
            if page.items == 0 && !matches!(variant, Variant::Experiment(_)) {
                bail!("{name}: empty page");
            }
            if index >= work.warmup {
                samples.push(page.took);
            }
        }
        eprintln!("  {name}: {} samples", samples.len());
        measured.rows.push((name.to_string(), samples));
    }

    // Page 50: follow the token 49 times unmeasured, then time page 50.
    let mut deep_all = Samples::default();
    let mut deep_by_variant: Vec<(String, Samples)> = Vec::new();
    let variants = |index: usize, rng: &mut StdRng| -> Result<Variant> {
        Ok(match index % 4 {
            0 => Variant::All,
            1 => Variant::Experiment(pick(&work.deep_experiments, rng)?),
            2 => Variant::State("RUNNING"),
            _ => Variant::State("SUCCEEDED"),
        })
    };
    // A short warm-up walk per variant, unmeasured.
    for index in 0..4 {
        let variant = variants(index, rng)?;
        walk(target, &variant, 5).await?;
    }
    for index in 0..work.deep_samples {
        let variant = variants(index, rng)?;
        match walk(target, &variant, DEEP_PAGE).await? {
            Some(took) => {
                deep_all.push(took);
                let label = format!("ListRuns p50, {}", variant.label());
                match deep_by_variant.iter_mut().find(|(name, _)| *name == label) {
                    Some((_, samples)) => samples.push(took),
                    None => {
                        let mut samples = Samples::default();
                        samples.push(took);
                        deep_by_variant.push((label, samples));
                    }
                }
            }
            None => measured.short_walks += 1,
        }
    }
    eprintln!("  {OP_DEEP}: {} samples", deep_all.len());
    measured.rows.push((OP_DEEP.to_string(), deep_all));
    measured.rows.extend(deep_by_variant);

    let mut samples = Samples::default();
    for index in 0..work.warmup + work.samples {
        let id = pick(&work.run_ids, rng)?;
        let took = target.get_run(&id).await?;
        if index >= work.warmup {
            samples.push(took);
        }
    }
    eprintln!("  {OP_GET}: {} samples", samples.len());
    measured.rows.push((OP_GET.to_string(), samples));
    Ok(measured)
}

/// Fetches pages 1..=page of a list and returns how long the last one took, or
/// `None` when the list ends earlier.
async fn walk(target: &Target, variant: &Variant, page: usize) -> Result<Option<Duration>> {
    let mut token = String::new();
    for number in 1..=page {
        let listed = target.list(variant, &token).await?;
        if number == page {
            return Ok(Some(listed.took));
        }
        if listed.next_page_token.is_empty() {
            return Ok(None);
        }
        token = listed.next_page_token;
    }
    Ok(None)
}

fn pick(items: &[String], rng: &mut StdRng) -> Result<String> {
    items
        .choose(rng)
        .cloned()
        .context("nothing to pick from (too few runs or experiments seeded?)")
}

/// CreateRun throughput: `clients` concurrent creators for `duration`.
pub struct Throughput {
    pub clients: usize,
    pub created: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub wall: Duration,
    pub latency: Samples,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.created as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Who creates the runs: kfpd over HTTP (the whole CreateRun), or the store's
/// `create_run` alone (the database write, no HTTP, no spec validation).
#[derive(Clone)]
pub enum Creator {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Store(SqlStore),
}

impl Creator {
    pub fn http(client: &reqwest::Client, base: &str) -> Creator {
        Creator::Http {
            client: client.clone(),
            url: format!("{base}/apis/v2beta1/runs"),
        }
    }

    async fn create(&self, name: &str, experiment: &str, spec_json: &str) -> Result<()> {
        match self {
            Creator::Http { client, url } => {
                let body = format!(
                    r#"{{"display_name":"{name}","experiment_id":"{experiment}","pipeline_spec":{spec_json}}}"#
                );
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let text = response.bytes().await?;
                if !status.is_success() {
                    bail!(
                        "CreateRun answered {status}: {}",
                        String::from_utf8_lossy(&text)
                    );
                }
                Ok(())
            }
            Creator::Store(store) => {
                let now = crate::seed::unix_now();
                store
                    .create_run(NewRun {
                        experiment_id: experiment.to_string(),
                        namespace: String::new(),
                        display_name: name.to_string(),
                        description: String::new(),
                        service_account: "pipeline-runner".into(),
                        created_at: now,
                        scheduled_at: now,
                        pipeline_id: String::new(),
                        pipeline_version_id: String::new(),
                        recurring_run_id: String::new(),
                        runtime_config: String::new(),
                        pipeline_spec: spec_json.to_string(),
                        inline_spec: true,
                    })
                    .await?;
                Ok(())
            }
        }
    }
}

pub async fn create_runs(
    creator: &Creator,
    experiments: &[String],
    spec_json: &str,
    clients: usize,
    duration: Duration,
    warmup: usize,
) -> Result<Throughput> {
    // Warm-up, which also checks that the request is accepted.
    for number in 0..warmup.max(1) {
        let experiment = &experiments[number % experiments.len()];
        creator
            .create(&format!("bench-warmup-{number}"), experiment, spec_json)
            .await?;
    }
    // A fixed duration, and a bound on requests per client as well.
    let per_client = 200_000usize;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..clients {
        let creator = creator.clone();
        let experiments = experiments.to_vec();
        let spec = spec_json.to_string();
        let seed: u64 = rand::random();
        tasks.push(tokio::spawn(async move {
            let mut rng: StdRng = rand::SeedableRng::seed_from_u64(seed);
            let mut latency = Samples::default();
            let mut errors = 0usize;
            let mut first_error = None;
            for number in 0..per_client {
                if started.elapsed() >= duration {
                    break;
                }
                let experiment = &experiments[rng.gen_range(0..experiments.len())];
                let name = format!("bench-create-{index}-{number}");
                let sent = Instant::now();
                match creator.create(&name, experiment, &spec).await {
                    Ok(()) => latency.push(sent.elapsed()),
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| error.to_string());
                    }
                }
            }
            (latency, errors, first_error)
        }));
    }
    let mut throughput = Throughput {
        clients,
        created: 0,
        errors: 0,
        first_error: None,
        wall: Duration::ZERO,
        latency: Samples::default(),
    };
    for task in tasks {
        let (latency, errors, first_error) = task.await?;
        throughput.created += latency.len();
        throughput.errors += errors;
        if throughput.first_error.is_none() {
            throughput.first_error = first_error;
        }
        throughput.latency.extend(&latency);
    }
    throughput.wall = started.elapsed();
    Ok(throughput)
}

/// The statements behind one ListRuns, timed apart: the page, the `total_size` from
/// the run counts (what list_runs runs) and, for comparison, a `COUNT(*)` over runs.
pub struct Breakdown {
    pub variant: String,
    pub page: Samples,
    /// `None` when list_runs itself would fall back to `COUNT(*)`.
    pub counted: Option<Samples>,
    pub count: Samples,
    pub total: i64,
    /// EXPLAIN output of the page and the count statement.
    pub plans: (String, String),
}

/// The columns `list_runs` selects (kept in step with kfpd-store's runs.rs).
const RUN_COLUMNS: &str =
    "uuid, experiment_uuid, namespace, display_name, description, storage_state, \
     service_account, created_at, scheduled_at, finished_at, state, error, pipeline_uuid, \
     pipeline_version_uuid, recurring_run_uuid, runtime_config, state_history, inline_spec";

pub async fn breakdown(
    store: &SqlStore,
    variant: &Variant,
    samples: usize,
    analyze: bool,
) -> Result<Breakdown> {
    let dialect = store.dialect();
    let query = ListQuery::new(Resource::Run, PAGE_SIZE, "", SORT_BY, variant.predicates())?;
    // The same statements list_runs builds (runs.rs / SqlStore::list_page).
    let mut scope = Sql::new(" FROM runs WHERE 1 = 1");
    if let Variant::Experiment(id) = variant {
        scope.push(" AND experiment_uuid = ").bind(id);
    }
    scope.push_conditions(dialect, &query.conditions, None);
    let mut count = Sql::new("SELECT COUNT(*)");
    count.append(&scope);
    let experiment_id = match variant {
        Variant::Experiment(id) => Some(id.as_str()),
        _ => None,
    };
    let counted_total = store.run_total_statement(None, experiment_id, &query.conditions);
    let mut page = Sql::new("SELECT ");
    page.push(RUN_COLUMNS)
        .push(", ")
        .push(query.sort.column)
        .push(" AS kfpd_sort_value");
    page.append(&scope);
    page.push_page(&query);

    let pool = store.pool();
    let mut page_samples = Samples::default();
    let mut count_samples = Samples::default();
    let mut counted_samples = counted_total.as_ref().map(|_| Samples::default());
    let mut total = 0i64;
    for index in 0..samples + 3 {
        let (text, args) = page.build(dialect);
        let started = Instant::now();
        let rows = sqlx::query_with(&text, args).fetch_all(pool).await?;
        let took = started.elapsed();
        if rows.is_empty() && !matches!(variant, Variant::Experiment(_)) {
            bail!("page query returned nothing");
        }
        let (text, args) = count.build(dialect);
        let started = Instant::now();
        let row = sqlx::query_with(&text, args).fetch_one(pool).await?;
        let count_took = started.elapsed();
        total = sqlx::Row::try_get::<i64, _>(&row, 0)?;
        if index >= 3 {
            page_samples.push(took);
            count_samples.push(count_took);
        }
        if let (Some(statement), Some(samples)) = (&counted_total, counted_samples.as_mut()) {
            let (text, args) = statement.build(dialect);
            let started = Instant::now();
            let row = sqlx::query_with(&text, args).fetch_one(pool).await?;
            let counted_took = started.elapsed();
            let counted = sqlx::Row::try_get::<i64, _>(&row, 0)?;
            if counted != total {
                bail!(
                    "run counts say {counted}, COUNT(*) says {total} ({})",
                    variant.label()
                );
            }
            if index >= 3 {
                samples.push(counted_took);
            }
        }
    }
    let plans = (
        explain(store, &page, analyze).await?,
        explain(store, &count, analyze).await?,
    );
    Ok(Breakdown {
        variant: variant.label().to_string(),
        page: page_samples,
        counted: counted_samples,
        count: count_samples,
        total,
        plans,
    })
}

async fn explain(store: &SqlStore, sql: &Sql, analyze: bool) -> Result<String> {
    let dialect = store.dialect();
    let prefix = match (dialect, analyze) {
        (Dialect::Sqlite, _) => "EXPLAIN QUERY PLAN ",
        (Dialect::Postgres, true) => "EXPLAIN (ANALYZE, BUFFERS) ",
        (_, _) => "EXPLAIN ",
    };
    let mut statement = Sql::new(prefix);
    statement.append(sql);
    let (text, args) = statement.build(dialect);
    let rows = sqlx::query_with(&text, args)
        .fetch_all(store.pool())
        .await?;
    let mut lines = Vec::new();
    for row in &rows {
        let line: String = match dialect {
            Dialect::Sqlite => sqlx::Row::try_get(row, "detail")?,
            _ => sqlx::Row::try_get(row, 0)?,
        };
        lines.push(line);
    }
    Ok(lines.join("\n"))
}
