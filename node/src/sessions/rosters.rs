//! Verified rosters, kept while the certificates they were built from stay the same. Every turn
//! is checked against both owners' rosters on both nodes; verifying each certificate's signature
//! again at every turn was a tenth of a session's CPU. A roster is rebuilt, and its certificates
//! verified, whenever what it is built from changes (an identity created or revoked here, a
//! contact's new tag announcement): the cache compares the exact signed bytes, so it never
//! vouches for a certificate it did not verify.

use std::collections::HashMap;
use std::sync::Arc;

use clawnet_crypto::{IdentityCert, OwnerId, Revocation, Signed};
use clawnet_protocol::Roster;
use clawnet_storage::contacts::ContactRecord;

use crate::error::NodeError;
use crate::home::UnlockedHome;

/// What a roster was built from, and the roster.
#[derive(Debug)]
struct Built {
    certs: Vec<Signed<IdentityCert>>,
    revocations: Vec<Signed<Revocation>>,
    roster: Arc<Roster>,
}

/// The last verified roster of each owner this node talks to (itself and its contacts).
#[derive(Debug, Default)]
pub(crate) struct RosterCache {
    built: std::sync::Mutex<HashMap<OwnerId, Built>>,
}

impl RosterCache {
    /// The identities of our own owner, as a roster.
    pub(crate) fn own(&self, home: &UnlockedHome) -> Result<Arc<Roster>, NodeError> {
        let certs: Vec<_> = home.home().identities()?.into_iter().map(|record| record.cert).collect();
        self.roster(home.owner(), certs, Vec::new(), |roster, certs, _| {
            for cert in certs {
                roster.admit_cert(cert).map_err(|err| NodeError::Session(err.to_string()))?;
            }
            Ok(())
        })
    }

    /// A contact's identities as their latest tag announcement to us shows them (its
    /// certificates and its revocations). Certificates that do not verify are left out.
    pub(crate) fn contact(&self, contact: &ContactRecord) -> Arc<Roster> {
        let (certs, revocations) = contact
            .their_tags
            .as_ref()
            .and_then(|signed| signed.decode_stored().ok())
            .map(|announcement| (announcement.tags.into_iter().map(|tag| tag.cert).collect(), announcement.revocations))
            .unwrap_or_default();
        let built = self.roster(contact.owner, certs, revocations, |roster, certs, revoked| {
            for cert in certs {
                if let Err(err) = roster.admit_cert(cert) {
                    tracing::warn!(%err, "a contact's identity certificate does not verify");
                }
            }
            for revocation in revoked {
                let _ = roster.admit_revocation(revocation);
            }
            Ok(())
        });
        built.unwrap_or_else(|_| Arc::new(Roster::new(contact.owner)))
    }

    /// The roster of `owner` from `certs` and `revocations`: the cached one if it was built from
    /// exactly these, else built by `admit` and cached (unless `admit` refused them).
    fn roster(
        &self,
        owner: OwnerId,
        certs: Vec<Signed<IdentityCert>>,
        revocations: Vec<Signed<Revocation>>,
        admit: impl FnOnce(&mut Roster, &[Signed<IdentityCert>], &[Signed<Revocation>]) -> Result<(), NodeError>,
    ) -> Result<Arc<Roster>, NodeError> {
        if let Some(built) = lock(&self.built).get(&owner)
            && built.certs == certs
            && built.revocations == revocations
        {
            return Ok(built.roster.clone());
        }
        let mut roster = Roster::new(owner);
        admit(&mut roster, &certs, &revocations)?;
        let roster = Arc::new(roster);
        lock(&self.built).insert(owner, Built { certs, revocations, roster: roster.clone() });
        Ok(roster)
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawnet_protocol::testkit::TestOwner;

    fn strict(
        roster: &mut Roster,
        certs: &[Signed<IdentityCert>],
        revoked: &[Signed<Revocation>],
    ) -> Result<(), NodeError> {
        for cert in certs {
            roster.admit_cert(cert).map_err(|err| NodeError::Session(err.to_string()))?;
        }
        for revocation in revoked {
            roster.admit_revocation(revocation).map_err(|err| NodeError::Session(err.to_string()))?;
        }
        Ok(())
    }

    #[test]
    fn a_roster_is_rebuilt_and_reverified_whenever_its_signed_inputs_change() {
        let mut alice = TestOwner::new(1, &["work"]);
        let cache = RosterCache::default();
        let work = alice.identity("work").cert.clone();

        let first = cache.roster(alice.id(), vec![work.clone()], vec![], strict).unwrap();
        let again = cache.roster(alice.id(), vec![work.clone()], vec![], strict).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same inputs give the cached roster");

        // A new identity: rebuilt, and it speaks.
        let family_id = alice.add_identity("family");
        let family = alice.identity("family").cert.clone();
        let grown = cache.roster(alice.id(), vec![work.clone(), family.clone()], vec![], strict).unwrap();
        assert!(grown.identity(&family_id).is_ok());

        // A revocation: rebuilt, and the identity no longer speaks.
        let revoked =
            cache.roster(alice.id(), vec![work.clone(), family], vec![alice.revoke("family")], strict).unwrap();
        assert!(revoked.identity(&family_id).is_err());

        // A certificate signed by someone else is verified, not taken from the cache: refused.
        let mallory = TestOwner::new(2, &["work"]);
        let forged = mallory.identity("work").cert.clone();
        assert!(cache.roster(alice.id(), vec![work.clone(), forged.clone()], vec![], strict).is_err());
        // Asked again, it is verified again: inputs that were refused are never cached.
        assert!(cache.roster(alice.id(), vec![work, forged], vec![], strict).is_err());
    }
}
