//! Domain-separation contexts: one per kind of signed object and one per kind of hash.
//!
//! A signature is made over `context || 0x00 || body`, a hash over `context || 0x00 || bytes`.
//! Context strings never contain a NUL byte, so the framing is unambiguous, and they are all
//! listed here so that no two kinds can share one by accident. Retired contexts are not reused:
//! `clawnet/v1/delivery-ack` (delivery replies were signed until the Noise channel was found to
//! prove the same, see `clawnet_protocol::wire`).

/// What a signature is for. The signer and the verifier must agree on it, so a signature over one
/// kind of object is never valid as another kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Domain {
    /// An owner certifies a device (node) key.
    DeviceCert,
    /// An owner certifies an identity agent's keys.
    IdentityCert,
    /// An owner revokes an identity agent.
    Revocation,
    /// An owner asks another owner to become contacts.
    ContactRequest,
    /// An owner accepts a contact request.
    ContactAccept,
    /// An owner ends a contact relationship.
    ContactRemoval,
    /// An owner announces the identity tags a contact may see.
    TagAnnouncement,
    /// An identity agent proposes a collaboration session.
    Proposal,
    /// An owner consents to a proposal.
    Consent,
    /// An owner rejects a proposal.
    Rejection,
    /// An identity agent speaks one turn of a session.
    Turn,
    /// An owner closes a session.
    Close,
    /// A node appends an entry to its audit chain.
    AuditEntry,
    /// A node leaves a delivery at a relay's mailbox for an offline node.
    MailboxLetter,
}

impl Domain {
    /// Every domain, for exhaustive checks.
    pub const ALL: [Domain; 14] = [
        Domain::DeviceCert,
        Domain::IdentityCert,
        Domain::Revocation,
        Domain::ContactRequest,
        Domain::ContactAccept,
        Domain::ContactRemoval,
        Domain::TagAnnouncement,
        Domain::Proposal,
        Domain::Consent,
        Domain::Rejection,
        Domain::Turn,
        Domain::Close,
        Domain::AuditEntry,
        Domain::MailboxLetter,
    ];

    /// The context string mixed into every signature of this kind.
    pub const fn context(self) -> &'static str {
        match self {
            Domain::DeviceCert => "clawnet/v1/device-cert",
            Domain::IdentityCert => "clawnet/v1/identity-cert",
            Domain::Revocation => "clawnet/v1/revocation",
            Domain::ContactRequest => "clawnet/v1/contact-request",
            Domain::ContactAccept => "clawnet/v1/contact-accept",
            Domain::ContactRemoval => "clawnet/v1/contact-removal",
            Domain::TagAnnouncement => "clawnet/v1/tag-announcement",
            Domain::Proposal => "clawnet/v1/proposal",
            Domain::Consent => "clawnet/v1/consent",
            Domain::Rejection => "clawnet/v1/rejection",
            Domain::Turn => "clawnet/v1/turn",
            Domain::Close => "clawnet/v1/close",
            Domain::AuditEntry => "clawnet/v1/audit-entry",
            Domain::MailboxLetter => "clawnet/v1/mailbox-letter",
        }
    }

    /// The exact bytes an ed25519 signature of this kind covers.
    pub(crate) fn signing_message(self, body: &[u8]) -> Vec<u8> {
        frame(self.context(), body)
    }
}

/// What a hash identifies. Hashes of different kinds never collide by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashDomain {
    /// Links an audit entry to its predecessor.
    AuditLink,
    /// Names a proposal; consents sign over it.
    Proposal,
    /// Names a session grant (proposal plus both consents); the first turn links to it.
    Grant,
    /// Links a session turn to its predecessor.
    TurnLink,
    /// Names a wire message for idempotent delivery.
    MessageId,
    /// Derives the human-comparable fingerprint of a key.
    Fingerprint,
    /// Commits a sealed envelope to its content key.
    SealCommitment,
    /// Names a contact request, so the accept can refer to it.
    ContactRequest,
    /// Derives a lookup key for an invite token without storing the token.
    InviteToken,
    /// Checks a record of a node database's commit journal (a torn or stale record fails).
    JournalRecord,
}

impl HashDomain {
    /// Every hash domain, for exhaustive checks.
    pub const ALL: [HashDomain; 10] = [
        HashDomain::AuditLink,
        HashDomain::Proposal,
        HashDomain::Grant,
        HashDomain::TurnLink,
        HashDomain::MessageId,
        HashDomain::Fingerprint,
        HashDomain::SealCommitment,
        HashDomain::ContactRequest,
        HashDomain::InviteToken,
        HashDomain::JournalRecord,
    ];

    /// The context string mixed into every hash of this kind.
    pub const fn context(self) -> &'static str {
        match self {
            HashDomain::AuditLink => "clawnet/v1/hash/audit-link",
            HashDomain::Proposal => "clawnet/v1/hash/proposal",
            HashDomain::Grant => "clawnet/v1/hash/grant",
            HashDomain::TurnLink => "clawnet/v1/hash/turn-link",
            HashDomain::MessageId => "clawnet/v1/hash/message-id",
            HashDomain::Fingerprint => "clawnet/v1/hash/fingerprint",
            HashDomain::SealCommitment => "clawnet/v1/hash/seal-commitment",
            HashDomain::ContactRequest => "clawnet/v1/hash/contact-request",
            HashDomain::InviteToken => "clawnet/v1/hash/invite-token",
            HashDomain::JournalRecord => "clawnet/v1/hash/journal-record",
        }
    }
}

fn frame(context: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + 1 + body.len());
    message.extend_from_slice(context.as_bytes());
    message.push(0);
    message.extend_from_slice(body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn contexts_are_unique_and_nul_free() {
        let mut seen = HashSet::new();
        for context in Domain::ALL.iter().map(|d| d.context()).chain(HashDomain::ALL.iter().map(|d| d.context())) {
            assert!(!context.contains('\0'), "{context} contains NUL");
            assert!(seen.insert(context), "{context} is used twice");
        }
        assert_eq!(seen.len(), Domain::ALL.len() + HashDomain::ALL.len());
    }

    #[test]
    fn signing_message_is_context_nul_body() {
        let message = Domain::Consent.signing_message(b"xy");
        assert_eq!(message, b"clawnet/v1/consent\0xy");
    }
}
