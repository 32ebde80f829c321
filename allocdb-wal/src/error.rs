//! [`WalError`]: every way opening, reading or writing the log can fail.

use std::fmt;

use allocdb_core::Op;

use crate::storage::StorageError;

/// A failure of the durable log. Corruption variants name the file, the byte offset and the
/// op, so an operator (or protocol-aware repair) knows exactly what is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalError {
    /// The storage failed; if the call was mutating, the `Wal` is now poisoned.
    Storage(StorageError),
    /// An earlier storage failure left the in-memory state unknown: drop the `Wal` and reopen.
    Poisoned,
    /// No superblock: the directory was never formatted.
    NotFormatted,
    /// `format` found an existing superblock.
    AlreadyFormatted,
    /// The data belongs to another cluster.
    ClusterMismatch {
        /// The configured cluster.
        expected: u128,
        /// The cluster on disk.
        found: u128,
    },
    /// Neither superblock copy is valid.
    SuperblockCorrupt {
        /// The superblock file.
        file: String,
    },
    /// A record that is not the torn tail failed validation (or a read found it damaged).
    RecordCorrupt {
        /// The segment file.
        file: String,
        /// Byte offset of the record in the file.
        offset: u64,
        /// The op expected there.
        op: Op,
        /// What failed.
        reason: &'static str,
    },
    /// Segments do not follow each other.
    LogGap {
        /// The segment where the gap starts.
        file: String,
        /// The op that should have come next.
        expected_op: Op,
        /// The op found instead.
        found_op: Op,
    },
    /// The checkpoint the superblock names is missing or damaged.
    CheckpointCorrupt {
        /// The checkpoint file.
        file: String,
        /// What failed.
        reason: &'static str,
    },
    /// `append` was given an op other than `last_op() + 1`.
    OpOutOfOrder {
        /// The op the log needs next.
        expected: Op,
        /// The op given.
        found: Op,
    },
    /// A body above `WalConfig::body_bytes_max`.
    BodyTooLarge {
        /// The body's length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// The log retains `WalConfig::log_ops_max` ops: checkpoint before appending more.
    LogFull {
        /// The limit.
        ops_max: u64,
    },
    /// The op is not in the retained log.
    OpNotFound {
        /// The op asked for.
        op: Op,
        /// The oldest op retained.
        first_op: Op,
        /// The newest op.
        last_op: Op,
    },
    /// An argument outside what the call allows (the text says which).
    InvalidArgument(&'static str),
    /// The configuration is inconsistent (the text says how).
    InvalidConfig(&'static str),
}

impl From<StorageError> for WalError {
    fn from(error: StorageError) -> WalError {
        WalError::Storage(error)
    }
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Storage(error) => write!(f, "{error}"),
            WalError::Poisoned => write!(f, "log poisoned by an earlier storage error; reopen it"),
            WalError::NotFormatted => {
                write!(f, "no superblock: the data directory is not formatted")
            }
            WalError::AlreadyFormatted => write!(f, "the data directory is already formatted"),
            WalError::ClusterMismatch { expected, found } => write!(
                f,
                "data belongs to cluster {found:#x}, configured cluster is {expected:#x}"
            ),
            WalError::SuperblockCorrupt { file } => {
                write!(f, "{file}: no valid superblock copy")
            }
            WalError::RecordCorrupt {
                file,
                offset,
                op,
                reason,
            } => write!(
                f,
                "{file} offset {offset}: record op {op} corrupt: {reason}"
            ),
            WalError::LogGap {
                file,
                expected_op,
                found_op,
            } => write!(
                f,
                "{file}: log gap, expected op {expected_op}, found op {found_op}"
            ),
            WalError::CheckpointCorrupt { file, reason } => {
                write!(f, "{file}: checkpoint corrupt: {reason}")
            }
            WalError::OpOutOfOrder { expected, found } => {
                write!(f, "append of op {found}, but the next op is {expected}")
            }
            WalError::BodyTooLarge { len, max } => {
                write!(f, "record body of {len} bytes exceeds the limit {max}")
            }
            WalError::LogFull { ops_max } => {
                write!(
                    f,
                    "the log retains its limit of {ops_max} ops; checkpoint first"
                )
            }
            WalError::OpNotFound {
                op,
                first_op,
                last_op,
            } => write!(
                f,
                "op {op} is not in the log (retained ops {first_op}..={last_op})"
            ),
            WalError::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            WalError::InvalidConfig(what) => write!(f, "invalid configuration: {what}"),
        }
    }
}

impl std::error::Error for WalError {}
