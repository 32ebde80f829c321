//! Identifiers and logical-time units shared by every layer.

/// A resource that can be allocated: a seat, a ticket, an inventory unit, a GPU slot.
pub type ResourceId = u128;
/// A pool groups resources so that `reserve_any` can pick free members of it.
pub type PoolId = u128;
/// The party that holds a lease. Opaque to AllocDB.
pub type HolderId = u128;
/// A client-chosen idempotency key carried by every client write.
pub type OperationId = u128;
/// Logical time, stamped on each batch by the primary. Never goes backwards.
pub type Slot = u64;
/// A position in the replicated log.
pub type Op = u64;

/// A lease id is derived from the log position of the command that created it:
/// `op << 32 | index_in_batch`. Ids are therefore unique and strictly increasing in commit
/// order, so a lease id doubles as a *fencing token*: a downstream system that remembers the
/// highest lease id it has accepted for a resource can reject writes from older holders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeaseId(pub u128);

impl LeaseId {
    /// The id of the lease created by the command at `index` of the batch committed at `op`.
    pub fn from_position(op: Op, index: u32) -> LeaseId {
        assert!(op > 0, "op 0 is never a committed position");
        LeaseId((u128::from(op) << 32) | u128::from(index))
    }

    /// The op at which the lease was created.
    pub fn op(self) -> Op {
        // Truncation is exact: `from_position` put a u64 in the high bits.
        #[allow(clippy::cast_possible_truncation)]
        let op = (self.0 >> 32) as u64;
        op
    }

    /// The index of the creating command inside its batch.
    pub fn index(self) -> u32 {
        #[allow(clippy::cast_possible_truncation)]
        let index = self.0 as u32;
        index
    }
}
