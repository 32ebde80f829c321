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
    /// Whether this replica has sent its `do_view_change` for `view`.
    pub do_view_change_sent: bool,
}

impl ViewChangeState {
    /// Empty state for `view`.
    pub fn new(view: View) -> ViewChangeState {
        ViewChangeState {
            view,
            votes: ReplicaSet::EMPTY,
            claims: Default::default(),
            do_view_change_sent: false,
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
        self.claim_count()
    }

    /// How many `do_view_change` messages are held.
    pub fn claim_count(&self) -> u8 {
        let count = self.claims.iter().filter(|c| c.is_some()).count();
        u8::try_from(count).expect("at most REPLICAS_MAX")
    }

    /// The canonical log from the claims held (at least one).
    pub fn canonical(&self) -> Canonical {
        let claims: Vec<&LogClaim> = self.claims.iter().flatten().collect();
        choose(&claims)
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
