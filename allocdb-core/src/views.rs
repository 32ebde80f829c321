//! What queries return: plain copies of one resource, lease or pool, detached from the tables.

use crate::command::Bundle;
use crate::ids::{HolderId, LeaseId, PoolId, ResourceId, Slot};

/// The state of a resource. A resource is `Available` exactly when no live lease holds it;
/// otherwise its state is its lease's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum ResourceState {
    /// Free: no live lease holds it.
    #[default]
    Available = 0,
    /// Held by a reserved lease.
    Reserved = 1,
    /// Held by an active lease.
    Active = 2,
    /// Held by a lease being revoked: the holder is fenced off, but nobody else gets it until
    /// `reclaim` (or expiry).
    Revoking = 3,
}

/// The state of a lease. The first three are *live* (they hold resources); the last three
/// are *terminal* (the resources were freed; the lease stays queryable until it retires).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum LeaseState {
    /// Created by `reserve` or `reserve_any`; expires at its deadline unless renewed.
    #[default]
    Reserved = 0,
    /// Confirmed by `activate`; held until its deadline, if it has one.
    Active = 1,
    /// Taken away by `revoke`; waiting for `reclaim` (or its deadline).
    Revoking = 2,
    /// Given back by the holder.
    Released = 3,
    /// Its deadline passed.
    Expired = 4,
    /// Reclaimed after a revocation.
    Revoked = 5,
}

impl LeaseState {
    /// Whether the lease still holds its resources.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            LeaseState::Reserved | LeaseState::Active | LeaseState::Revoking
        )
    }

    /// The state from its numeric value; `None` for a value no state uses.
    pub fn from_u8(value: u8) -> Option<LeaseState> {
        [
            LeaseState::Reserved,
            LeaseState::Active,
            LeaseState::Revoking,
            LeaseState::Released,
            LeaseState::Expired,
            LeaseState::Revoked,
        ]
        .get(usize::from(value))
        .copied()
    }

    /// The state its resources are in while it is live; `None` when terminal.
    pub fn resource_state(self) -> Option<ResourceState> {
        match self {
            LeaseState::Reserved => Some(ResourceState::Reserved),
            LeaseState::Active => Some(ResourceState::Active),
            LeaseState::Revoking => Some(ResourceState::Revoking),
            LeaseState::Released | LeaseState::Expired | LeaseState::Revoked => None,
        }
    }
}

/// One resource, as a `get_resource` query returns it (`Allocator::get_resource` in the core,
/// `Client::get_resource` in `allocdb-client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceView {
    /// Its id.
    pub id: ResourceId,
    /// The pool it belongs to, if any.
    pub pool: Option<PoolId>,
    /// Its state.
    pub state: ResourceState,
    /// The live lease holding it; `None` when available.
    pub lease: Option<LeaseId>,
    /// Starts at 1 and grows by one on every change of state or holder.
    pub version: u64,
}

/// One lease, as a `get_lease` query returns it (`Allocator::get_lease` in the core,
/// `Client::get_lease` in `allocdb-client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// Its id: also its fencing token.
    pub id: LeaseId,
    /// Who holds it.
    pub holder: HolderId,
    /// Its state.
    pub state: LeaseState,
    /// Starts at 1; `release`, `revoke` and `expire` add one.
    pub epoch: u64,
    /// Its resources, in the order reserved.
    pub resources: Bundle,
    /// Live: the deadline, or `DEADLINE_NONE`. Terminal: 0.
    pub deadline_slot: Slot,
    /// Live: 0. Terminal: the slot from which it is retired (`lease_retired`).
    pub retire_slot: Slot,
}

/// A pool's size and availability, as a `pool_stats` query returns it (`Allocator::pool_stats`
/// in the core, `Client::pool_stats` in `allocdb-client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Its id.
    pub pool: PoolId,
    /// Members ever created in it.
    pub total: u32,
    /// Members currently available.
    pub free: u32,
}

/// Rows in use per table, for monitoring (compare with the `Config` capacities).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableUsage {
    /// Resources created.
    pub resources: u32,
    /// Pools created.
    pub pools: u32,
    /// Live leases (reserved, active, revoking): what `leases_max` bounds.
    pub leases: u32,
    /// Terminal leases kept in the history (best-effort: dropped oldest-first when a reserve
    /// needs their rows). `leases + lease_history <= leases_max`.
    pub lease_history: u32,
    /// Lease-member rows held by live leases.
    pub lease_members: u32,
    /// Lease-member rows held by the terminal leases in the history.
    pub lease_history_members: u32,
    /// Application-key records kept (best-effort: the oldest retires when the table is full).
    pub operations: u32,
    /// Client sessions kept (at most `clients_max`; registering one more evicts the least
    /// recently used).
    pub sessions: u32,
}
