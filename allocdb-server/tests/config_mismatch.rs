//! Same cluster, same rules (docs/operations.md, "Server command reference"): a replica
//! started with the address list in another order, or formatted with another table size, is
//! refused by its peers. Their stderr names both sides' values at ERROR level, `allocdb status`
//! shows the mismatch in the replica's JSON line, `/health` answers 503 `config_mismatch`, and
//! once the odd replica is started correctly the mismatch disappears. Real processes; every
//! wait is bounded.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{CLUSTER, PATIENCE, binary, free_port};

/// Three replica processes with their stderr in files; killed and deleted on drop.
struct Replicas {
    root: PathBuf,
    addresses: Vec<String>,
    metrics: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Replicas {
    /// Formats three replicas, `format_flags[i]` added to replica i's `format`.
    fn format(name: &str, format_flags: [&[&str]; 3]) -> Replicas {
        let root = std::env::temp_dir().join(format!("allocdb-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (index, flags) in format_flags.iter().enumerate() {
            let output = allocdb(
                &[
                    &[
                        "format",
                        "--insecure",
                        "--cluster",
                        &CLUSTER.to_string(),
                        "--replica",
                        &index.to_string(),
                        "--replica-count",
                        "3",
                    ][..],
                    flags,
                    &[root.join(index.to_string()).to_str().unwrap()],
                ]
                .concat(),
            );
            assert!(output.status.success(), "format {index}: {output:?}");
        }
        let port = || format!("127.0.0.1:{}", free_port());
        Replicas {
            root,
            addresses: (0..3).map(|_| port()).collect(),
            metrics: (0..3).map(|_| port()).collect(),
            children: vec![None, None, None],
        }
    }

    fn stderr_path(&self, index: usize) -> PathBuf {
        self.root.join(format!("stderr-{index}"))
    }

    /// Starts replica `index` with `addresses` (logging at INFO into its stderr file).
    fn start(&mut self, index: usize, addresses: &[String]) {
        assert!(self.children[index].is_none());
        let stderr = File::create(self.stderr_path(index)).unwrap();
        let child = Command::new(binary())
            .args(["start", "--insecure", "--addresses", &addresses.join(",")])
            .args(["--replica", &index.to_string()])
            .args(["--metrics", &self.metrics[index]])
            .args(["--cluster", &CLUSTER.to_string()])
            .arg(self.root.join(index.to_string()))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn allocdb start");
        self.children[index] = Some(child);
    }

    fn stop(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until replica `index`'s stderr has an ERROR line containing `expected`.
    /// On timeout every replica's log is in the panic message, to tell a replica that never
    /// listened from one that never dialed.
    fn wait_for_error_log(&self, index: usize, expected: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = std::fs::read_to_string(self.stderr_path(index)).unwrap_or_default();
            if let Some(line) = log
                .lines()
                .find(|line| line.contains("ERROR") && line.contains(expected))
            {
                return line.to_string();
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = (0..self.children.len())
                    .map(|i| {
                        let log = std::fs::read_to_string(self.stderr_path(i)).unwrap_or_default();
                        format!("--- replica {i} ---\n{log}")
                    })
                    .collect();
                panic!(
                    "timed out: replica {index} logs {expected:?}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `allocdb status` line of replica `index`.
    fn status_line(&self, index: usize) -> String {
        let output = allocdb(&[
            "status",
            "--insecure",
            "--addresses",
            &self.addresses.join(","),
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        stdout
            .lines()
            .nth(index)
            .unwrap_or_else(|| panic!("no status line {index} in {stdout:?}"))
            .to_string()
    }

    fn health(&self, index: usize) -> Output {
        allocdb(&["health", &self.metrics[index], "--timeout", "1s"])
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for index in 0..self.children.len() {
            self.stop(index);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn allocdb(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run allocdb")
}

/// Polls `probe` until it returns something (bounded by [`PATIENCE`]).
fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts the mismatch shows in replica `index`'s status line and `/health`.
fn assert_reported(replicas: &Replicas, index: usize, expected: &str) {
    let line = wait_until("the mismatch in status", || {
        let line = replicas.status_line(index);
        line.contains(expected).then_some(line)
    });
    assert!(
        line.contains(&format!("\"replica\":{index},")) && line.contains("\"config_mismatch\":\""),
        "{line}"
    );
    let health = replicas.health(index);
    let body = String::from_utf8_lossy(&health.stdout);
    assert_eq!(health.status.code(), Some(1), "/health must be 503: {body}");
    assert!(
        body.contains("\"status\":\"config_mismatch\"") && body.contains(expected),
        "{body}"
    );
}

fn list(addresses: &[String]) -> String {
    format!("[{}]", addresses.join(","))
}

#[test]
fn a_replica_with_a_permuted_address_list_is_refused_by_its_peers() {
    let mut replicas = Replicas::format("permuted", [&[], &[], &[]]);
    let good = replicas.addresses.clone();
    // Replica 2 keeps its own entry (so it listens where the others dial it) but swaps 0 and 1.
    let permuted = vec![good[1].clone(), good[0].clone(), good[2].clone()];
    for index in 0..3 {
        let addresses = if index == 2 { &permuted } else { &good };
        replicas.start(index, addresses);
    }
    let expected = format!(
        "peer 2's address list is {}, ours is {}",
        list(&permuted),
        list(&good)
    );
    for peer in [0, 1] {
        let line = replicas.wait_for_error_log(peer, &expected);
        assert!(line.contains("configuration mismatch"), "{line}");
        assert_reported(&replicas, peer, &expected);
    }
    // The refused replica learns why from its peers' refusals.
    let line = replicas.wait_for_error_log(2, "refused our link (config_mismatch)");
    assert!(line.contains(&expected), "{line}");
    assert_reported(&replicas, 2, "refused our link");
    let metrics = allocdb(&["health", &replicas.metrics[0], "--path", "/metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    assert!(
        metrics.contains("allocdb_peer_config_mismatch 1\n"),
        "{metrics}"
    );
    // Started again with the right list, replica 2 is accepted and the report clears.
    replicas.stop(2);
    replicas.start(2, &good);
    for index in 0..3 {
        let line = wait_until("the mismatch to clear", || {
            let line = replicas.status_line(index);
            line.contains("\"config_mismatch\":null").then_some(line)
        });
        assert!(!line.contains("unreachable"), "{line}");
    }
    wait_until("replica 0 ready again", || {
        (replicas.health(0).status.code() == Some(0)).then_some(())
    });
}

#[test]
fn a_replica_formatted_with_other_table_sizes_is_refused_by_its_peers() {
    let mut replicas = Replicas::format("leases-max", [&[], &[], &["--leases-max", "131072"]]);
    let addresses = replicas.addresses.clone();
    for index in 0..3 {
        replicas.start(index, &addresses);
    }
    let expected = "peer 2 was formatted with --leases-max 131072, we with 65536";
    for peer in [0, 1] {
        replicas.wait_for_error_log(peer, expected);
        assert_reported(&replicas, peer, expected);
    }
    let line = replicas.wait_for_error_log(2, "refused our link (config_mismatch)");
    assert!(line.contains(expected), "{line}");
    // A new cluster starts only once every replica took part (genesis), so 0 and 1 serve
    // nothing while replica 2 is refused: nothing is ever applied under two configurations.
    std::thread::sleep(Duration::from_secs(1));
    for index in [0, 1] {
        let line = replicas.status_line(index);
        assert!(line.contains("\"role\":\"recovering\""), "{line}");
    }
    // Replica 2 formatted again with the cluster's sizes is accepted and the cluster starts.
    replicas.stop(2);
    let dir = replicas.root.join("2");
    std::fs::remove_dir_all(&dir).expect("remove replica 2's directory");
    let output = allocdb(&[
        "format",
        "--insecure",
        "--cluster",
        &CLUSTER.to_string(),
        "--replica",
        "2",
        "--replica-count",
        "3",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert!(output.status.success(), "{output:?}");
    replicas.start(2, &addresses);
    wait_until("a primary once replica 2 matches", || {
        (0..3)
            .any(|index| replicas.status_line(index).contains("\"role\":\"primary\""))
            .then_some(())
    });
}

#[test]
fn a_data_directory_of_another_cluster_refuses_to_start() {
    let replicas = Replicas::format("other-cluster", [&[], &[], &[]]);
    let dir: &Path = &replicas.root.join("0");
    let output = allocdb(&[
        "start",
        "--insecure",
        "--addresses",
        &replicas.addresses.join(","),
        "--replica",
        "0",
        "--cluster",
        &(CLUSTER + 1).to_string(),
        dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "belongs to cluster {CLUSTER}, not to --cluster {}",
            CLUSTER + 1
        )),
        "{stderr}"
    );
}
