//! The stand-in OpenFaaS gateway of `examples/openfaas`, as a child process.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// `examples/openfaas/gateway.py`, killed when dropped.
pub struct Gateway(Child);

impl Gateway {
    /// Starts the gateway on `listen`, serving the functions of `functions`, with `extra`
    /// arguments (`--user`, `--password-file`); it runs in `dir`, against which a relative
    /// `functions` path resolves.
    pub fn start(dir: &Path, listen: SocketAddr, functions: &Path, extra: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/openfaas/gateway.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["--listen", &listen.to_string(), "--functions"])
            .arg(functions)
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the stand-in gateway");
        super::wait_for_port(listen, Duration::from_secs(60));
        Self(child)
    }

    /// Kills the gateway at once, as a crash would.
    pub fn kill(self) {}
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
