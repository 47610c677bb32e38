//! The on-disk layout: every table, and the schema version that names this layout.
//!
//! Keys are fixed-size byte arrays or integers; values are the canonical versioned encoding
//! (`clawnet_crypto::encoding`) of a record type, or raw signed bytes for the audit chain.

use redb::TableDefinition;

/// The layout this build writes and reads. Bump it, and add a migration, with any change to a
/// table or record encoding.
pub(crate) const SCHEMA_VERSION: u32 = 3;

/// Node facts: schema version, owner, device certificate, keystore blob.
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// The audit chain: seq → `entry body || node signature`.
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
/// The owner's devices certified to run a file endpoint (`devices.rs`).
pub(crate) const META_ENDPOINT_DEVICES: &str = "endpoint_devices";
