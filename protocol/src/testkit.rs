//! Deterministic owners, identities and signed objects for tests (feature `testkit`).
//!
//! Everything derives from small seeds, so tests and checked-in test vectors are reproducible.

use std::collections::BTreeMap;
use std::time::Duration;

use clawnet_crypto::cert::ContextTag;
use clawnet_crypto::{
    AgreementSecret, DeviceCert, Hash32, IdentityCert, IdentityId, IdentitySecrets, OwnerId, OwnerSecrets, Revocation,
    Signed, SigningSecret, Timestamp,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::ids::{Nonce, SessionId};
use crate::roster::Roster;
use crate::session::{Close, CloseReason, Consent, EndMarker, Party, Proposal, Rejection, Turn, proposal_hash};

/// A fixed "now" for tests: 2026-01-01T00:00:00Z.
pub const T0: Timestamp = Timestamp(1_767_225_600_000);

/// One hour.
pub const HOUR: Duration = Duration::from_secs(3600);

/// A deterministic RNG for `seed`.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A test identity agent: its keys and owner-signed certificate.
#[derive(Debug)]
pub struct TestIdentity {
    /// Its id.
    pub id: IdentityId,
    /// Its keys.
    pub secrets: IdentitySecrets,
    /// Its certificate, signed by its owner.
    pub cert: Signed<IdentityCert>,
}

/// A test owner with a device key and identities, all derived from a seed.
#[derive(Debug)]
pub struct TestOwner {
    /// The owner's root keys.
    pub keys: OwnerSecrets,
    /// The node's device key.
    pub device: SigningSecret,
    /// Identities by tag.
    pub identities: BTreeMap<String, TestIdentity>,
    rng: ChaCha20Rng,
}

impl TestOwner {
    /// An owner derived from `seed`, with identities `tags`.
    pub fn new(seed: u64, tags: &[&str]) -> TestOwner {
        let mut rng = rng(seed);
        let keys = OwnerSecrets {
            signing: SigningSecret::generate_with(&mut rng),
            agreement: AgreementSecret::generate_with(&mut rng),
        };
        let device = SigningSecret::generate_with(&mut rng);
        let mut owner = TestOwner { keys, device, identities: BTreeMap::new(), rng };
        for tag in tags {
            owner.add_identity(tag);
        }
        owner
    }

    /// The owner id.
    pub fn id(&self) -> OwnerId {
        self.keys.owner_id()
    }

    /// Adds an identity with a fresh deterministic key.
    pub fn add_identity(&mut self, tag: &str) -> IdentityId {
        let mut id = [0u8; 16];
        rand_core::Rng::fill_bytes(&mut self.rng, &mut id);
        let id = IdentityId(id);
        let secrets = IdentitySecrets {
            signing: SigningSecret::generate_with(&mut self.rng),
            agreement: AgreementSecret::generate_with(&mut self.rng),
            epoch: 0,
        };
        let cert = IdentityCert {
            owner: self.id(),
            identity: id,
            tag: tag.parse::<ContextTag>().expect("test tags are valid"),
            signing_key: secrets.signing.public_key(),
            agreement_key: secrets.agreement.public_key(),
            epoch: 0,
            issued_at: T0,
        };
        let cert = Signed::sign(&cert, &self.keys.signing);
        self.identities.insert(tag.to_owned(), TestIdentity { id, secrets, cert });
        id
    }

    /// The identity with `tag`.
    pub fn identity(&self, tag: &str) -> &TestIdentity {
        &self.identities[tag]
    }

    /// The party (owner + identity) for `tag`.
    pub fn party(&self, tag: &str) -> Party {
        Party { owner: self.id(), identity: self.identity(tag).id }
    }

    /// What another node knows of this owner once it has seen all certificates.
    pub fn roster(&self) -> Roster {
        let mut roster = Roster::new(self.id());
        for identity in self.identities.values() {
            roster.admit_cert(&identity.cert).expect("own certificates verify");
        }
        roster
    }

    /// The owner's certificate for their device key.
    pub fn device_cert(&self) -> Signed<DeviceCert> {
        let cert = DeviceCert {
            owner: self.id(),
            device_key: self.device.public_key(),
            device_name: "test device".into(),
            issued_at: T0,
            expires_at: None,
        };
        Signed::sign(&cert, &self.keys.signing)
    }

    /// A revocation of `tag`'s identity.
    pub fn revoke(&self, tag: &str) -> Signed<Revocation> {
        let revocation = Revocation {
            owner: self.id(),
            identity: self.identity(tag).id,
            epoch: 0,
            revoked_at: T0,
            reason: "retired".into(),
        };
        Signed::sign(&revocation, &self.keys.signing)
    }

    /// A proposal by this owner's `tag` identity to `target`'s `target_tag` identity.
    pub fn propose(&self, tag: &str, target: &TestOwner, target_tag: &str, max_turns: u16) -> Proposal {
        Proposal {
            session: SessionId(seeded(&self.id(), b"session")),
            initiator: self.party(tag),
            target: target.party(target_tag),
            purpose: "agree a delivery date".into(),
            max_turns,
            depth: 0,
            parent: None,
            created_at: T0,
            expires_at: T0.plus(HOUR),
            nonce: Nonce(seeded(&self.id(), b"proposal")),
        }
    }

    /// Signs `proposal` with this owner's `tag` identity key.
    pub fn sign_proposal(&self, tag: &str, proposal: &Proposal) -> Signed<Proposal> {
        Signed::sign(proposal, &self.identity(tag).secrets.signing)
    }

    /// This owner's consent to `proposal`, valid for an hour, with a nonce derived from `salt`.
    pub fn consent(&self, proposal: &Signed<Proposal>, salt: &[u8]) -> Signed<Consent> {
        let consent = Consent {
            proposal: proposal_hash(proposal),
            owner: self.id(),
            audit_head: Hash32::ZERO,
            issued_at: T0,
            expires_at: T0.plus(HOUR),
            nonce: Nonce(seeded(&self.id(), salt)),
        };
        Signed::sign(&consent, &self.keys.signing)
    }

    /// This owner's rejection of `proposal`.
    pub fn reject(&self, proposal: &Signed<Proposal>, reason: &str) -> Signed<Rejection> {
        let rejection = Rejection {
            proposal: proposal_hash(proposal),
            owner: self.id(),
            reason: reason.into(),
            issued_at: T0,
            nonce: Nonce(seeded(&self.id(), reason.as_bytes())),
        };
        Signed::sign(&rejection, &self.keys.signing)
    }

    /// A turn by this owner's `tag` identity.
    pub fn turn(
        &self,
        tag: &str,
        session: SessionId,
        turn_no: u32,
        prev: Hash32,
        text: &str,
        end: Option<EndMarker>,
    ) -> Signed<Turn> {
        let identity = self.identity(tag);
        let turn = Turn { session, turn_no, prev, speaker: identity.id, text: text.into(), end, sent_at: T0 };
        Signed::sign(&turn, &identity.secrets.signing)
    }

    /// This owner's close of `session` after `turns` turns ending at `last`.
    pub fn close(&self, session: SessionId, reason: CloseReason, turns: u32, last: Hash32) -> Signed<Close> {
        let close = Close {
            session,
            owner: self.id(),
            reason,
            turns,
            last,
            closed_at: T0,
            nonce: Nonce(seeded(&self.id(), &turns.to_le_bytes())),
        };
        Signed::sign(&close, &self.keys.signing)
    }
}

/// 16 bytes derived from an owner and a label, for deterministic ids and nonces.
pub fn seeded(owner: &OwnerId, label: &[u8]) -> [u8; 16] {
    let hash = Hash32::of_parts(clawnet_crypto::HashDomain::MessageId, &[owner.key().as_bytes(), label]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash.0[..16]);
    out
}
