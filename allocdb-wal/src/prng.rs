//! A tiny deterministic PRNG (splitmix64) for the simulated storage and seeded tests.

/// splitmix64: one `u64` of state, full period, good enough to drive fault injection.
/// Deterministic across platforms, so a seed replays exactly.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Starts the sequence at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound > 0`), by multiply-shift (bias below 2^-32 for our bounds).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0) has no values");
        let value = (u128::from(self.next_u64()) * u128::from(bound)) >> 64;
        #[allow(clippy::cast_possible_truncation)] // value < bound <= u64::MAX
        let value = value as u64;
        debug_assert!(value < bound);
        value
    }

    /// A value in `0..=max` (every `u64` when `max == u64::MAX`): for inclusive ranges such as
    /// timeout jitter.
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        let value = self.below(max + 1);
        assert!(value <= max);
        value
    }

    /// True with probability `ppm` per million.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(1_000_000) < u64::from(ppm)
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn is_deterministic_and_bounded() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert!(!a.chance_ppm(0));
        let mut seen = [false; 4];
        for _ in 0..200 {
            let value = a.up_to(3);
            assert_eq!(value, b.up_to(3));
            seen[usize::try_from(value).unwrap()] = true;
        }
        assert_eq!(seen, [true; 4], "every value of 0..=3 appears");
        assert_eq!(a.up_to(0), 0);
        let mut c = SplitMix64::new(7);
        let mut d = SplitMix64::new(7);
        assert_eq!(c.up_to(u64::MAX), d.next_u64());
        assert!(a.chance_ppm(1_000_000));
    }
}
