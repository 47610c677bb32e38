//! `clawnet-bootstrap`: runs a ClawNet bootstrap relay until SIGINT or SIGTERM.
//!
//! Stdout carries, for scripts, first `metrics http://<addr>/metrics` if `--metrics-address` is
//! given, then one `listening <multiaddr>/p2p/<peer id>` line per listen address; logs go to stderr (filter with `RUST_LOG`); a fatal error is one line on stderr and a
//! non-zero exit.

use std::{
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Parser as _;
use clawnet_bootstrap::{BootstrapRelay, Cli, key_file};
use libp2p::{Multiaddr, PeerId};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Usage errors keep to one line like every other error; --help and --version print
        // normally.
        Err(err) if err.use_stderr() => {
            let rendered = err.to_string();
            eprintln!("{}", rendered.lines().next().unwrap_or("error: invalid arguments"));
            return ExitCode::from(2);
        }
        Err(err) => err.exit(),
    };
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let keypair = key_file::load_or_create(&cli.key_file)?;
    let relay = BootstrapRelay::start(keypair, &cli.relay_config())?;
    let peer_id = relay.peer_id();
    if let Some(address) = relay.metrics_address() {
        print_line(format_args!("metrics http://{address}/metrics"));
    }
    relay.run(shutdown, |addr| print_listening(addr, peer_id)).await?;
    Ok(())
}

/// Prints the `listening` line scripts wait for.
fn print_listening(addr: &Multiaddr, peer_id: PeerId) {
    print_line(format_args!("listening {addr}/p2p/{peer_id}"));
}

/// Prints one line for scripts. A closed stdout is not fatal to a relay.
fn print_line(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        tracing::warn!(%err, "cannot write to stdout");
    }
}

/// Completes on the first SIGINT or SIGTERM. Handlers are installed before returning, so a
/// signal that arrives during startup is not lost.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot wait for ctrl-c; shutting down");
        }
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
