//! The node's side of remote endpoints: which certified devices are connected and which
//! folders each serves, so a directive goes to the device that holds its paths; and calling
//! them.
//!
//! A device is accepted only if the connection is authenticated (Noise) with the key of a
//! certificate the owner signed on this node and has not revoked. The node trusts a device
//! to enforce its own whitelist (layer 2) and never to see a directive layer 1 refused.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use clawnet_crypto::{DeviceCert, Signed, Timestamp, encoding};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::NodeDb;
use clawnet_storage::files::FileAccess;
use libp2p::PeerId;

use super::super::path::FsPath;
use super::super::request::FileRequest;
use super::super::{FileError, Layer};
use super::wire::{EndpointAnswer, EndpointCall};
use crate::network::{Network, device_key_of};

/// Most folders one device may serve.
pub const MAX_DEVICE_FOLDERS: usize = 64;

/// A certified device whose endpoint is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineDevice {
    /// Its name, from its certificate.
    pub name: String,
    /// Its peer id (its certified key).
    pub peer: PeerId,
    /// The folders it serves, as it says (it enforces them).
    pub folders: Vec<(FsPath, FileAccess)>,
    /// The primitives it serves.
    pub primitives: Vec<String>,
}

impl OnlineDevice {
    fn holds(&self, path: &FsPath) -> bool {
        self.folders.iter().any(|(folder, _)| path.is_within(folder))
    }
}

/// The remote endpoints of this node.
#[derive(Debug)]
pub struct RemoteEndpoints {
    db: NodeDb,
    /// The node's own whitelisted folders: a device may not claim them.
    local_folders: Vec<FsPath>,
    network: OnceLock<Network>,
    online: Mutex<HashMap<PeerId, OnlineDevice>>,
}

impl RemoteEndpoints {
    /// No device connected yet; `local_folders` stay the node's own.
    pub fn new(db: NodeDb, local_folders: Vec<FsPath>) -> RemoteEndpoints {
        RemoteEndpoints { db, local_folders, network: OnceLock::new(), online: Mutex::new(HashMap::new()) }
    }

    /// Connects the registry to the running network (once; without it nothing is online).
    pub fn attach(&self, network: Network) {
        let _ = self.network.set(network);
    }

    /// Devices connected now, by name.
    pub fn online(&self) -> Vec<OnlineDevice> {
        let mut devices: Vec<OnlineDevice> = self.lock().values().cloned().collect();
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        devices
    }

    /// The connected device named `name`.
    pub fn by_name(&self, name: &str) -> Result<OnlineDevice, FileError> {
        self.lock().values().find(|device| device.name == name).cloned().ok_or_else(|| FileError::Remote {
            device: name.into(),
            detail: "not connected: start `clawnet endpoint` on that device (see `clawnet device list`)".into(),
        })
    }

    /// The device that holds `path`, if one does.
    pub fn holding(&self, path: &FsPath) -> Option<OnlineDevice> {
        self.lock().values().find(|device| device.holds(path)).cloned()
    }

    /// Where `request` runs: on a device if every path it touches is in that device's folders,
    /// here if none is in any device's. A request across places is refused (a move cannot be
    /// atomic across two file systems).
    pub fn route(&self, request: &FileRequest) -> Result<Option<OnlineDevice>, FileError> {
        let places: Vec<Option<OnlineDevice>> =
            request.accesses().into_iter().map(|(path, _)| self.holding(path)).collect();
        let first = places.first().cloned().flatten();
        if places.iter().any(|place| place.as_ref().map(|d| d.peer) != first.as_ref().map(|d| d.peer)) {
            return Err(FileError::Invalid(format!(
                "{} spans two devices; read on one and write on the other instead",
                request.describe()
            )));
        }
        Ok(first)
    }

    /// The last connection to `peer` closed: its endpoint is offline until it registers again.
    pub fn disconnected(&self, peer: &PeerId) {
        if let Some(device) = self.lock().remove(peer) {
            tracing::info!(device = %device.name, "file endpoint disconnected");
        }
    }

    /// Takes a revoked device off line at once.
    pub(crate) fn forget(&self, device_key: &clawnet_crypto::SigningPublicKey) {
        self.lock().retain(|peer, _| device_key_of(peer).as_ref() != Some(device_key));
    }

    /// Answers a call a peer made to this node (blocking: it may audit).
    pub fn answer(&self, peer: PeerId, request: &[u8]) -> Vec<u8> {
        let answer = match encoding::decode::<EndpointCall>(request) {
            Ok(EndpointCall::Register { certificate, folders, primitives }) => {
                match self.register(peer, &certificate, folders, primitives) {
                    Ok(()) => EndpointAnswer::Registered { node_certificate: self.db.info().device_cert.clone() },
                    Err(refusal) => EndpointAnswer::Refused(refusal),
                }
            }
            Ok(_) => self.refuse(peer, "a node takes only registrations from its devices".into()),
            Err(err) => self.refuse(peer, format!("malformed call: {err}")),
        };
        encoding::encode(&answer)
    }

    /// Calls `device`, waiting for its answer.
    pub async fn call(&self, device: &OnlineDevice, call: &EndpointCall) -> Result<EndpointAnswer, FileError> {
        let unreachable = |detail: String| FileError::Remote { device: device.name.clone(), detail };
        let network = self.network.get().ok_or_else(|| unreachable("the node's network is not running".into()))?;
        let bytes = network
            .call_endpoint(device.peer, Vec::new(), encoding::encode(call))
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        match encoding::decode::<EndpointAnswer>(&bytes) {
            Ok(EndpointAnswer::Failed(failure)) => Err(failure.into_error(&device.name)),
            Ok(EndpointAnswer::Refused(reason)) => Err(unreachable(format!("refused: {reason}"))),
            Ok(answer) => Ok(answer),
            Err(err) => Err(unreachable(format!("malformed answer: {err}"))),
        }
    }

    /// [`RemoteEndpoints::call`] from a blocking thread of the runtime (the owner's commands).
    pub fn call_blocking(&self, device: &OnlineDevice, call: &EndpointCall) -> Result<EndpointAnswer, FileError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| FileError::Remote {
            device: device.name.clone(),
            detail: "not connected: the node is not running".into(),
        })?;
        runtime.block_on(self.call(device, call))
    }

    fn register(
        &self,
        peer: PeerId,
        certificate: &Signed<DeviceCert>,
        folders: Vec<(String, FileAccess)>,
        primitives: Vec<String>,
    ) -> Result<(), String> {
        let cert = match self.check_certificate(peer, certificate) {
            Ok(cert) => cert,
            Err(reason) => {
                self.security_event(peer, &reason);
                return Err(reason);
            }
        };
        let folders = self.check_folders(peer, folders)?;
        let device = OnlineDevice { name: cert.device_name.clone(), peer, folders, primitives };
        let first = self.lock().insert(peer, device.clone()).is_none_or(|before| before != device);
        if first {
            let listed: Vec<String> = device.folders.iter().map(|(f, a)| format!("{f} ({})", a.as_str())).collect();
            tracing::info!(device = %device.name, folders = ?listed, "file endpoint registered");
            let draft = AuditDraft::new(
                Actor::Node,
                "files.endpoint",
                format!("device {} online: {}", device.name, listed.join(", ")),
                "device certificate",
                Outcome::Success,
            );
            if let Err(err) = self.db.append(draft) {
                tracing::warn!(%err, "cannot audit a file endpoint registration");
            }
        }
        Ok(())
    }

    /// The certificate must be the owner's, for the key the connection is authenticated with,
    /// certified on this node and not revoked.
    fn check_certificate(&self, peer: PeerId, certificate: &Signed<DeviceCert>) -> Result<DeviceCert, String> {
        let owner = self.db.info().owner;
        let cert = DeviceCert::verify_for(certificate, &owner, Timestamp::now())
            .map_err(|err| format!("the device certificate is not valid for this owner: {err}"))?;
        let key = device_key_of(&peer).ok_or("the connection's peer id is not an ed25519 key")?;
        if cert.device_key != key {
            return Err("the device certificate is for another key than the connection's".into());
        }
        let devices = self.db.read().and_then(|view| view.endpoint_devices()).map_err(|err| err.to_string())?;
        match devices.iter().find(|device| device.certificate == *certificate) {
            Some(device) if device.revoked => Err(format!("device {} was revoked by the owner", cert.device_name)),
            Some(_) => Ok((*cert).clone()),
            None => Err(format!("device {} was never certified on this node", cert.device_name)),
        }
    }

    fn check_folders(
        &self,
        peer: PeerId,
        folders: Vec<(String, FileAccess)>,
    ) -> Result<Vec<(FsPath, FileAccess)>, String> {
        if folders.len() > MAX_DEVICE_FOLDERS {
            return Err(format!("a device may serve at most {MAX_DEVICE_FOLDERS} folders"));
        }
        let online = self.lock().clone();
        let mut parsed = Vec::new();
        for (text, access) in folders {
            let folder = FsPath::parse(&text).map_err(|err| format!("folder {text:?}: {err}"))?;
            let overlaps = |other: &FsPath| folder.is_within(other) || other.is_within(&folder);
            if let Some(local) = self.local_folders.iter().find(|local| overlaps(local)) {
                return Err(format!("folder {folder} overlaps {local}, which this node serves itself"));
            }
            for device in online.values().filter(|device| device.peer != peer) {
                if let Some((other, _)) = device.folders.iter().find(|(other, _)| overlaps(other)) {
                    return Err(format!("folder {folder} overlaps {other}, which device {} serves", device.name));
                }
            }
            parsed.push((folder, access));
        }
        Ok(parsed)
    }

    fn refuse(&self, peer: PeerId, reason: String) -> EndpointAnswer {
        self.security_event(peer, &reason);
        EndpointAnswer::Refused(reason)
    }

    fn security_event(&self, peer: PeerId, reason: &str) {
        tracing::warn!(%peer, reason, "file endpoint refused");
        let draft = AuditDraft::new(
            Actor::Node,
            "security.endpoint",
            format!("call from peer {peer}"),
            "device certificate",
            Outcome::Denied(reason.into()),
        );
        if let Err(err) = self.db.append(draft) {
            tracing::warn!(%err, "cannot audit a refused endpoint call");
        }
    }

    /// Records on this node that `device`'s whitelist refused a directive (the device records
    /// it too, in its own chain).
    pub(crate) fn record_device_denial(
        &self,
        device: &OnlineDevice,
        actor: Actor,
        request: &FileRequest,
        err: &FileError,
    ) -> Result<(), FileError> {
        let FileError::Denied { reason, .. } = err else { return Ok(()) };
        self.db.append(AuditDraft::new(
            actor,
            "security.files",
            format!("{} {}", request.name(), request.describe()),
            format!("{} on device {}", Layer::Whitelist.label(), device.name),
            Outcome::Denied(reason.clone()),
        ))?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, OnlineDevice>> {
        self.online.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
