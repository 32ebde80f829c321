//! AllocDB's fuzz targets, as plain functions over bytes so that libFuzzer (`cargo fuzz run`,
//! through `fuzz_targets/`) and the std-only smoke runner (`examples/smoke.rs`, used by CI)
//! run exactly the same code. Each `run` must return for any input; a panic is a finding.
//!
//! Inputs start with a mode byte: one mode feeds the bytes as they would arrive, the other
//! builds the checksums a random mutation almost never gets right, so the fuzzer reaches the
//! decoders (and the replica) behind them. See docs/testing.md, "Fuzzing".

pub mod client_frame;
pub mod peer_message;
pub mod seeds;
pub mod smoke;
pub mod snapshot;
pub mod wal_segment;

/// The cluster every target speaks for.
pub const CLUSTER_ID: u128 = 0xA110C;

/// A fuzz target: must return for any input.
pub type Target = fn(&[u8]);

/// The targets by name, as `cargo fuzz` and the corpus directories name them.
pub const TARGETS: [(&str, Target); 4] = [
    ("client_frame", client_frame::run),
    ("peer_message", peer_message::run),
    ("snapshot", snapshot::run),
    ("wal_segment", wal_segment::run),
];
