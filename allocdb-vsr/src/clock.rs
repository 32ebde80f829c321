//! The primary's logical clock: slots anchored on the adopted log, advanced by elapsed time.
//!
//! Monotonic clocks of different machines are not comparable, so a raw reading never becomes
//! a slot. A new primary anchors on the highest slot of the log it adopted and stamps
//! `anchor + (its clock now - its clock at election)`, never less than its previous stamp:
//! logical time never runs faster than real time and stands still between primaries, so a
//! failover can only make expiry late, never early.

use allocdb_core::Slot;

/// The stamp source of one primary term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryClock {
    anchor_slot: Slot,
    anchor_clock_slot: Slot,
    last_stamp: Slot,
}

impl PrimaryClock {
    /// Starts a term: `anchor_slot` is the highest slot in the adopted log, `clock_slot` the
    /// driver's monotonic clock now.
    pub fn start(anchor_slot: Slot, clock_slot: Slot) -> PrimaryClock {
        PrimaryClock {
            anchor_slot,
            anchor_clock_slot: clock_slot,
            last_stamp: anchor_slot,
        }
    }

    /// The slot for a prepare built when the driver's clock reads `clock_slot`.
    pub fn stamp(&mut self, clock_slot: Slot) -> Slot {
        let elapsed = clock_slot.saturating_sub(self.anchor_clock_slot);
        let stamp = self
            .anchor_slot
            .saturating_add(elapsed)
            .max(self.last_stamp);
        assert!(stamp >= self.last_stamp, "slots never go backwards");
        assert!(
            stamp >= self.anchor_slot,
            "never below the adopted log's slots"
        );
        self.last_stamp = stamp;
        stamp
    }
}

#[cfg(test)]
mod tests {
    use super::PrimaryClock;

    #[test]
    fn stamps_follow_elapsed_time_from_the_anchor() {
        // (anchor slot, clock at election, clock readings, expected stamps)
        let cases: [(u64, u64, &[u64], &[u64]); 4] = [
            (0, 0, &[0, 1, 5], &[0, 1, 5]),
            (100, 7, &[7, 8, 20], &[100, 101, 113]),
            // A clock far ahead of the log (another machine) does not leak into slots.
            (10, 1_000_000, &[1_000_000, 1_000_003], &[10, 13]),
            // A clock that reads earlier than at election never moves time back.
            (50, 20, &[25, 19, 25, 26], &[55, 55, 55, 56]),
        ];
        for (anchor, at_election, readings, expected) in cases {
            let mut clock = PrimaryClock::start(anchor, at_election);
            let stamps: Vec<u64> = readings.iter().map(|&r| clock.stamp(r)).collect();
            assert_eq!(stamps, expected, "anchor {anchor} clock {at_election}");
        }
    }
}
