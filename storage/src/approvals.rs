//! Owner approvals: decisions an agent may not take alone, queued until the owner answers.
//!
//! An identity agent's wish to work with a contact (from a conversation with its owner or, for a
//! child session, from inside another session), a contact's invitation to a session, and an
//! outbound message the disclosure guard held all wait here. Records stay after the decision,
//! as the owner's history.

use std::fmt;
use std::str::FromStr;

use clawnet_crypto::rng::random_bytes;
use clawnet_crypto::{IdentityId, OwnerId, Timestamp, WireFormat, encoding};
use clawnet_protocol::SessionId;
use clawnet_protocol::session::EndMarker;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::{APPROVALS, PENDING_APPROVALS};
use crate::view::{ReadView, Txn, decode_value};

/// An approval's name, random.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ApprovalId(pub [u8; 16]);

impl ApprovalId {
    /// A fresh random id.
    pub fn random() -> ApprovalId {
        ApprovalId(random_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApprovalId({})", &self.to_hex()[..8])
    }
}

impl FromStr for ApprovalId {
    type Err = hex::FromHexError;

    fn from_str(text: &str) -> Result<ApprovalId, hex::FromHexError> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes)?;
        Ok(ApprovalId(bytes))
    }
}

/// What the owner is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalRequest {
    /// The identity agent wants a collaboration session with a contact.
    Collaboration {
        /// The contact.
        contact: OwnerId,
        /// Why, in the agent's words.
        purpose: String,
        /// The session the agent asked from, for a child session one level deeper.
        parent: Option<SessionId>,
    },
    /// A contact's identity proposes a session with ours; their owner already consented.
    SessionInvitation {
        /// The contact.
        contact: OwnerId,
        /// Why, in their agent's words.
        purpose: String,
        /// Turns asked for.
        max_turns: u16,
        /// 0 for a top-level session, more for a child of one of their sessions.
        depth: u8,
    },
    /// The disclosure guard held a message the identity agent was about to send.
    HeldMessage {
        /// Who it was for.
        recipient: String,
        /// The message, unsent.
        text: String,
        /// The never-share items it matched.
        matched: Vec<String>,
        /// The end marker the message carried, in a session.
        end: Option<EndMarker>,
    },
}

impl ApprovalRequest {
    /// A short name for lists.
    pub fn kind(&self) -> &'static str {
        match self {
            ApprovalRequest::Collaboration { .. } => "collaboration",
            ApprovalRequest::SessionInvitation { .. } => "session-invitation",
            ApprovalRequest::HeldMessage { .. } => "held-message",
        }
    }
}

/// Where a decision stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalStatus {
    /// Waiting for the owner.
    Pending,
    /// The owner approved.
    Approved {
        /// When.
        at: Timestamp,
    },
    /// The owner rejected.
    Rejected {
        /// When.
        at: Timestamp,
        /// Why, if the owner said.
        reason: String,
    },
}

/// One owner decision, pending or taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Its id.
    pub id: ApprovalId,
    /// The identity agent that asked.
    pub identity: IdentityId,
    /// What is asked.
    pub request: ApprovalRequest,
    /// The session it concerns: the one it proposed once approved, the invitation's, or the one a
    /// held message was for.
    pub session: Option<SessionId>,
    /// When it was asked.
    pub created_at: Timestamp,
    /// Where it stands.
    pub status: ApprovalStatus,
}

impl WireFormat for ApprovalRecord {
    const NAME: &'static str = "approval";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 64 * 1024;
}

impl ReadView {
    /// Every approval, oldest first.
    pub fn approvals(&self) -> Result<Vec<ApprovalRecord>, StoreError> {
        let table = self.tx.open_table(APPROVALS).ctx("reading approvals")?;
        let mut records: Vec<ApprovalRecord> = Vec::new();
        for row in table.iter().ctx("reading approvals")? {
            let (_, value) = row.ctx("reading approvals")?;
            records.push(decode_value(value.value())?);
        }
        records.sort_by_key(|record| (record.created_at, record.id));
        Ok(records)
    }

    /// The approvals still pending, oldest first (read through their index, not the history).
    pub fn pending_approvals(&self) -> Result<Vec<ApprovalRecord>, StoreError> {
        let context = "reading pending approvals";
        let pending = self.tx.open_table(PENDING_APPROVALS).ctx(context)?;
        let table = self.tx.open_table(APPROVALS).ctx(context)?;
        let mut records: Vec<ApprovalRecord> = Vec::new();
        for row in pending.iter().ctx(context)? {
            let (id, _) = row.ctx(context)?;
            let value = table.get(id.value()).ctx(context)?.ok_or_else(|| StoreError::Corrupt {
                what: "pending approvals",
                detail: "the index names an approval that is not stored".into(),
            })?;
            records.push(decode_value(value.value())?);
        }
        records.sort_by_key(|record| (record.created_at, record.id));
        Ok(records)
    }

    /// The approval `id`.
    pub fn approval(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        let table = self.tx.open_table(APPROVALS).ctx("reading approvals")?;
        let value = table.get(&id.0).ctx("reading approvals")?;
        value.map(|value| decode_value(value.value())).transpose()
    }
}

impl Txn<'_> {
    /// Stores (or updates) an approval.
    pub fn put_approval(&mut self, record: &ApprovalRecord) -> Result<(), StoreError> {
        let context = "writing an approval";
        let mut table = self.write_table(APPROVALS).ctx(context)?;
        table.insert(&record.id.0, encoding::encode(record).as_slice()).ctx(context)?;
        let mut pending = self.write_table(PENDING_APPROVALS).ctx(context)?;
        if record.status == ApprovalStatus::Pending {
            pending.insert(&record.id.0, ()).ctx(context)?;
        } else {
            pending.remove(&record.id.0).ctx(context)?;
        }
        Ok(())
    }
}

/// Indexes every pending approval (the index is new in schema 3).
pub(crate) fn index_pending(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let context = "indexing pending approvals";
    let table = tx.open_table(APPROVALS).ctx(context)?;
    let mut pending = tx.open_table(PENDING_APPROVALS).ctx(context)?;
    for row in table.iter().ctx(context)? {
        let (id, value) = row.ctx(context)?;
        let record: ApprovalRecord = decode_value(value.value())?;
        if record.status == ApprovalStatus::Pending {
            pending.insert(id.value(), ()).ctx(context)?;
        }
    }
    Ok(())
}
