//! Real nodes and relays on loopback, in this process: each node has its own temporary data
//! directory, database, libp2p swarm and local API, exactly as `clawnet run` starts them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use clawnet_bootstrap::{BootstrapRelay, Cli as RelayCli};
use clawnet_node::agents::brain::AnyBrain;
use clawnet_node::config::{NetworkSettings, NodeConfig};
use clawnet_node::daemon::Daemon;
use clawnet_node::delivery::Collected;
use clawnet_node::home::{KeyProtection, NodeHome};
use clawnet_node::node::Node;
use clawnet_node::views::ContactView;
use libp2p::Multiaddr;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen on loopback.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, or fails after [`PATIENCE`] saying what it waited for.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Network settings for a node reachable directly on loopback.
pub fn direct() -> NetworkSettings {
    NetworkSettings {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        bootstrap: Vec::new(),
        relay: false,
        ..NetworkSettings::default()
    }
}

/// Network settings for a node that listens nowhere itself and is reachable only through the
/// relay at `relay` (as behind a NAT that lets nothing in).
pub fn behind_relay(relay: &Multiaddr) -> NetworkSettings {
    NetworkSettings {
        listen: Vec::new(),
        bootstrap: vec![relay.to_string()],
        relay: true,
        ..NetworkSettings::default()
    }
}

/// A node running in this process.
#[derive(Debug)]
pub struct TestNode {
    /// Its name.
    pub name: String,
    dir: PathBuf,
    _temp: Option<TempDir>,
    settings: NetworkSettings,
    config: NodeConfig,
    brain: Option<Arc<AnyBrain>>,
    daemon: Option<Daemon>,
}

/// How a test node is set up beyond its network: session bounds, owner policies, a brain.
#[derive(Debug, Default)]
pub struct Setup {
    /// `[sessions]` and `[[policy]]`; its network part is ignored.
    pub config: NodeConfig,
    /// The agents' brain (default: the rule brain).
    pub brain: Option<AnyBrain>,
}

impl TestNode {
    /// Creates a new owner and node in a temporary directory and starts it.
    pub async fn start(name: &str, settings: NetworkSettings) -> anyhow::Result<TestNode> {
        TestNode::start_with(name, settings, Setup::default()).await
    }

    /// Like [`TestNode::start`], with sessions, policies and a brain of the test's choosing.
    pub async fn start_with(name: &str, settings: NetworkSettings, setup: Setup) -> anyhow::Result<TestNode> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().join(name);
        NodeHome::init(&dir, name, KeyProtection::None)?;
        let mut node = TestNode {
            name: name.into(),
            dir,
            _temp: Some(temp),
            settings,
            config: setup.config,
            brain: setup.brain.map(Arc::new),
            daemon: None,
        };
        node.resume().await?;
        Ok(node)
    }

    /// The running node.
    pub fn node(&self) -> &Arc<Node> {
        self.daemon.as_ref().map(Daemon::node).expect("the test node is running")
    }

    /// Reads its mailbox at the relays it is connected to, now.
    pub async fn collect_mail(&self) -> Collected {
        self.daemon.as_ref().expect("the test node is running").collect_mail().await
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the node (its data stays).
    pub async fn stop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown().await;
        }
    }

    /// Starts the stopped node again on the same data, listening where it listened before (so
    /// contacts find it where they last saw it, as a node with a fixed port would).
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let home = NodeHome::open(&self.dir)?.unlock(|| unreachable!("test nodes have no passphrase"))?;
        let config = NodeConfig { network: self.settings.clone(), ..self.config.clone() };
        self.daemon = Some(match &self.brain {
            Some(brain) => Daemon::start_with_brain(home, config, brain.clone()).await?,
            None => Daemon::start(home, config).await?,
        });
        if self.settings.listen.iter().any(|a| a.ends_with("/tcp/0")) {
            let bound: Vec<String> = self
                .addresses()
                .await?
                .iter()
                .map(|a| a.to_string())
                .filter(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
                .collect();
            self.settings.listen = bound;
        }
        Ok(())
    }

    /// The contact `other` as this node sees it, if it knows them.
    pub fn contact(&self, other: &TestNode) -> Option<ContactView> {
        let fingerprint = other.node().home.owner().fingerprint().to_string();
        self.node().contacts().ok()?.into_iter().find(|c| c.id == fingerprint)
    }

    /// Addresses others can reach it at (waits until it has one).
    pub async fn addresses(&self) -> anyhow::Result<Vec<Multiaddr>> {
        let network = self.node().network.clone();
        eventually(&format!("{} to have an address", self.name), || {
            let network = network.clone();
            async move { network.addresses().await.ok().filter(|a| !a.is_empty()) }
        })
        .await
    }
}

/// Makes `a` and `b` contacts the way their owners would: `a` invites, `b` adds the code, `a`
/// accepts. Returns once both sides see each other as connected.
pub async fn befriend(a: &TestNode, b: &TestNode) -> anyhow::Result<()> {
    let code = a.node().invite(Duration::from_secs(3600)).await?.code;
    b.node().add_contact(&code).await?;
    let request = eventually(&format!("{}'s request to reach {}", b.name, a.name), || async {
        a.contact(b).filter(ContactView::is_request)
    })
    .await?;
    a.node().accept_contact(&request.id).await?;
    eventually(&format!("{} to see {} as connected", b.name, a.name), || async {
        b.contact(a).filter(|c| c.state == "connected")
    })
    .await?;
    Ok(())
}

/// A bootstrap relay running in this process.
#[derive(Debug)]
pub struct TestRelay {
    /// Its address, ending in `/p2p/<peer id>`.
    pub address: Multiaddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestRelay {
    /// Starts a relay on a free loopback port, with default limits.
    pub async fn start() -> anyhow::Result<TestRelay> {
        let cli = RelayCli::try_parse_from(["clawnet-bootstrap", "--listen", "/ip4/127.0.0.1/tcp/0"])?;
        let relay = BootstrapRelay::start(libp2p::identity::Keypair::generate_ed25519(), &cli.relay_config())?;
        let peer = relay.peer_id();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let (address_tx, address_rx) = tokio::sync::oneshot::channel();
        let mut address_tx = Some(address_tx);
        let task = tokio::spawn(async move {
            let on_listen = move |address: &Multiaddr| {
                if let Some(tx) = address_tx.take() {
                    let _ = tx.send(address.clone());
                }
            };
            if let Err(err) = relay.run(stop.cancelled_owned(), on_listen).await {
                eprintln!("test relay stopped: {err}");
            }
        });
        let address = tokio::time::timeout(PATIENCE, address_rx).await.context("relay did not listen")??;
        Ok(TestRelay { address: address.with(libp2p::multiaddr::Protocol::P2p(peer)), shutdown, task })
    }

    /// Stops the relay.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
