//! Child processes: each in its own process group, its output logged line by line with the
//! function's name, stopped with SIGTERM and then SIGKILL, and always waited for.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    io,
    path::Path,
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::Duration,
};

use super::logbook::LogBook;

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
};
use tracing::{info, warn};

/// What to start.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// Function name, for logs and `SLUICE_FUNCTION`.
    pub function: &'a str,
    /// Instance number, for logs and `SLUICE_INSTANCE`.
    pub instance: u64,
    /// Program and arguments.
    pub argv: &'a [String],
    /// The function's `env`, added to sluice's own environment.
    pub env: &'a BTreeMap<String, String>,
    /// Variables sluice sets for this run, applied last.
    pub extra: Vec<(String, OsString)>,
    /// Working directory.
    pub workdir: Option<&'a Path>,
    /// Standard input.
    pub stdin: Stdio,
    /// Whether stdout and stderr are logged (`true`) or left to the caller to read.
    pub log_output: bool,
    /// Where logged lines are also kept, for `sluice logs`.
    pub logbook: &'a Arc<LogBook>,
}

/// Starts the process in a new process group, with its output logged when asked.
pub fn spawn(spec: Spawn<'_>) -> io::Result<Child> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut command = Command::new(program);
    let _ = command
        .args(args)
        .env("SLUICE_FUNCTION", spec.function)
        .env("SLUICE_INSTANCE", spec.instance.to_string())
        .stdin(spec.stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // A child whose handle is dropped (its task aborted) is killed rather than left
        // behind; its group is killed by the owner of the handle.
        .kill_on_drop(true);
    if let Ok(exe) = std::env::current_exe() {
        let _ = command.env("SLUICE_EXE", exe);
    }
    for (name, value) in spec.env {
        let _ = command.env(name, value);
    }
    for (name, value) in &spec.extra {
        let _ = command.env(name, value);
    }
    if let Some(dir) = spec.workdir {
        let _ = command.current_dir(dir);
    }
    let mut child = command.spawn()?;
    if spec.log_output {
        if let Some(stdout) = child.stdout.take() {
            log_lines(stdout, spec.function, spec.instance, "stdout", spec.logbook);
        }
        if let Some(stderr) = child.stderr.take() {
            log_lines(stderr, spec.function, spec.instance, "stderr", spec.logbook);
        }
    }
    Ok(child)
}

/// Logs every line of a child's stream with the function's name, and keeps it in
/// `logbook`, until the stream closes.
pub fn log_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    function: &str,
    instance: u64,
    name: &'static str,
    logbook: &Arc<LogBook>,
) {
    let function = function.to_owned();
    let logbook = logbook.clone();
    drop(tokio::spawn(async move {
        let mut lines = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    info!(function = %function, instance, stream = name, "{text}");
                    logbook.push(&function, instance, name, text);
                }
            }
        }
    }));
}

/// Sends `signal` to the child's process group. A group that is gone already is not an error.
pub fn signal_group(pid: Option<u32>, signal: Signal) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    match killpg(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(err) => warn!(pid, ?signal, error = %err, "Cannot signal a process group."),
    }
}

/// Stops a child: SIGTERM to its group, SIGKILL to the group after `grace`, and waits for it
/// so no zombie is left. Members of the group that outlive the leader are killed too.
pub async fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    if let Ok(Some(status)) = child.try_wait() {
        signal_group(pid, Signal::SIGKILL);
        return Some(status);
    }
    signal_group(pid, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            signal_group(pid, Signal::SIGKILL);
            child.wait().await.ok()
        }
    };
    signal_group(pid, Signal::SIGKILL);
    status
}

/// Kills a child's whole group at once and waits for the child.
pub async fn kill(child: &mut Child) -> Option<ExitStatus> {
    signal_group(child.id(), Signal::SIGKILL);
    child.wait().await.ok()
}

/// How an exit reads in logs and failure reasons.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => "exited".to_owned(),
    }
}
