//! The client against an in-process fake cluster: discovery, retries with the same operation
//! id, honest indefinite outcomes, coalescing and the in-flight bound.

mod support;

use std::time::Duration;

use allocdb_client::{CallOptions, Client, ClientError, ClientOptions};
use allocdb_core::ids::OperationKey;
use allocdb_core::{Command, LeaseState, ResourceState, ResultCode};
use support::{Behaviour, CLUSTER_ID, FakeCluster, SLOT_MS};

fn options(cluster: &FakeCluster) -> ClientOptions {
    let mut options = ClientOptions::new(cluster.addresses.clone(), CLUSTER_ID);
    options.security = Some(allocdb_client::Security::Insecure);
    options.request_timeout = Duration::from_millis(150);
    options.connect_timeout = Duration::from_millis(300);
    options.call_timeout = Duration::from_secs(5);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_round_trip() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    assert_eq!(client.slot_ms(), SLOT_MS);
    assert_eq!(client.cluster_id(), CLUSTER_ID);
    assert_eq!(client.slots_for(Duration::from_millis(25)), 3);

    client.create_resource(1, None).await.unwrap();
    for seat in 10..14 {
        client.create_resource(seat, Some(5)).await.unwrap();
    }
    let grant = client.reserve(&[1], 42, 100).await.unwrap();
    assert_eq!(grant.epoch, 1);
    assert!(!grant.retry);
    let busy = client.reserve(&[1], 43, 100).await.unwrap_err();
    assert!(matches!(
        busy,
        ClientError::Rejected {
            code: ResultCode::ResourceBusy,
            ..
        }
    ));
    assert!(busy.is_definite());
    client
        .activate(grant.lease, 42, grant.epoch, None)
        .await
        .unwrap();
    let renewed = client
        .renew(grant.lease, 42, grant.epoch, 50)
        .await
        .unwrap();
    assert_eq!(renewed.lease, grant.lease);

    let resource = client.get_resource(1, Some(renewed.op)).await.unwrap();
    assert_eq!(resource.value.state, ResourceState::Active);
    assert_eq!(resource.value.lease, Some(grant.lease));
    let lease = client.get_lease(grant.lease, None).await.unwrap();
    assert_eq!(lease.value.holder, 42);
    assert_eq!(lease.value.resources.as_slice(), &[1]);

    let pooled = client.reserve_any(5, 3, 9, 100).await.unwrap();
    let stats = client.pool_stats(5, None).await.unwrap();
    assert_eq!((stats.value.total, stats.value.free), (4, 1));
    let released = client.release(pooled.lease, 9, pooled.epoch).await.unwrap();
    assert_eq!(released.epoch, 2);
    assert_eq!(
        client
            .get_lease(pooled.lease, None)
            .await
            .unwrap()
            .value
            .state,
        LeaseState::Released
    );
    client.revoke(grant.lease).await.unwrap();
    client.reclaim(grant.lease).await.unwrap();
    assert_eq!(
        client.get_resource(1, None).await.unwrap().value.state,
        ResourceState::Available
    );
    let missing = client.get_resource(999, None).await.unwrap_err();
    assert_eq!(missing.code(), Some(ResultCode::ResourceNotFound));
    // Refused locally, never sent.
    let too_big: Vec<u128> = (0..17).collect();
    assert!(matches!(
        client.reserve(&too_big, 1, 1).await,
        Err(ClientError::Invalid { .. })
    ));
    let expire = Command::Expire {
        lease: grant.lease,
        deadline_slot: 1,
    };
    assert!(matches!(
        client.write(expire, CallOptions::default()).await,
        Err(ClientError::Invalid { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_operation_id_is_deduplicated() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    let call = CallOptions {
        operation_id: Some(0xFEED),
        timeout: None,
    };
    let create = Command::CreateResource {
        resource: 3,
        pool: None,
    };
    let first = client.write(create, call).await.unwrap();
    let again = client.write(create, call).await.unwrap();
    assert!(!first.retry);
    assert!(again.retry, "the stored outcome comes back");
    assert_eq!((again.lease, again.epoch), (first.lease, first.epoch));
    let other = Command::CreateResource {
        resource: 4,
        pool: None,
    };
    let conflict = client.write(other, call).await.unwrap_err();
    assert_eq!(conflict.code(), Some(ResultCode::OperationConflict));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_coalesced_into_frames() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    cluster.state().answer_delay = Duration::from_millis(5);
    let client = Client::connect(options(&cluster)).await.unwrap();
    let calls = 300u128;
    let mut tasks = Vec::new();
    for resource in 0..calls {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.create_resource(resource, None).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let state = cluster.state();
    let requests: usize = state.frames.iter().map(|(_, n)| n).sum();
    let largest = state.frames.iter().map(|(_, n)| *n).max().unwrap();
    // 300 calls and the session's registration.
    assert_eq!(requests, 301);
    assert!(
        state.frames.len() < 100,
        "300 concurrent calls took {} frames",
        state.frames.len()
    );
    assert!(largest > 10, "largest frame held {largest} requests");
    // The fake's welcome keeps 64 answers per session: never more numbered writes unanswered.
    assert!(
        state.in_flight_peak <= 64,
        "peak in flight {} beyond the session window",
        state.in_flight_peak
    );
    let counters = client.stats();
    assert_eq!(counters.requests_sent, 301);
    assert_eq!(counters.frames_sent, state.frames.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_are_bounded() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    cluster.state().answer_delay = Duration::from_millis(2);
    let mut options = options(&cluster);
    options.in_flight_max = 4;
    let client = Client::connect(options).await.unwrap();
    let mut tasks = Vec::new();
    for resource in 0..64u128 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.create_resource(resource, None).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let state = cluster.state();
    // 64 calls and the session's registration (which holds no caller's slot).
    assert_eq!(state.frames.iter().map(|(_, n)| n).sum::<usize>(), 65);
    assert!(
        state.in_flight_peak <= 4,
        "peak in flight {}",
        state.in_flight_peak
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_not_primary_to_the_newest_view() {
    let cluster = FakeCluster::start(&[
        Behaviour::NotPrimary {
            view: 5,
            primary: 2,
        },
        Behaviour::Silent,
        Behaviour::Primary,
    ])
    .await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    let grant = client.create_resource(8, None).await.unwrap();
    assert!(!grant.retry);
    assert_eq!(client.stats().view_max, 5);
    let state = cluster.state();
    assert!(
        state.writes_seen.iter().all(|(replica, _)| *replica == 2),
        "went straight to the primary: {:?}",
        state.writes_seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_replica_is_left_after_the_request_timeout() {
    let cluster = FakeCluster::start(&[Behaviour::Primary, Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    // Registers the session at replica 0, which then goes silent.
    client.create_resource(7, None).await.unwrap();
    cluster.set(0, Behaviour::Silent);
    let seen_before = cluster.state().writes_seen.len();
    let started = std::time::Instant::now();
    let grant = client.create_resource(8, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(!grant.retry, "the silent replica never executed it");
    let state = cluster.state();
    let ids: Vec<_> = state.writes_seen[seen_before..]
        .iter()
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(ids.len(), 2, "sent to replica 0, then resent to 1");
    assert_eq!(ids[0], ids[1], "the resend carries the same operation id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lost_in_a_crash_is_retried_with_the_same_id() {
    let cluster = FakeCluster::start(&[Behaviour::Primary, Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    // Registers the session at replica 0, which then crashes after executing the next frame.
    client.create_resource(7, None).await.unwrap();
    cluster.set(0, Behaviour::ExecuteThenDrop);
    let grant = client.create_resource(8, None).await.unwrap();
    assert!(
        grant.retry,
        "replica 1 returned the outcome replica 0 executed"
    );
    // The application saw one success; the resource exists exactly once.
    let again = client.create_resource(8, None).await.unwrap_err();
    assert_eq!(again.code(), Some(ResultCode::AlreadyExists));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_without_an_answer_is_indefinite() {
    let cluster = FakeCluster::start(&[Behaviour::Primary, Behaviour::Primary]).await;
    let mut options = options(&cluster);
    options.call_timeout = Duration::from_millis(500);
    let client = Client::connect(options).await.unwrap();
    // Register the session first: a write whose session was never registered is never sent
    // (see `a_write_without_a_session_is_never_sent`).
    client.create_resource(0, None).await.unwrap();
    cluster.set(0, Behaviour::Silent);
    cluster.set(1, Behaviour::Silent);
    let error = client.create_resource(1, None).await.unwrap_err();
    let ClientError::Indefinite { operation_id } = error else {
        panic!("expected indefinite, got {error:?}");
    };
    assert!(!error.is_definite());
    assert!(
        cluster
            .state()
            .writes_seen
            .iter()
            .any(|(_, id)| *id == operation_id)
    );
    assert_eq!(
        client.get_resource(1, None).await.unwrap_err(),
        ClientError::Timeout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_every_replica_refused_is_definitely_unavailable() {
    let cluster = FakeCluster::start(&[Behaviour::Overloaded]).await;
    let mut options = options(&cluster);
    options.call_timeout = Duration::from_millis(300);
    let client = Client::connect(options).await.unwrap();
    let error = client.create_resource(1, None).await.unwrap_err();
    assert!(
        matches!(error, ClientError::Unavailable { .. }),
        "got {error:?}"
    );
    let state = cluster.state();
    assert!(
        state.writes_seen.len() > 2,
        "overloaded answers were retried"
    );
    let first = state.writes_seen[0].1;
    assert!(state.writes_seen.iter().all(|(_, id)| *id == first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_are_reported() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    let mut wrong = options(&cluster);
    wrong.cluster_id = CLUSTER_ID + 1;
    assert!(matches!(
        Client::connect(wrong).await,
        Err(ClientError::Invalid { .. })
    ));
    // Nobody listens on a port we just closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut options = ClientOptions::new(vec![address.clone()], 0);
    options.call_timeout = Duration::from_millis(200);
    options.security = Some(allocdb_client::Security::Insecure);
    assert!(matches!(
        Client::connect(options).await,
        Err(ClientError::Unavailable { .. })
    ));
    let mut none = ClientOptions::new(Vec::new(), 0);
    none.security = Some(allocdb_client::Security::Insecure);
    assert!(matches!(
        Client::connect(none).await,
        Err(ClientError::Invalid { .. })
    ));
    // Neither TLS credentials nor an explicit `Insecure`: refused before connecting.
    let unset = ClientOptions::new(vec![address], 0);
    match Client::connect(unset).await {
        Err(ClientError::Invalid { reason }) => assert!(reason.contains("Security::Insecure")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_mid_stream_is_invisible_except_for_latency() {
    let cluster = FakeCluster::start(&[Behaviour::Primary, Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    let mut tasks = Vec::new();
    for resource in 0..200u128 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::try_from(resource).unwrap())).await;
            client.create_resource(resource, None).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    cluster.set(
        0,
        Behaviour::NotPrimary {
            view: 1,
            primary: 1,
        },
    );
    for task in tasks {
        let grant = task.await.unwrap().unwrap();
        assert!(!grant.retry);
    }
    let state = cluster.state();
    assert!(state.writes_seen.iter().any(|(replica, _)| *replica == 1));
    assert_eq!(client.stats().view_max, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_numbered_on_one_session_in_call_order() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    assert_eq!(
        client.stats().registrations,
        0,
        "no session before a write needs one"
    );
    let mut numbers = Vec::new();
    for resource in 1..=3 {
        let committed = client.create_resource(resource, None).await.unwrap();
        let OperationKey::Session { session, request } = OperationKey::of(committed.operation_id)
        else {
            panic!("{committed:?} carries no session key");
        };
        assert_eq!(Some(session), client.stats().session_id);
        numbers.push(request);
    }
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(client.stats().registrations, 1);
    // The key was issued after an op the client saw.
    let key = client.new_operation_id().await.unwrap();
    let OperationKey::Application {
        issued_after_op, ..
    } = OperationKey::of(key)
    else {
        panic!("{key} is not an application key");
    };
    assert_eq!(issued_after_op, client.stats().op_max_seen);
    assert!(issued_after_op > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_as_evicted_is_numbered_on_a_new_session() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    client.create_resource(1, None).await.unwrap();
    let first = client.stats().session_id.unwrap();
    cluster.state().evicted.push(first);
    let committed = client.create_resource(2, None).await.unwrap();
    let stats = client.stats();
    assert_eq!((stats.registrations, stats.evictions), (2, 1), "{stats:?}");
    let second = stats.session_id.unwrap();
    assert_ne!(second, first);
    assert_eq!(
        OperationKey::of(committed.operation_id),
        OperationKey::Session {
            session: second,
            request: 1
        }
    );
    // Executed once: on the new session only.
    assert!(client.get_resource(2, None).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_doubt_when_its_session_is_evicted_is_indefinite() {
    let cluster = FakeCluster::start(&[Behaviour::Primary, Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    client.create_resource(1, None).await.unwrap();
    // The primary executes the next write and drops the connection (the write is in doubt);
    // its session is evicted before the resend reaches the next primary.
    let serving = cluster.state().frames.last().unwrap().0;
    cluster.set(serving, Behaviour::ExecuteThenDrop);
    cluster.state().evict_on_drop = true;
    let result = client.create_resource(2, None).await;
    let Err(ClientError::Indefinite { operation_id }) = result else {
        panic!("expected indefinite, got {result:?}");
    };
    assert!(matches!(
        OperationKey::of(operation_id),
        OperationKey::Session { request: 2, .. }
    ));
    // It did execute once; the client registers again for its next write.
    assert!(client.get_resource(2, None).await.is_ok());
    client.create_resource(3, None).await.unwrap();
    assert_eq!(client.stats().registrations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_session_is_never_sent() {
    let cluster = FakeCluster::start(&[Behaviour::Silent]).await;
    let mut options = options(&cluster);
    options.call_timeout = Duration::from_millis(400);
    let client = Client::connect(options).await.unwrap();
    // The registration is never answered, so the write never gets a key and never leaves.
    let error = client.create_resource(1, None).await.unwrap_err();
    assert!(
        matches!(error, ClientError::Unavailable { .. }),
        "{error:?}"
    );
    assert!(error.is_definite());
    let seen = cluster.state().writes_seen.clone();
    assert!(
        seen.iter().all(|(_, id)| *id == 0),
        "only register_session: {seen:?}"
    );
    assert_eq!(client.stats().registrations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_application_key_is_issued_after_the_sessions_registration() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    let key = client.new_operation_id().await.unwrap();
    let stats = client.stats();
    assert_eq!(stats.registrations, 1, "{stats:?}");
    assert!(matches!(
        OperationKey::of(key),
        OperationKey::Application { issued_after_op, .. } if issued_after_op > 0
    ));
    // The key works, and a repeat is answered with the stored outcome.
    let call = CallOptions {
        operation_id: Some(key),
        timeout: None,
    };
    let first = client
        .write(
            Command::CreateResource {
                resource: 3,
                pool: None,
            },
            call,
        )
        .await
        .unwrap();
    let again = client
        .write(
            Command::CreateResource {
                resource: 3,
                pool: None,
            },
            call,
        )
        .await
        .unwrap();
    assert!(again.retry && !first.retry);
    assert_eq!((again.op, again.index), (first.op, first.index));
    assert_ne!(client.new_operation_id().await.unwrap(), key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_write_refused_as_stale_is_indefinite() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    let client = Client::connect(options(&cluster)).await.unwrap();
    client.create_resource(1, None).await.unwrap();
    let session = client.stats().session_id.unwrap();
    // The cluster says this write's answer is gone: it may have run once, and never will again.
    cluster.state().stale.push(session);
    let error = client.create_resource(2, None).await.unwrap_err();
    let ClientError::Indefinite { operation_id } = error else {
        panic!("expected indefinite, got {error:?}");
    };
    assert_eq!(
        OperationKey::of(operation_id),
        OperationKey::Session {
            session,
            request: 2
        }
    );
    // The session itself is still used: only that write is in doubt.
    cluster.state().stale.clear();
    let next = client.create_resource(3, None).await.unwrap();
    assert_eq!(
        OperationKey::of(next.operation_id),
        OperationKey::Session {
            session,
            request: 3
        }
    );
}

/// Calls that end while no replica holds a session leave nothing behind in the client, however
/// many there are: the driver asserts on every finished call that what it keeps per call is
/// bounded by the calls still pending (this test made it fail before the bound existed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_end_while_no_replica_answers_leave_nothing_behind() {
    let cluster = FakeCluster::start(&[Behaviour::Primary]).await;
    let mut options = options(&cluster);
    options.in_flight_max = 8;
    options.call_timeout = Duration::from_millis(30);
    let client = Client::connect(options).await.unwrap();
    client.create_resource(1, None).await.unwrap();
    cluster.set(0, Behaviour::HangUp);
    for _ in 0..60 {
        let mut wave = Vec::new();
        for _ in 0..8 {
            let client = client.clone();
            wave.push(tokio::spawn(
                async move { client.get_resource(1, None).await },
            ));
        }
        for call in wave {
            let error = call.await.unwrap().unwrap_err();
            assert!(
                matches!(
                    error,
                    ClientError::Unavailable { .. } | ClientError::Timeout
                ),
                "{error:?}"
            );
        }
    }
    cluster.set(0, Behaviour::Primary);
    let call = CallOptions {
        timeout: Some(Duration::from_secs(5)),
        ..CallOptions::default()
    };
    client.get_resource_with(1, None, call).await.unwrap();
}
