//! The contiguous watermark of one partition: the offset that may be committed is the lowest
//! record whose outcome is not final yet, or one past the highest record seen.

use std::collections::VecDeque;

/// Entries past which final records behind an open one are dropped from the window, when
/// they are also most of it.
const COMPACT_ABOVE: usize = 1024;

/// Offsets of one partition in one assignment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Records seen, in offset order from the lowest one not final, each with whether its
    /// outcome is final. A consumer hands out a partition's records in offset order, so
    /// tracking one is a push at the back and the watermark moves by pops at the front.
    window: VecDeque<(i64, bool)>,
    /// Entries of `window` whose outcome is not final.
    open: usize,
    /// One past the highest offset seen; `None` before the first record.
    next: Option<i64>,
    /// The last offset committed, or sent to be committed.
    committed: Option<i64>,
    /// Records of this partition being delivered right now.
    pub in_flight: usize,
}

impl PartitionOffsets {
    /// A record was received.
    pub fn track(&mut self, offset: i64) {
        match self.window.back() {
            Some(&(last, _)) if last >= offset => {
                // Out of order: kept sorted all the same.
                match self.window.binary_search_by_key(&offset, |e| e.0) {
                    Ok(i) if self.window[i].1 => {
                        self.window[i].1 = false;
                        self.open += 1;
                    }
                    Ok(_) => {}
                    Err(i) => {
                        self.window.insert(i, (offset, false));
                        self.open += 1;
                    }
                }
            }
            _ => {
                self.window.push_back((offset, false));
                self.open += 1;
            }
        }
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// A record's outcome is final (delivered, dead-lettered, dropped).
    pub fn done(&mut self, offset: i64) {
        // In partition order the record done is nearly always the lowest.
        let found = match self.window.front() {
            Some(&(lowest, _)) if lowest == offset => Ok(0),
            _ => self.window.binary_search_by_key(&offset, |e| e.0),
        };
        let Ok(i) = found else {
            return;
        };
        if std::mem::replace(&mut self.window[i].1, true) {
            return;
        }
        self.open -= 1;
        while self.window.front().is_some_and(|e| e.1) {
            let _ = self.window.pop_front();
        }
        // A record retried for long holds the front while those behind it finish: what
        // is final behind it goes, so the window stays near the records still open.
        if self.window.len() > COMPACT_ABOVE && self.window.len() > 2 * self.open {
            self.window.retain(|e| !e.1);
        }
    }

    /// The offset to commit: everything below it is final.
    pub fn watermark(&self) -> Option<i64> {
        match self.window.front() {
            Some(&(lowest, _)) => Some(lowest),
            None => self.next,
        }
    }

    /// The watermark, if it moved past the last commit; remembers it as committed.
    pub fn take_commit(&mut self) -> Option<i64> {
        let watermark = self.watermark()?;
        if self.committed.is_some_and(|c| c >= watermark) {
            return None;
        }
        self.committed = Some(watermark);
        Some(watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_passes_a_record_that_is_not_final() {
        let mut p = PartitionOffsets::default();
        assert_eq!(p.watermark(), None);
        for o in 10..15 {
            p.track(o);
        }
        assert_eq!(p.watermark(), Some(10));
        p.done(11);
        p.done(12);
        assert_eq!(p.watermark(), Some(10), "10 is still pending");
        p.done(10);
        assert_eq!(p.watermark(), Some(13));
        p.done(14);
        assert_eq!(p.watermark(), Some(13));
        p.done(13);
        assert_eq!(p.watermark(), Some(15));
    }

    #[test]
    fn commits_only_when_the_watermark_moves() {
        let mut p = PartitionOffsets::default();
        p.track(0);
        assert_eq!(p.take_commit(), Some(0));
        assert_eq!(p.take_commit(), None);
        p.done(0);
        assert_eq!(p.take_commit(), Some(1));
        assert_eq!(p.take_commit(), None);
    }

    #[test]
    fn random_completion_orders_keep_the_invariant() {
        // Whatever order outcomes arrive in, the watermark never passes a pending record.
        // Runs past COMPACT_ABOVE records compact the window on the way.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for records in [50; 200].into_iter().chain([3000; 3]) {
            let mut p = PartitionOffsets::default();
            let mut open: Vec<i64> = (0..records).collect();
            for &o in &open {
                p.track(o);
            }
            while !open.is_empty() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % open.len() as u64) as usize;
                p.done(open.swap_remove(i));
                let w = p.watermark().unwrap();
                assert!(open.iter().all(|&o| o >= w), "{w} passes one of {open:?}");
            }
            assert_eq!(p.watermark(), Some(records));
        }
    }

    #[test]
    fn records_tracked_out_of_order_or_twice_keep_the_invariant() {
        let mut p = PartitionOffsets::default();
        for o in [5, 3, 7, 3, 4] {
            p.track(o);
        }
        assert_eq!(p.watermark(), Some(3));
        p.done(3);
        assert_eq!(p.watermark(), Some(4));
        p.done(4);
        p.done(5);
        assert_eq!(p.watermark(), Some(7));
        // A final record seen again is open again.
        p.track(7);
        p.done(7);
        p.track(9);
        p.done(9);
        p.track(8);
        assert_eq!(p.watermark(), Some(8));
        p.done(8);
        assert_eq!(p.watermark(), Some(10));
        // Outcomes of records never tracked change nothing.
        p.done(100);
        assert_eq!(p.watermark(), Some(10));
    }

    #[test]
    fn one_record_held_back_does_not_keep_those_finished_behind_it() {
        let mut p = PartitionOffsets::default();
        p.track(0);
        for o in 1..100_000 {
            p.track(o);
            p.done(o);
            assert!(
                p.window.len() <= 2 * COMPACT_ABOVE + 2,
                "{}",
                p.window.len()
            );
        }
        assert_eq!(p.watermark(), Some(0), "0 is still open");
        p.done(0);
        assert_eq!(p.watermark(), Some(100_000));
        assert!(p.window.is_empty());
    }
}
