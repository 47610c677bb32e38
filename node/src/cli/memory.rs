//! `clawnet memory list|add|edit|delete`: the owner's view of each identity's memory. Through
//! the running node's API if there is one, otherwise directly on the data directory. Every
//! write is audited (the entry's number and kind, never its text).

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::agents::memory::{LexicalRetriever, MemoryItem, MemoryScope, MemoryWriter, Retriever, parse_kind};
use crate::api::{AddMemory, ApiClient, EditMemory};
use crate::home::NodeHome;
use crate::passphrase;

#[derive(Debug, Subcommand)]
pub(crate) enum MemoryCommand {
    /// List an identity's memory, or what of it matches a query
    List {
        /// The identity's tag
        identity: String,
        /// Only entries relevant to this, best first
        #[arg(long)]
        query: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Add an entry. KIND: fact, pattern, never-share, stance or bottom-line
    /// (bottom-line TEXT: "SUBJECT at most|at least LIMIT [UNIT][, open at TARGET]")
    Add {
        /// The identity's tag
        identity: String,
        /// fact | pattern | never-share | stance | bottom-line
        kind: String,
        /// The entry
        text: String,
    },
    /// Replace an entry's text (and, with --kind, its kind)
    Edit {
        /// The identity's tag
        identity: String,
        /// The entry's number (see `clawnet memory list`)
        number: u64,
        /// The new text
        text: String,
        /// A new kind
        #[arg(long)]
        kind: Option<String>,
    },
    /// Delete an entry
    Delete {
        /// The identity's tag
        identity: String,
        /// The entry's number
        number: u64,
    },
}

pub(crate) async fn run(data_dir: &Path, command: MemoryCommand) -> anyhow::Result<ExitCode> {
    let api = ApiClient::discover(data_dir).await;
    match command {
        MemoryCommand::List { identity, query, json } => {
            let items: Vec<MemoryItem> = match &api {
                Some(api) => api.get(&format!("/v1/memory/{identity}")).await?,
                None => {
                    let home = NodeHome::open(data_dir)?;
                    // The active identity with this tag, else the latest retired one (archived).
                    let record = home
                        .identities()?
                        .into_iter()
                        .filter(|i| i.tag.to_string() == identity)
                        .max_by_key(|i| (i.is_active(), i.created_at))
                        .ok_or_else(|| crate::NodeError::NoSuchIdentity(identity.clone()))?;
                    home.memories(MemoryScope::Identity(record.id), None)?
                }
            };
            let items: Vec<MemoryItem> = match &query {
                Some(query) => LexicalRetriever.rank(query, &items, 20).into_iter().map(|(_, i)| i.clone()).collect(),
                None => items,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else if items.is_empty() {
                match query {
                    Some(query) => println!("Nothing in {identity}'s memory matches {query:?}."),
                    None => println!(
                        "{identity}'s memory is empty: add to it with `clawnet memory add {identity} fact \"...\"`"
                    ),
                }
            } else {
                println!("{:>4}  {:<8} {:<12} {:<6} TEXT", "#", "LAYER", "KIND", "BY");
                for item in &items {
                    println!("{:>4}  {:<8} {:<12} {:<6} {}", item.id, item.layer, item.kind, item.author, item.text);
                }
            }
        }
        MemoryCommand::Add { identity, kind, text } => {
            let item: MemoryItem = match &api {
                Some(api) => api.post(&format!("/v1/memory/{identity}"), &AddMemory { kind, text }).await?,
                None => {
                    let kind = parse_kind(&kind, &text)?;
                    let node = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
                    node.memory_add(&identity, kind, &text, MemoryWriter::Owner).await?
                }
            };
            println!("Added {} entry {} to {}'s {} memory", item.kind, item.id, item.identity, item.layer);
        }
        MemoryCommand::Edit { identity, number, text, kind } => {
            let item: MemoryItem = match &api {
                Some(api) => {
                    api.post(&format!("/v1/memory/{identity}/{number}/edit"), &EditMemory { text, kind }).await?
                }
                None => {
                    let kind = kind.map(|kind| parse_kind(&kind, &text)).transpose()?;
                    let node = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
                    node.memory_edit(&identity, number, &text, kind).await?
                }
            };
            println!("Edited {}'s memory entry {} ({})", item.identity, item.id, item.kind);
        }
        MemoryCommand::Delete { identity, number } => {
            let item: MemoryItem = match &api {
                Some(api) => api.post(&format!("/v1/memory/{identity}/{number}/delete"), &()).await?,
                None => {
                    let node = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
                    node.memory_delete(&identity, number).await?
                }
            };
            println!("Deleted {}'s memory entry {} ({}): {}", item.identity, item.id, item.kind, item.text);
        }
    }
    Ok(ExitCode::SUCCESS)
}
