//! `allocdb benchmark`: many concurrent clients drive one workload against a cluster (a local
//! one it starts with the default format settings, or `--addresses`) for a bounded time.
//!
//! While it runs, one progress line per second on stderr ([`crate::progress`]):
//!
//! `[  12s] 104,233 ops/s (avg 101,002) p50 1.9 ms p99 3.1 ms rss 201/188/190 MiB`
//!
//! At the end, the answers counted by result code (stderr), then one summary line (stdout):
//!
//! `benchmark <workload> replicas=<n> clients=<n> ops_per_sec=<N> p50_us=<N> p99_us=<N> p999_us=<N> mean_batch=<N>`
//!
//! An op is one write answered definitely (a grant, a release, or a `resource_busy`); latency
//! is measured per call, from the call to its answer. `mean_batch` is the mean number of
//! requests per client frame: how well concurrent calls were coalesced.
//!
//! The run stops and fails (exit 1, no summary line) at the first answer the workload does not
//! explain: a `*_table_full` refusal (bookkeeping: the cluster refused live work because a
//! table was full), another unexpected refusal, or a call without a definite answer. The
//! message says which and how many seconds into the measurement.
//!
//! Workloads: `uncontended` (each client reserves and releases its own resource), `hotspot`
//! (every client races for 8 resources), `pool` (`reserve_any` from one pool, then release),
//! `bundle` (bundles of 4 out of a shared range, then release).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use allocdb_client::{Client, ClientError, ClientOptions, ClientRole, Committed, Security};
use allocdb_core::ResultCode;
use clap::{Args, ValueEnum};
use tokio::time::Instant;

use crate::local_cluster::{LocalCluster, LocalSecurity};
use crate::progress::{self, ProgressSample, Recorder};
use crate::security_args::SecurityArgs;

/// Resources every `hotspot` client races for.
const HOT_RESOURCES: u128 = 8;
/// Resources in a `bundle` reservation.
const BUNDLE_LEN: usize = 4;
/// The pool of the `pool` workload.
const POOL: u128 = 1;
/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Each client reserves and releases its own resource.
    Uncontended,
    /// Every client races for the same few resources.
    Hotspot,
    /// `reserve_any` of one member from a shared pool, then release.
    Pool,
    /// Bundles of 4 resources from a shared range, then release.
    Bundle,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Uncontended => "uncontended",
            Workload::Hotspot => "hotspot",
            Workload::Pool => "pool",
            Workload::Bundle => "bundle",
        }
    }
}

/// `allocdb benchmark` arguments.
#[derive(Args, Debug, Clone)]
pub struct BenchmarkArgs {
    /// An existing cluster's addresses; omitted, a local cluster is started.
    #[arg(long, value_delimiter = ',', conflicts_with = "replicas")]
    pub addresses: Vec<String>,
    /// Replicas of the local cluster (1 or 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Concurrent clients (each one call at a time).
    #[arg(long, default_value_t = 256)]
    pub clients: u32,
    /// Client connections the clients share (calls on one connection are coalesced). Two
    /// by default: while one connection's frame is in the cluster, the other's answers are
    /// handled and its next frame cut, so the stages of a commit overlap.
    #[arg(long, default_value_t = 2)]
    pub connections: u32,
    /// Frames each connection may have unanswered; calls made meanwhile wait and leave
    /// together (fewer frames in flight = bigger batches, more queueing). The client
    /// library's default.
    #[arg(long, default_value_t = allocdb_client::FRAMES_IN_FLIGHT_DEFAULT)]
    pub frames_in_flight: u32,
    /// Threads of the load generator's runtime (its clients' tasks and connections); one
    /// keeps every client's calls and its connection on one thread.
    #[arg(long, default_value_t = 1, value_parser = crate::runtime_threads::parser())]
    pub runtime_threads: u16,
    /// What the clients do.
    #[arg(long, value_enum, default_value_t = Workload::Uncontended)]
    pub workload: Workload,
    /// How long to measure (after a 1 s warm-up).
    #[arg(long, value_parser = crate::duration::parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// The cluster id (with `--addresses`; 0 accepts any).
    #[arg(long, default_value_t = 0)]
    pub cluster: u128,
    /// With --addresses: TLS with a client certificate (--certs) or --insecure. The local
    /// cluster runs TLS with certificates made for the run, or plaintext with --insecure.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Which client certificate in --certs to use (the setup creates resources: operator).
    #[arg(long, default_value = "operator", value_parser = crate::security_args::parse_role)]
    pub role: ClientRole,
}

/// Runs the benchmark: progress lines and the answer counts on stderr, the summary line on
/// stdout; exit 1 on a refusal the workload does not explain or an error.
pub fn run(args: &BenchmarkArgs) -> ExitCode {
    let runtime = match crate::runtime_threads::build(args.runtime_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("allocdb benchmark: cannot start a runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(crate::local_cluster::until_interrupted(benchmark(args))) {
        Ok(line) => {
            crate::outln!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("allocdb benchmark failed: {error}");
            ExitCode::from(1)
        }
    }
}

async fn benchmark(args: &BenchmarkArgs) -> Result<String, String> {
    if args.clients == 0 || args.connections == 0 {
        return Err("--clients and --connections must be at least 1".into());
    }
    let (_cluster, addresses, cluster_id, pids, security) = if args.addresses.is_empty() {
        if !matches!(args.replicas, 1 | 3 | 5) {
            return Err("--replicas must be 1, 3 or 5".into());
        }
        if args.security.certs.is_some() {
            return Err("--certs is for --addresses; a local cluster makes its own".into());
        }
        let mode = if args.security.insecure {
            LocalSecurity::Insecure
        } else {
            LocalSecurity::Tls
        };
        let exe =
            std::env::current_exe().map_err(|error| format!("finding this binary: {error}"))?;
        // The default format settings: the benchmark measures what `allocdb format` gives users.
        let cluster = LocalCluster::start(&exe, args.replicas, 0xBE_4C, mode)?;
        eprintln!("allocdb benchmark: connections: {}", mode.describe());
        cluster.wait_for_primary(Duration::from_secs(10)).await?;
        let addresses = cluster.addresses.clone();
        let pids = cluster.pids();
        let security = cluster.client_security(args.role)?;
        (Some(cluster), addresses, 0xBE_4C, Some(pids), security)
    } else {
        let security = args.security.client_security(args.role)?;
        (None, args.addresses.clone(), args.cluster, None, security)
    };
    let replicas = addresses.len();
    let clients = connect(&addresses, cluster_id, &security, args).await?;
    setup(&clients[0], args).await?;
    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop_at = warm_until + args.duration;
    let recorder = Arc::new(Recorder::new(warm_until, stop_at));
    let mut tasks = Vec::new();
    for index in 0..args.clients {
        let client = clients[index as usize % clients.len()].clone();
        let workload = args.workload;
        let clients_total = args.clients;
        let recorder = Arc::clone(&recorder);
        tasks.push(tokio::spawn(async move {
            drive(&client, workload, index, clients_total, &recorder).await;
        }));
    }
    report_progress(&recorder, warm_until, stop_at, pids.as_deref()).await;
    for task in tasks {
        task.await
            .map_err(|error| format!("a client task failed: {error}"))?;
    }
    let (histogram, tally, failure) = recorder.finish();
    eprintln!("{}", tally.line());
    if let Some(failure) = failure {
        return Err(failure.message());
    }
    let frames: u64 = clients.iter().map(|c| c.stats().frames_sent).sum();
    let requests: u64 = clients.iter().map(|c| c.stats().requests_sent).sum();
    let seconds = args.duration.as_secs_f64();
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let ops_per_sec = (histogram.total() as f64 / seconds).round() as u64;
    Ok(format!(
        "benchmark {} replicas={replicas} clients={} ops_per_sec={ops_per_sec} p50_us={} p99_us={} p999_us={} mean_batch={}",
        args.workload.name(),
        args.clients,
        histogram.quantile(0.50),
        histogram.quantile(0.99),
        histogram.quantile(0.999),
        requests.checked_div(frames).unwrap_or(0),
    ))
}

/// Prints a progress line at every measured second (and at the end of a last partial second)
/// until `stop_at`; at the first failure, one last line for the partial second, then returns.
async fn report_progress(
    recorder: &Recorder,
    warm_until: Instant,
    stop_at: Instant,
    pids: Option<&[Option<u32>]>,
) {
    let seconds_max = stop_at.duration_since(warm_until).as_secs_f64().ceil();
    let mut previous = warm_until;
    let mut second: u32 = 1;
    while f64::from(second) <= seconds_max {
        let whole = warm_until + Duration::from_secs(u64::from(second));
        let due = whole.min(stop_at);
        let failed = tokio::select! {
            () = tokio::time::sleep_until(due) => false,
            () = recorder.failure_notify.notified() => true,
        };
        // A loaded machine wakes late: rates divide by the real interval.
        let now = Instant::now();
        if now > warm_until {
            let partial = failed || due < whole;
            let sample = sample(recorder, warm_until, previous, now, pids, partial);
            eprintln!("{}", sample.line());
        }
        if failed {
            return;
        }
        previous = now;
        second += 1;
    }
}

/// The measurements of `[previous, now]`, and each replica's resident memory now.
fn sample(
    recorder: &Recorder,
    warm_until: Instant,
    previous: Instant,
    now: Instant,
    pids: Option<&[Option<u32>]>,
    partial: bool,
) -> ProgressSample {
    let (ops_interval, p50_us, p99_us, ops_total) = recorder.take_interval();
    ProgressSample {
        elapsed: now.duration_since(warm_until),
        partial,
        ops_interval,
        interval: now.duration_since(previous),
        ops_total,
        p50_us,
        p99_us,
        rss_kib: pids.map(|pids| {
            pids.iter()
                .map(|pid| pid.and_then(progress::rss_kib))
                .collect()
        }),
    }
}

/// `--connections` clients sharing the in-flight budget of `--clients`.
async fn connect(
    addresses: &[String],
    cluster_id: u128,
    security: &Security,
    args: &BenchmarkArgs,
) -> Result<Vec<Client>, String> {
    let mut clients = Vec::new();
    // No idle connection when there are fewer clients than connections.
    let connections = args.connections.min(args.clients);
    for _ in 0..connections {
        let mut options = ClientOptions::new(addresses.to_vec(), cluster_id);
        options.in_flight_max = args.clients.div_ceil(connections).max(1);
        options.frames_in_flight_max = args.frames_in_flight.max(1);
        options.security = Some(security.clone());
        clients.push(
            Client::connect(options)
                .await
                .map_err(|error| format!("connecting: {error}"))?,
        );
    }
    Ok(clients)
}

/// Creates what the workload needs.
async fn setup(client: &Client, args: &BenchmarkArgs) -> Result<(), String> {
    let (count, pool) = match args.workload {
        Workload::Uncontended => (u128::from(args.clients), None),
        Workload::Hotspot => (HOT_RESOURCES, None),
        Workload::Pool => (u128::from(args.clients.div_ceil(2).max(1)), Some(POOL)),
        Workload::Bundle => (u128::from(args.clients) * 2 + 8, None),
    };
    let mut pending = Vec::new();
    for resource in 0..count {
        let client = client.clone();
        pending.push(tokio::spawn(async move {
            client.create_resource(resource, pool).await
        }));
    }
    for task in pending {
        match task
            .await
            .map_err(|error| format!("setup task failed: {error}"))?
        {
            Ok(_)
            | Err(ClientError::Rejected {
                code: ResultCode::AlreadyExists,
                ..
            }) => {}
            Err(error) => return Err(format!("setup: {error}")),
        }
    }
    Ok(())
}

/// One client's loop: reserve (as the workload says), release what was granted, until the time
/// is up or some call (this client's or another's) failed the run. Every answer goes to the
/// recorder, which measures those inside the measured window.
async fn drive(
    client: &Client,
    workload: Workload,
    index: u32,
    clients_total: u32,
    recorder: &Recorder,
) {
    let holder = u128::from(index) + 1;
    let ttl_slots = client.slots_for(Duration::from_secs(60));
    let mut rng = u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while !recorder.should_stop() {
        let started = Instant::now();
        let reserved = match workload {
            Workload::Uncontended => {
                client
                    .reserve(&[u128::from(index)], holder, ttl_slots)
                    .await
            }
            Workload::Hotspot => {
                let hot = u128::from(next(&mut rng)) % HOT_RESOURCES;
                client.reserve(&[hot], holder, ttl_slots).await
            }
            Workload::Pool => client.reserve_any(POOL, 1, holder, ttl_slots).await,
            Workload::Bundle => {
                let bundle = random_bundle(&mut rng, u64::from(clients_total) * 2 + 8);
                client.reserve(&bundle, holder, ttl_slots).await
            }
        };
        let Some(grant) = answered(recorder, started, "reserve", reserved) else {
            continue;
        };
        let started = Instant::now();
        let released = client.release(grant.lease, holder, grant.epoch).await;
        answered(recorder, started, "release", released);
    }
}

/// Records an answer; the grant, if the call committed `ok`.
fn answered(
    recorder: &Recorder,
    started: Instant,
    call: &str,
    answer: Result<Committed, ClientError>,
) -> Option<Committed> {
    match answer {
        Ok(grant) => {
            recorder.record(started, Some(ResultCode::Ok), || {
                unreachable!("ok is expected")
            });
            Some(grant)
        }
        Err(error) => {
            recorder.record(started, error.code(), || format!("{call}: {error}"));
            None
        }
    }
}

fn random_bundle(rng: &mut u64, range: u64) -> [u128; BUNDLE_LEN] {
    let mut bundle = [0u128; BUNDLE_LEN];
    let mut filled = 0;
    while filled < BUNDLE_LEN {
        let candidate = u128::from(next(rng) % range);
        if !bundle[..filled].contains(&candidate) {
            bundle[filled] = candidate;
            filled += 1;
        }
    }
    bundle
}

/// xorshift64*: each client's own cheap generator.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}
