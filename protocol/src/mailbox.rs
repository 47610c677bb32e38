//! The encrypted mailbox of bootstrap relays (`/clawnet/mailbox/1`): sealed deliveries held for
//! offline peers.
//!
//! A sender that cannot reach a recipient node deposits the delivery, sealed to the recipient
//! owner's X25519 key, at a bootstrap relay, addressed by the recipient node's ed25519 device key
//! (from which its libp2p peer id derives). When the recipient connects to the relay it fetches
//! what is addressed to the peer id its connection authenticated (never to anyone else), then
//! deletes the items once it has durably processed them: fetching does not remove anything, so a
//! crash between fetch and processing loses nothing.
//!
//! The relay is trusted for nothing: it sees padded ciphertext and the recipient's public device
//! key, never who sent what (beyond the depositing peer id) or what it says. Seal deliveries with
//! [`seal_context`], which binds an item to its recipient, so a relay that moves an item to
//! another box makes it unreadable rather than misdelivered. Authenticity is the payload's
//! business (a delivery is a signed wire message).
//!
//! # Wire
//!
//! Each request-response stream carries one request, then one response, each as one **frame**:
//! the payload length as a `u32` big-endian ([`FRAME_HEADER_LEN`] bytes), then the payload, which
//! is the canonical versioned encoding ([`clawnet_crypto::encoding`]) of a [`MailboxRequest`] or a
//! [`MailboxResponse`]. A reader checks the announced length against [`MAX_REQUEST_LEN`] or
//! [`MAX_RESPONSE_LEN`] (see [`payload_len`]) before it allocates anything. A relay may announce
//! a smaller item limit than [`MAX_ITEM_LEN`]: a deposit over it is answered
//! [`MailboxResponse::TooLarge`] without the relay buffering the item.

pub mod letter;

use std::fmt;

use clawnet_crypto::rng::random_bytes;
use clawnet_crypto::{DecodeError, SealedEnvelope, SigningPublicKey, WireFormat, encoding};
use serde::{Deserialize, Serialize};

use crate::limits::{self, FieldTooLong};

/// The libp2p protocol name of the mailbox.
pub const PROTOCOL_NAME: &str = "/clawnet/mailbox/1";

/// The largest sealed item any relay accepts (relays may set a smaller limit). It holds a
/// maximal wire message ([`limits::MAX_WIRE_MESSAGE`]) sealed to a few recipient keys.
pub const MAX_ITEM_LEN: usize = 640 * 1024;
/// The most items one [`MailboxResponse::Items`] carries.
pub const MAX_FETCH_ITEMS: u16 = 256;
/// The most item bytes (sum of the sealed items' lengths) one [`MailboxResponse::Items`] carries.
pub const MAX_FETCH_BYTES: usize = 4 * 1024 * 1024;
/// The most ids one [`MailboxRequest::Delete`] names.
pub const MAX_DELETE_IDS: usize = 256;
/// The longest reason of a [`MailboxResponse::BadRequest`], in bytes.
pub const MAX_REASON_LEN: usize = limits::MAX_REASON;
/// Bytes a deposit adds to its item when encoded: version, variant, recipient key, the item's
/// length prefix and the TTL, rounded up.
pub const DEPOSIT_OVERHEAD: usize = 64;
/// The largest encoded request, version byte included.
pub const MAX_REQUEST_LEN: usize = MAX_ITEM_LEN + DEPOSIT_OVERHEAD;
/// The largest encoded request that is not a deposit: a delete of [`MAX_DELETE_IDS`] ids.
pub const MAX_DELETE_REQUEST_LEN: usize = 8 + MAX_DELETE_IDS * 16;
/// The largest encoded response, version byte included: a full fetch plus, per item, its id and
/// length prefix (rounded up).
pub const MAX_RESPONSE_LEN: usize = MAX_FETCH_BYTES + MAX_FETCH_ITEMS as usize * 32 + 64;
/// Bytes of a frame's length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

// Every request fits the hard request limit.
const _: () = assert!(MAX_DELETE_REQUEST_LEN <= MAX_REQUEST_LEN);

/// Names one held item; chosen at random by the relay when the item is deposited.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemId(pub [u8; 16]);

impl ItemId {
    /// A fresh random id.
    pub fn random() -> ItemId {
        ItemId(random_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemId({})", &self.to_hex()[..8])
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a peer asks of a relay's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MailboxRequest {
    /// Holds `item` for `recipient` for up to `ttl_secs` (the relay may shorten it).
    Deposit {
        /// The recipient node's ed25519 device key; its libp2p peer id derives from it.
        recipient: SigningPublicKey,
        /// The delivery, sealed (with [`seal_context`]) to the recipient owner's X25519 key.
        item: SealedEnvelope,
        /// How long the item is useful, in seconds; more than 0.
        ttl_secs: u32,
    },
    /// Lists, oldest first, up to `max_items` items addressed to the requesting peer (the peer id
    /// its connection authenticated). Nothing is removed: see [`MailboxRequest::Delete`].
    Fetch {
        /// The most items wanted; the relay also stops at [`MAX_FETCH_ITEMS`] and
        /// [`MAX_FETCH_BYTES`]. 0 only asks how many items are waiting.
        max_items: u16,
    },
    /// Removes items addressed to the requesting peer, once it has durably processed them. Ids
    /// that are unknown, expired or addressed to someone else are ignored.
    Delete {
        /// At most [`MAX_DELETE_IDS`] items.
        ids: Vec<ItemId>,
    },
}

impl WireFormat for MailboxRequest {
    const NAME: &'static str = "mailbox request";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = MAX_REQUEST_LEN;
}

/// One held item, as fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxItem {
    /// Its id, for [`MailboxRequest::Delete`].
    pub id: ItemId,
    /// The sealed delivery, as deposited.
    pub envelope: SealedEnvelope,
}

/// Which limit refused a deposit. All of them clear with time (fetches, deletions, expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Quota {
    /// The recipient's box holds as many items as the relay allows.
    RecipientItems,
    /// The recipient's box holds as many bytes as the relay allows.
    RecipientBytes,
    /// The depositing peer already holds its share of the recipient's box.
    SenderShare,
    /// The depositing peer already holds as many bytes, over all boxes, as the relay allows.
    SenderBytes,
    /// The depositing peer deposits faster than the relay allows.
    SenderRate,
    /// The relay holds as many bytes as it allows over all boxes.
    RelayBytes,
    /// The relay is receiving as many requests as it can buffer; retry shortly.
    RelayBusy,
}

impl Quota {
    /// A short stable name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::RecipientItems => "recipient_items",
            Quota::RecipientBytes => "recipient_bytes",
            Quota::SenderShare => "sender_share",
            Quota::SenderBytes => "sender_bytes",
            Quota::SenderRate => "sender_rate",
            Quota::RelayBytes => "relay_bytes",
            Quota::RelayBusy => "relay_busy",
        }
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a relay answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MailboxResponse {
    /// The item is held under `id` for `ttl_secs` (the requested TTL, possibly shortened).
    Deposited {
        /// The new item's id.
        id: ItemId,
        /// How long the relay will hold it, in seconds.
        ttl_secs: u32,
    },
    /// Items addressed to the requester, oldest first.
    Items {
        /// At most [`MAX_FETCH_ITEMS`] items, [`MAX_FETCH_BYTES`] in total.
        items: Vec<MailboxItem>,
        /// How many more items are waiting beyond these.
        remaining: u32,
    },
    /// How many of the named items were removed.
    Deleted {
        /// Items removed.
        count: u32,
    },
    /// A quota refused the deposit; nothing was stored.
    QuotaExceeded(Quota),
    /// The item is larger than this relay accepts; nothing was stored.
    TooLarge {
        /// The largest request this relay accepts, in encoded bytes.
        max_len: u32,
    },
    /// The request is malformed or not allowed (for example a fetch by a peer whose id is not
    /// an ed25519 key). At most [`MAX_REASON_LEN`] bytes of explanation.
    BadRequest(String),
    /// This relay does not serve the mailbox. (A relay built without it does not offer the
    /// protocol at all, which a client sees as an unsupported protocol instead.)
    Disabled,
}

impl WireFormat for MailboxResponse {
    const NAME: &'static str = "mailbox response";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = MAX_RESPONSE_LEN;
}

/// Why a mailbox request or response could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxDecodeError {
    /// The bytes are not a canonical encoding of the type (oversized, truncated, unknown
    /// version, malformed, or a sealed item that is not structurally an envelope).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A field is longer than its limit.
    #[error(transparent)]
    FieldTooLong(#[from] FieldTooLong),
    /// A list has more entries than its limit.
    #[error("{field} has {count} entries, more than the limit of {max}")]
    TooManyEntries {
        /// The field.
        field: &'static str,
        /// Its number of entries.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a frame header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mailbox frame of {len} bytes, more than the limit of {max}")]
pub struct FrameTooLarge {
    /// The announced payload length.
    pub len: u64,
    /// The reader's limit.
    pub max: usize,
}

impl MailboxRequest {
    /// The encoding that goes in a frame.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// The whole frame: length prefix, then [`MailboxRequest::encode`].
    pub fn to_frame(&self) -> Vec<u8> {
        frame(self.encode())
    }

    /// Decodes a request, refusing oversized, truncated, unknown-version, malformed and
    /// non-canonical input and fields beyond their limits.
    pub fn decode(bytes: &[u8]) -> Result<MailboxRequest, MailboxDecodeError> {
        let request: MailboxRequest = encoding::decode(bytes)?;
        request.check_limits()?;
        Ok(request)
    }

    /// Checks every field against its limit (decoding does this; builders of requests may too).
    pub fn check_limits(&self) -> Result<(), MailboxDecodeError> {
        match self {
            MailboxRequest::Deposit { recipient, item, .. } => {
                // Keys are otherwise checked when they verify; this one only routes, so check it
                // here: a box for a key nobody can hold would only waste the relay's memory.
                SigningPublicKey::from_bytes(recipient.as_bytes()).map_err(|err| {
                    MailboxDecodeError::Decode(DecodeError::Malformed {
                        what: "mailbox recipient",
                        detail: err.to_string(),
                    })
                })?;
                check_item(item)
            }
            MailboxRequest::Fetch { .. } => Ok(()),
            MailboxRequest::Delete { ids } => check_count("ids to delete", ids.len(), MAX_DELETE_IDS),
        }
    }

    /// The kind, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            MailboxRequest::Deposit { .. } => "deposit",
            MailboxRequest::Fetch { .. } => "fetch",
            MailboxRequest::Delete { .. } => "delete",
        }
    }
}

impl MailboxResponse {
    /// A [`MailboxResponse::BadRequest`] with `reason` cut to [`MAX_REASON_LEN`] bytes (at a
    /// character boundary).
    pub fn bad_request(reason: impl Into<String>) -> MailboxResponse {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_LEN {
            let mut cut = MAX_REASON_LEN;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        MailboxResponse::BadRequest(reason)
    }

    /// The encoding that goes in a frame.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// The whole frame: length prefix, then [`MailboxResponse::encode`].
    pub fn to_frame(&self) -> Vec<u8> {
        frame(self.encode())
    }

    /// Decodes a response, refusing oversized, truncated, unknown-version, malformed and
    /// non-canonical input and fields beyond their limits.
    pub fn decode(bytes: &[u8]) -> Result<MailboxResponse, MailboxDecodeError> {
        let response: MailboxResponse = encoding::decode(bytes)?;
        response.check_limits()?;
        Ok(response)
    }

    /// Checks every field against its limit (decoding does this; relays building responses may
    /// too).
    pub fn check_limits(&self) -> Result<(), MailboxDecodeError> {
        match self {
            MailboxResponse::Items { items, .. } => {
                check_count("fetched items", items.len(), usize::from(MAX_FETCH_ITEMS))?;
                let mut total = 0usize;
                for item in items {
                    check_item(&item.envelope)?;
                    total = total.saturating_add(item.envelope.as_bytes().len());
                }
                check_len_of("fetched item bytes", total, MAX_FETCH_BYTES)?;
                Ok(())
            }
            MailboxResponse::BadRequest(reason) => Ok(limits::check_len("reason", reason, MAX_REASON_LEN)?),
            MailboxResponse::Deposited { .. }
            | MailboxResponse::Deleted { .. }
            | MailboxResponse::QuotaExceeded(_)
            | MailboxResponse::TooLarge { .. }
            | MailboxResponse::Disabled => Ok(()),
        }
    }
}

/// The context every mailbox item is sealed with: binds the item to its recipient's box, so an
/// item moved to another box does not open.
pub fn seal_context(recipient: &SigningPublicKey) -> Vec<u8> {
    const PREFIX: &[u8] = b"clawnet/v1/mailbox\0";
    let mut context = Vec::with_capacity(PREFIX.len() + 32);
    context.extend_from_slice(PREFIX);
    context.extend_from_slice(recipient.as_bytes());
    context
}

/// The largest encoded request a relay that accepts items of up to `max_item_len` bytes must
/// read: a deposit of such an item, or a full delete if larger. A larger frame can only be a
/// deposit of a larger item, which that relay answers [`MailboxResponse::TooLarge`] unread.
pub fn max_request_len(max_item_len: usize) -> usize {
    (max_item_len.min(MAX_ITEM_LEN) + DEPOSIT_OVERHEAD).max(MAX_DELETE_REQUEST_LEN)
}

/// The length prefix of a frame carrying `payload_len` bytes.
pub fn frame_header(payload_len: usize) -> Result<[u8; FRAME_HEADER_LEN], FrameTooLarge> {
    u32::try_from(payload_len)
        .map(u32::to_be_bytes)
        .map_err(|_| FrameTooLarge { len: payload_len as u64, max: u32::MAX as usize })
}

/// The payload length a frame header announces, refused if more than `max`: check it before
/// allocating or reading the payload.
pub fn payload_len(header: [u8; FRAME_HEADER_LEN], max: usize) -> Result<usize, FrameTooLarge> {
    let len = u32::from_be_bytes(header);
    match usize::try_from(len) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(FrameTooLarge { len: u64::from(len), max }),
    }
}

fn frame(payload: Vec<u8>) -> Vec<u8> {
    // Every encoding is bounded by its MAX_LEN, far below u32::MAX.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn check_item(item: &SealedEnvelope) -> Result<(), MailboxDecodeError> {
    Ok(check_len_of("mailbox item", item.as_bytes().len(), MAX_ITEM_LEN)?)
}

fn check_len_of(field: &'static str, len: usize, max: usize) -> Result<(), FieldTooLong> {
    if len > max { Err(FieldTooLong { field, len, max }) } else { Ok(()) }
}

fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), MailboxDecodeError> {
    if count > max { Err(MailboxDecodeError::TooManyEntries { field, count, max }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use clawnet_crypto::{AgreementSecret, SigningSecret};
    use proptest::prelude::*;

    use super::*;

    /// A structurally valid envelope of exactly `len` bytes (at least 531); relays never open
    /// items, so their content does not matter here.
    fn envelope_of_len(len: usize) -> SealedEnvelope {
        let mut bytes = vec![0u8; len];
        bytes[0] = 1;
        bytes[65..67].copy_from_slice(&4u16.to_le_bytes());
        SealedEnvelope::from_bytes(bytes).unwrap()
    }

    fn recipient() -> SigningPublicKey {
        SigningSecret::from_bytes(&[7; 32]).public_key()
    }

    fn deposit(item_len: usize) -> MailboxRequest {
        MailboxRequest::Deposit { recipient: recipient(), item: envelope_of_len(item_len), ttl_secs: u32::MAX }
    }

    fn full_fetch() -> MailboxResponse {
        let per_item = MAX_FETCH_BYTES / usize::from(MAX_FETCH_ITEMS);
        MailboxResponse::Items {
            items: (0..MAX_FETCH_ITEMS)
                .map(|idx| MailboxItem { id: ItemId([idx as u8; 16]), envelope: envelope_of_len(per_item) })
                .collect(),
            remaining: u32::MAX,
        }
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            deposit(600),
            MailboxRequest::Fetch { max_items: 9 },
            MailboxRequest::Delete { ids: vec![ItemId::random(), ItemId::random()] },
        ] {
            assert_eq!(MailboxRequest::decode(&request.encode()).unwrap(), request);
        }
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            MailboxResponse::Deposited { id: ItemId::random(), ttl_secs: 60 },
            MailboxResponse::Items {
                items: vec![MailboxItem { id: ItemId::random(), envelope: envelope_of_len(700) }],
                remaining: 3,
            },
            MailboxResponse::Deleted { count: 2 },
            MailboxResponse::QuotaExceeded(Quota::SenderRate),
            MailboxResponse::TooLarge { max_len: 1000 },
            MailboxResponse::bad_request("no"),
            MailboxResponse::Disabled,
        ] {
            assert_eq!(MailboxResponse::decode(&response.encode()).unwrap(), response);
        }
    }

    #[test]
    fn the_largest_deposit_fits_the_request_limit() {
        let bytes = deposit(MAX_ITEM_LEN).encode();
        assert!(bytes.len() <= MAX_REQUEST_LEN, "{} > {MAX_REQUEST_LEN}", bytes.len());
        assert!(bytes.len() <= max_request_len(MAX_ITEM_LEN));
        assert_eq!(MailboxRequest::decode(&bytes).unwrap(), deposit(MAX_ITEM_LEN));

        // A full delete fits whatever item limit a relay sets.
        let deletes = MailboxRequest::Delete { ids: vec![ItemId([0xff; 16]); MAX_DELETE_IDS] };
        assert!(deletes.encode().len() <= MAX_DELETE_REQUEST_LEN, "{}", deletes.encode().len());
        assert!(max_request_len(0) >= MAX_DELETE_REQUEST_LEN);
    }

    #[test]
    fn the_largest_fetch_fits_the_response_limit() {
        let response = full_fetch();
        let bytes = response.encode();
        assert!(bytes.len() <= MAX_RESPONSE_LEN, "{} > {MAX_RESPONSE_LEN}", bytes.len());
        assert_eq!(MailboxResponse::decode(&bytes).unwrap(), response);
    }

    #[test]
    fn a_maximal_wire_message_sealed_to_one_owner_fits_an_item() {
        let owner = AgreementSecret::from_bytes([3; 32]);
        let payload = vec![0u8; limits::MAX_WIRE_MESSAGE];
        let sealed = SealedEnvelope::seal(&payload, &[owner.public_key()], &seal_context(&recipient())).unwrap();
        assert!(sealed.as_bytes().len() <= MAX_ITEM_LEN, "{}", sealed.as_bytes().len());
    }

    #[test]
    fn seal_context_binds_the_recipient() {
        let owner = AgreementSecret::from_bytes([4; 32]);
        let other = SigningSecret::from_bytes(&[8; 32]).public_key();
        let sealed = SealedEnvelope::seal(b"delivery", &[owner.public_key()], &seal_context(&recipient())).unwrap();
        assert_eq!(sealed.open(&owner, &seal_context(&recipient())).unwrap().as_slice(), b"delivery");
        assert!(sealed.open(&owner, &seal_context(&other)).is_err());
    }

    #[test]
    fn oversized_fields_are_refused_after_decoding() {
        let too_many = MailboxRequest::Delete { ids: vec![ItemId([1; 16]); MAX_DELETE_IDS + 1] };
        assert_eq!(
            MailboxRequest::decode(&too_many.encode()),
            Err(MailboxDecodeError::TooManyEntries {
                field: "ids to delete",
                count: MAX_DELETE_IDS + 1,
                max: MAX_DELETE_IDS
            })
        );

        let long_reason = MailboxResponse::BadRequest("x".repeat(MAX_REASON_LEN + 1));
        assert!(matches!(
            MailboxResponse::decode(&long_reason.encode()),
            Err(MailboxDecodeError::FieldTooLong(FieldTooLong { field: "reason", .. }))
        ));

        let too_many_items = MailboxResponse::Items {
            items: (0..=MAX_FETCH_ITEMS)
                .map(|idx| MailboxItem { id: ItemId([idx as u8; 16]), envelope: envelope_of_len(600) })
                .collect(),
            remaining: 0,
        };
        assert!(matches!(
            MailboxResponse::decode(&too_many_items.encode()),
            Err(MailboxDecodeError::TooManyEntries { field: "fetched items", .. })
        ));

        let too_many_bytes = MailboxResponse::Items {
            // One byte over MAX_FETCH_BYTES in total, still within MAX_RESPONSE_LEN.
            items: (0..8u8)
                .map(|idx| MailboxItem {
                    id: ItemId([idx; 16]),
                    envelope: envelope_of_len(MAX_FETCH_BYTES / 8 + usize::from(idx == 0)),
                })
                .collect(),
            remaining: 0,
        };
        assert!(matches!(
            MailboxResponse::decode(&too_many_bytes.encode()),
            Err(MailboxDecodeError::FieldTooLong(FieldTooLong { field: "fetched item bytes", .. }))
        ));
    }

    #[test]
    fn an_item_over_the_protocol_limit_is_refused() {
        // Over MAX_ITEM_LEN but within the request limit's slack.
        let bytes = deposit(MAX_ITEM_LEN + 1).encode();
        assert!(bytes.len() <= MAX_REQUEST_LEN);
        assert!(matches!(
            MailboxRequest::decode(&bytes),
            Err(MailboxDecodeError::FieldTooLong(FieldTooLong { field: "mailbox item", .. }))
        ));
    }

    #[test]
    fn oversized_truncated_and_unknown_version_input_is_refused() {
        assert!(matches!(
            MailboxRequest::decode(&vec![1u8; MAX_REQUEST_LEN + 1]),
            Err(MailboxDecodeError::Decode(DecodeError::TooLarge { .. }))
        ));
        let bytes = deposit(600).encode();
        for cut in 0..bytes.len() {
            assert!(
                matches!(MailboxRequest::decode(&bytes[..cut]), Err(MailboxDecodeError::Decode(_))),
                "cut at {cut}"
            );
        }
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 2;
        assert!(matches!(
            MailboxRequest::decode(&wrong_version),
            Err(MailboxDecodeError::Decode(DecodeError::UnknownVersion { found: 2, .. }))
        ));
        // A recipient that is not a valid ed25519 key (all-zero is of small order).
        let mut weak_key = bytes;
        weak_key[2..34].fill(0);
        assert!(matches!(
            MailboxRequest::decode(&weak_key),
            Err(MailboxDecodeError::Decode(DecodeError::Malformed { .. }))
        ));
    }

    #[test]
    fn bad_request_reasons_are_cut_at_a_char_boundary() {
        let MailboxResponse::BadRequest(reason) = MailboxResponse::bad_request("é".repeat(MAX_REASON_LEN)) else {
            unreachable!()
        };
        assert!(reason.len() <= MAX_REASON_LEN && reason.len() >= MAX_REASON_LEN - 1);
        assert!(reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn frame_headers_are_checked_before_reading() {
        let frame = MailboxRequest::Fetch { max_items: 1 }.to_frame();
        let header: [u8; FRAME_HEADER_LEN] = frame[..FRAME_HEADER_LEN].try_into().unwrap();
        let len = payload_len(header, MAX_REQUEST_LEN).unwrap();
        assert_eq!(len, frame.len() - FRAME_HEADER_LEN);
        assert_eq!(frame_header(len).unwrap(), header);
        assert_eq!(MailboxRequest::decode(&frame[FRAME_HEADER_LEN..]).unwrap(), MailboxRequest::Fetch { max_items: 1 });

        assert_eq!(
            payload_len([0xff; 4], MAX_REQUEST_LEN),
            Err(FrameTooLarge { len: 0xffff_ffff, max: MAX_REQUEST_LEN })
        );
        let just_over = frame_header(MAX_REQUEST_LEN + 1).unwrap();
        assert!(payload_len(just_over, MAX_REQUEST_LEN).is_err());
        assert!(payload_len(frame_header(MAX_REQUEST_LEN).unwrap(), MAX_REQUEST_LEN).is_ok());
    }

    proptest! {
        #[test]
        fn request_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = MailboxRequest::decode(&bytes);
        }

        #[test]
        fn response_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = MailboxResponse::decode(&bytes);
        }

        #[test]
        fn mutated_requests_decode_or_fail_with_a_typed_error(
            idx in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = deposit(600).encode();
            let at = idx.index(bytes.len());
            bytes[at] = byte;
            bytes.truncate(cut.index(bytes.len() + 1));
            if let Ok(request) = MailboxRequest::decode(&bytes) {
                // Whatever decodes is canonical: it re-encodes to the same bytes.
                prop_assert_eq!(request.encode(), bytes);
            }
        }

        #[test]
        fn delete_requests_round_trip(ids in proptest::collection::vec(any::<[u8; 16]>(), 0..=MAX_DELETE_IDS)) {
            let request = MailboxRequest::Delete { ids: ids.into_iter().map(ItemId).collect() };
            prop_assert_eq!(MailboxRequest::decode(&request.encode()).unwrap(), request);
        }
    }
}
