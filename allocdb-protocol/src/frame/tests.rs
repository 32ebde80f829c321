use allocdb_core::{
    Bundle, Command, LeaseId, LeaseState, LeaseView, Outcome, PoolStats, Request, ResourceState,
    ResourceView, ResultCode,
};
use proptest::prelude::*;

use super::*;
use crate::client::{ClientOperation, Query, ReadResult, ReplyBody};

const CLUSTER: u128 = 0x0A11_C0DB;

fn frame_of(kind: FrameKind, cluster_id: u128, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, kind, cluster_id, |b| b.extend_from_slice(body));
    out
}

fn header_of(bytes: &[u8]) -> [u8; HEADER_BYTES] {
    bytes[..HEADER_BYTES].try_into().expect("a whole header")
}

/// Recomputes the header checksum after a test edits a header field.
fn reseal(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[..32]);
    bytes[32..36].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_frame_round_trips_and_reports_its_length() {
    let bytes = frame_of(FrameKind::PeerMessage, CLUSTER, b"hello");
    assert_eq!(bytes.len(), HEADER_BYTES + 5);
    assert_eq!(&bytes[..4], b"ALDB");
    let limits = FrameLimits::client(CLUSTER);
    let DecodedFrame {
        header,
        body,
        frame_bytes: len,
    } = decode_frame(&bytes, &limits).unwrap().unwrap();
    assert_eq!(
        (header.kind, header.cluster_id, header.body_len),
        (FrameKind::PeerMessage, CLUSTER, 5)
    );
    assert_eq!((body, len), (&b"hello"[..], bytes.len()));
    // Every proper prefix asks for more bytes rather than failing.
    for cut in 0..bytes.len() {
        assert_eq!(
            decode_frame(&bytes[..cut], &limits),
            Ok(None),
            "prefix {cut}"
        );
    }
}

/// An edit to a frame's bytes, made by a test.
type HeaderEdit = fn(&mut Vec<u8>);

#[test]
fn header_errors_are_named_in_validation_order() {
    let good = frame_of(FrameKind::ClientRequests, CLUSTER, &[0, 0, 0, 0]);
    let limits = FrameLimits::client(CLUSTER);
    // (edit, expected error code)
    let cases: [(HeaderEdit, ErrorCode); 7] = [
        (|b| b[0] ^= 1, ErrorCode::BadMagic),
        (|b| b[4] = 9, ErrorCode::WrongVersion),
        (|b| b[20] ^= 1, ErrorCode::BadChecksum),
        (
            |b| {
                b[7] = 1;
                reseal(b);
            },
            ErrorCode::Malformed,
        ),
        (
            |b| {
                b[6] = 99;
                reseal(b);
            },
            ErrorCode::Malformed,
        ),
        (
            |b| {
                b[8] ^= 1;
                reseal(b);
            },
            ErrorCode::WrongCluster,
        ),
        (
            |b| {
                b[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
                reseal(b);
            },
            ErrorCode::Oversized,
        ),
    ];
    for (index, (edit, code)) in cases.into_iter().enumerate() {
        let mut bytes = good.clone();
        edit(&mut bytes);
        let error = decode_header(&header_of(&bytes), &limits).unwrap_err();
        assert_eq!(error.code(), code, "case {index}: {error}");
    }
    let mut bytes = good.clone();
    *bytes.last_mut().unwrap() ^= 1;
    assert_eq!(
        decode_frame(&bytes, &limits),
        Err(FrameError::BadChecksum { what: "body" })
    );
}

#[test]
fn an_oversized_length_is_refused_from_the_header_alone() {
    let mut header = header_of(&frame_of(FrameKind::ClientRequests, CLUSTER, &[]));
    header[24..28].copy_from_slice(&(CLIENT_BODY_BYTES_MAX + 1).to_le_bytes());
    reseal(&mut header);
    // No body bytes follow: the error comes without waiting for them.
    let error = decode_frame(&header, &FrameLimits::client(CLUSTER)).unwrap_err();
    assert_eq!(
        error,
        FrameError::Oversized {
            body_len: CLIENT_BODY_BYTES_MAX + 1,
            max: CLIENT_BODY_BYTES_MAX
        }
    );
}

#[test]
fn a_foreign_prefix_is_refused_before_the_header_is_complete() {
    let bytes = frame_of(FrameKind::PeerPing, CLUSTER, &[]);
    for len in 0..=HEADER_BYTES {
        assert_eq!(check_header_prefix(&bytes[..len]), Ok(()), "prefix {len}");
    }
    assert_eq!(
        check_header_prefix(b"GET "),
        Err(FrameError::BadMagic {
            found: u32::from_le_bytes(*b"GET ")
        })
    );
    assert_eq!(
        check_header_prefix(b"ALDB\x01\x00"),
        Err(FrameError::WrongVersion { found: 1 })
    );
    assert_eq!(check_header_prefix(b"AL"), Ok(()));
}

#[test]
fn tls_bytes_on_a_plaintext_connection_are_named_as_tls() {
    // What a TLS server answers plaintext with (a fatal alert), and what a TLS client sends
    // first (a client hello), each as the first bytes a plaintext reader sees.
    for (what, bytes) in [
        ("alert", &b"\x15\x03\x03\x00\x02\x02\x32"[..]),
        ("client hello", &b"\x16\x03\x01\x02\x00\x01"[..]),
    ] {
        let error = check_header_prefix(bytes).expect_err(what);
        assert!(error.is_tls_record(), "{what}: {error:?}");
        assert_eq!(error.code(), ErrorCode::BadMagic, "{what}");
        let message = error.to_string();
        assert!(message.contains("TLS record"), "{what}: {message}");
    }
    // HTTP both ways is named as such, and is not TLS.
    for (bytes, named) in [
        (&b"HTTP/1.1 404 Not Found"[..], "an HTTP response"),
        (b"GET /metrics HTTP/1.1", "an HTTP request"),
    ] {
        let error = check_header_prefix(bytes).expect_err("bad magic");
        assert!(!error.is_tls_record(), "{bytes:?}");
        assert!(error.to_string().contains(named), "{error}");
    }
    // Other foreign bytes are only a bad magic: noise whose first byte is a TLS content type
    // but whose version is not 3.x, a content type beyond 23, zeros.
    for bytes in [
        &b"\x16\x02\x01\x00"[..],
        b"\x18\x03\x03\x00",
        b"\x00\x00\x00\x00",
    ] {
        let error = check_header_prefix(bytes).expect_err("bad magic");
        assert!(!error.is_tls_record(), "{bytes:?}");
        assert!(!error.to_string().contains(": these bytes"), "{error}");
    }
    // The magic itself is never taken for TLS (its first byte, b'A', is no record type).
    assert!(!FrameError::BadMagic { found: MAGIC }.is_tls_record());
}

#[test]
fn cluster_zero_is_accepted_only_where_allowed() {
    let limits = FrameLimits::client(CLUSTER);
    for kind in FrameKind::ALL {
        let bytes = frame_of(kind, 0, &[]);
        let result = decode_header(&header_of(&bytes), &limits);
        assert_eq!(result.is_ok(), kind.allows_any_cluster(), "{kind:?}");
    }
    // A receiver that does not know its cluster yet (a client before the welcome) takes any.
    let bytes = frame_of(FrameKind::ClientWelcome, 42, &[]);
    assert!(decode_header(&header_of(&bytes), &FrameLimits::client(0)).is_ok());
}

#[test]
fn kinds_and_codes_round_trip_by_value() {
    for kind in FrameKind::ALL {
        assert_eq!(FrameKind::from_u8(kind as u8), Some(kind));
    }
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u8(code as u8), Some(code));
    }
    for role in Role::ALL {
        assert_eq!(Role::from_u8(role as u8), Some(role));
    }
    assert_eq!(FrameKind::from_u8(0), None);
    assert_eq!(ErrorCode::from_u8(0), None);
}

#[test]
fn small_bodies_round_trip_and_refuse_trailing_bytes() {
    let handshake = PeerHandshake {
        replica_index: 2,
        replica_count: 3,
        config: vec![10, 65_536, u64::MAX],
        addresses: vec!["a:1".to_string(), "bé:2".to_string(), String::new()],
    };
    let welcome = Welcome {
        replica_index: 1,
        replica_count: 3,
        role: Role::Backup,
        view: 9,
        primary_index: 0,
        slot_ms: 10,
        requests_per_frame_max: REQUESTS_PER_FRAME_MAX,
        clients_max: 16,
        session_requests_max: 64,
        operations_max: 4096,
        dedupe_window_slots: 10_000,
        ttl_slots_max: 1_000_000,
    };
    let status = StatusReply {
        replica_index: 0,
        replica_count: 1,
        role: Role::Primary,
        view: 3,
        op: 44,
        commit: 43,
        applied: 42,
        config_mismatch: "peer 2's address list is [b,a,c], ours is [a,b,c]".to_string(),
    };
    let error = ErrorBody::new(ErrorCode::WrongCluster, "cluster id 5 (this is cluster 6)");
    let mut bytes = Vec::new();
    handshake.encode(&mut bytes);
    assert_eq!(PeerHandshake::decode(&bytes), Ok(handshake.clone()));
    bytes.push(0);
    assert_eq!(
        PeerHandshake::decode(&bytes).unwrap_err().code(),
        ErrorCode::Malformed
    );
    bytes.clear();
    welcome.encode(&mut bytes);
    // docs/protocol.md gives the layout: 52 bytes, `ttl_slots_max` last.
    assert_eq!(bytes.len(), 52);
    assert_eq!(bytes[44..], 1_000_000u64.to_le_bytes());
    assert_eq!(Welcome::decode(&bytes), Ok(welcome));
    assert_eq!(
        Welcome::decode(&bytes[..44]).unwrap_err().code(),
        ErrorCode::Malformed
    );
    bytes.clear();
    status.encode(&mut bytes);
    assert_eq!(StatusReply::decode(&bytes), Ok(status.clone()));
    for cut in 0..bytes.len() {
        assert!(StatusReply::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    bytes.clear();
    error.encode(&mut bytes);
    assert_eq!(ErrorBody::decode(&bytes), Ok(error));
    bytes.clear();
    ClientHello { client_id: 77 }.encode(&mut bytes);
    assert_eq!(
        ClientHello::decode(&bytes),
        Ok(ClientHello { client_id: 77 })
    );
}

#[test]
fn peer_handshakes_decode_only_within_their_bounds() {
    let handshake = |config: usize, addresses: usize, address_bytes: usize| PeerHandshake {
        replica_index: 0,
        replica_count: 3,
        config: vec![7; config],
        addresses: vec!["x".repeat(address_bytes); addresses],
    };
    let largest = handshake(
        usize::from(HANDSHAKE_CONFIG_VALUES_MAX),
        usize::from(HANDSHAKE_ADDRESSES_MAX),
        usize::from(HANDSHAKE_ADDRESS_BYTES_MAX),
    );
    let mut bytes = Vec::new();
    largest.encode(&mut bytes);
    assert_eq!(PeerHandshake::decode(&bytes), Ok(largest));
    for cut in 0..bytes.len() {
        assert_eq!(
            PeerHandshake::decode(&bytes[..cut]).unwrap_err().code(),
            ErrorCode::Malformed,
            "cut at {cut}"
        );
    }
    // Counts and lengths over the limits are refused before anything is allocated for them:
    // the encoder asserts the limits, so the over-long bodies are written by hand.
    let over_config = [0, 3, HANDSHAKE_CONFIG_VALUES_MAX + 1];
    let over_addresses = [0, 3, 0, HANDSHAKE_ADDRESSES_MAX + 1];
    let mut over_address_bytes = vec![0, 3, 0, 1];
    over_address_bytes.extend_from_slice(&(HANDSHAKE_ADDRESS_BYTES_MAX + 1).to_le_bytes());
    let not_utf8 = [0, 3, 0, 1, 2, 0, 0xC3, 0x28];
    for body in [
        &over_config[..],
        &over_addresses[..],
        &over_address_bytes[..],
        &not_utf8[..],
    ] {
        let error = PeerHandshake::decode(body).unwrap_err();
        assert_eq!(error.code(), ErrorCode::Malformed, "{body:?}: {error}");
    }
}

#[test]
fn peer_handshakes_are_checked_against_the_receiver() {
    let check = |index, count| {
        PeerHandshake {
            replica_index: index,
            replica_count: count,
            config: Vec::new(),
            addresses: Vec::new(),
        }
        .check_peer(1, 3)
    };
    assert_eq!(check(0, 3), Ok(0));
    assert_eq!(check(2, 3), Ok(2));
    for (index, count) in [(1, 3), (3, 3), (0, 5), (0, 1)] {
        assert_eq!(
            check(index, count).unwrap_err().code(),
            ErrorCode::WrongReplica,
            "{index} of {count}"
        );
    }
}

#[test]
fn error_messages_are_cut_at_a_character_boundary() {
    let long = "é".repeat(1000);
    let body = ErrorBody::new(ErrorCode::Malformed, &long);
    assert!(body.message.len() <= usize::from(ERROR_MESSAGE_BYTES_MAX));
    assert!(body.message.len() >= usize::from(ERROR_MESSAGE_BYTES_MAX) - 1);
    let mut bytes = Vec::new();
    body.encode(&mut bytes);
    assert_eq!(ErrorBody::decode(&bytes), Ok(body));
}

#[test]
fn an_expire_from_a_client_is_refused_with_its_own_code() {
    let expire = Request {
        operation_id: 0,
        command: Command::Expire {
            lease: LeaseId(5),
            deadline_slot: 3,
        },
    };
    let create = Request {
        operation_id: 1,
        command: Command::CreateResource {
            resource: 1,
            pool: None,
        },
    };
    let mut body = Vec::new();
    // encode_requests writes whatever it is given; the decoder is the gate.
    encode_requests(
        &[
            FrameRequest {
                request_id: 1,
                operation: ClientOperation::Write(create),
            },
            FrameRequest {
                request_id: 2,
                operation: ClientOperation::Write(expire),
            },
        ],
        &mut body,
    );
    let mut out = Vec::new();
    let error = decode_requests(&body, &mut out).unwrap_err();
    assert_eq!(error, FrameError::InternalCommandFromClient { index: 1 });
    assert_eq!(error.code(), ErrorCode::InternalCommandFromClient);
    assert!(out.is_empty());
}

#[test]
fn an_impossible_count_is_refused_before_decoding() {
    let mut body = Vec::new();
    body.extend_from_slice(&(REQUESTS_PER_FRAME_MAX + 1).to_le_bytes());
    let mut out = Vec::new();
    assert_eq!(
        decode_requests(&body, &mut out).unwrap_err().code(),
        ErrorCode::Malformed
    );
    let mut body = Vec::new();
    body.extend_from_slice(&REQUESTS_PER_FRAME_MAX.to_le_bytes());
    let error = decode_requests(&body, &mut out).unwrap_err();
    assert!(error.to_string().contains("request count"), "{error}");
    assert_eq!(out.capacity(), 0, "nothing was sized from the count");
}

#[test]
fn the_largest_entries_fit_the_client_body_limit() {
    let resources = Bundle::from_slice(&[u128::MAX; allocdb_core::BUNDLE_SIZE_LIMIT]).unwrap();
    let write = Request {
        operation_id: u128::MAX,
        command: Command::Reserve {
            resources,
            holder: 1,
            ttl_slots: 1,
        },
    };
    let requests = vec![
        FrameRequest {
            request_id: 1,
            operation: ClientOperation::Write(write)
        };
        REQUESTS_PER_FRAME_MAX as usize
    ];
    let mut body = Vec::new();
    encode_requests(&requests, &mut body);
    assert_eq!(
        body.len(),
        4 + REQUESTS_PER_FRAME_MAX as usize * REQUEST_ENTRY_BYTES_MAX
    );
    assert!(body.len() <= CLIENT_BODY_BYTES_MAX as usize);
    let view = LeaseView {
        id: LeaseId(1),
        holder: 2,
        state: LeaseState::Active,
        epoch: 3,
        resources,
        deadline_slot: 4,
        retire_slot: 5,
    };
    let reply = FrameReply {
        request_id: 1,
        body: ReplyBody::Read {
            op: 1,
            slot: 2,
            result: ReadResult::Lease(Ok(view)),
        },
    };
    let mut body = Vec::new();
    encode_replies(&vec![reply; REQUESTS_PER_FRAME_MAX as usize], &mut body);
    assert_eq!(
        body.len(),
        4 + REQUESTS_PER_FRAME_MAX as usize * REPLY_ENCODED_BYTES_MAX
    );
    assert!(body.len() <= CLIENT_BODY_BYTES_MAX as usize);
}

fn arb_command() -> impl Strategy<Value = Command> {
    let id = any::<u128>();
    prop_oneof![
        (id, proptest::option::of(any::<u128>()))
            .prop_map(|(resource, pool)| Command::CreateResource { resource, pool }),
        (
            proptest::collection::vec(any::<u128>(), 0..=16),
            any::<u128>(),
            any::<u64>()
        )
            .prop_map(|(ids, holder, ttl_slots)| {
                Command::Reserve {
                    resources: Bundle::from_slice(&ids).unwrap(),
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
            any::<u128>(),
            any::<u128>(),
            any::<u64>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(lease, holder, epoch, ttl_slots)| {
                Command::Activate {
                    lease: LeaseId(lease),
                    holder,
                    epoch,
                    ttl_slots,
                }
            }),
        (any::<u128>(), any::<u128>(), any::<u64>(), any::<u64>()).prop_map(
            |(lease, holder, epoch, ttl_slots)| Command::Renew {
                lease: LeaseId(lease),
                holder,
                epoch,
                ttl_slots
            }
        ),
        (any::<u128>(), any::<u128>(), any::<u64>()).prop_map(|(lease, holder, epoch)| {
            Command::Release {
                lease: LeaseId(lease),
                holder,
                epoch,
            }
        }),
        any::<u128>().prop_map(|lease| Command::Revoke {
            lease: LeaseId(lease)
        }),
        any::<u128>().prop_map(|lease| Command::Reclaim {
            lease: LeaseId(lease)
        }),
    ]
}

fn arb_request() -> impl Strategy<Value = FrameRequest> {
    let query = prop_oneof![
        any::<u128>().prop_map(Query::Resource),
        any::<u128>().prop_map(|id| Query::Lease(LeaseId(id))),
        any::<u128>().prop_map(Query::Pool),
    ];
    let operation = prop_oneof![
        (any::<u128>(), arb_command()).prop_map(|(operation_id, command)| ClientOperation::Write(
            Request {
                operation_id,
                command
            }
        )),
        (query, any::<u64>()).prop_map(|(query, min_op)| ClientOperation::Read { query, min_op }),
    ];
    (any::<u64>(), operation).prop_map(|(request_id, operation)| FrameRequest {
        request_id,
        operation,
    })
}

fn arb_code() -> impl Strategy<Value = ResultCode> {
    (1..ResultCode::ALL.len()).prop_map(|index| ResultCode::ALL[index])
}

fn arb_read_result() -> impl Strategy<Value = ReadResult> {
    let resource = (
        any::<u128>(),
        proptest::option::of(any::<u128>()),
        0..4_usize,
        proptest::option::of(any::<u128>()),
        any::<u64>(),
    )
        .prop_map(|(id, pool, state, lease, version)| {
            let states = [
                ResourceState::Available,
                ResourceState::Reserved,
                ResourceState::Active,
                ResourceState::Revoking,
            ];
            ResourceView {
                id,
                pool,
                state: states[state],
                lease: lease.map(LeaseId),
                version,
            }
        });
    let lease = (
        any::<u128>(),
        any::<u128>(),
        0..6_u8,
        any::<u64>(),
        proptest::collection::vec(any::<u128>(), 0..=16),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(id, holder, state, epoch, ids, deadline_slot, retire_slot)| LeaseView {
                id: LeaseId(id),
                holder,
                state: LeaseState::from_u8(state).unwrap(),
                epoch,
                resources: Bundle::from_slice(&ids).unwrap(),
                deadline_slot,
                retire_slot,
            },
        );
    let pool = (any::<u128>(), any::<u32>(), any::<u32>())
        .prop_map(|(pool, total, free)| PoolStats { pool, total, free });
    prop_oneof![
        resource.prop_map(|v| ReadResult::Resource(Ok(v))),
        arb_code().prop_map(|c| ReadResult::Resource(Err(c))),
        lease.prop_map(|v| ReadResult::Lease(Ok(v))),
        arb_code().prop_map(|c| ReadResult::Lease(Err(c))),
        pool.prop_map(|v| ReadResult::Pool(Ok(v))),
        arb_code().prop_map(|c| ReadResult::Pool(Err(c))),
    ]
}

fn arb_reply() -> impl Strategy<Value = FrameReply> {
    let outcome = (
        0..ResultCode::ALL.len(),
        any::<bool>(),
        any::<u128>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(code, retry, lease, epoch, deadline_slot)| Outcome {
            code: ResultCode::ALL[code],
            retry,
            lease: LeaseId(lease),
            epoch,
            deadline_slot,
        });
    let body = prop_oneof![
        (any::<u64>(), any::<u32>(), outcome)
            .prop_map(|(op, index, outcome)| ReplyBody::Committed { op, index, outcome }),
        (any::<u64>(), any::<u64>(), arb_read_result())
            .prop_map(|(op, slot, result)| ReplyBody::Read { op, slot, result }),
        (any::<u64>(), any::<u8>())
            .prop_map(|(view, primary)| ReplyBody::NotPrimary { view, primary }),
        Just(ReplyBody::Overloaded),
        Just(ReplyBody::ReadTimeout),
        Just(ReplyBody::Invalid),
        Just(ReplyBody::Forbidden),
    ];
    (any::<u64>(), body).prop_map(|(request_id, body)| FrameReply { request_id, body })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn requests_round_trip(requests in proptest::collection::vec(arb_request(), 0..40)) {
        let mut body = Vec::new();
        encode_requests(&requests, &mut body);
        let mut out = Vec::new();
        decode_requests(&body, &mut out).unwrap();
        prop_assert_eq!(&out, &requests);
        // Every truncation is an error, never a panic or a partial result.
        for cut in 0..body.len() {
            prop_assert!(decode_requests(&body[..cut], &mut out).is_err());
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn replies_round_trip(replies in proptest::collection::vec(arb_reply(), 0..40)) {
        let mut body = Vec::new();
        encode_replies(&replies, &mut body);
        let mut out = Vec::new();
        decode_replies(&body, &mut out).unwrap();
        prop_assert_eq!(&out, &replies);
        for cut in 0..body.len() {
            prop_assert!(decode_replies(&body[..cut], &mut out).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let limits = FrameLimits::client(CLUSTER);
        let _ = decode_frame(&bytes, &limits);
        let mut requests = Vec::new();
        let _ = decode_requests(&bytes, &mut requests);
        let mut replies = Vec::new();
        let _ = decode_replies(&bytes, &mut replies);
        let _ = ErrorBody::decode(&bytes);
        let _ = Welcome::decode(&bytes);
        let _ = StatusReply::decode(&bytes);
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_frame_is_detected(bit in 0..(8 * (HEADER_BYTES + 20))) {
        let mut bytes = frame_of(FrameKind::PeerMessage, CLUSTER, &[7; 20]);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode_frame(&bytes, &FrameLimits::client(CLUSTER)).is_err());
    }
}
