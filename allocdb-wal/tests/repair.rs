//! Repair mode (`Wal::open_for_repair`): damage inside the log marks the replica recovering
//! durably, then cuts the log before it; the default `open` stays fail-closed.

mod common;

use allocdb_wal::{
    RECORD_HEADER_SIZE, SimConfig, SimStorage, SplitMix64, Wal, WalConfig, WalError,
    checkpoint_file_name, checksum128, segment_file_name,
};
use common::{body, identity, small_config};

const SEED: u64 = 7;
const BODY_LEN: usize = 200;

fn record_len() -> u64 {
    u64::from(RECORD_HEADER_SIZE) + BODY_LEN as u64
}

fn filled(disk: &SimStorage, config: WalConfig, ops: u64) -> Wal<SimStorage> {
    let mut wal = Wal::format(disk.clone(), config, identity()).unwrap();
    for op in 1..=ops {
        wal.append(1, op, op * 10, &body(SEED, op, BODY_LEN))
            .unwrap();
    }
    wal.sync().unwrap();
    wal
}

fn assert_prefix(wal: &mut Wal<SimStorage>, last_op: u64) {
    assert_eq!(wal.last_op(), last_op);
    let mut buffer = Vec::new();
    for op in wal.first_op()..=last_op {
        wal.read(op, &mut buffer).unwrap();
        assert_eq!(buffer, body(SEED, op, BODY_LEN), "op {op}");
    }
}

/// Segment names in order, as the disk holds them.
fn segments(disk: &SimStorage) -> Vec<String> {
    let mut names = allocdb_wal::Storage::list(&mut disk.clone()).unwrap();
    names.retain(|name| name.starts_with("log-"));
    names
}

#[test]
fn a_mid_log_bit_flip_is_refused_by_open_and_cut_by_open_for_repair() {
    let config = WalConfig::new(common::CLUSTER);
    let mut rng = SplitMix64::new(SEED);
    for round in 0..64 {
        let disk = SimStorage::new(SimConfig::new(round));
        drop(filled(&disk, config, 12));
        let target = 2 + rng.below(9); // never the last record: that would look torn
        let offset = (target - 1) * record_len();
        let bit = offset * 8 + rng.below(record_len() * 8);
        assert!(disk.flip_bit(&segment_file_name(1), bit));
        assert!(
            matches!(
                Wal::open(disk.clone(), config),
                Err(WalError::RecordCorrupt { op, .. }) if op == target
            ),
            "round {round}: the default open stays fail-closed"
        );
        let mut wal = Wal::open_for_repair(disk.clone(), config).unwrap();
        let recovery = wal.recovery().clone();
        assert_eq!(
            recovery.corrupt_truncated_from,
            Some(target),
            "round {round}"
        );
        assert_eq!(
            recovery.corrupt_file.as_deref(),
            Some("log-00000000000000000001")
        );
        assert_eq!(recovery.corrupt_offset, offset);
        assert!(recovery.corrupt_reason.is_some());
        assert!(recovery.lost_durable_data());
        assert_eq!(recovery.torn_bytes_truncated, 0);
        assert!(wal.superblock().recovering, "round {round}: flag set");
        assert_prefix(&mut wal, target - 1);
        // The log continues from the cut, and the cut is durable.
        wal.append(2, target, 1, b"refetched").unwrap();
        wal.sync().unwrap();
        drop(wal);
        disk.crash();
        let wal = Wal::open(disk.clone(), config).unwrap();
        assert_eq!(wal.last_op(), target);
        assert!(wal.superblock().recovering, "the flag survives a crash");
    }
}

#[test]
fn damage_in_an_earlier_segment_drops_every_later_segment() {
    let config = small_config();
    let disk = SimStorage::new(SimConfig::new(3));
    drop(filled(&disk, config, 60));
    let names = segments(&disk);
    assert!(names.len() >= 4, "{names:?}");
    // Rot the second record of the second segment.
    let second = &names[1];
    let first_op: u64 = second["log-".len()..].parse().unwrap();
    assert!(disk.flip_bit(second, (record_len() + 40) * 8 + 3));
    assert!(matches!(
        Wal::open(disk.clone(), config),
        Err(WalError::RecordCorrupt { .. })
    ));
    let mut wal = Wal::open_for_repair(disk.clone(), config).unwrap();
    assert_eq!(wal.recovery().corrupt_truncated_from, Some(first_op + 1));
    assert_eq!(
        wal.recovery().corrupt_file.as_deref(),
        Some(second.as_str())
    );
    assert_prefix(&mut wal, first_op);
    assert_eq!(segments(&disk), names[..2].to_vec());
}

#[test]
fn a_missing_segment_is_a_gap_that_repair_cuts() {
    let config = small_config();
    let disk = SimStorage::new(SimConfig::new(4));
    drop(filled(&disk, config, 60));
    let names = segments(&disk);
    assert!(allocdb_wal::Storage::remove(&mut disk.clone(), &names[2]).is_ok());
    assert!(matches!(
        Wal::open(disk.clone(), config),
        Err(WalError::LogGap { .. })
    ));
    let mut wal = Wal::open_for_repair(disk.clone(), config).unwrap();
    let expected: u64 = names[2]["log-".len()..].parse().unwrap();
    assert_eq!(wal.recovery().corrupt_truncated_from, Some(expected));
    assert!(wal.superblock().recovering);
    assert_prefix(&mut wal, expected - 1);
    assert_eq!(segments(&disk), names[..2].to_vec());
}

#[test]
fn a_torn_tail_alone_does_not_mark_the_replica_recovering() {
    let config = WalConfig::new(common::CLUSTER);
    let disk = SimStorage::new(SimConfig::new(5));
    drop(filled(&disk, config, 5));
    let name = segment_file_name(1);
    let bytes = disk.file_bytes(&name).unwrap();
    assert!(disk.set_file_bytes(&name, &bytes[..bytes.len() - 17]));
    let wal = Wal::open_for_repair(disk.clone(), config).unwrap();
    assert_eq!(wal.last_op(), 4);
    assert!(wal.recovery().torn_bytes_truncated > 0);
    assert!(!wal.recovery().lost_durable_data());
    assert!(!wal.superblock().recovering);
}

/// The flag must be durable before anything is dropped: crash at every mutating step of a
/// repair, then look at what survived.
#[test]
fn a_crash_at_any_step_of_a_repair_never_loses_ops_without_the_flag() {
    let config = small_config();
    for step in 0..12 {
        for crash_seed in 0..6 {
            let disk = SimStorage::new(SimConfig::new(100 + crash_seed));
            drop(filled(&disk, config, 40));
            let names = segments(&disk);
            assert!(disk.flip_bit(&names[1], 8 * 20));
            disk.fail_mutations_after(Some(step));
            let repaired = Wal::open_for_repair(disk.clone(), config).is_ok();
            disk.crash();
            disk.fail_mutations_after(None);
            match Wal::open(disk.clone(), config) {
                Ok(wal) => {
                    assert!(
                        wal.superblock().recovering,
                        "step {step} seed {crash_seed}: ops dropped without the recovering flag"
                    );
                }
                // The damage is still there: nothing was dropped yet.
                Err(WalError::RecordCorrupt { .. }) => assert!(!repaired),
                Err(other) => panic!("step {step}: {other}"),
            }
            let wal = Wal::open_for_repair(disk.clone(), config).unwrap();
            assert!(wal.superblock().recovering);
        }
    }
}

#[test]
fn a_corrupt_checkpoint_restarts_the_log_for_a_state_transfer() {
    let config = small_config();
    let disk = SimStorage::new(SimConfig::new(6));
    let mut wal = filled(&disk, config, 60);
    let snapshot = b"state after 50".to_vec();
    let info = wal.checkpoint(50, &snapshot).unwrap();
    drop(wal);
    let file = checkpoint_file_name(50);
    assert!(disk.flip_bit(&file, 8 * 100 + 1));
    assert!(matches!(
        Wal::open(disk.clone(), config),
        Err(WalError::CheckpointCorrupt { .. })
    ));
    let mut wal = Wal::open_for_repair(disk.clone(), config).unwrap();
    assert_eq!(wal.recovery().corrupt_checkpoint_op, Some(50));
    assert!(wal.recovery().lost_durable_data());
    assert!(wal.superblock().recovering);
    assert_eq!(wal.checkpoint_op(), 0);
    assert!(wal.read_checkpoint().unwrap().is_none());
    // Segments before op 50 were deleted by the checkpoint: the log cannot chain from op 0.
    assert_eq!(wal.last_op(), 0);
    assert_eq!(wal.superblock().commit_op, 50);
    // A peer's checkpoint is installed (state transfer) and the log continues after it.
    assert_eq!(info.snapshot_checksum, checksum128(&snapshot));
    wal.install_checkpoint(&info, &snapshot).unwrap();
    wal.append(1, 51, 510, &body(SEED, 51, BODY_LEN)).unwrap();
    wal.sync().unwrap();
    wal.set_recovering(false).unwrap();
    drop(wal);
    disk.crash();
    let mut wal = Wal::open(disk.clone(), config).unwrap();
    assert_eq!(wal.checkpoint_op(), 50);
    assert_eq!(wal.read_checkpoint().unwrap().unwrap().snapshot, snapshot);
    assert_eq!(wal.last_op(), 51);
    assert!(!wal.superblock().recovering);
}

/// Repair mode remembers the head of the log it cut: read past a record whose body rotted
/// (its header still vouches for op and length), unknown when a header rotted mid-log.
#[test]
fn repair_reports_the_head_the_log_held_before_the_cut() {
    let config = WalConfig::new(common::CLUSTER);
    let mut rng = SplitMix64::new(SEED + 1);
    let (mut known, mut unknown) = (0, 0);
    for round in 0..64 {
        let disk = SimStorage::new(SimConfig::new(round + 100));
        let head = {
            let wal = filled(&disk, config, 12);
            (12, wal.header(12).unwrap().checksum)
        };
        let target = 2 + rng.below(9);
        let offset = (target - 1) * record_len();
        let in_header = rng.below(2) == 0;
        let bit_in_record = if in_header {
            rng.below(u64::from(RECORD_HEADER_SIZE) * 8)
        } else {
            u64::from(RECORD_HEADER_SIZE) * 8 + rng.below(BODY_LEN as u64 * 8)
        };
        assert!(disk.flip_bit(&segment_file_name(1), offset * 8 + bit_in_record));
        let wal = Wal::open_for_repair(disk.clone(), config).unwrap();
        let recovery = wal.recovery();
        assert_eq!(recovery.corrupt_truncated_from, Some(target));
        if in_header {
            assert_eq!(recovery.head_before_damage, None, "round {round}");
            unknown += 1;
        } else {
            assert_eq!(recovery.head_before_damage, Some(head), "round {round}");
            known += 1;
        }
    }
    assert!(known > 0 && unknown > 0);
    // No damage: nothing to report.
    let disk = SimStorage::new(SimConfig::new(1));
    drop(filled(&disk, config, 5));
    let wal = Wal::open_for_repair(disk, config).unwrap();
    assert_eq!(wal.recovery().head_before_damage, None);
}
