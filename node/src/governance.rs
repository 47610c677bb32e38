//! What inbound messages may do to this node. Every message is checked against who sent it (the
//! Noise-authenticated peer, or the signer of a letter from a relay's mailbox, must be the node
//! the message's signer certified), the contact state
//! machine, invites and the replay cache; a refusal that indicates an attack is recorded as a
//! security event. Session messages are handled in `sessions/inbound.rs`.

use std::sync::Arc;

use clawnet_crypto::{DeviceCert, Signed, Timestamp};
use clawnet_protocol::MessageId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::contact::{
    ContactAccept, ContactError, ContactRelation, ContactRemoval, ContactRequest, ContactState,
};
use clawnet_protocol::tags::SealedTags;
use clawnet_protocol::wire::WireMessage;
use clawnet_storage::Change;
use clawnet_storage::contacts::ContactRecord;
use clawnet_storage::invites::InviteRecord;
use clawnet_storage::replay::NonceCheck;
use libp2p::PeerId;

use crate::delivery::{Accepted, Handler, Hold, Refusal};
use crate::feed::{FeedChange, TagsRefused};
use crate::network::device_key_of;
use crate::node::Node;

/// Work after an inbound message is durable.
#[derive(Debug)]
pub enum FollowUp {
    /// Nothing.
    None,
    /// Announce our tags again (a contact joined or left); `rotate` replaces the feed.
    Publish {
        /// Replace the feed first.
        rotate: bool,
    },
    /// Follow a contact's new feed.
    Follow(FeedChangeBox),
    /// Carry a session on.
    Session(SessionWork),
}

/// What a session change leads to once durable.
#[derive(Debug, Default)]
pub struct SessionWork {
    /// Events for the owner.
    pub(crate) events: Vec<crate::sessions::NodeEvent>,
    /// Sessions where our agent may have a turn to speak.
    pub(crate) speak: Vec<clawnet_protocol::SessionId>,
    /// A new approval may be covered by an owner policy.
    pub(crate) policies: bool,
}

/// A contact's feed change, opaque outside this crate.
#[derive(Debug)]
pub struct FeedChangeBox(FeedChange);

/// The node's inbound message policy.
#[derive(Debug, Clone)]
pub struct Governance {
    pub(crate) node: Arc<Node>,
}

impl Governance {
    /// The policy of `node`.
    pub fn new(node: Arc<Node>) -> Governance {
        Governance { node }
    }

    async fn contact_request(
        &self,
        peer: PeerId,
        signed: Signed<ContactRequest>,
    ) -> Result<Accepted<FollowUp>, Refusal> {
        let node = &self.node;
        let hold = node.contacts_lock.clone().lock_owned().await;
        let claimed =
            signed.decode_unverified().map_err(|err| attack("malformed", Actor::Node, peer, err.to_string()))?;
        let actor = Actor::Peer(claimed.from);
        let object = format!("contact request from {:?} ({})", claimed.display_name, claimed.from.fingerprint());
        check_peer_is_device(&peer, &claimed.device, &object, actor)?;
        let now = Timestamp::now();
        let view = node.home.db().read().map_err(busy)?;
        if let Some(existing) = view.contact(&claimed.from).map_err(busy)?
            && !matches!(existing.state, ContactState::Removed)
        {
            return Err(Refusal::plain(format!("already {}", existing.state.name())));
        }
        let lookup = claimed.invite.lookup_key();
        let invite = view.invite(&lookup).map_err(busy)?;
        let mut ledger = NonceCheck::new(&view);
        let (relation, request) = ContactRelation::request_received(
            &signed,
            &node.home.owner(),
            invite.as_ref().map(InviteRecord::invite),
            now,
            &mut ledger,
        )
        .map_err(|err| contact_refusal(err, actor, &object))?;
        let nonces = ledger.into_pending();
        drop(view);
        let device = DeviceCert::verify_for(&request.device, &request.from, now)
            .map_err(|err| attack("contact-request", actor, &object, err.to_string()))?;
        let record = ContactRecord {
            owner: request.from,
            display_name: request.display_name.clone(),
            device_key: device.device_key,
            device: Some(request.device.clone()),
            contact_key: Some(request.contact_key),
            state: relation.state,
            assigned_identity: None,
            their_feed: None,
            their_tags: None,
            created_at: now,
            updated_at: now,
        };
        let used = InviteRecord {
            used: true,
            ..invite.unwrap_or(InviteRecord { issued_at: now, expires_at: now, used: true })
        };
        let addresses = request.addresses.clone();
        let audit = AuditDraft::new(actor, "contact.request-received", object, "valid invite token", Outcome::Success);
        let change = Change::new(move |txn| {
            txn.put_contact(&record)?;
            txn.put_invite(&lookup, &used)?;
            txn.add_peer_addresses(&device.device_key, &addresses, now)?;
            txn.record_nonces(&nonces)
        })
        .with_audit(audit);
        Ok(Accepted::new(change, FollowUp::None, Some(Hold::new(hold))))
    }

    async fn contact_accept(&self, peer: PeerId, signed: Signed<ContactAccept>) -> Result<Accepted<FollowUp>, Refusal> {
        let node = &self.node;
        let hold = node.contacts_lock.clone().lock_owned().await;
        let claimed =
            signed.decode_unverified().map_err(|err| attack("malformed", Actor::Node, peer, err.to_string()))?;
        let actor = Actor::Peer(claimed.from);
        let object = format!("contact accept from {:?} ({})", claimed.display_name, claimed.from.fingerprint());
        check_peer_is_device(&peer, &claimed.device, &object, actor)?;
        let now = Timestamp::now();
        let view = node.home.db().read().map_err(busy)?;
        let Some(mut record) = view.contact(&claimed.from).map_err(busy)? else {
            return Err(attack("stranger", actor, &object, "no contact request was sent to this owner"));
        };
        let mut relation = record.relation();
        let mut ledger = NonceCheck::new(&view);
        let accept = relation
            .accept_received(&signed, &node.home.owner(), now, &mut ledger)
            .map_err(|err| contact_refusal(err, actor, &object))?;
        let nonces = ledger.into_pending();
        drop(view);
        let device = DeviceCert::verify_for(&accept.device, &accept.from, now)
            .map_err(|err| attack("contact-accept", actor, &object, err.to_string()))?;
        record.state = relation.state;
        record.display_name = accept.display_name.clone();
        record.device_key = device.device_key;
        record.device = Some(accept.device.clone());
        record.contact_key = Some(accept.contact_key);
        record.updated_at = now;
        let addresses = accept.addresses.clone();
        let audit =
            AuditDraft::new(actor, "contact.accepted", object, "their signed accept of our request", Outcome::Success);
        let change = Change::new(move |txn| {
            txn.add_peer_addresses(&record.device_key, &addresses, now)?;
            txn.put_contact(&record)?;
            txn.record_nonces(&nonces)
        })
        .with_audit(audit);
        Ok(Accepted::new(change, FollowUp::Publish { rotate: false }, Some(Hold::new(hold))))
    }

    async fn contact_removal(
        &self,
        peer: PeerId,
        signed: Signed<ContactRemoval>,
    ) -> Result<Accepted<FollowUp>, Refusal> {
        let node = &self.node;
        let hold = node.contacts_lock.clone().lock_owned().await;
        let mut record = self.contact_of_peer(&peer, "contact removal")?;
        let actor = Actor::Peer(record.owner);
        let object = format!("contact removal from {} ({})", record.display_name, record.owner.fingerprint());
        let now = Timestamp::now();
        let view = node.home.db().read().map_err(busy)?;
        let mut relation = record.relation();
        let mut ledger = NonceCheck::new(&view);
        relation
            .removal_received(&signed, &node.home.owner(), now, &mut ledger)
            .map_err(|err| contact_refusal(err, actor, &object))?;
        let nonces = ledger.into_pending();
        drop(view);
        let old_feed = record.their_feed.take();
        record.state = relation.state;
        record.assigned_identity = None;
        record.updated_at = now;
        let audit = AuditDraft::new(actor, "contact.removed", object, "their signed removal", Outcome::Success);
        let change = Change::new(move |txn| {
            txn.put_contact(&record)?;
            txn.record_nonces(&nonces)
        })
        .with_audit(audit);
        if let Some(feed) = old_feed {
            let _ = node.network.unsubscribe(feed.topic()).await;
        }
        Ok(Accepted::new(change, FollowUp::Publish { rotate: true }, Some(Hold::new(hold))))
    }

    async fn tag_sync(&self, peer: PeerId, sealed: SealedTags) -> Result<Accepted<FollowUp>, Refusal> {
        let record = self.contact_of_peer(&peer, "tag sync")?;
        match record.state {
            ContactState::Connected => {}
            // They accepted our request and announced right away; their accept is on its way.
            ContactState::RequestSent { .. } => return Err(Refusal::later("their contact accept has not arrived yet")),
            _ => return Err(Refusal::plain("not a connected contact")),
        }
        let actor = Actor::Peer(record.owner);
        let object = format!("tag sync from {} ({})", record.display_name, record.owner.fingerprint());
        match self.node.accept_tags(&record, &sealed, "direct sync").await {
            // accept_tags committed the new tags itself; the delivery only needs its inbox record.
            Ok(change) => Ok(Accepted::new(Change::new(|_txn| Ok(())), FollowUp::Follow(FeedChangeBox(change)), None)),
            Err(TagsRefused::NotForUs) => Err(attack("tag-sync", actor, &object, "sealed for other recipients")),
            Err(TagsRefused::Invalid(reason)) => Err(attack("tag-sync", actor, &object, reason)),
        }
    }

    /// The contact whose node is `peer`; anyone else is a stranger.
    pub(crate) fn contact_of_peer(&self, peer: &PeerId, what: &str) -> Result<ContactRecord, Refusal> {
        let device = device_key_of(peer).ok_or_else(|| attack("stranger", Actor::Node, peer, "not an ed25519 peer"))?;
        let contact = self.node.home.db().contact_by_device(&device).map_err(busy)?;
        match contact {
            Some(contact) if !matches!(contact.state, ContactState::Removed) => Ok(contact),
            _ => Err(attack("stranger", Actor::Node, peer, format!("{what} from a node that is not a contact's"))),
        }
    }
}

impl Handler for Governance {
    type FollowUp = FollowUp;

    async fn handle(&self, peer: PeerId, _id: MessageId, message: WireMessage) -> Result<Accepted<FollowUp>, Refusal> {
        match message {
            WireMessage::ContactRequest(signed) => self.contact_request(peer, signed).await,
            WireMessage::ContactAccept(signed) => self.contact_accept(peer, signed).await,
            WireMessage::ContactRemoval(signed) => self.contact_removal(peer, signed).await,
            WireMessage::TagSync(sealed) => self.tag_sync(peer, sealed).await,
            other => {
                let contact = self.contact_of_peer(&peer, other.kind())?;
                if !contact.is_connected() {
                    return Err(attack(
                        "stranger",
                        Actor::Peer(contact.owner),
                        peer,
                        "session message from a contact that is not connected",
                    ));
                }
                match other {
                    WireMessage::Proposal(offer) => self.proposal(contact, *offer).await,
                    WireMessage::Consent(signed) => self.consent(contact, signed).await,
                    WireMessage::Rejection(signed) => self.rejection(contact, signed).await,
                    WireMessage::Turn(signed) => self.turn(contact, signed).await,
                    WireMessage::Close(signed) => self.close(contact, signed).await,
                    unknown => Err(Refusal::plain(format!("{} is not handled by this node", unknown.kind()))),
                }
            }
        }
    }

    fn prepare(&self, peer: &PeerId, messages: &mut [&mut WireMessage]) {
        // Only for a connected contact's node: a stranger's session messages are refused, one
        // by one, before any signature of theirs is checked.
        if messages.len() > 1 && self.contact_of_peer(peer, "a delivery").is_ok_and(|contact| contact.is_connected()) {
            WireMessage::check_signatures_together(messages.iter_mut().map(|message| &mut **message));
        }
    }

    /// A session turn: its change stores it in the transcript under its number, where a retry
    /// of it is answered as recorded (`sessions/inbound.rs`).
    fn stores_itself(&self, message: &WireMessage) -> bool {
        matches!(message, WireMessage::Turn(_))
    }

    async fn committed(&self, follow_up: FollowUp) {
        match follow_up {
            FollowUp::None => {}
            FollowUp::Publish { rotate } => {
                if let Err(err) = self.node.publish_tags(rotate).await {
                    tracing::error!(%err, "cannot announce tags");
                }
            }
            FollowUp::Follow(FeedChangeBox(change)) => self.node.follow_feed(change).await,
            FollowUp::Session(work) => self.node.carry_on(work),
        }
    }
}

/// The Noise-authenticated peer must be the device the message's signer certified.
fn check_peer_is_device(peer: &PeerId, device: &Signed<DeviceCert>, object: &str, actor: Actor) -> Result<(), Refusal> {
    let claimed = device.decode_unverified().map_err(|err| attack("malformed", actor, object, err.to_string()))?;
    if device_key_of(peer) != Some(claimed.device_key) {
        return Err(attack("peer-mismatch", actor, object, "sent from a node other than the one it names"));
    }
    Ok(())
}

fn contact_refusal(err: ContactError, actor: Actor, object: &str) -> Refusal {
    if err.is_security_event() {
        attack("contact", actor, object, err.to_string())
    } else {
        Refusal::plain(err.to_string())
    }
}

pub(crate) fn attack(kind: &str, actor: Actor, object: impl std::fmt::Display, reason: impl Into<String>) -> Refusal {
    Refusal::attack(kind, actor, object.to_string(), reason)
}

pub(crate) fn busy(err: clawnet_storage::StoreError) -> Refusal {
    tracing::error!(%err, "database error while checking a delivery");
    Refusal::later("the receiving node cannot read its database")
}
