//! What the unit tests of several modules share.

use std::path::Path;

use clawnet_crypto::SigningSecret;
use clawnet_protocol::testkit::TestOwner;

use crate::{Genesis, NodeDb};

/// `owner`'s database at `path`, writable: created with its genesis if it is not there yet,
/// reopened otherwise.
pub(crate) fn open_db(path: &Path, owner: &TestOwner) -> NodeDb {
    let device = SigningSecret::from_bytes(&owner.device.to_bytes());
    if !path.exists() {
        let genesis = Genesis {
            owner: owner.id(),
            device_cert: owner.device_cert(),
            node_name: "test".into(),
            keystore: Vec::new(),
        };
        return NodeDb::create(path, genesis, device).unwrap();
    }
    let mut db = NodeDb::open(path).unwrap();
    db.unlock_writes(device).unwrap();
    db
}
