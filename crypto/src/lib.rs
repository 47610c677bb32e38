//! Cryptographic building blocks of ClawNet: keys, ids, domain-separated signatures, owner-signed
//! certificates, sealed multi-recipient envelopes and passphrase-locked keystores.
//!
//! This crate does no I/O and has no async code. Every signature is made over bytes with a
//! [`Domain`] context, so that a signature of one kind of object can never be accepted as
//! another; every encoding is versioned, size-limited and canonical (see [`encoding`]).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cert;
pub mod domain;
pub mod encoding;
mod fixed_bytes;
pub mod hash;
pub mod ids;
pub mod keyring;
pub mod keys;
pub mod keystore;
pub mod rng;
pub mod seal;
pub mod signed;
pub mod verification;

pub use cert::{DeviceCert, IdentityCert, Revocation};
pub use domain::{Domain, HashDomain};
pub use encoding::{DecodeError, WireFormat};
pub use hash::Hash32;
pub use ids::{Fingerprint, IdentityId, OwnerId, Timestamp};
pub use keyring::{IdentitySecrets, Keyring, OwnerSecrets};
pub use keys::{AgreementPublicKey, AgreementSecret, KeyError, Signature, SigningPublicKey, SigningSecret};
pub use seal::{OpenError, SealError, SealedEnvelope};
pub use signed::{Signable, Signed, Verified, VerifyError};
