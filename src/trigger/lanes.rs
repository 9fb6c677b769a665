//! Ordering: records wait in lanes, and a lane has at most one record in flight.
//!
//! `partition` ordering gives each partition a lane, `key` each key within a partition, and
//! `unordered` (or a record without a key under `key`) needs no lane at all.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::Hash,
};

use foldhash::fast::RandomState;

/// Where a record waits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane<P: Clone + Eq + Hash> {
    /// One in flight per partition (with the partition's assignment generation).
    Partition(P),
    /// One in flight per key within a partition.
    Key(P, bytes::Bytes),
    /// No constraint.
    Free,
}

impl<P: Clone + Eq + Hash> Lane<P> {
    /// The partition the lane belongs to, if any.
    pub fn partition(&self) -> Option<&P> {
        match self {
            Self::Partition(p) | Self::Key(p, _) => Some(p),
            Self::Free => None,
        }
    }
}

/// Waiting records in their lanes.
#[derive(Debug)]
pub struct Lanes<P: Clone + Eq + Hash, T> {
    queues: HashMap<Lane<P>, VecDeque<T>, RandomState>,
    busy: HashSet<Lane<P>, RandomState>,
    runnable: VecDeque<Lane<P>>,
    free: VecDeque<(P, T)>,
    waiting: usize,
    prefer_free: bool,
}

impl<P: Clone + Eq + Hash, T> Default for Lanes<P, T> {
    fn default() -> Self {
        Self {
            queues: HashMap::default(),
            busy: HashSet::default(),
            runnable: VecDeque::new(),
            free: VecDeque::new(),
            waiting: 0,
            prefer_free: false,
        }
    }
}

impl<P: Clone + Eq + Hash, T> Lanes<P, T> {
    /// Adds a record; `partition` is only used to purge free records on revoke.
    pub fn push(&mut self, lane: Lane<P>, partition: P, item: T) {
        self.waiting += 1;
        if lane == Lane::Free {
            self.free.push_back((partition, item));
            return;
        }
        let queue = self.queues.entry(lane.clone()).or_default();
        queue.push_back(item);
        if queue.len() == 1 && !self.busy.contains(&lane) {
            self.runnable.push_back(lane);
        }
    }

    /// The next record that may start now; its lane is busy until [`Lanes::release`].
    pub fn next(&mut self) -> Option<(Lane<P>, T)> {
        // Alternate between keyed lanes and free records so neither starves the other.
        self.prefer_free = !self.prefer_free;
        let item = if self.prefer_free {
            self.next_free().or_else(|| self.next_laned())
        } else {
            self.next_laned().or_else(|| self.next_free())
        };
        if item.is_some() {
            self.waiting -= 1;
        }
        item
    }

    fn next_free(&mut self) -> Option<(Lane<P>, T)> {
        self.free.pop_front().map(|(_, item)| (Lane::Free, item))
    }

    fn next_laned(&mut self) -> Option<(Lane<P>, T)> {
        while let Some(lane) = self.runnable.pop_front() {
            let Some(queue) = self.queues.get_mut(&lane) else {
                continue;
            };
            let Some(item) = queue.pop_front() else {
                let _ = self.queues.remove(&lane);
                continue;
            };
            if queue.is_empty() {
                let _ = self.queues.remove(&lane);
            }
            let _ = self.busy.insert(lane.clone());
            return Some((lane, item));
        }
        None
    }

    /// The next record of `lane`, a lane its caller holds (from [`Lanes::next`]), for a
    /// batch that goes on along it.
    pub fn next_in(&mut self, lane: &Lane<P>) -> Option<T> {
        let queue = self.queues.get_mut(lane)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            let _ = self.queues.remove(lane);
        }
        if item.is_some() {
            self.waiting -= 1;
        }
        item
    }

    /// Puts a record taken and not started back at the front of its lane, as the next one
    /// to start; a batch gives back what does not fit in last-first order.
    pub fn unshift(&mut self, lane: Lane<P>, partition: P, item: T) {
        self.waiting += 1;
        if lane == Lane::Free {
            self.free.push_front((partition, item));
            return;
        }
        let queue = self.queues.entry(lane.clone()).or_default();
        queue.push_front(item);
        if queue.len() == 1 && !self.busy.contains(&lane) {
            self.runnable.push_back(lane);
        }
    }

    /// The record of `lane` reached its outcome: the lane may start its next one.
    pub fn release(&mut self, lane: &Lane<P>) {
        if self.busy.remove(lane) && self.queues.contains_key(lane) {
            self.runnable.push_back(lane.clone());
        }
    }

    /// Removes every waiting record of the partitions `revoked` says yes to, and forgets
    /// their lanes. Returns the removed records.
    pub fn purge(&mut self, revoked: impl Fn(&P) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let lanes: Vec<Lane<P>> = self
            .queues
            .keys()
            .filter(|l| l.partition().is_some_and(&revoked))
            .cloned()
            .collect();
        for lane in lanes {
            if let Some(queue) = self.queues.remove(&lane) {
                removed.extend(queue);
            }
        }
        self.busy.retain(|l| !l.partition().is_some_and(&revoked));
        self.runnable
            .retain(|l| !l.partition().is_some_and(&revoked));
        let (gone, kept): (VecDeque<_>, VecDeque<_>) =
            self.free.drain(..).partition(|(p, _)| revoked(p));
        self.free = kept;
        removed.extend(gone.into_iter().map(|(_, item)| item));
        self.waiting -= removed.len();
        removed
    }

    /// Records waiting to start.
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = Lanes<i32, u32>;

    fn drain_ready(lanes: &mut L) -> Vec<(Lane<i32>, u32)> {
        std::iter::from_fn(|| lanes.next()).collect()
    }

    #[test]
    fn a_partition_lane_runs_one_at_a_time_in_order() {
        let mut lanes = L::default();
        for n in 0..3 {
            lanes.push(Lane::Partition(0), 0, n);
            lanes.push(Lane::Partition(1), 1, 10 + n);
        }
        let first = drain_ready(&mut lanes);
        assert_eq!(first.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [0, 10]);
        assert_eq!(lanes.waiting(), 4);
        lanes.release(&Lane::Partition(1));
        assert_eq!(
            drain_ready(&mut lanes)
                .iter()
                .map(|(_, n)| *n)
                .collect::<Vec<_>>(),
            [11]
        );
        lanes.release(&Lane::Partition(0));
        lanes.release(&Lane::Partition(1));
        let next: Vec<u32> = drain_ready(&mut lanes).iter().map(|(_, n)| *n).collect();
        assert_eq!(next, [1, 12]);
    }

    #[test]
    fn key_lanes_run_in_parallel_and_free_records_do_not_wait() {
        let mut lanes = L::default();
        let a = Lane::Key(0, bytes::Bytes::from_static(b"a"));
        let b = Lane::Key(0, bytes::Bytes::from_static(b"b"));
        lanes.push(a.clone(), 0, 1);
        lanes.push(a.clone(), 0, 2);
        lanes.push(b.clone(), 0, 3);
        lanes.push(Lane::Free, 0, 4);
        lanes.push(Lane::Free, 0, 5);
        let mut started: Vec<u32> = drain_ready(&mut lanes).iter().map(|(_, n)| *n).collect();
        started.sort();
        assert_eq!(started, [1, 3, 4, 5]);
        lanes.release(&a);
        assert_eq!(
            drain_ready(&mut lanes)
                .iter()
                .map(|(_, n)| *n)
                .collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(lanes.waiting(), 0);
    }

    #[test]
    fn a_held_lane_gives_its_records_in_order_and_takes_them_back_at_the_front() {
        let mut lanes = L::default();
        let a = Lane::Key(0, bytes::Bytes::from_static(b"a"));
        for n in 1..=4 {
            lanes.push(a.clone(), 0, n);
        }
        lanes.push(Lane::Free, 0, 9);
        let (lane, first) = lanes.next().unwrap();
        assert_eq!((lane.clone(), first), (Lane::Free, 9));
        let (lane, first) = lanes.next().unwrap();
        assert_eq!((lane.clone(), first), (a.clone(), 1));
        assert_eq!(lanes.next_in(&a), Some(2));
        assert_eq!(lanes.next_in(&a), Some(3));
        assert_eq!(lanes.waiting(), 1);
        // 3 then 2 go back: the lane starts with 2 once released.
        lanes.unshift(a.clone(), 0, 3);
        lanes.unshift(a.clone(), 0, 2);
        assert_eq!(lanes.waiting(), 3);
        assert!(lanes.next().is_none(), "a held lane starts nothing");
        lanes.release(&a);
        let order: Vec<u32> = std::iter::from_fn(|| {
            let (lane, n) = lanes.next()?;
            lanes.release(&lane);
            Some(n)
        })
        .collect();
        assert_eq!(order, [2, 3, 4]);
        lanes.unshift(Lane::Free, 0, 7);
        lanes.push(Lane::Free, 0, 8);
        assert_eq!(lanes.next().map(|(_, n)| n), Some(7));
    }

    #[test]
    fn purge_drops_waiting_records_of_revoked_partitions() {
        let mut lanes = L::default();
        lanes.push(Lane::Partition(0), 0, 1);
        lanes.push(Lane::Partition(0), 0, 2);
        lanes.push(Lane::Partition(1), 1, 3);
        lanes.push(Lane::Free, 1, 4);
        let (lane, item) = lanes.next().unwrap();
        assert_eq!(item, 4);
        assert_eq!(lane, Lane::Free);
        let (_, item) = lanes.next().unwrap();
        assert_eq!(item, 1);
        let mut removed = lanes.purge(|p| *p == 0);
        removed.sort();
        assert_eq!(removed, [2]);
        assert_eq!(lanes.waiting(), 1);
        // A release for the purged lane changes nothing.
        lanes.release(&Lane::Partition(0));
        assert_eq!(
            drain_ready(&mut lanes)
                .iter()
                .map(|(_, n)| *n)
                .collect::<Vec<_>>(),
            [3]
        );
    }
}
