//! The benchmark's latency histogram: `hdrhistogram` with a fixed range and precision, behind
//! the three calls the benchmark makes (record, merge, quantile).
//!
//! Three significant digits: any recorded value is reported within 0.1% of itself, from 1 µs
//! up to [`LATENCY_US_MAX`]. Recording never allocates (the counts are sized at construction)
//! and never fails: a value above the range is counted as the maximum.

/// The largest latency tracked exactly, in microseconds (one hour); longer ones are clamped.
pub const LATENCY_US_MAX: u64 = 3_600 * 1_000_000;
/// Significant decimal digits kept for every value.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Counts of recorded values (microseconds, for the benchmark).
#[derive(Clone, Debug)]
pub struct Histogram(hdrhistogram::Histogram<u64>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        let histogram =
            hdrhistogram::Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
                .expect("constant bounds are valid");
        Histogram(histogram)
    }

    /// Records one value (clamped to `1..=LATENCY_US_MAX`: a 0 µs answer is a 1 µs one).
    pub fn record(&mut self, value: u64) {
        self.0.saturating_record(value.max(1));
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        self.0
            .add(&other.0)
            .expect("histograms of the same range and precision always add");
    }

    /// Values recorded.
    pub fn total(&self) -> u64 {
        self.0.len()
    }

    /// The highest value equivalent (within the precision) to the one at `quantile` of the
    /// values; 0 when empty.
    pub fn quantile(&self, quantile: f64) -> u64 {
        assert!((0.0..=1.0).contains(&quantile));
        if self.0.is_empty() {
            return 0;
        }
        self.0.value_at_quantile(quantile)
    }
}

#[cfg(test)]
mod tests {
    use super::{Histogram, LATENCY_US_MAX};

    #[test]
    fn quantiles_match_a_sorted_reference_within_the_precision() {
        let mut histogram = Histogram::new();
        let mut values: Vec<u64> = (0..10_000u64).map(|i| 1 + (i * 7919) % 50_000).collect();
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
                reported >= exact && reported - exact <= exact / 1_000,
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

    #[test]
    fn values_outside_the_range_are_clamped_not_refused() {
        let mut histogram = Histogram::new();
        histogram.record(0);
        histogram.record(u64::MAX);
        assert_eq!(histogram.total(), 2);
        assert_eq!(histogram.quantile(0.0), 1);
        let top = histogram.quantile(1.0);
        assert!(
            top >= LATENCY_US_MAX && top - LATENCY_US_MAX <= LATENCY_US_MAX / 1_000,
            "{top}"
        );
    }
}
