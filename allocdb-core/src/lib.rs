//! `allocdb-core` is AllocDB's allocator: a deterministic, bounded state machine over
//! resources, pools and leases. It is the same in a single replica and in a cluster;
//! replication only decides the order of batches.
//!
//! It must never read a clock, a random source or hashed-container iteration order, never
//! perform I/O, and never allocate after construction: every table is sized from [`Config`]
//! once, and a full table is a [`ResultCode`], not growth.

mod allocator;
pub mod codec;
pub mod command;
mod commands;
pub mod config;
mod digest;
mod expiry_index;
mod fifo;
mod fingerprint;
mod hash;
mod id_map;
pub mod ids;
mod invariants;
mod lease_table;
mod member_table;
mod operation_table;
mod pool_table;
mod resource_table;
pub mod result_code;
mod session_table;
pub mod snapshot;
pub mod views;
pub mod wire;

pub use codec::{
    OUTCOME_ENCODED_BYTES, REQUEST_ENCODED_BYTES_MAX, RequestOrigin, decode_batch, decode_outcome,
    decode_outcomes, decode_request, decode_request_into, encode_batch, encode_outcome,
    encode_outcomes, encode_request,
};
pub use command::{BUNDLE_SIZE_LIMIT, Bundle, Command, DEADLINE_NONE, Outcome, Request};
pub use config::{Config, ConfigError};
pub use ids::{
    HolderId, LeaseId, Op, OperationId, OperationKey, PoolId, ResourceId, SessionId, Slot, View,
    session_id_at,
};
pub use result_code::ResultCode;
pub use wire::{DecodeError, Reader, Writer};

pub use allocator::Allocator;
pub use invariants::InvariantViolation;
pub use snapshot::{SNAPSHOT_MAGIC, SNAPSHOT_VERSION, SnapshotError};
pub use views::{LeaseState, LeaseView, PoolStats, ResourceState, ResourceView, TableUsage};
