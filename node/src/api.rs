//! The local API: how the `clawnet` command talks to a running node. Loopback only, and every
//! request must carry the bearer token the node writes to `DIR/api.json` (readable only by the
//! owner) when it starts.

mod client;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use client::ApiClient;
pub use server::ApiServer;

/// The file a running node announces its API in.
pub const API_FILE: &str = "api.json";

/// Where the API of the node in `dir` is announced.
pub fn api_file(dir: &Path) -> PathBuf {
    dir.join(API_FILE)
}

/// The contents of `api.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApiAnnouncement {
    address: SocketAddr,
    token: String,
}

/// Request body of `POST /v1/identities`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateIdentity {
    /// The identity's tag.
    pub tag: String,
    /// What it is for.
    pub description: String,
}

/// Request body of `POST /v1/contacts/invite`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateInvite {
    /// Seconds the invite stays valid.
    pub valid_secs: Option<u64>,
}

/// Request body of `POST /v1/contacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddContact {
    /// The invite code.
    pub code: String,
}

/// Request body of `POST /v1/contacts/{id}/assign`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assign {
    /// The tag of the identity the contact may see.
    pub identity: String,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
}

/// Request body of `POST /v1/memory/{identity}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddMemory {
    /// `fact`, `pattern`, `never-share`, `stance` or `bottom-line`.
    pub kind: String,
    /// The entry.
    pub text: String,
}

/// Request body of `POST /v1/memory/{identity}/{number}/edit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EditMemory {
    /// The new text.
    pub text: String,
    /// A new kind, if it changes.
    pub kind: Option<String>,
}
