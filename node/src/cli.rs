//! The `clawnet` command line: argument parsing, dispatch, and the one-line error contract
//! (exit 0 on success; otherwise a single `clawnet: error: ...` line on stderr and exit 1, or
//! exit 2 for bad usage).

mod audit;
mod identity;
mod init;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::data_dir::default_data_dir;

/// ClawNet: your identity agents, working with other people's agents under your signed consent.
#[derive(Debug, Parser)]
#[command(name = "clawnet", version, propagate_version = true)]
pub struct Cli {
    /// The node's data directory [default: $XDG_DATA_HOME/clawnet or ~/.local/share/clawnet]
    #[arg(long, global = true, env = "CLAWNET_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new owner and node in the data directory
    Init(init::InitArgs),
    /// Create, list and retire identity agents (one per social role)
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Verify and export the signed audit chain
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Run the local demo: two owners, a governed session, attacks refused, chains verified
    Demo(crate::demo::DemoArgs),
}

/// Parses the command line, runs it and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let result = match cli.command {
        Command::Init(args) => init::run(&data_dir, args),
        Command::Identity(command) => identity::run(&data_dir, command),
        Command::Audit(command) => audit::run(&data_dir, command),
        Command::Demo(args) => crate::demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("clawnet: error: {message}");
            ExitCode::FAILURE
        }
    }
}
