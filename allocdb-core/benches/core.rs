//! Throughput of the allocator core on one thread, with 1,000,000 resources. Prints one line
//! per scenario: `core <scenario> ops_per_sec=<N> ns_per_op=<N>`. Every command in a batch
//! counts as one op, whatever its result. Run with `cargo bench -p allocdb-core`.

use allocdb_core::{
    Allocator, Bundle, Command, Config, LeaseId, OperationKey, Outcome, Request, ResultCode,
};
use std::time::Instant;

const RESOURCES: u32 = 1_000_000;
const POOL_SIZE: u32 = 10_000;
const POOL: u128 = 1;
const BATCH: usize = 1_000;
const HOLDER: u128 = 7;

fn config() -> Config {
    Config {
        resources_max: RESOURCES + POOL_SIZE,
        pools_max: 4,
        leases_max: 1 << 16,
        lease_members_max: 1 << 18,
        bundle_size_max: 8,
        operations_max: 1 << 14,
        clients_max: 8,
        session_requests_max: 64,
        ttl_slots_max: 1 << 20,
        // One slot per batch: records and terminal leases retire a few batches later, so the
        // retirement paths are part of what is measured.
        dedupe_window_slots: 4,
        lease_history_slots: 4,
        expirations_per_batch_max: 64,
        batch_requests_max: 1 << 12,
    }
}

/// Applies batches, numbering ops, slots and operation ids.
struct Driver {
    allocator: Allocator,
    op: u64,
    operation: u64,
    requests: Vec<Request>,
    outcomes: Vec<Outcome>,
    ops: u64,
}

impl Driver {
    fn new() -> Driver {
        let mut driver = Driver {
            allocator: Allocator::new(config()).expect("valid config"),
            op: 0,
            operation: 0,
            requests: Vec::with_capacity(BATCH),
            outcomes: vec![Outcome::code(ResultCode::Ok); 1 << 12],
            ops: 0,
        };
        let mut requests = Vec::with_capacity(BATCH);
        for id in 0..RESOURCES + POOL_SIZE {
            let pool = (id >= RESOURCES).then_some(POOL);
            requests.push(Command::CreateResource {
                resource: u128::from(id),
                pool,
            });
            if requests.len() == BATCH {
                // Untimed, but checked: a refused setup would only surface later, as a
                // scenario's reserves failing for a reason the scenario does not show.
                let outcomes = driver.apply(&requests);
                assert!(
                    outcomes
                        .iter()
                        .all(|outcome| outcome.code == ResultCode::Ok),
                    "setup refused: {:?}",
                    outcomes
                        .iter()
                        .find(|outcome| outcome.code != ResultCode::Ok)
                );
                requests.clear();
            }
        }
        driver.ops = 0;
        driver
    }

    /// Applies `commands` as one batch under fresh application keys at the next slot. Each
    /// key names the last op applied as the one it was issued after, as a client names the
    /// newest commit it saw: a key issued after op 0 would be refused as too old once the
    /// first records retire.
    fn apply(&mut self, commands: &[Command]) -> &[Outcome] {
        self.requests.clear();
        for command in commands {
            self.operation += 1;
            let key = OperationKey::Application {
                issued_after_op: self.op,
                nonce: self.operation,
            };
            self.requests.push(Request {
                operation_id: key.id(),
                command: *command,
            });
        }
        self.op += 1;
        let count = commands.len();
        self.allocator.apply_batch(
            self.op,
            self.op,
            &self.requests,
            &mut self.outcomes[..count],
        );
        self.ops += count as u64;
        &self.outcomes[..count]
    }
}

fn reserve(resources: &[u128]) -> Command {
    Command::Reserve {
        resources: Bundle::from_slice(resources).expect("at most 16"),
        holder: HOLDER,
        ttl_slots: 1_000,
    }
}

fn release_all(outcomes: &[Outcome], releases: &mut Vec<Command>) {
    releases.clear();
    for outcome in outcomes.iter().filter(|o| o.code == ResultCode::Ok) {
        releases.push(Command::Release {
            lease: outcome.lease,
            holder: HOLDER,
            epoch: outcome.epoch,
        });
    }
}

fn report(name: &str, driver: &Driver, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let (ops_per_sec, ns_per_op) = {
        let ops = driver.ops as f64;
        ((ops / seconds) as u64, (seconds * 1e9 / ops) as u64)
    };
    println!("core {name} ops_per_sec={ops_per_sec} ns_per_op={ns_per_op}");
    driver.allocator.check_invariants();
}

fn uncontended(rounds: u32) {
    let mut driver = Driver::new();
    let mut commands = Vec::with_capacity(BATCH);
    let mut releases = Vec::with_capacity(BATCH);
    let mut next: u32 = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        commands.clear();
        for _ in 0..BATCH {
            commands.push(reserve(&[u128::from(next)]));
            next = (next + 1) % RESOURCES;
        }
        let outcomes = driver.apply(&commands);
        release_all(outcomes, &mut releases);
        assert_eq!(releases.len(), BATCH, "every distinct reserve succeeds");
        driver.apply(&releases);
    }
    report("uncontended", &driver, started);
}

fn hotspot(rounds: u32) {
    const CONTENDERS: usize = 32;
    let mut driver = Driver::new();
    let mut commands = Vec::with_capacity(BATCH);
    let started = Instant::now();
    for _ in 0..rounds {
        // Groups of 32 reserves of resource 0 (the first wins) then the winner's release.
        commands.clear();
        let groups = BATCH / (CONTENDERS + 1);
        for _ in 0..groups {
            let winner = u32::try_from(commands.len()).expect("small");
            for contender in 0..CONTENDERS {
                commands.push(Command::Reserve {
                    resources: Bundle::from_slice(&[0]).expect("one id"),
                    holder: contender as u128,
                    ttl_slots: 1_000,
                });
            }
            let lease = LeaseId::from_position(driver.op + 1, winner);
            commands.push(Command::Release {
                lease,
                holder: 0,
                epoch: 1,
            });
        }
        let outcomes = driver.apply(&commands);
        assert_eq!(
            outcomes[CONTENDERS].code,
            ResultCode::Ok,
            "the winner releases"
        );
    }
    report("hotspot", &driver, started);
}

fn reserve_any(rounds: u32) {
    let mut driver = Driver::new();
    let commands = vec![
        Command::ReserveAny {
            pool: POOL,
            count: 1,
            holder: HOLDER,
            ttl_slots: 1_000
        };
        BATCH
    ];
    let mut releases = Vec::with_capacity(BATCH);
    let started = Instant::now();
    for _ in 0..rounds {
        let outcomes = driver.apply(&commands);
        release_all(outcomes, &mut releases);
        assert_eq!(releases.len(), BATCH, "the pool has room");
        driver.apply(&releases);
    }
    report("reserve_any", &driver, started);
}

fn bundle8(rounds: u32) {
    let mut driver = Driver::new();
    let mut commands = Vec::with_capacity(BATCH);
    let mut releases = Vec::with_capacity(BATCH);
    let mut next: u32 = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        commands.clear();
        for _ in 0..BATCH {
            let ids: [u128; 8] = std::array::from_fn(|offset| {
                (u128::from(next) + offset as u128) % u128::from(RESOURCES)
            });
            commands.push(reserve(&ids));
            next = (next + 8) % RESOURCES;
        }
        let outcomes = driver.apply(&commands);
        release_all(outcomes, &mut releases);
        assert_eq!(releases.len(), BATCH, "distinct bundles succeed");
        driver.apply(&releases);
    }
    report("bundle8", &driver, started);
}

fn main() {
    // `cargo bench` passes `--bench`; a quick smoke run (`cargo test --benches`, in CI) passes
    // nothing. Its 8 rounds reach past the 4-slot lease history window, so leases retire in
    // every scenario (records already retire during the setup).
    let full = std::env::args().any(|arg| arg == "--bench");
    let rounds = if full { 2_000 } else { 8 };
    uncontended(rounds);
    hotspot(rounds);
    reserve_any(rounds);
    bundle8(rounds / 2);
}
