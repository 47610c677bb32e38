//! What the batches since the last checkpoint wrote to two tables, kept in memory and in the
//! commit journal instead of in those tables: the session turns and the audit entries.
//!
//! Both are written at nearly every commit and rewritten soon after. The turns table is keyed
//! by (session, turn number), so a batch's turns each landed in the leaf page of their own
//! session. The audit table is appended to, so every batch copied its last leaf again to add a
//! few entries. redb copies, checksums and writes every such page at every commit: with 64
//! sessions at once, storing the turns was ~6% of a turn's CPU and the audit entries ~4%. So
//! these writes go to the journal, which makes them durable like any write, and to the set
//! here. A checkpoint (the durable redb commit after which the journal starts again) copies the
//! set into the tables, each session's turns together and the entries in order, and empties
//! it. After a crash, recovery replays the journal's writes into the tables.
//!
//! Readers see the tables and this set together ([`crate::ReadView`]), without a lock between
//! them and the writer:
//! - a batch publishes its writes here once its journal record is written (so once durable,
//!   unless the whole batch is durable-later) and before redb commits it, and a write leaves
//!   the set only after the checkpoint that put it in its table committed;
//! - a view takes the set, then its redb snapshot, then looks at the set again: if the set
//!   changed meanwhile (a batch published, or a checkpoint emptied it), it starts again.
//!
//! So the batches a view's snapshot holds had published their writes before it took the set:
//! it finds every one of their turns and entries, in the set or in the tables. It may also find
//! those of a batch whose other records its snapshot does not hold yet (published, not yet
//! committed).
//!
//! Between a checkpoint's commit and its emptying of the set, a view can take the old set with a
//! snapshot that holds the checkpoint: the tables then hold everything the set does, and more
//! (the checkpoint's own batch, a cut that batch made). So the set names the checkpoint its
//! writes follow, and a view whose snapshot holds a later one (`META` says which) reads the
//! tables alone ([`crate::ReadView`]). Otherwise each write is in one place: the set holds the
//! audit entries after the table's last one, and the turns the table does not have yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redb::WriteTransaction;

use crate::error::{DbResultExt, StoreError};
use crate::schema::{AUDIT, TURNS};
use crate::writer::lock;

/// A session id, as the turns table keys it.
pub(crate) type SessionKey = [u8; 16];

/// One session's recent turns: turn number → the stored turn, encoded.
type Turns = BTreeMap<u32, Arc<[u8]>>;

/// The audit entries one batch added: (sequence number, stored record), in order.
pub(crate) type AuditRows = Vec<(u64, Vec<u8>)>;

/// What a transaction did to recent turns, in order, applied once it commits.
#[derive(Debug, Clone)]
pub(crate) enum TurnChange {
    /// Turn `.1` of session `.0` stored as `.2`.
    Put(SessionKey, u32, Arc<[u8]>),
    /// Every turn of session `.0` after turn `.1` removed (a close cut the transcript back).
    Cut(SessionKey, u32),
}

/// The recent writes at one moment: what a view reads besides the tables.
#[derive(Debug, Default, Clone)]
pub(crate) struct RecentSet {
    /// The checkpoint these writes follow (its sequence number, as `META` records it).
    after: u64,
    sessions: HashMap<SessionKey, Arc<Turns>>,
    /// The audit entries after the table's last one, a batch at a time.
    audit: Vec<Arc<AuditRows>>,
}

impl RecentSet {
    /// The checkpoint these writes follow: a snapshot holding a later one holds them all.
    pub(crate) fn after(&self) -> u64 {
        self.after
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.audit.is_empty()
    }

    /// Turn `turn_no` of `session`, if it is recent.
    pub(crate) fn turn(&self, session: &SessionKey, turn_no: u32) -> Option<&[u8]> {
        self.sessions.get(session)?.get(&turn_no).map(|bytes| &bytes[..])
    }

    /// The recent turns of `session` numbered `first` or later, in order.
    pub(crate) fn turns_from(&self, session: &SessionKey, first: u32) -> impl Iterator<Item = (u32, &[u8])> {
        self.sessions.get(session).into_iter().flat_map(move |turns| turns.range(first..)).map(|(n, b)| (*n, &b[..]))
    }

    /// The recent audit entries, in order: each comes after every entry in the table.
    pub(crate) fn audit(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.audit.iter().flat_map(|rows| rows.iter()).map(|(seq, record)| (*seq, &record[..]))
    }

    /// The last recent audit entry.
    pub(crate) fn last_audit(&self) -> Option<(u64, &[u8])> {
        self.audit.last()?.last().map(|(seq, record)| (*seq, &record[..]))
    }

    fn apply(&mut self, changes: &[TurnChange]) {
        for change in changes {
            match change {
                TurnChange::Put(session, turn_no, bytes) => {
                    Arc::make_mut(self.sessions.entry(*session).or_default()).insert(*turn_no, bytes.clone());
                }
                TurnChange::Cut(session, keep) => {
                    if let Some(turns) = self.sessions.get_mut(session) {
                        Arc::make_mut(turns).retain(|turn_no, _| turn_no <= keep);
                    }
                }
            }
        }
    }
}

/// The writes since the last checkpoint kept out of their tables, as the last commit left them.
#[derive(Debug, Default)]
pub(crate) struct RecentWrites {
    current: Mutex<Arc<RecentSet>>,
}

impl RecentWrites {
    /// The set as it is now (see the module docs for how a view takes it).
    pub(crate) fn current(&self) -> Arc<RecentSet> {
        lock(&self.current).clone()
    }

    /// The set with `changes` applied: the turns a transaction that made them sees.
    pub(crate) fn with(&self, changes: &[TurnChange]) -> RecentSet {
        let mut set = (*self.current()).clone();
        set.apply(changes);
        set
    }

    /// Publishes what a batch did (see the module docs for when). Only the committing thread
    /// calls this, so nothing changes the set between its read and its replacement.
    pub(crate) fn publish(&self, changes: &[TurnChange], audit: AuditRows) {
        if changes.is_empty() && audit.is_empty() {
            return;
        }
        let mut set = self.with(changes);
        if !audit.is_empty() {
            set.audit.push(Arc::new(audit));
        }
        *lock(&self.current) = Arc::new(set);
    }

    /// Writes every recent turn and audit entry into their tables in `tx`, with `changes` and
    /// `audit` (of the same, uncommitted transaction) added, for a checkpoint; call
    /// [`RecentWrites::clear`] once `tx` committed.
    pub(crate) fn copy_into(
        &self,
        tx: &WriteTransaction,
        changes: &[TurnChange],
        audit: &AuditRows,
    ) -> Result<(), StoreError> {
        let context = "copying recent writes into their tables";
        let set = self.with(changes);
        // Not through the journal: the checkpoint commits durably, and the journal starts again.
        if !set.sessions.is_empty() {
            let mut table = tx.open_table(TURNS).ctx(context)?;
            // In key order, so that each leaf page is found once and filled in turn.
            let mut sessions: Vec<_> = set.sessions.iter().collect();
            sessions.sort_unstable_by_key(|(session, _)| **session);
            for (session, turns) in sessions {
                for (turn_no, bytes) in turns.iter() {
                    table.insert((session, *turn_no), &bytes[..]).ctx(context)?;
                }
            }
        }
        if !set.audit.is_empty() || !audit.is_empty() {
            let mut table = tx.open_table(AUDIT).ctx(context)?;
            for (seq, record) in set.audit().chain(audit.iter().map(|(seq, record)| (*seq, &record[..]))) {
                table.insert(seq, record).ctx(context)?;
            }
        }
        Ok(())
    }

    /// Empties the set, once the checkpoint numbered `checkpoint` put it in the tables (or, at
    /// the writer's start, names the checkpoint the journal starts after).
    pub(crate) fn clear(&self, checkpoint: u64) {
        *lock(&self.current) = Arc::new(RecentSet { after: checkpoint, ..RecentSet::default() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Arc<[u8]> {
        text.as_bytes().into()
    }

    #[test]
    fn changes_apply_in_order_and_leave_views_taken_before_untouched() {
        let recent = RecentWrites::default();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        recent.publish(&[TurnChange::Put(a, 1, bytes("a1")), TurnChange::Put(a, 2, bytes("a2"))], vec![(1, vec![1])]);
        let before = recent.current();
        recent.publish(
            &[
                TurnChange::Put(b, 1, bytes("b1")),
                TurnChange::Cut(a, 1),
                TurnChange::Put(a, 2, bytes("a2 again")),
                TurnChange::Put(a, 3, bytes("a3")),
                TurnChange::Cut(a, 2),
            ],
            vec![(2, vec![2]), (3, vec![3])],
        );
        let now = recent.current();
        assert_eq!(now.turn(&a, 2), Some(&b"a2 again"[..]));
        assert_eq!(now.turn(&a, 3), None, "cut after it was put");
        assert_eq!(now.turns_from(&a, 0).map(|(n, _)| n).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(now.turns_from(&b, 1).collect::<Vec<_>>(), vec![(1, &b"b1"[..])]);
        assert_eq!(now.audit().map(|(seq, _)| seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(now.last_audit(), Some((3, &[3u8][..])));
        // A view holds the set it took, whatever the writer publishes later.
        assert_eq!(before.turn(&a, 2), Some(&b"a2"[..]));
        assert_eq!(before.turn(&b, 1), None);
        assert_eq!(before.last_audit(), Some((1, &[1u8][..])));
        recent.clear(9);
        assert_eq!(recent.current().after(), 9);
        assert!(recent.current().is_empty());
        assert_eq!(recent.current().turns_from(&a, 0).count(), 0);
        assert_eq!(recent.current().last_audit(), None);
        assert_eq!(before.turns_from(&a, 0).count(), 2);
    }
}
