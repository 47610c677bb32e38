//! What a mailbox item holds: a **letter**, one delivery signed by the sending node's device key
//! and naming the receiving node, sealed to the receiving owner's X25519 key with
//! [`seal_context`].
//!
//! The relay cannot read or forge a letter. Its signature stands in for what Noise proves on a
//! direct delivery (which node sent it), and naming the receiver stops one contact from
//! re-sealing a letter it received to a third node as if the sender had written to that node.
//! Replays are harmless: the receiver deduplicates by message id as for any delivery.

use clawnet_crypto::rng::OsRng;
use clawnet_crypto::{
    AgreementPublicKey, AgreementSecret, Domain, SealError, SealedEnvelope, Signable, Signed, SigningPublicKey,
    SigningSecret, WireFormat, encoding,
};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use super::seal_context;
use crate::limits;

/// One delivery left at a relay for the node with device key `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Letter {
    /// The receiving node's device key.
    pub to: SigningPublicKey,
    /// The encoded wire message, exactly as a direct delivery would carry it.
    #[serde(with = "clawnet_crypto::encoding::bytes")]
    pub message: Vec<u8>,
}

impl WireFormat for Letter {
    const NAME: &'static str = "mailbox letter";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = limits::MAX_WIRE_MESSAGE + 64;
}

impl Signable for Letter {
    const DOMAIN: Domain = Domain::MailboxLetter;
}

/// What is sealed into a mailbox item: the letter with its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLetter(pub Signed<Letter>);

impl WireFormat for SignedLetter {
    const NAME: &'static str = "signed mailbox letter";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = Letter::MAX_LEN + 128;
}

/// Why a fetched item is not a letter this node may act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LetterError {
    /// It does not open with this owner's key for this node (sealed to someone else, moved from
    /// another box, or garbage).
    #[error("the item does not open for this node: {0}")]
    Unreadable(String),
    /// It opens but is not a well-formed signed letter.
    #[error("the letter is malformed: {0}")]
    Malformed(String),
    /// The signature does not hold.
    #[error("the letter's signature does not verify: {0}")]
    BadSignature(String),
    /// It is signed correctly but for another node.
    #[error("the letter is addressed to another node")]
    Misaddressed,
}

/// A letter that opened, verified and is addressed to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedLetter {
    /// The sending node's device key (it signed the letter).
    pub from: SigningPublicKey,
    /// The encoded wire message.
    pub message: Vec<u8>,
}

/// Signs `message` for the node `to` with the sending node's `device` key and seals it to the
/// receiving owner's `owner_key`.
pub fn seal_letter(
    device: &SigningSecret,
    to: SigningPublicKey,
    owner_key: &AgreementPublicKey,
    message: Vec<u8>,
) -> Result<SealedEnvelope, SealError> {
    seal_letter_with(&mut OsRng::new(), device, to, owner_key, message)
}

/// [`seal_letter`] with the sealing randomness from `rng` (test vectors).
pub fn seal_letter_with<R: CryptoRng + ?Sized>(
    rng: &mut R,
    device: &SigningSecret,
    to: SigningPublicKey,
    owner_key: &AgreementPublicKey,
    message: Vec<u8>,
) -> Result<SealedEnvelope, SealError> {
    let signed = SignedLetter(Signed::sign(&Letter { to, message }, device));
    SealedEnvelope::seal_with(rng, &encoding::encode(&signed), &[*owner_key], &seal_context(&to))
}

/// Opens an item fetched from this node's box (`own_device`) with its owner's key, verifies the
/// letter's signature and that it is addressed here.
pub fn open_letter(
    item: &SealedEnvelope,
    owner_key: &AgreementSecret,
    own_device: &SigningPublicKey,
) -> Result<OpenedLetter, LetterError> {
    let payload =
        item.open(owner_key, &seal_context(own_device)).map_err(|err| LetterError::Unreadable(err.to_string()))?;
    let SignedLetter(signed) = encoding::decode(&payload).map_err(|err| LetterError::Malformed(err.to_string()))?;
    let verified = signed.verify().map_err(|err| LetterError::BadSignature(err.to_string()))?;
    let from = *verified.signer();
    let letter = verified.into_value();
    if letter.to != *own_device {
        return Err(LetterError::Misaddressed);
    }
    Ok(OpenedLetter { from, message: letter.message })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        device: SigningSecret,
        owner: AgreementSecret,
    }

    fn node(seed: u8) -> Node {
        Node { device: SigningSecret::from_bytes(&[seed; 32]), owner: AgreementSecret::from_bytes([seed; 32]) }
    }

    #[test]
    fn a_letter_opens_for_its_receiver_only() {
        let (alice, bob, carol) = (node(1), node(2), node(3));
        let bob_device = bob.device.public_key();
        let item = seal_letter(&alice.device, bob_device, &bob.owner.public_key(), b"hello".to_vec()).unwrap();
        let opened = open_letter(&item, &bob.owner, &bob_device).unwrap();
        assert_eq!(opened, OpenedLetter { from: alice.device.public_key(), message: b"hello".to_vec() });

        // Another owner cannot open it; moved to another box, it does not open either.
        assert!(matches!(
            open_letter(&item, &carol.owner, &carol.device.public_key()),
            Err(LetterError::Unreadable(_))
        ));
        assert!(matches!(open_letter(&item, &bob.owner, &carol.device.public_key()), Err(LetterError::Unreadable(_))));
    }

    #[test]
    fn a_letter_resealed_for_another_node_is_misaddressed() {
        // Bob received a letter from alice and seals it, unchanged, into carol's box.
        let (alice, bob, carol) = (node(1), node(2), node(3));
        let letter = Signed::sign(&Letter { to: bob.device.public_key(), message: b"hi".to_vec() }, &alice.device);
        let carol_device = carol.device.public_key();
        let item = SealedEnvelope::seal(
            &encoding::encode(&SignedLetter(letter)),
            &[carol.owner.public_key()],
            &seal_context(&carol_device),
        )
        .unwrap();
        assert_eq!(open_letter(&item, &carol.owner, &carol_device), Err(LetterError::Misaddressed));
    }

    #[test]
    fn a_forged_signature_and_garbage_are_refused() {
        let (alice, bob, mallory) = (node(1), node(2), node(4));
        let bob_device = bob.device.public_key();
        // Mallory signs, then swaps in alice's key as the signer.
        let forged = Signed::sign(&Letter { to: bob_device, message: b"pay".to_vec() }, &mallory.device);
        let forged =
            Signed::<Letter>::from_parts(forged.body().to_vec(), alice.device.public_key(), *forged.signature());
        let item = SealedEnvelope::seal(
            &encoding::encode(&SignedLetter(forged)),
            &[bob.owner.public_key()],
            &seal_context(&bob_device),
        )
        .unwrap();
        assert!(matches!(open_letter(&item, &bob.owner, &bob_device), Err(LetterError::BadSignature(_))));

        let garbage =
            SealedEnvelope::seal(b"not a letter", &[bob.owner.public_key()], &seal_context(&bob_device)).unwrap();
        assert!(matches!(open_letter(&garbage, &bob.owner, &bob_device), Err(LetterError::Malformed(_))));
    }
}
