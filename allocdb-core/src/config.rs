//! Every bound of the core, fixed at construction and validated before anything is allocated.

use crate::command::BUNDLE_SIZE_LIMIT;

/// The core's limits. Tables are allocated once from these and never grow; reaching a limit
/// is answered with a result code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Rows in the resource table.
    pub resources_max: u32,
    /// Rows in the pool table.
    pub pools_max: u32,
    /// Rows in the lease table (live plus terminal leases still inside the history window).
    pub leases_max: u32,
    /// Rows in the lease-member table shared by all leases.
    pub lease_members_max: u32,
    /// The largest bundle (and `reserve_any` count); at most [`BUNDLE_SIZE_LIMIT`].
    pub bundle_size_max: u32,
    /// Rows in the operation table: the outcomes of writes carrying an application key.
    /// When full, the oldest record retires early (its key is then refused as too old).
    pub operations_max: u32,
    /// Client sessions kept at once; registering one more evicts the least recently used.
    pub clients_max: u32,
    /// Answers kept per session: a client may have this many numbered writes unanswered.
    pub session_requests_max: u32,
    /// The largest TTL a command may ask for, in slots.
    pub ttl_slots_max: u64,
    /// How long an application key's outcome is remembered for retries, in slots (it may
    /// retire earlier when the operation table is full).
    pub dedupe_window_slots: u64,
    /// How long a terminal lease stays queryable before it retires, in slots.
    pub lease_history_slots: u64,
    /// The most `expire` commands the primary puts into one batch.
    pub expirations_per_batch_max: u32,
    /// The most requests in one batch.
    pub batch_requests_max: u32,
}

/// Why a [`Config`] was refused. Each variant names the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A count or window that must be at least 1 is 0.
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// A value is above the largest the core supports.
    TooLarge {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// Two fields contradict each other.
    Inconsistent {
        /// What is wrong, naming both fields.
        reason: &'static str,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Zero { field } => write!(f, "config: {field} must be at least 1"),
            ConfigError::TooLarge { field, value, max } => {
                write!(f, "config: {field} = {value} exceeds the maximum {max}")
            }
            ConfigError::Inconsistent { reason } => write!(f, "config: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The largest row count of any table: row indices are `u32` and `u32::MAX` marks "none".
pub const TABLE_ROWS_LIMIT: u32 = 1 << 28;

/// The largest TTL or window: keeps `slot + ttl` comfortably inside `u64` for centuries of
/// slots while leaving `u64::MAX` free as "no deadline".
pub const SLOTS_LIMIT: u64 = 1 << 48;

/// The most answers one session may keep (its window of unanswered writes).
pub const SESSION_REQUESTS_LIMIT: u32 = 1 << 16;

/// The most requests in one batch: the batch index must fit in a lease id's low 32 bits and
/// a batch must stay small enough to log and send as one message.
pub const BATCH_REQUESTS_LIMIT: u32 = 1 << 16;

impl Config {
    /// A small configuration for tests and examples.
    pub fn small() -> Config {
        Config {
            resources_max: 1_024,
            pools_max: 16,
            leases_max: 1_024,
            lease_members_max: 4_096,
            bundle_size_max: 8,
            operations_max: 4_096,
            clients_max: 16,
            session_requests_max: 64,
            ttl_slots_max: 1_000_000,
            dedupe_window_slots: 10_000,
            lease_history_slots: 10_000,
            expirations_per_batch_max: 64,
            batch_requests_max: 1_024,
        }
    }

    /// Checks every field; the core is never built from a config that fails this.
    ///
    /// # Errors
    /// The first field that is zero, too large, or inconsistent with another, by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rows = [
            ("resources_max", self.resources_max),
            ("pools_max", self.pools_max),
            ("leases_max", self.leases_max),
            ("lease_members_max", self.lease_members_max),
            ("operations_max", self.operations_max),
            ("clients_max", self.clients_max),
        ];
        for (field, value) in rows {
            check_range(field, u64::from(value), u64::from(TABLE_ROWS_LIMIT))?;
        }
        let limit = u64::try_from(BUNDLE_SIZE_LIMIT).expect("small constant");
        check_range("bundle_size_max", u64::from(self.bundle_size_max), limit)?;
        check_range("ttl_slots_max", self.ttl_slots_max, SLOTS_LIMIT)?;
        check_range("dedupe_window_slots", self.dedupe_window_slots, SLOTS_LIMIT)?;
        check_range("lease_history_slots", self.lease_history_slots, SLOTS_LIMIT)?;
        check_range(
            "session_requests_max",
            u64::from(self.session_requests_max),
            u64::from(SESSION_REQUESTS_LIMIT),
        )?;
        let entries = u64::from(self.clients_max) * u64::from(self.session_requests_max);
        if entries > u64::from(TABLE_ROWS_LIMIT) {
            return Err(ConfigError::Inconsistent {
                reason: "clients_max × session_requests_max must be at most 2^28 stored answers",
            });
        }
        let batch = u64::from(self.batch_requests_max);
        check_range("batch_requests_max", batch, u64::from(BATCH_REQUESTS_LIMIT))?;
        let expirations = u64::from(self.expirations_per_batch_max);
        check_range("expirations_per_batch_max", expirations, batch)?;
        if self.lease_members_max < self.bundle_size_max {
            return Err(ConfigError::Inconsistent {
                reason: "lease_members_max must be at least bundle_size_max",
            });
        }
        Ok(())
    }
}

fn check_range(field: &'static str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::Zero { field });
    }
    if value > max {
        return Err(ConfigError::TooLarge { field, value, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Config, ConfigError};

    #[test]
    fn small_config_is_valid() {
        assert_eq!(Config::small().validate(), Ok(()));
    }

    #[test]
    fn each_invalid_field_is_named() {
        let mut config = Config::small();
        config.leases_max = 0;
        assert_eq!(
            config.validate(),
            Err(ConfigError::Zero {
                field: "leases_max"
            })
        );

        let mut config = Config::small();
        config.bundle_size_max = 17;
        assert_eq!(
            config.validate(),
            Err(ConfigError::TooLarge {
                field: "bundle_size_max",
                value: 17,
                max: 16
            })
        );

        let mut config = Config::small();
        config.expirations_per_batch_max = config.batch_requests_max + 1;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::TooLarge {
                field: "expirations_per_batch_max",
                ..
            })
        ));

        let mut config = Config::small();
        config.lease_members_max = 4;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Inconsistent { .. })
        ));
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("lease_members_max")
        );
    }
}
