//! Helpers shared by the integration tests: deterministic bodies and a toy state machine.

#![allow(dead_code)]

use allocdb_wal::{Checksum, ReplicaIdentity, SplitMix64, WalConfig, checksum128};

pub const CLUSTER: u128 = 0x0A11_0CDB;

pub fn identity() -> ReplicaIdentity {
    ReplicaIdentity {
        replica_index: 0,
        replica_count: 1,
    }
}

/// Small segments so that tests cross segment boundaries often.
pub fn small_config() -> WalConfig {
    WalConfig {
        segment_bytes_max: 4096,
        body_bytes_max: 1024,
        log_ops_max: 10_000,
        ..WalConfig::new(CLUSTER)
    }
}

/// The body of `op` in a run seeded by `seed`: any reader can recompute it.
pub fn body(seed: u64, op: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed ^ op.wrapping_mul(0x9e37_79b9));
    (0..len).map(|_| rng.next_u64().to_le_bytes()[0]).collect()
}

/// A toy state machine: the state after op n is a hash of the state after n-1 and body n.
pub fn apply(state: Checksum, body: &[u8]) -> Checksum {
    let mut bytes = state.to_le_bytes().to_vec();
    bytes.extend_from_slice(&checksum128(body).to_le_bytes());
    checksum128(&bytes)
}
