//! The connection task: the only code that talks to replicas.
//!
//! Calls arrive on a bounded channel. The task drains every call waiting there into one
//! `ClientRequests` frame (that is the coalescing), keeps each call until it has a definite
//! answer or its deadline passes, and resends it with the same request and operation id when
//! the replica in use says `not_primary`, `overloaded`, goes silent, or drops the connection.
//!
//! Leader discovery: a `not_primary {view, primary}` answer (or a welcome from a backup) is
//! followed when its view is at least the highest view seen; a replica that stays silent for
//! `request_timeout` or refuses the connection is left for the next one in the list, and a
//! full round of failures backs off before the next round.
//!
//! Honesty about outcomes: a write is *in doubt* once it was sent on a connection that then
//! failed or went silent before answering it. When its deadline passes, an in-doubt (or still
//! outstanding) write is reported [`ClientError::Indefinite`]; a write that every replica
//! definitely refused to run (`overloaded`) or that never left the client is reported
//! [`ClientError::Unavailable`]. A `not_primary` answer makes a write in doubt: a primary
//! leaving its role gives that answer also for writes already prepared, which may commit.
//!
//! Exactly-once: a write the caller gave no operation id waits until the driver has a
//! registered session (it registers one, with a `register_session` write of operation id 0,
//! when the first such write arrives) and a request number inside the window
//! ([`crate::numbering`]); its session key then never changes across resends. A write
//! answered `session_evicted` that was never in doubt did not execute, so it is numbered on a
//! new session and sent again; one that was in doubt may have executed before the eviction
//! and is reported [`ClientError::Indefinite`]. `request_stale` on a call the driver still
//! waits for can only mean its stored answer is gone (the window guarantees it is kept
//! otherwise), so that call too is indefinite: it may have executed, it never will again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allocdb_core::ids::{OperationKey, SessionId, session_id_at};
use allocdb_core::{Command, OperationId, Request, ResultCode};
use allocdb_protocol::frame::{self, FrameKind, FrameReply, FrameRequest, Role};
use allocdb_protocol::{ClientOperation, ReplyBody};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;

use crate::error::ClientError;
use crate::numbering::Numbering;
use crate::options::ClientOptions;
use crate::session::{Received, Session, SessionError};
use crate::tls::Transport;

/// Consecutive `not_primary` hops followed without pausing; more means replicas disagree
/// (a view change in progress), so the driver backs off instead of spinning.
const HOPS_WITHOUT_BACKOFF_MAX: u32 = 8;
/// What finished calls may leave behind beyond twice the pending calls before it is dropped
/// (see `Driver::forget_finished_calls`): rebuilding tiny queues every call would cost more
/// than it saves.
const FINISHED_SLACK: usize = 64;

/// Request ids of the driver's own requests (`register_session`) have this bit set; callers'
/// request ids count up from 1 and never reach it.
const DRIVER_REQUEST_BIT: u64 = 1 << 63;

/// A definite answer, with the operation id the write carried (the driver picks session keys).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) body: AnswerBody,
    pub(crate) operation_id: OperationId,
}

/// A reply as it travels to its caller. Small on purpose: it crosses a oneshot and is moved
/// through the caller's futures, and a whole `ReplyBody` is over 350 bytes (a read's lease
/// view holds a bundle). A committed write, the hot path, keeps only its position and
/// outcome; any other reply is boxed.
#[derive(Debug)]
pub(crate) enum AnswerBody {
    /// `ReplyBody::Committed`.
    Committed {
        op: allocdb_core::Op,
        index: u32,
        outcome: allocdb_core::Outcome,
    },
    /// Any other reply.
    Other(Box<ReplyBody>),
}

impl AnswerBody {
    fn of(body: &ReplyBody) -> AnswerBody {
        match *body {
            ReplyBody::Committed { op, index, outcome } => {
                AnswerBody::Committed { op, index, outcome }
            }
            other => AnswerBody::Other(Box::new(other)),
        }
    }

    /// The reply this answer carries (for messages about an unexpected one).
    pub(crate) fn reply(&self) -> ReplyBody {
        match self {
            AnswerBody::Committed { op, index, outcome } => ReplyBody::Committed {
                op: *op,
                index: *index,
                outcome: *outcome,
            },
            AnswerBody::Other(body) => **body,
        }
    }
}

/// One caller's request, travelling from [`crate::Client`] to the driver.
pub(crate) struct Call {
    /// For a write the driver numbers (`needs_key`), its operation id is 0 until numbered.
    pub(crate) operation: ClientOperation,
    /// The caller gave no operation id: the driver assigns a session key.
    pub(crate) needs_key: bool,
    /// Not a request: the caller waits until the client has a session, and is answered with
    /// the registration's position (never sent; `needs_key` is set too).
    pub(crate) session_only: bool,
    pub(crate) request_id: u64,
    pub(crate) deadline: Instant,
    /// `None` for the driver's own requests.
    pub(crate) reply: Option<oneshot::Sender<Result<Answer, ClientError>>>,
    /// Held until the call is answered: the in-flight bound (`None` for the driver's own).
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// Counters shared with [`crate::Client::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) requests_sent: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) view_max: AtomicU64,
    /// The highest op seen in any answer (application keys are issued after it).
    pub(crate) op_max_seen: AtomicU64,
    /// The live session, or 0.
    pub(crate) session_id: AtomicU64,
    /// Sessions registered.
    pub(crate) registrations: AtomicU64,
    /// Sessions found evicted.
    pub(crate) evictions: AtomicU64,
}

/// Which key a pending call carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    /// Reads, writes with the caller's operation id, and `register_session`.
    Fixed,
    /// Waiting for a session and a request number: not sendable yet.
    Awaiting,
    /// Numbered on a session.
    Session { session: SessionId, request: u64 },
}

struct Pending {
    call: Box<Call>,
    key: Key,
    /// The frame it was last sent in (valid while `outstanding`).
    frame_seq: u64,
    /// Sent on the current session and not yet answered.
    outstanding: bool,
    /// Sent on an earlier session that failed before answering: may have executed.
    in_doubt: bool,
    /// Consecutive `overloaded` / `read_timeout` answers, for backoff.
    refusals: u32,
}

impl Pending {
    fn operation_id(&self) -> Option<u128> {
        match self.call.operation {
            ClientOperation::Write(request) => Some(request.operation_id),
            ClientOperation::Read { .. } => None,
        }
    }

    /// Gives the call a new key (a session key, or 0 while it waits for one).
    fn set_key(&mut self, key: Key) {
        let ClientOperation::Write(request) = &mut self.call.operation else {
            unreachable!("only writes are numbered");
        };
        request.operation_id = match key {
            Key::Session { session, request } => OperationKey::Session { session, request }.id(),
            Key::Awaiting => 0,
            Key::Fixed => unreachable!("a numbered call stays numbered"),
        };
        self.key = key;
    }
}

/// The connection task's state.
pub(crate) struct Driver {
    options: ClientOptions,
    /// Plaintext or TLS, for every session this driver opens.
    transport: Transport,
    client_id: u128,
    cluster_id: u128,
    /// Boxed by the caller: a call is hundreds of bytes (a bundle of ids), and moved by value
    /// it was copied at every hand-off (into the channel, out of it, into the pending map:
    /// a quarter of the load generator's `memmove` in the benchmark profile).
    calls: mpsc::Receiver<Box<Call>>,
    calls_closed: bool,
    /// Ordered so resends go out in call order (and a simulation replays identically).
    /// A B-tree shifts its values on every insert and remove: a pending call is small (its
    /// call boxed).
    pending: BTreeMap<u64, Pending>,
    unsent: VecDeque<u64>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    backoffs: BinaryHeap<Reverse<(Instant, u64)>>,
    session: Option<Session>,
    /// When the current session last made progress (answered, or began owing an answer).
    progress_at: Instant,
    outstanding_count: u32,
    /// Requests still unanswered per frame of the current session, by frame number.
    frames_outstanding: BTreeMap<u64, u32>,
    frame_seq_next: u64,
    replica: usize,
    view_max: u64,
    failures_in_row: u32,
    hops_in_row: u32,
    reconnect_at: Instant,
    last_error: String,
    requests_per_frame_max: u32,
    counters: Arc<Counters>,
    send_buf: Vec<u8>,
    batch: Vec<FrameRequest>,
    replies: Vec<FrameReply>,
    /// Request numbers of the live session.
    numbering: Numbering,
    /// Calls waiting for a session key, in call order.
    awaiting_key: BTreeSet<u64>,
    /// The pending `register_session`, if any.
    register_request: Option<u64>,
    /// Where the live session was registered (answered to `session_only` calls).
    session_position: (u64, u32),
    /// Consecutive failed registrations, for backoff.
    register_failures: u32,
    /// Not before this instant is a failed registration tried again.
    register_at: Instant,
    own_request_next: u64,
}

/// The key window a welcome allows: the replicas' answers per session, capped by the calls
/// this client may have in flight (more numbers than calls would never be used).
fn key_window(options: &ClientOptions, welcome: &frame::Welcome) -> u32 {
    options
        .in_flight_max
        .min(welcome.session_requests_max)
        .max(1)
}

impl Driver {
    /// A driver that starts with an already open `session`.
    pub(crate) fn new(
        options: ClientOptions,
        transport: Transport,
        client_id: u128,
        calls: mpsc::Receiver<Box<Call>>,
        session: Session,
        counters: Arc<Counters>,
    ) -> Driver {
        let requests_per_frame_max = options
            .batch_requests_max
            .min(session.welcome.requests_per_frame_max)
            .min(frame::REQUESTS_PER_FRAME_MAX);
        assert!(requests_per_frame_max > 0);
        let now = Instant::now();
        let numbering = Numbering::new(key_window(&options, &session.welcome));
        Driver {
            numbering,
            awaiting_key: BTreeSet::new(),
            register_request: None,
            session_position: (0, 0),
            register_failures: 0,
            register_at: now,
            own_request_next: DRIVER_REQUEST_BIT | 1,
            client_id,
            cluster_id: session.cluster_id,
            calls,
            calls_closed: false,
            pending: BTreeMap::new(),
            unsent: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            backoffs: BinaryHeap::new(),
            progress_at: now,
            outstanding_count: 0,
            frames_outstanding: BTreeMap::new(),
            frame_seq_next: 1,
            replica: session.replica,
            view_max: session.welcome.view,
            failures_in_row: 0,
            hops_in_row: 0,
            reconnect_at: now,
            last_error: String::new(),
            requests_per_frame_max,
            counters,
            send_buf: Vec::new(),
            batch: Vec::new(),
            replies: Vec::new(),
            session: Some(session),
            options,
            transport,
        }
    }

    /// Runs until every [`crate::Client`] handle is dropped and every call is finished.
    pub(crate) async fn run(mut self) {
        let mut incoming = Vec::new();
        loop {
            let now = Instant::now();
            self.expire_deadlines(now);
            self.release_backoffs(now);
            self.check_silence(now);
            if self.calls_closed && self.pending.is_empty() {
                return;
            }
            self.ensure_registration(now);
            if self.session.is_none() && !self.pending.is_empty() && now >= self.reconnect_at {
                self.reconnect().await;
                continue;
            }
            if !self.unsent.is_empty()
                && self.session.is_some()
                && self.frames_outstanding.len() < self.options.frames_in_flight_max as usize
            {
                self.flush().await;
                continue;
            }
            let wake = self.next_wake();
            let limit = usize::try_from(self.requests_per_frame_max).expect("u32 fits");
            // Biased (fixed arm order) so a simulation replays exactly; answers first.
            tokio::select! {
                biased;
                result = receive(self.session.as_mut(), &mut self.replies) => {
                    self.on_received(result);
                }
                received = self.calls.recv_many(&mut incoming, limit), if !self.calls_closed => {
                    if received == 0 {
                        self.calls_closed = true;
                    }
                    for call in incoming.drain(..) {
                        self.admit(call);
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn admit(&mut self, call: Box<Call>) {
        let request_id = call.request_id;
        self.deadlines.push(Reverse((call.deadline, request_id)));
        let key = if call.needs_key {
            Key::Awaiting
        } else {
            Key::Fixed
        };
        let previous = self.pending.insert(
            request_id,
            Pending {
                call,
                key,
                frame_seq: 0,
                outstanding: false,
                in_doubt: false,
                refusals: 0,
            },
        );
        assert!(previous.is_none(), "request ids are unique per client");
        if key == Key::Awaiting {
            self.awaiting_key.insert(request_id);
            self.assign_keys();
        } else {
            self.unsent.push_back(request_id);
        }
    }

    /// Numbers waiting calls, in call order, while the session's window allows.
    fn assign_keys(&mut self) {
        while let Some(request_id) = self.awaiting_key.first().copied() {
            let Some(pending) = self.pending.get_mut(&request_id) else {
                self.awaiting_key.remove(&request_id);
                continue; // finished (deadline) while waiting
            };
            if pending.call.session_only {
                if self.numbering.session().is_none() {
                    return;
                }
                self.awaiting_key.remove(&request_id);
                let (op, index) = self.session_position;
                let registered = ReplyBody::Committed {
                    op,
                    index,
                    outcome: allocdb_core::Outcome::code(ResultCode::Ok),
                };
                // Nothing was numbered: `finish` must not release a number.
                pending.key = Key::Fixed;
                self.finish(request_id, Ok(registered));
                continue;
            }
            let Some((session, request)) = self.numbering.assign() else {
                return;
            };
            pending.set_key(Key::Session { session, request });
            self.awaiting_key.remove(&request_id);
            self.unsent.push_back(request_id);
        }
    }

    /// Registers a session when calls wait for keys and there is none and none being made.
    fn ensure_registration(&mut self, now: Instant) {
        if self.numbering.session().is_some()
            || self.register_request.is_some()
            || now < self.register_at
        {
            return;
        }
        // Waiting calls that finished (deadline) leave stale ids behind: drop them first.
        self.awaiting_key.retain(|id| self.pending.contains_key(id));
        if self.awaiting_key.is_empty() {
            return;
        }
        let request_id = self.own_request_next;
        self.own_request_next += 1;
        assert!(request_id & DRIVER_REQUEST_BIT != 0);
        let call = Box::new(Call {
            operation: ClientOperation::Write(Request {
                operation_id: 0,
                command: Command::RegisterSession {
                    client: self.client_id,
                },
            }),
            needs_key: false,
            session_only: false,
            request_id,
            deadline: now + self.options.call_timeout,
            reply: None,
            permit: None,
        });
        self.register_request = Some(request_id);
        self.admit(call);
    }

    /// The answer (or failure) of the driver's `register_session`.
    fn on_registered(&mut self, result: Result<ReplyBody, ClientError>) {
        self.register_request = None;
        let failure = match result {
            Ok(ReplyBody::Committed { op, index, outcome }) if outcome.code == ResultCode::Ok => {
                // The position is the replica's word: check it can name a session before
                // `session_id_at` asserts it.
                if op > 0 && op < 1 << 48 && index < 1 << 16 {
                    let session = session_id_at(op, index);
                    self.numbering.start(session);
                    self.session_position = (op, index);
                    self.counters.session_id.store(session, Ordering::Relaxed);
                    self.counters.registrations.fetch_add(1, Ordering::Relaxed);
                    self.register_failures = 0;
                    tracing::debug!(session, "session registered");
                    self.assign_keys();
                    return;
                }
                ClientError::Invalid {
                    reason: format!(
                        "register_session answered at an impossible position {op}:{index}"
                    ),
                }
            }
            Ok(ReplyBody::Committed { op, outcome, .. }) => ClientError::Rejected {
                code: outcome.code,
                op,
            },
            Ok(ReplyBody::Forbidden) => ClientError::Forbidden {
                reason: "this client may not register a session".into(),
            },
            Ok(other) => ClientError::Invalid {
                reason: format!("register_session answered {other:?}"),
            },
            Err(error) => {
                // No definite answer in time: a lost registration only leaves an unused
                // session for eviction to reclaim, so simply register again after a pause.
                tracing::debug!(%error, "register_session unanswered");
                self.register_failures = self.register_failures.saturating_add(1);
                self.register_at = Instant::now() + backoff(&self.options, self.register_failures);
                return;
            }
        };
        // A definite refusal (a cluster that does not know sessions, a forbidden role) will
        // not change by retrying: the calls waiting for a key fail with it, never sent.
        tracing::warn!(%failure, "register_session refused");
        let waiting: Vec<u64> = std::mem::take(&mut self.awaiting_key).into_iter().collect();
        for request_id in waiting {
            if self.pending.contains_key(&request_id) {
                self.finish(request_id, Err(failure.clone()));
            }
        }
    }

    /// `session` is gone. The call `request_id` was answered `session_evicted`: if it was
    /// never in doubt it did not execute, and is numbered again on a new session.
    fn on_evicted(&mut self, request_id: u64, session: SessionId) {
        if self.numbering.end(session) {
            tracing::info!(session, "session evicted; registering again");
            self.counters.session_id.store(0, Ordering::Relaxed);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            // Calls numbered on it that were never sent (or only definitively refused) did
            // not execute: number them again too.
            let unsent: Vec<u64> = self
                .pending
                .iter()
                .filter(|(_, p)| {
                    !p.outstanding
                        && !p.in_doubt
                        && matches!(p.key, Key::Session { session: s, .. } if s == session)
                })
                .map(|(id, _)| *id)
                .collect();
            for id in unsent {
                self.rekey(id);
            }
        }
        let pending = self
            .pending
            .get(&request_id)
            .expect("answered calls are pending");
        if pending.in_doubt {
            let operation_id = pending.operation_id().expect("numbered calls are writes");
            self.finish(request_id, Err(ClientError::Indefinite { operation_id }));
        } else {
            self.rekey(request_id);
        }
        self.register_at = Instant::now();
    }

    /// Puts a numbered call of a dead session back among the calls waiting for a key.
    fn rekey(&mut self, request_id: u64) {
        let pending = self
            .pending
            .get_mut(&request_id)
            .expect("rekeyed calls are pending");
        assert!(!pending.outstanding && !pending.in_doubt);
        pending.set_key(Key::Awaiting);
        self.awaiting_key.insert(request_id);
    }

    /// Sends every unsent call on the current session, `requests_per_frame_max` per frame, all
    /// frames in one write.
    async fn flush(&mut self) {
        self.send_buf.clear();
        let mut sent_count: u32 = 0;
        while !self.unsent.is_empty()
            && self.frames_outstanding.len() < self.options.frames_in_flight_max as usize
        {
            self.batch.clear();
            let frame_seq = self.frame_seq_next;
            while self.batch.len() < self.requests_per_frame_max as usize {
                let Some(request_id) = self.unsent.pop_front() else {
                    break;
                };
                let Some(pending) = self.pending.get_mut(&request_id) else {
                    continue; // finished while queued
                };
                if pending.outstanding || pending.key == Key::Awaiting {
                    continue;
                }
                pending.outstanding = true;
                pending.frame_seq = frame_seq;
                sent_count += 1;
                self.batch.push(FrameRequest {
                    request_id,
                    operation: pending.call.operation,
                });
            }
            if self.batch.is_empty() {
                break;
            }
            self.frame_seq_next += 1;
            let batch_len = u32::try_from(self.batch.len()).expect("bounded by frame max");
            self.frames_outstanding.insert(frame_seq, batch_len);
            let batch = &self.batch;
            frame::write_frame(
                &mut self.send_buf,
                FrameKind::ClientRequests,
                self.cluster_id,
                |body| frame::encode_requests(batch, body),
            );
            self.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
            self.counters
                .requests_sent
                .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
        }
        if sent_count == 0 {
            return;
        }
        if self.outstanding_count == 0 {
            self.progress_at = Instant::now();
        }
        self.outstanding_count += sent_count;
        let session = self.session.as_mut().expect("flush needs a session");
        let written =
            tokio::time::timeout(self.options.request_timeout, session.write(&self.send_buf)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.abandon_session(&error.to_string(), true),
            Err(_) => self.abandon_session("write timed out", true),
        }
    }

    fn on_received(&mut self, result: Result<Received, SessionError>) {
        match result {
            Ok(Received::Replies) => {
                self.progress_at = Instant::now();
                let mut replies = std::mem::take(&mut self.replies);
                // By reference: a reply is about 300 bytes, and draining moved each one.
                for reply in &replies {
                    self.on_reply(reply);
                }
                replies.clear();
                self.replies = replies;
            }
            Ok(Received::Error(message)) => {
                self.abandon_session(&format!("replica sent an error: {message}"), true);
            }
            Err(error) => self.abandon_session(&error.to_string(), true),
        }
    }

    fn on_reply(&mut self, reply: &FrameReply) {
        let Some(pending) = self.pending.get_mut(&reply.request_id) else {
            return; // an answer to an attempt we already resolved
        };
        // A primary that loses its role answers `not_primary` also for writes already in its
        // pipeline, and those may still commit in the next view: such a write is in doubt
        // (found by the simulator: `cargo run --release -p simulator -- --seed 30`).
        if matches!(reply.body, ReplyBody::NotPrimary { .. })
            && matches!(pending.call.operation, ClientOperation::Write(_))
        {
            pending.in_doubt = true;
        }
        let key = pending.key;
        if pending.outstanding {
            pending.outstanding = false;
            let frame_seq = pending.frame_seq;
            self.answered(frame_seq);
        }
        if let ReplyBody::Committed { op, .. } | ReplyBody::Read { op, .. } = reply.body {
            self.counters.op_max_seen.fetch_max(op, Ordering::Relaxed);
        }
        if let (ReplyBody::Committed { outcome, .. }, Key::Session { session, .. }) =
            (reply.body, key)
        {
            match outcome.code {
                ResultCode::SessionEvicted => {
                    self.on_evicted(reply.request_id, session);
                    self.assign_keys();
                    return;
                }
                ResultCode::RequestStale => {
                    let operation_id = self.pending[&reply.request_id]
                        .operation_id()
                        .expect("numbered calls are writes");
                    tracing::warn!(operation_id, "a pending write was refused as stale");
                    self.finish(
                        reply.request_id,
                        Err(ClientError::Indefinite { operation_id }),
                    );
                    return;
                }
                _ => {}
            }
        }
        match reply.body {
            ReplyBody::Committed { .. }
            | ReplyBody::Read { .. }
            | ReplyBody::Invalid
            | ReplyBody::Forbidden => {
                self.hops_in_row = 0;
                self.failures_in_row = 0;
                self.finish(reply.request_id, Ok(reply.body));
            }
            ReplyBody::Overloaded | ReplyBody::ReadTimeout => self.back_off(reply.request_id),
            ReplyBody::NotPrimary { view, primary } => {
                if !self.follow(view, usize::from(primary)) {
                    // The hint leads nowhere new (a view change in progress): wait a little
                    // rather than asking the same replica again at once.
                    self.back_off(reply.request_id);
                }
            }
        }
    }

    /// Counts one answer (or abandonment) of a request sent in frame `frame_seq`.
    fn answered(&mut self, frame_seq: u64) {
        assert!(self.outstanding_count > 0);
        self.outstanding_count -= 1;
        let remaining = self
            .frames_outstanding
            .get_mut(&frame_seq)
            .expect("an outstanding request's frame is outstanding");
        assert!(*remaining > 0);
        *remaining -= 1;
        if *remaining == 0 {
            self.frames_outstanding.remove(&frame_seq);
        }
    }

    /// Queues a refused call for a resend after its backoff.
    fn back_off(&mut self, request_id: u64) {
        let pending = self
            .pending
            .get_mut(&request_id)
            .expect("refused calls are pending");
        assert!(!pending.outstanding);
        pending.refusals = pending.refusals.saturating_add(1);
        let delay = backoff(&self.options, pending.refusals);
        self.backoffs
            .push(Reverse((Instant::now() + delay, request_id)));
    }

    /// Follows a `not_primary` hint if it is at least as new as anything seen; whether the
    /// driver moved to another replica (every pending call is then resent there).
    fn follow(&mut self, view: u64, primary: usize) -> bool {
        if view < self.view_max || primary >= self.options.addresses.len() {
            return false;
        }
        self.view_max = view;
        self.counters.view_max.fetch_max(view, Ordering::Relaxed);
        if primary == self.replica {
            return false;
        }
        tracing::debug!(view, primary, "following not_primary");
        self.abandon_session("not the primary", false);
        self.replica = primary;
        self.hop();
        true
    }

    /// Schedules the connection to a replica named by a hint: at once, unless hints have been
    /// going round in circles (replicas that disagree during a view change), then backing off.
    fn hop(&mut self) {
        self.hops_in_row = self.hops_in_row.saturating_add(1);
        self.reconnect_at = if self.hops_in_row > HOPS_WITHOUT_BACKOFF_MAX {
            Instant::now() + backoff(&self.options, self.hops_in_row - HOPS_WITHOUT_BACKOFF_MAX)
        } else {
            Instant::now()
        };
    }

    /// Drops the session; calls it still owed answers become in doubt and are queued again.
    /// `next` moves on to the next replica (a failure, as opposed to a redirect).
    fn abandon_session(&mut self, reason: &str, next: bool) {
        if let Some(session) = self.session.take() {
            tracing::debug!(replica = session.replica, reason, "leaving replica");
        }
        self.last_error = reason.to_string();
        for (request_id, pending) in &mut self.pending {
            if pending.outstanding {
                pending.outstanding = false;
                pending.in_doubt = true;
                self.unsent.push_back(*request_id);
            }
        }
        self.outstanding_count = 0;
        self.frames_outstanding.clear();
        if next {
            self.note_failure();
        }
    }

    fn note_failure(&mut self) {
        let replica_count = self.options.addresses.len();
        self.replica = (self.replica + 1) % replica_count;
        self.failures_in_row += 1;
        let round = u32::try_from(replica_count).expect("at most REPLICAS_MAX");
        self.reconnect_at = if self.failures_in_row % round == 0 {
            Instant::now() + backoff(&self.options, self.failures_in_row / round)
        } else {
            Instant::now()
        };
    }

    async fn reconnect(&mut self) {
        assert!(self.session.is_none());
        let address = self.options.addresses[self.replica].clone();
        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        let opened = Session::open(
            &self.transport,
            &address,
            self.replica,
            self.cluster_id,
            self.client_id,
            self.options.connect_timeout,
        )
        .await;
        match opened {
            Ok(session) => self.adopt(session),
            Err(error) => {
                tracing::debug!(address, %error, "connect failed");
                self.last_error = error.to_string();
                self.note_failure();
            }
        }
    }

    /// Uses a freshly opened session, or hops to the primary its welcome names.
    fn adopt(&mut self, session: Session) {
        let welcome = session.welcome;
        if welcome.view > self.view_max {
            self.view_max = welcome.view;
            self.counters
                .view_max
                .fetch_max(welcome.view, Ordering::Relaxed);
        }
        let primary = usize::from(welcome.primary_index);
        match welcome.role {
            Role::Primary => {}
            Role::Backup
                if welcome.view >= self.view_max
                    && primary != self.replica
                    && primary < self.options.addresses.len() =>
            {
                self.replica = primary;
                self.hop();
                return;
            }
            _ => {
                // Recovering, in a view change, or stale: try elsewhere; its answers would
                // only be `not_primary`.
                self.last_error = format!("replica {} is {}", self.replica, welcome.role.name());
                self.note_failure();
                return;
            }
        }
        self.requests_per_frame_max = self
            .options
            .batch_requests_max
            .min(welcome.requests_per_frame_max)
            .min(frame::REQUESTS_PER_FRAME_MAX);
        let session_welcome = session.welcome;
        self.session = Some(session);
        assert_eq!(self.outstanding_count, 0);
        assert!(self.frames_outstanding.is_empty());
        self.numbering
            .set_window(key_window(&self.options, &session_welcome));
        self.unsent.clear();
        self.unsent.extend(
            self.pending
                .iter()
                .filter(|(_, pending)| pending.key != Key::Awaiting)
                .map(|(id, _)| *id),
        );
        // Calls waiting out a backoff keep waiting; `flush` skips nothing else.
        let backing_off: BTreeSet<u64> = self.backoffs.iter().map(|Reverse((_, id))| *id).collect();
        self.unsent.retain(|id| !backing_off.contains(id));
    }

    /// A session that owes answers and has said nothing for `request_timeout` is abandoned.
    fn check_silence(&mut self, now: Instant) {
        if self.session.is_some()
            && self.outstanding_count > 0
            && now >= self.progress_at + self.options.request_timeout
        {
            self.abandon_session("no answer within the request timeout", true);
        }
    }

    fn release_backoffs(&mut self, now: Instant) {
        while let Some(Reverse((at, request_id))) = self.backoffs.peek().copied() {
            if at > now {
                break;
            }
            self.backoffs.pop();
            if self.pending.contains_key(&request_id) {
                self.unsent.push_back(request_id);
            }
        }
    }

    fn expire_deadlines(&mut self, now: Instant) {
        while let Some(Reverse((deadline, request_id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(pending) = self.pending.get(&request_id) else {
                continue;
            };
            let error = match pending.operation_id() {
                Some(operation_id) if pending.in_doubt || pending.outstanding => {
                    ClientError::Indefinite { operation_id }
                }
                None if pending.in_doubt || pending.outstanding => ClientError::Timeout,
                _ if pending.key == Key::Awaiting => ClientError::Unavailable {
                    reason: "the deadline passed waiting for a session and a request number \
                             (not sent)"
                        .to_string(),
                },
                _ => ClientError::Unavailable {
                    reason: if self.last_error.is_empty() {
                        "deadline passed while the cluster refused the request".to_string()
                    } else {
                        self.last_error.clone()
                    },
                },
            };
            self.finish(request_id, Err(error));
        }
    }

    fn finish(&mut self, request_id: u64, result: Result<ReplyBody, ClientError>) {
        let pending = self
            .pending
            .remove(&request_id)
            .expect("finish is called for pending calls only");
        if pending.outstanding {
            self.answered(pending.frame_seq);
        }
        if self.register_request == Some(request_id) {
            assert!(pending.call.reply.is_none());
            self.on_registered(result);
            return;
        }
        if let Key::Session { session, request } = pending.key {
            self.numbering.finish(session, request);
            self.assign_keys();
        }
        let operation_id = pending.operation_id().unwrap_or(0);
        if let Some(reply) = pending.call.reply {
            // The caller may have given up (dropped its future): nothing to tell it then.
            let _ = reply.send(result.map(|body| Answer {
                body: AnswerBody::of(&body),
                operation_id,
            }));
        }
        drop(pending.call.permit);
        self.forget_finished_calls();
    }

    /// Drops what finished calls left behind once it outnumbers the pending calls.
    /// - An answered call's deadline stays in the heap until it passes (`expire_deadlines`
    ///   skips it). Left there, a client answering 400,000 calls a second with the 10 s
    ///   default timeout held four million of them, and every push and pop missed the cache.
    /// - A call that ended unsent (no session) stays in `unsent` until a session is made.
    ///   Against an unreachable cluster that grew without end.
    ///
    /// Each is rebuilt only when it holds more than twice the pending calls plus a slack, so a
    /// rebuild is paid for by the calls finished since the previous one.
    fn forget_finished_calls(&mut self) {
        let bound = 2 * self.pending.len() + FINISHED_SLACK;
        let pending = &self.pending;
        if self.deadlines.len() > bound {
            self.deadlines
                .retain(|Reverse((_, request_id))| pending.contains_key(request_id));
        }
        if self.unsent.len() > bound {
            let mut kept = BTreeSet::new();
            self.unsent
                .retain(|request_id| pending.contains_key(request_id) && kept.insert(*request_id));
        }
        assert!(
            self.deadlines.len() <= bound && self.unsent.len() <= bound,
            "{} deadlines and {} unsent ids kept for {} pending calls",
            self.deadlines.len(),
            self.unsent.len(),
            self.pending.len()
        );
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        let mut wake = far;
        if let Some(Reverse((at, _))) = self.deadlines.peek() {
            wake = wake.min(*at);
        }
        if let Some(Reverse((at, _))) = self.backoffs.peek() {
            wake = wake.min(*at);
        }
        if self.session.is_some() && self.outstanding_count > 0 {
            wake = wake.min(self.progress_at + self.options.request_timeout);
        }
        if self.session.is_none() && !self.pending.is_empty() {
            wake = wake.min(self.reconnect_at);
        }
        if self.numbering.session().is_none()
            && self.register_request.is_none()
            && !self.awaiting_key.is_empty()
        {
            wake = wake.min(self.register_at);
        }
        wake
    }
}

/// Receives from the session, or waits forever when there is none.
async fn receive(
    session: Option<&mut Session>,
    replies: &mut Vec<FrameReply>,
) -> Result<Received, SessionError> {
    match session {
        Some(session) => session.receive(replies).await,
        None => std::future::pending().await,
    }
}

/// `backoff_min * 2^(attempt-1)`, capped at `backoff_max`.
fn backoff(options: &ClientOptions, attempt: u32) -> std::time::Duration {
    let shift = attempt.saturating_sub(1).min(16);
    options
        .backoff_min
        .saturating_mul(1 << shift)
        .min(options.backoff_max)
}
