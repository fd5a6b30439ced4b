//! Requests are signed correctly: moto with IAM authentication enforced checks every SigV4
//! signature, including those of the bucket check and creation made outside `object_store`.

mod support;

use kfpd_artifacts::{ArtifactStore, Error, Options};

/// Creates an IAM user allowed `s3:*` and returns its access key.
async fn iam_user(endpoint: &str) -> (String, String) {
    support::iam_user_with(endpoint, "kfpd", support::ALL_OF_S3).await
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

/// A key limited to one namespace's prefix, as an operator gives each namespace's
/// `mlpipeline-minio-artifact` Secret in multi-user mode: the launcher's way of
/// opening the store works with it, and it reaches nothing of another namespace.
#[tokio::test]
async fn a_key_for_one_namespace_prefix_reaches_that_prefix_only() {
    let Some(moto) = support::start_with(
        &[("INITIAL_NO_AUTH_ACTION_COUNT", "6")],
        support::SIGV4_QUERY_FIX,
    ) else {
        return;
    };
    let bucket = support::unique_bucket("ns");
    let team_a_prefix = "v2/artifacts/namespaces/team-a/";
    let objects = format!("arn:aws:s3:::{bucket}/{team_a_prefix}*");
    let listing = format!("arn:aws:s3:::{bucket}");
    let team_a_policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject"],"Resource":"{objects}"}},
            {{"Effect":"Allow","Action":"s3:ListBucket","Resource":"{listing}",
              "Condition":{{"StringLike":{{"s3:prefix":"{team_a_prefix}*"}}}}}},
            {{"Effect":"Allow","Action":"s3:DeleteObject","Resource":"{listing}"}}]}}"#
    );
    // The last statement is for moto alone: it authorizes a multi-object delete
    // (which the store sends for the objects under a uri) against the bucket's ARN
    // instead of each key's. AWS and MinIO check each key, so on them it
    // grants nothing, and the documented policy (docs/multi-user.md) goes without it.
    let admin = support::iam_user_with(&moto.endpoint, "kfpd", support::ALL_OF_S3).await;
    let team_a = support::iam_user_with(&moto.endpoint, "team-a", &team_a_policy).await;
    let options = |(access_key, secret_key): &(String, String)| Options::S3 {
        endpoint: moto.endpoint.clone(),
        region: "us-east-1".into(),
        bucket: bucket.clone(),
        access_key: Some(access_key.clone()),
        secret_key: Some(secret_key.clone()),
        create_bucket: true,
    };

    // The API server's store (all of the bucket) creates it and holds team-b's data.
    let server = ArtifactStore::open(options(&admin))
        .await
        .expect("server store");
    let work = tempfile::TempDir::new().expect("tempdir");
    let dir = work.path().join("d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("a.txt"), b"team data").expect("write");
    let root = server.default_root();
    let team_b_uri = format!("{root}/namespaces/team-b/p/r/t/i/o");
    server
        .upload(&dir, &team_b_uri)
        .await
        .expect("team-b upload");

    // Checking the bucket takes rights on all of it, which the key has not.
    let checked = ArtifactStore::open(options(&team_a)).await;
    assert!(
        matches!(checked, Err(Error::Bucket { .. })),
        "the namespace key checked the whole bucket: {checked:?}"
    );

    // The launcher's store trusts the bucket and works in its own prefix.
    let launcher = ArtifactStore::open_trusting_bucket(options(&team_a))
        .await
        .expect("launcher store");
    let own_uri = format!("{root}/namespaces/team-a/p/r/t/i/o");
    launcher.upload(&dir, &own_uri).await.expect("own upload");
    assert!(launcher.exists(&own_uri).await.expect("own exists"));
    assert_eq!(
        &launcher
            .read(&format!("{own_uri}/a.txt"), 100)
            .await
            .expect("own read")[..],
        b"team data"
    );
    launcher
        .download(&own_uri, &work.path().join("own"))
        .await
        .expect("own download");
    assert_eq!(
        std::fs::read(work.path().join("own/a.txt")).expect("downloaded"),
        b"team data"
    );

    // Nothing of team-b's: not its objects, not a write beside them. (Moto does not
    // evaluate the listing's prefix condition, so the download below lists team-b's
    // keys and is refused at the first object; MinIO and AWS refuse the listing.)
    let read = launcher.read(&format!("{team_b_uri}/a.txt"), 100).await;
    assert!(read.is_err(), "team-a read team-b's object: {read:?}");
    let listed = launcher
        .download(&team_b_uri, &work.path().join("theirs"))
        .await;
    assert!(
        listed.is_err(),
        "team-a downloaded team-b's prefix: {listed:?}"
    );
    let written = launcher
        .upload(&dir, &format!("{root}/namespaces/team-b/p/r/t/i/planted"))
        .await;
    let refusal = match written {
        Ok(uploaded) => panic!("team-a wrote into team-b's prefix (uploaded: {uploaded})"),
        Err(error) => error.to_string(),
    };
    assert!(
        refusal.contains("namespaces/team-b/p/r/t/i/planted") && refusal.contains("Access Denied"),
        "{refusal}"
    );
    assert!(
        !server
            .exists(&format!("{root}/namespaces/team-b/p/r/t/i/planted"))
            .await
            .expect("exists"),
        "an object was planted in team-b's prefix"
    );

    launcher.delete(&own_uri).await.expect("own delete");
    assert!(!server.exists(&own_uri).await.expect("exists"));
}
