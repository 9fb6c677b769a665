//! Dead letters: read back with why they failed (`sluice dlq list`, the console), and
//! produced back to the topic they came from (`sluice dlq redrive`).
//!
//! A dead letter is the original record (key, value, headers) plus the reason headers the
//! delivery pipeline adds ([`REASONS`]). A redrive produces the original record again, its
//! reason headers replaced by a redrive count, and commits its own position in the
//! dead-letter topic under a group of its own (`sluice-redrive-<trigger>`) only after the
//! broker acknowledged the record: running it twice does not redrive twice, and a redrive
//! that was not stored is not passed over.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::Bytes;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Map, Value, json};

use crate::{
    event::{self, EventSettings, Record},
    filter::{Cesql, Filter, Filters},
    kafka::{ClientError, Kafka},
};

/// The headers the delivery pipeline adds to a dead letter, besides the record's own.
pub const REASONS: [&str; 9] = [
    "knativeerrorcode",
    "knativeerrordest",
    "knativeerrordata",
    "sluice-error",
    "sluice-attempts",
    "sluice-trigger",
    "sluice-source-topic",
    "sluice-source-partition",
    "sluice-source-offset",
];

/// How many times a record was redriven: replaces the reason headers on a redrive.
pub const REDRIVE_COUNT: &str = "sluice-redrive-count";

/// How long a read of the dead-letter topic may take.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// Why dead letters could not be read or redriven.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// Kafka refused or did not answer.
    #[error(transparent)]
    Kafka(#[from] ClientError),
    /// A read or a produce failed.
    #[error("{0}")]
    Failed(String),
}

/// Why a record was dead-lettered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reason {
    /// The HTTP status, or `timeout` / `unreachable` / an exit code.
    pub code: String,
    /// The error in a sentence.
    pub error: String,
    /// The start of the function's answer.
    pub excerpt: String,
    /// Attempts made.
    pub attempts: Option<u32>,
    /// The trigger that gave up.
    pub trigger: Option<String>,
    /// Where the record came from.
    pub source_topic: Option<String>,
    /// Where the record came from.
    pub source_partition: Option<i32>,
    /// Where the record came from.
    pub source_offset: Option<i64>,
}

/// A dead letter: the original record, where it is in the dead-letter topic, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its partition in the dead-letter topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// When it was dead-lettered (ms since the epoch).
    pub timestamp: Option<i64>,
    /// The original key.
    pub key: Option<Bytes>,
    /// The original value.
    pub value: Option<Bytes>,
    /// The original headers, without the reason.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Why.
    pub reason: Reason,
}

impl DeadLetter {
    /// Reads a record of a dead-letter topic.
    pub fn from_message(message: &impl Message) -> Self {
        let mut reason = Reason::default();
        let mut headers = Vec::new();
        if let Some(list) = message.headers() {
            for header in list.iter() {
                let text =
                    || String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned();
                match header.key {
                    "knativeerrorcode" => reason.code = text(),
                    "knativeerrordata" => reason.excerpt = text(),
                    "sluice-error" => reason.error = text(),
                    "sluice-attempts" => reason.attempts = text().parse().ok(),
                    "sluice-trigger" => reason.trigger = Some(text()),
                    "sluice-source-topic" => reason.source_topic = Some(text()),
                    "sluice-source-partition" => reason.source_partition = text().parse().ok(),
                    "sluice-source-offset" => reason.source_offset = text().parse().ok(),
                    "knativeerrordest" => {}
                    name => {
                        headers.push((name.to_owned(), header.value.map(Bytes::copy_from_slice)))
                    }
                }
            }
        }
        Self {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(Bytes::copy_from_slice),
            value: message.payload().map(Bytes::copy_from_slice),
            headers,
            reason,
        }
    }

    /// As JSON: bytes that are not UTF-8 in `key_base64`, `value_base64`, `headers_base64`.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        let _ = object.insert("partition".into(), json!(self.partition));
        let _ = object.insert("offset".into(), json!(self.offset));
        let _ = object.insert("timestamp".into(), json!(self.timestamp));
        crate::cli::consume::put_bytes(&mut object, "key", self.key.as_deref());
        let mut text = Map::new();
        let mut binary = Map::new();
        for (name, value) in &self.headers {
            let value = value.as_deref().unwrap_or_default();
            match std::str::from_utf8(value) {
                Ok(value) => {
                    let _ = text.insert(name.clone(), json!(value));
                }
                Err(_) => {
                    let _ = binary.insert(
                        name.clone(),
                        json!(base64::engine::general_purpose::STANDARD.encode(value)),
                    );
                }
            }
        }
        let _ = object.insert("headers".into(), Value::Object(text));
        if !binary.is_empty() {
            let _ = object.insert("headers_base64".into(), Value::Object(binary));
        }
        crate::cli::consume::put_bytes(&mut object, "value", self.value.as_deref());
        let r = &self.reason;
        let _ = object.insert(
            "reason".into(),
            json!({
                "code": r.code,
                "error": r.error,
                "excerpt": r.excerpt,
                "attempts": r.attempts,
                "trigger": r.trigger,
                "source_topic": r.source_topic,
                "source_partition": r.source_partition,
                "source_offset": r.source_offset,
            }),
        );
        Value::Object(object)
    }

    /// The record as the trigger delivered it, for matching: the original, at its source.
    fn as_record(&self) -> Record {
        Record {
            topic: self
                .reason
                .source_topic
                .as_deref()
                .unwrap_or_default()
                .into(),
            partition: self.reason.source_partition.unwrap_or(self.partition),
            offset: self.reason.source_offset.unwrap_or(self.offset),
            timestamp: self.timestamp,
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
        }
    }
}

/// Which dead letters a redrive takes: `ATTRIBUTE=VALUE` (an exact match), or a CESQL
/// expression, over the event as the trigger delivered it.
#[derive(Debug, Clone)]
pub struct Matcher(Filters);

impl Matcher {
    /// Parses `ATTRIBUTE=VALUE`, or else CESQL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let simple = text.split_once('=').filter(|(name, value)| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && !value.is_empty()
                && !value.contains(['\'', '"', ' ', '(', ')', '='])
        });
        let filter = match simple {
            Some((attribute, value)) => Filter::Exact {
                attribute: attribute.to_owned(),
                value: value.to_owned(),
            },
            None => Filter::Cesql(
                Cesql::parse(text).map_err(|err| format!("invalid CESQL expression: {err}"))?,
            ),
        };
        Ok(Self(Filters::new(vec![filter])))
    }

    fn matches(&self, letter: &DeadLetter, settings: &EventSettings) -> bool {
        self.0
            .matches(&event::from_record(&letter.as_record(), settings))
    }
}

/// The last `count` dead letters of `topic`, oldest first.
pub async fn list(kafka: &Kafka, topic: &str, count: usize) -> Result<Vec<DeadLetter>, DlqError> {
    let info = kafka.describe_topic(topic).await?;
    let consumer: BaseConsumer = kafka.create(&[
        ("group.id", "sluice-dlq-list"),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "false"),
    ])?;
    let mut list = TopicPartitionList::new();
    let mut until = BTreeMap::new();
    let back = i64::try_from(count).unwrap_or(i64::MAX);
    for p in &info.partitions {
        if p.high > p.low {
            let from = p.high.saturating_sub(back).max(p.low);
            list.add_partition_offset(topic, p.partition, Offset::Offset(from))
                .map_err(|e| DlqError::Failed(e.to_string()))?;
            let _ = until.insert(p.partition, p.high);
        }
    }
    if until.is_empty() {
        return Ok(Vec::new());
    }
    let letters = tokio::task::spawn_blocking(move || {
        consumer
            .assign(&list)
            .map_err(|e| DlqError::Failed(e.to_string()))?;
        let deadline = Instant::now() + READ_LIMIT;
        let mut letters = Vec::new();
        while !until.is_empty() {
            if Instant::now() > deadline {
                return Err(DlqError::Failed(
                    "reading the dead-letter topic took too long".to_owned(),
                ));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let end = until.get(&message.partition()).copied();
                    if end.is_some_and(|end| message.offset() < end) {
                        letters.push(DeadLetter::from_message(&message));
                    }
                    if end.is_some_and(|end| message.offset() + 1 >= end) {
                        let _ = until.remove(&message.partition());
                    }
                }
                Some(Err(err)) => return Err(DlqError::Failed(err.to_string())),
                None => {}
            }
        }
        Ok(letters)
    })
    .await
    .map_err(|e| DlqError::Failed(e.to_string()))??;
    let mut letters = letters;
    letters.sort_by_key(|l| (l.timestamp, l.partition, l.offset));
    let skip = letters.len().saturating_sub(count);
    Ok(letters.split_off(skip))
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Redriven {
    /// The trigger.
    pub trigger: String,
    /// Dead letters produced back to their source topic.
    pub redriven: usize,
    /// Dead letters `--where` passed over (they count as handled).
    pub skipped: usize,
}

/// Produces up to `count` dead letters of `topic` (those `matcher` takes) back to their
/// source topic, from where the trigger's redrive group stopped.
pub async fn redrive(
    kafka: &Kafka,
    trigger: &str,
    topic: &str,
    count: usize,
    matcher: Option<&Matcher>,
    settings: &EventSettings,
) -> Result<Redriven, DlqError> {
    let info = kafka.describe_topic(topic).await?;
    let group = format!("sluice-redrive-{trigger}");
    let consumer: StreamConsumer = kafka.create(&[
        ("group.id", group.as_str()),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "false"),
        ("auto.offset.reset", "earliest"),
    ])?;
    let producer: FutureProducer =
        kafka.create(&[("acks", "all"), ("enable.idempotence", "true")])?;
    let mut ends: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for p in &info.partitions {
        let _ = ends.insert(p.partition, (p.low, p.high));
        list.add_partition_offset(topic, p.partition, Offset::Stored)
            .map_err(|e| DlqError::Failed(e.to_string()))?;
    }
    consumer
        .assign(&list)
        .map_err(|e| DlqError::Failed(e.to_string()))?;
    // Partitions whose committed position is already at their end have nothing to redrive.
    let committed = kafka
        .committed(
            &group,
            info.partitions
                .iter()
                .map(|p| (topic.to_owned(), p.partition))
                .collect(),
        )
        .await?;
    // Partitions with nothing after the group's position (or nothing at all) are done.
    let mut ends: BTreeMap<i32, i64> = ends
        .into_iter()
        .filter(|(partition, (low, high))| {
            let at = committed
                .get(&(topic.to_owned(), *partition))
                .copied()
                .unwrap_or(*low);
            at.max(*low) < *high
        })
        .map(|(partition, (_, high))| (partition, high))
        .collect();
    let mut outcome = Redriven {
        trigger: trigger.to_owned(),
        ..Redriven::default()
    };
    let deadline = Instant::now() + READ_LIMIT;
    while !ends.is_empty() && outcome.redriven < count {
        if Instant::now() > deadline {
            return Err(DlqError::Failed(format!(
                "reading the dead-letter topic took longer than {}",
                humantime::format_duration(READ_LIMIT)
            )));
        }
        let message = match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
        {
            Ok(Ok(message)) => message,
            Ok(Err(err)) => return Err(DlqError::Failed(err.to_string())),
            Err(_) => continue,
        };
        let (partition, offset) = (message.partition(), message.offset());
        let Some(&end) = ends.get(&partition) else {
            continue;
        };
        if offset >= end {
            let _ = ends.remove(&partition);
            continue;
        }
        let letter = DeadLetter::from_message(&message);
        drop(message);
        if matcher.is_some_and(|m| !m.matches(&letter, settings)) {
            outcome.skipped += 1;
        } else {
            let source = letter.reason.source_topic.clone().ok_or_else(|| {
                DlqError::Failed(format!(
                    "dead letter {partition}:{offset} does not say where it came from (no sluice-source-topic header)"
                ))
            })?;
            let count = letter
                .headers
                .iter()
                .find(|(n, _)| n == REDRIVE_COUNT)
                .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok()?.parse::<u32>().ok())
                .unwrap_or(0)
                + 1;
            let count = count.to_string();
            let mut headers = OwnedHeaders::new_with_capacity(letter.headers.len() + 1);
            for (name, value) in letter.headers.iter().filter(|(n, _)| n != REDRIVE_COUNT) {
                headers = headers.insert(Header {
                    key: name,
                    value: value.as_deref(),
                });
            }
            headers = headers.insert(Header {
                key: REDRIVE_COUNT,
                value: Some(count.as_bytes()),
            });
            let mut record = FutureRecord::to(&source).headers(headers);
            if let Some(key) = &letter.key {
                record = record.key(&key[..]);
            }
            if let Some(value) = &letter.value {
                record = record.payload(&value[..]);
            }
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(err, _)| {
                    DlqError::Failed(format!(
                        "the broker did not store dead letter {partition}:{offset} in {source}: {err}; nothing past it was committed"
                    ))
                })?;
            outcome.redriven += 1;
        }
        // Acknowledged (or passed over): the redrive group moves past it.
        let mut position = TopicPartitionList::new();
        position
            .add_partition_offset(topic, partition, Offset::Offset(offset + 1))
            .map_err(|e| DlqError::Failed(e.to_string()))?;
        tokio::task::block_in_place(|| consumer.commit(&position, CommitMode::Sync))
            .map_err(|e| DlqError::Failed(format!("cannot commit the redrive's position: {e}")))?;
        if offset + 1 >= end {
            let _ = ends.remove(&partition);
        }
    }
    // Dropping clients blocks while they close.
    let _ = tokio::task::spawn_blocking(move || drop((consumer, producer))).await;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_where_is_an_exact_match_or_cesql() {
        assert!(matches!(
            &Matcher::parse("key=order-7").unwrap().0,
            f if *f == Filters::new(vec![Filter::Exact { attribute: "key".into(), value: "order-7".into() }])
        ));
        assert!(Matcher::parse("kafkaheaderknativeerrorcode = '500'").is_ok());
        let err = Matcher::parse("key = = 'x'").unwrap_err();
        assert!(err.contains("invalid CESQL expression"), "{err}");
    }
}
