//! REST behaviour of `kfpd serve` through the real binary on loopback.

mod common;

use std::time::Duration;

use common::{run_to_exit, Server};
use serde_json::{json, Value};

fn spec_of(relative: &str) -> Value {
    common::pipeline_spec(relative)
}

#[tokio::test]
async fn healthz_on_both_versions() {
    let server = Server::start();
    let (status, v2) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(v2["multi_user"], false);
    assert_eq!(v2["pipeline_store"], "database");
    let response = server
        .client
        .get(format!("{}/apis/v1beta1/healthz", server.base))
        .send()
        .await
        .unwrap();
    let (status, v1) = common::read(response).await;
    assert_eq!(status, 200);
    assert_eq!(v1["multi_user"], false);
    assert!(v1.get("pipeline_store").is_none());
}

#[tokio::test]
async fn transport_errors_are_json_with_upstream_codes() {
    let server = Server::start();
    let (status, body) = server
        .post("/experiments", &json!({"display_name": "x", "surprise": 1}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 3);
    assert!(body["message"].as_str().unwrap().contains("surprise"));
    assert_eq!(
        body["details"][0]["@type"],
        "type.googleapis.com/google.rpc.Status"
    );

    let malformed = server
        .client
        .post(server.url("/experiments"))
        .header("content-type", "application/json")
        .body("{\"display_name\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(malformed).await;
    assert_eq!((status, body["code"].clone()), (400, json!(3)));

    let wrong_type = server
        .client
        .post(server.url("/experiments"))
        .header("content-type", "text/plain")
        .body("{\"display_name\": \"x\"}")
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(wrong_type).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("content type"));

    let (status, body) = server.get("/no/such/route").await;
    assert_eq!((status, body["code"].clone()), (404, json!(5)));
    let put = server
        .client
        .put(server.url("/experiments"))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(put).await;
    assert_eq!((status, body["code"].clone()), (501, json!(12)));

    let (status, body) = server.post("/experiments/abc:explode", &json!({})).await;
    assert_eq!(status, 404, "{body}");
}

/// Sends only the head of a request that declares `length` body bytes and returns
/// the server's answer: the server must reply before reading the body.
async fn answer_to_declared_length(
    server: &Server,
    path: &str,
    content_type: &str,
    length: usize,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /apis/v2beta1{path} HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer before the body is sent")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).to_string()
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = Server::start();
    let too_big = 33 * 1024 * 1024;
    let answer = answer_to_declared_length(
        &server,
        "/pipelines/upload?name=big",
        "multipart/form-data; boundary=XYZ",
        too_big,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("error_message"),
        "upload errors keep the upload shape: {answer}"
    );
    let answer =
        answer_to_declared_length(&server, "/experiments", "application/json", too_big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":8"), "{answer}");
}

#[tokio::test]
async fn experiments_default_duplicates_and_archive() {
    let server = Server::start();
    let (_, listed) = server.get("/experiments").await;
    assert_eq!(listed["experiments"][0]["display_name"], "Default");
    let default_id = listed["experiments"][0]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = server.delete(&format!("/experiments/{default_id}")).await;
    assert_eq!(status, 409, "{body}");

    let (status, created) = server
        .post(
            "/experiments",
            &json!({"display_name": "team", "description": "d"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["storage_state"], "AVAILABLE");
    assert_eq!(created["last_run_created_at"], "1970-01-01T00:00:00Z");
    let (status, body) = server
        .post("/experiments", &json!({"display_name": "team"}))
        .await;
    assert_eq!(status, 409);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Please specify a new name"));
    let (status, _) = server
        .post("/experiments", &json!({"description": "no name"}))
        .await;
    assert_eq!(status, 400);

    let id = created["experiment_id"].as_str().unwrap();
    let (status, _) = server
        .post(&format!("/experiments/{id}:archive"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, got) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(got["storage_state"], "ARCHIVED");
    let (status, _) = server
        .post(&format!("/experiments/{id}:unarchive"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = server.delete(&format!("/experiments/{id}")).await;
    assert_eq!(status, 200);
    let (status, body) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!((status, body["code"].clone()), (404, json!(5)));
}

#[tokio::test]
async fn sdk_style_filter_and_paging() {
    let server = Server::start();
    for index in 0..7 {
        let (status, _) = server
            .post(
                "/experiments",
                &json!({"display_name": format!("exp-{index}")}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let filter = r#"{"predicates":[{"operation":1,"key":"display_name","stringValue":"exp-3"}]}"#;
    let encoded: String = url_encode(filter);
    let (status, found) = server
        .get(&format!(
            "/experiments?filter={encoded}&namespace=&page_token=&sort_by="
        ))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["experiments"].as_array().unwrap().len(), 1);
    assert_eq!(found["total_size"], 1);

    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let path = format!("/experiments?page_size=3&sort_by=name%20desc&page_token={token}");
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total_size"], 8);
        for experiment in page["experiments"].as_array().unwrap() {
            names.push(experiment["display_name"].as_str().unwrap().to_string());
        }
        match page["next_page_token"].as_str() {
            Some(next) => token = url_encode(next),
            None => break,
        }
    }
    let mut expected = names.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(names, expected);
    assert_eq!(names.len(), 8);

    for bad in [
        "/experiments?sort_by=height",
        "/experiments?sort_by=name%20sideways",
        "/experiments?page_token=garbage",
        "/experiments?filter=%7Bnope",
        "/experiments?page_size=-1",
        "/experiments?filter=%7B%22predicates%22%3A%5B%7B%22operation%22%3A%22IN%22%2C%22key%22%3A%22name%22%2C%22string_value%22%3A%22a%22%7D%5D%7D",
    ] {
        let (status, body) = server.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn runs_validate_parameters_and_keep_state_honest() {
    let server = Server::start();
    let spec = spec_of("add.yaml");
    let required: Vec<String> = spec["root"]["inputDefinitions"]["parameters"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, definition)| {
            definition.get("defaultValue").is_none() && definition.get("isOptional").is_none()
        })
        .map(|(name, _)| name.clone())
        .collect();
    assert!(
        !required.is_empty(),
        "add_numbers should have required inputs"
    );

    let (status, body) = server
        .post(
            "/runs",
            &json!({"display_name": "missing", "pipeline_spec": spec}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(&required[0]),
        "{body}"
    );

    let mut parameters = serde_json::Map::new();
    for name in &required {
        parameters.insert(name.clone(), json!("not a number"));
    }
    let (status, body) = server
        .post(
            "/runs",
            &json!({"display_name": "wrong type", "pipeline_spec": spec, "runtime_config": {"parameters": parameters}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    let mut parameters = serde_json::Map::new();
    for name in &required {
        parameters.insert(name.clone(), json!(3));
    }
    let (status, run) = server
        .post(
            "/runs",
            &json!({"display_name": "good", "pipeline_spec": spec, "runtime_config": {"parameters": parameters}}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["state"], "PENDING");
    assert_eq!(run["state_history"][0]["state"], "PENDING");
    assert_eq!(run["finished_at"], "1970-01-01T00:00:00Z");
    assert_eq!(run["service_account"], "pipeline-runner");
    assert_eq!(run["runtime_config"]["parameters"][&required[0]], 3);
    assert_eq!(run["pipeline_spec"]["pipelineInfo"], spec["pipelineInfo"]);
    let run_id = run["run_id"].as_str().unwrap();

    // The default experiment received it and remembers when.
    let experiment_id = run["experiment_id"].as_str().unwrap();
    let (_, experiment) = server.get(&format!("/experiments/{experiment_id}")).await;
    assert_eq!(experiment["display_name"], "Default");
    assert_ne!(experiment["last_run_created_at"], "1970-01-01T00:00:00Z");

    // Retry needs a finished run; terminate ends a run that never started.
    let (status, body) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = server
        .post(&format!("/runs/{run_id}:terminate"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, terminated) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(terminated["state"], "CANCELED");
    assert_ne!(terminated["finished_at"], "1970-01-01T00:00:00Z");
    let (status, _) = server
        .post(&format!("/runs/{run_id}:terminate"), &json!({}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .post(&format!("/runs/{run_id}:retry"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, retried) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(retried["state"], "PENDING");
    let states: Vec<&str> = retried["state_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["PENDING", "CANCELED", "PENDING"]);

    let (status, body) = server
        .post(
            "/runs",
            &json!({"display_name": "orphan", "pipeline_spec": spec, "experiment_id": "nope"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = server
        .post(
            "/runs",
            &json!({"display_name": "x", "plugins_output": {"p": {}}, "pipeline_spec": spec}),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn runs_from_versions_and_lists() {
    let server = Server::start();
    let pipeline = server.upload_pipeline("hello.yaml", "hello").await;
    let pipeline_id = pipeline["pipeline_id"].as_str().unwrap();
    let (_, versions) = server
        .get(&format!("/pipelines/{pipeline_id}/versions"))
        .await;
    let version_id = versions["pipeline_versions"][0]["pipeline_version_id"]
        .as_str()
        .unwrap();

    let (status, experiment) = server
        .post("/experiments", &json!({"display_name": "e"}))
        .await;
    assert_eq!(status, 200);
    let experiment_id = experiment["experiment_id"].as_str().unwrap();
    for index in 0..5 {
        let reference = if index % 2 == 0 {
            json!({"pipeline_id": pipeline_id, "pipeline_version_id": version_id})
        } else {
            json!({"pipeline_id": pipeline_id})
        };
        let (status, run) = server
            .post(
                "/runs",
                &json!({"display_name": format!("r{index}"), "experiment_id": experiment_id, "pipeline_version_reference": reference}),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(
            run["pipeline_version_reference"]["pipeline_version_id"],
            version_id
        );
        assert!(run.get("pipeline_spec").is_none());
    }
    let (_, listed) = server
        .get(&format!(
            "/runs?experiment_id={experiment_id}&page_size=2&sort_by=name%20desc"
        ))
        .await;
    assert_eq!(listed["total_size"], 5);
    assert_eq!(listed["runs"][0]["display_name"], "r4");
    assert!(listed["next_page_token"].is_string());
    let (status, body) = server
        .post(
            "/runs",
            &json!({"display_name": "bad", "pipeline_version_reference": {"pipeline_id": "other", "pipeline_version_id": version_id}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Deleting the version keeps runs readable (the spec is stored with the run).
    let (status, _) = server
        .delete(&format!("/pipelines/{pipeline_id}/versions/{version_id}"))
        .await;
    assert_eq!(status, 200);
    let run_id = listed["runs"][0]["run_id"].as_str().unwrap();
    let (status, _) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(status, 200);
    let (status, _) = server.delete(&format!("/runs/{run_id}")).await;
    assert_eq!(status, 200);
    let (status, _) = server.get(&format!("/runs/{run_id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn recurring_runs_validate_like_upstream() {
    let server = Server::start();
    let spec = spec_of("hello.yaml");
    let base = |trigger: Value, concurrency: i64| {
        json!({
            "display_name": "nightly",
            "pipeline_spec": spec,
            "max_concurrency": concurrency,
            "trigger": trigger,
            "mode": "ENABLE",
        })
    };
    let (status, body) = server
        .post(
            "/recurringruns",
            &base(json!({"cron_schedule": {"cron": "*/5 * * * *"}}), 1),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("0 */5 * * * *"),
        "{body}"
    );
    let (status, _) = server
        .post(
            "/recurringruns",
            &base(json!({"periodic_schedule": {"interval_second": 0}}), 1),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .post(
            "/recurringruns",
            &base(json!({"periodic_schedule": {"interval_second": 60}}), 11),
        )
        .await;
    assert_eq!(status, 400);

    let (status, created) = server
        .post(
            "/recurringruns",
            &base(json!({"cron_schedule": {"cron": "0 0 * * * *", "start_time": "2030-01-01T00:00:00Z"}}), 2),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "ENABLED");
    assert_eq!(created["mode"], "ENABLE");
    assert_eq!(created["max_concurrency"], "2");
    assert_eq!(created["namespace"], "kubeflow");
    assert_eq!(
        created["trigger"]["cron_schedule"]["start_time"],
        "2030-01-01T00:00:00Z"
    );
    let id = created["recurring_run_id"].as_str().unwrap();
    let (status, _) = server
        .post(&format!("/recurringruns/{id}:disable"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, got) = server.get(&format!("/recurringruns/{id}")).await;
    assert_eq!(got["status"], "DISABLED");
    let (_, listed) = server.get("/recurringruns").await;
    assert_eq!(listed["recurringRuns"].as_array().unwrap().len(), 1);
    assert!(listed.get("recurring_runs").is_none());
    let (status, _) = server.delete(&format!("/recurringruns/{id}")).await;
    assert_eq!(status, 200);
    let (status, _) = server.get(&format!("/recurringruns/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn pipelines_tags_update_and_delete() {
    let server = Server::start();
    let (status, pipeline) = server
        .upload(
            "?name=tagged&tags=%7B%22team%22%3A%22ml%22%7D",
            "p.yaml",
            std::fs::read(common::pipeline("hello.yaml")).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{pipeline}");
    assert_eq!(pipeline["tags"]["team"], "ml");
    let id = pipeline["pipeline_id"].as_str().unwrap();
    let (status, body) = server
        .upload(
            "?name=bad-tags&tags=%7Bnope",
            "p.yaml",
            std::fs::read(common::pipeline("hello.yaml")).unwrap(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error_message"].as_str().unwrap().contains("tags"));

    let patch = |body: Value| {
        let request = server
            .client
            .patch(server.url(&format!("/pipelines/{id}")))
            .json(&body);
        async move { common::read(request.send().await.unwrap()).await }
    };
    let (status, updated) =
        patch(json!({"display_name": "Tagged", "tags": {"team": "data", "tier": "1"}})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["tags"], json!({"team": "data", "tier": "1"}));
    let (_, kept) = patch(json!({"display_name": "Renamed"})).await;
    assert_eq!(kept["tags"]["tier"], "1");
    let (_, cleared) = patch(json!({"tags": {}})).await;
    assert!(cleared.get("tags").is_none(), "{cleared}");
    assert_eq!(cleared["display_name"], "Renamed");
    let (status, _) = patch(json!({"tags": {"a.b": "x"}})).await;
    assert_eq!(status, 400);

    let (status, by_name) = server.get("/pipelines/names/tagged").await;
    assert_eq!(status, 200);
    assert_eq!(by_name["pipeline_id"], id);
    let (status, body) = server.delete(&format!("/pipelines/{id}")).await;
    assert_eq!(
        status, 400,
        "a pipeline with versions is kept without cascade: {body}"
    );
    let response = server
        .client
        .delete(server.url(&format!("/pipelines/{id}?cascade=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, _) = server.get(&format!("/pipelines/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn concurrent_duplicate_uploads_give_one_pipeline() {
    let server = std::sync::Arc::new(Server::start());
    let yaml = std::fs::read(common::pipeline("hello.yaml")).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let server = server.clone();
        let yaml = yaml.clone();
        tasks.push(tokio::spawn(async move {
            server.upload("?name=same", "p.yaml", yaml).await.0
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let server = Server::start();
    let (_, experiment) = server
        .post("/experiments", &json!({"display_name": "kept"}))
        .await;
    let (_, before) = server.get("/experiments?sort_by=created_at").await;
    let dir = server.stop();
    let server = Server::start_in(dir, &[]);
    let (_, after) = server.get("/experiments?sort_by=created_at").await;
    assert_eq!(before, after);
    let id = experiment["experiment_id"].as_str().unwrap();
    let (status, _) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(status, 200);
}

#[test]
fn unreachable_database_is_retried_then_reported() {
    let outcome = run_to_exit(
        &[
            "--database-url",
            "postgres://postgres@127.0.0.1:1/kfpd",
            "--db-init-timeout",
            "2s",
        ],
        Duration::from_secs(30),
    );
    let (success, stderr) = outcome.expect("kfpd should give up after its init timeout");
    assert!(!success);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("not reachable"), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "a retry should be logged: {stderr}"
    );
}

#[tokio::test]
async fn wrong_credentials_fail_fast() {
    let Some(url) = common::database_url("mysql").await else {
        return;
    };
    let address = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    let bad = format!("mysql://kfpd_no_such_user:secret@{address}/kfpd");
    let outcome = run_to_exit(
        &["--database-url", &bad, "--db-init-timeout", "60s"],
        Duration::from_secs(20),
    );
    let (success, stderr) = outcome.expect("wrong credentials must not be retried for a minute");
    assert!(!success);
    assert!(stderr.contains("credentials"), "{stderr}");
    assert!(stderr.contains("kfpd_no_such_user"), "{stderr}");
}
