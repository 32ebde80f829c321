//! The messages replicas exchange, and the requests and replies of clients.
//!
//! A message's `view` is always the sender's current view; a record header's `view` is the
//! view in which that op was first prepared. Encoding lives in `message_codec.rs`. The
//! client-facing types live in `allocdb-protocol` (a client needs them without the replica
//! and the log) and are re-exported here.

use allocdb_core::Op;
pub use allocdb_protocol::client::{
    ClientId, ClientOperation, ClientRequest, Query, ReadResult, Reply, ReplyBody,
};
use allocdb_wal::{CheckpointInfo, Checksum, RecordHeader, View};

/// One log entry in flight: a record header and the body it describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The record's header (op, view, slot, parent and chain checksum).
    pub header: RecordHeader,
    /// The encoded batch.
    pub body: Vec<u8>,
}

/// A peer-to-peer protocol message (VR Revisited, shaped like `TigerBeetle`'s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Primary → backups: append this op. `commit` piggybacks the primary's commit point.
    Prepare {
        /// Sender's view.
        view: View,
        /// Sender's commit point.
        commit: Op,
        /// The op.
        entry: Entry,
    },
    /// Backup → primary: I hold every op up to `op` of this view's log, durably.
    PrepareOk {
        /// Sender's view.
        view: View,
        /// Cumulative: every op up to this one.
        op: Op,
        /// The checksum of `op`, so the primary counts only its own record.
        checksum: Checksum,
    },
    /// Primary → backups heartbeat: the commit point, the head of the log, and a round id
    /// that backups echo so the primary can prove it still leads a majority.
    Commit {
        /// Sender's view.
        view: View,
        /// Sender's commit point.
        commit: Op,
        /// The primary's last op.
        head_op: Op,
        /// Heartbeat round.
        heartbeat: u64,
        /// The primary's state digest after applying `digest_op` (the latest multiple of
        /// `checkpoint_interval_ops` it applied; 0 and 0 before the first): a backup that
        /// applied the same op compares its own and halts on a difference.
        digest_op: Op,
        /// The digest (`Allocator::state_digest`).
        digest: u128,
    },
    /// Backup → primary: answers a heartbeat and repeats the cumulative acknowledgement.
    CommitAck {
        /// Sender's view.
        view: View,
        /// The heartbeat round answered.
        heartbeat: u64,
        /// Cumulative acknowledgement (0 while the backup is still joining the view).
        op: Op,
        /// The checksum of `op`.
        checksum: Checksum,
    },
    /// Any → all: I vote to leave view `view - 1` for `view`.
    StartViewChange {
        /// The proposed view.
        view: View,
    },
    /// Any → the new primary: my log, for the new primary to choose from.
    DoViewChange {
        /// The new view.
        view: View,
        /// The view in which the sender's log was last brought up to date.
        log_view: View,
        /// The sender's last op.
        op: Op,
        /// The checksum of `op` (needed when the suffix is empty, after a checkpoint).
        checksum: Checksum,
        /// The sender's commit point.
        commit: Op,
        /// The sender's last entries (at most `suffix_ops_max`, ending at `op`).
        suffix: Vec<Entry>,
        /// The sender is recovering from damage: it lost ops' bodies but knows that its log
        /// ended at `op` with `checksum` (so it never held anything else). It counts towards
        /// the majority only if the chosen log holds that head; it never supplies entries
        /// (`suffix` is empty, `commit` 0).
        damaged: bool,
    },
    /// New primary → all: the view has started; this is the head of its log.
    StartView {
        /// The new view.
        view: View,
        /// The last op of the view's log when it started.
        op: Op,
        /// Its checksum.
        checksum: Checksum,
        /// The primary's commit point.
        commit: Op,
        /// The log's last entries (at most `suffix_ops_max`, ending at `op`).
        suffix: Vec<Entry>,
    },
    /// Any → primary: send me the start of your view (a replica that joins late or recovers).
    RequestStartView {
        /// The sender's view.
        view: View,
    },
    /// Backup → primary: send me these ops.
    RequestPrepares {
        /// Sender's view.
        view: View,
        /// First op wanted.
        op_min: Op,
        /// Last op wanted.
        op_max: Op,
    },
    /// Backup → primary: send me the headers of these ops (to find where my log diverges).
    RequestHeaders {
        /// Sender's view.
        view: View,
        /// First op wanted.
        op_min: Op,
        /// Last op wanted.
        op_max: Op,
    },
    /// Primary → backup: the headers asked for (ascending, contiguous).
    Headers {
        /// Sender's view.
        view: View,
        /// The headers.
        headers: Vec<RecordHeader>,
    },
    /// Primary → backup: state transfer, sent when the backup asked for ops the primary no
    /// longer retains.
    Checkpoint {
        /// Sender's view.
        view: View,
        /// Describes the snapshot and anchors the log after it.
        info: CheckpointInfo,
        /// The encoded allocator state after `info.op`.
        snapshot: Vec<u8>,
    },
    /// Fresh replica (a newly formatted data directory) → all: what is your durable view,
    /// and are you fresh too? Answers bound the views its replica slot may have voted in
    /// before its disk was lost, or show that the whole cluster is new (genesis).
    RecoveryProbe {
        /// Sender's view.
        view: View,
        /// Drawn once per process: answers carrying another nonce are stale.
        nonce: u64,
    },
    /// Any → a fresh replica: the answer to its probe.
    RecoveryReply {
        /// The sender's durable view.
        view: View,
        /// The probe's nonce.
        nonce: u64,
        /// Whether the sender is fresh itself (its view then tells nothing).
        fresh: bool,
        /// Whether the sender holds nothing at all: fresh, or an empty log it never left
        /// view 0's for (what every replica of a new cluster answers).
        empty: bool,
    },
}

impl Message {
    /// The sender's view carried by every message.
    pub fn view(&self) -> View {
        match self {
            Message::Prepare { view, .. }
            | Message::PrepareOk { view, .. }
            | Message::Commit { view, .. }
            | Message::CommitAck { view, .. }
            | Message::StartViewChange { view }
            | Message::DoViewChange { view, .. }
            | Message::StartView { view, .. }
            | Message::RequestStartView { view }
            | Message::RequestPrepares { view, .. }
            | Message::RequestHeaders { view, .. }
            | Message::Headers { view, .. }
            | Message::Checkpoint { view, .. }
            | Message::RecoveryProbe { view, .. }
            | Message::RecoveryReply { view, .. } => *view,
        }
    }

    /// A short name for traces and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Prepare { .. } => "prepare",
            Message::PrepareOk { .. } => "prepare_ok",
            Message::Commit { .. } => "commit",
            Message::CommitAck { .. } => "commit_ack",
            Message::StartViewChange { .. } => "start_view_change",
            Message::DoViewChange { .. } => "do_view_change",
            Message::StartView { .. } => "start_view",
            Message::RequestStartView { .. } => "request_start_view",
            Message::RequestPrepares { .. } => "request_prepares",
            Message::RequestHeaders { .. } => "request_headers",
            Message::Headers { .. } => "headers",
            Message::Checkpoint { .. } => "checkpoint",
            Message::RecoveryProbe { .. } => "recovery_probe",
            Message::RecoveryReply { .. } => "recovery_reply",
        }
    }
}
