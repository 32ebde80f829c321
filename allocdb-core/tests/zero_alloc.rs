//! Applying commands after construction allocates nothing: a counting global allocator
//! watches 100,000 mixed commands, including expiry, history retirement and dedupe retirement.

// A global allocator is an `unsafe impl` by definition (the trait is unsafe to implement).
// The only unsafe code here forwards to the system allocator unchanged and counts calls.
#![allow(unsafe_code)]

use allocdb_core::{
    Allocator, Bundle, Command, Config, LeaseId, OperationKey, Outcome, Request, ResultCode,
    session_id_at,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread, so the test harness and other tests running in parallel are not counted.
    // A `const` initialiser: reading it never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    ALLOCATIONS.with(|cell| cell.set(cell.get() + 1));
    BYTES.with(|cell| cell.set(cell.get() + bytes as u64));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn bytes() -> u64 {
    BYTES.with(Cell::get)
}

fn counting() -> bool {
    COUNTING.with(Cell::get)
}

fn set_counting(on: bool) {
    COUNTING.with(|cell| cell.set(on));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            count(layout.size());
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            count(new_size);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: usize = 100;
const COMMANDS: usize = 100_000;

fn config() -> Config {
    Config {
        resources_max: 256,
        pools_max: 4,
        leases_max: 512,
        lease_members_max: 2_048,
        bundle_size_max: 4,
        operations_max: 4_096,
        clients_max: 2,
        session_requests_max: 16,
        ttl_slots_max: 64,
        dedupe_window_slots: 16,
        lease_history_slots: 8,
        expirations_per_batch_max: 32,
        batch_requests_max: 256,
    }
}

/// A deterministic command mix over a small id space (splitmix64 state).
struct Mix {
    state: u64,
    leases: [LeaseId; 64],
    lease_count: usize,
}

impl Mix {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.state;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    fn lease(&mut self) -> LeaseId {
        if self.lease_count == 0 {
            return LeaseId::from_position(1, 0);
        }
        let index = usize::try_from(self.next() % 64).unwrap() % self.lease_count.min(64);
        self.leases[index]
    }

    fn command(&mut self, allocator: &Allocator) -> Command {
        let roll = self.next() % 100;
        let resource = u128::from(self.next() % 300);
        let ttl = self.next() % 70;
        let lease = self.lease();
        let (holder, epoch) = allocator
            .get_lease(lease)
            .map_or((0, 1), |view| (view.holder, view.epoch));
        match roll {
            0..10 => Command::CreateResource {
                resource,
                pool: (resource % 2 == 0).then_some(resource % 5),
            },
            10..35 => Command::Reserve {
                resources: Bundle::from_slice(&[resource, resource + 1]).unwrap(),
                holder: 7,
                ttl_slots: ttl,
            },
            35..50 => Command::ReserveAny {
                pool: resource % 5,
                count: u32::try_from(self.next() % 5).unwrap(),
                holder: 8,
                ttl_slots: ttl,
            },
            50..60 => Command::Activate {
                lease,
                holder,
                epoch,
                ttl_slots: (ttl % 2 == 0).then_some(ttl),
            },
            60..70 => Command::Renew {
                lease,
                holder,
                epoch,
                ttl_slots: ttl,
            },
            70..85 => Command::Release {
                lease,
                holder,
                epoch,
            },
            85..93 => Command::Revoke { lease },
            _ => Command::Reclaim { lease },
        }
    }
}

/// Session keys of the newest session, a long-gone session's stale numbers, fresh application
/// keys, and old application keys that repeat (retries, conflicts, and once retired
/// `operation_expired`).
fn choose_key(
    mix: &mut Mix,
    op: u64,
    nonce: u64,
    number: &mut u64,
    session: u64,
    sessions: [u64; 2],
) -> OperationKey {
    match mix.next() % 10 {
        0 => OperationKey::Application {
            issued_after_op: 0,
            nonce: nonce % 50,
        },
        1 if session != 0 => OperationKey::Session {
            session: sessions[usize::from(mix.next() % 3 == 0)],
            request: number.saturating_sub(40).max(1),
        },
        2..=4 if session != 0 => {
            *number += 1 + mix.next() % 2;
            OperationKey::Session {
                session,
                request: *number,
            }
        }
        _ => OperationKey::Application {
            issued_after_op: op - 1,
            nonce,
        },
    }
}

#[test]
fn applying_commands_allocates_nothing() {
    let mut allocator = Allocator::new(config()).unwrap();
    let mut mix = Mix {
        state: 42,
        leases: [LeaseId(0); 64],
        lease_count: 0,
    };
    // Every buffer the loop uses is allocated before counting starts.
    let mut requests = vec![
        Request {
            operation_id: 0,
            command: Command::Revoke { lease: LeaseId(0) }
        };
        BATCH + 32
    ];
    let mut outcomes = vec![Outcome::code(ResultCode::Ok); BATCH + 32];
    let mut seen = [0_u64; ResultCode::ALL.len()];
    let (mut applied, mut op, mut slot, mut operation) = (0, 0_u64, 0_u64, 0_u128);
    let (mut session, mut number) = (0_u64, 0_u64);
    // The previous two sessions: with two rows, the older one has been evicted.
    let mut sessions = [0_u64; 2];
    let allocations_before = allocations();
    let bytes_before = bytes();
    set_counting(true);
    while applied < COMMANDS {
        op += 1;
        slot += mix.next() % 4;
        let due = allocator.due_expirations(slot, &mut requests[..32]);
        for request in &mut requests[due..due + BATCH] {
            operation += 1;
            let nonce = u64::try_from(operation).expect("small counter");
            let key = choose_key(&mut mix, op, nonce, &mut number, session, sessions);
            *request = Request {
                operation_id: key.id(),
                command: mix.command(&allocator),
            };
        }
        // Now and then a new session, which evicts the least recently used once all are taken.
        let registers = op % 8 == 0;
        if registers {
            requests[due] = Request {
                operation_id: 0,
                command: Command::RegisterSession { client: op.into() },
            };
        }
        let count = due + BATCH;
        allocator.apply_batch(op, slot, &requests[..count], &mut outcomes[..count]);
        if registers {
            let index = u32::try_from(due).expect("small batch");
            sessions = [session, sessions[0]];
            session = session_id_at(op, index);
            number = 0;
        }
        for outcome in &outcomes[..count] {
            seen[outcome.code as usize] += 1;
            if outcome.lease.0 != 0 {
                mix.leases[mix.lease_count % 64] = outcome.lease;
                mix.lease_count += 1;
            }
        }
        applied += count;
        let _ = allocator.state_digest();
    }
    set_counting(false);
    let allocations = allocations() - allocations_before;
    let bytes = bytes() - bytes_before;
    assert_eq!((allocations, bytes), (0, 0), "applying commands allocated");
    allocator.check_invariants();
    // The mix really exercised the paths that could allocate: expiry, retirement, full tables.
    for code in [
        ResultCode::Ok,
        ResultCode::LeaseRetired,
        ResultCode::ResourceBusy,
        ResultCode::StaleEpoch,
        ResultCode::SessionEvicted,
        ResultCode::RequestStale,
        ResultCode::OperationExpired,
    ] {
        assert!(
            seen[code as usize] > 100,
            "{code:?} seen only {} times",
            seen[code as usize]
        );
    }
    assert!(allocator.last_slot() > 2 * config().lease_history_slots);
    history_eviction_allocates_nothing();
}

/// Reserve/release cycles over a lease table far smaller than the history window: every
/// reserve takes the oldest history lease's rows. Runs inside the counted test (the counter
/// is global, so it cannot be a test of its own running in parallel).
fn history_eviction_allocates_nothing() {
    let mut config = config();
    config.leases_max = 8;
    config.lease_history_slots = 1 << 40;
    let mut allocator = Allocator::new(config).unwrap();
    let mut outcomes = vec![Outcome::code(ResultCode::Ok); 8];
    let creates: Vec<Request> = (0..8_u128)
        .map(|id| Request {
            operation_id: id + 1,
            command: Command::CreateResource {
                resource: id,
                pool: None,
            },
        })
        .collect();
    allocator.apply_batch(1, 1, &creates, &mut outcomes);
    let mut previous = LeaseId(0);
    let before = (allocations(), bytes());
    set_counting(true);
    for op in 2..2_000_u64 {
        let resource = u128::from(op % 8);
        let requests = [
            Request {
                operation_id: (u128::from(op - 1) << 64) | 2,
                command: Command::Reserve {
                    resources: Bundle::from_slice(&[resource]).unwrap(),
                    holder: 1,
                    ttl_slots: 10,
                },
            },
            Request {
                operation_id: (u128::from(op - 1) << 64) | 3,
                command: Command::Release {
                    lease: previous,
                    holder: 1,
                    epoch: 1,
                },
            },
        ];
        allocator.apply_batch(op, op, &requests, &mut outcomes[..2]);
        assert_eq!(outcomes[0].code, ResultCode::Ok, "op {op}");
        previous = outcomes[0].lease;
    }
    set_counting(false);
    assert_eq!(
        (allocations(), bytes()),
        before,
        "dropping history allocated"
    );
    let usage = allocator.table_usage();
    assert_eq!((usage.leases, usage.lease_history), (1, 7));
    allocator.check_invariants();
}

#[test]
fn the_counter_counts() {
    // The checker catches an allocation: a deliberately allocating "command" is seen.
    set_counting(true);
    let before = allocations();
    let boxed = std::hint::black_box(Box::new(7_u64));
    let after = allocations();
    set_counting(false);
    drop(boxed);
    assert!(after > before);
}
