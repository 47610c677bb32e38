//! `clawnet run`: the node as a long-running process. Starts the network, the outbox worker,
//! the inbound pump and the local API, and stops them in order on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::agents::brain::AnyBrain;
use crate::api::{ApiServer, api_file};
use crate::config::NodeConfig;
use crate::delivery::{COLLECT_EVERY, Collected, Inbox};
use crate::error::NodeError;
use crate::governance::Governance;
use crate::home::UnlockedHome;
use crate::network::{Network, NetworkEvent};
use crate::node::Node;

/// How long shutdown waits for tasks before abandoning them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running node.
#[must_use = "a daemon stops when dropped; call shutdown() to stop it in order"]
#[derive(Debug)]
pub struct Daemon {
    node: Arc<Node>,
    inbox: Arc<Inbox<Governance>>,
    api: ApiServer,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Daemon {
    /// Starts a node on `home` with `config`.
    pub async fn start(home: UnlockedHome, config: NodeConfig) -> Result<Daemon, NodeError> {
        // The agents' brain first: a bad [llm] section fails before anything starts.
        let brain = AnyBrain::from_config(config.llm.as_ref()).map_err(|err| NodeError::Config(err.to_string()))?;
        Daemon::start_with_brain(home, config, Arc::new(brain)).await
    }

    /// Starts a node whose agents think with `brain` instead of the configured one.
    pub async fn start_with_brain(
        home: UnlockedHome,
        config: NodeConfig,
        brain: Arc<AnyBrain>,
    ) -> Result<Daemon, NodeError> {
        let home = Arc::new(home);
        let shutdown = CancellationToken::new();
        let device = clawnet_crypto::SigningSecret::from_bytes(&home.keys().device.to_bytes());
        let (network, events, network_task) = Network::start(&device, &config.network, shutdown.child_token()).await?;
        drop(device);
        let node = Node::new(home, network, brain.clone(), &config)?;
        let inbox = Inbox::new(node.home.clone(), Governance::new(node.clone()));
        let answering = inbox.clone();
        node.network.answer_deliveries(Arc::new(move |peer, batch| {
            let inbox = answering.clone();
            Box::pin(async move { inbox.receive(peer, batch).await })
        }));

        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let _ = network_task.await;
        });
        tasks.spawn(node.outbox.clone().run(shutdown.child_token()));
        tasks.spawn(pump(node.clone(), inbox.clone(), events, shutdown.child_token()));
        node.follow_all_feeds().await?;
        node.greet_contacts().await;
        // Sessions that were waiting for this node when it stopped: decisions a policy now
        // covers, and turns that are ours to speak.
        node.resume_sessions().await;
        let api = ApiServer::start(node.clone(), brain, &config.api, shutdown.child_token()).await?;
        // Announce once at start, so contacts that missed a change while we were down catch up.
        if let Err(err) = node.publish_tags(false).await {
            tracing::warn!(%err, "cannot announce tags at start");
        }
        Ok(Daemon { node, inbox, api, shutdown, tasks })
    }

    /// The running node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Reads this node's mailbox at every bootstrap relay it is connected to now, instead of
    /// at the next connection or the next periodic collection.
    pub async fn collect_mail(&self) -> Collected {
        self.node.outbox.mailboxes().collect_all(&self.inbox).await
    }

    /// Where the local API listens.
    pub fn api_address(&self) -> SocketAddr {
        self.api.address()
    }

    /// Stops the node: the API first (so no new command arrives), then the network and the
    /// workers; the database closes when the last task lets go of it.
    pub async fn shutdown(mut self) {
        self.api.stop().await;
        self.node.stop_background(SHUTDOWN_GRACE).await;
        self.shutdown.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("some tasks did not stop in time");
            self.tasks.abort_all();
        }
        let dir = self.node.home.home().dir().to_owned();
        let _ = std::fs::remove_file(api_file(&dir));
    }
}

/// Turns network events into work: deliveries to the inbox (the few that arrive before it
/// answers them on their lanes itself), gossip to the feed, new connections to the outbox (and,
/// for a bootstrap relay, to reading our mailbox there), the owner's devices to the file
/// endpoints' registry. Also reads the mailboxes now and then.
async fn pump(
    node: Arc<Node>,
    inbox: Arc<Inbox<Governance>>,
    mut events: mpsc::Receiver<NetworkEvent>,
    shutdown: CancellationToken,
) {
    let mut work = JoinSet::new();
    let mut collect = tokio::time::interval_at(tokio::time::Instant::now() + COLLECT_EVERY, COLLECT_EVERY);
    collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = collect.tick() => {
                let (mailboxes, inbox) = (node.outbox.mailboxes().clone(), inbox.clone());
                work.spawn(async move {
                    mailboxes.collect_all(&inbox).await;
                });
                continue;
            }
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Some(_) = work.join_next(), if !work.is_empty() => continue,
        };
        match event {
            // Only those that arrived before the inbox answered deliveries itself (see `start`).
            NetworkEvent::Delivery { peer, batch, reply } => {
                let inbox = inbox.clone();
                work.spawn(async move {
                    let answer = inbox.receive(peer, batch).await;
                    let _ = reply.send(answer);
                });
            }
            NetworkEvent::Gossip { topic, data } => {
                let node = node.clone();
                work.spawn(async move { node.on_gossip(&topic, &data).await });
            }
            NetworkEvent::Connected(peer) => {
                node.outbox.peer_connected(&peer);
                if node.network.relays().contains(&peer) {
                    let (mailboxes, inbox) = (node.outbox.mailboxes().clone(), inbox.clone());
                    work.spawn(async move {
                        if let Err(err) = mailboxes.collect(peer, &inbox).await {
                            tracing::debug!(%peer, %err, "cannot read the mailbox");
                        }
                    });
                }
            }
            NetworkEvent::Disconnected(peer) => node.files.remote().disconnected(&peer),
            NetworkEvent::EndpointCall { peer, request, reply } => {
                let remote = node.files.remote().clone();
                work.spawn(async move {
                    let answer = tokio::task::spawn_blocking(move || remote.answer(peer, &request)).await;
                    if let Ok(answer) = answer {
                        let _ = reply.send(answer);
                    }
                });
            }
        }
    }
    work.shutdown().await;
}
