use allocdb_core::DecodeError;
use allocdb_wal::{CheckpointInfo, RecordHeader};
use proptest::prelude::*;

use super::{MessageLimits, decode_message, encode_message};
use crate::message::{Entry, Message};

const LIMITS: MessageLimits = MessageLimits {
    suffix_ops_max: 4,
    headers_max: 4,
    body_bytes_max: 64,
    snapshot_bytes_max: 128,
};

fn entry(op: u64, parent: u128) -> Entry {
    let body = vec![u8::try_from(op % 251).unwrap(); usize::try_from(op % 7).unwrap()];
    Entry {
        header: RecordHeader::new(9, 1, op, op * 2, parent, &body),
        body,
    }
}

fn samples() -> Vec<Message> {
    let e1 = entry(1, 5);
    let e2 = entry(2, e1.header.checksum);
    let info = CheckpointInfo {
        op: 3,
        view: 2,
        slot: 9,
        record_checksum: 77,
        snapshot_checksum: 88,
        snapshot_len: 3,
    };
    vec![
        Message::Prepare {
            view: 3,
            commit: 1,
            entry: e1.clone(),
        },
        Message::PrepareOk {
            view: 3,
            op: 2,
            checksum: u128::MAX,
        },
        Message::Commit {
            view: 4,
            commit: 5,
            head_op: 6,
            heartbeat: 7,
            digest_op: 4,
            digest: u128::MAX - 1,
        },
        Message::CommitAck {
            view: 4,
            heartbeat: 7,
            op: 6,
            checksum: 1,
        },
        Message::StartViewChange { view: 9 },
        Message::DoViewChange {
            view: 9,
            log_view: 8,
            op: 2,
            checksum: e2.header.checksum,
            commit: 1,
            suffix: vec![e1.clone(), e2.clone()],
            damaged: false,
        },
        Message::DoViewChange {
            view: 9,
            log_view: 8,
            op: 7,
            checksum: 3,
            commit: 0,
            suffix: Vec::new(),
            damaged: true,
        },
        Message::StartView {
            view: 9,
            op: 2,
            checksum: e2.header.checksum,
            commit: 1,
            suffix: vec![e1.clone(), e2.clone()],
        },
        Message::RequestStartView { view: 1 },
        Message::RequestPrepares {
            view: 1,
            op_min: 2,
            op_max: 3,
        },
        Message::RequestHeaders {
            view: 1,
            op_min: 2,
            op_max: 3,
        },
        Message::Headers {
            view: 1,
            headers: vec![e1.header, e2.header],
        },
        Message::Checkpoint {
            view: 1,
            info,
            snapshot: vec![1, 2, 3],
        },
        Message::RecoveryProbe {
            view: 2,
            nonce: u64::MAX,
        },
        Message::RecoveryReply {
            view: 3,
            nonce: 4,
            fresh: true,
            empty: true,
        },
    ]
}

#[test]
fn every_kind_round_trips_and_every_truncation_fails() {
    for message in samples() {
        let mut bytes = Vec::new();
        encode_message(&message, &mut bytes);
        assert_eq!(
            decode_message(&bytes, &LIMITS),
            Ok(message.clone()),
            "{}",
            message.name()
        );
        for cut in 0..bytes.len() {
            assert!(
                decode_message(&bytes[..cut], &LIMITS).is_err(),
                "{} cut at {cut}",
                message.name()
            );
        }
        bytes.push(0);
        assert!(matches!(
            decode_message(&bytes, &LIMITS),
            Err(DecodeError::TrailingBytes { count: 1 })
        ));
    }
}

#[test]
fn limits_are_enforced_before_allocation() {
    let e = entry(1, 5);
    let table: [(Message, &str); 3] = [
        (
            Message::StartView {
                view: 1,
                op: 1,
                checksum: 0,
                commit: 0,
                suffix: vec![e.clone(); 5],
            },
            "suffix count",
        ),
        (
            Message::Headers {
                view: 1,
                headers: vec![e.header; 5],
            },
            "headers count",
        ),
        (
            Message::Checkpoint {
                view: 1,
                info: CheckpointInfo {
                    op: 1,
                    view: 1,
                    slot: 1,
                    record_checksum: 0,
                    snapshot_checksum: 0,
                    snapshot_len: 0,
                },
                snapshot: vec![0; 129],
            },
            "checkpoint snapshot",
        ),
    ];
    for (message, what) in table {
        let mut bytes = Vec::new();
        encode_message(&message, &mut bytes);
        match decode_message(&bytes, &LIMITS) {
            Err(DecodeError::TooLarge { what: found, .. }) => assert_eq!(found, what),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(matches!(
        decode_message(&[0], &LIMITS),
        Err(DecodeError::Invalid {
            what: "message kind",
            ..
        })
    ));
    assert!(matches!(
        decode_message(&[], &LIMITS),
        Err(DecodeError::Truncated { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_message(&bytes, &LIMITS);
    }

    #[test]
    fn mutated_messages_never_panic(index in 0_usize..12, position in any::<usize>(), value in any::<u8>()) {
        let message = &samples()[index];
        let mut bytes = Vec::new();
        encode_message(message, &mut bytes);
        let position = position % bytes.len();
        bytes[position] = value;
        if let Ok(decoded) = decode_message(&bytes, &LIMITS) {
            let mut again = Vec::new();
            encode_message(&decoded, &mut again);
            prop_assert_eq!(again, bytes);
        }
    }
}
