//! libFuzzer entry point; the target itself is `allocdb_fuzz::snapshot::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| allocdb_fuzz::snapshot::run(data));
