//! Running one task process: its own process group, output captured into a log file line by
//! line, cancellation that takes down every process of the task.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Environment, Error, Exit, Inherit, ProcessSpec};

/// Time a canceled task gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How often a terminating group is looked at.
const POLL: Duration = Duration::from_millis(50);
/// How long output still in the pipes may take to arrive once the task's processes are gone
/// (longer only when something that left the process group keeps a pipe open).
const DRAIN: Duration = Duration::from_secs(2);
/// Longest piece of a line held back waiting for its newline.
const MAX_LINE: usize = 64 * 1024;

pub(crate) async fn run(
    environment: &Environment,
    inherit: Inherit,
    spec: ProcessSpec,
    cancel: CancellationToken,
) -> Result<Exit, Error> {
    let Some(command) = spec.argv.first().cloned() else {
        return Err(Error::EmptyCommand { image: spec.image });
    };
    let path = environment
        .search_path(std::env::var_os("PATH").as_deref())
        .map_err(|source| Error::Environment {
            image: spec.image.clone(),
            path: environment.bin.clone(),
            source,
        })?;
    // argv[0] is looked up on the PATH the task will see, which the component may set itself.
    let lookup_path = spec
        .env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| OsString::from(value))
        .unwrap_or_else(|| path.clone());

    match fs::metadata(&spec.cwd) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::WorkingDir {
                command,
                path: spec.cwd,
                source: io::Error::other("not a directory"),
            })
        }
        Err(source) => {
            return Err(Error::WorkingDir {
                command,
                path: spec.cwd,
                source,
            })
        }
    }
    let Some(program) = resolve_command(&command, &lookup_path, &spec.cwd) else {
        return Err(Error::CommandNotFound {
            image: spec.image,
            command,
        });
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(|source| Error::Log {
            path: spec.log_path.clone(),
            source,
        })?;
    if cancel.is_cancelled() {
        return Ok(Exit::canceled_before_start());
    }

    // One pipe for stdout and stderr, as `2>&1` would do: the log keeps the order in
    // which the task wrote, so its last line is the last thing it said (with two
    // pipes, whichever was read last came last).
    let spawn_error = |source: io::Error| Error::Spawn {
        image: spec.image.clone(),
        command: command.clone(),
        source,
    };
    let (output, output_writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|errno| spawn_error(errno.into()))?;
    let error_writer = output_writer.try_clone().map_err(spawn_error)?;
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg0(&command)
        .args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(inherit.environment())
        // Would point the environment's interpreter at another installation.
        .env_remove("PYTHONHOME")
        .env("PATH", &path)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        // Python buffers stdout in blocks when it is a pipe and would write it after
        // an error message that went to stderr; a component can still set it to "".
        .env("PYTHONUNBUFFERED", "1")
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("VIRTUAL_ENV", &environment.root)
        .stdin(Stdio::null())
        .stdout(Stdio::from(output_writer))
        .stderr(Stdio::from(error_writer))
        // Its own group, so the task's whole tree can be signalled at once.
        .process_group(0);
    let started = Instant::now();
    let spawned = cmd.spawn();
    // Our copies of the pipe's write end go now, so the pipe ends with the task's.
    drop(cmd);
    let mut child = spawned.map_err(spawn_error)?;
    let output = tokio::net::unix::pipe::Receiver::from_owned_fd(output).map_err(spawn_error)?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .filter(|pid| *pid > 1);
    // Kills the group if this future is dropped before the task is over.
    let mut guard = GroupGuard(pgid);
    tracing::debug!(command = %command, pid = ?pgid, cwd = %spec.cwd.display(), environment = %environment.root.display(), "task process started");

    let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::task::spawn_blocking(move || write_log(log, rx));
    let pumps = vec![tokio::spawn(pump(output, tx))];

    let (status, canceled) = tokio::select! {
        biased;
        status = child.wait() => (status, false),
        () = cancel.cancelled() => (terminate(&mut child, pgid, &command).await, true),
    };
    let duration = started.elapsed();
    let status: ExitStatus = status.map_err(|source| Error::Wait {
        command: command.clone(),
        source,
    })?;

    // The task ends with its main process, as a container does: stragglers go with it.
    if let Some(pgid) = pgid {
        if group_alive(pgid) {
            tracing::debug!(command = %command, pgid, "killing processes left behind by the task");
            let _ = signal_group(pgid, libc::SIGKILL);
        }
    }
    guard.0 = None;

    let drain_until = tokio::time::Instant::now() + DRAIN;
    for pump in pumps {
        let abort = pump.abort_handle();
        if tokio::time::timeout_at(drain_until, pump).await.is_err() {
            tracing::warn!(command = %command, "task output still open after its processes ended; not waiting for it");
            abort.abort();
        }
    }
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(path = %spec.log_path.display(), error = %e, "writing task log failed")
        }
        Err(e) => {
            tracing::warn!(path = %spec.log_path.display(), error = %e, "task log writer failed")
        }
    }

    let exit = Exit {
        code: status.code(),
        signal: status.signal(),
        canceled,
        duration,
    };
    tracing::debug!(command = %command, ?exit, "task process ended");
    Ok(exit)
}

/// SIGTERM to the group, SIGKILL after [`GRACE`] if anything of it is still alive.
async fn terminate(child: &mut Child, pgid: Option<i32>, command: &str) -> io::Result<ExitStatus> {
    let Some(pgid) = pgid else {
        child.start_kill()?;
        return child.wait().await;
    };
    let _ = signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + GRACE;
    let mut status = None;
    loop {
        if status.is_none() {
            status = child.try_wait()?;
        }
        if status.is_some() && !group_alive(pgid) {
            break;
        }
        if Instant::now() >= deadline {
            tracing::info!(
                command,
                pgid,
                "task still running after SIGTERM; sending SIGKILL"
            );
            let _ = signal_group(pgid, libc::SIGKILL);
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    match status {
        Some(status) => Ok(status),
        None => child.wait().await,
    }
}

/// Kills the task's process group when dropped while armed.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // The child itself is reaped by tokio's orphan handling once it is dead.
            let _ = signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// Reads one output stream and sends it on in whole lines (or [`MAX_LINE`] pieces).
async fn pump<R: AsyncRead + Unpin>(mut reader: R, tx: mpsc::Sender<Vec<u8>>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "reading task output failed");
                break;
            }
        };
        pending.extend_from_slice(&chunk[..n]);
        let complete = match pending.iter().rposition(|b| *b == b'\n') {
            Some(last) => last + 1,
            None if pending.len() >= MAX_LINE => pending.len(),
            None => continue,
        };
        let rest = pending.split_off(complete);
        let mut lines = std::mem::replace(&mut pending, rest);
        if lines.last() != Some(&b'\n') {
            lines.push(b'\n');
        }
        if tx.send(lines).await.is_err() {
            return;
        }
    }
    if !pending.is_empty() {
        // An unterminated last line still ends a line in the log, so the other stream's next
        // line does not run on after it.
        pending.push(b'\n');
        let _ = tx.send(pending).await;
    }
}

/// Appends what the pumps send, each piece with one `write` on an unbuffered file so readers
/// tailing the log see it at once. Keeps draining after a write error so the task never blocks.
fn write_log(mut file: File, mut rx: mpsc::Receiver<Vec<u8>>) -> io::Result<()> {
    let mut failure = None;
    while let Some(mut batch) = rx.blocking_recv() {
        while batch.len() < MAX_LINE {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if failure.is_none() {
            if let Err(e) = file.write_all(&batch) {
                failure = Some(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Finds `command` the way `execvp` would, on `path`, relative entries taken from `cwd`.
fn resolve_command(command: &str, path: &OsStr, cwd: &Path) -> Option<PathBuf> {
    if command.is_empty() {
        return None;
    }
    if command.contains('/') {
        let candidate = cwd.join(command);
        return fs::metadata(&candidate).is_ok().then_some(candidate);
    }
    std::env::split_paths(path)
        .map(|dir| cwd.join(dir).join(command))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn signal_group(pgid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: killpg only sends a signal; pgid is a group this runtime created (never 0 or 1,
    // which would mean our own group or every process).
    if unsafe { libc::killpg(pgid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn pid_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether any process of group `pgid` is still running. Zombies do not count: an orphan's
/// zombie is only reaped by init, which in some containers never does it.
fn group_alive(pgid: i32) -> bool {
    if let Err(e) = signal_group(pgid, 0) {
        if e.raw_os_error() == Some(libc::ESRCH) {
            return false;
        }
    }
    live_group_members(pgid).is_none_or(|n| n > 0)
}

/// Counts non-zombie processes in group `pgid` from `/proc`; `None` where `/proc` is not there.
fn live_group_members(pgid: i32) -> Option<usize> {
    let entries = fs::read_dir("/proc").ok()?;
    let mut live = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may contain anything, so split after its ')'.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        if pgrp == Some(pgid) && !matches!(state, Some("Z") | Some("X")) {
            live += 1;
        }
    }
    Some(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        let path = OsString::from("/nonexistent-dir:/bin:/usr/bin");
        let sh = resolve_command("sh", &path, Path::new("/")).expect("sh on PATH");
        assert!(sh.ends_with("sh"));
        assert!(resolve_command("no-such-command-kfpd", &path, Path::new("/")).is_none());
        assert!(resolve_command("", &path, Path::new("/")).is_none());
        assert_eq!(
            resolve_command("/bin/sh", &path, Path::new("/tmp")),
            Some(PathBuf::from("/bin/sh"))
        );
        assert!(resolve_command("./no-such-script", &path, Path::new("/")).is_none());
    }

    #[test]
    fn own_process_is_alive_and_its_group_is_seen() {
        assert!(pid_exists(std::process::id() as i32));
        assert!(!pid_exists(0));
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        assert!(group_alive(own));
        assert!(live_group_members(own).is_none_or(|n| n >= 1));
    }

    #[tokio::test]
    async fn pump_splits_lines_and_terminates_the_last() {
        let (tx, mut rx) = mpsc::channel(16);
        pump(&b"one\ntwo\nthree"[..], tx).await;
        let mut all = Vec::new();
        while let Some(piece) = rx.recv().await {
            assert_eq!(piece.last(), Some(&b'\n'));
            all.extend(piece);
        }
        assert_eq!(all, b"one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn pump_cuts_endless_lines() {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        let long = vec![b'x'; MAX_LINE * 3];
        let reader = tokio::spawn(async move {
            let mut pieces = 0;
            let mut bytes = 0;
            while let Some(piece) = rx.recv().await {
                assert!(piece.len() <= MAX_LINE + 16 * 1024 + 1);
                pieces += 1;
                bytes += piece.len();
            }
            (pieces, bytes)
        });
        pump(&long[..], tx).await;
        let (pieces, bytes) = reader.await.expect("reader");
        assert!(pieces >= 3, "{pieces}");
        assert!(bytes >= MAX_LINE * 3);
    }
}
