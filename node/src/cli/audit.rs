//! `clawnet audit verify|export`: through the running node's API if there is one, otherwise
//! directly on the data directory.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use clawnet_crypto::Fingerprint;

use crate::api::ApiClient;
use crate::home::NodeHome;
use crate::views::AuditSummaryView;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check every link and signature of the audit chain; name the first bad entry
    Verify,
    /// Write the chain as JSON Lines (one entry per line, with its raw record as stored)
    Export {
        /// Write to this file instead of standard output
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub(crate) async fn run(data_dir: &Path, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let api = ApiClient::discover(data_dir).await;
    match command {
        AuditCommand::Verify => {
            let summary = match &api {
                Some(api) => {
                    api.get::<AuditSummaryView>("/v1/audit/verify").await.context("audit chain verification failed")?
                }
                None => verify_here(data_dir)?,
            };
            println!(
                "Audit chain verified: {} entries, head {}, signed by node {} of owner {}",
                summary.entries, summary.head, summary.node, summary.owner
            );
        }
        AuditCommand::Export { out } => {
            let lines = match &api {
                Some(api) => api.text("/v1/audit/export").await?.into_bytes(),
                None => {
                    let mut lines = Vec::new();
                    NodeHome::open(data_dir)?.db().export_audit(&mut lines)?;
                    lines
                }
            };
            let count = lines.iter().filter(|&&b| b == b'\n').count();
            match out {
                None => std::io::stdout().lock().write_all(&lines)?,
                Some(path) => {
                    write_file(&path, &lines)?;
                    writeln!(std::io::stderr(), "Exported {count} audit entries to {}", path.display())?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_here(data_dir: &Path) -> anyhow::Result<AuditSummaryView> {
    let home = NodeHome::open(data_dir)?;
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
    Ok(AuditSummaryView {
        entries: summary.entries,
        head: summary.head.to_hex(),
        node: Fingerprint::of(&info.device_key).to_string(),
        owner: info.owner.fingerprint().to_string(),
    })
}

/// Writes beside the target and renames, so a failed export never leaves half a file.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", partial.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
