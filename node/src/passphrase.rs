//! Where the keystore passphrase comes from: `CLAWNET_PASSPHRASE`, or the terminal.

use std::io::IsTerminal;

use clawnet_crypto::keystore::Passphrase;

use crate::error::NodeError;

/// The environment variable a passphrase may be given in (for scripts and services).
pub const PASSPHRASE_ENV: &str = "CLAWNET_PASSPHRASE";

/// How to obtain a passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseSource {
    /// `CLAWNET_PASSPHRASE`, else a prompt on the terminal.
    EnvOrTerminal,
}

impl PassphraseSource {
    /// Reads the passphrase to unlock an existing keystore.
    pub fn unlock(self) -> Result<Passphrase, NodeError> {
        self.read("Passphrase: ", false)
    }

    /// Reads a new passphrase (asked twice on a terminal).
    pub fn choose(self) -> Result<Passphrase, NodeError> {
        self.read("New passphrase: ", true)
    }

    fn read(self, prompt: &str, confirm: bool) -> Result<Passphrase, NodeError> {
        if let Ok(text) = std::env::var(PASSPHRASE_ENV) {
            return non_empty(text);
        }
        if !std::io::stdin().is_terminal() {
            return Err(NodeError::Passphrase(format!(
                "the keystore needs a passphrase: set {PASSPHRASE_ENV} or run in a terminal"
            )));
        }
        let first = rpassword::prompt_password(prompt)
            .map_err(|err| NodeError::Passphrase(format!("cannot read the passphrase: {err}")))?;
        if confirm {
            let second = rpassword::prompt_password("Repeat passphrase: ")
                .map_err(|err| NodeError::Passphrase(format!("cannot read the passphrase: {err}")))?;
            if first != second {
                return Err(NodeError::Passphrase("the passphrases do not match".into()));
            }
        }
        non_empty(first)
    }
}

fn non_empty(text: String) -> Result<Passphrase, NodeError> {
    if text.is_empty() {
        return Err(NodeError::Passphrase(
            "an empty passphrase protects nothing: choose one, or pass --insecure-no-passphrase".into(),
        ));
    }
    Ok(Passphrase::new(text))
}
