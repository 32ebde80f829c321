//! Counters, gauges and histograms, encoded as `OpenMetrics` text (which Prometheus scrapes) by
//! prometheus-client, and a tiny HTTP/1.1 responder for `/metrics`, `/health` and
//! `/health/live`.
//!
//! Everything is a fixed set of atomics allocated at start-up; recording never allocates or
//! locks, except [`ConfigMismatches`], which changes only on peer handshakes. A scrape copies
//! the values into a fresh prometheus-client registry and encodes that (the library's own
//! histogram takes a lock per sample, too dear for every request). The responder reads one
//! request head (bounded), answers, and closes.
//!
//! The two probes (see [`readiness`] and [`liveness`]) answer 200 or 503 with a one-line JSON
//! body: `{"status":"ready","role":"backup","view":3,"op":120,"commit":120,"applied":120}`.
//! - `GET /health` (readiness): 200 only while the replica is `primary` or `backup` **and**
//!   caught up: it has applied every op it knows committed, up to one pipeline
//!   (`pipeline_prepares_max` ops) behind, **and** no peer link is refused for a configuration
//!   mismatch. Otherwise 503 with `status` `halted`, `shutting_down`, `config_mismatch` (the
//!   body then also has a `config_mismatch` field naming the values), `view_change`,
//!   `recovering` or `lagging`.
//! - `GET /health/live` (liveness): 200 (`alive`) unless the replica halted or the process is
//!   shutting down; a view change, recovery or a lagging log are not reasons to restart it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allocdb_core::{Config as CoreConfig, TableUsage};
use allocdb_vsr::frame::Role;
use prometheus_client::encoding::text;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Duration;

use crate::driver::ReplicaState;
use crate::fingerprint::ConfigMismatches;
use crate::net;
use crate::status::json_string;

/// The largest HTTP request head the responder reads.
const HTTP_REQUEST_BYTES_MAX: usize = 4096;
/// How long a metrics scraper may take to send its request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the metrics port serves at once. The port is unauthenticated plain HTTP, so a
/// flood of silent connections must not hold an unbounded number of file descriptors (the log
/// and the client port need them too); one more closes the oldest, so a flood only shortens how
/// long each may stay silent, and a health probe still gets in.
pub const METRICS_CONNECTIONS_MAX: usize = 64;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `count`.
    pub fn add(&self, count: u64) {
        self.0.fetch_add(count, Ordering::Relaxed);
    }

    /// Sets an absolute value taken from a counter kept elsewhere (never decreasing).
    pub fn set(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram over fixed upper bounds (Prometheus "le" buckets, cumulative when rendered).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// A histogram with these ascending upper bounds (plus `+Inf`).
    pub fn new(bounds: &'static [u64]) -> Histogram {
        assert!(
            bounds.windows(2).all(|pair| pair[0] < pair[1]),
            "bounds ascend"
        );
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn observe(&self, value: u64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// What the exposition encodes: the counts per bucket (not cumulative; the encoder adds
    /// them up), the last one `+Inf`'s. Read bucket by bucket while requests keep recording, so
    /// `count` is the buckets' total rather than the separate counter, and the two always agree.
    fn snapshot(&self) -> HistogramSnapshot {
        // Bounds are small integers (below 2^53): exact as f64.
        #[allow(clippy::cast_precision_loss)]
        let bounds = self.bounds.iter().map(|bound| *bound as f64);
        let buckets: Vec<(f64, u64)> = bounds
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            sum: self.sum.load(Ordering::Relaxed),
            count: buckets.iter().map(|(_, count)| count).sum(),
            buckets,
        }
    }
}

/// One histogram's values at a scrape, encoded by prometheus-client.
#[derive(Debug)]
struct HistogramSnapshot {
    sum: u64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for HistogramSnapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        // A sum of microseconds or request counts stays far below 2^53: exact as f64.
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum as f64;
        encoder.encode_histogram::<NoLabelSet>(sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

const LATENCY_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];
const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Every metric of one server process.
#[derive(Debug)]
pub struct Metrics {
    /// Client requests received.
    pub requests: Counter,
    /// Requests answered `overloaded` because the replica's queue was full.
    pub overloaded: Counter,
    /// Requests answered `forbidden`: the client's role may not make them.
    pub forbidden: Counter,
    /// Replies dropped because a connection's queue was full or gone.
    pub replies_dropped: Counter,
    /// Peer messages dropped because a link's queue was full.
    pub peer_messages_dropped: Counter,
    /// Peer messages refused because they broke the protocol's rules (forged or broken peer).
    pub peer_messages_refused: Counter,
    /// Peer messages received.
    pub peer_messages: Counter,
    /// Outputs the replica's outbox dropped.
    pub outbox_dropped: Counter,
    /// Error frames sent (each closes its connection).
    pub error_frames: Counter,
    /// Connections accepted.
    pub connections: Counter,
    /// Peer links (re)established by this replica.
    pub peer_links: Counter,
    /// Peer links refused for a configuration mismatch (by either end, counted at this one).
    pub peer_config_mismatches: Counter,
    /// The configuration mismatches that refuse peer links now.
    pub config_mismatches: ConfigMismatches,
    /// Connections refused at once: their IP address held its maximum.
    pub connections_refused_address: Counter,
    /// Client hellos refused: every session slot was taken.
    pub connections_refused_sessions: Counter,
    /// Peer handshakes refused: every reserved peer slot was taken.
    pub connections_refused_peers: Counter,
    /// Unidentified connections closed to make room for newer ones.
    pub connections_evicted: Counter,
    /// Metrics-port connections closed to make room for newer ones.
    pub metrics_connections_evicted: Counter,
    /// Connections closed for no TLS handshake and first frame in time.
    pub handshake_timeouts: Counter,
    /// Client sessions closed for being idle.
    pub idle_timeouts: Counter,
    /// Connections (client or peer) closed for a frame arriving too slowly.
    pub slow_frames: Counter,
    /// Requests answered invalid (internal commands, reads with an unreachable `min_op`).
    pub requests_invalid: Counter,
    /// Requests per client frame.
    pub request_batch: Histogram,
    /// Microseconds from a request's frame arriving to its reply being written.
    pub request_latency_us: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Counter::default(),
            overloaded: Counter::default(),
            forbidden: Counter::default(),
            replies_dropped: Counter::default(),
            peer_messages_dropped: Counter::default(),
            peer_messages_refused: Counter::default(),
            peer_messages: Counter::default(),
            outbox_dropped: Counter::default(),
            error_frames: Counter::default(),
            connections: Counter::default(),
            peer_links: Counter::default(),
            peer_config_mismatches: Counter::default(),
            config_mismatches: ConfigMismatches::default(),
            connections_refused_address: Counter::default(),
            connections_refused_sessions: Counter::default(),
            connections_refused_peers: Counter::default(),
            connections_evicted: Counter::default(),
            metrics_connections_evicted: Counter::default(),
            handshake_timeouts: Counter::default(),
            idle_timeouts: Counter::default(),
            slow_frames: Counter::default(),
            requests_invalid: Counter::default(),
            request_batch: Histogram::new(BATCH_BOUNDS),
            request_latency_us: Histogram::new(LATENCY_BOUNDS_US),
        }
    }
}

/// A counter's exposition: its name (as scraped, with `_total`), help and value.
type CounterRow<'a> = (&'static str, &'static str, &'a Counter);

impl Metrics {
    /// The exposition (`OpenMetrics` text, which Prometheus scrapes) of every metric and of
    /// `state`. A scrape builds its own registry of constant values: recording stays on the
    /// plain atomics above and never meets the registry's locks.
    pub fn render(&self, state: &ReplicaState, replica_index: u8, core: &CoreConfig) -> String {
        let mut registry = Registry::default();
        register_state(&mut registry, state, replica_index);
        register_tables(&mut registry, core, &state.tables);
        for (name, help, counter) in self.counters().into_iter().chain(self.limit_counters()) {
            // prometheus-client adds the `_total` of a counter's samples itself.
            let family = name
                .strip_suffix("_total")
                .expect("counter names end in _total");
            registry.register(family, help, ConstCounter::new(counter.get()));
        }
        registry.register(
            "allocdb_peer_config_mismatch",
            "Peers whose links are refused for a configuration mismatch now",
            ConstGauge::new(self.config_mismatches.peers()),
        );
        registry.register(
            "allocdb_request_batch_size",
            "Requests per client frame",
            self.request_batch.snapshot(),
        );
        registry.register(
            "allocdb_request_latency_us",
            "Request latency in microseconds, frame in to reply out",
            self.request_latency_us.snapshot(),
        );
        let mut out = String::with_capacity(8192);
        text::encode(&mut out, &registry).expect("writing to a String never fails");
        out
    }

    /// The traffic counters, in exposition order. Help texts end without a period: the
    /// registry adds it.
    fn counters(&self) -> [CounterRow<'_>; 12] {
        [
            (
                "allocdb_requests_total",
                "Client requests received",
                &self.requests,
            ),
            (
                "allocdb_overloaded_total",
                "Requests answered overloaded",
                &self.overloaded,
            ),
            (
                "allocdb_forbidden_total",
                "Requests answered forbidden (the client's role may not make them)",
                &self.forbidden,
            ),
            (
                "allocdb_replies_dropped_total",
                "Replies dropped (connection queue full or gone)",
                &self.replies_dropped,
            ),
            (
                "allocdb_peer_messages_total",
                "Peer messages received",
                &self.peer_messages,
            ),
            (
                "allocdb_peer_messages_dropped_total",
                "Peer messages dropped (link queue full)",
                &self.peer_messages_dropped,
            ),
            (
                "allocdb_peer_messages_refused_total",
                "Peer messages refused: they broke the protocol's rules (forged or broken peer)",
                &self.peer_messages_refused,
            ),
            (
                "allocdb_outbox_dropped_total",
                "Replica outputs dropped (outbox full)",
                &self.outbox_dropped,
            ),
            (
                "allocdb_error_frames_total",
                "Error frames sent",
                &self.error_frames,
            ),
            (
                "allocdb_connections_total",
                "Connections accepted",
                &self.connections,
            ),
            (
                "allocdb_peer_links_total",
                "Outbound peer links established",
                &self.peer_links,
            ),
            (
                "allocdb_peer_config_mismatches_total",
                "Peer links refused for a configuration mismatch",
                &self.peer_config_mismatches,
            ),
        ]
    }

    /// The refusals and timeouts of the connection limits (`crate::admission`).
    fn limit_counters(&self) -> [CounterRow<'_>; 9] {
        [
            (
                "allocdb_connections_refused_address_total",
                "Connections refused: too many from one address",
                &self.connections_refused_address,
            ),
            (
                "allocdb_connections_refused_sessions_total",
                "Client sessions refused: every session slot taken",
                &self.connections_refused_sessions,
            ),
            (
                "allocdb_connections_refused_peers_total",
                "Peer links refused: every reserved peer slot taken",
                &self.connections_refused_peers,
            ),
            (
                "allocdb_connections_evicted_total",
                "Connections closed before identifying themselves, to make room for newer ones",
                &self.connections_evicted,
            ),
            (
                "allocdb_metrics_connections_evicted_total",
                "Metrics-port connections closed before their answer, to make room for newer ones",
                &self.metrics_connections_evicted,
            ),
            (
                "allocdb_handshake_timeouts_total",
                "Connections closed: no TLS handshake and first frame in time",
                &self.handshake_timeouts,
            ),
            (
                "allocdb_idle_timeouts_total",
                "Client sessions closed for idleness",
                &self.idle_timeouts,
            ),
            (
                "allocdb_slow_frames_total",
                "Connections closed: a frame arrived below the minimum rate",
                &self.slow_frames,
            ),
            (
                "allocdb_requests_invalid_total",
                "Requests answered invalid (internal commands, reads whose min_op is out of reach)",
                &self.requests_invalid,
            ),
        ]
    }
}

/// A gauge per label value (`role`, `table`), set once per scrape.
type LabeledGauges = Family<[(&'static str, &'static str); 1], Gauge<u64, AtomicU64>>;

fn register_state(registry: &mut Registry, state: &ReplicaState, replica_index: u8) {
    let roles = LabeledGauges::default();
    for role in Role::ALL {
        roles
            .get_or_create(&[("role", role.name())])
            .set(u64::from(role == state.role));
    }
    registry.register(
        "allocdb_role",
        "The replica's role (1 for the current one)",
        roles,
    );
    let gauges = [
        (
            "allocdb_replica_index",
            "This replica's index",
            u64::from(replica_index),
        ),
        ("allocdb_view", "The replica's view", state.view),
        ("allocdb_op", "The last op in the replica's log", state.op),
        (
            "allocdb_commit_op",
            "The highest op known committed",
            state.commit,
        ),
        (
            "allocdb_applied_op",
            "The highest op applied to the state machine",
            state.applied,
        ),
        (
            "allocdb_slot",
            "The logical slot of the last applied batch",
            state.slot,
        ),
        (
            "allocdb_expiry_due_leases",
            "Leases past their deadline not yet expired (capped at one batch)",
            u64::from(state.expiry_due),
        ),
        (
            "allocdb_expiry_lag_slots",
            "Slots between the oldest unexpired deadline and the last applied slot",
            state.expiry_lag_slots,
        ),
    ];
    for (name, help, value) in gauges {
        registry.register(name, help, ConstGauge::new(value));
    }
}

fn register_tables(registry: &mut Registry, core: &CoreConfig, usage: &TableUsage) {
    // (table, capacity, rows in use): utilisation is rows / capacity; alarm well before 1.
    let tables = [
        ("resources", core.resources_max, usage.resources),
        ("pools", core.pools_max, usage.pools),
        // Live leases and their members: what refuses a reserve when full.
        ("leases", core.leases_max, usage.leases),
        ("lease_members", core.lease_members_max, usage.lease_members),
        // Terminal leases kept best-effort in the rows live ones do not use; never refuses.
        ("lease_history", core.leases_max, usage.lease_history),
        (
            "lease_history_members",
            core.lease_members_max,
            usage.lease_history_members,
        ),
        // Exactly-once bookkeeping: full tables forget their oldest entries, never refuse.
        ("operations", core.operations_max, usage.operations),
        ("sessions", core.clients_max, usage.sessions),
    ];
    let capacity = LabeledGauges::default();
    let rows = LabeledGauges::default();
    for (table, table_capacity, table_rows) in tables {
        capacity
            .get_or_create(&[("table", table)])
            .set(u64::from(table_capacity));
        rows.get_or_create(&[("table", table)])
            .set(u64::from(table_rows));
    }
    registry.register(
        "allocdb_table_capacity",
        "Rows allocated per core table",
        capacity,
    );
    registry.register("allocdb_table_rows", "Rows in use per core table", rows);
}

/// What the metrics endpoint needs.
pub struct MetricsContext {
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The replica's published state.
    pub state: watch::Receiver<ReplicaState>,
    /// This replica's index.
    pub replica_index: u8,
    /// The core's limits (table capacities).
    pub core: CoreConfig,
    /// How far `applied` may trail `commit` for `/health` to answer 200 (one pipeline).
    pub health_lag_ops_max: u64,
}

/// What a probe endpoint answers: 200 (`true`) or 503, and the one-line JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeAnswer {
    /// Whether the answer is 200.
    pub ok: bool,
    /// The body (one JSON object and a newline).
    pub body: String,
}

fn probe_answer(ok: bool, status: &str, state: &ReplicaState) -> ProbeAnswer {
    let body = format!(
        "{{\"status\":\"{status}\",\"role\":\"{}\",\"view\":{},\"op\":{},\"commit\":{},\"applied\":{}}}\n",
        state.role.name(),
        state.view,
        state.op,
        state.commit,
        state.applied
    );
    ProbeAnswer { ok, body }
}

/// `GET /health` with the configuration mismatch that refuses peer links now, if any: 503
/// `config_mismatch` (naming it) unless the replica is halted or stopping, which say more.
pub fn readiness_with(
    state: &ReplicaState,
    shutting_down: bool,
    lag_ops_max: u64,
    config_mismatch: Option<&str>,
) -> ProbeAnswer {
    let answer = readiness(state, shutting_down, lag_ops_max);
    let Some(mismatch) = config_mismatch else {
        return answer;
    };
    if state.role == Role::Halted || shutting_down {
        return answer;
    }
    let mut body = probe_answer(false, "config_mismatch", state).body;
    let closing = body.rfind('}').expect("a JSON object");
    body.insert_str(
        closing,
        &format!(",\"config_mismatch\":{}", json_string(mismatch)),
    );
    ProbeAnswer { ok: false, body }
}

/// `GET /health`: whether this replica is ready to serve as a full member of the cluster.
///
/// 200 (`ready`) while it is primary or backup and has applied every op it knows committed
/// up to `lag_ops_max` behind; 503 otherwise, naming why: `halted`, `shutting_down`,
/// `view_change`, `recovering` or `lagging` (`commit - applied > lag_ops_max`, e.g. a
/// restarted backup still repairing its log).
pub fn readiness(state: &ReplicaState, shutting_down: bool, lag_ops_max: u64) -> ProbeAnswer {
    debug_assert!(state.applied <= state.commit, "applied never passes commit");
    let status = if shutting_down && state.role != Role::Halted {
        "shutting_down"
    } else if !state.role.is_normal() {
        state.role.name()
    } else if state.commit.saturating_sub(state.applied) > lag_ops_max {
        "lagging"
    } else {
        "ready"
    };
    probe_answer(status == "ready", status, state)
}

/// `GET /health/live`: whether the process should be left running.
///
/// 200 (`alive`) unless the replica halted (`halted`: restart it) or the process is stopping
/// (`shutting_down`).
pub fn liveness(state: &ReplicaState, shutting_down: bool) -> ProbeAnswer {
    let status = if state.role == Role::Halted {
        "halted"
    } else if shutting_down {
        "shutting_down"
    } else {
        "alive"
    };
    probe_answer(status == "alive", status, state)
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown`, at most
/// [`METRICS_CONNECTIONS_MAX`] connections at once (a new one closes the oldest).
pub async fn serve(
    listener: net::TcpListener,
    context: Arc<MetricsContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Oldest first; aborting a task drops its stream, which closes the connection.
    let mut open: VecDeque<tokio::task::JoinHandle<()>> =
        VecDeque::with_capacity(METRICS_CONNECTIONS_MAX);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(net::ACCEPT_RETRY_PAUSE).await;
                    continue;
                };
                open.retain(|task| !task.is_finished());
                if open.len() == METRICS_CONNECTIONS_MAX {
                    let oldest = open.pop_front().expect("the queue is full");
                    oldest.abort();
                    context.metrics.metrics_connections_evicted.add(1);
                }
                let context = Arc::clone(&context);
                let shutting_down = *shutdown.borrow();
                open.push_back(tokio::spawn(async move {
                    let answer = respond(stream, &context, shutting_down);
                    let _ = tokio::time::timeout(HTTP_TIMEOUT, answer).await;
                }));
                assert!(open.len() <= METRICS_CONNECTIONS_MAX);
            }
        }
    }
    for task in open {
        task.abort();
    }
}

async fn respond(
    mut stream: net::TcpStream,
    context: &MetricsContext,
    shutting_down: bool,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0_u8; 512];
    // An HTTP request starts with a method, capital letters up to a space; anything else (an
    // AllocDB client's hello sent to the wrong port: "ALDB" and binary) is answered at once,
    // so that client learns why instead of waiting for a blank line that never comes.
    let not_http = |head: &[u8]| {
        let method = head.iter().take_while(|byte| **byte != b' ');
        method.clone().any(|byte| !byte.is_ascii_uppercase()) || method.count() > 7
    };
    while !head.windows(4).any(|w| w == b"\r\n\r\n")
        && !head.windows(2).any(|w| w == b"\n\n")
        && !not_http(&head)
    {
        let read = stream.read(&mut chunk).await?;
        if read == 0 || head.len() + read > HTTP_REQUEST_BYTES_MAX {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let state = *context.state.borrow();
    let (status, content_type, body) = match (method, path) {
        _ if not_http(&head) => (
            "400 Bad Request",
            "text/plain",
            "not HTTP: this is an AllocDB replica's metrics port (GET /metrics, /health, \
             /health/live); clients and peers connect to its client port\n"
                .to_string(),
        ),
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            context
                .metrics
                .render(&state, context.replica_index, &context.core),
        ),
        ("GET", "/health") => {
            let mismatch = context.metrics.config_mismatches.summary();
            probe_response(readiness_with(
                &state,
                shutting_down,
                context.health_lag_ops_max,
                mismatch.as_deref(),
            ))
        }
        ("GET", "/health/live") => probe_response(liveness(&state, shutting_down)),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics, /health or /health/live\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn probe_response(answer: ProbeAnswer) -> (&'static str, &'static str, String) {
    let status = if answer.ok {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    (status, "application/json", answer.body)
}

#[cfg(test)]
mod tests {
    use super::{Histogram, Metrics, liveness, readiness, readiness_with, register_tables};
    use crate::driver::ReplicaState;
    use allocdb_core::{Config, TableUsage};
    use allocdb_vsr::frame::Role;
    use prometheus_client::encoding::text;
    use prometheus_client::registry::Registry;

    fn state(role: Role, op: u64, commit: u64, applied: u64) -> ReplicaState {
        ReplicaState {
            role,
            view: 3,
            primary_index: 0,
            op,
            commit,
            applied,
            expiry_due: 0,
            expiry_lag_slots: 0,
            slot: 0,
            tables: TableUsage::default(),
        }
    }

    #[test]
    fn a_configuration_mismatch_makes_a_ready_replica_unready_naming_it() {
        let ready = state(Role::Primary, 120, 120, 120);
        assert_eq!(
            readiness_with(&ready, false, 8, None),
            readiness(&ready, false, 8)
        );
        let answer = readiness_with(&ready, false, 8, Some("peer 2's \"list\""));
        assert!(!answer.ok);
        assert_eq!(
            answer.body,
            "{\"status\":\"config_mismatch\",\"role\":\"primary\",\"view\":3,\"op\":120,\"commit\":120,\"applied\":120,\"config_mismatch\":\"peer 2's \\\"list\\\"\"}\n"
        );
        // Halted and stopping say more about what to do than the mismatch.
        let halted = state(Role::Halted, 120, 120, 120);
        let answer = readiness_with(&halted, false, 8, Some("x"));
        assert!(
            answer.body.starts_with("{\"status\":\"halted\""),
            "{}",
            answer.body
        );
        let answer = readiness_with(&ready, true, 8, Some("x"));
        assert!(
            answer.body.starts_with("{\"status\":\"shutting_down\""),
            "{}",
            answer.body
        );
    }

    #[test]
    fn readiness_needs_a_normal_role_and_a_caught_up_log() {
        let cases = [
            (state(Role::Primary, 120, 120, 120), false, true, "ready"),
            (state(Role::Backup, 128, 120, 120), false, true, "ready"),
            // Exactly one pipeline behind is still ready; one more op is not.
            (state(Role::Backup, 120, 128, 120), false, true, "ready"),
            (state(Role::Backup, 120, 129, 120), false, false, "lagging"),
            // A backup whose log reached commit but has not applied it yet lags too.
            (
                state(Role::Backup, 6000, 6000, 4000),
                false,
                false,
                "lagging",
            ),
            (
                state(Role::ViewChange, 120, 120, 120),
                false,
                false,
                "view_change",
            ),
            (
                state(Role::Recovering, 120, 120, 120),
                false,
                false,
                "recovering",
            ),
            (state(Role::Halted, 120, 120, 120), false, false, "halted"),
            (state(Role::Halted, 120, 120, 120), true, false, "halted"),
            (
                state(Role::Primary, 120, 120, 120),
                true,
                false,
                "shutting_down",
            ),
        ];
        for (state, shutting_down, ok, status) in cases {
            let answer = readiness(&state, shutting_down, 8);
            assert_eq!(answer.ok, ok, "{state:?} shutting_down={shutting_down}");
            let expected = format!(
                "{{\"status\":\"{status}\",\"role\":\"{}\",\"view\":3,\"op\":{},\"commit\":{},\"applied\":{}}}\n",
                state.role.name(),
                state.op,
                state.commit,
                state.applied
            );
            assert_eq!(answer.body, expected);
        }
    }

    #[test]
    fn liveness_fails_only_when_halted_or_stopping() {
        for role in Role::ALL {
            let answer = liveness(&state(role, 5, 900, 1), false);
            assert_eq!(answer.ok, role != Role::Halted, "{role:?}");
            let expected = if role == Role::Halted {
                "halted"
            } else {
                "alive"
            };
            assert!(
                answer
                    .body
                    .starts_with(&format!("{{\"status\":\"{expected}\"")),
                "{}",
                answer.body
            );
        }
        let stopping = liveness(&state(Role::Backup, 5, 5, 5), true);
        assert!(!stopping.ok && stopping.body.contains("shutting_down"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_upper_bounds() {
        static BOUNDS: &[u64] = &[1, 10, 100];
        let histogram = Histogram::new(BOUNDS);
        for value in [0, 1, 2, 10, 11, 1000] {
            histogram.observe(value);
        }
        let mut registry = Registry::default();
        registry.register("h", "help", histogram.snapshot());
        let mut out = String::new();
        text::encode(&mut out, &registry).unwrap();
        for expected in [
            "# TYPE h histogram\n",
            "h_bucket{le=\"1.0\"} 2\n",
            "h_bucket{le=\"10.0\"} 4\n",
            "h_bucket{le=\"100.0\"} 5\n",
            "h_bucket{le=\"+Inf\"} 6\n",
            "h_sum 1024.0\n",
            "h_count 6\n",
        ] {
            assert!(out.contains(expected), "missing {expected} in\n{out}");
        }
    }

    #[test]
    fn the_exposition_keeps_the_documented_names() {
        let metrics = Metrics::default();
        metrics.requests.add(3);
        metrics.outbox_dropped.set(9);
        metrics.request_latency_us.observe(120);
        let out = metrics.render(&state(Role::Backup, 5, 4, 4), 2, &Config::small());
        for expected in [
            "# TYPE allocdb_requests counter\n",
            "allocdb_requests_total 3\n",
            "allocdb_outbox_dropped_total 9\n",
            "allocdb_connections_evicted_total 0\n",
            "allocdb_requests_invalid_total 0\n",
            "allocdb_role{role=\"backup\"} 1\n",
            "allocdb_role{role=\"primary\"} 0\n",
            "allocdb_replica_index 2\n",
            "allocdb_view 3\n",
            "allocdb_commit_op 4\n",
            "allocdb_peer_config_mismatch 0\n",
            "# HELP allocdb_requests Client requests received.\n",
            "allocdb_request_latency_us_bucket{le=\"250.0\"} 1\n",
            "allocdb_request_latency_us_count 1\n",
            "allocdb_request_batch_size_count 0\n",
        ] {
            assert!(out.contains(expected), "missing {expected} in\n{out}");
        }
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn tables_report_capacity_and_rows_in_use() {
        let config = Config::small();
        let usage = TableUsage {
            resources: 3,
            pools: 1,
            leases: 2,
            lease_history: 4,
            lease_members: 5,
            lease_history_members: 6,
            operations: 7,
            sessions: 8,
        };
        let mut registry = Registry::default();
        register_tables(&mut registry, &config, &usage);
        let mut out = String::new();
        text::encode(&mut out, &registry).unwrap();
        for expected in [
            format!(
                "allocdb_table_capacity{{table=\"leases\"}} {}",
                config.leases_max
            ),
            "allocdb_table_rows{table=\"resources\"} 3".to_string(),
            "allocdb_table_rows{table=\"lease_members\"} 5".to_string(),
            "allocdb_table_rows{table=\"operations\"} 7".to_string(),
            "allocdb_table_rows{table=\"sessions\"} 8".to_string(),
            format!(
                "allocdb_table_capacity{{table=\"sessions\"}} {}",
                config.clients_max
            ),
            "allocdb_table_rows{table=\"lease_history\"} 4".to_string(),
            "allocdb_table_rows{table=\"lease_history_members\"} 6".to_string(),
        ] {
            assert!(out.contains(&expected), "missing {expected} in\n{out}");
        }
    }
}
