//! The file endpoint's records: each identity's file scope (authorization layer 1) and the
//! journal of file operations, with what every mutation replaced so it can be put back.
//!
//! The content of replaced files is not here: it sits in the endpoint's content-addressed blob
//! store, named by the SHA-256 of the bytes ([`SavedEntry::File::blob`]). A journal entry is
//! written twice: *prepared* (what will change, backups already stored) before the endpoint
//! touches the file system, and *done* (with what it looks like after) once it has; an entry
//! left prepared by a crash is settled when the endpoint next opens.

use std::collections::HashMap;

use clawnet_crypto::{Hash32, IdentityId, Timestamp, WireFormat, encoding};
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::Actor;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::{FILE_OPS, FILE_SCOPES, META, META_FILE_OPS_SETTLED};
use crate::view::{ReadView, Txn, decode_value};

/// Most folders one identity may be granted.
pub const MAX_GRANTS: usize = 64;

/// What an identity may do under a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAccess {
    /// Read, list, stat, search.
    ReadOnly,
    /// Everything, including changes.
    ReadWrite,
}

impl FileAccess {
    /// `read-only` or `read-write`, as in the config file and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            FileAccess::ReadOnly => "read-only",
            FileAccess::ReadWrite => "read-write",
        }
    }

    /// Whether this access allows changes.
    pub fn can_write(self) -> bool {
        self == FileAccess::ReadWrite
    }
}

/// One folder an identity may work in, as an absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileGrant {
    /// The folder.
    pub root: String,
    /// What the identity may do there.
    pub access: FileAccess,
}

/// Everything an identity may touch (layer 1). Empty means nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileScope {
    /// The folders, in the order the owner granted them.
    pub grants: Vec<FileGrant>,
}

impl WireFormat for FileScope {
    const NAME: &'static str = "file scope";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = MAX_GRANTS * (4096 + 8) + 16;
}

/// Permissions and modification time: the metadata undo puts back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime_secs: i64,
    /// Its nanoseconds.
    pub mtime_nanos: u32,
}

/// An entry as it was, complete enough to recreate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SavedEntry {
    /// Nothing there.
    Absent,
    /// A regular file; its bytes are the blob.
    File {
        /// SHA-256 of the content, the blob's name.
        blob: Hash32,
        /// Its length.
        len: u64,
        /// Its metadata.
        meta: EntryMeta,
    },
    /// A symbolic link (never followed, kept as it was).
    Symlink {
        /// What it points at.
        #[serde(with = "clawnet_crypto::encoding::bytes")]
        target: Vec<u8>,
    },
    /// A directory and everything in it, sorted by name.
    Dir {
        /// Its metadata.
        meta: EntryMeta,
        /// Its entries.
        entries: Vec<(String, SavedEntry)>,
    },
}

/// What an entry looks like, enough to tell whether it changed since: kind, length,
/// permissions and modification time (undo restores the time, so a restored file matches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fingerprint {
    /// Nothing there.
    Absent,
    /// A regular file.
    File {
        /// Its length.
        len: u64,
        /// Its metadata.
        meta: EntryMeta,
    },
    /// A symbolic link.
    Symlink {
        /// What it points at.
        #[serde(with = "clawnet_crypto::encoding::bytes")]
        target: Vec<u8>,
    },
    /// A directory: its permissions and its entries (its own time changes with every entry, so
    /// it is not compared).
    Dir {
        /// Permission bits.
        mode: u32,
        /// Its entries, sorted by name.
        entries: Vec<(String, Fingerprint)>,
    },
}

impl SavedEntry {
    /// What it looked like.
    pub fn fingerprint(&self) -> Fingerprint {
        match self {
            SavedEntry::Absent => Fingerprint::Absent,
            SavedEntry::File { len, meta, .. } => Fingerprint::File { len: *len, meta: *meta },
            SavedEntry::Symlink { target } => Fingerprint::Symlink { target: target.clone() },
            SavedEntry::Dir { meta, entries } => Fingerprint::Dir {
                mode: meta.mode,
                entries: entries.iter().map(|(name, entry)| (name.clone(), entry.fingerprint())).collect(),
            },
        }
    }

    /// Every blob it refers to.
    pub fn blobs(&self) -> Vec<Hash32> {
        let mut found = Vec::new();
        self.collect_blobs(&mut found);
        found
    }

    fn collect_blobs(&self, found: &mut Vec<Hash32>) {
        match self {
            SavedEntry::File { blob, .. } => found.push(*blob),
            SavedEntry::Dir { entries, .. } => entries.iter().for_each(|(_, entry)| entry.collect_blobs(found)),
            SavedEntry::Absent | SavedEntry::Symlink { .. } => {}
        }
    }
}

/// The primitive a journal entry records, with the paths it named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOpKind {
    /// A new file.
    Create {
        /// Where.
        path: String,
    },
    /// A file's content replaced.
    Overwrite {
        /// Which.
        path: String,
    },
    /// Bytes added at a file's end.
    Append {
        /// Which.
        path: String,
    },
    /// A new directory.
    Mkdir {
        /// Where.
        path: String,
    },
    /// An entry moved (or renamed) to a place where nothing was.
    Move {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// An entry copied to a place where nothing was.
    Copy {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// An entry removed (its content kept in the blob store).
    Delete {
        /// Which.
        path: String,
    },
    /// An earlier operation reversed.
    Undo {
        /// Its number.
        of: u64,
    },
}

impl FileOpKind {
    /// Whether this writes content the caller gave (create, overwrite, append): content staged
    /// beside its destination, not restored from a backup or copied from the folders.
    pub fn is_write(&self) -> bool {
        matches!(self, FileOpKind::Create { .. } | FileOpKind::Overwrite { .. } | FileOpKind::Append { .. })
    }

    /// A short name: `create`, `move`, `undo`.
    pub fn name(&self) -> &'static str {
        match self {
            FileOpKind::Create { .. } => "create",
            FileOpKind::Overwrite { .. } => "overwrite",
            FileOpKind::Append { .. } => "append",
            FileOpKind::Mkdir { .. } => "mkdir",
            FileOpKind::Move { .. } => "move",
            FileOpKind::Copy { .. } => "copy",
            FileOpKind::Delete { .. } => "delete",
            FileOpKind::Undo { .. } => "undo",
        }
    }

    /// The paths it names, for people.
    pub fn describe(&self) -> String {
        match self {
            FileOpKind::Create { path }
            | FileOpKind::Overwrite { path }
            | FileOpKind::Append { path }
            | FileOpKind::Mkdir { path }
            | FileOpKind::Delete { path } => path.clone(),
            FileOpKind::Move { from, to } | FileOpKind::Copy { from, to } => format!("{from} -> {to}"),
            FileOpKind::Undo { of } => format!("operation {of}"),
        }
    }
}

/// One path an operation changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathChange {
    /// The absolute path.
    pub path: String,
    /// What was there before.
    pub before: Fingerprint,
    /// What was there before, complete with blobs, when the operation destroyed it (a moved
    /// entry is moved back, not rebuilt, so a move saves nothing).
    pub saved: Option<SavedEntry>,
    /// What was there after; `None` while the operation is only prepared.
    pub after: Option<Fingerprint>,
}

/// Where a journal entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileOpState {
    /// Backups stored, the file system not yet (known to be) changed.
    Prepared,
    /// Executed.
    Done,
    /// Never executed (a failure, or a crash before the change).
    Abandoned,
    /// Executed and later reversed by operation `by`.
    Undone {
        /// The undo's number.
        by: u64,
    },
}

impl FileOpState {
    /// `prepared`, `done`, `abandoned`, `undone`.
    pub fn name(&self) -> &'static str {
        match self {
            FileOpState::Prepared => "prepared",
            FileOpState::Done => "done",
            FileOpState::Abandoned => "abandoned",
            FileOpState::Undone { .. } => "undone",
        }
    }
}

/// One journaled file operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOpRecord {
    /// Its number, from 1, in execution order.
    pub number: u64,
    /// When it was prepared.
    pub time: Timestamp,
    /// Who asked: an identity, or the owner (undo, rollback).
    pub actor: Actor,
    /// The session it was done in, if any.
    pub session: Option<SessionId>,
    /// Why it was allowed: both layers' grants.
    pub basis: String,
    /// The primitive.
    pub kind: FileOpKind,
    /// The paths it changed, in the order it changed them.
    pub changes: Vec<PathChange>,
    /// Where it stands.
    pub state: FileOpState,
}

impl WireFormat for FileOpRecord {
    const NAME: &'static str = "file operation";
    const VERSION: u8 = 1;
    // A deleted or copied tree is bounded by the endpoint (entries and name lengths).
    const MAX_LEN: usize = 8 * 1024 * 1024;
}

impl ReadView {
    /// The folders `identity` may touch (empty if the owner granted none).
    pub fn file_scope(&self, identity: &IdentityId) -> Result<FileScope, StoreError> {
        let table = self.tx.open_table(FILE_SCOPES).ctx("reading file scopes")?;
        let value = table.get(&identity.0).ctx("reading file scopes")?;
        Ok(value.map(|value| decode_value(value.value())).transpose()?.unwrap_or_default())
    }

    /// The file scope of every identity that has one stored.
    pub fn file_scopes(&self) -> Result<HashMap<IdentityId, FileScope>, StoreError> {
        let table = self.tx.open_table(FILE_SCOPES).ctx("reading file scopes")?;
        let mut scopes = HashMap::new();
        for row in table.iter().ctx("reading file scopes")? {
            let (id, value) = row.ctx("reading file scopes")?;
            scopes.insert(IdentityId(*id.value()), decode_value(value.value())?);
        }
        Ok(scopes)
    }

    /// Journal entry `number`.
    pub fn file_op(&self, number: u64) -> Result<Option<FileOpRecord>, StoreError> {
        let table = self.tx.open_table(FILE_OPS).ctx("reading the file journal")?;
        let value = table.get(number).ctx("reading the file journal")?;
        value.map(|value| decode_value(value.value())).transpose()
    }

    /// Every journal entry, oldest first.
    pub fn file_ops(&self) -> Result<Vec<FileOpRecord>, StoreError> {
        let table = self.tx.open_table(FILE_OPS).ctx("reading the file journal")?;
        let mut records = Vec::new();
        for row in table.iter().ctx("reading the file journal")? {
            let (_, value) = row.ctx("reading the file journal")?;
            records.push(decode_value(value.value())?);
        }
        Ok(records)
    }

    /// Journal entries still prepared (left by a crash), oldest first.
    pub fn prepared_file_ops(&self) -> Result<Vec<FileOpRecord>, StoreError> {
        Ok(self.file_ops()?.into_iter().filter(|record| record.state == FileOpState::Prepared).collect())
    }

    /// The last journal entry known to be fully applied to the file system; entries after it
    /// are rolled forward when the endpoint opens. An entry is settled once a later one is
    /// committed (changes are serialized, and each commits only after the previous one
    /// settled), so the mark itself is written only where that does not say it: an abandoned
    /// entry, a recovery, a clean stop.
    pub fn file_ops_settled(&self) -> Result<u64, StoreError> {
        let implied = self.next_file_op()?.saturating_sub(2);
        let table = self.tx.open_table(META).ctx("reading the file journal")?;
        let value = table.get(META_FILE_OPS_SETTLED).ctx("reading the file journal")?;
        let marked = match value {
            Some(value) => {
                let bytes: [u8; 8] = value
                    .value()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt { what: "file journal mark", detail: "wrong length".into() })?;
                u64::from_le_bytes(bytes)
            }
            None => 0,
        };
        Ok(marked.max(implied))
    }

    /// The number the next journal entry gets.
    pub fn next_file_op(&self) -> Result<u64, StoreError> {
        let table = self.tx.open_table(FILE_OPS).ctx("reading the file journal")?;
        match table.last().ctx("reading the file journal")? {
            Some((key, _)) => Ok(key.value().saturating_add(1)),
            None => Ok(1),
        }
    }
}

impl Txn<'_> {
    /// Replaces `identity`'s file scope.
    pub fn put_file_scope(&mut self, identity: &IdentityId, scope: &FileScope) -> Result<(), StoreError> {
        let mut table = self.write_table(FILE_SCOPES).ctx("writing a file scope")?;
        table.insert(&identity.0, encoding::encode(scope).as_slice()).ctx("writing a file scope")?;
        Ok(())
    }

    /// Records that every journal entry up to `number` is applied.
    pub fn set_file_ops_settled(&mut self, number: u64) -> Result<(), StoreError> {
        let mut table = self.write_table(META).ctx("writing the file journal")?;
        table.insert(META_FILE_OPS_SETTLED, number.to_le_bytes().as_slice()).ctx("writing the file journal")?;
        Ok(())
    }

    /// Stores (or updates) a journal entry.
    pub fn put_file_op(&mut self, record: &FileOpRecord) -> Result<(), StoreError> {
        let mut table = self.write_table(FILE_OPS).ctx("writing the file journal")?;
        table.insert(record.number, encoding::encode(record).as_slice()).ctx("writing the file journal")?;
        Ok(())
    }
}

/// Overwrites journal entry `record.number` with `record`, bypassing the endpoint: only for tests
/// that play an attacker with write access to the database file.
#[cfg(any(test, feature = "tamper"))]
pub fn tamper_with_file_op(db: &crate::NodeDb, record: &FileOpRecord) -> Result<(), StoreError> {
    db.raw_write(|tx| {
        let mut table = tx.open_table(FILE_OPS).ctx("tampering")?;
        table.insert(record.number, encoding::encode(record).as_slice()).ctx("tampering")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mode: u32) -> EntryMeta {
        EntryMeta { mode, mtime_secs: 1_700_000_000, mtime_nanos: 5 }
    }

    #[test]
    fn a_saved_tree_fingerprints_without_its_content_and_lists_its_blobs() {
        let tree = SavedEntry::Dir {
            meta: meta(0o755),
            entries: vec![
                ("a.txt".into(), SavedEntry::File { blob: Hash32([1; 32]), len: 3, meta: meta(0o644) }),
                (
                    "sub".into(),
                    SavedEntry::Dir {
                        meta: meta(0o700),
                        entries: vec![(
                            "b".into(),
                            SavedEntry::File { blob: Hash32([2; 32]), len: 9, meta: meta(0o600) },
                        )],
                    },
                ),
                ("link".into(), SavedEntry::Symlink { target: b"a.txt".to_vec() }),
            ],
        };
        assert_eq!(tree.blobs(), vec![Hash32([1; 32]), Hash32([2; 32])]);
        let Fingerprint::Dir { mode, entries } = tree.fingerprint() else { panic!("a directory") };
        assert_eq!(mode, 0o755);
        assert_eq!(entries[0], ("a.txt".to_string(), Fingerprint::File { len: 3, meta: meta(0o644) }));
        assert_eq!(entries[2], ("link".to_string(), Fingerprint::Symlink { target: b"a.txt".to_vec() }));
    }
}
