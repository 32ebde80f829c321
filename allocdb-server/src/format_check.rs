//! What `allocdb format --if-empty` finds in a data directory before deciding to format it.
//!
//! Supervisors without a shell (a Compose one-shot service, a Kubernetes initContainer) run
//! `format --if-empty` on every start, so the check must never format over a replica, must
//! accept the replica it formatted earlier without touching it, and must refuse anything else
//! with a message that says what it found.

use std::path::{Path, PathBuf};

use crate::commands::FormatArgs;
use crate::dir_lock::LOCK_FILE;
use crate::settings::{ClusterSettings, SETTINGS_FILE, SettingsError, WAL_DIR};

/// Entries that do not make a directory non-empty: what a fresh file system puts into an
/// otherwise empty mount point, and the lock file, which `format` itself creates (before this
/// check) and which an interrupted `format` may leave behind.
const IGNORED_ENTRIES: &[&str] = &["lost+found", LOCK_FILE];

/// What the data directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Nothing (missing, or empty but for `lost+found` and the lock file): format it.
    Empty,
    /// The replica `args` describes: leave it alone.
    Same,
}

/// Which replica of which cluster a data directory holds, or a command line describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaIdentity {
    /// The replica's index.
    pub replica: u8,
    /// Replicas in the cluster.
    pub replica_count: u8,
    /// The cluster.
    pub cluster_id: u128,
}

impl std::fmt::Display for ReplicaIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replica {} of {} of cluster {}",
            self.replica, self.replica_count, self.cluster_id
        )
    }
}

/// Why `format --if-empty` must not format the directory (nor accept it as already done).
#[derive(Debug, thiserror::Error)]
pub enum FormatCheckError {
    /// The directory exists but cannot be listed.
    #[error("cannot read {}: {source}", .data_dir.display())]
    Unreadable {
        /// The data directory.
        data_dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Files that are not a replica's: someone else's data, never formatted over.
    #[error(
        "{} is not empty and holds no formatted replica (found: {}); refusing to format over it",
        .data_dir.display(),
        .found.join(", ")
    )]
    NotAReplica {
        /// The data directory.
        data_dir: PathBuf,
        /// What it holds, sorted.
        found: Vec<String>,
    },
    /// Settings without a log: a `format` that did not finish, or a damaged replica.
    #[error(
        "{} has {SETTINGS_FILE} but no {WAL_DIR}/ directory: not a complete replica",
        .data_dir.display()
    )]
    Incomplete {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A replica whose settings cannot be read.
    #[error("{} holds a replica that cannot be checked: {source}", .data_dir.display())]
    Unchecked {
        /// The data directory.
        data_dir: PathBuf,
        /// Why its settings do not load.
        source: SettingsError,
    },
    /// Another replica, or another cluster's.
    #[error("{} holds {found}, not {wanted}", .data_dir.display())]
    OtherReplica {
        /// The data directory.
        data_dir: PathBuf,
        /// What it holds.
        found: ReplicaIdentity,
        /// What the command line asked for.
        wanted: ReplicaIdentity,
    },
    /// This replica, formatted with other limits than the command line gives.
    #[error(
        "{} holds this replica but formatted with other settings: {}",
        .data_dir.display(),
        .differences.join(", ")
    )]
    OtherSettings {
        /// The data directory.
        data_dir: PathBuf,
        /// Each differing flag with both values.
        differences: Vec<String>,
    },
}

/// Inspects `data_dir` without changing it.
///
/// # Errors
/// The directory cannot be read, holds something other than a formatted replica, or holds
/// another replica (other cluster, index or count) or one formatted with other limits than
/// those given on the command line; the message names what differs.
pub fn existing(data_dir: &Path, args: &FormatArgs) -> Result<Existing, FormatCheckError> {
    let unreadable = |source| FormatCheckError::Unreadable {
        data_dir: data_dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Empty),
        Err(error) => return Err(unreadable(error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !IGNORED_ENTRIES.contains(&name.as_str()) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(Existing::Empty);
    }
    names.sort();
    let data_dir_owned = || data_dir.to_path_buf();
    if !names.iter().any(|name| name == SETTINGS_FILE) {
        return Err(FormatCheckError::NotAReplica {
            data_dir: data_dir_owned(),
            found: names,
        });
    }
    if !data_dir.join(WAL_DIR).is_dir() {
        return Err(FormatCheckError::Incomplete {
            data_dir: data_dir_owned(),
        });
    }
    let found = ClusterSettings::read(data_dir).map_err(|source| FormatCheckError::Unchecked {
        data_dir: data_dir_owned(),
        source,
    })?;
    let found_identity = ReplicaIdentity {
        replica: found.replica_index,
        replica_count: found.replica_count,
        cluster_id: found.cluster_id,
    };
    let wanted = ReplicaIdentity {
        replica: args.replica,
        replica_count: args.replica_count,
        cluster_id: args.cluster,
    };
    if found_identity != wanted {
        return Err(FormatCheckError::OtherReplica {
            data_dir: data_dir_owned(),
            found: found_identity,
            wanted,
        });
    }
    let differences = differences(args, &found);
    if !differences.is_empty() {
        return Err(FormatCheckError::OtherSettings {
            data_dir: data_dir_owned(),
            differences,
        });
    }
    Ok(Existing::Same)
}

/// Every limit given in `args` whose value differs from `found`'s. Limits left to their
/// defaults are not compared, so a later version with other defaults still accepts the
/// directory.
fn differences(args: &FormatArgs, found: &ClusterSettings) -> Vec<String> {
    let flags = &args.core;
    let core = &found.replica.core;
    let checks = [
        ("--slot-ms", args.slot_ms, found.slot_ms),
        ("--tick-ms", args.tick_ms, found.tick_ms),
        (
            "--resources-max",
            flags.resources_max.map(u64::from),
            u64::from(core.resources_max),
        ),
        (
            "--pools-max",
            flags.pools_max.map(u64::from),
            u64::from(core.pools_max),
        ),
        (
            "--leases-max",
            flags.leases_max.map(u64::from),
            u64::from(core.leases_max),
        ),
        (
            "--lease-members-max",
            flags.lease_members_max.map(u64::from),
            u64::from(core.lease_members_max),
        ),
        (
            "--bundle-size-max",
            flags.bundle_size_max.map(u64::from),
            u64::from(core.bundle_size_max),
        ),
        (
            "--operations-max",
            flags.operations_max.map(u64::from),
            u64::from(core.operations_max),
        ),
        (
            "--clients-max",
            flags.clients_max.map(u64::from),
            u64::from(core.clients_max),
        ),
        (
            "--session-requests-max",
            flags.session_requests_max.map(u64::from),
            u64::from(core.session_requests_max),
        ),
        ("--ttl-slots-max", flags.ttl_slots_max, core.ttl_slots_max),
        (
            "--dedupe-window-slots",
            flags.dedupe_window_slots,
            core.dedupe_window_slots,
        ),
        (
            "--lease-history-slots",
            flags.lease_history_slots,
            core.lease_history_slots,
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(flag, asked, formatted)| match asked {
            Some(asked) if asked != formatted => {
                Some(format!("{flag} {asked} (formatted with {formatted})"))
            }
            _ => None,
        })
        .collect()
}
