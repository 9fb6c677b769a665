//! `command` functions: HTTP servers that sluice starts on demand, scales between `min` and
//! `max` instances and stops when idle.
//!
//! All decisions are made under one lock over the pool's [`State`]: which ready instance takes
//! an event (least in flight, never above `concurrency`), when demand calls for another
//! instance, and which idle instance is stopped. Each instance has a task that starts the
//! process, waits until it is ready and then watches it until it exits or is told to stop.

use std::{
    ffi::OsString,
    net::{Ipv4Addr, SocketAddr, TcpListener as StdListener},
    os::fd::OwnedFd,
    process::Stdio,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Uri;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use tokio::{net::TcpStream, sync::Notify};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use super::process::{self, Spawn};

mod lease;

use super::logbook::LogBook;
use crate::{
    backoff::Backoff,
    config::CommandFunction,
    metrics::{FunctionLabels, InstanceLabels, Metrics},
};
pub use lease::{Lease, Unavailable};

/// The first wait between readiness polls of a starting instance; it doubles up to
/// [`READY_POLL_MAX`], so a quick start is seen quickly and a slow one is not hammered.
const READY_POLL_FIRST: Duration = Duration::from_micros(500);

/// The longest wait between readiness polls.
const READY_POLL_MAX: Duration = Duration::from_millis(20);

/// Demand above this share of the capacity adds instances.
const SCALE_UP_AT: f64 = 0.7;

/// Events that may wait for an instance at once; more are failed (and retried later).
const MAX_WAITING: usize = 100_000;

/// The shell line that moves the socket sluice bound from stdin to fd 3 and sets
/// `LISTEN_PID` to the program's own pid (`exec` keeps the shell's pid), per the
/// socket-activation convention.
const ACTIVATE: &str = "exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"";

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Stopping,
}

#[derive(Debug)]
struct Instance {
    id: u64,
    phase: Phase,
    url: Option<Uri>,
    pid: Option<u32>,
    in_flight: usize,
    idle_since: Instant,
    stop: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    instances: Vec<Instance>,
    waiting: usize,
    next_id: u64,
    /// When the first event started waiting while nothing was ready.
    cold_since: Option<Instant>,
    /// Starts that failed so far, and why the last one did.
    start_failures: u64,
    last_failure: Option<String>,
    /// Whether the last start failed (cleared when an instance gets ready).
    failing: bool,
    /// How long the last cold start took.
    last_cold_start: Option<Duration>,
    closed: bool,
}

impl State {
    fn live(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.phase != Phase::Stopping)
            .count()
    }

    fn in_flight(&self) -> usize {
        self.instances.iter().map(|i| i.in_flight).sum()
    }

    fn count(&self, phase: Phase) -> usize {
        self.instances.iter().filter(|i| i.phase == phase).count()
    }
}

/// Figures for `sluice status`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolCounts {
    /// Instances ready for events.
    pub ready: usize,
    /// Instances starting.
    pub starting: usize,
    /// Events being handled.
    pub in_flight: usize,
    /// Events waiting for an instance.
    pub waiting: usize,
    /// Cold starts so far.
    pub cold_starts: u64,
    /// Instances stopping.
    pub stopping: usize,
    /// How long the last cold start took.
    pub last_cold_start: Option<Duration>,
}

#[derive(Debug, Clone)]
struct PoolMetrics {
    starting: Gauge,
    ready: Gauge,
    stopping: Gauge,
    in_flight: Gauge,
    cold_starts: Counter,
    cold_start_seconds: Histogram,
}

/// The instances of one `command` function.
#[derive(Debug)]
pub struct CommandPool {
    name: String,
    spec: CommandFunction,
    state: Mutex<State>,
    /// Woken on every change that could let a waiting event go on.
    changed: Notify,
    metrics: PoolMetrics,
    probe: Client<HttpConnector, Empty<Bytes>>,
    tasks: TaskTracker,
    /// How long a stopping instance gets between SIGTERM and SIGKILL.
    grace: Duration,
    /// Where the instances' output lines are kept.
    logbook: Arc<LogBook>,
}

impl CommandPool {
    /// A pool at zero instances (or `min`, once [`CommandPool::start`] runs).
    pub fn new(
        name: &str,
        spec: CommandFunction,
        metrics: &Metrics,
        grace: Duration,
        logbook: Arc<LogBook>,
    ) -> Self {
        let labels = FunctionLabels {
            function: name.to_owned(),
        };
        let phase = |state: &str| {
            metrics
                .function_instances
                .get_or_create(&InstanceLabels {
                    function: name.to_owned(),
                    state: state.to_owned(),
                })
                .clone()
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            name: name.to_owned(),
            spec,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            metrics: PoolMetrics {
                starting: phase("starting"),
                ready: phase("ready"),
                stopping: phase("stopping"),
                in_flight: metrics.function_in_flight.get_or_create(&labels).clone(),
                cold_starts: metrics.function_cold_starts.get_or_create(&labels).clone(),
                cold_start_seconds: metrics
                    .function_cold_start_seconds
                    .get_or_create(&labels)
                    .clone(),
            },
            probe: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector),
            tasks: TaskTracker::new(),
            grace,
            logbook,
        }
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts `min` instances and the idle reaper.
    pub fn start(self: &Arc<Self>, cancel: CancellationToken) {
        {
            let mut state = self.lock();
            self.scale(&mut state);
        }
        let pool = self.clone();
        drop(self.tasks.spawn(async move { pool.reap(cancel).await }));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the function cannot start, while its last start failed.
    pub fn start_error(&self) -> Option<String> {
        let state = self.lock();
        state.failing.then(|| state.last_failure.clone()).flatten()
    }

    /// Figures for the status report.
    pub fn counts(&self) -> PoolCounts {
        let state = self.lock();
        PoolCounts {
            ready: state.count(Phase::Ready),
            starting: state.count(Phase::Starting),
            stopping: state.count(Phase::Stopping),
            last_cold_start: state.last_cold_start,
            in_flight: state.in_flight(),
            waiting: state.waiting,
            cold_starts: self.metrics.cold_starts.get(),
        }
    }

    /// Process ids of the running instances.
    pub fn pids(&self) -> Vec<u32> {
        self.lock().instances.iter().filter_map(|i| i.pid).collect()
    }

    /// Starts instances while demand (in flight plus waiting) is above [`SCALE_UP_AT`] of
    /// the capacity, within `min` and `max`.
    fn scale(self: &Arc<Self>, state: &mut State) {
        if state.closed {
            return;
        }
        let demand = (state.in_flight() + state.waiting) as f64;
        let per_instance = self.spec.concurrency as f64 * SCALE_UP_AT;
        let wanted = ((demand / per_instance).ceil() as usize).clamp(self.spec.min, self.spec.max);
        let live = state.live();
        for _ in live..wanted {
            state.next_id += 1;
            let id = state.next_id;
            let stop = CancellationToken::new();
            state.instances.push(Instance {
                id,
                phase: Phase::Starting,
                url: None,
                pid: None,
                in_flight: 0,
                idle_since: Instant::now(),
                stop: stop.clone(),
            });
            let pool = self.clone();
            drop(
                self.tasks
                    .spawn(async move { pool.run_instance(id, stop).await }),
            );
        }
        self.publish(state);
    }

    /// Sets the instance and in-flight gauges from the state.
    fn publish(&self, state: &State) {
        self.metrics
            .starting
            .set(state.count(Phase::Starting) as i64);
        self.metrics.ready.set(state.count(Phase::Ready) as i64);
        self.metrics
            .stopping
            .set(state.count(Phase::Stopping) as i64);
        self.metrics.in_flight.set(state.in_flight() as i64);
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Instance)) {
        let mut state = self.lock();
        if let Some(instance) = state.instances.iter_mut().find(|i| i.id == id) {
            f(instance);
        }
        self.publish(&state);
    }

    /// Forgets an instance that is gone; starts a replacement if demand remains.
    fn remove(self: &Arc<Self>, id: u64, failed_start: Option<String>) {
        {
            let mut state = self.lock();
            state.instances.retain(|i| i.id != id);
            if let Some(why) = failed_start {
                state.start_failures += 1;
                state.last_failure = Some(why);
                state.failing = true;
            } else if state.waiting > 0 || state.in_flight() > 0 || state.live() < self.spec.min {
                self.scale(&mut state);
            }
            self.publish(&state);
        }
        self.changed.notify_waiters();
    }

    /// One instance from start to exit.
    async fn run_instance(self: Arc<Self>, id: u64, stop: CancellationToken) {
        let started = Instant::now();
        let listener = match StdListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) {
            Ok(listener) => listener,
            Err(err) => {
                self.start_failed(id, format!("cannot bind a port: {err}"));
                return;
            }
        };
        let port = match listener.local_addr() {
            Ok(addr) => addr.port(),
            Err(err) => {
                self.start_failed(id, format!("cannot bind a port: {err}"));
                return;
            }
        };
        let Ok(url) = format!("http://127.0.0.1:{port}/").parse::<Uri>() else {
            self.start_failed(id, format!("no URL for port {port}"));
            return;
        };
        let extra = vec![("PORT".to_owned(), OsString::from(port.to_string()))];
        let activated = self.spec.socket_activation;
        let (argv, stdin) = if activated {
            let mut argv = vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                ACTIVATE.to_owned(),
                "sh".to_owned(),
            ];
            argv.extend(self.spec.command.iter().cloned());
            (argv, Stdio::from(OwnedFd::from(listener)))
        } else {
            // The port is free again for the program to bind; nothing else in sluice binds
            // port 0 addresses for long, so the race is with other programs only.
            drop(listener);
            (self.spec.command.clone(), Stdio::null())
        };
        let spawned = process::spawn(Spawn {
            function: &self.name,
            instance: id,
            argv: &argv,
            env: &self.spec.env,
            extra,
            workdir: self.spec.workdir.as_deref(),
            stdin,
            log_output: true,
            logbook: &self.logbook,
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                self.start_failed(
                    id,
                    format!("cannot start {:?}: {err}", self.spec.command[0]),
                );
                return;
            }
        };
        let pid = child.id();
        self.update(id, |i| i.pid = pid);

        let ready = tokio::select! {
            biased;
            _ = stop.cancelled() => Err("stopped while starting".to_owned()),
            status = child.wait() => Err(match status {
                Ok(status) => format!("exited before it was ready ({})", process::describe(status)),
                Err(err) => format!("cannot wait for the process: {err}"),
            }),
            ready = tokio::time::timeout(self.spec.startup_timeout, self.ready(port, activated)) => {
                ready.map_err(|_| format!("not ready within {:?}", self.spec.startup_timeout))
            }
        };
        if let Err(why) = ready {
            let _ = process::terminate(&mut child, self.grace).await;
            if stop.is_cancelled() {
                self.remove(id, None);
            } else {
                self.start_failed(id, why);
            }
            return;
        }

        let cold = {
            let mut state = self.lock();
            if let Some(instance) = state.instances.iter_mut().find(|i| i.id == id) {
                instance.phase = Phase::Ready;
                instance.url = Some(url);
                instance.idle_since = Instant::now();
            }
            state.failing = false;
            let cold = state.cold_since.take().map(|since| since.elapsed());
            if cold.is_some() {
                state.last_cold_start = cold;
            }
            self.publish(&state);
            cold
        };
        if let Some(took) = cold {
            let _ = self.metrics.cold_starts.inc();
            self.metrics.cold_start_seconds.observe(took.as_secs_f64());
        }
        info!(function = %self.name, instance = id, pid, port, took = ?started.elapsed(), "Function instance ready.");
        self.changed.notify_waiters();

        tokio::select! {
            _ = stop.cancelled() => {
                debug!(function = %self.name, instance = id, "Stopping function instance.");
                let status = process::terminate(&mut child, self.grace).await;
                info!(function = %self.name, instance = id, status = %status.map_or_else(|| "unknown".to_owned(), process::describe), "Function instance stopped.");
            }
            status = child.wait() => {
                // Whatever it left in its group goes too.
                process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                let status = status.map_or_else(|e| e.to_string(), process::describe);
                warn!(function = %self.name, instance = id, status = %status, "Function instance exited; its events are retried.");
            }
        }
        self.remove(id, None);
    }

    fn start_failed(self: &Arc<Self>, id: u64, why: String) {
        warn!(function = %self.name, instance = id, error = %why, "Function instance did not start.");
        self.remove(id, Some(why));
    }

    /// Waits until the instance accepts connections, or answers 200 on `readiness_path`.
    /// A socket handed over is accepting already.
    async fn ready(&self, port: u16, activated: bool) {
        if activated && self.spec.readiness_path.is_none() {
            return;
        }
        let polls = Backoff::exponential(READY_POLL_FIRST, READY_POLL_MAX);
        for poll in 1.. {
            let ok = match &self.spec.readiness_path {
                None => TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .await
                    .is_ok(),
                Some(path) => self.probe_path(port, path).await,
            };
            if ok {
                return;
            }
            tokio::time::sleep(polls.delay(poll)).await;
        }
    }

    async fn probe_path(&self, port: u16, path: &str) -> bool {
        let Ok(uri) = format!("http://127.0.0.1:{port}{path}").parse::<Uri>() else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(1), self.probe.get(uri)).await {
            Ok(Ok(response)) => {
                let ok = response.status().as_u16() == 200;
                let _ = response.into_body().collect().await;
                ok
            }
            _ => false,
        }
    }

    /// Stops instances idle for `idle_timeout`, keeping `min`.
    async fn reap(self: Arc<Self>, cancel: CancellationToken) {
        let tick =
            (self.spec.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            let _ = notified.as_mut().enable();
            let idle = self.lock().instances.is_empty();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = notified, if idle => continue,
                _ = tokio::time::sleep(tick), if !idle => {}
            }
            let mut state = self.lock();
            let mut live = state.live();
            let waiting = state.waiting;
            for instance in &mut state.instances {
                if live <= self.spec.min || waiting > 0 {
                    break;
                }
                if instance.phase == Phase::Ready
                    && instance.in_flight == 0
                    && instance.idle_since.elapsed() >= self.spec.idle_timeout
                {
                    info!(function = %self.name, instance = instance.id, idle = ?self.spec.idle_timeout, "Function instance idle; stopping it.");
                    instance.phase = Phase::Stopping;
                    instance.stop.cancel();
                    live -= 1;
                }
            }
            self.publish(&state);
        }
    }

    /// Stops every instance (SIGTERM, then SIGKILL after the grace period) and waits for them.
    pub async fn shutdown(&self) {
        {
            let mut state = self.lock();
            state.closed = true;
            for instance in &mut state.instances {
                instance.phase = Phase::Stopping;
                instance.stop.cancel();
            }
            self.publish(&state);
        }
        self.changed.notify_waiters();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Kills instances left behind if a pool is dropped without a shutdown.
impl Drop for CommandPool {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for instance in &state.instances {
            process::signal_group(instance.pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
