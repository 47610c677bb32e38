//! The owner's side of sessions: deciding approvals (by command or by a standing policy),
//! stopping a session, and carrying sessions on after a restart. Every decision that leaves the
//! node is signed by the owner key; every decision is audited in the commit that applies it.

use std::sync::Arc;
use std::time::Duration;

use clawnet_crypto::{Signed, Timestamp, Verified};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::session::{
    Close, CloseReason, Consent, Party, Phase, Proposal, Rejection, Session, proposal_hash,
};
use clawnet_protocol::wire::{ProposalOffer, WireMessage};
use clawnet_protocol::{Nonce, SessionId};
use clawnet_storage::Change;
use clawnet_storage::approvals::{ApprovalRecord, ApprovalRequest, ApprovalStatus};
use clawnet_storage::replay::NonceCheck;

use super::inbound::{describe_close, is_open, obsolete_approvals};
use super::{NodeEvent, contact_of, lock_session, record_of};
use crate::approvals::ApprovalView;
use crate::delivery::enqueue;
use crate::error::NodeError;
use crate::governance::SessionWork;
use crate::node::Node;
use crate::views::normalize_id;

/// An owner's answer to an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Approve,
    Reject(String),
}

impl Node {
    /// Approves the pending approval `query` (a unique prefix of its id).
    pub async fn approve(self: &Arc<Self>, query: &str) -> Result<ApprovalView, NodeError> {
        let _decide = self.sessions.decisions.lock().await;
        let record = self.find_approval(query)?;
        self.decide(record, Decision::Approve, "owner command").await
    }

    /// Rejects the pending approval `query`, telling the other owner `reason` where one waits.
    pub async fn reject(self: &Arc<Self>, query: &str, reason: &str) -> Result<ApprovalView, NodeError> {
        let reason: String = reason.trim().chars().take(clawnet_protocol::limits::MAX_REASON / 4).collect();
        let _decide = self.sessions.decisions.lock().await;
        let record = self.find_approval(query)?;
        self.decide(record, Decision::Reject(reason), "owner command").await
    }

    /// Stops session `query` (a unique prefix of its id): the owner-signed close goes to the other
    /// node, and both record the transcript as it stands.
    pub async fn stop_session(self: &Arc<Self>, query: &str) -> Result<super::SessionView, NodeError> {
        let id = self.find_session(query)?;
        self.stop(id, "owner command").await?;
        self.session_view(&id)
    }

    /// Applies every standing policy to the pending approvals it covers.
    pub async fn apply_policies(self: &Arc<Self>) {
        if self.policies.is_empty() {
            return;
        }
        let _decide = self.sessions.decisions.lock().await;
        let pending = match self.home.db().pending_approvals() {
            Ok(pending) => pending,
            Err(err) => return tracing::error!(%err, "cannot read approvals"),
        };
        // Each decision is about its own approval and session, so they run as tasks of their
        // own: on both workers, their commits sharing the group commit. Polled in one task,
        // each would commit inline before the next began (64 decisions took 30 ms).
        let mut decisions = tokio::task::JoinSet::new();
        for approval in pending.iter() {
            let Some(basis) = self.policy_for(approval) else { continue };
            let (node, approval) = (self.clone(), approval.clone());
            decisions.spawn(async move {
                if let Err(err) = node.decide(approval, Decision::Approve, &basis).await {
                    tracing::warn!(%err, "a policy could not approve");
                }
            });
        }
        decisions.join_all().await;
    }

    /// After a restart: decisions a policy covers, and turns that are ours to speak.
    pub async fn resume_sessions(self: &Arc<Self>) {
        self.apply_policies().await;
        for (id, _, _) in self.sessions.all() {
            self.speak(id);
        }
    }

    /// Runs what a durable session change leads to.
    pub(crate) fn carry_on(self: &Arc<Self>, work: SessionWork) {
        for event in work.events {
            self.notify(event);
        }
        for id in work.speak {
            self.speak(id);
        }
        if work.policies {
            let node = self.clone();
            self.spawn(async move { node.apply_policies().await });
        }
    }

    fn policy_for(&self, approval: &ApprovalRecord) -> Option<String> {
        let (contact, turns) = match &approval.request {
            ApprovalRequest::Collaboration { contact, .. } => (contact, self.session_settings.default_turns),
            ApprovalRequest::SessionInvitation { contact, max_turns, .. } => (contact, *max_turns),
            ApprovalRequest::HeldMessage { .. } => return None,
        };
        let db = self.home.db();
        let identity = db.identity(&approval.identity).ok()??;
        let contact = db.contact(contact).ok()??;
        let (index, policy) =
            self.policies.iter().enumerate().find(|(_, p)| p.approves(approval, &identity, &contact, turns))?;
        Some(policy.describe(index))
    }

    async fn decide(
        self: &Arc<Self>,
        record: ApprovalRecord,
        decision: Decision,
        basis: &str,
    ) -> Result<ApprovalView, NodeError> {
        if record.status != ApprovalStatus::Pending {
            return Err(NodeError::Session(format!("approval {} was already decided", short(&record))));
        }
        let now = Timestamp::now();
        let mut decided = record.clone();
        decided.status = match &decision {
            Decision::Approve => ApprovalStatus::Approved { at: now },
            Decision::Reject(reason) => ApprovalStatus::Rejected { at: now, reason: reason.clone() },
        };
        let audit = approval_audit(&record, &decision, basis);
        match (&record.request, decision) {
            (ApprovalRequest::Collaboration { contact, purpose, parent }, Decision::Approve) => {
                let session = self.propose(&mut decided, *contact, purpose, *parent, audit).await?;
                tracing::info!(session = %session, "proposal sent");
            }
            (ApprovalRequest::SessionInvitation { .. }, decision) => {
                let id = record.session.ok_or_else(|| NodeError::Session("the invitation names no session".into()))?;
                self.answer_invitation(&decided, id, decision, audit).await?;
            }
            (ApprovalRequest::HeldMessage { text, end, .. }, Decision::Approve) => {
                self.store_decision(&decided, audit).await?;
                if let Some(id) = record.session {
                    // The owner lets the held reply go out as the agent's turn.
                    self.say(id, text.clone(), *end, "the owner approved the held reply").await?;
                }
            }
            (ApprovalRequest::HeldMessage { .. }, Decision::Reject(_)) => {
                self.store_decision(&decided, audit).await?;
                if let Some(id) = record.session
                    && self.sessions.get(&id).is_some()
                {
                    // The agent tried to disclose what the owner keeps back: the session stops.
                    self.stop(id, "the owner rejected a held reply").await?;
                }
            }
            (ApprovalRequest::Collaboration { parent, .. }, Decision::Reject(_)) => {
                self.store_decision(&decided, audit).await?;
                if let Some(parent) = parent {
                    self.speak(*parent);
                }
            }
        }
        let status = crate::approvals::status_text(&decided.status);
        self.notify(NodeEvent::ApprovalDecided { id: record.id.to_hex(), status, by: basis.into() });
        self.home.home().approval_view(&decided)
    }

    async fn store_decision(&self, decided: &ApprovalRecord, audit: AuditDraft) -> Result<(), NodeError> {
        let stored = decided.clone();
        self.commit(Change::new(move |txn| txn.put_approval(&stored)).with_audit(audit)).await
    }

    /// Our identity's proposal with our owner's consent, to the contact; the session waits for
    /// their owner.
    async fn propose(
        self: &Arc<Self>,
        decided: &mut ApprovalRecord,
        contact: clawnet_crypto::OwnerId,
        purpose: &str,
        parent: Option<SessionId>,
        audit: AuditDraft,
    ) -> Result<SessionId, NodeError> {
        let record = contact_of(self.home.db(), &contact)?
            .ok_or_else(|| NodeError::Session("that contact is no longer known".into()))?;
        if !record.is_connected() || record.assigned_identity != Some(decided.identity) {
            return Err(NodeError::Session(format!(
                "{} is no longer a connected contact assigned to this identity",
                record.display_name
            )));
        }
        let Some(target) = self.sessions.rosters.contact(&record).certs().next().map(|cert| cert.identity) else {
            return Err(NodeError::Session(format!(
                "{} has not shown you an identity to talk to yet (they assign one with `clawnet contact assign`)",
                record.display_name
            )));
        };
        let depth = match parent {
            None => 0,
            Some(parent) => {
                let (slot, _) = self
                    .sessions
                    .get(&parent)
                    .ok_or_else(|| NodeError::Session("the session it was asked from is gone".into()))?;
                let parent = slot.lock().await;
                if parent.phase() != Phase::Active {
                    return Err(NodeError::Session("the session it was asked from is over".into()));
                }
                let depth = parent.proposal().depth + 1;
                if depth > self.session_settings.max_depth {
                    return Err(NodeError::Session(format!(
                        "a session nested {depth} deep exceeds this node's maximum of {}",
                        self.session_settings.max_depth
                    )));
                }
                depth
            }
        };
        let now = Timestamp::now();
        let validity = Duration::from_secs(self.session_settings.consent_validity_secs);
        let proposal = Proposal {
            session: SessionId::random(),
            initiator: Party { owner: self.home.owner(), identity: decided.identity },
            target: Party { owner: contact, identity: target },
            purpose: purpose.chars().take(clawnet_protocol::limits::MAX_PURPOSE / 4).collect(),
            max_turns: self.session_settings.default_turns,
            depth,
            parent,
            created_at: now,
            expires_at: now.plus(validity),
            nonce: Nonce::random(),
        };
        let proposal = self
            .home
            .sign_verified_as_identity(&decided.identity, proposal)
            .ok_or_else(|| NodeError::Session("this identity's key is not on this node".into()))?;
        let consent = self.owner_consent(proposal.signed())?;
        let rules = self.session_settings.rules();
        let view = self.home.db().read()?;
        let mut ledger = NonceCheck::new(&view);
        // Signed just now, so their signatures are not checked again.
        let mut session =
            Session::open_own(proposal, &*self.sessions.rosters.own(&self.home)?, &rules, now, &mut ledger)
                .map_err(|err| NodeError::Session(err.to_string()))?;
        let (proposal, signed_consent) = (session.proposal().signed().clone(), consent.signed().clone());
        session
            .apply_own_consent(consent, &rules, now, &mut ledger)
            .map_err(|err| NodeError::Session(err.to_string()))?;
        let consent = signed_consent;
        let nonces = ledger.into_pending();
        drop(view);
        let id = session.id();
        decided.session = Some(id);
        let stored = decided.clone();
        let session_record = record_of(&session, None, None);
        let message = WireMessage::Proposal(Box::new(ProposalOffer { proposal, consent }));
        let device = record.device_key;
        let proposed = AuditDraft::new(
            Actor::Identity(decided.identity),
            "session.propose",
            format!("session {} with {}: {purpose}", id.short(), record.display_name),
            "owner's signed consent",
            Outcome::Success,
        );
        let change = Change::new(move |txn| {
            txn.put_approval(&stored)?;
            txn.put_session(&id, &session_record)?;
            txn.record_nonces(&nonces)?;
            enqueue(txn, device, &message, now).map(drop)
        })
        .with_audit(audit)
        .with_audit(proposed);
        let slot = self.sessions.insert(session, &self.home.owner());
        let guard = lock_session(&slot).await;
        self.commit(change).await?;
        drop(guard);
        self.outbox.wake();
        Ok(id)
    }

    /// Our owner's answer to a contact's invitation: a signed consent or rejection, to them.
    async fn answer_invitation(
        self: &Arc<Self>,
        decided: &ApprovalRecord,
        id: SessionId,
        decision: Decision,
        audit: AuditDraft,
    ) -> Result<(), NodeError> {
        let (slot, facts) =
            self.sessions.get(&id).ok_or_else(|| NodeError::Session(format!("session {} is not known", id.short())))?;
        let contact = contact_of(self.home.db(), &facts.counterpart)?
            .ok_or_else(|| NodeError::Session("the inviting contact is no longer known".into()))?;
        let mut session = lock_session(&slot).await;
        if session.phase() != Phase::AwaitingConsent {
            return Err(NodeError::Session(format!("session {} is no longer waiting for consent", id.short())));
        }
        let rules = self.session_settings.rules();
        let now = Timestamp::now();
        let view = self.home.db().read()?;
        let mut ledger = NonceCheck::new(&view);
        let (message, record, action, event) = match decision {
            Decision::Approve => {
                let consent = self.owner_consent(session.proposal().signed())?;
                let signed = consent.signed().clone();
                session
                    .apply_own_consent(consent, &rules, now, &mut ledger)
                    .map_err(|err| NodeError::Session(err.to_string()))?;
                let consent = signed;
                let event = NodeEvent::SessionStarted { session: id.to_hex() };
                (WireMessage::Consent(consent), record_of(&session, None, None), "session.consent", event)
            }
            Decision::Reject(reason) => {
                let rejection = Rejection {
                    proposal: session.proposal_hash(),
                    owner: self.home.owner(),
                    reason: reason.clone(),
                    issued_at: now,
                    nonce: Nonce::random(),
                };
                let rejection = self.home.sign_as_owner(&rejection);
                session
                    .apply_rejection(&rejection, &rules, now, &mut ledger)
                    .map_err(|err| NodeError::Session(err.to_string()))?;
                let event = NodeEvent::SessionClosed { session: id.to_hex(), reason: format!("rejected: {reason}") };
                let record = record_of(&session, Some(rejection.clone()), None);
                (WireMessage::Rejection(rejection), record, "session.reject", event)
            }
        };
        let nonces = ledger.into_pending();
        drop(view);
        let stored = decided.clone();
        let device = contact.device_key;
        let object = format!("session {} with {}", id.short(), contact.display_name);
        let change = Change::new(move |txn| {
            txn.put_approval(&stored)?;
            txn.put_session(&id, &record)?;
            txn.record_nonces(&nonces)?;
            enqueue(txn, device, &message, now).map(drop)
        })
        .with_audit(audit)
        .with_audit(AuditDraft::new(Actor::Owner, action, object, "owner decision", Outcome::Success));
        self.commit(change).await?;
        drop(session);
        self.outbox.wake();
        self.notify(event);
        Ok(())
    }

    /// Closes session `id` as stopped by our owner, and the sessions our agents opened from it.
    pub(crate) async fn stop(self: &Arc<Self>, id: SessionId, basis: &str) -> Result<(), NodeError> {
        let (slot, facts) =
            self.sessions.get(&id).ok_or_else(|| NodeError::Session(format!("session {} is not known", id.short())))?;
        let contact = contact_of(self.home.db(), &facts.counterpart)?
            .ok_or_else(|| NodeError::Session("the other owner is no longer a contact".into()))?;
        let mut session = lock_session(&slot).await;
        if !is_open(session.phase()) {
            return Err(NodeError::Session(format!("session {} is already over", id.short())));
        }
        let close = self.owner_close(&session, CloseReason::OwnerStopped);
        let rules = self.session_settings.rules();
        let view = self.home.db().read()?;
        let mut ledger = NonceCheck::new(&view);
        let (close, _) = session
            .apply_own_close(close, &rules, Timestamp::now(), &mut ledger)
            .map_err(|err| NodeError::Session(err.to_string()))?;
        let close = close.signed().clone();
        let nonces = ledger.into_pending();
        let obsolete = obsolete_approvals(&view, &id, "the session was stopped")?;
        drop(view);
        let record = record_of(&session, None, Some(close.clone()));
        let message = WireMessage::Close(close);
        let device = contact.device_key;
        let now = Timestamp::now();
        let object = format!("session {} with {} after {} turns", id.short(), contact.display_name, session.turns());
        let change = Change::new(move |txn| {
            txn.put_session(&id, &record)?;
            for approval in &obsolete {
                txn.put_approval(approval)?;
            }
            txn.record_nonces(&nonces)?;
            enqueue(txn, device, &message, now).map(drop)
        })
        .with_audit(AuditDraft::new(Actor::Owner, "session.stop", object, basis, Outcome::Success));
        self.commit(change).await?;
        drop(session);
        self.outbox.wake();
        self.notify(NodeEvent::SessionClosed {
            session: id.to_hex(),
            reason: describe_close(CloseReason::OwnerStopped),
        });
        for (child, slot) in self.sessions.children(&id, &self.home.owner()) {
            let open = is_open(slot.lock().await.phase());
            if open {
                Box::pin(self.stop(child, "its parent session was stopped")).await?;
            }
        }
        if let Some(parent) = facts.parent.filter(|_| facts.initiator == self.home.owner()) {
            self.speak(parent);
        }
        Ok(())
    }

    /// Our owner's consent over `proposal`, pinning our audit chain's head.
    fn owner_consent(&self, proposal: &Signed<Proposal>) -> Result<Verified<Consent>, NodeError> {
        let (_, head) = self.home.db().audit_head()?;
        let now = Timestamp::now();
        let consent = Consent {
            proposal: proposal_hash(proposal),
            owner: self.home.owner(),
            audit_head: head,
            issued_at: now,
            expires_at: now.plus(Duration::from_secs(self.session_settings.consent_validity_secs)),
            nonce: Nonce::random(),
        };
        Ok(self.home.sign_verified_as_owner(consent))
    }

    /// Our owner's close of `session` as it stands.
    pub(crate) fn owner_close(&self, session: &Session, reason: CloseReason) -> Verified<Close> {
        let close = Close {
            session: session.id(),
            owner: self.home.owner(),
            reason,
            turns: session.turns(),
            last: session.last_hash(),
            closed_at: Timestamp::now(),
            nonce: Nonce::random(),
        };
        self.home.sign_verified_as_owner(close)
    }

    fn find_approval(&self, query: &str) -> Result<ApprovalRecord, NodeError> {
        let wanted = normalize_id(query);
        if wanted.is_empty() {
            return Err(NodeError::Session("give an approval id (see `clawnet approvals`)".into()));
        }
        let all = self.home.db().read()?.approvals()?;
        let matches: Vec<ApprovalRecord> = all.into_iter().filter(|a| a.id.to_hex().starts_with(&wanted)).collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(NodeError::Session(format!("no approval matches {query:?} (see `clawnet approvals`)"))),
            _ => Err(NodeError::Session(format!("{query:?} matches several approvals: give more of the id"))),
        }
    }

    pub(crate) fn find_session(&self, query: &str) -> Result<SessionId, NodeError> {
        let wanted = normalize_id(query);
        if wanted.is_empty() {
            return Err(NodeError::Session("give a session id (see `clawnet session list`)".into()));
        }
        let matches: Vec<SessionId> = self
            .sessions
            .all()
            .into_iter()
            .map(|(id, _, _)| id)
            .filter(|id| id.to_hex().starts_with(&wanted))
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(NodeError::Session(format!("no session matches {query:?} (see `clawnet session list`)"))),
            _ => Err(NodeError::Session(format!("{query:?} matches several sessions: give more of the id"))),
        }
    }
}

fn approval_audit(record: &ApprovalRecord, decision: &Decision, basis: &str) -> AuditDraft {
    let (action, outcome) = match decision {
        Decision::Approve => ("approval.approved", Outcome::Success),
        Decision::Reject(reason) => ("approval.rejected", Outcome::Denied(reason.clone())),
    };
    AuditDraft::new(Actor::Owner, action, format!("{} {}", record.request.kind(), short(record)), basis, outcome)
}

fn short(record: &ApprovalRecord) -> String {
    record.id.to_hex()[..8].to_owned()
}
