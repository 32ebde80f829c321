//! Whether a data directory sits on a file system that keeps appends in order across a power
//! loss (docs/operations.md, "File system").
//!
//! The log's recovery cuts a torn tail and treats anything else as damage, which is right when
//! a power loss keeps a prefix of the unsynced appends: ext4 with its journal, XFS. ext4
//! *without* a journal writes a file's data, size and block map with no order among them, so a
//! power loss during a sync can keep a later record and lose an earlier one, and the replica
//! then refuses to start or recovers from its peers. `allocdb start` warns about it once.
//!
//! Linux shows it without privileges: every mounted ext4 device has `/proc/fs/ext4/<dev>`, and
//! one with a journal also `/proc/fs/jbd2/<dev>-<journal inode>`. Anything this cannot read or
//! match (another OS, a device-mapper name, no `/proc`) gives no warning: it only ever warns
//! when it is sure.

use std::path::{Component, Path, PathBuf};

/// A warning naming the directory and its device when `dir` is on ext4 without a journal.
pub fn unordered_appends(dir: &Path) -> Option<String> {
    let path = std::fs::canonicalize(dir).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let ext4 = entries(Path::new("/proc/fs/ext4"));
    let jbd2 = entries(Path::new("/proc/fs/jbd2"));
    let device = journalless_ext4(&mountinfo, &path, &ext4, &jbd2)?;
    Some(format!(
        "{} is on ext4 without a journal ({device}): a power loss during a sync can keep a \
         later log record and lose an earlier one, which recovery must treat as damage (a single \
         replica then refuses to start); use ext4 with a journal or XFS (docs/operations.md, \
         \"File system\")",
        dir.display()
    ))
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |read| {
            read.flatten()
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        },
    )
}

/// The device (mount source) of the mount holding `path`, when it is ext4 that the kernel
/// lists (`ext4` names `/proc/fs/ext4`) with no journal (`jbd2` names `/proc/fs/jbd2`).
fn journalless_ext4(
    mountinfo: &str,
    path: &Path,
    ext4: &[String],
    jbd2: &[String],
) -> Option<String> {
    let mount = mount_of(mountinfo, path)?;
    if mount.fs_type != "ext4" {
        return None;
    }
    let name = Path::new(&mount.source).file_name()?.to_str()?;
    let listed = ext4.iter().any(|entry| entry == name);
    let journal = jbd2.iter().any(|entry| {
        entry
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('-'))
    });
    (listed && !journal).then(|| mount.source.clone())
}

#[derive(Debug, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    fs_type: String,
    source: String,
}

/// The mount whose mount point is the longest ancestor of `path` (the last one listed wins a
/// tie: it is mounted over the others).
fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some(mount) = parse_line(line) else {
            continue;
        };
        if !path.starts_with(&mount.point) {
            continue;
        }
        let depth = mount.point.components().count();
        if best
            .as_ref()
            .is_none_or(|best| depth >= best.point.components().count())
        {
            best = Some(mount);
        }
    }
    best
}

/// One line of `/proc/self/mountinfo`: `id parent major:minor root point options [tags] -
/// type source super-options`.
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let point = unescape(before.split(' ').nth(4)?);
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_owned();
    let source = unescape(after.next()?);
    let point = PathBuf::from(point);
    if !matches!(point.components().next(), Some(Component::RootDir)) {
        return None;
    }
    Some(Mount {
        point,
        fs_type,
        source,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let octal = bytes.get(at + 1..at + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[at], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                at += 4;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{journalless_ext4, mount_of, unescape};

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 8:1 / /srv/allocdb rw,relatime shared:1 - ext4 /dev/sdb1 rw
41 27 8:2 / /srv/xfs rw,relatime - xfs /dev/sdc rw
42 27 0:30 / /srv/with\\040space rw - ext4 /dev/sdd rw
43 27 253:0 / /srv/lvm rw - ext4 /dev/mapper/vg-data rw
";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn the_deepest_mount_holding_the_path_decides() {
        let mount = mount_of(MOUNTINFO, Path::new("/srv/allocdb/r0/wal")).unwrap();
        assert_eq!(mount.source, "/dev/sdb1");
        assert_eq!(
            mount_of(MOUNTINFO, Path::new("/srv/other")).unwrap().source,
            "/dev/vda"
        );
        // A sibling whose name merely starts like a mount point is not under it.
        assert_eq!(
            mount_of(MOUNTINFO, Path::new("/srv/allocdbx"))
                .unwrap()
                .source,
            "/dev/vda"
        );
        let spaced = mount_of(MOUNTINFO, Path::new("/srv/with space/r0")).unwrap();
        assert_eq!(spaced.source, "/dev/sdd");
        assert_eq!(unescape("a\\040b\\134c\\"), "a b\\c\\");
    }

    #[test]
    fn only_ext4_the_kernel_lists_without_a_journal_is_reported() {
        let ext4 = names(&["vda", "sdb1", "sdd", "dm-0"]);
        let jbd2 = names(&["sdb1-8"]);
        let check = |path: &str| journalless_ext4(MOUNTINFO, Path::new(path), &ext4, &jbd2);
        assert_eq!(check("/var/lib/allocdb"), Some("/dev/vda".to_owned()));
        assert_eq!(check("/srv/allocdb/r0"), None, "sdb1 has a journal");
        assert_eq!(check("/srv/xfs/r0"), None, "not ext4");
        assert_eq!(check("/srv/with space/r0"), Some("/dev/sdd".to_owned()));
        // The kernel lists device-mapper volumes as dm-N: unsure, so no warning.
        assert_eq!(check("/srv/lvm/r0"), None);
        // A journal named after another device with the same prefix does not count.
        let vda1 = names(&["vda1-8"]);
        assert_eq!(
            journalless_ext4(MOUNTINFO, Path::new("/x"), &ext4, &vda1),
            Some("/dev/vda".to_owned())
        );
        // Nothing readable: no warning.
        assert_eq!(journalless_ext4("", Path::new("/x"), &ext4, &[]), None);
        assert_eq!(journalless_ext4(MOUNTINFO, Path::new("/x"), &[], &[]), None);
    }
}
