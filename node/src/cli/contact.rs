//! `clawnet contact ...`: contacts need the network, so these commands talk to the running node.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::api::{AddContact, ApiClient, Assign, CreateInvite};
use crate::views::{ContactTagsView, ContactView, InviteView};

#[derive(Debug, Subcommand)]
pub(crate) enum ContactCommand {
    /// Print a one-time invite code to hand to someone out of band
    Invite {
        /// Hours the invite stays valid
        #[arg(long, default_value_t = 168)]
        valid_hours: u64,
    },
    /// Send a signed contact request to the owner of an invite code
    Add {
        /// The invite code (clawnet-invite:...)
        code: String,
    },
    /// List contact requests waiting for your decision
    Requests {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Accept a contact request
    Accept {
        /// The contact's id (a unique prefix of their fingerprint) or name
        id: String,
    },
    /// Reject a contact request
    Reject {
        /// The contact's id or name
        id: String,
    },
    /// List contacts, with their fingerprints
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remove a contact: they stop seeing your identities from now on
    Remove {
        /// The contact's id or name
        id: String,
    },
    /// Choose which of your identities a contact may see and talk to
    Assign {
        /// The contact's id or name
        contact: String,
        /// The tag of your identity
        identity: String,
    },
    /// Show what a contact's identities look like from here
    Tags {
        /// The contact's id or name
        contact: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(data_dir: &Path, command: ContactCommand) -> anyhow::Result<ExitCode> {
    let api = ApiClient::discover(data_dir)
        .await
        .context("the node is not running: start it with `clawnet run` (contacts need the network)")?;
    match command {
        ContactCommand::Invite { valid_hours } => {
            let body = CreateInvite { valid_secs: Some(valid_hours.saturating_mul(3600)) };
            let invite: InviteView = api.post("/v1/contacts/invite", &body).await?;
            println!("{}", invite.code);
        }
        ContactCommand::Add { code } => {
            let contact: ContactView = api.post("/v1/contacts", &AddContact { code }).await?;
            println!("Contact request sent to {} ({}); they have to accept it", contact.name, contact.id);
        }
        ContactCommand::Requests { json } => {
            let requests: Vec<ContactView> = api
                .get::<Vec<ContactView>>("/v1/contacts")
                .await?
                .into_iter()
                .filter(ContactView::is_request)
                .collect();
            print_contacts(&requests, json, "No contact requests")?;
        }
        ContactCommand::Accept { id } => {
            let contact: ContactView = api.post(&format!("/v1/contacts/{id}/accept"), &()).await?;
            println!("Accepted {} ({}): you are now contacts", contact.name, contact.id);
        }
        ContactCommand::Reject { id } => {
            let contact: ContactView = api.post(&format!("/v1/contacts/{id}/reject"), &()).await?;
            println!("Rejected the request of {} ({})", contact.name, contact.id);
        }
        ContactCommand::List { json } => {
            let contacts: Vec<ContactView> = api.get("/v1/contacts").await?;
            print_contacts(&contacts, json, "No contacts yet: `clawnet contact invite` prints a code to share")?;
        }
        ContactCommand::Remove { id } => {
            let contact: ContactView = api.post(&format!("/v1/contacts/{id}/remove"), &()).await?;
            println!("Removed {} ({}): they see no further updates of your identities", contact.name, contact.id);
        }
        ContactCommand::Assign { contact, identity } => {
            let view: ContactView = api.post(&format!("/v1/contacts/{contact}/assign"), &Assign { identity }).await?;
            println!(
                "{} ({}) may now see and talk to your identity {}",
                view.name,
                view.id,
                view.assigned_identity.unwrap_or_default()
            );
        }
        ContactCommand::Tags { contact, json } => {
            let tags: ContactTagsView = api.get(&format!("/v1/contacts/{contact}/tags")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tags)?);
            } else if tags.tags.is_empty() {
                println!("{} shows you no identities (yet)", tags.contact.name);
            } else {
                println!("{} ({}) shows you:", tags.contact.name, tags.contact.id);
                for tag in &tags.tags {
                    println!("  {:<16} {}  (key {})", tag.tag, tag.description, tag.key_fingerprint);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_contacts(contacts: &[ContactView], json: bool, empty: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(contacts)?);
    } else if contacts.is_empty() {
        println!("{empty}");
    } else {
        println!("{:<26} {:<20} {:<17} {:<12} TAGS", "ID", "NAME", "STATE", "SEES");
        for contact in contacts {
            println!(
                "{:<26} {:<20} {:<17} {:<12} {}",
                contact.id,
                contact.name,
                contact.state,
                contact.assigned_identity.as_deref().unwrap_or("-"),
                contact.visible_tags
            );
        }
    }
    Ok(())
}
