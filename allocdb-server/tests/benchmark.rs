//! `allocdb benchmark` as a user runs it (docs/performance.md): progress lines with each
//! replica's memory, the answer counts, the summary line; and a loud failure (exit 1, the code
//! and when) as soon as a full table refuses live work. Both runs are short.

mod support;

use std::process::{Command, Output};

use support::{CLUSTER, Cluster, binary};

fn benchmark(args: &[&str]) -> Output {
    Command::new(binary())
        .arg("benchmark")
        .args(args)
        .output()
        .expect("run allocdb benchmark")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_local_run_prints_progress_with_rss_counts_and_the_summary() {
    // One client for one second keeps the lease rows a short run takes well inside the default
    // tables, whatever the machine's speed.
    let output = benchmark(&["--replicas", "1", "--clients", "1", "--duration", "1s"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let progress = stderr
        .lines()
        .find(|line| line.starts_with("[   1s] "))
        .unwrap_or_else(|| panic!("no progress line: {stderr}"));
    assert!(progress.contains(" ops/s (avg "), "{progress}");
    assert!(progress.contains(" p99 "), "{progress}");
    // One replica, started by the benchmark: its resident memory is read and is not zero.
    let rss = progress.split(" rss ").nth(1).expect("rss field");
    assert!(
        rss.ends_with(" MiB") && !rss.starts_with('-') && !rss.starts_with("0 "),
        "{progress}"
    );
    assert!(stderr.contains("answers ok="), "{stderr}");
    assert!(stderr.contains(" errors=0"), "{stderr}");
    let summary = stdout.lines().last().expect("a summary line");
    assert!(
        summary.starts_with("benchmark uncontended replicas=1 clients=1 ops_per_sec="),
        "{summary}"
    );
    for field in [" p50_us=", " p99_us=", " p999_us=", " mean_batch="] {
        assert!(summary.contains(field), "{field} missing in {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_table_fails_the_run_loudly_and_says_which() {
    // Fewer lease rows than clients: the fifth concurrent reservation finds the table full.
    let cluster = Cluster::start("benchmark-full", 1, &["--leases-max", "4"]);
    cluster.primary().await;
    let address = cluster.addresses[0].clone();
    let output = tokio::task::spawn_blocking(move || {
        benchmark(&[
            "--addresses",
            &address,
            "--insecure",
            "--cluster",
            &CLUSTER.to_string(),
            "--clients",
            "8",
            "--duration",
            "30s",
        ])
    })
    .await
    .expect("the benchmark ran");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "no summary after a failure: {stdout}");
    assert!(
        stderr.contains("allocdb benchmark failed: BOOKKEEPING REFUSAL "),
        "{stderr}"
    );
    assert!(stderr.contains("reserve: lease_table_full"), "{stderr}");
    let counts = stderr
        .lines()
        .find(|line| line.starts_with("answers "))
        .unwrap_or_else(|| panic!("no answer counts: {stderr}"));
    assert!(counts.contains(" lease_table_full="), "{counts}");
    // Against `--addresses` the replicas are not the benchmark's children: no memory column.
    for line in stderr.lines().filter(|line| line.starts_with('[')) {
        assert!(line.ends_with(" rss -"), "{line}");
    }
}
