//! The file endpoint as its own process on another device of the owner (`clawnet endpoint`).
//!
//! Its directory holds a device key (`device.key`, 0600), its whitelist (`endpoint.toml`),
//! the owner's certificate of its key (`certificate`) and, once certified, a database of its
//! own: the journal of what it changed and an audit chain signed by its key. It dials the
//! node, registers with the certificate, and from then on takes calls from that node only:
//! layer 2 is checked here, on the device, whatever the node asks.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clawnet_crypto::{DeviceCert, OwnerId, Signed, SigningPublicKey, SigningSecret, Timestamp, encoding};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_storage::{Genesis, NodeDb};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::super::FileError;
use super::super::endpoint::{EndpointConfig, FileEndpoint};
use super::super::sandbox::FolderConfig;
use super::wire::{CertificateCode, EndpointAnswer, EndpointCall, RemoteFailure};
use crate::config::NetworkSettings;
use crate::data_dir::{create_private_dir, database_path};
use crate::error::NodeError;
use crate::network::{Network, NetworkEvent, device_key_of, peer_id_of};

/// The settings file of an endpoint directory.
pub const SETTINGS_FILE: &str = "endpoint.toml";
const KEY_FILE: &str = "device.key";
const CERTIFICATE_FILE: &str = "certificate";
/// How often the device registers again (a heartbeat, and a retry after the node was away).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The primitives a device serves.
pub const PRIMITIVES: &[&str] =
    &["read", "list", "stat", "search", "create", "overwrite", "append", "move", "rename", "copy", "mkdir", "delete"];

/// `endpoint.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointSettings {
    /// The node's address, ending in `/p2p/<peer id>` (`--node` overrides it).
    pub node: Option<String>,
    /// Addresses to listen on; empty (the default): the node reaches the device over the
    /// connection the device opens.
    pub listen: Vec<String>,
    /// The whitelisted folders (`[[folder]]`), the device's layer 2.
    pub folder: Vec<FolderConfig>,
}

impl EndpointSettings {
    /// Reads `DIR/endpoint.toml`.
    pub fn load(dir: &Path) -> Result<EndpointSettings, NodeError> {
        let path = dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|err| {
            NodeError::Config(format!("cannot read {}: {err}; run `clawnet endpoint init` first", path.display()))
        })?;
        toml::from_str(&text).map_err(|err| NodeError::Config(format!("{}: {err}", path.display())))
    }
}

/// Creates an endpoint directory: a fresh device key and the settings. Returns the key the
/// owner certifies (`clawnet device certify KEY --name NAME` on the node).
pub fn init(dir: &Path, settings: &EndpointSettings) -> Result<SigningPublicKey, NodeError> {
    if dir.join(KEY_FILE).exists() {
        return Err(NodeError::Config(format!("{} is already an endpoint directory", dir.display())));
    }
    if database_path(dir).exists() {
        return Err(NodeError::Config(format!(
            "{} is a node's data directory; give the endpoint a directory of its own",
            dir.display()
        )));
    }
    create_private_dir(dir)?;
    let key = SigningSecret::generate();
    write_private(&dir.join(KEY_FILE), &hex::encode(*key.to_bytes()))?;
    let text = toml::to_string_pretty(settings).map_err(|err| NodeError::Config(err.to_string()))?;
    write_private(&dir.join(SETTINGS_FILE), &text)?;
    Ok(key.public_key())
}

/// The device key of the endpoint directory `dir`.
pub fn device_key(dir: &Path) -> Result<SigningSecret, NodeError> {
    let path = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        NodeError::Config(format!("cannot read {}: {err}; run `clawnet endpoint init` first", path.display()))
    })?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| NodeError::Config(format!("{} is damaged", path.display())))?;
    Ok(SigningSecret::from_bytes(&bytes))
}

/// Keeps the owner's certificate `code` in `dir` after checking it names this device's key.
pub fn install_certificate(dir: &Path, code: &str) -> Result<DeviceCert, NodeError> {
    let certificate = CertificateCode::from_text(code).map_err(NodeError::Config)?.certificate;
    let cert = check_certificate(&device_key(dir)?.public_key(), &certificate)?;
    write_private(&dir.join(CERTIFICATE_FILE), code.trim())?;
    Ok(cert)
}

/// The certificate, if the owner who signed it certified `key` with it and it is still valid.
fn check_certificate(key: &SigningPublicKey, certificate: &Signed<DeviceCert>) -> Result<DeviceCert, NodeError> {
    let owner = certificate
        .verify()
        .map_err(|err| NodeError::Config(format!("the device certificate does not verify: {err}")))?
        .owner;
    let cert = DeviceCert::verify_for(certificate, &owner, Timestamp::now())
        .map_err(|err| NodeError::Config(format!("the device certificate is not valid: {err}")))?;
    if cert.device_key != *key {
        return Err(NodeError::Config("that certificate is for another device key".into()));
    }
    Ok((*cert).clone())
}

/// An endpoint directory, opened: its whitelist, journal and backups.
#[derive(Debug)]
pub struct DeviceEndpoint {
    key: SigningSecret,
    certificate: Signed<DeviceCert>,
    owner: OwnerId,
    name: String,
    settings: EndpointSettings,
    db: NodeDb,
    endpoint: Arc<FileEndpoint>,
}

impl DeviceEndpoint {
    /// Opens `dir` (creating its database on the first start after certification) and settles
    /// what a crash interrupted.
    pub fn open(dir: &Path) -> Result<DeviceEndpoint, NodeError> {
        let settings = EndpointSettings::load(dir)?;
        let key = device_key(dir)?;
        let code = std::fs::read_to_string(dir.join(CERTIFICATE_FILE)).map_err(|_| {
            NodeError::Config(format!(
                "{} has no certificate yet: have the owner run `clawnet device certify {} --name NAME` on the node, \
                 then start with --certificate CODE",
                dir.display(),
                key.public_key().to_hex()
            ))
        })?;
        let certificate = CertificateCode::from_text(&code).map_err(NodeError::Config)?.certificate;
        let cert = check_certificate(&key.public_key(), &certificate)?;
        let path = database_path(dir);
        let db = if path.exists() {
            let mut db = NodeDb::open(&path)?;
            db.unlock_writes(SigningSecret::from_bytes(&key.to_bytes()))?;
            db
        } else {
            let genesis = Genesis {
                owner: cert.owner,
                device_cert: certificate.clone(),
                node_name: cert.device_name.clone(),
                // The device holds no keyring: its only secret is the device key.
                keystore: Vec::new(),
            };
            NodeDb::create(&path, genesis, SigningSecret::from_bytes(&key.to_bytes()))?
        };
        if db.info().owner != cert.owner {
            return Err(NodeError::Config("this endpoint directory belongs to another owner".into()));
        }
        let config = EndpointConfig {
            folders: settings.folder.clone(),
            state_dir: dir.join("files"),
            protected: vec![dir.to_owned()],
        };
        let endpoint = Arc::new(FileEndpoint::open(&config, db.clone())?);
        Ok(DeviceEndpoint { key, certificate, owner: cert.owner, name: cert.device_name, settings, db, endpoint })
    }

    /// The device's name, from its certificate.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoint itself (its journal, its whitelist).
    pub fn endpoint(&self) -> &Arc<FileEndpoint> {
        &self.endpoint
    }

    /// The device's database: its journal and its own audit chain.
    pub fn db(&self) -> &NodeDb {
        &self.db
    }

    /// Serves the node at `node` until `shutdown`: registers, heartbeats, and answers the
    /// node's calls. `registered` turns true while the node has accepted this device. Ends
    /// with an error if the node refuses the device (the owner has to act).
    pub async fn serve(
        self,
        node: Multiaddr,
        shutdown: CancellationToken,
        registered: watch::Sender<bool>,
    ) -> Result<(), NodeError> {
        let Some(Protocol::P2p(node_peer)) = node.iter().last() else {
            return Err(NodeError::Config(format!("the node's address {node} must end with /p2p/<peer id>")));
        };
        let settings = NetworkSettings {
            listen: self.settings.listen.clone(),
            bootstrap: Vec::new(),
            relay: false,
            max_connections: 16,
            max_connections_per_peer: 4,
            ..NetworkSettings::default()
        };
        let (network, mut events, network_task) = Network::start(&self.key, &settings, shutdown.child_token()).await?;
        let register = encoding::encode(&EndpointCall::Register {
            certificate: self.certificate.clone(),
            folders: self.endpoint.whitelist().folders(),
            primitives: PRIMITIVES.iter().map(|p| (*p).to_owned()).collect(),
        });
        let (answers, mut answered) = mpsc::channel(4);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The node, once it proved (with its own certificate) to be a node of our owner.
        let mut trusted: Option<PeerId> = None;
        let mut warned = false;
        let result = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                _ = heartbeat.tick() => {
                    let (network, register, answers, node) = (network.clone(), register.clone(), answers.clone(), node.clone());
                    tokio::spawn(async move {
                        let answer = network.call_endpoint(node_peer, vec![node], register).await;
                        let _ = answers.send(answer).await;
                    });
                }
                Some(answer) = answered.recv() => match self.on_registration(node_peer, answer) {
                    Ok(Some(node)) => {
                        if trusted.is_none() {
                            tracing::info!(device = %self.name, %node, "registered with the node");
                        }
                        trusted = Some(node);
                        warned = false;
                        registered.send_replace(true);
                    }
                    Ok(None) => {
                        if !warned {
                            tracing::warn!("the node is not reachable yet; retrying every {}s", HEARTBEAT.as_secs());
                            warned = true;
                        }
                        registered.send_replace(false);
                    }
                    Err(err) => break Err(err),
                },
                event = events.recv() => match event {
                    Some(NetworkEvent::EndpointCall { peer, request, reply }) => {
                        let endpoint = self.endpoint.clone();
                        let allowed = trusted == Some(peer);
                        tokio::task::spawn_blocking(move || {
                            let _ = reply.send(answer_call(&endpoint, peer, allowed, &request));
                        });
                    }
                    Some(NetworkEvent::Disconnected(peer)) if peer == node_peer => {
                        registered.send_replace(false);
                        heartbeat.reset_immediately();
                    }
                    // Deliveries and gossip are for nodes: a dropped reply says "try later".
                    Some(_) => {}
                    None => break Ok(()),
                },
            }
        };
        registered.send_replace(false);
        shutdown.cancel();
        let _ = network_task.await;
        result
    }

    /// What a registration answer means: `Some(node)` accepted by a node of our owner,
    /// `None` not reached, an error if refused.
    fn on_registration(
        &self,
        node: PeerId,
        answer: Result<Vec<u8>, crate::network::NetworkError>,
    ) -> Result<Option<PeerId>, NodeError> {
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::debug!(%err, "registration not delivered");
                return Ok(None);
            }
        };
        match encoding::decode::<EndpointAnswer>(&bytes) {
            Ok(EndpointAnswer::Registered { node_certificate }) => {
                let cert = DeviceCert::verify_for(&node_certificate, &self.owner, Timestamp::now());
                match cert {
                    Ok(cert) if peer_id_of(&cert.device_key) == node => Ok(Some(node)),
                    _ => Err(NodeError::Config(format!(
                        "the peer at the node's address ({node}) is not a node of this device's owner; check --node"
                    ))),
                }
            }
            Ok(EndpointAnswer::Refused(reason)) => Err(NodeError::Files(FileError::Remote {
                device: self.name.clone(),
                detail: format!("the node refused this device: {reason}"),
            })),
            Ok(other) => Err(NodeError::Config(format!("the node answered a registration with {other:?}"))),
            Err(err) => Err(NodeError::Config(format!("the node's answer is malformed: {err}"))),
        }
    }
}

/// Answers one call: the trusted node's calls run on the endpoint; anyone else's is refused
/// and recorded as a security event in the device's own chain.
fn answer_call(endpoint: &FileEndpoint, peer: PeerId, allowed: bool, request: &[u8]) -> Vec<u8> {
    let answer = match encoding::decode::<EndpointCall>(request) {
        Ok(call) if allowed => run_call(endpoint, call),
        Ok(_) => refuse(endpoint, peer, "this device takes calls only from its owner's node"),
        Err(err) => refuse(endpoint, peer, &format!("malformed call: {err}")),
    };
    encoding::encode(&answer)
}

fn run_call(endpoint: &FileEndpoint, call: EndpointCall) -> EndpointAnswer {
    let failed = |err: FileError| EndpointAnswer::Failed(RemoteFailure::from(&err));
    match call {
        EndpointCall::Execute(directive) => endpoint.execute(&directive).map_or_else(failed, EndpointAnswer::Reply),
        EndpointCall::History(filter) => endpoint.history(&filter).map_or_else(failed, EndpointAnswer::History),
        EndpointCall::Undo { op, actor } => endpoint.undo(op, actor).map_or_else(failed, EndpointAnswer::Undone),
        EndpointCall::PlanRollback(filter) => endpoint.plan_rollback(&filter).map_or_else(failed, EndpointAnswer::Plan),
        EndpointCall::Rollback { filter, actor } => {
            endpoint.rollback(&filter, actor).map_or_else(failed, EndpointAnswer::RolledBack)
        }
        EndpointCall::Register { .. } => EndpointAnswer::Refused("a device does not take registrations".into()),
    }
}

fn refuse(endpoint: &FileEndpoint, peer: PeerId, reason: &str) -> EndpointAnswer {
    tracing::warn!(%peer, reason, "endpoint call refused");
    let who = device_key_of(&peer).map(|key| key.to_hex()[..16].to_owned()).unwrap_or_else(|| peer.to_string());
    let draft = AuditDraft::new(
        Actor::Node,
        "security.endpoint",
        format!("call from peer {who}"),
        "owner's node only",
        Outcome::Denied(reason.into()),
    );
    if let Err(err) = endpoint.audit_event(draft) {
        tracing::warn!(%err, "cannot audit a refused endpoint call");
    }
    EndpointAnswer::Refused(reason.into())
}

fn write_private(path: &Path, text: &str) -> Result<(), NodeError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(NodeError::io(format!("writing {}", path.display())))?;
    file.write_all(text.as_bytes()).map_err(NodeError::io(format!("writing {}", path.display())))?;
    file.sync_all().map_err(NodeError::io(format!("writing {}", path.display())))
}
