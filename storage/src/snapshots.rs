//! Decoded copies of the small tables a node reads for every message it sends or receives:
//! its contacts, its identities, the value layer of its memory, the pending approvals (a
//! session turn waits while one is about it) and the identities' file scopes (which tools an
//! agent is offered). Reading them from redb each time cost a read transaction, a table lookup
//! and a decode per record, and some lookups scanned the whole table (the contact of a device
//! key, every never-share item of every identity). A copy is dropped by the commit that writes
//! its table, and rebuilt from a read view on the next use.
//!
//! A copy is never newer or older than some committed state: it is built from one read view,
//! and kept only if no commit wrote its table since the view was opened (the table's
//! *generation* did not move). The writer drops copies after redb commits and before it tells
//! the change's author, so whoever committed a change reads it back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use clawnet_crypto::{IdentityId, OwnerId, SigningPublicKey};

use crate::approvals::ApprovalRecord;
use crate::contacts::ContactRecord;
use crate::error::StoreError;
use crate::files::FileScope;
use crate::identities::IdentityRecord;
use crate::memory::{MemoryLayer, MemoryRecord};
use crate::schema::{APPROVALS, CONTACTS, FILE_SCOPES, IDENTITIES, MEMORY, PENDING_APPROVALS};
use crate::view::ReadView;

/// Which of the copied tables a transaction wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Touched(u8);

impl Touched {
    const CONTACTS: Touched = Touched(1);
    const IDENTITIES: Touched = Touched(2);
    const MEMORY: Touched = Touched(4);
    const APPROVALS: Touched = Touched(8);
    const FILE_SCOPES: Touched = Touched(16);
    /// Every copied table (a raw write may have changed any of them).
    pub(crate) const ALL: Touched = Touched(31);

    /// The copy a write to the table named `table` makes stale, if any.
    pub(crate) fn of(table: &str) -> Touched {
        use redb::TableHandle;
        if table == CONTACTS.name() {
            Touched::CONTACTS
        } else if table == IDENTITIES.name() {
            Touched::IDENTITIES
        } else if table == MEMORY.name() {
            Touched::MEMORY
        } else if table == APPROVALS.name() || table == PENDING_APPROVALS.name() {
            Touched::APPROVALS
        } else if table == FILE_SCOPES.name() {
            Touched::FILE_SCOPES
        } else {
            Touched(0)
        }
    }

    /// Both sets.
    pub(crate) fn with(self, other: Touched) -> Touched {
        Touched(self.0 | other.0)
    }

    fn has(self, table: Touched) -> bool {
        self.0 & table.0 != 0
    }
}

/// Every contact, by owner and by device key.
#[derive(Debug, Default)]
pub(crate) struct Contacts {
    by_owner: HashMap<OwnerId, ContactRecord>,
    by_device: HashMap<SigningPublicKey, OwnerId>,
}

impl Contacts {
    fn load(view: &ReadView) -> Result<Contacts, StoreError> {
        let mut contacts = Contacts::default();
        for record in view.contacts()? {
            // As `ReadView::contact_by_device`: the first in owner order, should two claim it.
            contacts.by_device.entry(record.device_key).or_insert(record.owner);
            contacts.by_owner.insert(record.owner, record);
        }
        Ok(contacts)
    }

    pub(crate) fn get(&self, owner: &OwnerId) -> Option<&ContactRecord> {
        self.by_owner.get(owner)
    }

    pub(crate) fn by_device(&self, device_key: &SigningPublicKey) -> Option<&ContactRecord> {
        self.by_device.get(device_key).and_then(|owner| self.by_owner.get(owner))
    }
}

/// The value-layer memory records (stance, bottom lines, never-share items) of every identity.
pub type ValueMemories = Vec<(IdentityId, MemoryRecord)>;

/// The copies of one database.
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    contacts: Cached<Contacts>,
    identities: Cached<Vec<IdentityRecord>>,
    values: Cached<ValueMemories>,
    pending: Cached<Vec<ApprovalRecord>>,
    scopes: Cached<HashMap<IdentityId, FileScope>>,
}

impl Snapshots {
    /// Every contact.
    pub(crate) fn contacts(
        &self,
        open: impl FnOnce() -> Result<ReadView, StoreError>,
    ) -> Result<Arc<Contacts>, StoreError> {
        self.contacts.get(|| Contacts::load(&open()?))
    }

    /// Every identity, ordered by id.
    pub(crate) fn identities(
        &self,
        open: impl FnOnce() -> Result<ReadView, StoreError>,
    ) -> Result<Arc<Vec<IdentityRecord>>, StoreError> {
        self.identities.get(|| open()?.identities())
    }

    /// The value layer of every identity's memory, in the order of [`ReadView::memories`] per
    /// identity, identities ordered by id.
    pub(crate) fn values(
        &self,
        open: impl FnOnce() -> Result<ReadView, StoreError>,
    ) -> Result<Arc<ValueMemories>, StoreError> {
        self.values.get(|| {
            let view = open()?;
            let mut values = Vec::new();
            for identity in view.identities()? {
                for record in view.memories(&identity.id)? {
                    if record.layer() == MemoryLayer::Value {
                        values.push((identity.id, record));
                    }
                }
            }
            Ok(values)
        })
    }

    /// The approvals still pending, oldest first.
    pub(crate) fn pending_approvals(
        &self,
        open: impl FnOnce() -> Result<ReadView, StoreError>,
    ) -> Result<Arc<Vec<ApprovalRecord>>, StoreError> {
        self.pending.get(|| open()?.pending_approvals())
    }

    /// The file scope of every identity the owner granted folders.
    pub(crate) fn file_scopes(
        &self,
        open: impl FnOnce() -> Result<ReadView, StoreError>,
    ) -> Result<Arc<HashMap<IdentityId, FileScope>>, StoreError> {
        self.scopes.get(|| open()?.file_scopes())
    }

    /// Drops the copies of the tables a commit wrote. Called after the commit, before its
    /// author hears of it.
    pub(crate) fn written(&self, touched: Touched) {
        if touched.has(Touched::CONTACTS) {
            self.contacts.drop_copy();
        }
        if touched.has(Touched::IDENTITIES) {
            self.identities.drop_copy();
        }
        // The value copy also lists identities: a new identity's memory is empty, but a
        // database edited outside the writer may not be.
        if touched.has(Touched::MEMORY) || touched.has(Touched::IDENTITIES) {
            self.values.drop_copy();
        }
        if touched.has(Touched::APPROVALS) {
            self.pending.drop_copy();
        }
        if touched.has(Touched::FILE_SCOPES) {
            self.scopes.drop_copy();
        }
    }
}

/// One table's copy and its generation: how many commits wrote the table.
#[derive(Debug)]
struct Cached<T> {
    state: Mutex<(u64, Option<Arc<T>>)>,
}

impl<T> Default for Cached<T> {
    fn default() -> Cached<T> {
        Cached { state: Mutex::new((0, None)) }
    }
}

impl<T> Cached<T> {
    /// The copy, built by `load` (which opens its own read view) if there is none.
    fn get(&self, load: impl FnOnce() -> Result<T, StoreError>) -> Result<Arc<T>, StoreError> {
        let generation = {
            let state = self.lock();
            if let Some(copy) = &state.1 {
                return Ok(copy.clone());
            }
            state.0
        };
        // The view opens after the generation was read: a commit that lands in between moves
        // the generation, and this copy, possibly older than that commit, is not kept.
        let copy = Arc::new(load()?);
        let mut state = self.lock();
        if state.0 == generation {
            state.1 = Some(copy.clone());
        }
        Ok(copy)
    }

    fn drop_copy(&self) {
        let mut state = self.lock();
        state.0 += 1;
        state.1 = None;
    }

    fn lock(&self) -> MutexGuard<'_, (u64, Option<Arc<T>>)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_built_while_its_table_was_written_is_not_kept() {
        let copy: Cached<u32> = Cached::default();
        // A commit lands while the copy is being built from an older view.
        let built = copy
            .get(|| {
                copy.drop_copy();
                Ok(1)
            })
            .unwrap();
        assert_eq!(*built, 1, "the caller still gets what it read");
        assert_eq!(*copy.get(|| Ok(2)).unwrap(), 2, "the next reader loads again");
        assert_eq!(*copy.get(|| Ok(3)).unwrap(), 2, "and that copy is kept");
        copy.drop_copy();
        assert_eq!(*copy.get(|| Ok(4)).unwrap(), 4, "a write drops it");
    }

    #[test]
    fn writes_are_traced_to_the_copies_they_make_stale() {
        use redb::TableHandle;
        assert_eq!(Touched::of(CONTACTS.name()), Touched::CONTACTS);
        assert_eq!(Touched::of(IDENTITIES.name()), Touched::IDENTITIES);
        assert_eq!(Touched::of(MEMORY.name()), Touched::MEMORY);
        assert_eq!(Touched::of(APPROVALS.name()), Touched::APPROVALS);
        assert_eq!(Touched::of(PENDING_APPROVALS.name()), Touched::APPROVALS);
        assert_eq!(Touched::of(FILE_SCOPES.name()), Touched::FILE_SCOPES);
        assert_eq!(Touched::of(crate::schema::TURNS.name()), Touched::default());
        let every = [Touched::CONTACTS, Touched::MEMORY, Touched::IDENTITIES, Touched::APPROVALS, Touched::FILE_SCOPES];
        assert_eq!(every.into_iter().fold(Touched::default(), Touched::with), Touched::ALL);
    }
}
