//! The sending side: a worker that sends due outbox messages (many in flight), removes them when
//! the receiver's signed acknowledgement arrives, and reschedules them with backoff otherwise.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawnet_crypto::{Signed, SigningPublicKey, Timestamp};
use clawnet_protocol::MessageId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::wire::{DeliveryAck, DeliveryReply, WireMessage};
use clawnet_storage::mailbox::OutboundSchedule;
use clawnet_storage::peers::PeerRecord;
use clawnet_storage::{Change, NodeDb, StoreError};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::network::{Network, peer_id_of};

/// Deliveries in flight at once, at most.
const MAX_IN_FLIGHT: usize = 256;
/// First retry delay; it doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the worker looks at the outbox when nothing wakes it.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Counters for diagnostics and tests.
#[derive(Debug, Default)]
pub struct OutboxStats {
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
    wake: Notify,
    in_flight: Mutex<HashSet<MessageId>>,
    /// Peers whose messages should be retried now (they just connected).
    retry_now: Mutex<HashSet<SigningPublicKey>>,
    stats: OutboxStats,
    /// Messages whose acknowledgement is durably recorded, so far.
    settled: watch::Sender<u64>,
}

impl Outbox {
    /// A worker sending through `network` from `db`'s outbox.
    pub fn new(db: NodeDb, network: Network) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                db,
                network,
                wake: Notify::new(),
                in_flight: Mutex::new(HashSet::new()),
                retry_now: Mutex::new(HashSet::new()),
                stats: OutboxStats::default(),
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

    /// The worker's counters.
    pub fn stats(&self) -> &OutboxStats {
        &self.inner.stats
    }

    /// Counts messages that left the outbox for good (acknowledged or refused), durably; for
    /// callers that wait for deliveries to complete.
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

    /// Starts an attempt for every due message not already in flight; returns how long until
    /// the next one is due.
    async fn send_due(&self) -> Result<Option<Duration>, StoreError> {
        let now = Timestamp::now();
        let retry_now: HashSet<SigningPublicKey> = std::mem::take(&mut *lock(&self.inner.retry_now));
        let schedule = self.inner.db.read()?.outbound_schedule()?;
        let mut next_due: Option<Duration> = None;
        for (id, record) in schedule {
            let due = record.next_attempt_at <= now || retry_now.contains(&record.recipient);
            if !due {
                let wait = Duration::from_millis(record.next_attempt_at.as_millis().saturating_sub(now.as_millis()));
                next_due = Some(next_due.map_or(wait, |current| current.min(wait)));
                continue;
            }
            {
                let mut in_flight = lock(&self.inner.in_flight);
                if in_flight.len() >= MAX_IN_FLIGHT || !in_flight.insert(id) {
                    continue;
                }
            }
            let outbox = self.clone();
            tokio::spawn(async move {
                outbox.attempt(id, record).await;
                lock(&outbox.inner.in_flight).remove(&id);
                outbox.wake();
            });
        }
        Ok(next_due)
    }

    /// One delivery attempt and its bookkeeping.
    async fn attempt(&self, id: MessageId, record: OutboundSchedule) {
        let peer = peer_id_of(&record.recipient);
        let (message, addresses) = match self.inner.db.read().and_then(|view| {
            let message = view.outbound_message(&id)?;
            let addresses = view.peer(&record.recipient)?;
            Ok((message, addresses))
        }) {
            Ok((Some(message), addresses)) => (message.message, addresses_of(addresses)),
            // Acknowledged meanwhile (a retry overtook a slow attempt).
            Ok((None, _)) => return,
            Err(err) => {
                tracing::error!(%err, "cannot read the outbox");
                return;
            }
        };
        let kind = WireMessage::kind_of(&message);
        let outcome = self.inner.network.deliver(peer, addresses, message).await;
        let object = format!("{kind} {id} to node {peer}");
        let stats = &self.inner.stats;
        // Either the message leaves the outbox (with an audit entry) or it is tried again later.
        let done = match outcome {
            Ok(DeliveryReply::Ack(ack)) => match check_ack(&ack, &id, &record.recipient) {
                Ok(()) => {
                    stats.acknowledged.fetch_add(1, Ordering::Relaxed);
                    Some(AuditDraft::new(
                        Actor::Node,
                        "delivery.acknowledged",
                        object,
                        "signed delivery acknowledgement",
                        Outcome::Success,
                    ))
                }
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "bad delivery acknowledgement");
                    None
                }
            },
            Ok(DeliveryReply::Refused { reason, retry: false }) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                Some(AuditDraft::new(
                    Actor::Node,
                    "delivery.refused",
                    object,
                    "receiver's answer",
                    Outcome::Failed(reason),
                ))
            }
            Ok(DeliveryReply::Refused { reason, retry: true }) => {
                tracing::debug!(%peer, %reason, "delivery deferred by the receiver");
                None
            }
            Err(err) => {
                tracing::debug!(%peer, %err, "delivery attempt failed");
                None
            }
        };
        let settles = done.is_some();
        let change = match done {
            Some(audit) => Change::new(move |txn| txn.acknowledge_outbound(&id).map(drop)).with_audit(audit),
            None => {
                stats.retried.fetch_add(1, Ordering::Relaxed);
                let attempts = record.attempts.saturating_add(1);
                let next = Timestamp::now().plus(backoff(attempts));
                Change::new(move |txn| txn.reschedule_outbound(&id, attempts, next))
            }
        };
        let committed = crate::node::commit(&self.inner.db, change).await.map(drop);
        match committed {
            Ok(()) if settles => {
                self.inner.settled.send_modify(|count| *count += 1);
            }
            Ok(()) => {}
            Err(err) => tracing::error!(%err, "cannot record a delivery outcome"),
        }
    }
}

fn addresses_of(peer: Option<PeerRecord>) -> Vec<Multiaddr> {
    peer.map(|peer| peer.addresses.iter().filter_map(|a| a.parse().ok()).collect()).unwrap_or_default()
}

/// The delay before attempt `attempts + 1`: doubling from [`FIRST_BACKOFF`], capped, with up
/// to 25% jitter so many senders do not retry in lockstep.
fn backoff(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    let base = FIRST_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    let jitter = u64::from(clawnet_crypto::rng::random_bytes::<2>()[0]) * base.as_millis() as u64 / 1024;
    base + Duration::from_millis(jitter)
}

fn check_ack(ack: &Signed<DeliveryAck>, id: &MessageId, recipient: &SigningPublicKey) -> Result<(), String> {
    let ack = ack.verify_signed_by(recipient).map_err(|err| err.to_string())?;
    if &ack.message != id {
        return Err("acknowledges another message".into());
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert!(backoff(1) >= FIRST_BACKOFF && backoff(1) < FIRST_BACKOFF * 2);
        assert!(backoff(3) >= FIRST_BACKOFF * 4);
        assert!(backoff(30) >= MAX_BACKOFF && backoff(30) <= MAX_BACKOFF + MAX_BACKOFF / 4);
    }
}
