//! The locked keystore blob, stored in the node's meta table.

use crate::error::{DbResultExt, StoreError};
use crate::schema::{META, META_KEYSTORE};
use crate::view::{ReadView, Txn};

impl ReadView {
    /// The locked keystore blob.
    pub fn keystore(&self) -> Result<Vec<u8>, StoreError> {
        let meta = self.tx.open_table(META).ctx("reading the keystore")?;
        let blob = meta.get(META_KEYSTORE).ctx("reading the keystore")?;
        blob.map(|value| value.value().to_vec())
            .ok_or(StoreError::Corrupt { what: "keystore", detail: "missing".into() })
    }
}

impl Txn<'_> {
    /// Replaces the locked keystore blob.
    pub fn put_keystore(&mut self, blob: &[u8]) -> Result<(), StoreError> {
        let mut meta = self.write_table(META).ctx("writing the keystore")?;
        meta.insert(META_KEYSTORE, blob).ctx("writing the keystore")?;
        Ok(())
    }
}
