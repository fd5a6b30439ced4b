//! Spawning the real `kfpd serve` on a free loopback port with a temp data dir.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    child: Child,
    pub base: String,
    /// `http://127.0.0.1:PORT` of the gRPC listener (None with `--grpc-addr off`).
    pub grpc: Option<String>,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The upstream pipeline corpus; a test reading it starts with
/// `kfpd_testdata::require_or_skip!(Corpus)`, which skips it when the corpus is absent.
pub fn corpus_dir() -> PathBuf {
    kfpd_testdata::corpus_dir()
        .expect("the upstream corpus is absent: start the test with require_or_skip!(Corpus)")
}

/// A pipeline committed under `tests/pipelines/` (always present).
pub fn pipeline(relative: &str) -> PathBuf {
    kfpd_testdata::pipeline(relative)
}

/// The first YAML document of a committed pipeline, as JSON (a `pipeline_spec`).
pub fn pipeline_spec(relative: &str) -> Value {
    spec_of_file(&pipeline(relative))
}

/// The first YAML document of a pipeline file, as JSON.
pub fn spec_of_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let first = text.split("\n---\n").next().unwrap_or_default();
    serde_yaml::from_str(first).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

impl Server {
    /// Starts `kfpd serve` with SQLite in a fresh temp dir.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Server::start_in(dir, args)
    }

    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Server {
        Server::start_full(dir, args, &[])
    }

    /// Starts with extra environment variables (e.g. an object store).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Server::start_full(dir, args, env)
    }

    /// Starts in `dir` (a data dir of an earlier server, for a restart) with extra
    /// environment variables.
    pub fn start_full_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_full(dir, args, env)
    }

    fn start_full(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kfpd"));
        command
            .arg("serve")
            .arg("--http-addr")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path())
            .args(grpc_port_args(args))
            .args(args)
            .env("KFPD_LOG", "warn")
            // API tests check the states the API sets; execution tests pass
            // `--executor local`, which wins over this variable.
            .env("KFPD_EXECUTOR", "none")
            .env_remove("DBCONFIG_HOST")
            .env_remove("DBDRIVERNAME")
            // After the defaults above, so a test may set KFPD_LOG or KFPD_EXECUTOR.
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The caller's variables win over the defaults above (KFPD_LOG=info to see
        // info lines).
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("spawn kfpd");
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr_pipe);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                }
                line.clear();
            }
        });
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(stdout);
            for line in reader.lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("kfpd listening on ") {
                    let _ = sender.send(address.trim().to_string());
                }
            }
        });
        let grpc_enabled = !args.windows(2).any(|pair| pair == ["--grpc-addr", "off"]);
        let mut base = None;
        let mut grpc = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while base.is_none() || (grpc_enabled && grpc.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(address) if address.starts_with("grpc://") => {
                    grpc = Some(address.replacen("grpc://", "http://", 1));
                }
                Ok(address) => base = Some(address),
                Err(_) => {
                    let _ = child.kill();
                    let text = stderr.lock().map(|t| t.clone()).unwrap_or_default();
                    panic!("kfpd did not start within 30 s; stderr:\n{text}");
                }
            }
        }
        let base = base.unwrap_or_default();
        // No idle connections kept: a server shared by the tests of a file (a
        // static) outlives each test's runtime, and a pooled connection whose task
        // ran on an ended runtime fails the next request ("runtime dropped the
        // dispatch task").
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        Server {
            child,
            base,
            grpc,
            dir,
            client,
            stderr,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/apis/v2beta1{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        read(response).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        read(response).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE");
        read(response).await
    }

    pub async fn upload(&self, query: &str, file_name: &str, bytes: Vec<u8>) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_string())
            .mime_str("application/octet-stream")
            .expect("mime");
        let form = reqwest::multipart::Form::new().part("uploadfile", part);
        let response = self
            .client
            .post(self.url(&format!("/pipelines/upload{query}")))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        read(response).await
    }

    /// Uploads a committed pipeline (`tests/pipelines/`) under this name and
    /// returns the pipeline JSON.
    pub async fn upload_pipeline(&self, relative: &str, name: &str) -> Value {
        self.upload_file(&pipeline(relative), name).await
    }

    /// Uploads a pipeline file under this name and returns the pipeline JSON.
    pub async fn upload_file(&self, path: &Path, name: &str) -> Value {
        let bytes =
            std::fs::read(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().to_string())
            .unwrap_or_else(|| "pipeline.yaml".to_string());
        let (status, body) = self
            .upload(&format!("?name={name}"), &file_name, bytes)
            .await;
        assert_eq!(status, 200, "upload {}: {body}", path.display());
        body
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Asks the server to shut down as an operator would (SIGTERM) and returns
    /// its exit status, or None if it was still running after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|status| status.success());
        assert!(signalled, "cannot send SIGTERM to kfpd");
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("placeholder");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free gRPC port unless the test picks its own `--grpc-addr`, so parallel
/// servers never compete for the default 8887.
fn grpc_port_args(args: &[&str]) -> Vec<&'static str> {
    if args.contains(&"--grpc-addr") {
        Vec::new()
    } else {
        vec!["--grpc-addr", "127.0.0.1:0"]
    }
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Runs `kfpd serve` expecting it to exit; returns (success, stderr) or None if it
/// was still running after `limit`.
pub fn run_to_exit(args: &[&str], limit: Duration) -> Option<(bool, String)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .arg("serve")
        .arg("--http-addr")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path())
        .args(grpc_port_args(args))
        .args(args)
        .env("KFPD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kfpd");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut text = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut text);
            }
            return Some((status.success(), text));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server URL of a PostgreSQL or MySQL test database, created by the test;
/// None (with a message) when not reachable outside CI.
pub async fn database_url(kind: &str) -> Option<String> {
    let (variable, default) = match kind {
        "postgres" => (
            "KFPD_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432",
        ),
        _ => ("KFPD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
    };
    let server = std::env::var(variable).unwrap_or_else(|_| default.to_string());
    let address = server.rsplit('@').next().unwrap_or_default().to_string();
    let reachable = tokio::net::TcpStream::connect(&address).await.is_ok();
    if !reachable {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{kind} at {address} is required under CI=true");
        }
        eprintln!(
            "skipping {kind} test: nothing listens on {address}; start {kind} or set {variable}"
        );
        return None;
    }
    let name = format!(
        "kfpd_serve_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    Some(format!("{server}/{name}"))
}

/// A static is never dropped, so a server shared by a whole test binary would
/// outlive it: a small watcher process stops it (SIGTERM) once this process exited.
pub fn stop_after_this_process(server_pid: u32) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -TERM {server_pid}",
        std::process::id()
    );
    let spawned = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        eprintln!("cannot start the watcher that stops the test server: {error}");
    }
}

/// `kfpd serve --executor local` with its artifacts in `bucket` of the S3 server at
/// `endpoint` (`http://host:port`), configured through upstream's variables.
pub fn start_on_s3(endpoint: &str, bucket: &str) -> Server {
    let address = endpoint.trim_start_matches("http://");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    Server::start_with_env(
        &["--executor", "local"],
        &[
            ("OBJECTSTORECONFIG_HOST", host),
            ("OBJECTSTORECONFIG_PORT", port),
            ("OBJECTSTORECONFIG_SECURE", "false"),
            ("OBJECTSTORECONFIG_BUCKETNAME", bucket),
            ("OBJECTSTORECONFIG_ACCESSKEY", "kfpd-test"),
            ("OBJECTSTORECONFIG_SECRETACCESSKEY", "kfpd-test-secret"),
        ],
    )
}
