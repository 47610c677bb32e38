//! `clawnet files ...`: what identity agents did to the owner's files, and taking it back.
//! Through the running node's API if there is one, otherwise directly on the data directory.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::api::ApiClient;
use crate::config::NodeConfig;
use crate::files::owner::{
    self, FileOpView, FolderView, GrantRequest, JournalQuery, RollbackRequest, RollbackView, ScopeView, UndoRequest,
};
use crate::files::{GovernedFiles, endpoint_config};
use crate::home::{NodeHome, UnlockedHome};
use crate::passphrase;

#[derive(Debug, Subcommand)]
pub(crate) enum FilesCommand {
    /// The whitelisted folders of this node (`[[files.folder]]` in config.toml)
    Folders {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// The folders an identity may work in
    Scope {
        /// The identity's tag
        identity: String,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Let an identity work in a folder (read-only unless --write)
    Grant {
        /// The identity's tag
        identity: String,
        /// The folder (it must exist; it must also be whitelisted for anything to be reachable)
        path: String,
        /// Allow changes, not only reading
        #[arg(long)]
        write: bool,
    },
    /// Take a folder back from an identity
    Revoke {
        /// The identity's tag
        identity: String,
        /// The folder
        path: String,
    },
    /// The journal of file operations, oldest first
    History {
        #[command(flatten)]
        query: QueryArgs,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Undo one operation (it is checked again against the whitelist)
    Undo {
        /// The operation's number (see `clawnet files history`)
        op: u64,
        /// The operation is in this device's journal (see `clawnet device list`)
        #[arg(long)]
        device: Option<String>,
        /// Print JSON instead of one line
        #[arg(long)]
        json: bool,
    },
    /// Undo every operation of a session, an identity or since a time, newest first
    Rollback {
        #[command(flatten)]
        query: QueryArgs,
        /// Only show what would be undone
        #[arg(long)]
        dry_run: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Only this identity's operations (its tag)
    #[arg(long)]
    identity: Option<String>,
    /// Only this session's operations (its id or a unique prefix)
    #[arg(long)]
    session: Option<String>,
    /// Only operations since: 30m, 2h, 7d (ago), 2026-11-23, 2026-11-23T10:00Z, unix seconds
    #[arg(long)]
    since: Option<String>,
    /// The journal of this device's endpoint (see `clawnet device list`; needs the running node)
    #[arg(long)]
    device: Option<String>,
}

impl QueryArgs {
    fn query(self) -> JournalQuery {
        JournalQuery { identity: self.identity, session: self.session, since: self.since, device: self.device }
    }
}

pub(crate) async fn run(data_dir: &Path, command: FilesCommand) -> anyhow::Result<ExitCode> {
    let api = ApiClient::discover(data_dir).await;
    match command {
        FilesCommand::Folders { json } => {
            let folders: Vec<FolderView> = match &api {
                Some(api) => api.get("/v1/files/folders").await?,
                None => NodeConfig::load(data_dir)?
                    .files
                    .folder
                    .iter()
                    .map(|folder| FolderView {
                        path: folder.path.display().to_string(),
                        access: folder.access.as_str().into(),
                    })
                    .collect(),
            };
            print_folders(&folders, json, "No folder is whitelisted: add [[files.folder]] to config.toml.")?;
        }
        FilesCommand::Scope { identity, json } => {
            let scope: ScopeView = match &api {
                Some(api) => api.get(&format!("/v1/files/scope/{identity}")).await?,
                None => owner::scope(&NodeHome::open(data_dir)?, &identity)?,
            };
            print_scope(&scope, json)?;
        }
        FilesCommand::Grant { identity, path, write } => {
            let access = if write { "read-write" } else { "read-only" };
            let request = GrantRequest { identity, path, access: Some(access.into()) };
            let scope: ScopeView = match &api {
                Some(api) => api.post("/v1/files/grant", &request).await?,
                None => {
                    let (home, files) = offline(data_dir)?;
                    owner::grant(home.home(), &files, &request)?
                }
            };
            println!("Granted. {}'s scope now:", scope.identity);
            print_scope(&scope, false)?;
        }
        FilesCommand::Revoke { identity, path } => {
            let request = GrantRequest { identity, path, access: None };
            let scope: ScopeView = match &api {
                Some(api) => api.post("/v1/files/revoke", &request).await?,
                None => {
                    let (home, files) = offline(data_dir)?;
                    owner::revoke(home.home(), &files, &request)?
                }
            };
            println!("Revoked. {}'s scope now:", scope.identity);
            print_scope(&scope, false)?;
        }
        FilesCommand::History { query, json } => {
            let query = query.query();
            let history: Vec<FileOpView> = match &api {
                Some(api) => api.post("/v1/files/history", &query).await?,
                None => owner::history(&NodeHome::open(data_dir)?, None, &query)?,
            };
            print_history(&history, json)?;
        }
        FilesCommand::Undo { op, device, json } => {
            let request = UndoRequest { device };
            let undo: FileOpView = match &api {
                Some(api) => api.post(&format!("/v1/files/undo/{op}"), &request).await?,
                None => {
                    let (home, files) = offline(data_dir)?;
                    owner::undo(home.home(), &files, op, &request)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&undo)?);
            } else {
                println!("Undid operation {op} ({}) as operation {}.", undo.paths, undo.op);
            }
        }
        FilesCommand::Rollback { query, dry_run, json } => {
            let request = RollbackRequest { query: query.query(), dry_run };
            let result: RollbackView = match &api {
                Some(api) => api.post("/v1/files/rollback", &request).await?,
                None => {
                    let (home, files) = offline(data_dir)?;
                    owner::rollback(home.home(), &files, &request)?
                }
            };
            print_rollback(&result, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The data directory opened for changes, with the endpoint (which settles an interrupted
/// operation first).
fn offline(data_dir: &Path) -> anyhow::Result<(UnlockedHome, GovernedFiles)> {
    let config = NodeConfig::load(data_dir)?;
    let home = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
    let files = GovernedFiles::open(&endpoint_config(data_dir, &config.files.folder), home.db().clone())?;
    Ok((home, files))
}

fn print_folders(folders: &[FolderView], json: bool, empty: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(folders)?);
    } else if folders.is_empty() {
        println!("{empty}");
    } else {
        for folder in folders {
            println!("{:<11} {}", folder.access, folder.path);
        }
    }
    Ok(())
}

fn print_scope(scope: &ScopeView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(scope)?);
        return Ok(());
    }
    let empty = format!(
        "{} may not touch any file: grant a folder with `clawnet files grant {} PATH [--write]`.",
        scope.identity, scope.identity
    );
    print_folders(&scope.grants, false, &empty)
}

fn print_history(history: &[FileOpView], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(history)?);
    } else if history.is_empty() {
        println!("No file operations.");
    } else {
        println!("{:>5}  {:<10} {:<12} {:<10} {:<9} PATHS", "OP", "STATE", "BY", "KIND", "SESSION");
        for op in history {
            let state = match op.undone_by {
                Some(by) => format!("undone:{by}"),
                None => op.state.clone(),
            };
            let session = op.session.as_deref().map(|s| &s[..8.min(s.len())]).unwrap_or("-");
            println!("{:>5}  {:<10} {:<12} {:<10} {:<9} {}", op.op, state, op.actor, op.kind, session, op.paths);
        }
    }
    Ok(())
}

fn print_rollback(result: &RollbackView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
        return Ok(());
    }
    if result.operations.is_empty() {
        println!("Nothing to roll back.");
        return Ok(());
    }
    let list = result.operations.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    if result.dry_run {
        println!("Would undo {} operation(s), newest first: {list}", result.operations.len());
        for (op, path) in &result.conflicts {
            println!("  conflict: {path} changed after operation {op}; the rollback would stop there");
        }
    } else {
        println!("Undid {} operation(s) ({list}).", result.undone.len());
    }
    Ok(())
}
