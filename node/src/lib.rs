//! The ClawNet node: the owner's data directory and unlocked keys, identities, contacts, the
//! network actor and reliable delivery, the owner's agents, the local API and the `clawnet`
//! command line.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod agents;
pub mod api;
pub mod approvals;
pub mod chat;
pub mod cli;
pub mod config;
pub mod contacts;
pub mod daemon;
pub mod data_dir;
pub mod delivery;
pub mod demo;
mod error;
pub mod feed;
pub mod files;
pub mod governance;
pub mod home;
pub mod identities;
pub mod network;
pub mod node;
pub mod passphrase;
pub mod sessions;
pub mod views;

pub use error::NodeError;
pub use home::{NodeHome, UnlockedHome};
