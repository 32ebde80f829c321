//! The primary's steps: queue client requests, build and pipeline prepares, count
//! acknowledgements, commit, reply; heartbeats, linearizable reads, and abdication when it
//! can no longer hear a majority.

use std::collections::VecDeque;

use allocdb_core::{LeaseId, Op, Request, codec};
use allocdb_wal::{Checksum, Storage, View, WalError};

use crate::clock::PrimaryClock;
use crate::config::REPLICAS_MAX;
use crate::journal;
use crate::message::{
    ClientId, ClientOperation, ClientRequest, Entry, Message, Query, ReadResult, Reply, ReplyBody,
};
use crate::outbox::Outbox;
use crate::quorum::quorum_op;
use crate::replica::{Replica, Status, slot_of};

/// Where to send the reply for one request of an op this primary prepared.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    client_id: ClientId,
    request_id: u64,
    index: u32,
}

/// A client write waiting for room in the pipeline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Queued {
    client_id: ClientId,
    request_id: u64,
    request: Request,
}

/// A read waiting for its heartbeat round, its `min_op`, and the view's first commit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingRead {
    client_id: ClientId,
    request_id: u64,
    query: Query,
    min_op: Op,
    heartbeat_needed: u64,
    deadline_tick: u64,
}

/// Volatile state of a primary, for one view.
pub(crate) struct PrimaryState {
    clock: PrimaryClock,
    /// Cumulative acknowledgement per replica in this view (own entry: durable op).
    acked: [Op; REPLICAS_MAX as usize],
    /// Last tick each replica was heard from in this view.
    contact_tick: [u64; REPLICAS_MAX as usize],
    /// Highest heartbeat round each replica answered.
    heartbeat_acked: [u64; REPLICAS_MAX as usize],
    heartbeat_round: u64,
    heartbeat_tick: u64,
    heartbeat_due: bool,
    /// The first op prepared in this view: reads wait until it is applied.
    view_first_op: Op,
    /// Reply routes of ops prepared in this view and not yet applied, in op order.
    pipeline: VecDeque<(Op, Vec<Route>)>,
    /// Expirations in prepared but unapplied ops (so none is logged twice).
    expiring: Vec<(LeaseId, Op)>,
    queue: VecDeque<Queued>,
    reads: VecDeque<PendingRead>,
    scratch_expirations: Vec<Request>,
    /// The requests of the prepare being built (reused: cleared before each prepare).
    scratch_batch: Vec<Request>,
    /// The commit point at the last checkpoint taken for a state transfer (or attempted:
    /// a snapshot too large to send is not taken), so they stay rare.
    transfer_checkpoint_op: Op,
    /// The primary of a new cluster prepares nothing until a majority has taken its place
    /// in view 0 (answered a heartbeat): until then every replica holds nothing, so a
    /// replica that was fresh when it started can still join the new cluster (a replica
    /// holding an op would have to be outvoted by a majority of intact ones, which a new
    /// cluster has not got yet).
    pub(crate) genesis_pending: bool,
}

impl<S: Storage> Replica<S> {
    /// Installs fresh primary state for the current view, anchored on the adopted log.
    pub(crate) fn become_primary_state(&mut self) {
        assert!(self.is_primary_of(self.view));
        assert_eq!(self.log_view, self.view);
        assert_eq!(
            self.wal.durable_op(),
            self.wal.last_op(),
            "a view starts from a durable log"
        );
        let mut acked = [0; REPLICAS_MAX as usize];
        acked[slot_of(self.config.replica_index)] = self.wal.last_op();
        let expirations_max =
            usize::try_from(self.config.core.expirations_per_batch_max).expect("u32 fits");
        self.primary = Some(PrimaryState {
            clock: PrimaryClock::start(
                self.log_slot_max(),
                self.clock_slot,
                self.config.clock_drift_ppm_max,
            ),
            acked,
            contact_tick: [self.tick; REPLICAS_MAX as usize],
            heartbeat_acked: [0; REPLICAS_MAX as usize],
            heartbeat_round: 0,
            heartbeat_tick: self.tick,
            heartbeat_due: true,
            view_first_op: 0,
            transfer_checkpoint_op: 0,
            genesis_pending: false,
            pipeline: VecDeque::with_capacity(
                usize::try_from(self.config.pipeline_prepares_max).expect("u32 fits"),
            ),
            expiring: Vec::new(),
            queue: VecDeque::with_capacity(
                usize::try_from(self.config.request_queue_max).expect("u32 fits"),
            ),
            reads: VecDeque::with_capacity(
                usize::try_from(self.config.read_queue_max).expect("u32 fits"),
            ),
            scratch_expirations: vec![
                Request {
                    operation_id: 0,
                    command: allocdb_core::Command::Revoke { lease: LeaseId(0) }
                };
                expirations_max
            ],
            scratch_batch: Vec::with_capacity(
                usize::try_from(self.config.batch_requests_max).expect("u32 fits")
                    + expirations_max,
            ),
        });
        self.verified_op = self.wal.last_op();
        self.join = None;
    }

    /// Leaves the primary role: every waiting client is told to look elsewhere.
    pub(crate) fn drop_primary_state(&mut self, out: &mut Outbox) {
        let Some(state) = self.primary.take() else {
            return;
        };
        let not_primary = ReplyBody::NotPrimary {
            view: self.view,
            primary: self.primary_of(self.view),
        };
        let waiting = state.queue.iter().map(|q| (q.client_id, q.request_id));
        let reads = state.reads.iter().map(|r| (r.client_id, r.request_id));
        let routes = state
            .pipeline
            .iter()
            .flat_map(|(_, routes)| routes.iter().map(|r| (r.client_id, r.request_id)));
        for (client_id, request_id) in waiting.chain(reads).chain(routes) {
            out.reply(Reply {
                client_id,
                request_id,
                body: not_primary,
            });
        }
    }

    pub(crate) fn handle_request(&mut self, request: &ClientRequest, out: &mut Outbox) {
        let reply = |body| Reply {
            client_id: request.client_id,
            request_id: request.request_id,
            body,
        };
        if !self.is_primary() {
            out.reply(reply(ReplyBody::NotPrimary {
                view: self.view,
                primary: self.primary_of(self.view),
            }));
            return;
        }
        let tick = self.tick;
        let read_timeout = self.config.read_timeout_ticks;
        let queue_max = usize::try_from(self.config.request_queue_max).expect("u32 fits");
        let reads_max = usize::try_from(self.config.read_queue_max).expect("u32 fits");
        let read_min_op_max = self
            .last_op()
            .saturating_add(2 * u64::from(self.config.pipeline_prepares_max));
        assert!(read_min_op_max >= self.commit_min);
        let state = self.primary.as_mut().expect("primary");
        match request.operation {
            ClientOperation::Write(write) if write.command.is_internal() => {
                out.reply(reply(ReplyBody::Invalid));
            }
            ClientOperation::Write(_) if state.queue.len() >= queue_max => {
                out.reply(reply(ReplyBody::Overloaded));
            }
            ClientOperation::Write(write) => {
                // Queued only: the caller prepares once after a whole group of requests
                // (`Replica::on_requests`), so one prepare and one fsync carry many of them.
                state.queue.push_back(Queued {
                    client_id: request.client_id,
                    request_id: request.request_id,
                    request: write,
                });
            }
            // Every op a client can have seen committed is in this primary's log, so a `min_op`
            // beyond the log and a full pipeline (plus as much again) can only be forged: it
            // would sit in the read queue until its timeout, so it is refused now.
            ClientOperation::Read { min_op, .. } if min_op > read_min_op_max => {
                out.reply(reply(ReplyBody::Invalid));
            }
            ClientOperation::Read { .. } if state.reads.len() >= reads_max => {
                out.reply(reply(ReplyBody::Overloaded));
            }
            ClientOperation::Read { query, min_op } => {
                // Linearizable: served only after a heartbeat round sent after this moment
                // is answered by a majority still in this view.
                state.reads.push_back(PendingRead {
                    client_id: request.client_id,
                    request_id: request.request_id,
                    query,
                    min_op,
                    heartbeat_needed: state.heartbeat_round + 1,
                    deadline_tick: tick + read_timeout,
                });
                state.heartbeat_due = true;
                if state.heartbeat_tick < tick {
                    self.send_heartbeat(out);
                }
                self.serve_reads(out);
            }
        }
    }

    pub(crate) fn primary_tick(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        let tick = self.tick;
        let quorum = usize::from(self.quorum());
        let abdicate = self.config.primary_abdicate_ticks;
        let heartbeat_interval = self.config.heartbeat_interval_ticks;
        let me = slot_of(self.config.replica_index);
        let count = usize::from(self.config.replica_count);
        let state = self.primary.as_ref().expect("primary");
        let heard = (0..count)
            .filter(|&r| r == me || tick - state.contact_tick[r] <= abdicate)
            .count();
        if heard < quorum {
            // Cannot hear a majority: stop serving (a newer primary may exist) and ask for a
            // new view, so a partitioned old primary never answers reads or commits writes.
            let next = self.view + 1;
            return self.start_view_change(next, out);
        }
        if state.heartbeat_due || tick - state.heartbeat_tick >= heartbeat_interval {
            self.send_heartbeat(out);
        }
        if tick - self.timer_resend_tick >= self.config.resend_interval_ticks {
            self.timer_resend_tick = tick;
            self.resend_prepares(out)?;
        }
        self.maybe_prepare(false, out)?;
        self.serve_reads(out);
        Ok(())
    }

    fn send_heartbeat(&mut self, out: &mut Outbox) {
        let tick = self.tick;
        let me = slot_of(self.config.replica_index);
        let (commit, head_op) = (self.commit_max, self.wal.last_op());
        let state = self.primary.as_mut().expect("primary");
        state.heartbeat_round += 1;
        state.heartbeat_tick = tick;
        state.heartbeat_due = false;
        state.heartbeat_acked[me] = state.heartbeat_round;
        let (digest_op, digest) = self.digests.latest();
        let message = Message::Commit {
            view: self.view,
            commit,
            head_op,
            heartbeat: state.heartbeat_round,
            digest_op,
            digest,
        };
        self.broadcast(&message, out);
    }

    /// Retransmits unacknowledged pipeline prepares (messages may be lost).
    fn resend_prepares(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        let last_op = self.wal.last_op();
        for replica in 0..self.config.replica_count {
            if replica == self.config.replica_index {
                continue;
            }
            let acked = self.primary.as_ref().expect("primary").acked[slot_of(replica)];
            let from = acked.max(self.commit_max) + 1;
            let to = last_op.min(from + u64::from(self.config.repair_ops_max) - 1);
            for entry in journal::read_entries(&mut self.wal, from, to)? {
                out.send(
                    replica,
                    Message::Prepare {
                        view: self.view,
                        commit: self.commit_max,
                        entry,
                    },
                );
            }
        }
        Ok(())
    }

    /// Builds prepares while the pipeline has room and there is work (client requests or due
    /// expirations); `force` builds one even when empty (a new view's first op).
    pub(crate) fn maybe_prepare(
        &mut self,
        mut force: bool,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        for _ in 0..=self.config.pipeline_prepares_max {
            if !self.is_primary() || self.primary.as_ref().is_some_and(|p| p.genesis_pending) {
                return Ok(());
            }
            let in_flight = self.wal.last_op() - self.commit_max.min(self.wal.last_op());
            if !force && in_flight >= u64::from(self.config.pipeline_prepares_max) {
                return Ok(());
            }
            if !self.prepare_one(force, out)? {
                return Ok(());
            }
            force = false;
        }
        Ok(())
    }

    /// Builds, logs and sends one prepare; false when there was nothing to prepare.
    fn prepare_one(&mut self, force: bool, out: &mut Outbox) -> Result<bool, WalError> {
        let op = self.wal.last_op() + 1;
        let clock_slot = self.clock_slot;
        let state = self.primary.as_mut().expect("primary");
        let slot = state.clock.stamp(clock_slot).max(self.core.last_slot());
        // A stepped-down clock rounds twice (whole slots read, then scaled), so two stamps of
        // a fast clock may lie up to two slots further apart than the real time between them;
        // listing leases one slot later keeps expiry at or after the TTL (docs/semantics.md).
        let drift_guard = u64::from(self.config.clock_drift_ppm_max > 0);
        let due = self.core.due_expirations(
            slot.saturating_sub(drift_guard),
            &mut state.scratch_expirations,
        );
        // Reused: a batch of a thousand requests is a few hundred KiB, which the allocator would
        // map and unmap afresh for every prepare.
        let mut requests = std::mem::take(&mut state.scratch_batch);
        requests.clear();
        let mut expiring: Vec<(LeaseId, Op)> = Vec::new();
        for request in &state.scratch_expirations[..due] {
            let allocdb_core::Command::Expire { lease, .. } = request.command else {
                unreachable!("due_expirations yields expire commands only")
            };
            if !state.expiring.iter().any(|(l, _)| *l == lease) {
                requests.push(*request);
                expiring.push((lease, op));
            }
        }
        let mut bytes = codec::batch_encoded_bytes_max(0)
            + requests
                .iter()
                .map(|r| codec::request_encoded_bytes(r) as u64)
                .sum::<u64>();
        let mut routes = Vec::new();
        let requests_max =
            requests.len() + usize::try_from(self.config.batch_requests_max).expect("u32 fits");
        while let Some(queued) = state.queue.front() {
            let size = codec::request_encoded_bytes(&queued.request) as u64;
            if requests.len() >= requests_max
                || bytes + size > u64::from(self.config.batch_bytes_max)
            {
                break;
            }
            let index = u32::try_from(requests.len()).expect("bounded by batch_requests_max");
            routes.push(Route {
                client_id: queued.client_id,
                request_id: queued.request_id,
                index,
            });
            requests.push(queued.request);
            bytes += size;
            state.queue.pop_front();
        }
        if requests.is_empty() && !force {
            state.scratch_batch = requests;
            return Ok(false);
        }
        assert!(
            requests.len()
                <= usize::try_from(self.config.core.batch_requests_max).expect("u32 fits")
        );
        let mut body = Vec::with_capacity(usize::try_from(bytes).expect("bounded"));
        codec::encode_batch(&requests, &mut body);
        assert!(body.len() as u64 <= u64::from(self.config.batch_bytes_max));
        state.scratch_batch = requests;
        state.expiring.extend(expiring);
        state.pipeline.push_back((op, routes));
        if state.view_first_op == 0 {
            state.view_first_op = op;
        }
        // Appended, not yet synced: the prepare leaves first and the driver syncs after
        // handing it to the links (`Replica::sync_log`), so the local fsync overlaps the
        // backups' round trip. The primary's own copy counts towards the quorum only once
        // durable (`update_commit` reads `durable_op`).
        let header = self.wal.append(self.view, op, slot, &body)?;
        self.verified_op = op;
        let message = Message::Prepare {
            view: self.view,
            commit: self.commit_max,
            entry: Entry { header, body },
        };
        self.broadcast(&message, out);
        self.update_commit(out)?;
        Ok(true)
    }

    pub(crate) fn on_prepare_ok(
        &mut self,
        from: u8,
        view: View,
        op: Op,
        checksum: Checksum,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if view != self.view || !self.is_primary() {
            return Ok(());
        }
        self.record_ack(from, op, checksum);
        self.advance_commit(out)
    }

    pub(crate) fn on_commit_ack(
        &mut self,
        from: u8,
        view: View,
        heartbeat: u64,
        op: Op,
        checksum: Checksum,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if view != self.view || !self.is_primary() {
            return Ok(());
        }
        let tick = self.tick;
        let state = self.primary.as_mut().expect("primary");
        state.contact_tick[slot_of(from)] = tick;
        let acked = &mut state.heartbeat_acked[slot_of(from)];
        *acked = (*acked).max(heartbeat);
        if state.genesis_pending {
            let count = usize::from(self.config.replica_count);
            let answered = state.heartbeat_acked[..count]
                .iter()
                .filter(|&&round| round > 0)
                .count();
            state.genesis_pending = answered < usize::from(self.config.quorum());
        }
        if op > 0 {
            self.record_ack(from, op, checksum);
        }
        self.advance_commit(out)?;
        self.serve_reads(out);
        Ok(())
    }

    fn record_ack(&mut self, from: u8, op: Op, checksum: Checksum) {
        // Count only acknowledgements of this log (same op, same checksum).
        if journal::checksum_at(&self.wal, op) != Some(checksum) {
            return;
        }
        let tick = self.tick;
        let state = self.primary.as_mut().expect("primary");
        state.contact_tick[slot_of(from)] = tick;
        let acked = &mut state.acked[slot_of(from)];
        *acked = (*acked).max(op);
    }

    /// Commits what a majority holds, then fills the pipeline again.
    pub(crate) fn advance_commit(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        self.update_commit(out)?;
        self.maybe_prepare(false, out)
    }

    /// Raises the commit point to the op a majority holds, then applies and replies.
    fn update_commit(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        let count = usize::from(self.config.replica_count);
        let durable = self.wal.durable_op();
        let me = slot_of(self.config.replica_index);
        let own = &mut self.primary.as_mut().expect("primary").acked[me];
        // The primary never truncates its own view's log, so what is durable only grows.
        assert!(durable >= *own, "the primary's durable log shrank");
        *own = durable;
        let state = self.primary.as_ref().expect("primary");
        // BROKEN ON PURPOSE under `broken-commit-quorum`: the primary alone is a "quorum",
        // so it commits (and replies) before any backup holds the op. No replica assertion
        // sees this; only the cluster checkers can.
        let quorum = if cfg!(feature = "broken-commit-quorum") {
            1
        } else {
            self.quorum()
        };
        let majority_op = quorum_op(&state.acked[..count], quorum);
        assert!(majority_op <= self.wal.last_op());
        if majority_op > self.commit_max {
            self.commit_max = majority_op;
        }
        self.apply_committed(out)?;
        self.serve_reads(out);
        Ok(())
    }

    /// After applying `op`: reply to the clients whose writes it carried (primary only).
    pub(crate) fn reply_applied(&mut self, applied_op: Op, out: &mut Outbox) {
        let op = applied_op;
        let Some(state) = self.primary.as_mut() else {
            return;
        };
        state.expiring.retain(|(_, expiring_op)| *expiring_op > op);
        let Some((front_op, _)) = state.pipeline.front() else {
            return;
        };
        if *front_op != op {
            assert!(*front_op > op, "pipeline ops apply in order");
            return;
        }
        let (_, routes) = state.pipeline.pop_front().expect("front exists");
        assert_eq!(
            self.core.last_op(),
            op,
            "replies follow the batch just applied"
        );
        for route in routes {
            let position = usize::try_from(route.index).expect("u32 fits");
            let outcome = self.scratch_outcomes[position];
            // Every answer reports where its write executed (for a retry answered from a stored
            // record, the original execution), so answers order by their effects' place in
            // the log.
            let (op, index) = self.core.executed_position(route.index);
            debug_assert!(outcome.retry || (op, index) == (applied_op, route.index));
            let body = ReplyBody::Committed { op, index, outcome };
            out.reply(Reply {
                client_id: route.client_id,
                request_id: route.request_id,
                body,
            });
        }
    }

    /// Answers every read whose conditions hold; times out the overdue ones.
    pub(crate) fn serve_reads(&mut self, out: &mut Outbox) {
        if !self.is_primary() {
            return;
        }
        let count = usize::from(self.config.replica_count);
        let quorum = self.quorum();
        let (tick, commit_min) = (self.tick, self.commit_min);
        let state = self.primary.as_mut().expect("primary");
        // The slot answers are made at: the clock that stamps prepares (so expiry), not the
        // applied state's slot, which stands still while nothing commits.
        let slot = state
            .clock
            .reading(self.clock_slot)
            .max(self.core.last_slot());
        let confirmed_round = quorum_op(&state.heartbeat_acked[..count], quorum);
        let view_started = state.view_first_op > 0 && commit_min >= state.view_first_op;
        let mut index = 0;
        while index < state.reads.len() {
            let read = state.reads[index];
            let ready = view_started
                && confirmed_round >= read.heartbeat_needed
                && commit_min >= read.min_op;
            let body = if ready {
                let result = match read.query {
                    Query::Resource(id) => ReadResult::Resource(self.core.get_resource(id)),
                    Query::Lease(id) => ReadResult::Lease(self.core.get_lease(id)),
                    Query::Pool(id) => ReadResult::Pool(self.core.pool_stats(id)),
                };
                ReplyBody::Read {
                    op: commit_min,
                    slot,
                    result,
                }
            } else if tick > read.deadline_tick {
                ReplyBody::ReadTimeout
            } else {
                index += 1;
                continue;
            };
            out.reply(Reply {
                client_id: read.client_id,
                request_id: read.request_id,
                body,
            });
            state.reads.remove(index);
        }
    }

    /// Primary side of repair: the ops a backup asks for (or the checkpoint, when it asks
    /// for ops this log no longer holds).
    pub(crate) fn on_request_prepares(
        &mut self,
        from: u8,
        view: View,
        op_min: Op,
        op_max: Op,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if view == self.view && op_min <= op_max && self.status == Status::ViewChange {
            return self.serve_fetch(from, op_min, op_max, out);
        }
        if view != self.view || !self.is_primary() || op_min > op_max {
            return Ok(());
        }
        let checkpoint_op = self.wal.checkpoint_op();
        if op_min < self.wal.first_op() && op_min <= checkpoint_op {
            self.send_checkpoint(from, out)?;
            return Ok(());
        }
        if self.state_transfer_instead(op_min)? && self.send_checkpoint(from, out)? {
            return Ok(());
        }
        let op_max = op_max.min(op_min + u64::from(self.config.repair_ops_max) - 1);
        for entry in journal::read_entries(&mut self.wal, op_min, op_max)? {
            out.send(
                from,
                Message::Prepare {
                    view: self.view,
                    commit: self.commit_max,
                    entry,
                },
            );
        }
        Ok(())
    }

    /// Whether a backup asking for ops from `op_min` is so far behind (at least
    /// `repair_state_transfer_ops_min` ops below the commit point) that the checkpoint is
    /// cheaper than the ops. If the checkpoint is not far enough ahead of `op_min` to help,
    /// a new one is taken first — at most one per `repair_state_transfer_ops_min` ops
    /// committed, however many backups ask.
    fn state_transfer_instead(&mut self, op_min: Op) -> Result<bool, WalError> {
        let transfer_min = self.config.repair_state_transfer_ops_min;
        if transfer_min == 0 || self.commit_min < op_min.saturating_add(transfer_min) {
            return Ok(false);
        }
        let checkpoint_op = self.wal.checkpoint_op();
        let state = self.primary.as_mut().expect("primary");
        let last = checkpoint_op.max(state.transfer_checkpoint_op);
        // While a checkpoint is being written none can be taken; the attempt (and its budget)
        // waits for the next request.
        if checkpoint_op < op_min.saturating_add(transfer_min)
            && self.commit_min - last.min(self.commit_min) >= transfer_min
            && !self.wal.checkpoint_writing()
        {
            state.transfer_checkpoint_op = self.commit_min;
            // Only a snapshot that can be sent: a checkpoint drops the ops below it, and a
            // backup must get either those ops or the snapshot.
            self.checkpoint_now(Some(self.config.snapshot_bytes_max))?;
        }
        let checkpoint_op = self.wal.checkpoint_op();
        assert!(checkpoint_op <= self.commit_min);
        Ok(checkpoint_op >= op_min.saturating_add(transfer_min))
    }

    pub(crate) fn on_request_headers(
        &mut self,
        from: u8,
        view: View,
        op_min: Op,
        op_max: Op,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if view != self.view || !self.is_primary() || op_min > op_max {
            return Ok(());
        }
        if op_min < self.wal.first_op() && op_min <= self.wal.checkpoint_op() {
            self.send_checkpoint(from, out)?;
            return Ok(());
        }
        let count = usize::try_from(self.config.headers_max).expect("u32 fits");
        let headers: Vec<_> = self
            .wal
            .headers_from(op_min)
            .take_while(|h| h.op <= op_max)
            .take(count)
            .copied()
            .collect();
        if !headers.is_empty() {
            out.send(
                from,
                Message::Headers {
                    view: self.view,
                    headers,
                },
            );
        }
        Ok(())
    }

    /// Sends the checkpoint (state transfer); whether there was one that fits a message.
    pub(crate) fn send_checkpoint(&mut self, to: u8, out: &mut Outbox) -> Result<bool, WalError> {
        let Some(checkpoint) = self.wal.read_checkpoint()? else {
            return Ok(false);
        };
        if checkpoint.snapshot.len() as u64 > u64::from(self.config.snapshot_bytes_max) {
            return Ok(false);
        }
        out.send(
            to,
            Message::Checkpoint {
                view: self.view,
                info: checkpoint.info,
                snapshot: checkpoint.snapshot,
            },
        );
        Ok(true)
    }

    /// A replica asks for the current view's start (late joiner or recovering replica).
    pub(crate) fn on_request_start_view(
        &mut self,
        from: u8,
        view: View,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if view > self.view || !self.is_primary() {
            return Ok(());
        }
        let message = self.start_view_message()?;
        out.send(from, message);
        Ok(())
    }

    pub(crate) fn start_view_message(&mut self) -> Result<Message, WalError> {
        assert!(self.is_primary());
        let suffix = journal::read_suffix(&mut self.wal, self.config.suffix_ops_max)?;
        Ok(Message::StartView {
            view: self.view,
            op: self.wal.last_op(),
            checksum: self.last_checksum(),
            commit: self.commit_max,
            suffix,
        })
    }

    /// Whether this primary still has queued or in-flight client work (for drivers' tests).
    pub fn pending_client_work(&self) -> usize {
        self.primary.as_ref().map_or(0, |s| {
            s.queue.len() + s.reads.len() + s.pipeline.iter().map(|(_, r)| r.len()).sum::<usize>()
        })
    }
}
