//! The owner's approval queue: what agents asked for and may not do alone. Each request is
//! stored with its audit entry in one commit, so the owner's queue and the audit chain agree.

use clawnet_crypto::{IdentityId, Timestamp};
use clawnet_protocol::audit::AuditDraft;
use clawnet_storage::Change;
use clawnet_storage::approvals::{ApprovalId, ApprovalRecord, ApprovalRequest, ApprovalStatus};
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::home::{NodeHome, UnlockedHome};

impl UnlockedHome {
    /// Queues `request` from `identity` for the owner, with the audit entries that describe it.
    pub async fn request_approval(
        &self,
        identity: IdentityId,
        request: ApprovalRequest,
        audit: Vec<AuditDraft>,
    ) -> Result<ApprovalRecord, NodeError> {
        let record = ApprovalRecord {
            id: ApprovalId::random(),
            identity,
            request,
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
        let identities = read.identities()?;
        let contacts = read.contacts()?;
        let records = read.approvals()?;
        Ok(records
            .iter()
            .map(|record| {
                let identity = identities
                    .iter()
                    .find(|i| i.id == record.identity)
                    .map_or_else(|| record.identity.to_hex(), |i| i.tag.to_string());
                let summary = match &record.request {
                    ApprovalRequest::Collaboration { contact, purpose } => {
                        let name = contacts
                            .iter()
                            .find(|c| c.owner == *contact)
                            .map_or_else(|| contact.fingerprint().to_string(), |c| c.display_name.clone());
                        format!("work with {name}: {purpose}")
                    }
                    ApprovalRequest::HeldMessage { recipient, matched, .. } => {
                        format!("message to {recipient} held: it contains never-share item(s) {matched:?}")
                    }
                };
                let status = match &record.status {
                    ApprovalStatus::Pending => "pending".to_owned(),
                    ApprovalStatus::Approved { .. } => "approved".to_owned(),
                    ApprovalStatus::Rejected { reason, .. } if reason.is_empty() => "rejected".to_owned(),
                    ApprovalStatus::Rejected { reason, .. } => format!("rejected: {reason}"),
                };
                ApprovalView {
                    id: record.id.to_hex(),
                    kind: record.request.kind().into(),
                    identity,
                    summary,
                    status,
                    created_at_ms: record.created_at.as_millis(),
                }
            })
            .collect())
    }
}

/// One owner decision, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// Its id.
    pub id: String,
    /// `collaboration` or `held-message`.
    pub kind: String,
    /// The identity that asked.
    pub identity: String,
    /// What is asked, in one line.
    pub summary: String,
    /// `pending`, `approved` or `rejected[: reason]`.
    pub status: String,
    /// When it was asked (ms since the epoch).
    pub created_at_ms: u64,
}
