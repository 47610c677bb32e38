//! Reliable delivery over `/clawnet/deliver/1`: every outbound message is stored in the outbox
//! first (in the same commit as the change that produced it), sent and retried with backoff
//! until the receiver acknowledges it; the receiver records it in its inbox, with the changes it
//! causes, before acknowledging, and answers a repeated message with the same acknowledgement
//! without applying it again. A restart or a partition on either side loses and duplicates
//! nothing.

mod inbox;
mod mailbox;
mod outbox;

use clawnet_crypto::{Hash32, HashDomain, SigningPublicKey, Timestamp};
use clawnet_protocol::MessageId;
use clawnet_protocol::wire::WireMessage;
use clawnet_storage::deliveries::OutboundRecord;
use clawnet_storage::{StoreError, Txn};

pub use inbox::{Accepted, Handler, Hold, Inbox, Refusal};
pub use mailbox::{COLLECT_EVERY, Collected, MailboxStats, Mailboxes};
pub use outbox::{Outbox, OutboxStats};

/// Queues `message` for the node with `recipient` device key, inside a change's transaction.
/// Returns its id; queuing the same message twice for one recipient queues it once. The same
/// message for several recipients (a tag announcement sealed to a group) is queued once each.
pub fn enqueue(
    txn: &mut Txn<'_>,
    recipient: SigningPublicKey,
    message: &WireMessage,
    now: Timestamp,
) -> Result<MessageId, StoreError> {
    let bytes = message.encode();
    let id = MessageId::of(&bytes);
    let record = OutboundRecord::new(recipient, bytes, now);
    txn.enqueue_outbound(&outbox_key(&recipient, &id), &record)?;
    Ok(id)
}

/// Where a message for `recipient` sits in the outbox: its id bound to the recipient.
fn outbox_key(recipient: &SigningPublicKey, id: &MessageId) -> MessageId {
    MessageId(Hash32::of_parts(HashDomain::MessageId, &[recipient.as_bytes(), id.0.as_bytes()]))
}
