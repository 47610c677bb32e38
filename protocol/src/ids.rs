//! Protocol-level names: sessions, nonces and message ids.

use std::fmt;
use std::str::FromStr;

use clawnet_crypto::rng::random_bytes;
use clawnet_crypto::{Hash32, HashDomain};
use serde::{Deserialize, Serialize};

/// A collaboration session, chosen at random by the initiator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> SessionId {
        SessionId(random_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for people (commands accept any unique prefix).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", &self.to_hex()[..8])
    }
}

impl FromStr for SessionId {
    type Err = hex::FromHexError;

    fn from_str(text: &str) -> Result<SessionId, hex::FromHexError> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes)?;
        Ok(SessionId(bytes))
    }
}

/// A single-use random value in a signed object; seeing one twice means a replay.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    /// A fresh random nonce.
    pub fn random() -> Nonce {
        Nonce(random_bytes())
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", hex::encode(&self.0[..4]))
    }
}

/// Names a wire message by the hash of its encoding, so a retried delivery is recognised.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub Hash32);

impl MessageId {
    /// The id of the encoded message `bytes`.
    pub fn of(bytes: &[u8]) -> MessageId {
        MessageId(Hash32::of(HashDomain::MessageId, bytes))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", &self.0.to_hex()[..16])
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}
