//! The AllocDB simulator: the shipped `allocdb-server` replicas and `allocdb-client` clients,
//! compiled against `turmoil::net` (their `simulation` feature), run in one deterministic
//! turmoil world per seed under network faults, crashes and disk faults, then healed, then
//! checked.
//!
//! Determinism: turmoil's network randomness is seeded from the seed; every tokio runtime is
//! turmoil's (paused, simulated time), and the shipped code's `select!`s are `biased`, so
//! tokio's per-runtime random branch order (seeded from the OS) is never consulted; replicas'
//! jitter comes from their configured seeds, clients' identities from `identity_seed`, the
//! workload and fault schedule from [`allocdb_wal::SplitMix64`] streams derived from the seed,
//! and the disks are [`allocdb_wal::SimStorage`] with seeded faults. Nothing reads the host
//! clock. [`SeedReport::trace_digest`] summarises every event so a test can compare two runs.
//!
//! Checkers (each shown to fail on a broken input in its module's tests):
//! - agreement ([`history`]): every replica's committed ops, sampled from its disk during the
//!   run and at the end, agree op by op, forever; and the replicas' final state digests equal
//!   the model's at the same op;
//! - no double allocation ([`replay`] on the committed history, [`acks`] on what clients were
//!   told);
//! - exactly once with the result the client received, and honesty about writes reported as
//!   not run ([`acks`]);
//! - linearizability against the core as the sequential model: replay in commit order, reads
//!   compared with the model's state at their op, and real-time order ([`replay`], [`acks`]);
//! - late, never early, in real time ([`expiry`]): no lease expires before its TTL elapsed in
//!   simulated real time since it was granted, whatever the replicas' clock rates;
//! - liveness after healing: every client's pending writes resolve, new work commits, the
//!   replicas converge and stop cleanly ([`workload`], [`cluster`]).

// Requests, answers and records are plain `Copy` data (a request carries a whole bundle), made
// once per client call: passing them by value keeps the checkers readable and costs nothing
// that matters next to simulating a cluster.
#![allow(clippy::large_types_passed_by_value, clippy::large_enum_variant)]

pub mod acks;
pub mod cluster;
pub mod disk;
pub mod expiry;
pub mod history;
pub mod record;
pub mod replay;
pub mod scenario;
pub mod shared;
pub mod workload;

pub use cluster::FaultCounts;
pub use scenario::Knobs;

/// What one seed found.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Replicas in the cluster.
    pub replica_count: u8,
    /// Clients.
    pub client_count: u8,
    /// Every violation, naming its checker.
    pub violations: Vec<String>,
    /// Client calls made.
    pub ops: u64,
    /// Ops in the committed history.
    pub committed_ops: u64,
    /// Crashes (scheduled, and halts on injected disk errors).
    pub crashes: u64,
    /// Partitions.
    pub partitions: u64,
    /// The highest view any replica reached (each view change raises it).
    pub view_changes: u64,
    /// Faults applied, per kind.
    pub faults: FaultCounts,
    /// Summary of every event: equal for equal seeds.
    pub trace_digest: u64,
}

/// Simulates `seed` and checks everything.
pub fn run_seed(seed: u64, knobs: &Knobs) -> SeedReport {
    let observed = cluster::simulate(seed, knobs);
    let mut violations = observed.failures.clone();
    violations.extend(observed.history.violations.iter().cloned());
    if let Some(op) = observed.history.first_hole() {
        violations.push(format!(
            "agreement: committed op {op} is held by no replica (ops up to {} are)",
            observed.history.known_max()
        ));
    }
    let replay = replay::replay(&observed.history, cluster::core_config(), &observed.records);
    violations.extend(replay.violations.iter().cloned());
    let findings = acks::check(&observed.records, &replay);
    violations.extend(findings.violations);
    violations.extend(expiry::check(
        &replay,
        &observed.records,
        &observed.applied_seen,
        cluster::SLOT_MS,
    ));
    check_finals(&observed, &replay, &mut violations);
    SeedReport {
        seed,
        replica_count: observed.scenario.replica_count,
        client_count: observed.scenario.client_count,
        violations,
        ops: observed.records.len() as u64,
        committed_ops: replay.op_max,
        crashes: observed.crashes,
        partitions: observed.partitions,
        view_changes: observed.history.view_max,
        faults: observed.faults,
        trace_digest: observed.trace_digest,
    }
}

/// The replicas' final states: each digest equals the model's at its op; all converged.
fn check_finals(
    observed: &cluster::Observation,
    replay: &replay::Replay,
    violations: &mut Vec<String>,
) {
    // After a host failed the run stopped early: nobody was asked to stop or converge.
    let stopped_early = observed
        .failures
        .iter()
        .any(|f| f.starts_with(cluster::HOST_FAILED));
    let mut applied = Vec::new();
    for (index, state) in observed.finals.iter().enumerate() {
        let Some(state) = state else {
            if stopped_early {
                continue;
            }
            violations.push(format!(
                "liveness: replica {index} was not running at the end (it did not restart or stop cleanly)"
            ));
            continue;
        };
        applied.push(state.applied);
        if state.applied == 0 {
            continue;
        }
        let Some(digest) = usize::try_from(state.applied - 1)
            .ok()
            .and_then(|at| replay.digests.get(at))
        else {
            violations.push(format!(
                "agreement: replica {index} applied op {} beyond the committed history (op {})",
                state.applied, replay.op_max
            ));
            continue;
        };
        if *digest != state.digest {
            violations.push(format!(
                "agreement: replica {index}'s state digest at op {} is {:#x}; the model's is {digest:#x} (view {})",
                state.applied, state.digest, state.view
            ));
        }
    }
    if !stopped_early && applied.windows(2).any(|w| w[0] != w[1]) {
        violations.push(format!(
            "liveness: replicas did not converge after healing: applied ops {applied:?}"
        ));
    }
}

/// The command that replays `seed` with `knobs` (non-default knobs included).
pub fn replay_command(seed: u64, knobs: &Knobs) -> String {
    let defaults = Knobs::default();
    let mut parts = vec!["cargo run --release -p simulator".to_string()];
    if cfg!(feature = "planted-bug") {
        parts.push("--features planted-bug".to_string());
    }
    if cfg!(feature = "planted-bug-commit-quorum") {
        parts.push("--features planted-bug-commit-quorum".to_string());
    }
    if cfg!(feature = "planted-bug-fast-clock") {
        parts.push("--features planted-bug-fast-clock".to_string());
    }
    parts.push(format!("-- --seed {seed}"));
    if knobs.fault_ms != defaults.fault_ms {
        parts.push(format!("--fault-ms {}", knobs.fault_ms));
    }
    if knobs.heal_ms != defaults.heal_ms {
        parts.push(format!("--heal-ms {}", knobs.heal_ms));
    }
    if let Some(replicas) = knobs.replicas {
        parts.push(format!("--replicas {replicas}"));
    }
    if knobs.clients_max != defaults.clients_max {
        parts.push(format!("--clients-max {}", knobs.clients_max));
    }
    for (on, flag) in [
        (knobs.no_faults, "--no-faults"),
        (!knobs.disk_faults, "--no-disk-faults"),
        (knobs.lying_disks, "--lying-disks"),
        (!knobs.clock_drift, "--no-clock-drift"),
        (!knobs.pauses, "--no-pauses"),
        (!knobs.beyond_f, "--no-beyond-f"),
        (!knobs.reformat, "--no-reformat"),
    ] {
        if on {
            parts.push(flag.to_string());
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::{Knobs, check_finals, replay_command};
    use crate::cluster::Observation;
    use crate::history::History;
    use crate::replay::Replay;
    use crate::scenario::Scenario;
    use crate::shared::FinalReplica;

    fn observation(finals: Vec<Option<FinalReplica>>) -> Observation {
        Observation {
            scenario: Scenario::draw(1, &Knobs::default()),
            history: History::default(),
            records: Vec::new(),
            finals,
            failures: Vec::new(),
            crashes: 0,
            partitions: 0,
            faults: crate::FaultCounts::default(),
            applied_seen: Vec::new(),
            trace_digest: 0,
        }
    }

    fn at(applied: u64, digest: u128) -> FinalReplica {
        FinalReplica {
            applied,
            digest,
            view: 1,
        }
    }

    #[test]
    fn final_digests_and_convergence_are_checked() {
        let replay = Replay {
            op_max: 2,
            digests: vec![10, 20],
            slots: vec![1, 2],
            ..Replay::default()
        };
        let mut violations = Vec::new();
        check_finals(
            &observation(vec![Some(at(2, 20)), Some(at(2, 20))]),
            &replay,
            &mut violations,
        );
        assert!(violations.is_empty(), "{violations:?}");
        check_finals(
            &observation(vec![Some(at(2, 20)), Some(at(2, 21))]),
            &replay,
            &mut violations,
        );
        assert!(violations[0].contains("state digest"), "{violations:?}");
        violations.clear();
        check_finals(
            &observation(vec![Some(at(2, 20)), Some(at(1, 10))]),
            &replay,
            &mut violations,
        );
        assert!(violations[0].contains("did not converge"), "{violations:?}");
        violations.clear();
        check_finals(
            &observation(vec![Some(at(3, 20)), None]),
            &replay,
            &mut violations,
        );
        assert_eq!(violations.len(), 2, "{violations:?}");
    }

    #[test]
    fn the_replay_command_carries_every_changed_knob() {
        let knobs = Knobs {
            fault_ms: 5,
            lying_disks: true,
            replicas: Some(5),
            reformat: false,
            pauses: false,
            ..Knobs::default()
        };
        let command = replay_command(42, &knobs);
        assert!(command.starts_with("cargo run --release -p simulator"));
        for part in [
            "--seed 42",
            "--fault-ms 5",
            "--lying-disks",
            "--replicas 5",
            "--no-reformat",
            "--no-pauses",
        ] {
            assert!(command.contains(part), "{command}");
        }
        assert!(!replay_command(1, &Knobs::default()).contains("--fault-ms"));
    }
}
