//! Snapshots: `Allocator::decode_snapshot`, and for a snapshot that decodes, encode → decode →
//! encode gives the same bytes.
//!
//! Mode byte bit 0: clear, the rest is the snapshot; set, the rest is a snapshot *body*, given
//! the header (magic, version, length, crc32c) it needs to reach the body decoder.

use allocdb_core::{Allocator, Config, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};

/// The core configuration of the snapshots in the seed corpus (the replica's, see
/// [`crate::peer_message::replica_config`]).
pub fn core_config() -> Config {
    crate::peer_message::replica_config(0).core
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framed;
    let bytes = if mode & 1 == 0 {
        rest
    } else {
        framed = with_header(rest);
        &framed
    };
    if let Ok(allocator) = Allocator::decode_snapshot(core_config(), bytes) {
        let mut first = Vec::new();
        allocator.encode_snapshot(&mut first);
        let again = Allocator::decode_snapshot(core_config(), &first)
            .expect("a re-encoded snapshot decodes");
        let mut second = Vec::new();
        again.encode_snapshot(&mut second);
        assert!(
            first == second,
            "snapshot encoding is stable across a round trip"
        );
    }
}

/// A snapshot header for `body`, then the body.
pub fn with_header(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + body.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC.to_le_bytes());
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}
