//! The server's only clock: tokio's monotonic `Instant` (which turmoil controls in the
//! simulator), read through a guard that panics if it ever goes backwards.
//!
//! A replica stamps logical time from elapsed monotonic time; a clock that jumped back would
//! silently make leases expire early or late by an unknown amount. Crashing and restarting
//! is safe (the log is durable and slots never go backwards across views); guessing is not.
//!
//! The simulator gives each replica process a clock that runs fast or slow
//! ([`SlotClock::with_rate`]) to show that a primary steps its clock down by the configured
//! drift bound; production passes a rate of 0 and reads the machine's clock as it is.

use tokio::time::{Duration, Instant};

/// Monotonic time since the guard was created, in milliseconds and in slots.
#[derive(Debug)]
pub struct SlotClock {
    origin: Instant,
    last: Instant,
    slot_ms: u64,
    rate_ppm: i32,
}

/// The largest rate error [`SlotClock::with_rate`] accepts, either way: half or twice real speed.
pub const CLOCK_RATE_PPM_LIMIT: i32 = 500_000;

impl SlotClock {
    /// Starts the clock now; `slot_ms` is the cluster's slot length (at least 1).
    pub fn new(slot_ms: u64) -> SlotClock {
        SlotClock::with_rate(slot_ms, 0)
    }

    /// Starts a clock that counts `rate_ppm` parts per million more (positive: runs fast) or
    /// less (negative: runs slow) than real time elapses, as a drifting machine clock does.
    pub fn with_rate(slot_ms: u64, rate_ppm: i32) -> SlotClock {
        assert!(slot_ms >= 1, "a slot lasts at least one millisecond");
        assert!(
            rate_ppm.abs() <= CLOCK_RATE_PPM_LIMIT,
            "a clock rate error of {rate_ppm} ppm is beyond {CLOCK_RATE_PPM_LIMIT}"
        );
        let now = Instant::now();
        SlotClock {
            origin: now,
            last: now,
            slot_ms,
            rate_ppm,
        }
    }

    /// Reads the clock. Panics if it reads earlier than the previous reading.
    pub fn now(&mut self) -> Instant {
        let now = Instant::now();
        self.observe(now)
    }

    /// The guard itself, separated from the clock read so it can be tested.
    fn observe(&mut self, now: Instant) -> Instant {
        assert!(
            now >= self.last,
            "the monotonic clock went backwards by {:?}: refusing to guess logical time",
            self.last - now
        );
        self.last = now;
        now
    }

    /// Time elapsed since the clock started, as this clock counts it (scaled by its rate).
    pub fn elapsed(&mut self) -> Duration {
        let now = self.now();
        let real = now - self.origin;
        if self.rate_ppm == 0 {
            return real;
        }
        // Monotone in `real` (a positive factor, rounded down), so the guard's promise holds.
        let factor = u128::try_from(1_000_000 + i64::from(self.rate_ppm)).expect("rate bounded");
        let counted_ns = real.as_nanos() * factor / 1_000_000;
        Duration::from_nanos(u64::try_from(counted_ns).unwrap_or(u64::MAX))
    }

    /// The current slot: whole slots elapsed since the clock started.
    pub fn slot(&mut self) -> u64 {
        let elapsed_ms = u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX);
        let slot = elapsed_ms / self.slot_ms;
        assert!(slot.saturating_mul(self.slot_ms) <= elapsed_ms);
        slot
    }

    /// The slot length.
    pub fn slot_ms(&self) -> u64 {
        self.slot_ms
    }
}

#[cfg(test)]
mod tests {
    use super::SlotClock;
    use tokio::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn slots_follow_elapsed_time() {
        let mut clock = SlotClock::new(10);
        assert_eq!(clock.slot(), 0);
        tokio::time::advance(Duration::from_millis(25)).await;
        assert_eq!(clock.slot(), 2);
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(clock.slot(), 3);
        assert_eq!(clock.slot_ms(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drifting_clock_counts_faster_or_slower() {
        // (rate in ppm, real milliseconds elapsed, slots counted at 10 ms per slot)
        let cases: [(i32, u64, u64); 5] = [
            (0, 1_000, 100),
            (10_000, 1_000, 101),
            (-10_000, 1_000, 99),
            (100_000, 95, 10),
            (-500_000, 1_000, 50),
        ];
        for (rate, real_ms, slots) in cases {
            let mut clock = SlotClock::with_rate(10, rate);
            tokio::time::advance(Duration::from_millis(real_ms)).await;
            assert_eq!(clock.slot(), slots, "{rate} ppm over {real_ms} ms");
        }
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "went backwards")]
    async fn a_clock_going_backwards_panics() {
        let mut clock = SlotClock::new(1);
        tokio::time::advance(Duration::from_millis(5)).await;
        let later = clock.now();
        let earlier = later - Duration::from_millis(1);
        clock.observe(earlier);
    }
}
