//! Bounded resources per peer and per client, against real `allocdb start` processes on
//! loopback: floods of idle connections and idle sessions do not stop a real client, a flood
//! of partial frames gives its memory back, a trickled peer frame is cut off, and reads whose
//! `min_op` no cluster could reach soon are refused at once.
//!
//! Floods come from many loopback source addresses (`127.0.x.y`, all routed to `lo` on Linux)
//! so that they test the global bounds, not only the per-address cap; the real client
//! connects from 127.0.0.1. Each test prints what it measured.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use allocdb_core::{Command, LeaseId, Request, ResultCode};
use allocdb_server::fingerprint::Fingerprint;
use allocdb_server::frame_io::{FrameReader, ReadError};
use allocdb_vsr::frame::{
    self, ClientHello, ErrorBody, ErrorCode, FrameKind, FrameLimits, HEADER_BYTES, PeerHandshake,
};
use allocdb_vsr::{ClientOperation, Query, ReplyBody};
use support::{
    CLUSTER, Cluster, PATIENCE, TestClient, assert_code, connect, expect_error_and_close,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a real client may take to be served during a flood.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// One flood at a time: floods of thousands of sockets in parallel would compete for the two
/// cores and the open-file limit, and measure each other rather than the bounds.
static FLOODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Open files this test process may hold (the soft `RLIMIT_NOFILE`, from `/proc`).
fn open_files_max() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a Max open files line");
    let soft = line.split_whitespace().nth(3).expect("a soft limit");
    soft.parse().unwrap_or(usize::MAX)
}

/// `wanted` connections, or fewer (with a note) if this process may not open that many
/// files; the replica under test inherits the same limit.
fn scaled(wanted: usize) -> usize {
    let room = open_files_max().saturating_sub(256);
    if room >= wanted {
        wanted
    } else {
        eprintln!(
            "RLIMIT_NOFILE allows {room} connections: scaling {wanted} down (raise `ulimit -n`)"
        );
        room
    }
}

/// The `index`th flood source address in block `block` (`127.<block>.x.y`), `per_address`
/// connections per address.
fn source(block: u8, index: usize, per_address: usize) -> IpAddr {
    let host = u16::try_from(index / per_address + 1).unwrap();
    let [high, low] = host.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(127, block, high, low))
}

async fn connect_from(from: IpAddr, to: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to.parse().expect("an address")).await
}

/// Opens `count` connections to `address` from block `block` (50 per source address,
/// below the default cap of 64); the ones the server closes still count as attempts.
async fn flood(address: &str, block: u8, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for index in 0..count {
        let stream = connect_from(source(block, index, 50), address)
            .await
            .expect("connect a flood connection");
        streams.push(stream);
    }
    streams
}

fn hello() -> Vec<u8> {
    let mut bytes = Vec::new();
    frame::write_frame(&mut bytes, FrameKind::ClientHello, CLUSTER, |b| {
        ClientHello { client_id: 77 }.encode(b);
    });
    bytes
}

/// Serves one real client: connect, hello, one committed write. Returns how long it took.
async fn serve_real_client(address: &str, resource: u128) -> Duration {
    let started = Instant::now();
    let mut client = TestClient::connect(address).await;
    let create = ClientOperation::Write(Request {
        operation_id: resource,
        command: Command::CreateResource {
            resource,
            pool: None,
        },
    });
    let replies = client.call(&[create]).await;
    assert!(
        matches!(replies[0].body, ReplyBody::Committed { outcome, .. } if outcome.code == ResultCode::Ok),
        "{replies:?}"
    );
    started.elapsed()
}

/// A counter from the replica's `/metrics`.
async fn metric(address: &str, name: &str) -> u64 {
    let mut stream = connect(address).await;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut text))
        .await
        .expect("metrics in time")
        .expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_stop_a_real_client() {
    let _flood = FLOODS.lock().await;
    let cluster = Cluster::start("bounds-idle", 1, &[]);
    cluster.primary().await;
    let address = &cluster.addresses[0];
    serve_real_client(address, 1).await;

    let count = scaled(5_000);
    let started = Instant::now();
    let idle = flood(address, 1, count).await;
    let opened = started.elapsed();
    let took = serve_real_client(address, 2).await;
    let evicted = metric(&cluster.metrics[0], "allocdb_connections_evicted_total").await;
    eprintln!(
        "{count} idle connections opened in {opened:?}; a real client was served in {took:?}; \
         {evicted} unidentified connections evicted"
    );
    assert!(took < SERVED_WITHIN, "served in {took:?}");
    // The default keeps 1,024 unidentified connections; the rest (and the real client's
    // room) were made by closing the oldest.
    assert!(evicted >= u64::try_from(count).unwrap().saturating_sub(1_024));
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_do_not_stop_a_real_client_and_time_out() {
    let _flood = FLOODS.lock().await;
    let cluster = Cluster::start_with(
        "bounds-sessions",
        1,
        &[],
        &["--client-idle-timeout", "3s", "--handshake-timeout", "1s"],
    );
    cluster.primary().await;
    let address = &cluster.addresses[0];

    // Each says hello as soon as it is connected (a silent one would be closed after the
    // 1 s handshake timeout, or evicted by newer ones).
    let count = scaled(4_000);
    let hello = hello();
    let mut sessions = Vec::with_capacity(count);
    for index in 0..count {
        let mut stream = connect_from(source(2, index, 50), address).await.unwrap();
        stream.write_all(&hello).await.unwrap();
        sessions.push(stream);
    }
    // Each session keeps its reader: the idle timeout's error frame may arrive in the same
    // read as the welcome.
    let mut readers = Vec::with_capacity(count);
    for stream in &mut sessions {
        let mut reader = FrameReader::new(FrameLimits::client(CLUSTER));
        let (header, _) = tokio::time::timeout(PATIENCE, reader.read_frame(stream))
            .await
            .expect("a welcome in time")
            .expect("a welcome");
        assert_eq!(header.kind, FrameKind::ClientWelcome);
        readers.push(reader);
    }
    let took = serve_real_client(address, 1).await;
    eprintln!("{count} hello-then-idle sessions open; a real client was served in {took:?}");
    assert!(took < SERVED_WITHIN, "served in {took:?}");

    // The idle sessions are closed after the idle timeout, each with a `timeout` error frame.
    let started = Instant::now();
    for (index, (stream, reader)) in sessions.iter_mut().zip(&mut readers).enumerate() {
        let answer = tokio::time::timeout(PATIENCE, reader.read_frame(stream)).await;
        match answer {
            Ok(Ok((header, body))) if header.kind == FrameKind::Error => {
                assert_code(&ErrorBody::decode(&body).unwrap(), ErrorCode::Timeout);
            }
            other => panic!("session {index}: {other:?}"),
        }
        let after = tokio::time::timeout(PATIENCE, reader.read_frame(stream)).await;
        assert!(
            matches!(after, Ok(Err(ReadError::Closed | ReadError::Io(_)))),
            "session {index} must close after its error frame"
        );
    }
    let closed_after = started.elapsed();
    let timeouts = metric(&cluster.metrics[0], "allocdb_idle_timeouts_total").await;
    eprintln!(
        "idle sessions closed {closed_after:?} after the real client; {timeouts} idle timeouts"
    );
    assert!(timeouts >= u64::try_from(count).unwrap());

    // A connection that never says hello is closed after the handshake timeout.
    let started = Instant::now();
    let mut silent = connect(address).await;
    assert_code(
        &expect_error_and_close(&mut silent).await,
        ErrorCode::Timeout,
    );
    let silent_closed = started.elapsed();
    eprintln!("a silent connection was closed after {silent_closed:?}");
    assert!(silent_closed < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_cap_are_refused_at_once() {
    let _flood = FLOODS.lock().await;
    let cluster = Cluster::start_with(
        "bounds-address",
        1,
        &[],
        &["--connections-per-address-max", "16"],
    );
    cluster.primary().await;
    let address = &cluster.addresses[0];
    let from = IpAddr::V4(Ipv4Addr::new(127, 3, 0, 1));
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(connect_from(from, address).await.unwrap());
    }
    let started = Instant::now();
    let mut refused = connect_from(from, address).await.unwrap();
    let error = expect_error_and_close(&mut refused).await;
    let took = started.elapsed();
    assert_code(&error, ErrorCode::Overloaded);
    assert!(error.message.contains("127.3.0.1"), "{}", error.message);
    eprintln!("the 17th connection from one address was refused in {took:?}");
    assert!(took < SERVED_WITHIN);
    // Other addresses, and the same one once a connection closes, are still served.
    serve_real_client(address, 1).await;
    drop(held.pop());
    let mut again = None;
    let deadline = Instant::now() + PATIENCE;
    while again.is_none() {
        let mut stream = connect_from(from, address).await.unwrap();
        stream.write_all(&hello()).await.unwrap();
        let mut reader = FrameReader::new(FrameLimits::client(CLUSTER));
        match tokio::time::timeout(PATIENCE, reader.read_frame(&mut stream)).await {
            Ok(Ok((header, _))) if header.kind == FrameKind::ClientWelcome => again = Some(stream),
            _ => assert!(
                Instant::now() < deadline,
                "the address never got a slot back"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metric(
            &cluster.metrics[0],
            "allocdb_connections_refused_address_total"
        )
        .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_frame_flood_gives_its_memory_back() {
    let _flood = FLOODS.lock().await;
    let cluster = Cluster::start_with(
        "bounds-rss",
        1,
        &[],
        &["--frame-grace", "1s", "--frame-rate-min", "262144"],
    );
    cluster.primary().await;
    let address = &cluster.addresses[0];
    let pid = cluster.children[0].as_ref().unwrap().id();
    serve_real_client(address, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid);

    // 1,000 sessions each send a request frame declaring 300 KB and all of it but one byte.
    let count = scaled(1_000);
    let body_bytes: u32 = 300_000;
    let mut header = [0_u8; HEADER_BYTES];
    let mut whole = Vec::new();
    frame::write_frame(&mut whole, FrameKind::ClientRequests, CLUSTER, |b| {
        b.resize(usize::try_from(body_bytes).unwrap(), 0);
    });
    header.copy_from_slice(&whole[..HEADER_BYTES]);
    let partial = &whole[..whole.len() - 1];
    let mut sessions = flood(address, 4, count).await;
    let hello = hello();
    for stream in &mut sessions {
        stream.write_all(&hello).await.unwrap();
        stream.write_all(partial).await.unwrap();
    }
    let peak = rss_kib(pid);
    // Each is closed for its pace (1 s + 300 KB at 256 KiB/s) with a `timeout` error frame.
    for stream in &mut sessions {
        let mut reader = FrameReader::new(FrameLimits::client(CLUSTER));
        let mut closed = false;
        while !closed {
            let (header, body) = tokio::time::timeout(PATIENCE, reader.read_frame(stream))
                .await
                .expect("an answer in time")
                .expect("a frame");
            if header.kind == FrameKind::Error {
                assert_code(&ErrorBody::decode(&body).unwrap(), ErrorCode::Timeout);
                closed = true;
            }
        }
    }
    drop(sessions);
    let started = Instant::now();
    let mut after = rss_kib(pid);
    while after > baseline + baseline / 10 && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = rss_kib(pid);
    }
    let slow = metric(&cluster.metrics[0], "allocdb_slow_frames_total").await;
    eprintln!(
        "RSS baseline {baseline} KiB, {peak} KiB after {count} partial 300 KB frames, \
         {after} KiB after they were closed ({slow} slow frames)"
    );
    assert!(
        after <= baseline + baseline / 10,
        "RSS {after} KiB, baseline {baseline} KiB"
    );
    serve_real_client(address, 2).await;
}

fn peer_handshake(cluster: &Cluster, index: u8) -> Vec<u8> {
    let settings = allocdb_server::ClusterSettings::read(&cluster.dirs[0]).unwrap();
    let template = Fingerprint::new(&settings, &cluster.addresses)
        .unwrap()
        .handshake(0, 3);
    let mut body = Vec::new();
    PeerHandshake {
        replica_index: index,
        replica_count: 3,
        ..template
    }
    .encode(&mut body);
    let mut bytes = Vec::new();
    frame::write_frame(&mut bytes, FrameKind::PeerHandshake, CLUSTER, |b| {
        b.extend_from_slice(&body);
    });
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_peer_frame_is_closed() {
    let _flood = FLOODS.lock().await;
    let cluster = Cluster::start("bounds-trickle", 3, &[]);
    cluster.primary().await;
    let address = &cluster.addresses[0];
    let mut stream = connect(address).await;
    stream
        .write_all(&peer_handshake(&cluster, 1))
        .await
        .unwrap();
    let mut reader = FrameReader::new(FrameLimits {
        cluster_id: CLUSTER,
        body_bytes_max: frame::FRAME_BODY_BYTES_LIMIT,
    });
    let (header, _) = tokio::time::timeout(PATIENCE, reader.read_frame(&mut stream))
        .await
        .expect("a handshake answer in time")
        .expect("a handshake answer");
    assert_eq!(header.kind, FrameKind::PeerHandshake);

    // A peer message declaring 60 MiB, then one byte every 0.5 s (in time for the link's
    // 1 s idle timeout, so only the pace can end it).
    let body_bytes = 60 << 20;
    let mut head = Vec::new();
    frame::write_frame(&mut head, FrameKind::PeerMessage, CLUSTER, |b| {
        b.resize(body_bytes, 0);
    });
    head.truncate(HEADER_BYTES);
    stream.write_all(&head).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut sent = 0;
    let closed = loop {
        assert!(
            started.elapsed() < PATIENCE,
            "the trickle was never cut off"
        );
        if stream.write_all(&[0]).await.is_err() {
            break started.elapsed();
        }
        sent += 1;
        let mut chunk = [0_u8; 4096];
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(read)) => answer.extend_from_slice(&chunk[..read]),
            Err(_) => {}
        }
    };
    let timeout_frame = answer
        .windows(b"slower than".len())
        .any(|w| w == b"slower than");
    eprintln!(
        "a peer frame trickled at 1 byte / 0.5 s was closed after {closed:?} ({sent} bytes; \
         error frame naming the pace: {timeout_frame})"
    );
    assert!(closed < Duration::from_secs(5));
    assert!(metric(&cluster.metrics[0], "allocdb_slow_frames_total").await >= 1);
    serve_real_client(&cluster.addresses[usize::from(cluster.primary().await)], 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_beyond_reach_are_refused_at_once() {
    let _flood = FLOODS.lock().await;
    let cluster = Cluster::start("bounds-min-op", 1, &[]);
    cluster.primary().await;
    let address = &cluster.addresses[0];
    serve_real_client(address, 1).await;
    let mut client = TestClient::connect(address).await;
    let forged = ClientOperation::Read {
        query: Query::Lease(LeaseId(1 << 32)),
        min_op: u64::MAX,
    };
    let started = Instant::now();
    let mut refused = 0;
    for _ in 0..4 {
        let replies = client.call(&vec![forged; 1_024]).await;
        refused += replies
            .iter()
            .filter(|r| matches!(r.body, ReplyBody::Invalid))
            .count();
    }
    let took = started.elapsed();
    let real = client
        .call(&[ClientOperation::Read {
            query: Query::Resource(1),
            min_op: 0,
        }])
        .await;
    eprintln!("4,096 reads with min_op u64::MAX: {refused} answered invalid in {took:?}");
    assert_eq!(refused, 4_096);
    assert!(took < SERVED_WITHIN);
    assert!(matches!(real[0].body, ReplyBody::Read { .. }), "{real:?}");
    assert!(metric(&cluster.metrics[0], "allocdb_requests_invalid_total").await >= 4_096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_idle_connections_mid_handshake_do_not_stop_a_real_client() {
    use allocdb_client::{Client, ClientOptions, ClientRole};
    use allocdb_server::local_cluster::{LocalCluster, LocalSecurity};
    let _flood = FLOODS.lock().await;

    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_allocdb"));
    let cluster = LocalCluster::start(binary, 3, CLUSTER, LocalSecurity::Tls).expect("starts");
    cluster
        .wait_for_primary(Duration::from_secs(20))
        .await
        .expect("a primary over TLS");
    // Idle TCP connections that never start their TLS handshake, spread over the replicas.
    let count = scaled(5_000);
    let mut idle = Vec::with_capacity(count);
    for index in 0..count {
        let address = &cluster.addresses[index % cluster.addresses.len()];
        idle.push(connect_from(source(5, index, 50), address).await.unwrap());
    }
    let started = Instant::now();
    let mut options = ClientOptions::new(cluster.addresses.clone(), CLUSTER);
    options.call_timeout = Duration::from_secs(10);
    options.security = Some(cluster.client_security(ClientRole::Operator).unwrap());
    let client = Client::connect(options).await.expect("connects over TLS");
    client.create_resource(1, None).await.expect("creates");
    let took = started.elapsed();
    eprintln!(
        "over TLS, with {count} idle connections mid-handshake: connected and served in {took:?}"
    );
    assert!(took < SERVED_WITHIN, "served in {took:?}");
    drop(idle);
}
