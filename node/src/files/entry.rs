//! Entries on disk, handled without ever following a link: reading one's state (a fingerprint,
//! or saved with its content into the blob store), staging new content under a temporary name
//! beside its destination (written, with its final metadata, and synced before the journal
//! commits), and removing a tree.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use clawnet_crypto::Hash32;
use clawnet_storage::files::{EntryMeta, Fingerprint, SavedEntry};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::FileError;
use super::blobs::{BlobStore, copy_hashing};
use super::path::FsPath;
use super::sandbox::{Facts, Whitelist, io, lstat};

/// Most entries one recursive operation (copy, delete, move of a tree) may span.
pub const MAX_TREE_ENTRIES: usize = 10_000;

/// How a tree is read: checked against the whitelist at every level, within a budget of entries.
#[derive(Debug)]
pub(crate) struct Walk<'a> {
    pub(crate) whitelist: &'a Whitelist,
    pub(crate) dev: u64,
    /// Where to save file content; `None` reads fingerprints only.
    pub(crate) blobs: Option<&'a BlobStore>,
    /// Blobs this walk created by linking a live file (to release if the operation is abandoned).
    pub(crate) linked: Vec<Hash32>,
    entries: usize,
}

impl<'a> Walk<'a> {
    /// A walk that reads fingerprints only.
    pub(crate) fn fingerprints(whitelist: &'a Whitelist, dev: u64) -> Walk<'a> {
        Walk { whitelist, dev, blobs: None, linked: Vec::new(), entries: 0 }
    }

    /// A walk that saves content.
    pub(crate) fn saving(whitelist: &'a Whitelist, dev: u64, blobs: &'a BlobStore) -> Walk<'a> {
        Walk { whitelist, dev, blobs: Some(blobs), linked: Vec::new(), entries: 0 }
    }

    /// The state of `name` in `dir` (`shown` is its path for messages).
    pub(crate) fn fingerprint(&mut self, dir: &OwnedFd, name: &str, shown: &FsPath) -> Result<Fingerprint, FileError> {
        Ok(self.read(dir, name, shown)?.fingerprint())
    }

    /// `name` in `dir` as it is; with content saved if this walk saves.
    pub(crate) fn read(&mut self, dir: &OwnedFd, name: &str, shown: &FsPath) -> Result<SavedEntry, FileError> {
        self.entries += 1;
        if self.entries > MAX_TREE_ENTRIES {
            return Err(FileError::TooLarge { what: format!("the tree at {shown}"), limit: MAX_TREE_ENTRIES as u64 });
        }
        let Some(facts) = lstat(dir, name)? else { return Ok(SavedEntry::Absent) };
        self.whitelist.check_entry(&facts, shown, self.dev)?;
        match facts.kind {
            FileType::RegularFile => {
                let blob = match self.blobs {
                    Some(blobs) => {
                        let file = open_file(dir, name, shown)?;
                        let (hash, new) = blobs.save(dir, name, &file)?;
                        if new {
                            self.linked.push(hash);
                        }
                        hash
                    }
                    None => Hash32::ZERO,
                };
                Ok(SavedEntry::File { blob, len: facts.len, meta: facts.meta })
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(io("reading a link"))?;
                Ok(SavedEntry::Symlink { target: target.into_bytes() })
            }
            FileType::Directory => {
                let handle = self.whitelist.enter(dir, name, shown, self.dev)?;
                let mut entries = Vec::new();
                for child in names_in(&handle)? {
                    let child_path = shown.join(&child).map_err(|err| FileError::Invalid(err.to_string()))?;
                    entries.push((child.clone(), self.read(&handle, &child, &child_path)?));
                }
                Ok(SavedEntry::Dir { meta: facts.meta, entries })
            }
            _ => Err(FileError::NotAFile(format!("{shown} (a device, socket or pipe)"))),
        }
    }
}

impl Drop for Walk<'_> {
    /// A walk dropped with blobs still in `linked` ends a change that will not happen (the
    /// change takes them when it is planned): they must not stay links to live files.
    fn drop(&mut self) {
        if let Some(blobs) = self.blobs {
            for hash in &self.linked {
                blobs.release(hash);
            }
        }
    }
}

/// The names in a directory, sorted, without `.` and `..`; names that are not UTF-8 are refused.
pub(crate) fn names_in(dir: &OwnedFd) -> Result<Vec<String>, FileError> {
    let handle = rustix::io::fcntl_dupfd_cloexec(dir, 0).map_err(io("listing a directory"))?;
    let mut listing = rustix::fs::Dir::new(handle).map_err(io("listing a directory"))?;
    let mut names = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry.map_err(io("listing a directory"))?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let name = std::str::from_utf8(bytes).map_err(|_| {
            FileError::Invalid(format!("a name in this directory is not UTF-8: {:?}", entry.file_name()))
        })?;
        names.push(name.to_string());
        if names.len() > MAX_TREE_ENTRIES {
            return Err(FileError::TooLarge { what: "a directory".into(), limit: MAX_TREE_ENTRIES as u64 });
        }
    }
    names.sort();
    Ok(names)
}

/// Opens regular file `name` in `dir` for reading, never following a link.
pub(crate) fn open_file(dir: &OwnedFd, name: &str, shown: &FsPath) -> Result<File, FileError> {
    match rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::NOENT) => Err(FileError::NotFound(shown.to_string())),
        Err(Errno::LOOP) => Err(FileError::denied_l2(super::Denial::Symlink(shown.to_string()))),
        Err(err) => Err(FileError::io("opening a file", err)),
    }
}

/// A new file `temp` in `dir` (which must not exist), for staging.
pub(crate) fn create_temp(dir: &OwnedFd, temp: &str, mode: u32) -> Result<File, FileError> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, temp, flags, Mode::from_raw_mode(mode as _)).map_err(io("creating a file"))?;
    // The umask may have narrowed the mode; set it exactly.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode as _)).map_err(io("setting permissions"))?;
    Ok(File::from(fd))
}

/// Finishes a staged file: metadata set (time only if given), synced; returns its fingerprint.
pub(crate) fn finish_file(file: File, time: Option<EntryMeta>) -> Result<Fingerprint, FileError> {
    if let Some(meta) = time {
        set_mtime(&file, &meta)?;
    }
    file.sync_all().map_err(FileError::std_io("syncing a file"))?;
    let facts = Facts::of(&rustix::fs::fstat(&file).map_err(io("reading a file"))?);
    Ok(Fingerprint::File { len: facts.len, meta: facts.meta })
}

/// Stages `bytes` (after the content of `prefix`, for an append) as file `temp` in `dir`,
/// **not synced**: returns the file, for the caller to sync before it installs it, and its
/// fingerprint (syncing changes neither length nor metadata).
pub(crate) fn stage_bytes(
    dir: &OwnedFd,
    temp: &str,
    prefix: Option<&File>,
    bytes: &[u8],
    mode: u32,
) -> Result<(File, Fingerprint), FileError> {
    fill(create_temp(dir, temp, mode)?, prefix, bytes)
}

/// Stages `bytes` (after the content of `prefix`) in the empty `spare` with permissions `mode`,
/// **not synced**, as [`stage_bytes`] does in a new file.
pub(crate) fn stage_in_spare(
    spare: File,
    prefix: Option<&File>,
    bytes: &[u8],
    mode: u32,
) -> Result<(File, Fingerprint), FileError> {
    rustix::fs::fchmod(&spare, Mode::from_raw_mode(mode as _)).map_err(io("setting permissions"))?;
    fill(spare, prefix, bytes)
}

fn fill(mut out: File, prefix: Option<&File>, bytes: &[u8]) -> Result<(File, Fingerprint), FileError> {
    if let Some(prefix) = prefix {
        copy_hashing(prefix, &mut out)?;
    }
    out.write_all(bytes).map_err(FileError::std_io("writing a file"))?;
    let facts = Facts::of(&rustix::fs::fstat(&out).map_err(io("reading a file"))?);
    Ok((out, Fingerprint::File { len: facts.len, meta: facts.meta }))
}

/// Recreates `saved` as `temp` in `dir` from the blob store: files with their content checked
/// against their hash, permissions and times as they were, everything synced.
pub(crate) fn stage_saved(blobs: &BlobStore, dir: &OwnedFd, temp: &str, saved: &SavedEntry) -> Result<(), FileError> {
    match saved {
        SavedEntry::Absent => Ok(()),
        SavedEntry::File { blob, meta, .. } => {
            let mut out = create_temp(dir, temp, meta.mode)?;
            blobs.copy_out(blob, &mut out)?;
            finish_file(out, Some(*meta)).map(|_| ())
        }
        SavedEntry::Symlink { target } => {
            let target = std::str::from_utf8(target)
                .map_err(|_| FileError::Invalid("a saved link target is not UTF-8".into()))?;
            rustix::fs::symlinkat(target, dir, temp).map_err(io("recreating a link"))
        }
        SavedEntry::Dir { meta, entries } => {
            let handle = make_dir(dir, temp, 0o700, "recreating a directory")?;
            for (name, entry) in entries {
                stage_saved(blobs, &handle, name, entry)?;
            }
            finish_dir(&handle, meta.mode, Some(meta))
        }
    }
}

/// Copies the existing entry `name` in `from_dir` to `temp` in `to_dir`: files with their
/// content, permissions and time, links as links, directories recursively. Returns the copy's
/// fingerprint.
pub(crate) fn stage_copy(
    walk: &mut Walk<'_>,
    from_dir: &OwnedFd,
    name: &str,
    shown: &FsPath,
    to_dir: &OwnedFd,
    temp: &str,
) -> Result<(), FileError> {
    match walk.read(from_dir, name, shown)? {
        SavedEntry::Absent => Err(FileError::NotFound(shown.to_string())),
        SavedEntry::File { meta, .. } => {
            let source = open_file(from_dir, name, shown)?;
            let mut out = create_temp(to_dir, temp, meta.mode)?;
            copy_hashing(&source, &mut out)?;
            finish_file(out, Some(meta)).map(|_| ())
        }
        SavedEntry::Symlink { target } => {
            let target =
                std::str::from_utf8(&target).map_err(|_| FileError::Invalid("a link target is not UTF-8".into()))?;
            rustix::fs::symlinkat(target, to_dir, temp).map_err(io("copying a link"))
        }
        SavedEntry::Dir { meta, entries } => {
            let source = walk.whitelist.enter(from_dir, name, shown, walk.dev)?;
            let target = make_dir(to_dir, temp, 0o700, "copying a directory")?;
            for (child, _) in entries {
                let child_path = shown.join(&child).map_err(|err| FileError::Invalid(err.to_string()))?;
                stage_copy(walk, &source, &child, &child_path, &target, &child)?;
            }
            finish_dir(&target, meta.mode, Some(&meta))
        }
    }
}

/// Creates directory `name` in `dir` (staging, the node's own names) and opens it.
pub(crate) fn make_dir(dir: &OwnedFd, name: &str, mode: u32, context: &'static str) -> Result<OwnedFd, FileError> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode as _)).map_err(io(context))?;
    open_dir(dir, name, context)
}

/// Opens directory `name` in `dir`, never through a link. For names the endpoint made or
/// already judged; an agent's path goes through [`super::Whitelist`] instead.
pub(crate) fn open_dir(dir: &OwnedFd, name: &str, context: &'static str) -> Result<OwnedFd, FileError> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(context))
}

/// Sets a directory's permissions (and time), and syncs it.
pub(crate) fn finish_dir(dir: &OwnedFd, mode: u32, time: Option<&EntryMeta>) -> Result<(), FileError> {
    rustix::fs::fchmod(dir, Mode::from_raw_mode(mode as _)).map_err(io("setting permissions"))?;
    if let Some(meta) = time {
        set_mtime(dir, meta)?;
    }
    rustix::fs::fsync(dir).map_err(io("syncing a directory"))
}

/// Removes `name` in `dir` and, for a directory, everything in it; never follows a link.
pub(crate) fn remove_tree(dir: &OwnedFd, name: &str) -> Result<(), FileError> {
    let Some(facts) = lstat(dir, name)? else { return Ok(()) };
    if facts.kind == FileType::Directory {
        let handle = open_dir(dir, name, "removing a directory")?;
        for child in names_in(&handle)? {
            remove_tree(&handle, &child)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io("removing a directory"))
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io("removing a file"))
    }
}

fn set_mtime(fd: &impl std::os::fd::AsFd, meta: &EntryMeta) -> Result<(), FileError> {
    let times = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        last_modification: Timespec { tv_sec: meta.mtime_secs as _, tv_nsec: meta.mtime_nanos as _ },
    };
    rustix::fs::futimens(fd, &times).map_err(io("setting a time"))
}
