//! Snapshots of directory trees, exact enough to prove that a file operation left no trace or
//! was undone: every entry's kind, bytes, permission bits, modification time (to the nanosecond),
//! link count and link target, read without ever following a link.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What an entry is, with what it holds.
#[derive(Clone, PartialEq, Eq)]
pub enum Content {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A directory (its entries are entries of the tree).
    Dir,
    /// A symbolic link and its target.
    Symlink(PathBuf),
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::File(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) if text.len() <= 80 => write!(f, "File({text:?})"),
                _ => write!(f, "File({} bytes)", bytes.len()),
            },
            Content::Dir => f.write_str("Dir"),
            Content::Symlink(target) => write!(f, "Symlink({})", target.display()),
        }
    }
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Kind and content.
    pub content: Content,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// How many names the inode has (a backup left linked to a file shows here).
    pub nlink: u64,
}

/// Which modification times a comparison checks. Link times are never compared: the journal keeps
/// a link's target only, and nothing reads a link's own time.
#[derive(Debug, Clone, Copy)]
pub enum Times<'a> {
    /// Every file's and directory's.
    All,
    /// All but these directories' (relative paths): a directory's time changes whenever an entry
    /// is added to it or removed from it, and undoing that is one more such change.
    ExceptDirs(&'a [&'a str]),
    /// Files' only.
    FilesOnly,
}

/// A tree: entries by path relative to its root (the root itself is `""`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree(pub BTreeMap<PathBuf, Entry>);

impl Tree {
    /// Everything under `root`, `root` included.
    pub fn of(root: &Path) -> Tree {
        Tree::of_except(root, |_| false)
    }

    /// Everything under `root` but the entries (and what is below them) `skip` names, given
    /// their full path.
    pub fn of_except(root: &Path, skip: impl Fn(&Path) -> bool) -> Tree {
        let mut tree = Tree::default();
        read_into(root, Path::new(""), &skip, &mut tree.0);
        tree
    }

    /// The entry at `relative`.
    pub fn get(&self, relative: &str) -> Option<&Entry> {
        self.0.get(Path::new(relative))
    }

    /// How `later` differs from this tree, one line per path, comparing the times `times` says.
    pub fn differences(&self, later: &Tree, times: Times<'_>) -> Vec<String> {
        let normalize = |tree: &Tree| -> BTreeMap<PathBuf, Entry> {
            tree.0
                .iter()
                .map(|(path, entry)| {
                    let mut entry = entry.clone();
                    let compared = match (&entry.content, times) {
                        (Content::Symlink(_), _) => false,
                        (Content::File(_), _) | (Content::Dir, Times::All) => true,
                        (Content::Dir, Times::ExceptDirs(dirs)) => !dirs.iter().any(|dir| Path::new(dir) == path),
                        (Content::Dir, Times::FilesOnly) => false,
                    };
                    if !compared {
                        entry.mtime_ns = 0;
                    }
                    (path.clone(), entry)
                })
                .collect()
        };
        let (before, after) = (normalize(self), normalize(later));
        let mut lines = Vec::new();
        for (path, entry) in &before {
            match after.get(path) {
                None => lines.push(format!("{}: gone (was {entry:?})", path.display())),
                Some(now) if now != entry => lines.push(format!("{}: {entry:?} became {now:?}", path.display())),
                Some(_) => {}
            }
        }
        for (path, entry) in &after {
            if !before.contains_key(path) {
                lines.push(format!("{}: new {entry:?}", path.display()));
            }
        }
        lines
    }
}

/// Sets the modification time of `path` (a file or a directory) to `secs` + `nanos` after the
/// epoch.
pub fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let time = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    let file = fs::File::open(path).unwrap_or_else(|err| panic!("opening {}: {err}", path.display()));
    file.set_modified(time).unwrap_or_else(|err| panic!("setting the time of {}: {err}", path.display()));
}

/// Writes `bytes` to `path` with permission bits `mode` and time `secs`.
pub fn put_file(path: &Path, bytes: &[u8], mode: u32, secs: u64) {
    fs::write(path, bytes).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(path, secs, 123_456_789);
}

fn read_into(path: &Path, relative: &Path, skip: &impl Fn(&Path) -> bool, into: &mut BTreeMap<PathBuf, Entry>) {
    if skip(path) {
        return;
    }
    let meta = fs::symlink_metadata(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let mode = meta.permissions().mode() & 0o7777;
    let content = if meta.file_type().is_symlink() {
        Content::Symlink(fs::read_link(path).unwrap())
    } else if meta.is_dir() {
        Content::Dir
    } else {
        Content::File(fs::read(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display())))
    };
    let is_dir = content == Content::Dir;
    into.insert(relative.to_owned(), Entry { content, mode, mtime_ns, nlink: meta.nlink() });
    if is_dir {
        let mut names: Vec<_> = fs::read_dir(path).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            read_into(&path.join(&name), &relative.join(&name), skip, into);
        }
    }
}
