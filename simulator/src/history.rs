//! The committed history, assembled from every replica's disk over the whole run, and the
//! agreement checker: one batch per op, forever, on every replica.

use std::collections::BTreeMap;

use allocdb_core::Op;
use allocdb_wal::Checksum;

use crate::disk::Sample;

/// One committed op.
#[derive(Clone, Debug)]
pub struct CommittedOp {
    /// Its chain checksum.
    pub checksum: Checksum,
    /// Its slot.
    pub slot: u64,
    /// The batch.
    pub body: Vec<u8>,
    /// The replica it was first read from, and when (simulated ms).
    pub first_seen: (u8, u64),
}

/// The history and the disagreements found while building it.
#[derive(Debug, Default)]
pub struct History {
    /// Op → the one batch committed there.
    pub ops: BTreeMap<Op, CommittedOp>,
    /// Disagreements: two replicas (or one replica at two times) with different batches at a
    /// committed op.
    pub violations: Vec<String>,
    /// The highest view seen in any superblock.
    pub view_max: u64,
}

impl History {
    /// The highest op known.
    pub fn known_max(&self) -> Op {
        self.ops.keys().next_back().copied().unwrap_or(0)
    }

    /// Whether `op` is in the history already (a sample need not read its body).
    pub fn knows(&self, op: Op) -> bool {
        self.ops.contains_key(&op)
    }

    /// Adds replica `replica`'s sample taken at `at_ms`.
    pub fn observe(&mut self, replica: u8, at_ms: u64, sample: Sample) {
        self.view_max = self.view_max.max(sample.view);
        for op in sample.ops {
            match self.ops.get(&op.op) {
                Some(known) if known.checksum != op.checksum => {
                    let (first, first_ms) = known.first_seen;
                    self.violation(format!(
                        "agreement: committed op {} differs: replica {first} had batch {:#x} at {first_ms} ms, \
                         replica {replica} has {:#x} (view {}) at {at_ms} ms",
                        op.op, known.checksum, op.checksum, op.view
                    ));
                }
                Some(_) => {}
                None => {
                    let body = op
                        .body
                        .expect("samples carry the bodies of ops the history lacks");
                    self.ops.insert(
                        op.op,
                        CommittedOp {
                            checksum: op.checksum,
                            slot: op.slot,
                            body,
                            first_seen: (replica, at_ms),
                        },
                    );
                }
            }
        }
    }

    fn violation(&mut self, text: String) {
        if self.violations.len() < 8 {
            self.violations.push(text);
        }
    }

    /// The first op missing from the history below its highest op, if any (a committed op no
    /// replica still holds).
    pub fn first_hole(&self) -> Option<Op> {
        self.ops
            .keys()
            .zip(1..)
            .find(|(op, expected)| **op != *expected)
            .map(|(_, expected)| expected)
    }
}

#[cfg(test)]
mod tests {
    use super::History;
    use crate::disk::{Sample, SampledOp};

    fn sample(ops: &[(u64, u128)]) -> Sample {
        Sample {
            view: 2,
            commit_op: ops.len() as u64,
            last_op: ops.len() as u64,
            ops: ops
                .iter()
                .map(|&(op, checksum)| SampledOp {
                    op,
                    checksum,
                    slot: op,
                    view: 1,
                    body: Some(vec![1]),
                })
                .collect(),
        }
    }

    #[test]
    fn agreeing_replicas_pass_and_a_changed_committed_op_is_caught() {
        let mut history = History::default();
        history.observe(0, 10, sample(&[(1, 11), (2, 22)]));
        history.observe(1, 20, sample(&[(1, 11), (2, 22), (3, 33)]));
        assert!(history.violations.is_empty());
        assert_eq!(history.known_max(), 3);
        assert_eq!(history.first_hole(), None);
        assert_eq!(history.view_max, 2);
        history.observe(2, 30, sample(&[(1, 11), (2, 99)]));
        assert_eq!(history.violations.len(), 1);
        assert!(
            history.violations[0].contains("op 2"),
            "{:?}",
            history.violations
        );
    }

    #[test]
    fn a_hole_is_reported() {
        let mut history = History::default();
        history.observe(0, 10, sample(&[(1, 11)]));
        history.observe(0, 10, sample(&[(3, 33)]));
        assert_eq!(history.first_hole(), Some(2));
    }
}
