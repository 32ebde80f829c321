//! Every bound and timeout of a replica, fixed at start-up and validated before use.

use allocdb_core::Config as CoreConfig;
use allocdb_wal::WalConfig;

pub use allocdb_protocol::REPLICAS_MAX;

/// The most bytes of prepares one repair reply may carry (`repair_ops_max *
/// batch_bytes_max`): a reply is produced in one call into the replica, so it must fit a
/// driver's outbox and socket buffers.
pub const REPAIR_REPLY_BYTES_MAX: u64 = 64 << 20;

/// A replica's configuration. Every queue, message and timeout named here is a hard limit.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Which cluster this replica belongs to; every record header carries it.
    pub cluster_id: u128,
    /// This replica's index, `0..replica_count`.
    pub replica_index: u8,
    /// 1, 3 or 5.
    pub replica_count: u8,
    /// The allocator's limits (identical on every replica).
    pub core: CoreConfig,
    /// The log's limits.
    pub wal: WalConfig,
    /// Prepares the primary may have in flight beyond its commit point.
    pub pipeline_prepares_max: u32,
    /// Client requests in one prepare (expirations come on top, up to the core's limit).
    pub batch_requests_max: u32,
    /// Encoded bytes of one prepare's body.
    pub batch_bytes_max: u32,
    /// Client writes the primary queues while the pipeline is full; beyond it: `Overloaded`.
    pub request_queue_max: u32,
    /// Linearizable reads waiting for confirmation; beyond it: `Overloaded`.
    pub read_queue_max: u32,
    /// Log entries (headers and bodies) carried by one `do_view_change` or `start_view`.
    pub suffix_ops_max: u32,
    /// Headers carried by one `headers` reply.
    pub headers_max: u32,
    /// Prepares one repair request asks for (and one repair reply sends, one message per
    /// op, each at most `batch_bytes_max`): `repair_ops_max * batch_bytes_max` is limited to
    /// [`REPAIR_REPLY_BYTES_MAX`].
    pub repair_ops_max: u32,
    /// Repair requests (`request_prepares`) a lagging backup keeps outstanding: the next one
    /// goes out as soon as a reply is absorbed, and `resend_interval_ticks` only retries lost
    /// ones. The backup also buffers up to `repair_ops_max * repair_requests_in_flight_max`
    /// prepares that arrive beyond a gap in its log, instead of dropping them.
    pub repair_requests_in_flight_max: u32,
    /// A backup at least this many ops behind the primary's commit point gets a state
    /// transfer (the checkpoint) instead of ops: the primary takes a fresh checkpoint first
    /// if its last one is not this far ahead of the backup (at most one per this many ops
    /// committed), and the backup keeps a single request in flight meanwhile. A snapshot
    /// above `snapshot_bytes_max` falls back to ops. 0: state transfer only for ops no
    /// longer retained (always done).
    pub repair_state_transfer_ops_min: u64,
    /// A new primary whose log cannot be joined to the chosen `do_view_change` log fetches
    /// up to this many canonical entries from the claimants (held in memory until the view
    /// starts); 0 turns fetching off (the view then times out to the next primary).
    pub view_change_fetch_ops_max: u32,
    /// Take a checkpoint once this many ops were applied since the last one.
    pub checkpoint_interval_ops: u64,
    /// The largest snapshot a state transfer may carry.
    pub snapshot_bytes_max: u32,
    /// Primary: ticks between commit heartbeats.
    pub heartbeat_interval_ticks: u64,
    /// Backup: ticks without a word from the primary before starting a view change.
    pub primary_timeout_ticks: u64,
    /// Ticks a view change may take before moving on to the next view.
    pub view_change_timeout_ticks: u64,
    /// Primary: ticks without hearing a quorum before it abdicates (stops serving).
    pub primary_abdicate_ticks: u64,
    /// Ticks between repair requests, prepare resends and view-change resends.
    pub resend_interval_ticks: u64,
    /// A read waiting longer than this is answered `ReadTimeout`.
    pub read_timeout_ticks: u64,
    /// Random extra ticks (0..=jitter) added to election timeouts so replicas do not collide.
    pub timeout_jitter_ticks: u64,
    /// Seed of the replica's only source of randomness (timeout jitter).
    pub seed: u64,
    /// Applied ops kept for an observer ([`crate::Replica::applied_since`]); 0 turns it off.
    pub applied_trace_max: u32,
    /// How much faster than real time this machine's monotonic clock may run, in parts per
    /// million. A primary steps its elapsed time down by this bound (see [`crate::PrimaryClock`]), so
    /// a clock that runs fast by up to it never expires a lease early; every ppm costs that
    /// much lateness on a clock that runs true. A property of the machine, so it need not match
    /// across replicas. At most [`CLOCK_DRIFT_PPM_LIMIT`].
    pub clock_drift_ppm_max: u32,
}

/// The default [`ReplicaConfig::clock_drift_ppm_max`]: 1 %. Quartz oscillators drift by tens
/// of ppm and NTP slews a clock by at most 500 ppm, so 1 % leaves a wide margin while making a
/// lease expire at most 1 % late on a true clock.
pub const CLOCK_DRIFT_PPM_DEFAULT: u32 = 10_000;

/// The largest [`ReplicaConfig::clock_drift_ppm_max`] accepted: a clock running at twice real
/// speed is broken, not drifting.
pub const CLOCK_DRIFT_PPM_LIMIT: u32 = 1_000_000;

/// Why a [`ReplicaConfig`] was refused; names the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// What is wrong, naming the field(s).
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replica config: {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl ReplicaConfig {
    /// Defaults for a replica of a `replica_count` cluster, sized for tests and the embedded
    /// single-replica mode; servers override what they need.
    pub fn new(cluster_id: u128, replica_index: u8, replica_count: u8) -> ReplicaConfig {
        ReplicaConfig {
            cluster_id,
            replica_index,
            replica_count,
            core: CoreConfig::small(),
            wal: WalConfig::new(cluster_id),
            pipeline_prepares_max: 8,
            batch_requests_max: 256,
            batch_bytes_max: 64 * 1024,
            request_queue_max: 1024,
            read_queue_max: 256,
            suffix_ops_max: 32,
            headers_max: 64,
            repair_ops_max: 64,
            repair_requests_in_flight_max: 4,
            repair_state_transfer_ops_min: 4096,
            view_change_fetch_ops_max: 1024,
            checkpoint_interval_ops: 1024,
            snapshot_bytes_max: 64 * 1024 * 1024,
            heartbeat_interval_ticks: 5,
            primary_timeout_ticks: 40,
            view_change_timeout_ticks: 40,
            primary_abdicate_ticks: 30,
            resend_interval_ticks: 6,
            read_timeout_ticks: 200,
            timeout_jitter_ticks: 20,
            seed: u64::from(replica_index),
            applied_trace_max: 0,
            clock_drift_ppm_max: CLOCK_DRIFT_PPM_DEFAULT,
        }
    }

    /// The replica count that forms a majority.
    pub fn quorum(&self) -> u8 {
        crate::quorum::majority(self.replica_count)
    }

    /// Checks every field and the relations between them.
    ///
    /// # Errors
    /// The first problem found, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| Err(ConfigError { reason });
        if !matches!(self.replica_count, 1 | 3 | 5) {
            return fail(format!(
                "replica_count {} must be 1, 3 or 5",
                self.replica_count
            ));
        }
        if self.replica_index >= self.replica_count {
            return fail(format!(
                "replica_index {} must be below replica_count {}",
                self.replica_index, self.replica_count
            ));
        }
        if self.wal.cluster_id != self.cluster_id {
            return fail("wal.cluster_id differs from cluster_id".to_string());
        }
        if let Err(error) = self.core.validate() {
            return fail(format!("core: {error}"));
        }
        let counts = [
            (
                "pipeline_prepares_max",
                u64::from(self.pipeline_prepares_max),
            ),
            ("batch_requests_max", u64::from(self.batch_requests_max)),
            ("batch_bytes_max", u64::from(self.batch_bytes_max)),
            ("request_queue_max", u64::from(self.request_queue_max)),
            ("read_queue_max", u64::from(self.read_queue_max)),
            ("suffix_ops_max", u64::from(self.suffix_ops_max)),
            ("headers_max", u64::from(self.headers_max)),
            ("repair_ops_max", u64::from(self.repair_ops_max)),
            (
                "repair_requests_in_flight_max",
                u64::from(self.repair_requests_in_flight_max),
            ),
            ("checkpoint_interval_ops", self.checkpoint_interval_ops),
            ("heartbeat_interval_ticks", self.heartbeat_interval_ticks),
            ("primary_timeout_ticks", self.primary_timeout_ticks),
            ("view_change_timeout_ticks", self.view_change_timeout_ticks),
            ("primary_abdicate_ticks", self.primary_abdicate_ticks),
            ("resend_interval_ticks", self.resend_interval_ticks),
            ("read_timeout_ticks", self.read_timeout_ticks),
        ];
        for (field, value) in counts {
            if value == 0 {
                return fail(format!("{field} must be at least 1"));
            }
        }
        let room = self.core.batch_requests_max - self.core.expirations_per_batch_max;
        if self.batch_requests_max > room {
            return fail(format!(
                "batch_requests_max {} exceeds core.batch_requests_max - core.expirations_per_batch_max = {room}",
                self.batch_requests_max
            ));
        }
        if self.batch_bytes_max > self.wal.body_bytes_max {
            return fail("batch_bytes_max exceeds wal.body_bytes_max".to_string());
        }
        let minimum_batch = allocdb_core::codec::batch_encoded_bytes_max(1)
            + allocdb_core::codec::batch_encoded_bytes_max(self.core.expirations_per_batch_max);
        if u64::from(self.batch_bytes_max) < minimum_batch {
            return fail(format!(
                "batch_bytes_max {} cannot hold one request plus a full set of expirations ({minimum_batch})",
                self.batch_bytes_max
            ));
        }
        self.validate_repair()?;
        if self.clock_drift_ppm_max > CLOCK_DRIFT_PPM_LIMIT {
            return fail(format!(
                "clock_drift_ppm_max {} exceeds {CLOCK_DRIFT_PPM_LIMIT} (a clock at twice real speed)",
                self.clock_drift_ppm_max
            ));
        }
        if self.suffix_ops_max < self.pipeline_prepares_max {
            return fail("suffix_ops_max must be at least pipeline_prepares_max".to_string());
        }
        if self.heartbeat_interval_ticks >= self.primary_timeout_ticks {
            return fail(
                "heartbeat_interval_ticks must be below primary_timeout_ticks".to_string(),
            );
        }
        if self.heartbeat_interval_ticks >= self.primary_abdicate_ticks {
            return fail(
                "heartbeat_interval_ticks must be below primary_abdicate_ticks".to_string(),
            );
        }
        if self.wal.log_ops_max < self.checkpoint_interval_ops + 4 * u64::from(self.suffix_ops_max)
        {
            return fail(
                "wal.log_ops_max must exceed checkpoint_interval_ops + 4 * suffix_ops_max"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// The repair window must fit a message budget and the log.
    fn validate_repair(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| Err(ConfigError { reason });
        let repair_bytes = u64::from(self.repair_ops_max) * u64::from(self.batch_bytes_max);
        if repair_bytes > REPAIR_REPLY_BYTES_MAX {
            return fail(format!(
                "repair_ops_max {} * batch_bytes_max {} exceeds {REPAIR_REPLY_BYTES_MAX} bytes per repair reply",
                self.repair_ops_max, self.batch_bytes_max
            ));
        }
        let repair_window =
            u64::from(self.repair_ops_max) * u64::from(self.repair_requests_in_flight_max);
        if repair_window > self.wal.log_ops_max {
            return fail(format!(
                "repair_ops_max * repair_requests_in_flight_max = {repair_window} exceeds wal.log_ops_max {}",
                self.wal.log_ops_max
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ReplicaConfig;

    #[test]
    fn defaults_are_valid_for_every_cluster_size() {
        for count in [1_u8, 3, 5] {
            for index in 0..count {
                assert_eq!(ReplicaConfig::new(7, index, count).validate(), Ok(()));
            }
        }
    }

    type Mutation = fn(&mut ReplicaConfig);

    #[test]
    fn each_bad_field_is_named() {
        let cases: [(&str, Mutation); 10] = [
            ("replica_count", |c| c.replica_count = 2),
            ("clock_drift_ppm_max", |c| c.clock_drift_ppm_max = 1_000_001),
            ("replica_index", |c| c.replica_index = 3),
            ("pipeline_prepares_max", |c| c.pipeline_prepares_max = 0),
            ("batch_requests_max", |c| c.batch_requests_max = 100_000),
            ("suffix_ops_max", |c| c.suffix_ops_max = 1),
            ("wal.cluster_id", |c| c.wal.cluster_id = 99),
            ("repair_requests_in_flight_max", |c| {
                c.repair_requests_in_flight_max = 0;
            }),
            ("repair_ops_max", |c| c.repair_ops_max = 100_000),
            ("repair_requests_in_flight_max", |c| {
                c.repair_requests_in_flight_max = 1_000_000;
            }),
        ];
        for (field, mutate) in cases {
            let mut config = ReplicaConfig::new(7, 0, 3);
            mutate(&mut config);
            let error = config.validate().expect_err(field);
            assert!(error.reason.contains(field), "{field}: {error}");
        }
    }
}
