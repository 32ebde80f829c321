//! The server's only clock: tokio's monotonic `Instant` (which turmoil controls in the
//! simulator), read through a guard that panics if it ever goes backwards.
//!
//! A replica stamps logical time from elapsed monotonic time; a clock that jumped back would
//! silently make leases expire early or late by an unknown amount. Crashing and restarting
//! is safe (the log is durable and slots never go backwards across views); guessing is not.

use tokio::time::{Duration, Instant};

/// Monotonic time since the guard was created, in milliseconds and in slots.
#[derive(Debug)]
pub struct SlotClock {
    origin: Instant,
    last: Instant,
    slot_ms: u64,
}

impl SlotClock {
    /// Starts the clock now; `slot_ms` is the cluster's slot length (at least 1).
    pub fn new(slot_ms: u64) -> SlotClock {
        assert!(slot_ms >= 1, "a slot lasts at least one millisecond");
        let now = Instant::now();
        SlotClock {
            origin: now,
            last: now,
            slot_ms,
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

    /// Time elapsed since the clock started.
    pub fn elapsed(&mut self) -> Duration {
        let now = self.now();
        now - self.origin
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
    #[should_panic(expected = "went backwards")]
    async fn a_clock_going_backwards_panics() {
        let mut clock = SlotClock::new(1);
        tokio::time::advance(Duration::from_millis(5)).await;
        let later = clock.now();
        let earlier = later - Duration::from_millis(1);
        clock.observe(earlier);
    }
}
