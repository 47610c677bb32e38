//! The file endpoint on another device of the owner, end to end: a real node daemon and a
//! device endpoint with its own directory, key, whitelist and database, talking over libp2p on
//! loopback. The device registers with an owner-certified key; directives that layer 1 allowed
//! on the node run under the device's own layer 2; the owner reads the device's journal and
//! undoes from the node; uncertified, revoked and impostor peers are refused on both sides and
//! recorded as security events.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clawnet_crypto::{DeviceCert, IdentityId, Signed, SigningPublicKey, Timestamp, encoding};
use clawnet_node::files::owner::{self, JournalQuery, RollbackRequest, UndoRequest};
use clawnet_node::files::remote::certify::{self, CertifyRequest};
use clawnet_node::files::remote::device::{self, DeviceEndpoint, EndpointSettings};
use clawnet_node::files::remote::{CertificateCode, EndpointAnswer, EndpointCall};
use clawnet_node::files::{FileDirective, FileError, FileReply, FileRequest, FolderConfig, FsPath, Layer, WriteMode};
use clawnet_node::home::{KeyProtection, NodeHome};
use clawnet_node::node::Node;
use clawnet_protocol::audit::{Actor, AuditEntry};
use clawnet_storage::NodeDb;
use clawnet_storage::files::FileAccess;
use clawnet_tests::cluster::{TestNode, direct, eventually};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const RW: FileAccess = FileAccess::ReadWrite;
const RO: FileAccess = FileAccess::ReadOnly;

/// A device endpoint running in this process.
struct Device {
    dir: PathBuf,
    db: NodeDb,
    registered: watch::Receiver<bool>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), clawnet_node::NodeError>>,
}

impl Device {
    /// Makes an endpoint directory in `dir` serving `folders`, has `certify` sign its key, and
    /// starts serving the node at `node`.
    async fn start(
        dir: &Path,
        folders: &[(&Path, FileAccess)],
        node: &Multiaddr,
        certify: impl FnOnce(SigningPublicKey) -> String,
    ) -> anyhow::Result<Device> {
        let folders = folders.iter().map(|(path, access)| FolderConfig { path: path.to_path_buf(), access: *access });
        let settings = EndpointSettings { folder: folders.collect(), ..EndpointSettings::default() };
        let key = device::init(dir, &settings)?;
        device::install_certificate(dir, &certify(key))?;
        Device::resume(dir, node).await
    }

    /// Opens the endpoint directory `dir` again and serves the node at `node`.
    async fn resume(dir: &Path, node: &Multiaddr) -> anyhow::Result<Device> {
        let endpoint = DeviceEndpoint::open(dir)?;
        let db = endpoint.db().clone();
        let (registered, watch) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(endpoint.serve(node.clone(), shutdown.clone(), registered));
        Ok(Device { dir: dir.to_owned(), db, registered: watch, shutdown, task })
    }

    async fn until_registered(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(30), self.registered.wait_for(|yes| *yes))
            .await
            .context("the device did not register in time")??;
        Ok(())
    }

    /// Waits for the device to stop on its own, returning why.
    async fn ended(self) -> anyhow::Result<Result<(), clawnet_node::NodeError>> {
        Ok(tokio::time::timeout(Duration::from_secs(30), self.task).await.context("the device kept running")??)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.ended().await??;
        Ok(())
    }

    fn security_events(&self) -> Vec<AuditEntry> {
        self.db.audit_entries().unwrap().into_iter().filter(AuditEntry::is_security_event).collect()
    }
}

/// The node's address for its devices: its loopback listen address and peer id.
async fn address_of(node: &TestNode) -> anyhow::Result<Multiaddr> {
    let address = node.addresses().await?.into_iter().find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"));
    Ok(address.context("the node has no loopback address")?.with(Protocol::P2p(node.node().network.local_peer())))
}

/// The owner of `node` certifies `key` as device `name`.
fn certify_on(node: &Node, name: &str) -> impl FnOnce(SigningPublicKey) -> String {
    let home = node.home.clone();
    let name = name.to_owned();
    move |key| certify::certify(&home, &CertifyRequest { device_key: key.to_hex(), name }).unwrap()
}

fn security_events(node: &Node) -> Vec<AuditEntry> {
    node.home.db().audit_entries().unwrap().into_iter().filter(AuditEntry::is_security_event).collect()
}

fn at(path: &Path) -> FsPath {
    FsPath::parse(path.to_str().unwrap()).unwrap()
}

fn create(path: &Path, bytes: &[u8]) -> FileRequest {
    FileRequest::Write { path: at(path), mode: WriteMode::Create, content: bytes.to_vec() }
}

fn read(path: &Path) -> FileRequest {
    FileRequest::Read { path: at(path), offset: 0, max: None }
}

/// A canonical temporary directory with the device's folders in it.
fn device_folders() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let temp = tempfile::tempdir()?;
    let base = temp.path().canonicalize()?;
    for folder in ["docs", "photos", "private", "outside"] {
        fs::create_dir_all(base.join(folder))?;
    }
    fs::write(base.join("outside/secret.txt"), b"not for agents")?;
    Ok((temp, base))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_serves_the_node_within_both_layers_and_the_owner_undoes_there() -> anyhow::Result<()> {
    let ada = TestNode::start("ada", direct()).await?;
    let (_temp, base) = device_folders()?;
    let node = ada.node().clone();
    let folders = [(base.join("docs"), RW), (base.join("photos"), RO), (base.join("private"), RW)];
    let folders: Vec<(&Path, FileAccess)> = folders.iter().map(|(path, access)| (path.as_path(), *access)).collect();
    let mut laptop =
        Device::start(&base.join("endpoint"), &folders, &address_of(&ada).await?, certify_on(&node, "laptop")).await?;
    laptop.until_registered().await?;
    let online = node.files.remote().online();
    ensure!(online.len() == 1 && online[0].name == "laptop", "the node sees {online:?}");
    ensure!(online[0].folders.len() == 3 && online[0].primitives.contains(&"move".to_owned()));

    // Layer 1 on the node: `work` may write docs and photos (the device only lets it read
    // photos), and has no grant on private.
    let work = node.home.create_identity("work", "the work identity")?.id;
    let grant = |path: PathBuf, access| {
        let files = node.files.clone();
        async move { anyhow::Ok(tokio::task::spawn_blocking(move || files.grant(work, &at(&path), access)).await??) }
    };
    grant(base.join("docs"), RW).await?;
    grant(base.join("photos"), RW).await?;

    // Allowed by both layers: done on the device, journaled there.
    let report = base.join("docs/report.txt");
    let reply = node.files.request_async(work, None, create(&report, b"quarterly numbers")).await?;
    let FileReply::Done { op } = reply else { bail!("the write answered {reply:?}") };
    ensure!(fs::read(&report)? == b"quarterly numbers");
    match node.files.request_async(work, None, read(&report)).await? {
        FileReply::Content { bytes, .. } => ensure!(bytes == b"quarterly numbers"),
        other => bail!("the read answered {other:?}"),
    }
    ensure!(node.home.db().read()?.file_ops()?.is_empty(), "the node journaled a device's operation itself");

    // Layer 2 on the device says no: one event on each side, nothing written.
    let (node_events, device_events) = (security_events(&node).len(), laptop.security_events().len());
    let refused = node.files.request_async(work, None, create(&base.join("photos/new.jpg"), b"x")).await;
    match &refused {
        Err(FileError::Denied { layer: Layer::Whitelist, reason }) => ensure!(reason.contains("laptop"), "{reason}"),
        other => bail!("a write into a read-only folder of the device gave {other:?}"),
    }
    ensure!(!base.join("photos/new.jpg").exists());
    ensure!(security_events(&node).len() == node_events + 1, "the node recorded no security event");
    ensure!(laptop.security_events().len() == device_events + 1, "the device recorded no security event");

    // A link inside a device folder pointing outside is refused by the device's resolver.
    std::os::unix::fs::symlink(base.join("outside"), base.join("docs/escape"))?;
    let escape = node.files.request_async(work, None, read(&base.join("docs/escape/secret.txt"))).await;
    ensure!(
        matches!(escape, Err(FileError::Denied { layer: Layer::Whitelist, .. })),
        "read through a link: {escape:?}"
    );

    // Layer 1 on the node says no: the device never hears of it.
    let before = laptop.db.audit_entries()?.len();
    let refused = node.files.request_async(work, None, create(&base.join("private/plan.txt"), b"x")).await;
    ensure!(matches!(refused, Err(FileError::Denied { layer: Layer::Scope, .. })), "no grant on private: {refused:?}");
    ensure!(laptop.db.audit_entries()?.len() == before, "a directive layer 1 refused reached the device");
    ensure!(!base.join("private/plan.txt").exists());

    // A move across the node and the device is refused before anything happens.
    let across = FileRequest::Move { from: at(&report), to: at(&ada.dir().join("report.txt")) };
    ensure!(matches!(node.files.request_async(work, None, across).await, Err(FileError::Invalid(_))));

    // The owner reads the device's journal and undoes the write from the node.
    let files = node.files.clone();
    let home = node.home.clone();
    let (history, undo) = tokio::task::spawn_blocking(move || {
        let query = JournalQuery { device: Some("laptop".into()), ..JournalQuery::default() };
        let history = owner::history(home.home(), Some(&files), &query)?;
        let undo = owner::undo(home.home(), &files, op, &UndoRequest { device: Some("laptop".into()) })?;
        anyhow::Ok((history, undo))
    })
    .await??;
    ensure!(history.len() == 1 && history[0].op == op && history[0].actor == "work", "history: {history:?}");
    ensure!(undo.kind == "undo", "{undo:?}");
    ensure!(!report.exists(), "undo left the file");

    // Roll back everything `work` did on the device: nothing left to do after the undo.
    let files = node.files.clone();
    let home = node.home.clone();
    let rollback = tokio::task::spawn_blocking(move || {
        let query =
            JournalQuery { identity: Some("work".into()), device: Some("laptop".into()), ..JournalQuery::default() };
        owner::rollback(home.home(), &files, &RollbackRequest { query, dry_run: true })
    })
    .await??;
    ensure!(rollback.operations.is_empty(), "{rollback:?}");

    // The device's own chain, signed by its key, verifies; a restart keeps its journal.
    let dir = laptop.dir.clone();
    laptop.stop().await?;
    eventually("the node to see the device go", || async { node.files.remote().online().is_empty().then_some(()) })
        .await?;
    let request = node.files.request_async(work, None, read(&base.join("docs"))).await;
    ensure!(request.is_err(), "a directive for an offline device's folder succeeded: {request:?}");
    let mut laptop = Device::resume(&dir, &address_of(&ada).await?).await?;
    laptop.until_registered().await?;
    laptop.db.verify_audit()?;
    ensure!(laptop.db.read()?.file_ops()?.len() == 2, "the device's journal holds the write and its undo");

    // The node restarts: the device registers again by itself and serves the new node.
    let mut ada = ada;
    drop(node);
    ada.stop().await;
    ada.resume().await?;
    let node = ada.node().clone();
    eventually("the device to register with the restarted node", || async {
        (node.files.remote().online().len() == 1).then_some(())
    })
    .await?;
    let again = node.files.request_async(work, None, create(&report, b"after the restart")).await?;
    ensure!(matches!(again, FileReply::Done { .. }), "{again:?}");
    ensure!(fs::read(&report)? == b"after the restart");
    laptop.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncertified_revoked_and_impostor_peers_are_refused_and_recorded() -> anyhow::Result<()> {
    let ada = TestNode::start("ada", direct()).await?;
    let node = ada.node().clone();
    let address = address_of(&ada).await?;
    let (_temp, base) = device_folders()?;
    let docs = [(base.join("docs"), RW)];
    let docs: Vec<(&Path, FileAccess)> = docs.iter().map(|(path, access)| (path.as_path(), *access)).collect();

    // A key certified by another owner: the node refuses it, the device stops with the reason.
    let mallory = NodeHome::init(&base.join("mallory"), "mallory", KeyProtection::None)?;
    let foreign = Device::start(&base.join("foreign"), &docs, &address, |key| {
        certify::certify(&mallory, &CertifyRequest { device_key: key.to_hex(), name: "laptop".into() }).unwrap()
    })
    .await?;
    let ended = foreign.ended().await?;
    ensure!(matches!(&ended, Err(err) if err.to_string().contains("refused")), "a foreign device ended with {ended:?}");
    let events = security_events(&node);
    ensure!(events.len() == 1 && events[0].action == "security.endpoint", "node events: {events:?}");
    ensure!(node.files.remote().online().is_empty());

    // A key our owner signed but never recorded on this node (a certificate made elsewhere):
    // refused too.
    let forged_dir = base.join("forged");
    let key = device::init(&forged_dir, &EndpointSettings::default())?;
    let cert = DeviceCert {
        owner: node.home.owner(),
        device_key: key,
        device_name: "desk".into(),
        issued_at: Timestamp::now(),
        expires_at: None,
    };
    let signed = Signed::sign(&cert, &node.home.keys().owner.signing);
    device::install_certificate(&forged_dir, &CertificateCode { certificate: signed }.to_text())?;
    let ended = Device::resume(&forged_dir, &address).await?.ended().await?;
    ensure!(matches!(&ended, Err(err) if err.to_string().contains("never certified")), "{ended:?}");
    ensure!(security_events(&node).len() == 2);

    // Certified, then revoked: online until the revocation, refused after it.
    let mut laptop = Device::start(&base.join("laptop"), &docs, &address, certify_on(&node, "laptop")).await?;
    laptop.until_registered().await?;
    let home = node.home.clone();
    let remote = node.files.remote().clone();
    tokio::task::spawn_blocking(move || certify::revoke(&home, &remote, "laptop")).await??;
    ensure!(node.files.remote().online().is_empty(), "a revoked device stayed online");
    let ended = laptop.ended().await?;
    ensure!(matches!(&ended, Err(err) if err.to_string().contains("revoked")), "{ended:?}");
    ensure!(security_events(&node).len() == 3);

    // An impostor node (not the device's owner's) calls a device directly: refused there and
    // recorded in the device's chain; nothing written.
    let port = free_port()?;
    let desk_dir = base.join("desk");
    let settings = EndpointSettings {
        listen: vec![format!("/ip4/127.0.0.1/tcp/{port}")],
        folder: vec![FolderConfig { path: base.join("docs"), access: RW }],
        ..EndpointSettings::default()
    };
    let desk_key = device::init(&desk_dir, &settings)?;
    device::install_certificate(&desk_dir, &certify_on(&node, "desk")(desk_key))?;
    let mut desk = Device::resume(&desk_dir, &address).await?;
    desk.until_registered().await?;
    let eve = TestNode::start("eve", direct()).await?;
    let directive = FileDirective {
        actor: Actor::Identity(IdentityId::random()),
        session: None,
        basis: "forged".into(),
        request: create(&base.join("docs/planted.txt"), b"from eve"),
    };
    let desk_peer = clawnet_node::network::peer_id_of(&desk_key);
    let desk_address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{desk_peer}").parse()?;
    let answer = eve
        .node()
        .network
        .call_endpoint(desk_peer, vec![desk_address], encoding::encode(&EndpointCall::Execute(directive)))
        .await?;
    let answer: EndpointAnswer = encoding::decode(&answer)?;
    ensure!(matches!(answer, EndpointAnswer::Refused(_)), "the device answered an impostor with {answer:?}");
    ensure!(!base.join("docs/planted.txt").exists(), "the impostor's write happened");
    let events = desk.security_events();
    ensure!(events.len() == 1 && events[0].action == "security.endpoint", "device events: {events:?}");

    // And a device registering with the owner's node does not make it take calls from the
    // node itself on the registration protocol's other direction: the node refuses a device
    // that calls it with a directive.
    let answer = tokio::task::spawn_blocking({
        let remote = node.files.remote().clone();
        move || remote.answer(desk_peer, &encoding::encode(&EndpointCall::History(Default::default())))
    })
    .await?;
    let answer: EndpointAnswer = encoding::decode(&answer)?;
    ensure!(matches!(answer, EndpointAnswer::Refused(_)), "the node took a directive from a device: {answer:?}");
    ensure!(security_events(&node).len() == 4);
    desk.stop().await?;
    node.home.db().verify_audit()?;
    Ok(())
}

/// A TCP port free on loopback right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
