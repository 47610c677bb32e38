//! Errors of node operations, worded for the person at the terminal.

use clawnet_crypto::cert::InvalidTag;
use clawnet_crypto::keystore::KeystoreError;
use clawnet_storage::StoreError;
use clawnet_storage::audit::AuditVerifyError;

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The keystore could not be unlocked.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The unlocked keystore does not decode.
    #[error("the keystore is corrupt: {0}")]
    KeyringCorrupt(String),
    /// The audit chain does not verify.
    #[error(transparent)]
    Audit(#[from] AuditVerifyError),
    /// An identity tag is not valid.
    #[error(transparent)]
    InvalidTag(#[from] InvalidTag),
    /// An active identity already has this tag.
    #[error("an active identity is already called {0:?}: retire it first or choose another tag")]
    TagInUse(String),
    /// No active identity has this tag.
    #[error("no active identity is called {0:?} (see `clawnet identity list`)")]
    NoSuchIdentity(String),
    /// A description is too long.
    #[error("the description is {len} bytes; the limit is {max}")]
    DescriptionTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No memory entry has this number.
    #[error("identity {identity:?} has no memory entry {number} (see `clawnet memory list {identity}`)")]
    NoSuchMemory {
        /// The identity's tag.
        identity: String,
        /// The entry number asked for.
        number: u64,
    },
    /// A memory entry is unusable as given.
    #[error("invalid memory entry: {0}")]
    InvalidMemory(String),
    /// An agent could not complete its turn.
    #[error("{0}")]
    Agent(String),
    /// Governance does not allow this action to this actor.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// A contact operation is not possible.
    #[error("{0}")]
    Contact(String),
    /// A session or approval operation is not possible.
    #[error("{0}")]
    Session(String),
    /// The network failed.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// A file operation failed or was denied.
    #[error(transparent)]
    Files(#[from] crate::files::FileError),
    /// The running node refused or failed a request (its message).
    #[error("{0}")]
    Api(String),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No passphrase could be obtained.
    #[error("{0}")]
    Passphrase(String),
    /// A file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl NodeError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
        let context = context.into();
        move |source| NodeError::Io { context, source }
    }
}
