//! The owner's side of remote endpoints: certifying a device's key (the owner key signs a
//! device certificate, recorded and audited), listing and revoking devices.

use clawnet_crypto::{DeviceCert, Signed, SigningPublicKey, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::Change;
use clawnet_storage::devices::{EndpointDevice, MAX_ENDPOINT_DEVICES};
use serde::{Deserialize, Serialize};

use super::registry::RemoteEndpoints;
use super::wire::CertificateCode;
use crate::error::NodeError;
use crate::home::{NodeHome, UnlockedHome};

/// Longest device name.
pub const MAX_DEVICE_NAME: usize = 64;

/// A request to certify a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifyRequest {
    /// The device's key, hex (printed by `clawnet endpoint init`).
    pub device_key: String,
    /// A name for it ("laptop").
    pub name: String,
}

/// A device as the owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// Its name.
    pub name: String,
    /// Its key, hex.
    pub device_key: String,
    /// When the owner certified it (ms since the epoch).
    pub certified_ms: u64,
    /// Revoked by the owner.
    pub revoked: bool,
    /// Connected now (only known while the node runs).
    pub online: bool,
    /// The folders it serves, while connected.
    pub folders: Vec<String>,
}

/// Signs a certificate for the device key in `request`, records it and returns the code the
/// device is started with.
pub fn certify(home: &UnlockedHome, request: &CertifyRequest) -> Result<String, NodeError> {
    let name = request.name.trim();
    if name.is_empty() || name.len() > MAX_DEVICE_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!("a device name is 1 to {MAX_DEVICE_NAME} printable characters")));
    }
    let key = parse_key(&request.device_key)?;
    if key == home.keys().device.public_key() {
        return Err(invalid("that is this node's own key".into()));
    }
    let _serial = home.identity_changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut devices = home.home().db().read()?.endpoint_devices()?;
    if let Some(known) = devices.iter().find(|device| certified(device).is_some_and(|cert| cert.device_key == key)) {
        let what = if known.revoked {
            "was revoked; make a new key with `clawnet endpoint init`"
        } else {
            "is already certified"
        };
        return Err(invalid(format!("that device key {what}")));
    }
    if devices.iter().any(|device| !device.revoked && certified(device).is_some_and(|cert| cert.device_name == name)) {
        return Err(invalid(format!("a device named {name:?} is already certified; choose another name")));
    }
    if devices.len() >= MAX_ENDPOINT_DEVICES {
        return Err(invalid(format!("this node already knows {MAX_ENDPOINT_DEVICES} devices")));
    }
    let cert = DeviceCert {
        owner: home.owner(),
        device_key: key,
        device_name: name.to_owned(),
        issued_at: Timestamp::now(),
        expires_at: None,
    };
    let certificate = Signed::sign(&cert, &home.keys().owner.signing);
    devices.push(EndpointDevice { certificate: certificate.clone(), revoked: false });
    home.db().commit(Change::new(move |txn| txn.put_endpoint_devices(&devices)).with_audit(AuditDraft::new(
        Actor::Owner,
        "files.device",
        format!("certify device {name} ({})", &key.to_hex()[..16]),
        "owner command",
        Outcome::Success,
    )))?;
    Ok(CertificateCode { certificate }.to_text())
}

/// Revokes the device named `name`: refused from now on, and disconnected from `remote`.
pub fn revoke(home: &UnlockedHome, remote: &RemoteEndpoints, name: &str) -> Result<(), NodeError> {
    let _serial = home.identity_changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut devices = home.home().db().read()?.endpoint_devices()?;
    let device = devices
        .iter_mut()
        .find(|device| !device.revoked && certified(device).is_some_and(|cert| cert.device_name == name))
        .ok_or_else(|| invalid(format!("no certified device is named {name:?} (see `clawnet device list`)")))?;
    device.revoked = true;
    let key = certified(device).map(|cert| cert.device_key);
    home.db().commit(Change::new(move |txn| txn.put_endpoint_devices(&devices)).with_audit(AuditDraft::new(
        Actor::Owner,
        "files.device",
        format!("revoke device {name}"),
        "owner command",
        Outcome::Success,
    )))?;
    if let Some(key) = key {
        remote.forget(&key);
    }
    Ok(())
}

/// Every device the owner certified on this node, with what `remote` knows of it.
pub fn list(home: &NodeHome, remote: Option<&RemoteEndpoints>) -> Result<Vec<DeviceView>, NodeError> {
    let online = remote.map(RemoteEndpoints::online).unwrap_or_default();
    let devices = home.db().read()?.endpoint_devices()?;
    Ok(devices
        .iter()
        .filter_map(|device| {
            let cert = certified(device)?;
            let peer = crate::network::peer_id_of(&cert.device_key);
            let connected = online.iter().find(|online| online.peer == peer && !device.revoked);
            Some(DeviceView {
                name: cert.device_name.clone(),
                device_key: cert.device_key.to_hex(),
                certified_ms: cert.issued_at.as_millis(),
                revoked: device.revoked,
                online: connected.is_some(),
                folders: connected
                    .map(|online| online.folders.iter().map(|(f, a)| format!("{f} ({})", a.as_str())).collect())
                    .unwrap_or_default(),
            })
        })
        .collect())
}

/// The certificate's content (it was signed here, so it decodes).
fn certified(device: &EndpointDevice) -> Option<clawnet_crypto::Verified<DeviceCert>> {
    device.certificate.verify().ok()
}

fn parse_key(text: &str) -> Result<SigningPublicKey, NodeError> {
    let bad =
        || invalid(format!("{text:?} is not a device key: give the 64 hex digits `clawnet endpoint init` printed"));
    let bytes: [u8; 32] = hex::decode(text.trim()).ok().and_then(|bytes| bytes.try_into().ok()).ok_or_else(bad)?;
    SigningPublicKey::from_bytes(&bytes).map_err(|_| bad())
}

fn invalid(message: String) -> NodeError {
    NodeError::Files(super::super::FileError::Invalid(message))
}
