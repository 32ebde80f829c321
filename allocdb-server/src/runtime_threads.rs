//! The async runtime of `allocdb start` and `allocdb benchmark`, sized by `--runtime-threads`.
//!
//! One thread is the default for both. A replica's connection tasks, peer links and replica
//! task then share the thread that runs the replica: a message passes from one to the next
//! without waking another thread. On a two-core machine that shares its cores between three
//! replicas and a load generator, those wake-ups (a futex, often an interrupt to a halted
//! virtual CPU, tens of microseconds each) were most of a commit round. Several threads pay
//! them, and in exchange encrypt and decode on other cores while the replica works: the choice
//! for a replica with cores to itself and CPU-bound connection work (thousands of TLS
//! handshakes at once).

use clap::value_parser;

/// The largest `--runtime-threads`.
pub const RUNTIME_THREADS_MAX: u16 = 64;

/// Parses `--runtime-threads`: 1 to [`RUNTIME_THREADS_MAX`].
#[must_use]
pub fn parser() -> clap::builder::RangedI64ValueParser<u16> {
    value_parser!(u16).range(1..=i64::from(RUNTIME_THREADS_MAX))
}

/// A runtime with I/O and timers on `threads` threads: with one, everything runs on the thread
/// that calls `block_on`; with more, spawned tasks run on that many workers and the future
/// given to `block_on` on the calling thread.
///
/// # Errors
/// The operating system refused a thread or the I/O driver.
///
/// # Panics
/// If `threads` is outside 1 to [`RUNTIME_THREADS_MAX`] (the flag's [`parser`] refuses those).
pub fn build(threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    assert!(
        (1..=RUNTIME_THREADS_MAX).contains(&threads),
        "--runtime-threads is checked by its parser"
    );
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .build()
    }
}
