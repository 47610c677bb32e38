//! What this node knows about one owner's identity agents: their certified keys and their
//! revocations. Turns and proposals are accepted only from keys a roster vouches for.

use std::collections::BTreeMap;

use clawnet_crypto::cert::CertError;
use clawnet_crypto::{Fingerprint, IdentityCert, IdentityId, OwnerId, Revocation, Signed, SigningPublicKey, Verified};

/// Why a key or identity does not speak for an owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The certificate or revocation is not signed by this owner.
    #[error("not certified by owner {owner}: {source}")]
    NotCertified {
        /// Fingerprint of the owner that should have signed.
        owner: Fingerprint,
        /// What was wrong.
        source: CertError,
    },
    /// No certificate of this owner names the key or identity.
    #[error("identity or key not certified by owner {0}")]
    Unknown(Fingerprint),
    /// The owner revoked this identity.
    #[error("identity {0} was revoked by its owner")]
    Revoked(IdentityId),
}

/// The verified identity certificates and revocations of one owner.
#[derive(Debug, Clone)]
pub struct Roster {
    owner: OwnerId,
    certs: BTreeMap<IdentityId, Verified<IdentityCert>>,
    revoked: BTreeMap<IdentityId, u32>,
}

impl Roster {
    /// An empty roster for `owner`.
    pub fn new(owner: OwnerId) -> Roster {
        Roster { owner, certs: BTreeMap::new(), revoked: BTreeMap::new() }
    }

    /// The owner this roster is about.
    pub fn owner(&self) -> &OwnerId {
        &self.owner
    }

    /// Adds a certificate if the owner signed it; a newer epoch replaces an older one.
    pub fn admit_cert(&mut self, signed: &Signed<IdentityCert>) -> Result<(), TrustError> {
        let cert = IdentityCert::verify_for(signed, &self.owner)
            .map_err(|source| TrustError::NotCertified { owner: self.owner.fingerprint(), source })?;
        let newer = self.certs.get(&cert.identity).is_none_or(|old| cert.epoch > old.epoch);
        if newer {
            self.certs.insert(cert.identity, cert);
        }
        Ok(())
    }

    /// Adds a revocation if the owner signed it.
    pub fn admit_revocation(&mut self, signed: &Signed<Revocation>) -> Result<(), TrustError> {
        let revocation = Revocation::verify_for(signed, &self.owner)
            .map_err(|source| TrustError::NotCertified { owner: self.owner.fingerprint(), source })?;
        let epoch = self.revoked.entry(revocation.identity).or_insert(revocation.epoch);
        *epoch = (*epoch).max(revocation.epoch);
        Ok(())
    }

    /// The current certificate of `identity`, if it still has authority.
    pub fn identity(&self, identity: &IdentityId) -> Result<&IdentityCert, TrustError> {
        let cert = self.certs.get(identity).ok_or(TrustError::Unknown(self.owner.fingerprint()))?;
        self.check_not_revoked(cert)
    }

    /// The identity whose current certified signing key is `key`, if it still has authority.
    pub fn speaker(&self, key: &SigningPublicKey) -> Result<&IdentityCert, TrustError> {
        let cert = self
            .certs
            .values()
            .find(|cert| &cert.signing_key == key)
            .ok_or(TrustError::Unknown(self.owner.fingerprint()))?;
        self.check_not_revoked(cert)
    }

    /// Every identity certificate held, revoked ones included.
    pub fn certs(&self) -> impl Iterator<Item = &Verified<IdentityCert>> {
        self.certs.values()
    }

    fn check_not_revoked<'a>(&self, cert: &'a Verified<IdentityCert>) -> Result<&'a IdentityCert, TrustError> {
        match self.revoked.get(&cert.identity) {
            Some(&epoch) if cert.epoch <= epoch => Err(TrustError::Revoked(cert.identity)),
            _ => Ok(cert),
        }
    }
}
