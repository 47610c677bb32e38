//! Signed objects: `{body, signer, signature}` where the body is the canonical encoding of a
//! value. Receivers verify the bytes first and decode them only if the signature holds.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::domain::{Domain, HashDomain};
use crate::encoding::{self, DecodeError, WireFormat};
use crate::hash::Hash32;
use crate::ids::Fingerprint;
use crate::keys::{Signature, SigningPublicKey, SigningSecret};

/// A value that travels signed, under its own domain.
pub trait Signable: WireFormat {
    /// The signature context of this kind of object.
    const DOMAIN: Domain;
}

/// Why a signed object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature does not verify for this kind of object (forged, altered, or made for
    /// another kind).
    #[error("{what}: signature does not verify")]
    BadSignature {
        /// The kind of object.
        what: &'static str,
    },
    /// The signature is valid but made by someone other than the required signer.
    #[error("{what}: signed by key {found}, expected key {expected}")]
    WrongSigner {
        /// The kind of object.
        what: &'static str,
        /// Fingerprint of the key that signed.
        found: Fingerprint,
        /// Fingerprint of the key that had to sign.
        expected: Fingerprint,
    },
    /// The signature holds but the body does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A signed `T`, not yet verified.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T> {
    #[serde(with = "crate::encoding::bytes")]
    body: Vec<u8>,
    signer: SigningPublicKey,
    signature: Signature,
    /// Set by [`Signed::check_together`] once this signature held in a batch: the fields never
    /// change after construction, so [`Signed::verify`] need not check it again.
    #[serde(skip)]
    checked: bool,
    #[serde(skip)]
    kind: PhantomData<fn() -> T>,
}

impl<T: Signable> Signed<T> {
    /// Encodes and signs `value` with `secret`.
    pub fn sign(value: &T, secret: &SigningSecret) -> Signed<T> {
        let body = encoding::encode(value);
        let signature = secret.sign(T::DOMAIN, &body);
        Signed { body, signer: secret.public_key(), signature, checked: false, kind: PhantomData }
    }

    /// Reassembles a signed object from its parts, for example read back from storage.
    pub fn from_parts(body: Vec<u8>, signer: SigningPublicKey, signature: Signature) -> Signed<T> {
        Signed { body, signer, signature, checked: false, kind: PhantomData }
    }

    /// Verifies the signature under `T::DOMAIN` by the key it names, then decodes the body.
    pub fn verify(&self) -> Result<Verified<T>, VerifyError> {
        if !self.checked {
            self.signer
                .verify(T::DOMAIN, &self.body, &self.signature)
                .map_err(|_| VerifyError::BadSignature { what: T::NAME })?;
        }
        let value = encoding::decode(&self.body)?;
        Ok(Verified { value, signed: self.clone() })
    }

    /// Checks the signatures of `items` together, each by the key it names, in one batch
    /// ([`SigningPublicKey::verify_batch`], which accepts exactly what one-by-one verification
    /// does), and if they all hold, marks each so that [`Signed::verify`] only decodes it.
    /// Returns whether they held; if not, nothing is marked and each is checked alone when
    /// verified, which names the bad ones.
    pub fn check_together(items: &mut [&mut Signed<T>]) -> bool {
        let claims: Vec<(&SigningPublicKey, &[u8], &Signature)> =
            items.iter().map(|item| (&item.signer, item.body.as_slice(), &item.signature)).collect();
        if SigningPublicKey::verify_batch(T::DOMAIN, &claims).is_err() {
            return false;
        }
        for item in items.iter_mut() {
            item.checked = true;
        }
        true
    }

    /// Like [`Signed::verify`], and the signer must be `expected`.
    pub fn verify_signed_by(&self, expected: &SigningPublicKey) -> Result<Verified<T>, VerifyError> {
        if &self.signer != expected {
            return Err(VerifyError::WrongSigner {
                what: T::NAME,
                found: Fingerprint::of(&self.signer),
                expected: Fingerprint::of(expected),
            });
        }
        self.verify()
    }

    /// Decodes the body without checking the signature. Only for values this node signed and
    /// stored itself, or for display after a verification that already happened.
    pub fn decode_unverified(&self) -> Result<T, DecodeError> {
        encoding::decode(&self.body)
    }

    /// Like [`Signed::decode_unverified`] without the canonical-encoding check: for a value
    /// this node verified or signed before storing it, read back from its own database (the
    /// check guards what arrives from outside; here it would only re-encode every value).
    pub fn decode_stored(&self) -> Result<T, DecodeError> {
        encoding::decode_local(&self.body)
    }

    /// The signed bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The key that claims to have signed.
    pub fn signer(&self) -> &SigningPublicKey {
        &self.signer
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// A domain-separated hash of the signed body.
    pub fn body_hash(&self, domain: HashDomain) -> Hash32 {
        Hash32::of(domain, &self.body)
    }
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            body: self.body.clone(),
            signer: self.signer,
            signature: self.signature,
            checked: self.checked,
            kind: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.body == other.body && self.signer == other.signer && self.signature == other.signature
    }
}

impl<T> Eq for Signed<T> {}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("kind", &std::any::type_name::<T>())
            .field("body_len", &self.body.len())
            .field("signer", &self.signer)
            .finish()
    }
}

/// A value whose signature has been verified. Only [`Signed::verify`] makes one, and
/// [`Verified::sign`], whose signature holds by construction.
#[derive(Clone)]
pub struct Verified<T> {
    value: T,
    signed: Signed<T>,
}

impl<T: Signable> Verified<T> {
    /// Signs `value` with `secret`: a signature just made with the secret key needs no check.
    pub fn sign(value: T, secret: &SigningSecret) -> Verified<T> {
        let signed = Signed::sign(&value, secret);
        Verified { value, signed }
    }
}

impl<T> Verified<T> {
    /// The signed form it was verified from.
    pub fn signed(&self) -> &Signed<T> {
        &self.signed
    }

    /// Who signed it.
    pub fn signer(&self) -> &SigningPublicKey {
        &self.signed.signer
    }

    /// The decoded value.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Verified<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified").field("value", &self.value).field("signer", self.signer()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }
    impl WireFormat for Note {
        const NAME: &'static str = "note";
        const VERSION: u8 = 1;
        const MAX_LEN: usize = 100;
    }
    impl Signable for Note {
        const DOMAIN: Domain = Domain::Consent;
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OtherNote {
        text: String,
    }
    impl WireFormat for OtherNote {
        const NAME: &'static str = "other note";
        const VERSION: u8 = 1;
        const MAX_LEN: usize = 100;
    }
    impl Signable for OtherNote {
        const DOMAIN: Domain = Domain::Turn;
    }

    #[test]
    fn sign_then_verify() {
        let key = SigningSecret::from_bytes(&[1; 32]);
        let signed = Signed::sign(&Note { text: "hi".into() }, &key);
        let verified = signed.verify().unwrap();
        assert_eq!(verified.text, "hi");
        assert_eq!(verified.signer(), &key.public_key());
        assert!(signed.verify_signed_by(&key.public_key()).is_ok());
    }

    #[test]
    fn forged_signature_is_refused() {
        let key = SigningSecret::from_bytes(&[1; 32]);
        let signed = Signed::sign(&Note { text: "hi".into() }, &key);
        let mut sig = *signed.signature();
        sig.0[0] ^= 0x80;
        let forged = Signed::<Note>::from_parts(signed.body().to_vec(), *signed.signer(), sig);
        assert_eq!(forged.verify().unwrap_err(), VerifyError::BadSignature { what: "note" });
    }

    #[test]
    fn signatures_checked_together_are_not_checked_again_and_a_bad_one_marks_none() {
        let keys: Vec<SigningSecret> = (1..=3u8).map(|i| SigningSecret::from_bytes(&[i; 32])).collect();
        let signed = |i: usize| Signed::sign(&Note { text: format!("note {i}") }, &keys[i]);
        let mut good: Vec<Signed<Note>> = (0..3).map(signed).collect();
        assert!(Signed::check_together(&mut good.iter_mut().collect::<Vec<_>>()));
        assert!(good.iter().all(|item| item.checked && item.verify().is_ok()));
        // The mark travels with a clone, never through the wire or storage.
        assert!(good[0].clone().checked);
        let again: Signed<Note> = postcard::from_bytes(&postcard::to_allocvec(&good[0]).unwrap()).unwrap();
        assert!(!again.checked);

        let mut batch: Vec<Signed<Note>> = (0..3).map(signed).collect();
        let mut sig = *batch[1].signature();
        sig.0[5] ^= 1;
        batch[1] = Signed::from_parts(batch[1].body().to_vec(), *batch[1].signer(), sig);
        assert!(!Signed::check_together(&mut batch.iter_mut().collect::<Vec<_>>()));
        assert!(batch.iter().all(|item| !item.checked), "nothing is marked");
        assert!(batch[0].verify().is_ok() && batch[2].verify().is_ok());
        assert_eq!(batch[1].verify().unwrap_err(), VerifyError::BadSignature { what: "note" });
    }

    #[test]
    fn signature_from_another_domain_is_refused() {
        let key = SigningSecret::from_bytes(&[1; 32]);
        // Same bytes, signed as an OtherNote (turn domain), presented as a Note (consent domain).
        let other = Signed::sign(&OtherNote { text: "hi".into() }, &key);
        let replayed = Signed::<Note>::from_parts(other.body().to_vec(), *other.signer(), *other.signature());
        assert_eq!(replayed.verify().unwrap_err(), VerifyError::BadSignature { what: "note" });
    }

    #[test]
    fn wrong_signer_is_named() {
        let key = SigningSecret::from_bytes(&[1; 32]);
        let other = SigningSecret::from_bytes(&[2; 32]).public_key();
        let signed = Signed::sign(&Note { text: "hi".into() }, &key);
        assert!(matches!(signed.verify_signed_by(&other), Err(VerifyError::WrongSigner { what: "note", .. })));
    }
}
