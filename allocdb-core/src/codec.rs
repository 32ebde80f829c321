//! The binary codec for requests, outcomes, request batches and outcome lists.
//!
//! Everything here is built on [`Writer`] and [`Reader`]: little-endian, fixed-width integers,
//! no varints, no padding. Decoding is total: any byte string yields either a value or a
//! [`DecodeError`] naming the field (and, where [`DecodeError`] carries one, the offset); it
//! never panics and never allocates. Lists are decoded into a caller-owned `Vec` whose
//! capacity was reserved up front, and a list's count is checked against the caller's limit
//! before a single element is decoded.
//!
//! # Request layout
//!
//! A request is `operation_id: u128`, `kind: u8`, then the kind's fields in declaration order.
//! A request carries no version of its own: it always travels inside a versioned container
//! (a batch here, a log record or frame above).
//!
//! | kind byte | command | fields after the kind byte |
//! |---|---|---|
//! | 1 | `CreateResource` | `resource: u128`, `pool: option<u128>` |
//! | 2 | `Reserve` | `len: u8` (≤ [`BUNDLE_SIZE_LIMIT`]), `len × resource: u128`, `holder: u128`, `ttl_slots: u64` |
//! | 3 | `ReserveAny` | `pool: u128`, `count: u32`, `holder: u128`, `ttl_slots: u64` |
//! | 4 | `Activate` | `lease: u128`, `holder: u128`, `epoch: u64`, `ttl_slots: option<u64>` |
//! | 5 | `Renew` | `lease: u128`, `holder: u128`, `epoch: u64`, `ttl_slots: u64` |
//! | 6 | `Release` | `lease: u128`, `holder: u128`, `epoch: u64` |
//! | 7 | `Revoke` | `lease: u128` |
//! | 8 | `Reclaim` | `lease: u128` |
//! | 9 | `Expire` (internal) | `lease: u128`, `deadline_slot: u64` |
//! | 10 | `RegisterSession` | `client: u128` |
//!
//! Kind byte 0 is never used, so zeroed memory does not decode as a command. The values are
//! part of the log format: a kind byte is never reused. `option<T>` is a presence byte that
//! must be 0 (absent, no value follows) or 1 (present, the value follows), so every value has
//! exactly one encoding.
//!
//! Semantic checks (an empty bundle, a zero TTL, operation id 0) are *not* decode errors: they
//! are result codes the core returns, so the log records exactly what the client asked for.
//! Only what a [`Command`] cannot represent (a bundle over [`BUNDLE_SIZE_LIMIT`]) or what the
//! sender may not send (`Expire` from a client) is rejected here.
//!
//! # Outcome layout
//!
//! `code: u8` ([`ResultCode`] value), `retry: u8` (0 or 1), `lease: u128`, `epoch: u64`,
//! `deadline_slot: u64`: always [`OUTCOME_ENCODED_BYTES`] bytes.
//!
//! # List layout (batches and outcome lists)
//!
//! `format_version: u16`, `count: u32`, then `count` elements back to back, and nothing after.

use crate::command::{BUNDLE_SIZE_LIMIT, Bundle, Command, Outcome, Request};
use crate::ids::LeaseId;
use crate::result_code::ResultCode;
use crate::wire::{DecodeError, Reader, Writer};

/// Kind byte of [`Command::CreateResource`].
pub const KIND_CREATE_RESOURCE: u8 = 1;
/// Kind byte of [`Command::Reserve`].
pub const KIND_RESERVE: u8 = 2;
/// Kind byte of [`Command::ReserveAny`].
pub const KIND_RESERVE_ANY: u8 = 3;
/// Kind byte of [`Command::Activate`].
pub const KIND_ACTIVATE: u8 = 4;
/// Kind byte of [`Command::Renew`].
pub const KIND_RENEW: u8 = 5;
/// Kind byte of [`Command::Release`].
pub const KIND_RELEASE: u8 = 6;
/// Kind byte of [`Command::Revoke`].
pub const KIND_REVOKE: u8 = 7;
/// Kind byte of [`Command::Reclaim`].
pub const KIND_RECLAIM: u8 = 8;
/// Kind byte of [`Command::Expire`], accepted only from [`RequestOrigin::Log`].
pub const KIND_EXPIRE: u8 = 9;

/// Kind byte of [`Command::RegisterSession`].
pub const KIND_REGISTER_SESSION: u8 = 10;

/// The format version written in, and required of, every request batch.
pub const BATCH_FORMAT_VERSION: u16 = 1;
/// The format version written in, and required of, every outcome list.
pub const OUTCOMES_FORMAT_VERSION: u16 = 1;

/// Bytes of a list header: `format_version: u16` and `count: u32`.
pub const LIST_HEADER_BYTES: usize = 2 + 4;

const REQUEST_HEADER_BYTES: usize = 16 + 1;
const RESERVE_FIXED_BYTES: usize = 1 + 16 + 8;

/// The smallest encoded request (`Revoke` or `Reclaim`): lets a list decoder reject a count
/// the input cannot possibly hold before decoding anything.
pub const REQUEST_ENCODED_BYTES_MIN: usize = REQUEST_HEADER_BYTES + 16;
/// The largest encoded request (`Reserve` with a full bundle): bounds frames and log records.
pub const REQUEST_ENCODED_BYTES_MAX: usize =
    REQUEST_HEADER_BYTES + RESERVE_FIXED_BYTES + BUNDLE_SIZE_LIMIT * 16;
/// The size of every encoded outcome.
pub const OUTCOME_ENCODED_BYTES: usize = 1 + 1 + 16 + 8 + 8;

/// Where bytes being decoded as requests came from. Decides whether internal commands are
/// accepted: the primary alone generates `Expire`, so a client frame carrying one is an attack
/// or a bug and is refused before it can reach the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOrigin {
    /// A client frame: [`Command::Expire`] is rejected.
    Client,
    /// The replicated log, a prepare or a snapshot, all written by a primary: every kind.
    Log,
}

/// The exact number of bytes [`encode_request`] writes for `request`.
pub fn request_encoded_bytes(request: &Request) -> usize {
    let body = match &request.command {
        Command::CreateResource { pool, .. } => 16 + 1 + if pool.is_some() { 16 } else { 0 },
        Command::Reserve { resources, .. } => RESERVE_FIXED_BYTES + resources.len() * 16,
        Command::ReserveAny { .. } => 16 + 4 + 16 + 8,
        Command::Activate { ttl_slots, .. } => {
            16 + 16 + 8 + 1 + if ttl_slots.is_some() { 8 } else { 0 }
        }
        Command::Renew { .. } => 16 + 16 + 8 + 8,
        Command::Release { .. } => 16 + 16 + 8,
        Command::Revoke { .. } | Command::Reclaim { .. } | Command::RegisterSession { .. } => 16,
        Command::Expire { .. } => 16 + 8,
    };
    let bytes = REQUEST_HEADER_BYTES + body;
    debug_assert!(bytes >= REQUEST_ENCODED_BYTES_MIN);
    debug_assert!(bytes <= REQUEST_ENCODED_BYTES_MAX);
    bytes
}

/// The largest encoding of a batch of at most `requests_max` requests: sizes frame buffers.
pub fn batch_encoded_bytes_max(requests_max: u32) -> u64 {
    let per_request = u64::try_from(REQUEST_ENCODED_BYTES_MAX).expect("small constant");
    let header = u64::try_from(LIST_HEADER_BYTES).expect("small constant");
    header + u64::from(requests_max) * per_request
}

/// The encoding size of a list of `outcomes_max` outcomes: sizes reply buffers.
pub fn outcomes_encoded_bytes_max(outcomes_max: u32) -> u64 {
    let per_outcome = u64::try_from(OUTCOME_ENCODED_BYTES).expect("small constant");
    let header = u64::try_from(LIST_HEADER_BYTES).expect("small constant");
    header + u64::from(outcomes_max) * per_outcome
}

/// The stable kind byte of `command` (see the module's table).
pub fn command_kind(command: &Command) -> u8 {
    match command {
        Command::CreateResource { .. } => KIND_CREATE_RESOURCE,
        Command::Reserve { .. } => KIND_RESERVE,
        Command::ReserveAny { .. } => KIND_RESERVE_ANY,
        Command::Activate { .. } => KIND_ACTIVATE,
        Command::Renew { .. } => KIND_RENEW,
        Command::Release { .. } => KIND_RELEASE,
        Command::Revoke { .. } => KIND_REVOKE,
        Command::Reclaim { .. } => KIND_RECLAIM,
        Command::Expire { .. } => KIND_EXPIRE,
        Command::RegisterSession { .. } => KIND_REGISTER_SESSION,
    }
}

/// Appends `request` to `writer`: exactly [`request_encoded_bytes`] bytes.
///
/// ```
/// use allocdb_core::{Command, Request, Reader, Writer, codec};
/// let request = Request { operation_id: 7, command: Command::CreateResource { resource: 1, pool: None } };
/// let mut bytes = Vec::new();
/// codec::encode_request(&request, &mut Writer::new(&mut bytes));
/// let mut reader = Reader::new(&bytes);
/// let decoded = codec::decode_request(&mut reader, codec::RequestOrigin::Client).unwrap();
/// assert_eq!(decoded, request);
/// assert_eq!(reader.finish(), Ok(()));
/// ```
pub fn encode_request(request: &Request, writer: &mut Writer) {
    let start = writer.len();
    writer.u128(request.operation_id);
    writer.u8(command_kind(&request.command));
    match &request.command {
        Command::CreateResource { resource, pool } => {
            writer.u128(*resource);
            encode_option_u128(writer, *pool);
        }
        Command::Reserve {
            resources,
            holder,
            ttl_slots,
        } => {
            encode_bundle(resources, writer);
            writer.u128(*holder);
            writer.u64(*ttl_slots);
        }
        Command::ReserveAny {
            pool,
            count,
            holder,
            ttl_slots,
        } => {
            writer.u128(*pool);
            writer.u32(*count);
            writer.u128(*holder);
            writer.u64(*ttl_slots);
        }
        Command::Activate {
            lease,
            holder,
            epoch,
            ttl_slots,
        } => {
            encode_lease_holder_epoch(writer, *lease, *holder, *epoch);
            encode_option_u64(writer, *ttl_slots);
        }
        Command::Renew {
            lease,
            holder,
            epoch,
            ttl_slots,
        } => {
            encode_lease_holder_epoch(writer, *lease, *holder, *epoch);
            writer.u64(*ttl_slots);
        }
        Command::Release {
            lease,
            holder,
            epoch,
        } => encode_lease_holder_epoch(writer, *lease, *holder, *epoch),
        Command::Revoke { lease } | Command::Reclaim { lease } => writer.u128(lease.0),
        Command::RegisterSession { client } => writer.u128(*client),
        Command::Expire {
            lease,
            deadline_slot,
        } => {
            writer.u128(lease.0);
            writer.u64(*deadline_slot);
        }
    }
    assert_eq!(writer.len() - start, request_encoded_bytes(request));
}

fn encode_lease_holder_epoch(writer: &mut Writer, lease: LeaseId, holder: u128, epoch: u64) {
    writer.u128(lease.0);
    writer.u128(holder);
    writer.u64(epoch);
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

fn encode_option_u64(writer: &mut Writer, value: Option<u64>) {
    match value {
        None => writer.u8(0),
        Some(value) => {
            writer.u8(1);
            writer.u64(value);
        }
    }
}

/// Reads one request. `origin` decides whether the internal `Expire` kind is accepted.
///
/// # Errors
/// As [`decode_request_into`].
pub fn decode_request(reader: &mut Reader, origin: RequestOrigin) -> Result<Request, DecodeError> {
    let mut request = Request::BLANK;
    decode_request_into(reader, origin, &mut request)?;
    Ok(request)
}

/// Reads one request into `request`, overwriting it field by field. A request is about 300
/// bytes (a bundle holds 16 ids); decoding in place, straight into the caller's list, spares
/// the copies a returned value takes on its way there (several per request, on every replica,
/// for every command).
///
/// # Errors
/// [`DecodeError::Truncated`] if the input ends inside the request; [`DecodeError::Invalid`]
/// for an unknown kind byte, an `Expire` from [`RequestOrigin::Client`], or a presence byte
/// other than 0 or 1; [`DecodeError::TooLarge`] for a bundle over [`BUNDLE_SIZE_LIMIT`].
/// After an error the reader's position and `request` are unspecified.
pub fn decode_request_into(
    reader: &mut Reader,
    origin: RequestOrigin,
    request: &mut Request,
) -> Result<(), DecodeError> {
    let start = reader.offset();
    request.operation_id = reader.u128("request operation_id")?;
    let kind_offset = reader.offset();
    let kind = reader.u8("request kind")?;
    let command = &mut request.command;
    match kind {
        KIND_CREATE_RESOURCE => {
            *command = Command::CreateResource {
                resource: reader.u128("create_resource resource")?,
                pool: decode_option_u128(
                    reader,
                    "create_resource pool presence",
                    "create_resource pool",
                )?,
            };
        }
        KIND_RESERVE => decode_reserve_into(reader, command)?,
        KIND_RESERVE_ANY => {
            *command = Command::ReserveAny {
                pool: reader.u128("reserve_any pool")?,
                count: reader.u32("reserve_any count")?,
                holder: reader.u128("reserve_any holder")?,
                ttl_slots: reader.u64("reserve_any ttl_slots")?,
            };
        }
        KIND_REGISTER_SESSION => {
            *command = Command::RegisterSession {
                client: reader.u128("register_session client")?,
            };
        }
        KIND_EXPIRE if origin == RequestOrigin::Client => {
            return Err(DecodeError::Invalid {
                what: "request kind (expire is internal and never accepted from a client)",
                offset: kind_offset,
                value: u64::from(KIND_EXPIRE),
            });
        }
        KIND_ACTIVATE | KIND_RENEW | KIND_RELEASE | KIND_REVOKE | KIND_RECLAIM | KIND_EXPIRE => {
            *command = decode_lease_command(reader, kind)?;
        }
        _ => {
            return Err(DecodeError::Invalid {
                what: "request kind",
                offset: kind_offset,
                value: u64::from(kind),
            });
        }
    }
    assert_eq!(command_kind(&request.command), kind);
    assert_eq!(reader.offset() - start, request_encoded_bytes(request));
    assert!(origin == RequestOrigin::Log || !request.command.is_internal());
    Ok(())
}

/// Decodes the fields of a command addressed to an existing lease; `kind` is one of them.
fn decode_lease_command(reader: &mut Reader, kind: u8) -> Result<Command, DecodeError> {
    let command = match kind {
        KIND_ACTIVATE => Command::Activate {
            lease: LeaseId(reader.u128("activate lease")?),
            holder: reader.u128("activate holder")?,
            epoch: reader.u64("activate epoch")?,
            ttl_slots: decode_option_u64(
                reader,
                "activate ttl_slots presence",
                "activate ttl_slots",
            )?,
        },
        KIND_RENEW => Command::Renew {
            lease: LeaseId(reader.u128("renew lease")?),
            holder: reader.u128("renew holder")?,
            epoch: reader.u64("renew epoch")?,
            ttl_slots: reader.u64("renew ttl_slots")?,
        },
        KIND_RELEASE => Command::Release {
            lease: LeaseId(reader.u128("release lease")?),
            holder: reader.u128("release holder")?,
            epoch: reader.u64("release epoch")?,
        },
        KIND_REVOKE => Command::Revoke {
            lease: LeaseId(reader.u128("revoke lease")?),
        },
        KIND_RECLAIM => Command::Reclaim {
            lease: LeaseId(reader.u128("reclaim lease")?),
        },
        KIND_EXPIRE => Command::Expire {
            lease: LeaseId(reader.u128("expire lease")?),
            deadline_slot: reader.u64("expire deadline_slot")?,
        },
        _ => unreachable!("decode_lease_command called with kind {kind}"),
    };
    assert_eq!(command_kind(&command), kind);
    Ok(command)
}

/// Writes a bundle: a `u8` length, then the ids. Shared by every format that carries one.
pub fn encode_bundle(bundle: &Bundle, writer: &mut Writer) {
    assert!(bundle.len() <= BUNDLE_SIZE_LIMIT, "bundle over its limit");
    writer.u8(u8::try_from(bundle.len()).expect("BUNDLE_SIZE_LIMIT fits in u8"));
    for resource in bundle.as_slice() {
        writer.u128(*resource);
    }
}

/// Reads a bundle written by [`encode_bundle`]; `what` names it in errors.
///
/// # Errors
/// Truncated input, or a length above [`BUNDLE_SIZE_LIMIT`] (checked before any id is read).
pub fn decode_bundle(reader: &mut Reader, what: &'static str) -> Result<Bundle, DecodeError> {
    let mut bundle = Bundle::EMPTY;
    decode_bundle_into(reader, what, &mut bundle)?;
    Ok(bundle)
}

/// Reads a bundle into `bundle` (emptied first), in place; as [`decode_bundle`].
fn decode_bundle_into(
    reader: &mut Reader,
    what: &'static str,
    bundle: &mut Bundle,
) -> Result<(), DecodeError> {
    // Emptied as `Bundle::EMPTY`, not by its length alone: equality and hashing read every
    // slot, so the slots past the length must stay zero. A fresh placeholder already is.
    if !bundle.is_empty() {
        *bundle = Bundle::EMPTY;
    }
    let len = reader.u8(what)?;
    if usize::from(len) > BUNDLE_SIZE_LIMIT {
        return Err(DecodeError::TooLarge {
            what,
            value: u64::from(len),
            max: u64::try_from(BUNDLE_SIZE_LIMIT).expect("small constant"),
        });
    }
    for _ in 0..len {
        bundle.push(reader.u128(what)?);
    }
    assert_eq!(bundle.len(), usize::from(len));
    Ok(())
}

/// Reads a `reserve` into `command`, filling its bundle where it lies. A `command` that is
/// already a `reserve` (a [`Request::BLANK`], as every list slot starts) is reused as it
/// is: making it one again would write its 16 ids' worth of zeros.
fn decode_reserve_into(reader: &mut Reader, command: &mut Command) -> Result<(), DecodeError> {
    if !matches!(command, Command::Reserve { .. }) {
        *command = Request::BLANK.command;
    }
    let Command::Reserve {
        resources,
        holder,
        ttl_slots,
    } = command
    else {
        unreachable!("made a reserve above");
    };
    decode_bundle_into(reader, "reserve bundle", resources)?;
    *holder = reader.u128("reserve holder")?;
    *ttl_slots = reader.u64("reserve ttl_slots")?;
    Ok(())
}

fn decode_option_u128(
    reader: &mut Reader,
    presence: &'static str,
    what: &'static str,
) -> Result<Option<u128>, DecodeError> {
    if reader.bool(presence)? {
        Ok(Some(reader.u128(what)?))
    } else {
        Ok(None)
    }
}

fn decode_option_u64(
    reader: &mut Reader,
    presence: &'static str,
    what: &'static str,
) -> Result<Option<u64>, DecodeError> {
    if reader.bool(presence)? {
        Ok(Some(reader.u64(what)?))
    } else {
        Ok(None)
    }
}

/// Appends `outcome` to `writer`: exactly [`OUTCOME_ENCODED_BYTES`] bytes.
pub fn encode_outcome(outcome: &Outcome, writer: &mut Writer) {
    let start = writer.len();
    writer.u8(outcome.code as u8);
    writer.u8(u8::from(outcome.retry));
    writer.u128(outcome.lease.0);
    writer.u64(outcome.epoch);
    writer.u64(outcome.deadline_slot);
    assert_eq!(writer.len() - start, OUTCOME_ENCODED_BYTES);
}

/// Reads one outcome.
///
/// # Errors
/// [`DecodeError::Truncated`] if the input ends inside the outcome; [`DecodeError::Invalid`]
/// for a result code no [`ResultCode`] has, or a retry flag other than 0 or 1.
pub fn decode_outcome(reader: &mut Reader) -> Result<Outcome, DecodeError> {
    let start = reader.offset();
    let code_value = reader.u8("outcome code")?;
    let Some(code) = ResultCode::from_u8(code_value) else {
        return Err(DecodeError::Invalid {
            what: "outcome code",
            offset: start,
            value: u64::from(code_value),
        });
    };
    let retry = reader.bool("outcome retry flag")?;
    let outcome = Outcome {
        code,
        retry,
        lease: LeaseId(reader.u128("outcome lease")?),
        epoch: reader.u64("outcome epoch")?,
        deadline_slot: reader.u64("outcome deadline_slot")?,
    };
    assert_eq!(reader.offset() - start, OUTCOME_ENCODED_BYTES);
    Ok(outcome)
}

/// Appends a batch — header (`BATCH_FORMAT_VERSION`, count) and every request — to `out`.
/// The caller bounds `requests` (by `Config::batch_requests_max`) before encoding.
///
/// ```
/// use allocdb_core::{Command, LeaseId, Request, codec};
/// let requests = [Request { operation_id: 1, command: Command::Revoke { lease: LeaseId(5) } }];
/// let mut bytes = Vec::new();
/// codec::encode_batch(&requests, &mut bytes);
/// let mut decoded = Vec::with_capacity(16);
/// codec::decode_batch(&bytes, codec::RequestOrigin::Client, 16, &mut decoded).unwrap();
/// assert_eq!(decoded, requests);
/// ```
pub fn encode_batch(requests: &[Request], out: &mut Vec<u8>) {
    encode_list(requests, BATCH_FORMAT_VERSION, out, encode_request);
}

/// Decodes a whole batch from `bytes` into `out`, which is cleared first. `out` must have
/// been created with capacity for `requests_max` requests (asserted): decoding then never
/// allocates, whatever the bytes say, because a count over `requests_max` is rejected before
/// any request is decoded. On error `out` is left empty.
///
/// # Errors
/// [`DecodeError::Invalid`] for an unknown format version or any request error (see
/// [`decode_request`]); [`DecodeError::TooLarge`] for a count over `requests_max`;
/// [`DecodeError::Truncated`] when the bytes end early (or cannot hold the count);
/// [`DecodeError::TrailingBytes`] when bytes follow the last request.
pub fn decode_batch(
    bytes: &[u8],
    origin: RequestOrigin,
    requests_max: u32,
    out: &mut Vec<Request>,
) -> Result<(), DecodeError> {
    let list = ListFormat {
        version: BATCH_FORMAT_VERSION,
        version_what: "batch format version",
        count_what: "batch request count",
        items_what: "batch requests",
        item_bytes_min: REQUEST_ENCODED_BYTES_MIN,
    };
    decode_list(
        bytes,
        &list,
        requests_max,
        out,
        Request::BLANK,
        |reader, request| decode_request_into(reader, origin, request),
    )
}

/// Appends an outcome list — header (`OUTCOMES_FORMAT_VERSION`, count) and every outcome —
/// to `out`.
pub fn encode_outcomes(outcomes: &[Outcome], out: &mut Vec<u8>) {
    encode_list(outcomes, OUTCOMES_FORMAT_VERSION, out, encode_outcome);
}

/// Decodes a whole outcome list from `bytes` into `out`, with the same contract as
/// [`decode_batch`]: `out` has capacity for `outcomes_max`, is cleared first, and is left
/// empty on error.
///
/// # Errors
/// As [`decode_batch`], with outcome errors from [`decode_outcome`].
pub fn decode_outcomes(
    bytes: &[u8],
    outcomes_max: u32,
    out: &mut Vec<Outcome>,
) -> Result<(), DecodeError> {
    let list = ListFormat {
        version: OUTCOMES_FORMAT_VERSION,
        version_what: "outcome list format version",
        count_what: "outcome list count",
        items_what: "outcome list outcomes",
        item_bytes_min: OUTCOME_ENCODED_BYTES,
    };
    let blank = Outcome::code(ResultCode::Ok);
    decode_list(bytes, &list, outcomes_max, out, blank, |reader, outcome| {
        *outcome = decode_outcome(reader)?;
        Ok(())
    })
}

/// What distinguishes one list format from another; the framing code is shared.
struct ListFormat {
    version: u16,
    version_what: &'static str,
    count_what: &'static str,
    items_what: &'static str,
    item_bytes_min: usize,
}

fn encode_list<T>(
    items: &[T],
    version: u16,
    out: &mut Vec<u8>,
    mut encode_item: impl FnMut(&T, &mut Writer),
) {
    let count = u32::try_from(items.len()).expect("a list is bounded far below u32::MAX items");
    let start = out.len();
    let mut writer = Writer::new(out);
    writer.u16(version);
    writer.u32(count);
    for item in items {
        encode_item(item, &mut writer);
    }
    assert!(writer.len() - start >= LIST_HEADER_BYTES);
}

/// Each item is decoded in place: `blank` is pushed, then `decode_item` overwrites it.
fn decode_list<T: Copy>(
    bytes: &[u8],
    list: &ListFormat,
    count_max: u32,
    out: &mut Vec<T>,
    blank: T,
    decode_item: impl FnMut(&mut Reader, &mut T) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    // u32 -> usize is lossless on every target AllocDB supports (32 and 64 bit).
    let count_max_usize = usize::try_from(count_max).unwrap_or(usize::MAX);
    assert!(
        out.capacity() >= count_max_usize,
        "decode buffer must be reserved for {count_max} items up front, has {}",
        out.capacity()
    );
    let capacity = out.capacity();
    out.clear();
    let result = decode_list_items(bytes, list, count_max, out, blank, decode_item);
    if result.is_err() {
        out.clear();
    }
    assert!(out.len() <= count_max_usize);
    assert_eq!(
        out.capacity(),
        capacity,
        "decoding grew the caller's buffer"
    );
    result
}

fn decode_list_items<T: Copy>(
    bytes: &[u8],
    list: &ListFormat,
    count_max: u32,
    out: &mut Vec<T>,
    blank: T,
    mut decode_item: impl FnMut(&mut Reader, &mut T) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut reader = Reader::new(bytes);
    let version_offset = reader.offset();
    let version = reader.u16(list.version_what)?;
    if version != list.version {
        return Err(DecodeError::Invalid {
            what: list.version_what,
            offset: version_offset,
            value: u64::from(version),
        });
    }
    let count = reader.count(list.count_what, count_max)?;
    // Reject a count the input cannot hold before decoding anything: cheap, and it stops a
    // short frame claiming many items from costing `count` decode attempts.
    let count_usize = usize::try_from(count).unwrap_or(usize::MAX);
    if count_usize.saturating_mul(list.item_bytes_min) > reader.remaining() {
        return Err(DecodeError::Truncated {
            what: list.items_what,
            offset: reader.offset(),
        });
    }
    for _ in 0..count {
        debug_assert!(out.len() < out.capacity());
        out.push(blank);
        decode_item(&mut reader, out.last_mut().expect("pushed above"))?;
    }
    reader.finish()?;
    assert_eq!(out.len(), count_usize);
    Ok(())
}

#[cfg(test)]
mod tests;
