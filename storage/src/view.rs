//! Transaction wrappers: domain modules add their read and write methods to these, so code
//! outside this crate never sees a redb type.

use std::fmt;

use clawnet_crypto::{WireFormat, encoding};

use crate::error::StoreError;

/// A consistent read-only snapshot of the database.
pub struct ReadView {
    pub(crate) tx: redb::ReadTransaction,
}

impl fmt::Debug for ReadView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadView")
    }
}

/// The write transaction a [`crate::Change`] applies its records in. Its methods only write;
/// decisions belong to the caller, made before the change is submitted.
pub struct Txn<'a> {
    pub(crate) tx: &'a redb::WriteTransaction,
    /// Messages this transaction queued in the outbox, published to the sending worker once it
    /// commits (see [`crate::deliveries::QueuedFeed`]).
    pub(crate) queued: Vec<crate::deliveries::QueuedOutbound>,
}

impl fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Txn")
    }
}

/// Decodes a stored record, reporting corruption with the record's name. Records are this
/// node's own encodings, so their spelling is not re-checked.
pub(crate) fn decode_value<T: WireFormat>(bytes: &[u8]) -> Result<T, StoreError> {
    encoding::decode_local(bytes).map_err(StoreError::corrupt(T::NAME))
}
