//! Replays the committed history through the unchanged core (the sequential model) and checks,
//! op by op: no resource is ever held by two live leases; reads saw exactly the model's state
//! at their op. It also keeps what the other checkers need: every request's position and
//! outcome, the state digest and slot of every op, and when each lease stopped being live.

use std::collections::BTreeMap;

use allocdb_core::{
    Allocator, Command, Config, LeaseState, Op, Outcome, Request, ResultCode, codec,
};
use allocdb_vsr::{Query, ReadResult};

use crate::history::History;
use crate::record::{Answer, CallKind, Record};

/// One execution (or stored-outcome repetition) of a request in the history.
#[derive(Clone, Copy, Debug)]
pub struct Occurrence {
    /// Where.
    pub op: Op,
    /// Position in the batch.
    pub index: u32,
    /// The request.
    pub request: Request,
    /// What the model returned.
    pub outcome: Outcome,
}

/// How a lease stopped being live.
#[derive(Clone, Copy, Debug)]
pub struct LeaseEnd {
    /// The op after which it was no longer live.
    pub op: Op,
    /// Its state then.
    pub state: LeaseState,
}

/// What the replay learned.
#[derive(Debug, Default)]
pub struct Replay {
    /// The last op replayed (the history is contiguous up to here).
    pub op_max: Op,
    /// Slot of every op (index `op - 1`).
    pub slots: Vec<u64>,
    /// State digest after every op (index `op - 1`).
    pub digests: Vec<u128>,
    /// Occurrences by operation id, in log order.
    pub occurrences: BTreeMap<u128, Vec<Occurrence>>,
    /// Members of every lease granted, by lease id.
    pub members: BTreeMap<u128, Vec<u128>>,
    /// When leases stopped being live.
    pub ends: BTreeMap<u128, LeaseEnd>,
    /// Violations found.
    pub violations: Vec<String>,
    /// Reads compared with the model.
    pub reads_checked: u64,
}

impl Replay {
    fn violation(&mut self, text: String) {
        if self.violations.len() < 8 {
            self.violations.push(text);
        }
    }

    /// The first op whose slot is at least `slot` (`None`: no such op in the history).
    pub fn first_op_at_slot(&self, slot: u64) -> Option<Op> {
        let at = self.slots.partition_point(|s| *s < slot);
        (at < self.slots.len()).then(|| at as Op + 1)
    }
}

/// Replays `history` with `config`, checking allocation safety and `records`' reads.
pub fn replay(history: &History, config: Config, records: &[Record]) -> Replay {
    let mut model = Allocator::new(config).expect("the simulator's core config is valid");
    let mut out = Replay::default();
    let mut reads: BTreeMap<Op, Vec<&Record>> = BTreeMap::new();
    for record in records {
        if let (CallKind::Read { .. }, Answer::Read { op, .. }) = (record.call, record.answer) {
            reads.entry(op).or_default().push(record);
        }
    }
    settle_reads(&model, 0, reads.remove(&0).unwrap_or_default(), &mut out);
    let mut live: BTreeMap<u128, Vec<u128>> = BTreeMap::new();
    let mut requests =
        Vec::with_capacity(usize::try_from(config.batch_requests_max).expect("u32 fits"));
    for (&op, committed) in &history.ops {
        if op != out.op_max + 1 {
            break;
        }
        if let Err(error) = codec::decode_batch(
            &committed.body,
            codec::RequestOrigin::Log,
            config.batch_requests_max,
            &mut requests,
        ) {
            out.violation(format!(
                "history: committed op {op} does not decode: {error}"
            ));
            break;
        }
        let mut outcomes = vec![Outcome::code(ResultCode::Ok); requests.len()];
        model.apply_batch(op, committed.slot, &requests, &mut outcomes);
        for (index, (request, outcome)) in requests.iter().zip(&outcomes).enumerate() {
            let index = u32::try_from(index).expect("batches are bounded");
            note_request(&model, op, index, *request, *outcome, &mut live, &mut out);
        }
        check_allocation(&model, op, &mut live, &mut out);
        out.op_max = op;
        out.slots.push(model.last_slot());
        out.digests.push(model.state_digest());
        settle_reads(&model, op, reads.remove(&op).unwrap_or_default(), &mut out);
    }
    if let Err(error) = model.find_violation() {
        out.violation(format!(
            "core invariant broken after op {}: {error}",
            out.op_max
        ));
    }
    for (op, pending) in reads {
        let clients: Vec<u8> = pending.iter().map(|r| r.client).collect();
        out.violation(format!(
            "read: clients {clients:?} read state at op {op}, beyond the committed history (op {})",
            out.op_max
        ));
    }
    out
}

fn note_request(
    model: &Allocator,
    op: Op,
    index: u32,
    request: Request,
    outcome: Outcome,
    live: &mut BTreeMap<u128, Vec<u128>>,
    out: &mut Replay,
) {
    let grants = matches!(
        request.command,
        Command::Reserve { .. } | Command::ReserveAny { .. }
    );
    if grants && outcome.code == ResultCode::Ok && !outcome.retry {
        if let Ok(view) = model.get_lease(outcome.lease) {
            let members = view.resources.as_slice().to_vec();
            out.members.insert(outcome.lease.0, members.clone());
            live.insert(outcome.lease.0, members);
        }
    }
    if request.operation_id != 0 {
        out.occurrences
            .entry(request.operation_id)
            .or_default()
            .push(Occurrence {
                op,
                index,
                request,
                outcome,
            });
    }
}

/// No resource held by two live leases after `op` (checked from the leases' side, not with
/// the core's own invariant code).
fn check_allocation(
    model: &Allocator,
    op: Op,
    live: &mut BTreeMap<u128, Vec<u128>>,
    out: &mut Replay,
) {
    let mut holders: BTreeMap<u128, u128> = BTreeMap::new();
    let mut ended = Vec::new();
    let mut doubles = Vec::new();
    for (&lease, members) in live.iter() {
        let state = match model.get_lease(allocdb_core::LeaseId(lease)) {
            Ok(view) => view.state,
            Err(_) => LeaseState::Expired,
        };
        if !state.is_live() {
            ended.push((lease, state));
            continue;
        }
        for &resource in members {
            if let Some(other) = holders.insert(resource, lease) {
                doubles.push((resource, other, lease));
            }
        }
    }
    for (lease, state) in ended {
        live.remove(&lease);
        out.ends.insert(lease, LeaseEnd { op, state });
    }
    for (resource, a, b) in doubles {
        out.violation(format!(
            "double allocation (history): after op {op} resource {resource} is held by live leases {a} and {b}"
        ));
    }
}

fn settle_reads(model: &Allocator, op: Op, reads: Vec<&Record>, out: &mut Replay) {
    for record in reads {
        let (CallKind::Read { query, .. }, Answer::Read { result, .. }) =
            (record.call, record.answer)
        else {
            continue;
        };
        let expected = match query {
            Query::Resource(id) => ReadResult::Resource(model.get_resource(id)),
            Query::Lease(id) => ReadResult::Lease(model.get_lease(id)),
            Query::Pool(id) => ReadResult::Pool(model.pool_stats(id)),
        };
        out.reads_checked += 1;
        if expected != result {
            out.violation(format!(
                "linearizability: client {} read {query:?} at op {op} and got {result:?}; the model says {expected:?}",
                record.client
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use allocdb_core::{Allocator, Bundle, Command, LeaseId, Outcome, Request, ResultCode, codec};
    use allocdb_vsr::{Query, ReadResult};

    use super::{Replay, check_allocation, replay};
    use crate::cluster::core_config;
    use crate::history::{CommittedOp, History};
    use crate::record::{Answer, CallKind, Record};

    fn history_of(batches: &[Vec<Request>]) -> History {
        let mut history = History::default();
        for (at, batch) in batches.iter().enumerate() {
            let mut body = Vec::new();
            codec::encode_batch(batch, &mut body);
            let op = at as u64 + 1;
            let committed = CommittedOp {
                checksum: u128::from(op),
                slot: op,
                body,
                first_seen: (0, 0),
            };
            history.ops.insert(op, committed);
        }
        history
    }

    fn create(id: u128, operation_id: u128) -> Request {
        Request {
            operation_id,
            command: Command::CreateResource {
                resource: id,
                pool: None,
            },
        }
    }

    fn read(op: u64, result: ReadResult) -> Record {
        Record {
            client: 0,
            invoked_us: 0,
            answered_us: 1,
            call: CallKind::Read {
                query: Query::Resource(5),
                min_op: 0,
            },
            answer: Answer::Read { op, result },
        }
    }

    #[test]
    fn a_read_that_saw_another_state_is_caught() {
        let history = history_of(&[vec![create(5, 1)]]);
        let replayed = replay(&history, core_config(), &[]);
        assert!(replayed.violations.is_empty(), "{:?}", replayed.violations);
        assert_eq!(replayed.op_max, 1);
        assert_eq!(replayed.occurrences[&1][0].outcome.code, ResultCode::Ok);
        let stale = read(1, ReadResult::Resource(Err(ResultCode::ResourceNotFound)));
        let replayed = replay(&history, core_config(), &[stale]);
        assert!(
            replayed
                .violations
                .iter()
                .any(|v| v.starts_with("linearizability")),
            "{:?}",
            replayed.violations
        );
        let beyond = read(2, ReadResult::Resource(Err(ResultCode::ResourceNotFound)));
        let replayed = replay(&history, core_config(), &[beyond]);
        assert!(replayed.violations.iter().any(|v| v.contains("beyond")));
    }

    #[test]
    fn two_live_leases_on_one_resource_are_caught() {
        let mut model = Allocator::new(core_config()).unwrap();
        let reserve = |id: u128, operation_id: u128| Request {
            operation_id,
            command: Command::Reserve {
                resources: Bundle::from_slice(&[id]).unwrap(),
                holder: 1,
                ttl_slots: 100,
            },
        };
        let batch = [create(1, 1), create(2, 2), reserve(1, 3), reserve(2, 4)];
        let mut outcomes = vec![Outcome::code(ResultCode::Ok); batch.len()];
        model.apply_batch(1, 1, &batch, &mut outcomes);
        let (a, b) = (outcomes[2].lease, outcomes[3].lease);
        assert_ne!(a, LeaseId(0));
        let mut out = Replay::default();
        let mut live = BTreeMap::from([(a.0, vec![1]), (b.0, vec![2])]);
        check_allocation(&model, 1, &mut live, &mut out);
        assert!(out.violations.is_empty(), "{:?}", out.violations);
        // A broken history in which both leases hold resource 1.
        let mut live = BTreeMap::from([(a.0, vec![1]), (b.0, vec![1])]);
        check_allocation(&model, 1, &mut live, &mut out);
        assert!(out.violations[0].starts_with("double allocation (history)"));
    }
}
