//! `allocdb-protocol` is AllocDB's wire format: the frame envelope every byte on a TCP
//! connection travels in, the handshake, status and error bodies, and the codec of client
//! requests and replies.
//!
//! It exists so that a client (the Rust client, the Python bindings, tools) reaches the wire
//! types without compiling the replica and the log: it depends on `allocdb-core` alone (for
//! commands, outcomes and the byte reader/writer) and never on `allocdb-wal` or
//! `allocdb-vsr`. It only moves bytes: no I/O, no clocks, no randomness, so the server, the
//! client and the simulator share it unchanged. `allocdb-vsr` re-exports it (`frame`, and the
//! client types from its `message` module), so both paths name the same items.
//!
//! ```
//! use allocdb_protocol::frame::{self, FrameKind, FrameLimits};
//!
//! let mut bytes = Vec::new();
//! frame::write_frame(&mut bytes, FrameKind::StatusRequest, 0, |_| {});
//! let decoded = frame::decode_frame(&bytes, &FrameLimits::client(0)).unwrap().unwrap();
//! assert_eq!(decoded.header.kind, FrameKind::StatusRequest);
//! ```

pub mod client;
pub mod frame;

pub use client::{ClientId, ClientOperation, ClientRequest, Query, ReadResult, Reply, ReplyBody};

/// The largest cluster: replica indices, acknowledgement sets and a handshake's address list
/// are sized from it, and a client refuses a longer address list.
pub const REPLICAS_MAX: u8 = 5;
