//! Wires one replica process together: the listener, the peer links, the replica task and the
//! metrics endpoint, all stopped by one shutdown signal.
//!
//! [`run`] is what `allocdb start` calls and what the simulator calls under turmoil: it takes
//! an opened [`Replica`] over any [`Storage`] and runs until shutdown or until the replica
//! halts. The replica task runs on the caller's task (not spawned), so the synchronous log
//! writes never occupy a runtime worker that connection tasks need.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use allocdb_vsr::Replica;
use allocdb_vsr::frame::ErrorCode;
use allocdb_vsr::message_codec::MessageLimits;
use allocdb_wal::Storage;
use tokio::sync::{mpsc, watch};
use tokio::time::Duration;
use tracing::{error, info, warn};

use crate::admission::{Admission, ConnectionLimits};
use crate::connection::{self, ConnectionContext};
use crate::disk_jobs::DiskJobMode;
use crate::driver::{Driver, DriverOptions, ReplicaState};
use crate::fingerprint::Fingerprint;
use crate::frame_io;
use crate::metrics::{self, Metrics, MetricsContext};
use crate::net;
use crate::peer::{self, BusOptions, Identity};
use crate::settings::ClusterSettings;
use crate::tls::ServerSecurity;

/// How a server process runs (everything not fixed for the cluster at format time).
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Every replica's address, by index.
    pub addresses: Vec<String>,
    /// Where to listen; `None` = this replica's entry in `addresses`.
    pub listen: Option<String>,
    /// Where to serve `/metrics` and `/health`, if anywhere.
    pub metrics: Option<String>,
    /// Peer-link timeouts.
    pub bus: BusOptions,
    /// Bounds on connections: session and unidentified capacity, per-address cap, timeouts,
    /// frame pace (peer links take the pace from `bus`).
    pub limits: ConnectionLimits,
    /// Peer messages and session events queued for the replica.
    pub control_queue_max: usize,
    /// Client frames queued for the replica; beyond it requests are answered `overloaded`.
    pub request_queue_max: usize,
    /// Message batches queued per peer link.
    pub peer_queue_max: usize,
    /// Where to hand the replica's published state when serving starts (the simulator reads
    /// each replica's view and applied op through it); `None` in production.
    pub state_observer: Option<StateObserver>,
    /// How much faster (positive) or slower (negative) than real time this process's clock
    /// runs, in parts per million: the simulator's drifting clocks. 0 in production, where the
    /// machine's own clock drifts without being asked.
    pub clock_rate_ppm: i32,
    /// TLS with the cluster's certificates, or plaintext asked for explicitly. `None` (the
    /// default) is refused by [`run`]: a replica never falls back to plaintext by itself.
    pub security: Option<ServerSecurity>,
    /// Where the log's syncs and the checkpoints' writes run: threads of their own in
    /// production, tasks of the runtime in the simulator (deterministic).
    pub disk_jobs: DiskJobMode,
}

/// A slot [`run`] fills with a receiver of the replica's published [`ReplicaState`].
pub type StateObserver = Arc<std::sync::Mutex<Option<watch::Receiver<ReplicaState>>>>;

impl RuntimeOptions {
    /// Defaults for a replica at `addresses`.
    pub fn new(addresses: Vec<String>) -> RuntimeOptions {
        RuntimeOptions {
            addresses,
            listen: None,
            metrics: None,
            bus: BusOptions::default(),
            limits: ConnectionLimits::default(),
            control_queue_max: 4096,
            request_queue_max: 1024,
            peer_queue_max: 1024,
            state_observer: None,
            clock_rate_ppm: 0,
            security: None,
            disk_jobs: DiskJobMode::Thread,
        }
    }
}

/// Why a server stopped with an error.
#[derive(Debug)]
pub enum ServerError {
    /// The options do not fit the cluster.
    Options(String),
    /// A listener could not be bound.
    Bind {
        /// The address.
        address: String,
        /// Why.
        error: std::io::Error,
    },
    /// The replica halted (storage error); restart the process.
    Halted(String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Options(reason) => f.write_str(reason),
            ServerError::Bind { address, error } => {
                write!(f, "cannot listen on {address}: {error}")
            }
            ServerError::Halted(reason) => write!(f, "replica halted: {reason}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Runs `replica` until `shutdown` turns true (then returns it) or it halts.
///
/// # Errors
/// Options that do not match the cluster, an address that cannot be bound, or a halt.
pub async fn run<S: Storage>(
    replica: Replica<S>,
    settings: &ClusterSettings,
    options: RuntimeOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Replica<S>, ServerError> {
    let me = replica.index();
    let count = replica.config().replica_count;
    let Some(security) = options.security.clone() else {
        return Err(ServerError::Options(crate::security_args::missing_message()));
    };
    options.limits.check().map_err(ServerError::Options)?;
    if options.addresses.len() != usize::from(count) {
        let reason = format!(
            "{} addresses given for a cluster of {count} replicas",
            options.addresses.len()
        );
        return Err(ServerError::Options(reason));
    }
    let listen = options
        .listen
        .clone()
        .unwrap_or_else(|| options.addresses[usize::from(me)].clone());
    let listener = net::listen(&listen)
        .await
        .map_err(|error| ServerError::Bind {
            address: listen.clone(),
            error,
        })?;
    let metrics_listener = listen_metrics(options.metrics.as_deref()).await?;
    let identity = identity(settings, replica.config(), &options.addresses, &security)?;
    // One stop signal for every task: set by the caller's shutdown or by a halt.
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let links = spawn_links(&identity, &options, &metrics, &stop_rx);
    let driver_options = DriverOptions {
        tick: Duration::from_millis(settings.tick_ms),
        slot_ms: settings.slot_ms,
        clock_rate_ppm: options.clock_rate_ppm,
        disk_jobs: options.disk_jobs,
    };
    let core = replica.config().core;
    let health_lag_ops_max = u64::from(replica.config().pipeline_prepares_max);
    let (driver, state) = Driver::new(replica, driver_options, links, Arc::clone(&metrics));
    let reply_lists = driver.reply_lists();
    let request_lists = driver.request_lists();
    if let Some(observer) = &options.state_observer {
        // A poisoned slot only means an observer panicked; the server does not depend on it.
        if let Ok(mut slot) = observer.lock() {
            *slot = Some(state.clone());
        }
    }
    let (control_tx, control_rx) = mpsc::channel(options.control_queue_max);
    let (requests_tx, requests_rx) = mpsc::channel(options.request_queue_max);
    let context = Arc::new(ConnectionContext {
        identity,
        slot_ms: settings.slot_ms,
        client_limits: crate::connection::ClientLimits::of(&core),
        control: control_tx,
        requests: requests_tx,
        state: state.clone(),
        metrics: Arc::clone(&metrics),
        bus: options.bus,
        limits: options.limits,
        shutdown: stop_rx.clone(),
        next_client: AtomicU64::new(1),
        security: security.clone(),
        reply_lists,
        request_lists,
    });
    let admission = Arc::new(Admission::new(options.limits, count, Arc::clone(&metrics)));
    let accepting = Arc::clone(&admission);
    tokio::spawn(accept_loop(listener, context, accepting, stop_rx.clone()));
    if let Some(listener) = metrics_listener {
        let context = Arc::new(MetricsContext {
            metrics,
            state,
            replica_index: me,
            core,
            health_lag_ops_max,
        });
        tokio::spawn(metrics::serve(listener, context, stop_rx.clone()));
    }
    let mode = security.describe();
    info!(replica = me, replicas = count, address = %listen, mode, "serving");
    let forwarder = tokio::spawn(forward_shutdown(shutdown, stop_tx.clone()));
    // Boxed: the driver and its round state are large, and every caller awaits this future.
    let result = Box::pin(driver.run(control_rx, requests_rx, stop_rx)).await;
    let _ = stop_tx.send(true);
    forwarder.abort();
    sessions_closed(&admission).await;
    match result {
        Ok(replica) => {
            info!(replica = me, "stopped");
            Ok(replica)
        }
        Err(halted) => {
            error!(replica = me, reason = %halted.reason, "replica halted");
            Err(ServerError::Halted(halted.reason))
        }
    }
}

/// The `--metrics` listener, if one was asked for.
async fn listen_metrics(address: Option<&str>) -> Result<Option<net::TcpListener>, ServerError> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = net::listen(address)
        .await
        .map_err(|error| ServerError::Bind {
            address: address.to_string(),
            error,
        })?;
    Ok(Some(listener))
}

/// How long a stopping replica waits for its sessions to tell their clients `shutting_down`.
const SESSIONS_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Waits (at most [`SESSIONS_CLOSE_WAIT`]) until every client session has closed. The sessions
/// saw the stop signal with the driver, but on a one-thread runtime (`--runtime-threads 1`)
/// they run only when the driver yields, and its last act is a blocking sync: without this
/// wait the runtime would drop most of them unsent when `block_on` returns.
async fn sessions_closed(admission: &Admission) {
    let deadline = tokio::time::Instant::now() + SESSIONS_CLOSE_WAIT;
    loop {
        let (_, sessions, _) = admission.held();
        if sessions == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                sessions,
                "stopping with client sessions that did not close in time"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Who this replica is on the bus, with the fingerprint its handshakes carry.
pub(crate) fn identity(
    settings: &ClusterSettings,
    config: &allocdb_vsr::ReplicaConfig,
    addresses: &[String],
    security: &ServerSecurity,
) -> Result<Identity, ServerError> {
    let fingerprint = Fingerprint::new(settings, addresses).map_err(ServerError::Options)?;
    Ok(Identity {
        cluster_id: settings.cluster_id,
        replica_index: config.replica_index,
        replica_count: config.replica_count,
        limits: MessageLimits::from_config(config),
        fingerprint: Arc::new(fingerprint),
        transport: security.transport(),
    })
}

/// Starts one outbound link task per peer; returns the replica's queue to each (`None` for
/// itself).
fn spawn_links(
    identity: &Identity,
    options: &RuntimeOptions,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> Vec<Option<mpsc::Sender<Vec<allocdb_vsr::Message>>>> {
    let mut links = Vec::with_capacity(usize::from(identity.replica_count));
    for peer_index in 0..identity.replica_count {
        if peer_index == identity.replica_index {
            links.push(None);
            continue;
        }
        let (tx, rx) = mpsc::channel(options.peer_queue_max);
        links.push(Some(tx));
        let address = options.addresses[usize::from(peer_index)].clone();
        let link = peer::run_outbound(
            identity.clone(),
            peer_index,
            address,
            rx,
            options.bus,
            Arc::clone(metrics),
            stop.clone(),
        );
        tokio::spawn(link);
    }
    assert_eq!(links.len(), usize::from(identity.replica_count));
    links
}

/// Turns the caller's shutdown (or the caller dropping its sender) into the internal stop.
async fn forward_shutdown(mut shutdown: watch::Receiver<bool>, stop: watch::Sender<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    let _ = stop.send(true);
}

/// Accepts connections until shutdown; each gets a ticket from `admission` or is refused
/// at once (never queued: a refused connection costs one accept and at most one small write).
async fn accept_loop(
    listener: net::TcpListener,
    context: Arc<ConnectionContext>,
    admission: Arc<Admission>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accept failed");
                tokio::time::sleep(net::ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        let context = Arc::clone(&context);
        match admission.admit(from.ip()) {
            Ok(ticket) => {
                tokio::spawn(connection::serve(stream, context, ticket));
            }
            Err(_) if matches!(context.security, ServerSecurity::Tls(_)) => {
                // A TLS client cannot read a plaintext error frame, and a handshake would
                // spend CPU on the flood: close at once.
                drop(stream);
            }
            Err(refusal) => {
                tokio::spawn(async move {
                    let (_, mut write) = tokio::io::split(stream);
                    context.metrics.error_frames.add(1);
                    frame_io::send_error(
                        &mut write,
                        context.identity.cluster_id,
                        ErrorCode::Overloaded,
                        &refusal.to_string(),
                    )
                    .await;
                });
            }
        }
    }
}
