//! The relay's AutoNAT v2 server, driven by libp2p's v2 client (what nodes run): a reachable
//! node learns it is reachable, and the relay refuses to dial an address the asking peer does
//! not connect from (so it cannot be aimed at third parties or at its own network).

#[path = "support/harness.rs"]
mod harness;

use std::{
    collections::VecDeque,
    convert::Infallible,
    task::{Context, Poll, Waker},
    time::Duration,
};

use anyhow::bail;
use clawnet_bootstrap::RelayConfig;
use harness::{InProcessRelay, STEP_TIMEOUT, within};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, autonat,
    core::{Endpoint, transport::PortUse},
    futures::StreamExt as _,
    identify, noise,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dial_opts::DialOpts, dummy,
    },
    tcp, yamux,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;

#[tokio::test]
async fn a_reachable_node_learns_it_is_reachable() -> anyhow::Result<()> {
    let relay = InProcessRelay::start(RelayConfig::default()).await?;
    // The node listens on the IP it connects to the relay from.
    let (tested, result) = check_reachability(&relay, "127.0.0.1").await?;
    assert!(result.is_ok(), "{tested} reported unreachable: {result:?}");
    Ok(())
}

#[tokio::test]
async fn the_relay_does_not_dial_an_ip_the_peer_does_not_connect_from() -> anyhow::Result<()> {
    let relay = InProcessRelay::start(RelayConfig::default()).await?;
    // The node listens on 127.0.0.3 but connects from 127.0.0.1. Without the dial policy the
    // relay would dial 127.0.0.3 and succeed; with it, the check fails without a dial.
    let (tested, result) = check_reachability(&relay, "127.0.0.3").await?;
    assert!(result.is_err(), "the relay dialed {tested}, an IP the peer does not connect from");
    Ok(())
}

/// Has a node listening on `listen_ip` ask the relay to test that listen address; returns the
/// address and the outcome.
async fn check_reachability(
    relay: &InProcessRelay,
    listen_ip: &str,
) -> anyhow::Result<(Multiaddr, Result<(), String>)> {
    let mut node = autonat_node()?;
    node.listen_on(format!("/ip4/{listen_ip}/tcp/0").parse()?)?;
    let candidate = within(STEP_TIMEOUT, "the node's listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = node.select_next_some().await {
                break address;
            }
        }
    })
    .await?;
    node.behaviour_mut().candidate.announce(candidate.clone());
    // A fresh port: the connection comes from the kernel's choice of source IP (127.0.0.1), not
    // from the listen address.
    node.dial(DialOpts::peer_id(relay.peer_id).addresses(vec![relay.addr.clone()]).allocate_new_port().build())?;

    let result = within(STEP_TIMEOUT, "the reachability check", async {
        loop {
            match node.select_next_some().await {
                SwarmEvent::Behaviour(AutonatNodeEvent::Autonat(event)) if event.tested_addr == candidate => {
                    assert_eq!(event.server, relay.peer_id);
                    break Ok(event.result.map_err(|err| err.to_string()));
                }
                SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } if peer == relay.peer_id => {
                    bail!("cannot connect to the relay: {error}")
                }
                _ => {}
            }
        }
    })
    .await??;
    Ok((candidate, result))
}

#[derive(NetworkBehaviour)]
struct AutonatNode {
    autonat: autonat::v2::client::Behaviour<ChaCha20Rng>,
    // The client learns that the relay serves AutoNAT from identify.
    identify: identify::Behaviour,
    candidate: CandidateAddress,
}

fn autonat_node() -> anyhow::Result<Swarm<AutonatNode>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| AutonatNode {
            autonat: autonat::v2::client::Behaviour::new(
                ChaCha20Rng::seed_from_u64(7),
                autonat::v2::client::Config::default().with_probe_interval(Duration::from_millis(100)),
            ),
            identify: identify::Behaviour::new(identify::Config::new("/clawnet/1.0.0".to_owned(), key.public())),
            candidate: CandidateAddress::default(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// Reports chosen addresses as external address candidates, which the AutoNAT client tests (a
/// node would get them from identify's observed addresses, or from its configuration).
#[derive(Default)]
struct CandidateAddress {
    pending: VecDeque<Multiaddr>,
    waker: Option<Waker>,
}

impl CandidateAddress {
    fn announce(&mut self, address: Multiaddr) {
        self.pending.push_back(address);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl NetworkBehaviour for CandidateAddress {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(address) => Poll::Ready(ToSwarm::NewExternalAddrCandidate(address)),
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
