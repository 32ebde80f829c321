//! `simulator`: runs seeds of the AllocDB turmoil simulation and reports violations.
//!
//! Every failing seed prints what was violated and the command that replays it; the last line
//! is always `simulator seeds=<N> failed=<N> ops=<N> crashes=<N> partitions=<N>
//! view_changes=<N> disk_faults=<N> reformats=<N> disk_losses_skipped=<N>
//! second_processes=<N> pauses=<N> beyond_f=<N> drifting_clocks=<N>`. The exit status is 1 when any seed failed.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use clap::Parser;
use simulator::{FaultCounts, Knobs, SeedReport, replay_command, run_seed};

/// Simulate an AllocDB cluster (the real server and client over turmoil) under network and
/// disk faults, deterministically per seed, and check safety and liveness.
#[derive(Parser, Debug)]
#[command(name = "simulator")]
// Each bool is one independent command-line flag.
#[allow(clippy::struct_excessive_bools)]
struct Args {
    /// Run exactly this seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a half-open range of seeds, `a..b` (default `0..10`).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Simulated milliseconds of random workload under faults.
    #[arg(long, default_value_t = Knobs::default().fault_ms)]
    fault_ms: u64,
    /// Simulated milliseconds the healed cluster gets to resolve every pending request and
    /// accept new work.
    #[arg(long, default_value_t = Knobs::default().heal_ms)]
    heal_ms: u64,
    /// Force the cluster size (3 or 5) instead of drawing it from the seed.
    #[arg(long, value_parser = clap::value_parser!(u8).range(3..=5))]
    replicas: Option<u8>,
    /// The most clients a seed may draw (it draws 2..=this many).
    #[arg(long, default_value_t = Knobs::default().clients_max)]
    clients_max: u8,
    /// No faults at all (a calm run).
    #[arg(long)]
    no_faults: bool,
    /// No disk faults (I/O errors, read bit flips, a rotten log segment); network faults and
    /// crashes remain.
    #[arg(long)]
    no_disk_faults: bool,
    /// BROKEN on purpose: disks acknowledge sync without persisting, so crashes lose
    /// acknowledged data. Shows the checkers catch it.
    #[arg(long)]
    lying_disks: bool,
    /// Every replica's clock runs at its true rate (by default each runs fast or slow within
    /// the simulated clusters' drift bound of 10 %).
    #[arg(long)]
    no_clock_drift: bool,
    /// No process pauses (SIGSTOP-like, mostly of the primary).
    #[arg(long)]
    no_pauses: bool,
    /// No phases with more than f replicas crashed or cut off at once.
    #[arg(long)]
    no_beyond_f: bool,
    /// No reformat faults (a replica loses its disk and is formatted again as `allocdb format
    /// --if-empty` does, while no other replica lacks data).
    #[arg(long)]
    no_reformat: bool,
    /// Seeds simulated in parallel (each seed is single-threaded and deterministic on its own).
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
    /// Print one line per seed, passing or not.
    #[arg(long)]
    verbose: bool,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("expected a range like 0..50, got {text:?}"))?;
    let a: u64 = a.parse().map_err(|e| format!("range start {a:?}: {e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("range end {b:?}: {e}"))?;
    if a >= b {
        return Err(format!("empty range {a}..{b}"));
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A panic inside a simulated host or the simulator becomes that seed's violation (with its
    // message); one line on stderr says where, instead of a backtrace per host.
    std::panic::set_hook(Box::new(|info| eprintln!("simulator: {info}")));
    if args.clients_max == 0 {
        eprintln!("--clients-max must be at least 1");
        return ExitCode::from(2);
    }
    let knobs = Knobs {
        fault_ms: args.fault_ms,
        heal_ms: args.heal_ms,
        replicas: args.replicas,
        clients_max: args.clients_max,
        no_faults: args.no_faults,
        disk_faults: !args.no_disk_faults,
        lying_disks: args.lying_disks,
        clock_drift: !args.no_clock_drift,
        pauses: !args.no_pauses,
        beyond_f: !args.no_beyond_f,
        reformat: !args.no_reformat,
    };
    if args.replicas == Some(4) {
        eprintln!("--replicas must be 3 or 5");
        return ExitCode::from(2);
    }
    let (first, end) = match (args.seed, args.seeds) {
        (Some(seed), _) => (seed, seed + 1),
        (None, Some(range)) => range,
        (None, None) => (0, 10),
    };
    let reports = run_all(first, end, &knobs, args.jobs.max(1), args.verbose);
    let failed = reports.iter().filter(|r| !r.violations.is_empty()).count();
    let mut faults = FaultCounts::default();
    for report in &reports {
        faults.add(&report.faults);
    }
    println!(
        "simulator seeds={} failed={failed} ops={} crashes={} partitions={} view_changes={} disk_faults={} reformats={} disk_losses_skipped={} second_processes={} pauses={} beyond_f={} drifting_clocks={}",
        reports.len(),
        reports.iter().map(|r| r.ops).sum::<u64>(),
        faults.crashes,
        faults.partitions,
        reports.iter().map(|r| r.view_changes).sum::<u64>(),
        faults.disk_faults,
        faults.reformats,
        faults.disk_losses_skipped,
        faults.second_processes,
        faults.pauses,
        faults.beyond_f,
        faults.drifting_clocks,
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs seeds `first..end` on `jobs` threads; prints each seed's outcome in seed order.
fn run_all(first: u64, end: u64, knobs: &Knobs, jobs: usize, verbose: bool) -> Vec<SeedReport> {
    let next = AtomicU64::new(first);
    let (tx, rx) = mpsc::channel();
    let mut reports = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        return;
                    }
                    let report = run_guarded(seed, knobs);
                    if tx.send(report).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut waiting: BTreeMap<u64, SeedReport> = BTreeMap::new();
        let mut print_next = first;
        for report in rx {
            waiting.insert(report.seed, report);
            while let Some(report) = waiting.remove(&print_next) {
                print_report(&report, knobs, verbose);
                reports.push(report);
                print_next += 1;
            }
        }
    });
    reports
}

/// Runs a seed; a panic in the simulator itself is reported as that seed's failure.
fn run_guarded(seed: u64, knobs: &Knobs) -> SeedReport {
    match std::panic::catch_unwind(|| run_seed(seed, knobs)) {
        Ok(report) => report,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(ToString::to_string))
                .unwrap_or_else(|| "unknown panic".to_string());
            SeedReport {
                seed,
                replica_count: 0,
                client_count: 0,
                violations: vec![format!("the simulation panicked: {text}")],
                ops: 0,
                committed_ops: 0,
                crashes: 0,
                partitions: 0,
                view_changes: 0,
                faults: FaultCounts::default(),
                trace_digest: 0,
            }
        }
    }
}

fn print_report(report: &SeedReport, knobs: &Knobs, verbose: bool) {
    if report.violations.is_empty() {
        if verbose {
            println!(
                "seed {} ok: replicas={} clients={} ops={} committed_ops={} crashes={} partitions={} view_max={} trace={:#018x}",
                report.seed,
                report.replica_count,
                report.client_count,
                report.ops,
                report.committed_ops,
                report.crashes,
                report.partitions,
                report.view_changes,
                report.trace_digest
            );
        }
        return;
    }
    println!(
        "FAILED seed {} (replicas={} clients={} ops={} committed_ops={} crashes={} partitions={} view_max={}):",
        report.seed,
        report.replica_count,
        report.client_count,
        report.ops,
        report.committed_ops,
        report.crashes,
        report.partitions,
        report.view_changes
    );
    for violation in &report.violations {
        println!("  violated: {violation}");
    }
    println!("  replay: {}", replay_command(report.seed, knobs));
}
