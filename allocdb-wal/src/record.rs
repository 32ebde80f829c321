//! A log record: a fixed 96-byte header and an opaque body (a batch encoded by the core).
//!
//! Header layout (little-endian):
//! ```text
//!  0 u32  magic "ADBR"        24 u64  view          56 u128 parent checksum
//!  4 u16  format version (1)  32 u64  op            72 u128 checksum (this record)
//!  6 u16  reserved, zero      40 u64  slot          88 u32  reserved, zero
//!  8 u128 cluster id          48 u32  body length   92 u32  crc32c of bytes 0..92
//!                             52 u32  body crc32c
//! ```
//! `checksum = checksum128(header bytes 0..72 ‖ checksum128(body))`: it covers every field and
//! the body, and the next record stores it as its `parent`, forming the hash chain.

use allocdb_core::{DecodeError, Op, Reader, Slot, Writer};

use crate::checksum::{Checksum, checksum128};

pub use allocdb_core::View;

/// Bytes in a record header.
pub const RECORD_HEADER_SIZE: u32 = 96;
/// The compile-time ceiling on a record body; `WalConfig::body_bytes_max` may only be lower.
pub const RECORD_BODY_LIMIT: u32 = 1 << 30;

const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"ADBR");
const RECORD_VERSION: u16 = 1;
const CHECKSUMMED_PREFIX: usize = 72;
const CRC_OFFSET: usize = 92;

/// The header of one record: where it sits in the log and how to verify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// The cluster the record belongs to.
    pub cluster_id: u128,
    /// The view in which the record was prepared.
    pub view: View,
    /// Its position in the log.
    pub op: Op,
    /// The logical time the primary stamped on the batch.
    pub slot: Slot,
    /// Length of the body in bytes.
    pub body_len: u32,
    /// crc32c of the body.
    pub body_crc32c: u32,
    /// The checksum of record `op - 1` (or the root / checkpoint anchor).
    pub parent: Checksum,
    /// This record's chain checksum, covering every field above and the body.
    pub checksum: Checksum,
}

impl RecordHeader {
    /// The header a record with these fields and `body` has. Deterministic: the primary builds
    /// it for a prepare; a backup rebuilds it from what it received and compares.
    ///
    /// ```
    /// use allocdb_wal::{RecordHeader, root_checksum};
    /// let header = RecordHeader::new(7, 1, 1, 10, root_checksum(7), b"batch");
    /// assert!(header.matches_body(b"batch"));
    /// assert!(!header.matches_body(b"batcH"));
    /// ```
    pub fn new(
        cluster_id: u128,
        view: View,
        op: Op,
        slot: Slot,
        parent: Checksum,
        body: &[u8],
    ) -> RecordHeader {
        let body_len = u32::try_from(body.len()).expect("body length checked against the limit");
        assert!(
            body_len <= RECORD_BODY_LIMIT,
            "body above RECORD_BODY_LIMIT"
        );
        let mut header = RecordHeader {
            cluster_id,
            view,
            op,
            slot,
            body_len,
            body_crc32c: crc32c::crc32c(body),
            parent,
            checksum: 0,
        };
        header.checksum = header.chain_checksum(checksum128(body));
        debug_assert!(header.matches_body(body));
        header
    }

    fn chain_checksum(&self, body_hash: Checksum) -> Checksum {
        let mut bytes = Vec::with_capacity(CHECKSUMMED_PREFIX + 16);
        self.encode_prefix(&mut Writer::new(&mut bytes));
        Writer::new(&mut bytes).u128(body_hash);
        assert_eq!(bytes.len(), CHECKSUMMED_PREFIX + 16);
        checksum128(&bytes)
    }

    fn encode_prefix(&self, writer: &mut Writer<'_>) {
        writer.u32(RECORD_MAGIC);
        writer.u16(RECORD_VERSION);
        writer.u16(0);
        writer.u128(self.cluster_id);
        writer.u64(self.view);
        writer.u64(self.op);
        writer.u64(self.slot);
        writer.u32(self.body_len);
        writer.u32(self.body_crc32c);
        writer.u128(self.parent);
    }

    /// True when `body` is exactly the body this header describes.
    pub fn matches_body(&self, body: &[u8]) -> bool {
        body.len() == self.body_len as usize
            && crc32c::crc32c(body) == self.body_crc32c
            && self.chain_checksum(checksum128(body)) == self.checksum
    }

    /// Appends the 96 header bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut writer = Writer::new(out);
        self.encode_prefix(&mut writer);
        writer.u128(self.checksum);
        writer.u32(0);
        let crc = crc32c::crc32c(&out[start..start + CRC_OFFSET]);
        Writer::new(out).u32(crc);
        assert_eq!(out.len() - start, RECORD_HEADER_SIZE as usize);
    }

    /// Decodes and verifies 96 header bytes (magic, version, reserved fields, crc32c). The
    /// error says what is wrong; it does not check the body or the chain.
    ///
    /// # Errors
    /// A static description of the first failed check.
    pub fn decode(bytes: &[u8]) -> Result<RecordHeader, &'static str> {
        if bytes.len() < RECORD_HEADER_SIZE as usize {
            return Err("header truncated");
        }
        let stored_crc = Reader::new(&bytes[CRC_OFFSET..])
            .u32("crc")
            .map_err(reason)?;
        if crc32c::crc32c(&bytes[..CRC_OFFSET]) != stored_crc {
            return Err("header crc32c mismatch");
        }
        let mut reader = Reader::new(&bytes[..CRC_OFFSET]);
        if reader.u32("magic").map_err(reason)? != RECORD_MAGIC {
            return Err("bad magic");
        }
        if reader.u16("version").map_err(reason)? != RECORD_VERSION {
            return Err("unknown format version");
        }
        if reader.u16("reserved").map_err(reason)? != 0 {
            return Err("reserved field not zero");
        }
        let header = RecordHeader {
            cluster_id: reader.u128("cluster id").map_err(reason)?,
            view: reader.u64("view").map_err(reason)?,
            op: reader.u64("op").map_err(reason)?,
            slot: reader.u64("slot").map_err(reason)?,
            body_len: reader.u32("body length").map_err(reason)?,
            body_crc32c: reader.u32("body crc32c").map_err(reason)?,
            parent: reader.u128("parent").map_err(reason)?,
            checksum: reader.u128("checksum").map_err(reason)?,
        };
        if reader.u32("reserved").map_err(reason)? != 0 {
            return Err("reserved field not zero");
        }
        reader.finish().map_err(reason)?;
        Ok(header)
    }

    /// Bytes the record occupies on disk, header included.
    pub fn record_len(&self) -> u64 {
        u64::from(RECORD_HEADER_SIZE) + u64::from(self.body_len)
    }
}

fn reason(_: DecodeError) -> &'static str {
    // Unreachable for a 92-byte slice read field by field, but never a panic on disk bytes.
    "header field unreadable"
}

#[cfg(test)]
mod tests {
    use super::{RECORD_HEADER_SIZE, RecordHeader};
    use crate::checksum::root_checksum;

    #[test]
    fn header_round_trips_and_every_bit_is_covered() {
        let header = RecordHeader::new(9, 2, 5, 77, root_checksum(9), b"body bytes");
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        assert_eq!(bytes.len(), RECORD_HEADER_SIZE as usize);
        assert_eq!(RecordHeader::decode(&bytes), Ok(header));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                RecordHeader::decode(&flipped).is_err(),
                "bit {bit} undetected"
            );
        }
        assert_eq!(RecordHeader::decode(&bytes[..95]), Err("header truncated"));
    }

    #[test]
    fn checksum_depends_on_every_field() {
        let base = RecordHeader::new(1, 1, 1, 1, 1, b"x");
        let variants = [
            RecordHeader::new(2, 1, 1, 1, 1, b"x"),
            RecordHeader::new(1, 2, 1, 1, 1, b"x"),
            RecordHeader::new(1, 1, 2, 1, 1, b"x"),
            RecordHeader::new(1, 1, 1, 2, 1, b"x"),
            RecordHeader::new(1, 1, 1, 1, 2, b"x"),
            RecordHeader::new(1, 1, 1, 1, 1, b"y"),
        ];
        for variant in variants {
            assert_ne!(variant.checksum, base.checksum);
        }
    }
}
