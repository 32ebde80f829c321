//! `allocdb demo` is the first command a new user runs, so it must never cry wolf: this runs
//! the real binary several times, as the README tells a user to, and requires exit 0 and no
//! `VIOLATION` line every time.
//!
//! `ALLOCDB_DEMO_RUNS` (default 5, at most [`RUNS_MAX`]) sets how many runs; issue 14 asks for
//! 20 on a clean clone: `ALLOCDB_DEMO_RUNS=20 cargo test --release -p allocdb-server --test demo`.

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

/// Runs when `ALLOCDB_DEMO_RUNS` is not set.
const RUNS_DEFAULT: u32 = 5;
/// The most runs the variable may ask for.
const RUNS_MAX: u32 = 100;
/// One run takes about 12 s on a 2-core machine (6 s of contention, election, restart,
/// catch-up and audit); past this it is hung, and it is killed.
const RUN_TIME_MAX: Duration = Duration::from_secs(120);

fn runs() -> u32 {
    match std::env::var("ALLOCDB_DEMO_RUNS") {
        Ok(text) => {
            let runs: u32 = text
                .parse()
                .unwrap_or_else(|_| panic!("ALLOCDB_DEMO_RUNS={text:?} is not a count"));
            assert!(
                (1..=RUNS_MAX).contains(&runs),
                "ALLOCDB_DEMO_RUNS must be 1..={RUNS_MAX}"
            );
            runs
        }
        Err(_) => RUNS_DEFAULT,
    }
}

/// One `allocdb demo` with the default arguments: its exit code, stdout and stderr, and how
/// long it took.
fn run_demo() -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_allocdb"));
    demo.arg("demo");
    let (code, stdout, stderr) = support::run_bounded(&mut demo, RUN_TIME_MAX, stop);
    (code, stdout, stderr, started.elapsed())
}

/// Stops a hung demo the way a user would, with Ctrl-C (`SIGINT`), so it kills its replicas
/// and removes its directory; `SIGKILL` after 10 s (then its replicas are left running).
fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_demo_never_reports_a_false_double_allocation() {
    let runs = runs();
    let mut took = Vec::new();
    for run in 1..=runs {
        let (code, stdout, stderr, elapsed) = run_demo();
        let report = format!(
            "run {run} of {runs}: exit {code:?} after {elapsed:?}\n--- stdout\n{stdout}--- stderr\n{stderr}"
        );
        assert!(
            elapsed <= RUN_TIME_MAX,
            "the demo hung past {RUN_TIME_MAX:?}; {report}"
        );
        assert_eq!(code, Some(0), "{report}");
        assert!(!stdout.contains("VIOLATION"), "{report}");
        assert!(
            stdout.contains("double allocations found: 0"),
            "the audit did not report: {report}"
        );
        assert!(
            stdout.contains("caught up in"),
            "the restarted replica's catch-up was not reported: {report}"
        );
        let audit_line = stdout
            .lines()
            .find(|line| line.contains("double allocations found"))
            .unwrap_or_default()
            .trim();
        eprintln!("demo run {run}/{runs}: exit 0 in {elapsed:.1?}: {audit_line}");
        took.push(elapsed);
    }
    let total: Duration = took.iter().sum();
    eprintln!("{runs} demo runs in {total:.1?}");
}
