//! Real `allocdb` processes on loopback: a single replica and a three-replica cluster serve
//! writes and reads through the frame protocol; the cluster survives losing its primary.

mod support;

use std::time::{Duration, Instant};

use allocdb_core::{Bundle, Command, Request, ResultCode};
use allocdb_vsr::frame::Role;
use allocdb_vsr::{ClientOperation, Query, ReadResult, ReplyBody};
use support::{Cluster, PATIENCE, TestClient};

// Test helpers take their (large, `Copy`) arguments by value so call sites read as literals.
#[allow(clippy::large_types_passed_by_value)]
fn write(operation_id: u128, command: Command) -> ClientOperation {
    ClientOperation::Write(Request {
        operation_id,
        command,
    })
}

#[allow(clippy::large_types_passed_by_value)]
fn committed(body: ReplyBody) -> (u64, allocdb_core::Outcome) {
    match body {
        ReplyBody::Committed { op, outcome, .. } => (op, outcome),
        other => panic!("expected a committed write, got {other:?}"),
    }
}

#[tokio::test]
async fn a_single_replica_commits_batches_and_answers_reads() {
    let cluster = Cluster::start("single", 1, &[]);
    assert_eq!(cluster.primary().await, 0);
    let mut client = TestClient::connect(&cluster.addresses[0]).await;
    assert_eq!(
        (client.welcome.role, client.welcome.slot_ms),
        (Role::Primary, 10)
    );
    // One frame, many requests: 100 resources created.
    let creates: Vec<_> = (1..=100_u128)
        .map(|id| {
            write(
                id,
                Command::CreateResource {
                    resource: id,
                    pool: Some(7),
                },
            )
        })
        .collect();
    let replies = client.call(&creates).await;
    assert!(
        replies
            .iter()
            .all(|r| committed(r.body).1.code == ResultCode::Ok)
    );
    let resources = Bundle::from_slice(&[1, 2]).unwrap();
    let reserve = write(
        1000,
        Command::Reserve {
            resources,
            holder: 9,
            ttl_slots: 1000,
        },
    );
    let busy = write(
        1001,
        Command::Reserve {
            resources: Bundle::from_slice(&[2]).unwrap(),
            holder: 8,
            ttl_slots: 1000,
        },
    );
    let replies = client.call(&[reserve, busy]).await;
    let (op, granted) = committed(replies[0].body);
    assert_eq!(granted.code, ResultCode::Ok);
    assert_eq!(committed(replies[1].body).1.code, ResultCode::ResourceBusy);
    // A retry with the same operation id returns the original outcome.
    let retry = client.call(&[reserve]).await;
    let (_, again) = committed(retry[0].body);
    assert!(again.retry && again.lease == granted.lease);
    let read = ClientOperation::Read {
        query: Query::Lease(granted.lease),
        min_op: op,
    };
    let pool = ClientOperation::Read {
        query: Query::Pool(7),
        min_op: op,
    };
    let replies = client.call(&[read, pool]).await;
    match replies[0].body {
        ReplyBody::Read {
            result: ReadResult::Lease(Ok(lease)),
            ..
        } => {
            assert_eq!((lease.holder, lease.resources.as_slice()), (9, &[1, 2][..]));
        }
        other => panic!("lease read: {other:?}"),
    }
    match replies[1].body {
        ReplyBody::Read {
            result: ReadResult::Pool(Ok(stats)),
            ..
        } => assert_eq!((stats.total, stats.free), (100, 98)),
        other => panic!("pool read: {other:?}"),
    }
}

#[tokio::test]
async fn a_single_replica_keeps_acknowledged_writes_across_sigkill() {
    let mut cluster = Cluster::start("single-kill", 1, &[]);
    cluster.primary().await;
    let mut client = TestClient::connect(&cluster.addresses[0]).await;
    let creates: Vec<_> = (1..=20_u128)
        .map(|id| {
            write(
                id,
                Command::CreateResource {
                    resource: id,
                    pool: None,
                },
            )
        })
        .collect();
    let (op, _) = committed(client.call(&creates).await[19].body);
    cluster.kill(0);
    cluster.restart(0);
    cluster.primary().await;
    let mut client = TestClient::connect(&cluster.addresses[0]).await;
    let reads: Vec<_> = (1..=20_u128)
        .map(|id| ClientOperation::Read {
            query: Query::Resource(id),
            min_op: op,
        })
        .collect();
    for reply in client.call(&reads).await {
        assert!(
            matches!(
                reply.body,
                ReplyBody::Read {
                    result: ReadResult::Resource(Ok(_)),
                    ..
                }
            ),
            "{reply:?}"
        );
    }
}

/// Sends `operations` to whichever replica is primary, following `not_primary`.
async fn call_primary(
    cluster: &Cluster,
    operations: &[ClientOperation],
) -> Vec<allocdb_vsr::frame::FrameReply> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let primary = cluster.primary().await;
        let mut client = TestClient::connect(&cluster.addresses[usize::from(primary)]).await;
        let replies = client.call(operations).await;
        if replies
            .iter()
            .all(|r| !matches!(r.body, ReplyBody::NotPrimary { .. } | ReplyBody::Overloaded))
        {
            return replies;
        }
        assert!(
            Instant::now() < deadline,
            "no primary accepted the requests: {replies:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn three_replicas_replicate_and_fail_over() {
    replicate_and_fail_over(Cluster::start("three", 3, &[])).await;
}

/// The same with connections and peer links on worker threads beside the replica's own
/// (`--runtime-threads`; the default runs them all on one thread).
#[tokio::test]
async fn three_replicas_with_runtime_workers_replicate_and_fail_over() {
    let flags = ["--runtime-threads", "3"];
    replicate_and_fail_over(Cluster::start_with("three-workers", 3, &[], &flags)).await;
}

async fn replicate_and_fail_over(mut cluster: Cluster) {
    let first_primary = cluster.primary().await;
    // A backup answers not_primary and names the primary.
    let backup = (first_primary + 1) % 3;
    let mut client = TestClient::connect(&cluster.addresses[usize::from(backup)]).await;
    let create = write(
        1,
        Command::CreateResource {
            resource: 1,
            pool: None,
        },
    );
    match client.call(&[create]).await[0].body {
        ReplyBody::NotPrimary { primary, .. } => assert_eq!(primary, first_primary),
        other => panic!("a backup must redirect: {other:?}"),
    }
    let creates: Vec<_> = (1..=50_u128)
        .map(|id| {
            write(
                id,
                Command::CreateResource {
                    resource: id,
                    pool: None,
                },
            )
        })
        .collect();
    let (op, _) = committed(call_primary(&cluster, &creates).await[49].body);
    // Every replica reaches the commit point.
    let deadline = Instant::now() + PATIENCE;
    while !cluster
        .statuses()
        .await
        .iter()
        .all(|s| s.as_ref().is_ok_and(|s| s.commit >= op))
    {
        assert!(
            Instant::now() < deadline,
            "backups did not catch up: {:?}",
            cluster.statuses().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.kill(first_primary);
    let killed_at = Instant::now();
    let reads: Vec<_> = (1..=50_u128)
        .map(|id| ClientOperation::Read {
            query: Query::Resource(id),
            min_op: op,
        })
        .collect();
    let replies = call_primary(&cluster, &reads).await;
    let failover = killed_at.elapsed();
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    for reply in replies {
        assert!(
            matches!(
                reply.body,
                ReplyBody::Read {
                    result: ReadResult::Resource(Ok(_)),
                    ..
                }
            ),
            "{reply:?}"
        );
    }
    // The killed replica restarts and catches up with the new view.
    let extra = write(
        51,
        Command::CreateResource {
            resource: 51,
            pool: None,
        },
    );
    let (op, _) = committed(call_primary(&cluster, &[extra]).await[0].body);
    cluster.restart(first_primary);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = allocdb_server::status::probe(
            &cluster.addresses[usize::from(first_primary)],
            support::CLUSTER,
            Duration::from_millis(300),
        )
        .await;
        if status
            .as_ref()
            .is_ok_and(|s| s.role == Role::Backup && s.commit >= op)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted replica did not catch up: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
