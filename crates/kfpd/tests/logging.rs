//! Log lines of the real binary when stderr is a pipe, as under a log collector or
//! `kfpd serve 2> kfpd.log`: no colour codes, and one JSON object a line with
//! `--log-format json`; on a terminal, colour unless `NO_COLOR` is set.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Starts `kfpd serve` with `args` and `env`, waits until it listens, stops it with
/// SIGTERM and returns everything it wrote to stderr.
fn serve_and_stop(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .arg("serve")
        .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "off"])
        .args(["--executor", "none", "--scheduler", "off"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .env("KFPD_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("KFPD_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kfpd");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let collected = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("kfpd listening on http://"));
    if listening {
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .is_ok_and(|status| status.success());
        assert!(signalled, "cannot send SIGTERM to kfpd");
    }
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = collected.join().expect("stderr reader");
    assert!(listening, "kfpd did not start; stderr:\n{text}");
    text
}

#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    let text = serve_and_stop(&[], &[]);
    assert!(text.contains("kfpd serving REST"), "{text}");
    assert!(text.contains("shutting down"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in piped logs:\n{text:?}"
    );
}

/// What `kfpd serve` writes to a terminal (a pseudo-terminal made by Python's `pty`)
/// before it stops because its port is taken.
fn on_a_terminal(no_color: Option<&str>) -> String {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new("python3");
    command
        .args(["-c", "import pty, sys; pty.spawn(sys.argv[1:])"])
        .arg(env!("CARGO_BIN_EXE_kfpd"))
        .args(["serve", "--http-addr", &addr, "--grpc-addr", "off"])
        .args(["--executor", "none", "--scheduler", "off"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("KFPD_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("KFPD_LOG_FORMAT")
        .stdin(Stdio::null());
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let output = command.output().expect("run kfpd under a pty");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn text_logs_on_a_terminal_are_coloured_unless_no_color_is_set() {
    let coloured = on_a_terminal(None);
    assert!(
        coloured.contains("applying schema migration"),
        "{coloured:?}"
    );
    assert!(
        coloured.contains('\u{1b}'),
        "no colour on a terminal: {coloured:?}"
    );
    // An empty NO_COLOR counts as unset.
    assert!(on_a_terminal(Some("")).contains('\u{1b}'));
    let plain = on_a_terminal(Some("1"));
    assert!(plain.contains("applying schema migration"), "{plain:?}");
    assert!(
        !plain.contains('\u{1b}'),
        "colour despite NO_COLOR: {plain:?}"
    );
}

#[test]
fn json_logs_are_one_object_a_line() {
    for (args, env) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("KFPD_LOG_FORMAT", "json")][..]),
    ] {
        let text = serve_and_stop(args, env);
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let lines: Vec<Value> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}"))
            })
            .collect();
        for line in &lines {
            assert!(line["timestamp"].is_string(), "{line}");
            assert!(line["level"].is_string(), "{line}");
            assert!(line["message"].is_string(), "{line}");
            assert!(line["fields"].is_object(), "{line}");
        }
        let serving = lines
            .iter()
            .find(|line| line["message"] == "kfpd serving REST")
            .unwrap_or_else(|| panic!("no serving line in {text}"));
        assert_eq!(serving["level"], "INFO");
        let addr = serving["fields"]["addr"].as_str().unwrap_or_default();
        assert!(addr.starts_with("127.0.0.1:"), "{serving}");
        assert!(
            lines.iter().any(|line| line["message"] == "shutting down"),
            "{text}"
        );
    }
}

#[test]
fn an_unknown_log_format_is_refused_by_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_kfpd"))
        .args([
            "serve",
            "--log-format",
            "yaml",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run kfpd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("log_format") && stderr.contains("\"yaml\""),
        "{stderr}"
    );
}
