//! A trigger at run time: its consumer group, the ordering lanes, the delivery tasks and the
//! offset watermark that decides what is committed.
//!
//! One task per trigger polls the consumer and starts deliveries. A delivery task reports its
//! record's outcome into the shared state ([`state`]) and goes on with the next record that
//! may start, so a busy trigger needs no new task and no wake-up per record. The rebalance
//! callback ([`consumer`]) reads the same state, so it can stop revoked partitions, wait for
//! their deliveries and commit.
//!
//! On shutdown a trigger stops taking records and starting deliveries, and abandons retry
//! waits at once: a record waiting for its next attempt is not final, stays uncommitted and
//! is delivered after the restart. Requests already sent get the grace period to finish.

mod consumer;
mod lanes;
mod offsets;
mod seek;
mod state;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt};
use rdkafka::{
    consumer::{CommitMode, Consumer, StreamConsumer},
    producer::FutureProducer,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use crate::{
    config,
    deliver::{Destination, pipeline::Pipeline},
    function::Functions,
    kafka::{ClientError, Kafka},
    metrics::{Metrics, Outcomes, TriggerMetrics},
};
use consumer::{TriggerContext, block, owned};
use state::{Bounds, Fullness, Limits, Shared};

pub use seek::{Moved, SeekError, SeekTo};
pub use state::Counts as TriggerCounts;

/// How often the watermarks are committed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// A consumer left without partitions this long joins its group again. A member that died
/// without leaving (SIGKILL) can hold the group's assignment on the embedded broker until
/// someone rejoins; with more replicas than partitions the extra rejoin is a no-op.
const REJOIN_AFTER: Duration = Duration::from_secs(20);

/// How long a full trigger only stops polling before it pauses its partitions. Stopping the
/// polls keeps what librdkafka prefetched (bounded by `queued.max.messages.kbytes`), so a
/// short stall costs nothing; pausing lets polls (and so rebalances) go on during a long
/// one, but librdkafka drops the prefetched records and reads them again on resume.
const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// At most this many records ready in the consumer's queue are taken in one go.
const READY_BATCH: usize = 256;

/// The consumer settings of a trigger in `group`: `kafka.client` over sluice's defaults,
/// and the settings the commit rules need over both. Benchmarks read with the same ones.
pub fn consumer_config(
    kafka: &Kafka,
    group: &str,
    initial_offset: config::InitialOffset,
) -> rdkafka::ClientConfig {
    let mut config = kafka.client_config();
    let (fixed, tunable) = consumer::settings(group, initial_offset);
    for (key, value) in tunable {
        if config.get(key).is_none() {
            let _ = config.set(key, value);
        }
    }
    for (key, value) in fixed {
        let _ = config.set(key, value);
    }
    config
}

/// What building a trigger takes besides its config: the clients and registries that every
/// trigger shares.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The Kafka client settings.
    pub kafka: &'a Kafka,
    /// The functions sluice runs.
    pub functions: &'a Functions,
    /// The producer of dead letters and replies.
    pub producer: &'a FutureProducer,
    /// The metrics registry.
    pub metrics: &'a Metrics,
}

/// Why a trigger could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Its function is not among those running.
    #[error("function {0} is not running")]
    NotRunning(String),
    /// Its consumer could not be created or subscribed.
    #[error(transparent)]
    Kafka(#[from] ClientError),
}

/// A trigger, built from the config and ready to run.
pub struct Trigger {
    name: String,
    topics: Vec<String>,
    consumer: StreamConsumer<TriggerContext>,
    shared: Arc<Shared>,
    pipeline: Arc<Pipeline>,
    commands: mpsc::Receiver<Command>,
    control: mpsc::Sender<Command>,
}

/// A request to a running trigger, answered from its poller.
#[derive(Debug)]
struct Command {
    to: SeekTo,
    reply: oneshot::Sender<Result<Vec<Moved>, SeekError>>,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// A handle that reads a running trigger's counts.
#[derive(Debug, Clone)]
pub struct TriggerProbe {
    shared: Arc<Shared>,
    // The metric handles and the target's name, not the pipeline: a probe may outlive the
    // trigger, and the pipeline's producer must not outlive the broker.
    metrics: TriggerMetrics,
    target: String,
    control: mpsc::Sender<Command>,
}

impl TriggerProbe {
    /// In flight and waiting right now.
    pub fn counts(&self) -> TriggerCounts {
        self.shared.counts()
    }

    /// Delivered, dead-lettered, dropped and retrying.
    pub fn outcomes(&self) -> Outcomes {
        self.metrics.outcomes()
    }

    /// Where its events go, as status reports show it.
    pub fn target(&self) -> String {
        self.target.clone()
    }

    /// Moves the trigger's group to `to` and returns what moved ([`seek`]'s doc).
    pub async fn seek(&self, to: SeekTo) -> Result<Vec<Moved>, SeekError> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Command { to, reply })
            .await
            .map_err(|_| SeekError::Stopped)?;
        answer.await.map_err(|_| SeekError::Stopped)?
    }
}

impl Trigger {
    /// The trigger `config` describes, its consumer subscribed, ready to [`Trigger::run`].
    pub fn build(config: &config::Trigger, context: &Context<'_>) -> Result<Self, BuildError> {
        let target = Destination::build(&config.target, context.functions)
            .ok_or_else(|| BuildError::NotRunning(target_name(&config.target)))?;
        let metrics = TriggerMetrics::new(context.metrics, &config.name);
        let pipeline = Pipeline::build(config, target, context.producer.clone(), metrics);
        Ok(Self::subscribe(context.kafka, config, Arc::new(pipeline))?)
    }

    /// Creates the trigger's consumer and subscribes it; `pipeline` takes its records to
    /// their outcomes.
    fn subscribe(
        kafka: &Kafka,
        trigger: &config::Trigger,
        pipeline: Arc<Pipeline>,
    ) -> Result<Self, ClientError> {
        let name = &trigger.name;
        let shared = Arc::new(Shared::new(
            Limits::new(trigger.max_in_flight),
            trigger.ordering,
        ));
        let config = consumer_config(kafka, &trigger.effective_group(), trigger.initial_offset);
        let consumer: StreamConsumer<TriggerContext> = config
            .create_with_context(TriggerContext {
                name: name.clone(),
                shared: shared.clone(),
            })
            .map_err(ClientError::Settings)?;
        let topics = &trigger.topics;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(|source| ClientError::Admin {
                what: format!("subscribing trigger {name} to {topics:?}"),
                source,
            })?;
        let (control, commands) = mpsc::channel(4);
        Ok(Self {
            name: name.clone(),
            topics: topics.clone(),
            consumer,
            shared,
            pipeline,
            commands,
            control,
        })
    }

    /// A handle for status reports.
    pub fn probe(&self) -> TriggerProbe {
        TriggerProbe {
            shared: self.shared.clone(),
            metrics: self.pipeline.metrics.clone(),
            target: self.pipeline.target.to_string(),
            control: self.control.clone(),
        }
    }

    /// Polls, dispatches and commits until `cancel`; then drains within `grace` and commits.
    pub async fn run(mut self, cancel: CancellationToken, grace: Duration) {
        let deliveries = TaskTracker::new();
        // Cancelled when the drain starts: deliveries give up their retry waits.
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
            let (fullness, paused) = self.shared.fullness();
            let full = fullness == Fullness::Full;
            if !full {
                full_since = None;
            }
            let pause_at = *full_since.get_or_insert_with(tokio::time::Instant::now) + PAUSE_AFTER;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = watch_tick.tick() => self.watch_assignment(&mut unassigned_since),
                _ = self.shared.woken() => {
                    self.dispatch(&deliveries, &abandon);
                    self.maybe_resume();
                }
                _ = commit_tick.tick() => self.commit(CommitMode::Async, false),
                Some(command) = self.commands.recv() => {
                    let moved = seek::seek(&self.consumer, &self.shared, &command.to);
                    match &moved {
                        Ok(moved) => info!(trigger = %self.name, moved = ?moved, "Group moved."),
                        Err(err) => warn!(trigger = %self.name, error = %err, "Cannot move the group."),
                    }
                    let _ = command.reply.send(moved);
                    self.dispatch(&deliveries, &abandon);
                }
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
                            if full == Fullness::Full {
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
                        if self.shared.fullness() == (Fullness::Full, true) {
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

    /// Takes a consumed record into its lane.
    fn accept(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        topics: &mut Vec<Arc<str>>,
    ) -> Fullness {
        let record = owned(message, topics);
        self.pipeline.metrics.received();
        self.shared.accept(record)
    }

    /// Starts deliveries while there is room. Each task delivers records until none may
    /// start; what it holds goes back to the state however the task ends.
    fn dispatch(&self, deliveries: &TaskTracker, abandon: &CancellationToken) {
        if let Some(batch) = self.pipeline.delivery.batch {
            self.dispatch_batches(batch, deliveries, abandon);
            return;
        }
        while let Some(mut started) = self.shared.take(&self.pipeline.metrics.in_flight) {
            let (pipeline, abandon) = (self.pipeline.clone(), abandon.clone());
            drop(deliveries.spawn(async move {
                let mut session = pipeline.invoker.session();
                while let Some(record) = started.record() {
                    let outcome = pipeline.run(record, &abandon, &mut session).await;
                    if !started.finish(outcome) {
                        break;
                    }
                }
            }));
        }
    }

    /// Starts batch deliveries while there is room: each task fills its batch (waiting up to
    /// `max_wait`), sends what fits in one request, gives the rest back to their lanes, and
    /// goes on with the next batch until none may start.
    fn dispatch_batches(
        &self,
        batch: config::Batch,
        deliveries: &TaskTracker,
        abandon: &CancellationToken,
    ) {
        let bounds = Bounds {
            max_events: batch.max_events,
            max_bytes: batch.max_bytes,
        };
        while let Some(mut held) = self
            .shared
            .take_batch(&self.pipeline.metrics.in_flight, bounds)
        {
            let (pipeline, abandon) = (self.pipeline.clone(), abandon.clone());
            drop(deliveries.spawn(async move {
                let mut session = pipeline.invoker.session();
                loop {
                    held.fill(batch.max_wait, &abandon).await;
                    let prepared = pipeline.prepare(held.records(), &batch);
                    held.give_back(prepared.fits);
                    let records: Vec<_> = held.records().collect();
                    let outcomes = pipeline
                        .deliver_batch(prepared, &records, &abandon, &mut session)
                        .await;
                    drop(records);
                    if !held.finish(&outcomes) {
                        break;
                    }
                }
            }));
        }
    }

    /// Pauses every assigned partition.
    fn pause(&self) {
        self.shared.paused();
        debug!(trigger = %self.name, "Full for a while; pausing partitions.");
        if let Ok(assignment) = self.consumer.assignment()
            && let Err(err) = self.consumer.pause(&assignment)
        {
            warn!(trigger = %self.name, error = %err, "Cannot pause partitions.");
        }
    }

    fn maybe_resume(&self) {
        if !self.shared.resume() {
            return;
        }
        if let Ok(assignment) = self.consumer.assignment()
            && let Err(err) = self.consumer.resume(&assignment)
        {
            warn!(trigger = %self.name, error = %err, "Cannot resume partitions.");
        }
    }

    /// Commits watermarks that moved (or all of them, with `all`).
    fn commit(&self, mode: CommitMode, all: bool) {
        let commits = self.shared.commits(all);
        if commits.is_empty() {
            return;
        }
        let list = consumer::offsets(&commits);
        debug!(trigger = %self.name, offsets = ?list, "Committing.");
        if let Err(err) = self.consumer.commit(&list, mode) {
            warn!(trigger = %self.name, error = %err, "Commit failed; it is retried with the next one.");
        }
    }

    /// Stops taking records and starting deliveries, abandons retry waits (see the module's
    /// doc), lets requests already sent finish within `grace`, and commits what is final.
    async fn drain(self, deliveries: TaskTracker, abandon: CancellationToken, grace: Duration) {
        if let Ok(assignment) = self.consumer.assignment() {
            let _ = self.consumer.pause(&assignment);
        }
        deliveries.close();
        let running = self.shared.stop();
        abandon.cancel();
        if running > 0 {
            info!(trigger = %self.name, in_flight = running, "Waiting for deliveries to finish.");
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
        block(|| self.commit(CommitMode::Sync, true));
        let name = self.name.clone();
        // Closing a consumer blocks until it left its group.
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        info!(trigger = %name, "Trigger stopped.");
    }
}

fn target_name(target: &config::Target) -> String {
    match target {
        config::Target::Url(endpoint) => endpoint.to_string(),
        config::Target::Command(name) | config::Target::Exec(name) => name.clone(),
    }
}
