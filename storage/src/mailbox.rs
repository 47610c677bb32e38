//! The outbox and inbox of reliable delivery. An outbound message is stored before it is sent
//! and removed only when acknowledged; an inbound one is recorded, by message id, before it is
//! acknowledged, so a retry is recognised as a duplicate.

use clawnet_crypto::{SigningPublicKey, Timestamp, WireFormat, encoding};
use clawnet_protocol::MessageId;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{DbResultExt, StoreError};
use crate::schema::{INBOX, OUTBOX};
use crate::view::{ReadView, Txn, decode_value};

/// A message waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRecord {
    /// The recipient node's device key.
    pub recipient: SigningPublicKey,
    /// The encoded wire message.
    pub message: Vec<u8>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When to try next.
    pub next_attempt_at: Timestamp,
    /// When it was queued.
    pub queued_at: Timestamp,
}

impl WireFormat for OutboundRecord {
    const NAME: &'static str = "outbound message";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = clawnet_protocol::limits::MAX_WIRE_MESSAGE + 256;
}

/// A message received and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRecord {
    /// The sending node's device key.
    pub sender: SigningPublicKey,
    /// The encoded wire message.
    pub message: Vec<u8>,
    /// When it was recorded.
    pub received_at: Timestamp,
}

impl WireFormat for InboundRecord {
    const NAME: &'static str = "inbound message";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = clawnet_protocol::limits::MAX_WIRE_MESSAGE + 256;
}

impl ReadView {
    /// Outbound messages due at `now`, oldest first.
    pub fn due_outbound(&self, now: Timestamp) -> Result<Vec<(MessageId, OutboundRecord)>, StoreError> {
        let mut due = Vec::new();
        for (id, record) in self.outbound()? {
            if record.next_attempt_at <= now {
                due.push((id, record));
            }
        }
        due.sort_by_key(|(_, record)| record.queued_at);
        Ok(due)
    }

    /// Every outbound message not yet acknowledged.
    pub fn outbound(&self) -> Result<Vec<(MessageId, OutboundRecord)>, StoreError> {
        let table = self.tx.open_table(OUTBOX).ctx("reading the outbox")?;
        let mut records = Vec::new();
        for row in table.iter().ctx("reading the outbox")? {
            let (key, value) = row.ctx("reading the outbox")?;
            records.push((MessageId(clawnet_crypto::Hash32(*key.value())), decode_value(value.value())?));
        }
        Ok(records)
    }

    /// The recorded inbound message `id`, if it was received before.
    pub fn inbound(&self, id: &MessageId) -> Result<Option<InboundRecord>, StoreError> {
        let table = self.tx.open_table(INBOX).ctx("reading the inbox")?;
        let value = table.get(id.0.as_bytes()).ctx("reading the inbox")?;
        value.map(|value| decode_value(value.value())).transpose()
    }
}

impl Txn<'_> {
    /// Queues an outbound message; queuing the same message again changes nothing. Returns
    /// whether it was newly queued.
    pub fn enqueue_outbound(&mut self, id: &MessageId, record: &OutboundRecord) -> Result<bool, StoreError> {
        let mut table = self.tx.open_table(OUTBOX).ctx("writing the outbox")?;
        if table.get(id.0.as_bytes()).ctx("writing the outbox")?.is_some() {
            return Ok(false);
        }
        table.insert(id.0.as_bytes(), encoding::encode(record).as_slice()).ctx("writing the outbox")?;
        Ok(true)
    }

    /// Records a failed attempt and when to try again.
    pub fn reschedule_outbound(
        &mut self,
        id: &MessageId,
        attempts: u32,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut table = self.tx.open_table(OUTBOX).ctx("writing the outbox")?;
        let current = table.get(id.0.as_bytes()).ctx("writing the outbox")?.map(|v| v.value().to_vec());
        if let Some(bytes) = current {
            let mut record: OutboundRecord = decode_value(&bytes)?;
            record.attempts = attempts;
            record.next_attempt_at = next_attempt_at;
            table.insert(id.0.as_bytes(), encoding::encode(&record).as_slice()).ctx("writing the outbox")?;
        }
        Ok(())
    }

    /// Removes an acknowledged message. Returns whether it was queued.
    pub fn acknowledge_outbound(&mut self, id: &MessageId) -> Result<bool, StoreError> {
        let mut table = self.tx.open_table(OUTBOX).ctx("writing the outbox")?;
        Ok(table.remove(id.0.as_bytes()).ctx("writing the outbox")?.is_some())
    }

    /// Records an inbound message unless it was recorded before. Returns whether it is new.
    pub fn record_inbound(&mut self, id: &MessageId, record: &InboundRecord) -> Result<bool, StoreError> {
        let mut table = self.tx.open_table(INBOX).ctx("writing the inbox")?;
        if table.get(id.0.as_bytes()).ctx("writing the inbox")?.is_some() {
            return Ok(false);
        }
        table.insert(id.0.as_bytes(), encoding::encode(record).as_slice()).ctx("writing the inbox")?;
        Ok(true)
    }
}
