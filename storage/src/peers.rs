//! The address book: where other nodes were last seen, by device key.

use clawnet_crypto::{SigningPublicKey, Timestamp, WireFormat, encoding};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::PEERS;
use crate::view::{ReadView, Txn, decode_value};

/// The known addresses of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Multiaddrs, most recently learned first.
    pub addresses: Vec<String>,
    /// When they were last updated.
    pub updated_at: Timestamp,
}

impl WireFormat for PeerRecord {
    const NAME: &'static str = "peer record";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 8 * 1024;
}

/// Addresses kept per peer.
const MAX_ADDRESSES: usize = 16;

impl ReadView {
    /// The known addresses of the node with `device_key`.
    pub fn peer(&self, device_key: &SigningPublicKey) -> Result<Option<PeerRecord>, StoreError> {
        let table = self.tx.open_table(PEERS).ctx("reading peers")?;
        let value = table.get(device_key.as_bytes()).ctx("reading peers")?;
        value.map(|value| decode_value(value.value())).transpose()
    }
}

impl Txn<'_> {
    /// Records `addresses` for `device_key`, newest first, keeping a bounded list.
    pub fn add_peer_addresses(
        &mut self,
        device_key: &SigningPublicKey,
        addresses: &[String],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut table = self.write_table(PEERS).ctx("writing peers")?;
        let existing = table.get(device_key.as_bytes()).ctx("writing peers")?.map(|v| v.value().to_vec());
        let mut known = match existing {
            Some(bytes) => decode_value::<PeerRecord>(&bytes)?.addresses,
            None => Vec::new(),
        };
        known.retain(|address| !addresses.contains(address));
        let mut merged: Vec<String> = addresses.to_vec();
        merged.extend(known);
        merged.truncate(MAX_ADDRESSES);
        let record = PeerRecord { addresses: merged, updated_at: now };
        table.insert(device_key.as_bytes(), encoding::encode(&record).as_slice()).ctx("writing peers")?;
        Ok(())
    }
}
