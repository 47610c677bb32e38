//! The outbox as its sending worker sees it: every queued message in memory, per receiving node
//! and in queue order, with when it may go next. The worker reads the outbox table once, when it
//! starts; after that it learns of new messages from the commits that queue them
//! ([`clawnet_storage::deliveries::QueuedFeed`]). So finding what to send costs what is sent,
//! not what is waiting, and draining a backlog is linear in its size.
//!
//! The rules it enforces:
//! - a node's messages leave in the order they were queued, and a retried message keeps its
//!   place (a session's turns arrive in order unless a receiver asks for one again later);
//! - a node that answered its last request may have [`MAX_REQUESTS_PER_NODE`] requests on
//!   their way; any other node (not tried yet in this run, or whose last attempt failed) gets a
//!   single request, a *probe*, and at most [`MAX_PROBES`] probes are out at once, so nodes that
//!   do not answer cannot take the capacity that answering ones need;
//! - after a failed attempt the *node* waits, with a backoff doubling from [`FIRST_BACKOFF`],
//!   not each of its messages: one dial per round however many messages wait, and they all go
//!   again, in order, once it answers a probe or connects to us.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use clawnet_crypto::{SigningPublicKey, Timestamp};
use clawnet_protocol::MessageId;
use clawnet_storage::deliveries::OutboundSchedule;

/// Delivery requests on their way to one answering node at once, at most: two, so one batch can
/// travel while the receiver works on the other.
pub(super) const MAX_REQUESTS_PER_NODE: usize = 2;
/// Probes (requests to nodes that have not answered their last attempt) out at once, at most.
pub(super) const MAX_PROBES: usize = 16;
/// Messages on their way to answering nodes at once, at most.
pub(super) const MAX_IN_FLIGHT: usize = 256;
/// Messages per delivery request, at most (the protocol allows more; smaller batches keep one
/// slow message from holding many back).
pub(super) const MAX_BATCH: usize = 32;
/// First wait after a failed attempt; it doubles per failure in a row up to [`MAX_BACKOFF`].
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A message body at most this long is kept in memory from its commit until its first attempt.
const KEEP_BODY_UP_TO: usize = 64 * 1024;
/// Message bodies kept in memory at once, at most (bytes); the others are read back when sent.
const KEEP_BODIES_UP_TO: usize = 16 * 1024 * 1024;

/// One request's worth of messages for one node, taken from the queue.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) recipient: SigningPublicKey,
    /// Whether this is a probe (the node has not answered its last attempt).
    pub(super) probe: bool,
    pub(super) messages: Vec<Outgoing>,
}

/// A message leaving in a batch.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) id: MessageId,
    pub(super) schedule: OutboundSchedule,
    /// Its body if it was kept since it was queued; otherwise the worker reads it.
    pub(super) body: Option<Vec<u8>>,
}

/// What became of a message of a finished batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// It leaves the outbox (acknowledged or refused for good) once that is recorded:
    /// [`SendQueue::forget`] follows.
    Done,
    /// Try it again at this time (the receiver answered, but not with a receipt for it).
    RetryAt(Timestamp),
    /// It was not delivered and keeps its place: the node did not answer, or it did not fit in
    /// the request.
    Unsent,
}

#[derive(Debug)]
struct Queued {
    recipient: SigningPublicKey,
    /// Its place in its node's queue.
    order: u64,
    schedule: OutboundSchedule,
    body: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct NodeQueue {
    /// Due messages not on their way, by place.
    ready: BTreeSet<(u64, MessageId)>,
    /// Messages not due yet, by due time.
    waiting: BTreeSet<(Timestamp, MessageId)>,
    /// Requests on their way.
    requests: usize,
    /// Whether the node answered its last request.
    answered: bool,
    /// Attempts in a row it did not answer.
    failures: u32,
    /// No request before this (after a failed attempt).
    paused_until: Option<Timestamp>,
}

/// Every message of the outbox that is not settled, as the worker tracks it.
#[derive(Debug, Default)]
pub(super) struct SendQueue {
    messages: HashMap<MessageId, Queued>,
    nodes: HashMap<SigningPublicKey, NodeQueue>,
    next_order: u64,
    /// Messages on their way to answering nodes.
    in_flight: usize,
    /// Probes on their way.
    probes: usize,
    /// Bytes of bodies kept.
    kept: usize,
}

impl SendQueue {
    /// Adds a queued message unless it is known already (a scan and the feed may both report
    /// it). Messages added later go after those added earlier, to the same node.
    pub(super) fn insert(&mut self, id: MessageId, schedule: OutboundSchedule, body: Option<Vec<u8>>, now: Timestamp) {
        if self.messages.contains_key(&id) {
            return;
        }
        let body = body.filter(|body| body.len() <= KEEP_BODY_UP_TO && self.kept + body.len() <= KEEP_BODIES_UP_TO);
        self.kept += body.as_ref().map_or(0, Vec::len);
        let order = self.next_order;
        self.next_order += 1;
        let node = self.nodes.entry(schedule.recipient).or_default();
        if schedule.next_attempt_at <= now {
            node.ready.insert((order, id));
        } else {
            node.waiting.insert((schedule.next_attempt_at, id));
        }
        self.messages.insert(id, Queued { recipient: schedule.recipient, order, schedule, body });
    }

    /// Takes the batches that may leave now, and returns how long until something else may.
    /// Nodes in `connected` just connected to us: their messages go now, whatever their waits.
    pub(super) fn take_batches(
        &mut self,
        now: Timestamp,
        connected: &HashSet<SigningPublicKey>,
    ) -> (Vec<Batch>, Option<Duration>) {
        let mut batches = Vec::new();
        let mut next: Option<Timestamp> = None;
        for (recipient, node) in &mut self.nodes {
            let reconnected = connected.contains(recipient);
            if reconnected {
                node.paused_until = None;
                node.failures = 0;
            }
            while let Some(&(due, id)) = node.waiting.first() {
                if due > now && !reconnected {
                    break;
                }
                node.waiting.pop_first();
                if let Some(queued) = self.messages.get(&id) {
                    node.ready.insert((queued.order, id));
                }
            }
            if let Some(&(due, _)) = node.waiting.first() {
                next = Some(next.map_or(due, |next| next.min(due)));
            }
            if let Some(until) = node.paused_until {
                if until > now {
                    if !node.ready.is_empty() {
                        next = Some(next.map_or(until, |next| next.min(until)));
                    }
                    continue;
                }
                node.paused_until = None;
            }
            loop {
                let probe = !node.answered;
                let (allowed, room) = if probe {
                    (1, if self.probes < MAX_PROBES { MAX_BATCH } else { 0 })
                } else {
                    (MAX_REQUESTS_PER_NODE, MAX_BATCH.min(MAX_IN_FLIGHT - self.in_flight))
                };
                if node.requests >= allowed || room == 0 || node.ready.is_empty() {
                    break;
                }
                let mut messages = Vec::with_capacity(room.min(node.ready.len()));
                while messages.len() < room {
                    let Some((_, id)) = node.ready.pop_first() else { break };
                    let Some(queued) = self.messages.get_mut(&id) else { continue };
                    let body = queued.body.take();
                    self.kept -= body.as_ref().map_or(0, Vec::len);
                    messages.push(Outgoing { id, schedule: queued.schedule, body });
                }
                node.requests += 1;
                if probe {
                    self.probes += 1;
                } else {
                    self.in_flight += messages.len();
                }
                batches.push(Batch { recipient: *recipient, probe, messages });
            }
        }
        let wait = next.map(|due| Duration::from_millis(due.as_millis().saturating_sub(now.as_millis())));
        (batches, wait)
    }

    /// Records the end of a batch's request: whether its node answered (`None`: nothing was
    /// sent), and what became of each message. A node that did not answer waits before its next
    /// request.
    pub(super) fn finished(
        &mut self,
        batch: &Batch,
        answered: Option<bool>,
        fates: &[(MessageId, Fate)],
        now: Timestamp,
    ) {
        if let Some(node) = self.nodes.get_mut(&batch.recipient) {
            node.requests = node.requests.saturating_sub(1);
            if answered == Some(true) {
                node.answered = true;
                node.failures = 0;
                node.paused_until = None;
            } else if answered == Some(false) {
                node.answered = false;
                node.failures = node.failures.saturating_add(1);
                node.paused_until = Some(now.plus(backoff(FIRST_BACKOFF, node.failures)));
            }
        }
        if batch.probe {
            self.probes = self.probes.saturating_sub(1);
        } else {
            self.in_flight = self.in_flight.saturating_sub(batch.messages.len());
        }
        for (id, fate) in fates {
            let Some(queued) = self.messages.get_mut(id) else { continue };
            match fate {
                Fate::Done => {}
                Fate::RetryAt(at) => {
                    queued.schedule.attempts = queued.schedule.attempts.saturating_add(1);
                    queued.schedule.next_attempt_at = *at;
                    if let Some(node) = self.nodes.get_mut(&queued.recipient) {
                        node.waiting.insert((*at, *id));
                    }
                }
                Fate::Unsent => {
                    if let Some(node) = self.nodes.get_mut(&queued.recipient) {
                        node.ready.insert((queued.order, *id));
                    }
                }
            }
        }
    }

    /// Forgets messages that left the outbox for good (their removal is recorded).
    pub(super) fn forget(&mut self, ids: &[MessageId]) {
        for id in ids {
            if let Some(queued) = self.messages.remove(id) {
                self.kept -= queued.body.as_ref().map_or(0, Vec::len);
            }
        }
    }

    /// Up to `limit` of the messages waiting for `recipient` (not on their way), in queue order.
    pub(super) fn waiting_for(&self, recipient: &SigningPublicKey, limit: usize) -> Vec<MessageId> {
        let Some(node) = self.nodes.get(recipient) else { return Vec::new() };
        let mut ids: Vec<(u64, MessageId)> = node.ready.iter().take(limit).copied().collect();
        ids.extend(node.waiting.iter().filter_map(|(_, id)| self.messages.get(id).map(|queued| (queued.order, *id))));
        ids.sort_unstable();
        ids.into_iter().take(limit).map(|(_, id)| id).collect()
    }
}

/// The delay before attempt `attempts + 1`: doubling from `first`, capped, with up to 25%
/// jitter so many senders do not retry in lockstep.
pub(super) fn backoff(first: Duration, attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    let base = first.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    let jitter = u64::from(clawnet_crypto::rng::random_bytes::<2>()[0]) * base.as_millis() as u64 / 1024;
    base + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawnet_crypto::SigningSecret;

    const T0: Timestamp = Timestamp(1_000_000);

    fn node(n: u8) -> SigningPublicKey {
        SigningSecret::from_bytes(&[n; 32]).public_key()
    }

    /// Queues `count` messages for `recipient`, due at `T0`; returns their ids in queue order.
    fn queue_for(queue: &mut SendQueue, recipient: SigningPublicKey, count: usize) -> Vec<MessageId> {
        (0..count)
            .map(|_| {
                let id = MessageId(clawnet_crypto::Hash32(clawnet_crypto::rng::random_bytes()));
                let schedule = OutboundSchedule { recipient, attempts: 0, next_attempt_at: T0, queued_at: T0 };
                queue.insert(id, schedule, Some(vec![1; 100]), T0);
                id
            })
            .collect()
    }

    fn ids(batch: &Batch) -> Vec<MessageId> {
        batch.messages.iter().map(|m| m.id).collect()
    }

    fn all(batch: &Batch, fate: Fate) -> Vec<(MessageId, Fate)> {
        batch.messages.iter().map(|m| (m.id, fate)).collect()
    }

    fn later(t: Timestamp, ms: u64) -> Timestamp {
        t.plus(Duration::from_millis(ms))
    }

    #[test]
    fn a_node_that_does_not_answer_waits_as_a_whole_and_is_probed_with_its_oldest_messages() {
        let mut queue = SendQueue::default();
        let a = node(1);
        let queued = queue_for(&mut queue, a, 100);

        // Not answered yet in this run: one request, the probe, with the oldest messages.
        let (mut batches, _) = queue.take_batches(T0, &HashSet::new());
        assert_eq!(batches.len(), 1);
        let probe = batches.remove(0);
        assert!(probe.probe);
        assert_eq!(ids(&probe), queued[..MAX_BATCH]);
        assert!(probe.messages.iter().all(|m| m.body.is_some()), "fresh bodies are kept");

        // No answer: nothing more goes to that node until its wait is over, however many wait.
        queue.finished(&probe, Some(false), &all(&probe, Fate::Unsent), T0);
        let (batches, wait) = queue.take_batches(T0, &HashSet::new());
        assert!(batches.is_empty());
        let wait = wait.expect("the node's wait is the next thing to happen");
        assert!(wait >= FIRST_BACKOFF && wait <= FIRST_BACKOFF * 5 / 4, "{wait:?}");
        assert!(queue.take_batches(later(T0, 400), &HashSet::new()).0.is_empty());

        // Then the same oldest messages again, in the same order (read back: bodies were sent).
        let (mut batches, _) = queue.take_batches(later(T0, 700), &HashSet::new());
        assert_eq!(batches.len(), 1);
        let second = batches.remove(0);
        assert_eq!(ids(&second), queued[..MAX_BATCH]);
        assert!(second.messages.iter().all(|m| m.body.is_none()));

        // A second failure in a row doubles the wait; connecting to us ends it at once.
        queue.finished(&second, Some(false), &all(&second, Fate::Unsent), later(T0, 700));
        let (_, wait) = queue.take_batches(later(T0, 700), &HashSet::new());
        assert!(wait.expect("waiting") >= FIRST_BACKOFF * 2);
        let (batches, _) = queue.take_batches(later(T0, 701), &HashSet::from([a]));
        assert_eq!(batches.len(), 1);
        assert_eq!(ids(&batches[0]), queued[..MAX_BATCH]);
        // The messages it will be asked for next, for the mailbox: those not on their way.
        assert_eq!(queue.waiting_for(&a, 3), queued[MAX_BATCH..MAX_BATCH + 3]);
    }

    #[test]
    fn an_answering_node_gets_two_requests_and_a_retry_keeps_its_place() {
        let mut queue = SendQueue::default();
        let a = node(1);
        let first = queue_for(&mut queue, a, 3);
        let (batches, _) = queue.take_batches(T0, &HashSet::new());
        let probe = &batches[0];
        // The first is recorded; the receiver asks for the other two again a little later.
        let retry_at = later(T0, 20);
        let fates =
            vec![(first[0], Fate::Done), (first[1], Fate::RetryAt(retry_at)), (first[2], Fate::RetryAt(retry_at))];
        queue.finished(probe, Some(true), &fates, T0);
        queue.forget(&first[..1]);
        let next = queue_for(&mut queue, a, 2 * MAX_BATCH);

        // Before the retry is due, newer messages leave, two requests at once now that it answers.
        let (batches, wait) = queue.take_batches(T0, &HashSet::new());
        assert_eq!(batches.len(), MAX_REQUESTS_PER_NODE);
        assert!(batches.iter().all(|batch| !batch.probe));
        assert_eq!([ids(&batches[0]), ids(&batches[1])].concat(), next);
        assert_eq!(wait, Some(Duration::from_millis(20)));
        for batch in &batches {
            queue.finished(batch, Some(true), &all(batch, Fate::Unsent), T0);
        }
        // Once due, the retried ones go first again: their place is kept.
        let (batches, _) = queue.take_batches(retry_at, &HashSet::new());
        assert_eq!(ids(&batches[0])[..3], [first[1], first[2], next[0]]);
        assert_eq!(batches[0].messages[0].schedule.attempts, 1);
    }

    #[test]
    fn nodes_that_do_not_answer_cannot_take_the_capacity_of_those_that_do() {
        let mut queue = SendQueue::default();
        let answering = node(1);
        queue_for(&mut queue, answering, 1);
        let (batches, _) = queue.take_batches(T0, &HashSet::new());
        queue.finished(&batches[0], Some(true), &all(&batches[0], Fate::Done), T0);

        for n in 2..40 {
            queue_for(&mut queue, node(n), 2 * MAX_BATCH);
        }
        let wanted = queue_for(&mut queue, answering, 1);
        let (batches, _) = queue.take_batches(T0, &HashSet::new());
        assert_eq!(batches.iter().filter(|batch| batch.probe).count(), MAX_PROBES);
        assert!(batches.iter().filter(|batch| batch.probe).all(|batch| batch.messages.len() == MAX_BATCH));
        let answered: Vec<&Batch> = batches.iter().filter(|batch| !batch.probe).collect();
        assert_eq!(answered.len(), 1);
        assert_eq!(ids(answered[0]), wanted);
    }

    #[test]
    fn a_message_is_queued_once_and_due_later_waits() {
        let mut queue = SendQueue::default();
        let a = node(1);
        let id = queue_for(&mut queue, a, 1)[0];
        let schedule = OutboundSchedule { recipient: a, attempts: 0, next_attempt_at: T0, queued_at: T0 };
        queue.insert(id, schedule, None, T0); // reported by both a scan and the feed
        let retry = MessageId(clawnet_crypto::Hash32([9; 32]));
        let due_later = OutboundSchedule { next_attempt_at: later(T0, 50), attempts: 2, ..schedule };
        queue.insert(retry, due_later, None, T0);
        let (batches, wait) = queue.take_batches(T0, &HashSet::new());
        assert_eq!(ids(&batches[0]), [id]);
        assert_eq!(wait, Some(Duration::from_millis(50)));
    }
}
