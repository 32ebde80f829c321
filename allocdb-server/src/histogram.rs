//! A fixed-size latency histogram: log-linear buckets (16 per power of two, so any recorded
//! value is reported within 1/16 ≈ 6% of itself), no allocation after construction, mergeable.

/// Sub-buckets per power of two.
const SUB_BUCKETS: u64 = 16;
/// Values below this are their own bucket.
const LINEAR_MAX: u64 = SUB_BUCKETS;
/// Buckets covering every u64.
const BUCKETS: usize = 16 + 60 * 16;

/// Counts of recorded values (microseconds, for the benchmark).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[bucket(value)] += 1;
        self.total += 1;
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// Values recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The smallest bucket bound at or above `quantile` of the values (0 when empty).
    pub fn quantile(&self, quantile: f64) -> u64 {
        assert!((0.0..=1.0).contains(&quantile));
        if self.total == 0 {
            return 0;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((self.total as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_bound(index);
            }
        }
        unreachable!("rank is at most total")
    }
}

fn bucket(value: u64) -> usize {
    if value < LINEAR_MAX {
        return usize::try_from(value).expect("small");
    }
    let exponent = 63 - u64::from(value.leading_zeros()); // >= 4
    let mantissa = (value >> (exponent - 4)) & (SUB_BUCKETS - 1);
    let index = LINEAR_MAX + (exponent - 4) * SUB_BUCKETS + mantissa;
    usize::try_from(index).expect("below BUCKETS")
}

/// The largest value that falls in bucket `index`.
fn upper_bound(index: usize) -> u64 {
    let index = u64::try_from(index).expect("small");
    if index < LINEAR_MAX {
        return index;
    }
    let exponent = (index - LINEAR_MAX) / SUB_BUCKETS + 4;
    let mantissa = (index - LINEAR_MAX) % SUB_BUCKETS;
    let low = (1u64 << exponent) | (mantissa << (exponent - 4));
    low.saturating_add((1u64 << (exponent - 4)) - 1)
}

#[cfg(test)]
mod tests {
    use super::{BUCKETS, Histogram, bucket, upper_bound};

    #[test]
    fn buckets_are_monotonic_and_within_six_percent() {
        let mut previous = 0;
        for value in (0..100_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let index = bucket(value);
            assert!(index < BUCKETS);
            assert!(index >= previous, "bucket order at {value}");
            previous = index;
            let bound = upper_bound(index);
            assert!(bound >= value, "{value} above its bucket bound {bound}");
            assert!(bound - value <= value / 16, "{value} reported as {bound}");
        }
    }

    #[test]
    fn quantiles_match_a_sorted_reference() {
        let mut histogram = Histogram::new();
        let mut values: Vec<u64> = (0..10_000u64).map(|i| (i * 7919) % 50_000).collect();
        for value in &values {
            histogram.record(*value);
        }
        values.sort_unstable();
        for quantile in [0.5, 0.9, 0.99, 0.999, 1.0] {
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let exact = values[((values.len() as f64 * quantile).ceil() as usize).max(1) - 1];
            let reported = histogram.quantile(quantile);
            assert!(
                reported >= exact && reported - exact <= exact / 16,
                "q{quantile}: {reported} vs {exact}"
            );
        }
        let mut merged = Histogram::new();
        merged.merge(&histogram);
        merged.merge(&histogram);
        assert_eq!(merged.total(), 20_000);
        assert_eq!(merged.quantile(0.5), histogram.quantile(0.5));
        assert_eq!(Histogram::new().quantile(0.99), 0);
    }
}
