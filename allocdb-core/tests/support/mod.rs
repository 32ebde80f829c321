//! Helpers shared by the allocator's integration tests: a harness that numbers ops and
//! operation ids, and short constructors for commands.
#![allow(dead_code)]
// Each test file uses a different subset.
// Commands by value keep the tests readable; the copy does not matter in a test.
#![allow(clippy::large_types_passed_by_value)]

use allocdb_core::{
    Allocator, Bundle, Command, Config, LeaseId, OperationKey, Outcome, PoolId, Request,
    ResourceId, ResultCode,
};

/// An allocator plus the op and operation-id counters a replica would keep.
pub struct Harness {
    pub allocator: Allocator,
    pub op: u64,
    pub next_operation: u128,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        Harness {
            allocator: Allocator::new(config).expect("valid test config"),
            op: 0,
            next_operation: 1,
        }
    }

    /// Applies one batch at `slot` and checks every invariant afterwards.
    pub fn batch(&mut self, slot: u64, requests: &[Request]) -> Vec<Outcome> {
        self.op += 1;
        let mut outcomes = vec![Outcome::code(ResultCode::Ok); requests.len()];
        self.allocator
            .apply_batch(self.op, slot, requests, &mut outcomes);
        self.allocator.check_invariants();
        outcomes
    }

    /// A fresh application key, made as a client makes one: issued after the last op.
    pub fn fresh_key(&mut self) -> u128 {
        let nonce = u64::try_from(self.next_operation).expect("test counters stay small");
        self.next_operation += 1;
        OperationKey::Application {
            issued_after_op: self.op,
            nonce,
        }
        .id()
    }

    /// Runs one command under a fresh operation id.
    pub fn run(&mut self, slot: u64, command: Command) -> Outcome {
        let operation_id = self.fresh_key();
        self.run_as(slot, operation_id, command)
    }

    /// Runs one command under `operation_id`.
    pub fn run_as(&mut self, slot: u64, operation_id: u128, command: Command) -> Outcome {
        self.batch(
            slot,
            &[Request {
                operation_id,
                command,
            }],
        )[0]
    }

    /// The lease id the next single-command batch will create.
    pub fn next_lease(&self) -> LeaseId {
        LeaseId::from_position(self.op + 1, 0)
    }

    /// Applies the expirations due at `slot`, as the primary would.
    pub fn expire_due(&mut self, slot: u64) -> Vec<Outcome> {
        let mut due = vec![expire(LeaseId(0), 0); 1024];
        let count = self.allocator.due_expirations(slot, &mut due);
        self.batch(slot, &due[..count])
    }
}

pub fn create(resource: ResourceId, pool: Option<PoolId>) -> Command {
    Command::CreateResource { resource, pool }
}

pub fn reserve(resources: &[ResourceId], holder: u128, ttl_slots: u64) -> Command {
    Command::Reserve {
        resources: Bundle::from_slice(resources).expect("at most 16 ids"),
        holder,
        ttl_slots,
    }
}

pub fn reserve_any(pool: PoolId, count: u32, holder: u128, ttl_slots: u64) -> Command {
    Command::ReserveAny {
        pool,
        count,
        holder,
        ttl_slots,
    }
}

pub fn activate(lease: LeaseId, holder: u128, epoch: u64, ttl_slots: Option<u64>) -> Command {
    Command::Activate {
        lease,
        holder,
        epoch,
        ttl_slots,
    }
}

pub fn renew(lease: LeaseId, holder: u128, epoch: u64, ttl_slots: u64) -> Command {
    Command::Renew {
        lease,
        holder,
        epoch,
        ttl_slots,
    }
}

pub fn release(lease: LeaseId, holder: u128, epoch: u64) -> Command {
    Command::Release {
        lease,
        holder,
        epoch,
    }
}

pub fn revoke(lease: LeaseId) -> Command {
    Command::Revoke { lease }
}

pub fn reclaim(lease: LeaseId) -> Command {
    Command::Reclaim { lease }
}

pub fn expire(lease: LeaseId, deadline_slot: u64) -> Request {
    Request {
        operation_id: 0,
        command: Command::Expire {
            lease,
            deadline_slot,
        },
    }
}
