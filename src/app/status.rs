//! The status poller: every few seconds it reads the watched topics' watermarks and each
//! trigger's committed offsets and counts into `/api/status` and `/metrics`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    admin::{
        AdminState, DISK_FULL_BELOW, DeadLetterStatus, DiskStatus, PartitionStatus, TopicStatus,
        TriggerStatus,
    },
    config::{self, Config, InitialOffset},
    function::Functions,
    kafka::{ClientError, Kafka, OffsetsReader},
    metrics::{LagLabels, PartitionLabels, TopicLabels},
    trigger::TriggerProbe,
};

/// How often topic watermarks are read for `/metrics` and `/api/status`: the console shows
/// figures at most a second old.
const INTERVAL: Duration = Duration::from_secs(1);

/// What the status poller needs to know of a running trigger.
#[derive(Debug, Clone)]
pub struct TriggerView {
    name: String,
    topics: Vec<String>,
    group: String,
    initial_offset: InitialOffset,
    probe: TriggerProbe,
    offsets: OffsetsReader,
    function: Option<String>,
    dead_letter: DeadLetterStatus,
    reply: Option<String>,
    config: serde_json::Value,
}

/// A trigger's settings as the console's detail panel shows them.
fn settings(config: &config::Trigger) -> serde_json::Value {
    let duration = |d: std::time::Duration| humantime::format_duration(d).to_string();
    serde_json::json!({
        "group": config.effective_group(),
        "initial_offset": config.initial_offset.as_str(),
        "ordering": config.ordering.as_str(),
        "max_in_flight": config.max_in_flight,
        "content_type": config.content_type,
        "source": config.source,
        "type": config.event_type,
        "delivery": {
            "retry": config.delivery.retry,
            "backoff": config.delivery.backoff.as_str(),
            "backoff_delay": duration(config.delivery.backoff_delay),
            "backoff_max": duration(config.delivery.backoff_max),
            "timeout": duration(config.delivery.timeout),
        },
        "filters": config.filters.to_json(),
        "log_response": config.log_response.as_str(),
    })
}

impl TriggerView {
    /// The view of the trigger `config` that `probe` reads.
    pub fn new(
        config: &config::Trigger,
        probe: TriggerProbe,
        kafka: &Kafka,
    ) -> Result<Self, ClientError> {
        let group = config.effective_group();
        let function = match &config.target {
            config::Target::Command(name) | config::Target::Exec(name) => Some(name.clone()),
            config::Target::Url(_) => None,
        };
        let dead_letter = match &config.dead_letter {
            config::DeadLetter::None => DeadLetterStatus::None,
            config::DeadLetter::Topic(topic) => DeadLetterStatus::Topic {
                topic: topic.clone(),
            },
            config::DeadLetter::Url(endpoint) => DeadLetterStatus::Url {
                url: endpoint.to_string(),
            },
        };
        Ok(Self {
            name: config.name.clone(),
            topics: config.topics.clone(),
            offsets: kafka.offsets_reader(&group)?,
            group,
            initial_offset: config.initial_offset,
            probe,
            function,
            dead_letter,
            reply: config.reply.as_ref().map(|r| r.topic.clone()),
            config: settings(config),
        })
    }
}

/// The config's declared topics, and those open to ingress or streamed, reported whether or
/// not a trigger reads them.
pub fn declared_topics(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config.topics.iter().map(|t| t.name.clone()).collect();
    let edge = config
        .ingress
        .iter()
        .flat_map(|i| i.topics.iter().map(|t| &t.name))
        .chain(config.streams.iter().map(|s| &s.topic));
    for name in edge {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The topics whose state is reported: the declared ones, then those the triggers read.
fn watched_topics(declared: &[String], triggers: &[TriggerView]) -> Vec<String> {
    let mut names = declared.to_vec();
    for topic in triggers.iter().flat_map(|view| &view.topics) {
        if !names.contains(topic) {
            names.push(topic.clone());
        }
    }
    names
}

/// Reads the status of a running sluice into its admin state.
#[derive(Debug)]
pub struct Poller {
    /// The Kafka client.
    pub kafka: Kafka,
    /// Declared topics, reported besides those the triggers read.
    pub declared: Vec<String>,
    /// The triggers reported, as they run now.
    pub triggers: watch::Receiver<Vec<TriggerView>>,
    /// Functions reported, when triggers run.
    pub functions: Option<Arc<Functions>>,
    /// The public listener, when it runs.
    pub edge: Option<crate::edge::EdgeView>,
    /// Where the status goes.
    pub state: Arc<AdminState>,
    /// The embedded broker's data directory, when it stores there: its filesystem is
    /// watched for a full disk.
    pub data_dir: Option<PathBuf>,
}

impl Poller {
    /// Reads the status once.
    pub async fn refresh(&self) {
        if let Some(dir) = &self.data_dir {
            check_disk(dir, &self.state);
        }
        if let Some(edge) = &self.edge {
            let status = edge.status();
            self.state.update_status(|s| s.edge = Some(status));
        }
        // A copy, so the views are not borrowed across the reads below.
        let triggers = self.triggers.borrow().clone();
        refresh(
            &self.kafka,
            &watched_topics(&self.declared, &triggers),
            &triggers,
            self.functions.as_deref(),
            &self.state,
        )
        .await;
    }

    /// Reads the status every [`INTERVAL`] until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tick.tick() => self.refresh().await,
            }
        }
    }
}

/// Reads the free space of the data directory's filesystem into the status; a disk that
/// fills or has room again is logged once.
fn check_disk(dir: &std::path::Path, state: &AdminState) {
    let disk = match nix::sys::statvfs::statvfs(dir) {
        Ok(stat) => {
            let block = stat.fragment_size();
            let free_bytes = stat.blocks_available().saturating_mul(block);
            DiskStatus {
                path: dir.display().to_string(),
                free_bytes,
                total_bytes: stat.blocks().saturating_mul(block),
                full: free_bytes < DISK_FULL_BELOW,
            }
        }
        Err(err) => {
            warn!(path = %dir.display(), error = %err, "Cannot read the data directory's free space.");
            return;
        }
    };
    let mut was_full = false;
    state.update_status(|s| {
        was_full = s.broker.disk.as_ref().is_some_and(|d| d.full);
        s.broker.disk = Some(disk.clone());
    });
    match (was_full, disk.full) {
        (false, true) => error!(
            path = %disk.path,
            free_bytes = disk.free_bytes,
            total_bytes = disk.total_bytes,
            "The embedded broker's disk is full: producers are refused with KAFKA_STORAGE_ERROR and /readyz answers 503 until space is freed."
        ),
        (true, false) => info!(
            path = %disk.path,
            free_bytes = disk.free_bytes,
            "The embedded broker's disk has room again."
        ),
        _ => {}
    }
    let _ = state
        .metrics()
        .broker_disk_free_bytes
        .set(i64::try_from(disk.free_bytes).unwrap_or(i64::MAX));
}

/// Reads watermarks of the watched topics and the triggers' committed offsets into the
/// status report and the metrics.
async fn refresh(
    kafka: &Kafka,
    watched: &[String],
    triggers: &[TriggerView],
    functions: Option<&Functions>,
    state: &AdminState,
) {
    let metrics = state.metrics();
    if let Some(functions) = functions {
        let status = functions.status();
        state.update_status(|s| s.functions = status);
    }
    match kafka.describe_topics(watched).await {
        Ok(topics) => {
            let mut trigger_status = Vec::with_capacity(triggers.len());
            for view in triggers {
                let partitions: Vec<(String, i32)> = topics
                    .iter()
                    .filter(|t| view.topics.contains(&t.name))
                    .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
                    .collect();
                let committed = view.offsets.committed(partitions).await.unwrap_or_default();
                let mut lag = 0;
                let mut partition_status = Vec::new();
                for topic in topics.iter().filter(|t| view.topics.contains(&t.name)) {
                    for p in &topic.partitions {
                        let at = committed.get(&(topic.name.clone(), p.partition)).copied();
                        let behind = match at {
                            Some(offset) => p.high - offset.max(p.low),
                            // Nothing committed yet: a trigger reading from the end has
                            // nothing to catch up on.
                            None if view.initial_offset == InitialOffset::Latest => 0,
                            None => p.high - p.low,
                        }
                        .max(0);
                        lag += behind;
                        partition_status.push(PartitionStatus {
                            topic: topic.name.clone(),
                            partition: p.partition,
                            committed: at,
                            high: p.high,
                            lag: behind,
                        });
                        let _ = metrics
                            .consumer_lag
                            .get_or_create(&LagLabels {
                                trigger: view.name.clone(),
                                topic: topic.name.clone(),
                                partition: p.partition,
                            })
                            .set(behind);
                    }
                }
                let counts = view.probe.counts();
                let outcomes = view.probe.outcomes();
                trigger_status.push(TriggerStatus {
                    name: view.name.clone(),
                    topics: view.topics.clone(),
                    target: view.probe.target(),
                    group: view.group.clone(),
                    lag,
                    in_flight: counts.in_flight,
                    waiting: counts.waiting,
                    delivered: outcomes.delivered,
                    retrying: outcomes.retrying,
                    dead_lettered: outcomes.dead_lettered,
                    dropped: outcomes.dropped,
                    filtered: outcomes.filtered,
                    function: view.function.clone(),
                    paused: counts.paused,
                    dead_letter: view.dead_letter.clone(),
                    reply: view.reply.clone(),
                    partitions: partition_status,
                    config: view.config.clone(),
                });
            }
            state.update_status(|status| status.triggers = trigger_status);
            metrics.broker_up.set(1);
            for topic in &topics {
                let labels = TopicLabels {
                    topic: topic.name.clone(),
                };
                let _ = metrics
                    .topic_partitions
                    .get_or_create(&labels)
                    .set(topic.partitions.len() as i64);
                let _ = metrics
                    .topic_records
                    .get_or_create(&labels)
                    .set(topic.records());
                for p in &topic.partitions {
                    let labels = PartitionLabels {
                        topic: topic.name.clone(),
                        partition: p.partition,
                    };
                    let _ = metrics
                        .partition_high_watermark
                        .get_or_create(&labels)
                        .set(p.high);
                    let _ = metrics
                        .partition_low_watermark
                        .get_or_create(&labels)
                        .set(p.low);
                }
            }
            state.update_status(|status| {
                status.broker.reachable = true;
                status.broker.error = None;
                status.topics = watched
                    .iter()
                    .map(|name| match topics.iter().find(|t| &t.name == name) {
                        Some(t) => TopicStatus {
                            name: name.clone(),
                            partitions: t.partitions.len(),
                            records: t.records(),
                            high: t.partitions.iter().map(|p| p.high).sum(),
                        },
                        None => TopicStatus {
                            name: name.clone(),
                            ..TopicStatus::default()
                        },
                    })
                    .collect();
            });
        }
        Err(err) => {
            metrics.broker_up.set(0);
            warn!(error = %err, "Cannot read topic state from the broker.");
            state.update_status(|status| {
                status.broker.reachable = false;
                status.broker.error = Some(err.to_string());
            });
        }
    }
}
