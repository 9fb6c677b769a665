//! Replay: moving a running trigger's group to other positions.
//!
//! The trigger pauses its partitions, drops the records it holds and waits (bounded) for
//! those in delivery, as a revoke does; then it seeks each partition, commits the new
//! positions and goes on. A partition the request does not name resumes where it was, at
//! its watermark, so nothing it held is lost.

use std::time::{Duration, UNIX_EPOCH};

use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
};
use serde::{Deserialize, Serialize};

use super::{
    consumer::{TriggerContext, block},
    state::Shared,
};

/// How long each call to the broker may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long the deliveries of the moved partitions may take to finish.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// Where to move a trigger's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeekTo {
    /// Each partition's first record.
    Earliest,
    /// Past each partition's last record.
    Latest,
    /// Each partition's first record at or after this time (milliseconds since the epoch).
    Time(i64),
    /// These offsets for these partition numbers, in every topic of the trigger; other
    /// partitions stay where they are.
    Offsets(Vec<(i32, i64)>),
}

impl std::str::FromStr for SeekTo {
    type Err = String;

    /// `earliest`, `latest`, an RFC 3339 time in UTC (`2026-12-01T00:00:00Z`) or
    /// `<partition>:<offset>[,...]`.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "earliest" => return Ok(Self::Earliest),
            "latest" => return Ok(Self::Latest),
            _ => {}
        }
        if let Ok(time) = humantime::parse_rfc3339(text) {
            let millis = time
                .duration_since(UNIX_EPOCH)
                .map_err(|_| format!("{text} is before 1970"))?
                .as_millis();
            return i64::try_from(millis)
                .map(Self::Time)
                .map_err(|_| format!("{text} is too far ahead"));
        }
        let mut offsets = Vec::new();
        for pair in text.split(',') {
            let parsed = pair.split_once(':').and_then(|(p, o)| {
                Some((p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?))
            });
            match parsed {
                Some((partition, offset)) if partition >= 0 && offset >= 0 => {
                    offsets.push((partition, offset));
                }
                _ => {
                    return Err(format!(
                        "expected earliest, latest, an RFC 3339 time such as 2026-12-01T00:00:00Z, or PARTITION:OFFSET[,...]; got {text:?}"
                    ));
                }
            }
        }
        Ok(Self::Offsets(offsets))
    }
}

/// One partition moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// Its topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Where the group was: its watermark, or its committed offset when nothing was read
    /// since; `None` when it had none.
    pub from: Option<i64>,
    /// Where it goes on from.
    pub to: i64,
}

/// Why a seek could not be done.
#[derive(Debug, thiserror::Error)]
pub enum SeekError {
    /// The trigger holds no partitions right now (it is joining its group, or another
    /// replica has them all).
    #[error("the trigger holds no partitions right now; try again once it has joined its group")]
    Unassigned,
    /// The trigger stopped before it could answer.
    #[error("the trigger is not running")]
    Stopped,
    /// The broker refused or did not answer.
    #[error("{what}: {source}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// What librdkafka said.
        source: rdkafka::error::KafkaError,
    },
}

fn kafka(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> SeekError {
    move |source| SeekError::Kafka { what, source }
}

/// Moves the consumer's assigned partitions to `to`; see the module's doc.
pub fn seek(
    consumer: &StreamConsumer<TriggerContext>,
    shared: &Shared,
    to: &SeekTo,
) -> Result<Vec<Moved>, SeekError> {
    let assignment = consumer
        .assignment()
        .map_err(kafka("reading the assignment"))?;
    if assignment.count() == 0 {
        return Err(SeekError::Unassigned);
    }
    consumer
        .pause(&assignment)
        .map_err(kafka("pausing the partitions"))?;
    let moved = block(|| move_partitions(consumer, shared, &assignment, to));
    let resumed = consumer
        .resume(&assignment)
        .map_err(kafka("resuming the partitions"));
    let moved = moved?;
    resumed?;
    Ok(moved)
}

fn move_partitions(
    consumer: &StreamConsumer<TriggerContext>,
    shared: &Shared,
    assignment: &TopicPartitionList,
    to: &SeekTo,
) -> Result<Vec<Moved>, SeekError> {
    let partitions: Vec<(String, i32)> = assignment
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let committed = consumer
        .committed_offsets(assignment.clone(), TIMEOUT)
        .map_err(kafka("reading the committed offsets"))?;
    // Drops what the trigger holds for these partitions and waits for their deliveries;
    // what comes back is each partition's watermark.
    let watermarks = shared.revoke(&partitions, DRAIN_WAIT);
    let times = match to {
        SeekTo::Time(millis) => {
            let mut query = TopicPartitionList::new();
            for (topic, partition) in &partitions {
                let _ = query.add_partition_offset(topic, *partition, Offset::Offset(*millis));
            }
            Some(
                consumer
                    .offsets_for_times(query, TIMEOUT)
                    .map_err(kafka("looking up offsets by time"))?,
            )
        }
        _ => None,
    };
    let mut moved = Vec::with_capacity(partitions.len());
    let mut commit = TopicPartitionList::new();
    for (topic, partition) in &partitions {
        let from = watermarks
            .iter()
            .find(|c| &*c.topic == topic && c.partition == *partition)
            .map(|c| c.offset)
            .or_else(|| {
                committed
                    .find_partition(topic, *partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
            });
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, TIMEOUT)
            .map_err(kafka("reading the watermarks"))?;
        let target = match to {
            SeekTo::Earliest => low,
            SeekTo::Latest => high,
            SeekTo::Time(_) => times
                .as_ref()
                .and_then(|t| t.find_partition(topic, *partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                })
                // No record at or after the time: past the last one.
                .unwrap_or(high),
            SeekTo::Offsets(offsets) => match offsets.iter().find(|(p, _)| p == partition) {
                Some((_, offset)) => (*offset).clamp(low, high),
                // Not named: where it was, so the records dropped above are read again.
                None => from.unwrap_or(low),
            },
        };
        consumer
            .seek(topic, *partition, Offset::Offset(target), TIMEOUT)
            .map_err(kafka("seeking"))?;
        let _ = commit.add_partition_offset(topic, *partition, Offset::Offset(target));
        moved.push(Moved {
            topic: topic.clone(),
            partition: *partition,
            from,
            to: target,
        });
    }
    consumer
        .commit(&commit, CommitMode::Sync)
        .map_err(kafka("committing the new positions"))?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form_of_position() {
        assert_eq!("earliest".parse(), Ok(SeekTo::Earliest));
        assert_eq!(" latest ".parse(), Ok(SeekTo::Latest));
        assert_eq!(
            "2026-12-01T00:00:00Z".parse(),
            Ok(SeekTo::Time(1_796_083_200_000))
        );
        assert_eq!(
            "0:10, 2:0".parse(),
            Ok(SeekTo::Offsets(vec![(0, 10), (2, 0)]))
        );
        for bad in ["", "yesterday", "1:", "-1:5", "0:-3", "0:1,x"] {
            assert!(bad.parse::<SeekTo>().is_err(), "{bad}");
        }
    }
}
