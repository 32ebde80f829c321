//! Request numbers of the client's session: which number the next write gets, and when a
//! write must wait for one.
//!
//! The replicas keep, per session, the answers of the latest `session_requests_max` request
//! numbers; a number at or below `highest - session_requests_max` whose answer is gone is
//! refused `request_stale`. The client therefore never hands out a number `n` with
//! `n >= lowest_unfinished + window` (`window <= session_requests_max`): every write it still
//! waits for keeps its stored answer, so a resend is answered, never refused as stale.

use std::collections::BTreeSet;

use allocdb_core::ids::REQUEST_NUMBER_MAX;
use allocdb_core::ids::SessionId;

/// The numbering of one session at a time.
#[derive(Debug)]
pub(crate) struct Numbering {
    /// The live session, if registered and not evicted.
    session: Option<SessionId>,
    /// The number the next write gets (numbers start at 1).
    request_next: u64,
    /// Numbers handed out on `session` whose calls have not finished.
    unfinished: BTreeSet<u64>,
    /// How far past the lowest unfinished number a new number may go.
    window: u64,
}

impl Numbering {
    /// No session yet; `window` numbers may be unfinished at once.
    pub(crate) fn new(window: u32) -> Numbering {
        assert!(window > 0, "a window of zero would never number a write");
        Numbering {
            session: None,
            request_next: 1,
            unfinished: BTreeSet::new(),
            window: u64::from(window),
        }
    }

    /// The live session.
    pub(crate) fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// Changes the window (a welcome may tell a new `session_requests_max`); numbers already
    /// handed out stay valid.
    pub(crate) fn set_window(&mut self, window: u32) {
        assert!(window > 0);
        self.window = u64::from(window);
    }

    /// Starts numbering a freshly registered session from 1.
    pub(crate) fn start(&mut self, session: SessionId) {
        assert_ne!(self.session, Some(session), "a session is registered once");
        self.session = Some(session);
        self.request_next = 1;
        self.unfinished.clear();
    }

    /// Forgets `session` (evicted): nothing more is numbered on it. Whether it was the live one.
    pub(crate) fn end(&mut self, session: SessionId) -> bool {
        if self.session != Some(session) {
            return false;
        }
        self.session = None;
        self.unfinished.clear();
        true
    }

    /// The next key, or `None` when there is no session or the window is full.
    pub(crate) fn assign(&mut self) -> Option<(SessionId, u64)> {
        let session = self.session?;
        let lowest = self
            .unfinished
            .first()
            .copied()
            .unwrap_or(self.request_next);
        assert!(lowest <= self.request_next);
        if self.request_next >= lowest + self.window {
            return None;
        }
        let request = self.request_next;
        // 2^63 numbers: a million writes a second for 292,000 years.
        assert!(request <= REQUEST_NUMBER_MAX, "request numbers exhausted");
        self.request_next += 1;
        let inserted = self.unfinished.insert(request);
        assert!(inserted);
        Some((session, request))
    }

    /// The call numbered `request` on `session` finished (answered or given up).
    pub(crate) fn finish(&mut self, session: SessionId, request: u64) {
        if self.session == Some(session) {
            assert!(request < self.request_next);
            self.unfinished.remove(&request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Numbering;

    #[test]
    fn numbers_are_sequential_and_bounded_by_the_lowest_unfinished() {
        let mut numbering = Numbering::new(3);
        assert_eq!(numbering.assign(), None, "no session yet");
        numbering.start(7);
        assert_eq!(numbering.assign(), Some((7, 1)));
        assert_eq!(numbering.assign(), Some((7, 2)));
        assert_eq!(numbering.assign(), Some((7, 3)));
        assert_eq!(numbering.assign(), None, "window of 3 full");
        // Finishing a later number does not move the window: 1 is still unfinished.
        numbering.finish(7, 3);
        assert_eq!(numbering.assign(), None);
        numbering.finish(7, 1);
        assert_eq!(numbering.assign(), Some((7, 4)));
        assert_eq!(
            numbering.assign(),
            None,
            "2 is unfinished: 2 + 3 = 5 is out"
        );
        // A finish for another session is ignored.
        numbering.finish(9, 2);
        assert_eq!(numbering.assign(), None);
        numbering.finish(7, 2);
        numbering.finish(7, 4);
        assert_eq!(numbering.assign(), Some((7, 5)));
    }

    #[test]
    fn an_ended_session_numbers_nothing_and_a_new_one_starts_at_one() {
        let mut numbering = Numbering::new(2);
        numbering.start(5);
        assert_eq!(numbering.assign(), Some((5, 1)));
        assert!(!numbering.end(6), "not the live session");
        assert!(numbering.end(5));
        assert_eq!(numbering.session(), None);
        assert_eq!(numbering.assign(), None);
        numbering.finish(5, 1); // a late finish of the dead session is harmless
        numbering.start(8);
        assert_eq!(numbering.assign(), Some((8, 1)));
        numbering.set_window(1);
        assert_eq!(numbering.assign(), None);
    }
}
