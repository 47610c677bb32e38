//! What an agent asks the file endpoint, and what it answers: the directive that carries a
//! request across the boundary between the layers, with who asks, in which session, and on
//! which layer-1 grant.

use clawnet_protocol::SessionId;
use clawnet_protocol::audit::Actor;
use clawnet_storage::files::FileAccess;
use serde::{Deserialize, Serialize};

use super::path::FsPath;

/// How a write treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    /// Only if nothing is there.
    Create,
    /// Replace an existing file's content (the old content is backed up).
    Overwrite,
    /// Add at the end of an existing file.
    Append,
}

/// One primitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileRequest {
    /// A file's bytes, from `offset`, at most `max` (bounded by the endpoint).
    Read {
        /// Which file.
        path: FsPath,
        /// Where to start.
        #[serde(default)]
        offset: u64,
        /// How many bytes at most.
        #[serde(default)]
        max: Option<u64>,
    },
    /// A directory's entries.
    List {
        /// Which directory.
        path: FsPath,
    },
    /// One entry's kind, size and time.
    Stat {
        /// Which entry.
        path: FsPath,
    },
    /// Entries below a directory whose name contains `pattern` (`*` matches anything).
    Search {
        /// Where to look.
        path: FsPath,
        /// The name pattern, case-insensitive.
        pattern: String,
    },
    /// Writes a file.
    Write {
        /// Which file.
        path: FsPath,
        /// The bytes.
        #[serde(with = "clawnet_crypto::encoding::bytes")]
        content: Vec<u8>,
        /// Create, overwrite or append.
        mode: WriteMode,
    },
    /// Moves an entry to where nothing is.
    Move {
        /// From.
        from: FsPath,
        /// To.
        to: FsPath,
    },
    /// Renames an entry within its directory.
    Rename {
        /// Which entry.
        path: FsPath,
        /// Its new name (one component).
        name: String,
    },
    /// Copies an entry (a file or a whole directory) to where nothing is.
    Copy {
        /// From.
        from: FsPath,
        /// To.
        to: FsPath,
    },
    /// Creates a directory.
    Mkdir {
        /// Where.
        path: FsPath,
    },
    /// Deletes an entry (recoverably: its content stays in the backup store).
    Delete {
        /// Which entry.
        path: FsPath,
    },
}

impl FileRequest {
    /// A short name: `read`, `write`, `move`.
    pub fn name(&self) -> &'static str {
        match self {
            FileRequest::Read { .. } => "read",
            FileRequest::List { .. } => "list",
            FileRequest::Stat { .. } => "stat",
            FileRequest::Search { .. } => "search",
            FileRequest::Write { mode: WriteMode::Create, .. } => "create",
            FileRequest::Write { mode: WriteMode::Overwrite, .. } => "overwrite",
            FileRequest::Write { mode: WriteMode::Append, .. } => "append",
            FileRequest::Move { .. } => "move",
            FileRequest::Rename { .. } => "rename",
            FileRequest::Copy { .. } => "copy",
            FileRequest::Mkdir { .. } => "mkdir",
            FileRequest::Delete { .. } => "delete",
        }
    }

    /// Every path it touches and the access each needs. A rename's destination is its
    /// sibling, so its one path needs write access.
    pub fn accesses(&self) -> Vec<(&FsPath, FileAccess)> {
        use FileAccess::{ReadOnly, ReadWrite};
        match self {
            FileRequest::Read { path, .. }
            | FileRequest::List { path }
            | FileRequest::Stat { path }
            | FileRequest::Search { path, .. } => vec![(path, ReadOnly)],
            FileRequest::Write { path, .. }
            | FileRequest::Mkdir { path }
            | FileRequest::Delete { path }
            | FileRequest::Rename { path, .. } => vec![(path, ReadWrite)],
            FileRequest::Move { from, to } => vec![(from, ReadWrite), (to, ReadWrite)],
            FileRequest::Copy { from, to } => vec![(from, ReadOnly), (to, ReadWrite)],
        }
    }

    /// The first name it would create or change that is reserved for the endpoint's own
    /// temporary files (`.clawnet-...`): an agent making one could block a later operation
    /// there, or have it mistaken for litter after a crash.
    pub fn reserved_name(&self) -> Option<&str> {
        let mut names: Vec<&str> =
            self.accesses().into_iter().filter(|(_, access)| access.can_write()).map(|(path, _)| path.name()).collect();
        if let FileRequest::Rename { name, .. } = self {
            names.push(name);
        }
        names.into_iter().find(|name| name.starts_with(RESERVED_PREFIX))
    }

    /// Whether it changes the file system.
    pub fn is_mutation(&self) -> bool {
        self.accesses().iter().any(|(_, access)| access.can_write())
    }

    /// The paths, for the audit log.
    pub fn describe(&self) -> String {
        match self {
            FileRequest::Move { from, to } | FileRequest::Copy { from, to } => format!("{from} -> {to}"),
            FileRequest::Rename { path, name } => format!("{path} -> {name}"),
            FileRequest::Search { path, pattern } => format!("{path} ({pattern:?})"),
            FileRequest::Read { path, .. }
            | FileRequest::List { path }
            | FileRequest::Stat { path }
            | FileRequest::Write { path, .. }
            | FileRequest::Mkdir { path }
            | FileRequest::Delete { path } => path.to_string(),
        }
    }
}

/// How the endpoint's own temporary names begin; no request may create or change one.
pub const RESERVED_PREFIX: &str = ".clawnet-";

/// A request on its way to the endpoint, after layer 1 allowed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDirective {
    /// Who asks: an identity agent, or the owner.
    pub actor: Actor,
    /// The session the agent is working in, if any.
    pub session: Option<SessionId>,
    /// Layer 1's reason to allow it (the grant), for the journal.
    pub basis: String,
    /// The primitive.
    pub request: FileRequest,
}

/// What kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (shown, never followed).
    Symlink,
    /// Anything else (device, socket, pipe): shown, never opened.
    Other,
}

/// One entry, as `stat` and `list` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Its path.
    pub path: String,
    /// Its kind.
    pub kind: EntryKind,
    /// Its length in bytes (files).
    pub len: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub modified: i64,
}

/// What the endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileReply {
    /// Bytes read.
    Content {
        /// The bytes.
        #[serde(with = "clawnet_crypto::encoding::bytes")]
        bytes: Vec<u8>,
        /// The file's whole length.
        total: u64,
    },
    /// A directory's entries (or search hits), sorted by path.
    Entries {
        /// The entries.
        entries: Vec<EntryInfo>,
        /// Whether the list was cut at the bound.
        truncated: bool,
    },
    /// One entry.
    Entry(EntryInfo),
    /// A change, done and journaled as operation `op`.
    Done {
        /// The journal number (for `clawnet files undo`).
        op: u64,
    },
}
