//! `clawnet run`: the node as a long-running process, until SIGINT or SIGTERM.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::config::NodeConfig;
use crate::daemon::Daemon;
use crate::home::NodeHome;
use crate::passphrase;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Listen on this multiaddr instead of the configured ones (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Use this bootstrap relay instead of the configured ones (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Serve the local API on this loopback address
    #[arg(long, value_name = "ADDR")]
    api_listen: Option<String>,
    /// Do not reserve relay slots on the bootstrap relays
    #[arg(long)]
    no_relay: bool,
}

pub(crate) async fn run(data_dir: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = NodeConfig::load(data_dir)?;
    if !args.listen.is_empty() {
        config.network.listen = args.listen;
    }
    if !args.bootstrap.is_empty() {
        config.network.bootstrap = args.bootstrap;
    }
    if let Some(api) = args.api_listen {
        config.api.listen = api;
    }
    if args.no_relay {
        config.network.relay = false;
    }
    config.validate()?;
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let home = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
    let daemon = Daemon::start(home, config).await?;
    let node = daemon.node().clone();
    announce(&node, daemon.api_address()).await;
    shutdown.await;
    tracing::info!("shutting down");
    daemon.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Prints the lines scripts wait for: the peer id, every listen address, the API address.
async fn announce(node: &crate::node::Node, api: std::net::SocketAddr) {
    let peer = node.network.local_peer();
    // Listen addresses appear shortly after start; wait a moment for the first ones.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut addresses = Vec::new();
    while Instant::now() < deadline {
        addresses = node.network.addresses().await.unwrap_or_default();
        if !addresses.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "node {:?} running as {peer} (owner {})", node.name(), node.home.owner().fingerprint());
    for address in addresses {
        let _ = writeln!(out, "listening {address}/p2p/{peer}");
    }
    let _ = writeln!(out, "api {api}");
    let _ = out.flush();
}

/// Completes on the first SIGINT or SIGTERM; handlers are installed before returning.
pub(crate) fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
