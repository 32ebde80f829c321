//! Bookkeeping never blocks live work, and a lease lives at least its TTL:
//! - `leases_max` / `lease_members_max` bound live leases; terminal leases in the history give
//!   their rows up oldest-first instead of refusing a reserve;
//! - a lease is held through its deadline slot and due only after it; holder commands past the
//!   deadline are `lease_expired`; a TTL of 0 is `ttl_out_of_range`.

mod support;

use allocdb_core::{Config, LeaseId, LeaseState, Outcome, ResourceState, ResultCode};
use support::{Harness, activate, create, expire, release, renew, reserve, reserve_any, revoke};

fn code(outcome: Outcome) -> ResultCode {
    outcome.code
}

/// 4 lease rows, 6 member rows, a history window far longer than the tests.
fn tight() -> Harness {
    let mut config = Config::small();
    config.leases_max = 4;
    config.lease_members_max = 6;
    config.bundle_size_max = 4;
    config.lease_history_slots = 1_000_000;
    Harness::new(config)
}

#[test]
fn finished_leases_never_refuse_a_reservation() {
    let mut h = tight();
    for id in 1..=6 {
        h.run(1, create(id, Some(9)));
    }
    // Many times the table's size in reserve/release cycles, with zero or one live lease.
    let mut ended = Vec::new();
    for round in 0..40_u64 {
        let outcome = h.run(2 + round, reserve_any(9, 3, 7, 100));
        assert_eq!(code(outcome), ResultCode::Ok, "round {round}");
        assert_eq!(
            code(h.run(2 + round, release(outcome.lease, 7, 1))),
            ResultCode::Ok
        );
        ended.push(outcome.lease);
        let usage = h.allocator.table_usage();
        assert_eq!((usage.leases, usage.lease_members), (0, 0));
        assert!(usage.lease_history <= 4 && usage.lease_history_members <= 6);
    }
    // The history keeps the newest terminal leases; older ones were dropped oldest-first and
    // are `lease_retired` (really issued), never `lease_not_found`.
    let newest = ended[ended.len() - 1];
    assert_eq!(
        h.allocator.get_lease(newest).unwrap().state,
        LeaseState::Released
    );
    assert_eq!(
        h.allocator.get_lease(ended[0]),
        Err(ResultCode::LeaseRetired)
    );
    assert_eq!(
        h.allocator.get_lease(LeaseId(0)),
        Err(ResultCode::LeaseNotFound)
    );
    // Only live leases fill the lease table: four of them, and the fifth is refused.
    for id in 1..=4 {
        assert_eq!(code(h.run(50, reserve(&[id], 7, 100))), ResultCode::Ok);
    }
    assert_eq!(h.allocator.table_usage().lease_history, 0);
    assert_eq!(
        code(h.run(50, reserve(&[5], 7, 100))),
        ResultCode::LeaseTableFull
    );
}

#[test]
fn history_is_dropped_oldest_first_only_as_far_as_needed() {
    let mut h = tight();
    for id in 1..=6 {
        h.run(1, create(id, None));
    }
    // Four one-member leases end: the lease table (4 rows) is all history.
    let mut ended = Vec::new();
    for id in 1..=4 {
        let lease = h.run(2, reserve(&[id], 7, 100)).lease;
        h.run(3, release(lease, 7, 1));
        ended.push(lease);
    }
    assert_eq!(h.allocator.table_usage().lease_history, 4);
    // A reserve with zero live leases takes the oldest history row, and only that one.
    let live = h.run(4, reserve(&[5], 7, 100));
    assert_eq!(code(live), ResultCode::Ok);
    assert_eq!(
        h.allocator.get_lease(ended[0]),
        Err(ResultCode::LeaseRetired)
    );
    for lease in &ended[1..] {
        assert!(h.allocator.get_lease(*lease).is_ok());
    }
    // A four-member bundle needs member rows: 6 rows, 1 live, 3 held by history. It drops the
    // history leases it needs (two more), oldest first.
    let bundle = h.run(5, reserve(&[1, 2, 3, 4], 7, 100));
    assert_eq!(code(bundle), ResultCode::Ok);
    assert_eq!(
        h.allocator.get_lease(ended[1]),
        Err(ResultCode::LeaseRetired)
    );
    assert_eq!(
        h.allocator.get_lease(ended[2]),
        Err(ResultCode::LeaseRetired)
    );
    assert!(h.allocator.get_lease(ended[3]).is_ok());
    let usage = h.allocator.table_usage();
    assert_eq!((usage.leases, usage.lease_members), (2, 5));
    assert_eq!((usage.lease_history, usage.lease_history_members), (1, 1));
}

#[test]
fn live_leases_alone_fill_the_tables_and_a_refusal_changes_nothing() {
    let mut h = tight();
    for id in [1, 2, 3, 4, 5, 6, 10, 11] {
        h.run(1, create(id, None));
    }
    let ended = h.run(2, reserve(&[6], 7, 100)).lease;
    h.run(2, release(ended, 7, 1));
    h.run(3, reserve(&[1, 2, 3, 4], 7, 100));
    // Member rows: 4 live, 1 in history, 1 free. Three more cannot fit even without history:
    // refused, and the refusal dropped nothing.
    let mut probe = h.allocator.clone();
    let mut outcomes = [Outcome::code(ResultCode::Ok)];
    let request = allocdb_core::Request {
        operation_id: 99_999,
        command: reserve(&[5, 10, 11], 7, 100),
    };
    probe.apply_batch(h.op + 1, 3, &[request], &mut outcomes);
    assert_eq!(outcomes[0].code, ResultCode::MemberTableFull);
    let (after, now) = (probe.table_usage(), h.allocator.table_usage());
    assert_eq!((after.lease_history, after.lease_history_members), (1, 1));
    assert_eq!(
        (after.leases, after.lease_members),
        (now.leases, now.lease_members)
    );
    assert!(probe.get_lease(ended).is_ok());
    // One member fits in the free row: the history is kept.
    assert_eq!(code(h.run(4, reserve(&[5], 7, 100))), ResultCode::Ok);
    assert!(h.allocator.get_lease(ended).is_ok());
    // The fourth lease row is the history's: taken.
    assert_eq!(code(h.run(5, reserve(&[10], 7, 100))), ResultCode::Ok);
    assert_eq!(h.allocator.get_lease(ended), Err(ResultCode::LeaseRetired));
    // Six live member rows: now the member table is full of live work.
    assert_eq!(h.allocator.table_usage().lease_members, 6);
    assert_eq!(
        code(h.run(6, reserve(&[11], 7, 100))),
        ResultCode::MemberTableFull
    );
}

#[test]
fn a_lease_is_held_through_its_deadline_slot() {
    // (stamp of the reserve, ttl, slot asked, due at that slot)
    let cases: [(u64, u64, u64, bool); 7] = [
        // A 1-slot lease granted at slot 10 (say, just before the tick that starts slot 11)
        // survives slot 11 and is due only at 12.
        (10, 1, 10, false),
        (10, 1, 11, false),
        (10, 1, 12, true),
        (10, 5, 15, false),
        (10, 5, 16, true),
        (0, 1, 1, false),
        (0, 1, 2, true),
    ];
    for (stamp, ttl, slot, due) in cases {
        let mut h = Harness::new(Config::small());
        h.run(stamp, create(1, None));
        let lease = h.run(stamp, reserve(&[1], 4, ttl));
        assert_eq!(lease.deadline_slot, stamp + ttl);
        let mut out = [expire(LeaseId(0), 0); 2];
        let listed = h.allocator.due_expirations(slot, &mut out);
        assert_eq!(listed == 1, due, "stamp {stamp} ttl {ttl} slot {slot}");
        // The core re-checks an expire against the batch's slot the same way.
        let exact = expire(lease.lease, stamp + ttl);
        let outcome = h.batch(slot, &[exact])[0];
        let want = if due {
            ResultCode::Ok
        } else {
            ResultCode::InvalidState
        };
        assert_eq!(outcome.code, want, "stamp {stamp} ttl {ttl} slot {slot}");
    }
}

#[test]
fn holder_commands_past_the_deadline_are_lease_expired() {
    let mut h = Harness::new(Config::small());
    h.run(1, create(1, None));
    let lease = h.run(10, reserve(&[1], 4, 5)).lease;
    // At the deadline slot the holder is still in time.
    let renewed = h.run(15, renew(lease, 4, 1, 5));
    assert_eq!((renewed.code, renewed.deadline_slot), (ResultCode::Ok, 20));
    // Past it, not yet expired: refused, never resurrected.
    for command in [
        activate(lease, 4, 1, None),
        activate(lease, 4, 1, Some(50)),
        renew(lease, 4, 1, 50),
        release(lease, 4, 1),
    ] {
        assert_eq!(
            code(h.run(21, command)),
            ResultCode::LeaseExpired,
            "{command:?}"
        );
    }
    let view = h.allocator.get_lease(lease).unwrap();
    assert_eq!(
        (view.state, view.deadline_slot, view.epoch),
        (LeaseState::Reserved, 20, 1)
    );
    // Holder and epoch are checked first.
    assert_eq!(
        code(h.run(21, renew(lease, 3, 1, 5))),
        ResultCode::HolderMismatch
    );
    assert_eq!(
        code(h.run(21, renew(lease, 4, 2, 5))),
        ResultCode::StaleEpoch
    );
    // The operator may still revoke it; the expiry then still happens.
    assert_eq!(code(h.run(21, revoke(lease))), ResultCode::Ok);
    let outcomes = h.expire_due(22);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].code, ResultCode::Ok);
    assert_eq!(
        h.allocator.get_resource(1).unwrap().state,
        ResourceState::Available
    );
    // An activated lease without a deadline never passes it.
    h.run(30, create(2, None));
    let open = h.run(30, reserve(&[2], 4, 5)).lease;
    assert_eq!(code(h.run(31, activate(open, 4, 1, None))), ResultCode::Ok);
    assert_eq!(code(h.run(1_000, renew(open, 4, 1, 5))), ResultCode::Ok);
}

#[test]
fn a_ttl_of_zero_is_out_of_range() {
    let mut h = Harness::new(Config::small());
    h.run(1, create(1, Some(9)));
    assert_eq!(
        code(h.run(1, reserve(&[1], 4, 0))),
        ResultCode::TtlOutOfRange
    );
    assert_eq!(
        code(h.run(1, reserve_any(9, 1, 4, 0))),
        ResultCode::TtlOutOfRange
    );
    let lease = h.run(1, reserve(&[1], 4, 5)).lease;
    assert_eq!(
        code(h.run(2, renew(lease, 4, 1, 0))),
        ResultCode::TtlOutOfRange
    );
    assert_eq!(
        code(h.run(2, activate(lease, 4, 1, Some(0)))),
        ResultCode::TtlOutOfRange
    );
}
