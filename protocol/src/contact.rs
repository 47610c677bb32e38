//! Contacts: the signed request / accept / removal that make and end a friendship between two
//! owners, and the pure [`ContactRelation`] state machine that validates them.
//!
//! A request is only admitted with a valid one-time invite token that the receiving owner
//! issued; everything else from a stranger is refused.

mod invite;
mod lifecycle;

use std::fmt;

use clawnet_crypto::rng::random_bytes;
use clawnet_crypto::{
    AgreementPublicKey, DeviceCert, Domain, Hash32, HashDomain, OwnerId, Signable, Signed, Timestamp, WireFormat,
};
use serde::{Deserialize, Serialize};

pub use invite::{InviteCode, InviteCodeError};
pub use lifecycle::{ContactError, ContactRelation, ContactState, Invite};

use crate::ids::Nonce;

/// A one-time secret in an invite code; whoever presents it may ask to become a contact.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteToken(pub [u8; 32]);

impl InviteToken {
    /// A fresh random token.
    pub fn random() -> InviteToken {
        InviteToken(random_bytes())
    }

    /// The key under which the issuer stores the invite, so the token itself need not be stored.
    pub fn lookup_key(&self) -> Hash32 {
        Hash32::of(HashDomain::InviteToken, &self.0)
    }
}

impl fmt::Debug for InviteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteToken(..)")
    }
}

/// An owner asks to become a contact of the owner who gave them an invite. Signed by the
/// requesting owner's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRequest {
    /// The requesting owner.
    pub from: OwnerId,
    /// The invited-by owner.
    pub to: OwnerId,
    /// The requester's name, as they present it.
    pub display_name: String,
    /// The requester's X25519 key for sealed contact data.
    pub contact_key: AgreementPublicKey,
    /// The requester's node, certified by the requester.
    pub device: Signed<DeviceCert>,
    /// Where the requester's node can be reached (multiaddrs), so the accept can find it.
    pub addresses: Vec<String>,
    /// The token from the invite.
    pub invite: InviteToken,
    /// When.
    pub created_at: Timestamp,
    /// Single use.
    pub nonce: Nonce,
}

impl WireFormat for ContactRequest {
    const NAME: &'static str = "contact request";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 2048;
}

impl Signable for ContactRequest {
    const DOMAIN: Domain = Domain::ContactRequest;
}

/// The hash an accept refers to.
pub fn request_hash(request: &Signed<ContactRequest>) -> Hash32 {
    request.body_hash(HashDomain::ContactRequest)
}

/// The invited-by owner accepts a request. Signed by that owner's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactAccept {
    /// The accepting owner.
    pub from: OwnerId,
    /// The requester.
    pub to: OwnerId,
    /// Hash of the request accepted.
    pub request: Hash32,
    /// The accepter's name.
    pub display_name: String,
    /// The accepter's X25519 key for sealed contact data.
    pub contact_key: AgreementPublicKey,
    /// The accepter's node.
    pub device: Signed<DeviceCert>,
    /// Where the accepter's node can be reached (multiaddrs).
    pub addresses: Vec<String>,
    /// When.
    pub created_at: Timestamp,
    /// Single use.
    pub nonce: Nonce,
}

impl WireFormat for ContactAccept {
    const NAME: &'static str = "contact accept";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 2048;
}

impl Signable for ContactAccept {
    const DOMAIN: Domain = Domain::ContactAccept;
}

/// An owner ends a contact relationship (or refuses a pending request). Signed by that owner's
/// root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRemoval {
    /// The owner ending it.
    pub from: OwnerId,
    /// The other owner.
    pub to: OwnerId,
    /// When.
    pub created_at: Timestamp,
    /// Single use.
    pub nonce: Nonce,
}

impl WireFormat for ContactRemoval {
    const NAME: &'static str = "contact removal";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 256;
}

impl Signable for ContactRemoval {
    const DOMAIN: Domain = Domain::ContactRemoval;
}
