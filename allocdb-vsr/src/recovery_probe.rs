//! What a fresh replica (a newly formatted data directory) may conclude from its peers.
//!
//! A formatted data directory cannot tell a brand-new cluster from a lost disk formatted
//! again: either way it is empty. Its replica slot may have voted and acknowledged ops in
//! earlier views on the lost disk, so it must not vote until it has caught up to a view that
//! was started *without it* after the loss — a view above every view the old disk could have
//! been part of. It learns a bound on those views by asking its peers ([`Message::RecoveryProbe`],
//! answered with the peer's durable view and whether the peer is fresh itself):
//!
//! * Every view the old disk acknowledged in was started by a majority, each of which durably
//!   entered it. So the answers of any `majority` *non-fresh* peers (sent after the probe, hence
//!   the nonce) include at least one member of that majority whose disk survived — as long as
//!   fewer than a majority of disks were lost — and the highest view among them bounds every
//!   such view. The replica then waits for the start of a higher view ([`Decision::Beyond`]).
//! * If *every* other replica answers that it holds nothing at all (fresh, or an empty log it
//!   never left view 0's for), no disk holds anything that was ever acknowledged: the cluster
//!   is new (or every disk is lost, when nothing can be saved). The replica then takes its
//!   place in view 0 with its empty log, as every replica of a new cluster does
//!   ([`Decision::Genesis`]); it has acknowledged nothing, so no commit ever counted on it.
//!   (A replica holding any op answers "not empty", so a new cluster's primary prepares
//!   nothing until a majority has taken its place: see `genesis_pending`.)
//! * Otherwise it waits: fewer than a majority of intact disks answered, and guessing could
//!   let a minority of old logs, or empty ones, outvote acknowledged writes.
//!
//! [`Message::RecoveryProbe`]: crate::Message::RecoveryProbe

use allocdb_wal::View;

use crate::config::REPLICAS_MAX;
use crate::quorum;

/// A peer's answer to the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The peer's durable view.
    pub view: View,
    /// Whether the peer is fresh itself (then its view bounds nothing).
    pub fresh: bool,
    /// Whether the peer holds nothing (fresh implies empty).
    pub empty: bool,
}

/// What the answers allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Every replica is fresh: the cluster is new; view 0 starts with an empty log.
    Genesis,
    /// A majority of non-fresh peers answered; every view the lost disk could have voted in
    /// is at most this one.
    Beyond(View),
}

/// The probe of one process: its nonce and the latest answer of each peer.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    /// Drawn once per process, so answers to an earlier process's probe are ignored.
    pub nonce: u64,
    answers: [Option<Answer>; REPLICAS_MAX as usize],
    /// Set once the answers allowed a decision; never changes afterwards in this process.
    pub decision: Option<Decision>,
}

impl Probe {
    pub fn new(nonce: u64) -> Probe {
        Probe {
            nonce,
            answers: [None; REPLICAS_MAX as usize],
            decision: None,
        }
    }

    /// Records `from`'s answer (a later answer replaces an earlier one) and decides if the
    /// answers now allow it. Returns the new decision, once.
    pub fn absorb(
        &mut self,
        from: u8,
        answer: Answer,
        own_index: u8,
        replica_count: u8,
    ) -> Option<Decision> {
        assert!(from < replica_count && from != own_index);
        if self.decision.is_some() {
            return None;
        }
        self.answers[usize::from(from)] = Some(answer);
        self.decision = decide(&self.answers, own_index, replica_count);
        self.decision
    }
}

/// The decision the answers allow, if any (see the module documentation).
pub(crate) fn decide(
    answers: &[Option<Answer>],
    own_index: u8,
    replica_count: u8,
) -> Option<Decision> {
    assert!(own_index < replica_count);
    assert!(answers.len() >= usize::from(replica_count));
    let peers = || {
        answers[..usize::from(replica_count)]
            .iter()
            .enumerate()
            .filter(move |&(index, _)| index != usize::from(own_index))
            .map(|(_, answer)| *answer)
    };
    let all_empty = peers().all(|answer| answer.is_some_and(|a| a.empty));
    if all_empty {
        return Some(Decision::Genesis);
    }
    let intact: Vec<View> = peers()
        .flatten()
        .filter(|a| !a.fresh)
        .map(|a| a.view)
        .collect();
    if intact.len() >= usize::from(quorum::majority(replica_count)) {
        return intact.iter().max().copied().map(Decision::Beyond);
    }
    None
}

/// The view a fresh replica waits for after [`Decision::Beyond`]`(bound)`: above `bound`, at
/// least its own durable view, and led by another replica (it cannot lead a view it has no
/// log for).
pub(crate) fn target_view(bound: View, own_view: View, own_index: u8, replica_count: u8) -> View {
    let mut target = (bound + 1).max(own_view);
    if replica_count > 1 && target % u64::from(replica_count) == u64::from(own_index) {
        target += 1;
    }
    assert!(target > bound && target >= own_view);
    target
}

#[cfg(test)]
// Table helpers: every cell of a case is an optional answer.
#[allow(clippy::unnecessary_wraps)]
mod tests {
    use super::*;

    /// (answers indexed by replica, own index, replica count, expected decision)
    type Case<'a> = (&'a [Option<Answer>], u8, u8, Option<Decision>);

    fn intact(view: View) -> Option<Answer> {
        Some(Answer {
            view,
            fresh: false,
            empty: false,
        })
    }

    fn fresh(view: View) -> Option<Answer> {
        Some(Answer {
            view,
            fresh: true,
            empty: true,
        })
    }

    fn empty(view: View) -> Option<Answer> {
        Some(Answer {
            view,
            fresh: false,
            empty: true,
        })
    }

    #[test]
    fn decisions() {
        let cases: &[Case] = &[
            // Three replicas, replica 1 probes.
            (&[None, None, None], 1, 3, None),
            (&[fresh(0), None, None], 1, 3, None),
            (&[fresh(0), None, fresh(0)], 1, 3, Some(Decision::Genesis)),
            // One intact peer is not a majority: wait (more than f disks may be lost).
            (&[intact(4), None, fresh(0)], 1, 3, None),
            (&[intact(4), None, None], 1, 3, None),
            (
                &[intact(4), None, intact(6)],
                1,
                3,
                Some(Decision::Beyond(6)),
            ),
            // A fresh peer's view says nothing.
            (&[fresh(9), None, intact(6)], 1, 3, None),
            // Its own slot's answer (a stale one from itself) is never counted.
            (&[intact(4), intact(8), None], 1, 3, None),
            // Five replicas: three intact peers are needed.
            (&[None, intact(3), intact(5), None, None], 0, 5, None),
            (
                &[None, intact(3), intact(5), intact(2), None],
                0,
                5,
                Some(Decision::Beyond(5)),
            ),
            (&[None, fresh(0), fresh(0), fresh(0), None], 0, 5, None),
            (
                &[None, fresh(0), fresh(0), fresh(0), fresh(0)],
                0,
                5,
                Some(Decision::Genesis),
            ),
            (&[None, fresh(0), intact(7), fresh(0), fresh(0)], 0, 5, None),
            // A new cluster's replica that took its place but holds nothing yet.
            (&[empty(0), None, fresh(0)], 1, 3, Some(Decision::Genesis)),
            (&[empty(3), None, empty(3)], 1, 3, Some(Decision::Genesis)),
            // Two intact peers, one of them empty: a majority bounds the views.
            (
                &[empty(2), None, intact(4)],
                1,
                3,
                Some(Decision::Beyond(4)),
            ),
            (&[empty(2), None, None], 1, 3, None),
        ];
        for (index, (answers, own, count, expected)) in cases.iter().enumerate() {
            assert_eq!(decide(answers, *own, *count), *expected, "case {index}");
        }
    }

    #[test]
    fn a_decision_is_taken_once() {
        let mut probe = Probe::new(7);
        let answer = intact(3).expect("some");
        assert_eq!(probe.absorb(0, answer, 1, 3), None);
        assert_eq!(probe.absorb(2, answer, 1, 3), Some(Decision::Beyond(3)));
        let later = intact(9).expect("some");
        assert_eq!(probe.absorb(2, later, 1, 3), None);
        assert_eq!(probe.decision, Some(Decision::Beyond(3)));
    }

    #[test]
    fn target_views() {
        // (bound, own view, own index, replica count, target)
        let cases = [
            (0, 0, 2, 3, 1),
            (0, 0, 1, 3, 2), // view 1 would be its own to lead
            (5, 2, 0, 3, 7), // view 6 is replica 0's
            (5, 9, 1, 3, 9),
            (5, 10, 1, 3, 11),
            (0, 0, 0, 1, 1),
        ];
        for (bound, own_view, own, count, expected) in cases {
            assert_eq!(target_view(bound, own_view, own, count), expected);
        }
    }
}
