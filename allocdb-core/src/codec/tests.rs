use super::{
    BATCH_FORMAT_VERSION, KIND_EXPIRE, LIST_HEADER_BYTES, OUTCOME_ENCODED_BYTES,
    REQUEST_ENCODED_BYTES_MAX, REQUEST_ENCODED_BYTES_MIN, RequestOrigin, batch_encoded_bytes_max,
    command_kind, decode_batch, decode_outcome, decode_outcomes, decode_request,
    decode_request_into, encode_batch, encode_outcome, encode_outcomes, encode_request,
    outcomes_encoded_bytes_max, request_encoded_bytes,
};
use crate::command::{BUNDLE_SIZE_LIMIT, Bundle, Command, Outcome, Request};
use crate::ids::LeaseId;
use crate::result_code::ResultCode;
use crate::wire::{DecodeError, Reader, Writer};

/// One request of every kind, with both presences of every option, a full bundle and an empty
/// one, and extreme field values so no byte of the layout is left untested.
fn every_kind() -> Vec<Request> {
    let full: Vec<u128> = (0..BUNDLE_SIZE_LIMIT as u128)
        .map(|i| u128::MAX - i)
        .collect();
    let commands = [
        Command::CreateResource {
            resource: 1,
            pool: None,
        },
        Command::CreateResource {
            resource: u128::MAX,
            pool: Some(u128::MAX - 1),
        },
        Command::Reserve {
            resources: Bundle::from_slice(&full).unwrap(),
            holder: 3,
            ttl_slots: u64::MAX,
        },
        Command::Reserve {
            resources: Bundle::EMPTY,
            holder: 0,
            ttl_slots: 0,
        },
        Command::ReserveAny {
            pool: 9,
            count: u32::MAX,
            holder: 4,
            ttl_slots: 10,
        },
        Command::Activate {
            lease: LeaseId(1 << 40),
            holder: 5,
            epoch: 2,
            ttl_slots: None,
        },
        Command::Activate {
            lease: LeaseId(u128::MAX),
            holder: 5,
            epoch: u64::MAX,
            ttl_slots: Some(77),
        },
        Command::Renew {
            lease: LeaseId(3),
            holder: 6,
            epoch: 1,
            ttl_slots: 8,
        },
        Command::Release {
            lease: LeaseId(4),
            holder: 7,
            epoch: 3,
        },
        Command::Revoke { lease: LeaseId(5) },
        Command::Reclaim { lease: LeaseId(6) },
        Command::Expire {
            lease: LeaseId(7),
            deadline_slot: 99,
        },
        Command::RegisterSession { client: u128::MAX },
    ];
    commands
        .iter()
        .enumerate()
        .map(|(index, command)| Request {
            operation_id: u128::MAX - index as u128,
            command: *command,
        })
        .collect()
}

fn encode_one(request: &Request) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_request(request, &mut Writer::new(&mut bytes));
    bytes
}

fn decode_one(bytes: &[u8], origin: RequestOrigin) -> Result<Request, DecodeError> {
    let mut reader = Reader::new(bytes);
    let request = decode_request(&mut reader, origin)?;
    reader.finish()?;
    Ok(request)
}

#[test]
fn every_kind_round_trips_with_its_documented_kind_byte() {
    let mut kinds_seen = Vec::new();
    for request in every_kind() {
        let bytes = encode_one(&request);
        assert_eq!(bytes.len(), request_encoded_bytes(&request));
        assert!(bytes.len() >= REQUEST_ENCODED_BYTES_MIN);
        assert!(bytes.len() <= REQUEST_ENCODED_BYTES_MAX);
        assert_eq!(bytes[16], command_kind(&request.command));
        assert_eq!(decode_one(&bytes, RequestOrigin::Log), Ok(request));
        if !request.command.is_internal() {
            assert_eq!(decode_one(&bytes, RequestOrigin::Client), Ok(request));
        }
        if !kinds_seen.contains(&bytes[16]) {
            kinds_seen.push(bytes[16]);
        }
    }
    // The documented, stable kind bytes: 1..=10.
    kinds_seen.sort_unstable();
    assert_eq!(kinds_seen, (1..=10).collect::<Vec<u8>>());
}

#[test]
fn decoding_in_place_over_any_earlier_request_equals_decoding_fresh() {
    // Every kind decoded over every kind: nothing of the earlier request may survive (a
    // bundle's slots past its length included: equality and hashing read them).
    let requests = every_kind();
    for earlier in &requests {
        for request in &requests {
            let bytes = encode_one(request);
            let mut slot = *earlier;
            let mut reader = Reader::new(&bytes);
            decode_request_into(&mut reader, RequestOrigin::Log, &mut slot).unwrap();
            reader.finish().unwrap();
            assert_eq!(slot, *request, "decoded over {earlier:?}");
        }
    }
}

#[test]
fn size_bounds_are_attained() {
    let requests = every_kind();
    let sizes: Vec<usize> = requests.iter().map(request_encoded_bytes).collect();
    assert_eq!(sizes.iter().max(), Some(&REQUEST_ENCODED_BYTES_MAX));
    assert_eq!(sizes.iter().min(), Some(&REQUEST_ENCODED_BYTES_MIN));
    assert_eq!(REQUEST_ENCODED_BYTES_MAX, 16 + 1 + 1 + 16 * 16 + 16 + 8);
    assert_eq!(batch_encoded_bytes_max(2), 6 + 2 * 298);
    assert_eq!(outcomes_encoded_bytes_max(3), 6 + 3 * 34);
}

#[test]
fn client_origin_rejects_expire_naming_it() {
    let expire = Request {
        operation_id: 0,
        command: Command::Expire {
            lease: LeaseId(1),
            deadline_slot: 2,
        },
    };
    let bytes = encode_one(&expire);
    let error = decode_one(&bytes, RequestOrigin::Client).unwrap_err();
    assert!(matches!(
        error,
        DecodeError::Invalid { offset: 16, value, .. } if value == u64::from(KIND_EXPIRE)
    ));
    assert!(error.to_string().contains("expire is internal"));
    assert_eq!(decode_one(&bytes, RequestOrigin::Log), Ok(expire));

    let mut batch = Vec::new();
    encode_batch(&[expire], &mut batch);
    let mut out = Vec::with_capacity(4);
    let error = decode_batch(&batch, RequestOrigin::Client, 4, &mut out).unwrap_err();
    assert!(error.to_string().contains("expire is internal"));
    assert!(out.is_empty());
}

#[test]
fn unknown_kinds_are_rejected_with_their_offset() {
    let mut bytes = encode_one(&every_kind()[0]);
    for kind in [0_u8, 11, 200, 255] {
        bytes[16] = kind;
        assert_eq!(
            decode_one(&bytes, RequestOrigin::Log),
            Err(DecodeError::Invalid {
                what: "request kind",
                offset: 16,
                value: u64::from(kind)
            })
        );
    }
}

#[test]
fn oversized_bundle_is_rejected_before_reading_it() {
    let mut bytes = encode_one(&every_kind()[2]);
    assert_eq!(usize::from(bytes[17]), BUNDLE_SIZE_LIMIT);
    bytes[17] = 17;
    assert_eq!(
        decode_one(&bytes, RequestOrigin::Client),
        Err(DecodeError::TooLarge {
            what: "reserve bundle",
            value: 17,
            max: 16
        })
    );
}

#[test]
fn presence_and_retry_bytes_must_be_zero_or_one() {
    // CreateResource with a pool: the presence byte follows operation id, kind and resource.
    let mut bytes = encode_one(&every_kind()[1]);
    bytes[33] = 2;
    assert_eq!(
        decode_one(&bytes, RequestOrigin::Client),
        Err(DecodeError::Invalid {
            what: "create_resource pool presence",
            offset: 33,
            value: 2
        })
    );
    // Activate: presence after lease, holder and epoch.
    let mut bytes = encode_one(&every_kind()[6]);
    bytes[17 + 40] = 0xFF;
    assert!(matches!(
        decode_one(&bytes, RequestOrigin::Client),
        Err(DecodeError::Invalid {
            what: "activate ttl_slots presence",
            offset: 57,
            value: 0xFF
        })
    ));
    let mut bytes = Vec::new();
    encode_outcome(&Outcome::code(ResultCode::Ok), &mut Writer::new(&mut bytes));
    bytes[1] = 2;
    assert_eq!(
        decode_outcome(&mut Reader::new(&bytes)),
        Err(DecodeError::Invalid {
            what: "outcome retry flag",
            offset: 1,
            value: 2
        })
    );
}

#[test]
fn an_absent_option_has_no_value_bytes() {
    // A presence byte of 0 followed by what would have been the value is trailing input,
    // so each value has exactly one encoding.
    let mut bytes = encode_one(&every_kind()[1]);
    bytes[33] = 0;
    assert_eq!(
        decode_one(&bytes, RequestOrigin::Client),
        Err(DecodeError::TrailingBytes { count: 16 })
    );
}

#[test]
fn every_truncation_is_an_error_naming_a_field() {
    for request in every_kind() {
        let bytes = encode_one(&request);
        for len in 0..bytes.len() {
            let error = decode_one(&bytes[..len], RequestOrigin::Log).unwrap_err();
            assert!(
                matches!(error, DecodeError::Truncated { offset, .. } if offset <= len),
                "{request:?} cut at {len}: {error:?}"
            );
        }
    }
}

#[test]
fn outcomes_round_trip_and_reject_unknown_codes() {
    let mut outcomes: Vec<Outcome> = ResultCode::ALL.iter().map(|c| Outcome::code(*c)).collect();
    outcomes.push(Outcome {
        code: ResultCode::Ok,
        retry: true,
        lease: LeaseId(u128::MAX),
        epoch: u64::MAX,
        deadline_slot: u64::MAX,
    });
    for outcome in &outcomes {
        let mut bytes = Vec::new();
        encode_outcome(outcome, &mut Writer::new(&mut bytes));
        assert_eq!(bytes.len(), OUTCOME_ENCODED_BYTES);
        let mut reader = Reader::new(&bytes);
        assert_eq!(decode_outcome(&mut reader), Ok(*outcome));
        assert_eq!(reader.finish(), Ok(()));
    }
    let mut bytes = Vec::new();
    encode_outcome(&outcomes[0], &mut Writer::new(&mut bytes));
    bytes[0] = u8::try_from(ResultCode::ALL.len()).unwrap();
    assert_eq!(
        decode_outcome(&mut Reader::new(&bytes)),
        Err(DecodeError::Invalid {
            what: "outcome code",
            offset: 0,
            value: u64::try_from(ResultCode::ALL.len()).unwrap()
        })
    );

    let mut list = Vec::new();
    encode_outcomes(&outcomes, &mut list);
    let max = u32::try_from(outcomes.len()).unwrap();
    let mut out = Vec::with_capacity(outcomes.len());
    assert_eq!(decode_outcomes(&list, max, &mut out), Ok(()));
    assert_eq!(out, outcomes);
    assert!(matches!(
        decode_outcomes(&list, max - 1, &mut out),
        Err(DecodeError::TooLarge {
            what: "outcome list count",
            ..
        })
    ));
    assert!(out.is_empty());
}

#[test]
fn batches_round_trip_and_replace_the_buffer_contents() {
    let requests = every_kind();
    let mut bytes = vec![0xAA];
    encode_batch(&requests, &mut bytes);
    // encode_batch appends: the caller's prefix (a frame header, say) is kept.
    assert_eq!(bytes[0], 0xAA);
    let bytes = &bytes[1..];
    assert_eq!(&bytes[..2], &BATCH_FORMAT_VERSION.to_le_bytes());
    let total: usize = requests.iter().map(request_encoded_bytes).sum();
    assert_eq!(bytes.len(), LIST_HEADER_BYTES + total);

    let mut out = Vec::with_capacity(64);
    out.push(requests[0]);
    assert_eq!(
        decode_batch(bytes, RequestOrigin::Log, 64, &mut out),
        Ok(())
    );
    assert_eq!(out, requests);

    let mut empty = Vec::new();
    encode_batch(&[], &mut empty);
    assert_eq!(
        decode_batch(&empty, RequestOrigin::Log, 64, &mut out),
        Ok(())
    );
    assert!(out.is_empty());
}

#[test]
fn batch_rejections() {
    let requests = every_kind();
    let mut bytes = Vec::new();
    encode_batch(&requests, &mut bytes);
    let count = u32::try_from(requests.len()).unwrap();
    let mut out = Vec::with_capacity(64);

    let mut wrong_version = bytes.clone();
    wrong_version[0] = 2;
    assert_eq!(
        decode_batch(&wrong_version, RequestOrigin::Log, 64, &mut out),
        Err(DecodeError::Invalid {
            what: "batch format version",
            offset: 0,
            value: 2
        })
    );
    assert_eq!(
        decode_batch(&bytes, RequestOrigin::Log, count - 1, &mut out),
        Err(DecodeError::TooLarge {
            what: "batch request count",
            value: u64::from(count),
            max: u64::from(count - 1)
        })
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        decode_batch(&trailing, RequestOrigin::Log, 64, &mut out),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
    // A count the remaining bytes cannot hold is refused before any request is decoded.
    let mut inflated = bytes.clone();
    inflated[2..6].copy_from_slice(&40_u32.to_le_bytes());
    assert_eq!(
        decode_batch(&inflated, RequestOrigin::Log, 64, &mut out),
        Err(DecodeError::Truncated {
            what: "batch requests",
            offset: 6
        })
    );
    for len in 0..bytes.len() {
        out.push(requests[0]);
        let error = decode_batch(&bytes[..len], RequestOrigin::Log, 64, &mut out).unwrap_err();
        assert!(matches!(error, DecodeError::Truncated { .. }), "{error:?}");
        assert!(out.is_empty(), "a failed decode leaves the buffer empty");
    }
}

#[test]
#[should_panic(expected = "reserved for 64 items up front")]
fn decoding_into_an_unreserved_buffer_is_a_programmer_error() {
    let mut bytes = Vec::new();
    encode_batch(&[], &mut bytes);
    let mut out = Vec::new();
    let _ = decode_batch(&bytes, RequestOrigin::Log, 64, &mut out);
}
