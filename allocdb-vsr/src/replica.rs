//! The replica: one deterministic state machine per cluster member.
//!
//! Inputs are [`Replica::on_message`], [`Replica::on_request`] and [`Replica::on_tick`];
//! outputs go to a caller-owned [`Outbox`]. Storage is synchronous through the [`Wal`]: an op
//! is durable when `wal.sync()` returns, and every message that depends on durable state is
//! produced only after that state was written. This file holds the state, the constructors,
//! the dispatch and the paths every role shares (applying commits, checkpoints). The roles'
//! steps of the VR paper live in `replica_primary.rs`, `replica_backup.rs` and
//! `replica_view_change.rs`.

use std::collections::{BTreeMap, VecDeque};

use allocdb_core::{Allocator, Op, Outcome, Request, ResultCode, Slot, codec};
use allocdb_wal::{
    Checksum, RecordHeader, ReplicaIdentity, SplitMix64, Storage, TailSync, View, VsrState, Wal,
    WalError,
};

use crate::config::{ConfigError, REPLICAS_MAX, ReplicaConfig};
use crate::message::{ClientRequest, Entry, Message};
use crate::message_codec::MessageLimits;
use crate::outbox::Outbox;
use crate::recovery_probe::Probe;
use crate::replica_primary::PrimaryState;
use crate::view_change::ViewChangeState;

/// Where a replica stands in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Serving in `view`: as its primary, or as a backup following it.
    Normal,
    /// Between views: collecting votes and logs for `view`.
    ViewChange,
    /// The replica may have lost ops it had acknowledged (a corrupt record or checkpoint was
    /// cut away, the log ends below the durable commit point, or the durable `recovering`
    /// flag was already set): it takes no part in any quorum until it has caught up with the
    /// primary of a view at least as new as its own (protocol-aware recovery). A torn tail
    /// alone is not such evidence: only synced ops are ever acknowledged.
    Recovering,
}

/// Why a replica could not be created.
#[derive(Debug)]
pub enum ReplicaError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The log could not be formatted or opened.
    Wal(WalError),
    /// The core refused its configuration.
    Core(allocdb_core::ConfigError),
    /// The checkpoint's snapshot could not be decoded.
    Snapshot(allocdb_core::SnapshotError),
    /// The log on disk belongs to another replica or cluster shape.
    IdentityMismatch {
        /// What differs.
        reason: String,
    },
    /// The log lost data it had synced and there is no peer to repair it from (a single
    /// replica): it refuses to start rather than serve without it.
    Unrecoverable {
        /// What was lost.
        reason: String,
    },
}

impl std::fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaError::Config(e) => write!(f, "{e}"),
            ReplicaError::Wal(e) => write!(f, "log: {e}"),
            ReplicaError::Core(e) => write!(f, "core: {e}"),
            ReplicaError::Snapshot(e) => write!(f, "checkpoint snapshot: {e:?}"),
            ReplicaError::IdentityMismatch { reason } | ReplicaError::Unrecoverable { reason } => {
                write!(f, "data directory: {reason}")
            }
        }
    }
}

impl std::error::Error for ReplicaError {}

/// One applied op, kept for an observer when `applied_trace_max > 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedOp {
    /// The op's header (its checksum identifies the batch).
    pub header: RecordHeader,
    /// The batch.
    pub body: Vec<u8>,
}

/// A Viewstamped Replication replica owning the allocator and the log.
pub struct Replica<S: Storage> {
    pub(crate) config: ReplicaConfig,
    pub(crate) limits: MessageLimits,
    pub(crate) wal: Wal<S>,
    pub(crate) core: Allocator,
    pub(crate) prng: SplitMix64,
    pub(crate) status: Status,
    pub(crate) view: View,
    pub(crate) log_view: View,
    /// Every op up to here is applied to the core.
    pub(crate) commit_min: Op,
    /// Every op up to here is known to be committed.
    pub(crate) commit_max: Op,
    /// Every op up to here in the local log is known to equal the current view's log.
    pub(crate) verified_op: Op,
    /// The `start_view` head (op, checksum) this backup is catching up to, while joining.
    pub(crate) join: Option<(Op, Checksum)>,
    /// The highest op the primary is known to hold.
    pub(crate) head_known: Op,
    /// Recovering: the primary of a view older than this replica's was heard serving.
    pub(crate) older_view_serving: bool,
    /// Fresh (a newly formatted data directory): what its peers answered to its probe.
    pub(crate) probe: Probe,
    /// Peer messages refused because they break the protocol's rules (see `peer_check.rs`).
    pub(crate) refused_messages: u64,
    /// The last refusal: from whom and why.
    pub(crate) last_refusal: Option<(u8, &'static str)>,
    /// State digests after the latest multiples of `checkpoint_interval_ops` applied.
    pub(crate) digests: crate::digests::Digests,
    /// Damaged (recovering, not fresh): the head its log held before the damage was cut,
    /// which it vouches for in view changes (`Message::DoViewChange::damaged`). Known only
    /// in the process that found the damage: a later restart finds a clean, shorter log.
    pub(crate) damaged_head: Option<(Op, Checksum)>,
    pub(crate) tick: u64,
    pub(crate) clock_slot: Slot,
    pub(crate) timer_contact_tick: u64,
    pub(crate) timer_resend_tick: u64,
    pub(crate) timeout_jitter: u64,
    /// Repair: the highest op asked for by outstanding `request_prepares` (the window ends
    /// here; 0 after a reset).
    pub(crate) repair_requested_op: Op,
    /// Repair: the last tick the log grew, or a retry went out (stalled → retry).
    pub(crate) repair_progress_tick: u64,
    /// Prepares from the primary of `repair_buffer_view` that arrived beyond a gap in the
    /// log, waiting for it to fill (bounded by the repair window; ordered, so deterministic).
    pub(crate) repair_buffer: BTreeMap<Op, Entry>,
    pub(crate) repair_buffer_view: View,
    pub(crate) primary: Option<PrimaryState>,
    pub(crate) view_change: ViewChangeState,
    pub(crate) halted: Option<String>,
    /// The driver writes checkpoints away from this replica's task
    /// ([`Replica::checkpoint_begin`]); otherwise they are written inline as they fall due.
    pub(crate) checkpoints_detached: bool,
    /// The removal part of a checkpoint written inline (for a state transfer) while
    /// checkpoints are detached, waiting for the driver ([`Replica::checkpoint_begin`]).
    pub(crate) checkpoint_parked: Option<allocdb_wal::CheckpointWrite<S::Writer>>,
    pub(crate) applied: VecDeque<AppliedOp>,
    pub(crate) scratch_requests: Vec<Request>,
    pub(crate) scratch_outcomes: Vec<Outcome>,
    pub(crate) scratch_body: Vec<u8>,
}

impl<S: Storage> Replica<S> {
    /// Formats `storage` (a new, empty data directory) and starts in view 0.
    ///
    /// # Errors
    /// Invalid configuration, or the log cannot be formatted.
    pub fn format(storage: S, config: ReplicaConfig) -> Result<Replica<S>, ReplicaError> {
        config.validate().map_err(ReplicaError::Config)?;
        let identity = ReplicaIdentity {
            replica_index: config.replica_index,
            replica_count: config.replica_count,
        };
        let mut wal = Wal::format(storage, config.wal, identity).map_err(ReplicaError::Wal)?;
        let single = config.replica_count == 1 || cfg!(feature = "broken-fresh-replica");
        if !single {
            // A formatted directory cannot tell a new cluster from a lost disk: it is fresh
            // (durably) and votes only after catching up (see `recovery_probe.rs`).
            wal.mark_fresh().map_err(ReplicaError::Wal)?;
        }
        let core = Allocator::new(config.core).map_err(ReplicaError::Core)?;
        let mut replica = Replica::assemble(config, wal, core);
        if single {
            // Nobody else could ever have acknowledged anything: it leads view 0 at once.
            // (BROKEN ON PURPOSE with `broken-fresh-replica`: every formatted replica starts
            // in view 0 and votes, as before issue 10.)
            replica.status = Status::Normal;
            if replica.is_primary_of(0) {
                replica.become_primary_state();
            }
        } else {
            replica.status = Status::Recovering;
        }
        Ok(replica)
    }

    /// Reopens `storage` after a restart and rejoins from the durable state. In a cluster the
    /// log is opened in repair mode ([`Wal::open_for_repair`]): damage inside it is cut away
    /// and the replica recovers the rest from its peers (status [`Status::Recovering`]).
    ///
    /// # Errors
    /// Invalid configuration; the log cannot be opened (no valid superblock, another cluster,
    /// a storage error — and, for a single replica, any corruption); the data belongs to
    /// another replica; the checkpoint cannot be decoded; a single replica lost synced ops.
    pub fn open(storage: S, config: ReplicaConfig) -> Result<Replica<S>, ReplicaError> {
        config.validate().map_err(ReplicaError::Config)?;
        // A single replica has no peer to repair from: its log opens fail-closed, and
        // nothing is cut away that an operator might still want to look at.
        let single = config.replica_count == 1;
        let mut wal = if single {
            Wal::open(storage, config.wal)
        } else {
            Wal::open_for_repair(storage, config.wal)
        }
        .map_err(ReplicaError::Wal)?;
        // The log holds at most two checkpoint intervals plus the suffix kept for repairs
        // between truncations: room for that many headers is taken now, not while serving.
        wal.reserve_index(
            2 * config.checkpoint_interval_ops + 4 * u64::from(config.suffix_ops_max),
        );
        let superblock = *wal.superblock();
        if superblock.replica_index != config.replica_index
            || superblock.replica_count != config.replica_count
        {
            return Err(ReplicaError::IdentityMismatch {
                reason: format!(
                    "superblock is replica {} of {}, configured as {} of {}",
                    superblock.replica_index,
                    superblock.replica_count,
                    config.replica_index,
                    config.replica_count
                ),
            });
        }
        let core = match wal.read_checkpoint().map_err(ReplicaError::Wal)? {
            Some(checkpoint) => Allocator::decode_snapshot(config.core, &checkpoint.snapshot)
                .map_err(ReplicaError::Snapshot)?,
            None => Allocator::new(config.core).map_err(ReplicaError::Core)?,
        };
        let recovery = wal.recovery().clone();
        let mut replica = Replica::assemble(config, wal, core);
        replica.view = superblock.view;
        replica.log_view = superblock.log_view;
        replica.commit_min = replica.wal.checkpoint_op();
        replica.commit_max = superblock.commit_op.max(replica.commit_min);
        replica.verified_op = replica.commit_min;
        // Evidence that ops this replica synced (and so may have acknowledged) are gone. A torn
        // tail is not: it was never synced, and an ordinary crash of the whole cluster must
        // not leave every replica recovering (no quorum could ever form again).
        let damaged = superblock.recovering
            || recovery.lost_durable_data()
            || replica.wal.last_op() < superblock.commit_op;
        if damaged && single {
            return Err(ReplicaError::Unrecoverable {
                reason: format!(
                    "the log ends at op {} below the durable commit op {}, and a single replica has no peer to repair from",
                    replica.wal.last_op(),
                    superblock.commit_op
                ),
            });
        }
        if damaged {
            // Durable before the replica acts on the damaged log (the WAL already set it for
            // corruption; this covers a log that is merely too short).
            replica
                .wal
                .set_recovering(true)
                .map_err(ReplicaError::Wal)?;
            assert!(replica.wal.superblock().recovering);
        }
        let replay_to = replica.commit_max.min(replica.wal.last_op());
        replica
            .apply_up_to(replay_to, &mut Outbox::new(0, 0))
            .map_err(ReplicaError::Wal)?;
        replica.view_change = ViewChangeState::new(replica.view);
        if damaged {
            replica.status = Status::Recovering;
            if !superblock.fresh && recovery.lost_durable_data() {
                replica.damaged_head = recovery.head_before_damage;
            }
        } else if replica.log_view == replica.view && !replica.is_primary_of(replica.view) {
            replica.verified_op = replica.wal.last_op();
            replica.status = Status::Normal;
        } else if replica.log_view == replica.view {
            // A restarted primary lost its volatile state (pipeline, acknowledgements): it
            // asks for the next view at once (its votes go out on the resend timer).
            replica.status = Status::ViewChange;
            let next = replica.view + 1;
            replica
                .start_view_change(next, &mut Outbox::new(0, 0))
                .map_err(ReplicaError::Wal)?;
        } else {
            // Between views when it stopped: it waits in that view change (or the next).
            replica.status = Status::ViewChange;
        }
        Ok(replica)
    }

    fn assemble(config: ReplicaConfig, wal: Wal<S>, core: Allocator) -> Replica<S> {
        let requests_max = usize::try_from(config.core.batch_requests_max).expect("u32 fits");
        let trace_max = usize::try_from(config.applied_trace_max).expect("u32 fits");
        let mut prng = SplitMix64::new(config.seed);
        let nonce = prng.next_u64();
        Replica {
            limits: MessageLimits::from_config(&config),
            prng,
            status: Status::Normal,
            view: 0,
            log_view: 0,
            commit_min: 0,
            commit_max: 0,
            verified_op: 0,
            join: None,
            head_known: 0,
            older_view_serving: false,
            probe: Probe::new(nonce),
            damaged_head: None,
            refused_messages: 0,
            last_refusal: None,
            digests: crate::digests::Digests::default(),
            tick: 0,
            clock_slot: 0,
            timer_contact_tick: 0,
            timer_resend_tick: 0,
            timeout_jitter: 0,
            repair_requested_op: 0,
            repair_progress_tick: 0,
            repair_buffer: BTreeMap::new(),
            repair_buffer_view: 0,
            primary: None,
            view_change: ViewChangeState::new(0),
            halted: None,
            checkpoints_detached: false,
            checkpoint_parked: None,
            applied: VecDeque::with_capacity(trace_max),
            scratch_requests: Vec::with_capacity(requests_max),
            scratch_outcomes: Vec::with_capacity(requests_max),
            scratch_body: Vec::new(),
            config,
            wal,
            core,
        }
    }

    // ---- inputs ----

    /// A message from replica `from`. Messages for older views, from unexpected senders, or
    /// failing their integrity checks are ignored: peers retransmit.
    pub fn on_message(&mut self, from: u8, message: &Message, out: &mut Outbox) {
        if self.halted.is_some()
            || from >= self.config.replica_count
            || from == self.config.replica_index
        {
            return;
        }
        if let Err(reason) = crate::peer_check::check(message, self.config.cluster_id, self.view) {
            self.refuse(from, reason);
            return;
        }
        if let Err(reason) = self.check_batches(message) {
            self.refuse(from, reason);
            return;
        }
        let result = self
            .settle_unless_hot(message)
            .and_then(|()| self.dispatch(from, message, out));
        self.check_storage(result);
        self.debug_check();
    }

    /// The highest op of the local log known durable (synced).
    pub fn durable_op(&self) -> Op {
        self.wal.durable_op()
    }

    /// Whether the log holds ops not yet synced (a primary's fresh prepares): the driver
    /// must call [`Replica::sync_log`] once it has handed this round's messages to the links.
    pub fn log_unsynced(&self) -> bool {
        self.wal.durable_op() < self.wal.last_op()
    }

    /// Syncs the log, then lets the primary count its own copy: commits what that completes,
    /// replies, and prepares what waited (those new prepares are again unsynced). A driver
    /// calls it after sending the round's prepares, so the local fsync overlaps the backups'
    /// (docs/replication.md, "Send before sync"). The same as [`Replica::sync_log_begin`],
    /// [`TailSync::run`] and [`Replica::sync_log_end`] in a row.
    pub fn sync_log(&mut self, out: &mut Outbox) {
        if let Some(mut sync) = self.sync_log_begin() {
            sync.run();
            self.sync_log_end(sync, out);
        }
    }

    /// Starts a sync of the unsynced ops for the driver to run elsewhere ([`TailSync::run`],
    /// on a thread of its own), so that this replica goes on taking messages and requests
    /// while the disk works; `None` when there is nothing to sync (or it halted). The outcome
    /// comes back through [`Replica::sync_log_end`]. Until then the ops count as unsynced:
    /// the primary's own copy does not count toward a quorum, and a backup does not
    /// acknowledge them.
    pub fn sync_log_begin(&mut self) -> Option<TailSync<S::Syncer>> {
        if self.halted.is_some() || !self.log_unsynced() {
            return None;
        }
        let result = self.wal.sync_begin();
        self.halt_on_error(result).flatten()
    }

    /// The outcome of a sync begun by [`Replica::sync_log_begin`] and run since: what it made
    /// durable counts (the primary commits and replies, a backup acknowledges), unless the
    /// log was cut back meanwhile; a failed sync halts the replica.
    pub fn sync_log_end(&mut self, sync: TailSync<S::Syncer>, out: &mut Outbox) {
        if self.halted.is_some() {
            return;
        }
        let result = self.wal.sync_end(sync).and_then(|_| {
            if self.status != Status::Normal {
                Ok(())
            } else if self.is_primary() {
                self.advance_commit(out)
            } else {
                self.acknowledge_durable(out);
                Ok(())
            }
        });
        self.check_storage(result);
        self.debug_check();
    }

    /// Makes every appended op durable. Every message but a prepare speaks for the log
    /// (acknowledgements, view-change votes, repair answers), so every path that may send
    /// one settles first; only the primary's hot path and a streaming backup's prepares leave
    /// ops unsynced, and acknowledgements never go beyond `durable_op`.
    pub(crate) fn settle_log(&mut self) -> Result<(), WalError> {
        if self.log_unsynced() {
            self.wal.sync()?;
        }
        assert_eq!(self.wal.durable_op(), self.wal.last_op());
        Ok(())
    }

    /// Settles the log before any message except the hot path's: acknowledgements reaching a
    /// normal primary in its own view (they only raise the commit point), and prepares and
    /// heartbeats reaching a streaming backup from that view's primary (they append, and the
    /// acknowledgements they cause never go beyond `durable_op`). Syncing for each of those
    /// would put an fsync back in front of every message.
    fn settle_unless_hot(&mut self, message: &Message) -> Result<(), WalError> {
        let hot = match message {
            Message::PrepareOk { view, .. } | Message::CommitAck { view, .. } => {
                *view == self.view && self.is_primary()
            }
            Message::Prepare { view, .. } | Message::Commit { view, .. } => {
                *view == self.view && self.streaming()
            }
            _ => false,
        };
        if hot { Ok(()) } else { self.settle_log() }
    }

    /// A client request (a write or a linearizable read).
    pub fn on_request(&mut self, request: ClientRequest, out: &mut Outbox) {
        self.on_requests(std::slice::from_ref(&request), out);
    }

    /// A group of client requests that arrived together (one frame, or everything a driver
    /// drained from its queue). Writes are queued first and prepared afterwards, so a group
    /// becomes as few prepares — and fsyncs — as the batch limits allow.
    pub fn on_requests(&mut self, requests: &[ClientRequest], out: &mut Outbox) {
        if self.halted.is_some() {
            return;
        }
        for request in requests {
            self.handle_request(request, out);
        }
        if self.is_primary() {
            let result = self.maybe_prepare(false, out);
            self.check_storage(result);
        }
        self.debug_check();
    }

    /// A fresh reading of the driver's monotonic clock, in slots, taken when client requests
    /// are handed over (before [`Replica::on_requests`]): a prepare built for them is stamped
    /// no earlier than the slot in which they reached this replica, not the slot of the last
    /// tick, so a lease's TTL counts from its arrival (see docs/semantics.md, logical time).
    /// Readings never move the clock back.
    pub fn observe_clock(&mut self, clock_slot: Slot) {
        self.clock_slot = self.clock_slot.max(clock_slot);
    }

    /// Time passes: one tick; `clock_slot` is the driver's monotonic clock in slots, used
    /// only to stamp prepares while primary.
    pub fn on_tick(&mut self, clock_slot: Slot, out: &mut Outbox) {
        if self.halted.is_some() {
            return;
        }
        self.tick += 1;
        self.clock_slot = self.clock_slot.max(clock_slot);
        let result = self.handle_tick(out);
        self.check_storage(result);
        self.debug_check();
    }

    fn dispatch(&mut self, from: u8, message: &Message, out: &mut Outbox) -> Result<(), WalError> {
        match message {
            Message::Prepare {
                view,
                commit,
                entry,
            } => self.on_prepare(from, *view, *commit, entry, out),
            Message::PrepareOk { view, op, checksum } => {
                self.on_prepare_ok(from, *view, *op, *checksum, out)
            }
            Message::Commit {
                view,
                commit,
                head_op,
                heartbeat,
                digest_op,
                digest,
            } => {
                self.compare_digest(from, *view, *digest_op, *digest);
                if self.halted.is_some() {
                    return Ok(());
                }
                self.on_commit(from, *view, *commit, *head_op, *heartbeat, out)
            }
            Message::CommitAck {
                view,
                heartbeat,
                op,
                checksum,
            } => self.on_commit_ack(from, *view, *heartbeat, *op, *checksum, out),
            Message::StartViewChange { view } => self.on_start_view_change(from, *view, out),
            Message::DoViewChange { .. } => self.on_do_view_change(from, message, out),
            Message::StartView {
                view,
                op,
                checksum,
                commit,
                suffix,
            } => self.on_start_view(from, *view, (*op, *checksum), *commit, suffix, out),
            Message::RequestStartView { view } => self.on_request_start_view(from, *view, out),
            Message::RequestPrepares {
                view,
                op_min,
                op_max,
            } => self.on_request_prepares(from, *view, *op_min, *op_max, out),
            Message::RequestHeaders {
                view,
                op_min,
                op_max,
            } => self.on_request_headers(from, *view, *op_min, *op_max, out),
            Message::Headers { view, headers } => self.on_headers(from, *view, headers, out),
            Message::Checkpoint {
                view,
                info,
                snapshot,
            } => self.on_checkpoint(from, *view, info, snapshot, out),
            Message::RecoveryProbe { nonce, .. } => {
                self.on_recovery_probe(from, *nonce, out);
                Ok(())
            }
            Message::RecoveryReply {
                view,
                nonce,
                fresh,
                empty,
            } => {
                let answer = crate::recovery_probe::Answer {
                    view: *view,
                    fresh: *fresh,
                    empty: *empty,
                };
                self.on_recovery_reply(from, *nonce, answer, out)
            }
        }
    }

    fn handle_tick(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        match self.status {
            Status::Normal if self.is_primary() => self.primary_tick(out),
            Status::Normal => self.backup_tick(out),
            Status::ViewChange => self.view_change_tick(out),
            Status::Recovering => {
                self.recovering_tick(out);
                Ok(())
            }
        }
    }

    /// Drops a peer message that breaks the protocol's rules: counted and remembered for the
    /// driver to report; nothing it said was applied.
    /// Every entry a peer sends must hold a batch the core can decode: its checksum proves
    /// only that it arrived as sent, and a committed op that does not decode would stop every
    /// replica at apply. Refused before it is logged or acknowledged (found by fuzzing).
    fn check_batches(&mut self, message: &Message) -> Result<(), &'static str> {
        let entries = match message {
            Message::Prepare { entry, .. } => std::slice::from_ref(entry),
            Message::DoViewChange { suffix, .. } | Message::StartView { suffix, .. } => suffix,
            _ => return Ok(()),
        };
        let requests_max = self.config.core.batch_requests_max;
        for entry in entries {
            codec::decode_batch(
                &entry.body,
                codec::RequestOrigin::Log,
                requests_max,
                &mut self.scratch_requests,
            )
            .map_err(|_| "entry body is not a batch the core can decode")?;
        }
        Ok(())
    }

    pub(crate) fn refuse(&mut self, from: u8, reason: &'static str) {
        self.refused_messages += 1;
        self.last_refusal = Some((from, reason));
    }

    /// A storage error leaves the log's state unknown: halt (fail-stop). The driver drops
    /// the replica and reopens it from disk, exactly as after a crash.
    pub(crate) fn check_storage(&mut self, result: Result<(), WalError>) {
        let _ = self.halt_on_error(result);
    }

    /// The value, or `None` after halting on the storage error.
    pub(crate) fn halt_on_error<T>(&mut self, result: Result<T, WalError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.halted = Some(format!(
                    "replica {} halted on a storage error: {error}",
                    self.config.replica_index
                ));
                None
            }
        }
    }

    fn debug_check(&self) {
        if self.halted.is_some() {
            return;
        }
        if self.log_unsynced() {
            assert!(
                self.is_primary() || self.streaming(),
                "only a normal primary or a streaming backup holds unsynced ops (replica {}, {:?})",
                self.config.replica_index,
                self.status
            );
            if self.config.replica_count == 1 {
                assert!(
                    self.commit_max <= self.wal.durable_op(),
                    "a lone replica commits only what it has synced"
                );
            }
        }
        assert!(self.commit_min <= self.commit_max || self.commit_min == self.wal.checkpoint_op());
        assert!(self.commit_min <= self.wal.last_op());
        assert!(self.log_view <= self.view);
        assert!(self.verified_op <= self.wal.last_op());
        assert!(
            self.verified_op >= self.commit_min,
            "applied ops are verified"
        );
        assert_eq!(
            self.core.last_op(),
            self.commit_min,
            "the core holds exactly the applied ops"
        );
        if self.status == Status::Normal && self.log_view == self.view {
            assert!(self.join.is_none());
        }
        assert!(
            self.repair_buffer.len() as u64 <= self.repair_window_ops(),
            "the repair buffer is bounded by the repair window"
        );
        assert_eq!(
            self.wal.superblock().recovering,
            self.status == Status::Recovering,
            "the durable recovering flag matches the status"
        );
        if self.status != Status::Recovering {
            assert!(
                self.damaged_head.is_none(),
                "only a recovering replica is damaged"
            );
        }
        if self.wal.superblock().fresh {
            assert!(
                self.damaged_head.is_none(),
                "a fresh replica vouches for nothing"
            );
            assert_eq!(
                self.log_view, 0,
                "a fresh replica never adopted a view's log"
            );
            assert!(self.primary.is_none(), "a fresh replica never leads");
        }
    }

    // ---- shared helpers ----

    /// Ops a backup may have asked for and not yet absorbed (and the most prepares it
    /// buffers beyond a gap): `repair_ops_max * repair_requests_in_flight_max`.
    pub(crate) fn repair_window_ops(&self) -> u64 {
        u64::from(self.config.repair_ops_max) * u64::from(self.config.repair_requests_in_flight_max)
    }

    /// The primary of `view` (round-robin).
    pub(crate) fn primary_of(&self, view: View) -> u8 {
        let index = view % u64::from(self.config.replica_count);
        u8::try_from(index).expect("below replica_count")
    }

    pub(crate) fn is_primary_of(&self, view: View) -> bool {
        self.primary_of(view) == self.config.replica_index
    }

    pub(crate) fn quorum(&self) -> u8 {
        self.config.quorum()
    }

    /// Sends `message` to every other replica.
    pub(crate) fn broadcast(&self, message: &Message, out: &mut Outbox) {
        for to in 0..self.config.replica_count {
            if to != self.config.replica_index {
                out.send(to, message.clone());
            }
        }
    }

    /// Re-arms the election timers with fresh jitter.
    pub(crate) fn reset_timers(&mut self) {
        self.timer_contact_tick = self.tick;
        self.timer_resend_tick = self.tick;
        self.timeout_jitter = self.prng.up_to(self.config.timeout_jitter_ticks);
        // Whatever repair was outstanding may be for another view or primary: ask afresh.
        self.repair_requested_op = 0;
        self.repair_progress_tick = self.tick;
    }

    /// Writes view, log view and commit point durably (before any message depending on them).
    pub(crate) fn persist_vsr_state(&mut self) -> Result<(), WalError> {
        let superblock = self.wal.superblock();
        let state = self.vsr_state();
        if state.view == superblock.view
            && state.log_view == superblock.log_view
            && state.commit_op == superblock.commit_op
        {
            return Ok(());
        }
        // The superblock speaks for the log (log_view, commit point): the log goes first.
        self.settle_log()?;
        self.wal.write_vsr_state(state)?;
        assert_eq!(self.wal.superblock().view, self.view);
        Ok(())
    }

    /// The protocol state to make durable: view, log view and the applied commit point.
    pub(crate) fn vsr_state(&self) -> VsrState {
        VsrState {
            view: self.view,
            log_view: self.log_view,
            commit_op: self.commit_min.max(self.wal.superblock().commit_op),
        }
    }

    /// Applies every op known committed that the local log holds and has verified.
    pub(crate) fn apply_committed(&mut self, out: &mut Outbox) -> Result<(), WalError> {
        let applicable = if self.status == Status::Normal && self.log_view == self.view {
            self.wal.last_op()
        } else {
            self.verified_op
        };
        let target = self.commit_max.min(applicable);
        self.apply_up_to(target, out)?;
        self.maybe_checkpoint()
    }

    pub(crate) fn apply_up_to(&mut self, target: Op, out: &mut Outbox) -> Result<(), WalError> {
        while self.commit_min < target {
            let op = self.commit_min + 1;
            let mut body = std::mem::take(&mut self.scratch_body);
            let header = self.wal.read(op, &mut body)?;
            self.apply_one(&header, &body, out);
            if self.applied.capacity() > 0 {
                if self.applied.len() == self.applied.capacity() {
                    self.applied.pop_front();
                }
                self.applied.push_back(AppliedOp {
                    header,
                    body: body.clone(),
                });
            }
            self.scratch_body = body;
        }
        assert!(self.commit_min >= target);
        // Applied ops are committed, hence canonical in every later view.
        self.verified_op = self.verified_op.max(self.commit_min);
        Ok(())
    }

    fn apply_one(&mut self, header: &RecordHeader, body: &[u8], out: &mut Outbox) {
        let op = header.op;
        assert_eq!(op, self.commit_min + 1, "ops apply in order");
        let requests_max = self.config.core.batch_requests_max;
        if let Err(error) = codec::decode_batch(
            body,
            codec::RequestOrigin::Log,
            requests_max,
            &mut self.scratch_requests,
        ) {
            // The body passed its checksum, so a primary wrote a batch the core cannot read.
            panic!("committed op {op} holds an undecodable batch: {error}");
        }
        let count = self.scratch_requests.len();
        self.scratch_outcomes.clear();
        self.scratch_outcomes
            .resize(count, Outcome::code(ResultCode::Ok));
        self.core.apply_batch(
            op,
            header.slot,
            &self.scratch_requests,
            &mut self.scratch_outcomes,
        );
        self.commit_min = op;
        assert_eq!(self.core.last_op(), op);
        if op % self.config.checkpoint_interval_ops == 0 {
            self.digests.record(op, self.core.state_digest());
        }
        self.reply_applied(op, out);
    }

    /// The primary's digest at an op this replica applied must equal its own: the same log
    /// applied to the same state cannot give two states. A difference means a replica's state
    /// is corrupt (memory, a bug, a configuration that slipped past the handshake): halt,
    /// naming both, rather than serve or acknowledge on top of it.
    fn compare_digest(&mut self, from: u8, view: View, digest_op: Op, digest: u128) {
        if digest_op == 0 || view != self.view || from != self.primary_of(view) {
            return;
        }
        let Some(ours) = self.digests.at(digest_op) else {
            return;
        };
        if ours != digest {
            self.halted = Some(format!(
                "replica {} halted: state digest after op {digest_op} is {ours:032x}, the primary's (replica {from}, view {view}) is {digest:032x}; the states diverged",
                self.config.replica_index
            ));
        }
    }

    /// The chain checksum of the local log's last op.
    pub(crate) fn last_checksum(&self) -> Checksum {
        self.wal.last_checksum()
    }

    /// The highest slot of the local log (the anchor of a new primary's clock).
    pub(crate) fn log_slot_max(&self) -> Slot {
        let log = self
            .wal
            .header(self.wal.last_op())
            .map_or(self.wal.checkpoint_info().slot, |h| h.slot);
        log.max(self.core.last_slot())
    }

    // ---- observation ----

    /// This replica's index.
    pub fn index(&self) -> u8 {
        self.config.replica_index
    }

    /// The bounds peers' messages are decoded with.
    pub fn message_limits(&self) -> MessageLimits {
        self.limits
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// The current view.
    pub fn view(&self) -> View {
        self.view
    }

    /// The view in which the local log was last brought up to date.
    pub fn log_view(&self) -> View {
        self.log_view
    }

    /// The protocol status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether this replica is the primary of its view, in normal status.
    pub fn is_primary(&self) -> bool {
        self.status == Status::Normal && self.primary.is_some()
    }

    /// The op of the latest checkpoint (0 before the first).
    pub fn checkpoint_op(&self) -> Op {
        self.wal.checkpoint_op()
    }

    /// The highest applied op.
    pub fn commit_min(&self) -> Op {
        self.commit_min
    }

    /// The highest op known to be committed.
    pub fn commit_max(&self) -> Op {
        self.commit_max
    }

    /// The local log's first op (what it retains starts there).
    pub fn first_op(&self) -> Op {
        self.wal.first_op()
    }

    /// The local log's last op.
    pub fn last_op(&self) -> Op {
        self.wal.last_op()
    }

    /// The header of `op`, if the local log holds it.
    pub fn header(&self, op: Op) -> Option<RecordHeader> {
        self.wal.header(op).copied()
    }

    /// The allocator (read-only).
    pub fn allocator(&self) -> &Allocator {
        &self.core
    }

    /// What opening the log found (torn tail, corruption cut away), for operators and tests.
    pub fn recovery(&self) -> &allocdb_wal::Recovery {
        self.wal.recovery()
    }

    /// Whether the durable `recovering` flag is set (see [`Status::Recovering`]).
    pub fn recovering_flag(&self) -> bool {
        self.wal.superblock().recovering
    }

    /// Whether the data directory is fresh: formatted and not yet caught up to any view's
    /// log (it votes and acknowledges nothing until it has; see `docs/replication.md`).
    pub fn fresh(&self) -> bool {
        self.wal.superblock().fresh
    }

    /// Why the replica halted, if it did (drop it and reopen from storage).
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Applied ops above `op` still in the trace (see `applied_trace_max`), oldest first.
    pub fn applied_since(&self, op: Op) -> impl Iterator<Item = &AppliedOp> {
        self.applied.iter().filter(move |a| a.header.op > op)
    }

    /// Peer messages refused so far because they broke the protocol's rules (a forged or
    /// broken peer): they were dropped, never applied.
    pub fn peer_messages_refused(&self) -> u64 {
        self.refused_messages
    }

    /// The last refused peer message: its sender and the rule it broke.
    pub fn last_refusal(&self) -> Option<(u8, &'static str)> {
        self.last_refusal
    }

    /// Tests only: makes every state digest this replica records from now on differ from the
    /// true one, as a diverged state would, to show the comparison catches it.
    #[doc(hidden)]
    pub fn tamper_state_digests(&mut self, xor: u128) {
        self.digests.tamper = xor;
    }

    /// Gives the storage back (to crash and reopen it).
    pub fn into_storage(self) -> S {
        self.wal.into_storage()
    }
}

/// Asserts a replica index is in range for arrays sized by [`REPLICAS_MAX`].
pub(crate) fn slot_of(replica: u8) -> usize {
    assert!(replica < REPLICAS_MAX);
    usize::from(replica)
}
