//! What a node and its remote file endpoints say to each other on `/clawnet/endpoint/1`.
//!
//! The device calls the node once to register (and again as a heartbeat); from then on the
//! node calls the device with directives and the owner's journal commands. Who is calling is
//! the Noise-authenticated peer id, never something inside the message.

use clawnet_crypto::{DeviceCert, Signed, WireFormat, encoding};
use clawnet_protocol::audit::Actor;
use clawnet_storage::files::{FileAccess, FileOpRecord};
use serde::{Deserialize, Serialize};

use super::super::endpoint::{RollbackFilter, RollbackPlan};
use super::super::request::{FileDirective, FileReply};
use super::super::{FileError, Layer};
use crate::network::MAX_ENDPOINT_FRAME;

/// A call on `/clawnet/endpoint/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointCall {
    /// Device to node: "I am this certified device, serving these folders with these
    /// primitives". Repeated as a heartbeat.
    Register {
        /// The owner's certificate of the device key the connection is authenticated with.
        certificate: Signed<DeviceCert>,
        /// The device's whitelist (its layer 2), for routing; the device enforces it.
        folders: Vec<(String, FileAccess)>,
        /// The primitives it serves.
        primitives: Vec<String>,
    },
    /// Node to device: run a directive layer 1 allowed.
    Execute(FileDirective),
    /// Node to device: the device's journal, filtered.
    History(RollbackFilter),
    /// Node to device: undo one operation.
    Undo {
        /// The operation's number in the device's journal.
        op: u64,
        /// Who asks (the owner).
        actor: Actor,
    },
    /// Node to device: what a rollback would do.
    PlanRollback(RollbackFilter),
    /// Node to device: roll back.
    Rollback {
        /// What to roll back.
        filter: RollbackFilter,
        /// Who asks (the owner).
        actor: Actor,
    },
}

impl WireFormat for EndpointCall {
    const NAME: &'static str = "endpoint call";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = MAX_ENDPOINT_FRAME;
}

/// The answer to an [`EndpointCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointAnswer {
    /// The node accepted the registration; its own certificate lets the device check it is
    /// talking to a node of the same owner.
    Registered {
        /// The node's device certificate.
        node_certificate: Signed<DeviceCert>,
    },
    /// The call was refused (who is calling may not ask this); recorded as a security event.
    Refused(String),
    /// The directive's result.
    Reply(FileReply),
    /// Journal entries, oldest first.
    History(Vec<FileOpRecord>),
    /// The undo's own operation number.
    Undone(u64),
    /// A rollback plan.
    Plan(RollbackPlan),
    /// The undo operations of a rollback.
    RolledBack(Vec<u64>),
    /// The operation failed on the device.
    Failed(RemoteFailure),
}

impl WireFormat for EndpointAnswer {
    const NAME: &'static str = "endpoint answer";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = MAX_ENDPOINT_FRAME;
}

/// A [`FileError`] as it crosses the wire: the kinds a caller acts on keep their shape, the
/// rest travel as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteFailure {
    /// An authorization layer refused (on the device: its whitelist).
    Denied {
        /// Which layer.
        layer: Layer,
        /// Why.
        reason: String,
    },
    /// Nothing at that path.
    NotFound(String),
    /// Something is already at the destination.
    Exists(String),
    /// A directory was needed.
    NotADirectory(String),
    /// A regular file was needed.
    NotAFile(String),
    /// A bound was exceeded.
    TooLarge {
        /// What.
        what: String,
        /// The bound.
        limit: u64,
    },
    /// A malformed request.
    Invalid(String),
    /// Undo would overwrite a later change.
    Conflict {
        /// The operation.
        op: u64,
        /// The path that changed.
        path: String,
    },
    /// No such operation, or not undoable.
    NotUndoable(String),
    /// Anything else, as the device said it.
    Other(String),
}

impl From<&FileError> for RemoteFailure {
    fn from(err: &FileError) -> RemoteFailure {
        match err.clone() {
            FileError::Denied { layer, reason } => RemoteFailure::Denied { layer, reason },
            FileError::NotFound(path) => RemoteFailure::NotFound(path),
            FileError::Exists(path) => RemoteFailure::Exists(path),
            FileError::NotADirectory(path) => RemoteFailure::NotADirectory(path),
            FileError::NotAFile(path) => RemoteFailure::NotAFile(path),
            FileError::TooLarge { what, limit } => RemoteFailure::TooLarge { what, limit },
            FileError::Invalid(text) => RemoteFailure::Invalid(text),
            FileError::Conflict { op, path } => RemoteFailure::Conflict { op, path },
            FileError::NotUndoable(text) => RemoteFailure::NotUndoable(text),
            other => RemoteFailure::Other(other.to_string()),
        }
    }
}

impl RemoteFailure {
    /// The error on the node's side, naming the device where it is not a plain outcome.
    pub fn into_error(self, device: &str) -> FileError {
        match self {
            RemoteFailure::Denied { layer, reason } => {
                FileError::Denied { layer, reason: format!("on device {device}: {reason}") }
            }
            RemoteFailure::NotFound(path) => FileError::NotFound(path),
            RemoteFailure::Exists(path) => FileError::Exists(path),
            RemoteFailure::NotADirectory(path) => FileError::NotADirectory(path),
            RemoteFailure::NotAFile(path) => FileError::NotAFile(path),
            RemoteFailure::TooLarge { what, limit } => FileError::TooLarge { what, limit },
            RemoteFailure::Invalid(text) => FileError::Invalid(text),
            RemoteFailure::Conflict { op, path } => FileError::Conflict { op, path },
            RemoteFailure::NotUndoable(text) => FileError::NotUndoable(text),
            RemoteFailure::Other(text) => FileError::Remote { device: device.into(), detail: text },
        }
    }
}

/// The text the owner hands to a device after certifying its key: `clawnet-device:` and the
/// certificate, base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateCode {
    /// The owner-signed certificate.
    pub certificate: Signed<DeviceCert>,
}

impl WireFormat for CertificateCode {
    const NAME: &'static str = "device certificate code";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 1024;
}

const CODE_PREFIX: &str = "clawnet-device:";

impl CertificateCode {
    /// The text form.
    pub fn to_text(&self) -> String {
        use base64::Engine as _;
        format!("{CODE_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(encoding::encode(self)))
    }

    /// Parses the text form (surrounding whitespace allowed); the signature is checked by
    /// whoever relies on it.
    pub fn from_text(text: &str) -> Result<CertificateCode, String> {
        use base64::Engine as _;
        let not_a_code = || "not a device certificate: it starts with `clawnet-device:` (see `clawnet device certify`)";
        let body = text.trim().strip_prefix(CODE_PREFIX).ok_or_else(not_a_code)?;
        if body.len() > CertificateCode::MAX_LEN * 4 / 3 + 4 {
            return Err(not_a_code().into());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| not_a_code())?;
        encoding::decode(&bytes).map_err(|err| format!("the device certificate is damaged: {err}"))
    }
}
