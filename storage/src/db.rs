//! Creating and opening a node database: schema version, owner, device certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clawnet_crypto::cert::ContextTag;
use clawnet_crypto::{DeviceCert, IdentityId, OwnerId, Signed, SigningPublicKey, SigningSecret, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use redb::{Database, ReadableDatabase};

use crate::approvals::ApprovalRecord;
use crate::contacts::ContactRecord;
use crate::deliveries::QueuedFeed;
use crate::deliveries::recent::RecentOutbox;
use crate::error::{DbResultExt, StoreError};
use crate::files::FileScope;
use crate::identities::IdentityRecord;
use crate::journal::{self, Journal};
use crate::schema::{self, META};
use crate::snapshots::ValueMemories;
use crate::view::ReadView;
use crate::writer::{Change, CommitReceipt, Kept, Pending, WhenDurable, Writer, WriterStats};

/// What a new node database starts with.
#[derive(Debug)]
pub struct Genesis {
    /// The owner.
    pub owner: OwnerId,
    /// The owner's certificate for this node's device key.
    pub device_cert: Signed<DeviceCert>,
    /// The node's name, for people.
    pub node_name: String,
    /// The locked keystore blob.
    pub keystore: Vec<u8>,
}

/// Facts about the node, read once at open.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The owner.
    pub owner: OwnerId,
    /// The device key that signs this node's audit chain.
    pub device_key: SigningPublicKey,
    /// The owner's certificate for it.
    pub device_cert: Signed<DeviceCert>,
    /// The node's name.
    pub node_name: String,
}

/// An open node database. Cheap to clone; all clones share one writer.
#[derive(Debug, Clone)]
pub struct NodeDb {
    db: Arc<Database>,
    path: PathBuf,
    info: NodeInfo,
    writer: Option<Arc<Writer>>,
    /// What commits keep current in memory (shared with the writer).
    kept: Kept,
    recovered: u64,
}

impl NodeDb {
    /// Creates the database at `path` and records its genesis as audit entry 1, signed by
    /// `device` (whose public key must be the one `genesis.device_cert` certifies).
    pub fn create(path: &Path, genesis: Genesis, device: SigningSecret) -> Result<NodeDb, StoreError> {
        if path.exists() {
            return Err(StoreError::AlreadyInitialized(path.to_owned()));
        }
        let cert = DeviceCert::verify_for(&genesis.device_cert, &genesis.owner, Timestamp::now())
            .map_err(|err| StoreError::BadDeviceCert(err.to_string()))?;
        if cert.device_key != device.public_key() {
            return Err(StoreError::WrongDeviceKey);
        }
        let db = Database::create(path).ctx("creating the database")?;
        let tx = db.begin_write().ctx("creating the database")?;
        {
            let mut meta = tx.open_table(META).ctx("creating the database")?;
            meta.insert(schema::META_SCHEMA, schema::SCHEMA_VERSION.to_le_bytes().as_slice())
                .ctx("creating the database")?;
            meta.insert(schema::META_OWNER, genesis.owner.key().as_bytes().as_slice()).ctx("creating the database")?;
            let cert_bytes = postcard::to_allocvec(&genesis.device_cert)
                .map_err(|err| StoreError::Corrupt { what: "device certificate", detail: err.to_string() })?;
            meta.insert(schema::META_DEVICE_CERT, cert_bytes.as_slice()).ctx("creating the database")?;
            meta.insert(schema::META_NODE_NAME, genesis.node_name.as_bytes()).ctx("creating the database")?;
            meta.insert(schema::META_KEYSTORE, genesis.keystore.as_slice()).ctx("creating the database")?;
        }
        create_tables(&tx)?;
        tx.commit().ctx("creating the database")?;
        let mut node = NodeDb::from_database(db, path)?;
        node.unlock_writes(device)?;
        node.append(AuditDraft::new(
            Actor::Owner,
            "node.init",
            format!("node {:?} of owner {}", node.info.node_name, node.info.owner.fingerprint()),
            "owner command",
            Outcome::Success,
        ))?;
        Ok(node)
    }

    /// Opens an existing database for reading; call [`NodeDb::unlock_writes`] to change it.
    pub fn open(path: &Path) -> Result<NodeDb, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotInitialized(path.to_owned()));
        }
        let db = match Database::open(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::InUse(path.to_owned())),
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(err)))
                if err.kind() == std::io::ErrorKind::WouldBlock =>
            {
                return Err(StoreError::InUse(path.to_owned()));
            }
            Err(err) => {
                return Err(StoreError::Database { context: "opening the database", detail: err.to_string() });
            }
        };
        // Before anything reads it: the database is only whole with its journal replayed.
        let recovered = journal::recover(&db, &journal::path_for(path))?;
        let mut node = NodeDb::from_database(db, path)?;
        node.recovered = recovered;
        Ok(node)
    }

    /// How many batches of changes opening the database replayed from its commit journal: the
    /// changes committed after its last checkpoint, before a crash or kill (0 after a clean stop).
    pub fn recovered_batches(&self) -> u64 {
        self.recovered
    }

    /// Enables writes, with audit entries signed by `device` (this node's device key).
    pub fn unlock_writes(&mut self, device: SigningSecret) -> Result<(), StoreError> {
        if device.public_key() != self.info.device_key {
            return Err(StoreError::WrongDeviceKey);
        }
        let head = crate::audit::read_head(&self.read()?)?;
        let journal = Journal::start(&self.db, &journal::path_for(&self.path))?;
        self.writer =
            Some(Arc::new(Writer::start(self.db.clone(), device, self.info.owner, head, self.kept.clone(), journal)?));
        Ok(())
    }

    /// Queues `change` for the next group commit; the returned [`Pending`] resolves once it is
    /// durable. Changes commit in submission order.
    pub fn submit<T: Send + 'static>(&self, change: Change<T>) -> Result<Pending<T>, StoreError> {
        self.writer.as_ref().ok_or(StoreError::ReadOnly)?.submit(change)
    }

    /// Commits `change` durably, with its audit entries, and returns what its step produced.
    /// Blocks the calling thread; from async code use [`NodeDb::submit`] and await it.
    pub fn commit<T: Send + 'static>(&self, change: Change<T>) -> Result<(T, CommitReceipt), StoreError> {
        self.writer.as_ref().ok_or(StoreError::ReadOnly)?.commit(change)
    }

    /// Whether nothing is being written right now and changes come one at a time (a hint for
    /// [`NodeDb::commit_if_idle`]).
    pub fn is_idle(&self) -> bool {
        self.writer.as_ref().is_some_and(|writer| writer.is_idle())
    }

    /// Commits `change` on the calling thread if nothing else is being written and changes come
    /// one at a time, which saves the hand-off to the writer thread; otherwise returns it
    /// untouched (submit it instead). For async callers that can afford to block briefly (for
    /// example inside `block_in_place`).
    pub fn commit_if_idle<T: Send + 'static>(
        &self,
        change: Change<T>,
    ) -> Result<Result<(T, CommitReceipt), StoreError>, Change<T>> {
        match &self.writer {
            Some(writer) => writer.commit_if_idle(change),
            None => Ok(Err(StoreError::ReadOnly)),
        }
    }

    /// Makes every change committed so far durable, durable-later ones included (nothing to do
    /// when a durable commit since did it). Blocks the calling thread for the sync.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.writer.as_ref().ok_or(StoreError::ReadOnly)?.sync()
    }

    /// Resolves once the change `receipt` came from is on disk: at once for a durable change,
    /// with the next sync for a durable-later one. Pair it with a deadline and [`NodeDb::sync`]
    /// so that the wait stays bounded when nothing else is written.
    pub fn when_durable(&self, receipt: &CommitReceipt) -> Result<WhenDurable, StoreError> {
        Ok(self.writer.as_ref().ok_or(StoreError::ReadOnly)?.when_durable(receipt.batch))
    }

    /// Appends one audit entry durably (no other records).
    pub fn append(&self, draft: AuditDraft) -> Result<CommitReceipt, StoreError> {
        self.commit(Change::audit(draft)).map(|((), receipt)| receipt)
    }

    /// A consistent snapshot for reading.
    pub fn read(&self) -> Result<ReadView, StoreError> {
        // The recent writes first, then the snapshot, then the recent writes again: if a batch
        // published meanwhile, the snapshot may hold its other records, so the view starts again
        // (`recent.rs`).
        let mut recent = self.kept.recent_writes.current();
        #[cfg(test)]
        crate::writer::pause(&self.kept.read_pause);
        loop {
            let tx = self.db.begin_read().ctx("starting a read")?;
            let again = self.kept.recent_writes.current();
            if Arc::ptr_eq(&recent, &again) {
                return Ok(ReadView::new(tx, recent));
            }
            recent = again;
        }
    }

    /// Makes [`NodeDb::read`] wait `reads` between taking the recent writes and its snapshot,
    /// and a checkpoint wait `checkpoints` between its commit and emptying them.
    #[cfg(test)]
    pub(crate) fn pause(&self, reads: std::time::Duration, checkpoints: std::time::Duration) {
        let micros = |pause: std::time::Duration| u64::try_from(pause.as_micros()).unwrap_or(u64::MAX);
        self.kept.read_pause.store(micros(reads), std::sync::atomic::Ordering::Relaxed);
        self.kept.checkpoint_pause.store(micros(checkpoints), std::sync::atomic::Ordering::Relaxed);
    }

    /// The contact record of `owner` as last committed, from memory (see [`NodeDb::identities`]).
    pub fn contact(&self, owner: &OwnerId) -> Result<Option<ContactRecord>, StoreError> {
        Ok(self.kept.snapshots.contacts(|| self.read())?.get(owner).cloned())
    }

    /// The contact whose node has `device_key`, if any, as last committed, from memory.
    pub fn contact_by_device(&self, device_key: &SigningPublicKey) -> Result<Option<ContactRecord>, StoreError> {
        Ok(self.kept.snapshots.contacts(|| self.read())?.by_device(device_key).cloned())
    }

    /// Every identity, active and retired, ordered by id, as last committed. Kept decoded in
    /// memory until a commit writes identities, like the contacts and the value layer of
    /// memory: these are read for every message, and change rarely. Use a [`ReadView`] to read
    /// them consistently with other tables.
    pub fn identities(&self) -> Result<Arc<Vec<IdentityRecord>>, StoreError> {
        self.kept.snapshots.identities(|| self.read())
    }

    /// The identity `id`, as last committed, from memory.
    pub fn identity(&self, id: &IdentityId) -> Result<Option<IdentityRecord>, StoreError> {
        Ok(self.identities()?.iter().find(|record| &record.id == id).cloned())
    }

    /// The active identity with `tag`, if any, as last committed, from memory.
    pub fn active_identity_by_tag(&self, tag: &ContextTag) -> Result<Option<IdentityRecord>, StoreError> {
        Ok(self.identities()?.iter().find(|record| record.is_active() && &record.tag == tag).cloned())
    }

    /// The value-layer memory records of every identity (see [`ValueMemories`]), as last
    /// committed, from memory. The same `Arc` until a commit changes them, so what is derived
    /// from them can be kept as long.
    pub fn value_memories(&self) -> Result<Arc<ValueMemories>, StoreError> {
        self.kept.snapshots.values(|| self.read())
    }

    /// The approvals still pending, oldest first, as last committed, from memory (a session's
    /// turn waits while one is about it; see [`NodeDb::identities`]).
    pub fn pending_approvals(&self) -> Result<Arc<Vec<ApprovalRecord>>, StoreError> {
        self.kept.snapshots.pending_approvals(|| self.read())
    }

    /// The folders `identity` may touch (empty if the owner granted none), as last committed,
    /// from memory.
    pub fn file_scope(&self, identity: &IdentityId) -> Result<FileScope, StoreError> {
        Ok(self.kept.snapshots.file_scopes(|| self.read())?.get(identity).cloned().unwrap_or_default())
    }

    /// Facts about this node.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the database's commit journal is (beside the database file): part of the database,
    /// to be kept, copied and protected with it.
    pub fn journal_path(&self) -> PathBuf {
        journal::path_for(&self.path)
    }

    /// The messages committed changes queue in the outbox, as they commit: how the sending
    /// worker learns of them without scanning the outbox.
    pub fn queued_outbound(&self) -> &Arc<QueuedFeed> {
        &self.kept.queued
    }

    /// The messages queued since the last checkpoint (see [`crate::deliveries`]).
    pub(crate) fn recent_outbox(&self) -> &RecentOutbox {
        &self.kept.recent
    }

    /// Group-commit statistics since the writer was unlocked.
    pub fn writer_stats(&self) -> Option<WriterStats> {
        self.writer.as_ref().map(|writer| writer.stats())
    }

    /// Runs `write` in its own durable transaction, outside the audited writer: only for tests
    /// that play an attacker with write access to the file.
    #[cfg(any(test, feature = "tamper"))]
    pub(crate) fn raw_write(
        &self,
        write: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(writer) = &self.writer {
            return writer.raw_write(write);
        }
        let tx = self.db.begin_write().ctx("writing raw")?;
        write(&tx)?;
        tx.commit().ctx("writing raw")?;
        self.kept.snapshots.written(crate::snapshots::Touched::ALL);
        Ok(())
    }

    fn from_database(db: Database, path: &Path) -> Result<NodeDb, StoreError> {
        let tx = db.begin_read().ctx("reading node facts")?;
        let meta = match tx.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Err(StoreError::NotClawnet(path.to_owned())),
            Err(err) => return Err(StoreError::db("reading node facts")(err.into())),
        };
        let get = |key: &str| -> Result<Vec<u8>, StoreError> {
            meta.get(key)
                .ctx("reading node facts")?
                .map(|value| value.value().to_vec())
                .ok_or_else(|| StoreError::NotClawnet(path.to_owned()))
        };
        let version_bytes: [u8; 4] =
            get(schema::META_SCHEMA)?.try_into().map_err(|_| StoreError::NotClawnet(path.to_owned()))?;
        let found = u32::from_le_bytes(version_bytes);
        if found > schema::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { found, supported: schema::SCHEMA_VERSION });
        }
        if (1..schema::SCHEMA_VERSION).contains(&found) {
            drop(meta);
            drop(tx);
            migrate(&db, found)?;
            return NodeDb::from_database(db, path);
        }
        if found != schema::SCHEMA_VERSION {
            return Err(StoreError::SchemaUnknown { found, supported: schema::SCHEMA_VERSION });
        }
        let owner_bytes: [u8; 32] = get(schema::META_OWNER)?
            .try_into()
            .map_err(|_| StoreError::Corrupt { what: "owner key", detail: "wrong length".into() })?;
        let owner = SigningPublicKey::from_bytes(&owner_bytes)
            .map(OwnerId::from_key)
            .map_err(|err| StoreError::Corrupt { what: "owner key", detail: err.to_string() })?;
        let device_cert: Signed<DeviceCert> = postcard::from_bytes(&get(schema::META_DEVICE_CERT)?)
            .map_err(|err| StoreError::Corrupt { what: "device certificate", detail: err.to_string() })?;
        let cert = DeviceCert::verify_for(&device_cert, &owner, Timestamp::now())
            .map_err(|err| StoreError::BadDeviceCert(err.to_string()))?;
        let node_name = String::from_utf8_lossy(&get(schema::META_NODE_NAME)?).into_owned();
        let info = NodeInfo { owner, device_key: cert.device_key, device_cert, node_name };
        drop(meta);
        drop(tx);
        Ok(NodeDb { db: Arc::new(db), path: path.to_owned(), info, writer: None, kept: Kept::default(), recovered: 0 })
    }
}

/// Creates every table, so readers never meet a missing one.
pub(crate) fn create_tables(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let context = "creating tables";
    tx.open_table(schema::AUDIT).ctx(context)?;
    tx.open_table(schema::IDENTITIES).ctx(context)?;
    tx.open_table(schema::CONTACTS).ctx(context)?;
    tx.open_table(schema::SESSIONS).ctx(context)?;
    tx.open_table(schema::TURNS).ctx(context)?;
    tx.open_table(schema::NONCES).ctx(context)?;
    tx.open_table(schema::OUTBOX).ctx(context)?;
    tx.open_table(schema::INBOX).ctx(context)?;
    tx.open_table(schema::INVITES).ctx(context)?;
    tx.open_table(schema::PEERS).ctx(context)?;
    tx.open_table(schema::MEMORY).ctx(context)?;
    tx.open_table(schema::APPROVALS).ctx(context)?;
    tx.open_table(schema::PENDING_APPROVALS).ctx(context)?;
    tx.open_table(schema::FILE_SCOPES).ctx(context)?;
    tx.open_table(schema::FILE_OPS).ctx(context)?;
    Ok(())
}

/// From schema `found` to the current one, in one transaction. Schema 2 added the file
/// endpoint's tables; schema 3 the index of pending approvals; schema 4 the commit journal,
/// which starts when writes are unlocked (an older database has nothing to replay); schema 5
/// audit records without a signature of their own (an older chain, every entry signed, is
/// already valid); schema 6 inbox records without the message (older records still read).
/// Nothing else changed.
fn migrate(db: &Database, found: u32) -> Result<(), StoreError> {
    let context = "migrating the database to the current schema";
    let tx = db.begin_write().ctx(context)?;
    create_tables(&tx)?;
    if found < 3 {
        crate::approvals::index_pending(&tx)?;
    }
    tx.open_table(META)
        .ctx(context)?
        .insert(schema::META_SCHEMA, schema::SCHEMA_VERSION.to_le_bytes().as_slice())
        .ctx(context)?;
    tx.commit().ctx(context)
}
