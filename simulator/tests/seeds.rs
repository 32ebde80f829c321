//! The simulator's own tests: a few seeds pass, a seed replays identically, and the checkers
//! catch planted bugs (a disk that lies about sync; with `--features planted-bug`, a view
//! change that ignores the logs it received; with `--features planted-bug-commit-quorum`, a
//! primary that commits without a quorum; with `--features planted-bug-fast-clock`, a primary
//! that trusts its fast clock and expires leases early).

use simulator::{Knobs, SeedReport, run_seed};

/// Safety checkers (as opposed to liveness) name themselves with these prefixes.
const SAFETY: [&str; 7] = [
    "agreement",
    "early expiry",
    "acknowledged write",
    "exactly once",
    "double allocation",
    "linearizability",
    "honesty",
];

fn safety_violations(report: &SeedReport) -> Vec<&String> {
    report
        .violations
        .iter()
        .filter(|v| SAFETY.iter().any(|prefix| v.starts_with(prefix)))
        .collect()
}

#[test]
fn a_few_seeds_pass_under_faults() {
    let knobs = Knobs::default();
    for seed in 0..4 {
        let report = run_seed(seed, &knobs);
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:#?}\nreplay: {}",
            report.violations,
            simulator::replay_command(seed, &knobs)
        );
        assert!(report.committed_ops > 50, "seed {seed} did little work");
        assert!(report.crashes > 0, "seed {seed} crashed nothing");
        assert!(report.view_changes > 0, "seed {seed} never failed over");
    }
}

#[test]
fn a_seed_replays_identically() {
    let knobs = Knobs::default();
    let first = run_seed(11, &knobs);
    let second = run_seed(11, &knobs);
    assert_eq!(first.trace_digest, second.trace_digest);
    assert_eq!(first.ops, second.ops);
    assert_eq!(first.committed_ops, second.committed_ops);
    assert_eq!(first.view_changes, second.view_changes);
    // And another seed is a different run.
    assert_ne!(run_seed(12, &knobs).trace_digest, first.trace_digest);
}

#[test]
fn disks_that_lie_about_sync_are_caught() {
    let knobs = Knobs {
        lying_disks: true,
        ..Knobs::default()
    };
    let caught = (0..10)
        .map(|seed| run_seed(seed, &knobs))
        .find(|report| !safety_violations(report).is_empty());
    let report = caught.expect("a lying disk loses acknowledged writes within 10 seeds");
    eprintln!(
        "lying disks: seed {} violated {:?}",
        report.seed,
        safety_violations(&report)
    );
}

#[test]
fn every_new_fault_kind_is_exercised() {
    let knobs = Knobs::default();
    let mut faults = simulator::FaultCounts::default();
    for seed in 0..6 {
        faults.add(&run_seed(seed, &knobs).faults);
    }
    assert!(faults.pauses > 0, "{faults:?}");
    assert!(faults.beyond_f > 0, "{faults:?}");
    assert!(faults.drifting_clocks > 0, "{faults:?}");
    assert!(faults.reformats > 0, "{faults:?}");
    assert!(faults.second_processes > 0, "{faults:?}");
}

#[cfg(feature = "planted-bug-fast-clock")]
#[test]
fn a_planted_fast_clock_is_caught() {
    // The primary does not step its clock down, and some replica's clock runs fast by the
    // bound: the real-time expiry checker (no replica assertion) sees leases expire early.
    let knobs = Knobs::default();
    let caught = (0..10)
        .map(|seed| run_seed(seed, &knobs))
        .find(|report| {
            report
                .violations
                .iter()
                .any(|v| v.starts_with("early expiry"))
        })
        .expect("a primary trusting a fast clock expires a lease early within 10 seeds");
    eprintln!(
        "planted fast clock: seed {} violated {:?}",
        caught.seed, caught.violations
    );
}

#[cfg(any(feature = "planted-bug", feature = "planted-bug-commit-quorum"))]
#[test]
fn a_planted_replication_bug_is_caught() {
    let knobs = Knobs::default();
    let first_failure = (0..10)
        .map(|seed| run_seed(seed, &knobs))
        .find(|report| !report.violations.is_empty())
        .expect("the planted bug is reported within 10 seeds");
    eprintln!(
        "planted bug: seed {} violated {:?}",
        first_failure.seed, first_failure.violations
    );
    // Besides the replica's own assertions, the simulator's checkers see the damage.
    let by_checkers = (0..40)
        .map(|seed| run_seed(seed, &knobs))
        .find(|report| !safety_violations(report).is_empty())
        .expect("the checkers report the planted bug within 40 seeds");
    eprintln!(
        "planted bug: seed {} checkers found {:?}",
        by_checkers.seed,
        safety_violations(&by_checkers)
    );
}
