//! Shared helpers for the process-level tests: real `allocdb` processes on loopback, and a
//! minimal frame client written directly against `allocdb_vsr::frame`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use allocdb_server::frame_io::{FrameReader, ReadError};
use allocdb_vsr::frame::{
    self, ClientHello, ErrorBody, ErrorCode, FrameKind, FrameLimits, FrameReply, FrameRequest,
    Role, StatusReply, Welcome,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub const CLUSTER: u128 = 0x00C0_FFEE;
/// Every wait in these tests is bounded by this.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `command` to completion with its output captured (drained on threads, so a chatty
/// child never blocks on a full pipe); past `limit` it is stopped with `stop` and its exit
/// code is `None` (also when a signal ended it). Returns the exit code, stdout and stderr.
pub fn run_bounded(
    command: &mut Command,
    limit: Duration,
    stop: fn(&mut Child),
) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status.code();
        }
        if started.elapsed() > limit {
            stop(&mut child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    (code, stdout, stderr)
}

/// Stops a child at once (`SIGKILL`) and reaps it.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_allocdb")
}

/// A loopback port nobody listens on right now, below Linux's ephemeral range.
///
/// A port from `bind(":0")` is in the ephemeral range, where the kernel also picks the local
/// port of every outbound connection: between this test choosing it and a replica binding it,
/// a peer's dial can take it, and that replica never listens (seen in CI as a peer that never
/// dials in). Ports below 32768 are never handed out that way; a per-process counter keeps the
/// tests of one binary apart, and the process id spreads binaries that run at once.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = u16::try_from(std::process::id() % u32::from(SPAN)).expect("below SPAN");
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(7, Ordering::Relaxed) % SPAN;
        let port = FIRST + (start + offset) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

/// The flags the deployment recipes (`deploy/docker/compose.yaml`, `deploy/systemd/allocdb@.service`,
/// `deploy/kubernetes/statefulset.yaml`) give `allocdb format` after `--cluster`, `--replica`
/// and `--replica-count`: run on every start, it formats an empty directory.
pub const RECIPE_FORMAT_FLAGS: &[&str] = &["--if-empty", "--dedupe-window-slots", "6000"];

/// A local cluster of real processes; killed and deleted on drop.
pub struct Cluster {
    pub addresses: Vec<String>,
    /// Each replica's `--metrics` address (`/metrics`, `/health`).
    pub metrics: Vec<String>,
    pub dirs: Vec<PathBuf>,
    pub children: Vec<Option<Child>>,
    root: PathBuf,
    /// Whether replicas' stderr goes to `<root>/replica-<i>.log` (see [`Cluster::log_tail`])
    /// rather than the test's own stderr.
    log_files: bool,
    /// Extra `allocdb start` flags for every replica.
    pub start_flags: Vec<String>,
}

impl Cluster {
    /// Formats and starts `count` replicas (extra `format` flags in `format_flags`).
    pub fn start(name: &str, count: u8, format_flags: &[&str]) -> Cluster {
        Cluster::start_with(name, count, format_flags, &[])
    }

    /// As [`Cluster::start`], with extra `allocdb start` flags.
    pub fn start_with(
        name: &str,
        count: u8,
        format_flags: &[&str],
        start_flags: &[&str],
    ) -> Cluster {
        let root = std::env::temp_dir().join(format!("allocdb-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let addresses: Vec<String> = (0..count)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let metrics: Vec<String> = (0..count)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let mut dirs = Vec::new();
        for index in 0..count {
            let dir = root.join(format!("replica-{index}"));
            let status = Command::new(binary())
                .args([
                    "format",
                    "--insecure",
                    "--cluster",
                    &CLUSTER.to_string(),
                    "--replica",
                    &index.to_string(),
                ])
                .args(["--replica-count", &count.to_string()])
                .args(format_flags)
                .arg(&dir)
                .stdout(Stdio::null())
                .status()
                .expect("run allocdb format");
            assert!(status.success(), "format replica {index}");
            dirs.push(dir);
        }
        let mut cluster = Cluster {
            addresses,
            metrics,
            dirs,
            children: Vec::new(),
            root,
            log_files: false,
            start_flags: start_flags.iter().map(ToString::to_string).collect(),
        };
        for index in 0..count {
            let child = cluster.spawn(index);
            cluster.children.push(Some(child));
        }
        cluster
    }

    /// Formats `count` replicas with `format_flags` (e.g. [`RECIPE_FORMAT_FLAGS`]) and starts
    /// none of them: start each with [`Cluster::restart`]. Replicas' stderr goes to log files
    /// ([`Cluster::log_tail`]).
    pub fn formatted(name: &str, count: u8, format_flags: &[&str]) -> Cluster {
        let root = std::env::temp_dir().join(format!("allocdb-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the test directory");
        let cluster = Cluster {
            addresses: (0..count)
                .map(|_| format!("127.0.0.1:{}", free_port()))
                .collect(),
            metrics: (0..count)
                .map(|_| format!("127.0.0.1:{}", free_port()))
                .collect(),
            dirs: (0..count)
                .map(|index| root.join(format!("replica-{index}")))
                .collect(),
            children: (0..count).map(|_| None).collect(),
            root,
            log_files: true,
            start_flags: Vec::new(),
        };
        for index in 0..count {
            let output = cluster.format(index, format_flags);
            assert!(
                output.status.success(),
                "format replica {index}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        cluster
    }

    /// Runs `allocdb format` for replica `index` on its data directory with `flags`.
    pub fn format(&self, index: u8, flags: &[&str]) -> Output {
        Command::new(binary())
            .args(["format", "--insecure", "--cluster", &CLUSTER.to_string()])
            .args(["--replica", &index.to_string()])
            .args(["--replica-count", &self.addresses.len().to_string()])
            .args(flags)
            .arg(&self.dirs[usize::from(index)])
            .stdin(Stdio::null())
            .output()
            .expect("run allocdb format")
    }

    /// Deletes replica `index`'s data directory (a lost disk); the replica must be stopped.
    pub fn wipe(&mut self, index: u8) {
        assert!(
            self.children[usize::from(index)].is_none(),
            "replica {index} is running"
        );
        std::fs::remove_dir_all(&self.dirs[usize::from(index)]).expect("delete the data directory");
    }

    /// How replica `index`'s process ended, if it was started and has exited on its own.
    pub fn exit_status(&mut self, index: u8) -> Option<ExitStatus> {
        self.children[usize::from(index)]
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// The last lines of replica `index`'s log (clusters made by [`Cluster::formatted`]).
    pub fn log_tail(&self, index: u8) -> String {
        let path = self.root.join(format!("replica-{index}.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn spawn(&self, index: u8) -> Child {
        let stderr = if self.log_files {
            let path = self.root.join(format!("replica-{index}.log"));
            Stdio::from(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .expect("open the replica's log file"),
            )
        } else {
            Stdio::inherit()
        };
        Command::new(binary())
            .args([
                "start",
                "--insecure",
                "--addresses",
                &self.addresses.join(","),
                "--replica",
                &index.to_string(),
                "--metrics",
                &self.metrics[usize::from(index)],
            ])
            .args(&self.start_flags)
            .arg(&self.dirs[usize::from(index)])
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "error".to_string()),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn allocdb start")
    }

    /// SIGKILLs replica `index`.
    pub fn kill(&mut self, index: u8) {
        if let Some(mut child) = self.children[usize::from(index)].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts replica `index` again from its data directory.
    pub fn restart(&mut self, index: u8) {
        assert!(self.children[usize::from(index)].is_none());
        self.children[usize::from(index)] = Some(self.spawn(index));
    }

    /// Whether replica `index`'s process is still running.
    pub fn running(&mut self, index: u8) -> bool {
        self.children[usize::from(index)]
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    /// Waits until some replica reports itself primary in normal status; returns its index.
    pub async fn primary(&self) -> u8 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for (index, address) in self.addresses.iter().enumerate() {
                if let Ok(status) =
                    allocdb_server::status::probe(address, CLUSTER, Duration::from_millis(300))
                        .await
                {
                    if status.role == Role::Primary {
                        return u8::try_from(index).unwrap();
                    }
                }
            }
            assert!(Instant::now() < deadline, "no primary within {PATIENCE:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Status of every replica.
    pub async fn statuses(&self) -> Vec<Result<StatusReply, String>> {
        let mut out = Vec::new();
        for address in &self.addresses {
            out.push(
                allocdb_server::status::probe(address, CLUSTER, Duration::from_millis(500)).await,
            );
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Connects, retrying until the server listens (bounded).
pub async fn connect(address: &str) -> TcpStream {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(address).await {
            Ok(stream) => return stream,
            Err(error) => assert!(
                Instant::now() < deadline,
                "cannot connect to {address}: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The error frame the server sends before closing; then checks the connection is closed.
pub async fn expect_error_and_close(stream: &mut TcpStream) -> ErrorBody {
    let mut reader = FrameReader::new(FrameLimits::client(0));
    let (header, body) = tokio::time::timeout(PATIENCE, reader.read_frame(stream))
        .await
        .expect("an answer in time")
        .expect("a frame");
    assert_eq!(header.kind, FrameKind::Error, "expected an error frame");
    let error = ErrorBody::decode(&body).expect("a valid error body");
    let after = tokio::time::timeout(PATIENCE, reader.read_frame(stream))
        .await
        .expect("the close in time");
    assert!(
        matches!(after, Err(ReadError::Closed | ReadError::Io(_))),
        "connection must close after the error frame"
    );
    error
}

/// A minimal client session.
pub struct TestClient {
    pub stream: TcpStream,
    reader: FrameReader,
    pub welcome: Welcome,
    next_request: u64,
}

impl TestClient {
    pub async fn connect(address: &str) -> TestClient {
        TestClient::connect_as(address, 1).await
    }

    /// A session of client `client_id`.
    pub async fn connect_as(address: &str, client_id: u128) -> TestClient {
        let mut stream = connect(address).await;
        let mut bytes = Vec::new();
        frame::write_frame(&mut bytes, FrameKind::ClientHello, CLUSTER, |b| {
            ClientHello { client_id }.encode(b);
        });
        stream.write_all(&bytes).await.unwrap();
        let mut reader = FrameReader::new(FrameLimits::client(CLUSTER));
        let (header, body) = tokio::time::timeout(PATIENCE, reader.read_frame(&mut stream))
            .await
            .expect("welcome in time")
            .expect("welcome");
        assert_eq!(header.kind, FrameKind::ClientWelcome);
        let welcome = Welcome::decode(&body).unwrap();
        TestClient {
            stream,
            reader,
            welcome,
            next_request: 1,
        }
    }

    /// Sends one frame of `operations` and waits for every reply; returns them in request order.
    pub async fn call(&mut self, operations: &[allocdb_vsr::ClientOperation]) -> Vec<FrameReply> {
        let first = self.next_request;
        let requests: Vec<FrameRequest> = operations
            .iter()
            .enumerate()
            .map(|(offset, operation)| FrameRequest {
                request_id: first + offset as u64,
                operation: *operation,
            })
            .collect();
        self.next_request += operations.len() as u64;
        let mut bytes = Vec::new();
        frame::write_frame(&mut bytes, FrameKind::ClientRequests, CLUSTER, |b| {
            frame::encode_requests(&requests, b);
        });
        self.stream.write_all(&bytes).await.unwrap();
        let mut answers: Vec<Option<FrameReply>> = vec![None; operations.len()];
        let mut replies = Vec::new();
        while answers.iter().any(Option::is_none) {
            let (header, body) =
                tokio::time::timeout(PATIENCE, self.reader.read_frame(&mut self.stream))
                    .await
                    .expect("replies in time")
                    .expect("a reply frame");
            assert_eq!(
                header.kind,
                FrameKind::ClientReplies,
                "{:?}",
                ErrorBody::decode(&body)
            );
            frame::decode_replies(&body, &mut replies).unwrap();
            for reply in &replies {
                let slot = usize::try_from(reply.request_id - first).unwrap();
                answers[slot] = Some(*reply);
            }
        }
        answers.into_iter().map(Option::unwrap).collect()
    }
}

/// A client request frame's bytes.
pub fn requests_frame(cluster_id: u128, requests: &[FrameRequest]) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame::write_frame(&mut bytes, FrameKind::ClientRequests, cluster_id, |b| {
        frame::encode_requests(requests, b);
    });
    bytes
}

/// Asserts an error code.
pub fn assert_code(error: &ErrorBody, code: ErrorCode) {
    assert_eq!(
        error.code,
        code,
        "error frame: {} {}",
        error.code.name(),
        error.message
    );
}
