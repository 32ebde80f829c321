//! TLS and client roles with real processes on loopback: a cluster started with `--certs`
//! serves an operator, refuses an application certificate (and another replica's certificate)
//! as a peer, and answers an application's `revoke` with `forbidden`; plaintext against TLS and
//! TLS against plaintext are named, and fatal only when no replica of the list fits;
//! the forged peer messages of issue 12, re-sent over plaintext and over an application
//! certificate, change nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use allocdb_client::tls::{Transport, replica_name};
use allocdb_client::{Client, ClientError, ClientOptions, ClientRole, Security, TlsCredentials};
use allocdb_core::{Allocator, Outcome, Request, ResultCode};
use allocdb_server::fingerprint::Fingerprint;
use allocdb_server::local_cluster::{LocalCluster, LocalSecurity};
use allocdb_vsr::frame::{self, ErrorBody, ErrorCode, FrameKind, PeerHandshake};
use allocdb_vsr::{Message, encode_message};
use allocdb_wal::{CheckpointInfo, checksum128};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLUSTER: u128 = 0x7153;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_allocdb"))
}

async fn tls_cluster() -> LocalCluster {
    let cluster =
        LocalCluster::start(binary(), 3, CLUSTER, LocalSecurity::Tls).expect("cluster starts");
    cluster
        .wait_for_primary(Duration::from_secs(20))
        .await
        .expect("a primary over TLS");
    cluster
}

async fn client(cluster: &LocalCluster, security: Security) -> Result<Client, ClientError> {
    let mut options = ClientOptions::new(cluster.addresses.clone(), CLUSTER);
    options.call_timeout = Duration::from_secs(10);
    options.security = Some(security);
    Client::connect(options).await
}

fn credentials(cluster: &LocalCluster, name: &str) -> TlsCredentials {
    TlsCredentials::from_dir(&cluster.certs_dir(), name).expect("certificates")
}

/// Opens a TLS connection to replica `index` with `name`'s certificate, sends a peer
/// handshake claiming to be replica `claimed`, and returns the error code it is answered.
async fn peer_handshake_as(
    cluster: &LocalCluster,
    name: &str,
    index: u8,
    claimed: u8,
) -> Option<ErrorCode> {
    let transport = Transport::new(&Security::Tls(credentials(cluster, name))).unwrap();
    let address = &cluster.addresses[usize::from(index)];
    let mut stream = transport
        .connect(address, &replica_name(CLUSTER, index))
        .await
        .expect("the TLS handshake itself succeeds for any certificate of the CA");
    let handshake = PeerHandshake {
        replica_index: claimed,
        replica_count: 3,
        config: Vec::new(),
        addresses: Vec::new(),
    };
    let mut bytes = Vec::new();
    frame::write_frame(&mut bytes, FrameKind::PeerHandshake, CLUSTER, |b| {
        handshake.encode(b);
    });
    stream.write_all(&bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    if answer.len() < frame::HEADER_BYTES {
        return None;
    }
    let (header, body) = answer.split_at(frame::HEADER_BYTES);
    let header = frame::decode_header(
        header.try_into().unwrap(),
        &frame::FrameLimits::client(CLUSTER),
    )
    .ok()?;
    assert_eq!(header.kind, FrameKind::Error);
    ErrorBody::decode(&body[..header.body_len as usize])
        .ok()
        .map(|error| error.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_roles_and_refuses_impostors() {
    let cluster = tls_cluster().await;

    // An operator creates resources and an application reserves one.
    let operator = client(
        &cluster,
        cluster.client_security(ClientRole::Operator).unwrap(),
    )
    .await
    .expect("operator connects");
    operator
        .create_resource(1, None)
        .await
        .expect("operator creates");
    let application = client(
        &cluster,
        cluster.client_security(ClientRole::Application).unwrap(),
    )
    .await
    .expect("application connects");
    let grant = application.reserve(&[1], 7, 1000).await.expect("reserve");

    // The application may not revoke, reclaim or create: a definite `forbidden`.
    for refused in [
        application.revoke(grant.lease).await,
        application.reclaim(grant.lease).await,
        application.create_resource(2, None).await,
    ] {
        let error = refused.expect_err("forbidden");
        assert!(matches!(error, ClientError::Forbidden { .. }), "{error:?}");
        assert!(error.is_definite());
    }
    // The operator may revoke.
    operator
        .revoke(grant.lease)
        .await
        .expect("operator revokes");

    // An application certificate cannot join as a replica.
    for claimed in [0, 1, 2] {
        assert_eq!(
            peer_handshake_as(&cluster, "application", 0, claimed).await,
            Some(ErrorCode::Forbidden),
            "application as replica {claimed}"
        );
    }
    // Replica 1's certificate cannot act as replica 2 ...
    assert_eq!(
        peer_handshake_as(&cluster, "replica-1", 0, 2).await,
        Some(ErrorCode::Forbidden)
    );
    // ... and replica 0's address does not pass for replica 2's (the dialer checks the name).
    let transport = Transport::new(&Security::Tls(credentials(&cluster, "replica-1"))).unwrap();
    let wrong = transport
        .connect(&cluster.addresses[0], &replica_name(CLUSTER, 2))
        .await;
    assert!(
        wrong.is_err(),
        "replica 0 presented a certificate for replica 2"
    );

    // The cluster still works after all that.
    operator
        .create_resource(3, None)
        .await
        .expect("still serving");
}

/// A transport mismatch is named on both ends and is a configuration error, but only when no
/// replica of the list speaks the client's transport: the evidence is a few unauthenticated
/// bytes, and one replica in the other mode must not keep a client from the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_mismatch_is_named_and_stops_a_client_only_when_no_replica_fits() {
    let mut cluster = tls_cluster().await;
    // Plaintext is refused: no session opens, and the client is told why (the replica's
    // TLS alert is recognised) as a configuration error, not an outage.
    let mut plaintext = ClientOptions::new(cluster.addresses.clone(), CLUSTER);
    plaintext.call_timeout = Duration::from_secs(2);
    plaintext.security = Some(Security::Insecure);
    let refused = Client::connect(plaintext)
        .await
        .expect_err("plaintext refused");
    assert!(
        matches!(&refused, ClientError::Invalid { reason } if reason.contains("TLS record") && reason.contains("certificates")),
        "{refused:?}"
    );
    let probed =
        allocdb_server::status::probe(&cluster.addresses[0], CLUSTER, Duration::from_secs(2))
            .await
            .expect_err("a plaintext status probe gets no answer");
    assert!(probed.contains("TLS record"), "{probed}");

    // And the other way round: a client with the certificates, at a plaintext replica.
    let plain_cluster = LocalCluster::start(binary(), 1, CLUSTER, LocalSecurity::Insecure)
        .expect("a plaintext replica starts");
    plain_cluster
        .wait_for_primary(Duration::from_secs(20))
        .await
        .expect("a plaintext primary");
    let mut with_certificates = ClientOptions::new(plain_cluster.addresses.clone(), CLUSTER);
    with_certificates.call_timeout = Duration::from_secs(2);
    with_certificates.security = Some(cluster.client_security(ClientRole::Operator).unwrap());
    let refused = Client::connect(with_certificates)
        .await
        .expect_err("TLS refused by a plaintext replica");
    assert!(
        matches!(&refused, ClientError::Invalid { reason } if reason.contains("not speaking TLS")),
        "{refused:?}"
    );
    let status = Command::new(binary())
        .args(["status", "--certs"])
        .arg(cluster.certs_dir())
        .args(["--addresses", &plain_cluster.addresses[0]])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(2), "{out}");
    assert!(
        out.contains("not speaking TLS") && out.contains(r#""result":"config""#),
        "{out}"
    );

    // One replica's address answering in plaintext (replica 0 restarted with --insecure, so
    // no longer a member: replicas 1 and 2 elect a primary without it) keeps no client from
    // the others: the mismatch is unauthenticated evidence, fatal only when no replica of the
    // list answers.
    cluster.kill(0);
    let mut one_wrong = cluster.addresses.clone();
    one_wrong[0] = plain_cluster.addresses[0].clone();
    let mut options = ClientOptions::new(one_wrong, CLUSTER);
    options.call_timeout = Duration::from_secs(20);
    options.security = Some(cluster.client_security(ClientRole::Operator).unwrap());
    let through_the_others = Client::connect(options)
        .await
        .expect("replicas 1 and 2 serve while position 0 is plaintext");
    through_the_others
        .create_resource(4, None)
        .await
        .expect("a write through replicas 1 and 2");
    drop(plain_cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uses_certificates_and_roles_and_refuses_to_guess() {
    let cluster = tls_cluster().await;
    let certs = cluster.certs_dir().display().to_string();
    let addresses = cluster.addresses.join(",");
    let run = |args: &[&str]| {
        let output = Command::new(binary()).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let client = |role: &str, command: &[&str]| {
        let mut args = vec!["client", "--certs", &certs, "--role", role];
        args.extend(["--addresses", &addresses, "--timeout", "5s"]);
        args.extend(command);
        run(&args)
    };
    let (code, line, _) = client("operator", &["create-resource", "5"]);
    assert_eq!(code, Some(0), "{line}");
    let (code, line, _) = client(
        "application",
        &["reserve", "5", "--holder", "1", "--ttl", "30s"],
    );
    assert_eq!(code, Some(0), "{line}");
    let (code, line, _) = client("application", &["revoke", "1"]);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains(r#""result":"forbidden""#), "{line}");

    let (code, out, _) = run(&["status", "--certs", &certs, "--addresses", &addresses]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(r#""role":"primary""#), "{out}");

    // `status` in plaintext at this TLS cluster: every line names the TLS record, and the
    // command ends as a configuration error (exit 2), not as replicas down (exit 1).
    let (code, out, stderr) = run(&["status", "--insecure", "--addresses", &addresses]);
    assert_eq!(code, Some(2), "{out}{stderr}");
    assert_eq!(out.matches("TLS record").count(), 3, "{out}");
    assert!(out.contains(r#""result":"config""#), "{out}");

    // Plaintext at this TLS cluster: a configuration error (exit 2) that says so.
    let (code, line, _) = run(&[
        "client",
        "--insecure",
        "--addresses",
        &addresses,
        "--timeout",
        "2s",
        "get-resource",
        "5",
    ]);
    assert_eq!(code, Some(2), "{line}");
    assert!(
        line.contains(r#""result":"config""#) && line.contains("TLS record"),
        "{line}"
    );

    // Neither --certs nor --insecure: refused, saying how to make certificates.
    for args in [
        vec!["status", "--addresses", &addresses],
        vec!["client", "--addresses", &addresses, "get-resource", "5"],
        vec![
            "start",
            "--addresses",
            &addresses,
            "--replica",
            "0",
            "/nonexistent",
        ],
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(
            stderr.contains("allocdb certs --cluster"),
            "{args:?}: {stderr}"
        );
    }
}

/// The peer attacks of issue 12, byte for byte what an attacker on the network can send: a
/// handshake claiming replica 0 (with the cluster's real fingerprint), a forged `checkpoint`
/// whose snapshot holds two resources, a vote for view `u64::MAX`, and a `do_view_change` whose
/// commit is beyond its op.
fn forged_peer_messages(cluster: &LocalCluster) -> Vec<u8> {
    let settings =
        allocdb_server::ClusterSettings::read(&cluster.dir().join("replica-0")).expect("settings");
    let handshake = Fingerprint::new(&settings, &cluster.addresses)
        .expect("fingerprint")
        .handshake(0, 3);
    let mut bytes = Vec::new();
    frame::write_frame(&mut bytes, FrameKind::PeerHandshake, CLUSTER, |b| {
        handshake.encode(b);
    });
    let mut forged = Allocator::new(settings.replica.core).expect("core config");
    let creates = [1, 2].map(|resource| Request {
        operation_id: resource,
        command: allocdb_core::Command::CreateResource {
            resource,
            pool: None,
        },
    });
    let mut outcomes = [Outcome::code(ResultCode::Ok); 2];
    forged.apply_batch(1_000, 1, &creates, &mut outcomes);
    let mut snapshot = Vec::new();
    forged.encode_snapshot(&mut snapshot);
    let messages = [
        Message::Checkpoint {
            view: 1,
            info: CheckpointInfo {
                op: 1_000,
                view: 1,
                slot: 1,
                record_checksum: checksum128(b"forged"),
                snapshot_checksum: checksum128(&snapshot),
                snapshot_len: snapshot.len() as u64,
            },
            snapshot,
        },
        Message::StartViewChange { view: u64::MAX },
        Message::DoViewChange {
            view: u64::MAX,
            log_view: 0,
            op: 1,
            checksum: checksum128(b"forged"),
            commit: 9,
            suffix: Vec::new(),
            damaged: false,
        },
    ];
    for message in &messages {
        frame::write_frame(&mut bytes, FrameKind::PeerMessage, CLUSTER, |b| {
            encode_message(message, b);
        });
    }
    bytes
}

/// Sends `attack` on `stream` and reads whatever comes back until the replica closes it.
async fn deliver<S: AsyncReadExt + AsyncWriteExt + Unpin>(mut stream: S, attack: &[u8]) {
    let _ = stream.write_all(attack).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_peer_messages_over_plaintext_or_an_application_certificate_change_nothing() {
    let cluster = tls_cluster().await;
    let operator = client(
        &cluster,
        cluster.client_security(ClientRole::Operator).unwrap(),
    )
    .await
    .expect("operator connects");
    for resource in 1..=20 {
        operator
            .create_resource(resource, None)
            .await
            .expect("creates");
    }
    let mut views = Vec::new();
    for replica in 0..3 {
        views.push(
            cluster
                .status(replica, Duration::from_secs(5))
                .await
                .unwrap()
                .view,
        );
    }

    let attack = forged_peer_messages(&cluster);
    let application = Transport::new(&Security::Tls(credentials(&cluster, "application"))).unwrap();
    for (index, address) in cluster.addresses.iter().enumerate() {
        let plaintext = tokio::net::TcpStream::connect(address).await.unwrap();
        deliver(plaintext, &attack).await;
        let name = replica_name(CLUSTER, u8::try_from(index).unwrap());
        let tls = application
            .connect(address, &name)
            .await
            .expect("any certificate of the CA completes the TLS handshake");
        deliver(tls, &attack).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Nothing changed: every resource is there, no replica left its view or its role.
    for resource in 1..=20 {
        operator
            .get_resource(resource, None)
            .await
            .expect("every resource survives the forged checkpoint");
    }
    for (replica, view) in views.into_iter().enumerate() {
        let status = cluster
            .status(replica, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status.view, view, "replica {replica} changed view");
        assert!(
            status.role.is_normal(),
            "replica {replica} is {:?}",
            status.role
        );
        assert!(
            status.commit >= 20,
            "replica {replica} commit {}",
            status.commit
        );
    }
    operator
        .create_resource(21, None)
        .await
        .expect("still serving");
}

/// With TLS a misordered list fails at the certificate check, before any welcome: the
/// certificate still says which replica answered, so the error is `AddressList` (CLI:
/// `address_list`, exit 2) naming it, at once, not `unavailable` at the deadline; a
/// certificate of the right replica of another cluster id is `wrong cluster`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misordered_list_over_tls_is_an_address_list_error() {
    let cluster = tls_cluster().await;
    let good = &cluster.addresses;
    let swapped = vec![good[1].clone(), good[0].clone(), good[2].clone()];
    let security = cluster.client_security(ClientRole::Operator).unwrap();
    for cluster_id in [CLUSTER, 0] {
        let mut options = ClientOptions::new(swapped.clone(), cluster_id);
        options.security = Some(security.clone());
        let started = std::time::Instant::now();
        match Client::connect(options).await {
            Err(ClientError::AddressList { reason }) => {
                assert!(
                    reason.contains("out of order: position 0") && reason.contains("replica 1"),
                    "{reason}"
                );
            }
            Err(other) => panic!("cluster {cluster_id}: expected AddressList, got {other:?}"),
            Ok(_) => panic!("cluster {cluster_id}: connected with a misordered list"),
        }
        assert!(started.elapsed() < Duration::from_secs(3), "fails fast");
    }
    let mut options = ClientOptions::new(good.clone(), CLUSTER + 1);
    options.security = Some(security);
    match Client::connect(options).await {
        Err(ClientError::Invalid { reason }) => {
            assert!(reason.contains("wrong cluster"), "{reason}");
        }
        other => panic!("expected a wrong-cluster error, got {:?}", other.err()),
    }

    let certs = cluster.certs_dir().display().to_string();
    let list = swapped.join(",");
    let outputs = tokio::task::spawn_blocking(move || {
        let client = Command::new(binary())
            .args(["client", "--certs", &certs, "--role", "operator"])
            .args([
                "--addresses",
                &list,
                "--timeout",
                "10s",
                "get-resource",
                "1",
            ])
            .output()
            .unwrap();
        let status = Command::new(binary())
            .args(["status", "--certs", &certs, "--addresses", &list])
            .output()
            .unwrap();
        [client, status]
    })
    .await
    .unwrap();
    for output in outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(2), "{stdout}");
        let final_line = stdout.lines().last().unwrap_or_default();
        assert!(
            final_line.contains("\"result\":\"address_list\""),
            "{stdout}"
        );
        assert!(final_line.contains("position 0"), "{stdout}");
    }
}
