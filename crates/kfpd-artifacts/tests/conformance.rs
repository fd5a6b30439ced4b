//! The same cases against both backends: a local directory and S3 (moto on loopback).

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use kfpd_artifacts::{ArtifactStore, Error, Options, UploadMode};
use tempfile::TempDir;

/// A store plus a scratch directory standing in for a task's working directory.
struct Fixture {
    store: ArtifactStore,
    work: TempDir,
    _root: Option<TempDir>,
}

impl Fixture {
    fn uri(&self, output: &str) -> String {
        ArtifactStore::output_uri(
            &self.store.default_root(),
            "my-pipeline",
            "run-1",
            "train",
            &uuid::Uuid::new_v4().to_string(),
            output,
        )
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.work.path().join(rel)
    }
}

async fn local_fixture() -> Option<Fixture> {
    let root = TempDir::new().expect("tempdir");
    let store = ArtifactStore::open(Options::Local {
        root: root.path().join("artifacts"),
    })
    .await
    .expect("open local store");
    Some(Fixture {
        store,
        work: TempDir::new().expect("tempdir"),
        _root: Some(root),
    })
}

async fn s3_fixture() -> Option<Fixture> {
    let store = support::s3_store().await?;
    Some(Fixture {
        store,
        work: TempDir::new().expect("tempdir"),
        _root: None,
    })
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

/// Every file under `dir` with its contents, by `/`-separated relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn sample_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a.txt", b"alpha".to_vec()),
        ("empty.txt", Vec::new()),
        ("sub/b.txt", b"beta".to_vec()),
        ("sub/deeper/c.bin", (0..=255u8).cycle().take(5000).collect()),
        ("sub 2/name with spaces.json", b"{\"k\": 1}".to_vec()),
        (".hidden", b"dot".to_vec()),
    ];
    for (rel, data) in &files {
        write(&dir.join(rel), data);
    }
    std::fs::create_dir_all(dir.join("sub/empty-dir")).expect("mkdir");
    files.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

mod cases {
    use super::*;

    pub async fn file_roundtrip(fx: Fixture) {
        let uri = fx.uri("model");
        assert!(fx.store.handles(&uri), "{uri}");
        let src = fx.path("out/model.txt");
        write(&src, b"hello artifacts");
        assert!(fx.store.upload(&src, &uri).await.expect("upload"));
        assert!(src.exists(), "copy mode keeps the local file");
        assert!(fx.store.exists(&uri).await.expect("exists"));
        let dst = fx.path("in/nested/model.txt");
        fx.store.download(&uri, &dst).await.expect("download");
        assert_eq!(std::fs::read(&dst).expect("read"), b"hello artifacts");
        assert_eq!(
            &fx.store.read(&uri, 1024).await.expect("read")[..],
            b"hello artifacts"
        );
        // A second upload replaces the object, and a second download overwrites the file.
        write(&src, b"v2");
        assert!(fx.store.upload(&src, &uri).await.expect("upload again"));
        fx.store.download(&uri, &dst).await.expect("download again");
        assert_eq!(std::fs::read(&dst).expect("read"), b"v2");
        // The downloaded copy is the task's own: changing it leaves the store alone.
        std::fs::write(&dst, b"changed by a task").expect("write");
        assert_eq!(&fx.store.read(&uri, 1024).await.expect("read")[..], b"v2");
    }

    pub async fn large_file_roundtrip(fx: Fixture) {
        // Larger than one multipart part, so the S3 backend streams a multipart upload.
        let uri = fx.uri("big");
        let src = fx.path("big.bin");
        let data: Vec<u8> = (0..(11 * 1024 * 1024 + 123))
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        write(&src, &data);
        assert!(fx.store.upload(&src, &uri).await.expect("upload"));
        let dst = fx.path("big-copy.bin");
        fx.store.download(&uri, &dst).await.expect("download");
        assert!(
            std::fs::read(&dst).expect("read") == data,
            "content differs"
        );
    }

    pub async fn directory_tree(fx: Fixture) {
        let uri = fx.uri("dataset");
        let src = fx.path("out/dataset");
        let expected = sample_tree(&src);
        assert!(fx.store.upload(&src, &uri).await.expect("upload"));
        let dst = fx.path("in/dataset");
        fx.store.download(&uri, &dst).await.expect("download");
        assert_eq!(tree(&dst), expected);
        assert_eq!(
            std::fs::metadata(dst.join("empty.txt"))
                .expect("empty")
                .len(),
            0
        );
        // A sub-directory and a single object inside the tree.
        let sub = fx.path("in/sub");
        fx.store
            .download(&format!("{uri}/sub"), &sub)
            .await
            .expect("download sub");
        assert_eq!(
            tree(&sub).keys().cloned().collect::<Vec<_>>(),
            vec!["b.txt".to_string(), "deeper/c.bin".to_string()]
        );
        assert_eq!(
            &fx.store
                .read(&format!("{uri}/sub 2/name with spaces.json"), 100)
                .await
                .expect("read")[..],
            b"{\"k\": 1}"
        );
        assert!(matches!(
            fx.store.read(&uri, 1 << 20).await,
            Err(Error::IsDirectory { .. })
        ));
        // Uploading a directory replaces the previous one entirely.
        let src2 = fx.path("out/dataset2");
        write(&src2.join("only.txt"), b"only");
        fx.store.upload(&src2, &uri).await.expect("upload again");
        let dst2 = fx.path("in/dataset2");
        fx.store
            .download(&uri, &dst2)
            .await
            .expect("download again");
        assert_eq!(
            tree(&dst2).keys().cloned().collect::<Vec<_>>(),
            vec!["only.txt".to_string()]
        );
        // And a file may replace a directory.
        let file = fx.path("out/file");
        write(&file, b"file now");
        fx.store.upload(&file, &uri).await.expect("upload file");
        assert_eq!(
            &fx.store.read(&uri, 100).await.expect("read")[..],
            b"file now"
        );
    }

    pub async fn list_directory(fx: Fixture) {
        let uri = fx.uri("dataset");
        let src = fx.path("out/dataset");
        let expected = sample_tree(&src);
        fx.store.upload(&src, &uri).await.expect("upload");
        let listed = fx.store.list_directory(&uri).await.expect("list");
        let sizes: BTreeMap<String, u64> = expected
            .iter()
            .map(|(path, data)| (path.clone(), data.len() as u64))
            .collect();
        assert_eq!(
            listed
                .iter()
                .map(|entry| (entry.path.clone(), entry.size))
                .collect::<Vec<_>>(),
            sizes.into_iter().collect::<Vec<_>>(),
            "every file, sorted by path, with its size"
        );
        // Each listed path reads back as its own object.
        for entry in &listed {
            let data = fx
                .store
                .read(&format!("{uri}/{}", entry.path), 1 << 20)
                .await
                .expect("read entry");
            assert_eq!(data.to_vec(), expected[&entry.path], "{}", entry.path);
        }
        let sub = fx
            .store
            .list_directory(&format!("{uri}/sub/"))
            .await
            .expect("list sub");
        assert_eq!(
            sub.iter()
                .map(|entry| entry.path.as_str())
                .collect::<Vec<_>>(),
            ["b.txt", "deeper/c.bin"]
        );
        // A single object and a missing uri have nothing under them.
        for nothing in [
            format!("{uri}/a.txt"),
            fx.uri("missing"),
            format!("{uri}/su"),
        ] {
            assert!(
                matches!(
                    fx.store.list_directory(&nothing).await,
                    Err(Error::NotFound { .. })
                ),
                "{nothing}"
            );
        }
    }

    pub async fn exists_object_and_prefix(fx: Fixture) {
        let uri = fx.uri("tree");
        assert!(!fx.store.exists(&uri).await.expect("exists"));
        let src = fx.path("tree");
        write(&src.join("sub/b.txt"), b"b");
        fx.store.upload(&src, &uri).await.expect("upload");
        assert!(fx.store.exists(&uri).await.expect("prefix"));
        assert!(fx
            .store
            .exists(&format!("{uri}/sub"))
            .await
            .expect("prefix"));
        assert!(fx
            .store
            .exists(&format!("{uri}/sub/"))
            .await
            .expect("slash"));
        assert!(fx
            .store
            .exists(&format!("{uri}/sub/b.txt"))
            .await
            .expect("obj"));
        // Prefixes are whole path segments.
        assert!(!fx
            .store
            .exists(&format!("{uri}/su"))
            .await
            .expect("partial"));
        assert!(!fx
            .store
            .exists(&format!("{uri}/sub/b"))
            .await
            .expect("partial"));
        assert!(!fx.store.exists(&format!("{uri}x")).await.expect("partial"));
        // The parent of an output (the task root) is a prefix too.
        let parent = uri.rsplit_once('/').expect("parent").0;
        assert!(fx.store.exists(parent).await.expect("parent"));
    }

    pub async fn read_with_limit(fx: Fixture) {
        let uri = fx.uri("metrics");
        let src = fx.path("metrics.json");
        write(&src, &[b'x'; 100]);
        fx.store.upload(&src, &uri).await.expect("upload");
        assert_eq!(fx.store.read(&uri, 100).await.expect("read").len(), 100);
        match fx.store.read(&uri, 99).await {
            Err(Error::TooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (100, 99));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let missing = fx.uri("missing");
        match fx.store.read(&missing, 100).await {
            Err(e @ Error::NotFound { .. }) => {
                assert_eq!(e.to_string(), format!("artifact not found: {missing}"))
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(matches!(
            fx.store.download(&missing, &fx.path("m")).await,
            Err(Error::NotFound { .. })
        ));
    }

    pub async fn delete(fx: Fixture) {
        let uri = fx.uri("dataset");
        let src = fx.path("dataset");
        sample_tree(&src);
        fx.store.upload(&src, &uri).await.expect("upload");
        // Deleting one object leaves its siblings.
        fx.store
            .delete(&format!("{uri}/sub/b.txt"))
            .await
            .expect("delete one");
        assert!(!fx
            .store
            .exists(&format!("{uri}/sub/b.txt"))
            .await
            .expect("e"));
        assert!(fx.store.exists(&format!("{uri}/a.txt")).await.expect("e"));
        fx.store.delete(&uri).await.expect("delete tree");
        assert!(!fx.store.exists(&uri).await.expect("exists"));
        assert!(matches!(
            fx.store.download(&uri, &fx.path("gone")).await,
            Err(Error::NotFound { .. })
        ));
        // Deleting nothing is fine.
        fx.store.delete(&uri).await.expect("delete again");
        // A single object.
        let one = fx.uri("one");
        write(&fx.path("one"), b"1");
        fx.store
            .upload(&fx.path("one"), &one)
            .await
            .expect("upload");
        fx.store.delete(&one).await.expect("delete");
        assert!(!fx.store.exists(&one).await.expect("exists"));
    }

    pub async fn missing_local_path(fx: Fixture) {
        let uri = fx.uri("never-written");
        let uploaded = fx
            .store
            .upload(&fx.path("does/not/exist"), &uri)
            .await
            .expect("a missing local path is not an error");
        assert!(!uploaded);
        assert!(!fx.store.exists(&uri).await.expect("exists"));
    }

    pub async fn upload_move(fx: Fixture) {
        let uri = fx.uri("moved");
        let src = fx.path("moved.txt");
        write(&src, b"moved");
        assert!(fx
            .store
            .upload_with(&src, &uri, UploadMode::Move)
            .await
            .expect("upload"));
        assert!(!src.exists(), "move removes the local file");
        assert_eq!(&fx.store.read(&uri, 100).await.expect("read")[..], b"moved");
        let dir_uri = fx.uri("moved-dir");
        let dir = fx.path("moved-dir");
        let expected = sample_tree(&dir);
        fx.store
            .upload_with(&dir, &dir_uri, UploadMode::Move)
            .await
            .expect("upload dir");
        assert!(!dir.exists(), "move removes the local directory");
        let back = fx.path("back");
        fx.store.download(&dir_uri, &back).await.expect("download");
        assert_eq!(tree(&back), expected);
    }

    pub async fn traversal_rejected(fx: Fixture) {
        let root = fx.store.default_root();
        let src = fx.path("f");
        write(&src, b"f");
        let bad = [
            format!("{root}/../escape"),
            format!("{root}/a/../../escape"),
            format!("{root}/a/./b"),
            format!("{root}/a/%2e%2e/%2E%2e/escape"),
            format!("{root}/a/..%2f..%2fescape"),
            format!("{root}//escape"),
            format!("{root}/a\\..\\escape"),
            format!("{root}/a/\u{1}b"),
        ];
        for uri in &bad {
            let dst = fx.path("dst");
            let results = [
                fx.store.upload(&src, uri).await.map(|_| ()),
                fx.store.download(uri, &dst).await,
                fx.store.read(uri, 10).await.map(|_| ()),
                fx.store.exists(uri).await.map(|_| ()),
                fx.store.delete(uri).await,
            ];
            for r in results {
                assert!(
                    matches!(r, Err(Error::InvalidUri { .. })),
                    "{uri}: expected InvalidUri, got {r:?}"
                );
            }
        }
        // URIs of other stores are refused, not mapped.
        for uri in [
            "minio://some-other-bucket/v2/artifacts/x",
            "s3://some-other-bucket/x",
            "file:///elsewhere/x",
            "gs://bucket/x",
            "relative/path",
        ] {
            assert!(!fx.store.handles(uri), "{uri}");
            assert!(
                matches!(fx.store.exists(uri).await, Err(Error::Unsupported { .. })),
                "{uri}"
            );
        }
        // Nothing escaped: the store's root has nothing named escape anywhere.
        assert!(!fx
            .store
            .exists(&format!("{root}/escape"))
            .await
            .expect("exists"));
    }

    pub async fn output_uris(fx: Fixture) {
        let root = fx.store.default_root();
        let uri = ArtifactStore::output_uri(&format!("{root}/"), "p", "r", "t", "i", "o");
        assert_eq!(uri, format!("{root}/p/r/t/i/o"));
        assert!(fx.store.handles(&uri));
        write(&fx.path("o"), b"o");
        fx.store.upload(&fx.path("o"), &uri).await.expect("upload");
        assert!(fx
            .store
            .exists(&format!("{root}/p/r/t"))
            .await
            .expect("task"));
        assert!(fx.store.exists(&format!("{root}/p/r")).await.expect("run"));
    }
}

macro_rules! conformance {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(fx) = $fixture().await else {
                            return;
                        };
                        cases::$name(fx).await;
                    }
                };
            }

            case!(file_roundtrip);
            case!(large_file_roundtrip);
            case!(directory_tree);
            case!(list_directory);
            case!(exists_object_and_prefix);
            case!(read_with_limit);
            case!(delete);
            case!(missing_local_path);
            case!(upload_move);
            case!(traversal_rejected);
            case!(output_uris);
        }
    };
}

conformance!(local, local_fixture);
conformance!(s3, s3_fixture);

#[tokio::test]
async fn local_default_root_is_a_file_uri() {
    let fx = local_fixture().await.expect("fixture");
    let root = fx.store.default_root();
    let dir = std::fs::canonicalize(fx._root.as_ref().expect("root").path().join("artifacts"))
        .expect("canonical");
    assert_eq!(root, format!("file://{}", dir.display()));
}

#[tokio::test]
async fn s3_default_root_and_s3_scheme() {
    let Some(moto) = support::moto() else {
        return;
    };
    let bucket = support::unique_bucket("root");
    let store = ArtifactStore::open(support::s3_options(&moto.endpoint, &bucket, true))
        .await
        .expect("open");
    assert_eq!(
        store.default_root(),
        format!("minio://{bucket}/v2/artifacts")
    );
    // s3:// names the same objects as minio://.
    let work = TempDir::new().expect("tempdir");
    let src = work.path().join("f");
    write(&src, b"same object");
    store
        .upload(&src, &format!("minio://{bucket}/k/f"))
        .await
        .expect("upload");
    assert!(store.handles(&format!("s3://{bucket}/k/f")));
    assert_eq!(
        &store
            .read(&format!("s3://{bucket}/k/f"), 100)
            .await
            .expect("read")[..],
        b"same object"
    );
}
