//! The ClawNet protocol: versioned wire types, their limits, and pure state machines for the
//! contact lifecycle and the collaboration-session lifecycle.
//!
//! Nothing here does I/O or reads a clock: callers pass `now`, the trust they hold about other
//! owners ([`Roster`]) and a [`NonceLedger`]. Every rejection is a typed error, so the node can
//! tell an attack (recorded as a security event) from an ordinary refusal.
//!
//! No wire type can address a manager agent: messages name owners, identities and sessions, and
//! managers have no id, no key and no address.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod audit;
pub mod contact;
pub mod ids;
pub mod limits;
pub mod mailbox;
pub mod replay;
pub mod roster;
pub mod session;
pub mod tags;
pub mod wire;

pub use ids::{MessageId, Nonce, SessionId};
pub use replay::{MemoryLedger, NonceLedger};
pub use roster::{Roster, TrustError};
#[cfg(feature = "testkit")]
pub mod testkit;
