//! The ed25519 verification rule, one signature at a time and many at once, accepting the same
//! signatures either way.
//!
//! **The rule.** RFC 8032 §5.1.7's group equation `[8][s]B = [8]R + [8][k]A`, with
//! `k = SHA-512(R || A || M)`, and stricter encodings than the RFC asks: `s` canonical (below
//! the group order), `R` canonical (y below p) and neither `A` nor `R` of small order (`A`
//! is checked where keys are decompressed, `keys.rs`). Every signature an honest signer makes
//! satisfies the equation without the factor 8, which is what `verify_strict` checks; the
//! factor 8 also accepts a signature whose `R` (or key) carries a small-order component, which
//! only the key's holder can add.
//!
//! **Why the factor 8.** Batch verification checks one random combination of the equations,
//! `[8]([-Σ zᵢsᵢ]B + Σ[zᵢ]Rᵢ + Σ[zᵢkᵢ]Aᵢ) = 0`, with each distinct key once (its coefficients
//! summed). Per signature, ten of them cost half a `verify_strict` by ten keys, a third by one
//! key, the usual case: a delivery's turns are one speaker's (`crypto/benches/verify.rs`).
//! Without the factor 8 a batch cannot agree with a one-by-one check: the small-order
//! components of the `Rᵢ` cancel in the combination for some `zᵢ` (one time in eight, or
//! always for two crafted signatures), so a batch would accept what one-by-one refuses, and a
//! transcript accepted in a batch could fail a later check. With it, a batch passes exactly
//! when every signature in it does (a false pass has probability ~2⁻¹²⁸ with the `zᵢ` drawn
//! from the OS RNG after the signatures are known), and both agree with `verify_strict` on
//! every signature but those the key's holder crafted that way.
//!
//! **One at a time**, the plain check runs first (recompute `R` and compare encodings, after
//! refusing a small-order `R` by its bytes): it accepts every honest signature for less than
//! `verify_strict`, which also decompresses `R`. Only a signature it refuses pays for the
//! equation with the factor 8.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Verifier, VerifyingKey};
use rand_core::Rng;
use sha2::{Digest, Sha512};

use crate::domain::Domain;
use crate::keys::Signature;
use crate::rng::OsRng;

/// One signature to check: by `key` (decompressed, on the curve and not of small order) of
/// `key_bytes`, over `body` in `domain`.
#[derive(Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub(crate) key: &'a VerifyingKey,
    pub(crate) key_bytes: &'a [u8; 32],
    pub(crate) domain: Domain,
    pub(crate) body: &'a [u8],
    pub(crate) signature: &'a Signature,
}

/// Whether one signature satisfies the rule.
pub(crate) fn verify_one(claim: &Claim<'_>) -> bool {
    if has_small_order_r(claim.signature) {
        return false;
    }
    let message = claim.domain.signing_message(claim.body);
    let signature = ed25519_dalek::Signature::from_bytes(&claim.signature.0);
    if claim.key.verify(&message, &signature).is_ok() {
        return true;
    }
    prepare(claim).is_some_and(|equation| {
        let recomputed = EdwardsPoint::vartime_double_scalar_mul_basepoint(&equation.k, &-equation.a, &equation.s);
        (recomputed - equation.r).mul_by_cofactor().is_identity()
    })
}

/// Whether every signature of `claims` satisfies the rule, checked in one combination; true
/// for none.
pub(crate) fn verify_all(claims: &[Claim<'_>]) -> bool {
    let Some(equations) = claims.iter().map(prepare).collect::<Option<Vec<_>>>() else {
        return false;
    };
    let mut random = vec![0u8; 16 * equations.len()];
    OsRng::new().fill_bytes(&mut random);
    let z: Vec<Scalar> = random
        .chunks_exact(16)
        .map(|chunk| {
            let mut wide = [0u8; 32];
            wide[..16].copy_from_slice(chunk);
            Scalar::from_bytes_mod_order(wide)
        })
        .collect();
    let b_coefficient: Scalar = -equations.iter().zip(&z).map(|(equation, z)| z * equation.s).sum::<Scalar>();
    // A key that signed several of the claims enters once, with the sum of its coefficients:
    // the same combination, with fewer points (a delivery's turns are mostly one speaker's).
    let mut keys: Vec<(&[u8; 32], EdwardsPoint, Scalar)> = Vec::new();
    for ((claim, equation), z) in claims.iter().zip(&equations).zip(&z) {
        match keys.iter_mut().find(|(bytes, _, _)| *bytes == claim.key_bytes) {
            Some((_, _, coefficient)) => *coefficient += z * equation.k,
            None => keys.push((claim.key_bytes, equation.a, z * equation.k)),
        }
    }
    let scalars = std::iter::once(b_coefficient)
        .chain(z.iter().copied())
        .chain(keys.iter().map(|(_, _, coefficient)| *coefficient));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(equations.iter().map(|equation| equation.r))
        .chain(keys.iter().map(|(_, a, _)| *a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).mul_by_cofactor().is_identity()
}

/// The parts of one signature's equation, once its encodings passed.
struct Equation {
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Checks the encodings of `claim`'s signature and computes its `k`; `None` if they fail.
fn prepare(claim: &Claim<'_>) -> Option<Equation> {
    let signature = &claim.signature.0;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(signature[32..].try_into().ok()?))?;
    let r_bytes: [u8; 32] = signature[..32].try_into().ok()?;
    if !is_canonical_y(&r_bytes) {
        return None;
    }
    // A canonical y with the sign bit set on x = 0 decodes to a small-order point: refused here.
    let r = CompressedEdwardsY(r_bytes).decompress().filter(|r| !r.is_small_order())?;
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(claim.key_bytes);
    hash.update(claim.domain.signing_message(claim.body));
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    Some(Equation { a: claim.key.to_edwards(), r, s, k })
}

/// Whether the y of an encoded point is below p = 2²⁵⁵ - 19 (the sign bit of x aside).
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    // y ≥ p only for the 19 values from p to 2²⁵⁵ - 1: all ones but the lowest byte, ≥ 0xed.
    let all_ones = bytes[1..31].iter().all(|byte| *byte == 0xff) && bytes[31] & 0x7f == 0x7f;
    !(all_ones && bytes[0] >= 0xed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A signer with direct access to its scalar, to craft signatures honest signers never make.
    struct Signer {
        a: Scalar,
        key: VerifyingKey,
        key_bytes: [u8; 32],
    }

    impl Signer {
        fn new(seed: u8) -> Signer {
            let secret = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
            Signer::with_point(secret.to_scalar(), EdwardsPoint::default())
        }

        /// A key `[a]B + torsion`: not of small order, but with a small-order component.
        fn with_point(a: Scalar, torsion: EdwardsPoint) -> Signer {
            let key_bytes = (EdwardsPoint::mul_base(&a) + torsion).compress().to_bytes();
            let key = VerifyingKey::from_bytes(&key_bytes).expect("on the curve");
            assert!(!key.is_weak());
            Signer { a, key, key_bytes }
        }

        fn k(&self, r: &[u8; 32], body: &[u8]) -> Scalar {
            let mut hash = Sha512::new();
            hash.update(r);
            hash.update(self.key_bytes);
            hash.update(Domain::Turn.signing_message(body));
            Scalar::from_bytes_mod_order_wide(&hash.finalize().into())
        }

        /// A signature with nonce `nonce` whose R carries `torsion` (the identity for an honest
        /// one).
        fn sign(&self, body: &[u8], nonce: u64, torsion: EdwardsPoint) -> Signature {
            let nonce = Scalar::from(nonce + 1);
            let r = (EdwardsPoint::mul_base(&nonce) + torsion).compress().to_bytes();
            let s = nonce + self.k(&r, body) * self.a;
            signature(&r, &s)
        }

        fn claim<'a>(&'a self, body: &'a [u8], signature: &'a Signature) -> Claim<'a> {
            Claim { key: &self.key, key_bytes: &self.key_bytes, domain: Domain::Turn, body, signature }
        }

        fn strict(&self, body: &[u8], signature: &Signature) -> bool {
            let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
            self.key.verify_strict(&Domain::Turn.signing_message(body), &signature).is_ok()
        }
    }

    fn signature(r: &[u8; 32], s: &Scalar) -> Signature {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(r);
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature(bytes)
    }

    fn order_8_point() -> EdwardsPoint {
        CompressedEdwardsY(SMALL_ORDER_ENCODINGS[4]).decompress().expect("on the curve")
    }

    #[test]
    fn the_small_order_encodings_are_the_eight_torsion_points() {
        for bytes in SMALL_ORDER_ENCODINGS {
            let point = CompressedEdwardsY(bytes).decompress().expect("on the curve");
            assert!(point.is_small_order(), "{} has small order", hex::encode(bytes));
            assert_eq!(point.compress().to_bytes(), bytes, "canonical");
        }
        // Eight distinct points of small order are all of them: the torsion subgroup has eight.
        let distinct: std::collections::HashSet<[u8; 32]> = SMALL_ORDER_ENCODINGS.into_iter().collect();
        assert_eq!(distinct.len(), 8);
        let point = order_8_point();
        let four_times = point + point + point + point;
        assert!(four_times.is_small_order() && !four_times.is_identity(), "a point of order 8");
    }

    #[test]
    fn a_non_canonical_y_is_recognised() {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!is_canonical_y(&p), "p itself");
        p[31] = 0xff;
        assert!(!is_canonical_y(&p), "p, with the sign bit");
        p[0] = 0xec;
        assert!(is_canonical_y(&p), "p - 1");
        assert!(is_canonical_y(&[0; 32]));
    }

    /// A signature whose R is each of the small-order points, by a key with a torsion
    /// component, made to satisfy the plain equation: `verify` alone would accept it.
    #[test]
    fn a_small_order_r_is_refused_like_verify_strict() {
        let torsion = order_8_point();
        let signer = Signer::with_point(Signer::new(9).a, torsion);
        for r in SMALL_ORDER_ENCODINGS {
            // [s]B - [k]A = -[k]T when s = k·a: search a body whose k gives R.
            let (body, k) = (0u32..)
                .map(|i| {
                    let body = i.to_le_bytes().to_vec();
                    let k = signer.k(&r, &body);
                    (body, k)
                })
                .find(|(_, k)| (-(k * torsion)).compress().to_bytes() == r)
                .expect("one body in eight on average");
            let signature = signature(&r, &(k * signer.a));
            let plain = ed25519_dalek::Signature::from_bytes(&signature.0);
            let message = Domain::Turn.signing_message(&body);
            assert!(signer.key.verify(&message, &plain).is_ok(), "the plain check accepts it");
            assert!(!signer.strict(&body, &signature));
            assert!(!verify_one(&signer.claim(&body, &signature)), "R = {}", hex::encode(r));
            assert!(!verify_all(&[signer.claim(&body, &signature)]), "nor in a batch");
        }
    }

    /// The one difference from `verify_strict`: an R with a small-order component, which only
    /// the signer can add, is accepted one at a time and in a batch alike.
    #[test]
    fn a_torsion_component_in_r_is_accepted_one_at_a_time_and_in_a_batch_alike() {
        let signer = Signer::new(3);
        let honest = signer.sign(b"first", 1, EdwardsPoint::default());
        let crafted = signer.sign(b"second", 2, order_8_point());
        assert!(signer.strict(b"first", &honest));
        assert!(!signer.strict(b"second", &crafted), "verify_strict refuses it");
        assert!(verify_one(&signer.claim(b"second", &crafted)));
        assert!(verify_all(&[signer.claim(b"first", &honest), signer.claim(b"second", &crafted)]));
    }

    #[test]
    fn a_batch_of_one_key_fails_for_any_one_bad_signature() {
        let signer = Signer::new(5);
        let bodies: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 20]).collect();
        let signatures: Vec<Signature> =
            bodies.iter().enumerate().map(|(i, body)| signer.sign(body, i as u64, EdwardsPoint::default())).collect();
        let claims = |signatures: &[Signature]| -> bool {
            let claims: Vec<Claim<'_>> = bodies.iter().zip(signatures).map(|(b, s)| signer.claim(b, s)).collect();
            verify_all(&claims)
        };
        assert!(claims(&signatures));
        for bad in 0..signatures.len() {
            let mut altered = signatures.clone();
            altered[bad].0[40] ^= 1;
            assert!(!claims(&altered), "signature {bad} altered");
        }
    }

    /// How one signature of a batch is made: honestly, or altered in one of the ways a forger
    /// or a crafty signer would try.
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Honest,
        FlippedBit(usize),
        OtherBody,
        TorsionInR,
        SmallOrderR(usize),
        NonCanonicalS,
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            4 => Just(Kind::Honest),
            1 => (0usize..512).prop_map(Kind::FlippedBit),
            1 => Just(Kind::OtherBody),
            1 => Just(Kind::TorsionInR),
            1 => (0usize..8).prop_map(Kind::SmallOrderR),
            1 => Just(Kind::NonCanonicalS),
        ]
    }

    fn make(signer: &Signer, body: &[u8], nonce: u64, kind: Kind) -> Signature {
        let honest = signer.sign(body, nonce, EdwardsPoint::default());
        match kind {
            Kind::Honest | Kind::OtherBody => honest,
            Kind::FlippedBit(bit) => {
                let mut bytes = honest.0;
                bytes[bit / 8] ^= 1 << (bit % 8);
                Signature(bytes)
            }
            Kind::TorsionInR => signer.sign(body, nonce, order_8_point()),
            Kind::SmallOrderR(which) => {
                let mut bytes = honest.0;
                bytes[..32].copy_from_slice(&SMALL_ORDER_ENCODINGS[which]);
                Signature(bytes)
            }
            Kind::NonCanonicalS => {
                // s + ℓ: the same scalar mod ℓ, encoded above the group order.
                let mut bytes = honest.0;
                let mut ell = [0u8; 32];
                ell[..16].copy_from_slice(&[
                    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
                ]);
                ell[31] = 0x10;
                let mut carry = 0u16;
                for (byte, add) in bytes[32..].iter_mut().zip(ell) {
                    let sum = u16::from(*byte) + u16::from(add) + carry;
                    *byte = sum as u8;
                    carry = sum >> 8;
                }
                Signature(bytes)
            }
        }
    }

    proptest! {
        /// A batch passes exactly when every signature in it passes one at a time.
        #[test]
        fn a_batch_passes_exactly_when_each_signature_does(kinds in proptest::collection::vec(kind(), 1..6)) {
            let signers: Vec<Signer> = (0..kinds.len()).map(|i| Signer::new(i as u8 % 3)).collect();
            let bodies: Vec<Vec<u8>> = (0..kinds.len()).map(|i| vec![i as u8; 12]).collect();
            let signatures: Vec<Signature> = kinds
                .iter()
                .enumerate()
                .map(|(i, kind)| make(&signers[i], &bodies[i], i as u64, *kind))
                .collect();
            let checked: Vec<Vec<u8>> = kinds
                .iter()
                .zip(&bodies)
                .map(|(kind, body)| if matches!(kind, Kind::OtherBody) { b"other".to_vec() } else { body.clone() })
                .collect();
            let claims: Vec<Claim<'_>> =
                (0..kinds.len()).map(|i| signers[i].claim(&checked[i], &signatures[i])).collect();
            let one_by_one: Vec<bool> = claims.iter().map(verify_one).collect();
            for ((kind, ok), claim) in kinds.iter().zip(&one_by_one).zip(&claims) {
                let expected = matches!(kind, Kind::Honest | Kind::TorsionInR);
                prop_assert_eq!(*ok, expected, "{:?}", kind);
                // verify_strict agrees on all but the torsion component.
                let signature = ed25519_dalek::Signature::from_bytes(&claim.signature.0);
                let strict = claim.key.verify_strict(&Domain::Turn.signing_message(claim.body), &signature).is_ok();
                prop_assert_eq!(strict, matches!(kind, Kind::Honest), "{:?}", kind);
            }
            prop_assert_eq!(verify_all(&claims), one_by_one.iter().all(|ok| *ok));
        }
    }
}
