//! Invites this owner issued. Only the token's lookup key is stored, so reading the database
//! does not reveal a usable token.

use clawnet_crypto::{Hash32, Timestamp, WireFormat, encoding};
use clawnet_protocol::contact::Invite;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::INVITES;
use crate::view::{ReadView, Txn, decode_value};

/// One issued invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops being valid.
    pub expires_at: Timestamp,
    /// Whether a contact request used it.
    pub used: bool,
}

impl WireFormat for InviteRecord {
    const NAME: &'static str = "invite record";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 64;
}

impl InviteRecord {
    /// What the contact state machine needs to know of it.
    pub fn invite(&self) -> Invite {
        Invite { expires_at: self.expires_at, used: self.used }
    }
}

impl ReadView {
    /// The invite stored under `lookup_key` (see `InviteToken::lookup_key`).
    pub fn invite(&self, lookup_key: &Hash32) -> Result<Option<InviteRecord>, StoreError> {
        let table = self.tx.open_table(INVITES).ctx("reading invites")?;
        let value = table.get(lookup_key.as_bytes()).ctx("reading invites")?;
        value.map(|value| decode_value(value.value())).transpose()
    }
}

impl Txn<'_> {
    /// Stores an invite under its token's lookup key.
    pub fn put_invite(&mut self, lookup_key: &Hash32, record: &InviteRecord) -> Result<(), StoreError> {
        let mut table = self.write_table(INVITES).ctx("writing an invite")?;
        table.insert(lookup_key.as_bytes(), encoding::encode(record).as_slice()).ctx("writing an invite")?;
        Ok(())
    }

    /// Forgets invites that expired before `now`; returns how many.
    pub fn prune_invites(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let mut table = self.write_table(INVITES).ctx("pruning invites")?;
        let mut pruned = 0;
        table
            .retain(|_, value| {
                let keep = decode_value::<InviteRecord>(value).is_ok_and(|r| r.expires_at > now);
                pruned += u64::from(!keep);
                keep
            })
            .ctx("pruning invites")?;
        Ok(pruned)
    }
}
