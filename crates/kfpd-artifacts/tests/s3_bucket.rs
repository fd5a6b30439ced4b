//! Bucket checks against a real S3 server (moto on loopback).

mod support;

use kfpd_artifacts::{ArtifactStore, Error};

#[tokio::test]
async fn missing_bucket_is_reported_when_not_created() {
    let Some(moto) = support::moto() else {
        return;
    };
    let bucket = support::unique_bucket("missing");
    let err = ArtifactStore::open(support::s3_options(&moto.endpoint, &bucket, false))
        .await
        .expect_err("bucket does not exist");
    assert!(matches!(err, Error::BucketNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "object store bucket not found: bucket {bucket} at endpoint {}",
            moto.endpoint
        )
    );
}

#[tokio::test]
async fn missing_bucket_is_created() {
    let Some(moto) = support::moto() else {
        return;
    };
    let bucket = support::unique_bucket("created");
    let store = ArtifactStore::open(support::s3_options(&moto.endpoint, &bucket, true))
        .await
        .expect("bucket created");
    // Now it exists: opening without creation works, and so does opening with it again.
    ArtifactStore::open(support::s3_options(&moto.endpoint, &bucket, false))
        .await
        .expect("bucket exists");
    ArtifactStore::open(support::s3_options(&moto.endpoint, &bucket, true))
        .await
        .expect("bucket exists, create is a no-op");
    assert!(!store
        .exists(&format!("minio://{bucket}/v2/artifacts"))
        .await
        .expect("exists"));
}

#[tokio::test]
async fn bucket_in_another_region_is_created() {
    let Some(moto) = support::moto() else {
        return;
    };
    let bucket = support::unique_bucket("region");
    let mut options = support::s3_options(&moto.endpoint, &bucket, true);
    if let kfpd_artifacts::Options::S3 { region, .. } = &mut options {
        *region = "eu-central-1".to_string();
    }
    let store = ArtifactStore::open(options).await.expect("created");
    let work = tempfile::TempDir::new().expect("tempdir");
    let f = work.path().join("f");
    std::fs::write(&f, b"x").expect("write");
    let uri = format!("minio://{bucket}/a/b");
    store.upload(&f, &uri).await.expect("upload");
    assert!(store.exists(&uri).await.expect("exists"));
}

#[tokio::test]
async fn unreachable_endpoint_names_bucket_and_endpoint() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let err = ArtifactStore::open(support::s3_options(&endpoint, "mlpipeline", true))
        .await
        .expect_err("nothing listens there");
    let msg = err.to_string();
    assert!(matches!(err, Error::Bucket { .. }), "{err:?}");
    assert!(
        msg.contains("mlpipeline") && msg.contains(&endpoint),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_endpoint_is_a_config_error() {
    for endpoint in ["127.0.0.1:9000", "ftp://host", "http://host/path"] {
        let err = ArtifactStore::open(support::s3_options(endpoint, "b", true))
            .await
            .expect_err(endpoint);
        assert!(matches!(err, Error::Config(_)), "{endpoint}: {err:?}");
    }
}
