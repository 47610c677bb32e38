//! The owner's side of contacts: invites, requests, accepting, rejecting, removing, assigning
//! an identity, and reading what a contact shows us. Each step is signed, persisted and audited
//! in one commit; messages to the other node go through the outbox in that same commit.

use std::time::Duration;

use clawnet_crypto::Timestamp;
use clawnet_crypto::cert::ContextTag;
use clawnet_protocol::Nonce;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::contact::{
    ContactAccept, ContactRelation, ContactRemoval, ContactRequest, ContactState, InviteCode, InviteToken,
};
use clawnet_protocol::wire::WireMessage;
use clawnet_storage::Change;
use clawnet_storage::contacts::ContactRecord;
use clawnet_storage::invites::InviteRecord;

use crate::delivery::enqueue;
use crate::error::NodeError;
use crate::home::NodeHome;
use crate::node::Node;
use crate::views::{ContactTagsView, ContactView, InviteView, TagView, contact_id, normalize_id};

/// How long an invite is valid unless the owner says otherwise.
pub const DEFAULT_INVITE_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

impl Node {
    /// Issues a one-time invite code valid for `validity`.
    pub async fn invite(&self, validity: Duration) -> Result<InviteView, NodeError> {
        let token = InviteToken::random();
        let now = Timestamp::now();
        let expires_at = now.plus(validity);
        let code = InviteCode {
            owner: self.home.owner(),
            device_key: self.home.db().info().device_key,
            display_name: self.name(),
            addresses: self.reachable_addresses().await,
            token,
            expires_at,
        };
        let record = InviteRecord { issued_at: now, expires_at, used: false };
        let key = token.lookup_key();
        let audit = AuditDraft::new(
            Actor::Owner,
            "contact.invite",
            format!("invite {} valid until {} ms", &key.to_hex()[..12], expires_at.as_millis()),
            "owner command",
            Outcome::Success,
        );
        self.commit(Change::new(move |txn| txn.put_invite(&key, &record)).with_audit(audit)).await?;
        Ok(InviteView { code: code.to_text(), expires_at_ms: expires_at.as_millis() })
    }

    /// Sends a signed contact request to the owner of `code`.
    pub async fn add_contact(&self, code: &str) -> Result<ContactView, NodeError> {
        let now = Timestamp::now();
        let code = InviteCode::from_text(code, now).map_err(|err| NodeError::Contact(err.to_string()))?;
        if code.owner == self.home.owner() {
            return Err(NodeError::Contact("that is your own invite code".into()));
        }
        let addresses = self.reachable_addresses().await;
        let _decide = self.contacts_lock.lock().await;
        if let Some(existing) = self.home.db().read()?.contact(&code.owner)?
            && matches!(existing.state, ContactState::Connected | ContactState::RequestSent { .. })
        {
            return Err(NodeError::Contact(format!("{} is already {}", existing.display_name, existing.state.name())));
        }
        let contact_key = self.home.keys().owner.agreement.public_key();
        let request = ContactRequest {
            from: self.home.owner(),
            to: code.owner,
            display_name: self.name(),
            contact_key,
            device: self.device_cert(),
            addresses,
            invite: code.token,
            created_at: now,
            nonce: Nonce::random(),
        };
        let request = self.home.sign_as_owner(&request);
        let record = ContactRecord {
            owner: code.owner,
            display_name: code.display_name.clone(),
            device_key: code.device_key,
            device: None,
            contact_key: None,
            state: ContactRelation::request_sent(&request, code.owner).state,
            assigned_identity: None,
            their_feed: None,
            their_tags: None,
            created_at: now,
            updated_at: now,
        };
        let view = ContactView::of(&record, None);
        let audit = AuditDraft::new(
            Actor::Owner,
            "contact.request-sent",
            format!("contact request to {} ({})", code.display_name, code.owner.fingerprint()),
            "owner command with invite code",
            Outcome::Success,
        );
        let message = WireMessage::ContactRequest(request);
        let change = Change::new(move |txn| {
            txn.put_contact(&record)?;
            txn.add_peer_addresses(&code.device_key, &code.addresses, now)?;
            enqueue(txn, code.device_key, &message, now).map(drop)
        })
        .with_audit(audit);
        self.commit(change).await?;
        self.outbox.wake();
        Ok(view)
    }

    /// Every contact, in any state.
    pub fn contacts(&self) -> Result<Vec<ContactView>, NodeError> {
        let view = self.home.db().read()?;
        let identities = view.identities()?;
        let tag_of = |id| identities.iter().find(|i| Some(i.id) == id).map(|i| i.tag.to_string());
        let mut contacts: Vec<ContactView> =
            view.contacts()?.iter().map(|c| ContactView::of(c, tag_of(c.assigned_identity))).collect();
        contacts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(contacts)
    }

    /// Accepts the pending request of contact `query`.
    pub async fn accept_contact(&self, query: &str) -> Result<ContactView, NodeError> {
        let now = Timestamp::now();
        let addresses = self.reachable_addresses().await;
        let decide = self.contacts_lock.lock().await;
        let mut record = self.find_contact(query)?;
        let ContactState::RequestReceived { request } = record.state else {
            return Err(NodeError::Contact(format!("{} has no pending request", record.display_name)));
        };
        let mut relation = record.relation();
        relation.accept().map_err(|err| NodeError::Contact(err.to_string()))?;
        let accept = ContactAccept {
            from: self.home.owner(),
            to: record.owner,
            request,
            display_name: self.name(),
            contact_key: self.home.keys().owner.agreement.public_key(),
            device: self.device_cert(),
            addresses,
            created_at: now,
            nonce: Nonce::random(),
        };
        let message = WireMessage::ContactAccept(self.home.sign_as_owner(&accept));
        record.state = relation.state;
        record.updated_at = now;
        let view = ContactView::of(&record, None);
        let audit = contact_audit("contact.accept", &record);
        let device = record.device_key;
        let change = Change::new(move |txn| {
            txn.put_contact(&record)?;
            enqueue(txn, device, &message, now).map(drop)
        })
        .with_audit(audit);
        self.commit(change).await?;
        drop(decide);
        self.outbox.wake();
        self.publish_tags(false).await?;
        Ok(view)
    }

    /// Rejects the pending request of contact `query` (and tells their node).
    pub async fn reject_contact(&self, query: &str) -> Result<ContactView, NodeError> {
        let _decide = self.contacts_lock.lock().await;
        let mut record = self.find_contact(query)?;
        let mut relation = record.relation();
        relation.reject().map_err(|err| NodeError::Contact(err.to_string()))?;
        self.end_contact(&mut record, relation.state, "contact.reject").await
    }

    /// Removes contact `query`: tells their node, stops reading their feed and replaces ours so
    /// they read nothing new.
    pub async fn remove_contact(&self, query: &str) -> Result<ContactView, NodeError> {
        let decide = self.contacts_lock.lock().await;
        let mut record = self.find_contact(query)?;
        let mut relation = record.relation();
        relation.remove().map_err(|err| NodeError::Contact(err.to_string()))?;
        let old_feed = record.their_feed.take();
        let view = self.end_contact(&mut record, relation.state, "contact.remove").await?;
        drop(decide);
        if let Some(feed) = old_feed {
            let _ = self.network.unsubscribe(feed.topic()).await;
        }
        self.publish_tags(true).await?;
        Ok(view)
    }

    async fn end_contact(
        &self,
        record: &mut ContactRecord,
        state: ContactState,
        action: &str,
    ) -> Result<ContactView, NodeError> {
        let now = Timestamp::now();
        let removal =
            ContactRemoval { from: self.home.owner(), to: record.owner, created_at: now, nonce: Nonce::random() };
        let message = WireMessage::ContactRemoval(self.home.sign_as_owner(&removal));
        record.state = state;
        record.assigned_identity = None;
        record.updated_at = now;
        let view = ContactView::of(record, None);
        let audit = contact_audit(action, record);
        let stored = record.clone();
        let device = record.device_key;
        let change = Change::new(move |txn| {
            txn.put_contact(&stored)?;
            enqueue(txn, device, &message, now).map(drop)
        })
        .with_audit(audit);
        self.commit(change).await?;
        self.outbox.wake();
        Ok(view)
    }

    /// Lets contact `query` see and talk to our identity `identity` (and only that one). The
    /// feed is replaced, so what they could see before is not updated for them any more.
    pub async fn assign(&self, query: &str, identity: &str) -> Result<ContactView, NodeError> {
        let tag: ContextTag = identity.parse()?;
        let decide = self.contacts_lock.lock().await;
        let mut record = self.find_contact(query)?;
        if !record.is_connected() {
            return Err(NodeError::Contact(format!("{} is not a connected contact", record.display_name)));
        }
        let identity = self
            .home
            .db()
            .read()?
            .active_identity_by_tag(&tag)?
            .ok_or_else(|| NodeError::NoSuchIdentity(tag.to_string()))?;
        record.assigned_identity = Some(identity.id);
        record.updated_at = Timestamp::now();
        let view = ContactView::of(&record, Some(tag.to_string()));
        let audit = AuditDraft::new(
            Actor::Owner,
            "contact.assign",
            format!("{} ({}) may see identity {}", record.display_name, record.owner.fingerprint(), tag),
            "owner command",
            Outcome::Success,
        );
        self.commit(Change::new(move |txn| txn.put_contact(&record)).with_audit(audit)).await?;
        drop(decide);
        self.publish_tags(true).await?;
        Ok(view)
    }

    /// What contact `query`'s identities look like from here.
    pub fn contact_tags(&self, query: &str) -> Result<ContactTagsView, NodeError> {
        let record = self.find_contact(query)?;
        let announcement = match &record.their_tags {
            Some(signed) => Some(signed.decode_unverified().map_err(|err| NodeError::Contact(err.to_string()))?),
            None => None,
        };
        let tags = announcement
            .as_ref()
            .map(|a| {
                a.tags
                    .iter()
                    .filter_map(|tag| {
                        let cert = tag.cert.decode_unverified().ok()?;
                        Some(TagView {
                            tag: cert.tag.to_string(),
                            id: cert.identity.to_hex(),
                            description: tag.description.clone(),
                            offers: tag.offers.clone(),
                            key_fingerprint: clawnet_crypto::Fingerprint::of(&cert.signing_key).to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ContactTagsView { contact: ContactView::of(&record, None), seq: announcement.map_or(0, |a| a.seq), tags })
    }

    /// The contact `query` names: a unique prefix of their fingerprint, or their exact name.
    pub(crate) fn find_contact(&self, query: &str) -> Result<ContactRecord, NodeError> {
        self.home.home().find_contact(query)
    }
}

impl NodeHome {
    /// The contact `query` names: a unique prefix of their fingerprint, or their exact name.
    pub(crate) fn find_contact(&self, query: &str) -> Result<ContactRecord, NodeError> {
        let wanted = normalize_id(query);
        let contacts = self.db().read()?.contacts()?;
        let matches: Vec<&ContactRecord> = contacts
            .iter()
            .filter(|c| {
                (!wanted.is_empty() && contact_id(&c.owner.fingerprint()).starts_with(&wanted))
                    || c.display_name.eq_ignore_ascii_case(query.trim())
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(NodeError::Contact(format!("no contact matches {query:?} (see `clawnet contact list`)"))),
            _ => Err(NodeError::Contact(format!("{query:?} matches several contacts: give more of the id"))),
        }
    }
}

fn contact_audit(action: &str, record: &ContactRecord) -> AuditDraft {
    AuditDraft::new(
        Actor::Owner,
        action,
        format!("{} ({})", record.display_name, record.owner.fingerprint()),
        "owner command",
        Outcome::Success,
    )
}
