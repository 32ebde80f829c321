//! A lease's TTL counts from when its reserve reached the primary, and a lease is never
//! expired before its TTL has passed in clock slots: driven through one real replica (a
//! single-replica cluster over `SimStorage`), with the clock readings a driver would give it.

// Commands by value keep the test readable; the copy does not matter in a test.
#![allow(clippy::large_types_passed_by_value)]

use allocdb_core::{Bundle, Command, Config, LeaseId, LeaseState, Request};
use allocdb_vsr::{
    ClientOperation, ClientRequest, Outbox, Query, Replica, ReplicaConfig, ReplyBody,
};
use allocdb_wal::{SimConfig, SimStorage};

struct Primary {
    replica: Replica<SimStorage>,
    outbox: Outbox,
    next_request: u64,
}

impl Primary {
    /// A single-replica cluster, primary after its first ticks at `clock_slot`.
    fn start(clock_slot: u64, drift_ppm_max: u32) -> Primary {
        let mut config = ReplicaConfig::new(0xC1, 0, 1);
        config.core = Config::small();
        config.clock_drift_ppm_max = drift_ppm_max;
        let storage = SimStorage::new(SimConfig::new(7));
        let replica = Replica::format(storage, config).expect("format");
        let mut primary = Primary {
            replica,
            outbox: Outbox::new(1_024, 1_024),
            next_request: 1,
        };
        for _ in 0..64 {
            primary.tick(clock_slot);
        }
        assert!(primary.replica.is_primary(), "a lone replica leads");
        primary
    }

    fn tick(&mut self, clock_slot: u64) {
        self.replica.on_tick(clock_slot, &mut self.outbox);
        // A driver syncs after every round (a tick may prepare expirations).
        self.replica.sync_log(&mut self.outbox);
        self.outbox.messages.clear();
    }

    /// Hands one write over with the clock reading taken at hand-off; its committed outcome.
    fn write(&mut self, clock_slot: u64, command: Command) -> allocdb_core::Outcome {
        let request_id = self.next_request;
        self.next_request += 1;
        self.outbox.replies.clear();
        self.replica.observe_clock(clock_slot);
        let request = ClientRequest {
            client_id: 9,
            request_id,
            operation: ClientOperation::Write(Request {
                operation_id: u128::from(request_id),
                command,
            }),
        };
        self.replica.on_requests(&[request], &mut self.outbox);
        self.replica.sync_log(&mut self.outbox);
        for _ in 0..8 {
            if let Some(reply) = self
                .outbox
                .replies
                .iter()
                .find(|r| r.request_id == request_id)
            {
                let ReplyBody::Committed { outcome, .. } = reply.body else {
                    panic!("not committed: {reply:?}");
                };
                return outcome;
            }
            self.tick(clock_slot);
        }
        panic!("request {request_id} never committed");
    }

    /// Reads a lease with the clock at `clock_slot`: (the slot the answer was made at, the
    /// applied state's last slot).
    fn read_slot(&mut self, clock_slot: u64, lease: LeaseId) -> (u64, u64) {
        let request_id = self.next_request;
        self.next_request += 1;
        self.outbox.replies.clear();
        self.replica.observe_clock(clock_slot);
        let request = ClientRequest {
            client_id: 9,
            request_id,
            operation: ClientOperation::Read {
                query: Query::Lease(lease),
                min_op: 0,
            },
        };
        self.replica.on_requests(&[request], &mut self.outbox);
        for _ in 0..8 {
            self.tick(clock_slot);
            if let Some(reply) = self
                .outbox
                .replies
                .iter()
                .find(|r| r.request_id == request_id)
            {
                let ReplyBody::Read { slot, .. } = reply.body else {
                    panic!("not answered: {reply:?}");
                };
                return (slot, self.replica.allocator().last_slot());
            }
        }
        panic!("read {request_id} never answered");
    }

    fn state(&self, lease: LeaseId) -> LeaseState {
        self.replica
            .allocator()
            .get_lease(lease)
            .expect("lease")
            .state
    }
}

fn reserve(resource: u128, ttl_slots: u64) -> Command {
    Command::Reserve {
        resources: Bundle::from_slice(&[resource]).unwrap(),
        holder: 4,
        ttl_slots,
    }
}

#[test]
fn a_one_slot_lease_granted_just_before_a_tick_survives_that_tick() {
    // A fresh primary stamps clock slots elapsed since its election (at clock slot 0 here),
    // stepped down by its drift bound. (drift bound in ppm, first clock slot of expiry): with
    // a bound, stamps lag the clock (1 % of 4 slots rounds 4 down to 3) and one more guard
    // slot covers the double rounding.
    let cases: [(u32, u64); 2] = [(0, 2), (10_000, 4)];
    for (drift_ppm_max, first_expiry_slot) in cases {
        let mut primary = Primary::start(0, drift_ppm_max);
        let create = Command::CreateResource {
            resource: 1,
            pool: None,
        };
        assert_eq!(primary.write(0, create).code, allocdb_core::ResultCode::Ok);
        // Still slot 0 by the clock (just before the tick that reads 1): deadline 1.
        let granted = primary.write(0, reserve(1, 1));
        assert_eq!(granted.deadline_slot, 1);
        for clock_slot in 1..first_expiry_slot {
            for _ in 0..4 {
                primary.tick(clock_slot);
            }
            let state = primary.state(granted.lease);
            assert_eq!(
                state,
                LeaseState::Reserved,
                "drift {drift_ppm_max} slot {clock_slot}"
            );
        }
        for _ in 0..4 {
            primary.tick(first_expiry_slot);
        }
        assert_eq!(primary.state(granted.lease), LeaseState::Expired);
    }
}

#[test]
fn the_stamp_is_read_when_requests_arrive_not_at_the_last_tick() {
    let mut primary = Primary::start(0, 0);
    let create = Command::CreateResource {
        resource: 1,
        pool: None,
    };
    primary.write(0, create);
    // No tick since slot 0, but the request arrives in slot 3: its TTL counts from 3.
    let granted = primary.write(3, reserve(1, 5));
    assert_eq!(granted.deadline_slot, 8);
    for clock_slot in 4..=8 {
        primary.tick(clock_slot);
        primary.tick(clock_slot);
        assert_eq!(primary.state(granted.lease), LeaseState::Reserved);
    }
    primary.tick(9);
    primary.tick(9);
    assert_eq!(primary.state(granted.lease), LeaseState::Expired);
}

/// A read is answered at the clock that expires leases, not at the applied state's slot,
/// which stands still while nothing commits: `deadline - slot` is the time a lease has left.
#[test]
fn a_read_answers_at_the_clock_slot_even_when_nothing_commits() {
    let mut primary = Primary::start(0, 0);
    let create = Command::CreateResource {
        resource: 1,
        pool: None,
    };
    primary.write(2, create);
    let granted = primary.write(2, reserve(1, 100));
    assert_eq!(granted.deadline_slot, 102);
    // (clock slot at the read, slots left): nothing commits in between (no expiry is due).
    for (clock_slot, left) in [(2, 100), (30, 72), (101, 1)] {
        let (slot, applied_slot) = primary.read_slot(clock_slot, granted.lease);
        assert_eq!(applied_slot, 2, "nothing committed since the reserve");
        assert_eq!(granted.deadline_slot - slot, left, "clock {clock_slot}");
    }
}

#[test]
fn no_lease_expires_within_its_ttl_of_clock_slots() {
    // Many leases, TTLs 1..=12, granted at varied clock slots; each must stay live for more
    // than `ttl` clock slots after the slot at which its reserve was handed over.
    let mut primary = Primary::start(0, 0);
    let mut granted = Vec::new();
    for id in 0..24_u64 {
        let create = Command::CreateResource {
            resource: u128::from(id),
            pool: None,
        };
        primary.write(0, create);
    }
    for id in 0..24_u64 {
        let arrival = id / 3;
        let ttl = 1 + id % 12;
        let outcome = primary.write(arrival, reserve(u128::from(id), ttl));
        assert_eq!(outcome.code, allocdb_core::ResultCode::Ok);
        granted.push((outcome.lease, arrival, ttl));
        check(&primary, &granted, arrival);
    }
    for clock_slot in 8..40 {
        primary.tick(clock_slot);
        primary.tick(clock_slot);
        check(&primary, &granted, clock_slot);
    }
    assert!(
        granted
            .iter()
            .all(|&(lease, ..)| primary.state(lease) == LeaseState::Expired)
    );
}

/// Every expired lease was expired by a clock reading more than `ttl` slots after arrival.
fn check(primary: &Primary, granted: &[(LeaseId, u64, u64)], clock_slot: u64) {
    for &(lease, arrival, ttl) in granted {
        if primary.state(lease) == LeaseState::Expired {
            assert!(
                clock_slot - arrival > ttl,
                "lease {lease:?} (ttl {ttl}, arrived in slot {arrival}) expired by {clock_slot}"
            );
        }
    }
}
