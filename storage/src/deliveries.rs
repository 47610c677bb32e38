//! The outbox and inbox of reliable delivery. An outbound message is stored before it is sent
//! and removed only when acknowledged; an inbound one is recorded, by message id, before it is
//! acknowledged, so a retry is recognised as a duplicate.
//!
//! An outbox record starts with its retry schedule and ends with the message, so the sender's
//! worker scans what is due by decoding only the front of each record, in one table (every
//! table a commit touches costs it a page write). The worker scans the outbox when it starts;
//! after that, every committed transaction publishes what it queued to the [`QueuedFeed`], so
//! finding what to send costs what was queued, not what is waiting. Messages queued since the
//! last checkpoint are kept out of the table ([`recent`]), so the outbox is read through
//! [`NodeDb`], not a [`ReadView`].

pub(crate) mod recent;

use std::sync::Mutex;

use clawnet_crypto::{Hash32, SigningPublicKey, Timestamp, WireFormat, encoding};
use clawnet_protocol::MessageId;
use redb::{ReadableTable, TableHandle};
use serde::{Deserialize, Serialize};

use crate::db::NodeDb;
use crate::error::{DbResultExt, StoreError};
use crate::journal::{record_put, record_remove};
use crate::schema::{INBOX, OUTBOX};
use crate::view::{ReadView, Txn, decode_value};
use crate::writer::lock;

/// A message waiting for its acknowledgement, with its retry schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRecord {
    /// When and how often it was tried (first, so it can be read alone).
    pub schedule: OutboundSchedule,
    /// The encoded wire message.
    #[serde(with = "clawnet_crypto::encoding::bytes")]
    pub message: Vec<u8>,
}

/// When and how often a queued message was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundSchedule {
    /// The recipient node's device key.
    pub recipient: SigningPublicKey,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When to try next.
    pub next_attempt_at: Timestamp,
    /// When it was queued (the sending order).
    pub queued_at: Timestamp,
}

impl OutboundRecord {
    /// A message for `recipient`, queued at `now` and due right away.
    pub fn new(recipient: SigningPublicKey, message: Vec<u8>, now: Timestamp) -> OutboundRecord {
        OutboundRecord {
            schedule: OutboundSchedule { recipient, attempts: 0, next_attempt_at: now, queued_at: now },
            message,
        }
    }
}

/// Decodes only the schedule at the front of a stored outbox record.
fn decode_schedule(bytes: &[u8]) -> Result<OutboundSchedule, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { what: OutboundRecord::NAME, detail };
    match bytes.split_first() {
        Some((&OutboundRecord::VERSION, body)) => postcard::take_from_bytes::<OutboundSchedule>(body)
            .map(|(schedule, _message)| schedule)
            .map_err(|err| corrupt(err.to_string())),
        _ => Err(corrupt("unknown version".into())),
    }
}

impl WireFormat for OutboundRecord {
    const NAME: &'static str = "outbound message";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = clawnet_protocol::limits::MAX_WIRE_MESSAGE + 256;
}

/// A message received and recorded: who sent it and when, which is what recognising a retry
/// needs. What the message did is in the records it changed (a turn in its session's
/// transcript, a contact's new state), committed with this one, and in the audit chain.
/// (Version 1 records also held the message itself: every message was stored twice, and kept
/// forever. They are still read.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRecord {
    /// The sending node's device key.
    pub sender: SigningPublicKey,
    /// When it was recorded.
    pub received_at: Timestamp,
}

impl WireFormat for InboundRecord {
    const NAME: &'static str = "inbound message";
    const VERSION: u8 = 2;
    const MAX_LEN: usize = 128;
}

/// An inbox record of version 1, with the message.
#[derive(Deserialize)]
struct InboundRecordV1 {
    sender: SigningPublicKey,
    #[allow(dead_code, reason = "read to reach the fields after it")]
    #[serde(with = "clawnet_crypto::encoding::bytes")]
    message: Vec<u8>,
    received_at: Timestamp,
}

/// Decodes a stored inbox record of either version.
fn decode_inbound(bytes: &[u8]) -> Result<InboundRecord, StoreError> {
    match bytes.split_first() {
        Some((1, body)) => postcard::from_bytes::<InboundRecordV1>(body)
            .map(|old| InboundRecord { sender: old.sender, received_at: old.received_at })
            .map_err(|err| StoreError::Corrupt { what: InboundRecord::NAME, detail: err.to_string() }),
        _ => decode_value(bytes),
    }
}

/// A message a committed transaction queued in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedOutbound {
    /// Its outbox key.
    pub id: MessageId,
    /// Its retry schedule, as queued.
    pub schedule: OutboundSchedule,
    /// The encoded wire message.
    pub message: Vec<u8>,
}

/// What committed transactions queued since the subscriber last looked, in commit order.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// These messages, oldest first.
    Messages(Vec<QueuedOutbound>),
    /// More than [`QueuedFeed::CAPACITY`] piled up and were dropped: scan the outbox instead.
    Overflowed,
}

/// The messages committed transactions queued, kept for one subscriber (the outbox worker)
/// once it subscribed; nothing is kept before that, or for more than a bounded backlog.
#[derive(Debug, Default)]
pub struct QueuedFeed {
    state: Mutex<FeedState>,
}

#[derive(Debug, Default)]
struct FeedState {
    subscribed: bool,
    overflowed: bool,
    queued: Vec<QueuedOutbound>,
}

impl QueuedFeed {
    /// Messages kept for a subscriber that does not take them, at most.
    pub const CAPACITY: usize = 65_536;

    /// Starts keeping what commits queue, from now on; forgets anything kept before. Subscribe
    /// *before* scanning the outbox, so nothing committed between the two is missed (what both
    /// report is the same message twice).
    pub fn subscribe(&self) {
        let mut state = lock(&self.state);
        *state = FeedState { subscribed: true, ..FeedState::default() };
    }

    /// What was queued since the last call (or the subscription).
    pub fn take(&self) -> Queued {
        let mut state = lock(&self.state);
        if std::mem::take(&mut state.overflowed) {
            return Queued::Overflowed;
        }
        Queued::Messages(std::mem::take(&mut state.queued))
    }

    /// Called once a transaction that queued `queued` committed.
    pub(crate) fn publish(&self, queued: Vec<QueuedOutbound>) {
        if queued.is_empty() {
            return;
        }
        let mut state = lock(&self.state);
        if !state.subscribed || state.overflowed {
            return;
        }
        if state.queued.len() + queued.len() > Self::CAPACITY {
            state.overflowed = true;
            state.queued = Vec::new();
        } else {
            state.queued.extend(queued);
        }
    }
}

impl NodeDb {
    /// The schedule of every queued message, oldest first (message bodies are not read).
    pub fn outbound_schedule(&self) -> Result<Vec<(MessageId, OutboundSchedule)>, StoreError> {
        let mut schedule = Vec::new();
        self.each_outbound(|key, record| {
            schedule.push((MessageId(Hash32(*key)), decode_schedule(record)?));
            Ok(())
        })?;
        schedule.sort_by_key(|(_, entry)| entry.queued_at);
        Ok(schedule)
    }

    /// Queued messages due at `now`, oldest first.
    pub fn due_outbound(&self, now: Timestamp) -> Result<Vec<(MessageId, OutboundSchedule)>, StoreError> {
        let mut due = self.outbound_schedule()?;
        due.retain(|(_, entry)| entry.next_attempt_at <= now);
        Ok(due)
    }

    /// The queued message `id`.
    pub fn outbound_message(&self, id: &MessageId) -> Result<Option<OutboundRecord>, StoreError> {
        let recent = self.recent_outbox().lock();
        if let Some(record) = recent.get(id.0.as_bytes()) {
            return decode_value(record).map(Some);
        }
        let view = self.read()?;
        let table = view.tx.open_table(OUTBOX).ctx("reading the outbox")?;
        let value = table.get(id.0.as_bytes()).ctx("reading the outbox")?;
        value.map(|value| decode_value(value.value())).transpose()
    }

    /// Every queued message.
    pub fn outbound(&self) -> Result<Vec<(MessageId, OutboundRecord)>, StoreError> {
        let mut records = Vec::new();
        self.each_outbound(|key, record| {
            records.push((MessageId(Hash32(*key)), decode_value(record)?));
            Ok(())
        })?;
        Ok(records)
    }

    /// Calls `each` with every queued message's key and stored record: those queued since the
    /// last checkpoint, then the table's, read under the lock of the first.
    fn each_outbound(
        &self,
        mut each: impl FnMut(&[u8; 32], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let recent = self.recent_outbox().lock();
        for (key, record) in recent.iter() {
            each(key, record)?;
        }
        let view = self.read()?;
        let table = view.tx.open_table(OUTBOX).ctx("reading the outbox")?;
        for row in table.iter().ctx("reading the outbox")? {
            let (key, value) = row.ctx("reading the outbox")?;
            each(key.value(), value.value())?;
        }
        Ok(())
    }
}

impl ReadView {
    /// The recorded inbound message `id`, if it was received before.
    pub fn inbound(&self, id: &MessageId) -> Result<Option<InboundRecord>, StoreError> {
        let table = self.tx.open_table(INBOX).ctx("reading the inbox")?;
        let value = table.get(id.0.as_bytes()).ctx("reading the inbox")?;
        value.map(|value| decode_inbound(value.value())).transpose()
    }

    /// Whether the inbound message `id` was received before (what recognising a retry needs).
    pub fn has_inbound(&self, id: &MessageId) -> Result<bool, StoreError> {
        let table = self.tx.open_table(INBOX).ctx("reading the inbox")?;
        Ok(table.get(id.0.as_bytes()).ctx("reading the inbox")?.is_some())
    }
}

impl Txn<'_> {
    /// Queues an outbound message; queuing the same message again changes nothing. Returns
    /// whether it was newly queued.
    pub fn enqueue_outbound(&mut self, id: &MessageId, record: &OutboundRecord) -> Result<bool, StoreError> {
        let key = id.0.as_bytes();
        if !matches!(self.outbound_entry(key)?, Stored::Nowhere) {
            return Ok(false);
        }
        let bytes = encoding::encode(record);
        record_put(&mut self.writes.borrow_mut(), OUTBOX.name(), key, &bytes);
        self.recent_changes.borrow_mut().insert(*key, Some(bytes));
        self.queued.push(QueuedOutbound { id: *id, schedule: record.schedule, message: record.message.clone() });
        Ok(true)
    }

    /// Records a failed attempt and when to try again.
    pub fn reschedule_outbound(
        &mut self,
        id: &MessageId,
        attempts: u32,
        next_attempt_at: Timestamp,
    ) -> Result<(), StoreError> {
        let key = id.0.as_bytes();
        let (recent, current) = match self.outbound_entry(key)? {
            Stored::Recent(bytes) => (true, bytes),
            Stored::Table(bytes) => (false, bytes),
            Stored::Nowhere => return Ok(()),
        };
        let mut record: OutboundRecord = decode_value(&current)?;
        record.schedule.attempts = attempts;
        record.schedule.next_attempt_at = next_attempt_at;
        let bytes = encoding::encode(&record);
        if recent {
            record_put(&mut self.writes.borrow_mut(), OUTBOX.name(), key, &bytes);
            self.recent_changes.borrow_mut().insert(*key, Some(bytes));
        } else {
            self.write_table(OUTBOX)
                .ctx("writing the outbox")?
                .insert(key, bytes.as_slice())
                .ctx("writing the outbox")?;
        }
        Ok(())
    }

    /// Removes an acknowledged message. Returns whether it was queued.
    pub fn acknowledge_outbound(&mut self, id: &MessageId) -> Result<bool, StoreError> {
        let key = id.0.as_bytes();
        match self.outbound_entry(key)? {
            Stored::Recent(_) => {
                record_remove(&mut self.writes.borrow_mut(), OUTBOX.name(), key);
                self.recent_changes.borrow_mut().insert(*key, None);
                Ok(true)
            }
            Stored::Table(_) => {
                self.write_table(OUTBOX).ctx("writing the outbox")?.remove(key).ctx("writing the outbox")
            }
            Stored::Nowhere => Ok(false),
        }
    }

    /// Where the queued message under `key` is, as this transaction sees it.
    fn outbound_entry(&self, key: &[u8; 32]) -> Result<Stored, StoreError> {
        if let Some(change) = self.recent_changes.borrow().get(key) {
            return Ok(change.clone().map_or(Stored::Nowhere, Stored::Recent));
        }
        if let Some(bytes) = self.recent.get(key) {
            return Ok(Stored::Recent(bytes));
        }
        let table = self.tx.open_table(OUTBOX).ctx("reading the outbox")?;
        let found = table.get(key).ctx("reading the outbox")?.map(|value| value.value().to_vec());
        Ok(found.map_or(Stored::Nowhere, Stored::Table))
    }

    /// Records an inbound message unless it was recorded before. Returns whether it is new.
    pub fn record_inbound(&mut self, id: &MessageId, record: &InboundRecord) -> Result<bool, StoreError> {
        let mut table = self.write_table(INBOX).ctx("writing the inbox")?;
        if table.get(id.0.as_bytes()).ctx("writing the inbox")?.is_some() {
            return Ok(false);
        }
        table.insert(id.0.as_bytes(), encoding::encode(record).as_slice()).ctx("writing the inbox")?;
        Ok(true)
    }
}

/// Where a queued message's record is.
enum Stored {
    /// Queued since the last checkpoint (or by this transaction).
    Recent(Vec<u8>),
    /// In the outbox table.
    Table(Vec<u8>),
    /// Not queued (never, or acknowledged).
    Nowhere,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Change;
    use crate::testing::open_db;
    use clawnet_protocol::testkit::TestOwner;

    fn rows_in_table(db: &NodeDb) -> u64 {
        use redb::ReadableTableMetadata;
        db.read().unwrap().tx.open_table(OUTBOX).unwrap().len().unwrap()
    }

    #[test]
    fn a_message_acknowledged_between_checkpoints_never_reaches_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let owner = TestOwner::new(1, &[]);
        let db = open_db(&path, &owner);
        let record = |text: &[u8]| OutboundRecord::new(owner.device.public_key(), text.to_vec(), Timestamp(5));
        let (first, second) = (MessageId::of(b"first"), MessageId::of(b"second"));
        let queue = |id: MessageId, record: OutboundRecord| Change::new(move |txn| txn.enqueue_outbound(&id, &record));
        let acknowledge = |id: MessageId| Change::new(move |txn| txn.acknowledge_outbound(&id));

        assert!(db.commit(queue(first, record(b"first"))).unwrap().0);
        assert_eq!(db.outbound_message(&first).unwrap().unwrap().message, b"first");
        assert!(!db.commit(queue(first, record(b"first"))).unwrap().0, "queued once");
        assert!(db.commit(acknowledge(first)).unwrap().0);
        assert_eq!(db.outbound_message(&first).unwrap(), None);
        assert_eq!(rows_in_table(&db), 0, "queued and acknowledged in memory and the journal only");

        // Still queued when the database closes: the last checkpoint puts it in the table.
        assert!(db.commit(queue(second, record(b"second"))).unwrap().0);
        assert_eq!(rows_in_table(&db), 0);
        drop(db);
        let db = open_db(&path, &owner);
        assert_eq!(rows_in_table(&db), 1);
        assert_eq!(db.outbound().unwrap().len(), 1);
        assert!(!db.commit(queue(second, record(b"second"))).unwrap().0, "queued once, in the table too");
        db.commit(Change::new(move |txn| txn.reschedule_outbound(&second, 2, Timestamp(9)))).unwrap();
        assert_eq!(db.outbound_schedule().unwrap()[0].1.attempts, 2);
        assert!(db.commit(acknowledge(second)).unwrap().0);
        assert!(!db.commit(acknowledge(second)).unwrap().0, "acknowledged once");
        assert_eq!((rows_in_table(&db), db.outbound().unwrap().len()), (0, 0));
        drop(db);
        assert_eq!(open_db(&path, &owner).outbound().unwrap().len(), 0, "the removal is durable");
    }

    #[test]
    fn the_schedule_decodes_from_the_front_of_a_record() {
        let key = clawnet_crypto::SigningSecret::from_bytes(&[1; 32]).public_key();
        let mut record = OutboundRecord::new(key, vec![9; 300], Timestamp(5));
        record.schedule.attempts = 3;
        assert_eq!(decode_schedule(&encoding::encode(&record)).unwrap(), record.schedule);
        assert!(decode_schedule(&[2, 0, 0]).is_err());
    }

    #[test]
    fn inbox_records_of_both_versions_decode() {
        let sender = clawnet_crypto::SigningSecret::from_bytes(&[1; 32]).public_key();
        let record = InboundRecord { sender, received_at: Timestamp(7) };
        assert_eq!(decode_inbound(&encoding::encode(&record)).unwrap(), record);
        // Version 1, as schemas up to 5 wrote it: the message between the sender and the time.
        let mut old = vec![1];
        old.extend(postcard::to_allocvec(&(sender, b"a whole message".to_vec(), Timestamp(7))).unwrap());
        assert_eq!(decode_inbound(&old).unwrap(), record);
        assert!(decode_inbound(&[3, 0]).is_err(), "an unknown version is refused");
    }
}
