//! Encrypted identity-tag gossip. This owner's identities are announced on its feed: one
//! signed announcement per group of contacts that may see the same identity, sealed to exactly
//! that group, published on the feed's gossip topic and also queued to each recipient directly
//! (so a contact that was offline gets the latest when it comes back). Removing a contact or
//! changing an assignment replaces the feed, so former readers see nothing new.
//!
//! The other direction: contacts' announcements arrive by gossip or direct sync, are opened with
//! the owner's contact key, verified against the contact's owner key and kept if newer.

use std::collections::BTreeMap;

use clawnet_crypto::{IdentityId, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::tags::{FeedId, IdentityTag, SealedTags, TagAnnouncement, TagError};
use clawnet_protocol::wire::WireMessage;
use clawnet_storage::Change;
use clawnet_storage::contacts::ContactRecord;
use clawnet_storage::feed::FeedState;

use crate::delivery::enqueue;
use crate::error::NodeError;
use crate::node::Node;

impl Node {
    /// Announces the current tags to every connected contact; with `rotate`, on a new feed.
    pub async fn publish_tags(&self, rotate: bool) -> Result<(), NodeError> {
        let _decide = self.contacts_lock.lock().await;
        let view = self.home.db().read()?;
        let identities = view.identities()?;
        let contacts: Vec<ContactRecord> =
            view.contacts()?.into_iter().filter(|c| c.is_connected() && c.contact_key.is_some()).collect();
        let mut state = match view.feed()? {
            Some(state) if !rotate => state,
            previous => FeedState { feed: FeedId::random(), next_seq: previous.map_or(1, |s| s.next_seq) },
        };
        drop(view);
        if contacts.is_empty() && !rotate {
            return Ok(());
        }

        // One group per visible identity (contacts without an assignment see no tags).
        let mut groups: BTreeMap<Option<IdentityId>, Vec<&ContactRecord>> = BTreeMap::new();
        for contact in &contacts {
            let visible =
                contact.assigned_identity.filter(|id| identities.iter().any(|i| &i.id == id && i.is_active()));
            groups.entry(visible).or_default().push(contact);
        }
        let now = Timestamp::now();
        let mut sealed = Vec::new();
        let mut deliveries = Vec::new();
        for (identity, members) in &groups {
            let tags = identities
                .iter()
                .filter(|record| Some(record.id) == *identity)
                .map(|record| IdentityTag {
                    cert: record.cert.clone(),
                    description: record.description.clone(),
                    offers: Vec::new(),
                })
                .collect();
            let announcement = TagAnnouncement {
                owner: self.home.owner(),
                feed: state.feed,
                seq: state.next_seq,
                tags,
                revocations: Vec::new(),
                issued_at: now,
            };
            state.next_seq += 1;
            let recipients: Vec<_> = members.iter().filter_map(|c| c.contact_key).collect();
            let envelope = SealedTags::seal(&self.home.sign_as_owner(&announcement), &recipients)
                .map_err(|err| NodeError::Contact(err.to_string()))?;
            for member in members {
                deliveries.push((member.device_key, WireMessage::TagSync(envelope.clone())));
            }
            sealed.push(envelope);
        }
        let audit = AuditDraft::new(
            Actor::Node,
            "feed.publish",
            format!(
                "{} announcements to {} contacts{}",
                sealed.len(),
                contacts.len(),
                if rotate { " on a new feed" } else { "" }
            ),
            "identities, contacts and assignments changed",
            Outcome::Success,
        );
        let change = Change::new(move |txn| {
            txn.put_feed(&state)?;
            for (device, message) in &deliveries {
                enqueue(txn, *device, message, now)?;
            }
            Ok(())
        })
        .with_audit(audit);
        self.commit(change).await?;
        self.outbox.wake();
        for envelope in sealed {
            let bytes = postcard::to_allocvec(&envelope).map_err(|err| NodeError::Contact(err.to_string()))?;
            if let Err(err) = self.network.publish(envelope.feed.topic(), bytes).await {
                tracing::warn!(%err, "cannot gossip a tag announcement (direct sync still delivers it)");
            }
        }
        Ok(())
    }

    /// A sealed announcement that came by gossip on `topic`. Envelopes for other groups of the
    /// same feed are expected and ignored.
    pub async fn on_gossip(&self, topic: &str, data: &[u8]) {
        let Ok(envelope) = postcard::from_bytes::<SealedTags>(data) else {
            tracing::debug!(%topic, "undecodable gossip ignored");
            return;
        };
        let contact = match self.home.db().read().and_then(|view| view.contacts()) {
            Ok(contacts) => {
                contacts.into_iter().find(|c| c.is_connected() && c.their_feed.is_some_and(|f| f.topic() == topic))
            }
            Err(err) => {
                tracing::error!(%err, "cannot read contacts");
                return;
            }
        };
        let Some(contact) = contact else { return };
        match self.accept_tags(&contact, &envelope, "gossip").await {
            Ok(_) | Err(TagsRefused::NotForUs) => {}
            Err(err) => {
                tracing::warn!(contact = %contact.display_name, %err, "bad tag announcement on a contact's feed")
            }
        }
    }

    /// Opens, verifies and stores `envelope` from `contact` if it is newer than what we have.
    /// Returns the contact's feed before and after.
    pub(crate) async fn accept_tags(
        &self,
        contact: &ContactRecord,
        envelope: &SealedTags,
        basis: &str,
    ) -> Result<FeedChange, TagsRefused> {
        let announcement = {
            let keys = self.home.keys();
            envelope.open(&keys.owner.agreement, &contact.owner)
        };
        let announcement = match announcement {
            Ok(announcement) => announcement,
            Err(TagError::Open(_)) => return Err(TagsRefused::NotForUs),
            Err(err) => return Err(TagsRefused::Invalid(err.to_string())),
        };
        let _decide = self.contacts_lock.lock().await;
        // Re-read under the lock: the record may have changed since the caller looked.
        let mut record = match self.home.db().read().and_then(|view| view.contact(&contact.owner)) {
            Ok(Some(record)) if record.is_connected() => record,
            Ok(_) => return Err(TagsRefused::Invalid("not a connected contact".into())),
            Err(err) => return Err(TagsRefused::Invalid(err.to_string())),
        };
        let previous = record.their_feed;
        // Sequence numbers keep counting across feed rotations, so an announcement from an old
        // feed (a delayed retry, a replay) is older than the one we hold and must not replace it.
        let stored_seq = record.their_tags.as_ref().and_then(|t| t.decode_unverified().ok()).map(|a| a.seq);
        let newer = stored_seq.is_none_or(|seq| announcement.seq > seq);
        if !newer {
            return Ok(FeedChange { previous, current: previous });
        }
        record.their_feed = Some(announcement.feed);
        record.their_tags = Some(announcement.signed().clone());
        record.updated_at = Timestamp::now();
        let audit = AuditDraft::new(
            Actor::Peer(record.owner),
            "contact.tags-received",
            format!(
                "{} tags of {} ({}), seq {}",
                announcement.tags.len(),
                record.display_name,
                record.owner.fingerprint(),
                announcement.seq
            ),
            basis,
            Outcome::Success,
        );
        let current = record.their_feed;
        self.commit(Change::new(move |txn| txn.put_contact(&record)).with_audit(audit))
            .await
            .map_err(|err| TagsRefused::Invalid(err.to_string()))?;
        Ok(FeedChange { previous, current })
    }

    /// Follows a contact's feed change: listen to the new topic, leave the old one.
    pub(crate) async fn follow_feed(&self, change: FeedChange) {
        if change.previous == change.current {
            return;
        }
        if let Some(old) = change.previous {
            let _ = self.network.unsubscribe(old.topic()).await;
        }
        if let Some(new) = change.current
            && let Err(err) = self.network.subscribe(new.topic()).await
        {
            tracing::warn!(%err, "cannot subscribe to a contact's feed");
        }
    }

    /// Subscribes to every connected contact's feed (at start).
    pub async fn follow_all_feeds(&self) -> Result<(), NodeError> {
        for contact in self.home.db().read()?.contacts()? {
            if let (true, Some(feed)) = (contact.is_connected(), contact.their_feed) {
                self.network.subscribe(feed.topic()).await?;
            }
        }
        Ok(())
    }
}

/// A contact's feed before and after an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeedChange {
    pub(crate) previous: Option<FeedId>,
    pub(crate) current: Option<FeedId>,
}

/// Why an announcement was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TagsRefused {
    /// Sealed for other recipients (normal on gossip).
    #[error("not sealed for us")]
    NotForUs,
    /// Forged, malformed, or from someone who is not a contact.
    #[error("{0}")]
    Invalid(String),
}
