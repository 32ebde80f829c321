//! The primary's logical clock: slots anchored on the adopted log, advanced by elapsed time,
//! stepped down by the clock's drift bound.
//!
//! Monotonic clocks of different machines are not comparable, so a raw reading never becomes
//! a slot. A new primary anchors on the highest slot of the log it adopted and stamps
//! `anchor + step_down(its clock now - its clock at election)`, never less than its previous
//! stamp: logical time stands still between primaries, so a failover can only make expiry
//! late, never early.
//!
//! A machine's monotonic clock may itself run fast. If it ran fast by `d` ppm and the primary
//! counted its readings at face value, logical time would outrun real time by `d` ppm and a
//! lease would expire early by that fraction of its TTL. The primary therefore scales its
//! elapsed reading by `1e6 / (1e6 + clock_drift_ppm_max)` (integer arithmetic, rounded down):
//! a clock running fast by up to the configured bound never advances logical time faster than
//! real time, and a clock running true or slow only makes expiry later. The bound is a
//! property of the machines, not of the protocol; it is [`ReplicaConfig::clock_drift_ppm_max`].
//!
//! [`ReplicaConfig::clock_drift_ppm_max`]: crate::ReplicaConfig::clock_drift_ppm_max

use allocdb_core::Slot;

/// Parts per million: the unit of [`crate::ReplicaConfig::clock_drift_ppm_max`].
pub const PPM: u64 = 1_000_000;

/// The stamp source of one primary term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryClock {
    anchor_slot: Slot,
    anchor_clock_slot: Slot,
    last_stamp: Slot,
    drift_ppm_max: u32,
}

impl PrimaryClock {
    /// Starts a term: `anchor_slot` is the highest slot in the adopted log, `clock_slot` the
    /// driver's monotonic clock now, `drift_ppm_max` how fast (in ppm) that clock may run.
    pub fn start(anchor_slot: Slot, clock_slot: Slot, drift_ppm_max: u32) -> PrimaryClock {
        assert!(
            u64::from(drift_ppm_max) <= PPM,
            "validated by ReplicaConfig"
        );
        PrimaryClock {
            anchor_slot,
            anchor_clock_slot: clock_slot,
            last_stamp: anchor_slot,
            drift_ppm_max,
        }
    }

    /// The slot for a prepare built when the driver's clock reads `clock_slot`.
    pub fn stamp(&mut self, clock_slot: Slot) -> Slot {
        let stamp = self.reading(clock_slot);
        self.last_stamp = stamp;
        stamp
    }

    /// The slot [`PrimaryClock::stamp`] would give at `clock_slot`, without taking it: the
    /// cluster's "now" for telling a reader how long a lease has left, measured on the clock
    /// that expires it.
    pub fn reading(&self, clock_slot: Slot) -> Slot {
        let elapsed = clock_slot.saturating_sub(self.anchor_clock_slot);
        let stepped = step_down(elapsed, self.drift_ppm_max);
        let slot = self
            .anchor_slot
            .saturating_add(stepped)
            .max(self.last_stamp);
        assert!(slot >= self.last_stamp, "slots never go backwards");
        assert!(
            slot >= self.anchor_slot,
            "never below the adopted log's slots"
        );
        slot
    }
}

/// `elapsed * 1e6 / (1e6 + drift_ppm_max)`, rounded down: the most real time that can have
/// passed while a clock running fast by at most `drift_ppm_max` counted `elapsed`. Monotone in
/// `elapsed`, never above it.
pub fn step_down(elapsed: Slot, drift_ppm_max: u32) -> Slot {
    // BROKEN ON PURPOSE under `broken-clock-drift`: the primary trusts its clock's rate, so a
    // fast clock expires leases early. Exists only to prove the simulator's expiry checker.
    if cfg!(feature = "broken-clock-drift") {
        return elapsed;
    }
    let scaled =
        u128::from(elapsed) * u128::from(PPM) / (u128::from(PPM) + u128::from(drift_ppm_max));
    let stepped = Slot::try_from(scaled).expect("never above elapsed, which is a u64");
    assert!(stepped <= elapsed, "stepping down never adds time");
    assert!(drift_ppm_max > 0 || stepped == elapsed);
    stepped
}

#[cfg(all(test, not(feature = "broken-clock-drift")))]
mod tests {
    use super::{PPM, PrimaryClock, step_down};

    #[test]
    fn stamps_follow_elapsed_time_from_the_anchor() {
        // (anchor slot, clock at election, clock readings, expected stamps), no drift allowed.
        let cases: [(u64, u64, &[u64], &[u64]); 4] = [
            (0, 0, &[0, 1, 5], &[0, 1, 5]),
            (100, 7, &[7, 8, 20], &[100, 101, 113]),
            // A clock far ahead of the log (another machine) does not leak into slots.
            (10, 1_000_000, &[1_000_000, 1_000_003], &[10, 13]),
            // A clock that reads earlier than at election never moves time back.
            (50, 20, &[25, 19, 25, 26], &[55, 55, 55, 56]),
        ];
        for (anchor, at_election, readings, expected) in cases {
            let mut clock = PrimaryClock::start(anchor, at_election, 0);
            let stamps: Vec<u64> = readings
                .iter()
                .map(|&r| {
                    // A reading is the stamp to come, and taking it changes nothing.
                    let reading = clock.reading(r);
                    assert_eq!(clock.reading(r), reading);
                    let stamp = clock.stamp(r);
                    assert_eq!(stamp, reading);
                    stamp
                })
                .collect();
            assert_eq!(stamps, expected, "anchor {anchor} clock {at_election}");
        }
    }

    #[test]
    fn a_fast_clock_is_stepped_down() {
        // (elapsed, drift bound in ppm, stepped-down elapsed)
        let cases: [(u64, u32, u64); 12] = [
            (0, 10_000, 0),
            // Below one slot's worth of drift nothing is taken away yet...
            (1, 10_000, 0),
            (100, 10_000, 99),
            (101, 10_000, 100),
            // ...and exactly 1 % fast counts 101 readings as 100 real slots.
            (1_010, 10_000, 1_000),
            (1_009, 10_000, 999),
            (1_000_000, 0, 1_000_000),
            (1_000_000, 1, 999_999),
            // The largest bound accepted: the clock may run twice as fast as real time.
            (7, 1_000_000, 3),
            (u64::MAX, 0, u64::MAX),
            // No overflow at the top of the range.
            (u64::MAX, 10_000, 18_264_103_043_276_783_777),
            (u64::MAX, 1_000_000, u64::MAX / 2),
        ];
        for (elapsed, ppm, expected) in cases {
            assert_eq!(step_down(elapsed, ppm), expected, "{elapsed} at {ppm} ppm");
            // A clock running fast by exactly the bound never gets ahead of real time.
            let real = u128::from(elapsed) * u128::from(PPM) / u128::from(PPM + u64::from(ppm));
            assert!(u128::from(step_down(elapsed, ppm)) <= real);
        }
    }

    #[test]
    fn stepped_stamps_are_monotone_and_never_below_the_last() {
        // (anchor, clock at election, readings, expected stamps) at a 1 % bound.
        let cases: [(u64, u64, &[u64], &[u64]); 3] = [
            (0, 0, &[0, 50, 101, 202, 1_010], &[0, 49, 100, 200, 1_000]),
            (500, 10, &[10, 111, 110, 112], &[500, 600, 600, 600]),
            // A reading earlier than election stays at the anchor.
            (9, 40, &[30, 40, 141], &[9, 9, 109]),
        ];
        for (anchor, at_election, readings, expected) in cases {
            let mut clock = PrimaryClock::start(anchor, at_election, 10_000);
            let stamps: Vec<u64> = readings.iter().map(|&r| clock.stamp(r)).collect();
            assert_eq!(stamps, expected, "anchor {anchor} clock {at_election}");
        }
        let mut previous = 0;
        for elapsed in 0..5_000 {
            let stepped = step_down(elapsed, 10_000);
            assert!(stepped >= previous && stepped <= elapsed);
            previous = stepped;
        }
    }
}
