//! A trigger at run time: its consumer group, the ordering lanes, the delivery tasks and the
//! offset watermark that decides what is committed.
//!
//! One task per trigger polls the consumer and starts deliveries. A delivery task reports its
//! record's outcome into the shared [`State`] and goes on with the next record that may start,
//! so a busy trigger needs no new task and no wake-up per record. The rebalance callback reads
//! the same state, so it can stop revoked partitions, wait for their deliveries and commit.

mod lanes;
mod offsets;

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use bytes::Bytes;
use foldhash::fast::RandomState;
use futures::{FutureExt, StreamExt};
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::{BorrowedMessage, Headers},
};
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use crate::{
    config::{InitialOffset, Ordering},
    deliver::pipeline::{Final, Pipeline},
    event::Record,
    kafka::{ClientError, Kafka},
};
use lanes::{Lane, Lanes};
use offsets::PartitionOffsets;

/// How often the watermarks are committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a revoke waits for the deliveries of the revoked partitions.
const REVOKE_WAIT: Duration = Duration::from_secs(10);

/// A consumer left without partitions this long joins its group again. A member that died
/// without leaving (SIGKILL) can hold the group's assignment on the embedded broker until
/// someone rejoins; with more replicas than partitions the extra rejoin is a no-op.
const REJOIN_AFTER: Duration = Duration::from_secs(20);

/// Buffered bytes above which a trigger stops taking records.
const MAX_BUFFERED_BYTES: usize = 32 * 1024 * 1024;

/// How many times its high mark of records a trigger may take while one of its partitions
/// has none waiting ([`State::fullness`]).
const HARD_MARK: usize = 4;

/// How long a full trigger only stops polling before it pauses its partitions. Stopping the
/// polls keeps what librdkafka prefetched (bounded by `queued.max.messages.kbytes`), so a
/// short stall costs nothing; pausing lets polls (and so rebalances) go on during a long
/// one, but librdkafka drops the prefetched records and reads them again on resume.
const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// At most this many records ready in the consumer's queue are taken in one go.
const READY_BATCH: usize = 256;

/// A partition within one assignment: a partition revoked and assigned again gets a new
/// generation, so late outcomes of the old assignment cannot touch the new one.
///
/// The number alone names it, so lanes and records refer to their partition without
/// sharing (and counting references to) its topic's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Slot {
    generation: u64,
}

/// A record waiting for, or in, delivery.
#[derive(Debug)]
struct Work {
    record: Record,
    slot: Slot,
    size: usize,
}

#[derive(Debug)]
struct PartitionState {
    topic: Arc<str>,
    partition: i32,
    offsets: PartitionOffsets,
    /// Records of this partition taken and not yet final (in flight or waiting).
    buffered: usize,
}

/// What the poller, the delivery tasks and the rebalance callback share.
#[derive(Debug, Default)]
struct State {
    /// The partitions assigned, by their slot's generation.
    partitions: HashMap<u64, PartitionState, RandomState>,
    /// The generation of each assigned partition, by topic and partition.
    assigned: HashMap<Arc<str>, HashMap<i32, u64, RandomState>, RandomState>,
    lanes: Lanes<Slot, Work>,
    in_flight: usize,
    buffered: usize,
    buffered_bytes: usize,
    next_generation: u64,
    paused: bool,
    /// Revokes waiting on [`Shared::outcome`]; outcomes signal it only when there are some.
    revoking: usize,
    /// Draining for shutdown: nothing new starts.
    stopping: bool,
    /// Took as many records as it may; stays set until a quarter of them is done, so the
    /// poller takes records in runs rather than one per finished delivery.
    full: bool,
}

impl State {
    /// Updates and returns [`State::full`] for the trigger's `high_mark`.
    ///
    /// The consumer's queue holds runs of records from one partition at a time, so the
    /// records taken can all be from a few partitions while the others' lanes stand idle.
    /// Above `high_mark` the trigger therefore goes on taking records while a partition it
    /// reads has none, up to [`HARD_MARK`] × `high_mark` or [`MAX_BUFFERED_BYTES`].
    fn fullness(&mut self, high_mark: usize) -> bool {
        if self.buffered >= HARD_MARK * high_mark || self.buffered_bytes >= MAX_BUFFERED_BYTES {
            self.full = true;
        } else if self.buffered <= high_mark - high_mark / 4
            && self.buffered_bytes <= MAX_BUFFERED_BYTES - MAX_BUFFERED_BYTES / 4
        {
            self.full = false;
        } else if self.full || self.buffered >= high_mark {
            self.full = !self
                .partitions
                .values()
                .any(|p| p.buffered <= p.offsets.in_flight);
        }
        self.full
    }

    /// Whether a paused trigger has drained enough to resume.
    fn may_resume(&self, high_mark: usize) -> bool {
        self.paused
            && self.buffered <= high_mark / 2
            && self.buffered_bytes <= MAX_BUFFERED_BYTES / 2
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled on every outcome, for the rebalance callback's wait.
    outcome: Condvar,
    /// Wakes the poller to start more deliveries.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panicked holder leaves nothing
        // half-done that matters more than stopping the trigger would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Consumer context: runs the revoke protocol inside librdkafka's rebalance callback.
struct TriggerContext {
    name: String,
    shared: Arc<Shared>,
}

impl ClientContext for TriggerContext {}

impl ConsumerContext for TriggerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked: Vec<(String, i32)> = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            block(|| {
                let commit = revoke(&self.shared, &revoked, REVOKE_WAIT);
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
            let assigned: Vec<(String, i32)> = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            info!(trigger = %self.name, partitions = ?assigned, "Partitions assigned.");
        }
    }
}

/// Runs blocking work inside an async context without starving the runtime's other tasks.
/// A worker that blocks may be the one driving the runtime's I/O; the embedded broker runs
/// on the same runtime, so a blocking Kafka call made there would wait for a broker that can
/// no longer read its sockets.
fn block<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Stops the revoked partitions: drops their waiting records (the next owner reads them
/// again), waits (bounded) for their deliveries, and returns the offsets to commit.
fn revoke(shared: &Shared, revoked: &[(String, i32)], wait: Duration) -> TopicPartitionList {
    let mut state = shared.lock();
    let mut slots = Vec::with_capacity(revoked.len());
    for (topic, partition) in revoked {
        if let Some(partitions) = state.assigned.get_mut(topic.as_str()) {
            slots.extend(partitions.remove(partition));
            if partitions.is_empty() {
                let _ = state.assigned.remove(topic.as_str());
            }
        }
    }
    let dropped = state.lanes.purge(|slot| slots.contains(&slot.generation));
    state.buffered -= dropped.len();
    state.buffered_bytes -= dropped.iter().map(|w| w.size).sum::<usize>();
    let deadline = Instant::now() + wait;
    state.revoking += 1;
    loop {
        let busy = slots.iter().any(|g| {
            state
                .partitions
                .get(g)
                .is_some_and(|s| s.offsets.in_flight > 0)
        });
        let now = Instant::now();
        if !busy || now >= deadline {
            break;
        }
        state = shared
            .outcome
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    state.revoking -= 1;
    let mut commit = TopicPartitionList::new();
    for generation in slots {
        if let Some(s) = state.partitions.remove(&generation)
            && let Some(offset) = s.offsets.watermark()
        {
            let _ = commit.add_partition_offset(&s.topic, s.partition, Offset::Offset(offset));
        }
    }
    commit
}

/// A trigger, built from the config and ready to run.
pub struct Trigger {
    name: String,
    topics: Vec<String>,
    ordering: Ordering,
    max_in_flight: usize,
    consumer: StreamConsumer<TriggerContext>,
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// What a trigger reports for `sluice status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriggerCounts {
    /// Deliveries running.
    pub in_flight: usize,
    /// Records received and not yet started.
    pub waiting: usize,
}

/// A handle that reads a running trigger's counts.
#[derive(Debug, Clone)]
pub struct TriggerProbe {
    shared: Arc<Shared>,
}

impl TriggerProbe {
    /// In flight and waiting right now.
    pub fn counts(&self) -> TriggerCounts {
        let state = self.shared.lock();
        TriggerCounts {
            in_flight: state.in_flight,
            waiting: state.lanes.waiting(),
        }
    }
}

/// librdkafka properties.
type Settings = Vec<(&'static str, String)>;

/// Consumer settings sluice relies on; `kafka.client` may override the tunable ones.
fn consumer_settings(group: &str, initial_offset: InitialOffset) -> (Settings, Settings) {
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
    ];
    (fixed, tunable)
}

impl Trigger {
    /// Creates the trigger's consumer and subscribes it.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        kafka: &Kafka,
        name: &str,
        topics: &[String],
        group: &str,
        initial_offset: InitialOffset,
        ordering: Ordering,
        max_in_flight: usize,
        pipeline: Arc<Pipeline>,
    ) -> Result<Self, ClientError> {
        let shared = Arc::new(Shared::default());
        let mut config = kafka.client_config();
        let (fixed, tunable) = consumer_settings(group, initial_offset);
        for (key, value) in tunable {
            if config.get(key).is_none() {
                let _ = config.set(key, value);
            }
        }
        for (key, value) in fixed {
            let _ = config.set(key, value);
        }
        let consumer: StreamConsumer<TriggerContext> = config
            .create_with_context(TriggerContext {
                name: name.to_owned(),
                shared: shared.clone(),
            })
            .map_err(ClientError::Settings)?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(|source| ClientError::Admin {
                what: format!("subscribing trigger {name} to {topics:?}"),
                source,
            })?;
        Ok(Self {
            name: name.to_owned(),
            topics: topics.to_vec(),
            ordering,
            max_in_flight: max_in_flight.max(1),
            consumer,
            shared,
            pipeline,
        })
    }

    /// A handle for status reports.
    pub fn probe(&self) -> TriggerProbe {
        TriggerProbe {
            shared: self.shared.clone(),
        }
    }

    /// Polls, dispatches and commits until `cancel`; then drains within `grace` and commits.
    pub async fn run(self, cancel: CancellationToken, grace: Duration) {
        let deliveries = TaskTracker::new();
        // Deliveries abandon their retry waits only when the drain is over.
        let abandon = CancellationToken::new();
        let mut commit_tick = tokio::time::interval(COMMIT_INTERVAL);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None::<Instant>;
        let mut watch_tick = tokio::time::interval(Duration::from_secs(5));
        let mut unassigned_since = None::<Instant>;
        let mut full_since = None::<tokio::time::Instant>;
        // One stream for the trigger's life: each `recv` would register and drop a waker.
        let mut messages = self.consumer.stream();
        // The topics seen, so the records of each share its name.
        let mut topics = Vec::<Arc<str>>::new();
        loop {
            let (full, paused) = self.fullness();
            if !full {
                full_since = None;
            }
            let pause_at = *full_since.get_or_insert_with(tokio::time::Instant::now) + PAUSE_AFTER;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = watch_tick.tick() => self.watch_assignment(&mut unassigned_since),
                _ = self.shared.wake.notified() => {
                    self.dispatch(&deliveries, &abandon);
                    self.maybe_resume();
                }
                _ = commit_tick.tick() => self.commit(CommitMode::Async, false),
                _ = tokio::time::sleep_until(pause_at), if full && !paused => self.pause(),
                message = messages.next(), if !full || paused => match message {
                    Some(Ok(message)) => {
                        let mut full = self.accept(&message, &mut topics);
                        drop(message);
                        // Take what else is ready in one go, without a round of the select
                        // (and its registrations) per record. Each record goes into its lane
                        // before the consumer is polled again: a revoke runs inside a poll,
                        // and can drop only records that are in their lanes.
                        for _ in 1..READY_BATCH {
                            if full {
                                break;
                            }
                            match messages.next().now_or_never() {
                                Some(Some(Ok(message))) => {
                                    full = self.accept(&message, &mut topics);
                                }
                                Some(Some(Err(err))) => {
                                    self.consumer_error(&err, &mut last_error);
                                    break;
                                }
                                _ => break,
                            }
                        }
                        self.dispatch(&deliveries, &abandon);
                        if self.fullness() == (true, true) {
                            // Partitions assigned since the pause must stop too.
                            self.pause();
                        }
                    }
                    None => break,
                    Some(Err(err)) => self.consumer_error(&err, &mut last_error),
                },
            }
        }
        drop(messages);
        self.drain(deliveries, abandon, grace).await;
    }

    /// Logs a consumer error, at most one each 10 s.
    fn consumer_error(&self, err: &rdkafka::error::KafkaError, last_error: &mut Option<Instant>) {
        if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            warn!(trigger = %self.name, error = %err, "Consumer error.");
            *last_error = Some(Instant::now());
        }
    }

    /// Rejoins the group after [`REJOIN_AFTER`] without partitions.
    fn watch_assignment(&self, unassigned_since: &mut Option<Instant>) {
        let empty = self.consumer.assignment().is_ok_and(|a| a.count() == 0);
        if !empty {
            *unassigned_since = None;
            return;
        }
        let since = *unassigned_since.get_or_insert_with(Instant::now);
        if since.elapsed() < REJOIN_AFTER {
            return;
        }
        info!(trigger = %self.name, "No partitions assigned for a while; joining the group again.");
        *unassigned_since = None;
        self.consumer.unsubscribe();
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        if let Err(err) = self.consumer.subscribe(&topics) {
            warn!(trigger = %self.name, error = %err, "Cannot subscribe again.");
        }
    }

    /// Takes a consumed record into its lane; returns whether the trigger is now full.
    fn accept(&self, message: &BorrowedMessage<'_>, topics: &mut Vec<Arc<str>>) -> bool {
        let record = owned(message, topics);
        self.pipeline.metrics.received();
        let size = record.size();
        let mut state = self.shared.lock();
        let assigned = state
            .assigned
            .get(&*record.topic)
            .and_then(|p| p.get(&record.partition))
            .copied();
        let generation = match assigned {
            Some(generation) => generation,
            None => {
                state.next_generation += 1;
                let generation = state.next_generation;
                let _ = state
                    .assigned
                    .entry(record.topic.clone())
                    .or_default()
                    .insert(record.partition, generation);
                let _ = state.partitions.insert(
                    generation,
                    PartitionState {
                        topic: record.topic.clone(),
                        partition: record.partition,
                        offsets: PartitionOffsets::default(),
                        buffered: 0,
                    },
                );
                generation
            }
        };
        if let Some(p) = state.partitions.get_mut(&generation) {
            p.offsets.track(record.offset);
            p.buffered += 1;
        }
        let slot = Slot { generation };
        let lane = match (self.ordering, &record.key) {
            (Ordering::Partition, _) => Lane::Partition(slot),
            (Ordering::Key, Some(k)) => Lane::Key(slot, k.clone()),
            (Ordering::Key, None) | (Ordering::Unordered, _) => Lane::Free,
        };
        state.buffered += 1;
        state.buffered_bytes += size;
        state.lanes.push(lane, slot, Work { record, slot, size });
        state.fullness(self.high_mark())
    }

    /// Starts deliveries while there is room.
    fn dispatch(&self, deliveries: &TaskTracker, abandon: &CancellationToken) {
        loop {
            let Some(first) = take(&mut self.shared.lock(), self.max_in_flight) else {
                return;
            };
            self.pipeline.metrics.in_flight.inc();
            let (shared, pipeline, abandon) =
                (self.shared.clone(), self.pipeline.clone(), abandon.clone());
            let (max_in_flight, high_mark) = (self.max_in_flight, self.high_mark());
            drop(deliveries.spawn(async move {
                let mut next = Some(first);
                let mut session = pipeline.invoker.session();
                while let Some((lane, work)) = next {
                    let outcome = pipeline.run(&work.record, &abandon, &mut session).await;
                    next = finish(&shared, &lane, &work, outcome, max_in_flight, high_mark);
                    if next.is_none() {
                        pipeline.metrics.in_flight.dec();
                    }
                }
            }));
        }
    }

    /// Buffered records at which the trigger pauses; it resumes at half.
    fn high_mark(&self) -> usize {
        self.max_in_flight * 8 + 4096
    }

    /// Whether the trigger holds as many records as it may, and whether it is paused.
    fn fullness(&self) -> (bool, bool) {
        let mut state = self.shared.lock();
        (state.fullness(self.high_mark()), state.paused)
    }

    /// Pauses every assigned partition.
    fn pause(&self) {
        self.shared.lock().paused = true;
        debug!(trigger = %self.name, "Full for a while; pausing partitions.");
        if let Ok(assignment) = self.consumer.assignment()
            && let Err(err) = self.consumer.pause(&assignment)
        {
            warn!(trigger = %self.name, error = %err, "Cannot pause partitions.");
        }
    }

    fn maybe_resume(&self) {
        let mut state = self.shared.lock();
        if !state.may_resume(self.high_mark()) {
            return;
        }
        state.paused = false;
        drop(state);
        if let Ok(assignment) = self.consumer.assignment()
            && let Err(err) = self.consumer.resume(&assignment)
        {
            warn!(trigger = %self.name, error = %err, "Cannot resume partitions.");
        }
    }

    /// Commits watermarks that moved (or all of them, with `all`).
    fn commit(&self, mode: CommitMode, all: bool) {
        let mut list = TopicPartitionList::new();
        {
            let mut state = self.shared.lock();
            for p in state.partitions.values_mut() {
                let offset = if all {
                    p.offsets.watermark()
                } else {
                    p.offsets.take_commit()
                };
                if let Some(offset) = offset {
                    let _ =
                        list.add_partition_offset(&p.topic, p.partition, Offset::Offset(offset));
                }
            }
        }
        if list.count() == 0 {
            return;
        }
        debug!(trigger = %self.name, offsets = ?list, "Committing.");
        if let Err(err) = self.consumer.commit(&list, mode) {
            warn!(trigger = %self.name, error = %err, "Commit failed; it is retried with the next one.");
        }
    }

    /// Stops taking records, lets deliveries finish within `grace`, commits what is final.
    async fn drain(self, deliveries: TaskTracker, abandon: CancellationToken, grace: Duration) {
        if let Ok(assignment) = self.consumer.assignment() {
            let _ = self.consumer.pause(&assignment);
        }
        deliveries.close();
        let waiting = {
            let mut state = self.shared.lock();
            state.stopping = true;
            state.in_flight
        };
        if waiting > 0 {
            info!(trigger = %self.name, in_flight = waiting, "Waiting for deliveries to finish.");
        }
        // Records waiting for a retry give up their wait at once: they are not final and
        // will be delivered after a restart. Requests already sent finish within the grace.
        let retrying = self.pipeline.metrics.counts().3;
        if retrying > 0 {
            debug!(trigger = %self.name, retrying, "Abandoning retry waits.");
        }
        let deadline = tokio::time::Instant::now() + grace;
        // The consumer is still polled while deliveries finish: librdkafka serves its group
        // protocol (heartbeats, commits) only for a consumer that is polled. Records that
        // arrive now are not tracked, so the final commit stays below them.
        let mut drained = std::pin::pin!(deliveries.wait());
        loop {
            tokio::select! {
                biased;
                _ = &mut drained => break,
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(trigger = %self.name, "Deliveries did not finish within the grace period.");
                    break;
                }
                message = self.consumer.recv() => drop(message),
            }
        }
        abandon.cancel();
        let settle = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                biased;
                _ = &mut drained => break,
                _ = tokio::time::sleep_until(settle) => break,
                message = self.consumer.recv() => drop(message),
            }
        }
        block(|| self.commit(CommitMode::Sync, true));
        let name = self.name.clone();
        // Closing a consumer blocks until it left its group.
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        info!(trigger = %name, "Trigger stopped.");
    }
}

/// The next record that may start, marked in flight; `None` when none may start now.
fn take(state: &mut State, max_in_flight: usize) -> Option<(Lane<Slot>, Work)> {
    if state.stopping || state.in_flight >= max_in_flight {
        return None;
    }
    let (lane, work) = state.lanes.next()?;
    state.in_flight += 1;
    if let Some(p) = state.partitions.get_mut(&work.slot.generation) {
        p.offsets.in_flight += 1;
    }
    Some((lane, work))
}

/// Records a delivery's outcome in the shared state, wakes whoever waits for it, and takes
/// the next record that may start, for the same task to deliver. The poller is woken when
/// this task stops, when a full trigger may take records again, and when a paused one may
/// resume.
fn finish(
    shared: &Shared,
    lane: &Lane<Slot>,
    work: &Work,
    outcome: Option<Final>,
    max_in_flight: usize,
    high_mark: usize,
) -> Option<(Lane<Slot>, Work)> {
    let (next, revoking, refill) = {
        let mut state = shared.lock();
        let was_full = state.full;
        state.in_flight -= 1;
        state.buffered -= 1;
        state.buffered_bytes -= work.size;
        // A partition revoked (and perhaps assigned again, with a new generation) since
        // the record was taken has no state under this generation any more.
        if let Some(p) = state.partitions.get_mut(&work.slot.generation) {
            p.offsets.in_flight -= 1;
            p.buffered -= 1;
            if outcome.is_some() {
                p.offsets.done(work.record.offset);
            }
        }
        state.lanes.release(lane);
        let next = take(&mut state, max_in_flight);
        let refill = (was_full && !state.fullness(high_mark)) || state.may_resume(high_mark);
        (next, state.revoking > 0, refill)
    };
    if revoking {
        shared.outcome.notify_all();
    }
    if next.is_none() || refill {
        shared.wake.notify_one();
    }
    next
}

/// Copies a consumed message out of librdkafka's buffers. The records of a topic share its
/// name, from `topics`.
fn owned(message: &BorrowedMessage<'_>, topics: &mut Vec<Arc<str>>) -> Record {
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
