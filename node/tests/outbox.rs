//! The sending side of reliable delivery between two real libp2p nodes on loopback, against a
//! receiver that takes its time: the outbox never has more than two requests on their way to one
//! node, and what queues meanwhile leaves in shared batches, each message delivered once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clawnet_crypto::{SigningSecret, Timestamp};
use clawnet_node::config::NetworkSettings;
use clawnet_node::delivery::{Accepted, Handler, Inbox, Outbox, Refusal, enqueue};
use clawnet_node::home::{KeyProtection, NodeHome, UnlockedHome};
use clawnet_node::network::{Network, NetworkEvent};
use clawnet_protocol::contact::ContactRemoval;
use clawnet_protocol::wire::WireMessage;
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
        Ok(Accepted { change: Change::new(|_txn| Ok(())), follow_up: (), hold: None })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_two_requests_travel_to_a_node_and_the_rest_wait_to_share_a_batch() {
    let temp = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (sender, sender_network, _) = start(temp.path(), "sender", &stop).await;
    let (receiver, receiver_network, mut events) = start(temp.path(), "receiver", &stop).await;
    let receiver_device = receiver.db().info().device_key;
    let mut addresses = Vec::new();
    while addresses.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        addresses = receiver_network.addresses().await.unwrap().iter().map(|a| a.to_string()).collect();
    }
    sender
        .db()
        .commit(Change::new(move |txn| txn.add_peer_addresses(&receiver_device, &addresses, Timestamp::now())))
        .unwrap();

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
        let removal =
            ContactRemoval { from: owner.id(), to: owner.id(), created_at: Timestamp::now(), nonce: Nonce([n; 16]) };
        let message = WireMessage::ContactRemoval(clawnet_crypto::Signed::sign(&removal, &owner.keys.signing));
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
