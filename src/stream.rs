//! Streams: a topic sent to browsers over WebSocket and SSE, and what they publish produced
//! to it.
//!
//! Each stream has one [`Hub`] per sluice: a consumer that reads every partition of the
//! topic itself (by assignment, not through a group), so a client on any replica sees every
//! record, in partition order. Each record becomes one JSON [`Frame`], made once and shared
//! by every client's bounded queue; a client whose queue is full is closed as too slow, so
//! memory stays bounded whatever the clients do. A client resumes from a position (the next
//! offset of each partition), read back from Kafka itself (`session.rs`).

pub mod frame;
pub mod position;
pub mod session;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::edge::Stream as StreamConfig,
    kafka::Kafka,
    metrics::{Metrics, ResumeLabels, StreamLabels},
};
pub use frame::Frame;

/// Replays from Kafka running at once per stream; each holds a consumer of its own.
const REPLAYS: usize = 8;

/// How long the hub waits before trying again to read a topic it could not.
const RETRY: Duration = Duration::from_secs(1);

/// One stream's metric handles.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    /// Clients connected.
    pub clients: Gauge,
    /// Records sent.
    pub out: Counter,
    /// Messages published.
    pub messages_in: Counter,
    /// Clients closed for falling behind.
    pub dropped: Counter,
    /// Resumes whose position was still held.
    pub recovered: Counter,
    /// Resumes whose position was gone.
    pub not_recovered: Counter,
}

impl StreamMetrics {
    fn new(metrics: &Metrics, path: &str) -> Self {
        let labels = StreamLabels {
            stream: path.to_owned(),
        };
        let resume = |outcome: &str, family: &Family<ResumeLabels, Counter>| {
            family
                .get_or_create(&ResumeLabels {
                    stream: path.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .clone()
        };
        Self {
            clients: metrics.stream_clients.get_or_create(&labels).clone(),
            out: metrics.stream_messages_out.get_or_create(&labels).clone(),
            messages_in: metrics.stream_messages_in.get_or_create(&labels).clone(),
            dropped: metrics.stream_dropped.get_or_create(&labels).clone(),
            recovered: resume("recovered", &metrics.stream_resumes),
            not_recovered: resume("not_recovered", &metrics.stream_resumes),
        }
    }
}

/// A client as the hub sees it: where its frames go, and how it is told it was dropped.
#[derive(Debug)]
struct Subscriber {
    queue: mpsc::Sender<Arc<Frame>>,
    dropped: CancellationToken,
}

/// What the hub's consumer and the clients share, behind one lock.
#[derive(Debug, Default)]
struct Inner {
    /// The next offset of each partition the hub sends; empty until the topic is assigned.
    next: Vec<i64>,
    /// Whether the hub reads the topic yet.
    ready: bool,
    clients: HashMap<u64, Subscriber>,
    next_id: u64,
}

/// One stream's reader and its clients.
#[derive(Debug)]
pub struct Hub {
    settings: StreamConfig,
    kafka: Kafka,
    inner: Mutex<Inner>,
    metrics: StreamMetrics,
    replays: Semaphore,
    /// Woken once the topic is assigned.
    assigned: tokio::sync::Notify,
}

/// Why a client cannot join yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stream does not read its topic yet (is the broker up?)")]
pub struct NotReady;

/// A client's place among the hub's clients; leaving is dropping it.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    /// The hub's frames from the moment of joining.
    pub frames: mpsc::Receiver<Arc<Frame>>,
    /// The next offset of each partition the hub sends, as of joining: the first frame
    /// for partition `p` in `frames` has offset `live_from[p]` or more.
    pub live_from: Vec<i64>,
    /// Cancelled when the hub drops the client for falling behind.
    pub dropped: CancellationToken,
    hub: Arc<Hub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        if inner.clients.remove(&self.id).is_some() {
            self.hub.metrics.clients.dec();
        }
    }
}

impl Hub {
    /// The hub of `settings`, not reading yet ([`Hub::run`] does).
    pub fn new(settings: StreamConfig, kafka: Kafka, metrics: &Metrics) -> Arc<Self> {
        let metrics = StreamMetrics::new(metrics, &settings.path);
        Arc::new(Self {
            settings,
            kafka,
            inner: Mutex::default(),
            metrics,
            replays: Semaphore::new(REPLAYS),
            assigned: tokio::sync::Notify::new(),
        })
    }

    /// Waits until the hub reads its topic, at most `limit`; false when it does not yet.
    pub async fn ready(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.assigned.notified();
                if self.lock().ready {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change under the lock is complete before it is released.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's settings.
    pub fn settings(&self) -> &StreamConfig {
        &self.settings
    }

    /// Its metric handles.
    pub fn metrics(&self) -> &StreamMetrics {
        &self.metrics
    }

    /// The Kafka client replays read with.
    pub fn kafka(&self) -> &Kafka {
        &self.kafka
    }

    /// Waits for a turn to replay from Kafka.
    pub async fn replay_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.replays.acquire().await.ok()
    }

    /// Adds a client: from now on every frame is queued for it, up to the stream's queue
    /// size.
    pub fn join(self: &Arc<Self>) -> Result<Subscription, NotReady> {
        let (queue, frames) = mpsc::channel(self.settings.queue);
        let dropped = CancellationToken::new();
        let mut inner = self.lock();
        if !inner.ready {
            return Err(NotReady);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let _ = inner.clients.insert(
            id,
            Subscriber {
                queue,
                dropped: dropped.clone(),
            },
        );
        self.metrics.clients.inc();
        Ok(Subscription {
            id,
            frames,
            live_from: inner.next.clone(),
            dropped,
            hub: self.clone(),
        })
    }

    /// Reads the topic from its end until `cancel`, handing each record to every client.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let topic = self.settings.topic.clone();
        let consumer = loop {
            match self.assign().await {
                Ok(consumer) => break consumer,
                Err(why) => {
                    warn!(stream = %self.settings.path, topic = %topic, error = %why, "The stream cannot read its topic yet; trying again.");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        };
        info!(stream = %self.settings.path, topic = %topic, partitions = self.lock().next.len(), "Stream is reading its topic.");
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => break,
                message = consumer.recv() => message,
            };
            match message {
                Ok(message) => self.publish(&message),
                Err(err) => {
                    debug!(stream = %self.settings.path, error = %err, "The stream's consumer reported an error.")
                }
            }
        }
        // Clients see their queue end and close.
        self.lock().clients.clear();
    }

    /// A consumer of every partition of the topic, from its current end.
    async fn assign(&self) -> Result<StreamConsumer, String> {
        let topic = &self.settings.topic;
        let info = self
            .kafka
            .describe_topic(topic)
            .await
            .map_err(|err| err.to_string())?;
        if info.partitions.is_empty() {
            return Err(format!("topic {topic} has no partitions"));
        }
        let consumer: StreamConsumer = self
            .kafka
            .create(&[
                // Only assigned, never joined: the group is not used, nor committed to.
                ("group.id", "sluice-stream"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
            ])
            .map_err(|err| err.to_string())?;
        let mut next = vec![0; info.partitions.len()];
        let mut list = TopicPartitionList::new();
        for partition in &info.partitions {
            let Some(slot) = usize::try_from(partition.partition)
                .ok()
                .and_then(|p| next.get_mut(p))
            else {
                continue;
            };
            *slot = partition.high;
            list.add_partition_offset(topic, partition.partition, Offset::Offset(partition.high))
                .map_err(|err| err.to_string())?;
        }
        consumer.assign(&list).map_err(|err| err.to_string())?;
        {
            let mut inner = self.lock();
            inner.next = next;
            inner.ready = true;
        }
        self.assigned.notify_waiters();
        Ok(consumer)
    }

    /// Queues a record for every client; a client whose queue is full is dropped.
    fn publish(&self, message: &impl Message) {
        let members = frame::members(message);
        let Ok(partition) = usize::try_from(message.partition()) else {
            return;
        };
        let mut inner = self.lock();
        let Some(slot) = inner.next.get_mut(partition) else {
            return;
        };
        *slot = message.offset() + 1;
        let frame = Arc::new(frame::frame(
            message,
            &members,
            position::format(&inner.next),
        ));
        let before = inner.clients.len();
        inner
            .clients
            .retain(|_, client| match client.queue.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    client.dropped.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        let gone = before - inner.clients.len();
        if gone > 0 {
            self.metrics
                .clients
                .dec_by(i64::try_from(gone).unwrap_or(i64::MAX));
        }
    }

    /// Counts a client dropped for falling behind; the session that closes it calls this.
    pub fn count_dropped(&self) {
        let _ = self.metrics.dropped.inc();
    }
}
