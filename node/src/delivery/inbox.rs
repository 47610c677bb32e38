//! The receiving side: dedup by message id, validation by a [`Handler`], one commit of the
//! inbox record together with the changes each message causes, then one reply for the batch
//! (the sender's Noise session authenticates it: see `clawnet_protocol::wire`). The messages of
//! a batch are processed concurrently, so their commits share the group commit, after the
//! handler has seen them together ([`Handler::prepare`]: the session handler checks the
//! signatures of their session messages in batches). A message its change stores where a
//! retry is recognised (a session turn, in its transcript) takes no inbox record, nor a look
//! for one: the handler answers its retries ([`Handler::stores_itself`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawnet_crypto::{DecodeError, Timestamp};
use clawnet_protocol::MessageId;
use clawnet_protocol::audit::{Actor, AuditDraft};
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply, MessageOutcome, WireMessage};
use clawnet_storage::deliveries::InboundRecord;
use clawnet_storage::{Change, CommitReceipt, StoreError};
use libp2p::PeerId;

use crate::home::UnlockedHome;
use crate::network::device_key_of;

/// How long the reply to a message whose follow-up ran once it was committed waits for a later
/// commit's sync to carry it, before syncing it itself: a turn's answer usually commits well
/// within it, a model's takes longer.
const SYNC_WAIT: Duration = Duration::from_millis(2);

/// A message the handler accepted: what to commit, what to do once it is durable (or, for a
/// session turn, committed), and optionally a guard that keeps conflicting messages out until
/// it is committed.
#[derive(Debug)]
pub struct Accepted<F> {
    /// Records and audit entries the message causes (the inbox record is added to it).
    pub change: Change<()>,
    /// Work for after the commit (subscriptions, announcements, waking the outbox).
    pub follow_up: F,
    /// Held until the change is committed, so the next message that depends on the same state
    /// is validated against it (a lock guard: of the contacts, or of one session).
    pub hold: Option<Hold>,
    /// Run the follow-up once the change is committed, before it is durable; the reply still
    /// waits until it is. Only for follow-ups whose effects are later commits of this node
    /// (which the writer makes durable after this change, never before) and notices to the
    /// owner: a session turn, whose answer is then composed and committed at once, and whose
    /// sync makes the turn durable too.
    pub follow_up_when_committed: bool,
}

impl<F> Accepted<F> {
    /// `change` to commit, then `follow_up` once it is durable, with `hold` kept until then.
    pub fn new(change: Change<()>, follow_up: F, hold: Option<Hold>) -> Accepted<F> {
        Accepted { change, follow_up, hold, follow_up_when_committed: false }
    }

    /// Runs the follow-up as soon as the change is committed (see the field).
    pub fn follow_up_when_committed(mut self) -> Accepted<F> {
        self.follow_up_when_committed = true;
        self
    }
}

/// A lock guard kept until a change is committed.
pub struct Hold {
    _guard: Box<dyn Send>,
}

impl Hold {
    /// Keeps `guard` until the change is durable.
    pub fn new(guard: impl Send + 'static) -> Hold {
        Hold { _guard: Box::new(guard) }
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold(..)")
    }
}

/// A message the handler refused.
#[derive(Debug)]
pub struct Refusal {
    /// What the sender is told.
    pub outcome: MessageOutcome,
    /// The security event to record, if the refusal is an attack or a misbehaving peer.
    pub security_event: Option<Box<AuditDraft>>,
}

impl Refusal {
    /// A refusal recorded as security event `security.<kind>` caused by `actor`.
    pub fn attack(kind: &str, actor: Actor, object: impl Into<String>, reason: impl Into<String>) -> Refusal {
        let reason = reason.into();
        Refusal {
            outcome: MessageOutcome::refused(reason.clone()),
            security_event: Some(Box::new(AuditDraft::security_event(actor, kind, object, reason))),
        }
    }

    /// A refusal that is not an attack; the sender should not retry.
    pub fn plain(reason: impl Into<String>) -> Refusal {
        Refusal { outcome: MessageOutcome::refused(reason), security_event: None }
    }

    /// A refusal the sender should retry later.
    pub fn later(reason: impl Into<String>) -> Refusal {
        Refusal { outcome: MessageOutcome::try_later(reason), security_event: None }
    }

    /// Not a refusal: a retry of a message whose change stored it before (see
    /// [`Handler::stores_itself`]), answered as recorded, with nothing applied again.
    pub fn already_recorded() -> Refusal {
        Refusal { outcome: MessageOutcome::Recorded, security_event: None }
    }
}

/// Decides what an inbound message means for this node.
pub trait Handler: Send + Sync + 'static {
    /// What to do after an accepted message is durable.
    type FollowUp: Send + 'static;

    /// Validates `message` from `peer` and returns its change, or a refusal.
    fn handle(
        &self,
        peer: PeerId,
        id: MessageId,
        message: WireMessage,
    ) -> impl Future<Output = Result<Accepted<Self::FollowUp>, Refusal>> + Send;

    /// Runs the follow-up of a committed message.
    fn committed(&self, follow_up: Self::FollowUp) -> impl Future<Output = ()> + Send;

    /// Sees the decoded messages of one delivery from `peer` together, before each is handled
    /// (to check their signatures in one batch, say). Nothing by default.
    fn prepare(&self, _peer: &PeerId, _messages: &mut [&mut WireMessage]) {}

    /// Whether the change of an accepted `message` stores the message itself, where a retry of
    /// it is recognised (a session turn, in its transcript under its number): the handler then
    /// answers a retry as recorded ([`Refusal::already_recorded`]), so the inbox neither looks
    /// for an inbox record of it nor commits one. No by default.
    fn stores_itself(&self, _message: &WireMessage) -> bool {
        false
    }
}

/// The receiving side of reliable delivery.
#[derive(Debug)]
pub struct Inbox<H> {
    home: Arc<UnlockedHome>,
    handler: H,
    /// Messages being processed right now (a retry can overtake a slow first attempt).
    in_progress: Mutex<HashSet<MessageId>>,
}

impl<H: Handler> Inbox<H> {
    /// An inbox for `home`, with `handler` deciding what messages mean.
    pub fn new(home: Arc<UnlockedHome>, handler: H) -> Arc<Inbox<H>> {
        Arc::new(Inbox { home, handler, in_progress: Mutex::new(HashSet::new()) })
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Processes one delivery batch and returns the reply for the sender. Nothing is
    /// acknowledged before it is durable.
    pub async fn receive(&self, peer: PeerId, batch: DeliveryBatch) -> DeliveryReply {
        let ids = batch.ids();
        let alone = ids.len() == 1;
        let mut messages: Vec<Result<WireMessage, DecodeError>> =
            batch.messages.iter().map(|bytes| WireMessage::decode(bytes)).collect();
        drop(batch);
        let mut decoded: Vec<&mut WireMessage> = messages.iter_mut().filter_map(|m| m.as_mut().ok()).collect();
        self.handler.prepare(&peer, &mut decoded);
        let outcomes = futures::future::join_all(
            messages.into_iter().zip(&ids).map(|(message, id)| self.receive_one(peer, *id, message, alone)),
        )
        .await;
        DeliveryReply { outcomes }
    }

    /// Checks and records one message; `alone` when it is the only one of its batch.
    async fn receive_one(
        &self,
        peer: PeerId,
        id: MessageId,
        message: Result<WireMessage, DecodeError>,
        alone: bool,
    ) -> MessageOutcome {
        // First: a first attempt is in progress until its change is durable, and a retry must
        // not be told "recorded" before that.
        let Some(_in_progress) = InProgress::enter(&self.in_progress, id) else {
            return MessageOutcome::try_later("this message is being processed");
        };
        let Some(sender) = device_key_of(&peer) else {
            return self
                .refuse(Refusal::attack("bad-peer", Actor::Node, format!("node {peer}"), "not an ed25519 peer"))
                .await;
        };
        let message = match message {
            Ok(message) => message,
            Err(err) => {
                let refusal = Refusal::attack(
                    "malformed",
                    Actor::Node,
                    format!("delivery {id} from node {peer}"),
                    err.to_string(),
                );
                return self.refuse(refusal).await;
            }
        };
        // A message recorded before is answered from its inbox record, unless it never takes one.
        let stores_itself = self.handler.stores_itself(&message);
        if !stores_itself {
            match self.home.db().read().and_then(|view| view.has_inbound(&id)) {
                Ok(true) => return MessageOutcome::Recorded,
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(%err, "cannot read the inbox");
                    return MessageOutcome::try_later("the receiving node cannot read its database");
                }
            }
        }
        let accepted = match self.handler.handle(peer, id, message).await {
            Ok(accepted) => accepted,
            Err(refusal) => return self.refuse(refusal).await,
        };
        let record = InboundRecord { sender, received_at: Timestamp::now() };
        let early = accepted.follow_up_when_committed;
        let mut change = accepted.change;
        if !stores_itself {
            change = change.also(move |txn| txn.record_inbound(&id, &record).map(drop));
        }
        if early {
            change = change.durable_later();
        }
        let committed = if alone {
            crate::node::commit(self.home.db(), change).await
        } else {
            crate::node::commit_with_others(self.home.db(), change).await
        };
        drop(accepted.hold);
        let recorded = match committed {
            Ok((_, receipt)) if early => {
                self.handler.committed(accepted.follow_up).await;
                self.until_durable(&receipt).await
            }
            Ok(_) => {
                self.handler.committed(accepted.follow_up).await;
                Ok(())
            }
            Err(err) => Err(err),
        };
        match recorded {
            Ok(()) => MessageOutcome::Recorded,
            Err(err) => {
                tracing::error!(%err, "cannot record an inbound delivery");
                MessageOutcome::try_later("the receiving node could not record the message")
            }
        }
    }

    /// Waits for a durable-later change to reach the disk: carried by the sync of a commit
    /// that follows within [`SYNC_WAIT`] (usually the answer its follow-up started), or else
    /// synced here.
    async fn until_durable(&self, receipt: &CommitReceipt) -> Result<(), StoreError> {
        let db = self.home.db();
        match tokio::time::timeout(SYNC_WAIT, db.when_durable(receipt)?).await {
            Ok(durable) => durable,
            Err(_) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.sync())
                    .await
                    .unwrap_or_else(|err| Err(StoreError::Poisoned(format!("the sync task failed: {err}"))))
            }
        }
    }

    async fn refuse(&self, refusal: Refusal) -> MessageOutcome {
        if let Some(event) = refusal.security_event {
            let recorded = crate::node::commit(self.home.db(), Change::audit(*event)).await.map(drop);
            if let Err(err) = recorded {
                tracing::error!(%err, "cannot record a security event");
            }
        }
        refusal.outcome
    }
}

/// A message marked in progress until this is dropped (whichever way its processing ends).
struct InProgress<'a> {
    marks: &'a Mutex<HashSet<MessageId>>,
    id: MessageId,
}

impl<'a> InProgress<'a> {
    /// Marks `id`, unless it is marked already.
    fn enter(marks: &'a Mutex<HashSet<MessageId>>, id: MessageId) -> Option<InProgress<'a>> {
        // The lock is released first, and a guard is made only when marked: dropping one
        // unmarks, under the lock.
        let marked = lock(marks).insert(id);
        marked.then(|| InProgress { marks, id })
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        lock(self.marks).remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_in_progress_stays_marked_until_its_first_attempt_ends() {
        let marks = Mutex::new(HashSet::new());
        let id = MessageId(clawnet_crypto::Hash32::of(clawnet_crypto::HashDomain::MessageId, b"message"));
        let first = InProgress::enter(&marks, id).expect("not marked yet");
        assert!(InProgress::enter(&marks, id).is_none(), "a retry meets the mark");
        assert!(lock(&marks).contains(&id), "the refused retry left the first attempt's mark");
        drop(first);
        assert!(lock(&marks).is_empty());
        assert!(InProgress::enter(&marks, id).is_some(), "a later retry goes through");
    }
}
