//! Glue between the protocol and the log: checksums by op, reading suffixes, and bringing
//! the local log in line with entries known to be canonical.
//!
//! Safety rests on two rules enforced here. (1) Only ops proven non-canonical are ever
//! removed: an op is removed only when the canonical log holds a different checksum at it or
//! at an earlier op (the hash chain makes every later op differ too). (2) A committed op
//! (at or below `commit_min`) is never removed; finding one that differs from the canonical
//! log means replication is broken, and the replica halts loudly.

use allocdb_core::Op;
use allocdb_wal::{Checksum, RecordHeader, Storage, Wal, WalError};

use crate::message::Entry;
use crate::view_change::Canonical;

/// What reconciling one canonical header with the local log found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconcile {
    /// The local log holds the op with the same checksum: every op up to it is canonical.
    Verified,
    /// The op is the next one and chains onto the local log: its body may be appended.
    Appendable,
    /// The op lies beyond the local log's next op: nothing to do yet.
    Ahead,
    /// Local ops that differ from the canonical log were removed; reconcile again.
    Diverged,
    /// The op is committed and no longer held (below the log's first op): nothing to do.
    Retired,
    /// The header contradicts an op this replica has applied (committed): the message is
    /// not canonical (forged, or from a broken peer) and is refused; nothing was changed.
    Conflicts,
}

/// The chain checksum of `op` in the local log: the record's, the checkpoint's anchor, or
/// `None` when the op is not held.
pub fn checksum_at<S: Storage>(wal: &Wal<S>, op: Op) -> Option<Checksum> {
    if op == wal.checkpoint_op() {
        return Some(wal.checkpoint_info().record_checksum);
    }
    wal.header(op).map(|header| header.checksum)
}

/// Compares one canonical header with the local log, removing local ops it proves wrong.
///
/// # Errors
/// A storage error from truncation (the replica halts).
pub fn reconcile<S: Storage>(
    wal: &mut Wal<S>,
    header: &RecordHeader,
    commit_min: Op,
) -> Result<Reconcile, WalError> {
    assert!(header.op >= 1, "op 0 is never a record");
    let last_op = wal.last_op();
    if header.op > last_op + 1 {
        return Ok(Reconcile::Ahead);
    }
    if header.op == last_op + 1 {
        if header.parent == wal.last_checksum() {
            return Ok(Reconcile::Appendable);
        }
        // The canonical op `last_op` has checksum `header.parent`; ours differs.
        if !remove_from(wal, last_op, commit_min)? {
            return Ok(Reconcile::Conflicts);
        }
        return Ok(Reconcile::Diverged);
    }
    match checksum_at(wal, header.op) {
        None => {
            assert!(
                header.op <= wal.checkpoint_op(),
                "unheld op {} above the checkpoint",
                header.op
            );
            Ok(Reconcile::Retired)
        }
        Some(checksum) if checksum == header.checksum => Ok(Reconcile::Verified),
        Some(_) => {
            if !remove_from(wal, header.op, commit_min)? {
                return Ok(Reconcile::Conflicts);
            }
            Ok(Reconcile::Diverged)
        }
    }
}

/// Removes local ops `op..` after proof that they are not canonical; refuses (false, nothing
/// removed) when `op` is applied: a committed op never differs from a canonical log, so the
/// "proof" came from a message that is not canonical.
fn remove_from<S: Storage>(wal: &mut Wal<S>, op: Op, commit_min: Op) -> Result<bool, WalError> {
    if op <= commit_min {
        return Ok(false);
    }
    assert!(
        op > wal.checkpoint_op(),
        "applied ops include the checkpoint"
    );
    wal.truncate_after(op - 1)?;
    assert_eq!(wal.last_op(), op - 1);
    Ok(true)
}

/// Outcome of absorbing one canonical entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absorb {
    /// The local log now holds the entry (appended, or already there): canonical up to it.
    Held,
    /// There is a gap before the entry, or it is retired: not held.
    NotHeld,
    /// The log is full or the body was refused: not held, try later.
    Refused,
    /// The entry contradicts an applied op: not canonical, refused (see
    /// [`Reconcile::Conflicts`]).
    Conflicts,
}

/// Brings the local log in line with one canonical entry (appends it if it is next). The
/// caller syncs afterwards.
///
/// # Errors
/// A storage error (the replica halts).
pub fn absorb<S: Storage>(
    wal: &mut Wal<S>,
    entry: &Entry,
    commit_min: Op,
) -> Result<Absorb, WalError> {
    // At most: one removal at the op, one removal of the op before it, then a decision.
    for _ in 0..3 {
        match reconcile(wal, &entry.header, commit_min)? {
            Reconcile::Verified => return Ok(Absorb::Held),
            Reconcile::Ahead | Reconcile::Retired => return Ok(Absorb::NotHeld),
            Reconcile::Conflicts => return Ok(Absorb::Conflicts),
            Reconcile::Diverged => {}
            Reconcile::Appendable => {
                let h = &entry.header;
                if h.cluster_id != wal.config().cluster_id || !h.matches_body(&entry.body) {
                    return Ok(Absorb::Refused);
                }
                return match wal.append(h.view, h.op, h.slot, &entry.body) {
                    Ok(appended) => {
                        assert_eq!(appended, *h, "a chained append reproduces the header");
                        Ok(Absorb::Held)
                    }
                    Err(WalError::LogFull { .. } | WalError::BodyTooLarge { .. }) => {
                        Ok(Absorb::Refused)
                    }
                    Err(error) => Err(error),
                };
            }
        }
    }
    Ok(Absorb::NotHeld)
}

/// Reads entries `op_min..=op_max` (clamped to what the log holds).
///
/// # Errors
/// A storage or corruption error (the replica halts).
pub fn read_entries<S: Storage>(
    wal: &mut Wal<S>,
    op_min: Op,
    op_max: Op,
) -> Result<Vec<Entry>, WalError> {
    let op_min = op_min.max(wal.first_op());
    let op_max = op_max.min(wal.last_op());
    let mut entries = Vec::new();
    for op in op_min..=op_max {
        let mut body = Vec::new();
        let header = wal.read(op, &mut body)?;
        assert_eq!(header.op, op);
        entries.push(Entry { header, body });
    }
    Ok(entries)
}

/// The last `count_max` entries of the log.
///
/// # Errors
/// As [`read_entries`].
pub fn read_suffix<S: Storage>(wal: &mut Wal<S>, count_max: u32) -> Result<Vec<Entry>, WalError> {
    let last = wal.last_op();
    let first = last.saturating_sub(u64::from(count_max)) + 1;
    let entries = read_entries(wal, first, last)?;
    assert!(entries.len() <= usize::try_from(count_max).expect("u32 fits"));
    Ok(entries)
}

/// Makes the local log equal to `canonical` up to its head, if the local log holds some op
/// whose checksum the canonical entries confirm. Returns whether it did. Syncs.
///
/// # Errors
/// A storage error (the replica halts).
pub fn splice<S: Storage>(
    wal: &mut Wal<S>,
    canonical: &Canonical,
    commit_min: Op,
) -> Result<bool, WalError> {
    let known = |op: Op| -> Option<Checksum> {
        if op == canonical.op {
            return Some(canonical.checksum);
        }
        let first = canonical.entries.first()?;
        if op + 1 == first.header.op {
            return Some(first.header.parent);
        }
        let index = op.checked_sub(first.header.op)?;
        canonical
            .entries
            .get(usize::try_from(index).ok()?)
            .map(|e| e.header.checksum)
    };
    let low = canonical
        .entries
        .first()
        .map_or(canonical.op, |e| e.header.op - 1);
    let high = canonical.op.min(wal.last_op());
    let Some(matched) = (low..=high)
        .rev()
        .find(|&op| known(op).is_some() && checksum_at(wal, op) == known(op))
    else {
        return Ok(false);
    };
    if wal.last_op() > matched && !remove_from(wal, matched + 1, commit_min)? {
        return Ok(false);
    }
    for entry in canonical.entries.iter().filter(|e| e.header.op > matched) {
        match absorb(wal, entry, commit_min)? {
            Absorb::Held => {}
            Absorb::NotHeld | Absorb::Refused | Absorb::Conflicts => {
                wal.sync()?;
                return Ok(false);
            }
        }
    }
    wal.sync()?;
    assert_eq!(wal.last_op(), canonical.op);
    assert_eq!(wal.last_checksum(), canonical.checksum);
    Ok(true)
}
