//! The small fixed bodies: handshakes, hello/welcome, status and error frames.
//!
//! Each body type has `encode(&self, out)` and `decode(body) -> Result<Self, FrameError>`;
//! decoding consumes exactly the body (trailing bytes are malformed).

use allocdb_core::{DecodeError, Reader, Writer};

use super::{ErrorCode, FrameError};

/// The longest message an error frame carries, in bytes; longer ones are cut.
pub const ERROR_MESSAGE_BYTES_MAX: u16 = 1024;

/// Runs `decode` over the whole of `body`, naming `what` in the error.
fn decode_whole<'a, T>(
    body: &'a [u8],
    what: &str,
    decode: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<T, FrameError> {
    let mut reader = Reader::new(body);
    let value = decode(&mut reader).map_err(|error| FrameError::malformed(what, &error))?;
    reader
        .finish()
        .map_err(|error| FrameError::malformed(what, &error))?;
    Ok(value)
}

/// The most configuration values a [`PeerHandshake`] carries.
pub const HANDSHAKE_CONFIG_VALUES_MAX: u8 = 64;
/// The most addresses a [`PeerHandshake`] carries (one per replica).
pub const HANDSHAKE_ADDRESSES_MAX: u8 = crate::REPLICAS_MAX;
/// The longest address a [`PeerHandshake`] carries, in bytes (a 253-byte DNS name and a port
/// fit).
pub const HANDSHAKE_ADDRESS_BYTES_MAX: u16 = 512;
/// The longest configuration-mismatch text a [`StatusReply`] carries, in bytes.
pub const STATUS_MISMATCH_BYTES_MAX: u16 = 1024;

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on a character
/// boundary.
pub fn cut_utf8(text: &str, bytes_max: usize) -> &str {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads a `u16` length, at most `max`, then that many bytes of UTF-8.
fn decode_text<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    max: u16,
) -> Result<&'a str, DecodeError> {
    let len = r.u16(what)?;
    if len > max {
        return Err(DecodeError::TooLarge {
            what,
            value: u64::from(len),
            max: u64::from(max),
        });
    }
    let offset = r.offset();
    let bytes = r.take(what, usize::from(len))?;
    std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid {
        what,
        offset,
        value: u64::from(len),
    })
}

/// Replica ⇄ replica: the first frame of a link, from the dialer, answered by the acceptor.
///
/// Besides who the sender is, it carries the sender's cluster-wide configuration (`config`,
/// values in an order both ends' builds define, see `allocdb_server::fingerprint`) and the
/// address list it was started with, so a receiver can refuse a differently configured
/// replica and say exactly which values differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHandshake {
    /// The sender's replica index.
    pub replica_index: u8,
    /// The sender's cluster size (must equal the receiver's).
    pub replica_count: u8,
    /// The sender's configuration values (at most [`HANDSHAKE_CONFIG_VALUES_MAX`]).
    pub config: Vec<u64>,
    /// The sender's address list, by replica index (at most [`HANDSHAKE_ADDRESSES_MAX`],
    /// each at most [`HANDSHAKE_ADDRESS_BYTES_MAX`] bytes).
    pub addresses: Vec<String>,
}

impl PeerHandshake {
    /// Appends the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let config_count = u8::try_from(self.config.len()).expect("config values fit a u8");
        let address_count = u8::try_from(self.addresses.len()).expect("addresses fit a u8");
        assert!(config_count <= HANDSHAKE_CONFIG_VALUES_MAX);
        assert!(address_count <= HANDSHAKE_ADDRESSES_MAX);
        let mut writer = Writer::new(out);
        writer.u8(self.replica_index);
        writer.u8(self.replica_count);
        writer.u8(config_count);
        for value in &self.config {
            writer.u64(*value);
        }
        writer.u8(address_count);
        for address in &self.addresses {
            let len = u16::try_from(address.len()).expect("address length fits a u16");
            assert!(
                len <= HANDSHAKE_ADDRESS_BYTES_MAX,
                "address checked at start-up"
            );
            writer.u16(len);
            writer.bytes(address.as_bytes());
        }
    }

    /// Reads a body.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] for a wrong length, a count or an address over its limit, or
    /// an address that is not UTF-8.
    pub fn decode(body: &[u8]) -> Result<PeerHandshake, FrameError> {
        decode_whole(body, "peer handshake", |r| {
            let replica_index = r.u8("replica_index")?;
            let replica_count = r.u8("replica_count")?;
            let config_count = r.u8("config value count")?;
            if config_count > HANDSHAKE_CONFIG_VALUES_MAX {
                return Err(DecodeError::TooLarge {
                    what: "config value count",
                    value: u64::from(config_count),
                    max: u64::from(HANDSHAKE_CONFIG_VALUES_MAX),
                });
            }
            let mut config = Vec::with_capacity(usize::from(config_count));
            for _ in 0..config_count {
                config.push(r.u64("config value")?);
            }
            let address_count = r.u8("address count")?;
            if address_count > HANDSHAKE_ADDRESSES_MAX {
                return Err(DecodeError::TooLarge {
                    what: "address count",
                    value: u64::from(address_count),
                    max: u64::from(HANDSHAKE_ADDRESSES_MAX),
                });
            }
            let mut addresses = Vec::with_capacity(usize::from(address_count));
            for _ in 0..address_count {
                let address = decode_text(r, "address", HANDSHAKE_ADDRESS_BYTES_MAX)?;
                addresses.push(address.to_string());
            }
            Ok(PeerHandshake {
                replica_index,
                replica_count,
                config,
                addresses,
            })
        })
    }

    /// Checks that this handshake can come from a peer of `me` (index `my_index` of
    /// `my_count`), returning the peer's index.
    ///
    /// # Errors
    /// [`FrameError::WrongReplica`] when the sizes differ, the index is out of range, or the
    /// peer claims to be the receiver itself.
    pub fn check_peer(&self, my_index: u8, my_count: u8) -> Result<u8, FrameError> {
        let reason = if self.replica_count != my_count {
            format!(
                "peer is in a cluster of {} replicas, this one has {my_count}",
                self.replica_count
            )
        } else if self.replica_index >= my_count {
            format!(
                "peer index {} is not below the replica count {my_count}",
                self.replica_index
            )
        } else if self.replica_index == my_index {
            format!("peer claims to be replica {my_index}, which is this replica")
        } else {
            return Ok(self.replica_index);
        };
        Err(FrameError::WrongReplica { reason })
    }
}

/// Client → replica: the first frame of a client session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// A random id the client chose, for logs only (routing is by connection).
    pub client_id: u128,
}

impl ClientHello {
    /// Appends the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        Writer::new(out).u128(self.client_id);
    }

    /// Reads a body.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] for a wrong length.
    pub fn decode(body: &[u8]) -> Result<ClientHello, FrameError> {
        decode_whole(body, "client hello", |r| {
            Ok(ClientHello {
                client_id: r.u128("client_id")?,
            })
        })
    }
}

/// A replica's role, as reported to clients and operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Primary of its view, in normal status.
    Primary = 1,
    /// Backup following the primary of its view.
    Backup = 2,
    /// Between views.
    ViewChange = 3,
    /// Catching up before it may vote again: its log was damaged, or its data directory is
    /// fresh (newly formatted, or a new cluster waiting for every replica).
    Recovering = 4,
    /// Stopped on a storage error; it will be restarted.
    Halted = 5,
}

impl Role {
    /// Every role, in value order.
    pub const ALL: [Role; 5] = [
        Role::Primary,
        Role::Backup,
        Role::ViewChange,
        Role::Recovering,
        Role::Halted,
    ];

    /// The role with this value.
    pub fn from_u8(value: u8) -> Option<Role> {
        Role::ALL.into_iter().find(|role| *role as u8 == value)
    }

    /// The role's name (`primary`, `backup`, `view_change`, `recovering`, `halted`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::ViewChange => "view_change",
            Role::Recovering => "recovering",
            Role::Halted => "halted",
        }
    }

    /// Whether the replica serves in normal status (as primary or backup).
    pub fn is_normal(self) -> bool {
        matches!(self, Role::Primary | Role::Backup)
    }
}

fn decode_role(r: &mut Reader) -> Result<Role, DecodeError> {
    let offset = r.offset();
    let value = r.u8("role")?;
    Role::from_u8(value).ok_or(DecodeError::Invalid {
        what: "role",
        offset,
        value: u64::from(value),
    })
}

/// Replica → client: the answer to a [`ClientHello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The answering replica.
    pub replica_index: u8,
    /// The cluster's size.
    pub replica_count: u8,
    /// Its role now.
    pub role: Role,
    /// Its view.
    pub view: u64,
    /// The primary of that view (an index into the address list).
    pub primary_index: u8,
    /// The cluster's slot length: TTLs are counted in slots of this many milliseconds.
    pub slot_ms: u64,
    /// The most requests one `ClientRequests` frame may carry.
    pub requests_per_frame_max: u32,
    /// Client sessions the cluster keeps at once: registering one more evicts the least
    /// recently used (its client is then answered `session_evicted`).
    pub clients_max: u32,
    /// Answers each session keeps: a client never has more numbered writes unanswered.
    pub session_requests_max: u32,
    /// Application keys remembered at once (the operation table's rows).
    pub operations_max: u32,
    /// How long an application key is remembered, in slots, unless the table fills first.
    pub dedupe_window_slots: u64,
    /// The longest TTL a command may ask for, in slots (longer ones are refused
    /// `ttl_out_of_range`); fixed when the cluster was formatted.
    pub ttl_slots_max: u64,
}

impl Welcome {
    /// Appends the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut writer = Writer::new(out);
        writer.u8(self.replica_index);
        writer.u8(self.replica_count);
        writer.u8(self.role as u8);
        writer.u64(self.view);
        writer.u8(self.primary_index);
        writer.u64(self.slot_ms);
        writer.u32(self.requests_per_frame_max);
        writer.u32(self.clients_max);
        writer.u32(self.session_requests_max);
        writer.u32(self.operations_max);
        writer.u64(self.dedupe_window_slots);
        writer.u64(self.ttl_slots_max);
    }

    /// Reads a body.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] for a wrong length or an unknown role.
    pub fn decode(body: &[u8]) -> Result<Welcome, FrameError> {
        decode_whole(body, "welcome", |r| {
            Ok(Welcome {
                replica_index: r.u8("replica_index")?,
                replica_count: r.u8("replica_count")?,
                role: decode_role(r)?,
                view: r.u64("view")?,
                primary_index: r.u8("primary_index")?,
                slot_ms: r.u64("slot_ms")?,
                requests_per_frame_max: r.u32("requests_per_frame_max")?,
                clients_max: r.u32("clients_max")?,
                session_requests_max: r.u32("session_requests_max")?,
                operations_max: r.u32("operations_max")?,
                dedupe_window_slots: r.u64("dedupe_window_slots")?,
                ttl_slots_max: r.u64("ttl_slots_max")?,
            })
        })
    }
}

/// Replica → asker: where the replica stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReply {
    /// The answering replica.
    pub replica_index: u8,
    /// The cluster's size.
    pub replica_count: u8,
    /// Its role.
    pub role: Role,
    /// Its view.
    pub view: u64,
    /// The last op in its log.
    pub op: u64,
    /// The highest op it knows committed (`commit_max`).
    pub commit: u64,
    /// The highest op it has applied to its state machine (`commit_min`, at most `commit`
    /// and `op`): the replica has caught up when this reaches the cluster's commit.
    pub applied: u64,
    /// Why peer links are refused for a configuration mismatch right now (every mismatched
    /// peer, naming both sides' values; at most [`STATUS_MISMATCH_BYTES_MAX`] bytes); empty
    /// when there is none.
    pub config_mismatch: String,
}

impl StatusReply {
    /// Appends the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut writer = Writer::new(out);
        writer.u8(self.replica_index);
        writer.u8(self.replica_count);
        writer.u8(self.role as u8);
        writer.u64(self.view);
        writer.u64(self.op);
        writer.u64(self.commit);
        writer.u64(self.applied);
        let mismatch = cut_utf8(
            &self.config_mismatch,
            usize::from(STATUS_MISMATCH_BYTES_MAX),
        );
        writer.u16(u16::try_from(mismatch.len()).expect("cut to STATUS_MISMATCH_BYTES_MAX"));
        writer.bytes(mismatch.as_bytes());
    }

    /// Reads a body.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] for a wrong length, an unknown role, or a mismatch text over
    /// its limit or not UTF-8.
    pub fn decode(body: &[u8]) -> Result<StatusReply, FrameError> {
        decode_whole(body, "status reply", |r| {
            Ok(StatusReply {
                replica_index: r.u8("replica_index")?,
                replica_count: r.u8("replica_count")?,
                role: decode_role(r)?,
                view: r.u64("view")?,
                op: r.u64("op")?,
                commit: r.u64("commit")?,
                applied: r.u64("applied")?,
                config_mismatch: decode_text(r, "config mismatch", STATUS_MISMATCH_BYTES_MAX)?
                    .to_string(),
            })
        })
    }
}

/// The body of an error frame: a code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    /// Why.
    pub code: ErrorCode,
    /// Details (UTF-8, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes).
    pub message: String,
}

impl ErrorBody {
    /// An error body, cutting `message` to the limit at a character boundary.
    pub fn new(code: ErrorCode, message: &str) -> ErrorBody {
        ErrorBody {
            code,
            message: cut_utf8(message, usize::from(ERROR_MESSAGE_BYTES_MAX)).to_string(),
        }
    }

    /// Appends the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.message.len()).expect("cut to ERROR_MESSAGE_BYTES_MAX");
        assert!(len <= ERROR_MESSAGE_BYTES_MAX);
        let mut writer = Writer::new(out);
        writer.u8(self.code as u8);
        writer.u16(len);
        writer.bytes(self.message.as_bytes());
    }

    /// Reads a body.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] for an unknown code, an over-long or non-UTF-8 message, or a
    /// wrong length.
    pub fn decode(body: &[u8]) -> Result<ErrorBody, FrameError> {
        let (code, message) = decode_whole(body, "error body", |r| {
            let offset = r.offset();
            let value = r.u8("error code")?;
            let code = ErrorCode::from_u8(value).ok_or(DecodeError::Invalid {
                what: "error code",
                offset,
                value: u64::from(value),
            })?;
            let len = r.u16("error message length")?;
            if len > ERROR_MESSAGE_BYTES_MAX {
                return Err(DecodeError::TooLarge {
                    what: "error message length",
                    value: u64::from(len),
                    max: u64::from(ERROR_MESSAGE_BYTES_MAX),
                });
            }
            Ok((code, r.take("error message", usize::from(len))?))
        })?;
        let message = std::str::from_utf8(message).map_err(|_| FrameError::Malformed {
            reason: "error message is not UTF-8".to_string(),
        })?;
        Ok(ErrorBody {
            code,
            message: message.to_string(),
        })
    }
}
