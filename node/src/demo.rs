//! `clawnet demo`: a bootstrap relay and three owners' nodes on loopback, the paper's
//! cross-organizational scenario end to end.
//!
//! ACME's procurement agent negotiates with Globex's sales agent; asked for a delivery date,
//! Globex's agent opens a child session with its logistics partner Initech (reachable only
//! through the relay) and relays the answer. Everything is the real thing: libp2p between real
//! nodes, redb files, owner-signed consents given by scripted owner policies, identity-signed
//! hash-linked turns, signed closes, audit chains. The agents think with the configured model
//! (`CLAWNET_LLM_MODEL` ...) or else with the rule brain, from memory their owners taught them.

mod relay;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use clawnet_protocol::SessionId;

use crate::agents::memory::{MemoryWriter, parse_kind};
use crate::agents::runtime::{Agent, Delivery};
use crate::agents::tools::Audience;
use crate::agents::{Brain, Message};
use crate::chat::{ChatRequest, chat_turn};
use crate::config::{NetworkSettings, NodeConfig};
use crate::daemon::Daemon;
use crate::home::{KeyProtection, NodeHome};
use crate::node::Node;
use crate::sessions::{NodeEvent, OwnerPolicy, PolicyDirection};

/// Options of `clawnet demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's data directories here instead of a temporary directory
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// The `clawnet-bootstrap` binary to run (default: next to this one)
    #[arg(long, value_name = "PATH")]
    pub relay_bin: Option<PathBuf>,
}

/// One owner of the demo: their node, the identity that speaks for them, what they taught it,
/// and their standing policies as (contact, direction, recursion).
struct Cast {
    name: &'static str,
    identity: &'static str,
    description: &'static str,
    memory: &'static [(&'static str, &'static str)],
    policies: &'static [(&'static str, PolicyDirection, bool)],
    /// Reachable only through the relay, like a home server behind a NAT.
    behind_relay: bool,
}

const ACME: Cast = Cast {
    name: "ACME",
    identity: "procurement",
    description: "Buys components for ACME",
    memory: &[
        ("fact", "ACME needs 500 sensor units delivered by 14 March"),
        ("bottom-line", "unit price at most 42 EUR, open at 38"),
        ("never-share", "ACME's backup supplier quoted 44 EUR"),
        ("stance", "Courteous and firm; a long-term supplier matters more than the last cent"),
    ],
    policies: &[("Globex", PolicyDirection::Outgoing, false)],
    behind_relay: false,
};
const GLOBEX: Cast = Cast {
    name: "Globex",
    identity: "sales",
    description: "Sells Globex sensors",
    memory: &[
        ("fact", "Globex ships from its Lyon plant"),
        ("pattern", "ask Initech about delivery dates"),
        ("bottom-line", "unit price at least 40 EUR, open at 46"),
        ("never-share", "Globex production cost is 31 EUR per unit"),
    ],
    policies: &[("ACME", PolicyDirection::Incoming, false), ("Initech", PolicyDirection::Outgoing, true)],
    behind_relay: false,
};
const INITECH: Cast = Cast {
    name: "Initech",
    identity: "dispatch",
    description: "Initech logistics: schedules deliveries for partners",
    memory: &[("fact", "Initech can deliver 500 sensor units from Globex to ACME on 11 March")],
    policies: &[("Globex", PolicyDirection::Incoming, true)],
    behind_relay: true,
};

/// What ACME's owner tells its agent.
const BRIEF: &str = "work with Globex on price and delivery date for 500 sensor units";

/// Runs the demo and prints what happens. Exits non-zero if any check fails.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let root = match &args.keep {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_owned()
        }
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let ok = rt.block_on(demo(&root, args.relay_bin.as_deref()))?;
    match &args.keep {
        Some(dir) => println!(
            "\nData kept in {}; try: clawnet --data-dir {}/acme session list (after `clawnet --data-dir {}/acme run`)",
            dir.display(),
            dir.display(),
            dir.display()
        ),
        None => println!("\nRun with --keep DIR to inspect the nodes afterwards."),
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn demo(root: &Path, relay_bin: Option<&Path>) -> anyhow::Result<bool> {
    println!("ClawNet demo: a buyer, a supplier and the supplier's logistics partner, each with their own node.\n");
    let relay = relay::Relay::start(root, relay_bin)?;
    println!("bootstrap relay listening at {}", relay.address);
    let mut nodes = Vec::new();
    for cast in [&ACME, &GLOBEX, &INITECH] {
        nodes.push(start(root, cast, &relay.address).await?);
    }
    let (acme, globex, initech) = (&nodes[0], &nodes[1], &nodes[2]);
    let brain = acme.node().brain.describe();
    println!("agents think with: {brain}");

    step("Contacts by invite code; each owner assigns the identity the other may talk to");
    befriend(acme, &ACME, globex, &GLOBEX).await?;
    befriend(globex, &GLOBEX, initech, &INITECH).await?;
    println!("  ACME <-> Globex, Globex <-> Initech (ACME and Initech do not know each other)");

    step("ACME's owner briefs its procurement agent; owner policies answer the approvals");
    for (daemon, cast) in nodes.iter().zip([&ACME, &GLOBEX, &INITECH]) {
        watch(daemon.node(), cast);
    }
    println!("  ACME owner> {BRIEF}");
    let request = ChatRequest { agent: Some(ACME.identity.into()), history: Vec::new(), message: BRIEF.into() };
    let reply = chat_turn(
        acme.node().home.clone(),
        acme.node().brain.clone(),
        &[acme.node().file_tools()],
        &request,
        &mut |_| {},
    )
    .await?;
    println!("  ACME procurement> {}", reply.text);
    acme.node().apply_policies().await;

    let patience = if brain.starts_with("rule") { Duration::from_secs(60) } else { Duration::from_secs(900) };
    let parent = wait(patience, "the session to start", || async {
        acme.node().session_list().ok()?.first().map(|s| s.id.clone())
    })
    .await?;
    let closed = wait(patience, "the session to end", || async {
        acme.node()
            .session_detail(&parent)
            .ok()
            .filter(|d| d.session.state == "closed" || d.session.state == "rejected")
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    step("Outcome");
    let outcome = closed.session.outcome.clone().unwrap_or_else(|| closed.session.state.clone());
    println!("  {} turns, {outcome}", closed.session.turns);
    if let Some(last) = closed.transcript.last() {
        println!("  last word: {}: {}", last.speaker, last.text);
    }
    let mut all_ok = outcome == "ended by the agents (resolved)";

    step("A compromised brain tries to leak Globex's production cost: the disclosure guard holds it");
    all_ok &= leak_is_held(globex.node()).await?;

    step("Verification");
    let child = globex.node().session_list()?.into_iter().find(|s| s.depth == 1).map(|s| s.id);
    all_ok &= child.is_some();
    let pairs = [(acme, globex, Some(parent.clone()), "ACME/Globex"), (globex, initech, child, "Globex/Initech")];
    for (a, b, id, label) in pairs {
        let Some(id) = id else {
            println!("  {label}: no session (a bug)");
            continue;
        };
        let (ours, theirs) = (transcript(a.node(), &id)?, transcript(b.node(), &id)?);
        let verified = a.node().session_detail(&id)?.verified && b.node().session_detail(&id)?.verified;
        let identical = ours == theirs && !ours.is_empty();
        println!(
            "  session {} ({label}): {} signed turns each side, signatures and links verified: {verified}, byte-identical: {identical}",
            &id[..8],
            ours.len()
        );
        all_ok &= verified && identical;
    }
    let acme_sessions = acme.node().session_list()?.len();
    println!("  ACME took part in {acme_sessions} session (it never heard from Initech directly)");
    all_ok &= acme_sessions == 1;
    for (daemon, cast) in nodes.iter().zip([&ACME, &GLOBEX, &INITECH]) {
        let db = daemon.node().home.db();
        match db.verify_audit() {
            Ok(summary) => {
                let events = db.audit_entries()?.iter().filter(|e| e.is_security_event()).count();
                println!(
                    "  {} audit chain: {} entries verified, {events} security events, head {}",
                    cast.name,
                    summary.entries,
                    &summary.head.to_hex()[..12]
                );
            }
            Err(err) => {
                all_ok = false;
                println!("  {} audit chain FAILED: {err}", cast.name);
            }
        }
    }
    for daemon in nodes {
        daemon.shutdown().await;
    }
    drop(relay);
    println!("\n{}", if all_ok { "All checks passed." } else { "SOME CHECKS FAILED." });
    Ok(all_ok)
}

/// Creates and starts the node of `cast`, teaches its identity, and sets its policies.
async fn start(root: &Path, cast: &Cast, relay: &str) -> anyhow::Result<Daemon> {
    let dir = root.join(cast.name.to_lowercase());
    let home = NodeHome::init(&dir, cast.name, KeyProtection::None)?;
    home.create_identity(cast.identity, cast.description)?;
    for (kind, text) in cast.memory {
        home.memory_add(cast.identity, parse_kind(kind, text)?, text, MemoryWriter::Owner).await?;
    }
    // The file is absent: this reads the defaults and the CLAWNET_LLM_* environment.
    let mut config = NodeConfig::load(&dir)?;
    config.network = NetworkSettings {
        listen: if cast.behind_relay { Vec::new() } else { vec!["/ip4/127.0.0.1/tcp/0".into()] },
        bootstrap: vec![relay.to_owned()],
        relay: true,
        ..NetworkSettings::default()
    };
    config.sessions.default_turns = 12;
    config.policy = cast
        .policies
        .iter()
        .map(|(contact, direction, recursion)| OwnerPolicy {
            contact: (*contact).into(),
            identity: cast.identity.into(),
            direction: *direction,
            max_turns: 12,
            recursion: *recursion,
        })
        .collect();
    for policy in &config.policy {
        println!(
            "{}: policy: approve {:?} sessions of {} with {}",
            cast.name, policy.direction, policy.identity, policy.contact
        );
    }
    let daemon = Daemon::start(home, config).await?;
    println!(
        "{}: node started, owner {}, identity {:?}",
        cast.name,
        daemon.node().home.owner().fingerprint(),
        cast.identity
    );
    Ok(daemon)
}

/// Makes the owners of `a` and `b` contacts (through the relay where one is behind it) and
/// assigns each the other's identity.
async fn befriend(a: &Daemon, a_cast: &Cast, b: &Daemon, b_cast: &Cast) -> anyhow::Result<()> {
    let (a, b) = (a.node(), b.node());
    let reachable = |node: &Arc<Node>, behind: bool| {
        let node = node.clone();
        async move {
            let addresses = node.network.addresses().await.ok()?;
            let circuit = addresses.iter().any(|a| a.to_string().contains("p2p-circuit"));
            (!addresses.is_empty() && (circuit || !behind)).then_some(())
        }
    };
    wait(Duration::from_secs(30), "an address to invite with", || reachable(a, a_cast.behind_relay)).await?;
    wait(Duration::from_secs(30), "an address to invite with", || reachable(b, b_cast.behind_relay)).await?;
    let code = a.invite(Duration::from_secs(3600)).await?.code;
    b.add_contact(&code).await?;
    let b_owner = b.home.owner().fingerprint().to_string();
    let request = wait(Duration::from_secs(30), "the contact request", || async {
        a.contacts().ok()?.into_iter().find(|c| c.id == b_owner && c.is_request())
    })
    .await?;
    a.accept_contact(&request.id).await?;
    let a_owner = a.home.owner().fingerprint().to_string();
    wait(Duration::from_secs(30), "the contact accept", || async {
        b.contacts().ok()?.into_iter().find(|c| c.id == a_owner && c.state == "connected")
    })
    .await?;
    a.assign(&b_owner, a_cast.identity).await?;
    b.assign(&a_owner, b_cast.identity).await?;
    for (viewer, owner) in [(a, &b_owner), (b, &a_owner)] {
        wait(Duration::from_secs(30), "the other's identity tag", || async {
            viewer.contact_tags(owner).ok().filter(|t| !t.tags.is_empty())
        })
        .await?;
    }
    Ok(())
}

/// Prints what happens on `node` as it happens: decisions and the turns its agent speaks.
fn watch(node: &Arc<Node>, cast: &'static Cast) {
    let mut events = node.subscribe();
    tokio::spawn(async move {
        let mut sessions: Vec<String> = Vec::new();
        while let Ok(event) = events.recv().await {
            let name = cast.name;
            match event {
                NodeEvent::ApprovalPending { summary, .. } => println!("  [{name}] owner asked: {summary}"),
                NodeEvent::ApprovalDecided { status, by, .. } => println!("  [{name}] {status} by {by}"),
                NodeEvent::SessionStarted { session } => {
                    println!("  [{name}] session {} started: both owners consented", &session[..8]);
                }
                NodeEvent::Turn { session, turn_no, speaker, text } if speaker == "us" => {
                    if !sessions.contains(&session) {
                        sessions.push(session.clone());
                    }
                    println!("  ({}) [{turn_no}] {name} {}: {text}", &session[..8], cast.identity);
                }
                NodeEvent::Turn { .. } => {}
                NodeEvent::Advice { text, .. } => println!("  [{name}] manager advised: {text}"),
                NodeEvent::SessionClosed { session, reason } => {
                    println!("  [{name}] session {} closed: {reason}", &session[..8]);
                }
            }
        }
    });
}

/// Polls `check` every 50 ms until it answers, for at most `patience`.
async fn wait<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A brain that says one thing: a stand-in for a model talked into leaking.
#[derive(Debug)]
struct Leaky(String);

impl Brain for Leaky {
    async fn decide(
        &self,
        _: &[Message],
        _: &[crate::agents::ToolSpec],
        _: &mut (dyn FnMut(&str) + Send),
    ) -> Result<crate::agents::BrainReply, crate::agents::BrainError> {
        Ok(crate::agents::BrainReply::Say(self.0.clone()))
    }

    fn describe(&self) -> String {
        "a compromised brain".into()
    }
}

async fn leak_is_held(node: &Arc<Node>) -> anyhow::Result<bool> {
    let leak = Leaky("Between us, Globex production cost is 31 EUR per unit.".into());
    let agent = Agent::identity(node.home.clone(), GLOBEX.identity, Arc::new(leak))?;
    let history = [Message::user("What does a unit cost you to make?")];
    let audience = Audience::Counterpart { name: "ACME".into(), session: None };
    let response = agent.respond(&history, &audience, &mut |_| {}).await?;
    Ok(match &response.delivery {
        Delivery::Held { approval, matched } => {
            println!(
                "  held for the owner as approval {} (matched {matched:?}); nothing was sent",
                &approval.to_hex()[..8]
            );
            true
        }
        Delivery::Send => {
            println!("  NOT HELD (a bug)");
            false
        }
    })
}

/// The stored transcript of session `id`, as signed bytes.
fn transcript(node: &Arc<Node>, id: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let id: SessionId = id.parse().context("session id")?;
    let turns = node.home.db().read()?.turns(&id)?;
    Ok(turns.iter().map(|turn| [turn.body(), &turn.signature().0[..]].concat()).collect())
}

fn step(text: &str) {
    println!("\n== {text}");
}
