//! Session benchmark: governed collaboration sessions between two real nodes on loopback, next
//! to raw libp2p request-response and raw redb durable commits measured in the same run (the
//! commits between the latency sessions, on the same disk).
//!
//! Both nodes are started as `clawnet run` starts them (libp2p TCP + Noise + Yamux, redb,
//! outbox, inbox, local API), each on a tokio runtime of its own as in two processes, are
//! contacts, and carry an owner policy that approves the collaboration on both sides, so
//! nothing waits for a person. Their identity agents think with a scripted brain that answers
//! instantly, so every cost measured is the node's: composing the turn (role prompt, history,
//! disclosure guard), signing it with the identity key, checking it against the session state
//! machine on both sides, the audit entries, the durable outbox and inbox, the delivery
//! replies, and the owner-signed close committed with the last turn.
//!
//! **Per-turn latency** (one session at a time, [`TURNS`] turns each): the time from turn *n*
//! being durable on its speaker's node to turn *n + 1* being durable on the other node, taken
//! from each node's own `Turn` event (sent right after the commit). Its critical path is: the
//! speaker's outbox sends turn *n*; the receiver checks it and commits it (inbox record, turn,
//! audit entry) before replying; the receiver's agent composes turn *n + 1*
//! and commits it (turn, outbox entry, audit entry; on the last turn the close too). That is
//! **two durable commits** and one network crossing. The acknowledgement's way back and the
//! speaker recording it (the third commit, "settle") happen while the receiver composes, so
//! they are off the path and not counted in the floor (they still compete for the CPUs and the
//! disk, which is a real cost of the design and shows in the ratio). The floor is therefore
//! `raw RTT + 2 raw commits`, as the issue states it; since the path crosses the network once
//! rather than twice, that floor is generous by about half an RTT, so the ratio against the
//! stricter `RTT / 2 + 2 commits` is printed as well. As in the deliver bench, the nodes make
//! commits durable through their commit journals and the floor counts raw redb durable commits.
//!
//! Also printed: one session's time from the ask to its last turn durable on both nodes, and
//! how many closes reached both nodes only after an outbox retry (see [`LATE_CLOSE`]).
//!
//! **Throughput**: [`PARALLEL_SESSIONS`] sessions asked for at once between the same two nodes,
//! timed from the owner policy approving them (proposals and consents included): turns/s until
//! every turn is durable on both nodes, against raw request-response with [`IN_FLIGHT`] requests
//! in flight; and sessions/s until every session is closed on both nodes.
//!
//! Run: `cargo bench -p clawnet-node --bench session` (add `-- --runs N`). `BENCH_DEBUG=1`
//! prints CPU time, outbox and writer counters per phase; `BENCH_DIR=/dev/shm` puts the
//! databases on tmpfs, which takes the disk out of every figure (to see what is not fsync).
//! `BENCH_PARALLEL_ONLY=N` runs only the parallel phase, N times on one pair of nodes, and
//! prints each one's turns/s: for a profiler (`perf record`) to see that phase alone. Later
//! repetitions run on larger tables, ~20% slower by the twelfth, so compare like with like.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clawnet_crypto::{IdentityId, OwnerId};
use clawnet_node::agents::brain::AnyBrain;
use clawnet_node::agents::scripted::ScriptedBrain;
use clawnet_node::config::{NetworkSettings, NodeConfig};
use clawnet_node::daemon::Daemon;
use clawnet_node::home::{KeyProtection, NodeHome};
use clawnet_node::node::Node;
use clawnet_node::sessions::{NodeEvent, OwnerPolicy, PolicyDirection, SessionSettings};
use clawnet_node::views::ContactView;
use clawnet_storage::approvals::ApprovalRequest;
use common::{RawDb, Side, cpu_time, median, micros, on};
use tokio::sync::broadcast;

/// Turns in every session (the turn limit both owners grant; the last carries the close).
const TURNS: u16 = 20;
/// Sessions run one after the other for the latency figures (after one warm-up session).
const LATENCY_SESSIONS: usize = 12;
/// Sessions run at once for the throughput figures.
const PARALLEL_SESSIONS: usize = 64;
/// Raw round trips measured one at a time; as many raw durable commits, measured between the
/// latency sessions.
const RAW_SAMPLES: usize = 300;
/// Raw requests sent for the raw throughput.
const RAW_REQUESTS: usize = 3000;
/// Raw requests in flight, as many as sessions run in parallel.
const IN_FLIGHT: usize = PARALLEL_SESSIONS;
/// How long anything that should happen on loopback may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(60);
/// What both agents say, every turn (a realistic negotiation line).
const LINE: &str = "We can deliver 500 units at 42.00 EUR each, shipped to arrive on 14 March; payment in 30 days.";

fn main() -> anyhow::Result<()> {
    if let Some(times) = std::env::var("BENCH_PARALLEL_ONLY").ok().and_then(|n| n.parse().ok()) {
        common::repeat(1, || parallel_only(times))?;
        return Ok(());
    }
    let results = common::repeat(5, run_once)?;
    let median = |f: &dyn Fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let turn_p50 = median(&|r| r.turn_p50_us);
    let turn_p90 = median(&|r| r.turn_p90_us);
    let rtt = median(&|r| r.raw.rtt_p50_us);
    let commit = median(&|r| r.raw.commit_p50_us);
    let floor = median(&|r| floor_us(&r.raw));
    let floor_ratio = median(&|r| r.turn_p50_us / floor_us(&r.raw));
    let strict_ratio = median(&|r| r.turn_p50_us / strict_floor_us(&r.raw));
    let session_ms = median(&|r| r.session_p50_ms);
    let late_closes = median(&|r| r.late_closes as f64);
    let turns_per_s = median(&|r| r.parallel_turns_per_s);
    let sessions_per_s = median(&|r| r.parallel_sessions_per_s);
    let raw_per_s = median(&|r| r.raw.per_s);
    let throughput_ratio = median(&|r| r.parallel_turns_per_s / r.raw.per_s);
    let met = |ok: bool| if ok { "met" } else { "NOT MET" };
    let line = |label: &str, value: String| println!("  {label:<50} {value}");
    println!("\nmedian of {} runs (ratios are medians of each run's ratio)", results.len());
    line("per-turn latency p50, one session at a time:", format!("{turn_p50:>9.1} us  ({TURNS} turns a session)"));
    line("per-turn latency p90:", format!("{turn_p90:>9.1} us"));
    line("raw request-response round trip p50:", format!("{rtt:>9.1} us"));
    line("raw redb durable commit p50:", format!("{commit:>9.1} us"));
    line("floor: raw RTT + 2 raw commits:", format!("{floor:>9.1} us"));
    line("turn p50 / floor:", format!("{floor_ratio:>9.2}     (target <= 1.20: {})", met(floor_ratio <= 1.2)));
    line("turn p50 / (RTT/2 + 2 raw commits):", format!("{strict_ratio:>9.2}     (one network crossing)"));
    line(
        "one session, ask to last turn on both, p50:",
        format!("{session_ms:>9.1} ms  ({:.1} sessions/s one at a time)", 1000.0 / session_ms),
    );
    line(
        "closes delayed by an outbox retry:",
        format!("{late_closes:>9.0}     of {LATENCY_SESSIONS} sessions (close >= {LATE_CLOSE:?} after the last turn)"),
    );
    line(
        &format!("turns/s, {PARALLEL_SESSIONS} sessions in parallel:"),
        format!("{turns_per_s:>9.0}     (until every turn is durable on both nodes)"),
    );
    line(
        &format!("sessions/s, {PARALLEL_SESSIONS} sessions in parallel:"),
        format!("{sessions_per_s:>9.1}     (until every session is closed on both nodes)"),
    );
    line(&format!("raw request-response/s, {IN_FLIGHT} in flight:"), format!("{raw_per_s:>9.0}"));
    line(
        "turns/s / raw request-response/s:",
        format!("{throughput_ratio:>9.2}     (target >= 0.50: {})", met(throughput_ratio >= 0.5)),
    );
    Ok(())
}

/// The floor of one turn as the issue defines it: one raw round trip and the two durable
/// commits on the turn's path (the receiver records it, then commits its answer).
fn floor_us(raw: &RawFloors) -> f64 {
    raw.rtt_p50_us + 2.0 * raw.commit_p50_us
}

/// The same with the one network crossing the path actually makes, estimated as half a round
/// trip.
fn strict_floor_us(raw: &RawFloors) -> f64 {
    raw.rtt_p50_us / 2.0 + 2.0 * raw.commit_p50_us
}

/// The raw baselines of one run.
#[derive(Debug, Clone, Copy)]
struct RawFloors {
    /// One redb durable commit of one 400-byte record, p50, in microseconds.
    commit_p50_us: f64,
    /// One request-response round trip (400-byte request, 200-byte response), p50, in
    /// microseconds.
    rtt_p50_us: f64,
    /// Requests answered per second with [`IN_FLIGHT`] in flight.
    per_s: f64,
}

struct RunResult {
    turn_p50_us: f64,
    turn_p90_us: f64,
    session_p50_ms: f64,
    late_closes: usize,
    parallel_turns_per_s: f64,
    parallel_sessions_per_s: f64,
    raw: RawFloors,
}

impl std::fmt::Display for RunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "turn p50 {:.1}us p90 {:.1}us vs rtt {:.1}us + 2 x commit {:.1}us ({:.2}x); session {:.1}ms, \
             {} late closes; {PARALLEL_SESSIONS} parallel: {:.0} turns/s ({:.2}x raw {:.0}/s), {:.1} sessions/s",
            self.turn_p50_us,
            self.turn_p90_us,
            self.raw.rtt_p50_us,
            self.raw.commit_p50_us,
            self.turn_p50_us / floor_us(&self.raw),
            self.session_p50_ms,
            self.late_closes,
            self.parallel_turns_per_s,
            self.parallel_turns_per_s / self.raw.per_s,
            self.raw.per_s,
            self.parallel_sessions_per_s,
        )
    }
}

async fn run_once() -> anyhow::Result<RunResult> {
    let dir = bench_dir()?;
    let (rtt_p50_us, raw_per_s) = common::raw_network(RAW_SAMPLES, RAW_REQUESTS, IN_FLIGHT).await?;
    let mut raw_db = RawDb::create(dir.path())?;
    let pair = Pair::start(dir.path()).await?;
    let mut events = Events::of(&pair);
    // The nodes stop in order whether or not a phase failed.
    let phases = async {
        let sequential = sequential(&pair, &mut events, &mut raw_db).await?;
        Ok::<_, anyhow::Error>((sequential, parallel(&pair, &mut events).await?))
    }
    .await;
    pair.shutdown().await;
    let (mut sequential, parallel) = phases?;
    let turns = &mut sequential.intervals;
    turns.sort();
    let percentile = |p: usize| micros(turns[(turns.len() * p / 100).min(turns.len() - 1)]);
    Ok(RunResult {
        turn_p50_us: percentile(50),
        turn_p90_us: percentile(90),
        session_p50_ms: micros(common::median_duration(sequential.sessions)) / 1000.0,
        late_closes: sequential.late_closes,
        parallel_turns_per_s: parallel.turns_per_s,
        parallel_sessions_per_s: parallel.sessions_per_s,
        raw: RawFloors {
            commit_p50_us: micros(common::median_duration(sequential.raw_commits)),
            rtt_p50_us,
            per_s: raw_per_s,
        },
    })
}

/// Turns/s of each repetition of the parallel phase alone (`BENCH_PARALLEL_ONLY`).
struct ParallelOnly(Vec<f64>);

impl std::fmt::Display for ParallelOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each: Vec<String> = self.0.iter().map(|t| format!("{t:.0}")).collect();
        write!(f, "{PARALLEL_SESSIONS} sessions in parallel, {} times: {} turns/s", self.0.len(), each.join(" / "))
    }
}

/// The parallel phase `times` times on one pair of nodes, and nothing else.
async fn parallel_only(times: usize) -> anyhow::Result<ParallelOnly> {
    let dir = bench_dir()?;
    let pair = Pair::start(dir.path()).await?;
    let mut events = Events::of(&pair);
    let mut rates = Vec::with_capacity(times);
    for _ in 0..times {
        match parallel(&pair, &mut events).await {
            Ok(phase) => rates.push(phase.turns_per_s),
            Err(err) => {
                pair.shutdown().await;
                return Err(err);
            }
        }
    }
    pair.shutdown().await;
    Ok(ParallelOnly(rates))
}

/// A fresh directory for a run's databases, under `BENCH_DIR` if set.
fn bench_dir() -> anyhow::Result<tempfile::TempDir> {
    let base = std::env::var_os("BENCH_DIR").map_or_else(|| env!("CARGO_TARGET_TMPDIR").into(), PathBuf::from);
    Ok(tempfile::tempdir_in(base)?)
}

/// Two running nodes whose identities "procurement" (acme) and "sales" (globex) are assigned
/// to each other, each with a policy approving their sessions.
struct Pair {
    acme: Daemon,
    globex: Daemon,
    /// Acme's identity that asks for the sessions.
    procurement: IdentityId,
    /// Globex's owner, whom it asks.
    globex_owner: OwnerId,
}

impl Pair {
    /// Acme on the bench's first side, globex on its second (see [`common::side_runtime`]): every
    /// call into a node below runs on that node's runtime, so the tasks it spawns do too.
    async fn start(dir: &std::path::Path) -> anyhow::Result<Pair> {
        let acme = on(Side::First, start_node(dir.to_owned(), "acme", "procurement", "globex")).await?;
        let globex = on(Side::Second, start_node(dir.to_owned(), "globex", "sales", "acme")).await?;
        befriend(acme.node(), globex.node()).await?;
        let procurement = acme.node().home.create_identity("procurement", "buys for acme")?.id;
        globex.node().home.create_identity("sales", "sells for globex")?;
        let acme_sees_globex = contact_of(acme.node(), globex.node())?;
        let globex_sees_acme = contact_of(globex.node(), acme.node())?;
        for (side, node, contact, identity) in [
            (Side::First, acme.node(), &acme_sees_globex, "procurement"),
            (Side::Second, globex.node(), &globex_sees_acme, "sales"),
        ] {
            let (node, contact) = (node.clone(), contact.id.clone());
            on(side, async move { node.assign(&contact, identity).await }).await?;
        }
        for (viewer, contact) in [(acme.node(), &acme_sees_globex), (globex.node(), &globex_sees_acme)] {
            eventually("each node to see the other's identity", || {
                viewer.contact_tags(&contact.id).ok().filter(|t| !t.tags.is_empty())
            })
            .await?;
        }
        let globex_owner = globex.node().home.owner();
        Ok(Pair { acme, globex, procurement, globex_owner })
    }

    fn nodes(&self) -> [&Arc<Node>; 2] {
        [self.acme.node(), self.globex.node()]
    }

    /// Acme's procurement identity asks its owner for a session with globex (the policy will
    /// approve it once [`Pair::approve`] runs).
    async fn ask(&self, purpose: String) -> anyhow::Result<()> {
        let request = ApprovalRequest::Collaboration { contact: self.globex_owner, purpose, parent: None };
        let (acme, procurement) = (self.acme.node().clone(), self.procurement);
        on(Side::First, async move { acme.home.request_approval(procurement, request, None, Vec::new()).await })
            .await?;
        Ok(())
    }

    /// Acme's owner policy decides what is pending.
    async fn approve(&self) {
        let acme = self.acme.node().clone();
        on(Side::First, async move { acme.apply_policies().await }).await;
    }

    async fn shutdown(self) {
        on(Side::First, self.acme.shutdown()).await;
        on(Side::Second, self.globex.shutdown()).await;
    }
}

/// A node named `name` whose `identity` works with the contact named `partner` under a policy,
/// and whose agents say [`LINE`] instantly.
async fn start_node(
    dir: PathBuf,
    name: &'static str,
    identity: &'static str,
    partner: &'static str,
) -> anyhow::Result<Daemon> {
    let home = NodeHome::init(&dir.join(name), name, KeyProtection::None)?;
    let config = NodeConfig {
        network: NetworkSettings {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            relay: false,
            ..NetworkSettings::default()
        },
        sessions: SessionSettings { default_turns: TURNS, max_turns: TURNS, ..SessionSettings::default() },
        policy: vec![OwnerPolicy {
            contact: partner.into(),
            identity: identity.into(),
            direction: PolicyDirection::Both,
            max_turns: TURNS,
            recursion: false,
        }],
        ..NodeConfig::default()
    };
    let brain = AnyBrain::Scripted(ScriptedBrain::saying([LINE]));
    Ok(Daemon::start_with_brain(home, config, Arc::new(brain)).await?)
}

/// Makes `a` (on the first side) and `b` (on the second) contacts as their owners would: `a`
/// invites, `b` adds the code, `a` accepts; returns once `b` sees `a` as connected.
async fn befriend(a: &Arc<Node>, b: &Arc<Node>) -> anyhow::Result<()> {
    let inviter = a.clone();
    let code = on(Side::First, async move { inviter.invite(Duration::from_secs(3600)).await }).await?.code;
    let adder = b.clone();
    on(Side::Second, async move { adder.add_contact(&code).await }).await?;
    let request = eventually("the contact request", || contact_of(a, b).ok().filter(ContactView::is_request)).await?;
    let accepter = a.clone();
    on(Side::First, async move { accepter.accept_contact(&request.id).await }).await?;
    eventually("the contact to connect", || contact_of(b, a).ok().filter(|c| c.state == "connected")).await?;
    Ok(())
}

/// The contact `other` as `viewer` sees it.
fn contact_of(viewer: &Node, other: &Node) -> anyhow::Result<ContactView> {
    let fingerprint = other.home.owner().fingerprint().to_string();
    viewer.contacts()?.into_iter().find(|c| c.id == fingerprint).context("not a contact")
}

/// Polls `check` every few milliseconds until it returns `Some`, for at most [`PATIENCE`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Both nodes' live events, each stamped when it is received.
struct Events {
    receivers: [broadcast::Receiver<NodeEvent>; 2],
    /// Events lost because this reader fell behind.
    lagged: u64,
}

impl Events {
    fn of(pair: &Pair) -> Events {
        Events { receivers: pair.nodes().map(|node| node.subscribe()), lagged: 0 }
    }

    /// Drops the events received so far.
    fn clear(&mut self) {
        for receiver in &mut self.receivers {
            *receiver = receiver.resubscribe();
        }
    }

    /// The next event of either node (0 acme, 1 globex), or `None` if some were lost (counted in
    /// `lagged`) or none came within `wait`.
    async fn next(&mut self, wait: Duration) -> anyhow::Result<Option<(usize, Instant, NodeEvent)>> {
        let [acme, globex] = &mut self.receivers;
        let received = tokio::time::timeout(wait, async {
            tokio::select! {
                event = acme.recv() => (0, event),
                event = globex.recv() => (1, event),
            }
        })
        .await;
        let at = Instant::now();
        match received {
            Err(_elapsed) => Ok(None),
            Ok((side, Ok(event))) => Ok(Some((side, at, event))),
            Ok((_, Err(broadcast::error::RecvError::Lagged(lost)))) => {
                self.lagged += lost;
                Ok(None)
            }
            Ok((_, Err(broadcast::error::RecvError::Closed))) => bail!("a node stopped"),
        }
    }
}

/// What the sessions run one at a time showed.
struct Sequential {
    /// Turn-to-turn intervals (each turn durable on its speaker's node to the next one durable
    /// on the other node).
    intervals: Vec<Duration>,
    /// Each session from the ask to its last turn durable on both nodes.
    sessions: Vec<Duration>,
    /// Sessions whose close reached both nodes only [`LATE_CLOSE`] or more after the last turn.
    late_closes: usize,
    /// Raw durable commits, measured between the sessions.
    raw_commits: Vec<Duration>,
}

/// A close this long after the last turn waited for an outbox retry: normally it arrives with
/// the last turn, in the same delivery batch, after it (the last speaker queues both in one
/// commit, and the sending worker keeps queue order). Were the close to come first, the
/// receiver would refuse it for later, the turn it follows not being there yet, and the first
/// retry comes after 500 ms.
const LATE_CLOSE: Duration = Duration::from_millis(100);

/// One warm-up session, then [`LATENCY_SESSIONS`] sessions one at a time, each run until it is
/// closed on both nodes before the next is asked for. Between two sessions, raw durable commits
/// are measured on the same disk, so the floor sees the disk as the sessions saw it.
async fn sequential(pair: &Pair, events: &mut Events, raw_db: &mut RawDb) -> anyhow::Result<Sequential> {
    let mut result =
        Sequential { intervals: Vec::new(), sessions: Vec::new(), late_closes: 0, raw_commits: Vec::new() };
    let cpu_before = cpu_time();
    let started = Instant::now();
    for index in 0..=LATENCY_SESSIONS {
        // The previous session's acknowledgements settle meanwhile.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let commits = tokio::task::block_in_place(|| {
            (0..RAW_SAMPLES / LATENCY_SESSIONS).map(|_| raw_db.commit_one()).collect::<anyhow::Result<Vec<_>>>()
        })?;
        if index > 0 {
            result.raw_commits.extend(commits);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        events.clear();
        let start = Instant::now();
        pair.ask(format!("sequential session {index}")).await?;
        pair.approve().await;
        let mut own_turns: BTreeMap<u32, Instant> = BTreeMap::new();
        let mut last_received = None;
        let mut closed = [None, None];
        let deadline = start + PATIENCE;
        while closed.iter().any(Option::is_none) {
            if Instant::now() > deadline {
                bail!("session {index} did not close on both nodes (turns seen: {})", own_turns.len());
            }
            let Some((side, at, event)) = events.next(Duration::from_millis(200)).await? else {
                if events.lagged > 0 {
                    bail!("the benchmark fell behind the nodes' events in a lone session");
                }
                continue;
            };
            match event {
                NodeEvent::Turn { turn_no, speaker, .. } if speaker == "us" => {
                    own_turns.insert(turn_no, at);
                }
                NodeEvent::Turn { turn_no, .. } if turn_no == u32::from(TURNS) => last_received = Some(at),
                NodeEvent::SessionClosed { reason, .. } => {
                    anyhow::ensure!(reason == "turn limit reached", "session {index} ended early: {reason}");
                    closed[side] = Some(at);
                }
                _ => {}
            }
        }
        let times: Vec<Instant> = own_turns.values().copied().collect();
        anyhow::ensure!(times.len() == usize::from(TURNS), "session {index}: {} own turns seen", times.len());
        let last_turn = last_received.context("the last turn was not received")?;
        let both_closed = closed.iter().flatten().max().copied().unwrap_or(last_turn);
        if index > 0 {
            result.intervals.extend(times.windows(2).map(|pair| pair[1] - pair[0]));
            result.sessions.push(last_turn - start);
            result.late_closes += usize::from(both_closed.saturating_duration_since(last_turn) >= LATE_CLOSE);
        }
    }
    let turns = (LATENCY_SESSIONS + 1) * usize::from(TURNS);
    debug_phase(pair, "sequential", started.elapsed(), cpu_time() - cpu_before, turns);
    Ok(result)
}

/// What the sessions run at once showed.
struct Parallel {
    /// Turns per second until every turn is durable on both nodes.
    turns_per_s: f64,
    /// Sessions per second until every session is closed on both nodes.
    sessions_per_s: f64,
}

/// [`PARALLEL_SESSIONS`] sessions at once, timed from the owner policy approving them.
async fn parallel(pair: &Pair, events: &mut Events) -> anyhow::Result<Parallel> {
    for index in 0..PARALLEL_SESSIONS {
        pair.ask(format!("parallel session {index}")).await?;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    events.clear();
    let lagged_before = events.lagged;
    let cpu_before = cpu_time();
    let start = Instant::now();
    // The policy approves all of them (one proposal after the other) while this task reads
    // events, so the event queues do not overflow.
    let acme = pair.acme.node().clone();
    common::side_runtime(Side::First).spawn(async move { acme.apply_policies().await });
    let turns = PARALLEL_SESSIONS * usize::from(TURNS);
    let mut closed: [HashSet<String>; 2] = Default::default();
    let mut received = 0;
    // The first turn received marks the end of the proposals and consents.
    let mut first_turn = None;
    let (mut turns_done, mut sessions_done) = (None, None);
    let deadline = start + PATIENCE;
    while sessions_done.is_none() {
        if Instant::now() > deadline {
            bail!("{PARALLEL_SESSIONS} sessions did not close in time ({received} turns received)");
        }
        match events.next(Duration::from_millis(50)).await? {
            Some((side, at, NodeEvent::SessionClosed { session, .. })) => {
                closed[side].insert(session);
                if closed.iter().all(|c| c.len() == PARALLEL_SESSIONS) {
                    sessions_done = Some(at);
                }
            }
            Some((_, at, NodeEvent::Turn { speaker, .. })) if speaker != "us" => {
                first_turn.get_or_insert(at);
                received += 1;
                if received == turns {
                    turns_done = Some(at);
                }
            }
            Some(_) => {}
            // Events were lost: the databases say when every session is closed.
            None if events.lagged > lagged_before && all_closed(pair)? => sessions_done = Some(Instant::now()),
            None => {}
        }
    }
    let sessions_wall = sessions_done.map_or_else(|| start.elapsed(), |done| done - start);
    // Without lost events the last turn is seen before the last close; with them, the closes
    // bound it.
    let turns_wall = turns_done.map_or(sessions_wall, |done| done - start);
    debug_phase(pair, "parallel", sessions_wall, cpu_time() - cpu_before, turns);
    if std::env::var_os("BENCH_DEBUG").is_some()
        && let Some(first) = first_turn
    {
        eprintln!("  first turn received {:?} after the start (proposals and consents)", first - start);
    }
    let lost = events.lagged - lagged_before;
    if lost > 0 {
        eprintln!("(the benchmark lost {lost} events in the parallel phase; it checked the databases instead)");
    }
    Ok(Parallel {
        turns_per_s: turns as f64 / turns_wall.as_secs_f64(),
        sessions_per_s: PARALLEL_SESSIONS as f64 / sessions_wall.as_secs_f64(),
    })
}

/// Whether every session of both nodes is closed.
fn all_closed(pair: &Pair) -> anyhow::Result<bool> {
    for node in pair.nodes() {
        if node.session_list()?.iter().any(|s| s.state != "closed") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// With `BENCH_DEBUG` set: CPU time per turn and the outbox and writer counters of a phase.
fn debug_phase(pair: &Pair, phase: &str, wall: Duration, cpu: Duration, turns: usize) {
    if std::env::var_os("BENCH_DEBUG").is_none() {
        return;
    }
    eprintln!("{phase}: wall {wall:?}, cpu {cpu:?} ({:.0} us cpu per turn, both nodes)", micros(cpu) / turns as f64);
    for (name, node) in ["acme", "globex"].iter().zip(pair.nodes()) {
        let stats = node.outbox.stats();
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "  {name}: outbox requests {} acknowledged {} retried {} refused {}; writer {:?}",
            load(&stats.requests),
            load(&stats.acknowledged),
            load(&stats.retried),
            load(&stats.refused),
            node.home.db().writer_stats(),
        );
    }
}
