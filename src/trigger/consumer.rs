//! A trigger's Kafka consumer: the settings sluice relies on, the rebalance callback that
//! runs the revoke protocol on the shared state, and the copy of a record out of
//! librdkafka's buffers.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    message::{BorrowedMessage, Headers},
};
use tracing::{info, warn};

use super::state::{Commit, Shared};
use crate::{config::InitialOffset, event::Record};

/// How long a revoke waits for the deliveries of the revoked partitions.
const REVOKE_WAIT: Duration = Duration::from_secs(10);

/// librdkafka properties.
pub type Settings = Vec<(&'static str, String)>;

/// Consumer settings sluice relies on (first), and the tunable ones that `kafka.client` may
/// override (second).
pub fn settings(group: &str, initial_offset: InitialOffset) -> (Settings, Settings) {
    let fixed = vec![
        ("group.id", group.to_owned()),
        // Offsets are stored and committed only past final outcomes.
        ("enable.auto.commit", "false".to_owned()),
        ("enable.auto.offset.store", "false".to_owned()),
        ("enable.partition.eof", "false".to_owned()),
        (
            "auto.offset.reset",
            match initial_offset {
                InitialOffset::Earliest => "earliest",
                InitialOffset::Latest => "latest",
            }
            .to_owned(),
        ),
    ];
    let tunable = vec![
        (
            "partition.assignment.strategy",
            "cooperative-sticky".to_owned(),
        ),
        // Bounds what librdkafka prefetches per trigger, so memory stays flat under lag.
        ("queued.max.messages.kbytes", "8192".to_owned()),
        // Small per-partition shares of a fetch interleave the partitions in the consumer's
        // queue, so a full trigger holds records of every partition and each ordered lane
        // has work; with librdkafka's 1 MiB one partition's run could fill the trigger.
        ("max.partition.fetch.bytes", "65536".to_owned()),
        ("session.timeout.ms", "10000".to_owned()),
        ("heartbeat.interval.ms", "1000".to_owned()),
        // A topic created after the trigger subscribed (by a producer, or for a function
        // discovered later) is seen within this, instead of librdkafka's 5 minutes.
        ("topic.metadata.refresh.interval.ms", "10000".to_owned()),
    ];
    (fixed, tunable)
}

/// Consumer context: runs the revoke protocol inside librdkafka's rebalance callback.
pub struct TriggerContext {
    /// The trigger's name, for logs.
    pub name: String,
    /// The trigger's state.
    pub shared: Arc<Shared>,
}

impl ClientContext for TriggerContext {}

impl ConsumerContext for TriggerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            block(|| {
                let commit = offsets(&self.shared.revoke(&revoked, REVOKE_WAIT));
                if commit.count() > 0
                    && let Err(err) = consumer.commit(&commit, CommitMode::Sync)
                {
                    warn!(trigger = %self.name, error = %err, "Commit on revoke failed.");
                }
            });
            info!(trigger = %self.name, partitions = ?revoked, "Partitions revoked.");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            info!(trigger = %self.name, partitions = ?partitions(list), "Partitions assigned.");
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// The commits as librdkafka takes them.
pub fn offsets(commits: &[Commit]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(commits.len());
    for c in commits {
        let _ = list.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.offset));
    }
    list
}

/// Runs blocking work inside an async context without starving the runtime's other tasks.
/// A worker that blocks may be the one driving the runtime's I/O; the embedded broker runs
/// on the same runtime, so a blocking Kafka call made there would wait for a broker that can
/// no longer read its sockets.
pub fn block<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Copies a consumed message out of librdkafka's buffers. The records of a topic share its
/// name, from `topics`.
pub fn owned(message: &BorrowedMessage<'_>, topics: &mut Vec<Arc<str>>) -> Record {
    let name = message.topic();
    let topic = match topics.iter().find(|t| t.as_ref() == name) {
        Some(topic) => topic.clone(),
        None => {
            let topic = Arc::<str>::from(name);
            topics.push(topic.clone());
            topic
        }
    };
    let headers = message
        .headers()
        .map(|list| {
            list.iter()
                .map(|h| (h.key.to_owned(), h.value.map(Bytes::copy_from_slice)))
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
    }
}
