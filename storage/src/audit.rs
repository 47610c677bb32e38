//! The audit chain on disk: its head, verification and JSON Lines export.

use clawnet_crypto::Hash32;
use std::io::Write;
use std::ops::ControlFlow;
use std::sync::mpsc::sync_channel;

use clawnet_protocol::audit::{
    Actor, AuditEntry, ChainError, ChainSummary, ChainWalker, Outcome, ParsedRecord, SignatureBatch, link_hash,
    parse_record,
};
use redb::ReadableTable;
use serde::Serialize;

use crate::db::NodeDb;
use crate::error::{DbResultExt, StoreError};
use crate::recent::RecentSet;
use crate::schema::AUDIT;
use crate::view::ReadView;
use crate::writer::ChainHead;

/// Why the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditVerifyError {
    /// An entry is bad; the first one is named.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NodeDb {
    /// Walks the whole chain: sequence numbers, links, owner and every signature (in batches),
    /// and that a signature covers the last entry. Reports the first bad entry.
    pub fn verify_audit(&self) -> Result<ChainSummary, AuditVerifyError> {
        self.verify_audit_with_progress(|_| {})
    }

    /// Like [`NodeDb::verify_audit`], calling `progress` with the number of entries checked
    /// every few thousand entries.
    pub fn verify_audit_with_progress(&self, mut progress: impl FnMut(u64)) -> Result<ChainSummary, AuditVerifyError> {
        let view = self.read()?;
        let mut walker = ChainWalker::new(self.info().device_key, self.info().owner);
        // Reading, decoding and linking run on this thread while signature batches are checked
        // on another, in order; an earlier bad signature outranks a later structural error.
        std::thread::scope(|scope| {
            let (batches, to_check) = sync_channel::<SignatureBatch>(4);
            let checker = scope.spawn(move || -> Result<(), ChainError> {
                for batch in to_check {
                    batch.verify()?;
                }
                Ok(())
            });
            let walked = (|| -> Result<ChainSummary, AuditVerifyError> {
                let mut checked = 0u64;
                each_entry(&view, |seq, record| {
                    match walker.push(seq, record) {
                        Ok(Some(batch)) => {
                            if batches.send(batch).is_err() {
                                // The checker stopped at a bad signature: it has the answer.
                                return Ok(ControlFlow::Break(()));
                            }
                        }
                        Ok(None) => {}
                        Err(err) => {
                            let _ = batches.send(walker.take_pending());
                            return Err(AuditVerifyError::from(err));
                        }
                    }
                    checked += 1;
                    if checked.is_multiple_of(4096) {
                        progress(checked);
                    }
                    Ok(ControlFlow::Continue(()))
                })?;
                let (pending, summary) = walker.finish();
                let _ = batches.send(pending);
                Ok(summary?)
            })();
            drop(batches);
            let checked = checker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            checked?;
            walked
        })
    }

    /// Writes every entry as one JSON object per line, with its raw record so anyone holding the
    /// node's public key can re-verify it. Returns the number of entries written.
    pub fn export_audit(&self, out: &mut impl Write) -> Result<u64, StoreError> {
        let view = self.read()?;
        let mut count = 0;
        each_entry(&view, |seq, record| {
            let line = ExportedEntry::new(seq, record);
            let mut text = serde_json::to_string(&line).map_err(|err| io_error("encoding the export", err))?;
            text.push('\n');
            out.write_all(text.as_bytes()).map_err(|err| io_error("writing the export", err))?;
            count += 1;
            Ok::<_, StoreError>(ControlFlow::Continue(()))
        })?;
        out.flush().map_err(|err| io_error("writing the export", err))?;
        Ok(count)
    }

    /// Every entry, decoded but not verified (for display; run [`NodeDb::verify_audit`] to trust
    /// them).
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let view = self.read()?;
        let mut entries = Vec::new();
        each_entry(&view, |_, record| {
            entries.push(parse_record(record).map_err(StoreError::corrupt("audit entry"))?.entry);
            Ok::<_, StoreError>(ControlFlow::Continue(()))
        })?;
        Ok(entries)
    }

    /// The chain head: the number of entries and the link hash of the last one.
    pub fn audit_head(&self) -> Result<(u64, Hash32), StoreError> {
        let head = read_head(&self.read()?)?;
        Ok((head.next_seq - 1, head.prev))
    }
}

/// Overwrites the stored record of entry `seq` with `record`, bypassing the chain: only for
/// tests that play an attacker with write access to the database file.
#[cfg(any(test, feature = "tamper"))]
pub fn tamper_with_entry(db: &NodeDb, seq: u64, record: &[u8]) -> Result<(), StoreError> {
    db.raw_write(|tx| {
        let mut table = tx.open_table(AUDIT).ctx("tampering")?;
        table.insert(seq, record).ctx("tampering")?;
        Ok(())
    })
}

/// Overwrites the stored schema version: only for tests of the version guard and of
/// migrations. Going back before schema 3 also removes the table schema 3 added.
#[cfg(any(test, feature = "tamper"))]
pub fn tamper_with_schema_version(db: &NodeDb, version: u32) -> Result<(), StoreError> {
    db.raw_write(|tx| {
        let mut meta = tx.open_table(crate::schema::META).ctx("tampering")?;
        meta.insert(crate::schema::META_SCHEMA, version.to_le_bytes().as_slice()).ctx("tampering")?;
        if version < 3 {
            tx.delete_table(crate::schema::PENDING_APPROVALS).ctx("tampering")?;
        }
        Ok(())
    })
}

/// The raw stored record of entry `seq` (tests and forensics).
pub fn raw_entry(db: &NodeDb, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let view = db.read()?;
    if let Some((_, record)) = view.recent()?.and_then(|recent| recent.audit().find(|(at, _)| *at == seq)) {
        return Ok(Some(record.to_vec()));
    }
    let table = view.tx.open_table(AUDIT).ctx("reading the audit chain")?;
    Ok(table.get(seq).ctx("reading the audit chain")?.map(|value| value.value().to_vec()))
}

/// Calls `each` with every stored entry, in order: the table's, then those written since the
/// last checkpoint (`recent.rs`), which all come after them. Stops early at a `Break`.
pub(crate) fn each_entry<E: From<StoreError>>(
    view: &ReadView,
    mut each: impl FnMut(u64, &[u8]) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let table = view.tx.open_table(AUDIT).ctx("reading the audit chain")?;
    for row in table.iter().ctx("reading the audit chain")? {
        let (seq, record) = row.ctx("reading the audit chain")?;
        if each(seq.value(), record.value())?.is_break() {
            return Ok(());
        }
    }
    for (seq, record) in view.recent()?.into_iter().flat_map(RecentSet::audit) {
        if each(seq, record)?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// The position after the last stored entry.
pub(crate) fn read_head(view: &ReadView) -> Result<ChainHead, StoreError> {
    let head = |seq: u64, record: &[u8]| {
        let parsed = parse_record(record).map_err(StoreError::corrupt("audit entry"))?;
        Ok(ChainHead { next_seq: seq + 1, prev: link_hash(parsed.body) })
    };
    if let Some((seq, record)) = view.recent()?.and_then(RecentSet::last_audit) {
        return head(seq, record);
    }
    let table = view.tx.open_table(AUDIT).ctx("reading the audit head")?;
    match table.last().ctx("reading the audit head")? {
        None => Ok(ChainHead { next_seq: 1, prev: Hash32::ZERO }),
        Some((seq, record)) => head(seq.value(), record.value()),
    }
}

fn io_error(context: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Io { context: context.to_owned(), detail: err.to_string() }
}

/// One line of an export.
#[derive(Debug, Serialize)]
struct ExportedEntry {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    basis: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    /// The node's signature, on the last entry of each commit only (it covers the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    /// `body || signature`, or `body` alone, in hex, exactly as stored.
    record: String,
    /// Set when the record does not decode; the raw record is still exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl ExportedEntry {
    fn new(seq: u64, record: &[u8]) -> ExportedEntry {
        let mut line = ExportedEntry {
            seq,
            prev: None,
            time_ms: None,
            owner: None,
            actor: None,
            action: None,
            object: None,
            basis: None,
            outcome: None,
            reason: None,
            link: None,
            signature: None,
            record: hex::encode(record),
            error: None,
        };
        match parse_record(record) {
            Ok(ParsedRecord { entry, body, signature }) => {
                let (outcome, reason) = match entry.outcome {
                    Outcome::Success => ("success", None),
                    Outcome::Denied(reason) => ("denied", Some(reason)),
                    Outcome::Failed(reason) => ("failed", Some(reason)),
                };
                line.prev = Some(entry.prev.to_hex());
                line.time_ms = Some(entry.time.as_millis());
                line.owner = Some(entry.owner.to_hex());
                line.actor = Some(actor_name(&entry.actor));
                line.action = Some(entry.action);
                line.object = Some(entry.object);
                line.basis = Some(entry.basis);
                line.outcome = Some(outcome.to_owned());
                line.reason = reason;
                line.link = Some(link_hash(body).to_hex());
                line.signature = signature.map(|signature| signature.to_hex());
            }
            Err(err) => line.error = Some(err.to_string()),
        }
        line
    }
}

/// How an actor is written in exports and listings.
pub fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::Owner => "owner".into(),
        Actor::Node => "node".into(),
        Actor::Manager => "manager".into(),
        Actor::Identity(id) => format!("identity:{id}"),
        Actor::Peer(owner) => format!("peer:{}", owner.fingerprint()),
    }
}
