//! Exactly-once with the real server: client sessions and application keys.
//!
//! * A session evicted to make room for others is told so (`session_evicted`); the library
//!   numbers its next write on a new session transparently, and a raw write with the evicted
//!   session's key is refused, never executed.
//! * An application key whose record has retired is refused (`operation_expired`), and the
//!   write it names is not executed a second time.
//! * A retry after a failover, under a session key or an application key, returns the
//!   original outcome and the op and index where the write executed.

use std::path::Path;
use std::time::Duration;

use allocdb_client::{CallOptions, Client, ClientError, ClientOptions};
use allocdb_core::ids::OperationKey;
use allocdb_core::{Command, ResultCode};
use allocdb_server::local_cluster::{LocalCluster, LocalSecurity};

/// The bound on any wait in these tests.
const PATIENCE: Duration = Duration::from_secs(20);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_allocdb"))
}

async fn client(cluster: &LocalCluster) -> Client {
    let mut options = ClientOptions::new(cluster.addresses.clone(), cluster.cluster_id);
    options.security = Some(allocdb_client::Security::Insecure);
    options.call_timeout = PATIENCE;
    Client::connect(options).await.expect("the cluster is up")
}

fn create(resource: u128) -> Command {
    Command::CreateResource {
        resource,
        pool: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_session_is_told_so_and_the_client_registers_again() {
    let cluster = LocalCluster::start_with(
        binary(),
        1,
        0x5E55,
        &["--clients-max", "2"],
        LocalSecurity::Insecure,
    )
    .expect("cluster starts");
    cluster.wait_for_primary(PATIENCE).await.unwrap();
    let first = client(&cluster).await;
    let written = first.create_resource(1, None).await.unwrap();
    let stats = first.stats();
    assert_eq!(stats.registrations, 1);
    let evicted_session = stats.session_id.expect("a session after a numbered write");
    assert!(matches!(
        OperationKey::of(written.operation_id),
        OperationKey::Session { session, request: 1 } if session == evicted_session
    ));

    // Two more clients register: the first client's session is the least recently used.
    let second = client(&cluster).await;
    let third = client(&cluster).await;
    second.create_resource(2, None).await.unwrap();
    third.create_resource(3, None).await.unwrap();

    // The first client's next write is answered `session_evicted`, which the library handles
    // by registering again and numbering the write on the new session.
    let again = first.create_resource(4, None).await.unwrap();
    let stats = first.stats();
    assert_eq!(stats.registrations, 2, "{stats:?}");
    assert_eq!(stats.evictions, 1, "{stats:?}");
    let renewed = stats.session_id.expect("registered again");
    assert_ne!(renewed, evicted_session);
    assert!(matches!(
        OperationKey::of(again.operation_id),
        OperationKey::Session { session, request: 1 } if session == renewed
    ));
    assert!(!again.retry);

    // A raw write with a key of the evicted session is refused and not executed.
    let stale_key = OperationKey::Session {
        session: evicted_session,
        request: 2,
    }
    .id();
    let call = CallOptions {
        operation_id: Some(stale_key),
        timeout: None,
    };
    let refused = second.write(create(5), call).await;
    assert!(
        matches!(
            refused,
            Err(ClientError::Rejected {
                code: ResultCode::SessionEvicted,
                ..
            })
        ),
        "{refused:?}"
    );
    let missing = second.get_resource(5, None).await;
    assert!(
        matches!(
            missing,
            Err(ClientError::Rejected {
                code: ResultCode::ResourceNotFound,
                ..
            })
        ),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_retry_after_its_window_is_refused_and_not_executed_twice() {
    let cluster = LocalCluster::start_with(
        binary(),
        1,
        0x0E17,
        &["--operations-max", "2"],
        LocalSecurity::Insecure,
    )
    .expect("cluster starts");
    cluster.wait_for_primary(PATIENCE).await.unwrap();
    let client = client(&cluster).await;
    // A reservation is the kind of write that must never run twice: a second run would
    // take a second lease.
    client.create_resource(10, None).await.unwrap();
    let key = client.new_operation_id().await.unwrap();
    let ttl_slots = client.slots_for(Duration::from_secs(600));
    let reserve = Command::Reserve {
        resources: allocdb_core::Bundle::from_slice(&[10]).unwrap(),
        holder: 7,
        ttl_slots,
    };
    let keyed = |id| CallOptions {
        operation_id: Some(id),
        timeout: None,
    };
    let first = client.write(reserve, keyed(key)).await.unwrap();
    // While the record is kept, a retry returns it, with the op where it executed.
    let retried = client.write(reserve, keyed(key)).await.unwrap();
    assert!(retried.retry);
    assert_eq!((retried.op, retried.index), (first.op, first.index));
    assert_eq!(retried.lease, first.lease);

    // Three more keyed writes push the first key's record out of a two-row table.
    for resource in 20..23 {
        let other = client.new_operation_id().await.unwrap();
        client.write(create(resource), keyed(other)).await.unwrap();
    }
    let expired = client.write(reserve, keyed(key)).await;
    assert!(
        matches!(
            expired,
            Err(ClientError::Rejected {
                code: ResultCode::OperationExpired,
                ..
            })
        ),
        "{expired:?}"
    );
    // Not executed twice: the resource is still held by the first lease.
    let seat = client.get_resource(10, None).await.unwrap();
    assert_eq!(seat.value.lease, Some(first.lease));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_failover_returns_the_original_outcome_at_its_op() {
    let mut cluster =
        LocalCluster::start(binary(), 3, 0xFA1F, LocalSecurity::Insecure).expect("cluster starts");
    let primary = cluster.wait_for_primary(PATIENCE).await.unwrap();
    let client = client(&cluster).await;
    client.create_resource(30, None).await.unwrap();
    client.create_resource(31, None).await.unwrap();
    let ttl_slots = client.slots_for(Duration::from_secs(600));
    let reserve = |resource: u128| Command::Reserve {
        resources: allocdb_core::Bundle::from_slice(&[resource]).unwrap(),
        holder: 9,
        ttl_slots,
    };
    // One write under a session key, one under an application key.
    let by_session = client
        .write(reserve(30), CallOptions::default())
        .await
        .unwrap();
    let key = client.new_operation_id().await.unwrap();
    let keyed = CallOptions {
        operation_id: Some(key),
        timeout: None,
    };
    let by_key = client.write(reserve(31), keyed).await.unwrap();
    // Later writes move the log on, so a retry's batch is not the original's.
    for resource in 40..45 {
        client.create_resource(resource, None).await.unwrap();
    }

    cluster.kill(primary);
    for (first, command) in [(by_session, reserve(30)), (by_key, reserve(31))] {
        let call = CallOptions {
            operation_id: Some(first.operation_id),
            timeout: None,
        };
        let again = client.write(command, call).await.unwrap();
        assert!(again.retry, "{first:?} was executed anew: {again:?}");
        assert_eq!(
            (
                again.op,
                again.index,
                again.lease,
                again.epoch,
                again.deadline_slot
            ),
            (
                first.op,
                first.index,
                first.lease,
                first.epoch,
                first.deadline_slot
            ),
            "the retry must report the original outcome at the op where it executed"
        );
    }
    assert!(
        client.stats().view_max > 0,
        "the retries followed a view change"
    );
    let seat = client.get_resource(30, None).await.unwrap();
    assert_eq!(seat.value.lease, Some(by_session.lease));
}
