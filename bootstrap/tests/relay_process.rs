//! Runs the real `clawnet-bootstrap` binary on loopback and checks what peers see of it.

#[path = "support/harness.rs"]
mod harness;

use std::{
    net::SocketAddr,
    path::Path,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use clawnet_crypto::AgreementSecret;
use clawnet_protocol::mailbox::{MailboxRequest, MailboxResponse};
use harness::{MAILBOX_PROTOCOL, MailboxClient, STEP_TIMEOUT, sample, scrape, sealed_for, within};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder,
    futures::StreamExt,
    identify, kad,
    multiaddr::Protocol,
    noise, relay,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

const CLAWNET_KAD: StreamProtocol = StreamProtocol::new("/clawnet/kad/1.0.0");
const PUBLIC_IPFS_KAD: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// What an AutoNAT v2 server listens on (libp2p keeps the name crate-private).
const AUTONAT_V2_DIAL_REQUEST: StreamProtocol = StreamProtocol::new("/libp2p/autonat/2/dial-request");

#[tokio::test]
async fn advertises_private_kad_relay_hop_autonat_and_mailbox_but_not_the_public_dht() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut relay = RelayProcess::spawn(&dir.path().join("relay.key"), &[]).await?;
    let (relay_addr, relay_id) = relay.next_listen_addr().await?;

    let info = identify_relay(relay_addr, relay_id).await?;
    assert_eq!(info.public_key.to_peer_id(), relay_id);
    assert_eq!(info.protocol_version, "/clawnet/1.0.0");
    for expected in [&CLAWNET_KAD, &relay::HOP_PROTOCOL_NAME, &AUTONAT_V2_DIAL_REQUEST, &MAILBOX_PROTOCOL] {
        assert!(info.protocols.contains(expected), "{expected} missing from {:?}", info.protocols);
    }
    assert!(!info.protocols.contains(&PUBLIC_IPFS_KAD), "{:?}", info.protocols);
    Ok(())
}

#[tokio::test]
async fn no_mailbox_means_the_protocol_is_not_offered() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut relay = RelayProcess::spawn(&dir.path().join("relay.key"), &["--no-mailbox"]).await?;
    let (relay_addr, relay_id) = relay.next_listen_addr().await?;

    let info = identify_relay(relay_addr.clone(), relay_id).await?;
    assert!(!info.protocols.contains(&MAILBOX_PROTOCOL), "{:?}", info.protocols);
    assert!(info.protocols.contains(&AUTONAT_V2_DIAL_REQUEST), "{:?}", info.protocols);

    // A client that asks anyway learns it the libp2p way: no answer, an unsupported protocol.
    let mut client = MailboxClient::new()?;
    client.connect(&relay_addr).await?;
    let failure = client.try_ask(MailboxRequest::Fetch { max_items: 1 }).await?;
    assert!(matches!(failure, Err(libp2p::request_response::OutboundFailure::UnsupportedProtocols)), "{failure:?}");
    Ok(())
}

#[tokio::test]
async fn serves_prometheus_metrics_with_libp2p_and_mailbox_metrics() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut relay = RelayProcess::spawn(&dir.path().join("relay.key"), &["--metrics-address", "127.0.0.1:0"]).await?;
    let metrics = relay.metrics_address().await?;
    let (relay_addr, _) = relay.next_listen_addr().await?;

    let mut sender = MailboxClient::new()?;
    sender.connect(&relay_addr).await?;
    let recipient = MailboxClient::new()?.key;
    let deposit = MailboxRequest::Deposit {
        recipient,
        item: sealed_for(&AgreementSecret::generate(), &recipient, b"hello"),
        ttl_secs: 60,
    };
    assert!(matches!(sender.ask(deposit).await?, MailboxResponse::Deposited { .. }));

    let (status, body) = scrape(metrics).await?;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // libp2p's own metrics, with a value for our connection.
    assert!(
        body.lines().any(|line| line.starts_with("libp2p_swarm_connections_incoming_total{") && !line.ends_with(" 0")),
        "{body}"
    );
    assert!(body.contains("libp2p_bandwidth_bytes_total{"), "{body}");
    assert!(body.contains("# TYPE clawnet_relay_reservations gauge"), "{body}");
    assert_eq!(sample(&body, "clawnet_mailbox_items"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "clawnet_mailbox_recipients"), Some(1.0), "{body}");
    assert!(sample(&body, "clawnet_mailbox_bytes").is_some_and(|bytes| bytes >= 531.0), "{body}");
    assert_eq!(sample(&body, "clawnet_mailbox_deposits_total{outcome=\"accepted\"}"), Some(1.0), "{body}");
    Ok(())
}

#[tokio::test]
async fn metrics_are_not_served_publicly_unless_asked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = within(
        STEP_TIMEOUT,
        "the relay to exit",
        relay_command(&dir.path().join("relay.key"))
            .args(["--metrics-address", "0.0.0.0:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await??;
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr:?}");
    assert!(stderr.contains("--metrics-public"), "stderr: {stderr:?}");
    Ok(())
}

#[tokio::test]
async fn grants_reservations_with_session_sized_circuit_limits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut relay = RelayProcess::spawn(&dir.path().join("relay.key"), &[]).await?;
    let (relay_addr, relay_id) = relay.next_listen_addr().await?;

    let mut client = relay_client()?;
    client.listen_on(relay_addr.with(Protocol::P2pCircuit))?;
    let limit = within(STEP_TIMEOUT, "a reservation on the relay", async {
        loop {
            match client.select_next_some().await {
                SwarmEvent::Behaviour(RelayClientEvent::Relay(relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    limit,
                    ..
                })) if relay_peer_id == relay_id => break Ok(limit),
                SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    bail!("reservation refused: {error}")
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    bail!("cannot connect to the relay: {error}")
                }
                _ => {}
            }
        }
    })
    .await??;

    // The defaults must carry a session, not just coordinate a hole punch (2 min, 128 KiB).
    let limit = limit.context("the relay announced no circuit limit")?;
    assert_eq!(limit.duration(), Some(Duration::from_secs(30 * 60)));
    assert_eq!(limit.data_in_bytes(), Some(64 * 1024 * 1024));
    Ok(())
}

#[tokio::test]
async fn routes_a_peer_id_to_the_addresses_that_peer_announced() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut relay = RelayProcess::spawn(&dir.path().join("relay.key"), &[]).await?;
    let (relay_addr, relay_id) = relay.next_listen_addr().await?;

    // `target` is a node listening on loopback; it announces itself to the relay by connecting.
    let mut target = kad_peer()?;
    let target_id = *target.local_peer_id();
    target.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let target_addr = within(STEP_TIMEOUT, "the target's listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = target.select_next_some().await {
                break address;
            }
        }
    })
    .await?;
    target.dial(relay_addr.clone())?;
    let target_task = tokio::spawn(async move {
        loop {
            target.select_next_some().await;
        }
    });

    // `seeker` knows only the relay and asks it where `target` is. The relay learns the
    // target's address asynchronously, so the seeker asks again until it is answered.
    let mut seeker = kad_peer()?;
    seeker.behaviour_mut().kad.add_address(&relay_id, relay_addr);
    let found = within(STEP_TIMEOUT, "the target through the relay's DHT", async {
        loop {
            seeker.behaviour_mut().kad.get_closest_peers(target_id);
            let peers = loop {
                if let SwarmEvent::Behaviour(KadPeerEvent::Kad(kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::GetClosestPeers(result),
                    step,
                    ..
                })) = seeker.select_next_some().await
                    && step.last
                {
                    break match result {
                        Ok(ok) => ok.peers,
                        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                    };
                }
            };
            if let Some(peer) = peers.into_iter().find(|peer| peer.peer_id == target_id) {
                break Ok::<_, anyhow::Error>(peer.addrs);
            }
        }
    })
    .await;
    target_task.abort();

    let found = found??;
    assert!(
        found.iter().any(|addr| addr.iter().take(2).eq(target_addr.iter().take(2))),
        "target listens on {target_addr}, the DHT says {found:?}"
    );
    Ok(())
}

#[tokio::test]
async fn same_key_file_keeps_the_peer_id_across_restarts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("relay.key");

    let mut first = RelayProcess::spawn(&key_file, &[]).await?;
    let (_, first_id) = first.next_listen_addr().await?;
    let status = first.stop("INT").await?;
    assert!(status.success(), "SIGINT must exit cleanly, got {status}");

    let mut second = RelayProcess::spawn(&key_file, &[]).await?;
    let (_, second_id) = second.next_listen_addr().await?;
    let status = second.stop("TERM").await?;
    assert!(status.success(), "SIGTERM must exit cleanly, got {status}");
    assert_eq!(first_id, second_id);

    // A different key file is a different relay: the assertion above can fail.
    let mut other = RelayProcess::spawn(&dir.path().join("other.key"), &[]).await?;
    let (_, other_id) = other.next_listen_addr().await?;
    assert_ne!(other_id, first_id);
    Ok(())
}

#[tokio::test]
async fn corrupt_key_file_is_refused_with_one_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("relay.key");
    std::fs::write(&key_file, b"this is not a libp2p keypair\n")?;

    let output = within(
        STEP_TIMEOUT,
        "the relay to exit",
        relay_command(&key_file)
            // Even at info level nothing but the error may reach stderr.
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await??;

    assert!(!output.status.success(), "a corrupt key must not start a relay");
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {stderr:?}");
    assert!(stderr.contains("key file"), "stderr: {stderr:?}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", String::from_utf8_lossy(&output.stdout));
    // The operator's file is left alone, not replaced by a fresh key.
    assert_eq!(std::fs::read(&key_file)?, b"this is not a libp2p keypair\n");
    Ok(())
}

/// A `clawnet-bootstrap` child process, killed when dropped.
struct RelayProcess {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl RelayProcess {
    async fn spawn(key_file: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        let mut child = relay_command(key_file)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start clawnet-bootstrap")?;
        let stdout = child.stdout.take().context("child stdout is not piped")?;
        Ok(Self { child, stdout: BufReader::new(stdout).lines() })
    }

    /// The `metrics http://<addr>/metrics` line, which comes first when metrics are on.
    async fn metrics_address(&mut self) -> anyhow::Result<SocketAddr> {
        let line = within(STEP_TIMEOUT, "the metrics line", self.stdout.next_line())
            .await??
            .context("clawnet-bootstrap exited before serving metrics")?;
        let address = line
            .strip_prefix("metrics http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .with_context(|| format!("unexpected stdout line {line:?}"))?;
        Ok(address.parse()?)
    }

    /// The next `listening <multiaddr>/p2p/<peer id>` line, split into address and peer id.
    async fn next_listen_addr(&mut self) -> anyhow::Result<(Multiaddr, PeerId)> {
        let line = within(STEP_TIMEOUT, "a listening line", self.stdout.next_line())
            .await??
            .context("clawnet-bootstrap exited before listening")?;
        let addr: Multiaddr =
            line.strip_prefix("listening ").with_context(|| format!("unexpected stdout line {line:?}"))?.parse()?;
        let Some(Protocol::P2p(peer_id)) = addr.iter().last() else {
            bail!("listening address {addr} does not end in /p2p/<peer id>");
        };
        Ok((addr, peer_id))
    }

    /// Sends `signal` (a `kill -s` name) and waits for the exit.
    async fn stop(&mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().context("relay already exited")?;
        let status = Command::new("kill").args(["-s", signal, &pid.to_string()]).status().await?;
        ensure!(status.success(), "kill -s {signal} {pid} failed");
        Ok(within(STEP_TIMEOUT, "the relay to exit", self.child.wait()).await??)
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        // Already exited (after `stop`) is fine; otherwise SIGKILL. `kill_on_drop` reaps it.
        let _ = self.child.start_kill();
    }
}

fn relay_command(key_file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clawnet-bootstrap"));
    command.arg("--listen").arg("/ip4/127.0.0.1/tcp/0").arg("--key-file").arg(key_file);
    if std::env::var_os("RUST_LOG").is_none() {
        // Quiet by default (the relay warns that it has no --external-address); set RUST_LOG
        // to see its logs.
        command.env("RUST_LOG", "error");
    }
    command
}

/// What the relay announces through identify.
async fn identify_relay(relay_addr: Multiaddr, relay_id: PeerId) -> anyhow::Result<identify::Info> {
    let mut probe = identify_probe()?;
    probe.dial(relay_addr)?;
    within(STEP_TIMEOUT, "identify from the relay", async {
        loop {
            match probe.select_next_some().await {
                SwarmEvent::Behaviour(identify::Event::Received { peer_id, info, .. }) if peer_id == relay_id => {
                    break Ok(info);
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    bail!("cannot connect to the relay: {error}")
                }
                _ => {}
            }
        }
    })
    .await?
}

fn identify_probe() -> anyhow::Result<Swarm<identify::Behaviour>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            identify::Behaviour::new(identify::Config::new("/clawnet/1.0.0".to_owned(), key.public()))
        })?
        .build())
}

#[derive(NetworkBehaviour)]
struct RelayClient {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
}

fn relay_client() -> anyhow::Result<Swarm<RelayClient>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key, relay| RelayClient {
            relay,
            identify: identify::Behaviour::new(identify::Config::new("/clawnet/1.0.0".to_owned(), key.public())),
        })?
        .build())
}

#[derive(NetworkBehaviour)]
struct KadPeer {
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
}

/// A peer on the ClawNet DHT in server mode (reachable on loopback, so routable).
fn kad_peer() -> anyhow::Result<Swarm<KadPeer>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad::Config::new(CLAWNET_KAD),
            );
            kad.set_mode(Some(kad::Mode::Server));
            KadPeer {
                kad,
                identify: identify::Behaviour::new(identify::Config::new("/clawnet/1.0.0".to_owned(), key.public())),
            }
        })?
        .build())
}
