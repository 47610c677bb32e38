//! A node's home: its data directory and database, and — once the owner unlocks it — the
//! secret keys that let it sign.

use std::fmt;
use std::path::{Path, PathBuf};

use clawnet_crypto::keystore::{self, KdfParams, LockKey, Passphrase};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use clawnet_crypto::{DeviceCert, IdentityId, Keyring, OwnerId, Signable, Signed, SigningSecret, Timestamp, Verified};
use clawnet_storage::{Genesis, NodeDb};

use crate::data_dir::{create_private_dir, database_path};
use crate::error::NodeError;

/// How the keystore is protected at rest.
#[derive(Debug)]
pub enum KeyProtection {
    /// Encrypted under a key derived from this passphrase (Argon2id).
    Passphrase(Passphrase),
    /// Stored in the clear: only when the owner explicitly opts in (tests, throwaway nodes).
    None,
}

/// An initialized data directory, opened for reading.
#[derive(Debug)]
pub struct NodeHome {
    dir: PathBuf,
    db: NodeDb,
}

impl NodeHome {
    /// Creates a new owner and node in `dir`: root keys, device key and certificate, keystore,
    /// and the database with its genesis audit entry.
    pub fn init(dir: &Path, node_name: &str, protection: KeyProtection) -> Result<UnlockedHome, NodeError> {
        create_private_dir(dir)?;
        let keyring = Keyring::generate();
        let lock = match protection {
            KeyProtection::Passphrase(passphrase) => LockKey::derive(&passphrase, KdfParams::DEFAULT)?,
            KeyProtection::None => LockKey::unprotected(),
        };
        let owner = keyring.owner.owner_id();
        let device_cert = DeviceCert {
            owner,
            device_key: keyring.device.public_key(),
            device_name: node_name.to_owned(),
            issued_at: Timestamp::now(),
            expires_at: None,
        };
        let genesis = Genesis {
            owner,
            device_cert: Signed::sign(&device_cert, &keyring.owner.signing),
            node_name: node_name.to_owned(),
            keystore: lock.lock(&keyring.to_bytes()),
        };
        let db = NodeDb::create(&database_path(dir), genesis, copy_key(&keyring.device))?;
        Ok(UnlockedHome::new(NodeHome { dir: dir.to_owned(), db }, keyring, lock))
    }

    /// Opens the node in `dir` for reading.
    pub fn open(dir: &Path) -> Result<NodeHome, NodeError> {
        let db = NodeDb::open(&database_path(dir))?;
        if db.recovered_batches() > 0 {
            tracing::info!(
                batches = db.recovered_batches(),
                "recovered the changes committed after the last checkpoint from the commit journal"
            );
        }
        Ok(NodeHome { dir: dir.to_owned(), db })
    }

    /// Unlocks the keystore, calling `ask` for the passphrase only if it has one.
    pub fn unlock(mut self, ask: impl FnOnce() -> Result<Passphrase, NodeError>) -> Result<UnlockedHome, NodeError> {
        let blob = self.db.read()?.keystore()?;
        let passphrase = if keystore::needs_passphrase(&blob) { Some(ask()?) } else { None };
        let (secrets, lock) = keystore::unlock(&blob, passphrase.as_ref())?;
        let keyring = Keyring::from_bytes(&secrets).map_err(|err| NodeError::KeyringCorrupt(err.to_string()))?;
        self.db.unlock_writes(copy_key(&keyring.device))?;
        Ok(UnlockedHome::new(self, keyring, lock))
    }

    /// The database.
    pub fn db(&self) -> &NodeDb {
        &self.db
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The owner of this node.
    pub fn owner(&self) -> OwnerId {
        self.db.info().owner
    }
}

/// A node whose keys are unlocked: it can sign and change things. Shareable between tasks
/// (`Arc<UnlockedHome>`): the keyring sits behind a lock, and changes to it are serialized.
pub struct UnlockedHome {
    home: NodeHome,
    owner: OwnerId,
    keyring: RwLock<Keyring>,
    lock: LockKey,
    /// Serializes decide-then-commit sequences that change the keyring or identities.
    pub(crate) identity_changes: Mutex<()>,
    /// Serializes memory writes, which allocate entry numbers before they commit.
    pub(crate) memory_writes: tokio::sync::Mutex<()>,
}

impl UnlockedHome {
    fn new(home: NodeHome, keyring: Keyring, lock: LockKey) -> UnlockedHome {
        UnlockedHome {
            home,
            owner: keyring.owner.owner_id(),
            keyring: RwLock::new(keyring),
            lock,
            identity_changes: Mutex::new(()),
            memory_writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The node, for reading.
    pub fn home(&self) -> &NodeHome {
        &self.home
    }

    /// The database.
    pub fn db(&self) -> &NodeDb {
        &self.home.db
    }

    /// The owner.
    pub fn owner(&self) -> OwnerId {
        self.owner
    }

    /// The secret keys, for reading. Do not hold the guard across an `.await`.
    pub fn keys(&self) -> RwLockReadGuard<'_, Keyring> {
        self.keyring.read().unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn keys_mut(&self) -> RwLockWriteGuard<'_, Keyring> {
        self.keyring.write().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Signs `value` with the owner's root key.
    pub fn sign_as_owner<T: Signable>(&self, value: &T) -> Signed<T> {
        Signed::sign(value, &self.keys().owner.signing)
    }

    /// Like [`UnlockedHome::sign_as_owner`], kept as verified (for our own state machine).
    pub fn sign_verified_as_owner<T: Signable>(&self, value: T) -> Verified<T> {
        Verified::sign(value, &self.keys().owner.signing)
    }

    /// Signs `value` with the key of identity `id`, if it still has one.
    pub fn sign_as_identity<T: Signable>(&self, id: &IdentityId, value: &T) -> Option<Signed<T>> {
        self.keys().identities.get(id).map(|keys| Signed::sign(value, &keys.signing))
    }

    /// Like [`UnlockedHome::sign_as_identity`], kept as verified (for our own state machine).
    pub fn sign_verified_as_identity<T: Signable>(&self, id: &IdentityId, value: T) -> Option<Verified<T>> {
        self.keys().identities.get(id).map(|keys| Verified::sign(value, &keys.signing))
    }

    /// The keystore blob for the current keyring, locked as the keystore was.
    pub(crate) fn locked_keyring(&self) -> Vec<u8> {
        self.lock.lock(&self.keys().to_bytes())
    }
}

impl fmt::Debug for UnlockedHome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockedHome").field("home", &self.home).field("lock", &self.lock).finish_non_exhaustive()
    }
}

/// A second handle on a signing key (the database's writer and the keyring each own one).
fn copy_key(key: &SigningSecret) -> SigningSecret {
    SigningSecret::from_bytes(&key.to_bytes())
}
