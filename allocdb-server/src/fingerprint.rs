//! Same cluster, same rules: the configuration every replica must share, compared at every
//! peer handshake, and the record of the mismatches found.
//!
//! Two replicas with different table sizes answer the same batch differently (one
//! `lease_table_full`, the other `ok`), and two with differently ordered address lists disagree
//! on who is primary of a view; either way they must never exchange a message. So each
//! handshake carries the sender's [`Fingerprint`] (the cluster-wide values of
//! `cluster.settings`, and the `--addresses` list) and the receiver refuses a link whose
//! fingerprint differs, naming every differing value on both sides. The cluster id and
//! replica count are checked by the frame header and the handshake itself.
//!
//! A refused link is counted, logged at ERROR (again every [`MISMATCH_RELOG_INTERVAL`] while
//! it persists), and held in [`ConfigMismatches`], which `allocdb status` and `/health` report
//! for as long as the peer keeps being refused.

use std::sync::Mutex;

use allocdb_vsr::REPLICAS_MAX;
use allocdb_vsr::frame::{HANDSHAKE_ADDRESS_BYTES_MAX, HANDSHAKE_CONFIG_VALUES_MAX, PeerHandshake};
use tokio::time::{Duration, Instant};
use tracing::{error, info};

use crate::settings::ClusterSettings;

/// A mismatch not seen again for this long is no longer reported: the peer stopped trying
/// (it is down, or was stopped to be fixed). Both ends retry a refused link at least every
/// second (the bus's longest backoff plus its connect timeout), so a persisting mismatch is
/// seen again well within it.
pub const MISMATCH_STALE_AFTER: Duration = Duration::from_secs(5);
/// How often a persisting mismatch is logged again.
pub const MISMATCH_RELOG_INTERVAL: Duration = Duration::from_secs(10);

/// The configuration a replica was formatted and started with that must be equal on every
/// replica of its cluster, in handshake order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Each value with the name it is reported under (the `format` flag where there is one).
    values: Vec<(&'static str, u64)>,
    /// The `--addresses` list, by replica index.
    addresses: Vec<String>,
}

impl Fingerprint {
    /// The fingerprint of `settings` started with `addresses`.
    ///
    /// # Errors
    /// An address longer than a handshake carries, or more addresses than replicas can exist.
    pub fn new(settings: &ClusterSettings, addresses: &[String]) -> Result<Fingerprint, String> {
        if addresses.len() > usize::from(REPLICAS_MAX) {
            return Err(format!(
                "{} addresses given; a cluster has at most {REPLICAS_MAX}",
                addresses.len()
            ));
        }
        if let Some(long) = addresses
            .iter()
            .find(|address| address.len() > usize::from(HANDSHAKE_ADDRESS_BYTES_MAX))
        {
            return Err(format!(
                "address {long:?} is longer than {HANDSHAKE_ADDRESS_BYTES_MAX} bytes"
            ));
        }
        let values = shared_values(settings);
        assert!(values.len() <= usize::from(HANDSHAKE_CONFIG_VALUES_MAX));
        Ok(Fingerprint {
            values,
            addresses: addresses.to_vec(),
        })
    }

    /// The handshake of replica `replica_index` of `replica_count` carrying this fingerprint.
    pub fn handshake(&self, replica_index: u8, replica_count: u8) -> PeerHandshake {
        PeerHandshake {
            replica_index,
            replica_count,
            config: self.values.iter().map(|(_, value)| *value).collect(),
            addresses: self.addresses.clone(),
        }
    }

    /// Compares peer `peer`'s handshake with this fingerprint.
    ///
    /// # Errors
    /// Every difference, naming both sides' values, e.g. `peer 1 was formatted with
    /// --leases-max 131072, we with 65536; peer 1's address list is [b,a,c], ours is [a,b,c]`.
    pub fn compare(&self, peer: u8, theirs: &PeerHandshake) -> Result<(), String> {
        let mut differences = Vec::new();
        if theirs.config.len() == self.values.len() {
            for ((name, ours), theirs) in self.values.iter().zip(&theirs.config) {
                if ours != theirs {
                    differences.push(format!(
                        "peer {peer} was formatted with {name} {theirs}, we with {ours}"
                    ));
                }
            }
        } else {
            // Another build with another set of shared values: nothing to line up by name.
            differences.push(format!(
                "peer {peer} sends {} configuration values, we {} (another version?)",
                theirs.config.len(),
                self.values.len()
            ));
        }
        if theirs.addresses != self.addresses {
            differences.push(format!(
                "peer {peer}'s address list is [{}], ours is [{}]",
                theirs.addresses.join(","),
                self.addresses.join(",")
            ));
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(differences.join("; "))
        }
    }
}

/// Every value of `settings` that must be equal cluster-wide, named as an operator sets it.
/// Appending is compatible with nothing: a build with another list reports a count mismatch.
fn shared_values(settings: &ClusterSettings) -> Vec<(&'static str, u64)> {
    let core = &settings.replica.core;
    let r = &settings.replica;
    vec![
        ("--slot-ms", settings.slot_ms),
        ("--tick-ms", settings.tick_ms),
        ("--resources-max", u64::from(core.resources_max)),
        ("--pools-max", u64::from(core.pools_max)),
        ("--leases-max", u64::from(core.leases_max)),
        ("--lease-members-max", u64::from(core.lease_members_max)),
        ("--bundle-size-max", u64::from(core.bundle_size_max)),
        ("--operations-max", u64::from(core.operations_max)),
        ("--clients-max", u64::from(core.clients_max)),
        (
            "--session-requests-max",
            u64::from(core.session_requests_max),
        ),
        ("--ttl-slots-max", core.ttl_slots_max),
        ("--dedupe-window-slots", core.dedupe_window_slots),
        ("--lease-history-slots", core.lease_history_slots),
        (
            "expirations_per_batch_max",
            u64::from(core.expirations_per_batch_max),
        ),
        (
            "core batch_requests_max",
            u64::from(core.batch_requests_max),
        ),
        ("pipeline_prepares_max", u64::from(r.pipeline_prepares_max)),
        ("batch_requests_max", u64::from(r.batch_requests_max)),
        ("batch_bytes_max", u64::from(r.batch_bytes_max)),
        ("request_queue_max", u64::from(r.request_queue_max)),
        ("read_queue_max", u64::from(r.read_queue_max)),
        ("suffix_ops_max", u64::from(r.suffix_ops_max)),
        ("headers_max", u64::from(r.headers_max)),
        ("repair_ops_max", u64::from(r.repair_ops_max)),
        ("snapshot_bytes_max", u64::from(r.snapshot_bytes_max)),
        ("wal body_bytes_max", u64::from(r.wal.body_bytes_max)),
        ("checkpoint_interval_ops", r.checkpoint_interval_ops),
        ("log_ops_max", r.wal.log_ops_max),
        ("segment_bytes_max", r.wal.segment_bytes_max),
        ("heartbeat_interval_ticks", r.heartbeat_interval_ticks),
        ("primary_timeout_ticks", r.primary_timeout_ticks),
        ("view_change_timeout_ticks", r.view_change_timeout_ticks),
        ("primary_abdicate_ticks", r.primary_abdicate_ticks),
        ("resend_interval_ticks", r.resend_interval_ticks),
        ("read_timeout_ticks", r.read_timeout_ticks),
        ("timeout_jitter_ticks", r.timeout_jitter_ticks),
    ]
}

/// Which end of a link found the mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEnd {
    /// We dialed the peer (and it refused us, or we refused its answer).
    Outbound,
    /// The peer dialed us and we refused it.
    Inbound,
}

#[derive(Clone, Debug)]
struct Mismatch {
    text: String,
    seen_at: Instant,
    logged_at: Instant,
}

/// The peer links currently refused for a configuration mismatch, per peer and link end.
///
/// The only locked state among the metrics: it changes on handshakes, never per request.
#[derive(Debug, Default)]
pub struct ConfigMismatches {
    slots: Mutex<[Option<Mismatch>; 2 * REPLICAS_MAX as usize]>,
}

fn slot(peer: u8, end: LinkEnd) -> usize {
    assert!(peer < REPLICAS_MAX, "peer indexes are checked before");
    usize::from(peer) * 2 + usize::from(end == LinkEnd::Inbound)
}

impl ConfigMismatches {
    /// Records that the link with `peer` was refused for `text`, logging it at ERROR when it
    /// is new, changed, or last logged [`MISMATCH_RELOG_INTERVAL`] ago.
    pub fn report(&self, peer: u8, end: LinkEnd, text: &str) {
        let now = Instant::now();
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = &mut slots[slot(peer, end)];
        let log = match entry {
            Some(old) => {
                old.text != text || now.duration_since(old.logged_at) >= MISMATCH_RELOG_INTERVAL
            }
            None => true,
        };
        let logged_at = match entry {
            Some(old) if !log => old.logged_at,
            _ => now,
        };
        *entry = Some(Mismatch {
            text: text.to_string(),
            seen_at: now,
            logged_at,
        });
        drop(slots);
        if log {
            error!(peer, link = ?end, "configuration mismatch, link refused: {text}");
        }
    }

    /// Records that a link with `peer` passed the handshake: any mismatch is resolved.
    pub fn clear(&self, peer: u8, end: LinkEnd) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slots[slot(peer, end)].take().is_some() {
            info!(peer, link = ?end, "configuration matches again; link accepted");
        }
    }

    /// Every mismatch seen within [`MISMATCH_STALE_AFTER`], by peer, joined by ` | `; `None`
    /// when there is none.
    pub fn summary(&self) -> Option<String> {
        let now = Instant::now();
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let live: Vec<&str> = slots
            .iter()
            .flatten()
            .filter(|mismatch| now.duration_since(mismatch.seen_at) < MISMATCH_STALE_AFTER)
            .map(|mismatch| mismatch.text.as_str())
            .collect();
        (!live.is_empty()).then(|| live.join(" | "))
    }

    /// How many peers have a live mismatch (on either link end).
    pub fn peers(&self) -> u64 {
        let now = Instant::now();
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let live = |entry: &Option<Mismatch>| {
            entry
                .as_ref()
                .is_some_and(|m| now.duration_since(m.seen_at) < MISMATCH_STALE_AFTER)
        };
        let count = slots.chunks(2).filter(|ends| ends.iter().any(live)).count();
        u64::try_from(count).expect("at most REPLICAS_MAX")
    }
}

#[cfg(test)]
mod tests {
    use super::{ConfigMismatches, Fingerprint, LinkEnd};
    use crate::settings::{ClusterSettings, default_core_config};

    fn addresses(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    fn settings(leases_max: u32) -> ClusterSettings {
        let mut core = default_core_config();
        core.leases_max = leases_max;
        ClusterSettings::new(7, 0, 3, 10, core)
    }

    #[test]
    fn equal_fingerprints_pass_and_every_difference_is_named() {
        let ours = Fingerprint::new(&settings(65_536), &addresses(&["a", "b", "c"])).unwrap();
        assert_eq!(ours.compare(1, &ours.handshake(1, 3)), Ok(()));
        let other = Fingerprint::new(&settings(131_072), &addresses(&["b", "a", "c"])).unwrap();
        let text = ours.compare(1, &other.handshake(1, 3)).unwrap_err();
        assert_eq!(
            text,
            "peer 1 was formatted with --leases-max 131072, we with 65536; \
             peer 1's address list is [b,a,c], ours is [a,b,c]"
        );
        let mut slow = settings(65_536);
        slow.slot_ms = 20;
        let slow = Fingerprint::new(&slow, &addresses(&["a", "b", "c"])).unwrap();
        assert_eq!(
            ours.compare(2, &slow.handshake(2, 3)),
            Err("peer 2 was formatted with --slot-ms 20, we with 10".to_string())
        );
        let mut short = ours.handshake(2, 3);
        short.config.pop();
        let text = ours.compare(2, &short).unwrap_err();
        assert!(
            text.contains("sends 34 configuration values, we 35"),
            "{text}"
        );
    }

    #[test]
    fn oversized_address_lists_are_refused_at_start_up() {
        let long = "x".repeat(513);
        assert!(Fingerprint::new(&settings(1), &[long]).is_err());
        assert!(Fingerprint::new(&settings(1), &addresses(&["a"; 6])).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn mismatches_are_reported_while_they_persist() {
        let mismatches = ConfigMismatches::default();
        assert_eq!((mismatches.summary(), mismatches.peers()), (None, 0));
        mismatches.report(2, LinkEnd::Inbound, "inbound text");
        mismatches.report(2, LinkEnd::Outbound, "outbound text");
        mismatches.report(1, LinkEnd::Outbound, "other peer");
        assert_eq!(mismatches.peers(), 2);
        assert_eq!(
            mismatches.summary().unwrap(),
            "other peer | outbound text | inbound text"
        );
        mismatches.clear(1, LinkEnd::Outbound);
        assert_eq!(mismatches.peers(), 1);
        tokio::time::advance(super::MISMATCH_STALE_AFTER / 2).await;
        mismatches.report(2, LinkEnd::Inbound, "inbound text");
        tokio::time::advance(super::MISMATCH_STALE_AFTER / 2).await;
        // The outbound one was not seen again: stale; the inbound one was.
        assert_eq!(mismatches.summary().unwrap(), "inbound text");
        tokio::time::advance(super::MISMATCH_STALE_AFTER).await;
        assert_eq!((mismatches.summary(), mismatches.peers()), (None, 0));
    }
}
