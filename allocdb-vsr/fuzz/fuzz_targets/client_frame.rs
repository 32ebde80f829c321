//! libFuzzer entry point; the target itself is `allocdb_fuzz::client_frame::run`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| allocdb_fuzz::client_frame::run(data));
