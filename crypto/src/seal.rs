//! Sealed multi-recipient envelopes: one payload readable by exactly a chosen set of X25519
//! keys, with no recipient ids in the clear and padded sizes.
//!
//! Construction (no new primitives):
//! - a random 32-byte content key `K` encrypts the padded payload with ChaCha20-Poly1305
//!   (nonce 0: `K` is used once), with the header and the caller's context as associated data;
//! - one ephemeral X25519 key per envelope; for each recipient `R` the wrap key is
//!   `HKDF-SHA256(salt = eph_pub || R, ikm = X25519(eph, R), info = WRAP_INFO)` and the slot is
//!   `ChaCha20-Poly1305(wrap key, nonce 0, K, aad = context)`;
//! - slots are shuffled and padded with random dummies to a power of two (at least 4), and the
//!   payload is padded to a power of two (at least 256 bytes, then 64 KiB steps), so an observer
//!   learns neither who the recipients are nor exactly how many there are or how long the
//!   payload is;
//! - the header commits to `K` (`H(K || eph_pub)`), so every recipient that opens the envelope
//!   reads the same plaintext (ChaCha20-Poly1305 alone is not key-committing).
//!
//! A recipient computes one X25519 and trial-decrypts the slots (a 48-byte AEAD each).
//!
//! Layout: `version (1) | eph_pub (32) | commitment (32) | n_slots (u16 LE) | n_slots × 48 |
//! body ciphertext (padded plaintext + 16)`.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::domain::HashDomain;
use crate::hash::Hash32;
use crate::keys::{AgreementPublicKey, AgreementSecret};
use crate::rng::OsRng;

const VERSION: u8 = 1;
const WRAP_INFO: &[u8] = b"clawnet/v1/seal/wrap";
const TAG_LEN: usize = 16;
const SLOT_LEN: usize = 32 + TAG_LEN;
const HEADER_LEN: usize = 1 + 32 + 32 + 2;
const MIN_SLOTS: usize = 4;
const MIN_PADDED: usize = 256;
const PAD_STEP: usize = 64 * 1024;

/// The most recipients one envelope can have.
pub const MAX_RECIPIENTS: usize = 4096;
/// The largest payload one envelope can carry.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The largest encoded envelope [`SealedEnvelope::from_bytes`] accepts.
pub const MAX_SEALED_LEN: usize = HEADER_LEN + MAX_RECIPIENTS * SLOT_LEN + MAX_PAYLOAD + PAD_STEP + TAG_LEN;

/// Why an envelope could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Sealing to nobody is almost certainly a bug in the caller.
    #[error("a sealed envelope needs at least one recipient")]
    NoRecipients,
    /// More recipients than an envelope can carry.
    #[error("{count} recipients, more than the limit of {MAX_RECIPIENTS}")]
    TooManyRecipients {
        /// How many were asked for.
        count: usize,
    },
    /// The payload is too large.
    #[error("payload of {len} bytes, more than the limit of {MAX_PAYLOAD}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
    },
    /// A recipient key has low order, so the wrap would be readable by anyone.
    #[error("recipient key {0:?} is not a usable X25519 key")]
    BadRecipientKey(AgreementPublicKey),
}

/// Why an envelope could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The bytes are not an envelope.
    #[error("malformed sealed envelope: {0}")]
    Malformed(&'static str),
    /// No slot opens with this key: the envelope is not for us (or was bound to another context).
    #[error("not a recipient of this envelope")]
    NotARecipient,
    /// A slot opened but the content key does not match the header's commitment.
    #[error("sealed envelope content key does not match its commitment")]
    BadCommitment,
    /// The body failed authentication.
    #[error("sealed envelope body failed authentication")]
    BodyTampered,
}

/// A sealed envelope in its encoded form.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEnvelope {
    bytes: Vec<u8>,
}

impl SealedEnvelope {
    /// Seals `payload` to `recipients`, bound to `context` (which the opener must supply too),
    /// with OS randomness.
    pub fn seal(
        payload: &[u8],
        recipients: &[AgreementPublicKey],
        context: &[u8],
    ) -> Result<SealedEnvelope, SealError> {
        SealedEnvelope::seal_with(&mut OsRng::new(), payload, recipients, context)
    }

    /// Like [`SealedEnvelope::seal`] with the given RNG (seeded RNGs make test vectors).
    pub fn seal_with<R: CryptoRng + ?Sized>(
        rng: &mut R,
        payload: &[u8],
        recipients: &[AgreementPublicKey],
        context: &[u8],
    ) -> Result<SealedEnvelope, SealError> {
        if recipients.is_empty() {
            return Err(SealError::NoRecipients);
        }
        if recipients.len() > MAX_RECIPIENTS {
            return Err(SealError::TooManyRecipients { count: recipients.len() });
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(SealError::PayloadTooLarge { len: payload.len() });
        }

        let mut content_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(content_key.as_mut());
        let ephemeral = AgreementSecret::generate_with(rng);
        let eph_public = ephemeral.public_key();
        let commitment = commitment(&content_key, &eph_public);

        let n_slots = padded_slot_count(recipients.len());
        let mut slots: Vec<[u8; SLOT_LEN]> = Vec::with_capacity(n_slots);
        for recipient in recipients {
            let shared = ephemeral.agree(recipient).map_err(|_| SealError::BadRecipientKey(*recipient))?;
            let wrap_key = wrap_key(&shared, &eph_public, recipient);
            let wrapped = aead(&wrap_key)
                .encrypt(&Nonce::default(), Payload { msg: content_key.as_ref(), aad: context })
                .map_err(|_| SealError::PayloadTooLarge { len: payload.len() })?;
            let mut slot = [0u8; SLOT_LEN];
            slot.copy_from_slice(&wrapped);
            slots.push(slot);
        }
        // Dummy slots are uniformly random, like real ones to anyone without the key.
        while slots.len() < n_slots {
            let mut slot = [0u8; SLOT_LEN];
            rng.fill_bytes(&mut slot);
            slots.push(slot);
        }
        shuffle(rng, &mut slots);

        let mut bytes = Vec::with_capacity(HEADER_LEN + n_slots * SLOT_LEN + padded_len(payload.len()) + TAG_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(eph_public.as_bytes());
        bytes.extend_from_slice(commitment.as_bytes());
        // n_slots <= MAX_RECIPIENTS rounded up to a power of two = 4096, which fits in u16.
        bytes.extend_from_slice(&(n_slots as u16).to_le_bytes());
        for slot in &slots {
            bytes.extend_from_slice(slot);
        }

        let padded = pad(payload);
        let aad = body_aad(&bytes[..HEADER_LEN], context);
        let body = aead(&content_key)
            .encrypt(&Nonce::default(), Payload { msg: &padded, aad: &aad })
            .map_err(|_| SealError::PayloadTooLarge { len: payload.len() })?;
        bytes.extend_from_slice(&body);
        Ok(SealedEnvelope { bytes })
    }

    /// Opens the envelope with `secret`, if it is one of the recipients and `context` is the one
    /// the envelope was sealed for.
    pub fn open(&self, secret: &AgreementSecret, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let parts = Parts::parse(&self.bytes)?;
        let my_public = secret.public_key();
        let shared = secret.agree(&parts.eph_public).map_err(|_| OpenError::NotARecipient)?;
        let wrap_key = wrap_key(&shared, &parts.eph_public, &my_public);
        let unwrapper = aead(&wrap_key);

        let content_key = parts
            .slots
            .chunks_exact(SLOT_LEN)
            .find_map(|slot| unwrapper.decrypt(&Nonce::default(), Payload { msg: slot, aad: context }).ok())
            .map(Zeroizing::new)
            .ok_or(OpenError::NotARecipient)?;
        let content_key: Zeroizing<[u8; 32]> =
            Zeroizing::new(content_key.as_slice().try_into().map_err(|_| OpenError::Malformed("content key length"))?);
        if commitment(&content_key, &parts.eph_public) != parts.commitment {
            return Err(OpenError::BadCommitment);
        }

        let aad = body_aad(&self.bytes[..HEADER_LEN], context);
        let padded = Zeroizing::new(
            aead(&content_key)
                .decrypt(&Nonce::default(), Payload { msg: parts.body, aad: &aad })
                .map_err(|_| OpenError::BodyTampered)?,
        );
        unpad(&padded)
    }

    /// Parses an encoded envelope, checking its structure (not its authenticity: that needs a
    /// recipient key).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SealedEnvelope, OpenError> {
        Parts::parse(&bytes)?;
        Ok(SealedEnvelope { bytes })
    }

    /// The encoded envelope.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many slots (real and dummy) the envelope carries.
    pub fn slot_count(&self) -> usize {
        Parts::parse(&self.bytes).map(|p| p.slots.len() / SLOT_LEN).unwrap_or(0)
    }
}

impl fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedEnvelope({} bytes)", self.bytes.len())
    }
}

impl Serialize for SealedEnvelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for SealedEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Vec::<u8>::deserialize(deserializer)?;
        SealedEnvelope::from_bytes(bytes).map_err(serde::de::Error::custom)
    }
}

struct Parts<'a> {
    eph_public: AgreementPublicKey,
    commitment: Hash32,
    slots: &'a [u8],
    body: &'a [u8],
}

impl<'a> Parts<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Parts<'a>, OpenError> {
        if bytes.len() > MAX_SEALED_LEN {
            return Err(OpenError::Malformed("longer than the size limit"));
        }
        if bytes.len() < HEADER_LEN {
            return Err(OpenError::Malformed("truncated header"));
        }
        if bytes[0] != VERSION {
            return Err(OpenError::Malformed("unknown version"));
        }
        let mut eph = [0u8; 32];
        eph.copy_from_slice(&bytes[1..33]);
        let mut commitment = [0u8; 32];
        commitment.copy_from_slice(&bytes[33..65]);
        let n_slots = usize::from(u16::from_le_bytes([bytes[65], bytes[66]]));
        if n_slots == 0 || n_slots > MAX_RECIPIENTS {
            return Err(OpenError::Malformed("slot count out of range"));
        }
        let slots_end = HEADER_LEN + n_slots * SLOT_LEN;
        if bytes.len() < slots_end + MIN_PADDED + TAG_LEN {
            return Err(OpenError::Malformed("truncated"));
        }
        Ok(Parts {
            eph_public: AgreementPublicKey(eph),
            commitment: Hash32(commitment),
            slots: &bytes[HEADER_LEN..slots_end],
            body: &bytes[slots_end..],
        })
    }
}

fn aead(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&Key::from(*key))
}

fn wrap_key(shared: &[u8; 32], eph_public: &AgreementPublicKey, recipient: &AgreementPublicKey) -> Zeroizing<[u8; 32]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_public.as_bytes());
    salt[32..].copy_from_slice(recipient.as_bytes());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
    Hkdf::<Sha256>::new(Some(&salt), shared)
        .expand(WRAP_INFO, okm.as_mut())
        .expect("32-byte HKDF output is always valid");
    okm
}

fn commitment(content_key: &[u8; 32], eph_public: &AgreementPublicKey) -> Hash32 {
    Hash32::of_parts(HashDomain::SealCommitment, &[content_key, eph_public.as_bytes()])
}

fn body_aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

fn padded_slot_count(n_recipients: usize) -> usize {
    n_recipients.next_power_of_two().max(MIN_SLOTS)
}

fn padded_len(payload_len: usize) -> usize {
    let framed = payload_len + 4;
    if framed <= PAD_STEP { framed.next_power_of_two().max(MIN_PADDED) } else { framed.div_ceil(PAD_STEP) * PAD_STEP }
}

fn pad(payload: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut padded = Zeroizing::new(Vec::with_capacity(padded_len(payload.len())));
    // payload.len() <= MAX_PAYLOAD, which fits in u32.
    padded.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    padded.extend_from_slice(payload);
    padded.resize(padded_len(payload.len()), 0);
    padded
}

fn unpad(padded: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let (len_bytes, rest) = padded.split_first_chunk::<4>().ok_or(OpenError::Malformed("padding"))?;
    let len = usize::try_from(u32::from_le_bytes(*len_bytes)).map_err(|_| OpenError::Malformed("padding"))?;
    if len > rest.len() || rest[len..].iter().any(|&b| b != 0) {
        return Err(OpenError::Malformed("padding"));
    }
    Ok(Zeroizing::new(rest[..len].to_vec()))
}

fn shuffle<T, R: CryptoRng + ?Sized>(rng: &mut R, items: &mut [T]) {
    for idx in (1..items.len()).rev() {
        // Modulo bias is below 2^-52 for at most 4096 items.
        let pick = (rng.next_u64() % (idx as u64 + 1)) as usize;
        items.swap(idx, pick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn keys(n: usize, seed: u64) -> Vec<AgreementSecret> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..n).map(|_| AgreementSecret::generate_with(&mut rng)).collect()
    }

    fn publics(secrets: &[AgreementSecret]) -> Vec<AgreementPublicKey> {
        secrets.iter().map(AgreementSecret::public_key).collect()
    }

    #[test]
    fn one_recipient_opens_and_a_non_recipient_cannot() {
        let recipients = keys(1, 1);
        let outsider = keys(1, 2);
        let sealed = SealedEnvelope::seal(b"tags", &publics(&recipients), b"feed:1").unwrap();
        assert_eq!(sealed.open(&recipients[0], b"feed:1").unwrap().as_slice(), b"tags");
        assert_eq!(sealed.open(&outsider[0], b"feed:1").unwrap_err(), OpenError::NotARecipient);
    }

    #[test]
    fn five_hundred_recipients_each_open_and_a_non_recipient_cannot() {
        let recipients = keys(500, 3);
        let outsider = keys(1, 4);
        let payload = vec![42u8; 3000];
        let sealed = SealedEnvelope::seal(&payload, &publics(&recipients), b"ctx").unwrap();
        assert_eq!(sealed.slot_count(), 512);
        for (idx, secret) in recipients.iter().enumerate() {
            assert_eq!(sealed.open(secret, b"ctx").unwrap().as_slice(), payload.as_slice(), "recipient {idx}");
        }
        assert_eq!(sealed.open(&outsider[0], b"ctx").unwrap_err(), OpenError::NotARecipient);
    }

    #[test]
    fn envelope_bound_to_its_context() {
        let recipients = keys(2, 5);
        let sealed = SealedEnvelope::seal(b"x", &publics(&recipients), b"feed-a:7").unwrap();
        assert_eq!(sealed.open(&recipients[1], b"feed-a:8").unwrap_err(), OpenError::NotARecipient);
    }

    #[test]
    fn tampered_body_is_detected() {
        let recipients = keys(1, 6);
        let sealed = SealedEnvelope::seal(b"x", &publics(&recipients), b"").unwrap();
        let mut bytes = sealed.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = SealedEnvelope::from_bytes(bytes).unwrap();
        assert_eq!(tampered.open(&recipients[0], b"").unwrap_err(), OpenError::BodyTampered);
    }

    #[test]
    fn sizes_are_padded() {
        let recipients = keys(3, 7);
        let short = SealedEnvelope::seal(b"a", &publics(&recipients[..1]), b"").unwrap();
        let longer = SealedEnvelope::seal(&[1u8; 200], &publics(&recipients), b"").unwrap();
        // 1 and 3 recipients both use 4 slots; 1 and 200 payload bytes both pad to 256.
        assert_eq!(short.as_bytes().len(), longer.as_bytes().len());
        assert_eq!(padded_len(253), 512);
        assert_eq!(padded_len(70_000), 2 * PAD_STEP);
    }

    #[test]
    fn seal_refuses_bad_inputs() {
        assert_eq!(SealedEnvelope::seal(b"x", &[], b"").unwrap_err(), SealError::NoRecipients);
        let low_order = AgreementPublicKey([0; 32]);
        assert_eq!(SealedEnvelope::seal(b"x", &[low_order], b"").unwrap_err(), SealError::BadRecipientKey(low_order));
        let many = vec![low_order; MAX_RECIPIENTS + 1];
        assert!(matches!(SealedEnvelope::seal(b"x", &many, b""), Err(SealError::TooManyRecipients { .. })));
    }

    #[test]
    fn truncated_envelopes_are_malformed() {
        let recipients = keys(1, 8);
        let sealed = SealedEnvelope::seal(b"x", &publics(&recipients), b"").unwrap();
        let bytes = sealed.as_bytes();
        for cut in [0, 10, HEADER_LEN, HEADER_LEN + 4 * SLOT_LEN + 10] {
            assert!(matches!(SealedEnvelope::from_bytes(bytes[..cut].to_vec()), Err(OpenError::Malformed(_))));
        }
    }
}
