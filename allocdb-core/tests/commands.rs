//! One test per command and per result code: each asserts the exact outcome and the state the
//! queries show afterwards. The harness checks every invariant after every batch.

mod support;

use allocdb_core::{
    Allocator, Command, Config, ConfigError, DEADLINE_NONE, LeaseId, LeaseState, OperationKey,
    Outcome, PoolStats, Request, ResourceState, ResultCode, TableUsage, session_id_at,
};
use support::{
    Harness, activate, create, expire, reclaim, release, renew, reserve, reserve_any, revoke,
};

fn code(outcome: Outcome) -> ResultCode {
    outcome.code
}

fn harness() -> Harness {
    Harness::new(Config::small())
}

#[test]
fn config_is_validated_and_memory_is_reported() {
    let mut config = Config::small();
    config.operations_max = 0;
    assert_eq!(
        Allocator::new(config).unwrap_err(),
        ConfigError::Zero {
            field: "operations_max"
        }
    );
    let small = Allocator::new(Config::small()).unwrap();
    let mut bigger = Config::small();
    bigger.resources_max *= 4;
    let big = Allocator::new(bigger).unwrap();
    assert!(small.memory_bytes_reserved() > 100_000);
    assert!(big.memory_bytes_reserved() > small.memory_bytes_reserved() + 3 * 1_024 * 48);
    assert_eq!(small.last_op(), 0);
    assert_eq!(small.last_slot(), 0);
}

#[test]
fn create_resource_outcomes() {
    let mut config = Config::small();
    config.resources_max = 3;
    config.pools_max = 1;
    let mut h = Harness::new(config);
    assert_eq!(h.run(1, create(10, None)), Outcome::code(ResultCode::Ok));
    assert_eq!(
        code(h.run(1, create(10, Some(5)))),
        ResultCode::AlreadyExists
    );
    assert_eq!(code(h.run(1, create(11, Some(5)))), ResultCode::Ok);
    // The pool table (one row) is full: a second pool cannot be created.
    assert_eq!(
        code(h.run(1, create(12, Some(6)))),
        ResultCode::PoolTableFull
    );
    assert_eq!(code(h.run(1, create(12, Some(5)))), ResultCode::Ok);
    assert_eq!(
        code(h.run(1, create(13, None))),
        ResultCode::ResourceTableFull
    );
    // An existing id is reported as such even when the table is full.
    assert_eq!(code(h.run(1, create(12, None))), ResultCode::AlreadyExists);
    let view = h.allocator.get_resource(11).unwrap();
    assert_eq!(view.pool, Some(5));
    assert_eq!(view.state, ResourceState::Available);
    assert_eq!(view.lease, None);
    assert_eq!(view.version, 1);
    assert_eq!(h.allocator.get_resource(12).unwrap().pool, Some(5));
    assert_eq!(
        h.allocator.get_resource(13),
        Err(ResultCode::ResourceNotFound)
    );
    assert_eq!(
        h.allocator.pool_stats(5),
        Ok(PoolStats {
            pool: 5,
            total: 2,
            free: 2
        })
    );
    assert_eq!(h.allocator.pool_stats(6), Err(ResultCode::PoolNotFound));
}

#[test]
fn reserve_creates_a_lease_with_a_position_derived_id() {
    let mut h = harness();
    h.run(1, create(1, None));
    h.run(1, create(2, None));
    let lease = h.next_lease();
    let outcome = h.run(100, reserve(&[2, 1], 7, 50));
    assert_eq!(
        outcome,
        Outcome {
            code: ResultCode::Ok,
            retry: false,
            lease,
            epoch: 1,
            deadline_slot: 150
        }
    );
    assert_eq!(lease.op(), h.op);
    assert_eq!(lease.index(), 0);
    let view = h.allocator.get_lease(lease).unwrap();
    assert_eq!(view.holder, 7);
    assert_eq!(view.state, LeaseState::Reserved);
    assert_eq!(view.resources.as_slice(), &[2, 1]);
    assert_eq!(view.deadline_slot, 150);
    assert_eq!(view.retire_slot, 0);
    for id in [1, 2] {
        let resource = h.allocator.get_resource(id).unwrap();
        assert_eq!(resource.state, ResourceState::Reserved);
        assert_eq!(resource.lease, Some(lease));
        assert_eq!(resource.version, 2);
    }
}

#[test]
fn reserve_rejections_in_order() {
    let mut h = harness();
    h.run(1, create(1, None));
    h.run(1, create(2, None));
    let too_many: Vec<u128> = (0..9).collect();
    assert_eq!(
        code(h.run(1, reserve(&[], 1, 5))),
        ResultCode::BundleTooLarge
    );
    assert_eq!(
        code(h.run(1, reserve(&too_many, 1, 5))),
        ResultCode::BundleTooLarge
    );
    assert_eq!(
        code(h.run(1, reserve(&[1], 1, 0))),
        ResultCode::TtlOutOfRange
    );
    assert_eq!(
        code(h.run(1, reserve(&[1], 1, 1_000_001))),
        ResultCode::TtlOutOfRange
    );
    // The ttl check comes before the duplicate check, which comes before existence.
    assert_eq!(
        code(h.run(1, reserve(&[9, 9], 1, 0))),
        ResultCode::TtlOutOfRange
    );
    assert_eq!(
        code(h.run(1, reserve(&[9, 9], 1, 5))),
        ResultCode::BundleDuplicateResource
    );
    assert_eq!(
        code(h.run(1, reserve(&[1, 9], 1, 5))),
        ResultCode::ResourceNotFound
    );
    assert_eq!(code(h.run(1, reserve(&[1], 1, 5))), ResultCode::Ok);
    // Not-found is checked for every id before busy.
    assert_eq!(
        code(h.run(1, reserve(&[1, 9], 2, 5))),
        ResultCode::ResourceNotFound
    );
    assert_eq!(
        code(h.run(1, reserve(&[2, 1], 2, 5))),
        ResultCode::ResourceBusy
    );
    // A failed reserve changed nothing.
    assert_eq!(
        h.allocator.get_resource(2).unwrap().state,
        ResourceState::Available
    );
    assert_eq!(h.allocator.get_resource(2).unwrap().version, 1);
}

#[test]
fn slot_overflow_near_the_end_of_time() {
    let mut h = harness();
    h.run(1, create(1, None));
    let last = DEADLINE_NONE - 10;
    assert_eq!(
        code(h.run(last, reserve(&[1], 1, 10))),
        ResultCode::SlotOverflow
    );
    assert_eq!(
        code(h.run(last, reserve(&[1], 1, 11))),
        ResultCode::SlotOverflow
    );
    let outcome = h.run(last, reserve(&[1], 1, 9));
    assert_eq!(outcome.deadline_slot, DEADLINE_NONE - 1);
    let lease = outcome.lease;
    assert_eq!(
        code(h.run(last, renew(lease, 1, 1, 10))),
        ResultCode::SlotOverflow
    );
    assert_eq!(
        code(h.run(last, activate(lease, 1, 1, Some(10)))),
        ResultCode::SlotOverflow
    );
    assert_eq!(
        code(h.run(last, reserve_any(1, 1, 1, 10))),
        ResultCode::SlotOverflow
    );
}

#[test]
fn lease_and_member_tables_fill() {
    let mut config = Config::small();
    config.leases_max = 2;
    config.lease_members_max = 8;
    let mut h = Harness::new(config);
    for id in 0..12 {
        h.run(1, create(id, Some(77)));
    }
    let ids: Vec<u128> = (0..7).collect();
    assert_eq!(code(h.run(1, reserve(&ids, 1, 5))), ResultCode::Ok);
    // One member row left: a pair does not fit, in either form of reserve.
    assert_eq!(
        code(h.run(1, reserve(&[8, 9], 1, 5))),
        ResultCode::MemberTableFull
    );
    assert_eq!(
        code(h.run(1, reserve_any(77, 2, 1, 5))),
        ResultCode::MemberTableFull
    );
    assert_eq!(code(h.run(1, reserve(&[8], 1, 5))), ResultCode::Ok);
    assert_eq!(
        code(h.run(1, reserve(&[9], 1, 5))),
        ResultCode::LeaseTableFull
    );
    assert_eq!(
        code(h.run(1, reserve_any(77, 1, 1, 5))),
        ResultCode::LeaseTableFull
    );
}

#[test]
fn reserve_any_takes_the_head_of_the_free_list() {
    let mut h = harness();
    for id in [30, 10, 20, 40] {
        h.run(1, create(id, Some(5)));
    }
    h.run(1, create(50, Some(6)));
    let first = h.run(2, reserve_any(5, 2, 9, 10));
    assert_eq!(first.code, ResultCode::Ok);
    let view = h.allocator.get_lease(first.lease).unwrap();
    assert_eq!(view.resources.as_slice(), &[30, 10]);
    assert_eq!(h.allocator.pool_stats(5).unwrap().free, 2);
    // `reserve` of a member takes it out of the middle of the list.
    let middle = h.run(2, reserve(&[40], 9, 10));
    assert_eq!(middle.code, ResultCode::Ok);
    // Released members go to the tail, in member order.
    assert_eq!(code(h.run(3, release(first.lease, 9, 1))), ResultCode::Ok);
    let second = h.run(4, reserve_any(5, 3, 9, 10));
    let view = h.allocator.get_lease(second.lease).unwrap();
    assert_eq!(view.resources.as_slice(), &[20, 30, 10]);
    assert_eq!(
        code(h.run(4, reserve_any(5, 1, 9, 10))),
        ResultCode::PoolExhausted
    );
    assert_eq!(
        code(h.run(4, reserve_any(8, 1, 9, 10))),
        ResultCode::PoolNotFound
    );
    assert_eq!(
        code(h.run(4, reserve_any(5, 0, 9, 10))),
        ResultCode::BundleTooLarge
    );
    assert_eq!(
        code(h.run(4, reserve_any(5, 9, 9, 10))),
        ResultCode::BundleTooLarge
    );
    assert_eq!(
        code(h.run(4, reserve_any(5, 1, 9, 0))),
        ResultCode::TtlOutOfRange
    );
    // Ttl is checked before the pool exists.
    assert_eq!(
        code(h.run(4, reserve_any(8, 1, 9, 0))),
        ResultCode::TtlOutOfRange
    );
    assert_eq!(
        h.allocator.pool_stats(5),
        Ok(PoolStats {
            pool: 5,
            total: 4,
            free: 0
        })
    );
    assert_eq!(h.allocator.pool_stats(6).unwrap().free, 1);
}

#[test]
fn activate_checks_holder_epoch_and_state() {
    let mut h = harness();
    h.run(1, create(1, None));
    let lease = h.run(1, reserve(&[1], 4, 10)).lease;
    assert_eq!(
        code(h.run(2, activate(lease, 4, 1, Some(0)))),
        ResultCode::TtlOutOfRange
    );
    let missing = LeaseId::from_position(999, 0);
    assert_eq!(
        code(h.run(2, activate(missing, 4, 1, None))),
        ResultCode::LeaseNotFound
    );
    assert_eq!(
        code(h.run(2, activate(lease, 5, 1, None))),
        ResultCode::HolderMismatch
    );
    assert_eq!(
        code(h.run(2, activate(lease, 4, 2, None))),
        ResultCode::StaleEpoch
    );
    let outcome = h.run(2, activate(lease, 4, 1, Some(30)));
    assert_eq!(
        (outcome.code, outcome.epoch, outcome.deadline_slot),
        (ResultCode::Ok, 1, 32)
    );
    assert_eq!(
        h.allocator.get_resource(1).unwrap().state,
        ResourceState::Active
    );
    assert_eq!(h.allocator.get_resource(1).unwrap().version, 3);
    assert_eq!(
        code(h.run(3, activate(lease, 4, 1, None))),
        ResultCode::InvalidState
    );
    // Activating without a ttl holds the lease with no deadline: it is never due.
    h.run(1, create(2, None));
    let held = h.run(3, reserve(&[2], 4, 10)).lease;
    let outcome = h.run(3, activate(held, 4, 1, None));
    assert_eq!(outcome.deadline_slot, DEADLINE_NONE);
    assert_eq!(
        h.allocator.get_lease(held).unwrap().state,
        LeaseState::Active
    );
    let due = h.expire_due(1_000_000);
    assert_eq!(due.len(), 1, "only the first lease has a deadline");
    assert_eq!(
        h.allocator.get_lease(held).unwrap().state,
        LeaseState::Active
    );
    assert_eq!(
        h.allocator.get_lease(lease).unwrap().state,
        LeaseState::Expired
    );
}

#[test]
fn renew_moves_the_deadline() {
    let mut h = harness();
    h.run(1, create(1, None));
    let lease = h.run(10, reserve(&[1], 4, 10)).lease;
    let outcome = h.run(15, renew(lease, 4, 1, 100));
    assert_eq!(
        (outcome.code, outcome.epoch, outcome.deadline_slot),
        (ResultCode::Ok, 1, 115)
    );
    assert_eq!(
        h.allocator.get_resource(1).unwrap().version,
        2,
        "renew keeps the version"
    );
    let mut out = [expire(LeaseId(0), 0); 2];
    // Held through its deadline slot 115, due from 116.
    assert_eq!(h.allocator.due_expirations(115, &mut out), 0);
    assert_eq!(h.allocator.due_expirations(116, &mut out), 1);
    assert_eq!(
        code(h.run(20, renew(lease, 3, 1, 5))),
        ResultCode::HolderMismatch
    );
    assert_eq!(
        code(h.run(20, renew(lease, 4, 0, 5))),
        ResultCode::StaleEpoch
    );
    assert_eq!(
        code(h.run(20, renew(lease, 4, 1, 0))),
        ResultCode::TtlOutOfRange
    );
    h.run(20, activate(lease, 4, 1, None));
    assert_eq!(h.run(21, renew(lease, 4, 1, 5)).deadline_slot, 26);
    let revoked = h.run(22, revoke(lease));
    assert_eq!(
        code(h.run(22, renew(lease, 4, revoked.epoch, 5))),
        ResultCode::InvalidState
    );
    assert_eq!(h.allocator.get_lease(lease).unwrap().deadline_slot, 26);
}

#[test]
fn release_bumps_the_epoch_and_frees() {
    let mut h = harness();
    h.run(1, create(1, Some(3)));
    h.run(1, create(2, None));
    let lease = h.run(1, reserve(&[1, 2], 4, 10)).lease;
    assert_eq!(
        code(h.run(2, release(lease, 5, 1))),
        ResultCode::HolderMismatch
    );
    let outcome = h.run(2, release(lease, 4, 1));
    assert_eq!(
        outcome,
        Outcome {
            code: ResultCode::Ok,
            retry: false,
            lease,
            epoch: 2,
            deadline_slot: 0
        }
    );
    let view = h.allocator.get_lease(lease).unwrap();
    assert_eq!(view.state, LeaseState::Released);
    assert_eq!(view.deadline_slot, 0);
    assert_eq!(view.retire_slot, 2 + Config::small().lease_history_slots);
    assert_eq!(view.resources.as_slice(), &[1, 2]);
    let resource = h.allocator.get_resource(1).unwrap();
    assert_eq!(
        (resource.state, resource.lease, resource.version),
        (ResourceState::Available, None, 3)
    );
    assert_eq!(h.allocator.pool_stats(3).unwrap().free, 1);
    // The old holder is fenced off; with the new epoch the state is wrong.
    assert_eq!(code(h.run(3, release(lease, 4, 1))), ResultCode::StaleEpoch);
    assert_eq!(
        code(h.run(3, release(lease, 4, 2))),
        ResultCode::InvalidState
    );
    assert_eq!(code(h.run(3, reserve(&[1, 2], 6, 10))), ResultCode::Ok);
}

#[test]
fn revoke_fences_and_reclaim_frees() {
    let mut h = harness();
    h.run(1, create(1, None));
    let lease = h.run(1, reserve(&[1], 4, 10)).lease;
    assert_eq!(code(h.run(2, reclaim(lease))), ResultCode::InvalidState);
    let outcome = h.run(2, revoke(lease));
    assert_eq!(
        (outcome.code, outcome.epoch, outcome.deadline_slot),
        (ResultCode::Ok, 2, 11)
    );
    assert_eq!(
        h.allocator.get_resource(1).unwrap().state,
        ResourceState::Revoking
    );
    assert_eq!(code(h.run(2, revoke(lease))), ResultCode::InvalidState);
    assert_eq!(
        code(h.run(2, reserve(&[1], 5, 10))),
        ResultCode::ResourceBusy
    );
    assert_eq!(code(h.run(2, release(lease, 4, 1))), ResultCode::StaleEpoch);
    assert_eq!(
        code(h.run(2, release(lease, 4, 2))),
        ResultCode::InvalidState
    );
    assert_eq!(
        code(h.run(2, activate(lease, 4, 2, None))),
        ResultCode::InvalidState
    );
    let outcome = h.run(3, reclaim(lease));
    assert_eq!(
        (outcome.code, outcome.epoch, outcome.deadline_slot),
        (ResultCode::Ok, 2, 0)
    );
    assert_eq!(
        h.allocator.get_lease(lease).unwrap().state,
        LeaseState::Revoked
    );
    assert_eq!(
        h.allocator.get_resource(1).unwrap().state,
        ResourceState::Available
    );
    assert_eq!(code(h.run(3, reclaim(lease))), ResultCode::InvalidState);
    let missing = LeaseId::from_position(500, 1);
    assert_eq!(code(h.run(3, revoke(missing))), ResultCode::LeaseNotFound);
    assert_eq!(code(h.run(3, reclaim(missing))), ResultCode::LeaseNotFound);
}

#[test]
fn expire_is_internal_and_exact() {
    let mut h = harness();
    h.run(1, create(1, None));
    h.run(1, create(2, None));
    let lease = h.run(10, reserve(&[1], 4, 10)).lease;
    let revoking = h.run(10, reserve(&[2], 4, 15)).lease;
    h.run(10, revoke(revoking));
    // A client-style expire (operation id set) is refused.
    let mut request = expire(lease, 20);
    request.operation_id = 5;
    assert_eq!(
        h.batch(30, &[request])[0].code,
        ResultCode::InvalidOperationId
    );
    // Wrong deadline, not yet due, never issued.
    assert_eq!(
        h.batch(30, &[expire(lease, 21)])[0].code,
        ResultCode::InvalidState
    );
    assert_eq!(
        h.batch(30, &[expire(lease, DEADLINE_NONE)])[0].code,
        ResultCode::InvalidState
    );
    let missing = LeaseId::from_position(900, 0);
    assert_eq!(
        h.batch(30, &[expire(missing, 1)])[0].code,
        ResultCode::LeaseNotFound
    );
    let mut out = [expire(LeaseId(0), 0); 4];
    assert_eq!(h.allocator.due_expirations(19, &mut out), 0);
    assert_eq!(h.allocator.due_expirations(30, &mut out), 2);
    assert_eq!(out[0], expire(lease, 20));
    assert_eq!(out[1], expire(revoking, 25));
    let outcomes = h.batch(30, &out[..2]);
    assert_eq!((outcomes[0].code, outcomes[0].epoch), (ResultCode::Ok, 2));
    assert_eq!((outcomes[1].code, outcomes[1].epoch), (ResultCode::Ok, 3));
    assert_eq!(
        h.allocator.get_lease(revoking).unwrap().state,
        LeaseState::Expired
    );
    assert_eq!(
        h.allocator.get_resource(2).unwrap().state,
        ResourceState::Available
    );
    // Expiring twice is refused: the lease is terminal.
    assert_eq!(
        h.batch(30, &[expire(lease, 20)])[0].code,
        ResultCode::InvalidState
    );
    // A renewal after the primary listed a lease makes its expire stale.
    let renewed = h.run(40, reserve(&[1], 4, 5)).lease;
    assert_eq!(h.allocator.due_expirations(46, &mut out), 1);
    h.run(44, renew(renewed, 4, 1, 10));
    assert_eq!(h.batch(46, &out[..1])[0].code, ResultCode::InvalidState);
    assert_eq!(
        h.allocator.get_lease(renewed).unwrap().state,
        LeaseState::Reserved
    );
}

#[test]
fn due_expirations_are_ordered_and_bounded() {
    let mut config = Config::small();
    config.expirations_per_batch_max = 5;
    let mut h = Harness::new(config);
    let mut requests = Vec::new();
    for id in 0..12_u64 {
        requests.push(Request {
            operation_id: u128::from(id) + 1_000,
            command: create(u128::from(id), None),
        });
    }
    h.batch(1, &requests);
    // One batch: deadlines 20, 19, 18, ... so id order and deadline order disagree.
    let reserves: Vec<Request> = (0..12_u64)
        .map(|id| Request {
            operation_id: u128::from(id) + 2_000,
            command: reserve(&[u128::from(id)], 1, 20 - id % 4),
        })
        .collect();
    let leases: Vec<Outcome> = h.batch(1, &reserves);
    let mut out = [expire(LeaseId(0), 0); 16];
    let count = h.allocator.due_expirations(100, &mut out);
    assert_eq!(count, 5, "capped by expirations_per_batch_max");
    let mut expected: Vec<(u64, LeaseId)> =
        leases.iter().map(|o| (o.deadline_slot, o.lease)).collect();
    expected.sort();
    let listed: Vec<Request> = expected[..5]
        .iter()
        .map(|&(deadline, lease)| expire(lease, deadline))
        .collect();
    assert_eq!(&out[..5], &listed[..]);
    assert_eq!(
        h.allocator.due_expirations(100, &mut out[..2]),
        2,
        "capped by out.len()"
    );
    assert_eq!(
        h.allocator.due_expirations(19, &mut out),
        3,
        "only deadlines < slot"
    );
    let mut expired = 0;
    while expired < 12 {
        let outcomes = h.expire_due(100);
        assert!(!outcomes.is_empty());
        assert!(outcomes.iter().all(|o| o.code == ResultCode::Ok));
        expired += outcomes.len();
    }
    assert_eq!(h.allocator.due_expirations(u64::MAX, &mut out), 0);
}

#[test]
fn retries_return_the_stored_outcome() {
    let mut h = harness();
    h.run(1, create(1, None));
    let command = reserve(&[1], 4, 10);
    let first = h.run_as(2, 77, command);
    assert_eq!(first.code, ResultCode::Ok);
    let retry = h.run_as(3, 77, command);
    assert_eq!(
        retry,
        Outcome {
            retry: true,
            ..first
        }
    );
    // Failures are remembered too: the retry does not re-execute.
    let busy = h.run_as(3, 78, command);
    assert_eq!(busy.code, ResultCode::ResourceBusy);
    h.run(4, release(first.lease, 4, 1));
    let busy_again = h.run_as(4, 78, command);
    assert_eq!(
        busy_again,
        Outcome {
            retry: true,
            ..busy
        }
    );
    assert_eq!(
        code(h.run_as(4, 77, reserve(&[1], 4, 11))),
        ResultCode::OperationConflict
    );
    assert!(
        h.run_as(4, 77, command).retry,
        "a conflict leaves the record"
    );
    assert_eq!(
        code(h.run_as(4, 0, command)),
        ResultCode::InvalidOperationId
    );
    // After the dedupe window the record is gone; the key was issued before the newest
    // retired record executed, so it may name it: refused, never executed a second time.
    let window = Config::small().dedupe_window_slots;
    let later = h.run_as(2 + window, 77, command);
    assert_eq!(later.code, ResultCode::OperationExpired);
    assert_eq!(
        h.allocator.get_resource(1).unwrap().lease,
        None,
        "the expired key reserved nothing"
    );
    // A key made now (issued after the last op) still executes.
    assert_eq!(code(h.run(2 + window, command)), ResultCode::Ok);
}

#[test]
fn operation_table_fills_and_drains() {
    let mut config = Config::small();
    config.operations_max = 2;
    config.dedupe_window_slots = 10;
    let mut h = Harness::new(config);
    let first = h.fresh_key();
    assert_eq!(code(h.run_as(1, first, create(1, None))), ResultCode::Ok);
    assert_eq!(code(h.run(5, create(2, None))), ResultCode::Ok);
    // A full table never refuses a write: its oldest record retires early instead.
    assert_eq!(code(h.run(6, create(3, None))), ResultCode::Ok);
    assert_eq!(h.allocator.table_usage().operations, 2);
    // The retired key is recognised as too old: refused, not executed again.
    assert_eq!(
        code(h.run_as(6, first, create(1, None))),
        ResultCode::OperationExpired
    );
    // Expire needs no record.
    let never_issued = LeaseId::from_position(1, 0);
    assert_eq!(
        h.batch(6, &[expire(never_issued, 1)])[0].code,
        ResultCode::LeaseNotFound
    );
    // At slot 16 the record from slot 6 has left its window: both remaining retire by time.
    h.batch(16, &[]);
    assert_eq!(h.allocator.table_usage().operations, 0);
    assert_eq!(code(h.run(16, create(4, None))), ResultCode::Ok);
    // A key claiming an op the cluster has not reached is refused.
    let future = OperationKey::Application {
        issued_after_op: h.op + 1,
        nonce: 1,
    };
    assert_eq!(
        code(h.run_as(16, future.id(), create(5, None))),
        ResultCode::InvalidOperationId
    );
}

#[test]
fn terminal_leases_retire_after_the_history_window() {
    let mut config = Config::small();
    config.lease_history_slots = 100;
    let mut h = Harness::new(config);
    h.run(1, create(1, None));
    let older = h.run(1, reserve(&[1], 4, 10)).lease;
    h.run(1, create(2, None));
    let newer = h.run(1, reserve(&[2], 4, 10)).lease;
    h.run(5, release(newer, 4, 1));
    h.run(8, release(older, 4, 1));
    assert_eq!(h.allocator.get_lease(newer).unwrap().retire_slot, 105);
    h.batch(104, &[]);
    assert!(h.allocator.get_lease(newer).is_ok());
    h.batch(105, &[]);
    assert_eq!(h.allocator.get_lease(newer), Err(ResultCode::LeaseRetired));
    // The older lease is below the watermark but still in its window: found.
    assert_eq!(
        h.allocator.get_lease(older).unwrap().state,
        LeaseState::Released
    );
    assert_eq!(
        code(h.run(105, release(newer, 4, 2))),
        ResultCode::LeaseRetired
    );
    assert_eq!(code(h.run(105, revoke(newer))), ResultCode::LeaseRetired);
    h.batch(108, &[]);
    assert_eq!(h.allocator.get_lease(older), Err(ResultCode::LeaseRetired));
    // Ids above the watermark that were never issued are not found.
    let future = LeaseId::from_position(h.op + 10, 0);
    assert_eq!(
        h.allocator.get_lease(future),
        Err(ResultCode::LeaseNotFound)
    );
    // Nor are ids below it that no batch could have issued: op 0, or an index past the
    // largest batch.
    for never in [
        LeaseId(0),
        LeaseId(1),
        LeaseId::from_position(1, config.batch_requests_max),
    ] {
        assert_eq!(h.allocator.get_lease(never), Err(ResultCode::LeaseNotFound));
        assert_eq!(code(h.run(108, revoke(never))), ResultCode::LeaseNotFound);
    }
}

#[test]
fn lease_zero_is_not_found_before_any_retirement() {
    let h = harness();
    assert_eq!(
        h.allocator.get_lease(LeaseId(0)),
        Err(ResultCode::LeaseNotFound)
    );
}

#[test]
fn slots_never_go_backwards() {
    let mut h = harness();
    h.run(1, create(1, None));
    h.batch(100, &[]);
    assert_eq!(h.allocator.last_slot(), 100);
    // An older stamp is clamped: the deadline counts from slot 100.
    let outcome = h.run(50, reserve(&[1], 4, 10));
    assert_eq!(outcome.deadline_slot, 110);
    assert_eq!(h.allocator.last_slot(), 100);
    assert_eq!(h.allocator.last_op(), h.op);
}

#[test]
fn lease_ids_follow_batch_positions() {
    let mut h = harness();
    let creates: Vec<Request> = (0..3)
        .map(|id| Request {
            operation_id: 100 + id,
            command: create(id, None),
        })
        .collect();
    h.batch(1, &creates);
    let reserves: Vec<Request> = (0..3)
        .map(|id| Request {
            operation_id: 200 + id,
            command: reserve(&[id], 1, 5),
        })
        .collect();
    let outcomes = h.batch(1, &reserves);
    for (index, outcome) in (0_u32..).zip(&outcomes) {
        assert_eq!(outcome.lease, LeaseId::from_position(h.op, index));
    }
    assert!(outcomes[0].lease < outcomes[1].lease && outcomes[1].lease < outcomes[2].lease);
}

#[test]
#[should_panic(expected = "does not follow")]
fn ops_must_increase() {
    let mut allocator = Allocator::new(Config::small()).unwrap();
    allocator.apply_batch(5, 1, &[], &mut []);
    allocator.apply_batch(5, 1, &[], &mut []);
}

#[test]
fn digest_ignores_layout_but_not_state() {
    let mut one = harness();
    let mut two = harness();
    // Same resources, created in different orders and batches: different rows, same state.
    for id in [1, 2, 3] {
        one.run_as(1, 10 + id, create(id, None));
    }
    two.batch(
        1,
        &[3, 1, 2].map(|id| Request {
            operation_id: 10 + id,
            command: create(id, None),
        }),
    );
    one.batch(1, &[]);
    one.batch(1, &[]);
    two.op = one.op - 1;
    two.batch(1, &[]);
    // While their dedupe records last, the writes are answered with where they executed
    // (other ops and indices here), which is state; once the window has passed, the
    // resources alone remain, in different rows, with one digest.
    assert_ne!(one.allocator.state_digest(), two.allocator.state_digest());
    // Which op the newest retired record executed at is state too (it decides which keys are
    // refused as too old), so both retire one more record executed at the same op.
    let window = Config::small().dedupe_window_slots;
    let key = OperationKey::Application {
        issued_after_op: one.op,
        nonce: 99,
    }
    .id();
    one.run_as(2 + window, key, create(9, None));
    two.op = one.op - 1;
    two.run_as(2 + window, key, create(9, None));
    one.batch(3 + 2 * window, &[]);
    two.op = one.op - 1;
    two.batch(3 + 2 * window, &[]);
    assert_eq!(one.allocator.state_digest(), two.allocator.state_digest());
    let before = one.allocator.state_digest();
    one.run(1, reserve(&[2], 1, 5));
    assert_ne!(one.allocator.state_digest(), before);
    // Pool free-list order is part of the state.
    let mut three = harness();
    let mut four = harness();
    three.batch(
        1,
        &[1, 2].map(|id| Request {
            operation_id: 10 + id,
            command: create(id, Some(9)),
        }),
    );
    four.batch(
        1,
        &[2, 1].map(|id| Request {
            operation_id: 10 + id,
            command: create(id, Some(9)),
        }),
    );
    assert_ne!(
        three.allocator.state_digest(),
        four.allocator.state_digest()
    );
}

#[test]
fn table_usage_counts_rows_in_use() {
    let mut h = harness();
    assert_eq!(h.allocator.table_usage(), TableUsage::default());
    h.run(1, create(1, Some(9)));
    h.run(1, create(2, Some(9)));
    h.run(1, create(3, None));
    let lease = h.next_lease();
    h.run(1, reserve(&[1, 3], 7, 50));
    let usage = h.allocator.table_usage();
    assert_eq!(
        usage,
        TableUsage {
            resources: 3,
            pools: 1,
            leases: 1,
            lease_history: 0,
            lease_members: 2,
            lease_history_members: 0,
            operations: 4,
            sessions: 0,
        }
    );
    // A released lease moves to the history until it retires after the history window.
    h.run(2, release(lease, 7, 1));
    let usage = h.allocator.table_usage();
    assert_eq!((usage.leases, usage.lease_members), (0, 0));
    assert_eq!((usage.lease_history, usage.lease_history_members), (1, 2));
    let history = h.allocator.config().lease_history_slots;
    let window = h.allocator.config().dedupe_window_slots;
    h.run(3 + history.max(window), create(4, None));
    let usage = h.allocator.table_usage();
    assert_eq!((usage.leases, usage.lease_members), (0, 0));
    assert_eq!((usage.lease_history, usage.lease_history_members), (0, 0));
    assert_eq!((usage.resources, usage.operations), (4, 1));
}

#[test]
fn a_retry_is_answered_with_the_position_where_the_write_executed() {
    let mut h = harness();
    h.run_as(1, 500, create(1, None));
    let requests = [
        Request {
            operation_id: 77,
            command: create(2, None),
        },
        Request {
            operation_id: 78,
            command: reserve(&[1], 9, 50),
        },
    ];
    h.batch(2, &requests);
    let executed = h.op;
    assert_eq!(h.allocator.executed_position(1), (executed, 1));
    // The retry, later and at another index: same outcome, and the answer names the original
    // position (the replica answers with it).
    let retried = h.batch(
        3,
        &[
            Request {
                operation_id: 90,
                command: create(3, None),
            },
            requests[1],
        ],
    );
    assert!(retried[1].retry);
    assert_eq!(h.allocator.executed_position(0), (h.op, 0));
    assert_eq!(h.allocator.executed_position(1), (executed, 1));
    // A snapshot keeps the positions.
    let mut bytes = Vec::new();
    h.allocator.encode_snapshot(&mut bytes);
    let mut copy = Allocator::decode_snapshot(Config::small(), &bytes).expect("decodes");
    assert_eq!(copy.state_digest(), h.allocator.state_digest());
    let mut outcomes = [Outcome::code(ResultCode::Ok)];
    copy.apply_batch(h.op + 1, 3, &requests[1..], &mut outcomes);
    assert!(outcomes[0].retry);
    assert_eq!(copy.executed_position(0), (executed, 1));
}

#[test]
fn sessions_answer_each_number_once_refuse_stale_ones_and_evict_the_least_recently_used() {
    let mut config = Config::small();
    config.clients_max = 2;
    config.session_requests_max = 2;
    let mut h = Harness::new(config);
    let register = Request {
        operation_id: 0,
        command: Command::RegisterSession { client: 7 },
    };
    let key = |session, request| OperationKey::Session { session, request }.id();
    assert_eq!(code(h.batch(1, &[register])[0]), ResultCode::Ok);
    let first = session_id_at(h.op, 0);
    // Number 1 executes; its repeat is answered from the session, with where it executed.
    let created = h.run_as(1, key(first, 1), create(1, None));
    assert_eq!(code(created), ResultCode::Ok);
    let executed = h.op;
    let repeat = h.run_as(2, key(first, 1), create(1, None));
    assert!(repeat.retry && repeat.code == ResultCode::Ok);
    assert_eq!(h.allocator.executed_position(0), (executed, 0));
    // Another command under the same number is a conflict, not an execution.
    assert_eq!(
        code(h.run_as(2, key(first, 1), create(2, None))),
        ResultCode::OperationConflict
    );
    // Numbers 3 and 2 (out of order, inside the window of two) both execute.
    assert_eq!(
        code(h.run_as(2, key(first, 3), create(3, None))),
        ResultCode::Ok
    );
    assert_eq!(
        code(h.run_as(2, key(first, 2), create(2, None))),
        ResultCode::Ok
    );
    // Number 1's answer was overwritten by number 3's: a copy of it is stale, never run.
    assert_eq!(
        code(h.run_as(2, key(first, 1), create(4, None))),
        ResultCode::RequestStale
    );
    assert_eq!(
        h.allocator.get_resource(4),
        Err(ResultCode::ResourceNotFound)
    );
    // Number 0 is never valid.
    assert_eq!(
        code(h.run_as(2, key(first, 0), create(4, None))),
        ResultCode::InvalidOperationId
    );
    // Two more sessions with room for two: the least recently used (the first, touched at
    // an earlier op than the second's registration) is evicted by the third registration.
    h.batch(3, &[register]);
    let second = session_id_at(h.op, 0);
    h.batch(3, &[register]);
    let third = session_id_at(h.op, 0);
    assert_eq!(h.allocator.table_usage().sessions, 2);
    assert_eq!(
        code(h.run_as(3, key(first, 4), create(4, None))),
        ResultCode::SessionEvicted
    );
    assert_eq!(
        h.allocator.get_resource(4),
        Err(ResultCode::ResourceNotFound)
    );
    for session in [second, third] {
        assert_eq!(
            code(h.run_as(3, key(session, 1), create(u128::from(session), None))),
            ResultCode::Ok
        );
    }
    // A registration must not carry a key.
    let keyed = Request {
        operation_id: 5,
        command: Command::RegisterSession { client: 7 },
    };
    assert_eq!(
        code(h.batch(4, &[keyed])[0]),
        ResultCode::InvalidOperationId
    );
    // Sessions survive a snapshot with their answers.
    let mut bytes = Vec::new();
    h.allocator.encode_snapshot(&mut bytes);
    let mut copy = Allocator::decode_snapshot(config, &bytes).expect("decodes");
    assert_eq!(copy.state_digest(), h.allocator.state_digest());
    let request = [Request {
        operation_id: key(third, 1),
        command: create(u128::from(third), None),
    }];
    let mut outcomes = [Outcome::code(ResultCode::Ok)];
    copy.apply_batch(h.op + 1, 5, &request, &mut outcomes);
    assert!(outcomes[0].retry);
}
