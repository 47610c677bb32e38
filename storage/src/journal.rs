//! The commit journal: a change made durable by one synced write instead of a durable redb
//! commit.
//!
//! A durable redb commit flushes every page its transaction touched: the record's leaf, the
//! audit entry's leaf and branches, the table of tables, the allocator's state, then the header.
//! The journal records the *writes* of each batch instead (table, key, and the value put or the
//! key removed) as one record appended to a preallocated file, syncs that file, and only then
//! lets redb commit the transaction without an fsync. Every [`CHECKPOINT_EVERY`]th batch, or
//! when the record would not fit, the batch commits durably in redb instead, with the journal's
//! position in `META` (a *checkpoint*), and the journal starts again from the top of its file.
//!
//! Recovery ([`recover`]): after a crash redb reopens at its last durable commit, a checkpoint;
//! the records written after it are replayed in order and committed durably. Every write is
//! absolute (this value under this key, or no value), so replaying one the database already
//! holds changes nothing.
//!
//! Which records count: each is hashed with the journal's id and its sequence number, and only
//! an unbroken run of consecutive records from the top of the file is read. A torn record ends
//! the run, and so does whatever follows it. The id is drawn anew each time writes are unlocked
//! ([`Journal::start`]), so a record a crash cut off from the run can never pass for a later one.
//!
//! The record is synced *before* redb commits, so no reader ever sees a durable change that a
//! crash could take back. A batch of durable-later changes is appended without a sync: the next
//! sync (or checkpoint) carries it, and what a crash keeps is still a prefix of the commits.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::ops::{Deref, RangeBounds};
use std::path::{Path, PathBuf};

use clawnet_crypto::{Hash32, HashDomain};
use redb::{Database, Key, ReadTransaction, ReadableDatabase, TableDefinition, TableHandle, Value, WriteTransaction};

use crate::error::{DbResultExt, StoreError};
use crate::schema::{self, META, META_JOURNAL};

#[cfg(target_os = "linux")]
mod direct;
/// Elsewhere the journal always writes through the page cache and syncs with `fdatasync`.
#[cfg(not(target_os = "linux"))]
mod direct {
    #[derive(Debug)]
    pub(super) enum Tail {}

    impl Tail {
        pub(super) fn open(_: &std::path::Path, _: u64, _: &[u8]) -> Option<Tail> {
            None
        }
        pub(super) fn restart(&mut self, _: &[u8]) {
            match *self {}
        }
        pub(super) fn push(&mut self, _: &[u8]) {
            match *self {}
        }
        pub(super) fn sync(&mut self) -> std::io::Result<()> {
            match *self {}
        }
        pub(super) fn unsynced(&self) -> (u64, &[u8]) {
            match *self {}
        }
    }
}

/// The journal file's size, allocated (written with zeros) up front so that a sync flushes
/// data only, never the file's size.
pub(crate) const CAPACITY: u64 = 4 << 20;
/// Batches journaled between two checkpoints, at most: bounds recovery, and the pages redb
/// cannot reuse until a durable commit.
pub(crate) const CHECKPOINT_EVERY: u32 = 128;

const MAGIC: &[u8; 8] = b"CLAWJNL1";
const HEADER: u64 = MAGIC.len() as u64;
/// Payload length (u32), sequence number (u64), hash.
const RECORD_HEADER: usize = 4 + 8 + 32;

const PUT: u8 = 1;
const REMOVE: u8 = 0;

/// Where the journal of the database at `db_path` lives.
pub(crate) fn path_for(db_path: &Path) -> PathBuf {
    let mut name = db_path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(".journal");
    db_path.with_file_name(name)
}

/// The journal's position at the last checkpoint, kept in `META`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    id: [u8; 16],
    /// The last batch the checkpoint includes.
    seq: u64,
}

impl Checkpoint {
    fn encode(&self) -> [u8; 24] {
        let mut bytes = [0; 24];
        bytes[..16].copy_from_slice(&self.id);
        bytes[16..].copy_from_slice(&self.seq.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Checkpoint, StoreError> {
        let corrupt = || StoreError::Corrupt { what: "journal checkpoint", detail: "wrong length".into() };
        let id = bytes.get(..16).and_then(|id| id.try_into().ok()).ok_or_else(corrupt)?;
        let seq = bytes.get(16..24).and_then(|seq| seq.try_into().ok()).map(u64::from_le_bytes).ok_or_else(corrupt)?;
        Ok(Checkpoint { id, seq })
    }

    /// The last checkpoint in `db`; `None` if no journal was ever started (or this is not a
    /// ClawNet database, which opening reports next).
    fn read(db: &Database) -> Result<Option<Checkpoint>, StoreError> {
        Checkpoint::read_in(&db.begin_read().ctx("reading the journal checkpoint")?)
    }

    /// The last checkpoint the snapshot `tx` holds.
    fn read_in(tx: &ReadTransaction) -> Result<Option<Checkpoint>, StoreError> {
        let context = "reading the journal checkpoint";
        let meta = match tx.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(StoreError::db(context)(err.into())),
        };
        let found = meta.get(META_JOURNAL).ctx(context)?;
        found.map(|bytes| Checkpoint::decode(bytes.value())).transpose()
    }

    fn write(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        let context = "writing the journal checkpoint";
        tx.open_table(META).ctx(context)?.insert(META_JOURNAL, self.encode().as_slice()).ctx(context)?;
        Ok(())
    }
}

/// The open journal of a database whose writes are unlocked.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    /// Where synced records are written directly (see `direct.rs`); `None` where the file
    /// system cannot, and they go through `file` and `fdatasync`.
    direct: Option<direct::Tail>,
    id: [u8; 16],
    capacity: u64,
    /// Where the next record goes.
    end: u64,
    /// The sequence number of the next batch.
    next_seq: u64,
    /// Records written since the last checkpoint.
    since_checkpoint: u32,
    /// The last batch known to be on disk (synced, or in a checkpoint); the batches after it, up
    /// to `next_seq - 1`, are written but not synced.
    synced_through: u64,
    /// Syncs so far, for statistics.
    syncs: u64,
    /// The batch the last checkpoint took (its sequence number in `META`).
    checkpoint: u64,
}

impl Journal {
    /// Opens the journal at `path` for a new run of writes (creating or resetting its file as
    /// needed) under a fresh id, recorded by a durable commit. `db` must hold every journaled
    /// batch already ([`recover`] ran when it was opened).
    pub(crate) fn start(db: &Database, path: &Path) -> Result<Journal, StoreError> {
        Journal::start_with_capacity(db, path, CAPACITY)
    }

    fn start_with_capacity(db: &Database, path: &Path, capacity: u64) -> Result<Journal, StoreError> {
        let file = prepare_file(path, capacity)?;
        let direct = direct::Tail::open(path, capacity, MAGIC);
        let last = Checkpoint::read(db)?.map_or(0, |checkpoint| checkpoint.seq);
        let checkpoint = Checkpoint { id: clawnet_crypto::rng::random_bytes(), seq: last };
        let context = "starting the commit journal";
        let tx = db.begin_write().ctx(context)?;
        checkpoint.write(&tx)?;
        tx.commit().ctx(context)?;
        Ok(Journal {
            file,
            direct,
            id: checkpoint.id,
            capacity,
            end: HEADER,
            next_seq: last + 1,
            since_checkpoint: 0,
            synced_through: last,
            syncs: 0,
            checkpoint: last,
        })
    }

    /// Appends the writes of the next batch, synced unless `sync` is false.
    /// Returns false, writing nothing, when the batch must be a checkpoint instead (the journal
    /// is due for one, or the record does not fit).
    pub(crate) fn append(&mut self, writes: &[u8], sync: bool) -> Result<bool, StoreError> {
        let length = RECORD_HEADER + writes.len();
        let fits = self.end + length as u64 <= self.capacity;
        let Ok(payload_len) = u32::try_from(writes.len()) else { return Ok(false) };
        if !fits || self.since_checkpoint >= CHECKPOINT_EVERY {
            return Ok(false);
        }
        let seq = self.next_seq;
        let mut record = Vec::with_capacity(length);
        record.extend_from_slice(&payload_len.to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(record_hash(&self.id, seq, writes).as_bytes());
        record.extend_from_slice(writes);
        match &mut self.direct {
            // Written by the next sync.
            Some(tail) => tail.push(&record),
            None => {
                self.file.seek(SeekFrom::Start(self.end)).map_err(journal_io("writing the commit journal"))?;
                self.file.write_all(&record).map_err(journal_io("writing the commit journal"))?;
            }
        }
        self.end += length as u64;
        self.next_seq += 1;
        self.since_checkpoint += 1;
        if sync {
            self.sync()?;
        }
        Ok(true)
    }

    /// The sequence number the next batch takes.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last batch known to be on disk.
    pub(crate) fn synced_through(&self) -> u64 {
        self.synced_through
    }

    /// Syncs what was written since the last sync, if anything, so that every batch appended so
    /// far is on disk.
    pub(crate) fn sync(&mut self) -> Result<(), StoreError> {
        let appended = self.next_seq - 1;
        if self.synced_through < appended {
            match self.direct.as_mut().map(direct::Tail::sync) {
                Some(Ok(())) => {}
                // The file system took the open but not the write: page cache and fdatasync
                // from now on, starting with what the direct write did not write.
                Some(Err(err)) if err.kind() == std::io::ErrorKind::InvalidInput => {
                    if let Some(tail) = self.direct.take() {
                        let (at, bytes) = tail.unsynced();
                        self.file.seek(SeekFrom::Start(at)).map_err(journal_io("writing the commit journal"))?;
                        self.file.write_all(bytes).map_err(journal_io("writing the commit journal"))?;
                    }
                    self.file.sync_data().map_err(journal_io("syncing the commit journal"))?;
                }
                Some(Err(err)) => return Err(journal_io("syncing the commit journal")(err)),
                None => self.file.sync_data().map_err(journal_io("syncing the commit journal"))?,
            }
            self.syncs += 1;
            self.synced_through = appended;
        }
        Ok(())
    }

    /// Whether synced records are written directly (`direct.rs`), for tests.
    #[cfg(test)]
    fn writes_directly(&self) -> bool {
        self.direct.is_some()
    }

    /// Syncs so far.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Makes `tx` the checkpoint of the next batch: commit it durably, then call
    /// [`Journal::checkpointed`].
    pub(crate) fn write_checkpoint(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        Checkpoint { id: self.id, seq: self.next_seq }.write(tx)
    }

    /// The checkpoint written by [`Journal::write_checkpoint`] is durable: start again from the
    /// top of the file.
    pub(crate) fn checkpointed(&mut self) {
        // The durable redb commit carries every batch before it.
        self.synced_through = self.next_seq;
        self.checkpoint = self.next_seq;
        self.end = HEADER;
        if let Some(tail) = &mut self.direct {
            tail.restart(MAGIC);
        }
        self.next_seq += 1;
        self.since_checkpoint = 0;
    }

    /// The sequence number of the last checkpoint (the one [`checkpoint_in`] reads in a
    /// snapshot that holds it).
    pub(crate) fn last_checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Whether batches were journaled since the last checkpoint.
    pub(crate) fn has_records(&self) -> bool {
        self.since_checkpoint > 0
    }
}

/// The sequence number of the last checkpoint the snapshot `tx` holds (0 before any journal).
pub(crate) fn checkpoint_in(tx: &ReadTransaction) -> Result<u64, StoreError> {
    Ok(Checkpoint::read_in(tx)?.map_or(0, |checkpoint| checkpoint.seq))
}

/// The error of a failed journal write or sync, in `context`.
fn journal_io(context: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |err| StoreError::Io { context: context.into(), detail: err.to_string() }
}

/// Replays the batches the journal at `path` holds beyond `db`'s last checkpoint, and commits
/// them durably as a new checkpoint. Returns how many batches it replayed.
pub(crate) fn recover(db: &Database, path: &Path) -> Result<u64, StoreError> {
    let Some(checkpoint) = Checkpoint::read(db)? else { return Ok(0) };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => {
            return Err(StoreError::Io { context: format!("reading {}", path.display()), detail: err.to_string() });
        }
    };
    if !bytes.starts_with(MAGIC) {
        return Err(StoreError::Corrupt {
            what: "commit journal",
            detail: format!(
                "{} does not start like a ClawNet journal; move it aside to open the database as of \
                 its last checkpoint (losing the changes made since)",
                path.display()
            ),
        });
    }
    let pending: Vec<(u64, &[u8])> =
        records(&bytes, &checkpoint.id).into_iter().filter(|(seq, _)| *seq > checkpoint.seq).collect();
    let Some(&(last, _)) = pending.last() else { return Ok(0) };
    if pending[0].0 != checkpoint.seq + 1 {
        return Err(StoreError::Corrupt {
            what: "commit journal",
            detail: format!(
                "{} starts at batch {} but the database's last checkpoint is batch {}",
                path.display(),
                pending[0].0,
                checkpoint.seq
            ),
        });
    }
    let context = "replaying the commit journal";
    let tx = db.begin_write().ctx(context)?;
    for (_, writes) in &pending {
        replay(&tx, writes)?;
    }
    Checkpoint { id: checkpoint.id, seq: last }.write(&tx)?;
    tx.commit().ctx(context)?;
    Ok(pending.len() as u64)
}

/// The unbroken run of valid, consecutive records from the top of the file.
fn records<'a>(bytes: &'a [u8], id: &[u8; 16]) -> Vec<(u64, &'a [u8])> {
    let mut found: Vec<(u64, &[u8])> = Vec::new();
    let mut at = HEADER as usize;
    while let Some(header) = bytes.get(at..at + RECORD_HEADER) {
        let (len, rest) = header.split_at(4);
        let (seq, hash) = rest.split_at(8);
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        let seq = u64::from_le_bytes(seq.try_into().unwrap_or_default());
        let Some(writes) = bytes.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else { break };
        let follows = found.last().is_none_or(|(prev, _)| seq == prev + 1);
        if !follows || record_hash(id, seq, writes).as_bytes() != hash {
            break;
        }
        found.push((seq, writes));
        at += RECORD_HEADER + len;
    }
    found
}

fn record_hash(id: &[u8; 16], seq: u64, writes: &[u8]) -> Hash32 {
    Hash32::of_parts(HashDomain::JournalRecord, &[id, &seq.to_le_bytes(), &(writes.len() as u64).to_le_bytes(), writes])
}

/// Applies one record's writes, in order.
fn replay(tx: &WriteTransaction, mut writes: &[u8]) -> Result<(), StoreError> {
    let corrupt = || StoreError::Corrupt { what: "commit journal", detail: "a record's writes do not parse".into() };
    fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
        let (taken, rest) = bytes.split_at_checked(len)?;
        *bytes = rest;
        Some(taken)
    }
    fn take_len(bytes: &mut &[u8]) -> Option<usize> {
        take(bytes, 4).and_then(|len| len.try_into().ok()).map(|len| u32::from_le_bytes(len) as usize)
    }
    while !writes.is_empty() {
        let name_len = take(&mut writes, 1).ok_or_else(corrupt)?[0] as usize;
        let name = take(&mut writes, name_len).and_then(|name| std::str::from_utf8(name).ok()).ok_or_else(corrupt)?;
        let kind = take(&mut writes, 1).ok_or_else(corrupt)?[0];
        let key_len = take_len(&mut writes).ok_or_else(corrupt)?;
        let key = take(&mut writes, key_len).ok_or_else(corrupt)?;
        let value = match kind {
            PUT => {
                let value_len = take_len(&mut writes).ok_or_else(corrupt)?;
                Some(take(&mut writes, value_len).ok_or_else(corrupt)?)
            }
            REMOVE => None,
            _ => return Err(corrupt()),
        };
        schema::replay_write(tx, name, key, value)?;
    }
    Ok(())
}

/// Creates the journal file at `path`, or resets one of the wrong size or kind: the magic, then
/// zeros up to `capacity`, synced with its directory entry.
fn prepare_file(path: &Path, capacity: u64) -> Result<File, StoreError> {
    let io = |err: std::io::Error| StoreError::Io {
        context: format!("preparing {}", path.display()),
        detail: err.to_string(),
    };
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
    let mut magic = [0u8; MAGIC.len()];
    let ready = file.metadata().map_err(io)?.len() == capacity
        && std::io::Read::read_exact(&mut file, &mut magic).is_ok()
        && &magic == MAGIC;
    if !ready {
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(MAGIC).map_err(io)?;
        let zeros = vec![0u8; 64 * 1024];
        let mut written = HEADER;
        while written < capacity {
            let chunk = (capacity - written).min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..chunk]).map_err(io)?;
            written += chunk as u64;
        }
        file.sync_all().map_err(io)?;
        // The new file's directory entry too (Unix only: other systems cannot open a directory).
        #[cfg(unix)]
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
        }
    }
    Ok(file)
}

/// A table opened for writing in a [`crate::Txn`]: every write through it is also recorded for
/// the journal. Reads go to the table itself (through `Deref`).
pub(crate) struct JournaledTable<'t, K: Key + 'static, V: Value + 'static> {
    table: redb::Table<'t, K, V>,
    definition: TableDefinition<'static, K, V>,
    writes: &'t RefCell<Vec<u8>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> JournaledTable<'t, K, V> {
    pub(crate) fn open(
        tx: &'t WriteTransaction,
        definition: TableDefinition<'static, K, V>,
        writes: &'t RefCell<Vec<u8>>,
    ) -> Result<JournaledTable<'t, K, V>, redb::TableError> {
        Ok(JournaledTable { table: tx.open_table(definition)?, definition, writes })
    }

    /// Puts `value` under `key`.
    pub(crate) fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<(), redb::StorageError> {
        self.table.insert(key.borrow(), value.borrow())?;
        record_put(
            &mut self.writes.borrow_mut(),
            self.definition.name(),
            K::as_bytes(key.borrow()).as_ref(),
            V::as_bytes(value.borrow()).as_ref(),
        );
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub(crate) fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool, redb::StorageError> {
        let existed = self.table.remove(key.borrow())?.is_some();
        if existed {
            record_remove(&mut self.writes.borrow_mut(), self.definition.name(), K::as_bytes(key.borrow()).as_ref());
        }
        Ok(existed)
    }

    /// Removes every entry for which `predicate` returns false.
    pub(crate) fn retain<F>(&mut self, mut predicate: F) -> Result<(), redb::StorageError>
    where
        F: for<'f> FnMut(K::SelfType<'f>, V::SelfType<'f>) -> bool,
    {
        let (name, writes) = (self.definition.name(), self.writes);
        self.table.retain(|key, value| {
            let key_bytes = K::as_bytes(&key).as_ref().to_vec();
            let keep = predicate(key, value);
            if !keep {
                record_remove(&mut writes.borrow_mut(), name, &key_bytes);
            }
            keep
        })
    }

    /// Removes every entry in `range` for which `predicate` returns false.
    pub(crate) fn retain_in<'a, KR, F>(
        &mut self,
        range: impl RangeBounds<KR> + 'a,
        mut predicate: F,
    ) -> Result<(), redb::StorageError>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
        F: for<'f> FnMut(K::SelfType<'f>, V::SelfType<'f>) -> bool,
    {
        let (name, writes) = (self.definition.name(), self.writes);
        self.table.retain_in(range, |key, value| {
            let key_bytes = K::as_bytes(&key).as_ref().to_vec();
            let keep = predicate(key, value);
            if !keep {
                record_remove(&mut writes.borrow_mut(), name, &key_bytes);
            }
            keep
        })
    }
}

impl<'t, K: Key + 'static, V: Value + 'static> Deref for JournaledTable<'t, K, V> {
    type Target = redb::Table<'t, K, V>;

    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

pub(crate) fn record_put(writes: &mut Vec<u8>, table: &str, key: &[u8], value: &[u8]) {
    record_key(writes, table, PUT, key);
    writes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    writes.extend_from_slice(value);
}

pub(crate) fn record_remove(writes: &mut Vec<u8>, table: &str, key: &[u8]) {
    record_key(writes, table, REMOVE, key);
}

fn record_key(writes: &mut Vec<u8>, table: &str, kind: u8, key: &[u8]) {
    // Table names are this crate's constants, all short.
    writes.push(table.len() as u8);
    writes.extend_from_slice(table.as_bytes());
    writes.push(kind);
    writes.extend_from_slice(&(key.len() as u32).to_le_bytes());
    writes.extend_from_slice(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(capacity: u64) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db.redb")).unwrap();
        let journal = Journal::start_with_capacity(&db, &dir.path().join("db.redb.journal"), capacity).unwrap();
        (dir, journal)
    }

    #[test]
    fn a_batch_that_does_not_fit_or_comes_due_is_a_checkpoint_instead() {
        let (dir, mut journal) = fresh(HEADER + 2 * (RECORD_HEADER as u64 + 100));
        assert_eq!(std::fs::metadata(dir.path().join("db.redb.journal")).unwrap().len(), journal.capacity);
        assert!(journal.append(&[1; 100], true).unwrap());
        assert!(journal.append(&[2; 100], false).unwrap());
        assert!(!journal.append(&[3; 1], true).unwrap(), "the file is full");
        journal.checkpointed();
        assert_eq!(journal.next_seq, 4, "the checkpoint took batch 3");
        for _ in 0..CHECKPOINT_EVERY {
            journal.since_checkpoint += 1;
        }
        assert!(!journal.append(&[4; 1], true).unwrap(), "due for a checkpoint");
    }

    fn on_disk(dir: &tempfile::TempDir, journal: &Journal) -> Vec<u64> {
        let bytes = std::fs::read(dir.path().join("db.redb.journal")).unwrap();
        assert!(bytes.starts_with(MAGIC));
        records(&bytes, &journal.id).iter().map(|(seq, _)| *seq).collect()
    }

    #[test]
    fn records_across_blocks_reach_the_file_by_the_next_sync_and_start_again_at_the_top() {
        let (dir, mut journal) = fresh(CAPACITY);
        // Records of 1 000 to 3 000 bytes, one in three synced: they cross block boundaries, and
        // the block a sync ends in is written again by the next.
        for n in 1..=30u64 {
            assert!(journal.append(&vec![n as u8; 1000 + n as usize * 70], n % 3 == 0).unwrap());
        }
        assert_eq!(on_disk(&dir, &journal), (1..=30).collect::<Vec<_>>());
        assert!(journal.append(&[31; 10], false).unwrap());
        if journal.writes_directly() {
            assert_eq!(on_disk(&dir, &journal).len(), 30, "a durable-later record waits for the next sync");
        }
        journal.sync().unwrap();
        assert_eq!(on_disk(&dir, &journal), (1..=31).collect::<Vec<_>>());
        let bytes = std::fs::read(dir.path().join("db.redb.journal")).unwrap();
        assert_eq!(records(&bytes, &journal.id)[17].1, vec![18; 1000 + 18 * 70]);

        // After a checkpoint the next record goes to the top, and the older ones no longer count.
        journal.checkpointed();
        assert!(journal.append(&[7; 10], true).unwrap());
        assert_eq!(on_disk(&dir, &journal), [33]);
    }

    #[test]
    fn without_direct_io_records_go_through_the_page_cache_and_fdatasync() {
        // A file system that refuses direct I/O when the file is opened.
        let (dir, mut journal) = fresh(CAPACITY);
        journal.direct = None;
        assert!(journal.append(&[1; 10], false).unwrap());
        assert!(journal.append(&[2; 10], true).unwrap());
        assert_eq!(on_disk(&dir, &journal), [1, 2]);

        // One that takes the open but refuses the write (here: a misaligned buffer, which
        // direct I/O refuses the same way): the unsynced records are written through the page
        // cache instead, and every sync after that.
        let (dir, mut journal) = fresh(CAPACITY);
        if !journal.writes_directly() {
            return;
        }
        assert!(journal.append(&[1; 5000], true).unwrap());
        journal.direct.as_mut().unwrap().misalign();
        assert!(journal.append(&[2; 10], false).unwrap());
        assert!(journal.append(&[3; 10], true).unwrap());
        assert!(!journal.writes_directly());
        assert!(journal.append(&[4; 10], true).unwrap());
        assert_eq!(on_disk(&dir, &journal), [1, 2, 3, 4]);
        assert_eq!(journal.syncs(), 3);
    }

    #[test]
    fn only_an_unbroken_run_of_this_journals_records_counts() {
        let (dir, mut journal) = fresh(CAPACITY);
        for n in 0..4u8 {
            assert!(journal.append(&[n; 10], true).unwrap());
        }
        let bytes = std::fs::read(dir.path().join("db.redb.journal")).unwrap();
        let seqs = |bytes: &[u8], id: &[u8; 16]| records(bytes, id).iter().map(|(seq, _)| *seq).collect::<Vec<_>>();
        assert_eq!(seqs(&bytes, &journal.id), [1, 2, 3, 4]);
        assert_eq!(records(&bytes, &journal.id)[2].1, [2; 10]);
        assert!(seqs(&bytes, &[0; 16]).is_empty(), "another journal's id");

        let second = HEADER as usize + RECORD_HEADER + 10;
        let mut torn = bytes.clone();
        torn[second + RECORD_HEADER] ^= 1;
        assert_eq!(seqs(&torn, &journal.id), [1]);

        // Record 3 rewritten as if it were batch 9: valid on its own, but not a successor.
        let third = second + RECORD_HEADER + 10;
        let mut gap = bytes.clone();
        gap[third + 4..third + 12].copy_from_slice(&9u64.to_le_bytes());
        gap[third + 12..third + 44].copy_from_slice(record_hash(&journal.id, 9, &[2; 10]).as_bytes());
        assert_eq!(seqs(&gap, &journal.id), [1, 2]);
    }
}
