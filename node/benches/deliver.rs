//! Delivery benchmark: `/clawnet/deliver/1` with its durable outbox and inbox, next to raw
//! libp2p request-response and raw redb durable commits measured in the same run.
//!
//! A delivery needs two durable commits before it is complete: the sender queues the message
//! (outbox) before sending, and the receiver records it (inbox, with its audit entry) before
//! signing the acknowledgement. Its latency floor is one raw request-response round trip plus
//! two raw durable commits; it is measured until the sender holds the verified signed
//! acknowledgement. The sender then records the acknowledgement (a third commit, off the
//! delivery's path); that full "settled" latency is printed too, against RTT + 3 commits.
//!
//! Run: `cargo bench -p clawnet-node --bench deliver` (add `-- --runs N`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawnet_crypto::{Signed, Timestamp};
use clawnet_node::config::NetworkSettings;
use clawnet_node::delivery::{Accepted, Handler, Inbox, Outbox, Refusal, enqueue};
use clawnet_node::home::{KeyProtection, NodeHome, UnlockedHome};
use clawnet_node::network::{Network, NetworkEvent};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::session::Turn;
use clawnet_protocol::wire::WireMessage;
use clawnet_protocol::{MessageId, SessionId};
use clawnet_storage::Change;
use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use tokio_util::sync::CancellationToken;

const LATENCY_SAMPLES: usize = 300;
const THROUGHPUT_MESSAGES: usize = 3000;
const IN_FLIGHT: usize = 64;
const RAW_TABLE: redb::TableDefinition<'static, u64, &[u8]> = redb::TableDefinition::new("raw");

fn main() -> anyhow::Result<()> {
    let runs = std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut results = Vec::new();
    for run in 1..=runs {
        let result = runtime.block_on(run_once())?;
        println!("run {run}: {result}");
        results.push(result);
    }
    let median = |f: &dyn Fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let p50 = median(&|r| r.delivery_p50_us);
    let rtt = median(&|r| r.raw_rtt_p50_us);
    let commit = median(&|r| r.raw_commit_p50_us);
    let floor_ratio = median(&|r| r.delivery_p50_us / (r.raw_rtt_p50_us + 2.0 * r.raw_commit_p50_us));
    let settled = median(&|r| r.settled_p50_us);
    let settled_ratio = median(&|r| r.settled_p50_us / (r.raw_rtt_p50_us + 3.0 * r.raw_commit_p50_us));
    let throughput = median(&|r| r.delivery_per_s);
    let raw_throughput = median(&|r| r.raw_per_s);
    let throughput_ratio = median(&|r| r.delivery_per_s / r.raw_per_s);
    println!("\nmedian of {runs} runs (ratios are medians of each run's ratio)");
    println!("  delivery latency p50 (one in flight):       {p50:>9.1} us  (queued until signed ack verified)");
    println!("  raw request-response round trip p50:        {rtt:>9.1} us");
    println!("  raw redb durable commit p50:                {commit:>9.1} us");
    println!("  delivery / (raw RTT + 2 raw commits):       {floor_ratio:>9.2}  (target <= 1.20)");
    println!("  settled latency p50 (ack also recorded):    {settled:>9.1} us");
    println!("  settled / (raw RTT + 3 raw commits):        {settled_ratio:>9.2}");
    println!("  deliveries/s with {IN_FLIGHT} in flight:              {throughput:>9.0}");
    println!("  raw request-response/s with {IN_FLIGHT} in flight:    {raw_throughput:>9.0}");
    println!("  delivery / raw throughput:                  {throughput_ratio:>9.2}  (target >= 0.50)");
    Ok(())
}

struct RunResult {
    delivery_p50_us: f64,
    settled_p50_us: f64,
    raw_rtt_p50_us: f64,
    raw_commit_p50_us: f64,
    delivery_per_s: f64,
    raw_per_s: f64,
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delivery p50 {:.1}us (settled {:.1}us) vs rtt {:.1}us + commit {:.1}us; {:.0}/s vs raw {:.0}/s",
            self.delivery_p50_us,
            self.settled_p50_us,
            self.raw_rtt_p50_us,
            self.raw_commit_p50_us,
            self.delivery_per_s,
            self.raw_per_s
        )
    }
}

async fn run_once() -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let (raw_commit_p50_us, raw_rtt_p50_us, raw_per_s) = raw_floors(dir.path()).await?;
    let (delivery_p50_us, settled_p50_us, delivery_per_s) = deliveries(dir.path()).await?;
    Ok(RunResult { delivery_p50_us, settled_p50_us, raw_rtt_p50_us, raw_commit_p50_us, delivery_per_s, raw_per_s })
}

/// Accepts every delivery, recording it with an audit entry as a node does.
#[derive(Debug)]
struct AcceptAll;

impl Handler for AcceptAll {
    type FollowUp = ();

    async fn handle(&self, peer: PeerId, id: MessageId, message: WireMessage) -> Result<Accepted<()>, Refusal> {
        let audit = AuditDraft::new(
            Actor::Node,
            "delivery.received",
            format!("{} {id} from node {peer}", message.kind()),
            "benchmark",
            Outcome::Success,
        );
        Ok(Accepted { change: Change::new(|_txn| Ok(())).with_audit(audit), follow_up: (), hold: None })
    }

    async fn committed(&self, (): ()) {}
}

struct Side {
    home: Arc<UnlockedHome>,
    network: Network,
    events: tokio::sync::mpsc::Receiver<NetworkEvent>,
}

async fn side(dir: &std::path::Path, name: &str, shutdown: &CancellationToken) -> anyhow::Result<Side> {
    let home = Arc::new(NodeHome::init(&dir.join(name), name, KeyProtection::None)?);
    let settings =
        NetworkSettings { listen: vec!["/ip4/127.0.0.1/tcp/0".into()], relay: false, ..NetworkSettings::default() };
    let device = clawnet_crypto::SigningSecret::from_bytes(&home.keys().device.to_bytes());
    let (network, events, _task) = Network::start(&device, &settings, shutdown.child_token()).await?;
    Ok(Side { home, network, events })
}

/// The real delivery path between two nodes; returns (p50 latency and p50 settled latency in
/// us, deliveries/s).
async fn deliveries(dir: &std::path::Path) -> anyhow::Result<(f64, f64, f64)> {
    let shutdown = CancellationToken::new();
    let sender = side(dir, "sender", &shutdown).await?;
    let mut receiver = side(dir, "receiver", &shutdown).await?;
    let receiver_device = receiver.home.db().info().device_key;
    let addresses: Vec<String> = wait_addresses(&receiver.network).await?.iter().map(|a| a.to_string()).collect();
    sender
        .home
        .db()
        .commit(Change::new(move |txn| txn.add_peer_addresses(&receiver_device, &addresses, Timestamp::now())))?;

    let receiver_home = receiver.home.clone();
    let inbox = Inbox::new(receiver.home.clone(), AcceptAll);
    let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let request_count = requests.clone();
    let pump_stop = shutdown.child_token();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = pump_stop.cancelled() => break,
                event = receiver.events.recv() => match event {
                    Some(NetworkEvent::Delivery { peer, batch, reply }) => {
                        let inbox = inbox.clone();
                        requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::spawn(async move { let _ = reply.send(inbox.receive(peer, batch).await); });
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
    });
    let outbox = Outbox::new(sender.home.db().clone(), sender.network.clone());
    tokio::spawn(outbox.clone().run(shutdown.child_token()));
    let mut settled = outbox.settled();
    let mut acknowledged = outbox.acknowledged();
    // Messages are made (and signed) before timing: producing them is the application's cost.
    let mut messages: Vec<Option<WireMessage>> =
        (0..=LATENCY_SAMPLES + THROUGHPUT_MESSAGES).map(|n| Some(message(&sender.home, n))).collect();
    let queue = |messages: &mut Vec<Option<WireMessage>>, n: usize| {
        let message = messages[n].take().expect("each message is sent once");
        sender
            .home
            .db()
            .submit(Change::new(move |txn| enqueue(txn, receiver_device, &message, Timestamp::now()).map(drop)))
    };

    // Warm up the connection.
    queue(&mut messages, LATENCY_SAMPLES + THROUGHPUT_MESSAGES)?.await?;
    outbox.wake();
    settled.wait_for(|count| *count >= 1).await?;

    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    let mut settle_latencies = Vec::with_capacity(LATENCY_SAMPLES);
    let samples = if std::env::var_os("BENCH_THROUGHPUT_ONLY").is_some() { 1 } else { LATENCY_SAMPLES };
    for slot in messages.iter_mut().take(samples) {
        let before = *settled.borrow();
        let acked_before = *acknowledged.borrow();
        let start = Instant::now();
        // One at a time, as a node queues a message: committed right away when the writer is idle.
        let message = slot.take().expect("each message is sent once");
        let change = Change::new(move |txn| enqueue(txn, receiver_device, &message, Timestamp::now()).map(drop));
        clawnet_node::node::commit(sender.home.db(), change).await?;
        outbox.wake();
        acknowledged.wait_for(|count| *count > acked_before).await?;
        latencies.push(start.elapsed());
        settled.wait_for(|count| *count > before).await?;
        settle_latencies.push(start.elapsed());
    }

    let base = *settled.borrow();
    let cpu_before = cpu_time();
    let start = Instant::now();
    let mut queued = 0;
    let mut pending = VecDeque::new();
    while (*settled.borrow() - base) < THROUGHPUT_MESSAGES as u64 {
        let done = (*settled.borrow() - base) as usize;
        while queued < THROUGHPUT_MESSAGES && queued - done < IN_FLIGHT {
            pending.push_back(queue(&mut messages, LATENCY_SAMPLES + queued)?);
            queued += 1;
        }
        while let Some(commit) = pending.pop_front() {
            commit.await?;
        }
        outbox.wake();
        settled.changed().await?;
    }
    let per_s = THROUGHPUT_MESSAGES as f64 / start.elapsed().as_secs_f64();
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let stats = outbox.stats();
        eprintln!(
            "throughput phase: wall {:?} cpu {:?}, {} delivery requests in all",
            start.elapsed(),
            cpu_time() - cpu_before,
            request_count.load(std::sync::atomic::Ordering::Relaxed)
        );
        eprintln!(
            "outbox: acknowledged {} retried {} refused {}; sender writer {:?}; receiver writer {:?}",
            stats.acknowledged.load(std::sync::atomic::Ordering::Relaxed),
            stats.retried.load(std::sync::atomic::Ordering::Relaxed),
            stats.refused.load(std::sync::atomic::Ordering::Relaxed),
            sender.home.db().writer_stats(),
            receiver_home.db().writer_stats(),
        );
    }
    shutdown.cancel();
    Ok((micros(median_duration(latencies)), micros(median_duration(settle_latencies)), per_s))
}

/// A session turn of realistic size, unique per `n`.
fn message(home: &UnlockedHome, n: usize) -> WireMessage {
    let turn = Turn {
        session: SessionId([7; 16]),
        turn_no: 1,
        prev: clawnet_crypto::Hash32([1; 32]),
        speaker: clawnet_crypto::IdentityId([2; 16]),
        text: format!("message {n}: we can deliver 500 units at 42.00 EUR each, shipped to arrive on 14 March"),
        end: None,
        sent_at: Timestamp::now(),
    };
    WireMessage::Turn(Signed::sign(&turn, &home.keys().device))
}

async fn wait_addresses(network: &Network) -> anyhow::Result<Vec<Multiaddr>> {
    for _ in 0..200 {
        let addresses = network.addresses().await?;
        if !addresses.is_empty() {
            return Ok(addresses);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("no listen address")
}

/// Raw floors: one redb durable commit, and libp2p request-response with the same framing and
/// message size; returns (commit p50 us, RTT p50 us, requests/s with IN_FLIGHT in flight).
async fn raw_floors(dir: &std::path::Path) -> anyhow::Result<(f64, f64, f64)> {
    let db = redb::Database::create(dir.join("raw.redb"))?;
    let record = vec![7u8; 400];
    let mut commits = Vec::with_capacity(LATENCY_SAMPLES);
    for key in 0..LATENCY_SAMPLES as u64 {
        let start = Instant::now();
        let tx = db.begin_write()?;
        tx.open_table(RAW_TABLE)?.insert(key, record.as_slice())?;
        tx.commit()?;
        commits.push(start.elapsed());
    }

    let mut client = raw_swarm()?;
    let mut server = raw_swarm()?;
    server.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let address = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_peer = *server.local_peer_id();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = server.select_next_some().await
            {
                let _ = server.behaviour_mut().send_response(channel, vec![1u8; 200]);
            }
        }
    });
    client.add_peer_address(server_peer, address);
    let payload = vec![3u8; 400];
    // Warm up, then one at a time.
    raw_exchange(&mut client, server_peer, &payload, 1, 1).await;
    let mut rtts = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let start = Instant::now();
        raw_exchange(&mut client, server_peer, &payload, 1, 1).await;
        rtts.push(start.elapsed());
    }
    let start = Instant::now();
    raw_exchange(&mut client, server_peer, &payload, THROUGHPUT_MESSAGES, IN_FLIGHT).await;
    let per_s = THROUGHPUT_MESSAGES as f64 / start.elapsed().as_secs_f64();
    Ok((micros(median_duration(commits)), micros(median_duration(rtts)), per_s))
}

type RawSwarm = Swarm<request_response::Behaviour<RawCodec>>;

fn raw_swarm() -> anyhow::Result<RawSwarm> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|_| {
            request_response::Behaviour::new(
                [(StreamProtocol::new("/bench/raw/1"), ProtocolSupport::Full)],
                request_response::Config::default().with_max_concurrent_streams(512),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// Sends `total` requests keeping `in_flight` outstanding; returns when all are answered.
async fn raw_exchange(client: &mut RawSwarm, server: PeerId, payload: &[u8], total: usize, in_flight: usize) {
    let (mut sent, mut answered) = (0, 0);
    while answered < total {
        while sent < total && sent - answered < in_flight {
            client.behaviour_mut().send_request(&server, payload.to_vec());
            sent += 1;
        }
        match client.select_next_some().await {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { .. },
                ..
            }) => answered += 1,
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                panic!("raw request failed: {error}")
            }
            _ => {}
        }
    }
}

/// Length-prefixed frames both ways, as `/clawnet/deliver/1` uses.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_frame(io).await
    }

    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_frame(io).await
    }

    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &req).await
    }

    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &res).await
    }
}

async fn read_frame<T: futures::AsyncRead + Unpin>(io: &mut T) -> std::io::Result<Vec<u8>> {
    use futures::AsyncReadExt;
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    io.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<T: futures::AsyncWrite + Unpin>(io: &mut T, frame: &[u8]) -> std::io::Result<()> {
    use futures::AsyncWriteExt;
    io.write_all(&(frame.len() as u32).to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.close().await
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_duration(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// CPU time (user + system) this process used so far, from /proc (Linux only; zero elsewhere).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}
