//! The scheduler on a real SQLite store with a fake clock: every pass is
//! `Scheduler::step(now)` at a time the test picks, so hours of schedule take
//! no time at all.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use kfpd_api::v2beta1 as api;
use kfpd_server::scheduler::{Options, Scheduler, Step, SystemClock};
use kfpd_server::service::{fired_run_id, Settings};
use kfpd_server::Api;
use kfpd_store::list::Resource;
use kfpd_store::sql::{Options as StoreOptions, SqlStore};
use kfpd_store::{
    ExperimentStore, ListQuery, NewPipeline, NewPipelineVersion, PipelineStore, RecurringRunStore,
    Run, RunState, RunStore, Scope,
};
use serde_json::{json, Value};

/// 2023-11-14T22:12:00Z, on a minute boundary.
const T0: i64 = 1_699_999_920;

struct Fixture {
    api: Api,
    store: Arc<SqlStore>,
    clock: Arc<AtomicI64>,
    scheduler: Scheduler,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("kfpd.db").display());
        let store = Arc::new(
            SqlStore::connect(&StoreOptions::new(url))
                .await
                .expect("store"),
        );
        let clock = Arc::new(AtomicI64::new(T0));
        let reading = Arc::clone(&clock);
        let settings = Settings {
            multi_user: false,
            pod_namespace: "kubeflow".into(),
            default_service_account: "pipeline-runner".into(),
        };
        let api = Api::new(
            store.clone(),
            settings,
            Arc::new(move || reading.load(Ordering::SeqCst)),
        );
        api.ensure_default_experiment()
            .await
            .expect("default experiment");
        let scheduler = Scheduler::new(api.clone(), Options::default(), Arc::new(SystemClock));
        Fixture {
            api,
            store,
            clock,
            scheduler,
            _dir: dir,
        }
    }

    fn set_now(&self, now: i64) {
        self.clock.store(now, Ordering::SeqCst);
    }

    /// One scheduler pass at `now`.
    async fn step(&self, now: i64) -> Step {
        self.set_now(now);
        self.scheduler.step(now).await.expect("scheduler step")
    }

    async fn create(&self, body: Value) -> api::RecurringRun {
        let recurring_run: api::RecurringRun = serde_json::from_value(body).expect("recurring run");
        self.api
            .create_recurring_run(api::CreateRecurringRunRequest {
                recurring_run: Some(recurring_run),
            })
            .await
            .expect("create recurring run")
    }

    async fn patch(&self, id: &str, body: Value) -> kfpd_server::error::Result<api::RecurringRun> {
        let fields: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        let given: api::RecurringRun = serde_json::from_value(body).expect("patch body");
        self.api.update_recurring_run(id, given, &fields).await
    }

    async fn set_enabled(&self, id: &str, enabled: bool) {
        let recurring_run_id = id.to_string();
        if enabled {
            self.api
                .enable_recurring_run(api::EnableRecurringRunRequest { recurring_run_id })
                .await
                .expect("enable");
        } else {
            self.api
                .disable_recurring_run(api::DisableRecurringRunRequest { recurring_run_id })
                .await
                .expect("disable");
        }
    }

    async fn all_runs(&self) -> Vec<Run> {
        let mut runs = Vec::new();
        let mut token = String::new();
        loop {
            let query = ListQuery::new(Resource::Run, 200, &token, "", None).unwrap();
            let page = self
                .store
                .list_runs(&Scope::default(), &query)
                .await
                .unwrap();
            runs.extend(page.items);
            if page.next_page_token.is_empty() {
                return runs;
            }
            token = page.next_page_token;
        }
    }

    /// The runs a recurring run fired, oldest tick first.
    async fn runs_of(&self, recurring_run_id: &str) -> Vec<Run> {
        let mut runs: Vec<Run> = self
            .all_runs()
            .await
            .into_iter()
            .filter(|run| run.recurring_run_id == recurring_run_id)
            .collect();
        runs.sort_by_key(|run| run.scheduled_at);
        runs
    }

    async fn ticks_of(&self, recurring_run_id: &str) -> Vec<i64> {
        let runs = self.runs_of(recurring_run_id).await;
        runs.iter().map(|run| run.scheduled_at - T0).collect()
    }

    /// Ends every unfinished run, freeing the concurrency limit.
    async fn finish_all(&self) {
        let runs = self.all_runs().await;
        for run in runs.iter().filter(|run| run.state == RunState::Pending) {
            self.store
                .transition_run(&run.id, &[RunState::Pending], RunState::Succeeded, None, 0)
                .await
                .unwrap();
        }
    }
}

/// A committed pipeline (`tests/pipelines/`) as an API `pipeline_spec`.
fn spec_json(relative: &str) -> Value {
    let bytes = std::fs::read(kfpd_testdata::pipeline(relative)).expect("pipeline file");
    kfpd_ir::read_package(relative, &bytes)
        .expect("package")
        .api_pipeline_spec()
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An enabled recurring run of `add_numbers` with this trigger.
fn adder(name: &str, trigger: Value) -> Value {
    json!({
        "display_name": name,
        "pipeline_spec": spec_json("add.yaml"),
        "runtime_config": {"parameters": {"a": 1, "b": 2}},
        "max_concurrency": 10,
        "mode": "ENABLE",
        "trigger": trigger,
    })
}

fn every(seconds: i64, start: Option<i64>, end: Option<i64>) -> Value {
    let mut periodic = json!({"interval_second": seconds});
    if let Some(start) = start {
        periodic["start_time"] = json!(rfc3339(start));
    }
    if let Some(end) = end {
        periodic["end_time"] = json!(rfc3339(end));
    }
    json!({"periodic_schedule": periodic})
}

fn cron(expression: &str, start: Option<i64>, end: Option<i64>) -> Value {
    let mut schedule = json!({"cron": expression});
    if let Some(start) = start {
        schedule["start_time"] = json!(rfc3339(start));
    }
    if let Some(end) = end {
        schedule["end_time"] = json!(rfc3339(end));
    }
    json!({"cron_schedule": schedule})
}

#[tokio::test]
async fn catch_up_fires_every_missed_tick_in_order() {
    let f = Fixture::new().await;
    f.set_now(T0 + 10);
    let rr = f
        .create(adder("Nightly Sums", every(60, Some(T0), None)))
        .await;
    let id = rr.recurring_run_id.clone();
    assert_eq!(f.step(T0 + 59).await.fired, 0);
    let step = f.step(T0 + 300).await;
    assert_eq!((step.due, step.fired), (1, 5));
    assert_eq!(f.ticks_of(&id).await, [60, 120, 180, 240, 300]);

    let runs = f.runs_of(&id).await;
    let default_experiment = f.store.default_experiment(0).await.unwrap();
    for (index, run) in runs.iter().enumerate() {
        assert_eq!(run.id, fired_run_id(&id, run.scheduled_at));
        assert_eq!(run.recurring_run_id, id);
        assert_eq!(run.experiment_id, default_experiment.id);
        assert_eq!(run.created_at, T0 + 300);
        assert_eq!(run.state, RunState::Pending);
        assert_eq!(run.service_account, "pipeline-runner");
        assert_eq!(run.runtime_config, r#"{"parameters":{"a":1,"b":2}}"#);
        // <schedule>-<index>-<fnv32a>, the schedule named after the display name.
        let prefix = format!("nightlysums{}-{}-", &id[..5], index + 1);
        assert!(
            run.display_name.starts_with(&prefix),
            "{}",
            run.display_name
        );
        let full = f.store.get_run(&run.id).await.unwrap();
        assert!(full.pipeline_spec.is_some(), "inline spec kept on the run");
    }
    let row = f.store.get_recurring_run(&id).await.unwrap();
    assert_eq!(row.last_fired_at, Some(T0 + 300));
    assert_eq!(row.next_fire_at, Some(T0 + 360));
    assert_eq!(row.fired_count, 5);

    // Nothing more until the next tick; then exactly that one.
    assert_eq!(f.step(T0 + 359).await.due, 0);
    assert_eq!(f.step(T0 + 360).await.fired, 1);
    assert_eq!(f.ticks_of(&id).await.len(), 6);
}

#[tokio::test]
async fn without_catch_up_only_the_latest_tick_fires() {
    let f = Fixture::new().await;
    let mut periodic = adder("periodic", every(60, Some(T0), None));
    periodic["no_catchup"] = json!(true);
    let periodic = f.create(periodic).await.recurring_run_id;
    let mut minutely = adder("cron", cron("0 * * * * *", None, None));
    minutely["no_catchup"] = json!(true);
    let minutely = f.create(minutely).await.recurring_run_id;

    assert_eq!(f.step(T0 + 330).await.fired, 2);
    // Periodic: far behind, the tick is now; cron keeps its calendar.
    assert_eq!(f.ticks_of(&periodic).await, [330]);
    assert_eq!(f.ticks_of(&minutely).await, [300]);
    f.step(T0 + 390).await;
    assert_eq!(f.ticks_of(&periodic).await, [330, 390]);
    assert_eq!(f.ticks_of(&minutely).await, [300, 360]);
    // A long outage: one run each, not one per missed tick.
    f.step(T0 + 7_200 + 5).await;
    assert_eq!(f.ticks_of(&periodic).await, [330, 390, 7_205]);
    assert_eq!(f.ticks_of(&minutely).await, [300, 360, 7_200]);
}

#[tokio::test]
async fn start_and_end_times_bound_the_ticks() {
    let f = Fixture::new().await;
    let periodic = f
        .create(adder("windowed", every(60, Some(T0 + 120), Some(T0 + 300))))
        .await
        .recurring_run_id;
    let calendar = f
        .create(adder(
            "cron-window",
            cron("0 * * * * *", Some(T0 + 120), Some(T0 + 240)),
        ))
        .await
        .recurring_run_id;
    let later = f
        .create(adder("future", cron("@hourly", Some(T0 + 86_400), None)))
        .await
        .recurring_run_id;
    f.step(T0 + 10_000).await;
    // The first periodic tick is start + interval, as upstream; the end is inclusive.
    assert_eq!(f.ticks_of(&periodic).await, [180, 240, 300]);
    assert_eq!(f.ticks_of(&calendar).await, [180, 240]);
    assert!(f.ticks_of(&later).await.is_empty());
    for finished in [&periodic, &calendar] {
        let row = f.store.get_recurring_run(finished).await.unwrap();
        assert_eq!(
            row.next_fire_at, None,
            "a finished trigger is never due again"
        );
    }
    // @hourly is on the calendar: the first full hour after the start (23:00).
    let first_hour = (T0 + 86_400) / 3_600 * 3_600 + 3_600;
    let row = f.store.get_recurring_run(&later).await.unwrap();
    assert_eq!(row.next_fire_at, Some(first_hour));
    assert_eq!(
        f.store.next_recurring_run_due().await.unwrap(),
        Some(first_hour)
    );
}

#[tokio::test]
async fn max_concurrency_counts_active_runs_and_keeps_the_ticks() {
    let f = Fixture::new().await;
    let mut body = adder("limited", every(60, Some(T0), None));
    body["max_concurrency"] = json!(2);
    let id = f.create(body).await.recurring_run_id;
    let step = f.step(T0 + 300).await;
    assert_eq!(step.fired, 2);
    assert_eq!(f.ticks_of(&id).await, [60, 120]);
    let row = f.store.get_recurring_run(&id).await.unwrap();
    assert_eq!(row.next_fire_at, Some(T0 + 302), "looked at again shortly");
    assert_eq!(f.step(T0 + 301).await.due, 0);

    // One run ends: the next missed tick (not the latest) fires.
    let first = &f.runs_of(&id).await[0];
    f.store
        .transition_run(&first.id, &[RunState::Pending], RunState::Running, None, 0)
        .await
        .unwrap();
    assert_eq!(f.step(T0 + 302).await.fired, 0, "running still counts");
    f.store
        .transition_run(&first.id, &[RunState::Running], RunState::Failed, None, 0)
        .await
        .unwrap();
    assert_eq!(f.step(T0 + 304).await.fired, 1);
    assert_eq!(f.ticks_of(&id).await, [60, 120, 180]);
    f.finish_all().await;
    f.step(T0 + 310).await;
    assert_eq!(f.ticks_of(&id).await, [60, 120, 180, 240, 300]);
}

#[tokio::test]
async fn enabling_again_does_not_backfill() {
    let f = Fixture::new().await;
    let id = f
        .create(adder("toggled", every(60, Some(T0), None)))
        .await
        .recurring_run_id;
    f.step(T0 + 60).await;
    f.set_now(T0 + 70);
    f.set_enabled(&id, false).await;
    assert_eq!(f.step(T0 + 600).await.due, 0, "disabled rows are not due");
    f.set_now(T0 + 630);
    f.set_enabled(&id, true).await;
    // 120 … 600 were missed while disabled and are skipped; the phase is kept.
    assert_eq!(f.step(T0 + 630).await.fired, 0);
    assert_eq!(
        f.store.get_recurring_run(&id).await.unwrap().next_fire_at,
        Some(T0 + 660)
    );
    assert_eq!(f.step(T0 + 660).await.fired, 1);
    assert_eq!(f.ticks_of(&id).await, [60, 660]);
    // Enabling an enabled recurring run changes nothing.
    f.set_now(T0 + 700);
    f.set_enabled(&id, true).await;
    assert_eq!(
        f.store.get_recurring_run(&id).await.unwrap().next_fire_at,
        Some(T0 + 720)
    );

    // A one-off recurring run created disabled still fires once when enabled.
    let mut once = adder("once", json!({}));
    once["mode"] = json!("DISABLE");
    let once = f.create(once).await.recurring_run_id;
    f.set_now(T0 + 900);
    f.set_enabled(&once, true).await;
    f.step(T0 + 900).await;
    f.step(T0 + 5_000).await;
    assert_eq!(f.ticks_of(&once).await, [700]);
}

#[tokio::test]
async fn fired_runs_resolve_their_pipeline_and_macros_at_fire_time() {
    let f = Fixture::new().await;
    let (pipeline, first) = f
        .store
        .create_pipeline(
            NewPipeline {
                name: "adder".into(),
                display_name: "adder".into(),
                description: String::new(),
                namespace: String::new(),
                created_at: T0,
                tags: Default::default(),
            },
            Some(version("", "v1", T0)),
        )
        .await
        .unwrap();
    let first = first.unwrap();
    let mut latest = adder("latest", every(60, Some(T0), None));
    latest.as_object_mut().unwrap().remove("pipeline_spec");
    latest["pipeline_version_reference"] = json!({"pipeline_id": pipeline.id});
    let latest = f.create(latest).await.recurring_run_id;
    let mut pinned = adder("pinned", every(60, Some(T0), None));
    pinned.as_object_mut().unwrap().remove("pipeline_spec");
    pinned["pipeline_version_reference"] =
        json!({"pipeline_id": pipeline.id, "pipeline_version_id": first.id});
    let pinned = f.create(pinned).await.recurring_run_id;

    f.step(T0 + 60).await;
    let second = f
        .store
        .create_pipeline_version(version(&pipeline.id, "v2", T0 + 61))
        .await
        .unwrap();
    f.step(T0 + 120).await;
    let versions = |runs: Vec<Run>| -> Vec<String> {
        runs.into_iter()
            .map(|run| run.pipeline_version_id)
            .collect()
    };
    assert_eq!(
        versions(f.runs_of(&latest).await),
        [first.id.clone(), second.id.clone()]
    );
    assert_eq!(
        versions(f.runs_of(&pinned).await),
        [first.id.clone(), first.id.clone()]
    );
    assert!(f
        .runs_of(&latest)
        .await
        .iter()
        .all(|run| run.pipeline_id == pipeline.id));

    // Run macros in parameters, as upstream's controller substitutes them.
    let identity = f
        .create(json!({
            "display_name": "macros",
            "pipeline_spec": spec_json("identity.yaml"),
            "runtime_config": {"parameters": {
                "value": "[[ScheduledTime.2006-01-02 15:04]] #[[Index]] [[RunUUID]] [[CurrentTime]]"
            }},
            "service_account": "robot",
            "max_concurrency": 1,
            "mode": "ENABLE",
            "trigger": every(3_600, Some(T0), None),
        }))
        .await
        .recurring_run_id;
    f.step(T0 + 3_600 + 7).await;
    let run = &f.runs_of(&identity).await[0];
    let config: Value = serde_json::from_str(&run.runtime_config).unwrap();
    assert_eq!(
        config["parameters"]["value"],
        json!(format!("2023-11-14 23:12 #1 {} 20231114231207", run.id))
    );
    assert_eq!(run.service_account, "robot");
}

fn version(pipeline_id: &str, name: &str, at: i64) -> NewPipelineVersion {
    NewPipelineVersion {
        pipeline_id: pipeline_id.into(),
        name: name.into(),
        display_name: name.into(),
        description: String::new(),
        created_at: at,
        code_source_url: String::new(),
        package_url: String::new(),
        pipeline_spec: spec_json("add.yaml").to_string(),
        tags: Default::default(),
    }
}

#[tokio::test]
async fn runs_that_cannot_be_made_are_retried_later() {
    let f = Fixture::new().await;
    let (pipeline, _) = f
        .store
        .create_pipeline(
            NewPipeline {
                name: "gone".into(),
                display_name: "gone".into(),
                description: String::new(),
                namespace: String::new(),
                created_at: T0,
                tags: Default::default(),
            },
            Some(version("", "v1", T0)),
        )
        .await
        .unwrap();
    let mut body = adder("orphan", every(60, Some(T0), None));
    body.as_object_mut().unwrap().remove("pipeline_spec");
    body["pipeline_version_reference"] = json!({"pipeline_id": pipeline.id});
    let id = f.create(body).await.recurring_run_id;
    f.store.delete_pipeline(&pipeline.id, true).await.unwrap();
    assert_eq!(f.step(T0 + 60).await.fired, 0);
    let row = f.store.get_recurring_run(&id).await.unwrap();
    assert_eq!(row.last_fired_at, None, "the tick is kept");
    assert_eq!(row.next_fire_at, Some(T0 + 90));
    assert_eq!(f.step(T0 + 89).await.due, 0);

    // Pointing it at a pipeline that exists makes the kept tick due at once.
    f.set_now(T0 + 70);
    f.patch(&id, json!({"pipeline_spec": spec_json("add.yaml")}))
        .await
        .unwrap();
    assert_eq!(f.step(T0 + 70).await.fired, 1);
    assert_eq!(f.ticks_of(&id).await, [60]);
}

#[tokio::test]
async fn edits_take_effect_from_now() {
    let f = Fixture::new().await;
    let id = f
        .create(adder("hourly", every(3_600, Some(T0), None)))
        .await
        .recurring_run_id;
    f.step(T0 + 3_600).await;
    f.set_now(T0 + 3_600 + 1_000);
    // Every minute from the same start: no backfill of the minutes since then.
    let updated = f
        .patch(
            &id,
            json!({"trigger": every(60, Some(T0), None), "max_concurrency": 3, "description": "faster"}),
        )
        .await
        .unwrap();
    assert_eq!(updated.max_concurrency, 3);
    assert_eq!(updated.description, "faster");
    assert_eq!(updated.display_name, "hourly", "fields not named stay");
    let row = f.store.get_recurring_run(&id).await.unwrap();
    assert_eq!(row.last_fired_at, Some(T0 + 4_560));
    assert_eq!(row.next_fire_at, Some(T0 + 4_620));
    f.step(T0 + 4_650).await;
    assert_eq!(f.ticks_of(&id).await, [3_600, 4_620]);
    f.finish_all().await;

    // New parameters and a new spec are checked like at creation.
    let error = f
        .patch(
            &id,
            json!({"runtime_config": {"parameters": {"a": "one", "b": 2}}}),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("a"), "{error}");
    let error = f
        .patch(&id, json!({"pipeline_spec": spec_json("identity.yaml")}))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("value"), "{error}");
    f.patch(
        &id,
        json!({
            "pipeline_spec": spec_json("identity.yaml"),
            "runtime_config": {"parameters": {"value": "x"}},
        }),
    )
    .await
    .unwrap();
    f.step(T0 + 4_740).await;
    f.finish_all().await;
    let runs = f.runs_of(&id).await;
    assert_eq!(
        runs.last().unwrap().runtime_config,
        r#"{"parameters":{"value":"x"}}"#
    );

    // Five cron fields are refused with the six-field form.
    let error = f
        .patch(&id, json!({"trigger": cron("*/5 * * * *", None, None)}))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("0 */5 * * * *"), "{error}");
    // Unknown or fixed fields.
    assert!(f.patch(&id, json!({})).await.is_err());
    let error = f
        .patch(&id, json!({"experiment_id": "elsewhere"}))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("experiment_id cannot be changed"),
        "{error}"
    );
    assert!(f.patch(&id, json!({"max_concurrency": 11})).await.is_err());
    // Disabling through mode, enabling again: no backfill either.
    f.set_now(T0 + 4_750);
    f.patch(&id, json!({"mode": "DISABLE"})).await.unwrap();
    f.set_now(T0 + 9_000);
    f.patch(&id, json!({"mode": "ENABLE"})).await.unwrap();
    f.step(T0 + 9_000).await;
    assert_eq!(f.ticks_of(&id).await, [3_600, 4_620, 4_680, 4_740]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_fire_each_tick_once() {
    let f = Fixture::new().await;
    let other = Scheduler::new(f.api.clone(), Options::default(), Arc::new(SystemClock));
    let mut ids = Vec::new();
    for index in 0..5 {
        let body = adder(&format!("raced-{index}"), every(1, Some(T0), None));
        ids.push(f.create(body).await.recurring_run_id);
    }
    const TICKS: i64 = 100;
    let mut fired = 0;
    for second in 1..=TICKS {
        f.set_now(T0 + second);
        let (a, b) = tokio::join!(f.scheduler.step(T0 + second), other.step(T0 + second));
        fired += a.unwrap().fired + b.unwrap().fired;
        f.finish_all().await;
    }
    assert_eq!(fired as i64, 5 * TICKS);
    for id in &ids {
        assert_eq!(f.ticks_of(id).await, (1..=TICKS).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn stored_rows_without_a_due_time_are_looked_at_once() {
    // Rows migrated from before kfpd fired recurring runs have next_fire_at 0.
    let f = Fixture::new().await;
    let id = f
        .create(adder("migrated", every(3_600, Some(T0), None)))
        .await
        .recurring_run_id;
    let row = f.store.get_recurring_run(&id).await.unwrap();
    f.store
        .reschedule_recurring_run(&id, row.guard(), Some(0))
        .await
        .unwrap();
    let step = f.step(T0 + 10).await;
    assert_eq!((step.due, step.fired), (1, 0));
    let row = f.store.get_recurring_run(&id).await.unwrap();
    assert_eq!(row.next_fire_at, Some(T0 + 3_600));
    assert_eq!(f.step(T0 + 11).await.due, 0);
}
