//! Kafka clients: one place that turns the config into librdkafka settings, plus the topic
//! administration every command shares (list, describe, create, ensure).
//!
//! librdkafka's metadata calls block, so they run on the blocking pool.

use std::{collections::BTreeMap, time::Duration};

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
    config::FromClientConfig,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::{KafkaError, RDKafkaErrorCode},
    metadata::Metadata,
};
use tracing::{info, warn};

/// How long a metadata request may take before the broker counts as unreachable.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No broker answered.
    #[error("cannot reach Kafka at {bootstrap}: {source}")]
    Unreachable {
        /// The bootstrap servers that were tried.
        bootstrap: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A client could not be created, usually a bad `kafka.client` property.
    #[error("invalid Kafka client settings: {0}")]
    Settings(KafkaError),
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    NoSuchTopic(String),
    /// The broker refused an admin request.
    #[error("{what} failed: {source}")]
    Admin {
        /// What was asked.
        what: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The broker answered a topic request with an error code.
    #[error("{what} failed: {code}")]
    Refused {
        /// What was asked.
        what: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// A blocking metadata task did not finish.
    #[error("metadata task failed: {0}")]
    Task(String),
}

/// Where and how to connect: bootstrap servers plus pass-through librdkafka properties.
#[derive(Debug, Clone)]
pub struct Kafka {
    bootstrap: String,
    properties: BTreeMap<String, String>,
}

/// A topic as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// Its partitions, in order.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// Records currently retained: the sum of high minus low watermarks.
    pub fn records(&self) -> i64 {
        self.partitions.iter().map(|p| p.high - p.low).sum()
    }
}

/// One partition and its watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: i32,
    /// Leader broker id.
    pub leader: i32,
    /// Lowest retained offset.
    pub low: i64,
    /// Next offset to be written.
    pub high: i64,
}

/// What [`Kafka::create_topic`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The topic was created.
    Created,
    /// It already existed; nothing changed.
    Exists,
}

/// A topic that should exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions wanted.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i32,
    /// Topic configs such as `retention.ms`.
    pub config: BTreeMap<String, String>,
}

impl Kafka {
    /// A client description for these servers and properties.
    pub fn new(bootstrap: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            properties,
        }
    }

    /// The bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// librdkafka settings: the pass-through properties, then `bootstrap.servers`.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            let _ = config.set(key, value);
        }
        let _ = config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Creates any client type from [`Kafka::client_config`] plus `extra` settings.
    pub fn create<T: FromClientConfig>(&self, extra: &[(&str, &str)]) -> Result<T, ClientError> {
        let mut config = self.client_config();
        for (key, value) in extra {
            let _ = config.set(*key, *value);
        }
        config.create().map_err(ClientError::Settings)
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, ClientError> {
        self.create(&[])
    }

    /// Fetches cluster metadata, for one topic or all.
    pub async fn metadata(&self, topic: Option<&str>) -> Result<Metadata, ClientError> {
        let consumer: BaseConsumer = self.create(&[("group.id", "sluice-metadata")])?;
        let topic = topic.map(str::to_owned);
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(topic.as_deref(), METADATA_TIMEOUT)
                .map_err(|source| ClientError::Unreachable { bootstrap, source })
        })
        .await
        .map_err(|err| ClientError::Task(err.to_string()))?
    }

    /// Checks that a broker answers.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.metadata(None).await.map(drop)
    }

    /// Names and partition counts of every topic, sorted by name, internal topics left out.
    pub async fn list_topics(&self) -> Result<Vec<(String, usize)>, ClientError> {
        let metadata = self.metadata(None).await?;
        let mut topics: Vec<_> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect();
        topics.sort();
        Ok(topics)
    }

    /// Partition counts of the named topics that exist.
    pub async fn partition_counts(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, usize>, ClientError> {
        Ok(self
            .list_topics()
            .await?
            .into_iter()
            .filter(|(name, _)| names.contains(name))
            .collect())
    }

    /// Describes a topic with its partitions' watermarks.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        let all = self.describe_topics(&[name.to_owned()]).await?;
        all.into_iter()
            .next()
            .ok_or_else(|| ClientError::NoSuchTopic(name.to_owned()))
    }

    /// Describes each named topic that exists, with watermarks, in the order given.
    pub async fn describe_topics(&self, names: &[String]) -> Result<Vec<TopicInfo>, ClientError> {
        let consumer: BaseConsumer = self.create(&[("group.id", "sluice-metadata")])?;
        let names = names.to_vec();
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || read_topics(&consumer, &names, &bootstrap))
            .await
            .map_err(|err| ClientError::Task(err.to_string()))?
    }

    /// A topic's configuration entries, as the broker reports them.
    pub async fn topic_config(&self, name: &str) -> Result<BTreeMap<String, String>, ClientError> {
        let admin = self.admin()?;
        let what = || format!("describing the configuration of {name}");
        let results = admin
            .describe_configs(
                [&ResourceSpecifier::Topic(name)],
                &AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT)),
            )
            .await
            .map_err(|source| ClientError::Admin {
                what: what(),
                source,
            })?;
        let mut out = BTreeMap::new();
        for result in results {
            let resource = result.map_err(|code| ClientError::Refused { what: what(), code })?;
            for entry in resource.entries {
                if let Some(value) = entry.value {
                    let _ = out.insert(entry.name, value);
                }
            }
        }
        Ok(out)
    }

    /// Creates a topic; an existing topic is left as it is.
    pub async fn create_topic(&self, spec: &TopicSpec) -> Result<Created, ClientError> {
        let admin = self.admin()?;
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions,
            TopicReplication::Fixed(spec.replication),
        );
        for (key, value) in &spec.config {
            topic = topic.set(key, value);
        }
        let what = || format!("creating topic {}", spec.name);
        let results = admin
            .create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
            )
            .await
            .map_err(|source| match source {
                KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)
                | KafkaError::AdminOp(RDKafkaErrorCode::BrokerTransportFailure)
                | KafkaError::AdminOp(RDKafkaErrorCode::AllBrokersDown) => {
                    ClientError::Unreachable {
                        bootstrap: self.bootstrap.clone(),
                        source,
                    }
                }
                source => ClientError::Admin {
                    what: what(),
                    source,
                },
            })?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(Created::Created),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(Created::Exists),
            Some(Err((_, code))) => Err(ClientError::Refused { what: what(), code }),
            None => Err(ClientError::Task(format!("{}: no answer", what()))),
        }
    }

    /// Creates every declared topic that is missing. A topic that exists with fewer partitions
    /// than declared is reported and left alone: adding partitions moves keys between them.
    pub async fn ensure_topics(&self, specs: &[TopicSpec]) -> Result<(), ClientError> {
        if specs.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let existing = self.partition_counts(&names).await?;
        for spec in specs {
            match existing.get(&spec.name) {
                Some(&have) if (have as i32) < spec.partitions => warn!(
                    topic = %spec.name,
                    declared = spec.partitions,
                    actual = have,
                    "Topic has fewer partitions than declared; it is left unchanged."
                ),
                Some(_) => {}
                None => match self.create_topic(spec).await? {
                    Created::Created => info!(
                        topic = %spec.name,
                        partitions = spec.partitions,
                        "Created topic."
                    ),
                    Created::Exists => {}
                },
            }
        }
        Ok(())
    }
}

/// One partition's watermarks and a group's committed offset in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Lowest retained offset.
    pub low: i64,
    /// Next offset to be written.
    pub high: i64,
    /// The group's committed offset, when it has one.
    pub committed: Option<i64>,
}

impl PartitionLag {
    /// Records after the committed offset (from the low watermark without a commit).
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

/// Reads a group's committed offsets without joining the group.
#[derive(Clone)]
pub struct OffsetsReader {
    consumer: std::sync::Arc<BaseConsumer>,
    bootstrap: String,
}

impl std::fmt::Debug for OffsetsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetsReader").finish_non_exhaustive()
    }
}

impl OffsetsReader {
    /// Committed offsets for the given partitions; partitions without a commit are left out.
    pub async fn committed(
        &self,
        partitions: Vec<(String, i32)>,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let consumer = self.consumer.clone();
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || read_committed(&consumer, &partitions, &bootstrap))
            .await
            .map_err(|err| ClientError::Task(err.to_string()))?
    }
}

impl OffsetsReader {
    /// Records after the group's committed offsets in each partition of `topics` that
    /// exists; a partition without a commit counts from its low watermark.
    pub async fn lag(&self, topics: Vec<String>) -> Result<Vec<PartitionLag>, ClientError> {
        let consumer = self.consumer.clone();
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let topics = read_topics(&consumer, &topics, &bootstrap)?;
            let partitions: Vec<(String, i32)> = topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
                .collect();
            if partitions.is_empty() {
                return Ok(Vec::new());
            }
            let committed = read_committed(&consumer, &partitions, &bootstrap)?;
            Ok(topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| PartitionLag {
                        topic: t.name.clone(),
                        partition: p.partition,
                        low: p.low,
                        high: p.high,
                        committed: committed.get(&(t.name.clone(), p.partition)).copied(),
                    })
                })
                .collect())
        })
        .await
        .map_err(|err| ClientError::Task(err.to_string()))?
    }
}

impl Kafka {
    /// A reader of `group`'s committed offsets. Fetching offsets does not join the group, so
    /// this cannot disturb its members.
    pub fn offsets_reader(&self, group: &str) -> Result<OffsetsReader, ClientError> {
        Ok(OffsetsReader {
            consumer: std::sync::Arc::new(self.create(&[("group.id", group)])?),
            bootstrap: self.bootstrap.clone(),
        })
    }

    /// Committed offsets of `group` for the given partitions; partitions without a commit
    /// are left out.
    pub async fn committed(
        &self,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let reader = self.offsets_reader(group)?;
        let result = reader.committed(partitions).await;
        // Dropping a client blocks while it closes.
        let _ = tokio::task::spawn_blocking(move || drop(reader)).await;
        result
    }
}

/// Each named topic that exists, with its partitions' watermarks, in the order given.
/// Blocking.
fn read_topics<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    names: &[String],
    bootstrap: &str,
) -> Result<Vec<TopicInfo>, ClientError> {
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|source| ClientError::Unreachable {
            bootstrap: bootstrap.to_owned(),
            source,
        })?;
    let mut out = Vec::new();
    for name in names {
        let Some(topic) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
        else {
            continue;
        };
        let mut partitions = Vec::with_capacity(topic.partitions().len());
        for p in topic.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(name, p.id(), METADATA_TIMEOUT)
                .map_err(|source| ClientError::Admin {
                    what: format!("reading watermarks of {name}/{}", p.id()),
                    source,
                })?;
            partitions.push(PartitionInfo {
                partition: p.id(),
                leader: p.leader(),
                low,
                high,
            });
        }
        partitions.sort_by_key(|p| p.partition);
        out.push(TopicInfo {
            name: name.clone(),
            partitions,
        });
    }
    Ok(out)
}

/// A group's committed offsets for `partitions`; partitions without a commit are left out.
/// Blocking.
fn read_committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[(String, i32)],
    bootstrap: &str,
) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
    use rdkafka::{Offset, TopicPartitionList};
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        let _ = list.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(list, METADATA_TIMEOUT)
        .map_err(|source| ClientError::Unreachable {
            bootstrap: bootstrap.to_owned(),
            source,
        })?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect())
}
