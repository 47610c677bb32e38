//! The running bootstrap relay: its swarm (TCP and QUIC, Noise, Yamux), its event loop, the
//! mailbox it serves and its metrics endpoint.

use std::{collections::HashSet, fmt, future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use clawnet_protocol::mailbox::MailboxResponse;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, core::transport::ListenerId, futures::StreamExt, identify,
    identity::Keypair, metrics::Registry, noise, request_response, swarm::SwarmEvent, tcp, yamux,
};
use tokio::{
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};

use crate::{
    behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, LimitsError},
    config::RelayConfig,
    mailbox::{
        Mailbox,
        codec::{FrameRefusal, InboundRequest},
    },
    metrics::{
        MailboxMetrics, RelayMetrics,
        http::{self, MetricsError},
    },
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
    /// The metrics endpoint could not be set up.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
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
/// AutoNAT v2 server, the optional encrypted mailbox, identify and ping, and optionally a
/// Prometheus endpoint. It is trusted for nothing: everything it carries is already end-to-end
/// encrypted and signed, and its mailbox only holds sealed items.
pub struct BootstrapRelay {
    swarm: Swarm<Behaviour>,
    listeners: HashSet<ListenerId>,
    /// No external address was configured: announce what we listen on instead. Without any
    /// external address the relay's reservations carry no address and clients reject them.
    announce_listen_addrs: bool,
    mailbox: Option<Mailbox>,
    metrics: Option<RelayMetrics>,
    /// The metrics endpoint, bound at start and served by [`BootstrapRelay::run`].
    metrics_endpoint: Option<MetricsEndpoint>,
}

struct MetricsEndpoint {
    bound: http::BoundEndpoint,
    registry: Arc<Registry>,
}

impl fmt::Debug for BootstrapRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapRelay")
            .field("peer_id", self.swarm.local_peer_id())
            .field("n_listeners", &self.listeners.len())
            .field("announce_listen_addrs", &self.announce_listen_addrs)
            .field("mailbox", &self.mailbox.is_some())
            .field("metrics_address", &self.metrics_address())
            .finish_non_exhaustive()
    }
}

impl BootstrapRelay {
    /// Builds the swarm for `keypair` and starts listening on every configured address.
    ///
    /// Must be called inside a tokio runtime. Listen addresses are reported once bound, by
    /// [`BootstrapRelay::run`]; the metrics endpoint, if configured, is bound here (see
    /// [`BootstrapRelay::metrics_address`]) and served by `run`.
    pub fn start(keypair: Keypair, config: &RelayConfig) -> Result<Self, StartError> {
        if config.listen.is_empty() {
            return Err(StartError::NoListenAddress);
        }
        let behaviour = Behaviour::new(&keypair, &config.relay, &config.connections, config.mailbox.as_ref())?;
        let bound_metrics = config.metrics.as_ref().map(http::bind).transpose()?;
        let mut registry = bound_metrics.as_ref().map(|_| Registry::default());

        let idle_timeout = config.connections.idle_timeout;
        let swarm_config = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(idle_timeout);
        let builder = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .map_err(StartError::Noise)?
            .with_quic();
        let mut swarm = match registry.as_mut() {
            Some(registry) => builder
                .with_bandwidth_metrics(registry)
                .with_behaviour(|_| behaviour)
                .unwrap_or_else(|never| match never {})
                .with_swarm_config(swarm_config)
                .build(),
            None => builder
                .with_behaviour(|_| behaviour)
                .unwrap_or_else(|never| match never {})
                .with_swarm_config(swarm_config)
                .build(),
        };

        let metrics = registry.as_mut().map(RelayMetrics::new);
        let mailbox = config.mailbox.clone().map(|limits| {
            let mailbox_metrics = MailboxMetrics::default();
            if let Some(registry) = registry.as_mut() {
                mailbox_metrics.register(registry);
            }
            Mailbox::new(limits, mailbox_metrics)
        });
        let metrics_endpoint = bound_metrics.zip(registry).map(|(bound, registry)| {
            tracing::info!(address = %bound.address, "serving metrics at http://{}/metrics", bound.address);
            MetricsEndpoint { bound, registry: Arc::new(registry) }
        });

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
        tracing::info!(peer_id = %swarm.local_peer_id(), mailbox = mailbox.is_some(), "bootstrap relay started");
        Ok(Self { swarm, listeners, announce_listen_addrs, mailbox, metrics, metrics_endpoint })
    }

    /// Where the metrics endpoint listens (with the actual port if port 0 was asked for), if
    /// metrics are configured.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_endpoint.as_ref().map(|endpoint| endpoint.bound.address)
    }

    /// The relay's peer id, derived from its key.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Serves peers until `shutdown` completes (then returns `Ok`) or the relay becomes
    /// unreachable. `on_listen` is called once for every address the relay starts listening on.
    ///
    /// Dropping the returned future closes every connection and listener, and stops the
    /// metrics endpoint.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut on_listen: impl FnMut(&Multiaddr),
    ) -> Result<(), RunError> {
        let mut shutdown = std::pin::pin!(shutdown);
        // Dropping the set (also when this future is dropped) aborts the endpoint.
        let mut tasks = JoinSet::new();
        if let Some(endpoint) = self.metrics_endpoint.take() {
            tasks.spawn(http::serve(endpoint.bound.listener, endpoint.registry));
        }
        // Without a mailbox the sweep branch is disabled; the period then does not matter.
        let sweep_period = self.mailbox.as_ref().map_or(Duration::from_secs(3600), |m| m.limits().sweep_interval);
        let mut sweep = tokio::time::interval_at(Instant::now() + sweep_period, sweep_period);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                _ = sweep.tick(), if self.mailbox.is_some() => {
                    if let Some(mailbox) = self.mailbox.as_mut() {
                        mailbox.sweep(Instant::now().into_std());
                    }
                }
                event = self.swarm.select_next_some() => {
                    if let Err(err) = self.on_swarm_event(event, &mut on_listen) {
                        break Err(err);
                    }
                }
            }
        };
        tracing::info!("shutting down");
        // The endpoint first (it only reads metrics), then the swarm as `self` drops.
        tasks.shutdown().await;
        result
    }

    fn on_swarm_event(
        &mut self,
        event: SwarmEvent<BehaviourEvent>,
        on_listen: &mut impl FnMut(&Multiaddr),
    ) -> Result<(), RunError> {
        if let Some(metrics) = &self.metrics {
            metrics.record_swarm(&event);
        }
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
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => {
                if let Some(metrics) = &self.metrics {
                    metrics.record_identify(&event);
                }
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.on_identified(peer_id, info);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => {
                if let Some(metrics) = &self.metrics {
                    metrics.record_relay(&event);
                }
                tracing::debug!(?event, "relay");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => {
                if let Some(metrics) = &self.metrics {
                    metrics.record_kad(&event);
                }
                tracing::trace!(?event, "kad");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => {
                if let Some(metrics) = &self.metrics {
                    metrics.record_ping(&event);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => {
                if let Some(metrics) = &self.metrics {
                    metrics.record_autonat(&event);
                }
                tracing::debug!(client = %event.client, tested = %event.tested_addr, result = ?event.result, "autonat dial-back");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mailbox(event)) => self.on_mailbox_event(event),
            _ => {}
        }
        Ok(())
    }

    /// Answers a mailbox request. `peer` is the id the connection authenticated, which is what
    /// fetches and deletes are scoped to.
    fn on_mailbox_event(&mut self, event: request_response::Event<InboundRequest, MailboxResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => {
                let Some(mailbox) = self.mailbox.as_mut() else { return };
                let response = match request {
                    InboundRequest::Request(request) => {
                        let kind = request.kind();
                        let response = mailbox.handle(peer, request, Instant::now().into_std());
                        tracing::debug!(%peer, kind, outcome = crate::mailbox::outcome(&response), "mailbox request");
                        response
                    }
                    InboundRequest::Refused(refusal) => {
                        match &refusal {
                            FrameRefusal::TooLarge { .. } => mailbox.metrics().deposit("too_large"),
                            FrameRefusal::Busy => mailbox.metrics().refused_frame("busy"),
                            FrameRefusal::Malformed(_) => mailbox.metrics().refused_frame("malformed"),
                        }
                        tracing::debug!(%peer, ?refusal, "mailbox request refused before decoding");
                        refusal.response()
                    }
                };
                if let Some(server) = self.swarm.behaviour_mut().mailbox.as_mut()
                    && server.send_response(channel, response).is_err()
                {
                    tracing::debug!(%peer, "mailbox requester left before the answer");
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "mailbox request failed");
            }
            request_response::Event::Message { message: request_response::Message::Response { .. }, .. }
            | request_response::Event::OutboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
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
