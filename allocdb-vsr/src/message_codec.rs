//! Bytes ⇄ [`Message`], through `allocdb_core::wire` like every other codec.
//!
//! Layout: `kind: u8`, then the variant's fields in declaration order, little-endian. A
//! record header is its eight fields (80 bytes); a body or snapshot is `len: u32` then the
//! bytes; a list is `count: u32` then the items. Decoding is bounded by [`MessageLimits`]:
//! every count and length is checked before anything is sized from it, and any byte string
//! yields a message or a [`DecodeError`] naming the field, never a panic. Integrity of the
//! entries (chain checksums) is checked by the replica, not here. Framing (length prefix,
//! version, crc32c) belongs to the transport.

use allocdb_core::{DecodeError, Reader, Writer};
use allocdb_protocol::frame::FRAME_BODY_BYTES_LIMIT;
use allocdb_wal::{CheckpointInfo, RECORD_HEADER_SIZE, RecordHeader};

use crate::config::ReplicaConfig;
use crate::message::{Entry, Message};

const KIND_PREPARE: u8 = 1;
const KIND_PREPARE_OK: u8 = 2;
const KIND_COMMIT: u8 = 3;
const KIND_COMMIT_ACK: u8 = 4;
const KIND_START_VIEW_CHANGE: u8 = 5;
const KIND_DO_VIEW_CHANGE: u8 = 6;
const KIND_START_VIEW: u8 = 7;
const KIND_REQUEST_START_VIEW: u8 = 8;
const KIND_REQUEST_PREPARES: u8 = 9;
const KIND_REQUEST_HEADERS: u8 = 10;
const KIND_HEADERS: u8 = 11;
const KIND_CHECKPOINT: u8 = 12;
const KIND_RECOVERY_PROBE: u8 = 13;
const KIND_RECOVERY_REPLY: u8 = 14;

/// Bytes of an encoded record header: the log's own header format.
pub const HEADER_ENCODED_BYTES: u32 = RECORD_HEADER_SIZE;

/// The bounds a decoder enforces; a sender never exceeds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Entries in a `do_view_change` or `start_view`.
    pub suffix_ops_max: u32,
    /// Headers in a `headers` message.
    pub headers_max: u32,
    /// Bytes of one entry body.
    pub body_bytes_max: u32,
    /// Bytes of a snapshot.
    pub snapshot_bytes_max: u32,
}

impl MessageLimits {
    /// The limits implied by a replica configuration (the same on every replica).
    pub fn from_config(config: &ReplicaConfig) -> MessageLimits {
        MessageLimits {
            suffix_ops_max: config.suffix_ops_max,
            headers_max: config.headers_max,
            body_bytes_max: config.batch_bytes_max,
            snapshot_bytes_max: config.snapshot_bytes_max,
        }
    }
}

/// The largest peer frame body a replica with these message limits can send: a checkpoint
/// (snapshot) or a view-change suffix of full entries, whichever is larger. It lives with the
/// message codec, not with the frame format, because only the messages' layout decides it.
pub fn peer_body_bytes_max(limits: &MessageLimits) -> u32 {
    let entry_bytes = u64::from(HEADER_ENCODED_BYTES) + 4 + u64::from(limits.body_bytes_max);
    // kind, views, ops, checksum, count, then the entries.
    let suffix = 1 + 8 * 4 + 16 + 4 + u64::from(limits.suffix_ops_max) * entry_bytes;
    let headers = 1 + 8 + 4 + u64::from(limits.headers_max) * u64::from(HEADER_ENCODED_BYTES);
    let checkpoint = 1 + 8 + 8 * 4 + 16 * 2 + 4 + u64::from(limits.snapshot_bytes_max);
    let largest = suffix.max(headers).max(checkpoint);
    u32::try_from(largest.min(u64::from(FRAME_BODY_BYTES_LIMIT))).expect("clamped to a u32 limit")
}

/// Appends the encoding of `message` to `out`.
// One arm per message kind, next to each other so the layout reads as one table.
#[allow(clippy::too_many_lines)]
pub fn encode_message(message: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    let mut w = Writer::new(out);
    match message {
        Message::Prepare {
            view,
            commit,
            entry,
        } => {
            w.u8(KIND_PREPARE);
            w.u64(*view);
            w.u64(*commit);
            encode_entry(&mut w, entry);
        }
        Message::PrepareOk { view, op, checksum } => {
            w.u8(KIND_PREPARE_OK);
            w.u64(*view);
            w.u64(*op);
            w.u128(*checksum);
        }
        Message::Commit {
            view,
            commit,
            head_op,
            heartbeat,
            digest_op,
            digest,
        } => {
            w.u8(KIND_COMMIT);
            w.u64(*view);
            w.u64(*commit);
            w.u64(*head_op);
            w.u64(*heartbeat);
            w.u64(*digest_op);
            w.u128(*digest);
        }
        Message::CommitAck {
            view,
            heartbeat,
            op,
            checksum,
        } => {
            w.u8(KIND_COMMIT_ACK);
            w.u64(*view);
            w.u64(*heartbeat);
            w.u64(*op);
            w.u128(*checksum);
        }
        Message::StartViewChange { view } => {
            w.u8(KIND_START_VIEW_CHANGE);
            w.u64(*view);
        }
        Message::DoViewChange {
            view,
            log_view,
            op,
            checksum,
            commit,
            suffix,
            damaged,
        } => {
            w.u8(KIND_DO_VIEW_CHANGE);
            w.u64(*view);
            w.u64(*log_view);
            w.u64(*op);
            w.u128(*checksum);
            w.u64(*commit);
            encode_entries(&mut w, suffix);
            w.u8(u8::from(*damaged));
        }
        Message::StartView {
            view,
            op,
            checksum,
            commit,
            suffix,
        } => {
            w.u8(KIND_START_VIEW);
            w.u64(*view);
            w.u64(*op);
            w.u128(*checksum);
            w.u64(*commit);
            encode_entries(&mut w, suffix);
        }
        Message::RequestStartView { view } => {
            w.u8(KIND_REQUEST_START_VIEW);
            w.u64(*view);
        }
        Message::RequestPrepares {
            view,
            op_min,
            op_max,
        } => {
            w.u8(KIND_REQUEST_PREPARES);
            w.u64(*view);
            w.u64(*op_min);
            w.u64(*op_max);
        }
        Message::RequestHeaders {
            view,
            op_min,
            op_max,
        } => {
            w.u8(KIND_REQUEST_HEADERS);
            w.u64(*view);
            w.u64(*op_min);
            w.u64(*op_max);
        }
        Message::Headers { view, headers } => {
            w.u8(KIND_HEADERS);
            w.u64(*view);
            w.u32(u32::try_from(headers.len()).expect("header list bounded by headers_max"));
            for header in headers {
                encode_header(&mut w, header);
            }
        }
        Message::Checkpoint {
            view,
            info,
            snapshot,
        } => {
            w.u8(KIND_CHECKPOINT);
            w.u64(*view);
            encode_checkpoint_info(&mut w, info);
            encode_bytes(&mut w, snapshot);
        }
        Message::RecoveryProbe { view, nonce } => {
            w.u8(KIND_RECOVERY_PROBE);
            w.u64(*view);
            w.u64(*nonce);
        }
        Message::RecoveryReply {
            view,
            nonce,
            fresh,
            empty,
        } => {
            w.u8(KIND_RECOVERY_REPLY);
            w.u64(*view);
            w.u64(*nonce);
            w.u8(u8::from(*fresh));
            w.u8(u8::from(*empty));
        }
    }
    assert!(out.len() > start, "every message has a kind byte");
}

/// Decodes exactly one message from `bytes`.
///
/// # Errors
/// [`DecodeError`] naming the field when the bytes are truncated, hold an unknown kind,
/// exceed a limit, or have bytes left over.
// One arm per message kind, mirroring `encode_message`.
#[allow(clippy::too_many_lines)]
pub fn decode_message(bytes: &[u8], limits: &MessageLimits) -> Result<Message, DecodeError> {
    let mut r = Reader::new(bytes);
    let kind_offset = r.offset();
    let kind = r.u8("message kind")?;
    let message = match kind {
        KIND_PREPARE => Message::Prepare {
            view: r.u64("prepare view")?,
            commit: r.u64("prepare commit")?,
            entry: decode_entry(&mut r, limits)?,
        },
        KIND_PREPARE_OK => Message::PrepareOk {
            view: r.u64("prepare_ok view")?,
            op: r.u64("prepare_ok op")?,
            checksum: r.u128("prepare_ok checksum")?,
        },
        KIND_COMMIT => Message::Commit {
            view: r.u64("commit view")?,
            commit: r.u64("commit commit")?,
            head_op: r.u64("commit head_op")?,
            heartbeat: r.u64("commit heartbeat")?,
            digest_op: r.u64("commit digest_op")?,
            digest: r.u128("commit digest")?,
        },
        KIND_COMMIT_ACK => Message::CommitAck {
            view: r.u64("commit_ack view")?,
            heartbeat: r.u64("commit_ack heartbeat")?,
            op: r.u64("commit_ack op")?,
            checksum: r.u128("commit_ack checksum")?,
        },
        KIND_START_VIEW_CHANGE => Message::StartViewChange {
            view: r.u64("start_view_change view")?,
        },
        KIND_DO_VIEW_CHANGE => Message::DoViewChange {
            view: r.u64("do_view_change view")?,
            log_view: r.u64("do_view_change log_view")?,
            op: r.u64("do_view_change op")?,
            checksum: r.u128("do_view_change checksum")?,
            commit: r.u64("do_view_change commit")?,
            suffix: decode_entries(&mut r, limits)?,
            damaged: r.bool("do_view_change damaged")?,
        },
        KIND_START_VIEW => Message::StartView {
            view: r.u64("start_view view")?,
            op: r.u64("start_view op")?,
            checksum: r.u128("start_view checksum")?,
            commit: r.u64("start_view commit")?,
            suffix: decode_entries(&mut r, limits)?,
        },
        KIND_REQUEST_START_VIEW => Message::RequestStartView {
            view: r.u64("request_start_view view")?,
        },
        KIND_REQUEST_PREPARES => Message::RequestPrepares {
            view: r.u64("request_prepares view")?,
            op_min: r.u64("request_prepares op_min")?,
            op_max: r.u64("request_prepares op_max")?,
        },
        KIND_REQUEST_HEADERS => Message::RequestHeaders {
            view: r.u64("request_headers view")?,
            op_min: r.u64("request_headers op_min")?,
            op_max: r.u64("request_headers op_max")?,
        },
        KIND_HEADERS => {
            let view = r.u64("headers view")?;
            let count = r.count("headers count", limits.headers_max)?;
            check_room(&r, "headers list", count, HEADER_ENCODED_BYTES)?;
            let mut headers = Vec::with_capacity(usize::try_from(count).expect("u32 fits"));
            for _ in 0..count {
                headers.push(decode_header(&mut r)?);
            }
            Message::Headers { view, headers }
        }
        KIND_CHECKPOINT => Message::Checkpoint {
            view: r.u64("checkpoint view")?,
            info: decode_checkpoint_info(&mut r)?,
            snapshot: decode_bytes(&mut r, "checkpoint snapshot", limits.snapshot_bytes_max)?,
        },
        KIND_RECOVERY_PROBE => Message::RecoveryProbe {
            view: r.u64("recovery_probe view")?,
            nonce: r.u64("recovery_probe nonce")?,
        },
        KIND_RECOVERY_REPLY => Message::RecoveryReply {
            view: r.u64("recovery_reply view")?,
            nonce: r.u64("recovery_reply nonce")?,
            fresh: r.bool("recovery_reply fresh")?,
            empty: r.bool("recovery_reply empty")?,
        },
        _ => {
            return Err(DecodeError::Invalid {
                what: "message kind",
                offset: kind_offset,
                value: u64::from(kind),
            });
        }
    };
    r.finish()?;
    Ok(message)
}

/// Rejects a count the remaining input cannot possibly hold, before allocating for it.
fn check_room(
    r: &Reader,
    what: &'static str,
    count: u32,
    item_bytes_min: u32,
) -> Result<(), DecodeError> {
    let needed = u64::from(count) * u64::from(item_bytes_min);
    if needed > u64::try_from(r.remaining()).expect("usize fits in u64") {
        return Err(DecodeError::Truncated {
            what,
            offset: r.offset(),
        });
    }
    Ok(())
}

/// Headers travel in exactly their on-disk form (allocdb-wal's record header, with its own
/// crc32c), so a header damaged in flight is refused before its fields are believed.
fn encode_header(w: &mut Writer, header: &RecordHeader) {
    let start = w.len();
    header.encode(w.buffer());
    assert_eq!(w.len() - start, HEADER_ENCODED_BYTES as usize);
}

fn decode_header(r: &mut Reader) -> Result<RecordHeader, DecodeError> {
    let offset = r.offset();
    let bytes = r.take("record header", HEADER_ENCODED_BYTES as usize)?;
    RecordHeader::decode(bytes).map_err(|reason| DecodeError::Invalid {
        what: reason,
        offset,
        value: 0,
    })
}

fn encode_bytes(w: &mut Writer, bytes: &[u8]) {
    w.u32(u32::try_from(bytes.len()).expect("bodies and snapshots are bounded below 4 GiB"));
    w.bytes(bytes);
}

fn decode_bytes(r: &mut Reader, what: &'static str, max: u32) -> Result<Vec<u8>, DecodeError> {
    let len = r.count(what, max)?;
    let bytes = r.take(what, usize::try_from(len).expect("u32 fits in usize"))?;
    Ok(bytes.to_vec())
}

fn encode_entry(w: &mut Writer, entry: &Entry) {
    encode_header(w, &entry.header);
    encode_bytes(w, &entry.body);
}

fn decode_entry(r: &mut Reader, limits: &MessageLimits) -> Result<Entry, DecodeError> {
    let header = decode_header(r)?;
    let body = decode_bytes(r, "entry body", limits.body_bytes_max)?;
    Ok(Entry { header, body })
}

fn encode_entries(w: &mut Writer, entries: &[Entry]) {
    w.u32(u32::try_from(entries.len()).expect("suffix bounded by suffix_ops_max"));
    for entry in entries {
        encode_entry(w, entry);
    }
}

fn decode_entries(r: &mut Reader, limits: &MessageLimits) -> Result<Vec<Entry>, DecodeError> {
    let count = r.count("suffix count", limits.suffix_ops_max)?;
    check_room(r, "suffix entries", count, HEADER_ENCODED_BYTES + 4)?;
    let mut entries = Vec::with_capacity(usize::try_from(count).expect("u32 fits"));
    for _ in 0..count {
        entries.push(decode_entry(r, limits)?);
    }
    Ok(entries)
}

fn encode_checkpoint_info(w: &mut Writer, info: &CheckpointInfo) {
    w.u64(info.op);
    w.u64(info.view);
    w.u64(info.slot);
    w.u128(info.record_checksum);
    w.u128(info.snapshot_checksum);
    w.u64(info.snapshot_len);
}

fn decode_checkpoint_info(r: &mut Reader) -> Result<CheckpointInfo, DecodeError> {
    Ok(CheckpointInfo {
        op: r.u64("checkpoint op")?,
        view: r.u64("checkpoint view")?,
        slot: r.u64("checkpoint slot")?,
        record_checksum: r.u128("checkpoint record_checksum")?,
        snapshot_checksum: r.u128("checkpoint snapshot_checksum")?,
        snapshot_len: r.u64("checkpoint snapshot_len")?,
    })
}

#[cfg(test)]
mod tests;
