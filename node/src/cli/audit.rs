//! `clawnet audit verify|export`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::home::NodeHome;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check every link and signature of the audit chain; name the first bad entry
    Verify,
    /// Write the chain as JSON Lines (one entry per line, with its raw signed record)
    Export {
        /// Write to this file instead of standard output
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub(crate) fn run(data_dir: &Path, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let home = NodeHome::open(data_dir)?;
    match command {
        AuditCommand::Verify => {
            let show_progress = std::io::stderr().is_terminal();
            let summary = home
                .db()
                .verify_audit_with_progress(|checked| {
                    if show_progress {
                        eprint!("\rverified {checked} entries...");
                    }
                })
                .context("audit chain verification failed")?;
            if show_progress {
                eprint!("\r");
            }
            let info = home.db().info();
            println!(
                "Audit chain verified: {} entries, head {}, signed by node {} of owner {}",
                summary.entries,
                summary.head,
                clawnet_crypto::Fingerprint::of(&info.device_key),
                info.owner.fingerprint()
            );
        }
        AuditCommand::Export { out: None } => {
            let stdout = std::io::stdout();
            home.db().export_audit(&mut stdout.lock())?;
        }
        AuditCommand::Export { out: Some(path) } => {
            // Write beside the target and rename, so a failed export never leaves half a file.
            let partial = path.with_extension("partial");
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?,
            );
            let count = home.db().export_audit(&mut file)?;
            let file = file.into_inner().map_err(|err| err.into_error())?;
            file.sync_all().with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(std::io::stderr(), "Exported {count} audit entries to {}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
