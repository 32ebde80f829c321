//! Checkers of what clients were told, against the replayed history:
//! - every acknowledged write is executed exactly once, where and with the result the client
//!   was told; a write the client was told never ran is not in the history;
//! - no two leases clients were granted overlap on a resource in logical time (by what clients
//!   were told about grants, releases and deadlines);
//! - real-time order: an operation that finished before another began precedes it in the
//!   commit order (reads: in the state they saw).

use std::collections::BTreeMap;

use allocdb_core::{Command, LeaseId, Op, Outcome, ResultCode};

use crate::record::{Answer, CallKind, Record};
use crate::replay::{Occurrence, Replay};

/// Collects violations, a bounded number per checker.
#[derive(Debug, Default)]
pub struct Findings {
    /// Violations, each naming its checker.
    pub violations: Vec<String>,
    /// Writes whose answers were compared with the history.
    pub writes_checked: u64,
}

impl Findings {
    fn violation(&mut self, text: String) {
        if self.violations.len() < 12 {
            self.violations.push(text);
        }
    }
}

/// Runs the three checkers.
pub fn check(records: &[Record], replay: &Replay) -> Findings {
    let mut findings = Findings::default();
    check_exactly_once(records, replay, &mut findings);
    check_grants(records, replay, &mut findings);
    check_real_time(records, replay, &mut findings);
    findings
}

/// Whether an occurrence executed the operation: not a retry's stored answer, and not a
/// refusal its key decided (stale, evicted, expired, conflicting) without running anything.
fn executed(occurrence: &Occurrence) -> bool {
    !occurrence.outcome.retry && !occurrence.outcome.code.is_key_refusal()
}

/// The one execution of an operation id.
fn execution(occurrences: &[Occurrence]) -> Option<&Occurrence> {
    occurrences.iter().find(|o| executed(o))
}

fn check_exactly_once(records: &[Record], replay: &Replay, findings: &mut Findings) {
    for (operation_id, occurrences) in &replay.occurrences {
        let executions = occurrences.iter().filter(|o| executed(o)).count();
        if executions > 1 {
            findings.violation(format!(
                "exactly once: operation {operation_id:#x} executed {executions} times: {occurrences:?}"
            ));
        }
    }
    for record in records {
        let CallKind::Write(request) = record.call else {
            continue;
        };
        let found = replay.occurrences.get(&request.operation_id);
        let client = record.client;
        let id = request.operation_id;
        match record.answer {
            Answer::Committed {
                op,
                index,
                lease,
                epoch,
                deadline_slot,
                retry,
            } => {
                findings.writes_checked += 1;
                let told = Outcome {
                    code: ResultCode::Ok,
                    retry,
                    lease: LeaseId(lease),
                    epoch,
                    deadline_slot,
                };
                // Every answer names where its operation executed: a retry answered from the
                // dedupe record reports the original execution, whose outcome it repeats.
                let executed = Outcome {
                    retry: false,
                    ..told
                };
                let at = found.and_then(|o| o.iter().find(|o| o.op == op && o.index == index));
                match at {
                    Some(o) if o.outcome == executed && o.request == request => {}
                    other => findings.violation(format!(
                        "acknowledged write: client {client} was told operation {id:#x} committed at op {op}[{index}] \
                         with {told:?}; the history has {other:?}"
                    )),
                }
                if found.and_then(|o| execution(o)).is_none() {
                    findings.violation(format!(
                        "acknowledged write: client {client}'s operation {id:#x} was never executed in the history"
                    ));
                }
            }
            // A write numbered by the library's session and refused: the library does not
            // report the key of a refusal, so there is nothing to look up (exactly-once over
            // the history above still covers its key).
            Answer::Rejected { .. } if id == 0 => {}
            Answer::Rejected { code, op } => {
                findings.writes_checked += 1;
                let at =
                    found.and_then(|o| o.iter().find(|o| o.op == op && o.outcome.code == code));
                if at.is_none() {
                    findings.violation(format!(
                        "acknowledged write: client {client} was told operation {id:#x} was refused {} at op {op}; \
                         the history has {found:?}",
                        code.name()
                    ));
                }
            }
            Answer::NotExecuted => {
                if let Some(o) = found {
                    findings.violation(format!(
                        "honesty: client {client} was told operation {id:#x} never ran, but the history has it: {o:?}"
                    ));
                }
            }
            Answer::Indefinite | Answer::Read { .. } => {}
        }
    }
}

/// One grant as clients know it.
struct Grant {
    lease: u128,
    start: Op,
    end: Op,
    client: u8,
}

/// No two granted leases overlap on a resource. A lease's end is the earliest of: a release or
/// reclaim someone was told committed, its deadline as last told to a client (the first op
/// whose slot reaches it), and a release or reclaim in the history. Expiry in the history does
/// not count, so a lease expired early is caught.
fn check_grants(records: &[Record], replay: &Replay, findings: &mut Findings) {
    let mut told_deadline: BTreeMap<u128, (Op, u64)> = BTreeMap::new();
    let mut told_end: BTreeMap<u128, Op> = BTreeMap::new();
    let mut grants: BTreeMap<u128, (Vec<u128>, u8)> = BTreeMap::new();
    for record in records {
        let (
            CallKind::Write(request),
            Answer::Committed {
                op,
                lease,
                deadline_slot,
                ..
            },
        ) = (record.call, record.answer)
        else {
            continue;
        };
        match request.command {
            Command::Reserve { resources, .. } => {
                grants.insert(lease, (resources.as_slice().to_vec(), record.client));
            }
            Command::ReserveAny { .. } => {
                if let Some(members) = replay.members.get(&lease) {
                    grants.insert(lease, (members.clone(), record.client));
                }
            }
            Command::Release { lease, .. } | Command::Reclaim { lease } => {
                let end = told_end.entry(lease.0).or_insert(op);
                *end = (*end).min(op);
                continue;
            }
            _ => {}
        }
        if matches!(
            request.command,
            Command::Reserve { .. }
                | Command::ReserveAny { .. }
                | Command::Activate { .. }
                | Command::Renew { .. }
        ) {
            let entry = told_deadline.entry(lease).or_insert((op, deadline_slot));
            if op >= entry.0 {
                *entry = (op, deadline_slot);
            }
        }
    }
    let mut by_resource: BTreeMap<u128, Vec<Grant>> = BTreeMap::new();
    for (lease, (members, client)) in grants {
        let start = LeaseId(lease).op();
        let mut end = Op::MAX;
        if let Some(op) = told_end.get(&lease) {
            end = end.min(*op);
        }
        if let Some((_, deadline)) = told_deadline.get(&lease) {
            end = end.min(replay.first_op_at_slot(*deadline).unwrap_or(Op::MAX));
        }
        if let Some(ended) = replay.ends.get(&lease) {
            if ended.state != allocdb_core::LeaseState::Expired {
                end = end.min(ended.op);
            }
        }
        for resource in members {
            by_resource.entry(resource).or_default().push(Grant {
                lease,
                start,
                end,
                client,
            });
        }
    }
    for (resource, mut list) in by_resource {
        list.sort_by_key(|g| (g.start, g.lease));
        let mut latest: Option<&Grant> = None;
        for grant in &list {
            if let Some(previous) = latest {
                if previous.end > grant.start {
                    findings.violation(format!(
                        "double allocation (clients): resource {resource} granted to client {} as lease {} at op {} \
                         while client {}'s lease {} (op {}) was live until op {} by what clients were told",
                        grant.client, grant.lease, grant.start, previous.client, previous.lease,
                        previous.start, previous.end
                    ));
                }
            }
            if latest.is_none_or(|p| grant.end > p.end) {
                latest = Some(grant);
            }
        }
    }
}

/// A position in the commit order: `(op, index)`; a read of the state at op X sits after
/// every request of op X.
type Position = (Op, u32);

/// Real-time order: everything that finished before an operation began must precede it.
fn check_real_time(records: &[Record], replay: &Replay, findings: &mut Findings) {
    // (invoked, answered, position, is_write, client)
    let mut ops: Vec<(u64, u64, Position, bool, u8)> = Vec::new();
    // A write retried under the same operation id (to learn an unknown outcome) is one
    // operation: from its first invocation to its first answer.
    let mut writes: BTreeMap<u128, (u64, u64, Position, u8)> = BTreeMap::new();
    for record in records {
        // An unanswered call can only be constrained at its start.
        let answered = if record.answer.is_answer() {
            record.answered_us
        } else {
            u64::MAX
        };
        match (record.call, record.answer) {
            (CallKind::Read { .. }, Answer::Read { op, .. }) => {
                ops.push((
                    record.invoked_us,
                    answered,
                    (op, u32::MAX),
                    false,
                    record.client,
                ));
            }
            // A refusal decided by the key alone (a stale resend, an evicted session) is not
            // the keyed operation: it executed nothing, whenever the operation did.
            (CallKind::Write(_), Answer::Rejected { code, .. }) if code.is_key_refusal() => {}
            (CallKind::Write(request), _) => {
                let Some(executed) = replay
                    .occurrences
                    .get(&request.operation_id)
                    .and_then(|o| execution(o))
                else {
                    continue;
                };
                let position = (executed.op, executed.index);
                let entry = writes.entry(request.operation_id).or_insert((
                    record.invoked_us,
                    answered,
                    position,
                    record.client,
                ));
                entry.0 = entry.0.min(record.invoked_us);
                entry.1 = entry.1.min(answered);
            }
            _ => {}
        }
    }
    for (invoked, answered, position, client) in writes.into_values() {
        ops.push((invoked, answered, position, true, client));
    }
    let mut by_answer: Vec<usize> = (0..ops.len()).collect();
    by_answer.sort_by_key(|&i| ops[i].1);
    let mut by_invoke: Vec<usize> = (0..ops.len()).collect();
    by_invoke.sort_by_key(|&i| ops[i].0);
    let mut next = 0;
    let mut write_max: Option<(Position, usize)> = None;
    let mut read_max: Option<(Position, usize)> = None;
    for &b in &by_invoke {
        let (invoked, _, position, is_write, client) = ops[b];
        while next < by_answer.len() && ops[by_answer[next]].1 < invoked {
            let a = by_answer[next];
            let slot = if ops[a].3 {
                &mut write_max
            } else {
                &mut read_max
            };
            if slot.is_none_or(|(p, _)| ops[a].2 > p) {
                *slot = Some((ops[a].2, a));
            }
            next += 1;
        }
        let after_writes = write_max.is_none_or(|(p, _)| position > p);
        let after_reads = read_max.is_none_or(|(p, _)| {
            if is_write {
                position.0 > p.0
            } else {
                position >= p
            }
        });
        if !(after_writes && after_reads) {
            let (p, a) =
                if after_writes { read_max } else { write_max }.expect("one of them failed");
            let kind = if is_write { "write" } else { "read" };
            findings.violation(format!(
                "linearizability: client {client}'s {kind} invoked at {invoked} us sits at {position:?} in the commit order, \
                 before client {}'s operation at {p:?} that had already finished at {} us",
                ops[a].4, ops[a].1
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use allocdb_core::{Bundle, Command, LeaseId, Outcome, Request, ResultCode};

    use super::check;
    use crate::record::{Answer, CallKind, Record};
    use crate::replay::{Occurrence, Replay};

    fn reserve(id: u128) -> Request {
        Request {
            operation_id: id,
            command: Command::Reserve {
                resources: Bundle::from_slice(&[7]).unwrap(),
                holder: 1,
                ttl_slots: 100,
            },
        }
    }

    fn granted(op: u64, request: Request) -> (Occurrence, Answer) {
        let lease = LeaseId::from_position(op, 0);
        let outcome = Outcome {
            code: ResultCode::Ok,
            retry: false,
            lease,
            epoch: 1,
            deadline_slot: 1_000,
        };
        let occurrence = Occurrence {
            op,
            index: 0,
            request,
            outcome,
        };
        let answer = Answer::Committed {
            op,
            index: 0,
            lease: lease.0,
            epoch: 1,
            deadline_slot: 1_000,
            retry: false,
        };
        (occurrence, answer)
    }

    fn record(client: u8, at: (u64, u64), request: Request, answer: Answer) -> Record {
        Record {
            client,
            invoked_us: at.0,
            answered_us: at.1,
            call: CallKind::Write(request),
            answer,
        }
    }

    fn replay_of(occurrences: &[Occurrence]) -> Replay {
        let mut replay = Replay::default();
        for o in occurrences {
            replay
                .occurrences
                .entry(o.request.operation_id)
                .or_default()
                .push(*o);
        }
        replay.op_max = 10;
        replay.slots = (1..=10).collect();
        replay
    }

    #[test]
    fn a_consistent_history_passes() {
        let (o1, a1) = granted(1, reserve(11));
        let replay = replay_of(&[o1]);
        let findings = check(&[record(0, (0, 5), reserve(11), a1)], &replay);
        assert!(findings.violations.is_empty(), "{:?}", findings.violations);
        assert_eq!(findings.writes_checked, 1);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let (_, a1) = granted(1, reserve(11));
        let findings = check(&[record(0, (0, 5), reserve(11), a1)], &replay_of(&[]));
        assert!(
            findings
                .violations
                .iter()
                .any(|v| v.contains("acknowledged write"))
        );
    }

    #[test]
    fn a_double_execution_is_caught() {
        let (o1, _) = granted(1, reserve(11));
        let (mut o2, _) = granted(2, reserve(11));
        o2.request = o1.request;
        let findings = check(&[], &replay_of(&[o1, o2]));
        assert!(
            findings
                .violations
                .iter()
                .any(|v| v.contains("exactly once"))
        );
    }

    #[test]
    fn overlapping_client_grants_are_caught() {
        let (o1, a1) = granted(1, reserve(11));
        let (o2, a2) = granted(3, reserve(12));
        let records = [
            record(0, (0, 5), reserve(11), a1),
            record(1, (6, 9), reserve(12), a2),
        ];
        let findings = check(&records, &replay_of(&[o1, o2]));
        assert!(
            findings
                .violations
                .iter()
                .any(|v| v.contains("double allocation (clients)")),
            "{:?}",
            findings.violations
        );
    }

    #[test]
    fn a_stale_position_after_a_finished_write_is_caught() {
        let (o1, a1) = granted(4, reserve(11));
        let (mut o2, mut a2) = granted(2, reserve(12));
        // The second write has another resource, so only real time is at stake.
        o2.request.command = Command::CreateResource {
            resource: 9,
            pool: None,
        };
        if let Answer::Committed { lease, .. } = &mut a2 {
            *lease = o2.outcome.lease.0;
        }
        let records = [
            record(0, (0, 5), reserve(11), a1),
            record(1, (10, 12), o2.request, a2),
        ];
        let findings = check(&records, &replay_of(&[o1, o2]));
        assert!(
            findings
                .violations
                .iter()
                .any(|v| v.contains("linearizability")),
            "{:?}",
            findings.violations
        );
    }

    #[test]
    fn a_write_reported_not_run_but_committed_is_caught() {
        let (o1, _) = granted(1, reserve(11));
        let findings = check(
            &[record(0, (0, 5), reserve(11), Answer::NotExecuted)],
            &replay_of(&[o1]),
        );
        assert!(findings.violations.iter().any(|v| v.contains("honesty")));
    }
}
