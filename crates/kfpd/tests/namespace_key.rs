//! `kfpd namespace-key` against moto with IAM enforced: the key it makes for a
//! namespace works for that namespace's artifacts in the launcher's way of opening
//! the store, and reaches nothing of another namespace.

#[path = "../../kfpd-artifacts/tests/support/mod.rs"]
mod moto;

use std::process::Command;

use kfpd_artifacts::{ArtifactStore, Options};

fn namespace_key(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .arg("namespace-key")
        .args(args)
        .env_remove("OBJECTSTORECONFIG_HOST")
        .envs(env.iter().copied())
        .output()
        .expect("run kfpd namespace-key");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The store's administrator: all of S3, and the IAM API to make users with.
const ADMINISTRATOR: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","iam:*"],"Resource":"*"}]}"#;

fn s3(endpoint: &str, bucket: &str, key: &(String, String)) -> Options {
    Options::S3 {
        endpoint: endpoint.to_string(),
        region: "us-east-1".into(),
        bucket: bucket.to_string(),
        access_key: Some(key.0.clone()),
        secret_key: Some(key.1.clone()),
        create_bucket: true,
    }
}

#[tokio::test]
async fn a_namespace_key_reaches_its_namespace_only() {
    // Three requests without authentication: the administrator's user and key.
    let Some(moto) = moto::start_with(
        &[("INITIAL_NO_AUTH_ACTION_COUNT", "3")],
        moto::SIGV4_QUERY_FIX,
    ) else {
        return;
    };
    let admin = moto::iam_user_with(&moto.endpoint, "admin", ADMINISTRATOR).await;
    let bucket = moto::unique_bucket("nskey");
    let server = ArtifactStore::open(s3(&moto.endpoint, &bucket, &admin))
        .await
        .expect("the server's store creates the bucket");
    let port = moto.endpoint.rsplit(':').next().expect("port").to_string();
    let env = [
        ("OBJECTSTORECONFIG_HOST", "127.0.0.1"),
        ("OBJECTSTORECONFIG_PORT", port.as_str()),
        ("OBJECTSTORECONFIG_BUCKETNAME", bucket.as_str()),
        ("OBJECTSTORECONFIG_ACCESSKEY", admin.0.as_str()),
        ("OBJECTSTORECONFIG_SECRETACCESSKEY", admin.1.as_str()),
    ];

    // The policy alone, made from the same settings.
    let (code, policy, stderr) = namespace_key(&["--namespace", "team-a", "--print-policy"], &env);
    assert_eq!(code, 0, "{stderr}");
    let policy: serde_json::Value = serde_json::from_str(&policy).expect("policy json");
    assert_eq!(
        policy["Statement"][0]["Resource"],
        format!("arn:aws:s3:::{bucket}/v2/artifacts/namespaces/team-a/*")
    );

    let (code, secret, stderr) = namespace_key(&["--namespace", "team-a"], &env);
    assert_eq!(code, 0, "{stderr}");
    let secret: serde_json::Value = serde_yaml::from_str(&secret).expect("secret yaml");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["namespace"], "team-a");
    assert_eq!(secret["metadata"]["name"], "mlpipeline-minio-artifact");
    let key = (
        secret["stringData"]["accesskey"]
            .as_str()
            .expect("accesskey")
            .to_string(),
        secret["stringData"]["secretkey"]
            .as_str()
            .expect("secretkey")
            .to_string(),
    );
    assert_ne!(key.0, admin.0);

    // Run again: the user is kept, its policy replaced, a second key made.
    let (code, again, stderr) = namespace_key(&["--namespace", "team-a"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(!again.contains(&key.1), "the same key twice");

    let launcher = ArtifactStore::open_trusting_bucket(s3(&moto.endpoint, &bucket, &key))
        .await
        .expect("launcher store");
    let root = server.default_root();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("out");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("data.txt"), b"rows").expect("file");
    let own = format!("{root}/namespaces/team-a/p/run/task/1/out");
    launcher.upload(&dir, &own).await.expect("own upload");
    assert_eq!(
        &launcher
            .read(&format!("{own}/data.txt"), 100)
            .await
            .expect("own read")[..],
        b"rows"
    );
    let theirs = format!("{root}/namespaces/team-b/p/run/task/1/out");
    server.upload(&dir, &theirs).await.expect("team-b's data");
    let read = launcher.read(&format!("{theirs}/data.txt"), 100).await;
    assert!(read.is_err(), "team-a's key read team-b's object: {read:?}");
    let planted = launcher
        .upload(&dir, &format!("{root}/namespaces/team-b/p/run/task/2/out"))
        .await;
    assert!(planted.is_err(), "team-a's key wrote beside team-b's data");
    let outside = launcher
        .upload(&dir, &format!("{root}/elsewhere/out"))
        .await;
    assert!(
        outside.is_err(),
        "team-a's key wrote outside the namespaces"
    );
}

#[test]
fn bad_input_is_refused_with_what_to_do() {
    let (code, _, stderr) = namespace_key(&["--namespace", "Team/A"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("invalid namespace \"Team/A\""), "{stderr}");
    let (code, _, stderr) = namespace_key(&["--namespace", "team-a"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("set OBJECTSTORECONFIG_HOST"), "{stderr}");
    let (code, _, stderr) = namespace_key(
        &["--namespace", "team-a"],
        &[
            ("OBJECTSTORECONFIG_HOST", "127.0.0.1"),
            ("OBJECTSTORECONFIG_PORT", "9"),
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("no administrator key"), "{stderr}");
}
