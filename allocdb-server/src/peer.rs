//! Replica-to-replica links.
//!
//! Every replica dials every other replica and sends its messages over that outbound link;
//! it receives the peer's messages on the link the peer dialed. Both ends send a ping whenever
//! they have written nothing for `ping_interval`, and both tear a link down when nothing at
//! all arrived for `idle_timeout`: a TCP stream can stall silently after a network fault (and
//! does in turmoil after a partition heals) while writes still succeed, so "no bytes in" is the
//! only reliable sign. The dialer then reconnects with exponential backoff. Messages queued
//! while a link is down are discarded: every message is best-effort and the protocol
//! retransmits (resends are idempotent).
//!
//! The handshake carries each side's [`Fingerprint`]; a link between replicas configured
//! differently is refused at both ends and recorded in [`ConfigMismatches`] (see
//! [`crate::fingerprint`]).

use std::sync::Arc;

use allocdb_vsr::frame::{self, ErrorBody, ErrorCode, FrameKind, FrameLimits, PeerHandshake};
use allocdb_vsr::{Message, MessageLimits, decode_message, encode_message, peer_body_bytes_max};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};
use tracing::{debug, info, warn};

use crate::driver::ControlInput;
use crate::fingerprint::{Fingerprint, LinkEnd as MismatchEnd};
use crate::frame_io::{self, FramePace, FrameReader, ReadError};
use crate::metrics::Metrics;
use allocdb_client::tls::{Stream, Transport};

/// Bytes of messages coalesced into one write.
const WRITE_BATCH_BYTES_MAX: usize = 1 << 20;

/// Timeouts of the peer bus.
#[derive(Clone, Copy, Debug)]
pub struct BusOptions {
    /// Send a ping after this long without writing.
    pub ping_interval: Duration,
    /// Tear a link down after this long without receiving a byte.
    pub idle_timeout: Duration,
    /// Give up a connection attempt (connect + handshake) after this long.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// How fast a frame must arrive once started: a peer that trickles a large frame (each
    /// byte in time for `idle_timeout`) is cut off anyway.
    pub frame_pace: FramePace,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            ping_interval: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            frame_pace: FramePace::default(),
        }
    }
}

/// Who this replica is on the bus.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The cluster.
    pub cluster_id: u128,
    /// This replica.
    pub replica_index: u8,
    /// The cluster size.
    pub replica_count: u8,
    /// Decoding bounds of peer messages.
    pub limits: MessageLimits,
    /// The configuration every peer must share, sent and compared in the handshake.
    pub fingerprint: Arc<Fingerprint>,
    /// How links are dialled: TLS with this replica's certificate, or plaintext.
    pub transport: Transport,
}

impl Identity {
    fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            cluster_id: self.cluster_id,
            body_bytes_max: peer_body_bytes_max(&self.limits),
        }
    }

    fn handshake_frame(&self) -> Vec<u8> {
        let handshake = self
            .fingerprint
            .handshake(self.replica_index, self.replica_count);
        let mut bytes = Vec::new();
        frame::write_frame(&mut bytes, FrameKind::PeerHandshake, self.cluster_id, |b| {
            handshake.encode(b);
        });
        bytes
    }
}

/// One end of a peer link after the handshake.
struct Link<R, W> {
    identity: Identity,
    peer: u8,
    read: R,
    write: W,
    reader: FrameReader,
    options: BusOptions,
    last_read: Instant,
    last_write: Instant,
    out: Vec<u8>,
}

/// Why a link ended.
type LinkEnd = String;

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Link<R, W> {
    fn new(
        identity: Identity,
        peer: u8,
        read: R,
        write: W,
        reader: FrameReader,
        options: BusOptions,
    ) -> Self {
        let now = Instant::now();
        Link {
            identity,
            peer,
            read,
            write,
            reader,
            options,
            last_read: now,
            last_write: now,
            out: Vec::new(),
        }
    }

    /// Writes `self.out` (whole frames), bounded by the idle timeout so a stalled stream
    /// cannot hold the link forever.
    async fn flush(&mut self) -> Result<(), LinkEnd> {
        let result = tokio::time::timeout(
            self.options.idle_timeout,
            frame_io::write_all(&mut self.write, &self.out),
        )
        .await;
        self.out.clear();
        match result {
            Ok(Ok(())) => {
                self.last_write = Instant::now();
                Ok(())
            }
            Ok(Err(error)) => Err(format!("write failed: {error}")),
            Err(_) => Err("write stalled".to_string()),
        }
    }

    async fn fail(&mut self, code: ErrorCode, message: &str) -> LinkEnd {
        frame_io::send_error(&mut self.write, self.identity.cluster_id, code, message).await;
        format!("sent error {}: {message}", code.name())
    }

    /// Handles every whole frame buffered. Only pings, and on an inbound link peer messages,
    /// may arrive after the handshake.
    async fn on_frames(
        &mut self,
        deliver: Option<&mpsc::Sender<ControlInput>>,
        metrics: &Metrics,
    ) -> Result<(), LinkEnd> {
        loop {
            let (kind, message) = match self.reader.next_frame() {
                Err(error) => return Err(self.fail(error.code(), &error.to_string()).await),
                Ok(None) => return Ok(()),
                Ok(Some((header, body))) => match header.kind {
                    FrameKind::PeerPing => (header.kind, None),
                    FrameKind::PeerMessage if deliver.is_some() => (
                        header.kind,
                        Some(decode_message(body, &self.identity.limits)),
                    ),
                    FrameKind::Error => {
                        let reason = ErrorBody::decode(body).map_or_else(
                            |e| e.to_string(),
                            |b| format!("{}: {}", b.code.name(), b.message),
                        );
                        return Err(format!("peer sent an error frame: {reason}"));
                    }
                    kind => (kind, None),
                },
            };
            self.reader.consume();
            match (kind, message) {
                (FrameKind::PeerPing, _) => {}
                (_, Some(Ok(message))) => {
                    metrics.peer_messages.add(1);
                    let input = ControlInput::Peer {
                        from: self.peer,
                        message,
                    };
                    if deliver.expect("checked above").send(input).await.is_err() {
                        return Err("the replica stopped".to_string());
                    }
                }
                (_, Some(Err(error))) => {
                    return Err(self
                        .fail(ErrorCode::Malformed, &format!("peer message: {error}"))
                        .await);
                }
                (kind, None) => {
                    let text = format!("a {} frame is not allowed on a peer link", kind.name());
                    return Err(self.fail(ErrorCode::UnexpectedKind, &text).await);
                }
            }
        }
    }

    /// Runs the link until it fails, stalls, or `shutdown`. `outgoing` is the replica's queue
    /// for this peer (outbound links); `deliver` takes received messages (inbound links).
    async fn run(
        &mut self,
        mut outgoing: Option<&mut mpsc::Receiver<Vec<Message>>>,
        deliver: Option<&mpsc::Sender<ControlInput>>,
        metrics: &Metrics,
        shutdown: &mut watch::Receiver<bool>,
    ) -> LinkEnd {
        loop {
            if let Err(end) = self.on_frames(deliver, metrics).await {
                return end;
            }
            let ping_at = self.last_write + self.options.ping_interval;
            let stall_at = self.last_read + self.options.idle_timeout;
            let slow_at = self.reader.pace_deadline(&self.options.frame_pace);
            let outgoing_recv = async {
                match outgoing.as_deref_mut() {
                    Some(queue) => queue.recv().await,
                    None => std::future::pending().await,
                }
            };
            // Biased (fixed arm order) so a simulation replays exactly; reads come before
            // writes so a busy outgoing queue cannot starve the stall detector.
            tokio::select! {
                biased;
                _ = shutdown.changed() => return "shutting down".to_string(),
                read = self.reader.fill(&mut self.read) => match read {
                    Ok(_) => self.last_read = Instant::now(),
                    Err(ReadError::Closed) => return "closed by the peer".to_string(),
                    Err(error) => {
                        if let Some((code, text)) = error.error_frame() {
                            return self.fail(code, &text).await;
                        }
                        return error.to_string();
                    }
                },
                batch = outgoing_recv => {
                    let Some(batch) = batch else { return "the replica stopped".to_string() };
                    self.encode(&batch);
                    // Coalesce whatever else is queued into the same write.
                    while self.out.len() < WRITE_BATCH_BYTES_MAX {
                        let Some(Ok(more)) = outgoing.as_deref_mut().map(mpsc::Receiver::try_recv) else { break };
                        self.encode(&more);
                    }
                    if let Err(end) = self.flush().await { return end; }
                }
                () = tokio::time::sleep_until(ping_at) => {
                    frame::write_frame(&mut self.out, FrameKind::PeerPing, self.identity.cluster_id, |_| {});
                    if let Err(end) = self.flush().await { return end; }
                }
                () = tokio::time::sleep_until(stall_at) => {
                    return format!("nothing received for {:?}: stalled link", self.options.idle_timeout);
                }
                () = frame_io::sleep_until_option(slow_at) => {
                    metrics.slow_frames.add(1);
                    let text = format!("a frame arrived slower than {} bytes/s", self.options.frame_pace.bytes_per_second_min);
                    return self.fail(ErrorCode::Timeout, &text).await;
                }
            }
        }
    }

    fn encode(&mut self, batch: &[Message]) {
        for message in batch {
            frame::write_frame(
                &mut self.out,
                FrameKind::PeerMessage,
                self.identity.cluster_id,
                |b| encode_message(message, b),
            );
        }
    }
}

/// Dials replica `peer` at `address` and keeps a link to it up, sending the replica's
/// messages for it, until `shutdown`.
pub async fn run_outbound(
    identity: Identity,
    peer: u8,
    address: String,
    mut outgoing: mpsc::Receiver<Vec<Message>>,
    options: BusOptions,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    assert_ne!(peer, identity.replica_index);
    let mut backoff = options.backoff_min;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let dialed = dial(&identity, peer, &address);
        match tokio::time::timeout(options.connect_timeout, dialed).await {
            Ok(Ok((read, write, reader))) => {
                backoff = options.backoff_min;
                metrics.peer_links.add(1);
                metrics.config_mismatches.clear(peer, MismatchEnd::Outbound);
                info!(peer, %address, "peer link up");
                let mut link = Link::new(identity.clone(), peer, read, write, reader, options);
                let end = link
                    .run(Some(&mut outgoing), None, &metrics, &mut shutdown)
                    .await;
                warn!(peer, %address, reason = %end, "peer link down");
            }
            Ok(Err(DialError::Mismatch(text))) => {
                metrics.peer_config_mismatches.add(1);
                metrics
                    .config_mismatches
                    .report(peer, MismatchEnd::Outbound, &text);
            }
            Ok(Err(DialError::Unreachable(error))) => {
                debug!(peer, %address, %error, "cannot reach peer");
            }
            Err(_) => debug!(peer, %address, "connecting to peer timed out"),
        }
        // Messages queued while the link is down are stale; the protocol resends.
        while outgoing.try_recv().is_ok() {}
        tokio::select! {
            biased;
            _ = shutdown.changed() => {}
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(options.backoff_max);
    }
}

type Halves = (
    tokio::io::ReadHalf<Stream>,
    tokio::io::WriteHalf<Stream>,
    FrameReader,
);

/// Why a dial did not produce a link.
enum DialError {
    /// No link now (refused, reset, timed out, not an AllocDB replica): retried quietly.
    Unreachable(String),
    /// The replica there is configured differently from this one (other cluster, settings,
    /// address list or index), by its verdict or ours: an operator must act.
    Mismatch(String),
}

/// Connects, sends our handshake, and checks the acceptor's answer: it must be replica
/// `peer` (the one our address list puts at `address`) with our fingerprint.
async fn dial(identity: &Identity, peer: u8, address: &str) -> Result<Halves, DialError> {
    let unreachable = |error: &dyn std::fmt::Display| DialError::Unreachable(error.to_string());
    // Over TLS the acceptor must hold replica `peer`'s certificate of this cluster.
    let server_name = allocdb_client::tls::replica_name(identity.cluster_id, peer);
    let stream = identity
        .transport
        .connect(address, &server_name)
        .await
        .map_err(|e| {
            let text = e.to_string();
            if text.starts_with("TLS handshake") {
                // A certificate that is not replica `peer`'s (or ours refused): an operator
                // must act, so it is reported like a configuration mismatch.
                DialError::Mismatch(format!("replica {peer} at {address}: {text}"))
            } else {
                unreachable(&e)
            }
        })?;
    let (mut read, mut write) = tokio::io::split(stream);
    frame_io::write_all(&mut write, &identity.handshake_frame())
        .await
        .map_err(|e| unreachable(&e))?;
    let mut reader = FrameReader::new(identity.frame_limits());
    let (header, body) = match reader.read_frame(&mut read).await {
        Ok(frame) => frame,
        // An answer in another cluster's frames: the acceptor's own frame says which.
        Err(ReadError::Frame(error @ frame::FrameError::WrongCluster { .. })) => {
            return Err(DialError::Mismatch(format!(
                "replica {peer} at {address} belongs to another cluster: {error}"
            )));
        }
        // A TLS alert in answer to our plaintext: the peer runs with certificates and this
        // replica with --insecure (the TLS side reports the same through its handshake error).
        Err(ReadError::Frame(error)) if error.is_tls_record() => {
            return Err(DialError::Mismatch(format!(
                "replica {peer} at {address}: {error}"
            )));
        }
        Err(error) => return Err(unreachable(&error)),
    };
    match header.kind {
        FrameKind::PeerHandshake => {
            let handshake = PeerHandshake::decode(&body).map_err(|e| unreachable(&e))?;
            let mismatch = |text: String| DialError::Mismatch(text);
            let answered = handshake
                .check_peer(identity.replica_index, identity.replica_count)
                .map_err(|e| mismatch(format!("replica {peer} at {address}: {e}")))?;
            if answered != peer {
                return Err(mismatch(format!(
                    "{address} is replica {peer} in our address list, but replica {answered} answers there"
                )));
            }
            identity
                .fingerprint
                .compare(peer, &handshake)
                .map_err(mismatch)?;
            Ok((read, write, reader))
        }
        FrameKind::Error => match ErrorBody::decode(&body) {
            Ok(refusal) if is_config_refusal(refusal.code) => Err(DialError::Mismatch(format!(
                "replica {peer} at {address} refused our link ({}): {}",
                refusal.code.name(),
                refusal.message
            ))),
            Ok(refusal) => Err(DialError::Unreachable(format!(
                "{}: {}",
                refusal.code.name(),
                refusal.message
            ))),
            Err(error) => Err(unreachable(&error)),
        },
        kind => Err(DialError::Unreachable(format!(
            "expected a peer handshake, got {}",
            kind.name()
        ))),
    }
}

/// Whether an acceptor's error code means "configured differently" rather than "not now".
fn is_config_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ConfigMismatch
            | ErrorCode::WrongCluster
            | ErrorCode::WrongReplica
            | ErrorCode::Forbidden
    )
}

/// Serves an inbound link whose first frame was a peer handshake with body `body`.
///
/// # Errors
/// Why the link ended (an invalid handshake, a bad frame, a stall, shutdown).
pub async fn run_inbound<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    identity: Identity,
    body: &[u8],
    (read, mut write, mut reader): (R, W, FrameReader),
    deliver: mpsc::Sender<ControlInput>,
    options: BusOptions,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let checked = PeerHandshake::decode(body).and_then(|handshake| {
        let peer = handshake.check_peer(identity.replica_index, identity.replica_count)?;
        match identity.fingerprint.compare(peer, &handshake) {
            Ok(()) => Ok(peer),
            Err(reason) => {
                metrics.peer_config_mismatches.add(1);
                metrics
                    .config_mismatches
                    .report(peer, MismatchEnd::Inbound, &reason);
                Err(frame::FrameError::ConfigMismatch { reason })
            }
        }
    });
    let peer = match checked {
        Ok(peer) => peer,
        Err(error) => {
            frame_io::send_error(
                &mut write,
                identity.cluster_id,
                error.code(),
                &error.to_string(),
            )
            .await;
            return Err(error.to_string());
        }
    };
    metrics.config_mismatches.clear(peer, MismatchEnd::Inbound);
    reader.set_limits(identity.frame_limits());
    if let Err(error) = frame_io::write_all(&mut write, &identity.handshake_frame()).await {
        return Err(format!("handshake answer to replica {peer}: {error}"));
    }
    debug!(peer, "inbound peer link up");
    let mut link = Link::new(identity, peer, read, write, reader, options);
    let end = link
        .run(None, Some(&deliver), &metrics, &mut shutdown)
        .await;
    debug!(peer, reason = %end, "inbound peer link down");
    Err(end)
}
