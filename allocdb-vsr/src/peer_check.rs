//! Peer messages are input: a message that decodes but breaks the protocol's rules is refused
//! (dropped, counted, reported) before the replica acts on it. Asserts in the replica guard
//! its own invariants; they must never be reachable from what another process sent.
//!
//! What is checked here is what a message can be judged by on its own (plus the receiver's
//! identity and view): view numbers in range, ops that exist, entries whose body matches their
//! header and that belong to this cluster, ranges that are ranges, claims that are
//! self-consistent. What needs the receiver's log (an entry contradicting a committed op) is
//! refused where the log is consulted (`journal::Reconcile::Conflicts`).

use allocdb_core::Op;
use allocdb_wal::View;

use crate::message::{Entry, Message};

/// The highest view a message may carry. Views grow by one per view change; 2^62 leaves room
/// for any real cluster's lifetime while `view + 1` can never overflow.
pub const VIEW_MAX: View = 1 << 62;

/// How far beyond the receiver's own view a message's view may lie. A partitioned replica
/// moves up one view per view-change timeout (tens of thousands a day at most), so 2^40 is
/// never reached honestly, while a forged jump to the end of the range is refused.
pub const VIEW_AHEAD_MAX: View = 1 << 40;

/// Why a peer message was refused.
pub type Refusal = &'static str;

/// Checks `message` for `cluster_id`, received by a replica in `own_view`.
///
/// # Errors
/// The rule the message breaks.
pub fn check(message: &Message, cluster_id: u128, own_view: View) -> Result<(), Refusal> {
    let view = message.view();
    if view > VIEW_MAX {
        return Err("view beyond the range of views");
    }
    if view > own_view.saturating_add(VIEW_AHEAD_MAX) {
        return Err("view too far ahead of ours");
    }
    match message {
        Message::Prepare { entry, .. } => check_entries(std::slice::from_ref(entry), cluster_id),
        Message::DoViewChange {
            log_view,
            view,
            suffix,
            ..
        } if log_view >= view => Err("do_view_change log_view not below its view"),
        Message::DoViewChange { suffix, .. } | Message::StartView { suffix, .. } => {
            check_entries(suffix, cluster_id)
        }
        Message::RequestPrepares { op_min, op_max, .. }
        | Message::RequestHeaders { op_min, op_max, .. } => check_range(*op_min, *op_max),
        Message::Headers { headers, .. } => {
            let contiguous = headers.windows(2).all(|w| w[1].op == w[0].op + 1);
            if headers
                .iter()
                .any(|h| h.op == 0 || h.cluster_id != cluster_id)
            {
                Err("headers of op 0 or of another cluster")
            } else if !contiguous {
                Err("headers not ascending and contiguous")
            } else {
                Ok(())
            }
        }
        Message::Checkpoint { info, .. } if info.op == 0 => Err("checkpoint of op 0"),
        _ => Ok(()),
    }
}

fn check_entries(entries: &[Entry], cluster_id: u128) -> Result<(), Refusal> {
    for entry in entries {
        let header = &entry.header;
        if header.op == 0 {
            return Err("entry of op 0 (op 0 is the root, never a record)");
        }
        if header.cluster_id != cluster_id {
            return Err("entry of another cluster");
        }
        if !header.matches_body(&entry.body) {
            return Err("entry body does not match its header");
        }
    }
    Ok(())
}

fn check_range(op_min: Op, op_max: Op) -> Result<(), Refusal> {
    if op_min == 0 || op_min > op_max {
        return Err("op range empty or starting at op 0");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use allocdb_wal::{RecordHeader, root_checksum};

    use super::*;

    const CLUSTER: u128 = 7;

    fn entry(op: Op, cluster: u128, body: &[u8]) -> Entry {
        Entry {
            header: RecordHeader::new(cluster, 1, op, 1, root_checksum(cluster), body),
            body: body.to_vec(),
        }
    }

    fn prepare(view: View, entry: Entry) -> Message {
        Message::Prepare {
            view,
            commit: 0,
            entry,
        }
    }

    #[test]
    fn refusals() {
        let good = entry(1, CLUSTER, b"batch");
        let mut tampered = good.clone();
        tampered.body[0] ^= 1;
        // (message, receiver's view, refused)
        let cases = [
            (prepare(3, good.clone()), 3, false),
            (prepare(3, entry(0, CLUSTER, b"x")), 3, true),
            (prepare(3, entry(1, CLUSTER + 1, b"x")), 3, true),
            (prepare(3, tampered), 3, true),
            (Message::StartViewChange { view: u64::MAX }, 3, true),
            (Message::StartViewChange { view: VIEW_MAX }, VIEW_MAX, false),
            (
                Message::StartViewChange {
                    view: VIEW_AHEAD_MAX + 4,
                },
                3,
                true,
            ),
            (
                Message::StartViewChange {
                    view: VIEW_AHEAD_MAX + 3,
                },
                3,
                false,
            ),
            (
                Message::DoViewChange {
                    view: 5,
                    log_view: 5,
                    op: 0,
                    checksum: 0,
                    commit: 0,
                    suffix: Vec::new(),
                    damaged: false,
                },
                4,
                true,
            ),
            (
                Message::RequestPrepares {
                    view: 1,
                    op_min: 0,
                    op_max: 4,
                },
                1,
                true,
            ),
            (
                Message::RequestHeaders {
                    view: 1,
                    op_min: 5,
                    op_max: 4,
                },
                1,
                true,
            ),
            (
                Message::RequestHeaders {
                    view: 1,
                    op_min: 4,
                    op_max: 4,
                },
                1,
                false,
            ),
        ];
        for (index, (message, own_view, refused)) in cases.into_iter().enumerate() {
            assert_eq!(
                check(&message, CLUSTER, own_view).is_err(),
                refused,
                "case {index}: {message:?}"
            );
        }
    }
}
