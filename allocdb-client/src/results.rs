//! What successful calls return.

use allocdb_core::{LeaseId, Op, OperationId, Slot};

/// A write that committed with result `ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The op at which it committed: pass it as `min_op` to read your own write anywhere.
    pub op: Op,
    /// Its position inside that op's batch: `(op, index)` orders every write in the log.
    pub index: u32,
    /// The operation id it carried.
    pub operation_id: OperationId,
    /// The lease created or touched (zero for `create_resource`).
    pub lease: LeaseId,
    /// The lease's epoch afterwards: present it to `activate`, `renew` and `release`.
    pub epoch: u64,
    /// The lease's deadline slot afterwards (`u64::MAX`: none; 0: not applicable).
    pub deadline_slot: Slot,
    /// True when the cluster had already executed this operation id and returned the stored
    /// outcome (a retry after a lost reply or a failover).
    pub retry: bool,
}

/// A query's answer and the op of the state it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read<T> {
    /// The applied op the answer reflects (at least the `min_op` asked for).
    pub op: Op,
    /// The cluster's slot when the primary answered (its clock, the one that expires
    /// leases): a lease has `deadline_slot - slot` slots left, if the difference is positive.
    pub slot: Slot,
    /// The answer.
    pub value: T,
}
