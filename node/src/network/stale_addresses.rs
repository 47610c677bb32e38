//! Addresses where another node answered when we dialled a peer: a contact's old address now
//! held by someone else, or a node squatting on it. Noise refuses such a connection (the
//! handshake names another peer id), which is what keeps a squatter from answering for the
//! contact. But libp2p dials a peer's known addresses concurrently and settles on the first
//! connection established, checking its peer id only then, so a stale address that answers
//! first fails the whole dial, attempt after attempt, and the contact is never reached. Such an
//! address is left out of dials to that peer for [`FORGET_AFTER`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// How long an address stays left out (the peer may come back to it).
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses remembered at most; beyond that the oldest are forgotten.
const MAX_REMEMBERED: usize = 4096;

/// Addresses known to lead to a node other than the peer dialled, and since when.
#[derive(Debug, Default)]
pub(super) struct StaleAddresses {
    by_peer: HashMap<PeerId, HashMap<Multiaddr, Instant>>,
}

impl StaleAddresses {
    /// Remembers that dialling `peer` at `address` reached another node; returns the address as
    /// it is compared (without a trailing `/p2p/...`).
    pub(super) fn mark(&mut self, peer: PeerId, address: &Multiaddr) -> Multiaddr {
        let address = without_peer_id(address);
        if self.len() >= MAX_REMEMBERED {
            self.forget_oldest();
        }
        self.by_peer.entry(peer).or_default().insert(address.clone(), Instant::now());
        address
    }

    /// `addresses` of `peer` without those recently found to lead elsewhere.
    pub(super) fn keep(&mut self, peer: &PeerId, addresses: Vec<Multiaddr>) -> Vec<Multiaddr> {
        let Some(stale) = self.by_peer.get_mut(peer) else { return addresses };
        stale.retain(|_, since| since.elapsed() < FORGET_AFTER);
        if stale.is_empty() {
            self.by_peer.remove(peer);
            return addresses;
        }
        addresses.into_iter().filter(|address| !stale.contains_key(&without_peer_id(address))).collect()
    }

    fn len(&self) -> usize {
        self.by_peer.values().map(HashMap::len).sum()
    }

    fn forget_oldest(&mut self) {
        let oldest = self
            .by_peer
            .iter()
            .flat_map(|(peer, stale)| stale.iter().map(move |(address, since)| (*since, *peer, address.clone())))
            .min_by_key(|(since, _, _)| *since);
        if let Some((_, peer, address)) = oldest
            && let Some(stale) = self.by_peer.get_mut(&peer)
        {
            stale.remove(&address);
            if stale.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }
}

fn without_peer_id(address: &Multiaddr) -> Multiaddr {
    let mut address = address.clone();
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address.pop();
    }
    address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_address_is_left_out_for_its_peer_only_whatever_its_p2p_suffix() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let stale: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let good: Multiaddr = "/ip4/127.0.0.1/tcp/4002".parse().unwrap();
        let mut addresses = StaleAddresses::default();
        let marked = addresses.mark(peer, &stale.clone().with(Protocol::P2p(peer)));
        assert_eq!(marked, stale);
        assert_eq!(addresses.keep(&peer, vec![stale.clone(), good.clone()]), vec![good.clone()]);
        assert_eq!(
            addresses.keep(&peer, vec![stale.clone().with(Protocol::P2p(peer)), good.clone()]),
            vec![good.clone()]
        );
        assert_eq!(addresses.keep(&other, vec![stale.clone(), good.clone()]), vec![stale, good]);
    }

    #[test]
    fn memory_is_bounded() {
        let mut addresses = StaleAddresses::default();
        let peer = PeerId::random();
        for port in 0..(MAX_REMEMBERED as u16 + 10) {
            addresses.mark(peer, &format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap());
        }
        assert_eq!(addresses.len(), MAX_REMEMBERED);
        // The oldest went first.
        let first: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        assert_eq!(addresses.keep(&peer, vec![first.clone()]), vec![first]);
    }
}
