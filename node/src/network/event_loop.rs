//! The network actor: owns the swarm, serves [`Command`]s and turns swarm events into
//! [`NetworkEvent`]s. Pending requests are kept in maps keyed by request id (the libp2p
//! file-sharing example's shape).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use clawnet_protocol::mailbox::{MailboxRequest, MailboxResponse};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, kad};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::lanes::Lanes;
use super::stale_addresses::StaleAddresses;
use super::{NetworkError, NetworkEvent};
use crate::config::NetworkSettings;

/// What the [`super::Network`] handle asks of the event loop.
#[derive(Debug)]
pub(super) enum Command {
    /// Learn `addresses` for `peer` and connect to it, answering once connected (a delivery
    /// lane opens only then; see `reaching`).
    Reach {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    CallEndpoint {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        request: Vec<u8>,
        reply: CallReply,
    },
    AskMailbox {
        relay: PeerId,
        addresses: Vec<Multiaddr>,
        request: MailboxRequest,
        reply: oneshot::Sender<Result<MailboxResponse, NetworkError>>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    Unsubscribe {
        topic: String,
    },
    Addresses {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
}

/// How often lost relay reservations are retried.
const RELAY_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

type CallReply = oneshot::Sender<Result<Vec<u8>, NetworkError>>;
type AnswerFuture = Pin<Box<dyn Future<Output = (ResponseChannel<Vec<u8>>, Option<Vec<u8>>)> + Send>>;

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    shutdown: CancellationToken,
    /// Unused delivery lanes, swept here so idle connections can close.
    lanes: Arc<Lanes>,
    /// Outbound endpoint calls waiting for their answer.
    pending_calls: HashMap<OutboundRequestId, (PeerId, CallReply)>,
    /// Inbound endpoint calls whose answer is being worked out.
    answers: FuturesUnordered<AnswerFuture>,
    /// Requests to relays' mailboxes waiting for their response.
    pending_mailbox: HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<MailboxResponse, NetworkError>>)>,
    /// Addresses we listen on, relay circuits included.
    listen_addresses: Vec<Multiaddr>,
    /// Deliveries waiting for a connection to their peer before opening a lane. The stream
    /// behaviour cannot be asked to wait itself: a lane it is asked for at the moment a
    /// connection is set up can wait for the next connection instead, as it learns of the
    /// connection in two steps. Once the swarm reports a connection, both steps are done.
    reaching: HashMap<PeerId, Vec<oneshot::Sender<Result<(), NetworkError>>>>,
    /// Peers we asked the DHT about for a delivery, until connected or the dial failed.
    looked_up: HashSet<PeerId>,
    /// Relay circuits we want to listen on, by the listener serving each (if any).
    circuits: Vec<(Multiaddr, Option<ListenerId>)>,
    /// Bootstrap relays, by peer id.
    bootstrap_peers: HashSet<PeerId>,
    /// Addresses where another node answered for a peer, left out of dials to it.
    stale: StaleAddresses,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
        shutdown: CancellationToken,
        lanes: Arc<Lanes>,
    ) -> EventLoop {
        EventLoop {
            swarm,
            commands,
            events,
            shutdown,
            lanes,
            reaching: HashMap::new(),
            pending_calls: HashMap::new(),
            answers: FuturesUnordered::new(),
            pending_mailbox: HashMap::new(),
            listen_addresses: Vec::new(),
            looked_up: HashSet::new(),
            circuits: Vec::new(),
            bootstrap_peers: HashSet::new(),
            stale: StaleAddresses::default(),
        }
    }

    /// Listens, dials the bootstrap relays and reserves relay slots on them.
    pub(super) fn start(&mut self, settings: &NetworkSettings) -> Result<(), NetworkError> {
        for address in &settings.listen {
            let address: Multiaddr =
                address.parse().map_err(|err| NetworkError::Start(format!("listen address {address:?}: {err}")))?;
            self.swarm
                .listen_on(address.clone())
                .map_err(|err| NetworkError::Start(format!("cannot listen on {address}: {err}")))?;
        }
        for address in &settings.bootstrap {
            let address: Multiaddr =
                address.parse().map_err(|err| NetworkError::Start(format!("bootstrap address {address:?}: {err}")))?;
            let Some(Protocol::P2p(relay)) = address.iter().last() else {
                return Err(NetworkError::Start(format!("bootstrap address {address} must end with /p2p/<peer id>")));
            };
            self.swarm.behaviour_mut().kad.add_address(&relay, address.clone());
            self.bootstrap_peers.insert(relay);
            if settings.relay {
                // Listening on a circuit makes the relay client dial the relay itself. Nothing
                // else may dial it meanwhile (not even a DHT bootstrap): the client's dial would
                // be refused and the reservation dropped. The DHT bootstraps once connected.
                self.circuits.push((address.with(Protocol::P2pCircuit), None));
            } else if let Err(err) = self.swarm.dial(address.clone()) {
                tracing::warn!(%address, %err, "cannot dial bootstrap relay");
            }
        }
        self.listen_on_circuits();
        Ok(())
    }

    /// Listens on every relay circuit that has no listener (at start, and again after a relay
    /// dropped our reservation).
    fn listen_on_circuits(&mut self) {
        for (circuit, listener) in &mut self.circuits {
            if listener.is_none() {
                match self.swarm.listen_on(circuit.clone()) {
                    Ok(id) => *listener = Some(id),
                    Err(err) => tracing::warn!(%circuit, %err, "cannot reserve a relay slot"),
                }
            }
        }
    }

    pub(super) async fn run(mut self) {
        let mut maintenance = tokio::time::interval(RELAY_RETRY);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                _ = maintenance.tick() => {
                    self.listen_on_circuits();
                    self.lanes.sweep();
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some((channel, answer)) = self.answers.next(), if !self.answers.is_empty() => {
                    // No answer (the device is stopping): dropping the channel closes the stream.
                    if let Some(answer) = answer {
                        let _ = self.swarm.behaviour_mut().endpoint.send_response(channel, answer);
                    }
                }
            }
        }
        tracing::debug!("network event loop stopped");
    }

    /// Tells the swarm where `peer` may be reached, except at addresses where another node
    /// answered for it lately.
    fn add_addresses(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        for address in self.stale.keep(&peer, addresses) {
            self.swarm.add_peer_address(peer, address);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Reach { peer, addresses, reply } => {
                self.add_addresses(peer, addresses);
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                if self.looked_up.insert(peer) {
                    // Ask the DHT too, in case the addresses we have are stale.
                    self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                }
                let dial = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
                match self.swarm.dial(dial) {
                    // Already dialing: its outcome answers this one too.
                    Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {
                        self.reaching.entry(peer).or_default().push(reply);
                    }
                    Err(err) => {
                        // No address yet, say: the next delivery asks the DHT again, which may
                        // know one by then.
                        self.looked_up.remove(&peer);
                        let _ = reply.send(Err(NetworkError::Unreachable { peer, reason: err.to_string() }));
                    }
                }
            }
            Command::CallEndpoint { peer, addresses, request, reply } => {
                self.add_addresses(peer, addresses);
                let request_id = self.swarm.behaviour_mut().endpoint.send_request(&peer, request);
                self.pending_calls.insert(request_id, (peer, reply));
            }
            Command::AskMailbox { relay, addresses, request, reply } => {
                self.add_addresses(relay, addresses);
                let request_id = self.swarm.behaviour_mut().mailbox.send_request(&relay, request);
                self.pending_mailbox.insert(request_id, (relay, reply));
            }
            Command::Publish { topic, data, reply } => {
                let topic = gossipsub::IdentTopic::new(topic);
                let result = match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
                    Ok(_) => Ok(()),
                    // Nobody to gossip to right now: direct syncs cover absent contacts.
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
                    Err(err) => Err(NetworkError::Gossip(err.to_string())),
                };
                let _ = reply.send(result);
            }
            Command::Subscribe { topic, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&gossipsub::IdentTopic::new(topic))
                    .map(|_| ())
                    .map_err(|err| NetworkError::Gossip(err.to_string()));
                let _ = reply.send(result);
            }
            Command::Unsubscribe { topic } => {
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&gossipsub::IdentTopic::new(topic));
            }
            Command::Addresses { reply } => {
                let mut addresses = self.listen_addresses.clone();
                addresses.extend(self.swarm.external_addresses().cloned());
                addresses.dedup();
                let _ = reply.send(addresses);
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Dial { address, reply } => {
                let result = self
                    .swarm
                    .dial(address.clone())
                    .map_err(|err| NetworkError::Unreachable { peer: PeerId::random(), reason: err.to_string() });
                let _ = reply.send(result);
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !self.listen_addresses.contains(&address) {
                    self.listen_addresses.push(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addresses.retain(|known| known != &address);
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                for (circuit, listener) in &mut self.circuits {
                    if *listener == Some(listener_id) {
                        tracing::warn!(%circuit, ?reason, "relay reservation lost; will retry");
                        *listener = None;
                    }
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, .. } => {
                self.looked_up.remove(&peer_id);
                for waiting in self.reaching.remove(&peer_id).into_iter().flatten() {
                    let _ = waiting.send(Ok(()));
                }
                if num_established.get() == 1 && self.bootstrap_peers.contains(&peer_id) {
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                if num_established.get() == 1 {
                    // Best effort: a full queue only delays the peer's outbox to the next tick.
                    let _ = self.events.try_send(NetworkEvent::Connected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                let _ = self.events.try_send(NetworkEvent::Disconnected(peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Endpoint(event)) => self.on_endpoint_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mailbox(event)) => self.on_mailbox_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                let event = NetworkEvent::Gossip { topic: message.topic.into_string(), data: message.data };
                if self.events.try_send(event).is_err() {
                    tracing::warn!("gossip dropped: the node is busy");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }))
                if info.protocols.contains(&KAD_PROTOCOL) =>
            {
                for address in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(result)),
                ..
            })) => {
                for peer in result.peers {
                    for address in peer.addrs {
                        self.swarm.add_peer_address(peer.peer_id, address);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => {
                tracing::debug!(?event, "relay client");
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error: DialError::WrongPeerId { obtained, address },
                ..
            } => {
                tracing::warn!(%peer, %obtained, %address, "another node answered at an address of this peer: left out of dials for now");
                self.looked_up.remove(&peer);
                self.fail_reaching(peer, &format!("another node ({obtained}) answered at {address}"));
                let address = self.stale.mark(peer, &address);
                // Every address book the swarm dials from forgets it too (the node's own peer
                // record still lists it; `stale` keeps it out when it is handed in again).
                let behaviour = self.swarm.behaviour_mut();
                behaviour.kad.remove_address(&peer, &address);
                #[allow(deprecated)] // the only way to take an address out of their caches
                {
                    behaviour.endpoint.remove_address(&peer, &address);
                    behaviour.mailbox.remove_address(&peer, &address);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
                if let Some(peer) = peer_id {
                    // The next delivery asks the DHT again.
                    self.looked_up.remove(&peer);
                    self.fail_reaching(peer, &error.to_string());
                }
            }
            _ => {}
        }
    }

    /// Tells the deliveries waiting for `peer` that the dial failed.
    fn fail_reaching(&mut self, peer: PeerId, reason: &str) {
        for waiting in self.reaching.remove(&peer).into_iter().flatten() {
            let _ = waiting.send(Err(NetworkError::Unreachable { peer, reason: reason.to_owned() }));
        }
    }

    fn on_endpoint_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let (reply, answer) = oneshot::channel();
                    match self.events.try_send(NetworkEvent::EndpointCall { peer, request, reply }) {
                        Ok(()) => self.answers.push(Box::pin(async move { (channel, answer.await.ok()) })),
                        // Busy: the stream closes unanswered and the caller sees a failure.
                        Err(_) => tracing::warn!(%peer, "endpoint call dropped: busy"),
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((_, reply)) = self.pending_calls.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some((peer, reply)) = self.pending_calls.remove(&request_id) {
                    let _ = reply.send(Err(NetworkError::Unreachable { peer, reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound endpoint call failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_mailbox_event(&mut self, event: request_response::Event<MailboxRequest, MailboxResponse>) {
        match event {
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            } => {
                if let Some((_, reply)) = self.pending_mailbox.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some((peer, reply)) = self.pending_mailbox.remove(&request_id) {
                    let _ = reply.send(Err(NetworkError::Unreachable { peer, reason: error.to_string() }));
                }
            }
            // Inbound mailbox requests are not offered, so none arrive.
            _ => {}
        }
    }
}
