//! One process per data directory (docs/operations.md, "Server command reference"): while a
//! replica runs, a second `start` and every `format` on its directory exit non-zero at once,
//! naming the directory and the running replica's pid; after the replica dies (SIGKILL, so no
//! clean-up code runs) the kernel has released the lock and the directory starts again.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{CLUSTER, Cluster, binary, free_port};

/// How soon a refused second process must have exited.
const REFUSAL_TIME_MAX: Duration = Duration::from_secs(1);

/// Runs `allocdb <args>`; returns its output and how long it took.
fn timed(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(binary())
        .args(args)
        .output()
        .expect("run allocdb");
    (output, started.elapsed())
}

fn assert_refused(what: &str, (output, took): &(Output, Duration), expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
    assert!(
        *took < REFUSAL_TIME_MAX,
        "{what} took {took:?} to be refused"
    );
    assert!(stderr.contains(expected), "{what}: {stderr}");
}

#[tokio::test]
async fn a_second_process_on_a_live_data_directory_is_refused_naming_the_holder() {
    let mut cluster = Cluster::start("dir-lock", 1, &[]);
    cluster.primary().await;
    let pid = cluster.children[0].as_ref().expect("running").id();
    let dir = cluster.dirs[0].to_str().expect("a UTF-8 path").to_string();
    let expected =
        format!("error: data directory {dir} is in use by process {pid} (lock file {dir}/lock)");
    let second_address = format!("127.0.0.1:{}", free_port());
    let start = timed(&[
        "start",
        "--insecure",
        "--addresses",
        &second_address,
        "--replica",
        "0",
        &dir,
    ]);
    assert_refused("a second start", &start, &expected);
    let cluster_id = CLUSTER.to_string();
    let format = [
        "format",
        "--insecure",
        "--cluster",
        &cluster_id,
        "--replica",
        "0",
        "--replica-count",
        "1",
    ];
    let plain = timed(&[&format[..], &[dir.as_str()]].concat());
    assert_refused("format", &plain, &expected);
    // `--if-empty` on its own live, formatted directory only reads the settings: "nothing
    // changed" (the deployment recipes re-run it next to the running replica) ...
    let (if_empty, _) = timed(&[&format[..], &["--if-empty", dir.as_str()]].concat());
    assert_eq!(if_empty.status.code(), Some(0), "{if_empty:?}");
    assert!(
        String::from_utf8_lossy(&if_empty.stdout).contains("nothing changed"),
        "{if_empty:?}"
    );
    // ... and anything it would have to write is refused.
    let other = [&format[..6], &["3", "--if-empty", dir.as_str()]].concat();
    let (if_empty_other, _) = timed(&other);
    assert_eq!(if_empty_other.status.code(), Some(2), "{if_empty_other:?}");
    // The refused processes changed nothing: the replica still serves, and its pid is still
    // the one in the lock file.
    assert!(cluster.running(0), "the replica must survive the attempts");
    let lock = std::fs::read_to_string(cluster.dirs[0].join("lock")).unwrap();
    assert_eq!(lock.trim(), pid.to_string());
    cluster.primary().await;

    cluster.kill(0);
    cluster.restart(0);
    cluster.primary().await;
    let pid_again = cluster.children[0].as_ref().expect("running").id();
    assert_ne!(pid_again, pid);
    let again = timed(&[
        "start",
        "--insecure",
        "--addresses",
        &second_address,
        "--replica",
        "0",
        &dir,
    ]);
    let expected = format!("is in use by process {pid_again}");
    assert_refused("a start next to the restarted replica", &again, &expected);
}
