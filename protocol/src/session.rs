//! Collaboration sessions: the signed objects that create, run and end one (proposal, consent,
//! rejection, turn, close) and the pure [`Session`] state machine that validates them.
//!
//! A session exists only with a proposal signed by the initiating identity plus both owners'
//! consents over the same proposal hash (the [`SessionGrant`]). Turns alternate between the two
//! granted identities, starting with the initiator, and each links to the hash of the previous
//! one (the first links to the grant), so both nodes hold the same verifiable transcript.

mod error;
mod lifecycle;

use clawnet_crypto::{Domain, Hash32, HashDomain, IdentityId, OwnerId, Signable, Signed, Timestamp, WireFormat};
use serde::{Deserialize, Serialize};

pub use error::SessionError;
pub use lifecycle::{AcceptedTurn, ConsentProgress, Phase, Session, SessionRules, StoredSession};

use crate::ids::{Nonce, SessionId};
use crate::limits;

/// One side of a session: an owner and the identity agent that speaks for them in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    /// The owner.
    pub owner: OwnerId,
    /// Their identity agent.
    pub identity: IdentityId,
}

/// An identity agent asks to collaborate with another owner's identity. Signed by the
/// initiating identity's key; consents sign over its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The session this would create.
    pub session: SessionId,
    /// Who asks: owner and identity.
    pub initiator: Party,
    /// Whom: the counterpart owner and the identity that owner assigned to the initiator's owner.
    pub target: Party,
    /// What it is for, for both owners to read before consenting.
    pub purpose: String,
    /// Turns allowed, both sides together.
    pub max_turns: u16,
    /// 0 for a top-level session; parent's depth + 1 for a session opened from inside another.
    pub depth: u8,
    /// The session this one was opened from, when `depth > 0`.
    pub parent: Option<SessionId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// Consents must arrive before this.
    pub expires_at: Timestamp,
    /// Single use.
    pub nonce: Nonce,
}

impl WireFormat for Proposal {
    const NAME: &'static str = "proposal";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 4 * 1024;
}

impl Signable for Proposal {
    const DOMAIN: Domain = Domain::Proposal;
}

/// The hash consents and rejections refer to.
pub fn proposal_hash(proposal: &Signed<Proposal>) -> Hash32 {
    proposal.body_hash(HashDomain::Proposal)
}

/// An owner agrees to a proposal. Signed by the owner's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The proposal agreed to.
    pub proposal: Hash32,
    /// The consenting owner.
    pub owner: OwnerId,
    /// The head of the consenting node's audit chain when consent was given: the grant pins
    /// both histories.
    pub audit_head: Hash32,
    /// When it was given.
    pub issued_at: Timestamp,
    /// It cannot start a session after this.
    pub expires_at: Timestamp,
    /// Single use.
    pub nonce: Nonce,
}

impl WireFormat for Consent {
    const NAME: &'static str = "consent";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 512;
}

impl Signable for Consent {
    const DOMAIN: Domain = Domain::Consent;
}

/// An owner refuses a proposal. Signed by the owner's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The proposal refused.
    pub proposal: Hash32,
    /// The refusing owner.
    pub owner: OwnerId,
    /// Why, for the other owner.
    pub reason: String,
    /// When.
    pub issued_at: Timestamp,
    /// Single use.
    pub nonce: Nonce,
}

impl WireFormat for Rejection {
    const NAME: &'static str = "rejection";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 1024;
}

impl Signable for Rejection {
    const DOMAIN: Domain = Domain::Rejection;
}

/// How an agent ends a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndMarker {
    /// The goal was reached.
    Resolved,
    /// The agents cannot agree.
    Deadlock,
    /// A decision only the owner can make.
    NeedsOwner,
}

/// One message of a session. Signed by the speaking identity's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The session.
    pub session: SessionId,
    /// 1 for the first turn.
    pub turn_no: u32,
    /// Hash of the previous turn; the grant hash for turn 1.
    pub prev: Hash32,
    /// The speaking identity.
    pub speaker: IdentityId,
    /// What it says.
    pub text: String,
    /// Set on the agent's last turn.
    pub end: Option<EndMarker>,
    /// When it was sent.
    pub sent_at: Timestamp,
}

impl WireFormat for Turn {
    const NAME: &'static str = "turn";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = limits::MAX_TURN_TEXT + 256;
}

impl Signable for Turn {
    const DOMAIN: Domain = Domain::Turn;
}

/// The hash the next turn links to.
pub fn turn_hash(turn: &Signed<Turn>) -> Hash32 {
    turn.body_hash(HashDomain::TurnLink)
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CloseReason {
    /// An agent ended it with a marker.
    Ended(EndMarker),
    /// The turn limit was reached.
    MaxTurns,
    /// An owner stopped it.
    OwnerStopped,
}

/// The final word on a session: who closed it, why, and the transcript it closes. Signed by
/// the closing owner's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    /// The session.
    pub session: SessionId,
    /// The closing owner.
    pub owner: OwnerId,
    /// Why.
    pub reason: CloseReason,
    /// Turns in the closed transcript.
    pub turns: u32,
    /// Hash of its last turn (the grant hash if there were none, zero if never granted).
    pub last: Hash32,
    /// When.
    pub closed_at: Timestamp,
    /// Single use.
    pub nonce: Nonce,
}

impl WireFormat for Close {
    const NAME: &'static str = "close";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 512;
}

impl Signable for Close {
    const DOMAIN: Domain = Domain::Close;
}

/// A proposal and both owners' consents over it: the authority under which a session runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    /// The proposal, signed by the initiating identity.
    pub proposal: Signed<Proposal>,
    /// The initiator's owner's consent.
    pub initiator_consent: Signed<Consent>,
    /// The target's owner's consent.
    pub target_consent: Signed<Consent>,
}

impl SessionGrant {
    /// The hash turn 1 links to.
    pub fn hash(&self) -> Hash32 {
        grant_hash(&self.proposal, &self.initiator_consent, &self.target_consent)
    }
}

pub(crate) fn grant_hash(
    proposal: &Signed<Proposal>,
    initiator_consent: &Signed<Consent>,
    target_consent: &Signed<Consent>,
) -> Hash32 {
    let proposal = proposal_hash(proposal);
    let initiator = initiator_consent.body_hash(HashDomain::Grant);
    let target = target_consent.body_hash(HashDomain::Grant);
    Hash32::of_parts(HashDomain::Grant, &[proposal.as_bytes(), initiator.as_bytes(), target.as_bytes()])
}
