//! Secrets at rest: a blob encrypted with ChaCha20-Poly1305 under a key derived from the owner's
//! passphrase by Argon2id, or, only when the owner opts in, stored in the clear.
//!
//! Layout: `"CNKS" | version (1) | kdf (1: 0 none, 1 argon2id) | m_kib (u32 LE) | t (u32 LE) |
//! p (u32 LE) | salt (16) | nonce (12) | ciphertext`. The whole header is associated data.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::rng::OsRng;

const MAGIC: &[u8; 4] = b"CNKS";
const VERSION: u8 = 1;
const KDF_NONE: u8 = 0;
const KDF_ARGON2ID: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 12 + 16 + 12;
/// Refuse parameters a tampered file could use to exhaust memory or time on unlock.
const MAX_M_KIB: u32 = 4 * 1024 * 1024;
const MAX_T: u32 = 64;
const MAX_P: u32 = 16;

/// Why a keystore could not be unlocked or locked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The blob is not a keystore this build can read.
    #[error("keystore is malformed: {0}")]
    Malformed(&'static str),
    /// The keystore is encrypted and no passphrase was given.
    #[error("the keystore is protected by a passphrase: enter it, or set CLAWNET_PASSPHRASE")]
    PassphraseRequired,
    /// Decryption failed: the passphrase is wrong or the file was altered.
    #[error("wrong passphrase (or the keystore was altered)")]
    WrongPassphrase,
    /// The Argon2id parameters are out of the accepted range.
    #[error("keystore key-derivation parameters are out of range")]
    BadParameters,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// The default for owners: 64 MiB, 3 passes, 1 lane (about a quarter second here, and
    /// costly to guess at scale).
    pub const DEFAULT: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 1 };
    /// The cheapest allowed setting, for test vectors only.
    pub const MINIMAL: KdfParams = KdfParams { m_kib: 8, t: 1, p: 1 };

    fn argon2(&self) -> Result<Argon2<'static>, KeystoreError> {
        if self.m_kib > MAX_M_KIB || self.t > MAX_T || self.p > MAX_P {
            return Err(KeystoreError::BadParameters);
        }
        let params = Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(|_| KeystoreError::BadParameters)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// A passphrase, zeroized when dropped and never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps the passphrase text.
    pub fn new(text: String) -> Passphrase {
        Passphrase(Zeroizing::new(text))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// What protects a keystore: a key derived from a passphrase (kept while the node is unlocked,
/// so updated secrets can be locked again without asking), or nothing.
pub struct LockKey {
    protection: Protection,
}

enum Protection {
    Clear,
    Derived { key: Zeroizing<[u8; 32]>, salt: [u8; 16], params: KdfParams },
}

impl LockKey {
    /// No encryption: secrets are stored in the clear. Only when the owner opts in.
    pub fn unprotected() -> LockKey {
        LockKey { protection: Protection::Clear }
    }

    /// Derives a key from `passphrase` with a fresh salt.
    pub fn derive(passphrase: &Passphrase, params: KdfParams) -> Result<LockKey, KeystoreError> {
        LockKey::derive_with(&mut OsRng::new(), passphrase, params)
    }

    /// Like [`LockKey::derive`] with the given RNG.
    pub fn derive_with<R: CryptoRng + ?Sized>(
        rng: &mut R,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<LockKey, KeystoreError> {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        derive(passphrase, params, salt)
    }

    /// Whether secrets locked with this key are encrypted.
    pub fn is_protected(&self) -> bool {
        matches!(self.protection, Protection::Derived { .. })
    }

    /// Locks `secrets` with a fresh nonce.
    pub fn lock(&self, secrets: &[u8]) -> Vec<u8> {
        self.lock_with(&mut OsRng::new(), secrets)
    }

    /// Like [`LockKey::lock`] with the given RNG.
    pub fn lock_with<R: CryptoRng + ?Sized>(&self, rng: &mut R, secrets: &[u8]) -> Vec<u8> {
        let mut blob = Vec::with_capacity(HEADER_LEN + secrets.len() + 16);
        blob.extend_from_slice(MAGIC);
        blob.push(VERSION);
        match &self.protection {
            Protection::Clear => {
                blob.push(KDF_NONE);
                blob.resize(HEADER_LEN, 0);
                blob.extend_from_slice(secrets);
            }
            Protection::Derived { key, salt, params } => {
                blob.push(KDF_ARGON2ID);
                for value in [params.m_kib, params.t, params.p] {
                    blob.extend_from_slice(&value.to_le_bytes());
                }
                blob.extend_from_slice(salt);
                let mut nonce = [0u8; 12];
                rng.fill_bytes(&mut nonce);
                blob.extend_from_slice(&nonce);
                let cipher = ChaCha20Poly1305::new(&Key::from(**key));
                // Encryption only fails for inputs beyond 256 GiB.
                let ciphertext = cipher
                    .encrypt(&Nonce::from(nonce), Payload { msg: secrets, aad: &blob[..HEADER_LEN] })
                    .expect("keystore plaintext within ChaCha20-Poly1305 limits");
                blob.extend_from_slice(&ciphertext);
            }
        }
        blob
    }
}

impl fmt::Debug for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.protection {
            Protection::Clear => f.write_str("LockKey(unprotected)"),
            Protection::Derived { params, .. } => write!(f, "LockKey(argon2id {params:?})"),
        }
    }
}

/// Unlocks a keystore blob, returning the secrets and the key to lock updates with.
pub fn unlock(blob: &[u8], passphrase: Option<&Passphrase>) -> Result<(Zeroizing<Vec<u8>>, LockKey), KeystoreError> {
    if blob.len() < HEADER_LEN {
        return Err(KeystoreError::Malformed("truncated header"));
    }
    if &blob[..4] != MAGIC {
        return Err(KeystoreError::Malformed("not a ClawNet keystore"));
    }
    if blob[4] != VERSION {
        return Err(KeystoreError::Malformed("unknown keystore version: upgrade clawnet"));
    }
    let header = &blob[..HEADER_LEN];
    let body = &blob[HEADER_LEN..];
    match blob[5] {
        KDF_NONE => Ok((Zeroizing::new(body.to_vec()), LockKey::unprotected())),
        KDF_ARGON2ID => {
            let word = |at: usize| u32::from_le_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]]);
            let params = KdfParams { m_kib: word(6), t: word(10), p: word(14) };
            let mut salt = [0u8; 16];
            salt.copy_from_slice(&blob[18..34]);
            let mut nonce = [0u8; 12];
            nonce.copy_from_slice(&blob[34..46]);
            let passphrase = passphrase.ok_or(KeystoreError::PassphraseRequired)?;
            let lock_key = derive(passphrase, params, salt)?;
            let Protection::Derived { key, .. } = &lock_key.protection else {
                return Err(KeystoreError::Malformed("derivation"));
            };
            let cipher = ChaCha20Poly1305::new(&Key::from(**key));
            let secrets = cipher
                .decrypt(&Nonce::from(nonce), Payload { msg: body, aad: header })
                .map_err(|_| KeystoreError::WrongPassphrase)?;
            Ok((Zeroizing::new(secrets), lock_key))
        }
        _ => Err(KeystoreError::Malformed("unknown key derivation")),
    }
}

/// Whether `blob` needs a passphrase to unlock.
pub fn needs_passphrase(blob: &[u8]) -> bool {
    blob.get(5) == Some(&KDF_ARGON2ID)
}

fn derive(passphrase: &Passphrase, params: KdfParams, salt: [u8; 16]) -> Result<LockKey, KeystoreError> {
    let mut key = Zeroizing::new([0u8; 32]);
    params
        .argon2()?
        .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
        .map_err(|_| KeystoreError::BadParameters)?;
    Ok(LockKey { protection: Protection::Derived { key, salt, params } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(text: &str) -> Passphrase {
        Passphrase::new(text.to_owned())
    }

    #[test]
    fn passphrase_round_trip_and_wrong_passphrase() {
        let key = LockKey::derive(&pass("correct horse"), KdfParams::MINIMAL).unwrap();
        let blob = key.lock(b"secret keys");
        assert!(needs_passphrase(&blob));
        assert!(!blob.windows(11).any(|w| w == b"secret keys"), "plaintext visible");
        let (secrets, relock) = unlock(&blob, Some(&pass("correct horse"))).unwrap();
        assert_eq!(secrets.as_slice(), b"secret keys");
        assert!(relock.is_protected());
        assert_eq!(unlock(&blob, Some(&pass("wrong"))).unwrap_err(), KeystoreError::WrongPassphrase);
        assert_eq!(unlock(&blob, None).unwrap_err(), KeystoreError::PassphraseRequired);
    }

    #[test]
    fn altered_header_is_detected() {
        let key = LockKey::derive(&pass("p"), KdfParams::MINIMAL).unwrap();
        let mut blob = key.lock(b"s");
        blob[40] ^= 1; // inside the nonce
        assert_eq!(unlock(&blob, Some(&pass("p"))).unwrap_err(), KeystoreError::WrongPassphrase);
    }

    #[test]
    fn absurd_parameters_are_refused() {
        let key = LockKey::derive(&pass("p"), KdfParams::MINIMAL).unwrap();
        let mut blob = key.lock(b"s");
        blob[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(unlock(&blob, Some(&pass("p"))).unwrap_err(), KeystoreError::BadParameters);
    }

    #[test]
    fn unprotected_keystore_opens_without_passphrase() {
        let blob = LockKey::unprotected().lock(b"s");
        assert!(!needs_passphrase(&blob));
        let (secrets, relock) = unlock(&blob, None).unwrap();
        assert_eq!(secrets.as_slice(), b"s");
        assert!(!relock.is_protected());
    }

    #[test]
    fn passphrase_does_not_print() {
        assert_eq!(format!("{:?}", pass("hunter2")), "Passphrase(..)");
    }
}
