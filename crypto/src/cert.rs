//! Owner-signed certificates: which device keys and which identity-agent keys speak for an
//! owner, and revocations that take that authority back.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Domain;
use crate::encoding::WireFormat;
use crate::ids::{IdentityId, OwnerId, Timestamp};
use crate::keys::{AgreementPublicKey, SigningPublicKey};
use crate::signed::{Signable, Signed, Verified, VerifyError};

/// Why a certificate does not establish authority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The signature or encoding is bad, or the signer is not the owner.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The certificate names another owner than the one that signed it.
    #[error("certificate names another owner than its signer")]
    OwnerMismatch,
    /// The certificate's validity has ended.
    #[error("certificate expired")]
    Expired,
}

/// The short name of a social role ("work", "family"): 1 to 32 characters of `a-z`, `0-9`, `-`
/// and `_`, starting with a letter.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextTag(String);

/// A string that is not a valid [`ContextTag`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid identity tag {0:?}: use 1 to 32 characters of a-z, 0-9, '-' and '_', starting with a letter")]
pub struct InvalidTag(pub String);

impl ContextTag {
    /// The longest tag.
    pub const MAX_LEN: usize = 32;

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContextTag {
    type Err = InvalidTag;

    fn from_str(text: &str) -> Result<ContextTag, InvalidTag> {
        let valid = !text.is_empty()
            && text.len() <= ContextTag::MAX_LEN
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid { Ok(ContextTag(text.to_owned())) } else { Err(InvalidTag(text.to_owned())) }
    }
}

impl fmt::Display for ContextTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContextTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContextTag({})", self.0)
    }
}

impl Serialize for ContextTag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ContextTag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The owner vouches that `device_key` is one of their nodes (its libp2p key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCert {
    /// The owner.
    pub owner: OwnerId,
    /// The device's ed25519 key; its libp2p peer id derives from it.
    pub device_key: SigningPublicKey,
    /// A label for people ("laptop").
    pub device_name: String,
    /// When the owner signed it.
    pub issued_at: Timestamp,
    /// When it stops being valid, if ever.
    pub expires_at: Option<Timestamp>,
}

impl WireFormat for DeviceCert {
    const NAME: &'static str = "device certificate";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 512;
}

impl Signable for DeviceCert {
    const DOMAIN: Domain = Domain::DeviceCert;
}

impl DeviceCert {
    /// Verifies that `signed` is a valid device certificate of `owner` at `now`.
    pub fn verify_for(
        signed: &Signed<DeviceCert>,
        owner: &OwnerId,
        now: Timestamp,
    ) -> Result<Verified<DeviceCert>, CertError> {
        let cert = signed.verify_signed_by(owner.key())?;
        if &cert.owner != owner {
            return Err(CertError::OwnerMismatch);
        }
        if cert.expires_at.is_some_and(|end| end <= now) {
            return Err(CertError::Expired);
        }
        Ok(cert)
    }
}

/// The owner vouches that these keys speak for one of their identity agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityCert {
    /// The owner.
    pub owner: OwnerId,
    /// The identity agent.
    pub identity: IdentityId,
    /// Its role name.
    pub tag: ContextTag,
    /// The key its turns and proposals are signed with.
    pub signing_key: SigningPublicKey,
    /// The key sealed envelopes for it are wrapped to.
    pub agreement_key: AgreementPublicKey,
    /// Incremented at every key rotation; a revocation covers every epoch up to its own.
    pub epoch: u32,
    /// When the owner signed it.
    pub issued_at: Timestamp,
}

impl WireFormat for IdentityCert {
    const NAME: &'static str = "identity certificate";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 512;
}

impl Signable for IdentityCert {
    const DOMAIN: Domain = Domain::IdentityCert;
}

impl IdentityCert {
    /// Verifies that `signed` is an identity certificate signed by `owner` for `owner`.
    pub fn verify_for(signed: &Signed<IdentityCert>, owner: &OwnerId) -> Result<Verified<IdentityCert>, CertError> {
        let cert = signed.verify_signed_by(owner.key())?;
        if &cert.owner != owner {
            return Err(CertError::OwnerMismatch);
        }
        Ok(cert)
    }
}

/// The owner withdraws an identity agent's authority, for every key epoch up to `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The owner.
    pub owner: OwnerId,
    /// The identity whose authority ends.
    pub identity: IdentityId,
    /// The highest key epoch revoked.
    pub epoch: u32,
    /// When the owner signed it.
    pub revoked_at: Timestamp,
    /// Why, for people.
    pub reason: String,
}

impl WireFormat for Revocation {
    const NAME: &'static str = "revocation";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 512;
}

impl Signable for Revocation {
    const DOMAIN: Domain = Domain::Revocation;
}

impl Revocation {
    /// Verifies that `signed` is a revocation signed by `owner` for `owner`.
    pub fn verify_for(signed: &Signed<Revocation>, owner: &OwnerId) -> Result<Verified<Revocation>, CertError> {
        let revocation = signed.verify_signed_by(owner.key())?;
        if &revocation.owner != owner {
            return Err(CertError::OwnerMismatch);
        }
        Ok(revocation)
    }

    /// Whether this revocation covers `cert`.
    pub fn covers(&self, cert: &IdentityCert) -> bool {
        self.owner == cert.owner && self.identity == cert.identity && cert.epoch <= self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{AgreementSecret, SigningSecret};

    fn owner_key(seed: u8) -> SigningSecret {
        SigningSecret::from_bytes(&[seed; 32])
    }

    fn identity_cert(owner: &SigningSecret) -> IdentityCert {
        IdentityCert {
            owner: OwnerId::from_key(owner.public_key()),
            identity: IdentityId([5; 16]),
            tag: "work".parse().unwrap(),
            signing_key: SigningSecret::from_bytes(&[6; 32]).public_key(),
            agreement_key: AgreementSecret::from_bytes([7; 32]).public_key(),
            epoch: 0,
            issued_at: Timestamp(1),
        }
    }

    #[test]
    fn identity_cert_verifies_for_its_owner_only() {
        let alice = owner_key(1);
        let mallory = owner_key(2);
        let signed = Signed::sign(&identity_cert(&alice), &alice);
        let alice_id = OwnerId::from_key(alice.public_key());
        let mallory_id = OwnerId::from_key(mallory.public_key());
        assert!(IdentityCert::verify_for(&signed, &alice_id).is_ok());
        assert!(matches!(
            IdentityCert::verify_for(&signed, &mallory_id),
            Err(CertError::Verify(VerifyError::WrongSigner { .. }))
        ));
        // Mallory signs a certificate that claims to be Alice's.
        let claimed = Signed::sign(&identity_cert(&alice), &mallory);
        assert!(IdentityCert::verify_for(&claimed, &alice_id).is_err());
        assert_eq!(IdentityCert::verify_for(&claimed, &mallory_id).unwrap_err(), CertError::OwnerMismatch);
    }

    #[test]
    fn expired_device_cert_is_refused() {
        let alice = owner_key(1);
        let owner = OwnerId::from_key(alice.public_key());
        let cert = DeviceCert {
            owner,
            device_key: owner_key(9).public_key(),
            device_name: "laptop".into(),
            issued_at: Timestamp(10),
            expires_at: Some(Timestamp(20)),
        };
        let signed = Signed::sign(&cert, &alice);
        assert!(DeviceCert::verify_for(&signed, &owner, Timestamp(19)).is_ok());
        assert_eq!(DeviceCert::verify_for(&signed, &owner, Timestamp(20)).unwrap_err(), CertError::Expired);
    }

    #[test]
    fn revocation_covers_earlier_epochs() {
        let alice = owner_key(1);
        let mut cert = identity_cert(&alice);
        let revocation = Revocation {
            owner: cert.owner,
            identity: cert.identity,
            epoch: 1,
            revoked_at: Timestamp(5),
            reason: "retired".into(),
        };
        assert!(revocation.covers(&cert));
        cert.epoch = 2;
        assert!(!revocation.covers(&cert));
    }

    #[test]
    fn context_tags_are_validated() {
        assert!("work".parse::<ContextTag>().is_ok());
        assert!("family-2".parse::<ContextTag>().is_ok());
        for bad in ["", "Work", "2fa", "a b", "x".repeat(33).as_str(), "é"] {
            assert!(bad.parse::<ContextTag>().is_err(), "{bad:?} accepted");
        }
    }
}
