//! A damaged replica's part in a view change (it vouches for the head its log held before
//! the damage, so a cluster whose majority is damaged comes back whenever an intact log holds
//! all of it), and a fresh replica's way in: probe the peers, then either start a brand-new cluster
//! (genesis, by the primary of view 0 when every replica is fresh) or wait for the start of a
//! view above every view its lost disk could have voted in (see `recovery_probe.rs` for why
//! that is safe). Until then it is `Recovering`: it never votes, never acknowledges, and
//! never takes a view's start.

use allocdb_wal::{Storage, View, WalError};

use crate::message::Message;
use crate::outbox::Outbox;
use crate::recovery_probe::{self, Answer, Decision};
use crate::replica::{Replica, Status};

impl<S: Storage> Replica<S> {
    /// Fresh and still waiting for enough answers to its probe: it may not take any view's
    /// start yet, since it does not know which views are safe to join.
    pub(crate) fn probing(&self) -> bool {
        self.wal.superblock().fresh && self.probe.decision.is_none()
    }

    /// Every replica answers a probe, in any status: its durable view, whether it is fresh,
    /// and whether it holds nothing at all (see `recovery_probe.rs`).
    pub(crate) fn on_recovery_probe(&self, from: u8, nonce: u64, out: &mut Outbox) {
        let superblock = self.wal.superblock();
        let empty = superblock.fresh
            || self.log_view == 0
                && self.wal.last_op() == 0
                && self.wal.checkpoint_op() == 0
                && self.commit_max == 0;
        out.send(
            from,
            Message::RecoveryReply {
                view: self.view,
                nonce,
                fresh: superblock.fresh,
                empty,
            },
        );
    }

    pub(crate) fn on_recovery_reply(
        &mut self,
        from: u8,
        nonce: u64,
        answer: Answer,
        out: &mut Outbox,
    ) -> Result<(), WalError> {
        if !self.probing() || nonce != self.probe.nonce {
            return Ok(());
        }
        let index = self.config.replica_index;
        let count = self.config.replica_count;
        match self.probe.absorb(from, answer, index, count) {
            None => Ok(()),
            Some(Decision::Genesis) => self.genesis(),
            Some(Decision::Beyond(bound)) => {
                let target = recovery_probe::target_view(bound, self.view, index, count);
                assert!(target >= self.view);
                if target > self.view {
                    self.view = target;
                    self.persist_vsr_state()?;
                }
                self.reset_timers();
                // Ask for that view's start now; if the cluster serves an older view, the
                // heartbeats it hears make it ask for the view change (`nudge_view_change`).
                self.broadcast(&Message::RequestStartView { view: self.view }, out);
                Ok(())
            }
        }
    }

    /// Every other replica holds nothing: the cluster is new (or lost every disk). This
    /// replica takes its place with its empty log, as every replica of a new cluster does —
    /// in view 0 (the primary of view 0 leads it), or, if it had already voted for a later
    /// view, waiting in that view change. Leaving `fresh` and `recovering` is one superblock
    /// write, so a crash cannot leave half of it behind.
    fn genesis(&mut self) -> Result<(), WalError> {
        assert!(self.wal.superblock().fresh);
        assert_eq!(self.status, Status::Recovering);
        assert_eq!(self.log_view, 0);
        assert!(self.primary.is_none());
        // Prepares it absorbed while probing belong to no view it has joined: they go (a
        // new cluster's primary prepares nothing before a majority took its place).
        if self.wal.last_op() > self.commit_min {
            self.wal.truncate_after(self.commit_min)?;
        }
        assert_eq!(self.commit_min, 0, "a fresh replica applied nothing");
        self.verified_op = 0;
        self.commit_max = 0;
        self.wal.set_recovering(false)?;
        assert!(!self.wal.superblock().fresh && !self.wal.superblock().recovering);
        self.reset_timers();
        if self.view > 0 {
            self.status = Status::ViewChange;
            self.view_change = crate::view_change::ViewChangeState::new(self.view);
            return Ok(());
        }
        self.status = Status::Normal;
        if self.is_primary_of(0) {
            self.become_primary_state();
            self.primary
                .as_mut()
                .expect("just became primary")
                .genesis_pending = true;
        }
        Ok(())
    }

    /// The probe goes out every `resend_interval_ticks` until the answers allow a decision.
    pub(crate) fn probe_tick(&mut self, out: &mut Outbox) {
        assert!(self.probing());
        self.timer_resend_tick = self.tick;
        let probe = Message::RecoveryProbe {
            view: self.view,
            nonce: self.probe.nonce,
        };
        self.broadcast(&probe, out);
    }

    /// A damaged replica hears a view change: it moves to that view (durably, before its
    /// message goes out) and tells the new primary the head it vouches for. It takes no other
    /// part: it never leads, never chooses a log, never acknowledges.
    pub(crate) fn damaged_vote(&mut self, view: View, out: &mut Outbox) -> Result<(), WalError> {
        assert_eq!(self.status, Status::Recovering);
        if self.damaged_head.is_none() || view < self.view {
            return Ok(());
        }
        if view > self.view {
            self.view = view;
            self.join = None;
            self.persist_vsr_state()?;
            self.reset_timers();
        }
        self.send_damaged_claim(out);
        Ok(())
    }

    /// Sends the damaged head to the current view's primary (with a vote for the view, so
    /// that intact replicas reach a majority of votes with it), unless it is that primary.
    pub(crate) fn send_damaged_claim(&self, out: &mut Outbox) {
        let Some((op, checksum)) = self.damaged_head else {
            return;
        };
        assert!(!self.wal.superblock().fresh);
        let primary = self.primary_of(self.view);
        if primary == self.config.replica_index || self.log_view >= self.view {
            // Not in a view change (its view is its log's): there is nothing to vouch in.
            return;
        }
        self.broadcast(&Message::StartViewChange { view: self.view }, out);
        let claim = Message::DoViewChange {
            view: self.view,
            log_view: self.log_view,
            op,
            checksum,
            commit: 0,
            suffix: Vec::new(),
            damaged: true,
        };
        out.send(primary, claim);
    }
}
