//! The owner chatting with one of their agents: one turn at a time, the conversation kept by the
//! caller (the CLI, or an app through the local API), so the node holds no chat state and a
//! turn can run in the CLI process or in the running node alike.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::agents::brain::AnyBrain;
use crate::agents::runtime::{Agent, Delivery, Response};
use crate::agents::tools::{AgentEvent, AgentRole, Audience, ToolExtension};
use crate::agents::{Brain, Message};
use crate::error::NodeError;
use crate::home::UnlockedHome;

/// One turn: the conversation so far and the owner's new message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The identity's tag, or `None` for the manager.
    pub agent: Option<String>,
    /// Earlier messages of this conversation (as returned in [`ChatReply::transcript`]).
    #[serde(default)]
    pub history: Vec<Message>,
    /// What the owner says now.
    pub message: String,
}

/// The agent's answer to one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// `identity TAG` or `manager`.
    pub agent: String,
    /// Which brain answered.
    pub brain: String,
    /// The reply.
    pub text: String,
    /// Brain calls the turn took.
    pub steps: usize,
    /// The messages this turn added (the owner's message first): append them to the history.
    pub transcript: Vec<Message>,
}

/// A line of the streamed answer of `POST /v1/chat`: events as they happen, then the reply or
/// an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatLine {
    /// Something happened while the agent worked.
    Event(AgentEvent),
    /// The turn is over.
    Done {
        /// The reply.
        done: ChatReply,
    },
    /// The turn failed.
    Failed {
        /// Why.
        error: String,
    },
}

/// Runs one turn of the owner's conversation with an agent.
pub async fn chat_turn(
    home: Arc<UnlockedHome>,
    brain: Arc<AnyBrain>,
    tools: &[Arc<dyn ToolExtension>],
    request: &ChatRequest,
    on_event: &mut (dyn FnMut(AgentEvent) + Send),
) -> Result<ChatReply, NodeError> {
    let message = request.message.trim();
    if message.is_empty() {
        return Err(NodeError::Agent("the message is empty".into()));
    }
    let agent = match &request.agent {
        Some(tag) => tools
            .iter()
            .fold(Agent::identity(home, tag, brain.clone())?, |agent, tool| agent.with_extension(tool.clone())),
        None => Agent::manager(home, brain.clone()),
    };
    let mut history = request.history.clone();
    history.push(Message::user(message));
    let response: Response =
        agent.respond(history, &Audience::Owner, on_event).await.map_err(|err| NodeError::Agent(err.to_string()))?;
    debug_assert_eq!(response.delivery, Delivery::Send, "the owner's own conversation is never held");
    let mut transcript = vec![Message::user(message)];
    transcript.extend(response.transcript);
    Ok(ChatReply {
        agent: match agent.role() {
            AgentRole::Identity(identity) => format!("identity {}", identity.tag),
            AgentRole::Manager => "manager".into(),
        },
        brain: brain.describe(),
        text: response.text,
        steps: response.steps,
        transcript,
    })
}
