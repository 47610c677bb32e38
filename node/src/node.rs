//! A running node: its unlocked home, its network, its outbox, its sessions and agents' brain,
//! and the lock that serializes decisions about contacts and the feed. Owner operations
//! (`contacts.rs`, `feed.rs`, `sessions/owner.rs`) and inbound messages (`governance.rs`,
//! `sessions/inbound.rs`) are methods on it.

use std::sync::Arc;

use clawnet_crypto::{DeviceCert, Signed};
use clawnet_storage::{Change, CommitReceipt, NodeDb, Pending, StoreError};
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::brain::AnyBrain;
use crate::agents::file_tools::FileTools;
use crate::agents::tools::ToolExtension;
use crate::config::NodeConfig;
use crate::delivery::Outbox;
use crate::error::NodeError;
use crate::files::{self, GovernedFiles};
use crate::home::UnlockedHome;
use crate::network::Network;
use crate::sessions::{NodeEvent, OwnerPolicy, SessionBook, SessionSettings};

/// The shared state of a running node.
#[derive(Debug)]
pub struct Node {
    /// The unlocked data directory.
    pub home: Arc<UnlockedHome>,
    /// The peer-to-peer network.
    pub network: Network,
    /// The reliable-delivery worker.
    pub outbox: Outbox,
    /// Held while deciding and committing a change to contacts or the feed, so two decisions
    /// about the same state never race.
    pub(crate) contacts_lock: Arc<Mutex<()>>,
    /// The brain the owner's agents think with.
    pub brain: Arc<AnyBrain>,
    /// Every session this node takes part in.
    pub(crate) sessions: SessionBook,
    /// Bounds on sessions.
    pub(crate) session_settings: SessionSettings,
    /// The owner's standing decisions.
    pub(crate) policies: Vec<OwnerPolicy>,
    /// What the owner should see as it happens (approvals, turns, closes).
    pub(crate) events: broadcast::Sender<NodeEvent>,
    /// The owner's files, as agents reach them.
    pub files: GovernedFiles,
    /// Background work (agents composing turns, policies deciding), stopped with the node.
    tasks: TaskTracker,
    stopping: CancellationToken,
}

impl Node {
    /// A node over an unlocked home and a started network, with the sessions it had when it
    /// stopped.
    pub fn new(
        home: Arc<UnlockedHome>,
        network: Network,
        brain: Arc<AnyBrain>,
        config: &NodeConfig,
    ) -> Result<Arc<Node>, NodeError> {
        let outbox = Outbox::new(home.clone(), network.clone());
        let sessions = SessionBook::load(home.db())?;
        let files =
            GovernedFiles::open(&files::endpoint_config(home.home().dir(), &config.files.folder), home.db().clone())?;
        files.remote().attach(network.clone());
        Ok(Arc::new(Node {
            home,
            network,
            outbox,
            contacts_lock: Arc::new(Mutex::new(())),
            brain,
            sessions,
            session_settings: config.sessions,
            policies: config.policy.clone(),
            events: broadcast::channel(256).0,
            files,
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
        }))
    }

    /// Runs `work` in the background until it ends or the node stops.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let stopping = self.stopping.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = stopping.cancelled() => {}
                () = work => {}
            }
        });
    }

    /// Stops the background work and waits for it (at most `grace`).
    pub async fn stop_background(&self, grace: std::time::Duration) {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("background work did not stop in time");
        }
    }

    /// The file primitives as tools for this node's identity agents.
    pub fn file_tools(&self) -> Arc<dyn ToolExtension> {
        Arc::new(FileTools::new(self.files.clone()))
    }

    /// Live events for the owner (the local API streams them).
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    pub(crate) fn notify(&self, event: NodeEvent) {
        // Nobody listening is fine: everything is in the database too.
        let _ = self.events.send(event);
    }

    /// This node's owner-signed device certificate.
    pub fn device_cert(&self) -> Signed<DeviceCert> {
        self.home.db().info().device_cert.clone()
    }

    /// The node's name.
    pub fn name(&self) -> String {
        self.home.db().info().node_name.clone()
    }

    /// Commits `change` (see [`commit`]).
    pub(crate) async fn commit<T: Send + 'static>(&self, change: Change<T>) -> Result<T, NodeError> {
        Ok(commit(self.home.db(), change).await?.0)
    }

    /// Dials every contact we know an address of, so both outboxes retry right away after a
    /// restart instead of waiting for their backoff.
    pub async fn greet_contacts(&self) {
        let Ok(view) = self.home.db().read() else { return };
        let contacts = view.contacts().unwrap_or_default();
        for contact in contacts.iter().filter(|c| !matches!(c.state, clawnet_protocol::contact::ContactState::Removed))
        {
            let addresses = view.peer(&contact.device_key).ok().flatten().map(|p| p.addresses).unwrap_or_default();
            let peer = crate::network::peer_id_of(&contact.device_key);
            for address in addresses.iter().filter_map(|a| a.parse::<libp2p::Multiaddr>().ok()) {
                let address = if address.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_))) {
                    address
                } else {
                    address.with(libp2p::multiaddr::Protocol::P2p(peer))
                };
                if self.network.dial(address).await.is_ok() {
                    break;
                }
            }
        }
    }

    /// Addresses others can reach this node at, as text, relay circuits first, at most the
    /// protocol's limit.
    pub(crate) async fn reachable_addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = self
            .network
            .addresses()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|address| !address.to_string().contains("/0.0.0.0/"))
            .map(|address| address.to_string())
            .collect();
        addresses.sort_by_key(|address| !address.contains("p2p-circuit"));
        addresses.dedup();
        addresses.truncate(clawnet_protocol::limits::MAX_ADDRESSES);
        addresses
    }
}

/// Commits `change` from async code. A lone change (the writer idle, and committing one change
/// at a time: `clawnet_storage`'s writer docs) is committed right here on the runtime thread,
/// which saves the hand-off to the writer thread (most of a lone delivery's latency beyond its
/// fsyncs) at the price of blocking this worker for one fsync; only one change can be in that
/// position at a time, and only on a multi-threaded runtime, so the other workers keep running.
/// Otherwise the change joins the group commit and this task waits without blocking a thread.
pub async fn commit<T: Send + 'static>(db: &NodeDb, change: Change<T>) -> Result<(T, CommitReceipt), StoreError> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let change = if multi_thread && db.is_idle() {
        match db.commit_if_idle(change) {
            Ok(done) => return done,
            Err(change) => change,
        }
    } else {
        change
    };
    let pending: Pending<T> = db.submit(change)?;
    pending.await
}

/// Commits `change` from async code as one of several submitted together (the messages of one
/// delivery batch): always through the group commit, so they share a transaction and its
/// fsync. Committed inline, each would block this task's thread for an fsync of its own before
/// the next one is even looked at.
pub async fn commit_with_others<T: Send + 'static>(
    db: &NodeDb,
    change: Change<T>,
) -> Result<(T, CommitReceipt), StoreError> {
    db.submit(change)?.await
}
