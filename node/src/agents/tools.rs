//! The tools an agent may call, and the governance each applies before it acts.
//!
//! Which tools exist depends on who calls: an identity agent gets its own memory, the manager's
//! advice, collaboration requests and any [`ToolExtension`] (the file primitives plug in there);
//! the manager gets read access to every identity's memory and nothing that reaches the
//! network. Tool results are JSON for the brain; a refused or malformed call returns an error
//! result the brain can read and recover from, never a panic. Every call that changes anything
//! is audited in the same commit as the change; a call that tries to leave the agent's scope is
//! refused and audited as a security event.

mod builtin;

use std::sync::Arc;

use clawnet_protocol::SessionId;
use clawnet_protocol::audit::{Actor, AuditDraft, Outcome, SECURITY_PREFIX};
use clawnet_protocol::session::EndMarker;
use clawnet_storage::Change;
use clawnet_storage::approvals::ApprovalRequest;
use clawnet_storage::identities::IdentityRecord;
use clawnet_storage::memory::{Bound, Direction, MemoryKind, MemoryLayer};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::conversation::{ToolCall, ToolSpec};
use super::memory::{MemoryItem, MemoryScope, MemoryWriter, Retriever};
use crate::home::UnlockedHome;
pub(crate) use builtin::spec;
use builtin::{AudienceShape, Shape};

/// Recall memory entries relevant to a query.
pub const MEMORY_RECALL: &str = "memory_recall";
/// Store a new factual or pattern entry.
pub const MEMORY_STORE: &str = "memory_store";
/// Ask the owner's manager agent for advice.
pub const CONSULT_MANAGER: &str = "consult_manager";
/// Ask the owner to approve working with a contact.
pub const REQUEST_COLLABORATION: &str = "request_collaboration";
/// End a conversation with a counterpart, with a structured outcome.
pub const END_CONVERSATION: &str = "end_conversation";
/// List the owner's identities (manager only).
pub const LIST_IDENTITIES: &str = "list_identities";

/// The most entries one recall returns.
const MAX_RECALL: usize = 20;

/// Which agent is calling.
#[derive(Debug, Clone)]
pub enum AgentRole {
    /// An identity agent: its identity's memory and scope only.
    Identity(Box<IdentityRecord>),
    /// The owner's manager: reads every identity's memory; no network of any kind.
    Manager,
}

impl AgentRole {
    /// The audit actor for this agent.
    pub fn actor(&self) -> Actor {
        match self {
            AgentRole::Identity(identity) => Actor::Identity(identity.id),
            AgentRole::Manager => Actor::Manager,
        }
    }

    /// "identity work" or "manager".
    pub fn describe(&self) -> String {
        match self {
            AgentRole::Identity(identity) => format!("identity {}", identity.tag),
            AgentRole::Manager => "manager".into(),
        }
    }
}

/// Whom the agent is talking to in this conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Its owner, on this node.
    Owner,
    /// Another owner's agent, outside the node (replies pass the disclosure guard).
    Counterpart {
        /// Who, for the owner's eyes.
        name: String,
        /// The session this conversation is, if it is one (a held reply names it; a
        /// collaboration asked for from inside it becomes its child).
        session: Option<SessionId>,
    },
}

/// Something the owner should see while an agent works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A piece of the agent's reply, as the brain produces it.
    Text {
        /// The text.
        text: String,
    },
    /// The agent called a tool.
    ToolCall {
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// A tool answered.
    ToolResult {
        /// The tool.
        name: String,
        /// Whether it succeeded.
        ok: bool,
        /// The result the brain reads.
        result: Value,
    },
    /// The manager's advice (shown to the owner; never sent anywhere).
    Advice {
        /// The advice as the manager gave it.
        text: String,
        /// Whether it was withheld from the identity agent (it quoted other identities' memory).
        withheld: bool,
    },
    /// The agent asked the owner for a decision.
    ApprovalRequested {
        /// The approval's id.
        id: String,
        /// What is asked.
        summary: String,
    },
    /// A tool call was refused as out of scope and recorded as a security event.
    Refused {
        /// Why.
        reason: String,
    },
    /// The guard held the agent's reply for the owner instead of sending it.
    Held {
        /// The approval the owner decides.
        approval: String,
        /// The never-share items it matched.
        matched: Vec<String>,
    },
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The result the brain reads.
    pub result: Value,
    /// Whether the call succeeded.
    pub ok: bool,
    /// Something the owner should see, beyond the result itself.
    pub event: Option<AgentEvent>,
    /// For `end_conversation`: how the conversation ends.
    pub end: Option<EndMarker>,
}

impl ToolOutput {
    /// A successful result.
    pub fn ok(result: Value) -> ToolOutput {
        ToolOutput { result, ok: true, event: None, end: None }
    }

    /// An error the brain can read and recover from.
    pub fn error(message: impl Into<String>) -> ToolOutput {
        ToolOutput { result: json!({ "error": message.into() }), ok: false, event: None, end: None }
    }

    fn with_event(mut self, event: AgentEvent) -> ToolOutput {
        self.event = Some(event);
        self
    }
}

/// Where more tools plug in (the file primitives): they see the calling identity and are
/// offered only to identity agents.
pub trait ToolExtension: Send + Sync {
    /// The tools it offers `identity`.
    fn specs(&self, identity: &IdentityRecord) -> Vec<ToolSpec>;

    /// Runs `call` if it is one of its tools (`None` otherwise). It must apply its own
    /// authorization and audit its actions.
    fn call<'a>(
        &'a self,
        identity: &'a IdentityRecord,
        audience: &'a Audience,
        call: &'a ToolCall,
    ) -> BoxFuture<'a, Option<ToolOutput>>;
}

/// The manager's advice to an identity agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    /// What the identity agent reads.
    pub for_identity: String,
    /// The advice as the manager gave it (shown to the owner).
    pub full: String,
    /// Whether the identity agent was denied the full advice.
    pub withheld: bool,
}

/// Gives advice to an identity agent; implemented by the manager agent.
pub trait Advisor: Send + Sync {
    /// The manager's answer to `question` from `identity`.
    fn advise<'a>(&'a self, identity: &'a IdentityRecord, question: &'a str) -> BoxFuture<'a, Result<Advice, String>>;
}

/// The tools of one agent in one conversation.
#[derive(Clone)]
pub struct Toolbox {
    pub(crate) home: Arc<UnlockedHome>,
    pub(crate) role: AgentRole,
    pub(crate) audience: Audience,
    pub(crate) retriever: Arc<dyn Retriever>,
    pub(crate) advisor: Option<Arc<dyn Advisor>>,
    pub(crate) extensions: Vec<Arc<dyn ToolExtension>>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolbox").field("role", &self.role.describe()).field("audience", &self.audience).finish()
    }
}

impl Toolbox {
    /// The tools on offer, described for the brain: the built-in ones of this kind of agent and
    /// audience, then its extensions'.
    pub fn specs(&self) -> Arc<[ToolSpec]> {
        let builtin = self.shape().builtin();
        let AgentRole::Identity(identity) = &self.role else { return builtin };
        let extra: Vec<ToolSpec> = self.extensions.iter().flat_map(|extension| extension.specs(identity)).collect();
        if extra.is_empty() { builtin } else { builtin.iter().cloned().chain(extra).collect() }
    }

    fn shape(&self) -> Shape {
        match (&self.role, &self.audience) {
            (AgentRole::Manager, _) => Shape::Manager,
            (AgentRole::Identity(_), audience) => Shape::Identity {
                advisor: self.advisor.is_some(),
                audience: match audience {
                    Audience::Owner => AudienceShape::Owner,
                    Audience::Counterpart { session: Some(_), .. } => AudienceShape::InSession,
                    Audience::Counterpart { session: None, .. } => AudienceShape::Counterpart,
                },
            },
        }
    }
}

impl Toolbox {
    /// Runs one call. Never fails: problems become error results the brain reads.
    pub async fn run(&self, call: &ToolCall) -> ToolOutput {
        if !call.arguments.is_object() {
            return ToolOutput::error(format!(
                "the arguments of {} must be a JSON object, got {}",
                call.name,
                shorten(&call.arguments.to_string())
            ));
        }
        let specs = self.specs();
        if !specs.iter().any(|spec| spec.name == call.name) {
            let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
            return ToolOutput::error(format!(
                "there is no tool {:?} here; the tools are: {}",
                shorten(&call.name),
                names.join(", ")
            ));
        }
        match (&self.role, call.name.as_str()) {
            (_, MEMORY_RECALL) => self.recall(&call.arguments).await,
            (AgentRole::Identity(identity), MEMORY_STORE) => self.store(identity, &call.arguments).await,
            (AgentRole::Identity(identity), CONSULT_MANAGER) => self.consult(identity, &call.arguments).await,
            (AgentRole::Identity(identity), REQUEST_COLLABORATION) => {
                self.request_collaboration(identity, &call.arguments).await
            }
            (AgentRole::Identity(_), END_CONVERSATION) => end_conversation(&call.arguments),
            (AgentRole::Manager, LIST_IDENTITIES) => self.list_identities(),
            (AgentRole::Identity(identity), _) => {
                for extension in &self.extensions {
                    if let Some(output) = extension.call(identity, &self.audience, call).await {
                        return output;
                    }
                }
                ToolOutput::error(format!("the tool {} did not answer", call.name))
            }
            (AgentRole::Manager, _) => ToolOutput::error(format!("the manager has no tool {}", call.name)),
        }
    }

    async fn recall(&self, args: &Value) -> ToolOutput {
        let query = string_arg(args, "query").unwrap_or_default();
        let layer = match string_arg(args, "layer").as_deref() {
            None | Some("") => None,
            Some("factual") => Some(MemoryLayer::Factual),
            Some("pattern") => Some(MemoryLayer::Pattern),
            Some("value") => Some(MemoryLayer::Value),
            Some(other) => return ToolOutput::error(format!("unknown layer {other:?}: use factual, pattern or value")),
        };
        let limit = args
            .get("limit")
            .and_then(Value::as_u64)
            .map_or(5, |limit| usize::try_from(limit).unwrap_or(MAX_RECALL))
            .clamp(1, MAX_RECALL);
        let wanted_identity = string_arg(args, "identity").filter(|tag| !tag.is_empty());
        let scope = match (&self.role, &wanted_identity) {
            (AgentRole::Identity(own), Some(tag)) if *tag != own.tag.to_string() => {
                return self
                    .refuse(
                        "memory",
                        format!("identity {} asked to read the memory of identity {tag:?}", own.tag),
                        "an identity agent reads only its own memory",
                    )
                    .await;
            }
            (AgentRole::Identity(own), _) => MemoryScope::Identity(own.id),
            (AgentRole::Manager, _) => MemoryScope::All,
        };
        let mut items = match self.home.home().memories(scope, layer) {
            Ok(items) => items,
            Err(err) => return ToolOutput::error(format!("memory is unreadable: {err}")),
        };
        if let Some(tag) = &wanted_identity {
            items.retain(|item| item.identity == *tag);
        }
        let entries: Vec<Value> = if query.trim().is_empty() {
            items.iter().take(MAX_RECALL).map(entry_json).collect()
        } else {
            self.retriever.rank(&query, &items, limit).into_iter().map(|(_, item)| entry_json(item)).collect()
        };
        ToolOutput::ok(json!({ "entries": entries }))
    }

    async fn store(&self, identity: &IdentityRecord, args: &Value) -> ToolOutput {
        let kind = match string_arg(args, "layer").as_deref() {
            Some("factual") => MemoryKind::Fact,
            Some("pattern") => MemoryKind::Pattern,
            Some("value") => {
                return self
                    .refuse(
                        "memory",
                        format!("identity {} tried to write its value memory", identity.tag),
                        "only the owner writes value memory",
                    )
                    .await;
            }
            other => return ToolOutput::error(format!("layer must be factual or pattern, got {other:?}")),
        };
        let Some(text) = string_arg(args, "text") else { return ToolOutput::error("text is missing") };
        let tag = identity.tag.to_string();
        match self.home.memory_add(&tag, kind, &text, MemoryWriter::Agent(identity.id)).await {
            Ok(item) => ToolOutput::ok(json!({ "stored": item.id, "layer": item.layer })),
            Err(err) => ToolOutput::error(err.to_string()),
        }
    }

    async fn consult(&self, identity: &IdentityRecord, args: &Value) -> ToolOutput {
        let Some(question) = string_arg(args, "question").filter(|q| !q.trim().is_empty()) else {
            return ToolOutput::error("question is missing");
        };
        let Some(advisor) = &self.advisor else { return ToolOutput::error("no manager is available") };
        match advisor.advise(identity, &question).await {
            Ok(advice) => ToolOutput::ok(json!({ "advice": advice.for_identity }))
                .with_event(AgentEvent::Advice { text: advice.full, withheld: advice.withheld }),
            Err(err) => ToolOutput::error(format!("the manager could not advise: {err}")),
        }
    }

    async fn request_collaboration(&self, identity: &IdentityRecord, args: &Value) -> ToolOutput {
        let (Some(query), Some(purpose)) = (string_arg(args, "contact"), string_arg(args, "purpose")) else {
            return ToolOutput::error("contact and purpose are both needed");
        };
        let purpose: String = purpose.trim().chars().take(500).collect();
        let contact = match self.home.home().find_contact(&query) {
            Ok(contact) => contact,
            Err(err) => return ToolOutput::error(err.to_string()),
        };
        if !contact.is_connected() || contact.assigned_identity != Some(identity.id) {
            let reason = format!(
                "{} is not a connected contact assigned to identity {}; the owner assigns contacts with \
                 `clawnet contact assign`",
                contact.display_name, identity.tag
            );
            let audit = AuditDraft::new(
                Actor::Identity(identity.id),
                "approval.request",
                format!("collaboration with {} ({})", contact.display_name, contact.owner.fingerprint()),
                "agent tool request_collaboration",
                Outcome::Denied(reason.clone()),
            );
            if let Err(err) = crate::node::commit(self.home.db(), Change::audit(audit)).await {
                return ToolOutput::error(format!("{reason} (and the refusal could not be audited: {err})"));
            }
            return ToolOutput::error(reason);
        }
        let audit = AuditDraft::new(
            Actor::Identity(identity.id),
            "approval.request",
            format!("collaboration with {} ({})", contact.display_name, contact.owner.fingerprint()),
            "agent tool request_collaboration",
            Outcome::Success,
        );
        let parent = match &self.audience {
            Audience::Owner => None,
            Audience::Counterpart { session, .. } => *session,
        };
        let request = ApprovalRequest::Collaboration { contact: contact.owner, purpose: purpose.clone(), parent };
        match self.home.request_approval(identity.id, request, None, vec![audit]).await {
            Ok(record) => {
                let summary = format!("work with {} on: {purpose}", contact.display_name);
                ToolOutput::ok(json!({
                    "approval": record.id.to_hex(),
                    "status": "pending: your owner decides; nothing was sent"
                }))
                .with_event(AgentEvent::ApprovalRequested { id: record.id.to_hex(), summary })
            }
            Err(err) => ToolOutput::error(err.to_string()),
        }
    }

    fn list_identities(&self) -> ToolOutput {
        match self.home.home().identities() {
            Ok(identities) => ToolOutput::ok(json!({
                "identities": identities
                    .iter()
                    .map(|i| json!({"tag": i.tag.to_string(), "description": i.description, "active": i.is_active()}))
                    .collect::<Vec<_>>()
            })),
            Err(err) => ToolOutput::error(err.to_string()),
        }
    }

    /// Refuses an out-of-scope call: a security event in the audit chain, an error for the brain.
    async fn refuse(&self, kind: &str, what: String, rule: &str) -> ToolOutput {
        let draft = AuditDraft::new(
            self.role.actor(),
            format!("{SECURITY_PREFIX}{kind}"),
            &what,
            "agent scope",
            Outcome::Denied(rule.into()),
        );
        let reason = format!("refused: {rule}");
        if let Err(err) = crate::node::commit(self.home.db(), Change::audit(draft)).await {
            tracing::error!(%err, "cannot audit a refused tool call");
        }
        ToolOutput::error(reason.clone()).with_event(AgentEvent::Refused { reason: format!("{what}: {rule}") })
    }
}

fn end_conversation(args: &Value) -> ToolOutput {
    let marker = match string_arg(args, "outcome").as_deref() {
        Some("resolved") => EndMarker::Resolved,
        Some("deadlock") => EndMarker::Deadlock,
        Some("need_owner") => EndMarker::NeedsOwner,
        other => return ToolOutput::error(format!("outcome must be resolved, deadlock or need_owner, got {other:?}")),
    };
    let mut output = ToolOutput::ok(json!({ "ended": format!("{marker:?}") }));
    output.end = Some(marker);
    output
}

fn string_arg(args: &Value, name: &str) -> Option<String> {
    args.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 80 {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(80).collect::<String>())
    }
}

/// How a memory entry reads in a tool result.
fn entry_json(item: &MemoryItem) -> Value {
    let mut entry = json!({
        "identity": item.identity,
        "id": item.id,
        "layer": item.layer,
        "kind": item.kind,
        "text": item.text,
    });
    if let Some(MemoryKind::BottomLine(bound)) = item.kind() {
        entry["bound"] = serde_json::to_value(BoundView::of(bound)).unwrap_or(Value::Null);
    }
    entry
}

/// A bottom line as tools show it: amounts as decimal strings, the side spelled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundView {
    /// What is negotiated.
    pub subject: String,
    /// `at least` or `at most`.
    pub acceptable: String,
    /// The worst acceptable value.
    pub limit: String,
    /// The value to open with.
    pub open_at: String,
    /// The unit.
    pub unit: String,
}

impl BoundView {
    /// The view of `bound`.
    pub fn of(bound: &Bound) -> BoundView {
        BoundView {
            subject: bound.subject.clone(),
            acceptable: match bound.direction {
                Direction::AtLeast => "at least",
                Direction::AtMost => "at most",
            }
            .into(),
            limit: bound.limit.to_string(),
            open_at: bound.target.to_string(),
            unit: bound.unit.clone(),
        }
    }

    /// The bound back, if the view is well-formed.
    pub fn bound(&self) -> Option<Bound> {
        Some(Bound {
            subject: self.subject.clone(),
            direction: match self.acceptable.as_str() {
                "at least" => Direction::AtLeast,
                "at most" => Direction::AtMost,
                _ => return None,
            },
            limit: super::amounts::parse_amount(&self.limit)?,
            target: super::amounts::parse_amount(&self.open_at)?,
            unit: self.unit.clone(),
        })
    }
}
