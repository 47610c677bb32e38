//! The ClawNet node: the owner's data directory, unlocked keys, identity management, and the
//! `clawnet` command line. Later issues add the network actor, agents and the local API here.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cli;
pub mod data_dir;
pub mod demo;
mod error;
pub mod home;
pub mod identities;
pub mod passphrase;

pub use error::NodeError;
pub use home::{NodeHome, UnlockedHome};
