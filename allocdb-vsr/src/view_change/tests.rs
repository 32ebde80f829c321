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
