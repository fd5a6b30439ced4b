//! One behaviour, every backend: each case below runs unchanged against SQLite,
//! PostgreSQL and MySQL (MariaDB).
//!
//! PostgreSQL and MySQL come from `KFPD_TEST_POSTGRES_URL` / `KFPD_TEST_MYSQL_URL`
//! (server URLs without a database; defaults `postgres://postgres@127.0.0.1:5432` and
//! `mysql://root@127.0.0.1:3306`). Each test makes and drops its own database. When a
//! server is not reachable the test is skipped with a message, except under `CI=true`,
//! where it fails.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use kfpd_store::list::{Op, Predicate, Resource, Value};
use kfpd_store::sql::{drop_database, Options, SqlStore};
use kfpd_store::*;

struct Backend {
    store: SqlStore,
    drop_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn server_url(kind: &str) -> String {
    let (variable, default) = match kind {
        "postgres" => (
            "KFPD_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432",
        ),
        _ => ("KFPD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
    };
    std::env::var(variable).unwrap_or_else(|_| default.to_string())
}

async fn backend(kind: &str) -> Option<Backend> {
    if kind == "sqlite" {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("kfpd.db").display());
        let store = SqlStore::connect(&Options::new(url))
            .await
            .expect("sqlite store");
        return Some(Backend {
            store,
            drop_url: None,
            _dir: Some(dir),
        });
    }
    let database = format!("kfpd_test_{}", uuid_suffix());
    let url = format!("{}/{database}", server_url(kind));
    match SqlStore::connect(&Options::new(url.clone())).await {
        Ok(store) => Some(Backend {
            store,
            drop_url: Some(url),
            _dir: None,
        }),
        Err(error) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{kind} is required under CI=true but not usable: {error}");
            }
            eprintln!(
                "skipping {kind} conformance test: {error}. Start {kind} locally or set KFPD_TEST_{}_URL to run it.",
                kind.to_uppercase()
            );
            None
        }
    }
}

fn uuid_suffix() -> String {
    new_id().replace('-', "")[..16].to_string()
}

async fn with_backend<F, Fut>(kind: &str, case: F)
where
    F: FnOnce(Arc<SqlStore>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend(kind).await else {
        return;
    };
    let store = Arc::new(backend.store.clone());
    case(store).await;
    backend.store.pool().close().await;
    if let Some(url) = backend.drop_url {
        drop_database(&url).await.expect("drop test database");
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::with_backend("sqlite", super::$case).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::with_backend("postgres", super::$case).await; })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::with_backend("mysql", super::$case).await; })*
        }
    };
}

conformance!(
    experiments_crud,
    default_experiment_is_stable,
    archive_cascades,
    pipelines_and_versions,
    pipeline_tags_and_updates,
    runs_lifecycle,
    pagination_is_complete_and_stable,
    filters,
    recurring_runs,
    recurring_run_schedules,
    recurring_run_updates,
    concurrent_claims_fire_each_tick_once,
    duplicate_names_race,
    names_are_case_sensitive,
    tasks_and_artifacts,
    task_batches_upsert_in_order,
    artifacts_found_by_uri,
    run_totals_follow_every_change,
    concurrent_creates_fail_alone,
    retention_spares_what_kept_runs_hold,
    retention_deletes_runs_by_age_and_count,
);

fn query(resource: Resource, size: i32, sort: &str, filter: Option<Vec<Predicate>>) -> ListQuery {
    ListQuery::new(resource, size, "", sort, filter).expect("valid query")
}

fn pred(key: &str, op: Op, value: Value) -> Predicate {
    Predicate {
        key: key.to_string(),
        op,
        value,
    }
}

fn new_experiment(name: &str, at: i64) -> NewExperiment {
    NewExperiment {
        name: name.to_string(),
        description: format!("about {name}"),
        namespace: String::new(),
        created_at: at,
    }
}

fn new_run(experiment_id: &str, name: &str, at: i64) -> NewRun {
    NewRun {
        experiment_id: experiment_id.to_string(),
        namespace: String::new(),
        display_name: name.to_string(),
        description: String::new(),
        service_account: "pipeline-runner".into(),
        created_at: at,
        scheduled_at: at,
        pipeline_id: String::new(),
        pipeline_version_id: String::new(),
        recurring_run_id: String::new(),
        runtime_config: r#"{"parameters":{"a":1}}"#.into(),
        pipeline_spec: r#"{"pipelineInfo":{"name":"p"}}"#.into(),
        inline_spec: true,
    }
}

fn new_pipeline(name: &str, at: i64, tags: &[(&str, &str)]) -> NewPipeline {
    NewPipeline {
        name: name.to_string(),
        display_name: name.to_string(),
        description: format!("pipeline {name}"),
        namespace: String::new(),
        created_at: at,
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn new_version(pipeline_id: &str, name: &str, at: i64) -> NewPipelineVersion {
    NewPipelineVersion {
        pipeline_id: pipeline_id.to_string(),
        name: name.to_string(),
        display_name: name.to_string(),
        description: String::new(),
        created_at: at,
        code_source_url: String::new(),
        package_url: String::new(),
        pipeline_spec: format!(r#"{{"pipelineInfo":{{"name":"{name}"}}}}"#),
        tags: BTreeMap::new(),
    }
}

async fn experiments_crud(store: Arc<SqlStore>) {
    let created = store
        .create_experiment(new_experiment("alpha", 100))
        .await
        .unwrap();
    assert_eq!(created.storage_state, StorageState::Available);
    let duplicate = store.create_experiment(new_experiment("alpha", 101)).await;
    assert!(
        matches!(&duplicate, Err(Error::AlreadyExists(m)) if m.contains("Please specify a new name")),
        "{duplicate:?}"
    );
    let fetched = store.get_experiment(&created.id).await.unwrap();
    assert_eq!(fetched, created);
    assert!(matches!(
        store.get_experiment("missing").await,
        Err(Error::NotFound(_))
    ));
    store
        .create_experiment(new_experiment("beta", 102))
        .await
        .unwrap();
    let page = store
        .list_experiments(
            Some(""),
            &query(Resource::Experiment, 10, "name desc", None),
        )
        .await
        .unwrap();
    let names: Vec<_> = page.items.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["beta", "alpha"]);
    assert_eq!(page.total_size, 2);
    assert!(page.next_page_token.is_empty());
    store.delete_experiment(&created.id).await.unwrap();
    assert!(matches!(
        store.delete_experiment(&created.id).await,
        Err(Error::NotFound(_))
    ));
}

async fn default_experiment_is_stable(store: Arc<SqlStore>) {
    let first = store.default_experiment(10).await.unwrap();
    assert_eq!(first.name, "Default");
    let again = store.default_experiment(20).await.unwrap();
    assert_eq!(first.id, again.id);
    assert!(matches!(
        store.delete_experiment(&first.id).await,
        Err(Error::Aborted(_))
    ));
    // Concurrent first use still yields one default experiment.
    let other = backend_clone(&store);
    let (a, b) = tokio::join!(other.default_experiment(30), store.default_experiment(30));
    assert_eq!(a.unwrap().id, b.unwrap().id);
}

fn backend_clone(store: &Arc<SqlStore>) -> Arc<SqlStore> {
    Arc::clone(store)
}

async fn archive_cascades(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("archive-me", 1))
        .await
        .unwrap();
    let run = store
        .create_run(new_run(&experiment.id, "r1", 5))
        .await
        .unwrap();
    let recurring = store
        .create_recurring_run(new_recurring(&experiment.id, "rr", 5))
        .await
        .unwrap();
    assert!(recurring.enabled);
    let bumped = store.get_experiment(&experiment.id).await.unwrap();
    assert_eq!(bumped.last_run_created_at, 5);

    store
        .set_experiment_storage_state(&experiment.id, StorageState::Archived, 50)
        .await
        .unwrap();
    let run_after = store.get_run(&run.id).await.unwrap();
    assert_eq!(run_after.storage_state, StorageState::Archived);
    let recurring_after = store.get_recurring_run(&recurring.id).await.unwrap();
    assert!(!recurring_after.enabled);
    assert_eq!(recurring_after.updated_at, 50);

    let refused = store
        .set_run_storage_state(&run.id, StorageState::Available, 60)
        .await;
    assert!(
        matches!(refused, Err(Error::FailedPrecondition(_))),
        "{refused:?}"
    );

    store
        .set_experiment_storage_state(&experiment.id, StorageState::Available, 70)
        .await
        .unwrap();
    let still = store.get_run(&run.id).await.unwrap();
    assert_eq!(still.storage_state, StorageState::Archived);
    store
        .set_run_storage_state(&run.id, StorageState::Available, 80)
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&run.id).await.unwrap().storage_state,
        StorageState::Available
    );
    assert!(matches!(
        store
            .set_experiment_storage_state("missing", StorageState::Archived, 1)
            .await,
        Err(Error::NotFound(_))
    ));
    // Deleting the experiment keeps its runs.
    store.delete_experiment(&experiment.id).await.unwrap();
    assert!(store.get_run(&run.id).await.is_ok());
}

async fn pipelines_and_versions(store: Arc<SqlStore>) {
    let (pipeline, first) = store
        .create_pipeline(
            new_pipeline("hello", 10, &[]),
            Some(new_version("", "hello", 10)),
        )
        .await
        .unwrap();
    let first = first.expect("first version");
    assert_eq!(first.pipeline_id, pipeline.id);
    let duplicate = store
        .create_pipeline(new_pipeline("hello", 11, &[]), None)
        .await;
    assert!(matches!(duplicate, Err(Error::AlreadyExists(_))));
    let by_name = store.get_pipeline_by_name("", "hello").await.unwrap();
    assert_eq!(by_name.id, pipeline.id);
    assert!(matches!(
        store.get_pipeline_by_name("", "nope").await,
        Err(Error::NotFound(_))
    ));

    let second = store
        .create_pipeline_version(new_version(&pipeline.id, "v2", 20))
        .await
        .unwrap();
    let same_name = store
        .create_pipeline_version(new_version(&pipeline.id, "v2", 21))
        .await;
    assert!(matches!(same_name, Err(Error::AlreadyExists(_))));
    let orphan = store
        .create_pipeline_version(new_version("missing", "v1", 21))
        .await;
    assert!(matches!(orphan, Err(Error::NotFound(_))));
    let latest = store.latest_pipeline_version(&pipeline.id).await.unwrap();
    assert_eq!(latest.id, second.id);
    let fetched = store.get_pipeline_version(&first.id).await.unwrap();
    assert_eq!(fetched.pipeline_spec, first.pipeline_spec);

    let versions = store
        .list_pipeline_versions(&pipeline.id, &query(Resource::PipelineVersion, 1, "", None))
        .await
        .unwrap();
    assert_eq!(versions.total_size, 2);
    assert_eq!(versions.items[0].id, first.id);
    assert!(!versions.next_page_token.is_empty());

    let refused = store.delete_pipeline(&pipeline.id, false).await;
    assert!(
        matches!(refused, Err(Error::FailedPrecondition(_))),
        "{refused:?}"
    );
    store.delete_pipeline_version(&first.id).await.unwrap();
    assert!(matches!(
        store.delete_pipeline_version(&first.id).await,
        Err(Error::NotFound(_))
    ));
    store.delete_pipeline(&pipeline.id, true).await.unwrap();
    assert!(matches!(
        store.get_pipeline_version(&second.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.get_pipeline(&pipeline.id).await,
        Err(Error::NotFound(_))
    ));
}

async fn pipeline_tags_and_updates(store: Arc<SqlStore>) {
    let (tagged, _) = store
        .create_pipeline(
            new_pipeline("tagged", 1, &[("team", "ml"), ("tier", "gold")]),
            None,
        )
        .await
        .unwrap();
    store
        .create_pipeline(new_pipeline("plain", 2, &[("team", "data")]), None)
        .await
        .unwrap();
    let by_tag = store
        .list_pipelines(
            Some(""),
            &query(
                Resource::Pipeline,
                10,
                "",
                Some(vec![pred("tags.team", Op::Eq, Value::Str("ml".into()))]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(by_tag.items.len(), 1);
    assert_eq!(by_tag.items[0].id, tagged.id);
    assert_eq!(
        by_tag.items[0].tags.get("tier").map(String::as_str),
        Some("gold")
    );

    let renamed = store
        .update_pipeline(
            &tagged.id,
            PipelineUpdate {
                display_name: Some("Tagged!".into()),
                tags: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.display_name, "Tagged!");
    assert_eq!(renamed.tags.len(), 2);
    let cleared = store
        .update_pipeline(
            &tagged.id,
            PipelineUpdate {
                display_name: None,
                tags: Some(BTreeMap::new()),
            },
        )
        .await
        .unwrap();
    assert!(cleared.tags.is_empty());
    assert_eq!(cleared.display_name, "Tagged!");
    assert!(matches!(
        store
            .update_pipeline("missing", PipelineUpdate::default())
            .await,
        Err(Error::NotFound(_))
    ));
}

async fn runs_lifecycle(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("runs", 1))
        .await
        .unwrap();
    let other = store
        .create_experiment(new_experiment("other", 1))
        .await
        .unwrap();
    let inline = store
        .create_run(new_run(&experiment.id, "inline", 10))
        .await
        .unwrap();
    assert_eq!(inline.state, RunState::Pending);
    let mut referenced = new_run(&other.id, "referenced", 11);
    referenced.inline_spec = false;
    referenced.pipeline_version_id = "v1".into();
    let referenced = store.create_run(referenced).await.unwrap();

    let fetched = store.get_run(&inline.id).await.unwrap();
    assert_eq!(
        fetched.pipeline_spec.as_deref(),
        Some(r#"{"pipelineInfo":{"name":"p"}}"#)
    );
    assert_eq!(fetched.state_history.len(), 1);
    assert_eq!(fetched.runtime_config, r#"{"parameters":{"a":1}}"#);
    assert_eq!(
        store.get_run(&referenced.id).await.unwrap().pipeline_spec,
        None
    );

    let scoped = store
        .list_runs(
            &Scope {
                namespace: None,
                experiment_id: Some(other.id.clone()),
            },
            &query(Resource::Run, 10, "", None),
        )
        .await
        .unwrap();
    assert_eq!(scoped.total_size, 1);
    assert_eq!(scoped.items[0].id, referenced.id);
    assert_eq!(scoped.items[0].pipeline_spec, None);

    let canceling = store
        .transition_run(
            &inline.id,
            &[RunState::Pending, RunState::Running],
            RunState::Canceling,
            None,
            20,
        )
        .await
        .unwrap();
    assert_eq!(canceling.state, RunState::Canceling);
    let refused = store
        .transition_run(
            &inline.id,
            &[RunState::Pending],
            RunState::Running,
            None,
            21,
        )
        .await;
    assert!(matches!(refused, Err(Error::FailedPrecondition(_))));
    store
        .transition_run(
            &inline.id,
            &[RunState::Canceling],
            RunState::Canceled,
            Some("terminated by user".into()),
            22,
        )
        .await
        .unwrap();
    let done = store.get_run(&inline.id).await.unwrap();
    assert_eq!(done.state, RunState::Canceled);
    assert_eq!(done.finished_at, 22);
    assert_eq!(done.error.as_deref(), Some("terminated by user"));
    let states: Vec<_> = done.state_history.iter().map(|c| c.state).collect();
    assert_eq!(
        states,
        [RunState::Pending, RunState::Canceling, RunState::Canceled]
    );

    let by_status = store
        .list_runs(
            &Scope::default(),
            &query(
                Resource::Run,
                10,
                "",
                Some(vec![pred("status", Op::Eq, Value::Str("Canceled".into()))]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(by_status.items.len(), 1);

    store
        .set_run_storage_state(&inline.id, StorageState::Archived, 30)
        .await
        .unwrap();
    assert_eq!(
        store.get_run(&inline.id).await.unwrap().storage_state,
        StorageState::Archived
    );
    store.delete_run(&inline.id).await.unwrap();
    assert!(matches!(
        store.get_run(&inline.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.delete_run(&inline.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store
            .transition_run("missing", &[RunState::Pending], RunState::Running, None, 1)
            .await,
        Err(Error::NotFound(_))
    ));
}

async fn pagination_is_complete_and_stable(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("paging", 1))
        .await
        .unwrap();
    // 25 runs, created in groups of three per second so sort values tie.
    let mut ids = Vec::new();
    for index in 0..25 {
        let run = store
            .create_run(new_run(
                &experiment.id,
                &format!("run-{:02}", 24 - index),
                100 + index / 3,
            ))
            .await
            .unwrap();
        ids.push((run.created_at, run.id));
    }
    for (sort, descending) in [("created_at desc", true), ("created_at", false)] {
        let mut expected = ids.clone();
        expected.sort();
        if descending {
            expected.reverse();
        }
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let list = ListQuery::new(
                Resource::Run,
                7,
                &token,
                if token.is_empty() { sort } else { "" },
                None,
            )
            .unwrap();
            let page = store.list_runs(&Scope::default(), &list).await.unwrap();
            assert_eq!(page.total_size, 25);
            seen.extend(page.items.iter().map(|run| run.id.clone()));
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 4);
        assert_eq!(seen, expected, "order for {sort}");
    }
    // A text sort key pages the same way.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let list = ListQuery::new(Resource::Run, 10, &token, "display_name", None).unwrap();
        let page = store.list_runs(&Scope::default(), &list).await.unwrap();
        names.extend(page.items.iter().map(|run| run.display_name.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), 25);
    assert_eq!(names, sorted);
}

async fn filters(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("filters", 1))
        .await
        .unwrap();
    for (name, at) in [
        ("apple", 10),
        ("banana", 20),
        ("cherry 100%", 30),
        ("date_x", 40),
    ] {
        store
            .create_run(new_run(&experiment.id, name, at))
            .await
            .unwrap();
    }
    let names = |filter: Vec<Predicate>| {
        let store = Arc::clone(&store);
        async move {
            let page = store
                .list_runs(
                    &Scope::default(),
                    &query(Resource::Run, 50, "created_at", Some(filter)),
                )
                .await
                .unwrap();
            page.items
                .into_iter()
                .map(|run| run.display_name)
                .collect::<Vec<_>>()
        }
    };
    let s = |text: &str| Value::Str(text.to_string());
    assert_eq!(
        names(vec![pred("name", Op::Eq, s("banana"))]).await,
        ["banana"]
    );
    assert_eq!(
        names(vec![pred("name", Op::Ne, s("banana"))]).await.len(),
        3
    );
    assert_eq!(
        names(vec![pred("created_at", Op::Gt, Value::Int(20))]).await,
        ["cherry 100%", "date_x"]
    );
    assert_eq!(
        names(vec![pred("created_at", Op::Ge, Value::Int(20))])
            .await
            .len(),
        3
    );
    assert_eq!(
        names(vec![pred("created_at", Op::Lt, s("20"))]).await,
        ["apple"]
    );
    assert_eq!(
        names(vec![pred("created_at", Op::Le, Value::Int(20))])
            .await
            .len(),
        2
    );
    assert_eq!(
        names(vec![pred("created_at", Op::Gt, s("1970-01-01T00:00:25Z"))]).await,
        ["cherry 100%", "date_x"]
    );
    assert_eq!(
        names(vec![pred(
            "display_name",
            Op::In,
            Value::Strs(vec!["apple".into(), "date_x".into(), "zzz".into()])
        )])
        .await,
        ["apple", "date_x"]
    );
    assert!(
        names(vec![pred("display_name", Op::In, Value::Strs(vec![]))])
            .await
            .is_empty()
    );
    // Substring means substring: '%' and '_' are not wildcards.
    assert_eq!(
        names(vec![pred("name", Op::Substring, s("0%"))]).await,
        ["cherry 100%"]
    );
    assert_eq!(
        names(vec![pred("name", Op::Substring, s("_"))]).await,
        ["date_x"]
    );
    assert_eq!(
        names(vec![pred("name", Op::Substring, s("AN"))]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(vec![
            pred("name", Op::Substring, s("a")),
            pred("created_at", Op::Lt, Value::Int(40)),
        ])
        .await,
        ["apple", "banana"]
    );
    assert_eq!(
        names(vec![pred("state", Op::Eq, s("PENDING"))]).await.len(),
        4
    );
    assert_eq!(
        names(vec![pred("experiment_id", Op::Eq, s(&experiment.id))])
            .await
            .len(),
        4
    );
}

fn new_recurring(experiment_id: &str, name: &str, at: i64) -> NewRecurringRun {
    NewRecurringRun {
        display_name: name.to_string(),
        description: String::new(),
        namespace: String::new(),
        experiment_id: experiment_id.to_string(),
        service_account: String::new(),
        max_concurrency: 2,
        no_catchup: true,
        enabled: true,
        created_at: at,
        trigger: Trigger::Periodic {
            interval_second: 60,
            start_time: Some(at),
            end_time: None,
        },
        pipeline_id: "p".into(),
        pipeline_version_id: String::new(),
        pipeline_spec: None,
        runtime_config: String::new(),
        next_fire_at: Some(at + 60),
    }
}

async fn recurring_runs(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("schedules", 1))
        .await
        .unwrap();
    let periodic = store
        .create_recurring_run(new_recurring(&experiment.id, "every-minute", 10))
        .await
        .unwrap();
    let mut cron = new_recurring("elsewhere", "hourly", 11);
    cron.trigger = Trigger::Cron {
        cron: "0 0 * * * *".into(),
        start_time: None,
        end_time: Some(99),
    };
    cron.pipeline_spec = Some("{}".into());
    let cron = store.create_recurring_run(cron).await.unwrap();
    let fetched = store.get_recurring_run(&cron.id).await.unwrap();
    assert_eq!(fetched, cron);
    assert_eq!(
        store.get_recurring_run(&periodic.id).await.unwrap(),
        periodic
    );

    store
        .set_recurring_run_enabled(&periodic.id, false, 20)
        .await
        .unwrap();
    store
        .set_recurring_run_enabled(&periodic.id, false, 20)
        .await
        .unwrap();
    let disabled = store.get_recurring_run(&periodic.id).await.unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.updated_at, 20);
    assert!(matches!(
        store.set_recurring_run_enabled("missing", true, 1).await,
        Err(Error::NotFound(_))
    ));

    let in_experiment = store
        .list_recurring_runs(
            &Scope {
                namespace: None,
                experiment_id: Some(experiment.id.clone()),
            },
            &query(Resource::RecurringRun, 10, "", None),
        )
        .await
        .unwrap();
    assert_eq!(in_experiment.total_size, 1);
    let all = store
        .list_recurring_runs(
            &Scope::default(),
            &query(Resource::RecurringRun, 10, "name desc", None),
        )
        .await
        .unwrap();
    let names: Vec<_> = all.items.iter().map(|r| r.display_name.as_str()).collect();
    assert_eq!(names, ["hourly", "every-minute"]);

    store.delete_recurring_run(&periodic.id).await.unwrap();
    assert!(matches!(
        store.get_recurring_run(&periodic.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.delete_recurring_run(&periodic.id).await,
        Err(Error::NotFound(_))
    ));
}

async fn duplicate_names_race(store: Arc<SqlStore>) {
    let mut tasks = Vec::new();
    for index in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .create_pipeline(
                    new_pipeline("contended", index, &[]),
                    Some(new_version("", "contended", index)),
                )
                .await
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(Error::AlreadyExists(_)) => conflicts += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((created, conflicts), (1, 7));
    let page = store
        .list_pipeline_versions(
            &store
                .get_pipeline_by_name("", "contended")
                .await
                .unwrap()
                .id,
            &query(Resource::PipelineVersion, 10, "", None),
        )
        .await
        .unwrap();
    assert_eq!(
        page.total_size, 1,
        "no version of a losing request was kept"
    );
}

async fn names_are_case_sensitive(store: Arc<SqlStore>) {
    store
        .create_experiment(new_experiment("Mixed", 1))
        .await
        .unwrap();
    store
        .create_experiment(new_experiment("mixed", 1))
        .await
        .expect("names differing in case are different names on every backend");
    let page = store
        .list_experiments(
            None,
            &query(
                Resource::Experiment,
                10,
                "",
                Some(vec![pred("name", Op::Eq, Value::Str("mixed".into()))]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

fn new_task(run_id: &str, path: &str, at: i64) -> Task {
    Task {
        id: new_id(),
        run_id: run_id.to_string(),
        parent_id: String::new(),
        path: path.to_string(),
        kind: TaskKind::Runtime,
        name: path.rsplit('/').next().unwrap_or(path).to_string(),
        display_name: path.to_string(),
        iteration_index: -1,
        state: TaskState::Running,
        state_history: vec![TaskStateChange {
            time: at,
            state: TaskState::Running,
        }],
        error: None,
        created_at: at,
        started_at: at,
        finished_at: 0,
        attempts: 1,
        inputs: r#"{"a":1}"#.into(),
        outputs: "{}".into(),
        details: "{}".into(),
        fingerprint: String::new(),
        cached_from: String::new(),
        cache_scope: String::new(),
    }
}

async fn tasks_and_artifacts(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("exec", 1))
        .await
        .unwrap();
    let run = store
        .create_run(new_run(&experiment.id, "executed", 10))
        .await
        .unwrap();
    assert_eq!(
        store.run_spec(&run.id).await.unwrap(),
        r#"{"pipelineInfo":{"name":"p"}}"#
    );
    let mut producer = new_task(&run.id, "root/produce", 11);
    store.save_task(&producer).await.unwrap();
    producer.state = TaskState::Succeeded;
    producer.finished_at = 12;
    producer.outputs = r#"{"Output":3}"#.into();
    producer.fingerprint = "f".repeat(64);
    producer.cache_scope = "/pipeline-a".into();
    producer.error = Some("none".into());
    store.save_task(&producer).await.unwrap();
    assert_eq!(store.get_task(&producer.id).await.unwrap(), producer);
    let consumer = new_task(&run.id, "root/consume", 13);
    store.save_task(&consumer).await.unwrap();
    let listed = store.list_tasks(&run.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, producer.id);

    let cached = store
        .find_cached_task(&producer.fingerprint, "/pipeline-a", 0)
        .await
        .unwrap();
    assert_eq!(cached.map(|t| t.id), Some(producer.id.clone()));
    assert!(
        store
            .find_cached_task(&producer.fingerprint, "/pipeline-a", 13)
            .await
            .unwrap()
            .is_none(),
        "entries older than the staleness limit are not hits"
    );
    assert!(
        store
            .find_cached_task(&producer.fingerprint, "/pipeline-b", 0)
            .await
            .unwrap()
            .is_none(),
        "another pipeline's entry with the same fingerprint is not a hit"
    );
    // A task that reused an entry is not an entry itself: only executions are.
    let mut reuser = new_task(&run.id, "root/reuse", 14);
    reuser.state = TaskState::Cached;
    reuser.finished_at = 15;
    reuser.fingerprint = producer.fingerprint.clone();
    reuser.cache_scope = producer.cache_scope.clone();
    reuser.cached_from = producer.id.clone();
    store.save_task(&reuser).await.unwrap();
    assert_eq!(store.get_task(&reuser.id).await.unwrap(), reuser);
    let newest = store
        .find_cached_task(&producer.fingerprint, "/pipeline-a", 0)
        .await
        .unwrap();
    assert_eq!(newest.map(|t| t.id), Some(producer.id.clone()));

    let artifact = Artifact {
        id: 9_007_199_254_740_000,
        run_id: run.id.clone(),
        producer_task_id: producer.id.clone(),
        output_key: "dataset".into(),
        name: "dataset".into(),
        uri: "file:///tmp/x".into(),
        schema_title: "system.Dataset".into(),
        schema_version: "0.0.1".into(),
        metadata: r#"{"rows":3}"#.into(),
        created_at: 12,
    };
    store.create_artifact(&artifact).await.unwrap();
    let input = ArtifactLink {
        task_id: consumer.id.clone(),
        artifact_id: artifact.id,
        direction: Direction::Input,
        key: "data".into(),
    };
    store.link_artifact(&run.id, &input).await.unwrap();
    store.link_artifact(&run.id, &input).await.unwrap();
    assert_eq!(store.get_artifact(artifact.id).await.unwrap(), artifact);
    assert_eq!(store.list_artifacts(&run.id).await.unwrap().len(), 1);
    let lineage = store.artifact_links(artifact.id).await.unwrap();
    assert_eq!(
        lineage.len(),
        2,
        "one producer and one consumer link: {lineage:?}"
    );
    assert_eq!(store.run_artifact_links(&run.id).await.unwrap().len(), 2);

    // A task of another run linked to the artifact (an importer reusing it) lists it
    // among that run's artifacts too, recorded by the first run all the same.
    let other = store
        .create_run(new_run(&experiment.id, "reuser", 30))
        .await
        .unwrap();
    assert!(store.list_artifacts(&other.id).await.unwrap().is_empty());
    let reuser = new_task(&other.id, "root/importer", 31);
    store.save_task(&reuser).await.unwrap();
    let reused = ArtifactLink {
        task_id: reuser.id.clone(),
        artifact_id: artifact.id,
        direction: Direction::Output,
        key: "artifact".into(),
    };
    store.link_artifact(&other.id, &reused).await.unwrap();
    assert_eq!(
        store.list_artifacts(&other.id).await.unwrap(),
        std::slice::from_ref(&artifact)
    );
    assert_eq!(store.list_artifacts(&run.id).await.unwrap().len(), 1);
    store.delete_run(&other.id).await.unwrap();

    store.delete_run(&run.id).await.unwrap();
    assert!(store.list_tasks(&run.id).await.unwrap().is_empty());
    assert!(store.list_artifacts(&run.id).await.unwrap().is_empty());
    assert!(matches!(
        store.get_artifact(artifact.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(store
        .find_cached_task(&producer.fingerprint, "/pipeline-a", 0)
        .await
        .unwrap()
        .is_none());
}

async fn task_batches_upsert_in_order(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("batches", 1))
        .await
        .unwrap();
    let run = store
        .create_run(new_run(&experiment.id, "batched", 10))
        .await
        .unwrap();
    let mut first = new_task(&run.id, "root/first", 11);
    let second = new_task(&run.id, "root/second", 12);
    store
        .save_tasks(&[first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.list_tasks(&run.id).await.unwrap(),
        [first.clone(), second.clone()]
    );

    // The end of one task and the start of the next in one batch: the existing
    // row is overwritten in place, the new one inserted.
    first.state = TaskState::Succeeded;
    first.finished_at = 13;
    first.details = r#"{"attempts":[{"attempt":1}]}"#.into();
    first.error = None;
    let third = new_task(&run.id, "root/third", 13);
    store
        .save_tasks(&[first.clone(), third.clone()])
        .await
        .unwrap();
    assert_eq!(store.get_task(&first.id).await.unwrap(), first);
    assert_eq!(store.get_task(&third.id).await.unwrap(), third);
    assert_eq!(store.list_tasks(&run.id).await.unwrap().len(), 3);

    store.save_tasks(&[]).await.unwrap();
}

async fn artifacts_found_by_uri(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("imports", 1))
        .await
        .unwrap();
    let run = store
        .create_run(new_run(&experiment.id, "importing", 10))
        .await
        .unwrap();
    let uri = format!("minio://bucket/imported/{}", uuid_suffix());
    let found = store
        .find_artifacts_by_uri(&uri, "system.Dataset", 10)
        .await
        .unwrap();
    assert!(found.is_empty());
    let imported = |id: i64, title: &str, at: i64| Artifact {
        id,
        run_id: run.id.clone(),
        producer_task_id: String::new(),
        output_key: "artifact".into(),
        name: "artifact".into(),
        uri: uri.clone(),
        schema_title: title.into(),
        schema_version: "0.0.1".into(),
        metadata: "{}".into(),
        created_at: at,
    };
    let older = imported(9_007_199_254_740_101, "system.Dataset", 20);
    let newer = imported(9_007_199_254_740_102, "system.Dataset", 21);
    let model = imported(9_007_199_254_740_103, "system.Model", 19);
    for artifact in [&newer, &older, &model] {
        store.create_artifact(artifact).await.unwrap();
    }
    let ids = |found: Vec<Artifact>| found.iter().map(|a| a.id).collect::<Vec<_>>();
    let found = store
        .find_artifacts_by_uri(&uri, "system.Dataset", 10)
        .await
        .unwrap();
    assert_eq!(found, [older.clone(), newer.clone()], "oldest first");
    let found = store
        .find_artifacts_by_uri(&uri, "system.Dataset", 1)
        .await
        .unwrap();
    assert_eq!(ids(found), [older.id]);
    let found = store
        .find_artifacts_by_uri(&uri, "system.Model", 10)
        .await
        .unwrap();
    assert_eq!(ids(found), [model.id], "the type is part of the match");
    let found = store
        .find_artifacts_by_uri(&format!("{uri}/other"), "system.Dataset", 10)
        .await
        .unwrap();
    assert!(found.is_empty());
}

/// A fire of `tick` for the row as read, creating a run named after the tick.
fn fire_of(recurring: &RecurringRun, tick: i64, max_concurrency: i64) -> Fire {
    let mut run = new_run(&recurring.experiment_id, &format!("tick-{tick}"), tick + 1);
    run.scheduled_at = tick;
    run.recurring_run_id = recurring.id.clone();
    Fire {
        recurring_run_id: recurring.id.clone(),
        guard: recurring.guard(),
        tick,
        next_fire_at: Some(tick + 60),
        max_concurrency,
        run_id: format!("{}-{tick}", recurring.id),
        run,
    }
}

async fn recurring_run_schedules(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("fired", 1))
        .await
        .unwrap();
    let recurring = store
        .create_recurring_run(new_recurring(&experiment.id, "every-minute", 100))
        .await
        .unwrap();
    assert_eq!(recurring.next_fire_at, Some(160));
    assert_eq!(recurring.last_fired_at, None);
    assert_eq!((recurring.fired_count, recurring.revision), (0, 0));
    let mut disabled = new_recurring(&experiment.id, "off", 100);
    disabled.enabled = false;
    disabled.next_fire_at = Some(100);
    store.create_recurring_run(disabled).await.unwrap();
    let mut finished = new_recurring(&experiment.id, "finished", 100);
    finished.next_fire_at = None;
    store.create_recurring_run(finished).await.unwrap();

    // Only enabled rows whose time has come are due; the earliest is known.
    assert!(store.due_recurring_runs(159, 10).await.unwrap().is_empty());
    assert_eq!(store.next_recurring_run_due().await.unwrap(), Some(160));
    let due = store.due_recurring_runs(160, 10).await.unwrap();
    assert_eq!(due, vec![recurring.clone()]);

    // A claim creates the run and moves the schedule, in one step.
    let fired = match store.fire_recurring_run(fire_of(&recurring, 160, 2)).await {
        Ok(FireOutcome::Fired(run)) => run,
        other => panic!("expected a fired run, got {other:?}"),
    };
    assert_eq!(fired.id, format!("{}-160", recurring.id));
    assert_eq!((fired.scheduled_at, fired.created_at), (160, 161));
    assert_eq!(fired.recurring_run_id, recurring.id);
    assert_eq!(fired.state, RunState::Pending);
    assert_eq!(store.get_run(&fired.id).await.unwrap().scheduled_at, 160);
    let after = store.get_recurring_run(&recurring.id).await.unwrap();
    assert_eq!(after.last_fired_at, Some(160));
    assert_eq!(after.next_fire_at, Some(220));
    assert_eq!((after.fired_count, after.revision), (1, 0));
    assert_eq!(store.active_run_count(&recurring.id).await.unwrap(), 1);
    assert_eq!(
        store
            .get_experiment(&experiment.id)
            .await
            .unwrap()
            .last_run_created_at,
        161
    );

    // The same read again loses: the tick is taken.
    assert_eq!(
        store
            .fire_recurring_run(fire_of(&recurring, 160, 2))
            .await
            .unwrap(),
        FireOutcome::Lost
    );
    assert_eq!(
        store
            .fire_recurring_run(fire_of(&recurring, 220, 2))
            .await
            .unwrap(),
        FireOutcome::Lost
    );
    // A tick not after the last one is refused outright.
    assert!(matches!(
        store.fire_recurring_run(fire_of(&after, 160, 2)).await,
        Err(Error::InvalidArgument(_))
    ));

    // At the concurrency limit nothing is written; the tick stays due.
    assert_eq!(
        store
            .fire_recurring_run(fire_of(&after, 220, 1))
            .await
            .unwrap(),
        FireOutcome::AtCapacity { active_runs: 1 }
    );
    assert_eq!(store.get_recurring_run(&recurring.id).await.unwrap(), after);
    store
        .transition_run(
            &fired.id,
            &[RunState::Pending],
            RunState::Running,
            None,
            170,
        )
        .await
        .unwrap();
    assert_eq!(store.active_run_count(&recurring.id).await.unwrap(), 1);
    store
        .transition_run(
            &fired.id,
            &[RunState::Running],
            RunState::Succeeded,
            None,
            180,
        )
        .await
        .unwrap();
    assert_eq!(store.active_run_count(&recurring.id).await.unwrap(), 0);
    assert!(matches!(
        store
            .fire_recurring_run(fire_of(&after, 220, 1))
            .await
            .unwrap(),
        FireOutcome::Fired(_)
    ));
    let after = store.get_recurring_run(&recurring.id).await.unwrap();
    assert_eq!((after.last_fired_at, after.fired_count), (Some(220), 2));

    // A run id that exists already: the tick is claimed, no second run appears.
    let mut duplicate = fire_of(&after, 280, 5);
    duplicate.run_id = fired.id.clone();
    assert_eq!(
        store.fire_recurring_run(duplicate).await.unwrap(),
        FireOutcome::AlreadyFired
    );
    let after = store.get_recurring_run(&recurring.id).await.unwrap();
    assert_eq!((after.last_fired_at, after.fired_count), (Some(280), 2));
    assert_eq!(
        store.get_run(&fired.id).await.unwrap().display_name,
        "tick-160"
    );

    // Rescheduling without a claim, guarded the same way.
    assert!(store
        .reschedule_recurring_run(&recurring.id, after.guard(), Some(500))
        .await
        .unwrap());
    assert!(!store
        .reschedule_recurring_run(&recurring.id, recurring.guard(), Some(600))
        .await
        .unwrap());
    assert_eq!(store.next_recurring_run_due().await.unwrap(), Some(500));
    assert!(!store
        .reschedule_recurring_run("missing", after.guard(), Some(1))
        .await
        .unwrap());

    // Disabled rows are neither due nor claimable.
    store
        .set_recurring_run_enabled(&recurring.id, false, 300)
        .await
        .unwrap();
    let disabled = store.get_recurring_run(&recurring.id).await.unwrap();
    assert_eq!(disabled.revision, after.revision + 1);
    assert!(store
        .due_recurring_runs(10_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_recurring_run_due().await.unwrap(), None);
    assert_eq!(
        store
            .fire_recurring_run(fire_of(&disabled, 560, 5))
            .await
            .unwrap(),
        FireOutcome::Lost
    );

    // Deleting the recurring run keeps its runs, as upstream.
    store.delete_recurring_run(&recurring.id).await.unwrap();
    assert_eq!(
        store
            .fire_recurring_run(fire_of(&disabled, 560, 5))
            .await
            .unwrap(),
        FireOutcome::Lost
    );
    assert!(store.get_run(&fired.id).await.is_ok());
}

async fn recurring_run_updates(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("edited", 1))
        .await
        .unwrap();
    let recurring = store
        .create_recurring_run(new_recurring(&experiment.id, "before", 100))
        .await
        .unwrap();
    let update = RecurringRunUpdate {
        display_name: Some("after".into()),
        description: Some("now hourly".into()),
        service_account: Some("robot".into()),
        max_concurrency: Some(5),
        no_catchup: Some(false),
        enabled: Some(false),
        trigger: Some(Trigger::Cron {
            cron: "0 0 * * * *".into(),
            start_time: None,
            end_time: Some(9_999),
        }),
        source: Some(RecurringRunSource {
            pipeline_id: String::new(),
            pipeline_version_id: String::new(),
            pipeline_spec: Some(r#"{"pipelineInfo":{"name":"q"}}"#.into()),
        }),
        runtime_config: Some(r#"{"parameters":{"b":2}}"#.into()),
        schedule: Some(ScheduleState {
            last_fired_at: Some(3_600),
            next_fire_at: Some(7_200),
        }),
        updated_at: 150,
    };
    let updated = store
        .update_recurring_run(&recurring.id, recurring.guard(), update.clone())
        .await
        .unwrap();
    assert_eq!(updated.display_name, "after");
    assert_eq!(updated.description, "now hourly");
    assert_eq!(updated.service_account, "robot");
    assert_eq!(updated.max_concurrency, 5);
    assert!(!updated.no_catchup);
    assert!(!updated.enabled);
    assert_eq!(updated.trigger, update.trigger.clone().unwrap());
    assert_eq!(updated.pipeline_id, "");
    assert_eq!(
        updated.pipeline_spec.as_deref(),
        Some(r#"{"pipelineInfo":{"name":"q"}}"#)
    );
    assert_eq!(updated.runtime_config, r#"{"parameters":{"b":2}}"#);
    assert_eq!(updated.last_fired_at, Some(3_600));
    assert_eq!(updated.next_fire_at, Some(7_200));
    assert_eq!((updated.revision, updated.updated_at), (1, 150));
    assert_eq!(updated.created_at, recurring.created_at);
    assert_eq!(
        store.get_recurring_run(&recurring.id).await.unwrap(),
        updated
    );

    // Only the given fields change.
    let renamed = store
        .update_recurring_run(
            &recurring.id,
            updated.guard(),
            RecurringRunUpdate {
                display_name: Some("again".into()),
                updated_at: 160,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        renamed,
        RecurringRun {
            display_name: "again".into(),
            updated_at: 160,
            revision: 2,
            ..updated.clone()
        }
    );

    // A stale guard is refused: edited or fired since it was read.
    assert!(matches!(
        store
            .update_recurring_run(
                &recurring.id,
                updated.guard(),
                RecurringRunUpdate::default()
            )
            .await,
        Err(Error::Aborted(_))
    ));
    assert!(matches!(
        store
            .update_recurring_run("missing", updated.guard(), RecurringRunUpdate::default())
            .await,
        Err(Error::NotFound(_))
    ));
    // Back to a periodic trigger from a stored version.
    let periodic = store
        .update_recurring_run(
            &recurring.id,
            renamed.guard(),
            RecurringRunUpdate {
                trigger: Some(Trigger::Periodic {
                    interval_second: 30,
                    start_time: Some(5),
                    end_time: None,
                }),
                source: Some(RecurringRunSource {
                    pipeline_id: "p".into(),
                    pipeline_version_id: "v".into(),
                    pipeline_spec: None,
                }),
                schedule: Some(ScheduleState {
                    last_fired_at: Some(3_600),
                    next_fire_at: None,
                }),
                updated_at: 170,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        periodic.trigger,
        Trigger::Periodic {
            interval_second: 30,
            start_time: Some(5),
            end_time: None,
        }
    );
    assert_eq!(
        (
            periodic.pipeline_id.as_str(),
            periodic.pipeline_version_id.as_str()
        ),
        ("p", "v")
    );
    assert_eq!(periodic.pipeline_spec, None);
    assert_eq!(periodic.next_fire_at, None);
}

/// Eight claimants race for every tick of one recurring run; each tick gets
/// exactly one run and no tick is skipped.
async fn concurrent_claims_fire_each_tick_once(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("raced", 1))
        .await
        .unwrap();
    let mut new = new_recurring(&experiment.id, "raced", 0);
    new.max_concurrency = 10;
    new.next_fire_at = Some(1);
    let recurring = store.create_recurring_run(new).await.unwrap();
    const TICKS: i64 = 40;
    let mut claimants = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        let id = recurring.id.clone();
        claimants.push(tokio::spawn(async move {
            let mut won = Vec::new();
            loop {
                let row = store.get_recurring_run(&id).await.unwrap();
                let tick = row.last_fired_at.map_or(1, |last| last + 1);
                if tick > TICKS {
                    return won;
                }
                // Keep the concurrency limit out of the way: finish runs as they appear.
                let outcome = store
                    .fire_recurring_run(fire_of(&row, tick, 10))
                    .await
                    .unwrap();
                match outcome {
                    FireOutcome::Fired(run) => {
                        store
                            .transition_run(
                                &run.id,
                                &[RunState::Pending],
                                RunState::Succeeded,
                                None,
                                tick,
                            )
                            .await
                            .unwrap();
                        won.push(tick);
                    }
                    FireOutcome::Lost => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    let mut ticks = Vec::new();
    for claimant in claimants {
        ticks.extend(claimant.await.unwrap());
    }
    ticks.sort_unstable();
    assert_eq!(ticks, (1..=TICKS).collect::<Vec<_>>());
    let runs = store
        .list_runs(&Scope::default(), &query(Resource::Run, 200, "", None))
        .await
        .unwrap();
    assert_eq!(runs.total_size, TICKS);
    let row = store.get_recurring_run(&recurring.id).await.unwrap();
    assert_eq!((row.last_fired_at, row.fired_count), (Some(TICKS), TICKS));
}

/// `total_size` of run lists filtered on counted columns comes from `run_counts`;
/// after every kind of change it must equal the rows the list really returns.
async fn run_totals_follow_every_change(store: Arc<SqlStore>) {
    let first = store
        .create_experiment(new_experiment("totals-a", 1))
        .await
        .unwrap();
    let second = store
        .create_experiment(new_experiment("totals-b", 1))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for index in 0..24 {
        let experiment = if index % 3 == 0 { &second } else { &first };
        let mut run = new_run(&experiment.id, &format!("t{index}"), 10 + index);
        if index % 4 == 0 {
            run.namespace = "team-a".into();
        }
        ids.push(store.create_run(run).await.unwrap().id);
    }
    // Concurrent creates and transitions in one experiment must neither deadlock
    // nor lose an update.
    let mut writers = Vec::new();
    for writer in 0..6 {
        let store = Arc::clone(&store);
        let experiment_id = first.id.clone();
        writers.push(tokio::spawn(async move {
            for index in 0..5 {
                let run = store
                    .create_run(new_run(&experiment_id, &format!("w{writer}-{index}"), 100))
                    .await
                    .unwrap();
                store
                    .transition_run(&run.id, &[RunState::Pending], RunState::Running, None, 101)
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for (index, id) in ids.iter().enumerate() {
        let state = match index % 4 {
            0 => RunState::Running,
            1 => RunState::Succeeded,
            2 => RunState::Failed,
            _ => continue,
        };
        store
            .transition_run(id, &[RunState::Pending], state, None, 200)
            .await
            .unwrap();
    }
    store
        .set_run_storage_state(&ids[1], StorageState::Archived, 300)
        .await
        .unwrap();
    store
        .set_run_storage_state(&ids[2], StorageState::Archived, 300)
        .await
        .unwrap();
    store
        .set_run_storage_state(&ids[2], StorageState::Available, 301)
        .await
        .unwrap();
    store.delete_run(&ids[5]).await.unwrap();
    store
        .set_experiment_storage_state(&second.id, StorageState::Archived, 400)
        .await
        .unwrap();

    let s = |text: &str| Value::Str(text.to_string());
    let scopes = [
        Scope::default(),
        Scope {
            experiment_id: Some(first.id.clone()),
            ..Scope::default()
        },
        Scope {
            experiment_id: Some(second.id.clone()),
            ..Scope::default()
        },
        Scope {
            namespace: Some("team-a".into()),
            ..Scope::default()
        },
    ];
    let filters: Vec<Option<Vec<Predicate>>> = vec![
        None,
        Some(vec![pred("state", Op::Eq, s("RUNNING"))]),
        Some(vec![pred("state", Op::Ne, s("PENDING"))]),
        Some(vec![pred(
            "state",
            Op::In,
            Value::Strs(vec!["FAILED".into(), "SUCCEEDED".into()]),
        )]),
        Some(vec![pred("storage_state", Op::Eq, s("ARCHIVED"))]),
        Some(vec![
            pred("storage_state", Op::Ne, s("ARCHIVED")),
            pred("state", Op::Eq, s("PENDING")),
        ]),
        Some(vec![pred("state", Op::Substring, s("ED"))]),
        // Not a counted column: counted the slow way, must agree all the same.
        Some(vec![pred("name", Op::Substring, s("w1"))]),
    ];
    let check = |label: &'static str| {
        let store = Arc::clone(&store);
        let scopes = scopes.clone();
        let filters = filters.clone();
        async move {
            for scope in &scopes {
                for filter in &filters {
                    let page = store
                        .list_runs(
                            scope,
                            &query(Resource::Run, 200, "created_at", filter.clone()),
                        )
                        .await
                        .unwrap();
                    assert_eq!(
                        page.total_size,
                        page.items.len() as i64,
                        "{label}: scope {scope:?}, filter {filter:?}"
                    );
                }
            }
        }
    };
    check("maintained counts").await;
    let everything = store
        .list_runs(
            &Scope::default(),
            &query(Resource::Run, 200, "created_at", None),
        )
        .await
        .unwrap();
    assert_eq!(everything.total_size, 24 + 30 - 1);
    store.rebuild_run_counts().await.unwrap();
    check("rebuilt counts").await;
}

/// Concurrent creates share transactions; a run the database refuses (a name longer
/// than the column on PostgreSQL and MySQL) must fail alone, never the runs that
/// shared its batch.
async fn concurrent_creates_fail_alone(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("batched-creates", 1))
        .await
        .unwrap();
    let mut creates = Vec::new();
    for index in 0..40 {
        let store = Arc::clone(&store);
        let experiment_id = experiment.id.clone();
        creates.push(tokio::spawn(async move {
            let name = if index == 17 {
                "x".repeat(300)
            } else {
                format!("batched-{index}")
            };
            let created = store
                .create_run(new_run(&experiment_id, &name, 100 + index))
                .await;
            (name, created)
        }));
    }
    let mut stored = 0;
    for create in creates {
        let (name, created) = create.await.unwrap();
        if name.len() == 300 {
            if let Ok(run) = created {
                // SQLite does not enforce VARCHAR lengths.
                assert_eq!(store.get_run(&run.id).await.unwrap().display_name, name);
                stored += 1;
            }
            continue;
        }
        let run = created.unwrap_or_else(|error| panic!("{name} failed: {error}"));
        let read = store.get_run(&run.id).await.unwrap();
        assert_eq!(read.display_name, name);
        assert_eq!(read.pipeline_spec, run.pipeline_spec);
        assert_eq!(read, run);
        stored += 1;
    }
    let scope = Scope {
        experiment_id: Some(experiment.id.clone()),
        ..Scope::default()
    };
    let page = store
        .list_runs(&scope, &query(Resource::Run, 100, "created_at", None))
        .await
        .unwrap();
    assert_eq!(page.items.len(), stored);
    assert_eq!(page.total_size, stored as i64);
    assert_eq!(
        store
            .get_experiment(&experiment.id)
            .await
            .unwrap()
            .last_run_created_at,
        139
    );
}

/// A run that ran one task producing one artifact, finished (SUCCEEDED) at `finished`.
async fn finished_run_with_artifact(
    store: &SqlStore,
    experiment_id: &str,
    name: &str,
    created: i64,
    finished: i64,
    artifact_id: i64,
) -> (Run, Task) {
    let run = store
        .create_run(new_run(experiment_id, name, created))
        .await
        .unwrap();
    let mut task = new_task(&run.id, "root/train", created);
    task.state = TaskState::Succeeded;
    task.finished_at = finished;
    task.fingerprint = format!("{name}-fingerprint");
    task.cache_scope = "/p".into();
    store.save_task(&task).await.unwrap();
    store
        .create_artifact(&Artifact {
            id: artifact_id,
            run_id: run.id.clone(),
            producer_task_id: task.id.clone(),
            output_key: "model".into(),
            name: "model".into(),
            uri: format!("file:///artifacts/p/{}/train/{}/model", run.id, task.id),
            schema_title: "system.Model".into(),
            schema_version: "0.0.1".into(),
            metadata: "{}".into(),
            created_at: created,
        })
        .await
        .unwrap();
    store
        .transition_run(
            &run.id,
            &[RunState::Pending],
            RunState::Running,
            None,
            created,
        )
        .await
        .unwrap();
    let run = store
        .transition_run(
            &run.id,
            &[RunState::Running],
            RunState::Succeeded,
            None,
            finished,
        )
        .await
        .unwrap();
    (run, task)
}

async fn retention_spares_what_kept_runs_hold(store: Arc<SqlStore>) {
    let experiment = store
        .create_experiment(new_experiment("retained", 1))
        .await
        .unwrap();
    let (old, old_task) =
        finished_run_with_artifact(&store, &experiment.id, "old", 100, 200, 7001).await;
    let (older, _) =
        finished_run_with_artifact(&store, &experiment.id, "older", 50, 150, 7002).await;
    let (young, _) =
        finished_run_with_artifact(&store, &experiment.id, "young", 900, 1000, 7003).await;
    // A newer run reused old's artifact (a cache hit): old's object must stay while
    // that run is kept.
    let reuser = store
        .create_run(new_run(&experiment.id, "reuser", 950))
        .await
        .unwrap();
    let reusing = new_task(&reuser.id, "root/train", 950);
    store.save_task(&reusing).await.unwrap();
    store
        .link_artifact(
            &reuser.id,
            &ArtifactLink {
                task_id: reusing.id.clone(),
                artifact_id: 7001,
                direction: Direction::Output,
                key: "model".into(),
            },
        )
        .await
        .unwrap();
    let pending = store
        .create_run(new_run(&experiment.id, "pending", 10))
        .await
        .unwrap();

    let cutoff = 500;
    let expired = store
        .runs_with_expired_artifacts(cutoff, None, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = expired.iter().map(|run| run.id.as_str()).collect();
    assert_eq!(
        ids,
        [older.id.as_str(), old.id.as_str()],
        "by finish time, unfinished and young runs left out"
    );
    let page = store
        .runs_with_expired_artifacts(cutoff, None, 1)
        .await
        .unwrap();
    let rest = store
        .runs_with_expired_artifacts(cutoff, page.last(), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|run| run.id.as_str()).collect::<Vec<_>>(),
        [old.id.as_str()]
    );

    let held = store.expired_artifacts(&old.id, cutoff).await.unwrap();
    assert!(
        held.is_empty(),
        "a running reuser holds old's artifact: {held:?}"
    );
    let free = store.expired_artifacts(&older.id, cutoff).await.unwrap();
    assert_eq!(free.iter().map(|a| a.id).collect::<Vec<_>>(), [7002]);

    let marked = store
        .mark_artifacts_deleted(
            &[older.id.clone(), old.id.clone(), pending.id.clone()],
            &[7002],
            600,
        )
        .await
        .unwrap();
    let mut expected = vec![older.id.clone(), old.id.clone()];
    expected.sort();
    let mut marked_sorted = marked.clone();
    marked_sorted.sort();
    assert_eq!(
        marked_sorted, expected,
        "a run not finished is never marked"
    );
    assert_eq!(
        store.run_artifacts_deleted_at(&older.id).await.unwrap(),
        600
    );
    assert_eq!(store.run_artifacts_deleted_at(&young.id).await.unwrap(), 0);
    assert_eq!(
        store.run_artifacts_deleted_at(&pending.id).await.unwrap(),
        0
    );
    let deleted = store
        .artifacts_deleted_at(&[7001, 7002, 7003])
        .await
        .unwrap();
    assert_eq!(deleted.into_iter().collect::<Vec<_>>(), [(7002, 600)]);
    assert!(
        store
            .runs_with_expired_artifacts(cutoff, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "marked runs are not looked at again"
    );
    assert!(
        store
            .find_cached_task(&old_task.fingerprint, "/p", 0)
            .await
            .unwrap()
            .is_none(),
        "a task of a run whose artifacts went is no cache entry"
    );

    // Once the reuser finished long ago too, old's artifact may go.
    store
        .transition_run(
            &reuser.id,
            &[RunState::Pending],
            RunState::Failed,
            None,
            400,
        )
        .await
        .unwrap();
    let free = store.expired_artifacts(&reuser.id, cutoff).await.unwrap();
    assert_eq!(free.iter().map(|a| a.id).collect::<Vec<_>>(), [7001]);
    let free = store.expired_artifacts(&old.id, cutoff).await.unwrap();
    assert_eq!(free.iter().map(|a| a.id).collect::<Vec<_>>(), [7001]);
    // The artifact row and every run stay: only objects went.
    assert_eq!(store.get_artifact(7002).await.unwrap().run_id, older.id);
    assert_eq!(store.list_tasks(&older.id).await.unwrap().len(), 1);
}

async fn retention_deletes_runs_by_age_and_count(store: Arc<SqlStore>) {
    let first = store
        .create_experiment(new_experiment("first", 1))
        .await
        .unwrap();
    let second = store
        .create_experiment(new_experiment("second", 1))
        .await
        .unwrap();
    let mut runs = Vec::new();
    for index in 0..4 {
        let at = 100 + index * 100;
        let (run, _) = finished_run_with_artifact(
            &store,
            &first.id,
            &format!("f{index}"),
            at,
            at + 10,
            8000 + index,
        )
        .await;
        runs.push(run);
    }
    let (lone, _) = finished_run_with_artifact(&store, &second.id, "lone", 50, 60, 8100).await;
    // Old but not finished: never deleted.
    let waiting = store
        .create_run(new_run(&first.id, "waiting", 10))
        .await
        .unwrap();
    // The newest run of the first experiment reuses the oldest one's artifact.
    let link = ArtifactLink {
        task_id: new_id(),
        artifact_id: 8000,
        direction: Direction::Input,
        key: "model".into(),
    };
    store.link_artifact(&runs[3].id, &link).await.unwrap();

    let none = store
        .runs_to_delete(RunRetention::default(), None, 10)
        .await
        .unwrap();
    assert!(none.is_empty());
    let by_count = store
        .runs_to_delete(
            RunRetention {
                finished_before: None,
                keep_per_experiment: Some(2),
            },
            None,
            10,
        )
        .await
        .unwrap();
    let ids: Vec<&str> = by_count.iter().map(|run| run.id.as_str()).collect();
    // The first experiment's newest two by creation are f3 and f2; of the older
    // ones the waiting run has not finished.
    assert_eq!(
        ids,
        [runs[0].id.as_str(), runs[1].id.as_str()],
        "{by_count:?}"
    );
    let by_age = store
        .runs_to_delete(
            RunRetention {
                finished_before: Some(150),
                keep_per_experiment: None,
            },
            None,
            10,
        )
        .await
        .unwrap();
    let ids: Vec<&str> = by_age.iter().map(|run| run.id.as_str()).collect();
    assert_eq!(ids, [lone.id.as_str(), runs[0].id.as_str()]);
    let both = RunRetention {
        finished_before: Some(150),
        keep_per_experiment: Some(2),
    };
    let chosen = store.runs_to_delete(both, None, 10).await.unwrap();
    assert_eq!(chosen.len(), 3, "{chosen:?}");
    let after_first = store
        .runs_to_delete(both, chosen.first(), 10)
        .await
        .unwrap();
    assert_eq!(after_first, chosen[1..]);

    let ids: Vec<String> = chosen.iter().map(|run| run.id.clone()).collect();
    let freed = store.artifacts_freed_by(&ids).await.unwrap();
    assert_eq!(
        freed.iter().map(|a| a.id).collect::<Vec<_>>(),
        [8001, 8100],
        "f3 still holds f0's artifact"
    );
    assert!(
        store.delete_retained_runs(&ids).await.unwrap().is_empty(),
        "runs are deleted only once marked"
    );
    store
        .mark_artifacts_deleted(&ids, &[8001, 8100], 700)
        .await
        .unwrap();
    let mut deleted = store.delete_retained_runs(&ids).await.unwrap();
    deleted.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(deleted, expected);
    for id in &ids {
        assert!(matches!(store.get_run(id).await, Err(Error::NotFound(_))));
        assert!(store.list_tasks(id).await.unwrap().is_empty());
    }
    assert!(matches!(
        store.get_artifact(8001).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.get_artifact(8100).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        store.get_artifact(8000).await.unwrap().run_id,
        runs[0].id,
        "an artifact a kept run links stays"
    );
    assert_eq!(store.list_artifacts(&runs[3].id).await.unwrap().len(), 2);
    store.get_run(&waiting.id).await.unwrap();
    let page = store
        .list_runs(
            &Scope {
                namespace: None,
                experiment_id: Some(first.id.clone()),
            },
            &query(Resource::Run, 10, "", None),
        )
        .await
        .unwrap();
    assert_eq!(page.total_size, 3, "the run counts follow the deletions");
    assert_eq!(page.items.len(), 3);

    // Deleting f3 later frees f0's artifact, whose recorder is already gone.
    let last = vec![runs[3].id.clone()];
    let freed = store.artifacts_freed_by(&last).await.unwrap();
    assert_eq!(freed.iter().map(|a| a.id).collect::<Vec<_>>(), [8000, 8003]);
    store
        .mark_artifacts_deleted(&last, &[8000, 8003], 800)
        .await
        .unwrap();
    assert_eq!(store.delete_retained_runs(&last).await.unwrap(), last);
    assert!(matches!(
        store.get_artifact(8000).await,
        Err(Error::NotFound(_))
    ));
}
