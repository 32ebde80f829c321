//! Commands, requests and their outcomes: the vocabulary every layer above the core speaks.

use crate::ids::{HolderId, LeaseId, OperationId, PoolId, ResourceId, Slot};
use crate::result_code::ResultCode;

/// The compile-time ceiling on a bundle's size. `Config::bundle_size_max` may be set lower but
/// never higher, so a bundle fits inline in a command and decoding never allocates per command.
pub const BUNDLE_SIZE_LIMIT: usize = 16;

/// The resources of a bundle: up to [`BUNDLE_SIZE_LIMIT`] ids stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bundle {
    len: u8,
    ids: [ResourceId; BUNDLE_SIZE_LIMIT],
}

impl Bundle {
    /// An empty bundle.
    pub const EMPTY: Bundle = Bundle {
        len: 0,
        ids: [0; BUNDLE_SIZE_LIMIT],
    };

    /// Builds a bundle from `ids`; `None` if there are more than [`BUNDLE_SIZE_LIMIT`].
    /// Duplicates and emptiness are *not* rejected here: those are result codes of `reserve`.
    pub fn from_slice(ids: &[ResourceId]) -> Option<Bundle> {
        if ids.len() > BUNDLE_SIZE_LIMIT {
            return None;
        }
        let mut bundle = Bundle::EMPTY;
        bundle.ids[..ids.len()].copy_from_slice(ids);
        bundle.len = u8::try_from(ids.len()).expect("BUNDLE_SIZE_LIMIT fits in u8");
        Some(bundle)
    }

    /// Appends one id. Panics if the bundle is full: callers check `len()` against the limit.
    pub fn push(&mut self, id: ResourceId) {
        assert!(usize::from(self.len) < BUNDLE_SIZE_LIMIT, "bundle is full");
        self.ids[usize::from(self.len)] = id;
        self.len += 1;
    }

    /// The ids, in the order given.
    pub fn as_slice(&self) -> &[ResourceId] {
        &self.ids[..usize::from(self.len)]
    }

    /// The number of ids.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the bundle holds no id.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Bundle::EMPTY
    }
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// A state transition. TTLs are in slots; the slot length is fixed when a cluster is formatted.
// The bundle is stored inline on purpose: decoding a batch must not allocate per command, and
// a batch of requests is one contiguous, pre-sized buffer.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Creates a resource, optionally as a member of a pool (the pool is created on first use).
    CreateResource {
        /// The new resource's id.
        resource: ResourceId,
        /// The pool it joins, if any.
        pool: Option<PoolId>,
    },
    /// Reserves every resource of the bundle for `holder`, all or nothing.
    Reserve {
        /// The resources, no duplicates.
        resources: Bundle,
        /// Who holds the new lease.
        holder: HolderId,
        /// How long the reservation lives unless renewed or activated.
        ttl_slots: u64,
    },
    /// Reserves `count` free members of `pool`, chosen deterministically.
    ReserveAny {
        /// The pool to draw from.
        pool: PoolId,
        /// How many members to reserve.
        count: u32,
        /// Who holds the new lease.
        holder: HolderId,
        /// How long the reservation lives unless renewed or activated.
        ttl_slots: u64,
    },
    /// Confirms a reservation. `ttl_slots: None` means held until released or revoked.
    Activate {
        /// The lease to activate.
        lease: LeaseId,
        /// Must match the lease's holder.
        holder: HolderId,
        /// Must match the lease's current epoch.
        epoch: u64,
        /// The new lifetime, or `None` for no deadline.
        ttl_slots: Option<u64>,
    },
    /// Extends a reserved or active lease to `slot + ttl_slots`.
    Renew {
        /// The lease to renew.
        lease: LeaseId,
        /// Must match the lease's holder.
        holder: HolderId,
        /// Must match the lease's current epoch.
        epoch: u64,
        /// The new lifetime.
        ttl_slots: u64,
    },
    /// The holder gives the resources back.
    Release {
        /// The lease to release.
        lease: LeaseId,
        /// Must match the lease's holder.
        holder: HolderId,
        /// Must match the lease's current epoch.
        epoch: u64,
    },
    /// An operator takes a lease away: the holder is fenced off (epoch bump) but the resources
    /// stay unavailable until `reclaim`, so nobody else gets them while the old holder may
    /// still be using them.
    Revoke {
        /// The lease to revoke.
        lease: LeaseId,
    },
    /// Finishes a revocation and frees the resources.
    Reclaim {
        /// The revoked lease.
        lease: LeaseId,
    },
    /// Opens a client session: the answer's position (`op`, `index`) names it
    /// (`ids::session_id_at`). Carries operation id 0: a lost answer leaves an unused session,
    /// which the least-recently-used eviction reclaims. When `clients_max` sessions exist, the
    /// least recently used one is evicted by this command.
    RegisterSession {
        /// The client's random id, kept with the session for operators (never looked up).
        client: u128,
    },
    /// Internal: the lease's deadline has passed. Only produced by
    /// `Core::due_expirations`, never accepted from a client.
    Expire {
        /// The lease that is due.
        lease: LeaseId,
        /// The deadline the primary saw; a lease renewed since then is left alone.
        deadline_slot: Slot,
    },
}

impl Command {
    /// Whether this command is internal (may only appear in batches built by the primary).
    pub fn is_internal(&self) -> bool {
        matches!(self, Command::Expire { .. })
    }
}

/// One command with its idempotency key. Client writes carry a non-zero `operation_id` (see
/// [`crate::ids::OperationKey`] for its layout); internal commands and `register_session`
/// carry 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The idempotency key: a retry with the same id returns the original outcome.
    pub operation_id: OperationId,
    /// What to do.
    pub command: Command,
}

impl Request {
    /// A placeholder to decode into ([`crate::codec::decode_request_into`]): a `reserve` of
    /// an empty bundle with every field zero, so a decoded `reserve` fills it in place.
    pub const BLANK: Request = Request {
        operation_id: 0,
        command: Command::Reserve {
            resources: Bundle::EMPTY,
            holder: 0,
            ttl_slots: 0,
        },
    };
}

/// The fixed-size outcome of one command. Fixed size so the dedupe table can store it and
/// return it unchanged to a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// What happened.
    pub code: ResultCode,
    /// True when this is the stored outcome of an earlier execution (a retry).
    pub retry: bool,
    /// The lease created or touched (zero when none).
    pub lease: LeaseId,
    /// The lease's epoch after the command (zero when none).
    pub epoch: u64,
    /// The lease's deadline after the command; `u64::MAX` means no deadline, 0 means none.
    pub deadline_slot: Slot,
}

impl Outcome {
    /// An outcome carrying only a code.
    pub fn code(code: ResultCode) -> Outcome {
        Outcome {
            code,
            retry: false,
            lease: LeaseId(0),
            epoch: 0,
            deadline_slot: 0,
        }
    }
}

/// A deadline value meaning "held until released or revoked".
pub const DEADLINE_NONE: Slot = u64::MAX;
