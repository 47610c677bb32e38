//! What the `clawnet` command and the local API show: plain serializable views of records.

use clawnet_crypto::Fingerprint;
use clawnet_storage::contacts::ContactRecord;
use clawnet_storage::identities::{IdentityRecord, IdentityStatus};
use serde::{Deserialize, Serialize};

/// One identity agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    /// Its role tag.
    pub tag: String,
    /// Its id.
    pub id: String,
    /// `active` or `retired`.
    pub status: String,
    /// What it is for.
    pub description: String,
    /// When it was created (ms since the epoch).
    pub created_at_ms: u64,
    /// When it was retired, if it was.
    pub retired_at_ms: Option<u64>,
    /// Fingerprint of its signing key.
    pub key_fingerprint: String,
}

impl IdentityView {
    /// The view of `record`.
    pub fn of(record: &IdentityRecord) -> IdentityView {
        let retired_at_ms = match &record.status {
            IdentityStatus::Retired { at, .. } => Some(at.as_millis()),
            IdentityStatus::Active => None,
        };
        IdentityView {
            tag: record.tag.to_string(),
            id: record.id.to_hex(),
            status: if record.is_active() { "active" } else { "retired" }.into(),
            description: record.description.clone(),
            created_at_ms: record.created_at.as_millis(),
            retired_at_ms,
            key_fingerprint: record
                .cert
                .decode_unverified()
                .map(|cert| Fingerprint::of(&cert.signing_key).to_string())
                .unwrap_or_else(|_| "unreadable".into()),
        }
    }
}

/// The state name of a contact waiting for our owner's decision.
pub const REQUEST_RECEIVED: &str = "request received";

/// One contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    /// The owner's fingerprint: the contact's id in commands (a unique prefix is enough).
    pub id: String,
    /// Their name as they present it.
    pub name: String,
    /// `request sent`, `request received`, `connected` or `removed`.
    pub state: String,
    /// The identity of ours they may see and talk to.
    pub assigned_identity: Option<String>,
    /// Their node's peer id.
    pub peer_id: String,
    /// How many of their identity tags we can see.
    pub visible_tags: usize,
}

impl ContactView {
    /// The view of `record`; `assigned` is the tag of the assigned identity.
    pub fn of(record: &ContactRecord, assigned: Option<String>) -> ContactView {
        let visible_tags = record
            .their_tags
            .as_ref()
            .and_then(|tags| tags.decode_unverified().ok())
            .map_or(0, |announcement| announcement.tags.len());
        ContactView {
            id: record.owner.fingerprint().to_string(),
            name: record.display_name.clone(),
            state: record.state.name().into(),
            assigned_identity: assigned,
            peer_id: crate::network::peer_id_of(&record.device_key).to_string(),
            visible_tags,
        }
    }

    /// Whether the contact is waiting for our owner's decision.
    pub fn is_request(&self) -> bool {
        self.state == REQUEST_RECEIVED
    }
}

/// One of a contact's identities, as they show it to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagView {
    /// The identity's role tag.
    pub tag: String,
    /// Its id.
    pub id: String,
    /// What it is for.
    pub description: String,
    /// What it offers.
    pub offers: Vec<String>,
    /// Fingerprint of its signing key.
    pub key_fingerprint: String,
}

/// A contact's identities as seen from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactTagsView {
    /// The contact.
    pub contact: ContactView,
    /// The sequence number of the announcement they come from (0: none received yet).
    pub seq: u64,
    /// Their identities visible to us.
    pub tags: Vec<TagView>,
}

/// A fresh invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteView {
    /// The code to hand over.
    pub code: String,
    /// When it expires (ms since the epoch).
    pub expires_at_ms: u64,
}

/// A node's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// The node's name.
    pub name: String,
    /// The owner's fingerprint.
    pub owner: String,
    /// The node's peer id.
    pub peer_id: String,
    /// Addresses others can reach it at.
    pub addresses: Vec<String>,
    /// Peers connected right now.
    pub connected_peers: usize,
}

/// The result of verifying the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSummaryView {
    /// Entries verified.
    pub entries: u64,
    /// Hash of the last entry.
    pub head: String,
    /// Fingerprint of the node key that signed it.
    pub node: String,
    /// Fingerprint of the owner.
    pub owner: String,
}

/// Formats a fingerprint-like id for matching: lowercase hex without dashes.
pub(crate) fn normalize_id(text: &str) -> String {
    text.chars().filter(|c| *c != '-').flat_map(char::to_lowercase).collect()
}

/// The owner fingerprint as used in contact ids.
pub(crate) fn contact_id(fingerprint: &Fingerprint) -> String {
    normalize_id(&fingerprint.to_string())
}
