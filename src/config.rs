//! The configuration file: loading, validation and the typed result.
//!
//! [`parse`] reports every problem in a file at once, each with its line and column, so that a
//! broken file can be fixed in one pass instead of one error per run.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use url::Url;

mod de;
pub mod discovery;
pub mod edge;
mod function;
mod path;
mod resolve;
mod storage;
mod yaml;

pub use function::{
    CommandFunction, ExecFunction, Function, FunctionKind, JobFunction, UrlFunction,
};
pub use storage::{PostgresUrl, Storage};

#[cfg(test)]
mod tests;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates configuration text; `origin` names it in messages (usually the file path).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let invalid = |mut problems: Vec<Problem>| {
        // Sorting by position reads like the file; problems without one go last.
        problems.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
        ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        }
    };
    let document = yaml::read(text).map_err(|problem| invalid(vec![problem]))?;
    let (config, problems) = resolve::resolve(document);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(invalid(problems))
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text was read but is not a valid configuration.
    #[error("{}", ProblemList { origin, problems })]
    Invalid {
        /// Where the text came from, as given to [`parse`].
        origin: String,
        /// Every problem found, in the order they appear in the text.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Each problem on a line of its own, as the error prints them after its first line.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Read { .. } => vec![self.to_string()],
            Self::Invalid { origin, problems } => problems
                .iter()
                .map(|problem| {
                    let located = problem.line.is_some() && problem.column.is_some();
                    let separator = if located { ":" } else { ": " };
                    format!("{origin}{separator}{problem}")
                })
                .collect(),
        }
    }
}

/// One thing wrong in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the configuration, e.g. `triggers[0].delivery.timeout` or `functions.hello`;
    /// empty for the document as a whole.
    pub path: String,
    /// Line in the text, counted from 1, when known.
    pub line: Option<usize>,
    /// Column in the text, counted from 1, when known.
    pub column: Option<usize>,
    /// What is wrong, in one line.
    pub message: String,
}

impl Problem {
    /// A problem at `path`, located at `pos` when known.
    fn at(path: &str, pos: Option<yaml::Pos>, message: impl Into<String>) -> Self {
        // Each problem prints on one line of a list, so line breaks inside would break it.
        let message = message.into().replace(['\n', '\r'], " ");
        Problem {
            path: path.to_owned(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "{line}:{column}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The text of [`ConfigError::Invalid`]: a count, then one problem per line.
struct ProblemList<'a> {
    /// See [`ConfigError::Invalid::origin`].
    origin: &'a str,
    /// See [`ConfigError::Invalid::problems`].
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        write!(f, "{}: {count} {noun}", self.origin)?;
        for problem in self.problems {
            // With a position the line reads `origin:line:column: ...`, like compilers print.
            let located = problem.line.is_some() && problem.column.is_some();
            let separator = if located { ":" } else { ": " };
            write!(f, "\n  {}{separator}{problem}", self.origin)?;
        }
        Ok(())
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where sluice keeps its state.
    pub data_dir: PathBuf,
    /// How to reach Kafka.
    pub kafka: KafkaConfig,
    /// The built-in broker used when no Kafka servers are configured.
    pub embedded: EmbeddedConfig,
    /// The admin and metrics endpoint.
    pub admin: AdminConfig,
    /// Topics to create.
    pub topics: Vec<TopicConfig>,
    /// Functions, by name.
    pub functions: BTreeMap<String, Function>,
    /// Triggers, which deliver records from topics to functions.
    pub triggers: Vec<Trigger>,
    /// Functions found on an OpenFaaS gateway, each bound to the topics it lists.
    pub discovery: Option<discovery::OpenFaasDiscovery>,
    /// HTTP into topics on the public listener; set when the section is written.
    pub ingress: Option<edge::Ingress>,
    /// Topics streamed to browsers on the public listener.
    pub streams: Vec<edge::Stream>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            kafka: KafkaConfig::default(),
            embedded: EmbeddedConfig::default(),
            admin: AdminConfig::default(),
            topics: Vec::new(),
            functions: BTreeMap::new(),
            triggers: Vec::new(),
            discovery: None,
            ingress: None,
            streams: Vec::new(),
        }
    }
}

impl Config {
    /// True when sluice runs its own broker, i.e. no Kafka servers are configured.
    pub fn is_embedded(&self) -> bool {
        self.kafka.bootstrap_servers.is_none()
    }

    /// The public listener's settings when anything is served on it (ingress, streams or
    /// static files).
    pub fn edge(&self) -> Option<edge::Ingress> {
        match (&self.ingress, self.streams.is_empty()) {
            (Some(ingress), _) => Some(ingress.clone()),
            (None, false) => Some(edge::Ingress::default()),
            (None, true) => None,
        }
    }

    /// The number of partitions for `topic`, falling back to the embedded broker's default.
    pub fn topic_partitions(&self, topic: &TopicConfig) -> i32 {
        topic.partitions.unwrap_or(self.embedded.default_partitions)
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".sluice")
}

/// How to reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Kafka servers to connect to; unset means the embedded broker.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Extra librdkafka client properties; a value may be `{env: NAME}` or `{file: PATH}`,
    /// read as the config is loaded.
    #[serde(default, deserialize_with = "de::client_map")]
    pub client: BTreeMap<String, String>,
}

/// The built-in broker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Address the broker listens on.
    #[serde(
        default = "default_embedded_listen",
        deserialize_with = "de::socket_addr"
    )]
    pub listen: SocketAddr,
    /// Where the broker keeps records.
    #[serde(default)]
    pub storage: Storage,
    /// Partitions for topics created without a partition count.
    #[serde(default = "default_partitions")]
    pub default_partitions: i32,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            listen: default_embedded_listen(),
            storage: Storage::default(),
            default_partitions: default_partitions(),
        }
    }
}

fn default_embedded_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9092))
}

fn default_partitions() -> i32 {
    3
}

/// The admin and metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address the admin endpoint listens on.
    pub listen: SocketAddr,
    /// The bearer token mutating calls (seek, reload, redrive) need; required when the
    /// listener is not on loopback.
    pub token: Option<edge::Token>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token: None,
        }
    }
}

/// The admin listener's address when none is set.
pub fn default_admin_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9464))
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// The topic name.
    pub name: String,
    /// Partition count; unset means the embedded broker's default (see
    /// [`Config::topic_partitions`]).
    #[serde(default)]
    pub partitions: Option<i32>,
    /// Replication factor.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i16,
    /// Topic properties such as `retention.ms`.
    #[serde(default, deserialize_with = "de::string_map")]
    pub config: BTreeMap<String, String>,
}

fn default_replication_factor() -> i16 {
    1
}

/// Delivers records from topics to a function or URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// Unique name.
    pub name: String,
    /// Topics read.
    pub topics: Vec<String>,
    /// Where events go.
    pub target: Target,
    /// Consumer group; unset means `sluice-<name>` (see [`Trigger::effective_group`]).
    pub group: Option<String>,
    /// Where a new consumer group starts reading.
    pub initial_offset: InitialOffset,
    /// Which records must be delivered one after another.
    pub ordering: Ordering,
    /// Most deliveries outstanding at once.
    pub max_in_flight: usize,
    /// CloudEvents `datacontenttype`.
    pub content_type: String,
    /// CloudEvents `source`; unset means sluice picks one.
    pub source: Option<String>,
    /// CloudEvents `type`; unset means sluice picks one.
    pub event_type: Option<String>,
    /// Retries and timeouts.
    pub delivery: Delivery,
    /// Where records go after the last failed retry.
    pub dead_letter: DeadLetter,
    /// Where the function's responses are produced, if anywhere.
    pub reply: Option<Reply>,
    /// Which events are delivered; none means all. A filtered-out record is final.
    pub filters: crate::filter::Filters,
    /// What of each function's answer is logged.
    pub log_response: LogResponse,
}

impl Trigger {
    /// The consumer group: the configured one, or `sluice-<name>`.
    pub fn effective_group(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("sluice-{}", self.name))
    }
}

/// Where a trigger delivers, resolved: a `function` is looked up once, so the runtime knows
/// its kind and never checks the reference again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An HTTP endpoint: the trigger's `url`, or that of the `url` function it names.
    Url(Endpoint),
    /// A `command` function, by name.
    Command(String),
    /// An `exec` function, by name.
    Exec(String),
}

/// An `http` URL, checked and parsed for the HTTP client once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: Url,
    uri: hyper::Uri,
}

impl Endpoint {
    /// The URL as the HTTP client takes it; an error says why it cannot.
    pub fn parse(url: Url) -> Result<Self, String> {
        let uri = url
            .as_str()
            .parse()
            .map_err(|err| format!("the HTTP client cannot use {url}: {err}"))?;
        Ok(Self { url, uri })
    }

    /// The URL as written (normalised).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL for the HTTP client.
    pub fn uri(&self) -> &hyper::Uri {
        &self.uri
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url.fmt(f)
    }
}

/// Where records go after delivery has failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// They are dropped.
    None,
    /// They are produced to this topic.
    Topic(String),
    /// They are posted to this URL.
    Url(Endpoint),
}

impl DeadLetter {
    /// The dead-letter topic a trigger gets when none is configured.
    pub fn default_for(trigger: &str) -> Self {
        DeadLetter::Topic(format!("sluice.dlq.{trigger}"))
    }
}

/// Where a function's responses are produced.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The topic responses go to.
    pub topic: String,
}

/// Retries and timeouts for one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Retries after the first attempt.
    #[serde(default = "default_retry")]
    pub retry: u32,
    /// How the wait between retries grows.
    #[serde(default)]
    pub backoff: Backoff,
    /// The first wait between retries.
    #[serde(default = "default_backoff_delay", deserialize_with = "de::duration")]
    pub backoff_delay: Duration,
    /// The longest wait between retries.
    #[serde(default = "default_backoff_max", deserialize_with = "de::duration")]
    pub backoff_max: Duration,
    /// How long one attempt may take.
    #[serde(
        default = "default_delivery_timeout",
        deserialize_with = "de::duration"
    )]
    pub timeout: Duration,
    /// Several events in one request; unset delivers one event per request.
    #[serde(default)]
    pub batch: Option<Batch>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            retry: default_retry(),
            backoff: Backoff::default(),
            backoff_delay: default_backoff_delay(),
            backoff_max: default_backoff_max(),
            timeout: default_delivery_timeout(),
            batch: None,
        }
    }
}

/// The bounds of a batch: a JSON array of structured CloudEvents in one request
/// (`application/cloudevents-batch+json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The most events in one request.
    #[serde(default = "default_batch_events")]
    pub max_events: usize,
    /// The largest request body, in bytes.
    #[serde(default = "default_batch_bytes", deserialize_with = "de::byte_size")]
    pub max_bytes: usize,
    /// How long a batch that is not full waits for more records after its first one; zero
    /// sends what is there.
    #[serde(default = "default_batch_wait", deserialize_with = "de::duration")]
    pub max_wait: Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            max_events: default_batch_events(),
            max_bytes: default_batch_bytes(),
            max_wait: default_batch_wait(),
        }
    }
}

fn default_batch_events() -> usize {
    100
}

fn default_batch_bytes() -> usize {
    1 << 20
}

fn default_batch_wait() -> Duration {
    Duration::ZERO
}

fn default_retry() -> u32 {
    5
}

fn default_backoff_delay() -> Duration {
    Duration::from_millis(200)
}

fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}

fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Gives an enum of unit variants a fixed spelling in the file, with a message listing the
/// accepted spellings (serde's own mentions Rust details such as the enum's name).
macro_rules! text_enum {
    ($name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        impl $name {
            /// The spelling used in the configuration file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                match text.as_str() {
                    $($text => Ok($name::$variant),)+
                    other => Err(D::Error::custom(format!(
                        "unknown value {other:?}, expected one of: {}",
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}

/// What of a function's answer to a delivered event is logged (the OpenFaaS connector's
/// `print_response` and `print_response_body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogResponse {
    /// Nothing.
    #[default]
    None,
    /// The status.
    Status,
    /// The status and the body (its first 4 KiB, as text).
    Body,
}

text_enum!(LogResponse {
    None = "none",
    Status = "status",
    Body = "body",
});

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InitialOffset {
    /// At records produced from now on.
    #[default]
    Latest,
    /// At the oldest record kept.
    Earliest,
}

text_enum!(InitialOffset {
    Latest = "latest",
    Earliest = "earliest",
});

/// Which records a trigger delivers one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ordering {
    /// Records of one partition, in order.
    #[default]
    Partition,
    /// Records with the same key, in order.
    Key,
    /// No order at all.
    Unordered,
}

text_enum!(Ordering {
    Partition = "partition",
    Key = "key",
    Unordered = "unordered",
});

/// How the wait between retries grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backoff {
    /// It doubles each time, up to `backoff_max`.
    #[default]
    Exponential,
    /// It grows by `backoff_delay` each time, up to `backoff_max`.
    Linear,
}

text_enum!(Backoff {
    Exponential = "exponential",
    Linear = "linear",
});
