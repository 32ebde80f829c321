//! One task per accepted connection: the first frame decides what the connection is (a peer
//! link, a client session, or a status probe), and any invalid frame gets an error frame that
//! names the problem before the connection closes. Nothing a connection sends can affect
//! another connection or the replica beyond the requests it is allowed to make.
//!
//! Every connection holds a [`Ticket`] (see [`crate::admission`] for the bounds)
//! and runs against three clocks: the TLS handshake and first frame must finish within
//! `handshake_timeout`, a client session closes after `idle_timeout` without a complete frame
//! in or a reply out, and a frame once started must keep the [`FramePace`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allocdb_vsr::ReplyBody;
use allocdb_vsr::frame::{
    self, ClientHello, ErrorCode, FrameHeader, FrameKind, FrameLimits, FrameReply, FrameRequest,
    PeerHandshake, REQUESTS_PER_FRAME_MAX, StatusReply, Welcome,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::admission::{ConnectionLimits, Ticket};
use crate::authz;
use crate::driver::{ClientBatch, ControlInput, ReplicaState};
use crate::frame_io::{self, FramePace, FrameReader, ReadError, sleep_until_option};
use crate::metrics::Metrics;
use crate::net;
use crate::peer::{self, BusOptions, Identity};
use crate::spare_lists::{ReplyLists, RequestLists};
use crate::tls::{Principal, ServerSecurity};
use allocdb_client::tls::Stream;

/// Reply batches a connection may have queued before the replica drops its replies.
const REPLY_QUEUE_BATCHES: usize = 256;
/// Requests whose arrival time a session remembers (for the latency histogram).
const LATENCY_TRACKED_MAX: usize = 16_384;

/// What every connection task shares.
pub struct ConnectionContext {
    /// Who this replica is.
    pub identity: Identity,
    /// The cluster's slot length (told to clients).
    pub slot_ms: u64,
    /// The bounds fixed at format that clients are told in the welcome.
    pub client_limits: ClientLimits,
    /// Peer messages and session events for the replica.
    pub control: mpsc::Sender<ControlInput>,
    /// Client batches for the replica.
    pub requests: mpsc::Sender<ClientBatch>,
    /// The replica's published state.
    pub state: watch::Receiver<ReplicaState>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Peer-link timeouts.
    pub bus: BusOptions,
    /// The bounds on connections (timeouts, pace).
    pub limits: ConnectionLimits,
    /// Turns true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// The next connection id.
    pub next_client: AtomicU64,
    /// TLS (and who each connection is) or plaintext.
    pub security: ServerSecurity,
    /// Where written reply lists go back to the replica task for reuse.
    pub reply_lists: Arc<ReplyLists>,
    /// Where the replica task gives emptied request lists back, for the next frame's requests.
    pub request_lists: Arc<RequestLists>,
}

/// The bounds fixed at format that a client needs to know (all told in the welcome): the
/// bounds of exactly-once (how many sessions and numbered writes per session the cluster
/// keeps, how long and how many application keys it remembers) and the longest TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Sessions kept at once.
    pub clients_max: u32,
    /// Answers kept per session.
    pub session_requests_max: u32,
    /// Application keys kept at once.
    pub operations_max: u32,
    /// How long an application key is kept, in slots.
    pub dedupe_window_slots: u64,
    /// The longest TTL a command may ask for, in slots.
    pub ttl_slots_max: u64,
}

impl ClientLimits {
    /// The limits of a cluster with core configuration `core`.
    pub fn of(core: &allocdb_core::Config) -> ClientLimits {
        ClientLimits {
            clients_max: core.clients_max,
            session_requests_max: core.session_requests_max,
            operations_max: core.operations_max,
            dedupe_window_slots: core.dedupe_window_slots,
            ttl_slots_max: core.ttl_slots_max,
        }
    }
}

impl ConnectionContext {
    fn status_reply(&self) -> StatusReply {
        let state = *self.state.borrow();
        StatusReply {
            replica_index: self.identity.replica_index,
            replica_count: self.identity.replica_count,
            role: state.role,
            view: state.view,
            op: state.op,
            commit: state.commit,
            applied: state.applied,
            config_mismatch: self.metrics.config_mismatches.summary().unwrap_or_default(),
        }
    }
}

/// Serves one accepted connection until it closes or fails; `ticket` is its admission.
pub async fn serve(stream: net::TcpStream, context: Arc<ConnectionContext>, mut ticket: Ticket) {
    let _ = stream.set_nodelay(true);
    context.metrics.connections.add(1);
    let Some(identified) = identify(stream, &context, &ticket).await else {
        return;
    };
    let Identified {
        read,
        mut write,
        reader,
        principal,
        header,
        body,
    } = identified;
    let admitted = match header.kind {
        FrameKind::PeerHandshake => ticket.into_peer(),
        _ => ticket.into_session(),
    };
    if let Err(refusal) = admitted {
        return send_error(
            &mut write,
            &context,
            ErrorCode::Overloaded,
            &refusal.to_string(),
        )
        .await;
    }
    match header.kind {
        FrameKind::PeerHandshake => {
            if let Err(text) = may_be_peer(principal, &body) {
                warn!(%principal, reason = %text, "refusing a peer link");
                return send_error(&mut write, &context, ErrorCode::Forbidden, &text).await;
            }
            let halves = (read, write, reader);
            let (control, metrics, shutdown) = (
                context.control.clone(),
                Arc::clone(&context.metrics),
                context.shutdown.clone(),
            );
            if let Err(end) = peer::run_inbound(
                context.identity.clone(),
                &body,
                halves,
                control,
                context.bus,
                metrics,
                shutdown,
            )
            .await
            {
                debug!(reason = %end, "inbound peer connection ended");
            }
        }
        FrameKind::ClientHello if matches!(principal, Principal::Replica(_)) => {
            let text = format!(
                "{principal} cannot open a client session: use a client role's certificate"
            );
            send_error(&mut write, &context, ErrorCode::Forbidden, &text).await;
        }
        FrameKind::ClientHello => match ClientHello::decode(&body) {
            Ok(hello) => {
                Session::new(&context, hello, principal)
                    .run(read, write, reader)
                    .await;
            }
            Err(error) => send_error(&mut write, &context, error.code(), &error.to_string()).await,
        },
        FrameKind::StatusRequest if !authz::may_read_status(principal) => {
            let text = format!("{principal} may not read status: use the operator role");
            send_error(&mut write, &context, ErrorCode::Forbidden, &text).await;
        }
        FrameKind::StatusRequest => serve_status(read, write, reader, &context).await,
        kind => {
            let text = format!(
                "a connection must start with peer_handshake, client_hello or status_request, not {}",
                kind.name()
            );
            send_error(&mut write, &context, ErrorCode::UnexpectedKind, &text).await;
        }
    }
    drop(ticket);
}

/// A connection past its TLS handshake and first frame.
struct Identified {
    read: tokio::io::ReadHalf<Stream>,
    write: tokio::io::WriteHalf<Stream>,
    reader: FrameReader,
    principal: Principal,
    header: FrameHeader,
    body: Vec<u8>,
}

/// The TLS handshake and the first frame, within `handshake_timeout` together, unless the
/// connection is evicted first; `None` once the connection has been answered and closed.
async fn identify(
    stream: net::TcpStream,
    context: &ConnectionContext,
    ticket: &Ticket,
) -> Option<Identified> {
    let limits = context.limits;
    let deadline = Instant::now() + limits.handshake_timeout;
    let accepted = tokio::select! {
        biased;
        () = ticket.evicted() => return None,
        accepted = tokio::time::timeout_at(deadline, context.security.accept(stream)) => accepted,
    };
    let (stream, principal) = match accepted {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(reason)) => {
            context.metrics.error_frames.add(1);
            debug!(%reason, "refusing a connection");
            return None;
        }
        Err(_) => {
            context.metrics.handshake_timeouts.add(1);
            debug!("no TLS handshake within {:?}", limits.handshake_timeout);
            return None;
        }
    };
    let (mut read, mut write) = tokio::io::split(stream);
    let mut reader = FrameReader::new(FrameLimits::client(context.identity.cluster_id));
    let first = tokio::select! {
        biased;
        () = ticket.evicted() => {
            let text = "too many connections that have not identified themselves: closing the oldest";
            send_error(&mut write, context, ErrorCode::Overloaded, text).await;
            return None;
        }
        first = tokio::time::timeout_at(deadline, reader.read_frame(&mut read)) => first,
    };
    match first {
        Ok(Ok((header, body))) => Some(Identified {
            read,
            write,
            reader,
            principal,
            header,
            body,
        }),
        Ok(Err(error)) => {
            refuse(&mut write, context, &error).await;
            None
        }
        Err(_) => {
            context.metrics.handshake_timeouts.add(1);
            let text = format!(
                "no complete first frame within {:?}",
                limits.handshake_timeout
            );
            send_error(&mut write, context, ErrorCode::Timeout, &text).await;
            None
        }
    }
}

/// Whether `principal` may open a peer link with the handshake `body`: only replica *i*'s
/// certificate may speak as replica *i* (any handshake, over plaintext).
fn may_be_peer(principal: Principal, body: &[u8]) -> Result<(), String> {
    let claimed = match PeerHandshake::decode(body) {
        Ok(handshake) => handshake.replica_index,
        // The link code answers an undecodable handshake with its own error.
        Err(_) => return Ok(()),
    };
    match principal {
        Principal::Insecure => Ok(()),
        Principal::Replica(index) if index == claimed => Ok(()),
        _ => Err(format!(
            "a peer link as replica {claimed} needs replica {claimed}'s certificate of this \
             cluster, not {principal}"
        )),
    }
}

async fn send_error<W: AsyncWrite + Unpin>(
    write: &mut W,
    context: &ConnectionContext,
    code: ErrorCode,
    text: &str,
) {
    context.metrics.error_frames.add(1);
    debug!(code = code.name(), text, "refusing a connection");
    frame_io::send_error(write, context.identity.cluster_id, code, text).await;
}

/// Answers a read error with its error frame, if it owes one.
async fn refuse<W: AsyncWrite + Unpin>(
    write: &mut W,
    context: &ConnectionContext,
    error: &ReadError,
) {
    if let Some((code, text)) = error.error_frame() {
        send_error(write, context, code, &text).await;
    }
}

/// A status probe: answers status requests until the asker closes.
async fn serve_status<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut read: R,
    mut write: W,
    mut reader: FrameReader,
    context: &ConnectionContext,
) {
    loop {
        let mut bytes = Vec::new();
        let status = context.status_reply();
        frame::write_frame(
            &mut bytes,
            FrameKind::StatusReply,
            context.identity.cluster_id,
            |b| status.encode(b),
        );
        if frame_io::write_all(&mut write, &bytes).await.is_err() {
            return;
        }
        let waited =
            tokio::time::timeout(context.limits.idle_timeout, reader.read_frame(&mut read));
        match waited.await {
            Ok(Ok((header, _))) if header.kind == FrameKind::StatusRequest => {}
            Ok(Ok((header, _))) => {
                let text = format!(
                    "a status session only takes status_request, not {}",
                    header.kind.name()
                );
                return send_error(&mut write, context, ErrorCode::UnexpectedKind, &text).await;
            }
            Ok(Err(error)) => return refuse(&mut write, context, &error).await,
            Err(_) => return,
        }
    }
}

/// A client session: request frames in, reply frames out.
struct Session<'a> {
    context: &'a ConnectionContext,
    principal: Principal,
    client: u128,
    replies_tx: mpsc::Sender<Vec<FrameReply>>,
    replies_rx: mpsc::Receiver<Vec<FrameReply>>,
    arrivals: BTreeMap<u64, Instant>,
    requests: Vec<FrameRequest>,
    out: Vec<u8>,
    /// When a frame last arrived complete or a reply went out.
    last_active: Instant,
}

impl<'a> Session<'a> {
    fn new(
        context: &'a ConnectionContext,
        hello: ClientHello,
        principal: Principal,
    ) -> Session<'a> {
        let client = u128::from(context.next_client.fetch_add(1, Ordering::Relaxed));
        debug!(client, client_id = hello.client_id, "client session");
        let (replies_tx, replies_rx) = mpsc::channel(REPLY_QUEUE_BATCHES);
        Session {
            context,
            principal,
            client,
            replies_tx,
            replies_rx,
            arrivals: BTreeMap::new(),
            requests: Vec::new(),
            out: Vec::new(),
            last_active: Instant::now(),
        }
    }

    fn welcome(&self) -> Welcome {
        let state = *self.context.state.borrow();
        Welcome {
            replica_index: self.context.identity.replica_index,
            replica_count: self.context.identity.replica_count,
            role: state.role,
            view: state.view,
            primary_index: state.primary_index,
            slot_ms: self.context.slot_ms,
            requests_per_frame_max: REQUESTS_PER_FRAME_MAX,
            clients_max: self.context.client_limits.clients_max,
            session_requests_max: self.context.client_limits.session_requests_max,
            operations_max: self.context.client_limits.operations_max,
            dedupe_window_slots: self.context.client_limits.dedupe_window_slots,
            ttl_slots_max: self.context.client_limits.ttl_slots_max,
        }
    }

    async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        mut self,
        mut read: R,
        mut write: W,
        mut reader: FrameReader,
    ) {
        let cluster_id = self.context.identity.cluster_id;
        let welcome = self.welcome();
        frame::write_frame(&mut self.out, FrameKind::ClientWelcome, cluster_id, |b| {
            welcome.encode(b);
        });
        if let Err(error) = self.flush(&mut write).await {
            debug!(%error, "client gone before the welcome");
        } else if let Err((code, text)) = self.serve(&mut read, &mut write, &mut reader).await {
            if let Some(code) = code {
                send_error(&mut write, self.context, code, &text).await;
            } else {
                debug!(client = self.client, reason = %text, "client session ended");
            }
        }
        let _ = self.context.control.try_send(ControlInput::ClientGone {
            client: self.client,
        });
    }

    /// Writes `self.out`; a client that reads nothing for `idle_timeout` is cut off.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, write: &mut W) -> std::io::Result<()> {
        let timeout = self.context.limits.idle_timeout;
        let result = tokio::time::timeout(timeout, frame_io::write_all(write, &self.out)).await;
        self.out.clear();
        result.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read no replies",
            ))
        })
    }

    /// The session loop; `Err((Some(code), text))` owes the client an error frame.
    async fn serve<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &mut self,
        read: &mut R,
        write: &mut W,
        reader: &mut FrameReader,
    ) -> Result<(), (Option<ErrorCode>, String)> {
        let mut shutdown = self.context.shutdown.clone();
        let limits = self.context.limits;
        loop {
            self.on_frames(reader)?;
            if !self.out.is_empty() {
                self.flush(write).await.map_err(|e| (None, e.to_string()))?;
            }
            // A frame under way is held to its pace; between frames, to the idle timeout.
            let slow_at = reader.pace_deadline(&limits.frame_pace);
            let idle_at = self.last_active + limits.idle_timeout;
            // Biased (fixed arm order) so a simulation replays exactly.
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Err((Some(ErrorCode::ShuttingDown), "the server is shutting down".to_string())),
                filled = reader.fill(read) => match filled {
                    Ok(_) => {}
                    Err(ReadError::Closed) => return Ok(()),
                    Err(error) => return Err((error.error_frame().map(|(code, _)| code), error.to_string())),
                },
                Some(replies) = self.replies_rx.recv() => {
                    self.write_replies(&replies);
                    self.context.reply_lists.give_back(replies);
                    while let Ok(more) = self.replies_rx.try_recv() {
                        self.write_replies(&more);
                        self.context.reply_lists.give_back(more);
                    }
                    self.flush(write).await.map_err(|e| (None, e.to_string()))?;
                }
                () = sleep_until_option(slow_at) => {
                    self.context.metrics.slow_frames.add(1);
                    return Err((Some(ErrorCode::Timeout), slow_text(&limits.frame_pace)));
                }
                () = tokio::time::sleep_until(idle_at), if slow_at.is_none() => {
                    self.context.metrics.idle_timeouts.add(1);
                    let text = format!("no request for {:?}: idle session closed", limits.idle_timeout);
                    return Err((Some(ErrorCode::Timeout), text));
                }
            }
        }
    }

    /// Handles every whole buffered frame; queues answers in `self.out`.
    fn on_frames(&mut self, reader: &mut FrameReader) -> Result<(), (Option<ErrorCode>, String)> {
        loop {
            let kind = match reader.next_frame() {
                Err(error) => return Err((Some(error.code()), error.to_string())),
                Ok(None) => return Ok(()),
                Ok(Some((header, body))) => {
                    if header.kind == FrameKind::ClientRequests {
                        // A list only while a frame is decoded and handed on: an idle
                        // session holds none (a full one is a few hundred KiB).
                        if self.requests.capacity() == 0 {
                            self.requests = self.context.request_lists.take();
                        }
                        frame::decode_requests(body, &mut self.requests)
                            .map_err(|e| (Some(e.code()), e.to_string()))?;
                    }
                    header.kind
                }
            };
            reader.consume();
            self.last_active = Instant::now();
            match kind {
                FrameKind::ClientRequests => self.submit(),
                FrameKind::StatusRequest if !authz::may_read_status(self.principal) => {
                    let text = format!(
                        "{} may not read status: use the operator role",
                        self.principal
                    );
                    return Err((Some(ErrorCode::Forbidden), text));
                }
                FrameKind::StatusRequest => {
                    let status = self.context.status_reply();
                    frame::write_frame(
                        &mut self.out,
                        FrameKind::StatusReply,
                        self.context.identity.cluster_id,
                        |b| status.encode(b),
                    );
                }
                kind => {
                    let text =
                        format!("a {} frame is not allowed in a client session", kind.name());
                    return Err((Some(ErrorCode::UnexpectedKind), text));
                }
            }
        }
    }

    /// Offers the decoded requests to the replica; a full queue answers them `overloaded`.
    fn submit(&mut self) {
        let metrics = &self.context.metrics;
        let count = self.requests.len();
        metrics.requests.add(u64::try_from(count).expect("bounded"));
        self.refuse_forbidden();
        if self.requests.is_empty() {
            let emptied = std::mem::take(&mut self.requests);
            self.context.request_lists.give_back(emptied);
            return;
        }
        let now = Instant::now();
        for request in &self.requests {
            if self.arrivals.len() < LATENCY_TRACKED_MAX {
                self.arrivals.insert(request.request_id, now);
            }
        }
        let batch = ClientBatch {
            client: self.client,
            requests: std::mem::take(&mut self.requests),
            replies: self.replies_tx.clone(),
        };
        if let Err(error) = self.context.requests.try_send(batch) {
            let batch = match error {
                mpsc::error::TrySendError::Full(batch)
                | mpsc::error::TrySendError::Closed(batch) => batch,
            };
            metrics
                .overloaded
                .add(u64::try_from(batch.requests.len()).expect("bounded"));
            let replies = batch
                .requests
                .iter()
                .map(|r| FrameReply {
                    request_id: r.request_id,
                    body: ReplyBody::Overloaded,
                })
                .collect::<Vec<_>>();
            self.context.request_lists.give_back(batch.requests);
            self.write_replies(&replies);
        }
        assert_eq!(
            self.requests.capacity(),
            0,
            "a session keeps no request list between frames"
        );
    }

    /// Answers `forbidden` to (and removes) every request this session's role may not make.
    fn refuse_forbidden(&mut self) {
        let principal = self.principal;
        if self
            .requests
            .iter()
            .all(|request| authz::allowed(principal, &request.operation))
        {
            return;
        }
        let mut refused = Vec::new();
        self.requests.retain(|request| {
            let allowed = authz::allowed(principal, &request.operation);
            if !allowed {
                refused.push(FrameReply {
                    request_id: request.request_id,
                    body: ReplyBody::Forbidden,
                });
            }
            allowed
        });
        self.context
            .metrics
            .forbidden
            .add(u64::try_from(refused.len()).expect("bounded"));
        debug!(client = self.client, %principal, refused = refused.len(), "forbidden requests");
        self.write_replies(&refused);
    }

    /// Encodes replies into `self.out` (frames of at most `REQUESTS_PER_FRAME_MAX`).
    fn write_replies(&mut self, replies: &[FrameReply]) {
        let now = Instant::now();
        self.last_active = now;
        for reply in replies {
            if matches!(reply.body, ReplyBody::Invalid) {
                self.context.metrics.requests_invalid.add(1);
            }
            if let Some(arrived) = self.arrivals.remove(&reply.request_id) {
                let micros =
                    u64::try_from(now.duration_since(arrived).as_micros()).unwrap_or(u64::MAX);
                self.context.metrics.request_latency_us.observe(micros);
            }
        }
        let chunk = usize::try_from(REQUESTS_PER_FRAME_MAX).expect("u32 fits");
        for part in replies.chunks(chunk) {
            frame::write_frame(
                &mut self.out,
                FrameKind::ClientReplies,
                self.context.identity.cluster_id,
                |b| frame::encode_replies(part, b),
            );
        }
    }
}

fn slow_text(pace: &FramePace) -> String {
    format!(
        "a frame arrived slower than {} bytes/s after a grace of {:?}",
        pace.bytes_per_second_min, pace.grace
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use allocdb_vsr::ReplyBody;
    use allocdb_vsr::frame::{
        self, ClientHello, FrameKind, FrameLimits, FrameReply, FrameRequest,
        REQUESTS_PER_FRAME_MAX, Role,
    };
    use tokio::sync::{mpsc, watch};

    use super::{ClientLimits, ConnectionContext, Session};
    use crate::driver::{ClientBatch, ReplicaState};
    use crate::metrics::Metrics;
    use crate::peer::BusOptions;
    use crate::settings::ClusterSettings;
    use crate::spare_lists::{ReplyLists, RequestLists};
    use crate::tls::{Principal, ServerSecurity};

    const CLUSTER: u128 = 0x0E11;

    /// A connection context whose queue to the replica holds `queue_max` frames.
    fn context(queue_max: usize) -> (ConnectionContext, mpsc::Receiver<ClientBatch>) {
        let (requests, requests_rx) = mpsc::channel(queue_max);
        let (control, _) = mpsc::channel(1);
        let state = ReplicaState {
            role: Role::Primary,
            view: 1,
            primary_index: 0,
            op: 0,
            commit: 0,
            applied: 0,
            expiry_due: 0,
            expiry_lag_slots: 0,
            slot: 0,
            tables: allocdb_core::TableUsage::default(),
        };
        let settings = ClusterSettings::new(CLUSTER, 0, 1, 10, allocdb_core::Config::small());
        let security = ServerSecurity::Insecure;
        let addresses = ["127.0.0.1:1".to_string()];
        let identity =
            crate::server::identity(&settings, &settings.replica_config(), &addresses, &security)
                .unwrap();
        let context = ConnectionContext {
            identity,
            slot_ms: settings.slot_ms,
            client_limits: ClientLimits::of(&settings.replica.core),
            control,
            requests,
            state: watch::channel(state).1,
            metrics: Arc::new(Metrics::default()),
            bus: BusOptions::default(),
            limits: crate::admission::ConnectionLimits::default(),
            shutdown: watch::channel(false).1,
            next_client: AtomicU64::new(1),
            security,
            reply_lists: Arc::new(ReplyLists::default()),
            request_lists: Arc::new(RequestLists::default()),
        };
        (context, requests_rx)
    }

    /// A frame's worth of reads, in a list taken from the pool as a frame's decode does.
    fn reads(context: &ConnectionContext, count: u64) -> Vec<FrameRequest> {
        let mut requests = context.request_lists.take();
        requests.extend((1..=count).map(|request_id| FrameRequest {
            request_id,
            operation: allocdb_vsr::ClientOperation::Read {
                query: allocdb_vsr::Query::Resource(request_id.into()),
                min_op: 0,
            },
        }));
        requests
    }

    /// Every reply in `out`, in order, and the number of frames they came in.
    fn replies(out: &[u8]) -> (Vec<frame::FrameReply>, usize) {
        let limits = FrameLimits {
            body_bytes_max: frame::FRAME_BODY_BYTES_LIMIT,
            cluster_id: CLUSTER,
        };
        let mut replies = Vec::new();
        let mut frames = 0;
        let mut at = 0;
        while at < out.len() {
            let header_bytes: &[u8; frame::HEADER_BYTES] =
                out[at..at + frame::HEADER_BYTES].try_into().unwrap();
            let header = frame::decode_header(header_bytes, &limits).unwrap();
            assert_eq!(header.kind, FrameKind::ClientReplies);
            let body = &out[at + frame::HEADER_BYTES..at + header.frame_bytes()];
            // Decoding fills a list afresh: one per frame.
            let mut decoded = Vec::new();
            frame::decode_replies(body, &mut decoded).unwrap();
            replies.append(&mut decoded);
            at += header.frame_bytes();
            frames += 1;
        }
        (replies, frames)
    }

    #[test]
    fn a_full_queue_answers_every_request_of_the_frame_overloaded() {
        let (context, mut queue) = context(1);
        let mut session = Session::new(&context, ClientHello { client_id: 9 }, Principal::Insecure);
        // The first frame takes the queue's one place.
        session.requests = reads(&context, 3);
        session.submit();
        assert!(session.out.is_empty(), "queued, not answered");
        assert_eq!(context.metrics.overloaded.get(), 0);
        // The second, as large as a frame may be, finds it full: each of its requests is
        // answered `overloaded` at once, in one reply frame.
        let largest = u64::from(REQUESTS_PER_FRAME_MAX);
        session.requests = reads(&context, largest);
        session.submit();
        let (answered, frames) = replies(&session.out);
        assert_eq!(frames, 1);
        assert_eq!(answered.len() as u64, largest, "one answer per request");
        assert!(answered.iter().zip(1..).all(
            |(reply, id)| reply.request_id == id && matches!(reply.body, ReplyBody::Overloaded)
        ));
        assert_eq!(context.metrics.overloaded.get(), largest);
        // The refused frame's list went back to the pool; the session keeps none.
        assert_eq!(session.requests.capacity(), 0);
        assert!(context.request_lists.take().capacity() as u64 >= largest);
        // The queued frame is intact, and once the replica took it there is room again.
        assert_eq!(queue.try_recv().unwrap().requests.len(), 3);
        session.out.clear();
        session.requests = reads(&context, 2);
        session.submit();
        assert!(session.out.is_empty());
        assert_eq!(queue.try_recv().unwrap().requests.len(), 2);
        assert_eq!(context.metrics.overloaded.get(), largest);
    }

    #[test]
    fn replies_beyond_a_frame_go_out_in_several() {
        let (context, _queue) = context(1);
        let mut session = Session::new(&context, ClientHello { client_id: 9 }, Principal::Insecure);
        let count = u64::from(REQUESTS_PER_FRAME_MAX) + 1;
        let refused: Vec<_> = (1..=count)
            .map(|request_id| FrameReply {
                request_id,
                body: ReplyBody::Forbidden,
            })
            .collect();
        session.write_replies(&refused);
        let (answered, frames) = replies(&session.out);
        assert_eq!(frames, 2);
        assert!(answered == refused, "every reply, in order");
    }
}
