//! Sessions as signed records: the proposal, the consents or rejection, the close, and the
//! transcript of signed turns. The protocol's state machine is the authority on what may be
//! stored here; this module only keeps it. The turns stored since the last checkpoint are kept
//! in memory as well as in the commit journal, not in the turns table (`recent.rs`): a view
//! reads both.

use std::collections::BTreeMap;

use clawnet_crypto::{Signed, Timestamp, WireFormat, encoding};
use clawnet_protocol::SessionId;
use clawnet_protocol::session::{Close, Consent, Proposal, Rejection, Turn};
use redb::{ReadableTable, TableHandle};
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::journal::{record_put, record_remove};
use crate::recent::TurnChange;
use crate::schema::{SESSIONS, TURNS};
use crate::view::{ReadView, Txn, decode_value};

/// Everything signed that created or ended one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The identity-signed proposal.
    pub proposal: Signed<Proposal>,
    /// The initiator's owner's consent.
    pub initiator_consent: Option<Signed<Consent>>,
    /// The target's owner's consent.
    pub target_consent: Option<Signed<Consent>>,
    /// A rejection by either owner.
    pub rejection: Option<Signed<Rejection>>,
    /// The close.
    pub close: Option<Signed<Close>>,
    /// When the record last changed.
    pub updated_at: Timestamp,
}

impl WireFormat for SessionRecord {
    const NAME: &'static str = "session record";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 16 * 1024;
}

/// A stored turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredTurn(Signed<Turn>);

impl WireFormat for StoredTurn {
    const NAME: &'static str = "stored turn";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = <Turn as WireFormat>::MAX_LEN + 256;
}

impl ReadView {
    /// The session `id`.
    pub fn session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let table = self.tx.open_table(SESSIONS).ctx("reading sessions")?;
        let value = table.get(&id.0).ctx("reading sessions")?;
        value.map(|value| decode_value(value.value())).transpose()
    }

    /// Every session id.
    pub fn session_ids(&self) -> Result<Vec<SessionId>, StoreError> {
        let table = self.tx.open_table(SESSIONS).ctx("reading sessions")?;
        let mut ids = Vec::new();
        for row in table.iter().ctx("reading sessions")? {
            let (key, _) = row.ctx("reading sessions")?;
            ids.push(SessionId(*key.value()));
        }
        Ok(ids)
    }

    /// The transcript of `id`, in turn order.
    pub fn turns(&self, id: &SessionId) -> Result<Vec<Signed<Turn>>, StoreError> {
        Ok(self.turns_from(id, 0)?.into_iter().map(|(_, turn)| turn).collect())
    }

    /// Turn `turn_no` of `id`, as stored.
    pub fn turn(&self, id: &SessionId, turn_no: u32) -> Result<Option<Signed<Turn>>, StoreError> {
        if let Some(bytes) = self.recent()?.and_then(|recent| recent.turn(&id.0, turn_no)) {
            return decode_turn(bytes).map(Some);
        }
        let table = self.tx.open_table(TURNS).ctx("reading turns")?;
        let value = table.get((&id.0, turn_no)).ctx("reading turns")?;
        value.map(|value| decode_turn(value.value())).transpose()
    }

    /// The turns of `id` numbered `first` or later, with their numbers, in turn order: those in
    /// the table, and the recent ones over them.
    pub fn turns_from(&self, id: &SessionId, first: u32) -> Result<Vec<(u32, Signed<Turn>)>, StoreError> {
        let table = self.tx.open_table(TURNS).ctx("reading turns")?;
        let mut turns = BTreeMap::new();
        for row in table.range((&id.0, first)..=(&id.0, u32::MAX)).ctx("reading turns")? {
            let (key, value) = row.ctx("reading turns")?;
            turns.insert(key.value().1, decode_turn(value.value())?);
        }
        for (turn_no, bytes) in self.recent()?.into_iter().flat_map(|recent| recent.turns_from(&id.0, first)) {
            turns.insert(turn_no, decode_turn(bytes)?);
        }
        Ok(turns.into_iter().collect())
    }
}

fn decode_turn(bytes: &[u8]) -> Result<Signed<Turn>, StoreError> {
    decode_value::<StoredTurn>(bytes).map(|StoredTurn(turn)| turn)
}

/// The turns table's key of turn `turn_no` of session `id`, as the journal records it.
fn turn_key(id: &SessionId, turn_no: u32) -> Vec<u8> {
    <(&[u8; 16], u32) as redb::Value>::as_bytes(&(&id.0, turn_no))
}

impl Txn<'_> {
    /// Inserts or replaces a session record.
    pub fn put_session(&mut self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        let mut table = self.write_table(SESSIONS).ctx("writing a session")?;
        table.insert(&id.0, encoding::encode(record).as_slice()).ctx("writing a session")?;
        Ok(())
    }

    /// Stores turn `turn_no` of session `id`: in the journal and, until the next checkpoint, in
    /// memory (`recent.rs`).
    pub fn put_turn(&mut self, id: &SessionId, turn_no: u32, turn: &Signed<Turn>) -> Result<(), StoreError> {
        let bytes = encoding::encode(&StoredTurn(turn.clone()));
        record_put(&mut self.writes.borrow_mut(), TURNS.name(), &turn_key(id, turn_no), &bytes);
        self.turn_changes.borrow_mut().push(TurnChange::Put(id.0, turn_no, bytes.into()));
        Ok(())
    }

    /// Drops the turns of `id` after the first `keep` (a close cut the transcript back): from
    /// the table, and from the recent turns.
    pub fn truncate_turns(&mut self, id: &SessionId, keep: u32) -> Result<(), StoreError> {
        let mut table = self.write_table(TURNS).ctx("cutting a transcript")?;
        table
            .retain_in((&id.0, keep.saturating_add(1))..=(&id.0, u32::MAX), |_, _| false)
            .ctx("cutting a transcript")?;
        drop(table);
        let recent = self.recent_writes.with(&self.turn_changes.borrow());
        let mut writes = self.writes.borrow_mut();
        for (turn_no, _) in recent.turns_from(&id.0, keep.saturating_add(1)) {
            record_remove(&mut writes, TURNS.name(), &turn_key(id, turn_no));
        }
        self.turn_changes.borrow_mut().push(TurnChange::Cut(id.0, keep));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use clawnet_crypto::Hash32;
    use clawnet_protocol::Nonce;
    use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
    use clawnet_protocol::testkit::{T0, TestOwner};

    use super::*;
    use crate::Change;
    use crate::testing::open_db;

    #[test]
    fn a_view_finds_every_turn_and_audit_entry_of_the_batches_its_snapshot_holds() {
        // One thread commits a turn, an audit entry and a nonce at a time, through three
        // checkpoints, while others take views whose start is held open 300 µs, so that commits
        // fall inside it, and each checkpoint waits 3 ms between its commit and emptying the
        // recent writes, so that views start inside that too. The turns and the entries stay
        // out of their tables until a checkpoint, the nonces do not: every nonce a view sees
        // must come with its turn and its entry, and the view lists each entry once.
        const CHANGES: u32 = 400;
        let dir = tempfile::tempdir().unwrap();
        let owner = TestOwner::new(1, &["work"]);
        let db = open_db(&dir.path().join("node.redb"), &owner);
        db.pause(Duration::from_micros(300), Duration::from_millis(3));
        let session = SessionId([7; 16]);
        let nonce = |n: u32| Nonce(u128::from(n).to_le_bytes());
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        let mut views = 0u32;
                        while !done.load(Ordering::SeqCst) {
                            let view = db.read().unwrap();
                            let turns = view.turns(&session).unwrap().len() as u32;
                            // The changes after those whose turns it found (a view may find the
                            // turns of a batch before its other records, not the other way).
                            let mut seen = turns;
                            while seen < CHANGES && view.nonce_seen(&nonce(seen + 1)).unwrap() {
                                seen += 1;
                            }
                            assert_eq!(seen, turns, "a view holds {seen} changes and only {turns} of their turns");
                            let entries = crate::audit::read_head(&view).unwrap().next_seq - 1;
                            assert!(entries > u64::from(seen), "{seen} changes and {entries} entries (genesis too)");
                            let mut listed = Vec::new();
                            crate::audit::each_entry(&view, |seq, _| {
                                listed.push(seq);
                                Ok::<_, StoreError>(std::ops::ControlFlow::Continue(()))
                            })
                            .unwrap();
                            assert_eq!(listed, (1..=entries).collect::<Vec<_>>(), "the entries a view lists");
                            views += 1;
                        }
                        views
                    })
                })
                .collect();
            for n in 1..=CHANGES {
                let turn = owner.turn("work", session, n, Hash32([0; 32]), &format!("turn {n}"), None);
                let seen = (nonce(n), Timestamp(T0.0 + 1_000_000));
                let change = Change::new(move |txn| {
                    txn.put_turn(&session, n, &turn)?;
                    txn.record_nonces(&[seen])
                })
                .with_audit(AuditDraft::new(
                    Actor::Node,
                    "test.turn",
                    format!("turn {n}"),
                    "test",
                    Outcome::Success,
                ));
                db.commit(change).unwrap();
            }
            done.store(true, Ordering::SeqCst);
            for reader in readers {
                assert!(reader.join().unwrap() > 10, "the readers took too few views to race the commits");
            }
        });
        assert!(db.writer_stats().unwrap().batches > 3 * 129, "fewer than three checkpoints");
        assert_eq!(db.read().unwrap().turns(&session).unwrap().len() as u32, CHANGES);
        assert_eq!(db.verify_audit().unwrap().entries, 1 + u64::from(CHANGES));
    }
}
