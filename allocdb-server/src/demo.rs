//! `allocdb demo`: a three-replica cluster on this machine, a crowd racing for scarce
//! resources, the primary killed halfway, and an audit that nothing was double-allocated.
//!
//! The cluster is made of child processes of this same binary in a temporary directory; they
//! are killed and the directory removed when the demo ends, whether it succeeds or fails.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allocdb_client::{Client, ClientError, ClientOptions, ClientRole};
use allocdb_core::ResultCode;
use allocdb_vsr::frame::Role;
use clap::Args;
use tokio::time::Instant;

use crate::audit::{Audit, Grant};
use crate::local_cluster::{LocalCluster, LocalSecurity};

/// Seats: resources `1..=SEATS`.
const SEATS: u128 = 50;
/// The pool's id and its members `POOL_FIRST..POOL_FIRST + POOL_MEMBERS`.
const POOL: u128 = 7;
const POOL_FIRST: u128 = 1_000;
const POOL_MEMBERS: u128 = 20;

/// `allocdb demo` arguments.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Concurrent clients racing for the resources.
    #[arg(long, default_value_t = 200)]
    pub clients: u32,
    /// How long the contention runs; the primary is killed halfway.
    #[arg(long, value_parser = crate::duration::parse_duration, default_value = "6s")]
    pub duration: Duration,
}

/// Runs the demo; exit 0 when the audit found no double allocation.
pub fn run(args: &DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("allocdb demo: cannot start a runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(crate::local_cluster::until_interrupted(demo(args))) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("allocdb demo failed: {error}");
            ExitCode::from(2)
        }
    }
}

/// Everything the racing clients report.
#[derive(Debug, Default)]
struct Tally {
    grants_seat: u64,
    grants_bundle: u64,
    grants_pool: u64,
    busy: u64,
    exhausted: u64,
    activated: u64,
    released: u64,
    abandoned: u64,
    indefinite: u64,
    other_errors: Vec<String>,
    last_ack: Option<Instant>,
    first_ack_after_kill: Option<Instant>,
}

struct Shared {
    tally: Mutex<Tally>,
    audit: Mutex<Audit>,
    killed_at: Mutex<Option<Instant>>,
}

async fn demo(args: &DemoArgs) -> Result<bool, String> {
    let exe = std::env::current_exe().map_err(|error| format!("finding this binary: {error}"))?;
    let mut cluster = LocalCluster::start(&exe, 3, 0xD3_40, LocalSecurity::Tls)?;
    crate::outln!(
        "allocdb demo: 3 replicas on {} (data in {}); connections: {}",
        cluster.addresses.join(", "),
        cluster.dir().display(),
        cluster.security().describe()
    );
    let primary = cluster.wait_for_primary(Duration::from_secs(10)).await?;
    let clients = connect_clients(&cluster, 4).await?;
    setup(&clients[0]).await?;
    crate::outln!(
        "setup: {SEATS} seats, pool {POOL} with {POOL_MEMBERS} members; slot = {} ms",
        clients[0].slot_ms()
    );
    crate::outln!(
        "running {} clients for {:?}; the primary (replica {primary}) is killed halfway",
        args.clients,
        args.duration
    );
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally::default()),
        audit: Mutex::new(Audit::default()),
        killed_at: Mutex::new(None),
    });
    let started = Instant::now();
    let stop_at = started + args.duration;
    let mut tasks = Vec::new();
    for index in 0..args.clients {
        let client = clients[index as usize % clients.len()].clone();
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(race(client, index, stop_at, shared)));
    }
    tokio::time::sleep(args.duration / 2).await;
    let failover = kill_primary(&mut cluster, primary, &shared, started).await;
    for task in tasks {
        task.await
            .map_err(|error| format!("a client task failed: {error}"))?;
    }
    let catch_up = restart_and_catch_up(&mut cluster, primary).await;
    report(&shared, failover, catch_up, &clients[0]).await
}

async fn connect_clients(cluster: &LocalCluster, count: usize) -> Result<Vec<Client>, String> {
    let mut clients = Vec::new();
    for _ in 0..count {
        let mut options = ClientOptions::new(cluster.addresses.clone(), cluster.cluster_id);
        options.call_timeout = Duration::from_secs(10);
        options.request_timeout = Duration::from_millis(300);
        // The demo creates its seats and pool, which takes the operator role.
        options.security = Some(cluster.client_security(ClientRole::Operator)?);
        clients.push(
            Client::connect(options)
                .await
                .map_err(|error| format!("connecting: {error}"))?,
        );
    }
    Ok(clients)
}

async fn setup(client: &Client) -> Result<(), String> {
    for seat in 1..=SEATS {
        client
            .create_resource(seat, None)
            .await
            .map_err(|error| format!("creating seat {seat}: {error}"))?;
    }
    for member in POOL_FIRST..POOL_FIRST + POOL_MEMBERS {
        client
            .create_resource(member, Some(POOL))
            .await
            .map_err(|error| format!("creating pool member {member}: {error}"))?;
    }
    Ok(())
}

/// One client: reserves seats, bundles of adjacent seats, or pool members; holds a grant a
/// little, activates some, releases most and abandons the rest to expire.
async fn race(client: Client, index: u32, stop_at: Instant, shared: Arc<Shared>) {
    let holder = 10_000 + u128::from(index);
    let mut rng = SplitMix(u64::from(index).wrapping_mul(0x9E37_79B9) + 1);
    let ttl_slots = client.slots_for(Duration::from_millis(1500));
    while Instant::now() < stop_at {
        let roll = rng.below(100);
        let (kind, result) = if roll < 50 {
            let seat = 1 + u128::from(rng.below(50));
            ("seat", client.reserve(&[seat], holder, ttl_slots).await)
        } else if roll < 75 {
            let first = 1 + u128::from(rng.below(48));
            let bundle = [first, first + 1, first + 2];
            ("bundle", client.reserve(&bundle, holder, ttl_slots).await)
        } else {
            ("pool", client.reserve_any(POOL, 1, holder, ttl_slots).await)
        };
        match result {
            Ok(grant) => {
                note_ack(&shared);
                let resources = match client.get_lease(grant.lease, Some(grant.op)).await {
                    Ok(lease) => lease.value.resources.as_slice().to_vec(),
                    Err(_) => Vec::new(),
                };
                let slot = shared
                    .audit
                    .lock()
                    .expect("no panics hold it")
                    .grant(Grant {
                        lease: grant.lease,
                        holder,
                        resources,
                        released_at: None,
                        release_retried: false,
                    });
                count_grant(&shared, kind);
                hold_and_let_go(&client, &mut rng, &grant, holder, slot, &shared).await;
            }
            Err(error) => count_error(&shared, &error),
        }
        tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
    }
}

async fn hold_and_let_go(
    client: &Client,
    rng: &mut SplitMix,
    grant: &allocdb_client::Committed,
    holder: u128,
    slot: usize,
    shared: &Shared,
) {
    tokio::time::sleep(Duration::from_millis(20 + rng.below(80))).await;
    let mut epoch = grant.epoch;
    if rng.below(2) == 0 {
        match client.activate(grant.lease, holder, epoch, None).await {
            Ok(active) => {
                note_ack(shared);
                epoch = active.epoch;
                shared.tally.lock().expect("no panics hold it").activated += 1;
            }
            Err(error) => count_error(shared, &error),
        }
    }
    if rng.below(10) < 8 || epoch != grant.epoch {
        match client.release(grant.lease, holder, epoch).await {
            Ok(released) => {
                note_ack(shared);
                shared.audit.lock().expect("no panics hold it").released(
                    slot,
                    (released.op, released.index),
                    released.retry,
                );
                shared.tally.lock().expect("no panics hold it").released += 1;
            }
            Err(error) => count_error(shared, &error),
        }
    } else {
        shared.tally.lock().expect("no panics hold it").abandoned += 1;
    }
}

fn note_ack(shared: &Shared) {
    let now = Instant::now();
    let killed_at = *shared.killed_at.lock().expect("no panics hold it");
    let mut tally = shared.tally.lock().expect("no panics hold it");
    tally.last_ack = Some(now);
    if killed_at.is_some_and(|killed| now > killed) && tally.first_ack_after_kill.is_none() {
        tally.first_ack_after_kill = Some(now);
    }
}

fn count_grant(shared: &Shared, kind: &str) {
    let mut tally = shared.tally.lock().expect("no panics hold it");
    match kind {
        "seat" => tally.grants_seat += 1,
        "bundle" => tally.grants_bundle += 1,
        _ => tally.grants_pool += 1,
    }
}

fn count_error(shared: &Shared, error: &ClientError) {
    let mut tally = shared.tally.lock().expect("no panics hold it");
    match error {
        ClientError::Rejected {
            code: ResultCode::ResourceBusy,
            ..
        } => tally.busy += 1,
        ClientError::Rejected {
            code: ResultCode::PoolExhausted,
            ..
        } => tally.exhausted += 1,
        ClientError::Indefinite { .. } => tally.indefinite += 1,
        other => {
            if tally.other_errors.len() < 5 {
                tally.other_errors.push(other.to_string());
            }
        }
    }
}

/// What the failover looked like.
struct Failover {
    killed: usize,
    old_view: u64,
    new_primary: Option<(usize, u64, Duration)>,
    killed_at: Instant,
}

async fn kill_primary(
    cluster: &mut LocalCluster,
    primary: usize,
    shared: &Shared,
    started: Instant,
) -> Failover {
    let old_view = cluster
        .status(primary, Duration::from_millis(500))
        .await
        .map_or(0, |status| status.view);
    cluster.kill(primary);
    let killed_at = Instant::now();
    *shared.killed_at.lock().expect("no panics hold it") = Some(killed_at);
    crate::outln!(
        "  {:>5.2}s  killed the primary, replica {primary} (view {old_view}), with SIGKILL",
        killed_at.duration_since(started).as_secs_f64()
    );
    let mut new_primary = None;
    while killed_at.elapsed() < Duration::from_secs(10) {
        for replica in (0..cluster.replica_count()).filter(|r| *r != primary) {
            if let Ok(status) = cluster.status(replica, Duration::from_millis(100)).await {
                if status.role == Role::Primary && status.view > old_view {
                    new_primary = Some((replica, status.view, killed_at.elapsed()));
                }
            }
        }
        if new_primary.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some((replica, view, after)) = new_primary {
        crate::outln!(
            "  {:>5.2}s  replica {replica} is primary of view {view}, {} ms after the kill",
            (killed_at + after).duration_since(started).as_secs_f64(),
            after.as_millis()
        );
    }
    Failover {
        killed: primary,
        old_view,
        new_primary,
        killed_at,
    }
}

/// A restarted replica caught up: its log and state machine reached `op`, the primary's
/// commit point when it restarted, `after` the restart.
struct CatchUp {
    op: u64,
    after: Duration,
}

/// Restarts the killed replica and waits until it is caught up by the test of
/// docs/operations.md ("Starting and stopping"): its `op` (log) and `applied` (state machine)
/// have reached the primary's `commit`. Its own `commit` is no evidence: a lagging replica
/// learns the commit point from the primary long before its log holds those ops.
async fn restart_and_catch_up(
    cluster: &mut LocalCluster,
    killed: usize,
) -> Result<CatchUp, String> {
    cluster.restart(killed)?;
    let restarted = Instant::now();
    let primary = cluster.wait_for_primary(Duration::from_secs(10)).await?;
    let target = cluster
        .status(primary, Duration::from_secs(1))
        .await?
        .commit;
    let mut last_seen = None;
    while restarted.elapsed() < Duration::from_secs(15) {
        if let Ok(status) = cluster.status(killed, Duration::from_millis(200)).await {
            if status.op >= target && status.applied >= target {
                return Ok(CatchUp {
                    op: target,
                    after: restarted.elapsed(),
                });
            }
            last_seen = Some((status.op, status.applied));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = last_seen.map_or_else(
        || "it never answered a status request".to_string(),
        |(op, applied)| format!("it was at op {op}, applied {applied}"),
    );
    Err(format!(
        "replica {killed} did not catch up to the primary's commit {target} within 15s ({seen}); \
         its log:\n{}",
        cluster.log_tail(killed)
    ))
}

async fn report(
    shared: &Shared,
    failover: Failover,
    catch_up: Result<CatchUp, String>,
    client: &Client,
) -> Result<bool, String> {
    match &catch_up {
        Ok(CatchUp { op, after }) => crate::outln!(
            "  restarted replica {}: caught up in {} ms (its op and applied reached the \
             primary's commit, {op})",
            failover.killed,
            after.as_millis()
        ),
        Err(error) => crate::outln!("  restarted replica {}: {error}", failover.killed),
    }
    let audit = std::mem::take(&mut *shared.audit.lock().expect("no panics hold it"));
    let findings = audit.check(client).await?;
    let tally = shared.tally.lock().expect("no panics hold it");
    print_tally(&tally);
    match (failover.new_primary, tally.first_ack_after_kill) {
        (Some((replica, view, elected)), first_ack) => crate::outln!(
            "  failover:          replica {} (view {}) -> replica {replica} (view {view}): \
             new primary after {} ms, first acknowledged write {} ms after the kill",
            failover.killed,
            failover.old_view,
            elected.as_millis(),
            first_ack.map_or_else(
                || "never".to_string(),
                |at| at
                    .duration_since(failover.killed_at)
                    .as_millis()
                    .to_string()
            )
        ),
        (None, _) => crate::outln!("  failover:          no new primary was seen within 10 s"),
    }
    crate::outln!(
        "  indefinite outcomes: {}{}",
        tally.indefinite,
        if tally.other_errors.is_empty() {
            String::new()
        } else {
            format!("; other errors: {:?}", tally.other_errors)
        }
    );
    crate::outln!(
        "  double allocations found: {} (audited {} leases on {} resources, all read at op {}{})",
        findings.violations.len(),
        findings.leases_checked,
        findings.resources_checked,
        findings.read_at_op,
        match findings.read_attempts {
            1 => String::new(),
            attempts => format!(", found on read {attempts}: expiries were still committing"),
        }
    );
    for violation in findings.violations.iter().take(10) {
        crate::outln!("    VIOLATION: {violation}");
    }
    crate::outln!("cleaning up: stopping the replicas and removing the data directory");
    Ok(findings.violations.is_empty() && failover.new_primary.is_some() && catch_up.is_ok())
}

/// The counts of what the clients got.
fn print_tally(tally: &Tally) {
    crate::outln!("tally:");
    crate::outln!(
        "  grants:            {} ({} seats, {} bundles of 3 seats, {} pool members)",
        tally.grants_seat + tally.grants_bundle + tally.grants_pool,
        tally.grants_seat,
        tally.grants_bundle,
        tally.grants_pool
    );
    crate::outln!(
        "  busy answers:      {} (resource_busy {}, pool_exhausted {})",
        tally.busy + tally.exhausted,
        tally.busy,
        tally.exhausted
    );
    crate::outln!(
        "  activated {}, released {}, left to expire {}",
        tally.activated,
        tally.released,
        tally.abandoned
    );
}

/// A tiny deterministic generator so each simulated client makes its own choices.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}
