//! The node's libp2p protocols.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::store::MemoryStore;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, gossipsub, identify, kad, ping, relay, request_response,
};

use super::endpoint_codec::{ENDPOINT_PROTOCOL, EndpointCodec};
use super::mailbox_codec::{MAILBOX_PROTOCOL, MailboxCodec};
use crate::config::NetworkSettings;

/// Kademlia protocol of the ClawNet DHT; never the public IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/clawnet/kad/1.0.0");
/// Identify protocol version every ClawNet peer announces.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/clawnet/1.0.0";
/// The largest gossip message: a sealed announcement for many contacts.
const MAX_GOSSIP_MESSAGE: usize = 256 * 1024;

/// Every protocol a node speaks. Connection limits first, so a refused connection sets up no
/// state elsewhere.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    /// Delivery lanes (`/clawnet/deliver/1` streams the node reads and writes itself).
    pub(crate) lanes: libp2p_stream::Behaviour,
    pub(crate) endpoint: request_response::Behaviour<EndpointCodec>,
    pub(crate) mailbox: request_response::Behaviour<MailboxCodec>,
    pub(crate) dcutr: dcutr::Behaviour,
    pub(crate) autonat: autonat::v2::client::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(
        keypair: &Keypair,
        relay_client: relay::client::Behaviour,
        settings: &NetworkSettings,
    ) -> Result<Behaviour, String> {
        let peer_id = keypair.public().to_peer_id();
        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(settings.max_connections))
                .with_max_established_per_peer(Some(settings.max_connections_per_peer)),
        );
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
                .with_agent_version(concat!("clawnet/", env!("CARGO_PKG_VERSION")).to_owned()),
        );
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        // Peer routing only: nodes never store records for others.
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
        // Server mode so the relays and contacts can route to this node's (circuit) addresses.
        kad.set_mode(Some(kad::Mode::Server));

        // Anonymous: no author peer id or signature on gossip; authenticity lives in the seal.
        let gossip_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .max_transmit_size(MAX_GOSSIP_MESSAGE)
            .message_id_fn(|message| {
                gossipsub::MessageId::from(
                    clawnet_crypto::Hash32::of(clawnet_crypto::HashDomain::MessageId, &message.data).to_hex(),
                )
            })
            .build()
            .map_err(|err| format!("gossipsub configuration: {err}"))?;
        let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)
            .map_err(|err| format!("gossipsub: {err}"))?;

        // File operations on another device can take a while (a large copy, a deep search).
        let endpoint = request_response::Behaviour::new(
            [(ENDPOINT_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(120)),
        );

        // Outbound only: a node asks relays' mailboxes and serves none.
        let mailbox = request_response::Behaviour::new(
            [(MAILBOX_PROTOCOL, request_response::ProtocolSupport::Outbound)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
        );

        Ok(Behaviour {
            limits,
            relay_client,
            identify,
            ping: ping::Behaviour::default(),
            kad,
            gossipsub,
            lanes: libp2p_stream::Behaviour::new(),
            endpoint,
            mailbox,
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::v2::client::Behaviour::default(),
        })
    }
}
