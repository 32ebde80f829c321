//! The simulated clients: the real `allocdb-client` over turmoil, running a random workload
//! over a few hot resources, bundles, a pool, TTL expiry, renew, revoke and reclaim; then, once
//! the faults heal, resolving every write whose outcome they do not know and probing the
//! cluster with new work.

use std::time::Duration;

use allocdb_client::{CallOptions, Client, ClientError, ClientOptions};
use allocdb_core::{Bundle, Command, LeaseId, OperationKey, Request, ResultCode};
use allocdb_vsr::Query;
use allocdb_wal::SplitMix64;

use crate::record::{Answer, CallKind, Record};
use crate::scenario::{POOL_ID, Scenario};
use crate::shared::{Phase, SharedRef, now_us};

/// The cluster every seed formats.
pub const CLUSTER_ID: u128 = 0xA110_CDB5;
/// How long a workload call may take, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Resource ids the healing probe creates start here.
const PROBE_BASE: u128 = 50_000;
/// Resource ids a stale resend would create (it must not): one per client from here.
const STALE_PROBE_BASE: u128 = 60_000;
/// Known leases kept as revoke/reclaim targets.
const KNOWN_LEASES_MAX: usize = 32;

/// A lease this client holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    lease: u128,
    epoch: u64,
}

/// One client's context.
struct Ctx {
    index: u8,
    client: Client,
    shared: SharedRef,
    rng: SplitMix64,
    operation_next: u64,
    /// Writes carry no key of the workload's: the library numbers them in its session
    /// (odd-numbered clients), so sessions, their eviction and their windows run under faults.
    numbered: bool,
    holder: u128,
    held: Vec<Held>,
}

impl Ctx {
    /// An application key the workload can retry with after an indefinite answer: issued
    /// after op 0 (the simulated cluster never retires a record: its operation table and
    /// window outlast every seed), unique per client by the client's index in the nonce.
    fn next_operation_id(&mut self) -> u128 {
        self.operation_next += 1;
        OperationKey::Application {
            issued_after_op: 0,
            nonce: (u64::from(self.index) + 1) << 48 | self.operation_next,
        }
        .id()
    }

    fn record(&self, invoked_us: u64, call: CallKind, answer: Answer) {
        self.shared.borrow_mut().records.push(Record {
            client: self.index,
            invoked_us,
            answered_us: now_us(),
            call,
            answer,
        });
    }

    /// Issues `request` (a new write, or a retry of an earlier one with its id) and records it.
    /// Operation id 0 leaves the key to the library's session; the record then carries the
    /// key the library reports (none for a refusal).
    async fn send(&self, request: Request, timeout: Duration) -> Answer {
        let invoked_us = now_us();
        let options = CallOptions {
            operation_id: (request.operation_id != 0).then_some(request.operation_id),
            timeout: Some(timeout),
        };
        let result = self.client.write(request.command, options).await;
        let operation_id = match &result {
            _ if request.operation_id != 0 => request.operation_id,
            Ok(committed) => committed.operation_id,
            Err(ClientError::Indefinite { operation_id }) => *operation_id,
            Err(_) => 0,
        };
        let request = Request {
            operation_id,
            ..request
        };
        let answer = match result {
            Ok(c) => Answer::Committed {
                op: c.op,
                index: c.index,
                lease: c.lease.0,
                epoch: c.epoch,
                deadline_slot: c.deadline_slot,
                retry: c.retry,
            },
            Err(ClientError::Rejected { code, op }) => Answer::Rejected { code, op },
            Err(error) if !error.is_definite() => Answer::Indefinite,
            Err(_) => Answer::NotExecuted,
        };
        self.record(invoked_us, CallKind::Write(request), answer);
        let view = self.client.stats().view_max;
        let mut shared = self.shared.borrow_mut();
        shared.view_max = shared.view_max.max(view);
        answer
    }

    async fn write(&mut self, command: Command) -> Answer {
        let operation_id = if self.numbered {
            0
        } else {
            self.next_operation_id()
        };
        let request = Request {
            operation_id,
            command,
        };
        self.send(request, CALL_TIMEOUT).await
    }

    async fn read(&self, query: Query, min_op: u64, timeout: Duration) -> Answer {
        let invoked_us = now_us();
        let options = CallOptions {
            operation_id: None,
            timeout: Some(timeout),
        };
        let answer = match self.client.read(query, Some(min_op), options).await {
            Ok(read) => Answer::Read {
                op: read.op,
                result: read.value,
            },
            Err(_) => Answer::NotExecuted,
        };
        self.record(invoked_us, CallKind::Read { query, min_op }, answer);
        answer
    }
}

/// Connects a client, retrying until the healing phase is over.
async fn connect(index: u8, seed: u64, addresses: Vec<String>) -> Client {
    let mut options = ClientOptions::new(addresses, CLUSTER_ID);
    options.identity_seed = Some(seed.rotate_left(17) ^ (u64::from(index) + 1));
    options.call_timeout = CALL_TIMEOUT;
    options.request_timeout = Duration::from_millis(300);
    options.connect_timeout = Duration::from_millis(300);
    // turmoil's streams are simulated: the simulator tests the protocol, not TLS, and says so.
    options.security = Some(allocdb_client::Security::Insecure);
    loop {
        match Client::connect(options.clone()).await {
            Ok(client) => return client,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One simulated client, from its first call to its last healing probe.
///
/// # Errors
/// Never: failures are recorded in `shared` for the checkers (the signature is turmoil's).
pub async fn run_client(
    index: u8,
    scenario: Scenario,
    addresses: Vec<String>,
    shared: SharedRef,
) -> turmoil::Result {
    let client = connect(index, scenario.seed, addresses).await;
    let mut ctx = Ctx {
        index,
        client,
        shared,
        rng: SplitMix64::new(scenario.seed ^ (u64::from(index) << 40) ^ 0xC11E),
        operation_next: 0,
        numbered: index % 2 == 1,
        holder: u128::from(index) + 1,
        held: Vec::new(),
    };
    if index == 0 {
        create_resources(&mut ctx, &scenario).await;
    } else {
        tokio::time::sleep(Duration::from_millis(150 + ctx.rng.below(200))).await;
    }
    while ctx.shared.borrow().phase == Phase::Workload {
        step(&mut ctx, &scenario).await;
        let think = ctx.rng.up_to(scenario.think_ms_max);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    heal(&mut ctx, &scenario).await;
    ctx.shared.borrow_mut().clients_done += 1;
    Ok(())
}

async fn create_resources(ctx: &mut Ctx, scenario: &Scenario) {
    for id in scenario.hot_ids() {
        ctx.write(Command::CreateResource {
            resource: id,
            pool: None,
        })
        .await;
    }
    for id in scenario.pool_ids() {
        ctx.write(Command::CreateResource {
            resource: id,
            pool: Some(POOL_ID),
        })
        .await;
    }
}

/// One random call.
async fn step(ctx: &mut Ctx, scenario: &Scenario) {
    let ttl_slots = 10 + ctx.rng.below(300);
    match ctx.rng.below(20) {
        0..=5 => {
            let mut ids: Vec<u128> = Vec::new();
            let size = 1 + ctx.rng.below(3);
            for _ in 0..size {
                let id = 1 + u128::from(ctx.rng.below(u64::from(scenario.hot_resources)));
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let bundle = Bundle::from_slice(&ids).expect("at most three resources");
            let command = Command::Reserve {
                resources: bundle,
                holder: ctx.holder,
                ttl_slots,
            };
            let answer = ctx.write(command).await;
            grant(ctx, answer);
        }
        6 | 7 => {
            let count = 1 + u32::try_from(ctx.rng.below(2)).expect("small");
            let command = Command::ReserveAny {
                pool: POOL_ID,
                count,
                holder: ctx.holder,
                ttl_slots,
            };
            let answer = ctx.write(command).await;
            grant(ctx, answer);
        }
        8..=12 => lease_step(ctx, ttl_slots).await,
        13 | 14 => operator_step(ctx).await,
        15 | 16 => {
            let id = 1 + u128::from(ctx.rng.below(u64::from(scenario.hot_resources)));
            ctx.read(Query::Resource(id), 0, CALL_TIMEOUT).await;
        }
        17 => {
            ctx.read(Query::Pool(POOL_ID), 0, CALL_TIMEOUT).await;
        }
        _ => {
            let lease = pick_known(ctx);
            ctx.read(Query::Lease(LeaseId(lease)), 0, CALL_TIMEOUT)
                .await;
        }
    }
}

/// Remembers a granted lease.
fn grant(ctx: &mut Ctx, answer: Answer) {
    if let Answer::Committed { lease, epoch, .. } = answer {
        ctx.held.push(Held { lease, epoch });
        let mut shared = ctx.shared.borrow_mut();
        shared.known_leases.push(lease);
        if shared.known_leases.len() > KNOWN_LEASES_MAX {
            shared.known_leases.remove(0);
        }
    }
}

/// Activate, renew or release one of this client's leases.
async fn lease_step(ctx: &mut Ctx, ttl_slots: u64) {
    if ctx.held.is_empty() {
        return;
    }
    let at = usize::try_from(ctx.rng.below(ctx.held.len() as u64)).expect("small");
    let held = ctx.held[at];
    let lease = LeaseId(held.lease);
    let (holder, epoch) = (ctx.holder, held.epoch);
    let command = match ctx.rng.below(3) {
        0 => Command::Activate {
            lease,
            holder,
            epoch,
            ttl_slots: if ctx.rng.below(3) == 0 {
                None
            } else {
                Some(ttl_slots)
            },
        },
        1 => Command::Renew {
            lease,
            holder,
            epoch,
            ttl_slots,
        },
        _ => Command::Release {
            lease,
            holder,
            epoch,
        },
    };
    let release = matches!(command, Command::Release { .. });
    match ctx.write(command).await {
        Answer::Committed { epoch, .. } if !release => ctx.held[at].epoch = epoch,
        Answer::Committed { .. } | Answer::Rejected { .. } => {
            ctx.held.swap_remove(at);
        }
        _ => {}
    }
}

/// Revoke or reclaim someone's lease (an operator's actions).
async fn operator_step(ctx: &mut Ctx) {
    let lease = LeaseId(pick_known(ctx));
    let command = if ctx.rng.below(2) == 0 {
        Command::Revoke { lease }
    } else {
        Command::Reclaim { lease }
    };
    ctx.write(command).await;
}

fn pick_known(ctx: &mut Ctx) -> u128 {
    let known = ctx.shared.borrow().known_leases.clone();
    if known.is_empty() {
        return 1;
    }
    known[usize::try_from(ctx.rng.below(known.len() as u64)).expect("small")]
}

/// After the faults heal: learn the outcome of every write this client does not know, then
/// show the cluster takes new work (a write and a read of it).
async fn heal(ctx: &mut Ctx, scenario: &Scenario) {
    let heal_timeout = Duration::from_millis(scenario.heal_ms / 2);
    let unknown: Vec<Request> = ctx
        .shared
        .borrow()
        .records
        .iter()
        .filter(|r| r.client == ctx.index && r.answer == Answer::Indefinite)
        .filter_map(|r| match r.call {
            CallKind::Write(request) => Some(request),
            CallKind::Read { .. } => None,
        })
        .collect();
    for request in unknown {
        let answer = ctx.send(request, heal_timeout).await;
        if !answer.is_answer() {
            let text = format!(
                "client {}: operation {:#x} still has no definite outcome after healing ({answer:?})",
                ctx.index, request.operation_id
            );
            ctx.shared.borrow_mut().liveness.push(text);
        }
    }
    if ctx.numbered {
        stale_probe(ctx, heal_timeout).await;
    }
    let probe = Command::CreateResource {
        resource: PROBE_BASE + u128::from(ctx.index),
        pool: None,
    };
    let request = Request {
        operation_id: ctx.next_operation_id(),
        command: probe,
    };
    let answer = ctx.send(request, heal_timeout).await;
    let Answer::Committed { op, .. } = answer else {
        let text = format!(
            "client {}: the healed cluster did not accept new work: {answer:?}",
            ctx.index
        );
        ctx.shared.borrow_mut().liveness.push(text);
        return;
    };
    let id = PROBE_BASE + u128::from(ctx.index);
    let read = ctx.read(Query::Resource(id), op, heal_timeout).await;
    if !matches!(read, Answer::Read { op: read_op, .. } if read_op >= op) {
        let text = format!(
            "client {}: the healed cluster did not answer a read of op {op}: {read:?}",
            ctx.index
        );
        ctx.shared.borrow_mut().liveness.push(text);
    }
}

/// Resends request number 1 of the client's session (long answered, with another command, as a
/// delayed duplicate or a buggy client would): it must be refused (stale, its session evicted,
/// or a conflict while still stored), never executed.
async fn stale_probe(ctx: &mut Ctx, timeout: Duration) {
    let Some(session) = ctx.client.stats().session_id else {
        return;
    };
    let key = OperationKey::Session {
        session,
        request: 1,
    };
    let request = Request {
        operation_id: key.id(),
        command: Command::CreateResource {
            resource: STALE_PROBE_BASE + u128::from(ctx.index),
            pool: None,
        },
    };
    match ctx.send(request, timeout).await {
        Answer::Rejected {
            code:
                ResultCode::RequestStale | ResultCode::SessionEvicted | ResultCode::OperationConflict,
            ..
        } => {}
        answer => {
            let text = format!(
                "exactly once: client {}: a resend of request 1 of session {session:#x} with another command \
                 was answered {answer:?}; it must be refused without executing",
                ctx.index
            );
            ctx.shared.borrow_mut().liveness.push(text);
        }
    }
}
