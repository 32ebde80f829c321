//! The superblock: the replica's durable metadata, kept in two checksummed copies.
//!
//! File `superblock`, copy `i` (0 or 1) at byte `i * 4096`, 96 bytes each (little-endian):
//! ```text
//!  0 u32 magic "ADBS"   16 u128 cluster id       40 u64 view          72 u128 checkpoint checksum
//!  4 u16 version (1)    32 u8   replica index    48 u64 log view      88 u32  copy index
//!  6 u16 reserved       33 u8   replica count    56 u64 commit op     92 u32  crc32c of 0..92
//!  8 u64 sequence       34 u16  flags (1 recovering, 2 fresh)   64 u64 checkpoint op
//!                       36 u32  reserved, zero
//! ```
//! Each update increments `sequence` and overwrites copy `sequence % 2`, then syncs, so the
//! other copy always holds the previous state: a torn write of one copy loses nothing that was
//! acknowledged. Opening takes the valid copy with the highest sequence.

use allocdb_core::{DecodeError, Op, Reader, Writer};

use crate::checksum::Checksum;
use crate::error::WalError;
use crate::record::View;
use crate::storage::{Handle, Storage, StorageErrorKind};

/// The superblock's file name.
pub const SUPERBLOCK_FILE: &str = "superblock";
/// How many copies are kept.
pub const SUPERBLOCK_COPIES: u32 = 2;
/// Bytes between copies (so two copies never share a sector or a page).
pub const SUPERBLOCK_COPY_STRIDE: u64 = 4096;
/// Bytes in one copy.
pub const SUPERBLOCK_SIZE: u32 = 96;

const SUPERBLOCK_MAGIC: u32 = u32::from_le_bytes(*b"ADBS");
const SUPERBLOCK_VERSION: u16 = 1;
const CRC_OFFSET: usize = 92;
/// Flag bit: the replica must catch up from its peers before it votes again.
const FLAG_RECOVERING: u16 = 1;
/// Flag bit: formatted and never yet caught up to any view's log (implies recovering).
const FLAG_FRESH: u16 = 2;

/// The durable replica metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Incremented by every write; the newest valid copy wins.
    pub sequence: u64,
    /// The cluster.
    pub cluster_id: u128,
    /// This replica's index in the configuration.
    pub replica_index: u8,
    /// Replicas in the cluster.
    pub replica_count: u8,
    /// The highest view this replica has entered (or voted for).
    pub view: View,
    /// The view in which the log was last known to be in sync with the primary.
    pub log_view: View,
    /// The highest op known committed.
    pub commit_op: Op,
    /// The op of the current checkpoint (0: none).
    pub checkpoint_op: Op,
    /// `checksum128` of the current checkpoint's snapshot (0 when `checkpoint_op` is 0).
    pub checkpoint_checksum: Checksum,
    /// Set by the replication layer when its log may lack ops it once acknowledged: until it
    /// clears the flag, the replica must not vote. Durable so a second crash cannot hide it.
    pub recovering: bool,
    /// Set at format (in a cluster of more than one replica) and cleared with `recovering`:
    /// the data directory is new, so it knows nothing of what its replica slot may have
    /// acknowledged before (a lost disk formatted again looks exactly like a new one).
    /// Implies `recovering`.
    pub fresh: bool,
}

impl Superblock {
    /// The copy this superblock is written to.
    pub fn copy_index(&self) -> u32 {
        u32::from(self.sequence % u64::from(SUPERBLOCK_COPIES) == 1)
    }

    /// Encodes the copy for `copy_index()`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut writer = Writer::new(out);
        writer.u32(SUPERBLOCK_MAGIC);
        writer.u16(SUPERBLOCK_VERSION);
        writer.u16(0);
        writer.u64(self.sequence);
        writer.u128(self.cluster_id);
        writer.u8(self.replica_index);
        writer.u8(self.replica_count);
        assert!(!self.fresh || self.recovering, "fresh implies recovering");
        let flags = if self.recovering { FLAG_RECOVERING } else { 0 }
            | if self.fresh { FLAG_FRESH } else { 0 };
        writer.u16(flags);
        writer.u32(0);
        writer.u64(self.view);
        writer.u64(self.log_view);
        writer.u64(self.commit_op);
        writer.u64(self.checkpoint_op);
        writer.u128(self.checkpoint_checksum);
        writer.u32(self.copy_index());
        let crc = crc32c::crc32c(&out[start..start + CRC_OFFSET]);
        Writer::new(out).u32(crc);
        assert_eq!(out.len() - start, SUPERBLOCK_SIZE as usize);
    }

    /// Decodes and verifies the copy stored at position `copy`.
    ///
    /// # Errors
    /// A description of the first failed check.
    pub fn decode(bytes: &[u8], copy: u32) -> Result<Superblock, &'static str> {
        if bytes.len() != SUPERBLOCK_SIZE as usize {
            return Err("wrong length");
        }
        let stored_crc = Reader::new(&bytes[CRC_OFFSET..])
            .u32("crc")
            .map_err(unreadable)?;
        if crc32c::crc32c(&bytes[..CRC_OFFSET]) != stored_crc {
            return Err("crc32c mismatch");
        }
        let mut reader = Reader::new(&bytes[..CRC_OFFSET]);
        let magic = reader.u32("magic").map_err(unreadable)?;
        let version = reader.u16("version").map_err(unreadable)?;
        let reserved = reader.u16("reserved").map_err(unreadable)?;
        if magic != SUPERBLOCK_MAGIC || version != SUPERBLOCK_VERSION || reserved != 0 {
            return Err("bad magic, version or reserved field");
        }
        let sequence = reader.u64("sequence").map_err(unreadable)?;
        let cluster_id = reader.u128("cluster id").map_err(unreadable)?;
        let replica_index = reader.u8("replica index").map_err(unreadable)?;
        let replica_count = reader.u8("replica count").map_err(unreadable)?;
        let flags = reader.u16("flags").map_err(unreadable)?;
        let padding = reader.u32("reserved").map_err(unreadable)?;
        if flags & !(FLAG_RECOVERING | FLAG_FRESH) != 0 {
            return Err("unknown flag bits");
        }
        if flags & FLAG_FRESH != 0 && flags & FLAG_RECOVERING == 0 {
            return Err("fresh flag without recovering flag");
        }
        let superblock = Superblock {
            sequence,
            cluster_id,
            replica_index,
            replica_count,
            view: reader.u64("view").map_err(unreadable)?,
            log_view: reader.u64("log view").map_err(unreadable)?,
            commit_op: reader.u64("commit op").map_err(unreadable)?,
            checkpoint_op: reader.u64("checkpoint op").map_err(unreadable)?,
            checkpoint_checksum: reader.u128("checkpoint checksum").map_err(unreadable)?,
            recovering: flags & FLAG_RECOVERING != 0,
            fresh: flags & FLAG_FRESH != 0,
        };
        let stored_copy = reader.u32("copy index").map_err(unreadable)?;
        reader.finish().map_err(unreadable)?;
        if padding != 0 {
            return Err("reserved field not zero");
        }
        if stored_copy != copy || superblock.copy_index() != copy {
            return Err("copy found at the wrong position");
        }
        Ok(superblock)
    }

    /// Reads both copies and returns the valid one with the highest sequence.
    ///
    /// # Errors
    /// [`WalError::SuperblockCorrupt`] if no copy is valid; storage errors other than a short
    /// file are passed on.
    pub fn read_newest<S: Storage>(
        storage: &mut S,
        handle: Handle,
    ) -> Result<Superblock, WalError> {
        let mut newest: Option<Superblock> = None;
        for copy in 0..SUPERBLOCK_COPIES {
            let mut bytes = [0_u8; SUPERBLOCK_SIZE as usize];
            let offset = u64::from(copy) * SUPERBLOCK_COPY_STRIDE;
            match storage.read_at(handle, offset, &mut bytes) {
                Ok(()) => {}
                Err(error) if matches!(error.kind, StorageErrorKind::OutOfRange { .. }) => continue,
                Err(error) => return Err(WalError::Storage(error)),
            }
            if let Ok(superblock) = Superblock::decode(&bytes, copy) {
                if newest.is_none_or(|best| superblock.sequence > best.sequence) {
                    newest = Some(superblock);
                }
            }
        }
        newest.ok_or_else(|| WalError::SuperblockCorrupt {
            file: SUPERBLOCK_FILE.to_owned(),
        })
    }

    /// Writes this superblock's copy and syncs it: durable on return.
    ///
    /// # Errors
    /// Storage errors.
    pub fn write<S: Storage>(&self, storage: &mut S, handle: Handle) -> Result<(), WalError> {
        assert!(self.sequence > 0, "sequence 0 is never written");
        assert!(self.log_view <= self.view, "log_view above view");
        let mut bytes = Vec::with_capacity(SUPERBLOCK_SIZE as usize);
        self.encode(&mut bytes);
        let offset = u64::from(self.copy_index()) * SUPERBLOCK_COPY_STRIDE;
        storage.write_at(handle, offset, &bytes)?;
        storage.sync(handle)?;
        Ok(())
    }
}

fn unreadable(_: DecodeError) -> &'static str {
    "field unreadable"
}

#[cfg(test)]
mod tests {
    use super::{SUPERBLOCK_FILE, Superblock};
    use crate::sim_storage::{SimConfig, SimStorage};
    use crate::storage::Storage;

    fn sample(sequence: u64) -> Superblock {
        Superblock {
            sequence,
            cluster_id: 5,
            replica_index: 1,
            replica_count: 3,
            view: sequence * 2,
            log_view: sequence,
            commit_op: 10,
            checkpoint_op: 4,
            checkpoint_checksum: 99,
            recovering: sequence % 2 == 0,
            fresh: sequence % 4 == 0,
        }
    }

    #[test]
    fn newest_valid_copy_wins_and_a_torn_copy_loses_nothing() {
        let disk = SimStorage::new(SimConfig::new(1));
        let mut storage = disk.clone();
        let handle = storage.create(SUPERBLOCK_FILE).unwrap();
        sample(1).write(&mut storage, handle).unwrap();
        sample(2).write(&mut storage, handle).unwrap();
        assert_eq!(Superblock::read_newest(&mut storage, handle), Ok(sample(2)));
        sample(3).write(&mut storage, handle).unwrap();
        assert_eq!(Superblock::read_newest(&mut storage, handle), Ok(sample(3)));
        // Tear copy 1 (sequence 3): the previous state (sequence 2, copy 0) survives.
        assert!(disk.flip_bit(SUPERBLOCK_FILE, 4096 * 8 + 100));
        assert_eq!(Superblock::read_newest(&mut storage, handle), Ok(sample(2)));
        assert!(disk.flip_bit(SUPERBLOCK_FILE, 17));
        assert!(Superblock::read_newest(&mut storage, handle).is_err());
    }

    #[test]
    fn the_fresh_flag_round_trips_and_never_stands_alone() {
        let disk = SimStorage::new(SimConfig::new(2));
        let mut storage = disk.clone();
        let handle = storage.create(SUPERBLOCK_FILE).unwrap();
        let fresh = sample(4);
        assert!(fresh.fresh && fresh.recovering);
        fresh.write(&mut storage, handle).unwrap();
        assert_eq!(Superblock::read_newest(&mut storage, handle), Ok(fresh));
        // Flags 2 (fresh) without 1 (recovering) is refused as corrupt.
        let mut bytes = Vec::new();
        fresh.encode(&mut bytes);
        bytes[34] = 2;
        let crc = crc32c::crc32c(&bytes[..92]);
        bytes[92..96].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Superblock::decode(&bytes, fresh.copy_index()),
            Err("fresh flag without recovering flag")
        );
    }

    #[test]
    fn every_bit_is_covered() {
        let mut bytes = Vec::new();
        sample(7).encode(&mut bytes);
        assert_eq!(Superblock::decode(&bytes, 1), Ok(sample(7)));
        assert!(Superblock::decode(&bytes, 0).is_err());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(Superblock::decode(&flipped, 1).is_err(), "bit {bit}");
        }
    }
}
