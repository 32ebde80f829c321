//! What clients were told: one record per call, with the simulated times it was invoked and
//! answered. The checkers compare these records with the committed history.

use allocdb_core::{Op, OperationId, Request, ResultCode};
use allocdb_vsr::{Query, ReadResult};

/// A call a client made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// A write with its operation id.
    Write(Request),
    /// A query, answered from state at least as new as `min_op`.
    Read {
        /// The query.
        query: Query,
        /// The op the client required.
        min_op: Op,
    },
}

/// What the client was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The write committed with `ok` at `(op, index)`.
    Committed {
        /// The op.
        op: Op,
        /// The position in the op's batch.
        index: u32,
        /// The lease created or touched.
        lease: u128,
        /// The lease's epoch afterwards.
        epoch: u64,
        /// The lease's deadline afterwards.
        deadline_slot: u64,
        /// Whether the answer repeated an earlier execution.
        retry: bool,
    },
    /// The write was refused by the core with `code`; the refusal is committed at `op`.
    Rejected {
        /// Why.
        code: ResultCode,
        /// Where it was decided.
        op: Op,
    },
    /// A read's answer from state at `op`.
    Read {
        /// The state's op.
        op: Op,
        /// The answer.
        result: ReadResult,
    },
    /// The write may or may not have committed.
    Indefinite,
    /// The call provably did not run (unavailable, invalid, closed before sending) or a read
    /// timed out.
    NotExecuted,
}

impl Answer {
    /// Whether the client learned a definite outcome from the cluster.
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            Answer::Committed { .. } | Answer::Rejected { .. } | Answer::Read { .. }
        )
    }
}

/// One call.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// The client's index.
    pub client: u8,
    /// Simulated microseconds at invocation.
    pub invoked_us: u64,
    /// Simulated microseconds at the answer.
    pub answered_us: u64,
    /// The call.
    pub call: CallKind,
    /// The answer.
    pub answer: Answer,
}

impl Record {
    /// The write's operation id, if it is a write.
    pub fn operation_id(&self) -> Option<OperationId> {
        match self.call {
            CallKind::Write(request) => Some(request.operation_id),
            CallKind::Read { .. } => None,
        }
    }

    /// A number summarising the record, for the trace digest.
    pub fn digest(&self) -> u64 {
        let text = format!("{self:?}");
        let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
        for byte in text.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01B3);
        }
        hash
    }
}

/// Mixes `value` into a running trace digest.
pub fn mix(digest: u64, value: u64) -> u64 {
    let mut z = digest ^ value.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
