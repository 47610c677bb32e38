//! Shared helpers for the relay's integration tests: an in-process relay on loopback, and a
//! mailbox client written from the framing documented in `clawnet_protocol::mailbox` (not from
//! the relay's own codec, so the two are checked against each other).
//!
//! Each test file includes this module and uses a part of it.
#![allow(dead_code)]

use std::{io, net::SocketAddr, time::Duration};

use anyhow::{Context as _, bail};
use clawnet_bootstrap::{BootstrapRelay, RelayConfig};
use clawnet_crypto::{AgreementSecret, SealedEnvelope, SigningPublicKey};
use clawnet_protocol::mailbox::{self, FRAME_HEADER_LEN, MailboxRequest, MailboxResponse};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder,
    futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, StreamExt as _},
    identity::Keypair,
    multiaddr::Protocol,
    noise,
    request_response::{self, OutboundFailure, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::mpsc,
    task::JoinHandle,
};

/// Upper bound for anything a test waits for; the happy path takes milliseconds.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) const MAILBOX_PROTOCOL: StreamProtocol = StreamProtocol::new(mailbox::PROTOCOL_NAME);

pub(crate) async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(limit, future).await.with_context(|| format!("timed out waiting for {what}"))
}

/// A relay running in this process on a loopback TCP port; stopped when dropped.
pub(crate) struct InProcessRelay {
    /// Its listen address, ending in `/p2p/<peer id>`.
    pub(crate) addr: Multiaddr,
    pub(crate) peer_id: PeerId,
    pub(crate) metrics: Option<SocketAddr>,
    task: JoinHandle<()>,
}

impl InProcessRelay {
    /// Starts a relay with `config`, listening on `127.0.0.1:0` whatever `config.listen` says.
    pub(crate) async fn start(config: RelayConfig) -> anyhow::Result<Self> {
        let config = RelayConfig { listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?], ..config };
        let relay = BootstrapRelay::start(Keypair::generate_ed25519(), &config)?;
        let peer_id = relay.peer_id();
        let metrics = relay.metrics_address();
        let (listening, mut addrs) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            let on_listen = move |addr: &Multiaddr| {
                let _ = listening.try_send(addr.clone());
            };
            if let Err(err) = relay.run(std::future::pending(), on_listen).await {
                panic!("relay stopped: {err}");
            }
        });
        let addr = within(STEP_TIMEOUT, "the relay to listen", addrs.recv())
            .await?
            .context("the relay stopped before listening")?
            .with(Protocol::P2p(peer_id));
        Ok(Self { addr, peer_id, metrics, task })
    }
}

impl Drop for InProcessRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A peer that talks to a relay's mailbox. Its libp2p key is an ed25519 device key, so it has a
/// box.
pub(crate) struct MailboxClient {
    swarm: Swarm<request_response::Behaviour<ClientCodec>>,
    /// Its device key: what deposits for it are addressed to.
    pub(crate) key: SigningPublicKey,
    relay: Option<PeerId>,
}

impl MailboxClient {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let keypair = Keypair::generate_ed25519();
        let key = SigningPublicKey::from_bytes(&keypair.public().try_into_ed25519()?.to_bytes())?;
        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    ClientCodec,
                    [(MAILBOX_PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default().with_request_timeout(STEP_TIMEOUT),
                )
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Ok(Self { swarm, key, relay: None })
    }

    pub(crate) fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Connects to the relay at `addr` (ending in `/p2p/<peer id>`).
    pub(crate) async fn connect(&mut self, addr: &Multiaddr) -> anyhow::Result<()> {
        let Some(Protocol::P2p(relay)) = addr.iter().last() else { bail!("{addr} names no peer id") };
        self.swarm.dial(addr.clone())?;
        within(STEP_TIMEOUT, "a connection to the relay", async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == relay => break Ok(()),
                    SwarmEvent::OutgoingConnectionError { error, .. } => bail!("cannot connect to the relay: {error}"),
                    _ => {}
                }
            }
        })
        .await??;
        self.relay = Some(relay);
        Ok(())
    }

    /// Sends `request` to the connected relay and waits for the answer or the failure.
    pub(crate) async fn try_ask(
        &mut self,
        request: MailboxRequest,
    ) -> anyhow::Result<Result<MailboxResponse, OutboundFailure>> {
        let relay = self.relay.context("not connected to a relay")?;
        let request_id = self.swarm.behaviour_mut().send_request(&relay, request);
        within(STEP_TIMEOUT, "the relay's answer", async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { request_id: id, response },
                        ..
                    }) if id == request_id => break Ok(response),
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id: id, error, ..
                    }) if id == request_id => break Err(error),
                    _ => {}
                }
            }
        })
        .await
    }

    /// Like [`MailboxClient::try_ask`], with a failure as an error.
    pub(crate) async fn ask(&mut self, request: MailboxRequest) -> anyhow::Result<MailboxResponse> {
        self.try_ask(request).await?.context("mailbox request failed")
    }

    /// Fetches everything waiting (one page).
    pub(crate) async fn fetch(&mut self) -> anyhow::Result<Vec<mailbox::MailboxItem>> {
        match self.ask(MailboxRequest::Fetch { max_items: u16::MAX }).await? {
            MailboxResponse::Items { items, .. } => Ok(items),
            other => bail!("fetch answered {other:?}"),
        }
    }
}

/// `payload` sealed to `owner`'s agreement key for `recipient`'s box.
pub(crate) fn sealed_for(owner: &AgreementSecret, recipient: &SigningPublicKey, payload: &[u8]) -> SealedEnvelope {
    SealedEnvelope::seal(payload, &[owner.public_key()], &mailbox::seal_context(recipient))
        .unwrap_or_else(|err| panic!("cannot seal: {err}"))
}

/// The client side of the mailbox framing, from the protocol documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientCodec;

impl request_response::Codec for ClientCodec {
    type Protocol = StreamProtocol;
    type Request = MailboxRequest;
    type Response = MailboxResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<MailboxRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::ErrorKind::Unsupported.into())
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<MailboxResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut header = [0u8; FRAME_HEADER_LEN];
        io.read_exact(&mut header).await?;
        let len = mailbox::payload_len(header, mailbox::MAX_RESPONSE_LEN)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await?;
        MailboxResponse::decode(&payload).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: MailboxRequest) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&request.to_frame()).await?;
        io.flush().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: MailboxResponse) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// `GET /metrics` from the endpoint at `address`: the status line and the body.
pub(crate) async fn scrape(address: SocketAddr) -> anyhow::Result<(String, String)> {
    within(STEP_TIMEOUT, "the metrics endpoint", async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let (head, body) = response.split_once("\r\n\r\n").context("no end of the response head")?;
        let status = head.lines().next().unwrap_or_default().to_owned();
        Ok::<_, anyhow::Error>((status, body.to_owned()))
    })
    .await?
}

/// The value of the sample `name` (with its labels, exactly as exported) in a scrape.
pub(crate) fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
