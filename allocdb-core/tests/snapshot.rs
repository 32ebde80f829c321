//! Snapshot properties: a snapshot taken at any point, decoded, and fed the rest of the
//! batches behaves exactly like the original (same outcomes, same digests); and corrupted
//! snapshots are always refused, never a panic.

mod support;

use allocdb_core::{
    Allocator, Bundle, Command, Config, LeaseId, OperationKey, Outcome, Request, ResultCode,
    SnapshotError, session_id_at,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use support::expire;

fn config() -> Config {
    Config {
        resources_max: 12,
        pools_max: 2,
        leases_max: 8,
        lease_members_max: 12,
        bundle_size_max: 3,
        operations_max: 24,
        clients_max: 8,
        session_requests_max: 64,
        ttl_slots_max: 12,
        dedupe_window_slots: 6,
        lease_history_slots: 5,
        expirations_per_batch_max: 4,
        batch_requests_max: 16,
    }
}

/// A command with its lease, holder and epoch left symbolic, resolved against the state.
#[derive(Clone, Debug)]
enum Action {
    Create {
        resource: u8,
        pool: Option<u8>,
    },
    Reserve {
        resources: Vec<u8>,
        holder: u8,
        ttl: u8,
    },
    ReserveAny {
        pool: u8,
        count: u8,
        holder: u8,
        ttl: u8,
    },
    Activate {
        lease: u8,
        right: bool,
        ttl: Option<u8>,
    },
    Renew {
        lease: u8,
        right: bool,
        ttl: u8,
    },
    Release {
        lease: u8,
        right: bool,
    },
    Revoke {
        lease: u8,
    },
    Reclaim {
        lease: u8,
    },
    /// Sends an earlier request again: a retry (or, outside the window, a refusal).
    Repeat {
        request: u8,
    },
    /// Opens a client session (later numbered writes use the newest one).
    Register,
}

#[derive(Clone, Debug)]
struct Step {
    slot_advance: u8,
    expire_due: bool,
    actions: Vec<(u8, Action)>,
}

fn action() -> impl Strategy<Value = Action> {
    let resource = 0_u8..13;
    let ttl = 0_u8..14;
    prop_oneof![
        (resource.clone(), proptest::option::of(0_u8..3))
            .prop_map(|(resource, pool)| Action::Create { resource, pool }),
        (
            proptest::collection::vec(resource, 1..4),
            0_u8..3,
            ttl.clone()
        )
            .prop_map(|(resources, holder, ttl)| Action::Reserve {
                resources,
                holder,
                ttl
            }),
        (0_u8..3, 0_u8..4, 0_u8..3, ttl.clone()).prop_map(|(pool, count, holder, ttl)| {
            Action::ReserveAny {
                pool,
                count,
                holder,
                ttl,
            }
        }),
        (
            any::<u8>(),
            any::<bool>(),
            proptest::option::of(ttl.clone())
        )
            .prop_map(|(lease, right, ttl)| Action::Activate { lease, right, ttl }),
        (any::<u8>(), any::<bool>(), ttl).prop_map(|(lease, right, ttl)| Action::Renew {
            lease,
            right,
            ttl
        }),
        (any::<u8>(), any::<bool>()).prop_map(|(lease, right)| Action::Release { lease, right }),
        any::<u8>().prop_map(|lease| Action::Revoke { lease }),
        any::<u8>().prop_map(|lease| Action::Reclaim { lease }),
        any::<u8>().prop_map(|request| Action::Repeat { request }),
        Just(Action::Register),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (
        0_u8..4,
        any::<bool>(),
        proptest::collection::vec((any::<u8>(), action()), 0..6),
    )
        .prop_map(|(slot_advance, expire_due, actions)| Step {
            slot_advance,
            expire_due,
            actions,
        });
    proptest::collection::vec(step, 1..60)
}

/// Turns symbolic actions into requests, reading leases, holders and epochs from `state`.
/// Operation ids below 24 are reused (retries, conflicts, and 0); the rest are fresh.
fn resolve(state: &Allocator, leases: &[LeaseId], operation: u128, action: &Action) -> Request {
    let pick = |index: u8| {
        if leases.is_empty() {
            LeaseId::from_position(1, 0)
        } else {
            // Mostly recent leases, so that most commands meet a live one.
            leases[leases.len() - 1 - usize::from(index) % leases.len().min(6)]
        }
    };
    let credentials = |lease: LeaseId, right: bool| match state.get_lease(lease) {
        Ok(view) if right => (view.holder, view.epoch),
        Ok(view) => (view.holder, view.epoch + 1),
        Err(_) => (0, 1),
    };
    let command = match action {
        Action::Create { resource, pool } => Command::CreateResource {
            resource: u128::from(*resource),
            pool: pool.map(u128::from),
        },
        Action::Reserve {
            resources,
            holder,
            ttl,
        } => {
            let ids: Vec<u128> = resources.iter().map(|&id| u128::from(id)).collect();
            Command::Reserve {
                resources: Bundle::from_slice(&ids).expect("short"),
                holder: u128::from(*holder),
                ttl_slots: u64::from(*ttl),
            }
        }
        Action::ReserveAny {
            pool,
            count,
            holder,
            ttl,
        } => Command::ReserveAny {
            pool: u128::from(*pool),
            count: u32::from(*count),
            holder: u128::from(*holder),
            ttl_slots: u64::from(*ttl),
        },
        Action::Activate { lease, right, ttl } => {
            let (holder, epoch) = credentials(pick(*lease), *right);
            Command::Activate {
                lease: pick(*lease),
                holder,
                epoch,
                ttl_slots: ttl.map(u64::from),
            }
        }
        Action::Renew { lease, right, ttl } => {
            let (holder, epoch) = credentials(pick(*lease), *right);
            Command::Renew {
                lease: pick(*lease),
                holder,
                epoch,
                ttl_slots: u64::from(*ttl),
            }
        }
        Action::Release { lease, right } => {
            let (holder, epoch) = credentials(pick(*lease), *right);
            Command::Release {
                lease: pick(*lease),
                holder,
                epoch,
            }
        }
        Action::Revoke { lease } => Command::Revoke {
            lease: pick(*lease),
        },
        Action::Reclaim { lease } => Command::Reclaim {
            lease: pick(*lease),
        },
        Action::Repeat { .. } | Action::Register => unreachable!("resolved by the caller"),
    };
    Request {
        operation_id: operation,
        command,
    }
}

/// The batches of `steps`, resolved against a run of the allocator itself.
fn batches(steps: &[Step]) -> Vec<(u64, Vec<Request>)> {
    let mut allocator = Allocator::new(config()).unwrap();
    let mut leases = Vec::new();
    let mut slot = 0;
    let mut out = Vec::new();
    let mut sent: Vec<Request> = Vec::new();
    let (mut session, mut number) = (0_u64, 0_u64);
    for (op, step) in (1_u64..).zip(steps) {
        slot += u64::from(step.slot_advance);
        let mut requests: Vec<Request> = Vec::new();
        if step.expire_due {
            let mut due = [expire(LeaseId(0), 0); 4];
            let count = allocator.due_expirations(slot, &mut due);
            requests.extend_from_slice(&due[..count]);
        }
        for (operation, action) in &step.actions {
            // Below 24: reused application keys issued at op 0; up to 128: the next number of
            // the newest session; the rest: fresh application keys.
            let operation = if *operation < 24 {
                u128::from(*operation)
            } else if *operation < 128 && session != 0 {
                number += 1;
                OperationKey::Session {
                    session,
                    request: number,
                }
                .id()
            } else {
                OperationKey::Application {
                    issued_after_op: op - 1,
                    nonce: u64::try_from(requests.len()).unwrap(),
                }
                .id()
            };
            let request = match action {
                Action::Register => Request {
                    operation_id: 0,
                    command: Command::RegisterSession { client: 9 },
                },
                Action::Repeat { request } if !sent.is_empty() => {
                    sent[sent.len() - 1 - usize::from(*request) % sent.len().min(10)]
                }
                Action::Repeat { .. } => continue,
                _ => resolve(&allocator, &leases, operation, action),
            };
            requests.push(request);
        }
        sent.extend(requests.iter().filter(|r| r.operation_id != 0));
        let mut outcomes = vec![Outcome::code(ResultCode::Ok); requests.len()];
        allocator.apply_batch(op, slot, &requests, &mut outcomes);
        allocator.check_invariants();
        for (index, request) in requests.iter().enumerate() {
            if matches!(request.command, Command::RegisterSession { .. }) {
                session = session_id_at(op, u32::try_from(index).unwrap());
                number = 0;
            }
        }
        leases.extend(outcomes.iter().filter(|o| o.lease.0 != 0).map(|o| o.lease));
        out.push((slot, requests));
    }
    out
}

fn apply(allocator: &mut Allocator, op: u64, slot: u64, requests: &[Request]) -> Vec<Outcome> {
    let mut outcomes = vec![Outcome::code(ResultCode::Ok); requests.len()];
    allocator.apply_batch(op, slot, requests, &mut outcomes);
    outcomes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn snapshot_then_replay_equals_replay(steps in steps(), cut in any::<prop::sample::Index>()) {
        let batches = batches(&steps);
        let cut = cut.index(batches.len() + 1);
        let mut original = Allocator::new(config()).unwrap();
        for (op, (slot, requests)) in (1_u64..).zip(&batches[..cut]) {
            apply(&mut original, op, *slot, requests);
        }
        let mut bytes = Vec::new();
        original.encode_snapshot(&mut bytes);
        let mut restored = Allocator::decode_snapshot(config(), &bytes).unwrap();
        prop_assert_eq!(restored.state_digest(), original.state_digest());
        prop_assert_eq!(restored.last_op(), original.last_op());
        for (op, (slot, requests)) in (1_u64..).zip(&batches).skip(cut) {
            let expected = apply(&mut original, op, *slot, requests);
            let actual = apply(&mut restored, op, *slot, requests);
            prop_assert_eq!(&actual, &expected, "op {}", op);
            prop_assert_eq!(restored.state_digest(), original.state_digest(), "op {}", op);
            let mut due_original = [expire(LeaseId(0), 0); 4];
            let mut due_restored = due_original;
            let count = original.due_expirations(*slot + 3, &mut due_original);
            prop_assert_eq!(restored.due_expirations(*slot + 3, &mut due_restored), count);
            prop_assert_eq!(&due_restored[..count], &due_original[..count]);
        }
        restored.check_invariants();
    }

    #[test]
    fn corrupted_snapshots_are_refused(
        steps in steps(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1_u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let batches = batches(&steps);
        let mut allocator = Allocator::new(config()).unwrap();
        for (op, (slot, requests)) in (1_u64..).zip(&batches) {
            apply(&mut allocator, op, *slot, requests);
        }
        let mut bytes = Vec::new();
        allocator.encode_snapshot(&mut bytes);
        let mut corrupted = bytes.clone();
        for (index, mask) in &flips {
            corrupted[index.index(bytes.len())] ^= mask;
        }
        if corrupted != bytes {
            prop_assert!(Allocator::decode_snapshot(config(), &corrupted).is_err());
        }
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(Allocator::decode_snapshot(config(), truncated).is_err());
    }
}

/// Writes a snapshot whose body was edited and re-checksummed, so the checks behind the
/// checksum are what must catch it.
fn reseal(bytes: &mut [u8]) {
    let checksum = crc32c::crc32c(&bytes[24..]);
    bytes[20..24].copy_from_slice(&checksum.to_le_bytes());
}

#[test]
fn every_resealed_single_byte_change_is_refused_or_harmless() {
    // Behind a valid checksum, a changed byte must be refused with an error, or decode to a
    // state that passes every invariant (e.g. a changed holder id). Never a panic.
    let steps_batches = {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let tree = steps().new_tree(&mut runner).unwrap();
        batches(&tree.current())
    };
    let mut allocator = Allocator::new(config()).unwrap();
    for (op, (slot, requests)) in (1_u64..).zip(&steps_batches) {
        apply(&mut allocator, op, *slot, requests);
    }
    let mut bytes = Vec::new();
    allocator.encode_snapshot(&mut bytes);
    let mut refused = 0;
    for index in 24..bytes.len() {
        for mask in [0x01_u8, 0x80, 0xFF] {
            let mut edited = bytes.clone();
            edited[index] ^= mask;
            reseal(&mut edited);
            match Allocator::decode_snapshot(config(), &edited) {
                Ok(decoded) => decoded.check_invariants(),
                Err(_) => refused += 1,
            }
        }
    }
    assert!(refused > 0);
}

/// A snapshot of the state after one `create_resource` (resource 1 in pool 2) under
/// [`config`].
fn one_resource_snapshot() -> (Allocator, Vec<u8>) {
    let mut allocator = Allocator::new(config()).unwrap();
    let requests = [Request {
        operation_id: 1,
        command: Command::CreateResource {
            resource: 1,
            pool: Some(2),
        },
    }];
    apply(&mut allocator, 1, 1, &requests);
    let mut bytes = Vec::new();
    allocator.encode_snapshot(&mut bytes);
    (allocator, bytes)
}

#[test]
fn snapshots_load_only_into_tables_of_their_own_sizes() {
    let (allocator, bytes) = one_resource_snapshot();
    // Tables of any other size are refused, larger or smaller, naming both sizes: a replica
    // with other sizes would answer the same batch differently.
    let restored = Allocator::decode_snapshot(config(), &bytes).unwrap();
    assert_eq!(restored.state_digest(), allocator.state_digest());
    let mut larger = config();
    larger.leases_max += 1;
    let refused = Allocator::decode_snapshot(larger, &bytes).unwrap_err();
    assert_eq!(
        refused,
        SnapshotError::ConfigMismatch {
            field: "leases_max",
            snapshot: u64::from(config().leases_max),
            config: u64::from(config().leases_max) + 1,
        }
    );
    assert_eq!(
        refused.to_string(),
        format!(
            "snapshot: taken with leases_max = {}, but the config has {}",
            config().leases_max,
            config().leases_max + 1
        )
    );
    for field in 0..5 {
        let mut smaller = config();
        let (name, value) = match field {
            0 => ("resources_max", &mut smaller.resources_max),
            1 => ("pools_max", &mut smaller.pools_max),
            2 => ("leases_max", &mut smaller.leases_max),
            3 => ("lease_members_max", &mut smaller.lease_members_max),
            _ => ("operations_max", &mut smaller.operations_max),
        };
        *value -= 1;
        let error = Allocator::decode_snapshot(smaller, &bytes).unwrap_err();
        assert!(
            matches!(error, SnapshotError::ConfigMismatch { field, .. } if field == name),
            "{name}: {error:?}"
        );
    }
}

#[test]
fn precise_errors() {
    let mut allocator = Allocator::new(config()).unwrap();
    let requests = [Request {
        operation_id: 1,
        command: Command::CreateResource {
            resource: 1,
            pool: Some(2),
        },
    }];
    apply(&mut allocator, 1, 1, &requests);
    let mut bytes = Vec::new();
    allocator.encode_snapshot(&mut bytes);
    assert!(matches!(
        Allocator::decode_snapshot(config(), b"NOTASNAPSHOT-AT-ALL-0000"),
        Err(SnapshotError::BadMagic { .. })
    ));
    let mut version = bytes.clone();
    version[8] = 9;
    assert_eq!(
        Allocator::decode_snapshot(config(), &version).unwrap_err(),
        SnapshotError::UnsupportedVersion { found: 9 }
    );
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(matches!(
        Allocator::decode_snapshot(config(), &flipped),
        Err(SnapshotError::Checksum { .. })
    ));
    assert!(matches!(
        Allocator::decode_snapshot(config(), &bytes[..bytes.len() - 1]),
        Err(SnapshotError::Decode(_))
    ));
    let mut other = config();
    other.dedupe_window_slots += 1;
    assert_eq!(
        Allocator::decode_snapshot(other, &bytes).unwrap_err(),
        SnapshotError::ConfigMismatch {
            field: "dedupe_window_slots",
            snapshot: 6,
            config: 7
        }
    );
    let mut no_pools_room = config();
    no_pools_room.pools_max = 1;
    let mut two_pools = allocator.clone();
    apply(
        &mut two_pools,
        2,
        1,
        &[Request {
            operation_id: 2,
            command: Command::CreateResource {
                resource: 2,
                pool: Some(3),
            },
        }],
    );
    let mut bytes_two = Vec::new();
    two_pools.encode_snapshot(&mut bytes_two);
    // Rows beyond the capacity the snapshot itself states can only come from a broken
    // encoder or a corruption the checksum missed; forge one: the body starts after the
    // 24-byte header with the resource and pool capacities, and the body's crc32c sits at 20.
    bytes_two[28..32].copy_from_slice(&1_u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes_two[24..]);
    bytes_two[20..24].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        Allocator::decode_snapshot(no_pools_room, &bytes_two).unwrap_err(),
        SnapshotError::DoesNotFit {
            table: "pools",
            rows: 2,
            capacity: 1
        }
    );
    let message = SnapshotError::DoesNotFit {
        table: "pools",
        rows: 2,
        capacity: 1,
    }
    .to_string();
    assert!(message.contains("pools needs 2 rows"));
}
