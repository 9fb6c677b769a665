use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const TOPIC: &str = "t";

fn record(partition: i32, offset: i64, key: u8) -> Record {
    Record {
        topic: Arc::from(TOPIC),
        partition,
        offset,
        timestamp: None,
        key: Some(Bytes::from(vec![key])),
        value: Some(Bytes::from_static(b"value")),
        headers: Vec::new(),
    }
}

fn shared(max_in_flight: usize, ordering: Ordering) -> Arc<Shared> {
    Arc::new(Shared::new(Limits::new(max_in_flight), ordering))
}

fn generation(shared: &Shared, partition: i32) -> Option<u64> {
    shared
        .lock()
        .assigned
        .get(TOPIC)
        .and_then(|p| p.get(&partition))
        .copied()
}

/// What a random step does to the state.
#[derive(Debug, Clone)]
enum Step {
    /// A record of `partition` (0–2) with key `key` arrives.
    Accept { partition: i32, key: u8 },
    /// A new delivery task starts, if a record may start.
    Take,
    /// Delivery number `task` (modulo those running) ends with `outcome` and moves on.
    Finish { task: usize, outcome: Option<Final> },
    /// Delivery number `task` is dropped mid-way (a panic, a cancelled task).
    Drop { task: usize },
    /// `partition` is revoked.
    Revoke { partition: i32 },
}

fn step() -> impl Strategy<Value = Step> {
    let outcome = prop_oneof![
        Just(Some(Final::Delivered)),
        Just(Some(Final::DeadLettered)),
        Just(Some(Final::Dropped)),
        Just(Some(Final::Filtered)),
        Just(None),
    ];
    prop_oneof![
        4 => (0..3i32, 0..3u8).prop_map(|(partition, key)| Step::Accept { partition, key }),
        3 => Just(Step::Take),
        4 => (any::<usize>(), outcome).prop_map(|(task, outcome)| Step::Finish { task, outcome }),
        1 => any::<usize>().prop_map(|task| Step::Drop { task }),
        1 => (0..3i32).prop_map(|partition| Step::Revoke { partition }),
    ]
}

fn ordering() -> impl Strategy<Value = Ordering> {
    prop_oneof![
        Just(Ordering::Partition),
        Just(Ordering::Key),
        Just(Ordering::Unordered)
    ]
}

/// The offsets of records taken in and not final yet, by generation.
type Open = BTreeMap<u64, BTreeSet<i64>>;

fn check(shared: &Shared, running: &[Started], open: &Open, ordering: Ordering) {
    let state = shared.lock();
    assert_eq!(
        state.buffered,
        state.lanes.waiting() + state.in_flight,
        "buffered = waiting + in flight"
    );
    let delivering: Vec<&Work> = running
        .iter()
        .filter_map(|s| s.current.as_ref().map(|(_, w)| w))
        .collect();
    assert_eq!(state.in_flight, delivering.len());
    assert!(state.in_flight <= shared.limits.max_in_flight);
    for (generation, p) in &state.partitions {
        let mine = delivering
            .iter()
            .filter(|w| w.slot.generation == *generation)
            .count();
        assert_eq!(p.offsets.in_flight, mine, "partition in flight");
        if ordering == Ordering::Partition {
            assert!(mine <= 1, "two records of one partition in flight");
        }
        if let (Some(watermark), Some(lowest)) = (
            p.offsets.watermark(),
            open.get(generation).and_then(|o| o.first()),
        ) {
            assert!(
                watermark <= *lowest,
                "watermark {watermark} passes open record {lowest}"
            );
        }
    }
}

/// Each partition's watermark and count, to compare before and after a late outcome.
fn snapshot(shared: &Shared) -> BTreeMap<u64, (Option<i64>, usize)> {
    shared
        .lock()
        .partitions
        .iter()
        .map(|(g, p)| (*g, (p.offsets.watermark(), p.buffered)))
        .collect()
}

fn run(steps: Vec<Step>, max_in_flight: usize, ordering: Ordering) {
    let shared = shared(max_in_flight, ordering);
    let gauge = Gauge::default();
    let mut running: Vec<Started> = Vec::new();
    let mut open = Open::new();
    let mut next_offset = [0i64; 3];
    for step in steps {
        match step {
            Step::Accept { partition, key } => {
                let offset = next_offset[partition as usize];
                next_offset[partition as usize] += 1;
                let _ = shared.accept(record(partition, offset, key));
                let generation = generation(&shared, partition).expect("assigned on accept");
                let _ = open.entry(generation).or_default().insert(offset);
            }
            Step::Take => running.extend(shared.take(&gauge)),
            Step::Finish { task, outcome } if !running.is_empty() => {
                let i = task % running.len();
                let (slot, offset) = {
                    let (_, work) = running[i].current.as_ref().expect("running");
                    (work.slot, work.record.offset)
                };
                let revoked = !shared.lock().partitions.contains_key(&slot.generation);
                let before = snapshot(&shared);
                let more = running[i].finish(outcome);
                if revoked {
                    // What the finish took next may start another partition's record, but
                    // no watermark and no partition's count moves for a revoked one.
                    assert_eq!(snapshot(&shared), before, "a late outcome changed state");
                } else if outcome.is_some()
                    && let Some(o) = open.get_mut(&slot.generation)
                {
                    let _ = o.remove(&offset);
                }
                if !more {
                    drop(running.swap_remove(i));
                }
            }
            Step::Drop { task } if !running.is_empty() => {
                drop(running.swap_remove(task % running.len()));
            }
            Step::Revoke { partition } => {
                let generation = generation(&shared, partition);
                let commits = shared.revoke(&[(TOPIC.to_owned(), partition)], Duration::ZERO);
                if let Some(generation) = generation {
                    for commit in &commits {
                        if let Some(lowest) = open.get(&generation).and_then(|o| o.first()) {
                            assert!(commit.offset <= *lowest, "revoke commits past {lowest}");
                        }
                    }
                    let _ = open.remove(&generation);
                }
                // A later record of the partition starts a new generation.
            }
            Step::Finish { .. } | Step::Drop { .. } => {}
        }
        check(&shared, &running, &open, ordering);
    }
    let in_flight = running.len() as i64;
    assert_eq!(gauge.get(), in_flight, "the gauge counts running tasks");
    drop(running);
    assert_eq!(gauge.get(), 0);
    let state = shared.lock();
    assert_eq!(state.in_flight, 0);
    assert_eq!(state.buffered, state.lanes.waiting());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_steps_keep_the_counts_and_the_watermark(
        steps in proptest::collection::vec(step(), 1..200),
        max_in_flight in 1..5usize,
        ordering in ordering(),
    ) {
        run(steps, max_in_flight, ordering);
    }
}

#[test]
fn a_panicking_delivery_gives_its_slot_back_and_stays_uncommitted() {
    let shared = shared(1, Ordering::Partition);
    let gauge = Gauge::default();
    for offset in 0..3 {
        let _ = shared.accept(record(0, offset, 0));
    }
    let started = shared.take(&gauge).expect("a record may start");
    assert!(shared.take(&gauge).is_none(), "max_in_flight is 1");
    let panicked = std::thread::spawn(move || {
        let _held = started;
        panic!("a bug in a delivery");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(gauge.get(), 0);
    assert_eq!(
        shared.counts(),
        Counts {
            in_flight: 0,
            waiting: 2,
            paused: false,
        }
    );
    // The slot and the partition's lane are free again: the next record starts.
    let mut next = shared.take(&gauge).expect("the slot came back");
    assert_eq!(next.record().map(|r| r.offset), Some(1));
    assert!(next.finish(Some(Final::Delivered)));
    assert_eq!(next.record().map(|r| r.offset), Some(2));
    // Offset 0 never reached an outcome, so nothing is committed past it.
    let commits = shared.commits(true);
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].offset, 0);
}

#[test]
fn a_revoke_drops_waiting_records_and_commits_what_is_final() {
    let shared = shared(4, Ordering::Unordered);
    let gauge = Gauge::default();
    for offset in 0..5 {
        let _ = shared.accept(record(0, offset, 0));
    }
    let _ = shared.accept(record(1, 0, 0));
    let mut first = shared.take(&gauge).expect("room");
    assert_eq!(first.record().map(|r| r.offset), Some(0));
    // Offset 0 is delivered; the task goes on with offset 1.
    assert!(first.finish(Some(Final::Delivered)));
    let commits = shared.revoke(&[(TOPIC.to_owned(), 0)], Duration::ZERO);
    assert_eq!(
        commits,
        vec![Commit {
            topic: Arc::from(TOPIC),
            partition: 0,
            offset: 1
        }]
    );
    // Offsets 2–4 were dropped; offset 1 is still in flight, partition 1's record waits.
    assert_eq!(
        shared.counts(),
        Counts {
            in_flight: 1,
            waiting: 1,
            paused: false,
        }
    );
    assert_eq!(shared.lock().buffered, 2);
    // The late outcome of offset 1 settles its counts and nothing else; the task moves on
    // to partition 1's record.
    assert!(first.finish(Some(Final::Delivered)));
    assert_eq!(first.record().map(|r| r.partition), Some(1));
    assert_eq!(generation(&shared, 0), None);
}

#[test]
fn a_trigger_is_full_at_its_high_mark_and_takes_records_again_at_three_quarters() {
    let limits = Limits::new(1);
    let shared = Arc::new(Shared::new(limits, Ordering::Unordered));
    let gauge = Gauge::default();
    let mut fullness = Fullness::Room;
    let mut accepted = 0;
    while fullness == Fullness::Room {
        fullness = shared.accept(record(0, accepted, 0));
        accepted += 1;
    }
    // One partition, and it has records waiting: full at the high mark itself.
    assert_eq!(accepted as usize, limits.high_mark);
    let mut task = shared.take(&gauge).expect("room");
    let quarter = limits.high_mark / 4;
    for _ in 0..quarter {
        assert_eq!(shared.fullness().0, Fullness::Full);
        assert!(task.finish(Some(Final::Delivered)));
    }
    assert_eq!(shared.fullness(), (Fullness::Room, false));
}

/// What a random step does to a trigger that delivers in batches.
#[derive(Debug, Clone)]
enum BatchStep {
    /// A record of `partition` (0–2) with key `key` arrives.
    Accept { partition: i32, key: u8 },
    /// A new batch starts, if a record may start.
    Take,
    /// Batch number `task` takes what arrived since (the end of a `max_wait`).
    Fill { task: usize },
    /// Batch number `task` keeps its first `keep` records and gives the rest back.
    GiveBack { task: usize, keep: usize },
    /// Batch number `task` ends, each record with an outcome (`None` when the flag is
    /// false), and takes the next batch.
    Finish { task: usize, finals: Vec<bool> },
    /// Batch number `task` is dropped mid-way.
    Drop { task: usize },
    /// `partition` is revoked.
    Revoke { partition: i32 },
}

fn batch_step() -> impl Strategy<Value = BatchStep> {
    prop_oneof![
        5 => (0..3i32, 0..3u8).prop_map(|(partition, key)| BatchStep::Accept { partition, key }),
        2 => Just(BatchStep::Take),
        2 => any::<usize>().prop_map(|task| BatchStep::Fill { task }),
        1 => (any::<usize>(), 0..4usize).prop_map(|(task, keep)| BatchStep::GiveBack { task, keep }),
        3 => (any::<usize>(), proptest::collection::vec(any::<bool>(), 0..6))
            .prop_map(|(task, finals)| BatchStep::Finish { task, finals }),
        1 => any::<usize>().prop_map(|task| BatchStep::Drop { task }),
        1 => (0..3i32).prop_map(|partition| BatchStep::Revoke { partition }),
    ]
}

fn check_batches(
    shared: &Shared,
    running: &[Batch],
    open: &Open,
    ordering: Ordering,
    bounds: Bounds,
) {
    let state = shared.lock();
    let held: Vec<&Held> = running.iter().filter_map(|b| b.held.as_ref()).collect();
    let records: usize = held.iter().map(|h| h.items.len()).sum();
    assert_eq!(
        state.buffered,
        state.lanes.waiting() + records,
        "buffered = waiting + records in batches"
    );
    assert_eq!(state.in_flight, held.len(), "one slot per batch");
    assert!(state.in_flight <= shared.limits.max_in_flight);
    let mut lanes_held = Vec::new();
    for h in &held {
        assert!(!h.items.is_empty() && h.items.len() <= bounds.max_events);
        if ordering == Ordering::Partition {
            let first = h.items[0].1.slot;
            assert!(
                h.items.iter().all(|(_, w)| w.slot == first),
                "a batch spans partitions"
            );
        }
        // Each lane's records in offset order within the batch.
        let mut last: Vec<(&Lane<Slot>, i64)> = Vec::new();
        for (lane, work) in &h.items {
            if *lane == Lane::Free {
                continue;
            }
            if let Some(entry) = last.iter_mut().find(|(l, _)| *l == lane) {
                assert!(
                    entry.1 < work.record.offset,
                    "a lane out of order in a batch"
                );
                entry.1 = work.record.offset;
            } else {
                last.push((lane, work.record.offset));
            }
        }
        for lane in &h.lanes {
            // A revoked partition's lane is no longer anyone's.
            if state
                .partitions
                .contains_key(&lane.partition().unwrap().generation)
            {
                assert!(!lanes_held.contains(&lane), "two batches hold one lane");
                lanes_held.push(lane);
            }
        }
    }
    for (generation, p) in &state.partitions {
        let mine = held
            .iter()
            .flat_map(|h| h.items.iter())
            .filter(|(_, w)| w.slot.generation == *generation)
            .count();
        assert_eq!(p.offsets.in_flight, mine, "partition in flight");
        if let (Some(watermark), Some(lowest)) = (
            p.offsets.watermark(),
            open.get(generation).and_then(|o| o.first()),
        ) {
            assert!(
                watermark <= *lowest,
                "watermark {watermark} passes open record {lowest}"
            );
        }
    }
}

fn run_batches(steps: Vec<BatchStep>, max_in_flight: usize, ordering: Ordering, bounds: Bounds) {
    let shared = shared(max_in_flight, ordering);
    let gauge = Gauge::default();
    let mut running: Vec<Batch> = Vec::new();
    let mut open = Open::new();
    let mut next_offset = [0i64; 3];
    for step in steps {
        match step {
            BatchStep::Accept { partition, key } => {
                let offset = next_offset[partition as usize];
                next_offset[partition as usize] += 1;
                let _ = shared.accept(record(partition, offset, key));
                let generation = generation(&shared, partition).expect("assigned on accept");
                let _ = open.entry(generation).or_default().insert(offset);
            }
            BatchStep::Take => running.extend(shared.take_batch(&gauge, bounds)),
            BatchStep::Fill { task } if !running.is_empty() => {
                let i = task % running.len();
                let batch = &mut running[i];
                if let Some(held) = batch.held.as_mut() {
                    shared.lock().fill(held, ordering, bounds);
                }
            }
            BatchStep::GiveBack { task, keep } if !running.is_empty() => {
                let i = task % running.len();
                running[i].give_back(keep.max(1));
            }
            BatchStep::Finish { task, finals } if !running.is_empty() => {
                let i = task % running.len();
                let items: Vec<(Slot, i64)> = running[i]
                    .held
                    .as_ref()
                    .map(|h| {
                        h.items
                            .iter()
                            .map(|(_, w)| (w.slot, w.record.offset))
                            .collect()
                    })
                    .unwrap_or_default();
                let outcomes: Vec<Option<Final>> = finals
                    .iter()
                    .map(|&f| f.then_some(Final::Delivered))
                    .collect();
                for (index, (slot, offset)) in items.iter().enumerate() {
                    let live = shared.lock().partitions.contains_key(&slot.generation);
                    if live
                        && outcomes.get(index).copied().flatten().is_some()
                        && let Some(o) = open.get_mut(&slot.generation)
                    {
                        let _ = o.remove(offset);
                    }
                }
                if !running[i].finish(&outcomes) {
                    drop(running.swap_remove(i));
                }
            }
            BatchStep::Drop { task } if !running.is_empty() => {
                drop(running.swap_remove(task % running.len()));
            }
            BatchStep::Revoke { partition } => {
                let generation = generation(&shared, partition);
                let commits = shared.revoke(&[(TOPIC.to_owned(), partition)], Duration::ZERO);
                if let Some(generation) = generation {
                    for commit in &commits {
                        if let Some(lowest) = open.get(&generation).and_then(|o| o.first()) {
                            assert!(commit.offset <= *lowest, "revoke commits past {lowest}");
                        }
                    }
                    let _ = open.remove(&generation);
                }
            }
            BatchStep::Fill { .. }
            | BatchStep::GiveBack { .. }
            | BatchStep::Finish { .. }
            | BatchStep::Drop { .. } => {}
        }
        check_batches(&shared, &running, &open, ordering, bounds);
    }
    assert_eq!(
        gauge.get(),
        running.len() as i64,
        "the gauge counts running batches"
    );
    drop(running);
    assert_eq!(gauge.get(), 0);
    let state = shared.lock();
    assert_eq!(state.in_flight, 0);
    assert_eq!(state.buffered, state.lanes.waiting());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_batch_steps_keep_the_counts_the_order_and_the_watermark(
        steps in proptest::collection::vec(batch_step(), 1..200),
        max_in_flight in 1..4usize,
        ordering in ordering(),
        max_events in 1..6usize,
        max_bytes in 64..600usize,
    ) {
        run_batches(steps, max_in_flight, ordering, Bounds { max_events, max_bytes });
    }
}

#[test]
fn a_partition_batch_takes_its_partition_in_order_and_gives_back_to_the_front() {
    let shared = shared(2, Ordering::Partition);
    let gauge = Gauge::default();
    for offset in 0..6 {
        let _ = shared.accept(record(0, offset, 0));
    }
    let _ = shared.accept(record(1, 0, 0));
    let bounds = Bounds {
        max_events: 4,
        max_bytes: 1 << 20,
    };
    let mut first = shared.take_batch(&gauge, bounds).expect("room");
    let offsets = |b: &Batch| {
        b.records()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>()
    };
    assert_eq!(offsets(&first), [(0, 0), (0, 1), (0, 2), (0, 3)]);
    assert!(first.is_full());
    // The second batch cannot take partition 0, which the first holds.
    let second = shared.take_batch(&gauge, bounds).expect("room");
    assert_eq!(offsets(&second), [(1, 0)]);
    // Two did not fit: they go back and come first in the next batch of partition 0.
    first.give_back(2);
    assert_eq!(shared.counts().waiting, 4);
    assert!(first.finish(&[Some(Final::Delivered), Some(Final::Delivered)]));
    assert_eq!(offsets(&first), [(0, 2), (0, 3), (0, 4), (0, 5)]);
    let commits = shared.commits(true);
    let zero = commits
        .iter()
        .find(|c| c.partition == 0)
        .expect("partition 0");
    assert_eq!(zero.offset, 2);
    drop(second);
    drop(first);
    assert_eq!(gauge.get(), 0);
    assert_eq!(shared.counts().in_flight, 0);
}

#[test]
fn what_a_batch_gives_back_while_its_partition_is_revoked_is_dropped() {
    let shared = shared(2, Ordering::Partition);
    let gauge = Gauge::default();
    for offset in 0..4 {
        let _ = shared.accept(record(0, offset, 0));
    }
    let bounds = Bounds {
        max_events: 4,
        max_bytes: 1 << 20,
    };
    let mut batch = shared.take_batch(&gauge, bounds).expect("room");
    assert_eq!(batch.len(), 4);
    // A revoke that waits for the batch, with the partition's state still there.
    let revoker = {
        let shared = shared.clone();
        std::thread::spawn(move || shared.revoke(&[(TOPIC.to_owned(), 0)], Duration::from_secs(30)))
    };
    while shared.lock().revoking == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    batch.give_back(1);
    assert_eq!(
        shared.counts().waiting,
        0,
        "records of a partition being revoked went back into the lanes"
    );
    assert!(!batch.finish(&[Some(Final::Delivered)]));
    let commits = revoker.join().unwrap();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].offset, 1, "only offset 0 is final");
    let state = shared.lock();
    assert_eq!((state.buffered, state.in_flight), (0, 0));
}
