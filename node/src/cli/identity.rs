//! `clawnet identity create|list|retire`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use clawnet_crypto::Fingerprint;
use clawnet_storage::identities::{IdentityRecord, IdentityStatus};
use serde_json::json;

use crate::home::NodeHome;
use crate::passphrase;

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Create an identity agent for one social role (for example "work")
    Create {
        /// Its tag: 1-32 of a-z, 0-9, '-', '_', starting with a letter
        tag: String,
        /// What this identity is for (shown to the contacts you assign to it)
        #[arg(long)]
        description: String,
    },
    /// List identities, active and retired
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Retire an identity: revoke it and destroy its keys (its records are archived)
    Retire {
        /// The tag of the active identity to retire
        tag: String,
    },
}

pub(crate) fn run(data_dir: &Path, command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Create { tag, description } => {
            let mut node = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
            let record = node.create_identity(&tag, &description)?;
            println!("Created identity {} ({}), key fingerprint {}", record.tag, record.id, key_fingerprint(&record));
        }
        IdentityCommand::List { json } => {
            let identities = NodeHome::open(data_dir)?.identities()?;
            if json {
                let list: Vec<_> = identities.iter().map(to_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if identities.is_empty() {
                println!("No identities yet: create one with `clawnet identity create TAG --description TEXT`");
            } else {
                println!("{:<20} {:<8} {:<32} DESCRIPTION", "TAG", "STATUS", "ID");
                for record in &identities {
                    println!("{:<20} {:<8} {:<32} {}", record.tag, status(record), record.id, record.description);
                }
            }
        }
        IdentityCommand::Retire { tag } => {
            let mut node = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
            let record = node.retire_identity(&tag)?;
            println!(
                "Retired identity {} ({}): revocation signed, keys destroyed, records archived",
                record.tag, record.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status(record: &IdentityRecord) -> &'static str {
    if record.is_active() { "active" } else { "retired" }
}

fn key_fingerprint(record: &IdentityRecord) -> String {
    match record.cert.decode_unverified() {
        Ok(cert) => Fingerprint::of(&cert.signing_key).to_string(),
        Err(_) => "unreadable".into(),
    }
}

fn to_json(record: &IdentityRecord) -> serde_json::Value {
    let retired_at = match &record.status {
        IdentityStatus::Retired { at, .. } => Some(at.as_millis()),
        IdentityStatus::Active => None,
    };
    json!({
        "tag": record.tag.as_str(),
        "id": record.id.to_hex(),
        "status": status(record),
        "description": record.description,
        "created_at_ms": record.created_at.as_millis(),
        "retired_at_ms": retired_at,
        "key_fingerprint": key_fingerprint(record),
    })
}
