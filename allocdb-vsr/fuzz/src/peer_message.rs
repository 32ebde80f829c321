//! Peer messages handled by a live replica: replica 1 of a three-replica cluster, freshly
//! formatted over a `SimStorage`, is fed a sequence of messages (and clock ticks). Every
//! message that decodes must survive an encode/decode round trip and be handled by
//! `Replica::on_message` without a panic: a message that breaks the protocol is refused
//! (`peer_check.rs`), never applied.
//!
//! Input: a mode byte (ignored, for symmetry with the other targets), then records
//! `ctl: u8, len: u16 (LE), message[len]`. `ctl` bits 0-1: the sender (3 is out of range);
//! bit 2: rebuild the checksums of the entries the message carries (so forged entries reach
//! the replica); bits 3-7: clock ticks before the message.

use allocdb_vsr::{
    Entry, Message, MessageLimits, Outbox, Replica, ReplicaConfig, decode_message, encode_message,
};
use allocdb_wal::{RecordHeader, SimConfig, SimStorage};

use crate::CLUSTER_ID;

/// The replica the target drives.
pub const TARGET_INDEX: u8 = 1;
/// Replicas in the cluster.
pub const REPLICA_COUNT: u8 = 3;

/// A small replica configuration (the test harness's), shared by the seed generator.
pub fn replica_config(index: u8) -> ReplicaConfig {
    let mut config = ReplicaConfig::new(CLUSTER_ID, index, REPLICA_COUNT);
    config.core = allocdb_core::Config {
        resources_max: 64,
        pools_max: 4,
        leases_max: 256,
        lease_members_max: 512,
        bundle_size_max: 4,
        operations_max: 1_024,
        clients_max: 8,
        session_requests_max: 64,
        ttl_slots_max: 10_000,
        dedupe_window_slots: 1 << 40,
        lease_history_slots: 40,
        expirations_per_batch_max: 16,
        batch_requests_max: 64,
    };
    config.batch_requests_max = 32;
    config.batch_bytes_max = 8 * 1024;
    config.wal.body_bytes_max = 8 * 1024;
    config.pipeline_prepares_max = 4;
    config.suffix_ops_max = 16;
    config.headers_max = 32;
    config.repair_ops_max = 8;
    config.repair_state_transfer_ops_min = 96;
    config.checkpoint_interval_ops = 16;
    config.snapshot_bytes_max = 1 << 20;
    config.request_queue_max = 64;
    config.read_queue_max = 16;
    config.wal.segment_bytes_max = 16 * 1024;
    config.wal.log_ops_max = 512;
    config.seed = u64::from(index);
    config
}

/// A freshly formatted replica `index` of the cluster (deterministic: the seed corpus replays
/// what its peers sent it).
pub fn new_replica(index: u8) -> Replica<SimStorage> {
    let storage = SimStorage::new(SimConfig::new(u64::from(index)));
    Replica::format(storage, replica_config(index)).expect("formatting a fresh replica")
}

/// Appends one input record.
pub fn push_record(out: &mut Vec<u8>, from: u8, fix: bool, ticks: u8, message: &[u8]) {
    assert!(from < 4 && ticks < 32);
    out.push(from | (u8::from(fix) << 2) | (ticks << 3));
    let len = u16::try_from(message.len()).expect("seed messages below 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(message);
}

/// Runs one input.
pub fn run(data: &[u8]) {
    drive(data);
}

/// Runs one input and returns the replica it drove.
pub fn drive(data: &[u8]) -> Replica<SimStorage> {
    let mut rest = data.get(1..).unwrap_or_default();
    let mut replica = new_replica(TARGET_INDEX);
    let limits = MessageLimits::from_config(replica.config());
    let mut out = Outbox::new(1024, 1024);
    let mut slot = 0;
    let mut encoded = Vec::new();
    while let [ctl, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        rest = after;
        for _ in 0..(ctl >> 3) {
            slot += 1;
            replica.on_tick(slot, &mut out);
            out.messages.clear();
            out.replies.clear();
        }
        let Ok(mut message) = decode_message(bytes, &limits) else {
            continue;
        };
        encoded.clear();
        encode_message(&message, &mut encoded);
        assert_eq!(
            decode_message(&encoded, &limits).as_ref(),
            Ok(&message),
            "a message survives a round trip"
        );
        if ctl & 4 != 0 {
            fix_entries(&mut message);
        }
        replica.on_message(ctl & 3, &message, &mut out);
        out.messages.clear();
        out.replies.clear();
    }
    replica
}

/// Rebuilds every carried entry's checksums from its fields and body (the chain is left as
/// the fields say: a forged parent stays forged).
fn fix_entries(message: &mut Message) {
    let fix = |entry: &mut Entry| {
        let h = entry.header;
        if entry.body.len() <= allocdb_wal::RECORD_BODY_LIMIT as usize {
            entry.header =
                RecordHeader::new(h.cluster_id, h.view, h.op, h.slot, h.parent, &entry.body);
        }
    };
    match message {
        Message::Prepare { entry, .. } => fix(entry),
        Message::DoViewChange { suffix, .. } | Message::StartView { suffix, .. } => {
            suffix.iter_mut().for_each(fix);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_trace_seed_drives_the_replica_to_commit() {
        let trace = crate::seeds::cluster_trace(300);
        let seeds = crate::seeds::peer_message(&trace);
        let (_, input) = seeds
            .iter()
            .find(|(name, _)| name == "trace")
            .expect("a trace seed");
        let replica = super::drive(input);
        assert!(
            replica.commit_min() > 10,
            "commit_min {}",
            replica.commit_min()
        );
        assert_eq!(replica.peer_messages_refused(), 0);
        assert!(replica.halted().is_none());
    }
}
