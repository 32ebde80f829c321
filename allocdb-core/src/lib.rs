//! `allocdb-core` is AllocDB's allocator: a deterministic, bounded state machine over
//! resources, pools and leases. It is the same in a single replica and in a cluster;
//! replication only decides the order of batches.
//!
//! It must never read a clock, a random source or hashed-container iteration order, never
//! perform I/O, and never allocate after construction: every table is sized from [`Config`]
//! once, and a full table is a [`ResultCode`], not growth.

pub mod command;
pub mod config;
pub mod ids;
pub mod result_code;
pub mod wire;

pub use command::{BUNDLE_SIZE_LIMIT, Bundle, Command, DEADLINE_NONE, Outcome, Request};
pub use config::{Config, ConfigError};
pub use ids::{HolderId, LeaseId, Op, OperationId, PoolId, ResourceId, Slot};
pub use result_code::ResultCode;
pub use wire::{DecodeError, Reader, Writer};
