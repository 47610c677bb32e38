//! The contact state machine, seen from one owner's node.
//!
//! ```text
//!  (we use their invite)  RequestSent ──accept received──▶ Connected
//!  (their request, valid invite) RequestReceived ──owner accepts──▶ Connected
//!                                       └──owner rejects──▶ Removed
//!  Connected / RequestSent ──either side removes──▶ Removed
//! ```

use std::time::Duration;

use clawnet_crypto::{DeviceCert, Hash32, OwnerId, Signed, Timestamp, Verified, WireFormat};
use serde::{Deserialize, Serialize};

use super::{ContactAccept, ContactRemoval, ContactRequest, request_hash};
use crate::limits::{self, FieldTooLong, check_len};
use crate::replay::NonceLedger;

/// How long the nonce of a contact message is remembered; older messages are refused as stale.
const CONTACT_MESSAGE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// An invite this owner issued, as stored (the token itself is not kept, only its lookup key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invite {
    /// When it stops being valid.
    pub expires_at: Timestamp,
    /// Whether a request already used it (invites are single use).
    pub used: bool,
}

/// Where a relationship with one other owner stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContactState {
    /// We sent a request; waiting for their accept.
    RequestSent {
        /// Hash of our request.
        request: Hash32,
    },
    /// They sent a request with a valid invite; waiting for our owner.
    RequestReceived {
        /// Hash of their request.
        request: Hash32,
    },
    /// Both sides agreed.
    Connected,
    /// Ended (removed by either side, or a request rejected).
    Removed,
}

impl ContactState {
    /// A short name for people and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            ContactState::RequestSent { .. } => "request sent",
            ContactState::RequestReceived { .. } => "request received",
            ContactState::Connected => "connected",
            ContactState::Removed => "removed",
        }
    }
}

/// Why a contact message or step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContactError {
    /// The signature does not verify.
    #[error("{what}: signature does not verify")]
    BadSignature {
        /// The kind of message.
        what: &'static str,
    },
    /// The message is not signed by the owner it claims to come from.
    #[error("{what}: not signed by the owner it names")]
    WrongSigner {
        /// The kind of message.
        what: &'static str,
    },
    /// The signed bytes do not decode.
    #[error(transparent)]
    Decode(#[from] clawnet_crypto::DecodeError),
    /// A field is over its limit.
    #[error(transparent)]
    FieldTooLong(#[from] FieldTooLong),
    /// The message is addressed to another owner.
    #[error("{what} is addressed to another owner")]
    NotForUs {
        /// The kind of message.
        what: &'static str,
    },
    /// No invite of ours has this token: forged, or from a stranger.
    #[error("contact request with an unknown invite token")]
    UnknownInvite,
    /// The invite has expired.
    #[error("contact request with an expired invite")]
    ExpiredInvite,
    /// The invite was already used.
    #[error("contact request with an invite that was already used")]
    InviteUsed,
    /// The requester's device certificate is not valid.
    #[error("contact device certificate is not valid: {0}")]
    BadDevice(String),
    /// The message is older than contact messages may be.
    #[error("{what} is too old")]
    Stale {
        /// The kind of message.
        what: &'static str,
    },
    /// The message is dated in the future.
    #[error("{what} is dated in the future")]
    FromTheFuture {
        /// The kind of message.
        what: &'static str,
    },
    /// The nonce was seen before.
    #[error("{what} was already used (replay)")]
    Replay {
        /// The kind of message.
        what: &'static str,
    },
    /// The accept refers to a request we did not send.
    #[error("contact accept does not answer our request")]
    RequestMismatch,
    /// The step does not apply in the current state.
    #[error("cannot {step} a contact in state '{state}'")]
    InvalidTransition {
        /// What was attempted.
        step: &'static str,
        /// The state it was in.
        state: &'static str,
    },
}

impl ContactError {
    /// Whether this refusal indicates an attack (recorded as a security event).
    pub fn is_security_event(&self) -> bool {
        !matches!(self, ContactError::InvalidTransition { .. })
    }
}

/// One relationship between this owner and another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRelation {
    /// The other owner.
    pub peer: OwnerId,
    /// Where it stands.
    pub state: ContactState,
}

impl ContactRelation {
    /// We sent `request` (built from their invite).
    pub fn request_sent(request: &Signed<ContactRequest>, peer: OwnerId) -> ContactRelation {
        ContactRelation { peer, state: ContactState::RequestSent { request: request_hash(request) } }
    }

    /// Validates an inbound request against the invite it presents. `invite` is what we stored
    /// under the request's token lookup key, if anything.
    pub fn request_received(
        signed: &Signed<ContactRequest>,
        me: &OwnerId,
        invite: Option<Invite>,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<(ContactRelation, Verified<ContactRequest>), ContactError> {
        let what = ContactRequest::NAME;
        let request = verify(signed)?;
        if signed.signer() != request.from.key() {
            return Err(ContactError::WrongSigner { what });
        }
        if &request.to != me {
            return Err(ContactError::NotForUs { what });
        }
        let invite = invite.ok_or(ContactError::UnknownInvite)?;
        if invite.expires_at <= now {
            return Err(ContactError::ExpiredInvite);
        }
        if invite.used {
            return Err(ContactError::InviteUsed);
        }
        check_len("display name", &request.display_name, limits::MAX_DISPLAY_NAME)?;
        limits::check_addresses(&request.addresses)?;
        DeviceCert::verify_for(&request.device, &request.from, now)
            .map_err(|err| ContactError::BadDevice(err.to_string()))?;
        check_fresh(what, request.created_at, now, ledger, request.nonce)?;
        let relation = ContactRelation {
            peer: request.from,
            state: ContactState::RequestReceived { request: request_hash(signed) },
        };
        Ok((relation, request))
    }

    /// Our owner accepts their request.
    pub fn accept(&mut self) -> Result<(), ContactError> {
        match self.state {
            ContactState::RequestReceived { .. } => {
                self.state = ContactState::Connected;
                Ok(())
            }
            ref other => Err(ContactError::InvalidTransition { step: "accept", state: other.name() }),
        }
    }

    /// Our owner rejects their request.
    pub fn reject(&mut self) -> Result<(), ContactError> {
        match self.state {
            ContactState::RequestReceived { .. } => {
                self.state = ContactState::Removed;
                Ok(())
            }
            ref other => Err(ContactError::InvalidTransition { step: "reject", state: other.name() }),
        }
    }

    /// Their accept of our request arrived.
    pub fn accept_received(
        &mut self,
        signed: &Signed<ContactAccept>,
        me: &OwnerId,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<Verified<ContactAccept>, ContactError> {
        let what = ContactAccept::NAME;
        let ContactState::RequestSent { request } = self.state else {
            return Err(ContactError::InvalidTransition { step: "receive an accept for", state: self.state.name() });
        };
        let accept = verify(signed)?;
        if signed.signer() != self.peer.key() || accept.from != self.peer {
            return Err(ContactError::WrongSigner { what });
        }
        if &accept.to != me {
            return Err(ContactError::NotForUs { what });
        }
        if accept.request != request {
            return Err(ContactError::RequestMismatch);
        }
        check_len("display name", &accept.display_name, limits::MAX_DISPLAY_NAME)?;
        limits::check_addresses(&accept.addresses)?;
        DeviceCert::verify_for(&accept.device, &accept.from, now)
            .map_err(|err| ContactError::BadDevice(err.to_string()))?;
        check_fresh(what, accept.created_at, now, ledger, accept.nonce)?;
        self.state = ContactState::Connected;
        Ok(accept)
    }

    /// Our owner removes the contact (or withdraws our request).
    pub fn remove(&mut self) -> Result<(), ContactError> {
        match self.state {
            ContactState::Connected | ContactState::RequestSent { .. } => {
                self.state = ContactState::Removed;
                Ok(())
            }
            ref other => Err(ContactError::InvalidTransition { step: "remove", state: other.name() }),
        }
    }

    /// Their removal arrived.
    pub fn removal_received(
        &mut self,
        signed: &Signed<ContactRemoval>,
        me: &OwnerId,
        now: Timestamp,
        ledger: &mut impl NonceLedger,
    ) -> Result<Verified<ContactRemoval>, ContactError> {
        let what = ContactRemoval::NAME;
        if self.state == ContactState::Removed {
            return Err(ContactError::InvalidTransition { step: "receive a removal for", state: self.state.name() });
        }
        let removal = verify(signed)?;
        if signed.signer() != self.peer.key() || removal.from != self.peer {
            return Err(ContactError::WrongSigner { what });
        }
        if &removal.to != me {
            return Err(ContactError::NotForUs { what });
        }
        check_fresh(what, removal.created_at, now, ledger, removal.nonce)?;
        self.state = ContactState::Removed;
        Ok(removal)
    }
}

fn verify<T: clawnet_crypto::Signable>(signed: &Signed<T>) -> Result<Verified<T>, ContactError> {
    signed.verify().map_err(|err| match err {
        clawnet_crypto::VerifyError::Decode(err) => ContactError::Decode(err),
        _ => ContactError::BadSignature { what: T::NAME },
    })
}

fn check_fresh(
    what: &'static str,
    created_at: Timestamp,
    now: Timestamp,
    ledger: &mut impl NonceLedger,
    nonce: crate::ids::Nonce,
) -> Result<(), ContactError> {
    if created_at > now.plus(limits::MAX_CLOCK_SKEW) {
        return Err(ContactError::FromTheFuture { what });
    }
    let keep_until = created_at.plus(CONTACT_MESSAGE_LIFETIME);
    if keep_until <= now {
        return Err(ContactError::Stale { what });
    }
    if ledger.seen(&nonce) {
        return Err(ContactError::Replay { what });
    }
    ledger.record(nonce, keep_until);
    Ok(())
}
