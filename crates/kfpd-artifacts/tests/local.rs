//! Behaviour specific to the local-directory backend.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kfpd_artifacts::{ArtifactStore, Options, UploadMode};
use tempfile::TempDir;

async fn store(dir: &Path) -> ArtifactStore {
    ArtifactStore::open(Options::Local {
        root: dir.join("store"),
    })
    .await
    .expect("open")
}

fn object_path(store: &ArtifactStore, uri: &str) -> std::path::PathBuf {
    let root = store.default_root();
    let dir = root.strip_prefix("file://").expect("file uri");
    Path::new(dir).join(uri.strip_prefix(&format!("{root}/")).expect("under root"))
}

#[tokio::test]
async fn copy_upload_leaves_no_shared_inode() {
    let tmp = TempDir::new().expect("tempdir");
    let store = store(tmp.path()).await;
    let src = tmp.path().join("out.txt");
    std::fs::write(&src, b"original").expect("write");
    let uri = format!("{}/p/r/t/i/out", store.default_root());
    store.upload(&src, &uri).await.expect("upload");
    let stored = object_path(&store, &uri);
    assert_ne!(
        std::fs::metadata(&src).expect("src").ino(),
        std::fs::metadata(&stored).expect("stored").ino()
    );
    // The task writing to its file afterwards does not reach the store.
    std::fs::write(&src, b"rewritten").expect("write");
    assert_eq!(&store.read(&uri, 100).await.expect("read")[..], b"original");
}

#[tokio::test]
async fn move_upload_renames_single_link_files() {
    let tmp = TempDir::new().expect("tempdir");
    let store = store(tmp.path()).await;
    let src = tmp.path().join("out.bin");
    std::fs::write(&src, b"data").expect("write");
    let ino = std::fs::metadata(&src).expect("src").ino();
    let uri = format!("{}/p/r/t/i/out", store.default_root());
    store
        .upload_with(&src, &uri, UploadMode::Move)
        .await
        .expect("upload");
    assert!(!src.exists());
    assert_eq!(
        std::fs::metadata(object_path(&store, &uri))
            .expect("stored")
            .ino(),
        ino,
        "same filesystem: renamed, not copied"
    );
}

#[tokio::test]
async fn move_upload_copies_files_with_other_links() {
    let tmp = TempDir::new().expect("tempdir");
    let store = store(tmp.path()).await;
    let src = tmp.path().join("out.bin");
    let other = tmp.path().join("other-name.bin");
    std::fs::write(&src, b"data").expect("write");
    std::fs::hard_link(&src, &other).expect("link");
    let uri = format!("{}/p/r/t/i/out", store.default_root());
    store
        .upload_with(&src, &uri, UploadMode::Move)
        .await
        .expect("upload");
    // The other name can still be written, and must not reach the store.
    std::fs::write(&other, b"changed").expect("write");
    assert_eq!(&store.read(&uri, 100).await.expect("read")[..], b"data");
}

#[tokio::test]
async fn symlinks_in_uploaded_directories() {
    let tmp = TempDir::new().expect("tempdir");
    let store = store(tmp.path()).await;
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, b"outside").expect("write");
    let dir = tmp.path().join("dir");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, dir.join("link.txt")).expect("symlink");
    // A link to a directory (here a loop) is skipped.
    std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).expect("symlink");
    let uri = format!("{}/p/r/t/i/dir", store.default_root());
    store.upload(&dir, &uri).await.expect("upload");
    let stored = object_path(&store, &uri).join("link.txt");
    let meta = std::fs::symlink_metadata(&stored).expect("stored");
    assert!(meta.is_file(), "contents stored, not the link");
    assert_eq!(std::fs::read(&stored).expect("read"), b"outside");
    assert!(!store
        .exists(&format!("{uri}/sub/loop"))
        .await
        .expect("exists"));
}

#[tokio::test]
async fn download_replaces_a_link_instead_of_writing_through_it() {
    let tmp = TempDir::new().expect("tempdir");
    let store = store(tmp.path()).await;
    let src = tmp.path().join("a");
    std::fs::write(&src, b"from store").expect("write");
    let uri = format!("{}/k/a", store.default_root());
    store.upload(&src, &uri).await.expect("upload");
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"keep me").expect("write");
    let dst = tmp.path().join("dst");
    std::os::unix::fs::symlink(&victim, &dst).expect("symlink");
    store.download(&uri, &dst).await.expect("download");
    assert_eq!(std::fs::read(&victim).expect("victim"), b"keep me");
    assert_eq!(std::fs::read(&dst).expect("dst"), b"from store");
}

#[tokio::test]
async fn root_uri_and_handles() {
    let tmp = TempDir::new().expect("tempdir");
    let s = store(tmp.path()).await;
    assert!(s.default_root().starts_with("file:///"));
    assert!(s.handles(&format!("{}/x", s.default_root())));
    assert!(!s.handles(&format!("{}x/y", s.default_root())));
}
