//! What `allocdb format --if-empty` finds in a data directory before deciding to format it.
//!
//! Supervisors without a shell (a Compose one-shot service, a Kubernetes initContainer) run
//! `format --if-empty` on every start, so the check must never format over a replica, must
//! accept the replica it formatted earlier without touching it, and must refuse anything else
//! with a message that says what it found.

use std::path::Path;

use crate::commands::FormatArgs;
use crate::dir_lock::LOCK_FILE;
use crate::settings::{ClusterSettings, SETTINGS_FILE, WAL_DIR};

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

/// Inspects `data_dir` without changing it.
///
/// # Errors
/// The directory cannot be read, holds something other than a formatted replica, or holds
/// another replica (other cluster, index or count) or one formatted with other limits than
/// those given on the command line; the message names what differs.
pub fn existing(data_dir: &Path, args: &FormatArgs) -> Result<Existing, String> {
    let shown = data_dir.display();
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Empty),
        Err(error) => return Err(format!("cannot read {shown}: {error}")),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| format!("cannot read {shown}: {error}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !IGNORED_ENTRIES.contains(&name.as_str()) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(Existing::Empty);
    }
    names.sort();
    if !names.iter().any(|name| name == SETTINGS_FILE) {
        return Err(format!(
            "{shown} is not empty and holds no formatted replica (found: {}); refusing to format over it",
            names.join(", ")
        ));
    }
    if !data_dir.join(WAL_DIR).is_dir() {
        return Err(format!(
            "{shown} has {SETTINGS_FILE} but no {WAL_DIR}/ directory: not a complete replica"
        ));
    }
    let found = ClusterSettings::read(data_dir)
        .map_err(|error| format!("{shown} holds a replica that cannot be checked: {error}"))?;
    let identity = (found.cluster_id, found.replica_index, found.replica_count);
    if identity != (args.cluster, args.replica, args.replica_count) {
        return Err(format!(
            "{shown} holds replica {} of {} of cluster {}, not replica {} of {} of cluster {}",
            found.replica_index,
            found.replica_count,
            found.cluster_id,
            args.replica,
            args.replica_count,
            args.cluster
        ));
    }
    let differences = differences(args, &found);
    if !differences.is_empty() {
        return Err(format!(
            "{shown} holds this replica but formatted with other settings: {}",
            differences.join(", ")
        ));
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
