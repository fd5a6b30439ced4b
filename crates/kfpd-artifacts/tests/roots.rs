//! Pipeline roots outside the default one: any local path, other buckets of the S3
//! endpoint (moto on loopback), and a list of allowed roots.

mod support;

use std::path::Path;

use kfpd_artifacts::{ArtifactStore, Error, Options, Roots};
use tempfile::TempDir;

async fn local_store(dir: &Path, roots: Roots) -> ArtifactStore {
    ArtifactStore::open(Options::Local {
        root: dir.join("store"),
    })
    .await
    .expect("open")
    .with_roots(roots)
    .expect("roots")
}

fn refused_reason(result: Result<String, Error>) -> String {
    match result {
        Err(Error::RootRefused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn any_local_path_is_served_when_allowed() {
    let tmp = TempDir::new().expect("tempdir");
    let elsewhere = TempDir::new().expect("tempdir");
    let store = local_store(tmp.path(), Roots::Any).await;
    let wanted = elsewhere.path().join("experiments");
    let root = store
        .check_root(&format!("{}/", wanted.display()))
        .await
        .expect("root accepted");
    assert_eq!(root, format!("file://{}", wanted.display()));
    assert!(wanted.is_dir(), "the root is created");
    assert_eq!(
        std::fs::read_dir(&wanted).expect("dir").count(),
        0,
        "the write check leaves nothing behind"
    );
    // The filesystem's root is a root too, in either spelling.
    for whole in ["/", "file:///"] {
        assert_eq!(store.pipeline_root(whole).expect("root"), "file:///");
    }
    let uri = ArtifactStore::output_uri(&root, "p", "r", "t", "i", "o");
    assert!(store.handles(&uri));
    let src = tmp.path().join("o");
    std::fs::write(&src, b"payload").expect("write");
    assert!(store.upload(&src, &uri).await.expect("upload"));
    assert_eq!(
        std::fs::read(wanted.join("p/r/t/i/o")).expect("written there"),
        b"payload"
    );
    assert_eq!(&store.read(&uri, 100).await.expect("read")[..], b"payload");
    let listed = store
        .list_directory(&format!("{root}/p/r"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, "t/i/o");
    // Traversal stays refused outside the default root too.
    assert!(matches!(
        store.read(&format!("{root}/../x"), 10).await,
        Err(Error::InvalidUri { .. })
    ));
}

#[tokio::test]
async fn unwritable_and_unsupported_roots_are_refused_by_name() {
    let tmp = TempDir::new().expect("tempdir");
    let store = local_store(tmp.path(), Roots::Any).await;
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let under_file = format!("{}/sub", file.display());
    let error = store.check_root(&under_file).await.unwrap_err();
    assert!(matches!(error, Error::RootRefused { .. }), "{error:?}");
    assert!(error.to_string().contains(&under_file), "{error}");
    assert!(error.to_string().contains("cannot be written"), "{error}");
    for (root, words) in [
        ("gs://bucket/x", "gs://"),
        ("relative/dir", "absolute path"),
        ("s3://bucket/x", "no object store is configured"),
        ("/a/../b", "traversal"),
    ] {
        let reason = refused_reason(store.check_root(root).await);
        assert!(reason.contains(words), "{root}: {reason}");
    }
}

#[tokio::test]
async fn a_list_restricts_roots_but_not_the_default_one() {
    let tmp = TempDir::new().expect("tempdir");
    let allowed = TempDir::new().expect("tempdir");
    let other = TempDir::new().expect("tempdir");
    let listed = allowed.path().display().to_string();
    let store = local_store(tmp.path(), Roots::Listed(vec![listed.clone()])).await;
    let inside = format!("file://{listed}/team");
    assert_eq!(store.check_root(&inside).await.expect("inside"), inside);
    let default_child = format!("{}/mine", store.default_root());
    store.check_root(&default_child).await.expect("default");
    store.check_root("").await.expect("no root");
    let outside = other.path().display().to_string();
    let reason = refused_reason(store.check_root(&outside).await);
    assert!(reason.contains("not allowed"), "{reason}");
    assert!(reason.contains(&listed), "{reason}");
    // A sibling sharing a prefix is not inside.
    let sibling = format!("{listed}x");
    refused_reason(store.check_root(&sibling).await);
    // URIs outside are refused for every operation, not only as roots.
    let uri = format!("file://{outside}/x");
    assert!(!store.handles(&uri));
    assert!(matches!(
        store.read(&uri, 10).await,
        Err(Error::Unsupported { .. })
    ));
    // A store that serves its default root only refuses every other root.
    let confined = local_store(tmp.path(), Roots::DefaultOnly).await;
    refused_reason(confined.check_root(&inside).await);
}

#[tokio::test]
async fn listed_roots_are_checked_when_configured() {
    let tmp = TempDir::new().expect("tempdir");
    let opened = ArtifactStore::open(Options::Local {
        root: tmp.path().join("store"),
    })
    .await
    .expect("open");
    for bad in ["s3://bucket/x", "relative", "gs://b"] {
        let error = opened
            .clone()
            .with_roots(Roots::Listed(vec![bad.to_string()]))
            .unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{bad}: {error:?}");
        assert!(error.to_string().contains(bad), "{error}");
    }
}

#[tokio::test]
async fn other_buckets_of_the_endpoint_are_served() {
    let Some(moto) = support::moto() else {
        return;
    };
    let default_bucket = support::unique_bucket("default");
    let other_bucket = support::unique_bucket("other");
    // The other bucket exists before the store uses it, as a user's bucket would.
    ArtifactStore::open(support::s3_options(&moto.endpoint, &other_bucket, true))
        .await
        .expect("create other bucket");
    let store = ArtifactStore::open(support::s3_options(&moto.endpoint, &default_bucket, true))
        .await
        .expect("open")
        .with_roots(Roots::Any)
        .expect("roots");
    let root = store
        .check_root(&format!("s3://{other_bucket}/experiments"))
        .await
        .expect("root in another bucket");
    let uri = ArtifactStore::output_uri(&root, "p", "r", "t", "i", "o");
    let work = TempDir::new().expect("tempdir");
    let src = work.path().join("o");
    std::fs::write(&src, b"elsewhere").expect("write");
    assert!(store.upload(&src, &uri).await.expect("upload"));
    assert_eq!(
        &store.read(&uri, 100).await.expect("read")[..],
        b"elsewhere"
    );
    // It really is in the other bucket: a store opened on that bucket alone reads it.
    let direct = ArtifactStore::open(support::s3_options(&moto.endpoint, &other_bucket, false))
        .await
        .expect("open other");
    let as_minio = uri.replacen("s3://", "minio://", 1);
    assert_eq!(
        &direct.read(&as_minio, 100).await.expect("read")[..],
        b"elsewhere"
    );
    assert!(!store
        .exists(&format!("minio://{default_bucket}/experiments/p"))
        .await
        .expect("exists"));
    // A bucket that does not exist is refused by name, and not created.
    let missing = support::unique_bucket("missing");
    let reason = refused_reason(store.check_root(&format!("minio://{missing}/x")).await);
    assert!(
        reason.contains(&missing) && reason.contains("does not exist"),
        "{reason}"
    );
}
