//! The endpoint's note of the change it is preparing: the operation's number and the paths it
//! will change, synced before preparing touches anything (a backup linked to a live file, content
//! staged beside its destination). The change's decision supersedes the note; if the process
//! dies before that, the next start finds the note and clears what the change left behind.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use super::FileError;
use super::path::FsPath;
use super::sandbox::io;

/// The note is padded to a multiple of this, so rewriting it rarely changes the file's length
/// (and syncing it rarely has to write more than its data).
const BLOCK: usize = 4096;

/// The note, in the endpoint's state directory.
#[derive(Debug)]
pub(crate) struct Intent {
    file: File,
}

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    op: u64,
    paths: Vec<FsPath>,
}

impl Intent {
    /// Opens (creating) the note in `state_dir`.
    pub(crate) fn open(state_dir: &Path) -> Result<Intent, FileError> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = rustix::fs::open(state_dir.join("intent"), flags, Mode::from_raw_mode(0o600))
            .map_err(|err| FileError::Config(format!("opening {}/intent: {err}", state_dir.display())))?;
        let dir = rustix::fs::open(state_dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(io("opening the file endpoint's state"))?;
        rustix::fs::fsync(&dir).map_err(io("syncing the file endpoint's state"))?;
        Ok(Intent { file: File::from(file) })
    }

    /// Notes, durably, that operation `op` is about to change `paths`.
    pub(crate) fn record(&self, op: u64, paths: Vec<FsPath>) -> Result<(), FileError> {
        let fail = FileError::std_io("noting a change");
        let mut bytes = serde_json::to_vec(&Note { op, paths })
            .map_err(|err| FileError::Io { context: "noting a change", detail: err.to_string() })?;
        let current = usize::try_from(self.file.metadata().map_err(&fail)?.len()).unwrap_or(usize::MAX);
        bytes.resize(bytes.len().div_ceil(BLOCK).max(1).saturating_mul(BLOCK).max(current), b' ');
        self.file.write_all_at(&bytes, 0).map_err(&fail)?;
        self.file.sync_data().map_err(&fail)
    }

    /// The last change noted, if the note is whole (a torn note was being written when the
    /// process died, before anything it would name was touched).
    pub(crate) fn last(&self) -> Option<(u64, Vec<FsPath>)> {
        let len = usize::try_from(self.file.metadata().ok()?.len()).ok()?;
        let mut bytes = vec![0u8; len];
        self.file.read_exact_at(&mut bytes, 0).ok()?;
        let note: Note = serde_json::from_slice(bytes.trim_ascii_end()).ok()?;
        Some((note.op, note.paths))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_keeps_the_last_change_and_survives_shorter_ones() {
        let dir = tempfile::tempdir().unwrap();
        let intent = Intent::open(dir.path()).unwrap();
        assert_eq!(intent.last(), None);
        let long = FsPath::parse(&format!("/{}", vec!["y".repeat(250); 16].join("/"))).unwrap();
        intent.record(7, vec![long.clone(), FsPath::parse("/a/b").unwrap()]).unwrap();
        assert_eq!(intent.last(), Some((7, vec![long, FsPath::parse("/a/b").unwrap()])));
        intent.record(8, vec![FsPath::parse("/c").unwrap()]).unwrap();
        let reopened = Intent::open(dir.path()).unwrap();
        assert_eq!(reopened.last(), Some((8, vec![FsPath::parse("/c").unwrap()])));
    }
}
