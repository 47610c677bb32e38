//! This owner's feed: the gossip topic its tag announcements go to, and the next sequence number.

use clawnet_crypto::{WireFormat, encoding};
use clawnet_protocol::tags::FeedId;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::{META, META_FEED};
use crate::view::{ReadView, Txn, decode_value};

/// The current feed and where its sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedState {
    /// The current feed (replaced when a contact is removed or an assignment changes).
    pub feed: FeedId,
    /// The sequence number the next announcement takes.
    pub next_seq: u64,
}

impl WireFormat for FeedState {
    const NAME: &'static str = "feed state";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 64;
}

impl ReadView {
    /// The feed state, if a feed was ever created.
    pub fn feed(&self) -> Result<Option<FeedState>, StoreError> {
        let meta = self.tx.open_table(META).ctx("reading the feed")?;
        let value = meta.get(META_FEED).ctx("reading the feed")?;
        value.map(|value| decode_value(value.value())).transpose()
    }
}

impl Txn<'_> {
    /// Replaces the feed state.
    pub fn put_feed(&mut self, state: &FeedState) -> Result<(), StoreError> {
        let mut meta = self.write_table(META).ctx("writing the feed")?;
        meta.insert(META_FEED, encoding::encode(state).as_slice()).ctx("writing the feed")?;
        Ok(())
    }
}
