//! Prometheus metrics: one [`Metrics`] registered at start and shared by every part.
//!
//! Labels are bounded: topic and partition of the topics sluice is told about, never a record.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::Registry,
};

/// Labels for a per-topic series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Topic name.
    pub topic: String,
}

/// Labels for a per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

/// Labels for a per-trigger series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// Trigger name.
    pub trigger: String,
}

/// Labels for delivery attempts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Trigger name.
    pub trigger: String,
    /// `delivered`, `retry`, `unreachable` or `rejected`.
    pub outcome: String,
}

/// Labels for consumer lag.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    /// Trigger name.
    pub trigger: String,
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

/// Labels for a per-function series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// Function name.
    pub function: String,
}

/// Labels for function instances by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// Function name.
    pub function: String,
    /// `starting`, `ready`, `stopping` (command functions) or `running` (jobs).
    pub state: String,
}

/// Labels for an ingress topic's events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    /// The topic.
    pub topic: String,
    /// `stored`, `malformed`, `unauthorized`, `too_large` or `unavailable`.
    pub outcome: String,
}

/// Labels for a per-stream series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// The stream's path.
    pub stream: String,
}

/// Labels for a stream's resumes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResumeLabels {
    /// The stream's path.
    pub stream: String,
    /// `recovered` or `not_recovered`.
    pub outcome: String,
}

/// Labels for a series counted by outcome alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened: for reloads `applied`, `refused` or `failed`; for discovery reads
    /// `ok` or `error`.
    pub outcome: String,
}

/// Every metric sluice exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 while the last look at the broker succeeded.
    pub broker_up: Gauge,
    /// Bytes available on the embedded broker's data directory's filesystem.
    pub broker_disk_free_bytes: Gauge,
    /// Partitions per topic.
    pub topic_partitions: Family<TopicLabels, Gauge>,
    /// Records retained per topic (high minus low watermark, summed).
    pub topic_records: Family<TopicLabels, Gauge>,
    /// High watermark (next offset) per partition.
    pub partition_high_watermark: Family<PartitionLabels, Gauge>,
    /// Low watermark (first retained offset) per partition.
    pub partition_low_watermark: Family<PartitionLabels, Gauge>,
    /// Records a trigger received from Kafka.
    pub events_received: Family<TriggerLabels, Counter>,
    /// Events a function accepted (2xx).
    pub events_delivered: Family<TriggerLabels, Counter>,
    /// Every HTTP attempt, by outcome.
    pub delivery_attempts: Family<AttemptLabels, Counter>,
    /// Time of successful attempts.
    pub delivery_duration: Family<TriggerLabels, Histogram>,
    /// Events written to the dead-letter sink.
    pub events_dead_lettered: Family<TriggerLabels, Counter>,
    /// Events given up on with `dead_letter: none`.
    pub events_dropped: Family<TriggerLabels, Counter>,
    /// Events the trigger's filters did not let through.
    pub events_filtered: Family<TriggerLabels, Counter>,
    /// Replies produced to a reply topic.
    pub replies: Family<TriggerLabels, Counter>,
    /// Records between the committed offset and the end of a partition.
    pub consumer_lag: Family<LagLabels, Gauge>,
    /// Events being delivered right now.
    pub in_flight: Family<TriggerLabels, Gauge>,
    /// Events waiting for their next attempt.
    pub retrying: Family<TriggerLabels, Gauge>,
    /// Instances of a function, by state.
    pub function_instances: Family<InstanceLabels, Gauge>,
    /// Events a function is handling right now.
    pub function_in_flight: Family<FunctionLabels, Gauge>,
    /// Instances started because events waited for a function at zero.
    pub function_cold_starts: Family<FunctionLabels, Counter>,
    /// From an event waiting for a function at zero to an instance being ready.
    pub function_cold_start_seconds: Family<FunctionLabels, Histogram>,
    /// Duration of `exec` runs.
    pub exec_duration: Family<FunctionLabels, Histogram>,
    /// Config reloads, by outcome.
    pub reloads: Family<OutcomeLabels, Counter>,
    /// Reads of the OpenFaaS gateway's function list, by outcome.
    pub discovery_reads: Family<OutcomeLabels, Counter>,
    /// Triggers that discovery made, as of its last successful read.
    pub discovered_triggers: Gauge,
    /// Events that arrived over HTTP, by topic and outcome.
    pub ingress_events: Family<IngressLabels, Counter>,
    /// Clients connected to a stream.
    pub stream_clients: Family<StreamLabels, Gauge>,
    /// Records sent to a stream's clients.
    pub stream_messages_out: Family<StreamLabels, Counter>,
    /// Messages a stream's clients published.
    pub stream_messages_in: Family<StreamLabels, Counter>,
    /// Clients closed for falling behind.
    pub stream_dropped: Family<StreamLabels, Counter>,
    /// Clients that resumed from a position, by whether their history was still there.
    pub stream_resumes: Family<ResumeLabels, Counter>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        registry.register(
            "build",
            "sluice build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_owned())]),
        );
        let broker_up = Gauge::default();
        registry.register(
            "broker_up",
            "Whether the last look at the Kafka broker succeeded",
            broker_up.clone(),
        );
        let broker_disk_free_bytes = Gauge::default();
        registry.register(
            "broker_disk_free_bytes",
            "Bytes available on the filesystem of the embedded broker's data directory",
            broker_disk_free_bytes.clone(),
        );
        let topic_partitions = Family::<TopicLabels, Gauge>::default();
        registry.register(
            "topic_partitions",
            "Partitions of a topic",
            topic_partitions.clone(),
        );
        let topic_records = Family::<TopicLabels, Gauge>::default();
        registry.register(
            "topic_records",
            "Records retained in a topic",
            topic_records.clone(),
        );
        let partition_high_watermark = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "partition_high_watermark",
            "Next offset to be written to a partition",
            partition_high_watermark.clone(),
        );
        let partition_low_watermark = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "partition_low_watermark",
            "First offset retained in a partition",
            partition_low_watermark.clone(),
        );
        let events_received = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "events_received",
            "Records a trigger received from Kafka",
            events_received.clone(),
        );
        let events_delivered = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "events_delivered",
            "Events a function accepted",
            events_delivered.clone(),
        );
        let delivery_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts by outcome",
            delivery_attempts.clone(),
        );
        let delivery_duration =
            Family::<TriggerLabels, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "delivery_duration_seconds",
            "Duration of successful delivery attempts",
            delivery_duration.clone(),
        );
        let events_dead_lettered = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "events_dead_lettered",
            "Events written to the dead-letter sink",
            events_dead_lettered.clone(),
        );
        let events_dropped = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "events_dropped",
            "Events given up on without a dead-letter sink",
            events_dropped.clone(),
        );
        let events_filtered = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "events_filtered",
            "Events a trigger's filters did not let through; final, and committed past",
            events_filtered.clone(),
        );
        let replies = Family::<TriggerLabels, Counter>::default();
        registry.register("replies", "Replies produced", replies.clone());
        let consumer_lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Records after the committed offset of a trigger's group",
            consumer_lag.clone(),
        );
        let in_flight = Family::<TriggerLabels, Gauge>::default();
        registry.register("in_flight", "Events being delivered", in_flight.clone());
        let retrying = Family::<TriggerLabels, Gauge>::default();
        registry.register(
            "retrying",
            "Events waiting for their next attempt",
            retrying.clone(),
        );
        let function_instances = Family::<InstanceLabels, Gauge>::default();
        registry.register(
            "function_instances",
            "Instances of a function by state",
            function_instances.clone(),
        );
        let function_in_flight = Family::<FunctionLabels, Gauge>::default();
        registry.register(
            "function_in_flight",
            "Events a function is handling",
            function_in_flight.clone(),
        );
        let function_cold_starts = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "function_cold_starts",
            "Instances started for events waiting on a function at zero",
            function_cold_starts.clone(),
        );
        let function_cold_start_seconds =
            Family::<FunctionLabels, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "function_cold_start_seconds",
            "Time from an event waiting on a function at zero to an instance being ready",
            function_cold_start_seconds.clone(),
        );
        let exec_duration =
            Family::<FunctionLabels, Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "exec_duration_seconds",
            "Duration of exec function runs",
            exec_duration.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reloads",
            "Config reloads by outcome: applied, refused (the config had errors) or failed",
            reloads.clone(),
        );
        // Each outcome from 0, so that a refused reload shows as a change, not a new series.
        for outcome in ["applied", "refused", "failed"] {
            let _ = reloads.get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            });
        }
        let discovery_reads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "discovery_reads",
            "Reads of the OpenFaaS gateway's function list by outcome",
            discovery_reads.clone(),
        );
        let discovered_triggers = Gauge::default();
        registry.register(
            "discovered_triggers",
            "Triggers built from the OpenFaaS gateway's function list at its last good read",
            discovered_triggers.clone(),
        );
        let ingress_events = Family::<IngressLabels, Counter>::default();
        registry.register(
            "ingress_events",
            "Events that arrived over HTTP, by topic and outcome",
            ingress_events.clone(),
        );
        let stream_clients = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "stream_clients",
            "Clients connected to a stream",
            stream_clients.clone(),
        );
        let stream_messages_out = Family::<StreamLabels, Counter>::default();
        registry.register(
            "stream_messages_out",
            "Records sent to a stream's clients",
            stream_messages_out.clone(),
        );
        let stream_messages_in = Family::<StreamLabels, Counter>::default();
        registry.register(
            "stream_messages_in",
            "Messages a stream's clients published",
            stream_messages_in.clone(),
        );
        let stream_dropped = Family::<StreamLabels, Counter>::default();
        registry.register(
            "stream_clients_dropped",
            "Stream clients closed because they fell behind",
            stream_dropped.clone(),
        );
        let stream_resumes = Family::<ResumeLabels, Counter>::default();
        registry.register(
            "stream_resumes",
            "Stream clients that resumed from a position, by whether it was still held",
            stream_resumes.clone(),
        );
        Self {
            registry,
            ingress_events,
            stream_clients,
            stream_messages_out,
            stream_messages_in,
            stream_dropped,
            stream_resumes,
            reloads,
            discovery_reads,
            discovered_triggers,
            function_instances,
            function_in_flight,
            function_cold_starts,
            function_cold_start_seconds,
            exec_duration,
            events_received,
            events_delivered,
            delivery_attempts,
            delivery_duration,
            events_dead_lettered,
            events_dropped,
            events_filtered,
            replies,
            consumer_lag,
            in_flight,
            retrying,
            broker_up,
            broker_disk_free_bytes,
            topic_partitions,
            topic_records,
            partition_high_watermark,
            partition_low_watermark,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Buckets from 0.5 ms to about 33 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The kinds of outcome of one delivery attempt, as `sluice_delivery_attempts_total` labels
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx (or exit 0).
    Delivered,
    /// A failure that is retried.
    Retry,
    /// The function could not be reached.
    Unreachable,
    /// A failure that is not retried.
    Rejected,
}

/// A trigger's figures for `sluice status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Records delivered.
    pub delivered: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
    /// Records dropped (`dead_letter: none`).
    pub dropped: u64,
    /// Records the filters did not let through.
    pub filtered: u64,
    /// Records waiting for their next attempt.
    pub retrying: i64,
}

/// Per-trigger metric handles, resolved once.
#[derive(Debug, Clone)]
pub struct TriggerMetrics {
    received: Counter,
    /// Records delivered.
    pub delivered: Counter,
    /// Records dead-lettered.
    pub dead_lettered: Counter,
    /// Records dropped.
    pub dropped: Counter,
    /// Records filtered out.
    pub filtered: Counter,
    /// Replies produced.
    pub replies: Counter,
    /// Time from an attempt's start to its 2xx.
    pub duration: Histogram,
    /// Delivery tasks running.
    pub in_flight: Gauge,
    /// Records waiting for their next attempt.
    pub retrying: Gauge,
    attempts: [Counter; 4],
}

impl TriggerMetrics {
    /// Handles for `trigger`.
    pub fn new(metrics: &Metrics, trigger: &str) -> Self {
        let labels = TriggerLabels {
            trigger: trigger.to_owned(),
        };
        let attempt = |outcome: &str| {
            metrics
                .delivery_attempts
                .get_or_create(&AttemptLabels {
                    trigger: trigger.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .clone()
        };
        Self {
            received: metrics.events_received.get_or_create(&labels).clone(),
            delivered: metrics.events_delivered.get_or_create(&labels).clone(),
            dead_lettered: metrics.events_dead_lettered.get_or_create(&labels).clone(),
            dropped: metrics.events_dropped.get_or_create(&labels).clone(),
            filtered: metrics.events_filtered.get_or_create(&labels).clone(),
            replies: metrics.replies.get_or_create(&labels).clone(),
            duration: metrics.delivery_duration.get_or_create(&labels).clone(),
            in_flight: metrics.in_flight.get_or_create(&labels).clone(),
            retrying: metrics.retrying.get_or_create(&labels).clone(),
            attempts: [
                attempt("delivered"),
                attempt("retry"),
                attempt("unreachable"),
                attempt("rejected"),
            ],
        }
    }

    /// A record arrived from Kafka.
    pub fn received(&self) {
        let _ = self.received.inc();
    }

    /// An attempt ended.
    pub fn attempt(&self, outcome: AttemptOutcome) {
        let _ = self.attempts[outcome as usize].inc();
    }

    /// Figures for `sluice status`.
    pub fn outcomes(&self) -> Outcomes {
        Outcomes {
            delivered: self.delivered.get(),
            dead_lettered: self.dead_lettered.get(),
            dropped: self.dropped.get(),
            filtered: self.filtered.get(),
            retrying: self.retrying.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_labelled_series() {
        let metrics = Metrics::new();
        metrics.broker_up.set(1);
        let _ = metrics
            .partition_high_watermark
            .get_or_create(&PartitionLabels {
                topic: "orders".into(),
                partition: 2,
            })
            .set(42);
        let text = metrics.encode();
        assert!(text.contains("sluice_broker_up 1\n"), "{text}");
        assert!(
            text.contains("sluice_partition_high_watermark{topic=\"orders\",partition=\"2\"} 42\n"),
            "{text}"
        );
        assert!(text.contains("sluice_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
