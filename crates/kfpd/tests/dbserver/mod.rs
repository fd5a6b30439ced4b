//! A PostgreSQL or MariaDB server of the test's own (own data directory, own port on
//! 127.0.0.1), which the test may stop and start again: never the shared servers.
//! PostgreSQL comes from `/usr/lib/postgresql/*/bin` (`initdb`, `pg_ctl`; run as the
//! `postgres` user when the test runs as root), MariaDB from `mariadb-install-db` and
//! `mariadbd` on `PATH` or in `/usr/sbin`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mariadb,
}

pub struct DbServer {
    pub kind: Kind,
    pub port: u16,
    dir: tempfile::TempDir,
    /// mariadbd while it runs (PostgreSQL is run by pg_ctl).
    child: Option<Child>,
    /// The PostgreSQL binaries' directory.
    bin: PathBuf,
    /// Run PostgreSQL's programs as this user (we are root).
    run_as: Option<&'static str>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.exists())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .map(|uids| uids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

fn run(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl DbServer {
    /// Makes and starts a server, or None (with a message) when its programs are not
    /// installed; under `CI=true` they are required.
    pub fn start(kind: Kind) -> Option<DbServer> {
        let found = match kind {
            Kind::Postgres => postgres_bin(),
            Kind::Mariadb => program("mariadbd")
                .zip(program("mariadb-install-db"))
                .map(|(server, _)| server.parent().map(Path::to_path_buf).unwrap_or_default()),
        };
        let Some(bin) = found else {
            let what = match kind {
                Kind::Postgres => "initdb and pg_ctl under /usr/lib/postgresql/*/bin",
                Kind::Mariadb => "mariadb-install-db and mariadbd",
            };
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{what} are required under CI=true");
            }
            eprintln!("skipping: {what} not installed");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("kfpd-db-")
            .tempdir()
            .expect("temp dir");
        let run_as = (kind == Kind::Postgres && is_root()).then_some("postgres");
        let mut server = DbServer {
            kind,
            port: free_port(),
            dir,
            child: None,
            bin,
            run_as,
        };
        server.init();
        server.resume();
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &Path) -> Command {
        match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn init(&self) {
        let data = self.data();
        std::fs::create_dir(&data).expect("data dir");
        match self.kind {
            Kind::Postgres => {
                if let Some(user) = self.run_as {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(
                        self.dir.path(),
                        std::fs::Permissions::from_mode(0o755),
                    )
                    .expect("chmod");
                    run(
                        {
                            let mut chown = Command::new("chown");
                            chown.arg(user).arg(&data);
                            chown
                        },
                        "chown the data dir",
                    );
                }
                let mut initdb = self.command(&self.bin.join("initdb"));
                initdb.arg("-D").arg(&data).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]);
                run(initdb, "initdb");
            }
            Kind::Mariadb => {
                let install = program("mariadb-install-db").expect("mariadb-install-db");
                let mut command = Command::new(install);
                command
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .args([
                        "--user=root",
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db",
                    ]);
                run(command, "mariadb-install-db");
            }
        }
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        match self.kind {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/{name}", self.port),
            Kind::Mariadb => format!("mysql://root@127.0.0.1:{}/{name}", self.port),
        }
    }

    /// Stops the server as an operator would (fast shutdown: connections are cut).
    pub fn stop(&mut self) {
        self.halt();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err(),
            "the database still listens after stopping"
        );
    }

    fn halt(&mut self) {
        match self.kind {
            Kind::Postgres => {
                let mut stop = self.command(&self.bin.join("pg_ctl"));
                stop.arg("-D")
                    .arg(self.data())
                    .args(["-m", "fast", "-w", "stop"]);
                stop.stdout(Stdio::null()).stderr(Stdio::null());
                let _ = stop.status();
            }
            Kind::Mariadb => {
                if let Some(mut child) = self.child.take() {
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Starts the server again on its data directory and port; returns once it
    /// accepts connections.
    pub fn resume(&mut self) {
        let data = self.data();
        match self.kind {
            Kind::Postgres => {
                let mut start = self.command(&self.bin.join("pg_ctl"));
                start
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(data.join("server.log"))
                    .arg("-o")
                    .arg(format!(
                        "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                        self.port,
                        data.display()
                    ))
                    .args(["-w", "start"])
                    .stdout(Stdio::null());
                run(start, "pg_ctl start");
            }
            Kind::Mariadb => {
                let child = Command::new(program("mariadbd").expect("mariadbd"))
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--port={}", self.port))
                    .arg(format!("--socket={}", data.join("mysqld.sock").display()))
                    .arg(format!("--pid-file={}", data.join("mysqld.pid").display()))
                    .arg(format!("--log-error={}", data.join("error.log").display()))
                    .args([
                        "--bind-address=127.0.0.1",
                        "--user=root",
                        "--skip-grant-tables",
                        "--skip-name-resolve",
                        "--innodb-buffer-pool-size=32M",
                        "--innodb-flush-log-at-trx-commit=2",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start mariadbd");
                self.child = Some(child);
            }
        }
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the database did not start listening within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for DbServer {
    fn drop(&mut self) {
        let listening = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        if listening || self.child.is_some() {
            self.halt();
        }
    }
}
