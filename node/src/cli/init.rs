//! `clawnet init`: a new owner and node.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::{NodeConfig, config_path};
use crate::home::{KeyProtection, NodeHome};
use crate::passphrase::{self, PASSPHRASE_ENV};

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// A name for this node, shown to you and (later) to your contacts
    #[arg(long)]
    name: String,
    /// Store the keystore unencrypted (tests and throwaway nodes only)
    #[arg(long)]
    insecure_no_passphrase: bool,
}

pub(crate) fn run(data_dir: &Path, args: InitArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.trim();
    anyhow::ensure!(!name.is_empty() && name.len() <= 64, "the node name must be 1 to 64 characters");
    let protection = if args.insecure_no_passphrase {
        KeyProtection::None
    } else {
        KeyProtection::Passphrase(passphrase::choose_new()?)
    };
    let encrypted = matches!(protection, KeyProtection::Passphrase(_));
    let home = NodeHome::init(data_dir, name, protection)
        .with_context(|| format!("cannot initialize a node in {}", data_dir.display()))?;
    let config = config_path(data_dir);
    if !config.exists() {
        std::fs::write(&config, NodeConfig::template())
            .with_context(|| format!("cannot write {}", config.display()))?;
    }
    println!("Initialized node {name:?} in {}", data_dir.display());
    println!("Owner fingerprint: {}  (compare it with your contacts out of band)", home.owner().fingerprint());
    if encrypted {
        println!("Keystore: encrypted with your passphrase (Argon2id); {PASSPHRASE_ENV} can supply it to scripts");
    } else {
        println!(
            "Keystore: NOT encrypted (--insecure-no-passphrase); anyone who can read {} has your keys",
            data_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
