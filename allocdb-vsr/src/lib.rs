//! `allocdb-vsr` replicates AllocDB's allocator with Viewstamped Replication (Liskov &
//! Cowling, "VR Revisited", 2012), shaped like `TigerBeetle`'s replica.
//!
//! A [`Replica`] is a deterministic, sans-I/O state machine: messages, client requests and
//! ticks go in; messages and replies come out through an [`Outbox`]; storage calls go through
//! the [`allocdb_wal::Wal`] synchronously, except the log's group commit. A primary sends
//! each prepare before syncing it: after handing a round's messages to the network, the driver
//! calls [`Replica::sync_log`], or begins the sync ([`Replica::sync_log_begin`]), runs it on a
//! thread of its own and hands the outcome back ([`Replica::sync_log_end`]) while the replica
//! goes on. The replica never reads a clock, spawns a thread, opens a socket or draws
//! randomness except from the seed in its [`ReplicaConfig`]. Replication
//! orders batches; it never changes what a command means: the unchanged `allocdb-core`
//! applies them. See `docs/replication.md` for the protocol, its invariants and failover.
//!
//! ```
//! use allocdb_core::{Command, Request};
//! use allocdb_vsr::{ClientOperation, ClientRequest, Outbox, Replica, ReplicaConfig, ReplyBody};
//! use allocdb_wal::{SimConfig, SimStorage};
//!
//! // A single replica commits as soon as its own log is durable.
//! let mut replica = Replica::format(SimStorage::new(SimConfig::new(1)), ReplicaConfig::new(7, 0, 1)).unwrap();
//! let mut out = Outbox::new(64, 64);
//! let create = Request { operation_id: 1, command: Command::CreateResource { resource: 5, pool: None } };
//! replica.on_request(ClientRequest { client_id: 9, request_id: 1, operation: ClientOperation::Write(create) }, &mut out);
//! // Prepared and (with peers) sent, not yet synced: no answer yet.
//! assert!(replica.log_unsynced() && out.replies.is_empty());
//! replica.sync_log(&mut out);
//! assert!(matches!(out.replies[0].body, ReplyBody::Committed { op: 1, .. }));
//! ```

mod clock;
pub mod config;
mod digests;
mod journal;
pub mod message;
pub mod message_codec;
mod outbox;
pub mod peer_check;
pub mod quorum;
mod recovery_probe;
mod replica;
mod replica_backup;
mod replica_checkpoint;
mod replica_primary;
mod replica_recovery;
mod replica_view_change;
pub mod view_change;

/// The wire format, defined in `allocdb-protocol` and re-exported so `allocdb_vsr::frame::...`
/// paths keep naming the same items.
pub use allocdb_protocol::frame;
pub use clock::PrimaryClock;
pub use config::{ConfigError, REPLICAS_MAX, ReplicaConfig};
pub use message::{
    ClientId, ClientOperation, ClientRequest, Entry, Message, Query, ReadResult, Reply, ReplyBody,
};
pub use message_codec::{MessageLimits, decode_message, encode_message, peer_body_bytes_max};
pub use outbox::{Envelope, Outbox};
pub use replica::{AppliedOp, Replica, ReplicaError, Status};
