//! A PostgreSQL server of the test's own, on loopback, for the embedded broker's PostgreSQL
//! storage: initdb in a temporary directory, started with `pg_ctl`, stopped when dropped.
//!
//! Debian's PostgreSQL (`/usr/lib/postgresql/*/bin`) refuses to run as root, so as root the
//! server runs as the `postgres` user. `.ci/run` installs PostgreSQL; elsewhere a machine
//! without it skips the tests that need it, with the reason.

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use super::{Daemon, wait_for_port};

/// Starts `sluice broker` on `listen` with storage `url` and waits for its port.
pub fn broker(url: &str, listen: SocketAddr, dir: &Path) -> Daemon {
    let broker = Daemon::spawn(
        &["broker", "--listen", &listen.to_string(), "--storage", url],
        dir,
    );
    wait_for_port(listen, Duration::from_secs(60));
    broker
}

/// A running PostgreSQL server with a database `broker`, trusted for user `sluice`.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<String>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts a server, or says why it cannot and returns `None` (outside CI only).
    pub fn start() -> Option<Self> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL must be installed in CI (see .ci/run)"
            );
            eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let run_as = root.then(|| "postgres".to_owned());
        let dir = tempfile::tempdir().unwrap();
        // The server's user must reach its directories.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let this = Self {
            bin,
            data,
            run_as,
            port,
            _dir: dir,
        };
        this.run(
            "initdb",
            &[
                "-D",
                this.data.to_str().unwrap(),
                "-U",
                "sluice",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            this.port,
            this._dir.path().display()
        );
        let log = this._dir.path().join("postgres.log");
        this.run(
            "pg_ctl",
            &[
                "-D",
                this.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        this.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &this.port.to_string(),
                "-U",
                "sluice",
                "broker",
            ],
        );
        Some(this)
    }

    /// The storage URL for `embedded.storage`.
    pub fn url(&self) -> String {
        format!("postgres://sluice@127.0.0.1:{}/broker", self.port)
    }

    /// Runs the SQL in `file` (a `pg_dump`) in database `broker`, stopping at its first error.
    /// psql is a client, so it runs as the test's user, not the server's.
    pub fn load(&self, file: &Path) {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "sluice",
            ])
            .args(["-d", "broker", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "psql failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `program` of the server's binaries with `args`, as the server's user.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path).current_dir("/");
                command
            }
            None => Command::new(&path),
        };
        command.args(args);
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program, args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_owned();
        let _ = self
            .command("pg_ctl", &["-D", data.as_str(), "-m", "immediate", "stop"])
            .output();
    }
}

/// Debian's server binaries, newest version first.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}
