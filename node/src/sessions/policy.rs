//! Owner policies: narrow standing decisions that answer some approvals without asking, and the
//! local bounds every session must fit in. The default is to ask.

use clawnet_protocol::session::SessionRules;
use clawnet_storage::approvals::{ApprovalRecord, ApprovalRequest};
use clawnet_storage::contacts::ContactRecord;
use clawnet_storage::identities::IdentityRecord;
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::views::{contact_id, normalize_id};

/// `[sessions]` in `config.toml`: this node's bounds on sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Deepest recursion accepted: a session opened from inside a session opened from inside
    /// ... (the design's `D`).
    pub max_depth: u8,
    /// Most turns a proposal may ask for (sent or received).
    pub max_turns: u16,
    /// Turns our own proposals ask for.
    pub default_turns: u16,
    /// Seconds a proposal and its consents stay valid while the other owner decides.
    pub consent_validity_secs: u64,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings { max_depth: 2, max_turns: 40, default_turns: 12, consent_validity_secs: 7 * 24 * 3600 }
    }
}

impl SessionSettings {
    /// The protocol rules these settings give.
    pub fn rules(&self) -> SessionRules {
        SessionRules { max_depth: self.max_depth, max_turns: self.max_turns, ..SessionRules::default() }
    }

    /// Refuses settings that would make every session fail.
    pub fn validate(&self) -> Result<(), NodeError> {
        let cap = clawnet_protocol::limits::MAX_TURNS_CAP;
        if self.max_turns == 0 || self.max_turns > cap {
            return Err(NodeError::Config(format!("sessions.max_turns must be between 1 and {cap}")));
        }
        if self.default_turns == 0 || self.default_turns > self.max_turns {
            return Err(NodeError::Config("sessions.default_turns must be between 1 and sessions.max_turns".into()));
        }
        if self.consent_validity_secs < 60 {
            return Err(NodeError::Config("sessions.consent_validity_secs must be at least 60".into()));
        }
        Ok(())
    }
}

/// Which approvals a policy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDirection {
    /// Our identity's own requests to work with the contact.
    Outgoing,
    /// The contact's invitations to our identity.
    Incoming,
    /// Both.
    #[default]
    Both,
}

/// `[[policy]]` in `config.toml`: approve collaboration between one of our identities and one
/// contact without asking, within bounds. Held messages are never pre-approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerPolicy {
    /// The contact: their exact name or a prefix of their fingerprint.
    pub contact: String,
    /// Our identity's tag.
    pub identity: String,
    /// Requests, invitations or both.
    #[serde(default)]
    pub direction: PolicyDirection,
    /// Sessions of at most this many turns.
    #[serde(default = "default_policy_turns")]
    pub max_turns: u16,
    /// Whether sessions opened from inside other sessions are covered too.
    #[serde(default)]
    pub recursion: bool,
}

fn default_policy_turns() -> u16 {
    SessionSettings::default().default_turns
}

impl OwnerPolicy {
    /// Whether this policy approves `approval`, asked by `identity` and concerning `contact`.
    /// `turns` is what the session would be granted.
    pub fn approves(
        &self,
        approval: &ApprovalRecord,
        identity: &IdentityRecord,
        contact: &ContactRecord,
        turns: u16,
    ) -> bool {
        let (incoming, nested) = match &approval.request {
            ApprovalRequest::Collaboration { parent, .. } => (false, parent.is_some()),
            ApprovalRequest::SessionInvitation { depth, .. } => (true, *depth > 0),
            ApprovalRequest::HeldMessage { .. } => return false,
        };
        let direction = match self.direction {
            PolicyDirection::Both => true,
            PolicyDirection::Incoming => incoming,
            PolicyDirection::Outgoing => !incoming,
        };
        let wanted = normalize_id(&self.contact);
        let names_contact = contact.display_name.eq_ignore_ascii_case(self.contact.trim())
            || (!wanted.is_empty() && contact_id(&contact.owner.fingerprint()).starts_with(&wanted));
        direction
            && names_contact
            && identity.tag.as_str() == self.identity.trim()
            && turns <= self.max_turns
            && (self.recursion || !nested)
    }

    /// A short description for the audit trail.
    pub fn describe(&self, index: usize) -> String {
        format!("owner policy #{}: {} with {}", index + 1, self.identity, self.contact)
    }
}
