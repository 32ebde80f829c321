//! Hostile and broken input against a real `allocdb start` process: every case gets an error
//! frame naming the problem, its connection closes, and the server keeps serving everyone
//! else (checked after every case with a well-behaved client).

mod support;

use std::time::Duration;

use allocdb_core::{Command, LeaseId, Request, ResultCode};
use allocdb_server::fingerprint::Fingerprint;
use allocdb_server::frame_io::FrameReader;
use allocdb_vsr::frame::{
    self, CLIENT_BODY_BYTES_MAX, ClientHello, ErrorCode, FrameKind, FrameLimits, FrameRequest,
    HEADER_BYTES, PeerHandshake,
};
use allocdb_vsr::{ClientOperation, Message, ReplyBody, encode_message};
use support::{
    CLUSTER, Cluster, PATIENCE, TestClient, assert_code, connect, expect_error_and_close,
    requests_frame,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn frame_bytes(kind: FrameKind, cluster_id: u128, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame::write_frame(&mut bytes, kind, cluster_id, |b| b.extend_from_slice(body));
    bytes
}

fn hello() -> Vec<u8> {
    let mut body = Vec::new();
    ClientHello { client_id: 5 }.encode(&mut body);
    frame_bytes(FrameKind::ClientHello, CLUSTER, &body)
}

/// Recomputes the header checksum after editing header bytes.
fn reseal(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[..32]);
    bytes[32..36].copy_from_slice(&crc.to_le_bytes());
}

/// Deterministic noise (a seeded xorshift), printed so a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// A well-behaved client still gets a write committed.
async fn still_serving(address: &str, operation_id: u128) {
    let mut client = TestClient::connect(address).await;
    let create = ClientOperation::Write(Request {
        operation_id,
        command: Command::CreateResource {
            resource: operation_id,
            pool: None,
        },
    });
    let replies = client.call(&[create]).await;
    assert!(
        matches!(replies[0].body, ReplyBody::Committed { outcome, .. } if outcome.code == ResultCode::Ok),
        "server stopped serving: {replies:?}"
    );
}

/// Opens a client session (hello + welcome) and returns the raw stream.
async fn session(address: &str) -> TcpStream {
    let mut stream = connect(address).await;
    stream.write_all(&hello()).await.unwrap();
    let mut reader = FrameReader::new(FrameLimits::client(CLUSTER));
    let (header, _) = tokio::time::timeout(PATIENCE, reader.read_frame(&mut stream))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header.kind, FrameKind::ClientWelcome);
    stream
}

#[tokio::test]
async fn client_connections_get_an_error_frame_for_each_kind_of_bad_input() {
    let cluster = Cluster::start("bad-client", 1, &[]);
    let address = cluster.addresses[0].clone();
    cluster.primary().await;
    let valid = hello();
    // (name, bytes sent, whether to close our write side after sending, expected code)
    let mut oversized = valid[..HEADER_BYTES].to_vec();
    oversized[24..28].copy_from_slice(&(CLIENT_BODY_BYTES_MAX + 1).to_le_bytes());
    reseal(&mut oversized);
    let mut wrong_version = valid.clone();
    wrong_version[4] = 1; // the previous protocol version
    reseal(&mut wrong_version);
    let mut bad_body = valid.clone();
    *bad_body.last_mut().unwrap() ^= 0x40;
    let mut long_body_announced = valid[..HEADER_BYTES].to_vec();
    long_body_announced[24..28].copy_from_slice(&100_u32.to_le_bytes());
    reseal(&mut long_body_announced);
    long_body_announced.extend_from_slice(&[0; 10]);
    let seed = 0x5EED;
    println!("noise seed {seed}");
    let cases: Vec<(&str, Vec<u8>, bool, ErrorCode)> = vec![
        ("random bytes", noise(seed, 300), false, ErrorCode::BadMagic),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
            ErrorCode::BadMagic,
        ),
        (
            "a truncated header",
            valid[..20].to_vec(),
            true,
            ErrorCode::Malformed,
        ),
        (
            "a truncated body",
            long_body_announced,
            true,
            ErrorCode::Malformed,
        ),
        (
            "an oversized length",
            oversized,
            false,
            ErrorCode::Oversized,
        ),
        (
            "a wrong cluster id",
            frame_bytes(FrameKind::StatusRequest, CLUSTER + 1, &[]),
            false,
            ErrorCode::WrongCluster,
        ),
        (
            "a wrong version",
            wrong_version,
            false,
            ErrorCode::WrongVersion,
        ),
        ("a corrupted body", bad_body, false, ErrorCode::BadChecksum),
        (
            "a replica message first",
            frame_bytes(
                FrameKind::PeerMessage,
                CLUSTER,
                &[5, 1, 0, 0, 0, 0, 0, 0, 0],
            ),
            false,
            ErrorCode::UnexpectedKind,
        ),
        (
            "requests before hello",
            requests_frame(CLUSTER, &[]),
            false,
            ErrorCode::UnexpectedKind,
        ),
    ];
    for (index, (name, bytes, close, code)) in cases.into_iter().enumerate() {
        let mut stream = connect(&address).await;
        stream.write_all(&bytes).await.unwrap();
        if close {
            stream.shutdown().await.unwrap();
        }
        let error = expect_error_and_close(&mut stream).await;
        println!("{name}: {} {}", error.code.name(), error.message);
        assert_code(&error, code);
        still_serving(&address, 1000 + index as u128).await;
    }
}

#[tokio::test]
async fn a_client_session_cannot_send_replica_messages_or_internal_commands() {
    let cluster = Cluster::start("bad-session", 1, &[]);
    let address = cluster.addresses[0].clone();
    cluster.primary().await;
    let mut message = Vec::new();
    encode_message(&Message::StartViewChange { view: 99 }, &mut message);
    let expire = Request {
        operation_id: 0,
        command: Command::Expire {
            lease: LeaseId(1 << 32),
            deadline_slot: 0,
        },
    };
    let create = Request {
        operation_id: 77,
        command: Command::CreateResource {
            resource: 77,
            pool: None,
        },
    };
    let with_expire = [
        FrameRequest {
            request_id: 1,
            operation: ClientOperation::Write(create),
        },
        FrameRequest {
            request_id: 2,
            operation: ClientOperation::Write(expire),
        },
    ];
    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "a replica message",
            frame_bytes(FrameKind::PeerMessage, CLUSTER, &message),
            ErrorCode::UnexpectedKind,
        ),
        (
            "a peer handshake",
            frame_bytes(FrameKind::PeerHandshake, CLUSTER, &[1, 1]),
            ErrorCode::UnexpectedKind,
        ),
        (
            "an internal expire",
            requests_frame(CLUSTER, &with_expire),
            ErrorCode::InternalCommandFromClient,
        ),
        (
            "a malformed request body",
            frame_bytes(FrameKind::ClientRequests, CLUSTER, &[1, 0, 0, 0, 9]),
            ErrorCode::Malformed,
        ),
        (
            "a wrong cluster mid-session",
            requests_frame(CLUSTER + 1, &[]),
            ErrorCode::WrongCluster,
        ),
    ];
    for (index, (name, bytes, code)) in cases.into_iter().enumerate() {
        let mut stream = session(&address).await;
        stream.write_all(&bytes).await.unwrap();
        let error = expect_error_and_close(&mut stream).await;
        println!("{name}: {} {}", error.code.name(), error.message);
        assert_code(&error, code);
        still_serving(&address, 2000 + index as u128).await;
    }
    // The frame carrying the expire was refused whole: its create never ran.
    let mut client = TestClient::connect(&address).await;
    let read = ClientOperation::Read {
        query: allocdb_vsr::Query::Resource(77),
        min_op: 0,
    };
    match client.call(&[read]).await[0].body {
        ReplyBody::Read {
            result: allocdb_vsr::ReadResult::Resource(Err(code)),
            ..
        } => assert_eq!(code, ResultCode::ResourceNotFound),
        other => panic!("resource 77 must not exist: {other:?}"),
    }
}

/// The handshake of a replica configured like `cluster`'s (default settings, its addresses).
fn template(cluster: &Cluster) -> PeerHandshake {
    let settings = allocdb_server::ClusterSettings::read(&cluster.dirs[0]).unwrap();
    Fingerprint::new(&settings, &cluster.addresses)
        .unwrap()
        .handshake(0, 3)
}

fn handshake(template: &PeerHandshake, index: u8, count: u8, cluster_id: u128) -> Vec<u8> {
    let mut body = Vec::new();
    PeerHandshake {
        replica_index: index,
        replica_count: count,
        ..template.clone()
    }
    .encode(&mut body);
    frame_bytes(FrameKind::PeerHandshake, cluster_id, &body)
}

/// Connects as replica 1 and reads replica 0's handshake answer.
async fn peer_link(address: &str, template: &PeerHandshake) -> (TcpStream, FrameReader) {
    let mut stream = connect(address).await;
    stream
        .write_all(&handshake(template, 1, 3, CLUSTER))
        .await
        .unwrap();
    let mut reader = FrameReader::new(FrameLimits {
        cluster_id: CLUSTER,
        body_bytes_max: 1 << 24,
    });
    let (header, body) = tokio::time::timeout(PATIENCE, reader.read_frame(&mut stream))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header.kind, FrameKind::PeerHandshake);
    assert_eq!(PeerHandshake::decode(&body).unwrap(), *template);
    (stream, reader)
}

#[tokio::test]
async fn peer_links_get_an_error_frame_for_each_kind_of_bad_input() {
    // Replica 0 of a three-replica cluster, alone: the test plays replica 1.
    let mut cluster = Cluster::start("bad-peer", 3, &[]);
    cluster.kill(1);
    cluster.kill(2);
    let address = cluster.addresses[0].clone();
    let template = template(&cluster);
    let mut oversized = frame_bytes(FrameKind::PeerMessage, CLUSTER, &[])[..HEADER_BYTES].to_vec();
    oversized[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut oversized);
    let cases: Vec<(&str, Vec<u8>, bool, ErrorCode)> = vec![
        (
            "random bytes",
            noise(0xBEEF, 200),
            false,
            ErrorCode::BadMagic,
        ),
        (
            "a truncated frame",
            frame_bytes(
                FrameKind::PeerMessage,
                CLUSTER,
                &[5, 1, 0, 0, 0, 0, 0, 0, 0],
            )[..40]
                .to_vec(),
            true,
            ErrorCode::Malformed,
        ),
        (
            "an oversized length",
            oversized,
            false,
            ErrorCode::Oversized,
        ),
        (
            "a malformed message",
            frame_bytes(FrameKind::PeerMessage, CLUSTER, &[99]),
            false,
            ErrorCode::Malformed,
        ),
        (
            "a client request",
            requests_frame(CLUSTER, &[]),
            false,
            ErrorCode::UnexpectedKind,
        ),
        (
            "a wrong cluster",
            frame_bytes(FrameKind::PeerPing, CLUSTER + 1, &[]),
            false,
            ErrorCode::WrongCluster,
        ),
    ];
    for (name, bytes, close, code) in cases {
        let (mut stream, _) = peer_link(&address, &template).await;
        stream.write_all(&bytes).await.unwrap();
        if close {
            stream.shutdown().await.unwrap();
        }
        let error = expect_error_and_close(&mut stream).await;
        println!("{name}: {} {}", error.code.name(), error.message);
        assert_code(&error, code);
        assert!(cluster.running(0), "the server must survive {name}");
    }
    check_handshakes(&address, &template).await;
    a_valid_link_stays_up(&address, &template).await;
}

/// Handshakes themselves are checked.
async fn check_handshakes(address: &str, template: &PeerHandshake) {
    let mut other_limit = template.clone();
    other_limit.config[4] += 1;
    let mut permuted = template.clone();
    permuted.addresses.swap(0, 1);
    let mut body = Vec::new();
    template.encode(&mut body);
    body[0] = 1;
    body.pop();
    let truncated = frame_bytes(FrameKind::PeerHandshake, CLUSTER, &body);
    let handshakes = [
        (
            "claims to be the receiver",
            handshake(template, 0, 3, CLUSTER),
            ErrorCode::WrongReplica,
        ),
        (
            "index out of range",
            handshake(template, 3, 3, CLUSTER),
            ErrorCode::WrongReplica,
        ),
        (
            "another cluster size",
            handshake(template, 1, 5, CLUSTER),
            ErrorCode::WrongReplica,
        ),
        (
            "another cluster",
            handshake(template, 1, 3, CLUSTER + 1),
            ErrorCode::WrongCluster,
        ),
        (
            "another table size",
            handshake(&other_limit, 1, 3, CLUSTER),
            ErrorCode::ConfigMismatch,
        ),
        (
            "another address order",
            handshake(&permuted, 1, 3, CLUSTER),
            ErrorCode::ConfigMismatch,
        ),
        ("a truncated body", truncated, ErrorCode::Malformed),
    ];
    for (name, bytes, code) in handshakes {
        let mut stream = connect(address).await;
        stream.write_all(&bytes).await.unwrap();
        let error = expect_error_and_close(&mut stream).await;
        println!("handshake {name}: {} {}", error.code.name(), error.message);
        assert_code(&error, code);
    }
}

/// A valid link stays up and is pinged; the replica still answers status probes.
async fn a_valid_link_stays_up(address: &str, template: &PeerHandshake) {
    let (mut stream, mut reader) = peer_link(address, template).await;
    let mut message = Vec::new();
    encode_message(&Message::StartViewChange { view: 1 }, &mut message);
    stream
        .write_all(&frame_bytes(FrameKind::PeerMessage, CLUSTER, &message))
        .await
        .unwrap();
    let (header, _) = tokio::time::timeout(Duration::from_secs(2), reader.read_frame(&mut stream))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header.kind, FrameKind::PeerPing);
    let status = allocdb_server::status::probe(address, CLUSTER, Duration::from_secs(1)).await;
    assert!(status.is_ok(), "{status:?}");
}
