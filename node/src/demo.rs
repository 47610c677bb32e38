//! `clawnet demo`: two owners on real node databases negotiate through a governed session.
//!
//! The identity agents think with the rule brain from what their owners taught them (facts,
//! bottom lines, never-share items); every line passes the disclosure guard before it is
//! signed. Every message is the real signed wire message, encoded and decoded as on the
//! network, validated by the protocol's state machine on the receiving node against its
//! persistent replay cache, stored and audited there; refusals are audited as security events.
//! The two nodes exchange the bytes in-process and the owners approve by policy: sessions over
//! the peer-to-peer network, with owner approvals, arrive with the sessions issue.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use clawnet_crypto::{Hash32, IdentityId, Signed, Timestamp};
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome};
use clawnet_protocol::session::{
    Close, CloseReason, Consent, EndMarker, Party, Proposal, Session, SessionError, SessionRules, Turn, proposal_hash,
};
use clawnet_protocol::wire::{ProposalOffer, WireMessage};
use clawnet_protocol::{Nonce, Roster, SessionId};
use clawnet_storage::Change;
use clawnet_storage::replay::NonceCheck;
use clawnet_storage::sessions::SessionRecord;

use crate::agents::memory::{MemoryWriter, parse_kind};
use crate::agents::rule_brain::RuleBrain;
use crate::agents::runtime::{Agent, Delivery, Response};
use crate::agents::tools::Audience;
use crate::agents::{Brain, Message};
use crate::home::{KeyProtection, NodeHome, UnlockedHome};

/// Options of `clawnet demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's data directories here instead of a temporary directory
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// What each side's identity knows: its memory, taught by its owner before the session.
const BUYER_MEMORY: [(&str, &str); 4] = [
    ("fact", "ACME needs 500 sensor units delivered by 14 March"),
    ("bottom-line", "unit price at most 42 EUR, open at 38"),
    ("never-share", "ACME's backup supplier quoted 44 EUR"),
    ("stance", "Courteous and firm; a long-term supplier matters more than the last cent"),
];
const SUPPLIER_MEMORY: [(&str, &str); 3] = [
    ("fact", "Globex can ship 500 sensor units within 10 days of the order"),
    ("bottom-line", "unit price at least 40 EUR, open at 46"),
    ("never-share", "Globex production cost is 31 EUR per unit"),
];
/// The most turns the buyer's proposal allows.
const MAX_TURNS: u16 = 10;
const PURPOSE: &str = "Price for 500 sensor units";

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
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    println!("ClawNet demo: a buyer and a supplier negotiate through their identity agents.\n");
    let mut buyer = Owner::create(&root.join("acme"), "ACME (buyer)", "procurement", "Buys components for ACME")?;
    let mut supplier = Owner::create(&root.join("globex"), "Globex (supplier)", "sales", "Sells Globex sensors")?;
    rt.block_on(buyer.teach(&BUYER_MEMORY))?;
    rt.block_on(supplier.teach(&SUPPLIER_MEMORY))?;
    // Contacts and encrypted tag gossip run over the network (`clawnet run`); here each side
    // reads the other's identity certificates directly.
    buyer.peer = Some(supplier.own_roster()?);
    supplier.peer = Some(buyer.own_roster()?);

    step("The buyer's procurement agent proposes a session; the buyer approves it (owner policy)");
    let offer = buyer.propose(supplier.node.owner(), supplier.identity, PURPOSE)?;
    println!("  proposal + buyer's consent: {} bytes on the wire", offer.len());

    step("The supplier's node verifies it; the supplier approves and returns a signed consent");
    let consent = supplier.receive(&offer)?.context("the supplier did not answer")?;
    buyer.receive(&consent)?;
    let grant = buyer.session()?.grant().context("no grant")?.hash();
    println!("  both owners consented; both nodes hold grant {}", short(&grant));

    step(
        "The agents negotiate (rule brain, within each owner's bottom line); every turn is signed, hash-linked, checked by the disclosure guard and verified by the other node",
    );
    let mut lines: Vec<String> = Vec::new();
    let mut first_turn: Option<Vec<u8>> = None;
    let mut all_ok = true;
    let mut ended: Option<(usize, EndMarker)> = None;
    while lines.len() < usize::from(MAX_TURNS) {
        let idx = lines.len();
        if idx == 2 {
            step("Attacks the supplier's node refuses mid-session and records as security events");
            let replayed = supplier.receive(first_turn.as_deref().unwrap_or_default());
            println!("  the buyer's first turn, replayed: {}", refusal(&replayed));
            let forged = buyer.forge_turn("Correction: 10.00 EUR per unit.")?;
            let refused = supplier.receive(&forged);
            println!("  a turn signed by a key no certificate vouches for: {}", refusal(&refused));
            all_ok &= replayed.is_err() && refused.is_err();
            step("The negotiation continues");
        }
        let (speaker, listener) =
            if idx.is_multiple_of(2) { (&mut buyer, &mut supplier) } else { (&mut supplier, &mut buyer) };
        let response = rt.block_on(speaker.think(&lines, listener.name))?;
        if let Delivery::Held { matched, .. } = &response.delivery {
            println!(
                "  [{}] {:<11} reply HELD by the disclosure guard ({matched:?}); the owner must decide",
                idx + 1,
                speaker.tag
            );
            break;
        }
        let turn = speaker.say(&response.text, response.end)?;
        listener.receive(&turn)?;
        println!("  [{}] {:<11} {}", idx + 1, speaker.tag, response.text);
        first_turn.get_or_insert(turn);
        lines.push(response.text);
        if let Some(marker) = response.end {
            ended = Some((idx, marker));
            break;
        }
    }

    // The owner whose agent ended the session closes it (the buyer, at the turn limit).
    let (buyer_closes, reason) = match ended {
        Some((idx, marker)) => (idx.is_multiple_of(2), CloseReason::Ended(marker)),
        None => (true, CloseReason::MaxTurns),
    };
    let (closer, other) = if buyer_closes { (&mut buyer, &mut supplier) } else { (&mut supplier, &mut buyer) };
    step(&format!("The session closes ({reason:?}): {} signs the close, the other node verifies it", closer.name));
    let close = closer.close(reason)?;
    other.receive(&close)?;
    for side in [&buyer, &supplier] {
        println!("  {}: {:?}", side.name, side.session()?.phase());
    }
    all_ok &= matches!(ended, Some((_, EndMarker::Resolved)));

    step("A compromised brain tries to leak the supplier's production cost: the guard holds it");
    let leak = rt.block_on(supplier.leak("Between us, Globex production cost is 31 EUR per unit."))?;
    match &leak.delivery {
        Delivery::Held { approval, matched } => {
            println!(
                "  held for the owner as approval {} (matched {matched:?}); nothing was sent",
                &approval.to_hex()[..8]
            )
        }
        Delivery::Send => {
            all_ok = false;
            println!("  NOT HELD (a bug)");
        }
    }

    step("Verification");
    let (ours, theirs) = (buyer.transcript()?, supplier.transcript()?);
    let identical = ours == theirs && !ours.is_empty();
    println!("  transcripts: {} signed turns on each side, byte-identical: {identical}", ours.len());
    all_ok &= identical;
    for side in [&buyer, &supplier] {
        match side.node.db().verify_audit() {
            Ok(summary) => {
                let events = side.node.db().audit_entries()?.iter().filter(|e| e.is_security_event()).count();
                println!(
                    "  {} audit chain: {} entries verified, {events} security events, head {}",
                    side.name,
                    summary.entries,
                    short(&summary.head)
                );
            }
            Err(err) => {
                all_ok = false;
                println!("  {} audit chain FAILED: {err}", side.name);
            }
        }
    }
    match &args.keep {
        Some(dir) => {
            println!("\nData kept in {}; try: clawnet --data-dir {}/acme audit export", dir.display(), dir.display())
        }
        None => println!("\nRun with --keep DIR to inspect the nodes afterwards."),
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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

/// One owner's node in the demo, with the identity that speaks for them.
struct Owner {
    name: &'static str,
    node: Arc<UnlockedHome>,
    tag: &'static str,
    identity: IdentityId,
    /// What this node knows of the other owner's identities.
    peer: Option<Roster>,
    session: Option<Session>,
    rules: SessionRules,
}

impl Owner {
    fn create(dir: &Path, name: &'static str, tag: &'static str, description: &str) -> anyhow::Result<Owner> {
        let node = Arc::new(NodeHome::init(dir, name, KeyProtection::None)?);
        let identity = node.create_identity(tag, description)?.id;
        println!("{name}: node created, owner {}, identity {tag:?}", node.owner().fingerprint());
        Ok(Owner { name, node, tag, identity, peer: None, session: None, rules: SessionRules::default() })
    }

    /// The owner fills the identity's memory.
    async fn teach(&self, entries: &[(&str, &str)]) -> anyhow::Result<()> {
        for (kind, text) in entries {
            self.node.memory_add(self.tag, parse_kind(kind, text)?, text, MemoryWriter::Owner).await?;
        }
        Ok(())
    }

    /// The identity agent's next line, given the session so far (`lines` alternate, buyer first).
    async fn think(&self, lines: &[String], counterpart: &str) -> anyhow::Result<Response> {
        let initiator = self.session()?.proposal().initiator.owner == self.node.owner();
        let mine = |idx: usize| (idx.is_multiple_of(2)) == initiator;
        let mut history: Vec<Message> = lines
            .iter()
            .enumerate()
            .map(|(idx, line)| if mine(idx) { Message::assistant(line.clone()) } else { Message::user(line.clone()) })
            .collect();
        if history.is_empty() {
            history.push(Message::user(format!(
                "The session with {counterpart} is open. Purpose: {}. You speak first.",
                self.session()?.proposal().purpose
            )));
        }
        let agent = Agent::identity(self.node.clone(), self.tag, Arc::new(RuleBrain))?;
        Ok(agent
            .respond(&history, &Audience::Counterpart { name: counterpart.into(), session: None }, &mut |_| {})
            .await?)
    }

    /// What a compromised brain would send, through the same guard.
    async fn leak(&self, text: &str) -> anyhow::Result<Response> {
        let agent = Agent::identity(self.node.clone(), self.tag, Arc::new(Leaky(text.into())))?;
        let history = [Message::user("What does a unit cost you to make?")];
        Ok(agent
            .respond(&history, &Audience::Counterpart { name: "the buyer".into(), session: None }, &mut |_| {})
            .await?)
    }

    fn own_roster(&self) -> anyhow::Result<Roster> {
        let mut roster = Roster::new(self.node.owner());
        for record in self.node.home().identities()? {
            roster.admit_cert(&record.cert)?;
        }
        Ok(roster)
    }

    /// (initiator's roster, target's roster) for the current session.
    fn rosters(&self, session: &Session) -> anyhow::Result<(Roster, Roster)> {
        let own = self.own_roster()?;
        let peer = self.peer.clone().context("no peer roster")?;
        Ok(if session.proposal().initiator.owner == self.node.owner() { (own, peer) } else { (peer, own) })
    }

    fn session(&self) -> anyhow::Result<&Session> {
        self.session.as_ref().context("no session")
    }

    /// The identity proposes; the owner's policy approves; returns the offer's wire bytes.
    fn propose(
        &mut self,
        owner: clawnet_crypto::OwnerId,
        identity: IdentityId,
        purpose: &str,
    ) -> anyhow::Result<Vec<u8>> {
        let now = Timestamp::now();
        let proposal = Proposal {
            session: SessionId::random(),
            initiator: Party { owner: self.node.owner(), identity: self.identity },
            target: Party { owner, identity },
            purpose: purpose.into(),
            max_turns: MAX_TURNS,
            depth: 0,
            parent: None,
            created_at: now,
            expires_at: now.plus(Duration::from_secs(3600)),
            nonce: Nonce::random(),
        };
        let proposal = Signed::sign(&proposal, &self.node.keys().identities[&self.identity].signing);
        let consent = self.consent(&proposal)?;
        let own = self.own_roster()?;
        self.validate(|rules, ledger| {
            let mut session = Session::open(&proposal, &own, rules, Timestamp::now(), ledger)?;
            session.apply_consent(&consent, rules, Timestamp::now(), ledger)?;
            Ok(session)
        })
        .and_then(|session| self.store_session(session, "session.propose", "owner policy: approve", None))?;
        Ok(WireMessage::Proposal(Box::new(ProposalOffer { proposal, consent })).encode())
    }

    /// Handles an inbound delivery: validates, stores, audits; returns a reply if there is one.
    fn receive(&mut self, bytes: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        match WireMessage::decode(bytes)? {
            WireMessage::Proposal(offer) => {
                let initiator = self.peer.clone().context("proposal from an unknown owner")?;
                let session = self.validate(|rules, ledger| {
                    let mut session = Session::open(&offer.proposal, &initiator, rules, Timestamp::now(), ledger)?;
                    session.apply_consent(&offer.consent, rules, Timestamp::now(), ledger)?;
                    Ok(session)
                })?;
                self.store_session(session, "session.proposal-received", "initiator's signed consent", None)?;
                // The owner's policy approves: sign and apply our consent, then send it back.
                let consent = self.consent(&offer.proposal)?;
                self.apply_to_session(|session, rules, ledger| {
                    session.apply_consent(&consent, rules, Timestamp::now(), ledger).map(|_| ())
                })?;
                self.save("session.consent", "owner policy: approve", None)?;
                Ok(Some(WireMessage::Consent(consent).encode()))
            }
            WireMessage::Consent(consent) => {
                self.apply_to_session(|session, rules, ledger| {
                    session.apply_consent(&consent, rules, Timestamp::now(), ledger).map(|_| ())
                })?;
                self.save("session.granted", "both owners' signed consents", None)?;
                Ok(None)
            }
            WireMessage::Turn(turn) => {
                self.accept_turn(&turn)?;
                Ok(None)
            }
            WireMessage::Close(close) => {
                self.apply_to_session(|session, rules, ledger| {
                    session.apply_close(&close, rules, Timestamp::now(), ledger).map(|_| ())
                })?;
                self.save("session.close", "counterpart owner's signed close", Some(close))?;
                Ok(None)
            }
            other => bail!("the demo does not handle {}", other.kind()),
        }
    }

    /// The identity speaks the next turn; its own node verifies and records it first.
    fn say(&mut self, text: &str, end: Option<EndMarker>) -> anyhow::Result<Vec<u8>> {
        let turn = Signed::sign(&self.next_turn(text, end)?, &self.node.keys().identities[&self.identity].signing);
        self.accept_turn(&turn)?;
        Ok(WireMessage::Turn(turn).encode())
    }

    /// A turn for this owner's identity signed with the owner's root key instead of the
    /// identity's certified key: what a thief of the wrong key could try.
    fn forge_turn(&self, text: &str) -> anyhow::Result<Vec<u8>> {
        let turn = Signed::sign(&self.next_turn(text, None)?, &self.node.keys().owner.signing);
        Ok(WireMessage::Turn(turn).encode())
    }

    fn next_turn(&self, text: &str, end: Option<EndMarker>) -> anyhow::Result<Turn> {
        let session = self.session()?;
        Ok(Turn {
            session: session.id(),
            turn_no: session.turns() + 1,
            prev: session.last_hash(),
            speaker: self.identity,
            text: text.into(),
            end,
            sent_at: Timestamp::now(),
        })
    }

    /// The owner closes the session; returns the close's wire bytes.
    fn close(&mut self, reason: CloseReason) -> anyhow::Result<Vec<u8>> {
        let session = self.session()?;
        let close = Close {
            session: session.id(),
            owner: self.node.owner(),
            reason,
            turns: session.turns(),
            last: session.last_hash(),
            closed_at: Timestamp::now(),
            nonce: Nonce::random(),
        };
        let close = Signed::sign(&close, &self.node.keys().owner.signing);
        let applied = close.clone();
        self.apply_to_session(|session, rules, ledger| {
            session.apply_close(&applied, rules, Timestamp::now(), ledger).map(|_| ())
        })?;
        self.save("session.close", "agent end marker, owner policy", Some(close.clone()))?;
        Ok(WireMessage::Close(close).encode())
    }

    fn accept_turn(&mut self, turn: &Signed<Turn>) -> anyhow::Result<()> {
        let (initiator, target) = self.rosters(self.session()?)?;
        let session = self.session.as_mut().context("no session")?;
        let rules = self.rules;
        let accepted = match session.apply_turn(turn, &initiator, &target, &rules, Timestamp::now()) {
            Ok(accepted) => accepted,
            Err(err) => return Err(self.refuse("turn", err)),
        };
        let id = session.id();
        let stored = turn.clone();
        let speaker = session.speaker_of(accepted.turn_no);
        let change = Change::new(move |txn| txn.put_turn(&id, accepted.turn_no, &stored)).with_audit(AuditDraft::new(
            Actor::Identity(speaker),
            "session.turn",
            format!("session {id} turn {} ({})", accepted.turn_no, short(&accepted.hash)),
            "session grant",
            Outcome::Success,
        ));
        self.node.db().commit(change)?;
        Ok(())
    }

    /// Runs a validation against the persistent replay cache; on success commits the nonces it
    /// used, on refusal commits a security event.
    fn validate<T>(
        &self,
        check: impl FnOnce(&SessionRules, &mut NonceCheck<'_>) -> Result<T, SessionError>,
    ) -> anyhow::Result<T> {
        let view = self.node.db().read()?;
        let mut ledger = NonceCheck::new(&view);
        match check(&self.rules, &mut ledger) {
            Ok(value) => {
                let nonces = ledger.into_pending();
                drop(view);
                self.node.db().commit(Change::new(move |txn| txn.record_nonces(&nonces)))?;
                Ok(value)
            }
            Err(err) => Err(self.refuse("message", err)),
        }
    }

    fn apply_to_session(
        &mut self,
        apply: impl FnOnce(&mut Session, &SessionRules, &mut NonceCheck<'_>) -> Result<(), SessionError>,
    ) -> anyhow::Result<()> {
        let mut session = self.session.take().context("no session")?;
        let result = self.validate(|rules, ledger| apply(&mut session, rules, ledger));
        self.session = Some(session);
        result
    }

    fn refuse(&self, what: &str, err: SessionError) -> anyhow::Error {
        let actor = match (&self.peer, &self.session) {
            (Some(peer), _) => Actor::Peer(*peer.owner()),
            _ => Actor::Node,
        };
        let draft = if err.is_security_event() {
            AuditDraft::security_event(actor, &format!("{what}-refused"), format!("inbound {what}"), err.to_string())
        } else {
            let object = format!("inbound {what}");
            AuditDraft::new(
                actor,
                format!("session.{what}-refused"),
                object,
                "protocol validation",
                Outcome::Denied(err.to_string()),
            )
        };
        match self.node.db().append(draft) {
            Ok(_) => anyhow::Error::new(err),
            Err(store) => anyhow::Error::new(store).context(err.to_string()),
        }
    }

    fn consent(&self, proposal: &Signed<Proposal>) -> anyhow::Result<Signed<Consent>> {
        let (_, head) = self.node.db().audit_head()?;
        let now = Timestamp::now();
        let consent = Consent {
            proposal: proposal_hash(proposal),
            owner: self.node.owner(),
            audit_head: head,
            issued_at: now,
            expires_at: now.plus(Duration::from_secs(3600)),
            nonce: Nonce::random(),
        };
        Ok(Signed::sign(&consent, &self.node.keys().owner.signing))
    }

    fn store_session(
        &mut self,
        session: Session,
        action: &str,
        basis: &str,
        close: Option<Signed<Close>>,
    ) -> anyhow::Result<()> {
        self.session = Some(session);
        self.save(action, basis, close)
    }

    fn save(&self, action: &str, basis: &str, close: Option<Signed<Close>>) -> anyhow::Result<()> {
        let session = self.session()?;
        let proposal = session.proposal();
        let id = session.id();
        let record = SessionRecord {
            proposal: proposal.signed().clone(),
            initiator_consent: session.consent_of(&proposal.initiator.owner).map(|c| c.signed().clone()),
            target_consent: session.consent_of(&proposal.target.owner).map(|c| c.signed().clone()),
            rejection: None,
            close,
            updated_at: Timestamp::now(),
        };
        let object = format!("session {id}: {:?}", session.phase());
        let change = Change::new(move |txn| txn.put_session(&id, &record)).with_audit(AuditDraft::new(
            Actor::Owner,
            action,
            object,
            basis,
            Outcome::Success,
        ));
        self.node.db().commit(change)?;
        Ok(())
    }

    /// The stored transcript, as signed bytes.
    fn transcript(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let turns = self.node.db().read()?.turns(&self.session()?.id())?;
        Ok(turns.iter().map(|turn| [turn.body(), &turn.signature().0[..]].concat()).collect())
    }
}

fn refusal<T>(result: &anyhow::Result<T>) -> String {
    match result {
        Ok(_) => "ACCEPTED (a bug)".into(),
        Err(err) => format!("refused ({err})"),
    }
}

fn short(hash: &Hash32) -> String {
    hash.to_hex()[..12].to_owned()
}

fn step(text: &str) {
    println!("\n== {text}");
}
