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
/// crashes (some in the middle of a write), then a heal phase. `VSR_SEEDS` / `VSR_START`
/// change the range.
#[test]
#[cfg_attr(
    feature = "broken-view-change",
    ignore = "the planted bug breaks safety on purpose"
)]
fn many_seeds() {
    let count = env_u64("VSR_SEEDS", if cfg!(debug_assertions) { 40 } else { 2_000 });
    let start = env_u64("VSR_START", 0);
    let mut failures = Vec::new();
    let (mut ops, mut crashes, mut partitions, mut writes, mut reads) = (0, 0, 0, 0, 0);
    let mut recovery: Vec<u64> = Vec::new();
    for seed in start..start + count {
        match run_seed(Options::faulty(seed)) {
            Ok(report) => {
                ops += report.ops_committed;
                crashes += report.crashes;
                partitions += report.partitions;
                writes += report.writes_checked;
                reads += report.reads_checked;
                recovery.push(report.ticks_to_recovery);
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
    let percentile = |p: usize| {
        recovery
            .get((recovery.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    let options = Options::faulty(start);
    println!(
        "many_seeds: {count} seeds from {start}; faults: loss {}%, duplication {}%, delay 1..={} ticks, partition {}‰/tick, crash {}‰/tick ({}% mid-write); \
         {ops} ops committed, {writes} replies and {reads} reads checked, {crashes} crashes, {partitions} partitions; \
         ticks to recovery after heal: p50 {} p99 {} max {} (bound {})",
        options.loss_percent,
        options.duplicate_percent,
        options.delay_ticks_max,
        options.partition_per_mille,
        options.crash_per_mille,
        options.crash_mid_write_percent,
        percentile(50),
        percentile(99),
        percentile(100),
        options.heal_ticks_max
    );
    assert!(
        failures.is_empty(),
        "failing seeds: {failures:?}; replay one with: {}",
        replay_command(failures[0])
    );
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
    feature = "broken-view-change",
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
    feature = "broken-view-change",
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
    feature = "broken-view-change",
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

/// A backup acknowledges an op (so the primary may commit it), then loses it with its disk
/// tail. It must not help a minority (itself + the replica that never had the op) elect a
/// primary that drops the op: it recovers instead, and the op survives.
#[test]
#[cfg_attr(
    feature = "broken-view-change",
    ignore = "the planted bug breaks safety on purpose"
)]
fn a_replica_that_lost_an_acknowledged_op_cannot_help_a_minority_drop_it() {
    let mut cluster = Cluster::new(Options::calm(12, 3));
    steps(&mut cluster, 100);
    // Replica 2 stops hearing the primary; replica 1 acknowledges alone.
    isolate_link(&mut cluster, 0, 2, true);
    let base = replica(&cluster, 0).commit_min();
    steps_until(&mut cluster, 200, |c| replica(c, 0).commit_min() > base);
    let op = replica(&cluster, 0).commit_min();
    let checksum = replica(&cluster, 0).header(op).unwrap().checksum;
    assert!(replica(&cluster, 1).last_op() >= op && replica(&cluster, 2).last_op() < op);
    // The primary dies; replica 1 loses the tail of its log, torn inside its last record.
    cluster.crash(0);
    cluster.crash(1);
    let storage = cluster.nodes[1].storage.clone();
    let mut names = allocdb_wal::Storage::list(&mut storage.clone()).unwrap();
    names.retain(|n| n.starts_with("segment") || n.starts_with("log"));
    let last = names.last().expect("a segment").clone();
    let bytes = storage.file_bytes(&last).unwrap();
    let cut = bytes.len() - 1 - usize::try_from(replica_record_tail(&cluster)).unwrap();
    assert!(storage.set_file_bytes(&last, &bytes[..cut]));
    isolate_link(&mut cluster, 0, 2, false);
    cluster.restart(1);
    assert_eq!(replica(&cluster, 1).status(), Status::Recovering);
    // Replicas 1 and 2 alone: nothing may be committed at or after `op` by them.
    steps(&mut cluster, 400);
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
}

fn replica_record_tail(_cluster: &Cluster) -> u64 {
    // Cut a few bytes inside the last record: the log's recovery sees a torn tail.
    8
}

/// An old primary cut off during a view change never commits (or acknowledges) anything
/// again in its old view; the majority moves on without it.
#[test]
#[cfg_attr(
    feature = "broken-view-change",
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

/// The checkers are not vacuous: a new primary that ignores `do_view_change` logs is caught.
/// Run with `cargo test -p allocdb-vsr --release --features broken-view-change --test cluster -- broken`.
#[cfg(feature = "broken-view-change")]
#[test]
fn broken_view_change_is_caught() {
    for seed in 0..300 {
        if let Err(error) = run_seed(Options::faulty(seed)) {
            println!("broken view change caught at seed {seed}: {error}");
            return;
        }
    }
    panic!("no checker noticed a view change that ignores `do_view_change` logs in 300 seeds");
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
