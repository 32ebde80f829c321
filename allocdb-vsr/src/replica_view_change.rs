//! View change (VR Revisited §4.2): `start_view_change` → `do_view_change` → `start_view`.
//!
//! Durability order: a replica writes its new view to the superblock before it sends any
//! `start_view_change` or `do_view_change` for it, so a restart never forgets a vote; the new
//! primary writes the chosen log, then `log_view = view`, before it sends `start_view`.

use allocdb_core::Op;
use allocdb_wal::{Storage, View, WalError};

use crate::journal;
use crate::message::Message;
use crate::outbox::Outbox;
use crate::replica::{Replica, Status};
use crate::replica_backup::valid_suffix;
use crate::view_change::{LogClaim, ViewChangeState};

/// Chunks of `repair_ops_max` entries a lagging new primary asks for at once.
const FETCH_CHUNKS: u64 = 4;

impl<S: Storage> Replica<S> {
    /// Leaves the current view for `view`: durable first, then the vote goes out.
    pub(crate) fn start_view_change(
        &mut self,
        view: View,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        assert!(view > self.view, "replicas never return to a lower view");
        assert!(
            self.status != Status::Recovering,
            "a recovering replica does not vote"
        );
        // The vote and the log it carries speak for ops a primary may not have synced yet.
        self.settle_log()?;
        self.drop_primary_state(out);
        self.view = view;
        self.status = Status::ViewChange;
        self.join = None;
        self.view_change = ViewChangeState::new(view);
        self.view_change.vote(self.config.replica_index);
        self.persist_vsr_state()?;
        self.reset_timers();
        self.broadcast(&Message::StartViewChange { view }, out);
        self.maybe_send_do_view_change(out)
    }

    pub(crate) fn on_start_view_change(
        &mut self,
        from: u8,
        view: View,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if self.status == Status::Recovering {
            return self.damaged_vote(view, out);
        }
        if view < self.view {
            return Ok(());
        }
        if view > self.view {
            self.start_view_change(view, out)?;
        }
        if self.status != Status::ViewChange {
            return Ok(());
        }
        self.view_change.vote(from);
        self.maybe_send_do_view_change(out)
    }

    /// With a majority of votes, send this replica's log to the new primary (once; resent by
    /// the timer).
    fn maybe_send_do_view_change(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        if self.view_change.do_view_change_sent
            || self.view_change.vote(self.config.replica_index) < self.quorum()
        {
            return Ok(());
        }
        self.view_change.do_view_change_sent = true;
        self.send_do_view_change(out)
    }

    fn own_claim(&mut self) -> Result<LogClaim, WalError> {
        let suffix = journal::read_suffix(&mut self.wal, self.config.suffix_ops_max)?;
        Ok(LogClaim {
            log_view: self.log_view,
            op: self.wal.last_op(),
            checksum: self.last_checksum(),
            commit: self.commit_max,
            suffix,
        })
    }

    fn send_do_view_change(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        let claim = self.own_claim()?;
        let primary = self.primary_of(self.view);
        if primary == self.config.replica_index {
            self.view_change.claim(primary, claim);
            return self.maybe_start_view(out);
        }
        let message = Message::DoViewChange {
            view: self.view,
            log_view: claim.log_view,
            op: claim.op,
            checksum: claim.checksum,
            commit: claim.commit,
            suffix: claim.suffix,
            damaged: false,
        };
        out.send(primary, message);
        Ok(())
    }

    pub(crate) fn on_do_view_change(
        &mut self,
        from: u8,
        message: &Message,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        let Message::DoViewChange {
            view,
            log_view,
            op,
            checksum,
            commit,
            suffix,
            damaged,
        } = message
        else {
            unreachable!("dispatched by kind")
        };
        if self.status == Status::Recovering || *view < self.view || *log_view >= *view {
            return Ok(());
        }
        if !valid_suffix(suffix, (*op, *checksum))
            || *damaged && (!suffix.is_empty() || *commit != 0)
        {
            return Ok(());
        }
        if *view > self.view {
            self.start_view_change(*view, out)?;
        }
        if self.status != Status::ViewChange || !self.is_primary_of(*view) {
            return Ok(());
        }
        if *damaged {
            self.view_change.vouch(from, (*op, *checksum));
            return self.maybe_start_view(out);
        }
        let claim = LogClaim {
            log_view: *log_view,
            op: *op,
            checksum: *checksum,
            commit: *commit,
            suffix: suffix.clone(),
        };
        self.view_change.claim(from, claim);
        self.maybe_start_view(out)
    }

    /// With a majority of logs (its own included), the new primary adopts the canonical log
    /// and starts the view.
    pub(crate) fn maybe_start_view(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        let claims = self.view_change.claim_count();
        let damaged = self.view_change.damaged_heads().count();
        if !self.view_change.do_view_change_sent
            || claims == 0
            || usize::from(claims) + damaged < usize::from(self.quorum())
        {
            return Ok(());
        }
        let canonical = self.chosen_log()?;
        // A damaged replica counts only where the chosen log holds the head it vouched for:
        // then that log holds everything it ever held (hash chain), so whatever it once
        // acknowledged is not lost with it.
        let covered = self
            .view_change
            .damaged_heads()
            .filter(|&head| self.log_holds(&canonical, head))
            .count();
        if usize::from(claims) + covered < usize::from(self.quorum()) {
            return Ok(());
        }
        if canonical.commit > canonical.op {
            // Some claim says an op beyond every log of the majority is committed: a forged
            // or broken claim (honest logs always hold what their majority committed). The
            // view does not start on it; the timeout moves on to the next view.
            let from = self
                .view_change
                .claimant_of_commit_max()
                .expect("a canonical log comes from at least one claim");
            self.refuse(
                from,
                "do_view_change commit beyond every log of the majority",
            );
            return Ok(());
        }
        if !journal::splice(&mut self.wal, &canonical, self.commit_min)? {
            // The local log cannot be joined to the chosen one (too far behind, or holding
            // a divergent suffix longer than the claims carry): fetch the chosen log's
            // entries below the claims' suffixes from the claimants, each checked against
            // the hash chain, until it joins. If that fails, the timeout moves on.
            self.fetch_below(&canonical, out);
            return Ok(());
        }
        self.commit_max = self
            .commit_max
            .max(canonical.commit)
            .min(self.wal.last_op());
        self.log_view = self.view;
        self.status = Status::Normal;
        self.persist_vsr_state()?;
        self.become_primary_state();
        self.reset_timers();
        let start_view = self.start_view_message()?;
        self.broadcast(&start_view, out);
        self.apply_committed(out)?;
        self.maybe_prepare(true, out)
    }

    /// Whether the chosen log is known to hold `head` (op, chain checksum): its head, one of
    /// its entries, or — when it is this replica's own log — a record of the local log.
    fn log_holds(&self, canonical: &crate::view_change::Canonical, head: (Op, u128)) -> bool {
        let (op, checksum) = head;
        if op > canonical.op {
            return false;
        }
        if op == canonical.op {
            return checksum == canonical.checksum;
        }
        let in_entries = canonical
            .entries
            .iter()
            .any(|e| e.header.op == op && e.header.checksum == checksum);
        let own_is_chosen = self.wal.last_op() == canonical.op
            && self.last_checksum() == canonical.checksum
            && self.log_view == canonical.log_view;
        in_entries || own_is_chosen && journal::checksum_at(&self.wal, op) == Some(checksum)
    }

    /// Asks the claimants holding the chosen log for the entries just below what is known
    /// of it (several `repair_ops_max` chunks at once, paced by `resend_interval_ticks`).
    fn fetch_below(&mut self, canonical: &crate::view_change::Canonical, out: &mut Outbox) {
        let entries_max = usize::try_from(self.config.view_change_fetch_ops_max).expect("u32");
        let Some((wanted_op, _)) = self.view_change.begin_fetch(canonical) else {
            return;
        };
        if self.view_change.extension_len() >= entries_max || wanted_op <= self.commit_min {
            return;
        }
        let chunk = u64::from(self.config.repair_ops_max);
        let op_min =
            (self.commit_min + 1).max((wanted_op + 1).saturating_sub(FETCH_CHUNKS * chunk));
        if !self.view_change.should_ask(
            op_min,
            wanted_op,
            self.tick,
            self.config.resend_interval_ticks,
        ) {
            return;
        }
        let claimants = self
            .view_change
            .claimants_holding(self.config.replica_index, wanted_op);
        if claimants.is_empty() {
            return;
        }
        let rounds = usize::try_from(self.view_change.fetch_rounds).unwrap_or(0);
        let from = claimants[rounds % claimants.len()];
        let mut op_max = wanted_op;
        while op_max >= op_min {
            let low = op_min.max((op_max + 1).saturating_sub(chunk));
            out.send(
                from,
                Message::RequestPrepares {
                    view: self.view,
                    op_min: low,
                    op_max,
                },
            );
            op_max = low - 1;
        }
    }

    /// An entry a claimant sent for [`Replica::fetch_below`]: extend the chosen log with it
    /// and try to start the view again.
    pub(crate) fn on_fetched_entry(
        &mut self,
        entry: &crate::message::Entry,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        assert_eq!(self.status, Status::ViewChange);
        let entries_max = usize::try_from(self.config.view_change_fetch_ops_max).expect("u32");
        let chunk = usize::try_from(self.config.repair_ops_max).expect("u32");
        let buffer_max = chunk * usize::try_from(FETCH_CHUNKS).expect("small");
        if entry.header.cluster_id != self.config.cluster_id
            || !self
                .view_change
                .absorb_fetched(entry, buffer_max, entries_max)
        {
            return Ok(());
        }
        self.maybe_start_view(out)
    }

    /// Claimant side: the new primary of this view change asks for entries of our log.
    pub(crate) fn serve_fetch(
        &mut self,
        from: u8,
        op_min: Op,
        op_max: Op,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        assert_eq!(self.status, Status::ViewChange);
        if from != self.primary_of(self.view) || !self.view_change.do_view_change_sent {
            return Ok(());
        }
        if op_min < self.wal.first_op() && op_min <= self.wal.checkpoint_op() {
            // Checkpointed away here: the (committed, hence canonical) checkpoint instead.
            self.send_checkpoint(from, out)?;
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

    // Same signature as the broken variant below, which reads the log.
    #[cfg(not(feature = "broken-view-change"))]
    #[allow(clippy::unnecessary_wraps)]
    fn chosen_log(&mut self) -> Result<crate::view_change::Canonical, WalError> {
        Ok(self.view_change.canonical())
    }

    /// BROKEN ON PURPOSE (feature `broken-view-change`): ignores every `do_view_change` log
    /// and keeps its own, so ops a majority committed can be lost.
    #[cfg(feature = "broken-view-change")]
    fn chosen_log(&mut self) -> Result<crate::view_change::Canonical, WalError> {
        let own = self.own_claim()?;
        Ok(crate::view_change::choose(&[&own]))
    }

    pub(crate) fn view_change_tick(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        let timeout = self.config.view_change_timeout_ticks + self.timeout_jitter;
        if self.tick - self.timer_contact_tick > timeout {
            let next = self.view + 1;
            return self.start_view_change(next, out);
        }
        if self.tick - self.timer_resend_tick >= self.config.resend_interval_ticks {
            self.timer_resend_tick = self.tick;
            self.broadcast(&Message::StartViewChange { view: self.view }, out);
            if self.view_change.do_view_change_sent && !self.is_primary_of(self.view) {
                self.send_do_view_change(out)?;
            }
            if self.is_primary_of(self.view) {
                self.maybe_start_view(out)?;
            }
        }
        Ok(())
    }

    /// The commit point a restarted replica last made durable (for tests).
    pub fn durable_commit(&self) -> Op {
        self.wal.superblock().commit_op
    }
}
