//! SIGTERM to the real `kfpd serve`: a call in flight is answered, the running
//! task's process is stopped before the server exits, and the next start on the
//! same data directory resumes the interrupted run to success.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};

/// A one-task pipeline whose task sleeps `seconds`, caching off.
fn sleeper(seconds: u32) -> Value {
    let yaml = std::fs::read_to_string(common::pipeline("hello.yaml")).expect("hello.yaml");
    let yaml = yaml
        .replace("- echo\n", "- sleep\n")
        .replace("- hello world", &format!("- '{seconds}'"))
        .replace("enableCache: true", "enableCache: false");
    assert!(yaml.contains("- sleep"), "hello.yaml changed shape");
    kfpd_ir::read_package("sleep.yaml", yaml.as_bytes())
        .expect("sleep package")
        .api_pipeline_spec()
}

/// Pids of live processes whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = args
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if cmdline == wanted && !zombie {
            pids.push(pid);
        }
    }
    pids
}

async fn wait_until<F, Fut>(limit: Duration, what: &str, server: &Server, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > limit {
            panic!(
                "{what} not seen within {limit:?}; stderr:\n{}",
                server.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_calls_in_flight_stops_tasks_and_the_next_start_resumes() {
    // A sleep length no other test uses, so its process can be found in /proc.
    let seconds = 7;
    let sleep_args = ["sleep", "7"];
    let mut server = Server::start_with_env(&["--executor", "local"], &[("KFPD_LOG", "info")]);
    let (status, run) = server
        .post(
            "/runs",
            &json!({"display_name": "interrupted", "pipeline_spec": sleeper(seconds)}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().expect("run_id").to_string();
    wait_until(
        Duration::from_secs(60),
        "the task process",
        &server,
        || async { !processes_running(&sleep_args).is_empty() },
    )
    .await;

    // A request whose body is still arriving when the signal comes.
    let body = json!({"display_name": "sent during shutdown"}).to_string();
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let head = format!(
        "POST /apis/v2beta1/experiments HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    let (first, rest) = body.split_at(body.len() / 2);
    stream
        .write_all(first.as_bytes())
        .expect("write half the body");
    stream.flush().expect("flush");
    // The server has read the head: the call is in flight.
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .is_ok_and(|status| status.success());
    assert!(signalled, "cannot signal kfpd");
    std::thread::sleep(Duration::from_millis(300));
    stream
        .write_all(rest.as_bytes())
        .expect("write the rest of the body");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "call in flight not answered: {answer}\nstderr:\n{}",
        server.stderr()
    );
    assert!(answer.contains("sent during shutdown"), "{answer}");

    let exit = server
        .terminate(Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!(
                "kfpd still running 20 s after SIGTERM:\n{}",
                server.stderr()
            )
        });
    assert!(exit.success(), "{exit:?}\n{}", server.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(seconds.into()),
        "shutdown waited for the task to finish instead of stopping it"
    );
    assert!(
        processes_running(&sleep_args).is_empty(),
        "the task process outlived the server:\n{}",
        server.stderr()
    );
    let stderr = server.stderr();
    assert!(stderr.contains("run interrupted by shutdown"), "{stderr}");

    // The next start resumes the run, which was left RUNNING.
    let dir = server.stop();
    let server = Server::start_in(dir, &["--executor", "local"]);
    let (status, experiments) = server.get("/experiments").await;
    assert_eq!(status, 200);
    assert!(
        experiments.to_string().contains("sent during shutdown"),
        "the call answered during shutdown was not stored: {experiments}"
    );
    wait_until(
        Duration::from_secs(90),
        "the resumed run succeeded",
        &server,
        || async {
            let (_, run) = server.get(&format!("/runs/{run_id}")).await;
            run["state"] == "SUCCEEDED"
        },
    )
    .await;
}
