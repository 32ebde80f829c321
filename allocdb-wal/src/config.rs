//! [`WalConfig`]: the limits of one replica's log, and who the replica is.

use crate::error::WalError;
use crate::record::{RECORD_BODY_LIMIT, RECORD_HEADER_SIZE};

/// Limits of the durable log. The same values must be used every time a directory is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// The cluster; every record and checkpoint carries it.
    pub cluster_id: u128,
    /// A segment file never grows beyond this many bytes.
    pub segment_bytes_max: u64,
    /// The largest record body (an encoded batch).
    pub body_bytes_max: u32,
    /// The most ops the log retains; `append` fails with `LogFull` beyond it until a
    /// checkpoint lets whole segments go.
    pub log_ops_max: u64,
}

impl WalConfig {
    /// Defaults: 64 MiB segments, 4 MiB bodies, one million retained ops.
    pub fn new(cluster_id: u128) -> WalConfig {
        WalConfig {
            cluster_id,
            segment_bytes_max: 64 << 20,
            body_bytes_max: 4 << 20,
            log_ops_max: 1_000_000,
        }
    }

    /// Checks that the limits are consistent.
    ///
    /// # Errors
    /// [`WalError::InvalidConfig`] saying which limit is wrong.
    pub fn validate(&self) -> Result<(), WalError> {
        if self.body_bytes_max > RECORD_BODY_LIMIT {
            return Err(WalError::InvalidConfig(
                "body_bytes_max above RECORD_BODY_LIMIT",
            ));
        }
        let record_bytes_max = u64::from(RECORD_HEADER_SIZE) + u64::from(self.body_bytes_max);
        if self.segment_bytes_max < record_bytes_max {
            return Err(WalError::InvalidConfig(
                "segment_bytes_max must hold the largest record",
            ));
        }
        if self.log_ops_max == 0 {
            return Err(WalError::InvalidConfig("log_ops_max must be positive"));
        }
        Ok(())
    }
}

/// Which replica this data directory belongs to (fixed when it is formatted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaIdentity {
    /// Index of the replica in the configuration, `< replica_count`.
    pub replica_index: u8,
    /// Replicas in the cluster.
    pub replica_count: u8,
}
