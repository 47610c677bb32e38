//! The encrypted mailbox: sealed deliveries held in memory for recipients that are offline.
//!
//! Items are addressed by the recipient node's ed25519 device key. A fetch or delete acts only on
//! the box of the peer id that the requesting connection authenticated (Noise): a peer whose id
//! is not an ed25519 key has no box and is refused. The relay sees only sealed envelopes and the
//! recipient's public key; it never opens anything, and it forgets everything on restart.
//!
//! Fetching does not remove items: the recipient deletes them once it has durably processed
//! them, so a crash in between loses nothing (it fetches them again).
//!
//! Quotas are checked in a fixed order (see [`Mailbox::handle`]), and a refused deposit stores
//! nothing. The mailbox does no I/O and reads no clock: callers pass `now`.

pub(crate) mod codec;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use clawnet_crypto::{SealedEnvelope, SigningPublicKey};
use clawnet_protocol::mailbox::{self, ItemId, MailboxItem, MailboxRequest, MailboxResponse, Quota};
use libp2p::{PeerId, identity::PublicKey};

use crate::{config::MailboxLimits, metrics::MailboxMetrics};

/// Why a fetch or delete by a peer whose id does not name an ed25519 key is refused.
const NOT_ED25519: &str = "mailbox boxes belong to ed25519 peer ids; this peer id is not one";

/// The mailbox of one relay.
#[derive(Debug)]
pub(crate) struct Mailbox {
    limits: MailboxLimits,
    boxes: HashMap<SigningPublicKey, Inbox>,
    senders: HashMap<PeerId, Sender>,
    total_items: usize,
    total_bytes: usize,
    metrics: MailboxMetrics,
}

/// The items held for one recipient, oldest first.
#[derive(Debug, Default)]
struct Inbox {
    items: VecDeque<HeldItem>,
    bytes: usize,
}

#[derive(Debug)]
struct HeldItem {
    id: ItemId,
    envelope: SealedEnvelope,
    sender: PeerId,
    expires_at: Instant,
}

impl HeldItem {
    fn len(&self) -> usize {
        self.envelope.as_bytes().len()
    }
}

/// What one depositing peer holds, and its deposit rate.
#[derive(Debug)]
struct Sender {
    held_items: usize,
    held_bytes: usize,
    rate: TokenBucket,
}

/// A bucket of `capacity` deposits refilled at `capacity` per minute.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn full(capacity: u32, now: Instant) -> Self {
        Self { tokens: f64::from(capacity), updated: now }
    }

    fn refill(&mut self, capacity: u32, now: Instant) {
        let per_sec = f64::from(capacity) / 60.0;
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(capacity));
        self.updated = self.updated.max(now);
    }

    fn try_take(&mut self, capacity: u32, now: Instant) -> bool {
        self.refill(capacity, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&mut self, capacity: u32, now: Instant) -> bool {
        self.refill(capacity, now);
        self.tokens >= f64::from(capacity)
    }
}

impl Mailbox {
    /// An empty mailbox with `limits`, reporting to `metrics`.
    pub(crate) fn new(limits: MailboxLimits, metrics: MailboxMetrics) -> Self {
        metrics.set_held(0, 0, 0);
        Self { limits, boxes: HashMap::new(), senders: HashMap::new(), total_items: 0, total_bytes: 0, metrics }
    }

    /// The limits this mailbox applies.
    pub(crate) fn limits(&self) -> &MailboxLimits {
        &self.limits
    }

    /// The metrics this mailbox reports to.
    pub(crate) fn metrics(&self) -> &MailboxMetrics {
        &self.metrics
    }

    /// Answers `peer`'s request (`peer` being the id its connection authenticated).
    ///
    /// A deposit is refused, in this order, when: its TTL is 0 (`BadRequest`); its item is over
    /// the item limit (`TooLarge`); the sender is over its rate (`SenderRate`, and the attempt
    /// counts); the recipient's box is full in items or bytes; the sender holds its share of that
    /// box in items or bytes (`SenderShare`); the sender holds its byte cap over all boxes; the
    /// relay holds its byte cap. Expired items are dropped before counting.
    pub(crate) fn handle(&mut self, peer: PeerId, request: MailboxRequest, now: Instant) -> MailboxResponse {
        match request {
            MailboxRequest::Deposit { recipient, item, ttl_secs } => {
                let response = self.deposit(peer, recipient, item, ttl_secs, now);
                self.metrics.deposit(outcome(&response));
                response
            }
            MailboxRequest::Fetch { max_items } => match recipient_key(&peer) {
                Some(recipient) => {
                    self.metrics.fetches.inc();
                    self.fetch(&recipient, max_items, now)
                }
                None => MailboxResponse::bad_request(NOT_ED25519),
            },
            MailboxRequest::Delete { ids } => match recipient_key(&peer) {
                Some(recipient) => self.delete(&recipient, &ids),
                None => MailboxResponse::bad_request(NOT_ED25519),
            },
            other => MailboxResponse::bad_request(format!("unsupported mailbox request {}", other.kind())),
        }
    }

    /// Drops every expired item, and forgets senders that hold nothing and whose rate has
    /// recovered.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let recipients: Vec<SigningPublicKey> = self.boxes.keys().copied().collect();
        for recipient in recipients {
            self.drop_expired(&recipient, now);
        }
        let capacity = self.limits.deposits_per_minute;
        self.senders.retain(|_, sender| sender.held_items > 0 || !sender.rate.is_full(capacity, now));
        self.update_gauges();
    }

    fn deposit(
        &mut self,
        sender: PeerId,
        recipient: SigningPublicKey,
        envelope: SealedEnvelope,
        ttl_secs: u32,
        now: Instant,
    ) -> MailboxResponse {
        if ttl_secs == 0 {
            return MailboxResponse::bad_request("a deposit needs a TTL of at least one second");
        }
        let len = envelope.as_bytes().len();
        if len > self.limits.max_item_bytes {
            return self.too_large();
        }
        self.drop_expired(&recipient, now);

        let limits = &self.limits;
        let sender_state = self.senders.entry(sender).or_insert_with(|| Sender {
            held_items: 0,
            held_bytes: 0,
            rate: TokenBucket::full(limits.deposits_per_minute, now),
        });
        if !sender_state.rate.try_take(limits.deposits_per_minute, now) {
            return MailboxResponse::QuotaExceeded(Quota::SenderRate);
        }
        let inbox = self.boxes.get(&recipient);
        let (box_items, box_bytes) = inbox.map_or((0, 0), |inbox| (inbox.items.len(), inbox.bytes));
        let (share_items, share_bytes) = inbox.map_or((0, 0), |inbox| {
            inbox
                .items
                .iter()
                .filter(|item| item.sender == sender)
                .fold((0, 0), |(n, bytes), item| (n + 1, bytes + item.len()))
        });
        let refusal = if box_items >= limits.max_items_per_recipient {
            Some(Quota::RecipientItems)
        } else if box_bytes + len > limits.max_bytes_per_recipient {
            Some(Quota::RecipientBytes)
        } else if share_items >= limits.sender_share_items || share_bytes + len > limits.sender_share_bytes {
            Some(Quota::SenderShare)
        } else if sender_state.held_bytes + len > limits.max_bytes_per_sender {
            Some(Quota::SenderBytes)
        } else if self.total_bytes + len > limits.max_total_bytes {
            Some(Quota::RelayBytes)
        } else {
            None
        };
        if let Some(quota) = refusal {
            return MailboxResponse::QuotaExceeded(quota);
        }

        let ttl = Duration::from_secs(u64::from(ttl_secs)).min(limits.max_ttl);
        let id = ItemId::random();
        sender_state.held_items += 1;
        sender_state.held_bytes += len;
        let inbox = self.boxes.entry(recipient).or_default();
        inbox.items.push_back(HeldItem { id, envelope, sender, expires_at: now + ttl });
        inbox.bytes += len;
        self.total_items += 1;
        self.total_bytes += len;
        self.update_gauges();
        MailboxResponse::Deposited { id, ttl_secs: whole_secs_up(ttl) }
    }

    fn fetch(&mut self, recipient: &SigningPublicKey, max_items: u16, now: Instant) -> MailboxResponse {
        self.drop_expired(recipient, now);
        self.update_gauges();
        let Some(inbox) = self.boxes.get(recipient) else {
            return MailboxResponse::Items { items: Vec::new(), remaining: 0 };
        };
        let wanted = usize::from(max_items.min(mailbox::MAX_FETCH_ITEMS));
        let mut items = Vec::with_capacity(wanted.min(inbox.items.len()));
        let mut bytes = 0;
        for held in &inbox.items {
            if items.len() == wanted || bytes + held.len() > mailbox::MAX_FETCH_BYTES {
                break;
            }
            bytes += held.len();
            items.push(MailboxItem { id: held.id, envelope: held.envelope.clone() });
        }
        let remaining = u32::try_from(inbox.items.len() - items.len()).unwrap_or(u32::MAX);
        MailboxResponse::Items { items, remaining }
    }

    fn delete(&mut self, recipient: &SigningPublicKey, ids: &[ItemId]) -> MailboxResponse {
        let ids: HashSet<&ItemId> = ids.iter().collect();
        let removed = self.remove_where(recipient, |item| ids.contains(&item.id));
        self.metrics.deleted.inc_by(removed as u64);
        self.update_gauges();
        MailboxResponse::Deleted { count: u32::try_from(removed).unwrap_or(u32::MAX) }
    }

    fn drop_expired(&mut self, recipient: &SigningPublicKey, now: Instant) {
        let expired = self.remove_where(recipient, |item| item.expires_at <= now);
        self.metrics.expired.inc_by(expired as u64);
    }

    /// Removes the items of `recipient`'s box that match, releasing what they held; returns how
    /// many.
    fn remove_where(&mut self, recipient: &SigningPublicKey, mut matches: impl FnMut(&HeldItem) -> bool) -> usize {
        let Some(inbox) = self.boxes.get_mut(recipient) else { return 0 };
        let mut removed = 0;
        let senders = &mut self.senders;
        let (total_items, total_bytes) = (&mut self.total_items, &mut self.total_bytes);
        inbox.items.retain(|item| {
            if !matches(item) {
                return true;
            }
            let len = item.len();
            if let Some(sender) = senders.get_mut(&item.sender) {
                sender.held_items -= 1;
                sender.held_bytes -= len;
            }
            inbox.bytes -= len;
            *total_items -= 1;
            *total_bytes -= len;
            removed += 1;
            false
        });
        if inbox.items.is_empty() {
            self.boxes.remove(recipient);
        }
        removed
    }

    fn too_large(&self) -> MailboxResponse {
        MailboxResponse::TooLarge { max_len: u32::try_from(self.limits.max_request_len()).unwrap_or(u32::MAX) }
    }

    fn update_gauges(&self) {
        self.metrics.set_held(self.total_items, self.total_bytes, self.boxes.len());
    }
}

/// The device key an ed25519 peer id names (such ids inline the public key); `None` for other
/// key types and hashed ids.
pub(crate) fn recipient_key(peer: &PeerId) -> Option<SigningPublicKey> {
    /// Multihash code of the identity "hash", which inlines keys of at most 42 bytes.
    const IDENTITY: u64 = 0;
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest()).ok()?.try_into_ed25519().ok()?;
    SigningPublicKey::from_bytes(&key.to_bytes()).ok()
}

/// A short name for what a response says, for logs and the deposit metrics label.
pub(crate) fn outcome(response: &MailboxResponse) -> &'static str {
    match response {
        MailboxResponse::Deposited { .. } => "accepted",
        MailboxResponse::Items { .. } => "items",
        MailboxResponse::Deleted { .. } => "deleted",
        MailboxResponse::TooLarge { .. } => "too_large",
        MailboxResponse::QuotaExceeded(quota) => quota.as_str(),
        MailboxResponse::BadRequest(_) => "bad_request",
        MailboxResponse::Disabled => "disabled",
        _ => "other",
    }
}

fn whole_secs_up(duration: Duration) -> u32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;

    /// A structurally valid envelope of exactly `len` bytes (at least 531): the relay never
    /// opens items.
    fn item(len: usize) -> SealedEnvelope {
        let mut bytes = vec![0u8; len];
        bytes[0] = 1;
        bytes[65..67].copy_from_slice(&4u16.to_le_bytes());
        SealedEnvelope::from_bytes(bytes).unwrap()
    }

    struct Peer {
        id: PeerId,
        key: SigningPublicKey,
    }

    fn peer() -> Peer {
        let keypair = Keypair::generate_ed25519();
        let id = keypair.public().to_peer_id();
        Peer { id, key: recipient_key(&id).unwrap() }
    }

    fn limits() -> MailboxLimits {
        MailboxLimits {
            max_item_bytes: 4096,
            max_ttl: Duration::from_secs(60),
            max_items_per_recipient: 4,
            max_bytes_per_recipient: 8000,
            sender_share_items: 3,
            sender_share_bytes: 6000,
            max_bytes_per_sender: 10_000,
            deposits_per_minute: 1000,
            max_total_bytes: 20_000,
            ..MailboxLimits::DEFAULT
        }
    }

    fn deposit(mailbox: &mut Mailbox, from: &Peer, to: &Peer, len: usize, now: Instant) -> MailboxResponse {
        mailbox.handle(from.id, MailboxRequest::Deposit { recipient: to.key, item: item(len), ttl_secs: 3600 }, now)
    }

    fn fetch(mailbox: &mut Mailbox, who: &Peer, now: Instant) -> (Vec<MailboxItem>, u32) {
        match mailbox.handle(who.id, MailboxRequest::Fetch { max_items: u16::MAX }, now) {
            MailboxResponse::Items { items, remaining } => (items, remaining),
            other => panic!("fetch answered {other:?}"),
        }
    }

    fn mailbox() -> Mailbox {
        Mailbox::new(limits(), MailboxMetrics::default())
    }

    #[test]
    fn ed25519_peer_ids_name_their_key_and_others_none() {
        let keypair = Keypair::generate_ed25519();
        let expected = keypair.public().try_into_ed25519().unwrap().to_bytes();
        assert_eq!(recipient_key(&keypair.public().to_peer_id()).unwrap().as_bytes(), &expected);
        // A hashed (sha2-256) peer id, as RSA keys get, names no key.
        assert_eq!(recipient_key(&PeerId::random()), None);
    }

    #[test]
    fn items_go_only_to_their_recipient_and_stay_until_deleted() {
        let (sender, recipient, other) = (peer(), peer(), peer());
        let now = Instant::now();
        let mut mailbox = mailbox();
        let MailboxResponse::Deposited { id, ttl_secs } = deposit(&mut mailbox, &sender, &recipient, 1000, now) else {
            panic!("deposit refused")
        };
        assert_eq!(ttl_secs, 60, "clamped to the maximum TTL");

        assert_eq!(fetch(&mut mailbox, &other, now).0, []);
        let (items, remaining) = fetch(&mut mailbox, &recipient, now);
        assert_eq!((items.len(), remaining), (1, 0));
        assert_eq!((items[0].id, items[0].envelope.as_bytes().len()), (id, 1000));
        // Fetching again gives the same item: only a delete removes it.
        assert_eq!(fetch(&mut mailbox, &recipient, now).0, items);

        // Only the recipient's delete counts.
        assert_eq!(
            mailbox.handle(other.id, MailboxRequest::Delete { ids: vec![id] }, now),
            MailboxResponse::Deleted { count: 0 }
        );
        assert_eq!(
            mailbox.handle(sender.id, MailboxRequest::Delete { ids: vec![id] }, now),
            MailboxResponse::Deleted { count: 0 }
        );
        assert_eq!(
            mailbox.handle(recipient.id, MailboxRequest::Delete { ids: vec![id, ItemId::random()] }, now),
            MailboxResponse::Deleted { count: 1 }
        );
        assert_eq!(fetch(&mut mailbox, &recipient, now).0, []);
        assert_eq!((mailbox.total_items, mailbox.total_bytes, mailbox.boxes.len()), (0, 0, 0));
        assert_eq!(mailbox.senders[&sender.id].held_bytes, 0);
    }

    #[test]
    fn fetch_pages_oldest_first() {
        let (sender, recipient) = (peer(), peer());
        let now = Instant::now();
        let mut mailbox = mailbox();
        let ids: Vec<ItemId> = (0..3)
            .map(|_| match deposit(&mut mailbox, &sender, &recipient, 600, now) {
                MailboxResponse::Deposited { id, .. } => id,
                other => panic!("{other:?}"),
            })
            .collect();
        let MailboxResponse::Items { items, remaining } =
            mailbox.handle(recipient.id, MailboxRequest::Fetch { max_items: 2 }, now)
        else {
            panic!()
        };
        assert_eq!(items.iter().map(|item| item.id).collect::<Vec<_>>(), ids[..2]);
        assert_eq!(remaining, 1);
        let MailboxResponse::Items { items, remaining } =
            mailbox.handle(recipient.id, MailboxRequest::Fetch { max_items: 0 }, now)
        else {
            panic!()
        };
        assert_eq!((items.len(), remaining), (0, 3));
    }

    #[test]
    fn recipient_quotas_refuse_and_store_nothing() {
        let recipient = peer();
        let senders: Vec<Peer> = (0..3).map(|_| peer()).collect();
        let now = Instant::now();
        let mut mailbox = mailbox();
        // Four items from two senders fill the box's item quota.
        for sender in [&senders[0], &senders[0], &senders[1], &senders[1]] {
            assert!(matches!(deposit(&mut mailbox, sender, &recipient, 600, now), MailboxResponse::Deposited { .. }));
        }
        assert_eq!(
            deposit(&mut mailbox, &senders[2], &recipient, 600, now),
            MailboxResponse::QuotaExceeded(Quota::RecipientItems)
        );
        assert_eq!(fetch(&mut mailbox, &recipient, now).0.len(), 4);

        // Bytes: 8000 per recipient.
        let other = peer();
        assert!(matches!(deposit(&mut mailbox, &senders[0], &other, 4000, now), MailboxResponse::Deposited { .. }));
        assert!(matches!(deposit(&mut mailbox, &senders[1], &other, 4000, now), MailboxResponse::Deposited { .. }));
        assert_eq!(
            deposit(&mut mailbox, &senders[2], &other, 600, now),
            MailboxResponse::QuotaExceeded(Quota::RecipientBytes)
        );
    }

    #[test]
    fn one_sender_cannot_fill_a_box() {
        let (sender, other_sender, recipient) = (peer(), peer(), peer());
        let now = Instant::now();
        let mut mailbox = mailbox();
        for _ in 0..3 {
            assert!(matches!(deposit(&mut mailbox, &sender, &recipient, 600, now), MailboxResponse::Deposited { .. }));
        }
        assert_eq!(
            deposit(&mut mailbox, &sender, &recipient, 600, now),
            MailboxResponse::QuotaExceeded(Quota::SenderShare)
        );
        // Someone else still gets through.
        assert!(matches!(
            deposit(&mut mailbox, &other_sender, &recipient, 600, now),
            MailboxResponse::Deposited { .. }
        ));
    }

    #[test]
    fn sender_and_relay_byte_caps() {
        let now = Instant::now();
        let mut mailbox = mailbox();
        let sender = peer();
        // 10 000 bytes per sender: two boxes of 4000 fit, a third does not.
        for _ in 0..2 {
            assert!(matches!(deposit(&mut mailbox, &sender, &peer(), 4000, now), MailboxResponse::Deposited { .. }));
        }
        assert_eq!(
            deposit(&mut mailbox, &sender, &peer(), 4000, now),
            MailboxResponse::QuotaExceeded(Quota::SenderBytes)
        );
        // 20 000 bytes in all: 8000 held, three more senders' 4000 fit, then the relay is full.
        for _ in 0..3 {
            assert!(matches!(deposit(&mut mailbox, &peer(), &peer(), 4000, now), MailboxResponse::Deposited { .. }));
        }
        assert_eq!(
            deposit(&mut mailbox, &peer(), &peer(), 4000, now),
            MailboxResponse::QuotaExceeded(Quota::RelayBytes)
        );
    }

    #[test]
    fn deposits_are_rate_limited_per_sender() {
        let now = Instant::now();
        let mut mailbox = Mailbox::new(MailboxLimits { deposits_per_minute: 2, ..limits() }, MailboxMetrics::default());
        let (sender, recipient) = (peer(), peer());
        for _ in 0..2 {
            assert!(matches!(deposit(&mut mailbox, &sender, &recipient, 600, now), MailboxResponse::Deposited { .. }));
        }
        assert_eq!(
            deposit(&mut mailbox, &sender, &recipient, 600, now),
            MailboxResponse::QuotaExceeded(Quota::SenderRate)
        );
        assert!(matches!(deposit(&mut mailbox, &peer(), &recipient, 600, now), MailboxResponse::Deposited { .. }));
        // One deposit's worth refills in 30 s.
        let later = now + Duration::from_secs(30);
        assert!(matches!(deposit(&mut mailbox, &sender, &recipient, 600, later), MailboxResponse::Deposited { .. }));
        assert_eq!(
            deposit(&mut mailbox, &sender, &recipient, 600, later),
            MailboxResponse::QuotaExceeded(Quota::SenderRate)
        );
    }

    #[test]
    fn oversized_items_and_zero_ttls_are_refused() {
        let now = Instant::now();
        let mut mailbox = mailbox();
        let (sender, recipient) = (peer(), peer());
        assert_eq!(
            deposit(&mut mailbox, &sender, &recipient, 4097, now),
            MailboxResponse::TooLarge { max_len: u32::try_from(limits().max_request_len()).unwrap() }
        );
        let zero_ttl = MailboxRequest::Deposit { recipient: recipient.key, item: item(600), ttl_secs: 0 };
        assert!(matches!(mailbox.handle(sender.id, zero_ttl, now), MailboxResponse::BadRequest(_)));
        assert_eq!(mailbox.total_items, 0);
    }

    #[test]
    fn expired_items_are_never_returned_and_swept() {
        let metrics = MailboxMetrics::default();
        let mut mailbox = Mailbox::new(limits(), metrics.clone());
        let (sender, recipient) = (peer(), peer());
        let now = Instant::now();
        let short = MailboxRequest::Deposit { recipient: recipient.key, item: item(600), ttl_secs: 10 };
        assert_eq!(
            mailbox.handle(sender.id, short, now),
            MailboxResponse::Deposited { id: fetch(&mut mailbox, &recipient, now).0[0].id, ttl_secs: 10 }
        );
        deposit(&mut mailbox, &sender, &recipient, 700, now);
        assert_eq!(metrics.items.get(), 2);

        // Past the first TTL, before any sweep: the item is gone from fetches.
        let later = now + Duration::from_secs(10);
        let (items, _) = fetch(&mut mailbox, &recipient, later);
        assert_eq!(items.iter().map(|item| item.envelope.as_bytes().len()).collect::<Vec<_>>(), [700]);

        // Past the maximum TTL, the sweep empties the relay and forgets the sender.
        let much_later = now + Duration::from_secs(61);
        mailbox.sweep(much_later);
        assert_eq!((mailbox.total_items, mailbox.total_bytes, mailbox.boxes.len()), (0, 0, 0));
        assert!(mailbox.senders.is_empty());
        assert_eq!((metrics.items.get(), metrics.bytes.get(), metrics.expired.get()), (0, 0, 2));
    }

    #[test]
    fn expired_items_do_not_count_against_quotas() {
        let mut mailbox = mailbox();
        let (sender, recipient) = (peer(), peer());
        let now = Instant::now();
        for _ in 0..3 {
            deposit(&mut mailbox, &sender, &recipient, 600, now);
        }
        assert_eq!(
            deposit(&mut mailbox, &sender, &recipient, 600, now),
            MailboxResponse::QuotaExceeded(Quota::SenderShare)
        );
        let later = now + Duration::from_secs(61);
        assert!(matches!(deposit(&mut mailbox, &sender, &recipient, 600, later), MailboxResponse::Deposited { .. }));
    }

    #[test]
    fn non_ed25519_peers_have_no_box() {
        let mut mailbox = mailbox();
        let rsa_like = PeerId::random();
        let now = Instant::now();
        assert!(matches!(
            mailbox.handle(rsa_like, MailboxRequest::Fetch { max_items: 1 }, now),
            MailboxResponse::BadRequest(_)
        ));
        assert!(matches!(
            mailbox.handle(rsa_like, MailboxRequest::Delete { ids: vec![] }, now),
            MailboxResponse::BadRequest(_)
        ));
        // They may still deposit for others.
        let recipient = peer();
        let request = MailboxRequest::Deposit { recipient: recipient.key, item: item(600), ttl_secs: 5 };
        assert!(matches!(mailbox.handle(rsa_like, request, now), MailboxResponse::Deposited { .. }));
    }

    #[test]
    fn a_fetch_stops_at_the_response_byte_limit() {
        let limits = MailboxLimits {
            max_item_bytes: mailbox::MAX_ITEM_LEN,
            max_bytes_per_recipient: 64 * 1024 * 1024,
            sender_share_bytes: 64 * 1024 * 1024,
            max_bytes_per_sender: 64 * 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_items_per_recipient: 16,
            sender_share_items: 16,
            ..limits()
        };
        let mut mailbox = Mailbox::new(limits, MailboxMetrics::default());
        let (sender, recipient) = (peer(), peer());
        let now = Instant::now();
        for _ in 0..8 {
            let response = deposit(&mut mailbox, &sender, &recipient, mailbox::MAX_ITEM_LEN, now);
            assert!(matches!(response, MailboxResponse::Deposited { .. }), "{response:?}");
        }
        let (items, remaining) = fetch(&mut mailbox, &recipient, now);
        let per_fetch = mailbox::MAX_FETCH_BYTES / mailbox::MAX_ITEM_LEN;
        assert_eq!((items.len(), remaining as usize), (per_fetch, 8 - per_fetch));
        let response = MailboxResponse::Items { items, remaining };
        assert!(MailboxResponse::decode(&response.encode()).is_ok());
    }
}
