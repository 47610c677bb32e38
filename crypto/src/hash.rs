//! SHA-256 hashes with a [`HashDomain`], and the 32-byte value type they produce.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::HashDomain;

/// A 32-byte SHA-256 value: a link in a chain, the name of an object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero hash, used as the predecessor of the first link of a chain.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// Hashes `bytes` in `domain`.
    pub fn of(domain: HashDomain, bytes: &[u8]) -> Hash32 {
        Hash32::of_parts(domain, &[bytes])
    }

    /// Hashes the concatenation of `parts` in `domain`.
    ///
    /// Only use with parts whose lengths are fixed or otherwise self-delimiting.
    pub fn of_parts(domain: HashDomain, parts: &[&[u8]]) -> Hash32 {
        let mut hasher = Sha256::new();
        hasher.update(domain.context().as_bytes());
        hasher.update([0u8]);
        for part in parts {
            hasher.update(part);
        }
        Hash32(hasher.finalize().into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Hash32, hex::FromHexError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)?;
        Ok(Hash32(bytes))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_equal_inputs() {
        let a = Hash32::of(HashDomain::AuditLink, b"same");
        let b = Hash32::of(HashDomain::TurnLink, b"same");
        assert_ne!(a, b);
        assert_eq!(a, Hash32::of_parts(HashDomain::AuditLink, &[b"sa", b"me"]));
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash32::of(HashDomain::MessageId, b"x");
        assert_eq!(Hash32::from_hex(&h.to_hex()), Ok(h));
        assert!(Hash32::from_hex("zz").is_err());
    }
}
