//! The sending side: a worker that sends queued outbox messages (many in flight, batched per
//! receiving node), removes them when the receiver's reply says they are recorded, and tries
//! again later otherwise.
//!
//! What to send comes from the in-memory [`queue`] (its module docs give the rules: queue order
//! per node, two requests on their way to a node that answers, one probe to any other, and a
//! node that does not answer waits as a whole). A lone message goes at once; under load, what
//! is queued meanwhile leaves together in the next request, so the receiver commits and answers
//! a batch at a time instead of a message at a time (the group commit that makes
//! throughput). When a node does not answer, the messages of the failed request and the next
//! ones waiting for it are left as letters at relays' mailboxes ([`super::mailbox`]).

mod queue;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawnet_crypto::{SigningPublicKey, Timestamp};
use clawnet_protocol::MessageId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply, MessageOutcome, WireMessage};
use clawnet_storage::deliveries::{OutboundSchedule, Queued, QueuedFeed};
use clawnet_storage::peers::PeerRecord;
use clawnet_storage::{Change, NodeDb, StoreError};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use self::queue::{Batch, FIRST_BACKOFF, Fate, SendQueue, backoff};
use super::mailbox::Mailboxes;
use crate::home::UnlockedHome;
use crate::network::{Network, peer_id_of};

/// First retry delay of a message the receiver asked for again later; it doubles likewise.
const FIRST_LATER_RETRY: Duration = Duration::from_millis(20);
/// How often the worker looks at its queue when nothing wakes it.
const IDLE_TICK: Duration = Duration::from_secs(5);
/// Messages waiting for a node that did not answer that are left at its mailboxes per failed
/// attempt, besides those of the attempt (the rest follow on later failures).
const LETTERS_PER_FAILURE: usize = 64;

/// Counters for diagnostics and tests.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Delivery requests sent (a batch of messages each).
    pub requests: AtomicU64,
    /// Messages acknowledged.
    pub acknowledged: AtomicU64,
    /// Messages whose attempt failed (no answer, or no receipt for them); they are sent again.
    pub retried: AtomicU64,
    /// Messages the receiver refused for good.
    pub refused: AtomicU64,
    /// Full reads of the outbox table (at start, and if the worker fell too far behind the
    /// commits that queue messages).
    pub scans: AtomicU64,
}

/// The outbox worker. Cheap to clone; [`Outbox::wake`] makes it look at the outbox now.
#[derive(Debug, Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: NodeDb,
    network: Network,
    /// Where messages go for a node that cannot be reached now.
    mailboxes: Arc<Mailboxes>,
    wake: Notify,
    /// What committed changes queued, not yet in `queue`.
    feed: Arc<QueuedFeed>,
    /// Every unsettled message, by node and place.
    queue: Mutex<SendQueue>,
    /// Peers whose messages should be retried now (they just connected).
    retry_now: Mutex<HashSet<SigningPublicKey>>,
    stats: OutboxStats,
    /// Messages the receiver's reply said were recorded, so far.
    acknowledged: watch::Sender<u64>,
    /// Messages that left the outbox for good, so far.
    settled: watch::Sender<u64>,
}

impl Outbox {
    /// A worker sending through `network` from the outbox of `home`.
    pub fn new(home: Arc<UnlockedHome>, network: Network) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                db: home.db().clone(),
                feed: home.db().queued_outbound().clone(),
                mailboxes: Arc::new(Mailboxes::new(home, network.clone())),
                network,
                wake: Notify::new(),
                queue: Mutex::new(SendQueue::default()),
                retry_now: Mutex::new(HashSet::new()),
                stats: OutboxStats::default(),
                acknowledged: watch::Sender::new(0),
                settled: watch::Sender::new(0),
            }),
        }
    }

    /// Makes the worker look at the outbox now (after queuing something).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Retries messages to `peer` now instead of waiting for their backoff (it just connected).
    pub fn peer_connected(&self, peer: &PeerId) {
        if let Some(device) = crate::network::device_key_of(peer) {
            lock(&self.inner.retry_now).insert(device);
            self.wake();
        }
    }

    /// Relays' mailboxes: where letters for unreachable nodes are left, and from where this
    /// node collects its own.
    pub fn mailboxes(&self) -> &Arc<Mailboxes> {
        &self.inner.mailboxes
    }

    /// The worker's counters.
    pub fn stats(&self) -> &OutboxStats {
        &self.inner.stats
    }

    /// Counts messages the receiver's reply said were recorded: the moment a delivery is
    /// complete (recording it, below, is bookkeeping).
    pub fn acknowledged(&self) -> watch::Receiver<u64> {
        self.inner.acknowledged.subscribe()
    }

    /// Counts messages that left the outbox for good (acknowledged or refused). The removal is
    /// committed, and reaches the disk with the node's next durable commit.
    pub fn settled(&self) -> watch::Receiver<u64> {
        self.inner.settled.subscribe()
    }

    /// Runs until `shutdown`. Cancel-safe: an interrupted attempt is retried after restart.
    pub async fn run(self, shutdown: CancellationToken) {
        // Subscribed before the scan, so a message committed in between is in one or both.
        self.inner.feed.subscribe();
        let mut scanned = false;
        loop {
            if !scanned {
                match self.scan() {
                    Ok(()) => scanned = true,
                    Err(err) => tracing::error!(%err, "cannot read the outbox"),
                }
            }
            let next = if scanned { self.send_due() } else { Some(IDLE_TICK) };
            let sleep = next.unwrap_or(IDLE_TICK).min(IDLE_TICK);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Reads every queued message's schedule into the queue (bodies are read when sent). Holds
    /// the queue meanwhile, so a message settled during the scan is not put back.
    fn scan(&self) -> Result<(), StoreError> {
        let mut queue = lock(&self.inner.queue);
        let schedule = self.inner.db.outbound_schedule()?;
        let now = Timestamp::now();
        for (id, entry) in schedule {
            queue.insert(id, entry, None, now);
        }
        self.inner.stats.scans.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Takes in what commits queued, starts an attempt for every batch that may leave now, and
    /// returns how long until another may.
    fn send_due(&self) -> Option<Duration> {
        match self.inner.feed.take() {
            Queued::Messages(queued) => {
                let now = Timestamp::now();
                let mut queue = lock(&self.inner.queue);
                for message in queued {
                    queue.insert(message.id, message.schedule, Some(message.message), now);
                }
            }
            Queued::Overflowed => {
                if let Err(err) = self.scan() {
                    tracing::error!(%err, "cannot read the outbox");
                    return Some(IDLE_TICK);
                }
            }
        }
        let connected: HashSet<SigningPublicKey> = std::mem::take(&mut *lock(&self.inner.retry_now));
        let (batches, next) = lock(&self.inner.queue).take_batches(Timestamp::now(), &connected);
        for batch in batches {
            let outbox = self.clone();
            tokio::spawn(async move {
                outbox.attempt(batch).await;
                outbox.wake();
            });
        }
        next
    }

    /// One delivery attempt of a batch and its bookkeeping, in one commit.
    async fn attempt(&self, mut batch: Batch) {
        let recipient = batch.recipient;
        let peer = peer_id_of(&recipient);
        let Loaded { messages, unsent, gone, addresses } = match self.load(&mut batch) {
            Ok(loaded) => loaded,
            Err(err) => {
                tracing::error!(%err, "cannot read the outbox");
                // Counted as unanswered, so the node waits with backoff instead of the worker
                // trying again at once, in a loop, while the database cannot be read.
                let fates: Vec<(MessageId, Fate)> = batch.messages.iter().map(|m| (m.id, Fate::Unsent)).collect();
                lock(&self.inner.queue).finished(&batch, Some(false), &fates, Timestamp::now());
                return;
            }
        };
        let mut fates: Vec<(MessageId, Fate)> = unsent.iter().map(|id| (*id, Fate::Unsent)).collect();
        fates.extend(gone.iter().map(|id| (*id, Fate::Done)));
        if messages.is_empty() {
            let mut queue = lock(&self.inner.queue);
            queue.finished(&batch, None, &fates, Timestamp::now());
            queue.forget(&gone);
            return;
        }
        let request = DeliveryBatch { messages: messages.iter().map(|(_, _, bytes)| bytes.clone()).collect() };
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let reply = self.inner.network.deliver(peer, addresses, request).await;
        let (answered, outcomes) = match reply {
            Ok(reply) => match check_reply(&reply, &messages) {
                Ok(outcomes) => (true, outcomes),
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "bad delivery reply");
                    (true, vec![Settle::Retry; messages.len()])
                }
            },
            Err(err) => {
                tracing::debug!(%peer, %err, "delivery attempt failed");
                (false, vec![Settle::Unsent; messages.len()])
            }
        };
        let now = Timestamp::now();
        let message_fates: Vec<Fate> = messages
            .iter()
            .zip(&outcomes)
            .map(|((_, entry, _), outcome)| {
                let attempts = entry.attempts.saturating_add(1);
                match outcome {
                    Settle::Recorded | Settle::Refused(_) => Fate::Done,
                    Settle::Retry => Fate::RetryAt(now.plus(backoff(FIRST_BACKOFF, attempts))),
                    Settle::Later => Fate::RetryAt(now.plus(backoff(FIRST_LATER_RETRY, attempts))),
                    Settle::Unsent => Fate::Unsent,
                }
            })
            .collect();
        fates.extend(messages.iter().map(|(id, _, _)| *id).zip(message_fates.iter().copied()));
        // The next batch for this node may leave while this one's outcome is recorded.
        let waiting = {
            let mut queue = lock(&self.inner.queue);
            queue.finished(&batch, Some(answered), &fates, now);
            queue.forget(&gone);
            if answered { Vec::new() } else { queue.waiting_for(&recipient, LETTERS_PER_FAILURE) }
        };
        self.wake();
        if !answered {
            self.leave_letters(recipient, &messages, waiting);
        }
        let recorded = outcomes.iter().filter(|outcome| **outcome == Settle::Recorded).count() as u64;
        if recorded > 0 {
            self.inner.acknowledged.send_modify(|count| *count += recorded);
        }
        // What was just woken (the worker sending this node's next batch, whoever waits for the
        // acknowledgement) sits in this thread's run queue, where no other thread may take it
        // (tokio's LIFO slot), and the settle below blocks this thread for its commit (for an
        // fsync when it falls on a journal checkpoint). Let it run first.
        tokio::task::yield_now().await;
        self.settle(peer, &messages, outcomes, &message_fates).await;
    }

    /// Reads what the batch needs from the database: the bodies not kept in memory and the
    /// node's addresses.
    fn load(&self, batch: &mut Batch) -> Result<Loaded, StoreError> {
        let db = &self.inner.db;
        let mut loaded = Loaded::default();
        let mut size = 0;
        for outgoing in &mut batch.messages {
            let body = match outgoing.body.take() {
                Some(body) => body,
                None => match db.outbound_message(&outgoing.id)? {
                    Some(record) => record.message,
                    None => {
                        loaded.gone.push(outgoing.id);
                        continue;
                    }
                },
            };
            if !loaded.messages.is_empty() && size + body.len() > clawnet_protocol::limits::MAX_WIRE_MESSAGE {
                loaded.unsent.push(outgoing.id); // It goes in the next request.
                continue;
            }
            size += body.len();
            loaded.messages.push((outgoing.id, outgoing.schedule, body));
        }
        loaded.addresses = addresses_of(db.read()?.peer(&batch.recipient)?);
        Ok(loaded)
    }

    /// Leaves at relays' mailboxes the messages of a request the node did not answer, and the
    /// first of those still waiting for it (each once per run; reading their bodies only for
    /// those not left yet).
    fn leave_letters(
        &self,
        recipient: SigningPublicKey,
        messages: &[(MessageId, OutboundSchedule, Vec<u8>)],
        waiting: Vec<MessageId>,
    ) {
        let mailboxes = self.inner.mailboxes.clone();
        let db = self.inner.db.clone();
        let mut letters: Vec<(MessageId, Vec<u8>)> =
            messages.iter().map(|(id, _, bytes)| (*id, bytes.clone())).collect();
        let waiting = mailboxes.not_left(waiting);
        tokio::spawn(async move {
            for id in waiting {
                match db.outbound_message(&id) {
                    Ok(record) => letters.extend(record.map(|record| (id, record.message))),
                    Err(err) => tracing::warn!(%err, "cannot read the outbox to leave letters"),
                }
            }
            mailboxes.leave(recipient, letters).await;
        });
    }

    /// Records what became of each message of a batch, in one commit (`fates` says when each
    /// one to retry is due).
    async fn settle(
        &self,
        peer: PeerId,
        messages: &[(MessageId, OutboundSchedule, Vec<u8>)],
        outcomes: Vec<Settle>,
        fates: &[Fate],
    ) {
        let stats = &self.inner.stats;
        let mut removed = Vec::new();
        let mut retried = Vec::new();
        let mut audits = Vec::new();
        let mut acknowledged = Vec::new();
        let mut unsent = 0;
        for (((id, entry, bytes), outcome), fate) in messages.iter().zip(outcomes).zip(fates) {
            match outcome {
                Settle::Recorded => {
                    removed.push(*id);
                    acknowledged.push(format!("{} {}", WireMessage::kind_of(bytes), &id.0.to_hex()[..16]));
                }
                Settle::Refused(reason) => {
                    removed.push(*id);
                    let object = format!("{} {id} to node {peer}", WireMessage::kind_of(bytes));
                    audits.push(AuditDraft::new(
                        Actor::Node,
                        "delivery.refused",
                        object,
                        "receiver's answer",
                        Outcome::Failed(reason),
                    ));
                }
                Settle::Retry | Settle::Later => {
                    if let Fate::RetryAt(at) = fate {
                        retried.push((*id, entry.attempts.saturating_add(1), *at));
                    }
                }
                // Its node waits, in memory; nothing to record.
                Settle::Unsent => unsent += 1,
            }
        }
        if !acknowledged.is_empty() {
            let object = format!("{} to node {peer}: {}", acknowledged.len(), acknowledged.join(", "));
            audits.push(AuditDraft::new(
                Actor::Node,
                "delivery.acknowledged",
                object,
                "the receiving node's reply",
                Outcome::Success,
            ));
        }
        stats.acknowledged.fetch_add(acknowledged.len() as u64, Ordering::Relaxed);
        stats.refused.fetch_add((removed.len() - acknowledged.len()) as u64, Ordering::Relaxed);
        stats.retried.fetch_add((retried.len() + unsent) as u64, Ordering::Relaxed);
        if removed.is_empty() && retried.is_empty() {
            return;
        }
        let settled = removed.len() as u64;
        self.inner.mailboxes.forget(&removed);
        let forget = removed.clone();
        // Bookkeeping a crash may undo: a message still queued after one is sent again, and its
        // receiver answers from its dedup. So it takes no sync of its own: its journal record
        // is synced with the next durable commit's (or checkpointed when the node stops).
        let mut change = Change::new(move |txn| {
            for id in &removed {
                txn.acknowledge_outbound(id)?;
            }
            for (id, attempts, next) in &retried {
                txn.reschedule_outbound(id, *attempts, *next)?;
            }
            Ok(())
        })
        .durable_later();
        for audit in audits {
            change = change.with_audit(audit);
        }
        match crate::node::commit(&self.inner.db, change).await {
            Ok(_) => {
                // Only now: a scan meanwhile still finds them in the outbox.
                lock(&self.inner.queue).forget(&forget);
                if settled > 0 {
                    self.inner.settled.send_modify(|count| *count += settled);
                }
            }
            Err(err) => tracing::error!(%err, "cannot record delivery outcomes"),
        }
    }
}

/// What the database gives an attempt.
#[derive(Debug, Default)]
struct Loaded {
    /// The messages that fit in one request, with their bodies.
    messages: Vec<(MessageId, OutboundSchedule, Vec<u8>)>,
    /// Those that did not fit (they go in the next request).
    unsent: Vec<MessageId>,
    /// Those no longer in the outbox.
    gone: Vec<MessageId>,
    /// The node's addresses.
    addresses: Vec<Multiaddr>,
}

/// What to do with one message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settle {
    /// The receiver recorded it: done.
    Recorded,
    /// The receiver refused it for good: done, audited as failed.
    Refused(String),
    /// Try again later (a reply that does not fit the request).
    Retry,
    /// The receiver asked for it again later: it is up, and usually waits for a message still
    /// on its way (a turn in the other request of a pair), so the retry comes soon.
    Later,
    /// No answer: the node waits, and the message keeps its place.
    Unsent,
}

/// Checks the reply against the batch: one outcome per message. (It came back on the request's
/// own stream from the Noise-authenticated node the request went to, which is what makes
/// "recorded" trustworthy: see `clawnet_protocol::wire`.)
fn check_reply(
    reply: &DeliveryReply,
    messages: &[(MessageId, OutboundSchedule, Vec<u8>)],
) -> Result<Vec<Settle>, String> {
    if reply.outcomes.len() != messages.len() {
        return Err(format!("{} outcomes for {} messages", reply.outcomes.len(), messages.len()));
    }
    Ok(messages
        .iter()
        .zip(&reply.outcomes)
        .map(|((_, _, bytes), outcome)| match outcome {
            MessageOutcome::Recorded => Settle::Recorded,
            MessageOutcome::Refused { reason, retry: false } => Settle::Refused(reason.clone()),
            MessageOutcome::Refused { reason, retry: true } => {
                tracing::debug!(kind = WireMessage::kind_of(bytes), %reason, "the receiver asks for the message again later");
                Settle::Later
            }
        })
        .collect())
}

fn addresses_of(peer: Option<PeerRecord>) -> Vec<Multiaddr> {
    peer.map(|peer| peer.addresses.iter().filter_map(|a| a.parse().ok()).collect()).unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawnet_crypto::SigningSecret;

    fn batch(n: u8) -> Vec<(MessageId, OutboundSchedule, Vec<u8>)> {
        let recipient = SigningSecret::from_bytes(&[1; 32]).public_key();
        (0..n)
            .map(|i| {
                let schedule =
                    OutboundSchedule { recipient, attempts: 0, next_attempt_at: Timestamp(0), queued_at: Timestamp(0) };
                (MessageId::of(&[i]), schedule, vec![i])
            })
            .collect()
    }

    #[test]
    fn replies_are_checked_against_the_batch() {
        let messages = batch(3);
        let outcomes = vec![MessageOutcome::Recorded, MessageOutcome::refused("no"), MessageOutcome::Recorded];

        // Recorded ones are settled; the refusal is final.
        let reply = DeliveryReply { outcomes: outcomes.clone() };
        assert_eq!(
            check_reply(&reply, &messages).unwrap(),
            vec![Settle::Recorded, Settle::Refused("no".into()), Settle::Recorded]
        );
        // The wrong number of outcomes is no answer at all.
        let reply = DeliveryReply { outcomes: outcomes[..2].to_vec() };
        assert!(check_reply(&reply, &messages).is_err());
        // Asked for again later: a retry soon, not the backoff of an unanswered attempt.
        let later = vec![MessageOutcome::try_later("the turn it follows is on its way"); 3];
        let reply = DeliveryReply { outcomes: later };
        assert_eq!(check_reply(&reply, &messages).unwrap(), vec![Settle::Later; 3]);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        use super::queue::MAX_BACKOFF;
        for first in [FIRST_BACKOFF, FIRST_LATER_RETRY] {
            assert!(backoff(first, 1) >= first && backoff(first, 1) < first * 2);
            assert!(backoff(first, 3) >= first * 4);
            assert!(backoff(first, 30) >= MAX_BACKOFF && backoff(first, 30) <= MAX_BACKOFF + MAX_BACKOFF / 4);
        }
    }
}
