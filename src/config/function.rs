//! The four kinds of function, as the `functions` section declares them.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::de;

/// A function, in one of four kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Function {
    /// An HTTP endpoint run elsewhere.
    Url(UrlFunction),
    /// A long-running HTTP server that sluice starts and scales.
    Command(CommandFunction),
    /// A program run once per event.
    Exec(ExecFunction),
    /// A program that consumes its topics itself.
    Job(JobFunction),
}

impl Function {
    /// The topics a `url`, `command` or `exec` function subscribes to; a job's topics are
    /// what it reads itself, not a subscription.
    pub fn subscriptions(&self) -> &[String] {
        match self {
            Function::Url(f) => &f.topics,
            Function::Command(f) => &f.topics,
            Function::Exec(f) => &f.topics,
            Function::Job(_) => &[],
        }
    }

    /// Which kind of function this is.
    pub fn kind(&self) -> FunctionKind {
        match self {
            Function::Url(_) => FunctionKind::Url,
            Function::Command(_) => FunctionKind::Command,
            Function::Exec(_) => FunctionKind::Exec,
            Function::Job(_) => FunctionKind::Job,
        }
    }
}

/// The kinds of [`Function`], named by the key that selects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    /// `url:`
    Url,
    /// `command:`
    Command,
    /// `exec:`
    Exec,
    /// `job:`
    Job,
}

impl FunctionKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [FunctionKind; 4] = [
        FunctionKind::Url,
        FunctionKind::Command,
        FunctionKind::Exec,
        FunctionKind::Job,
    ];

    /// The key that selects this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Url => "url",
            FunctionKind::Command => "command",
            FunctionKind::Exec => "exec",
            FunctionKind::Job => "job",
        }
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HTTP endpoint run elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlFunction {
    /// Where events are posted; http or https.
    #[serde(deserialize_with = "de::url")]
    pub url: Url,
    /// Topics the function subscribes to, through an implicit trigger of its name.
    #[serde(default, deserialize_with = "de::string_list")]
    pub topics: Vec<String>,
}

/// A long-running HTTP server that sluice starts and scales between `min` and `max` instances.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFunction {
    /// Program and arguments.
    #[serde(deserialize_with = "de::string_list")]
    pub command: Vec<String>,
    /// Topics the function subscribes to, through an implicit trigger of its name.
    #[serde(default, deserialize_with = "de::string_list")]
    pub topics: Vec<String>,
    /// Extra environment variables.
    #[serde(default, deserialize_with = "de::string_map")]
    pub env: BTreeMap<String, String>,
    /// Working directory; unset means sluice's own.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Instances kept running even when idle.
    #[serde(default = "default_command_min")]
    pub min: usize,
    /// Most instances at once.
    #[serde(default = "default_command_max")]
    pub max: usize,
    /// Events handled at once by one instance.
    #[serde(default = "default_command_concurrency")]
    pub concurrency: usize,
    /// How long an instance may sit idle before it is stopped.
    #[serde(
        default = "default_command_idle_timeout",
        deserialize_with = "de::duration"
    )]
    pub idle_timeout: Duration,
    /// How long an instance may take to become ready.
    #[serde(default = "default_startup_timeout", deserialize_with = "de::duration")]
    pub startup_timeout: Duration,
    /// HTTP path polled until the instance is ready; unset means waiting for the port to open.
    #[serde(default)]
    pub readiness_path: Option<String>,
    /// Whether sluice opens the listening socket and hands it to the instance.
    #[serde(default)]
    pub socket_activation: bool,
}

fn default_command_min() -> usize {
    0
}

fn default_command_max() -> usize {
    4
}

fn default_command_concurrency() -> usize {
    8
}

fn default_command_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_startup_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A program run once per event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecFunction {
    /// Program and arguments.
    #[serde(deserialize_with = "de::string_list")]
    pub exec: Vec<String>,
    /// Topics the function subscribes to, through an implicit trigger of its name.
    #[serde(default, deserialize_with = "de::string_list")]
    pub topics: Vec<String>,
    /// Extra environment variables.
    #[serde(default, deserialize_with = "de::string_map")]
    pub env: BTreeMap<String, String>,
    /// Working directory; unset means sluice's own.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Runs at once; unset means one per CPU (see [`ExecFunction::effective_concurrency`]).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// How long one run may take.
    #[serde(default = "default_exec_timeout", deserialize_with = "de::duration")]
    pub timeout: Duration,
}

impl ExecFunction {
    /// Runs at once: the configured number, or the number of CPUs.
    pub fn effective_concurrency(&self) -> usize {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
    }
}

fn default_exec_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A program that reads its topics itself, started when records are waiting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFunction {
    /// Program and arguments.
    #[serde(deserialize_with = "de::string_list")]
    pub job: Vec<String>,
    /// Topics the job consumes.
    #[serde(deserialize_with = "de::string_list")]
    pub topics: Vec<String>,
    /// Consumer group the job uses.
    pub group: String,
    /// Extra environment variables.
    #[serde(default, deserialize_with = "de::string_map")]
    pub env: BTreeMap<String, String>,
    /// Working directory; unset means sluice's own.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Most instances at once.
    #[serde(default = "default_job_max")]
    pub max: usize,
    /// How often the group's lag is checked.
    #[serde(default = "default_poll_interval", deserialize_with = "de::duration")]
    pub poll_interval: Duration,
    /// How long a job may wait without records before exiting; passed as `SLUICE_IDLE_TIMEOUT`.
    #[serde(
        default = "default_job_idle_timeout",
        deserialize_with = "de::duration"
    )]
    pub idle_timeout: Duration,
}

fn default_job_max() -> usize {
    4
}

fn default_poll_interval() -> Duration {
    Duration::from_millis(500)
}

fn default_job_idle_timeout() -> Duration {
    Duration::from_secs(10)
}
