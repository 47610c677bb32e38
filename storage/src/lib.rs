//! The node's database: one redb file holding the keystore, identities, contacts, sessions, the
//! replay cache, the outbox and inbox, identity memory, owner approvals, and the signed audit chain.
//!
//! This is the only crate that touches redb. Reads go through a [`ReadView`]; every write is a
//! [`Change`] — the records it writes plus the audit entries that describe it — committed
//! atomically and durably by the group-commit [`writer`], so a state change and its audit
//! entry are never separated by a crash. See `ARCHITECTURE.md` for the on-disk invariants.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod approvals;
pub mod audit;
pub mod contacts;
mod db;
pub mod deliveries;
pub mod devices;
mod error;
pub mod feed;
pub mod files;
pub mod identities;
pub mod invites;
mod journal;
pub mod keystore;
pub mod memory;
pub mod peers;
mod recent;
pub mod replay;
mod schema;
pub mod sessions;
mod snapshots;
#[cfg(test)]
mod testing;
mod view;
pub mod writer;

pub use db::{Genesis, NodeDb, NodeInfo};
pub use error::StoreError;
pub use snapshots::ValueMemories;
pub use view::{ReadView, Txn};
pub use writer::{Change, CommitReceipt, Pending, WhenDurable, WriterStats};
