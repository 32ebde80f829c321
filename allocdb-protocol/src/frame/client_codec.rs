//! Bytes ⇄ the bodies of `ClientRequests` and `ClientReplies` frames.
//!
//! A body is `count: u32` (at most [`REQUESTS_PER_FRAME_MAX`]) followed by `count` entries.
//! Writes reuse the core's request codec (`allocdb_core::codec::encode_request`) and outcomes
//! its outcome codec, so a command has exactly one encoding everywhere. Requests are always
//! decoded with [`RequestOrigin::Client`]: an internal `expire` is refused here, before it can
//! reach a replica.
//!
//! Request entry: `request_id: u64`, `tag: u8`, then for tag 1 (write) a core request, for
//! tag 2 (read) `query: u8` (1 resource, 2 lease, 3 pool), `id: u128`, `min_op: u64`.
//!
//! Reply entry: `request_id: u64`, `tag: u8`, then
//! 1 committed: `op: u64`, `index: u32`, outcome (core layout, 34 bytes);
//! 2 read: `op: u64`, `query: u8`, `code: u8` (result code; 0 = ok, then the view);
//! 3 `not_primary`: `view: u64`, `primary: u8`; 4 overloaded; 5 `read_timeout`; 6 invalid.

use allocdb_core::codec::{self, KIND_EXPIRE, REQUEST_ENCODED_BYTES_MAX, RequestOrigin};
use allocdb_core::{
    BUNDLE_SIZE_LIMIT, DecodeError, LeaseId, LeaseState, LeaseView, OUTCOME_ENCODED_BYTES,
    PoolStats, Reader, Request, ResourceState, ResourceView, ResultCode, Writer,
};

use super::{FrameError, REQUESTS_PER_FRAME_MAX};
use crate::client::{ClientOperation, Query, ReadResult, ReplyBody};

const TAG_WRITE: u8 = 1;
const TAG_READ: u8 = 2;

const QUERY_RESOURCE: u8 = 1;
const QUERY_LEASE: u8 = 2;
const QUERY_POOL: u8 = 3;

const TAG_COMMITTED: u8 = 1;
const TAG_READ_RESULT: u8 = 2;
const TAG_NOT_PRIMARY: u8 = 3;
const TAG_OVERLOADED: u8 = 4;
const TAG_READ_TIMEOUT: u8 = 5;
const TAG_INVALID: u8 = 6;
const TAG_FORBIDDEN: u8 = 7;

const ENTRY_HEADER_BYTES: usize = 8 + 1;
const READ_REQUEST_BYTES: usize = 1 + 16 + 8;
/// The smallest request entry (a read): lets a decoder refuse an impossible count up front.
const REQUEST_ENTRY_BYTES_MIN: usize = ENTRY_HEADER_BYTES + READ_REQUEST_BYTES;
/// The smallest reply entry (overloaded, `read_timeout`, invalid).
const REPLY_ENTRY_BYTES_MIN: usize = ENTRY_HEADER_BYTES;

/// The largest request entry (a write with a full bundle).
pub const REQUEST_ENTRY_BYTES_MAX: usize = ENTRY_HEADER_BYTES + REQUEST_ENCODED_BYTES_MAX;
const LEASE_VIEW_BYTES_MAX: usize = 16 + 16 + 1 + 8 + 1 + BUNDLE_SIZE_LIMIT * 16 + 8 + 8;
/// The largest reply entry (a lease read with a full bundle): header, `op`, `slot`, query,
/// code and the view.
pub const REPLY_ENCODED_BYTES_MAX: usize =
    ENTRY_HEADER_BYTES + 8 + 8 + 1 + 1 + LEASE_VIEW_BYTES_MAX;

const ENTRY_BYTES_MAX: usize = if REQUEST_ENTRY_BYTES_MAX > REPLY_ENCODED_BYTES_MAX {
    REQUEST_ENTRY_BYTES_MAX
} else {
    REPLY_ENCODED_BYTES_MAX
};
// A full frame of the largest entries; the cast is of a small compile-time constant.
#[allow(clippy::cast_possible_truncation)]
pub(super) const CLIENT_BODY_BYTES_MAX: u32 = 4 + REQUESTS_PER_FRAME_MAX * ENTRY_BYTES_MAX as u32;

/// One request in a `ClientRequests` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRequest {
    /// The client's number for it, echoed in the reply.
    pub request_id: u64,
    /// A write (with its operation id) or a linearizable read.
    pub operation: ClientOperation,
}

/// One reply in a `ClientReplies` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameReply {
    /// The request it answers.
    pub request_id: u64,
    /// The answer.
    pub body: ReplyBody,
}

fn write_count(writer: &mut Writer, len: usize) {
    let count = u32::try_from(len).expect("count fits in u32");
    assert!(
        count <= REQUESTS_PER_FRAME_MAX,
        "{count} entries exceed REQUESTS_PER_FRAME_MAX"
    );
    writer.u32(count);
}

/// Reads the entry count and refuses one the body cannot hold (before anything is sized).
fn read_count(
    reader: &mut Reader,
    what: &'static str,
    entry_bytes_min: usize,
) -> Result<u32, DecodeError> {
    let count = reader.count(what, REQUESTS_PER_FRAME_MAX)?;
    let needed = usize::try_from(count).expect("u32 fits in usize") * entry_bytes_min;
    if needed > reader.remaining() {
        return Err(DecodeError::Truncated {
            what,
            offset: reader.offset(),
        });
    }
    Ok(count)
}

/// Appends a `ClientRequests` body. Panics over [`REQUESTS_PER_FRAME_MAX`] requests.
pub fn encode_requests(requests: &[FrameRequest], out: &mut Vec<u8>) {
    let mut writer = Writer::new(out);
    write_count(&mut writer, requests.len());
    for request in requests {
        writer.u64(request.request_id);
        match request.operation {
            ClientOperation::Write(write) => {
                writer.u8(TAG_WRITE);
                codec::encode_request(&write, &mut writer);
            }
            ClientOperation::Read { query, min_op } => {
                writer.u8(TAG_READ);
                let (kind, id) = match query {
                    Query::Resource(id) => (QUERY_RESOURCE, id),
                    Query::Lease(id) => (QUERY_LEASE, id.0),
                    Query::Pool(id) => (QUERY_POOL, id),
                };
                writer.u8(kind);
                writer.u128(id);
                writer.u64(min_op);
            }
        }
    }
}

/// Decodes a `ClientRequests` body into `out` (cleared first), as a client's: an `expire`
/// is refused.
///
/// # Errors
/// [`FrameError::InternalCommandFromClient`] for an `expire`; [`FrameError::Malformed`]
/// naming the field for anything else that does not decode. On error `out` is empty.
pub fn decode_requests(body: &[u8], out: &mut Vec<FrameRequest>) -> Result<(), FrameError> {
    out.clear();
    let result = decode_requests_into(body, out);
    if result.is_err() {
        out.clear();
    }
    assert!(out.len() <= usize::try_from(REQUESTS_PER_FRAME_MAX).expect("u32 fits"));
    result
}

fn decode_requests_into(body: &[u8], out: &mut Vec<FrameRequest>) -> Result<(), FrameError> {
    let malformed = |error: DecodeError| FrameError::malformed("client requests", &error);
    let mut reader = Reader::new(body);
    let count =
        read_count(&mut reader, "request count", REQUEST_ENTRY_BYTES_MIN).map_err(malformed)?;
    out.reserve(usize::try_from(count).expect("u32 fits"));
    for index in 0..count {
        let request_id = reader.u64("request_id").map_err(malformed)?;
        let tag_offset = reader.offset();
        match reader.u8("request tag").map_err(malformed)? {
            TAG_WRITE => {
                // Peek at the command kind (after the 16-byte operation id) so an `expire`
                // gets its own error code rather than a generic decode error.
                let mut peek = reader;
                if peek.take("operation_id", 16).is_ok() && peek.u8("kind") == Ok(KIND_EXPIRE) {
                    return Err(FrameError::InternalCommandFromClient { index });
                }
                // Decoded in place in the list: a request is about 300 bytes, and a returned
                // one was copied several times on its way into `out`.
                out.push(FrameRequest {
                    request_id,
                    operation: ClientOperation::Write(Request::BLANK),
                });
                let Some(FrameRequest {
                    operation: ClientOperation::Write(request),
                    ..
                }) = out.last_mut()
                else {
                    unreachable!("pushed a write above");
                };
                codec::decode_request_into(&mut reader, RequestOrigin::Client, request)
                    .map_err(malformed)?;
                assert!(!request.command.is_internal());
            }
            TAG_READ => {
                let operation = decode_read(&mut reader).map_err(malformed)?;
                out.push(FrameRequest {
                    request_id,
                    operation,
                });
            }
            tag => {
                return Err(malformed(DecodeError::Invalid {
                    what: "request tag",
                    offset: tag_offset,
                    value: u64::from(tag),
                }));
            }
        }
    }
    reader.finish().map_err(malformed)
}

fn decode_read(reader: &mut Reader) -> Result<ClientOperation, DecodeError> {
    let offset = reader.offset();
    let kind = reader.u8("query kind")?;
    let id = reader.u128("query id")?;
    let min_op = reader.u64("query min_op")?;
    let query = match kind {
        QUERY_RESOURCE => Query::Resource(id),
        QUERY_LEASE => Query::Lease(LeaseId(id)),
        QUERY_POOL => Query::Pool(id),
        _ => {
            return Err(DecodeError::Invalid {
                what: "query kind",
                offset,
                value: u64::from(kind),
            });
        }
    };
    Ok(ClientOperation::Read { query, min_op })
}

/// Appends a `ClientReplies` body. Panics over [`REQUESTS_PER_FRAME_MAX`] replies.
pub fn encode_replies(replies: &[FrameReply], out: &mut Vec<u8>) {
    let mut writer = Writer::new(out);
    write_count(&mut writer, replies.len());
    for reply in replies {
        writer.u64(reply.request_id);
        match reply.body {
            ReplyBody::Committed { op, index, outcome } => {
                writer.u8(TAG_COMMITTED);
                writer.u64(op);
                writer.u32(index);
                codec::encode_outcome(&outcome, &mut writer);
            }
            ReplyBody::Read { op, slot, result } => {
                writer.u8(TAG_READ_RESULT);
                writer.u64(op);
                writer.u64(slot);
                encode_read_result(&mut writer, &result);
            }
            ReplyBody::NotPrimary { view, primary } => {
                writer.u8(TAG_NOT_PRIMARY);
                writer.u64(view);
                writer.u8(primary);
            }
            ReplyBody::Overloaded => writer.u8(TAG_OVERLOADED),
            ReplyBody::ReadTimeout => writer.u8(TAG_READ_TIMEOUT),
            ReplyBody::Invalid => writer.u8(TAG_INVALID),
            ReplyBody::Forbidden => writer.u8(TAG_FORBIDDEN),
        }
    }
}

/// Decodes a `ClientReplies` body into `out` (cleared first).
///
/// # Errors
/// [`FrameError::Malformed`] naming the field. On error `out` is empty.
pub fn decode_replies(body: &[u8], out: &mut Vec<FrameReply>) -> Result<(), FrameError> {
    out.clear();
    let result = decode_replies_into(body, out)
        .map_err(|error| FrameError::malformed("client replies", &error));
    if result.is_err() {
        out.clear();
    }
    result
}

fn decode_replies_into(body: &[u8], out: &mut Vec<FrameReply>) -> Result<(), DecodeError> {
    let mut reader = Reader::new(body);
    let count = read_count(&mut reader, "reply count", REPLY_ENTRY_BYTES_MIN)?;
    out.reserve(usize::try_from(count).expect("u32 fits"));
    for _ in 0..count {
        let request_id = reader.u64("request_id")?;
        let tag_offset = reader.offset();
        // Decoded in place in the list, like requests: a reply body is about 300 bytes (a
        // lease view holds a bundle), and a built one was copied on its way into `out`.
        out.push(FrameReply {
            request_id,
            body: ReplyBody::Overloaded,
        });
        let body = &mut out.last_mut().expect("pushed above").body;
        *body = match reader.u8("reply tag")? {
            TAG_COMMITTED => ReplyBody::Committed {
                op: reader.u64("committed op")?,
                index: reader.u32("committed index")?,
                outcome: codec::decode_outcome(&mut reader)?,
            },
            TAG_READ_RESULT => ReplyBody::Read {
                op: reader.u64("read op")?,
                slot: reader.u64("read slot")?,
                result: decode_read_result(&mut reader)?,
            },
            TAG_NOT_PRIMARY => ReplyBody::NotPrimary {
                view: reader.u64("not_primary view")?,
                primary: reader.u8("not_primary primary")?,
            },
            TAG_OVERLOADED => ReplyBody::Overloaded,
            TAG_READ_TIMEOUT => ReplyBody::ReadTimeout,
            TAG_INVALID => ReplyBody::Invalid,
            TAG_FORBIDDEN => ReplyBody::Forbidden,
            tag => {
                return Err(DecodeError::Invalid {
                    what: "reply tag",
                    offset: tag_offset,
                    value: u64::from(tag),
                });
            }
        };
    }
    reader.finish()
}

fn encode_code<T>(writer: &mut Writer, result: &Result<T, ResultCode>) {
    match result {
        Ok(_) => writer.u8(ResultCode::Ok as u8),
        Err(code) => {
            assert_ne!(
                *code,
                ResultCode::Ok,
                "an error result carries a failure code"
            );
            writer.u8(*code as u8);
        }
    }
}

fn encode_read_result(writer: &mut Writer, result: &ReadResult) {
    match result {
        ReadResult::Resource(result) => {
            writer.u8(QUERY_RESOURCE);
            encode_code(writer, result);
            if let Ok(view) = result {
                writer.u128(view.id);
                encode_option_u128(writer, view.pool);
                writer.u8(view.state as u8);
                encode_option_u128(writer, view.lease.map(|lease| lease.0));
                writer.u64(view.version);
            }
        }
        ReadResult::Lease(result) => {
            writer.u8(QUERY_LEASE);
            encode_code(writer, result);
            if let Ok(view) = result {
                encode_lease_view(writer, view);
            }
        }
        ReadResult::Pool(result) => {
            writer.u8(QUERY_POOL);
            encode_code(writer, result);
            if let Ok(stats) = result {
                writer.u128(stats.pool);
                writer.u32(stats.total);
                writer.u32(stats.free);
            }
        }
    }
}

fn encode_lease_view(writer: &mut Writer, view: &LeaseView) {
    writer.u128(view.id.0);
    writer.u128(view.holder);
    writer.u8(view.state as u8);
    writer.u64(view.epoch);
    codec::encode_bundle(&view.resources, writer);
    writer.u64(view.deadline_slot);
    writer.u64(view.retire_slot);
}

fn encode_option_u128(writer: &mut Writer, value: Option<u128>) {
    match value {
        None => writer.u8(0),
        Some(value) => {
            writer.u8(1);
            writer.u128(value);
        }
    }
}

fn decode_option_u128(
    reader: &mut Reader,
    what: &'static str,
) -> Result<Option<u128>, DecodeError> {
    let offset = reader.offset();
    match reader.u8(what)? {
        0 => Ok(None),
        1 => Ok(Some(reader.u128(what)?)),
        value => Err(DecodeError::Invalid {
            what,
            offset,
            value: u64::from(value),
        }),
    }
}

/// Reads the result code of a read: `Ok(true)` when a value follows.
fn decode_code(reader: &mut Reader) -> Result<Result<(), ResultCode>, DecodeError> {
    let offset = reader.offset();
    let value = reader.u8("read result code")?;
    match ResultCode::from_u8(value) {
        Some(ResultCode::Ok) => Ok(Ok(())),
        Some(code) => Ok(Err(code)),
        None => Err(DecodeError::Invalid {
            what: "read result code",
            offset,
            value: u64::from(value),
        }),
    }
}

fn decode_read_result(reader: &mut Reader) -> Result<ReadResult, DecodeError> {
    let offset = reader.offset();
    let kind = reader.u8("read result kind")?;
    let code = decode_code(reader)?;
    Ok(match kind {
        QUERY_RESOURCE => ReadResult::Resource(match code {
            Ok(()) => Ok(decode_resource_view(reader)?),
            Err(code) => Err(code),
        }),
        QUERY_LEASE => ReadResult::Lease(match code {
            Ok(()) => Ok(decode_lease_view(reader)?),
            Err(code) => Err(code),
        }),
        QUERY_POOL => ReadResult::Pool(match code {
            Ok(()) => Ok(PoolStats {
                pool: reader.u128("pool id")?,
                total: reader.u32("pool total")?,
                free: reader.u32("pool free")?,
            }),
            Err(code) => Err(code),
        }),
        _ => {
            return Err(DecodeError::Invalid {
                what: "read result kind",
                offset,
                value: u64::from(kind),
            });
        }
    })
}

fn decode_resource_view(reader: &mut Reader) -> Result<ResourceView, DecodeError> {
    let id = reader.u128("resource id")?;
    let pool = decode_option_u128(reader, "resource pool")?;
    let offset = reader.offset();
    let state = match reader.u8("resource state")? {
        0 => ResourceState::Available,
        1 => ResourceState::Reserved,
        2 => ResourceState::Active,
        3 => ResourceState::Revoking,
        value => {
            return Err(DecodeError::Invalid {
                what: "resource state",
                offset,
                value: u64::from(value),
            });
        }
    };
    let lease = decode_option_u128(reader, "resource lease")?.map(LeaseId);
    let version = reader.u64("resource version")?;
    Ok(ResourceView {
        id,
        pool,
        state,
        lease,
        version,
    })
}

fn decode_lease_view(reader: &mut Reader) -> Result<LeaseView, DecodeError> {
    let id = LeaseId(reader.u128("lease id")?);
    let holder = reader.u128("lease holder")?;
    let offset = reader.offset();
    let value = reader.u8("lease state")?;
    let state = LeaseState::from_u8(value).ok_or(DecodeError::Invalid {
        what: "lease state",
        offset,
        value: u64::from(value),
    })?;
    let epoch = reader.u64("lease epoch")?;
    let resources = codec::decode_bundle(reader, "lease resources")?;
    let deadline_slot = reader.u64("lease deadline_slot")?;
    let retire_slot = reader.u64("lease retire_slot")?;
    Ok(LeaseView {
        id,
        holder,
        state,
        epoch,
        resources,
        deadline_slot,
        retire_slot,
    })
}

// The outcome codec's size is part of the reply layout documented above.
const _: () = assert!(OUTCOME_ENCODED_BYTES == 34);
