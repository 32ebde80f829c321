//! The replica task: the one owner of the [`Replica`], fed through bounded channels.
//!
//! Inputs are peer messages and session events ([`ControlInput`], awaited by their senders so
//! TCP back-pressure reaches peers), client request batches ([`ClientBatch`], offered with
//! `try_send` so a full queue becomes an explicit `overloaded` answer), and ticks. After a
//! round of inputs the outputs are dispatched: each peer gets one `Vec<Message>` (one write
//! per round), each client connection one `Vec<FrameReply>`. The driver never awaits an output
//! queue: a full peer queue drops messages (the protocol retransmits) and a full client queue
//! drops replies (the client retries with the same operation id); both are counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use allocdb_core::{Request, TableUsage};
use allocdb_vsr::frame::{FrameReply, FrameRequest, REQUESTS_PER_FRAME_MAX, Role};
use allocdb_vsr::{ClientRequest, Message, Outbox, Replica, Status};
use allocdb_wal::{CheckpointWrite, Storage, TailSync};
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, MissedTickBehavior};
use tracing::{info, warn};

use crate::clock::SlotClock;
use crate::disk_jobs::{DiskJobMode, DiskWorker};
use crate::metrics::Metrics;
use crate::spare_lists::{ReplyLists, RequestLists};
use crate::table_watch::TableWatch;

/// Inputs handled round by round, at most this many per round, so outputs flow regularly.
const INPUTS_PER_ROUND_MAX: u32 = 256;
/// A round that takes longer than this is logged: every client and peer waited that long.
const ROUND_SLOW: Duration = Duration::from_millis(100);
/// Messages the outbox holds between drains (every input is drained at once).
const OUTBOX_MESSAGES_MAX: u32 = 4096;
/// Replies the outbox holds between drains.
const OUTBOX_REPLIES_MAX: u32 = 65_536;

/// Peer traffic and session events.
#[derive(Debug)]
pub enum ControlInput {
    /// A decoded message from replica `from`.
    Peer {
        /// The sender's index (checked by the handshake).
        from: u8,
        /// The message.
        message: Message,
    },
    /// A client connection closed: forget its reply queue.
    ClientGone {
        /// The connection's id.
        client: u128,
    },
}

/// One client frame's requests.
#[derive(Debug)]
pub struct ClientBatch {
    /// The connection's id (replies are routed back to it).
    pub client: u128,
    /// The requests, in frame order.
    pub requests: Vec<FrameRequest>,
    /// Where the connection receives its replies.
    pub replies: mpsc::Sender<Vec<FrameReply>>,
}

/// The input that starts a round.
enum Input<S: Storage> {
    Synced(TailSync<S::Syncer>),
    Checkpointed(CheckpointWrite<S::Writer>),
    Tick,
    Control(ControlInput),
    Batch(ClientBatch),
}

/// What the replica looks like from outside, published after every round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    /// Its role.
    pub role: Role,
    /// Its view.
    pub view: u64,
    /// The primary of that view.
    pub primary_index: u8,
    /// The last op in its log.
    pub op: u64,
    /// The highest op known committed.
    pub commit: u64,
    /// The highest op applied.
    pub applied: u64,
    /// Leases past their deadline (by the last applied slot) not yet expired, up to 64.
    pub expiry_due: u32,
    /// Slots between the oldest such deadline and the last applied slot.
    pub expiry_lag_slots: u64,
    /// The slot of the last applied batch.
    pub slot: u64,
    /// Rows in use per core table.
    pub tables: TableUsage,
}

/// How the replica task runs.
#[derive(Clone, Copy, Debug)]
pub struct DriverOptions {
    /// Time between replica ticks.
    pub tick: Duration,
    /// The cluster's slot length.
    pub slot_ms: u64,
    /// The clock's rate error in ppm (see [`SlotClock::with_rate`]); 0 in production.
    pub clock_rate_ppm: i32,
    /// Where the log's syncs and the checkpoints' writes run.
    pub disk_jobs: DiskJobMode,
}

/// Why the replica task stopped on its own.
#[derive(Debug)]
pub struct Halted {
    /// The replica's reason.
    pub reason: String,
}

/// The replica task's state.
pub struct Driver<S: Storage> {
    replica: Replica<S>,
    outbox: Outbox,
    clock: SlotClock,
    options: DriverOptions,
    peers: Vec<Option<mpsc::Sender<Vec<Message>>>>,
    clients: BTreeMap<u128, mpsc::Sender<Vec<FrameReply>>>,
    pending_messages: Vec<Vec<Message>>,
    pending_replies: BTreeMap<u128, Vec<FrameReply>>,
    /// Reply lists the sessions wrote and gave back, for `pending_replies`.
    reply_lists: Arc<ReplyLists>,
    /// Request lists emptied here, given back for the sessions' next frames.
    request_lists: Arc<RequestLists>,
    /// The requests of this round's client frames (at most `INPUTS_PER_ROUND_MAX + 1`
    /// frames), handed to the replica in one call; reused.
    request_group: Vec<ClientRequest>,
    state: watch::Sender<ReplicaState>,
    metrics: Arc<Metrics>,
    expirations: Vec<Request>,
    table_watch: TableWatch,
    syncer: DiskWorker<TailSync<S::Syncer>>,
    checkpointer: DiskWorker<CheckpointWrite<S::Writer>>,
    /// When the checkpoint being written was begun, and its op (for the log lines).
    checkpoint_began: Option<(tokio::time::Instant, u64)>,
}

impl<S: Storage> Driver<S> {
    /// A driver for `replica`; `peers[i]` is the outbound queue of replica `i` (`None` for
    /// itself).
    pub fn new(
        mut replica: Replica<S>,
        options: DriverOptions,
        peers: Vec<Option<mpsc::Sender<Vec<Message>>>>,
        metrics: Arc<Metrics>,
    ) -> (Driver<S>, watch::Receiver<ReplicaState>) {
        assert_eq!(peers.len(), usize::from(replica.config().replica_count));
        assert!(
            peers[usize::from(replica.index())].is_none(),
            "no link to itself"
        );
        let expirations_max =
            usize::try_from(replica.config().core.expirations_per_batch_max).expect("u32 fits");
        let filler = Request {
            operation_id: 0,
            command: allocdb_core::Command::Revoke {
                lease: allocdb_core::LeaseId(0),
            },
        };
        // Checkpoints are written by `checkpointer`, never on this task.
        replica.detach_checkpoints();
        let initial = observe(&replica, &mut vec![filler; expirations_max]);
        let (state, state_rx) = watch::channel(initial);
        let driver = Driver {
            outbox: Outbox::new(OUTBOX_MESSAGES_MAX, OUTBOX_REPLIES_MAX),
            clock: SlotClock::with_rate(options.slot_ms, options.clock_rate_ppm),
            options,
            pending_messages: vec![Vec::new(); peers.len()],
            peers,
            clients: BTreeMap::new(),
            pending_replies: BTreeMap::new(),
            reply_lists: Arc::default(),
            request_lists: Arc::default(),
            request_group: Vec::with_capacity(REQUESTS_PER_FRAME_MAX as usize),
            state,
            metrics,
            expirations: vec![filler; expirations_max],
            table_watch: TableWatch::new(&replica.config().core),
            syncer: DiskWorker::new(options.disk_jobs.for_syncs(), "allocdb-log-sync"),
            checkpointer: DiskWorker::new(options.disk_jobs, "allocdb-checkpoint"),
            checkpoint_began: None,
            replica,
        };
        (driver, state_rx)
    }

    /// Where the client sessions give the reply lists they wrote back for reuse.
    pub fn reply_lists(&self) -> Arc<ReplyLists> {
        Arc::clone(&self.reply_lists)
    }

    /// Where the client sessions take the lists for their frames' requests.
    pub fn request_lists(&self) -> Arc<RequestLists> {
        Arc::clone(&self.request_lists)
    }

    /// Runs until `shutdown` turns true (after finishing the current round and syncing its
    /// prepares: every write acknowledged was durable on a majority before its reply) or the
    /// replica halts.
    ///
    /// # Errors
    /// [`Halted`] when the replica stopped on a storage error; the process must restart.
    pub async fn run(
        mut self,
        mut control: mpsc::Receiver<ControlInput>,
        mut requests: mpsc::Receiver<ClientBatch>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Replica<S>, Halted> {
        let mut ticker = tokio::time::interval(self.options.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // A checkpoint so slow that the log nears its bound: wait for it rather than fill
            // the log (in practice never: the file takes milliseconds, the bound a minute).
            if self.replica.checkpoint_overdue() && self.checkpointer.in_flight() {
                warn!("the checkpoint being written holds the log back; waiting for it");
                tokio::select! {
                    biased;
                    // A disk that hangs must not keep the replica from stopping.
                    _ = shutdown.changed() => if *shutdown.borrow() { break; },
                    write = self.checkpointer.finished() => self.on_checkpointed(write),
                }
                continue;
            }
            let first: Option<Input<S>> = tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                    None
                }
                sync = self.syncer.finished() => Some(Input::Synced(sync)),
                write = self.checkpointer.finished() => Some(Input::Checkpointed(write)),
                _ = ticker.tick() => Some(Input::Tick),
                Some(input) = control.recv() => Some(Input::Control(input)),
                Some(batch) = requests.recv() => Some(Input::Batch(batch)),
            };
            // Timed from the first input on, so a checkpoint it causes is counted.
            let round_start = self.clock.now();
            let checkpoint_before = self.replica.checkpoint_op();
            match first {
                Some(Input::Synced(sync)) => self.on_synced(sync),
                Some(Input::Checkpointed(write)) => self.on_checkpointed(write),
                Some(Input::Tick) => {
                    let slot = self.clock.slot();
                    self.replica.on_tick(slot, &mut self.outbox);
                    self.drain_outbox();
                }
                Some(Input::Control(input)) => self.on_control(input),
                Some(Input::Batch(batch)) => self.on_batch(batch),
                None => {}
            }
            // More inputs already waiting join this round, so their outputs go out together.
            for _ in 0..INPUTS_PER_ROUND_MAX {
                if let Some(sync) = self.syncer.try_finished() {
                    self.on_synced(sync);
                } else if let Some(write) = self.checkpointer.try_finished() {
                    self.on_checkpointed(write);
                } else if let Ok(input) = control.try_recv() {
                    self.on_control(input);
                } else if let Ok(batch) = requests.try_recv() {
                    self.on_batch(batch);
                } else {
                    break;
                }
            }
            self.hand_over_requests();
            self.dispatch();
            self.start_sync();
            self.start_checkpoint();
            self.report_slow_round(round_start, checkpoint_before);
            if let Some(reason) = self.replica.halted() {
                return Err(Halted {
                    reason: reason.to_string(),
                });
            }
        }
        // Stopping: the sync in flight comes back first, then whatever it did not cover is
        // synced here, and what that completes goes out.
        if self.syncer.in_flight() {
            let sync = self.syncer.finished().await;
            self.on_synced(sync);
        }
        // A checkpoint file being written is finished too, so the next start need not replay
        // what it covers (dropping it would be safe: recovery removes the half-made file).
        // Its removal part is not waited for: recovery removes obsolete files anyway.
        if self.checkpointer.in_flight() {
            let write = self.checkpointer.finished().await;
            if !write.is_reclaim() {
                let _ = self.replica.checkpoint_end(write);
            }
        }
        self.replica.sync_log(&mut self.outbox);
        self.drain_outbox();
        self.dispatch();
        // A sync that failed while stopping is a halt like any other: the process exits 1.
        if let Some(reason) = self.replica.halted() {
            return Err(Halted {
                reason: reason.to_string(),
            });
        }
        Ok(self.replica)
    }

    /// Send before sync: the round's prepares are on their links' queues already; now the
    /// log's unsynced tail is synced away from this task (one sync at a time: what is
    /// appended meanwhile waits for the next), so the local fsync overlaps the backups'
    /// receive-write-fsync-acknowledge and this task goes on taking inputs.
    fn start_sync(&mut self) {
        if self.syncer.in_flight() {
            return;
        }
        if let Some(sync) = self.replica.sync_log_begin() {
            self.syncer.start(sync);
        }
    }

    /// Logs a round (from its first input's handling to its dispatch) that stalled everyone
    /// for longer than [`ROUND_SLOW`], and the checkpoint begun or made current in it, if any
    /// (encoding the snapshot is the one part of a checkpoint left on this task).
    fn report_slow_round(&mut self, round_start: tokio::time::Instant, checkpoint_before: u64) {
        let took = self.clock.now().saturating_duration_since(round_start);
        if took <= ROUND_SLOW {
            return;
        }
        let checkpoint_op = self.replica.checkpoint_op();
        let checkpoint = if checkpoint_op == checkpoint_before {
            self.checkpoint_began
                .and_then(|(began, op)| (began >= round_start).then_some(op))
        } else {
            Some(checkpoint_op)
        };
        warn!(
            took_ms = took.as_millis(),
            checkpoint, "a replica round stalled requests and peers"
        );
    }

    /// A due checkpoint's snapshot is encoded here (the state is this task's) and its file
    /// written and synced by the checkpoint thread, while this task goes on taking inputs.
    fn start_checkpoint(&mut self) {
        if self.checkpointer.in_flight() {
            return;
        }
        if let Some(write) = self.replica.checkpoint_begin() {
            self.checkpoint_began = Some((self.clock.now(), write.op()));
            self.checkpointer.start(write);
        }
    }

    /// A part of a checkpoint is done. After its file it becomes current and the log before
    /// it goes: the segments' files are removed by the checkpoint thread too (the second part).
    fn on_checkpointed(&mut self, write: CheckpointWrite<S::Writer>) {
        let (op, bytes, file) = (write.op(), write.snapshot_len(), !write.is_reclaim());
        let next = self.replica.checkpoint_end(write);
        if file && self.replica.checkpoint_op() == op {
            let write_ms = self.checkpoint_began.map(|(began, _)| {
                self.clock
                    .now()
                    .saturating_duration_since(began)
                    .as_millis()
            });
            info!(op, bytes, write_ms, "checkpoint written");
        }
        match next {
            Some(next) => self.checkpointer.start(next),
            None => self.checkpoint_began = None,
        }
    }

    /// A sync is back: what it made durable counts (commits, replies, acknowledgements).
    fn on_synced(&mut self, sync: TailSync<S::Syncer>) {
        self.replica.sync_log_end(sync, &mut self.outbox);
        self.drain_outbox();
    }

    fn on_control(&mut self, input: ControlInput) {
        match input {
            ControlInput::Peer { from, message } => {
                assert_ne!(
                    from,
                    self.replica.index(),
                    "a link never delivers our own messages"
                );
                let refused = self.replica.peer_messages_refused();
                self.replica.on_message(from, &message, &mut self.outbox);
                let total = self.replica.peer_messages_refused();
                if total > refused {
                    self.metrics.peer_messages_refused.add(1);
                    // The first, then every thousandth: a flood must not flood the log too.
                    let report = total == 1 || total % 1_000 == 0;
                    if let Some((sender, reason)) = self.replica.last_refusal().filter(|_| report) {
                        warn!(
                            peer = sender,
                            message = message.name(),
                            reason,
                            refused_total = total,
                            "refused a peer message that breaks the protocol's rules"
                        );
                    }
                }
                self.drain_outbox();
            }
            ControlInput::ClientGone { client } => {
                self.clients.remove(&client);
            }
        }
    }

    /// Collects one frame's requests; the round's frames reach the replica together
    /// ([`Driver::hand_over_requests`]).
    fn on_batch(&mut self, batch: ClientBatch) {
        self.clients.entry(batch.client).or_insert(batch.replies);
        self.metrics
            .request_batch
            .observe(u64::try_from(batch.requests.len()).expect("bounded"));
        self.request_group
            .extend(batch.requests.iter().map(|request| ClientRequest {
                client_id: batch.client,
                request_id: request.request_id,
                operation: request.operation,
            }));
        self.request_lists.give_back(batch.requests);
    }

    /// One call for every frame of the round: the replica queues all their writes and then
    /// prepares them together, so frames that arrive together (many connections, or one
    /// connection with several frames in flight) cost one prepare and one fsync, not one each.
    fn hand_over_requests(&mut self) {
        if self.request_group.is_empty() {
            return;
        }
        // A fresh reading: the requests' prepare is stamped no earlier than when they arrived
        // (this round), not from the last tick (a lease's TTL counts from its reserve reaching
        // the primary).
        let clock_slot = self.clock.slot();
        self.replica.observe_clock(clock_slot);
        let group = std::mem::take(&mut self.request_group);
        self.replica.on_requests(&group, &mut self.outbox);
        self.request_group = group;
        self.request_group.clear();
        self.drain_outbox();
    }

    /// Moves the outbox's contents into per-destination buffers (keeps the outbox empty).
    fn drain_outbox(&mut self) {
        for envelope in self.outbox.messages.drain(..) {
            let to = usize::from(envelope.to);
            assert!(to < self.pending_messages.len() && to != usize::from(self.replica.index()));
            self.pending_messages[to].push(envelope.message);
        }
        for reply in self.outbox.replies.drain(..) {
            let reply_frame = FrameReply {
                request_id: reply.request_id,
                body: reply.body,
            };
            let reply_lists = &self.reply_lists;
            self.pending_replies
                .entry(reply.client_id)
                .or_insert_with(|| reply_lists.take())
                .push(reply_frame);
        }
        assert!(self.outbox.is_empty());
    }

    /// Hands every buffered output to its queue without waiting, and publishes the state.
    fn dispatch(&mut self) {
        for (to, messages) in self.pending_messages.iter_mut().enumerate() {
            if messages.is_empty() {
                continue;
            }
            let batch = std::mem::take(messages);
            let count = u64::try_from(batch.len()).expect("bounded");
            let Some(link) = &self.peers[to] else {
                unreachable!("no messages to ourselves")
            };
            if link.try_send(batch).is_err() {
                self.metrics.peer_messages_dropped.add(count);
            }
        }
        for (client, replies) in std::mem::take(&mut self.pending_replies) {
            let count = u64::try_from(replies.len()).expect("bounded");
            let Some(queue) = self.clients.get(&client) else {
                self.metrics.replies_dropped.add(count);
                self.reply_lists.give_back(replies);
                continue;
            };
            match queue.try_send(replies) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(replies)) => {
                    self.metrics.replies_dropped.add(count);
                    self.reply_lists.give_back(replies);
                }
                Err(mpsc::error::TrySendError::Closed(replies)) => {
                    self.metrics.replies_dropped.add(count);
                    self.reply_lists.give_back(replies);
                    self.clients.remove(&client);
                }
            }
        }
        self.metrics.outbox_dropped.set(self.outbox.dropped());
        let state = observe(&self.replica, &mut self.expirations);
        let now = self.clock.now();
        let _ = self.table_watch.observe(&state.tables, now);
        self.state.send_if_modified(|published| {
            let changed = *published != state;
            *published = state;
            changed
        });
    }
}

/// The replica's externally visible state.
fn observe<S: Storage>(replica: &Replica<S>, expirations: &mut [Request]) -> ReplicaState {
    let role = if replica.halted().is_some() {
        Role::Halted
    } else {
        match replica.status() {
            Status::Normal if replica.is_primary() => Role::Primary,
            Status::Normal => Role::Backup,
            Status::ViewChange => Role::ViewChange,
            Status::Recovering => Role::Recovering,
        }
    };
    let count = u64::from(replica.config().replica_count);
    let primary_index = u8::try_from(replica.view() % count).expect("below the replica count");
    let allocator = replica.allocator();
    let slot = allocator.last_slot();
    let due = allocator.due_expirations(slot, expirations);
    let oldest_deadline = expirations[..due]
        .iter()
        .filter_map(|request| match request.command {
            allocdb_core::Command::Expire { deadline_slot, .. } => Some(deadline_slot),
            _ => None,
        })
        .min();
    ReplicaState {
        role,
        view: replica.view(),
        primary_index,
        op: replica.last_op(),
        commit: replica.commit_max(),
        applied: replica.commit_min(),
        expiry_due: u32::try_from(due).expect("bounded by expirations_per_batch_max"),
        expiry_lag_slots: oldest_deadline.map_or(0, |deadline| slot.saturating_sub(deadline)),
        slot,
        tables: allocator.table_usage(),
    }
}
