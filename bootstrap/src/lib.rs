//! ClawNet bootstrap relay: helps nodes find and reach each other, trusted for nothing.
//!
//! A bootstrap relay runs, over TCP and QUIC (Noise, Yamux):
//!
//! - identify and ping;
//! - a Kademlia server on the private ClawNet DHT ([`KAD_PROTOCOL`]) for peer routing;
//! - a circuit relay v2 server whose [`RelayLimits`] are large enough to carry a whole session
//!   for peers whose hole punch failed;
//! - an AutoNAT v2 server, so nodes learn whether they are reachable. Its dial-backs are bounded
//!   ([`ConnectionQuota::max_pending_outgoing`]) and may only target an IP address the asking
//!   peer is connected from, so the relay cannot be aimed at third parties or its own network;
//! - unless disabled, the encrypted mailbox (`/clawnet/mailbox/1`, wire types in
//!   [`clawnet_protocol::mailbox`]): sealed deliveries held in memory for offline nodes, under
//!   the quotas of [`MailboxLimits`]. A node fetches and deletes only what is addressed to the
//!   ed25519 peer id its connection authenticated. Without the mailbox the protocol is not
//!   offered at all (so identify does not list it).
//!
//! It never sees plaintext: everything it forwards is end-to-end encrypted by Noise and signed at
//! the application layer, and mailbox items are sealed to the recipient owner's key. It keeps no
//! state on disk besides its key.
//!
//! Optionally ([`MetricsConfig`]) it serves Prometheus metrics over HTTP (`GET /metrics`):
//! libp2p's own (`libp2p_*`: swarm, bandwidth, identify, Kademlia, ping, relay) and the relay's
//! (`clawnet_*`: reservations and circuits held, AutoNAT dial-backs, mailbox items, bytes and
//! deposit outcomes). The endpoint only binds a loopback address unless told otherwise.
//!
//! The `clawnet-bootstrap` binary is a thin shell around [`BootstrapRelay`]; tests and tools can
//! run one in-process the same way.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod behaviour;
mod bootstrap_relay;
pub mod config;
mod dial_policy;
pub mod key_file;
mod mailbox;
mod metrics;

pub use behaviour::{AGENT_VERSION, IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL, LimitsError};
pub use bootstrap_relay::{BootstrapRelay, RunError, StartError};
pub use config::{Cli, ConnectionQuota, MailboxLimits, MetricsConfig, RelayConfig, RelayLimits};
pub use key_file::KeyFileError;
pub use metrics::http::MetricsError;
