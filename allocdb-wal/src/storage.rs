//! The `Storage` trait: every byte AllocDB persists goes through it, so the simulator can
//! substitute a disk that loses, tears and flips data.

use std::fmt;

/// An open file, issued by a [`Storage`]. Handles are never reused by one storage, so a
/// stale handle (after `close` or a simulated crash) fails with [`StorageErrorKind::BadHandle`]
/// instead of reaching another file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(u64);

impl Handle {
    /// A handle with the given number (for `Storage` implementations).
    pub fn new(number: u64) -> Handle {
        Handle(number)
    }

    /// The handle's number.
    pub fn number(self) -> u64 {
        self.0
    }
}

/// File access for one flat directory. Names are plain file names (see [`validate_name`]).
///
/// Durability contract (what [`crate::FileStorage`] guarantees and [`crate::SimStorage`]
/// enforces by losing data on `crash`):
/// - `write_at`, `append` and `truncate` are durable only after `sync` of that handle;
/// - `create`, `rename` and `remove` are durable only after `sync_directory`;
/// - `rename` atomically replaces `to`; a crash shows either the old or the new name.
pub trait Storage {
    /// Syncs one file later, from any thread (see [`Storage::syncer`]).
    type Syncer: FileSyncer;
    /// Writes whole new files later, from any thread (see [`Storage::writer`]).
    type Writer: FileWriter;

    /// Creates a new empty file. Fails with `AlreadyExists` if `name` exists.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn create(&mut self, name: &str) -> Result<Handle, StorageError>;
    /// Opens an existing file for reading and writing.
    ///
    /// # Errors
    /// `NotFound` or any other [`StorageError`].
    fn open(&mut self, name: &str) -> Result<Handle, StorageError>;
    /// Closes a handle. Closing an unknown handle does nothing.
    fn close(&mut self, handle: Handle);
    /// The file's current length in bytes.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn len(&mut self, handle: Handle) -> Result<u64, StorageError>;
    /// Fills `buf` from `offset`; fails with `OutOfRange` if the file is shorter.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn read_at(&mut self, handle: Handle, offset: u64, buf: &mut [u8]) -> Result<(), StorageError>;
    /// Writes `data` at `offset`, extending the file if needed.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn write_at(&mut self, handle: Handle, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// Writes `data` at the end of the file; returns the offset it was written at.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn append(&mut self, handle: Handle, data: &[u8]) -> Result<u64, StorageError>;
    /// Makes the file's data and length durable (`fdatasync`).
    ///
    /// # Errors
    /// Any [`StorageError`]; after a failed sync the file's durable content is unknown.
    fn sync(&mut self, handle: Handle) -> Result<(), StorageError>;
    /// Something that does [`Storage::sync`] of `handle` later, from any thread, without
    /// borrowing the storage: the log's owner goes on appending while the fsync runs
    /// elsewhere (see [`crate::Wal::sync_begin`]). Its sync covers at least what was written
    /// before this call; a crash meanwhile makes it fail (`BadHandle`).
    ///
    /// # Errors
    /// `BadHandle`, or any other [`StorageError`].
    fn syncer(&mut self, handle: Handle) -> Result<Self::Syncer, StorageError>;
    /// Something that writes whole new files into this storage's directory, or removes old
    /// ones, later, from any thread, without borrowing the storage: a checkpoint's megabytes
    /// are written and synced, and the segments it covers removed, elsewhere while the log's
    /// owner goes on (see [`crate::Wal::checkpoint_begin`]). A crash meanwhile makes it fail
    /// (`BadHandle`).
    fn writer(&mut self) -> Self::Writer;
    /// Sets the file's length.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn truncate(&mut self, handle: Handle, len: u64) -> Result<(), StorageError>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Removes a file. Open handles to it keep working until closed.
    ///
    /// # Errors
    /// `NotFound` or any other [`StorageError`].
    fn remove(&mut self, name: &str) -> Result<(), StorageError>;
    /// The names in the directory, sorted.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn list(&mut self) -> Result<Vec<String>, StorageError>;
    /// Makes every earlier `create`, `rename` and `remove` durable.
    ///
    /// # Errors
    /// Any [`StorageError`].
    fn sync_directory(&mut self) -> Result<(), StorageError>;
    /// Takes the exclusive lock that makes its holder the only user of this storage: while the
    /// returned guard lives (or, for files, the process that holds it), another lock attempt —
    /// a second process on the same directory, a second `Wal` on the same simulated disk —
    /// fails with `Locked`.
    ///
    /// # Errors
    /// `Locked`, or any other [`StorageError`].
    fn lock_exclusive(&mut self) -> Result<StorageLock, StorageError>;
}

/// One file's sync, detached from its [`Storage`] (see [`Storage::syncer`]).
pub trait FileSyncer: Send + 'static {
    /// Makes the file's data and length durable, as [`Storage::sync`] does.
    ///
    /// # Errors
    /// Any [`StorageError`]; after a failed sync the file's durable content is unknown.
    fn sync(&self) -> Result<(), StorageError>;
}

/// Whole-file work detached from its [`Storage`] (see [`Storage::writer`]).
pub trait FileWriter: Send + 'static {
    /// Creates `name` (failing with `AlreadyExists` if it exists), writes `parts` one after
    /// another and syncs the file's data, as `create`, `append` and `sync` would. Like a
    /// `create`, the new name is durable only after the storage's `sync_directory`.
    ///
    /// # Errors
    /// Any [`StorageError`]; the file may then exist with any part of `parts`.
    fn write_new(&self, name: &str, parts: &[&[u8]]) -> Result<(), StorageError>;

    /// Removes every file of `names` that exists, then makes that durable (`sync_directory`).
    /// Removing a log segment of tens of megabytes frees its blocks, which can take a file
    /// system hundreds of milliseconds: work for a thread that nobody waits on.
    ///
    /// # Errors
    /// Any [`StorageError`] but `NotFound`; some of the files may then be gone.
    fn remove_files(&self, names: &[String]) -> Result<(), StorageError>;
}

/// Proof of a storage's exclusive lock (see [`Storage::lock_exclusive`]); dropping it releases
/// the lock.
pub type StorageLock = Box<dyn std::any::Any + Send>;

/// The longest file name a storage accepts.
pub const NAME_BYTES_MAX: usize = 128;

/// Checks that `name` is a plain file name: 1..=128 bytes of `[A-Za-z0-9._-]`, not `.`/`..`.
///
/// # Errors
/// [`StorageErrorKind::InvalidName`].
pub fn validate_name(op: StorageOp, name: &str) -> Result<(), StorageError> {
    let valid_chars = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    let valid = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && valid_chars
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(StorageError::new(op, name, StorageErrorKind::InvalidName))
    }
}

/// Which storage operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageOp {
    /// [`Storage::create`].
    Create,
    /// [`Storage::open`].
    Open,
    /// [`Storage::len`].
    Len,
    /// [`Storage::read_at`].
    Read,
    /// [`Storage::write_at`].
    Write,
    /// [`Storage::append`].
    Append,
    /// [`Storage::sync`].
    Sync,
    /// [`Storage::truncate`].
    Truncate,
    /// [`Storage::rename`].
    Rename,
    /// [`Storage::remove`].
    Remove,
    /// [`Storage::list`].
    List,
    /// [`Storage::sync_directory`].
    SyncDirectory,
    /// [`Storage::lock_exclusive`].
    Lock,
}

/// Why a storage operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The file does not exist.
    NotFound,
    /// The file already exists.
    AlreadyExists,
    /// The name is not a plain file name.
    InvalidName,
    /// The handle is closed, unknown, or was invalidated by a crash.
    BadHandle,
    /// A read reached past the end of the file.
    OutOfRange {
        /// The read's start.
        offset: u64,
        /// The read's length.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// Too many files are open at once.
    TooManyOpen,
    /// A fault injected by the simulated storage.
    Injected,
    /// Another holder has the storage's exclusive lock (a second process on a live directory).
    Locked,
    /// An operating-system error.
    Io {
        /// Its kind.
        kind: std::io::ErrorKind,
        /// Its message.
        message: String,
    },
}

/// A failed storage operation: what, on which file, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError {
    /// The operation.
    pub op: StorageOp,
    /// The file name (or directory, for `List`/`SyncDirectory`).
    pub name: String,
    /// The cause.
    pub kind: StorageErrorKind,
}

impl StorageError {
    /// Builds an error.
    pub fn new(op: StorageOp, name: &str, kind: StorageErrorKind) -> StorageError {
        StorageError {
            op,
            name: name.to_owned(),
            kind,
        }
    }

    /// Builds an error from an operating-system error.
    pub fn io(op: StorageOp, name: &str, error: &std::io::Error) -> StorageError {
        let kind = match error.kind() {
            std::io::ErrorKind::NotFound => StorageErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => StorageErrorKind::AlreadyExists,
            kind => StorageErrorKind::Io {
                kind,
                message: error.to_string(),
            },
        };
        StorageError::new(op, name, kind)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage {:?} of '{}' failed: ", self.op, self.name)?;
        match &self.kind {
            StorageErrorKind::NotFound => write!(f, "not found"),
            StorageErrorKind::AlreadyExists => write!(f, "already exists"),
            StorageErrorKind::InvalidName => write!(f, "invalid file name"),
            StorageErrorKind::BadHandle => write!(f, "closed or stale handle"),
            StorageErrorKind::OutOfRange {
                offset,
                len,
                file_len,
            } => write!(
                f,
                "read of {len} bytes at offset {offset} is past the end ({file_len} bytes)"
            ),
            StorageErrorKind::TooManyOpen => write!(f, "too many open files"),
            StorageErrorKind::Injected => write!(f, "injected fault"),
            StorageErrorKind::Locked => {
                write!(
                    f,
                    "locked by another user (a second process on a live directory?)"
                )
            }
            StorageErrorKind::Io { kind, message } => write!(f, "{message} ({kind:?})"),
        }
    }
}

impl std::error::Error for StorageError {}

#[cfg(test)]
mod tests {
    use super::{StorageErrorKind, StorageOp, validate_name};

    #[test]
    fn names_are_plain() {
        for good in [
            "superblock",
            "log-00000000000000000001",
            "checkpoint.tmp",
            "a_b",
        ] {
            assert!(validate_name(StorageOp::Open, good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "/x", "a b", "é"] {
            let error = validate_name(StorageOp::Open, bad).unwrap_err();
            assert_eq!(error.kind, StorageErrorKind::InvalidName, "{bad}");
        }
        assert!(validate_name(StorageOp::Open, &"x".repeat(129)).is_err());
    }
}
