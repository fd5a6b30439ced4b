//! Running the real `kfpd serve` binary: start to healthy, memory, stop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for the server to listen and answer healthz.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_EVERY: Duration = Duration::from_millis(2);

pub struct Kfpd {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Spawn until the first 200 from healthz.
    pub start_to_healthy: Duration,
    /// Spawn until the "listening" line.
    pub start_to_listening: Duration,
}

/// How to start `kfpd serve`.
pub struct Launch {
    pub bin: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
}

impl Launch {
    pub async fn start(&self, client: &reqwest::Client) -> Result<Kfpd> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let started = Instant::now();
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("kfpd exited at once"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(address) = line.trim().strip_prefix("kfpd listening on ") {
                    return Ok(address.to_string());
                }
            }
            Err(anyhow!("kfpd exited before listening"))
        })
        .await;
        let base = match listening {
            Ok(Ok(base)) => base,
            Ok(Err(error)) => return Err(error.context(self.log_tail())),
            Err(_) => bail!("kfpd did not listen within {START_TIMEOUT:?}"),
        };
        let start_to_listening = started.elapsed();
        // Keep draining stdout so that the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let health = format!("{base}/apis/v2beta1/healthz");
        loop {
            if started.elapsed() > START_TIMEOUT {
                bail!("kfpd did not become healthy within {START_TIMEOUT:?}");
            }
            if let Ok(response) = client.get(&health).send().await {
                if response.status() == reqwest::StatusCode::OK {
                    break;
                }
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        Ok(Kfpd {
            child,
            pid,
            base,
            start_to_healthy: started.elapsed(),
            start_to_listening,
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("kfpd log ({}):\n{tail}", self.log.display())
    }
}

impl Kfpd {
    /// `VmRSS` and `VmHWM` (peak) of the server process, in KiB.
    pub fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("reading /proc/<pid>/status")?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc/{}/status", self.pid))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGTERM (graceful shutdown), then SIGKILL if it has not exited in 10 s.
    pub async fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// `$CARGO_TARGET_DIR/release/kfpd`, else `target/release/kfpd`.
pub fn default_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("target").to_path_buf());
    target.join("release").join("kfpd")
}
