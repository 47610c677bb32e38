//! Key newtypes: ed25519 for signatures, X25519 for key agreement.
//!
//! Secrets zeroize on drop and print as `SecretKey(..)`. A public signing key is kept as its 32
//! bytes: decoding one from the wire costs nothing, and the curve work (decompression, the
//! small-order check) happens when it is used to verify, where an invalid or weak key fails.
//! [`SigningPublicKey::from_bytes`] validates eagerly, for keys typed in by people. Verification
//! accepts exactly what `verify_strict` accepts, over a [`Domain`]-framed message. A node verifies many signatures
//! by few keys (its contacts' identities and owners), so the last keys that decompressed and
//! passed the check are kept decompressed ([`decompress`]).

use std::fmt;

use ed25519_dalek::{Signer, Verifier};
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::domain::Domain;
use crate::rng::OsRng;

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

    /// Verifies `signature` over `body` in `domain` with the strict ed25519 rules. An invalid
    /// or weak key never verifies anything.
    ///
    /// Accepts exactly what `verify_strict` accepts, for less: `verify_strict` decompresses R
    /// (a square root in the field, ~15% of a verification) only to refuse a small-order R,
    /// then compares the canonical encoding of the R it recomputes with R's bytes anyway. So a
    /// valid R has one of the canonical encodings, and a small-order one is one of
    /// [`SMALL_ORDER_ENCODINGS`]: checking the bytes against those and then running the plain
    /// check (recompute and compare bytes, with the same canonical-s rule) refuses the same
    /// signatures. `a_small_order_r_is_refused_like_verify_strict` shows the one `verify` alone
    /// would let through.
    pub fn verify(&self, domain: Domain, body: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key = decompress(&self.0).map_err(|_| SignatureError)?;
        if has_small_order_r(signature) {
            return Err(SignatureError);
        }
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify(&domain.signing_message(body), &signature).map_err(|_| SignatureError)
    }

    /// Verifies many signatures by possibly different keys at once (about twice as fast as one
    /// by one). On failure it does not say which one failed: verify one by one to find out.
    ///
    /// Every key is validated (on the curve, not weak) and every R checked for small order
    /// first, so the batch accepts every signature [`SigningPublicKey::verify`] accepts, and
    /// nothing else an honest signer makes. Not quite the same set: a signer that adds a
    /// small-order component to its R can pass the batch's random combination about one time
    /// in eight, where `verify` refuses it always. Only for signatures whose signer gains
    /// nothing by that (the audit chain, checked by the node that signed it).
    pub fn verify_batch(
        domain: Domain,
        items: &[(&SigningPublicKey, &[u8], &Signature)],
    ) -> Result<(), SignatureError> {
        if items.iter().any(|(_, _, signature)| has_small_order_r(signature)) {
            return Err(SignatureError);
        }
        let messages: Vec<Vec<u8>> = items.iter().map(|(_, body, _)| domain.signing_message(body)).collect();
        let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let signatures: Vec<ed25519_dalek::Signature> =
            items.iter().map(|(_, _, sig)| ed25519_dalek::Signature::from_bytes(&sig.0)).collect();
        // Batches are usually one key (an audit chain): decompress each distinct key once.
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
        ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).map_err(|_| SignatureError)
    }
}

/// The canonical encodings of the eight points of small order (the torsion subgroup: one
/// canonical encoding each), libsodium's list with both signs of x where x is not zero.
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = {
    const fn y(first: [u8; 16], last: [u8; 16]) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        let mut i = 0;
        while i < 16 {
            bytes[i] = first[i];
            bytes[16 + i] = last[i];
            i += 1;
        }
        bytes
    }
    const fn negative_x(mut bytes: [u8; 32]) -> [u8; 32] {
        bytes[31] |= 0x80;
        bytes
    }
    // The identity (order 1) and (0, -1) (order 2): x = 0, one encoding each.
    const IDENTITY: [u8; 32] = y([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0; 16]);
    const MINUS_ONE: [u8; 32] = y(
        [0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
    );
    // y = 0 (order 4), and the two y of the points of order 8.
    const ZERO: [u8; 32] = [0; 32];
    const ORDER_8_A: [u8; 32] = y(
        [0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0],
        [0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05],
    );
    const ORDER_8_B: [u8; 32] = y(
        [0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f],
        [0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a],
    );
    [IDENTITY, MINUS_ONE, ZERO, negative_x(ZERO), ORDER_8_A, negative_x(ORDER_8_A), ORDER_8_B, negative_x(ORDER_8_B)]
};

/// Whether the R half of `signature` is the canonical encoding of a point of small order.
fn has_small_order_r(signature: &Signature) -> bool {
    SMALL_ORDER_ENCODINGS.iter().any(|encoding| signature.0[..32] == encoding[..])
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
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use sha2::Digest;

    #[test]
    fn signature_verifies_only_in_its_domain() {
        let key = SigningSecret::from_bytes(&[7; 32]);
        let sig = key.sign(Domain::Consent, b"body");
        let public = key.public_key();
        assert_eq!(public.verify(Domain::Consent, b"body", &sig), Ok(()));
        assert_eq!(public.verify(Domain::Turn, b"body", &sig), Err(SignatureError));
        assert_eq!(public.verify(Domain::Consent, b"bodz", &sig), Err(SignatureError));
    }

    #[test]
    fn the_small_order_encodings_are_the_eight_torsion_points() {
        let points: Vec<_> = SMALL_ORDER_ENCODINGS
            .iter()
            .map(|bytes| {
                let point = CompressedEdwardsY(*bytes).decompress().expect("on the curve");
                assert!(point.is_small_order(), "{} has small order", hex::encode(bytes));
                assert_eq!(&point.compress().to_bytes(), bytes, "canonical");
                point
            })
            .collect();
        // Eight distinct points of small order are all of them: the torsion subgroup has eight.
        let distinct: std::collections::HashSet<[u8; 32]> = SMALL_ORDER_ENCODINGS.into_iter().collect();
        assert_eq!(distinct.len(), 8);
        let four_times = points[4] + points[4] + points[4] + points[4];
        assert!(four_times.is_small_order() && four_times != EdwardsPoint::default(), "a point of order 8");
    }

    /// A signature whose R is each of the small-order points, by a key with a torsion
    /// component, made to satisfy the plain equation: `verify` alone would accept it.
    #[test]
    fn a_small_order_r_is_refused_like_verify_strict() {
        let secret = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let a = secret.to_scalar();
        let torsion = CompressedEdwardsY(SMALL_ORDER_ENCODINGS[4]).decompress().expect("order 8");
        let point = EdwardsPoint::mul_base(&a) + torsion;
        let key_bytes = point.compress().to_bytes();
        let public = SigningPublicKey::from_bytes(&key_bytes).expect("not of small order itself");
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes).expect("on the curve");
        for r in SMALL_ORDER_ENCODINGS {
            // [s]B - [k]A = -[k]T when s = k·a: search a body whose k gives R.
            let (body, k) = (0u32..)
                .map(|i| {
                    let body = i.to_le_bytes().to_vec();
                    let mut hash = sha2::Sha512::new();
                    hash.update(r);
                    hash.update(key_bytes);
                    hash.update(Domain::Turn.signing_message(&body));
                    (body, Scalar::from_bytes_mod_order_wide(&hash.finalize().into()))
                })
                .find(|(_, k)| (-(k * torsion)).compress().to_bytes() == r)
                .expect("one body in eight on average");
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(&r);
            bytes[32..].copy_from_slice((k * a).as_bytes());
            let signature = Signature(bytes);
            let message = Domain::Turn.signing_message(&body);
            let dalek_signature = ed25519_dalek::Signature::from_bytes(&bytes);
            assert!(dalek.verify(&message, &dalek_signature).is_ok(), "the plain check accepts it");
            assert!(dalek.verify_strict(&message, &dalek_signature).is_err());
            assert_eq!(public.verify(Domain::Turn, &body, &signature), Err(SignatureError), "R = {}", hex::encode(r));
        }
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
