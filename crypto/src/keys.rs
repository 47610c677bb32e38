//! Key newtypes: ed25519 for signatures, X25519 for key agreement.
//!
//! Secrets zeroize on drop and print as `SecretKey(..)`. A public signing key is kept as its 32
//! bytes: decoding one from the wire costs nothing, and the curve work (decompression, the
//! small-order check) happens when it is used to verify, where an invalid or weak key fails.
//! [`SigningPublicKey::from_bytes`] validates eagerly, for keys typed in by people. Verification
//! follows the rule of [`crate::verification`], over a [`Domain`]-framed message. A node
//! verifies many signatures by few keys (its contacts' identities and owners), so the last keys
//! that decompressed and passed the check are kept decompressed ([`decompress`]).

use std::fmt;

use ed25519_dalek::Signer;
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::domain::Domain;
use crate::rng::OsRng;
use crate::verification::{self, Claim};

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not a point on the curve.
    #[error("not a valid ed25519 public key")]
    InvalidPublicKey,
    /// The key has small order: anyone could produce signatures that verify under it.
    #[error("weak ed25519 public key (small order)")]
    WeakPublicKey,
    /// An X25519 exchange produced the all-zero secret: the peer's key has small order.
    #[error("key agreement with a low-order X25519 key")]
    NonContributory,
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
#[non_exhaustive]
pub struct SignatureError;

/// An ed25519 signing secret.
pub struct SigningSecret(ed25519_dalek::SigningKey);

impl SigningSecret {
    /// A fresh key from the operating system's RNG.
    pub fn generate() -> SigningSecret {
        SigningSecret::generate_with(&mut OsRng::new())
    }

    /// A fresh key from `rng` (seeded RNGs make test vectors).
    pub fn generate_with<R: CryptoRng + ?Sized>(rng: &mut R) -> SigningSecret {
        SigningSecret(ed25519_dalek::SigningKey::generate(rng))
    }

    /// Restores a key from its 32 secret bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> SigningSecret {
        SigningSecret(ed25519_dalek::SigningKey::from_bytes(bytes))
    }

    /// The 32 secret bytes, zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> SigningPublicKey {
        SigningPublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `body` for `domain`.
    pub fn sign(&self, domain: Domain, body: &[u8]) -> Signature {
        Signature(self.0.sign(&domain.signing_message(body)).to_bytes())
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// An ed25519 public key, as its 32 bytes. Equality and hashing are on the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SigningPublicKey([u8; 32]);

impl SigningPublicKey {
    /// Validates 32 bytes as a public key: on the curve and not of small order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<SigningPublicKey, KeyError> {
        decompress(bytes)?;
        Ok(SigningPublicKey(*bytes))
    }

    /// Takes 32 bytes as they are, like decoding does: an invalid or weak key fails when it is
    /// used to verify. For keys that arrive in already-authenticated forms (a peer id).
    pub fn unchecked(bytes: [u8; 32]) -> SigningPublicKey {
        SigningPublicKey(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Verifies `signature` over `body` in `domain` by the rule of [`crate::verification`]:
    /// RFC 8032's equation with strict encodings, which every honest signature passes. An
    /// invalid or weak key never verifies anything.
    pub fn verify(&self, domain: Domain, body: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key = decompress(&self.0).map_err(|_| SignatureError)?;
        let claim = Claim { key: &key, key_bytes: &self.0, domain, body, signature };
        if verification::verify_one(&claim) { Ok(()) } else { Err(SignatureError) }
    }

    /// Verifies many signatures by possibly different keys at once (ten cost half as much per
    /// signature as one by one, a third if one key made them all), accepting exactly what
    /// [`SigningPublicKey::verify`] accepts (see [`crate::verification`]). On failure it does
    /// not say which one failed: verify one by one to find out.
    pub fn verify_batch(
        domain: Domain,
        items: &[(&SigningPublicKey, &[u8], &Signature)],
    ) -> Result<(), SignatureError> {
        // Batches are usually few keys (one for an audit chain): decompress each run once.
        let mut last: Option<(&[u8; 32], ed25519_dalek::VerifyingKey)> = None;
        let mut keys = Vec::with_capacity(items.len());
        for (key, _, _) in items {
            let decompressed = match last {
                Some((bytes, decompressed)) if bytes == &key.0 => decompressed,
                _ => decompress(&key.0).map_err(|_| SignatureError)?,
            };
            last = Some((&key.0, decompressed));
            keys.push(decompressed);
        }
        let claims: Vec<Claim<'_>> = items
            .iter()
            .zip(&keys)
            .map(|((public, body, signature), key)| Claim { key, key_bytes: &public.0, domain, body, signature })
            .collect();
        if verification::verify_all(&claims) { Ok(()) } else { Err(SignatureError) }
    }
}

/// The decompressed key of `bytes`, refused if it is not on the curve or weak. Decompressing is
/// a square root in the field, a tenth of a verification: the keys that passed are kept in a
/// small table, one slot per value of their first byte (modulo its size), and a slot holds the
/// last key that used it. A hit compares all 32 bytes, so a key another one evicted, or one
/// crafted to share its slot, only costs a decompression. Refused keys are never kept.
fn decompress(bytes: &[u8; 32]) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
    type Slot = Option<([u8; 32], ed25519_dalek::VerifyingKey)>;
    const SLOTS: usize = 64;
    static KEPT: std::sync::Mutex<[Slot; SLOTS]> = std::sync::Mutex::new([None; SLOTS]);
    let slot = usize::from(bytes[0]) % SLOTS;
    let lock = || KEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((kept, key)) = lock()[slot]
        && &kept == bytes
    {
        return Ok(key);
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPublicKey)?;
    if key.is_weak() {
        return Err(KeyError::WeakPublicKey);
    }
    lock()[slot] = Some((*bytes, key));
    Ok(key)
}

impl fmt::Debug for SigningPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningPublicKey({})", &self.to_hex()[..16])
    }
}

impl Serialize for SigningPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SigningPublicKey {
    /// Takes the bytes as they are; an invalid key fails when used to verify.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SigningPublicKey(<[u8; 32]>::deserialize(deserializer)?))
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "crate::fixed_bytes")] pub [u8; 64]);

impl Signature {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", &self.to_hex()[..16])
    }
}

/// An X25519 static secret, used to open sealed envelopes.
pub struct AgreementSecret(x25519_dalek::StaticSecret);

impl AgreementSecret {
    /// A fresh key from the operating system's RNG.
    pub fn generate() -> AgreementSecret {
        AgreementSecret::generate_with(&mut OsRng::new())
    }

    /// A fresh key from `rng`.
    pub fn generate_with<R: CryptoRng + ?Sized>(rng: &mut R) -> AgreementSecret {
        AgreementSecret(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// Restores a key from its 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> AgreementSecret {
        AgreementSecret(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The 32 secret bytes, zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> AgreementPublicKey {
        AgreementPublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// X25519 with `their`, refusing low-order peer keys.
    pub fn agree(&self, their: &AgreementPublicKey) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let shared = self.0.diffie_hellman(&x25519_dalek::PublicKey::from(their.0));
        if !shared.was_contributory() {
            return Err(KeyError::NonContributory);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

impl fmt::Debug for AgreementSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgreementPublicKey(pub [u8; 32]);

impl AgreementPublicKey {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for AgreementPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgreementPublicKey({})", &hex::encode(self.0)[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_only_in_its_domain() {
        let key = SigningSecret::from_bytes(&[7; 32]);
        let sig = key.sign(Domain::Consent, b"body");
        let public = key.public_key();
        assert_eq!(public.verify(Domain::Consent, b"body", &sig), Ok(()));
        assert_eq!(public.verify(Domain::Turn, b"body", &sig), Err(SignatureError));
        assert_eq!(public.verify(Domain::Consent, b"bodz", &sig), Err(SignatureError));
    }

    proptest::proptest! {
        /// Against `verify_strict`, on valid signatures and on every single-bit change of one.
        #[test]
        fn verification_agrees_with_verify_strict(seed in proptest::prelude::any::<[u8; 32]>(), bit in 0usize..(64 * 8 + 32 * 8)) {
            let secret = SigningSecret::from_bytes(&seed);
            let public = secret.public_key();
            let body = seed[..8].to_vec();
            let signature = secret.sign(Domain::Consent, &body);
            let strict = |key: &[u8; 32], sig: &Signature| {
                ed25519_dalek::VerifyingKey::from_bytes(key).is_ok_and(|key| {
                    !key.is_weak()
                        && key
                            .verify_strict(&Domain::Consent.signing_message(&body), &ed25519_dalek::Signature::from_bytes(&sig.0))
                            .is_ok()
                })
            };
            proptest::prop_assert!(strict(public.as_bytes(), &signature));
            proptest::prop_assert_eq!(public.verify(Domain::Consent, &body, &signature), Ok(()));
            let (mut key, mut changed) = (*public.as_bytes(), signature);
            if bit < 64 * 8 {
                changed.0[bit / 8] ^= 1 << (bit % 8);
            } else {
                key[(bit - 64 * 8) / 8] ^= 1 << (bit % 8);
            }
            let ours = SigningPublicKey::unchecked(key).verify(Domain::Consent, &body, &changed).is_ok();
            proptest::prop_assert_eq!(ours, strict(&key, &changed));
        }
    }

    #[test]
    fn keys_sharing_a_kept_slot_verify_only_their_own_signatures() {
        // Two keys whose first bytes pick the same slot of the decompressed-key table.
        let first = SigningSecret::from_bytes(&[1; 32]);
        let slot = |key: &SigningSecret| key.public_key().0[0] % 64;
        let second = (2..=255u8)
            .map(|i| SigningSecret::from_bytes(&[i; 32]))
            .find(|key| slot(key) == slot(&first))
            .expect("some seed shares the slot");
        let (a, b) = (first.public_key(), second.public_key());
        let (sig_a, sig_b) = (first.sign(Domain::Turn, b"body"), second.sign(Domain::Turn, b"body"));
        for _ in 0..2 {
            assert_eq!(a.verify(Domain::Turn, b"body", &sig_a), Ok(()));
            assert_eq!(b.verify(Domain::Turn, b"body", &sig_a), Err(SignatureError), "not under the other key");
            assert_eq!(b.verify(Domain::Turn, b"body", &sig_b), Ok(()));
            assert_eq!(a.verify(Domain::Turn, b"body", &sig_b), Err(SignatureError));
        }
        // A weak key is refused whatever its slot holds, and is not kept.
        let mut weak = [0u8; 32];
        weak[0] = 1; // the identity point
        for _ in 0..2 {
            assert_eq!(decompress(&weak).map(|_| ()), Err(KeyError::WeakPublicKey));
        }
    }

    #[test]
    fn batch_verification_agrees_with_single() {
        let keys: Vec<SigningSecret> = (0..8u8).map(|i| SigningSecret::from_bytes(&[i; 32])).collect();
        let publics: Vec<SigningPublicKey> = keys.iter().map(SigningSecret::public_key).collect();
        let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 40]).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&bodies).map(|(k, b)| k.sign(Domain::AuditEntry, b)).collect();
        let items = |sigs: &[Signature]| -> Result<(), SignatureError> {
            let items: Vec<(&SigningPublicKey, &[u8], &Signature)> =
                publics.iter().zip(&bodies).zip(sigs).map(|((k, b), s)| (k, b.as_slice(), s)).collect();
            SigningPublicKey::verify_batch(Domain::AuditEntry, &items)
        };
        assert_eq!(items(&sigs), Ok(()));
        sigs[5].0[3] ^= 1;
        assert_eq!(items(&sigs), Err(SignatureError));
    }

    #[test]
    fn weak_and_invalid_public_keys_are_refused() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(SigningPublicKey::from_bytes(&identity), Err(KeyError::WeakPublicKey));
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(SigningPublicKey::from_bytes(&off_curve), Err(KeyError::InvalidPublicKey));
    }

    #[test]
    fn a_decoded_weak_key_verifies_nothing() {
        // The identity point: anyone can make "signatures" that satisfy a lax check under it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak: SigningPublicKey = postcard::from_bytes(&postcard::to_allocvec(&identity).unwrap()).unwrap();
        let mut sig = [0u8; 64];
        sig[0] = 1; // R = identity, s = 0
        assert_eq!(weak.verify(Domain::Consent, b"anything", &Signature(sig)), Err(SignatureError));
        assert_eq!(
            SigningPublicKey::verify_batch(Domain::Consent, &[(&weak, b"anything".as_slice(), &Signature(sig))]),
            Err(SignatureError)
        );
    }

    #[test]
    fn low_order_agreement_key_is_refused() {
        let secret = AgreementSecret::from_bytes([9; 32]);
        assert_eq!(secret.agree(&AgreementPublicKey([0; 32])).unwrap_err(), KeyError::NonContributory);
    }

    #[test]
    fn secrets_do_not_print() {
        let key = SigningSecret::from_bytes(&[1; 32]);
        assert_eq!(format!("{key:?}"), "SecretKey(..)");
        assert_eq!(format!("{:?}", AgreementSecret::from_bytes([1; 32])), "SecretKey(..)");
    }
}
