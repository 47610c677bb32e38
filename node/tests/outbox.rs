//! The sending side of reliable delivery between real libp2p nodes on loopback: against a
//! receiver that takes its time, the outbox never has more than two requests on their way to one
//! node, and what queues meanwhile leaves in shared batches, each message delivered once; and
//! only the receiver itself, authenticated by Noise, can tell the outbox a message is recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clawnet_crypto::{SigningSecret, Timestamp};
use clawnet_node::config::NetworkSettings;
use clawnet_node::delivery::{Accepted, Handler, Inbox, Outbox, Refusal, enqueue};
use clawnet_node::home::{KeyProtection, NodeHome, UnlockedHome};
use clawnet_node::network::{Network, NetworkEvent, peer_id_of};
use clawnet_protocol::contact::ContactRemoval;
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply, MessageOutcome, WireMessage};
use clawnet_protocol::{MessageId, Nonce};
use clawnet_storage::Change;
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;

/// How long the receiver thinks about each message.
const SLOW: Duration = Duration::from_millis(200);
const MESSAGES: u8 = 20;

/// Accepts everything, slowly.
struct Slow;

impl Handler for Slow {
    type FollowUp = ();

    async fn handle(&self, _peer: PeerId, _id: MessageId, _message: WireMessage) -> Result<Accepted<()>, Refusal> {
        tokio::time::sleep(SLOW).await;
        Ok(Accepted::new(Change::new(|_txn| Ok(())), (), None))
    }

    async fn committed(&self, (): ()) {}
}

async fn start(
    dir: &std::path::Path,
    name: &str,
    stop: &CancellationToken,
) -> (Arc<UnlockedHome>, Network, tokio::sync::mpsc::Receiver<NetworkEvent>) {
    let home = Arc::new(NodeHome::init(&dir.join(name), name, KeyProtection::None).unwrap());
    let settings =
        NetworkSettings { listen: vec!["/ip4/127.0.0.1/tcp/0".into()], relay: false, ..NetworkSettings::default() };
    let device = SigningSecret::from_bytes(&home.keys().device.to_bytes());
    let (network, events, _task) = Network::start(&device, &settings, stop.child_token()).await.unwrap();
    (home, network, events)
}

/// Where `network` listens, once it does.
async fn listen_addresses(network: &Network) -> Vec<String> {
    loop {
        let addresses: Vec<String> = network.addresses().await.unwrap().iter().map(|a| a.to_string()).collect();
        if !addresses.is_empty() {
            return addresses;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A message of `owner`'s, distinct for each `n`.
fn removal(owner: &clawnet_protocol::testkit::TestOwner, n: u8) -> WireMessage {
    let removal =
        ContactRemoval { from: owner.id(), to: owner.id(), created_at: Timestamp::now(), nonce: Nonce([n; 16]) };
    WireMessage::ContactRemoval(clawnet_crypto::Signed::sign(&removal, &owner.keys.signing))
}

/// Tells `sender` that the node of device `receiver` is reachable at `addresses`.
fn learn_addresses(sender: &UnlockedHome, receiver: clawnet_crypto::SigningPublicKey, addresses: Vec<String>) {
    sender
        .db()
        .commit(Change::new(move |txn| txn.add_peer_addresses(&receiver, &addresses, Timestamp::now())))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_two_requests_travel_to_a_node_and_the_rest_wait_to_share_a_batch() {
    let temp = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (sender, sender_network, _) = start(temp.path(), "sender", &stop).await;
    let (receiver, receiver_network, mut events) = start(temp.path(), "receiver", &stop).await;
    let receiver_device = receiver.db().info().device_key;
    learn_addresses(&sender, receiver_device, listen_addresses(&receiver_network).await);

    // The receiver counts the requests it is working on at once.
    let inbox = Inbox::new(receiver.clone(), Slow);
    let (open, most_open, requests) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counters = (open.clone(), most_open.clone(), requests.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let NetworkEvent::Delivery { peer, batch, reply } = event else { continue };
            let (inbox, (open, most_open, requests)) = (inbox.clone(), counters.clone());
            requests.fetch_add(1, Ordering::SeqCst);
            most_open.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::spawn(async move {
                let answer = inbox.receive(peer, batch).await;
                open.fetch_sub(1, Ordering::SeqCst);
                let _ = reply.send(answer);
            });
        }
    });

    let outbox = Outbox::new(sender.clone(), sender_network);
    tokio::spawn(outbox.clone().run(stop.child_token()));
    let mut settled = outbox.settled();
    // Queued one at a time, each with a wake, as a node's changes queue them.
    let owner = clawnet_protocol::testkit::TestOwner::new(5, &[]);
    let mut ids = Vec::new();
    for n in 0..MESSAGES {
        let message = removal(&owner, n);
        ids.push(MessageId::of(&message.encode()));
        let change = Change::new(move |txn| enqueue(txn, receiver_device, &message, Timestamp::now()).map(drop));
        clawnet_node::node::commit(sender.db(), change).await.unwrap();
        outbox.wake();
    }
    tokio::time::timeout(Duration::from_secs(30), settled.wait_for(|count| *count >= u64::from(MESSAGES)))
        .await
        .expect("every message is acknowledged")
        .unwrap();

    let requests = requests.load(Ordering::SeqCst);
    assert!(most_open.load(Ordering::SeqCst) <= 2, "more than two requests were on their way at once");
    assert!(requests < usize::from(MESSAGES), "{requests} requests for {MESSAGES} messages: nothing was batched");
    assert_eq!(outbox.stats().requests.load(Ordering::SeqCst) as usize, requests);
    let view = receiver.db().read().unwrap();
    assert!(ids.iter().all(|id| view.inbound(id).unwrap().is_some()), "every message was recorded");
    stop.cancel();
}

/// The outbox lets go of a message on the receiver's word, which only the Noise handshake
/// vouches for (the reply carries no signature). A node listening where the sender looks for the
/// receiver, with a key of its own, cannot give that word: the dial fails its authentication,
/// the impostor never sees the message, and the message waits. Nor can it stand in the way: once
/// the receiver's real address is known the message reaches it, the squatted address being left
/// out of later dials (libp2p would otherwise often settle on it first and fail every attempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_at_the_receivers_address_cannot_acknowledge_a_delivery() {
    let temp = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (sender, sender_network, _) = start(temp.path(), "sender", &stop).await;
    let (receiver, receiver_network, mut events) = start(temp.path(), "receiver", &stop).await;
    let (impostor, impostor_network, mut impostor_events) = start(temp.path(), "impostor", &stop).await;
    let receiver_device = receiver.db().info().device_key;
    // The impostor says "recorded" to anything it is asked.
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        while let Some(event) = impostor_events.recv().await {
            if let NetworkEvent::Delivery { batch, reply, .. } = event {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = reply.send(DeliveryReply { outcomes: vec![MessageOutcome::Recorded; batch.messages.len()] });
            }
        }
    });
    let owner = clawnet_protocol::testkit::TestOwner::new(6, &[]);
    // The control: at its address, under its own identity, the impostor is reachable and answers.
    let impostor_addresses = listen_addresses(&impostor_network).await;
    let at: Vec<libp2p::Multiaddr> = impostor_addresses.iter().map(|a| a.parse().unwrap()).collect();
    let probe = DeliveryBatch { messages: vec![removal(&owner, 0).encode()] };
    let impostor_peer = peer_id_of(&impostor.db().info().device_key);
    assert!(sender_network.deliver(impostor_peer, at, probe).await.is_ok());
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // The sender believes the receiver is there (a stale address someone else now holds).
    learn_addresses(&sender, receiver_device, impostor_addresses);
    let outbox = Outbox::new(sender.clone(), sender_network);
    tokio::spawn(outbox.clone().run(stop.child_token()));
    let message = removal(&owner, 1);
    let id = MessageId::of(&message.encode());
    let change = Change::new(move |txn| enqueue(txn, receiver_device, &message, Timestamp::now()).map(drop));
    clawnet_node::node::commit(sender.db(), change).await.unwrap();
    outbox.wake();
    // Attempts go there (and, once it is known to answer for someone else, nowhere).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(outbox.stats().retried.load(Ordering::SeqCst) >= 1, "no attempt was made");
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the impostor was asked for the receiver");
    assert_eq!(outbox.stats().acknowledged.load(Ordering::SeqCst), 0);
    assert_eq!(sender.db().outbound().unwrap().len(), 1, "the message left the outbox");

    // The real receiver becomes known: the message reaches it.
    let inbox = Inbox::new(receiver.clone(), Slow);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetworkEvent::Delivery { peer, batch, reply } = event {
                let _ = reply.send(inbox.receive(peer, batch).await);
            }
        }
    });
    learn_addresses(&sender, receiver_device, listen_addresses(&receiver_network).await);
    let mut settled = outbox.settled();
    tokio::time::timeout(Duration::from_secs(30), settled.wait_for(|count| *count >= 1))
        .await
        .expect("the real receiver acknowledges the message")
        .unwrap();
    assert!(receiver.db().read().unwrap().inbound(&id).unwrap().is_some());
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the impostor was asked for the receiver");
    stop.cancel();
}
