//! The node's peer-to-peer network: one libp2p swarm, run by an actor task ([`EventLoop`])
//! and driven through a cloneable [`Network`] handle over a bounded channel; what the network
//! brings in arrives as [`NetworkEvent`]s on another bounded channel.
//!
//! Protocols: TCP and QUIC with Noise and Yamux; identify, ping, Kademlia on the private
//! `/clawnet/kad/1.0.0`, anonymous gossipsub for sealed tag feeds, `/clawnet/deliver/1` for
//! acknowledged deliveries, `/clawnet/endpoint/1` to the owner's remote file endpoints, the
//! client side of `/clawnet/mailbox/1` (relays' mailboxes for offline nodes), relay client,
//! DCUtR and AutoNAT v2 for reachability behind NAT.

mod behaviour;
mod codec;
mod endpoint_codec;
mod event_loop;
mod lanes;
mod mailbox_codec;
mod stale_addresses;

use std::time::Duration;

use clawnet_crypto::SigningSecret;
use clawnet_protocol::mailbox::{MailboxRequest, MailboxResponse};
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, identity, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use behaviour::{IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL};
pub use codec::DELIVER_PROTOCOL;
pub use endpoint_codec::{ENDPOINT_PROTOCOL, MAX_ENDPOINT_FRAME};
use event_loop::{Command, EventLoop};
pub use lanes::DeliveryHandler;
pub use mailbox_codec::MAILBOX_PROTOCOL;

use crate::config::NetworkSettings;

/// Commands waiting for the event loop, at most.
const COMMAND_CAPACITY: usize = 1024;
/// Events waiting for the node, at most; beyond that inbound deliveries are told to retry.
const EVENT_CAPACITY: usize = 1024;

/// Why a network operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The swarm could not be built or could not listen.
    #[error("cannot start the network: {0}")]
    Start(String),
    /// The peer could not be reached or did not answer in time.
    #[error("delivery to {peer} failed: {reason}")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// What happened.
        reason: String,
    },
    /// Publishing to a feed failed.
    #[error("gossip: {0}")]
    Gossip(String),
    /// The network task has stopped (the node is shutting down).
    #[error("the network has stopped")]
    Stopped,
}

/// What the network delivers to the node.
#[derive(Debug)]
pub enum NetworkEvent {
    /// A peer sent a delivery batch; send the reply through `reply` (dropping it refuses with
    /// retry). Not sent once a handler answers deliveries ([`Network::answer_deliveries`]).
    Delivery {
        /// The sending node (authenticated by Noise).
        peer: PeerId,
        /// The messages.
        batch: DeliveryBatch,
        /// Where the answer goes.
        reply: oneshot::Sender<DeliveryReply>,
    },
    /// A message on a subscribed feed.
    Gossip {
        /// The topic it came on.
        topic: String,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A peer called this device on `/clawnet/endpoint/1`; send the answer through `reply`
    /// (dropping it closes the stream unanswered).
    EndpointCall {
        /// The caller (authenticated by Noise).
        peer: PeerId,
        /// The call's bytes.
        request: Vec<u8>,
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// A connection to a peer was established.
    Connected(PeerId),
    /// The last connection to a peer closed.
    Disconnected(PeerId),
}

/// A handle on the network task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Network {
    commands: mpsc::Sender<Command>,
    /// Delivery lanes to other nodes, used by whichever task delivers.
    lanes: std::sync::Arc<lanes::Lanes>,
    /// What answers the deliveries arriving on lanes, once set.
    answer: std::sync::Arc<lanes::Answer>,
    local_peer: PeerId,
    /// The configured bootstrap relays, by peer id.
    relays: std::sync::Arc<[PeerId]>,
}

impl Network {
    /// Builds the swarm on the device key and starts its task; returns the handle, the event
    /// stream and the task (which ends when `shutdown` is cancelled).
    pub async fn start(
        device: &SigningSecret,
        settings: &NetworkSettings,
        shutdown: CancellationToken,
    ) -> Result<(Network, mpsc::Receiver<NetworkEvent>, tokio::task::JoinHandle<()>), NetworkError> {
        let keypair = libp2p_keypair(device)?;
        let local_peer = keypair.public().to_peer_id();
        let start = |err: String| NetworkError::Start(err);
        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|err| start(err.to_string()))?
            .with_quic()
            .with_dns()
            .map_err(|err| start(err.to_string()))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|err| start(err.to_string()))?
            .with_behaviour(|key, relay_client| {
                behaviour::Behaviour::new(key, relay_client, settings)
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(|err| start(err.to_string()))?
            .with_swarm_config(|config| {
                config.with_idle_connection_timeout(Duration::from_secs(settings.idle_timeout_secs))
            })
            .with_connection_timeout(Duration::from_secs(settings.connect_timeout_secs.max(1)))
            .build();
        let mut control = swarm.behaviour().lanes.new_control();
        let incoming = control.accept(DELIVER_PROTOCOL).map_err(|err| start(err.to_string()))?;
        let lanes = std::sync::Arc::new(lanes::Lanes::new(control));
        let (commands, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (events, event_rx) = mpsc::channel(EVENT_CAPACITY);
        let answer = std::sync::Arc::new(lanes::Answer::default());
        let serving = tokio::spawn(lanes::serve(incoming, answer.clone(), events.clone(), shutdown.clone()));
        let mut event_loop = EventLoop::new(swarm, command_rx, events, shutdown, lanes.clone());
        event_loop.start(settings)?;
        let event_loop = tokio::spawn(event_loop.run());
        // The network has stopped once both have.
        let task = tokio::spawn(async move {
            let _ = event_loop.await;
            let _ = serving.await;
        });
        // The event loop checked that every bootstrap address parses and names its relay.
        let relays = settings
            .bootstrap
            .iter()
            .filter_map(|address| address.parse::<Multiaddr>().ok())
            .filter_map(|address| match address.iter().last() {
                Some(Protocol::P2p(relay)) => Some(relay),
                _ => None,
            })
            .collect();
        Ok((Network { commands, lanes, answer, local_peer, relays }, event_rx, task))
    }

    /// This node's peer id.
    pub fn local_peer(&self) -> PeerId {
        self.local_peer
    }

    /// Sends `batch` to `peer` on a delivery lane (dialing `addresses` if not connected) and
    /// waits for its reply. The reply comes on the lane's stream, so only `peer`, authenticated
    /// by Noise, can give it.
    pub async fn deliver(
        &self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        batch: DeliveryBatch,
    ) -> Result<DeliveryReply, NetworkError> {
        let reach = async {
            let (reply, answer) = oneshot::channel();
            self.send(Command::Reach { peer, addresses, reply }).await?;
            answer.await.map_err(|_| NetworkError::Stopped)?
        };
        self.lanes.deliver(peer, &batch, reach).await
    }

    /// From now on, answers the deliveries that arrive with `handler`, on the task that reads
    /// each lane, instead of sending them as [`NetworkEvent::Delivery`] (saving a hand-off to
    /// the event's reader and one back). Only the first handler set counts; the network drops
    /// it when it stops, so it may hold what holds the network.
    pub fn answer_deliveries(&self, handler: DeliveryHandler) {
        if !self.answer.set(handler) {
            tracing::warn!("deliveries already have a handler; the new one is ignored");
        }
    }

    /// Unused delivery lanes open to `peer` (for tests: a lane is reused, not reopened).
    #[doc(hidden)]
    pub fn idle_lanes(&self, peer: PeerId) -> usize {
        self.lanes.idle(peer)
    }

    /// Calls `peer` on `/clawnet/endpoint/1` (dialing `addresses` if not connected) and waits
    /// for its answer.
    pub async fn call_endpoint(
        &self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        request: Vec<u8>,
    ) -> Result<Vec<u8>, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::CallEndpoint { peer, addresses, request, reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)?
    }

    /// The configured bootstrap relays (whose mailboxes this node reads).
    pub fn relays(&self) -> &[PeerId] {
        &self.relays
    }

    /// Asks the mailbox of `relay` (dialing `addresses` if not connected) and waits for the
    /// answer.
    pub async fn ask_mailbox(
        &self,
        relay: PeerId,
        addresses: Vec<Multiaddr>,
        request: MailboxRequest,
    ) -> Result<MailboxResponse, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::AskMailbox { relay, addresses, request, reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Publishes `data` on the gossip topic `topic`.
    pub async fn publish(&self, topic: String, data: Vec<u8>) -> Result<(), NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Publish { topic, data, reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Receives gossip on `topic` from now on.
    pub async fn subscribe(&self, topic: String) -> Result<(), NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Subscribe { topic, reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Stops receiving gossip on `topic`.
    pub async fn unsubscribe(&self, topic: String) -> Result<(), NetworkError> {
        self.send(Command::Unsubscribe { topic }).await
    }

    /// Addresses others can reach this node at: listen addresses (including relay circuits)
    /// and confirmed external addresses.
    pub async fn addresses(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Addresses { reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)
    }

    /// Peers with an open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ConnectedPeers { reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)
    }

    /// Dials `address` (for example a peer's feed host in tests and tools).
    pub async fn dial(&self, address: Multiaddr) -> Result<(), NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Dial { address, reply }).await?;
        answer.await.map_err(|_| NetworkError::Stopped)?
    }

    async fn send(&self, command: Command) -> Result<(), NetworkError> {
        self.commands.send(command).await.map_err(|_| NetworkError::Stopped)
    }
}

/// The libp2p identity of a device key: the same ed25519 key, so the peer id is certified by
/// the owner's device certificate.
pub fn libp2p_keypair(device: &SigningSecret) -> Result<identity::Keypair, NetworkError> {
    let mut secret = *device.to_bytes();
    identity::Keypair::ed25519_from_bytes(&mut secret).map_err(|err| NetworkError::Start(err.to_string()))
}

/// How libp2p spells an ed25519 public key inside a peer id: the protobuf `PublicKey` message
/// with `Type = Ed25519 (1)` and 32 bytes of `Data`, wrapped in an identity multihash.
const ED25519_PROTOBUF_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];
/// The multihash code of the identity "hash".
const IDENTITY_MULTIHASH: u64 = 0;

/// The peer id of a device key. Pure byte shuffling: no curve arithmetic, so it is cheap on
/// every delivery (the key is checked where it verifies a signature).
pub fn peer_id_of(device_key: &clawnet_crypto::SigningPublicKey) -> PeerId {
    let mut digest = [0u8; 36];
    digest[..4].copy_from_slice(&ED25519_PROTOBUF_PREFIX);
    digest[4..].copy_from_slice(device_key.as_bytes());
    // An identity multihash of 36 bytes always fits the 64-byte multihash and is a valid peer id.
    libp2p::multihash::Multihash::<64>::wrap(IDENTITY_MULTIHASH, &digest)
        .ok()
        .and_then(|multihash| PeerId::from_multihash(multihash).ok())
        .unwrap_or_else(PeerId::random)
}

/// The device key behind an ed25519 peer id, if it is one (no curve arithmetic; see
/// [`peer_id_of`]).
pub fn device_key_of(peer: &PeerId) -> Option<clawnet_crypto::SigningPublicKey> {
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let key = multihash.digest().strip_prefix(&ED25519_PROTOBUF_PREFIX)?;
    Some(clawnet_crypto::SigningPublicKey::unchecked(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_device_keys_convert_like_libp2p() {
        let device = SigningSecret::from_bytes(&[5; 32]);
        let expected = libp2p_keypair(&device).unwrap().public().to_peer_id();
        assert_eq!(peer_id_of(&device.public_key()), expected);
        assert_eq!(device_key_of(&expected), Some(device.public_key()));
        assert_eq!(device_key_of(&PeerId::random()), None);
    }
}
