//! Every pipeline of the shared corpus uploads through the REST API; every file in
//! `invalid/` is rejected with a 4xx that names the problem, and nothing is stored.
//! The corpus is not part of a clone: each test skips without it (`KFPD_CORPUS_DIR`),
//! except under `CI=true`.

mod common;

use common::{corpus_dir, Server};
use serde_json::Value;

fn manifest() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).expect("manifest");
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut columns = line.split('\t');
            let path = columns.next().unwrap_or_default().to_string();
            let expect = columns.next().unwrap_or_default().to_string();
            (path, expect)
        })
        .collect()
}

async fn pipeline_count(server: &Server) -> i64 {
    let (status, body) = server.get("/pipelines?page_size=1").await;
    assert_eq!(status, 200, "{body}");
    body.get("total_size").and_then(Value::as_i64).unwrap_or(0)
}

#[tokio::test]
async fn every_corpus_file_uploads_and_invalid_ones_are_rejected() {
    kfpd_testdata::require_or_skip!(Corpus);
    let server = Server::start();
    let entries = manifest();
    assert!(entries.len() > 100, "manifest has {} rows", entries.len());
    let mut accepted = 0;
    let mut rejected = 0;
    for (index, (path, expect)) in entries.iter().enumerate() {
        let full = corpus_dir().join(path);
        let bytes = std::fs::read(&full).unwrap_or_else(|error| panic!("{path}: {error}"));
        let file_name = full.file_name().unwrap().to_string_lossy().to_string();
        let before = pipeline_count(&server).await;
        let (status, body) = server
            .upload(&format!("?name=corpus-{index}"), &file_name, bytes)
            .await;
        let after = pipeline_count(&server).await;
        if expect == "REJECTED" {
            assert!(
                (400..500).contains(&status),
                "{path} should be rejected, got {status}: {body}"
            );
            let message = body["error_message"].as_str().unwrap_or_default();
            assert!(
                !message.is_empty(),
                "{path}: rejection without message: {body}"
            );
            assert_eq!(before, after, "{path}: a rejected upload stored something");
            rejected += 1;
        } else {
            assert_eq!(status, 200, "{path} should upload: {body}");
            assert_eq!(after, before + 1);
            let id = body["pipeline_id"].as_str().expect("pipeline_id");
            let (status, versions) = server.get(&format!("/pipelines/{id}/versions")).await;
            assert_eq!(status, 200);
            let spec = &versions["pipeline_versions"][0]["pipeline_spec"];
            assert!(
                spec.get("pipelineInfo").is_some() || spec.get("pipeline_spec").is_some(),
                "{path}: stored spec lacks pipelineInfo: {spec}"
            );
            accepted += 1;
        }
    }
    assert_eq!(rejected, 6);
    assert!(accepted > 120, "accepted only {accepted}");
}

#[tokio::test]
async fn invalid_files_name_their_problem() {
    kfpd_testdata::require_or_skip!(Corpus);
    let server = Server::start();
    let cases = [
        ("invalid/invalid_yaml.yaml", "components_1"),
        ("invalid/no_name.yaml", "name"),
        ("invalid/invalid-zip.zip", "components_1"),
    ];
    for (path, needle) in cases {
        let full = corpus_dir().join(path);
        let bytes = std::fs::read(&full).expect("file");
        let file_name = full.file_name().unwrap().to_string_lossy().to_string();
        let (status, body) = server.upload("?name=x", &file_name, bytes).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error_message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{path}: {message:?} should mention {needle:?}"
        );
    }
}

#[tokio::test]
async fn zip_upload_then_version_upload() {
    kfpd_testdata::require_or_skip!(Corpus);
    let server = Server::start();
    let zip = std::fs::read(corpus_dir().join("arguments_parameters.zip")).expect("zip");
    let (status, pipeline) = server
        .upload("?name=zipped", "arguments_parameters.zip", zip)
        .await;
    assert_eq!(status, 200, "{pipeline}");
    assert_eq!(pipeline["display_name"], "zipped");
    let id = pipeline["pipeline_id"].as_str().expect("id");

    let yaml = std::fs::read(corpus_dir().join("hello_world.yaml")).expect("file");
    let part = reqwest::multipart::Part::bytes(yaml)
        .file_name("hello_world.yaml")
        .mime_str("application/octet-stream")
        .expect("mime");
    let form = reqwest::multipart::Form::new().part("uploadfile", part);
    let response = server
        .client
        .post(server.url(&format!("/pipelines/upload_version?pipelineid={id}")))
        .multipart(form)
        .send()
        .await
        .expect("upload_version");
    let (status, version) = common::read(response).await;
    assert_eq!(status, 200, "{version}");
    assert_eq!(
        version["name"], "hello_world.yaml",
        "a version without a name is named after its file"
    );
    assert_eq!(version["pipeline_id"], id);
    assert_eq!(version["pipeline_spec"]["pipelineInfo"]["name"], "echo");

    let (status, versions) = server.get(&format!("/pipelines/{id}/versions")).await;
    assert_eq!(status, 200);
    assert_eq!(versions["total_size"], 2);
}
