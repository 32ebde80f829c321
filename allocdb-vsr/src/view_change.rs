//! View-change state: `start_view_change` votes, `do_view_change` logs, and the choice of the
//! new view's log.
//!
//! The rule (VR Revisited §4.2): the new log is the one with the highest `(log_view, op)`
//! among a majority of `do_view_change` messages; the commit point is the highest commit among
//! them. Replicas with the same `log_view` hold prefixes of one primary's log, so the suffixes
//! of all of them can be joined into one longer canonical suffix, checked by the hash chain.

use allocdb_core::Op;
use allocdb_wal::{Checksum, View};

use crate::config::REPLICAS_MAX;
use crate::message::Entry;
use crate::quorum::ReplicaSet;

/// One replica's `do_view_change`, as the new primary keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogClaim {
    /// The view in which that log was last brought up to date.
    pub log_view: View,
    /// Its last op.
    pub op: Op,
    /// The checksum of `op`.
    pub checksum: Checksum,
    /// Its commit point.
    pub commit: Op,
    /// Its last entries, ascending and contiguous, ending at `op` (may be empty).
    pub suffix: Vec<Entry>,
}

/// The log the new view starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canonical {
    /// The winning claim's log view.
    pub log_view: View,
    /// The last op of the new view's log.
    pub op: Op,
    /// Its checksum.
    pub checksum: Checksum,
    /// The highest commit point among the claims.
    pub commit: Op,
    /// Canonical entries, ascending and contiguous, ending at `op` (may be empty).
    pub entries: Vec<Entry>,
}

/// Votes and logs collected during one view change.
#[derive(Clone, Debug)]
pub struct ViewChangeState {
    view: View,
    votes: ReplicaSet,
    claims: [Option<LogClaim>; REPLICAS_MAX as usize],
    /// Heads vouched for by damaged replicas (see `Message::DoViewChange::damaged`): they
    /// count towards the majority only where the chosen log holds them.
    damaged: [Option<(Op, Checksum)>; REPLICAS_MAX as usize],
    /// Whether this replica has sent its `do_view_change` for `view`.
    pub do_view_change_sent: bool,
    /// A new primary too far behind to join the chosen log: that log, extended backwards
    /// with canonical entries fetched from the claimants (each checked by the hash chain).
    extension: Option<Canonical>,
    /// Fetched entries that do not chain onto the extension yet (arrived out of order).
    fetched: Vec<Entry>,
    /// The lowest op asked for and the tick it was asked at (resend pacing).
    fetch_asked: Option<(Op, u64)>,
    /// Fetch rounds so far (rotates over the claimants).
    pub fetch_rounds: u64,
}

impl ViewChangeState {
    /// Empty state for `view`.
    pub fn new(view: View) -> ViewChangeState {
        ViewChangeState {
            view,
            votes: ReplicaSet::EMPTY,
            claims: Default::default(),
            damaged: [None; REPLICAS_MAX as usize],
            do_view_change_sent: false,
            extension: None,
            fetched: Vec::new(),
            fetch_asked: None,
            fetch_rounds: 0,
        }
    }

    /// The view being changed to.
    pub fn view(&self) -> View {
        self.view
    }

    /// Records a `start_view_change` vote; returns the number of votes.
    pub fn vote(&mut self, replica: u8) -> u8 {
        self.votes.insert(replica);
        self.votes.count()
    }

    /// Records (or replaces) a replica's `do_view_change`; returns how many are held.
    pub fn claim(&mut self, replica: u8, claim: LogClaim) -> u8 {
        assert!(replica < REPLICAS_MAX);
        assert!(
            claim.log_view < self.view,
            "a log view is older than the view being started"
        );
        assert!(claim.suffix.last().is_none_or(|e| e.header.op == claim.op));
        self.claims[usize::from(replica)] = Some(claim);
        self.damaged[usize::from(replica)] = None;
        self.claim_count()
    }

    /// Records a damaged replica's head: the last op its log held before the damage and
    /// that op's chain checksum. It replaces any claim of the same replica.
    pub fn vouch(&mut self, replica: u8, head: (Op, Checksum)) {
        assert!(replica < REPLICAS_MAX);
        self.claims[usize::from(replica)] = None;
        self.damaged[usize::from(replica)] = Some(head);
    }

    /// The heads vouched for by damaged replicas.
    pub fn damaged_heads(&self) -> impl Iterator<Item = (Op, Checksum)> + '_ {
        self.damaged.iter().flatten().copied()
    }

    /// The replica whose claim carries the highest commit point (the one to blame when that
    /// commit lies beyond every log held).
    pub fn claimant_of_commit_max(&self) -> Option<u8> {
        (0..REPLICAS_MAX)
            .filter_map(|replica| {
                let claim = self.claims[usize::from(replica)].as_ref()?;
                Some((claim.commit, replica))
            })
            .max()
            .map(|(_, replica)| replica)
    }

    /// How many `do_view_change` messages are held.
    pub fn claim_count(&self) -> u8 {
        let count = self.claims.iter().filter(|c| c.is_some()).count();
        u8::try_from(count).expect("at most REPLICAS_MAX")
    }

    /// The canonical log from the claims held (at least one), with the entries fetched
    /// backwards so far when they end at the same head.
    pub fn canonical(&self) -> Canonical {
        let claims: Vec<&LogClaim> = self.claims.iter().flatten().collect();
        let mut chosen = choose(&claims);
        if let Some(extension) = &self.extension {
            // The same head checksum means the same chain below it.
            let same_head = extension.op == chosen.op
                && extension.checksum == chosen.checksum
                && extension.log_view == chosen.log_view;
            if same_head && extension.entries.len() > chosen.entries.len() {
                chosen.entries.clone_from(&extension.entries);
            }
        }
        chosen
    }

    /// Replicas (other than `me`) whose claim holds the chosen log down to `op`: same
    /// `log_view` as the winner and a head at or above `op`.
    pub fn claimants_holding(&self, me: u8, op: Op) -> Vec<u8> {
        let claims: Vec<&LogClaim> = self.claims.iter().flatten().collect();
        if claims.is_empty() {
            return Vec::new();
        }
        let best_log_view = claims.iter().map(|c| c.log_view).max().expect("non-empty");
        (0..REPLICAS_MAX)
            .filter(|&replica| replica != me)
            .filter(|&replica| {
                self.claims[usize::from(replica)]
                    .as_ref()
                    .is_some_and(|c| c.log_view == best_log_view && c.op >= op)
            })
            .collect()
    }

    /// Starts (or keeps) extending `canonical` backwards; returns the (op, checksum) of the
    /// next entry wanted below it, `None` when nothing below can be wanted.
    pub fn begin_fetch(&mut self, canonical: &Canonical) -> Option<(Op, Checksum)> {
        let same = self
            .extension
            .as_ref()
            .is_some_and(|e| e.op == canonical.op && e.checksum == canonical.checksum);
        if !same {
            self.extension = Some(canonical.clone());
            self.fetched.clear();
            self.fetch_asked = None;
        }
        self.wanted()
    }

    /// The (op, checksum) of the entry that would extend the extension downwards.
    fn wanted(&self) -> Option<(Op, Checksum)> {
        let extension = self.extension.as_ref()?;
        match extension.entries.first() {
            Some(first) => {
                (first.header.op > 1).then(|| (first.header.op - 1, first.header.parent))
            }
            None => (extension.op > 0).then_some((extension.op, extension.checksum)),
        }
    }

    /// Whether this (new primary) replica is fetching the chosen log's missing entries.
    pub fn fetching(&self) -> bool {
        self.extension.is_some()
    }

    /// How many entries the extension holds.
    pub fn extension_len(&self) -> usize {
        self.extension.as_ref().map_or(0, |e| e.entries.len())
    }

    /// Whether to ask for ops up to `op_max` now: not asked yet, the extension has reached
    /// below what was asked, or the last request is `resend_ticks` old. Records the request.
    pub fn should_ask(&mut self, op_min: Op, op_max: Op, tick: u64, resend_ticks: u64) -> bool {
        let due = match self.fetch_asked {
            None => true,
            Some((asked_min, asked_tick)) => {
                op_max < asked_min || tick >= asked_tick + resend_ticks
            }
        };
        if due {
            self.fetch_asked = Some((op_min, tick));
            self.fetch_rounds += 1;
        }
        due
    }

    /// A fetched entry: kept if it lies below the extension (at most `buffer_max` waiting),
    /// then every waiting entry that chains is prepended while the extension holds fewer
    /// than `entries_max`. Returns whether the extension grew.
    pub fn absorb_fetched(&mut self, entry: &Entry, buffer_max: usize, entries_max: usize) -> bool {
        let Some((wanted_op, _)) = self.wanted() else {
            return false;
        };
        let fits = entry.header.op <= wanted_op
            && entry.header.matches_body(&entry.body)
            && !self.fetched.iter().any(|e| e.header == entry.header);
        if fits && buffer_max > 0 {
            if self.fetched.len() >= buffer_max {
                // Oldest first: a stale or foreign entry cannot block the buffer for good.
                self.fetched.remove(0);
            }
            self.fetched.push(entry.clone());
        }
        let mut grew = false;
        while self.extension_len() < entries_max {
            let Some((op, checksum)) = self.wanted() else {
                break;
            };
            let Some(position) = self
                .fetched
                .iter()
                .position(|e| e.header.op == op && e.header.checksum == checksum)
            else {
                break;
            };
            let found = self.fetched.swap_remove(position);
            let extension = self
                .extension
                .as_mut()
                .expect("wanted implies an extension");
            extension.entries.insert(0, found);
            grew = true;
        }
        if let Some((op, _)) = self.wanted() {
            self.fetched.retain(|e| e.header.op <= op);
        }
        debug_assert!(self.extension.as_ref().is_none_or(|e| {
            e.entries
                .windows(2)
                .all(|w| w[1].header.parent == w[0].header.checksum)
        }));
        grew
    }
}

/// The VR choice over `claims`, with suffixes of equal-`log_view` claims joined downward.
pub fn choose(claims: &[&LogClaim]) -> Canonical {
    assert!(!claims.is_empty(), "a view change needs at least one log");
    let best = claims
        .iter()
        .max_by_key(|c| (c.log_view, c.op))
        .expect("non-empty");
    let commit = claims.iter().map(|c| c.commit).max().expect("non-empty");
    // Reverse order while joining: the best suffix backwards, then older entries that chain.
    let mut reversed: Vec<&Entry> = best.suffix.iter().rev().collect();
    while let Some(oldest) = reversed.last() {
        let wanted_op = oldest.header.op - 1;
        let wanted_checksum = oldest.header.parent;
        let older = claims
            .iter()
            .filter(|c| c.log_view == best.log_view)
            .flat_map(|c| c.suffix.iter())
            .find(|e| e.header.op == wanted_op && e.header.checksum == wanted_checksum);
        match older {
            Some(entry) if wanted_op > 0 => reversed.push(entry),
            _ => break,
        }
    }
    let entries: Vec<Entry> = reversed.into_iter().rev().cloned().collect();
    debug_assert!(
        entries
            .windows(2)
            .all(|w| w[1].header.parent == w[0].header.checksum)
    );
    assert!(
        entries
            .last()
            .is_none_or(|e| e.header.op == best.op && e.header.checksum == best.checksum)
    );
    Canonical {
        log_view: best.log_view,
        op: best.op,
        checksum: best.checksum,
        commit,
        entries,
    }
}

#[cfg(test)]
mod tests;
