//! The relay's libp2p protocols: connection limits, dial policy, identify, ping, Kademlia server,
//! relay v2 hop, AutoNAT v2 server and the encrypted mailbox.

use std::time::Duration;

use libp2p::{
    StreamProtocol, autonat, connection_limits, identify,
    identity::Keypair,
    kad::{self, store::MemoryStore},
    ping, relay, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};

use crate::{
    config::{ConnectionQuota, MAX_DURATION, MailboxLimits, RelayLimits},
    dial_policy,
    mailbox::codec::{MailboxCodec, PROTOCOL as MAILBOX_PROTOCOL, ReceiveBudget},
};

/// Time allowed for one mailbox request, from opening the stream to the end of the answer: long
/// enough to upload the largest item over a slow link.
const MAILBOX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Mailbox requests handled at once on one connection.
const MAILBOX_STREAMS_PER_CONNECTION: usize = 4;

/// Kademlia protocol name of the ClawNet DHT. Private on purpose: a ClawNet node must never
/// join (or be found through) the public IPFS DHT, `/ipfs/kad/1.0.0`.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/clawnet/kad/1.0.0");

/// Protocol version announced through identify by every ClawNet peer.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/clawnet/1.0.0";

/// Agent version announced through identify by this binary.
pub const AGENT_VERSION: &str = concat!("clawnet-bootstrap/", env!("CARGO_PKG_VERSION"));

/// Why the behaviour could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// A relay duration exceeds what libp2p can put on the wire.
    #[error("relay {name} of {secs} s exceeds the maximum of {} s", MAX_DURATION.as_secs())]
    DurationTooLong {
        /// Which limit.
        name: &'static str,
        /// The configured value, in seconds.
        secs: u64,
    },
    /// The mailbox could never receive its largest request.
    #[error(
        "mailbox receive budget of {budget} bytes is smaller than one request of the largest item ({needed} bytes)"
    )]
    MailboxReceiveBudget {
        /// The configured budget.
        budget: usize,
        /// The largest request.
        needed: usize,
    },
    /// The mailbox sweep interval is zero or longer than [`MAX_DURATION`].
    #[error("mailbox sweep interval of {millis} ms is out of range (more than 0, at most {} s)", MAX_DURATION.as_secs())]
    MailboxSweepInterval {
        /// The configured interval, in milliseconds.
        millis: u128,
    },
}

/// All protocols a bootstrap relay speaks. Connection limits and the dial policy come first so
/// a refused connection is refused before any other protocol sets up state for it.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) dial_policy: dial_policy::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) relay: relay::Behaviour,
    pub(crate) autonat: autonat::v2::server::Behaviour,
    pub(crate) mailbox: Toggle<request_response::Behaviour<MailboxCodec>>,
}

impl Behaviour {
    /// Builds the protocols for `keypair`: Kademlia pinned to server mode and the relay pinned
    /// to advertising its hop protocol, because a bootstrap relay is public by definition and
    /// does not wait for AutoNAT to confirm it.
    ///
    /// The AutoNAT v2 server answers reachability checks; its dial-backs are bounded by
    /// [`ConnectionQuota::max_pending_outgoing`] and aimed by the [`dial_policy`]. The mailbox is
    /// offered (inbound only) when `mailbox` limits are given.
    pub(crate) fn new(
        keypair: &Keypair,
        relay_limits: &RelayLimits,
        quota: &ConnectionQuota,
        mailbox: Option<&MailboxLimits>,
    ) -> Result<Self, LimitsError> {
        let peer_id = keypair.public().to_peer_id();

        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(quota.max_established))
                .with_max_established_per_peer(Some(quota.max_established_per_peer))
                .with_max_pending_incoming(Some(quota.max_pending_incoming))
                .with_max_pending_outgoing(Some(quota.max_pending_outgoing)),
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
                .with_agent_version(AGENT_VERSION.to_owned()),
        );

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        // The relay serves peer routing only. It stores no records or provider entries that
        // peers push (they would be unbounded third-party data on a public host), so
        // PUT_VALUE/ADD_PROVIDER are accepted on the wire but dropped.
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        // The network comes to the relay: it has no peers of its own to look up, and with an
        // empty table libp2p warns on every periodic attempt. (The one automatic attempt kad
        // makes on the first listen address still warns once; libp2p offers no switch for it.)
        kad_config.set_periodic_bootstrap_interval(None);
        let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
        kad.set_mode(Some(kad::Mode::Server));

        let mut relay = relay::Behaviour::new(peer_id, relay_config(relay_limits)?);
        relay.set_status(Some(relay::Status::Enable));

        Ok(Self {
            limits,
            dial_policy: dial_policy::Behaviour::default(),
            identify,
            ping: ping::Behaviour::default(),
            kad,
            relay,
            autonat: autonat::v2::server::Behaviour::default(),
            mailbox: Toggle::from(mailbox.map(mailbox_behaviour).transpose()?),
        })
    }
}

/// The mailbox's request-response server: inbound only, a relay never asks anything.
fn mailbox_behaviour(limits: &MailboxLimits) -> Result<request_response::Behaviour<MailboxCodec>, LimitsError> {
    if limits.sweep_interval.is_zero() || limits.sweep_interval > MAX_DURATION {
        return Err(LimitsError::MailboxSweepInterval { millis: limits.sweep_interval.as_millis() });
    }
    let max_request_len = limits.max_request_len();
    if limits.max_receiving_bytes < max_request_len {
        return Err(LimitsError::MailboxReceiveBudget { budget: limits.max_receiving_bytes, needed: max_request_len });
    }
    let codec = MailboxCodec::new(max_request_len, ReceiveBudget::new(limits.max_receiving_bytes));
    Ok(request_response::Behaviour::with_codec(
        codec,
        [(MAILBOX_PROTOCOL, request_response::ProtocolSupport::Inbound)],
        request_response::Config::default()
            .with_request_timeout(MAILBOX_REQUEST_TIMEOUT)
            .with_max_concurrent_streams(MAILBOX_STREAMS_PER_CONNECTION),
    ))
}

/// libp2p's relay configuration for our limits; libp2p's per-peer and per-IP rate limiters
/// on new reservations and circuits are kept.
fn relay_config(limits: &RelayLimits) -> Result<relay::Config, LimitsError> {
    for (name, duration) in
        [("reservation duration", limits.reservation_duration), ("circuit duration", limits.max_circuit_duration)]
    {
        if duration > MAX_DURATION {
            return Err(LimitsError::DurationTooLong { name, secs: duration.as_secs() });
        }
    }
    Ok(relay::Config {
        max_reservations: limits.max_reservations,
        max_reservations_per_peer: limits.max_reservations_per_peer,
        reservation_duration: limits.reservation_duration,
        max_circuits: limits.max_circuits,
        max_circuits_per_peer: limits.max_circuits_per_peer,
        max_circuit_duration: limits.max_circuit_duration,
        max_circuit_bytes: limits.max_circuit_bytes,
        ..relay::Config::default()
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn relay_config_carries_our_limits() {
        let config = relay_config(&RelayLimits::DEFAULT).unwrap();
        assert_eq!(config.max_circuit_duration, Duration::from_secs(30 * 60));
        assert_eq!(config.max_circuit_bytes, 64 * 1024 * 1024);
        assert_eq!(config.max_reservations, 1024);
        assert_eq!(config.max_circuits, 256);
        assert_eq!(config.max_circuits_per_peer, 16);
    }

    #[test]
    fn circuit_duration_beyond_the_wire_limit_is_refused() {
        let limits =
            RelayLimits { max_circuit_duration: MAX_DURATION + Duration::from_secs(1), ..RelayLimits::DEFAULT };
        assert!(matches!(relay_config(&limits), Err(LimitsError::DurationTooLong { .. })));
    }

    #[test]
    fn a_receive_budget_below_one_request_is_refused() {
        let limits = MailboxLimits { max_receiving_bytes: 1000, ..MailboxLimits::DEFAULT };
        assert!(matches!(mailbox_behaviour(&limits), Err(LimitsError::MailboxReceiveBudget { budget: 1000, .. })));
    }

    #[test]
    fn a_sweep_interval_tokio_cannot_run_is_refused() {
        for sweep_interval in [Duration::ZERO, MAX_DURATION + Duration::from_secs(1)] {
            let limits = MailboxLimits { sweep_interval, ..MailboxLimits::DEFAULT };
            assert!(matches!(mailbox_behaviour(&limits), Err(LimitsError::MailboxSweepInterval { .. })));
        }
    }

    #[test]
    fn the_mailbox_is_offered_only_when_configured() {
        let keypair = Keypair::generate_ed25519();
        let (relay, quota) = (&RelayLimits::DEFAULT, &ConnectionQuota::DEFAULT);
        let with = Behaviour::new(&keypair, relay, quota, Some(&MailboxLimits::DEFAULT)).unwrap();
        assert!(with.mailbox.is_enabled());
        let without = Behaviour::new(&keypair, relay, quota, None).unwrap();
        assert!(!without.mailbox.is_enabled());
    }

    #[test]
    fn kad_speaks_only_the_private_protocol() {
        let behaviour =
            Behaviour::new(&Keypair::generate_ed25519(), &RelayLimits::DEFAULT, &ConnectionQuota::DEFAULT, None)
                .unwrap();
        assert_eq!(behaviour.kad.protocol_names(), [KAD_PROTOCOL]);
        assert_ne!(KAD_PROTOCOL, kad::PROTOCOL_NAME);
        assert_eq!(behaviour.kad.mode(), kad::Mode::Server);
    }
}
