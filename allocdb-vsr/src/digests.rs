//! State digests at checkpoint-interval ops, so replicas can compare their states.
//!
//! Every replica applies the same ops in the same order, so after op `k` every replica's
//! state — and its [`allocdb_core::Allocator::state_digest`] — is the same. At every multiple
//! of `checkpoint_interval_ops` a replica records its digest; the primary sends its latest in
//! each heartbeat, and a backup that applied that op compares. A few are kept because a backup
//! applies an op a little before or after the primary.

use allocdb_core::Op;

/// How many recent digests are kept.
const DIGESTS_KEPT: usize = 4;

/// The latest digests, newest last.
#[derive(Clone, Debug, Default)]
pub(crate) struct Digests {
    recent: [(Op, u128); DIGESTS_KEPT],
    count: usize,
    /// Tests only ([`crate::Replica::tamper_state_digests`]): `xor`-ed into every digest
    /// recorded, to show that a diverged state is caught.
    pub tamper: u128,
}

impl Digests {
    /// Records the digest after `op` (ops ascend; a replica applies each op once).
    pub fn record(&mut self, op: Op, digest: u128) {
        assert!(op > 0);
        let latest = self.latest().0;
        assert!(
            op > latest,
            "digests are recorded in op order ({op} after {latest})"
        );
        if self.count == DIGESTS_KEPT {
            self.recent.rotate_left(1);
            self.count -= 1;
        }
        self.recent[self.count] = (op, digest ^ self.tamper);
        self.count += 1;
        assert!(self.count <= DIGESTS_KEPT);
    }

    /// The newest (op, digest), or (0, 0) before the first.
    pub fn latest(&self) -> (Op, u128) {
        if self.count == 0 {
            (0, 0)
        } else {
            self.recent[self.count - 1]
        }
    }

    /// The digest after `op`, if it is still kept.
    pub fn at(&self, op: Op) -> Option<u128> {
        self.recent[..self.count]
            .iter()
            .find(|(kept, _)| *kept == op)
            .map(|(_, digest)| *digest)
    }
}

#[cfg(test)]
mod tests {
    use super::Digests;

    #[test]
    fn the_newest_few_are_kept() {
        let mut digests = Digests::default();
        assert_eq!(digests.latest(), (0, 0));
        assert_eq!(digests.at(0), None);
        for op in 1..=6 {
            digests.record(op * 10, u128::from(op));
        }
        assert_eq!(digests.latest(), (60, 6));
        assert_eq!(digests.at(30), Some(3));
        assert_eq!(digests.at(20), None, "only four are kept");
        assert_eq!(digests.at(35), None);
    }

    #[test]
    #[should_panic(expected = "op order")]
    fn out_of_order_is_a_programmer_error() {
        let mut digests = Digests::default();
        digests.record(20, 1);
        digests.record(10, 2);
    }
}
