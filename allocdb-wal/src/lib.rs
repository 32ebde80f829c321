//! `allocdb-wal` is AllocDB's durable storage: a hash-chained log of checksummed records in
//! bounded segments, checkpoints that bound the log, the superblock that holds a replica's
//! durable metadata, and recovery that rebuilds all of it after a crash.
//!
//! It never trusts bytes it reads back: every record, checkpoint and superblock copy is
//! checksummed, a torn tail is cut off, and any other damage is an error naming the file,
//! offset and op (fail closed) — unless the caller opts into [`Wal::open_for_repair`], which
//! durably marks the replica recovering and then cuts the log before the damage. It never touches a file except through [`Storage`], so the
//! simulator's [`SimStorage`] can lose, tear and flip data deterministically. Record bodies
//! and snapshots are opaque bytes produced by `allocdb-core`. Formats: `docs/storage.md`.

mod checkpoint;
mod checkpoint_write;
mod checksum;
mod config;
mod error;
mod file_storage;
mod prng;
mod record;
mod recovery;
mod segment;
mod sim_storage;
mod storage;
mod superblock;
mod tail_sync;
mod wal;

pub use checkpoint::{CHECKPOINT_HEADER_SIZE, Checkpoint, CheckpointInfo, checkpoint_file_name};
pub use checkpoint_write::CheckpointWrite;
pub use checksum::{Checksum, checksum128, root_checksum};
pub use config::{ReplicaIdentity, WalConfig};
pub use error::WalError;
pub use file_storage::{FileStorage, FileStorageSyncer, FileStorageWriter};
pub use prng::SplitMix64;
pub use record::{RECORD_BODY_LIMIT, RECORD_HEADER_SIZE, RecordHeader, View};
pub use segment::segment_file_name;
pub use sim_storage::{SimConfig, SimStorage, SimSyncer, SimWriter};
pub use storage::{
    FileSyncer, FileWriter, Handle, Storage, StorageError, StorageErrorKind, StorageLock,
    StorageOp, validate_name,
};
pub use superblock::{SUPERBLOCK_FILE, Superblock};
pub use tail_sync::TailSync;
pub use wal::{RecordIter, Recovery, VsrState, Wal};
