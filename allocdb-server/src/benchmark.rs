//! `allocdb benchmark`: many concurrent clients drive one workload against a cluster (a local
//! one it starts, or `--addresses`) for a bounded time, then one summary line:
//!
//! `benchmark <workload> replicas=<n> clients=<n> ops_per_sec=<N> p50_us=<N> p99_us=<N> p999_us=<N> mean_batch=<N>`
//!
//! An op is one write answered definitely (a grant, a release, or a `resource_busy`); latency
//! is measured per call, from the call to its answer. `mean_batch` is the mean number of
//! requests per client frame: how well concurrent calls were coalesced.
//!
//! Workloads: `uncontended` (each client reserves and releases its own resource), `hotspot`
//! (every client races for 8 resources), `pool` (`reserve_any` from one pool, then release),
//! `bundle` (bundles of 4 out of a shared range, then release).

use std::process::ExitCode;
use std::time::Duration;

use allocdb_client::{Client, ClientError, ClientOptions, ClientRole, Committed, Security};
use allocdb_core::ResultCode;
use clap::{Args, ValueEnum};
use tokio::time::Instant;

use crate::histogram::Histogram;
use crate::local_cluster::{LocalCluster, LocalSecurity};
use crate::security_args::SecurityArgs;

/// Resources every `hotspot` client races for.
const HOT_RESOURCES: u128 = 8;
/// Resources in a `bundle` reservation.
const BUNDLE_LEN: usize = 4;
/// The pool of the `pool` workload.
const POOL: u128 = 1;
/// Table sizes for a local benchmark cluster. A reserve+release cycle leaves a finished lease
/// in the table for the lease history window (1000 slots, 10 s) and an operation record for
/// the dedupe window (10 s): at ~100,000 writes/s the defaults (64 Ki leases, 1 Mi operations)
/// would fill within seconds and the benchmark would measure `lease_table_full`.
const BENCHMARK_FORMAT_FLAGS: [&str; 6] = [
    "--leases-max",
    "1048576",
    "--lease-members-max",
    "1048576",
    "--operations-max",
    "2097152",
];

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
    /// Client connections the clients share (calls on one connection are coalesced).
    #[arg(long, default_value_t = 1)]
    pub connections: u32,
    /// Frames each connection may have unanswered; calls made meanwhile wait and leave
    /// together (fewer frames in flight = bigger batches, more queueing).
    #[arg(long, default_value_t = 1)]
    pub frames_in_flight: u32,
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

/// Runs the benchmark and prints its line.
pub fn run(args: &BenchmarkArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("allocdb benchmark: cannot start a runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(crate::local_cluster::until_interrupted(benchmark(args))) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("allocdb benchmark failed: {error}");
            ExitCode::from(1)
        }
    }
}

/// What one client task measured.
struct TaskResult {
    ops: u64,
    histogram: Histogram,
    error: Option<String>,
}

async fn benchmark(args: &BenchmarkArgs) -> Result<String, String> {
    if args.clients == 0 || args.connections == 0 {
        return Err("--clients and --connections must be at least 1".into());
    }
    let (_cluster, addresses, cluster_id, security) = if args.addresses.is_empty() {
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
        let cluster =
            LocalCluster::start_with(&exe, args.replicas, 0xBE_4C, &BENCHMARK_FORMAT_FLAGS, mode)?;
        eprintln!("allocdb benchmark: connections: {}", mode.describe());
        cluster.wait_for_primary(Duration::from_secs(10)).await?;
        let addresses = cluster.addresses.clone();
        let security = cluster.client_security(args.role)?;
        (Some(cluster), addresses, 0xBE_4C, security)
    } else {
        let security = args.security.client_security(args.role)?;
        (None, args.addresses.clone(), args.cluster, security)
    };
    let replicas = addresses.len();
    let clients = connect(&addresses, cluster_id, &security, args).await?;
    setup(&clients[0], args).await?;
    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop_at = warm_until + args.duration;
    let mut tasks = Vec::new();
    for index in 0..args.clients {
        let client = clients[index as usize % clients.len()].clone();
        let workload = args.workload;
        let clients_total = args.clients;
        tasks.push(tokio::spawn(async move {
            drive(client, workload, index, clients_total, warm_until, stop_at).await
        }));
    }
    let mut ops = 0;
    let mut histogram = Histogram::new();
    for task in tasks {
        let result = task
            .await
            .map_err(|error| format!("a client task failed: {error}"))?;
        if let Some(error) = result.error {
            return Err(error);
        }
        ops += result.ops;
        histogram.merge(&result.histogram);
    }
    let frames: u64 = clients.iter().map(|c| c.stats().frames_sent).sum();
    let requests: u64 = clients.iter().map(|c| c.stats().requests_sent).sum();
    let seconds = args.duration.as_secs_f64();
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let ops_per_sec = (ops as f64 / seconds).round() as u64;
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

/// `--connections` clients sharing the in-flight budget of `--clients`.
async fn connect(
    addresses: &[String],
    cluster_id: u128,
    security: &Security,
    args: &BenchmarkArgs,
) -> Result<Vec<Client>, String> {
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let mut options = ClientOptions::new(addresses.to_vec(), cluster_id);
        options.in_flight_max = args.clients.div_ceil(args.connections).max(1);
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

/// One client's loop: reserve (as the workload says), release what was granted, measuring
/// every call; only calls finishing after the warm-up and before `stop_at` count.
async fn drive(
    client: Client,
    workload: Workload,
    index: u32,
    clients_total: u32,
    warm_until: Instant,
    stop_at: Instant,
) -> TaskResult {
    let holder = u128::from(index) + 1;
    let ttl_slots = client.slots_for(Duration::from_secs(60));
    let mut rng = u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut result = TaskResult {
        ops: 0,
        histogram: Histogram::new(),
        error: None,
    };
    while Instant::now() < stop_at {
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
        let granted = match classify(reserved) {
            Ok(granted) => granted,
            Err(error) => {
                result.error = Some(error);
                return result;
            }
        };
        record(&mut result, started, warm_until, stop_at);
        if let Some(grant) = granted {
            let started = Instant::now();
            if let Err(error) = client.release(grant.lease, holder, grant.epoch).await {
                result.error = Some(format!("release: {error}"));
                return result;
            }
            record(&mut result, started, warm_until, stop_at);
        }
    }
    result
}

/// A grant, a definite refusal the workload expects (busy), or an error that ends the run.
fn classify(reserved: Result<Committed, ClientError>) -> Result<Option<Committed>, String> {
    match reserved {
        Ok(grant) => Ok(Some(grant)),
        Err(ClientError::Rejected {
            code: ResultCode::ResourceBusy | ResultCode::PoolExhausted,
            ..
        }) => Ok(None),
        Err(error) => Err(format!("reserve: {error}")),
    }
}

fn record(result: &mut TaskResult, started: Instant, warm_until: Instant, stop_at: Instant) {
    let now = Instant::now();
    if now < warm_until || now > stop_at {
        return;
    }
    result.ops += 1;
    let micros = u64::try_from(now.duration_since(started).as_micros()).unwrap_or(u64::MAX);
    result.histogram.record(micros);
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
