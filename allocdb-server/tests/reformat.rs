//! Real `allocdb` processes on loopback, formatted the way the deployment recipes do it
//! (`format --if-empty` before every start): a lost disk, formatted again by the recipe, never
//! costs an acknowledged write (issue 10), and a brand-new cluster of freshly formatted
//! replicas starts once every replica has been started (genesis) — and not before.
//!
//! The rule these tests hold the cluster to: a freshly formatted replica cannot tell whether it
//! is part of a new cluster or replaces a lost disk, so it never votes or acknowledges until it
//! has caught up from a view that a majority of intact replicas started. A brand-new cluster has
//! no intact replicas, so it starts by a genesis step that needs every replica.

mod support;

use std::time::{Duration, Instant};

use allocdb_client::{CallOptions, Client, ClientError, ClientOptions, Committed};
use allocdb_core::{Command, LeaseState, ResourceState};
use allocdb_vsr::frame::{Role, StatusReply};
use support::{CLUSTER, Cluster, RECIPE_FORMAT_FLAGS};

/// The bound on every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(20);
/// Reservations acknowledged while backup C is down (stored on P and B only).
const RESERVATIONS: u128 = 40;
/// The holder of every reservation.
const HOLDER: u128 = 7;

async fn client(cluster: &Cluster) -> Client {
    let mut options = ClientOptions::new(cluster.addresses.clone(), CLUSTER);
    options.security = Some(allocdb_client::Security::Insecure);
    options.call_timeout = PATIENCE;
    options.request_timeout = Duration::from_millis(300);
    Client::connect(options)
        .await
        .expect("some replica answers")
}

async fn status(cluster: &Cluster, index: u8) -> Result<StatusReply, String> {
    allocdb_server::status::probe(
        &cluster.addresses[usize::from(index)],
        CLUSTER,
        Duration::from_millis(500),
    )
    .await
}

/// Every replica's status, for failure messages.
async fn statuses(cluster: &Cluster) -> String {
    let mut out = String::new();
    for (index, answer) in cluster.statuses().await.iter().enumerate() {
        out.push_str(&allocdb_server::status::json_line(
            index,
            &cluster.addresses[index],
            answer,
        ));
        out.push('\n');
    }
    out
}

/// Waits until replica `index` reports `role` with `applied >= op`.
async fn wait_until_applied(cluster: &Cluster, index: u8, op: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = status(cluster, index).await;
        if answer
            .as_ref()
            .is_ok_and(|s| s.role == Role::Backup && s.applied >= op)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {index} did not apply op {op} within {PATIENCE:?}:\n{}",
            statuses(cluster).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until one replica is primary and the other two are its backups, every one of them
/// in its view with `op` applied; returns the primary.
async fn settled(cluster: &Cluster, op: u64) -> u8 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut answers = Vec::new();
        for index in 0..3 {
            answers.push(status(cluster, index).await.ok());
        }
        let primaries: Vec<u8> = (0..3)
            .filter(|&i| {
                answers[usize::from(i)]
                    .as_ref()
                    .is_some_and(|s| s.role == Role::Primary)
            })
            .collect();
        if let [primary] = primaries[..] {
            let view = answers[usize::from(primary)].as_ref().map(|s| s.view);
            let agreed = answers.iter().enumerate().all(|(index, answer)| {
                answer.as_ref().is_some_and(|s| {
                    let role_ok = if index == usize::from(primary) {
                        s.role == Role::Primary
                    } else {
                        s.role == Role::Backup
                    };
                    role_ok && Some(s.view) == view && s.applied >= op
                })
            });
            if agreed {
                return primary;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no settled primary with op {op} applied everywhere within {PATIENCE:?}:\n{}",
            statuses(cluster).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh resource id for a probe write.
fn probe_command(resource: u128) -> Command {
    Command::CreateResource {
        resource,
        pool: None,
    }
}

/// Commits one probe write within `PATIENCE` (each attempt bounded); the committed write, or
/// `None` when nothing was acknowledged in time.
async fn write_within(client: &Client, resource: u128, patience: Duration) -> Option<Committed> {
    let deadline = Instant::now() + patience;
    let call = CallOptions {
        operation_id: None,
        timeout: Some(patience),
    };
    loop {
        match client.write(probe_command(resource), call).await {
            Ok(committed) => return Some(committed),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Checks that reservation `(resource, granted)` reads back held, from state at least as new
/// as `min_op`; what is wrong otherwise.
async fn check_held(
    client: &Client,
    resource: u128,
    granted: &Committed,
    min_op: Option<u64>,
) -> Result<(), String> {
    let resource_read = client
        .get_resource(resource, min_op)
        .await
        .map_err(|e| format!("resource {resource}: {e}"))?;
    let view = resource_read.value;
    if view.state != ResourceState::Reserved || view.lease != Some(granted.lease) {
        return Err(format!(
            "resource {resource} reads {:?} lease {:?} at op {}, acknowledged as reserved by lease {} at op {}",
            view.state, view.lease, resource_read.op, granted.lease.0, granted.op
        ));
    }
    let lease_read = client
        .get_lease(granted.lease, min_op)
        .await
        .map_err(|e| format!("lease {} (resource {resource}): {e}", granted.lease.0))?;
    let lease = lease_read.value;
    if lease.state != LeaseState::Reserved
        || lease.holder != HOLDER
        || lease.resources.as_slice() != [resource]
    {
        return Err(format!(
            "lease {} reads {lease:?} at op {}, acknowledged as holder {HOLDER} reserving [{resource}]",
            granted.lease.0, lease_read.op
        ));
    }
    Ok(())
}

/// Reads every acknowledged reservation back, from state at least as new as `min_op`; what
/// does not read back held.
async fn read_back(
    client: &Client,
    acknowledged: &[(u128, Committed)],
    min_op: u64,
) -> Option<String> {
    let deadline = Instant::now() + PATIENCE;
    let mut lost = Vec::new();
    for (resource, granted) in acknowledged {
        if Instant::now() >= deadline {
            lost.push(format!(
                "reads took over {PATIENCE:?}; stopped at resource {resource}"
            ));
            break;
        }
        if let Err(problem) = check_held(client, *resource, granted, Some(min_op)).await {
            lost.push(problem);
        }
    }
    let last_op = acknowledged.last().map_or(0, |(_, granted)| granted.op);
    (!lost.is_empty()).then(|| {
        format!(
            "{} of {} acknowledged reservations (ops up to {last_op}) do not read back; first: {}",
            lost.len(),
            acknowledged.len(),
            lost[0]
        )
    })
}

/// Waits until replica `b` has caught up: in normal status (no longer recovering) in the
/// primary's view, with its applied op at the primary's commit. What is wrong otherwise.
async fn caught_up(cluster: &Cluster, b: u8, name: &str) -> Option<String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let primary = cluster.primary().await;
        let (primary_status, b_status) = (status(cluster, primary).await, status(cluster, b).await);
        if let (Ok(primary_status), Ok(b_status)) = (&primary_status, &b_status) {
            // (It may be primary once caught up: it must then be in normal status.)
            if matches!(b_status.role, Role::Backup | Role::Primary)
                && b_status.view == primary_status.view
                && b_status.applied == primary_status.commit
            {
                return None;
            }
        }
        if Instant::now() >= deadline {
            return Some(format!(
                "{name} (replica {b}) did not catch up within {PATIENCE:?}:\n{}",
                statuses(cluster).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replica `index` loses its disk: killed, its directory deleted and formatted again with the
/// recipes' command (`format --if-empty`, which formats an empty directory).
fn lose_disk(cluster: &mut Cluster, index: u8) {
    cluster.kill(index);
    cluster.wipe(index);
    let format = cluster.format(index, RECIPE_FORMAT_FLAGS);
    assert!(
        format.status.success(),
        "format --if-empty on replica {index}'s empty directory: {}",
        String::from_utf8_lossy(&format.stderr)
    );
}

/// While P is down, the reformatted replica `b` must still be recovering: not primary or
/// backup, and not ready on `/health`. What is wrong otherwise.
async fn still_fresh(cluster: &Cluster, b: u8) -> Vec<String> {
    let mut problems = Vec::new();
    if let Ok(answer) = status(cluster, b).await {
        if matches!(answer.role, Role::Primary | Role::Backup) {
            problems.push(format!(
                "the reformatted B (replica {b}) reported role {} while P was down",
                answer.role.name()
            ));
        }
    }
    let health = allocdb_server::health::get(
        &cluster.metrics[usize::from(b)],
        "/health",
        Duration::from_secs(1),
    )
    .await;
    if let Ok(answer) = health {
        if answer.status == 200 {
            problems.push(format!(
                "the reformatted B (replica {b}) answered /health 200 while P was down: {}",
                answer.body.trim()
            ));
        }
    }
    problems
}

/// Issue 10's scenario, with real processes and the recipes' `format --if-empty`:
///
/// 1. three replicas formatted and started; P is the primary, B and C the backups (by `status`);
/// 2. C is killed; 40 reservations are acknowledged (so they are stored on P and B only);
/// 3. B's disk is lost: B is killed, its directory deleted and formatted again by the recipes'
///    command;
/// 4. P is killed (SIGKILL); C and the empty B are started; some seconds later P is started.
///
/// Every acknowledged reservation must read back held, no replica may crash, the cluster must
/// serve writes again once P is back, and B must catch up (a `backup`, not `recovering`, with
/// `applied` at the primary's `commit`). While only C and the empty B run, nothing may be
/// acknowledged: C alone is not a majority of intact replicas, and B may not vote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_reformatted_by_the_recipes_never_costs_an_acknowledged_write() {
    let started = Instant::now();
    let mut cluster = Cluster::formatted("reformat-backup", 3, RECIPE_FORMAT_FLAGS);
    for index in 0..3 {
        cluster.restart(index);
    }
    let setup = client(&cluster).await;
    // The resources, created while all three run: C holds them too.
    let mut created_op = 0;
    for resource in 1..=RESERVATIONS {
        created_op = setup
            .create_resource(resource, None)
            .await
            .expect("create a resource")
            .op;
    }
    // P, and the two backups, identified by `status` once all three agree (a view change
    // while the new cluster settles may move the primary): C is stopped, B keeps the
    // reservations.
    let p = settled(&cluster, created_op).await;
    let backups: Vec<u8> = (0..3).filter(|&i| i != p).collect();
    let (c, b) = (backups[0], backups[1]);

    cluster.kill(c);
    let ttl_slots = setup.slots_for(Duration::from_secs(3600));
    let mut acknowledged = Vec::new();
    for resource in 1..=RESERVATIONS {
        let granted = setup
            .reserve(&[resource], HOLDER, ttl_slots)
            .await
            .unwrap_or_else(|e| panic!("reserve resource {resource} with C down: {e}"));
        acknowledged.push((resource, granted));
    }
    let last_acknowledged = acknowledged.last().expect("some reservations").1.op;
    let before_loss = statuses(&cluster).await;

    // B's disk is lost and formatted again, exactly as the recipes do on an empty volume.
    lose_disk(&mut cluster, b);
    cluster.kill(p);
    cluster.restart(c);
    cluster.restart(b);
    // C and the empty B alone: a write must not be acknowledged.
    let window_write = setup
        .write(
            probe_command(1_000),
            CallOptions {
                operation_id: None,
                timeout: Some(Duration::from_secs(4)),
            },
        )
        .await;
    let while_p_down = statuses(&cluster).await;
    let mut problems = still_fresh(&cluster, b).await;
    cluster.restart(p);
    let p_restarted = Instant::now();

    if let Ok(committed) = window_write {
        problems.push(format!(
            "a write was acknowledged at op {} while only C (replica {c}) and the reformatted B \
             (replica {b}) ran",
            committed.op
        ));
    }
    let reader = client(&cluster).await;
    let served = write_within(&reader, 1_001, PATIENCE).await;
    let served_after = p_restarted.elapsed();
    if served.is_none() {
        problems.push(format!(
            "no write acknowledged within {PATIENCE:?} after P (replica {p}) restarted"
        ));
    }
    if let Some(served) = served {
        problems.extend(read_back(&reader, &acknowledged, served.op).await);
        // B, and P once it has rejoined, reach the primary's commit in normal status.
        problems.extend(caught_up(&cluster, b, "B").await);
        problems.extend(caught_up(&cluster, p, "P").await);
    }
    for index in 0..3 {
        if let Some(exit) = cluster.exit_status(index) {
            problems.push(format!(
                "replica {index} exited ({exit}); its log ends:\n{}",
                cluster.log_tail(index)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "P = replica {p}, B = replica {b}, C = replica {c}; reservations acknowledged up to op \
         {last_acknowledged}\nbefore B's disk was lost:\n{before_loss}while P was down:\n\
         {while_p_down}now:\n{}\n{}",
        statuses(&cluster).await,
        problems.join("\n")
    );
    eprintln!(
        "P = {p}, B = {b}, C = {c}; writes served {served_after:?} after P restarted; test took \
         {:?}",
        started.elapsed()
    );
}

/// A brand-new cluster formatted by the recipes (`format --if-empty` on three empty
/// directories) forms and serves writes when its replicas start at different times: here
/// replica 2 starts 2 s after the others. (With fresh replicas the cluster starts by a genesis
/// step that needs every replica; this is what the recipes do on a first `up`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brand_new_cluster_formed_by_the_recipes_serves_with_staggered_starts() {
    let started = Instant::now();
    let mut cluster = Cluster::formatted("genesis-staggered", 3, RECIPE_FORMAT_FLAGS);
    cluster.restart(0);
    cluster.restart(1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(2);
    let last_started = Instant::now();
    let client = client(&cluster).await;
    let Some(committed) = write_within(&client, 1, PATIENCE).await else {
        panic!(
            "no write acknowledged within {PATIENCE:?} of the last start:\n{}",
            statuses(&cluster).await
        );
    };
    let served_after = last_started.elapsed();
    let primary = cluster.primary().await;
    for index in (0..3).filter(|&i| i != primary) {
        wait_until_applied(&cluster, index, committed.op).await;
    }
    for index in 0..3 {
        assert!(
            cluster.exit_status(index).is_none(),
            "replica {index} exited; its log ends:\n{}",
            cluster.log_tail(index)
        );
    }
    eprintln!(
        "first write acknowledged {served_after:?} after the last replica started; test took {:?}",
        started.elapsed()
    );
}

/// The safety price of a fresh replica that never votes: a brand-new cluster with one replica
/// never started does not serve writes (two fresh replicas cannot tell a new cluster from two
/// lost disks, and a majority of intact replicas does not exist yet). Once the third replica
/// starts, the cluster forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brand_new_cluster_serves_nothing_until_every_replica_has_started() {
    let started = Instant::now();
    let mut cluster = Cluster::formatted("genesis-waits", 3, RECIPE_FORMAT_FLAGS);
    cluster.restart(0);
    cluster.restart(1);
    let client = client(&cluster).await;
    let early = client
        .write(
            probe_command(1),
            CallOptions {
                operation_id: None,
                timeout: Some(Duration::from_secs(5)),
            },
        )
        .await;
    let while_waiting = statuses(&cluster).await;
    // Not acknowledged: no success, and no refusal either (a refusal is committed too).
    assert!(
        !matches!(early, Ok(_) | Err(ClientError::Rejected { .. })),
        "a brand-new cluster with replica 2 never started answered a write: {early:?}\n\
         {while_waiting}"
    );
    cluster.restart(2);
    let last_started = Instant::now();
    let Some(committed) = write_within(&client, 2, PATIENCE).await else {
        panic!(
            "no write acknowledged within {PATIENCE:?} of starting replica 2:\n{}",
            statuses(&cluster).await
        );
    };
    let served_after = last_started.elapsed();
    let primary = cluster.primary().await;
    for index in (0..3).filter(|&i| i != primary) {
        wait_until_applied(&cluster, index, committed.op).await;
    }
    for index in 0..3 {
        assert!(
            cluster.exit_status(index).is_none(),
            "replica {index} exited; its log ends:\n{}",
            cluster.log_tail(index)
        );
    }
    eprintln!(
        "first write acknowledged {served_after:?} after replica 2 started; test took {:?}",
        started.elapsed()
    );
}
