//! Formatting a data directory and opening (recovering) it.
//!
//! The decision table is in `docs/storage.md`; in short: the newest valid superblock copy is
//! the root of trust; the checkpoint it names must be intact; segments wholly covered by the
//! checkpoint are deleted unread; the rest must form one hash chain from the checkpoint; an
//! invalid record at the end of the last segment is a torn tail and is cut off; any other
//! invalid record stops the replica with an error naming file, offset and op — unless the
//! caller opted into repair mode ([`Wal::open_for_repair`]), which marks the replica
//! recovering (durably, first) and truncates the log before the damage, for the replication
//! layer to fetch the rest from its peers.

use std::collections::VecDeque;

use allocdb_core::Op;

use crate::checkpoint::{
    is_checkpoint_temp_file, parse_checkpoint_file_name, read_checkpoint_file,
};
use crate::checksum::Checksum;
use crate::config::{ReplicaIdentity, WalConfig};
use crate::error::WalError;
use crate::segment::{ScanContext, parse_segment_file_name, scan_segment, segment_file_name};
use crate::segment::{SegmentHead, head_past_damage, valid_record_after};
use crate::storage::Storage;
use crate::superblock::{SUPERBLOCK_FILE, Superblock};
use crate::wal::{IndexEntry, Recovery, Segment, Wal, remove_if_present, root_checkpoint};

const SUPERBLOCK_TEMP_FILE: &str = "superblock.tmp";

/// What opening does with damage that is not a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpenMode {
    /// Refuse to start, naming the damage (the default: a log alone cannot be repaired).
    FailClosed,
    /// Mark the replica recovering, then drop everything from the damage on.
    Repair,
}

/// A damaged record (or a segment that does not continue its predecessor) found in repair mode.
struct Damage {
    file: String,
    offset: u64,
    op: Op,
    reason: &'static str,
}

impl<S: Storage> Wal<S> {
    /// Formats an empty data directory: both superblock copies (view 0, no checkpoint) and
    /// an empty first segment. Leftovers of an earlier, interrupted format are removed.
    ///
    /// # Errors
    /// `AlreadyFormatted` if a superblock exists, `InvalidConfig`, or a storage error.
    pub fn format(
        mut storage: S,
        config: WalConfig,
        identity: ReplicaIdentity,
    ) -> Result<Wal<S>, WalError> {
        config.validate()?;
        if identity.replica_count == 0 || identity.replica_index >= identity.replica_count {
            return Err(WalError::InvalidConfig(
                "replica_index must be below replica_count",
            ));
        }
        // Before looking at anything: a second user of a live directory is refused at once.
        let lock = storage.lock_exclusive()?;
        let names = storage.list()?;
        if names.iter().any(|name| name == SUPERBLOCK_FILE) {
            return Err(WalError::AlreadyFormatted);
        }
        for name in &names {
            let ours = name == SUPERBLOCK_TEMP_FILE
                || is_checkpoint_temp_file(name)
                || parse_segment_file_name(name).is_some()
                || parse_checkpoint_file_name(name).is_some();
            if ours {
                storage.remove(name)?;
            }
        }
        let segment_name = segment_file_name(1);
        let segment_handle = storage.create(&segment_name)?;
        // The superblock appears under its final name only complete: it is the "formatted" bit.
        let handle = storage.create(SUPERBLOCK_TEMP_FILE)?;
        let mut superblock = Superblock {
            sequence: 1,
            cluster_id: config.cluster_id,
            replica_index: identity.replica_index,
            replica_count: identity.replica_count,
            view: 0,
            log_view: 0,
            commit_op: 0,
            checkpoint_op: 0,
            checkpoint_checksum: 0,
            recovering: false,
            fresh: false,
        };
        superblock.write(&mut storage, handle)?;
        superblock.sequence = 2;
        superblock.write(&mut storage, handle)?;
        storage.rename(SUPERBLOCK_TEMP_FILE, SUPERBLOCK_FILE)?;
        storage.sync_directory()?;
        let segments = VecDeque::from([Segment {
            name: segment_name,
            first_op: 1,
            handle: segment_handle,
            len: 0,
            dirty: false,
        }]);
        let wal = Wal {
            _lock: lock,
            storage,
            config,
            superblock,
            superblock_handle: handle,
            segments,
            index: VecDeque::new(),
            checkpoint: root_checkpoint(config.cluster_id),
            durable_op: 0,
            rewrites: 0,
            instance: crate::wal::next_instance(),
            checkpoint_writing: false,
            poisoned: false,
            recovery: Recovery {
                first_op: 1,
                ..Recovery::default()
            },
            buffer: Vec::new(),
        };
        assert_eq!(wal.last_op(), 0);
        Ok(wal)
    }

    /// Opens a formatted directory and recovers the log (see the module documentation).
    /// Damage other than a torn tail is refused (fail closed).
    ///
    /// # Errors
    /// `NotFormatted`, `ClusterMismatch`, `SuperblockCorrupt`, `CheckpointCorrupt`,
    /// `RecordCorrupt` (naming file, offset, op), `LogGap`, `InvalidConfig`, or a storage error.
    pub fn open(storage: S, config: WalConfig) -> Result<Wal<S>, WalError> {
        Wal::open_with(storage, config, OpenMode::FailClosed)
    }

    /// Opens like [`Wal::open`], but for a replica that can fetch what it lost from its peers
    /// (protocol-aware recovery). Where `open` would refuse a corrupt or out-of-sequence record
    /// (or a gap between segments, or an empty segment before the last), this first sets the
    /// superblock's `recovering` flag durably, then truncates the log just before the damaged
    /// op and deletes every later segment: nothing from the damage on is trusted. A missing or
    /// corrupt checkpoint file likewise sets the flag and restarts the log empty from op 0 (the
    /// replica needs a state transfer). [`Recovery`] reports what was dropped
    /// (`corrupt_truncated_from`, `corrupt_file`, `corrupt_offset`, `corrupt_checkpoint_op`).
    /// A torn tail is handled exactly as by `open` and does not set the flag.
    ///
    /// # Errors
    /// `NotFormatted`, `ClusterMismatch`, `SuperblockCorrupt`, `InvalidConfig` (including a
    /// segment longer than `segment_bytes_max`), or a storage error.
    pub fn open_for_repair(storage: S, config: WalConfig) -> Result<Wal<S>, WalError> {
        Wal::open_with(storage, config, OpenMode::Repair)
    }

    fn open_with(mut storage: S, config: WalConfig, mode: OpenMode) -> Result<Wal<S>, WalError> {
        config.validate()?;
        // Before reading anything: a second process on a live directory is refused at once,
        // and nothing it could have read half-written misleads it.
        let lock = storage.lock_exclusive()?;
        let names = storage.list()?;
        if !names.iter().any(|name| name == SUPERBLOCK_FILE) {
            return Err(WalError::NotFormatted);
        }
        let superblock_handle = storage.open(SUPERBLOCK_FILE)?;
        let superblock = Superblock::read_newest(&mut storage, superblock_handle)?;
        if superblock.cluster_id != config.cluster_id {
            return Err(WalError::ClusterMismatch {
                expected: config.cluster_id,
                found: superblock.cluster_id,
            });
        }
        let mut checkpoint_damage = None;
        let checkpoint = if superblock.checkpoint_op == 0 {
            root_checkpoint(config.cluster_id)
        } else {
            let op = superblock.checkpoint_op;
            let read = read_checkpoint_file(
                &mut storage,
                config.cluster_id,
                op,
                superblock.checkpoint_checksum,
            );
            match read {
                Ok(checkpoint) => checkpoint.info,
                Err(WalError::CheckpointCorrupt { file, reason }) if mode == OpenMode::Repair => {
                    checkpoint_damage = Some((op, file, reason));
                    root_checkpoint(config.cluster_id)
                }
                Err(error) => return Err(error),
            }
        };
        let mut wal = Wal {
            _lock: lock,
            storage,
            config,
            superblock,
            superblock_handle,
            segments: VecDeque::new(),
            index: VecDeque::new(),
            checkpoint,
            durable_op: 0,
            rewrites: 0,
            instance: crate::wal::next_instance(),
            checkpoint_writing: false,
            poisoned: false,
            recovery: Recovery::default(),
            buffer: Vec::new(),
        };
        if let Some((op, file, reason)) = checkpoint_damage {
            // Recovering first: from here on this replica's state is gone until a peer's
            // checkpoint is installed, and a crash must not make it look clean.
            wal.set_recovering(true)?;
            wal.recovery.corrupt_checkpoint_op = Some(op);
            wal.recovery.corrupt_file = Some(file);
            wal.recovery.corrupt_reason = Some(reason);
        }
        wal.remove_leftovers(&names)?;
        wal.load_segments(&names, mode)?;
        if !wal.recovery.lost_durable_data() {
            wal.recovery.head_before_damage = None;
        }
        if !wal.log_chains_from_checkpoint() {
            wal.recovery.stale_ops_dropped = wal.last_op().saturating_sub(wal.checkpoint.op);
            wal.reset_log()?;
        }
        wal.storage.sync_directory()?;
        wal.durable_op = wal.last_op();
        wal.recovery.checkpoint_op = wal.checkpoint.op;
        wal.recovery.first_op = wal.first_op();
        wal.recovery.last_op = wal.last_op();
        assert!(wal.first_op() <= wal.checkpoint.op + 1);
        assert!(wal.last_op() >= wal.checkpoint.op);
        Ok(wal)
    }

    /// Deletes files an interrupted checkpoint or format left behind.
    fn remove_leftovers(&mut self, names: &[String]) -> Result<(), WalError> {
        for name in names {
            let stale_checkpoint =
                parse_checkpoint_file_name(name).is_some_and(|op| op != self.checkpoint.op);
            if stale_checkpoint || is_checkpoint_temp_file(name) || name == SUPERBLOCK_TEMP_FILE {
                remove_if_present(&mut self.storage, name)?;
            }
        }
        Ok(())
    }

    /// Opens and scans the segments after the checkpoint, building the index; cuts a torn tail.
    fn load_segments(&mut self, names: &[String], mode: OpenMode) -> Result<(), WalError> {
        let mut segment_names: Vec<(Op, &String)> = names
            .iter()
            .filter_map(|name| parse_segment_file_name(name).map(|op| (op, name)))
            .collect();
        segment_names.sort_unstable();
        // A segment is wholly covered when the next one starts at or before checkpoint + 1.
        let covered = segment_names
            .windows(2)
            .take_while(|pair| pair[1].0 <= self.checkpoint.op + 1)
            .count();
        for (_, name) in &segment_names[..covered] {
            self.storage.remove(name)?;
        }
        let retained = &segment_names[covered..];
        if mode == OpenMode::Repair {
            self.recovery.head_before_damage = self.head_of_segments(retained)?;
        }
        let mut parent: Option<(Op, Checksum)> = None;
        for (position, &(first_op, name)) in retained.iter().enumerate() {
            if let Some((last_op, _)) = parent {
                if first_op != last_op + 1 {
                    if mode == OpenMode::Repair {
                        let damage = Damage {
                            file: name.clone(),
                            offset: 0,
                            op: last_op + 1,
                            reason: "segment does not continue the previous one",
                        };
                        return self.drop_damaged_suffix(damage, &retained[position..]);
                    }
                    return Err(WalError::LogGap {
                        file: name.clone(),
                        expected_op: last_op + 1,
                        found_op: first_op,
                    });
                }
            }
            let is_last = position + 1 == retained.len();
            let segment_end = self.load_segment(
                name,
                first_op,
                parent.map(|(_, checksum)| checksum),
                is_last,
                mode,
            )?;
            if self.recovery.corrupt_truncated_from.is_some() {
                // The segment was cut before its damage: nothing after it can be trusted.
                return self.remove_segments(&retained[position + 1..]);
            }
            match segment_end {
                Some(end) => parent = Some(end),
                None if is_last => {}
                None if mode == OpenMode::Repair => {
                    let damage = Damage {
                        file: name.clone(),
                        offset: 0,
                        op: first_op,
                        reason: "empty segment before the last one",
                    };
                    self.record_damage(damage)?;
                    return self.remove_segments(&retained[position + 1..]);
                }
                None => {
                    return Err(WalError::RecordCorrupt {
                        file: name.clone(),
                        offset: 0,
                        op: first_op,
                        reason: "empty segment before the last one",
                    });
                }
            }
        }
        Ok(())
    }

    /// The head of the log the retained segments hold, read past damaged bodies (before any
    /// damage is cut away): the last segment with a complete record decides.
    fn head_of_segments(
        &mut self,
        segments: &[(Op, &String)],
    ) -> Result<Option<(Op, Checksum)>, WalError> {
        for &(_, name) in segments.iter().rev() {
            let handle = self.storage.open(name)?;
            let len = self.storage.len(handle)?;
            if len > self.config.segment_bytes_max {
                return Ok(None);
            }
            let mut bytes = std::mem::take(&mut self.buffer);
            bytes.clear();
            bytes.resize(usize::try_from(len).expect("segment fits in memory"), 0);
            self.storage.read_at(handle, 0, &mut bytes)?;
            let head = head_past_damage(&bytes, self.config.cluster_id, self.config.body_bytes_max);
            self.buffer = bytes;
            match head {
                SegmentHead::Empty => {}
                SegmentHead::Head(op, checksum) => return Ok(Some((op, checksum))),
                SegmentHead::Unknown => return Ok(None),
            }
        }
        Ok(Some((self.checkpoint.op, self.checkpoint.record_checksum)))
    }

    /// Repair mode: marks the replica recovering (durably, before anything is dropped) and
    /// reports the damage.
    fn record_damage(&mut self, damage: Damage) -> Result<(), WalError> {
        self.set_recovering(true)?;
        assert!(self.superblock.recovering);
        self.recovery.corrupt_truncated_from = Some(damage.op);
        self.recovery.corrupt_file = Some(damage.file);
        self.recovery.corrupt_offset = damage.offset;
        self.recovery.corrupt_reason = Some(damage.reason);
        Ok(())
    }

    /// Repair mode: `segments` (the first one included) do not continue the log: drop them.
    fn drop_damaged_suffix(
        &mut self,
        damage: Damage,
        segments: &[(Op, &String)],
    ) -> Result<(), WalError> {
        assert!(!segments.is_empty());
        self.record_damage(damage)?;
        self.remove_segments(segments)
    }

    /// Deletes segment files (durably) that lie after a repaired damage.
    fn remove_segments(&mut self, segments: &[(Op, &String)]) -> Result<(), WalError> {
        assert!(self.superblock.recovering || segments.is_empty());
        for (_, name) in segments {
            self.storage.remove(name)?;
        }
        if !segments.is_empty() {
            self.storage.sync_directory()?;
        }
        if self.segments.is_empty() {
            // Every segment went: continue with an empty one right after the checkpoint.
            let name = segment_file_name(self.checkpoint.op + 1);
            let handle = self.storage.create(&name)?;
            self.storage.sync_directory()?;
            self.segments.push_back(crate::wal::Segment {
                name,
                first_op: self.checkpoint.op + 1,
                handle,
                len: 0,
                dirty: false,
            });
        }
        Ok(())
    }

    /// Scans one segment; returns its last record's (op, checksum), `None` if it is empty.
    fn load_segment(
        &mut self,
        name: &str,
        first_op: Op,
        parent: Option<Checksum>,
        is_last: bool,
        mode: OpenMode,
    ) -> Result<Option<(Op, Checksum)>, WalError> {
        let handle = self.storage.open(name)?;
        let len = self.storage.len(handle)?;
        // The writer never lets a segment grow past the limit, so a longer file is damage (or a
        // config that shrank the limit): refuse it before sizing a buffer from its length.
        if len > self.config.segment_bytes_max {
            return Err(WalError::RecordCorrupt {
                file: name.to_string(),
                offset: self.config.segment_bytes_max,
                op: first_op,
                reason: "segment is longer than segment_bytes_max",
            });
        }
        let mut bytes = std::mem::take(&mut self.buffer);
        bytes.clear();
        bytes.resize(usize::try_from(len).expect("segment fits in memory"), 0);
        self.storage.read_at(handle, 0, &mut bytes)?;
        let context = ScanContext {
            cluster_id: self.config.cluster_id,
            body_bytes_max: self.config.body_bytes_max,
            first_op,
            parent,
        };
        let scan = scan_segment(&bytes, context);
        let mut segment_len = len;
        if let Some(failure) = scan.failure {
            let torn = is_last
                && !failure.out_of_sequence
                && !valid_record_after(
                    &bytes,
                    failure.offset,
                    context.cluster_id,
                    context.body_bytes_max,
                );
            if !torn && mode == OpenMode::FailClosed {
                return Err(WalError::RecordCorrupt {
                    file: name.to_owned(),
                    offset: failure.offset,
                    op: failure.op,
                    reason: failure.reason,
                });
            }
            if torn {
                self.recovery.torn_bytes_truncated = len - failure.offset;
                self.recovery.torn_file = Some(name.to_owned());
            } else {
                self.record_damage(Damage {
                    file: name.to_owned(),
                    offset: failure.offset,
                    op: failure.op,
                    reason: failure.reason,
                })?;
            }
            self.storage.truncate(handle, failure.offset)?;
            segment_len = failure.offset;
        }
        if is_last || self.recovery.corrupt_truncated_from.is_some() {
            // Whatever a killed process left in the page cache becomes durable before we
            // report it as such.
            self.storage.sync(handle)?;
        }
        self.buffer = bytes;
        if self.index.len() as u64 + scan.records.len() as u64 > self.config.log_ops_max {
            return Err(WalError::InvalidConfig(
                "the log holds more ops than log_ops_max",
            ));
        }
        for &(header, offset) in &scan.records {
            let segment_first_op = first_op;
            self.index.push_back(IndexEntry {
                header,
                segment_first_op,
                offset,
            });
        }
        self.segments.push_back(crate::wal::Segment {
            name: name.to_owned(),
            first_op,
            handle,
            len: segment_len,
            dirty: false,
        });
        Ok(scan
            .records
            .last()
            .map(|(header, _)| (header.op, header.checksum)))
    }

    /// True when the retained log continues the checkpoint's history.
    fn log_chains_from_checkpoint(&self) -> bool {
        let anchor = &self.checkpoint;
        let Some(front) = self.index.front() else {
            // Empty log: fine if its one segment starts right after the checkpoint.
            return self.segments.len() == 1 && self.segments[0].first_op == anchor.op + 1;
        };
        if front.header.op == anchor.op + 1 {
            return front.header.parent == anchor.record_checksum;
        }
        front.header.op <= anchor.op
            && self
                .header(anchor.op)
                .is_some_and(|header| header.checksum == anchor.record_checksum)
    }
}
