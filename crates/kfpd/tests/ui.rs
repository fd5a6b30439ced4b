//! The embedded web UI as the real binary serves it: the page, the assets it names,
//! their headers and revalidation, and the REST API beside it.

mod common;

use common::Server;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;

async fn fetch(server: &Server, path: &str) -> reqwest::Response {
    server
        .client
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(&name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Every `/ui/...` path the page refers to in a `src` or `href` attribute.
fn referenced_assets(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let rest = &html[start + attribute.len()..];
            let value = &rest[..rest.find('"').unwrap_or(0)];
            if value.starts_with("/ui/") {
                found.push(value.to_string());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn root_serves_the_page_with_its_headers() {
    let server = Server::start();
    let response = fetch(&server, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&response, CACHE_CONTROL), "no-cache");
    assert_eq!(header(&response, X_CONTENT_TYPE_OPTIONS), "nosniff");
    let policy = header(&response, CONTENT_SECURITY_POLICY);
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let etag = header(&response, ETAG);
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag:?}");
    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<main id=\"page\""), "{html}");
    assert_eq!(
        referenced_assets(&html),
        [
            "/ui/app.css",
            "/ui/app.js",
            "/ui/core.js",
            "/ui/favicon.svg",
            "/ui/graph.js",
            "/ui/preview.js",
            "/ui/run.js"
        ]
    );
    // Scripts load in order: helpers before the pages that use them.
    let order: Vec<usize> = ["core.js", "graph.js", "preview.js", "run.js", "app.js"]
        .iter()
        .map(|name| html.find(&format!("/ui/{name}")).unwrap())
        .collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{html}");
    for section in ["#/runs", "#/recurringruns", "#/experiments", "#/pipelines"] {
        assert!(
            html.contains(&format!("href=\"{section}\"")),
            "no link to {section}"
        );
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );

    let head = server
        .client
        .head(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, ETAG), etag);
}

#[tokio::test]
async fn assets_have_their_types_and_revalidate_by_etag() {
    let server = Server::start();
    let cases = [
        ("/ui/app.js", "text/javascript; charset=utf-8", "hashchange"),
        (
            "/ui/core.js",
            "text/javascript; charset=utf-8",
            "function api(",
        ),
        (
            "/ui/graph.js",
            "text/javascript; charset=utf-8",
            "function drawGraph(",
        ),
        (
            "/ui/preview.js",
            "text/javascript; charset=utf-8",
            "function showPreview(",
        ),
        ("/ui/run.js", "text/javascript; charset=utf-8", "/events"),
        ("/ui/app.css", "text/css; charset=utf-8", ".state"),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
        ("/", "text/html; charset=utf-8", "/ui/app.js"),
    ];
    let mut etags = Vec::new();
    for (path, content_type, marker) in cases {
        let response = fetch(&server, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, CONTENT_TYPE), content_type, "{path}");
        assert_eq!(header(&response, CACHE_CONTROL), "no-cache", "{path}");
        let etag = header(&response, ETAG);
        let body = response.text().await.unwrap();
        assert!(body.contains(marker), "{path} lacks {marker:?}");

        let unchanged = server
            .client
            .get(format!("{}{path}", server.base))
            .header(IF_NONE_MATCH, format!("\"other\", {etag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&unchanged, ETAG), etag, "{path}");
        assert!(unchanged.bytes().await.unwrap().is_empty(), "{path}");

        let stale = server
            .client
            .get(format!("{}{path}", server.base))
            .header(IF_NONE_MATCH, "\"0000000000000000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::OK, "{path}");
        etags.push(etag);
    }
    etags.sort();
    etags.dedup();
    assert_eq!(etags.len(), cases.len(), "each file has its own etag");
}

/// The body of `path` asked for with `Accept-Encoding: gzip`: its encoding and
/// its bytes decoded.
async fn gzipped(server: &Server, path: &str) -> (String, String, Vec<u8>) {
    use std::io::Read;
    let response = server
        .client
        .get(format!("{}{path}", server.base))
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let encoding = header(&response, reqwest::header::CONTENT_ENCODING);
    let vary = header(&response, reqwest::header::VARY);
    let bytes = response.bytes().await.unwrap().to_vec();
    if encoding != "gzip" {
        return (encoding, vary, bytes);
    }
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut decoded)
        .unwrap_or_else(|error| panic!("{path}: not gzip: {error}"));
    (encoding, vary, decoded)
}

#[tokio::test]
async fn assets_and_large_json_are_gzipped_for_clients_that_ask() {
    let server = Server::start();
    for path in ["/ui/app.js", "/ui/app.css", "/"] {
        let plain = fetch(&server, path).await;
        assert_eq!(
            header(&plain, reqwest::header::CONTENT_ENCODING),
            "",
            "{path}"
        );
        let plain = plain.bytes().await.unwrap().to_vec();
        let (encoding, vary, decoded) = gzipped(&server, path).await;
        assert_eq!(encoding, "gzip", "{path}");
        assert!(
            vary.to_ascii_lowercase().contains("accept-encoding"),
            "{path}: {vary}"
        );
        assert_eq!(decoded, plain, "{path} decodes to the plain bytes");
    }
    // A large JSON answer: a list of 30 runs with their inline specs.
    let spec = common::pipeline_spec("hello.yaml");
    for index in 0..30 {
        let (status, _) = server
            .post(
                "/runs",
                &json!({"display_name": format!("gzip {index}"), "pipeline_spec": spec}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (encoding, _, decoded) = gzipped(&server, "/apis/v2beta1/runs?page_size=30").await;
    assert_eq!(encoding, "gzip");
    let listed: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(listed["runs"].as_array().map(Vec::len), Some(30));
    // Event streams are never compressed: each event must arrive as it happens.
    let run_id = listed["runs"][0]["run_id"].as_str().unwrap().to_string();
    let stream = server
        .client
        .get(server.url(&format!("/runs/{run_id}/events")))
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&stream, CONTENT_TYPE), "text/event-stream");
    assert_eq!(header(&stream, reqwest::header::CONTENT_ENCODING), "");
}

#[tokio::test]
async fn unknown_assets_are_not_found() {
    let server = Server::start();
    for path in ["/ui/missing.js", "/ui/", "/ui/app.js/more", "/index.html"] {
        let (status, body) = common::read(fetch(&server, path).await).await;
        assert_eq!(
            (status, body["code"].clone()),
            (404, json!(5)),
            "{path}: {body}"
        );
    }
    let (status, body) = common::read(fetch(&server, "/ui/missing.js").await).await;
    assert_eq!(status, 404);
    assert!(
        body["message"].as_str().unwrap().contains("missing.js"),
        "{body}"
    );
}

#[tokio::test]
async fn api_routes_are_unaffected() {
    let server = Server::start();
    let (status, health) = server.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["pipeline_store"], "database");
    let (status, created) = server
        .post("/experiments", &json!({"display_name": "beside the ui"}))
        .await;
    assert_eq!(status, 200, "{created}");
    let (status, listed) = server.get("/experiments").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|experiment| experiment["display_name"].as_str())
        .collect();
    assert!(names.contains(&"beside the ui"), "{listed}");
    let (status, body) = server.get("/no/such/route").await;
    assert_eq!((status, body["code"].clone()), (404, json!(5)));

    let post = server
        .client
        .post(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(post).await;
    assert_eq!((status, body["code"].clone()), (501, json!(12)), "{body}");
}

/// Every route the page handles, each answered by the page's router (a view
/// function in the scripts), and no script or style from another origin.
#[tokio::test]
async fn scripts_route_every_page_and_load_nothing_from_elsewhere() {
    let server = Server::start();
    let mut scripts = String::new();
    for name in ["core.js", "graph.js", "preview.js", "run.js", "app.js"] {
        scripts.push_str(
            &fetch(&server, &format!("/ui/{name}"))
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    for (route, view) in [
        (r"/^\/runs\/new$/", "newRunPage"),
        (r"/^\/runs\/details\/([^/?]+)$/", "runDetailsPage"),
        (r"/^\/runs$/", "runsPage"),
        (r"/^\/compare$/", "comparePage"),
        (
            r"/^\/experiments\/details\/([^/?]+)$/",
            "experimentDetailsPage",
        ),
        (r"/^\/experiments$/", "experimentsPage"),
        (
            r"/^\/pipelines\/details\/([^/?]+)\/version\/([^/?]+)$/",
            "versionDetailsPage",
        ),
        (r"/^\/pipelines\/details\/([^/?]+)$/", "pipelineDetailsPage"),
        (r"/^\/pipelines$/", "pipelinesPage"),
        (
            r"/^\/recurringruns\/details\/([^/?]+)$/",
            "recurringRunDetailsPage",
        ),
        (r"/^\/recurringruns$/", "recurringRunsPage"),
    ] {
        let at = scripts
            .find(route)
            .unwrap_or_else(|| panic!("no route {route}"));
        let line = &scripts[at..at + scripts[at..].find('\n').unwrap_or(0)];
        let next = &scripts[at + line.len()..];
        let handled = line.contains(view)
            || next
                .trim_start()
                .lines()
                .next()
                .unwrap_or("")
                .contains(view);
        assert!(handled, "{route} is not handled by {view}: {line}");
        assert!(
            scripts.contains(&format!("async function {view}(")),
            "{view} is not defined"
        );
    }
    // Only this server is called: no absolute URLs in fetches or imports.
    for forbidden in [
        "import(",
        "fetch(\"http",
        "fetch('http",
        "src=\"http",
        "innerHTML",
    ] {
        assert!(
            !scripts.contains(forbidden),
            "the scripts use {forbidden:?}"
        );
    }
}

fn run_body(name: &str) -> serde_json::Value {
    json!({
        "display_name": name,
        "pipeline_spec": common::pipeline_spec("two-step-artifact.yaml"),
        "runtime_config": {"parameters": {"text": name}},
    })
}

/// Reads a server-sent event stream to its end: (event name, JSON data) pairs.
async fn read_events(mut response: reqwest::Response) -> Vec<(String, serde_json::Value)> {
    let mut text = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while let Some(chunk) = tokio::time::timeout_at(deadline.into(), response.chunk())
        .await
        .expect("the event stream did not end")
        .expect("reading the event stream")
    {
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8 events"));
    }
    text.split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(rest) = line.strip_prefix("event:") {
                    name = rest.trim().to_string();
                } else if let Some(rest) = line.strip_prefix("data:") {
                    data.push_str(rest.trim_start());
                }
            }
            let value = serde_json::from_str(&data).unwrap_or(json!(data));
            (name, value)
        })
        .collect()
}

#[tokio::test]
async fn run_events_stream_changes_until_the_run_ends_and_nodes_carry_edges() {
    let server = Server::start_with(&["--executor", "local"]);
    let (status, run) = server.post("/runs", &run_body("streamed")).await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();

    let response = fetch(&server, &format!("/apis/v2beta1/runs/{run_id}/events")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "text/event-stream");
    let events = read_events(response).await;
    assert!(!events.is_empty());
    assert_eq!(events[0].0, "run", "{events:?}");
    assert!(
        events[1..].iter().all(|(name, _)| name == "update"),
        "{events:?}"
    );
    // The first event has every node; each update only the nodes that are new or
    // changed, and something changed in each.
    let mut nodes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut run_state = json!(null);
    for (index, (_, event)) in events.iter().enumerate() {
        let sent = event["nodes"].as_array().unwrap();
        let mut changed = false;
        for node in sent {
            let id = node["task_id"].as_str().unwrap().to_string();
            let before = nodes.insert(id, node.clone());
            assert!(
                index == 0 || before.as_ref() != Some(node),
                "event {index} resent an unchanged node: {node}"
            );
            changed = true;
        }
        changed |= event["run"] != run_state;
        run_state = event["run"].clone();
        assert!(changed, "event {index} changed nothing: {event}");
    }
    let last = json!({"run": run_state, "nodes": nodes.values().cloned().collect::<Vec<_>>()});
    let last = &last;
    assert_eq!(last["run"]["state"], "SUCCEEDED", "{last}");
    // Tasks come as nodes and the spec is left out: events stay small.
    assert!(last["run"].get("run_details").is_none(), "{last}");
    assert!(last["run"].get("pipeline_spec").is_none(), "{last}");
    let nodes = last["nodes"].as_array().unwrap();
    let by_name = |name: &str| {
        nodes
            .iter()
            .find(|node| node["name"] == name)
            .unwrap_or_else(|| panic!("no node {name}: {last}"))
            .clone()
    };
    let root = nodes
        .iter()
        .find(|node| node["kind"] == "ROOT")
        .unwrap_or_else(|| panic!("no root node: {last}"))
        .clone();
    let write = by_name("write");
    let read = by_name("read");
    assert_eq!(root["name"], "two-step-artifact");
    assert_eq!(
        (write["kind"].clone(), read["kind"].clone()),
        (json!("RUNTIME"), json!("RUNTIME"))
    );
    assert_eq!(write["parent_task_id"], root["task_id"]);
    assert_eq!(read["after"], json!([write["task_id"]]), "{read}");
    assert!(write.get("after").is_none(), "{write}");
    for node in [&write, &read] {
        assert_eq!(node["state"], "SUCCEEDED");
        assert!(
            node["started_at"].as_str().unwrap().ends_with('Z'),
            "{node}"
        );
    }
    // The first event came before the run ended (a live run has several).
    assert!(events.len() >= 2, "{events:?}");

    // A finished run's stream is its one last state, whole.
    let again =
        read_events(fetch(&server, &format!("/apis/v2beta1/runs/{run_id}/events")).await).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, "run");
    assert_eq!(again[0].1["run"], last["run"]);
    let by_id = |nodes: &serde_json::Value| -> BTreeMap<String, serde_json::Value> {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|node| (node["task_id"].as_str().unwrap().to_string(), node.clone()))
            .collect()
    };
    assert_eq!(by_id(&again[0].1["nodes"]), by_id(&last["nodes"]));

    let (status, listed) = server.get(&format!("/runs/{run_id}/nodes")).await;
    assert_eq!(status, 200);
    assert_eq!(by_id(&listed["nodes"]), by_id(&last["nodes"]));

    let write_id = write["task_id"].as_str().unwrap();
    let (status, detail) = server
        .get(&format!("/runs/{run_id}/nodes/{write_id}"))
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["inputs"]["text"], "streamed", "{detail}");
    assert_eq!(detail["path"], "root/write");
    let outputs = detail["output_artifacts"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{detail}");
    assert_eq!(outputs[0]["key"], "data");
    assert_eq!(
        outputs[0]["artifact"]["type"]["schema_title"],
        "system.Dataset"
    );
    assert!(detail["details"]["attempts"].is_array(), "{detail}");
    let read_id = read["task_id"].as_str().unwrap();
    let (_, detail) = server.get(&format!("/runs/{run_id}/nodes/{read_id}")).await;
    assert_eq!(detail["input_artifacts"][0]["key"], "data", "{detail}");

    for path in [
        "/runs/no-such-run/nodes".to_string(),
        format!("/runs/{run_id}/nodes/no-such-task"),
        "/runs/no-such-run/events".to_string(),
    ] {
        let (status, body) = server.get(&path).await;
        assert_eq!(
            (status, body["code"].clone()),
            (404, json!(5)),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn a_stream_of_a_run_that_never_starts_ends_when_it_is_terminated() {
    // Without an executor a run stays PENDING: the stream sends it once and then
    // nothing, until the run changes.
    let server = Server::start_with(&["--executor", "none"]);
    let (_, run) = server.post("/runs", &run_body("waiting")).await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let mut response = fetch(&server, &format!("/apis/v2beta1/runs/{run_id}/events")).await;
    let first = response.chunk().await.unwrap().unwrap();
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(first.starts_with("event: run\n"), "{first}");
    assert!(first.contains("\"state\":\"PENDING\""), "{first}");
    let (status, body) = server
        .post(&format!("/runs/{run_id}:terminate"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let rest = read_events(response).await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].1["run"]["state"], "CANCELED");
}

/// The value of one series in the server's `/metrics`, 0 when absent.
async fn metric(server: &Server, series: &str) -> f64 {
    let text = fetch(server, "/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until a gauge reads `want` (streams close a moment after their client).
async fn metric_becomes(server: &Server, series: &str, want: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = metric(server, series).await;
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} stayed {now}, not {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const RUN_STREAMS: &str = "kfpd_event_streams{kind=\"run\"}";
const LIST_STREAMS: &str = "kfpd_event_streams{kind=\"runs\"}";

#[tokio::test]
async fn a_runs_page_streams_while_a_run_on_it_is_live_and_ends_when_none_is() {
    let server = Server::start_with(&["--executor", "none"]);
    let mut ids = Vec::new();
    for name in ["watched-a", "watched-b"] {
        let (status, run) = server.post("/runs", &run_body(name)).await;
        assert_eq!(status, 200, "{run}");
        ids.push(run["run_id"].as_str().unwrap().to_string());
    }
    let filter = json!({"predicates": [{"key": "display_name", "operation": "IS_SUBSTRING", "string_value": "watched-"}]});
    let params = [
        ("page_size", "10".to_string()),
        ("sort_by", "display_name".to_string()),
        ("filter", filter.to_string()),
    ];
    let encoded = reqwest::Url::parse_with_params("http://x/", &params).unwrap();
    let encoded = encoded.query().unwrap_or_default();
    let query = format!("/apis/v2beta1/runs:watch?{encoded}");
    let mut response = fetch(&server, &query).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "text/event-stream");
    let first = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.starts_with("event: runs\n"), "{first}");
    let data: serde_json::Value = serde_json::from_str(
        first
            .trim()
            .lines()
            .last()
            .unwrap()
            .trim_start_matches("data:")
            .trim(),
    )
    .unwrap();
    // The first event is ListRuns' answer for the same query.
    let (_, listed) = server.get(&format!("/runs?{encoded}")).await;
    assert_eq!(data, listed);
    let states: Vec<&str> = data["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["PENDING", "PENDING"], "{data}");
    assert_eq!(metric(&server, LIST_STREAMS).await, 1.0);

    // Each change to the page is sent; once no run on it is live the stream ends.
    for id in &ids {
        let (status, body) = server
            .post(&format!("/runs/{id}:terminate"), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    let rest = read_events(response).await;
    assert!(!rest.is_empty() && rest.len() <= 2, "{rest:?}");
    assert!(rest.iter().all(|(name, _)| name == "runs"), "{rest:?}");
    let last = &rest.last().unwrap().1;
    for run in last["runs"].as_array().unwrap() {
        assert_eq!(run["state"], "CANCELED", "{last}");
    }
    metric_becomes(&server, LIST_STREAMS, 0.0).await;

    // A page with nothing live is one event, and the stream ends at once.
    let again = read_events(fetch(&server, &query).await).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].1, *last);

    // What ListRuns refuses is refused before the stream starts.
    let (status, body) =
        common::read(fetch(&server, "/apis/v2beta1/runs:watch?filter=not-json").await).await;
    assert_eq!((status, body["code"].clone()), (400, json!(3)), "{body}");
    let (status, body) = common::read(
        fetch(
            &server,
            "/apis/v2beta1/runs:watch?experiment_id=no-such-experiment",
        )
        .await,
    )
    .await;
    assert_eq!((status, body["code"].clone()), (404, json!(5)), "{body}");
}

#[tokio::test]
async fn an_open_run_stream_is_counted_until_its_client_goes() {
    let server = Server::start_with(&["--executor", "none"]);
    let (_, run) = server.post("/runs", &run_body("counted")).await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    assert_eq!(metric(&server, RUN_STREAMS).await, 0.0);
    let mut response = fetch(&server, &format!("/apis/v2beta1/runs/{run_id}/events")).await;
    response.chunk().await.unwrap().unwrap();
    assert_eq!(metric(&server, RUN_STREAMS).await, 1.0);
    drop(response);
    metric_becomes(&server, RUN_STREAMS, 0.0).await;
}

const RUN_READS: &str = "kfpd_event_stream_reads_total{kind=\"run\"}";
const LIST_READS: &str = "kfpd_event_stream_reads_total{kind=\"runs\"}";

#[tokio::test]
async fn open_streams_of_live_runs_read_nothing_until_something_changes() {
    // A PENDING run without an executor is live and never changes by itself: its
    // page's stream and a runs page showing it must not read the rows on a timer.
    let server = Server::start_with(&["--executor", "none"]);
    let (_, run) = server.post("/runs", &run_body("idle")).await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let mut run_stream = fetch(&server, &format!("/apis/v2beta1/runs/{run_id}/events")).await;
    run_stream.chunk().await.unwrap().unwrap();
    let mut list_stream = fetch(&server, "/apis/v2beta1/runs:watch?page_size=5").await;
    list_stream.chunk().await.unwrap().unwrap();
    // Several of the streams' shortest intervals (0.5 s and 1 s) pass quietly.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(metric(&server, RUN_READS).await, 0.0);
    assert_eq!(metric(&server, LIST_READS).await, 0.0);

    // A write to another run wakes the runs page (it may move onto it) but not
    // this run's page.
    let (status, other) = server.post("/runs", &run_body("other")).await;
    assert_eq!(status, 200, "{other}");
    let event = String::from_utf8(list_stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(event.starts_with("event: runs\n"), "{event}");
    assert!(event.contains("\"display_name\":\"other\""), "{event}");
    assert_eq!(metric(&server, RUN_READS).await, 0.0);

    // This run's own change is read once and sent; the run is final, so its
    // stream ends.
    let (status, body) = server
        .post(&format!("/runs/{run_id}:terminate"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let rest = read_events(run_stream).await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].1["run"]["state"], "CANCELED");
    assert_eq!(metric(&server, RUN_READS).await, 1.0);
}
