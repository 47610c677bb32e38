//! Contacts: other owners this owner has (or is establishing) a signed friendship with, what we
//! know of their node, which of our identities they may see, and the tags they show us.

use clawnet_crypto::{
    AgreementPublicKey, DeviceCert, IdentityId, OwnerId, Signed, SigningPublicKey, Timestamp, WireFormat, encoding,
};
use clawnet_protocol::contact::{ContactRelation, ContactState};
use clawnet_protocol::tags::{FeedId, TagAnnouncement};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::CONTACTS;
use crate::view::{ReadView, Txn, decode_value};

/// One contact, in any state of the contact lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    /// Their owner id.
    pub owner: OwnerId,
    /// Their name as they present it.
    pub display_name: String,
    /// Their node's device key (known from the invite code or their request).
    pub device_key: SigningPublicKey,
    /// Their owner-signed device certificate, once received.
    pub device: Option<Signed<DeviceCert>>,
    /// Their X25519 key for sealed contact data, once received.
    pub contact_key: Option<AgreementPublicKey>,
    /// Where the relationship stands.
    pub state: ContactState,
    /// The identity of ours this contact may see and talk to, if assigned.
    pub assigned_identity: Option<IdentityId>,
    /// Their feed (gossip topic), once they told us.
    pub their_feed: Option<FeedId>,
    /// The latest announcement of theirs we verified (what their identities look like to us).
    pub their_tags: Option<Signed<TagAnnouncement>>,
    /// When the relationship started.
    pub created_at: Timestamp,
    /// When the record last changed.
    pub updated_at: Timestamp,
}

impl WireFormat for ContactRecord {
    const NAME: &'static str = "contact record";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 160 * 1024;
}

impl ContactRecord {
    /// The protocol state machine for this relationship.
    pub fn relation(&self) -> ContactRelation {
        ContactRelation { peer: self.owner, state: self.state.clone() }
    }

    /// Whether both sides agreed and neither removed it.
    pub fn is_connected(&self) -> bool {
        self.state == ContactState::Connected
    }
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

    /// The contact whose node has `device_key`, if any.
    pub fn contact_by_device(&self, device_key: &SigningPublicKey) -> Result<Option<ContactRecord>, StoreError> {
        Ok(self.contacts()?.into_iter().find(|contact| &contact.device_key == device_key))
    }
}

impl Txn<'_> {
    /// Inserts or replaces a contact record.
    pub fn put_contact(&mut self, record: &ContactRecord) -> Result<(), StoreError> {
        let mut table = self.write_table(CONTACTS).ctx("writing a contact")?;
        table.insert(record.owner.key().as_bytes(), encoding::encode(record).as_slice()).ctx("writing a contact")?;
        Ok(())
    }
}
