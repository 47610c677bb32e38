//! `clawnet device ...`: the owner's other devices that run a file endpoint for this node
//! (`clawnet endpoint` on the device). Through the running node's API if there is one,
//! otherwise directly on the data directory.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use crate::api::ApiClient;
use crate::files::remote::RemoteEndpoints;
use crate::files::remote::certify::{self, CertifyRequest, DeviceView};
use crate::home::NodeHome;
use crate::passphrase;

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Certify a device's key with the owner key; prints the code to start its endpoint with
    Certify {
        /// The device key `clawnet endpoint init` printed (64 hex digits)
        device_key: String,
        /// A name for the device ("laptop")
        #[arg(long)]
        name: String,
    },
    /// The certified devices, and which are connected now
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: the node refuses it from now on
    Revoke {
        /// The device's name
        name: String,
    },
}

pub(crate) async fn run(data_dir: &Path, command: DeviceCommand) -> anyhow::Result<ExitCode> {
    let api = ApiClient::discover(data_dir).await;
    match command {
        DeviceCommand::Certify { device_key, name } => {
            let request = CertifyRequest { device_key, name };
            let code: String = match &api {
                Some(api) => api.post("/v1/devices/certify", &request).await?,
                None => certify::certify(&NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?, &request)?,
            };
            println!("Certified {:?}. On that device, run:", request.name);
            println!("  clawnet --data-dir ENDPOINT_DIR endpoint --node NODE_ADDR --certificate {code}");
        }
        DeviceCommand::List { json } => {
            let devices: Vec<DeviceView> = match &api {
                Some(api) => api.get("/v1/devices").await?,
                None => certify::list(&NodeHome::open(data_dir)?, None)?,
            };
            print_devices(&devices, json, api.is_some())?;
        }
        DeviceCommand::Revoke { name } => {
            match &api {
                Some(api) => api.post::<_, ()>(&format!("/v1/devices/revoke/{name}"), &()).await?,
                None => {
                    let home = NodeHome::open(data_dir)?.unlock(passphrase::for_unlock)?;
                    let offline = RemoteEndpoints::new(home.db().clone(), Vec::new());
                    certify::revoke(&home, &offline, &name)?;
                }
            }
            println!("Revoked {name:?}: the node refuses it from now on.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_devices(devices: &[DeviceView], json: bool, running: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(devices)?);
        return Ok(());
    }
    if devices.is_empty() {
        println!("No device is certified: run `clawnet endpoint init` on the device, then `clawnet device certify`.");
        return Ok(());
    }
    println!("{:<16} {:<9} {:<17} FOLDERS", "NAME", "STATE", "KEY");
    for device in devices {
        let state = match (device.revoked, device.online, running) {
            (true, _, _) => "revoked",
            (false, true, _) => "online",
            (false, false, true) => "offline",
            (false, false, false) => "-",
        };
        let folders = if device.folders.is_empty() { "-".to_owned() } else { device.folders.join(", ") };
        println!("{:<16} {:<9} {:<17} {folders}", device.name, state, &device.device_key[..16]);
    }
    Ok(())
}
