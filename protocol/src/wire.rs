//! The envelope every delivery carries (`/clawnet/deliver/1`), and the reply that answers it.
//!
//! The reply is not signed: it travels back on the request's own stream, inside the Noise
//! session that authenticated the receiving node's device key when the connection was made
//! (end to end, through a relay too), and nothing keeps it afterwards as proof. A signature
//! would only repeat what the channel already proves, at the cost of a signing and a
//! verification on every delivery's path.

use clawnet_crypto::{Signable, Signed, WireFormat, encoding};
use serde::{Deserialize, Serialize};

use crate::contact::{ContactAccept, ContactRemoval, ContactRequest};
use crate::ids::MessageId;
use crate::limits;
use crate::session::{Close, Consent, Proposal, Rejection, Turn};
use crate::tags::SealedTags;

/// A proposal as it reaches the counterpart: the identity-signed proposal and its owner's consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalOffer {
    /// The proposal.
    pub proposal: Signed<Proposal>,
    /// The initiator's owner's consent over it.
    pub consent: Signed<Consent>,
}

/// One delivered message. Each variant is a signed object verified under its own domain;
/// dispatch is by owner, identity or session, never to a manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WireMessage {
    /// Asks to become contacts.
    ContactRequest(Signed<ContactRequest>),
    /// Accepts a contact request.
    ContactAccept(Signed<ContactAccept>),
    /// Ends a contact relationship.
    ContactRemoval(Signed<ContactRemoval>),
    /// The latest sealed tag announcement, sent directly to a contact that was offline.
    TagSync(SealedTags),
    /// Proposes a session, with the initiator owner's consent.
    Proposal(Box<ProposalOffer>),
    /// The counterpart owner's consent.
    Consent(Signed<Consent>),
    /// An owner's rejection.
    Rejection(Signed<Rejection>),
    /// A session turn.
    Turn(Signed<Turn>),
    /// A session close.
    Close(Signed<Close>),
}

impl WireFormat for WireMessage {
    const NAME: &'static str = "wire message";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = limits::MAX_WIRE_MESSAGE;
}

impl WireMessage {
    /// The encoding that goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes a delivery, refusing oversized, truncated, unknown-version and malformed input.
    pub fn decode(bytes: &[u8]) -> Result<WireMessage, clawnet_crypto::DecodeError> {
        encoding::decode(bytes)
    }

    /// Checks the signatures of the session messages among `messages` in batches, one per kind
    /// that has two or more (turns; consents, alone or offered with a proposal; proposals;
    /// closes): [`Signed::check_together`]. Under load one delivery carries the turns of many
    /// sessions (or, while they open, their proposals and consents), and a batch costs half as
    /// much per signature, a third when one key made them all. Each is still verified when it
    /// is applied, which then only decodes the ones that held here; if a batch fails, each of
    /// its messages is checked alone there, and the bad ones are refused as always.
    pub fn check_signatures_together<'a>(messages: impl IntoIterator<Item = &'a mut WireMessage>) {
        let mut turns: Vec<&mut Signed<Turn>> = Vec::new();
        let mut consents: Vec<&mut Signed<Consent>> = Vec::new();
        let mut proposals: Vec<&mut Signed<Proposal>> = Vec::new();
        let mut closes: Vec<&mut Signed<Close>> = Vec::new();
        for message in messages {
            match message {
                WireMessage::Turn(turn) => turns.push(turn),
                WireMessage::Consent(consent) => consents.push(consent),
                WireMessage::Proposal(offer) => {
                    let ProposalOffer { proposal, consent } = &mut **offer;
                    proposals.push(proposal);
                    consents.push(consent);
                }
                WireMessage::Close(close) => closes.push(close),
                _ => {}
            }
        }
        check_if_several(&mut turns);
        check_if_several(&mut consents);
        check_if_several(&mut proposals);
        check_if_several(&mut closes);
    }

    /// The id a delivery of this message is deduplicated by.
    pub fn id(&self) -> MessageId {
        MessageId::of(&self.encode())
    }

    /// The kind of an encoded message, read from its variant tag without decoding the rest
    /// ("message" if the bytes are not a wire message this build knows).
    pub fn kind_of(bytes: &[u8]) -> &'static str {
        const KINDS: [&str; 9] = [
            ContactRequest::NAME,
            ContactAccept::NAME,
            ContactRemoval::NAME,
            "tag sync",
            Proposal::NAME,
            Consent::NAME,
            Rejection::NAME,
            Turn::NAME,
            Close::NAME,
        ];
        match bytes {
            [WireMessage::VERSION, tag, ..] => KINDS.get(usize::from(*tag)).copied().unwrap_or("message"),
            _ => "message",
        }
    }

    /// The kind, for logs and audit entries.
    pub fn kind(&self) -> &'static str {
        match self {
            WireMessage::ContactRequest(_) => ContactRequest::NAME,
            WireMessage::ContactAccept(_) => ContactAccept::NAME,
            WireMessage::ContactRemoval(_) => ContactRemoval::NAME,
            WireMessage::TagSync(_) => "tag sync",
            WireMessage::Proposal(_) => Proposal::NAME,
            WireMessage::Consent(_) => Consent::NAME,
            WireMessage::Rejection(_) => Rejection::NAME,
            WireMessage::Turn(_) => Turn::NAME,
            WireMessage::Close(_) => Close::NAME,
        }
    }
}

/// The most messages one delivery request carries.
pub const MAX_BATCH_MESSAGES: usize = 64;

/// One request of `/clawnet/deliver/1`: messages for the same node, sent together so that one
/// stream, one reply and the receiver's group commit serve them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryBatch {
    /// Encoded wire messages; each is identified by the hash of its bytes.
    #[serde(with = "clawnet_crypto::encoding::byte_lists")]
    pub messages: Vec<Vec<u8>>,
}

impl WireFormat for DeliveryBatch {
    const NAME: &'static str = "delivery batch";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = limits::MAX_WIRE_MESSAGE + MAX_BATCH_MESSAGES * 8 + 16;
}

/// Why a delivery batch is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// It does not decode.
    #[error(transparent)]
    Decode(#[from] clawnet_crypto::DecodeError),
    /// Empty, or more messages than a batch may carry.
    #[error("a delivery batch carries 1 to {MAX_BATCH_MESSAGES} messages, not {0}")]
    Count(usize),
}

impl DeliveryBatch {
    /// The encoding that goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes a batch, refusing oversized, malformed, empty and overfull ones. (Each message
    /// is size-bounded by the batch and decoded on its own later.)
    pub fn decode(bytes: &[u8]) -> Result<DeliveryBatch, BatchError> {
        let batch: DeliveryBatch = encoding::decode(bytes)?;
        if batch.messages.is_empty() || batch.messages.len() > MAX_BATCH_MESSAGES {
            return Err(BatchError::Count(batch.messages.len()));
        }
        Ok(batch)
    }

    /// The ids of the messages, in order.
    pub fn ids(&self) -> Vec<MessageId> {
        self.messages.iter().map(|message| MessageId::of(message)).collect()
    }
}

/// What became of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageOutcome {
    /// Durably recorded (or recorded before: deliveries are idempotent): the sender may let go.
    Recorded,
    /// Not accepted.
    Refused {
        /// Why, for the sender's logs and audit.
        reason: String,
        /// Whether trying again later may succeed (the receiver was busy, or is missing an earlier
        /// message); `false` means never send this message again.
        retry: bool,
    },
}

impl MessageOutcome {
    /// A permanent refusal, with the reason cut to fit the reply.
    pub fn refused(reason: impl Into<String>) -> MessageOutcome {
        MessageOutcome::Refused { reason: cut(reason.into()), retry: false }
    }

    /// A refusal the sender should retry later.
    pub fn try_later(reason: impl Into<String>) -> MessageOutcome {
        MessageOutcome::Refused { reason: cut(reason.into()), retry: true }
    }
}

/// A receiving node's answer to a delivery batch: one outcome per message, in order. Sent only
/// once every message it calls recorded is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReply {
    /// One per message of the batch.
    pub outcomes: Vec<MessageOutcome>,
}

impl WireFormat for DeliveryReply {
    const NAME: &'static str = "delivery reply";
    /// Version 1 carried a signed acknowledgement of the recorded messages (see the module doc).
    const VERSION: u8 = 2;
    const MAX_LEN: usize = MAX_BATCH_MESSAGES * (limits::MAX_REASON + 8) + 256;
}

impl DeliveryReply {
    /// Every one of `count` messages refused for the same reason, to retry later.
    pub fn try_later(count: usize, reason: &str) -> DeliveryReply {
        DeliveryReply { outcomes: vec![MessageOutcome::try_later(reason); count] }
    }
}

fn cut(mut reason: String) -> String {
    if reason.len() > limits::MAX_REASON {
        let mut end = limits::MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Checks `signed` together if there are two or more (one is checked alone when applied).
fn check_if_several<T: Signable>(signed: &mut [&mut Signed<T>]) {
    if signed.len() >= 2 {
        Signed::check_together(signed);
    }
}
