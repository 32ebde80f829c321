//! Group commit without stopping: the log's tail is synced by someone else (another thread)
//! while its owner goes on appending, and the owner learns the outcome as an input.
//!
//! [`Wal::sync_begin`] notes the last op and hands out a [`TailSync`] holding a detached
//! [`FileSyncer`] of the last segment; whoever runs it calls [`TailSync::run`];
//! [`Wal::sync_end`] then raises `durable_op` to the noted op. Only the last segment can hold
//! unsynced records (a full segment is synced before the next one starts), so one file's
//! sync covers every op up to the noted one. Appends after `sync_begin` may or may not be
//! covered; they are not counted. Ops taken off the log meanwhile (truncation, a state
//! transfer) make the outcome meaningless for the ops appended since under the same
//! numbers, so such an outcome is not counted either.

use crate::error::WalError;
use crate::storage::{FileSyncer, Storage, StorageError};
use crate::wal::Wal;
use allocdb_core::Op;

/// A sync of the log's tail, begun by [`Wal::sync_begin`] and finished by [`Wal::sync_end`].
#[must_use = "a begun sync counts only once it is run and ended"]
pub struct TailSync<F> {
    target: Op,
    rewrites: u64,
    instance: u64,
    file: F,
    ran: Option<Result<(), StorageError>>,
}

impl<F: FileSyncer> TailSync<F> {
    /// The op that becomes durable when this sync succeeds.
    pub fn target(&self) -> Op {
        self.target
    }

    /// Performs the sync (blocking, on any thread); the outcome is kept for `sync_end`.
    pub fn run(&mut self) {
        assert!(self.ran.is_none(), "a tail sync runs once");
        self.ran = Some(self.file.sync());
    }

    /// Whether [`TailSync::run`] was called.
    pub fn has_run(&self) -> bool {
        self.ran.is_some()
    }
}

impl<S: Storage> Wal<S> {
    /// Starts a sync of every op appended so far, to be run elsewhere ([`TailSync::run`])
    /// while this log goes on appending; `None` when every op is durable already.
    ///
    /// # Errors
    /// `Poisoned`, or a storage error (poisons).
    pub fn sync_begin(&mut self) -> Result<Option<TailSync<S::Syncer>>, WalError> {
        self.check_usable()?;
        if self.durable_op == self.last_op() {
            return Ok(None);
        }
        let segment = self.segments.back().expect("the log always has a segment");
        assert!(segment.dirty, "unsynced ops lie in the last segment");
        let result = self.storage.syncer(segment.handle).map_err(WalError::from);
        let file = self.poison_on_error(result)?;
        Ok(Some(TailSync {
            target: self.last_op(),
            rewrites: self.rewrites,
            instance: self.instance,
            file,
            ran: None,
        }))
    }

    /// Finishes a sync begun by [`Wal::sync_begin`] and run since: raises `durable_op` to its
    /// target unless ops were taken off the log meanwhile (or a synchronous sync got there
    /// first). Returns `durable_op()`.
    ///
    /// # Errors
    /// `Poisoned`; the sync's own storage error (poisons: what reached the disk is unknown).
    ///
    /// # Panics
    /// If the sync was not run, or another log (another opening) began it.
    pub fn sync_end(&mut self, sync: TailSync<S::Syncer>) -> Result<Op, WalError> {
        assert_eq!(
            sync.instance, self.instance,
            "a tail sync is ended on the log that began it"
        );
        self.check_usable()?;
        let outcome = sync.ran.expect("a tail sync is run before it is ended");
        // Even the error of an outdated sync poisons: a sync of the same file on this side
        // may not have seen it (an error is reported once per open file).
        self.poison_on_error(outcome.map_err(WalError::from))?;
        if sync.rewrites == self.rewrites && sync.target > self.durable_op {
            // No op was taken off since `sync_begin`, so ops up to the target are the same
            // records, and no segment rolled over (that syncs everything first).
            assert!(
                sync.target <= self.last_op(),
                "ops only grow without a rewrite"
            );
            self.durable_op = sync.target;
            if sync.target == self.last_op() {
                self.segments.back_mut().expect("a segment").dirty = false;
            }
        }
        Ok(self.durable_op)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        ReplicaIdentity, SimConfig, SimStorage, StorageErrorKind, Wal, WalConfig, WalError,
    };

    fn formatted(disk: &SimStorage) -> Wal<SimStorage> {
        let identity = ReplicaIdentity {
            replica_index: 0,
            replica_count: 1,
        };
        Wal::format(disk.clone(), WalConfig::new(7), identity).unwrap()
    }

    fn reopened(disk: &SimStorage) -> Wal<SimStorage> {
        Wal::open(disk.clone(), WalConfig::new(7)).unwrap()
    }

    #[test]
    fn counts_only_ops_appended_before_it_began() {
        let disk = SimStorage::new(SimConfig::new(1));
        let mut wal = formatted(&disk);
        wal.append(0, 1, 10, b"one").unwrap();
        wal.append(0, 2, 10, b"two").unwrap();
        let mut sync = wal.sync_begin().unwrap().expect("ops 1..=2 are unsynced");
        assert_eq!(sync.target(), 2);
        wal.append(0, 3, 11, b"three").unwrap();
        sync.run();
        assert_eq!(wal.sync_end(sync).unwrap(), 2);
        assert_eq!(wal.durable_op(), 2, "op 3 came after the sync began");
        let mut sync = wal.sync_begin().unwrap().expect("op 3 is unsynced");
        sync.run();
        assert_eq!(wal.sync_end(sync).unwrap(), 3);
        assert!(wal.sync_begin().unwrap().is_none(), "nothing left to sync");
    }

    #[test]
    fn what_it_counted_survives_a_crash_and_what_it_did_not_run_may_not() {
        let disk = SimStorage::new(SimConfig::new(2));
        let mut wal = formatted(&disk);
        wal.append(0, 1, 10, b"one").unwrap();
        let mut sync = wal.sync_begin().unwrap().unwrap();
        sync.run();
        wal.sync_end(sync).unwrap();
        wal.append(0, 2, 10, b"two").unwrap();
        let never_run = wal.sync_begin().unwrap().unwrap();
        disk.crash();
        drop(never_run);
        drop(wal);
        let wal = reopened(&disk);
        assert!(wal.last_op() >= 1, "op 1 was counted durable");
        assert!(wal.durable_op() >= 1);
    }

    #[test]
    fn a_failed_sync_poisons_the_log() {
        let disk = SimStorage::new(SimConfig::new(3));
        let mut wal = formatted(&disk);
        wal.append(0, 1, 10, b"one").unwrap();
        let mut sync = wal.sync_begin().unwrap().unwrap();
        // A crash makes the detached handle stale: the sync fails as a real one may.
        disk.crash();
        sync.run();
        match wal.sync_end(sync) {
            Err(WalError::Storage(error)) => assert_eq!(error.kind, StorageErrorKind::BadHandle),
            other => panic!("expected the sync's storage error, got {other:?}"),
        }
        assert!(matches!(
            wal.append(0, 2, 10, b"two"),
            Err(WalError::Poisoned)
        ));
    }

    #[test]
    fn an_outcome_from_before_a_truncation_does_not_count_the_new_ops() {
        let disk = SimStorage::new(SimConfig::new(4));
        let mut wal = formatted(&disk);
        wal.append(0, 1, 10, b"one").unwrap();
        wal.sync().unwrap();
        wal.append(0, 2, 10, b"old two").unwrap();
        wal.append(0, 3, 10, b"old three").unwrap();
        let mut sync = wal.sync_begin().unwrap().unwrap();
        assert_eq!(sync.target(), 3);
        // A view change: the log is settled, cut back to op 1, and a new view appends ops
        // 2 and 3 again (unsynced).
        wal.sync().unwrap();
        wal.truncate_after(1).unwrap();
        wal.append(1, 2, 12, b"new two").unwrap();
        wal.append(1, 3, 12, b"new three").unwrap();
        sync.run();
        assert_eq!(
            wal.sync_end(sync).unwrap(),
            1,
            "the old sync proves nothing of new ops"
        );
        assert_eq!(wal.durable_op(), 1);
    }

    #[test]
    fn a_synchronous_sync_in_between_makes_the_outcome_a_no_op() {
        let disk = SimStorage::new(SimConfig::new(5));
        let mut wal = formatted(&disk);
        wal.append(0, 1, 10, b"one").unwrap();
        let mut sync = wal.sync_begin().unwrap().unwrap();
        wal.append(0, 2, 10, b"two").unwrap();
        assert_eq!(wal.sync().unwrap(), 2);
        sync.run();
        assert_eq!(wal.sync_end(sync).unwrap(), 2, "durable_op never goes back");
    }

    /// A log of 4 KiB segments, so a few 1,000-byte records roll over.
    fn small_segments(disk: &SimStorage) -> Wal<SimStorage> {
        let identity = ReplicaIdentity {
            replica_index: 0,
            replica_count: 1,
        };
        let mut config = WalConfig::new(7);
        config.segment_bytes_max = 4096;
        config.body_bytes_max = 2048;
        Wal::format(disk.clone(), config, identity).unwrap()
    }

    /// Appends 1,000-byte records until the log has `segments` segments; the next op.
    fn fill(wal: &mut Wal<SimStorage>, mut op: u64, segments: usize) -> u64 {
        while wal.segments.len() < segments {
            wal.append(0, op, 10, &[7; 1000]).unwrap();
            op += 1;
        }
        op
    }

    // A sync outstanding while its segment is closed (and removed) behaves as a kept-open
    // descriptor does: it still runs, and its outcome is ignored, not an error.

    #[test]
    fn an_outcome_for_a_segment_a_truncation_removed_is_ignored() {
        let disk = SimStorage::new(SimConfig::new(11));
        let mut wal = small_segments(&disk);
        fill(&mut wal, 1, 2);
        let mut sync = wal
            .sync_begin()
            .unwrap()
            .expect("the last segment is unsynced");
        wal.sync().unwrap();
        let cut = wal.segments[1].first_op - 2;
        wal.truncate_after(cut).unwrap();
        assert_eq!(
            wal.segments.len(),
            1,
            "the truncation removed the second segment"
        );
        sync.run();
        assert_eq!(wal.sync_end(sync).unwrap(), cut);
        wal.append(1, cut + 1, 11, b"next")
            .expect("the log is not poisoned");
    }

    #[test]
    fn an_outcome_for_a_segment_a_checkpoint_dropped_is_ignored() {
        let disk = SimStorage::new(SimConfig::new(14));
        let mut wal = small_segments(&disk);
        wal.append(0, 1, 10, &[7; 1000]).unwrap();
        let mut sync = wal.sync_begin().unwrap().unwrap();
        fill(&mut wal, 2, 2);
        let second = wal.segments[1].first_op;
        wal.sync().unwrap();
        wal.checkpoint(second, b"snapshot").unwrap();
        assert_eq!(
            wal.segments.len(),
            1,
            "the checkpoint dropped the first segment"
        );
        sync.run();
        assert_eq!(wal.sync_end(sync).unwrap(), second);
        wal.append(0, second + 1, 11, b"next")
            .expect("the log is not poisoned");
    }

    #[test]
    fn an_outcome_from_before_a_state_transfer_is_ignored() {
        let disk = SimStorage::new(SimConfig::new(12));
        let mut wal = small_segments(&disk);
        wal.append(0, 1, 10, b"one").unwrap();
        let mut sync = wal.sync_begin().unwrap().unwrap();
        wal.sync().unwrap();
        let peer_disk = SimStorage::new(SimConfig::new(13));
        let mut peer = small_segments(&peer_disk);
        for op in 1..=5 {
            peer.append(0, op, 10, b"peer").unwrap();
        }
        peer.sync().unwrap();
        let info = peer.checkpoint(5, b"snapshot").unwrap();
        wal.install_checkpoint(&info, b"snapshot").unwrap();
        wal.append(0, 6, 11, b"six").unwrap();
        sync.run();
        assert_eq!(
            wal.sync_end(sync).unwrap(),
            5,
            "op 6 came after the sync began"
        );
    }

    #[test]
    #[should_panic(expected = "ended on the log that began it")]
    fn a_sync_is_ended_only_on_the_log_that_began_it() {
        let disk = SimStorage::new(SimConfig::new(15));
        let mut wal = formatted(&disk);
        wal.append(0, 1, 10, b"one").unwrap();
        let mut sync = wal.sync_begin().unwrap().unwrap();
        sync.run();
        wal.sync().unwrap();
        drop(wal);
        let mut reopened = reopened(&disk);
        let _ = reopened.sync_end(sync);
    }
}
