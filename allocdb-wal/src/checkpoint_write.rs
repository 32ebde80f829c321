//! A checkpoint written without stopping: the snapshot's file is written and synced by
//! someone else (another thread) while the log's owner goes on, and the owner makes it current
//! when it is back.
//!
//! [`Wal::checkpoint_begin`] takes the snapshot and hands out a [`CheckpointWrite`] holding a
//! detached [`FileWriter`]; whoever runs it calls [`CheckpointWrite::run`], which writes and
//! syncs `checkpoint-<op>.tmp`; [`Wal::checkpoint_end`] then renames the file, syncs the
//! directory, points the superblock at it and takes the segments it covers out of the log.
//! Until that end the previous checkpoint and every segment stay as they were, so a crash at
//! any point recovers from the previous checkpoint (and removes the temporary file). A state
//! transfer or a truncation meanwhile makes the write outdated: its end removes the file and
//! changes nothing else.
//!
//! Removing the files it made obsolete (the covered segments, tens of megabytes each: freeing
//! their blocks took the test machine's file system 300 ms; and the previous checkpoint) is
//! the checkpoint's second part: `checkpoint_end` hands it back as another
//! [`CheckpointWrite`], run and ended the same way. A crash before it is done leaves files
//! recovery removes anyway. Its failure still halts the replica: a disk that cannot unlink
//! is failing, and the replica would rather stop than guess what else it lost.

use crate::checkpoint::{
    CHECKPOINT_HEADER_SIZE, CheckpointInfo, checkpoint_file_name, checkpoint_temp_file_name,
    encode_header,
};
use crate::checksum::checksum128;
use crate::error::WalError;
use crate::storage::{FileWriter, Storage, StorageError};
use crate::wal::{Wal, remove_if_present};
use allocdb_core::Op;

/// A part of a checkpoint for someone else to run: writing its file (from
/// [`Wal::checkpoint_begin`]), then removing the segments it covers (from
/// [`Wal::checkpoint_end`]); each is finished by [`Wal::checkpoint_end`].
#[must_use = "a begun checkpoint counts only once it is run and ended"]
pub struct CheckpointWrite<W> {
    info: CheckpointInfo,
    work: Work,
    rewrites: u64,
    instance: u64,
    writer: W,
    ran: Option<Result<(), StorageError>>,
}

enum Work {
    /// Hash `snapshot`, write it with its header to `temp` and sync it.
    File {
        cluster_id: u128,
        snapshot: Vec<u8>,
        temp: String,
    },
    /// Remove the files the (now current) checkpoint made obsolete: the segments it covers
    /// and the previous checkpoint.
    Reclaim { files: Vec<String> },
}

impl<W: FileWriter> CheckpointWrite<W> {
    /// The op whose state the snapshot holds (for either part: the checkpoint's).
    pub fn op(&self) -> Op {
        self.info.op
    }

    /// The snapshot's length in bytes (for either part: the checkpoint's).
    pub fn snapshot_len(&self) -> u64 {
        self.info.snapshot_len
    }

    /// Whether this is the second part, removing obsolete files (the checkpoint is current).
    pub fn is_reclaim(&self) -> bool {
        matches!(self.work, Work::Reclaim { .. })
    }

    /// Does this part's disk work (blocking, on any thread); the outcome is kept for
    /// `checkpoint_end`. Hashing the snapshot happens here too: megabytes, off the owner.
    pub fn run(&mut self) {
        assert!(self.ran.is_none(), "a checkpoint part runs once");
        let outcome = match &mut self.work {
            Work::File {
                cluster_id,
                snapshot,
                temp,
            } => {
                assert_eq!(snapshot.len() as u64, self.info.snapshot_len);
                self.info.snapshot_checksum = checksum128(snapshot);
                let header = encode_header(*cluster_id, &self.info, snapshot);
                assert_eq!(header.len(), CHECKPOINT_HEADER_SIZE as usize);
                let outcome = self.writer.write_new(temp, &[&header, snapshot]);
                // The bytes are on the disk (or never will be): free them before the hand-back.
                *snapshot = Vec::new();
                outcome
            }
            Work::Reclaim { files } => self.writer.remove_files(files),
        };
        self.ran = Some(outcome);
    }

    /// Whether [`CheckpointWrite::run`] was called.
    pub fn has_run(&self) -> bool {
        self.ran.is_some()
    }
}

impl<S: Storage> Wal<S> {
    /// Starts a checkpoint of `snapshot`, the state after `op` (`checkpoint_op() < op <=
    /// durable_op()`), to be written elsewhere ([`CheckpointWrite::run`]) while this log goes
    /// on. One at a time: no other checkpoint is taken until it is ended.
    ///
    /// # Errors
    /// `InvalidArgument` for an `op` outside those bounds, `Poisoned`, or a storage error
    /// (poisons).
    ///
    /// # Panics
    /// If a write is out already.
    pub fn checkpoint_begin(
        &mut self,
        op: Op,
        snapshot: Vec<u8>,
    ) -> Result<CheckpointWrite<S::Writer>, WalError> {
        assert!(!self.checkpoint_writing, "one checkpoint write at a time");
        self.check_usable()?;
        if op <= self.checkpoint.op || op > self.durable_op {
            return Err(WalError::InvalidArgument(
                "checkpoint op must be above the current checkpoint and durable",
            ));
        }
        let header = self.entry(op).header;
        let info = CheckpointInfo {
            op,
            view: header.view,
            slot: header.slot,
            record_checksum: header.checksum,
            // Filled in by `run`, before anything reads it.
            snapshot_checksum: 0,
            snapshot_len: snapshot.len() as u64,
        };
        let temp = checkpoint_temp_file_name(op);
        // Left by a write that died with an earlier process, or was abandoned.
        let result = remove_if_present(&mut self.storage, &temp);
        self.poison_on_error(result)?;
        self.checkpoint_writing = true;
        Ok(CheckpointWrite {
            work: Work::File {
                cluster_id: self.config.cluster_id,
                snapshot,
                temp,
            },
            info,
            rewrites: self.rewrites,
            instance: self.instance,
            writer: self.storage.writer(),
            ran: None,
        })
    }

    /// Whether a [`CheckpointWrite`] is out (begun, and its last part not ended).
    pub fn checkpoint_writing(&self) -> bool {
        self.checkpoint_writing
    }

    /// Finishes a part of a checkpoint, run since. For the file: makes it the current
    /// checkpoint, takes the segments it covers out of the log, and returns the second part
    /// that removes them (`None` when it covers none). When ops were taken off the log
    /// meanwhile (a state transfer, a truncation) the file is removed instead and nothing else
    /// changes (`checkpoint_op()` tells). For the removal: `None`, and the checkpoint is done.
    ///
    /// # Errors
    /// `Poisoned`; the part's own storage error or one of the end's (poisons).
    ///
    /// # Panics
    /// If the part was not run, or another log (another opening) began it.
    pub fn checkpoint_end(
        &mut self,
        write: CheckpointWrite<S::Writer>,
    ) -> Result<Option<CheckpointWrite<S::Writer>>, WalError> {
        assert_eq!(
            write.instance, self.instance,
            "a checkpoint write is ended on the log that began it"
        );
        assert!(self.checkpoint_writing, "the write ended is the one out");
        self.checkpoint_writing = false;
        self.check_usable()?;
        let outcome = write
            .ran
            .expect("a checkpoint write is run before it is ended");
        self.poison_on_error(outcome.map_err(WalError::from))?;
        let info = write.info;
        let Work::File { temp, .. } = write.work else {
            assert!(
                info.op <= self.checkpoint.op,
                "its checkpoint was made current"
            );
            return Ok(None);
        };
        if write.rewrites != self.rewrites || info.op <= self.checkpoint.op {
            let result = remove_if_present(&mut self.storage, &temp);
            self.poison_on_error(result)?;
            return Ok(None);
        }
        // Nothing was taken off the log since the begin: op is still durable, same record.
        assert!(
            info.op <= self.durable_op,
            "a checkpoint's op stays durable"
        );
        assert_eq!(
            self.entry(info.op).header.checksum,
            info.record_checksum,
            "the checkpointed record is unchanged"
        );
        // The new name is durable before the superblock names it.
        let result = self
            .storage
            .rename(&temp, &checkpoint_file_name(info.op))
            .and_then(|()| self.storage.sync_directory())
            .map_err(WalError::from)
            .and_then(|()| self.adopt_checkpoint_file(&info));
        let previous = self.poison_on_error(result)?;
        assert_eq!(self.checkpoint.op, info.op);
        let mut files = self.detach_covered_segments();
        assert!(self.first_op() <= info.op + 1);
        files.extend(previous);
        if files.is_empty() {
            return Ok(None);
        }
        self.checkpoint_writing = true;
        Ok(Some(CheckpointWrite {
            info,
            work: Work::Reclaim { files },
            // Not read for a removal: nothing it does depends on the log's ops.
            rewrites: self.rewrites,
            instance: self.instance,
            writer: self.storage.writer(),
            ran: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::checkpoint::checkpoint_temp_file_name;
    use crate::{
        ReplicaIdentity, SimConfig, SimStorage, StorageErrorKind, Wal, WalConfig, WalError,
    };

    /// A log of 4 KiB segments whose ops 1..=`ops` (1,000 bytes each) are durable.
    fn durable_log(disk: &SimStorage, ops: u64) -> Wal<SimStorage> {
        let identity = ReplicaIdentity {
            replica_index: 0,
            replica_count: 1,
        };
        let mut config = WalConfig::new(7);
        config.segment_bytes_max = 4096;
        config.body_bytes_max = 2048;
        let mut wal = Wal::format(disk.clone(), config, identity).unwrap();
        for op in 1..=ops {
            wal.append(0, op, 10, &[7; 1000]).unwrap();
        }
        wal.sync().unwrap();
        wal
    }

    fn reopened(disk: &SimStorage) -> Wal<SimStorage> {
        let mut config = WalConfig::new(7);
        config.segment_bytes_max = 4096;
        config.body_bytes_max = 2048;
        Wal::open(disk.clone(), config).unwrap()
    }

    #[test]
    fn the_log_goes_on_while_the_file_is_written_and_the_end_makes_it_current() {
        let disk = SimStorage::new(SimConfig::new(21));
        let mut wal = durable_log(&disk, 8);
        let mut write = wal.checkpoint_begin(6, b"state after 6".to_vec()).unwrap();
        assert_eq!(write.op(), 6);
        wal.append(0, 9, 11, &[8; 1000]).unwrap();
        wal.sync().unwrap();
        let segments_before = wal.segments.len();
        let first_segment = wal.segments[0].name.clone();
        assert!(segments_before >= 3);
        write.run();
        assert_eq!(wal.checkpoint_op(), 0, "current only once ended");
        assert_eq!(wal.first_op(), 1, "nothing dropped yet");
        let mut reclaim = wal
            .checkpoint_end(write)
            .unwrap()
            .expect("covered segments to remove");
        assert!(reclaim.is_reclaim());
        assert_eq!(wal.checkpoint_op(), 6);
        assert!(wal.first_op() <= 7, "ops after the checkpoint stay");
        assert!(
            wal.segments.len() < segments_before,
            "covered segments left the log"
        );
        assert!(
            wal.checkpoint_writing(),
            "one checkpoint until its files are gone"
        );
        assert!(
            disk.file_len(&first_segment).is_some(),
            "removed by the second part"
        );
        assert!(disk.file_len(&checkpoint_temp_file_name(6)).is_none());
        wal.append(0, 10, 11, &[9; 1000]).unwrap();
        reclaim.run();
        assert!(disk.file_len(&first_segment).is_none());
        assert!(wal.checkpoint_end(reclaim).unwrap().is_none());
        assert!(!wal.checkpoint_writing());
        wal.sync().unwrap();
        drop(wal);
        let mut wal = reopened(&disk);
        assert_eq!((wal.checkpoint_op(), wal.last_op()), (6, 10));
        let checkpoint = wal.read_checkpoint().unwrap().unwrap();
        assert_eq!(checkpoint.snapshot, b"state after 6");
    }

    #[test]
    fn a_crash_before_the_covered_segments_are_removed_leaves_them_to_recovery() {
        for seed in 0..16 {
            let disk = SimStorage::new(SimConfig::new(200 + seed));
            let mut wal = durable_log(&disk, 8);
            let first_segment = wal.segments[0].name.clone();
            let mut write = wal.checkpoint_begin(7, b"state after 7".to_vec()).unwrap();
            write.run();
            let reclaim = wal
                .checkpoint_end(write)
                .unwrap()
                .expect("segments to remove");
            disk.crash();
            drop(reclaim);
            drop(wal);
            let mut wal = reopened(&disk);
            assert_eq!((wal.checkpoint_op(), wal.last_op()), (7, 8), "seed {seed}");
            assert!(disk.file_len(&first_segment).is_none(), "seed {seed}");
            assert_eq!(
                wal.read_checkpoint().unwrap().unwrap().snapshot,
                b"state after 7"
            );
        }
    }

    #[test]
    fn a_crash_before_the_end_recovers_from_the_previous_checkpoint() {
        for seed in 0..32 {
            let disk = SimStorage::new(SimConfig::new(100 + seed));
            let mut wal = durable_log(&disk, 8);
            wal.checkpoint(3, b"state after 3").unwrap();
            let mut write = wal.checkpoint_begin(7, b"state after 7".to_vec()).unwrap();
            if seed % 2 == 0 {
                write.run();
            }
            disk.crash();
            drop(write);
            drop(wal);
            let mut wal = reopened(&disk);
            assert_eq!(wal.checkpoint_op(), 3, "seed {seed}");
            assert_eq!(wal.last_op(), 8, "seed {seed}: durable ops survive");
            let snapshot = wal.read_checkpoint().unwrap().unwrap().snapshot;
            assert_eq!(snapshot, b"state after 3", "seed {seed}");
            assert!(
                disk.file_len(&checkpoint_temp_file_name(7)).is_none(),
                "seed {seed}: recovery removes the half-made file"
            );
        }
    }

    #[test]
    fn a_write_run_after_a_crash_fails_and_leaves_no_file() {
        let disk = SimStorage::new(SimConfig::new(22));
        let mut wal = durable_log(&disk, 4);
        let mut write = wal.checkpoint_begin(4, b"state".to_vec()).unwrap();
        disk.crash();
        write.run();
        assert!(disk.file_len(&checkpoint_temp_file_name(4)).is_none());
        match write.ran {
            Some(Err(error)) => assert_eq!(error.kind, StorageErrorKind::BadHandle),
            _ => panic!("the writer of a crashed process must fail"),
        }
    }

    #[test]
    fn a_failed_write_poisons_the_log() {
        let disk = SimStorage::new(SimConfig::new(23));
        let mut wal = durable_log(&disk, 4);
        let mut write = wal.checkpoint_begin(4, b"state".to_vec()).unwrap();
        disk.fail_mutations_after(Some(0));
        write.run();
        disk.fail_mutations_after(None);
        match wal.checkpoint_end(write) {
            Err(WalError::Storage(error)) => assert_eq!(error.kind, StorageErrorKind::Injected),
            Err(other) => panic!("expected the write's storage error, got {other:?}"),
            Ok(_) => panic!("a failed write must not end well"),
        }
        assert!(matches!(
            wal.append(0, 5, 10, b"five"),
            Err(WalError::Poisoned)
        ));
    }

    #[test]
    fn a_state_transfer_meanwhile_makes_the_write_a_no_op() {
        let disk = SimStorage::new(SimConfig::new(24));
        let mut wal = durable_log(&disk, 4);
        let mut write = wal.checkpoint_begin(4, b"ours".to_vec()).unwrap();
        let peer_disk = SimStorage::new(SimConfig::new(25));
        let mut peer = durable_log(&peer_disk, 10);
        let info = peer.checkpoint(10, b"theirs").unwrap();
        wal.install_checkpoint(&info, b"theirs").unwrap();
        write.run();
        assert!(wal.checkpoint_end(write).unwrap().is_none());
        assert_eq!(wal.checkpoint_op(), 10);
        assert!(disk.file_len(&checkpoint_temp_file_name(4)).is_none());
        assert_eq!(wal.read_checkpoint().unwrap().unwrap().snapshot, b"theirs");
        drop(wal);
        assert_eq!(reopened(&disk).checkpoint_op(), 10);
    }

    #[test]
    fn a_truncation_meanwhile_makes_the_write_a_no_op() {
        let disk = SimStorage::new(SimConfig::new(26));
        let mut wal = durable_log(&disk, 6);
        let mut write = wal.checkpoint_begin(3, b"state after 3".to_vec()).unwrap();
        wal.truncate_after(5).unwrap();
        write.run();
        assert!(wal.checkpoint_end(write).unwrap().is_none());
        assert_eq!(wal.checkpoint_op(), 0);
        // Not lost for good: the next attempt takes it.
        wal.checkpoint(3, b"state after 3").unwrap();
        assert_eq!(wal.checkpoint_op(), 3);
    }

    #[test]
    #[should_panic(expected = "one checkpoint write at a time")]
    fn one_write_at_a_time() {
        let disk = SimStorage::new(SimConfig::new(27));
        let mut wal = durable_log(&disk, 4);
        let _first = wal.checkpoint_begin(3, b"three".to_vec()).unwrap();
        let _ = wal.checkpoint(4, b"four");
    }

    #[test]
    #[should_panic(expected = "ended on the log that began it")]
    fn a_write_is_ended_only_on_the_log_that_began_it() {
        let disk = SimStorage::new(SimConfig::new(28));
        let mut wal = durable_log(&disk, 4);
        let mut write = wal.checkpoint_begin(4, b"state".to_vec()).unwrap();
        write.run();
        drop(wal);
        let _ = reopened(&disk).checkpoint_end(write);
    }
}
