//! libFuzzer entry point; the target itself is `allocdb_fuzz::peer_message::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| allocdb_fuzz::peer_message::run(data));
