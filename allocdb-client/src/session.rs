//! One TCP session with one replica: connect, hello/welcome, and framed reads and writes.
//!
//! The driver owns at most one session at a time. Everything here is bounded: the connect and
//! the welcome each have a timeout, and the read buffer never grows past one maximal frame.

use std::time::Duration;

use allocdb_protocol::frame::{
    self, ClientHello, DecodedFrame, ErrorBody, FrameHeader, FrameKind, FrameLimits, FrameReply,
    Welcome,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::tls::{self, Stream, Transport};

type OwnedReadHalf = tokio::io::ReadHalf<Stream>;
type OwnedWriteHalf = tokio::io::WriteHalf<Stream>;

/// Why a session could not be opened or went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionError {
    /// The network failed or timed out: try another replica.
    Io(String),
    /// The replica spoke, but refused us or said something unintelligible.
    Protocol(String),
    /// The replica refused this client's certificate for a session: a configuration error.
    Forbidden(String),
    /// The replica belongs to another cluster: a configuration error, not a fault.
    WrongCluster { expected: u128, found: u128 },
    /// The other side does not speak this client's transport: a TLS record where a plaintext
    /// frame was expected, or no TLS record where TLS was. Most likely a replica in the other
    /// mode, but the evidence is a few unauthenticated bytes (any service at the address, or
    /// anyone on the path, could send them), so it is fatal only when every replica of the
    /// list answers so.
    Security(String),
    /// The replica at list position `position` says it is replica `found` of
    /// `replica_count`: the address list is in another order than the cluster's, or holds a
    /// different number of replicas. A configuration error: retrying cannot help. With TLS
    /// it is its certificate that says so (the handshake fails before any welcome), which
    /// does not tell the cluster's size: `replica_count` is then `None`.
    AddressList {
        address: String,
        position: usize,
        found: u8,
        replica_count: Option<u8>,
    },
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Io(reason)
            | SessionError::Protocol(reason)
            | SessionError::Security(reason) => f.write_str(reason),
            SessionError::Forbidden(reason) => write!(f, "forbidden: {reason}"),
            SessionError::WrongCluster { expected, found } => {
                write!(
                    f,
                    "wrong cluster: expected cluster {expected}, the replica serves cluster {found}"
                )
            }
            SessionError::AddressList {
                address,
                position,
                found,
                replica_count,
            } if usize::from(*found) != *position => {
                let of = match replica_count {
                    Some(count) => format!(" of {count}"),
                    None => " (its TLS certificate names it)".to_string(),
                };
                write!(
                    f,
                    "address list out of order: position {position} ({address}) is replica \
                     {found}{of}; list every replica's address in replica-index order (index 0 \
                     first)"
                )
            }
            SessionError::AddressList {
                address,
                replica_count: Some(replica_count),
                ..
            } => write!(
                f,
                "incomplete address list: {address} says the cluster has {replica_count} \
                 replicas; list all {replica_count} addresses, in replica-index order"
            ),
            SessionError::AddressList { address, .. } => {
                unreachable!("{address}: a certificate names the replica dialled only if it is one")
            }
        }
    }
}

/// An open session: the welcome it got and the two halves of its stream.
pub(crate) struct Session {
    pub(crate) replica: usize,
    pub(crate) cluster_id: u128,
    pub(crate) welcome: Welcome,
    reader: FrameReader,
    writer: OwnedWriteHalf,
}

/// The read half with its frame buffer, pre-sized for one maximal client frame.
struct FrameReader {
    stream: OwnedReadHalf,
    limits: FrameLimits,
    buf: Vec<u8>,
    filled: usize,
    scratch: Vec<FrameReply>,
}

/// What one read produced.
pub(crate) enum Received {
    /// Replies (appended to the caller's vector).
    Replies,
    /// The replica sent an error frame and will close.
    Error(String),
}

impl Session {
    /// Connects to `address` (replica `replica`), says hello and waits for the welcome.
    pub(crate) async fn open(
        transport: &Transport,
        address: &str,
        replica: usize,
        cluster_id: u128,
        client_id: u128,
        timeout: Duration,
    ) -> Result<Session, SessionError> {
        let index = u8::try_from(replica).expect("at most REPLICAS_MAX addresses");
        let server_name = if cluster_id == 0 {
            tls::replica_name_any_cluster(index)
        } else {
            tls::replica_name(cluster_id, index)
        };
        let stream = tokio::time::timeout(timeout, transport.connect(address, &server_name))
            .await
            .map_err(|_| SessionError::Io(format!("connect to {address}: timed out")))?
            .map_err(|error| connect_error(address, replica, cluster_id, &error))?;
        let (reader, mut writer) = tokio::io::split(stream);
        let mut hello = Vec::with_capacity(frame::HEADER_BYTES + 16);
        frame::write_frame(&mut hello, FrameKind::ClientHello, cluster_id, |body| {
            ClientHello { client_id }.encode(body);
        });
        tokio::time::timeout(timeout, writer.write_all(&hello))
            .await
            .map_err(|_| SessionError::Io(format!("hello to {address}: timed out")))?
            .map_err(|error| SessionError::Io(format!("hello to {address}: {error}")))?;
        let frame_bytes_max = frame::HEADER_BYTES
            + usize::try_from(frame::CLIENT_BODY_BYTES_MAX).expect("u32 fits in usize");
        // The welcome is read accepting any cluster so a wrong one is reported as such.
        let mut reader = FrameReader {
            stream: reader,
            limits: FrameLimits::client(0),
            buf: vec![0; frame_bytes_max],
            filled: 0,
            scratch: Vec::new(),
        };
        let (header, body) = tokio::time::timeout(timeout, reader.read_welcome(address))
            .await
            .map_err(|_| SessionError::Io(format!("welcome from {address}: timed out")))??;
        let welcome = accept_welcome(address, cluster_id, header, &body)?;
        if usize::from(welcome.replica_index) != replica {
            return Err(SessionError::AddressList {
                address: address.to_string(),
                position: replica,
                found: welcome.replica_index,
                replica_count: Some(welcome.replica_count),
            });
        }
        reader.limits = FrameLimits::client(header.cluster_id);
        Ok(Session {
            replica,
            cluster_id: header.cluster_id,
            welcome,
            reader,
            writer,
        })
    }

    /// Writes `bytes` (whole frames) to the replica.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|error| SessionError::Io(format!("write: {error}")))
    }

    /// Reads until at least one whole frame is buffered, then decodes every buffered frame,
    /// appending replies to `replies`. Cancel-safe: a partial frame stays in the buffer.
    pub(crate) async fn receive(
        &mut self,
        replies: &mut Vec<FrameReply>,
    ) -> Result<Received, SessionError> {
        loop {
            if let Some(received) = self.reader.decode_buffered(replies)? {
                return Ok(received);
            }
            self.reader.fill().await?;
        }
    }
}

/// Why connecting to `address` (list position `position`) failed: a genuine certificate of
/// another replica or cluster is a configuration error, a peer that is not speaking TLS a
/// likely one (see [`SessionError::Security`]), anything else a network failure.
fn connect_error(
    address: &str,
    position: usize,
    cluster_id: u128,
    error: &std::io::Error,
) -> SessionError {
    if tls::is_plaintext_peer(error) {
        return SessionError::Security(format!("connect to {address}: {error}"));
    }
    match tls::MisplacedReplica::of(error) {
        Some(named) if cluster_id != 0 && named.cluster_id != cluster_id => {
            SessionError::WrongCluster {
                expected: cluster_id,
                found: named.cluster_id,
            }
        }
        // The certificate names this position's replica and still failed: not a misplacement
        // (cannot happen with names from `allocdb certs`); reported as the TLS error it is.
        Some(named) if usize::from(named.replica) != position => SessionError::AddressList {
            address: address.to_string(),
            position,
            found: named.replica,
            replica_count: None,
        },
        _ => SessionError::Io(format!("connect to {address}: {error}")),
    }
}

/// Checks the welcome frame against the cluster we expect.
fn accept_welcome(
    address: &str,
    cluster_id: u128,
    header: FrameHeader,
    body: &[u8],
) -> Result<Welcome, SessionError> {
    match header.kind {
        FrameKind::ClientWelcome => {}
        FrameKind::Error => return Err(error_frame(address, header, body, cluster_id)),
        other => {
            return Err(SessionError::Protocol(format!(
                "{address} answered hello with a {} frame",
                other.name()
            )));
        }
    }
    if cluster_id != 0 && header.cluster_id != cluster_id {
        return Err(SessionError::WrongCluster {
            expected: cluster_id,
            found: header.cluster_id,
        });
    }
    let welcome = Welcome::decode(body)
        .map_err(|error| SessionError::Protocol(format!("welcome from {address}: {error}")))?;
    if welcome.slot_ms == 0 || welcome.requests_per_frame_max == 0 {
        return Err(SessionError::Protocol(format!(
            "welcome from {address}: slot_ms and requests_per_frame_max must be positive"
        )));
    }
    Ok(welcome)
}

impl FrameReader {
    /// Decodes the whole frames at the front of the buffer; `None` if there are none.
    fn decode_buffered(
        &mut self,
        replies: &mut Vec<FrameReply>,
    ) -> Result<Option<Received>, SessionError> {
        let mut consumed = 0;
        let mut result = None;
        while let Some(DecodedFrame {
            header,
            body,
            frame_bytes,
        }) = frame::decode_frame(&self.buf[consumed..self.filled], &self.limits)
            .map_err(|error| SessionError::Protocol(format!("reply frame: {error}")))?
        {
            consumed += frame_bytes;
            match header.kind {
                FrameKind::ClientReplies => {
                    frame::decode_replies(body, &mut self.scratch).map_err(|error| {
                        SessionError::Protocol(format!("reply frame body: {error}"))
                    })?;
                    if replies.is_empty() {
                        // The usual case: hand the decoded list over instead of copying it.
                        std::mem::swap(replies, &mut self.scratch);
                    } else {
                        replies.append(&mut self.scratch);
                    }
                    result = Some(Received::Replies);
                }
                FrameKind::Error => {
                    let message = ErrorBody::decode(body).map_or_else(
                        |error| format!("undecodable error frame: {error}"),
                        |error| format!("{}: {}", error.code.name(), error.message),
                    );
                    result = Some(Received::Error(message));
                    break;
                }
                other => {
                    return Err(SessionError::Protocol(format!(
                        "unexpected {} frame in a client session",
                        other.name()
                    )));
                }
            }
        }
        self.buf.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        Ok(result)
    }

    /// Reads the welcome frame from the replica at `address`. A TLS server's answer to our
    /// plaintext (a few bytes of alert, then the close) is recognised from its first bytes.
    async fn read_welcome(
        &mut self,
        address: &str,
    ) -> Result<(FrameHeader, Vec<u8>), SessionError> {
        let refused = |error: frame::FrameError| {
            if error.is_tls_record() {
                SessionError::Security(format!(
                    "{address}: welcome frame: {error}; if it is a replica, the cluster runs TLS: give \
                     this client the cluster's certificates (ClientOptions::security; \
                     allocdb client: --certs and --role, or ALLOCDB_CERTS)"
                ))
            } else {
                SessionError::Protocol(format!("welcome frame: {error}"))
            }
        };
        loop {
            frame::check_header_prefix(&self.buf[..self.filled]).map_err(refused)?;
            let decoded =
                frame::decode_frame(&self.buf[..self.filled], &self.limits).map_err(refused)?;
            if let Some(DecodedFrame {
                header,
                body,
                frame_bytes,
            }) = decoded
            {
                let body = body.to_vec();
                self.buf.copy_within(frame_bytes..self.filled, 0);
                self.filled -= frame_bytes;
                return Ok((header, body));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), SessionError> {
        assert!(
            self.filled < self.buf.len(),
            "a frame never exceeds the buffer"
        );
        let read = self
            .stream
            .read(&mut self.buf[self.filled..])
            .await
            .map_err(|error| SessionError::Io(format!("read: {error}")))?;
        if read == 0 {
            return Err(SessionError::Io(
                "the replica closed the connection".to_string(),
            ));
        }
        self.filled += read;
        Ok(())
    }
}

fn error_frame(address: &str, header: FrameHeader, body: &[u8], cluster_id: u128) -> SessionError {
    match ErrorBody::decode(body) {
        // The replica writes its own cluster id in the error frame's header.
        Ok(error) if error.code == frame::ErrorCode::WrongCluster => SessionError::WrongCluster {
            expected: cluster_id,
            found: header.cluster_id,
        },
        Ok(error) if error.code == frame::ErrorCode::Forbidden => {
            SessionError::Forbidden(format!("{address} refused the session: {}", error.message))
        }
        Ok(error) => SessionError::Protocol(format!(
            "{address} refused the session: {}: {}",
            error.code.name(),
            error.message
        )),
        Err(error) => {
            SessionError::Protocol(format!("{address}: undecodable error frame: {error}"))
        }
    }
}
