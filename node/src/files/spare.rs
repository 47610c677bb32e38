//! A spare file for staging a write: created ahead of time in the endpoint's state directory,
//! so a write does not wait for the file system to allocate an inode on its reply path (while
//! the disk is busy, creating an empty file took 400-1 000 µs on the VM the benchmarks run on,
//! as long as writing and syncing 1 MiB). A write fills the spare, syncs it and renames it into
//! place; the settling thread makes the next one after the reply.
//!
//! The spares live outside every whitelisted folder, where no agent can plant or swap anything,
//! and nothing is ever left beside an agent's file. They can only stand in for files under the
//! state directory's own mount (a rename cannot cross mounts, even of one file system); a write
//! elsewhere, or where the kernel cannot say which mount a directory is on, stages beside its
//! destination as before. Whatever is in the directory at open is left over
//! from before a crash (a spare, or a write that was never installed and is abandoned) and is
//! removed.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;

use clawnet_crypto::rng::random_bytes;
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};

use super::FileError;
use super::entry;
use super::sandbox::io;

/// The spare-file directory, with the spare made ready for the next write.
#[derive(Debug)]
pub(crate) struct Spares {
    handle: OwnedFd,
    /// The mount the directory is on, if the kernel says (Linux 5.8 and later).
    mount: Option<u64>,
    ready: Mutex<Option<Spare>>,
}

/// An empty file, created and open, in the spare-file directory.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) file: File,
    pub(crate) name: String,
}

impl Spares {
    /// Opens (creating) the directory `dir`, emptied of what an earlier run left.
    pub(crate) fn open(dir: &Path) -> Result<Spares, FileError> {
        std::fs::create_dir_all(dir)
            .map_err(|err| FileError::Config(format!("creating the staging directory {}: {err}", dir.display())))?;
        let handle = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|err| FileError::Config(format!("opening the staging directory {}: {err}", dir.display())))?;
        let mount = mount_of(&handle);
        for name in entry::names_in(&handle)? {
            entry::remove_tree(&handle, &name)?;
        }
        Ok(Spares { handle, mount, ready: Mutex::new(None) })
    }

    /// The directory (where a spare is renamed from).
    pub(crate) fn handle(&self) -> &OwnedFd {
        &self.handle
    }

    /// Whether a spare can be renamed into the directory `dir`.
    pub(crate) fn serves(&self, dir: &OwnedFd) -> bool {
        self.mount.is_some() && mount_of(dir) == self.mount
    }

    /// The spare made ready, or a new one if there is none.
    pub(crate) fn take(&self) -> Result<Spare, FileError> {
        let ready = self.ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        match ready {
            Some(spare) => Ok(spare),
            None => self.make(),
        }
    }

    /// Makes a spare ready for the next write, if there is none. A failure is only logged: the
    /// next write makes its own, and reports it if that fails too.
    pub(crate) fn refill(&self) {
        let mut ready = self.ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if ready.is_none() {
            match self.make() {
                Ok(spare) => *ready = Some(spare),
                Err(err) => tracing::warn!(%err, "could not make a spare file for the next write"),
            }
        }
    }

    /// Removes the spare `name` (filled for a write that will not happen).
    pub(crate) fn discard(&self, name: &str) {
        let _ = rustix::fs::unlinkat(&self.handle, name, AtFlags::empty());
    }

    fn make(&self) -> Result<Spare, FileError> {
        let name = format!("spare-{}", hex::encode(random_bytes::<8>()));
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.handle, name.as_str(), flags, Mode::from_raw_mode(0o600))
            .map_err(io("creating a file"))?;
        Ok(Spare { file: File::from(fd), name })
    }
}

/// The mount `dir` is on, if the kernel says.
fn mount_of(dir: &OwnedFd) -> Option<u64> {
    let facts = rustix::fs::statx(dir, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).ok()?;
    StatxFlags::from_bits_retain(facts.stx_mask).contains(StatxFlags::MNT_ID).then_some(facts.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_made_ahead_and_leftovers_are_cleared_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let spares = Spares::open(&staging).unwrap();
        let beside = rustix::fs::open(dir.path(), OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        assert!(spares.serves(&beside), "a directory on the same mount");
        let elsewhere = rustix::fs::open("/proc", OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        assert!(!spares.serves(&elsewhere), "a directory on another mount");
        spares.refill();
        let names = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&staging)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let [made] = names().try_into().unwrap();
        let taken = spares.take().unwrap();
        assert_eq!(taken.name, made, "the spare made ahead is the one taken");
        // None is ready now: the next take makes one on the spot.
        let second = spares.take().unwrap();
        assert_ne!(second.name, taken.name);
        spares.discard(&second.name);
        assert_eq!(names(), vec![made]);
        drop(spares);
        // A spare left by a run that stopped is removed by the next.
        let _reopened = Spares::open(&staging).unwrap();
        assert_eq!(names(), Vec::<String>::new());
    }
}
