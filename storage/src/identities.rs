//! This owner's identity agents: certificate, description and status. Retired identities keep
//! their record (archived) and their revocation; their secret keys leave the keystore.

use clawnet_crypto::cert::ContextTag;
use clawnet_crypto::{IdentityCert, IdentityId, Revocation, Signed, Timestamp, WireFormat, encoding};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::IDENTITIES;
use crate::view::{ReadView, Txn, decode_value};

/// Whether an identity still has authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityStatus {
    /// It acts for the owner.
    Active,
    /// The owner retired it.
    Retired {
        /// When.
        at: Timestamp,
        /// The signed revocation.
        revocation: Box<Signed<Revocation>>,
    },
}

/// One identity agent of this owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// Its id.
    pub id: IdentityId,
    /// Its role tag.
    pub tag: ContextTag,
    /// What it is for.
    pub description: String,
    /// Its owner-signed certificate.
    pub cert: Signed<IdentityCert>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Active or retired.
    pub status: IdentityStatus,
}

impl WireFormat for IdentityRecord {
    const NAME: &'static str = "identity record";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 8 * 1024;
}

impl IdentityRecord {
    /// Whether it still has authority.
    pub fn is_active(&self) -> bool {
        self.status == IdentityStatus::Active
    }
}

impl ReadView {
    /// Every identity, active and retired, ordered by id.
    pub fn identities(&self) -> Result<Vec<IdentityRecord>, StoreError> {
        let table = self.tx.open_table(IDENTITIES).ctx("reading identities")?;
        let mut records = Vec::new();
        for row in table.iter().ctx("reading identities")? {
            let (_, value) = row.ctx("reading identities")?;
            records.push(decode_value(value.value())?);
        }
        Ok(records)
    }

    /// The identity `id`.
    pub fn identity(&self, id: &IdentityId) -> Result<Option<IdentityRecord>, StoreError> {
        let table = self.tx.open_table(IDENTITIES).ctx("reading identities")?;
        let value = table.get(&id.0).ctx("reading identities")?;
        value.map(|value| decode_value(value.value())).transpose()
    }

    /// The active identity with `tag`, if any.
    pub fn active_identity_by_tag(&self, tag: &ContextTag) -> Result<Option<IdentityRecord>, StoreError> {
        Ok(self.identities()?.into_iter().find(|record| record.is_active() && &record.tag == tag))
    }
}

impl Txn<'_> {
    /// Inserts or replaces an identity record.
    pub fn put_identity(&mut self, record: &IdentityRecord) -> Result<(), StoreError> {
        let mut table = self.write_table(IDENTITIES).ctx("writing an identity")?;
        table.insert(&record.id.0, encoding::encode(record).as_slice()).ctx("writing an identity")?;
        Ok(())
    }
}
