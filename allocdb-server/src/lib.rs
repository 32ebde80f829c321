//! `allocdb-server` runs one replica of an AllocDB cluster as a process: a tokio runtime
//! around the sans-I/O [`allocdb_vsr::Replica`], with its TCP bus, client sessions, metrics,
//! logging and the `allocdb` command line.
//!
//! The replica is owned by one task ([`driver`]) fed through bounded channels; every socket
//! comes from [`net`], which is `tokio::net` in production and `turmoil::net` under the
//! `simulation` feature; the only clock is [`clock::SlotClock`] over tokio's `Instant`. This
//! crate must never decide anything the replica decides: it moves bytes, time and outputs.
//! The wire format lives in `allocdb_vsr::frame`, shared with the client.

pub mod admission;
pub mod audit;
pub mod authz;
pub mod benchmark;
pub mod certs;
pub mod cli_client;
pub mod clock;
pub mod cluster_args;
pub mod commands;
pub mod connection;
pub mod demo;
pub mod dir_lock;
pub mod disk_jobs;
pub mod driver;
pub mod duration;
pub mod fingerprint;
pub mod format_check;
pub mod frame_io;
pub mod fs_check;
pub mod health;
pub mod histogram;
pub mod json;
pub mod local_cluster;
pub mod malloc_tuning;
pub mod metrics;
pub mod net;
pub mod peer;
pub mod progress;
pub mod runtime_threads;
pub mod security_args;
pub mod server;
pub mod settings;
pub mod spare_lists;
pub mod status;
pub mod stdout;
pub mod table_watch;
pub mod tls;

pub use server::{RuntimeOptions, ServerError, run};
pub use settings::ClusterSettings;
