//! `clawnet endpoint`: the file endpoint on another device of the owner. `init` makes the
//! device's key and whitelist; without a subcommand it registers with the owner's node and
//! serves it until SIGINT/SIGTERM. Its directory is `--data-dir` (not a node's).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use libp2p::Multiaddr;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::files::parse_access;
use crate::files::remote::device::{self, DeviceEndpoint, EndpointSettings};
use crate::files::sandbox::FolderConfig;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct EndpointArgs {
    #[command(subcommand)]
    command: Option<EndpointCommand>,
    /// The owner's node, as a multiaddr ending in /p2p/<peer id> (a `listening` line of
    /// `clawnet run`) [default: `node` in endpoint.toml]
    #[arg(long, value_name = "MULTIADDR")]
    node: Option<String>,
    /// The certificate `clawnet device certify` printed on the node (needed once)
    #[arg(long, value_name = "CODE")]
    certificate: Option<String>,
}

#[derive(Debug, Subcommand)]
enum EndpointCommand {
    /// Make this device an endpoint: a device key and its whitelist; prints the key to certify
    Init {
        /// A folder agents may reach on this device: PATH or PATH:rw (repeatable; read-only
        /// unless :rw)
        #[arg(long, value_name = "PATH[:rw]")]
        folder: Vec<String>,
        /// The owner's node, saved in endpoint.toml
        #[arg(long, value_name = "MULTIADDR")]
        node: Option<String>,
    },
}

pub(crate) async fn run(dir: &Path, args: EndpointArgs) -> anyhow::Result<ExitCode> {
    if let Some(EndpointCommand::Init { folder, node }) = args.command {
        let folders = folder.iter().map(|text| parse_folder(text)).collect::<anyhow::Result<Vec<_>>>()?;
        let key = device::init(dir, &EndpointSettings { node, listen: Vec::new(), folder: folders })?;
        println!("Endpoint directory {} created.", dir.display());
        println!("Device key: {}", key.to_hex());
        println!("On the node, the owner runs:  clawnet device certify {} --name NAME", key.to_hex());
        println!(
            "Then here:                    clawnet --data-dir {} endpoint --node ADDR --certificate CODE",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(code) = &args.certificate {
        let cert = device::install_certificate(dir, code)?;
        println!("Certified as device {:?} of owner {}.", cert.device_name, cert.owner.fingerprint());
    }
    let settings = EndpointSettings::load(dir)?;
    let node = args
        .node
        .or(settings.node)
        .context("say which node to serve: --node MULTIADDR (a `listening` line of `clawnet run`)")?;
    let node: Multiaddr = node.parse().with_context(|| format!("the node's address {node:?} is not a multiaddr"))?;
    let endpoint = tokio::task::spawn_blocking({
        let dir = dir.to_owned();
        move || DeviceEndpoint::open(&dir)
    })
    .await??;
    for (path, access) in endpoint.endpoint().whitelist().folders() {
        println!("serving {path} ({})", access.as_str());
    }
    let shutdown = CancellationToken::new();
    let signal = super::run::shutdown_signal().context("cannot install signal handlers")?;
    let (registered, mut watch) = watch::channel(false);
    let name = endpoint.name().to_owned();
    let serving = tokio::spawn(endpoint.serve(node, shutdown.clone(), registered));
    tokio::spawn(async move {
        let mut announced = false;
        while watch.changed().await.is_ok() {
            if *watch.borrow() && !announced {
                println!("device {name:?} registered with the node");
                announced = true;
            }
        }
    });
    tokio::select! {
        () = signal => shutdown.cancel(),
        () = shutdown.cancelled() => {}
    }
    serving.await.context("the endpoint stopped unexpectedly")??;
    Ok(ExitCode::SUCCESS)
}

/// `PATH` or `PATH:rw` / `PATH:ro`, made absolute.
fn parse_folder(text: &str) -> anyhow::Result<FolderConfig> {
    let (path, access) = match text.rsplit_once(':') {
        Some((path, access)) if !access.contains('/') => (path, parse_access(access).map_err(anyhow::Error::msg)?),
        _ => (text, parse_access("ro").map_err(anyhow::Error::msg)?),
    };
    let path = std::path::absolute(PathBuf::from(path)).with_context(|| format!("folder {path:?}"))?;
    Ok(FolderConfig { path, access })
}
