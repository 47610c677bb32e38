//! The turns stored since the last checkpoint: in memory and in the commit journal, not yet in
//! the turns table.
//!
//! The table is keyed by (session, turn number), so under load a batch's turns each land in the
//! leaf page of their own session, and redb copies, checksums and writes every such page at
//! every commit: with 64 sessions at once that was ~6% of a turn's CPU, for pages rewritten
//! again a few batches later. So a turn is kept here, made durable by its commit's journal
//! record like any write, and a checkpoint (the durable redb commit after which the journal
//! starts again) copies the turns kept into the table, each session's together, and empties
//! this set. After a crash, recovery replays the journal's turns into the table.
//!
//! Readers see the table and this set together ([`crate::ReadView`]), without a lock between
//! them and the writer:
//! - a batch publishes its turns here once its journal record is written (so once durable,
//!   unless the whole batch is durable-later) and before redb commits it, and a turn leaves the
//!   set only after the checkpoint that put it in the table committed;
//! - a view takes the set, then its redb snapshot, then looks at the set again: if the set
//!   changed meanwhile (a batch published, or a checkpoint emptied it), it starts again.
//!
//! So the batches a view's snapshot holds had published their turns before it took the set: it
//! finds every one of their turns, in the set or in the table. It may also find the turns of a
//! batch whose other records its snapshot does not hold yet (published, not yet committed). A
//! checkpoint writes the bytes the set holds, so a turn found in both is the same turn.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use redb::WriteTransaction;

use crate::error::{DbResultExt, StoreError};
use crate::schema::TURNS;
use crate::writer::lock;

/// A session id, as the turns table keys it.
pub(crate) type SessionKey = [u8; 16];

/// One session's recent turns: turn number → the stored turn, encoded.
type Turns = BTreeMap<u32, Arc<[u8]>>;

/// What a transaction did to recent turns, in order, applied once it commits.
#[derive(Debug, Clone)]
pub(crate) enum TurnChange {
    /// Turn `.1` of session `.0` stored as `.2`.
    Put(SessionKey, u32, Arc<[u8]>),
    /// Every turn of session `.0` after turn `.1` removed (a close cut the transcript back).
    Cut(SessionKey, u32),
}

/// The recent turns at one moment: what a view reads besides the table.
#[derive(Debug, Default, Clone)]
pub(crate) struct RecentSet {
    sessions: HashMap<SessionKey, Arc<Turns>>,
}

impl RecentSet {
    /// Turn `turn_no` of `session`, if it is recent.
    pub(crate) fn get(&self, session: &SessionKey, turn_no: u32) -> Option<&[u8]> {
        self.sessions.get(session)?.get(&turn_no).map(|bytes| &bytes[..])
    }

    /// The recent turns of `session` numbered `first` or later, in order.
    pub(crate) fn from(&self, session: &SessionKey, first: u32) -> impl Iterator<Item = (u32, &[u8])> {
        self.sessions.get(session).into_iter().flat_map(move |turns| turns.range(first..)).map(|(n, b)| (*n, &b[..]))
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

/// The turns stored since the last checkpoint, as the last commit left them.
#[derive(Debug, Default)]
pub(crate) struct RecentTurns {
    current: Mutex<Arc<RecentSet>>,
}

impl RecentTurns {
    /// The set as it is now (see the module docs for when a view takes it).
    pub(crate) fn current(&self) -> Arc<RecentSet> {
        lock(&self.current).clone()
    }

    /// The set with `changes` applied: what a transaction that made them sees.
    pub(crate) fn with(&self, changes: &[TurnChange]) -> RecentSet {
        let mut set = (*self.current()).clone();
        set.apply(changes);
        set
    }

    /// Publishes what a batch did (see the module docs for when). Only the committing thread
    /// calls this, so nothing changes the set between its read and its replacement.
    pub(crate) fn apply(&self, changes: &[TurnChange]) {
        if changes.is_empty() {
            return;
        }
        let set = Arc::new(self.with(changes));
        *lock(&self.current) = set;
    }

    /// Writes every recent turn, with `changes` (of the same, uncommitted transaction) applied,
    /// into `tx`'s turns table, for a checkpoint; [`RecentTurns::clear`] once `tx` committed.
    pub(crate) fn copy_into(&self, tx: &WriteTransaction, changes: &[TurnChange]) -> Result<(), StoreError> {
        let context = "copying recent turns into the turns table";
        let set = self.with(changes);
        if set.sessions.is_empty() {
            return Ok(());
        }
        // Not through the journal: the checkpoint commits durably, and the journal starts again.
        let mut table = tx.open_table(TURNS).ctx(context)?;
        // In key order, so that each leaf page is found once and filled in turn.
        let mut sessions: Vec<_> = set.sessions.iter().collect();
        sessions.sort_unstable_by_key(|(session, _)| **session);
        for (session, turns) in sessions {
            for (turn_no, bytes) in turns.iter() {
                table.insert((session, *turn_no), &bytes[..]).ctx(context)?;
            }
        }
        Ok(())
    }

    /// Empties the set, once a checkpoint put its turns in the table.
    pub(crate) fn clear(&self) {
        *lock(&self.current) = Arc::default();
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
        let recent = RecentTurns::default();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        recent.apply(&[TurnChange::Put(a, 1, bytes("a1")), TurnChange::Put(a, 2, bytes("a2"))]);
        let before = recent.current();
        recent.apply(&[
            TurnChange::Put(b, 1, bytes("b1")),
            TurnChange::Cut(a, 1),
            TurnChange::Put(a, 2, bytes("a2 again")),
            TurnChange::Put(a, 3, bytes("a3")),
            TurnChange::Cut(a, 2),
        ]);
        let now = recent.current();
        assert_eq!(now.get(&a, 2), Some(&b"a2 again"[..]));
        assert_eq!(now.get(&a, 3), None, "cut after it was put");
        assert_eq!(now.from(&a, 0).map(|(n, _)| n).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(now.from(&b, 1).collect::<Vec<_>>(), vec![(1, &b"b1"[..])]);
        // A view holds the set it took, whatever the writer publishes later.
        assert_eq!(before.get(&a, 2), Some(&b"a2"[..]));
        assert_eq!(before.get(&b, 1), None);
        recent.clear();
        assert_eq!(recent.current().from(&a, 0).count(), 0);
        assert_eq!(before.from(&a, 0).count(), 2);
    }
}
