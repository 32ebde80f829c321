//! [`Storage`] on real files in one directory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::storage::{
    FileSyncer, FileWriter, Handle, Storage, StorageError, StorageErrorKind, StorageLock,
    StorageOp, validate_name,
};

/// How many files one `FileStorage` keeps open at once (segments, superblock, checkpoint).
pub const FILES_OPEN_MAX: usize = 1024;

struct OpenFile {
    name: String,
    // Shared with the syncers of this file, which may outlive its handle (closed or removed
    // while a sync is out): no descriptor is duplicated per sync.
    file: Arc<File>,
    syncs: Arc<SyncGate>,
    // Cached so `append` needs no `fstat`; every write through this handle updates it.
    len: u64,
}

/// Real files under one directory: `sync` is `fdatasync`, `sync_directory` is `fsync` of the
/// directory, and the directory is synced after it is created.
pub struct FileStorage {
    dir: PathBuf,
    files: BTreeMap<u64, OpenFile>,
    handle_next: u64,
}

impl FileStorage {
    /// Uses `dir`, creating it (and syncing its parent) if missing.
    ///
    /// # Errors
    /// A [`StorageError`] naming the directory.
    pub fn open_dir(dir: impl Into<PathBuf>) -> Result<FileStorage, StorageError> {
        let dir = dir.into();
        let label = dir.display().to_string();
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)
                .map_err(|error| StorageError::io(StorageOp::Create, &label, &error))?;
            if let Some(parent) = dir.parent() {
                sync_path(parent)
                    .map_err(|error| StorageError::io(StorageOp::SyncDirectory, &label, &error))?;
            }
        }
        Ok(FileStorage {
            dir,
            files: BTreeMap::new(),
            handle_next: 1,
        })
    }

    /// The directory this storage works in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn insert(&mut self, op: StorageOp, name: &str, file: File) -> Result<Handle, StorageError> {
        if self.files.len() >= FILES_OPEN_MAX {
            return Err(StorageError::new(op, name, StorageErrorKind::TooManyOpen));
        }
        let len = file
            .metadata()
            .map_err(|error| StorageError::io(op, name, &error))?
            .len();
        let number = self.handle_next;
        self.handle_next += 1;
        let previous = self.files.insert(
            number,
            OpenFile {
                name: name.to_owned(),
                file: Arc::new(file),
                syncs: Arc::default(),
                len,
            },
        );
        assert!(previous.is_none(), "handle numbers are never reused");
        Ok(Handle::new(number))
    }

    fn get(&mut self, op: StorageOp, handle: Handle) -> Result<&mut OpenFile, StorageError> {
        self.files
            .get_mut(&handle.number())
            .ok_or_else(|| StorageError::new(op, "?", StorageErrorKind::BadHandle))
    }
}

/// A segment's sync on another thread: the file's own descriptor, shared (it stays open while
/// the syncer lives, whatever the storage does with its handle), and the file's [`SyncGate`].
pub struct FileStorageSyncer {
    name: String,
    file: Arc<File>,
    syncs: Arc<SyncGate>,
}

impl FileSyncer for FileStorageSyncer {
    fn sync(&self) -> Result<(), StorageError> {
        self.syncs.sync(&self.file, &self.name)
    }
}

/// Every `fdatasync` of one file, from the storage or a syncer, passes here. Linux reports a
/// writeback error once per open file description, and both sync the same one: if the sync
/// thread's `fdatasync` failed and the replica's own sync ran next, the second would
/// succeed and count pages that never reached the disk as durable. So syncs of a file take
/// turns, and a failure sticks: every later sync of that file fails with it.
#[derive(Default)]
struct SyncGate {
    failed: Mutex<Option<StorageError>>,
}

impl SyncGate {
    fn sync(&self, file: &File, name: &str) -> Result<(), StorageError> {
        self.pass(name, || file.sync_data())
    }

    /// Runs `sync` unless an earlier sync of this file failed; remembers its failure.
    fn pass(
        &self,
        name: &str,
        sync: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<(), StorageError> {
        // A panic while syncing leaves nothing half-done here: the error (if any) is recorded
        // before the lock is released.
        let mut failed = self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(error) = failed.as_ref() {
            return Err(error.clone());
        }
        sync().map_err(|error| {
            let error = StorageError::io(StorageOp::Sync, name, &error);
            *failed = Some(error.clone());
            error
        })
    }
}

/// Whole-file work on another thread: only the directory's path is shared.
pub struct FileStorageWriter {
    dir: PathBuf,
}

impl FileWriter for FileStorageWriter {
    fn write_new(&self, name: &str, parts: &[&[u8]]) -> Result<(), StorageError> {
        validate_name(StorageOp::Create, name)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.dir.join(name))
            .map_err(|error| StorageError::io(StorageOp::Create, name, &error))?;
        for part in parts {
            file.write_all(part)
                .map_err(|error| StorageError::io(StorageOp::Append, name, &error))?;
        }
        // No gate as for the log's syncs: nothing else syncs this file, and after a failure
        // its writer's caller abandons it.
        file.sync_data()
            .map_err(|error| StorageError::io(StorageOp::Sync, name, &error))
    }

    fn remove_files(&self, names: &[String]) -> Result<(), StorageError> {
        for name in names {
            validate_name(StorageOp::Remove, name)?;
            shrink_gradually(&self.dir.join(name))
                .map_err(|error| StorageError::io(StorageOp::Truncate, name, &error))?;
            match std::fs::remove_file(self.dir.join(name)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io(StorageOp::Remove, name, &error));
                }
                _ => {}
            }
        }
        let label = self.dir.display().to_string();
        sync_path(&self.dir)
            .map_err(|error| StorageError::io(StorageOp::SyncDirectory, &label, &error))
    }
}

/// Bytes a segment being removed is cut by at a time.
const SHRINK_STEP_BYTES: u64 = 1 << 20;
/// The pause between two cuts.
const SHRINK_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Cuts the file at `path` down to nothing a few megabytes at a time, pausing between cuts.
/// Freeing a whole 64 MiB segment at once makes the file system's next journal commit free
/// (and, mounted with `discard`, trim) all of it, and the log's `fdatasync` waits for that
/// commit: measured, one second in which the p99 latency rose to 40–62 ms. In steps, each
/// commit carries a few megabytes. A missing file is not an error (there is nothing to cut).
fn shrink_gradually(path: &Path) -> std::io::Result<()> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut len = file.metadata()?.len();
    while len > 0 {
        len = len.saturating_sub(SHRINK_STEP_BYTES);
        file.set_len(len)?;
        if len > 0 {
            std::thread::sleep(SHRINK_PAUSE);
        }
    }
    Ok(())
}

fn sync_path(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

impl Storage for FileStorage {
    type Syncer = FileStorageSyncer;
    type Writer = FileStorageWriter;

    fn create(&mut self, name: &str) -> Result<Handle, StorageError> {
        validate_name(StorageOp::Create, name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.dir.join(name))
            .map_err(|error| StorageError::io(StorageOp::Create, name, &error))?;
        self.insert(StorageOp::Create, name, file)
    }

    fn open(&mut self, name: &str) -> Result<Handle, StorageError> {
        validate_name(StorageOp::Open, name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(name))
            .map_err(|error| StorageError::io(StorageOp::Open, name, &error))?;
        self.insert(StorageOp::Open, name, file)
    }

    fn close(&mut self, handle: Handle) {
        self.files.remove(&handle.number());
    }

    fn len(&mut self, handle: Handle) -> Result<u64, StorageError> {
        Ok(self.get(StorageOp::Len, handle)?.len)
    }

    fn read_at(&mut self, handle: Handle, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let open = self.get(StorageOp::Read, handle)?;
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > open.len) {
            let kind = StorageErrorKind::OutOfRange {
                offset,
                len: buf.len() as u64,
                file_len: open.len,
            };
            return Err(StorageError::new(StorageOp::Read, &open.name, kind));
        }
        open.file
            .read_exact_at(buf, offset)
            .map_err(|error| StorageError::io(StorageOp::Read, &open.name, &error))
    }

    fn write_at(&mut self, handle: Handle, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let open = self.get(StorageOp::Write, handle)?;
        open.file
            .write_all_at(data, offset)
            .map_err(|error| StorageError::io(StorageOp::Write, &open.name, &error))?;
        open.len = open.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn append(&mut self, handle: Handle, data: &[u8]) -> Result<u64, StorageError> {
        let open = self.get(StorageOp::Append, handle)?;
        let offset = open.len;
        open.file
            .write_all_at(data, offset)
            .map_err(|error| StorageError::io(StorageOp::Append, &open.name, &error))?;
        open.len = offset + data.len() as u64;
        Ok(offset)
    }

    fn sync(&mut self, handle: Handle) -> Result<(), StorageError> {
        let open = self.get(StorageOp::Sync, handle)?;
        open.syncs.sync(&open.file, &open.name)
    }

    fn syncer(&mut self, handle: Handle) -> Result<FileStorageSyncer, StorageError> {
        let open = self.get(StorageOp::Sync, handle)?;
        Ok(FileStorageSyncer {
            name: open.name.clone(),
            file: Arc::clone(&open.file),
            syncs: Arc::clone(&open.syncs),
        })
    }

    fn writer(&mut self) -> FileStorageWriter {
        FileStorageWriter {
            dir: self.dir.clone(),
        }
    }

    fn truncate(&mut self, handle: Handle, len: u64) -> Result<(), StorageError> {
        let open = self.get(StorageOp::Truncate, handle)?;
        open.file
            .set_len(len)
            .map_err(|error| StorageError::io(StorageOp::Truncate, &open.name, &error))?;
        open.len = len;
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        validate_name(StorageOp::Rename, from)?;
        validate_name(StorageOp::Rename, to)?;
        std::fs::rename(self.dir.join(from), self.dir.join(to))
            .map_err(|error| StorageError::io(StorageOp::Rename, from, &error))
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        validate_name(StorageOp::Remove, name)?;
        std::fs::remove_file(self.dir.join(name))
            .map_err(|error| StorageError::io(StorageOp::Remove, name, &error))
    }

    fn list(&mut self) -> Result<Vec<String>, StorageError> {
        let label = self.dir.display().to_string();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|error| StorageError::io(StorageOp::List, &label, &error))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| StorageError::io(StorageOp::List, &label, &error))?;
            // Names that are not valid UTF-8 cannot be ours; skip them rather than fail.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_directory(&mut self) -> Result<(), StorageError> {
        let label = self.dir.display().to_string();
        sync_path(&self.dir)
            .map_err(|error| StorageError::io(StorageOp::SyncDirectory, &label, &error))
    }

    /// An advisory lock (`flock`) on the directory itself: the kernel releases it however the
    /// holding process ends, so a crash never leaves a stale lock behind.
    fn lock_exclusive(&mut self) -> Result<StorageLock, StorageError> {
        let label = self.dir.display().to_string();
        let directory = File::open(&self.dir)
            .map_err(|error| StorageError::io(StorageOp::Lock, &label, &error))?;
        match directory.try_lock() {
            Ok(()) => Ok(Box::new(directory)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::new(
                StorageOp::Lock,
                &label,
                StorageErrorKind::Locked,
            )),
            Err(std::fs::TryLockError::Error(error)) => {
                Err(StorageError::io(StorageOp::Lock, &label, &error))
            }
        }
    }
}

#[cfg(test)]
mod sync_gate_tests {
    use super::SyncGate;

    #[test]
    fn a_failed_sync_fails_every_later_sync_of_the_file() {
        let gate = SyncGate::default();
        assert!(gate.pass("log-1", || Ok(())).is_ok());
        let eio = || Err(std::io::Error::from_raw_os_error(5));
        let first = gate.pass("log-1", eio).expect_err("the kernel said EIO");
        // The kernel reports a writeback error once: the next fdatasync would succeed.
        let second = gate
            .pass("log-1", || Ok(()))
            .expect_err("the failure sticks");
        assert_eq!(first, second);
        assert_eq!(second.name, "log-1");
    }
}

#[cfg(test)]
mod writer_tests {
    use crate::{FileStorage, FileWriter, Storage};

    #[test]
    fn writes_new_files_once_and_removes_large_and_missing_ones() {
        let dir = std::env::temp_dir().join(format!("allocdb-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut storage = FileStorage::open_dir(&dir).unwrap();
        let big = vec![7_u8; (3 << 20) + 5];
        let writer = storage.writer();
        writer
            .write_new("log-a", &[&big[..1000], &big[1000..]])
            .unwrap();
        writer.write_new("log-b", &[b"small"]).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("log-a")).unwrap().len(),
            big.len() as u64
        );
        let exists = writer.write_new("log-b", &[b"again"]).unwrap_err();
        assert_eq!(exists.kind, crate::StorageErrorKind::AlreadyExists);
        let names = ["log-a", "log-b", "log-missing"].map(String::from);
        writer.remove_files(&names).unwrap();
        assert!(
            storage
                .list()
                .unwrap()
                .iter()
                .all(|name| !name.starts_with("log-"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
