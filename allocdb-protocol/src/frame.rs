//! Frames: the envelope of every byte AllocDB sends over TCP, between replicas and to clients.
//!
//! A frame is a fixed 36-byte header followed by a body (see `docs/protocol.md` for the
//! byte-level specification):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `magic: u32` = [`MAGIC`] |
//! | 4 | 2 | `version: u16` = [`PROTOCOL_VERSION`] |
//! | 6 | 1 | `kind: u8` ([`FrameKind`]) |
//! | 7 | 1 | `reserved: u8` = 0 |
//! | 8 | 16 | `cluster_id: u128` |
//! | 24 | 4 | `body_len: u32` |
//! | 28 | 4 | `body_crc32c: u32` |
//! | 32 | 4 | `header_crc32c: u32` (crc32c of bytes 0..32) |
//!
//! Decoding is split so that a receiver never reads (or allocates for) a body it will refuse:
//! [`decode_header`] validates the header alone, in a fixed order (magic, version, header
//! checksum, reserved byte, kind, cluster, length), then the caller reads `body_len` bytes and
//! [`check_body`] verifies them. Any byte string yields a value or a [`FrameError`] whose
//! [`ErrorCode`] goes back to the sender in an [`FrameKind::Error`] frame; nothing here panics
//! on input. This module only moves bytes: it never performs I/O, so the server, the client and
//! the simulator share it unchanged.

mod bodies;
mod client_codec;
#[cfg(test)]
mod tests;

use allocdb_core::{DecodeError, Reader, Writer};

pub use bodies::{
    ClientHello, ERROR_MESSAGE_BYTES_MAX, ErrorBody, HANDSHAKE_ADDRESS_BYTES_MAX,
    HANDSHAKE_ADDRESSES_MAX, HANDSHAKE_CONFIG_VALUES_MAX, PeerHandshake, Role,
    STATUS_MISMATCH_BYTES_MAX, StatusReply, Welcome, cut_utf8,
};
pub use client_codec::{
    FrameReply, FrameRequest, REPLY_ENCODED_BYTES_MAX, REQUEST_ENTRY_BYTES_MAX, decode_replies,
    decode_requests, encode_replies, encode_requests,
};

/// The first four bytes of every frame: "ALDB" on the wire.
pub const MAGIC: u32 = u32::from_le_bytes(*b"ALDB");
/// The protocol version this build speaks; a frame with another is refused (`wrong_version`).
pub const PROTOCOL_VERSION: u16 = 2;
/// Bytes of a frame header.
pub const HEADER_BYTES: usize = 36;
/// Bytes of the header covered by `header_crc32c`.
const HEADER_CHECKED_BYTES: usize = 32;
/// Requests in one `ClientRequests` frame, and replies in one `ClientReplies` frame.
pub const REQUESTS_PER_FRAME_MAX: u32 = 1024;
/// The largest body a client may send or receive: a full frame of the largest requests or
/// replies (every other client-facing body is smaller).
pub const CLIENT_BODY_BYTES_MAX: u32 = client_codec::CLIENT_BODY_BYTES_MAX;
/// The absolute ceiling on any frame body; peer links use a tighter limit derived from the
/// replica's message limits (`allocdb_vsr::message_codec::peer_body_bytes_max`).
pub const FRAME_BODY_BYTES_LIMIT: u32 = 256 << 20;

/// What a frame carries. The values are part of the protocol and never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Replica ⇄ replica, first frame of a link: who is speaking.
    PeerHandshake = 1,
    /// Replica → replica: one protocol message (`allocdb_vsr::encode_message`).
    PeerMessage = 2,
    /// Replica ⇄ replica keep-alive, so a silently stalled link is noticed and redialed.
    PeerPing = 3,
    /// Client → replica, first frame of a session.
    ClientHello = 16,
    /// Replica → client: the answer to a hello.
    ClientWelcome = 17,
    /// Client → replica: a batch of requests.
    ClientRequests = 18,
    /// Replica → client: a batch of replies.
    ClientReplies = 19,
    /// Anyone → replica: ask for its role, view and log position.
    StatusRequest = 32,
    /// Replica → asker: the answer to a status request.
    StatusReply = 33,
    /// Replica → peer or client: why the connection is being closed.
    Error = 255,
}

impl FrameKind {
    /// Every kind, in value order.
    pub const ALL: [FrameKind; 10] = [
        FrameKind::PeerHandshake,
        FrameKind::PeerMessage,
        FrameKind::PeerPing,
        FrameKind::ClientHello,
        FrameKind::ClientWelcome,
        FrameKind::ClientRequests,
        FrameKind::ClientReplies,
        FrameKind::StatusRequest,
        FrameKind::StatusReply,
        FrameKind::Error,
    ];

    /// The kind with this value; `None` for a value no kind uses.
    pub fn from_u8(value: u8) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|kind| *kind as u8 == value)
    }

    /// The kind's name in `snake_case`, for errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::PeerHandshake => "peer_handshake",
            FrameKind::PeerMessage => "peer_message",
            FrameKind::PeerPing => "peer_ping",
            FrameKind::ClientHello => "client_hello",
            FrameKind::ClientWelcome => "client_welcome",
            FrameKind::ClientRequests => "client_requests",
            FrameKind::ClientReplies => "client_replies",
            FrameKind::StatusRequest => "status_request",
            FrameKind::StatusReply => "status_reply",
            FrameKind::Error => "error",
        }
    }

    /// Whether a frame of this kind may carry cluster id 0 ("any cluster"): only the first
    /// frame of a client or status session, sent by a tool that does not know the id yet.
    pub fn allows_any_cluster(self) -> bool {
        matches!(self, FrameKind::ClientHello | FrameKind::StatusRequest)
    }
}

/// A validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the body holds.
    pub kind: FrameKind,
    /// The sender's cluster (0 only in a hello or status request).
    pub cluster_id: u128,
    /// Bytes of body that follow the header.
    pub body_len: u32,
    /// crc32c of the body.
    pub body_crc32c: u32,
}

impl FrameHeader {
    /// Bytes of the whole frame (header and body).
    pub fn frame_bytes(&self) -> usize {
        HEADER_BYTES + usize::try_from(self.body_len).expect("u32 fits in usize")
    }
}

/// What a receiver accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// The receiver's cluster; 0 accepts any (a client that has not learned it yet).
    pub cluster_id: u128,
    /// The largest body accepted; at most [`FRAME_BODY_BYTES_LIMIT`].
    pub body_bytes_max: u32,
}

impl FrameLimits {
    /// The limits a client uses (and a replica uses on client sessions).
    pub fn client(cluster_id: u128) -> FrameLimits {
        FrameLimits {
            cluster_id,
            body_bytes_max: CLIENT_BODY_BYTES_MAX,
        }
    }
}

/// Why a frame was refused; [`FrameError::code`] is sent back in an error frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The first four bytes are not [`MAGIC`]: not an AllocDB peer.
    BadMagic {
        /// What was there.
        found: u32,
    },
    /// Another protocol version.
    WrongVersion {
        /// The version the sender speaks.
        found: u16,
    },
    /// A checksum did not match.
    BadChecksum {
        /// `"header"` or `"body"`.
        what: &'static str,
    },
    /// The bytes do not form a valid frame or body.
    Malformed {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The body is longer than the receiver accepts.
    Oversized {
        /// The announced length.
        body_len: u32,
        /// The receiver's limit.
        max: u32,
    },
    /// The sender belongs to another cluster.
    WrongCluster {
        /// The receiver's cluster.
        expected: u128,
        /// The sender's.
        found: u128,
    },
    /// A valid frame of a kind not allowed at this point of the session.
    UnexpectedKind {
        /// The kind received.
        kind: FrameKind,
        /// Where it was received (e.g. "client session").
        context: &'static str,
    },
    /// A client frame carried an internal command (`expire`), which only a primary creates.
    InternalCommandFromClient {
        /// Its position in the frame.
        index: u32,
    },
    /// A peer handshake named an impossible replica (out of range, ourselves, another size).
    WrongReplica {
        /// What is wrong.
        reason: String,
    },
    /// A peer handshake from a replica whose cluster-wide configuration differs from ours.
    ConfigMismatch {
        /// Every difference, naming both sides' values.
        reason: String,
    },
}

impl FrameError {
    /// True when the refused bytes start a TLS record: the other side uses TLS and this
    /// connection is plaintext (a configuration mismatch, not a network fault).
    pub fn is_tls_record(&self) -> bool {
        matches!(self, FrameError::BadMagic { found } if foreign_protocol(*found) == Some(Foreign::Tls))
    }

    /// The code sent back in the error frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::BadMagic { .. } => ErrorCode::BadMagic,
            FrameError::WrongVersion { .. } => ErrorCode::WrongVersion,
            FrameError::BadChecksum { .. } => ErrorCode::BadChecksum,
            FrameError::Malformed { .. } => ErrorCode::Malformed,
            FrameError::Oversized { .. } => ErrorCode::Oversized,
            FrameError::WrongCluster { .. } => ErrorCode::WrongCluster,
            FrameError::UnexpectedKind { .. } => ErrorCode::UnexpectedKind,
            FrameError::InternalCommandFromClient { .. } => ErrorCode::InternalCommandFromClient,
            FrameError::WrongReplica { .. } => ErrorCode::WrongReplica,
            FrameError::ConfigMismatch { .. } => ErrorCode::ConfigMismatch,
        }
    }

    /// A body that failed to decode.
    pub fn malformed(what: &str, error: &DecodeError) -> FrameError {
        FrameError::Malformed {
            reason: format!("{what}: {error}"),
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadMagic { found } => {
                write!(f, "bad magic {found:#010x} (expected {MAGIC:#010x})")?;
                match foreign_protocol(*found) {
                    Some(Foreign::Tls) => f.write_str(
                        ": these bytes start a TLS record, so the other side speaks TLS and \
                         this one does not",
                    ),
                    Some(Foreign::HttpResponse) => f.write_str(
                        ": these bytes start an HTTP response, so the address is an HTTP \
                         server (a replica's --metrics port?), not a replica's client or peer port",
                    ),
                    Some(Foreign::HttpRequest) => f.write_str(
                        ": these bytes start an HTTP request; this port speaks AllocDB frames \
                         (/metrics and /health are served on the replica's --metrics port)",
                    ),
                    None => Ok(()),
                }
            }
            FrameError::WrongVersion { found } => {
                write!(
                    f,
                    "protocol version {found} (this server speaks {PROTOCOL_VERSION})"
                )
            }
            FrameError::BadChecksum { what } => write!(f, "{what} checksum mismatch"),
            FrameError::Malformed { reason } => write!(f, "malformed frame: {reason}"),
            FrameError::Oversized { body_len, max } => {
                write!(f, "frame body of {body_len} bytes exceeds the limit {max}")
            }
            FrameError::WrongCluster { expected, found } => {
                write!(f, "cluster id {found} (this is cluster {expected})")
            }
            FrameError::UnexpectedKind { kind, context } => {
                write!(f, "a {} frame is not allowed in a {context}", kind.name())
            }
            FrameError::InternalCommandFromClient { index } => {
                write!(
                    f,
                    "request {index} is an internal command (expire), never accepted from a client"
                )
            }
            FrameError::WrongReplica { reason } => write!(f, "wrong replica: {reason}"),
            FrameError::ConfigMismatch { reason } => {
                write!(f, "configuration mismatch: {reason}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// The reason carried by an error frame. Values are part of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    /// The bytes do not decode.
    Malformed = 1,
    /// A body longer than the limit.
    Oversized = 2,
    /// Another cluster's frame.
    WrongCluster = 3,
    /// Another protocol version.
    WrongVersion = 4,
    /// A header or body checksum mismatch.
    BadChecksum = 5,
    /// A frame kind not allowed at that point.
    UnexpectedKind = 6,
    /// An `expire` from a client.
    InternalCommandFromClient = 7,
    /// Not an AllocDB frame at all.
    BadMagic = 8,
    /// A peer handshake from an impossible replica.
    WrongReplica = 9,
    /// The server cannot take another connection.
    Overloaded = 10,
    /// The server is shutting down.
    ShuttingDown = 11,
    /// The connection sent nothing for too long.
    Timeout = 12,
    /// A peer handshake from a replica configured differently (settings or address list).
    ConfigMismatch = 13,
    /// The connection's certificate does not allow what it asked for (a peer handshake
    /// without that replica's certificate, a client session without a client certificate,
    /// a status request without the operator role).
    Forbidden = 14,
}

impl ErrorCode {
    /// Every code, in value order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::Malformed,
        ErrorCode::Oversized,
        ErrorCode::WrongCluster,
        ErrorCode::WrongVersion,
        ErrorCode::BadChecksum,
        ErrorCode::UnexpectedKind,
        ErrorCode::InternalCommandFromClient,
        ErrorCode::BadMagic,
        ErrorCode::WrongReplica,
        ErrorCode::Overloaded,
        ErrorCode::ShuttingDown,
        ErrorCode::Timeout,
        ErrorCode::ConfigMismatch,
        ErrorCode::Forbidden,
    ];

    /// The code with this value; `None` for a value no code uses.
    pub fn from_u8(value: u8) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|code| *code as u8 == value)
    }

    /// The code's name in `snake_case` (as printed by tools).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::Oversized => "oversized",
            ErrorCode::WrongCluster => "wrong_cluster",
            ErrorCode::WrongVersion => "wrong_version",
            ErrorCode::BadChecksum => "bad_checksum",
            ErrorCode::UnexpectedKind => "unexpected_kind",
            ErrorCode::InternalCommandFromClient => "internal_command_from_client",
            ErrorCode::BadMagic => "bad_magic",
            ErrorCode::WrongReplica => "wrong_replica",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ConfigMismatch => "config_mismatch",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

/// Appends one whole frame to `out`: the header, the body `body` writes in place (no copy),
/// then the length and both checksums are patched in.
///
/// ```
/// use allocdb_protocol::frame::{self, FrameKind, FrameLimits, HEADER_BYTES};
/// let mut out = Vec::new();
/// frame::write_frame(&mut out, FrameKind::PeerPing, 7, |_| {});
/// let header = frame::decode_header(out[..HEADER_BYTES].try_into().unwrap(), &FrameLimits::client(7)).unwrap();
/// assert_eq!((header.kind, header.body_len), (FrameKind::PeerPing, 0));
/// ```
pub fn write_frame(
    out: &mut Vec<u8>,
    kind: FrameKind,
    cluster_id: u128,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    let mut writer = Writer::new(out);
    writer.u32(MAGIC);
    writer.u16(PROTOCOL_VERSION);
    writer.u8(kind as u8);
    writer.u8(0);
    writer.u128(cluster_id);
    writer.u32(0);
    writer.u32(0);
    writer.u32(0);
    assert_eq!(out.len() - start, HEADER_BYTES);
    body(out);
    let body_len = u32::try_from(out.len() - start - HEADER_BYTES).expect("frame body below 4 GiB");
    assert!(
        body_len <= FRAME_BODY_BYTES_LIMIT,
        "frame body of {body_len} bytes over the limit"
    );
    let body_crc32c = crc32c::crc32c(&out[start + HEADER_BYTES..]);
    let mut writer = Writer::new(out);
    writer.patch_u32(start + 24, body_len);
    writer.patch_u32(start + 28, body_crc32c);
    let header_crc32c = crc32c::crc32c(&out[start..start + HEADER_CHECKED_BYTES]);
    Writer::new(out).patch_u32(start + HEADER_CHECKED_BYTES, header_crc32c);
}

/// Validates a header against `limits`, before any of the body is read.
///
/// # Errors
/// The first problem, checked in this order: [`FrameError::BadMagic`],
/// [`FrameError::WrongVersion`], [`FrameError::BadChecksum`] (header), [`FrameError::Malformed`]
/// (reserved byte or unknown kind), [`FrameError::WrongCluster`], [`FrameError::Oversized`].
pub fn decode_header(
    bytes: &[u8; HEADER_BYTES],
    limits: &FrameLimits,
) -> Result<FrameHeader, FrameError> {
    assert!(limits.body_bytes_max <= FRAME_BODY_BYTES_LIMIT);
    let malformed = |error: DecodeError| FrameError::malformed("header", &error);
    let mut reader = Reader::new(bytes);
    let magic = reader.u32("magic").map_err(malformed)?;
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    // The version is checked before the checksum: another version may checksum differently.
    let version = reader.u16("version").map_err(malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::WrongVersion { found: version });
    }
    let kind_value = reader.u8("kind").map_err(malformed)?;
    let reserved = reader.u8("reserved").map_err(malformed)?;
    let cluster_id = reader.u128("cluster_id").map_err(malformed)?;
    let body_len = reader.u32("body_len").map_err(malformed)?;
    let body_crc32c = reader.u32("body_crc32c").map_err(malformed)?;
    let header_crc32c = reader.u32("header_crc32c").map_err(malformed)?;
    assert_eq!(reader.remaining(), 0);
    if crc32c::crc32c(&bytes[..HEADER_CHECKED_BYTES]) != header_crc32c {
        return Err(FrameError::BadChecksum { what: "header" });
    }
    if reserved != 0 {
        return Err(FrameError::Malformed {
            reason: format!("reserved header byte is {reserved}, must be 0"),
        });
    }
    let Some(kind) = FrameKind::from_u8(kind_value) else {
        return Err(FrameError::Malformed {
            reason: format!("unknown frame kind {kind_value}"),
        });
    };
    let any_cluster = cluster_id == 0 && kind.allows_any_cluster();
    if limits.cluster_id != 0 && cluster_id != limits.cluster_id && !any_cluster {
        return Err(FrameError::WrongCluster {
            expected: limits.cluster_id,
            found: cluster_id,
        });
    }
    if body_len > limits.body_bytes_max {
        return Err(FrameError::Oversized {
            body_len,
            max: limits.body_bytes_max,
        });
    }
    Ok(FrameHeader {
        kind,
        cluster_id,
        body_len,
        body_crc32c,
    })
}

/// Another protocol recognised from the four bytes where a frame's magic should be: the usual
/// misconfigurations (one side with TLS and one without, an address that is a metrics port,
/// `curl` at a client port) are named instead of reported as noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Foreign {
    Tls,
    HttpResponse,
    HttpRequest,
}

fn foreign_protocol(found: u32) -> Option<Foreign> {
    let bytes = found.to_le_bytes();
    let [content_type, major, minor, _] = bytes;
    // A TLS record: content type 20 to 23 (change cipher spec, alert, handshake, application
    // data), protocol version 3.x. A TLS peer on a plaintext connection sends exactly that
    // first: a client hello, or the alert of a server refusing our plaintext.
    if (20..=23).contains(&content_type) && major == 3 && minor <= 4 {
        return Some(Foreign::Tls);
    }
    match &bytes {
        b"HTTP" => Some(Foreign::HttpResponse),
        b"GET " | b"HEAD" | b"POST" | b"PUT " => Some(Foreign::HttpRequest),
        _ => None,
    }
}

/// Checks the start of a header before all of it has arrived: a sender that is not speaking
/// this protocol (wrong magic or version) is refused after 4 or 6 bytes instead of waiting for
/// 36 that may never come. Shorter inputs pass.
///
/// # Errors
/// [`FrameError::BadMagic`] or [`FrameError::WrongVersion`].
pub fn check_header_prefix(bytes: &[u8]) -> Result<(), FrameError> {
    if let Some(magic) = bytes.first_chunk::<4>() {
        let found = u32::from_le_bytes(*magic);
        if found != MAGIC {
            return Err(FrameError::BadMagic { found });
        }
    }
    if let Some(version) = bytes.get(4..6) {
        let found = u16::from_le_bytes([version[0], version[1]]);
        if found != PROTOCOL_VERSION {
            return Err(FrameError::WrongVersion { found });
        }
    }
    Ok(())
}

/// Checks a body read after `header` against its length and checksum.
///
/// # Errors
/// [`FrameError::Malformed`] for a wrong length, [`FrameError::BadChecksum`] for a mismatch.
pub fn check_body(header: &FrameHeader, body: &[u8]) -> Result<(), FrameError> {
    if body.len() != header.frame_bytes() - HEADER_BYTES {
        return Err(FrameError::Malformed {
            reason: format!(
                "body of {} bytes, header announced {}",
                body.len(),
                header.body_len
            ),
        });
    }
    if crc32c::crc32c(body) != header.body_crc32c {
        return Err(FrameError::BadChecksum { what: "body" });
    }
    Ok(())
}

/// A whole, checked frame found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedFrame<'a> {
    /// Its header.
    pub header: FrameHeader,
    /// Its body (checksum verified).
    pub body: &'a [u8],
    /// Header plus body bytes: how far to advance in the buffer.
    pub frame_bytes: usize,
}

/// Decodes the frame at the start of `bytes`: `Ok(None)` when more bytes are needed, else the
/// header, its checked body, and the frame's total length (to advance past it).
///
/// # Errors
/// As [`decode_header`] and [`check_body`]; an invalid header is reported as soon as its 36
/// bytes are present, whatever follows.
pub fn decode_frame<'a>(
    bytes: &'a [u8],
    limits: &FrameLimits,
) -> Result<Option<DecodedFrame<'a>>, FrameError> {
    let Some(head) = bytes.first_chunk::<HEADER_BYTES>() else {
        return Ok(None);
    };
    let header = decode_header(head, limits)?;
    let frame_bytes = header.frame_bytes();
    if bytes.len() < frame_bytes {
        return Ok(None);
    }
    let body = &bytes[HEADER_BYTES..frame_bytes];
    check_body(&header, body)?;
    Ok(Some(DecodedFrame {
        header,
        body,
        frame_bytes,
    }))
}

/// Appends a whole error frame (the connection is closed after sending it).
pub fn write_error_frame(out: &mut Vec<u8>, cluster_id: u128, code: ErrorCode, message: &str) {
    let body = ErrorBody::new(code, message);
    write_frame(out, FrameKind::Error, cluster_id, |bytes| {
        body.encode(bytes);
    });
}
