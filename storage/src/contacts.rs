//! Contacts: other owners this owner has (or is establishing) a signed friendship with.

use clawnet_crypto::{AgreementPublicKey, DeviceCert, IdentityId, OwnerId, Signed, Timestamp, WireFormat, encoding};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::CONTACTS;
use crate::view::{ReadView, Txn, decode_value};

/// Where a contact relationship stands (mirrors the protocol's contact lifecycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredContactState {
    /// We asked; waiting for them.
    RequestSent,
    /// They asked; waiting for our owner.
    RequestReceived,
    /// Both agreed.
    Connected,
    /// Ended.
    Removed,
}

/// One contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    /// Their owner id.
    pub owner: OwnerId,
    /// Their name as they present it.
    pub display_name: String,
    /// Their X25519 key for sealed contact data.
    pub contact_key: AgreementPublicKey,
    /// Their node.
    pub device: Signed<DeviceCert>,
    /// Where it stands.
    pub state: StoredContactState,
    /// The identity of ours this contact may see and talk to, if assigned.
    pub assigned_identity: Option<IdentityId>,
    /// When the record last changed.
    pub updated_at: Timestamp,
}

impl WireFormat for ContactRecord {
    const NAME: &'static str = "contact record";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 4 * 1024;
}

impl ReadView {
    /// Every contact record.
    pub fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        let table = self.tx.open_table(CONTACTS).ctx("reading contacts")?;
        let mut records = Vec::new();
        for row in table.iter().ctx("reading contacts")? {
            let (_, value) = row.ctx("reading contacts")?;
            records.push(decode_value(value.value())?);
        }
        Ok(records)
    }

    /// The contact record of `owner`.
    pub fn contact(&self, owner: &OwnerId) -> Result<Option<ContactRecord>, StoreError> {
        let table = self.tx.open_table(CONTACTS).ctx("reading contacts")?;
        let value = table.get(owner.key().as_bytes()).ctx("reading contacts")?;
        value.map(|value| decode_value(value.value())).transpose()
    }
}

impl Txn<'_> {
    /// Inserts or replaces a contact record.
    pub fn put_contact(&mut self, record: &ContactRecord) -> Result<(), StoreError> {
        let mut table = self.tx.open_table(CONTACTS).ctx("writing a contact")?;
        table.insert(record.owner.key().as_bytes(), encoding::encode(record).as_slice()).ctx("writing a contact")?;
        Ok(())
    }
}
