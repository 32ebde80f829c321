//! The Rust client against real `allocdb` processes on loopback: concurrent clients on hot
//! resources while the primary is killed (`SIGKILL`). A new primary must serve within 2 seconds; the
//! application sees only latency (no error but `resource_busy`); every acknowledged write is
//! in the log afterwards (a retry with its operation id returns the stored outcome and the op
//! where it executed, while its session keeps it; older ones are refused `request_stale`); no
//! resource is ever granted to two live leases; the killed replica restarts and catches up.
//! And a single replica survives SIGKILL without losing an acknowledged write.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allocdb_client::{CallOptions, Client, ClientError, ClientOptions, Committed};
use allocdb_core::ids::OperationKey;
use allocdb_core::{Bundle, Command, LeaseId, ResultCode};
use allocdb_server::audit::{Audit, Grant};
use allocdb_server::local_cluster::{LocalCluster, LocalSecurity};
use allocdb_vsr::frame::Role;
use tokio::time::Instant;

/// Hot resources every worker races for.
const HOT: u128 = 12;
/// The bound on any wait in these tests.
const PATIENCE: Duration = Duration::from_secs(20);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_allocdb"))
}

async fn client(cluster: &LocalCluster) -> Client {
    let mut options = ClientOptions::new(cluster.addresses.clone(), cluster.cluster_id);
    options.security = Some(allocdb_client::Security::Insecure);
    options.call_timeout = PATIENCE;
    options.request_timeout = Duration::from_millis(300);
    Client::connect(options).await.expect("the cluster is up")
}

/// An acknowledged write: enough to ask the cluster for it again.
#[derive(Clone, Copy, Debug)]
struct Acked {
    command: Command,
    committed: Committed,
}

#[derive(Default)]
struct Record {
    acked: Vec<Acked>,
    audit: Audit,
    busy: u64,
    unexpected: Vec<String>,
}

/// Races for hot resources until `stop_at`: reserve, hold briefly, release.
async fn worker(client: Client, index: u32, stop_at: Instant, record: Arc<Mutex<Record>>) {
    let holder = 100 + u128::from(index);
    let ttl_slots = client.slots_for(Duration::from_secs(30));
    let mut state = u64::from(index) * 7 + 3;
    while Instant::now() < stop_at {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let first = u128::from(state >> 33) % HOT;
        let resources: Vec<u128> = if state & 1 == 0 {
            vec![first]
        } else {
            vec![first, (first + 1) % HOT]
        };
        let command = Command::Reserve {
            resources: Bundle::from_slice(&resources).expect("small bundle"),
            holder,
            ttl_slots,
        };
        match client.write(command, CallOptions::default()).await {
            Ok(committed) => {
                let handle = {
                    let mut record = record.lock().unwrap();
                    record.acked.push(Acked { command, committed });
                    record.audit.grant(Grant {
                        lease: committed.lease,
                        holder,
                        resources,
                        released_at: None,
                        release_retried: false,
                    })
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
                release(&client, committed, holder, handle, &record).await;
            }
            Err(ClientError::Rejected {
                code: ResultCode::ResourceBusy,
                ..
            }) => record.lock().unwrap().busy += 1,
            Err(error) => record.lock().unwrap().unexpected.push(error.to_string()),
        }
    }
}

async fn release(
    client: &Client,
    grant: Committed,
    holder: u128,
    handle: usize,
    record: &Mutex<Record>,
) {
    let command = Command::Release {
        lease: grant.lease,
        holder,
        epoch: grant.epoch,
    };
    match client.write(command, CallOptions::default()).await {
        Ok(committed) => {
            let mut record = record.lock().unwrap();
            record.acked.push(Acked { command, committed });
            record
                .audit
                .released(handle, (committed.op, committed.index), committed.retry);
        }
        Err(error) => record.lock().unwrap().unexpected.push(error.to_string()),
    }
}

/// Every acknowledged write is in the log: resending it with its operation id returns the
/// stored outcome (`retry`), unchanged, with the op and index where it first executed — or,
/// for a session key older than the answers its session keeps (`session_requests_max`), a
/// definite `request_stale`: refused, never executed again.
async fn assert_all_acked_present(client: &Client, acked: &[Acked]) {
    let kept = u64::from(allocdb_server::settings::default_core_config().session_requests_max);
    let mut highest = std::collections::BTreeMap::new();
    for entry in acked {
        if let OperationKey::Session { session, request } =
            OperationKey::of(entry.committed.operation_id)
        {
            let max = highest.entry(session).or_insert(request);
            *max = (*max).max(request);
        }
    }
    let mut checks = Vec::new();
    for entry in acked {
        let client = client.clone();
        let entry = *entry;
        checks.push(tokio::spawn(async move {
            let call = CallOptions {
                operation_id: Some(entry.committed.operation_id),
                timeout: None,
            };
            let again = client.write(entry.command, call).await;
            (entry, again)
        }));
    }
    let mut stale = 0;
    for check in checks {
        let (entry, again) = check.await.unwrap();
        let forgotten = match OperationKey::of(entry.committed.operation_id) {
            OperationKey::Session { session, request } => request + kept <= highest[&session],
            _ => false,
        };
        if forgotten {
            assert!(
                matches!(
                    again,
                    Err(ClientError::Rejected {
                        code: ResultCode::RequestStale,
                        ..
                    })
                ),
                "{entry:?} is older than its session keeps: {again:?}"
            );
            stale += 1;
            continue;
        }
        let again = again.unwrap_or_else(|error| {
            panic!("acknowledged write {entry:?} is not answered again: {error}")
        });
        assert!(
            again.retry,
            "acknowledged write {entry:?} was executed anew"
        );
        assert_eq!(
            (
                again.op,
                again.index,
                again.lease,
                again.epoch,
                again.deadline_slot
            ),
            (
                entry.committed.op,
                entry.committed.index,
                entry.committed.lease,
                entry.committed.epoch,
                entry.committed.deadline_slot
            ),
            "acknowledged write {entry:?} changed its outcome or position"
        );
    }
    eprintln!(
        "{} acknowledged writes resent: {} answered again, {stale} refused as stale",
        acked.len(),
        acked.len() - stale
    );
}

async fn create_hot_resources(client: &Client) {
    for resource in 0..HOT {
        client.create_resource(resource, None).await.unwrap();
    }
}

/// Probes with small writes until one commits; how long that took.
async fn time_until_served(client: &Client, from: Instant) -> Duration {
    let mut probe: u128 = 1_000_000;
    loop {
        probe += 1;
        let call = CallOptions {
            operation_id: None,
            timeout: Some(Duration::from_millis(300)),
        };
        let create = Command::CreateResource {
            resource: probe,
            pool: None,
        };
        if client.write(create, call).await.is_ok() {
            return from.elapsed();
        }
        assert!(
            from.elapsed() < PATIENCE,
            "no primary serves after the kill"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_its_primary_without_losing_or_double_granting_anything() {
    let mut cluster =
        LocalCluster::start(binary(), 3, 0xFA11, LocalSecurity::Insecure).expect("cluster starts");
    let primary = cluster.wait_for_primary(PATIENCE).await.unwrap();
    let setup = client(&cluster).await;
    create_hot_resources(&setup).await;

    let record = Arc::new(Mutex::new(Record::default()));
    let stop_at = Instant::now() + Duration::from_secs(3);
    let workers: Vec<_> = (0..32)
        .map(|index| {
            let record = Arc::clone(&record);
            let setup = setup.clone();
            tokio::spawn(async move { worker(setup, index, stop_at, record).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked_before_kill = record.lock().unwrap().acked.len();
    cluster.kill(primary);
    let killed_at = Instant::now();
    let probe = client(&cluster).await;
    let served_after = time_until_served(&probe, killed_at).await;
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(
        served_after < Duration::from_secs(2),
        "a new primary served {served_after:?} after the kill"
    );

    let record = std::mem::take(&mut *record.lock().unwrap());
    eprintln!(
        "failover: served {served_after:?} after the kill; {} writes acknowledged ({acked_before_kill} before the kill), {} busy, view now {}",
        record.acked.len(),
        record.busy,
        setup.stats().view_max
    );
    assert!(
        record.unexpected.is_empty(),
        "the application saw more than latency: {:?}",
        record.unexpected
    );
    assert!(
        acked_before_kill > 0,
        "writes were acknowledged before the kill"
    );
    assert!(
        record.acked.len() > acked_before_kill,
        "writes were acknowledged after the kill"
    );
    assert!(record.busy > 0, "the workload contended");
    assert!(
        setup.stats().view_max > 0,
        "the client followed a view change"
    );

    assert_all_acked_present(&setup, &record.acked).await;
    let findings = record.audit.check(&setup).await.unwrap();
    assert_eq!(findings.violations, Vec::<String>::new());
    assert!(findings.leases_checked > 10);

    // The killed replica restarts from its disk and catches up with the cluster.
    cluster.restart(primary).unwrap();
    let new_primary = cluster.wait_for_primary(PATIENCE).await.unwrap();
    let target = cluster
        .status(new_primary, Duration::from_secs(1))
        .await
        .unwrap()
        .commit;
    let restarted = Instant::now();
    loop {
        if let Ok(status) = cluster.status(primary, Duration::from_millis(300)).await {
            if status.commit >= target && status.role == Role::Backup {
                break;
            }
        }
        assert!(
            restarted.elapsed() < PATIENCE,
            "replica {primary} did not catch up to commit {target}:\n{}",
            cluster.log_tail(primary)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and the cluster keeps serving with it back.
    setup.create_resource(5_000_000, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_survives_sigkill_without_losing_acknowledged_writes() {
    let mut cluster =
        LocalCluster::start(binary(), 1, 0x5161, LocalSecurity::Insecure).expect("replica starts");
    cluster.wait_for_primary(PATIENCE).await.unwrap();
    let setup = client(&cluster).await;
    create_hot_resources(&setup).await;
    let record = Arc::new(Mutex::new(Record::default()));
    // The workers outlive the kill: their in-flight calls retry into the restarted replica.
    let stop_at = Instant::now() + Duration::from_millis(1_500);
    let workers: Vec<_> = (0..16)
        .map(|index| {
            let record = Arc::clone(&record);
            let setup = setup.clone();
            tokio::spawn(async move { worker(setup, index, stop_at, record).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let acked_at_kill = record.lock().unwrap().acked.len();
    cluster.kill(0);
    cluster.restart(0).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let record = std::mem::take(&mut *record.lock().unwrap());
    eprintln!(
        "single replica: {} writes acknowledged ({acked_at_kill} before the kill), {} busy",
        record.acked.len(),
        record.busy
    );
    assert!(acked_at_kill > 0);
    assert!(record.unexpected.is_empty(), "{:?}", record.unexpected);
    assert_all_acked_present(&setup, &record.acked).await;
    let findings = record.audit.check(&setup).await.unwrap();
    assert_eq!(findings.violations, Vec::<String>::new());
    // Resources created before the crash are still there.
    for resource in 0..HOT {
        setup.get_resource(resource, None).await.unwrap();
    }
    let lease = record.acked[0].committed.lease;
    assert_ne!(lease, LeaseId(0));
    setup.get_lease(lease, None).await.unwrap();
}
