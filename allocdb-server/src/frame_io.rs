//! Reading frames from a byte stream, cancel-safely, and writing them.
//!
//! [`FrameReader`] owns a buffer: [`FrameReader::fill`] reads whatever bytes are available
//! (cancel-safe, so a connection task can `select!` it against timers and outgoing queues)
//! and [`FrameReader::next_frame`] returns the next whole, validated frame. A header is
//! validated as soon as its 36 bytes arrive, so an oversized length or a wrong cluster is
//! refused before a byte of its body is read or buffered.
//!
//! Memory follows the bytes that arrived, never a length a header declares: the buffer grows
//! by at most [`READ_CHUNK_BYTES`] per read, and is given back when it empties after a large
//! frame. [`FrameReader::pace_deadline`] tells the connection when a frame that has started
//! is arriving too slowly to keep (see [`FramePace`]).

use allocdb_vsr::frame::{self, ErrorCode, FrameError, FrameHeader, FrameLimits, HEADER_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Duration, Instant};

/// Bytes asked of the socket per read (one syscall moves many small frames).
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes asked of the socket by a reader with no buffer yet: enough for a hello, so a silent
/// connection holds almost nothing.
const FIRST_READ_BYTES: usize = 4 * 1024;
/// How long sending an error frame (and closing) may take.
const SEND_ERROR_TIMEOUT: Duration = Duration::from_secs(5);
/// A buffer that empties with more capacity than this is given back.
const RETAINED_BYTES_MAX: usize = 2 * READ_CHUNK_BYTES;

/// The slowest a frame may arrive once its first byte is in: by `grace` plus one second per
/// `bytes_per_second_min` bytes received. A frame of `n` bytes therefore completes within
/// `grace + n / rate` (proportional to its size, with a floor), and a sender that trickles
/// bytes is closed soon after `grace` however large the frame it declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePace {
    /// The time any frame may take, whatever its size.
    pub grace: Duration,
    /// The minimum arrival rate beyond the grace.
    pub bytes_per_second_min: u64,
}

impl Default for FramePace {
    fn default() -> Self {
        FramePace {
            grace: Duration::from_secs(2),
            bytes_per_second_min: 64 * 1024,
        }
    }
}

impl FramePace {
    /// When a frame that started at `started` and has `received` bytes in must have more.
    pub fn deadline(&self, started: Instant, received: usize) -> Instant {
        assert!(self.bytes_per_second_min > 0);
        let received = u64::try_from(received).unwrap_or(u64::MAX);
        let micros = received.saturating_mul(1_000_000) / self.bytes_per_second_min;
        started + self.grace + Duration::from_micros(micros)
    }
}

/// Why a stream stopped yielding frames.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between frames.
    Closed,
    /// The peer closed the connection in the middle of a frame.
    Truncated {
        /// Bytes of the unfinished frame received.
        bytes: usize,
    },
    /// The bytes are not a valid frame.
    Frame(FrameError),
    /// The socket failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => f.write_str("connection closed"),
            ReadError::Truncated { bytes } => {
                write!(
                    f,
                    "connection closed inside a frame after {bytes} bytes (truncated frame)"
                )
            }
            ReadError::Frame(error) => write!(f, "{error}"),
            ReadError::Io(error) => write!(f, "i/o error: {error}"),
        }
    }
}

impl ReadError {
    /// The error frame owed to the sender, if any (none for a closed or broken socket).
    pub fn error_frame(&self) -> Option<(ErrorCode, String)> {
        match self {
            ReadError::Frame(error) => Some((error.code(), error.to_string())),
            ReadError::Truncated { .. } => Some((ErrorCode::Malformed, self.to_string())),
            ReadError::Closed | ReadError::Io(_) => None,
        }
    }
}

/// A buffered, validating frame reader.
pub struct FrameReader {
    buffer: Vec<u8>,
    start: usize,
    limits: FrameLimits,
    /// The header of the frame at `start`, once validated.
    pending: Option<FrameHeader>,
    /// When the first buffered byte of the unfinished frame arrived.
    partial_since: Option<Instant>,
}

impl FrameReader {
    /// A reader enforcing `limits`.
    pub fn new(limits: FrameLimits) -> FrameReader {
        FrameReader {
            buffer: Vec::new(),
            start: 0,
            limits,
            pending: None,
            partial_since: None,
        }
    }

    /// Changes the limits (a session learns its cluster id or its kind after the first frame).
    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }

    /// Whether part of a frame is buffered (a stalled sender holds it there).
    pub fn has_partial_frame(&self) -> bool {
        self.buffer.len() > self.start
    }

    /// Bytes of memory the buffer holds (for tests and metrics).
    pub fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// When the unfinished frame's sender must have sent more bytes than it has by now;
    /// `None` between frames.
    pub fn pace_deadline(&self, pace: &FramePace) -> Option<Instant> {
        let since = self.partial_since?;
        assert!(self.has_partial_frame());
        Some(pace.deadline(since, self.buffer.len() - self.start))
    }

    /// The next whole frame already buffered: its header and body. Call [`FrameReader::consume`]
    /// when done with the body.
    ///
    /// # Errors
    /// The frame is invalid; the connection must be closed.
    pub fn next_frame(&mut self) -> Result<Option<(FrameHeader, &[u8])>, FrameError> {
        let available = &self.buffer[self.start..];
        let header = if let Some(header) = self.pending {
            header
        } else {
            let Some(head) = available.first_chunk::<HEADER_BYTES>() else {
                frame::check_header_prefix(available)?;
                return Ok(None);
            };
            let header = frame::decode_header(head, &self.limits)?;
            self.pending = Some(header);
            header
        };
        if available.len() < header.frame_bytes() {
            return Ok(None);
        }
        let body = &available[HEADER_BYTES..header.frame_bytes()];
        frame::check_body(&header, body)?;
        Ok(Some((header, body)))
    }

    /// Drops the frame returned by the last [`FrameReader::next_frame`].
    pub fn consume(&mut self) {
        let header = self.pending.take().expect("consume follows a whole frame");
        self.start += header.frame_bytes();
        assert!(self.start <= self.buffer.len());
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
            self.partial_since = None;
            if self.buffer.capacity() > RETAINED_BYTES_MAX {
                // A large frame's memory goes back now, not when the connection closes.
                self.buffer = Vec::new();
            }
        } else {
            // The next frame's first bytes are already here: its pace starts now.
            self.partial_since = Some(Instant::now());
        }
    }

    /// Reads more bytes from `stream`. Cancel-safe: bytes are only ever appended.
    ///
    /// # Errors
    /// [`ReadError::Closed`] / [`ReadError::Truncated`] at end of stream, [`ReadError::Io`].
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> Result<usize, ReadError> {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        // Room for at most one chunk more: a header's declared length reserves nothing, so
        // memory grows only with bytes that arrived.
        let wanted = match self.pending {
            Some(header) => header.frame_bytes().saturating_sub(self.buffer.len()),
            None if self.buffer.capacity() == 0 => FIRST_READ_BYTES,
            None => READ_CHUNK_BYTES,
        };
        self.buffer
            .reserve(wanted.clamp(HEADER_BYTES, READ_CHUNK_BYTES));
        let read = stream
            .read_buf(&mut self.buffer)
            .await
            .map_err(ReadError::Io)?;
        if read == 0 {
            return Err(if self.buffer.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Truncated {
                    bytes: self.buffer.len(),
                }
            });
        }
        if self.partial_since.is_none() {
            self.partial_since = Some(Instant::now());
        }
        Ok(read)
    }

    /// Reads until one whole frame is buffered (for simple request/answer exchanges).
    ///
    /// # Errors
    /// As [`FrameReader::fill`] and [`FrameReader::next_frame`].
    pub async fn read_frame<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
    ) -> Result<(FrameHeader, Vec<u8>), ReadError> {
        loop {
            if let Some((header, body)) = self.next_frame().map_err(ReadError::Frame)? {
                let body = body.to_vec();
                self.consume();
                return Ok((header, body));
            }
            self.fill(stream).await?;
        }
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` arm that may be off).
pub async fn sleep_until_option(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Writes `bytes` (one or more whole frames) and flushes.
///
/// # Errors
/// The socket failed.
pub async fn write_all<W: AsyncWrite + Unpin>(stream: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Sends an error frame and shuts the write side down (best effort: the peer may be gone).
pub async fn send_error<W: AsyncWrite + Unpin>(
    stream: &mut W,
    cluster_id: u128,
    code: ErrorCode,
    message: &str,
) {
    let mut bytes = Vec::new();
    frame::write_error_frame(&mut bytes, cluster_id, code, message);
    // Bounded: a peer that stopped reading must not hold the connection open.
    let _ = tokio::time::timeout(SEND_ERROR_TIMEOUT, async {
        let _ = write_all(stream, &bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::{FrameReader, ReadError};
    use allocdb_vsr::frame::{self, ErrorCode, FrameKind, FrameLimits};

    #[tokio::test]
    async fn frames_split_anywhere_are_reassembled() {
        let mut bytes = Vec::new();
        for index in 0..5_u8 {
            frame::write_frame(&mut bytes, FrameKind::PeerMessage, 9, |b| {
                b.extend_from_slice(&[index; 100]);
            });
        }
        for chunk in [1, 7, 36, 137, 1000] {
            let (mut writer, mut reader_half) = tokio::io::duplex(chunk);
            let sent = bytes.clone();
            let sender = tokio::spawn(async move {
                for piece in sent.chunks(chunk) {
                    super::write_all(&mut writer, piece).await.unwrap();
                }
            });
            let mut reader = FrameReader::new(FrameLimits::client(9));
            for index in 0..5_u8 {
                let (header, body) = reader.read_frame(&mut reader_half).await.unwrap();
                assert_eq!(header.kind, FrameKind::PeerMessage);
                assert_eq!(body, vec![index; 100], "chunk {chunk}");
            }
            sender.await.unwrap();
            assert!(matches!(
                reader.read_frame(&mut reader_half).await,
                Err(ReadError::Closed)
            ));
        }
    }

    #[tokio::test]
    async fn an_oversized_header_is_refused_without_its_body() {
        let mut bytes = Vec::new();
        frame::write_frame(&mut bytes, FrameKind::ClientRequests, 9, |b| {
            b.extend_from_slice(&[0; 100]);
        });
        let mut reader = FrameReader::new(FrameLimits {
            cluster_id: 9,
            body_bytes_max: 99,
        });
        let mut input: &[u8] = &bytes[..frame::HEADER_BYTES];
        let error = reader.read_frame(&mut input).await.unwrap_err();
        assert_eq!(error.error_frame().unwrap().0, ErrorCode::Oversized);
    }

    #[tokio::test]
    async fn a_stream_ending_inside_a_frame_is_truncated() {
        let mut bytes = Vec::new();
        frame::write_frame(&mut bytes, FrameKind::PeerPing, 9, |_| {});
        let mut reader = FrameReader::new(FrameLimits::client(9));
        let mut input: &[u8] = &bytes[..20];
        let error = reader.read_frame(&mut input).await.unwrap_err();
        assert!(
            matches!(error, ReadError::Truncated { bytes: 20 }),
            "{error}"
        );
        assert_eq!(error.error_frame().unwrap().0, ErrorCode::Malformed);
    }
}
