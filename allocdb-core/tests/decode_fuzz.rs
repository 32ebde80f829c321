//! Decoding hostile bytes: arbitrary input and truncations of valid encodings never panic,
//! truncations are errors, valid encodings round-trip, every accepted input is the canonical
//! encoding of what it decoded to, and decoding a batch into a pre-reserved buffer allocates
//! nothing, whatever the bytes claim.

// Counting allocations needs a global allocator, and `unsafe impl GlobalAlloc` cannot be
// written without `unsafe`. The impl only forwards to `System` and bumps a thread-local counter.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use allocdb_core::codec::{
    BATCH_FORMAT_VERSION, OUTCOMES_FORMAT_VERSION, REQUEST_ENCODED_BYTES_MAX,
    batch_encoded_bytes_max,
};
use allocdb_core::{
    BUNDLE_SIZE_LIMIT, Bundle, Command, DecodeError, LeaseId, Outcome, Reader, Request,
    RequestOrigin, ResultCode, Writer, decode_batch, decode_outcome, decode_outcomes,
    decode_request, encode_batch, encode_outcome, encode_outcomes, encode_request,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

struct CountingAllocator;

thread_local! {
    // Per thread, because the test harness runs tests (and their allocations) in parallel.
    // A `const` initialiser needs no lazy setup, so touching it never allocates.
    static ALLOCATED_BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with` fails only during thread teardown, when nothing is being measured.
    let _ = ALLOCATED_BYTES.try_with(|counter| {
        counter.set(counter.get() + u64::try_from(bytes).unwrap_or(u64::MAX));
    });
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract for `layout` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Bytes allocated on this thread while `f` ran.
fn allocated_bytes_during<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATED_BYTES.with(Cell::get);
    let value = f();
    let after = ALLOCATED_BYTES.with(Cell::get);
    (value, after - before)
}

const REQUESTS_MAX: u32 = 64;

fn requests_buffer() -> Vec<Request> {
    Vec::with_capacity(REQUESTS_MAX as usize)
}

fn lease_id() -> impl Strategy<Value = LeaseId> {
    prop_oneof![
        Just(LeaseId(0)),
        (1..4_u128).prop_map(LeaseId),
        any::<u128>().prop_map(LeaseId)
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let bundle = proptest::collection::vec(any::<u128>(), 0..=BUNDLE_SIZE_LIMIT)
        .prop_map(|ids| Bundle::from_slice(&ids).expect("at most the limit"));
    prop_oneof![
        (any::<u128>(), any::<Option<u128>>())
            .prop_map(|(resource, pool)| Command::CreateResource { resource, pool }),
        (bundle, any::<u128>(), any::<u64>()).prop_map(|(resources, holder, ttl_slots)| {
            Command::Reserve {
                resources,
                holder,
                ttl_slots,
            }
        }),
        (any::<u128>(), any::<u32>(), any::<u128>(), any::<u64>()).prop_map(
            |(pool, count, holder, ttl_slots)| Command::ReserveAny {
                pool,
                count,
                holder,
                ttl_slots
            }
        ),
        (
            lease_id(),
            any::<u128>(),
            any::<u64>(),
            any::<Option<u64>>()
        )
            .prop_map(|(lease, holder, epoch, ttl_slots)| Command::Activate {
                lease,
                holder,
                epoch,
                ttl_slots
            }),
        (lease_id(), any::<u128>(), any::<u64>(), any::<u64>()).prop_map(
            |(lease, holder, epoch, ttl_slots)| Command::Renew {
                lease,
                holder,
                epoch,
                ttl_slots
            }
        ),
        (lease_id(), any::<u128>(), any::<u64>()).prop_map(|(lease, holder, epoch)| {
            Command::Release {
                lease,
                holder,
                epoch,
            }
        }),
        lease_id().prop_map(|lease| Command::Revoke { lease }),
        lease_id().prop_map(|lease| Command::Reclaim { lease }),
        (lease_id(), any::<u64>()).prop_map(|(lease, deadline_slot)| Command::Expire {
            lease,
            deadline_slot
        }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (any::<u128>(), command()).prop_map(|(operation_id, command)| Request {
        operation_id,
        command,
    })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    (
        proptest::sample::select(ResultCode::ALL.to_vec()),
        any::<bool>(),
        any::<u128>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(code, retry, lease, epoch, deadline_slot)| Outcome {
            code,
            retry,
            lease: LeaseId(lease),
            epoch,
            deadline_slot,
        })
}

fn encode_one(request: &Request) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_request(request, &mut Writer::new(&mut bytes));
    bytes
}

/// Decodes everything `bytes` could be and checks that whatever is accepted is canonical:
/// re-encoding it gives back exactly the bytes that were consumed.
fn decode_everything(bytes: &[u8]) {
    for origin in [RequestOrigin::Client, RequestOrigin::Log] {
        let mut reader = Reader::new(bytes);
        if let Ok(request) = decode_request(&mut reader, origin) {
            assert!(origin == RequestOrigin::Log || !request.command.is_internal());
            assert_eq!(encode_one(&request), &bytes[..reader.offset()]);
        }
        let mut requests = requests_buffer();
        if decode_batch(bytes, origin, REQUESTS_MAX, &mut requests).is_ok() {
            let mut again = Vec::new();
            encode_batch(&requests, &mut again);
            assert_eq!(again, bytes);
        }
    }
    let mut reader = Reader::new(bytes);
    if let Ok(outcome) = decode_outcome(&mut reader) {
        let mut again = Vec::new();
        encode_outcome(&outcome, &mut Writer::new(&mut again));
        assert_eq!(again, &bytes[..reader.offset()]);
    }
    let mut outcomes = Vec::with_capacity(REQUESTS_MAX as usize);
    if decode_outcomes(bytes, REQUESTS_MAX, &mut outcomes).is_ok() {
        let mut again = Vec::new();
        encode_outcomes(&outcomes, &mut again);
        assert_eq!(again, bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::with_cases(4096)
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        decode_everything(&bytes);
    }

    /// Random bytes behind a valid header reach the per-element decoders far more often than
    /// fully random bytes do.
    #[test]
    fn arbitrary_bodies_behind_valid_headers_never_panic(
        batch_header in any::<bool>(),
        count in 0..8_u32,
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = Vec::new();
        let mut writer = Writer::new(&mut bytes);
        writer.u16(if batch_header { BATCH_FORMAT_VERSION } else { OUTCOMES_FORMAT_VERSION });
        writer.u32(count);
        writer.bytes(&body);
        decode_everything(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::with_cases(512)
    })]

    #[test]
    fn requests_round_trip_and_every_truncation_fails(request in request()) {
        let bytes = encode_one(&request);
        prop_assert!(bytes.len() <= REQUEST_ENCODED_BYTES_MAX);
        let mut reader = Reader::new(&bytes);
        prop_assert_eq!(decode_request(&mut reader, RequestOrigin::Log), Ok(request));
        prop_assert_eq!(reader.finish(), Ok(()));
        let client = decode_request(&mut Reader::new(&bytes), RequestOrigin::Client);
        prop_assert_eq!(client.is_err(), request.command.is_internal());
        for len in 0..bytes.len() {
            let truncated = decode_request(&mut Reader::new(&bytes[..len]), RequestOrigin::Log);
            let is_truncated = matches!(truncated, Err(DecodeError::Truncated { .. }));
            prop_assert!(is_truncated, "cut at {}: {:?}", len, truncated);
        }
    }

    #[test]
    fn batches_round_trip_and_every_truncation_fails(
        requests in proptest::collection::vec(request(), 0..REQUESTS_MAX as usize),
    ) {
        let mut bytes = Vec::new();
        encode_batch(&requests, &mut bytes);
        prop_assert!(bytes.len() as u64 <= batch_encoded_bytes_max(REQUESTS_MAX));
        let mut out = requests_buffer();
        prop_assert_eq!(decode_batch(&bytes, RequestOrigin::Log, REQUESTS_MAX, &mut out), Ok(()));
        prop_assert_eq!(&out, &requests);
        let has_internal = requests.iter().any(|r| r.command.is_internal());
        let client = decode_batch(&bytes, RequestOrigin::Client, REQUESTS_MAX, &mut out);
        prop_assert_eq!(client.is_err(), has_internal);
        for len in 0..bytes.len() {
            let truncated = decode_batch(&bytes[..len], RequestOrigin::Log, REQUESTS_MAX, &mut out);
            prop_assert!(truncated.is_err(), "cut at {} decoded", len);
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn outcome_lists_round_trip_and_every_truncation_fails(
        outcomes in proptest::collection::vec(outcome(), 0..REQUESTS_MAX as usize),
    ) {
        let mut bytes = Vec::new();
        encode_outcomes(&outcomes, &mut bytes);
        let mut out = Vec::with_capacity(REQUESTS_MAX as usize);
        prop_assert_eq!(decode_outcomes(&bytes, REQUESTS_MAX, &mut out), Ok(()));
        prop_assert_eq!(&out, &outcomes);
        for len in 0..bytes.len() {
            prop_assert!(decode_outcomes(&bytes[..len], REQUESTS_MAX, &mut out).is_err());
        }
    }

    #[test]
    fn corrupted_batches_never_panic(
        requests in proptest::collection::vec(request(), 1..16),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = Vec::new();
        encode_batch(&requests, &mut bytes);
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        decode_everything(&bytes);
    }

    #[test]
    fn decoding_into_a_reserved_buffer_allocates_nothing(
        requests in proptest::collection::vec(request(), 0..REQUESTS_MAX as usize),
        claimed_count in prop_oneof![Just(u32::MAX), Just(REQUESTS_MAX), Just(REQUESTS_MAX + 1), any::<u32>()],
        cut in any::<prop::sample::Index>(),
    ) {
        let mut valid = Vec::new();
        encode_batch(&requests, &mut valid);
        let mut lying = valid.clone();
        lying[2..6].copy_from_slice(&claimed_count.to_le_bytes());
        let truncated = &valid[..cut.index(valid.len())];
        let mut out = requests_buffer();
        for bytes in [&valid[..], &lying[..], truncated] {
            for origin in [RequestOrigin::Client, RequestOrigin::Log] {
                let (_, allocated) = allocated_bytes_during(|| {
                    decode_batch(bytes, origin, REQUESTS_MAX, &mut out)
                });
                prop_assert_eq!(allocated, 0);
                prop_assert_eq!(out.capacity(), REQUESTS_MAX as usize);
            }
        }
    }
}

#[test]
fn a_huge_claimed_count_allocates_nothing_and_is_rejected_by_name() {
    let mut bytes = Vec::new();
    encode_batch(&[], &mut bytes);
    bytes[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut out = requests_buffer();
    let (result, allocated) = allocated_bytes_during(|| {
        decode_batch(&bytes, RequestOrigin::Client, REQUESTS_MAX, &mut out)
    });
    assert_eq!(allocated, 0);
    assert_eq!(
        result,
        Err(DecodeError::TooLarge {
            what: "batch request count",
            value: u64::from(u32::MAX),
            max: u64::from(REQUESTS_MAX)
        })
    );
}

/// The counter is live: without it the zero-allocation assertions above would prove nothing.
#[test]
fn the_allocation_counter_counts() {
    let (buffer, allocated) = allocated_bytes_during(|| Vec::<u8>::with_capacity(100));
    assert_eq!(buffer.capacity(), 100);
    assert!(
        allocated >= 100,
        "counted {allocated} bytes for a 100-byte buffer"
    );
}
