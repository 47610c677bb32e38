//! ClawNet bootstrap relay: helps nodes find and reach each other, trusted for nothing.
//!
//! A bootstrap relay runs four protocols over TCP and QUIC (Noise, Yamux): identify, ping, a
//! Kademlia server on the private ClawNet DHT ([`KAD_PROTOCOL`]) for peer routing, and a circuit
//! relay v2 server whose [`RelayLimits`] are large enough to carry a whole session for peers
//! whose hole punch failed. It never sees plaintext: everything it forwards is end-to-end
//! encrypted by Noise and signed at the application layer.
//!
//! The `clawnet-bootstrap` binary is a thin shell around [`BootstrapRelay`]; tests and tools can
//! run one in-process the same way.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod behaviour;
mod bootstrap_relay;
pub mod config;
pub mod key_file;

pub use behaviour::{AGENT_VERSION, IDENTIFY_PROTOCOL_VERSION, KAD_PROTOCOL, LimitsError};
pub use bootstrap_relay::{BootstrapRelay, RunError, StartError};
pub use config::{Cli, ConnectionQuota, RelayConfig, RelayLimits};
pub use key_file::KeyFileError;
