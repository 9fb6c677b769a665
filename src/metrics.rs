//! Prometheus metrics: one [`Metrics`] registered at start and shared by every part.
//!
//! Labels are bounded: topic and partition of the topics sluice is told about, never a record.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{family::Family, gauge::Gauge, info::Info},
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

/// Every metric sluice exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 while the last look at the broker succeeded.
    pub broker_up: Gauge,
    /// Partitions per topic.
    pub topic_partitions: Family<TopicLabels, Gauge>,
    /// Records retained per topic (high minus low watermark, summed).
    pub topic_records: Family<TopicLabels, Gauge>,
    /// High watermark (next offset) per partition.
    pub partition_high_watermark: Family<PartitionLabels, Gauge>,
    /// Low watermark (first retained offset) per partition.
    pub partition_low_watermark: Family<PartitionLabels, Gauge>,
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
        Self {
            registry,
            broker_up,
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
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
