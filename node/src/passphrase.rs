//! Where the keystore passphrase comes from: `CLAWNET_PASSPHRASE`, or the terminal.

use std::io::IsTerminal;

use clawnet_crypto::keystore::Passphrase;

use crate::error::NodeError;

/// The environment variable a passphrase may be given in (for scripts and services).
pub const PASSPHRASE_ENV: &str = "CLAWNET_PASSPHRASE";

/// Reads the passphrase that unlocks an existing keystore: `CLAWNET_PASSPHRASE`, else a prompt.
pub fn for_unlock() -> Result<Passphrase, NodeError> {
    read("Passphrase: ", false)
}

/// Reads a new passphrase: `CLAWNET_PASSPHRASE`, else a prompt asked twice.
pub fn choose_new() -> Result<Passphrase, NodeError> {
    read("New passphrase: ", true)
}

fn read(prompt: &str, confirm: bool) -> Result<Passphrase, NodeError> {
    if let Ok(text) = std::env::var(PASSPHRASE_ENV) {
        return non_empty(text);
    }
    if !std::io::stdin().is_terminal() {
        return Err(NodeError::Passphrase(format!(
            "the keystore needs a passphrase: set {PASSPHRASE_ENV} or run in a terminal"
        )));
    }
    let prompt_for = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|err| NodeError::Passphrase(format!("cannot read the passphrase: {err}")))
    };
    let first = prompt_for(prompt)?;
    if confirm && prompt_for("Repeat passphrase: ")? != first {
        return Err(NodeError::Passphrase("the passphrases do not match".into()));
    }
    non_empty(first)
}

fn non_empty(text: String) -> Result<Passphrase, NodeError> {
    if text.is_empty() {
        return Err(NodeError::Passphrase(
            "an empty passphrase protects nothing: choose one, or pass --insecure-no-passphrase".into(),
        ));
    }
    Ok(Passphrase::new(text))
}
