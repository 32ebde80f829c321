//! The operator commands of the `allocdb` binary: `format`, `start` and `status`.
//!
//! Each returns a process exit code: 0 success, 1 a runtime failure, 2 a usage or setup error
//! (bad flags, a data directory that does not fit, an address that cannot be bound).

use std::path::PathBuf;
use std::process::ExitCode;

use allocdb_core::Config as CoreConfig;
use allocdb_vsr::{Replica, ReplicaError};
use allocdb_wal::{FileStorage, WalError};
use clap::Args;
use tokio::sync::watch;
use tokio::time::Duration;
use tracing::{error, info, warn};

use crate::admission::ConnectionLimits;
use crate::cluster_args::ClusterArgs;
use crate::dir_lock::{DirLock, DirLockError};
use crate::duration::parse_duration;
use crate::format_check::{self, Existing};
use crate::frame_io::FramePace;
use crate::security_args::{SecurityArgs, parse_role};
use crate::server::{self, RuntimeOptions, ServerError};
use crate::settings::{
    ClusterSettings, SETTINGS_FILE, SLOT_MS_DEFAULT, TICK_MS_DEFAULT, WAL_DIR, default_core_config,
    default_dedupe_window_slots, settings_path,
};
use crate::status;
use allocdb_client::ClientRole;
use allocdb_client::tls::Transport;

/// Exit code of a usage or setup error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a runtime failure.
pub const EXIT_FAILURE: u8 = 1;

/// `allocdb format`: creates a replica's data directory.
#[derive(Args, Debug)]
pub struct FormatArgs {
    /// The cluster id (a non-zero u128; every replica of the cluster gets the same one).
    #[arg(long)]
    pub cluster: u128,
    /// This replica's index, 0..replica-count.
    #[arg(long)]
    pub replica: u8,
    /// The number of replicas: 1, 3 or 5.
    #[arg(long)]
    pub replica_count: u8,
    /// Length of a slot (the unit of TTLs) in milliseconds [default: 10].
    #[arg(long)]
    pub slot_ms: Option<u64>,
    /// Length of a protocol tick in milliseconds (timeouts are counted in ticks) [default: 10].
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Format only a missing or empty directory (`lost+found` is ignored); exit 0 without
    /// touching anything when it already holds this replica (same cluster, replica and
    /// replica count, and the same values for every limit given on this command line);
    /// refuse anything else.
    #[arg(long)]
    pub if_empty: bool,
    /// The core's limits.
    #[command(flatten)]
    pub core: CoreFlags,
    /// TLS (the replica's certificate in --certs is checked now) or --insecure.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// The data directory to create (must not hold a formatted replica).
    pub data_dir: PathBuf,
}

/// The core's limits, identical on every replica (defaults: see `docs/operations.md`).
#[derive(Args, Debug)]
pub struct CoreFlags {
    /// Rows in the resource table [default: 65536].
    #[arg(long)]
    pub resources_max: Option<u32>,
    /// Rows in the pool table [default: 1024].
    #[arg(long)]
    pub pools_max: Option<u32>,
    /// Rows in the lease table [default: 65536].
    #[arg(long)]
    pub leases_max: Option<u32>,
    /// Rows in the lease-member table [default: 262144].
    #[arg(long)]
    pub lease_members_max: Option<u32>,
    /// The largest bundle, at most 16 [default: 16].
    #[arg(long)]
    pub bundle_size_max: Option<u32>,
    /// Rows in the operation table: the outcomes of writes that carry an application key
    /// (`--operation-id`); when full, the oldest key retires early and a retry of it is
    /// answered `operation_expired` [default: 65536].
    #[arg(long)]
    pub operations_max: Option<u32>,
    /// Client sessions kept at once; registering one more evicts the least recently used,
    /// whose client is answered `session_evicted` and registers again [default: 1024].
    #[arg(long)]
    pub clients_max: Option<u32>,
    /// Answers kept per session: how many numbered writes one client may have unanswered;
    /// an older request number is refused `request_stale` [default: 1024].
    #[arg(long)]
    pub session_requests_max: Option<u32>,
    /// The largest TTL, in slots [default: 8640000, a day at the default 10 ms slot].
    #[arg(long)]
    pub ttl_slots_max: Option<u64>,
    /// How long an application key is remembered for retries, in slots [default: 6000, i.e.
    /// 60 s worth of slots at the chosen --slot-ms].
    #[arg(long)]
    pub dedupe_window_slots: Option<u64>,
    /// How long a finished lease stays queryable, in slots [default: 1000].
    #[arg(long)]
    pub lease_history_slots: Option<u64>,
}

impl CoreFlags {
    /// The core configuration: these flags over the defaults (the dedupe window's default
    /// scaled to `slot_ms`).
    fn config(&self, slot_ms: u64) -> CoreConfig {
        let mut core = default_core_config();
        core.dedupe_window_slots = default_dedupe_window_slots(slot_ms);
        let set32 = |field: &mut u32, value: Option<u32>| *field = value.unwrap_or(*field);
        set32(&mut core.resources_max, self.resources_max);
        set32(&mut core.pools_max, self.pools_max);
        set32(&mut core.leases_max, self.leases_max);
        set32(&mut core.lease_members_max, self.lease_members_max);
        set32(&mut core.bundle_size_max, self.bundle_size_max);
        set32(&mut core.operations_max, self.operations_max);
        set32(&mut core.clients_max, self.clients_max);
        set32(&mut core.session_requests_max, self.session_requests_max);
        core.ttl_slots_max = self.ttl_slots_max.unwrap_or(core.ttl_slots_max);
        core.dedupe_window_slots = self.dedupe_window_slots.unwrap_or(core.dedupe_window_slots);
        core.lease_history_slots = self.lease_history_slots.unwrap_or(core.lease_history_slots);
        core
    }
}

/// `allocdb start`: runs a replica.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Every replica's address (host:port), comma-separated, in index order; one address
    /// runs a single-replica server.
    #[arg(long, value_delimiter = ',', required = true)]
    pub addresses: Vec<String>,
    /// This replica's index in --addresses.
    #[arg(long)]
    pub replica: u8,
    /// Serve Prometheus `/metrics` and `/health` over HTTP on this address.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Listen here instead of on this replica's entry in --addresses (e.g. 0.0.0.0:port).
    #[arg(long)]
    pub listen: Option<String>,
    /// The cluster id this replica must belong to: start only if the data directory was
    /// formatted for it (guards against a volume mounted on the wrong cluster's replica).
    #[arg(long)]
    pub cluster: Option<u128>,
    /// TLS with the replica's certificate, or --insecure.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Bounds on connections (see docs/operations.md, "Connection limits").
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Threads for connections and peer links: 1 runs them on the replica's own thread (no
    /// wake-ups between threads); more run them on that many workers beside it.
    #[arg(long, default_value_t = 1, value_parser = crate::runtime_threads::parser())]
    pub runtime_threads: u16,
    /// The data directory made by `allocdb format`.
    pub data_dir: PathBuf,
}

/// `allocdb start`'s bounds on connections; defaults in [`ConnectionLimits::default`].
#[derive(Args, Debug)]
pub struct LimitArgs {
    /// Client and status sessions open at once; a hello beyond it is answered `overloaded`.
    #[arg(long, default_value_t = ConnectionLimits::default().client_sessions_max)]
    pub client_sessions_max: usize,
    /// Connections still in their TLS handshake or before their first frame; a new
    /// connection beyond it closes the oldest such one.
    #[arg(long, default_value_t = ConnectionLimits::default().unidentified_max)]
    pub unidentified_connections_max: usize,
    /// Connections from one IP address (peer links excepted); beyond it refused at once.
    #[arg(long, default_value_t = ConnectionLimits::default().per_address_max)]
    pub connections_per_address_max: usize,
    /// How long a connection may take for its TLS handshake and first frame (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// A client session with no request and no reply for this long is closed (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub client_idle_timeout: Duration,
    /// Any frame may take this long to arrive, whatever its size (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub frame_grace: Duration,
    /// Beyond the grace, a frame must arrive at this many bytes per second at least (client
    /// and peer connections); a slower sender is closed and its buffer freed.
    #[arg(long, default_value_t = FramePace::default().bytes_per_second_min)]
    pub frame_rate_min: u64,
}

impl LimitArgs {
    /// The limits these flags give.
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            client_sessions_max: self.client_sessions_max,
            unidentified_max: self.unidentified_connections_max,
            per_address_max: self.connections_per_address_max,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.client_idle_timeout,
            frame_pace: FramePace {
                grace: self.frame_grace,
                bytes_per_second_min: self.frame_rate_min,
            },
        }
    }
}

/// `allocdb status`: one JSON line per replica.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Where the cluster is and how to talk to it (flags over `ALLOCDB_*` variables).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How long to wait for each replica, e.g. `500ms`, `2s` [default: 1s].
    #[arg(long, value_parser = parse_duration, conflicts_with = "timeout_ms")]
    pub timeout: Option<Duration>,
    /// Deprecated spelling of `--timeout`, in milliseconds.
    #[arg(long, hide = true)]
    pub timeout_ms: Option<u64>,
    /// Which client certificate in the certificate directory to use (status needs operator).
    #[arg(long, default_value = "operator", value_parser = parse_role)]
    pub role: ClientRole,
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// `--if-empty`: the exit code when the directory needs no formatting (it holds this replica)
/// or must not be formatted; `None` when it is empty and formatting goes ahead.
fn format_if_empty(args: &FormatArgs) -> Option<ExitCode> {
    match format_check::existing(&args.data_dir, args) {
        Ok(Existing::Empty) => None,
        Ok(Existing::Same) => {
            crate::outln!(
                "{} already holds replica {} of {} (cluster {}); nothing changed",
                args.data_dir.display(),
                args.replica,
                args.replica_count,
                args.cluster
            );
            Some(ExitCode::SUCCESS)
        }
        Err(reason) => Some(usage_error(&reason.to_string())),
    }
}

/// Runs `allocdb format`.
pub fn format(args: &FormatArgs) -> ExitCode {
    // With --certs, a certificate that does not fit this replica is found now, not at start.
    if let Err(error) =
        args.security
            .server_security(args.cluster, args.replica, args.replica_count)
    {
        return usage_error(&error);
    }
    let slot_ms = args.slot_ms.unwrap_or(SLOT_MS_DEFAULT);
    if slot_ms == 0 {
        return usage_error("invalid settings: slot_ms and tick_ms must be at least 1");
    }
    let mut settings = ClusterSettings::new(
        args.cluster,
        args.replica,
        args.replica_count,
        slot_ms,
        args.core.config(slot_ms),
    );
    settings.tick_ms = args.tick_ms.unwrap_or(TICK_MS_DEFAULT);
    if let Err(error) = settings.validate() {
        return usage_error(&format!("invalid settings: {error}"));
    }
    // The directory must exist to hold its lock; creating an empty one changes nothing the
    // checks below look at. The lock comes before every check so that a live replica's
    // directory is reported as in use (naming its pid), not inspected while it changes.
    if let Err(error) = std::fs::create_dir_all(&args.data_dir) {
        return usage_error(&format!(
            "cannot create {}: {error}",
            args.data_dir.display()
        ));
    }
    let lock = match DirLock::acquire(&args.data_dir) {
        Ok(lock) => lock,
        Err(error @ DirLockError::InUse { .. }) if args.if_empty => {
            // A live replica's directory: `--if-empty` only reads the settings (written once
            // at format), so a recipe re-run next to the running replica still answers
            // "nothing changed" for its own formatted directory; anything it would write is
            // refused as in use.
            return format_if_empty(args).unwrap_or_else(|| usage_error(&error.to_string()));
        }
        Err(error) => return usage_error(&error.to_string()),
    };
    let refusal = if args.if_empty {
        format_if_empty(args)
    } else if settings_path(&args.data_dir).exists() {
        Some(usage_error(&format!(
            "{} is already formatted",
            args.data_dir.display()
        )))
    } else {
        None
    };
    if let Some(done) = refusal {
        // Nothing was formatted: leave the directory exactly as it was found.
        if let Err(error) = lock.release_leaving_no_trace() {
            return usage_error(&format!("cannot remove the lock file: {error}"));
        }
        return done;
    }
    let storage = match FileStorage::open_dir(args.data_dir.join(WAL_DIR)) {
        Ok(storage) => storage,
        Err(error) => return usage_error(&format!("cannot open the log directory: {error}")),
    };
    if let Err(error) = Replica::format(storage, settings.replica_config()) {
        return usage_error(&format!(
            "cannot format {}: {error}",
            args.data_dir.display()
        ));
    }
    if let Err(error) = settings.write(&args.data_dir) {
        return usage_error(&error.to_string());
    }
    crate::outln!(
        "formatted replica {} of {} (cluster {}) in {}",
        args.replica,
        args.replica_count,
        args.cluster,
        args.data_dir.display()
    );
    ExitCode::SUCCESS
}

/// The runtime options `start`'s flags give, with the replica's certificates loaded.
fn runtime_options(args: &StartArgs, settings: &ClusterSettings) -> Result<RuntimeOptions, String> {
    let security = args.security.server_security(
        settings.cluster_id,
        settings.replica_index,
        settings.replica_count,
    )?;
    let mut options = RuntimeOptions::new(args.addresses.clone());
    options.security = Some(security);
    options.metrics.clone_from(&args.metrics);
    options.listen.clone_from(&args.listen);
    options.limits = args.limits.limits();
    options.limits.check()?;
    options.bus.frame_pace = options.limits.frame_pace;
    Ok(options)
}

/// Runs `allocdb start` until SIGTERM/SIGINT.
pub fn start(args: &StartArgs) -> ExitCode {
    if let Err(error) = args.security.mode() {
        return usage_error(&error);
    }
    // Before any thread exists: closed connections' frame buffers go back to the OS.
    let _ = crate::malloc_tuning::release_large_buffers();
    // Held until this function returns, i.e. for as long as the replica runs.
    let _lock = match DirLock::acquire(&args.data_dir) {
        Ok(lock) => lock,
        Err(DirLockError::Io { path, error }) if error.kind() == std::io::ErrorKind::NotFound => {
            return usage_error(&format!(
                "cannot lock {}: the data directory {} does not exist (make it with `allocdb format`)",
                path.display(),
                args.data_dir.display()
            ));
        }
        Err(error) => return usage_error(&error.to_string()),
    };
    // Before the log is opened: if recovery then finds damage, this says why it may be there.
    if let Some(warning) = crate::fs_check::unordered_appends(&args.data_dir) {
        warn!("{warning}");
    }
    let settings = match ClusterSettings::read(&args.data_dir) {
        Ok(settings) => settings,
        Err(error) => return usage_error(&error.to_string()),
    };
    if let Some(cluster) = args.cluster {
        if cluster != settings.cluster_id {
            return usage_error(&format!(
                "{} belongs to cluster {}, not to --cluster {cluster}: wrong data directory \
                 or wrong cluster",
                args.data_dir.display(),
                settings.cluster_id
            ));
        }
    }
    if args.replica != settings.replica_index {
        return usage_error(&format!(
            "--replica {} but {} holds replica {}",
            args.replica,
            args.data_dir.display(),
            settings.replica_index
        ));
    }
    if args.addresses.len() != usize::from(settings.replica_count) {
        return usage_error(&format!(
            "{} addresses given but the cluster has {} replicas",
            args.addresses.len(),
            settings.replica_count
        ));
    }
    let storage = match FileStorage::open_dir(args.data_dir.join(WAL_DIR)) {
        Ok(storage) => storage,
        Err(error) => return usage_error(&format!("cannot open the log directory: {error}")),
    };
    let mut config = settings.replica_config();
    config.seed ^= process_entropy();
    let replica = match Replica::open(storage, config) {
        Ok(replica) => replica,
        Err(ReplicaError::Wal(WalError::ClusterMismatch { expected, found })) => {
            // cluster.settings and the log disagree: parts of two data directories.
            let text = format!(
                "{}: the log ({WAL_DIR}/) belongs to cluster {found}, but {SETTINGS_FILE} \
                 says cluster {expected}; this is not one replica's data directory",
                args.data_dir.display()
            );
            error!("{text}");
            return usage_error(&text);
        }
        Err(error) => {
            error!(%error, "cannot open the replica");
            return usage_error(&format!("cannot open {}: {error}", args.data_dir.display()));
        }
    };
    let options = match runtime_options(args, &settings) {
        Ok(options) => options,
        Err(error) => return usage_error(&error),
    };
    let runtime = match crate::runtime_threads::build(args.runtime_threads) {
        Ok(runtime) => runtime,
        Err(error) => return usage_error(&format!("cannot start the runtime: {error}")),
    };
    let result = runtime.block_on(async {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            info!("signal received: finishing the current batch and stopping");
            let _ = shutdown_tx.send(true);
        });
        server::run(replica, &settings, options, shutdown_rx).await
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(error @ (ServerError::Bind { .. } | ServerError::Options(_))) => {
            usage_error(&error.to_string())
        }
        Err(error @ ServerError::Halted(_)) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `allocdb status`: exit 0 when every replica answered, 1 otherwise, 2 for a usage or
/// configuration error (also a replica that answers at another position of the list than
/// its index); every outcome is JSON on stdout.
pub fn status(args: &StatusArgs) -> ExitCode {
    let usage = |result: &str, message: &str| {
        eprintln!("error: {message}");
        crate::outln!(
            "{}",
            serde_json::json!({"result": result, "error": message})
        );
        ExitCode::from(EXIT_USAGE)
    };
    let options = match args.cluster.client_options(Some(args.role)) {
        Ok(options) => options,
        Err(error) => return usage("usage", &error),
    };
    let transport = match options.security.as_ref().map(Transport::new) {
        Some(Ok(transport)) => transport,
        Some(Err(error)) => return usage("usage", &error),
        None => return usage("usage", &crate::security_args::missing_message()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return usage(
                "runtime_error",
                &format!("cannot start the runtime: {error}"),
            );
        }
    };
    let timeout = args
        .timeout
        .or(args.timeout_ms.map(Duration::from_millis))
        .unwrap_or(Duration::from_secs(1));
    let mut all_answered = true;
    let mut mismatched = 0_usize;
    let mut misplaced = Vec::new();
    for (index, address) in options.addresses.iter().enumerate() {
        let replica = u8::try_from(index).unwrap_or(u8::MAX);
        let answer = runtime.block_on(status::probe_checked(
            &transport,
            address,
            replica,
            options.cluster_id,
            timeout,
        ));
        // A shorter list is allowed (probing some replicas), a misplaced one is not: its lines
        // would name the wrong replica indexes. Over TLS the certificate check finds it first.
        match &answer {
            Ok(reply) if usize::from(reply.replica_index) != index => misplaced.push(format!(
                "position {index} ({address}) is replica {} of {}",
                reply.replica_index, reply.replica_count
            )),
            Err(status::ProbeError {
                misplaced: Some(named),
                ..
            }) if usize::from(named.replica) != index
                && (options.cluster_id == 0 || named.cluster_id == options.cluster_id) =>
            {
                misplaced.push(format!(
                    "position {index} ({address}) is replica {} (its TLS certificate names it)",
                    named.replica
                ));
            }
            _ => {}
        }
        all_answered &= answer.is_ok();
        mismatched += usize::from(answer.as_ref().is_err_and(|error| error.transport_mismatch));
        let answer = answer.map_err(|error| error.message);
        crate::outln!("{}", status::json_line(index, address, &answer));
    }
    if !misplaced.is_empty() {
        return usage(
            "address_list",
            &format!(
                "the address list does not match the cluster: {}; list every replica's address \
                 in replica-index order (index 0 first)",
                misplaced.join("; ")
            ),
        );
    }
    // As for a client: one replica in the other mode is a finding about that replica, but
    // none speaking this transport is a configuration error of the command.
    if mismatched == options.addresses.len() {
        return usage("config", &transport_mismatch_message(&transport));
    }
    if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// What `status` says when no replica of its list speaks its transport.
fn transport_mismatch_message(transport: &Transport) -> String {
    let (wanted, other) = if transport.is_tls() {
        ("TLS", "without TLS (--insecure)")
    } else {
        ("plaintext", "TLS (--certs)")
    };
    format!(
        "every replica of the list answers in another transport than {wanted} (see each line's \
         error): most likely the cluster runs {other}"
    )
}

/// A value drawn from the operating system's randomness once per process: the replica's seed
/// (election jitter, and the nonce that tells a fresh replica's probe answers from answers
/// to an earlier process on the same data directory) must differ from one process to the next.
/// The replica itself never draws randomness; the simulator passes its own seeds.
fn process_entropy() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}
