//! A pool of GPU slots shared by workers. Each worker takes any free slot (`reserve_any`),
//! keeps its lease alive with a renew loop, and uses the slot only while the lease is surely
//! its own: until the deadline of its last successful renew, by its own clock, counted from
//! when that renew was sent. When a renew is refused, or no renew succeeds in time, it stops
//! using the slot at once.
//!
//! The GPU checks a *fencing token* on every job: the lease id, which grows with every new
//! lease. It remembers the highest token it has accepted per slot and refuses lower ones, so a
//! worker that lost its lease without noticing (here: a process paused for longer than its
//! TTL, with a job already in flight) can never overwrite the work of the slot's new holder.
//!
//! Run it against a local cluster (`deploy/local/cluster.sh format && deploy/local/cluster.sh start`):
//!
//! ```sh
//! ALLOCDB_ADDRESSES=$(deploy/local/cluster.sh addresses) ALLOCDB_CLUSTER=1 \
//! ALLOCDB_CERTS=allocdb-cluster/certs cargo run -p allocdb-client --example gpu_pool
//! ```
//!
//! (`ALLOCDB_INSECURE=1` instead of `ALLOCDB_CERTS` for a plaintext cluster.) Each run makes
//! its own pool. It takes about 10 s and exits 1 if the GPU ever accepted a job from a worker
//! whose lease had been superseded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allocdb_client::{
    CallOptions, Client, ClientError, ClientOptions, ClientRole, HolderId, LeaseId, PoolId,
    ResourceId, ResultCode,
};
use tokio::sync::watch;
use tokio::time::Instant;

/// GPU slots in the pool.
const SLOTS: u32 = 3;
/// Workers competing for them (one more than the slots: one always waits).
const WORKERS: u32 = 4;
/// A lease's TTL; the keepalive renews every third of it.
const TTL: Duration = Duration::from_secs(2);
/// Kept off the end of each lease, for clocks that run at slightly different rates.
const SAFETY_MARGIN: Duration = Duration::from_millis(200);
/// Jobs a worker runs before it releases its slot.
const JOBS: u32 = 25;
/// The time one job takes.
const JOB_TIME: Duration = Duration::from_millis(200);
/// How long a worker waiting for a free slot keeps trying.
const WAIT_MAX: Duration = Duration::from_secs(20);

/// The GPUs, with their fencing check: per slot, the highest lease id (token) accepted.
#[derive(Default)]
struct Gpus {
    highest_token: Mutex<BTreeMap<ResourceId, LeaseId>>,
    fenced_off: Mutex<u32>,
}

impl Gpus {
    /// Runs a job on `slot` for the holder of lease `token`; `false` when a newer lease has
    /// already used the slot (the job is refused).
    fn run_job(&self, slot: ResourceId, token: LeaseId) -> bool {
        let mut highest = self.highest_token.lock().expect("no panics while held");
        let seen = highest.entry(slot).or_insert(token);
        if token < *seen {
            *self.fenced_off.lock().expect("no panics while held") += 1;
            return false;
        }
        *seen = token;
        true
    }

    /// Whether a lease newer than `token` has used `slot` (for the simulated pause).
    fn superseded(&self, slot: ResourceId, token: LeaseId) -> bool {
        let highest = self.highest_token.lock().expect("no panics while held");
        highest.get(&slot).is_some_and(|seen| *seen > token)
    }
}

/// A lease kept alive by a background renew loop: the instant until which it is surely
/// ours, or `None` once it is lost.
struct Keepalive {
    until: watch::Receiver<Option<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Keepalive {
    /// Whether the worker may still use the resource.
    fn holds(&self) -> bool {
        self.until
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }
}

/// What the renew loop needs to know about its lease.
#[derive(Clone, Copy)]
struct Held {
    lease: LeaseId,
    holder: HolderId,
    epoch: u64,
    ttl_slots: u64,
}

/// Starts renewing `held`, first valid until `until`. `frozen` pauses the loop (the simulated
/// process pause stops the whole process, its keepalive included). The loop ends when a renew
/// is refused, or when the lease ran out by our clock without a renew answered in time.
fn keep_alive(client: Client, held: Held, until: Instant, frozen: Arc<AtomicBool>) -> Keepalive {
    let (sender, receiver) = watch::channel(Some(until));
    let task = tokio::spawn(async move {
        let mut until = until;
        loop {
            tokio::time::sleep(TTL / 3).await;
            if frozen.load(Ordering::SeqCst) {
                continue;
            }
            let sent = Instant::now();
            // Each renew gets a third of the TTL: the next round tries again well in time.
            let options = CallOptions::new().with_timeout(TTL / 3);
            match client
                .renew_with(held.lease, held.holder, held.epoch, held.ttl_slots, options)
                .await
            {
                Ok(_) => {
                    until = sent + TTL - SAFETY_MARGIN;
                    let _ = sender.send(Some(until));
                }
                Err(ClientError::Rejected { code, .. }) => {
                    println!(
                        "  worker {}: renew of lease {} refused ({}): the lease is gone",
                        held.holder,
                        held.lease.0,
                        code.name()
                    );
                    let _ = sender.send(None);
                    return;
                }
                // Unknown or not sent: the last deadline still holds, until it passes.
                Err(error) if Instant::now() < until => {
                    println!("  worker {}: renew failed ({error}); retrying", held.holder);
                }
                Err(error) => {
                    println!(
                        "  worker {}: no renew answered before lease {} ran out ({error})",
                        held.holder, held.lease.0
                    );
                    let _ = sender.send(None);
                    return;
                }
            }
        }
    });
    Keepalive {
        until: receiver,
        task,
    }
}

/// One worker: waits for a slot, runs jobs while its lease holds, releases it.
async fn worker(
    client: Client,
    pool: PoolId,
    holder: HolderId,
    gpus: Arc<Gpus>,
    pause: bool,
) -> Result<(), ClientError> {
    let ttl_slots = client.slots_for(TTL);
    let waiting_since = Instant::now();
    let (grant, sent) = loop {
        let sent = Instant::now();
        match client.reserve_any(pool, 1, holder, ttl_slots).await {
            Ok(grant) => break (grant, sent),
            Err(ClientError::Rejected {
                code: ResultCode::PoolExhausted,
                ..
            }) if waiting_since.elapsed() < WAIT_MAX => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error),
        }
    };
    // Which slot the pool gave: read the lease at the op of the grant.
    let lease = client.get_lease(grant.lease, Some(grant.op)).await?.value;
    let slot = *lease
        .resources
        .as_slice()
        .first()
        .ok_or_else(|| ClientError::Invalid {
            reason: format!("lease {} holds no resource", grant.lease.0),
        })?;
    println!(
        "worker {holder}: got slot {slot} with lease {} (fencing token)",
        grant.lease.0
    );
    let held = Held {
        lease: grant.lease,
        holder,
        epoch: grant.epoch,
        ttl_slots,
    };
    let frozen = Arc::new(AtomicBool::new(false));
    let keepalive = keep_alive(
        client.clone(),
        held,
        sent + TTL - SAFETY_MARGIN,
        Arc::clone(&frozen),
    );
    for job in 1..=JOBS {
        if !keepalive.holds() {
            println!(
                "worker {holder}: lease {} no longer surely ours; stopped using slot {slot}",
                grant.lease.0
            );
            // Its keepalive ends at its next renew, refused or unanswered.
            let _ = keepalive.task.await;
            return Ok(());
        }
        if pause && job == 3 {
            // The simulated fault: the process stops (a long GC pause, a stalled VM) right
            // after it sent job 3 to the GPU, and stays stopped until the slot has a new
            // holder. The job reaches the GPU only then, carrying the old token.
            frozen.store(true, Ordering::SeqCst);
            println!("worker {holder}: paused with job {job} in flight");
            let paused = Instant::now();
            while !gpus.superseded(slot, grant.lease) && paused.elapsed() < 3 * WAIT_MAX {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            frozen.store(false, Ordering::SeqCst);
            let accepted = gpus.run_job(slot, grant.lease);
            println!(
                "worker {holder}: resumed after {:.1?}; its in-flight job was {}",
                paused.elapsed(),
                if accepted {
                    "accepted"
                } else {
                    "refused by the GPU: a newer lease holds the slot"
                }
            );
            continue;
        }
        if !gpus.run_job(slot, grant.lease) {
            println!("worker {holder}: GPU refused job {job}: fenced off");
            keepalive.task.abort();
            return Ok(());
        }
        tokio::time::sleep(JOB_TIME).await;
    }
    keepalive.task.abort();
    if keepalive.holds() {
        client.release(grant.lease, holder, grant.epoch).await?;
        println!("worker {holder}: {JOBS} jobs done, released slot {slot}");
    }
    Ok(())
}

/// Ids for this run: the time in microseconds, shifted, so runs never collide.
fn run_base() -> u128 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_micros());
    micros << 16
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(error) => {
            eprintln!("gpu_pool: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool, ClientError> {
    let operator = Client::connect(ClientOptions::from_env(ClientRole::Operator)?).await?;
    let client = Client::connect(ClientOptions::from_env(ClientRole::Application)?).await?;
    let base = run_base();
    let pool = base;
    for slot in 1..=SLOTS {
        operator
            .create_resource(base + u128::from(slot), Some(pool))
            .await?;
    }
    println!("pool {pool}: {SLOTS} GPU slots, {WORKERS} workers, TTL {TTL:?}");
    let gpus = Arc::new(Gpus::default());
    let mut tasks = Vec::new();
    for worker_index in 1..=WORKERS {
        let (client, gpus) = (client.clone(), Arc::clone(&gpus));
        // Worker 1 is the one whose process pauses.
        tasks.push(tokio::spawn(worker(
            client,
            pool,
            HolderId::from(worker_index),
            gpus,
            worker_index == 1,
        )));
        // Start in order, so worker 1 surely gets a slot and the last one waits.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in tasks {
        task.await.expect("a worker panicked")?;
    }
    let fenced = *gpus.fenced_off.lock().expect("no panics while held");
    let stats = client.pool_stats(pool, None).await?.value;
    println!(
        "jobs refused by fencing: {fenced}; pool {pool}: {} of {} slots free",
        stats.free, stats.total
    );
    // The paused worker's late job must have been refused: the slot had a new holder.
    Ok(fenced >= 1)
}
