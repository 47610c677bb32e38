//! The file endpoint: identity agents work on the owner's files through a small set of
//! primitives, behind two independent authorization layers that both fail closed, with every
//! change backed up, journaled, audited and undoable.
//!
//! - [`scope`]: layer 1, the identity's scope (granted folders, read-only or read-write), checked
//!   by governance before a directive reaches the endpoint.
//! - [`sandbox`]: layer 2, the node-local whitelist, checked by the endpoint at the moment of use
//!   with resolution that cannot leave a folder (no `..`, no symbolic links, no other file
//!   systems, no hard-linked files, never the node's own data).
//! - [`blobs`]: the content-addressed backup store.
//! - [`entry`]: reading an entry's state (fingerprint, or saved with its content), staging new
//!   content, removing trees.
//! - [`endpoint`]: the primitives, the journal (write-ahead: the synced decision decides an
//!   operation, a crash after it is rolled forward at the next start), undo and rollback.
//! - `intent`: the note of the change being prepared, so a crash before its decision leaves
//!   nothing behind.
//! - `spare`: a file made ahead of time for the next write to stage its content in.
//! - `decision`: the write-ahead copy of the journal entry that decides a change, synced before
//!   the change applies; the journal (and the audit log) receive it after the reply.
//! - [`governed`]: the node's side: layer 1, security events, the async API.
//! - [`remote`]: the endpoint on another device of the owner: the device's process, and the
//!   node's registry of the devices it routes directives to.

pub mod blobs;
mod decision;
pub mod endpoint;
pub mod entry;
pub mod governed;
mod intent;
pub mod owner;
pub mod path;
pub mod remote;
pub mod request;
pub mod sandbox;
pub mod scope;
mod spare;

use clawnet_storage::StoreError;
use clawnet_storage::files::FileAccess;

pub use endpoint::{EndpointConfig, FileEndpoint, RollbackFilter, RollbackPlan};
pub use governed::GovernedFiles;
pub use path::FsPath;
pub use request::{EntryInfo, EntryKind, FileDirective, FileReply, FileRequest, WriteMode};
pub use sandbox::{Denial, FolderConfig, Whitelist};

/// Which authorization layer refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layer {
    /// The identity's scope, checked by governance.
    Scope,
    /// The node-local whitelist, checked by the endpoint.
    Whitelist,
}

impl Layer {
    /// `L1 (scope)` or `L2 (whitelist)`.
    pub fn label(self) -> &'static str {
        match self {
            Layer::Scope => "L1 (identity scope)",
            Layer::Whitelist => "L2 (folder whitelist)",
        }
    }
}

/// Why a file operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// An authorization layer refused; recorded as a security event.
    #[error("denied by {}: {reason}", layer.label())]
    Denied {
        /// Which layer.
        layer: Layer,
        /// Why.
        reason: String,
    },
    /// Nothing at that path.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// Something is already at the destination.
    #[error("{0} already exists; choose another name, or delete it first")]
    Exists(String),
    /// A directory was needed.
    #[error("{0} is not a directory")]
    NotADirectory(String),
    /// A regular file was needed.
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// A bound was exceeded.
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge {
        /// What.
        what: String,
        /// The bound.
        limit: u64,
    },
    /// A malformed request.
    #[error("{0}")]
    Invalid(String),
    /// Undo would overwrite changes made since the operation.
    #[error("{path} changed after operation {op}; undo would lose that change, so nothing was done")]
    Conflict {
        /// The operation.
        op: u64,
        /// The path that changed.
        path: String,
    },
    /// No such journal entry, or one that cannot be undone.
    #[error("{0}")]
    NotUndoable(String),
    /// A backup blob is gone.
    #[error("backup {0} is missing from the backup store")]
    BackupMissing(String),
    /// A backup blob's content no longer matches its name.
    #[error("backup {0} is damaged (its content does not match its hash)")]
    BackupCorrupt(String),
    /// The whitelist or the backup store could not be set up.
    #[error("file endpoint configuration: {0}")]
    Config(String),
    /// An operating-system error.
    #[error("{context}: {detail}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS's words.
        detail: String,
    },
    /// A remote endpoint failed, or could not be reached.
    #[error("file endpoint on device {device}: {detail}")]
    Remote {
        /// The device's name.
        device: String,
        /// What happened.
        detail: String,
    },
    /// The journal could not be read or written.
    #[error("file journal: {0}")]
    Store(#[from] StoreError),
}

impl FileError {
    pub(crate) fn denied_l2(denial: Denial) -> FileError {
        FileError::Denied { layer: Layer::Whitelist, reason: denial.reason() }
    }

    pub(crate) fn io(context: &'static str, err: rustix::io::Errno) -> FileError {
        FileError::Io { context, detail: std::io::Error::from(err).to_string() }
    }

    pub(crate) fn std_io(context: &'static str) -> impl Fn(std::io::Error) -> FileError {
        move |err| FileError::Io { context, detail: err.to_string() }
    }

    /// Whether this is an authorization refusal (a security event).
    pub fn is_denial(&self) -> bool {
        matches!(self, FileError::Denied { .. })
    }
}

/// The in-node endpoint of the node in `data_dir`: the backup store in `DATA/files`, and the
/// data directory itself out of every agent's reach.
pub fn endpoint_config(data_dir: &std::path::Path, folders: &[FolderConfig]) -> EndpointConfig {
    EndpointConfig {
        folders: folders.to_vec(),
        state_dir: data_dir.join("files"),
        protected: vec![data_dir.to_owned()],
    }
}

/// Parses `read-only` / `read-write` (also `ro` / `rw`).
pub fn parse_access(text: &str) -> Result<FileAccess, String> {
    match text {
        "read-only" | "ro" | "read" => Ok(FileAccess::ReadOnly),
        "read-write" | "rw" | "write" => Ok(FileAccess::ReadWrite),
        other => Err(format!("unknown access {other:?}: use read-only or read-write")),
    }
}
