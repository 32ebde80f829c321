//! The cluster checkers: every property is checked after every step.
//!
//! (a)/(b) one committed batch per op, never changed: a global history op → checksum fed by
//! every replica's applied ops; (c) equal state digests at equal applied ops; (d) the core's
//! invariants on every replica and on a model replaying the history; (e) every reply a client
//! received matches the model's outcome at that op and position (and reads see the model's
//! state at their op, no older than any write already acknowledged).

use std::collections::BTreeMap;

use allocdb_core::{Allocator, Config, Op, Outcome, Request, ResultCode, codec};
use allocdb_vsr::{Query, ReadResult};
use allocdb_wal::Checksum;

/// A committed op in the history.
pub struct Committed {
    pub checksum: Checksum,
    pub body: Vec<u8>,
    pub slot: u64,
    pub first_replica: u8,
}

/// A write reply waiting for the model to reach its op.
struct WriteCheck {
    client: usize,
    operation_id: u128,
    op: Op,
    index: u32,
    outcome: Outcome,
}

/// A read reply waiting for the model to reach its op.
struct ReadCheck {
    client: usize,
    query: Query,
    result: ReadResult,
}

pub struct Checker {
    pub history: BTreeMap<Op, Committed>,
    model: Allocator,
    model_outcomes: BTreeMap<Op, Vec<(u128, Outcome)>>,
    digests: BTreeMap<Op, u128>,
    writes: Vec<WriteCheck>,
    reads: BTreeMap<Op, Vec<ReadCheck>>,
    /// The highest op of any write reply delivered so far (reads must not be older).
    pub acknowledged_op_max: Op,
    pub violations: Vec<String>,
    pub writes_checked: u64,
    pub reads_checked: u64,
    pub reads_unchecked: u64,
    requests: Vec<Request>,
}

impl Checker {
    pub fn new(config: Config) -> Checker {
        Checker {
            history: BTreeMap::new(),
            model: Allocator::new(config).expect("valid core config"),
            model_outcomes: BTreeMap::new(),
            digests: BTreeMap::new(),
            writes: Vec::new(),
            reads: BTreeMap::new(),
            acknowledged_op_max: 0,
            violations: Vec::new(),
            writes_checked: 0,
            reads_checked: 0,
            reads_unchecked: 0,
            requests: Vec::with_capacity(usize::try_from(config.batch_requests_max).unwrap()),
        }
    }

    pub fn violation(&mut self, text: String) {
        if self.violations.len() < 16 {
            self.violations.push(text);
        }
    }

    /// (a) and (b): one batch per op, forever.
    pub fn observe_commit(
        &mut self,
        replica: u8,
        op: Op,
        checksum: Checksum,
        slot: u64,
        body: &[u8],
    ) {
        match self.history.get(&op) {
            Some(known) if known.checksum != checksum => {
                let first = known.first_replica;
                self.violation(format!(
                    "(a/b) op {op}: replica {replica} committed checksum {checksum:#x}, replica {first} committed {:#x}",
                    known.checksum
                ));
            }
            Some(_) => {}
            None => {
                self.history.insert(
                    op,
                    Committed {
                        checksum,
                        body: body.to_vec(),
                        slot,
                        first_replica: replica,
                    },
                );
            }
        }
    }

    /// (c): replicas that applied the same op have the same state.
    pub fn observe_digest(&mut self, replica: u8, op: Op, digest: u128) {
        match self.digests.get(&op) {
            Some(known) if *known != digest => {
                self.violation(format!(
                    "(c) op {op}: replica {replica} digest {digest:#x} differs from {known:#x}"
                ));
            }
            Some(_) => {}
            None => {
                self.digests.insert(op, digest);
            }
        }
    }

    /// (d) on one replica's core.
    pub fn observe_invariants(&mut self, replica: u8, core: &Allocator) {
        if let Err(error) = core.find_violation() {
            self.violation(format!("(d) replica {replica}: {error}"));
        }
    }

    pub fn observe_write_reply(
        &mut self,
        client: usize,
        operation_id: u128,
        op: Op,
        index: u32,
        outcome: Outcome,
    ) {
        self.acknowledged_op_max = self.acknowledged_op_max.max(op);
        self.writes.push(WriteCheck {
            client,
            operation_id,
            op,
            index,
            outcome,
        });
    }

    pub fn observe_read_reply(
        &mut self,
        client: usize,
        op: Op,
        min_required: Op,
        query: Query,
        result: ReadResult,
    ) {
        if op < min_required {
            self.violation(format!(
                "(e) client {client} read at op {op}, older than acknowledged op {min_required}"
            ));
        }
        if op < self.model.last_op() {
            self.reads_unchecked += 1;
            return;
        }
        self.reads.entry(op).or_default().push(ReadCheck {
            client,
            query,
            result,
        });
    }

    /// Replays newly contiguous history through the model and settles pending checks.
    pub fn advance_model(&mut self) {
        loop {
            let next = self.model.last_op() + 1;
            let Some(committed) = self.history.get(&next) else {
                break;
            };
            let max = self.model.config().batch_requests_max;
            if let Err(error) = codec::decode_batch(
                &committed.body,
                codec::RequestOrigin::Log,
                max,
                &mut self.requests,
            ) {
                self.violation(format!(
                    "(e) op {next}: committed batch does not decode: {error}"
                ));
                return;
            }
            let mut outcomes = vec![Outcome::code(ResultCode::Ok); self.requests.len()];
            self.model
                .apply_batch(next, committed.slot, &self.requests, &mut outcomes);
            let pairs = self
                .requests
                .iter()
                .map(|r| r.operation_id)
                .zip(outcomes)
                .collect();
            self.model_outcomes.insert(next, pairs);
            if let Err(error) = self.model.find_violation() {
                self.violation(format!("(d) model after op {next}: {error}"));
            }
            let digest = self.model.state_digest();
            self.observe_digest(u8::MAX, next, digest);
            self.settle_reads(next);
        }
        self.settle_writes();
    }

    fn settle_reads(&mut self, op: Op) {
        let Some(reads) = self.reads.remove(&op) else {
            return;
        };
        for read in reads {
            let expected = match read.query {
                Query::Resource(id) => ReadResult::Resource(self.model.get_resource(id)),
                Query::Lease(id) => ReadResult::Lease(self.model.get_lease(id)),
                Query::Pool(id) => ReadResult::Pool(self.model.pool_stats(id)),
            };
            self.reads_checked += 1;
            if expected != read.result {
                let client = read.client;
                self.violation(format!(
                    "(e) client {client} read at op {op}: got {:?}, model says {expected:?}",
                    read.result
                ));
            }
        }
    }

    fn settle_writes(&mut self) {
        let model_op = self.model.last_op();
        let mut index = 0;
        while index < self.writes.len() {
            let check = &self.writes[index];
            if check.op > model_op {
                index += 1;
                continue;
            }
            let check = self.writes.swap_remove(index);
            self.writes_checked += 1;
            let found = self
                .model_outcomes
                .get(&check.op)
                .and_then(|o| o.get(usize::try_from(check.index).unwrap()));
            // Every answer names where its operation executed: a retry answered from the
            // dedupe record reports the original position, whose execution it must repeat.
            let executed = allocdb_core::Outcome {
                retry: false,
                ..check.outcome
            };
            match found {
                Some((operation_id, outcome))
                    if *operation_id == check.operation_id && *outcome == executed => {}
                other => {
                    let (client, op, at) = (check.client, check.op, check.index);
                    self.violation(format!(
                        "(e) client {client} operation {:#x} told op {op}[{at}] = {:?}; history has {other:?}",
                        check.operation_id, check.outcome
                    ));
                }
            }
        }
    }

    pub fn model_op(&self) -> Op {
        self.model.last_op()
    }

    pub fn history_op_max(&self) -> Op {
        self.history.keys().next_back().copied().unwrap_or(0)
    }
}
