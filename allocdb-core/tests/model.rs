//! The allocator against an independent reference model (`model/reference.rs`).
//!
//! Random batches over a tiny id space (6 resources, 3 pools, 3 holders, 12 operation ids)
//! under a tiny `Config`, so contention, retries, conflicts, full tables, expiry, retirement
//! and `lease_retired` all happen within a few dozen batches. Each batch is built as a primary
//! builds it: the expirations due at its slot first, then client requests. For every request the
//! two outcomes must be equal; after every batch every query over the id space must agree and
//! `check_invariants` must pass. Finally the same comparison is run against deliberately broken
//! models to show that it catches them.
//!
//! A failure prints the shrunk list of batch plans and the first difference; proptest stores
//! its seed in `tests/model.proptest-regressions`, so rerunning `cargo test -p allocdb-core
//! --release --test model` replays it first.

// A test target's root resolves modules beside itself; the model lives in `model/` so cargo
// does not mistake it for a test target of its own.
#[path = "model/reference.rs"]
mod reference;

use allocdb_core::{
    Allocator, Bundle, Command, Config, DEADLINE_NONE, LeaseId, Op, OperationKey, Outcome, Request,
    ResultCode, SessionId, Slot, session_id_at,
};
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::FileFailurePersistence;
use proptest::test_runner::TestRunner;
use reference::{Flaws, Model};

const RESOURCES: u8 = 6;
const POOLS: u8 = 3;
const HOLDERS: u8 = 3;
const OPERATION_IDS: u8 = 6;
/// The operation "id" that stands for a fresh application key, issued after the last op.
const FRESH: u8 = u8::MAX;
/// An application key claiming an op the cluster has not reached.
const FUTURE: u8 = u8::MAX - 1;
/// `SESSION + k` (k < 16): a session key; `k % 4` picks a recent session (3: one never
/// registered), `k / 4` the number: the next, a repeat of the highest sent, one below the
/// window, or one skipping ahead.
const SESSION: u8 = 200;
/// Room `due_expirations` may fill; larger than `expirations_per_batch_max` so the cap is the
/// config's, not the buffer's.
const EXPIRATIONS_BUFFER: u8 = 4;
/// Slots never pass this, so `slot + lease_history_slots` and `slot + dedupe_window_slots`
/// always fit in a u64 (the spec leaves their overflow unspecified), while `slot + ttl` can
/// still overflow, which the spec does specify (`slot_overflow`).
const SLOT_CEILING: Slot = u64::MAX - 16;

fn config() -> Config {
    Config {
        resources_max: 5,
        pools_max: 2,
        leases_max: 3,
        // Below the 5 resources: live leases alone can fill it.
        lease_members_max: 4,
        bundle_size_max: 3,
        operations_max: 24,
        // Two sessions of three answers: eviction and stale numbers happen within a few batches.
        clients_max: 2,
        session_requests_max: 3,
        ttl_slots_max: 20,
        dedupe_window_slots: 10,
        lease_history_slots: 10,
        expirations_per_batch_max: 2,
        batch_requests_max: 8,
    }
}

fn resource_id(index: u8) -> u128 {
    100 + u128::from(index)
}

fn pool_id(index: u8) -> u128 {
    7 + u128::from(index)
}

/// Which lease a command names, resolved against the model when the batch is built.
#[derive(Clone, Copy, Debug)]
enum LeaseRef {
    /// The n-th most recently created lease (live, terminal or retired).
    Recent(u8),
    /// Id 0, never issued.
    Zero,
    /// An id from an op that has not happened yet.
    Future,
    /// An unissued index of the op of a real lease.
    Unissued(u8),
}

#[derive(Clone, Copy, Debug)]
enum EpochRef {
    Current,
    Previous,
    Next,
}

#[derive(Clone, Copy, Debug)]
enum HolderRef {
    Owner,
    Holder(u8),
}

#[derive(Clone, Copy, Debug)]
enum TtlRef {
    Zero,
    Within(u8),
    Max,
    OverMax,
    Huge,
}

#[derive(Clone, Copy, Debug)]
enum DeadlineRef {
    Current,
    Earlier,
    Later,
}

#[derive(Clone, Debug)]
enum Action {
    Create(u8, u8, Option<u8>),
    Reserve(u8, Vec<u8>, u8, TtlRef),
    ReserveAny(u8, u8, u8, u8, TtlRef),
    Activate(u8, LeaseRef, HolderRef, EpochRef, Option<TtlRef>),
    Renew(u8, LeaseRef, HolderRef, EpochRef, TtlRef),
    Release(u8, LeaseRef, HolderRef, EpochRef),
    Revoke(u8, LeaseRef),
    Reclaim(u8, LeaseRef),
    /// A hand-made expire: operation id (0 is the only valid one), lease, deadline.
    Expire(u8, LeaseRef, DeadlineRef),
    /// Resend the n-th most recent client request unchanged.
    Retry(u8),
    /// Register a session under operation id `.0` (0 is the only valid one).
    Register(u8),
}

#[derive(Clone, Copy, Debug)]
enum SlotStep {
    Stay,
    Forward(u8),
    Back(u8),
    /// Jump to `u64::MAX - n` (clamped to `SLOT_CEILING`): `slot + ttl` may overflow.
    EndOfTime(u8),
}

#[derive(Clone, Debug)]
struct BatchPlan {
    op_gap: u8,
    /// How much room the primary offers `due_expirations` (up to `EXPIRATIONS_BUFFER`).
    expirations_room: u8,
    slot: SlotStep,
    actions: Vec<Action>,
}

/// Everything the driver remembers to resolve references: issued leases, sent requests, and
/// the sessions registered with the highest request number sent on each.
struct History {
    leases: Vec<LeaseId>,
    sent: Vec<Request>,
    sessions: Vec<(SessionId, u64)>,
}

fn ttl(reference: TtlRef) -> u64 {
    let max = config().ttl_slots_max;
    match reference {
        TtlRef::Zero => 0,
        TtlRef::Within(n) => 1 + u64::from(n) % max,
        TtlRef::Max => max,
        TtlRef::OverMax => max + 1,
        TtlRef::Huge => u64::MAX,
    }
}

/// Operation id 0 (invalid), a small reused id (an application key issued at op 0: retries,
/// conflicts, and once records retire `operation_expired`), or `key`: the key `choose_key`
/// made for `FRESH`, `FUTURE` and session references.
fn operation_id(n: u8, key: u128) -> u128 {
    if n >= SESSION { key } else { u128::from(n) }
}

/// The operation-id field of an action.
fn key_field(action: &Action) -> u8 {
    match *action {
        Action::Create(op, ..)
        | Action::Reserve(op, ..)
        | Action::ReserveAny(op, ..)
        | Action::Activate(op, ..)
        | Action::Renew(op, ..)
        | Action::Release(op, ..)
        | Action::Revoke(op, ..)
        | Action::Reclaim(op, ..)
        | Action::Expire(op, ..)
        | Action::Register(op) => op,
        Action::Retry(_) => 0,
    }
}

/// Makes the key for `FRESH`, `FUTURE` and session references, as a client would (advancing
/// the session's number when it sends the next one).
fn choose_key(field: u8, model: &Model, history: &mut History, nonce: u64) -> u128 {
    match field {
        FRESH => OperationKey::Application {
            issued_after_op: model.last_op(),
            nonce,
        }
        .id(),
        FUTURE => OperationKey::Application {
            issued_after_op: model.last_op() + 5,
            nonce,
        }
        .id(),
        SESSION..FUTURE => {
            let k = field - SESSION;
            let window = u64::from(config().session_requests_max);
            let len = history.sessions.len();
            let pick = usize::from(k % 4);
            if len == 0 {
                // Nothing registered yet: a client would wait for its session.
                let key = OperationKey::Application {
                    issued_after_op: model.last_op(),
                    nonce,
                };
                return key.id();
            }
            if pick == 3 {
                let never = OperationKey::Session {
                    session: u64::MAX - 1,
                    request: 1,
                };
                return never.id();
            }
            let (session, sent) = &mut history.sessions[len - 1 - pick % len];
            let request = match k / 4 {
                0 => {
                    *sent += 1;
                    *sent
                }
                1 => (*sent).max(1),
                2 => sent.saturating_sub(window + 1).max(1),
                _ => {
                    *sent += 2;
                    *sent
                }
            };
            OperationKey::Session {
                session: *session,
                request,
            }
            .id()
        }
        _ => 0,
    }
}

fn lease(model: &Model, history: &History, reference: LeaseRef) -> LeaseId {
    let recent = |n: u8| {
        let len = history.leases.len();
        (len > 0).then(|| history.leases[len - 1 - usize::from(n) % len])
    };
    match reference {
        LeaseRef::Recent(n) => recent(n).unwrap_or(LeaseId(1 << 32)),
        LeaseRef::Zero => LeaseId(0),
        LeaseRef::Future => LeaseId::from_position(model.last_op() + 3, 0),
        LeaseRef::Unissued(n) => {
            let op = recent(n).map_or(1, LeaseId::op);
            LeaseId::from_position(op, 1_000 + u32::from(n))
        }
    }
}

fn holder_and_epoch(model: &Model, id: LeaseId, holder: HolderRef, epoch: EpochRef) -> (u128, u64) {
    let (owner, current) = model.lease(id).map_or((1, 1), |l| (l.holder, l.epoch));
    let holder = match holder {
        HolderRef::Owner => owner,
        HolderRef::Holder(n) => u128::from(n),
    };
    let epoch = match epoch {
        EpochRef::Current => current,
        EpochRef::Previous => current.saturating_sub(1),
        EpochRef::Next => current + 1,
    };
    (holder, epoch)
}

/// Turns a planned action into a request, reading names and epochs from the model.
fn resolve(model: &Model, history: &History, action: &Action, fresh: u128) -> Request {
    let request = |op: u8, command: Command| Request {
        operation_id: operation_id(op, fresh),
        command,
    };
    match action {
        Action::Create(op, resource, pool) => request(
            *op,
            Command::CreateResource {
                resource: resource_id(*resource),
                pool: pool.map(pool_id),
            },
        ),
        Action::Reserve(op, resources, holder, ttl_ref) => {
            let ids: Vec<u128> = resources.iter().map(|r| resource_id(*r)).collect();
            let command = Command::Reserve {
                resources: Bundle::from_slice(&ids).unwrap(),
                holder: u128::from(*holder),
                ttl_slots: ttl(*ttl_ref),
            };
            request(*op, command)
        }
        Action::ReserveAny(op, pool, count, holder, ttl_ref) => {
            let command = Command::ReserveAny {
                pool: pool_id(*pool),
                count: u32::from(*count),
                holder: u128::from(*holder),
                ttl_slots: ttl(*ttl_ref),
            };
            request(*op, command)
        }
        Action::Retry(n) => {
            let len = history.sent.len();
            if len == 0 {
                return request(1, Command::Revoke { lease: LeaseId(0) });
            }
            history.sent[len - 1 - usize::from(*n) % len]
        }
        Action::Register(op) => request(*op, Command::RegisterSession { client: 5 }),
        _ => resolve_lease_action(model, history, action, fresh),
    }
}

fn resolve_lease_action(model: &Model, history: &History, action: &Action, fresh: u128) -> Request {
    let (op, command) = match *action {
        Action::Activate(op, lease_ref, holder, epoch, ttl_ref) => {
            let lease = lease(model, history, lease_ref);
            let (holder, epoch) = holder_and_epoch(model, lease, holder, epoch);
            let ttl_slots = ttl_ref.map(ttl);
            let command = Command::Activate {
                lease,
                holder,
                epoch,
                ttl_slots,
            };
            (op, command)
        }
        Action::Renew(op, lease_ref, holder, epoch, ttl_ref) => {
            let lease = lease(model, history, lease_ref);
            let (holder, epoch) = holder_and_epoch(model, lease, holder, epoch);
            let ttl_slots = ttl(ttl_ref);
            let command = Command::Renew {
                lease,
                holder,
                epoch,
                ttl_slots,
            };
            (op, command)
        }
        Action::Release(op, lease_ref, holder, epoch) => {
            let lease = lease(model, history, lease_ref);
            let (holder, epoch) = holder_and_epoch(model, lease, holder, epoch);
            (
                op,
                Command::Release {
                    lease,
                    holder,
                    epoch,
                },
            )
        }
        Action::Revoke(op, lease_ref) => {
            let lease = lease(model, history, lease_ref);
            (op, Command::Revoke { lease })
        }
        Action::Reclaim(op, lease_ref) => {
            let lease = lease(model, history, lease_ref);
            (op, Command::Reclaim { lease })
        }
        Action::Expire(op, lease_ref, deadline) => {
            let lease = lease(model, history, lease_ref);
            let current = model.lease(lease).map_or(0, |l| l.deadline_slot);
            let deadline_slot = match deadline {
                DeadlineRef::Current => current,
                DeadlineRef::Earlier => current.saturating_sub(1),
                DeadlineRef::Later => current.saturating_add(1),
            };
            let command = Command::Expire {
                lease,
                deadline_slot,
            };
            (op, command)
        }
        _ => unreachable!("not a lease action: {action:?}"),
    };
    Request {
        operation_id: operation_id(op, fresh),
        command,
    }
}

fn next_slot(last_slot: Slot, step: SlotStep) -> Slot {
    let slot = match step {
        SlotStep::Stay => last_slot,
        SlotStep::Forward(n) => last_slot.saturating_add(u64::from(n)),
        SlotStep::Back(n) => last_slot.saturating_sub(u64::from(n)),
        SlotStep::EndOfTime(n) => u64::MAX - u64::from(n),
    };
    slot.min(SLOT_CEILING)
}

/// Compares every query over the id space, naming the first difference.
fn compare_queries(real: &Allocator, model: &Model, history: &History) -> Result<(), String> {
    for index in 0..=RESOURCES {
        let id = resource_id(index);
        let (got, want) = (real.get_resource(id), model.get_resource(id));
        if got != want {
            return Err(format!(
                "get_resource({id}): allocator {got:?}, model {want:?}"
            ));
        }
    }
    for index in 0..=POOLS {
        let id = pool_id(index);
        let (got, want) = (real.pool_stats(id), model.pool_stats(id));
        if got != want {
            return Err(format!(
                "pool_stats({id}): allocator {got:?}, model {want:?}"
            ));
        }
    }
    // Never issued: 0, op 0, an op not applied yet, indices no batch reaches (the batch
    // bound is 8), and one a batch could have issued but maybe did not (op 1, index 7).
    let bogus = [
        LeaseId(0),
        LeaseId(1),
        LeaseId::from_position(model.last_op() + 1, 0),
        LeaseId::from_position(1, 1_000),
        LeaseId::from_position(1, 8),
        LeaseId::from_position(1, 7),
    ];
    for id in history.leases.iter().chain(bogus.iter()) {
        let (got, want) = (real.get_lease(*id), model.get_lease(*id));
        if got != want {
            return Err(format!(
                "get_lease({id:?}): allocator {got:?}, model {want:?}"
            ));
        }
    }
    if (real.last_op(), real.last_slot()) != (model.last_op(), model.last_slot()) {
        return Err(format!(
            "last (op, slot): allocator {:?}, model {:?}",
            (real.last_op(), real.last_slot()),
            (model.last_op(), model.last_slot())
        ));
    }
    Ok(())
}

/// Builds one batch as a primary would: due expirations first (compared), then client requests.
fn build_batch(
    real: &Allocator,
    model: &Model,
    history: &mut History,
    slot: Slot,
    plan: &BatchPlan,
) -> Result<Vec<Request>, String> {
    let placeholder = Request {
        operation_id: 0,
        command: Command::Revoke { lease: LeaseId(0) },
    };
    let mut buffer = [placeholder; EXPIRATIONS_BUFFER as usize];
    let room = usize::from(plan.expirations_room.min(EXPIRATIONS_BUFFER));
    let count = real.due_expirations(slot, &mut buffer[..room]);
    let want = model.due_expirations(slot, room);
    if buffer[..count] != want[..] {
        return Err(format!(
            "due_expirations({slot}): allocator {:?}, model {want:?}",
            &buffer[..count]
        ));
    }
    let mut requests = want;
    let op = model.last_op() + 1 + u64::from(plan.op_gap);
    for action in &plan.actions {
        let nonce = (op << 8) | requests.len() as u64;
        let key = choose_key(key_field(action), model, history, nonce);
        requests.push(resolve(model, history, action, key));
    }
    Ok(requests)
}

/// How often each result code (by value) and each retry was seen: proof the generator reaches
/// every branch rather than agreeing on trivial cases.
#[derive(Default)]
struct Coverage {
    codes: [u64; ResultCode::ALL.len()],
    retries: u64,
    expirations_ok: u64,
}

/// Runs `plans` through the allocator and a model with `flaws`; the first difference, if any.
fn run(plans: &[BatchPlan], flaws: Flaws, coverage: &mut Coverage) -> Result<(), String> {
    let mut real = Allocator::new(config()).map_err(|e| format!("config refused: {e}"))?;
    let mut model = Model::new(config(), flaws);
    let mut history = History {
        leases: Vec::new(),
        sent: Vec::new(),
        sessions: Vec::new(),
    };
    let mut outcomes = Vec::new();
    // Per lease: the effective slot and TTL of the command that last set its deadline.
    let mut deadline_set: BTreeMap<LeaseId, (Slot, u64)> = BTreeMap::new();
    for (batch, plan) in plans.iter().enumerate() {
        let op: Op = model.last_op() + 1 + u64::from(plan.op_gap);
        let slot = next_slot(model.last_slot(), plan.slot);
        let requests = build_batch(&real, &model, &mut history, slot, plan)
            .map_err(|e| format!("batch {batch} (op {op}): {e}"))?;
        outcomes.clear();
        outcomes.resize(requests.len(), Outcome::code(ResultCode::Ok));
        real.apply_batch(op, slot, &requests, &mut outcomes);
        let want = model.apply_batch(op, slot, &requests);
        for (index, request) in requests.iter().enumerate() {
            if outcomes[index] != want[index] {
                return Err(format!(
                    "batch {batch} (op {op}, slot {slot}) request {index} {request:?}: \
                     allocator {:?}, model {:?}",
                    outcomes[index], want[index]
                ));
            }
            let position = u32::try_from(index).expect("small batches");
            let (got, expected) = (
                real.executed_position(position),
                model.executed_positions()[index],
            );
            if got != expected {
                return Err(format!(
                    "batch {batch} (op {op}) request {index} {request:?}: executed at \
                     {got:?} by the allocator, {expected:?} by the model"
                ));
            }
            if matches!(request.command, Command::RegisterSession { .. })
                && want[index].code == ResultCode::Ok
            {
                history.sessions.push((session_id_at(op, position), 0));
            }
            coverage.codes[want[index].code as usize] += 1;
            coverage.retries += u64::from(want[index].retry);
            let expired = matches!(request.command, Command::Expire { .. });
            coverage.expirations_ok += u64::from(expired && want[index].code == ResultCode::Ok);
            let created = matches!(
                request.command,
                Command::Reserve { .. } | Command::ReserveAny { .. }
            );
            if created && want[index].code == ResultCode::Ok && !want[index].retry {
                history.leases.push(want[index].lease);
            }
            if request.operation_id != 0 {
                history.sent.push(*request);
            }
            check_expiry_guarantee(request, &want[index], model.last_slot(), &mut deadline_set)
                .map_err(|e| format!("batch {batch} (op {op}) request {index}: {e}"))?;
        }
        real.check_invariants();
        compare_queries(&real, &model, &history)
            .map_err(|e| format!("after batch {batch} (op {op}, slot {slot}): {e}"))?;
    }
    Ok(())
}

/// The expiry guarantee in slots: a lease is expired only at a slot more than `ttl` slots
/// after the slot at which the command that set its deadline was stamped (held through its
/// deadline slot). With the primary's stamps never running ahead of real time by more than the
/// rounding of one slot, this is what makes "never expired before `ttl` in real time" hold.
fn check_expiry_guarantee(
    request: &Request,
    outcome: &Outcome,
    slot: Slot,
    deadline_set: &mut BTreeMap<LeaseId, (Slot, u64)>,
) -> Result<(), String> {
    if outcome.code != ResultCode::Ok || outcome.retry {
        return Ok(());
    }
    let ttl = match request.command {
        Command::Reserve { ttl_slots, .. }
        | Command::ReserveAny { ttl_slots, .. }
        | Command::Renew { ttl_slots, .. } => Some(ttl_slots),
        Command::Activate { ttl_slots, .. } => Some(ttl_slots.unwrap_or(u64::MAX)),
        Command::Expire { lease, .. } => {
            let (set_slot, ttl) = deadline_set[&lease];
            if slot.saturating_sub(set_slot) <= ttl {
                return Err(format!(
                    "lease {lease:?} with TTL {ttl} set at slot {set_slot} expired at slot {slot}"
                ));
            }
            None
        }
        _ => None,
    };
    if let Some(ttl) = ttl {
        deadline_set.insert(outcome.lease, (slot, ttl));
    }
    Ok(())
}

fn small(max: u8) -> impl Strategy<Value = u8> {
    0..max
}

fn operation() -> impl Strategy<Value = u8> {
    prop_oneof![
        1 => Just(0),
        3 => 1..=OPERATION_IDS,
        16 => Just(FRESH),
        1 => Just(FUTURE),
        // Mostly the next number of a recent session; sometimes the others.
        6 => (0..3_u8).prop_map(|pick| SESSION + pick),
        3 => (0..16_u8).prop_map(|k| SESSION + k),
    ]
}

fn holder() -> impl Strategy<Value = u8> {
    1..=HOLDERS
}

fn ttl_ref() -> impl Strategy<Value = TtlRef> {
    prop_oneof![
        1 => Just(TtlRef::Zero),
        12 => any::<u8>().prop_map(TtlRef::Within),
        2 => Just(TtlRef::Max),
        1 => Just(TtlRef::OverMax),
        1 => Just(TtlRef::Huge),
    ]
}

fn lease_ref() -> impl Strategy<Value = LeaseRef> {
    prop_oneof![
        16 => (0..3_u8).prop_map(LeaseRef::Recent),
        4 => (3..8_u8).prop_map(LeaseRef::Recent),
        1 => Just(LeaseRef::Zero),
        1 => Just(LeaseRef::Future),
        1 => small(4).prop_map(LeaseRef::Unissued),
    ]
}

fn holder_ref() -> impl Strategy<Value = HolderRef> {
    prop_oneof![6 => Just(HolderRef::Owner), 1 => holder().prop_map(HolderRef::Holder)]
}

fn epoch_ref() -> impl Strategy<Value = EpochRef> {
    prop_oneof![
        6 => Just(EpochRef::Current),
        1 => Just(EpochRef::Previous),
        1 => Just(EpochRef::Next),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let bundle = prop_oneof![
        8 => proptest::collection::vec(small(RESOURCES), 1..=3),
        1 => proptest::collection::vec(small(RESOURCES), 0..=4),
    ];
    let deadline = prop_oneof![
        4 => Just(DeadlineRef::Current),
        1 => Just(DeadlineRef::Earlier),
        1 => Just(DeadlineRef::Later),
    ];
    prop_oneof![
        6 => (operation(), small(RESOURCES), proptest::option::of(small(POOLS)))
            .prop_map(|(op, r, p)| Action::Create(op, r, p)),
        6 => (operation(), bundle, holder(), ttl_ref())
            .prop_map(|(op, rs, h, t)| Action::Reserve(op, rs, h, t)),
        4 => (operation(), small(POOLS), 0..=4_u8, holder(), ttl_ref())
            .prop_map(|(op, p, c, h, t)| Action::ReserveAny(op, p, c, h, t)),
        4 => (operation(), lease_ref(), holder_ref(), epoch_ref(), proptest::option::of(ttl_ref()))
            .prop_map(|(op, l, h, e, t)| Action::Activate(op, l, h, e, t)),
        3 => (operation(), lease_ref(), holder_ref(), epoch_ref(), ttl_ref())
            .prop_map(|(op, l, h, e, t)| Action::Renew(op, l, h, e, t)),
        4 => (operation(), lease_ref(), holder_ref(), epoch_ref())
            .prop_map(|(op, l, h, e)| Action::Release(op, l, h, e)),
        2 => (operation(), lease_ref()).prop_map(|(op, l)| Action::Revoke(op, l)),
        2 => (operation(), lease_ref()).prop_map(|(op, l)| Action::Reclaim(op, l)),
        1 => (prop_oneof![4 => Just(0_u8), 1 => 1..=OPERATION_IDS], lease_ref(), deadline)
            .prop_map(|(op, l, d)| Action::Expire(op, l, d)),
        3 => small(8).prop_map(Action::Retry),
        2 => prop_oneof![6 => Just(0_u8), 1 => Just(1_u8)].prop_map(Action::Register),
    ]
}

fn slot_step() -> impl Strategy<Value = SlotStep> {
    // The end of time is a trap (slots can no longer advance, so nothing expires and the
    // operation table stays full), so only about one sequence in ten falls into it.
    prop_oneof![
        40 => Just(SlotStep::Stay),
        100 => (1..5_u8).prop_map(SlotStep::Forward),
        20 => (5..30_u8).prop_map(SlotStep::Forward),
        20 => (1..10_u8).prop_map(SlotStep::Back),
        1 => (16..=22_u8).prop_map(SlotStep::EndOfTime),
    ]
}

fn plans() -> impl Strategy<Value = Vec<BatchPlan>> {
    let requests_max = config().batch_requests_max - config().expirations_per_batch_max;
    let plan = (
        prop_oneof![8 => Just(0_u8), 1 => 1..3_u8],
        // Room 0 is expiry lag: leases stay live past their deadline (`lease_expired`).
        prop_oneof![4 => Just(EXPIRATIONS_BUFFER), 1 => Just(0_u8), 1 => 1..=2_u8],
        slot_step(),
        proptest::collection::vec(action(), 0..=requests_max as usize),
    )
        .prop_map(|(op_gap, expirations_room, slot, actions)| BatchPlan {
            op_gap,
            expirations_room,
            slot,
            actions,
        });
    proptest::collection::vec(plan, 1..48)
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Beside this file: `tests/model.proptest-regressions` (integration tests have no
        // lib.rs for the default persistence to anchor on).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::with_cases(4096)
    })]

    #[test]
    fn allocator_matches_the_reference_model(plans in plans()) {
        if let Err(difference) = run(&plans, Flaws::default(), &mut Coverage::default()) {
            return Err(TestCaseError::fail(difference));
        }
    }
}

/// Runs the comparison against a broken model until it reports a difference; panics if it
/// never does, which would mean the comparison cannot see that kind of bug.
fn assert_caught(flaws: Flaws) -> String {
    // Deterministic, so this test passes or fails the same way on every run.
    let mut runner = TestRunner::deterministic();
    let strategy = plans();
    for _ in 0..1_000 {
        let plans = strategy.new_tree(&mut runner).unwrap().current();
        if let Err(difference) = run(&plans, flaws, &mut Coverage::default()) {
            return difference;
        }
    }
    panic!("the comparison never noticed {flaws:?}");
}

#[test]
fn the_comparison_catches_a_model_that_skips_the_epoch_check() {
    let difference = assert_caught(Flaws {
        skip_epoch_check: true,
        ..Flaws::default()
    });
    assert!(difference.contains("StaleEpoch"), "{difference}");
}

#[test]
fn the_comparison_catches_a_model_that_frees_to_the_wrong_end_of_the_pool() {
    assert_caught(Flaws {
        free_to_head: true,
        ..Flaws::default()
    });
}

/// The bound the driver relies on: at the highest slot it uses, every window still fits.
#[test]
fn the_slot_ceiling_keeps_windows_in_range() {
    let config = config();
    assert!(
        SLOT_CEILING
            .checked_add(config.lease_history_slots)
            .is_some()
    );
    assert!(
        SLOT_CEILING
            .checked_add(config.dedupe_window_slots)
            .is_some()
    );
    // Reaching `DEADLINE_NONE` (saturating) means `slot + ttl` can overflow: slot_overflow.
    assert_eq!(
        SLOT_CEILING.saturating_add(config.ttl_slots_max),
        DEADLINE_NONE
    );
}

/// Every result code, retries and expirations all occur, so agreement is not vacuous.
#[test]
fn the_generator_reaches_every_result_code() {
    let mut runner = TestRunner::deterministic();
    let strategy = plans();
    let mut coverage = Coverage::default();
    for _ in 0..600 {
        let plans = strategy.new_tree(&mut runner).unwrap().current();
        run(&plans, Flaws::default(), &mut coverage).unwrap();
    }
    println!(
        "retries {} expirations {}",
        coverage.retries, coverage.expirations_ok
    );
    for code in ResultCode::ALL {
        println!("{:>28} {}", code.name(), coverage.codes[code as usize]);
    }
    // A full operation table retires its oldest record instead of refusing.
    for code in ResultCode::ALL
        .into_iter()
        .filter(|code| *code != ResultCode::OperationTableFull)
    {
        assert!(
            coverage.codes[code as usize] > 0,
            "{} never occurred",
            code.name()
        );
    }
    assert!(coverage.retries > 0 && coverage.expirations_ok > 0);
}

/// Sends each batch to both implementations and compares every outcome and the invariants.
fn compare_batches(batches: &[Vec<Request>]) -> Result<(), String> {
    let mut real = Allocator::new(config()).map_err(|e| format!("config refused: {e}"))?;
    let mut model = Model::new(config(), Flaws::default());
    for (batch, requests) in batches.iter().enumerate() {
        let op = model.last_op() + 1;
        let mut outcomes = vec![Outcome::code(ResultCode::Ok); requests.len()];
        real.apply_batch(op, 1, requests, &mut outcomes);
        let want = model.apply_batch(op, 1, requests);
        if outcomes != want {
            return Err(format!(
                "batch {batch} {requests:?}: allocator {outcomes:?}, model {want:?}"
            ));
        }
        real.check_invariants();
    }
    Ok(())
}

/// Pairs of commands that differ in one field only, including only in the high half of a
/// u128, an option's presence, a bundle's order or length, or the kind alone. Sent under the
/// same operation id, the second must be an `operation_conflict`, never a retry of the first:
/// random sequences rarely produce such near-twins, so they are listed here.
fn near_twins() -> Vec<(Command, Command)> {
    let high = 1_u128 << 100;
    let (a, b) = (resource_id(0), resource_id(1));
    let bundle = |ids: &[u128]| Bundle::from_slice(ids).unwrap();
    let lease = LeaseId::from_position(1, 0);
    let reserve = |resources, holder| Command::Reserve {
        resources,
        holder,
        ttl_slots: 5,
    };
    let activate = |holder, ttl_slots| Command::Activate {
        lease,
        holder,
        epoch: 1,
        ttl_slots,
    };
    vec![
        (
            Command::CreateResource {
                resource: a,
                pool: None,
            },
            Command::CreateResource {
                resource: a,
                pool: Some(0),
            },
        ),
        (
            Command::CreateResource {
                resource: a,
                pool: None,
            },
            Command::CreateResource {
                resource: a | high,
                pool: None,
            },
        ),
        (reserve(bundle(&[a, b]), 1), reserve(bundle(&[b, a]), 1)),
        (reserve(bundle(&[a]), 1), reserve(bundle(&[a, 0]), 1)),
        (reserve(bundle(&[a]), 1), reserve(bundle(&[a]), 1 | high)),
        (activate(1, None), activate(1, Some(u64::MAX))),
        (activate(1, Some(0)), activate(1, None)),
        (
            activate(1, Some(3)),
            Command::Renew {
                lease,
                holder: 1,
                epoch: 1,
                ttl_slots: 3,
            },
        ),
        (Command::Revoke { lease }, Command::Reclaim { lease }),
        (
            Command::Revoke { lease },
            Command::Revoke {
                lease: LeaseId(lease.0 | high),
            },
        ),
        (
            Command::Release {
                lease,
                holder: 1,
                epoch: 1,
            },
            Command::Release {
                lease,
                holder: 1,
                epoch: 1 | (1 << 40),
            },
        ),
    ]
}

/// Each near-twin, sent second under the same operation id, conflicts in both implementations.
#[test]
fn fingerprints_tell_apart_commands_that_differ_in_one_field() {
    for (first, second) in near_twins() {
        let send = |command| Request {
            operation_id: 9,
            command,
        };
        let batches = vec![vec![send(first)], vec![send(second), send(first)]];
        let mut model = Model::new(config(), Flaws::default());
        model.apply_batch(1, 1, &batches[0]);
        let outcomes = model.apply_batch(2, 1, &batches[1]);
        assert_eq!(
            outcomes[0].code,
            ResultCode::OperationConflict,
            "{second:?}"
        );
        assert!(outcomes[1].retry, "{first:?}");
        compare_batches(&batches).unwrap();
    }
}
