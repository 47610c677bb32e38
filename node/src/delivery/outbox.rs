//! The sending side: a worker that sends due outbox messages (many in flight, batched per
//! receiving node), removes them when the receiver's signed acknowledgement arrives, and
//! reschedules them with backoff otherwise.
//!
//! At most [`MAX_REQUESTS_PER_NODE`] requests are on their way to one node at a time. A lone
//! message goes at once; under load, what is queued meanwhile leaves together in the next
//! request, so the receiver commits, and signs for, a batch at a time instead of a message at a
//! time (the group commit that makes throughput).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawnet_crypto::{SigningPublicKey, Timestamp};
use clawnet_protocol::MessageId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply, MessageOutcome, WireMessage};
use clawnet_storage::deliveries::OutboundSchedule;
use clawnet_storage::peers::PeerRecord;
use clawnet_storage::{Change, NodeDb, StoreError};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::mailbox::Mailboxes;
use crate::home::UnlockedHome;
use crate::network::{Network, peer_id_of};

/// Messages in flight at once, at most.
const MAX_IN_FLIGHT: usize = 256;
/// Delivery requests on their way to one node at once, at most: two, so one batch can travel
/// while the receiver works on the other.
const MAX_REQUESTS_PER_NODE: usize = 2;
/// Messages per delivery request, at most (the protocol allows more; smaller batches keep one
/// slow message from holding many back).
const MAX_BATCH: usize = 32;
/// First retry delay; it doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// First retry delay of a message the receiver asked for again later; it doubles likewise.
const FIRST_LATER_RETRY: Duration = Duration::from_millis(20);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the worker looks at the outbox when nothing wakes it.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Counters for diagnostics and tests.
#[derive(Debug, Default)]
pub struct OutboxStats {
    /// Delivery requests sent (a batch of messages each).
    pub requests: AtomicU64,
    /// Messages acknowledged.
    pub acknowledged: AtomicU64,
    /// Attempts that failed and were rescheduled.
    pub retried: AtomicU64,
    /// Messages the receiver refused for good.
    pub refused: AtomicU64,
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
    in_flight: Mutex<HashSet<MessageId>>,
    /// Requests on their way to each node (their replies not yet in).
    requests: Mutex<HashMap<SigningPublicKey, usize>>,
    /// Peers whose messages should be retried now (they just connected).
    retry_now: Mutex<HashSet<SigningPublicKey>>,
    stats: OutboxStats,
    /// Messages whose signed acknowledgement arrived and verified, so far.
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
                mailboxes: Arc::new(Mailboxes::new(home, network.clone())),
                network,
                wake: Notify::new(),
                in_flight: Mutex::new(HashSet::new()),
                requests: Mutex::new(HashMap::new()),
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

    /// Counts messages whose receiver's signed acknowledgement arrived and verified: the
    /// moment a delivery is complete (recording it, below, is bookkeeping).
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
        loop {
            let next = match self.send_due().await {
                Ok(next) => next,
                Err(err) => {
                    tracing::error!(%err, "cannot read the outbox");
                    Some(IDLE_TICK)
                }
            };
            let sleep = next.unwrap_or(IDLE_TICK).min(IDLE_TICK);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Starts attempts for every due message not already in flight, batched per receiving node;
    /// returns how long until the next one is due.
    async fn send_due(&self) -> Result<Option<Duration>, StoreError> {
        let now = Timestamp::now();
        let retry_now: HashSet<SigningPublicKey> = std::mem::take(&mut *lock(&self.inner.retry_now));
        let schedule = self.inner.db.read()?.outbound_schedule()?;
        let mut next_due: Option<Duration> = None;
        let mut batches: Vec<(RequestSlot, Vec<(MessageId, OutboundSchedule)>)> = Vec::new();
        {
            let mut in_flight = lock(&self.inner.in_flight);
            let mut requests = lock(&self.inner.requests);
            for (id, entry) in schedule {
                let due = entry.next_attempt_at <= now || retry_now.contains(&entry.recipient);
                if !due {
                    let wait = Duration::from_millis(entry.next_attempt_at.as_millis().saturating_sub(now.as_millis()));
                    next_due = Some(next_due.map_or(wait, |current| current.min(wait)));
                    continue;
                }
                if in_flight.len() >= MAX_IN_FLIGHT || in_flight.contains(&id) {
                    continue;
                }
                // Queue order is kept within each node's batches.
                let open = batches
                    .iter_mut()
                    .rev()
                    .find(|(request, batch)| request.recipient == entry.recipient && batch.len() < MAX_BATCH);
                match open {
                    Some((_, batch)) => batch.push((id, entry)),
                    None => {
                        let on_the_way = requests.entry(entry.recipient).or_default();
                        if *on_the_way >= MAX_REQUESTS_PER_NODE {
                            // It goes with the next batch, when a reply frees a request.
                            continue;
                        }
                        *on_the_way += 1;
                        let request = RequestSlot { outbox: self.clone(), recipient: entry.recipient };
                        batches.push((request, vec![(id, entry)]));
                    }
                }
                in_flight.insert(id);
            }
        }
        for (request, batch) in batches {
            let outbox = self.clone();
            tokio::spawn(async move {
                let ids: Vec<MessageId> = batch.iter().map(|(id, _)| *id).collect();
                outbox.attempt(request, batch).await;
                let mut in_flight = lock(&outbox.inner.in_flight);
                for id in &ids {
                    in_flight.remove(id);
                }
                drop(in_flight);
                outbox.wake();
            });
        }
        Ok(next_due)
    }

    /// One delivery attempt of a batch and its bookkeeping, in one commit.
    async fn attempt(&self, request: RequestSlot, entries: Vec<(MessageId, OutboundSchedule)>) {
        let recipient = request.recipient;
        let peer = peer_id_of(&recipient);
        let loaded = self.inner.db.read().and_then(|view| {
            let mut messages = Vec::with_capacity(entries.len());
            let mut size = 0;
            for (id, entry) in &entries {
                // Gone: acknowledged meanwhile (a retry overtook a slow attempt).
                let Some(record) = view.outbound_message(id)? else { continue };
                if !messages.is_empty() && size + record.message.len() > clawnet_protocol::limits::MAX_WIRE_MESSAGE {
                    break; // The rest goes in the next batch.
                }
                size += record.message.len();
                messages.push((*id, *entry, record.message));
            }
            Ok((messages, view.peer(&recipient)?))
        });
        let (messages, addresses) = match loaded {
            Ok((messages, peer_record)) => (messages, addresses_of(peer_record)),
            Err(err) => {
                tracing::error!(%err, "cannot read the outbox");
                return;
            }
        };
        if messages.is_empty() {
            return;
        }
        let batch = DeliveryBatch { messages: messages.iter().map(|(_, _, bytes)| bytes.clone()).collect() };
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let reply = self.inner.network.deliver(peer, addresses, batch).await;
        // The next batch for this node may leave while this one's outcome is recorded.
        drop(request);
        let outcomes = match reply {
            Ok(reply) => match check_reply(&reply, &messages, &recipient) {
                Ok(outcomes) => outcomes,
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "bad delivery reply");
                    vec![Settle::Retry; messages.len()]
                }
            },
            Err(err) => {
                tracing::debug!(%peer, %err, "delivery attempt failed");
                // Unreachable: leave the messages where the node collects when it is back.
                let mailboxes = self.inner.mailboxes.clone();
                let letters = messages.iter().map(|(id, _, bytes)| (*id, bytes.clone())).collect();
                tokio::spawn(async move { mailboxes.leave(recipient, letters).await });
                vec![Settle::Retry; messages.len()]
            }
        };
        let recorded = outcomes.iter().filter(|outcome| **outcome == Settle::Recorded).count() as u64;
        if recorded > 0 {
            self.inner.acknowledged.send_modify(|count| *count += recorded);
        }
        self.settle(peer, &messages, outcomes).await;
    }

    /// Records what became of each message of a batch, in one commit.
    async fn settle(&self, peer: PeerId, messages: &[(MessageId, OutboundSchedule, Vec<u8>)], outcomes: Vec<Settle>) {
        let stats = &self.inner.stats;
        let now = Timestamp::now();
        let mut removed = Vec::new();
        let mut retried = Vec::new();
        let mut audits = Vec::new();
        let mut acknowledged = Vec::new();
        for ((id, entry, bytes), outcome) in messages.iter().zip(outcomes) {
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
                Settle::Retry => {
                    let attempts = entry.attempts.saturating_add(1);
                    retried.push((*id, attempts, now.plus(backoff(FIRST_BACKOFF, attempts))));
                }
                Settle::Later => {
                    let attempts = entry.attempts.saturating_add(1);
                    retried.push((*id, attempts, now.plus(backoff(FIRST_LATER_RETRY, attempts))));
                }
            }
        }
        if !acknowledged.is_empty() {
            let object = format!("{} to node {peer}: {}", acknowledged.len(), acknowledged.join(", "));
            audits.push(AuditDraft::new(
                Actor::Node,
                "delivery.acknowledged",
                object,
                "signed delivery acknowledgement",
                Outcome::Success,
            ));
        }
        stats.acknowledged.fetch_add(acknowledged.len() as u64, Ordering::Relaxed);
        stats.refused.fetch_add((removed.len() - acknowledged.len()) as u64, Ordering::Relaxed);
        stats.retried.fetch_add(retried.len() as u64, Ordering::Relaxed);
        let settled = removed.len() as u64;
        self.inner.mailboxes.forget(&removed);
        // Bookkeeping a crash may undo: a message still queued after one is sent again, and its
        // receiver answers from its dedup. So it needs no fsync of its own.
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
            Ok(_) if settled > 0 => self.inner.settled.send_modify(|count| *count += settled),
            Ok(_) => {}
            Err(err) => tracing::error!(%err, "cannot record delivery outcomes"),
        }
    }
}

/// One of the requests a node may have on its way ([`MAX_REQUESTS_PER_NODE`]), taken when its
/// batch was formed and given back when the reply is in (or the attempt ends without sending).
struct RequestSlot {
    outbox: Outbox,
    recipient: SigningPublicKey,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let mut requests = lock(&self.outbox.inner.requests);
        if let Some(on_the_way) = requests.get_mut(&self.recipient) {
            *on_the_way = on_the_way.saturating_sub(1);
            if *on_the_way == 0 {
                requests.remove(&self.recipient);
            }
        }
        drop(requests);
        self.outbox.wake();
    }
}

/// What to do with one message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settle {
    /// The receiver recorded it (and signed for it): done.
    Recorded,
    /// The receiver refused it for good: done, audited as failed.
    Refused(String),
    /// Try again later (no answer, or no proof).
    Retry,
    /// The receiver asked for it again later: it is up, and usually waits for a message still
    /// on its way (a turn in the other request of a pair), so the retry comes soon.
    Later,
}

/// Checks the reply against the batch: one outcome per message, and every message reported
/// recorded listed in an acknowledgement signed by the receiving node.
fn check_reply(
    reply: &DeliveryReply,
    messages: &[(MessageId, OutboundSchedule, Vec<u8>)],
    recipient: &SigningPublicKey,
) -> Result<Vec<Settle>, String> {
    if reply.outcomes.len() != messages.len() {
        return Err(format!("{} outcomes for {} messages", reply.outcomes.len(), messages.len()));
    }
    let acknowledged = match &reply.ack {
        Some(ack) => ack.verify_signed_by(recipient).map_err(|err| err.to_string())?.into_value().messages,
        None => Vec::new(),
    };
    Ok(messages
        .iter()
        .zip(&reply.outcomes)
        // The outbox keys a message by recipient; the receiver acknowledges it by its own id.
        .map(|((_, _, bytes), outcome)| match outcome {
            MessageOutcome::Recorded if acknowledged.contains(&MessageId::of(bytes)) => Settle::Recorded,
            // Claimed recorded without a signature for it: not proof, send it again.
            MessageOutcome::Recorded => Settle::Retry,
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

/// The delay before attempt `attempts + 1`: doubling from `first`, capped, with up to 25%
/// jitter so many senders do not retry in lockstep.
fn backoff(first: Duration, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    let base = first.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    let jitter = u64::from(clawnet_crypto::rng::random_bytes::<2>()[0]) * base.as_millis() as u64 / 1024;
    base + Duration::from_millis(jitter)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawnet_crypto::{Signed, SigningSecret};
    use clawnet_protocol::wire::DeliveryAck;

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

    fn ack(by: &SigningSecret, messages: Vec<MessageId>) -> Option<Signed<DeliveryAck>> {
        Some(Signed::sign(&DeliveryAck { messages, device: by.public_key(), received_at: Timestamp(0) }, by))
    }

    #[test]
    fn replies_are_checked_against_the_batch_and_the_signed_ack() {
        let receiver = SigningSecret::from_bytes(&[1; 32]);
        let messages = batch(3);
        let ids: Vec<MessageId> = messages.iter().map(|(id, _, _)| *id).collect();
        let recipient = receiver.public_key();
        let outcomes = vec![MessageOutcome::Recorded, MessageOutcome::refused("no"), MessageOutcome::Recorded];

        // Both recorded ones are signed for: settled; the refusal is final.
        let reply = DeliveryReply { outcomes: outcomes.clone(), ack: ack(&receiver, vec![ids[0], ids[2]]) };
        assert_eq!(
            check_reply(&reply, &messages, &recipient).unwrap(),
            vec![Settle::Recorded, Settle::Refused("no".into()), Settle::Recorded]
        );
        // "Recorded" without a signature for it is sent again.
        let reply = DeliveryReply { outcomes: outcomes.clone(), ack: ack(&receiver, vec![ids[0]]) };
        assert_eq!(check_reply(&reply, &messages, &recipient).unwrap()[2], Settle::Retry);
        // An ack signed by another node, or the wrong number of outcomes, is no answer at all.
        let impostor = SigningSecret::from_bytes(&[2; 32]);
        let reply = DeliveryReply { outcomes: outcomes.clone(), ack: ack(&impostor, ids.clone()) };
        assert!(check_reply(&reply, &messages, &recipient).is_err());
        let reply = DeliveryReply { outcomes: outcomes[..2].to_vec(), ack: ack(&receiver, ids) };
        assert!(check_reply(&reply, &messages, &recipient).is_err());
        // Asked for again later: a retry soon, not the backoff of an unanswered attempt.
        let later = vec![MessageOutcome::try_later("the turn it follows is on its way"); 3];
        let reply = DeliveryReply { outcomes: later, ack: None };
        assert_eq!(check_reply(&reply, &messages, &recipient).unwrap(), vec![Settle::Later; 3]);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        for first in [FIRST_BACKOFF, FIRST_LATER_RETRY] {
            assert!(backoff(first, 1) >= first && backoff(first, 1) < first * 2);
            assert!(backoff(first, 3) >= first * 4);
            assert!(backoff(first, 30) >= MAX_BACKOFF && backoff(first, 30) <= MAX_BACKOFF + MAX_BACKOFF / 4);
        }
    }
}
