//! `clawnet identity create|list|retire`: through the running node's API if there is one,
//! otherwise directly on the data directory.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::api::{ApiClient, CreateIdentity};
use crate::home::NodeHome;
use crate::passphrase;
use crate::views::IdentityView;

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

pub(crate) async fn run(data_dir: &Path, command: IdentityCommand) -> anyhow::Result<ExitCode> {
    let api = ApiClient::discover(data_dir).await;
    match command {
        IdentityCommand::Create { tag, description } => {
            let view: IdentityView = match &api {
                Some(api) => api.post("/v1/identities", &CreateIdentity { tag, description }).await?,
                None => {
                    let node = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
                    IdentityView::of(&node.create_identity(&tag, &description)?)
                }
            };
            println!("Created identity {} ({}), key fingerprint {}", view.tag, view.id, view.key_fingerprint);
        }
        IdentityCommand::List { json } => {
            let identities: Vec<IdentityView> = match &api {
                Some(api) => api.get("/v1/identities").await?,
                None => NodeHome::open(data_dir)?.identities()?.iter().map(IdentityView::of).collect(),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&identities)?);
            } else if identities.is_empty() {
                println!("No identities yet: create one with `clawnet identity create TAG --description TEXT`");
            } else {
                println!("{:<20} {:<8} {:<32} DESCRIPTION", "TAG", "STATUS", "ID");
                for view in &identities {
                    println!("{:<20} {:<8} {:<32} {}", view.tag, view.status, view.id, view.description);
                }
            }
        }
        IdentityCommand::Retire { tag } => {
            let view: IdentityView = match &api {
                Some(api) => api.post(&format!("/v1/identities/{tag}/retire"), &()).await?,
                None => {
                    let node = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
                    IdentityView::of(&node.retire_identity(&tag)?)
                }
            };
            println!(
                "Retired identity {} ({}): revocation signed, keys destroyed, records archived",
                view.tag, view.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
