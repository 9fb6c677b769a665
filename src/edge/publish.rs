//! Producing what arrives over HTTP: one record at a time, answered once the broker has
//! acknowledged it (acks=all), or with why it was not stored.

use std::time::Duration;

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use crate::{
    ingress::parse::Outgoing,
    kafka::{ClientError, Kafka},
};

/// How long a record may wait for the broker before the request is answered 503.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a record may wait for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a record was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker cannot take it now; worth trying again (503).
    #[error("the broker did not store the record: {0}")]
    Unavailable(String),
    /// The broker refuses records this large (413).
    #[error("the record is larger than the broker takes: {0}")]
    TooLarge(String),
}

/// Where a stored record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// The producer of the public listener.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publisher")
    }
}

impl Publisher {
    /// A producer that waits for every in-sync replica and never writes a record twice on
    /// its own retries.
    pub fn new(kafka: &Kafka) -> Result<Self, ClientError> {
        let timeout = DELIVERY_TIMEOUT.as_millis().to_string();
        let producer = kafka.create(&[
            ("acks", "all"),
            // A retried send is never stored twice.
            ("enable.idempotence", "true"),
            // Each request waits for its record's acknowledgement: sent at once, batched
            // only with what is already queued.
            ("linger.ms", "1"),
            ("message.timeout.ms", timeout.as_str()),
        ])?;
        Ok(Self { producer })
    }

    /// Produces `record` to `topic` and waits for the broker's acknowledgement.
    pub async fn send(&self, topic: &str, record: &Outgoing) -> Result<Stored, PublishError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(&value[..]),
            });
        }
        let mut message = FutureRecord::to(topic)
            .payload(&record.value[..])
            .headers(headers);
        if let Some(key) = &record.key {
            message = message.key(&key[..]);
        }
        match self.producer.send(message, QUEUE_TIMEOUT).await {
            Ok(delivery) => Ok(Stored {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((err, _)) => Err(classify(&err)),
        }
    }
}

/// A produce error as an answer: too large, or anything else as worth trying again.
fn classify(err: &KafkaError) -> PublishError {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            PublishError::TooLarge(err.to_string())
        }
        _ => PublishError::Unavailable(err.to_string()),
    }
}
