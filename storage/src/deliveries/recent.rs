//! The messages queued since the last checkpoint: in memory and in the commit journal, not in
//! the outbox table.
//!
//! The table is keyed by message id, so inserting a message and removing it once acknowledged
//! each dirty a leaf page of their own, and most messages are acknowledged within milliseconds
//! of being queued. So a message is queued here, and made durable by the journal record of its
//! commit like any write. A checkpoint (the durable redb commit after which the journal starts
//! again) copies the messages still queued into the table and empties this set: a message
//! acknowledged before the next checkpoint never reaches the table. After a crash, recovery
//! replays the journal's puts and removals of messages into the table like any others.
//!
//! A message is in this set or in the table, never both. Readers see the two together through
//! [`crate::NodeDb`]'s outbox methods, which read the table while holding this set's lock; a
//! checkpoint holds it from the copy until the set is emptied, so no reader finds a queued
//! message in neither place.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use redb::WriteTransaction;

use crate::error::{DbResultExt, StoreError};
use crate::schema::OUTBOX;
use crate::writer::lock;

/// An outbox key.
pub(crate) type Key = [u8; 32];

/// What one transaction did to queued messages: a stored record, or `None` for one removed.
pub(crate) type Changes = HashMap<Key, Option<Vec<u8>>>;

/// The encoded outbox records queued since the last checkpoint, by key.
#[derive(Debug, Default)]
pub(crate) struct RecentOutbox {
    records: Mutex<HashMap<Key, Vec<u8>>>,
}

impl RecentOutbox {
    /// The set, locked: a reader holds it while it also reads the table.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<Key, Vec<u8>>> {
        lock(&self.records)
    }

    /// The record under `key`, if it is queued here.
    pub(crate) fn get(&self, key: &Key) -> Option<Vec<u8>> {
        self.lock().get(key).cloned()
    }

    /// Applies what a transaction did, once it committed.
    pub(crate) fn apply(&self, changes: Changes) {
        if changes.is_empty() {
            return;
        }
        let mut records = self.lock();
        for (key, record) in changes {
            match record {
                Some(record) => records.insert(key, record),
                None => records.remove(&key),
            };
        }
    }

    /// Copies into `tx`'s outbox table every message queued here, with `changes` (of the same,
    /// uncommitted transaction) applied, for a checkpoint. Returns the locked set: empty it
    /// once `tx` committed, and hold it until then.
    pub(crate) fn copy_into(
        &self,
        tx: &WriteTransaction,
        changes: &Changes,
    ) -> Result<MutexGuard<'_, HashMap<Key, Vec<u8>>>, StoreError> {
        let context = "copying queued messages into the outbox";
        let records = self.lock();
        let mut table = tx.open_table(OUTBOX).ctx(context)?;
        // Not through the journal: the checkpoint commits durably, and the journal starts again.
        for (key, record) in records.iter().filter(|(key, _)| !changes.contains_key(*key)) {
            table.insert(key, record.as_slice()).ctx(context)?;
        }
        for (key, record) in changes {
            if let Some(record) = record {
                table.insert(key, record.as_slice()).ctx(context)?;
            }
        }
        Ok(records)
    }
}
