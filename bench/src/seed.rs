//! Seeding: experiments through the store API, then runs and their specs with
//! multi-row INSERT statements in large transactions, written with exactly the
//! columns and value formats `kfpd_store`'s `create_run` and `transition_run` use.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kfpd_store::sql::{Dialect, SqlStore};
use kfpd_store::{ExperimentStore, NewExperiment, RunState, StateChange};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Rows per INSERT statement.
const ROWS_PER_STATEMENT: usize = 500;
/// Runs per transaction.
const RUNS_PER_TRANSACTION: usize = 50_000;
/// How many run ids to keep for GetRun.
const SAMPLE_IDS: usize = 20_000;

pub struct Plan {
    pub runs: usize,
    pub experiments: usize,
    /// Runs are spread over this many days, ending about now.
    pub span_days: u64,
    /// The inline pipeline spec every run carries (compact JSON).
    pub spec_json: String,
    pub seed: u64,
}

pub struct Seeded {
    /// Experiment ids with how many runs each got, largest first.
    pub experiments: Vec<(String, usize)>,
    /// A random sample of run ids.
    pub sample_run_ids: Vec<String>,
    pub state_counts: BTreeMap<&'static str, usize>,
    pub first_created: i64,
    pub last_created: i64,
    /// Distinct `created_at` values, to show how many runs share a second.
    pub distinct_times: usize,
    pub time_experiments: Duration,
    pub time_inserts: Duration,
    pub time_finish: Duration,
    pub time_total: Duration,
}

/// One run as the store would have written it after its transitions.
struct RunRow {
    id: String,
    experiment: usize,
    created_at: i64,
    state: RunState,
    finished_at: i64,
    archived_at: i64,
    error: Option<String>,
    history: String,
    number: usize,
}

/// Failure messages as executors report them.
const ERRORS: [&str; 3] = [
    "task echo failed: container exited with code 1",
    "pod was evicted: the node was low on resource: memory",
    "task echo failed: image pull back-off",
];

pub async fn seed(store: &SqlStore, plan: &Plan) -> Result<Seeded> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let now = unix_now();
    let span = (plan.span_days * 86_400) as i64;
    // Runs start `span` before now; experiments were made in the week before that.
    let start = now - span - 3_600;

    let mut experiment_ids = Vec::with_capacity(plan.experiments);
    for index in 0..plan.experiments {
        let created_at = start - 7 * 86_400 + (index as i64) * 600;
        let experiment = store
            .create_experiment(NewExperiment {
                name: format!("bench-experiment-{index:03}"),
                description: format!("kfpd-bench experiment {index}"),
                namespace: String::new(),
                created_at,
            })
            .await
            .context("creating an experiment through the store")?;
        experiment_ids.push(experiment.id);
    }
    let time_experiments = started.elapsed();

    // Some experiments are much busier than others.
    let weights: Vec<f64> = (0..plan.experiments)
        .map(|index| 1.0 / ((index + 1) as f64).powf(0.8))
        .collect();
    let pick_experiment = WeightedIndex::new(&weights)?;
    // Runs arrive in bursts (sweeps, recurring runs) that share their creation second.
    let mean_burst = 0.60 * 1.0 + 0.25 * 3.0 + 0.15 * 12.5;
    let bursts = (plan.runs as f64 / mean_burst).max(1.0);
    let mean_gap = span as f64 / bursts;

    let inserts_started = Instant::now();
    let mut pool_conn = store.pool().acquire().await?;
    let conn = &mut *pool_conn;
    if store.dialect() == Dialect::Sqlite {
        // Only this seeding connection: durability is not needed while loading.
        sqlx::raw_sql("PRAGMA synchronous = OFF; PRAGMA cache_size = -1048576")
            .execute(&mut *conn)
            .await?;
    }

    let mut experiment_runs = vec![0usize; plan.experiments];
    let mut last_run_created = vec![0i64; plan.experiments];
    let mut state_counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut sample_run_ids = Vec::with_capacity(SAMPLE_IDS);
    let keep_probability = (SAMPLE_IDS as f64 / plan.runs.max(1) as f64).min(1.0);
    let mut distinct_times = 0usize;
    let mut time = start as f64;
    let mut last_time = i64::MIN;
    let mut batch: Vec<RunRow> = Vec::with_capacity(ROWS_PER_STATEMENT);
    let mut in_transaction = 0usize;
    let mut generated = 0usize;
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    while generated < plan.runs {
        let burst = match rng.gen::<f64>() {
            r if r < 0.60 => 1,
            r if r < 0.85 => rng.gen_range(2..=4),
            _ => rng.gen_range(5..=20),
        };
        let gap = -rng.gen::<f64>().max(1e-12).ln() * mean_gap;
        time += gap;
        let created_at = time as i64;
        let experiment = pick_experiment.sample(&mut rng);
        for _ in 0..burst {
            if generated >= plan.runs {
                break;
            }
            let row = run_row(&mut rng, generated, experiment, created_at);
            if created_at != last_time {
                distinct_times += 1;
                last_time = created_at;
            }
            experiment_runs[experiment] += 1;
            last_run_created[experiment] = last_run_created[experiment].max(created_at);
            *state_counts.entry(row.state.as_str()).or_default() += 1;
            if rng.gen::<f64>() < keep_probability && sample_run_ids.len() < SAMPLE_IDS {
                sample_run_ids.push(row.id.clone());
            }
            batch.push(row);
            generated += 1;
            in_transaction += 1;
            if batch.len() == ROWS_PER_STATEMENT {
                insert_batch(conn, &batch, &experiment_ids, &plan.spec_json).await?;
                batch.clear();
            }
            if in_transaction >= RUNS_PER_TRANSACTION {
                if !batch.is_empty() {
                    insert_batch(conn, &batch, &experiment_ids, &plan.spec_json).await?;
                    batch.clear();
                }
                sqlx::raw_sql("COMMIT; BEGIN").execute(&mut *conn).await?;
                in_transaction = 0;
                eprintln!(
                    "  seeded {generated} runs ({:.0} runs/s)",
                    generated as f64 / inserts_started.elapsed().as_secs_f64()
                );
            }
        }
    }
    if !batch.is_empty() {
        insert_batch(conn, &batch, &experiment_ids, &plan.spec_json).await?;
    }
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
    let time_inserts = inserts_started.elapsed();

    // What create_run keeps up to date on every insert.
    let finish_started = Instant::now();
    let mut updates = String::from("BEGIN;");
    for (index, id) in experiment_ids.iter().enumerate() {
        updates.push_str(&format!(
            "UPDATE experiments SET last_run_created_at = {} WHERE uuid = {};",
            last_run_created[index],
            quote(id)
        ));
    }
    updates.push_str("COMMIT;");
    sqlx::raw_sql(&updates).execute(&mut *conn).await?;
    match store.dialect() {
        // What autovacuum would reach soon after such a load; done now so that it
        // does not run in the middle of the measurements.
        Dialect::Postgres => {
            sqlx::raw_sql("VACUUM (ANALYZE) runs, run_specs, experiments")
                .execute(&mut *conn)
                .await?;
        }
        // kfpd never runs ANALYZE on SQLite, so neither do we: the planner sees
        // what a grown database would show it.
        Dialect::Sqlite => {
            sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await?;
        }
        Dialect::Mysql => {}
    }
    drop(pool_conn);
    // The run counts that list totals come from, as the store would have kept them.
    store.rebuild_run_counts().await?;
    let time_finish = finish_started.elapsed();

    let mut experiments: Vec<(String, usize)> =
        experiment_ids.into_iter().zip(experiment_runs).collect();
    experiments.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    Ok(Seeded {
        experiments,
        sample_run_ids,
        state_counts,
        first_created: start,
        last_created: last_time,
        distinct_times,
        time_experiments,
        time_inserts,
        time_finish,
        time_total: started.elapsed(),
    })
}

fn run_row(rng: &mut StdRng, number: usize, experiment: usize, created_at: i64) -> RunRow {
    let state = match rng.gen::<f64>() {
        r if r < 0.70 => RunState::Succeeded,
        r if r < 0.85 => RunState::Failed,
        r if r < 0.95 => RunState::Running,
        _ => RunState::Pending,
    };
    let started_at = created_at + rng.gen_range(1..=30);
    // 30 s to 2 h, most runs short.
    let duration = (30.0 * 240f64.powf(rng.gen::<f64>())) as i64;
    let ended_at = started_at + duration;
    let change = |time: i64, state: RunState, error: Option<&str>| StateChange {
        time,
        state,
        error: error.map(str::to_string),
    };
    let mut history = vec![change(created_at, RunState::Pending, None)];
    let mut error = None;
    let mut finished_at = 0;
    match state {
        RunState::Pending => {}
        RunState::Running => history.push(change(started_at, RunState::Running, None)),
        _ => {
            let message =
                (state == RunState::Failed).then(|| ERRORS[rng.gen_range(0..ERRORS.len())]);
            history.push(change(started_at, RunState::Running, None));
            history.push(change(ended_at, state, message));
            error = message.map(str::to_string);
            finished_at = ended_at;
        }
    }
    // Exactly what the store writes (serde of its StateChange).
    let history = serde_json::to_string(&history).unwrap_or_else(|_| "[]".into());
    // A few finished runs were archived a couple of days later.
    let archived_at = if finished_at > 0 && rng.gen::<f64>() < 0.02 {
        finished_at + rng.gen_range(86_400..=5 * 86_400)
    } else {
        0
    };
    RunRow {
        id: uuid::Builder::from_random_bytes(rng.gen())
            .into_uuid()
            .to_string(),
        experiment,
        created_at,
        state,
        finished_at,
        archived_at,
        error,
        history,
        number,
    }
}

async fn insert_batch(
    conn: &mut sqlx::AnyConnection,
    rows: &[RunRow],
    experiment_ids: &[String],
    spec_json: &str,
) -> Result<()> {
    let mut runs = String::with_capacity(rows.len() * 600);
    runs.push_str(
        "INSERT INTO runs (uuid, experiment_uuid, namespace, display_name, description, \
         storage_state, service_account, created_at, scheduled_at, finished_at, archived_at, \
         state, conditions, error, pipeline_uuid, pipeline_version_uuid, recurring_run_uuid, \
         runtime_config, state_history, runtime_details, inline_spec) VALUES ",
    );
    let spec = quote(spec_json);
    let mut specs = String::with_capacity(rows.len() * (spec.len() + 48));
    specs.push_str("INSERT INTO run_specs (run_uuid, pipeline_spec) VALUES ");
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            runs.push(',');
            specs.push(',');
        }
        let storage_state = if row.archived_at > 0 {
            "ARCHIVED"
        } else {
            "AVAILABLE"
        };
        let error = row.error.as_deref().map_or("NULL".to_string(), quote);
        runs.push_str(&format!(
            "({id}, {experiment}, '', {name}, '', '{storage_state}', 'pipeline-runner', \
             {created}, {created}, {finished}, {archived}, '{state}', '{condition}', {error}, \
             '', '', '', '', {history}, '', 1)",
            id = quote(&row.id),
            experiment = quote(&experiment_ids[row.experiment]),
            name = quote(&format!("echo-run-{}", row.number)),
            created = row.created_at,
            finished = row.finished_at,
            archived = row.archived_at,
            state = row.state.as_str(),
            condition = row.state.condition(),
            history = quote(&row.history),
        ));
        specs.push_str(&format!("({}, {spec})", quote(&row.id)));
    }
    sqlx::raw_sql(&runs)
        .execute(&mut *conn)
        .await
        .context("inserting runs")?;
    sqlx::raw_sql(&specs)
        .execute(&mut *conn)
        .await
        .context("inserting run specs")?;
    Ok(())
}

/// A SQL string literal. Every value here is generated by this program; standard
/// conforming strings (the default on every backend we seed) only need `'` doubled.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_the_store_formats() {
        let mut rng = StdRng::seed_from_u64(1);
        for number in 0..200 {
            let row = run_row(&mut rng, number, 0, 1_700_000_000);
            let history: Vec<kfpd_store::StateChange> = serde_json::from_str(&row.history).unwrap();
            assert_eq!(history[0].state, RunState::Pending);
            assert_eq!(history.last().unwrap().state, row.state);
            assert_eq!(row.state.is_terminal(), row.finished_at > 0);
            assert_eq!(row.state == RunState::Failed, row.error.is_some());
        }
        assert_eq!(quote("it's"), "'it''s'");
    }
}
