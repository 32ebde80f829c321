//! The backup's steps: append prepares in op order after checking the hash chain, sync,
//! acknowledge; learn the commit point; repair missing or divergent ops from the primary;
//! state transfer when the primary no longer holds the ops needed; and catching up to a
//! view's start (joining), which is also how a recovering replica rejoins.

use allocdb_core::{Allocator, Op};
use allocdb_wal::{CheckpointInfo, RecordHeader, Storage, View, WalError};

use crate::journal::{self, Absorb, Reconcile};
use crate::message::{Entry, Message};
use crate::outbox::Outbox;
use crate::replica::{Replica, Status};

impl<S: Storage> Replica<S> {
    /// Whether a repair-path message (prepare, headers, checkpoint) from `from` in `view`
    /// should be taken: it must come from the primary of this replica's current view, and the
    /// replica must be following that view (normal backup or recovering).
    fn following(&self, from: u8, view: View) -> bool {
        view == self.view
            && from == self.primary_of(view)
            && matches!(self.status, Status::Normal | Status::Recovering)
            && self.primary.is_none()
            && !self.probing()
    }

    /// A message from the primary of a newer view reached a normal backup that missed the
    /// view change: move to that view (durably) and ask for its start.
    fn catch_up_to_view(&mut self, from: u8, view: View, out: &mut Outbox) -> Result<(), WalError> {
        let newer = view > self.view || view == self.view && self.status == Status::ViewChange;
        if !newer || from != self.primary_of(view) || self.status == Status::Recovering {
            return Ok(());
        }
        self.drop_primary_state(out);
        self.view = view;
        self.status = Status::Normal;
        self.join = None;
        self.log_view = self.log_view.min(view);
        self.verified_op = self.commit_min;
        self.persist_vsr_state()?;
        self.reset_timers();
        out.send(from, Message::RequestStartView { view });
        Ok(())
    }

    pub(crate) fn on_prepare(
        &mut self,
        from: u8,
        view: View,
        commit: Op,
        entry: &Entry,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if view == self.view && self.status == Status::ViewChange && self.is_primary_of(view) {
            // Nobody else prepares in a view this replica is to lead: a claimant's answer
            // to this new primary's fetch.
            return self.on_fetched_entry(entry, out);
        }
        self.catch_up_to_view(from, view, out)?;
        if !self.following(from, view) {
            return Ok(());
        }
        self.timer_contact_tick = self.tick;
        self.commit_max = self.commit_max.max(commit);
        self.head_known = self.head_known.max(entry.header.op);
        let last_op = self.wal.last_op();
        if entry.header.op > last_op + 1 {
            self.buffer_ahead(entry);
        } else {
            self.absorb_entries(std::slice::from_ref(entry))?;
            self.absorb_buffered()?;
        }
        let grew = self.wal.last_op() > last_op;
        self.after_log_change(out)?;
        if grew {
            // A repair reply (or the live stream) was absorbed: ask for the next chunk now.
            self.repair_progress_tick = self.tick;
            self.request_prepares(out);
        }
        Ok(())
    }

    /// Keeps a prepare of this view's primary that lies beyond a gap in the log, if it falls
    /// inside the repair window (older views' buffered entries go first).
    fn buffer_ahead(&mut self, entry: &Entry) {
        if self.repair_buffer_view != self.view {
            self.repair_buffer.clear();
            self.repair_buffer_view = self.view;
        }
        let op = entry.header.op;
        let last_op = self.wal.last_op();
        assert!(op > last_op + 1);
        let window = self.repair_window_ops();
        let room = usize::try_from(window).unwrap_or(usize::MAX);
        if op - last_op > window || self.repair_buffer.contains_key(&op) {
            return;
        }
        self.repair_buffer.retain(|&buffered, _| buffered > last_op);
        if self.repair_buffer.len() < room {
            self.repair_buffer.insert(op, entry.clone());
        }
        assert!(self.repair_buffer.len() <= room);
    }

    /// Absorbs the buffered prepares that now continue the log (one contiguous run, one
    /// sync); stale ones (at or below the log's end) go. Each is checked against the hash
    /// chain as it is appended, exactly like a prepare arriving in order.
    fn absorb_buffered(&mut self) -> Result<(), WalError> {
        if self.repair_buffer_view != self.view {
            self.repair_buffer.clear();
            return Ok(());
        }
        let last_op = self.wal.last_op();
        self.repair_buffer.retain(|&buffered, _| buffered > last_op);
        let mut run = Vec::new();
        let mut next = last_op + 1;
        while let Some(entry) = self.repair_buffer.remove(&next) {
            run.push(entry);
            next += 1;
        }
        if run.is_empty() {
            return Ok(());
        }
        self.absorb_entries(&run)?;
        assert!(self.repair_buffer.keys().all(|&op| op > next));
        Ok(())
    }

    pub(crate) fn on_commit(
        &mut self,
        from: u8,
        view: View,
        commit: Op,
        head_op: Op,
        heartbeat: u64,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if self.status == Status::Recovering && view < self.view && from == self.primary_of(view) {
            self.older_view_serving = true;
            return Ok(());
        }
        self.catch_up_to_view(from, view, out)?;
        if !self.following(from, view) {
            return Ok(());
        }
        self.timer_contact_tick = self.tick;
        self.commit_max = self.commit_max.max(commit);
        self.head_known = self.head_known.max(head_op);
        if self.status == Status::Recovering {
            // No answer at all: a heartbeat answer counts towards the majority that proves a
            // read current, and a recovering replica can never be part of a newer view's
            // majority, so counting it could let a primary already replaced serve a read.
            return self.apply_committed(out);
        }
        let (op, checksum) = self.acknowledgeable();
        out.send(
            from,
            Message::CommitAck {
                view,
                heartbeat,
                op,
                checksum,
            },
        );
        self.apply_committed(out)
    }

    /// The cumulative acknowledgement this replica may give: only once its log is this view's
    /// log (`log_view` == view), never while recovering, and never beyond what is durable;
    /// (0, 0) otherwise.
    fn acknowledgeable(&self) -> (Op, u128) {
        if self.status != Status::Normal || self.log_view != self.view || self.primary.is_some() {
            return (0, 0);
        }
        let op = self.verified_op.min(self.wal.durable_op());
        let checksum = journal::checksum_at(&self.wal, op).expect("verified ops are held");
        (op, checksum)
    }

    /// A normal backup taking its primary's prepares in its own view: the one state in which
    /// a backup leaves appended prepares unsynced until its driver's `sync_log`, so the
    /// prepares of one round cost one fsync (group commit). It acknowledges them only then.
    pub(crate) fn streaming(&self) -> bool {
        self.status == Status::Normal
            && self.primary.is_none()
            && self.log_view == self.view
            && self.join.is_none()
            && !self.probing()
    }

    /// Sends the cumulative acknowledgement for what is now durable (after `sync_log`).
    pub(crate) fn acknowledge_durable(&mut self, out: &mut Outbox) {
        let (op, checksum) = self.acknowledgeable();
        if op > 0 {
            out.send(
                self.primary_of(self.view),
                Message::PrepareOk {
                    view: self.view,
                    op,
                    checksum,
                },
            );
        }
    }

    /// Brings the log in line with canonical entries, then syncs (one fsync for all) unless
    /// [`Replica::streaming`], where the driver's `sync_log` syncs the whole round at once.
    fn absorb_entries(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        for entry in entries {
            match journal::absorb(&mut self.wal, entry, self.commit_min)? {
                Absorb::Held => self.verified_op = self.verified_op.max(entry.header.op),
                Absorb::NotHeld | Absorb::Refused => {}
                Absorb::Conflicts => {
                    let from = self.primary_of(self.view);
                    self.refuse(from, "entry contradicts an applied op");
                    break;
                }
            }
            self.verified_op = self.verified_op.min(self.wal.last_op());
        }
        if !self.streaming() {
            self.settle_log()?;
        }
        Ok(())
    }

    /// After the log changed: finish joining if the view's head is reached, acknowledge,
    /// apply.
    fn after_log_change(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        self.maybe_finish_join()?;
        // Unsynced prepares are acknowledged by `sync_log`, once, for the whole round.
        if !self.log_unsynced() {
            self.acknowledge_durable(out);
        }
        self.apply_committed(out)
    }

    /// Joining ends when the verified log reaches the `start_view` head: ops beyond it were
    /// never part of this view's log (anything appended in this view chains and is verified),
    /// so they go; then `log_view` = view is made durable, and only then may the replica
    /// acknowledge (a majority acknowledging in this view is what commits).
    pub(crate) fn maybe_finish_join(&mut self) -> Result<(), WalError> {
        let Some((head_op, head_checksum)) = self.join else {
            return Ok(());
        };
        if self.verified_op < head_op {
            return Ok(());
        }
        // The head may already be checkpointed away (then it is committed, hence canonical).
        match journal::checksum_at(&self.wal, head_op) {
            Some(checksum) => assert_eq!(checksum, head_checksum, "verified head differs"),
            None => assert!(head_op < self.wal.checkpoint_op()),
        }
        if self.wal.last_op() > self.verified_op {
            assert!(self.verified_op >= self.commit_min);
            self.wal.truncate_after(self.verified_op)?;
        }
        self.log_view = self.view;
        self.join = None;
        if self.status == Status::Recovering {
            // Caught up to a view's head (hash-chain checked, or through a checkpoint): the
            // durable mark goes in the same write that makes `log_view` durable.
            self.settle_log()?;
            let state = self.vsr_state();
            self.wal.write_vsr_state_recovered(state)?;
            self.status = Status::Normal;
            self.damaged_head = None;
        } else {
            self.persist_vsr_state()?;
        }
        assert!(!self.wal.superblock().recovering);
        self.reset_timers();
        Ok(())
    }

    pub(crate) fn on_headers(
        &mut self,
        from: u8,
        view: View,
        headers: &[RecordHeader],
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if !self.following(from, view) {
            return Ok(());
        }
        let verified_before = self.verified_op;
        for header in headers {
            if header.op <= self.commit_min || header.op > self.wal.last_op() + 1 {
                continue;
            }
            match journal::reconcile(&mut self.wal, header, self.commit_min)? {
                Reconcile::Verified => self.verified_op = self.verified_op.max(header.op),
                Reconcile::Diverged => {
                    self.verified_op = self.verified_op.min(self.wal.last_op());
                    break;
                }
                Reconcile::Appendable | Reconcile::Ahead | Reconcile::Retired => {}
                Reconcile::Conflicts => {
                    self.refuse(from, "header contradicts an applied op");
                    break;
                }
            }
        }
        self.after_log_change(out)?;
        if self.verified_op > verified_before {
            // Verification progressed: ask for the next headers (or the missing ops) now.
            self.repair_progress_tick = self.tick;
            self.request_repair(out);
        }
        Ok(())
    }

    /// State transfer: the primary sent its checkpoint because this replica asked for ops it
    /// no longer holds.
    pub(crate) fn on_checkpoint(
        &mut self,
        from: u8,
        view: View,
        info: &CheckpointInfo,
        snapshot: &[u8],
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if view == self.view && self.status == Status::ViewChange && self.is_primary_of(view) {
            // A claimant answered this lagging new primary's fetch with its checkpoint.
            if !self.view_change.fetching() || info.op <= self.commit_min {
                return Ok(());
            }
            self.take_checkpoint(info, snapshot)?;
            return self.maybe_start_view(out);
        }
        if !self.following(from, view) || info.op <= self.commit_min {
            return Ok(());
        }
        self.take_checkpoint(info, snapshot)?;
        let installed = self.commit_min >= info.op;
        if installed {
            self.absorb_buffered()?;
        }
        self.after_log_change(out)?;
        if installed && self.primary.is_none() {
            // State transfer done: the outstanding requests were for ops it covers;
            // continue from the checkpoint at once.
            self.repair_progress_tick = self.tick;
            self.repair_requested_op = 0;
            self.request_repair(out);
        }
        Ok(())
    }

    /// Adopts a peer's checkpoint (a committed op, hence canonical) unless the local log
    /// already holds that op or more.
    fn take_checkpoint(&mut self, info: &CheckpointInfo, snapshot: &[u8]) -> Result<(), WalError> {
        assert!(info.op > self.commit_min);
        // The checkpoint op is committed, so it is canonical: compare it with ours first.
        match journal::checksum_at(&self.wal, info.op) {
            Some(checksum) if checksum == info.record_checksum => {
                self.verified_op = self.verified_op.max(info.op);
                self.commit_max = self.commit_max.max(info.op);
                return Ok(());
            }
            Some(_) => {
                // Ours differs at info.op: every local op from there on is non-canonical.
                assert!(info.op > self.commit_min);
                self.wal.truncate_after(info.op - 1)?;
            }
            None => {}
        }
        if self.wal.last_op() > info.op {
            return Ok(());
        }
        let Ok(core) = Allocator::decode_snapshot(self.config.core, snapshot) else {
            return Ok(());
        };
        if core.last_op() != info.op {
            return Ok(());
        }
        match self.wal.install_checkpoint(info, snapshot) {
            Ok(()) => {}
            Err(WalError::InvalidArgument(_)) => return Ok(()),
            Err(error) => return Err(error),
        }
        self.core = core;
        self.commit_min = info.op;
        self.commit_max = self.commit_max.max(info.op);
        self.verified_op = info.op;
        assert_eq!(self.wal.last_op(), info.op);
        Ok(())
    }

    pub(crate) fn backup_tick(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        let timeout = self.config.primary_timeout_ticks + self.timeout_jitter;
        if self.tick - self.timer_contact_tick > timeout {
            let next = self.view + 1;
            return self.start_view_change(next, out);
        }
        self.repair_tick(out);
        Ok(())
    }

    /// A recovering replica durably voted for a view the cluster never started (it serves
    /// in an older one), so nobody will ever send that view's start. It asks for that view
    /// change with a vote — only a vote: a recovering replica never sends its log in a
    /// `do_view_change`, so it cannot help choose a log that lacks what it acknowledged.
    fn nudge_view_change(&mut self, out: &mut Outbox) {
        assert_eq!(self.status, Status::Recovering);
        if std::mem::take(&mut self.older_view_serving) {
            self.broadcast(&Message::StartViewChange { view: self.view }, out);
        }
    }

    pub(crate) fn recovering_tick(&mut self, out: &mut Outbox) {
        let due = self.tick - self.timer_resend_tick >= self.config.resend_interval_ticks;
        if self.probing() {
            // The first probe goes out at once: a new cluster starts after one round trip.
            if due || self.tick == 1 {
                self.probe_tick(out);
            }
            return;
        }
        if !due {
            return;
        }
        if self.join.is_none() {
            self.timer_resend_tick = self.tick;
            self.broadcast(&Message::RequestStartView { view: self.view }, out);
            self.nudge_view_change(out);
            self.send_damaged_claim(out);
            return;
        }
        if self.tick - self.timer_contact_tick > self.config.primary_timeout_ticks {
            // The primary we were catching up from went quiet: look for the current one.
            self.join = None;
        }
        self.repair_tick(out);
    }

    /// Asks the primary for what this replica lacks, one kind of request at a time. Runs
    /// every `resend_interval_ticks`: it tops up the repair window and, when nothing arrived
    /// for a whole interval, assumes the outstanding requests were lost and asks again.
    fn repair_tick(&mut self, out: &mut Outbox) {
        if self.tick - self.timer_resend_tick < self.config.resend_interval_ticks {
            return;
        }
        self.timer_resend_tick = self.tick;
        if self.tick - self.repair_progress_tick >= self.config.resend_interval_ticks {
            self.repair_requested_op = 0;
            self.repair_progress_tick = self.tick;
        }
        self.request_repair(out);
    }

    /// Sends the next repair request: the view's start, headers to verify the local log,
    /// or prepares to extend it.
    fn request_repair(&mut self, out: &mut Outbox) {
        let primary = self.primary_of(self.view);
        let view = self.view;
        let last_op = self.wal.last_op();
        if self.log_view < self.view && self.join.is_none() {
            out.send(primary, Message::RequestStartView { view });
        } else if self.verified_op < last_op {
            let op_min = self.verified_op + 1;
            let op_max = last_op.min(self.verified_op + u64::from(self.config.headers_max));
            out.send(
                primary,
                Message::RequestHeaders {
                    view,
                    op_min,
                    op_max,
                },
            );
        } else {
            self.request_prepares(out);
        }
    }

    /// Keeps up to `repair_requests_in_flight_max` `request_prepares` of `repair_ops_max`
    /// ops outstanding between the log's end and the highest op known to exist; a backup
    /// more than `repair_state_transfer_ops_min` behind expects a state transfer and keeps
    /// one (each request far behind would be answered with a snapshot).
    fn request_prepares(&mut self, out: &mut Outbox) {
        let last_op = self.wal.last_op();
        let joining = self.log_view < self.view && self.join.is_none();
        if joining || self.verified_op < last_op || self.primary.is_some() {
            return;
        }
        let target = self
            .head_known
            .max(self.join.map_or(0, |(op, _)| op))
            .max(self.commit_max);
        let chunk = u64::from(self.config.repair_ops_max);
        let far = self.config.repair_state_transfer_ops_min > 0
            && target - last_op.min(target) > self.config.repair_state_transfer_ops_min;
        let window = if far { chunk } else { self.repair_window_ops() };
        let mut requested = self.repair_requested_op.max(last_op);
        let mut sent = 0_u32;
        while requested < target && requested + chunk <= last_op + window {
            let op_min = requested + 1;
            let op_max = target.min(requested + chunk);
            out.send(
                self.primary_of(self.view),
                Message::RequestPrepares {
                    view: self.view,
                    op_min,
                    op_max,
                },
            );
            requested = op_max;
            sent += 1;
        }
        assert!(sent <= self.config.repair_requests_in_flight_max);
        assert!(requested <= last_op + window || requested == self.repair_requested_op);
        self.repair_requested_op = requested;
    }

    /// `start_view` from the primary of `view`: adopt the view and its log head.
    pub(crate) fn on_start_view(
        &mut self,
        from: u8,
        view: View,
        head: (Op, u128),
        commit: Op,
        suffix: &[Entry],
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if view < self.view
            || from != self.primary_of(view)
            || self.primary.is_some() && view == self.view
            || self.probing()
        {
            return Ok(());
        }
        // Already following this view (caught up through its prepares, or joining): the log
        // may hold this view's newer ops beyond the start head, so nothing is reset.
        let following =
            view == self.view && matches!(self.status, Status::Normal | Status::Recovering);
        let joined = self.status == Status::Normal && self.log_view == view;
        if following && (joined || self.join.is_some()) {
            return Ok(());
        }
        if !valid_suffix(suffix, head) {
            return Ok(());
        }
        // A view's log holds every committed op, so where this replica applied the head's op
        // (it may have applied later ops of the same view before this message came), the
        // head's checksum is its own; a head that differs there is not canonical.
        let contradicts = head.0 <= self.commit_min
            && journal::checksum_at(&self.wal, head.0).is_some_and(|c| c != head.1);
        if contradicts {
            self.refuse(from, "start_view head contradicts an applied op");
            return Ok(());
        }
        self.drop_primary_state(out);
        if view > self.view {
            self.view = view;
            self.persist_vsr_state()?;
        }
        if self.status == Status::ViewChange {
            self.status = Status::Normal;
        }
        self.join = Some(head);
        self.head_known = self.head_known.max(head.0);
        self.commit_max = self.commit_max.max(commit);
        self.reset_timers();
        if following {
            self.absorb_entries(suffix)?;
            return self.after_log_change(out);
        }
        // Entering the view afresh: nothing of this view is in the local log yet, so every
        // local op beyond the head (or differing from it) belongs to an older view.
        self.verified_op = self.commit_min;
        let canonical = crate::view_change::Canonical {
            log_view: view,
            op: head.0,
            checksum: head.1,
            commit,
            entries: suffix.to_vec(),
        };
        if journal::splice(&mut self.wal, &canonical, self.commit_min)? {
            self.verified_op = head.0;
        } else {
            self.absorb_entries(suffix)?;
        }
        self.after_log_change(out)
    }
}

/// Whether `suffix` is a contiguous hash chain ending at `head` (or empty), with bodies that
/// match their headers.
pub(crate) fn valid_suffix(suffix: &[Entry], head: (Op, u128)) -> bool {
    let chained = suffix.windows(2).all(|w| {
        w[1].header.op == w[0].header.op + 1 && w[1].header.parent == w[0].header.checksum
    });
    let ends = suffix
        .last()
        .is_none_or(|e| e.header.op == head.0 && e.header.checksum == head.1);
    let bodies = suffix
        .iter()
        .all(|e| e.header.op >= 1 && e.header.matches_body(&e.body));
    chained && ends && bodies
}
