//! The file primitives as agent tools: offered to an identity agent whose owner granted it at
//! least one folder, and run through both authorization layers ([`GovernedFiles`]). A refusal
//! reaches the brain as an error it can read (and the owner as a security event); every change
//! is journaled with the session the agent is working in, so the owner can roll the session back.

use base64::Engine;
use clawnet_storage::files::FileAccess;
use clawnet_storage::identities::IdentityRecord;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::conversation::{ToolCall, ToolSpec};
use super::tools::{AgentEvent, Audience, ToolExtension, ToolOutput, spec};
use crate::files::{FileError, FileReply, FileRequest, FsPath, GovernedFiles, WriteMode};

/// List a directory.
pub const FILE_LIST: &str = "file_list";
/// Read a file.
pub const FILE_READ: &str = "file_read";
/// Find entries by name.
pub const FILE_SEARCH: &str = "file_search";
/// Write a file.
pub const FILE_WRITE: &str = "file_write";
/// Make a directory.
pub const FILE_MKDIR: &str = "file_mkdir";
/// Move or rename an entry.
pub const FILE_MOVE: &str = "file_move";
/// Copy an entry.
pub const FILE_COPY: &str = "file_copy";
/// Delete an entry (recoverably).
pub const FILE_DELETE: &str = "file_delete";

/// Most bytes of a file one read shows the brain.
const MAX_READ_FOR_BRAIN: u64 = 64 * 1024;

/// The file tools of a node.
#[derive(Debug, Clone)]
pub struct FileTools {
    files: GovernedFiles,
}

impl FileTools {
    /// Tools over `files`.
    pub fn new(files: GovernedFiles) -> FileTools {
        FileTools { files }
    }

    async fn run(&self, identity: &IdentityRecord, audience: &Audience, call: &ToolCall) -> ToolOutput {
        let request = match parse(call) {
            Ok(request) => request,
            Err(message) => return ToolOutput::error(message),
        };
        let session = match audience {
            Audience::Counterpart { session, .. } => *session,
            Audience::Owner => None,
        };
        match self.files.request_async(identity.id, session, request).await {
            Ok(reply) => ToolOutput::ok(reply_json(reply)),
            Err(err @ FileError::Denied { .. }) => {
                let reason = err.to_string();
                let mut output = ToolOutput::error(reason.clone());
                output.event = Some(AgentEvent::Refused { reason });
                output
            }
            Err(err) => ToolOutput::error(err.to_string()),
        }
    }
}

impl ToolExtension for FileTools {
    fn specs(&self, identity: &IdentityRecord) -> Vec<ToolSpec> {
        let Ok(scope) = self.files.scope(identity.id) else { return Vec::new() };
        if scope.grants.is_empty() {
            return Vec::new();
        }
        let folders: Vec<String> =
            scope.grants.iter().map(|grant| format!("{} ({})", grant.root, grant.access.as_str())).collect();
        let writable = scope.grants.iter().any(|grant| grant.access == FileAccess::ReadWrite);
        let within = format!("Absolute paths inside your folders: {}.", folders.join(", "));
        let path = json!({"type": "string", "description": "an absolute path"});
        let mut specs = vec![
            spec(
                FILE_LIST,
                &format!("List a directory. {within}"),
                json!({"type": "object", "properties": {"path": path}, "required": ["path"]}),
            ),
            spec(
                FILE_READ,
                &format!("Read a file (text; at most 64 KiB from offset). {within}"),
                json!({"type": "object", "properties": {"path": path, "offset": {"type": "integer", "minimum": 0}}, "required": ["path"]}),
            ),
            spec(
                FILE_SEARCH,
                &format!("Find entries below a directory whose name contains a pattern (* matches anything). {within}"),
                json!({"type": "object", "properties": {"path": path, "pattern": {"type": "string"}}, "required": ["path", "pattern"]}),
            ),
        ];
        if writable {
            let changes = "Every change is backed up and your owner can undo it.";
            specs.extend([
                spec(
                    FILE_WRITE,
                    &format!("Write a text file: create (only if absent), overwrite or append. {changes} {within}"),
                    json!({"type": "object", "properties": {
                        "path": path, "content": {"type": "string"},
                        "mode": {"type": "string", "enum": ["create", "overwrite", "append"]}
                    }, "required": ["path", "content"]}),
                ),
                spec(
                    FILE_MKDIR,
                    &format!("Make a directory. {within}"),
                    json!({"type": "object", "properties": {"path": path}, "required": ["path"]}),
                ),
                spec(
                    FILE_MOVE,
                    &format!("Move or rename a file or directory to where nothing is yet. {changes} {within}"),
                    json!({"type": "object", "properties": {"from": path, "to": path}, "required": ["from", "to"]}),
                ),
                spec(
                    FILE_COPY,
                    &format!("Copy a file or directory to where nothing is yet. {within}"),
                    json!({"type": "object", "properties": {"from": path, "to": path}, "required": ["from", "to"]}),
                ),
                spec(
                    FILE_DELETE,
                    &format!("Delete a file or directory (your owner can restore it). {within}"),
                    json!({"type": "object", "properties": {"path": path}, "required": ["path"]}),
                ),
            ]);
        }
        specs
    }

    fn call<'a>(
        &'a self,
        identity: &'a IdentityRecord,
        audience: &'a Audience,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Option<ToolOutput>> {
        async move {
            if !call.name.starts_with("file_") {
                return None;
            }
            Some(self.run(identity, audience, call).await)
        }
        .boxed()
    }
}

/// The request a call asks for, or what is wrong with it (for the brain).
fn parse(call: &ToolCall) -> Result<FileRequest, String> {
    let args = &call.arguments;
    let text = |name: &str| -> Result<String, String> {
        args.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{} needs a string {name:?}", call.name))
    };
    let path = |name: &str| -> Result<FsPath, String> { FsPath::parse(&text(name)?).map_err(|err| err.to_string()) };
    Ok(match call.name.as_str() {
        FILE_LIST => FileRequest::List { path: path("path")? },
        FILE_READ => FileRequest::Read {
            path: path("path")?,
            offset: args.get("offset").and_then(Value::as_u64).unwrap_or(0),
            max: Some(MAX_READ_FOR_BRAIN),
        },
        FILE_SEARCH => FileRequest::Search { path: path("path")?, pattern: text("pattern")? },
        FILE_WRITE => FileRequest::Write {
            path: path("path")?,
            content: text("content")?.into_bytes(),
            mode: match args.get("mode").and_then(Value::as_str).unwrap_or("create") {
                "create" => WriteMode::Create,
                "overwrite" => WriteMode::Overwrite,
                "append" => WriteMode::Append,
                other => return Err(format!("unknown mode {other:?}: use create, overwrite or append")),
            },
        },
        FILE_MKDIR => FileRequest::Mkdir { path: path("path")? },
        FILE_MOVE => FileRequest::Move { from: path("from")?, to: path("to")? },
        FILE_COPY => FileRequest::Copy { from: path("from")?, to: path("to")? },
        FILE_DELETE => FileRequest::Delete { path: path("path")? },
        other => return Err(format!("there is no file tool {other:?}")),
    })
}

/// A reply as the brain reads it: text content as text, other bytes as base64.
fn reply_json(reply: FileReply) -> Value {
    match reply {
        FileReply::Content { bytes, total } => match String::from_utf8(bytes) {
            Ok(text) => json!({"content": text, "length": total}),
            Err(err) => json!({
                "content_base64": base64::engine::general_purpose::STANDARD.encode(err.as_bytes()),
                "length": total,
            }),
        },
        FileReply::Entries { entries, truncated } => json!({"entries": entries, "truncated": truncated}),
        FileReply::Entry(entry) => json!(entry),
        FileReply::Done { op } => json!({"done": true, "operation": op}),
    }
}
