//! Checkpoints: every `checkpoint_interval_ops` applied ops the state is snapshotted so the
//! log before it can go. Written inline by default; a driver that calls
//! [`Replica::detach_checkpoints`] writes them away from the replica's task instead
//! ([`Replica::checkpoint_begin`], a thread, [`Replica::checkpoint_end`], then the same for the
//! removal of the covered segments), so a checkpoint's megabytes never stall requests and
//! peers (docs/replication.md, "Checkpoints are written off the replica task"). A primary's
//! checkpoint for a state transfer is still written here (the transfer needs it now); only
//! its removal part goes to the driver.

use allocdb_wal::{CheckpointWrite, Storage, WalError};

use crate::replica::Replica;

impl<S: Storage> Replica<S> {
    /// From now on checkpoints are not written inline as they fall due: the driver asks for
    /// each with [`Replica::checkpoint_begin`] after every round, runs it elsewhere, and hands
    /// it back with [`Replica::checkpoint_end`]. A driver that does not ask lets the log grow.
    pub fn detach_checkpoints(&mut self) {
        self.checkpoints_detached = true;
    }

    /// Whether a checkpoint is due: `checkpoint_interval_ops` ops applied since the last.
    pub fn checkpoint_due(&self) -> bool {
        self.commit_min >= self.wal.checkpoint_op() + self.config.checkpoint_interval_ops
    }

    /// Whether the checkpoint being written holds the log back: its file is still out while
    /// the ops the log retains (what the WAL counts against `log_ops_max`: from its first
    /// segment on, applied or not) come within half of the room `ReplicaConfig::validate`
    /// leaves above one interval. The driver must then wait for the write (and end it) before
    /// it hands this replica more work: backpressure, not a full log. The other half covers
    /// what one round can still append (at most two pipelines: `validate` keeps
    /// `log_ops_max - checkpoint_interval_ops >= 4 * suffix_ops_max`).
    pub fn checkpoint_overdue(&self) -> bool {
        if !self.wal.checkpoint_writing() || self.checkpoint_parked.is_some() {
            return false;
        }
        let log_ops_max = self.config.wal.log_ops_max;
        let margin = log_ops_max.saturating_sub(self.config.checkpoint_interval_ops) / 2;
        let retained = self.wal.last_op() + 1 - self.wal.first_op();
        assert!(
            retained <= log_ops_max,
            "the WAL refuses appends past its bound"
        );
        retained + margin >= log_ops_max
    }

    /// The next part of a checkpoint for the driver to run elsewhere ([`CheckpointWrite::run`]);
    /// `None` when none is due, one is out already, or the replica halted. A due checkpoint's
    /// snapshot is encoded here (the state is this task's; the log is synced first if what was
    /// applied is ahead of it); the file's write and sync are not. Until
    /// [`Replica::checkpoint_end`] the previous checkpoint and the whole log stay, so a crash
    /// meanwhile recovers as if this had not begun. Also hands out the removal part of a
    /// checkpoint taken inline for a state transfer, which waited here.
    pub fn checkpoint_begin(&mut self) -> Option<CheckpointWrite<S::Writer>> {
        if self.halted.is_some() {
            return None;
        }
        if let Some(parked) = self.checkpoint_parked.take() {
            assert!(self.wal.checkpoint_writing(), "a parked part is still out");
            return Some(parked);
        }
        if self.wal.checkpoint_writing() || !self.checkpoint_due() {
            return None;
        }
        let result = self.snapshot_checkpoint();
        self.halt_on_error(result)
    }

    /// The outcome of a part of a checkpoint begun by [`Replica::checkpoint_begin`] and run
    /// since. After the file: the checkpoint becomes current and the log before it leaves the
    /// log (or, after a state transfer or truncation meanwhile, nothing changes), and the
    /// second part, removing the covered segments' files, is returned for the driver to run
    /// and hand back the same way. A failed part halts the replica.
    pub fn checkpoint_end(
        &mut self,
        write: CheckpointWrite<S::Writer>,
    ) -> Option<CheckpointWrite<S::Writer>> {
        if self.halted.is_some() {
            return None;
        }
        let result = self.wal.checkpoint_end(write);
        assert!(self.wal.checkpoint_op() <= self.commit_min);
        self.halt_on_error(result).flatten()
    }

    /// A due checkpoint, written inline (unless the driver writes them: see
    /// [`Replica::detach_checkpoints`]).
    pub(crate) fn maybe_checkpoint(&mut self) -> Result<(), WalError> {
        if self.checkpoints_detached || !self.checkpoint_due() {
            return Ok(());
        }
        assert!(
            !self.wal.checkpoint_writing(),
            "inline checkpoints are never out"
        );
        let op = self.commit_min;
        let write = self.snapshot_checkpoint()?;
        self.write_inline(write)?;
        assert_eq!(
            self.wal.checkpoint_op(),
            op,
            "nothing changed the log in between"
        );
        Ok(())
    }

    /// Runs and ends the parts of a checkpoint here. With detached checkpoints the removal
    /// of the covered segments waits for the driver ([`Replica::checkpoint_begin`] hands it
    /// out): it pauses between cuts, which must never happen on this task.
    fn write_inline(&mut self, write: CheckpointWrite<S::Writer>) -> Result<(), WalError> {
        let mut part = write;
        loop {
            part.run();
            match self.wal.checkpoint_end(part)? {
                None => return Ok(()),
                Some(next) if self.checkpoints_detached => {
                    assert!(next.is_reclaim() && self.checkpoint_parked.is_none());
                    self.checkpoint_parked = Some(next);
                    return Ok(());
                }
                Some(next) => part = next,
            }
        }
    }

    /// Encodes the applied state and begins its checkpoint at `commit_min`.
    fn snapshot_checkpoint(&mut self) -> Result<CheckpointWrite<S::Writer>, WalError> {
        // A primary commits on its backups' copies while its own sync is out, so under
        // steady load what it applied is always ahead of what its last sync covered; a
        // checkpoint covers only durable ops, so sync here (once per interval) rather than
        // put it off until a quiet moment that may never come.
        if self.commit_min > self.wal.durable_op() {
            self.settle_log()?;
        }
        assert!(self.commit_min <= self.wal.durable_op());
        assert!(
            self.commit_min > self.wal.checkpoint_op(),
            "a checkpoint is due"
        );
        let mut snapshot = Vec::new();
        self.core.encode_snapshot(&mut snapshot);
        match self.wal.checkpoint_begin(self.commit_min, snapshot) {
            Err(WalError::InvalidArgument(why)) => {
                unreachable!("a due checkpoint of durable ops: {why}")
            }
            result => result,
        }
    }

    /// Checkpoints the applied state now (when its ops are durable, it is newer than the
    /// last checkpoint, no write is out and its snapshot is at most `snapshot_bytes_max`);
    /// whether it did.
    pub(crate) fn checkpoint_now(
        &mut self,
        snapshot_bytes_max: Option<u32>,
    ) -> Result<bool, WalError> {
        if self.commit_min > self.wal.durable_op()
            || self.commit_min <= self.wal.checkpoint_op()
            || self.wal.checkpoint_writing()
        {
            return Ok(false);
        }
        let mut snapshot = Vec::new();
        self.core.encode_snapshot(&mut snapshot);
        if snapshot_bytes_max.is_some_and(|max| snapshot.len() as u64 > u64::from(max)) {
            return Ok(false);
        }
        let write = self.wal.checkpoint_begin(self.commit_min, snapshot)?;
        self.write_inline(write)?;
        assert_eq!(self.wal.checkpoint_op(), self.commit_min);
        Ok(true)
    }
}
