//! The `clawnet` command line: argument parsing, dispatch, and the one-line error contract
//! (exit 0 on success; otherwise a single `clawnet: error: ...` line on stderr and exit 1, or
//! exit 2 for bad usage). Commands that need the network or live sessions (contacts, decisions,
//! sessions, watching) talk to the running node through its local API; the others open the data
//! directory themselves when no node runs.

mod approvals;
mod audit;
mod chat;
mod contact;
mod device;
mod endpoint;
mod files;
mod identity;
mod init;
mod memory;
mod run;
mod session;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::api::ApiClient;
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
    /// Make, accept and manage contacts (needs the running node)
    #[command(subcommand)]
    Contact(contact::ContactCommand),
    /// Talk with one of your agents: an identity, or your manager
    Chat(chat::ChatArgs),
    /// List, add, edit and delete what an identity agent remembers (factual, pattern, value)
    #[command(subcommand)]
    Memory(memory::MemoryCommand),
    /// What your agents asked you to decide; --watch follows what happens live
    Approvals(approvals::ApprovalsArgs),
    /// Approve a pending request: your signed consent goes out (needs the running node)
    Approve(approvals::ApproveArgs),
    /// Reject a pending request, optionally saying why (needs the running node)
    Reject(approvals::RejectArgs),
    /// List, show and stop collaboration sessions (needs the running node)
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Which folders identities may work in, what they did to files, undo and rollback
    #[command(subcommand)]
    Files(files::FilesCommand),
    /// Certify, list and revoke the devices that run a file endpoint for this node
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Run a file endpoint on this device for the owner's node (`init` first; --data-dir is
    /// the endpoint's own directory)
    Endpoint(endpoint::EndpointArgs),
    /// Run the node: network, deliveries, tag feeds and the local API, until SIGINT/SIGTERM
    Run(run::RunArgs),
    /// Run the local demo: two owners, a governed session, attacks refused, chains verified
    Demo(crate::demo::DemoArgs),
}

/// Parses the command line, runs it and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let result = match cli.command {
        Command::Init(args) => init::run(&data_dir, args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Run(args) => {
            init_tracing();
            runtime(true).and_then(|rt| rt.block_on(run::run(&data_dir, args)))
        }
        Command::Identity(command) => runtime(false).and_then(|rt| rt.block_on(identity::run(&data_dir, command))),
        Command::Audit(command) => runtime(false).and_then(|rt| rt.block_on(audit::run(&data_dir, command))),
        Command::Contact(command) => runtime(false).and_then(|rt| rt.block_on(contact::run(&data_dir, command))),
        Command::Chat(args) => runtime(false).and_then(|rt| rt.block_on(chat::run(&data_dir, args))),
        Command::Memory(command) => runtime(false).and_then(|rt| rt.block_on(memory::run(&data_dir, command))),
        Command::Approvals(args) => runtime(false).and_then(|rt| rt.block_on(approvals::list(&data_dir, args))),
        Command::Approve(args) => runtime(false).and_then(|rt| rt.block_on(approvals::approve(&data_dir, args))),
        Command::Reject(args) => runtime(false).and_then(|rt| rt.block_on(approvals::reject(&data_dir, args))),
        Command::Session(command) => runtime(false).and_then(|rt| rt.block_on(session::run(&data_dir, command))),
        Command::Files(command) => runtime(false).and_then(|rt| rt.block_on(files::run(&data_dir, command))),
        Command::Device(command) => runtime(false).and_then(|rt| rt.block_on(device::run(&data_dir, command))),
        Command::Endpoint(args) => {
            init_tracing();
            // Never a node's directory by default: an endpoint keeps its own.
            let dir = cli.data_dir.clone().unwrap_or_else(|| data_dir.with_file_name("clawnet-endpoint"));
            runtime(true).and_then(|rt| rt.block_on(endpoint::run(&dir, args)))
        }
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

/// The API of the node running on `data_dir`, or an error that says `why` the command needs it.
async fn running_node(data_dir: &Path, why: &str) -> anyhow::Result<ApiClient> {
    ApiClient::discover(data_dir).await.with_context(|| format!("the node is not running: {why}"))
}

/// The first 8 characters of an id, as lists show it (commands accept any unique prefix).
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The async runtime for one command: a multi-threaded one for the node, a single thread for a
/// command that at most talks to it.
fn runtime(node: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder =
        if node { tokio::runtime::Builder::new_multi_thread() } else { tokio::runtime::Builder::new_current_thread() };
    Ok(builder.enable_all().build()?)
}

/// Logs to stderr, filtered by `RUST_LOG` (default: info for ClawNet, warnings for libp2p).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn,libp2p_kad=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
