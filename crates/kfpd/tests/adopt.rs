//! `kfpd adopt`: an upstream KFP database built from upstream's table layout
//! (tests/adopt/upstream-*.sql) on the shared MariaDB and PostgreSQL servers,
//! filled with rows shaped as upstream writes them (tests/adopt/rows.sql), is
//! adopted by the real binary into SQLite or the same server's kfpd database;
//! then `kfpd serve` on that store answers with what the upstream rows hold.

mod common;

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Connection, Executor, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mysql,
    Postgres,
}

/// The start of the previous hour: rows.sql's times are relative to it, so the
/// recurring runs' next ticks are always a known few.
fn base() -> i64 {
    let now = now();
    now - now % 3600 - 3600
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/adopt")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// rows.sql with its placeholders filled in.
fn rows_sql(base: i64) -> String {
    let spec = |name: &str| {
        std::fs::read_to_string(common::pipeline(name))
            .expect("pipeline")
            .replace('\'', "''")
    };
    let mut text = fixture("rows.sql")
        .replace("${SPEC_HELLO}", &spec("hello.yaml"))
        .replace("${SPEC_PARAMETERS}", &spec("parameters.yaml"));
    while let Some(start) = text.find("${BASE") {
        let end = start + text[start..].find('}').expect("closing brace");
        let offset = &text[start + "${BASE".len()..end];
        let value = base
            + if offset.is_empty() {
                0
            } else {
                offset.parse::<i64>().expect("offset")
            };
        text.replace_range(start..=end, &value.to_string());
    }
    text
}

fn statements(script: &str) -> Vec<String> {
    script
        .split(";\n")
        .map(|chunk| {
            chunk
                .lines()
                // SQL comments; YAML's `---` inside a string is not one.
                .filter(|line| !line.trim_start().starts_with("-- "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|chunk| !chunk.trim().is_empty())
        .collect()
}

/// An upstream database of the test's own on a shared server, dropped at the end.
struct Upstream {
    kind: Kind,
    /// `scheme://user@host:port`.
    server: String,
    database: String,
    /// PostgreSQL: the schema upstream's tables are in.
    schema: Option<String>,
}

impl Upstream {
    async fn create(kind: Kind) -> Option<Upstream> {
        sqlx::any::install_default_drivers();
        let probe = common::database_url(match kind {
            Kind::Mysql => "mysql",
            Kind::Postgres => "postgres",
        })
        .await?;
        let server = probe.rsplit_once('/').expect("server url").0.to_string();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let upstream = Upstream {
            kind,
            server,
            database: format!("kfp_upstream_{suffix}"),
            schema: (kind == Kind::Postgres).then(|| format!("kfp_{suffix}")),
        };
        let admin = match kind {
            Kind::Mysql => upstream.server.clone(),
            Kind::Postgres => format!("{}/postgres", upstream.server),
        };
        let mut conn = AnyConnection::connect(&admin)
            .await
            .expect("admin connection");
        conn.execute(format!("CREATE DATABASE {}", upstream.database).as_str())
            .await
            .expect("create upstream database");
        let mut conn = upstream.connect().await;
        if let Some(schema) = &upstream.schema {
            conn.execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .expect("schema");
            conn.execute(format!("SET search_path TO {schema}").as_str())
                .await
                .expect("search path");
        }
        let ddl = match kind {
            Kind::Mysql => fixture("upstream-mysql.sql"),
            Kind::Postgres => fixture("upstream-postgres.sql"),
        };
        for statement in statements(&ddl) {
            conn.execute(statement.as_str())
                .await
                .unwrap_or_else(|error| panic!("{statement}: {error}"));
        }
        upstream.run(&rows_sql(base())).await;
        Some(upstream)
    }

    async fn connect(&self) -> AnyConnection {
        let url = format!("{}/{}", self.server, self.database);
        let mut conn = AnyConnection::connect(&url)
            .await
            .expect("upstream connection");
        match self.kind {
            Kind::Mysql => {
                conn.execute(
                    "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,NO_BACKSLASH_ESCAPES')",
                )
                .await
                .expect("sql mode");
            }
            Kind::Postgres => {
                if let Some(schema) = &self.schema {
                    conn.execute(format!("SET search_path TO {schema}").as_str())
                        .await
                        .expect("search path");
                }
            }
        }
        conn
    }

    /// Runs statements written with double-quoted identifiers.
    async fn run(&self, script: &str) {
        let mut conn = self.connect().await;
        for statement in statements(script) {
            conn.execute(statement.as_str())
                .await
                .unwrap_or_else(|error| panic!("{statement}: {error}"));
        }
    }

    /// The URL `kfpd adopt --from` takes.
    fn url(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}/{}?schema={schema}", self.server, self.database),
            None => format!("{}/{}", self.server, self.database),
        }
    }

    /// Upstream rows of one table, every column as text (NULL as JSON null).
    async fn rows(&self, table: &str, key: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
        let mut conn = self.connect().await;
        let columns_query = match self.kind {
            Kind::Mysql => format!(
                "SELECT CAST(column_name AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = '{table}'"
            ),
            Kind::Postgres => format!(
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}'"
            ),
        };
        let names: Vec<String> = sqlx::query(&columns_query)
            .fetch_all(&mut conn)
            .await
            .expect("columns")
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        let cast = |name: &str| match self.kind {
            Kind::Mysql => format!("CAST(\"{name}\" AS CHAR)"),
            Kind::Postgres => format!("CAST(\"{name}\" AS TEXT)"),
        };
        let select: Vec<String> = names.iter().map(|name| cast(name)).collect();
        let query = format!("SELECT {} FROM {table}", select.join(", "));
        let mut found = BTreeMap::new();
        for row in sqlx::query(&query)
            .fetch_all(&mut conn)
            .await
            .expect("rows")
        {
            let mut values = BTreeMap::new();
            for (index, name) in names.iter().enumerate() {
                // MySQL sends long text as bytes.
                let value: Option<String> = match row.try_get::<Option<String>, _>(index) {
                    Ok(value) => value,
                    Err(_) => row
                        .try_get::<Option<Vec<u8>>, _>(index)
                        .expect("column")
                        .map(|bytes| String::from_utf8(bytes).expect("utf-8")),
                };
                values.insert(
                    name.clone(),
                    value.map(Value::String).unwrap_or(Value::Null),
                );
            }
            let id = values[key].as_str().unwrap_or_default().to_string();
            found.insert(id, values);
        }
        found
    }

    async fn drop_database(&self) {
        let admin = match self.kind {
            Kind::Mysql => self.server.clone(),
            Kind::Postgres => format!("{}/postgres", self.server),
        };
        if let Ok(mut conn) = AnyConnection::connect(&admin).await {
            let statement = match self.kind {
                Kind::Mysql => format!("DROP DATABASE IF EXISTS {}", self.database),
                Kind::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
            };
            let _ = conn.execute(statement.as_str()).await;
        }
    }
}

/// Where kfpd keeps what it adopts: SQLite in the data dir, or a database of its
/// own on the upstream's server.
enum Target {
    Sqlite,
    Server(String),
}

impl Target {
    fn args(&self) -> Vec<String> {
        match self {
            Target::Sqlite => Vec::new(),
            Target::Server(url) => vec!["--database-url".into(), url.clone()],
        }
    }
}

async fn target_on(upstream: &Upstream, sqlite: bool) -> Target {
    if sqlite {
        return Target::Sqlite;
    }
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    Target::Server(format!("{}/kfpd_adopted_{suffix}", upstream.server))
}

async fn drop_target(target: &Target, upstream: &Upstream) {
    let Target::Server(url) = target else {
        return;
    };
    let name = url.rsplit('/').next().unwrap_or_default();
    let admin = match upstream.kind {
        Kind::Mysql => upstream.server.clone(),
        Kind::Postgres => format!("{}/postgres", upstream.server),
    };
    if let Ok(mut conn) = AnyConnection::connect(&admin).await {
        let statement = match upstream.kind {
            Kind::Mysql => format!("DROP DATABASE IF EXISTS {name}"),
            Kind::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        };
        let _ = conn.execute(statement.as_str()).await;
    }
}

/// Runs `kfpd adopt` to the end; returns its stdout, panicking with its stderr
/// when it fails.
fn adopt(dir: &Path, target: &Target, from: &str, extra: &[&str]) -> String {
    adopt_with_env(dir, target, from, extra, &[])
}

fn adopt_with_env(
    dir: &Path,
    target: &Target,
    from: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .arg("adopt")
        .arg("--from")
        .arg(from)
        .arg("--data-dir")
        .arg(dir)
        .args(target.args())
        .args(extra)
        .env("KFPD_LOG", "warn")
        .env_remove("DBCONFIG_HOST")
        .env_remove("DBDRIVERNAME")
        .envs(env.iter().copied())
        .output()
        .expect("run kfpd adopt");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kfpd adopt failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The row of a table in the report: upstream, new, changed, unchanged, refused,
/// deleted.
fn all_counts(report: &str, table: &str) -> [usize; 6] {
    let line = report
        .lines()
        .find(|line| line.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no {table} line in\n{report}"));
    let numbers: Vec<usize> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().expect("count"))
        .collect();
    numbers.try_into().expect("six counts")
}

/// The first five: upstream, new, changed, unchanged, refused.
fn counts(report: &str, table: &str) -> [usize; 5] {
    let [upstream, new, changed, unchanged, refused, _] = all_counts(report, table);
    [upstream, new, changed, unchanged, refused]
}

/// Adopted rows the pass deleted (dry: would delete) because upstream did.
fn deleted(report: &str, table: &str) -> usize {
    all_counts(report, table)[5]
}

fn rfc3339(seconds: &Value) -> Value {
    let seconds: i64 = seconds
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    let time = chrono::DateTime::from_timestamp(seconds, 0).expect("time");
    Value::String(time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn text(row: &BTreeMap<String, Value>, column: &str) -> String {
    row.get(column)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A JSON field that protobuf-JSON omits when empty.
fn omitted_if_empty(value: String) -> Value {
    if value.is_empty() {
        Value::Null
    } else {
        Value::String(value)
    }
}

/// A spec column as the API shows it: the YAML as JSON, wrapped with its
/// platform document when it has a second one.
fn yaml_as_json(text: &str) -> Value {
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(text)
        .map(|document| serde::Deserialize::deserialize(document).expect("spec yaml"))
        .collect();
    match documents.as_slice() {
        [spec] => spec.clone(),
        [spec, platform] => json!({"pipeline_spec": spec, "platform_spec": platform}),
        other => panic!("{} documents", other.len()),
    }
}

const LONG_ID: &str =
    "2d9e7c40-0000-4000-8000-000000000007-with-a-suffix-longer-than-sixty-four-characters";
const BROKEN_RUN: &str = "2d9e7c40-0000-4000-8000-000000000006";

/// Every field the API lists for the adopted rows, against the upstream rows.
async fn compare(server: &Server, upstream: &Upstream) {
    // Experiments.
    let experiments = upstream.rows("experiments", "UUID").await;
    let (status, listed) = server.get("/experiments?page_size=100").await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["experiments"]
        .as_array()
        .expect("experiments")
        .clone();
    assert_eq!(listed.len(), experiments.len(), "{listed:?}");
    for (id, row) in &experiments {
        let (status, got) = server.get(&format!("/experiments/{id}")).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["display_name"], json!(text(row, "Name")));
        assert_eq!(
            got["description"],
            omitted_if_empty(text(row, "Description"))
        );
        assert_eq!(got["created_at"], rfc3339(&row["CreatedAtInSec"]));
        assert_eq!(
            got["last_run_created_at"],
            rfc3339(&row["LastRunCreatedAtInSec"])
        );
        let archived = text(row, "StorageState").contains("ARCHIVED");
        assert_eq!(
            got["storage_state"],
            json!(if archived { "ARCHIVED" } else { "AVAILABLE" }),
            "{id}"
        );
    }

    // Pipelines upstream lists (READY) and their versions.
    let pipelines = upstream.rows("pipelines", "UUID").await;
    let versions = upstream.rows("pipeline_versions", "UUID").await;
    let (_, listed) = server.get("/pipelines").await;
    let listed = listed["pipelines"].as_array().cloned().unwrap_or_default();
    let ready: Vec<_> = pipelines
        .iter()
        .filter(|(_, row)| text(row, "Status") == "READY")
        .collect();
    assert_eq!(listed.len(), ready.len(), "{listed:?}");
    for (id, row) in ready {
        let (status, got) = server.get(&format!("/pipelines/{id}")).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["name"], json!(text(row, "Name")));
        assert_eq!(got["display_name"], json!(text(row, "DisplayName")));
        assert_eq!(
            got["description"],
            omitted_if_empty(text(row, "Description"))
        );
        assert_eq!(got["created_at"], rfc3339(&row["CreatedAtInSec"]));
        let (_, listed_versions) = server.get(&format!("/pipelines/{id}/versions")).await;
        let listed_versions = listed_versions["pipeline_versions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let own: Vec<_> = versions
            .iter()
            .filter(|(_, version)| text(version, "PipelineId") == *id)
            .collect();
        assert_eq!(listed_versions.len(), own.len());
        for (version_id, version) in own {
            let (status, got) = server
                .get(&format!("/pipelines/{id}/versions/{version_id}"))
                .await;
            assert_eq!(status, 200, "{got}");
            assert_eq!(got["name"], json!(text(version, "Name")));
            assert_eq!(got["display_name"], json!(text(version, "DisplayName")));
            assert_eq!(
                got["description"],
                omitted_if_empty(text(version, "Description"))
            );
            assert_eq!(
                got["code_source_url"],
                omitted_if_empty(text(version, "CodeSourceUrl"))
            );
            assert_eq!(
                got["package_url"]["pipeline_url"],
                omitted_if_empty(text(version, "PipelineSpecURI"))
            );
            assert_eq!(got["created_at"], rfc3339(&version["CreatedAtInSec"]));
            assert_eq!(
                got["pipeline_spec"],
                yaml_as_json(&text(version, "PipelineSpec"))
            );
        }
    }
    let (_, tagged) = server
        .get("/pipelines/5b7e2f10-0000-4000-8000-000000000001")
        .await;
    assert_eq!(tagged["tags"], json!({"team": "ml"}));

    // Runs, every one but the two upstream rows kfpd cannot keep.
    let runs = upstream.rows("run_details", "UUID").await;
    let references = upstream.rows("resource_references", "ResourceUUID").await;
    let tasks = upstream.rows("tasks", "UUID").await;
    let (_, listed) = server.get("/runs?page_size=100").await;
    let listed: std::collections::BTreeSet<String> = listed["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|run| run["run_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let brought: std::collections::BTreeSet<String> = runs
        .keys()
        .filter(|id| *id != LONG_ID && *id != BROKEN_RUN)
        .cloned()
        .collect();
    assert_eq!(listed, brought);
    for (id, row) in &runs {
        let (status, got) = server.get(&format!("/runs/{id}")).await;
        if id == LONG_ID || id == BROKEN_RUN {
            assert_eq!(status, 404, "{id} should not have been brought: {got}");
            continue;
        }
        assert_eq!(status, 200, "{got}");
        let mut experiment = text(row, "ExperimentUUID");
        if experiment.is_empty() {
            experiment = references
                .get(id)
                .map(|reference| text(reference, "ReferenceUUID"))
                .unwrap_or_default();
        }
        assert_eq!(got["experiment_id"], json!(experiment), "{id}");
        assert_eq!(got["display_name"], json!(text(row, "DisplayName")));
        assert_eq!(
            got["description"],
            omitted_if_empty(text(row, "Description"))
        );
        assert_eq!(
            got["service_account"],
            omitted_if_empty(text(row, "ServiceAccount"))
        );
        for (field, column) in [
            ("created_at", "CreatedAtInSec"),
            ("scheduled_at", "ScheduledAtInSec"),
            ("finished_at", "FinishedAtInSec"),
        ] {
            assert_eq!(got[field], rfc3339(&row[column]), "{id} {field}");
        }
        let archived = text(row, "StorageState").contains("ARCHIVED");
        assert_eq!(
            got["storage_state"],
            json!(if archived { "ARCHIVED" } else { "AVAILABLE" })
        );
        let state = match text(row, "State").as_str() {
            "" => match text(row, "Conditions").as_str() {
                "Succeeded" => "SUCCEEDED",
                "Error" | "Failed" => "FAILED",
                other => panic!("condition {other} not in the fixture's cases"),
            }
            .to_string(),
            state => state.to_string(),
        };
        assert_eq!(got["state"], json!(state), "{id}");
        assert_eq!(
            got["recurring_run_id"],
            omitted_if_empty(text(row, "JobUUID"))
        );
        // Runtime config: the parameters map, else the v1 list, and the root.
        let parameters: Value = match text(row, "RuntimeParameters").as_str() {
            "" | "{}" => {
                let legacy: Value =
                    serde_json::from_str(&text(row, "Parameters")).unwrap_or(json!([]));
                let map: serde_json::Map<String, Value> = legacy
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|item| {
                        (
                            item["name"].as_str().unwrap_or_default().to_string(),
                            item["value"].clone(),
                        )
                    })
                    .collect();
                Value::Object(map)
            }
            json => serde_json::from_str(json).expect("parameters"),
        };
        let root = text(row, "PipelineRoot");
        if parameters.as_object().is_some_and(|map| map.is_empty()) && root.is_empty() {
            assert!(got.get("runtime_config").is_none(), "{id}: {got}");
        } else {
            assert_eq!(got["runtime_config"]["parameters"], parameters, "{id}");
            assert_eq!(
                got["runtime_config"]["pipeline_root"],
                omitted_if_empty(root)
            );
        }
        // Pipeline source: the version reference, else the spec (v1: the workflow).
        let version = text(row, "PipelineVersionId");
        if version.is_empty() {
            let manifest = match text(row, "PipelineSpecManifest").as_str() {
                "" => text(row, "WorkflowSpecManifest"),
                manifest => manifest.to_string(),
            };
            assert_eq!(got["pipeline_spec"], yaml_as_json(&manifest), "{id}");
        } else {
            assert_eq!(
                got["pipeline_version_reference"],
                json!({"pipeline_id": text(row, "PipelineId"), "pipeline_version_id": version})
            );
        }
        // State history as upstream recorded it.
        let history: Vec<Value> =
            serde_json::from_str(&text(row, "StateHistory")).unwrap_or_default();
        let got_history = got["state_history"].as_array().cloned().unwrap_or_default();
        assert_eq!(got_history.len(), history.len(), "{id}: {got}");
        for (entry, expected) in got_history.iter().zip(&history) {
            assert_eq!(entry["state"], expected["State"]);
            assert_eq!(
                entry["update_time"],
                rfc3339(&json!(expected["UpdateTimeInSec"].to_string()))
            );
        }
        // Task details from the tasks rows.
        let own_tasks: Vec<_> = tasks
            .iter()
            .filter(|(_, task)| text(task, "RunUUID") == *id)
            .collect();
        let details = got["run_details"]["task_details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(details.len(), own_tasks.len(), "{id}: {got}");
        for (task_id, task) in own_tasks {
            let detail = details
                .iter()
                .find(|detail| detail["task_id"] == json!(task_id))
                .unwrap_or_else(|| panic!("task {task_id} missing: {got}"));
            assert_eq!(detail["display_name"], omitted_if_empty(text(task, "Name")));
            assert_eq!(detail["create_time"], rfc3339(&task["CreatedTimestamp"]));
            assert_eq!(detail["start_time"], rfc3339(&task["StartedTimestamp"]));
            assert_eq!(detail["end_time"], rfc3339(&task["FinishedTimestamp"]));
            assert_eq!(detail["state"], json!(text(task, "State")));
            let execution: i64 = text(task, "MLMDExecutionID").parse().unwrap_or(0);
            if execution == 0 {
                assert!(detail.get("execution_id").is_none());
            } else {
                assert_eq!(detail["execution_id"], json!(execution.to_string()));
            }
            for (field, column) in [("inputs", "MLMDInputs"), ("outputs", "MLMDOutputs")] {
                let recorded: Value =
                    serde_json::from_str(&text(task, column)).unwrap_or(json!({}));
                let expected: serde_json::Map<String, Value> = recorded
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, list)| {
                        let ids: Vec<Value> = list["artifact_ids"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|id| json!(id.to_string()))
                            .collect();
                        (key, json!({"artifact_ids": ids}))
                    })
                    .collect();
                let shown = detail.get(field).cloned().unwrap_or(json!({}));
                assert_eq!(shown, Value::Object(expected), "{task_id} {field}");
            }
            let children: Vec<Value> =
                serde_json::from_str::<Vec<String>>(&text(task, "ChildrenPods"))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|pod| json!({"pod_name": pod}))
                    .collect();
            assert_eq!(
                detail.get("child_tasks").cloned().unwrap_or(json!([])),
                Value::Array(children)
            );
        }
    }

    // Recurring runs.
    let jobs = upstream.rows("jobs", "UUID").await;
    for (id, row) in &jobs {
        let (status, got) = server.get(&format!("/recurringruns/{id}")).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["display_name"], json!(text(row, "DisplayName")));
        assert_eq!(
            got["description"],
            omitted_if_empty(text(row, "Description"))
        );
        assert_eq!(
            got["service_account"],
            omitted_if_empty(text(row, "ServiceAccount"))
        );
        assert_eq!(got["max_concurrency"], json!(text(row, "MaxConcurrency")));
        assert_eq!(got["experiment_id"], json!(text(row, "ExperimentUUID")));
        assert_eq!(got["created_at"], rfc3339(&row["CreatedAtInSec"]));
        assert_eq!(got["updated_at"], rfc3339(&row["UpdatedAtInSec"]));
        let enabled = matches!(text(row, "Enabled").as_str(), "1" | "true");
        assert_eq!(
            got["mode"],
            json!(if enabled { "ENABLE" } else { "DISABLE" })
        );
        assert_eq!(
            got["status"],
            json!(if enabled { "ENABLED" } else { "DISABLED" })
        );
        let no_catchup = matches!(text(row, "NoCatchup").as_str(), "1" | "true");
        assert_eq!(
            got.get("no_catchup").cloned().unwrap_or(json!(false)),
            json!(no_catchup)
        );
        let schedule = text(row, "Schedule");
        if !schedule.is_empty() {
            let cron = &got["trigger"]["cron_schedule"];
            assert_eq!(cron["cron"], json!(schedule));
            for (field, column) in [
                ("start_time", "CronScheduleStartTimeInSec"),
                ("end_time", "CronScheduleEndTimeInSec"),
            ] {
                match &row[column] {
                    Value::Null => assert!(cron.get(field).is_none(), "{id} {field}"),
                    seconds => assert_eq!(cron[field], rfc3339(seconds), "{id} {field}"),
                }
            }
        } else {
            let periodic = &got["trigger"]["periodic_schedule"];
            assert_eq!(
                periodic["interval_second"],
                json!(text(row, "IntervalSecond"))
            );
            assert_eq!(
                periodic["start_time"],
                rfc3339(&row["PeriodicScheduleStartTimeInSec"])
            );
        }
        let version = text(row, "PipelineVersionId");
        if version.is_empty() {
            assert_eq!(
                got["pipeline_spec"],
                yaml_as_json(&text(row, "PipelineSpecManifest"))
            );
            let parameters: Value =
                serde_json::from_str(&text(row, "RuntimeParameters")).expect("parameters");
            assert_eq!(got["runtime_config"]["parameters"], parameters);
            assert_eq!(
                got["runtime_config"]["pipeline_root"],
                omitted_if_empty(text(row, "PipelineRoot"))
            );
        } else {
            assert_eq!(
                got["pipeline_version_reference"],
                json!({"pipeline_id": text(row, "PipelineId"), "pipeline_version_id": version})
            );
        }
    }

    // Upstream's default experiment is kfpd's: a run without one lands there.
    let (status, created) = server
        .post(
            "/runs",
            &json!({"display_name": "after the switch", "pipeline_spec": common::pipeline_spec("hello.yaml")}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created["experiment_id"],
        "8c1d0a6e-0000-4000-8000-000000000001"
    );
}

/// The runs a recurring run made after adoption (not upstream's).
async fn fired_since_adoption(
    server: &Server,
    recurring_run_id: &str,
    upstream_runs: usize,
) -> Vec<i64> {
    let filter = json!({"predicates": [{"key": "recurring_run_id", "operation": "EQUALS", "string_value": recurring_run_id}]});
    let encoded: String = form_urlencoded(&filter.to_string());
    let (_, listed) = server
        .get(&format!(
            "/runs?page_size=100&sort_by=scheduled_at&filter={encoded}"
        ))
        .await;
    let runs = listed["runs"].as_array().cloned().unwrap_or_default();
    assert!(runs.len() >= upstream_runs, "{listed}");
    runs.iter()
        .skip(upstream_runs)
        .map(|run| {
            let text = run["scheduled_at"].as_str().unwrap_or_default();
            chrono::DateTime::parse_from_rfc3339(text)
                .expect("time")
                .timestamp()
        })
        .collect()
}

fn form_urlencoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The scheduler after the switch: the cron job (catching up) fires every
/// hourly tick after the one upstream fired, never that one again; the
/// periodic one (no catch-up) fires once for all it missed; the disabled one
/// fires nothing.
async fn check_schedules(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cron = fired_since_adoption(server, "9f4b1e30-0000-4000-8000-000000000001", 1).await;
        let periodic =
            fired_since_adoption(server, "9f4b1e30-0000-4000-8000-000000000002", 1).await;
        // Every hourly tick after the fixture's BASE (the one upstream fired) up
        // to now; the hour may turn while the test runs.
        let checked = now();
        let first_tick = base_of_fixture() + 3600;
        let expected: Vec<i64> = (0..)
            .map(|hour| first_tick + hour * 3600)
            .take_while(|tick| *tick <= checked)
            .collect();
        if cron == expected && periodic.len() == 1 {
            assert!(periodic[0] > base_of_fixture(), "{periodic:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cron fired {cron:?} (expected {expected:?}), periodic fired {periodic:?}\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let paused = fired_since_adoption(server, "9f4b1e30-0000-4000-8000-000000000003", 0).await;
    assert!(paused.is_empty(), "{paused:?}");
}

static FIXTURE_BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

/// The BASE the fixture rows were written with in this test process.
fn base_of_fixture() -> i64 {
    *FIXTURE_BASE.get_or_init(base)
}

async fn adopt_and_serve(kind: Kind, sqlite: bool) {
    let _ = base_of_fixture();
    let Some(upstream) = Upstream::create(kind).await else {
        return;
    };
    let target = target_on(&upstream, sqlite).await;
    let dir = tempfile::tempdir().expect("temp dir");

    // A dry run reports what it would bring and what it cannot, and writes nothing.
    let dry = adopt(dir.path(), &target, &upstream.url(), &["--dry-run"]);
    assert!(dry.contains("dry run: nothing written"), "{dry}");
    assert_eq!(counts(&dry, "experiments"), [3, 3, 0, 0, 0], "{dry}");
    assert_eq!(counts(&dry, "run_details"), [7, 5, 0, 0, 2], "{dry}");
    assert_eq!(counts(&dry, "pipelines"), [2, 1, 0, 0, 1], "{dry}");
    assert!(
        dry.contains(&format!("refused run_details {LONG_ID}: UUID")),
        "{dry}"
    );
    assert!(
        dry.contains(&format!(
            "refused run_details {BROKEN_RUN}: RuntimeParameters is not a JSON object"
        )),
        "{dry}"
    );
    assert!(
        dry.contains("refused pipelines 5b7e2f10-0000-4000-8000-000000000002: Status is DELETING"),
        "{dry}"
    );
    let again = adopt(dir.path(), &target, &upstream.url(), &["--dry-run"]);
    assert_eq!(
        counts(&again, "run_details"),
        [7, 5, 0, 0, 2],
        "the dry run wrote marks:\n{again}"
    );

    let report = adopt(dir.path(), &target, &upstream.url(), &[]);
    assert_eq!(counts(&report, "run_details"), [7, 5, 0, 0, 2], "{report}");
    assert_eq!(counts(&report, "jobs"), [3, 3, 0, 0, 0], "{report}");
    assert_eq!(
        counts(&report, "pipeline_versions"),
        [2, 2, 0, 0, 0],
        "{report}"
    );

    // First as adopted (nothing fired yet), then with the scheduler on.
    let with = |scheduler: &str| {
        let mut args: Vec<String> = target.args();
        args.extend(["--scheduler".to_string(), scheduler.to_string()]);
        args
    };
    let args = with("off");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_in(dir, &args);
    compare(&server, &upstream).await;
    let dir = server.stop();
    let args = with("on");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_in(dir, &args);
    check_schedules(&server).await;
    drop(server);
    drop_target(&target, &upstream).await;
    upstream.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_upstream_into_sqlite() {
    adopt_and_serve(Kind::Mysql, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_upstream_into_the_servers_kfpd_database() {
    adopt_and_serve(Kind::Mysql, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upstream_schema_into_the_servers_kfpd_database() {
    adopt_and_serve(Kind::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upstream_schema_into_sqlite() {
    adopt_and_serve(Kind::Postgres, true).await;
}

/// A second pass brings only what changed upstream since the first.
async fn rerun_brings_only_changes(kind: Kind) {
    let _ = base_of_fixture();
    let Some(upstream) = Upstream::create(kind).await else {
        return;
    };
    let target = Target::Sqlite;
    let dir = tempfile::tempdir().expect("temp dir");
    adopt(dir.path(), &target, &upstream.url(), &[]);
    let unchanged = adopt(dir.path(), &target, &upstream.url(), &[]);
    assert_eq!(
        counts(&unchanged, "run_details"),
        [7, 0, 0, 5, 2],
        "{unchanged}"
    );
    assert_eq!(
        counts(&unchanged, "experiments"),
        [3, 0, 0, 3, 0],
        "{unchanged}"
    );
    assert_eq!(counts(&unchanged, "jobs"), [3, 0, 0, 3, 0], "{unchanged}");

    let base = base_of_fixture();
    upstream
        .run(&format!(
            "UPDATE \"experiments\" SET \"Description\" = 'renamed upstream' WHERE \"UUID\" = '8c1d0a6e-0000-4000-8000-000000000003';\n\
             UPDATE \"tasks\" SET \"State\" = 'FAILED' WHERE \"UUID\" = '3e8f6a50-0000-4000-8000-000000000003';\n\
             INSERT INTO \"run_details\" (\"UUID\", \"ExperimentUUID\", \"DisplayName\", \"Name\", \"StorageState\", \"Namespace\", \"ServiceAccount\", \"Description\", \"CreatedAtInSec\", \"ScheduledAtInSec\", \"FinishedAtInSec\", \"Conditions\", \"PipelineId\", \"PipelineName\", \"PipelineRuntimeManifest\", \"WorkflowRuntimeManifest\", \"JobUUID\", \"State\") VALUES ('2d9e7c40-0000-4000-8000-000000000008', '8c1d0a6e-0000-4000-8000-000000000001', 'hourly-hello-6-1', 'hourly-hello-6-1', 'AVAILABLE', '', '', '', {created}, {created}, 0, 'Running', '5b7e2f10-0000-4000-8000-000000000001', '', '', '', '9f4b1e30-0000-4000-8000-000000000001', 'RUNNING');\n",
            created = base + 3601
        ))
        .await;
    let changed = adopt(dir.path(), &target, &upstream.url(), &[]);
    assert_eq!(
        counts(&changed, "experiments"),
        [3, 0, 1, 2, 0],
        "{changed}"
    );
    // The new run, and the run whose task changed.
    assert_eq!(
        counts(&changed, "run_details"),
        [8, 1, 1, 4, 2],
        "{changed}"
    );
    // The cron job's newest run moved its last tick.
    assert_eq!(counts(&changed, "jobs"), [3, 0, 1, 2, 0], "{changed}");

    let server = Server::start_in(dir, &["--scheduler", "off"]);
    let (_, experiment) = server
        .get("/experiments/8c1d0a6e-0000-4000-8000-000000000003")
        .await;
    assert_eq!(experiment["description"], "renamed upstream");
    let (_, run) = server
        .get("/runs/2d9e7c40-0000-4000-8000-000000000008")
        .await;
    // Unfinished upstream, and kfpd's executor does not run it: ended at start.
    assert_eq!(run["state"], "FAILED", "{run}");
    let (_, old) = server
        .get("/runs/2d9e7c40-0000-4000-8000-000000000003")
        .await;
    assert_eq!(
        old["run_details"]["task_details"][0]["state"], "FAILED",
        "{old}"
    );
    drop(server);
    upstream.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_rerun_brings_only_changes() {
    rerun_brings_only_changes(Kind::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rerun_brings_only_changes() {
    rerun_brings_only_changes(Kind::Postgres).await;
}

/// `kfpd adopt` killed while it writes batches: the next pass completes the
/// adoption and nothing is there twice.
async fn resumes_after_a_crash(kind: Kind) {
    let _ = base_of_fixture();
    let Some(upstream) = Upstream::create(kind).await else {
        return;
    };
    const EXTRA: usize = 600;
    let mut script = String::new();
    for index in 0..EXTRA {
        script.push_str(&format!(
            "INSERT INTO \"run_details\" (\"UUID\", \"ExperimentUUID\", \"DisplayName\", \"Name\", \"StorageState\", \"Namespace\", \"ServiceAccount\", \"Description\", \"CreatedAtInSec\", \"ScheduledAtInSec\", \"FinishedAtInSec\", \"Conditions\", \"PipelineId\", \"PipelineName\", \"PipelineRuntimeManifest\", \"WorkflowRuntimeManifest\", \"State\") VALUES ('bulk-{index:05}', '8c1d0a6e-0000-4000-8000-000000000003', 'bulk {index}', 'bulk', 'AVAILABLE', '', '', '', {created}, 0, {created}, 'Succeeded', '', '', '', '', 'SUCCEEDED');\n",
            created = 1_700_000_000 + index as i64
        ));
    }
    upstream.run(&script).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = dir.path().join("kfpd.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .arg("adopt")
        .arg("--from")
        .arg(upstream.url())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--batch-size", "5"])
        .env("KFPD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kfpd adopt");
    // Killed (SIGKILL) once some but not all runs are in.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while Instant::now() < deadline {
        if database.exists() {
            if let Ok(mut conn) =
                AnyConnection::connect(&format!("sqlite://{}?mode=ro", database.display())).await
            {
                if let Ok(row) = sqlx::query("SELECT COUNT(*) FROM runs")
                    .fetch_one(&mut conn)
                    .await
                {
                    seen = row.get::<i64, _>(0);
                }
            }
        }
        if seen > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill kfpd adopt");
    let status = child.wait().expect("wait");
    assert!(seen > 0, "no run was written before the kill");
    assert!(
        !status.success(),
        "kfpd adopt ended before it was killed; raise EXTRA"
    );

    let target = Target::Sqlite;
    let report = adopt(dir.path(), &target, &upstream.url(), &[]);
    let [total, new, _, unchanged, refused] = counts(&report, "run_details");
    assert_eq!(total, 7 + EXTRA);
    assert_eq!(refused, 2);
    assert!(
        unchanged > 0,
        "the killed pass committed nothing:\n{report}"
    );
    assert_eq!(new + unchanged, 5 + EXTRA, "{report}");

    let server = Server::start_in(dir, &["--scheduler", "off"]);
    let mut ids = std::collections::BTreeSet::new();
    let mut token = String::new();
    let mut total_size = 0;
    loop {
        let (_, page) = server
            .get(&format!("/runs?page_size=200&page_token={token}"))
            .await;
        total_size = page["total_size"].as_i64().unwrap_or(total_size);
        for run in page["runs"].as_array().cloned().unwrap_or_default() {
            assert!(
                ids.insert(run["run_id"].as_str().unwrap_or_default().to_string()),
                "a run listed twice"
            );
        }
        token = page["next_page_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(ids.len(), 5 + EXTRA);
    assert_eq!(
        total_size as usize,
        5 + EXTRA,
        "run counts off after the crash"
    );
    let (_, experiment_runs) = server
        .get("/runs?experiment_id=8c1d0a6e-0000-4000-8000-000000000003&page_size=1")
        .await;
    assert_eq!(experiment_runs["total_size"], json!(EXTRA + 1));
    drop(server);
    upstream.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_adoption_resumes_after_a_crash() {
    resumes_after_a_crash(Kind::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_adoption_resumes_after_a_crash() {
    resumes_after_a_crash(Kind::Postgres).await;
}

/// The object upstream's workflow recorded for a node is read from the same
/// bucket through the artifact read endpoint, as upstream serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopted_runs_read_their_artifacts_from_the_same_bucket() {
    use base64::Engine as _;
    let _ = base_of_fixture();
    let Some(moto) = moto::moto() else {
        return;
    };
    let Some(upstream) = Upstream::create(Kind::Mysql).await else {
        return;
    };
    let bucket = moto::unique_bucket("adopt");
    let objects =
        kfpd_artifacts::ArtifactStore::open(moto::s3_options(&moto.endpoint, &bucket, true))
            .await
            .expect("open the bucket");
    let content = b"log of the echo task, archived by upstream\n".to_vec();
    let local = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(local.path(), &content).expect("write");
    let key = "artifacts/hello-world-abc12/echo/main.log";
    objects
        .upload(local.path(), &format!("minio://{bucket}/{key}"))
        .await
        .expect("upload");

    let address = moto.endpoint.trim_start_matches("http://").to_string();
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let env = [
        ("OBJECTSTORECONFIG_HOST", host),
        ("OBJECTSTORECONFIG_PORT", port),
        ("OBJECTSTORECONFIG_SECURE", "false"),
        ("OBJECTSTORECONFIG_BUCKETNAME", bucket.as_str()),
        ("OBJECTSTORECONFIG_ACCESSKEY", "kfpd-test"),
        ("OBJECTSTORECONFIG_SECRETACCESSKEY", "kfpd-test-secret"),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    adopt_with_env(dir.path(), &Target::Sqlite, &upstream.url(), &[], &env);
    let server = Server::start_full_in(dir, &["--scheduler", "off"], &env);
    let run = "2d9e7c40-0000-4000-8000-000000000001";
    for version in ["v1beta1", "v2beta1"] {
        let url = format!(
            "{}/apis/{version}/runs/{run}/nodes/hello-world-abc12-1111/artifacts/main-logs:read",
            server.base
        );
        let response = server.client.get(&url).send().await.expect("GET");
        let (status, body) = common::read(response).await;
        assert_eq!(status, 200, "{url}: {body}");
        let data = base64::engine::general_purpose::STANDARD
            .decode(body["data"].as_str().expect("data"))
            .expect("base64");
        assert_eq!(data, content);
    }
    let (status, listed) = server.get(&format!("/artifacts?run_id={run}")).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["artifacts"][0]["uri"],
        json!(format!("s3://{bucket}/{key}"))
    );
    assert_eq!(listed["artifacts"][0]["name"], "main-logs");
    drop(server);
    upstream.drop_database().await;
}

/// A run row as upstream writes one, in experiment 1, pipeline 1.
fn upstream_run(id: &str, name: &str, state: &str, created: i64, finished: i64) -> String {
    format!(
        "INSERT INTO \"run_details\" (\"UUID\", \"ExperimentUUID\", \"DisplayName\", \"Name\", \"StorageState\", \"Namespace\", \"ServiceAccount\", \"Description\", \"CreatedAtInSec\", \"ScheduledAtInSec\", \"FinishedAtInSec\", \"Conditions\", \"PipelineId\", \"PipelineName\", \"PipelineRuntimeManifest\", \"WorkflowRuntimeManifest\", \"State\", \"StateHistory\") VALUES ('{id}', '8c1d0a6e-0000-4000-8000-000000000001', '{name}', '{name}', 'AVAILABLE', '', '', '', {created}, {created}, {finished}, '', '5b7e2f10-0000-4000-8000-000000000001', '', '', '', '{state}', '[{{\"UpdateTimeInSec\":{created},\"State\":\"{state}\"}}]');\n"
    )
}

/// What the API says about a run in kfpd, as JSON.
async fn run_of(server: &Server, id: &str) -> (u16, Value) {
    server.get(&format!("/runs/{id}")).await
}

/// Rows deleted in upstream's UI between passes leave kfpd at the next pass:
/// only rows kfpd adopted, never rows made in kfpd itself, and a dry run names
/// what it would delete.
async fn deletions_propagate(kind: Kind, sqlite: bool) {
    let _ = base_of_fixture();
    let Some(upstream) = Upstream::create(kind).await else {
        return;
    };
    let target = target_on(&upstream, sqlite).await;
    let dir = tempfile::tempdir().expect("temp dir");
    adopt(dir.path(), &target, &upstream.url(), &[]);

    // Made in kfpd after the first pass: an experiment and a version of an
    // adopted pipeline.
    let args = target.args();
    let mut serve_args: Vec<&str> = args.iter().map(String::as_str).collect();
    serve_args.extend(["--scheduler", "off"]);
    let server = Server::start_in(dir, &serve_args);
    let (status, own) = server
        .post("/experiments", &json!({"display_name": "made in kfpd"}))
        .await;
    assert_eq!(status, 200, "{own}");
    let bytes = std::fs::read(common::pipeline("hello.yaml")).expect("pipeline");
    let (status, version) = server
        .upload(
            "_version?pipelineid=5b7e2f10-0000-4000-8000-000000000001&name=kfpd-own-version",
            "hello.yaml",
            bytes,
        )
        .await;
    assert_eq!(status, 200, "{version}");
    // kfpd's own recurring run (disabled) in the adopted experiment 3.
    let (status, recurring) = server
        .post(
            "/recurringruns",
            &json!({
                "display_name": "made in kfpd",
                "experiment_id": "8c1d0a6e-0000-4000-8000-000000000003",
                "pipeline_spec": common::pipeline_spec("hello.yaml"),
                "max_concurrency": 1,
                "trigger": {"periodic_schedule": {"interval_second": 3600}},
            }),
        )
        .await;
    assert_eq!(status, 200, "{recurring}");
    let dir = server.stop();

    // Deleted upstream as upstream's API deletes them.
    upstream
        .run(
            "DELETE FROM \"tasks\" WHERE \"RunUUID\" = '2d9e7c40-0000-4000-8000-000000000002';\n\
             DELETE FROM \"resource_references\" WHERE \"ResourceUUID\" IN ('2d9e7c40-0000-4000-8000-000000000002', '9f4b1e30-0000-4000-8000-000000000003', '8c1d0a6e-0000-4000-8000-000000000002', '8c1d0a6e-0000-4000-8000-000000000003');\n\
             DELETE FROM \"run_details\" WHERE \"UUID\" = '2d9e7c40-0000-4000-8000-000000000002';\n\
             DELETE FROM \"jobs\" WHERE \"UUID\" = '9f4b1e30-0000-4000-8000-000000000003';\n\
             DELETE FROM \"experiments\" WHERE \"UUID\" IN ('8c1d0a6e-0000-4000-8000-000000000002', '8c1d0a6e-0000-4000-8000-000000000003');\n\
             DELETE FROM \"pipeline_version_tags\" WHERE \"PipelineVersionId\" LIKE '6a3c9d20-%';\n\
             DELETE FROM \"pipeline_versions\" WHERE \"PipelineId\" = '5b7e2f10-0000-4000-8000-000000000001';\n\
             DELETE FROM \"pipeline_tags\" WHERE \"PipelineId\" = '5b7e2f10-0000-4000-8000-000000000001';\n\
             DELETE FROM \"pipelines\" WHERE \"UUID\" = '5b7e2f10-0000-4000-8000-000000000001';\n",
        )
        .await;

    let check = |report: &str, verb: &str| {
        assert_eq!(deleted(report, "run_details"), 1, "{report}");
        assert_eq!(deleted(report, "jobs"), 1, "{report}");
        assert_eq!(deleted(report, "experiments"), 1, "{report}");
        assert_eq!(deleted(report, "pipeline_versions"), 2, "{report}");
        assert_eq!(deleted(report, "pipelines"), 0, "{report}");
        for line in [
            format!("{verb} run_details 2d9e7c40-0000-4000-8000-000000000002 named \"v1 run\": deleted upstream"),
            format!("{verb} jobs 9f4b1e30-0000-4000-8000-000000000003 named \"paused nightly\": deleted upstream"),
            format!("{verb} experiments 8c1d0a6e-0000-4000-8000-000000000002 named \"old results\": deleted upstream"),
            "kept experiments 8c1d0a6e-0000-4000-8000-000000000003 named \"legacy v1\": deleted upstream, but 1 recurring run(s) made in kfpd depend on it".to_string(),
            format!("{verb} pipeline_versions 6a3c9d20-0000-4000-8000-000000000002 named "),
            "kept pipelines 5b7e2f10-0000-4000-8000-000000000001 named ".to_string(),
            "deleted upstream, but 1 pipeline version(s) made in kfpd depend on it".to_string(),
        ] {
            assert!(report.contains(&line), "no {line:?} in\n{report}");
        }
    };
    let dry = adopt(dir.path(), &target, &upstream.url(), &["--dry-run"]);
    check(&dry, "would delete");
    let dry = adopt(dir.path(), &target, &upstream.url(), &["--dry-run"]);
    check(&dry, "would delete");
    let report = adopt(dir.path(), &target, &upstream.url(), &["--batch-size", "1"]);
    check(&report, "deleted");
    assert_eq!(counts(&report, "run_details"), [6, 0, 0, 4, 2], "{report}");
    let again = adopt(dir.path(), &target, &upstream.url(), &[]);
    assert_eq!(deleted(&again, "run_details"), 0, "{again}");
    assert_eq!(deleted(&again, "pipeline_versions"), 0, "{again}");
    assert!(
        !again.contains("deleted run_details"),
        "deleted twice:\n{again}"
    );
    assert!(again.contains("kept pipelines 5b7e2f10"), "{again}");

    let server = Server::start_in(dir, &serve_args);
    for path in [
        "/runs/2d9e7c40-0000-4000-8000-000000000002",
        "/recurringruns/9f4b1e30-0000-4000-8000-000000000003",
        "/experiments/8c1d0a6e-0000-4000-8000-000000000002",
        "/pipelines/5b7e2f10-0000-4000-8000-000000000001/versions/6a3c9d20-0000-4000-8000-000000000001",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    // What kfpd made stays, and so do the adopted rows upstream kept.
    let (status, _) = server
        .get(&format!(
            "/experiments/{}",
            own["experiment_id"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(status, 200);
    let (status, kept) = server
        .get("/experiments/8c1d0a6e-0000-4000-8000-000000000003")
        .await;
    assert_eq!(status, 200, "{kept}");
    // Upstream keeps the runs of a deleted experiment; so does kfpd.
    let (status, run) = run_of(&server, "2d9e7c40-0000-4000-8000-000000000003").await;
    assert_eq!(status, 200, "{run}");
    let (_, versions) = server
        .get("/pipelines/5b7e2f10-0000-4000-8000-000000000001/versions")
        .await;
    let names: Vec<&str> = versions["pipeline_versions"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|version| version["display_name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["kfpd-own-version"], "{versions}");
    let (status, run) = run_of(&server, "2d9e7c40-0000-4000-8000-000000000001").await;
    assert_eq!(status, 200, "{run}");
    // The run counts moved with the deleted run.
    let (_, page) = server.get("/runs?page_size=1").await;
    assert_eq!(page["total_size"], json!(4), "{page}");
    drop(server);
    drop_target(&target, &upstream).await;
    upstream.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_deletions_upstream_leave_the_servers_kfpd_database() {
    deletions_propagate(Kind::Mysql, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deletions_upstream_leave_the_servers_kfpd_database() {
    deletions_propagate(Kind::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_deletions_upstream_leave_sqlite() {
    deletions_propagate(Kind::Mysql, true).await;
}

/// Runs unfinished upstream: a later pass keeps bringing what upstream records
/// while it runs them; `kfpd serve --adopt-from` with its own executor ends
/// them FAILED saying why instead of running them again or leaving them
/// RUNNING; upstream's final state, when a later pass finds one, replaces that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_adopted_runs_end_when_kfpd_serves() {
    let base = base_of_fixture();
    let Some(upstream) = Upstream::create(Kind::Mysql).await else {
        return;
    };
    const RUNNING: &str = "2d9e7c40-0000-4000-8000-000000000011";
    const PENDING: &str = "2d9e7c40-0000-4000-8000-000000000012";
    upstream
        .run(&format!(
            "{}{}",
            upstream_run(RUNNING, "still running", "RUNNING", base - 600, 0),
            upstream_run(PENDING, "still pending", "PENDING", base - 300, 0)
        ))
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let target = Target::Sqlite;
    let first = adopt(dir.path(), &target, &upstream.url(), &[]);
    assert!(
        first.contains("2 run(s) brought were not finished upstream"),
        "{first}"
    );

    // Upstream moves on: the pending run starts.
    upstream
        .run(&format!(
            "UPDATE \"run_details\" SET \"State\" = 'RUNNING' WHERE \"UUID\" = '{PENDING}';\n"
        ))
        .await;
    let second = adopt(dir.path(), &target, &upstream.url(), &[]);
    assert_eq!(counts(&second, "run_details"), [9, 0, 1, 6, 2], "{second}");
    let database = dir.path().join("kfpd.db");
    let mut conn = AnyConnection::connect(&format!("sqlite://{}?mode=ro", database.display()))
        .await
        .expect("kfpd database");
    let state: String = sqlx::query(&format!("SELECT state FROM runs WHERE uuid = '{PENDING}'"))
        .fetch_one(&mut conn)
        .await
        .expect("adopted run")
        .get(0);
    assert_eq!(state, "RUNNING");
    drop(conn);

    let url = upstream.url();
    let serve_args = ["--scheduler", "off", "--adopt-from", url.as_str()];
    let server = Server::start_in(dir, &serve_args);
    for (id, was) in [(RUNNING, "RUNNING"), (PENDING, "RUNNING")] {
        let (status, run) = run_of(&server, id).await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["state"], "FAILED", "{run}");
        let message = run["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("adopted from upstream KFP while {was}")),
            "{run}"
        );
    }
    // Not started again by kfpd's executor meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, run) = run_of(&server, RUNNING).await;
    assert_eq!(run["state"], "FAILED", "{run}");
    assert!(
        run["run_details"]["task_details"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "kfpd ran an adopted run: {run}"
    );
    let dir = server.stop();

    // Upstream recorded the end after all: the next start's pass brings it.
    upstream
        .run(&format!(
            "UPDATE \"run_details\" SET \"State\" = 'SUCCEEDED', \"FinishedAtInSec\" = {} WHERE \"UUID\" = '{RUNNING}';\n",
            base - 60
        ))
        .await;
    let server = Server::start_in(dir, &serve_args);
    let (_, run) = run_of(&server, RUNNING).await;
    assert_eq!(run["state"], "SUCCEEDED", "{run}");
    let (_, run) = run_of(&server, PENDING).await;
    assert_eq!(run["state"], "FAILED", "{run}");
    drop(server);
    upstream.drop_database().await;
}
