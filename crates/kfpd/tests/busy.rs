//! A SQLite database another process keeps locked: writes wait up to
//! `--db-busy-timeout`, then answer 503 with a message instead of a 500.

mod common;

use common::Server;
use serde_json::json;
use sqlx::{Connection, Executor};

#[tokio::test]
async fn a_write_locked_out_past_the_busy_timeout_is_503() {
    let server = Server::start_with(&["--db-busy-timeout", "300ms"]);
    let (status, body) = server
        .post("/experiments", &json!({"display_name": "before"}))
        .await;
    assert_eq!(status, 200, "{body}");

    sqlx::any::install_default_drivers();
    let file = server.dir.path().join("kfpd.db");
    let url = format!("sqlite://{}", file.display());
    let mut holder = sqlx::AnyConnection::connect(&url).await.expect("holder");
    holder
        .execute("BEGIN IMMEDIATE")
        .await
        .expect("take the write lock");

    let (status, body) = server
        .post("/experiments", &json!({"display_name": "locked out"}))
        .await;
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("database busy"), "{body}");
    assert!(message.contains("busy timeout"), "{body}");
    assert_eq!(body["code"], 14, "{body}");

    holder.execute("ROLLBACK").await.expect("release the lock");
    let (status, body) = server
        .post("/experiments", &json!({"display_name": "after"}))
        .await;
    assert_eq!(status, 200, "{body}");
}
