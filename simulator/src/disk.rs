//! Reading a replica's committed history from its simulated disk, without touching it.
//!
//! A sample deep-copies the disk's current contents into a fresh [`SimStorage`] and opens the
//! log there (in repair mode, exactly like a restarting replica would), so the replica's own
//! disk, handles and fault state are never disturbed. Every op at or below the superblock's
//! commit point was applied by that replica, so it is committed: the history checker compares
//! these ops across replicas and across time.

use allocdb_core::Op;
use allocdb_server::ClusterSettings;
use allocdb_vsr::Replica;
use allocdb_wal::{Checksum, SimConfig, SimStorage, Storage, Wal, WalConfig, segment_file_name};

/// One committed op read from a disk.
#[derive(Clone, Debug)]
pub struct SampledOp {
    /// The op.
    pub op: Op,
    /// The record's chain checksum (identifies the batch).
    pub checksum: Checksum,
    /// The batch's slot.
    pub slot: u64,
    /// The view it was prepared in.
    pub view: u64,
    /// The batch, when asked for.
    pub body: Option<Vec<u8>>,
}

/// What one sample found.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The superblock's view.
    pub view: u64,
    /// The superblock's commit point.
    pub commit_op: Op,
    /// The log's last op.
    pub last_op: Op,
    /// The committed ops the log still holds, in order.
    pub ops: Vec<SampledOp>,
}

/// A byte-for-byte copy of `storage`'s current (volatile) contents on a new disk.
///
/// # Errors
/// A storage call failed (the copy is in memory; this means a bug).
pub fn copy_disk(storage: &SimStorage) -> Result<SimStorage, String> {
    let mut source = storage.clone();
    let mut copy = SimStorage::new(SimConfig::new(0));
    let names = source.list().map_err(|e| e.to_string())?;
    for name in names {
        let Some(bytes) = storage.file_bytes(&name) else {
            continue;
        };
        let handle = copy.create(&name).map_err(|e| e.to_string())?;
        copy.append(handle, &bytes).map_err(|e| e.to_string())?;
        copy.sync(handle).map_err(|e| e.to_string())?;
        copy.close(handle);
    }
    copy.sync_directory().map_err(|e| e.to_string())?;
    Ok(copy)
}

/// Reads the committed ops of `storage`'s log: those at or below the superblock's commit point
/// or `applied` (the op the running replica reports applied, 0 when unknown), whichever is
/// higher. Bodies only of the ops `wants_body` names (the caller already knows the others).
///
/// # Errors
/// The log cannot be opened or a committed record cannot be read: the text says which.
pub fn sample(
    storage: &SimStorage,
    config: WalConfig,
    applied: Op,
    wants_body: &dyn Fn(Op) -> bool,
) -> Result<Sample, String> {
    let copy = copy_disk(storage)?;
    let mut wal = Wal::open_for_repair(copy, config).map_err(|e| format!("open: {e}"))?;
    let superblock = *wal.superblock();
    let last_op = wal.last_op();
    let mut sample = Sample {
        view: superblock.view,
        commit_op: superblock.commit_op,
        last_op,
        ops: Vec::new(),
    };
    let top = superblock.commit_op.max(applied).min(last_op);
    let mut body = Vec::new();
    for op in wal.first_op()..=top {
        let Some(header) = wal.header(op).copied() else {
            continue;
        };
        let body = if wants_body(op) {
            wal.read(op, &mut body)
                .map_err(|e| format!("read op {op}: {e}"))?;
            Some(body.clone())
        } else {
            None
        };
        sample.ops.push(SampledOp {
            op,
            checksum: header.checksum,
            slot: header.slot,
            view: header.view,
            body,
        });
    }
    assert!(sample.ops.windows(2).all(|w| w[0].op < w[1].op));
    Ok(sample)
}

/// A lost disk replaced by an empty one, then formatted exactly as `allocdb format` formats an
/// empty data directory (`allocdb format --if-empty` on a new volume, as the Compose,
/// systemd and Kubernetes recipes run it): `Replica::format` with the replica's settings.
///
/// # Errors
/// A storage call failed (the disk's faults are turned off first, so this means a bug).
pub fn reformat(storage: &SimStorage, settings: &ClusterSettings) -> Result<(), String> {
    // A new disk: whatever faults the old one had are gone with it.
    storage.set_faults(0, 0, 0);
    let mut disk = storage.clone();
    for name in disk.list().map_err(|e| e.to_string())? {
        disk.remove(&name)
            .map_err(|e| format!("remove {name}: {e}"))?;
    }
    disk.sync_directory().map_err(|e| e.to_string())?;
    assert!(disk.list().map_err(|e| e.to_string())?.is_empty());
    Replica::format(storage.clone(), settings.replica_config())
        .map_err(|e| format!("format: {e}"))?;
    Ok(())
}

/// Flips one bit (chosen by `pick`) in the newest log segment of `storage`; returns the file
/// and bit, or `None` when the disk has no non-empty segment yet.
pub fn rot_newest_segment(storage: &SimStorage, pick: u64) -> Option<(String, u64)> {
    let prefix: String = segment_file_name(0)
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string();
    let mut source = storage.clone();
    let names = source.list().ok()?;
    let newest = names
        .iter()
        .filter(|name| name.starts_with(&prefix))
        .filter(|name| storage.file_len(name).is_some_and(|len| len > 0))
        .max()?
        .clone();
    let bits = storage.file_len(&newest)? * 8;
    let bit = pick % bits;
    storage.flip_bit(&newest, bit).then_some((newest, bit))
}

#[cfg(test)]
mod tests {
    use allocdb_wal::{ReplicaIdentity, SimConfig, SimStorage, Wal, WalConfig};

    #[test]
    fn a_sample_reads_committed_ops_only_and_leaves_the_disk_alone() {
        let storage = SimStorage::new(SimConfig::new(1));
        let config = WalConfig::new(7);
        let identity = ReplicaIdentity {
            replica_index: 0,
            replica_count: 1,
        };
        let mut wal = Wal::format(storage.clone(), config, identity).unwrap();
        for op in 1..=5 {
            wal.append(0, op, op, &[u8::try_from(op).unwrap(); 16])
                .unwrap();
        }
        wal.sync().unwrap();
        wal.write_vsr_state(allocdb_wal::VsrState {
            view: 0,
            log_view: 0,
            commit_op: 3,
        })
        .unwrap();
        let before = storage.mutations();
        let sample = super::sample(&storage, config, 0, &|op| op > 1).unwrap();
        assert_eq!(storage.mutations(), before, "sampling must not write");
        assert_eq!(sample.commit_op, 3);
        assert_eq!(sample.last_op, 5);
        let ops: Vec<u64> = sample.ops.iter().map(|o| o.op).collect();
        assert_eq!(ops, vec![1, 2, 3]);
        assert!(sample.ops[0].body.is_none());
        assert_eq!(sample.ops[1].body.as_deref(), Some(&[2_u8; 16][..]));
        let rotted = super::rot_newest_segment(&storage, 12_345).unwrap();
        assert!(
            rotted
                .0
                .starts_with(&allocdb_wal::segment_file_name(0)[..3])
        );
    }
}
