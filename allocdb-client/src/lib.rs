//! `allocdb-client` is the async Rust client of an AllocDB cluster.
//!
//! A [`Client`] takes the replicas' addresses, finds the primary by itself (following
//! `not_primary` answers and moving on from silent replicas), coalesces concurrent calls into
//! shared frames, bounds how many calls are in flight, and retries every write with the same
//! operation id until the cluster gives a definite answer or the caller's deadline passes. It
//! never guesses an outcome: a write that may or may not have committed is reported as
//! [`ClientError::Indefinite`] with the operation id that learns the truth when retried.
//!
//! Exactly-once: the client registers a session with the cluster and numbers every write the
//! caller gives no operation id; the replicas keep each session's latest answers, so a resend
//! after a timeout or failover is answered, never executed twice. For retries that outlive a
//! process, make an application key with [`Client::new_operation_id`] and pass it in
//! [`CallOptions::operation_id`].
//!
//! Everything a caller needs is re-exported here — the result codes, ids, commands, bundles
//! and the views reads return — so a program depends on `allocdb-client` alone (and on tokio
//! for its runtime):
//!
//! ```toml
//! [dependencies]
//! # The crate is not on crates.io: depend on a checkout by path (or by `git = "<url>"`).
//! allocdb-client = { path = "../allocdb/allocdb-client" }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! Every call has a `_with` variant that takes [`CallOptions`]: the operation id to use (an
//! application key, or the id of an earlier call whose outcome was indefinite) and the call's
//! deadline. `examples/` holds runnable programs (a quickstart, a seat booking service, a GPU
//! pool with a keepalive loop and fencing, an exactly-once retry); `docs/client.md` is the
//! guide.
//!
//! It depends on the shared wire types of `allocdb-core` and `allocdb-protocol` only, never on
//! the replica, the log or the server (CI checks it with `cargo tree`). Its sockets come from [`net`], which switches to turmoil's simulated network under
//! the `simulation` feature.
//!
//! # Quickstart
//!
//! Reserve a seat, renew the lease, release it (`examples/quickstart.rs`; the configuration
//! comes from the environment, see [`ClientOptions::from_env`]):
//!
//! ```no_run
#![doc = include_str!("../examples/quickstart.rs")]
//! ```
//!
//! Errors say what the caller may conclude ([`ClientError::is_definite`]): a refusal by the
//! core ([`ClientError::Rejected`] with a [`ResultCode`]) is definite, and so is a write that
//! provably never ran; a write that may or may not have committed is
//! [`ClientError::Indefinite`], to be retried with the same operation id.

mod client;
mod driver;
mod error;
mod ids;
pub mod net;
mod numbering;
mod options;
mod results;
mod session;
pub mod tls;

pub use client::{Client, ClientStats, slots_for};
pub use error::ClientError;
pub use options::{
    CallOptions, ClientOptions, ENV_ADDRESSES, ENV_CERTS, ENV_CLUSTER, ENV_INSECURE,
    FRAMES_IN_FLIGHT_DEFAULT,
};
pub use results::{Committed, Read};
pub use tls::{ClientRole, Security, TlsCredentials};

// What calls take and return, from the shared core and wire types, so that a program needs
// no other AllocDB crate.
pub use allocdb_core::{
    BUNDLE_SIZE_LIMIT, Bundle, Command, DEADLINE_NONE, HolderId, LeaseId, LeaseState, LeaseView,
    Op, OperationId, OperationKey, PoolId, PoolStats, ResourceId, ResourceState, ResourceView,
    ResultCode, SessionId, Slot,
};
pub use allocdb_protocol::{Query, ReadResult};
