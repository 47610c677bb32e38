//! Delivery benchmark: `/clawnet/deliver/1` with its durable outbox and inbox, next to raw
//! libp2p request-response and raw redb durable commits measured in the same run.
//!
//! A delivery needs two durable commits before it is complete: the sender queues the message
//! (outbox) before sending, and the receiver records it (inbox, with its audit entry) before
//! replying. Its latency floor is one raw request-response round trip plus two raw durable
//! commits; it is measured until the sender holds the receiver's reply ("recorded"). The sender
//! then records the acknowledgement (a third commit, off the delivery's path and durable later:
//! it takes no sync of its own, its journal record is synced with the node's next durable
//! commit); that full "settled" latency is printed too, against RTT + 3 commits. The node makes a commit
//! durable with one synced write to its commit journal, and redb's own fsync only at its
//! checkpoints (`clawnet_storage`'s `journal.rs`); the floor still counts raw redb durable
//! commits, the durable commit the issue names. Also printed: the round trip
//! of the node's network path alone (the `Network` handle, a delivery lane, the receiver's lane
//! task answering at once, no database). A lane is negotiated once and then reused, where each
//! raw request negotiates its stream (a round trip), so this path can be faster than the raw one.
//!
//! Throughput is measured twice: with 64 messages kept in flight, and draining a backlog of
//! 20 000 messages queued in one commit (a node coming back to a contact after a long
//! absence), both against raw request-response with 64 in flight.
//!
//! The sender and the receiver each run on a tokio runtime of their own, as two nodes run in
//! two processes, and so do the raw client and server (see `common::side_runtime`).
//!
//! Run: `cargo bench -p clawnet-node --bench deliver` (add `-- --runs N`).

mod common;

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
use clawnet_protocol::wire::{DeliveryBatch, DeliveryReply, MessageOutcome, WireMessage};
use clawnet_protocol::{MessageId, SessionId};
use clawnet_storage::Change;
use common::{Side, cpu_time, median, median_duration, micros, on};
use libp2p::{Multiaddr, PeerId};
use tokio_util::sync::CancellationToken;

const LATENCY_SAMPLES: usize = 300;
const THROUGHPUT_MESSAGES: usize = 3000;
const IN_FLIGHT: usize = 64;
const BACKLOG: usize = 20_000;

fn main() -> anyhow::Result<()> {
    let results = common::repeat(5, run_once)?;
    let median = |f: &dyn Fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let p50 = median(&|r| r.delivery_p50_us);
    let rtt = median(&|r| r.raw_rtt_p50_us);
    let echo = median(&|r| r.echo_p50_us);
    let echo_ratio = median(&|r| r.echo_p50_us / r.raw_rtt_p50_us);
    let commit = median(&|r| r.raw_commit_p50_us);
    let floor_ratio = median(&|r| r.delivery_p50_us / (r.raw_rtt_p50_us + 2.0 * r.raw_commit_p50_us));
    let settled = median(&|r| r.settled_p50_us);
    let settled_ratio = median(&|r| r.settled_p50_us / (r.raw_rtt_p50_us + 3.0 * r.raw_commit_p50_us));
    let throughput = median(&|r| r.delivery_per_s);
    let raw_throughput = median(&|r| r.raw_per_s);
    let throughput_ratio = median(&|r| r.delivery_per_s / r.raw_per_s);
    let drain = median(&|r| r.drain_per_s);
    let drain_ratio = median(&|r| r.drain_per_s / r.raw_per_s);
    println!("\nmedian of {} runs (ratios are medians of each run's ratio)", results.len());
    println!("  delivery latency p50 (one in flight):       {p50:>9.1} us  (queued until the receiver's reply)");
    println!("  raw request-response round trip p50:        {rtt:>9.1} us");
    println!(
        "  node network path round trip p50:           {echo:>9.1} us  ({echo_ratio:.2}x raw; handle, lane, answer; no database)"
    );
    println!("  raw redb durable commit p50:                {commit:>9.1} us");
    println!("  delivery / (raw RTT + 2 raw commits):       {floor_ratio:>9.2}  (target <= 1.20)");
    println!("  settled latency p50 (ack also recorded):    {settled:>9.1} us");
    println!("  settled / (raw RTT + 3 raw commits):        {settled_ratio:>9.2}");
    println!("  deliveries/s with {IN_FLIGHT} in flight:              {throughput:>9.0}");
    println!("  raw request-response/s with {IN_FLIGHT} in flight:    {raw_throughput:>9.0}");
    println!("  delivery / raw throughput:                  {throughput_ratio:>9.2}  (target >= 0.50)");
    println!("  backlog of {BACKLOG} drained, deliveries/s:       {drain:>9.0}");
    println!("  backlog drain / raw throughput:             {drain_ratio:>9.2}");
    Ok(())
}

struct RunResult {
    echo_p50_us: f64,
    delivery_p50_us: f64,
    settled_p50_us: f64,
    raw_rtt_p50_us: f64,
    raw_commit_p50_us: f64,
    delivery_per_s: f64,
    raw_per_s: f64,
    drain_per_s: f64,
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delivery p50 {:.1}us (settled {:.1}us) vs rtt {:.1}us (node path {:.1}us) + commit {:.1}us; {:.0}/s vs raw {:.0}/s; backlog {:.0}/s",
            self.delivery_p50_us,
            self.settled_p50_us,
            self.raw_rtt_p50_us,
            self.echo_p50_us,
            self.raw_commit_p50_us,
            self.delivery_per_s,
            self.raw_per_s,
            self.drain_per_s
        )
    }
}

async fn run_once() -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let mut raw_db = common::RawDb::create(dir.path())?;
    let commits = (0..LATENCY_SAMPLES).map(|_| raw_db.commit_one()).collect::<anyhow::Result<Vec<_>>>()?;
    drop(raw_db);
    let raw_commit_p50_us = micros(median_duration(commits));
    let (raw_rtt_p50_us, raw_per_s) = common::raw_network(LATENCY_SAMPLES, THROUGHPUT_MESSAGES, IN_FLIGHT).await?;
    let Deliveries { echo_p50_us, latency_p50_us: delivery_p50_us, settled_p50_us, per_s: delivery_per_s, drain_per_s } =
        on(Side::First, deliveries(dir.path().to_owned())).await?;
    Ok(RunResult {
        echo_p50_us,
        delivery_p50_us,
        settled_p50_us,
        raw_rtt_p50_us,
        raw_commit_p50_us,
        delivery_per_s,
        raw_per_s,
        drain_per_s,
    })
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
        Ok(Accepted::new(Change::new(|_txn| Ok(())).with_audit(audit), (), None))
    }

    async fn committed(&self, (): ()) {}
}

struct Node {
    home: Arc<UnlockedHome>,
    network: Network,
    /// Held open, as the daemon reads it (deliveries do not come this way: see
    /// `Network::answer_deliveries`).
    _events: tokio::sync::mpsc::Receiver<NetworkEvent>,
}

/// One node's database and network, its swarm running on `side`'s runtime.
async fn node(dir: &std::path::Path, name: &str, side: Side, shutdown: &CancellationToken) -> anyhow::Result<Node> {
    let home = Arc::new(NodeHome::init(&dir.join(name), name, KeyProtection::None)?);
    let settings =
        NetworkSettings { listen: vec!["/ip4/127.0.0.1/tcp/0".into()], relay: false, ..NetworkSettings::default() };
    let device = clawnet_crypto::SigningSecret::from_bytes(&home.keys().device.to_bytes());
    let stop = shutdown.child_token();
    let (network, events, _task) = on(side, async move { Network::start(&device, &settings, stop).await }).await?;
    Ok(Node { home, network, _events: events })
}

/// What the real delivery path measured.
struct Deliveries {
    echo_p50_us: f64,
    latency_p50_us: f64,
    settled_p50_us: f64,
    per_s: f64,
    drain_per_s: f64,
}

/// The real delivery path between two nodes: the sender (its outbox, and this function as the
/// application queueing messages) on the bench's first side, the receiver (its inbox) on the
/// second (see [`common::side_runtime`]).
async fn deliveries(dir: std::path::PathBuf) -> anyhow::Result<Deliveries> {
    let dir = dir.as_path();
    let shutdown = CancellationToken::new();
    let sender = node(dir, "sender", Side::First, &shutdown).await?;
    let receiver = node(dir, "receiver", Side::Second, &shutdown).await?;
    let receiver_device = receiver.home.db().info().device_key;
    let receiver_addresses: Vec<Multiaddr> = wait_addresses(&receiver.network).await?;
    let addresses: Vec<String> = receiver_addresses.iter().map(|a| a.to_string()).collect();
    sender
        .home
        .db()
        .commit(Change::new(move |txn| txn.add_peer_addresses(&receiver_device, &addresses, Timestamp::now())))?;

    let receiver_home = receiver.home.clone();
    let inbox = Inbox::new(receiver.home.clone(), AcceptAll);
    let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let request_count = requests.clone();
    // While set, the receiver answers at once, without its inbox: the network path alone.
    // Otherwise its inbox answers, on the lane's task, as `clawnet run` has it.
    let echo = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let echoing = echo.clone();
    receiver.network.answer_deliveries(Arc::new(move |peer, batch| {
        if echoing.load(std::sync::atomic::Ordering::Relaxed) {
            let outcomes = vec![MessageOutcome::Recorded; batch.messages.len()];
            return Box::pin(std::future::ready(DeliveryReply { outcomes }));
        }
        requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let inbox = inbox.clone();
        Box::pin(async move { inbox.receive(peer, batch).await })
    }));
    // The node's network path alone: the handle, a delivery lane and the receiver's lane task,
    // with a message of the same size and no database on either side.
    let probe = DeliveryBatch { messages: vec![message(&sender.home, usize::MAX).encode()] };
    let receiver_peer = clawnet_node::network::peer_id_of(&receiver_device);
    let mut echoes = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..=LATENCY_SAMPLES {
        let start = Instant::now();
        sender.network.deliver(receiver_peer, receiver_addresses.clone(), probe.clone()).await?;
        echoes.push(start.elapsed());
    }
    echoes.remove(0); // the first one dials
    echo.store(false, std::sync::atomic::Ordering::Relaxed);

    let outbox = Outbox::new(sender.home.clone(), sender.network.clone());
    tokio::spawn(outbox.clone().run(shutdown.child_token()));
    let mut settled = outbox.settled();
    let mut acknowledged = outbox.acknowledged();
    // Messages are made (and signed) before timing: producing them is the application's cost.
    let mut messages: Vec<Option<WireMessage>> =
        (0..=LATENCY_SAMPLES + THROUGHPUT_MESSAGES).map(|n| Some(message(&sender.home, n))).collect();
    let backlog: Vec<WireMessage> =
        (0..BACKLOG).map(|n| message(&sender.home, LATENCY_SAMPLES + THROUGHPUT_MESSAGES + 1 + n)).collect();
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

    // The backlog: queued in one commit, then drained by the worker.
    let base = *settled.borrow();
    sender
        .home
        .db()
        .submit(Change::new(move |txn| {
            let now = Timestamp::now();
            for message in &backlog {
                enqueue(txn, receiver_device, message, now)?;
            }
            Ok(())
        }))?
        .await?;
    let start = Instant::now();
    outbox.wake();
    settled.wait_for(|count| *count - base >= BACKLOG as u64).await?;
    let drain_per_s = BACKLOG as f64 / start.elapsed().as_secs_f64();
    shutdown.cancel();
    Ok(Deliveries {
        echo_p50_us: micros(median_duration(echoes)),
        latency_p50_us: micros(median_duration(latencies)),
        settled_p50_us: micros(median_duration(settle_latencies)),
        per_s,
        drain_per_s,
    })
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
