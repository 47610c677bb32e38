//! Every reason a session input is refused.

use clawnet_crypto::{DecodeError, IdentityId, VerifyError};

use crate::limits::FieldTooLong;
use crate::roster::TrustError;

/// Why a proposal, consent, rejection, turn or close was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The signature does not verify (forged, altered, or made for another kind of object).
    #[error("{what}: signature does not verify")]
    BadSignature {
        /// The kind of object.
        what: &'static str,
    },
    /// A valid signature by the wrong key (for example a consent not signed by the owner it names).
    #[error("{what}: not signed by the owner it names")]
    WrongSigner {
        /// The kind of object.
        what: &'static str,
    },
    /// The signing identity key is not certified by the owner it claims, or was revoked.
    #[error("{what}: {source}")]
    Untrusted {
        /// The kind of object.
        what: &'static str,
        /// What the roster said.
        source: TrustError,
    },
    /// The signed bytes do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A field is over its limit.
    #[error(transparent)]
    FieldTooLong(#[from] FieldTooLong),
    /// The object names another session.
    #[error("{what} is for another session")]
    WrongSession {
        /// The kind of object.
        what: &'static str,
    },
    /// A consent or rejection is over a different proposal hash than this session's.
    #[error("{what} is over a different proposal")]
    ProposalMismatch {
        /// The kind of object.
        what: &'static str,
    },
    /// The object has expired.
    #[error("{what} has expired")]
    Expired {
        /// The kind of object.
        what: &'static str,
    },
    /// The object is dated further in the future than clock skew explains.
    #[error("{what} is dated in the future")]
    FromTheFuture {
        /// The kind of object.
        what: &'static str,
    },
    /// The nonce was seen before: a replay.
    #[error("{what} was already used (replay)")]
    Replay {
        /// The kind of object.
        what: &'static str,
    },
    /// The proposal nests deeper than allowed.
    #[error("recursion depth {depth} exceeds the maximum of {max}")]
    DepthExceeded {
        /// Requested depth.
        depth: u8,
        /// Allowed depth.
        max: u8,
    },
    /// `depth` and `parent` disagree (a parent without depth or depth without a parent), or a
    /// child does not extend its parent.
    #[error("proposal parent and depth are inconsistent")]
    InconsistentParent,
    /// The proposal asks for more turns than allowed.
    #[error("proposal asks for {requested} turns, more than the maximum of {max}")]
    TooManyTurns {
        /// Requested.
        requested: u16,
        /// Allowed.
        max: u16,
    },
    /// A proposal with the same owner on both sides.
    #[error("a session needs two different owners")]
    SameOwner,
    /// The signer of a consent, rejection or close is neither of the two owners.
    #[error("{what} signed by an owner who is not a party to this session")]
    NotAParty {
        /// The kind of object.
        what: &'static str,
    },
    /// The owner already consented.
    #[error("owner already consented to this session")]
    AlreadyConsented,
    /// A turn arrived before both consents.
    #[error("turn refused: the session has no grant (both owners must consent first)")]
    NoGrant,
    /// The session was rejected or closed.
    #[error("the session is over")]
    SessionOver,
    /// The session ended by marker or turn limit and only a close is accepted now.
    #[error("the session has ended; only a close is accepted")]
    Ending,
    /// A turn by an identity other than the two granted ones.
    #[error("identity {0:?} is not a participant of this session")]
    NotAParticipant(IdentityId),
    /// A granted identity spoke when it was the other one's turn.
    #[error("turn {turn_no} is not {speaker:?}'s to speak")]
    OutOfTurn {
        /// Turn number.
        turn_no: u32,
        /// Who tried.
        speaker: IdentityId,
    },
    /// The turn number is not the next one.
    #[error("expected turn {expected}, got turn {found}")]
    WrongTurnNumber {
        /// The next turn number.
        expected: u32,
        /// The one received.
        found: u32,
    },
    /// The turn does not link to the previous turn.
    #[error("turn {turn_no} does not link to the previous turn")]
    WrongPreviousHash {
        /// Turn number.
        turn_no: u32,
    },
    /// The turn would exceed the granted number of turns.
    #[error("turn {turn_no} exceeds the granted maximum of {max} turns")]
    TurnLimitExceeded {
        /// Turn number.
        turn_no: u32,
        /// Granted turns.
        max: u16,
    },
    /// A close that describes another transcript than ours.
    #[error("close describes {their_turns} turns, this node holds {our_turns}")]
    TranscriptMismatch {
        /// Turns in the close.
        their_turns: u32,
        /// Turns we hold.
        our_turns: u32,
    },
    /// A close whose reason does not fit the session (an end marker nobody sent, a turn limit not
    /// reached).
    #[error("close reason does not match the session")]
    CloseReasonMismatch,
}

impl SessionError {
    /// Whether this refusal indicates an attack or a misbehaving peer (and so is recorded as a
    /// security event), rather than an ordinary race or a late message.
    pub fn is_security_event(&self) -> bool {
        !matches!(self, SessionError::SessionOver | SessionError::Ending)
    }

    pub(crate) fn from_verify(what: &'static str, err: VerifyError) -> SessionError {
        match err {
            VerifyError::BadSignature { .. } => SessionError::BadSignature { what },
            VerifyError::WrongSigner { .. } => SessionError::WrongSigner { what },
            VerifyError::Decode(err) => SessionError::Decode(err),
            _ => SessionError::BadSignature { what },
        }
    }
}
