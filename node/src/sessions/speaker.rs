//! Our identity agent speaking in a session. When the next turn is ours (the grant arrived,
//! the counterpart spoke, a child session ended, the node restarted), the agent composes a reply
//! from the transcript with the role prompt injected fresh and its tools; the reply passes the
//! disclosure guard, is signed by the identity key, checked by our own state machine like any
//! inbound turn, and committed with its audit entry and its outbox entry. The turn that ends the
//! session (an end marker or the last granted turn) is committed together with our owner's
//! signed close.

use std::sync::Arc;
use std::time::Duration;

use clawnet_crypto::{Hash32, Signed, Timestamp};
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::session::{CloseReason, EndMarker, Phase, Proposal, Turn, turn_hash};
use clawnet_protocol::wire::WireMessage;
use clawnet_storage::Change;
use clawnet_storage::ReadView;
use clawnet_storage::approvals::ApprovalRequest;
use clawnet_storage::replay::NonceCheck;

use super::inbound::{describe_close, is_open};
use super::{NodeEvent, contact_of, lock_session, record_of};
use crate::agents::Message;
use crate::agents::conversation::NODE_NOTE;
use crate::agents::runtime::{Agent, Delivery};
use crate::agents::tools::{AgentEvent, Audience, REQUEST_COLLABORATION};
use crate::delivery::enqueue;
use crate::error::NodeError;
use crate::node::Node;

/// What one attempt to speak did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spoke {
    /// A turn went out.
    Turn,
    /// Nothing to say now (not our turn, waiting for the owner or a child session).
    Idle,
}

impl Node {
    /// Lets our agent speak in session `id` if the next turn is ours (in the background).
    pub(crate) fn speak(self: &Arc<Self>, id: SessionId) {
        let node = self.clone();
        self.spawn(async move {
            loop {
                // One composer per session; whoever holds it re-checks after speaking, so a turn
                // that arrived meanwhile is answered.
                if !node.sessions.start_speaking(id) {
                    return;
                }
                let spoke = node.speak_once(id).await;
                node.sessions.done_speaking(&id);
                match spoke {
                    Ok(Spoke::Turn) => continue,
                    Ok(Spoke::Idle) => return,
                    Err(err) => {
                        tracing::warn!(session = %id, %err, "our agent could not take its turn");
                        let audit = AuditDraft::new(
                            Actor::Node,
                            "session.turn-failed",
                            format!("session {}", id.short()),
                            "agent turn",
                            Outcome::Failed(err.to_string()),
                        );
                        let _ = node.commit(Change::audit(audit)).await;
                        return;
                    }
                }
            }
        });
    }

    async fn speak_once(self: &Arc<Self>, id: SessionId) -> Result<Spoke, NodeError> {
        let Some((slot, facts)) = self.sessions.get(&id) else { return Ok(Spoke::Idle) };
        let me = self.home.owner();
        let (proposal, turns_before, last_hash) = {
            let session = slot.lock().await;
            let Some(party) = session.party_of(&me) else { return Ok(Spoke::Idle) };
            let granted = u32::from(session.proposal().max_turns);
            if session.phase() != Phase::Active
                || session.turns() >= granted
                || session.speaker_of(session.turns() + 1) != party.identity
            {
                // Over, not our turn, or the last granted turn was theirs (their close follows).
                return Ok(Spoke::Idle);
            }
            (session.proposal().clone(), session.turns(), session.last_hash())
        };
        if self.waiting_on_children_or_owner(&id).await? {
            return Ok(Spoke::Idle);
        }
        let identity = self
            .home
            .db()
            .identity(&if proposal.initiator.owner == me {
                proposal.initiator.identity
            } else {
                proposal.target.identity
            })?
            .ok_or_else(|| NodeError::Session("our identity in this session no longer exists".into()))?;
        let contact = contact_of(self.home.db(), &facts.counterpart)?
            .ok_or_else(|| NodeError::Session("the other owner is no longer a contact".into()))?;
        let history = self.history(&proposal, &id, &contact.display_name, (turns_before, last_hash))?;
        let agent = Agent::identity(self.home.clone(), identity.tag.as_str(), self.brain.clone())?
            .with_extension(self.file_tools());
        let audience = Audience::Counterpart { name: contact.display_name.clone(), session: Some(id) };
        // The owner sees the manager's advice as it is given; nothing else of the agent's
        // thinking leaves it.
        let mut on_event = |event: AgentEvent| {
            if let AgentEvent::Advice { text, withheld } = event {
                self.notify(NodeEvent::Advice { session: id.to_hex(), text, withheld });
            }
        };
        let response =
            agent.respond(history, &audience, &mut on_event).await.map_err(|err| NodeError::Agent(err.to_string()))?;
        // The agent asked for another contact: its turn here waits for that session (the tool
        // may have refused, hence the look at what is pending).
        let asked = response.transcript.iter().any(|m| m.tool_calls.iter().any(|c| c.name == REQUEST_COLLABORATION));
        if asked && self.waiting_on_children_or_owner(&id).await? {
            self.apply_policies().await;
            return Ok(Spoke::Idle);
        }
        if let Delivery::Held { approval, .. } = &response.delivery {
            self.notify(NodeEvent::ApprovalPending {
                id: approval.to_hex(),
                summary: format!("a reply to {} was held by the disclosure guard", contact.display_name),
            });
            return Ok(Spoke::Idle);
        }
        let spoke = self.say_after(id, turns_before, response.text, response.end, "agent turn").await?;
        Ok(spoke)
    }

    /// Says `text` as our next turn in `id` (an approved held reply).
    pub(crate) async fn say(
        self: &Arc<Self>,
        id: SessionId,
        text: String,
        end: Option<EndMarker>,
        basis: &str,
    ) -> Result<(), NodeError> {
        let (slot, _) =
            self.sessions.get(&id).ok_or_else(|| NodeError::Session(format!("session {} is not known", id.short())))?;
        let turns = slot.lock().await.turns();
        match self.say_after(id, turns, text, end, basis).await? {
            Spoke::Turn => Ok(()),
            Spoke::Idle => Err(NodeError::Session(format!("session {} does not take our turn now", id.short()))),
        }
    }

    /// Signs, checks and commits our turn, if the session is still where it was after
    /// `turns_before` turns (the owner may have stopped it while the agent thought).
    async fn say_after(
        self: &Arc<Self>,
        id: SessionId,
        turns_before: u32,
        text: String,
        end: Option<EndMarker>,
        basis: &str,
    ) -> Result<Spoke, NodeError> {
        let Some((slot, facts)) = self.sessions.get(&id) else { return Ok(Spoke::Idle) };
        let contact = contact_of(self.home.db(), &facts.counterpart)?
            .ok_or_else(|| NodeError::Session("the other owner is no longer a contact".into()))?;
        let mut session = lock_session(&slot).await;
        let me = self.home.owner();
        let Some(party) = session.party_of(&me) else { return Ok(Spoke::Idle) };
        let turn_no = session.turns() + 1;
        if session.phase() != Phase::Active
            || session.turns() != turns_before
            || session.speaker_of(turn_no) != party.identity
        {
            return Ok(Spoke::Idle);
        }
        let turn = Turn {
            session: id,
            turn_no,
            prev: session.last_hash(),
            speaker: party.identity,
            text,
            end,
            sent_at: Timestamp::now(),
        };
        let text = turn.text.clone();
        let verified = self
            .home
            .sign_verified_as_identity(&party.identity, turn)
            .ok_or_else(|| NodeError::Session("this identity's key is not on this node".into()))?;
        let ours = self.sessions.rosters.own(&self.home)?;
        let theirs = self.sessions.rosters.contact(&contact);
        let (initiator, target) = if facts.initiator == me { (&ours, &theirs) } else { (&theirs, &ours) };
        let rules = self.session_settings.rules();
        let now = Timestamp::now();
        let accepted = session
            .apply_own_turn(&verified, initiator, target, &rules, now)
            .map_err(|err| NodeError::Session(format!("our own turn does not fit the session: {err}")))?;
        let signed = verified.signed().clone();
        self.sessions.note_turn(&id, turn_no, &signed, &verified);
        let reason = match (accepted.end, accepted.limit_reached) {
            (Some(marker), _) => Some(CloseReason::Ended(marker)),
            (None, true) => Some(CloseReason::MaxTurns),
            (None, false) => None,
        };
        let mut messages = vec![WireMessage::Turn(signed.clone())];
        let mut record = None;
        let mut nonces = Vec::new();
        let mut change_audits = vec![AuditDraft::new(
            Actor::Identity(party.identity),
            "session.turn",
            format!(
                "session {} turn {turn_no} to {} ({})",
                id.short(),
                contact.display_name,
                &accepted.hash.to_hex()[..12]
            ),
            basis,
            Outcome::Success,
        )];
        if let Some(reason) = reason {
            let close = self.owner_close(&session, reason);
            let view = self.home.db().read()?;
            let mut ledger = NonceCheck::new(&view);
            let (close, _) = session
                .apply_own_close(close, &rules, now, &mut ledger)
                .map_err(|err| NodeError::Session(err.to_string()))?;
            let close = close.signed().clone();
            nonces = ledger.into_pending();
            drop(view);
            record = Some(record_of(&session, None, Some(close.clone())));
            messages.push(WireMessage::Close(close));
            change_audits.push(AuditDraft::new(
                Actor::Owner,
                "session.close",
                format!(
                    "session {} with {}: {} after {turn_no} turns",
                    id.short(),
                    contact.display_name,
                    describe_close(reason)
                ),
                "owner policy: close when the agents end or the turn limit is reached",
                Outcome::Success,
            ));
        }
        let device = contact.device_key;
        let change = change_audits.into_iter().fold(
            Change::new(move |txn| {
                txn.put_turn(&id, turn_no, &signed)?;
                if let Some(record) = &record {
                    txn.put_session(&id, record)?;
                    txn.record_nonces(&nonces)?;
                }
                // Queued a millisecond apart, so the outbox sends the turn before the close that
                // follows it (the receiver would otherwise answer the close "try later").
                for (index, message) in messages.iter().enumerate() {
                    enqueue(txn, device, message, now.plus(Duration::from_millis(index as u64)))?;
                }
                Ok(())
            }),
            Change::with_audit,
        );
        self.commit(change).await?;
        drop(session);
        self.outbox.wake();
        self.notify(NodeEvent::Turn { session: id.to_hex(), turn_no, speaker: "us".into(), text });
        if let Some(reason) = reason {
            self.notify(NodeEvent::SessionClosed { session: id.to_hex(), reason: describe_close(reason) });
            if let Some(parent) = facts.parent.filter(|_| facts.initiator == me) {
                self.speak(parent);
            }
            return Ok(Spoke::Idle);
        }
        Ok(Spoke::Turn)
    }

    /// Whether our turn in `id` waits: for a session our agent opened from it, or for an owner
    /// decision our agent asked for in it (a collaboration, a held reply).
    async fn waiting_on_children_or_owner(&self, id: &SessionId) -> Result<bool, NodeError> {
        for (_, slot) in self.sessions.children(id, &self.home.owner()) {
            if is_open(slot.lock().await.phase()) {
                return Ok(true);
            }
        }
        let pending = self.home.db().pending_approvals()?;
        Ok(pending.iter().any(|a| match &a.request {
            ApprovalRequest::Collaboration { parent, .. } => parent.as_ref() == Some(id),
            ApprovalRequest::HeldMessage { .. } => a.session.as_ref() == Some(id),
            ApprovalRequest::SessionInvitation { .. } => false,
        }))
    }

    /// The conversation so far as our agent sees it: its own turns as its replies, the
    /// counterpart's as what it was told, and a note from the node for each session it opened
    /// from this one that has ended. `applied` is the session's count of turns and the hash of
    /// its last one: a kept transcript that ends there is read from memory.
    fn history(
        &self,
        proposal: &Proposal,
        id: &SessionId,
        counterpart: &str,
        applied: (u32, Hash32),
    ) -> Result<Vec<Message>, NodeError> {
        let me = self.home.owner();
        let mut transcript = self.sessions.take_transcript(id);
        let children = self.sessions.children(id, &me);
        let view = if transcript.ends_at(applied) && children.is_empty() { None } else { Some(self.home.db().read()?) };
        let mut notes: Vec<(Timestamp, String)> = Vec::new();
        if let Some(view) = &view {
            transcript.catch_up(view, id)?;
            for (child, _) in children {
                let Some(record) = view.session(&child)? else { continue };
                notes.push(child_note(&record, &view.turns(&child)?, view)?);
            }
        }
        notes.sort_by_key(|(at, _)| *at);
        let mut history = Vec::with_capacity(transcript.turns.len() + notes.len() + 1);
        if proposal.initiator.owner == me {
            history.push(Message::user(format!(
                "The session with {counterpart} is open.\nPurpose: {}\nYou speak first.",
                proposal.purpose
            )));
        }
        let mut notes = notes.into_iter().peekable();
        let ours = if proposal.initiator.owner == me { proposal.initiator.identity } else { proposal.target.identity };
        for turn in &transcript.turns {
            while let Some((_, note)) = notes.next_if(|(at, _)| *at <= turn.sent_at) {
                history.push(Message::user(note));
            }
            let text = turn.text.clone();
            history.push(if turn.speaker == ours { Message::assistant(text) } else { Message::user(text) });
        }
        history.extend(notes.map(|(_, note)| Message::user(note)));
        self.sessions.keep_transcript(*id, transcript);
        Ok(history)
    }
}

/// A session's transcript as our agent last read it, decoded, with its last turn as stored: at
/// its next turn the agent reads only the turns after it, not the whole transcript again.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    turns: Vec<Turn>,
    last: Option<Signed<Turn>>,
}

impl Transcript {
    /// Whether it holds exactly the turns of a session that `applied` them (their count, and
    /// the hash of the last one, or of the grant before any).
    fn ends_at(&self, (turns, last_hash): (u32, Hash32)) -> bool {
        match &self.last {
            Some(last) => self.turns.len() == turns as usize && turn_hash(last) == last_hash,
            None => turns == 0,
        }
    }

    /// Adds turn `turn_no`, just applied to the session, if it is the next one.
    pub(crate) fn push(&mut self, turn_no: u32, signed: &Signed<Turn>, turn: &Turn) {
        if self.turns.len() + 1 == turn_no as usize {
            self.turns.push(turn.clone());
            self.last = Some(signed.clone());
        }
    }

    /// Brings it up to what `view` holds for session `id`.
    fn catch_up(&mut self, view: &ReadView, id: &SessionId) -> Result<(), NodeError> {
        let kept = u32::try_from(self.turns.len()).unwrap_or(u32::MAX);
        // Turns are numbered from 1: this reads the last kept turn again, then what follows.
        let mut rows = view.turns_from(id, kept)?;
        if let Some(last) = &self.last {
            // What was kept holds only if its last turn is still stored as it was: a close can
            // cut a transcript back, and later turns could then replace the ones kept.
            if rows.first().is_some_and(|(number, turn)| *number == kept && turn == last) {
                rows.remove(0);
            } else {
                *self = Transcript::default();
                rows = view.turns_from(id, 0)?;
            }
        }
        for (_, signed) in rows {
            self.turns.push(signed.decode_stored().map_err(|err| NodeError::Session(err.to_string()))?);
            self.last = Some(signed);
        }
        Ok(())
    }
}

/// What our agent learns from a session it opened from inside another: the other party's words
/// (it decides what to relay), dated when that session ended.
fn child_note(
    record: &clawnet_storage::sessions::SessionRecord,
    turns: &[Signed<Turn>],
    view: &clawnet_storage::ReadView,
) -> Result<(Timestamp, String), NodeError> {
    let proposal = record.proposal.decode_unverified().map_err(|err| NodeError::Session(err.to_string()))?;
    let name = view.contact(&proposal.target.owner)?.map_or_else(|| "the other contact".to_owned(), |c| c.display_name);
    let theirs: Vec<String> = turns
        .iter()
        .filter_map(|t| t.decode_unverified().ok())
        .filter(|t| t.speaker == proposal.target.identity)
        .map(|t| t.text)
        .collect();
    let (at, outcome) = match (&record.close, &record.rejection) {
        (Some(close), _) => {
            let close = close.decode_unverified().map_err(|err| NodeError::Session(err.to_string()))?;
            (close.closed_at, describe_close(close.reason))
        }
        (None, Some(rejection)) => {
            let rejection = rejection.decode_unverified().map_err(|err| NodeError::Session(err.to_string()))?;
            (rejection.issued_at, format!("declined: {}", rejection.reason))
        }
        (None, None) => (proposal.created_at, "still open".into()),
    };
    let said = if theirs.is_empty() { "nothing".to_owned() } else { theirs.join(" / ") };
    Ok((
        at,
        format!(
            "{NODE_NOTE} your session with {name} about \"{}\" ended ({outcome}). {name} said: {said}]",
            proposal.purpose
        ),
    ))
}

#[cfg(test)]
mod tests {
    use clawnet_crypto::{Hash32, SigningSecret};
    use clawnet_protocol::testkit::TestOwner;
    use clawnet_storage::{Change, Genesis, NodeDb};

    use super::*;

    fn put(db: &NodeDb, id: SessionId, turns: Vec<Signed<Turn>>) {
        db.commit(Change::new(move |txn| {
            for turn in &turns {
                txn.put_turn(&id, turn.decode_stored().unwrap().turn_no, turn)?;
            }
            Ok(())
        }))
        .unwrap();
    }

    fn texts(transcript: &Transcript) -> Vec<&str> {
        transcript.turns.iter().map(|turn| turn.text.as_str()).collect()
    }

    #[test]
    fn turns_pushed_as_they_are_applied_keep_a_transcript_current_without_reading() {
        let alice = TestOwner::new(1, &["work"]);
        let id = SessionId([7; 16]);
        let turn = |n: u32, text: &str| alice.turn("work", id, n, Hash32([n as u8; 32]), text, None);
        let (one, two) = (turn(1, "one"), turn(2, "two"));
        let mut transcript = Transcript::default();
        assert!(transcript.ends_at((0, Hash32([9; 32]))), "no turn yet: nothing to read");
        assert!(!transcript.ends_at((1, turn_hash(&one))));
        transcript.push(2, &two, &two.decode_stored().unwrap());
        assert!(texts(&transcript).is_empty(), "a turn that is not the next one is left to the database");
        transcript.push(1, &one, &one.decode_stored().unwrap());
        transcript.push(2, &two, &two.decode_stored().unwrap());
        assert_eq!(texts(&transcript), ["one", "two"]);
        assert!(transcript.ends_at((2, turn_hash(&two))));
        assert!(!transcript.ends_at((2, turn_hash(&one))), "the session's last turn is another");
        assert!(!transcript.ends_at((3, turn_hash(&two))), "the session has a turn it lacks");
    }

    #[test]
    fn a_kept_transcript_reads_only_new_turns_and_notices_a_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let alice = TestOwner::new(1, &["work"]);
        let genesis = Genesis {
            owner: alice.id(),
            device_cert: alice.device_cert(),
            node_name: "test".into(),
            keystore: Vec::new(),
        };
        let db =
            NodeDb::create(&dir.path().join("node.redb"), genesis, SigningSecret::from_bytes(&alice.device.to_bytes()))
                .unwrap();
        let id = SessionId([7; 16]);
        let turn = |n: u32, text: &str| alice.turn("work", id, n, Hash32([n as u8; 32]), text, None);
        put(&db, id, vec![turn(1, "one"), turn(2, "two")]);

        let mut transcript = Transcript::default();
        transcript.catch_up(&db.read().unwrap(), &id).unwrap();
        assert_eq!(texts(&transcript), ["one", "two"]);
        put(&db, id, vec![turn(3, "three")]);
        transcript.catch_up(&db.read().unwrap(), &id).unwrap();
        assert_eq!(texts(&transcript), ["one", "two", "three"]);
        transcript.catch_up(&db.read().unwrap(), &id).unwrap();
        assert_eq!(texts(&transcript), ["one", "two", "three"], "nothing new, nothing added");

        // A close cut the transcript back to one turn, and others took the places of those kept.
        db.commit(Change::new(move |txn| txn.truncate_turns(&id, 1))).unwrap();
        put(&db, id, vec![turn(2, "two again"), turn(3, "three again"), turn(4, "four")]);
        transcript.catch_up(&db.read().unwrap(), &id).unwrap();
        assert_eq!(texts(&transcript), ["one", "two again", "three again", "four"]);
        // Cut back with nothing after it.
        db.commit(Change::new(move |txn| txn.truncate_turns(&id, 2))).unwrap();
        transcript.catch_up(&db.read().unwrap(), &id).unwrap();
        assert_eq!(texts(&transcript), ["one", "two again"]);
    }
}
