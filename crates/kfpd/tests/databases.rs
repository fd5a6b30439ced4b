//! The same REST flow through `kfpd serve` on PostgreSQL and on MySQL (MariaDB):
//! the binary creates its database, migrates it, and serves every resource.

mod common;

use common::Server;
use serde_json::json;

async fn full_flow(kind: &str) {
    let Some(url) = common::database_url(kind).await else {
        return;
    };
    let server = Server::start_with(&["--database-url", &url]);
    let (status, listed) = server.get("/experiments").await;
    assert_eq!(status, 200, "{listed} {}", server.stderr());
    assert_eq!(listed["experiments"][0]["display_name"], "Default");

    let pipeline = server.upload_pipeline("add.yaml", "adder").await;
    let pipeline_id = pipeline["pipeline_id"].as_str().unwrap();
    let (status, body) = server.upload("?name=adder", "a.yaml", b"x".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let yaml = std::fs::read(common::pipeline("hello.yaml")).unwrap();
    let (status, _) = server.upload("?name=adder", "hello.yaml", yaml).await;
    assert_eq!(status, 409, "duplicate names are refused by the database");

    let (_, experiment) = server
        .post("/experiments", &json!({"display_name": "db-flow"}))
        .await;
    let experiment_id = experiment["experiment_id"].as_str().unwrap();
    for index in 0..3 {
        let (status, run) = server
            .post(
                "/runs",
                &json!({
                    "display_name": format!("run {index}"),
                    "experiment_id": experiment_id,
                    "pipeline_version_reference": {"pipeline_id": pipeline_id},
                    "runtime_config": {"parameters": {"a": index, "b": 2}},
                }),
            )
            .await;
        assert_eq!(status, 200, "{run}");
    }
    let (status, page) = server
        .get(&format!(
            "/runs?experiment_id={experiment_id}&page_size=2&sort_by=created_at%20desc"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total_size"], 3);
    let token = page["next_page_token"].as_str().unwrap().to_string();
    let (status, rest) = server
        .get(&format!(
            "/runs?page_token={token}&experiment_id={experiment_id}&page_size=2"
        ))
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["runs"].as_array().unwrap().len(), 1);

    let (status, _) = server
        .post(&format!("/experiments/{experiment_id}:archive"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let run_id = page["runs"][0]["run_id"].as_str().unwrap();
    let (_, run) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(run["storage_state"], "ARCHIVED");
    let (status, _) = server
        .post(&format!("/runs/{run_id}:unarchive"), &json!({}))
        .await;
    assert_eq!(
        status, 400,
        "a run of an archived experiment stays archived"
    );

    let (status, recurring) = server
        .post(
            "/recurringruns",
            &json!({
                "display_name": "hourly",
                "experiment_id": experiment_id,
                "pipeline_version_reference": {"pipeline_id": pipeline_id},
                "runtime_config": {"parameters": {"a": 1, "b": 2}},
                "max_concurrency": 1,
                "trigger": {"periodic_schedule": {"interval_second": 3600}},
            }),
        )
        .await;
    assert_eq!(status, 200, "{recurring}");
    assert_eq!(
        recurring["status"], "DISABLED",
        "mode defaults to disabled, as upstream"
    );

    drop(server);
    kfpd_store::sql::drop_database(&url)
        .await
        .expect("drop test database");
}

#[tokio::test]
async fn postgres_full_flow() {
    full_flow("postgres").await;
}

#[tokio::test]
async fn mysql_full_flow() {
    full_flow("mysql").await;
}
