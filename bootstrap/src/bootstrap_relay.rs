//! The running bootstrap relay: its swarm (TCP and QUIC, Noise, Yamux) and its event loop.

use std::{collections::HashSet, fmt, future::Future, io};

use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, core::transport::ListenerId, futures::StreamExt, identify,
    identity::Keypair, noise, swarm::SwarmEvent, tcp, yamux,
};

use crate::{
    behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, LimitsError},
    config::RelayConfig,
};

/// Most addresses kept in the routing table for one peer. Identify lets a peer announce new
/// addresses at will; without a cap, one peer could grow our memory and our FIND_NODE answers
/// without bound.
const MAX_KAD_ADDRESSES_PER_PEER: usize = 8;

/// Why a bootstrap relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration names no address to listen on.
    #[error("no listen address configured")]
    NoListenAddress,
    /// A configured limit cannot be applied.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The Noise handshake could not be set up with the relay key.
    #[error("cannot set up noise")]
    Noise(#[source] noise::Error),
    /// Listening on a configured address failed (unsupported, or could not be bound).
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// What the transport reported.
        #[source]
        source: libp2p::TransportError<io::Error>,
    },
}

/// Why a running bootstrap relay stopped before being asked to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Every listener closed: the relay can no longer be reached.
    #[error("every listener closed; the relay is unreachable")]
    AllListenersClosed,
}

/// A bootstrap relay: Kademlia server on the private ClawNet DHT, circuit relay v2 server,
/// identify and ping. It is trusted for nothing: everything it carries is already end-to-end
/// encrypted and signed.
pub struct BootstrapRelay {
    swarm: Swarm<Behaviour>,
    listeners: HashSet<ListenerId>,
    /// No external address was configured: announce what we listen on instead. Without any
    /// external address the relay's reservations carry no address and clients reject them.
    announce_listen_addrs: bool,
}

impl fmt::Debug for BootstrapRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapRelay")
            .field("peer_id", self.swarm.local_peer_id())
            .field("n_listeners", &self.listeners.len())
            .field("announce_listen_addrs", &self.announce_listen_addrs)
            .finish_non_exhaustive()
    }
}

impl BootstrapRelay {
    /// Builds the swarm for `keypair` and starts listening on every configured address.
    ///
    /// Must be called inside a tokio runtime. Listen addresses are reported once bound, by
    /// [`BootstrapRelay::run`].
    pub fn start(keypair: Keypair, config: &RelayConfig) -> Result<Self, StartError> {
        if config.listen.is_empty() {
            return Err(StartError::NoListenAddress);
        }
        let behaviour = Behaviour::new(&keypair, &config.relay, &config.connections)?;
        let idle_timeout = config.connections.idle_timeout;
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .map_err(StartError::Noise)?
            .with_quic()
            .with_behaviour(|_| behaviour)
            .unwrap_or_else(|never| match never {})
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
            .build();

        let mut listeners = HashSet::new();
        for addr in &config.listen {
            let listener =
                swarm.listen_on(addr.clone()).map_err(|source| StartError::Listen { addr: addr.clone(), source })?;
            listeners.insert(listener);
        }
        for addr in &config.external_addresses {
            swarm.add_external_address(addr.clone());
        }
        let announce_listen_addrs = config.external_addresses.is_empty();
        if announce_listen_addrs {
            tracing::warn!(
                "no external address configured: announcing the listen addresses instead; behind NAT \
                 or a port mapping, set --external-address to the address peers should dial"
            );
        }
        tracing::info!(peer_id = %swarm.local_peer_id(), "bootstrap relay started");
        Ok(Self { swarm, listeners, announce_listen_addrs })
    }

    /// The relay's peer id, derived from its key.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Serves peers until `shutdown` completes (then returns `Ok`) or the relay becomes
    /// unreachable. `on_listen` is called once for every address the relay starts listening on.
    ///
    /// Dropping the returned future closes every connection and listener.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut on_listen: impl FnMut(&Multiaddr),
    ) -> Result<(), RunError> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event, &mut on_listen)?,
            }
        }
        tracing::info!("shutting down");
        Ok(())
    }

    fn on_swarm_event(
        &mut self,
        event: SwarmEvent<BehaviourEvent>,
        on_listen: &mut impl FnMut(&Multiaddr),
    ) -> Result<(), RunError> {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                on_listen(&address);
                if self.announce_listen_addrs {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!(%address, "no longer listening");
                if self.announce_listen_addrs {
                    self.swarm.remove_external_address(&address);
                }
            }
            SwarmEvent::ListenerClosed { listener_id, addresses, reason } => {
                match reason {
                    Ok(()) => tracing::info!(?addresses, "listener closed"),
                    Err(err) => tracing::error!(?addresses, %err, "listener failed"),
                }
                self.listeners.remove(&listener_id);
                if self.listeners.is_empty() {
                    return Err(RunError::AllListenersClosed);
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                tracing::debug!(%peer_id, remote = %endpoint.get_remote_address(), "connected");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!(%peer_id, ?cause, "disconnected");
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                tracing::debug!(remote = %send_back_addr, %error, "inbound connection failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                self.on_identified(peer_id, info)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => {
                tracing::debug!(?event, "relay");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => {
                tracing::trace!(?event, "kad");
            }
            _ => {}
        }
        Ok(())
    }

    /// Makes a peer findable through the DHT: inbound connections carry no dialable address,
    /// so the peer's announced listen addresses go into the routing table, if it speaks our
    /// Kademlia protocol.
    fn on_identified(&mut self, peer_id: PeerId, info: identify::Info) {
        if !info.protocols.contains(&KAD_PROTOCOL) {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        let n_known = kad
            .kbucket(peer_id)
            .and_then(|bucket| {
                bucket.iter().find(|entry| *entry.node.key.preimage() == peer_id).map(|entry| entry.node.value.len())
            })
            .unwrap_or(0);
        let room = MAX_KAD_ADDRESSES_PER_PEER.saturating_sub(n_known);
        for addr in info.listen_addrs.into_iter().take(room) {
            kad.add_address(&peer_id, addr);
        }
    }
}
