//! The cluster settings file: everything that must be identical on every replica of a cluster
//! (identity, slot length, tick length, the core's limits, the protocol's limits and timeouts),
//! written once by `allocdb format` and read, checksummed, by `allocdb start`.
//!
//! Layout (little-endian, through `allocdb_core::wire`): `magic: u32` ("ALDS"),
//! `version: u16`, then the fields in [`ClusterSettings::encode`] order, then `crc32c: u32` of
//! everything before it. A missing, truncated, corrupted or unknown-version file is refused
//! with an error naming the file and the problem: the server never guesses its limits.

use std::path::{Path, PathBuf};

use allocdb_core::{Config as CoreConfig, DecodeError, Reader, Writer};
use allocdb_vsr::{ConfigError, ReplicaConfig};

/// The settings file's name inside a data directory.
pub const SETTINGS_FILE: &str = "cluster.settings";
/// The log's subdirectory inside a data directory.
pub const WAL_DIR: &str = "wal";
const SETTINGS_MAGIC: u32 = u32::from_le_bytes(*b"ALDS");
const SETTINGS_VERSION: u16 = 2;

/// Settings shared by every replica of a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// Which cluster.
    pub cluster_id: u128,
    /// 1, 3 or 5.
    pub replica_count: u8,
    /// The replica this data directory belongs to.
    pub replica_index: u8,
    /// Length of a slot (the unit of TTLs and logical time).
    pub slot_ms: u64,
    /// Length of a replica tick (the unit of protocol timeouts).
    pub tick_ms: u64,
    /// Protocol and core limits; `replica_index` and `seed` are per replica.
    pub replica: ReplicaConfig,
}

/// Why settings could not be read or are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Cluster id 0, which the wire reserves for "any cluster".
    #[error("cluster id 0 is reserved (it means \"any cluster\" on the wire)")]
    ReservedClusterId,
    /// A zero slot or tick length.
    #[error("slot_ms and tick_ms must be at least 1")]
    ZeroTimeUnit,
    /// The replica's own validation refused the limits.
    #[error(transparent)]
    Replica(#[from] ConfigError),
    /// The settings file could not be written (or the directory synced).
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The settings file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The settings file could not be read: usually not a data directory at all.
    #[error(
        "cannot read {}: {source} (is this a data directory made by `allocdb format`?)",
        .path.display()
    )]
    Read {
        /// The settings file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file's bytes do not decode (truncated, checksum, unknown version).
    #[error("{} is corrupt: {source}", .path.display())]
    Corrupt {
        /// The settings file.
        path: PathBuf,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// The file decodes but holds settings that do not validate.
    #[error("{}: {source}", .path.display())]
    Invalid {
        /// The settings file.
        path: PathBuf,
        /// The first invalid value.
        source: Box<SettingsError>,
    },
}

/// The slot length `allocdb format` uses unless told otherwise.
pub const SLOT_MS_DEFAULT: u64 = 10;
/// The tick length `allocdb format` uses unless told otherwise.
pub const TICK_MS_DEFAULT: u64 = 10;
/// How long, in milliseconds, an operation id is remembered for retries unless `allocdb
/// format` is told otherwise. A retry must land inside the window to get the original outcome
/// back; 60 s outlasts a client's default 10 s call timeout plus a view change and a log
/// repair (the end-to-end test saw a 15 s write stall, which a 10 s window turned into a
/// retried reservation answered `resource_busy` by its own first execution).
pub const DEDUPE_WINDOW_MS_DEFAULT: u64 = 60_000;

/// The default dedupe window in slots of `slot_ms` (rounded up so it is never shorter than
/// [`DEDUPE_WINDOW_MS_DEFAULT`]).
pub fn default_dedupe_window_slots(slot_ms: u64) -> u64 {
    assert!(slot_ms > 0, "a slot has a length");
    let slots = DEDUPE_WINDOW_MS_DEFAULT.div_ceil(slot_ms);
    debug_assert!(slots * slot_ms >= DEDUPE_WINDOW_MS_DEFAULT);
    slots
}

/// The core limits a server uses unless `allocdb format` is told otherwise: sized for a
/// benchmark-scale single machine rather than for tests. The time windows assume
/// [`SLOT_MS_DEFAULT`]; `allocdb format` rescales the dedupe window for other slot lengths.
pub fn default_core_config() -> CoreConfig {
    CoreConfig {
        resources_max: 1 << 16,
        pools_max: 1 << 10,
        leases_max: 1 << 16,
        lease_members_max: 1 << 18,
        bundle_size_max: 16,
        operations_max: 1 << 16,
        clients_max: 1 << 10,
        session_requests_max: 1 << 10,
        ttl_slots_max: 8_640_000,
        dedupe_window_slots: default_dedupe_window_slots(SLOT_MS_DEFAULT),
        lease_history_slots: 1_000,
        expirations_per_batch_max: 64,
        batch_requests_max: 1024,
    }
}

impl ClusterSettings {
    /// Settings for replica `replica_index` of a new cluster, with server-scale protocol limits.
    pub fn new(
        cluster_id: u128,
        replica_index: u8,
        replica_count: u8,
        slot_ms: u64,
        core: CoreConfig,
    ) -> ClusterSettings {
        let mut replica = ReplicaConfig::new(cluster_id, replica_index, replica_count);
        replica.core = core;
        replica.batch_requests_max = core
            .batch_requests_max
            .saturating_sub(core.expirations_per_batch_max)
            .min(960);
        replica.batch_bytes_max = 512 * 1024;
        replica.request_queue_max = 8192;
        replica.read_queue_max = 4096;
        replica.wal.log_ops_max = 1 << 20;
        replica.checkpoint_interval_ops = 1 << 16;
        ClusterSettings {
            cluster_id,
            replica_count,
            replica_index,
            slot_ms,
            tick_ms: TICK_MS_DEFAULT,
            replica,
        }
    }

    /// The replica configuration for this data directory.
    pub fn replica_config(&self) -> ReplicaConfig {
        let mut config = self.replica.clone();
        config.cluster_id = self.cluster_id;
        config.wal.cluster_id = self.cluster_id;
        config.replica_index = self.replica_index;
        config.replica_count = self.replica_count;
        let cluster_low =
            u64::try_from(self.cluster_id & u128::from(u64::MAX)).expect("masked to 64 bits");
        config.seed = u64::from(self.replica_index) ^ cluster_low;
        config
    }

    /// Checks every field (the replica's own validation included).
    ///
    /// # Errors
    /// The first problem, naming the field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.cluster_id == 0 {
            return Err(SettingsError::ReservedClusterId);
        }
        if self.slot_ms == 0 || self.tick_ms == 0 {
            return Err(SettingsError::ZeroTimeUnit);
        }
        self.replica_config().validate()?;
        Ok(())
    }

    /// Appends the file's bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut w = Writer::new(out);
        w.u32(SETTINGS_MAGIC);
        w.u16(SETTINGS_VERSION);
        w.u128(self.cluster_id);
        w.u8(self.replica_count);
        w.u8(self.replica_index);
        w.u64(self.slot_ms);
        w.u64(self.tick_ms);
        let c = &self.replica.core;
        for value in [
            c.resources_max,
            c.pools_max,
            c.leases_max,
            c.lease_members_max,
            c.bundle_size_max,
            c.operations_max,
            c.clients_max,
            c.session_requests_max,
        ] {
            w.u32(value);
        }
        for value in [
            c.ttl_slots_max,
            c.dedupe_window_slots,
            c.lease_history_slots,
        ] {
            w.u64(value);
        }
        w.u32(c.expirations_per_batch_max);
        w.u32(c.batch_requests_max);
        let r = &self.replica;
        let counts = [
            r.pipeline_prepares_max,
            r.batch_requests_max,
            r.batch_bytes_max,
            r.request_queue_max,
            r.read_queue_max,
            r.suffix_ops_max,
            r.headers_max,
            r.repair_ops_max,
            r.snapshot_bytes_max,
            r.wal.body_bytes_max,
        ];
        for value in counts {
            w.u32(value);
        }
        let wide = [
            r.checkpoint_interval_ops,
            r.wal.log_ops_max,
            r.wal.segment_bytes_max,
            r.heartbeat_interval_ticks,
            r.primary_timeout_ticks,
            r.view_change_timeout_ticks,
            r.primary_abdicate_ticks,
            r.resend_interval_ticks,
            r.read_timeout_ticks,
            r.timeout_jitter_ticks,
        ];
        for value in wide {
            w.u64(value);
        }
        let crc = crc32c::crc32c(&out[start..]);
        Writer::new(out).u32(crc);
    }

    /// Reads the file's bytes.
    ///
    /// # Errors
    /// A wrong magic, version or checksum, or a truncated file, naming the field.
    pub fn decode(bytes: &[u8]) -> Result<ClusterSettings, DecodeError> {
        let Some((body, crc_bytes)) = bytes.split_last_chunk::<4>() else {
            return Err(DecodeError::Truncated {
                what: "settings checksum",
                offset: 0,
            });
        };
        let expected = u32::from_le_bytes(*crc_bytes);
        let actual = crc32c::crc32c(body);
        let mut r = Reader::new(body);
        let magic = r.u32("settings magic")?;
        if magic != SETTINGS_MAGIC {
            return Err(DecodeError::Invalid {
                what: "settings magic",
                offset: 0,
                value: u64::from(magic),
            });
        }
        if expected != actual {
            return Err(DecodeError::Checksum {
                what: "settings",
                expected,
                actual,
            });
        }
        let version = r.u16("settings version")?;
        if version != SETTINGS_VERSION {
            return Err(DecodeError::Invalid {
                what: "settings version",
                offset: 4,
                value: u64::from(version),
            });
        }
        let settings = decode_fields(&mut r)?;
        r.finish()?;
        Ok(settings)
    }

    /// Writes the settings into `data_dir` (durably: written, synced, then renamed into place).
    ///
    /// # Errors
    /// An I/O error, naming the file.
    pub fn write(&self, data_dir: &Path) -> Result<(), SettingsError> {
        let path = data_dir.join(SETTINGS_FILE);
        let temporary = data_dir.join(format!("{SETTINGS_FILE}.tmp"));
        let mut bytes = Vec::new();
        self.encode(&mut bytes);
        let io = |source: std::io::Error| SettingsError::Write {
            path: path.clone(),
            source,
        };
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&temporary, &path).map_err(io)?;
        std::fs::File::open(data_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Reads and validates the settings of `data_dir`.
    ///
    /// # Errors
    /// The file is missing, unreadable, corrupt, or holds invalid settings.
    pub fn read(data_dir: &Path) -> Result<ClusterSettings, SettingsError> {
        let path = settings_path(data_dir);
        let bytes = std::fs::read(&path).map_err(|source| SettingsError::Read {
            path: path.clone(),
            source,
        })?;
        let settings =
            ClusterSettings::decode(&bytes).map_err(|source| SettingsError::Corrupt {
                path: path.clone(),
                source,
            })?;
        settings
            .validate()
            .map_err(|source| SettingsError::Invalid {
                path,
                source: Box::new(source),
            })?;
        Ok(settings)
    }
}

/// Where the settings of `data_dir` live.
pub fn settings_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SETTINGS_FILE)
}

fn decode_fields(r: &mut Reader) -> Result<ClusterSettings, DecodeError> {
    let cluster_id = r.u128("cluster_id")?;
    let replica_count = r.u8("replica_count")?;
    let replica_index = r.u8("replica_index")?;
    let slot_ms = r.u64("slot_ms")?;
    let tick_ms = r.u64("tick_ms")?;
    let core = CoreConfig {
        resources_max: r.u32("resources_max")?,
        pools_max: r.u32("pools_max")?,
        leases_max: r.u32("leases_max")?,
        lease_members_max: r.u32("lease_members_max")?,
        bundle_size_max: r.u32("bundle_size_max")?,
        operations_max: r.u32("operations_max")?,
        clients_max: r.u32("clients_max")?,
        session_requests_max: r.u32("session_requests_max")?,
        ttl_slots_max: r.u64("ttl_slots_max")?,
        dedupe_window_slots: r.u64("dedupe_window_slots")?,
        lease_history_slots: r.u64("lease_history_slots")?,
        expirations_per_batch_max: r.u32("expirations_per_batch_max")?,
        batch_requests_max: r.u32("batch_requests_max")?,
    };
    let mut replica = ReplicaConfig::new(cluster_id, replica_index, replica_count);
    replica.core = core;
    replica.pipeline_prepares_max = r.u32("pipeline_prepares_max")?;
    replica.batch_requests_max = r.u32("replica batch_requests_max")?;
    replica.batch_bytes_max = r.u32("batch_bytes_max")?;
    replica.request_queue_max = r.u32("request_queue_max")?;
    replica.read_queue_max = r.u32("read_queue_max")?;
    replica.suffix_ops_max = r.u32("suffix_ops_max")?;
    replica.headers_max = r.u32("headers_max")?;
    replica.repair_ops_max = r.u32("repair_ops_max")?;
    replica.snapshot_bytes_max = r.u32("snapshot_bytes_max")?;
    replica.wal.body_bytes_max = r.u32("wal body_bytes_max")?;
    replica.checkpoint_interval_ops = r.u64("checkpoint_interval_ops")?;
    replica.wal.log_ops_max = r.u64("log_ops_max")?;
    replica.wal.segment_bytes_max = r.u64("segment_bytes_max")?;
    replica.heartbeat_interval_ticks = r.u64("heartbeat_interval_ticks")?;
    replica.primary_timeout_ticks = r.u64("primary_timeout_ticks")?;
    replica.view_change_timeout_ticks = r.u64("view_change_timeout_ticks")?;
    replica.primary_abdicate_ticks = r.u64("primary_abdicate_ticks")?;
    replica.resend_interval_ticks = r.u64("resend_interval_ticks")?;
    replica.read_timeout_ticks = r.u64("read_timeout_ticks")?;
    replica.timeout_jitter_ticks = r.u64("timeout_jitter_ticks")?;
    Ok(ClusterSettings {
        cluster_id,
        replica_count,
        replica_index,
        slot_ms,
        tick_ms,
        replica,
    })
}

#[cfg(test)]
mod tests {
    use super::{ClusterSettings, default_core_config};

    fn settings() -> ClusterSettings {
        ClusterSettings::new(7, 1, 3, 10, default_core_config())
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let settings = settings();
        settings.validate().unwrap();
        let mut bytes = Vec::new();
        settings.encode(&mut bytes);
        let decoded = ClusterSettings::decode(&bytes).unwrap();
        let mut again = Vec::new();
        decoded.encode(&mut again);
        assert_eq!(again, bytes);
        assert_eq!(format!("{decoded:?}"), format!("{settings:?}"));
    }

    #[test]
    fn the_default_dedupe_window_lasts_a_minute_at_any_slot_length() {
        assert_eq!(default_core_config().dedupe_window_slots, 6_000);
        assert_eq!(super::default_dedupe_window_slots(10), 6_000);
        assert_eq!(super::default_dedupe_window_slots(1), 60_000);
        assert_eq!(super::default_dedupe_window_slots(7), 8_572);
        assert_eq!(super::default_dedupe_window_slots(120_000), 1);
    }

    #[test]
    fn every_corruption_and_truncation_is_refused() {
        let mut bytes = Vec::new();
        settings().encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(
                ClusterSettings::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        for bit in 0..bytes.len() * 8 {
            let mut corrupt = bytes.clone();
            corrupt[bit / 8] ^= 1 << (bit % 8);
            assert!(ClusterSettings::decode(&corrupt).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn a_missing_or_corrupt_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("allocdb-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = ClusterSettings::read(&dir).unwrap_err().to_string();
        assert!(
            missing.contains("cluster.settings") && missing.contains("allocdb format"),
            "{missing}"
        );
        settings().write(&dir).unwrap();
        assert_eq!(
            format!("{:?}", ClusterSettings::read(&dir).unwrap()),
            format!("{:?}", settings())
        );
        let path = dir.join("cluster.settings");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        let corrupt = ClusterSettings::read(&dir).unwrap_err().to_string();
        assert!(
            corrupt.contains("corrupt") && corrupt.contains("checksum"),
            "{corrupt}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
