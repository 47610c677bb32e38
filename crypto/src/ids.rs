//! Names of things: owners, identities, fingerprints, and time.
//!
//! An owner is named by its public root key; people compare the short [`Fingerprint`] of it out
//! of band. An identity agent is named by a random [`IdentityId`] that survives key rotation.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::domain::HashDomain;
use crate::hash::Hash32;
use crate::keys::SigningPublicKey;
use crate::rng::random_bytes;

/// An owner (a human) in the network, named by their root public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OwnerId(SigningPublicKey);

impl OwnerId {
    /// The owner whose root key is `key`.
    pub fn from_key(key: SigningPublicKey) -> OwnerId {
        OwnerId(key)
    }

    /// The root key that signs for this owner.
    pub fn key(&self) -> &SigningPublicKey {
        &self.0
    }

    /// The short, human-comparable fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.0)
    }

    /// Lowercase hex of the root key.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerId({})", self.fingerprint())
    }
}

/// The first 80 bits of a domain-separated hash of a public key, as five groups of four hex
/// digits. Two people reading theirs aloud is enough to rule out a swapped key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 10]);

impl Fingerprint {
    /// The fingerprint of `key`.
    pub fn of(key: &SigningPublicKey) -> Fingerprint {
        let hash = Hash32::of(HashDomain::Fingerprint, key.as_bytes());
        let mut bytes = [0u8; 10];
        bytes.copy_from_slice(&hash.0[..10]);
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, pair) in self.0.chunks(2).enumerate() {
            if idx > 0 {
                f.write_str("-")?;
            }
            write!(f, "{}", hex::encode(pair))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// An identity agent (a social role of one owner), stable across key rotations.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityId(pub [u8; 16]);

impl IdentityId {
    /// A fresh random id.
    pub fn random() -> IdentityId {
        IdentityId(random_bytes())
    }

    /// Lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityId({})", &self.to_hex()[..8])
    }
}

impl FromStr for IdentityId {
    type Err = hex::FromHexError;

    fn from_str(text: &str) -> Result<IdentityId, hex::FromHexError> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes)?;
        Ok(IdentityId(bytes))
    }
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// This time plus `duration`, saturating.
    pub fn plus(self, duration: Duration) -> Timestamp {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningSecret;

    #[test]
    fn fingerprint_is_five_groups() {
        let owner = OwnerId::from_key(SigningSecret::from_bytes(&[3; 32]).public_key());
        let text = owner.fingerprint().to_string();
        assert_eq!(text.len(), 24);
        assert_eq!(text.split('-').count(), 5);
    }

    #[test]
    fn identity_id_parses_its_display() {
        let id = IdentityId::random();
        assert_eq!(id.to_string().parse::<IdentityId>(), Ok(id));
        assert!("nothex".parse::<IdentityId>().is_err());
    }
}
