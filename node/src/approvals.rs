//! The owner's approval queue: what agents asked for and may not do alone. Each request is
//! stored with its audit entry in one commit, so the owner's queue and the audit chain agree.

use clawnet_crypto::{IdentityId, Timestamp};
use clawnet_protocol::SessionId;
use clawnet_protocol::audit::AuditDraft;
use clawnet_storage::Change;
use clawnet_storage::approvals::{ApprovalId, ApprovalRecord, ApprovalRequest, ApprovalStatus};
use clawnet_storage::contacts::ContactRecord;
use clawnet_storage::identities::IdentityRecord;
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::home::{NodeHome, UnlockedHome};

impl UnlockedHome {
    /// Queues `request` from `identity` for the owner, with the audit entries that describe it.
    pub async fn request_approval(
        &self,
        identity: IdentityId,
        request: ApprovalRequest,
        session: Option<SessionId>,
        audit: Vec<AuditDraft>,
    ) -> Result<ApprovalRecord, NodeError> {
        let record = ApprovalRecord {
            id: ApprovalId::random(),
            identity,
            request,
            session,
            created_at: Timestamp::now(),
            status: ApprovalStatus::Pending,
        };
        let stored = record.clone();
        let change = audit
            .into_iter()
            .fold(Change::new(move |txn| txn.put_approval(&stored)), |change, draft| change.with_audit(draft));
        crate::node::commit(self.db(), change).await?;
        Ok(record)
    }
}

impl NodeHome {
    /// Every approval, oldest first, as the owner sees them.
    pub fn approvals(&self) -> Result<Vec<ApprovalView>, NodeError> {
        let read = self.db().read()?;
        let (identities, contacts) = (read.identities()?, read.contacts()?);
        Ok(read.approvals()?.iter().map(|record| view_of(record, &identities, &contacts)).collect())
    }

    /// One approval as the owner sees it.
    pub fn approval_view(&self, record: &ApprovalRecord) -> Result<ApprovalView, NodeError> {
        let read = self.db().read()?;
        Ok(view_of(record, &read.identities()?, &read.contacts()?))
    }
}

fn view_of(record: &ApprovalRecord, identities: &[IdentityRecord], contacts: &[ContactRecord]) -> ApprovalView {
    let identity = identities
        .iter()
        .find(|i| i.id == record.identity)
        .map_or_else(|| record.identity.to_hex(), |i| i.tag.to_string());
    let name_of = |contact: &clawnet_crypto::OwnerId| {
        contacts
            .iter()
            .find(|c| c.owner == *contact)
            .map_or_else(|| contact.fingerprint().to_string(), |c| c.display_name.clone())
    };
    let summary = match &record.request {
        ApprovalRequest::Collaboration { contact, purpose, parent: None } => {
            format!("work with {}: {purpose}", name_of(contact))
        }
        ApprovalRequest::Collaboration { contact, purpose, parent: Some(parent) } => {
            format!("from inside session {}, work with {}: {purpose}", parent.short(), name_of(contact))
        }
        ApprovalRequest::SessionInvitation { contact, purpose, max_turns, depth } => {
            let nested = if *depth > 0 { format!(", nested {depth} deep") } else { String::new() };
            format!("{} invites you to a session ({max_turns} turns{nested}): {purpose}", name_of(contact))
        }
        ApprovalRequest::HeldMessage { recipient, matched, .. } => {
            format!("message to {recipient} held: it contains never-share item(s) {matched:?}")
        }
    };
    ApprovalView {
        id: record.id.to_hex(),
        session: record.session.map(|s| s.to_string()),
        kind: record.request.kind().into(),
        identity,
        summary,
        status: status_text(&record.status),
        created_at_ms: record.created_at.as_millis(),
    }
}

/// `pending`, `approved` or `rejected[: reason]`.
pub(crate) fn status_text(status: &ApprovalStatus) -> String {
    match status {
        ApprovalStatus::Pending => "pending".to_owned(),
        ApprovalStatus::Approved { .. } => "approved".to_owned(),
        ApprovalStatus::Rejected { reason, .. } if reason.is_empty() => "rejected".to_owned(),
        ApprovalStatus::Rejected { reason, .. } => format!("rejected: {reason}"),
    }
}

/// One owner decision, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// Its id.
    pub id: String,
    /// `collaboration`, `session-invitation` or `held-message`.
    pub kind: String,
    /// The session it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The identity that asked.
    pub identity: String,
    /// What is asked, in one line.
    pub summary: String,
    /// `pending`, `approved` or `rejected[: reason]`.
    pub status: String,
    /// When it was asked (ms since the epoch).
    pub created_at_ms: u64,
}
