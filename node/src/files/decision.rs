//! The endpoint's write-ahead copy of the journal entry that decides a change: the whole entry,
//! synced to a file in the state directory before the change's first step applies. It stands in
//! for the journal's durable commit on the reply path: one small synced write of a file whose
//! length rarely changes costs a third of a database commit that also signs an audit entry. The
//! entry reaches the journal (with its audit entry) after the reply, on the settling thread;
//! if the process dies first, the next start copies it from here into the journal, then
//! recovers as if the journal had held it all along.
//!
//! One slot is enough: changes are serialized, and a change begins only once the one before
//! it is in the journal, so the copy here is never the only record of anything but the last
//! change. A torn write (the process died while writing it) fails its checksum and is read as
//! no decision: the change it was for never applied a step.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use clawnet_storage::files::FileOpRecord;
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::FileError;

/// The copy is padded to a multiple of this, so rewriting it rarely changes the file's length
/// (and syncing it rarely has to write more than its data).
const BLOCK: usize = 4096;
/// What the copy starts with: the format, then the length and SHA-256 of what follows.
const MAGIC: &[u8; 8] = b"CNDECID1";
const HEADER: usize = MAGIC.len() + 8 + 32;

/// A change as decided: its journal entry, and the entry it undoes, if it is an undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Decision {
    pub(crate) record: FileOpRecord,
    pub(crate) undoes: Option<u64>,
}

/// The copy, in the endpoint's state directory.
#[derive(Debug)]
pub(crate) struct Decisions {
    file: File,
}

impl Decisions {
    /// Opens (creating) the copy in `state_dir`.
    pub(crate) fn open(state_dir: &Path) -> Result<Decisions, FileError> {
        let path = state_dir.join("decision");
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = rustix::fs::open(&path, flags, Mode::from_raw_mode(0o600))
            .map_err(|err| FileError::Config(format!("opening {}: {err}", path.display())))?;
        let file = File::from(file);
        if file.metadata().map_err(FileError::std_io("opening the decision file"))?.len() == 0 {
            // A block of zeros, synced with its length, so the first decision is a data write.
            file.write_all_at(&[0; BLOCK], 0).map_err(FileError::std_io("preparing the decision file"))?;
            file.sync_all().map_err(FileError::std_io("preparing the decision file"))?;
        }
        Ok(Decisions { file })
    }

    /// Records `decision`, durably.
    pub(crate) fn record(&self, decision: &Decision) -> Result<(), FileError> {
        let fail = FileError::std_io("recording a file change's decision");
        let payload = serde_json::to_vec(decision)
            .map_err(|err| FileError::Io { context: "recording a file change's decision", detail: err.to_string() })?;
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&Sha256::digest(&payload));
        bytes.extend_from_slice(&payload);
        let current = usize::try_from(self.file.metadata().map_err(&fail)?.len()).unwrap_or(usize::MAX);
        bytes.resize(bytes.len().div_ceil(BLOCK).max(1).saturating_mul(BLOCK).max(current), 0);
        self.file.write_all_at(&bytes, 0).map_err(&fail)?;
        self.file.sync_data().map_err(&fail)
    }

    /// The last decision recorded, if it was written whole.
    pub(crate) fn last(&self) -> Option<Decision> {
        let mut header = [0u8; HEADER];
        self.file.read_exact_at(&mut header, 0).ok()?;
        let (magic, rest) = header.split_at(MAGIC.len());
        let (len, sum) = rest.split_at(8);
        if magic != MAGIC {
            return None;
        }
        let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
        let file_len = usize::try_from(self.file.metadata().ok()?.len()).ok()?;
        if len > file_len.saturating_sub(HEADER) {
            return None;
        }
        let mut payload = vec![0u8; len];
        self.file.read_exact_at(&mut payload, HEADER as u64).ok()?;
        if Sha256::digest(&payload).as_slice() != sum {
            return None;
        }
        serde_json::from_slice(&payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use clawnet_crypto::Timestamp;
    use clawnet_protocol::audit::Actor;
    use clawnet_storage::files::{FileOpKind, FileOpState, Fingerprint, PathChange};

    use super::*;

    fn decision(number: u64, path: &str) -> Decision {
        Decision {
            record: FileOpRecord {
                number,
                time: Timestamp::now(),
                actor: Actor::Owner,
                session: None,
                basis: "test".into(),
                kind: FileOpKind::Mkdir { path: path.into() },
                changes: vec![PathChange {
                    path: path.into(),
                    before: Fingerprint::Absent,
                    saved: None,
                    after: Some(Fingerprint::Dir { mode: 0o755, entries: Vec::new() }),
                }],
                state: FileOpState::Done,
            },
            undoes: Some(number - 1),
        }
    }

    #[test]
    fn the_copy_keeps_the_last_decision_and_survives_shorter_ones() {
        let dir = tempfile::tempdir().unwrap();
        let decisions = Decisions::open(dir.path()).unwrap();
        assert_eq!(decisions.last(), None);
        let long = decision(7, &format!("/{}", vec!["y".repeat(250); 40].join("/")));
        decisions.record(&long).unwrap();
        assert_eq!(decisions.last(), Some(long));
        let short = decision(8, "/c");
        decisions.record(&short).unwrap();
        assert_eq!(Decisions::open(dir.path()).unwrap().last(), Some(short));
    }

    #[test]
    fn a_torn_copy_is_no_decision() {
        let dir = tempfile::tempdir().unwrap();
        let decisions = Decisions::open(dir.path()).unwrap();
        decisions.record(&decision(3, "/a")).unwrap();
        // The process died while the next decision was half written over this one.
        let mut bytes = std::fs::read(dir.path().join("decision")).unwrap();
        let torn = serde_json::to_vec(&decision(4, "/b")).unwrap();
        bytes[HEADER..HEADER + torn.len() / 2].copy_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(dir.path().join("decision"), &bytes).unwrap();
        assert_eq!(Decisions::open(dir.path()).unwrap().last(), None);
    }
}
