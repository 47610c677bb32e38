//! The secret keys one node holds: the owner's root keys, the device key, and each active
//! identity agent's keys. Encoded only into zeroizing buffers, for the keystore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::encoding::DecodeError;
use crate::ids::{IdentityId, OwnerId};
use crate::keys::{AgreementSecret, SigningSecret};

/// The owner's root keys: signing (certificates, consents) and agreement (sealed contact data).
#[derive(Debug)]
pub struct OwnerSecrets {
    /// Root signing key; its public half is the owner's id.
    pub signing: SigningSecret,
    /// X25519 key contacts seal to.
    pub agreement: AgreementSecret,
}

impl OwnerSecrets {
    /// Fresh keys from the OS RNG.
    pub fn generate() -> OwnerSecrets {
        OwnerSecrets { signing: SigningSecret::generate(), agreement: AgreementSecret::generate() }
    }

    /// The owner these keys are.
    pub fn owner_id(&self) -> OwnerId {
        OwnerId::from_key(self.signing.public_key())
    }
}

/// An identity agent's keys at one epoch.
#[derive(Debug)]
pub struct IdentitySecrets {
    /// Signs its proposals and turns.
    pub signing: SigningSecret,
    /// Opens envelopes sealed to it.
    pub agreement: AgreementSecret,
    /// The certificate epoch these keys belong to.
    pub epoch: u32,
}

impl IdentitySecrets {
    /// Fresh keys from the OS RNG.
    pub fn generate(epoch: u32) -> IdentitySecrets {
        IdentitySecrets { signing: SigningSecret::generate(), agreement: AgreementSecret::generate(), epoch }
    }
}

/// Every secret key of one node.
#[derive(Debug)]
pub struct Keyring {
    /// The owner's root keys.
    pub owner: OwnerSecrets,
    /// The node's device key (its libp2p identity and audit signer).
    pub device: SigningSecret,
    /// Keys of identity agents that still have authority.
    pub identities: BTreeMap<IdentityId, IdentitySecrets>,
}

const KEYRING_VERSION: u8 = 1;

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KeyringBytes {
    owner_signing: [u8; 32],
    owner_agreement: [u8; 32],
    device: [u8; 32],
    identities: Vec<IdentityBytes>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct IdentityBytes {
    id: [u8; 16],
    signing: [u8; 32],
    agreement: [u8; 32],
    epoch: u32,
}

impl Keyring {
    /// A new owner on a new device, with no identities yet.
    pub fn generate() -> Keyring {
        Keyring { owner: OwnerSecrets::generate(), device: SigningSecret::generate(), identities: BTreeMap::new() }
    }

    /// Encodes every secret into a buffer that is zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let plain = KeyringBytes {
            owner_signing: *self.owner.signing.to_bytes(),
            owner_agreement: *self.owner.agreement.to_bytes(),
            device: *self.device.to_bytes(),
            identities: self
                .identities
                .iter()
                .map(|(id, keys)| IdentityBytes {
                    id: id.0,
                    signing: *keys.signing.to_bytes(),
                    agreement: *keys.agreement.to_bytes(),
                    epoch: keys.epoch,
                })
                .collect(),
        };
        // Reserve enough up front so the encoder never reallocates and leaves copies behind.
        let capacity = 1 + 3 * 32 + 8 + plain.identities.len() * (16 + 64 + 5);
        let mut out = Vec::with_capacity(capacity);
        out.push(KEYRING_VERSION);
        let out = postcard::to_extend(&plain, out).expect("encoding keys into a Vec cannot fail");
        Zeroizing::new(out)
    }

    /// Decodes what [`Keyring::to_bytes`] produced.
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring, DecodeError> {
        let what = "keyring";
        let Some((&version, body)) = bytes.split_first() else {
            return Err(DecodeError::Truncated { what });
        };
        if version != KEYRING_VERSION {
            return Err(DecodeError::UnknownVersion { what, found: version, supported: KEYRING_VERSION });
        }
        let plain: KeyringBytes =
            postcard::from_bytes(body).map_err(|err| DecodeError::Malformed { what, detail: err.to_string() })?;
        Ok(Keyring {
            owner: OwnerSecrets {
                signing: SigningSecret::from_bytes(&plain.owner_signing),
                agreement: AgreementSecret::from_bytes(plain.owner_agreement),
            },
            device: SigningSecret::from_bytes(&plain.device),
            identities: plain
                .identities
                .iter()
                .map(|entry| {
                    (
                        IdentityId(entry.id),
                        IdentitySecrets {
                            signing: SigningSecret::from_bytes(&entry.signing),
                            agreement: AgreementSecret::from_bytes(entry.agreement),
                            epoch: entry.epoch,
                        },
                    )
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_round_trip() {
        let mut keyring = Keyring::generate();
        keyring.identities.insert(IdentityId([1; 16]), IdentitySecrets::generate(0));
        let bytes = keyring.to_bytes();
        let back = Keyring::from_bytes(&bytes).unwrap();
        assert_eq!(back.owner.owner_id(), keyring.owner.owner_id());
        assert_eq!(back.device.public_key(), keyring.device.public_key());
        let id = IdentityId([1; 16]);
        assert_eq!(back.identities[&id].signing.public_key(), keyring.identities[&id].signing.public_key());
        assert_eq!(back.identities[&id].agreement.public_key(), keyring.identities[&id].agreement.public_key());
    }

    #[test]
    fn keyring_debug_shows_no_secrets() {
        let keyring = Keyring::generate();
        let text = format!("{keyring:?}");
        assert!(text.contains("SecretKey(..)"));
        assert!(!text.contains(&hex::encode(*keyring.device.to_bytes())));
    }
}
