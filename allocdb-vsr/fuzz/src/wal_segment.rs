//! WAL segments: fuzz bytes become segment files of a formatted log, then `Wal::open` (fail
//! closed) or `Wal::open_for_repair` must return `Ok` or `Err`. A log that opens is read back
//! record by record, and opens again to the same head (recovery is idempotent).
//!
//! Mode byte: bit 0 clear, the rest is the raw content of segment `log-…1`; set, the rest is
//! a list of records `flags: u8, len: u8, body` that are built with correct checksums and
//! chain, then bent as `flags` say (see [`build`]); bit 1 set opens for repair.

use allocdb_core::Op;
use allocdb_wal::{
    RecordHeader, ReplicaIdentity, SimConfig, SimStorage, Storage, Wal, WalConfig, root_checksum,
    segment_file_name,
};

use crate::CLUSTER_ID;

/// The log limits of every input: small, so a few records cross segment limits.
pub fn config() -> WalConfig {
    WalConfig {
        segment_bytes_max: 4096,
        body_bytes_max: 1024,
        log_ops_max: 10_000,
        ..WalConfig::new(CLUSTER_ID)
    }
}

fn identity() -> ReplicaIdentity {
    ReplicaIdentity {
        replica_index: 0,
        replica_count: 1,
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let files = if mode & 1 == 0 {
        vec![(segment_file_name(1), rest.to_vec())]
    } else {
        build(rest)
    };
    let repair = mode & 2 != 0;
    let disk = SimStorage::new(SimConfig::new(0));
    drop(Wal::format(disk.clone(), config(), identity()).expect("formatting a fresh disk"));
    for (name, bytes) in &files {
        write_file(&disk, name, bytes);
    }
    let Ok(mut wal) = open(&disk, repair) else {
        return;
    };
    let last_op = wal.last_op();
    let first_op = wal.first_op();
    let mut body = Vec::new();
    for op in first_op.max(1)..=last_op {
        let header = wal
            .read(op, &mut body)
            .expect("a record recovery kept reads back");
        assert_eq!(header.op, op);
        assert!(header.matches_body(&body), "op {op} read back intact");
    }
    drop(wal);
    let again = open(&disk, repair).expect("a log that opened once opens again");
    assert_eq!(again.last_op(), last_op, "reopening keeps the same head");
}

fn open(disk: &SimStorage, repair: bool) -> Result<Wal<SimStorage>, allocdb_wal::WalError> {
    if repair {
        Wal::open_for_repair(disk.clone(), config())
    } else {
        Wal::open(disk.clone(), config())
    }
}

fn write_file(disk: &SimStorage, name: &str, bytes: &[u8]) {
    if disk.set_file_bytes(name, bytes) {
        return;
    }
    let mut storage = disk.clone();
    let file = storage.create(name).expect("create a segment");
    storage.append(file, bytes).expect("write a segment");
    storage.sync(file).expect("sync a segment");
    storage.close(file);
    storage.sync_directory().expect("sync the directory");
}

/// Builds segment files from `rest`: records `flags: u8, len: u8, body[len]`, each a valid
/// successor of the one before unless its flags say otherwise:
/// bit 0 skips an op, bit 1 repeats the op, bit 2 lowers the view, bit 3 breaks the parent
/// checksum, bit 4 names another cluster, bit 5 starts a new segment file at this op, bit 6
/// flips one bit of the record (at the position of the next input byte), bit 7 tears the
/// record (keeps only part of it, and stops). Bytes left over are appended raw.
pub fn build(mut rest: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(segment_file_name(1), Vec::new())];
    let mut op: Op = 0;
    let mut view = 0_u64;
    let mut parent = root_checksum(CLUSTER_ID);
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, after) = tail.split_at(len);
        rest = after;
        op = if flags & 2 != 0 {
            op
        } else {
            op + 1 + u64::from(flags & 1)
        };
        view = if flags & 4 != 0 {
            view.saturating_sub(1)
        } else {
            view + u64::from(len % 2 == 0)
        };
        let parent_used = if flags & 8 != 0 { parent ^ 1 } else { parent };
        let cluster = if flags & 16 != 0 {
            CLUSTER_ID + 1
        } else {
            CLUSTER_ID
        };
        let header = RecordHeader::new(cluster, view, op, op * 3, parent_used, body);
        parent = header.checksum;
        let mut record = Vec::new();
        header.encode(&mut record);
        record.extend_from_slice(body);
        if flags & 64 != 0 {
            if let Some((&at, after)) = rest.split_first() {
                rest = after;
                let bit = usize::from(at) * 7 % (record.len() * 8);
                record[bit / 8] ^= 1 << (bit % 8);
            }
        }
        if flags & 32 != 0 && !files.last().expect("one file").1.is_empty() {
            files.push((segment_file_name(op), Vec::new()));
        }
        let file = &mut files.last_mut().expect("one file").1;
        if flags & 128 != 0 {
            let keep = (usize::from(*flags) * 13) % record.len();
            file.extend_from_slice(&record[..keep]);
            return files;
        }
        file.extend_from_slice(&record);
    }
    files
        .last_mut()
        .expect("one file")
        .1
        .extend_from_slice(rest);
    files
}
