//! What a trigger's poller, its delivery tasks and its rebalance callback share: the ordering
//! lanes, each partition's offsets and the counts that bound what the trigger buffers.
//!
//! [`Shared`]'s methods are the only way in, and each count has one method that raises it
//! and one that lowers it: a record is counted buffered by [`Shared::accept`], in flight by
//! [`Shared::take`], and leaves both in [`State::settle`] (a delivery's end, however it ends)
//! or in [`State::unbuffer`] (a revoke dropping waiting records). So `buffered` is always
//! waiting plus in flight, which `state/tests.rs` checks over random sequences.
//!
//! One lock guards it all: the poller, every delivery task and the rebalance callback take
//! it once per step, which was measured cheaper than splitting the counts.

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use foldhash::fast::RandomState;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{
    lanes::{Lane, Lanes},
    offsets::PartitionOffsets,
};
use crate::{config::Ordering, deliver::pipeline::Final, event::Record};

/// Buffered bytes above which a trigger stops taking records.
const MAX_BUFFERED_BYTES: usize = 32 * 1024 * 1024;

/// How many times its high mark of records a trigger may take while one of its partitions
/// has none waiting ([`State::fullness`]).
const HARD_MARK: usize = 4;

/// A partition within one assignment: a partition revoked and assigned again gets a new
/// generation, so late outcomes of the old assignment cannot touch the new one.
///
/// The number alone names it, so lanes and records refer to their partition without
/// sharing (and counting references to) its topic's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
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
    /// Records of this partition taken and not yet settled (in flight or waiting).
    buffered: usize,
}

/// How many records a trigger may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deliveries at once.
    pub max_in_flight: usize,
    /// Buffered records at which the trigger is full; it takes records again at three
    /// quarters and resumes paused partitions at half.
    pub high_mark: usize,
}

impl Limits {
    /// The limits of a trigger with `max_in_flight` (at least 1).
    pub fn new(max_in_flight: usize) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            max_in_flight,
            high_mark: max_in_flight * 8 + 4096,
        }
    }
}

/// Whether a trigger may take more records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fullness {
    /// It may.
    Room,
    /// It holds as many as it may.
    Full,
}

/// The offset to commit for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Its topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// Everything below it is final.
    pub offset: i64,
}

/// In flight and waiting, for `sluice status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Deliveries running.
    pub in_flight: usize,
    /// Records received and not yet started.
    pub waiting: usize,
    /// Whether its partitions are paused because it is full.
    pub paused: bool,
}

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
    /// Batches waiting for records to fill them.
    filling: usize,
}

impl State {
    /// The slot of the record's partition, a new one for a partition not seen in this
    /// assignment.
    fn slot(&mut self, topic: &Arc<str>, partition: i32) -> Slot {
        if let Some(&generation) = self.assigned.get(&**topic).and_then(|p| p.get(&partition)) {
            return Slot { generation };
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        let _ = self
            .assigned
            .entry(topic.clone())
            .or_default()
            .insert(partition, generation);
        let _ = self.partitions.insert(
            generation,
            PartitionState {
                topic: topic.clone(),
                partition,
                offsets: PartitionOffsets::default(),
                buffered: 0,
            },
        );
        Slot { generation }
    }

    /// The next record that may start, marked in flight.
    fn take(&mut self, limits: Limits) -> Option<(Lane<Slot>, Work)> {
        if self.stopping || self.in_flight >= limits.max_in_flight {
            return None;
        }
        let (lane, work) = self.lanes.next()?;
        self.in_flight += 1;
        if let Some(p) = self.partitions.get_mut(&work.slot.generation) {
            p.offsets.in_flight += 1;
        }
        Some((lane, work))
    }

    /// A delivery ended: `outcome` is `None` when it is not final (abandoned, cancelled,
    /// panicked), which leaves the record's offset uncommitted.
    fn settle(&mut self, lane: &Lane<Slot>, work: &Work, outcome: Option<Final>) {
        self.in_flight -= 1;
        self.settle_record(work, outcome);
        self.lanes.release(lane);
    }

    /// One record's delivery ended; its lane and its task's `max_in_flight` slot are the
    /// caller's to give back.
    fn settle_record(&mut self, work: &Work, outcome: Option<Final>) {
        self.unbuffer(1, work.size);
        // A partition revoked (and perhaps assigned again, with a new generation) since
        // the record was taken has no state under this generation any more.
        if let Some(p) = self.partitions.get_mut(&work.slot.generation) {
            p.offsets.in_flight -= 1;
            p.buffered -= 1;
            if outcome.is_some() {
                p.offsets.done(work.record.offset);
            }
        }
    }

    /// A batch's first record, as [`State::take`], and as many more as `bounds` and the
    /// ordering let it have now.
    fn take_batch(&mut self, limits: Limits, ordering: Ordering, bounds: Bounds) -> Option<Held> {
        let (lane, work) = self.take(limits)?;
        let mut held = Held {
            lanes: Vec::new(),
            items: Vec::new(),
            bytes: 0,
        };
        held.push(lane, work);
        self.fill(&mut held, ordering, bounds);
        Some(held)
    }

    /// Adds records to a batch while it has room: under `partition` the next ones of its
    /// partition, under `key` the next ones of its keys and of keys that are free, under
    /// `unordered` any.
    fn fill(&mut self, held: &mut Held, ordering: Ordering, bounds: Bounds) {
        if self.stopping {
            return;
        }
        match ordering {
            Ordering::Partition => {
                if let Some(lane) = held.lanes.first().cloned() {
                    self.fill_from(held, &lane, bounds);
                }
            }
            Ordering::Key => {
                for index in 0..held.lanes.len() {
                    let lane = held.lanes[index].clone();
                    self.fill_from(held, &lane, bounds);
                }
                while held.room(bounds) {
                    let Some((lane, work)) = self.lanes.next() else {
                        break;
                    };
                    self.mark_in_flight(&work);
                    held.push(lane.clone(), work);
                    if lane != Lane::Free {
                        self.fill_from(held, &lane, bounds);
                    }
                }
            }
            Ordering::Unordered => {
                while held.room(bounds) {
                    let Some((lane, work)) = self.lanes.next() else {
                        break;
                    };
                    self.mark_in_flight(&work);
                    held.push(lane, work);
                }
            }
        }
    }

    /// Adds the next records of `lane`, which the batch holds.
    fn fill_from(&mut self, held: &mut Held, lane: &Lane<Slot>, bounds: Bounds) {
        while held.room(bounds) {
            let Some(work) = self.lanes.next_in(lane) else {
                break;
            };
            self.mark_in_flight(&work);
            held.items.push((lane.clone(), work));
        }
    }

    fn mark_in_flight(&mut self, work: &Work) {
        if let Some(p) = self.partitions.get_mut(&work.slot.generation) {
            p.offsets.in_flight += 1;
        }
    }

    /// Puts records a batch took and will not send back at the front of their lanes, the
    /// last first. A record of a partition revoked since (or being revoked: the revoke
    /// waits with the partition's state still there) is dropped, as the revoke dropped the
    /// others waiting; the next owner reads it again.
    fn give_back(&mut self, items: Vec<(Lane<Slot>, Work)>) {
        for (lane, work) in items.into_iter().rev() {
            let assigned = self.is_assigned(work.slot, &work.record);
            match self.partitions.get_mut(&work.slot.generation) {
                Some(p) if assigned => {
                    p.offsets.in_flight -= 1;
                    let slot = work.slot;
                    self.lanes.unshift(lane, slot, work);
                }
                Some(p) => {
                    p.offsets.in_flight -= 1;
                    p.buffered -= 1;
                    self.unbuffer(1, work.size);
                }
                None => self.unbuffer(1, work.size),
            }
        }
    }

    /// Whether `slot` is still the assignment of the record's partition.
    fn is_assigned(&self, slot: Slot, record: &Record) -> bool {
        self.assigned
            .get(&*record.topic)
            .and_then(|p| p.get(&record.partition))
            == Some(&slot.generation)
    }

    /// A batch's records reached `outcomes` (`None` past the end or for a record that is not
    /// final); its lanes and its `max_in_flight` slot come back.
    fn settle_batch(&mut self, held: Held, outcomes: &[Option<Final>]) {
        self.in_flight -= 1;
        for (index, (_, work)) in held.items.iter().enumerate() {
            self.settle_record(work, outcomes.get(index).copied().flatten());
        }
        for lane in &held.lanes {
            self.lanes.release(lane);
        }
    }

    /// Records that leave the buffer: settled, or dropped by a revoke.
    fn unbuffer(&mut self, records: usize, bytes: usize) {
        self.buffered -= records;
        self.buffered_bytes -= bytes;
    }

    /// Updates and returns [`State::full`].
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

    /// Whether any of `slots` has a delivery running.
    fn busy(&self, slots: &[u64]) -> bool {
        slots.iter().any(|g| {
            self.partitions
                .get(g)
                .is_some_and(|s| s.offsets.in_flight > 0)
        })
    }
}

/// The state, with what wakes those who wait on it.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    /// Signalled on outcomes while a revoke waits.
    outcome: Condvar,
    /// Wakes the poller to start more deliveries.
    wake: Notify,
    /// Wakes batches waiting to fill when a record arrives.
    arrived: Notify,
    limits: Limits,
    ordering: Ordering,
}

impl Shared {
    /// Empty state for a trigger.
    pub fn new(limits: Limits, ordering: Ordering) -> Self {
        Self {
            state: Mutex::default(),
            outcome: Condvar::new(),
            wake: Notify::new(),
            arrived: Notify::new(),
            limits,
            ordering,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements, and no method panics while holding
        // it, so a poisoned lock is taken as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when a delivery task stopped, or room or a resume may have come.
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Takes a consumed record into its lane.
    pub fn accept(&self, record: Record) -> Fullness {
        let size = record.size();
        let mut state = self.lock();
        if state.filling > 0 {
            self.arrived.notify_waiters();
        }
        let slot = state.slot(&record.topic, record.partition);
        if let Some(p) = state.partitions.get_mut(&slot.generation) {
            p.offsets.track(record.offset);
            p.buffered += 1;
        }
        let lane = match (self.ordering, &record.key) {
            (Ordering::Partition, _) => Lane::Partition(slot),
            (Ordering::Key, Some(k)) => Lane::Key(slot, k.clone()),
            (Ordering::Key, None) | (Ordering::Unordered, _) => Lane::Free,
        };
        state.buffered += 1;
        state.buffered_bytes += size;
        state.lanes.push(lane, slot, Work { record, slot, size });
        fullness(state.fullness(self.limits.high_mark))
    }

    /// The next record that may start, for a new delivery task; `gauge` counts the task
    /// while it runs.
    pub fn take(self: &Arc<Self>, gauge: &Gauge) -> Option<Started> {
        let current = self.lock().take(self.limits)?;
        gauge.inc();
        Some(Started {
            shared: self.clone(),
            current: Some(current),
            gauge: gauge.clone(),
        })
    }

    /// A batch for a new delivery task, as [`Shared::take`] for one record.
    pub fn take_batch(self: &Arc<Self>, gauge: &Gauge, bounds: Bounds) -> Option<Batch> {
        let held = self.lock().take_batch(self.limits, self.ordering, bounds)?;
        gauge.inc();
        Some(Batch {
            shared: self.clone(),
            held: Some(held),
            bounds,
            gauge: gauge.clone(),
        })
    }

    /// Runs `settle` (a delivery's end and its task's next take) under the lock, then wakes
    /// a waiting revoke, and the poller when the task stops (nothing taken), when a full
    /// trigger may take records again and when a paused one may resume.
    fn settle_and_take<T>(&self, settle: impl FnOnce(&mut State) -> Option<T>) -> Option<T> {
        let high_mark = self.limits.high_mark;
        let (next, revoking, refill) = {
            let mut state = self.lock();
            let was_full = state.full;
            let next = settle(&mut state);
            let refill = (was_full && !state.fullness(high_mark)) || state.may_resume(high_mark);
            (next, state.revoking > 0, refill)
        };
        if revoking {
            self.outcome.notify_all();
        }
        if next.is_none() || refill {
            self.wake.notify_one();
        }
        next
    }

    /// Runs `settle` for a delivery task that ended without finishing (a panic, a cancelled
    /// task), then wakes a waiting revoke and the poller.
    fn settle_dropped(&self, settle: impl FnOnce(&mut State)) {
        let revoking = {
            let mut state = self.lock();
            settle(&mut state);
            state.revoking > 0
        };
        if revoking {
            self.outcome.notify_all();
        }
        self.wake.notify_one();
    }

    /// Whether the trigger is full now, and whether its partitions are paused.
    pub fn fullness(&self) -> (Fullness, bool) {
        let mut state = self.lock();
        (
            fullness(state.fullness(self.limits.high_mark)),
            state.paused,
        )
    }

    /// The partitions were paused.
    pub fn paused(&self) {
        self.lock().paused = true;
    }

    /// Whether paused partitions may resume; if so, they count as resumed.
    pub fn resume(&self) -> bool {
        let mut state = self.lock();
        let resume = state.may_resume(self.limits.high_mark);
        if resume {
            state.paused = false;
        }
        resume
    }

    /// Nothing new starts from now on; returns the deliveries still running.
    pub fn stop(&self) -> usize {
        let mut state = self.lock();
        state.stopping = true;
        state.in_flight
    }

    /// In flight and waiting right now.
    pub fn counts(&self) -> Counts {
        let state = self.lock();
        Counts {
            in_flight: state.in_flight,
            waiting: state.lanes.waiting(),
            paused: state.paused,
        }
    }

    /// Watermarks that moved since their last commit, or every watermark with `all`.
    pub fn commits(&self, all: bool) -> Vec<Commit> {
        let mut state = self.lock();
        state
            .partitions
            .values_mut()
            .filter_map(|p| {
                let offset = if all {
                    p.offsets.watermark()
                } else {
                    p.offsets.take_commit()
                }?;
                Some(Commit {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset,
                })
            })
            .collect()
    }

    /// Stops the revoked partitions: drops their waiting records (the next owner reads them
    /// again), waits up to `wait` for their deliveries, and returns the offsets to commit.
    /// Outcomes that come later belong to a generation that is gone and change nothing.
    pub fn revoke(&self, revoked: &[(String, i32)], wait: Duration) -> Vec<Commit> {
        let mut state = self.lock();
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
        state.unbuffer(dropped.len(), dropped.iter().map(|w| w.size).sum());
        // Batches waiting to fill stop waiting and send what they hold of these partitions.
        if state.filling > 0 {
            self.arrived.notify_waiters();
        }
        let deadline = Instant::now() + wait;
        state.revoking += 1;
        loop {
            let now = Instant::now();
            if !state.busy(&slots) || now >= deadline {
                break;
            }
            state = self
                .outcome
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        state.revoking -= 1;
        let commits = slots
            .into_iter()
            .filter_map(|generation| {
                let p = state.partitions.remove(&generation)?;
                Some(Commit {
                    offset: p.offsets.watermark()?,
                    topic: p.topic,
                    partition: p.partition,
                })
            })
            .collect();
        drop(state);
        drop(dropped);
        commits
    }
}

fn fullness(full: bool) -> Fullness {
    if full { Fullness::Full } else { Fullness::Room }
}

/// How big a batch may grow: [`config::Batch`](crate::config::Batch) without the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The most records.
    pub max_events: usize,
    /// The most bytes, as [`Record::size`] counts them; the request's own bound is checked
    /// when the events are written.
    pub max_bytes: usize,
}

/// The records of one batch, in the order they are sent, and the lanes it holds.
#[derive(Debug)]
struct Held {
    /// Lanes held busy until the batch settles (none for free records).
    lanes: Vec<Lane<Slot>>,
    items: Vec<(Lane<Slot>, Work)>,
    bytes: usize,
}

impl Held {
    fn push(&mut self, lane: Lane<Slot>, work: Work) {
        if lane != Lane::Free {
            self.lanes.push(lane.clone());
        }
        self.bytes += work.size;
        self.items.push((lane, work));
    }

    fn room(&self, bounds: Bounds) -> bool {
        self.items.len() < bounds.max_events && self.bytes < bounds.max_bytes
    }
}

/// A delivery task's hold on a batch of records, as [`Started`] is on one: it holds one
/// `max_in_flight` slot, the batch's lanes and its records' counts, and dropping it settles
/// every record as not final.
#[derive(Debug)]
pub struct Batch {
    shared: Arc<Shared>,
    held: Option<Held>,
    bounds: Bounds,
    gauge: Gauge,
}

impl Batch {
    /// The records, in the order they go out.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.held
            .iter()
            .flat_map(|held| held.items.iter().map(|(_, work)| &work.record))
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.held.as_ref().map_or(0, |held| held.items.len())
    }

    /// Whether it holds none (once [`Batch::finish`] found no next batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it reached a bound.
    pub fn is_full(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|held| !held.room(self.bounds))
    }

    /// Waits up to `max_wait` from now for records to fill the batch, taking them as they
    /// arrive; returns early when it is full or `cancel` fires.
    pub async fn fill(&mut self, max_wait: std::time::Duration, cancel: &CancellationToken) {
        if max_wait.is_zero() || self.is_full() || self.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        let shared = self.shared.clone();
        loop {
            let mut arrived = std::pin::pin!(shared.arrived.notified());
            arrived.as_mut().enable();
            let filling = {
                let mut state = shared.lock();
                if let Some(held) = self.held.as_mut() {
                    state.fill(held, shared.ordering, self.bounds);
                }
                let revoked = self.held.as_ref().is_some_and(|held| {
                    held.items
                        .iter()
                        .any(|(_, work)| !state.is_assigned(work.slot, &work.record))
                });
                if self.is_full() || state.stopping || revoked {
                    return;
                }
                state.filling += 1;
                Filling(&shared)
            };
            let woken = tokio::select! {
                _ = arrived => true,
                _ = tokio::time::sleep_until(deadline) => false,
                _ = cancel.cancelled() => false,
            };
            drop(filling);
            if !woken {
                if let Some(held) = self.held.as_mut() {
                    shared.lock().fill(held, shared.ordering, self.bounds);
                }
                return;
            }
        }
    }

    /// Puts the records from `index` on back in their lanes, for other deliveries: they did
    /// not fit in the request.
    pub fn give_back(&mut self, index: usize) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        if index >= held.items.len() {
            return;
        }
        let rest = held.items.split_off(index);
        held.bytes = held.items.iter().map(|(_, work)| work.size).sum();
        let revoking = {
            let mut state = self.shared.lock();
            state.give_back(rest);
            state.revoking > 0
        };
        if revoking {
            self.shared.outcome.notify_all();
        }
        self.shared.wake.notify_one();
    }

    /// Settles the records with `outcomes`, in the order of [`Batch::records`] (`None`: not
    /// final), and takes the next batch; returns whether there is one. Wakes as
    /// [`Started::finish`] does.
    pub fn finish(&mut self, outcomes: &[Option<Final>]) -> bool {
        let Some(held) = self.held.take() else {
            return false;
        };
        let shared = &*self.shared;
        let bounds = self.bounds;
        self.held = shared.settle_and_take(|state| {
            state.settle_batch(held, outcomes);
            state.take_batch(shared.limits, shared.ordering, bounds)
        });
        self.held.is_some()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            if std::thread::panicking() {
                error!(
                    records = held.items.len(),
                    "A batch delivery panicked; its records are not final and stay uncommitted."
                );
            }
            self.shared
                .settle_dropped(|state| state.settle_batch(held, &[]));
        }
        self.gauge.dec();
    }
}

/// A batch counted among those waiting to fill, for as long as it is alive (a task dropped
/// mid-wait stops counting too).
struct Filling<'a>(&'a Shared);

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        self.0.lock().filling -= 1;
    }
}

/// A delivery task's hold on the record it delivers, and so on one `max_in_flight` slot and
/// its partition's count. [`Started::finish`] settles the record with its outcome and moves
/// on to the next one that may start; dropping it (a panic, a cancelled task) settles the
/// record as not final, so the slot and the counts come back and the offset stays
/// uncommitted, for the record to be read again.
#[derive(Debug)]
pub struct Started {
    shared: Arc<Shared>,
    current: Option<(Lane<Slot>, Work)>,
    gauge: Gauge,
}

impl Started {
    /// The record to deliver; `None` once [`Started::finish`] found no next one.
    pub fn record(&self) -> Option<&Record> {
        self.current.as_ref().map(|(_, work)| &work.record)
    }

    /// Settles the record with `outcome` (`None`: not final) and takes the next record that
    /// may start; returns whether there is one. Wakes a waiting revoke, and the poller when
    /// this task stops, when a full trigger may take records again and when a paused one
    /// may resume.
    pub fn finish(&mut self, outcome: Option<Final>) -> bool {
        let Some((lane, work)) = self.current.take() else {
            return false;
        };
        let limits = self.shared.limits;
        self.current = self.shared.settle_and_take(|state| {
            state.settle(&lane, &work, outcome);
            state.take(limits)
        });
        self.current.is_some()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some((lane, work)) = self.current.take() {
            if std::thread::panicking() {
                error!(
                    topic = %work.record.topic,
                    partition = work.record.partition,
                    offset = work.record.offset,
                    "A delivery panicked; its record is not final and stays uncommitted."
                );
            }
            self.shared
                .settle_dropped(|state| state.settle(&lane, &work, None));
        }
        self.gauge.dec();
    }
}
