//! What a contact's session messages may do to this node. Each is checked against the sending
//! contact (it must be a party, and the identity it targets must be the one assigned to it),
//! then against the session state machine with the persistent replay cache; refusals that are
//! attacks become security events (`security.session`). Accepted messages are committed with
//! their audit entry while the session's lock is held.

use std::sync::Arc;

use clawnet_crypto::{Signed, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::session::{
    Close, CloseReason, Consent, ConsentProgress, Phase, Rejection, Session, SessionError, Turn,
};
use clawnet_protocol::wire::ProposalOffer;
use clawnet_storage::Change;
use clawnet_storage::approvals::{ApprovalId, ApprovalRecord, ApprovalRequest, ApprovalStatus};
use clawnet_storage::contacts::ContactRecord;
use clawnet_storage::replay::NonceCheck;
use tokio::sync::OwnedMutexGuard;

use super::{NodeEvent, SessionFacts, SessionSlot, lock_session, record_of};
use crate::delivery::{Accepted, Hold, Refusal};
use crate::governance::{FollowUp, Governance, SessionWork, attack, busy};
use crate::node::Node;

impl Governance {
    /// A contact's identity proposes a session to ours, with their owner's consent.
    pub(crate) async fn proposal(
        &self,
        contact: ContactRecord,
        offer: ProposalOffer,
    ) -> Result<Accepted<FollowUp>, Refusal> {
        let node = self.node();
        let actor = Actor::Peer(contact.owner);
        let claimed = offer
            .proposal
            .decode_unverified()
            .map_err(|err| attack("malformed", actor, "proposal", err.to_string()))?;
        let object = format!("session {} proposed by {}", claimed.session.short(), contact.display_name);
        if claimed.target.owner != node.home.owner() || claimed.initiator.owner != contact.owner {
            return Err(attack("session", actor, object, "proposal between other owners than its sender and us"));
        }
        if Some(claimed.target.identity) != contact.assigned_identity {
            return Err(attack(
                "session",
                actor,
                object,
                "proposal for an identity that is not assigned to this contact",
            ));
        }
        if node.sessions.contains(&claimed.session) {
            return Err(attack("session", actor, object, "proposal reuses the id of an existing session"));
        }
        if offer.consent.signer() != contact.owner.key() {
            return Err(attack(
                "session",
                actor,
                object,
                "the consent with the proposal is not its initiator's owner's",
            ));
        }
        let rules = node.session_settings.rules();
        let roster = node.sessions.rosters.contact(&contact);
        let now = Timestamp::now();
        let view = node.home.db().read().map_err(busy)?;
        let mut ledger = NonceCheck::new(&view);
        let mut session = Session::open(&offer.proposal, &roster, &rules, now, &mut ledger)
            .map_err(|err| refusal(err, actor, &object))?;
        session.apply_consent(&offer.consent, &rules, now, &mut ledger).map_err(|err| refusal(err, actor, &object))?;
        let nonces = ledger.into_pending();
        drop(view);
        let proposal = session.proposal().clone();
        let approval = ApprovalRecord {
            id: ApprovalId::random(),
            identity: proposal.target.identity,
            request: ApprovalRequest::SessionInvitation {
                contact: contact.owner,
                purpose: proposal.purpose.clone(),
                max_turns: proposal.max_turns,
                depth: proposal.depth,
            },
            session: Some(proposal.session),
            created_at: now,
            status: ApprovalStatus::Pending,
        };
        let id = proposal.session;
        let record = record_of(&session, None, None);
        let summary = format!("{} invites you to a session: {}", contact.display_name, proposal.purpose);
        let event = NodeEvent::ApprovalPending { id: approval.id.to_hex(), summary };
        let change = Change::new(move |txn| {
            txn.put_session(&id, &record)?;
            txn.put_approval(&approval)?;
            txn.record_nonces(&nonces)
        })
        .with_audit(AuditDraft::new(
            actor,
            "session.proposal-received",
            object,
            "their identity's signed proposal and their owner's signed consent",
            Outcome::Success,
        ));
        let slot = node.sessions.insert(session, &node.home.owner());
        let hold = lock_session(&slot).await;
        let work = SessionWork { events: vec![event], policies: true, ..SessionWork::default() };
        Ok(Accepted::new(change, FollowUp::Session(work), Some(Hold::new(hold))))
    }

    /// The counterpart owner consents to a proposal we made.
    pub(crate) async fn consent(
        &self,
        contact: ContactRecord,
        signed: Signed<Consent>,
    ) -> Result<Accepted<FollowUp>, Refusal> {
        let node = self.node();
        let actor = Actor::Peer(contact.owner);
        let claimed =
            signed.decode_unverified().map_err(|err| attack("malformed", actor, "consent", err.to_string()))?;
        let (mut session, _) = party_session(node.sessions.by_proposal(&claimed.proposal), &contact, "consent").await?;
        let object = format!("session {} consent from {}", session.id().short(), contact.display_name);
        let rules = node.session_settings.rules();
        let view = node.home.db().read().map_err(busy)?;
        let mut ledger = NonceCheck::new(&view);
        let progress = session
            .apply_consent(&signed, &rules, Timestamp::now(), &mut ledger)
            .map_err(|err| refusal(err, actor, &object))?;
        let nonces = ledger.into_pending();
        drop(view);
        let id = session.id();
        let record = record_of(&session, None, None);
        let mut work = SessionWork::default();
        let action = match progress {
            ConsentProgress::Granted { .. } => {
                work.events.push(NodeEvent::SessionStarted { session: id.to_hex() });
                work.speak.push(id);
                "session.granted"
            }
            ConsentProgress::AwaitingOther => "session.consent-received",
        };
        let change = Change::new(move |txn| {
            txn.put_session(&id, &record)?;
            txn.record_nonces(&nonces)
        })
        .with_audit(AuditDraft::new(actor, action, object, "both owners' signed consents", Outcome::Success));
        Ok(Accepted::new(change, FollowUp::Session(work), Some(Hold::new(session))))
    }

    /// The counterpart owner refuses a proposal.
    pub(crate) async fn rejection(
        &self,
        contact: ContactRecord,
        signed: Signed<Rejection>,
    ) -> Result<Accepted<FollowUp>, Refusal> {
        let node = self.node();
        let actor = Actor::Peer(contact.owner);
        let claimed =
            signed.decode_unverified().map_err(|err| attack("malformed", actor, "rejection", err.to_string()))?;
        let (mut session, facts) =
            party_session(node.sessions.by_proposal(&claimed.proposal), &contact, "rejection").await?;
        let object = format!("session {} rejected by {}", session.id().short(), contact.display_name);
        let rules = node.session_settings.rules();
        let view = node.home.db().read().map_err(busy)?;
        let mut ledger = NonceCheck::new(&view);
        let rejection = session
            .apply_rejection(&signed, &rules, Timestamp::now(), &mut ledger)
            .map_err(|err| refusal(err, actor, &object))?;
        let nonces = ledger.into_pending();
        let obsolete =
            obsolete_approvals(&view, &session.id(), "the other owner rejected the session").map_err(busy)?;
        drop(view);
        let id = session.id();
        let record = record_of(&session, Some(signed), None);
        let mut work = SessionWork::default();
        work.events
            .push(NodeEvent::SessionClosed { session: id.to_hex(), reason: format!("rejected: {}", rejection.reason) });
        work.speak.extend(facts.parent.filter(|_| facts.initiator == node.home.owner()));
        let change = Change::new(move |txn| {
            txn.put_session(&id, &record)?;
            for approval in &obsolete {
                txn.put_approval(approval)?;
            }
            txn.record_nonces(&nonces)
        })
        .with_audit(AuditDraft::new(
            actor,
            "session.rejected",
            object,
            "their owner's signed rejection",
            Outcome::Success,
        ));
        Ok(Accepted::new(change, FollowUp::Session(work), Some(Hold::new(session))))
    }

    /// The counterpart identity's turn.
    pub(crate) async fn turn(
        &self,
        contact: ContactRecord,
        signed: Signed<Turn>,
    ) -> Result<Accepted<FollowUp>, Refusal> {
        let node = self.node();
        let actor = Actor::Peer(contact.owner);
        let claimed = signed.decode_unverified().map_err(|err| attack("malformed", actor, "turn", err.to_string()))?;
        let object =
            format!("session {} turn {} from {}", claimed.session.short(), claimed.turn_no, contact.display_name);
        let (mut session, facts) = party_session(node.sessions.get(&claimed.session), &contact, &object).await?;
        // A retry of their turn we stored (its first attempt's answer was lost): the transcript
        // is its inbox record. Any other turn under a number we hold (our own turns included)
        // is refused below.
        let our_identity = session.party_of(&node.home.owner()).map(|party| party.identity);
        if claimed.turn_no <= session.turns() && Some(claimed.speaker) != our_identity {
            let stored = node.home.db().read().and_then(|view| view.turn(&session.id(), claimed.turn_no));
            if stored.map_err(busy)?.as_ref() == Some(&signed) {
                return Err(Refusal::already_recorded());
            }
        }
        let ours = node.sessions.rosters.own(&node.home).map_err(|_| Refusal::later("cannot read our identities"))?;
        let theirs = node.sessions.rosters.contact(&contact);
        let (initiator, target) =
            if facts.initiator == node.home.owner() { (&ours, &theirs) } else { (&theirs, &ours) };
        let rules = node.session_settings.rules();
        let accepted = session
            .apply_turn(&signed, initiator, target, &rules, Timestamp::now())
            .map_err(|err| refusal(err, actor, &object))?;
        let id = session.id();
        node.sessions.note_turn(&id, accepted.turn_no, &signed, &claimed);
        let stored = signed.clone();
        let mut work = SessionWork::default();
        work.events.push(NodeEvent::Turn {
            session: id.to_hex(),
            turn_no: accepted.turn_no,
            speaker: contact.display_name.clone(),
            text: claimed.text,
        });
        work.speak.push(id);
        let change = Change::new(move |txn| txn.put_turn(&id, accepted.turn_no, &stored)).with_audit(AuditDraft::new(
            actor,
            "session.turn-received",
            format!("{object} ({})", &accepted.hash.to_hex()[..12]),
            "session grant",
            Outcome::Success,
        ));
        Ok(Accepted::new(change, FollowUp::Session(work), Some(Hold::new(session))).follow_up_when_committed())
    }

    /// The counterpart owner closes a session.
    pub(crate) async fn close(
        &self,
        contact: ContactRecord,
        signed: Signed<Close>,
    ) -> Result<Accepted<FollowUp>, Refusal> {
        let node = self.node();
        let actor = Actor::Peer(contact.owner);
        let claimed = signed.decode_unverified().map_err(|err| attack("malformed", actor, "close", err.to_string()))?;
        let object = format!("session {} closed by {}", claimed.session.short(), contact.display_name);
        let (mut session, facts) = party_session(node.sessions.get(&claimed.session), &contact, &object).await?;
        let rules = node.session_settings.rules();
        let view = node.home.db().read().map_err(busy)?;
        let mut ledger = NonceCheck::new(&view);
        let (close, dropped) = match session.apply_close(&signed, &rules, Timestamp::now(), &mut ledger) {
            Ok(done) => done,
            // Their close follows turns still on their way here (a turn and the close that
            // follows it can travel in one batch): ask them to send it again.
            Err(SessionError::TranscriptMismatch { their_turns, our_turns })
                if their_turns > our_turns && signed.verify_signed_by(contact.owner.key()).is_ok() =>
            {
                return Err(Refusal::later("the turns this close follows have not arrived yet"));
            }
            Err(err) => return Err(refusal(err, actor, &object)),
        };
        let nonces = ledger.into_pending();
        let obsolete = obsolete_approvals(&view, &session.id(), "the session was closed").map_err(busy)?;
        drop(view);
        let id = session.id();
        let keep = session.turns();
        let record = record_of(&session, None, Some(signed));
        let mut work = SessionWork::default();
        work.events.push(NodeEvent::SessionClosed { session: id.to_hex(), reason: describe_close(close.reason) });
        work.speak.extend(facts.parent.filter(|_| facts.initiator == node.home.owner()));
        let change = Change::new(move |txn| {
            txn.put_session(&id, &record)?;
            if dropped > 0 {
                txn.truncate_turns(&id, keep)?;
            }
            for approval in &obsolete {
                txn.put_approval(approval)?;
            }
            txn.record_nonces(&nonces)
        })
        .with_audit(AuditDraft::new(
            actor,
            "session.closed",
            format!("{object}: {} after {keep} turns", describe_close(close.reason)),
            "their owner's signed close",
            Outcome::Success,
        ));
        Ok(Accepted::new(change, FollowUp::Session(work), Some(Hold::new(session))))
    }

    fn node(&self) -> &Arc<Node> {
        &self.node
    }
}

/// How a close reads for people.
pub(crate) fn describe_close(reason: CloseReason) -> String {
    match reason {
        CloseReason::Ended(marker) => format!("ended by the agents ({})", super::view::marker_name(marker)),
        CloseReason::MaxTurns => "turn limit reached".into(),
        CloseReason::OwnerStopped => "stopped by an owner".into(),
    }
}

/// Pending approvals about session `id`, marked rejected with `reason` (the session ended, so
/// there is nothing left to decide).
pub(crate) fn obsolete_approvals(
    view: &clawnet_storage::ReadView,
    id: &clawnet_protocol::SessionId,
    reason: &str,
) -> Result<Vec<ApprovalRecord>, clawnet_storage::StoreError> {
    Ok(view
        .pending_approvals()?
        .into_iter()
        .filter(|a| a.session == Some(*id))
        .map(|mut a| {
            a.status = ApprovalStatus::Rejected { at: Timestamp::now(), reason: reason.into() };
            a
        })
        .collect())
}

/// The session a contact's message names (`found`), locked, if the contact is its other party.
async fn party_session(
    found: Option<(SessionSlot, SessionFacts)>,
    contact: &ContactRecord,
    object: &str,
) -> Result<(OwnedMutexGuard<Session>, SessionFacts), Refusal> {
    let actor = Actor::Peer(contact.owner);
    let Some((slot, facts)) = found else {
        return Err(attack("session", actor, object, "names a session or proposal this node does not know"));
    };
    if facts.counterpart != contact.owner {
        return Err(attack("session", actor, object, "for a session this contact is not a party to"));
    }
    Ok((lock_session(&slot).await, facts))
}

fn refusal(err: SessionError, actor: Actor, object: &str) -> Refusal {
    if err.is_security_event() {
        attack("session", actor, object, err.to_string())
    } else {
        Refusal::plain(err.to_string())
    }
}

/// Whether `phase` still takes turns.
pub(crate) fn is_open(phase: Phase) -> bool {
    matches!(phase, Phase::AwaitingConsent | Phase::Active | Phase::Ending(_))
}
