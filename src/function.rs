//! The function runtime: `command` functions scaled between `min` and `max` instances,
//! `exec` functions run once per event, and `job` functions woken by lag. `url` functions
//! run elsewhere and are only called.

pub mod command;
pub mod exec;
pub mod job;
pub mod process;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::{Config, Function},
    kafka::{ClientError, Kafka},
    metrics::Metrics,
};
use command::CommandPool;
use exec::ExecRunner;
use job::JobRunner;

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
}

/// Every function sluice runs.
#[derive(Debug)]
pub struct Functions {
    pools: BTreeMap<String, Arc<CommandPool>>,
    execs: BTreeMap<String, Arc<ExecRunner>>,
    jobs: BTreeMap<String, Arc<JobRunner>>,
    urls: Vec<String>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Functions {
    /// Sets up every declared function: `command` pools start `min` instances, and `job`
    /// functions start watching their lag.
    pub fn start(
        config: &Config,
        kafka: &Kafka,
        metrics: &Metrics,
        grace: Duration,
    ) -> Result<Self, ClientError> {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut functions = Self {
            pools: BTreeMap::new(),
            execs: BTreeMap::new(),
            jobs: BTreeMap::new(),
            urls: Vec::new(),
            cancel: cancel.clone(),
            tasks: tasks.clone(),
        };
        for (name, function) in &config.functions {
            match function {
                Function::Url(_) => functions.urls.push(name.clone()),
                Function::Command(spec) => {
                    let pool = Arc::new(CommandPool::new(name, spec.clone(), metrics, grace));
                    pool.start(cancel.clone());
                    let _ = functions.pools.insert(name.clone(), pool);
                }
                Function::Exec(spec) => {
                    let runner = Arc::new(ExecRunner::new(name, spec.clone(), metrics));
                    let _ = functions.execs.insert(name.clone(), runner);
                }
                Function::Job(spec) => {
                    let reader = kafka.offsets_reader(&spec.group)?;
                    let runner = Arc::new(JobRunner::new(
                        name,
                        spec.clone(),
                        kafka.bootstrap().to_owned(),
                        reader,
                        metrics,
                    ));
                    drop(tasks.spawn(runner.clone().run(cancel.clone(), grace)));
                    let _ = functions.jobs.insert(name.clone(), runner);
                }
            }
        }
        Ok(functions)
    }

    /// The runner of the `command` or `exec` function `name`; `None` for any other kind
    /// or an unknown name.
    pub fn runner(&self, name: &str) -> Option<Runner> {
        if let Some(pool) = self.pools.get(name) {
            return Some(Runner::Command(pool.clone()));
        }
        self.execs
            .get(name)
            .map(|runner| Runner::Exec(runner.clone()))
    }

    /// Every function's figures, by name.
    pub fn status(&self) -> Vec<FunctionStatus> {
        let mut out = Vec::new();
        for name in &self.urls {
            out.push(FunctionStatus {
                name: name.clone(),
                kind: "url".to_owned(),
                ..FunctionStatus::default()
            });
        }
        for (name, pool) in &self.pools {
            let counts = pool.counts();
            out.push(FunctionStatus {
                name: name.clone(),
                kind: "command".to_owned(),
                instances: counts.ready,
                starting: counts.starting,
                in_flight: counts.in_flight,
                waiting: counts.waiting,
                cold_starts: counts.cold_starts,
                lag: None,
            });
        }
        for (name, runner) in &self.execs {
            let running = runner.running();
            out.push(FunctionStatus {
                name: name.clone(),
                kind: "exec".to_owned(),
                instances: running,
                in_flight: running,
                ..FunctionStatus::default()
            });
        }
        for (name, runner) in &self.jobs {
            let counts = runner.counts();
            out.push(FunctionStatus {
                name: name.clone(),
                kind: "job".to_owned(),
                instances: counts.running,
                cold_starts: counts.started,
                lag: Some(counts.lag),
                ..FunctionStatus::default()
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Process ids of every running instance of `name`.
    pub fn pids(&self, name: &str) -> Vec<u32> {
        if let Some(pool) = self.pools.get(name) {
            return pool.pids();
        }
        self.jobs
            .get(name)
            .map(|job| job.pids())
            .unwrap_or_default()
    }

    /// Stops every instance: SIGTERM, then SIGKILL after the grace period given at start.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let pools = self.pools.values().map(|pool| pool.shutdown());
        let _ = futures::future::join_all(pools).await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}
