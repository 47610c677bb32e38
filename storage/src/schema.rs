//! The on-disk layout: every table, and the schema version that names this layout.
//!
//! Keys are fixed-size byte arrays or integers; values are the canonical versioned encoding
//! (`clawnet_crypto::encoding`) of a record type, or raw signed bytes for the audit chain.

use redb::{Key, TableDefinition, TableHandle, Value};

use crate::error::{DbResultExt, StoreError};

/// The layout this build writes and reads. Bump it, and add a migration, with any change to a
/// table or record encoding.
pub(crate) const SCHEMA_VERSION: u32 = 6;

/// Node facts: schema version, owner, device certificate, keystore blob.
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// The audit chain: seq → `entry body || node signature`, or the body alone for an entry the
/// last entry of its commit signs for (`clawnet_protocol::audit`).
pub(crate) const AUDIT: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("audit");
/// This owner's identities: identity id → identity record.
pub(crate) const IDENTITIES: TableDefinition<'static, &[u8; 16], &[u8]> = TableDefinition::new("identities");
/// Contacts: their owner key → contact record.
pub(crate) const CONTACTS: TableDefinition<'static, &[u8; 32], &[u8]> = TableDefinition::new("contacts");
/// Sessions: session id → session record.
pub(crate) const SESSIONS: TableDefinition<'static, &[u8; 16], &[u8]> = TableDefinition::new("sessions");
/// Session transcripts: (session id, turn number) → signed turn.
pub(crate) const TURNS: TableDefinition<'static, (&[u8; 16], u32), &[u8]> = TableDefinition::new("turns");
/// Replay cache: nonce → keep-until (ms since epoch).
pub(crate) const NONCES: TableDefinition<'static, &[u8; 16], u64> = TableDefinition::new("nonces");
/// Outbound deliveries not yet acknowledged: message id → outbox record.
pub(crate) const OUTBOX: TableDefinition<'static, &[u8; 32], &[u8]> = TableDefinition::new("outbox");
/// Invites this owner issued: token lookup key → invite record (the token itself is not kept).
pub(crate) const INVITES: TableDefinition<'static, &[u8; 32], &[u8]> = TableDefinition::new("invites");
/// Known network addresses of other nodes: device key → peer record.
pub(crate) const PEERS: TableDefinition<'static, &[u8; 32], &[u8]> = TableDefinition::new("peers");
/// Inbound deliveries recorded (for deduplication): message id → inbox record.
pub(crate) const INBOX: TableDefinition<'static, &[u8; 32], &[u8]> = TableDefinition::new("inbox");
/// Identity memory: (identity id, entry number) → memory record.
pub(crate) const MEMORY: TableDefinition<'static, (&[u8; 16], u64), &[u8]> = TableDefinition::new("memory");
/// Owner approvals, pending and decided: approval id → approval record.
pub(crate) const APPROVALS: TableDefinition<'static, &[u8; 16], &[u8]> = TableDefinition::new("approvals");
/// The ids of the approvals still pending, so finding them does not read the whole history:
/// approval id → (). Since schema 3.
pub(crate) const PENDING_APPROVALS: TableDefinition<'static, &[u8; 16], ()> = TableDefinition::new("pending_approvals");
/// Each identity's file scope (authorization layer 1): identity id → file scope record.
/// Since schema 2.
pub(crate) const FILE_SCOPES: TableDefinition<'static, &[u8; 16], &[u8]> = TableDefinition::new("file_scopes");
/// The file endpoint's journal: operation number → file operation record. Since schema 2.
pub(crate) const FILE_OPS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("file_ops");

pub(crate) const META_SCHEMA: &str = "schema_version";
pub(crate) const META_OWNER: &str = "owner";
pub(crate) const META_DEVICE_CERT: &str = "device_cert";
pub(crate) const META_NODE_NAME: &str = "node_name";
pub(crate) const META_KEYSTORE: &str = "keystore";
pub(crate) const META_FEED: &str = "feed";
pub(crate) const META_FILE_OPS_SETTLED: &str = "file_ops_settled";
/// The commit journal's id and the last batch the database holds durably (`journal.rs`).
/// Since schema 4: a build before it would open the database without replaying its journal.
pub(crate) const META_JOURNAL: &str = "journal";
/// The owner's devices certified to run a file endpoint (`devices.rs`).
pub(crate) const META_ENDPOINT_DEVICES: &str = "endpoint_devices";

/// Lists every table once: `replay_write` dispatches a journaled write to its table by name.
macro_rules! journaled_tables {
    ($($table:ident),* $(,)?) => {
        /// Applies one journaled write (`journal.rs`) to the table named `name`: `value` put under
        /// `key`, or `key` removed.
        pub(crate) fn replay_write(
            tx: &redb::WriteTransaction,
            name: &str,
            key: &[u8],
            value: Option<&[u8]>,
        ) -> Result<(), StoreError> {
            $(if name == $table.name() {
                return apply(tx, $table, key, value);
            })*
            Err(StoreError::Corrupt { what: "commit journal", detail: format!("a write to unknown table {name:?}") })
        }

        /// The names `replay_write` knows.
        #[cfg(test)]
        pub(crate) fn journaled_names() -> Vec<&'static str> {
            vec![$($table.name()),*]
        }
    };
}

journaled_tables!(
    META,
    AUDIT,
    IDENTITIES,
    CONTACTS,
    SESSIONS,
    TURNS,
    NONCES,
    OUTBOX,
    INVITES,
    PEERS,
    INBOX,
    MEMORY,
    APPROVALS,
    PENDING_APPROVALS,
    FILE_SCOPES,
    FILE_OPS,
);

fn apply<K: Key + 'static, V: Value + 'static>(
    tx: &redb::WriteTransaction,
    table: TableDefinition<'static, K, V>,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), StoreError> {
    let context = "replaying the commit journal";
    let mut table = tx.open_table(table).ctx(context)?;
    match value {
        Some(value) => table.insert(K::from_bytes(key), V::from_bytes(value)).map(drop),
        None => table.remove(K::from_bytes(key)).map(drop),
    }
    .ctx(context)
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, TableHandle};

    #[test]
    fn the_journal_can_replay_a_write_to_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("db.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(super::META).unwrap();
        crate::db::create_tables(&tx).unwrap();
        tx.commit().unwrap();
        let known = super::journaled_names();
        let tables: Vec<String> =
            db.begin_read().unwrap().list_tables().unwrap().map(|table| table.name().to_owned()).collect();
        assert_eq!(tables.len(), 16);
        for table in tables {
            assert!(known.contains(&table.as_str()), "the journal cannot replay writes to {table}");
        }
    }
}
