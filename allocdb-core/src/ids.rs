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
/// A view number of the replication protocol. Defined here, beside [`Op`], because the log,
/// the replica and the client protocol all carry it and the core is the one crate they share.
pub type View = u64;

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

/// A client session: registered by a committed `register_session`, named by the position of
/// that command (`op << 16 | index`), so ids are unique and increase in commit order.
pub type SessionId = u64;

/// The id of the session registered by the command at `index` of the batch committed at `op`.
/// Batches hold fewer than 2^16 requests (`BATCH_REQUESTS_LIMIT`); an op beyond 2^48 — more
/// than eight thousand years of batches at a million per second — is refused by an assertion.
pub fn session_id_at(op: Op, index: u32) -> SessionId {
    assert!(op > 0 && op < 1 << 48, "op {op} cannot name a session");
    assert!(index < 1 << 16, "batch index {index} cannot name a session");
    (op << 16) | u64::from(index)
}

/// Bit 127 of an operation id: set for a session key, clear for an application key.
const SESSION_KEY_BIT: u128 = 1 << 127;
/// The largest request number (and application nonce) an operation id can carry.
pub const REQUEST_NUMBER_MAX: u64 = (1 << 63) - 1;

/// What an [`OperationId`] names. The layout is fixed by the wire and log formats:
///
/// * `0` — an internal command (`expire`), or `register_session`, which needs no key;
/// * bit 127 set — a **session key**: the session id in bits 63..127 and the request number
///   (1 or more) in bits 0..63. The library numbers every write of a session; the replicas
///   keep the answers of each session's latest `session_requests_max` numbers;
/// * bit 127 clear — an **application key**: the op the client had seen committed when it made
///   the key (`issued_after_op`) in bits 64..127 and a nonce, unique per client, in bits
///   0..64. Keys retire oldest first; once a key's record is gone, a key issued no later than
///   the newest retired record is recognisable as too old and refused, never run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKey {
    /// Operation id 0.
    None,
    /// A write numbered within a client session.
    Session {
        /// The session.
        session: SessionId,
        /// The write's number within it (1 or more).
        request: u64,
    },
    /// A key the application chose (and may store to retry from another process).
    Application {
        /// An op the client knew was committed before it first submitted the write.
        issued_after_op: Op,
        /// Distinguishes keys issued after the same op.
        nonce: u64,
    },
}

impl OperationKey {
    /// Reads the layout of `id`.
    pub fn of(id: OperationId) -> OperationKey {
        // Each cast below keeps exactly the bits the layout assigns to the field.
        #[allow(clippy::cast_possible_truncation)]
        if id == 0 {
            OperationKey::None
        } else if id & SESSION_KEY_BIT != 0 {
            OperationKey::Session {
                session: (id >> 63) as u64,
                request: (id as u64) & REQUEST_NUMBER_MAX,
            }
        } else {
            OperationKey::Application {
                issued_after_op: (id >> 64) as u64,
                nonce: id as u64,
            }
        }
    }

    /// The operation id with this layout.
    pub fn id(self) -> OperationId {
        match self {
            OperationKey::None => 0,
            OperationKey::Session { session, request } => {
                assert!(request <= REQUEST_NUMBER_MAX, "request number {request}");
                SESSION_KEY_BIT | (u128::from(session) << 63) | u128::from(request)
            }
            OperationKey::Application {
                issued_after_op,
                nonce,
            } => {
                assert!(
                    u128::from(issued_after_op) << 64 < SESSION_KEY_BIT,
                    "op {issued_after_op} does not fit an application key"
                );
                (u128::from(issued_after_op) << 64) | u128::from(nonce)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OperationKey, REQUEST_NUMBER_MAX, session_id_at};

    #[test]
    fn keys_round_trip_through_their_layout() {
        let keys = [
            OperationKey::None,
            OperationKey::Session {
                session: session_id_at(1, 0),
                request: 1,
            },
            OperationKey::Session {
                session: u64::MAX,
                request: REQUEST_NUMBER_MAX,
            },
            OperationKey::Application {
                issued_after_op: 0,
                nonce: 42,
            },
            OperationKey::Application {
                issued_after_op: (1 << 63) - 1,
                nonce: u64::MAX,
            },
        ];
        for key in keys {
            assert_eq!(OperationKey::of(key.id()), key);
        }
        // Small ids, as tests and older clients use them, are application keys issued at op 0.
        assert_eq!(
            OperationKey::of(7),
            OperationKey::Application {
                issued_after_op: 0,
                nonce: 7
            }
        );
        assert_eq!(session_id_at(3, 5), (3 << 16) | 5);
    }
}
