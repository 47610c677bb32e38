//! The backup store: the content of every file a mutation replaced or removed, named by the
//! SHA-256 of its bytes (so the same content is kept once) in a directory outside every
//! whitelisted folder.
//!
//! Saving a file that is about to be replaced or unlinked first tries a hard link from the blob
//! store to the file's inode: no byte is copied, and once the original name is gone the blob is
//! the inode's only name. The link is checked to be the very inode that was hashed; otherwise
//! (another file system, a race) the bytes are copied. A blob is made durable (the file and the
//! store directory synced) before the change it backs up is made; if the change then does not
//! happen, a blob still linked to the live file is released, and after a crash every blob still
//! linked is turned into a copy (`BlobStore::unshare`). Restoring copies the blob out (never
//! links it back, so nothing outside can ever alter a blob) and checks its hash.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use clawnet_crypto::Hash32;
use clawnet_crypto::rng::random_bytes;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use super::FileError;
use super::sandbox::{Facts, io};

/// Read and copy buffer size.
const CHUNK: usize = 256 * 1024;

/// The content-addressed backup store.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
    handle: OwnedFd,
}

impl BlobStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<BlobStore, FileError> {
        std::fs::create_dir_all(dir)
            .map_err(|err| FileError::Config(format!("creating the backup store {}: {err}", dir.display())))?;
        let handle = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|err| FileError::Config(format!("opening the backup store {}: {err}", dir.display())))?;
        Ok(BlobStore { dir: dir.to_owned(), handle })
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether blob `hash` is stored.
    pub fn contains(&self, hash: &Hash32) -> bool {
        rustix::fs::statat(&self.handle, hash.to_hex(), AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Saves the regular file `name` in `parent`, open as `file`, and returns its hash and
    /// whether the blob is new. Durable when this returns.
    pub(crate) fn save(&self, parent: &OwnedFd, name: &str, file: &File) -> Result<(Hash32, bool), FileError> {
        let hash = hash_file(file)?;
        let blob = hash.to_hex();
        if self.contains(&hash) {
            return Ok((hash, false));
        }
        let temp = format!(".incoming-{}", hex::encode(random_bytes::<8>()));
        let linked = rustix::fs::linkat(parent, name, &self.handle, temp.as_str(), AtFlags::empty()).is_ok();
        let same_inode = linked && {
            let ours = Facts::of(&rustix::fs::fstat(file).map_err(io("reading a file"))?);
            let theirs = rustix::fs::statat(&self.handle, temp.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map(|stat| Facts::of(&stat))
                .ok();
            theirs.is_some_and(|theirs| (theirs.dev, theirs.ino) == (ours.dev, ours.ino))
        };
        if !same_inode {
            if linked {
                let _ = rustix::fs::unlinkat(&self.handle, temp.as_str(), AtFlags::empty());
            }
            self.copy_in(&temp, file, &hash)?;
        }
        rustix::fs::renameat(&self.handle, temp.as_str(), &self.handle, blob.as_str())
            .map_err(io("storing a backup"))?;
        rustix::fs::fsync(&self.handle).map_err(io("syncing the backup store"))?;
        Ok((hash, true))
    }

    /// Removes blob `hash` if it still shares its inode with a file outside the store: a blob
    /// saved (by linking) for a change that then did not happen must not share an inode with a
    /// file agents can still change, and nothing refers to it. A blob that is the inode's only
    /// name stays.
    pub(crate) fn release(&self, hash: &Hash32) {
        let blob = hash.to_hex();
        let shared = rustix::fs::statat(&self.handle, blob.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| Facts::of(&stat).nlink > 1);
        if shared {
            let _ = rustix::fs::unlinkat(&self.handle, blob.as_str(), AtFlags::empty());
        }
    }

    /// Makes every blob the store's own, after a crash: a blob that still shares its inode with
    /// a file outside the store (saved for a change that was then never made, or not made yet)
    /// becomes a copy of itself, so the file is singly linked again and the backup can no longer
    /// change with it; what an interrupted save left is removed. A blob whose content no longer
    /// matches its name backs up nothing and is removed.
    pub(crate) fn unshare(&self) -> Result<(), FileError> {
        let handle = rustix::io::fcntl_dupfd_cloexec(&self.handle, 0).map_err(io("listing the backup store"))?;
        let mut listing = rustix::fs::Dir::new(handle).map_err(io("listing the backup store"))?;
        let mut names = Vec::new();
        while let Some(entry) = listing.read() {
            let entry = entry.map_err(io("listing the backup store"))?;
            if let Ok(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        for name in names {
            if name.starts_with(".incoming-") {
                let _ = rustix::fs::unlinkat(&self.handle, name.as_str(), AtFlags::empty());
                continue;
            }
            let Some(hash) = hex::decode(&name).ok().and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()).map(Hash32)
            else {
                continue;
            };
            let shared = rustix::fs::statat(&self.handle, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| Facts::of(&stat).nlink > 1);
            if !shared {
                continue;
            }
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let blob = File::from(
                rustix::fs::openat(&self.handle, name.as_str(), flags, Mode::empty())
                    .map_err(io("opening a backup"))?,
            );
            if hash_file(&blob)? != hash {
                let _ = rustix::fs::unlinkat(&self.handle, name.as_str(), AtFlags::empty());
                continue;
            }
            let temp = format!(".incoming-{}", hex::encode(random_bytes::<8>()));
            self.copy_in(&temp, &blob, &hash)?;
            rustix::fs::renameat(&self.handle, temp.as_str(), &self.handle, name.as_str())
                .map_err(io("storing a backup"))?;
        }
        rustix::fs::fsync(&self.handle).map_err(io("syncing the backup store"))
    }

    /// Copies blob `hash` into `out`, checking the content still has that hash.
    pub(crate) fn copy_out(&self, hash: &Hash32, out: &mut File) -> Result<u64, FileError> {
        let blob = match rustix::fs::openat(
            &self.handle,
            hash.to_hex().as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Err(FileError::BackupMissing(hash.to_hex())),
            Err(err) => return Err(FileError::io("opening a backup", err)),
        };
        let (copied, found) = copy_hashing(&blob, out)?;
        if found != *hash {
            return Err(FileError::BackupCorrupt(hash.to_hex()));
        }
        Ok(copied)
    }

    fn copy_in(&self, temp: &str, file: &File, hash: &Hash32) -> Result<(), FileError> {
        let mut out = self.create_temp(temp)?;
        let (_, found) = copy_hashing(file, &mut out)?;
        if found != *hash {
            let _ = rustix::fs::unlinkat(&self.handle, temp, AtFlags::empty());
            return Err(FileError::Io {
                context: "backing up a file",
                detail: "the file changed while it was being saved; try again".into(),
            });
        }
        out.sync_all().map_err(|err| FileError::Io { context: "storing a backup", detail: err.to_string() })
    }

    fn create_temp(&self, temp: &str) -> Result<File, FileError> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&self.handle, temp, flags, Mode::from_raw_mode(0o600))
            .map(File::from)
            .map_err(io("storing a backup"))
    }
}

/// SHA-256 of a file's whole content, read from its start.
pub(crate) fn hash_file(file: &File) -> Result<Hash32, FileError> {
    let (_, hash) = copy_hashing(file, &mut std::io::sink())?;
    Ok(hash)
}

/// Copies all of `from` (from its start) into `to`, hashing on the way.
pub(crate) fn copy_hashing(from: &File, to: &mut impl Write) -> Result<(u64, Hash32), FileError> {
    let fail = |err: std::io::Error| FileError::Io { context: "copying a file", detail: err.to_string() };
    let mut reader = from.try_clone().map_err(fail)?;
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0)).map_err(fail)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let read = reader.read(&mut buffer).map_err(fail)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        to.write_all(&buffer[..read]).map_err(fail)?;
        total += read as u64;
    }
    Ok((total, Hash32(hasher.finalize().into())))
}
