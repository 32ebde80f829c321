//! Late, never early, in real time: no lease expires before its TTL has elapsed in simulated
//! real time since it was granted (or last renewed).
//!
//! The other checkers work in logical time (slots), which is exactly what a primary whose
//! clock runs fast would corrupt without a trace: its slots would simply come faster. This one
//! compares two real times that bound the truth from the safe side:
//! - the grant happened no earlier than the first invocation of the operation that set the
//!   lease's deadline (a reserve, an activate with a TTL, or a renew);
//! - the expiry happened no later than the moment any replica was first seen to have applied
//!   the op holding the `expire` (the controller looks every simulated millisecond).
//!
//! If the second is earlier than the first plus the TTL, the lease certainly expired early.
//! No tolerance is allowed: the primary stamps a batch with a clock reading taken no earlier
//! than the requests' arrival, a lease is held through its deadline slot, and a stepped-down
//! clock gets one more guard slot (docs/semantics.md, "Logical time"), so expiry is never
//! before the TTL has passed in real time since the reserve reached the primary, which is
//! after its invocation.

use std::collections::BTreeMap;

use allocdb_core::{DEADLINE_NONE, LeaseState, Op, ResultCode};

use crate::record::Record;
use crate::replay::Replay;

/// Slots of rounding the checker allows before calling an expiry early: none.
pub const TOLERANCE_SLOTS: u64 = 0;

/// The deadline-setting execution of a lease: op, deadline, operation id.
type Setting = (Op, u64, u128);

/// Checks every expired lease in `replay` against the clients' `records` and the times ops
/// were first seen applied (`applied_seen`: `(op, µs)`, both increasing), with `slot_ms`
/// milliseconds per slot. Returns the violations (at most a few).
pub fn check(
    replay: &Replay,
    records: &[Record],
    applied_seen: &[(Op, u64)],
    slot_ms: u64,
) -> Vec<String> {
    let mut invoked: BTreeMap<u128, u64> = BTreeMap::new();
    for record in records {
        if let Some(id) = record.operation_id() {
            let first = invoked.entry(id).or_insert(record.invoked_us);
            *first = (*first).min(record.invoked_us);
        }
    }
    let mut settings: BTreeMap<u128, Vec<Setting>> = BTreeMap::new();
    for (id, occurrences) in &replay.occurrences {
        for occurrence in occurrences {
            let outcome = occurrence.outcome;
            let sets_deadline = outcome.code == ResultCode::Ok
                && !outcome.retry
                && outcome.lease.0 != 0
                && outcome.deadline_slot != 0
                && outcome.deadline_slot != DEADLINE_NONE;
            if sets_deadline {
                let setting = (occurrence.op, outcome.deadline_slot, *id);
                settings.entry(outcome.lease.0).or_default().push(setting);
            }
        }
    }
    let mut violations = Vec::new();
    for (lease, end) in &replay.ends {
        if end.state != LeaseState::Expired || violations.len() >= 4 {
            continue;
        }
        // The latest deadline set before the expiry is the one the primary acted on.
        let Some(&(op, deadline, id)) = settings
            .get(lease)
            .and_then(|all| all.iter().filter(|s| s.0 < end.op).max_by_key(|s| s.0))
        else {
            continue;
        };
        let Some(&granted_us) = invoked.get(&id) else {
            continue;
        };
        let Some(&(_, expired_us)) =
            applied_seen.get(applied_seen.partition_point(|(seen, _)| *seen < end.op))
        else {
            continue;
        };
        let slot = replay.slots[usize::try_from(op - 1).expect("small")];
        let ttl_slots = deadline.saturating_sub(slot);
        let ttl_us = ttl_slots * slot_ms * 1_000;
        let tolerance_us = TOLERANCE_SLOTS * slot_ms * 1_000;
        if expired_us + tolerance_us < granted_us + ttl_us {
            violations.push(format!(
                "early expiry: lease {lease} (TTL {ttl_slots} slots = {} ms, set at op {op} by operation {id:#x} invoked at {} ms) expired at op {} committed by {} ms: {} ms before its TTL elapsed in real time (tolerance {TOLERANCE_SLOTS} slots)",
                ttl_us / 1_000,
                granted_us / 1_000,
                end.op,
                expired_us / 1_000,
                (granted_us + ttl_us - expired_us) / 1_000,
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use allocdb_core::{Command, LeaseId, LeaseState, Outcome, Request, ResultCode};

    use super::check;
    use crate::record::{Answer, CallKind, Record};
    use crate::replay::{LeaseEnd, Occurrence, Replay};

    /// A lease granted at op 1 (slot 0) with `ttl` slots, by a call invoked at 0 ms, expired
    /// at op 2, first seen applied at `seen_ms`.
    fn verdict(ttl: u64, seen_ms: u64) -> Vec<String> {
        let request = Request {
            operation_id: 7,
            command: Command::Reserve {
                resources: allocdb_core::Bundle::EMPTY,
                holder: 1,
                ttl_slots: ttl,
            },
        };
        let outcome = Outcome {
            code: ResultCode::Ok,
            retry: false,
            lease: LeaseId(1),
            epoch: 1,
            deadline_slot: ttl,
        };
        let mut replay = Replay {
            op_max: 2,
            slots: vec![0, ttl],
            ..Replay::default()
        };
        replay.occurrences.insert(
            7,
            vec![Occurrence {
                op: 1,
                index: 0,
                request,
                outcome,
            }],
        );
        replay.ends.insert(
            1,
            LeaseEnd {
                op: 2,
                state: LeaseState::Expired,
            },
        );
        let record = Record {
            client: 0,
            invoked_us: 0,
            answered_us: 5_000,
            call: CallKind::Write(request),
            answer: Answer::Indefinite,
        };
        check(&replay, &[record], &[(1, 3_000), (2, seen_ms * 1_000)], 10)
    }

    #[test]
    fn an_early_expiry_is_caught_and_a_late_one_is_not() {
        // TTL 100 slots = 1,000 ms from the invocation at 0 ms; no tolerance.
        assert!(verdict(100, 1_000).is_empty());
        assert!(verdict(100, 5_000).is_empty());
        assert_eq!(verdict(100, 999).len(), 1);
        let early = verdict(100, 900);
        assert_eq!(early.len(), 1, "{early:?}");
        assert!(early[0].starts_with("early expiry"), "{early:?}");
        assert!(early[0].contains("100 ms before"), "{early:?}");
    }
}
