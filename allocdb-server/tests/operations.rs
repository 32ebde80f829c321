//! What supervisors rely on (docs/operations.md, "Server command reference"): `allocdb health`
//! exit codes against real replicas, `/health` readiness vs `/health/live` liveness, the metrics
//! port's answer to a stray client frame and its bound under a flood of silent connections,
//! `format --if-empty`, host names in `--addresses` with `start --listen`, and `start`'s exit
//! codes for a bad data directory and for SIGTERM/SIGINT. Every wait is bounded.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use allocdb_vsr::frame::ErrorCode;
use allocdb_vsr::frame::Role;
use support::{
    CLUSTER, Cluster, PATIENCE, TestClient, assert_code, binary, expect_error_and_close, free_port,
};

/// Client sessions open when a replica is told to stop.
const SESSIONS_AT_SHUTDOWN: u128 = 300;

/// Runs `allocdb <args>` to completion.
fn allocdb(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run allocdb")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not signalled")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `allocdb health` until its exit code is `expected` (bounded); returns its output.
fn health_until(metrics: &str, path: &str, expected: i32) -> Output {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let output = allocdb(&["health", metrics, "--path", path, "--timeout", "1s"]);
        if code(&output) == expected {
            return output;
        }
        assert!(
            Instant::now() < deadline,
            "health {metrics}{path} never exited {expected}; last: {} {} {}",
            code(&output),
            text(&output.stdout),
            text(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_0_when_ready_1_when_not_and_2_when_unreachable() {
    let mut cluster = Cluster::start("health", 3, &[]);
    let primary = cluster.primary().await;
    for metrics in &cluster.metrics {
        let ready = health_until(metrics, "/health", 0);
        let line = text(&ready.stdout);
        assert!(line.starts_with(r#"{"status":"ready","role":""#), "{line}");
        for field in [r#""view":"#, r#""op":"#, r#""commit":"#, r#""applied":"#] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
        health_until(metrics, "/health/live", 0);
    }
    // Without a quorum the last replica leaves normal status: not ready, but alive.
    let survivor = (primary + 1) % 3;
    let other = (primary + 2) % 3;
    cluster.kill(primary);
    cluster.kill(other);
    let metrics = cluster.metrics[usize::from(survivor)].clone();
    let unready = health_until(&metrics, "/health", 1);
    let line = text(&unready.stdout);
    assert!(
        line.contains(r#""status":"view_change""#) || line.contains(r#""status":"recovering""#),
        "{line}"
    );
    let alive = health_until(&metrics, "/health/live", 0);
    assert!(text(&alive.stdout).contains(r#""status":"alive""#));
    // A killed replica's port refuses the connection: exit 2, promptly.
    let started = Instant::now();
    let refused = allocdb(&["health", &cluster.metrics[usize::from(primary)]]);
    assert_eq!(code(&refused), 2, "{}", text(&refused.stderr));
    assert!(started.elapsed() < PATIENCE);
}

/// Open file descriptors of process `pid` (Linux: the entries of `/proc/<pid>/fd`).
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the replica's /proc entry")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_answers_a_stray_frame_and_bounds_a_flood_of_silent_connections() {
    const FLOOD: usize = 400;
    let cluster = Cluster::start("metrics-flood", 1, &[]);
    cluster.primary().await;
    let metrics = cluster.metrics[0].clone();
    health_until(&metrics, "/health", 0);
    // A client's frame sent to this port by mistake is answered at once, in HTTP, saying
    // which port this is (the client then names an HTTP server as the cause).
    {
        use std::io::{Read, Write};
        let mut wrong = std::net::TcpStream::connect(&metrics).expect("connect");
        wrong
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        wrong.write_all(b"ALDB\x02\x00\x01\x00").expect("send");
        let mut answer = String::new();
        wrong
            .read_to_string(&mut answer)
            .expect("an answer within 2 s");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("metrics port"), "{answer}");
    }
    let pid = cluster.children[0].as_ref().expect("running").id();
    let before = open_files(pid);
    // Connections that never send a request: each would otherwise hold a descriptor for the
    // 5 s request timeout. The replica accepts them as fast as they come.
    let mut silent = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        silent.push(std::net::TcpStream::connect(&metrics).expect("connect"));
    }
    // Give the accept loop time to take every one of them off the backlog (bounded wait).
    let deadline = Instant::now() + PATIENCE;
    let mut peak = 0;
    loop {
        let scraped = allocdb(&["health", &metrics, "--path", "/metrics", "--timeout", "2s"]);
        assert_eq!(
            code(&scraped),
            0,
            "a scrape during the flood: {}",
            text(&scraped.stderr)
        );
        peak = peak.max(open_files(pid));
        let evicted = text(&scraped.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("allocdb_metrics_connections_evicted_total "))
            .and_then(|count| count.trim().parse::<usize>().ok())
            .expect("the eviction counter is exported");
        // Every silent connection but the newest 64 (minus the scrapes') has been closed.
        if evicted >= FLOOD - allocdb_server::metrics::METRICS_CONNECTIONS_MAX {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {evicted} of {FLOOD} evicted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        peak <= before + allocdb_server::metrics::METRICS_CONNECTIONS_MAX + 8,
        "{peak} files open during a flood of {FLOOD}, {before} before"
    );
    // And the probe still answers while the flood's newest connections stay open.
    health_until(&metrics, "/health", 0);
    drop(silent);
}

#[test]
fn health_gives_up_after_its_timeout_with_exit_2() {
    // A listener that accepts (the kernel's backlog) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = silent.local_addr().expect("address").to_string();
    let started = Instant::now();
    let output = allocdb(&["health", &address, "--timeout", "300ms"]);
    let elapsed = started.elapsed();
    assert_eq!(code(&output), 2, "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("within"),
        "{}",
        text(&output.stderr)
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "took {elapsed:?}"
    );
    let bad = allocdb(&["health", &address, "--timeout", "3"]);
    assert_eq!(code(&bad), 2, "a duration without a unit is a usage error");
    drop(silent);
}

/// Every file under `dir` with its length and modification time, except the lock file: each
/// `format` rewrites it with its own pid while it holds the lock, which is not replica data.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                pending.push(entry.path());
            } else if entry.path() != dir.join("lock") {
                out.push((entry.path(), meta.len(), meta.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

fn format_if_empty(dir: &Path, replica: &str, extra: &[&str]) -> Output {
    let cluster = CLUSTER.to_string();
    let mut args = vec!["format", "--insecure", "--if-empty", "--cluster", &cluster];
    args.extend(["--replica", replica, "--replica-count", "3"]);
    args.extend(extra);
    let dir = dir.to_str().expect("utf-8 path");
    args.push(dir);
    allocdb(&args)
}

#[test]
fn format_if_empty_formats_once_then_accepts_only_the_same_replica() {
    let root = std::env::temp_dir().join(format!("allocdb-test-ifempty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("replica-1");
    let first = format_if_empty(&dir, "1", &["--dedupe-window-slots", "7000"]);
    assert_eq!(code(&first), 0, "{}", text(&first.stderr));
    assert!(dir.join("cluster.settings").is_file());
    let before = snapshot(&dir);
    std::thread::sleep(Duration::from_millis(20));
    // The same replica again (and with the limits left to their defaults): nothing changes.
    for extra in [&["--dedupe-window-slots", "7000"][..], &[]] {
        let again = format_if_empty(&dir, "1", extra);
        assert_eq!(code(&again), 0, "{}", text(&again.stderr));
        assert!(text(&again.stdout).contains("nothing changed"));
        assert_eq!(
            snapshot(&dir),
            before,
            "--if-empty touched a formatted replica"
        );
    }
    // Another replica, another cluster size, another limit: refused, untouched.
    let cases: [(&str, &[&str], &str); 3] = [
        ("2", &[], "holds replica 1 of 3"),
        (
            "1",
            &["--slot-ms", "20"],
            "--slot-ms 20 (formatted with 10)",
        ),
        (
            "1",
            &["--dedupe-window-slots", "6000"],
            "--dedupe-window-slots",
        ),
    ];
    for (replica, extra, expected) in cases {
        let refused = format_if_empty(&dir, replica, extra);
        assert_eq!(code(&refused), 2, "replica {replica} {extra:?}");
        let message = text(&refused.stderr);
        assert!(message.contains(expected), "{message}");
        assert_eq!(snapshot(&dir), before);
    }
    // Without --if-empty a formatted directory is still refused.
    let plain = allocdb(&[
        "format",
        "--insecure",
        "--cluster",
        &CLUSTER.to_string(),
        "--replica",
        "1",
        "--replica-count",
        "3",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code(&plain), 2);
    // A directory with foreign files is refused and left alone.
    let foreign = root.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"keep me").unwrap();
    let refused = format_if_empty(&foreign, "0", &[]);
    assert_eq!(code(&refused), 2);
    assert!(text(&refused.stderr).contains("notes.txt"));
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    // An empty directory, or one holding only a file system's lost+found, is formatted.
    let mount = root.join("mount");
    std::fs::create_dir_all(mount.join("lost+found")).unwrap();
    let formatted = format_if_empty(&mount, "0", &[]);
    assert_eq!(code(&formatted), 0, "{}", text(&formatted.stderr));
    assert!(mount.join("cluster.settings").is_file());
    std::fs::remove_dir_all(&root).unwrap();
}

/// Child processes killed on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn format_replica(dir: &Path, index: u8, count: u8) {
    let output = allocdb(&[
        "format",
        "--insecure",
        "--cluster",
        &CLUSTER.to_string(),
        "--replica",
        &index.to_string(),
        "--replica-count",
        &count.to_string(),
        dir.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
}

fn spawn_start(addresses: &str, index: u8, extra: &[&str], dir: &Path) -> Child {
    Command::new(binary())
        .args(["start", "--insecure", "--addresses", addresses, "--replica"])
        .arg(index.to_string())
        .args(extra)
        .arg(dir)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn allocdb start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_dial_host_names_and_replicas_bind_their_listen_address() {
    let root = std::env::temp_dir().join(format!("allocdb-test-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // Peers know replicas 0 and 1 only by a host name. Replica 2's name does not resolve
    // (`.invalid`, RFC 6761), like a pod whose DNS record does not exist yet: it can bind
    // only through --listen.
    let unresolvable = [
        format!("localhost:{}", ports[0]),
        format!("localhost:{}", ports[1]),
        format!("replica-2.invalid:{}", ports[2]),
    ];
    // A new cluster starts only once every replica has answered every other (genesis), so
    // the running cluster names replica 2 `localhost` too; it still binds through --listen.
    let named = [
        format!("localhost:{}", ports[0]),
        format!("localhost:{}", ports[1]),
        format!("localhost:{}", ports[2]),
    ];
    let addresses = named.join(",");
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("replica-{i}"))).collect();
    for (index, dir) in (0..3_u8).zip(&dirs) {
        format_replica(dir, index, 3);
    }
    let unlistened = spawn_start(&unresolvable.join(","), 2, &[], &dirs[2])
        .wait_with_output()
        .expect("wait for allocdb start");
    assert_eq!(unlistened.status.code(), Some(2));
    let message = text(&unlistened.stderr);
    assert!(
        message.contains("cannot listen on replica-2.invalid"),
        "{message}"
    );
    let mut processes = Processes(Vec::new());
    for (index, dir) in (0..3_u8).zip(&dirs) {
        let listen = format!("127.0.0.1:{}", ports[usize::from(index)]);
        let child = spawn_start(&addresses, index, &["--listen", &listen], dir);
        processes.0.push(child);
    }
    // A primary needs a quorum, so replicas 0 and 1 reached each other through the names.
    let listened = format!("127.0.0.1:{}", ports[2]);
    let deadline = Instant::now() + PATIENCE;
    let view = loop {
        let mut answers = Vec::new();
        for address in [&named[0], &named[1], &listened] {
            let answer =
                allocdb_server::status::probe(address, CLUSTER, Duration::from_millis(300)).await;
            answers.push(answer);
        }
        let pair: Vec<_> = answers[..2]
            .iter()
            .filter_map(|a| a.as_ref().ok())
            .collect();
        let normal = pair.len() == 2 && pair.iter().all(|s| s.role.is_normal());
        let one_primary = pair.iter().filter(|s| s.role == Role::Primary).count() == 1;
        if normal && one_primary && pair[0].view == pair[1].view && answers[2].is_ok() {
            break pair[0].view;
        }
        assert!(
            Instant::now() < deadline,
            "no cluster via host names: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let status = allocdb(&["status", "--insecure", "--addresses", &named[..2].join(",")]);
    assert_eq!(code(&status), 0, "{}", text(&status.stdout));
    let lines = text(&status.stdout);
    assert_eq!(lines.lines().count(), 2);
    assert!(lines.contains(r#""applied":"#), "{lines}");
    assert!(lines.contains(&format!(r#""view":{view}"#)), "{lines}");
    drop(processes);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Runs `allocdb start` for replica 0 of a one-replica cluster at `address`, expecting it to
/// refuse (it would otherwise run until killed).
fn start_once(address: &str, extra: &[&str], dir: &Path) -> Output {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "start",
        "--insecure",
        "--addresses",
        address,
        "--replica",
        "0",
    ];
    args.extend_from_slice(extra);
    args.push(dir);
    allocdb(&args)
}

#[test]
fn start_on_a_bad_data_dir_or_a_taken_port_exits_2_with_the_reason() {
    let root = std::env::temp_dir().join(format!("allocdb-test-badstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let address = format!("127.0.0.1:{}", free_port());
    let missing = start_once(&address, &[], &root.join("nothing"));
    assert_eq!(code(&missing), 2);
    assert!(
        text(&missing.stderr).contains("allocdb format"),
        "{}",
        text(&missing.stderr)
    );
    let dir = root.join("replica-0");
    format_replica(&dir, 0, 1);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();
    let busy = start_once(&taken_address, &[], &dir);
    assert_eq!(code(&busy), 2);
    assert!(
        text(&busy.stderr).contains("cannot listen"),
        "{}",
        text(&busy.stderr)
    );
    for threads in ["0", "65", "many"] {
        let refused = start_once(&address, &["--runtime-threads", threads], &dir);
        assert_eq!(code(&refused), 2, "--runtime-threads {threads}");
        assert!(
            text(&refused.stderr).contains("--runtime-threads"),
            "{}",
            text(&refused.stderr)
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// Sends `signal` to `child` and waits (bounded) for it to exit.
fn signal_and_wait(child: &mut Child, signal: &str) -> ExitStatus {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within {PATIENCE:?} of {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_a_replica_with_exit_0() {
    let root = std::env::temp_dir().join(format!("allocdb-test-signal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("replica-0");
    format_replica(&dir, 0, 1);
    for signal in ["-TERM", "-INT"] {
        let address = format!("127.0.0.1:{}", free_port());
        let flags = ["--connections-per-address-max", "1024"];
        let mut processes = Processes(vec![spawn_start(&address, 0, &flags, &dir)]);
        let deadline = Instant::now() + PATIENCE;
        while allocdb_server::status::probe(&address, CLUSTER, Duration::from_millis(300))
            .await
            .map_or(true, |status| status.role != Role::Primary)
        {
            assert!(Instant::now() < deadline, "the replica never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Open sessions are told why they close, however many share the replica's thread.
        let mut sessions = Vec::new();
        for client_id in 1..=SESSIONS_AT_SHUTDOWN {
            sessions.push(TestClient::connect_as(&address, client_id).await);
        }
        let status = signal_and_wait(&mut processes.0[0], signal);
        assert_eq!(status.code(), Some(0), "{signal}: {status:?}");
        for session in &mut sessions {
            let error = expect_error_and_close(&mut session.stream).await;
            assert_code(&error, ErrorCode::ShuttingDown);
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}
