//! [`Wal`]: the log of one replica — append, group commit, read, truncate, superblock and
//! checkpoints. Opening (recovery) lives in `recovery.rs`.

use std::collections::VecDeque;

use allocdb_core::{Op, Slot};

use crate::checkpoint::{
    Checkpoint, CheckpointInfo, checkpoint_file_name, read_checkpoint_file, write_checkpoint_file,
};
use crate::checksum::{Checksum, checksum128, root_checksum};
use crate::config::WalConfig;
use crate::error::WalError;
use crate::record::{RECORD_HEADER_SIZE, RecordHeader, View};
use crate::segment::segment_file_name;
use crate::storage::{Handle, Storage, StorageErrorKind};
use crate::superblock::Superblock;

/// The replication protocol's durable state, written to the superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VsrState {
    /// The highest view entered or voted for.
    pub view: View,
    /// The view of the last log this replica adopted.
    pub log_view: View,
    /// The highest op known committed.
    pub commit_op: Op,
}

/// What opening the log found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The checkpoint the state restarts from (0: none).
    pub checkpoint_op: Op,
    /// The oldest op still in the log.
    pub first_op: Op,
    /// The newest op in the log.
    pub last_op: Op,
    /// Bytes of an incomplete last record cut off.
    pub torn_bytes_truncated: u64,
    /// The segment that had the torn tail.
    pub torn_file: Option<String>,
    /// Ops after the checkpoint that did not chain from it (a state transfer interrupted by a
    /// crash) and were discarded.
    pub stale_ops_dropped: u64,
    /// [`Wal::open_for_repair`] only: the first op discarded because a complete record at or
    /// before it was corrupt (or out of sequence); every op from it on was dropped.
    pub corrupt_truncated_from: Option<Op>,
    /// The segment holding the corrupt record (or the corrupt checkpoint file).
    pub corrupt_file: Option<String>,
    /// Byte offset of the corrupt record in `corrupt_file`.
    pub corrupt_offset: u64,
    /// What was wrong with it.
    pub corrupt_reason: Option<&'static str>,
    /// [`Wal::open_for_repair`] only: the op of a checkpoint whose file was missing or corrupt;
    /// the log restarted empty from op 0 and needs a state transfer.
    pub corrupt_checkpoint_op: Option<Op>,
    /// [`Wal::open_for_repair`] only, when it cut damage away: the last op the log held
    /// before the cut and its chain checksum, read from the record headers that survived
    /// past the damage (`None` when a damaged header hid how much the log held). A damaged
    /// replica reports it in a view change: the log it once held — everything it could have
    /// acknowledged — is exactly the chain ending at this head.
    pub head_before_damage: Option<(Op, Checksum)>,
}

impl Recovery {
    /// True when repair mode discarded data that may have been durable and acknowledged
    /// (a corrupt record or checkpoint), as opposed to an ordinary torn tail.
    pub fn lost_durable_data(&self) -> bool {
        self.corrupt_truncated_from.is_some() || self.corrupt_checkpoint_op.is_some()
    }
}

pub(crate) struct Segment {
    pub(crate) name: String,
    pub(crate) first_op: Op,
    pub(crate) handle: Handle,
    pub(crate) len: u64,
    pub(crate) dirty: bool,
}

#[derive(Clone, Copy)]
pub(crate) struct IndexEntry {
    pub(crate) header: RecordHeader,
    pub(crate) segment_first_op: Op,
    pub(crate) offset: u64,
}

/// The durable log of one replica over a [`Storage`].
///
/// Every record appended is held in an in-memory index of headers (bounded by
/// `log_ops_max`), so reads by op cost one positioned read and headers cost none.
/// After a storage error from a mutating call the log is *poisoned*: what reached the disk
/// is unknown, so every later call fails with [`WalError::Poisoned`] until it is reopened.
///
/// ```
/// use allocdb_wal::{ReplicaIdentity, SimConfig, SimStorage, Wal, WalConfig};
/// let disk = SimStorage::new(SimConfig::new(1));
/// let identity = ReplicaIdentity { replica_index: 0, replica_count: 1 };
/// let mut wal = Wal::format(disk.clone(), WalConfig::new(7), identity).unwrap();
/// wal.append(0, 1, 100, b"batch one").unwrap();
/// wal.append(0, 2, 101, b"batch two").unwrap();
/// assert_eq!(wal.sync().unwrap(), 2); // one sync, both durable
/// disk.crash();
/// let mut wal = Wal::open(disk, WalConfig::new(7)).unwrap();
/// let mut body = Vec::new();
/// assert_eq!(wal.read(2, &mut body).unwrap().slot, 101);
/// assert_eq!(body, b"batch two");
/// ```
pub struct Wal<S: Storage> {
    /// The storage's exclusive lock, held for the life of the log (dropped with it).
    pub(crate) _lock: crate::storage::StorageLock,
    pub(crate) storage: S,
    pub(crate) config: WalConfig,
    pub(crate) superblock: Superblock,
    pub(crate) superblock_handle: Handle,
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) index: VecDeque<IndexEntry>,
    pub(crate) checkpoint: CheckpointInfo,
    pub(crate) durable_op: Op,
    /// How many times ops were taken off the log (truncation, a new log after a state
    /// transfer): a [`crate::TailSync`] begun before one of them proves nothing about the
    /// ops appended since under the same numbers.
    pub(crate) rewrites: u64,
    /// Which opening of a log this is (unique in the process): a [`crate::TailSync`] is
    /// ended only on the log that began it.
    pub(crate) instance: u64,
    /// A [`crate::CheckpointWrite`] is out (one at a time; no other checkpoint meanwhile).
    pub(crate) checkpoint_writing: bool,
    pub(crate) poisoned: bool,
    pub(crate) recovery: Recovery,
    pub(crate) buffer: Vec<u8>,
}

/// A number no other log opened by this process has.
pub(crate) fn next_instance() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The anchor of an empty history: "op 0" of the cluster.
pub(crate) fn root_checkpoint(cluster_id: u128) -> CheckpointInfo {
    CheckpointInfo {
        op: 0,
        view: 0,
        slot: 0,
        record_checksum: root_checksum(cluster_id),
        snapshot_checksum: 0,
        snapshot_len: 0,
    }
}

impl<S: Storage> Wal<S> {
    /// The configuration.
    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    /// What opening found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The storage (for inspection in tests and the simulator).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The newest op in the log (the checkpoint op when the log holds nothing after it).
    pub fn last_op(&self) -> Op {
        self.index
            .back()
            .map_or(self.checkpoint.op, |entry| entry.header.op)
    }

    /// The chain checksum of `last_op()`: the parent of the next append.
    pub fn last_checksum(&self) -> Checksum {
        self.index
            .back()
            .map_or(self.checkpoint.record_checksum, |entry| {
                entry.header.checksum
            })
    }

    /// The oldest op that can be read (`last_op() + 1` when the log holds no record).
    pub fn first_op(&self) -> Op {
        self.index
            .front()
            .map_or(self.last_op() + 1, |entry| entry.header.op)
    }

    /// Every op up to this one is durable.
    pub fn durable_op(&self) -> Op {
        self.durable_op
    }

    /// The op of the current checkpoint (0: none).
    pub fn checkpoint_op(&self) -> Op {
        self.checkpoint.op
    }

    /// The current checkpoint's header (op 0 and the root checksum when there is none).
    pub fn checkpoint_info(&self) -> &CheckpointInfo {
        &self.checkpoint
    }

    /// Reserves room for `ops` headers in the in-memory index (at most `log_ops_max`) and
    /// writes every reserved entry once, so the index neither reallocates nor brings new pages
    /// into resident memory while the log holds no more ops than that: a replica's memory is
    /// paid at start, not discovered minutes into a run (the long benchmark measures it flat).
    pub fn reserve_index(&mut self, ops: u64) {
        let wanted = usize::try_from(ops.min(self.config.log_ops_max)).unwrap_or(usize::MAX);
        let len = self.index.len();
        self.index.reserve(wanted.saturating_sub(len));
        let placeholder = IndexEntry {
            header: RecordHeader {
                cluster_id: 0,
                view: 0,
                op: 0,
                slot: 0,
                body_len: 0,
                body_crc32c: 0,
                parent: 0,
                checksum: 0,
            },
            segment_first_op: 0,
            offset: 0,
        };
        self.index.resize(self.index.capacity(), placeholder);
        self.index.truncate(len);
        debug_assert!(self.index.capacity() >= wanted);
    }

    /// The current superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.superblock
    }

    /// The header of `op`, from memory.
    pub fn header(&self, op: Op) -> Option<&RecordHeader> {
        let position = op.checked_sub(self.first_op())?;
        let entry = self.index.get(usize::try_from(position).ok()?)?;
        debug_assert_eq!(entry.header.op, op);
        Some(&entry.header)
    }

    /// Headers from `op` to `last_op()`, from memory.
    pub fn headers_from(&self, op: Op) -> impl Iterator<Item = &RecordHeader> {
        let skip = op.saturating_sub(self.first_op());
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.index.iter().skip(skip).map(|entry| &entry.header)
    }

    pub(crate) fn check_usable(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    pub(crate) fn poison_on_error<T>(
        &mut self,
        result: Result<T, WalError>,
    ) -> Result<T, WalError> {
        if matches!(result, Err(WalError::Storage(_))) {
            self.poisoned = true;
        }
        result
    }

    /// Appends record `op` (which must be `last_op() + 1`), chained to `last_checksum()`.
    /// Not durable until [`Wal::sync`].
    ///
    /// # Errors
    /// `OpOutOfOrder`, `BodyTooLarge`, `LogFull`, `Poisoned`, or a storage error (poisons).
    pub fn append(
        &mut self,
        view: View,
        op: Op,
        slot: Slot,
        body: &[u8],
    ) -> Result<RecordHeader, WalError> {
        self.check_usable()?;
        if op != self.last_op() + 1 {
            return Err(WalError::OpOutOfOrder {
                expected: self.last_op() + 1,
                found: op,
            });
        }
        if body.len() as u64 > u64::from(self.config.body_bytes_max) {
            return Err(WalError::BodyTooLarge {
                len: body.len() as u64,
                max: self.config.body_bytes_max,
            });
        }
        if self.index.len() as u64 >= self.config.log_ops_max {
            return Err(WalError::LogFull {
                ops_max: self.config.log_ops_max,
            });
        }
        let header = RecordHeader::new(
            self.config.cluster_id,
            view,
            op,
            slot,
            self.last_checksum(),
            body,
        );
        let result = self.append_record(&header, body);
        self.poison_on_error(result)?;
        assert_eq!(self.last_op(), op);
        Ok(header)
    }

    fn append_record(&mut self, header: &RecordHeader, body: &[u8]) -> Result<(), WalError> {
        let segment = self.segments.back().expect("the log always has a segment");
        if segment.len > 0 && segment.len + header.record_len() > self.config.segment_bytes_max {
            self.roll_segment(header.op)?;
        }
        self.buffer.clear();
        header.encode(&mut self.buffer);
        self.buffer.extend_from_slice(body);
        let segment = self
            .segments
            .back_mut()
            .expect("the log always has a segment");
        let offset = self.storage.append(segment.handle, &self.buffer)?;
        assert_eq!(offset, segment.len, "segment length tracked exactly");
        segment.len += header.record_len();
        segment.dirty = true;
        assert!(segment.len <= self.config.segment_bytes_max);
        self.index.push_back(IndexEntry {
            header: *header,
            segment_first_op: segment.first_op,
            offset,
        });
        Ok(())
    }

    /// Starts segment `first_op`. The full segment is synced first, so that only the last
    /// segment can ever hold unsynced (tearable) data; recovery relies on it.
    fn roll_segment(&mut self, first_op: Op) -> Result<(), WalError> {
        let full = self
            .segments
            .back_mut()
            .expect("the log always has a segment");
        if full.dirty {
            self.storage.sync(full.handle)?;
            full.dirty = false;
            self.durable_op = self.last_op();
        }
        let name = segment_file_name(first_op);
        let handle = self.storage.create(&name)?;
        self.storage.sync_directory()?;
        self.segments.push_back(Segment {
            name,
            first_op,
            handle,
            len: 0,
            dirty: false,
        });
        Ok(())
    }

    /// Group commit: makes every record appended so far durable with one `fdatasync` of the
    /// last segment. Returns `durable_op()`, which then equals `last_op()`.
    ///
    /// # Errors
    /// `Poisoned`, or a storage error (poisons).
    pub fn sync(&mut self) -> Result<Op, WalError> {
        self.check_usable()?;
        let result = self.sync_segments();
        self.poison_on_error(result)?;
        assert_eq!(self.durable_op, self.last_op());
        Ok(self.durable_op)
    }

    fn sync_segments(&mut self) -> Result<(), WalError> {
        let last = self.segments.len() - 1;
        for (position, segment) in self.segments.iter_mut().enumerate() {
            if segment.dirty {
                assert_eq!(
                    position, last,
                    "only the last segment holds unsynced records"
                );
                self.storage.sync(segment.handle)?;
                segment.dirty = false;
            }
        }
        self.durable_op = self.last_op();
        Ok(())
    }

    /// Reads record `op` into `body` (cleared first) and verifies it against the header
    /// recorded when it was written, so rot since then is reported, never returned.
    ///
    /// # Errors
    /// `OpNotFound`, `RecordCorrupt` naming the file, offset and op, or a storage error
    /// (reads do not poison).
    pub fn read(&mut self, op: Op, body: &mut Vec<u8>) -> Result<RecordHeader, WalError> {
        self.check_usable()?;
        let not_found = WalError::OpNotFound {
            op,
            first_op: self.first_op(),
            last_op: self.last_op(),
        };
        let Some(entry) = self.header(op).map(|_| self.entry(op)) else {
            return Err(not_found);
        };
        let segment = self.segment(entry.segment_first_op);
        let (handle, name) = (segment.handle, segment.name.clone());
        let mut header_bytes = [0_u8; RECORD_HEADER_SIZE as usize];
        self.storage
            .read_at(handle, entry.offset, &mut header_bytes)?;
        body.clear();
        body.resize(entry.header.body_len as usize, 0);
        let body_offset = entry.offset + u64::from(RECORD_HEADER_SIZE);
        self.storage.read_at(handle, body_offset, body)?;
        let corrupt = |reason| WalError::RecordCorrupt {
            file: name.clone(),
            offset: entry.offset,
            op,
            reason,
        };
        let header = RecordHeader::decode(&header_bytes).map_err(corrupt)?;
        if header != entry.header {
            return Err(corrupt("header differs from the one written"));
        }
        if !header.matches_body(body) {
            return Err(corrupt("body checksum mismatch"));
        }
        Ok(header)
    }

    /// Owned, verified records from `op` to `last_op()`.
    pub fn iter_from(&mut self, op: Op) -> RecordIter<'_, S> {
        let next = op.max(self.first_op());
        RecordIter { wal: self, next }
    }

    pub(crate) fn entry(&self, op: Op) -> IndexEntry {
        let position = usize::try_from(op - self.first_op()).expect("op in the index");
        let entry = self.index[position];
        assert_eq!(entry.header.op, op);
        entry
    }

    pub(crate) fn segment(&self, first_op: Op) -> &Segment {
        let position = self
            .segments
            .binary_search_by_key(&first_op, |segment| segment.first_op)
            .expect("index entries point at open segments");
        &self.segments[position]
    }

    /// View change: keeps ops `..=op`, discards the rest. Durable on return.
    ///
    /// # Errors
    /// `InvalidArgument` if `op` is below the checkpoint, `Poisoned`, or a storage error.
    pub fn truncate_after(&mut self, op: Op) -> Result<(), WalError> {
        self.check_usable()?;
        if op < self.checkpoint.op {
            return Err(WalError::InvalidArgument(
                "truncate_after below the checkpoint op",
            ));
        }
        if op >= self.last_op() {
            return Ok(());
        }
        let result = self.truncate_records_after(op);
        self.poison_on_error(result)?;
        assert_eq!(self.last_op(), op);
        assert_eq!(self.durable_op, op);
        Ok(())
    }

    fn truncate_records_after(&mut self, op: Op) -> Result<(), WalError> {
        let cut = self.entry(op + 1);
        let mut removed = false;
        while self.segments.back().expect("segments").first_op > cut.segment_first_op {
            let segment = self.segments.pop_back().expect("segments");
            self.storage.close(segment.handle);
            self.storage.remove(&segment.name)?;
            removed = true;
        }
        if removed {
            self.storage.sync_directory()?;
        }
        let segment = self.segments.back_mut().expect("segments");
        assert_eq!(segment.first_op, cut.segment_first_op);
        self.storage.truncate(segment.handle, cut.offset)?;
        self.storage.sync(segment.handle)?;
        segment.len = cut.offset;
        segment.dirty = false;
        let keep = usize::try_from(op + 1 - self.first_op()).expect("in the index");
        self.index.truncate(keep);
        self.rewrites += 1;
        self.durable_op = self.last_op();
        Ok(())
    }

    /// Durably sets or clears the superblock's `recovering` flag: the replication layer sets
    /// it when its log may lack ops it acknowledged and clears it once it has caught up from
    /// its peers. Writing the same value again does nothing.
    ///
    /// # Errors
    /// `Poisoned`, or a storage error (poisons).
    /// Clearing it also clears `fresh` (in the same write): catching up is what ends both.
    pub fn set_recovering(&mut self, recovering: bool) -> Result<(), WalError> {
        self.check_usable()?;
        if self.superblock.recovering == recovering {
            return Ok(());
        }
        let fresh = self.superblock.fresh && recovering;
        self.write_flags(recovering, fresh)?;
        assert_eq!(self.superblock.recovering, recovering);
        Ok(())
    }

    /// Durably marks a newly formatted log `fresh` (and so `recovering`): the replication
    /// layer may not let it vote or acknowledge until it has caught up from its peers, since
    /// a formatted data directory cannot tell a new cluster from a lost disk.
    ///
    /// # Errors
    /// `Poisoned`, or a storage error (poisons).
    pub fn mark_fresh(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        assert_eq!(self.last_op(), 0, "only an empty log can be fresh");
        assert_eq!(self.checkpoint_op(), 0, "only an empty log can be fresh");
        self.write_flags(true, true)?;
        assert!(self.superblock.fresh && self.superblock.recovering);
        Ok(())
    }

    fn write_flags(&mut self, recovering: bool, fresh: bool) -> Result<(), WalError> {
        assert!(!fresh || recovering, "fresh implies recovering");
        let next = Superblock {
            sequence: self.superblock.sequence + 1,
            recovering,
            fresh,
            ..self.superblock
        };
        let result = next.write(&mut self.storage, self.superblock_handle);
        self.poison_on_error(result)?;
        self.superblock = next;
        Ok(())
    }

    /// Writes the replication protocol's state to the superblock; durable on return.
    ///
    /// # Errors
    /// `Poisoned`, or a storage error (poisons).
    pub fn write_vsr_state(&mut self, state: VsrState) -> Result<(), WalError> {
        self.check_usable()?;
        assert!(
            state.view >= self.superblock.view,
            "view must never decrease"
        );
        assert!(state.log_view <= state.view, "log_view above view");
        assert!(
            state.commit_op >= self.superblock.commit_op,
            "commit_op must never decrease"
        );
        let next = Superblock {
            sequence: self.superblock.sequence + 1,
            view: state.view,
            log_view: state.log_view,
            commit_op: state.commit_op,
            ..self.superblock
        };
        let result = next.write(&mut self.storage, self.superblock_handle);
        self.poison_on_error(result)?;
        self.superblock = next;
        Ok(())
    }

    /// Writes the replication protocol's state and clears `recovering` (and `fresh`) in one
    /// superblock write: a recovering replica that caught up to a view's log must never be
    /// found, after a crash, with that view's `log_view` but still flagged fresh (or with
    /// the flag cleared but an older `log_view`).
    ///
    /// # Errors
    /// `Poisoned`, or a storage error (poisons).
    pub fn write_vsr_state_recovered(&mut self, state: VsrState) -> Result<(), WalError> {
        self.check_usable()?;
        assert!(
            self.superblock.recovering,
            "only a recovering replica recovers"
        );
        assert!(
            state.view >= self.superblock.view,
            "view must never decrease"
        );
        assert!(state.log_view <= state.view, "log_view above view");
        assert!(state.commit_op >= self.superblock.commit_op);
        let next = Superblock {
            sequence: self.superblock.sequence + 1,
            view: state.view,
            log_view: state.log_view,
            commit_op: state.commit_op,
            recovering: false,
            fresh: false,
            ..self.superblock
        };
        let result = next.write(&mut self.storage, self.superblock_handle);
        self.poison_on_error(result)?;
        self.superblock = next;
        Ok(())
    }

    /// Records `snapshot` as the state after `op` (`checkpoint_op() < op <= durable_op()`)
    /// and waits for it: [`Wal::checkpoint_begin`], the write, and [`Wal::checkpoint_end`].
    ///
    /// # Errors
    /// `InvalidArgument`, `Poisoned`, or a storage error (poisons).
    ///
    /// # Panics
    /// If a [`crate::CheckpointWrite`] is out.
    pub fn checkpoint(&mut self, op: Op, snapshot: &[u8]) -> Result<CheckpointInfo, WalError> {
        let mut next = Some(self.checkpoint_begin(op, snapshot.to_vec())?);
        while let Some(mut part) = next {
            part.run();
            next = self.checkpoint_end(part)?;
        }
        assert_eq!(
            self.checkpoint.op, op,
            "nothing changed the log between the begin and the end"
        );
        Ok(self.checkpoint)
    }

    /// Points the superblock at the checkpoint file of `info` (complete, synced and named
    /// durably); returns the previous checkpoint's file name, for the caller to remove
    /// (recovery removes it too if the caller does not get to it).
    pub(crate) fn adopt_checkpoint_file(
        &mut self,
        info: &CheckpointInfo,
    ) -> Result<Option<String>, WalError> {
        assert!(
            info.op > self.checkpoint.op,
            "checkpoints only move forward"
        );
        let next = Superblock {
            sequence: self.superblock.sequence + 1,
            commit_op: self.superblock.commit_op.max(info.op),
            checkpoint_op: info.op,
            checkpoint_checksum: info.snapshot_checksum,
            ..self.superblock
        };
        next.write(&mut self.storage, self.superblock_handle)?;
        self.superblock = next;
        let previous = std::mem::replace(&mut self.checkpoint, *info);
        Ok((previous.op > 0).then(|| checkpoint_file_name(previous.op)))
    }

    /// Takes the segments wholly covered by the checkpoint out of the log (index, handles)
    /// and returns their names, for removal later: until they are removed, recovery removes
    /// them itself, and no new segment takes their names (they start at or below the
    /// checkpoint's op; new ones start after it).
    pub(crate) fn detach_covered_segments(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        while self.segments.len() > 1 && self.segments[1].first_op <= self.checkpoint.op + 1 {
            let segment = self.segments.pop_front().expect("checked length");
            assert!(
                segment.first_op <= self.checkpoint.op,
                "only covered segments go"
            );
            while self
                .index
                .front()
                .is_some_and(|entry| entry.segment_first_op == segment.first_op)
            {
                self.index.pop_front();
            }
            self.storage.close(segment.handle);
            names.push(segment.name);
        }
        names
    }

    /// The current checkpoint, read back and verified; `None` before the first one.
    ///
    /// # Errors
    /// `CheckpointCorrupt` naming the file, or a storage error.
    pub fn read_checkpoint(&mut self) -> Result<Option<Checkpoint>, WalError> {
        self.check_usable()?;
        if self.checkpoint.op == 0 {
            return Ok(None);
        }
        let checkpoint = read_checkpoint_file(
            &mut self.storage,
            self.config.cluster_id,
            self.checkpoint.op,
            self.superblock.checkpoint_checksum,
        )?;
        assert_eq!(
            checkpoint.info, self.checkpoint,
            "checkpoint file changed under us"
        );
        Ok(Some(checkpoint))
    }

    /// State transfer: installs a peer's checkpoint, discards the whole local log, and
    /// continues after it (`last_op() == info.op`, `last_checksum() == info.record_checksum`).
    /// The superblock's `commit_op` is raised to at least `info.op`.
    ///
    /// # Errors
    /// `InvalidArgument` if `info.op` is not above the current checkpoint or `snapshot` does
    /// not match `info`; `Poisoned`; or a storage error (poisons).
    pub fn install_checkpoint(
        &mut self,
        info: &CheckpointInfo,
        snapshot: &[u8],
    ) -> Result<(), WalError> {
        self.check_usable()?;
        if info.op <= self.checkpoint.op {
            return Err(WalError::InvalidArgument(
                "installed checkpoint must be newer",
            ));
        }
        if info.snapshot_len != snapshot.len() as u64
            || info.snapshot_checksum != checksum128(snapshot)
        {
            return Err(WalError::InvalidArgument(
                "snapshot does not match its checksum",
            ));
        }
        let result =
            write_checkpoint_file(&mut self.storage, self.config.cluster_id, info, snapshot)
                .and_then(|()| self.adopt_checkpoint_file(info))
                .and_then(|previous| match previous {
                    Some(name) => remove_if_present(&mut self.storage, &name),
                    None => Ok(()),
                });
        self.poison_on_error(result)?;
        let result = self.reset_log();
        self.poison_on_error(result)?;
        assert_eq!(self.last_op(), info.op);
        assert_eq!(self.last_checksum(), info.record_checksum);
        Ok(())
    }

    /// Removes every segment and starts an empty one after the checkpoint.
    pub(crate) fn reset_log(&mut self) -> Result<(), WalError> {
        while let Some(segment) = self.segments.pop_back() {
            self.storage.close(segment.handle);
            remove_if_present(&mut self.storage, &segment.name)?;
        }
        self.index.clear();
        let first_op = self.checkpoint.op + 1;
        let name = segment_file_name(first_op);
        remove_if_present(&mut self.storage, &name)?;
        let handle = self.storage.create(&name)?;
        self.storage.sync_directory()?;
        self.segments.push_back(Segment {
            name,
            first_op,
            handle,
            len: 0,
            dirty: false,
        });
        self.rewrites += 1;
        self.durable_op = self.checkpoint.op;
        Ok(())
    }
}

pub(crate) fn remove_if_present<S: Storage>(storage: &mut S, name: &str) -> Result<(), WalError> {
    match storage.remove(name) {
        Ok(()) => Ok(()),
        Err(error) if error.kind == StorageErrorKind::NotFound => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Iterator over owned, verified records (see [`Wal::iter_from`]).
pub struct RecordIter<'a, S: Storage> {
    wal: &'a mut Wal<S>,
    next: Op,
}

impl<S: Storage> Iterator for RecordIter<'_, S> {
    type Item = Result<(RecordHeader, Vec<u8>), WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next > self.wal.last_op() {
            return None;
        }
        let mut body = Vec::new();
        let result = self.wal.read(self.next, &mut body);
        // Stop after an error: a caller must not skip a damaged record by accident.
        self.next = if result.is_ok() {
            self.next + 1
        } else {
            Op::MAX
        };
        Some(result.map(|header| (header, body)))
    }
}
