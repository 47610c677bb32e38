//! Collaboration sessions on a running node: the owner's decisions (`owner.rs`), what inbound
//! proposals, consents, rejections, turns and closes may do (`inbound.rs`), our identity agent
//! speaking its turns (`speaker.rs`), the owners' verified rosters every turn is checked against
//! (`rosters.rs`), owner policies (`policy.rs`) and what the owner sees (`view.rs`).
//!
//! The protocol's [`Session`] state machine is the authority on every input; this module keeps
//! one per session in memory (restored from the database at start) behind its own lock. Whoever
//! changes a session (an inbound message, an owner decision, our agent's turn) holds that lock
//! from validation until the change is durable, so inputs of one session are applied one at a
//! time and the memory never runs ahead of the disk for long: a failed commit poisons the
//! database writer, so nothing built on the unsaved state can be committed after it.

mod inbound;
mod owner;
mod policy;
mod rosters;
mod speaker;
mod view;

use std::collections::HashMap;
use std::sync::Arc;

use clawnet_crypto::{Hash32, OwnerId, Signed, Timestamp};
use clawnet_protocol::SessionId;
use clawnet_protocol::session::{self, Close, Rejection, Session, StoredSession};
use clawnet_storage::contacts::ContactRecord;
use clawnet_storage::sessions::SessionRecord;
use clawnet_storage::{NodeDb, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use policy::{OwnerPolicy, PolicyDirection, SessionSettings};
use rosters::RosterCache;
use speaker::Transcript;
pub use view::{SessionDetail, SessionView, TurnView};

use crate::error::NodeError;

/// Something the owner should see as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    /// A decision waits for the owner.
    ApprovalPending {
        /// The approval.
        id: String,
        /// What is asked.
        summary: String,
    },
    /// A decision was taken (by the owner or a policy).
    ApprovalDecided {
        /// The approval.
        id: String,
        /// `approved` or `rejected[: reason]`.
        status: String,
        /// Who decided: `owner` or the policy.
        by: String,
    },
    /// Both owners consented: the session runs.
    SessionStarted {
        /// The session.
        session: String,
    },
    /// A turn was accepted (ours or theirs).
    Turn {
        /// The session.
        session: String,
        /// Its number.
        turn_no: u32,
        /// Who spoke (identity tag or contact name).
        speaker: String,
        /// What was said.
        text: String,
    },
    /// Our identity agent consulted the manager during its turn: the advice, for the owner's
    /// eyes (the agent saw it unless withheld; it never goes on the wire by itself).
    Advice {
        /// The session.
        session: String,
        /// The advice as the manager gave it.
        text: String,
        /// Whether it was withheld from the agent (it quoted other identities' memory).
        withheld: bool,
    },
    /// The session ended.
    SessionClosed {
        /// The session.
        session: String,
        /// Why.
        reason: String,
    },
}

/// One session's state, locked while it changes.
pub(crate) type SessionSlot = Arc<Mutex<Session>>;

/// What does not change about a session, readable without its lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionFacts {
    pub(crate) parent: Option<SessionId>,
    pub(crate) initiator: OwnerId,
    pub(crate) counterpart: OwnerId,
}

#[derive(Debug, Default)]
struct Book {
    slots: HashMap<SessionId, (SessionSlot, SessionFacts)>,
    by_proposal: HashMap<Hash32, SessionId>,
}

/// Every session this node takes part in.
#[derive(Debug)]
pub(crate) struct SessionBook {
    book: std::sync::Mutex<Book>,
    /// Serializes owner decisions (and policies), so one approval is decided once.
    pub(crate) decisions: Mutex<()>,
    /// Sessions whose turn our agent is composing right now.
    speaking: std::sync::Mutex<std::collections::HashSet<SessionId>>,
    /// The owners' verified identity rosters the sessions are checked against.
    pub(crate) rosters: RosterCache,
    /// The transcripts our agent last read, by session.
    transcripts: std::sync::Mutex<HashMap<SessionId, Transcript>>,
}

/// Transcripts kept at most; past it they are all dropped (and read again when needed): those
/// of sessions that ended stay behind until then.
const MAX_TRANSCRIPTS: usize = 256;

impl SessionBook {
    /// Restores every stored session. One that no longer verifies is left out and logged.
    pub(crate) fn load(db: &NodeDb) -> Result<SessionBook, NodeError> {
        let me = db.info().owner;
        let view = db.read()?;
        let mut book = Book::default();
        for id in view.session_ids()? {
            let Some(record) = view.session(&id)? else { continue };
            let turns = view.turns(&id)?;
            match restore(&record, &turns) {
                Ok(session) => {
                    let facts = facts_of(&session, &me);
                    book.by_proposal.insert(session.proposal_hash(), id);
                    book.slots.insert(id, (Arc::new(Mutex::new(session)), facts));
                }
                Err(err) => tracing::error!(session = %id, %err, "a stored session does not verify; it is left out"),
            }
        }
        Ok(SessionBook {
            book: std::sync::Mutex::new(book),
            decisions: Mutex::new(()),
            speaking: std::sync::Mutex::new(Default::default()),
            rosters: RosterCache::default(),
            transcripts: std::sync::Mutex::default(),
        })
    }

    /// Adds a session this node just accepted or created.
    pub(crate) fn insert(&self, session: Session, me: &OwnerId) -> SessionSlot {
        let id = session.id();
        let facts = facts_of(&session, me);
        let mut book = lock(&self.book);
        book.by_proposal.insert(session.proposal_hash(), id);
        let slot = Arc::new(Mutex::new(session));
        book.slots.insert(id, (slot.clone(), facts));
        slot
    }

    /// Whether `id` is known.
    pub(crate) fn contains(&self, id: &SessionId) -> bool {
        lock(&self.book).slots.contains_key(id)
    }

    /// The session `id`.
    pub(crate) fn get(&self, id: &SessionId) -> Option<(SessionSlot, SessionFacts)> {
        lock(&self.book).slots.get(id).cloned()
    }

    /// The session whose proposal hashes to `hash`.
    pub(crate) fn by_proposal(&self, hash: &Hash32) -> Option<(SessionSlot, SessionFacts)> {
        let book = lock(&self.book);
        book.by_proposal.get(hash).and_then(|id| book.slots.get(id)).cloned()
    }

    /// Every session id with its facts.
    pub(crate) fn all(&self) -> Vec<(SessionId, SessionSlot, SessionFacts)> {
        lock(&self.book).slots.iter().map(|(id, (slot, facts))| (*id, slot.clone(), *facts)).collect()
    }

    /// Sessions opened from inside `parent` by `initiator`.
    pub(crate) fn children(&self, parent: &SessionId, initiator: &OwnerId) -> Vec<(SessionId, SessionSlot)> {
        lock(&self.book)
            .slots
            .iter()
            .filter(|(_, (_, facts))| facts.parent == Some(*parent) && facts.initiator == *initiator)
            .map(|(id, (slot, _))| (*id, slot.clone()))
            .collect()
    }

    /// Marks `id` as being spoken for; false if it already is.
    fn start_speaking(&self, id: SessionId) -> bool {
        lock(&self.speaking).insert(id)
    }

    fn done_speaking(&self, id: &SessionId) {
        lock(&self.speaking).remove(id);
    }

    /// The transcript of `id` our agent last read (empty if none), taken out while it speaks
    /// (one composer per session, see [`SessionBook::start_speaking`]).
    fn take_transcript(&self, id: &SessionId) -> Transcript {
        lock(&self.transcripts).remove(id).unwrap_or_default()
    }

    /// Adds turn `turn_no` of `id`, just applied, to the transcript kept for our agent, if one
    /// is kept and this is its next turn (otherwise the agent reads it from the database).
    pub(crate) fn note_turn(&self, id: &SessionId, turn_no: u32, signed: &Signed<session::Turn>, turn: &session::Turn) {
        if let Some(transcript) = lock(&self.transcripts).get_mut(id) {
            transcript.push(turn_no, signed, turn);
        }
    }

    fn keep_transcript(&self, id: SessionId, transcript: Transcript) {
        let mut kept = lock(&self.transcripts);
        if kept.len() >= MAX_TRANSCRIPTS {
            kept.clear();
        }
        kept.insert(id, transcript);
    }
}

/// Locks a session for a change that lasts until it is durable.
pub(crate) async fn lock_session(slot: &SessionSlot) -> OwnedMutexGuard<Session> {
    slot.clone().lock_owned().await
}

fn facts_of(session: &Session, me: &OwnerId) -> SessionFacts {
    let proposal = session.proposal();
    let counterpart = if proposal.initiator.owner == *me { proposal.target.owner } else { proposal.initiator.owner };
    SessionFacts { parent: proposal.parent, initiator: proposal.initiator.owner, counterpart }
}

/// Rebuilds a session from its stored record and transcript.
pub(crate) fn restore(
    record: &SessionRecord,
    turns: &[Signed<clawnet_protocol::session::Turn>],
) -> Result<Session, clawnet_protocol::session::SessionError> {
    Session::restore(StoredSession {
        proposal: &record.proposal,
        initiator_consent: record.initiator_consent.as_ref(),
        target_consent: record.target_consent.as_ref(),
        rejected: record.rejection.is_some(),
        turns,
        close: record.close.as_ref(),
    })
}

/// The stored record of `session`, with the rejection or close that ended it.
pub(crate) fn record_of(
    session: &Session,
    rejection: Option<Signed<Rejection>>,
    close: Option<Signed<Close>>,
) -> SessionRecord {
    let proposal = session.proposal();
    SessionRecord {
        proposal: proposal.signed().clone(),
        initiator_consent: session.consent_of(&proposal.initiator.owner).map(|c| c.signed().clone()),
        target_consent: session.consent_of(&proposal.target.owner).map(|c| c.signed().clone()),
        rejection,
        close,
        updated_at: Timestamp::now(),
    }
}

/// The contact record of `owner`.
pub(crate) fn contact_of(db: &NodeDb, owner: &OwnerId) -> Result<Option<ContactRecord>, StoreError> {
    db.contact(owner)
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
