//! Transaction wrappers: domain modules add their read and write methods to these, so code
//! outside this crate never sees a redb type.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::{Arc, OnceLock};

use clawnet_crypto::{WireFormat, encoding};

use crate::deliveries::recent::{Changes, RecentOutbox};
use crate::error::StoreError;
use crate::journal::JournaledTable;
use crate::recent::{RecentSet, RecentWrites, TurnChange};
use crate::snapshots::Touched;

/// A consistent read-only snapshot of the database.
pub struct ReadView {
    pub(crate) tx: redb::ReadTransaction,
    /// The turns and audit entries written since the last checkpoint, as they were when `tx`
    /// began (`recent.rs` says how that is made sure of).
    recent: Arc<RecentSet>,
    /// Whether `tx` holds a later checkpoint than the one `recent` follows, which copied
    /// `recent` into the tables: looked up the first time `recent` is read.
    recent_stale: OnceLock<bool>,
}

impl ReadView {
    pub(crate) fn new(tx: redb::ReadTransaction, recent: Arc<RecentSet>) -> ReadView {
        ReadView { tx, recent, recent_stale: OnceLock::new() }
    }

    /// The recent writes this view reads besides the tables, if any (`recent.rs`): none when
    /// its snapshot holds the checkpoint that put them in the tables.
    pub(crate) fn recent(&self) -> Result<Option<&RecentSet>, StoreError> {
        if self.recent.is_empty() {
            return Ok(None);
        }
        let stale = match self.recent_stale.get() {
            Some(stale) => *stale,
            None => {
                let stale = crate::journal::checkpoint_in(&self.tx)? != self.recent.after();
                *self.recent_stale.get_or_init(|| stale)
            }
        };
        Ok((!stale).then_some(&*self.recent))
    }
}

impl fmt::Debug for ReadView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadView")
    }
}

/// The write transaction a [`crate::Change`] applies its records in. Its methods only write;
/// decisions belong to the caller, made before the change is submitted.
pub struct Txn<'a> {
    pub(crate) tx: &'a redb::WriteTransaction,
    /// Messages this transaction queued in the outbox, published to the sending worker once it
    /// commits (see [`crate::deliveries::QueuedFeed`]).
    pub(crate) queued: Vec<crate::deliveries::QueuedOutbound>,
    /// Every write made through [`Txn::write_table`], recorded for the commit journal.
    pub(crate) writes: RefCell<Vec<u8>>,
    /// Which tables kept decoded in memory it wrote (their copies are dropped once it commits).
    pub(crate) touched: Cell<Touched>,
    /// The messages queued since the last checkpoint, outside the outbox table.
    pub(crate) recent: &'a RecentOutbox,
    /// What this transaction did to those, applied to them once it commits.
    pub(crate) recent_changes: RefCell<Changes>,
    /// The turns and audit entries written since the last checkpoint, outside their tables.
    pub(crate) recent_writes: &'a RecentWrites,
    /// What this transaction did to those, in order, applied to them once it commits.
    pub(crate) turn_changes: RefCell<Vec<TurnChange>>,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(
        tx: &'a redb::WriteTransaction,
        recent: &'a RecentOutbox,
        recent_writes: &'a RecentWrites,
    ) -> Txn<'a> {
        Txn {
            tx,
            queued: Vec::new(),
            writes: RefCell::default(),
            touched: Cell::default(),
            recent,
            recent_changes: RefCell::default(),
            recent_writes,
            turn_changes: RefCell::default(),
        }
    }

    /// Opens `table` for writing. Every write goes through here, so the journal sees it: a
    /// write made on `self.tx` directly would be lost by a crash before the next checkpoint.
    pub(crate) fn write_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: redb::TableDefinition<'static, K, V>,
    ) -> Result<JournaledTable<'_, K, V>, redb::TableError> {
        use redb::TableHandle;
        self.touched.set(self.touched.get().with(Touched::of(table.name())));
        JournaledTable::open(self.tx, table, &self.writes)
    }
}

impl fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Txn")
    }
}

/// Decodes a stored record, reporting corruption with the record's name. Records are this
/// node's own encodings, so their spelling is not re-checked.
pub(crate) fn decode_value<T: WireFormat>(bytes: &[u8]) -> Result<T, StoreError> {
    encoding::decode_local(bytes).map_err(StoreError::corrupt(T::NAME))
}
