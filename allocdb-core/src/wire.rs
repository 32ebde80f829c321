//! Little-endian, fixed-width primitives: the one place bytes are read and written.
//!
//! Every encoder in AllocDB (requests, outcomes, batches, snapshots, and the layers above)
//! builds on [`Writer`] and [`Reader`], so there is a single bounds-checked decoding path.
//! A [`Reader`] never panics and never allocates: every read is checked against the input's
//! length and fails with a [`DecodeError`] that says what was being read and where.

/// Why bytes could not be decoded. Carries the byte offset so corruption can be located.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended while reading `what` at `offset`.
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it started.
        offset: usize,
    },
    /// A field held a value no encoder produces.
    Invalid {
        /// The field being read.
        what: &'static str,
        /// Where it started.
        offset: usize,
        /// The value found (widened).
        value: u64,
    },
    /// A count or length was above its limit.
    TooLarge {
        /// The field being read.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// Bytes were left over after a complete value.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A checksum did not match.
    Checksum {
        /// What was checksummed.
        what: &'static str,
        /// The stored checksum.
        expected: u32,
        /// The checksum of the bytes read.
        actual: u32,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { what, offset } => {
                write!(f, "truncated input: {what} at byte {offset}")
            }
            DecodeError::Invalid {
                what,
                offset,
                value,
            } => {
                write!(f, "invalid {what} {value} at byte {offset}")
            }
            DecodeError::TooLarge { what, value, max } => {
                write!(f, "{what} {value} exceeds the limit {max}")
            }
            DecodeError::TrailingBytes { count } => write!(f, "{count} trailing bytes"),
            DecodeError::Checksum {
                what,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "{what} checksum mismatch: stored {expected:#010x}, computed {actual:#010x}"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Appends little-endian fields to a caller-owned buffer (reused across calls on hot paths).
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Writes after whatever `out` already holds.
    pub fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { out }
    }

    /// Bytes in the underlying buffer so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether the underlying buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Writes one byte.
    pub fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    /// Writes a `u16`.
    pub fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// Writes a `u32`.
    pub fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// Writes a `u64`.
    pub fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// Writes a `u128`.
    pub fn u128(&mut self, value: u128) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// Writes raw bytes (the caller writes their length first if the reader needs it).
    pub fn bytes(&mut self, value: &[u8]) {
        self.out.extend_from_slice(value);
    }

    /// The underlying buffer, for an encoder that must checksum the bytes it has written
    /// (e.g. a header whose last field is a crc32c of the others).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// Overwrites a `u32` written earlier at `offset` (for lengths and checksums known late).
    pub fn patch_u32(&mut self, offset: usize, value: u32) {
        assert!(
            offset + 4 <= self.out.len(),
            "patch_u32 outside the written bytes"
        );
        self.out[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
}

/// Reads little-endian fields from a byte slice, never past its end.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    /// The offset of the next byte to read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// Takes the next `len` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if fewer than `len` bytes remain.
    pub fn take(&mut self, what: &'static str, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < len {
            return Err(DecodeError::Truncated {
                what,
                offset: self.offset,
            });
        }
        let slice = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let slice = self.take(what, N)?;
        let mut array = [0_u8; N];
        array.copy_from_slice(slice);
        Ok(array)
    }

    /// Reads one byte.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of the input.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a flag byte: 0 is false, 1 is true, anything else is refused.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of the input, [`DecodeError::Invalid`] for a
    /// byte other than 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.offset();
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::Invalid {
                what,
                offset,
                value: u64::from(value),
            }),
        }
    }

    /// Reads a `u16`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of the input.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u32`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of the input.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u64`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of the input.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u128`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] at the end of the input.
    pub fn u128(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array(what)?))
    }

    /// Reads a `u32` count and checks it against `max` before anything is sized from it.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`], or [`DecodeError::TooLarge`] if the count exceeds `max`.
    pub fn count(&mut self, what: &'static str, max: u32) -> Result<u32, DecodeError> {
        let value = self.u32(what)?;
        if value > max {
            return Err(DecodeError::TooLarge {
                what,
                value: u64::from(value),
                max: u64::from(max),
            });
        }
        Ok(value)
    }

    /// Fails unless every byte was consumed.
    ///
    /// # Errors
    /// [`DecodeError::TrailingBytes`] when input is left over.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DecodeError, Reader, Writer};

    #[test]
    fn fields_round_trip() {
        let mut buffer = Vec::new();
        let mut writer = Writer::new(&mut buffer);
        writer.u8(7);
        writer.u16(0xBEEF);
        writer.u32(3);
        writer.u64(u64::MAX - 1);
        writer.u128(u128::MAX / 3);
        writer.bytes(b"ab");
        let mut reader = Reader::new(&buffer);
        assert_eq!(reader.u8("a"), Ok(7));
        assert_eq!(reader.u16("b"), Ok(0xBEEF));
        assert_eq!(reader.count("c", 3), Ok(3));
        assert_eq!(reader.u64("d"), Ok(u64::MAX - 1));
        assert_eq!(reader.u128("e"), Ok(u128::MAX / 3));
        assert_eq!(reader.take("f", 2), Ok(&b"ab"[..]));
        assert_eq!(reader.finish(), Ok(()));
        assert_eq!(
            reader.u8("g"),
            Err(DecodeError::Truncated {
                what: "g",
                offset: 33
            })
        );
    }

    #[test]
    fn counts_are_checked_before_use() {
        let mut buffer = Vec::new();
        Writer::new(&mut buffer).u32(10);
        let error = Reader::new(&buffer).count("requests", 9).unwrap_err();
        assert_eq!(
            error,
            DecodeError::TooLarge {
                what: "requests",
                value: 10,
                max: 9
            }
        );
        assert_eq!(
            Reader::new(&buffer[..3]).u32("x").unwrap_err().to_string(),
            "truncated input: x at byte 0"
        );
    }
}
