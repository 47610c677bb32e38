//! Keeps AutoNAT dial-backs pointed at the peer that asked for them.
//!
//! An AutoNAT v2 server dials whatever address a client asks it to test. libp2p makes a client
//! pay in bytes for an address other than the one it connects from, which stops amplification
//! but not aim: without a rule, any peer could make the relay dial third parties, or hosts and
//! ports on the relay's own private network, and read the result as a port scan. So a dial that
//! names its addresses (which only AutoNAT dial-backs do on a relay: Kademlia dials name none and
//! take addresses from the routing table) must target an IP address the peer is connected to
//! us from. A client behind NAT tests its public address, which is the IP it connects from.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::IpAddr,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished, dummy,
    },
};

/// A dial refused by the policy.
#[derive(Debug, thiserror::Error)]
#[error("dial to {address} refused: not an IP address the peer is connected from")]
pub(crate) struct DialElsewhere {
    address: Multiaddr,
}

/// Refuses dials that name addresses outside the IPs their peer is connected from.
#[derive(Debug, Default)]
pub(crate) struct Behaviour {
    /// The remote IP of every established connection, per peer.
    connected_from: HashMap<PeerId, HashMap<ConnectionId, IpAddr>>,
}

impl Behaviour {
    fn check(&self, peer: Option<PeerId>, addresses: &[Multiaddr]) -> Result<(), DialElsewhere> {
        let connected_from = peer.and_then(|peer| self.connected_from.get(&peer));
        for address in addresses {
            let allowed = ip_of(address)
                .is_some_and(|ip| connected_from.is_some_and(|ips| ips.values().any(|known| *known == ip)));
            if !allowed {
                return Err(DialElsewhere { address: address.clone() });
            }
        }
        Ok(())
    }
}

/// The IP address a multiaddr starts with, if it starts with one.
fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    match address.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

impl NetworkBehaviour for Behaviour {
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

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        match self.check(maybe_peer, addresses) {
            Ok(()) => Ok(Vec::new()),
            Err(refused) => {
                tracing::debug!(peer = ?maybe_peer, %refused, "outbound dial refused");
                Err(ConnectionDenied::new(refused))
            }
        }
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

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished { peer_id, connection_id, endpoint, .. }) => {
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    self.connected_from.entry(peer_id).or_default().insert(connection_id, ip);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { peer_id, connection_id, .. }) => {
                if let Some(connections) = self.connected_from.get_mut(&peer_id) {
                    connections.remove(&connection_id);
                    if connections.is_empty() {
                        self.connected_from.remove(&peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_with(peer: PeerId, ip: &str) -> Behaviour {
        let mut policy = Behaviour::default();
        policy.connected_from.entry(peer).or_default().insert(ConnectionId::new_unchecked(1), ip.parse().unwrap());
        policy
    }

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_dial_back_to_the_ip_the_peer_connects_from_is_allowed() {
        let peer = PeerId::random();
        let policy = policy_with(peer, "203.0.113.7");
        assert!(policy.check(Some(peer), &[addr("/ip4/203.0.113.7/tcp/4001")]).is_ok());
        assert!(policy.check(Some(peer), &[addr("/ip4/203.0.113.7/udp/4001/quic-v1")]).is_ok());
    }

    #[test]
    fn dials_aimed_elsewhere_are_refused() {
        let peer = PeerId::random();
        let policy = policy_with(peer, "203.0.113.7");
        for target in ["/ip4/10.0.0.1/tcp/22", "/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/1", "/dns4/example.com/tcp/1"] {
            assert!(policy.check(Some(peer), &[addr(target)]).is_err(), "{target}");
        }
        // One bad address spoils the dial.
        assert!(policy.check(Some(peer), &[addr("/ip4/203.0.113.7/tcp/1"), addr("/ip4/198.51.100.1/tcp/1")]).is_err());
        // Another peer's address, or a peer we are not connected to.
        assert!(policy.check(Some(PeerId::random()), &[addr("/ip4/203.0.113.7/tcp/1")]).is_err());
        assert!(policy.check(None, &[addr("/ip4/203.0.113.7/tcp/1")]).is_err());
    }

    #[test]
    fn dials_that_name_no_address_are_left_to_other_behaviours() {
        assert!(Behaviour::default().check(Some(PeerId::random()), &[]).is_ok());
    }
}
