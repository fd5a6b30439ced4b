//! A real S3 server for the tests: moto in server mode on 127.0.0.1, one per test binary.
//!
//! The interpreter is `$KFPD_TEST_MOTO_PYTHON` when set, else `$KFPD_E2E_VENV/bin/python`
//! (default venv `~/.cache/kfpd-e2e-venv`) when it can import `moto.server`, else `python3`.
//! Without one the S3 tests are skipped with a message, except under `CI=true`, where they
//! fail.
//!
//! The server reads its standard input until end of file and then stops, so it ends with the
//! test process however that ends.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kfpd_artifacts::{ArtifactStore, Options};

const SERVER: &str = r#"
import sys
PREAMBLE
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"#;

pub struct Moto {
    pub endpoint: String,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("KFPD_TEST_MOTO_PYTHON").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    let venv = std::env::var_os("KFPD_E2E_VENV")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kfpd-e2e-venv"))
        });
    if let Some(venv) = venv {
        let py = venv.join("bin/python");
        if py.exists() {
            out.push(py);
        }
    }
    out.push(PathBuf::from("python3"));
    out
}

fn can_import_moto(python: &PathBuf) -> bool {
    Command::new(python)
        .args(["-c", "import moto.server"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Makes moto's signature check canonicalize the query string as SigV4 says (every name and
/// value percent-encoded except unreserved characters). Moto rebuilds the URL from the
/// decoded query, so a correctly signed `prefix=a%2Fb` would otherwise be checked as
/// `prefix=a/b` and refused.
pub const SIGV4_QUERY_FIX: &str = r#"
import botocore.auth
from urllib.parse import quote, unquote
def _canonical_query_string_url(self, parts):
    if not parts.query:
        return ""
    pairs = []
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))
botocore.auth.SigV4Auth._canonical_query_string_url = _canonical_query_string_url
"#;

fn start() -> Option<Moto> {
    start_with(&[], "")
}

/// A server of its own, with extra environment and Python run before moto starts; stopped
/// when dropped.
pub fn start_with(env: &[(&str, &str)], preamble: &str) -> Option<Moto> {
    let tried = candidates();
    let Some(python) = tried.iter().find(|p| can_import_moto(p)).cloned() else {
        let msg = format!(
            "no python that can import moto.server (tried {tried:?}); install moto[server] or set KFPD_TEST_MOTO_PYTHON"
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}");
        }
        // Straight to stderr, past the test harness's output capture, so the skip is seen.
        let _ = writeln!(std::io::stderr(), "skipping S3 tests: {msg}");
        return None;
    };
    let mut child = Command::new(&python)
        .args(["-c", &SERVER.replace("PREAMBLE", preamble)])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start moto with {python:?}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stdin = child.stdin.take().expect("piped stdin");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    // Drain stderr so that the server never blocks on a full pipe.
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match stderr.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if buf.len() < 64 * 1024 {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        let _ = etx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    let port = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(line)) if line.trim().parse::<u16>().is_ok() => line.trim().to_string(),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let log = erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
            panic!("moto did not start ({other:?}): {log}");
        }
    };
    Some(Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _child: Mutex::new(child),
        _stdin: Mutex::new(stdin),
    })
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(child) = self._child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The shared server, or None when the S3 tests are skipped.
pub fn moto() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(start).as_ref()
}

pub fn unique_bucket(tag: &str) -> String {
    format!("kfpd-{tag}-{}", uuid::Uuid::new_v4().simple())
}

pub fn s3_options(endpoint: &str, bucket: &str, create_bucket: bool) -> Options {
    Options::S3 {
        endpoint: endpoint.to_string(),
        region: "us-east-1".to_string(),
        bucket: bucket.to_string(),
        access_key: Some("kfpd-test".to_string()),
        secret_key: Some("kfpd-test-secret".to_string()),
        create_bucket,
    }
}

/// A fresh bucket on the shared server.
pub async fn s3_store() -> Option<ArtifactStore> {
    let moto = moto()?;
    let bucket = unique_bucket("t");
    Some(
        ArtifactStore::open(s3_options(&moto.endpoint, &bucket, true))
            .await
            .expect("open s3 store"),
    )
}

pub const ALL_OF_S3: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

/// Creates an IAM user with the policy and returns its access key: three requests.
/// Moto lets the first `INITIAL_NO_AUTH_ACTION_COUNT` requests through without
/// authentication; the fake authorization header only routes the requests to IAM.
pub async fn iam_user_with(endpoint: &str, name: &str, policy: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/iam/aws4_request, \
                SignedHeaders=host, Signature=0";
    let calls: Vec<Vec<(&str, &str)>> = vec![
        vec![("Action", "CreateUser"), ("UserName", name)],
        vec![
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "s3"),
            ("PolicyDocument", policy),
        ],
        vec![("Action", "CreateAccessKey"), ("UserName", name)],
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
