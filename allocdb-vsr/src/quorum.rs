//! Quorum arithmetic: majorities and the op a majority has acknowledged.
//!
//! Kept apart from the replica so the two facts every safety argument rests on — any two
//! majorities intersect, and an op counts as committed only when a majority holds it — are
//! tested on their own.

use allocdb_core::Op;

/// The smallest number of replicas that forms a majority of `replica_count`.
pub fn majority(replica_count: u8) -> u8 {
    assert!(replica_count >= 1, "a cluster has at least one replica");
    let quorum = replica_count / 2 + 1;
    // Two majorities always share a replica: that is what carries committed ops across views.
    assert!(2 * u16::from(quorum) > u16::from(replica_count));
    quorum
}

/// The highest op that at least `quorum` of the replicas acknowledged, given each replica's
/// cumulative acknowledgement (`acked[i]` = replica i holds every op up to it durably).
/// Allocation-free: `acked` holds at most [`crate::config::REPLICAS_MAX`] entries.
pub fn quorum_op(acked: &[Op], quorum: u8) -> Op {
    assert!(quorum >= 1 && usize::from(quorum) <= acked.len());
    let mut sorted = [0_u64; crate::config::REPLICAS_MAX as usize];
    assert!(acked.len() <= sorted.len());
    sorted[..acked.len()].copy_from_slice(acked);
    let sorted = &mut sorted[..acked.len()];
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let op = sorted[usize::from(quorum) - 1];
    debug_assert!(acked.iter().filter(|&&a| a >= op).count() >= usize::from(quorum));
    op
}

/// A set of replica indices (a vote or acknowledgement set), as a bitmask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaSet(u8);

impl ReplicaSet {
    /// The empty set.
    pub const EMPTY: ReplicaSet = ReplicaSet(0);

    /// Adds `replica`; returns whether it was new.
    pub fn insert(&mut self, replica: u8) -> bool {
        assert!(replica < crate::config::REPLICAS_MAX);
        let bit = 1_u8 << replica;
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }

    /// Whether `replica` is in the set.
    pub fn contains(self, replica: u8) -> bool {
        assert!(replica < crate::config::REPLICAS_MAX);
        self.0 & (1 << replica) != 0
    }

    /// How many replicas are in the set.
    pub fn count(self) -> u8 {
        // At most 8 bits are set.
        #[allow(clippy::cast_possible_truncation)]
        let count = self.0.count_ones() as u8;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::{ReplicaSet, majority, quorum_op};

    #[test]
    fn majorities() {
        for (count, quorum) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)] {
            assert_eq!(majority(count), quorum, "replica_count {count}");
        }
    }

    #[test]
    fn quorum_op_table() {
        let cases: [(&[u64], u8, u64); 7] = [
            (&[5], 1, 5),
            (&[5, 0, 0], 2, 0),
            (&[5, 3, 0], 2, 3),
            (&[5, 3, 9], 2, 5),
            (&[7, 7, 7], 2, 7),
            (&[1, 2, 3, 4, 5], 3, 3),
            (&[9, 0, 0, 8, 0], 3, 0),
        ];
        for (acked, quorum, expected) in cases {
            assert_eq!(
                quorum_op(acked, quorum),
                expected,
                "{acked:?} quorum {quorum}"
            );
        }
    }

    #[test]
    fn replica_sets() {
        let mut set = ReplicaSet::EMPTY;
        assert!(set.insert(0));
        assert!(!set.insert(0));
        assert!(set.insert(4));
        assert_eq!(set.count(), 2);
        assert!(set.contains(4) && !set.contains(1));
    }
}
