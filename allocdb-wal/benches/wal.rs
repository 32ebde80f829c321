//! `cargo bench -p allocdb-wal`: group-commit append throughput and recovery speed on real
//! files, with bodies that are real batches of 1,000 `reserve` requests encoded by the core.

use std::time::{Duration, Instant};

use allocdb_core::{Bundle, Command, Request, codec};
use allocdb_wal::{FileStorage, ReplicaIdentity, Wal, WalConfig};

const COMMANDS_PER_BATCH: u64 = 1_000;
const RECOVER_COMMANDS: u64 = 1_000_000;
const APPEND_DURATION: Duration = Duration::from_secs(3);
const CLUSTER: u128 = 1;

fn batch(batch_index: u64) -> Vec<u8> {
    let requests: Vec<Request> = (0..COMMANDS_PER_BATCH)
        .map(|index| {
            let id = u128::from(batch_index * COMMANDS_PER_BATCH + index);
            Request {
                operation_id: id + 1,
                command: Command::Reserve {
                    resources: Bundle::from_slice(&[id % 10_000]).expect("one id fits"),
                    holder: id % 977,
                    ttl_slots: 30,
                },
            }
        })
        .collect();
    let mut bytes = Vec::new();
    codec::encode_batch(&requests, &mut bytes);
    bytes
}

fn identity() -> ReplicaIdentity {
    ReplicaIdentity {
        replica_index: 0,
        replica_count: 1,
    }
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("allocdb-wal-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn bench_append_sync(bodies: &[Vec<u8>]) {
    let dir = fresh_dir("append");
    let storage = FileStorage::open_dir(&dir).expect("temp dir");
    let mut wal = Wal::format(storage, WalConfig::new(CLUSTER), identity()).expect("format");
    let start = Instant::now();
    let mut batches = 0_u64;
    let mut bytes = 0_u64;
    while start.elapsed() < APPEND_DURATION {
        let body = &bodies[usize::try_from(batches).expect("small") % bodies.len()];
        let op = wal.last_op() + 1;
        wal.append(1, op, op, body).expect("append");
        wal.sync().expect("sync");
        batches += 1;
        bytes += body.len() as u64 + 96;
        if op % 500 == 0 {
            // Keep the log bounded, as a replica would.
            wal.checkpoint(op, b"snapshot").expect("checkpoint");
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // reporting only
    let (batches_per_sec, mb_per_sec) = (batches as f64 / seconds, bytes as f64 / seconds / 1e6);
    println!("wal append_sync batches_per_sec={batches_per_sec:.0} mb_per_sec={mb_per_sec:.1}");
    println!(
        "  ({batches} batches of {COMMANDS_PER_BATCH} reserve commands, {} bytes per body, one fdatasync each, dir {})",
        bodies[0].len(),
        dir.display()
    );
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_recover(bodies: &[Vec<u8>]) {
    let dir = fresh_dir("recover");
    let storage = FileStorage::open_dir(&dir).expect("temp dir");
    let mut wal = Wal::format(storage, WalConfig::new(CLUSTER), identity()).expect("format");
    let batches = RECOVER_COMMANDS / COMMANDS_PER_BATCH;
    for op in 1..=batches {
        let body = &bodies[usize::try_from(op).expect("small") % bodies.len()];
        wal.append(1, op, op, body).expect("append");
    }
    wal.sync().expect("sync");
    drop(wal);
    let start = Instant::now();
    let storage = FileStorage::open_dir(&dir).expect("temp dir");
    let wal = Wal::open(storage, WalConfig::new(CLUSTER)).expect("recover");
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(wal.last_op(), batches);
    #[allow(clippy::cast_precision_loss)] // reporting only
    let ops_per_sec = RECOVER_COMMANDS as f64 / seconds;
    println!("wal recover ops_per_sec={ops_per_sec:.0}");
    println!(
        "  ({RECOVER_COMMANDS} commands in {batches} records, opened and verified in {:.1} ms; page cache warm)",
        seconds * 1e3
    );
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let bodies: Vec<Vec<u8>> = (0..8).map(batch).collect();
    bench_append_sync(&bodies);
    bench_recover(&bodies);
}
