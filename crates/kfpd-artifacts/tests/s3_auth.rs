//! Requests are signed correctly: moto with IAM authentication enforced checks every SigV4
//! signature, including those of the bucket check and creation made outside `object_store`.

mod support;

use kfpd_artifacts::{ArtifactStore, Error, Options};

/// Creates an IAM user allowed `s3:*` and returns its access key. Moto lets the first
/// `INITIAL_NO_AUTH_ACTION_COUNT` requests through without authentication; the fake
/// authorization header only routes the requests to IAM.
async fn iam_user(endpoint: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/iam/aws4_request, \
                SignedHeaders=host, Signature=0";
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    let calls: Vec<Vec<(&str, &str)>> = vec![
        vec![("Action", "CreateUser"), ("UserName", "kfpd")],
        vec![
            ("Action", "PutUserPolicy"),
            ("UserName", "kfpd"),
            ("PolicyName", "s3"),
            ("PolicyDocument", policy),
        ],
        vec![("Action", "CreateAccessKey"), ("UserName", "kfpd")],
    ];
    let mut last = String::new();
    for mut form in calls {
        form.push(("Version", "2010-05-08"));
        let resp = http
            .post(format!("{endpoint}/"))
            .header("authorization", auth)
            .form(&form)
            .send()
            .await
            .expect("iam request");
        let status = resp.status();
        last = resp.text().await.expect("iam body");
        assert!(status.is_success(), "{form:?}: {status} {last}");
    }
    let tag = |name: &str| {
        let start = last.find(&format!("<{name}>")).expect(name) + name.len() + 2;
        let end = last[start..].find('<').expect(name) + start;
        last[start..end].to_string()
    };
    (tag("AccessKeyId"), tag("SecretAccessKey"))
}

#[tokio::test]
async fn signed_requests_are_accepted_and_bad_keys_refused() {
    let Some(moto) = support::start_with(
        &[("INITIAL_NO_AUTH_ACTION_COUNT", "3")],
        support::SIGV4_QUERY_FIX,
    ) else {
        return;
    };
    let (access_key, secret_key) = iam_user(&moto.endpoint).await;
    let bucket = support::unique_bucket("auth");
    let options = |secret: &str| Options::S3 {
        endpoint: moto.endpoint.clone(),
        region: "us-east-1".into(),
        bucket: bucket.clone(),
        access_key: Some(access_key.clone()),
        secret_key: Some(secret.to_string()),
        create_bucket: true,
    };

    let store = ArtifactStore::open(options(&secret_key))
        .await
        .expect("bucket check and creation are signed correctly");
    let work = tempfile::TempDir::new().expect("tempdir");
    let dir = work.path().join("d");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("a.txt"), b"a").expect("write");
    std::fs::write(dir.join("sub/b name.txt"), b"b").expect("write");
    let uri = format!("{}/p/r/t/i/o", store.default_root());
    store.upload(&dir, &uri).await.expect("upload");
    assert!(store.exists(&uri).await.expect("exists"));
    assert_eq!(
        &store
            .read(&format!("{uri}/sub/b name.txt"), 10)
            .await
            .expect("read")[..],
        b"b"
    );
    store
        .download(&uri, &work.path().join("back"))
        .await
        .expect("download");
    store.delete(&uri).await.expect("delete");
    assert!(!store.exists(&uri).await.expect("exists"));

    let err = ArtifactStore::open(options("not-the-secret"))
        .await
        .expect_err("a wrong secret is refused");
    let msg = err.to_string();
    assert!(matches!(err, Error::Bucket { .. }), "{err:?}");
    assert!(
        msg.contains(&bucket) && msg.contains(&moto.endpoint) && msg.contains("403"),
        "{msg}"
    );
}
