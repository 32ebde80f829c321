//! Crash test with a real process: a child appends and syncs batches on real files and
//! reports each durable op on stdout; the parent SIGKILLs it at seeded random moments,
//! reopens the log and checks that every op reported durable is present and intact.
//!
//! The child is this test binary re-invoked with `ALLOCDB_WAL_CRASH_CHILD=<dir>`, running only
//! `child_process_entry`. Replay a failure with `ALLOCDB_WAL_CRASH_SEED=<seed>`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use allocdb_wal::{FileStorage, SplitMix64, Wal, WalConfig, WalError};
use common::{body, identity};

const CHILD_ENV: &str = "ALLOCDB_WAL_CRASH_CHILD";
const SEED_ENV: &str = "ALLOCDB_WAL_CRASH_SEED";
const BODY_SEED: u64 = 5;
const ITERATIONS: u64 = 60;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes_max: 256 << 10,
        body_bytes_max: 64 << 10,
        log_ops_max: 100_000,
        ..WalConfig::new(common::CLUSTER)
    }
}

fn body_len(op: u64) -> usize {
    usize::try_from(op * 7919 % 20_000).unwrap()
}

/// The child's work loop; a no-op when the test binary runs normally.
#[test]
fn child_process_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let storage = FileStorage::open_dir(&dir).unwrap();
    let mut wal = match Wal::open(storage, config()) {
        Ok(wal) => wal,
        Err(WalError::NotFormatted) => {
            Wal::format(FileStorage::open_dir(&dir).unwrap(), config(), identity()).unwrap()
        }
        Err(error) => panic!("child could not open the log: {error}"),
    };
    let stdout = std::io::stdout();
    let mut rng = SplitMix64::new(wal.last_op());
    for _ in 0..1_000_000 {
        let batch = rng.below(4) + 1;
        for _ in 0..batch {
            let op = wal.last_op() + 1;
            wal.append(1, op, op, &body(BODY_SEED, op, body_len(op)))
                .unwrap();
        }
        let durable = wal.sync().unwrap();
        let mut out = stdout.lock();
        writeln!(out, "DURABLE {durable}").unwrap();
        out.flush().unwrap();
        if durable % 50 < batch && durable > wal.checkpoint_op() {
            wal.checkpoint(durable, &durable.to_le_bytes()).unwrap();
        }
    }
}

#[test]
fn sigkilled_writer_never_loses_a_reported_durable_op() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_101);
    eprintln!("crash_process seed {seed} (replay: {SEED_ENV}={seed})");
    let dir = std::env::temp_dir().join(format!("allocdb-wal-crash-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = SplitMix64::new(seed);
    let mut reported_max = 0;
    for iteration in 0..ITERATIONS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut max = 0_u64;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(op) = line.strip_prefix("DURABLE ").and_then(|s| s.parse().ok()) {
                    max = max.max(op);
                }
            }
            max
        });
        std::thread::sleep(Duration::from_millis(5 + rng.below(60)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reported_max = reported_max.max(reader.join().unwrap());
        verify(&dir, reported_max, seed, iteration);
    }
    assert!(
        reported_max > 100,
        "the child made too little progress ({reported_max} ops)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn verify(dir: &std::path::Path, reported_max: u64, seed: u64, iteration: u64) {
    let context = format!("seed {seed} iteration {iteration}");
    let storage = FileStorage::open_dir(dir).unwrap();
    let mut wal = match Wal::open(storage, config()) {
        Ok(wal) => wal,
        Err(WalError::NotFormatted) if reported_max == 0 => return,
        Err(error) => panic!("{context}: reopen failed: {error}"),
    };
    assert!(
        wal.last_op() >= reported_max,
        "{context}: op {reported_max} reported durable, log ends at {}",
        wal.last_op()
    );
    if wal.checkpoint_op() > 0 {
        let checkpoint = wal.read_checkpoint().unwrap().unwrap();
        assert_eq!(
            checkpoint.snapshot,
            wal.checkpoint_op().to_le_bytes(),
            "{context}"
        );
    }
    let mut buffer = Vec::new();
    for op in wal.first_op()..=wal.last_op() {
        wal.read(op, &mut buffer)
            .unwrap_or_else(|error| panic!("{context}: {error}"));
        assert!(
            buffer == body(BODY_SEED, op, body_len(op)),
            "{context}: op {op} differs"
        );
    }
}
