//! Recovery: torn tails, bit flips, crashes at every step of a checkpoint, superblock copies.

mod common;

use allocdb_wal::{
    Checksum, RECORD_HEADER_SIZE, SimConfig, SimStorage, SplitMix64, VsrState, Wal, WalConfig,
    WalError, segment_file_name,
};
use common::{CLUSTER, apply, body, identity, small_config};

const SEED: u64 = 42;

fn filled(disk: &SimStorage, config: WalConfig, ops: u64, body_len: usize) -> Wal<SimStorage> {
    let mut wal = Wal::format(disk.clone(), config, identity()).unwrap();
    for op in 1..=ops {
        wal.append(1, op, op * 10, &body(SEED, op, body_len))
            .unwrap();
    }
    wal.sync().unwrap();
    wal
}

fn assert_prefix(wal: &mut Wal<SimStorage>, last_op: u64, body_len: usize) {
    assert_eq!(wal.last_op(), last_op);
    let mut buffer = Vec::new();
    for op in wal.first_op()..=last_op {
        let header = wal.read(op, &mut buffer).unwrap();
        assert_eq!(header.slot, op * 10);
        assert_eq!(buffer, body(SEED, op, body_len), "op {op}");
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_keeps_exactly_the_prefix() {
    let body_len = 300;
    let disk = SimStorage::new(SimConfig::new(1));
    drop(filled(&disk, WalConfig::new(CLUSTER), 5, body_len));
    let name = segment_file_name(1);
    let original = disk.file_bytes(&name).unwrap();
    let record_len = RECORD_HEADER_SIZE as usize + body_len;
    let start = original.len() - record_len;
    let mut rng = SplitMix64::new(7);
    for cut in 0..record_len {
        // Three shapes of a torn write: cut short, zero-filled, filled with garbage.
        let mut zeroed = original[..start + cut].to_vec();
        zeroed.resize(original.len(), 0);
        let mut garbage = original[..start + cut].to_vec();
        garbage.extend((cut..record_len).map(|_| rng.next_u64().to_le_bytes()[0]));
        for (shape, bytes) in [
            ("cut", &original[..start + cut]),
            ("zero", &zeroed[..]),
            ("garbage", &garbage[..]),
        ] {
            assert!(disk.set_file_bytes(&name, bytes));
            let mut wal = Wal::open(disk.clone(), WalConfig::new(CLUSTER))
                .unwrap_or_else(|error| panic!("cut {cut} {shape}: {error}"));
            assert_eq!(
                wal.recovery().torn_bytes_truncated,
                (bytes.len() - start) as u64
            );
            assert_prefix(&mut wal, 4, body_len);
            assert_eq!(
                disk.file_len(&name),
                Some(start as u64),
                "cut {cut} {shape}"
            );
            // The log continues correctly after the cut.
            wal.append(2, 5, 50, &body(SEED, 5, body_len)).unwrap();
            wal.sync().unwrap();
        }
    }
    assert!(disk.set_file_bytes(&name, &original));
    let mut wal = Wal::open(disk.clone(), WalConfig::new(CLUSTER)).unwrap();
    assert_prefix(&mut wal, 5, body_len);
}

#[test]
fn bit_flips_in_a_mid_log_record_are_always_detected() {
    for config in [WalConfig::new(CLUSTER), small_config()] {
        let body_len = 200;
        let disk = SimStorage::new(SimConfig::new(2));
        let wal = filled(&disk, config, 40, body_len);
        let target = 3;
        let name = segment_file_name(1);
        let record_len = u64::from(RECORD_HEADER_SIZE) + body_len as u64;
        let offset = (target - 1) * record_len;
        drop(wal);
        let mut rng = SplitMix64::new(SEED);
        for round in 0..600 {
            let bit = offset * 8 + rng.below(record_len * 8);
            assert!(disk.flip_bit(&name, bit));
            match Wal::open(disk.clone(), config) {
                Err(WalError::RecordCorrupt {
                    file,
                    offset: at,
                    op,
                    ..
                }) => {
                    assert_eq!(
                        (file.as_str(), at, op),
                        (name.as_str(), offset, target),
                        "round {round}"
                    );
                }
                Err(other) => panic!("round {round} bit {bit}: wrong error {other}"),
                Ok(_) => panic!("round {round}: flipped bit {bit} of op {target} accepted"),
            }
            assert!(disk.flip_bit(&name, bit));
        }
        // Rot after opening is caught by the read, never returned.
        let mut wal = Wal::open(disk.clone(), config).unwrap();
        assert!(disk.flip_bit(&name, offset * 8 + 8 * 150));
        let error = wal.read(target, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(error, WalError::RecordCorrupt { op: 3, .. }),
            "{error}"
        );
        assert!(error.to_string().contains(&name), "{error}");
    }
}

/// Runs the log to op 30 with a checkpoint at 10, then attempts a checkpoint at 25 with the
/// storage failing after `step` more mutations, crashes, reopens and checks the state.
fn checkpoint_with_crash_at(step: u64, crash_seed: u64) -> bool {
    let disk = SimStorage::new(SimConfig::new(crash_seed));
    let mut wal = filled(&disk, small_config(), 20, 100);
    let states = model_states(30, 100);
    wal.checkpoint(10, &states[10].to_le_bytes()).unwrap();
    for op in 21..=30 {
        wal.append(1, op, op * 10, &body(SEED, op, 100)).unwrap();
    }
    wal.sync().unwrap();
    disk.fail_mutations_after(Some(step));
    let completed = wal.checkpoint(25, &states[25].to_le_bytes()).is_ok();
    drop(wal);
    disk.crash();
    disk.fail_mutations_after(None);
    let mut wal = Wal::open(disk.clone(), small_config())
        .unwrap_or_else(|error| panic!("step {step} seed {crash_seed}: {error}"));
    let checkpoint_op = wal.checkpoint_op();
    assert!(checkpoint_op == 10 || checkpoint_op == 25, "step {step}");
    assert!(
        !completed || checkpoint_op == 25,
        "a completed checkpoint was lost"
    );
    let checkpoint = wal.read_checkpoint().unwrap().unwrap();
    let mut state = Checksum::from_le_bytes(checkpoint.snapshot.try_into().unwrap());
    assert_eq!(state, states[usize::try_from(checkpoint_op).unwrap()]);
    assert_eq!(wal.last_op(), 30, "step {step}: synced ops lost");
    let mut buffer = Vec::new();
    for op in checkpoint_op + 1..=30 {
        wal.read(op, &mut buffer).unwrap();
        state = apply(state, &buffer);
    }
    assert_eq!(state, states[30], "step {step}: replay diverged");
    completed
}

fn model_states(ops: u64, body_len: usize) -> Vec<Checksum> {
    let mut states = vec![0];
    for op in 1..=ops {
        let next = apply(states[states.len() - 1], &body(SEED, op, body_len));
        states.push(next);
    }
    states
}

#[test]
fn a_crash_at_every_step_of_a_checkpoint_recovers_a_valid_state() {
    let mut step = 0;
    loop {
        // Every seed runs at every step (no short-circuit).
        let outcomes: Vec<bool> = (0..4)
            .map(|seed| checkpoint_with_crash_at(step, seed))
            .collect();
        let completed = outcomes.iter().all(|&done| done);
        if completed {
            break;
        }
        step += 1;
        assert!(step < 100, "checkpoint never completes");
    }
    assert!(
        step >= 10,
        "the checkpoint has at least ten storage steps, saw {step}"
    );
}

#[test]
fn a_crash_at_every_step_of_a_state_transfer_recovers_a_valid_state() {
    let states = model_states(60, 100);
    // The peer's log: the same history up to op 60.
    let peer_disk = SimStorage::new(SimConfig::new(9));
    let mut peer = filled(&peer_disk, small_config(), 60, 100);
    let info = peer.checkpoint(50, &states[50].to_le_bytes()).unwrap();
    for step in 0..40 {
        let disk = SimStorage::new(SimConfig::new(step));
        let mut wal = filled(&disk, small_config(), 12, 100);
        disk.fail_mutations_after(Some(step));
        let completed = wal
            .install_checkpoint(&info, &states[50].to_le_bytes())
            .is_ok();
        drop(wal);
        disk.crash();
        disk.fail_mutations_after(None);
        let mut wal = Wal::open(disk.clone(), small_config()).unwrap();
        if wal.checkpoint_op() == 50 {
            assert_eq!(wal.last_op(), 50, "step {step}");
            assert_eq!(wal.last_checksum(), info.record_checksum);
            let next = body(SEED, 51, 100);
            let header = wal.append(1, 51, 510, &next).unwrap();
            assert_eq!(
                Some(&header),
                peer.header(51),
                "step {step}: chain differs from the peer"
            );
        } else {
            assert!(!completed, "step {step}: completed install lost");
            assert_eq!(wal.checkpoint_op(), 0);
            assert_prefix(&mut wal, 12, 100);
        }
        if completed {
            return;
        }
    }
    panic!("install never completed");
}

#[test]
fn superblock_survives_a_torn_copy_and_vsr_state_is_durable() {
    let disk = SimStorage::new(SimConfig::new(3));
    let mut wal = filled(&disk, WalConfig::new(CLUSTER), 3, 10);
    for view in 1..=5 {
        wal.write_vsr_state(VsrState {
            view,
            log_view: view - 1,
            commit_op: 2,
        })
        .unwrap();
    }
    let sequence = wal.superblock().sequence;
    drop(wal);
    disk.crash();
    let wal = Wal::open(disk.clone(), WalConfig::new(CLUSTER)).unwrap();
    assert_eq!((wal.superblock().view, wal.superblock().log_view), (5, 4));
    // Tear the newest copy: the previous state comes back, nothing older.
    let copy = sequence % 2;
    drop(wal);
    assert!(disk.flip_bit("superblock", copy * 4096 * 8 + 8 * 40));
    let wal = Wal::open(disk.clone(), WalConfig::new(CLUSTER)).unwrap();
    assert_eq!(wal.superblock().view, 4);
    assert_eq!(wal.superblock().sequence, sequence - 1);
    drop(wal);
    assert!(disk.flip_bit("superblock", (1 - copy) * 4096 * 8 + 8 * 40));
    let error = Wal::open(disk.clone(), WalConfig::new(CLUSTER))
        .err()
        .unwrap();
    assert!(
        matches!(error, WalError::SuperblockCorrupt { .. }),
        "{error}"
    );
}

#[test]
fn truncate_after_across_segments_is_durable_and_the_log_continues() {
    let disk = SimStorage::new(SimConfig::new(4));
    let mut wal = filled(&disk, small_config(), 100, 300);
    assert!(disk.file_len(&segment_file_name(1)).unwrap() <= 4096);
    wal.truncate_after(33).unwrap();
    assert_eq!((wal.last_op(), wal.durable_op()), (33, 33));
    let header = wal.append(2, 34, 340, b"new history").unwrap();
    assert_eq!(header.parent, wal.header(33).unwrap().checksum);
    wal.sync().unwrap();
    drop(wal);
    disk.crash();
    let mut wal = Wal::open(disk.clone(), small_config()).unwrap();
    assert_eq!(wal.last_op(), 34);
    let mut buffer = Vec::new();
    assert_eq!(wal.read(34, &mut buffer).unwrap().view, 2);
    assert_eq!(buffer, b"new history");
    assert_eq!(wal.read(33, &mut buffer).unwrap().view, 1);
    assert!(matches!(wal.truncate_after(0), Ok(())));
    assert_eq!(wal.last_op(), 0);
}

#[test]
fn the_log_stays_bounded_under_steady_load() {
    let disk = SimStorage::new(SimConfig::new(5));
    let mut wal = Wal::format(disk.clone(), small_config(), identity()).unwrap();
    let mut bytes_max = 0;
    for op in 1..=3000 {
        wal.append(1, op, op, &body(SEED, op, 200)).unwrap();
        wal.sync().unwrap();
        if op % 50 == 0 {
            wal.checkpoint(op, &op.to_le_bytes()).unwrap();
        }
        let total: u64 = disk_files(&disk)
            .iter()
            .map(|name| disk.file_len(name).unwrap())
            .sum();
        bytes_max = bytes_max.max(total);
    }
    let files = disk_files(&disk);
    assert!(files.len() <= 8, "{files:?}");
    assert!(
        bytes_max < 12 * 4096 + 8192,
        "log grew to {bytes_max} bytes"
    );
    assert!(wal.first_op() > 2900);
}

fn disk_files(disk: &SimStorage) -> Vec<String> {
    use allocdb_wal::Storage;
    disk.clone().list().unwrap()
}

#[test]
fn errors_are_precise() {
    let disk = SimStorage::new(SimConfig::new(6));
    assert_eq!(
        Wal::open(disk.clone(), small_config()).err(),
        Some(WalError::NotFormatted)
    );
    let mut wal = Wal::format(disk.clone(), small_config(), identity()).unwrap();
    assert_eq!(
        wal.append(0, 2, 0, b"x").unwrap_err(),
        WalError::OpOutOfOrder {
            expected: 1,
            found: 2
        }
    );
    let error = wal.append(0, 1, 0, &[0; 1025]).unwrap_err();
    assert_eq!(
        error,
        WalError::BodyTooLarge {
            len: 1025,
            max: 1024
        }
    );
    assert!(matches!(
        wal.read(1, &mut Vec::new()),
        Err(WalError::OpNotFound { op: 1, .. })
    ));
    assert!(matches!(
        wal.checkpoint(1, b"s"),
        Err(WalError::InvalidArgument(_))
    ));
    drop(wal);
    assert_eq!(
        Wal::format(disk.clone(), small_config(), identity()).err(),
        Some(WalError::AlreadyFormatted)
    );
    let other = WalConfig::new(CLUSTER + 1);
    assert!(matches!(
        Wal::open(disk.clone(), other),
        Err(WalError::ClusterMismatch { .. })
    ));
    let limited = WalConfig {
        log_ops_max: 2,
        ..small_config()
    };
    let mut wal = Wal::open(disk.clone(), limited).unwrap();
    wal.append(0, 1, 0, b"a").unwrap();
    wal.append(0, 2, 0, b"b").unwrap();
    assert_eq!(
        wal.append(0, 3, 0, b"c").unwrap_err(),
        WalError::LogFull { ops_max: 2 }
    );
    // A storage failure poisons the log until it is reopened.
    disk.fail_mutations_after(Some(0));
    assert!(matches!(wal.sync(), Err(WalError::Storage(_))));
    disk.fail_mutations_after(None);
    assert_eq!(wal.sync(), Err(WalError::Poisoned));
    let text = WalError::RecordCorrupt {
        file: "log-1".into(),
        offset: 96,
        op: 2,
        reason: "body checksum mismatch",
    }
    .to_string();
    assert_eq!(
        text,
        "log-1 offset 96: record op 2 corrupt: body checksum mismatch"
    );
}

#[test]
fn random_faults_never_yield_wrong_data() {
    // Read errors and transient bit flips on reads: every read either fails or is correct.
    let disk = SimStorage::new(SimConfig::new(8));
    let mut wal = filled(&disk, small_config(), 50, 100);
    disk.set_faults(50_000, 0, 100_000);
    let mut buffer = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    for round in 0..2000 {
        let op = round % 50 + 1;
        match wal.read(op, &mut buffer) {
            Ok(_) => {
                assert_eq!(buffer, body(SEED, op, 100));
                ok += 1;
            }
            Err(WalError::Storage(_) | WalError::RecordCorrupt { .. }) => failed += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(ok > 1000 && failed > 100, "ok {ok} failed {failed}");
}

#[test]
fn a_segment_longer_than_the_limit_is_refused_before_it_is_read() {
    let disk = SimStorage::new(SimConfig::new(SEED));
    drop(filled(&disk, small_config(), 3, 100));
    let name = segment_file_name(1);
    let mut bytes = disk.file_bytes(&name).unwrap();
    let limit = usize::try_from(small_config().segment_bytes_max).unwrap();
    bytes.resize(limit + 1, 0);
    disk.set_file_bytes(&name, &bytes);
    match Wal::open(disk.clone(), small_config()) {
        Err(WalError::RecordCorrupt {
            file, op, reason, ..
        }) => {
            assert_eq!(file, name);
            assert_eq!(op, 1);
            assert!(reason.contains("segment_bytes_max"), "{reason}");
        }
        other => panic!("expected RecordCorrupt, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn the_recovering_flag_is_durable_across_crashes() {
    let disk = SimStorage::new(SimConfig::new(SEED));
    let mut wal = filled(&disk, small_config(), 2, 50);
    assert!(!wal.superblock().recovering);
    wal.set_recovering(true).unwrap();
    drop(wal);
    disk.crash();
    let mut wal = Wal::open(disk.clone(), small_config()).unwrap();
    assert!(wal.superblock().recovering);
    assert_eq!(wal.last_op(), 2);
    wal.set_recovering(false).unwrap();
    drop(wal);
    disk.crash();
    let wal = Wal::open(disk.clone(), small_config()).unwrap();
    assert!(!wal.superblock().recovering);
}

/// One user per log: a second open of a live log (a second process on the same directory) is
/// refused with `Locked` before anything is read; the lock goes with the log (drop) or with
/// the machine (crash). Real directories use `flock`, which the kernel drops with the process.
#[test]
fn a_second_open_of_a_live_log_is_refused() {
    let disk = SimStorage::new(SimConfig::new(4));
    let wal = filled(&disk, WalConfig::new(CLUSTER), 3, 10);
    let locked = |result: Result<Wal<SimStorage>, WalError>| {
        matches!(
            result,
            Err(WalError::Storage(allocdb_wal::StorageError {
                kind: allocdb_wal::StorageErrorKind::Locked,
                ..
            }))
        )
    };
    assert!(locked(Wal::open(disk.clone(), WalConfig::new(CLUSTER))));
    assert!(locked(Wal::open_for_repair(
        disk.clone(),
        WalConfig::new(CLUSTER)
    )));
    drop(wal);
    let wal = Wal::open(disk.clone(), WalConfig::new(CLUSTER)).unwrap();
    assert_eq!(wal.last_op(), 3);
    // A crash ends the holder; a lock guard of the dead holder never frees a new holder's lock.
    disk.crash();
    let reopened = Wal::open(disk.clone(), WalConfig::new(CLUSTER)).unwrap();
    drop(wal);
    assert!(locked(Wal::open(disk.clone(), WalConfig::new(CLUSTER))));
    drop(reopened);
    // Files: two storages on one directory.
    let dir = std::env::temp_dir().join(format!("allocdb-wal-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut first = allocdb_wal::FileStorage::open_dir(&dir).unwrap();
    let mut second = allocdb_wal::FileStorage::open_dir(&dir).unwrap();
    let guard = allocdb_wal::Storage::lock_exclusive(&mut first).unwrap();
    let refused = allocdb_wal::Storage::lock_exclusive(&mut second)
        .err()
        .unwrap();
    assert_eq!(refused.kind, allocdb_wal::StorageErrorKind::Locked);
    drop(guard);
    assert!(allocdb_wal::Storage::lock_exclusive(&mut second).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
