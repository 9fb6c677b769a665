//! The contiguous watermark of one partition: the offset that may be committed is the lowest
//! record whose outcome is not final yet, or one past the highest record seen.

use std::collections::BTreeSet;

/// Offsets of one partition in one assignment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Records seen whose outcome is not final.
    pending: BTreeSet<i64>,
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
        let _ = self.pending.insert(offset);
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// A record's outcome is final (delivered, dead-lettered, dropped).
    pub fn done(&mut self, offset: i64) {
        let _ = self.pending.remove(&offset);
    }

    /// The offset to commit: everything below it is final.
    pub fn watermark(&self) -> Option<i64> {
        match self.pending.first() {
            Some(&lowest) => Some(lowest),
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
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let mut p = PartitionOffsets::default();
            let mut open: Vec<i64> = (0..50).collect();
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
            assert_eq!(p.watermark(), Some(50));
        }
    }
}
