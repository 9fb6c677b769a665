//! `job` functions: programs that read their topics themselves. sluice polls the lag of the
//! job's consumer group and, while there is lag, keeps one instance per partition with lag
//! running, at most `max`. Jobs exit by themselves when idle.

use std::{
    ffi::OsString,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::logbook::LogBook;
use super::process::{self, Spawn};
use crate::{
    backoff::Backoff,
    config::JobFunction,
    kafka::OffsetsReader,
    metrics::{InstanceLabels, Metrics},
};

/// The first wait before restarting a job that failed; it doubles per failure in a row.
const RESTART_BACKOFF: Duration = Duration::from_millis(500);

/// The longest wait before restarting a failed job.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// At most one warning per this interval about lag that cannot be read.
const WARN_INTERVAL: Duration = Duration::from_secs(30);

/// Figures for `sluice status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Instances running.
    pub running: usize,
    /// Records after the group's committed offsets, as last read.
    pub lag: i64,
    /// Partitions with lag, as last read.
    pub partitions_with_lag: usize,
    /// Instances started so far.
    pub started: u64,
}

#[derive(Debug, Default)]
struct State {
    pids: Vec<(u64, Option<u32>)>,
    counts: JobCounts,
}

/// Runs one `job` function.
#[derive(Debug)]
pub struct JobRunner {
    name: String,
    spec: JobFunction,
    bootstrap: String,
    reader: OffsetsReader,
    state: Mutex<State>,
    running: Gauge,
    logbook: Arc<LogBook>,
}

impl JobRunner {
    /// A runner for `spec`, reading lag with `reader` (a reader of the job's group).
    pub fn new(
        name: &str,
        spec: JobFunction,
        bootstrap: String,
        reader: OffsetsReader,
        metrics: &Metrics,
        logbook: Arc<LogBook>,
    ) -> Self {
        Self {
            logbook,
            name: name.to_owned(),
            running: metrics
                .function_instances
                .get_or_create(&InstanceLabels {
                    function: name.to_owned(),
                    state: "running".to_owned(),
                })
                .clone(),
            spec,
            bootstrap,
            reader,
            state: Mutex::new(State::default()),
        }
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Figures for the status report.
    pub fn counts(&self) -> JobCounts {
        self.lock().counts
    }

    /// Process ids of the running instances.
    pub fn pids(&self) -> Vec<u32> {
        self.lock()
            .pids
            .iter()
            .filter_map(|(_, pid)| *pid)
            .collect()
    }

    /// Polls lag and starts instances until `cancel`; then stops the instances (SIGTERM,
    /// SIGKILL after `grace`) and waits for them.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, grace: Duration) {
        let stop = CancellationToken::new();
        let mut instances: JoinSet<(u64, Result<ExitStatus, String>)> = JoinSet::new();
        let mut tick = tokio::time::interval(self.spec.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_id = 0u64;
        let mut failures = 0u32;
        let mut not_before = Instant::now();
        let mut last_warning: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(done) = instances.join_next() => {
                    let Ok((id, status)) = done else { continue };
                    self.forget(id, instances.len());
                    let why = match status {
                        Ok(status) if status.success() => {
                            failures = 0;
                            info!(function = %self.name, instance = id, "Job finished.");
                            continue;
                        }
                        Ok(status) => process::describe(status),
                        Err(why) => why,
                    };
                    failures += 1;
                    let wait = restart_backoff().delay(failures);
                    not_before = Instant::now() + wait;
                    warn!(function = %self.name, instance = id, error = %why, restart_in = ?wait, "Job failed; it is started again while lag remains.");
                    continue;
                }
                _ = tick.tick() => {}
            }
            let partitions = match self.reader.lag(self.spec.topics.clone()).await {
                Ok(partitions) => partitions,
                Err(err) => {
                    if last_warning.is_none_or(|t| t.elapsed() >= WARN_INTERVAL) {
                        warn!(function = %self.name, error = %err, "Cannot read the job's lag.");
                        last_warning = Some(Instant::now());
                    }
                    continue;
                }
            };
            let with_lag = partitions.iter().filter(|p| p.lag() > 0).count();
            let lag = partitions.iter().map(|p| p.lag()).sum();
            {
                let mut state = self.lock();
                state.counts.lag = lag;
                state.counts.partitions_with_lag = with_lag;
            }
            let wanted = with_lag.min(self.spec.max);
            while instances.len() < wanted && Instant::now() >= not_before {
                next_id += 1;
                let id = next_id;
                let runner = self.clone();
                let stop = stop.clone();
                let _ = instances
                    .spawn(async move { (id, runner.run_instance(id, stop, grace).await) });
                let mut state = self.lock();
                state.pids.push((id, None));
                state.counts.started += 1;
                state.counts.running = instances.len();
                self.running.set(instances.len() as i64);
                drop(state);
                info!(function = %self.name, instance = id, lag, partitions_with_lag = with_lag, "Job started for lag.");
            }
        }
        stop.cancel();
        while let Some(done) = instances.join_next().await {
            if let Ok((id, _)) = done {
                self.forget(id, instances.len());
            }
        }
    }

    fn forget(&self, id: u64, running: usize) {
        let mut state = self.lock();
        state.pids.retain(|(i, _)| *i != id);
        state.counts.running = running;
        self.running.set(running as i64);
    }

    async fn run_instance(
        &self,
        id: u64,
        stop: CancellationToken,
        grace: Duration,
    ) -> Result<ExitStatus, String> {
        let extra = vec![
            (
                "KAFKA_BOOTSTRAP_SERVERS".to_owned(),
                OsString::from(&self.bootstrap),
            ),
            (
                "KAFKA_TOPICS".to_owned(),
                OsString::from(self.spec.topics.join(",")),
            ),
            (
                "KAFKA_GROUP_ID".to_owned(),
                OsString::from(&self.spec.group),
            ),
            (
                "SLUICE_IDLE_TIMEOUT".to_owned(),
                OsString::from(humantime::format_duration(self.spec.idle_timeout).to_string()),
            ),
        ];
        let mut child = process::spawn(Spawn {
            function: &self.name,
            instance: id,
            argv: &self.spec.job,
            env: &self.spec.env,
            extra,
            workdir: self.spec.workdir.as_deref(),
            stdin: Stdio::null(),
            log_output: true,
            logbook: &self.logbook,
        })
        .map_err(|err| format!("cannot start {:?}: {err}", self.spec.job[0]))?;
        let pid = child.id();
        if let Some(entry) = self.lock().pids.iter_mut().find(|(i, _)| *i == id) {
            entry.1 = pid;
        }
        tokio::select! {
            _ = stop.cancelled() => {
                process::terminate(&mut child, grace).await.ok_or_else(|| "stopped".to_owned())
            }
            status = child.wait() => {
                process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                status.map_err(|err| format!("cannot wait for the process: {err}"))
            }
        }
    }
}

/// The waits before restarting after failures in a row.
fn restart_backoff() -> Backoff {
    Backoff::exponential(RESTART_BACKOFF, RESTART_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_doubles_and_is_capped() {
        let backoff = restart_backoff();
        assert_eq!(backoff.delay(1), Duration::from_millis(500));
        assert_eq!(backoff.delay(2), Duration::from_secs(1));
        assert_eq!(backoff.delay(4), Duration::from_secs(4));
        assert_eq!(backoff.delay(40), RESTART_BACKOFF_MAX);
    }
}
