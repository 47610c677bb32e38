//! The owner's agents on a real node database, offline: the rule brain through a scripted owner
//! conversation, memory isolation between identities against a model that asks for what it
//! must not see, the disclosure guard, and hostile model output that must end in a clear error
//! or a refusal, never in an unaudited action.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clawnet_crypto::{SigningSecret, Timestamp};
use clawnet_node::agents::brain::AnyBrain;
use clawnet_node::agents::memory::{MemoryScope, MemoryWriter, parse_kind};
use clawnet_node::agents::rule_brain::RuleBrain;
use clawnet_node::agents::runtime::{Agent, AgentError, Delivery};
use clawnet_node::agents::tools::{AgentEvent, Audience};
use clawnet_node::agents::{Brain, BrainError, Message};
use clawnet_node::chat::{ChatReply, ChatRequest, chat_turn};
use clawnet_node::home::KeyProtection;
use clawnet_node::{NodeHome, UnlockedHome};
use clawnet_protocol::audit::{Actor, AuditEntry, Outcome};
use clawnet_protocol::contact::ContactState;
use clawnet_protocol::session::EndMarker;
use clawnet_storage::Change;
use clawnet_storage::approvals::{ApprovalRequest, ApprovalStatus};
use clawnet_storage::contacts::ContactRecord;
use clawnet_tests::model_server::{ModelServer, Script};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// A node with identities "work" and "family" and some memory in each.
async fn node(dir: &Path) -> Arc<UnlockedHome> {
    let home = NodeHome::init(&dir.join("ada"), "Ada", KeyProtection::None).unwrap();
    home.create_identity("work", "Ada at Initech").unwrap();
    home.create_identity("family", "Ada at home").unwrap();
    let home = Arc::new(home);
    for (tag, kind, text) in [
        ("work", "fact", "The Falcon report is due on 14 March"),
        ("work", "fact", "The Falcon budget is 20000 EUR"),
        ("work", "never-share", "Initech layoffs in June"),
        ("work", "bottom-line", "unit price at most 42 EUR, open at 38"),
        ("family", "fact", "Emma goes to Lincoln Elementary school"),
        ("family", "never-share", "Emma's allergy to penicillin"),
    ] {
        home.memory_add(tag, parse_kind(kind, text).unwrap(), text, MemoryWriter::Owner).await.unwrap();
    }
    home
}

fn audit(home: &UnlockedHome) -> Vec<AuditEntry> {
    home.db().audit_entries().unwrap()
}

fn actions(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|entry| entry.action.as_str()).collect()
}

async fn chat(
    home: &Arc<UnlockedHome>,
    brain: &Arc<AnyBrain>,
    agent: Option<&str>,
    history: &mut Vec<Message>,
    message: &str,
) -> (ChatReply, Vec<AgentEvent>) {
    let request = ChatRequest { agent: agent.map(str::to_owned), history: history.clone(), message: message.into() };
    let mut events = Vec::new();
    let reply =
        tokio::time::timeout(LIMIT, chat_turn(home.clone(), brain.clone(), &[], &request, &mut |e| events.push(e)))
            .await
            .expect("the turn did not finish in time")
            .unwrap_or_else(|err| panic!("{message:?} failed: {err}"));
    history.extend(reply.transcript.clone());
    (reply, events)
}

/// Adds `name` as a connected contact assigned to `identity` (what the contact flow leaves).
async fn connected_contact(home: &UnlockedHome, name: &str, identity: &str) {
    let assigned = home.home().identities().unwrap().into_iter().find(|i| i.tag.to_string() == identity).unwrap().id;
    let key = SigningSecret::generate();
    let record = ContactRecord {
        owner: clawnet_crypto::OwnerId::from_key(key.public_key()),
        display_name: name.into(),
        device_key: SigningSecret::generate().public_key(),
        device: None,
        contact_key: None,
        state: ContactState::Connected,
        assigned_identity: Some(assigned),
        their_feed: None,
        their_tags: None,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    };
    home.db().commit(Change::new(move |txn| txn.put_contact(&record))).unwrap();
}

#[tokio::test]
async fn rule_brain_runs_a_scripted_owner_conversation_offline() {
    let dir = tempfile::tempdir().unwrap();
    let home = node(dir.path()).await;
    connected_contact(&home, "Globex", "work").await;
    connected_contact(&home, "Grandma", "family").await;
    let brain = Arc::new(AnyBrain::Rule(RuleBrain));
    let before = audit(&home).len();
    let mut history = Vec::new();

    let (reply, _) = chat(&home, &brain, Some("work"), &mut history, "When is the Falcon report due?").await;
    assert!(reply.text.contains("14 March"), "{}", reply.text);
    assert!(!reply.text.contains("Lincoln"), "the work agent knows nothing of family memory: {}", reply.text);

    let (reply, _) = chat(&home, &brain, Some("work"), &mut history, "What is the weather in Lisbon?").await;
    assert!(reply.text.starts_with("I don't know"), "honest about what it does not know: {}", reply.text);

    let (reply, _) = chat(&home, &brain, Some("work"), &mut history, "Remember that Carol prefers short emails.").await;
    assert!(reply.text.contains("pattern memory"), "{}", reply.text);
    let (reply, _) = chat(&home, &brain, Some("work"), &mut history, "How does Carol like her emails?").await;
    assert!(reply.text.contains("Carol prefers short emails"), "{}", reply.text);

    let (reply, events) =
        chat(&home, &brain, Some("work"), &mut history, "Work with Globex on the Falcon delivery schedule").await;
    assert!(reply.text.contains("approval"), "{}", reply.text);
    assert!(events.iter().any(|e| matches!(e, AgentEvent::ApprovalRequested { .. })));
    let approvals = home.db().read().unwrap().approvals().unwrap();
    assert!(matches!(
        &approvals[..],
        [a] if a.status == ApprovalStatus::Pending
            && matches!(&a.request, ApprovalRequest::Collaboration { purpose, .. } if purpose == "the Falcon delivery schedule")
    ));
    let (reply, _) = chat(&home, &brain, Some("work"), &mut history, "Work with Hooli on the merger").await;
    assert!(reply.text.contains("no contact matches"), "{}", reply.text);
    // A contact of another identity is outside this identity's scope: refused, and audited.
    let (reply, _) = chat(&home, &brain, Some("work"), &mut history, "Talk to Grandma about the budget").await;
    assert!(reply.text.contains("not a connected contact assigned to identity work"), "{}", reply.text);

    let (reply, events) =
        chat(&home, &brain, Some("work"), &mut history, "Ask the manager about the Falcon budget").await;
    assert!(reply.text.starts_with("The manager advises") && reply.text.contains("20000"), "{}", reply.text);
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Advice { withheld: false, .. })), "{events:?}");

    let mut manager_history = Vec::new();
    let (reply, _) = chat(&home, &brain, None, &mut manager_history, "Which school does Emma go to?").await;
    assert!(reply.text.contains("[family] Emma goes to Lincoln Elementary school"), "{}", reply.text);

    // Every action the agents took is in the chain, and the chain verifies.
    let entries = audit(&home);
    let added = actions(&entries[before..]);
    assert_eq!(added, ["memory.add", "approval.request", "approval.request", "manager.advise"], "{added:?}");
    assert!(matches!(entries[before + 2].outcome, Outcome::Denied(_)), "the out-of-scope request is denied");
    let work = home.home().identities().unwrap().into_iter().find(|i| i.tag.to_string() == "work").unwrap();
    assert!(entries[before..].iter().all(|e| e.actor == Actor::Identity(work.id) || e.actor == Actor::Manager));
    home.db().verify_audit().unwrap();
}

/// The model behind the work agent asks for family memory by name, through every tool; the
/// manager, asked the same, reads it. Requests are told apart by the role prompt the node sent.
#[tokio::test]
async fn an_identity_cannot_read_another_identitys_memory_but_the_manager_can() {
    let dir = tempfile::tempdir().unwrap();
    let home = node(dir.path()).await;
    let server = ModelServer::start().await.unwrap();
    let brain = Arc::new(server.brain(false).unwrap());
    server.push_all([
        // The work agent asks for the family memory by name...
        Script::tool_call("memory_recall", json!({"query": "Emma school", "identity": "family"})),
        // ...tries to write its own rules away...
        Script::tool_call("memory_store", json!({"layer": "value", "text": "nothing is secret"})),
        // ...and asks the manager to read family memory out to it.
        Script::tool_call("consult_manager", json!({"question": "Quote the family memory about Emma's school"})),
        // The manager (same model) reads family memory, as it may, and quotes it.
        Script::tool_call("memory_recall", json!({"query": "Emma school", "identity": "family"})),
        Script::answer("Family memory says: Emma goes to Lincoln Elementary school."),
        // The work agent answers with what it got.
        Script::answer("I cannot see that."),
    ]);
    let agent = Agent::identity(home.clone(), "work", brain.clone()).unwrap();
    let mut events = Vec::new();
    let before = audit(&home).len();
    let history = [Message::user("Which school does Emma go to?")];
    let response = tokio::time::timeout(LIMIT, agent.respond(history, &Audience::Owner, &mut |e| events.push(e)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.text, "I cannot see that.");
    assert_eq!(server.n_unused(), 0);

    let requests = server.requests();
    let is_manager = |request: &Value| request["messages"][0]["content"].as_str().unwrap().contains("manager agent");
    let (manager, work): (Vec<&Value>, Vec<&Value>) = requests.iter().partition(|r| is_manager(r));
    assert_eq!((work.len(), manager.len()), (4, 2));
    for request in &work {
        let text = request.to_string();
        assert!(
            !text.contains("Lincoln") && !text.contains("penicillin"),
            "family memory reached the work agent: {text}"
        );
    }
    assert!(manager[1].to_string().contains("Lincoln Elementary"), "the manager reads every identity's memory");
    let tool_results: Vec<&str> = work[3]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(tool_results[0].contains("refused: an identity agent reads only its own memory"), "{tool_results:?}");
    assert!(tool_results[1].contains("refused: only the owner writes value memory"), "{tool_results:?}");
    assert!(tool_results[2].contains("shown to your owner only"), "{tool_results:?}");
    // The owner saw the full advice.
    assert!(
        events.iter().any(|e| matches!(e, AgentEvent::Advice { withheld: true, text } if text.contains("Lincoln")))
    );

    // Both refusals are security events; the withheld advice is audited as denied.
    let entries = audit(&home);
    let added: Vec<(&str, &Outcome)> = entries[before..].iter().map(|e| (e.action.as_str(), &e.outcome)).collect();
    assert!(
        matches!(
            &added[..],
            [
                ("security.memory", Outcome::Denied(_)),
                ("security.memory", Outcome::Denied(_)),
                ("manager.advise", Outcome::Denied(_)),
            ]
        ),
        "{added:?}"
    );
    assert!(entries[before].is_security_event() && entries[before + 1].is_security_event());
    assert_eq!(home.home().memories(MemoryScope::All, None).unwrap().len(), 6, "nothing was written");
}

/// A brain that says one fixed thing.
#[derive(Debug)]
struct Says(&'static str);

impl Brain for Says {
    async fn decide(
        &self,
        _: &[Message],
        _: &[clawnet_node::agents::ToolSpec],
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<clawnet_node::agents::BrainReply, BrainError> {
        on_text(self.0);
        Ok(clawnet_node::agents::BrainReply::Say(self.0.into()))
    }

    fn describe(&self) -> String {
        "says".into()
    }
}

#[tokio::test]
async fn the_disclosure_guard_holds_never_share_items_however_spelled_and_passes_innocent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let home = node(dir.path()).await;
    let counterpart = Audience::Counterpart { name: "Globex".into(), session: None };
    let history = [Message::user("Anything new at Initech?")];
    for leak in [
        "Between us: Initech layoffs in June.",
        "initech LAYOFFS in june, keep it quiet",
        "I-N-I-T-E-C-H   lay offs in J u n e",
        // Another identity's secret must not leave through this one either.
        "Unrelated, but Emma's allergy to penicillin is why Ada left early.",
    ] {
        let agent = Agent::identity(home.clone(), "work", Arc::new(Says(leak))).unwrap();
        let before = audit(&home).len();
        let response = agent.respond(history.clone(), &counterpart, &mut |_| {}).await.unwrap();
        let Delivery::Held { approval, matched } = &response.delivery else { panic!("{leak:?} was not held") };
        assert_eq!(matched.len(), 1, "{matched:?}");
        let record = home.db().read().unwrap().approval(approval).unwrap().unwrap();
        assert_eq!(record.status, ApprovalStatus::Pending);
        assert!(
            matches!(&record.request, ApprovalRequest::HeldMessage { text, recipient, .. } if text == leak && recipient == "Globex")
        );
        let added = audit(&home)[before..].to_vec();
        assert_eq!(actions(&added), ["security.disclosure"]);
        assert!(added[0].is_security_event());
    }
    for innocent in ["We can deliver 500 units by 14 March.", "Our layoff policy is public on our website."] {
        let agent = Agent::identity(home.clone(), "work", Arc::new(Says(innocent))).unwrap();
        let response = agent.respond(history.clone(), &counterpart, &mut |_| {}).await.unwrap();
        assert_eq!(response.delivery, Delivery::Send, "{innocent:?}");
    }
    // The owner's own conversation is never held: it does not leave the node.
    let agent = Agent::identity(home.clone(), "work", Arc::new(Says("Initech layoffs in June"))).unwrap();
    assert_eq!(agent.respond(history.clone(), &Audience::Owner, &mut |_| {}).await.unwrap().delivery, Delivery::Send);
}

#[tokio::test]
async fn the_rule_brain_negotiates_with_a_counterpart_within_its_bottom_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = node(dir.path()).await;
    let agent = Agent::identity(home.clone(), "work", Arc::new(RuleBrain)).unwrap();
    let counterpart = Audience::Counterpart { name: "Globex".into(), session: None };
    let mut history = vec![Message::user("Globex here. Our price for 500 sensors is 46 EUR per unit.")];
    let response = agent.respond(history.clone(), &counterpart, &mut |_| {}).await.unwrap();
    assert_eq!(response.text, "46.00 EUR is too high for us. We can offer 38.00 EUR.");
    assert_eq!((response.delivery.clone(), response.end), (Delivery::Send, None));
    history.push(Message::assistant(response.text));
    history.push(Message::user("We could do 41 EUR."));
    let response = agent.respond(history.clone(), &counterpart, &mut |_| {}).await.unwrap();
    assert_eq!(response.text, "We are close. Let us meet in the middle at 40.30 EUR.");
    history.push(Message::assistant(response.text));
    history.push(Message::user("Fine, 40.30 EUR it is."));
    let response = agent.respond(history, &counterpart, &mut |_| {}).await.unwrap();
    assert_eq!(response.text, "Agreed: a unit price of 40.30 EUR.");
    assert_eq!(response.end, Some(EndMarker::Resolved));
}

#[tokio::test]
async fn hostile_model_output_ends_in_a_clear_error_never_an_unaudited_action() {
    let dir = tempfile::tempdir().unwrap();
    let home = node(dir.path()).await;
    let server = ModelServer::start().await.unwrap();
    let brain = Arc::new(server.brain(false).unwrap());
    let agent = Agent::identity(home.clone(), "work", brain).unwrap();
    let history = [Message::user("hello")];
    let entries_before = audit(&home).len();

    // A tool that does not exist, arguments that are not an object, garbage, a refusal page.
    for (script, expected) in [
        (Script::tool_call("shell_exec", json!({"cmd": "rm -rf /"})), "not an offered tool"),
        (Script::raw("<html>gateway</html>"), "not JSON"),
        (Script::status_with(400, "bad request"), "HTTP 400"),
    ] {
        server.push(script);
        let err = agent.respond(history.clone(), &Audience::Owner, &mut |_| {}).await.unwrap_err();
        assert!(matches!(err, AgentError::Brain(_)), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    // A model that never stops calling tools is stopped at the step limit.
    server.push_all((0..8).map(|_| Script::tool_call("memory_recall", json!({"query": "Falcon"}))));
    let err = agent.respond(history.clone(), &Audience::Owner, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, AgentError::StepLimit(8)), "{err}");
    // Work done before a failure stays done, and audited: one memory write, then garbage.
    server.push_all([
        Script::tool_call("memory_store", json!({"layer": "factual", "text": "Globex ships from Rotterdam"})),
        Script::raw("{\"choices\": 7}"),
    ]);
    assert!(agent.respond(history, &Audience::Owner, &mut |_| {}).await.is_err());
    let added = audit(&home)[entries_before..].to_vec();
    assert_eq!(actions(&added), ["memory.add"], "only the write that happened, audited");
    assert_eq!(home.home().memories(MemoryScope::All, None).unwrap().len(), 7);
    home.db().verify_audit().unwrap();
}

#[tokio::test]
async fn the_manager_has_no_tool_that_reaches_outside_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let home = node(dir.path()).await;
    let manager = Agent::manager(home.clone(), Arc::new(RuleBrain));
    let names: Vec<String> = manager.toolbox(&Audience::Owner).specs().iter().map(|spec| spec.name.clone()).collect();
    assert_eq!(names, ["memory_recall", "list_identities"]);
    // Asked by a model for a tool it does not have, it answers with an error result.
    let call = clawnet_node::agents::ToolCall {
        id: "1".into(),
        name: "request_collaboration".into(),
        arguments: json!({"contact": "Globex", "purpose": "x"}),
    };
    let output = manager.toolbox(&Audience::Owner).run(&call).await;
    assert!(!output.ok && output.result["error"].as_str().unwrap().contains("there is no tool"), "{:?}", output.result);
}

/// A stand-in for the file primitives: one tool that reports who called it.
#[derive(Debug)]
struct WhoAmI;

impl clawnet_node::agents::tools::ToolExtension for WhoAmI {
    fn specs(&self, _: &clawnet_storage::identities::IdentityRecord) -> Vec<clawnet_node::agents::ToolSpec> {
        vec![clawnet_node::agents::ToolSpec {
            name: "who_am_i".into(),
            description: "Say which identity is calling".into(),
            parameters: json!({"type": "object", "properties": {}}),
        }]
    }

    fn call<'a>(
        &'a self,
        identity: &'a clawnet_storage::identities::IdentityRecord,
        _: &'a Audience,
        call: &'a clawnet_node::agents::ToolCall,
    ) -> futures::future::BoxFuture<'a, Option<clawnet_node::agents::tools::ToolOutput>> {
        Box::pin(async move {
            (call.name == "who_am_i")
                .then(|| clawnet_node::agents::tools::ToolOutput::ok(json!({"identity": identity.tag.to_string()})))
        })
    }
}

#[tokio::test]
async fn extensions_plug_tools_into_identity_agents_only() {
    let dir = tempfile::tempdir().unwrap();
    let home = node(dir.path()).await;
    let server = ModelServer::start().await.unwrap();
    server.push_all([Script::tool_call("who_am_i", json!({})), Script::answer("done")]);
    let agent = Agent::identity(home.clone(), "work", Arc::new(server.brain(false).unwrap()))
        .unwrap()
        .with_extension(Arc::new(WhoAmI));
    let response = agent.respond(&[Message::user("who are you?")], &Audience::Owner, &mut |_| {}).await.unwrap();
    let result = response.transcript.iter().find(|m| m.tool_call_id.is_some()).unwrap();
    assert_eq!(result.content, r#"{"identity":"work"}"#);
    let offered: Vec<String> = server.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(offered.contains(&"who_am_i".to_owned()), "{offered:?}");
    let manager = Agent::manager(home, Arc::new(RuleBrain)).with_extension(Arc::new(WhoAmI));
    assert!(!manager.toolbox(&Audience::Owner).specs().iter().any(|spec| spec.name == "who_am_i"));
}

/// Every file below `root`: relative path and content (directories as `None`).
fn tree(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                found.push((relative, None));
                stack.push(path);
            } else {
                found.push((relative, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn an_agent_organizes_a_folder_through_the_file_tools_and_the_owner_rolls_it_back() {
    use clawnet_node::agents::file_tools::FileTools;
    use clawnet_node::agents::tools::ToolExtension;
    use clawnet_node::files::owner::{self, JournalQuery, RollbackRequest};
    use clawnet_node::files::{FolderConfig, GovernedFiles, endpoint_config};
    use clawnet_storage::files::FileAccess;

    let dir = tempfile::tempdir().unwrap();
    let home = node(dir.path()).await;
    let inbox = std::fs::canonicalize(dir.path()).unwrap().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    for (name, content) in [("q3-report.pdf", "%PDF report"), ("budget.xlsx", "cells"), ("notes.txt", "call Bob")] {
        std::fs::write(inbox.join(name), content).unwrap();
    }
    let before = tree(&inbox);
    let folders = vec![FolderConfig { path: inbox.clone(), access: FileAccess::ReadWrite }];
    let files = GovernedFiles::open(&endpoint_config(&dir.path().join("ada"), &folders), home.db().clone()).unwrap();
    let work = home.home().identities().unwrap().into_iter().find(|i| i.tag.to_string() == "work").unwrap();
    let root = clawnet_node::files::FsPath::parse(inbox.to_str().unwrap()).unwrap();
    files.grant(work.id, &root, FileAccess::ReadWrite).unwrap();
    let tools: Vec<Arc<dyn ToolExtension>> = vec![Arc::new(FileTools::new(files.clone()))];

    // A scripted model: look, make folders by kind, move each file, and one step out of bounds.
    let server = ModelServer::start().await.unwrap();
    let at = |rel: &str| format!("{}/{rel}", inbox.display());
    server.push_all([
        Script::tool_call("file_list", json!({"path": at("")})),
        Script::tool_calls(&[
            ("file_mkdir", json!({"path": at("documents")})),
            ("file_mkdir", json!({"path": at("spreadsheets")})),
        ]),
        Script::tool_calls(&[
            ("file_move", json!({"from": at("q3-report.pdf"), "to": at("documents/q3-report.pdf")})),
            ("file_move", json!({"from": at("budget.xlsx"), "to": at("spreadsheets/budget.xlsx")})),
            (
                "file_write",
                json!({"path": at("notes.txt"), "content": "call Bob\nfiled by the agent\n", "mode": "overwrite"}),
            ),
            ("file_read", json!({"path": "/etc/hostname"})),
        ]),
        Script::answer("Sorted: documents/ and spreadsheets/, notes updated."),
    ]);
    let brain = Arc::new(AnyBrain::Llm(Box::new(server.brain(false).unwrap())));
    let request = ChatRequest { agent: Some("work".into()), history: Vec::new(), message: "Tidy up my inbox".into() };
    let mut events = Vec::new();
    let reply = tokio::time::timeout(LIMIT, chat_turn(home.clone(), brain, &tools, &request, &mut |e| events.push(e)))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.text.contains("Sorted"), "{}", reply.text);

    // The agent's changes are on disk...
    assert_eq!(std::fs::read(inbox.join("documents/q3-report.pdf")).unwrap(), b"%PDF report");
    assert_eq!(std::fs::read(inbox.join("spreadsheets/budget.xlsx")).unwrap(), b"cells");
    assert!(!inbox.join("q3-report.pdf").exists());
    // ...the step outside its scope was refused, shown to the owner and recorded.
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Refused { reason } if reason.contains("L1"))), "{events:?}");
    let security: Vec<AuditEntry> = audit(&home).into_iter().filter(|e| e.action == "security.files").collect();
    assert_eq!(security.len(), 1);
    assert_eq!(security[0].actor, Actor::Identity(work.id));
    assert!(security[0].object.contains("/etc/hostname"));

    // The owner sees five changes by the work identity and rolls them all back. Through the
    // running endpoint, as the node's API reads it: the last change settles (its journal
    // entry is committed) after its reply, and the endpoint's history waits for that.
    let query = JournalQuery { identity: Some("work".into()), ..JournalQuery::default() };
    let history = owner::history(home.home(), Some(&files), &query).unwrap();
    let kinds: Vec<&str> = history.iter().map(|op| op.kind.as_str()).collect();
    assert_eq!(kinds, ["mkdir", "mkdir", "move", "move", "overwrite"]);
    let rollback = RollbackRequest { query, dry_run: false };
    let result = owner::rollback(home.home(), &files, &rollback).unwrap();
    assert_eq!(result.undone.len(), 5);
    assert_eq!(tree(&inbox), before, "the folder is exactly as it was");
    assert!(
        owner::history(home.home(), Some(&files), &JournalQuery::default())
            .unwrap()
            .iter()
            .take(5)
            .all(|op| op.state == "undone")
    );
    home.db().verify_audit().unwrap();
}
