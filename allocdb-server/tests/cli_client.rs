//! `allocdb client` as a script sees it: one JSON line per command and the exit statuses
//! 0 (ok), 1 (definite failure), 2 (usage or configuration), 3 (indefinite outcome of a write).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use allocdb_server::local_cluster::{LocalCluster, LocalSecurity};
use allocdb_vsr::frame::{self, FrameKind, Role, Welcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_allocdb"))
}

/// Runs `allocdb client --addresses <addresses> <args>`; (exit status, stdout line).
fn cli(addresses: &str, args: &[&str]) -> (i32, String) {
    let output = Command::new(binary())
        .args([
            "client",
            "--insecure",
            "--addresses",
            addresses,
            "--timeout",
            "5s",
        ])
        .args(args)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let status = output.status.code().expect("exited, not signalled");
    (status, stdout.trim_end().to_string())
}

/// The value of `"key":` in a flat JSON line (strings unquoted).
fn field(line: &str, key: &str) -> String {
    let pattern = format!("\"{key}\":");
    let start = line
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + pattern.len();
    let rest = &line[start..];
    let end = rest.find([',', '}']).map_or(rest.len(), |end| {
        if rest.starts_with('[') {
            rest.find(']').map_or(rest.len(), |close| close + 1)
        } else {
            end
        }
    });
    rest[..end].trim_matches('"').to_string()
}

/// A started single-replica cluster and its address list.
async fn single_replica(cluster_id: u128) -> (LocalCluster, String) {
    let cluster = LocalCluster::start(binary(), 1, cluster_id, LocalSecurity::Insecure)
        .expect("replica starts");
    cluster
        .wait_for_primary(Duration::from_secs(20))
        .await
        .unwrap();
    let addresses = cluster.addresses.join(",");
    (cluster, addresses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_lifecycle_prints_json_lines_with_scriptable_exit_statuses() {
    let (_cluster, a) = single_replica(0xC11).await;

    let (status, line) = cli(&a, &["create-resource", "1"]);
    assert_eq!(
        (status, field(&line, "result").as_str()),
        (0, "ok"),
        "{line}"
    );
    let (status, _) = cli(&a, &["create-resource", "2", "--pool", "9"]);
    assert_eq!(status, 0);
    let (status, line) = cli(&a, &["create-resource", "1"]);
    assert_eq!(
        (status, field(&line, "result").as_str()),
        (1, "already_exists"),
        "{line}"
    );

    let (status, line) = cli(&a, &["reserve", "1", "--holder", "7", "--ttl", "30s"]);
    assert_eq!(status, 0, "{line}");
    for key in [
        "op",
        "lease_id",
        "epoch",
        "holder",
        "state",
        "resources",
        "deadline",
    ] {
        field(&line, key);
    }
    assert_eq!(field(&line, "state"), "reserved");
    assert_eq!(field(&line, "resources"), "[\"1\"]");
    assert_eq!(field(&line, "epoch"), "1");
    let lease = field(&line, "lease_id");
    let op = field(&line, "op");

    let (status, line) = cli(&a, &["reserve", "1", "--holder", "8", "--ttl", "30s"]);
    assert_eq!(
        (status, field(&line, "result").as_str()),
        (1, "resource_busy"),
        "{line}"
    );

    let (status, line) = cli(&a, &["get-resource", "1", "--min-op", &op]);
    assert_eq!(status, 0);
    assert_eq!(
        (field(&line, "state"), field(&line, "lease_id")),
        ("reserved".to_string(), lease.clone())
    );
    let (status, line) = cli(&a, &["activate", &lease, "--holder", "7", "--epoch", "1"]);
    assert_eq!(
        (status, field(&line, "state").as_str()),
        (0, "active"),
        "{line}"
    );
    assert_eq!(
        field(&line, "deadline"),
        "null",
        "no TTL: held until released"
    );
    let (status, line) = cli(
        &a,
        &[
            "renew", &lease, "--holder", "7", "--epoch", "1", "--ttl", "5m",
        ],
    );
    assert_eq!(status, 0, "{line}");
    let (status, line) = cli(&a, &["release", &lease, "--holder", "7", "--epoch", "9"]);
    assert_eq!(
        (status, field(&line, "result").as_str()),
        (1, "stale_epoch"),
        "{line}"
    );
    let (status, line) = cli(&a, &["release", &lease, "--holder", "7", "--epoch", "1"]);
    assert_eq!(
        (status, field(&line, "state").as_str()),
        (0, "released"),
        "{line}"
    );
    assert_eq!(field(&line, "epoch"), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_revocation_operation_ids_and_usage_errors() {
    let (_cluster, a) = single_replica(0xC12).await;
    let (status, _) = cli(&a, &["create-resource", "2", "--pool", "9"]);
    assert_eq!(status, 0);
    let (status, line) = cli(
        &a,
        &[
            "reserve-any",
            "9",
            "--count",
            "1",
            "--holder",
            "3",
            "--ttl",
            "30000ms",
        ],
    );
    assert_eq!(
        (status, field(&line, "resources").as_str()),
        (0, "[\"2\"]"),
        "{line}"
    );
    let pooled = field(&line, "lease_id");
    let (status, line) = cli(&a, &["pool", "9"]);
    assert_eq!(
        (status, field(&line, "total"), field(&line, "free")),
        (0, "1".into(), "0".into()),
        "{line}"
    );
    let (status, line) = cli(&a, &["revoke", &pooled]);
    assert_eq!(
        (status, field(&line, "state").as_str()),
        (0, "revoking"),
        "{line}"
    );
    let (status, line) = cli(&a, &["reclaim", &pooled]);
    assert_eq!(
        (status, field(&line, "state").as_str()),
        (0, "revoked"),
        "{line}"
    );
    let (status, line) = cli(&a, &["get-lease", &pooled]);
    assert_eq!(
        (status, field(&line, "holder").as_str()),
        (0, "3"),
        "{line}"
    );
    // Never issued: not found (0 is no lease id at all, even once leases have retired).
    for never in ["123", "0"] {
        let (status, line) = cli(&a, &["get-lease", never]);
        assert_eq!(
            (status, field(&line, "result").as_str()),
            (1, "lease_not_found"),
            "{line}"
        );
    }
    // A TTL of nothing is refused, not rounded up to a slot.
    let (status, line) = cli(&a, &["reserve", "1", "--holder", "7", "--ttl", "0s"]);
    assert_eq!(
        (status, field(&line, "result").as_str()),
        (1, "ttl_out_of_range"),
        "{line}"
    );

    // The same operation id is the same operation: a retry returns the stored outcome.
    let (status, first) = cli(&a, &["--operation-id", "4242", "create-resource", "50"]);
    assert_eq!(
        (status, field(&first, "retry").as_str()),
        (0, "false"),
        "{first}"
    );
    let (status, again) = cli(&a, &["--operation-id", "4242", "create-resource", "50"]);
    assert_eq!(
        (status, field(&again, "retry").as_str()),
        (0, "true"),
        "{again}"
    );
    let (status, line) = cli(&a, &["--operation-id", "4242", "create-resource", "51"]);
    assert_eq!(
        (status, field(&line, "result").as_str()),
        (1, "operation_conflict"),
        "{line}"
    );

    // Usage errors.
    let (status, _) = cli(&a, &["reserve", "1", "--holder", "7"]);
    assert_eq!(status, 2, "missing --ttl");
    let (status, _) = cli(&a, &["reserve", "1", "--holder", "7", "--ttl", "30"]);
    assert_eq!(status, 2, "a duration needs a unit");
}

#[test]
fn no_reachable_replica_is_a_definite_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let output = Command::new(binary())
        .args([
            "client",
            "--insecure",
            "--addresses",
            &address,
            "--timeout",
            "300ms",
            "create-resource",
            "1",
        ])
        .output()
        .unwrap();
    // Nothing was sent: definite, not a usage error and not indefinite.
    assert_eq!(output.status.code(), Some(1));
    let line = String::from_utf8(output.stdout).unwrap();
    assert_eq!(field(&line, "result"), "unavailable", "{line}");
}

/// A list in another order than the replicas' indexes, or missing a replica, is found at the
/// first welcome (which names the replica and the cluster's size): an error naming the
/// order at once, not a 10-second hang reported as an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misordered_or_incomplete_address_list_fails_fast() {
    use allocdb_client::{Client, ClientError, ClientOptions, Security};

    let cluster =
        LocalCluster::start(binary(), 3, 0xA11, LocalSecurity::Insecure).expect("replicas start");
    cluster
        .wait_for_primary(Duration::from_secs(20))
        .await
        .unwrap();
    let good = cluster.addresses.clone();
    let swapped = vec![good[1].clone(), good[0].clone(), good[2].clone()];
    let incomplete = vec![good[0].clone(), good[1].clone()];
    for (addresses, words) in [
        (&swapped, "out of order: position 0"),
        (&incomplete, "the cluster has 3 replicas"),
    ] {
        let mut options = ClientOptions::new(addresses.clone(), 0);
        options.security = Some(Security::Insecure);
        let started = std::time::Instant::now();
        match Client::connect(options).await {
            Err(ClientError::AddressList { reason }) => {
                assert!(reason.contains(words), "{reason}");
            }
            Err(other) => panic!("{addresses:?}: expected AddressList, got {other}"),
            Ok(_) => panic!("{addresses:?}: connected with a wrong list"),
        }
        assert!(started.elapsed() < Duration::from_secs(3), "fails fast");
        let list = addresses.join(",");
        let (status, line) =
            tokio::task::spawn_blocking(move || cli(&list, &["get-resource", "1"]))
                .await
                .unwrap();
        assert_eq!(status, 2, "{line}");
        assert_eq!(field(&line, "result"), "address_list", "{line}");
    }
    let (status, line) =
        tokio::task::spawn_blocking(move || cli(&good.join(","), &["create-resource", "1"]))
            .await
            .unwrap();
    assert_eq!(
        (status, field(&line, "result").as_str()),
        (0, "ok"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_and_uses_application_keys() {
    let (_cluster, a) = single_replica(0xC13).await;
    let (status, _) = cli(&a, &["create-resource", "59"]);
    assert_eq!(status, 0);
    // `operation-id` prints a fresh application key; a write with it, repeated by another
    // process, returns the stored outcome at the op where it executed.
    let (status, line) = cli(&a, &["operation-id"]);
    assert_eq!(status, 0, "{line}");
    let key = field(&line, "operation_id");
    let key_value: u128 = key.parse().expect("a u128");
    assert_eq!(key_value >> 127, 0, "an application key: {line}");
    assert!(
        field(&line, "issued_after_op").parse::<u64>().unwrap() > 0,
        "{line}"
    );
    let (status, first) = cli(&a, &["--operation-id", &key, "create-resource", "60"]);
    assert_eq!(status, 0, "{first}");
    let (status, again) = cli(&a, &["--operation-id", &key, "create-resource", "60"]);
    assert_eq!(
        (status, field(&again, "retry").as_str(), field(&again, "op")),
        (0, "true", field(&first, "op")),
        "{again}"
    );
    // Without --operation-id, a write carries a fresh application key (no session).
    let (status, line) = cli(&a, &["create-resource", "61"]);
    assert_eq!(status, 0, "{line}");
    let printed: u128 = field(&line, "operation_id").parse().expect("a u128");
    assert_eq!(printed >> 127, 0, "an application key: {line}");
}

/// A replica that welcomes the client and then never answers: the write may or may not have
/// happened, so the CLI must say `indefinite`, name the operation id, and exit 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_replica_yields_an_indefinite_outcome() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut welcome = Vec::new();
                frame::write_frame(&mut welcome, FrameKind::ClientWelcome, 1, |body| {
                    Welcome {
                        replica_index: 0,
                        replica_count: 1,
                        role: Role::Primary,
                        view: 0,
                        primary_index: 0,
                        slot_ms: 10,
                        requests_per_frame_max: frame::REQUESTS_PER_FRAME_MAX,
                        clients_max: 16,
                        session_requests_max: 64,
                        operations_max: 4096,
                        dedupe_window_slots: 10_000,
                        ttl_slots_max: 1_000_000,
                    }
                    .encode(body);
                });
                let mut sink = [0u8; 4096];
                if stream.write_all(&welcome).await.is_ok() {
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    let address_for_cli = address.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args([
                "client",
                "--insecure",
                "--addresses",
                &address_for_cli,
                "--timeout",
                "1s",
            ])
            .args(["--operation-id", "777", "create-resource", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let line = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(3), "{line}");
    assert_eq!(field(&line, "result"), "indefinite", "{line}");
    assert_eq!(field(&line, "operation_id"), "777", "{line}");
}

/// Runs the binary with stdout a pipe whose reader is already gone (`| head -c0` without the
/// race): (exit status, stderr).
fn with_closed_stdout(args: &[String]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = Command::new(binary())
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

/// A reader that stops reading (`allocdb status | head -1`) is not a failure: no panic, and
/// the exit status is the command's own (docs in `src/stdout.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_is_not_a_panic() {
    let (_cluster, a) = single_replica(0xB9).await;
    let cases: [(&[&str], i32); 5] = [
        (&["status", "--insecure", "--addresses", &a], 0),
        (
            &[
                "client",
                "--insecure",
                "--addresses",
                &a,
                "create-resource",
                "1",
            ],
            0,
        ),
        (
            &[
                "client",
                "--insecure",
                "--addresses",
                &a,
                "get-resource",
                "404",
            ],
            1,
        ),
        (&["client", "--insecure", "--no-such-flag"], 2),
        (&["completions", "bash"], 0),
    ];
    for (args, status) in cases {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_string()).collect();
        let (code, stderr) = tokio::task::spawn_blocking({
            let args = args.clone();
            move || with_closed_stdout(&args)
        })
        .await
        .unwrap();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(code, Some(status), "{args:?}: {stderr}");
    }
}

/// The welcome tells the cluster's `ttl_slots_max`: the library exposes it and the CLI's
/// `ttl_out_of_range` message names it, not the default maximum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_out_of_range_names_the_clusters_own_maximum() {
    use allocdb_client::{Client, ClientOptions, Security};

    let cluster = LocalCluster::start_with(
        binary(),
        1,
        0x771,
        &["--ttl-slots-max", "500"],
        LocalSecurity::Insecure,
    )
    .expect("replica starts");
    cluster
        .wait_for_primary(Duration::from_secs(20))
        .await
        .unwrap();
    let mut options = ClientOptions::new(cluster.addresses.clone(), 0);
    options.security = Some(Security::Insecure);
    let client = Client::connect(options).await.expect("connects");
    assert_eq!(client.ttl_slots_max(), 500);
    let slot_ms = client.slot_ms();

    let a = cluster.addresses.join(",");
    let (status, line) = tokio::task::spawn_blocking(move || {
        cli(&a, &["create-resource", "1"]);
        // 501 slots: one over this cluster's maximum, far under the default's.
        let ttl = format!("{}ms", 501 * slot_ms);
        cli(&a, &["reserve", "1", "--holder", "7", "--ttl", &ttl])
    })
    .await
    .unwrap();
    assert_eq!(
        (status, field(&line, "result").as_str()),
        (1, "ttl_out_of_range"),
        "{line}"
    );
    assert!(line.contains("ttl_slots_max, 500 slots"), "{line}");
}

/// A read answers at the cluster's slot, so `get-lease` prints the time a lease has left, and
/// so does a retried write (from the lease it reads back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_retries_print_the_time_left() {
    let (_cluster, a) = single_replica(0xD1).await;
    let lines = tokio::task::spawn_blocking(move || {
        cli(&a, &["create-resource", "1"]);
        let reserve = [
            "--operation-id",
            "99",
            "reserve",
            "1",
            "--holder",
            "7",
            "--ttl",
            "30s",
        ];
        let (_, first) = cli(&a, &reserve);
        let lease = field(&first, "lease_id");
        let (_, read) = cli(&a, &["get-lease", &lease]);
        let (_, retry) = cli(&a, &reserve);
        let (_, held) = cli(&a, &["activate", &lease, "--holder", "7", "--epoch", "1"]);
        let (_, unbounded) = cli(&a, &["get-lease", &lease]);
        [first, read, retry, held, unbounded]
    })
    .await
    .unwrap();
    let [first, read, retry, held, unbounded] = &lines;
    assert_eq!(field(first, "deadline_in_ms"), "30000", "{first}");
    assert_eq!(field(retry, "retry"), "true", "{retry}");
    // Every committed write names its position (op, index); a lease id is that position of
    // its grant, and a retry names the original one.
    let position = |line: &str| -> (u128, u128) {
        let op = field(line, "op").parse().expect("op");
        (op, field(line, "index").parse().expect("index"))
    };
    let (op, index) = position(first);
    assert_eq!(
        field(first, "lease_id"),
        ((op << 32) | index).to_string(),
        "{first}"
    );
    assert_eq!(position(retry), (op, index), "{retry}");
    assert!(position(held) > (op, index), "{held}");
    for line in [read, retry] {
        let left: u64 = field(line, "deadline_in_ms").parse().expect("a number");
        // Measured at the answer, a few slots after the reserve; never more than the TTL.
        assert!((20_000..=30_000).contains(&left), "{line}");
        assert_eq!(field(line, "deadline"), field(first, "deadline"), "{line}");
    }
    assert_eq!(field(unbounded, "deadline_in_ms"), "null", "{unbounded}");
}
