//! Authorization layer 2: the node-local folder whitelist, and path resolution that cannot leave
//! a whitelisted folder.
//!
//! Each folder is opened once, as a directory handle, when the endpoint starts. A path is
//! resolved from that handle one component at a time without following links, at the
//! moment of use: `..` never reaches this far (refused by [`FsPath`]), a symbolic link anywhere
//! in the path is refused rather than followed (whether it was there before or planted a moment
//! ago), a directory on another file system (a mount or bind mount) is refused, and so is any
//! directory or file that is one of the sensitive locations (the node's data directory, key
//! folders), compared by device and inode so no alias reaches them. The last component is never
//! followed either: operations act on `(parent handle, name)` with no-follow flags. A regular
//! file with more than one hard link is refused, because its other name may be outside.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use clawnet_storage::files::{EntryMeta, FileAccess};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::FileError;
use super::path::FsPath;

/// One folder in the node-local whitelist, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The folder, an absolute path (symbolic links in it are resolved once, at start).
    pub path: PathBuf,
    /// What agents may do there.
    #[serde(default = "read_only", with = "access_name")]
    pub access: FileAccess,
}

fn read_only() -> FileAccess {
    FileAccess::ReadOnly
}

/// Why layer 2 said no.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The path is in no whitelisted folder.
    NotWhitelisted,
    /// The folder is read-only.
    ReadOnly,
    /// A symbolic link in the path.
    Symlink(String),
    /// A file with other hard links.
    HardLink(String),
    /// A sensitive location (keys, the node's data).
    Sensitive(String),
    /// Another file system mounted inside the folder.
    OtherFilesystem(String),
    /// The whitelisted folder itself cannot be moved or deleted.
    FolderItself,
}

impl Denial {
    /// For people and the audit log.
    pub fn reason(&self) -> String {
        match self {
            Denial::NotWhitelisted => "not in a whitelisted folder".into(),
            Denial::ReadOnly => "the whitelisted folder is read-only".into(),
            Denial::Symlink(at) => format!("symbolic link at {at} (links are never followed)"),
            Denial::HardLink(at) => format!("{at} has other hard links"),
            Denial::Sensitive(at) => format!("{at} is a protected location"),
            Denial::OtherFilesystem(at) => format!("{at} is on another file system"),
            Denial::FolderItself => "a whitelisted folder itself cannot be changed".into(),
        }
    }
}

/// The facts of a stat that the endpoint uses, in fixed types whatever the platform's `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) kind: FileType,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    pub(crate) len: u64,
    pub(crate) meta: EntryMeta,
}

impl Facts {
    // `stat` field types differ between platforms; on some these casts are no-ops.
    #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    pub(crate) fn of(stat: &Stat) -> Facts {
        Facts {
            kind: FileType::from_raw_mode(stat.st_mode as _),
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            nlink: stat.st_nlink as u64,
            len: stat.st_size.max(0) as u64,
            meta: EntryMeta {
                mode: (stat.st_mode as u32) & 0o7777,
                mtime_secs: stat.st_mtime as i64,
                mtime_nanos: stat.st_mtime_nsec as u32,
            },
        }
    }
}

/// A whitelisted folder, open.
#[derive(Debug)]
pub(crate) struct Folder {
    pub(crate) path: FsPath,
    pub(crate) access: FileAccess,
    pub(crate) handle: OwnedFd,
    pub(crate) dev: u64,
}

/// Where a path resolved to: its parent directory, open, and its name there.
#[derive(Debug)]
pub(crate) struct Place {
    /// The path as asked.
    pub(crate) path: FsPath,
    /// The directory the entry is (or would be) in.
    pub(crate) parent: OwnedFd,
    /// Its name there; empty when the path is the folder itself.
    pub(crate) name: String,
    /// The folder's device: nothing below may be on another.
    pub(crate) dev: u64,
}

impl Place {
    /// Whether this is a whitelisted folder itself.
    pub(crate) fn is_folder_itself(&self) -> bool {
        self.name.is_empty()
    }

    /// The entry's name, or `.` for the folder itself (for `*at` calls).
    pub(crate) fn at_name(&self) -> &str {
        if self.name.is_empty() { "." } else { &self.name }
    }
}

/// The whitelist: folders and the locations that stay protected whatever the config says.
#[derive(Debug)]
pub struct Whitelist {
    folders: Vec<Folder>,
    protected: Protected,
}

/// Locations no agent may reach: by canonical path (to refuse a folder that is inside one) and
/// by device and inode (to refuse reaching one from inside a folder).
#[derive(Debug, Default)]
pub(crate) struct Protected {
    paths: Vec<PathBuf>,
    inodes: Vec<(u64, u64)>,
}

impl Protected {
    pub(crate) fn contains(&self, facts: &Facts) -> bool {
        self.inodes.contains(&(facts.dev, facts.ino))
    }
}

impl Whitelist {
    /// Opens every folder. `protected` are the node's own locations (data directory and the like);
    /// the usual key folders of the user (`~/.ssh`, `~/.gnupg`) are added. A folder that is one of
    /// them or inside one is refused with an error that says so.
    pub fn open(folders: &[FolderConfig], protected: &[PathBuf]) -> Result<Whitelist, FileError> {
        let mut guarded = Protected::default();
        let mut locations: Vec<PathBuf> = protected.to_vec();
        if let Some(home) = std::env::var_os("HOME") {
            for name in [".ssh", ".gnupg"] {
                locations.push(Path::new(&home).join(name));
            }
        }
        for location in locations {
            let Ok(canonical) = std::fs::canonicalize(&location) else { continue };
            if let Ok(stat) = rustix::fs::stat(&canonical) {
                let facts = Facts::of(&stat);
                guarded.inodes.push((facts.dev, facts.ino));
            }
            guarded.paths.push(canonical);
        }
        let mut opened = Vec::new();
        for folder in folders {
            let canonical = std::fs::canonicalize(&folder.path)
                .map_err(|err| FileError::Config(format!("whitelisted folder {}: {err}", folder.path.display())))?;
            if let Some(inside) = guarded.paths.iter().find(|location| canonical.starts_with(location)) {
                return Err(FileError::Config(format!(
                    "whitelisted folder {} is inside {}, which agents may never reach; whitelist a \
                     folder outside it",
                    folder.path.display(),
                    inside.display()
                )));
            }
            let text = canonical.to_str().ok_or_else(|| {
                FileError::Config(format!("whitelisted folder {} is not valid UTF-8", canonical.display()))
            })?;
            let path = FsPath::parse(text).map_err(|err| FileError::Config(err.to_string()))?;
            let handle =
                rustix::fs::open(&canonical, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|err| FileError::Config(format!("opening {}: {err}", canonical.display())))?;
            let facts = Facts::of(&rustix::fs::fstat(&handle).map_err(io("reading a whitelisted folder"))?);
            opened.push(Folder { path, access: folder.access, handle, dev: facts.dev });
        }
        // Longest first, so a nested folder's own access wins over its parent's.
        opened.sort_by_key(|folder| std::cmp::Reverse(folder.path.parts().len()));
        Ok(Whitelist { folders: opened, protected: guarded })
    }

    /// The folders, for people.
    pub fn folders(&self) -> Vec<(String, FileAccess)> {
        self.folders.iter().map(|folder| (folder.path.to_string(), folder.access)).collect()
    }

    /// The folder `path` is in, for the authorization basis.
    pub(crate) fn folder_of(&self, path: &FsPath) -> Option<&Folder> {
        self.folders.iter().find(|folder| path.is_within(&folder.path))
    }

    /// Resolves `path` for an operation needing `access`, walking from its folder's handle.
    /// `NotFound` for a missing parent directory; [`FileError::Denied`] for every refusal.
    pub(crate) fn resolve(&self, path: &FsPath, access: FileAccess) -> Result<Place, FileError> {
        let folder = self.folder_of(path).ok_or(FileError::denied_l2(Denial::NotWhitelisted))?;
        if access.can_write() && !folder.access.can_write() {
            return Err(FileError::denied_l2(Denial::ReadOnly));
        }
        let below = path.below(&folder.path).unwrap_or_default();
        let mut dir = rustix::io::fcntl_dupfd_cloexec(&folder.handle, 0).map_err(io("opening a folder"))?;
        let mut walked = folder.path.clone();
        let Some((name, parents)) = below.split_last() else {
            return Ok(Place { path: path.clone(), parent: dir, name: String::new(), dev: folder.dev });
        };
        for component in parents {
            walked = walked.join(component).map_err(|err| FileError::Invalid(err.to_string()))?;
            dir = self.enter(&dir, component, &walked, folder.dev)?;
        }
        Ok(Place { path: path.clone(), parent: dir, name: name.clone(), dev: folder.dev })
    }

    /// Opens directory `name` in `dir` without following a link, checking it may be entered.
    ///
    /// What is there is pinned first (an `O_PATH` handle, never following a link) and judged by
    /// that handle, so a link swapped in or out between two looks cannot make the answer wrong;
    /// the directory is then opened through the handle itself.
    pub(crate) fn enter(&self, dir: &OwnedFd, name: &str, shown: &FsPath, dev: u64) -> Result<OwnedFd, FileError> {
        let pinned =
            match rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
                Ok(pinned) => pinned,
                Err(Errno::NOENT) => return Err(FileError::NotFound(shown.to_string())),
                Err(err) => return Err(FileError::io("opening a directory", err)),
            };
        let facts = Facts::of(&rustix::fs::fstat(&pinned).map_err(io("reading a directory"))?);
        match facts.kind {
            FileType::Directory => {}
            FileType::Symlink => return Err(FileError::denied_l2(Denial::Symlink(shown.to_string()))),
            _ => return Err(FileError::NotADirectory(shown.to_string())),
        }
        self.check_entry(&facts, shown, dev)?;
        rustix::fs::openat(&pinned, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io("opening a directory"))
    }

    /// Refuses an entry that is protected, on another file system, or a multiply linked file.
    pub(crate) fn check_entry(&self, facts: &Facts, shown: &FsPath, dev: u64) -> Result<(), FileError> {
        if self.protected.contains(facts) {
            return Err(FileError::denied_l2(Denial::Sensitive(shown.to_string())));
        }
        if facts.dev != dev {
            return Err(FileError::denied_l2(Denial::OtherFilesystem(shown.to_string())));
        }
        if facts.kind == FileType::RegularFile && facts.nlink > 1 {
            return Err(FileError::denied_l2(Denial::HardLink(shown.to_string())));
        }
        Ok(())
    }
}

/// `lstat` of `name` in `dir`; `None` if nothing is there.
pub(crate) fn lstat(dir: &impl AsFd, name: &str) -> Result<Option<Facts>, FileError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(Facts::of(&stat))),
        Err(Errno::NOENT) => Ok(None),
        Err(err) => Err(FileError::io("reading an entry", err)),
    }
}

/// Maps an OS error to a [`FileError`] with what was being done.
pub(crate) fn io(context: &'static str) -> impl Fn(Errno) -> FileError {
    move |err| FileError::io(context, err)
}

mod access_name {
    use clawnet_storage::files::FileAccess;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(access: &FileAccess, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(access.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<FileAccess, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::super::parse_access(&text).map_err(serde::de::Error::custom)
    }
}
