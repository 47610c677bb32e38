//! Delivery lanes between real libp2p nodes on loopback: deliveries to a node reuse the lanes
//! already open to it instead of negotiating a stream each, concurrent deliveries each get a
//! lane, a receiver answers the requests of one lane in turn, a lane that died with its
//! receiver is replaced by a fresh one without the delivery failing, and a handler the node sets
//! answers in place of events and is let go when the network stops.

use std::time::Duration;

use clawnet_crypto::SigningSecret;
use clawnet_node::config::NetworkSettings;
use clawnet_node::network::{Network, NetworkEvent};
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply, MessageOutcome};
use libp2p::{Multiaddr, PeerId};
use tokio_util::sync::CancellationToken;

/// A network on a loopback port, and where it listens.
async fn start(device: &SigningSecret, stop: &CancellationToken) -> (Network, Vec<Multiaddr>) {
    let settings =
        NetworkSettings { listen: vec!["/ip4/127.0.0.1/tcp/0".into()], relay: false, ..NetworkSettings::default() };
    let (network, events, _task) = Network::start(device, &settings, stop.clone()).await.unwrap();
    tokio::spawn(answer(events));
    let addresses = loop {
        let addresses = network.addresses().await.unwrap();
        if !addresses.is_empty() {
            break addresses;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (network, addresses)
}

/// Answers every delivery by recording each message (nothing is stored: the lanes are tested,
/// not the inbox), after a moment, so that concurrent deliveries overlap.
async fn answer(mut events: tokio::sync::mpsc::Receiver<NetworkEvent>) {
    while let Some(event) = events.recv().await {
        if let NetworkEvent::Delivery { batch, reply, .. } = event {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = reply.send(DeliveryReply { outcomes: vec![MessageOutcome::Recorded; batch.messages.len()] });
            });
        }
    }
}

fn batch(n: u8) -> DeliveryBatch {
    DeliveryBatch { messages: vec![vec![n; 100]; usize::from(n % 3) + 1] }
}

fn recorded(reply: &DeliveryReply, sent: &DeliveryBatch) -> bool {
    reply.outcomes.len() == sent.messages.len() && reply.outcomes.iter().all(|o| *o == MessageOutcome::Recorded)
}

struct Pair {
    stop: CancellationToken,
    sender: Network,
    /// Held: the network stops when its last handle goes.
    _receiver: Network,
    receiver_device: SigningSecret,
    receiver_stop: CancellationToken,
    receiver_peer: PeerId,
    receiver_addresses: Vec<Multiaddr>,
}

async fn pair() -> Pair {
    let stop = CancellationToken::new();
    let (sender, _) = start(&SigningSecret::from_bytes(&[1; 32]), &stop).await;
    let receiver_device = SigningSecret::from_bytes(&[2; 32]);
    let receiver_stop = stop.child_token();
    let (receiver, receiver_addresses) = start(&receiver_device, &receiver_stop).await;
    let receiver_peer = receiver.local_peer();
    Pair { stop, sender, _receiver: receiver, receiver_device, receiver_stop, receiver_peer, receiver_addresses }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_one_after_another_reuse_one_lane() {
    let pair = pair().await;
    for n in 0..6 {
        let sent = batch(n);
        let reply =
            pair.sender.deliver(pair.receiver_peer, pair.receiver_addresses.clone(), sent.clone()).await.unwrap();
        assert!(recorded(&reply, &sent), "delivery {n}: {reply:?}");
        // Had each delivery opened a lane of its own, the unused ones would pile up.
        assert_eq!(pair.sender.idle_lanes(pair.receiver_peer), 1, "after delivery {n}");
    }
    pair.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_each_get_a_lane_and_their_own_reply() {
    let pair = pair().await;
    let deliveries: Vec<_> = (0..8u8)
        .map(|n| {
            let (sender, peer, addresses) = (pair.sender.clone(), pair.receiver_peer, pair.receiver_addresses.clone());
            tokio::spawn(async move {
                let sent = batch(n);
                let reply = sender.deliver(peer, addresses, sent.clone()).await.unwrap();
                recorded(&reply, &sent)
            })
        })
        .collect();
    for (n, delivery) in deliveries.into_iter().enumerate() {
        assert!(delivery.await.unwrap(), "delivery {n} got another's reply or none");
    }
    let idle = pair.sender.idle_lanes(pair.receiver_peer);
    assert!((2..=4).contains(&idle), "8 overlapping deliveries left {idle} lanes (at most 4 are kept)");
    pair.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_that_died_with_its_receiver_is_replaced_without_failing_the_delivery() {
    let pair = pair().await;
    let sent = batch(1);
    let reply = pair.sender.deliver(pair.receiver_peer, pair.receiver_addresses.clone(), sent.clone()).await.unwrap();
    assert!(recorded(&reply, &sent));
    assert_eq!(pair.sender.idle_lanes(pair.receiver_peer), 1);

    // The receiver stops and comes back, on another port; the sender still holds the old lane.
    pair.receiver_stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_receiver, addresses) = start(&pair.receiver_device, &pair.stop).await;
    let sent = batch(2);
    let reply = pair.sender.deliver(pair.receiver_peer, addresses, sent.clone()).await.unwrap();
    assert!(recorded(&reply, &sent), "{reply:?}");
    assert_eq!(pair.sender.idle_lanes(pair.receiver_peer), 1, "the dead lane is gone and the new one kept");
    pair.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_answers_in_place_of_events_and_is_let_go_when_the_network_stops() {
    let stop = CancellationToken::new();
    let (sender, _) = start(&SigningSecret::from_bytes(&[1; 32]), &stop).await;
    let settings =
        NetworkSettings { listen: vec!["/ip4/127.0.0.1/tcp/0".into()], relay: false, ..NetworkSettings::default() };
    let receiver_stop = stop.child_token();
    let (receiver, mut events, task) =
        Network::start(&SigningSecret::from_bytes(&[2; 32]), &settings, receiver_stop.clone()).await.unwrap();
    // What the handler holds, as a node's inbox holds the node and so its network.
    let held = std::sync::Arc::new(receiver.clone());
    let holding = held.clone();
    receiver.answer_deliveries(std::sync::Arc::new(move |_peer, batch: DeliveryBatch| {
        let _held = holding.clone();
        let reply = DeliveryReply {
            outcomes: vec![MessageOutcome::try_later("answered by the handler"); batch.messages.len()],
        };
        Box::pin(std::future::ready(reply))
    }));
    let addresses = loop {
        let addresses = receiver.addresses().await.unwrap();
        if !addresses.is_empty() {
            break addresses;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let reply = sender.deliver(receiver.local_peer(), addresses, batch(1)).await.unwrap();
    assert_eq!(reply.outcomes, vec![MessageOutcome::try_later("answered by the handler"); 2]);
    assert!(
        !matches!(events.try_recv(), Ok(NetworkEvent::Delivery { .. })),
        "the delivery was answered by the handler and also sent as an event"
    );

    receiver_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert_eq!(std::sync::Arc::strong_count(&held), 1, "the stopped network still holds the handler");
    stop.cancel();
}
