//! Command line, environment overrides and the operator-set limits of a bootstrap relay.

mod mailbox;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser};
use libp2p::Multiaddr;

pub use mailbox::{MailboxArgs, MailboxLimits};

/// Longest duration accepted anywhere in the configuration: libp2p sends circuit durations as
/// `u32` seconds (and panics beyond), and timers far in the future overflow `Instant`.
pub const MAX_DURATION: Duration = Duration::from_secs(u32::MAX as u64);
const MAX_DURATION_SECS: u64 = MAX_DURATION.as_secs();

/// Limits of the circuit relay v2 server.
///
/// libp2p's defaults (2 min and 128 KiB per circuit) only coordinate a hole punch. Hole punching
/// fails for roughly a third of NATed pairs, so a ClawNet relay must be able to carry a whole
/// collaboration session: the defaults here are sized for that, within operator-set quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// Reservations (peers listening through this relay) held at once, over all peers.
    pub max_reservations: usize,
    /// Reservations held at once by one peer.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before the peer must renew it; at most [`MAX_DURATION`].
    pub reservation_duration: Duration,
    /// Relayed circuits open at once, over all peers.
    pub max_circuits: usize,
    /// Relayed circuits open at once with one peer as source or destination.
    pub max_circuits_per_peer: usize,
    /// Lifetime of one circuit; at most [`MAX_DURATION`].
    pub max_circuit_duration: Duration,
    /// Bytes relayed in each direction of one circuit before it is closed; 0 means unlimited.
    pub max_circuit_bytes: u64,
}

impl RelayLimits {
    /// The defaults: large enough to carry a session's traffic.
    pub const DEFAULT: Self = Self {
        max_reservations: 1024,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(60 * 60),
        max_circuits: 256,
        max_circuits_per_peer: 16,
        max_circuit_duration: Duration::from_secs(30 * 60),
        max_circuit_bytes: 64 * 1024 * 1024,
    };
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Limits on the connections a bootstrap relay accepts and keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionQuota {
    /// Established connections at once, over all peers.
    pub max_established: u32,
    /// Established connections at once with one peer.
    pub max_established_per_peer: u32,
    /// Inbound connections still in their handshake at once.
    pub max_pending_incoming: u32,
    /// Outbound connections being dialed at once. The relay's only outbound dials are AutoNAT
    /// dial-backs, so this bounds the reachability checks in progress.
    pub max_pending_outgoing: u32,
    /// How long a connection with nothing to do (no reservation, circuit or stream) is kept;
    /// at most [`MAX_DURATION`].
    pub idle_timeout: Duration,
}

impl ConnectionQuota {
    /// The defaults: room for every default reservation plus as many other peers.
    pub const DEFAULT: Self = Self {
        max_established: 2048,
        max_established_per_peer: 8,
        max_pending_incoming: 256,
        max_pending_outgoing: 32,
        idle_timeout: Duration::from_secs(60),
    };
}

impl Default for ConnectionQuota {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where the Prometheus metrics endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// TCP address of the HTTP endpoint (`GET /metrics`); port 0 picks a free port.
    pub address: SocketAddr,
    /// Allow an address other than loopback. Off by default: metrics describe the relay's load
    /// and its mailbox to whoever can reach them, so exposing them is an explicit choice.
    pub allow_public: bool,
}

/// Everything a [`crate::BootstrapRelay`] needs besides its identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Addresses to listen on (TCP and/or QUIC v1).
    pub listen: Vec<Multiaddr>,
    /// Publicly reachable addresses announced to peers through identify.
    pub external_addresses: Vec<Multiaddr>,
    /// Circuit relay limits.
    pub relay: RelayLimits,
    /// Connection limits.
    pub connections: ConnectionQuota,
    /// The encrypted mailbox's limits, or `None` to not offer the mailbox at all.
    pub mailbox: Option<MailboxLimits>,
    /// The metrics endpoint, or `None` for none.
    pub metrics: Option<MetricsConfig>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            external_addresses: Vec::new(),
            relay: RelayLimits::DEFAULT,
            connections: ConnectionQuota::DEFAULT,
            mailbox: Some(MailboxLimits::DEFAULT),
            metrics: None,
        }
    }
}

/// Command line of `clawnet-bootstrap`; every option can also be set through the environment.
#[derive(Debug, Parser)]
#[command(name = "clawnet-bootstrap", version, about)]
pub struct Cli {
    /// Address to listen on; repeat the option (or separate with commas in the environment).
    #[arg(
        long = "listen",
        value_name = "MULTIADDR",
        env = "CLAWNET_BOOTSTRAP_LISTEN",
        value_delimiter = ',',
        default_values = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"],
    )]
    pub listen: Vec<Multiaddr>,

    /// Publicly reachable address of this relay, announced to peers; repeatable.
    #[arg(
        long = "external-address",
        value_name = "MULTIADDR",
        env = "CLAWNET_BOOTSTRAP_EXTERNAL_ADDRESS",
        value_delimiter = ','
    )]
    pub external_addresses: Vec<Multiaddr>,

    /// File holding the relay's ed25519 libp2p keypair; created (mode 0600) if missing.
    #[arg(long, value_name = "PATH", env = "CLAWNET_BOOTSTRAP_KEY_FILE", default_value = "clawnet-bootstrap.key")]
    pub key_file: PathBuf,

    #[command(flatten)]
    pub relay: RelayArgs,

    #[command(flatten)]
    pub connections: ConnectionArgs,

    #[command(flatten)]
    pub mailbox: MailboxArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Command line form of [`RelayLimits`].
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Reservations held at once, over all peers.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAX_RESERVATIONS",
        default_value_t = RelayLimits::DEFAULT.max_reservations)]
    pub max_reservations: usize,

    /// Reservations held at once by one peer.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAX_RESERVATIONS_PER_PEER",
        default_value_t = RelayLimits::DEFAULT.max_reservations_per_peer)]
    pub max_reservations_per_peer: usize,

    /// Lifetime of a reservation, in seconds.
    #[arg(long, value_name = "SECS", env = "CLAWNET_BOOTSTRAP_RESERVATION_DURATION_SECS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS),
        default_value_t = RelayLimits::DEFAULT.reservation_duration.as_secs())]
    pub reservation_duration_secs: u64,

    /// Relayed circuits open at once, over all peers.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAX_CIRCUITS",
        default_value_t = RelayLimits::DEFAULT.max_circuits)]
    pub max_circuits: usize,

    /// Relayed circuits open at once per peer.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAX_CIRCUITS_PER_PEER",
        default_value_t = RelayLimits::DEFAULT.max_circuits_per_peer)]
    pub max_circuits_per_peer: usize,

    /// Lifetime of one circuit, in seconds.
    #[arg(long, value_name = "SECS", env = "CLAWNET_BOOTSTRAP_MAX_CIRCUIT_DURATION_SECS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS),
        default_value_t = RelayLimits::DEFAULT.max_circuit_duration.as_secs())]
    pub max_circuit_duration_secs: u64,

    /// Bytes relayed per direction of one circuit; 0 means unlimited.
    #[arg(long, value_name = "BYTES", env = "CLAWNET_BOOTSTRAP_MAX_CIRCUIT_BYTES",
        default_value_t = RelayLimits::DEFAULT.max_circuit_bytes)]
    pub max_circuit_bytes: u64,
}

/// Command line form of [`ConnectionQuota`].
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Established connections at once, over all peers.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAX_CONNECTIONS",
        default_value_t = ConnectionQuota::DEFAULT.max_established)]
    pub max_connections: u32,

    /// Established connections at once with one peer.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAX_CONNECTIONS_PER_PEER",
        default_value_t = ConnectionQuota::DEFAULT.max_established_per_peer)]
    pub max_connections_per_peer: u32,

    /// Inbound connections still in their handshake at once.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAX_PENDING_INCOMING",
        default_value_t = ConnectionQuota::DEFAULT.max_pending_incoming)]
    pub max_pending_incoming: u32,

    /// Outbound dials at once; the relay only dials for AutoNAT dial-backs.
    #[arg(long, value_name = "N", env = "CLAWNET_BOOTSTRAP_MAX_PENDING_OUTGOING",
        default_value_t = ConnectionQuota::DEFAULT.max_pending_outgoing)]
    pub max_pending_outgoing: u32,

    /// Seconds an idle connection is kept open.
    #[arg(long, value_name = "SECS", env = "CLAWNET_BOOTSTRAP_IDLE_TIMEOUT_SECS",
        value_parser = clap::value_parser!(u64).range(..=MAX_DURATION_SECS),
        default_value_t = ConnectionQuota::DEFAULT.idle_timeout.as_secs())]
    pub idle_timeout_secs: u64,
}

/// Command line form of [`MetricsConfig`].
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics over HTTP (GET /metrics) on this address, e.g. 127.0.0.1:9464.
    /// Off unless given; only a loopback address is accepted without --metrics-public.
    #[arg(long, value_name = "ADDR", env = "CLAWNET_BOOTSTRAP_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,

    /// Allow --metrics-address to be a non-loopback address (metrics reveal the relay's load).
    #[arg(long, env = "CLAWNET_BOOTSTRAP_METRICS_PUBLIC", requires = "metrics_address",
        value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_public: bool,
}

impl Cli {
    /// The relay configuration this command line asks for (the key file is handled apart).
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            listen: self.listen.clone(),
            external_addresses: self.external_addresses.clone(),
            relay: self.relay.limits(),
            connections: self.connections.quota(),
            mailbox: self.mailbox.limits(),
            metrics: self.metrics.config(),
        }
    }
}

impl MetricsArgs {
    /// The metrics endpoint these options ask for, if any.
    pub fn config(&self) -> Option<MetricsConfig> {
        self.metrics_address.map(|address| MetricsConfig { address, allow_public: self.metrics_public })
    }
}

impl RelayArgs {
    /// The limits these options ask for.
    pub fn limits(&self) -> RelayLimits {
        RelayLimits {
            max_reservations: self.max_reservations,
            max_reservations_per_peer: self.max_reservations_per_peer,
            reservation_duration: Duration::from_secs(self.reservation_duration_secs),
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer,
            max_circuit_duration: Duration::from_secs(self.max_circuit_duration_secs),
            max_circuit_bytes: self.max_circuit_bytes,
        }
    }
}

impl ConnectionArgs {
    /// The quota these options ask for.
    pub fn quota(&self) -> ConnectionQuota {
        ConnectionQuota {
            max_established: self.max_connections,
            max_established_per_peer: self.max_connections_per_peer,
            max_pending_incoming: self.max_pending_incoming,
            max_pending_outgoing: self.max_pending_outgoing,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("clawnet-bootstrap").chain(args.iter().copied()))
    }

    #[test]
    fn cli_defaults_are_the_documented_limits() {
        let cli = parse(&[]).unwrap();
        let config = cli.relay_config();
        assert_eq!(config.relay, RelayLimits::DEFAULT);
        assert_eq!(config.connections, ConnectionQuota::DEFAULT);
        assert_eq!(config.mailbox, Some(MailboxLimits::DEFAULT));
        assert_eq!(config.metrics, None);
        assert_eq!(config, RelayConfig { listen: config.listen.clone(), ..RelayConfig::default() });
        assert_eq!(cli.key_file, PathBuf::from("clawnet-bootstrap.key"));
        let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
        assert_eq!(listen, ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]);
    }

    #[test]
    fn default_relay_limits_carry_a_session_not_just_a_hole_punch() {
        let libp2p_default = libp2p::relay::Config::default();
        let ours = RelayLimits::DEFAULT;
        assert!(ours.max_circuit_duration >= Duration::from_secs(30 * 60));
        assert!(ours.max_circuit_bytes >= 64 * 1024 * 1024);
        assert!(ours.max_circuit_duration > libp2p_default.max_circuit_duration);
        assert!(ours.max_circuit_bytes > libp2p_default.max_circuit_bytes);
        assert!(ours.max_circuits > libp2p_default.max_circuits);
    }

    #[test]
    fn options_override_defaults() {
        let cli = parse(&[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--max-circuits",
            "7",
            "--max-circuit-duration-secs",
            "60",
            "--max-circuit-bytes",
            "1000",
            "--max-connections-per-peer",
            "2",
            "--key-file",
            "/tmp/k",
        ])
        .unwrap();
        let config = cli.relay_config();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.relay.max_circuits, 7);
        assert_eq!(config.relay.max_circuit_duration, Duration::from_secs(60));
        assert_eq!(config.relay.max_circuit_bytes, 1000);
        assert_eq!(config.connections.max_established_per_peer, 2);
        assert_eq!(cli.key_file, PathBuf::from("/tmp/k"));
    }

    #[test]
    fn mailbox_and_metrics_options() {
        let cli = parse(&[
            "--mailbox-max-item-bytes",
            "4096",
            "--mailbox-max-ttl-secs",
            "60",
            "--mailbox-max-items-per-recipient",
            "3",
            "--mailbox-sender-share-items",
            "2",
            "--mailbox-deposits-per-minute",
            "5",
            "--mailbox-sweep-interval-secs",
            "2",
            "--metrics-address",
            "127.0.0.1:9464",
        ])
        .unwrap();
        let config = cli.relay_config();
        let mailbox = config.mailbox.unwrap();
        assert_eq!(mailbox.max_item_bytes, 4096);
        assert_eq!(mailbox.max_ttl, Duration::from_secs(60));
        assert_eq!(mailbox.max_items_per_recipient, 3);
        assert_eq!(mailbox.sender_share_items, 2);
        assert_eq!(mailbox.deposits_per_minute, 5);
        assert_eq!(mailbox.sweep_interval, Duration::from_secs(2));
        assert_eq!(mailbox.max_total_bytes, MailboxLimits::DEFAULT.max_total_bytes);
        assert_eq!(
            config.metrics,
            Some(MetricsConfig { address: "127.0.0.1:9464".parse().unwrap(), allow_public: false })
        );

        assert_eq!(parse(&["--no-mailbox"]).unwrap().relay_config().mailbox, None);
        let public = parse(&["--metrics-address", "0.0.0.0:9464", "--metrics-public"]).unwrap();
        assert!(public.relay_config().metrics.unwrap().allow_public);
    }

    #[test]
    fn bad_mailbox_and_metrics_values_are_rejected() {
        // Beyond what the protocol lets any relay accept, or below the smallest envelope.
        let too_large = (clawnet_protocol::mailbox::MAX_ITEM_LEN + 1).to_string();
        assert!(parse(&["--mailbox-max-item-bytes", &too_large]).is_err());
        assert!(parse(&["--mailbox-max-item-bytes", "100"]).is_err());
        // TTLs travel as u32 seconds.
        assert!(parse(&["--mailbox-max-ttl-secs", "4294967296"]).is_err());
        assert!(parse(&["--mailbox-max-ttl-secs", "0"]).is_err());
        assert!(parse(&["--mailbox-deposits-per-minute", "0"]).is_err());
        assert!(parse(&["--metrics-address", "/ip4/127.0.0.1/tcp/1"]).is_err());
        // --metrics-public alone is a mistake, not a no-op.
        assert!(parse(&["--metrics-public"]).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["--listen", "not-a-multiaddr"]).is_err());
        assert!(parse(&["--max-circuit-duration-secs", "0"]).is_err());
        // libp2p panics on circuit durations beyond u32::MAX seconds: refuse them up front.
        assert!(parse(&["--max-circuit-duration-secs", "4294967296"]).is_err());
        assert!(parse(&["--max-circuits", "-1"]).is_err());
    }
}
