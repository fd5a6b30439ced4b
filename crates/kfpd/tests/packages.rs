//! Uploads of the committed packages (`tests/pipelines/`) through the REST API: every
//! format is accepted and stored as the same pipeline; every invalid file is a 400
//! whose message names the problem, and nothing is stored. Needs nothing outside
//! the repository.

mod common;

use common::{pipeline, Server};
use serde_json::Value;

async fn pipeline_count(server: &Server) -> i64 {
    let (status, body) = server.get("/pipelines?page_size=1").await;
    assert_eq!(status, 200, "{body}");
    body.get("total_size").and_then(Value::as_i64).unwrap_or(0)
}

/// The stored spec of a pipeline's only version.
async fn stored_spec(server: &Server, pipeline_id: &str) -> Value {
    let (status, versions) = server
        .get(&format!("/pipelines/{pipeline_id}/versions"))
        .await;
    assert_eq!(status, 200, "{versions}");
    assert_eq!(versions["total_size"], 1, "{versions}");
    versions["pipeline_versions"][0]["pipeline_spec"].clone()
}

#[tokio::test]
async fn every_package_format_stores_the_same_pipeline() {
    let server = Server::start();
    let yaml_path = pipeline("add.yaml");
    let expected = common::spec_of_file(&yaml_path);
    let packages = [
        ("add.yaml", std::fs::read(&yaml_path).expect("yaml")),
        (
            "add.json",
            std::fs::read(pipeline("add.json")).expect("json"),
        ),
        (
            "add.zip",
            kfpd_testdata::zip_package(&yaml_path, "pipeline.yaml"),
        ),
        (
            "add.tar.gz",
            kfpd_testdata::tar_gz_package(&yaml_path, "pipeline.yaml"),
        ),
        (
            "other-member.tar.gz",
            kfpd_testdata::tar_gz_package(&yaml_path, "adder.yaml"),
        ),
    ];
    for (index, (file_name, bytes)) in packages.into_iter().enumerate() {
        let (status, body) = server
            .upload(&format!("?name=format-{index}"), file_name, bytes)
            .await;
        assert_eq!(status, 200, "{file_name}: {body}");
        let id = body["pipeline_id"].as_str().expect("pipeline_id");
        assert_eq!(stored_spec(&server, id).await, expected, "{file_name}");
    }
    // A two-document package comes back wrapped with its platform spec.
    let pipeline = server
        .upload_pipeline("parameters.yaml", "with-platform")
        .await;
    let id = pipeline["pipeline_id"].as_str().expect("pipeline_id");
    let spec = stored_spec(&server, id).await;
    assert_eq!(spec["pipeline_spec"]["pipelineInfo"]["name"], "parameters");
    assert_eq!(
        spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
            ["exec-show"]["nodeSelector"]["labels"]["disk"],
        "ssd"
    );
}

#[tokio::test]
async fn every_invalid_package_is_refused_naming_its_problem() {
    let server = Server::start();
    let cases = [
        ("bad-syntax.yaml", "invalid YAML"),
        ("empty.yaml", "empty pipeline file"),
        ("no-name.yaml", "pipelineInfo.name is empty"),
        ("no-pipeline-member.tar.gz", "\"notes.txt\""),
        ("no-pipeline-member.zip", "\"README.txt\""),
        ("not-a-pipeline.png", "unexpected pipeline file format"),
        ("not-gzip.tar.gz", "not a valid gzip-compressed tarball"),
        ("text-named.zip", "unexpected pipeline file format"),
        ("truncated.zip", "not a valid zip file"),
        (
            "unknown-component.yaml",
            "unknown component \"comp-missing\"",
        ),
        ("unknown-field.yaml", "unknown field `component`"),
        ("unknown-field.zip", "unknown field `component`"),
    ];
    let on_disk = std::fs::read_dir(kfpd_testdata::pipelines_dir().join("invalid"))
        .expect("invalid/")
        .count();
    assert_eq!(on_disk, cases.len(), "every file in invalid/ is tried here");
    let (_, existing) = server
        .upload(
            "?name=existing",
            "hello.yaml",
            std::fs::read(pipeline("hello.yaml")).expect("hello"),
        )
        .await;
    let existing_id = existing["pipeline_id"]
        .as_str()
        .expect("pipeline_id")
        .to_string();
    for (file, needle) in cases {
        let bytes = std::fs::read(pipeline(&format!("invalid/{file}"))).expect("file");
        let before = pipeline_count(&server).await;
        let (status, body) = server.upload("?name=refused", file, bytes.clone()).await;
        assert_eq!(status, 400, "{file}: {body}");
        let message = body["error_message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{file}: {message:?} should mention {needle:?}"
        );
        assert_eq!(
            pipeline_count(&server).await,
            before,
            "{file}: something was stored"
        );

        // As a new version of an existing pipeline: refused the same way.
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file.to_string())
            .mime_str("application/octet-stream")
            .expect("mime");
        let form = reqwest::multipart::Form::new().part("uploadfile", part);
        let response = server
            .client
            .post(server.url(&format!(
                "/pipelines/upload_version?pipelineid={existing_id}&name=refused"
            )))
            .multipart(form)
            .send()
            .await
            .expect("upload_version");
        let (status, body) = common::read(response).await;
        assert_eq!(status, 400, "{file} as a version: {body}");
        let message = body["error_message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{file} as a version: {message:?}");
    }
    let (_, versions) = server
        .get(&format!("/pipelines/{existing_id}/versions"))
        .await;
    assert_eq!(versions["total_size"], 1, "no refused version was stored");
}

#[tokio::test]
async fn a_version_uploaded_without_a_name_is_named_after_its_file() {
    let server = Server::start();
    let zip = kfpd_testdata::zip_package(&pipeline("add.yaml"), "pipeline.yaml");
    let (status, created) = server.upload("?name=zipped", "add.zip", zip).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["display_name"], "zipped");
    let id = created["pipeline_id"].as_str().expect("id");

    let part =
        reqwest::multipart::Part::bytes(std::fs::read(pipeline("hello.yaml")).expect("hello"))
            .file_name("hello.yaml")
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
    assert_eq!(version["name"], "hello.yaml");
    assert_eq!(version["pipeline_id"], id);
    assert_eq!(version["pipeline_spec"]["pipelineInfo"]["name"], "echo");
    let (status, versions) = server.get(&format!("/pipelines/{id}/versions")).await;
    assert_eq!(status, 200);
    assert_eq!(versions["total_size"], 2);
}
