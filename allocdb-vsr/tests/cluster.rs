//! Seeded cluster tests: many short faulty runs, replay, determinism, and the classic
//! failure scenarios, all over real `Replica`s and `SimStorage`.

mod harness;

use allocdb_core::Op;
use allocdb_vsr::Status;
use harness::{Cluster, Options, run_seed};

fn replay_command(seed: u64) -> String {
    format!(
        "VSR_SEED={seed} cargo test -p allocdb-vsr --release --test cluster -- replay_seed --nocapture"
    )
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

/// Thousands of short seeds with message loss, duplication, delay, (one-way) partitions,
/// crashes (some in the middle of a write, some with a rotted log record), then a heal
/// phase. `VSR_SEEDS` / `VSR_START` change the range.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn many_seeds() {
    let count = env_u64("VSR_SEEDS", if cfg!(debug_assertions) { 40 } else { 2_000 });
    let start = env_u64("VSR_START", 0);
    let mut failures = Vec::new();
    let (mut ops, mut crashes, mut partitions, mut writes, mut reads) = (0, 0, 0, 0, 0);
    let (mut corruptions, mut reformats, mut storms) = (0, 0, 0);
    let mut recovery: Vec<u64> = Vec::new();
    let mut failovers: Vec<u64> = Vec::new();
    let (mut writes_begun, mut writes_crashed, mut writes_outdated) = (0, 0, 0);
    // `VSR_FETCH_OPS_MAX=0` turns off a lagging new primary's fetch (to compare failovers).
    let fetch_ops_max = u32::try_from(env_u64("VSR_FETCH_OPS_MAX", 1024)).expect("u32");
    for seed in start..start + count {
        let options = Options {
            view_change_fetch_ops_max: fetch_ops_max,
            ..Options::faulty(seed)
        };
        match run_seed(options) {
            Ok(report) => {
                ops += report.ops_committed;
                crashes += report.crashes;
                corruptions += report.corruptions;
                reformats += report.reformats;
                storms += report.storms;
                partitions += report.partitions;
                writes += report.writes_checked;
                reads += report.reads_checked;
                recovery.push(report.ticks_to_recovery);
                failovers.extend(&report.failover_ticks);
                writes_begun += report.checkpoint_writes.begun;
                writes_crashed += report.checkpoint_writes.crashed;
                writes_outdated += report.checkpoint_writes.outdated;
            }
            Err(error) => {
                eprintln!(
                    "seed {seed} FAILED: {error}\n  replay: {}",
                    replay_command(seed)
                );
                failures.push(seed);
            }
        }
    }
    recovery.sort_unstable();
    failovers.sort_unstable();
    let percentile_of = |values: &[u64], p: usize| {
        values
            .get((values.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    let percentile = |p: usize| percentile_of(&recovery, p);
    let options = Options::faulty(start);
    println!(
        "many_seeds: {count} seeds from {start}; faults: loss {}%, duplication {}%, delay 1..={} ticks, partition {}‰/tick, crash {}‰/tick ({}% mid-write, {}% of the others also rot a log record); \
         {ops} ops committed, {writes} replies and {reads} reads checked, {crashes} crashes, {corruptions} rotted records, {reformats} reformatted disks, {storms} storms (more than f down), {partitions} partitions; \
         ticks to recovery after heal: p50 {} p99 {} max {} (bound {})",
        options.loss_percent,
        options.duplicate_percent,
        options.delay_ticks_max,
        options.partition_per_mille,
        options.crash_per_mille,
        options.crash_mid_write_percent,
        options.corrupt_percent,
        percentile(50),
        percentile(99),
        percentile(100),
        options.heal_ticks_max
    );
    println!(
        "many_seeds: {} failovers (new view to its first commit, faults still on): p50 {} p90 {} p99 {} max {} ticks",
        failovers.len(),
        percentile_of(&failovers, 50),
        percentile_of(&failovers, 90),
        percentile_of(&failovers, 99),
        percentile_of(&failovers, 100)
    );
    println!(
        "many_seeds: {writes_begun} checkpoints written off the replica task, {writes_crashed} lost to a crash while out, {writes_outdated} outdated by a state transfer or truncation"
    );
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?}; replay one with: {}",
        replay_command(failures[0])
    );
    if count >= 1_000 {
        // The runs must keep reaching the cases the detached checkpoint is built for.
        assert!(
            writes_begun > 0 && writes_crashed > 0 && writes_outdated > 0,
            "no checkpoint write was out at a crash, or none outdated"
        );
    }
}

/// Replays one seed: `VSR_SEED=<n>` (add `VSR_TRACE=1` for a message trace).
#[test]
fn replay_seed() {
    let Ok(seed) = std::env::var("VSR_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("VSR_SEED is a number");
    match run_seed(Options::faulty(seed)) {
        Ok(report) => println!("seed {seed}: {report:?}"),
        Err(error) => panic!(
            "seed {seed} failed:\n{error}\nreplay: {}",
            replay_command(seed)
        ),
    }
}

#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn the_same_seed_yields_the_same_run() {
    for seed in [3, 8, 9] {
        let first = run_seed(Options::faulty(seed)).expect("seed passes");
        let second = run_seed(Options::faulty(seed)).expect("seed passes");
        assert_eq!(first, second, "seed {seed}");
    }
    let a = run_seed(Options::faulty(3)).unwrap();
    let b = run_seed(Options::faulty(4)).unwrap();
    assert_ne!(
        a.trace_digest, b.trace_digest,
        "different seeds, different traces"
    );
}

#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn calm_clusters_of_one_three_and_five_commit_and_converge() {
    for count in [1_u8, 3, 5] {
        let report =
            run_seed(Options::calm(1, count)).unwrap_or_else(|e| panic!("{count} replicas: {e}"));
        assert!(report.ops_committed > 200, "{count} replicas: {report:?}");
        assert!(report.writes_checked > 200, "{report:?}");
    }
}

fn steps(cluster: &mut Cluster, ticks: u64) {
    for _ in 0..ticks {
        cluster.step();
        assert!(
            cluster.violations().is_empty(),
            "{:?}",
            cluster.violations()
        );
    }
}

fn steps_until(cluster: &mut Cluster, ticks_max: u64, mut done: impl FnMut(&Cluster) -> bool) {
    for _ in 0..ticks_max {
        if done(cluster) {
            return;
        }
        cluster.step();
        assert!(
            cluster.violations().is_empty(),
            "{:?}",
            cluster.violations()
        );
    }
    panic!(
        "condition not reached in {ticks_max} ticks: {}",
        cluster.describe()
    );
}

fn replica(cluster: &Cluster, index: usize) -> &allocdb_vsr::Replica<allocdb_wal::SimStorage> {
    cluster.nodes[index].replica.as_ref().expect("replica up")
}

fn isolate_link(cluster: &mut Cluster, from: u8, to: u8, blocked: bool) {
    cluster.blocked[usize::from(from)][usize::from(to)] = blocked;
}

fn heal_and_converge(cluster: &mut Cluster) {
    cluster.heal();
    steps_until(cluster, 2_000, Cluster::converged);
}

/// An op prepared by a majority (old primary + one backup) survives the old primary's
/// crash, even though the new primary never received it: it comes from the backup's
/// `do_view_change`.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn new_primary_includes_an_op_a_majority_prepared() {
    let mut cluster = Cluster::new(Options::calm(11, 3));
    steps(&mut cluster, 100);
    assert!(replica(&cluster, 0).is_primary());
    // Replica 1 (the next primary) stops hearing replica 0; replica 2 still does.
    isolate_link(&mut cluster, 0, 1, true);
    let base = replica(&cluster, 2).last_op();
    steps_until(&mut cluster, 200, |c| {
        replica(c, 2).last_op() > base && replica(c, 1).last_op() <= base
    });
    let op: Op = replica(&cluster, 2).last_op();
    let checksum = replica(&cluster, 2).header(op).unwrap().checksum;
    assert!(replica(&cluster, 1).last_op() < op);
    cluster.crash(0);
    isolate_link(&mut cluster, 0, 1, false);
    steps_until(&mut cluster, 500, |c| {
        replica(c, 1).is_primary() && replica(c, 1).commit_min() >= op
    });
    assert_eq!(
        replica(&cluster, 1).header(op).map(|h| h.checksum),
        Some(checksum),
        "op {op} survived"
    );
    heal_and_converge(&mut cluster);
    assert_eq!(cluster.checker.history[&op].checksum, checksum);
}

/// Send before sync: a primary sends each prepare before syncing it, and a majority of
/// backups may commit it (and the primary answer its client) before the primary's own sync.
/// A primary that crashes then loses those ops from its disk, yet nothing acknowledged is
/// lost: the backups' durable copies carry them into the next view, and the old primary gets
/// them back when it returns.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_primary_that_crashes_before_syncing_what_it_sent_loses_nothing_acknowledged() {
    let mut cluster = Cluster::new(Options::calm(13, 3));
    steps(&mut cluster, 100);
    assert!(replica(&cluster, 0).is_primary());
    let answered = |c: &Cluster| c.clients.iter().map(|client| client.completed).sum::<u64>();
    // The primary's driver never syncs: only the backups' copies are durable.
    cluster.sync_held[0] = true;
    let synced = replica(&cluster, 0).durable_op();
    let answered_before = answered(&cluster);
    steps_until(&mut cluster, 300, |c| {
        replica(c, 0).commit_min() > synced + 5 && answered(c) > answered_before + 5
    });
    let primary = replica(&cluster, 0);
    assert_eq!(primary.durable_op(), synced, "nothing settled the log");
    let committed = primary.commit_min();
    let lost: Vec<(Op, u128)> = (synced + 1..=committed)
        .map(|op| (op, primary.header(op).expect("held").checksum))
        .collect();
    // Power fails: every unsynced op is torn away from the primary's disk.
    cluster.crash(0);
    cluster.sync_held[0] = false;
    cluster.restart(0);
    assert!(
        replica(&cluster, 0).last_op() < committed,
        "the crash took the primary's unsynced ops"
    );
    heal_and_converge(&mut cluster);
    assert!(!replica(&cluster, 0).is_primary(), "a new view took over");
    for (op, checksum) in lost {
        assert_eq!(
            cluster.checker.history[&op].checksum, checksum,
            "committed op {op} survived its primary's crash"
        );
        for index in 0..3 {
            assert_eq!(
                replica(&cluster, index).header(op).map(|h| h.checksum),
                Some(checksum),
                "replica {index} holds op {op}"
            );
        }
    }
}

/// A primary whose disk is slow commits on its backups' copies while its own sync is out, so
/// what it applied is always ahead of what its syncs covered: it must still checkpoint (its
/// log is bounded by two intervals), not wait for a quiet moment. Segments are large here, so
/// no segment roll-over syncs the log on the side.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_primary_with_a_slow_disk_still_checkpoints() {
    fn large_segments(config: &mut allocdb_vsr::ReplicaConfig) {
        config.wal.segment_bytes_max = 64 << 20;
        config.wal.log_ops_max = 1 << 20;
    }
    let mut options = Options::calm(13, 3);
    options.replica_tweak = Some(large_segments);
    // Steady load: many clients and a fast network, so ops are appended while each sync is out.
    options.clients = 64;
    options.delay_ticks_max = 1;
    let mut cluster = Cluster::new(options);
    steps(&mut cluster, 100);
    assert!(replica(&cluster, 0).is_primary());
    cluster.sync_delay_ticks[0] = 10;
    steps(&mut cluster, 2_000);
    let primary = replica(&cluster, 0);
    let interval = primary.config().checkpoint_interval_ops;
    assert!(
        primary.is_primary(),
        "no view change: the backups kept committing"
    );
    assert!(
        primary.commit_min() > 10 * interval,
        "the cluster kept committing: {}",
        cluster.describe()
    );
    assert!(
        primary.commit_min() - primary.checkpoint_op() < 2 * interval,
        "the primary checkpointed as it went: applied {}, checkpoint {}",
        primary.commit_min(),
        primary.checkpoint_op()
    );
}

/// A checkpoint whose file takes forever (it stays out until the replica says the log is
/// held back) must slow the replica down, not fill its log: with the log full a primary
/// halted and, alone, could not even reopen (found by review: `the log retains its limit of
/// 512 ops; checkpoint first`, at tick 594, when the driver did not wait).
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_checkpoint_that_takes_forever_holds_the_log_back_instead_of_filling_it() {
    for replicas in [1, 3] {
        let mut cluster = Cluster::new(Options::calm(13, replicas));
        cluster.nodes[0]
            .replica
            .as_mut()
            .expect("up")
            .detach_checkpoints();
        cluster.checkpoint_slow[0] = true;
        for _ in 0..4_000 {
            cluster.step();
            let slow = replica(&cluster, 0);
            let retained = slow.last_op() + 1 - slow.first_op();
            assert!(
                retained < slow.config().wal.log_ops_max,
                "{replicas} replicas: the log retains {retained} ops: {}",
                cluster.describe()
            );
        }
        assert!(
            cluster.halts.is_empty() && cluster.violations().is_empty(),
            "{replicas} replicas: halts {:?}, violations {:?}",
            cluster.halts,
            cluster.violations()
        );
        let slow = replica(&cluster, 0);
        let log_ops_max = slow.config().wal.log_ops_max;
        assert!(
            slow.commit_min() > 2 * log_ops_max,
            "{replicas} replicas: it kept committing: {}",
            cluster.describe()
        );
    }
}

/// Where record `op` of a live replica's log lies on its disk: (segment file, byte offset).
fn record_location(cluster: &Cluster, index: usize, op: Op) -> (String, u64) {
    let replica = replica(cluster, index);
    let storage = cluster.nodes[index].storage.clone();
    let mut names = allocdb_wal::Storage::list(&mut storage.clone()).unwrap();
    names.retain(|n| n.starts_with("log-"));
    let (first_op, name) = names
        .iter()
        .filter_map(|n| n["log-".len()..].parse::<Op>().ok().map(|first| (first, n)))
        .filter(|(first, _)| *first <= op)
        .max()
        .expect("a segment holds the op");
    let offset = (first_op..op)
        .map(|o| {
            let header = replica.header(o).expect("the replica holds the op");
            u64::from(allocdb_wal::RECORD_HEADER_SIZE) + u64::from(header.body_len)
        })
        .sum();
    (name.clone(), offset)
}

/// Crashes replica `index` and rots one bit inside the body of its durable record `op`
/// (which must not be its last record: a damaged last record looks like a torn write).
fn crash_and_corrupt(cluster: &mut Cluster, index: usize, op: Op) {
    assert!(
        op < replica(cluster, index).last_op(),
        "not the last record"
    );
    let (name, offset) = record_location(cluster, index, op);
    cluster.crash(u8::try_from(index).unwrap());
    let bit = (offset + u64::from(allocdb_wal::RECORD_HEADER_SIZE) + 3) * 8 + 5;
    assert!(cluster.nodes[index].storage.flip_bit(&name, bit));
}

/// A backup acknowledges an op (so the primary may commit it), then loses it to disk
/// corruption. It must not help a minority (itself + the replica that never had the op)
/// elect a primary that drops the op: it recovers instead — durably, across another crash —
/// and the op survives.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_replica_that_lost_an_acknowledged_op_cannot_help_a_minority_drop_it() {
    let mut cluster = Cluster::new(Options::calm(12, 3));
    steps(&mut cluster, 300);
    // Replica 2 stops hearing the primary; replica 1 acknowledges alone.
    isolate_link(&mut cluster, 0, 2, true);
    let lacking = replica(&cluster, 2).last_op() + 1;
    steps_until(&mut cluster, 300, |c| {
        replica(c, 0).commit_min() > lacking + 2 && replica(c, 1).last_op() > lacking + 2
    });
    let op = replica(&cluster, 0).commit_min();
    let checksum = replica(&cluster, 0).header(op).unwrap().checksum;
    assert!(
        replica(&cluster, 1).last_op() >= op && replica(&cluster, 2).last_op() < lacking,
        "lacking {lacking} op {op} tick {}: {}",
        cluster.tick,
        cluster.describe()
    );
    // The primary dies; replica 1's disk rots the first op replica 2 lacks.
    cluster.crash(0);
    crash_and_corrupt(&mut cluster, 1, lacking);
    isolate_link(&mut cluster, 0, 2, false);
    cluster.restart(1);
    assert_eq!(replica(&cluster, 1).status(), Status::Recovering);
    assert!(replica(&cluster, 1).recovering_flag());
    assert_eq!(
        replica(&cluster, 1).recovery().corrupt_truncated_from,
        Some(lacking)
    );
    assert_eq!(replica(&cluster, 1).last_op(), lacking - 1);
    // Replicas 1 and 2 alone: nothing may be committed at or after `op` by them.
    steps(&mut cluster, 200);
    // A second crash before catching up: the mark is durable, the log now looks clean.
    cluster.crash(1);
    cluster.restart(1);
    assert_eq!(replica(&cluster, 1).status(), Status::Recovering);
    assert!(
        replica(&cluster, 1)
            .recovery()
            .corrupt_truncated_from
            .is_none()
    );
    steps(&mut cluster, 200);
    assert!(!replica(&cluster, 2).is_primary() && !replica(&cluster, 1).is_primary());
    assert!(replica(&cluster, 2).commit_min() < op);
    assert!(
        cluster
            .checker
            .history
            .get(&op)
            .is_none_or(|c| c.checksum == checksum)
    );
    // The old primary returns: the op survives and everyone converges.
    cluster.restart(0);
    heal_and_converge(&mut cluster);
    assert_eq!(cluster.checker.history[&op].checksum, checksum);
    assert_eq!(replica(&cluster, 1).status(), Status::Normal);
    assert!(!replica(&cluster, 1).recovering_flag());
}

/// An ordinary crash (a torn, never-synced tail) is not evidence of lost acknowledged data:
/// the replica comes back as a normal backup, not recovering.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_torn_tail_alone_leaves_a_replica_normal() {
    let mut cluster = Cluster::new(Options::calm(14, 3));
    steps(&mut cluster, 150);
    let last = replica(&cluster, 2).last_op();
    let (name, _) = record_location(&cluster, 2, last);
    cluster.crash(2);
    let storage = cluster.nodes[2].storage.clone();
    let bytes = storage.file_bytes(&name).unwrap();
    assert!(storage.set_file_bytes(&name, &bytes[..bytes.len() - 8]));
    cluster.restart(2);
    let restarted = replica(&cluster, 2);
    assert!(restarted.recovery().torn_bytes_truncated > 0);
    assert_eq!(restarted.last_op(), last - 1);
    assert_eq!(restarted.status(), Status::Normal);
    assert!(!restarted.recovering_flag());
    heal_and_converge(&mut cluster);
}

/// A backup whose log rotted in the middle (below its commit point) cuts the log there,
/// recovers the rest from the primary (hash-chain checked), and rejoins.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_backup_with_a_corrupt_mid_log_record_repairs_and_rejoins() {
    let mut cluster = Cluster::new(Options::calm(15, 3));
    steps(&mut cluster, 150);
    let commit = replica(&cluster, 2).commit_min();
    let op = commit - 5;
    crash_and_corrupt(&mut cluster, 2, op);
    cluster.restart(2);
    let restarted = replica(&cluster, 2);
    assert_eq!(restarted.status(), Status::Recovering);
    assert_eq!(restarted.recovery().corrupt_truncated_from, Some(op));
    assert!(restarted.commit_min() < op);
    steps_until(&mut cluster, 300, |c| {
        replica(c, 2).status() == Status::Normal && replica(c, 2).commit_min() > commit
    });
    assert!(!replica(&cluster, 2).recovering_flag());
    assert_eq!(
        replica(&cluster, 2).header(op),
        replica(&cluster, 0).header(op),
        "the rotted op was fetched again"
    );
    heal_and_converge(&mut cluster);
}

/// The same for the primary: it comes back recovering, the others elect a new primary, and
/// it repairs from it.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_primary_with_a_corrupt_mid_log_record_repairs_and_rejoins() {
    let mut cluster = Cluster::new(Options::calm(16, 3));
    steps(&mut cluster, 150);
    assert!(replica(&cluster, 0).is_primary());
    let commit = replica(&cluster, 0).commit_min();
    let op = commit / 2;
    crash_and_corrupt(&mut cluster, 0, op);
    cluster.restart(0);
    assert_eq!(replica(&cluster, 0).status(), Status::Recovering);
    assert_eq!(
        replica(&cluster, 0).recovery().corrupt_truncated_from,
        Some(op)
    );
    steps_until(&mut cluster, 600, |c| {
        replica(c, 0).status() == Status::Normal
            && c.nodes[1..].iter().any(|n| {
                n.replica
                    .as_ref()
                    .is_some_and(allocdb_vsr::Replica::is_primary)
            })
            && replica(c, 0).commit_min() > commit
    });
    assert!(!replica(&cluster, 0).recovering_flag());
    heal_and_converge(&mut cluster);
}

/// A replica that was cut off kept voting for views that never started; then its disk rots
/// and it restarts recovering in a view ahead of the cluster's. Nobody will ever send it that
/// view's start, so it asks (with a `start_view_change` vote, never its log) for the cluster
/// to move to it, then catches up and rejoins.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_recovering_replica_ahead_of_the_cluster_view_brings_it_along() {
    let mut cluster = Cluster::new(Options::calm(20, 3));
    steps(&mut cluster, 150);
    for other in [0, 1] {
        isolate_link(&mut cluster, 2, other, true);
        isolate_link(&mut cluster, other, 2, true);
    }
    steps_until(&mut cluster, 400, |c| replica(c, 2).view() >= 2);
    let op = replica(&cluster, 2).commit_min() - 3;
    crash_and_corrupt(&mut cluster, 2, op);
    steps(&mut cluster, 10); // its last votes, still in flight, are dropped
    for other in [0, 1] {
        isolate_link(&mut cluster, 2, other, false);
        isolate_link(&mut cluster, other, 2, false);
    }
    cluster.restart(2);
    let view = replica(&cluster, 2).view();
    assert_eq!(replica(&cluster, 2).status(), Status::Recovering);
    assert!(replica(&cluster, 0).view() < view && replica(&cluster, 0).is_primary());
    steps_until(&mut cluster, 600, |c| {
        replica(c, 2).status() == Status::Normal && replica(c, 0).view() >= view
    });
    heal_and_converge(&mut cluster);
}

/// A single replica has nobody to repair from: a rotted mid-log record stops it (fail
/// closed), and nothing on its disk is cut away.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_single_replica_refuses_to_start_on_a_corrupt_log() {
    let mut cluster = Cluster::new(Options::calm(19, 1));
    steps(&mut cluster, 150);
    let op = replica(&cluster, 0).commit_min() / 2;
    crash_and_corrupt(&mut cluster, 0, op);
    let storage = cluster.nodes[0].storage.clone();
    let config = harness::replica_config(0, 1, 19);
    for _ in 0..2 {
        match allocdb_vsr::Replica::open(storage.clone(), config.clone()) {
            Err(allocdb_vsr::ReplicaError::Wal(allocdb_wal::WalError::RecordCorrupt {
                op: at,
                ..
            })) => assert_eq!(at, op),
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a single replica started on a corrupt log"),
        }
    }
}

/// A replica whose checkpoint file rotted cannot restore its state from its own disk: it
/// restarts empty and recovering, and a state transfer from the primary brings it back.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_corrupt_checkpoint_is_replaced_by_a_state_transfer() {
    let mut cluster = Cluster::new(Options::calm(17, 3));
    steps_until(&mut cluster, 2_000, |c| replica(c, 2).commit_min() > 150);
    let storage = cluster.nodes[2].storage.clone();
    let mut names = allocdb_wal::Storage::list(&mut storage.clone()).unwrap();
    names.retain(|n| n.starts_with("checkpoint-"));
    let checkpoint = names.last().expect("a checkpoint was taken").clone();
    cluster.crash(2);
    assert!(storage.flip_bit(&checkpoint, 8 * 200 + 1));
    cluster.restart(2);
    let restarted = replica(&cluster, 2);
    assert_eq!(restarted.status(), Status::Recovering);
    assert!(restarted.recovery().corrupt_checkpoint_op.is_some());
    let commit = replica(&cluster, 0).commit_min();
    steps_until(&mut cluster, 600, |c| {
        replica(c, 2).status() == Status::Normal && replica(c, 2).commit_min() > commit
    });
    assert!(!replica(&cluster, 2).recovering_flag());
    heal_and_converge(&mut cluster);
}

/// Whole-cluster power loss: every replica crashes at once, mid-write (torn tails
/// everywhere). Nobody lost anything it acknowledged, so nobody is recovering, and the
/// cluster elects a primary and makes progress again.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn the_whole_cluster_loses_power_and_recovers() {
    for count in [3_u8, 5] {
        let mut cluster = Cluster::new(Options::calm(18 + u64::from(count), count));
        steps(&mut cluster, 150);
        // Every replica's next storage call after one more succeeds fails: appends land
        // unsynced, then the replica halts and its disk keeps a random prefix of them.
        cluster.hold_halted = true;
        for node in &cluster.nodes {
            node.storage.fail_mutations_after(Some(1));
        }
        steps_until(&mut cluster, 200, |c| {
            c.nodes.iter().filter(|n| n.replica.is_none()).count() >= usize::from(count) - 1
        });
        for index in 0..count {
            cluster.crash(index);
        }
        // Guarantee a torn tail on every disk: half a record of garbage after the last one.
        for node in &cluster.nodes {
            let mut storage = node.storage.clone();
            let mut names = allocdb_wal::Storage::list(&mut storage).unwrap();
            names.retain(|n| n.starts_with("log-"));
            let last = names.last().unwrap();
            let mut bytes = node.storage.file_bytes(last).unwrap();
            let tail: Vec<u8> = bytes[..bytes.len().min(60)].to_vec();
            bytes.extend_from_slice(&tail);
            assert!(node.storage.set_file_bytes(last, &bytes));
        }
        let history = cluster.checker.history_op_max();
        cluster.hold_halted = false;
        for index in 0..count {
            cluster.restart(index);
            let restarted = replica(&cluster, usize::from(index));
            assert!(
                restarted.recovery().torn_bytes_truncated > 0,
                "replica {index}"
            );
            assert_ne!(restarted.status(), Status::Recovering, "replica {index}");
        }
        steps_until(&mut cluster, 1_000, |c| {
            c.checker.history_op_max() > history + 20
        });
        heal_and_converge(&mut cluster);
    }
}

/// An old primary cut off during a view change never commits (or acknowledges) anything
/// again in its old view; the majority moves on without it.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn an_isolated_old_primary_commits_nothing_afterwards() {
    let mut cluster = Cluster::new(Options::calm(13, 3));
    steps(&mut cluster, 100);
    assert!(replica(&cluster, 0).is_primary());
    for other in [1, 2] {
        isolate_link(&mut cluster, 0, other, true);
        isolate_link(&mut cluster, other, 0, true);
    }
    let frozen = replica(&cluster, 0).commit_min();
    let replies_before = cluster.checker.writes_checked;
    steps_until(&mut cluster, 600, |c| {
        c.nodes[1..].iter().any(|n| {
            n.replica
                .as_ref()
                .is_some_and(|r| r.is_primary() && r.commit_min() > frozen + 5)
        })
    });
    steps(&mut cluster, 200);
    let old = replica(&cluster, 0);
    assert_eq!(
        old.commit_min(),
        frozen,
        "the isolated old primary applied nothing"
    );
    assert!(
        !old.is_primary(),
        "it stepped down: status {:?} view {}",
        old.status(),
        old.view()
    );
    assert!(
        cluster.checker.writes_checked > replies_before,
        "the majority kept serving"
    );
    for other in [1, 2] {
        isolate_link(&mut cluster, 0, other, false);
        isolate_link(&mut cluster, other, 0, false);
    }
    heal_and_converge(&mut cluster);
}

/// The next primary crashes, misses many ops (far more than a `do_view_change` carries),
/// and comes back just as the primary dies. Returns (ticks from the old primary's crash to
/// the first commit of a new view, the replica that committed it, its view).
fn lagging_new_primary_failover(fetch_ops_max: u32) -> (u64, u8, u64) {
    let options = Options {
        view_change_fetch_ops_max: fetch_ops_max,
        ..Options::calm(21, 3)
    };
    let suffix = u64::from(harness::replica_config(0, 3, 0).suffix_ops_max);
    let mut cluster = Cluster::new(options);
    steps(&mut cluster, 300);
    assert!(replica(&cluster, 0).is_primary());
    cluster.crash(1);
    let behind = replica(&cluster, 2).last_op();
    steps_until(&mut cluster, 2_000, |c| {
        replica(c, 0).commit_min() > behind + 3 * suffix
    });
    let history = cluster.checker.history_op_max();
    cluster.crash(0);
    cluster.restart(1);
    let start = cluster.tick;
    steps_until(&mut cluster, 1_000, |c| {
        c.checker.history_op_max() > history
            && c.nodes[1..].iter().any(|n| {
                n.replica
                    .as_ref()
                    .is_some_and(allocdb_vsr::Replica::is_primary)
            })
    });
    let ticks = cluster.tick - start;
    let primary = (1..3_u8)
        .find(|&i| replica(&cluster, usize::from(i)).is_primary())
        .unwrap();
    let view = replica(&cluster, usize::from(primary)).view();
    cluster.restart(0);
    heal_and_converge(&mut cluster);
    (ticks, primary, view)
}

/// A new primary whose log lags the chosen `do_view_change` log by more than the claims
/// carry fetches the missing ops from the claimants and starts its view, instead of letting
/// the view time out; failover gets faster.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_lagging_new_primary_fetches_the_missing_ops() {
    let (with_fetch, primary, view) = lagging_new_primary_failover(1024);
    assert_eq!(
        (primary, view),
        (1, 1),
        "the lagging replica 1 led view 1 after fetching"
    );
    let (without_fetch, primary_without, view_without) = lagging_new_primary_failover(0);
    assert!(
        view_without > 1 && primary_without != 1,
        "without fetching, view 1 cannot start at replica 1 ({primary_without}, view {view_without})"
    );
    println!(
        "lagging new primary: view change to first commit {with_fetch} ticks with fetching, {without_fetch} without"
    );
    assert!(
        with_fetch < without_fetch,
        "fetching made failover slower: {with_fetch} vs {without_fetch} ticks"
    );
}

/// Whether a run's error comes from a cluster checker (not a replica's own assertion).
#[cfg(any(
    feature = "broken-view-change",
    feature = "broken-commit-quorum",
    feature = "broken-fresh-replica"
))]
fn from_checker(error: &str) -> bool {
    ["(a/b)", "(c)", "(d)", "(e)"]
        .iter()
        .any(|tag| error.starts_with(tag))
}

/// Runs seeds until a cluster checker (a)/(b)/(c)/(e) reports the planted bug; replica
/// assertions, replicas refusing the broken primary's messages ("(peer)") and a cluster that
/// no longer recovers ("(f)") catching it first do not count.
#[cfg(any(feature = "broken-view-change", feature = "broken-commit-quorum"))]
fn a_checker_catches_the_planted_bug(what: &str, seeds_max: u64) {
    let mut asserted = 0;
    for seed in 0..seeds_max {
        let options = Options {
            peer_refusals_expected: true,
            ..Options::faulty(seed)
        };
        if let Err(error) = run_seed(options) {
            if from_checker(&error) {
                let first = error.lines().next().unwrap_or_default();
                println!(
                    "{what}: caught by a checker at seed {seed} ({asserted} earlier seeds were caught by replica assertions first): {first}"
                );
                return;
            }
            assert!(
                error.contains("replica panicked")
                    || error.starts_with("(peer)")
                    || error.starts_with("(f)"),
                "seed {seed}: {error}"
            );
            asserted += 1;
        }
    }
    panic!("no checker noticed {what} in {seeds_max} seeds ({asserted} assertion failures)");
}

/// The checkers are not vacuous: a new primary that ignores `do_view_change` logs is caught
/// by checker (a)/(b) — not only by the replicas' own assertions.
/// Run with `cargo test -p allocdb-vsr --release --features broken-view-change --test cluster -- broken`.
#[cfg(feature = "broken-view-change")]
#[test]
fn broken_view_change_is_caught() {
    a_checker_catches_the_planted_bug("a view change that ignores `do_view_change` logs", 60);
}

/// A primary that commits without a majority loses acknowledged writes at the next
/// failover; no replica assertion notices, checkers (a)/(b) and (e) do.
/// Run with `cargo test -p allocdb-vsr --release --features broken-commit-quorum --test cluster -- broken`.
#[cfg(feature = "broken-commit-quorum")]
#[test]
fn broken_commit_quorum_is_caught() {
    a_checker_catches_the_planted_bug("a primary committing without a majority", 20);
}

/// Each checker reports the violation it exists for, fed directly with broken inputs.
#[test]
fn each_checker_catches_what_it_checks() {
    use allocdb_core::{Command, LeaseId, Outcome, Request, ResultCode, codec};
    use harness::checker::Checker;
    let batch = |resource: u128| {
        let mut body = Vec::new();
        let request = Request {
            operation_id: 7,
            command: Command::CreateResource {
                resource,
                pool: None,
            },
        };
        codec::encode_batch(&[request], &mut body);
        body
    };
    // (a)/(b): two replicas commit different batches at op 1.
    let mut checker = Checker::new(harness::core_config());
    checker.observe_commit(0, 1, 11, 1, &batch(1));
    checker.observe_commit(1, 1, 22, 1, &batch(2));
    assert!(
        checker.violations[0].starts_with("(a/b) op 1"),
        "{:?}",
        checker.violations
    );
    // (c): same op, different state digests.
    let mut checker = Checker::new(harness::core_config());
    checker.observe_digest(0, 5, 1);
    checker.observe_digest(1, 5, 2);
    assert!(checker.violations[0].starts_with("(c) op 5"));
    // (e): a client told an outcome the history does not produce.
    let mut checker = Checker::new(harness::core_config());
    checker.observe_commit(0, 1, 11, 1, &batch(1));
    let wrong = Outcome {
        lease: LeaseId(9),
        ..Outcome::code(ResultCode::Ok)
    };
    checker.observe_write_reply(0, 7, 1, 0, wrong);
    checker.advance_model();
    assert!(
        checker
            .violations
            .iter()
            .any(|v| v.starts_with("(e) client 0")),
        "{:?}",
        checker.violations
    );
    // (e): the right outcome passes.
    let mut checker = Checker::new(harness::core_config());
    checker.observe_commit(0, 1, 11, 1, &batch(1));
    checker.observe_write_reply(0, 7, 1, 0, Outcome::code(ResultCode::Ok));
    checker.advance_model();
    assert!(checker.violations.is_empty(), "{:?}", checker.violations);
    assert_eq!(checker.writes_checked, 1);
}

/// The field report of issue 10: backup C is stopped; writes are acknowledged by the primary
/// P and backup B; B loses its disk and is formatted again; P dies; C and the new B run alone.
/// They must not form a view (C's log lacks the acknowledged ops and B knows nothing), and
/// when P returns every acknowledged op survives and B catches up.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_reformatted_backup_cannot_help_a_stale_one_drop_acknowledged_ops() {
    let mut cluster = Cluster::new(Options::calm(21, 3));
    steps_until(&mut cluster, 300, |c| replica(c, 0).commit_min() > 5);
    assert!(replica(&cluster, 0).is_primary());
    // C (replica 2) stops; P (0) and B (1) go on committing.
    cluster.crash(2);
    let stale = replica(&cluster, 0).commit_min();
    steps_until(&mut cluster, 500, |c| {
        replica(c, 0).commit_min() > stale + 20 && replica(c, 1).last_op() > stale + 20
    });
    let op = replica(&cluster, 0).commit_min();
    let checksum = replica(&cluster, 0).header(op).unwrap().checksum;
    // B's disk is lost and formatted again; P dies; C and the new B start.
    cluster.wipe(1);
    cluster.crash(0);
    cluster.restart(1);
    cluster.restart(2);
    assert!(replica(&cluster, 1).fresh());
    assert_eq!(replica(&cluster, 1).status(), Status::Recovering);
    steps(&mut cluster, 600);
    for index in [1, 2] {
        assert!(
            !replica(&cluster, index).is_primary(),
            "{}",
            cluster.describe()
        );
    }
    assert!(
        replica(&cluster, 1).fresh(),
        "B votes only after catching up"
    );
    // Nothing was committed without P: its pipeline (at most 4 ops) bounds the history.
    assert!(
        cluster.checker.history_op_max() <= op + 4,
        "{}",
        cluster.describe()
    );
    // P returns: the acknowledged op survives and B catches up and votes again.
    cluster.restart(0);
    heal_and_converge(&mut cluster);
    assert_eq!(cluster.checker.history[&op].checksum, checksum);
    assert!(!replica(&cluster, 1).fresh());
    assert_eq!(replica(&cluster, 1).status(), Status::Normal);
    assert!(replica(&cluster, 1).commit_min() >= op);
}

/// A new cluster starts only when every replica has answered (genesis needs all of them:
/// a silent replica might be the one intact disk); replica 0 leads view 0.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_new_cluster_starts_once_every_replica_answers() {
    let mut cluster = Cluster::new(Options::calm(22, 3));
    cluster.crash(2);
    steps(&mut cluster, 300);
    assert!(cluster.checker.history.is_empty(), "{}", cluster.describe());
    for index in [0, 1] {
        assert_eq!(replica(&cluster, index).status(), Status::Recovering);
        assert!(replica(&cluster, index).fresh());
    }
    cluster.restart(2);
    steps_until(&mut cluster, 200, |c| replica(c, 0).commit_min() > 0);
    assert!(replica(&cluster, 0).is_primary());
    assert_eq!(replica(&cluster, 0).view(), 0);
    heal_and_converge(&mut cluster);
    assert!((0..3).all(|i| !replica(&cluster, i).fresh()));
}

/// The whole cluster restarts with one rotted committed record on each of two replicas; the
/// third holds every op. The two damaged replicas vouch for the heads their logs held (read
/// past the rotted bodies), the intact log holds both, and so the cluster comes back — where
/// before it waited forever (`[0 ViewChange] [1 Recovering] [2 Recovering]`).
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn two_damaged_replicas_and_one_intact_log_recover() {
    let mut cluster = Cluster::new(Options::calm(23, 3));
    steps_until(&mut cluster, 600, |c| {
        (0..3).all(|i| replica(c, i).commit_min() > 40 && replica(c, i).last_op() > 40)
    });
    // Stop the clients so that every log ends at the same committed head.
    cluster.clients_active = false;
    steps_until(&mut cluster, 600, |c| {
        c.pending_operations() == 0
            && (0..3).all(|i| replica(c, i).commit_min() == replica(c, 0).last_op())
    });
    let head = replica(&cluster, 0).last_op();
    let committed: Vec<(Op, u128)> = (1..=head)
        .map(|op| (op, cluster.checker.history[&op].checksum))
        .collect();
    crash_and_corrupt(&mut cluster, 1, 12);
    crash_and_corrupt(&mut cluster, 2, 25);
    cluster.crash(0);
    for index in 0..3 {
        cluster.restart(index);
    }
    for (index, rotted) in [(1, 12), (2, 25)] {
        let damaged = replica(&cluster, index);
        assert_eq!(
            damaged.status(),
            Status::Recovering,
            "{}",
            cluster.describe()
        );
        assert_eq!(damaged.recovery().corrupt_truncated_from, Some(rotted));
        assert_eq!(
            damaged.recovery().head_before_damage.map(|(op, _)| op),
            Some(head)
        );
    }
    cluster.clients_active = true;
    steps_until(&mut cluster, 1_500, |c| {
        (0..3).all(|i| replica(c, i).status() == Status::Normal)
            && c.checker.history_op_max() > head + 5
    });
    for (op, checksum) in committed {
        assert_eq!(cluster.checker.history[&op].checksum, checksum, "op {op}");
    }
    heal_and_converge(&mut cluster);
}

/// The same with the intact replica's log one op short of what both damaged replicas held
/// (its last op was torn away): no log holds everything the damaged ones vouch for, so the
/// cluster must wait rather than start without that op.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn two_damaged_replicas_wait_when_no_log_holds_their_heads() {
    let mut cluster = Cluster::new(Options::calm(24, 3));
    steps_until(&mut cluster, 600, |c| {
        (0..3).all(|i| replica(c, i).commit_min() > 40)
    });
    cluster.clients_active = false;
    steps_until(&mut cluster, 600, |c| {
        c.pending_operations() == 0
            && (0..3).all(|i| replica(c, i).commit_min() == replica(c, 0).last_op())
    });
    let head = replica(&cluster, 0).last_op();
    crash_and_corrupt(&mut cluster, 1, 12);
    crash_and_corrupt(&mut cluster, 2, 25);
    // Replica 0 loses its last record (as if torn): its log ends one op short.
    let (name, offset) = record_location(&cluster, 0, head);
    cluster.crash(0);
    let mut bytes = cluster.nodes[0].storage.file_bytes(&name).unwrap();
    bytes.truncate(usize::try_from(offset).unwrap() + 10);
    assert!(cluster.nodes[0].storage.set_file_bytes(&name, &bytes));
    for index in 0..3 {
        cluster.restart(index);
    }
    assert_eq!(replica(&cluster, 0).last_op(), head - 1);
    cluster.clients_active = true;
    steps(&mut cluster, 1_500);
    assert!(
        (0..3).all(|i| !replica(&cluster, i).is_primary()),
        "{}",
        cluster.describe()
    );
    assert!(cluster.checker.history_op_max() <= head);
}

/// Replicas compare state digests at every multiple of `checkpoint_interval_ops`: a backup
/// whose state differs from the primary's halts, naming both digests.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_backup_whose_state_digest_differs_halts() {
    let mut cluster = Cluster::new(Options::calm(25, 3));
    cluster.hold_halted = true;
    steps_until(&mut cluster, 600, |c| replica(c, 2).commit_min() > 48);
    // Untampered, equal states never halt anyone.
    assert!(cluster.nodes.iter().all(|n| n.replica.is_some()));
    cluster.digests_tampered = true;
    cluster.nodes[2]
        .replica
        .as_mut()
        .unwrap()
        .tamper_state_digests(1);
    let mut halted = None;
    for _ in 0..2_000 {
        cluster.step();
        if let Some(text) = cluster.halts.iter().find(|(i, _)| *i == 2) {
            halted = Some(text.1.clone());
            break;
        }
    }
    let text = halted.expect("replica 2 halts on its next compared digest");
    assert!(text.contains("state digest after op"), "{text}");
    assert!(text.contains("the states diverged"), "{text}");
}

/// Delivers a forged peer message straight to replica `to` (its answers are discarded).
fn forge(cluster: &mut Cluster, from: u8, to: usize, message: &allocdb_vsr::Message) {
    cluster.forged_messages = true;
    let mut out = allocdb_vsr::Outbox::new(1_024, 1_024);
    cluster.nodes[to]
        .replica
        .as_mut()
        .expect("replica up")
        .on_message(from, message, &mut out);
}

/// A forged entry whose checksums are right but whose body is not a batch the core can
/// decode (found by the `peer_message` fuzz target): it used to be logged, acknowledged and,
/// once committed, to panic every replica at apply ("holds an undecodable batch"). Now a
/// prepare, `do_view_change` or `start_view` carrying one is refused and counted.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn forged_entry_that_is_not_a_batch_is_refused() {
    use allocdb_vsr::Message;
    let mut cluster = Cluster::new(Options::calm(26, 3));
    steps_until(&mut cluster, 600, |c| replica(c, 1).commit_min() > 10);
    assert!(replica(&cluster, 0).is_primary());
    let view = replica(&cluster, 1).view();
    let last = replica(&cluster, 1).last_op();
    let parent = replica(&cluster, 1)
        .header(last)
        .expect("head held")
        .checksum;
    let body = vec![0x21; 40];
    let header =
        allocdb_wal::RecordHeader::new(harness::CLUSTER_ID, view, last + 1, 1, parent, &body);
    let entry = allocdb_vsr::Entry { header, body };
    let forged = [
        Message::Prepare {
            view,
            commit: last + 1,
            entry: entry.clone(),
        },
        Message::StartView {
            view: view + 3,
            op: last + 1,
            checksum: entry.header.checksum,
            commit: last + 1,
            suffix: vec![entry],
        },
    ];
    for (count, message) in forged.iter().enumerate() {
        forge(&mut cluster, 0, 1, message);
        let backup = replica(&cluster, 1);
        assert_eq!(backup.peer_messages_refused(), count as u64 + 1);
        assert_eq!(
            backup.last_refusal(),
            Some((0, "entry body is not a batch the core can decode"))
        );
        assert_eq!(backup.last_op(), last, "nothing forged was logged");
        assert_eq!(backup.view(), view);
    }
    heal_and_converge(&mut cluster);
}

/// The forged peer messages of issue 12 that crashed or bricked replicas are refused —
/// dropped, counted, never applied, never a panic — and the cluster carries on: a prepare of
/// op 0, a prepare contradicting a committed op, a vote for view `u64::MAX` (the view used to
/// wrap), and a `do_view_change` whose commit lies beyond every log.
#[test]
#[cfg_attr(
    any(feature = "broken-view-change", feature = "broken-commit-quorum"),
    ignore = "the planted bug breaks safety on purpose"
)]
fn forged_peer_messages_are_refused_and_counted() {
    use allocdb_vsr::Message;
    let mut cluster = Cluster::new(Options::calm(26, 3));
    steps_until(&mut cluster, 600, |c| replica(c, 1).commit_min() > 10);
    assert!(replica(&cluster, 0).is_primary());
    let view = replica(&cluster, 1).view();
    let committed = replica(&cluster, 1).header(1).expect("op 1 held");
    let mut op_zero = allocdb_vsr::Entry {
        header: committed,
        body: Vec::new(),
    };
    op_zero.header = allocdb_wal::RecordHeader::new(
        committed.cluster_id,
        view,
        0,
        1,
        committed.parent,
        b"forged",
    );
    op_zero.body = b"forged".to_vec();
    // A well-formed batch (an entry whose body does not decode is refused before anything
    // else, see `forged_entry_that_is_not_a_batch_is_refused`), different from op 1's.
    let mut conflicting_body = Vec::new();
    allocdb_core::codec::encode_batch(&[], &mut conflicting_body);
    let conflicting = allocdb_vsr::Entry {
        header: allocdb_wal::RecordHeader::new(
            committed.cluster_id,
            view,
            1,
            1,
            committed.parent,
            &conflicting_body,
        ),
        body: conflicting_body,
    };
    let forged = [
        Message::Prepare {
            view,
            commit: 0,
            entry: op_zero,
        },
        Message::Prepare {
            view,
            commit: 1,
            entry: conflicting.clone(),
        },
        Message::StartViewChange { view: u64::MAX },
    ];
    for (count, message) in forged.iter().enumerate() {
        forge(&mut cluster, 0, 1, message);
        let backup = replica(&cluster, 1);
        assert_eq!(
            backup.peer_messages_refused(),
            count as u64 + 1,
            "{message:?}: {:?}",
            backup.last_refusal()
        );
        assert_eq!(backup.view(), view);
        assert_eq!(backup.header(1), Some(committed), "op 1 is untouched");
        assert!(backup.halted().is_none());
    }
    // A start_view of a later view (led, by number, by the forger) whose log contradicts the
    // committed op 1: the backup follows the view number (only authentication can stop
    // that) but refuses the log, and op 1 stays.
    let start_view = Message::StartView {
        view: view + 3,
        op: 1,
        checksum: conflicting.header.checksum,
        commit: 1,
        suffix: vec![conflicting],
    };
    forge(&mut cluster, 0, 1, &start_view);
    assert_eq!(replica(&cluster, 1).peer_messages_refused(), 4);
    assert_eq!(replica(&cluster, 1).header(1), Some(committed));
    // A do_view_change claiming a commit beyond every log: the would-be primary of the next
    // view refuses to start it on that claim (it used to assert and crash).
    let next = view + 1;
    let target = usize::try_from(next % 3).unwrap();
    let liar = u8::try_from((target + 1) % 3).unwrap();
    let claim = Message::DoViewChange {
        view: next,
        log_view: view,
        op: 0,
        checksum: 0,
        commit: 1_000_000,
        suffix: Vec::new(),
        damaged: false,
    };
    forge(&mut cluster, liar, target, &claim);
    steps(&mut cluster, 50);
    forge(&mut cluster, liar, target, &claim);
    assert!(replica(&cluster, target).peer_messages_refused() > 0);
    // The cluster carries on and converges; nothing forged was ever applied.
    heal_and_converge(&mut cluster);
    let op1 = cluster.checker.history[&1].checksum;
    assert_eq!(op1, committed.checksum);
}

/// The checkers are not vacuous for lost disks: with a formatted replica that votes at once
/// (feature `broken-fresh-replica`, the behaviour before issue 10), the field report's
/// sequence — C stopped, writes acknowledged by P and B, B's disk lost and formatted again, P
/// down, C and B running — lets C's stale log win a view change and ops P acknowledged are
/// committed differently; checker (a)/(b) or (e) reports it (not a replica assertion).
/// Run with `cargo test -p allocdb-vsr --release --features broken-fresh-replica --test cluster -- broken`.
#[cfg(feature = "broken-fresh-replica")]
#[test]
fn broken_fresh_replica_is_caught() {
    let mut cluster = Cluster::new(Options {
        peer_refusals_expected: true,
        ..Options::calm(21, 3)
    });
    steps_until(&mut cluster, 300, |c| replica(c, 0).commit_min() > 5);
    cluster.crash(2);
    let stale = replica(&cluster, 0).commit_min();
    steps_until(&mut cluster, 500, |c| {
        replica(c, 0).commit_min() > stale + 20 && replica(c, 1).last_op() > stale + 20
    });
    // Nothing P sent is still in flight to B or C: it would teach them the commit point, and a
    // view change refuses to start below a commit point its claims know of — a second line of
    // defence that would hide the bug here.
    isolate_link(&mut cluster, 0, 1, true);
    isolate_link(&mut cluster, 0, 2, true);
    cluster.wipe(1);
    cluster.crash(0);
    cluster.restart(1);
    cluster.restart(2);
    for tick in 0..3_000 {
        if tick == 1_500 {
            isolate_link(&mut cluster, 0, 1, false);
            isolate_link(&mut cluster, 0, 2, false);
            cluster.restart(0);
        }
        cluster.step();
        if let Some(found) = cluster.violations().iter().find(|v| from_checker(v)) {
            println!("broken fresh replica: caught by a checker after {tick} ticks: {found}");
            return;
        }
    }
    panic!(
        "no checker noticed a fresh replica that votes: {:?} {}",
        cluster.violations(),
        cluster.describe()
    );
}
