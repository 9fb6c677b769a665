//! The function runtime: `command` functions scaled between `min` and `max` instances,
//! `exec` functions run once per event, and `job` functions woken by lag. `url` functions
//! run elsewhere and are only called.
//!
//! [`Functions`] can be changed while sluice runs ([`Functions::replace`]): a function whose
//! definition changed gets new instances, and the old ones are handed back as [`Retired`],
//! to be stopped once nothing delivers to them any more.

pub mod command;
pub mod exec;
pub mod job;
pub mod logbook;
pub mod process;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, RwLock, RwLockReadGuard},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::Function,
    kafka::{ClientError, Kafka},
    metrics::Metrics,
};
use command::CommandPool;
use exec::ExecRunner;
use job::JobRunner;
use logbook::LogBook;

/// A function that sluice runs and delivers to: a `command` pool or an `exec` runner.
#[derive(Debug, Clone)]
pub enum Runner {
    /// A `command` function's instances.
    Command(Arc<CommandPool>),
    /// An `exec` function.
    Exec(Arc<ExecRunner>),
}

/// One function as `sluice status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FunctionStatus {
    /// Name.
    pub name: String,
    /// `url`, `command`, `exec` or `job`.
    pub kind: String,
    /// Instances ready (command) or running (exec, job).
    pub instances: usize,
    /// Instances starting.
    pub starting: usize,
    /// Events being handled.
    pub in_flight: usize,
    /// Events waiting for an instance.
    pub waiting: usize,
    /// Instances started for events waiting on a function at zero (command), or started
    /// for lag (job).
    pub cold_starts: u64,
    /// Records the job's group has yet to read.
    #[serde(default)]
    pub lag: Option<i64>,
    /// Instances stopping.
    #[serde(default)]
    pub stopping: usize,
    /// How long the last cold start took, from an event waiting to an instance ready.
    #[serde(default)]
    pub last_cold_start_seconds: Option<f64>,
    /// Why the function cannot start, while it cannot.
    #[serde(default)]
    pub error: Option<String>,
}

/// What runs for one function.
#[derive(Debug)]
enum Kind {
    Url,
    Command(Arc<CommandPool>),
    Exec(Arc<ExecRunner>),
    Job(Arc<JobRunner>, JoinHandle<()>),
}

/// One function: its definition and what runs for it, stopped alone by its own token.
#[derive(Debug)]
struct Entry {
    spec: Function,
    kind: Kind,
    stop: CancellationToken,
}

impl Entry {
    /// Stops what runs for the function: instances get SIGTERM, then SIGKILL after the
    /// grace period, and this waits for them.
    async fn stop(self) {
        self.stop.cancel();
        match self.kind {
            Kind::Url | Kind::Exec(_) => {}
            Kind::Command(pool) => pool.shutdown().await,
            Kind::Job(_, handle) => {
                let _ = handle.await;
            }
        }
    }
}

/// Functions taken out of service by [`Functions::replace`]. They keep running until
/// [`Retired::stop`], so that deliveries still holding them can finish first.
#[derive(Debug, Default)]
#[must_use = "retired functions keep their instances until stopped"]
pub struct Retired(Vec<(String, Entry)>);

impl Retired {
    /// The names of the retired functions.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Stops the retired functions' instances and waits for them.
    pub async fn stop(self) {
        let stops = self.0.into_iter().map(|(_, entry)| entry.stop());
        let _ = futures::future::join_all(stops).await;
    }
}

/// Every function sluice runs.
#[derive(Debug)]
pub struct Functions {
    entries: RwLock<BTreeMap<String, Entry>>,
    kafka: Kafka,
    grace: Duration,
    logbook: Arc<LogBook>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Functions {
    /// Sets up every declared function: `command` pools start `min` instances, and `job`
    /// functions start watching their lag.
    pub fn start(
        functions: &BTreeMap<String, Function>,
        kafka: &Kafka,
        metrics: &Metrics,
        grace: Duration,
        logbook: Arc<LogBook>,
    ) -> Result<Self, ClientError> {
        let this = Self {
            entries: RwLock::default(),
            kafka: kafka.clone(),
            grace,
            logbook,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        let mut entries = BTreeMap::new();
        for (name, spec) in functions {
            let _ = entries.insert(name.clone(), this.entry(name, spec, metrics)?);
        }
        *this.write() = entries;
        Ok(this)
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        // An entry map is replaced whole, so a panic elsewhere cannot leave it half-changed.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds and starts what runs for one function.
    fn entry(&self, name: &str, spec: &Function, metrics: &Metrics) -> Result<Entry, ClientError> {
        let stop = self.cancel.child_token();
        let kind = match spec {
            Function::Url(_) => Kind::Url,
            Function::Command(command) => {
                let pool = Arc::new(CommandPool::new(
                    name,
                    command.clone(),
                    metrics,
                    self.grace,
                    self.logbook.clone(),
                ));
                pool.start(stop.clone());
                Kind::Command(pool)
            }
            Function::Exec(exec) => Kind::Exec(Arc::new(ExecRunner::new(
                name,
                exec.clone(),
                metrics,
                self.logbook.clone(),
            ))),
            Function::Job(job) => {
                let reader = self.kafka.offsets_reader(&job.group)?;
                let runner = Arc::new(JobRunner::new(
                    name,
                    job.clone(),
                    self.kafka.bootstrap().to_owned(),
                    reader,
                    metrics,
                    self.logbook.clone(),
                ));
                let handle = self
                    .tasks
                    .spawn(runner.clone().run(stop.clone(), self.grace));
                Kind::Job(runner, handle)
            }
        };
        Ok(Entry {
            spec: spec.clone(),
            kind,
            stop,
        })
    }

    /// The names of the functions that `functions` adds, removes or defines differently
    /// from those running.
    pub fn changed(&self, functions: &BTreeMap<String, Function>) -> BTreeSet<String> {
        let entries = self.read();
        let mut changed: BTreeSet<String> = entries
            .iter()
            .filter(|(name, entry)| functions.get(*name) != Some(&entry.spec))
            .map(|(name, _)| name.clone())
            .collect();
        changed.extend(
            functions
                .keys()
                .filter(|name| !entries.contains_key(*name))
                .cloned(),
        );
        changed
    }

    /// Makes the running functions those of `functions`: each changed or new one starts
    /// afresh, an unchanged one is kept as it is, and the replaced and removed ones are
    /// returned, still running, for the caller to stop once nothing delivers to them. When
    /// a new function cannot be set up, nothing changes.
    pub fn replace(
        &self,
        functions: &BTreeMap<String, Function>,
        metrics: &Metrics,
    ) -> Result<Retired, ClientError> {
        let changed = self.changed(functions);
        let mut fresh = Vec::new();
        for name in &changed {
            if let Some(spec) = functions.get(name) {
                match self.entry(name, spec, metrics) {
                    Ok(entry) => fresh.push((name.clone(), entry)),
                    Err(err) => {
                        for (_, entry) in fresh {
                            entry.stop.cancel();
                        }
                        return Err(err);
                    }
                }
            }
        }
        let mut entries = self.write();
        let mut retired = Vec::new();
        for name in &changed {
            if let Some(old) = entries.remove(name) {
                retired.push((name.clone(), old));
            }
        }
        entries.extend(fresh);
        Ok(Retired(retired))
    }

    /// The runner of the `command` or `exec` function `name`; `None` for any other kind
    /// or an unknown name.
    pub fn runner(&self, name: &str) -> Option<Runner> {
        match &self.read().get(name)?.kind {
            Kind::Command(pool) => Some(Runner::Command(pool.clone())),
            Kind::Exec(runner) => Some(Runner::Exec(runner.clone())),
            Kind::Url | Kind::Job(..) => None,
        }
    }

    /// Every function's figures, by name.
    pub fn status(&self) -> Vec<FunctionStatus> {
        let entries = self.read();
        let mut out = Vec::with_capacity(entries.len());
        for (name, entry) in entries.iter() {
            let name = name.clone();
            out.push(match &entry.kind {
                Kind::Url => FunctionStatus {
                    name,
                    kind: "url".to_owned(),
                    ..FunctionStatus::default()
                },
                Kind::Command(pool) => {
                    let counts = pool.counts();
                    FunctionStatus {
                        name,
                        kind: "command".to_owned(),
                        instances: counts.ready,
                        starting: counts.starting,
                        in_flight: counts.in_flight,
                        waiting: counts.waiting,
                        cold_starts: counts.cold_starts,
                        lag: None,
                        stopping: counts.stopping,
                        last_cold_start_seconds: counts.last_cold_start.map(|d| d.as_secs_f64()),
                        error: pool.start_error(),
                    }
                }
                Kind::Exec(runner) => {
                    let running = runner.running();
                    FunctionStatus {
                        name,
                        kind: "exec".to_owned(),
                        instances: running,
                        in_flight: running,
                        ..FunctionStatus::default()
                    }
                }
                Kind::Job(runner, _) => {
                    let counts = runner.counts();
                    FunctionStatus {
                        name,
                        kind: "job".to_owned(),
                        instances: counts.running,
                        cold_starts: counts.started,
                        lag: Some(counts.lag),
                        ..FunctionStatus::default()
                    }
                }
            });
        }
        out
    }

    /// The instances' recent output lines.
    pub fn logbook(&self) -> &Arc<LogBook> {
        &self.logbook
    }

    /// Process ids of every running instance of `name`.
    pub fn pids(&self, name: &str) -> Vec<u32> {
        match self.read().get(name).map(|entry| &entry.kind) {
            Some(Kind::Command(pool)) => pool.pids(),
            Some(Kind::Job(runner, _)) => runner.pids(),
            _ => Vec::new(),
        }
    }

    /// Stops every instance: SIGTERM, then SIGKILL after the grace period given at start.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let entries = std::mem::take(&mut *self.write());
        let _ = futures::future::join_all(entries.into_values().map(Entry::stop)).await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}
