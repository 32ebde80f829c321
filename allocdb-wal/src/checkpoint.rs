//! Checkpoint files: a core snapshot at an op, written atomically.
//!
//! File `checkpoint-<op, 20 digits>`: a 96-byte header, then the snapshot bytes (opaque here;
//! produced by the core). Header (little-endian):
//! ```text
//!  0 u32 magic "ADBC"   24 u64  op          48 u128 record checksum (of record `op`)
//!  4 u16 version (1)    32 u64  view        64 u64  snapshot length
//!  6 u16 reserved       40 u64  slot        72 u128 snapshot checksum (checksum128)
//!  8 u128 cluster id                        88 u32  snapshot crc32c   92 u32 crc32c of 0..92
//! ```
//! Written under a temporary name, synced, renamed, and the directory synced: a crash leaves
//! either no new checkpoint or a complete one. Only the superblock makes it current. A
//! replica's own checkpoint is written as `checkpoint-<op>.tmp`, away from its task
//! ([`crate::CheckpointWrite`]); a peer's, installed by a state transfer, as `checkpoint.tmp`:
//! the two never share a name, so a transfer can land while a write is out.

use allocdb_core::{DecodeError, Op, Reader, Slot, Writer};

use crate::checksum::{Checksum, checksum128};
use crate::error::WalError;
use crate::record::View;
use crate::storage::{FileWriter, Storage, StorageErrorKind};
use crate::wal::remove_if_present;

/// The temporary name a transferred checkpoint is written under before the rename.
pub const CHECKPOINT_TEMP_FILE: &str = "checkpoint.tmp";
/// Bytes in a checkpoint header.
pub const CHECKPOINT_HEADER_SIZE: u32 = 96;

const CHECKPOINT_MAGIC: u32 = u32::from_le_bytes(*b"ADBC");
const CHECKPOINT_VERSION: u16 = 1;
const CRC_OFFSET: usize = 92;
const NAME_PREFIX: &str = "checkpoint-";
const TEMP_SUFFIX: &str = ".tmp";

/// What a checkpoint covers and how to verify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The snapshot is the state after applying ops `1..=op`.
    pub op: Op,
    /// The view of record `op`.
    pub view: View,
    /// The slot of record `op` (logical time never goes back below it).
    pub slot: Slot,
    /// The chain checksum of record `op`: the parent of op + 1.
    pub record_checksum: Checksum,
    /// `checksum128` of the snapshot.
    pub snapshot_checksum: Checksum,
    /// Length of the snapshot in bytes.
    pub snapshot_len: u64,
}

/// A checkpoint read back from disk, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its header.
    pub info: CheckpointInfo,
    /// The snapshot bytes, as the core encoded them.
    pub snapshot: Vec<u8>,
}

/// The file name of the checkpoint at `op`.
pub fn checkpoint_file_name(op: Op) -> String {
    format!("{NAME_PREFIX}{op:020}")
}

/// The name the replica's own checkpoint at `op` is written under before its rename.
pub(crate) fn checkpoint_temp_file_name(op: Op) -> String {
    format!("{NAME_PREFIX}{op:020}{TEMP_SUFFIX}")
}

/// Whether `name` is a checkpoint left half-made: written, maybe, but never renamed.
pub(crate) fn is_checkpoint_temp_file(name: &str) -> bool {
    name == CHECKPOINT_TEMP_FILE
        || name
            .strip_suffix(TEMP_SUFFIX)
            .and_then(parse_checkpoint_file_name)
            .is_some()
}

/// The op of a checkpoint file name, or `None` for any other name.
pub fn parse_checkpoint_file_name(name: &str) -> Option<Op> {
    let digits = name.strip_prefix(NAME_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl CheckpointInfo {
    fn encode(&self, cluster_id: u128, snapshot_crc32c: u32, out: &mut Vec<u8>) {
        let start = out.len();
        let mut writer = Writer::new(out);
        writer.u32(CHECKPOINT_MAGIC);
        writer.u16(CHECKPOINT_VERSION);
        writer.u16(0);
        writer.u128(cluster_id);
        writer.u64(self.op);
        writer.u64(self.view);
        writer.u64(self.slot);
        writer.u128(self.record_checksum);
        writer.u64(self.snapshot_len);
        writer.u128(self.snapshot_checksum);
        writer.u32(snapshot_crc32c);
        let crc = crc32c::crc32c(&out[start..start + CRC_OFFSET]);
        Writer::new(out).u32(crc);
        assert_eq!(out.len() - start, CHECKPOINT_HEADER_SIZE as usize);
    }

    fn decode(bytes: &[u8], cluster_id: u128) -> Result<(CheckpointInfo, u32), &'static str> {
        if bytes.len() < CHECKPOINT_HEADER_SIZE as usize {
            return Err("header truncated");
        }
        let stored_crc = Reader::new(&bytes[CRC_OFFSET..])
            .u32("crc")
            .map_err(unreadable)?;
        if crc32c::crc32c(&bytes[..CRC_OFFSET]) != stored_crc {
            return Err("header crc32c mismatch");
        }
        let mut reader = Reader::new(&bytes[..CRC_OFFSET]);
        let magic = reader.u32("magic").map_err(unreadable)?;
        let version = reader.u16("version").map_err(unreadable)?;
        let reserved = reader.u16("reserved").map_err(unreadable)?;
        if magic != CHECKPOINT_MAGIC || version != CHECKPOINT_VERSION || reserved != 0 {
            return Err("bad magic, version or reserved field");
        }
        if reader.u128("cluster id").map_err(unreadable)? != cluster_id {
            return Err("belongs to another cluster");
        }
        let info = CheckpointInfo {
            op: reader.u64("op").map_err(unreadable)?,
            view: reader.u64("view").map_err(unreadable)?,
            slot: reader.u64("slot").map_err(unreadable)?,
            record_checksum: reader.u128("record checksum").map_err(unreadable)?,
            snapshot_len: reader.u64("snapshot length").map_err(unreadable)?,
            snapshot_checksum: reader.u128("snapshot checksum").map_err(unreadable)?,
        };
        let snapshot_crc32c = reader.u32("snapshot crc32c").map_err(unreadable)?;
        reader.finish().map_err(unreadable)?;
        Ok((info, snapshot_crc32c))
    }
}

fn unreadable(_: DecodeError) -> &'static str {
    "field unreadable"
}

/// Writes the checkpoint file for `info` atomically: [`CHECKPOINT_TEMP_FILE`] (written and
/// synced through `storage.writer()`), rename, directory sync.
///
/// # Errors
/// Storage errors (the caller poisons its state).
pub(crate) fn write_checkpoint_file<S: Storage>(
    storage: &mut S,
    cluster_id: u128,
    info: &CheckpointInfo,
    snapshot: &[u8],
) -> Result<(), WalError> {
    remove_if_present(storage, CHECKPOINT_TEMP_FILE)?;
    let header = encode_header(cluster_id, info, snapshot);
    storage
        .writer()
        .write_new(CHECKPOINT_TEMP_FILE, &[&header, snapshot])?;
    storage.rename(CHECKPOINT_TEMP_FILE, &checkpoint_file_name(info.op))?;
    storage.sync_directory()?;
    Ok(())
}

/// The header of a checkpoint file holding `snapshot`, as `info` describes it.
pub(crate) fn encode_header(cluster_id: u128, info: &CheckpointInfo, snapshot: &[u8]) -> Vec<u8> {
    assert_eq!(info.snapshot_len, snapshot.len() as u64, "snapshot length");
    // Hashing megabytes twice is not free; every caller hashed just before.
    debug_assert_eq!(
        info.snapshot_checksum,
        checksum128(snapshot),
        "snapshot checksum"
    );
    let mut header = Vec::with_capacity(CHECKPOINT_HEADER_SIZE as usize);
    info.encode(cluster_id, crc32c::crc32c(snapshot), &mut header);
    header
}

/// Reads and fully verifies the checkpoint at `op`, whose snapshot must hash to `checksum`
/// (from the superblock).
///
/// # Errors
/// [`WalError::CheckpointCorrupt`] naming the file, or storage errors.
pub fn read_checkpoint_file<S: Storage>(
    storage: &mut S,
    cluster_id: u128,
    op: Op,
    checksum: Checksum,
) -> Result<Checkpoint, WalError> {
    let file = checkpoint_file_name(op);
    let corrupt = |reason| WalError::CheckpointCorrupt {
        file: file.clone(),
        reason,
    };
    let handle = match storage.open(&file) {
        Ok(handle) => handle,
        Err(error) if error.kind == StorageErrorKind::NotFound => return Err(corrupt("missing")),
        Err(error) => return Err(error.into()),
    };
    let result = read_open_checkpoint(storage, handle, cluster_id);
    storage.close(handle);
    let (info, snapshot) = result?.map_err(corrupt)?;
    if info.op != op {
        return Err(corrupt("header op differs from the file name"));
    }
    if info.snapshot_checksum != checksum {
        return Err(corrupt("snapshot checksum differs from the superblock's"));
    }
    Ok(Checkpoint { info, snapshot })
}

type ReadResult = Result<Result<(CheckpointInfo, Vec<u8>), &'static str>, WalError>;

fn read_open_checkpoint<S: Storage>(
    storage: &mut S,
    handle: crate::storage::Handle,
    cluster_id: u128,
) -> ReadResult {
    let file_len = storage.len(handle)?;
    if file_len < u64::from(CHECKPOINT_HEADER_SIZE) {
        return Ok(Err("shorter than its header"));
    }
    let mut header = [0_u8; CHECKPOINT_HEADER_SIZE as usize];
    storage.read_at(handle, 0, &mut header)?;
    let (info, snapshot_crc32c) = match CheckpointInfo::decode(&header, cluster_id) {
        Ok(decoded) => decoded,
        Err(reason) => return Ok(Err(reason)),
    };
    if file_len - u64::from(CHECKPOINT_HEADER_SIZE) != info.snapshot_len {
        return Ok(Err("file length differs from the snapshot length"));
    }
    let Ok(snapshot_len) = usize::try_from(info.snapshot_len) else {
        return Ok(Err("snapshot too large for this machine"));
    };
    let mut snapshot = vec![0_u8; snapshot_len];
    storage.read_at(handle, u64::from(CHECKPOINT_HEADER_SIZE), &mut snapshot)?;
    if crc32c::crc32c(&snapshot) != snapshot_crc32c {
        return Ok(Err("snapshot crc32c mismatch"));
    }
    if checksum128(&snapshot) != info.snapshot_checksum {
        return Ok(Err("snapshot checksum mismatch"));
    }
    Ok(Ok((info, snapshot)))
}

#[cfg(test)]
mod tests {
    use super::{CheckpointInfo, checkpoint_file_name, parse_checkpoint_file_name};
    use super::{read_checkpoint_file, write_checkpoint_file};
    use crate::checksum::checksum128;
    use crate::error::WalError;
    use crate::sim_storage::{SimConfig, SimStorage};

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse_checkpoint_file_name(&checkpoint_file_name(42)),
            Some(42)
        );
        assert_eq!(parse_checkpoint_file_name("checkpoint-42"), None);
        assert_eq!(parse_checkpoint_file_name("checkpoint.tmp"), None);
    }

    #[test]
    fn round_trips_and_detects_every_flipped_bit() {
        let disk = SimStorage::new(SimConfig::new(2));
        let mut storage = disk.clone();
        let snapshot = b"snapshot of the allocator".to_vec();
        let info = CheckpointInfo {
            op: 7,
            view: 2,
            slot: 100,
            record_checksum: 1234,
            snapshot_checksum: checksum128(&snapshot),
            snapshot_len: snapshot.len() as u64,
        };
        write_checkpoint_file(&mut storage, 3, &info, &snapshot).unwrap();
        let read = read_checkpoint_file(&mut storage, 3, 7, info.snapshot_checksum).unwrap();
        assert_eq!(read.info, info);
        assert_eq!(read.snapshot, snapshot);
        let name = checkpoint_file_name(7);
        let len = disk.file_len(&name).unwrap();
        for bit in 0..len * 8 {
            disk.flip_bit(&name, bit);
            let result = read_checkpoint_file(&mut storage, 3, 7, info.snapshot_checksum);
            assert!(
                matches!(result, Err(WalError::CheckpointCorrupt { .. })),
                "bit {bit}: {result:?}"
            );
            disk.flip_bit(&name, bit);
        }
        let wrong_cluster = read_checkpoint_file(&mut storage, 4, 7, info.snapshot_checksum);
        assert!(matches!(
            wrong_cluster,
            Err(WalError::CheckpointCorrupt { .. })
        ));
    }
}
