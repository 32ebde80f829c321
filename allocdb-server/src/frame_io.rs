//! Reading frames from a byte stream, cancel-safely, and writing them.
//!
//! [`FrameReader`] owns a buffer: [`FrameReader::fill`] reads whatever bytes are available
//! (cancel-safe, so a connection task can `select!` it against timers and outgoing queues)
//! and [`FrameReader::next_frame`] returns the next whole, validated frame. A header is
//! validated as soon as its 36 bytes arrive, so an oversized length or a wrong cluster is
//! refused before a byte of its body is read or buffered.

use allocdb_vsr::frame::{self, ErrorCode, FrameError, FrameHeader, FrameLimits, HEADER_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes asked of the socket per read (one syscall moves many small frames).
const READ_CHUNK_BYTES: usize = 64 * 1024;

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
}

impl FrameReader {
    /// A reader enforcing `limits`.
    pub fn new(limits: FrameLimits) -> FrameReader {
        FrameReader {
            buffer: Vec::with_capacity(READ_CHUNK_BYTES),
            start: 0,
            limits,
            pending: None,
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
        // Room for the rest of a validated frame (bounded by the limits), else one chunk.
        let wanted = self.pending.map_or(READ_CHUNK_BYTES, |h| {
            h.frame_bytes().saturating_sub(self.buffer.len())
        });
        self.buffer
            .reserve(wanted.clamp(HEADER_BYTES, READ_CHUNK_BYTES.max(wanted)));
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
    let _ = write_all(stream, &bytes).await;
    let _ = stream.shutdown().await;
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
