//! The storage error type: what went wrong and what the user can do about it.

use std::path::PathBuf;

/// Why a storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No database at the path.
    #[error("no ClawNet node at {0}: run `clawnet init` first (or pass the right --data-dir)")]
    NotInitialized(PathBuf),
    /// A database already exists at the path.
    #[error("a ClawNet node already exists at {0}")]
    AlreadyInitialized(PathBuf),
    /// The file is not a ClawNet database.
    #[error("{0} is not a ClawNet database")]
    NotClawnet(PathBuf),
    /// The database was written by a newer build.
    #[error("database schema version {found} is newer than this build supports ({supported}): upgrade clawnet")]
    SchemaTooNew {
        /// The version in the file.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// The database schema version is not one this build knows.
    #[error("database schema version {found} is unknown to this build (it reads {supported})")]
    SchemaUnknown {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Another process has the database open.
    #[error("{0} is in use by another clawnet process: stop it, or run this command through it")]
    InUse(PathBuf),
    /// A stored record does not decode.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// redb reported an error.
    #[error("database error while {context}: {detail}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// redb's message.
        detail: String,
    },
    /// An earlier commit failed, so later writes are refused until the database is reopened
    /// (after a failed fsync nothing written since can be trusted).
    #[error("an earlier database write failed ({0}); restart clawnet to recover")]
    Poisoned(String),
    /// A write was attempted on a database opened without the node key.
    #[error("the node key is locked: unlock the keystore before changing anything")]
    ReadOnly,
    /// The key offered to sign audit entries is not this node's device key.
    #[error("that is not this node's device key")]
    WrongDeviceKey,
    /// The stored device certificate does not verify against the owner key.
    #[error("the stored device certificate is invalid: {0}")]
    BadDeviceCert(String),
    /// An I/O error outside redb (creating directories, writing an export).
    #[error("{context}: {detail}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        detail: String,
    },
}

impl StoreError {
    pub(crate) fn db(context: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
        move |err| StoreError::Database { context, detail: err.to_string() }
    }

    pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(clawnet_crypto::DecodeError) -> StoreError {
        move |err| StoreError::Corrupt { what, detail: err.to_string() }
    }
}

/// Converts any redb error into [`StoreError::Database`].
pub(crate) trait DbResultExt<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> DbResultExt<T> for Result<T, E> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|err| StoreError::db(context)(err.into()))
    }
}
