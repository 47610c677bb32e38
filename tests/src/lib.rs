//! Shared pieces of ClawNet's end-to-end tests: real nodes and relays on loopback, started in
//! this process, the fixed owner whose database the crash-test helper writes to, and snapshots
//! of directory trees for the file endpoint's tests.

pub mod cluster;
pub mod file_crash;
pub mod file_tree;
pub mod model_server;
pub mod processes;

use std::path::Path;

use anyhow::Context;
use clawnet_crypto::SigningSecret;
use clawnet_protocol::testkit::TestOwner;
use clawnet_storage::{Genesis, NodeDb};

/// The owner of every node the crash-test helper creates (deterministic, so a restarted helper
/// can unlock the database it created before).
pub fn test_owner() -> TestOwner {
    TestOwner::new(42, &[])
}

/// Opens the node database at `path` for writing, creating it on first use.
pub fn open_or_create(path: &Path) -> anyhow::Result<NodeDb> {
    let owner = test_owner();
    let device = SigningSecret::from_bytes(&owner.device.to_bytes());
    if path.exists() {
        let mut db = NodeDb::open(path).context("opening the database")?;
        db.unlock_writes(device)?;
        Ok(db)
    } else {
        let genesis = Genesis {
            owner: owner.id(),
            device_cert: owner.device_cert(),
            node_name: "crash test".into(),
            keystore: Vec::new(),
        };
        Ok(NodeDb::create(path, genesis, device)?)
    }
}
