//! Relays' mailboxes, for a contact's node that is offline when we send and comes back while
//! we are offline (DESIGN.md, "bootstrap relay"; the wire in `clawnet_protocol::mailbox`).
//!
//! **Leaving.** When a direct attempt cannot reach a contact's node, each message of the batch,
//! and the next ones waiting for that node (64 more per failed attempt), is left once (per run
//! of this node) as a sealed, signed letter at a relay where that node collects: the relays its
//! circuit addresses name, then our own bootstrap relays. The message stays in the outbox and
//! is still retried directly: only the receiver's own reply removes it, and a receiver that
//! already took the letter answers the retry "recorded" without applying it again.
//!
//! **Collecting.** On connecting to one of its bootstrap relays, and every
//! [`COLLECT_EVERY`] while connected, a node fetches its box, opens each letter, verifies who
//! signed it and that it is addressed here, and hands the message to its inbox exactly as if the
//! signer's node had delivered it. A letter is deleted from the box once the inbox recorded or
//! refused it for good; one the inbox wants again later stays. An item that does not open, or
//! whose letter is forged or addressed elsewhere, is a `security.mailbox` event and is deleted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawnet_crypto::SigningPublicKey;
use clawnet_protocol::MessageId;
use clawnet_protocol::audit::{Actor, AuditDraft};
use clawnet_protocol::mailbox::letter::{open_letter, seal_letter};
use clawnet_protocol::mailbox::{ItemId, MailboxRequest, MailboxResponse};
use clawnet_protocol::wire::{DeliveryBatch, MessageOutcome};
use clawnet_storage::Change;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::inbox::{Handler, Inbox};
use crate::home::UnlockedHome;
use crate::network::{Network, NetworkError, peer_id_of};

/// How often a node reads its boxes while connected to its relays.
pub const COLLECT_EVERY: Duration = Duration::from_secs(60);
/// How long a relay is asked to keep a letter (relays may keep it for less).
const LETTER_TTL_SECS: u32 = 7 * 24 * 3600;
/// Items fetched per request.
const FETCH_ITEMS: u16 = 64;
/// Fetches per collection, at most, so a relay that keeps producing items cannot keep the node
/// busy (the rest waits for the next collection).
const MAX_FETCHES: usize = 16;

/// Counters for diagnostics and tests.
#[derive(Debug, Default)]
pub struct MailboxStats {
    /// Letters a relay accepted from this node.
    pub left: AtomicU64,
    /// Letters this node collected and its inbox recorded.
    pub collected: AtomicU64,
    /// Items this node collected and refused for good (unreadable, forged, misaddressed, or
    /// refused by the inbox).
    pub refused: AtomicU64,
}

/// What one collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Letters recorded by the inbox (or recorded before).
    pub recorded: usize,
    /// Items refused for good and deleted.
    pub refused: usize,
    /// Letters the inbox wants again later; they stay in the box.
    pub kept: usize,
}

/// Leaves letters at relays and collects this node's own.
#[derive(Debug)]
pub struct Mailboxes {
    home: Arc<UnlockedHome>,
    network: Network,
    /// Messages already left (or being left) by this run; after a restart one may be left
    /// again, which the receiver deduplicates like any repeated delivery.
    left: Mutex<HashSet<MessageId>>,
    /// Held while a box is read: one collection at a time, so a letter is handed to the inbox
    /// once, and a caller asking for a collection gets one that starts after its request.
    collecting: tokio::sync::Mutex<()>,
    stats: MailboxStats,
}

impl Mailboxes {
    /// Mailboxes reached through `network`, for the node of `home`.
    pub fn new(home: Arc<UnlockedHome>, network: Network) -> Mailboxes {
        Mailboxes {
            home,
            network,
            left: Mutex::new(HashSet::new()),
            collecting: tokio::sync::Mutex::new(()),
            stats: MailboxStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &MailboxStats {
        &self.stats
    }

    /// Leaves each of `messages` (outbox id, encoded wire message) not left yet at a relay
    /// where the node with device key `recipient` collects. Best effort: a message no relay
    /// takes is simply not left (the outbox keeps retrying it directly).
    pub(crate) async fn leave(&self, recipient: SigningPublicKey, messages: Vec<(MessageId, Vec<u8>)>) {
        // Claimed up front, so a call running meanwhile (the next failed attempt) skips them;
        // given back if no relay takes them.
        let messages: Vec<(MessageId, Vec<u8>)> = {
            let mut left = lock(&self.left);
            messages.into_iter().filter(|(id, _)| left.insert(*id)).collect()
        };
        if messages.is_empty() {
            return;
        }
        let give_back = |ids: &mut dyn Iterator<Item = MessageId>| {
            let mut left = lock(&self.left);
            for id in ids {
                left.remove(&id);
            }
        };
        let (owner_key, relays) = match self.home.db().read().and_then(|view| {
            let contact = view.contact_by_device(&recipient)?;
            Ok((contact.and_then(|c| c.contact_key), view.peer(&recipient)?))
        }) {
            // Only a contact's owner key is known to seal to.
            Ok((Some(owner_key), peer)) => {
                (owner_key, self.relays_of(peer.map(|p| p.addresses).unwrap_or_default()).await)
            }
            Ok((None, _)) => return give_back(&mut messages.into_iter().map(|(id, _)| id)),
            Err(err) => {
                tracing::warn!(%err, "cannot read the contact to leave letters for");
                return give_back(&mut messages.into_iter().map(|(id, _)| id));
            }
        };
        for (id, message) in messages {
            let sealed = {
                let keys = self.home.keys();
                seal_letter(&keys.device, recipient, &owner_key, message)
            };
            let item = match sealed {
                Ok(item) => item,
                Err(err) => {
                    tracing::warn!(%err, "cannot seal a letter");
                    give_back(&mut std::iter::once(id));
                    continue;
                }
            };
            let mut taken = false;
            for (relay, addresses) in &relays {
                let request = MailboxRequest::Deposit { recipient, item: item.clone(), ttl_secs: LETTER_TTL_SECS };
                match self.network.ask_mailbox(*relay, addresses.clone(), request).await {
                    Ok(MailboxResponse::Deposited { .. }) => {
                        self.stats.left.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%relay, "left a letter for an unreachable node");
                        taken = true;
                        break;
                    }
                    Ok(answer) => tracing::debug!(%relay, ?answer, "the relay did not take the letter"),
                    Err(err) => tracing::debug!(%relay, %err, "cannot reach the relay's mailbox"),
                }
            }
            if !taken {
                give_back(&mut std::iter::once(id));
            }
        }
    }

    /// Those of `ids` not left yet by this run.
    pub(crate) fn not_left(&self, ids: Vec<MessageId>) -> Vec<MessageId> {
        let left = lock(&self.left);
        ids.into_iter().filter(|id| !left.contains(id)).collect()
    }

    /// Forgets that these messages were left (they left the outbox for good).
    pub(crate) fn forget(&self, ids: &[MessageId]) {
        let mut left = lock(&self.left);
        for id in ids {
            left.remove(id);
        }
    }

    /// Relays where a node with these addresses collects, with the address of each: those its
    /// circuit addresses name, then our own bootstrap relays that we are connected to (dialing
    /// one of those ourselves could disturb the relay client's reservation).
    async fn relays_of(&self, addresses: Vec<String>) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut relays: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for address in addresses.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
            if let Some((relay, relay_address)) = circuit_relay(&address)
                && !relays.iter().any(|(known, _)| *known == relay)
            {
                relays.push((relay, vec![relay_address]));
            }
        }
        let connected = self.network.connected_peers().await.unwrap_or_default();
        for relay in self.network.relays() {
            if connected.contains(relay) && !relays.iter().any(|(known, _)| known == relay) {
                relays.push((*relay, Vec::new()));
            }
        }
        relays
    }

    /// Reads this node's box at every bootstrap relay it is connected to.
    pub async fn collect_all<H: Handler>(&self, inbox: &Inbox<H>) -> Collected {
        let connected = self.network.connected_peers().await.unwrap_or_default();
        let mut total = Collected::default();
        for relay in self.network.relays().iter().filter(|relay| connected.contains(relay)) {
            match self.collect(*relay, inbox).await {
                Ok(collected) => {
                    total.recorded += collected.recorded;
                    total.refused += collected.refused;
                    total.kept += collected.kept;
                }
                Err(err) => tracing::debug!(%relay, %err, "cannot read the mailbox"),
            }
        }
        total
    }

    /// Reads this node's box at `relay` and hands what it holds to `inbox`, oldest first; see
    /// the module documentation. A relay without a mailbox holds nothing.
    pub async fn collect<H: Handler>(&self, relay: PeerId, inbox: &Inbox<H>) -> Result<Collected, NetworkError> {
        let collected = {
            let _one_at_a_time = self.collecting.lock().await;
            self.collect_from(relay, inbox).await
        };
        if let Ok(Collected { recorded, refused, .. }) = collected
            && recorded + refused > 0
        {
            tracing::info!(%relay, recorded, refused, "collected letters from a relay's mailbox");
        }
        collected
    }

    async fn collect_from<H: Handler>(&self, relay: PeerId, inbox: &Inbox<H>) -> Result<Collected, NetworkError> {
        let own_device = self.home.db().info().device_key;
        let mut collected = Collected::default();
        for _ in 0..MAX_FETCHES {
            let items = match self
                .network
                .ask_mailbox(relay, Vec::new(), MailboxRequest::Fetch { max_items: FETCH_ITEMS })
                .await
            {
                Ok(MailboxResponse::Items { items, .. }) => items,
                Ok(MailboxResponse::Disabled) => return Ok(collected),
                Ok(other) => {
                    return Err(NetworkError::Unreachable {
                        peer: relay,
                        reason: format!("its mailbox answered a fetch with {other:?}"),
                    });
                }
                Err(err) => return Err(err),
            };
            let mut done: Vec<ItemId> = Vec::new();
            for item in items {
                let opened = {
                    let keys = self.home.keys();
                    open_letter(&item.envelope, &keys.owner.agreement, &own_device)
                };
                let letter = match opened {
                    Ok(letter) => letter,
                    Err(err) => {
                        let object = format!("mailbox item {} at relay {relay}", item.id);
                        let event = AuditDraft::security_event(Actor::Node, "mailbox", object, err.to_string());
                        if let Err(err) = crate::node::commit(self.home.db(), Change::audit(event)).await {
                            tracing::error!(%err, "cannot record a security event");
                            continue; // Keep the item until the event is on record.
                        }
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        collected.refused += 1;
                        done.push(item.id);
                        continue;
                    }
                };
                let batch = DeliveryBatch { messages: vec![letter.message] };
                let reply = inbox.receive(peer_id_of(&letter.from), batch).await;
                match reply.outcomes.first() {
                    Some(MessageOutcome::Recorded) => {
                        self.stats.collected.fetch_add(1, Ordering::Relaxed);
                        collected.recorded += 1;
                        done.push(item.id);
                    }
                    Some(MessageOutcome::Refused { retry: false, reason }) => {
                        tracing::info!(%reason, "refused a letter");
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        collected.refused += 1;
                        done.push(item.id);
                    }
                    _ => collected.kept += 1,
                }
            }
            if done.is_empty() {
                // Nothing moved: what is left waits for the next collection.
                return Ok(collected);
            }
            self.network.ask_mailbox(relay, Vec::new(), MailboxRequest::Delete { ids: done }).await?;
            // Fetch again even if nothing remained unseen: a letter kept for later (one that
            // arrived before the letter it depends on) may go through now.
            collected.kept = 0;
        }
        Ok(collected)
    }
}

/// The relay a circuit address goes through, and the relay's own address: for
/// `/ip4/…/tcp/…/p2p/RELAY/p2p-circuit/p2p/NODE`, `RELAY` and `/ip4/…/tcp/…/p2p/RELAY`.
fn circuit_relay(address: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut relay_address = Multiaddr::empty();
    let mut relay = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::P2pCircuit => return relay.map(|relay| (relay, relay_address)),
            Protocol::P2p(peer) => {
                relay = Some(peer);
                relay_address.push(protocol);
            }
            other => relay_address.push(other),
        }
    }
    None
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_of_a_circuit_address_is_found() {
        let relay = PeerId::random();
        let node = PeerId::random();
        let circuit: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{node}").parse().unwrap();
        let expected: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}").parse().unwrap();
        assert_eq!(circuit_relay(&circuit), Some((relay, expected)));
        let direct: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{node}").parse().unwrap();
        assert_eq!(circuit_relay(&direct), None);
    }
}
