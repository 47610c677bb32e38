//! The owner's agents: one identity agent per identity, and the manager.
//!
//! An agent runs a think/act loop ([`runtime`]): a [`Brain`] reads the conversation (with the
//! node-injected role prompt) and either answers or asks for tools; the runtime runs the tools
//! the agent is allowed ([`tools`]) and feeds the results back, up to a step limit. Identity
//! agents see only their own memory; the manager reads every identity's memory and has no key,
//! no address and no tool that reaches the network. What an identity agent is about to send
//! outside the node first passes the [`guard`], outside the model.

pub mod amounts;
pub mod brain;
pub mod conversation;
pub mod file_tools;
pub mod guard;
pub mod llm;
pub mod memory;
pub mod rule_brain;
pub mod runtime;
pub mod scripted;
pub mod tools;

pub use brain::{Brain, BrainError, BrainReply};
pub use conversation::{Message, Role, ToolCall, ToolSpec};
