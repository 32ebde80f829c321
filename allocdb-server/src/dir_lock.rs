//! One process per data directory: an exclusive advisory lock on `<data-dir>/lock`.
//!
//! Two processes writing one log corrupt it (both append, both rename the superblock), and a
//! second `start` on a live directory also joins the cluster as a second copy of the same
//! replica, voting twice. So `allocdb start` and every command that writes a data directory
//! (`format`, with or without `--if-empty`) take this lock first and keep it for the life of
//! the process; a second one fails at once, naming the directory and the holder's pid.
//!
//! The lock is `flock`-style (std's [`File::try_lock`]): the kernel drops it when the holder
//! dies, however it dies, so a stale lock file left by a crash never blocks a restart. The pid
//! written into the file is only for the message; the lock itself is what excludes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a data directory.
pub const LOCK_FILE: &str = "lock";
/// The most bytes read from a lock file for the holder's pid (a pid and a newline).
const LOCK_FILE_BYTES_MAX: u64 = 32;

/// Holds the data directory's lock until dropped (normally: until the process exits).
#[derive(Debug)]
pub struct DirLock {
    /// Kept open: closing the file would release the lock.
    _file: File,
    path: PathBuf,
    /// Whether this process created the lock file (it did not exist before).
    created: bool,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum DirLockError {
    /// Another process holds the lock.
    InUse {
        /// The data directory.
        data_dir: PathBuf,
        /// The lock file.
        path: PathBuf,
        /// The holder's pid as written in the lock file; `None` when the holder has not
        /// written it yet (it locks first, then writes) or the file holds something else.
        pid: Option<u32>,
    },
    /// The lock file could not be opened, locked or written.
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
}

impl std::fmt::Display for DirLockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirLockError::InUse {
                data_dir,
                path,
                pid: Some(pid),
            } => write!(
                f,
                "data directory {} is in use by process {pid} (lock file {})",
                data_dir.display(),
                path.display()
            ),
            DirLockError::InUse {
                data_dir,
                path,
                pid: None,
            } => write!(
                f,
                "data directory {} is in use by another process (lock file {}, no pid in it yet)",
                data_dir.display(),
                path.display()
            ),
            DirLockError::Io { path, error } => {
                write!(f, "cannot lock {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for DirLockError {}

impl DirLock {
    /// Takes the exclusive lock of `data_dir` (which must exist) without waiting, and writes
    /// this process's pid into the lock file.
    ///
    /// # Errors
    /// [`DirLockError::InUse`] when another process holds it; [`DirLockError::Io`] when the
    /// lock file cannot be created, locked or written.
    pub fn acquire(data_dir: &Path) -> Result<DirLock, DirLockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |error| DirLockError::Io {
            path: path.clone(),
            error,
        };
        // Never truncate on open: the file may belong to a live holder whose pid we need.
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        let (mut file, created) = match options.clone().create_new(true).open(&path) {
            Ok(file) => (file, true),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                (options.open(&path).map_err(io)?, false)
            }
            Err(error) => return Err(io(error)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(DirLockError::InUse {
                    data_dir: data_dir.to_path_buf(),
                    pid: read_pid(&mut file),
                    path,
                });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        // Ours now: replace whatever a previous (dead) holder wrote.
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DirLock {
            _file: file,
            path,
            created,
        })
    }

    /// Releases the lock, first deleting the lock file if this process created it: for a
    /// command that looked and then refused to touch the directory (`format --if-empty` on a
    /// directory of someone else's files), so it leaves the directory as it found it.
    ///
    /// # Errors
    /// The lock file could not be deleted.
    pub fn release_leaving_no_trace(self) -> std::io::Result<()> {
        if self.created {
            // Deleted while still locked: a process that opened the file meanwhile fails its
            // `try_lock` (in use) and a later one creates a new file, so no two processes
            // ever hold a lock on the directory at once while this one could still write.
            std::fs::remove_file(&self.path)?;
        }
        Ok(())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid in a lock file, if it holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(LOCK_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{DirLock, DirLockError, LOCK_FILE};

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = std::env::temp_dir().join(format!("allocdb-dir-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A stale pid from a dead holder is overwritten, not trusted.
        std::fs::write(dir.join(LOCK_FILE), "999999999\n").unwrap();
        let held = DirLock::acquire(&dir).unwrap();
        let me = std::process::id();
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(),
            format!("{me}\n")
        );
        // flock locks belong to the open file description, so a second open in this process
        // conflicts exactly as another process would.
        let error = DirLock::acquire(&dir).unwrap_err();
        assert!(
            matches!(&error, DirLockError::InUse { pid: Some(pid), .. } if *pid == me),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!("{} is in use by process {me}", dir.display())),
            "{text}"
        );
        drop(held);
        // It existed before, so it stays.
        DirLock::acquire(&dir)
            .unwrap()
            .release_leaving_no_trace()
            .unwrap();
        assert!(dir.join(LOCK_FILE).is_file());
        std::fs::remove_file(dir.join(LOCK_FILE)).unwrap();
        DirLock::acquire(&dir)
            .unwrap()
            .release_leaving_no_trace()
            .unwrap();
        assert!(!dir.join(LOCK_FILE).exists());
        let again = DirLock::acquire(&dir).unwrap();
        assert_eq!(again.path(), dir.join(LOCK_FILE));
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let dir = std::env::temp_dir().join(format!("allocdb-no-dir-{}", std::process::id()));
        let error = DirLock::acquire(&dir).unwrap_err();
        assert!(matches!(error, DirLockError::Io { .. }), "{error:?}");
        assert!(error.to_string().starts_with("cannot lock"), "{error}");
    }
}
