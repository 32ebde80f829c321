use allocdb_wal::RecordHeader;

use super::{LogClaim, ViewChangeState, choose};
use crate::message::Entry;

/// A chain of entries for ops 1..=len; `fork` changes the body from that op on (another
/// primary's log).
fn chain(len: u64, view: u64, fork: u64) -> Vec<Entry> {
    let mut parent = 1_u128;
    let mut entries = Vec::new();
    for op in 1..=len {
        let body = if op >= fork {
            vec![9, u8::try_from(op).unwrap()]
        } else {
            vec![1, u8::try_from(op).unwrap()]
        };
        let header = RecordHeader::new(5, if op >= fork { view } else { 1 }, op, op, parent, &body);
        parent = header.checksum;
        entries.push(Entry { header, body });
    }
    entries
}

fn claim(log_view: u64, entries: &[Entry], from: u64, commit: u64) -> LogClaim {
    let last = entries.last().unwrap();
    let suffix = entries
        .iter()
        .filter(|e| e.header.op >= from)
        .cloned()
        .collect();
    LogClaim {
        log_view,
        op: last.header.op,
        checksum: last.header.checksum,
        commit,
        suffix,
    }
}

#[test]
fn highest_log_view_then_highest_op_wins() {
    let old = chain(10, 2, 6);
    let new = chain(7, 3, 6);
    // (claims, expected winner's (log_view, op), expected commit)
    let cases: [(Vec<LogClaim>, (u64, u64), u64); 4] = [
        (vec![claim(2, &old, 8, 5), claim(3, &new, 5, 4)], (3, 7), 5),
        (
            vec![claim(2, &old, 8, 5), claim(2, &old[..8], 6, 3)],
            (2, 10),
            5,
        ),
        (vec![claim(1, &old[..5], 1, 5)], (1, 5), 5),
        (
            vec![
                claim(3, &new[..6], 5, 6),
                claim(3, &new, 7, 2),
                claim(2, &old, 1, 1),
            ],
            (3, 7),
            6,
        ),
    ];
    for (claims, (log_view, op), commit) in cases {
        let refs: Vec<&LogClaim> = claims.iter().collect();
        let canonical = choose(&refs);
        assert_eq!(
            (canonical.log_view, canonical.op, canonical.commit),
            (log_view, op, commit)
        );
        assert!(
            canonical
                .entries
                .windows(2)
                .all(|w| w[1].header.parent == w[0].header.checksum)
        );
    }
}

#[test]
fn suffixes_of_the_same_log_view_join_downwards() {
    let log = chain(12, 4, 3);
    let newest = claim(4, &log, 10, 2); // entries 10..=12
    let short = claim(4, &log[..9], 5, 2); // entries 5..=9
    let stale = claim(3, &chain(12, 3, 2), 1, 2); // another log view: never joined
    let canonical = choose(&[&newest, &short, &stale]);
    let ops: Vec<u64> = canonical.entries.iter().map(|e| e.header.op).collect();
    assert_eq!(ops, (5..=12).collect::<Vec<_>>());
}

#[test]
fn votes_and_claims_are_counted_once_per_replica() {
    let mut state = ViewChangeState::new(5);
    assert_eq!(state.vote(1), 1);
    assert_eq!(state.vote(1), 1);
    assert_eq!(state.vote(2), 2);
    let log = chain(3, 4, 1);
    assert_eq!(state.claim(0, claim(4, &log, 1, 0)), 1);
    assert_eq!(state.claim(0, claim(4, &log, 2, 1)), 1);
    assert_eq!(state.claim(2, claim(1, &log[..1], 1, 0)), 2);
    assert_eq!(state.canonical().op, 3);
}

#[test]
fn a_lagging_new_primary_extends_the_chosen_log_backwards_only_along_the_chain() {
    let log = chain(30, 4, 1);
    let forked = chain(30, 5, 20); // same ops 1..19, another log from 20 on
    let mut state = ViewChangeState::new(6);
    state.claim(1, claim(4, &log, 25, 10)); // carries 25..=30
    state.claim(2, claim(3, &log[..12], 12, 10));
    let canonical = state.canonical();
    assert_eq!(
        state.begin_fetch(&canonical),
        Some((24, log[23].header.checksum))
    );
    assert!(state.fetching());
    assert_eq!(
        state.claimants_holding(0, 24),
        vec![1],
        "only the winning log view"
    );
    // An entry of another chain at the wanted op is refused; so is a body not matching.
    assert!(!state.absorb_fetched(&forked[23], 16, 100));
    let mut bad_body = log[23].clone();
    bad_body.body.push(1);
    assert!(!state.absorb_fetched(&bad_body, 16, 100));
    // Out of order: 21 and 22 wait until 23 and 24 arrive, then all chain.
    assert!(!state.absorb_fetched(&log[20], 16, 100));
    assert!(!state.absorb_fetched(&log[21], 16, 100));
    assert!(!state.absorb_fetched(&log[22], 16, 100));
    assert!(state.absorb_fetched(&log[23], 16, 100));
    let canonical = state.canonical();
    let ops: Vec<u64> = canonical.entries.iter().map(|e| e.header.op).collect();
    assert_eq!(ops, (21..=30).collect::<Vec<_>>());
    // The extension is capped.
    assert!(state.absorb_fetched(&log[19], 16, 11));
    assert!(!state.absorb_fetched(&log[18], 16, 11));
    assert_eq!(state.extension_len(), 11);
    // Requests are paced: asked once, again only below what was asked or after the resend.
    assert!(state.should_ask(10, 19, 100, 6));
    assert!(!state.should_ask(10, 19, 103, 6));
    assert!(state.should_ask(2, 9, 103, 6));
    assert!(state.should_ask(2, 9, 109, 6));
    // A different chosen head starts over.
    let other = claim(4, &forked, 28, 10);
    let mut fresh = ViewChangeState::new(6);
    fresh.claim(1, other);
    assert_eq!(
        state.begin_fetch(&fresh.canonical()),
        Some((27, forked[26].header.checksum))
    );
    assert_eq!(state.extension_len(), 3);
}
